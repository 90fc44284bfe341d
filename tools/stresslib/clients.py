"""Well-behaved clients that run beside a campaign and count everything:
CleanTraffic (a publisher and subscribers, every message once and in
order), Swarm (thousands of raw connections on one selector), connect
churn, stalled subscribers, and one mutated exchange over a socket.
"""

import random
import selectors
import socket
import threading
import time

from tests.util import RawClient
from .bed import split_chunks
from .common import recv_ready


def answer_pings(client):
    """A client that only writes must still answer the server's PINGs
    (every ping_interval, 120 s) or it is closed as stale after 3 of them.
    Reads whatever is waiting, without blocking; PONGs each PING."""
    sock = client.sock
    try:
        sock.settimeout(0)      # not select(): fds may exceed 1024
        while True:
            d = sock.recv(65536)
            if not d:
                return
            client.buf += d
    except (BlockingIOError, InterruptedError):
        pass
    except OSError:
        return
    finally:
        try:
            sock.settimeout(client.timeout)
        except OSError:
            pass
    n = client.buf.count(b"PING\r\n")
    if n:
        client.buf = client.buf.replace(b"PING\r\n", b"")
        client.send(b"PONG\r\n" * n)


class CleanTraffic:
    """A publisher and subscribers that behave, on their own threads, for
    the whole campaign: every message must arrive once, in order. With a
    `queue`, the members share the messages: each sees an increasing
    sequence and together they see every message exactly once."""

    def __init__(self, port, rate=500, size=16, subject=None, pub_port=None, before_publish=None,
                 sub_subject=None, queue=None, members=1):
        self.port = port
        self.subject = subject or b"clean.%08x" % random.getrandbits(32)
        self.size = max(size, 16)
        self.rate = rate
        self.queue = queue
        self.subs = []
        for _ in range(members):
            c = RawClient(port)
            c.send(b"SUB %s%s 1\r\n" % (sub_subject or self.subject, b" " + queue if queue else b""))
            c.ping()
            self.subs.append(c)
        if before_publish is not None:
            before_publish(self.subject)    # e.g. wait for interest to cross a route
        self.pub = RawClient(pub_port or port)
        self.sent = 0
        self.counts = [0] * members
        self.seen = [[] for _ in range(members)] if queue else None
        self.errors = []
        self.stop_ev = threading.Event()
        self.pub_done = threading.Event()
        self.t_pub = threading.Thread(target=self._publish, daemon=True)
        self.t_subs = [threading.Thread(target=self._subscribe, args=(i,), daemon=True)
                       for i in range(members)]
        for t in self.t_subs:
            t.start()
        self.t_pub.start()

    @property
    def received(self):
        return sum(self.counts)

    def _publish(self):
        try:
            period = 1.0 / self.rate
            nxt = time.monotonic()
            pad = b"." * (self.size - 16)
            checked = time.monotonic()
            while not self.stop_ev.is_set():
                k = self.sent + 1
                self.pub.send(b"PUB %s %d\r\n%016d%s\r\n" % (self.subject, self.size, k, pad))
                self.sent = k
                if time.monotonic() - checked > 0.2:
                    answer_pings(self.pub)
                    checked = time.monotonic()
                nxt += period
                d = nxt - time.monotonic()
                if d > 0:
                    time.sleep(d)
                elif d < -1.0:
                    nxt = time.monotonic()      # fell behind (e.g. a stall): do not burst
            self.pub.ping(30)
        except Exception as e:      # recorded and reported, never swallowed
            self.errors.append("publisher: %r" % e)
        self.pub_done.set()

    def _done(self, i):
        if not self.pub_done.is_set():
            return False
        return (self.received if self.queue else self.counts[i]) >= self.sent

    def _subscribe(self, i):
        sub = self.subs[i]
        last = 0
        try:
            while True:
                if self._done(i):
                    return
                try:
                    op, args, data = sub.read_msg(timeout=1.0)
                except TimeoutError:
                    if self._done(i):
                        return
                    if self.pub_done.is_set():
                        self.errors.append("subscriber %d: %d of %d after the publisher finished"
                                           % (i, self.received if self.queue else self.counts[i], self.sent))
                        return
                    continue
                if op == b"PING":
                    sub.send(b"PONG\r\n")
                    continue
                k = int(data[:16]) if op == b"MSG" and len(data) == self.size else -1
                if k <= last or (not self.queue and k != last + 1):
                    self.errors.append("subscriber %d: got %r %r after message %d" % (i, op, data[:40], last))
                    return
                last = k
                self.counts[i] += 1
                if self.queue:
                    self.seen[i].append(k)
        except Exception as e:
            self.errors.append("subscriber %d: %r" % (i, e))

    def finish(self, timeout=30.0):
        """Stop publishing, wait for the rest: (sent, received, errors).
        `received` counts each message once (queue members together, or
        the least any plain subscriber got)."""
        self.stop_ev.set()
        self.t_pub.join(timeout)
        for t in self.t_subs:
            t.join(timeout)
        for c in self.subs + [self.pub]:
            c.close()
        if self.queue:
            allk = sorted(k for xs in self.seen for k in xs)
            if allk != list(range(1, self.sent + 1)):
                self.errors.append("queue group: %d messages seen, %d distinct, %d sent"
                                   % (len(allk), len(set(allk)), self.sent))
            return self.sent, len(set(allk)), self.errors
        return self.sent, min(self.counts), self.errors


def wire_exchange(port, data, rnd, timeout=5.0):
    """Connect, read INFO, send `data` in random pieces, half-close and
    read until the server closes. Returns (output after INFO, reset)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    got = bytearray()
    reset = False
    try:
        deadline = time.monotonic() + timeout
        while b"\r\n" not in got:
            d = s.recv(65536)
            if not d or time.monotonic() > deadline:
                raise OSError("no INFO")
            got += d
        got = got[got.index(b"\r\n") + 2:]
        try:
            for ch in split_chunks(rnd, data, "random" if rnd.random() < 0.5 else "whole"):
                s.sendall(ch)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            reset = True        # the server closed first (a protocol error)
        while time.monotonic() < deadline:
            try:
                d = s.recv(1 << 20)
            except ConnectionResetError:
                reset = True
                break
            except socket.timeout:
                raise OSError("server neither answered nor closed within %.0f s" % timeout)
            if not d:
                break
            got += d
    finally:
        s.close()
    return bytes(got), reset


class Swarm:
    """Many raw client connections driven by one selector. Each connection
    sends its opening bytes right after connect; `settle` waits until every
    one has seen a PONG (so the server has processed everything before)."""

    def __init__(self, port, src_ip="127.0.0.1"):
        self.port = port
        self.sel = selectors.DefaultSelector()
        self.conns = {}         # fd -> state dict
        self.src_ip = src_ip

    def open(self, opening, n, batch=500, timeout=60.0):
        """Open n connections, `batch` at a time, each sending `opening`
        (which must end with PING). Returns the number that got their PONG."""
        ok = 0
        for start in range(0, n, batch):
            fresh = []
            for _ in range(min(batch, n - start)):
                s = socket.socket()
                s.connect(("127.0.0.1", self.port))
                s.sendall(opening)
                s.setblocking(False)
                st = {"sock": s, "buf": bytearray(), "ready": False, "got": 0, "bad": None}
                self.conns[s.fileno()] = st
                self.sel.register(s, selectors.EVENT_READ, st)
                fresh.append(st)
            ok += self._until(lambda: all(st["ready"] or st["bad"] for st in fresh), timeout,
                              fresh)
        return ok

    def _until(self, cond, timeout, group):
        deadline = time.monotonic() + timeout
        while not cond() and time.monotonic() < deadline:
            self.poll(0.2)
        return sum(1 for st in group if st["ready"])

    def poll(self, timeout):
        for key, _ in self.sel.select(timeout):
            st = key.data
            try:
                d = st["sock"].recv(1 << 18)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                d = b""
                st["bad"] = st["bad"] or repr(e)
            if not d:
                st["bad"] = st["bad"] or "closed by server"
                self.sel.unregister(st["sock"])
                continue
            if st["ready"]:
                self.on_data(st, d)
            else:
                st["buf"] += d
                k = st["buf"].find(b"PONG\r\n")
                if k >= 0:
                    st["ready"] = True
                    rest = bytes(st["buf"][k + 6:])
                    st["buf"] = bytearray()
                    if rest:
                        self.on_data(st, rest)

    # messages: every connection must receive exactly `expect` bytes
    expect = b""

    def on_data(self, st, d):
        got = st["got"]
        if self.expect[got:got + len(d)] != d:
            st["bad"] = st["bad"] or "unexpected bytes at %d: %r" % (got, d[:60])
        st["got"] = got + len(d)

    def wait_all(self, nbytes, timeout):
        live = [st for st in self.conns.values() if not st["bad"]]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(st["got"] >= nbytes or st["bad"] for st in live):
                break
            self.poll(0.2)
        return sum(1 for st in live if st["got"] == nbytes and not st["bad"])

    def close_all(self):
        for st in self.conns.values():
            try:
                self.sel.unregister(st["sock"])
            except (KeyError, ValueError):
                pass
            st["sock"].close()
        self.conns.clear()

    def bad(self):
        return [st["bad"] for st in self.conns.values() if st["bad"]]


def churn(port, cycles, inflight=64, timeout=120.0, rst_every=0):
    """`cycles` connect / CONNECT+SUB+PING / PONG / close cycles, `inflight`
    at a time. Every `rst_every`-th close is an RST (SO_LINGER 0).
    Returns (completed, failures list)."""
    sel = selectors.DefaultSelector()
    started = done = 0
    fails = []
    deadline = time.monotonic() + timeout
    live = 0

    def start_one(i):
        s = socket.socket()
        s.connect(("127.0.0.1", port))
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB churn.%d 1\r\nPING\r\n' % i)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, [s, bytearray(), i])

    while done + len(fails) < cycles and time.monotonic() < deadline:
        while live < inflight and started < cycles:
            try:
                start_one(started)
                live += 1
            except OSError as e:
                fails.append("connect %d: %r" % (started, e))
            started += 1
        for key, _ in sel.select(0.5):
            s, buf, i = key.data
            d = recv_ready(s)
            if d is None:
                continue
            buf += d
            finished = b"PONG\r\n" in buf
            if finished or not d:
                sel.unregister(s)
                if rst_every and i % rst_every == 0:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                s.close()
                live -= 1
                if finished:
                    done += 1
                else:
                    fails.append("cycle %d: closed before PONG: %r" % (i, bytes(buf[-100:])))
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    if done + len(fails) < cycles:
        fails.append("churn timed out after %d of %d cycles" % (done, cycles))
    return done, fails


def stalled_subscriber(port, subject, rcvbuf=4096):
    """A subscriber that stops reading once subscribed (tiny receive
    buffer, so the kernel stops taking bytes early)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    s.settimeout(10)
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB %s 1\r\nPING\r\n' % subject)
    buf = b""
    while b"PONG\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise OSError("closed before PONG")
        buf += d
    return s


def drain_until_closed(s, timeout=10.0):
    """Read a stalled socket to its end: (bytes read, closed by server)."""
    s.settimeout(0.5)
    n = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            d = s.recv(1 << 20)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return n, True
        if not d:
            return n, True
        n += len(d)
    return n, False
