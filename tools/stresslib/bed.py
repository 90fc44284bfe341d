"""The fuzzers' in-process test bed: `Bed` is a real Server object (not
started) whose clients sit on socketpairs and are pumped by hand, so the
parser, delivery and close paths run as in production but synchronously;
`run_stream` feeds one stream in the given chunks and returns the output,
whether the client closed, and any crash.
"""

import heapq
import io
import os
import socket
import time
import traceback

from gnats.log import Logger
from gnats.options import Options
from gnats.server import Server
from tests.util import ROOT


class LogSink(io.TextIOBase):
    """Log stream for in-process servers: counts lines, keeps internal errors."""

    def __init__(self):
        self.lines = 0
        self.internal = []

    def write(self, s):
        self.lines += 1
        if "internal error" in s or "Traceback" in s:
            self.internal.append(s)
        return len(s)

    def flush(self):
        pass


class Bed:
    """A real Server object (not started) whose clients sit on socketpairs:
    the parser, delivery and close paths run exactly as in production, but
    synchronously, so every input is checked right away."""

    def __init__(self, trace=False, **opts):
        o = Options()
        for k, v in opts.items():
            setattr(o, k, v)
        self.sink = LogSink()
        self.server = Server(o, Logger(stream=self.sink, trace=trace, debug=trace))
        self.server.port = 4222     # normally set by start(); INFO needs it
        self.peers = []             # long-lived peer sockets, closed with the bed

    def connect(self, connect=None):
        """A new client; returns (client, peer socket) or (None, peer)."""
        a, b = socket.socketpair()
        b.setblocking(False)
        srv = self.server
        srv.accept_client(a, ("127.0.0.1", 1024 + srv.next_cid % 60000))
        c = srv.clients.get(srv.next_cid)
        self.pump(c, b)                     # the INFO line
        if c is not None and connect:
            c.feed(connect)
            self.pump(c, b)
        return c, b

    @staticmethod
    def read(peer):
        out = bytearray()
        for _ in range(100000):
            try:
                d = peer.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if not d:
                break
            out += d
        return bytes(out)

    def pump(self, c, peer):
        """Flush what the server queued and collect what `peer` received,
        driving write readiness by hand, until nothing moves."""
        got = bytearray()
        reactor = self.server.reactor
        for _ in range(10000):
            reactor.flush_dirty()
            ran = self.run_due_timers()
            d = self.read(peer)
            got += d
            blocked = c is not None and c.write_blocked and not c.closed
            if blocked:
                c.on_writable()
            if not d and not blocked and not ran:
                break
        return bytes(got)

    def run_due_timers(self):
        """What the loop does after dispatching: run timers that are due
        (e.g. a client resuming input deferred past its time slice)."""
        timers = self.server.reactor.timers
        now = time.monotonic()
        ran = 0
        while timers and timers[0].when <= now:
            t = heapq.heappop(timers)
            if not t.cancelled:
                t.fn(*t.args)
                ran += 1
        if ran:
            self.server.reactor.flush_dirty()
        return ran

    def purge_timers(self):
        """Cancelled timers stay in the heap until due (ping: 120 s); the
        bed never runs the loop, so drop them by hand."""
        r = self.server.reactor
        r.timers = [t for t in r.timers if not t.cancelled]
        heapq.heapify(r.timers)

    def close(self):
        for c in list(self.server.clients.values()):
            c.close_conn("bed closed", flush=False)
        for p in self.peers:
            p.close()
        self.server.reactor.close()


def split_chunks(rnd, data, mode):
    if mode == "whole" or len(data) < 2:
        return [data]
    if mode == "bytes":
        return [data[i:i + 1] for i in range(len(data))]
    out, i = [], 0
    while i < len(data):
        k = rnd.choice((1, 2, 3, 7, 16, 64, 500, 4096, 70000))
        out.append(data[i:i + k])
        i += k
    return out


def run_stream(bed, data, chunks):
    """Feed one stream to a fresh client as `chunks`. Returns (output,
    closed, exception repr or None)."""
    c, peer = bed.connect()
    if c is None:
        peer.close()
        return b"", True, "connection refused"
    got = bytearray()
    exc = None
    try:
        for ch in chunks:
            if c.closed:
                break
            c.feed(ch)
            got += bed.pump(c, peer)
    except Exception as e:      # the very thing we hunt
        exc = crash_signature(e)
    got += bed.pump(c, peer)
    closed = c.closed
    if not c.closed:
        c.close_conn("fuzz done", flush=False)
    peer.close()
    return bytes(got), closed, exc


def crash_signature(e):
    """`Type at file:line (function)` of the innermost gnats frame: one
    line per distinct bug, however many inputs hit it."""
    where = "?"
    for fr in traceback.extract_tb(e.__traceback__):
        if "/gnats/" in fr.filename:
            where = "%s:%d (%s)" % (os.path.relpath(fr.filename, ROOT), fr.lineno, fr.name)
    return "%s at %s: %s" % (type(e).__name__, where, str(e)[:120])
