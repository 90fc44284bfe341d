"""A push consumer's subscriber on another server: the delivery crosses the
route or leaf connection on the deliver subject with `@<stream subject>`
after the `$JS.ACK` reply (nats-server's encoding), and the last server
shows its client the stream subject and the plain ack reply. Acks come back
through ordinary interest. Cases: a gnatsd.py pair (JetStream on A, the
client on B: durable push, a queue group with a member on each side, a KV
watcher), and a gnatsd.py leaf of a nats-server 2.15 hub (the hub sends)."""

import asyncio
import shutil
import tempfile
import time
import unittest

from tests.util import GO_SERVER_215, HAVE_GO_215, ServerProcess, flushed, free_port, needs

try:
    import nats
    from nats.js.api import ConsumerConfig
except ImportError:         # pragma: no cover
    nats = None

WAIT = 20.0


async def until_js(js, what="JetStream"):
    """account_info until the API answers through the peer connection."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return await js.account_info()
        except Exception:
            if time.monotonic() > deadline:
                raise AssertionError("%s never answered" % what)
            await asyncio.sleep(0.1)


async def collect(got, n):
    deadline = time.monotonic() + WAIT
    while len(got) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)        # a duplicate would be here by now


@needs(nats is not None, "nats-py is not installed (pip install nats-py)")
class TestPushAcrossRoute(unittest.TestCase):
    def setUp(self):
        store = tempfile.mkdtemp(prefix="js-push-remote-")
        self.addCleanup(shutil.rmtree, store, True)
        self.a = ServerProcess("-js", "-sd", store, "--cluster", "nats://127.0.0.1:-1")
        self.addCleanup(self.a.stop)
        self.b = ServerProcess("--cluster", "nats://127.0.0.1:-1", "--routes",
                               "nats://127.0.0.1:%d" % self.a.cluster_port)
        self.addCleanup(self.b.stop)

    def run_async(self, body):
        async def go():
            na = await nats.connect("nats://127.0.0.1:%d" % self.a.port, connect_timeout=5)
            nb = await nats.connect("nats://127.0.0.1:%d" % self.b.port, connect_timeout=5)
            try:
                await until_js(nb.jetstream())
                await body(na, nb)
            finally:
                await na.close()
                await nb.close()
        asyncio.run(asyncio.wait_for(go(), 4 * WAIT))

    def test_durable_push_on_the_other_node_sees_stream_subjects_and_acks(self):
        async def body(na, nb):
            jsb = nb.jetstream()
            await jsb.add_stream(name="P", subjects=["p.>"], storage="memory")
            got = []

            async def on_msg(m):
                got.append((m.subject, m.data, m.metadata.sequence.stream))
                await m.ack()
            await jsb.subscribe("p.>", durable="d", cb=on_msg, manual_ack=True)
            await flushed(nb)
            for i in range(20):
                await na.jetstream().publish("p.%d" % (i % 3), b"m%d" % i)
            await collect(got, 20)
            self.assertEqual(got, [("p.%d" % (i % 3), b"m%d" % i, i + 1) for i in range(20)])
            deadline = time.monotonic() + WAIT
            while True:
                ci = await jsb.consumer_info("P", "d")
                if ci.num_ack_pending == 0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            self.assertEqual((ci.num_ack_pending, ci.num_pending, ci.delivered.stream_seq,
                              ci.ack_floor.stream_seq), (0, 0, 20, 20))
        self.run_async(body)

    def test_queue_group_with_a_member_on_each_node_gets_each_message_once(self):
        async def body(na, nb):
            jsb = nb.jetstream()
            await jsb.add_stream(name="Q", subjects=["q.>"], storage="memory")
            cfg = ConsumerConfig(durable_name="w", deliver_subject="dq.w", deliver_group="workers",
                                 ack_policy="none")
            await jsb.add_consumer("Q", cfg)
            got_a, got_b = [], []

            async def on_a(m):
                got_a.append((m.subject, m.data))

            async def on_b(m):
                got_b.append((m.subject, m.data))
            await na.subscribe("dq.w", queue="workers", cb=on_a)
            await nb.subscribe("dq.w", queue="workers", cb=on_b)
            await flushed(na, nb)
            for i in range(30):
                await jsb.publish("q.%d" % i, b"%d" % i)
            deadline = time.monotonic() + WAIT
            while len(got_a) + len(got_b) < 30 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
            self.assertEqual(sorted(got_a + got_b, key=lambda t: int(t[1])),
                             [("q.%d" % i, b"%d" % i) for i in range(30)])
        self.run_async(body)

    def test_kv_watch_from_the_other_node(self):
        async def body(na, nb):
            kvb = await nb.jetstream().create_key_value(bucket="cfg", history=5)
            kva = await na.jetstream().key_value("cfg")
            await kva.put("a", b"1")
            w = await kvb.watchall()
            seen = []
            first = await w.updates(timeout=WAIT)
            seen.append((first.key, first.value))
            self.assertIsNone(await w.updates(timeout=WAIT))    # end of the initial values
            await kva.put("b", b"2")
            await kva.delete("a")
            for _ in range(2):
                e = await w.updates(timeout=WAIT)
                seen.append((e.key, e.value, e.operation))
            await w.stop()
            self.assertEqual(seen, [("a", b"1"), ("b", b"2", None), ("a", b"", "DEL")])
        self.run_async(body)


@needs(nats is not None and HAVE_GO_215, "nats-py and nats-server 2.15 (/opt/ns/bin/nats-server) are needed")
class TestPushFromGoHubToLeaf(unittest.TestCase):
    """nats-server 2.15 (JetStream, domain "hub") sends; a gnatsd.py leaf
    without JetStream shows its client the stream subjects."""

    def test_push_subscriber_on_the_leaf(self):
        store = tempfile.mkdtemp(prefix="js-push-leaf-")
        self.addCleanup(shutil.rmtree, store, True)
        leaf_port = free_port()
        hub = ServerProcess("-js", "-sd", store, exe=GO_SERVER_215,
                            config='jetstream {domain: hub}\nleafnodes {listen: "127.0.0.1:%d"}\n' % leaf_port)
        self.addCleanup(hub.stop)
        leaf = ServerProcess(config='leafnodes {remotes: [{url: "nats-leaf://127.0.0.1:%d"}]}\n' % leaf_port)
        self.addCleanup(leaf.stop)

        async def go():
            nl = await nats.connect("nats://127.0.0.1:%d" % leaf.port, connect_timeout=5)
            try:
                js = nl.jetstream(domain="hub")
                await until_js(js, "the hub's JetStream")
                await js.add_stream(name="H", subjects=["h.>"], storage="memory")
                got = []

                async def on_msg(m):
                    got.append((m.subject, m.data, m.metadata.sequence.stream))
                    await m.ack()
                await js.subscribe("h.>", durable="d", cb=on_msg, manual_ack=True)
                await flushed(nl)
                for i in range(10):
                    await js.publish("h.%d" % (i % 2), b"m%d" % i)
                await collect(got, 10)
                self.assertEqual(got, [("h.%d" % (i % 2), b"m%d" % i, i + 1) for i in range(10)])
                deadline = time.monotonic() + WAIT
                while True:
                    ci = await js.consumer_info("H", "d")
                    if ci.num_ack_pending == 0 or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                self.assertEqual((ci.num_ack_pending, ci.ack_floor.stream_seq), (0, 10))
            finally:
                await nl.close()
        asyncio.run(asyncio.wait_for(go(), 4 * WAIT))


if __name__ == "__main__":
    unittest.main()
