"""Accounts across routes (issue 17): RS+/RS-/RMSG name the account, so a
cluster keeps accounts apart and carries imports. Each topology of two
nodes shares one accounts config: gnatsd.py + gnatsd.py, and mixed with
nats-server 2.15 in both dial directions, which must behave as all-Go.
Raw clients on loopback; exact message counts."""

import json
import time
import unittest
import urllib.request

from tests.util import (GO_SERVER_215, HAVE_GO_215, RawClient, ServerProcess, free_port, needs,
                        wait_for)

TIMEOUT = 15.0

ACCOUNTS = """
accounts {
  A: {
    users: [{user: a, password: a}]
    exports: [{stream: "feed.>"}, {service: "svc.echo"}]
  }
  B: {
    users: [{user: b, password: b}]
    imports: [
      {stream: {account: A, subject: "feed.>"}, prefix: "a"}
      {service: {account: A, subject: "svc.echo"}, to: "echo"}
    ]
  }
}
"""


def node_conf(cport, routes=()):
    conf = ACCOUNTS + "cluster { name: acc, listen: 127.0.0.1:%d" % cport
    if routes:
        conf += ", routes: [%s]" % ", ".join("nats://127.0.0.1:%d" % p for p in routes)
    return conf + " }\n"


def login(node, user):
    c = RawClient(node.port, json.dumps({"verbose": False, "pedantic": False, "user": user,
                                         "pass": user}).encode())
    c.ping()
    return c


def routez(node):
    return json.load(urllib.request.urlopen("http://127.0.0.1:%d/routez" % node.monitor_port))


class ClusterBehaviour:
    """exes: the two nodes' executables (None: gnatsd.py); the second
    dials the first."""
    exes = (None, None)

    @classmethod
    def setUpClass(cls):
        p1, p2 = free_port(), free_port()
        cls.n1 = ServerProcess("-m", "-1", config=node_conf(p1), exe=cls.exes[0])
        try:
            cls.n2 = ServerProcess("-m", "-1", config=node_conf(p2, [p1]), exe=cls.exes[1])
        except Exception:
            cls.n1.stop()
            raise
        wait_for(lambda: routez(cls.n1)["num_routes"] >= 1 and routez(cls.n2)["num_routes"] >= 1,
                 TIMEOUT)

    @classmethod
    def tearDownClass(cls):
        cls.n2.stop()
        cls.n1.stop()

    def client(self, node, user):
        c = login(node, user)
        self.addCleanup(c.close)
        return c

    def ready(self, pub, sub, subject, want_subject=None):
        """Publish `subject` from pub until sub sees it (interest crossed
        the route); drains what the probes brought."""
        want = (want_subject or subject).encode()

        def seen():
            pub.send(b"PUB %s 5\r\nprobe\r\n" % subject.encode())
            pub.ping()
            return any(m[1][0] == want for m in sub.drain())
        wait_for(seen, TIMEOUT, interval=0.2)
        time.sleep(0.3)
        sub.drain()

    def collect(self, c, n):
        got = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < n and time.monotonic() < deadline:
            got.extend(c.drain())
        got.extend(c.drain())
        return got

    def test_account_traffic_crosses_and_stays_apart(self):
        for src, dst in ((self.n1, self.n2), (self.n2, self.n1)):
            sub_a, sub_b = self.client(dst, "a"), self.client(dst, "b")
            sub_a.send(b"SUB shared.x 1\r\n")
            sub_b.send(b"SUB shared.x 1\r\nSUB shared.marker 2\r\n")
            sub_a.ping(), sub_b.ping()
            pub_a, pub_b = self.client(src, "a"), self.client(src, "b")
            self.ready(pub_a, sub_a, "shared.x")
            self.ready(pub_b, sub_b, "shared.marker")
            pub_a.send(b"".join(b"PUB shared.x 3\r\n%03d\r\n" % i for i in range(100)))
            pub_a.ping()
            got = self.collect(sub_a, 100)
            self.assertEqual([m[2] for m in got], [b"%03d" % i for i in range(100)])
            # B's subscriber on the same subject saw none of A's messages
            pub_b.send(b"PUB shared.marker 3\r\nend\r\n")
            pub_b.ping()
            self.assertEqual([m[2] for m in self.collect(sub_b, 1)], [b"end"])

    def test_stream_import_across_the_route(self):
        for src, dst in ((self.n1, self.n2), (self.n2, self.n1)):
            imp = self.client(dst, "b")
            imp.send(b"SUB a.feed.> 1\r\n")
            imp.ping()
            pub = self.client(src, "a")
            self.ready(pub, imp, "feed.ready", "a.feed.ready")
            pub.send(b"".join(b"PUB feed.%d 2\r\n%02d\r\n" % (i % 3, i) for i in range(50)))
            pub.ping()
            got = self.collect(imp, 50)
            self.assertEqual([m[2] for m in got], [b"%02d" % i for i in range(50)])
            self.assertEqual({m[1][0] for m in got}, {b"a.feed.0", b"a.feed.1", b"a.feed.2"})

    def test_service_import_across_the_route(self):
        for resp_node, req_node in ((self.n1, self.n2), (self.n2, self.n1)):
            responder = self.client(resp_node, "a")
            responder.send(b"SUB svc.echo 1\r\n")
            responder.ping()
            requester = self.client(req_node, "b")
            requester.send(b"SUB _INBOX.acc.> 1\r\n")
            requester.ping()
            answered = []

            def round_trip(i):
                requester.send(b"PUB echo _INBOX.acc.%d 3\r\nq%02d\r\n" % (i, i % 100))
                requester.ping()
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline:
                    for op, args, payload in responder.drain():
                        responder.send(b"PUB %s %d\r\n%s\r\n" % (args[2], len(payload), payload))
                    responder.ping()
                    got = requester.drain()
                    if got:
                        answered.extend(got)
                        return True
                return False
            # the first may be lost while interest crosses; then every one answers
            wait_for(lambda: round_trip(len(answered) + 1000), TIMEOUT, interval=0.1)
            answered.clear()
            for i in range(20):
                self.assertTrue(round_trip(i), "request %d unanswered" % i)
            self.assertEqual([(m[1][0], m[2]) for m in answered],
                             [(b"_INBOX.acc.%d" % i, b"q%02d" % i) for i in range(20)])

    def test_no_errors_logged(self):
        for n in (self.n1, self.n2):
            if n.exe is None:
                bad = [l for l in n.output().splitlines()
                       if "Traceback" in l or "Internal" in l or "[ERR]" in l and "dedicated route" not in l]
                self.assertEqual(bad, [])


class PythonPair(ClusterBehaviour, unittest.TestCase):
    exes = (None, None)


@needs(HAVE_GO_215, "nats-server 2.15 is not at /opt/ns/bin/nats-server")
class GoSeedPythonDials(ClusterBehaviour, unittest.TestCase):
    exes = (GO_SERVER_215, None)


@needs(HAVE_GO_215, "nats-server 2.15 is not at /opt/ns/bin/nats-server")
class PythonSeedGoDials(ClusterBehaviour, unittest.TestCase):
    exes = (None, GO_SERVER_215)


@needs(HAVE_GO_215, "nats-server 2.15 is not at /opt/ns/bin/nats-server")
class GoPair(ClusterBehaviour, unittest.TestCase):
    """The reference: what the mixed pairs must match."""
    exes = (GO_SERVER_215, GO_SERVER_215)


if __name__ == "__main__":
    unittest.main()
