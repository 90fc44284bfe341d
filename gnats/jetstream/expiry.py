"""A stream's expiry timer: max_age and message TTLs take effect when they
fall due, as nats-server times each expiry, and not up to a second late on
the housekeeping pass (manager.py), which stays as the backstop (and arms
this timer after a restart or a mirror's copies).

One reactor timer per stream, at the earliest expiry known: a publish only
moves it earlier (one comparison), and each expiry pass (Stream.expire)
sets it again from the store's next expiry. A next expiry that is not in
the future after a pass (nothing the pass could remove) arms nothing, so
the timer never spins; the housekeeping pass retries each second.

Threads: the reactor's only.
"""

import time


class ExpiryTimer:
    __slots__ = ("stream", "reactor", "at", "timer")

    def __init__(self, stream, reactor):
        self.stream = stream
        self.reactor = reactor      # None: no timer (a store without a server)
        self.at = 0                 # ns the pending timer is for, 0: none
        self.timer = None

    def due(self, when_ns):
        """Something expires at `when_ns`: run no later than that."""
        if (self.at and self.at <= when_ns) or self.reactor is None:
            return
        if self.timer is not None:
            self.timer.cancel()
        self.at = when_ns
        # a millisecond late rather than early: a run before the due time
        # would find nothing and have to set the timer again
        self.timer = self.reactor.call_later(max(0.0, (when_ns - time.time_ns()) / 1e9) + 0.001, self._run)

    def _run(self):
        self.timer = None
        self.at = 0
        stream = self.stream
        if not stream.closed and stream.expire(time.time_ns()):
            stream.host.js.touch(stream.store)

    def cancel(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.at = 0
