"""Recovery of a FileStore at open: read every block, rebuild the index.

What counts (see filestore_format.py): intact MSG records not erased, not
tombstoned and at or above the highest MARK. A torn tail of the LAST block
(bytes after the last intact record: a write cut by a crash or a power
loss) is cut off silently, only counted in `store.torn_bytes`. Damage
anywhere else is reported in `store.warnings` with the file and offset:
damaged bytes followed by intact records are skipped (the scanner finds
the next intact record), and the records after them are kept.
"""

import os
from itertools import repeat
from zlib import crc32

from . import filestore_format as fmt
from .store import SubjectSeqs


class Recovery:
    """Rebuilds a FileStore's index from its blocks. Works on the store's
    private state (_idx, _subjects, _bmap...): it is part of FileStore."""

    def __init__(self, store):
        self.st = store
        self.tombs = []
        self.mark_first = 0
        self.last = 0
        self.last_ts = 0
        self.max_msg_seq = 0
        self.by_bytes = {}          # subject bytes -> SubjectSeqs
        self.ttls = []
        self.never = []             # seqs stored with Nats-TTL: never (ttl -1)
        self.bytes = 0

    def read_block(self, blk, is_last):
        st = self.st
        with open(blk.path, "rb") as f:
            data = f.read()
        # The index arrays are appended to directly (DenseIndex.__setitem__
        # per record cost a third of the rebuild).
        idx = st._idx
        ts_add, loc_add, rlen_add = idx.ts.append, idx.loc.append, idx.rlen.append
        size_add, sid_add, refs = idx.size.append, idx.sid.append, idx.refs
        nxt = idx.base + len(idx.rlen) if len(idx.rlen) else 0
        added = 0
        nbytes = 0
        by_bytes = self.by_bytes
        ttls = self.ttls
        hsize = fmt.HDR_SIZE
        size_less = fmt.MIN_RECORD - fmt.file_msg_size(0, 0, 0)
        size_less_hdr = fmt.MIN_RECORD - fmt.file_msg_size(0, 1, 0) + 1
        bnum = blk.num << 32
        end = len(data)
        valid_end = end
        MSG = fmt.MSG
        for kind, off, n, seq, ts, ttl, slen, hlen in fmt.scan_block(data):
            if kind == MSG:
                if seq <= self.max_msg_seq:
                    st._warn("%s: offset %d: message seq %d out of order, skipped"
                             % (blk.path, off, seq))
                    continue
                self.max_msg_seq = seq
                if seq > self.last:
                    self.last, self.last_ts = seq, ts
                a = off + hsize
                sb = data[a:a + slen]
                hit = by_bytes.get(sb)
                if hit is None:
                    hit = by_bytes[sb] = self._subject(sb)
                ss, sid = hit
                ss.seqs.append(seq)
                if seq != nxt:
                    if not nxt:
                        idx.base = seq
                    else:
                        for arr in (idx.ts, idx.loc, idx.rlen, idx.size, idx.sid):
                            arr.extend(repeat(0, seq - nxt))
                    nxt = seq
                # fmt.file_msg_size(slen, hlen, n - MIN_RECORD - slen - hlen)
                size = n - size_less_hdr if hlen else n - size_less
                ts_add(ts)
                loc_add(bnum | off)
                rlen_add(n)
                size_add(size)
                sid_add(sid)
                refs[sid] += 1
                nxt += 1
                added += 1
                nbytes += size
                if ttl > 0:
                    ttls.append((ts + ttl, seq))
                elif ttl < 0:
                    self.never.append(seq)
            elif kind == fmt.TOMB or kind == fmt.TOMBS:
                if kind == fmt.TOMB:
                    self.tombs.append(seq)
                else:
                    self.tombs.extend(fmt.read_tombstones(data, off, n, slen, hlen))
                if seq > self.last:
                    self.last = seq
            elif kind == fmt.MARK or kind == fmt.SKIP or kind == fmt.MSG | fmt.ERASED:
                if kind == fmt.MARK:
                    first = fmt.U64.unpack_from(data, off + hsize + slen + hlen)[0]
                    self.mark_first = max(self.mark_first, first)
                if kind != fmt.MARK:
                    self.max_msg_seq = max(self.max_msg_seq, seq)
                if seq > self.last:
                    self.last, self.last_ts = seq, ts
            elif kind == fmt.DAMAGED:
                st._warn("%s: offset %d: %d bytes are no intact record (bad checksum "
                         "or length), skipped" % (blk.path, off, n))
            elif kind == fmt.STOP:
                valid_end = off
                if not is_last:
                    st._warn("%s: offset %d: no intact record in the last %d bytes "
                             "of the block, lost" % (blk.path, off, end - off))
                break
            else:
                st._warn("%s: offset %d: unknown record kind %d, skipped"
                         % (blk.path, off, kind))
        blk.end = valid_end
        blk.live += added
        idx.count += added
        self.bytes += nbytes
        blk.crc = crc32(memoryview(data)[:valid_end])      # for the snapshot at close
        if is_last and valid_end < end:
            st.torn_bytes = end - valid_end
            os.truncate(blk.path, valid_end)

    def _subject(self, sb):
        """(SubjectSeqs, subject id) of the subject bytes `sb`."""
        st = self.st
        subject = sb.decode("utf-8", "surrogateescape")
        ss = st._subjects.get(subject)
        if ss is None:
            ss = st._subjects[subject] = SubjectSeqs(subject)
        sid = st._idx.ids.get(subject)
        if sid is None:
            sid = st._idx._new_sid(subject)
        return ss, sid

    def finish(self):
        st = self.st
        idx = st._idx
        for seq in self.tombs:
            if seq in idx:
                self._drop(seq)
        if idx and self.mark_first and idx.first() < self.mark_first:
            for seq in idx.live_in(0, self.mark_first):
                self._drop(seq)
        st._last = self.last
        st._last_ts = self.last_ts
        st._bytes = self.bytes
        if idx:
            st._first = idx.first()
        else:
            st._first = max(self.last + 1, self.mark_first) if self.last else 0
        self.ttls.sort()
        st._ttls = self.ttls
        st._never = set(s for s in self.never if s in idx)

    def _drop(self, seq):
        entry = self.st._idx.pop(seq)
        self.bytes -= entry[2]
        self.st._bmap[entry[3]].live -= 1
        subjects = self.st._subjects
        ss = subjects[entry[0]]
        if ss.count() == 1:
            del subjects[entry[0]]
        else:
            ss.remove(seq)
