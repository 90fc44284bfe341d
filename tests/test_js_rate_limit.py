"""A push consumer's rate_limit_bps paces delivery (nats-server 2.15's
token bucket: bps/8 bytes a second, a burst of one largest message), with
every message delivered exactly once; the same test runs on nats-server."""

import asyncio
import shutil
import tempfile
import time
import unittest

import nats

from tests.util import GO_SERVER_215, HAVE_GO_215, ServerProcess, needs

N = 2500
SIZE = 1000
BPS = 8 * 1000000       # 1 MB a second


class RateBase:
    exe = None

    def setUp(self):
        self.sd = tempfile.mkdtemp(prefix="gnatsd-jsrate-")
        self.addCleanup(shutil.rmtree, self.sd, True)
        self.srv = ServerProcess(config='jetstream { store_dir: "%s" }\n' % self.sd, exe=self.exe)
        self.addCleanup(self.srv.stop)

    def test_push_delivery_is_paced_and_complete(self):
        async def body():
            nc = await nats.connect("nats://127.0.0.1:%d" % self.srv.port)
            try:
                js = nc.jetstream()
                await js.add_stream(name="R", subjects=["r.>"])
                acks = [await js.publish("r.%d" % i, b"x" * SIZE) for i in range(N)]
                self.assertEqual(acks[-1].seq, N)
                got = []
                done = asyncio.Event()

                async def cb(m):
                    got.append(m.subject)
                    if len(got) == N:
                        done.set()
                t0 = time.monotonic()
                await nc.subscribe("deliver.r", cb=cb)
                await js.add_consumer("R", nats.js.api.ConsumerConfig(
                    durable_name="paced", deliver_subject="deliver.r", ack_policy="none",
                    rate_limit_bps=BPS))
                await asyncio.wait_for(done.wait(), 30)
                elapsed = time.monotonic() - t0
                await asyncio.sleep(0.3)
                self.assertEqual(got, ["r.%d" % i for i in range(N)])    # each once, in order
                # 2.5 MB at 1 MB/s, the first 1 MiB (max_payload) as a
                # burst: about 1.5 s; unlimited, these take milliseconds
                self.assertGreater(elapsed, 1.0)
            finally:
                await nc.close()
        asyncio.run(asyncio.wait_for(body(), 60))


class GnatsdRateTest(RateBase, unittest.TestCase):
    pass


@needs(HAVE_GO_215, "nats-server 2.15 is not installed")
class GoRateTest(RateBase, unittest.TestCase):
    exe = GO_SERVER_215


if __name__ == "__main__":
    unittest.main()
