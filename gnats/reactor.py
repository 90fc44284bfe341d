"""The event loop: one thread, one selector, a timer heap, and the end-of-round
flush that makes batching work.

Theory of operation
-------------------
Each registered object (listener, client, route) is the selector key's `data`
and has `on_readable()` / `on_writable()`. One turn of the loop:

  1. select(), with the timeout of the nearest timer;
  2. dispatch every ready object; reading and parsing only *append* to the
     receivers' output buffers and add them to `dirty`;
  3. flush every dirty connection once (one send per connection per turn:
     no syscall per message);
  4. run due timers, then calls queued from other threads (the HTTP monitor,
     signal handlers) through a self-pipe.

Internal errors: a handler, timer or queued call that raises is a bug, but
it costs one connection, never the loop. The error is logged as "internal
error" with its traceback, then handed to `on_error` (a callable taking the
exception, run on the loop thread; None by default). Embedders set it:
gnats.embed collects the errors so that stop() raises them.
"""

import heapq
import selectors
import socket
import threading
import time
import traceback
from collections import deque

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE


class Timer:
    __slots__ = ("when", "fn", "args", "cancelled")

    def __init__(self, when, fn, args):
        self.when = when
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self):
        self.cancelled = True
        self.fn = self.args = None   # drop references early

    def __lt__(self, other):
        return self.when < other.when


class Reactor:
    def __init__(self, log=None, on_error=None):
        self.sel = selectors.DefaultSelector()
        self.timers = []
        self.dirty = set()          # connections with output to flush this turn
        self.running = False
        self.log = log
        self.on_error = on_error    # see "Internal errors" above
        # Run before the dirty connections flush (JetStream: buffered store
        # writes reach the OS before the acks that confirm them leave).
        self.before_flush = None
        self._calls = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._waker = _Waker(self._wake_r)
        self.sel.register(self._wake_r, EVENT_READ, self._waker)
        self.thread_id = None

    # -- registration ---------------------------------------------------
    def register(self, sock, events, obj):
        self.sel.register(sock, events, obj)

    def modify(self, sock, events, obj):
        self.sel.modify(sock, events, obj)

    def unregister(self, sock):
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError, OSError):
            pass

    # -- timers ---------------------------------------------------------
    def call_later(self, delay, fn, *args):
        t = Timer(time.monotonic() + delay, fn, args)
        timers = self.timers
        heapq.heappush(timers, t)
        if len(timers) > self._compact_at:
            self._compact_timers()
        return t

    _compact_at = 1024

    def _compact_timers(self):
        # A cancelled timer stays in the heap until it is due: every closed
        # client leaves its 120 s ping timer behind, so connection churn of
        # N/s would hold N*120 dead timers. Drop them whenever the heap has
        # doubled since the last pass (amortized O(1) per timer). In place:
        # run() holds a reference to the list.
        timers = self.timers
        timers[:] = [t for t in timers if not t.cancelled]
        heapq.heapify(timers)
        self._compact_at = max(1024, 2 * len(timers))

    def call_soon_threadsafe(self, fn, *args):
        self._calls.append((fn, args))
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass    # the pipe is full: the loop is already going to wake

    # -- the loop -------------------------------------------------------
    def stop(self):
        self.running = False
        self.call_soon_threadsafe(lambda: None)

    def run(self):
        self.running = True
        self.thread_id = threading.get_ident()
        sel = self.sel
        timers = self.timers
        monotonic = time.monotonic
        heappop = heapq.heappop
        while self.running:
            if self.dirty or self._calls:
                timeout = 0
            elif timers:
                timeout = timers[0].when - monotonic()
                if timeout < 0:
                    timeout = 0
            else:
                timeout = None
            events = sel.select(timeout)
            for key, mask in events:
                obj = key.data
                try:
                    if mask & EVENT_READ:
                        obj.on_readable()
                    if mask & EVENT_WRITE and not obj.closed:
                        obj.on_writable()
                except Exception as e:
                    # a bug met while serving one connection must not take
                    # the server, and every other client, down with it
                    self._report(e)
                    self._drop(obj)
            self.flush_dirty()
            if timers:
                now = monotonic()
                while timers and timers[0].when <= now:
                    t = heappop(timers)
                    if not t.cancelled:
                        try:
                            t.fn(*t.args)
                        except Exception as e:    # a timer must not kill the loop
                            self._report(e)
                self.flush_dirty()
            if self._calls:
                self._run_calls()
                self.flush_dirty()

    def flush_dirty(self):
        if self.before_flush is not None:
            self.before_flush()
        dirty = self.dirty
        while dirty:
            self.dirty = set()
            for c in dirty:
                if not c.closed:
                    c.flush()
            dirty = self.dirty

    def _run_calls(self):
        # only the calls queued before this turn: threads that keep queueing
        # (monitor requests) must not keep the loop from its sockets
        calls = self._calls
        for _ in range(len(calls)):
            fn, args = calls.popleft()
            try:
                fn(*args)
            except Exception as e:
                self._report(e)

    def _drop(self, obj):
        """Close a connection whose handler raised (listeners stay)."""
        close = getattr(obj, "close_conn", None)
        if close is not None and not obj.closed:
            try:
                close("Internal Error", flush=False)
            except Exception as e:
                self._report(e)

    def _report(self, e):
        if self.log is not None:
            self.log.error("internal error: %r\n%s" % (e, traceback.format_exc()))
        hook = self.on_error
        if hook is not None:
            try:
                hook(e)
            except Exception as he:     # the hook must not take the loop down either
                if self.log is not None:
                    self.log.error("internal error in on_error hook: %r" % he)

    def close(self):
        try:
            self.sel.unregister(self._wake_r)
        except (KeyError, ValueError):
            pass
        self._wake_r.close()
        self._wake_w.close()
        self.sel.close()


class _Waker:
    closed = False

    def __init__(self, sock):
        self.sock = sock

    def on_readable(self):
        try:
            while self.sock.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def on_writable(self):
        pass
