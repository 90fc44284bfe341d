"""DenseIndex: the FileStore's seq -> entry map in parallel arrays.

A dict of tuples cost about 270 bytes per stored message (measured: 1M
messages, 268 MB); sequences are dense, so parallel arrays indexed by
`seq - base` hold the same facts in 28 bytes, and nothing in them is
tracked by the garbage collector. It offers the part of the dict API that
store.IndexedStore and the file store use (`in`, get, [], pop, len,
assignment of a new last sequence) and hands out the same entry tuples:
(subject, ts, size, block number, offset, record length).

A slot whose record length is 0 holds no message. The slots before the
first live one (`dead`) are cut off once they are at least half the arrays,
so removals at the front cost O(1) amortized; subjects are stored as small
ids, recycled when their last message goes.
"""

from array import array
from itertools import compress, repeat
from operator import not_

_TRIM_MIN = 4096


class DenseIndex:

    __slots__ = ("base", "dead", "count", "ts", "loc", "rlen", "size", "sid",
                 "names", "refs", "ids", "free")

    def __init__(self):
        self.base = 0               # seq of slot 0
        self.dead = 0               # slots before the first live one (a lower bound)
        self.count = 0
        self.ts = array("q")
        self.loc = array("Q")       # block number << 32 | offset
        self.rlen = array("I")      # record length; 0: no message
        self.size = array("I")
        self.sid = array("I")
        self.names = []             # subject id -> subject
        self.refs = array("I")      # subject id -> live messages
        self.ids = {}               # subject -> id
        self.free = []

    def __len__(self):
        return self.count

    def __bool__(self):
        return self.count > 0

    def __contains__(self, seq):
        i = seq - self.base
        return 0 <= i < len(self.rlen) and self.rlen[i] != 0

    def get(self, seq, default=None):
        i = seq - self.base
        if i < 0 or i >= len(self.rlen) or not self.rlen[i]:
            return default
        loc = self.loc[i]
        return (self.names[self.sid[i]], self.ts[i], self.size[i], loc >> 32,
                loc & 0xFFFFFFFF, self.rlen[i])

    def __getitem__(self, seq):
        e = self.get(seq)
        if e is None:
            raise KeyError(seq)
        return e

    def __setitem__(self, seq, entry):
        subject, ts, size, bnum, off, n = entry
        end = self.base + len(self.rlen)
        if seq < end:
            raise ValueError("sequence %d is not after the last (%d)" % (seq, end - 1))
        if not self.count:
            self._clear(seq)
        elif seq > end:
            gap = seq - end
            for a in (self.ts, self.loc, self.rlen, self.size, self.sid):
                a.extend(repeat(0, gap))
        sid = self.ids.get(subject)
        if sid is None:
            sid = self._new_sid(subject)
        self.refs[sid] += 1
        self.ts.append(ts)
        self.loc.append(bnum << 32 | off)
        self.rlen.append(n)
        self.size.append(size)
        self.sid.append(sid)
        self.count += 1

    def _new_sid(self, subject):
        if self.free:
            sid = self.free.pop()
            self.names[sid] = subject
        else:
            sid = len(self.names)
            self.names.append(subject)
            self.refs.append(0)
        self.ids[subject] = sid
        return sid

    def pop(self, seq, *default):
        i = seq - self.base
        if i < 0 or i >= len(self.rlen) or not self.rlen[i]:
            if default:
                return default[0]
            raise KeyError(seq)
        sid = self.sid[i]
        loc = self.loc[i]
        entry = (self.names[sid], self.ts[i], self.size[i], loc >> 32,
                 loc & 0xFFFFFFFF, self.rlen[i])
        self.rlen[i] = 0
        self.count -= 1
        self.refs[sid] -= 1
        if not self.refs[sid]:
            del self.ids[self.names[sid]]
            self.names[sid] = None
            self.free.append(sid)
        if not self.count:
            self._clear(self.base + len(self.rlen))
        elif i == self.dead:
            self._trim()
        return entry

    def pop_many(self, seqs):
        """pop() for many live sequences at once: ([(seq, entry)], bytes)."""
        base, rlen, sida, tsa, loca, sizea = (self.base, self.rlen, self.sid, self.ts,
                                              self.loc, self.size)
        names, refs = self.names, self.refs
        items = []
        add = items.append
        nbytes = 0
        end = len(rlen)
        for seq in seqs:
            i = seq - base
            if i < 0 or i >= end or not rlen[i]:
                continue
            sid = sida[i]
            loc = loca[i]
            size = sizea[i]
            add((seq, (names[sid], tsa[i], size, loc >> 32, loc & 0xFFFFFFFF, rlen[i])))
            nbytes += size
            rlen[i] = 0
            refs[sid] -= 1
            if not refs[sid]:
                del self.ids[names[sid]]
                names[sid] = None
                self.free.append(sid)
        self.count -= len(items)
        if not self.count:
            self._clear(base + end)
        else:
            self._trim()
        return items, nbytes

    def first(self):
        """The lowest live sequence (the index must not be empty)."""
        rlen = self.rlen
        i = self.dead
        while not rlen[i]:
            i += 1
        self.dead = i
        return self.base + i

    def live_in(self, lo, hi):
        """The live sequences in [lo, hi), in order."""
        a = max(lo - self.base, 0)
        b = min(hi - self.base, len(self.rlen))
        if a >= b:
            return []
        return list(compress(range(self.base + a, self.base + b), self.rlen[a:b]))

    def count_in(self, lo, hi):
        """How many live sequences in [lo, hi)."""
        a = max(lo - self.base, 0)
        b = min(hi - self.base, len(self.rlen))
        return (b - a) - self.rlen[a:b].count(0) if a < b else 0

    def dead_in(self, lo, hi):
        """The sequences in [lo, hi) with no message."""
        end = self.base + len(self.rlen)
        if lo >= end or not self.rlen:
            return list(range(lo, hi))
        before = list(range(lo, min(hi, self.base)))
        after = list(range(max(lo, end), hi))
        a = max(lo - self.base, 0)
        b = min(hi - self.base, len(self.rlen))
        inside = list(compress(range(self.base + a, self.base + b), map(not_, self.rlen[a:b])))
        return before + inside + after

    def _trim(self):
        self.first()
        k = self.dead
        if k >= _TRIM_MIN and 2 * k >= len(self.rlen):
            for a in (self.ts, self.loc, self.rlen, self.size, self.sid):
                del a[:k]
            self.base += k
            self.dead = 0

    def _clear(self, base):
        for a in (self.ts, self.loc, self.rlen, self.size, self.sid):
            del a[:]
        self.base = base
        self.dead = 0
