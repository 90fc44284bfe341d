"""Issue 13, the core's declared contract: the parse state every connection
holds (inbound.InboundState), what Connection declares itself, and the
account registry that owns the subject index. In-process servers and
routes on real socket pairs, peers on real loopback sockets."""

import ast
import inspect
import io
import json
import os
import socket
import unittest

from gnats import conn as conn_mod
from gnats.account import GLOBAL_ACCOUNT, Account
from gnats.client import Client
from gnats.conn import Connection
from gnats.inbound import InboundState, PubState, pcache_cost, scache_cost
from gnats.log import Logger
from gnats.options import Options
from gnats.parser import ProtocolError
from gnats.cluster import Cluster
from gnats.server import Server
from tests.util import RawClient, ServerProcess

TIMEOUT = 5.0


def in_process(test, **opts):
    """A Server that is never started: connections are fed by hand."""
    o = Options()
    for k, v in opts.items():
        setattr(o, k, v)
    logbuf = io.StringIO()
    srv = Server(o, Logger(stream=logbuf))
    srv.port = 4222
    srv.test_log = logbuf           # what the server logged, for assertions
    test.addCleanup(srv.reactor.close)
    return srv


def feed(conn, data):
    """Feed input as the reactor would, including the later turns a read
    gets when it overran its time slice (inbound.INPUT_SLICE) on a loaded
    machine: nothing runs the reactor in these tests."""
    conn.feed(data)
    while conn.deferred and not conn.closed:
        conn.resume_input()


def new_client(test, srv, cid=1):
    a, b = socket.socketpair()
    test.addCleanup(a.close)
    test.addCleanup(b.close)
    c = Client(srv, a, ("127.0.0.1", 9), cid)
    srv.clients[cid] = c
    feed(c, b'CONNECT {"verbose":false,"pedantic":false}\r\n')
    return c


def new_route(test, srv):
    cl = Cluster(srv)
    srv.cluster = cl
    a, b = socket.socketpair()
    test.addCleanup(a.close)
    test.addCleanup(b.close)
    r = cl._new_route(a, ("127.0.0.1", 10), None)
    feed(r, b'CONNECT {"name":"NCORE","cluster":"c"}\r\n'
           b'INFO {"server_id":"NCORE","port":1,"cluster":"c"}\r\n')
    test.assertTrue(r.registered and not r.closed)
    return r


class TestInboundState(unittest.TestCase):
    def test_state_has_exactly_the_declared_fields(self):
        self.assertEqual(InboundState.__slots__,
                         ("sublist", "pgen", "pcache", "pcache_used", "need", "resume_at"))
        self.assertEqual(PubState.__slots__, ("scache", "scache_used"))
        srv = in_process(self)
        for st in (InboundState(srv.sublist), PubState(srv.sublist)):
            self.assertFalse(hasattr(st, "__dict__"))
            with self.assertRaises(AttributeError):
                st.paused = True          # nothing undeclared can be hung on it

    def test_client_and_route_hold_one_state_and_no_loose_cache_fields(self):
        srv = in_process(self, cluster_port=-1, cluster_name="c")
        c = new_client(self, srv)
        r = new_route(self, srv)
        self.assertIs(type(c.inb), PubState)
        self.assertIs(type(r.inb), InboundState)
        self.assertIsNone(r.inb.scache)             # no client-only cache, not even empty
        for conn in (c, r):
            for name in ("pcache", "scache", "pgen", "need", "resume_at", "pcache_used", "scache_used"):
                self.assertNotIn(name, vars(conn), name)

    def test_payload_end_sets_need_or_resume(self):
        st = InboundState(in_process(self).sublist)
        buf = b"PUB a 3\r\nabc\r\nPING\r\n"
        self.assertEqual(st.payload_end(buf[:12], 0, 9, 3), 0)
        self.assertEqual(st.need, 14)               # line + payload + CRLF from pos 0
        st.need = 0
        self.assertEqual(st.payload_end(buf, 0, 9, 3), 14)
        self.assertEqual(st.resume_at, 14)
        with self.assertRaises(ProtocolError):
            st.payload_end(b"PUB a 3\r\nabcxx", 0, 9, 3)

    def test_route_sending_pub_is_refused_as_before(self):
        # a route never speaks PUB: the loop's PUB branch is not there for
        # it, and the line is an unknown op, as when routes carried an
        # empty client cache
        srv = in_process(self, cluster_port=-1, cluster_name="c")
        r = new_route(self, srv)
        feed(r, b"PUB foo 2\r\nhi\r\n")
        self.assertTrue(r.closed)
        self.assertIn("Router parser ERROR: unknown op", srv.test_log.getvalue())

    def test_respaced_pubs_keep_cache_accounting_exact(self):
        # "PUB foo  N" misses the loop's scache probe (its text is "foo "),
        # so each one resolves "foo" again: the replaced entry's bytes must
        # not be counted twice
        srv = in_process(self)
        sub = new_client(self, srv, 1)
        feed(sub, b"SUB foo 1\r\n")
        pub = new_client(self, srv, 2)
        for n in range(1, 200):
            feed(pub, b"PUB foo  %d\r\n%s\r\n" % (n, b"x" * n))
        st = pub.inb
        self.assertEqual(len(st.scache), 1)
        self.assertEqual(st.scache_used, sum(scache_cost(k, v) for k, v in st.scache.items()))
        self.assertEqual(st.pcache_used, sum(pcache_cost(k, v) for k, v in st.pcache.items()))
        self.assertEqual(bytes(sub.wbuf).count(b"MSG foo 1 "), 199)


def _self_reads(cls):
    """Names read as `self.<name>` in the methods of `cls`, and names it
    declares (assigned in __init__, class attributes, methods)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    declared = set()
    reads = set()
    for node in body:
        if isinstance(node, ast.Assign):
            declared.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.FunctionDef):
            declared.add(node.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            reads.add(node.attr)
    init = next(n for n in body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    for node in ast.walk(init):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                and isinstance(node.value, ast.Name) and node.value.id == "self":
            declared.add(node.attr)
    return reads, declared


class TestConnectionDeclaresItsState(unittest.TestCase):
    def test_every_attribute_connection_touches_is_its_own(self):
        reads, declared = _self_reads(Connection)
        self.assertEqual(reads - declared, set())
        self.assertNotIn("getattr(self", inspect.getsource(conn_mod))

    def test_lifecycle_flags_exist_on_every_kind_from_the_start(self):
        srv = in_process(self, cluster_port=-1, cluster_name="c")
        c = new_client(self, srv)
        r = new_route(self, srv)
        for conn in (c, r):
            for flag in ("tls_waiting", "tls_handshaking", "deferred", "write_blocked", "closed"):
                self.assertIs(vars(conn)[flag], False, flag)
            self.assertEqual(conn.closing_after_flush, "")
            self.assertFalse(conn.paused)
        for name in ("connected", "authed", "paused", "deferred", "tls_waiting",
                     "tls_handshaking", "write_blocked", "closing_after_flush", "closed"):
            self.assertIn(name, conn_mod.__doc__, name)     # the one table documents it


class TestAccounts(unittest.TestCase):
    def test_registry_resolves_the_global_account(self):
        srv = in_process(self)
        g = srv.accounts.global_account
        self.assertIsInstance(g, Account)
        self.assertEqual((g.name, g.wire), (GLOBAL_ACCOUNT, b"$G"))
        self.assertIs(srv.accounts.find_wire(b"$G"), g)
        self.assertIsNone(srv.accounts.find_wire(b"$SYS"))
        self.assertIs(srv.sublist, g.sublist)       # the server-wide alias

    def test_client_subscribes_in_its_accounts_index(self):
        srv = in_process(self)
        c = new_client(self, srv)
        self.assertIs(c.account, srv.accounts.global_account)
        self.assertIsNone(c.perms)
        self.assertIs(c.inb.sublist, c.account.sublist)
        feed(c, b"SUB a.* 1\r\nSUB b 2\r\n")
        self.assertEqual(c.account.sublist.count, 2)
        feed(c, b"UNSUB 1\r\n")
        self.assertEqual(c.account.sublist.count, 1)

    def test_route_interest_is_keyed_by_account(self):
        srv = in_process(self, cluster_port=-1, cluster_name="c")
        r = new_route(self, srv)
        g = srv.accounts.global_account
        feed(r, b"RS+ $G foo\r\nRS+ $G bar q 2\r\nRS+ $SYS foo\r\n")
        self.assertEqual(set(r.subs), {(g, "foo", None), (g, "bar", "q")})
        self.assertEqual(g.sublist.count, 2)
        feed(r, b"RS- $G foo\r\nRS- $SYS bar q\r\n")
        self.assertEqual(set(r.subs), {(g, "bar", "q")})
        self.assertEqual(g.sublist.count, 1)


class TestUnknownAccountOverARoute(unittest.TestCase):
    """A real server and a peer impersonating a Go node: lines naming an
    account this server does not have are read and ignored, as before."""

    def test_rmsg_and_interest_for_unknown_account_are_ignored(self):
        srv = ServerProcess("--cluster_name", "acc", "--cluster", "nats://127.0.0.1:-1")
        self.addCleanup(srv.stop)
        cport = srv.cluster_port
        sub = RawClient(srv.port)
        self.addCleanup(sub.close)
        sub.send(b"SUB foo 1\r\n")
        sub.ping()
        peer = RawClient(cport, connect=None, timeout=TIMEOUT)
        self.addCleanup(peer.close)
        sid = "NACCPEER" + os.urandom(4).hex().upper()
        peer.send(b"CONNECT " + json.dumps({"echo": True, "verbose": False, "pedantic": False,
                                            "headers": True, "name": sid, "cluster": "acc"}).encode() + b"\r\n")
        peer.send(b"INFO " + json.dumps({"server_id": sid, "port": 1, "headers": True,
                                         "cluster": "acc"}).encode() + b"\r\n")
        peer.send(b"RS+ $SYS foo\r\nRMSG $SYS foo 4\r\nnope\r\nHMSG $SYS foo 12 14\r\nNATS/1.0\r\n\r\nno\r\n"
                  b"RMSG $G foo 3\r\nyes\r\n")
        peer.ping()                                   # still connected: answers
        self.assertEqual(sub.read_msg(TIMEOUT), (b"MSG", [b"foo", b"1", b"3"], b"yes"))
        self.assertEqual(sub.drain(), [])             # nothing from $SYS
        # the $SYS interest did not become ours: a local PUB is not routed
        pub = RawClient(srv.port)
        self.addCleanup(pub.close)
        pub.send(b"PUB foo 2\r\nhi\r\n")
        pub.ping()
        self.assertEqual(sub.read_msg(TIMEOUT), (b"MSG", [b"foo", b"1", b"2"], b"hi"))
        data = peer.ping()
        self.assertNotIn(b"RMSG", data)


if __name__ == "__main__":
    unittest.main()
