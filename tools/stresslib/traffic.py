"""Traffic volume: `load` (many concurrent subscribers and fan-out, then
connect churn, RSS back to baseline) and `slow` (fast and stalled
subscribers against max_pending from a config file).
"""

import threading
import time

from tests.util import RawClient, free_port
from .common import (Report, idle_for_rss, monitor_get, proc_mem, raise_nofile, server_health,
                     settle_rss, start_server, varz)
from .clients import Swarm, churn, drain_until_closed, stalled_subscriber


def load(conns=2000, cycles=5000, msgs=20, size=64, python=None, rep=None, hold_rounds=1, settle=1.0):
    """Hold `conns` subscribed connections and fan `msgs` messages out to all
    of them (each must get every one, exactly), then run `cycles` connect /
    disconnect cycles; RSS must come back to its baseline."""
    rep = rep or Report("load")
    limit = raise_nofile(conns + 4096)
    rep.check(limit >= conns + 200, "open-file limit %d is too low for %d connections" % (limit, conns))
    mport = free_port()
    srv = start_server("-m", str(mport), python=python)
    rep.fig("server", " ".join(srv.cmd[:2]))
    pid = srv.proc.pid
    swarm = Swarm(srv.port)
    try:
        # warm-up: fill the server's ring of closed connections (10,000
        # records, ~1.5 KiB each, as nats-server keeps for /connz) so that
        # what it holds by design is in the baseline
        done, fails = churn(srv.port, 10500)
        rep.check(not fails, "warm-up churn: %s" % fails[:3])
        base = settle_rss(pid, 1.0 * settle)
        rep.fig("RSS baseline KiB", base)
        t0 = time.monotonic()
        ready = swarm.open(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB load.fan 1\r\nPING\r\n',
                           conns, timeout=120)
        rep.fig("connections held", "%d of %d (%.1f s to open)" % (ready, conns, time.monotonic() - t0))
        rep.check(ready == conns, "only %d of %d connections became ready: %s"
                  % (ready, conns, swarm.bad()[:3]))
        held = settle_rss(pid, 1.0 * settle)
        rep.fig("RSS with connections held KiB", held)
        rep.fig("RSS per idle connection KiB", round((held - base) / max(1, conns), 2))
        # fan-out: one publisher, every held connection must get every message
        payload = b"%0*d" % (size, 7)
        one = b"MSG load.fan 1 %d\r\n%s\r\n" % (size, payload)
        swarm.expect = one * msgs
        pub = RawClient(srv.port)
        t0 = time.monotonic()
        for k in range(msgs):
            pub.send(b"PUB load.fan %d\r\n%s\r\n" % (size, payload))
        pub.ping(60)
        full = swarm.wait_all(len(one) * msgs, timeout=60 + conns * msgs / 20000)
        dt = time.monotonic() - t0
        delivered = sum(st["got"] for st in swarm.conns.values()) // len(one)
        rep.fig("fan-out messages published", msgs)
        rep.fig("fan-out deliveries expected/counted", "%d/%d" % (msgs * conns, delivered))
        rep.fig("fan-out time s (deliveries/s)", "%.2f (%d)" % (dt, delivered / max(dt, 1e-9)))
        rep.check(full == conns, "%d of %d connections got all %d messages: %s"
                  % (full, conns, msgs, swarm.bad()[:3]))
        try:
            v = monitor_get(mport, "/varz")
            rep.check(v["connections"] >= conns, "varz connections %s < %d" % (v["connections"], conns))
        except (OSError, ValueError, KeyError) as e:
            rep.fail("monitor /varz during load: %r" % e)
        rep.fig("RSS peak KiB", proc_mem(pid)[1])
        pub.close()
        swarm.close_all()
        # every RSS figure below follows a /varz: the server keeps its latest
        # monitoring snapshot (all connections then live, and the closed
        # ring), so refresh it before measuring or it hides or fakes a leak
        idle_for_rss(1.0 * settle)
        varz(mport)
        after_hold = settle_rss(pid, 2.0 * settle)
        rep.fig("RSS after closing them KiB", after_hold)
        for rnd_i in range(2, hold_rounds + 1):
            # the memory the first round left is reused, not added to
            sw = Swarm(srv.port)
            n = sw.open(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB load.fan 1\r\nPING\r\n',
                        conns, timeout=120)
            again = settle_rss(pid, 1.0 * settle)
            sw.close_all()
            rep.check(n == conns, "round %d: %d of %d connections ready" % (rnd_i, n, conns))
            idle_for_rss(1.0 * settle)
            varz(mport)
            after_k = settle_rss(pid, 2.0 * settle)
            rep.fig("round %d: RSS with them held / after KiB" % rnd_i, "%d / %d" % (again, after_k))
            rep.perf(after_k <= after_hold * 1.10, "round %d left %d KiB, round 1 left %d KiB: growth"
                      % (rnd_i, after_k, after_hold))
        after_hold = proc_mem(pid)[0]
        # churn
        t0 = time.monotonic()
        done, fails = churn(srv.port, cycles, timeout=60 + cycles / 200)
        dt = time.monotonic() - t0
        rep.fig("churn cycles completed", "%d of %d (%.1f s, %d/s)" % (done, cycles, dt, done / max(dt, 1e-9)))
        for f in fails[:5]:
            rep.fail("churn: %s" % f)
        idle_for_rss(1.0 * settle)
        varz(mport)
        after = settle_rss(pid, 2.0 * settle)
        rep.fig("RSS after churn KiB", after)
        rep.perf(after <= after_hold * 1.10,
                 "RSS after churn %d KiB is more than 10%% over its baseline %d KiB" % (after, after_hold))
        try:
            v = varz(mport) or {}       # clients' subscriptions only (common.varz)
            rep.check(v["connections"] == 0 and v["subscriptions"] == 0,
                      "after churn: varz connections %s, subscriptions %s (expected 0, 0)"
                      % (v["connections"], v["subscriptions"]))
            rep.fig("varz total_connections", v["total_connections"])
        except (OSError, ValueError, KeyError) as e:
            rep.fail("monitor /varz after churn: %r" % e)
        c = RawClient(srv.port)
        c.ping(5)
        c.close()
        server_health(srv, rep)
    finally:
        swarm.close_all()
        srv.stop()
    return rep


def publish_batches(port, subject, payload, count, batch=200):
    """Publish `count` messages as fast as the socket takes them, then
    PING/PONG. Returns the publisher's wall time (s)."""
    p = RawClient(port)
    one = b"PUB %s %d\r\n%s\r\n" % (subject, len(payload), payload)
    t0 = time.monotonic()
    left = count
    while left:
        k = min(batch, left)
        p.send(one * k)
        left -= k
    p.ping(120)
    dt = time.monotonic() - t0
    p.close()
    return dt


def slow(fast=4, stalled=4, msgs=8000, size=1024, max_pending="1MB", python=None, rep=None):
    """Fast subscribers get every message; stalled ones are cut off at
    max_pending (from a config file); the server's RSS stays bounded."""
    rep = rep or Report("slow (max_pending %s)" % max_pending)
    limit = {"1MB": 1 << 20}.get(max_pending) or int(max_pending)
    mport = free_port()
    conf = "max_pending: %s\nwrite_deadline: \"60s\"\n" % max_pending
    srv = start_server("-m", str(mport), config=conf, python=python)
    rep.fig("server", " ".join(srv.cmd[:2]))
    pid = srv.proc.pid
    swarm = Swarm(srv.port)
    slow_socks = []
    try:
        base = settle_rss(pid, 0.5)
        subject = b"slow.flood"
        payload = (b"%08d" % 0) * (size // 8)
        one = b"MSG %s 1 %d\r\n%s\r\n" % (subject, len(payload), payload)
        swarm.expect = one * msgs
        ready = swarm.open(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB %s 1\r\nPING\r\n' % subject, fast)
        rep.check(ready == fast, "only %d of %d fast subscribers ready" % (ready, fast))
        for _ in range(stalled):
            slow_socks.append(stalled_subscriber(srv.port, subject))
        res = {}
        th = threading.Thread(target=lambda: res.update(dt=publish_batches(srv.port, subject, payload, msgs)))
        th.start()
        full = swarm.wait_all(len(one) * msgs, timeout=120)
        th.join(120)
        rep.fig("messages published (bytes each)", "%d (%d)" % (msgs, size))
        rep.fig("publisher time s", round(res.get("dt", -1), 2))
        rep.fig("fast subscribers with every message", "%d of %d" % (full, fast))
        rep.check(full == fast, "%d of %d fast subscribers got all %d messages: %s"
                  % (full, fast, msgs, swarm.bad()[:3]))
        cut = 0
        got_bytes = []
        for sk in slow_socks:
            n, closed = drain_until_closed(sk)
            got_bytes.append(n)
            cut += closed
        rep.fig("stalled subscribers cut off", "%d of %d" % (cut, stalled))
        rep.fig("bytes a stalled one read before the cut", "%d..%d" % (min(got_bytes), max(got_bytes)))
        rep.check(cut == stalled, "only %d of %d stalled subscribers were cut off" % (cut, stalled))
        rep.check(max(got_bytes) < msgs * len(one),
                  "a stalled subscriber got everything: it was never slow")
        peak = proc_mem(pid)[1]
        bound = base + (fast + stalled) * limit * 3 // 2 // 1024 + 24 * 1024
        rep.fig("RSS KiB baseline / peak / bound", "%d / %d / %d" % (base, peak, bound))
        rep.perf(peak <= bound, "server peak RSS %d KiB over the bound %d KiB" % (peak, bound))
        try:
            v = monitor_get(mport, "/varz")
            rep.fig("varz slow_consumers", v["slow_consumers"])
            rep.check(v["slow_consumers"] == stalled, "varz slow_consumers %s, expected %d"
                      % (v["slow_consumers"], stalled))
        except (OSError, ValueError, KeyError) as e:
            rep.fail("monitor /varz: %r" % e)
        rep.check(srv.output().count("Slow Consumer Detected") == stalled,
                  "log has %d 'Slow Consumer Detected', expected %d"
                  % (srv.output().count("Slow Consumer Detected"), stalled))
        rep.fig("RSS after KiB", settle_rss(pid, 1.0))
        server_health(srv, rep)
    finally:
        for sk in slow_socks:
            sk.close()
        swarm.close_all()
        srv.stop()
    return rep
