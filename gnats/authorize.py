"""Running credential checks without stalling the reactor: one flow for
clients, routes and reloads (auth.py decides; this module schedules).

A bcrypt comparison costs ~0.1 s by design. `Authorizer.check` runs such a
check in a small worker pool and hands the verdict back to the reactor
thread through `call_soon_threadsafe`; a plain or token check (or a cached
bcrypt success) runs inline. Two workers: bcrypt releases the GIL, and a
flood of connections queues instead of spawning a thread each.

The queue is served newest first, and a check whose connection has closed
meanwhile (its auth timer fired) is dropped unrun. A flood of CONNECTs
with junk signatures (~3 ms of GIL-bound Ed25519 each on a busy box) then
delays a real client arriving behind it by one check, not by the whole
backlog: served oldest first, 1,000 such CONNECTs made it time out.

`Authorizer.authorize` is the CONNECT path built on it, shared by clients
and accepted routes:
  * the connection reads nothing while its slow check runs (`paused`, D4):
    reading on into `pend` let one unauthenticated peer queue ~40 MB;
  * a verdict reached under credentials that a reload replaced meanwhile is
    not used: the CONNECT is checked again against those in force (D1/M3);
  * a refusal sends -ERR and closes; an acceptance cancels the auth timer,
    calls `done(user)` and then goes on with the input that arrived with
    the CONNECT (unless `done` refused the connection after all).
Reload re-checks of live connections (reload.py) use `check` directly.
"""

import collections
import threading


class Authorizer:
    """The auth workers and the verdict hand-back. Reactor thread only,
    except the checks themselves."""

    WORKERS = 2

    def __init__(self, reactor):
        self.reactor = reactor
        self._jobs = collections.deque()
        self._cv = threading.Condition()
        self._threads = []
        self._stopping = False

    def check(self, auth, obj, verdict, *args, ctx=None, conn=None):
        """Check CONNECT `obj` (with the connection's auth.AuthContext `ctx`,
        clients only) against `auth`; call `verdict(*args, user)` on the
        reactor thread, user as `auth.identify` answers it (a UserEntry for
        clients, a name for routes; None: refused). A fast check calls it
        at once, a slow one (bcrypt, an nkey signature) after the worker is
        done. conn: the connection checked, if any (a slow check is skipped
        once it has closed)."""
        if not auth.is_slow(obj):
            verdict(*args, auth.identify(obj, ctx))
            return
        with self._cv:
            self._jobs.append((auth, obj, ctx, verdict, args, conn))
            if len(self._threads) < self.WORKERS:
                t = threading.Thread(target=self._worker, name="auth", daemon=True)
                self._threads.append(t)
                t.start()
            self._cv.notify()

    def _worker(self):
        # runs in a worker thread
        while True:
            with self._cv:
                while not self._jobs and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    return
                auth, obj, ctx, verdict, args, conn = self._jobs.pop()    # newest
            if conn is not None and conn.closed:
                continue
            try:
                user = auth.identify(obj, ctx)
            except Exception:       # a bug: refuse rather than leave it paused
                user = None
            self.reactor.call_soon_threadsafe(verdict, *args, user)

    def authorize(self, conn, obj, current, done, ctx=None):
        """A CONNECT that must authenticate, against the authorization
        `current()` returns (the one in force: a reload replaces it)."""
        auth = current()
        if auth.is_slow(obj):
            conn.paused = True
        self.check(auth, obj, self._verdict, conn, obj, auth, current, done, ctx, ctx=ctx,
                   conn=conn)

    def _verdict(self, conn, obj, auth, current, done, ctx, user):
        if conn.closed:
            return
        if auth is not current():
            # a reload replaced the credentials while this check ran:
            # check again against those in force now
            self.authorize(conn, obj, current, done, ctx)
            return
        if user is None:
            conn.refuse_auth()
            return
        resume = conn.paused
        conn.paused = False
        for t in conn.timers:
            if t.fn == conn.auth_timeout:
                t.cancel()
        done(user)
        if conn.closed or conn.closing_after_flush:
            return                  # done() refused it after all
        if resume and conn.has_input():
            conn.feed(b"")
        self.reactor.dirty.add(conn)

    def close(self):
        """Stop the workers; a check still running is waited for (an
        embedded server leaves no thread behind)."""
        with self._cv:
            self._stopping = True
            self._jobs.clear()
            self._cv.notify_all()
        for t in self._threads:
            t.join()
