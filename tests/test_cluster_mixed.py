"""Mixed clusters: one Go `nats-server` and two `python3 gnatsd.py` nodes
in one full mesh, once with the Go server as the seed and once with a
Python seed. Messages, queue groups, request/reply and headers cross in
every direction with exact counts; the Go node's `$SYS` traffic is read
and ignored without a single error in our logs.
"""

import json
import os
import time
import unittest

from tests.test_cluster import ClusterCase, Node, count_msgs, read_n, read_until_sentinels
from tests.util import GO_SERVER, needs

NEEDS_GO = needs(GO_SERVER, "nats-server is not installed (install nats-server 2.9 to run mixed-cluster tests)")


def GoNode(routes=(), name=""):
    """A Go nats-server cluster member: the same flags, ports file and
    interface as a gnatsd.py Node."""
    assert GO_SERVER, "no nats-server: the class must be marked NEEDS_GO"
    return Node(routes=routes, name=name, exe=GO_SERVER)


class MixedTests:
    """The tests both topologies run; `self.nodes` is [go, py1, py2] in
    some order, `self.go` the Go node."""

    def setUp(self):
        self.assertMesh(self.nodes)

    def test_full_mesh(self):
        # (setUp checked one route to each other node) both ends of every
        # route agree on who dialled: exactly one of them
        solicited = {(n.server_id, r["remote_id"]): r["did_solicit"] for n in self.nodes for r in n.routez()["routes"]}
        for (x, y), dialled in solicited.items():
            self.assertNotEqual(dialled, solicited[y, x], (x[:8], y[:8]))
        seed = [n for n in self.nodes if not n.routes][0]         # it dialled nobody
        self.assertTrue(all(not d for (x, _), d in solicited.items() if x == seed.server_id))

    def test_plain_subjects_every_direction(self):
        subs = []
        for n in self.nodes:
            s = self.client(n)
            s.send(b"SUB mix.> 1\r\nSUB mix.exact 2\r\n")
            s.ping()
            subs.append(s)
        self.settle(self.nodes)
        for i, n in enumerate(self.nodes):
            p = self.client(n)
            p.send(b"".join(b"PUB mix.exact 4\r\nm%03d\r\n" % (i * 100 + k) for k in range(100)))
            p.ping()
        want = sorted(b"m%03d" % k for k in range(300))
        for s in subs:
            got = read_n(s, 600)
            for sid in (b"1", b"2"):
                self.assertEqual(sorted(p for a, p in got if a[1] == sid), want)
            self.assertEqual(count_msgs(s), [])

    def test_queue_group_exactly_once(self):
        members = []
        for n in self.nodes:
            for _ in range(2):
                m = self.client(n)
                m.send(b"SUB mix.work crew 1\r\nSUB mix.end 2\r\n")
                m.ping()
                members.append(m)
        self.settle(self.nodes)
        pubs = []
        for i, n in enumerate(self.nodes):
            p = self.client(n)
            p.send(b"".join(b"PUB mix.work 4\r\nw%03d\r\n" % (i * 100 + k) for k in range(100)))
            p.ping()
            pubs.append(p)
        got = [[] for _ in members]
        deadline = time.monotonic() + 5
        while sum(map(len, got)) < 300 and time.monotonic() < deadline:
            for i, m in enumerate(members):
                got[i].extend(count_msgs(m))
        # a barrier instead of a sleep: every publisher's sentinel reaches
        # every member after anything late from that publisher
        for p in pubs:
            p.send(b"PUB mix.end 0\r\n\r\n")
            p.ping()
        for i, m in enumerate(members):
            got[i].extend(read_until_sentinels(m, b"mix.end", len(pubs)))
        payloads = sorted(p for g in got for _, p in g)
        self.assertEqual(payloads, sorted(b"w%03d" % k for k in range(300)))
        self.assertTrue(all(got), [len(g) for g in got])

    def test_request_reply_and_no_responders(self):
        for svc_node, req_node in ((self.nodes[0], self.nodes[1]), (self.nodes[1], self.nodes[2]),
                                   (self.nodes[2], self.nodes[0])):
            tag = os.urandom(3).hex().encode()
            req = self.client(req_node)
            req.send(b"SUB _INBOX.%s.* 1\r\n" % tag)
            req.ping()
            self.settle(self.nodes)
            # nobody anywhere serves it yet: the requester's server says 503
            req.send(b"PUB svc.%s _INBOX.%s.x 0\r\n\r\n" % (tag, tag))
            op, args, payload = req.read_msg()
            self.assertEqual(op, b"HMSG")
            self.assertIn(b"503", payload)
            svc = self.client(svc_node)
            svc.send(b"SUB svc.%s 1\r\n" % tag)
            svc.ping()
            self.settle(self.nodes)
            for k in range(10):
                req.send(b"PUB svc.%s _INBOX.%s.%d 1\r\n%d\r\n" % (tag, tag, k, k))
            req.ping()
            for args, payload in read_n(svc, 10):
                svc.send(b"PUB %s 2\r\nr%s\r\n" % (args[2], payload))
            svc.ping()
            got = read_n(req, 10)
            self.assertEqual(sorted((a[0], p) for a, p in got),
                             sorted((b"_INBOX.%s.%d" % (tag, k), b"r%d" % k) for k in range(10)))
            self.assertEqual(count_msgs(req), [])

    def test_headers_cross(self):
        hdr = b"NATS/1.0\r\nK: v\r\n\r\n"
        for i, n in enumerate(self.nodes):
            sub = self.client(self.nodes[(i + 1) % 3])
            sub.send(b"SUB mix.h%d 1\r\n" % i)
            sub.ping()
            self.settle(self.nodes)
            p = self.client(n)
            p.send(b"HPUB mix.h%d r %d %d\r\n%sbody\r\n" % (i, len(hdr), len(hdr) + 4, hdr))
            p.ping()
            op, args, payload = sub.read_msg()
            self.assertEqual((op, args[0], args[2], payload), (b"HMSG", b"mix.h%d" % i, b"r", hdr + b"body"))

    def test_connect_urls_from_every_member(self):
        urls = sorted("127.0.0.1:%d" % n.port for n in self.nodes)
        for n in self.nodes:
            c = self.client(n)
            info = json.loads(c.info[5:])
            self.assertEqual(sorted(info["connect_urls"]), urls, (n is self.go, info))

    @classmethod
    def tearDownClass(cls):
        # After every test of the class (a check inside one test would miss
        # what later tests caused): the Go node's $SYS interest and messages
        # reached the Python nodes and were ignored without an error.
        # The logs are read before the nodes stop: a node stopped first
        # resets routes the others may still be flushing to, and the Go
        # server logs that reset as an error ("Error flushing: writev ...
        # connection reset by peer"), which says nothing about the tests.
        logs = [(n, n.output()) for n in cls.nodes]
        for n in cls.nodes:
            n.stop()
        bad = [l for n, out in logs for l in out.splitlines()
               if "[ERR]" in l or (n is not cls.go and "parser" in l.lower())]
        if bad:
            raise AssertionError("errors in the mixed cluster's logs:\n" + "\n".join(bad[:20]))


@NEEDS_GO
class TestGoSeed(MixedTests, ClusterCase):
    @classmethod
    def setUpClass(cls):
        cls.go = GoNode(name="mixed")
        cls.b = Node(routes=[cls.go.route_url], name="mixed")
        cls.c = Node(routes=[cls.go.route_url], name="mixed")
        cls.nodes = [cls.go, cls.b, cls.c]


@NEEDS_GO
class TestPythonSeed(MixedTests, ClusterCase):
    @classmethod
    def setUpClass(cls):
        cls.a = Node(name="mixed")
        cls.go = GoNode(routes=[cls.a.route_url], name="mixed")
        cls.c = Node(routes=[cls.a.route_url], name="mixed")
        cls.nodes = [cls.a, cls.go, cls.c]


@NEEDS_GO
class TestMixedDynamicNames(ClusterCase):
    def test_unnamed_go_and_python_servers_agree_on_a_name(self):
        go = GoNode()
        self.addCleanup(go.stop)
        b = self.node(routes=[go.route_url])
        c = self.node(routes=[go.route_url])
        self.assertMesh([go, b, c], timeout=15)
        names = set()
        for n in (go, b, c):
            x = self.client(n)
            names.add(json.loads(x.info[5:])["cluster"])
        self.assertEqual(len(names), 1, names)


if __name__ == "__main__":
    unittest.main()
