"""Interop with a real client library: nats-py against `python3 gnatsd.py`."""

import asyncio
import unittest

from tests.util import ServerProcess

try:
    import nats
    from nats.errors import NoRespondersError, TimeoutError as NatsTimeout
except ImportError:     # pragma: no cover - the test extras install it
    nats = None


@unittest.skipIf(nats is None, "nats-py is not installed (pip install nats-py)")
class TestNatsPy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = ServerProcess()
        cls.url = "nats://127.0.0.1:%d" % cls.srv.port

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def run_async(self, coro):
        return asyncio.run(asyncio.wait_for(coro, 20))

    async def connect(self, **kw):
        return await nats.connect(self.url, connect_timeout=3, max_reconnect_attempts=0, **kw)

    def test_pub_sub_and_flush(self):
        async def go():
            nc = await self.connect()
            got = []
            done = asyncio.Event()

            async def cb(msg):
                got.append(msg.data)
                if len(got) == 100:
                    done.set()
            await nc.subscribe("interop.ps", cb=cb)
            await nc.flush()
            for i in range(100):
                await nc.publish("interop.ps", b"m%d" % i)
            await nc.flush()
            await asyncio.wait_for(done.wait(), 5)
            await nc.close()
            return got
        got = self.run_async(go())
        self.assertEqual(got, [b"m%d" % i for i in range(100)])

    def test_wildcards(self):
        async def go():
            nc = await self.connect()
            star = await nc.subscribe("wc.*")
            full = await nc.subscribe("wc.>")
            await nc.flush()
            await nc.publish("wc.a", b"1")
            await nc.publish("wc.a.b", b"2")
            await nc.flush()
            a = await star.next_msg(timeout=2)
            b1 = await full.next_msg(timeout=2)
            b2 = await full.next_msg(timeout=2)
            with self.assertRaises(NatsTimeout):
                await star.next_msg(timeout=0.3)
            await nc.close()
            return a.subject, sorted([b1.subject, b2.subject])
        self.assertEqual(self.run_async(go()), ("wc.a", ["wc.a", "wc.a.b"]))

    def test_queue_group(self):
        async def go():
            nc = await self.connect()
            counts = [0, 0, 0]

            def make(i):
                async def cb(msg):
                    counts[i] += 1
                return cb
            for i in range(3):
                await nc.subscribe("iq", queue="workers", cb=make(i))
            await nc.flush()
            for _ in range(300):
                await nc.publish("iq", b"x")
            await nc.flush()
            for _ in range(50):
                if sum(counts) == 300:
                    break
                await asyncio.sleep(0.05)
            await nc.close()
            return counts
        counts = self.run_async(go())
        self.assertEqual(sum(counts), 300)
        self.assertTrue(all(c > 0 for c in counts), counts)

    def test_request_reply(self):
        async def go():
            nc = await self.connect()

            async def responder(msg):
                await msg.respond(b"echo:" + msg.data)
            await nc.subscribe("svc.echo", cb=responder)
            await nc.flush()
            replies = []
            for i in range(20):
                r = await nc.request("svc.echo", b"%d" % i, timeout=2)
                replies.append(r.data)
            await nc.close()
            return replies
        self.assertEqual(self.run_async(go()), [b"echo:%d" % i for i in range(20)])

    def test_headers(self):
        async def go():
            nc = await self.connect()
            sub = await nc.subscribe("hdr.test")
            await nc.flush()
            await nc.publish("hdr.test", b"body", headers={"X-Trace": "abc", "K": "v"})
            msg = await sub.next_msg(timeout=2)
            await nc.close()
            return msg.data, msg.headers
        data, headers = self.run_async(go())
        self.assertEqual(data, b"body")
        self.assertEqual(headers.get("X-Trace"), "abc")
        self.assertEqual(headers.get("K"), "v")

    def test_no_responders(self):
        async def go():
            nc = await self.connect()
            try:
                await nc.request("nobody.listens", b"?", timeout=2)
            except NoRespondersError:
                return "no responders"
            finally:
                await nc.close()
            return "reply"
        self.assertEqual(self.run_async(go()), "no responders")

    def test_drain(self):
        async def go():
            nc = await self.connect()
            pub = await self.connect()
            got = []

            async def cb(msg):
                await asyncio.sleep(0)
                got.append(msg.data)
            await nc.subscribe("drain.x", cb=cb)
            await nc.flush()
            for i in range(50):
                await pub.publish("drain.x", b"%d" % i)
            await pub.flush()
            await asyncio.sleep(0.2)
            await nc.drain()
            await pub.close()
            return got
        got = self.run_async(go())
        self.assertEqual(len(got), 50)

    def test_server_info_seen_by_client(self):
        async def go():
            nc = await self.connect()
            info = nc._server_info
            await nc.close()
            return info
        info = self.run_async(go())
        self.assertTrue(info["headers"])
        self.assertEqual(info["proto"], 1)


if __name__ == "__main__":
    unittest.main()
