"""The soak (`soak`): mixed traffic (clean pairs, request/reply, churn,
stalled subscribers, fuzzed streams) for --minutes, RSS sampled as it
goes. Named endurance, not soak, so the package can export the `soak`
function under its own name.
"""

import random
import threading
import time

from tests.util import RawClient, free_port
from .common import Report, monitor_get, proc_mem, server_health, start_server, varz
from .bed import Bed
from .clients import CleanTraffic, churn, stalled_subscriber, wire_exchange
from .fuzz import gen_stream, mutate


class RequestReply:
    """A responder echoing requests and a requester counting replies,
    one request in flight at a time."""

    def __init__(self, port):
        self.resp = RawClient(port)
        self.resp.send(b"SUB soak.svc 1\r\n")
        self.resp.ping()
        self.req = RawClient(port)
        self.req.send(b"SUB soak.inbox.* 1\r\n")
        self.req.ping()
        self.asked = self.answered = 0
        self.errors = []
        self.lat = []
        self.stop_ev = threading.Event()
        self.t1 = threading.Thread(target=self._respond, daemon=True)
        self.t2 = threading.Thread(target=self._request, daemon=True)
        self.t1.start()
        self.t2.start()

    def _respond(self):
        try:
            while not self.stop_ev.is_set():
                try:
                    op, args, data = self.resp.read_msg(timeout=0.5)
                except TimeoutError:
                    continue
                if op == b"MSG":
                    self.resp.send(b"PUB %s %d\r\n%s\r\n" % (args[2], len(data), data))
                elif op == b"PING":
                    self.resp.send(b"PONG\r\n")
        except Exception as e:
            self.errors.append("responder: %r" % e)

    def _request(self):
        try:
            while not self.stop_ev.is_set():
                k = self.asked + 1
                t0 = time.monotonic()
                self.req.send(b"PUB soak.svc soak.inbox.%d %d\r\n%d\r\n" % (k, len(b"%d" % k), k))
                self.asked = k
                while True:
                    op, args, data = self.req.read_msg(timeout=10)
                    if op == b"MSG":
                        break
                    if op == b"PING":
                        self.req.send(b"PONG\r\n")
                if data != b"%d" % k:
                    self.errors.append("requester: reply %r to request %d" % (data, k))
                    return
                self.answered += 1
                self.lat.append(time.monotonic() - t0)
                time.sleep(0.005)
        except Exception as e:
            self.errors.append("requester: %r" % e)

    def finish(self):
        self.stop_ev.set()
        self.t2.join(15)
        self.t1.join(5)
        self.resp.close()
        self.req.close()
        return self.asked, self.answered, self.errors


def soak(minutes=1.0, sample=10.0, python=None, rep=None, progress=True, ping_interval=None):
    """Mixed traffic for `minutes`: plain, wildcard and queue-group streams
    counted exactly, request/reply, connection churn, a stalled subscriber
    cut off now and then, bad clients, monitor requests. RSS sampled every
    `sample` seconds; it must not keep growing."""
    rep = rep or Report("soak (%g min)" % minutes)
    mport = free_port()
    # a short ping_interval makes a short soak meet the server's keep-alive
    conf = 'ping_interval: "%gs"\n' % ping_interval if ping_interval else None
    srv = start_server("-m", str(mport), config=conf, python=python)
    rep.fig("server", " ".join(srv.cmd[:2]))
    pid = srv.proc.pid
    rnd = random.Random(9)
    samples = []
    extra = {"churn": 0, "stalled": 0, "bad": 0, "monitor": 0}
    streams = []
    try:
        streams = [
            CleanTraffic(srv.port, rate=800, size=64, subject=b"soak.plain"),
            CleanTraffic(srv.port, rate=400, size=256, subject=b"soak.w.x", sub_subject=b"soak.w.*", members=2),
            CleanTraffic(srv.port, rate=400, size=32, subject=b"soak.q", queue=b"workers", members=3),
            CleanTraffic(srv.port, rate=100, size=4096, subject=b"soak.big.x", sub_subject=b"soak.big.>"),
        ]
        rr = RequestReply(srv.port)
        bed = Bed()
        t0 = time.monotonic()
        end = t0 + minutes * 60
        next_sample = t0
        stalled = []
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_sample:
                rss, hwm = proc_mem(pid)
                samples.append((round(now - t0), rss))
                if progress:
                    print("  soak: %4d s  RSS %d KiB  sent %s  received %s" % (
                        now - t0, rss, [x.sent for x in streams], [x.received for x in streams]), flush=True)
                errs = [e for x in streams for e in x.errors] + rr.errors
                if errs:
                    rep.fail("traffic failed at %d s: %s" % (now - t0, errs[:3]))
                    break
                next_sample += sample
            r = rnd.random()
            if r < 0.4:
                done, fails = churn(srv.port, 20, inflight=10, timeout=20)
                extra["churn"] += done
                for f in fails[:3]:
                    rep.fail("churn: %s" % f)
            elif r < 0.6:
                data = mutate(rnd, gen_stream(rnd))
                try:
                    wire_exchange(srv.port, data, rnd)
                    extra["bad"] += 1
                except OSError as e:
                    rep.fail("bad client: %s" % e)
            elif r < 0.7:
                try:
                    monitor_get(mport, rnd.choice(["/varz", "/connz?subs=1", "/subsz", "/routez"]), 5)
                    extra["monitor"] += 1
                except (OSError, ValueError) as e:
                    rep.fail("monitor: %r" % e)
            elif r < 0.72 and len(stalled) < 2:
                stalled.append(stalled_subscriber(srv.port, b"soak.>"))
                extra["stalled"] += 1
            elif stalled and r < 0.75:
                s = stalled.pop(0)
                s.close()
            time.sleep(0.05)
        for s in stalled:
            s.close()
        results = [x.finish(60) for x in streams]
        asked, answered, rr_errors = rr.finish()
        bed.close()
        names = ["plain 1:1", "wildcard 1:2", "queue group of 3", "4 KiB to soak.big.>"]
        for name, (sent, received, errors) in zip(names, results):
            rep.fig("%s sent/received" % name, "%d/%d" % (sent, received))
            rep.check(sent == received and not errors, "%s: sent %d, received %d, %s" % (name, sent, received, errors[:3]))
        rep.fig("requests / replies", "%d / %d (p50 %.2f ms)" % (asked, answered, sorted(rr.lat)[len(rr.lat) // 2] * 1e3 if rr.lat else -1))
        rep.check(not rr_errors and answered >= asked - 1, "request/reply: %d/%d %s" % (answered, asked, rr_errors[:3]))
        rep.fig("churn cycles / bad clients / monitor GETs / stalled subs", "%(churn)d / %(bad)d / %(monitor)d / %(stalled)d" % extra)
        v = varz(mport) or {}
        rep.fig("varz slow_consumers / total_connections", "%s / %s" % (v.get("slow_consumers"), v.get("total_connections")))
        rss_vals = [x[1] for x in samples]
        rep.fig("RSS samples KiB (every %gs)" % sample, " ".join(str(x) for x in rss_vals))
        rep.fig("RSS first / last / peak KiB", "%d / %d / %d" % (rss_vals[0], rss_vals[-1], proc_mem(pid)[1]))
        if len(rss_vals) >= 6:
            # after the first third (warm-up), RSS must not keep growing
            third = len(rss_vals) // 3
            early = max(rss_vals[third:2 * third])
            late = max(rss_vals[2 * third:])
            rep.perf(late <= early * 1.10, "RSS kept growing: %d KiB in the middle third, %d KiB in the last"
                      % (early, late))
        server_health(srv, rep)
    finally:
        srv.stop()
    return rep
