"""Issue 16: permissions enforced on the wire, black-box.

Real `gnatsd.py` processes (and the Go nats-server 2.15.1 on the same
config, for the error lines and the delivered sets), raw sockets for exact
lines, nats-py for a client library's view. Counts are exact; every wait
has a timeout.
"""

import asyncio
import json
import os
import signal
import time
import unittest
import urllib.request

from tests.util import flushed, RawClient, ServerProcess, wait_for

GO_215 = "/opt/ns/bin/nats-server"
HAVE_GO = os.access(GO_215, os.X_OK)

try:
    import nats
except ImportError:
    nats = None

USERS = """
authorization {
  default_permissions { publish: "dflt.>", subscribe: "dflt.>" }
  users = [
    {user: pub, password: p, permissions: {
        publish: {allow: ["foo.>", "q.>", "req"], deny: ["foo.secret"]},
        subscribe: "_INBOX.>"}}
    {user: sub, password: s, permissions: {
        subscribe: {allow: ["foo.>", "q.> workers"], deny: ["foo.bar"]}}}
    {user: resp, password: r, permissions: {
        subscribe: "req", allow_responses: {max: 2, expires: "1s"}}}
    {user: dflt, password: d}
    {user: qd, password: q, permissions: {subscribe: {allow: [">"], deny: ["foo.bar workers"]}}}
    {user: admin, password: a, permissions: {publish: ">", subscribe: ">"}}
  ]
}
"""


def pub_err(subj):
    return b"-ERR 'Permissions Violation for Publish to \"%s\"'" % subj


def sub_err(subj, queue=None):
    if queue:
        return b"-ERR 'Permissions Violation for Subscription to \"%s\" using queue \"%s\"'" % (
            subj, queue)
    return b"-ERR 'Permissions Violation for Subscription to \"%s\"'" % subj


def login(port, user, pw):
    c = RawClient(port, connect=b'{"verbose":false,"pedantic":false,"user":"%s","pass":"%s"}'
                  % (user, pw))
    assert c.ping() == b"", "login failed"
    return c


def lines(data):
    return [ln for ln in data.split(b"\r\n") if ln]


def delivered(client):
    """(subject, sid, payload) of everything received up to a PING."""
    return [(a[0], a[1], p) for op, a, p in client.drain() if op == b"MSG"]


def basic_scenario(port):
    """What a subscriber and a publisher with permissions see."""
    out = {}
    s = login(port, b"sub", b"s")
    s.send(b"SUB foo.* 1\r\nSUB foo.bar 2\r\nSUB q.x 3\r\nSUB q.x workers 4\r\n"
           b"SUB q.x others 5\r\nSUB bar 6\r\n")
    out["sub_errors"] = lines(s.ping())
    p = login(port, b"pub", b"p")
    # three rounds: the second and third come from the publisher's caches
    for i in range(3):
        p.send(b"PUB foo.bar 1\r\na\r\nPUB foo.baz 1\r\nb\r\nPUB foo.secret 1\r\nc\r\n"
               b"PUB q.x 1\r\nd\r\nPUB bar 1\r\ne\r\n")
    # and a resized PUB (scache) on each subject
    p.send(b"PUB foo.bar 2\r\naa\r\nPUB foo.secret 2\r\ncc\r\nPUB foo.baz 2\r\nbb\r\n")
    out["pub_errors"] = lines(p.ping())
    out["delivered"] = delivered(s)
    p.send(b"PING\r\n")
    out["pub_open"] = p.read_line() == b"PONG"
    s.close()
    p.close()
    return out


class WithServer(unittest.TestCase):
    config = USERS
    args = ()
    exe = None          # None: gnatsd.py

    def setUp(self):
        self.srv = ServerProcess(*self.args, config=self.config, exe=self.exe)
        self.addCleanup(self.srv.stop)

    def conn(self, user, pw):
        c = login(self.srv.port, user, pw)
        self.addCleanup(c.close)
        return c


class TestClientPermissions(WithServer):

    def test_errors_and_delivered_set(self):
        out = basic_scenario(self.srv.port)
        self.assertEqual(out["sub_errors"], [
            sub_err(b"foo.bar"), sub_err(b"q.x"), sub_err(b"q.x", b"others"), sub_err(b"bar")])
        self.assertEqual(out["pub_errors"], [pub_err(b"foo.secret"), pub_err(b"bar")] * 3
                         + [pub_err(b"foo.secret")])
        # foo.bar is published but denied to the foo.* subscription (the
        # delivery filter); only the queue entry's group gets q.x
        self.assertEqual(out["delivered"], [(b"foo.baz", b"1", b"b"), (b"q.x", b"4", b"d")] * 3
                         + [(b"foo.baz", b"1", b"bb")])
        self.assertTrue(out["pub_open"])

    def test_violations_logged_like_nats_server(self):
        basic_scenario(self.srv.port)
        log = self.srv.output()
        self.assertRegex(log, r'\[ERR\] 127\.0\.0\.1:\d+ - cid:\d+ - "\$G/user:pub" - '
                              r'Publish Violation - Subject "foo\.secret"')
        self.assertRegex(log, r'\[ERR\] .* - "\$G/user:sub" - Subscription Violation - '
                              r'Subject "q\.x", Queue: "others", SID 5')

    def test_denied_message_never_delivered_to_anyone(self):
        a = self.conn(b"admin", b"a")
        a.send(b"SUB > 1\r\n")
        a.ping()
        p = self.conn(b"pub", b"p")
        p.send(b"PUB foo.secret 1\r\nx\r\n" * 50 + b"PUB foo.ok 1\r\ny\r\n")
        self.assertEqual(lines(p.ping()), [pub_err(b"foo.secret")] * 50)
        self.assertEqual(delivered(a), [(b"foo.ok", b"1", b"y")])

    def test_queue_deny_entry_filters_a_wildcard_queue_subscription(self):
        c = self.conn(b"qd", b"q")
        c.send(b"SUB foo.* workers 1\r\nSUB foo.* 2\r\nSUB foo.bar workers 3\r\n")
        self.assertEqual(lines(c.ping()), [sub_err(b"foo.bar", b"workers")])
        a = self.conn(b"admin", b"a")
        for _ in range(3):      # the publisher's caches on the second and third
            a.send(b"PUB foo.bar 1\r\nx\r\nPUB foo.baz 1\r\ny\r\n")
        a.ping()
        got = delivered(c)
        self.assertEqual(sorted(got), sorted([(b"foo.bar", b"2", b"x"), (b"foo.baz", b"1", b"y"),
                                              (b"foo.baz", b"2", b"y")] * 3))

    def test_hpub_denied(self):
        p = RawClient(self.srv.port, connect=b'{"verbose":false,"pedantic":false,"headers":true,'
                                              b'"user":"pub","pass":"p"}')
        self.addCleanup(p.close)
        a = self.conn(b"admin", b"a")
        a.send(b"SUB > 1\r\n")
        a.ping()
        p.send(b"HPUB foo.secret 12 14\r\nNATS/1.0\r\n\r\nxy\r\n")
        self.assertEqual(lines(p.ping()), [pub_err(b"foo.secret")])
        self.assertEqual(delivered(a), [])

    def test_default_permissions_apply_to_users_without_their_own(self):
        c = self.conn(b"dflt", b"d")
        c.send(b"SUB dflt.a 1\r\nSUB foo 2\r\nPUB dflt.a 1\r\nx\r\nPUB foo 1\r\ny\r\n")
        got = lines(c.ping())
        self.assertEqual([x for x in got if x.startswith(b"-ERR")], [sub_err(b"foo"), pub_err(b"foo")])
        self.assertEqual([x for x in got if x.startswith(b"MSG")], [b"MSG dflt.a 1 1"])
        c.send(b"PUB dflt.a 1\r\nz\r\n")
        self.assertEqual(delivered(c), [(b"dflt.a", b"1", b"z")])

    def test_allow_responses_max_and_expiry(self):
        req = self.conn(b"pub", b"p")
        req.send(b"SUB _INBOX.a 1\r\n")
        req.ping()
        rsp = self.conn(b"resp", b"r")
        rsp.send(b"SUB req 1\r\n")
        rsp.ping()
        # no grant yet
        rsp.send(b"PUB _INBOX.a 1\r\n0\r\n")
        self.assertEqual(lines(rsp.ping()), [pub_err(b"_INBOX.a")])
        req.send(b"PUB req _INBOX.a 1\r\nq\r\n")
        req.ping()
        self.assertEqual([(op, a) for op, a, _ in rsp.drain()],
                         [(b"MSG", [b"req", b"1", b"_INBOX.a", b"1"])])
        # max 2: the third answer is refused
        rsp.send(b"PUB _INBOX.a 1\r\n1\r\nPUB _INBOX.a 1\r\n2\r\nPUB _INBOX.a 1\r\n3\r\n")
        self.assertEqual(lines(rsp.ping()), [pub_err(b"_INBOX.a")])
        self.assertEqual([m[2] for m in delivered(req)], [b"1", b"2"])
        # expires 1s
        req.send(b"PUB req _INBOX.a 1\r\nq\r\n")
        req.ping()
        self.assertEqual(len(delivered(rsp)), 1)
        time.sleep(1.3)
        rsp.send(b"PUB _INBOX.a 1\r\n4\r\n")
        self.assertEqual(lines(rsp.ping()), [pub_err(b"_INBOX.a")])
        self.assertEqual(delivered(req), [])

    def test_allow_responses_payload_in_a_later_read(self):
        """A PUB whose payload arrives later is checked once: max 2 allows
        exactly two answers however the bytes are split."""
        req = self.conn(b"pub", b"p")
        req.send(b"SUB _INBOX.b 1\r\n")
        req.ping()
        rsp = self.conn(b"resp", b"r")
        rsp.send(b"SUB req 1\r\n")
        rsp.ping()
        req.send(b"PUB req _INBOX.b 1\r\nq\r\n")
        req.ping()
        self.assertEqual(len(delivered(rsp)), 1)
        for payload in (b"1", b"2", b"3"):
            rsp.send(b"PUB _INBOX.b 1\r\n")
            time.sleep(0.2)     # the server reads the line alone (if it did not,
            rsp.send(payload + b"\r\n")     # the test is merely weaker)
        self.assertEqual(lines(rsp.ping()), [pub_err(b"_INBOX.b")])
        self.assertEqual([m[2] for m in delivered(req)], [b"1", b"2"])

    def test_allow_responses_after_a_cached_request_line(self):
        """The request's line repeats (the publisher's pcache): every
        delivery must still see the grants. As in nats-server, a delivery
        while a grant for that reply is live uses one response of it and
        does not renew it (max 2: the answer after the second request is
        the third use), so a reused reply subject alternates."""
        req = self.conn(b"pub", b"p")
        req.send(b"SUB _INBOX.a 1\r\n")
        req.ping()
        rsp = self.conn(b"resp", b"r")
        rsp.send(b"SUB req 1\r\n")
        rsp.ping()
        errors, answers = [], []
        for _ in range(4):
            req.send(b"PUB req _INBOX.a 1\r\nq\r\n")
            req.ping()
            self.assertEqual(len(delivered(rsp)), 1)
            rsp.send(b"PUB _INBOX.a 1\r\nr\r\n")
            errors.append(len(lines(rsp.ping())))
            answers.append(len(delivered(req)))
        self.assertEqual(errors, [0, 1, 0, 1])
        self.assertEqual(answers, [1, 0, 1, 0])


@unittest.skipUnless(HAVE_GO, "no nats-server 2.15 at " + GO_215)
class TestClientPermissionsOnGo(TestClientPermissions):
    """The same assertions hold on nats-server 2.15.1: they are its behaviour."""
    exe = GO_215


class TestMonitoring(WithServer):
    args = ("-m", "-1")

    def test_connz_auth_shows_user(self):
        c = self.conn(b"sub", b"s")
        url = "http://127.0.0.1:%d/connz?auth=1" % self.srv.monitor_port
        conns = json.load(urllib.request.urlopen(url, timeout=5))["connections"]
        self.assertEqual([x.get("authorized_user") for x in conns], ["sub"])
        varz = json.load(urllib.request.urlopen(
            "http://127.0.0.1:%d/varz" % self.srv.monitor_port, timeout=5))
        self.assertTrue(varz["auth_required"])
        self.assertNotIn('"s"', json.dumps(varz))
        c.close()


@unittest.skipUnless(HAVE_GO, "no nats-server 2.15 at " + GO_215)
class TestSameAsGo(unittest.TestCase):

    def run_on(self, exe):
        srv = ServerProcess(config=USERS, exe=exe)
        try:
            return basic_scenario(srv.port)
        finally:
            srv.stop()

    def test_same_errors_and_deliveries(self):
        self.assertEqual(self.run_on(None), self.run_on(GO_215))


def reload(srv, text, count):
    with open(srv.config_path, "w") as f:
        f.write(text)
    srv.signal(signal.SIGHUP)
    ok = wait_for(lambda: srv.output().count("Reloaded server configuration") >= count, 10)
    assert ok, srv.output()


class TestReload(WithServer):

    def test_subscriptions_no_longer_allowed_are_removed(self):
        s = self.conn(b"sub", b"s")
        s.send(b"SUB foo.a 1\r\nSUB foo.b 2\r\nSUB q.x workers 3\r\n")
        s.ping()
        d = self.conn(b"dflt", b"d")
        d.send(b"SUB dflt.x 1\r\n")
        d.ping()
        gone = self.conn(b"admin", b"a")
        p = self.conn(b"pub", b"p")
        p.send(b"PUB foo.c 1\r\nc\r\n" * 3)      # cached by the publisher
        self.assertEqual(lines(p.ping()), [])
        new = USERS.replace('deny: ["foo.secret"]', 'deny: ["foo.secret", "foo.c"]').replace('allow: ["foo.>", "q.> workers"]', 'allow: ["foo.a"]') \
            .replace('subscribe: "dflt.>"', 'subscribe: "other.>"') \
            .replace('{user: admin, password: a, permissions: {publish: ">", subscribe: ">"}}', '')
        reload(self.srv, new, 1)
        # nats-server 2.15's lines (checked against it by TestReloadOnGo)
        got = lines(s.ping())
        self.assertEqual(sorted(got), [
            b"-ERR 'Permissions Violation for Subscription to \"foo.b\" (sid \"2\")'",
            b"-ERR 'Permissions Violation for Subscription to \"q.x\" using queue \"workers\" "
            b"(sid \"3\")'"])
        self.assertEqual(lines(d.ping()), [
            b"-ERR 'Permissions Violation for Subscription to \"dflt.x\" (sid \"1\")'"])
        self.assertTrue(gone.closed())
        p.send(b"PUB foo.c 1\r\nc\r\n" * 2 + b"PUB foo.a 1\r\na\r\nPUB foo.b 1\r\nb\r\n")
        self.assertEqual(lines(p.ping()), [pub_err(b"foo.c")] * 2)
        self.assertEqual(delivered(s), [(b"foo.a", b"1", b"a")])
        d.send(b"PUB dflt.x 1\r\nx\r\n")
        self.assertEqual(delivered(d), [])
        self.assertRegex(self.srv.output(), r'\[INF\] Removed sub "foo\.b" \(sid "2"\) for '
                                            r'User "sub" - not authorized')


@unittest.skipUnless(HAVE_GO, "no nats-server 2.15 at " + GO_215)
class TestReloadOnGo(TestReload):
    exe = GO_215


class TestCluster(unittest.TestCase):
    """Node A's cluster permissions: import `imp.>` (what A asks B for),
    export `exp.>` (what B may ask A for)."""
    exe_a = exe_b = None

    def test_import_export_across_a_route(self):
        a = ServerProcess(config="cluster { name: perm, listen: 127.0.0.1:-1\n"
                                 "  permissions { import: \"imp.>\", export: \"exp.>\" } }\n",
                          exe=self.exe_a)
        self.addCleanup(a.stop)
        b = ServerProcess("--cluster", "nats://127.0.0.1:-1", "--cluster_name", "perm",
                          "--routes", "nats://127.0.0.1:%d" % a.cluster_port, exe=self.exe_b)
        self.addCleanup(b.stop)
        ca, cb = RawClient(a.port), RawClient(b.port)
        self.addCleanup(ca.close)
        self.addCleanup(cb.close)
        ca.send(b"SUB imp.x 1\r\nSUB no.x 2\r\nSUB imp.probe 3\r\n")
        cb.send(b"SUB exp.x 1\r\nSUB other.x 2\r\nSUB exp.probe 3\r\n")
        ca.ping()
        cb.ping()

        def probe(pub, sub, subj):
            got = []

            def once():
                pub.send(b"PUB %s 1\r\np\r\n" % subj)
                pub.ping()
                got.extend(delivered(sub))
                return got
            self.assertTrue(wait_for(once, 10), "route interest never arrived")
        probe(ca, cb, b"exp.probe")
        probe(cb, ca, b"imp.probe")
        got_b, got_a = [], []
        ca.send(b"PUB exp.x 1\r\n1\r\nPUB other.x 1\r\n2\r\nPUB exp.probe 3\r\nend\r\n")
        ca.ping()
        self.assertTrue(wait_for(lambda: got_b.extend(delivered(cb)) or
                                 (got_b and got_b[-1][2] == b"end"), 10))
        cb.send(b"PUB imp.x 1\r\n3\r\nPUB no.x 1\r\n4\r\nPUB imp.probe 3\r\nend\r\n")
        cb.ping()
        self.assertTrue(wait_for(lambda: got_a.extend(delivered(ca)) or
                                 (got_a and got_a[-1][2] == b"end"), 10))
        self.assertEqual([m[0] for m in got_b], [b"exp.x", b"exp.probe"])
        self.assertEqual([m[0] for m in got_a], [b"imp.x", b"imp.probe"])


@unittest.skipUnless(HAVE_GO, "no nats-server 2.15 at " + GO_215)
class TestClusterGoNodeA(TestCluster):
    """Node A (the one with permissions) is nats-server 2.15.1: the same
    subjects cross, so the semantics are its."""
    exe_a = GO_215


@unittest.skipUnless(HAVE_GO, "no nats-server 2.15 at " + GO_215)
class TestClusterGoNodeB(TestCluster):
    """Our node A with permissions, facing nats-server 2.15.1."""
    exe_b = GO_215


@unittest.skipIf(nats is None, "nats-py not installed")
class TestNatsPy(WithServer):

    def test_permission_error_callback_and_delivery(self):
        errors, got = [], []

        async def main():
            async def on_err(e):
                errors.append(str(e))
            nc = await nats.connect("nats://pub:p@127.0.0.1:%d" % self.srv.port,
                                    error_cb=on_err, allow_reconnect=False)
            sc = await nats.connect("nats://sub:s@127.0.0.1:%d" % self.srv.port,
                                    allow_reconnect=False)

            async def cb(msg):
                got.append(msg.subject)
            await sc.subscribe("foo.*", cb=cb)
            await flushed(sc)
            for subj in ("foo.secret", "foo.bar", "foo.ok"):
                await nc.publish(subj, b"x")
            await flushed(nc)
            deadline = time.monotonic() + 5
            while (not got or not errors) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await flushed(sc)
            self.assertTrue(nc.is_connected)
            await nc.close()
            await sc.close()
        asyncio.run(main())
        self.assertEqual(got, ["foo.ok"])
        self.assertEqual(len(errors), 1)
        self.assertIn('permissions violation for publish to "foo.secret"', errors[0].lower())


if __name__ == "__main__":
    unittest.main()
