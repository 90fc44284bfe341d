"""gnats.permissions: the permission model (unit tests), and the same rules asked
of the Go nats-server over a socket when its binaries are installed, so that
every verdict and error line is compared with the reference."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from gnats import permissions as pm
from gnats.permissions import PermissionSpec, ResponseRule, SubjectRule

from tests.util import GO_SERVER, GO_SERVER_215, free_port, needs, wait_port


def perms(pub=None, sub=None, resp=None):
    def rule(r):
        if r is None or isinstance(r, SubjectRule):
            return r
        return SubjectRule(allow=tuple(r))
    return pm.Permissions(PermissionSpec(rule(pub), rule(sub), resp))


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class TestPublish(unittest.TestCase):
    def test_no_rules_allow_everything(self):
        p = perms()
        self.assertFalse(p.checks_publish)
        self.assertTrue(p.can_publish("any.thing"))
        self.assertTrue(p.can_subscribe(">"))
        self.assertTrue(p.can_subscribe("a", "q"))

    def test_allow_list_with_wildcards(self):
        p = perms(pub=["foo.*", "bar.>", "baz"])
        for s in ("foo.x", "bar.x", "bar.x.y", "baz"):
            self.assertTrue(p.can_publish(s), s)
        for s in ("foo", "foo.x.y", "bar", "baz.x", "qux", "foox"):
            self.assertFalse(p.can_publish(s), s)

    def test_deny_wins_over_allow(self):
        p = perms(pub=SubjectRule(allow=("a.>",), deny=("a.secret", "a.*.hidden")))
        self.assertTrue(p.can_publish("a.open"))
        self.assertFalse(p.can_publish("a.secret"))
        self.assertFalse(p.can_publish("a.x.hidden"))
        self.assertTrue(p.can_publish("a.x.shown"))
        self.assertFalse(p.can_publish("b"))

    def test_deny_only(self):
        p = perms(pub=SubjectRule(deny=(">",)))
        self.assertFalse(p.can_publish("x"))
        p = perms(pub=SubjectRule(deny=("$SYS.>",)))
        self.assertTrue(p.can_publish("x"))
        self.assertFalse(p.can_publish("$SYS.REQ"))

    def test_empty_allow_list_allows_nothing(self):
        # what allow_responses without publish rules compiles to (opts.go)
        p = perms(pub=SubjectRule(allow=()))
        self.assertTrue(p.checks_publish)
        self.assertFalse(p.can_publish("x"))


class TestSubscribe(unittest.TestCase):
    def test_subject_is_matched_as_a_literal(self):
        p = perms(sub=["foo.*", "bar.>", "baz.qux"])
        self.assertTrue(p.can_subscribe("foo.x"))
        self.assertTrue(p.can_subscribe("foo.*"))      # '*' rule covers a '*' token
        self.assertTrue(p.can_subscribe("foo.>"))      # ... and, as Go, a '>' token
        self.assertTrue(p.can_subscribe("bar.>"))
        self.assertTrue(p.can_subscribe("bar.*.x"))
        self.assertFalse(p.can_subscribe("baz.*"))     # literal rule: no wildcard sub
        self.assertFalse(p.can_subscribe(">"))
        self.assertFalse(p.can_subscribe("foo.x.y"))

    def test_empty_allow_list_means_no_allow_list(self):
        p = pm.Permissions(PermissionSpec(subscribe=SubjectRule(allow=())))
        self.assertTrue(p.can_subscribe("anything"))

    def test_queue_entry_allows_that_queue_only(self):
        p = perms(sub=["foo.> workers"])
        self.assertTrue(p.can_subscribe("foo.x", "workers"))
        self.assertFalse(p.can_subscribe("foo.x", "others"))
        self.assertFalse(p.can_subscribe("foo.x"))       # not a plain subscription
        self.assertFalse(p.can_subscribe("bar", "workers"))

    def test_plain_entry_allows_any_queue_unless_a_queue_entry_matches(self):
        p = perms(sub=["foo.>"])
        self.assertTrue(p.can_subscribe("foo.x", "any"))
        # a matching queue entry decides for queue subscriptions (Go's rule)
        p = perms(sub=["foo.>", "foo.x workers"])
        self.assertTrue(p.can_subscribe("foo.x", "workers"))
        self.assertFalse(p.can_subscribe("foo.x", "others"))
        self.assertTrue(p.can_subscribe("foo.y", "others"))
        self.assertTrue(p.can_subscribe("foo.x"))

    def test_wildcard_queue_names(self):
        p = perms(sub=["foo v1.*", "bar v2.>"])
        self.assertTrue(p.can_subscribe("foo", "v1.a"))
        self.assertTrue(p.can_subscribe("foo", "v1.*"))  # the literal name too
        self.assertFalse(p.can_subscribe("foo", "v1.a.b"))
        self.assertTrue(p.can_subscribe("bar", "v2.a.b"))
        self.assertFalse(p.can_subscribe("bar", "v3"))

    def test_deny(self):
        p = perms(sub=SubjectRule(allow=(">",), deny=("secret.>", "jobs.* slackers")))
        self.assertFalse(p.can_subscribe("secret.x"))
        self.assertFalse(p.can_subscribe("secret.x", "q"))   # plain deny: every queue
        self.assertTrue(p.can_subscribe("jobs.a"))          # queue deny: not plain subs
        self.assertTrue(p.can_subscribe("jobs.a", "workers"))
        self.assertFalse(p.can_subscribe("jobs.a", "slackers"))
        # the subscription's subject is matched as a literal against deny too
        self.assertFalse(p.can_subscribe("secret.*"))        # under "secret.>"
        self.assertTrue(p.can_subscribe("*.x"))              # overlaps, not under

    def test_delivery_filter(self):
        p = perms(sub=SubjectRule(allow=(">",), deny=("foo.bad", "jobs.* slackers")))
        self.assertTrue(p.needs_delivery_filter("foo.*"))
        self.assertTrue(p.needs_delivery_filter(">"))
        self.assertFalse(p.needs_delivery_filter("bar.*"))
        self.assertFalse(p.needs_delivery_filter("foo.good"))     # literal: no overlap possible
        self.assertTrue(p.needs_delivery_filter("jobs.a", "slackers"))
        cp = pm.ConnectionPermissions(p)
        self.assertTrue(cp.can_subscribe("foo.*"))
        self.assertIsNotNone(cp.deny_filter)
        self.assertFalse(cp.on_delivery("foo.bad"))
        self.assertTrue(cp.on_delivery("foo.good"))
        self.assertFalse(cp.on_delivery("jobs.a", "slackers"))
        self.assertTrue(cp.on_delivery("jobs.a", "workers"))
        self.assertFalse(cp.on_delivery("foo.bad"))                # cached verdict

    def test_subjects_collide(self):
        for a, b, want in (("foo.*", "foo.bar", True), ("foo.>", "foo", False),
                           ("foo.*", "*.bar", True), ("foo.*", "foo.a.b", False),
                           (">", "a.b.c", True), ("a.>", "*.b", True),
                           ("a.b", "a.c", False), ("a.*.c", "a.>", True)):
            self.assertEqual(pm.subjects_collide(a, b), want, (a, b))
            self.assertEqual(pm.subjects_collide(b, a), want, (b, a))


class TestErrorText(unittest.TestCase):
    def test_lines(self):
        self.assertEqual(pm.publish_violation("x.secret"),
                         'Permissions Violation for Publish to "x.secret"')
        self.assertEqual(pm.subscribe_violation("foo.bad"),
                         'Permissions Violation for Subscription to "foo.bad"')
        self.assertEqual(pm.subscribe_violation("q.a", "other"),
                         'Permissions Violation for Subscription to "q.a" using queue "other"')

    def test_log_lines(self):
        # as nats-server 2.15.1 logs them after its connection prefix
        self.assertEqual(pm.publish_violation_log("x.secret"),
                         'Publish Violation - Subject "x.secret"')
        self.assertEqual(pm.subscribe_violation_log("q.a", "other", "2"),
                         'Subscription Violation - Subject "q.a", Queue: "other", SID 2')
        self.assertEqual(pm.subscribe_violation_log("foo.bad", None, "3"),
                         'Subscription Violation - Subject "foo.bad", SID 3')

    def test_go_quote(self):
        self.assertEqual(pm.go_quote('"quo'), '"\\"quo"')
        self.assertEqual(pm.go_quote("a\\b"), '"a\\\\b"')
        self.assertEqual(pm.go_quote("a\x01\x7f"), '"a\\x01\\x7f"')
        self.assertEqual(pm.go_quote("caf\u00e9"), '"caf\u00e9"')
        self.assertEqual(pm.go_quote("\t"), '"\\t"')
        self.assertEqual(pm.go_quote("\u200b"), '"\\u200b"')


class TestPublishCache(unittest.TestCase):
    def test_bounded_in_entries(self):
        c = pm.PublishCache(max_entries=4, max_bytes=1000)
        for i in range(10):
            c.put("s.%d" % i, True)
        self.assertEqual(len(c), 4)
        self.assertIsNone(c.get("s.0"))
        self.assertTrue(c.get("s.9"))

    def test_bounded_in_bytes(self):
        c = pm.PublishCache(max_entries=1000, max_bytes=100)
        for i in range(10):
            c.put(("%02d" % i) * 15, False)           # 30 bytes each
        self.assertLessEqual(c.bytes, 100)
        self.assertEqual(len(c), 3)
        c.put("x" * 101, True)                       # bigger than the bound: not kept
        self.assertIsNone(c.get("x" * 101))
        self.assertEqual(len(c), 3)
        self.assertEqual(c.bytes, sum(len(k) for k in c.data))

    def test_connection_caches_verdicts_bounded(self):
        cp = pm.ConnectionPermissions(perms(pub=["ok.>"]))
        for i in range(1000):
            self.assertEqual(cp.can_publish("ok.%d" % i), True)
            self.assertEqual(cp.can_publish("no.%d" % i), False)
        self.assertLessEqual(len(cp.pub_cache), pm.PUB_CACHE_ENTRIES)
        self.assertLessEqual(cp.pub_cache.bytes, pm.PUB_CACHE_BYTES)
        long_subject = "ok." + "x" * 5000
        for i in range(100):
            cp.can_publish(long_subject + str(i))
        self.assertLessEqual(cp.pub_cache.bytes, pm.PUB_CACHE_BYTES)

    def test_unrestricted_connection_keeps_no_cache(self):
        cp = pm.ConnectionPermissions(perms(sub=["a"]))
        self.assertTrue(cp.can_publish("x"))
        self.assertEqual(len(cp.pub_cache), 0)


class TestResponses(unittest.TestCase):
    def conn(self, rule, pub=None):
        self.clock = FakeClock()
        p = perms(pub=SubjectRule(allow=tuple(pub or ())), resp=rule)
        return pm.ConnectionPermissions(p, clock=self.clock)

    def test_default_one_response(self):
        cp = self.conn(ResponseRule())
        self.assertEqual((ResponseRule().max_msgs, ResponseRule().expires), (1, 120.0))
        self.assertFalse(cp.can_publish("_INBOX.a"))
        self.assertTrue(cp.on_delivery("svc", reply="_INBOX.a"))
        self.assertTrue(cp.can_publish("_INBOX.a"))
        self.assertFalse(cp.can_publish("_INBOX.a"))      # used up
        self.assertFalse(cp.can_publish("_INBOX.b"))

    def test_max_messages(self):
        cp = self.conn(ResponseRule(max_msgs=3, expires=60))
        cp.on_delivery("svc", reply="r.1")
        self.assertEqual([cp.can_publish("r.1") for _ in range(5)],
                         [True, True, True, False, False])

    def test_expiry(self):
        cp = self.conn(ResponseRule(max_msgs=10, expires=60))
        cp.on_delivery("svc", reply="r.1")
        self.clock.now += 59
        self.assertTrue(cp.can_publish("r.1"))
        self.clock.now += 2
        self.assertFalse(cp.can_publish("r.1"))
        self.assertEqual(len(cp.responses), 0)

    def test_negative_means_unlimited(self):
        cp = self.conn(ResponseRule(max_msgs=-1, expires=-1))
        cp.on_delivery("svc", reply="r.1")
        self.clock.now += 10 ** 6
        self.assertTrue(all(cp.can_publish("r.1") for _ in range(100)))

    def test_no_grant_when_already_allowed(self):
        cp = self.conn(ResponseRule(), pub=["_INBOX.>"])
        cp.on_delivery("svc", reply="_INBOX.x")
        self.assertEqual(len(cp.responses), 0)
        self.assertTrue(cp.can_publish("_INBOX.x"))

    def test_denials_not_cached_while_grants_can_come(self):
        cp = self.conn(ResponseRule())
        self.assertFalse(cp.can_publish("r.1"))
        cp.on_delivery("svc", reply="r.1")
        self.assertTrue(cp.can_publish("r.1"))

    def test_grants_bounded(self):
        self.clock = FakeClock()
        g = pm.ResponseGrants(ResponseRule(max_msgs=1, expires=60), clock=self.clock,
                              max_entries=100, max_bytes=10_000)
        for i in range(1000):
            g.record("reply.%d" % i)
        self.assertEqual(len(g), 100)
        self.assertTrue(g.use("reply.999"))
        self.assertFalse(g.use("reply.0"))              # evicted, oldest first
        for i in range(200):
            g.record("r" * 200 + str(i))
        self.assertLessEqual(g.grants.bytes, 10_000)
        # expired grants go before live ones when the bound is hit
        g2 = pm.ResponseGrants(ResponseRule(max_msgs=5, expires=10), clock=self.clock,
                               max_entries=3, max_bytes=10_000)
        g2.record("old")
        self.clock.now += 11
        g2.record("a")
        g2.record("b")
        g2.record("c")
        self.assertEqual(sorted(g2.grants.data), ["a", "b", "c"])


# --- the same rules asked of nats-server ------------------------------------------

GO_SERVERS = [b for b in (GO_SERVER_215, GO_SERVER or "")
              if b and os.access(b, os.X_OK)]

ORACLE_PERMS = {
    "publish": {"allow": ["x.>", "y.*", "z"], "deny": ["x.secret", "x.*.hidden"]},
    "subscribe": {"allow": ["q.> workers", "foo.*", "bar.>", "plain", "both.>", "both.x grp",
                            "wq v1.*"],
                  "deny": ["foo.bad", "bar.no.>", "both.> slackers"]},
}
PUB_CASES = ["x.a", "x.secret", "x.a.hidden", "x.a.b", "y.a", "y.a.b", "z", "z.a", "w", "x"]
SUB_CASES = [("q.a", "workers"), ("q.a", "other"), ("q.a", None), ("foo.a", None),
             ("foo.bad", None), ("foo.*", None), ("foo.>", None), ("foo.bad", "g"),
             ("bar.a", None), ("bar.no.x", None), ("bar.*", None), ("bar.no.*", "g"),
             ("plain", None), ("plain", "g"), ("plain.*", None), (">", None),
             ("both.x", "grp"), ("both.x", "other"), ("both.y", "other"), ("both.y", None),
             ("both.y", "slackers"), ("both.x", None), ("wq", "v1.a"), ("wq", "v1.a.b"),
             ("wq", "v1.*"), ("wq", None)]


def _conf_list(items):
    return "[%s]" % ", ".join('"%s"' % i for i in items)


@needs(len(GO_SERVERS) == 2, "nats-server 2.9 and 2.15 (GNATSD_GO215_SERVER) both needed")
class TestAgainstNatsServer(unittest.TestCase):
    """Each case as SUB/PUB + PING on one connection: an -ERR before the PONG
    is a denial. Our model must give the same verdicts and the same lines."""

    def run_server(self, binary):
        port = free_port()
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        pub, sub = ORACLE_PERMS["publish"], ORACLE_PERMS["subscribe"]
        conf = os.path.join(d, "perms.conf")
        with open(conf, "w") as f:
            f.write("listen: 127.0.0.1:%d\nauthorization { users = [ {user: a, password: b, "
                    "permissions: {publish: {allow: %s, deny: %s}, subscribe: {allow: %s, "
                    "deny: %s}}} ] }\n" % (port, _conf_list(pub["allow"]), _conf_list(pub["deny"]),
                                          _conf_list(sub["allow"]), _conf_list(sub["deny"])))
        proc = subprocess.Popen([binary, "-c", conf], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.addCleanup(proc.wait, 10)
        self.addCleanup(proc.kill)
        self.assertTrue(wait_port(port, 10), binary)
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.addCleanup(s.close)
        self.buf = b""
        self.sock = s
        self.read_line()                                    # INFO
        s.sendall(b'CONNECT {"user":"a","pass":"b","verbose":false}\r\nPING\r\n')
        self.assertEqual(self.read_line(), b"PONG")

    def read_line(self):
        deadline = time.monotonic() + 5
        while b"\r\n" not in self.buf:
            self.assertLess(time.monotonic(), deadline, "no reply from the Go server")
            chunk = self.sock.recv(65536)
            self.assertTrue(chunk, "Go server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def ask(self, command: bytes):
        """The -ERR line the command caused, or None."""
        self.sock.sendall(command + b"PING\r\n")
        err = None
        while True:
            line = self.read_line()
            if line == b"PONG":
                return err
            if line.startswith(b"-ERR"):
                err = line.decode()

    def test_same_verdicts_and_lines(self):
        spec = PermissionSpec(
            publish=SubjectRule(tuple(ORACLE_PERMS["publish"]["allow"]),
                                tuple(ORACLE_PERMS["publish"]["deny"])),
            subscribe=SubjectRule(tuple(ORACLE_PERMS["subscribe"]["allow"]),
                                  tuple(ORACLE_PERMS["subscribe"]["deny"])))
        ours = pm.Permissions(spec)
        denied = [s for s in PUB_CASES if not ours.can_publish(s)]
        self.assertTrue(0 < len(denied) < len(PUB_CASES))
        denied = [c for c in SUB_CASES if not ours.can_subscribe(*c)]
        self.assertTrue(8 < len(denied) < len(SUB_CASES) - 8, denied)
        for binary in GO_SERVERS:
            with self.subTest(binary=binary):
                self.run_server(binary)
                for subj in PUB_CASES:
                    err = self.ask(b"PUB %s 0\r\n\r\n" % subj.encode())
                    want = None if ours.can_publish(subj) else \
                        "-ERR '%s'" % pm.publish_violation(subj)
                    self.assertEqual(err, want, (binary, "PUB", subj))
                for sid, (subj, queue) in enumerate(SUB_CASES, 1):
                    cmd = "SUB %s %s%d\r\n" % (subj, queue + " " if queue else "", sid)
                    err = self.ask(cmd.encode())
                    want = None if ours.can_subscribe(subj, queue) else \
                        "-ERR '%s'" % pm.subscribe_violation(subj, queue)
                    self.assertEqual(err, want, (binary, cmd))


if __name__ == "__main__":
    unittest.main()
