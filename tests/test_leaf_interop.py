"""Leaf nodes across implementations (issue 22): gnatsd.py as the leaf of a
Go hub and as the hub of a Go leaf, against nats-server 2.15.1 (the
behaviour reference) and Debian's 2.9.10; the cases of tests/test_leaf.py
(pub/sub both ways, headers, queue groups preferring local members,
request/reply both ways) run on each pairing with credentials, plus the
refusal of wrong credentials in both directions with nats-server's texts
and a Go hub restarting under a gnatsd.py leaf.
"""

import unittest

from tests.test_leaf import (WAIT, Cases, DenyCases, LeafCase, Topology, hub_config, leaf_config,
                             leaf_port, leafz, start)
from tests.test_jwt_unit import nkeys
from tests.test_operator_mode import Setup, raw_connect
from tests.util import GO_SERVER, GO_SERVER_215, HAVE_GO_215, needs, wait_for

NEEDS_GO = needs(GO_SERVER, "nats-server (2.9) is not installed")
NEEDS_GO_215 = needs(HAVE_GO_215, "nats-server 2.15 is not installed at %s" % GO_SERVER_215)


@NEEDS_GO_215
class TestPyLeafGoHub215(Topology, Cases):
    hub_exe = GO_SERVER_215


@NEEDS_GO_215
class TestGoLeaf215PyHub(Topology, Cases):
    leaf_exe = GO_SERVER_215


@NEEDS_GO
class TestPyLeafGoHub29(Topology, Cases):
    hub_exe = GO_SERVER


@NEEDS_GO
class TestGoLeaf29PyHub(Topology, Cases):
    leaf_exe = GO_SERVER


@NEEDS_GO_215
class TestPyLeafGoHub215TLS(Topology, Cases):
    hub_exe = GO_SERVER_215
    tls = True


@NEEDS_GO_215
class TestGoLeaf215PyHubTLS(Topology, Cases):
    leaf_exe = GO_SERVER_215
    tls = True


class CredentialCases:
    """exe: the Go server of this class."""

    def test_py_leaf_with_wrong_password_is_refused_by_go_hub(self):
        hub = self.proc(hub_config(auth=True), self.exe)
        leaf = self.proc(leaf_config(leaf_port(hub), "lu:nope", name="bad"))
        # 2.9.10 does not name the user; 2.15 (and gnatsd.py) do
        self.assertTrue(hub.wait_log(r'lid:\d+ - authentication error', WAIT), hub.output())
        self.assertTrue(leaf.wait_log(r"lid:\d+ - Leafnode Error 'Authorization Violation'", WAIT), leaf.output())
        self.assertEqual(leafz(leaf)["leafnodes"], 0)
        self.assertEqual(leafz(hub)["leafnodes"], 0)

    def test_go_leaf_with_wrong_password_is_refused_by_py_hub(self):
        hub = self.proc(hub_config(auth=True))
        leaf = self.proc(leaf_config(leaf_port(hub), "lu:nope", name="bad"), self.exe)
        self.assertTrue(hub.wait_log(r'lid:\d+ - authentication error - User "lu"', WAIT), hub.output())
        self.assertTrue(leaf.wait_log(r"lid:\d+ - Leafnode Error 'Authorization Violation'", WAIT), leaf.output())
        self.assertEqual(leafz(hub)["leafnodes"], 0)

    def test_go_hub_restart_py_leaf_reconnects(self):
        hub = start(hub_config(), self.exe)
        try:
            port = leaf_port(hub)
            leaf = self.proc(leaf_config(port))
            self.wait_leafs(leaf, 1)
            sub = self.client(leaf)
            sub.send(b"SUB again 1\r\n")
            sub.ping()
            self.wait_interest(hub, "again")
        finally:
            hub.stop()
        hub2 = self.proc(hub_config(port=port), self.exe)
        self.wait_leafs(hub2, 1)
        self.wait_interest(hub2, "again")
        self.client(hub2).send(b"".join(b"PUB again 3\r\na%02d\r\n" % i for i in range(50)))
        self.assertEqual([p for _, _, p in self.collect(sub, 50)], [b"a%02d" % i for i in range(50)])


@NEEDS_GO_215
class TestCredentials215(LeafCase, CredentialCases):
    exe = GO_SERVER_215


@NEEDS_GO
class TestCredentials29(LeafCase, CredentialCases):
    exe = GO_SERVER


@NEEDS_GO_215
class TestDenyGoHub215(LeafCase, DenyCases):
    hub_exe = GO_SERVER_215


@NEEDS_GO_215
@needs(nkeys is not None, "the nkeys package is not installed")
class TestCredentialsFileGoOperatorHub(LeafCase):
    """A remote with `credentials`: the user JWT and the hub's nonce signed
    with the file's seed; nats-server 2.15 in operator mode binds the leaf
    to the user's account."""

    def setUp(self):
        self.jwt = Setup()
        self.addCleanup(self.jwt.close)

    def test_leaf_joins_the_users_account(self):
        _, _, creds = self.jwt.user()
        hub = self.proc(self.jwt.config + hub_config(), GO_SERVER_215)
        leaf = self.proc(leaf_config(leaf_port(hub), extra_remote='credentials: "%s"' % creds))
        self.wait_leafs(hub, 1)
        self.assertEqual(leafz(hub)["leafs"][0]["account"], self.jwt.a.pub)
        kp, token, _ = self.jwt.user()
        on_hub, _ = raw_connect(hub.port, token, kp)
        self.addCleanup(on_hub.close)
        on_hub.read_until(b"PONG\r\n", WAIT)
        on_hub.send(b"SUB from.leaf 1\r\nPING\r\n")
        on_hub.read_until(b"PONG\r\n", WAIT)
        self.wait_interest(leaf, "from.leaf")
        self.client(leaf).send(b"PUB from.leaf 2\r\nok\r\n" * 10)
        got = [on_hub.read_msg(WAIT) for _ in range(10)]
        self.assertEqual([p for _, _, p in got if p is not None], [b"ok"] * 10)

    def test_unreadable_credentials_file_is_logged_and_retried(self):
        hub = self.proc(self.jwt.config + hub_config(), GO_SERVER_215)
        leaf = self.proc(leaf_config(leaf_port(hub), extra_remote='credentials: "/nonexistent.creds"'))
        self.assertTrue(leaf.wait_log(r"Leafnode remote credentials /nonexistent.creds: .*No such file", WAIT),
                        leaf.output())
        self.assertEqual(leafz(hub)["leafnodes"], 0)


@NEEDS_GO_215
class TestPyLeafJoinsGoCluster(LeafCase):
    """The issue's done-when: a gnatsd.py with one remote joins a Go
    cluster as a leaf and exchanges messages both ways with its members,
    also with the member it is not connected to."""

    def test_both_ways_through_the_cluster(self):
        n1 = self.proc(hub_config(extra="cluster { listen: 127.0.0.1:-1, name: gc }"), GO_SERVER_215)
        n2 = self.proc(hub_config(extra='cluster { listen: 127.0.0.1:-1, name: gc, routes: ["nats://127.0.0.1:%d"] }'
                                  % n1.cluster_port, name="hub2"), GO_SERVER_215)
        leaf = self.proc(leaf_config(leaf_port(n1)))
        self.wait_leafs(n1, 1)
        on_n2, on_leaf = self.client(n2), self.client(leaf)
        on_n2.send(b"SUB to.n2 1\r\n")
        on_leaf.send(b"SUB to.leaf 1\r\n")
        on_n2.ping()
        on_leaf.ping()
        self.wait_interest(leaf, "to.n2")           # n2's interest, routed to n1, sent to the leaf
        self.client(leaf).send(b"".join(b"PUB to.n2 3\r\nn%02d\r\n" % i for i in range(40)))
        self.assertEqual([p for _, _, p in self.collect(on_n2, 40)], [b"n%02d" % i for i in range(40)])
        # n2 learns the leaf's interest over its route: probe until it does
        pub = self.client(n2)
        self.assertTrue(wait_for(lambda: self._probe(pub, on_leaf), WAIT))
        pub.send(b"".join(b"PUB to.leaf 3\r\nl%02d\r\n" % i for i in range(40)))
        got = []
        while len(got) < 40:        # probes still in flight come first (same path)
            op, _, payload = on_leaf.read_msg(WAIT)
            if op == b"MSG" and payload != b"probe":
                got.append(payload)
        self.assertEqual(got, [b"l%02d" % i for i in range(40)])
        self.assertEqual([m for m in on_leaf.drain() if m[2] != b"probe"], [])

    @staticmethod
    def _probe(pub, sub):
        pub.send(b"PUB to.leaf 5\r\nprobe\r\n")
        try:
            return sub.read_msg(0.2)[2] == b"probe"
        except TimeoutError:
            return False


@NEEDS_GO_215
class TestGoHubSeesPyLeaf(LeafCase):
    def test_leafz_on_both_sides(self):
        hub = self.proc(hub_config(), GO_SERVER_215)
        leaf = self.proc(leaf_config(leaf_port(hub), name="pyleaf"))
        self.wait_leafs(hub, 1)
        self.wait_leafs(leaf, 1)
        h = leafz(hub)["leafs"][0]
        self.assertEqual((h["name"], h["is_spoke"], h["account"]), ("pyleaf", False, "$G"))
        lf = leafz(leaf)["leafs"][0]
        self.assertEqual((lf["name"], lf["is_spoke"], lf["account"]), ("hub", True, "$G"))
        self.assertTrue(any(s.startswith("$LDS.") for s in h["subscriptions_list"]))


if __name__ == "__main__":
    unittest.main()
