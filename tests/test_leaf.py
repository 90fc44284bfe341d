"""Leaf nodes between gnatsd.py servers (issue 22): a leaf dials a hub and
messages, queue groups, request/reply and headers cross both ways with
exact counts; credentials are checked; the hub restarting, loops, two
leaves of one hub, a cluster serving leaves on either member, a slow leaf,
and the config block's errors. tests/test_leaf_interop.py runs the same
cases against the Go nats-server.

Helpers here are shared with the interop module: `Topology` starts a hub
and a leaf (either may be a Go server), and waits on /leafz for interest
instead of sleeping.
"""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request

from tests.util import GNATSD, PYTHON, ROOT, RawClient, ServerProcess, free_port, wait_for

WAIT = 20.0
CERTS = os.path.join(ROOT, "configs", "certs")
HUB_TLS = 'tls { cert_file: "%s/server-cert.pem", key_file: "%s/server-key.pem" }' % (CERTS, CERTS)
REMOTE_TLS = 'tls { ca_file: "%s/ca.pem" }' % CERTS


def hub_config(port=-1, auth=False, extra="", tls=False, name="hub"):
    a = "authorization { user: lu, password: lp }" if auth else ""
    t = HUB_TLS if tls else ""
    return "server_name: %s\nleafnodes { host: 127.0.0.1, port: %d\n %s\n %s }\n%s" % (name, port, a, t, extra)


def leaf_config(hub_port, user="", name="leaf", extra_remote="", extra=""):
    cred = "%s@" % user if user else ""
    return ('server_name: %s\nleafnodes { remotes = [ { url: "nats-leaf://%s127.0.0.1:%d"\n %s } ] }\n%s'
            % (name, cred, hub_port, extra_remote, extra))


class Proc(ServerProcess):
    """ServerProcess, waiting also for a ports file written after "Server
    is ready" (nats-server 2.9.10 writes it from another goroutine: reading
    it at once failed now and then)."""

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if "Server is ready" in self.output() and self._read_ports():
                return True
            time.sleep(0.05)
        return False


def start(config, exe=None):
    return Proc("-m", "-1", config=config, exe=exe)


def leaf_port(proc, timeout=10.0):
    rx = re.compile(r"Listening for leafnode connections on \S*:(\d+)")
    m = None
    deadline = time.monotonic() + timeout
    while m is None and time.monotonic() < deadline:
        m = rx.search(proc.output())
        if m is None:
            time.sleep(0.05)
    assert m, proc.output()
    return int(m.group(1))


def monitor(proc, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (proc.monitor_port, path), timeout=5) as r:
        return json.loads(r.read())


def leafz(proc):
    try:
        return monitor(proc, "/leafz?subs=1")
    except OSError:
        return {"leafnodes": 0, "leafs": []}


def leaf_subjects(proc):
    out = []
    for lf in leafz(proc).get("leafs") or ():
        out += lf.get("subscriptions_list") or []
    return out


class LeafCase(unittest.TestCase):
    """Helpers: processes and clients closed when the test ends."""

    def proc(self, config, exe=None):
        p = start(config, exe)
        self.addCleanup(p.stop)
        return p

    def client(self, proc, connect=b'{"verbose":false,"pedantic":false,"headers":true}'):
        c = RawClient(proc.port, connect)
        self.addCleanup(c.close)
        c.ping()
        return c

    def wait_leafs(self, proc, n):
        if not wait_for(lambda: leafz(proc)["leafnodes"] == n, WAIT):
            self.fail("%d leaf connections expected: %s\n%s" % (n, leafz(proc), proc.output()[-3000:]))

    def wait_interest(self, proc, subject, present=True):
        """`proc` knows (or no longer knows) that its peer across a leaf
        connection is interested in subject: its /leafz lists what each
        leaf connection registered (Go and gnatsd.py alike)."""
        if not wait_for(lambda: (subject in leaf_subjects(proc)) == present, WAIT):
            self.fail("interest in %s %s on %s" % (subject, "missing" if present else "still there",
                                                   leaf_subjects(proc)))

    def collect(self, c, n, timeout=WAIT):
        """Exactly n messages, then nothing more (checked by a PING)."""
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            op, args, payload = c.read_msg(max(0.01, deadline - time.monotonic()))
            if op in (b"MSG", b"HMSG"):
                got.append((op, args, payload))
        extra = c.drain()
        self.assertEqual(extra, [], "more messages than expected")
        return got


class Topology(LeafCase):
    """A hub and a leaf; subclasses name the executables (None: gnatsd.py)
    and whether credentials are required. The cases below run on each."""

    hub_exe = None
    leaf_exe = None
    auth = True
    tls = False

    def setUp(self):
        self.hub = self.proc(hub_config(auth=self.auth, tls=self.tls), self.hub_exe)
        self.lport = leaf_port(self.hub)
        self.leaf = self.proc(leaf_config(self.lport, "lu:lp" if self.auth else "",
                                          extra_remote=REMOTE_TLS if self.tls else ""), self.leaf_exe)
        self.wait_leafs(self.hub, 1)
        self.wait_leafs(self.leaf, 1)


class Cases:
    def test_pubsub_both_ways(self):
        on_hub = self.client(self.hub)
        on_leaf = self.client(self.leaf)
        on_hub.send(b"SUB up.> 1\r\n")
        on_leaf.send(b"SUB down.x 7\r\n")
        on_hub.ping()
        on_leaf.ping()
        self.wait_interest(self.leaf, "up.>")       # the leaf knows the hub wants up.>
        self.wait_interest(self.hub, "down.x")
        pl, ph = self.client(self.leaf), self.client(self.hub)
        pl.send(b"".join(b"PUB up.a 3\r\nu%02d\r\n" % i for i in range(50)))
        ph.send(b"".join(b"PUB down.x 3\r\nd%02d\r\n" % i for i in range(50)))
        got_h = self.collect(on_hub, 50)
        got_l = self.collect(on_leaf, 50)
        self.assertEqual([p for _, _, p in got_h], [b"u%02d" % i for i in range(50)])
        self.assertEqual([p for _, _, p in got_l], [b"d%02d" % i for i in range(50)])
        self.assertEqual(got_l[0][1][:2], [b"down.x", b"7"])

    def test_headers_cross(self):
        on_hub = self.client(self.hub)
        on_hub.send(b"SUB h.x 1\r\n")
        on_hub.ping()
        self.wait_interest(self.leaf, "h.x")
        p = self.client(self.leaf)
        hdr = b"NATS/1.0\r\nK: v\r\n\r\n"
        p.send(b"HPUB h.x %d %d\r\n%sbody\r\n" % (len(hdr), len(hdr) + 4, hdr))
        (op, args, payload), = self.collect(on_hub, 1)
        self.assertEqual(op, b"HMSG")
        self.assertEqual(payload, hdr + b"body")

    def test_queue_group_prefers_local_members(self):
        qh = self.client(self.hub)
        ql = self.client(self.leaf)
        qh.send(b"SUB work g 1\r\n")
        ql.send(b"SUB work g 1\r\n")
        qh.ping()
        ql.ping()
        self.wait_interest(self.hub, "work")
        self.wait_interest(self.leaf, "work")
        self.client(self.leaf).send(b"".join(b"PUB work 2\r\nl%d\r\n" % (i % 10) for i in range(40)))
        self.client(self.hub).send(b"".join(b"PUB work 2\r\nh%d\r\n" % (i % 10) for i in range(40)))
        got_l = self.collect(ql, 40)
        got_h = self.collect(qh, 40)
        self.assertTrue(all(p.startswith(b"l") for _, _, p in got_l))
        self.assertTrue(all(p.startswith(b"h") for _, _, p in got_h))
        # without a member on the leaf, its messages go to the hub's member
        ql.send(b"UNSUB 1\r\n")
        ql.ping()
        self.wait_interest(self.hub, "work", present=False)
        self.client(self.leaf).send(b"".join(b"PUB work 2\r\nx%d\r\n" % (i % 10) for i in range(30)))
        self.assertEqual(len(self.collect(qh, 30)), 30)
        self.assertEqual(ql.drain(), [])

    def test_request_reply_both_ways(self):
        for server_side, client_side in ((self.hub, self.leaf), (self.leaf, self.hub)):
            svc = self.client(server_side)
            svc.send(b"SUB svc.echo 1\r\n")
            svc.ping()
            self.wait_interest(client_side, "svc.echo")
            req = self.client(client_side)
            req.send(b"SUB _INBOX.r.* 9\r\n")
            for i in range(5):
                req.send(b"PUB svc.echo _INBOX.r.%d 2\r\nq%d\r\n" % (i, i))
                op, args, payload = svc.read_msg(WAIT)
                self.assertEqual((op, payload), (b"MSG", b"q%d" % i))
                reply = args[2]
                svc.send(b"PUB %s 2\r\na%d\r\n" % (reply, i))
                op, args, payload = req.read_msg(WAIT)
                self.assertEqual((op, args[0], payload), (b"MSG", b"_INBOX.r.%d" % i, b"a%d" % i))
            svc.send(b"UNSUB 1\r\n")
            svc.ping()
            self.wait_interest(client_side, "svc.echo", present=False)


class TestPyPy(Topology, Cases):
    """gnatsd.py leaf -> gnatsd.py hub, with credentials."""


class TestPyPyNoAuth(Topology, Cases):
    auth = False


class TestPyPyTLS(Topology, Cases):
    """The leaf port with TLS: INFO in plain text, then the handshake."""
    tls = True

    def test_hub_logs_the_handshake(self):
        self.assertIn("TLS required for leafnode connections", self.hub.output())


# ---------------------------------------------------------------------------
class TestCredentials(LeafCase):
    def test_wrong_password_refused_then_right_one_joins(self):
        hub = self.proc(hub_config(auth=True))
        port = leaf_port(hub)
        bad = self.proc(leaf_config(port, "lu:nope", name="bad"))
        self.assertTrue(hub.wait_log(r'lid:\d+ - authentication error - User "lu"', WAIT), hub.output())
        self.assertTrue(bad.wait_log(r"Leafnode Error 'Authorization Violation'", WAIT), bad.output())
        self.assertEqual(leafz(hub)["leafnodes"], 0)
        self.assertEqual(leafz(bad)["leafnodes"], 0)
        good = self.proc(leaf_config(port, "lu:lp", name="good"))
        self.wait_leafs(hub, 1)
        self.assertEqual(leafz(hub)["leafs"][0]["name"], "good")
        self.assertEqual(leafz(good)["leafs"][0]["is_spoke"], True)

    def test_client_connecting_to_the_leaf_port_is_refused(self):
        hub = self.proc(hub_config())
        c = RawClient(leaf_port(hub), connect=b'{"lang":"python","verbose":false}')
        self.addCleanup(c.close)
        self.assertIn(b"INFO ", c.info)
        self.assertIn(b'"leafnode_urls"', c.info)
        self.assertTrue(c.closed(WAIT))


class TestFaults(LeafCase):
    def test_hub_restart_interest_restored_counted_exactly(self):
        hub = start(hub_config())
        try:
            port = leaf_port(hub)
            leaf = self.proc(leaf_config(port))
            self.wait_leafs(leaf, 1)
            on_leaf = self.client(leaf)
            on_leaf.send(b"SUB after.> 1\r\n")
            on_leaf.ping()
            self.wait_interest(hub, "after.>")
        finally:
            hub.stop()
        self.assertTrue(leaf.wait_log(r"Leafnode connection closed: Client Closed - Remote: hub", WAIT))
        hub2 = self.proc(hub_config(port=port))
        self.wait_leafs(hub2, 1)
        self.wait_interest(hub2, "after.>")         # the leaf sent its interest again
        self.client(hub2).send(b"".join(b"PUB after.r 4\r\nr%03d\r\n" % i for i in range(100)))
        got = self.collect(on_leaf, 100)
        self.assertEqual([p for _, _, p in got], [b"r%03d" % i for i in range(100)])
        # and the other way: a new subscriber on the restarted hub
        on_hub = self.client(hub2)
        on_hub.send(b"SUB back 1\r\n")
        on_hub.ping()
        self.wait_interest(leaf, "back")
        self.client(leaf).send(b"PUB back 2\r\nok\r\n" * 20)
        self.assertEqual(len(self.collect(on_hub, 20)), 20)

    def test_connection_cut_mid_message(self):
        hub = self.proc(hub_config())
        port = leaf_port(hub)
        on_hub = self.client(hub)
        on_hub.send(b"SUB cut.> 1\r\n")
        on_hub.ping()
        for tail in (b"LMSG cut.a 10\r\nabc", b"LMSG cut.a 3\r\nabc\r\nLMSG cut.", b"HMSG cut.a 12 "):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.recv(4096)
            s.sendall(b'CONNECT {"name":"cut","server_id":"NCUT"}\r\nPING\r\n')
            self.wait_leafs(hub, 1)
            s.sendall(tail)
            s.close()
            self.wait_leafs(hub, 0)
        # the one complete message arrived, the partial ones did not
        got = self.collect(on_hub, 1)
        self.assertEqual(got[0][2], b"abc")
        # and a real leaf still works
        leaf = self.proc(leaf_config(port))
        self.wait_leafs(hub, 1)
        self.wait_interest(leaf, "cut.>")
        self.client(leaf).send(b"PUB cut.b 2\r\nok\r\n" * 5)
        self.assertEqual(len(self.collect(on_hub, 5)), 5)
        self.assertNotIn("Traceback", hub.output())

    def test_slow_leaf_is_cut_without_stalling_the_hub(self):
        hub = self.proc(hub_config(extra="max_pending: 262144\nmax_payload: 65536\nwrite_deadline: 1s"))
        port = leaf_port(hub)
        # a fake leaf that registers interest and then never reads
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.addCleanup(s.close)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.recv(4096)
        s.sendall(b'CONNECT {"name":"slow","server_id":"NSLOW","headers":false}\r\nLS+ flood\r\nPING\r\n')
        self.wait_leafs(hub, 1)
        self.wait_interest(hub, "flood")
        fast = self.client(hub)
        fast.send(b"SUB flood 1\r\n")
        fast.ping()
        pub = self.client(hub)
        body = b"x" * 8192
        for _ in range(80):         # 16 MB for a leaf that reads nothing
            pub.send(b"".join(b"PUB flood 8192\r\n%s\r\n" % body for _ in range(25)))
            pub.ping(WAIT)
            # the local subscriber keeps up and gets every message
            self.assertEqual(len(self.collect(fast, 25)), 25)
        self.assertTrue(hub.wait_log(r"lid:\d+ - Slow Consumer Detected", WAIT), hub.output()[-2000:])
        self.wait_leafs(hub, 0)


class TestTopologies(LeafCase):
    def test_two_leaves_of_one_hub_do_not_echo(self):
        hub = self.proc(hub_config())
        port = leaf_port(hub)
        l1 = self.proc(leaf_config(port, name="l1"))
        l2 = self.proc(leaf_config(port, name="l2"))
        self.wait_leafs(hub, 2)
        s1, s2, sh = self.client(l1), self.client(l2), self.client(hub)
        for c in (s1, s2, sh):
            c.send(b"SUB ring 1\r\n")
            c.ping()
        self.wait_interest(hub, "ring")
        wait_for(lambda: leaf_subjects(l1).count("ring") == 1 and leaf_subjects(l2).count("ring") == 1, WAIT)
        self.client(l2).send(b"PUB ring 1\r\nz\r\n" * 100)
        for c in (s1, s2, sh):
            self.assertEqual(len(self.collect(c, 100)), 100)

    def test_dialler_declared_hub(self):
        # `hub: true`: the dialling side is the hub, the accepting side the spoke
        accepting = self.proc(hub_config())
        dialler = self.proc(leaf_config(leaf_port(accepting), name="dialhub", extra_remote="hub: true"))
        self.wait_leafs(accepting, 1)
        self.wait_leafs(dialler, 1)
        self.assertEqual(leafz(accepting)["leafs"][0]["is_spoke"], True)
        self.assertEqual(leafz(dialler)["leafs"][0]["is_spoke"], False)
        s1, s2 = self.client(accepting), self.client(dialler)
        s1.send(b"SUB a 1\r\n")
        s2.send(b"SUB b 1\r\n")
        s1.ping()
        s2.ping()
        self.wait_interest(dialler, "a")
        self.wait_interest(accepting, "b")
        self.client(dialler).send(b"PUB a 1\r\nx\r\n" * 7)
        self.client(accepting).send(b"PUB b 1\r\ny\r\n" * 9)
        self.assertEqual(len(self.collect(s1, 7)), 7)
        self.assertEqual(len(self.collect(s2, 9)), 9)

    def test_loop_is_detected(self):
        # A -> B -> C -> A: A's $LDS subject comes back to A
        ports = [free_port() for _ in range(3)]
        procs = []
        for i, name in enumerate("ABC"):
            procs.append(self.proc(
                'server_name: %s\nleafnodes { host: 127.0.0.1, port: %d\n'
                ' remotes = [ { url: "nats-leaf://127.0.0.1:%d" } ] }' % (name, ports[i], ports[(i + 1) % 3])))
        rx = r'Loop detected for leafnode account="\$G". Delaying attempt to reconnect for 30s'
        self.assertTrue(wait_for(lambda: any(re.search(rx, p.output()) for p in procs), WAIT),
                        "".join(p.output()[-1500:] for p in procs))

    def test_cluster_is_a_hub_for_leaves_on_either_member(self):
        n1 = self.proc(hub_config(extra="cluster { listen: 127.0.0.1:-1, name: hubc }"))
        n2 = self.proc(hub_config(extra='cluster { listen: 127.0.0.1:-1, name: hubc, routes: ["nats://127.0.0.1:%d"] }'
                                  % n1.cluster_port, name="hub2"))
        wait_for(lambda: monitor(n1, "/routez")["num_routes"] == 1, WAIT)
        l1 = self.proc(leaf_config(leaf_port(n1), name="l1"))
        l2 = self.proc(leaf_config(leaf_port(n2), name="l2"))
        self.wait_leafs(n1, 1)
        self.wait_leafs(n2, 1)
        s2 = self.client(l2)
        s2.send(b"SUB far.x 1\r\n")
        s2.ping()
        sn1 = self.client(n1)
        sn1.send(b"SUB far.x 1\r\n")
        sn1.ping()
        self.wait_interest(n2, "far.x")                      # l2 -> n2
        # n1 learnt it over the route and told l1
        self.wait_interest(l1, "far.x")
        self.client(l1).send(b"".join(b"PUB far.x 3\r\nm%02d\r\n" % i for i in range(60)))
        self.assertEqual([p for _, _, p in self.collect(s2, 60)], [b"m%02d" % i for i in range(60)])
        self.assertEqual(len(self.collect(sn1, 60)), 60)


class DenyCases:
    """hub_exe: the hub's server (the leaf is gnatsd.py)."""
    hub_exe = None

    def test_deny_imports_and_exports(self):
        hub = self.proc(hub_config(), self.hub_exe)
        leaf = self.proc(leaf_config(leaf_port(hub), extra_remote='deny_imports: ["secret.>"]\n'
                                                                  ' deny_exports: ["local.>"]'))
        self.wait_leafs(hub, 1)
        on_leaf, on_hub = self.client(leaf), self.client(hub)
        on_leaf.send(b"SUB secret.x 1\r\nSUB open.x 2\r\n")
        on_hub.send(b"SUB local.x 1\r\nSUB open.y 2\r\n")
        on_leaf.ping()
        on_hub.ping()
        self.wait_interest(hub, "open.x")
        self.wait_interest(leaf, "open.y")
        self.assertNotIn("secret.x", leaf_subjects(hub))       # never asked for
        ph, pl = self.client(hub), self.client(leaf)
        ph.send(b"PUB secret.x 1\r\ns\r\n" * 10 + b"PUB open.x 1\r\no\r\n" * 10)
        pl.send(b"PUB local.x 1\r\nl\r\n" * 10 + b"PUB open.y 1\r\np\r\n" * 10)
        got_l = self.collect(on_leaf, 10)
        got_h = self.collect(on_hub, 10)
        self.assertEqual({a[0] for _, a, _ in got_l}, {b"open.x"})
        self.assertEqual({a[0] for _, a, _ in got_h}, {b"open.y"})


class TestDeny(LeafCase, DenyCases):
    pass


class TestCredsSigner(unittest.TestCase):
    def test_signatures_match_the_nkeys_package(self):
        try:
            import nkeys
        except ImportError:
            self.skipTest("the nkeys package is not installed")
        from gnats.leafcreds import CredsError, decode_seed, sign
        for _ in range(5):
            seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
            msg = os.urandom(11)
            self.assertEqual(sign(decode_seed(seed.decode()), msg),
                             bytes(nkeys.from_seed(bytearray(seed)).sign(msg)))
        # a damaged character in the middle (the last one also carries two
        # padding bits, so changing it may not change the decoded bytes)
        text = seed.decode()
        bad = text[:20] + ("A" if text[20] != "A" else "B") + text[21:]
        with self.assertRaises(CredsError):
            decode_seed(bad)


class TestAccounts(LeafCase):
    def test_leaf_user_binds_the_hubs_account(self):
        accounts = ("accounts {\n A: { users: [ {user: ua, password: pa} ] }\n"
                    " B: { users: [ {user: ub, password: pb} ] }\n}\n")
        hub = self.proc(accounts + "server_name: hub\nleafnodes { host: 127.0.0.1, port: -1\n"
                        " authorization { users = [ {user: la, password: lp, account: A} ] } }\n")
        leaf = self.proc(leaf_config(leaf_port(hub), "la:lp"))
        self.wait_leafs(hub, 1)
        self.assertEqual(leafz(hub)["leafs"][0]["account"], "A")
        in_a = self.client(hub, b'{"verbose":false,"pedantic":false,"user":"ua","pass":"pa"}')
        in_b = self.client(hub, b'{"verbose":false,"pedantic":false,"user":"ub","pass":"pb"}')
        for c in (in_a, in_b):
            c.send(b"SUB acc.x 1\r\n")
            c.ping()
        self.wait_interest(leaf, "acc.x")
        self.client(leaf).send(b"PUB acc.x 2\r\nhi\r\n" * 6)
        self.assertEqual(len(self.collect(in_a, 6)), 6)
        self.assertEqual(in_b.drain(), [])          # account B never sees the leaf's traffic
        # and the other way: only account A's publishes reach the leaf
        on_leaf = self.client(leaf)
        on_leaf.send(b"SUB back 1\r\n")
        on_leaf.ping()
        self.wait_interest(hub, "back")
        self.client(hub, b'{"verbose":false,"pedantic":false,"user":"ub","pass":"pb"}').send(b"PUB back 1\r\nb\r\n" * 3)
        self.client(hub, b'{"verbose":false,"pedantic":false,"user":"ua","pass":"pa"}').send(b"PUB back 1\r\na\r\n" * 4)
        self.assertEqual([p for _, _, p in self.collect(on_leaf, 4)], [b"a"] * 4)


class TestReload(LeafCase):
    def test_changed_block_is_refused_without_printing_secrets(self):
        hub = self.proc(hub_config(auth=True))
        self.proc(leaf_config(leaf_port(hub), "lu:lp"))
        self.wait_leafs(hub, 1)
        with open(hub.config_path) as f:
            text = f.read()
        with open(hub.config_path, "w") as f:
            f.write(text.replace("password: lp", "password: changed"))
        hub.signal(signal.SIGHUP)
        self.assertTrue(hub.wait_log("config reload not supported for leafnodes", WAIT), hub.output())
        self.assertNotIn("changed", hub.output())
        self.assertEqual(leafz(hub)["leafnodes"], 1)        # the leaf stays


class TestConfig(unittest.TestCase):
    def check(self, text, want):
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write(text)
        self.addCleanup(os.unlink, f.name)
        r = subprocess.run([PYTHON, GNATSD, "-c", f.name], cwd=ROOT, capture_output=True, text=True, timeout=20)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("%s:%s" % (f.name, want), r.stderr + r.stdout)

    def test_unknown_field_in_remote(self):
        self.check('leafnodes {\n  remotes = [ { url: "nats-leaf://h:1", bogus: 1 } ]\n}\n', '2:41: unknown field "bogus"')

    def test_bad_url(self):
        self.check('leafnodes {\n  remotes = [ { url: "http://h:1" } ]\n}\n', "2:22: invalid leafnode URL")

    def test_bad_port_type(self):
        self.check('leafnodes {\n  port: "x"\n}\n', "2:9: leafnodes.port: expected a port")

    def test_unknown_field_in_block(self):
        self.check('leafnodes {\n  nope: 1\n}\n', '2:3: unknown field "nope"')


if __name__ == "__main__":
    unittest.main()
