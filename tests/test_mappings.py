"""Top-level `mappings { }`, black-box: real gnatsd.py processes, nats-py
and raw-socket clients, and nats-server 2.15.1 on the same config for the
subjects it delivers (partition numbers included). Counts are exact; every
wait has a timeout."""

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import unittest

from tests.util import (flushed, GNATSD, GO_SERVER_215, HAVE_GO_215, RawClient, ServerProcess,
                        dependency_missing, wait_for)

try:
    import nats
except ImportError:
    nats = None

CONFIG = """
mappings {
  "wc.*.*": "out.wc.$2.{{wildcard(1)}}"
  "part.*.*": "out.part.{{partition(10,1,2)}}.{{Partition(3, 2)}}"
  "partall.*.*": "out.partall.{{partition(5)}}"
  "split.*": "out.split.{{split(1,-)}}"
  "sfl.*": "out.sfl.{{SplitFromLeft(1,3)}}"
  "sfr.*": "out.sfr.{{splitfromright(1,3)}}"
  "sll.*": "out.sll.{{slicefromleft(1,3)}}"
  "slr.*": "out.slr.{{SliceFromRight(1,3)}}"
  "left.*": "out.left.{{left(1,2)}}"
  "right.*": "out.right.{{right(1,2)}}"
  "fwc.*.>": "out.fwc.$1.>"
  "foo": "out.bar"
  "w": [ {destination: "out.w1", weight: 50%}, {destination: "out.w2", weight: 50%} ]
  "lossy": [ {destination: "lossy", weight: 0} ]
}
"""

SUBJECTS = ["wc.a.b", "part.x.y", "part.abc.def", "part.1.2", "part.user-17.eu", "part.user-18.eu",
            "partall.a.b", "partall.hello.world", "split.-a--b-c-", "split.abc", "split.a-b",
            "sfl.abcdefg", "sfl.ab", "sfr.abcdefg", "sll.abcdefgh", "sll.ab", "slr.abcdefgh",
            "slr.abcdef", "left.abcd", "right.abcd", "right.a", "fwc.x.y.z", "fwc.x.y", "foo",
            "not.mapped"]


def needs_natspy(test):
    if nats is None:
        dependency_missing(test, "nats-py is not installed")


async def collect(port, publish, subject=">", expect=None, timeout=10.0, headers=None):
    """Subscribe to `subject`, publish each (subject, payload) of `publish`
    from another connection, and return the (subject, payload) received:
    `expect` of them, or whatever arrived by a flush round trip."""
    sub_nc = await nats.connect("nats://127.0.0.1:%d" % port)
    pub_nc = await nats.connect("nats://127.0.0.1:%d" % port)
    got = []
    done = asyncio.Event()

    async def cb(m):
        got.append((m.subject, m.data, dict(m.headers or {})))
        if expect is not None and len(got) >= expect:
            done.set()
    await sub_nc.subscribe(subject, cb=cb)
    await flushed(sub_nc)
    for s, data in publish:
        await pub_nc.publish(s, data, headers=headers)
    await flushed(pub_nc)
    if expect is not None:
        await asyncio.wait_for(done.wait(), timeout)
    await flushed(sub_nc)
    await asyncio.sleep(0.2)      # anything beyond the count would show up here
    await pub_nc.close()
    await sub_nc.close()
    return got


class MappedDelivery(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = ServerProcess(config=CONFIG)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def setUp(self):
        needs_natspy(self)

    def deliveries(self, srv):
        got = asyncio.run(collect(srv.port, [(s, s.encode()) for s in SUBJECTS],
                                  expect=len(SUBJECTS)))
        return sorted((data.decode(), subj) for subj, data, _ in got)

    def test_subjects_as_nats_server_maps_them(self):
        ours = self.deliveries(self.srv)
        self.assertEqual(len(ours), len(SUBJECTS))
        want = {"wc.a.b": "out.wc.b.a", "part.x.y": "out.part.2.1", "split.-a--b-c-": "out.split.a.b.c",
                "fwc.x.y.z": "out.fwc.x.y.z", "foo": "out.bar", "not.mapped": "not.mapped",
                "slr.abcdefgh": "out.slr.ab.cde.fgh", "left.abcd": "out.left.ab"}
        for orig, mapped in ours:
            if orig in want:
                self.assertEqual(mapped, want[orig], orig)
        if not HAVE_GO_215:
            dependency_missing(self, "nats-server 2.15 not found at %s" % GO_SERVER_215)
        with ServerProcess(config=CONFIG, exe=GO_SERVER_215) as go:
            self.assertEqual(self.deliveries(go), ours)

    def test_repeated_publishes_and_sizes(self):
        # the same line (the parse loop's cache) and varying sizes (scache)
        pubs = [("foo", b"x")] * 500 + [("foo", b"y" * (i % 7)) for i in range(500)]
        got = asyncio.run(collect(self.srv.port, pubs, subject=">", expect=1000))
        self.assertEqual(len(got), 1000)
        self.assertEqual({s for s, _, _ in got}, {"out.bar"})
        self.assertEqual([d for _, d, _ in got], [d for _, d in pubs])

    def test_headers_are_mapped_too(self):
        got = asyncio.run(collect(self.srv.port, [("wc.1.2", b"h")] * 3, expect=3,
                                  headers={"X-K": "v"}))
        self.assertEqual([(s, d, h) for s, d, h in got], [("out.wc.2.1", b"h", {"X-K": "v"})] * 3)

    def test_weighted_split(self):
        n = 2000
        got = asyncio.run(collect(self.srv.port, [("w", b"")] * n, subject="out.*", expect=n))
        self.assertEqual(len(got), n)
        counts = {"out.w1": 0, "out.w2": 0}
        for s, _, _ in got:
            counts[s] += 1
        # 50% each: a standard deviation is ~22 messages; 200 is 9 of them
        for k, v in counts.items():
            self.assertLess(abs(v - n // 2), 200, counts)

    def test_loss_mapping_delivers_nothing_and_requests_get_no_responders(self):
        async def run():
            nc = await nats.connect("nats://127.0.0.1:%d" % self.srv.port)
            got = []

            async def cb(m):
                got.append(m.subject)
            await nc.subscribe(">", cb=cb)
            for _ in range(5):
                await nc.publish("lossy", b"")
            await flushed(nc)
            req = await nats.connect("nats://127.0.0.1:%d" % self.srv.port)
            with self.assertRaises(nats.errors.NoRespondersError):
                await req.request("lossy", b"", timeout=5)
            await req.close()
            await flushed(nc)
            await nc.close()
            return got
        got = asyncio.run(run())
        self.assertEqual([s for s in got if not s.startswith("_INBOX.")], [])

    def test_raw_protocol(self):
        c = RawClient(self.srv.port)
        self.addCleanup(c.close)
        c.send(b"SUB out.> 1\r\nSUB foo 2\r\nPUB foo 2\r\nhi\r\nPUB foo 2\r\nho\r\n")
        msgs = c.drain()
        self.assertEqual(msgs, [(b"MSG", [b"out.bar", b"1", b"2"], b"hi"),
                                (b"MSG", [b"out.bar", b"1", b"2"], b"ho")])


PERMS = """
mappings { "pm.*": "denied.$1", "ok": "allowed" }
authorization { users = [
  {user: a, password: a, permissions: { publish: ["pm.*", "ok", "allowed"] }}
  {user: b, password: b}
] }
"""


class PermissionsApplyToTheMappedSubject(unittest.TestCase):
    """nats-server maps in its parser, before the publish permission check."""

    def lines(self, srv):
        a = RawClient(srv.port, connect=b'{"verbose":false,"pedantic":false,"user":"a","pass":"a"}')
        b = RawClient(srv.port, connect=b'{"verbose":false,"pedantic":false,"user":"b","pass":"b"}')
        try:
            b.send(b"SUB > 1\r\n")
            b.ping()
            a.send(b"PUB pm.1 1\r\nx\r\nPUB ok 1\r\ny\r\n")
            errs = a.ping()
            return errs, b.drain()
        finally:
            a.close()
            b.close()

    def test_denied_and_allowed(self):
        with ServerProcess(config=PERMS) as srv:
            errs, msgs = self.lines(srv)
        # pm.1 is granted but maps to denied.1, which is not; ok -> allowed is
        self.assertEqual(errs, b"-ERR 'Permissions Violation for Publish to \"denied.1\"'\r\n")
        self.assertEqual(msgs, [(b"MSG", [b"allowed", b"1", b"1"], b"y")])
        if not HAVE_GO_215:
            dependency_missing(self, "nats-server 2.15 not found at %s" % GO_SERVER_215)
        with ServerProcess(config=PERMS, exe=GO_SERVER_215) as go:
            go_errs, go_msgs = self.lines(go)
        self.assertEqual(go_msgs, msgs)
        self.assertEqual(go_errs, errs)


class Reload(unittest.TestCase):
    def setUp(self):
        needs_natspy(self)

    def test_sighup_changes_the_mappings(self):
        with ServerProcess(config='mappings { "foo": "bar" }\n') as srv:
            got = asyncio.run(collect(srv.port, [("foo", b"1")], expect=1))
            self.assertEqual([s for s, _, _ in got], ["bar"])
            with open(srv.config_path, "w") as f:
                f.write('mappings { "foo": "baz.$1" }\n')       # refused: $1 out of range
            srv.signal(signal.SIGHUP)
            self.assertTrue(srv.wait_log(r"Failed to reload server configuration: .*"
                                         r'Error adding mapping for "foo" to "baz.\$1"', 10))
            got = asyncio.run(collect(srv.port, [("foo", b"2")], expect=1))
            self.assertEqual([s for s, _, _ in got], ["bar"])        # the old ones stay
            with open(srv.config_path, "w") as f:
                f.write('mappings { "foo": "baz" }\n')
            srv.signal(signal.SIGHUP)
            self.assertTrue(srv.wait_log(r"Reloaded: accounts", 10))
            self.assertTrue(wait_for(lambda: srv.output().count("Reloaded server configuration") >= 1, 10))
            got = asyncio.run(collect(srv.port, [("foo", b"3")] * 3, expect=3))
            self.assertEqual([s for s, _, _ in got], ["baz"] * 3)
            with open(srv.config_path, "w") as f:
                f.write("\n")
            srv.signal(signal.SIGHUP)
            self.assertTrue(wait_for(lambda: srv.output().count("Reloaded server configuration") >= 2, 10))
            got = asyncio.run(collect(srv.port, [("foo", b"4")], expect=1))
            self.assertEqual([s for s, _, _ in got], ["foo"])

    def test_a_connected_publisher_sees_the_change(self):
        # a publisher's cached PUB lines hold the old mapping: a reload must
        # make it resolve them again
        with ServerProcess(config='mappings { "foo": "bar" }\n') as srv:
            c = RawClient(srv.port)
            self.addCleanup(c.close)
            c.send(b"SUB > 1\r\nPUB foo 1\r\nx\r\n")
            self.assertEqual([m[1][0] for m in c.drain()], [b"bar"])
            with open(srv.config_path, "w") as f:
                f.write('mappings { "foo": "qux" }\n')
            srv.signal(signal.SIGHUP)
            self.assertTrue(srv.wait_log(r"Reloaded server configuration", 10))
            c.send(b"PUB foo 1\r\nx\r\n")
            self.assertEqual([m[1][0] for m in c.drain()], [b"qux"])


class ConfigErrors(unittest.TestCase):
    def test_bad_mapping_stops_the_start(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bad.conf")
            with open(path, "w") as f:
                f.write('port: -1\nmappings {\n  "a.*": "b.{{nope(1)}}"\n}\n')
            p = subprocess.run([sys.executable, GNATSD, "-c", path], capture_output=True,
                               timeout=30, text=True)
        self.assertNotEqual(p.returncode, 0)
        out = p.stdout + p.stderr
        self.assertIn('bad.conf:3:3: Error adding mapping for "a.*" to "b.{{nope(1)}}" : '
                      "invalid mapping destination: unknown function in {{nope(1)}}", out)
        self.assertNotIn("Traceback", out)


class Cluster(unittest.TestCase):
    """Mapped where the client published: the route carries the mapped
    subject, and a message arriving over a route is not mapped again (Go
    maps only client and leaf input)."""

    def setUp(self):
        needs_natspy(self)

    def test_mapped_at_the_origin_only(self):
        a = ServerProcess("--cluster", "nats://127.0.0.1:-1", config='mappings { "foo": "bar" }\n')
        self.addCleanup(a.stop)
        b = ServerProcess("--cluster", "nats://127.0.0.1:-1", "--routes",
                          "nats://127.0.0.1:%d" % a.cluster_port)
        self.addCleanup(b.stop)
        self.assertTrue(a.wait_log(r"Route connection created", 10))

        async def run():
            na = await nats.connect("nats://127.0.0.1:%d" % a.port)
            nb = await nats.connect("nats://127.0.0.1:%d" % b.port)
            on_a, on_b = [], []

            async def cba(m):
                on_a.append(m.subject)

            async def cbb(m):
                on_b.append(m.subject)
            await na.subscribe("*", cb=cba)
            await nb.subscribe("*", cb=cbb)
            await flushed(na)
            await flushed(nb)
            # interest crosses the route asynchronously: retry until seen
            for _ in range(100):
                await na.publish("probe", b"")
                await nb.publish("probe", b"")
                await flushed(na)
                await flushed(nb)
                await asyncio.sleep(0.1)
                if on_a.count("probe") >= 2 and on_b.count("probe") >= 2:
                    break
            on_a.clear()
            on_b.clear()
            await na.publish("foo", b"from-a")     # mapped on a
            await nb.publish("foo", b"from-b")     # b has no mappings
            await flushed(na)
            await flushed(nb)
            for _ in range(100):
                if len(on_a) >= 2 and len(on_b) >= 2:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            await na.close()
            await nb.close()
            return sorted(on_a), sorted(on_b)
        on_a, on_b = asyncio.run(run())
        self.assertEqual(on_a, ["bar", "foo"])
        self.assertEqual(on_b, ["bar", "foo"])


if __name__ == "__main__":
    unittest.main()
