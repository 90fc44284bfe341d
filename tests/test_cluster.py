"""Clusters of real `python3 gnatsd.py` processes: the seed README's
three-server walkthrough, exact message counts across servers, healing
after SIGKILL, cluster-aware clients, route authorization and route TLS.

Interest crosses routes asynchronously, so before counting messages each
test "settles" the cluster: every server subscribes a fresh sentinel
subject after its real subscriptions, and we wait until every other server
lists it for that route in /routez?subs=1. RS+ lines travel in order on a
route, so everything subscribed before the sentinel has arrived as well.
"""

import asyncio
import json
import os
import re
import signal
import socket
import threading
import time
import unittest
import urllib.request

from tests.util import (flushed, ROOT, RawClient, ServerProcess, dependency_missing, free_port, needs,
                        wait_for as _wait_for)

CERTS = os.path.join(ROOT, "configs", "certs")
MESH_TIMEOUT = 5.0


def wait_for(cond, timeout=MESH_TIMEOUT, interval=0.05):
    return _wait_for(cond, timeout, interval)


class Node:
    """One cluster member with a client port, a cluster port and a
    monitoring port. The first start takes -1 ports and reads them back
    from the ports file (no window for another process to take them); a
    restart (after kill) reuses them. `cport` fixes the cluster port when
    another node must know it in advance. `exe` runs another server with
    the same flags (the Go nats-server)."""

    def __init__(self, routes=(), cluster_url="nats://127.0.0.1:%(cport)d", name="", extra=(),
                 config=None, cport=None, wait=True, exe=None, port=None):
        self.routes, self.cluster_url, self.name, self.extra = routes, cluster_url, name, list(extra)
        self.config_template = config
        self.exe = exe
        self.port = port
        self.cport = cport or -1
        self.mport = -1
        self.proc = None
        self.start(wait)

    def _command(self):
        args = ["-D", "-m", str(self.mport)]
        if self.config_template is None:
            args += ["--cluster", self.cluster_url % {"cport": self.cport}]
        if self.routes:
            args += ["--routes", ",".join(self.routes)]
        if self.name:
            args += ["--cluster_name", self.name]
        config = self.config_template % {"cport": self.cport} if self.config_template else None
        return args + self.extra, config

    def start(self, wait=True):
        args, config = self._command()
        self.proc = ServerProcess(*args, port=self.port, config=config, wait=wait, exe=self.exe)
        if wait and self.mport == -1:
            self.port = self.proc.port
            self.cport, self.mport = self.proc.cluster_port, self.proc.monitor_port
        self.server_id = self.varz()["server_id"] if wait else ""
        if wait and not self.server_id:
            raise RuntimeError("no /varz from %s:\n%s" % (args, self.output()))

    @property
    def route_url(self):
        return "nats://127.0.0.1:%d" % self.cport

    def http(self, path):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.mport, path), timeout=3) as r:
            return json.loads(r.read().decode())

    def varz(self):
        return wait_for(lambda: _try(self.http, "/varz"), 5)

    def routez(self):
        return self.http("/routez?subs=1")

    def remote_ids(self):
        try:
            return {r["remote_id"] for r in self.routez()["routes"]}
        except OSError:
            return None

    def output(self):
        return self.proc.output()

    def kill(self):
        self.proc.proc.send_signal(signal.SIGKILL)
        self.proc.proc.wait(5)
        self.proc.stop()

    def stop(self):
        if self.proc is not None:
            self.proc.stop()

    def client(self, connect=b'{"verbose":false,"pedantic":false,"protocol":1,"headers":true,"no_responders":true}'):
        return RawClient(self.port, connect)


def _try(fn, *a):
    try:
        return fn(*a)
    except (OSError, ValueError):
        return None


class ClusterCase(unittest.TestCase):
    """Helpers for tests that run whole clusters."""

    def node(self, *a, **kw):
        n = Node(*a, **kw)
        self.addCleanup(n.stop)
        return n

    def client(self, node, **kw):
        c = node.client(**kw)
        self.addCleanup(c.close)
        return c

    def assertMesh(self, nodes, timeout=MESH_TIMEOUT):
        """Every node has exactly one route to each other node."""
        def ok():
            for n in nodes:
                want = {m.server_id for m in nodes if m is not n}
                try:
                    routes = n.routez()["routes"]
                except OSError:
                    return False
                if sorted(r["remote_id"] for r in routes) != sorted(want):
                    return False
            return True
        if not wait_for(ok, timeout):
            self.fail("no full mesh within %.1fs: %s" % (
                timeout, [(n.server_id[:8], sorted(i[:8] for i in (n.remote_ids() or ()))) for n in nodes]))

    def settle(self, nodes):
        """Wait until every node knows all interest every other node had."""
        tok = os.urandom(4).hex()
        sentinels = []
        for n in nodes:
            c = self.client(n)
            c.send(b"SUB _settle.%s 1\r\n" % tok.encode())
            c.ping()
            sentinels.append(c)

        def ok():
            for n in nodes:
                try:
                    routes = n.routez()["routes"]
                except OSError:
                    return False
                for r in routes:
                    if "_settle." + tok not in r.get("subscriptions_list", []):
                        return False
                if len(routes) != len(nodes) - 1:
                    return False
            return True
        self.assertTrue(wait_for(ok), "interest did not settle")
        for c in sentinels:
            c.close()


def count_msgs(c, timeout=5.0):
    """Every MSG/HMSG sent to raw client `c` so far: list of (args, payload).
    Synchronised with a PING, so the server has flushed what it had."""
    return [(args, payload) for _, args, payload in c.drain(timeout)]


def read_n(c, n, timeout=5.0):
    """Exactly n messages (then checks nothing more is pending)."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        op, args, payload = c.read_msg(max(0.01, deadline - time.monotonic()))
        if op == b"INFO":
            continue
        got.append((args, payload))
    return got


def read_until_sentinels(c, subject, n, timeout=5.0):
    """Read until `n` messages on `subject` (sentinels) arrived; returns the
    other messages read meanwhile as (args, payload). A sentinel published
    after a batch follows anything late from the same publisher."""
    other = []
    seen = 0
    deadline = time.monotonic() + timeout
    while seen < n:
        op, args, payload = c.read_msg(max(0.01, deadline - time.monotonic()))
        if op == b"INFO":
            continue
        if args[0] == subject:
            seen += 1
        else:
            other.append((args, payload))
    return other


# ---------------------------------------------------------------------------
class TestSeedCluster(ClusterCase):
    """The seed README walkthrough: A is the seed, B and C route to it."""

    @classmethod
    def setUpClass(cls):
        cls.a = Node()
        cls.b = Node(routes=[cls.a.route_url])
        cls.c = Node(routes=[cls.a.route_url])
        cls.nodes = [cls.a, cls.b, cls.c]

    @classmethod
    def tearDownClass(cls):
        # no [ERR] in any log, checked after every test of the class ran
        # (a check inside one test would miss what later tests caused)
        # (read before stopping: the shutdown's own route resets are not
        # what this checks)
        logs = [n.output() for n in cls.nodes]
        for n in cls.nodes:
            n.stop()
        errors = [l for out in logs for l in out.splitlines() if "[ERR]" in l]
        if errors:
            raise AssertionError("[ERR] lines in the cluster's logs:\n" + "\n".join(errors[:20]))

    def setUp(self):
        self.assertMesh(self.nodes)

    def test_full_mesh_and_log_lines(self):
        a, b, c = self.nodes
        for n in self.nodes:
            self.assertIn("Listening for route connections on 127.0.0.1:%d" % n.cport, n.output())
        out = b.output()
        self.assertIn("[DBG] Trying to connect to route on 127.0.0.1:%d" % a.cport, out)
        pre = r"\[DBG\] 127\.0\.0\.1:%d - rid:\d+ - " % a.cport
        self.assertRegex(out, r"127\.0\.0\.1:%d - rid:\d+ - Route connection created" % a.cport)
        self.assertRegex(out, pre + "Route connect msg sent")
        self.assertRegex(out, pre + 'Registering remote route "%s"' % a.server_id)
        self.assertRegex(out, pre + "Route sent local subscriptions")
        # the seed accepted both, and B and C found each other through it
        self.assertRegex(a.output(), r'rid:\d+ - Registering remote route "%s"' % b.server_id)
        self.assertRegex(a.output(), r'rid:\d+ - Registering remote route "%s"' % c.server_id)
        self.assertRegex(b.output() + c.output(), 'Registering remote route "%s"' % c.server_id)

    def test_routez(self):
        for n in self.nodes:
            rz = n.routez()
            self.assertEqual(rz["num_routes"], 2)
            for r in rz["routes"]:
                self.assertEqual(r["ip"], "127.0.0.1")
        solicited = {(n.server_id, r["remote_id"]): r["did_solicit"] for n in self.nodes for r in n.routez()["routes"]}
        a, b, c = (n.server_id for n in self.nodes)
        # the seed dialled nobody; B and C dialled it; between B and C
        # exactly one side dialled
        self.assertEqual((solicited[a, b], solicited[a, c]), (False, False))
        self.assertEqual((solicited[b, a], solicited[c, a]), (True, True))
        self.assertNotEqual(solicited[b, c], solicited[c, b])
        self.assertEqual(self.a.varz()["routes"], 2)

    def test_plain_and_wildcard_exact_counts(self):
        a, b, c = self.nodes
        exact = self.client(c)
        star = self.client(b)
        full = self.client(a)
        other = self.client(b)
        exact.send(b"SUB orders.new 1\r\n")
        star.send(b"SUB orders.* 1\r\n")
        full.send(b"SUB orders.> 1\r\n")
        other.send(b"SUB payments.> 1\r\n")
        for x in (exact, star, full, other):
            x.ping()
        self.settle(self.nodes)
        pubs = [self.client(n) for n in self.nodes]
        for i, p in enumerate(pubs):
            p.send(b"".join(b"PUB orders.new 6\r\nmsg%03d\r\n" % (i * 100 + k) for k in range(100)))
            p.ping()
        for sub in (exact, star, full):
            got = read_n(sub, 300)
            self.assertEqual(sorted(m[1] for m in got), sorted(b"msg%03d" % k for k in range(300)))
            self.assertEqual(count_msgs(sub), [])
        self.assertEqual(count_msgs(other), [])

    def test_order_kept_per_publisher(self):
        a, b, c = self.nodes
        sub = self.client(c)
        sub.send(b"SUB seq 1\r\n")
        sub.ping()
        self.settle(self.nodes)
        p = self.client(a)
        p.send(b"".join(b"PUB seq %d\r\n%d\r\n" % (len(b"%d" % k), k) for k in range(2000)))
        p.ping()
        got = read_n(sub, 2000)
        self.assertEqual([int(m[1]) for m in got], list(range(2000)))

    def test_queue_group_exactly_once_cluster_wide(self):
        members = []
        for n in self.nodes:
            for _ in range(2):
                m = self.client(n)
                m.send(b"SUB jobs workers 1\r\nSUB jobs.end 2\r\n")
                m.ping()
                members.append(m)
        watcher = self.client(self.c)
        watcher.send(b"SUB jobs 1\r\n")
        watcher.ping()
        self.settle(self.nodes)
        total = 0
        pubs = []
        for i, n in enumerate(self.nodes):
            p = self.client(n)
            p.send(b"".join(b"PUB jobs 4\r\nj%03d\r\n" % (i * 100 + k) for k in range(100)))
            p.ping()
            pubs.append(p)
            total += 100
        got = {}
        deadline = time.monotonic() + 5
        while sum(len(v) for v in got.values()) < total and time.monotonic() < deadline:
            for i, m in enumerate(members):
                got.setdefault(i, []).extend(count_msgs(m))
        all_payloads = sorted(p for v in got.values() for _, p in v)
        self.assertEqual(all_payloads, sorted(b"j%03d" % k for k in range(total)))
        for i, v in got.items():
            self.assertGreater(len(v), 0, "member %d got nothing" % i)
        self.assertEqual(len(read_n(watcher, total)), total)
        # a barrier instead of a sleep: each publisher sends a sentinel that
        # every member receives; a late duplicate from that publisher would
        # travel the same connections and routes ahead of it
        for p in pubs:
            p.send(b"PUB jobs.end 0\r\n\r\n")
            p.ping()
        for i, m in enumerate(members):
            self.assertEqual(read_until_sentinels(m, b"jobs.end", len(pubs)), [], "member %d" % i)

    def test_queue_weights_follow_membership(self):
        # all members on B: messages published on A all go to B
        m1 = self.client(self.b)
        m2 = self.client(self.b)
        for m in (m1, m2):
            m.send(b"SUB w.q g 1\r\n")
            m.ping()
        self.settle(self.nodes)
        p = self.client(self.a)
        p.send(b"PUB w.q 1\r\nx\r\n" * 50)
        p.ping()
        deadline = time.monotonic() + 5
        n = 0
        while n < 50 and time.monotonic() < deadline:
            n += len(count_msgs(m1)) + len(count_msgs(m2))
        self.assertEqual(n, 50)
        # the group leaves B, a member appears on C: C gets everything
        m1.close()
        m2.close()
        m3 = self.client(self.c)
        m3.send(b"SUB w.q g 1\r\n")
        m3.ping()
        self.settle(self.nodes)
        p.send(b"PUB w.q 1\r\ny\r\n" * 50)
        p.ping()
        self.assertEqual(len(read_n(m3, 50)), 50)

    def test_request_reply_across_servers(self):
        a, b, c = self.nodes
        svc = self.client(c)
        svc.send(b"SUB math.double 1\r\n")
        svc.ping()
        req = self.client(a)
        req.send(b"SUB _INBOX.r.* 1\r\n")
        req.ping()
        self.settle(self.nodes)
        for k in range(20):
            req.send(b"PUB math.double _INBOX.r.%d %d\r\n%d\r\n" % (k, len(b"%d" % k), k))
        req.ping()
        for args, payload in read_n(svc, 20):
            subject, sid, reply = args[0], args[1], args[2]
            answer = b"%d" % (2 * int(payload))
            svc.send(b"PUB %s %d\r\n%s\r\n" % (reply, len(answer), answer))
        svc.ping()
        got = read_n(req, 20)
        self.assertEqual(sorted((m[0][0], m[1]) for m in got),
                         sorted((b"_INBOX.r.%d" % k, b"%d" % (2 * k)) for k in range(20)))
        self.assertEqual(count_msgs(req), [])

    def test_headers_cross_routes(self):
        sub = self.client(self.b)
        sub.send(b"SUB h.x 1\r\n")
        sub.ping()
        self.settle(self.nodes)
        p = self.client(self.c)
        hdr = b"NATS/1.0\r\nTrace: 7\r\n\r\n"
        p.send(b"HPUB h.x r.1 %d %d\r\n%sdata\r\n" % (len(hdr), len(hdr) + 4, hdr))
        p.ping()
        op, args, payload = sub.read_msg()
        self.assertEqual(op, b"HMSG")
        self.assertEqual(args, [b"h.x", b"1", b"r.1", b"%d" % len(hdr), b"%d" % (len(hdr) + 4)])
        self.assertEqual(payload, hdr + b"data")

    def test_no_responders_cluster_wide(self):
        req = self.client(self.a)
        req.send(b"SUB _INBOX.nr 1\r\n")
        req.ping()
        self.settle(self.nodes)
        req.send(b"PUB nobody.home _INBOX.nr 0\r\n\r\n")
        op, args, payload = req.read_msg()
        self.assertEqual(op, b"HMSG")
        self.assertIn(b"503", payload)
        svc = self.client(self.c)
        svc.send(b"SUB somebody.home 1\r\n")
        svc.ping()
        self.settle(self.nodes)
        req.send(b"PUB somebody.home _INBOX.nr 0\r\n\r\n")
        req.ping()
        self.assertEqual(svc.read_msg()[1], [b"somebody.home", b"1", b"_INBOX.nr", b"0"])
        self.assertEqual(count_msgs(req), [])

    def test_connect_urls_list_every_member(self):
        urls = ["127.0.0.1:%d" % n.port for n in self.nodes]
        for n in self.nodes:
            c = self.client(n)
            info = json.loads(c.info[5:])
            self.assertEqual(info["connect_urls"][0], "127.0.0.1:%d" % n.port)
            self.assertEqual(sorted(info["connect_urls"]), sorted(urls))
            self.assertTrue(info["cluster"])

    def test_async_info_when_member_joins_and_leaves(self):
        c = self.client(self.a)
        c.ping()
        d = self.node(routes=[self.b.route_url])
        url = "127.0.0.1:%d" % d.port

        def next_info():
            while True:
                line = c.read_line(timeout=MESH_TIMEOUT)
                if line.startswith(b"INFO "):
                    return json.loads(line[5:])
        info = next_info()
        self.assertIn(url, info["connect_urls"])
        self.assertMesh(self.nodes + [d])
        d.stop()
        while url in info["connect_urls"]:
            info = next_info()
        self.assertEqual(len(info["connect_urls"]), 3)
        self.assertMesh(self.nodes)


class TestHealing(ClusterCase):
    def test_sigkill_member_then_seed(self):
        a = self.node()
        b = self.node(routes=[a.route_url])
        c = self.node(routes=[a.route_url])
        nodes = [a, b, c]
        self.assertMesh(nodes)
        # subscribers on A and C stay connected through everything
        sa = self.client(a)
        sc = self.client(c)
        sa.send(b"SUB heal.> 1\r\n")
        sc.send(b"SUB heal.x q 1\r\n")
        sa.ping()
        sc.ping()

        def round_trip(pub_node, n, tag):
            self.settle(nodes)
            p = self.client(pub_node)
            p.send(b"".join(b"PUB heal.x 5\r\n%s%03d\r\n" % (tag, k) for k in range(n)))
            p.ping()
            self.assertEqual(sorted(m[1] for m in read_n(sa, n)), sorted(b"%s%03d" % (tag, k) for k in range(n)))
            self.assertEqual(len(read_n(sc, n)), n)
            self.assertEqual(count_msgs(sa) + count_msgs(sc), [])

        round_trip(b, 50, b"b0")
        # SIGKILL B: A and C drop it; restarted on the same ports it rejoins
        b.kill()
        self.assertTrue(wait_for(lambda: a.remote_ids() == {c.server_id} and c.remote_ids() == {a.server_id}))
        b.start()
        self.assertMesh(nodes)
        round_trip(b, 50, b"b1")
        round_trip(a, 50, b"a1")
        # SIGKILL the seed: B and C keep their route and redial A until it is back
        a_id = a.server_id
        sa.close()
        a.kill()
        self.assertTrue(wait_for(lambda: b.remote_ids() == {c.server_id}))
        sb = self.client(b)
        sb.send(b"SUB heal.> 1\r\n")
        sb.ping()
        a.start()
        self.assertNotEqual(a.server_id, a_id)
        self.assertMesh(nodes)
        sa = sb
        round_trip(a, 50, b"a2")
        round_trip(c, 50, b"c2")
        self.assertIn('Attempting reconnect for solicited route "nats://127.0.0.1:%d"' % a.cport, b.output())


class TestDuplicateRoutes(ClusterCase):
    def test_servers_routing_to_each_other(self):
        # both configure the other: exactly one route remains between them
        pa, pb = free_port(), free_port()
        a = self.node(cport=pa, routes=["nats://127.0.0.1:%d" % pb])
        b = self.node(cport=pb, routes=["nats://127.0.0.1:%d" % pa])
        self.assertMesh([a, b])
        # the duplicate was seen and dropped; a dropped duplicate that came
        # back would be redialled within REDIAL_FIRST (1 s): a negative
        # check needs this one dwell
        self.assertTrue(wait_for(lambda: "Detected duplicate remote route" in a.output() + b.output()))
        time.sleep(1.5)
        self.assertMesh([a, b], timeout=0.1)
        sub = self.client(b)
        sub.send(b"SUB dup 1\r\n")
        sub.ping()
        self.settle([a, b])
        p = self.client(a)
        p.send(b"".join(b"PUB dup 3\r\nx%02d\r\n" % k for k in range(10)) + b"PUB dup 3\r\nend\r\n")
        p.ping()
        # the sentinel comes last on the one route; a second route would
        # have carried a second copy of everything, sentinel included
        got = read_n(sub, 11)
        self.assertEqual([m[1] for m in got], [b"x%02d" % k for k in range(10)] + [b"end"])
        self.assertEqual(count_msgs(sub), [])


    def test_no_loss_while_duplicate_routes_resolve(self):
        # Both dial each other while traffic already flows at full speed: the
        # route that is dropped must not lose what was in flight on it (it
        # used to, when both ends closed the route that carried traffic).
        pa, pb = free_port(), free_port()
        a = self.node(cport=pa, routes=["nats://127.0.0.1:%d" % pb])
        b = self.node(cport=pb, routes=["nats://127.0.0.1:%d" % pa])
        sub = self.client(b)
        sub.send(b"SUB seq 1\r\n")
        sub.ping()
        data = bytearray(sub.buf)
        done = threading.Event()

        sentinel = b"MSG seq 1 3\r\nend\r\n"

        def reader():
            sub.sock.settimeout(0.2)
            deadline = None
            while sentinel not in data:     # published last, after the mesh settled
                if done.is_set() and deadline is None:
                    deadline = time.monotonic() + 30
                if deadline is not None and time.monotonic() > deadline:
                    break
                try:
                    d = sub.sock.recv(1 << 20)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not d:
                    break
                data.extend(d)
        t = threading.Thread(target=reader)
        t.start()
        p = self.client(a)
        seq = 0
        deadline = time.monotonic() + 3.0      # spans the duplicate resolution
        while time.monotonic() < deadline:
            batch = []
            for _ in range(2000):
                seq += 1
                n = b"%d" % seq
                batch.append(b"PUB seq %d\r\n%s\r\n" % (len(n), n))
            p.send(b"".join(batch))
        p.ping(timeout=30)
        self.assertMesh([a, b])
        p.send(b"PUB seq 3\r\nend\r\n")
        p.ping()
        done.set()
        t.join(40)
        self.assertIn(sentinel, data, "the sentinel never arrived")
        got = [int(x) for x in re.findall(rb"MSG seq 1 \d+\r\n(\d+)\r\n", bytes(data))]
        self.assertTrue(got, "no message crossed")
        first = got[0]
        # once interest had crossed, every message arrived exactly once
        missing = seq - first + 1 - len(got)
        self.assertEqual((len(set(got)), missing, got[-1]), (len(got), 0, seq))


class TestAdvertise(ClusterCase):
    """client_advertise, cluster_advertise and no_advertise, as other
    servers and clients see them."""

    def info_of(self, node):
        c = self.client(node)
        return json.loads(c.info[5:])

    def test_client_advertise(self):
        # (an explicit client port: gnatsd.py's ports file lists the
        # advertised URL, where nats-server lists the listening one)
        a = self.node(extra=["--client_advertise", "10.1.2.3:4567"], port=free_port())
        b = self.node(routes=[a.route_url])
        self.assertMesh([a, b])
        # B's clients learn A by its advertised address, never its real one
        urls = wait_for(lambda: self.info_of(b).get("connect_urls"))
        self.assertEqual(sorted(urls), sorted(["10.1.2.3:4567", "127.0.0.1:%d" % b.port]))
        self.assertEqual(self.info_of(a)["connect_urls"][0], "10.1.2.3:4567")

    def test_cluster_advertise(self):
        from tests.test_route_proto import Peer
        a = self.node(extra=["--cluster_advertise", "10.9.8.7:6543"])
        p = Peer(a.cport, handshake=False)
        self.addCleanup(p.close)
        self.assertEqual((p.server_info["host"], p.server_info["port"]), ("10.9.8.7", 6543))
        self.assertEqual(p.server_info["ip"], "nats-route://10.9.8.7:6543/")

    def test_no_advertise(self):
        a = self.node(extra=["--no_advertise"])
        b = self.node(routes=[a.route_url])
        self.assertMesh([a, b])
        self.settle([a, b])
        # A tells its clients nothing of the cluster, and B learns no URL for A
        self.assertNotIn("connect_urls", self.info_of(a))
        self.assertEqual(self.info_of(b).get("connect_urls"), ["127.0.0.1:%d" % b.port])


class TestClusterNames(ClusterCase):
    def test_configured_names_must_match(self):
        a = self.node(name="alpha")
        b = self.node(routes=[a.route_url], name="beta")
        self.assertTrue(wait_for(lambda: 'cluster name "beta" does not match "alpha"' in a.output()))
        self.assertRegex(a.output(), r'\[ERR\] .*Rejecting connection, cluster name "beta" does not match "alpha"')
        self.assertEqual(a.routez()["num_routes"], 0)
        self.assertEqual(b.routez()["num_routes"], 0)
        # a server without a name joins and takes the configured one
        c = self.node(routes=[a.route_url])
        self.assertMesh([a, c])
        self.assertEqual(json.loads(self.client(c).info[5:])["cluster"], "alpha")
        self.assertIn("Cluster name updated to alpha", c.output())


class TestRouteAuth(ClusterCase):
    def test_good_and_bad_credentials(self):
        creds = "nats://ruser:s3cret@127.0.0.1:%(cport)d"
        a = self.node(cluster_url=creds, extra=["-V"])
        good = "nats://ruser:s3cret@127.0.0.1:%d" % a.cport
        b = self.node(cluster_url=creds, routes=[good], extra=["-V"])
        c = self.node(cluster_url=creds, routes=[good])
        # B and C found each other through A and used their own credentials
        self.assertMesh([a, b, c])
        bad = self.node(routes=["nats://ruser:wrong@127.0.0.1:%d" % a.cport])
        self.assertTrue(wait_for(lambda: "authentication error" in a.output()))
        self.assertRegex(a.output(), r"\[ERR\] 127\.0\.0\.1:\d+ - rid:\d+ - authentication error")
        self.assertTrue(wait_for(lambda: "Authorization Violation" in bad.output()))
        self.assertNotIn("wrong", a.output())
        # traced CONNECTs, received and sent, never show the password
        self.assertIn('"pass":"[REDACTED]"', a.output())
        self.assertIn('"pass":"[REDACTED]"', b.output())
        self.assertNotIn("s3cret", a.output() + b.output())
        self.assertEqual(bad.routez()["num_routes"], 0)
        self.assertMesh([a, b, c], timeout=0.5)

    def test_bcrypt_hash_on_accepting_side(self):
        try:
            import bcrypt
        except ImportError:
            dependency_missing(self, "bcrypt is not installed")
        h = bcrypt.hashpw(b"pw0rd", bcrypt.gensalt(4)).decode()
        conf = ('cluster { listen: "127.0.0.1:%%(cport)d", authorization { user: r, password: "%s" } }\n'
                % h)
        a = self.node(config=conf)
        b = self.node(routes=["nats://r:pw0rd@127.0.0.1:%d" % a.cport])
        self.assertMesh([a, b])
        c = self.node(routes=["nats://r:nope@127.0.0.1:%d" % a.cport])
        self.assertTrue(wait_for(lambda: "authentication error" in a.output()))
        self.assertEqual(c.routez()["num_routes"], 0)


TLS_CONF = """
cluster {
  listen: "127.0.0.1:%%(cport)d"
  tls {
    cert_file: "%(cert)s"
    key_file: "%(key)s"
    ca_file: "%(ca)s"
    timeout: 2
  }
  %(routes)s
}
"""


def tls_conf(cert, ca="ca.pem", routes=()):
    base = cert.replace("-cert.pem", "")
    r = ("routes = [%s]" % ", ".join('"%s"' % u for u in routes)) if routes else ""
    return TLS_CONF % {"cert": os.path.join(CERTS, cert), "key": os.path.join(CERTS, base + "-key.pem"),
                       "ca": os.path.join(CERTS, ca), "routes": r}


class TestRouteTLS(ClusterCase):
    def test_tls_routes_verify_both_ways(self):
        a = self.node(config=tls_conf("srva-cert.pem"))
        b = self.node(config=tls_conf("srvb-cert.pem", routes=[a.route_url]))
        self.assertMesh([a, b])
        sub = self.client(a)
        sub.send(b"SUB sec 1\r\n")
        sub.ping()
        self.settle([a, b])
        p = self.client(b)
        p.send(b"PUB sec 6\r\nsecret\r\n" * 5)
        p.ping()
        self.assertEqual([m[1] for m in read_n(sub, 5)], [b"secret"] * 5)
        self.assertIn("TLS required for route connections", a.output())
        # a member whose certificate another CA signed is refused, both ways
        bad = self.node(config=tls_conf("client-wrongca-cert.pem", ca="wrongca.pem", routes=[a.route_url]))
        self.assertTrue(wait_for(lambda: "TLS handshake error" in a.output() or "TLS handshake error" in bad.output()))
        # a member without TLS at all gets nowhere either
        plain = self.node(routes=[a.route_url])
        # evidence that it dialled and was turned away, not just a quiet moment
        self.assertTrue(wait_for(lambda: "TLS handshake error: client sent plain text" in a.output()
                                 or "Error trying to connect" in plain.output()
                                 or "Router connection closed" in plain.output()),
                        (a.output()[-1500:], plain.output()[-1500:]))
        self.assertEqual(bad.routez()["num_routes"], 0)
        self.assertEqual(plain.routez()["num_routes"], 0)
        self.assertMesh([a, b], timeout=0.5)


try:
    import nats
except ImportError:     # pragma: no cover - the test extras install it
    nats = None


@needs(nats is not None, "nats-py is not installed")
class TestClientFailover(ClusterCase):
    def test_natspy_fails_over_to_learned_member(self):
        a = self.node()
        b = self.node(routes=[a.route_url])
        self.assertMesh([a, b])

        async def go():
            reconnected = asyncio.Event()

            async def on_reconnect():
                reconnected.set()
            # only A is given: B is learned from connect_urls
            async def quiet(e):
                pass
            nc = await nats.connect("nats://127.0.0.1:%d" % a.port, connect_timeout=2,
                                    reconnect_time_wait=0.2, max_reconnect_attempts=20,
                                    reconnected_cb=on_reconnect, error_cb=quiet)
            try:
                await flushed(nc)
                self.assertIn("127.0.0.1:%d" % b.port,
                              ["%s:%d" % (s.hostname, s.port) for s in nc.discovered_servers])
                a.stop()
                await asyncio.wait_for(reconnected.wait(), 10)
                self.assertEqual(nc.connected_url.port, b.port)
                got = []
                sub = await nc.subscribe("after.failover", cb=None)
                await nc.publish("after.failover", b"still here")
                msg = await sub.next_msg(timeout=3)
                got.append(msg.data)
                self.assertEqual(got, [b"still here"])
            finally:
                await nc.close()
        asyncio.run(asyncio.wait_for(go(), 30))


if __name__ == "__main__":
    unittest.main()
