"""JetStream across restarts: stream definitions come back from the store
directory, file-stored messages survive a clean stop and a kill -9
(with sync_always), memory-stored ones start empty, and a damaged stream
definition is logged and skipped without stopping the server."""

import asyncio
import json
import os
import shutil
import signal
import tempfile
import unittest

from tests.util import ServerProcess, needs

try:
    import nats
except ImportError:     # pragma: no cover
    nats = None

@needs(nats is not None, "nats-py is not installed (pip install nats-py)")
class TestRestart(unittest.TestCase):

    def setUp(self):
        self.store = tempfile.mkdtemp(prefix="js-restart-")
        self.addCleanup(shutil.rmtree, self.store, True)

    def start(self, *extra, config=None):
        srv = ServerProcess("-js", "-sd", self.store, *extra, config=config)
        self.addCleanup(srv.stop)
        return srv

    def run_js(self, srv, body):
        async def go():
            nc = await nats.connect("nats://127.0.0.1:%d" % srv.port, connect_timeout=5,
                                    max_reconnect_attempts=0)
            try:
                return await body(nc, nc.jetstream())
            finally:
                await nc.close()
        return asyncio.run(asyncio.wait_for(go(), 30))

    def fill(self, srv):
        async def body(nc, js):
            await js.add_stream(name="F", subjects=["f.*"], max_msgs_per_subject=10)
            await js.add_stream(name="M", subjects=["m"], storage="memory", description="mem")
            for i in range(20):
                ack = await js.publish("f.%d" % (i % 3), b"payload-%d" % i, headers={"Nats-Msg-Id": "id%d" % i})
                self.assertEqual(ack.seq, i + 1)
            await js.publish("m", b"gone after restart")
            self.assertTrue(await js.delete_msg("F", 5))
        self.run_js(srv, body)

    def check_after(self, srv):
        async def body(nc, js):
            names = await js.streams_info()
            self.assertEqual(sorted(s.config.name for s in names), ["F", "M"])
            m = await js.stream_info("M")
            self.assertEqual((m.config.description, m.config.storage, m.state.messages), ("mem", "memory", 0))
            f = await js.stream_info("F")
            self.assertEqual((f.config.subjects, f.config.max_msgs_per_subject), (["f.*"], 10))
            self.assertEqual((f.state.messages, f.state.first_seq, f.state.last_seq), (19, 1, 20))
            msg = await js.get_msg("F", 20)
            self.assertEqual((msg.subject, msg.data), ("f.1", b"payload-19"))
            # the duplicate window outlives the restart
            ack = await js.publish("f.0", b"again", headers={"Nats-Msg-Id": "id19"})
            self.assertEqual((ack.seq, ack.duplicate), (20, True))
            ack = await js.publish("f.0", b"next")
            self.assertEqual(ack.seq, 21)
            # the stream still takes publishes on its subjects
            ack = await js.publish("m", b"again")
            self.assertEqual(ack.seq, 1)
        self.run_js(srv, body)

    def test_definitions_survive_a_clean_restart(self):
        srv = self.start()
        self.fill(srv)
        srv.stop()
        srv = self.start()
        self.check_after(srv)
        meta = os.path.join(self.store, "jetstream", "$G", "streams", "F", "meta.json")
        with open(meta) as f:
            self.assertEqual(json.load(f)["config"]["name"], "F")

    def test_file_messages_survive_kill_9_with_sync_always(self):
        srv = self.start(config="jetstream { store_dir: %s, sync_interval: always }\n" % json.dumps(self.store))
        self.fill(srv)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        srv = self.start()
        self.check_after(srv)

    def test_file_messages_survive_kill_9_default_sync(self):
        # the default policy flushes each reactor turn before the acks leave:
        # a process crash loses nothing acknowledged
        srv = self.start()
        self.fill(srv)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        srv = self.start()
        self.check_after(srv)

    def test_damaged_definition_is_logged_and_skipped(self):
        srv = self.start()
        self.fill(srv)
        srv.stop()
        with open(os.path.join(self.store, "jetstream", "$G", "streams", "M", "meta.json"), "w") as f:
            f.write("{not json")
        srv = self.start()
        self.assertTrue(srv.wait_log(r"could not recover stream '\$G > M'", 10), srv.output())

        async def body(nc, js):
            names = [s.config.name for s in await js.streams_info()]
            self.assertEqual(names, ["F"])
        self.run_js(srv, body)
        self.assertNotIn("Traceback", srv.output())


if __name__ == "__main__":
    unittest.main()
