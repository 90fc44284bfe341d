"""FileStore: a stream's messages in append-only block files (format and
layout in filestore_format.py), indexed in memory by store.IndexedStore.

Theory of operation
-------------------
Writes append records to an in-memory buffer for the active (last) block;
`flush()`, which the server calls once per reactor turn, hands the buffer
to the OS in one pwrite. `sync()` fsyncs what was flushed; it is safe to
call from another thread (it fsyncs duplicated descriptors).

Durability policy (nats-server's):
  - default: flush every reactor turn; fsync every `sync_interval` seconds
    (120 by default) on a background thread. A process crash (kill -9)
    loses only what was not yet flushed, i.e. at most the current reactor
    turn, whose publishes were not acknowledged yet (the ack leaves on the
    same turn's socket flush, after the store flush). A power loss or kernel
    crash can lose everything written since the last fsync: up to
    `sync_interval` of acknowledged messages.
  - `sync_always`: each store_msg (and each remove/purge/compact) is
    written and fsynced before it returns, so an acknowledgement means the
    message is on stable storage. Much slower (one fsync per message).

Deletes append a TOMB record (erase also overwrites the payload in place);
removals at the front of the stream (limits, purge, compact) only move the
first sequence, recorded by one MARK record per flush. Blocks at the front
whose messages are all gone are unlinked (after the MARK is written); a
purge of everything starts a new block and unlinks all the old ones.

A clean close() also writes an index snapshot (filestore_snapshot.py);
the next open uses it when the blocks are byte for byte those it
describes (1M messages: 0.08 s instead of 1.8 s). Otherwise, recovery at
open reads every block: the intact records rebuild the index;
a torn tail of the last block (an incomplete record: crash or power loss)
is cut off; damaged bytes in the middle (a bad checksum, a wrong length)
are skipped up to the next intact record and reported in `warnings`
(nats-server likewise rebuilds and drops bad records).

Measured with `python3 -m gnats.jetstream.filestore_bench` (CPython 3.11,
2 cores shared with other jobs, so figures vary 2-4x with their load; 16 B
payloads, 100 subjects, a flush every 100 messages), best quiet-machine
runs: writes about 300,000 msgs/s (about 5 MB/s of payload; 290,000 msgs/s
of process CPU time) with the default policy, 5,300-5,700 msgs/s with
sync_always (one fsync each), 245,000-280,000 msgs/s (250-290 MB/s) with
1 KiB payloads; open of 1M messages 0.08-0.10 s after a clean close (index
snapshot), 1.4-1.8 s after a crash (full rebuild); while open_async
rebuilds, a 1 ms ticker on another thread is held up 10-30 ms (GIL
switching; a plain Python loop alone gives 37 ms on a busy machine); purge
of those 1M messages 0.03-0.09 s on the calling thread (the 8 block files
are unlinked). The index (filestore_index.DenseIndex) costs about 45 bytes
of memory per message (1M messages: 45 MB; the dict of tuples it replaced
took 268 MB, for writes about 20% cheaper in CPU) and holds nothing the
garbage collector tracks, so a big store does not slow the server's
collections.
"""

import os
import queue
import shutil
import threading
import time
from collections import Counter, OrderedDict
from zlib import crc32

from . import filestore_format as fmt
from .filestore_format import lock_store_dir
from .filestore_index import DenseIndex
from .filestore_recovery import Recovery
from .filestore_snapshot import load_snapshot, write_snapshot
from .store import IndexedStore, StoreCorrupt, StoredMsg, StoreError

__all__ = ["FileStore", "lock_store_dir", "BLOCK_SIZE"]

BLOCK_SIZE = 8 << 20
# store_msg flushes by itself past this many buffered bytes, so a busy turn
# never holds more than this in memory and a full disk shows up at once.
FLUSH_AT = 256 << 10
MAX_READ_FDS = 32
MAX_WARNINGS = 100


class _Block:
    __slots__ = ("num", "path", "live", "end", "crc")

    def __init__(self, num, path):
        self.num = num
        self.path = path
        self.live = 0       # live messages in this block
        self.end = 0        # bytes of whole records on disk
        # CRC-32 of the file, kept up to date while it only grows (appends),
        # None once written in place: the snapshot records it.
        self.crc = None


def _enc(subject):
    """Subjects are str decoded from the wire with surrogateescape: any
    bytes round-trip (recovery decodes the same way)."""
    return subject.encode("utf-8", "surrogateescape")


def _oserror(path, what, e):
    return StoreError("%s: %s failed: %s" % (path, what, e.strerror or e))


class FileStore(IndexedStore):
    """FileStore(directory, limits=None, sync_always=False,
    sync_interval=120.0, block_size=8 MiB). Opening an existing directory
    recovers it (this can take seconds for millions of messages: use
    `open_async` from the reactor)."""

    def __init__(self, directory, limits=None, sync_always=False,
                 sync_interval=120.0, block_size=BLOCK_SIZE):
        super().__init__(limits)
        self.directory = directory
        self.sync_always = sync_always
        self.sync_interval = sync_interval
        self.block_size = block_size
        self.warnings = []          # what recovery dropped, background sync errors
        self.torn_bytes = 0         # bytes of an incomplete last record cut off
        self.opened_from = None     # "snapshot" (clean close) or "blocks" (rebuilt)
        self._bdir = os.path.join(directory, "blocks")
        self._blocks = []
        self._bmap = {}             # block number -> _Block
        self._active = None
        self._wfd = None
        self._buf = bytearray()
        self._buf_off = 0           # file offset of _buf[0] in the active block
        self._read_fds = OrderedDict()
        self._marked_first = 0      # the first seq the disk records imply
        self._active_marked = False
        self._write_error = False
        self._sync_lock = threading.Lock()
        # Blocks written since the last fsync other than the active one
        # (rolled over, or erased in place): sync() fsyncs them by path, so
        # no descriptor is kept open for them.
        self._dirty_paths = set()
        self._dir_dirty = False
        self._last_sync = time.monotonic()
        self._sync_queued = False
        self._closed = False
        try:
            self._open()
        except OSError as e:
            raise _oserror(getattr(e, "filename", None) or directory, "open", e) from None

    @classmethod
    def open_async(cls, directory, done, **kwargs):
        """Open (recover) on a thread; then `done(store, None)` or
        `done(None, error)` is called ON THAT THREAD: the caller marshals
        it to the reactor (e.g. reactor.call_soon_threadsafe)."""
        def run():
            try:
                st = cls(directory, **kwargs)
            except Exception as e:          # reported to the caller, not lost
                done(None, e)
                return
            done(st, None)
        t = threading.Thread(target=run, name="filestore-open", daemon=True)
        t.start()
        return t

    # -- recovery ---------------------------------------------------------------

    def _open(self):
        os.makedirs(self._bdir, exist_ok=True)
        names = sorted(n for n in os.listdir(self._bdir) if n.endswith(".blk"))
        if os.path.exists(os.path.join(self.directory, fmt.META_NAME)) or names:
            fmt.check_meta(self.directory)
        else:
            fmt.write_meta(self.directory)
        for name in names:
            try:
                num = int(name[:-4])
            except ValueError:
                raise StoreCorrupt("%s: not a block file name" %
                                   os.path.join(self._bdir, name)) from None
            blk = _Block(num, os.path.join(self._bdir, name))
            self._blocks.append(blk)
            self._bmap[num] = blk
        if load_snapshot(self, names):
            self.opened_from = "snapshot"
        else:
            self.opened_from = "blocks"
            state = Recovery(self)
            for i, blk in enumerate(self._blocks):
                state.read_block(blk, i == len(self._blocks) - 1)
            state.finish()
        if self._blocks:
            self._active = self._blocks[-1]
            self._wfd = os.open(self._active.path, os.O_RDWR)
            self._buf_off = self._active.end
        else:
            self._new_block(1)
        self._marked_first = self._first
        if self._idx:
            self._enforce_limits()

    def _warn(self, text):
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(text)

    # -- writing ----------------------------------------------------------------

    def _new_index(self):
        return DenseIndex()

    def _live_between(self, lo, hi):
        return self._idx.live_in(lo, hi)

    def _count_live(self, lo, hi):
        return self._idx.count_in(lo, hi)

    def _dead_between(self, lo, hi):
        return self._idx.dead_in(lo, hi)

    def _pop_entries(self, seqs):
        return self._idx.pop_many(seqs)

    def _first_live(self):
        return self._idx.first()

    def _msg_size(self, subject, hdr, msg):
        return fmt.file_msg_size(len(_enc(subject)), len(hdr), len(msg))

    def _write(self, seq, subject, hdr, msg, ts, ttl, size):
        if self._closed:
            raise StoreError("%s: store is closed" % self.directory)
        if self._write_error:
            self.flush()                    # raises while the disk still fails
        subj = _enc(subject)
        n = fmt.MIN_RECORD + len(subj) + len(hdr) + len(msg)
        end = self._buf_off + len(self._buf)
        if end and end + n > self.block_size:
            self._roll()
            end = 0
        fmt.append_record(self._buf, fmt.MSG, seq, ts, ttl, subj, hdr, msg)
        if self.sync_always or len(self._buf) >= FLUSH_AT:
            try:
                self._write_buf()
                if self.sync_always:
                    self.sync()
            except StoreError:
                self._unwrite(end)
                raise
        self._active.live += 1
        return (subject, ts, size, self._active.num, end, n)

    def _unwrite(self, end):
        """Take back a record that failed to reach the disk: the store
        answered an error for it, so it must not appear later."""
        if end >= self._buf_off:
            del self._buf[end - self._buf_off:]
        else:
            del self._buf[:]
            self._active.crc = None
            try:
                os.ftruncate(self._wfd, end)
            except OSError:
                pass
            self._buf_off = self._active.end = end

    def _skipped(self, seq, ts):
        fmt.append_record(self._buf, fmt.SKIP, seq, ts, 0, b"", b"", b"")

    def _dropped(self, seq, entry, erase):
        self._bmap[entry[3]].live -= 1
        if erase:
            self._erase(seq, entry)
        if seq > self._first:
            # Interior delete: a tombstone. Front removals need none: the
            # MARK written at the next flush moves the first sequence.
            fmt.append_record(self._buf, fmt.TOMB, seq, 0, 0, b"", b"", b"")

    def _dropped_many(self, items):
        bmap = self._bmap
        for num, c in Counter(e[3] for _, e in items).items():
            bmap[num].live -= c
        first = self._first
        tombs = [s for s, _ in items if s > first]
        if tombs:
            fmt.append_tombstones(self._buf, tombs)

    def _dropped_all(self):
        for b in self._blocks:
            b.live = 0
        del self._buf[:]                    # nothing buffered is needed now
        if self._buf_off:
            self._roll()
        self.flush()

    def _erase(self, seq, entry):
        """Overwrite the message's header and payload with zeros in place
        (the record is rewritten whole, kind MSG|ERASED, checksum valid)."""
        blk, off, n = self._bmap[entry[3]], entry[4], entry[5]
        subj = _enc(entry[0])
        rec = fmt.encode_record(fmt.MSG | fmt.ERASED, seq, entry[1], 0, subj, b"",
                                bytes(n - fmt.MIN_RECORD - len(subj)))
        if blk is self._active and off >= self._buf_off:
            i = off - self._buf_off
            self._buf[i:i + n] = rec
            return
        blk.crc = None
        try:
            if blk is self._active:
                os.pwrite(self._wfd, rec, off)
                return
            fd = os.open(blk.path, os.O_RDWR)
            try:
                os.pwrite(fd, rec, off)
            finally:
                os.close(fd)
        except OSError as e:
            raise _oserror(blk.path, "erase", e) from None
        with self._sync_lock:
            self._dirty_paths.add(blk.path)

    def _commit(self):
        if self.sync_always:
            self.flush()
            self.sync()

    def _new_block(self, num):
        path = os.path.join(self._bdir, "%08d.blk" % num)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        blk = _Block(num, path)
        blk.crc = 0                         # crc32(b"")
        with self._sync_lock:
            old = self._wfd
            if old is not None:
                self._dirty_paths.add(self._active.path)
            self._wfd = fd
            self._dir_dirty = True
        if old is not None:
            os.close(old)
        self._blocks.append(blk)
        self._bmap[num] = blk
        self._active = blk
        self._buf_off = 0
        self._active_marked = False

    def _roll(self):
        """Start the next block (the current one is full or all purged)."""
        if self._buf:
            self._write_buf()
        try:
            self._new_block(self._active.num + 1)
        except OSError as e:
            raise _oserror(self._bdir, "new block", e) from None

    def _write_buf(self):
        buf = self._buf
        off = self._buf_off
        done = 0
        try:
            with memoryview(buf) as view:
                while done < len(buf):
                    done += os.pwrite(self._wfd, view[done:], off + done)
        except OSError as e:
            # Keep only whole records in the file; the buffer is retried.
            self._active.crc = None
            try:
                os.ftruncate(self._wfd, off)
            except OSError:
                pass
            self._write_error = True
            raise _oserror(self._active.path, "write", e) from None
        self._write_error = False
        blk = self._active
        if blk.crc is not None:
            blk.crc = crc32(buf, blk.crc)
        self._buf_off = blk.end = off + len(buf)
        del buf[:]

    def flush(self):
        """Hand buffered records to the OS; unlink emptied front blocks;
        queue the periodic fsync when due. Raises StoreError on a write
        error (the records stay buffered, and new ones are refused, until
        a flush succeeds)."""
        if self._closed:
            return
        dead_front = len(self._blocks) > 1 and self._blocks[0].live == 0
        if self._first != self._marked_first or (dead_front and not self._active_marked):
            fmt.append_record(self._buf, fmt.MARK, self._last, self._last_ts, 0,
                              b"", b"", fmt.U64.pack(self._first))
            self._marked_first = self._first
            self._active_marked = True
        if self._buf:
            self._write_buf()
        if dead_front:
            self._drop_dead_blocks()
        # The slack lets a caller that flushes on a sync_interval timer hit
        # the interval each time instead of every second time.
        if (not self.sync_always and not self._sync_queued
                and time.monotonic() - self._last_sync >= self.sync_interval * 0.95):
            self._sync_queued = True
            _syncer.submit(self)

    def _drop_dead_blocks(self):
        if self.sync_always:
            self.sync()                     # the MARK is durable before files go
        while len(self._blocks) > 1 and self._blocks[0].live == 0:
            blk = self._blocks.pop(0)
            del self._bmap[blk.num]
            fd = self._read_fds.pop(blk.num, None)
            if fd is not None:
                os.close(fd)
            try:
                os.unlink(blk.path)
            except FileNotFoundError:
                pass
            except OSError as e:
                self._warn("%s: unlink failed: %s" % (blk.path, e.strerror))
        with self._sync_lock:
            self._dir_dirty = True

    def sync(self):
        """fsync everything flushed so far. Thread-safe: the descriptors are
        duplicated under a lock, so a concurrent roll or close is harmless."""
        with self._sync_lock:
            if self._wfd is None:
                return
            fds = [os.dup(self._wfd)]
            paths, self._dirty_paths = self._dirty_paths, set()
            dir_dirty, self._dir_dirty = self._dir_dirty, False
            self._last_sync = time.monotonic()
        what = self._active.path
        try:
            for fd in fds:
                os.fsync(fd)
            for p in paths:
                what = p
                try:
                    fd = os.open(p, os.O_RDONLY)
                except FileNotFoundError:
                    continue
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            if dir_dirty:
                for d in (self._bdir, self.directory):
                    what = d
                    fd = os.open(d, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
        except OSError as e:
            raise _oserror(what, "fsync", e) from None
        finally:
            for fd in fds:
                os.close(fd)

    def _background_sync(self):
        try:
            self.sync()
        except StoreError as e:
            self._warn(str(e))
        finally:
            self._sync_queued = False

    # -- reading ----------------------------------------------------------------

    def _read(self, seq, entry):
        blk, off, n = self._bmap[entry[3]], entry[4], entry[5]
        if blk is self._active and off >= self._buf_off:
            i = off - self._buf_off
            rec = bytes(self._buf[i:i + n])
        else:
            try:
                rec = os.pread(self._read_fd(blk), n, off)
            except OSError as e:
                raise _oserror(blk.path, "read", e) from None
        r = fmt.decode_record(rec) if len(rec) == n else None
        if r is None:
            raise StoreCorrupt("%s: the record of seq %d at offset %d is damaged "
                               "(checksum)" % (blk.path, seq, off))
        return StoredMsg(entry[0], seq, r[5], r[6], r[2])

    def _read_fd(self, blk):
        if blk is self._active:
            return self._wfd
        fds = self._read_fds
        fd = fds.get(blk.num)
        if fd is None:
            fd = fds[blk.num] = os.open(blk.path, os.O_RDONLY)
            if len(fds) > MAX_READ_FDS:
                os.close(fds.popitem(last=False)[1])
        else:
            fds.move_to_end(blk.num)
        return fd

    # -- consumer state -------------------------------------------------------------

    def _consumer_path(self, name):
        safe = name if name.replace("-", "").replace("_", "").isalnum() and name.isascii() \
            else "x-" + _enc(name).hex()
        return os.path.join(self.directory, "consumers", safe + ".state")

    def write_consumer_state(self, name, data):
        path = self._consumer_path(name)
        tmp = path + ".tmp"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
                if self.sync_always:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            raise _oserror(path, "write", e) from None

    def read_consumer_state(self, name):
        path = self._consumer_path(name)
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise _oserror(path, "read", e) from None

    def remove_consumer_state(self, name):
        try:
            os.unlink(self._consumer_path(name))
        except FileNotFoundError:
            pass

    # -- life cycle -------------------------------------------------------------

    def close(self):
        """Flush and fsync, then release the files."""
        if self._closed:
            return
        try:
            self.flush()
            self.sync()
            try:
                write_snapshot(self)
            except OSError as e:        # only the next open's speed is at stake
                self._warn("%s: index snapshot not written: %s" % (self.directory, e))
        finally:
            self._closed = True
            with self._sync_lock:
                fds = list(self._read_fds.values())
                if self._wfd is not None:
                    fds.append(self._wfd)
                self._wfd = None
                self._read_fds.clear()
            for fd in fds:
                os.close(fd)

    def delete(self):
        """Remove the stream's directory."""
        self._closed = True
        with self._sync_lock:
            fds = list(self._read_fds.values())
            if self._wfd is not None:
                fds.append(self._wfd)
            self._wfd = None
            self._read_fds.clear()
        for fd in fds:
            os.close(fd)
        shutil.rmtree(self.directory, ignore_errors=True)
        self._idx, self._subjects, self._bytes = DenseIndex(), {}, 0


class _Syncer:
    """One background thread for the periodic fsyncs of every FileStore."""

    def __init__(self):
        self._q = queue.SimpleQueue()
        self._thread = None
        self._lock = threading.Lock()

    def submit(self, store):
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="filestore-sync",
                                                daemon=True)
                self._thread.start()
        self._q.put(store)

    def _run(self):
        while True:
            self._q.get()._background_sync()


_syncer = _Syncer()
