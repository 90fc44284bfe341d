"""unittest users: gnats.testing.NatsServerTestCase (pytest runs it too)."""

import asyncio

import nats

from gnats.testing import NatsServerTestCase


class EchoTest(NatsServerTestCase):
    nats_options = {"max_payload": 4096}

    def test_echo(self):
        async def main():
            nc = await nats.connect(self.nats_url)
            sub = await nc.subscribe("echo")
            await nc.publish("echo", b"hello")
            msg = await sub.next_msg(timeout=5)
            size = nc.max_payload
            await nc.close()
            return msg.data, size
        self.assertEqual(asyncio.run(main()), (b"hello", 4096))
