"""The JetStream message-store interface, its records and errors, and the
in-memory sequence/subject index both stores share.

Theory of operation
-------------------
A store holds one stream's messages under consecutive sequence numbers.
`IndexedStore` keeps, in memory, a map seq -> *entry* for every live
message, an entry being a tuple whose first three items are (subject, ts,
size); the concrete store adds where the body lives (MemStore: the bytes,
in a dict; FileStore: block and offset, in filestore_index.DenseIndex).
Beside it, one `SubjectSeqs` per subject: the sorted sequences of that
subject's live messages, so that a literal subject's count, first and last
are O(1) and "first message of subject S at or after N" is a bisect.

The base class implements the semantics once (nats-server's, from its
memstore/filestore): limits remove the oldest messages; purge with subject,
seq and keep; compact; max_age and per-message TTL (store_expiry.py; a TTL
of -1, "never", spares a message from max_age); pending counts. The
concrete store provides `_msg_size`, `_write`, `_read`, and is told of
removals by `_dropped` (one message), `_dropped_many` (a purge by subject,
a compact), `_dropped_all` (everything) and `_commit` (the end of each
public change); a store with a faster index than a dict overrides
`_new_index` and the bulk helpers `_live_between`, `_count_live`,
`_dead_between`, `_pop_entries` and `_first_live`.

Conventions: times are integer nanoseconds since the epoch (UTC); `ttl` and
`max_age` are durations in nanoseconds; subjects are str; hdr and msg are
bytes (hdr is the whole `NATS/1.0\\r\\n...\\r\\n\\r\\n` block, or b"").
An empty store has first_seq == last_seq + 1 (0/0 when new), as nats-server.

Threads: every method runs on the reactor thread, except `FileStore.sync()`
and `FileStore.open_async()` (see filestore.py).
"""

import heapq
import time
from array import array
from bisect import bisect_left
from typing import NamedTuple

from ..sublist import is_literal, subject_matches
from .store_expiry import StoreExpiry


class StoredMsg(NamedTuple):
    subject: str
    seq: int
    hdr: bytes
    msg: bytes
    ts: int


class StreamState(NamedTuple):
    msgs: int
    bytes: int
    first_seq: int
    first_ts: int
    last_seq: int
    last_ts: int
    num_deleted: int
    num_subjects: int


class StoreLimits(NamedTuple):
    """0 or -1 means unlimited, as in nats-server's stream config."""
    max_msgs: int = -1
    max_bytes: int = -1
    max_age: int = 0            # ns
    max_msgs_per_subject: int = -1
    max_msg_size: int = -1


class StoreError(Exception):
    """Disk full, I/O error...: the message names the file and the cause."""


class StoreCorrupt(StoreError):
    """A store that cannot be read at open: says which file and what is wrong."""


class StoreNewerFormat(StoreError):
    """The store was written by a newer format version than this code reads."""


class StoreMsgTooLarge(StoreError):
    """hdr + msg exceed the store's max_msg_size."""


def _limit(v):
    """nats-server treats 0 and negative limits as 'no limit'."""
    return v if v and v > 0 else 0


class SubjectSeqs:
    """The sorted sequences of one subject's live messages. Appends are at
    the end (sequences only grow) and most removals at the front (limits,
    purges), so the front is a moving `head` index, compacted now and then
    instead of shifting the array on every removal."""

    __slots__ = ("subject", "seqs", "head")

    def __init__(self, subject):
        self.subject = subject      # the one str object entries share
        self.seqs = array("q")
        self.head = 0

    def count(self):
        return len(self.seqs) - self.head

    def first(self):
        return self.seqs[self.head]

    def last(self):
        return self.seqs[-1]

    def remove(self, seq):
        seqs = self.seqs
        if seqs[self.head] == seq:
            self.head += 1
            if self.head >= 64 and self.head * 2 >= len(seqs):
                del seqs[:self.head]
                self.head = 0
        elif seqs[-1] == seq:
            seqs.pop()
        else:
            i = bisect_left(seqs, seq, self.head)
            if i < len(seqs) and seqs[i] == seq:
                del seqs[i]

    def trim_below(self, seq):
        """Drop every sequence < seq; returns how many."""
        i = bisect_left(self.seqs, seq, self.head)
        n = i - self.head
        self.head = i
        if self.head * 2 >= len(self.seqs):
            del self.seqs[:self.head]
            self.head = 0
        return n

    def at_or_after(self, seq):
        """The first sequence >= seq, or 0."""
        i = bisect_left(self.seqs, seq, self.head)
        return self.seqs[i] if i < len(self.seqs) else 0

    def count_from(self, seq):
        return len(self.seqs) - bisect_left(self.seqs, seq, self.head)


def _is_all(subject_filter):
    return not subject_filter or subject_filter == ">"


class IndexedStore(StoreExpiry):
    """The MsgStore interface over an in-memory index (see the module doc);
    expiry (max_age, TTLs) is StoreExpiry's (store_expiry.py).
    Subclasses: MemStore (memstore.py), FileStore (filestore.py)."""

    def __init__(self, limits=None):
        self.limits = limits or StoreLimits()
        self._idx = self._new_index()   # seq -> entry (subject, ts, size, ...)
        self._subjects = {}         # subject -> SubjectSeqs
        self._first = 0
        self._last = 0
        self._last_ts = 0
        self._bytes = 0
        self._ttls = []             # heap of (expires_ns, seq)
        self._never = set()         # seqs whose Nats-TTL is "never": max_age spares them
        self._aged = 0              # max_age has passed every seq below this (see _expire_aged)
        self._consumers = {}        # name -> bytes (in memory here)

    # -- hooks for the concrete store -------------------------------------

    def _new_index(self):
        """An empty seq -> entry map (a dict here; FileStore: arrays)."""
        return {}

    def _live_between(self, lo, hi):
        """The live sequences in [lo, hi), in order."""
        idx = self._idx
        return [s for s in range(lo, hi) if s in idx]

    def _pop_entries(self, seqs):
        """Remove the live `seqs` from the index: ([(seq, entry)], bytes)."""
        pop = self._idx.pop
        items = []
        add = items.append
        nbytes = 0
        for s in seqs:
            e = pop(s)
            nbytes += e[2]
            add((s, e))
        return items, nbytes

    def _count_live(self, lo, hi):
        """How many live sequences in [lo, hi) (within first..last)."""
        idx = self._idx
        if lo - self._first < hi - lo:
            return len(idx) - sum(1 for s in range(self._first, lo) if s in idx) \
                - sum(1 for s in range(hi, self._last + 1) if s in idx)
        return sum(1 for s in range(lo, hi) if s in idx)

    def _first_live(self):
        """The lowest live sequence (the index is not empty)."""
        idx = self._idx
        s = self._first
        while s not in idx:
            s += 1
        return s

    def _msg_size(self, subject, hdr, msg):
        raise NotImplementedError

    def _write(self, seq, subject, hdr, msg, ts, ttl, size):
        """Persist one message; return its entry (subject, ts, size, ...)."""
        raise NotImplementedError

    def _read(self, seq, entry):
        raise NotImplementedError

    def _dropped(self, seq, entry, erase):
        """`seq` left the index (self._first already moved past it if it was
        the first)."""

    def _dropped_many(self, items):
        """Many (seq, entry) left the index at once (purge by subject,
        compact); self._first is already up to date. A store overriding
        `_dropped` overrides this too."""

    def _dropped_all(self):
        """Every message left the index at once (purge)."""

    def _skipped(self, seq, ts):
        """A sequence was reserved with no message."""

    def _commit(self):
        """A public operation that changed the store ends here (FileStore
        with sync_always: flush and fsync before returning)."""

    # -- writing ------------------------------------------------------------

    def store_msg(self, subject, hdr, msg, ts=None, ttl=0):
        """Append a message; then remove the oldest ones over the limits.
        Returns (seq, ts)."""
        hdr = hdr or b""
        max_size = _limit(self.limits.max_msg_size)
        if max_size and len(hdr) + len(msg) > max_size:
            raise StoreMsgTooLarge("message size exceeds maximum allowed")
        if ts is None:
            ts = time.time_ns()
        seq = self._last + 1
        size = self._msg_size(subject, hdr, msg)
        ss = self._subjects.get(subject)
        if ss is None:
            ss = SubjectSeqs(subject)
        entry = self._write(seq, ss.subject, hdr, msg, ts, ttl, size)
        # Indexed only once written: a write error leaves the index as it was.
        self._subjects[ss.subject] = ss
        ss.seqs.append(seq)
        if not self._idx:
            self._first = seq
        self._idx[seq] = entry
        self._last = seq
        self._last_ts = ts
        self._bytes += size
        if ttl > 0:
            heapq.heappush(self._ttls, (ts + ttl, seq))
        elif ttl < 0:
            self._never.add(seq)
        self._enforce_limits(ss)
        return seq, ts

    def skip_msg(self):
        seq = self._last + 1
        ts = time.time_ns()
        self._last = seq
        self._last_ts = ts
        if not self._idx:
            self._first = seq + 1
        self._skipped(seq, ts)
        self._commit()
        return seq

    def _enforce_limits(self, ss=None):
        lim = self.limits
        per_subj = _limit(lim.max_msgs_per_subject)
        if per_subj:
            if ss is not None:
                while ss.count() > per_subj:
                    self._remove(ss.first())
            else:
                for ss in list(self._subjects.values()):
                    while ss.count() > per_subj:
                        self._remove(ss.first())
        max_msgs = _limit(lim.max_msgs)
        if max_msgs and len(self._idx) > max_msgs:
            self._remove_oldest(lambda: len(self._idx) > max_msgs)
        max_bytes = _limit(lim.max_bytes)
        if max_bytes and self._bytes > max_bytes:
            self._remove_oldest(lambda: self._bytes > max_bytes)

    def _remove_oldest(self, over):
        while self._idx and over():
            self._remove(self._first)

    def update_limits(self, limits, expire=True):
        """Apply new limits at once; `expire=False`: max_age is left to the
        caller's next expire() (a stream with delete markers writes them)."""
        self.limits = limits
        self._enforce_limits()
        if expire and _limit(limits.max_age):
            self.expire(time.time_ns())
        self._commit()

    # -- removing -------------------------------------------------------------

    def remove_msg(self, seq, erase=False):
        removed = self._remove(seq, erase)
        if removed:
            self._commit()
        return removed

    def _remove(self, seq, erase=False):
        entry = self._idx.pop(seq, None)
        if entry is None:
            return False
        subject = entry[0]
        ss = self._subjects[subject]
        if ss.count() == 1:
            del self._subjects[subject]
        else:
            ss.remove(seq)
        self._bytes -= entry[2]
        if self._never:
            self._never.discard(seq)
        if seq == self._first:
            self._advance_first()
        self._dropped(seq, entry, erase)
        return True

    def _advance_first(self):
        """Move _first to the lowest live sequence (or last+1 when empty).
        Each sequence is passed over once in the store's life."""
        if not self._idx:
            self._first = self._last + 1
        else:
            self._first = self._first_live()

    def purge(self, subject=None, seq=0, keep=0):
        """nats-server's PurgeEx: with no subject (or '>'): everything, or
        everything below `seq`, or all but the newest `keep`. With a subject
        filter: its messages below `seq` (if given), keeping the newest
        `keep` of them. Returns the number removed."""
        if _is_all(subject):
            if not keep and not seq:
                return self._purge_all()
            if seq > 1:
                return self.compact(seq)
            if keep > 0:
                if keep >= len(self._idx):
                    return 0
                return self.compact(self._last - keep + 1)
            return 0
        matching = self._matching(subject)
        total = sum(ss.count() for ss in matching.values())
        if not total:
            return 0
        if keep > 0:
            if keep >= total:
                return 0
            total -= keep
        if len(matching) == 1:
            ss = next(iter(matching.values()))
            victims = ss.seqs[ss.head:ss.head + total]
        else:
            victims = sorted(s for ss in matching.values()
                             for s in ss.seqs[ss.head:])[:total]
        if seq > 1:
            victims = victims[:bisect_left(victims, seq)]
        if not victims:
            return 0
        # The victims are every matching message up to the last of them, so
        # each subject loses a prefix of its array: one trim per subject.
        cut = victims[-1] + 1
        for subj, ss in matching.items():
            ss.trim_below(cut)
            if not ss.count():
                del self._subjects[subj]
        self._remove_entries(victims)
        self._commit()
        return len(victims)

    def _remove_entries(self, seqs):
        """Drop `seqs` (live, sorted) from the index, whose subject arrays
        the caller already updated: one pass, one bulk hook call."""
        items, nbytes = self._pop_entries(seqs)
        self._bytes -= nbytes
        if self._never:
            self._never.difference_update(seqs)
        if seqs[0] <= self._first:
            self._advance_first()
        self._dropped_many(items)

    def _purge_all(self):
        n = len(self._idx)
        self._idx = self._new_index()
        self._subjects = {}
        self._bytes = 0
        self._ttls = []
        self._never = set()
        self._first = self._last + 1
        self._dropped_all()
        self._commit()
        return n

    def compact(self, seq):
        """Remove every message below `seq`; returns how many. Beyond the
        last sequence the store is emptied and continues at `seq`."""
        if seq <= self._first:
            return 0
        if seq > self._last:
            n = self._purge_all()
            if seq > self._last + 1:
                self._last = seq - 1
                self._first = seq
                self._skipped(seq - 1, self._last_ts)
                self._commit()
            return n
        lo = self._first
        idx = self._idx
        victims = self._live_between(lo, seq)
        if len(victims) > len(self._subjects):
            # Many messages: trim each subject's array once.
            for subj, ss in list(self._subjects.items()):
                if ss.first() < seq:
                    ss.trim_below(seq)
                    if not ss.count():
                        del self._subjects[subj]
        else:
            for s in victims:
                subj = idx[s][0]
                ss = self._subjects[subj]
                if ss.count() == 1:
                    del self._subjects[subj]
                else:
                    ss.remove(s)
        if victims:
            self._remove_entries(victims)
        self._first = max(self._first, seq)
        self._advance_first()
        self._commit()
        return len(victims)

    # -- reading --------------------------------------------------------------

    def load_msg(self, seq):
        entry = self._idx.get(seq)
        if entry is None:
            return None
        return self._read(seq, entry)

    def _matching(self, subject_filter):
        """subject -> SubjectSeqs for the subjects the filter matches."""
        if _is_all(subject_filter):
            return self._subjects
        if is_literal(subject_filter):
            ss = self._subjects.get(subject_filter)
            return {subject_filter: ss} if ss is not None else {}
        return {s: ss for s, ss in self._subjects.items()
                if subject_matches(subject_filter, s)}

    def load_last(self, subject_filter):
        if _is_all(subject_filter):
            s = self._last
            idx = self._idx
            while s >= self._first:
                if s in idx:
                    return self._read(s, idx[s])
                s -= 1
            return None
        if is_literal(subject_filter):
            ss = self._subjects.get(subject_filter)
            return self.load_msg(ss.last()) if ss is not None else None
        best = 0
        for ss in self._matching(subject_filter).values():
            if ss.last() > best:
                best = ss.last()
        return self.load_msg(best) if best else None

    def load_next(self, subject_filter, start_seq):
        start = max(start_seq, self._first)
        idx = self._idx
        if _is_all(subject_filter):
            for s in range(start, self._last + 1):
                entry = idx.get(s)
                if entry is not None:
                    return self._read(s, entry)
            return None
        matching = self._matching(subject_filter)
        if len(matching) < self._last - start + 1:
            best = 0
            for ss in matching.values():
                s = ss.at_or_after(start)
                if s and (not best or s < best):
                    best = s
            return self._read(best, idx[best]) if best else None
        for s in range(start, self._last + 1):
            entry = idx.get(s)
            if entry is not None and entry[0] in matching:
                return self._read(s, entry)
        return None

    def state(self):
        n = len(self._idx)
        first_ts = self._idx[self._first][1] if n else 0
        deleted = (self._last - self._first + 1 - n) if n else 0
        return StreamState(n, self._bytes, self._first, first_ts, self._last,
                           self._last_ts, deleted, len(self._subjects))

    def deleted_seqs(self):
        """The interior sequences with no message (for stream info's
        `deleted` list); costs a scan of first..last."""
        if not self._idx:
            return []
        return self._dead_between(self._first, self._last + 1)

    def _dead_between(self, lo, hi):
        idx = self._idx
        return [s for s in range(lo, hi) if s not in idx]

    def subjects_state(self, subject_filter=">"):
        return {s: ss.count() for s, ss in self._matching(subject_filter).items()}

    def subject_count(self, subject):
        ss = self._subjects.get(subject)
        return ss.count() if ss is not None else 0

    def num_pending(self, start_seq, subject_filter=">", last_per_subject=False):
        """Messages at or after start_seq that match; with last_per_subject,
        the matching subjects whose last message is at or after start_seq."""
        start = max(start_seq, self._first)
        if _is_all(subject_filter) and not last_per_subject:
            n = len(self._idx)
            if start <= self._first:
                return n
            if start > self._last:
                return 0
            if self._last - self._first + 1 == n:      # no interior deletes
                return self._last - start + 1
            return self._count_live(start, self._last + 1)
        matching = self._matching(subject_filter)
        if last_per_subject:
            return sum(1 for ss in matching.values() if ss.last() >= start)
        return sum(ss.count_from(start) for ss in matching.values())

    # -- consumer state: kept in memory here (FileStore persists it) ----------

    def write_consumer_state(self, name, data):
        self._consumers[name] = bytes(data)

    def read_consumer_state(self, name):
        return self._consumers.get(name)

    def remove_consumer_state(self, name):
        self._consumers.pop(name, None)

    # -- life cycle -------------------------------------------------------------

    def flush(self):
        pass

    def sync(self):
        pass

    def close(self):
        pass

    def delete(self):
        self._purge_all()
