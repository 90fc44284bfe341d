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
        self.bytes = 0

    def read_block(self, blk, is_last):
        st = self.st
        with open(blk.path, "rb") as f:
            data = f.read()
        idx = st._idx
        subjects = st._subjects
        by_bytes = self.by_bytes
        ttls = self.ttls
        hsize = fmt.HDR_SIZE
        bnum = blk.num
        end = len(data)
        valid_end = end
        for kind, off, n, seq, ts, ttl, slen, hlen in fmt.scan_block(data):
            if kind == fmt.MSG:
                if seq <= self.max_msg_seq:
                    st._warn("%s: offset %d: message seq %d out of order, skipped"
                             % (blk.path, off, seq))
                    continue
                self.max_msg_seq = seq
                if seq > self.last:
                    self.last, self.last_ts = seq, ts
                a = off + hsize
                sb = data[a:a + slen]
                ss = by_bytes.get(sb)
                if ss is None:
                    subject = sb.decode("utf-8", "surrogateescape")
                    ss = subjects.get(subject)
                    if ss is None:
                        ss = subjects[subject] = SubjectSeqs(subject)
                    by_bytes[sb] = ss
                ss.seqs.append(seq)
                mlen = n - fmt.MIN_RECORD - slen - hlen
                size = fmt.file_msg_size(slen, hlen, mlen)
                idx[seq] = (ss.subject, ts, size, bnum, off, n)
                self.bytes += size
                blk.live += 1
                if ttl > 0:
                    ttls.append((ts + ttl, seq))
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
        blk.crc = crc32(memoryview(data)[:valid_end])      # for the snapshot at close
        if is_last and valid_end < end:
            st.torn_bytes = end - valid_end
            os.truncate(blk.path, valid_end)

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
