"""JetStream mirrors and sources from another account (`external` API and
deliver prefixes through exports and imports), black-box: nats-py against
`python3 gnatsd.py -js` and the same tests against nats-server 2.15.1
(/opt/ns/bin/nats-server), so the expectations stay true of the reference.

Account A holds the origin and exports its JetStream API, the flow-control
replies and the deliver subjects; account B imports them (the API under
`JS.A.API`) and holds the copies. The STREAM.INFO shapes and the error body
below were captured from nats-server 2.15.1 with this config (2026-11-29).
nats-server sets up the consumer of a copy with a jitter and retries with a
back-off of seconds, so the waits are generous.
"""

import asyncio
import shutil
import tempfile
import time
import unittest

from tests.test_js_sourcing import JsApiHelpers, stream_identity as go_hash
from tests.util import flushed, free_port, GO_SERVER_215, HAVE_GO_215, ServerProcess, needs

try:
    import nats
except ImportError:     # pragma: no cover
    nats = None

WAIT = 60.0
API = "JS.A.API"
DELIVER = "dlv.A"
EXT = {"api": API, "deliver": DELIVER}

CONFIG = """
accounts {
  A: {
    jetstream: enabled
    users: [{user: a, password: a}]
    exports: [
      {service: "$JS.API.>"}
      {service: "$JS.FC.>"}
      {stream: "dlv.A.>"}
    ]
  }
  B: {
    jetstream: enabled
    users: [{user: b, password: b}]
    imports: [
      {service: {account: A, subject: "$JS.API.>"}, to: "JS.A.API.>"}
      {service: {account: A, subject: "$JS.FC.>"}}
      {stream: {account: A, subject: "dlv.A.>"}}
    ]
  }
}
"""

class Helpers(JsApiHelpers):
    """JetStream API requests and waits (a TestCase mixin)."""

    @staticmethod
    def source_header(m):
        for line in m["hdrs"].split(b"\r\n"):
            if line.startswith(b"Nats-Stream-Source:"):
                return line.split(b":", 1)[1].strip().decode()
        return None


class ExternalBehaviour(Helpers):
    """The tests, run against one server per test (`exe`: None for ours)."""
    exe = None

    def setUp(self):
        self.store = tempfile.mkdtemp(prefix="js-external-")
        self.addCleanup(shutil.rmtree, self.store, True)
        self.srv = self.start()

    def start(self):
        srv = ServerProcess("-js", "-sd", self.store, config=CONFIG, exe=self.exe)
        self.addCleanup(srv.stop)
        return srv

    def js_test(self, body, srv=None):
        srv = srv or self.srv

        async def go():
            url = "nats://%s@127.0.0.1:%d"
            a = await nats.connect(url % ("a:a", srv.port), connect_timeout=5, max_reconnect_attempts=0)
            b = await nats.connect(url % ("b:b", srv.port), connect_timeout=5, max_reconnect_attempts=0)
            try:
                return await body(a, b)
            finally:
                await a.close()
                await b.close()
        return asyncio.run(asyncio.wait_for(go(), 4 * WAIT))

    # -- mirror ------------------------------------------------------------------
    def test_mirror_from_another_account(self):
        async def body(a, b):
            ja = a.jetstream()
            await self.create(a, "O", subjects=["o.>"])
            for i in range(10):
                await ja.publish("o.%d" % (i % 3), b"early-%d" % i, headers={"H": str(i)})
            await ja.delete_msg("O", 4)
            r = await self.create(b, "M", mirror={"name": "O", "external": EXT})
            self.assertEqual(r["config"]["mirror"], {"name": "O", "external": EXT})
            # new messages keep flowing, some large enough for flow control
            for i in range(10, 25):
                await ja.publish("o.%d" % (i % 3), b"late-%d" % i)
            big = b"x" * 8192
            for i in range(25, 325):
                await ja.publish("o.big", big + b"%d" % i)
            m = await self.wait_info(b, "M", lambda r: r["state"]["last_seq"] >= 325, "last_seq 325")
            self.assertEqual((m["state"]["last_seq"], m["state"]["messages"]), (325, 324))
            origin = await self.all_msgs(a, "O")
            mirror = await self.all_msgs(b, "M")
            self.assertEqual(len(origin), 324)
            # same sequences, subjects, headers, payloads and times
            self.assertEqual(mirror, origin)
            info = await self.wait_info(b, "M", lambda r: r["mirror"]["lag"] == 0, "lag 0")
            blk = info["mirror"]
            self.assertEqual(sorted(blk), ["active", "external", "lag", "name"])
            self.assertEqual((blk["name"], blk["external"], blk["lag"]), ("O", EXT, 0))
            self.assertGreaterEqual(blk["active"], 0)
            # the copy's consumer is kept out of the origin's counts and lists
            o = await self.info(a, "O")
            self.assertEqual(o["state"]["consumer_count"], 0)
            r = await self.req(a, "$JS.API.CONSUMER.NAMES.O")
            self.assertEqual(r["consumers"], [])
        self.js_test(body)

    def test_filtered_mirror_skips_a_long_run_of_origin_sequences(self):
        # 25,000 sequences the filter leaves out between two copies: the
        # mirror's sequences stay the origin's
        async def body(a, b):
            ja = a.jetstream()
            await self.create(a, "O", subjects=["o.>"])
            await self.create(b, "M", mirror={"name": "O", "filter_subject": "o.b", "external": EXT})
            await ja.publish("o.b", b"first")
            await self.wait_info(b, "M", lambda r: r["state"]["messages"] >= 1, "the first copy")
            for i in range(25000):
                await a.publish("o.a", b"%d" % i)
            await flushed(a)
            await self.wait_info(a, "O", lambda r: r["state"]["messages"] >= 25001, "25,001 in the origin")
            await ja.publish("o.b", b"second")
            m = await self.wait_info(b, "M", lambda r: r["state"]["messages"] >= 2, "the second copy")
            self.assertEqual((m["state"]["messages"], m["state"]["first_seq"], m["state"]["last_seq"]),
                             (2, 1, 25002))
            got = await self.get(b, "M", 25002)
            self.assertEqual((got["subject"], got["data"]), ("o.b", b"second"))
        self.js_test(body)

    # -- sources -----------------------------------------------------------------------
    def test_filtered_source_from_another_account(self):
        async def body(a, b):
            ja, jb = a.jetstream(), b.jetstream()
            o = await self.create(a, "O", subjects=["o.>"])
            for i in range(9):
                await ja.publish("o.%d" % (i % 3), b"m%d" % i)
            await self.create(b, "S", subjects=["s.>"],
                              sources=[{"name": "O", "filter_subject": "o.1", "external": EXT}])
            await self.wait_info(b, "S", lambda r: r["state"]["messages"] >= 3, "3 messages")
            await jb.publish("s.own", b"own")
            for i in range(9, 21):
                await ja.publish("o.%d" % (i % 3), b"m%d" % i)
            r = await self.wait_info(b, "S", lambda r: r["state"]["messages"] >= 8, "8 messages")
            await asyncio.sleep(0.5)
            r = await self.info(b, "S")
            self.assertEqual(r["state"]["messages"], 8)
            msgs = await self.all_msgs(b, "S")
            copied = [m for m in msgs if m["subject"] != "s.own"]
            self.assertEqual([m["data"] for m in copied], [b"m%d" % i for i in range(1, 21, 3)])
            self.assertEqual({m["subject"] for m in copied}, {"o.1"})
            ident = go_hash(o["created"])
            self.assertEqual([self.source_header(m) for m in copied],
                             ["O:%s %d o.1 > o.1 %s" % (go_hash(API), i + 1, ident) for i in range(1, 21, 3)])
            blk = r["sources"][0]
            self.assertEqual(sorted(blk), ["active", "external", "filter_subject", "lag", "name", "seq"])
            self.assertEqual((blk["name"], blk["external"], blk["filter_subject"], blk["seq"], blk["lag"]),
                             ("O", EXT, "o.1", 20, 0))
        self.js_test(body)

    def test_restart_resumes_without_duplicates_or_gaps(self):
        async def first(a, b):
            ja = a.jetstream()
            await self.create(a, "O", subjects=["o.>"])
            await self.create(b, "M", mirror={"name": "O", "external": EXT})
            await self.create(b, "S", sources=[{"name": "O", "external": EXT}])
            for i in range(10):
                await ja.publish("o.%d" % (i % 2), b"a%d" % i)
            await self.wait_info(b, "M", lambda r: r["state"]["last_seq"] >= 10, "last_seq 10")
            await self.wait_info(b, "S", lambda r: r["state"]["messages"] >= 10, "10 messages")
            # and the server stops while these may still be on their way
            for i in range(10, 15):
                await ja.publish("o.%d" % (i % 2), b"a%d" % i)
        self.js_test(first)
        self.srv.stop()
        self.srv = srv = self.start()

        async def second(a, b):
            ja = a.jetstream()
            for i in range(15, 25):
                await ja.publish("o.%d" % (i % 2), b"a%d" % i)
            await self.wait_info(b, "M", lambda r: r["state"]["last_seq"] >= 25, "last_seq 25")
            await self.wait_info(b, "S", lambda r: r["state"]["messages"] >= 25, "25 messages")
            await asyncio.sleep(1.0)    # nothing more arrives (no duplicates)
            m = await self.info(b, "M")
            s = await self.info(b, "S")
            self.assertEqual((m["state"]["messages"], m["state"]["last_seq"]), (25, 25))
            self.assertEqual((s["state"]["messages"], s["state"]["last_seq"]), (25, 25))
            self.assertEqual(await self.all_msgs(b, "M"), await self.all_msgs(a, "O"))
            copied = await self.all_msgs(b, "S")
            self.assertEqual([m["data"] for m in copied], [b"a%d" % i for i in range(25)])
            self.assertEqual([int(self.source_header(m).split(" ")[1]) for m in copied], list(range(1, 26)))
            self.assertEqual(s["sources"][0]["seq"], 25)
        self.js_test(second, srv)

    def test_source_of_a_recreated_origin_starts_over(self):
        # the origin's consumer goes with it: the copy hears nothing for
        # 10 s, asks again with the identity it knew, is told the origin
        # changed (10225) and copies the new origin from its start
        async def body(a, b):
            ja = a.jetstream()
            await self.create(a, "O", subjects=["o.>"])
            await self.create(b, "S", sources=[{"name": "O", "external": EXT}])
            for i in range(5):
                await ja.publish("o.x", b"old-%d" % i)
            await self.wait_info(b, "S", lambda r: r["state"]["messages"] >= 5, "5 messages")
            r = await self.req(a, "$JS.API.STREAM.DELETE.O")
            self.assertTrue(r.get("success"), r)
            o = await self.create(a, "O", subjects=["o.>"])
            for i in range(3):
                await ja.publish("o.x", b"new-%d" % i)
            await self.wait_info(b, "S", lambda r: r["state"]["messages"] >= 8, "8 messages")
            await asyncio.sleep(0.5)
            r = await self.info(b, "S")
            self.assertEqual(r["state"]["messages"], 8)
            self.assertEqual(r["sources"][0]["seq"], 3)
            msgs = await self.all_msgs(b, "S")
            self.assertEqual([m["data"] for m in msgs], [b"old-%d" % i for i in range(5)] +
                             [b"new-%d" % i for i in range(3)])
            ident = go_hash(o["created"])
            self.assertEqual([self.source_header(m) for m in msgs[5:]],
                             ["O:%s %d > > o.x %s" % (go_hash(API), i, ident) for i in (1, 2, 3)])
        self.js_test(body)

    def test_missing_origin_shows_the_far_sides_error_then_copies(self):
        async def body(a, b):
            await self.create(b, "S", subjects=["s.>"], sources=[{"name": "LATER", "external": EXT}])
            r = await self.wait_info(b, "S", lambda r: "error" in r["sources"][0], "an error")
            self.assertEqual(r["sources"][0]["error"], {"code": 404, "err_code": 10059,
                                                        "description": "stream not found"})
            self.assertEqual(r["sources"][0]["active"], -1)
            await self.create(a, "LATER", subjects=["later"])
            await a.jetstream().publish("later", b"at last")
            # the retry backs off (10 s after one failure, as nats-server)
            r = await self.wait_info(b, "S", lambda r: r["state"]["messages"] >= 1, "the copy")
            self.assertEqual(r["state"]["messages"], 1)
            self.assertNotIn("error", r["sources"][0])
        self.js_test(body)

    # -- config ------------------------------------------------------------------------
    def test_deliver_prefix_overlapping_a_local_origin_is_refused(self):
        async def body(a, b):
            await self.create(a, "O", subjects=["o.>"])
            await self.create(b, "L", subjects=["dlv.>"])
            r = await self.req(b, "$JS.API.STREAM.CREATE.X",
                               {"name": "X", "sources": [{"name": "L"}, {"name": "O", "external": EXT}]})
            self.assertEqual(r["error"], {"code": 400, "err_code": 10022, "description":
                                          "stream external delivery prefix dlv.A overlaps with stream subject "
                                          "dlv.>"})
            r = await self.req(b, "$JS.API.STREAM.NAMES")
            self.assertEqual(r["streams"], ["L"])
        self.js_test(body)


class DomainBehaviour(Helpers):
    """A copy on a leaf node (domain "leaf") of a stream in its hub's
    domain ("hub"): `external.api` = `$JS.hub.API`; the hub is nats-server
    2.15.1 or gnatsd.py."""
    leaf_exe = None
    hub_exe = GO_SERVER_215

    def setUp(self):
        self.store = tempfile.mkdtemp(prefix="js-domain-")
        self.addCleanup(shutil.rmtree, self.store, True)
        leaf_port = free_port()     # nats-server's ports file does not list the leaf port
        self.hub = ServerProcess("-js", "-sd", self.store + "/hub", exe=self.hub_exe,
                                 config='jetstream {domain: hub}\nleafnodes {listen: "127.0.0.1:%d"}\n' % leaf_port)
        self.addCleanup(self.hub.stop)
        self.leaf = ServerProcess("-js", "-sd", self.store + "/leaf", exe=self.leaf_exe,
                                  config='jetstream {domain: leaf}\nleafnodes {remotes: [{url: '
                                         '"nats-leaf://127.0.0.1:%d"}]}\n' % leaf_port)
        self.addCleanup(self.leaf.stop)

    def test_mirror_and_source_from_the_hub_domain(self):
        ext = {"api": "$JS.hub.API", "deliver": "dlv"}

        async def go():
            h = await nats.connect("nats://127.0.0.1:%d" % self.hub.port, connect_timeout=5)
            lf = await nats.connect("nats://127.0.0.1:%d" % self.leaf.port, connect_timeout=5)
            try:
                jh = h.jetstream()
                o = await self.create(h, "O", subjects=["o.>"])
                # the leaf connection is up once the hub's API answers through it
                deadline = time.monotonic() + WAIT
                while True:
                    try:
                        r = await self.req(lf, "$JS.hub.API.STREAM.INFO.O")
                        self.assertEqual(r["config"]["name"], "O")
                        break
                    except nats.errors.NoRespondersError:
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.2)
                for i in range(5):
                    await jh.publish("o.%d" % (i % 2), b"m%d" % i)
                await self.create(lf, "M", mirror={"name": "O", "external": ext})
                await self.create(lf, "S", sources=[{"name": "O", "external": ext}])
                for i in range(5, 10):
                    await jh.publish("o.%d" % (i % 2), b"m%d" % i)
                await self.wait_info(lf, "M", lambda r: r["state"]["last_seq"] >= 10, "last_seq 10")
                s = await self.wait_info(lf, "S", lambda r: r["state"]["messages"] >= 10, "10 messages")
                self.assertEqual(await self.all_msgs(lf, "M"), await self.all_msgs(h, "O"))
                copied = await self.all_msgs(lf, "S")
                self.assertEqual([(m["subject"], m["data"]) for m in copied],
                                 [("o.%d" % (i % 2), b"m%d" % i) for i in range(10)])
                self.assertEqual([self.source_header(m) for m in copied],
                                 ["O:%s %d > > o.%d %s" % (go_hash(ext["api"]), i + 1, i % 2, go_hash(o["created"]))
                                  for i in range(10)])
                self.assertEqual((s["state"]["messages"], s["sources"][0]["external"]), (10, ext))
            finally:
                await h.close()
                await lf.close()
        asyncio.run(asyncio.wait_for(go(), 4 * WAIT))


@needs(nats is not None and HAVE_GO_215, "nats-py and nats-server 2.15 (/opt/ns/bin/nats-server) are needed")
class TestDomainLeaf(DomainBehaviour, unittest.TestCase):
    """gnatsd.py as the leaf node."""


@needs(nats is not None and HAVE_GO_215, "nats-py and nats-server 2.15 (/opt/ns/bin/nats-server) are needed")
class TestDomainLeafOnGo(DomainBehaviour, unittest.TestCase):
    """nats-server 2.15.1 as the leaf node: the reference."""
    leaf_exe = GO_SERVER_215


@needs(nats is not None, "nats-py is not installed (pip install nats-py)")
class TestDomainLeafAndHub(DomainBehaviour, unittest.TestCase):
    """gnatsd.py as the leaf node and as the hub."""
    hub_exe = None


@needs(nats is not None, "nats-py is not installed (pip install nats-py)")
class TestExternal(ExternalBehaviour, unittest.TestCase):
    """On gnatsd.py."""


@needs(nats is not None and HAVE_GO_215, "nats-py and nats-server 2.15 (/opt/ns/bin/nats-server) are needed")
class TestExternalOnGo(ExternalBehaviour, unittest.TestCase):
    """The same assertions on nats-server 2.15.1: the expectations are its behaviour."""
    exe = GO_SERVER_215


if __name__ == "__main__":
    unittest.main()
