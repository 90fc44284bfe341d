"""The version a server announces must match what it implements: clients
(nats.py's own suite among them) switch features on by the INFO version.
Each case runs with nats-py on gnatsd.py and on nats-server 2.15: what the
announced version promises (2.10: consumer limits, several filter subjects;
2.11: per-message TTL, KV limit markers, consumer pause) works, and a
2.12 feature (atomic batch publish, message schedules) is accepted only if
the server says 2.12 or later; below that it is refused with err_code 10052.
The same version is in /varz and in a stream's `_nats.ver` metadata.
A stream's consumer_limits (2.10) are its consumers' defaults and bounds."""

import asyncio
import datetime
import json
import shutil
import tempfile
import unittest
import urllib.request

import nats
from nats.js.errors import BadRequestError, ServerError

from tests.util import GO_SERVER_215, HAVE_GO_215, ServerProcess, free_port, needs

TIMEOUT = 5.0


class GatedBase:
    exe = None

    def setUp(self):
        self.sd = tempfile.mkdtemp(prefix="gnatsd-gated-")
        self.addCleanup(shutil.rmtree, self.sd, True)
        self.mport = free_port()
        self.srv = ServerProcess("-m", str(self.mport),
                                 config='jetstream { store_dir: "%s" }\n' % self.sd, exe=self.exe)
        self.addCleanup(self.srv.stop)

    def run_async(self, coro):
        return asyncio.run(asyncio.wait_for(coro, 60))

    async def connect(self):
        nc = await nats.connect("nats://127.0.0.1:%d" % self.srv.port)
        self.version = (nc.connected_server_version.major, nc.connected_server_version.minor)
        return nc

    def test_announces_at_least_2_11_everywhere(self):
        async def body():
            nc = await self.connect()
            try:
                self.assertGreaterEqual(self.version, (2, 11))
                info_ver = nc._server_info["version"]
                js = nc.jetstream()
                si = await js.add_stream(name="V", subjects=["v"])
                self.assertEqual(si.config.metadata["_nats.ver"], info_ver)
            finally:
                await nc.close()
            return info_ver
        info_ver = self.run_async(body())
        with urllib.request.urlopen("http://127.0.0.1:%d/varz" % self.mport, timeout=TIMEOUT) as r:
            self.assertEqual(json.loads(r.read())["version"], info_ver)

    def test_2_10_consumer_limits_and_filter_subjects(self):
        async def body():
            nc = await self.connect()
            try:
                js = nc.jetstream()
                await js.add_stream(name="L", subjects=["l.*"], consumer_limits=nats.js.api.StreamConsumerLimits(
                    inactive_threshold=3600.0, max_ack_pending=100))
                si = await js.stream_info("L")
                self.assertEqual(si.config.consumer_limits.max_ack_pending, 100)
                for s in ("l.a", "l.b", "l.c"):
                    await js.publish(s, s.encode())
                ci = await js.add_consumer("L", durable_name="F", ack_policy="explicit",
                                           filter_subjects=["l.a", "l.c"])
                self.assertEqual(ci.config.max_ack_pending, 100)
                self.assertEqual(ci.num_pending, 2)
                sub = await js.pull_subscribe_bind("F", "L")
                msgs = await sub.fetch(2, timeout=TIMEOUT)
                self.assertEqual([m.data for m in msgs], [b"l.a", b"l.c"])
            finally:
                await nc.close()
        self.run_async(body())

    def test_consumer_limits_are_defaults_and_bounds(self):
        H = 3600 * 10 ** 9

        async def body():
            nc = await self.connect()
            try:
                async def req(subject, obj):
                    return json.loads((await nc.request(subject, json.dumps(obj).encode(), timeout=TIMEOUT)).data)

                async def consumer(cfg):
                    subject = "$JS.API.CONSUMER.CREATE.L"
                    if cfg.get("durable_name"):
                        subject += "." + cfg["durable_name"]
                    r = await req(subject, {"stream_name": "L", "config": cfg})
                    if "error" in r:
                        return r["error"]
                    return r["config"].get("max_ack_pending"), r["config"].get("inactive_threshold")

                r = await req("$JS.API.STREAM.CREATE.L", {"name": "L", "subjects": ["l"], "consumer_limits": {
                    "max_ack_pending": 100, "inactive_threshold": H}})
                self.assertEqual(json.dumps(r["config"]["consumer_limits"]),
                                 '{"inactive_threshold": %d, "max_ack_pending": 100}' % H)
                # defaults, for durables and any ack policy
                self.assertEqual(await consumer({"durable_name": "D", "ack_policy": "explicit"}), (100, H))
                self.assertEqual(await consumer({"ack_policy": "none"}), (100, H))
                self.assertEqual(await consumer({"durable_name": "E", "ack_policy": "all",
                                                 "max_ack_pending": 50, "inactive_threshold": 60 * 10 ** 9}),
                                 (50, 60 * 10 ** 9))
                self.assertEqual(await consumer({"durable_name": "U", "ack_policy": "explicit", "max_ack_pending": -1}),
                                 (-1, H))
                # bounds, on create and on update
                over_pending = {"code": 400, "err_code": 10121,
                                "description": "consumer max ack pending exceeds system limit of 100"}
                self.assertEqual(await consumer({"durable_name": "X", "ack_policy": "explicit", "max_ack_pending": 101}),
                                 over_pending)
                self.assertEqual(await consumer({"durable_name": "D", "ack_policy": "explicit", "max_ack_pending": 500}),
                                 over_pending)
                self.assertEqual(await consumer({"ack_policy": "explicit", "inactive_threshold": 2 * H}),
                                 {"code": 400, "err_code": 10153,
                                  "description": "consumer inactive threshold exceeds system limit of 1h0m0s"})
                # a stream update may not put consumers over the new limits
                r = await req("$JS.API.STREAM.UPDATE.L", {"name": "L", "subjects": ["l"], "consumer_limits": {
                    "max_ack_pending": 60, "inactive_threshold": H}})
                self.assertEqual(r["error"]["err_code"], 10069)
                self.assertRegex(r["error"]["description"],
                                 r"^change to limits violates consumers: D, [A-Za-z0-9]{8}$")
                r = await req("$JS.API.STREAM.UPDATE.L", {"name": "L", "subjects": ["l"], "consumer_limits": {
                    "max_ack_pending": 100, "inactive_threshold": 2 * H}})
                self.assertEqual(r["config"]["consumer_limits"], {"inactive_threshold": 2 * H, "max_ack_pending": 100})
                # decoded strictly, zeros left out
                r = await req("$JS.API.STREAM.CREATE.Z", {"name": "Z", "consumer_limits": {
                    "max_ack_pending": 0, "inactive_threshold": 0}})
                self.assertEqual(r["config"]["consumer_limits"], {})
                for limits, text in (
                        ({"foo": 1}, 'json: unknown field "foo"'),
                        ({"max_ack_pending": "x"}, "json: cannot unmarshal string into Go struct field "
                         "StreamConfigRequest.consumer_limits.max_ack_pending of type int"),
                        ({"inactive_threshold": True}, "json: cannot unmarshal bool into Go struct field "
                         "StreamConfigRequest.consumer_limits.inactive_threshold of type time.Duration"),
                        ("s", "json: cannot unmarshal string into Go struct field "
                         "StreamConfigRequest.consumer_limits of type server.StreamConsumerLimits")):
                    r = await req("$JS.API.STREAM.CREATE.B", {"name": "B", "consumer_limits": limits})
                    self.assertEqual(r["error"], {"code": 400, "err_code": 10025, "description": "invalid JSON: " + text})
            finally:
                await nc.close()
        self.run_async(body())

    def test_2_11_msg_ttl_limit_marker_and_pause(self):
        async def body():
            nc = await self.connect()
            try:
                js = nc.jetstream()
                await js.add_stream(name="T", subjects=["t"], allow_msg_ttl=True)
                ack = await js.publish("t", b"x", headers={"Nats-TTL": "1h"})
                self.assertEqual(ack.seq, 1)
                msg = await js.get_msg("T", 1)
                self.assertEqual(msg.headers["Nats-TTL"], "1h")
                kv = await js.create_key_value(bucket="K", limit_marker_ttl=5)
                si = await js.stream_info("KV_K")
                self.assertEqual(si.config.subject_delete_marker_ttl, 5)
                await kv.put("k", b"v")
                await js.add_consumer("T", durable_name="P", ack_policy="explicit")
                until = (datetime.datetime.now(datetime.timezone.utc)
                         + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
                self.assertTrue((await js.pause_consumer("T", "P", until)).paused)
                self.assertTrue((await js.consumer_info("T", "P")).paused)
                self.assertFalse((await js.resume_consumer("T", "P")).paused)
            finally:
                await nc.close()
        self.run_async(body())

    def test_2_12_features_only_when_announced(self):
        async def body():
            nc = await self.connect()
            try:
                js = nc.jetstream()
                for i, field in enumerate(("allow_atomic", "allow_msg_schedules")):
                    name, subj = "S%d" % i, "s%d" % i
                    if self.version >= (2, 12):
                        si = await js.add_stream(name=name, subjects=[subj], **{field: True})
                        self.assertIs(getattr(si.config, field), True)
                    else:
                        with self.assertRaises((BadRequestError, ServerError)) as cm:
                            await js.add_stream(name=name, subjects=[subj], **{field: True})
                        self.assertEqual(cm.exception.err_code, 10052)
                        self.assertIn("%s is not supported" % field, cm.exception.description)
                    # off is fine on any version
                    si = await js.add_stream(name=name + "off", subjects=[subj + "off"], **{field: False})
                    self.assertIsNot(getattr(si.config, field), True)
            finally:
                await nc.close()
        self.run_async(body())


class GnatsdGatedTest(GatedBase, unittest.TestCase):
    def test_announces_2_11_0(self):
        # not 2.12 until atomic batch publish and message schedules exist
        async def body():
            nc = await self.connect()
            await nc.close()
        self.run_async(body())
        self.assertEqual(self.version, (2, 11))

    def test_mirror_of_a_limited_stream_still_syncs(self):
        # nats-server 2.15 applies the origin's consumer_limits to its own
        # mirror and source consumers too, and a tight limit (max_ack_pending
        # 1, or a 1 s inactive threshold) leaves them at 0 messages;
        # gnatsd.py leaves the server's own consumers out of the limits
        async def body():
            nc = await self.connect()
            try:
                js = nc.jetstream()
                await js.add_stream(name="O", subjects=["o"], consumer_limits=nats.js.api.StreamConsumerLimits(
                    inactive_threshold=1.0, max_ack_pending=1))
                for i in range(5):
                    await js.publish("o", b"%d" % i)
                await js.add_stream(name="M", mirror=nats.js.api.StreamSource(name="O"))
                await js.add_stream(name="S", sources=[nats.js.api.StreamSource(name="O")])
                counts = None
                for _ in range(200):
                    counts = [(await js.stream_info(n)).state.messages for n in ("M", "S")]
                    if counts == [5, 5]:
                        break
                    await asyncio.sleep(0.1)
                self.assertEqual(counts, [5, 5])
            finally:
                await nc.close()
        self.run_async(body())


@needs(HAVE_GO_215, "nats-server 2.15 is not installed")
class GoGatedTest(GatedBase, unittest.TestCase):
    exe = GO_SERVER_215


if __name__ == "__main__":
    unittest.main()
