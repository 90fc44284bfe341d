"""Abuse (`abuse`): silent connection floods, huge CONNECT lines,
subscription limits and wildcard blow-up, while a clean client times
its PINGs.
"""

import itertools
import selectors
import socket
import threading
import time

from tests.util import RawClient, free_port
from .common import (Report, idle_for_rss, proc_mem, raise_nofile, recv_ready, server_health, settle_rss,
                     start_server, varz, wait_for)


class Pinger:
    """A clean client timing PING round trips on its own thread, every
    `period` seconds, with named phases."""

    def __init__(self, port, connect=b'{"verbose":false}', period=0.02):
        self.c = RawClient(port, connect)
        self.c.ping()
        self.period = period
        self.samples = {}
        self.phase = "start"
        self.errors = []
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop_ev.is_set():
            t0 = time.monotonic()
            try:
                self.c.ping(30)
            except Exception as e:
                self.errors.append("%s: %r" % (self.phase, e))
                return
            self.samples.setdefault(self.phase, []).append(time.monotonic() - t0)
            time.sleep(self.period)

    def stats(self, phase):
        xs = sorted(self.samples.get(phase, []))
        if not xs:
            return "no samples"
        return "p50 %.1f / p99 %.1f / max %.1f ms (%d pings)" % (
            xs[len(xs) // 2] * 1e3, xs[min(len(xs) - 1, int(len(xs) * 0.99))] * 1e3, xs[-1] * 1e3, len(xs))

    def worst(self):
        return max((max(v) for v in self.samples.values() if v), default=0.0)

    def finish(self):
        self.stop_ev.set()
        self.t.join(40)
        self.c.close()
        return self.errors


def read_all_until_closed(socks, timeout):
    """Wait until the server closes each socket; (closed count, bytes each)."""
    sel = selectors.DefaultSelector()
    data = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        data[s] = bytearray()
    closed = 0
    deadline = time.monotonic() + timeout
    while closed < len(socks) and time.monotonic() < deadline:
        for key, _ in sel.select(0.2):
            s = key.fileobj
            d = recv_ready(s)
            if d is None:
                continue
            if d:
                data[s] += d
            else:
                sel.unregister(s)
                closed += 1
    sel.close()
    return closed, data


def abuse_silent(conns=1000, python=None, rep=None):
    """Connections that never send CONNECT: without auth they are held
    (cheaply); with `--user a --pass b` each is closed after the auth
    timeout with -ERR 'Authentication Timeout'. A clean client's PING
    latency is timed throughout."""
    rep = rep or Report("abuse: silent connections")
    raise_nofile(conns + 2048)
    for auth in (False, True):
        args = ["-m", str(free_port())] + (["--user", "a", "--pass", "b"] if auth else [])
        srv = start_server(*args, python=python)
        tag = "with auth" if auth else "no auth"
        socks = []
        try:
            base = settle_rss(srv.proc.pid, 0.3)
            pinger = Pinger(srv.port, b'{"verbose":false,"user":"a","pass":"b"}' if auth else b'{"verbose":false}')
            pinger.phase = "flood"
            t0 = time.monotonic()
            for _ in range(conns):
                socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=10))
            opened = time.monotonic() - t0
            if auth:
                closed, data = read_all_until_closed(socks, 15)
                dt = time.monotonic() - t0
                told = sum(1 for d in data.values() if d.endswith(b"-ERR 'Authentication Timeout'\r\n"))
                rep.fig("%s: closed by the server" % tag, "%d of %d, %d told why, all within %.1f s of the first"
                        % (closed, conns, told, dt))
                rep.check(closed == conns and told == conns,
                          "%s: %d of %d closed, %d with -ERR 'Authentication Timeout'" % (tag, closed, conns, told))
            else:
                idle_for_rss(1.0)
                rss = proc_mem(srv.proc.pid)[0]
                rep.fig("%s: held silent connections" % tag, "%d (opened in %.2f s)" % (conns, opened))
                rep.fig("%s: RSS per silent connection KiB" % tag, round((rss - base) / conns, 2))
                # they are real clients: a PING on one of them is answered
                socks[0].sendall(b"PING\r\n")
                socks[0].settimeout(5)
                got = b""
                try:
                    while b"PONG\r\n" not in got:     # INFO first, then PONG
                        d = socks[0].recv(65536)
                        if not d:
                            break
                        got += d
                except socket.timeout:
                    pass
                rep.check(b"PONG\r\n" in got, "a silent connection was not answered when it spoke: %r" % got[-100:])
            rep.fig("%s: PING latency during the flood" % tag, pinger.stats("flood"))
            for e in pinger.finish():
                rep.fail("%s: pinger: %s" % (tag, e))
            rep.perf(pinger.worst() < 1.0, "%s: a PING took %.2f s" % (tag, pinger.worst()))
            server_health(srv, rep)
        finally:
            for s in socks:
                s.close()
            srv.stop()
    return rep


def abuse_big_connect(sizes=(5000, 1 << 20, 16 << 20), python=None, rep=None):
    """CONNECT lines far beyond max_control_line (4 KiB): the server must
    answer -ERR 'Maximum Control Line Exceeded' and close without reading
    (or keeping) the rest."""
    rep = rep or Report("abuse: oversized CONNECT")
    for auth in (False, True):
        srv = start_server(*(["--user", "a", "--pass", "b"] if auth else []), python=python)
        try:
            base = settle_rss(srv.proc.pid, 0.3)
            for size in sizes:
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                s.recv(4096)
                body = b'CONNECT {"name":"' + b"n" * size + b'"}\r\n'
                sent = 0
                try:
                    view = memoryview(body)
                    while sent < len(body):
                        sent += s.send(view[sent:sent + 65536])
                except OSError:
                    pass
                closed, data = read_all_until_closed([s], 10)
                out = bytes(data[s])
                s.close()
                rep.fig("%s: CONNECT of %d bytes" % ("auth" if auth else "no auth", size),
                        "answered %r, closed=%s, %d bytes accepted by the kernel"
                        % (out[-50:], bool(closed), sent))
                rep.check(closed and out.endswith(b"-ERR 'Maximum Control Line Exceeded'\r\n"),
                          "CONNECT of %d bytes: got %r, closed=%s" % (size, out[-100:], closed))
            peak = proc_mem(srv.proc.pid)[1]
            rep.fig("%s: RSS baseline / peak KiB" % ("auth" if auth else "no auth"), "%d / %d" % (base, peak))
            rep.perf(peak - base < 16 * 1024, "RSS grew by %d KiB for oversized CONNECTs" % (peak - base))
            c = RawClient(srv.port, b'{"verbose":false,"user":"a","pass":"b"}' if auth else b'{"verbose":false}')
            c.ping()
            c.close()
            server_health(srv, rep)
        finally:
            srv.stop()
    return rep


def sub_flood(port, n, subject_fmt=b"many.%d", batch=5000, connect=b'{"verbose":false}'):
    """One client sends n SUBs; returns (client, count of -ERRs, seconds).
    Reads while it writes so its own -ERRs never make it slow."""
    c = RawClient(port, connect)
    errs = [0]          # -ERR count; errs[1]: the probe message arrived
    errs.append(False)
    stop = threading.Event()
    err = b"-ERR 'maximum subscriptions exceeded'\r\n"   # nats-server's text
    probe = b"MSG many.7 7 2\r\nhi\r\n"

    def reader():
        buf = b""
        sel = selectors.DefaultSelector()     # not select(): fds may exceed 1024
        sel.register(c.sock, selectors.EVENT_READ)
        while not stop.is_set():
            try:
                if not sel.select(0.2):
                    continue
                d = c.sock.recv(1 << 20)
            except OSError:
                return
            if not d:
                return
            buf += d
            errs[0] += buf.count(err)
            errs[1] = errs[1] or probe in buf
            buf = buf[-(len(err) - 1):] if not buf.endswith(err) else b""
            if err[:-1] in buf:
                buf = b""
    c.sock.settimeout(120)      # the writer may wait while the server catches up
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t0 = time.monotonic()
    for start in range(0, n, batch):
        c.sock.sendall(b"".join(b"SUB " + (subject_fmt % k) + b" %d\r\n" % k
                                for k in range(start, min(n, start + batch))))
    # a PING on a second connection cannot tell us when this one's input is
    # done; ask the monitor-free way: a PING on this connection, then wait
    c.sock.sendall(b"PING\r\n")
    return c, errs, t, stop, t0


def abuse_subscriptions(n=100000, limit=1000, python=None, rep=None, ping_bound=1.0):
    """A client subscribing to n subjects: with `max_subscriptions: 1000` in
    a config file every SUB past the limit gets -ERR 'Maximum Subscriptions
    Exceeded' and the connection stays; without a limit all n are held and
    dropped again when it leaves. Another client's PING is timed."""
    rep = rep or Report("abuse: a million subscriptions")
    for limited in (True, False):
        mport = free_port()
        conf = "max_subscriptions: %d\n" % limit if limited else None
        srv = start_server("-m", str(mport), config=conf, python=python)
        tag = "max_subscriptions %d" % limit if limited else "no limit"
        try:
            base = settle_rss(srv.proc.pid, 0.3)
            pinger = Pinger(srv.port)
            pinger.phase = "subs"
            c, errs, t, stop, t0 = sub_flood(srv.port, n)
            # the PING sent last is answered once all SUBs were processed
            ok = wait_for(lambda: (varz(mport) or {}).get("subscriptions") == (limit if limited else n)
                          and (not limited or errs[0] == n - limit), 120 + n / 5000, 0.2)
            dt = time.monotonic() - t0
            v = varz(mport) or {}
            rep.fig("%s: SUBs sent / held / -ERRs" % tag, "%d / %s / %d (%.1f s)" % (n, v.get("subscriptions"), errs[0], dt))
            rep.check(ok, "%s: subscriptions %s, -ERRs %d (expected %d, %d)"
                      % (tag, v.get("subscriptions"), errs[0], limit if limited else n, n - limit if limited else 0))
            rss = proc_mem(srv.proc.pid)[0]
            rep.fig("%s: RSS baseline / with subs KiB" % tag, "%d / %d" % (base, rss))
            rep.fig("%s: PING latency while subscribing" % tag, pinger.stats("subs"))
            # the subscriber still works
            p = RawClient(srv.port)
            p.send(b"PUB many.7 2\r\nhi\r\n")
            p.ping()
            p.close()
            rep.check(wait_for(lambda: errs[1], 10), "%s: the subscriber lost its message" % tag)
            stop.set()
            t.join(5)
            pinger.phase = "unsub"
            c.close()
            gone = wait_for(lambda: (varz(mport) or {}).get("subscriptions") == 0, 60, 0.2)
            rep.check(gone, "%s: subscriptions left after the client closed: %s" % (tag, (varz(mport) or {}).get("subscriptions")))
            rep.fig("%s: PING latency while they are removed" % tag, pinger.stats("unsub"))
            rep.fig("%s: RSS after KiB" % tag, settle_rss(srv.proc.pid, 1.0))
            for e in pinger.finish():
                rep.fail("%s: pinger: %s" % (tag, e))
            rep.perf(pinger.worst() < ping_bound, "%s: a PING took %.2f s (bound %.1f s)"
                      % (tag, pinger.worst(), ping_bound))
            server_health(srv, rep)
        finally:
            srv.stop()
    return rep


def abuse_wildcards(depth=14, pubs=300, python=None, rep=None):
    """2^(depth-1) wildcard subscriptions that nearly match `a.a.a...`, then
    PUBs to distinct subjects that walk every one of them; plus `>` and `*`
    subscriptions on subjects of ~1,000 tokens. Another client's PING is
    timed, a matching subscriber counts exactly."""
    rep = rep or Report("abuse: wildcard blow-up")
    srv = start_server(python=python)
    try:
        abuser = RawClient(srv.port)
        subs = [b"SUB %s.z %d\r\n" % (".".join(c).encode(), k)
                for k, c in enumerate(itertools.product("a*", repeat=depth - 1))]
        deep = b".".join([b"*"] * 1000)
        subs += [b"SUB %s 900001\r\n" % deep, b"SUB %s.> 900002\r\n" % b".".join([b"*"] * 999)]
        t0 = time.monotonic()
        abuser.send(b"".join(subs))
        abuser.ping(120)
        rep.fig("wildcard subscriptions", "%d (%.1f s to add)" % (len(subs), time.monotonic() - t0))
        watcher = RawClient(srv.port)
        prefix = b".".join([b"a"] * (depth - 1))
        watcher.send(b"SUB %s.> 1\r\n" % b".".join([b"a"] * (depth - 2)))
        watcher.ping()
        pinger = Pinger(srv.port)
        pinger.phase = "pubs"
        t0 = time.monotonic()
        abuser.send(b"".join(b"PUB %s.%d 1\r\nx\r\n" % (prefix, k) for k in range(pubs)))
        deep_subj = b".".join([b"d"] * 1000)
        abuser.send(b"PUB %s 1\r\ny\r\n" % deep_subj * 20)
        before_pong = abuser.ping(600)
        dt = time.monotonic() - t0
        deep_got = before_pong.count(b"MSG %s " % deep_subj)
        got = []
        try:
            for _ in range(pubs):
                got.append(watcher.read_msg(30)[1][0])
        except (TimeoutError, EOFError) as e:
            rep.fail("watcher: %r" % e)
        rep.check(got == [b"%s.%d" % (prefix, k) for k in range(pubs)],
                  "the matching subscriber got %d of %d messages" % (len(got), pubs))
        rep.fig("PUBs walking every subscription", "%d in %.2f s (%.1f ms each)" % (pubs, dt, dt / pubs * 1e3))
        rep.fig("1,000-token subjects matched by * and >", "%d of 40 deliveries" % deep_got)
        rep.check(deep_got == 40, "deep subject deliveries: %d of 40" % deep_got)
        rep.fig("PING latency meanwhile", pinger.stats("pubs"))
        for e in pinger.finish():
            rep.fail("pinger: %s" % e)
        rep.perf(pinger.worst() < 0.5, "a PING took %.2f s" % pinger.worst())
        abuser.close()
        watcher.close()
        server_health(srv, rep)
    finally:
        srv.stop()
    return rep
