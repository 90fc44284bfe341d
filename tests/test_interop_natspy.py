"""Interop with a real client library: nats-py against `python3 gnatsd.py`."""

import asyncio
import unittest

from tests.util import flushed, ServerProcess, needs

try:
    import nats
    from nats.errors import NoRespondersError
except ImportError:     # pragma: no cover - the test extras install it
    nats = None


@needs(nats is not None, "nats-py is not installed (pip install nats-py)")
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
            await flushed(nc)
            for i in range(100):
                await nc.publish("interop.ps", b"m%d" % i)
            await flushed(nc)
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
            await flushed(nc)
            await nc.publish("wc.a", b"1")
            await nc.publish("wc.a.b", b"2")
            await flushed(nc)
            a = await star.next_msg(timeout=2)
            b1 = await full.next_msg(timeout=2)
            b2 = await full.next_msg(timeout=2)
            # instead of waiting for a timeout: a later message that wc.*
            # matches comes next, so wc.a.b never reached it
            await nc.publish("wc.end", b"3")
            after = await star.next_msg(timeout=2)
            await nc.close()
            return a.subject, sorted([b1.subject, b2.subject]), after.subject
        self.assertEqual(self.run_async(go()), ("wc.a", ["wc.a", "wc.a.b"], "wc.end"))

    def test_queue_group(self):
        async def go():
            members = [await self.connect() for _ in range(3)]    # one connection each
            got = [[], [], []]
            done = asyncio.Event()

            def make(i):
                async def cb(msg):
                    got[i].append(msg.data)
                    if sum(map(len, got)) >= 300:
                        done.set()
                return cb
            for i, nc in enumerate(members):
                await nc.subscribe("iq", queue="workers", cb=make(i))
                await flushed(nc)
            pub = await self.connect()
            for k in range(300):
                await pub.publish("iq", b"q%03d" % k)
            await flushed(pub)
            await asyncio.wait_for(done.wait(), 10)
            # a barrier instead of a sleep: after each member's PING/PONG,
            # anything the server sent that member earlier has been read
            for nc in members:
                await flushed(nc)
            for nc in members + [pub]:
                await nc.close()
            return got
        got = self.run_async(go())
        # numbered payloads: each delivered exactly once, to one member
        self.assertEqual(sorted(x for g in got for x in g), [b"q%03d" % k for k in range(300)])
        self.assertTrue(all(got), [len(g) for g in got])

    def test_request_reply(self):
        async def go():
            nc = await self.connect()

            async def responder(msg):
                await msg.respond(b"echo:" + msg.data)
            await nc.subscribe("svc.echo", cb=responder)
            await flushed(nc)
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
            await flushed(nc)
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
                await asyncio.sleep(0.01)       # slow: most are still pending at drain()
                got.append(msg.data)
            await nc.subscribe("drain.x", cb=cb)
            await flushed(nc)
            for i in range(50):
                await pub.publish("drain.x", b"%d" % i)
            await flushed(pub)
            pending_at_drain = 50 - len(got)
            await nc.drain()                    # deliver what is pending, then close
            closed = nc.is_closed
            await pub.close()
            return got, pending_at_drain, closed
        got, pending, closed = self.run_async(go())
        self.assertGreater(pending, 0)
        self.assertEqual(got, [b"%d" % i for i in range(50)])
        self.assertTrue(closed)

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
