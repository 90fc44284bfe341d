"""Accounts from the config (issue 17): isolation, stream and service
imports, restricted exports, limits, no_auth_user, user kinds, config
errors, /accountz and /connz?acc, and reload. Every behaviour class runs
against gnatsd.py and, the same test, against nats-server 2.15 (the
reference), with raw protocol clients over loopback."""

import json
import os
import signal
import subprocess
import time
import unittest
import urllib.error
import urllib.request

from tests.util import (GNATSD, GO_SERVER_215, HAVE_GO_215, PYTHON, RawClient, ServerProcess,
                        needs, parse_msgs, wait_for)

TIMEOUT = 10.0

CONF = """
accounts {
  A: {
    users: [{user: a, password: a}, {user: a2, password: a2}]
    exports: [
      {stream: "pub.>"}
      {stream: "mapped.*"}
      {service: "svc.>"}
      {service: "many", response_type: stream}
      {service: "priv", accounts: [B]}
      {service: "slow", response_type: chunked, response_threshold: "400ms"}
    ]
  }
  B: {
    users: [{user: b, password: b}]
    imports: [
      {stream: {account: A, subject: "pub.>"}, prefix: "fromA"}
      {stream: {account: A, subject: "mapped.*"}, to: "here.*"}
      {service: {account: A, subject: "svc.x"}, to: "asksvc"}
      {service: {account: A, subject: "many"}}
      {service: {account: A, subject: "priv"}}
      {service: {account: A, subject: "slow"}}
      {service: {account: A, subject: "svc.w.>"}, to: "w.>"}
    ]
  }
  C: {
    users: [{user: c, password: c, permissions: {publish: "ok.>", subscribe: ">"}}]
  }
  M: {
    users: [{user: m, password: m}]
    mappings: { "in.*": "out.$1" }
  }
  L: {
    users: [{user: l, password: l}]
    limits: {max_connections: 2, max_subscriptions: 2, max_payload: 10}
  }
}
no_auth_user: b
"""


def connect(port, user=None, password=None, headers=False):
    obj = {"verbose": False, "pedantic": False, "headers": headers}
    if user is not None:
        obj["user"], obj["pass"] = user, password
    return RawClient(port, json.dumps(obj).encode())


def collect(c, n, timeout=TIMEOUT):
    """Exactly the messages that arrive until n are in (then one PING more)."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got.extend(c.drain(timeout))
    got.extend(c.drain(timeout))
    return got


class AccountsBehaviour:
    """The tests; `exe` None: gnatsd.py, else the Go binary."""
    exe = None

    @classmethod
    def setUpClass(cls):
        cls.srv = ServerProcess("-m", "-1", config=CONF, exe=cls.exe)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def client(self, user=None, password=None, headers=False):
        c = connect(self.srv.port, user, password, headers)
        self.addCleanup(c.close)
        c.ping()
        return c

    def test_isolation_between_accounts(self):
        a, a2, b = self.client("a", "a"), self.client("a2", "a2"), self.client("b", "b")
        a.send(b"SUB iso 1\r\n")
        b.send(b"SUB iso 1\r\n")
        a.ping(), b.ping()
        a2.send(b"PUB iso 2\r\nin\r\n")
        b.send(b"PUB iso 3\r\nout\r\n")
        a2.ping()
        self.assertEqual([m[2] for m in collect(a, 1)], [b"in"])
        self.assertEqual([m[2] for m in collect(b, 1)], [b"out"])     # its own, echoed

    def test_no_auth_user_lands_in_its_account(self):
        anon, b = self.client(), self.client("b", "b")
        anon.send(b"SUB anon.x 1\r\n")
        anon.ping()
        b.send(b"PUB anon.x 1\r\nz\r\n")
        b.ping()
        self.assertEqual([m[2] for m in collect(anon, 1)], [b"z"])

    def test_stream_import_with_prefix_and_wide_subscription(self):
        a, b = self.client("a", "a"), self.client("b", "b")
        b.send(b"SUB fromA.pub.> 1\r\nSUB > 2\r\nSUB pub.> 3\r\n")
        b.ping()
        a.send(b"PUB pub.one 3\r\nabc\r\n")
        a.ping()
        got = collect(b, 2)
        self.assertEqual(sorted((m[1][0], m[1][1], m[2]) for m in got),
                         [(b"fromA.pub.one", b"1", b"abc"), (b"fromA.pub.one", b"2", b"abc")])

    def test_stream_import_ignores_auto_unsubscribe_as_go_does(self):
        # nats-server 2.15: the shadow in the exporter has no limit, so
        # UNSUB <sid> <max> does not cut what arrives through the import
        a, b = self.client("a", "a"), self.client("b", "b")
        b.send(b"SUB fromA.pub.lim 5\r\nUNSUB 5 2\r\n")
        b.ping()
        a.send(b"".join(b"PUB pub.lim 1\r\n%d\r\n" % i for i in range(5)))
        a.ping()
        self.assertEqual([m[2] for m in collect(b, 5)], [b"%d" % i for i in range(5)])

    def test_stream_import_with_to(self):
        a, b = self.client("a", "a"), self.client("b", "b")
        b.send(b"SUB here.* 1\r\n")
        b.ping()
        a.send(b"PUB mapped.k 1\r\nm\r\nPUB other.k 1\r\nn\r\n")
        a.ping()
        got = collect(b, 1)
        self.assertEqual([(m[1][0], m[2]) for m in got], [(b"here.k", b"m")])

    def test_stream_import_queue_subscribers_share(self):
        a = self.client("a", "a")
        members = [self.client("b", "b") for _ in range(3)]
        for m in members:
            m.send(b"SUB fromA.pub.q workers 1\r\n")
            m.ping()
        a.send(b"".join(b"PUB pub.q 2\r\n%02d\r\n" % i for i in range(30)))
        a.ping()
        got = []
        wait_for(lambda: got.extend(sum([m.drain() for m in members], [])) or len(got) >= 30, TIMEOUT)
        self.assertEqual(sorted(m[2] for m in got), [b"%02d" % i for i in range(30)])

    def test_service_import_request_reply(self):
        a, b = self.client("a", "a"), self.client("b", "b")
        a.send(b"SUB svc.x 1\r\n")
        b.send(b"SUB _INBOX.r1 9\r\n")
        a.ping(), b.ping()
        b.send(b"PUB asksvc _INBOX.r1 3\r\nreq\r\n")
        b.ping()
        req = collect(a, 1)
        self.assertEqual(len(req), 1)
        subject, sid, reply = req[0][1][:3]
        self.assertEqual((subject, sid, req[0][2]), (b"svc.x", b"1", b"req"))
        self.assertTrue(reply.startswith(b"_R_."), reply)
        # the private reply is a singleton: a second answer goes nowhere
        a.send(b"PUB %s 3\r\nans\r\nPUB %s 4\r\nans2\r\n" % (reply, reply))
        a.ping()
        got = collect(b, 1)
        self.assertEqual([(m[1][0], m[2]) for m in got], [(b"_INBOX.r1", b"ans")])

    def test_service_import_with_wildcards_maps_the_subject(self):
        a, b = self.client("a", "a"), self.client("b", "b")
        a.send(b"SUB svc.w.> 1\r\n")
        b.send(b"SUB _INBOX.w 9\r\n")
        a.ping(), b.ping()
        b.send(b"PUB w.k.l _INBOX.w 1\r\n?\r\n")
        b.ping()
        req = collect(a, 1)
        self.assertEqual([(m[1][0], m[2]) for m in req], [(b"svc.w.k.l", b"?")])
        a.send(b"PUB %s 2\r\nok\r\n" % req[0][1][2])
        a.ping()
        self.assertEqual([m[2] for m in collect(b, 1)], [b"ok"])

    def test_service_import_streamed_responses(self):
        a, b = self.client("a", "a"), self.client("b", "b")
        a.send(b"SUB many 1\r\n")
        b.send(b"SUB _INBOX.r2 9\r\n")
        a.ping(), b.ping()
        b.send(b"PUB many _INBOX.r2 1\r\n?\r\n")
        b.ping()
        reply = collect(a, 1)[0][1][2]
        a.send(b"".join(b"PUB %s 2\r\nr%d\r\n" % (reply, i) for i in range(5)))
        a.ping()
        self.assertEqual([m[2] for m in collect(b, 5)], [b"r%d" % i for i in range(5)])

    def test_service_response_threshold_expires_the_reply(self):
        a, b = self.client("a", "a"), self.client("b", "b")
        a.send(b"SUB slow 1\r\n")
        b.send(b"SUB _INBOX.slow 9\r\n")
        a.ping(), b.ping()
        b.send(b"PUB slow _INBOX.slow 1\r\n?\r\n")
        b.ping()
        reply = collect(a, 1)[0][1][2]
        a.send(b"PUB %s 5\r\nearly\r\n" % reply)
        a.ping()
        self.assertEqual([m[2] for m in collect(b, 1)], [b"early"])
        time.sleep(2.5)     # well past the 400ms threshold
        a.send(b"PUB %s 4\r\nlate\r\n" % reply)
        a.ping()
        self.assertEqual(collect(b, 0, 1.0), [])

    def test_service_import_with_headers(self):
        a, b = self.client("a", "a", headers=True), self.client("b", "b", headers=True)
        a.send(b"SUB priv 1\r\n")
        b.send(b"SUB _INBOX.h 1\r\n")
        a.ping(), b.ping()
        hdr = b"NATS/1.0\r\nX-K: v\r\n\r\n"
        b.send(b"HPUB priv _INBOX.h %d %d\r\n%sq\r\n" % (len(hdr), len(hdr) + 1, hdr))
        b.ping()
        req = collect(a, 1)
        self.assertEqual(req[0][0], b"HMSG")
        # nats-server adds the requester's account and RTT to a request
        # with headers
        self.assertRegex(req[0][2], b'^NATS/1.0\r\nX-K: v\r\nNats-Request-Info: '
                                    b'{"acc":"B","rtt":[0-9]+}\r\n\r\nq$')
        a.send(b"HPUB %s %d %d\r\n%sa\r\n" % (req[0][1][2], len(hdr), len(hdr) + 1, hdr))
        a.ping()
        got = collect(b, 1)
        self.assertEqual([(m[0], m[2]) for m in got], [(b"HMSG", hdr + b"a")])

    def test_unimported_subjects_do_not_cross(self):
        a, b, c = self.client("a", "a"), self.client("b", "b"), self.client("c", "c")
        a.send(b"SUB svc.y 1\r\nSUB priv 2\r\n")
        a.ping()
        b.send(b"PUB svc.y 1\r\nx\r\n")          # only svc.x is imported (as asksvc)
        c.send(b"PUB priv 1\r\nx\r\n")           # C imports nothing
        b.ping(), c.ping()
        self.assertEqual(collect(a, 0, 1.0), [])

    def test_account_mappings_apply_in_their_account_only(self):
        m, a = self.client("m", "m"), self.client("a", "a")
        m.send(b"SUB out.* 1\r\n")
        a.send(b"SUB out.* 1\r\nSUB in.* 2\r\n")
        m.ping(), a.ping()
        m.send(b"PUB in.x 1\r\n1\r\n")
        self.assertEqual([(x[1][0], x[2]) for x in collect(m, 1)], [(b"out.x", b"1")])
        a.send(b"PUB in.y 1\r\n2\r\n")     # A has no mapping
        self.assertEqual([(x[1][0], x[2]) for x in collect(a, 1)], [(b"in.y", b"2")])

    def test_permissions_inside_an_account(self):
        c = self.client("c", "c")
        c.send(b"SUB ok.> 1\r\nPUB ok.1 1\r\n1\r\nPUB no.1 1\r\n2\r\n")
        data = c.ping()
        self.assertIn(b"-ERR 'Permissions Violation for Publish to \"no.1\"'", data)
        self.assertEqual([m[2] for m in parse_msgs(data) + c.drain()], [b"1"])

    def test_account_limits(self):
        l1, l2 = self.client("l", "l"), self.client("l", "l")
        l3 = connect(self.srv.port, "l", "l")
        self.addCleanup(l3.close)
        self.assertEqual(l3.read_line(), b"-ERR 'maximum account active connections exceeded'")
        self.assertTrue(l3.closed())
        l1.send(b"SUB s1 1\r\nSUB s2 2\r\nSUB s3 3\r\n")
        self.assertRegex(l1.ping(), b"(?i)-ERR 'maximum subscriptions exceeded'")
        l2.send(b"PUB p 11\r\n01234567890\r\n")
        self.assertEqual(l2.read_line(), b"-ERR 'Maximum Payload Violation'")
        self.assertTrue(l2.closed())

    def test_accountz_and_connz_acc(self):
        a = self.client("a", "a")
        b = self.client("b", "b")
        mon = "http://127.0.0.1:%d" % self.srv.monitor_port
        accz = json.load(urllib.request.urlopen(mon + "/accountz"))
        self.assertTrue({"A", "B", "C", "L", "$G"} <= set(accz["accounts"]), accz)
        self.assertEqual(accz["system_account"], "$SYS")
        det = json.load(urllib.request.urlopen(mon + "/accountz?acc=A"))["account_detail"]
        self.assertEqual(det["account_name"], "A")
        self.assertGreaterEqual(det["client_connections"], 1)
        exports = {(e["subject"], e["type"]): e for e in det["exports"]}
        self.assertEqual(exports["priv", "service"]["approved_accounts"], ["B"])
        self.assertEqual(exports["many", "service"]["response_type"], "Streamed")
        self.assertEqual(exports["svc.>", "service"]["response_type"], "Singleton")
        self.assertNotIn("response_type", exports["pub.>", "stream"])
        imp = json.load(urllib.request.urlopen(mon + "/accountz?acc=B"))["account_detail"]["imports"]
        mine = {(i["subject"], i["type"]): i for i in imp if i["account"] == "A"}
        self.assertEqual(mine["pub.>", "stream"]["local_subject"], "fromA.pub.>")
        self.assertEqual(mine["svc.x", "service"]["to"], "asksvc")
        self.assertEqual(mine["svc.x", "service"]["local_subject"], "asksvc")
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(mon + "/accountz?acc=NOPE")
        self.assertEqual(e.exception.code, 400)
        self.assertIn(b"Account NOPE does not exist", e.exception.read())
        connz = json.load(urllib.request.urlopen(mon + "/connz?acc=A&auth=1"))
        self.assertTrue(connz["connections"])
        for ci in connz["connections"]:
            self.assertEqual(ci["account"], "A")
            self.assertIn(ci["authorized_user"], ("a", "a2"))
        none = json.load(urllib.request.urlopen(mon + "/connz?acc=NOPE"))
        self.assertEqual((none["num_connections"], none["connections"]), (0, None))
        del a, b


class AccountsPython(AccountsBehaviour, unittest.TestCase):
    pass


@needs(HAVE_GO_215, "nats-server 2.15 is not at /opt/ns/bin/nats-server")
class AccountsGo(AccountsBehaviour, unittest.TestCase):
    exe = GO_SERVER_215


# -- user kinds inside accounts ------------------------------------------------------

SEED = b"SUACUKRKFIVCUKRKFIVCUKRKFIVCUKRKFIVCUKRKFIVCUKRKFIVCUKTGMM"   # 32 bytes 0x2a
BCRYPT_BPW = "$2b$04$87imHPD2EW/d.E6vKdxL4O1O/Wo0r16b1H74juW9O9Ve5mbhWfil2"   # "bpw", cost 4


def nkey_pair():
    import nkeys
    return nkeys.from_seed(bytearray(SEED))


KINDS_CONF = """
accounts {
  N: { users: [{nkey: %s}, {user: hashed, password: "%s"}],
       default_permissions: {publish: "n.>", subscribe: "n.>"},
       limits: {max_payload: 1KB} }
  G: { users: [{user: g, password: g}] }
}
authorization { users: [{user: top, password: top}] }
"""


class UserKindsBehaviour:
    exe = None

    @classmethod
    def setUpClass(cls):
        try:
            pub = nkey_pair().public_key.decode()
        except ImportError:
            raise unittest.SkipTest("the nkeys package is not installed")
        cls.srv = ServerProcess(config=KINDS_CONF % (pub, BCRYPT_BPW), exe=cls.exe)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def nkey_client(self):
        import base64
        c = RawClient(self.srv.port, connect=None)
        self.addCleanup(c.close)
        nonce = json.loads(c.info[5:])["nonce"]
        kp = nkey_pair()
        sig = base64.urlsafe_b64encode(kp.sign(nonce.encode())).decode().rstrip("=")
        c.send(b"CONNECT " + json.dumps({"verbose": False, "pedantic": False,
                                         "nkey": kp.public_key.decode(), "sig": sig}).encode() + b"\r\n")
        c.ping()
        return c

    def client(self, user, password):
        c = connect(self.srv.port, user, password)
        self.addCleanup(c.close)
        c.ping()
        return c

    def test_nkey_and_bcrypt_users_share_their_account_with_its_default_permissions(self):
        nk, hashed = self.nkey_client(), self.client("hashed", "bpw")
        g, top = self.client("g", "g"), self.client("top", "top")
        for c in (nk, g, top):
            c.send(b"SUB n.x 1\r\n")
            c.ping()
        hashed.send(b"PUB n.x 2\r\nhi\r\nPUB other 1\r\nx\r\n")
        self.assertIn(b"Permissions Violation for Publish to \"other\"", hashed.ping())
        self.assertEqual([m[2] for m in collect(nk, 1)], [b"hi"])
        top.send(b"PUB n.x 2\r\n$G\r\n")        # the authorization block's user: $G
        self.assertEqual([m[2] for m in collect(top, 1)], [b"$G"])
        self.assertEqual(collect(g, 0, 1.0), [])
        self.assertEqual(collect(nk, 0, 1.0), [])

    def test_account_max_payload_with_a_size_suffix(self):
        nk = self.nkey_client()
        nk.send(b"PUB n.big 1025\r\n" + b"x" * 1025 + b"\r\n")
        self.assertEqual(nk.read_line(), b"-ERR 'Maximum Payload Violation'")


class UserKindsPython(UserKindsBehaviour, unittest.TestCase):
    pass


@needs(HAVE_GO_215, "nats-server 2.15 is not at /opt/ns/bin/nats-server")
class UserKindsGo(UserKindsBehaviour, unittest.TestCase):
    exe = GO_SERVER_215


# -- config errors ----------------------------------------------------------------

BAD = {
    "not_authorized": ("""accounts {
  A: { users: [{user: a, password: a}], exports: [{stream: "pub.>", accounts: [C]}] }
  B: { users: [{user: b, password: b}], imports: [{stream: {account: A, subject: "pub.>"}}] }
  C: {}
}""", 'Error adding stream import "pub.>": stream import not authorized'),
    "missing_export": ("""accounts {
  A: { users: [{user: a, password: a}] }
  B: { users: [{user: b, password: b}], imports: [{service: {account: A, subject: "svc"}}] }
}""", 'Error adding service import "svc": service import not authorized'),
    "missing_account": ("""accounts {
  B: { users: [{user: b, password: b}], imports: [{service: {account: Z, subject: "svc"}}] }
}""", '"Z" account not defined for service import'),
    "reserved": ("""accounts { $G: {} }""", '"$G" is a Reserved Account'),
    "duplicate_user": ("""accounts {
  A: { users: [{user: x, password: a}] }
  B: { users: [{user: x, password: b}] }
}""", 'Duplicate user "x" detected'),
    "limits_field": ("""accounts { A: { limits: { max_bogus: 1 } } }""",
                     'Unknown field "max_bogus" parsing account limits'),
}


class AccountConfigErrors(unittest.TestCase):

    def load(self, exe, text, tmp):
        path = os.path.join(tmp, "bad.conf")
        with open(path, "w") as f:
            f.write("port: -1\n" + text + "\n")
        cmd = ([exe] if exe else [PYTHON, GNATSD]) + ["-c", path]
        p = subprocess.run(cmd, capture_output=True, timeout=20)
        return p.returncode, (p.stdout + p.stderr).decode()

    def test_errors_name_the_problem(self):
        import tempfile
        tmp = tempfile.mkdtemp()
        self.addCleanup(lambda: __import__("shutil").rmtree(tmp, ignore_errors=True))
        for name, (text, want) in BAD.items():
            with self.subTest(name):
                rc, out = self.load(None, text, tmp)
                self.assertNotEqual(rc, 0)
                self.assertIn(want, out)
                self.assertNotIn("Traceback", out)
                if name in ("not_authorized", "missing_export"):
                    # ours also names both accounts
                    self.assertIn('account "B" importing from account "A"', out)
                if HAVE_GO_215:
                    rc, gout = self.load(GO_SERVER_215, text, tmp)
                    self.assertNotEqual(rc, 0)
                    self.assertIn(want, gout)


# -- reload -----------------------------------------------------------------------

RELOAD_BEFORE = """
accounts {
  A: { users: [{user: a, password: a}, {user: mover, password: m}], exports: [{stream: "s.>"}] }
  B: { users: [{user: b, password: b}, {user: gone, password: g}],
       imports: [{stream: {account: A, subject: "s.>"}, prefix: "p"}] }
}
"""
RELOAD_AFTER = """
accounts {
  A: { users: [{user: a, password: a}], exports: [{stream: "s.>"}] }
  B: { users: [{user: b, password: b}, {user: mover, password: m}],
       imports: [{stream: {account: A, subject: "s.>"}, to: "t.>"}] }
}
"""


class AccountsReload(unittest.TestCase):

    def run_reload(self, exe):
        srv = ServerProcess(config=RELOAD_BEFORE, exe=exe)
        self.addCleanup(srv.stop)
        a, b = connect(srv.port, "a", "a"), connect(srv.port, "b", "b")
        mover, gone = connect(srv.port, "mover", "m"), connect(srv.port, "gone", "g")
        for c in (a, b, mover, gone):
            self.addCleanup(c.close)
        b.send(b"SUB > 1\r\n")
        a.send(b"SUB keep 1\r\n")
        for c in (a, b, mover, gone):
            c.ping()
        a.send(b"PUB s.1 1\r\n1\r\n")
        a.ping()
        self.assertEqual([m[1][0] for m in collect(b, 1)], [b"p.s.1"])
        with open(srv.config_path, "w") as f:
            f.write(RELOAD_AFTER)
        srv.signal(signal.SIGHUP)
        self.assertTrue(mover.closed(TIMEOUT))      # its user is in another account now
        self.assertTrue(gone.closed(TIMEOUT))       # its user is gone
        # the others stay, with their subscriptions; the import changed form
        a.send(b"PUB keep 1\r\nk\r\n")
        self.assertEqual([m[2] for m in parse_msgs(a.ping()) + a.drain()], [b"k"])
        # nats-server rewires the import after it closed the moved
        # clients, not necessarily before: wait for the new form, then count
        def rewired():
            a.send(b"PUB s.probe 1\r\np\r\n")
            a.ping()
            return [m[1][0] for m in b.drain()][-1:] == [b"t.probe"]
        wait_for(rewired, TIMEOUT, interval=0.1)
        a.send(b"PUB s.2 1\r\n2\r\n")
        a.ping()
        self.assertEqual([m[1][0] for m in collect(b, 1)], [b"t.2"])
        m2 = connect(srv.port, "mover", "m")
        self.addCleanup(m2.close)
        m2.send(b"SUB t.> 1\r\n")
        m2.ping()
        a.send(b"PUB s.3 1\r\n3\r\n")
        a.ping()
        self.assertEqual([m[1][0] for m in collect(m2, 1)], [b"t.3"])

    def test_reload_python(self):
        self.run_reload(None)

    @needs(HAVE_GO_215, "nats-server 2.15 is not at /opt/ns/bin/nats-server")
    def test_reload_go(self):
        self.run_reload(GO_SERVER_215)


if __name__ == "__main__":
    unittest.main()
