"""Running credential checks without stalling the reactor: one flow for
clients, routes and reloads (auth.py decides; this module schedules).

A bcrypt comparison costs ~0.1 s by design. `Authorizer.check` runs such a
check in a small worker pool and hands the verdict back to the reactor
thread through `call_soon_threadsafe`; a plain or token check (or a cached
bcrypt success) runs inline. Two workers: bcrypt releases the GIL, and a
flood of connections queues instead of spawning a thread each.

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


class Authorizer:
    """The auth worker pool and the verdict hand-back. Reactor thread only,
    except the checks themselves."""

    def __init__(self, reactor):
        self.reactor = reactor
        self._pool = None

    def check(self, auth, obj, verdict, *args, ctx=None):
        """Check CONNECT `obj` (with the connection's auth.AuthContext `ctx`,
        clients only) against `auth`; call `verdict(*args, user)` on the
        reactor thread, user as `auth.identify` answers it (a UserEntry for
        clients, a name for routes; None: refused). A fast check calls it
        at once, a slow one (bcrypt, an nkey signature) after the worker is
        done."""
        if not auth.is_slow(obj):
            verdict(*args, auth.identify(obj, ctx))
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="auth")
        self._pool.submit(self._work, auth, obj, ctx, verdict, args)

    def _work(self, auth, obj, ctx, verdict, args):
        # runs in a worker thread
        user = auth.identify(obj, ctx)
        self.reactor.call_soon_threadsafe(verdict, *args, user)

    def authorize(self, conn, obj, current, done, ctx=None):
        """A CONNECT that must authenticate, against the authorization
        `current()` returns (the one in force: a reload replaces it)."""
        auth = current()
        if auth.is_slow(obj):
            conn.paused = True
        self.check(auth, obj, self._verdict, conn, obj, auth, current, done, ctx, ctx=ctx)

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
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
