"""Expiry for the stores: max_age and per-message TTLs, as nats-server's
memstore/filestore expireMsgs do it, over IndexedStore's index (a mixin of
store.IndexedStore, which holds the state it reads: `_idx`, `_subjects`,
`_first`, `_last`, `_ttls` (heap of (expires_ns, seq)), `_never` (the seqs
stored with Nats-TTL: never, which max_age spares) and `_aged`).

The max_age pass removes from the front; with spared messages in front it
walks on from where it last stopped (`_aged`), so each sequence is passed
over once in the store's life. TTLs due together go in sequence order.
`expire(now, on_last)` hands a subject's last message to `on_last` (the
stream's subject delete markers) before removing it.
"""

import heapq


def _limit(v):
    return v if v and v > 0 else 0


class StoreExpiry:

    def expire(self, now_ns, on_last=None):
        """Remove the messages older than max_age (except those whose TTL is
        "never", as nats-server) and those whose TTL passed, in that order
        (TTLs due together in sequence order). `on_last(seq, subject)`
        (subject delete markers) is called instead for a message that is the
        last of its subject; what it leaves of `seq` is removed after it.
        Returns how many messages expired (0: the store did not change)."""
        n = 0
        max_age = _limit(self.limits.max_age)
        if max_age:
            n = self._expire_aged(now_ns - max_age, on_last)
        ttls = self._ttls
        if ttls and ttls[0][0] <= now_ns:
            due = []
            while ttls and ttls[0][0] <= now_ns:
                due.append(heapq.heappop(ttls)[1])
            due.sort()
            for seq in due:
                if seq in self._idx:
                    self._expire_one(seq, on_last)
                    n += 1
        if n:
            self._commit()
        return n

    def _expire_aged(self, cutoff, on_last):
        idx = self._idx
        n = 0
        if not self._never:
            while idx and idx[self._first][1] <= cutoff:
                self._expire_one(self._first, on_last)
                n += 1
            return n
        # Spared messages stay in front: walk on from where the last pass
        # stopped (every live seq below it is spared), so each sequence is
        # passed over once in the store's life.
        seq = max(self._first, self._aged)
        never = self._never
        while seq <= self._last:
            entry = idx.get(seq)
            if entry is not None:
                if entry[1] > cutoff:
                    break
                if seq not in never:
                    self._expire_one(seq, on_last)
                    n += 1
            seq += 1
        self._aged = seq
        return n

    def _next_unspared(self):
        """The first live seq max_age would remove (not "never"), or 0."""
        idx, never = self._idx, self._never
        seq = max(self._first, self._aged)
        while seq <= self._last:
            if seq in idx and seq not in never:
                return seq
            seq += 1
        return 0

    def _expire_one(self, seq, on_last):
        if on_last is not None:
            subject = self._idx[seq][0]
            if self._subjects[subject].count() == 1:
                on_last(seq, subject)
        self._remove(seq)

    def next_expiry(self):
        """When expire() next has work (ns), or 0: lets the caller set its timer."""
        t = 0
        max_age = _limit(self.limits.max_age)
        if max_age and self._idx:
            seq = self._next_unspared() if self._never else self._first
            if seq:
                t = self._idx[seq][1] + max_age
        if self._ttls:
            t = min(t, self._ttls[0][0]) if t else self._ttls[0][0]
        return t

