"""The file store's on-disk format: records, the block scanner used at
recovery, the `meta.json` format version, and the store-directory lock.

Layout of one stream's directory
--------------------------------
    meta.json             {"format": 1, "store": "gnatsd.py filestore"}
    blocks/00000001.blk   message blocks, append-only, ~8 MiB each
    consumers/NAME.state  consumer state blobs (written whole, atomically)

A block is a sequence of records, each:

    u32 record length (whole record)   u8 kind          u64 seq
    i64 ts (ns)   i64 ttl (ns)   u16 subject length   u32 header length
    subject, header block, payload     u32 crc32 of everything before it

Kinds: MSG (a message; with the ERASED bit its payload was overwritten and
it is deleted), TOMB (seq was deleted), TOMBS (the payload is a list of
deleted sequences, u64 each: a purge by subject), SKIP (seq reserved, no message),
MARK (the stream's first sequence moved: the payload is the new first seq,
seq/ts are the last seq and its time). A sequence is live at recovery when
its MSG record is intact, not erased, not tombstoned and >= the highest MARK.
"""

import errno
import fcntl
import json
import os
import re
import struct
import sys
from array import array
from zlib import crc32

from .store import StoreCorrupt, StoreError, StoreNewerFormat

FORMAT_VERSION = 1
META_NAME = "meta.json"

HDR = struct.Struct("<IBQqqHI")
HDR_SIZE = HDR.size                     # 35
CRC = struct.Struct("<I")
U64 = struct.Struct("<Q")
MIN_RECORD = HDR_SIZE + CRC.size
MAX_RECORD = 1 << 30                    # a bigger length field is damage

MSG, TOMB, SKIP, MARK, TOMBS = 1, 2, 3, 4, 5
TOMBS_MAX = 65536             # sequences per TOMBS record
ERASED = 0x80

# Scanner results that are not records.
DAMAGED = -1  # bytes that are no intact record, with an intact one after them
STOP = -2     # no intact record from here on: the readable data ends


def append_record(buf, kind, seq, ts, ttl, subj, hdr, msg):
    """Append one record to the bytearray `buf`; returns its length."""
    n = MIN_RECORD + len(subj) + len(hdr) + len(msg)
    head = HDR.pack(n, kind, seq, ts, ttl, len(subj), len(hdr))
    c = crc32(head)
    c = crc32(subj, c)
    c = crc32(hdr, c)
    c = crc32(msg, c)
    buf += head
    buf += subj
    buf += hdr
    buf += msg
    buf += CRC.pack(c)
    return n


def encode_record(kind, seq, ts, ttl, subj, hdr, msg):
    buf = bytearray()
    append_record(buf, kind, seq, ts, ttl, subj, hdr, msg)
    return bytes(buf)


def append_tombstones(buf, seqs):
    """Append TOMBS records for the sorted sequences `seqs`."""
    for i in range(0, len(seqs), TOMBS_MAX):
        chunk = array("Q", seqs[i:i + TOMBS_MAX])
        if sys.byteorder != "little":
            chunk.byteswap()
        append_record(buf, TOMBS, chunk[-1], 0, 0, b"", b"", chunk.tobytes())


def read_tombstones(data, off, n, slen, hlen):
    """The sequences of the TOMBS record at `off` in `data`."""
    seqs = array("Q")
    a = off + HDR_SIZE + slen + hlen
    seqs.frombytes(data[a:off + n - CRC.size])
    if sys.byteorder != "little":
        seqs.byteswap()
    return seqs


def file_msg_size(slen, hlen, mlen):
    """Bytes a message counts for, as nats-server's filestore counts them."""
    if hlen:
        return 22 + slen + 4 + hlen + mlen + 8
    return 22 + slen + mlen + 8


# Where a record could start when resynchronizing after damage: the kind
# byte (offset 4) is a known kind. A regex finds the candidates at C speed.
_CANDIDATE = re.compile(b"(?=(?s:.{4})[\\x01-\\x05\\x81])")


def _valid_at(data, mv, off, end):
    """The length of an intact record at `off`, or 0."""
    if end - off < MIN_RECORD:
        return 0
    n, kind, seq, ts, ttl, slen, hlen = HDR.unpack_from(data, off)
    if n < MIN_RECORD or n > end - off or HDR_SIZE + slen + hlen + 4 > n:
        return 0
    if crc32(mv[off:off + n - 4]) != CRC.unpack_from(data, off + n - 4)[0]:
        return 0
    return n


def _resync(data, mv, start, end):
    """The offset of the next intact record after damage, or -1."""
    for m in _CANDIDATE.finditer(data, start):
        p = m.start()
        if _valid_at(data, mv, p, end):
            return p
    return -1


def scan_block(data):
    """Yield (kind, off, rec_len, seq, ts, ttl, slen, hlen) for each intact
    record in `data` (bytes of one block). Where a record is damaged (bad
    checksum, impossible length), the scan looks for the next intact record
    and yields (DAMAGED, off, bytes skipped, 0...) before going on; when
    none follows, it yields (STOP, off, ...) with off = where the readable
    data ends (a torn tail, when this is the last block) and stops."""
    mv = memoryview(data)
    end = len(data)
    off = 0
    unpack = HDR.unpack_from
    crc_at = CRC.unpack_from
    while off < end:
        if end - off >= MIN_RECORD:     # the fast path: _valid_at inlined
            n, kind, seq, ts, ttl, slen, hlen = unpack(data, off)
            if (MIN_RECORD <= n <= end - off and HDR_SIZE + slen + hlen + 4 <= n
                    and crc32(mv[off:off + n - 4]) == crc_at(data, off + n - 4)[0]):
                yield (kind, off, n, seq, ts, ttl, slen, hlen)
                off += n
                continue
        nxt = _resync(data, mv, off + 1, end)
        if nxt < 0:
            yield (STOP, off, 0, 0, 0, 0, 0, 0)
            return
        yield (DAMAGED, off, nxt - off, 0, 0, 0, 0, 0)
        off = nxt


def decode_record(rec):
    """(kind, seq, ts, ttl, subject bytes, hdr, msg) of one whole record,
    or None when its checksum fails."""
    n, kind, seq, ts, ttl, slen, hlen = HDR.unpack_from(rec, 0)
    if n != len(rec) or crc32(memoryview(rec)[:n - 4]) != CRC.unpack_from(rec, n - 4)[0]:
        return None
    a = HDR_SIZE
    b = a + slen
    c = b + hlen
    return kind, seq, ts, ttl, rec[a:b], rec[b:c], rec[c:n - 4]


# -- meta.json --------------------------------------------------------------

def write_meta(directory):
    path = os.path.join(directory, META_NAME)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"format": FORMAT_VERSION, "store": "gnatsd.py filestore"}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def check_meta(directory):
    """Raise StoreNewerFormat / StoreCorrupt when meta.json is from a newer
    format or unreadable."""
    path = os.path.join(directory, META_NAME)
    try:
        with open(path, "rb") as f:
            raw = f.read(65536)
    except FileNotFoundError:
        raise StoreCorrupt("%s: missing (the directory holds blocks but no "
                                  "format file)" % path) from None
    except OSError as e:
        raise StoreError("%s: %s" % (path, e.strerror or e)) from None
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise StoreCorrupt("%s: damaged, not valid JSON (%s)" % (path, e)) from None
    version = meta.get("format") if isinstance(meta, dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StoreCorrupt("%s: damaged, no valid \"format\" version "
                                  "(found %r)" % (path, version))
    if version > FORMAT_VERSION:
        raise StoreNewerFormat(
            "%s: written by a newer server (store format %d; this server reads "
            "format %d)" % (path, version, FORMAT_VERSION))


# -- the store-directory lock ----------------------------------------------

class StoreDirLock:
    """An exclusive flock on STORE_DIR/.lock, held while the server runs."""

    def __init__(self, path, fd):
        self.path = path
        self._fd = fd

    def release(self):
        if self._fd is not None:
            os.close(self._fd)        # closing drops the flock
            self._fd = None


def lock_store_dir(directory):
    """Create `directory` if needed and lock it against a second server.
    Raises StoreError naming the directory (and the holder's pid)."""
    try:
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StoreError("store directory %s: %s" % (directory, e.strerror or e)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise StoreError(
                "store directory %s is in use by another server%s (lock %s)"
                % (directory, " (pid %s)" % holder if holder else "", path)) from None
        raise StoreError("store directory %s: lock %s: %s"
                                % (directory, path, e.strerror or e)) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, b"%d\n" % os.getpid(), 0)
    return StoreDirLock(path, fd)
