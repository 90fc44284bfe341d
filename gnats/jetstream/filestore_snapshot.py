"""The index snapshot a FileStore writes at a clean close (MSGS/index.snap),
so that the next open skips reading every block.

Trust: the snapshot is used only when its own checksum holds and the
block files are exactly those it lists, each with the size and CRC-32 it
records (reading the blocks through zlib.crc32 costs a few percent of
parsing them: 60 MB for 1M small messages), so a store changed or damaged
after the snapshot never matches it and gets the full recovery, which
reports the damage. It is also unlinked as soon as it is loaded: a crash
later cannot meet a stale one.
Anything wrong (damaged, other byte order, sizes differ) means the normal
recovery (filestore_recovery.py) runs instead; it is never an error.

Layout: b"GNJSIDX1", u32 length of a JSON header, the header (scalars,
blocks, subject names, array lengths), the arrays' bytes in the header's
order, u32 crc32 of everything before it.
"""

import json
import os
import struct
import sys
from array import array
from zlib import crc32

from .filestore_index import DenseIndex
from .store import SubjectSeqs

NAME = "index.snap"
MAGIC = b"GNJSIDX1"
_U32 = struct.Struct("<I")
_ARRAYS = ("ts", "loc", "rlen", "size", "sid", "refs")


def block_crc(blk):
    """CRC-32 of a block file, cached on the block until it is written."""
    if blk.crc is None:
        c = 0
        with open(blk.path, "rb") as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                c = crc32(chunk, c)
        blk.crc = c
    return blk.crc


def write_snapshot(st):
    """Write the snapshot of a flushed, synced store (FileStore.close)."""
    idx = st._idx
    subjects = list(st._subjects.values())
    head = {
        "byteorder": sys.byteorder,
        "first": st._first, "last": st._last, "last_ts": st._last_ts, "bytes": st._bytes,
        "blocks": [[b.num, b.end, b.live, block_crc(b)] for b in st._blocks],
        "base": idx.base, "dead": idx.dead, "count": idx.count,
        "names": idx.names, "free": idx.free,
        "arrays": [len(getattr(idx, a)) for a in _ARRAYS],
        "subjects": [[ss.subject, ss.count()] for ss in subjects],
        "ttls": len(st._ttls),
        "never": sorted(st._never),
    }
    hj = json.dumps(head).encode()
    parts = [MAGIC, _U32.pack(len(hj)), hj]
    parts += [getattr(idx, a).tobytes() for a in _ARRAYS]
    parts += [ss.seqs[ss.head:].tobytes() for ss in subjects]
    parts.append(array("q", [x for pair in st._ttls for x in pair]).tobytes())
    data = b"".join(parts)
    path = os.path.join(st.directory, NAME)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.write(_U32.pack(crc32(data)))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_snapshot(st, block_names):
    """Fill the store from its snapshot; False (store untouched) when there
    is none or it does not match the blocks. The file is removed either way."""
    path = os.path.join(st.directory, NAME)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return False
    try:
        os.unlink(path)
    except OSError:
        return False            # could not make sure it is used once only
    try:
        return _load(st, data, block_names)
    except (ValueError, KeyError, TypeError, IndexError, struct.error):
        return False


def _load(st, data, block_names):
    if data[:8] != MAGIC or len(data) < 16 or \
            crc32(memoryview(data)[:-4]) != _U32.unpack_from(data, len(data) - 4)[0]:
        return False
    n = _U32.unpack_from(data, 8)[0]
    head = json.loads(data[12:12 + n])
    if head["byteorder"] != sys.byteorder:
        return False
    blocks = head["blocks"]
    if sorted("%08d.blk" % b[0] for b in blocks) != sorted(block_names):
        return False
    for num, end, _, crc in blocks:
        blk = st._bmap[num]
        if os.path.getsize(blk.path) != end or block_crc(blk) != crc:
            return False
    pos = 12 + n
    idx = DenseIndex()
    for name, length in zip(_ARRAYS, head["arrays"]):
        a = getattr(idx, name)
        size = length * a.itemsize
        a.frombytes(data[pos:pos + size])
        pos += size
    idx.base, idx.dead, idx.count = head["base"], head["dead"], head["count"]
    idx.names = head["names"]
    idx.free = head["free"]
    idx.ids = {name: i for i, name in enumerate(idx.names) if name is not None}
    subjects = {}
    for name, count in head["subjects"]:
        ss = SubjectSeqs(name)
        ss.seqs.frombytes(data[pos:pos + 8 * count])
        pos += 8 * count
        subjects[name] = ss
    ttl = array("q")
    ttl.frombytes(data[pos:pos + 16 * head["ttls"]])
    pos += 16 * head["ttls"]
    if pos != len(data) - 4:
        return False
    st._idx = idx
    st._subjects = subjects
    st._ttls = [(ttl[i], ttl[i + 1]) for i in range(0, len(ttl), 2)]
    st._never = set(head.get("never", ()))
    st._first, st._last, st._last_ts = head["first"], head["last"], head["last_ts"]
    st._bytes = head["bytes"]
    for num, end, live, _ in blocks:
        blk = st._bmap[num]
        blk.end, blk.live = end, live
    return True
