"""The route protocol spoken to one `python3 gnatsd.py` process by a raw
socket that impersonates a peer server: type its protocol, expect bytes.

A peer connects to the cluster port, reads the server's INFO, sends CONNECT
and its own INFO (as nats-server 2.9 does when it dials), and from then on
speaks RS+/RS-/RMSG/HMSG. Local clients are raw clients on the client port.
"""

import io
import json
import os
import random
import re
import socket
import time
import unittest

from gnats.client import Client
from gnats.log import Logger
from gnats.options import Options
from gnats.cluster import Cluster
from gnats.server import Server
from tests.util import RawClient, ServerProcess, free_port

TIMEOUT = 5.0


def peer_id(tag):
    return ("NPEER%s" % tag).ljust(56, "X")[:56]


class Peer(RawClient):
    """A fake cluster member on a raw socket (reads with timeouts)."""

    def __init__(self, port, sid=None, cluster="", dynamic=False, handshake=True,
                 info_port=4248, user=None, password=None):
        RawClient.__init__(self, port, connect=None, timeout=TIMEOUT)
        assert self.info.startswith(b"INFO "), self.info
        self.server_info = json.loads(self.info[5:])
        self.sid = sid or peer_id(os.urandom(4).hex().upper())
        self.cluster = cluster
        self.dynamic = dynamic
        self.info_port = info_port
        if handshake:
            self.handshake(user, password)

    def connect_obj(self, user=None, password=None):
        obj = {"echo": True, "verbose": False, "pedantic": False, "tls_required": False,
               "headers": True, "name": self.sid, "cluster": self.cluster}
        if self.dynamic:
            obj["cluster_dynamic"] = True
        if user is not None:
            obj["user"] = user
            obj["pass"] = password
        return obj

    def info_obj(self):
        return {"server_id": self.sid, "server_name": self.sid, "version": "2.9.10", "proto": 2,
                "host": "127.0.0.1", "port": self.info_port, "headers": True,
                "cluster": self.cluster, "connect_urls": ["127.0.0.1:%d" % (self.info_port + 1)]}

    def handshake(self, user=None, password=None):
        self.send(b"CONNECT " + json.dumps(self.connect_obj(user, password)).encode() + b"\r\n")
        self.send(b"INFO " + json.dumps(self.info_obj()).encode() + b"\r\n")

    # The server's own system account interest (gnats/sysacct.py), which
    # every nats-server sends a peer too: not what these tests look at.
    SYSTEM_INTEREST = (b"RS+ $SYS ", b"RS- $SYS ")

    def read_line(self, timeout=None):
        while True:
            line = RawClient.read_line(self, timeout)
            if not line.startswith(self.SYSTEM_INTEREST):
                return line

    def sync(self):
        """PING/PONG round trip: returns the lines received before the PONG."""
        data = self.ping()
        return [l for l in data.split(b"\r\n") if l and not l.startswith(self.SYSTEM_INTEREST)]

    def expect_lines(self, wanted, timeout=TIMEOUT):
        """Read lines until every line in `wanted` was seen (any order);
        returns the other lines read meanwhile."""
        wanted = set(wanted)
        other = []
        deadline = time.monotonic() + timeout
        while wanted:
            line = self.read_line(max(0.01, deadline - time.monotonic()))
            if line in wanted:
                wanted.discard(line)
            else:
                other.append(line)
        return other

    def read_rmsg(self, timeout=None):
        """The next RMSG/HMSG (skipping PINGs): (control line args, payload)."""
        while True:
            line = self.read_line(timeout)
            if line == b"PING":
                self.send(b"PONG\r\n")
                continue
            if line.startswith(b"INFO "):       # news of another member
                continue
            parts = line.split()
            if parts[0] not in (b"RMSG", b"HMSG"):
                raise AssertionError("expected RMSG, got %r" % line)
            n = int(parts[-1])
            data = self.read_exact(n + 2, timeout)
            return parts, data[:-2]


class RouteProtoBase(unittest.TestCase):
    cluster_name = ""
    extra_args = ()

    @classmethod
    def setUpClass(cls):
        cls.cport = free_port()
        args = ["-D", "--cluster", "nats://127.0.0.1:%d" % cls.cport]
        if cls.cluster_name:
            args += ["--cluster_name", cls.cluster_name]
        cls.srv = ServerProcess(*(args + list(cls.extra_args)))

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def client(self, connect=b'{"verbose":false,"pedantic":false,"protocol":1,"headers":true,"no_responders":true}'):
        c = RawClient(self.srv.port, connect)
        self.addCleanup(c.close)
        return c

    def peer(self, **kw):
        p = Peer(self.cport, **kw)
        self.addCleanup(p.close)
        return p

    def registered(self, p):
        """Wait until the server logged the peer's registration."""
        self.assertTrue(self.srv.wait_log('Registering remote route "%s"' % p.sid),
                        self.srv.output()[-2000:])


class TestRouteHandshake(RouteProtoBase):
    cluster_name = "blue"

    def test_info_fields(self):
        p = self.peer(handshake=False)
        info = p.server_info
        self.assertEqual(info["port"], self.cport)
        self.assertEqual(info["cluster"], "blue")
        self.assertNotIn("cluster_dynamic", info)
        self.assertTrue(info["headers"])
        self.assertEqual(info["proto"], 2)
        self.assertFalse(info["auth_required"])
        self.assertFalse(info["tls_required"])
        self.assertRegex(info["version"], r"^\d+\.\d+\.\d+$")
        self.assertEqual(info["connect_urls"], ["127.0.0.1:%d" % self.srv.port])
        self.assertEqual(len(info["server_id"]), 56)

    def test_register_ping_and_logs(self):
        p = self.peer(cluster="blue")
        self.registered(p)
        self.assertEqual(p.sync(), [])
        self.assertTrue(self.srv.wait_log(r"127\.0\.0\.1:\d+ - rid:\d+ - Route connection created"))
        self.assertTrue(self.srv.wait_log(r"rid:\d+ - Route sent local subscriptions"))

    def test_local_interest_sent_on_connect_and_on_change(self):
        c = self.client()
        c.send(b"SUB foo 1\r\nSUB foo 2\r\nSUB bar q1 3\r\nSUB bar q1 4\r\nSUB wild.* 5\r\n")
        c.ping()
        p = self.peer(cluster="blue")
        # all local interest, once per plain subject, queue with its weight
        extra = p.expect_lines([b"RS+ $G foo", b"RS+ $G bar q1 2", b"RS+ $G wild.*"])
        self.assertEqual(extra, [])
        self.assertEqual(p.sync(), [])
        # a second plain sub on a known subject does not cross; a new one does
        c.send(b"SUB foo 6\r\nSUB baz 7\r\nSUB bar q1 8\r\nSUB bar q2 9\r\n")
        c.ping()
        self.assertEqual(p.sync(), [b"RS+ $G baz", b"RS+ $G bar q1 3", b"RS+ $G bar q2 1"])
        # only the last UNSUB of a subject crosses; queue weights go down, then RS-
        c.send(b"UNSUB 1\r\nUNSUB 2\r\nUNSUB 3\r\nUNSUB 9\r\n")
        c.ping()
        self.assertEqual(p.sync(), [b"RS+ $G bar q1 2", b"RS- $G bar q2"])
        c.send(b"UNSUB 6\r\n")
        c.ping()
        self.assertEqual(p.sync(), [b"RS- $G foo"])
        # a client that goes away takes its interest along
        c.close()
        got = set()
        deadline = time.monotonic() + TIMEOUT
        while len(got) < 4 and time.monotonic() < deadline:
            got.update(p.sync())
        # (members leave one by one: the weight drops to 1, then the group goes)
        self.assertEqual(got, {b"RS- $G baz", b"RS- $G wild.*", b"RS+ $G bar q1 1", b"RS- $G bar q1"})

    def test_auto_unsubscribe_removes_interest(self):
        p = self.peer(cluster="blue")
        self.registered(p)
        c = self.client()
        c.send(b"SUB once 1\r\nUNSUB 1 2\r\n")
        c.ping()
        self.assertEqual(p.sync(), [b"RS+ $G once"])
        for _ in range(3):
            p.send(b"RMSG $G once 2\r\nhi\r\n")
        # the limit is reached while delivering: the interest is withdrawn
        self.assertEqual(p.sync(), [b"RS- $G once"])
        self.assertEqual([m[2] for m in _drain(c)], [b"hi", b"hi"])

    def test_op_before_connect_refused(self):
        p = self.peer(handshake=False)
        p.send(b"RS+ $G foo\r\n")
        self.assertEqual(p.read_line(), b"-ERR 'Authorization Violation'")
        self.assertTrue(p.closed())

    def test_cluster_name_conflict(self):
        p = self.peer(cluster="green", handshake=False)
        p.handshake()
        self.assertEqual(p.read_line(),
                         b"-ERR 'Rejecting connection, cluster name \"green\" does not match \"blue\"'")
        self.assertTrue(p.closed())
        self.assertTrue(self.srv.wait_log(r'\[ERR\] .*cluster name "green" does not match "blue"'))

    def test_dynamic_or_empty_name_accepted(self):
        p = self.peer(cluster="zzzDynamic", dynamic=True)
        self.registered(p)
        q = self.peer(cluster="")
        self.registered(q)
        # the first member hears of the second one
        lines = p.sync()
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(json.loads(lines[0][5:])["server_id"], q.sid)
        c = self.client()
        info = json.loads(c.info[5:])
        self.assertEqual(info["cluster"], "blue")

    def test_duplicate_route_keeps_one(self):
        sid = peer_id("DUP")
        p1 = self.peer(sid=sid, cluster="blue")
        self.registered(p1)
        p2 = self.peer(sid=sid, cluster="blue")
        # both were dialled by the same server: the older one stays
        self.assertTrue(p2.closed(timeout=5))  # read for a grace period first
        self.assertEqual(p1.sync(), [])
        self.assertTrue(self.srv.wait_log('Detected duplicate remote route "%s"' % sid))

    def test_route_to_self_dropped(self):
        p = self.peer(handshake=False)
        own = p.server_info["server_id"]
        p.send(b'CONNECT {"name":"%s","cluster":"blue"}\r\n' % own.encode())
        self.assertTrue(p.closed())
        self.assertNotIn('Registering remote route "%s"' % own, self.srv.output())


class TestRouteMessages(RouteProtoBase):
    cluster_name = "msgs"

    def setUp(self):
        self.p = self.peer(cluster="msgs")
        self.registered(self.p)

    def test_rmsg_to_local_subscribers(self):
        c = self.client()
        c.send(b"SUB foo 1\r\nSUB > 3\r\n")
        c.ping()
        p = self.p
        for i in range(10):
            p.send(b"RMSG $G foo reply.%d 5\r\nhello\r\n" % i)
        p.send(b"RMSG $G other 3\r\nabc\r\n")
        p.sync()
        got = _drain(c)
        self.assertEqual(len(got), 21)
        foo = [m for m in got if m[1][0] == b"foo"]
        self.assertEqual(sorted(m[1][1] for m in foo), [b"1"] * 10 + [b"3"] * 10)
        self.assertEqual(sorted(m[1][2] for m in foo), sorted([b"reply.%d" % i for i in range(10)] * 2))
        self.assertEqual([m for m in got if m[1][0] == b"other"], [(b"MSG", [b"other", b"3", b"3"], b"abc")])

    def test_many_rmsgs_split_reads(self):
        c = self.client()
        c.send(b"SUB bulk 1\r\n")
        c.ping()
        data = b"".join(b"RMSG $G bulk %d\r\n%s\r\n" % (len(b"m%04d" % i), b"m%04d" % i) for i in range(2000))
        # dribble it in odd-sized pieces so lines and payloads split
        for i in range(0, len(data), 777):
            self.p.send(data[i:i + 777])
        self.p.sync()
        n = 0
        for i in range(2000):
            op, args, payload = c.read_msg()
            self.assertEqual(payload, b"m%04d" % i)
            n += 1
        self.assertEqual(n, 2000)
        self.assertEqual(c.ping(), b"")

    def test_queue_lists(self):
        a = self.client()
        b = self.client()
        plain = self.client()
        a.send(b"SUB work grp 1\r\n")
        b.send(b"SUB work grp 1\r\n")
        plain.send(b"SUB work 1\r\n")
        for c in (a, b, plain):
            c.ping()
        p = self.p
        for _ in range(20):
            p.send(b"RMSG $G work | grp 1\r\nq\r\n")
        for _ in range(5):
            p.send(b"RMSG $G work + inbox.1 grp 1\r\nr\r\n")
        for _ in range(7):                      # no queue list: plain subscribers only
            p.send(b"RMSG $G work 1\r\np\r\n")
        for _ in range(3):                      # a group this server does not have
            p.send(b"RMSG $G work | other 1\r\nx\r\n")
        p.sync()
        qa = [m for m in _drain(a)]
        qb = [m for m in _drain(b)]
        pl = [m for m in _drain(plain)]
        self.assertEqual(len(qa) + len(qb), 25)
        self.assertEqual(len(pl), 35)
        replies = [m[1][2] for m in qa + qb if len(m[1]) == 4]
        self.assertEqual(replies, [b"inbox.1"] * 5)

    def test_hmsg(self):
        h = self.client()
        plain = self.client(b'{"verbose":false,"pedantic":false}')
        h.send(b"SUB hdr 1\r\n")
        plain.send(b"SUB hdr 1\r\n")
        h.ping()
        plain.ping()
        hdr = b"NATS/1.0\r\nX: 1\r\n\r\n"
        payload = hdr + b"body"
        self.p.send(b"HMSG $G hdr rep %d %d\r\n%s\r\n" % (len(hdr), len(payload), payload))
        self.p.send(b"HMSG $G hdr | nogroup %d %d\r\n%s\r\n" % (len(hdr), len(payload), payload))
        self.p.sync()
        for _ in range(2):
            op, args, data = h.read_msg()
            self.assertEqual(op, b"HMSG")
            self.assertEqual(data, payload)
        op, args, data = plain.read_msg()
        self.assertEqual((op, args, data), (b"MSG", [b"hdr", b"1", b"rep", b"4"], b"body"))

    def test_other_accounts_ignored(self):
        c = self.client()
        c.send(b"SUB $SYS.x 1\r\nSUB foo 2\r\n")
        c.ping()
        p = self.p
        # a client's subjects live in $G, whatever they look like
        self.assertEqual(p.sync(), [b"RS+ $G $SYS.x", b"RS+ $G foo"])
        p.send(b"RS+ $SYS $SYS.REQ.SERVER.PING\r\nRS+ $SYS $SYS.x q 1\r\nRS- $SYS nothing\r\n")
        p.send(b"RMSG $SYS $SYS.x 2\r\nno\r\nHMSG $SYS $SYS.x 2 4\r\n\r\nno\r\n")
        p.send(b"RMSG $G foo 3\r\nyes\r\n")
        self.assertEqual(p.sync(), [])
        self.assertEqual(c.read_msg(), (b"MSG", [b"foo", b"2", b"3"], b"yes"))
        self.assertEqual(c.ping(), b"")
        self.assertNotIn("[ERR]", self.srv.output())

    def test_remote_interest_forwarding(self):
        p = self.p
        p.send(b"RS+ $G remote.*\r\nRS+ $G jobs grp 3\r\n")
        p.sync()
        c = self.client()
        c.send(b"PUB remote.a 2\r\nhi\r\nPUB remote.b r.1 2\r\nho\r\n")
        c.ping()
        self.assertEqual(p.read_rmsg(), ([b"RMSG", b"$G", b"remote.a", b"2"], b"hi"))
        self.assertEqual(p.read_rmsg(), ([b"RMSG", b"$G", b"remote.b", b"r.1", b"2"], b"ho"))
        # no local member: every queue message goes to the peer, named
        for _ in range(5):
            c.send(b"PUB jobs 1\r\nj\r\n")
        c.send(b"PUB jobs inbox.9 1\r\nk\r\n")
        c.ping()
        for _ in range(5):
            self.assertEqual(p.read_rmsg(), ([b"RMSG", b"$G", b"jobs", b"|", b"grp", b"1"], b"j"))
        self.assertEqual(p.read_rmsg(), ([b"RMSG", b"$G", b"jobs", b"+", b"inbox.9", b"grp", b"1"], b"k"))
        # a weight update keeps the group, RS- removes it
        p.send(b"RS+ $G jobs grp 1\r\nRS- $G jobs grp\r\nRS- $G remote.*\r\n")
        p.sync()
        c.send(b"PUB jobs 1\r\nj\r\nPUB remote.a 1\r\nx\r\n")
        c.ping()
        self.assertEqual(p.sync(), [])

    def test_headers_cross(self):
        p = self.p
        p.send(b"RS+ $G h.>\r\n")
        p.sync()
        c = self.client()
        hdr = b"NATS/1.0\r\nA: b\r\n\r\n"
        c.send(b"HPUB h.x rep %d %d\r\n%sdata\r\n" % (len(hdr), len(hdr) + 4, hdr))
        c.ping()
        self.assertEqual(p.read_rmsg(), ([b"HMSG", b"$G", b"h.x", b"rep", b"%d" % len(hdr), b"%d" % (len(hdr) + 4)], hdr + b"data"))

    def test_no_echo_back_to_routes(self):
        # a message from a route is never passed on to a route (one hop)
        other = self.peer(cluster="msgs")
        self.registered(other)
        other.send(b"RS+ $G hop\r\n")
        other.sync()
        self.p.send(b"RMSG $G hop 1\r\nx\r\n")
        self.p.sync()
        self.assertEqual(other.sync(), [])

    def test_no_responders_cluster_wide(self):
        c = self.client()
        c.send(b"SUB inbox.1 1\r\n")
        c.ping()
        # nobody anywhere: 503
        c.send(b"PUB svc inbox.1 0\r\n\r\n")
        op, args, data = c.read_msg()
        self.assertEqual((op, args[0]), (b"HMSG", b"inbox.1"))
        self.assertIn(b"503", data)
        # a responder behind the route: the request crosses, no 503
        self.p.send(b"RS+ $G svc\r\n")
        self.p.sync()
        c.send(b"PUB svc inbox.1 0\r\n\r\n")
        c.ping()
        self.assertEqual(self.p.read_rmsg(), ([b"RMSG", b"$G", b"svc", b"inbox.1", b"0"], b""))
        self.assertEqual(c.ping(), b"")
        # the peer leaves: its interest goes with it
        self.p.close()
        self.assertTrue(self.srv.wait_log(r"Router connection closed"))
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            c.send(b"PUB svc inbox.1 0\r\n\r\n")
            got = c.ping()
            if b"503" in got:
                break
            time.sleep(0.05)
        else:
            self.fail("no 503 after the peer left")


class TestRouteRobustness(RouteProtoBase):
    cluster_name = "rough"

    def test_garbage_rejected_others_unharmed(self):
        good = self.peer(cluster="rough")
        self.registered(good)
        good.send(b"RS+ $G keep\r\n")
        good.sync()
        bad = self.peer(cluster="rough")
        self.registered(bad)
        bad.send(b"FOO bar\r\n")
        self.assertEqual(bad.read_line(), b"-ERR 'Unknown Protocol Operation'")
        self.assertTrue(bad.closed())
        self.assertTrue(self.srv.wait_log(r"\[ERR\] .*rid:\d+ - Router parser ERROR"))
        c = self.client()
        c.send(b"PUB keep 2\r\nok\r\n")
        c.ping()
        self.assertEqual(good.read_rmsg(), ([b"RMSG", b"$G", b"keep", b"2"], b"ok"))

    def test_bad_rmsg_args(self):
        for junk in (b"RMSG $G\r\n", b"RMSG $G foo bar baz 3\r\nabc\r\n", b"RMSG $G foo -1\r\n",
                     b"RS+ $G\r\n", b"RMSG $G foo 3\r\nabcdef\r\n", b"INFO {bad json\r\n"):
            p = self.peer(cluster="rough")
            self.registered(p)
            p.send(junk)
            line = p.read_line()
            self.assertTrue(line.startswith(b"-ERR"), (junk, line))
            self.assertTrue(p.closed(), junk)

    def test_max_payload_and_control_line(self):
        p = self.peer(cluster="rough")
        self.registered(p)
        p.send(b"RMSG $G big %d\r\n" % (1024 * 1024 + 1))
        self.assertEqual(p.read_line(), b"-ERR 'Maximum Payload Violation'")
        self.assertTrue(p.closed())
        q = self.peer(cluster="rough")
        self.registered(q)
        q.send(b"RS+ $G " + b"a" * 5000)
        self.assertEqual(q.read_line(), b"-ERR 'Maximum Control Line Exceeded'")
        self.assertTrue(q.closed())

    def test_peer_error_closes_route(self):
        p = self.peer(cluster="rough")
        self.registered(p)
        p.send(b"-ERR 'something went wrong'\r\n")
        self.assertTrue(p.closed())
        self.assertTrue(self.srv.wait_log(r"Route Error 'something went wrong'"))


class TestGossip(RouteProtoBase):
    cluster_name = "gossip"

    def test_new_member_announced_to_others(self):
        p1 = self.peer(cluster="gossip", info_port=5001)
        self.registered(p1)
        p2 = self.peer(cluster="gossip", info_port=5002)
        self.registered(p2)
        line = p1.read_line()
        self.assertTrue(line.startswith(b"INFO "), line)
        info = json.loads(line[5:])
        self.assertEqual(info["server_id"], p2.sid)
        self.assertEqual(info["ip"], "nats-route://127.0.0.1:5002/")
        # the first member is not announced to the newcomer (it dials nobody)
        self.assertEqual(p2.sync(), [])
        # clients learn both peers' client URLs
        c = self.client()
        urls = json.loads(c.info[5:])["connect_urls"]
        self.assertEqual(urls[0], "127.0.0.1:%d" % self.srv.port)
        self.assertIn("127.0.0.1:5002", urls)
        self.assertIn("127.0.0.1:5003", urls)

    def test_server_dials_gossiped_member(self):
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(4)
        lsock.settimeout(TIMEOUT)
        self.addCleanup(lsock.close)
        lport = lsock.getsockname()[1]
        p = self.peer(cluster="gossip")
        self.registered(p)
        other = peer_id("GOSSIPED")
        p.send(b"INFO " + json.dumps({"server_id": other, "host": "127.0.0.1", "port": lport,
                                      "ip": "nats-route://127.0.0.1:%d/" % lport,
                                      "cluster": "gossip"}).encode() + b"\r\n")
        s, _ = lsock.accept()
        self.addCleanup(s.close)
        s.settimeout(TIMEOUT)
        data = b""
        deadline = time.monotonic() + TIMEOUT
        while data.count(b"\r\n") < 2 and time.monotonic() < deadline:
            d = s.recv(65536)
            if not d:
                self.fail("the server closed the route it dialled; got %r" % data)
            data += d
        lines = data.split(b"\r\n")
        self.assertTrue(lines[0].startswith(b"CONNECT "), lines)
        conn = json.loads(lines[0][8:])
        self.assertEqual(conn["name"], p.server_info["server_id"])
        self.assertEqual(conn["cluster"], "gossip")
        self.assertFalse(conn["verbose"])
        self.assertTrue(conn["headers"])
        self.assertTrue(lines[1].startswith(b"INFO "), lines)

    def test_client_gets_async_info_when_member_joins_and_leaves(self):
        c = self.client()
        c.ping()
        p = self.peer(cluster="gossip", info_port=7000)
        self.registered(p)
        line = c.read_line()
        self.assertTrue(line.startswith(b"INFO "), line)
        self.assertIn("127.0.0.1:7001", json.loads(line[5:])["connect_urls"])
        p.close()
        deadline = time.monotonic() + TIMEOUT
        while True:
            line = c.read_line(max(0.01, deadline - time.monotonic()))
            if line.startswith(b"INFO ") and "127.0.0.1:7001" not in json.loads(line[5:]).get("connect_urls", []):
                break


class TestConnectRetries(RouteProtoBase):
    """A gossiped member that cannot be reached is dialled 1 + connect_retries
    times (nats-server's rule; gnatsd.py tries at least 3 times)."""
    cluster_name = "retries"
    extra_args = ("--connect_retries", "3")

    def test_gossiped_member_dialled_1_plus_connect_retries_times(self):
        dead = socket.socket()               # bound, never listening: refused
        dead.bind(("127.0.0.1", 0))
        self.addCleanup(dead.close)
        dport = dead.getsockname()[1]
        p = self.peer(cluster="retries")
        self.registered(p)
        p.send(b"INFO " + json.dumps({"server_id": peer_id("UNREACHABLE"), "host": "127.0.0.1",
                                      "port": dport, "ip": "nats-route://127.0.0.1:%d/" % dport,
                                      "cluster": "retries"}).encode() + b"\r\n")
        # the 4th attempt (more than the floor of 3) comes after the backoff
        # 1 s, 1.5 s, 2.25 s (+-10 %)
        self.assertTrue(self.srv.wait_log(r"Error trying to connect to route \(attempt 4\)", 12),
                        self.srv.output()[-2000:])
        tries = re.findall(r"Trying to connect to route on 127\.0\.0\.1:%d" % dport, self.srv.output())
        self.assertEqual(len(tries), 4)


class TestRouteAuthProto(RouteProtoBase):
    cluster_name = "auth"

    @classmethod
    def setUpClass(cls):
        cls.cport = free_port()
        cls.srv = ServerProcess("-D", "--cluster", "nats://ruser:rpass@127.0.0.1:%d" % cls.cport,
                                "--cluster_name", "auth")

    def test_info_says_auth_required(self):
        p = self.peer(handshake=False)
        self.assertTrue(p.server_info["auth_required"])

    def test_good_credentials(self):
        p = self.peer(cluster="auth", user="ruser", password="rpass")
        self.registered(p)
        self.assertEqual(p.sync(), [])

    def test_bad_credentials(self):
        for user, password in (("ruser", "wrong"), ("other", "rpass"), (None, None)):
            p = self.peer(cluster="auth", handshake=False)
            p.handshake(user, password)
            self.assertEqual(p.read_line(), b"-ERR 'Authorization Violation'")
            self.assertTrue(p.closed())
        self.assertTrue(self.srv.wait_log(r"\[ERR\] .*rid:\d+ - authentication error"))
        self.assertNotIn("wrong", self.srv.output())

    def test_auth_timeout(self):
        p = self.peer(handshake=False)
        self.assertEqual(p.read_line(timeout=3), b"-ERR 'Authentication Timeout'")
        self.assertTrue(p.closed())


class TestSelfRoute(unittest.TestCase):
    def test_route_to_self_ignored(self):
        cport = free_port()
        srv = ServerProcess("-D", "--cluster", "nats://127.0.0.1:%d" % cport,
                            "--routes", "nats://127.0.0.1:%d" % cport)
        self.addCleanup(srv.stop)
        self.assertTrue(srv.wait_log(r'\[DBG\] Detected route to self, ignoring "nats://127\.0\.0\.1:%d"' % cport))
        time.sleep(1.5)      # no redial of a route to ourselves
        out = srv.output()
        self.assertEqual(out.count("Trying to connect to route"), 1, out)
        self.assertNotIn("Registering remote route", out)


def _drain(c):
    """Every MSG already sent to raw client `c` (synchronised by a PING);
    async INFO lines (members coming and going) are skipped."""
    return c.drain()


class TestRouteFuzz(unittest.TestCase):
    """Random route protocol (valid, damaged and junk) fed in-process to
    Route objects: whatever a peer sends, nothing escapes the parser."""

    def test_random_input_never_raises(self):
        opened = 0
        for seed in range(40):
            opened += _fuzz_once(seed, trace=(seed % 5 == 0))
        self.assertGreater(opened, 40)


def _fuzz_once(seed, rounds=200, trace=False):
    """Feed one in-process Route random route protocol, split at random
    points; any exception that escapes is a server crash."""
    rnd = random.Random(seed)
    o = Options(cluster_port=-1, cluster_name="fz", max_payload=4096, max_control_line=256)
    log = Logger(debug=trace, trace=trace, stream=io.StringIO())
    srv = Server(o, log)
    srv.port = 4222
    cl = Cluster(srv)
    srv.cluster = cl
    cs, cpeer = socket.socketpair()
    c = Client(srv, cs, ("127.0.0.1", 9), 1)
    srv.clients[1] = c
    c.feed(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\nSUB foo 1\r\nSUB foo.* 2\r\nSUB > 3\r\nSUB foo q 4\r\nSUB bar q 5\r\nUNSUB 5 3\r\n')
    subjects = [b"foo", b"foo.bar", b"bar", b"$SYS.x", b"a.b.c", b"*", b">", b"foo..x", b"\xff\xfe"]
    accs = [b"$G", b"$G", b"$SYS", b"X", b""]
    def line():
        k = rnd.random()
        subj = rnd.choice(subjects)
        acc = rnd.choice(accs)
        if k < 0.3:
            body = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 20)))
            size = len(body) if rnd.random() < 0.9 else rnd.randrange(-2, 5000)
            mid = rnd.choice([b"", b" r.1", b" | q", b" + r.2 q q2", b" |", b" +", b" a b c"])
            return b"RMSG %s %s%s %d\r\n" % (acc, subj, mid, size) + body + (b"\r\n" if rnd.random() < 0.95 else b"xx")
        if k < 0.4:
            hdr = b"NATS/1.0\r\n\r\n"
            body = hdr + b"x" * rnd.randrange(5)
            h = len(hdr) if rnd.random() < 0.9 else rnd.randrange(-1, 40)
            return b"HMSG %s %s %d %d\r\n%s\r\n" % (acc, subj, h, len(body), body)
        if k < 0.6:
            q = rnd.choice([b"", b" q", b" q 3", b" q 0", b" q x", b" q 1 2"])
            return b"RS%s %s %s%s\r\n" % (rnd.choice([b"+", b"-"]), acc, subj, q)
        if k < 0.7:
            obj = rnd.choice([{}, {"server_id": "NOTHER%d" % rnd.randrange(5), "ip": rnd.choice(["nats-route://127.0.0.1:1/", "bad url", 5, None]), "port": rnd.choice([1, "x", None, 70000]), "host": rnd.choice(["127.0.0.1", None, 3]), "connect_urls": rnd.choice([["a:1"], "x", [1, None], None]), "auth_required": rnd.random() < 0.5}, [1], "s", {"server_id": 5}])
            return b"INFO " + json.dumps(obj).encode() + b"\r\n"
        if k < 0.75:
            return b"CONNECT " + json.dumps(rnd.choice([{}, {"name": 1}, {"cluster": 5}, [], {"cluster": "other"}])).encode() + b"\r\n"
        if k < 0.85:
            return rnd.choice([b"PING\r\n", b"PONG\r\n", b"+OK\r\n", b"-ERR 'x'\r\n", b"\r\n", b"   \r\n", b"INFO\r\n", b"INFO {\r\n"])
        return bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 400)))
    route = None
    closes = 0
    peers = []
    for i in range(rounds):
        if route is None or route.closed:
            a, b = socket.socketpair()
            route = cl._new_route(a, ("127.0.0.1", 1000 + i), None)
            peers.append(b)
            sid = "NFUZZ%d" % rnd.randrange(4)
            route.feed(b'CONNECT {"name":"%s","cluster":"fz"}\r\nINFO {"server_id":"%s","port":1,"cluster":"fz"}\r\n' % (sid.encode(), sid.encode()))
            closes += 1
        data = b"".join(line() for _ in range(rnd.randrange(1, 8)))
        # split randomly
        pos = 0
        while pos < len(data) and not route.closed:
            step = rnd.randrange(1, 64)
            route.feed(data[pos:pos + step])
            pos += step
        srv.reactor.dirty.clear()
        if len(c.wbuf) > 1 << 20:
            c.wbuf.clear()
    for r in list(cl.conns.values()):
        r.close_conn("done")
    for sol in list(cl.implicit.values()):
        sol.stop()
    for sock in peers + [cs, cpeer]:
        sock.close()
    srv.reactor.close()
    return closes


if __name__ == "__main__":
    unittest.main()
