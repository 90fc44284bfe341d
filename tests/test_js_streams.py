"""JetStream streams, black-box: nats-py (its JetStream client and raw
requests) against `python3 gnatsd.py -js`, and the same tests against
nats-server 2.15.1 (/opt/ns/bin/nats-server) so that the expected values
below stay true of the reference.

EXPECTED holds nats-server 2.15.1's answers, captured over a socket
(nats-py requests to a `nats-server -js -sd DIR` on 2026-11-29): the error
bodies of typical mistakes and the defaults a minimal stream gets.
"""

import asyncio
import base64
import json
import shutil
import tempfile
import unittest
import urllib.request

from tests.util import flushed, GO_SERVER_215, HAVE_GO_215, ServerProcess, needs

try:
    import nats
    from nats.errors import NoRespondersError, TimeoutError as NatsTimeout
    from nats.js.errors import APIError, NotFoundError
except ImportError:     # pragma: no cover
    nats = None


def e(code, err_code, description):
    return {"code": code, "err_code": err_code, "description": description}


INVALID_NAME = "stream name is required and can not contain '.', '*', '>', '\\', '/'"

# nats-server 2.15.1's error bodies, as captured
EXPECTED = {
    "name_exists": e(400, 10058, "stream name already in use with a different configuration"),
    "overlap": e(400, 10065, "subjects overlap with an existing stream"),
    "name_mismatch": e(400, 10056, "stream name in subject does not match request"),
    "invalid_name": e(500, 10052, INVALID_NAME),
    "replicas": e(500, 10074, "replicas > 1 not supported in non-clustered mode"),
    "neg_max_age": e(500, 10052, "max age can not be negative"),
    "neg_dup_window": e(500, 10052, "duplicates window can not be negative"),
    "bad_enum": e(400, 10025, 'invalid JSON: can not unmarshal "\\"foo\\""'),
    "unknown_field": e(400, 10025, 'invalid JSON: json: unknown field "foo"'),
    "bad_subject": e(500, 10052, "invalid subject"),
    "dup_subject": e(500, 10052, 'subject "x" overlaps with "x"'),
    "self_overlap": e(500, 10052, 'subject "x.*" overlaps with "x.a"'),
    "api_overlap": e(500, 10052, "subjects that overlap with jetstream api require no-ack to be true"),
    "dnps_needs_new": e(500, 10052, "discard new per subject requires discard new policy to be set"),
    "rollup_needs_purge": e(500, 10052, "roll-ups require the purge permission"),
    "sealed_create": e(500, 10052, "stream configuration for create can not be sealed"),
    "mirror_direct": e(500, 10052, "stream has no mirror but does have mirror direct"),
    "bad_transform": e(400, 10156, "stream transform: invalid mapping destination: wildcard index out of range "
                                   "in {{wildcard(3)}}: [3]"),
    "bad_republish": e(500, 10052, "stream configuration for republish with transform from 'rp2.*' to 'rpo2.>' "
                                   "not valid"),
    "dup_window_gt_age": e(500, 10052, "duplicates window can not be larger then max age"),
    "name_too_long": e(500, 10052, "stream name is too long, maximum allowed is 255"),
    "republish_cycle": e(500, 10052, "stream configuration for republish destination forms a cycle"),
    "not_found": e(404, 10059, "stream not found"),
    "expected_stream": e(400, 10060, "expected stream does not match"),
    "rollup_not_permitted": e(500, 10111, "rollup not permitted"),
    "rollup_invalid": e(500, 10111, 'rollup value invalid: "bogus"'),
    "ttl_disabled": e(400, 10166, "per-message TTL is disabled"),
    "ttl_invalid": e(400, 10165, "invalid per-message TTL"),
    "too_big": e(400, 10054, "message size exceeds maximum allowed"),
    "max_msgs": e(503, 10077, "maximum messages exceeded"),
    "max_bytes": e(503, 10077, "maximum bytes exceeded"),
    "max_per_subject": e(503, 10077, "maximum messages per subject exceeded"),
    "no_message": e(404, 10037, "no message found"),
    "bad_request": e(400, 10003, "bad request"),
    "store_eof": e(500, 10057, "stream store EOF"),
    "delete_denied": e(500, 10057, "message delete not permitted"),
    "purge_denied": e(500, 10110, "stream purge not permitted"),
    "sealed": e(400, 10109, "invalid operation on sealed stream"),
    "not_empty": e(400, 10038, "expected an empty request payload"),
    "update_storage": e(500, 10052, "stream configuration update can not change storage type"),
    "update_workqueue": e(500, 10052,
                          "stream configuration update can not change retention policy to/from workqueue"),
    "update_unseal": e(500, 10052, "stream configuration update can not unseal a sealed stream"),
}

# the config nats-server 2.15.1 gives {"name": "D1", "subjects": ["d1.>"]}
# (metadata aside: its _nats.ver names the server's own version)
DEFAULT_CONFIG = {
    "name": "D1", "subjects": ["d1.>"], "retention": "limits", "max_consumers": -1, "max_msgs": -1,
    "max_bytes": -1, "max_age": 0, "max_msgs_per_subject": -1, "max_msg_size": -1, "discard": "old",
    "storage": "file", "num_replicas": 1, "duplicate_window": 120000000000, "compression": "none",
    "allow_direct": False, "mirror_direct": False, "sealed": False, "deny_delete": False,
    "deny_purge": False, "allow_rollup_hdrs": False, "consumer_limits": {}, "allow_msg_ttl": False,
}
ZERO_TS = "0001-01-01T00:00:00Z"


class StreamsBehaviour:
    """The tests, run against one server per class (`exe`: None for ours)."""
    exe = None

    @classmethod
    def setUpClass(cls):
        cls.store = tempfile.mkdtemp(prefix="js-streams-")
        cls.srv = ServerProcess("-js", "-sd", cls.store, "-m", "-1", exe=cls.exe)
        cls.url = "nats://127.0.0.1:%d" % cls.srv.port

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        shutil.rmtree(cls.store, ignore_errors=True)

    def run_async(self, coro):
        return asyncio.run(asyncio.wait_for(coro, 30))

    def js_test(self, body):
        """Run `body(nc, js)` with a fresh connection."""
        async def go():
            nc = await nats.connect(self.url, connect_timeout=5, max_reconnect_attempts=0)
            try:
                return await body(nc, nc.jetstream())
            finally:
                await nc.close()
        return self.run_async(go())

    @staticmethod
    async def req(nc, subject, body=b"", timeout=5):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        m = await nc.request(subject, body, timeout=timeout)
        return json.loads(m.data)

    @staticmethod
    async def pub(nc, subject, data=b"x", headers=None):
        m = await nc.request(subject, data, timeout=5, headers=headers)
        return json.loads(m.data)

    async def create(self, nc, name, **cfg):
        cfg["name"] = name
        r = await self.req(nc, "$JS.API.STREAM.CREATE." + name, cfg)
        self.assertNotIn("error", r, r)
        return r

    async def create_err(self, nc, name, cfg, expected):
        r = await self.req(nc, "$JS.API.STREAM.CREATE." + name, cfg)
        self.assertEqual(r.get("error"), EXPECTED[expected], (name, cfg))
        self.assertEqual(r["type"], "io.nats.jetstream.api.v1.stream_create_response")

    # -- account and create ------------------------------------------------------
    def test_account_info(self):
        async def body(nc, js):
            r = await self.req(nc, "$JS.API.INFO")
            self.assertEqual(r["type"], "io.nats.jetstream.api.v1.account_info_response")
            self.assertEqual(r["limits"], {"max_memory": -1, "max_storage": -1, "max_streams": -1,
                                           "max_consumers": -1, "max_ack_pending": -1,
                                           "memory_max_stream_bytes": -1, "storage_max_stream_bytes": -1,
                                           "max_bytes_required": False})
            self.assertEqual(r["api"]["level"], 5)
            info = await js.account_info()
            self.assertGreaterEqual(info.api.total, 1)
            self.assertEqual(info.api.errors, 0)
        self.js_test(body)

    def test_create_defaults_and_idempotence(self):
        async def body(nc, js):
            r = await self.create(nc, "D1", subjects=["d1.>"])
            cfg = dict(r["config"])
            meta = cfg.pop("metadata")
            self.assertEqual(cfg, DEFAULT_CONFIG)
            self.assertEqual(meta["_nats.req.level"], "0")
            self.assertEqual(meta["_nats.level"], "5")
            self.assertTrue(r["did_create"])
            self.assertEqual(r["state"], {"messages": 0, "bytes": 0, "first_seq": 0, "first_ts": ZERO_TS,
                                          "last_seq": 0, "last_ts": ZERO_TS, "consumer_count": 0})
            again = await self.create(nc, "D1", subjects=["d1.>"])
            self.assertEqual(again["created"], r["created"])
            await self.create_err(nc, "D1", {"name": "D1", "subjects": ["d1.>"], "max_msgs": 5}, "name_exists")
            # no subjects: the name is the subject
            r = await self.create(nc, "D2")
            self.assertEqual(r["config"]["subjects"], ["D2"])
            # negative limits mean unlimited
            r = await self.create(nc, "D3", subjects=["d3"], max_msgs=-5, max_bytes=-5, max_msg_size=-5)
            self.assertEqual((r["config"]["max_msgs"], r["config"]["max_bytes"], r["config"]["max_msg_size"]),
                             (-1, -1, -1))
            # with nats-py's JetStream client
            si = await js.add_stream(name="D4", subjects=["d4.*"], storage="memory", description="four",
                                     metadata={"owner": "me"})
            self.assertEqual(si.config.description, "four")
            self.assertEqual(si.config.metadata["owner"], "me")
            self.assertEqual(si.config.storage, "memory")
        self.js_test(body)

    def test_create_errors(self):
        async def body(nc, js):
            await self.create(nc, "E0", subjects=["e0.>"])
            await self.create_err(nc, "E1", {"name": "E1", "subjects": ["e0.a"]}, "overlap")
            await self.create_err(nc, "E2", {"name": "X2", "subjects": ["e2"]}, "name_mismatch")
            await self.create_err(nc, "E2", b"", "name_mismatch")
            await self.create_err(nc, "a*", {"name": "a*", "subjects": ["e3"]}, "invalid_name")
            await self.create_err(nc, "a>", {"name": "a>", "subjects": ["e3"]}, "invalid_name")
            await self.create_err(nc, "E4", {"name": "E4", "num_replicas": 3}, "replicas")
            await self.create_err(nc, "E5", {"name": "E5", "max_age": -5}, "neg_max_age")
            await self.create_err(nc, "E5", {"name": "E5", "duplicate_window": -1}, "neg_dup_window")
            for field in ("retention", "storage", "discard"):
                await self.create_err(nc, "E6", {"name": "E6", field: "foo"}, "bad_enum")
            await self.create_err(nc, "E7", {"name": "E7", "foo": 1}, "unknown_field")
            await self.create_err(nc, "E8", {"name": "E8", "subjects": ["a..b"]}, "bad_subject")
            await self.create_err(nc, "E8", {"name": "E8", "subjects": ["x", "x"]}, "dup_subject")
            await self.create_err(nc, "E8", {"name": "E8", "subjects": ["x.*", "x.a"]}, "self_overlap")
            await self.create_err(nc, "E9", {"name": "E9", "subjects": ["$JS.API.>"]}, "api_overlap")
            await self.create_err(nc, "E9", {"name": "E9", "subjects": ["e9"], "discard_new_per_subject": True},
                                  "dnps_needs_new")
            await self.create_err(nc, "E9", {"name": "E9", "subjects": ["e9"], "allow_rollup_hdrs": True,
                                             "deny_purge": True}, "rollup_needs_purge")
            await self.create_err(nc, "E9", {"name": "E9", "subjects": ["e9"], "sealed": True}, "sealed_create")
            await self.create_err(nc, "E9", {"name": "E9", "mirror_direct": True}, "mirror_direct")
            await self.create_err(nc, "E9", {"name": "E9", "subjects": ["st2.*"], "subject_transform":
                                             {"src": "st2.*", "dest": "x.{{wildcard(3)}}"}}, "bad_transform")
            await self.create_err(nc, "E9", {"name": "E9", "subjects": ["rp2.*"],
                                             "republish": {"src": "rp2.*", "dest": "rpo2.>"}}, "bad_republish")
            await self.create_err(nc, "E9", {"name": "E9", "subjects": ["e9"], "max_age": 10 ** 9,
                                             "duplicate_window": 5 * 10 ** 9}, "dup_window_gt_age")
            await self.create_err(nc, "x" * 300, {"name": "x" * 300, "subjects": ["e9"]}, "name_too_long")
            await self.create_err(nc, "E9", {"name": "E9", "subjects": ["rc.>"],
                                             "republish": {"src": "rc.>", "dest": "rc.x.>"}}, "republish_cycle")
            r = await self.req(nc, "$JS.API.STREAM.CREATE.E9", b"{bad")
            self.assertEqual(r["error"]["err_code"], 10025)
            self.assertTrue(r["error"]["description"].startswith("invalid JSON: "), r)
            # a name with a dot makes a subject no API handler serves: no answer
            with self.assertRaises(NatsTimeout):
                await nc.request("$JS.API.STREAM.CREATE.a.b", b'{"name":"a.b"}', timeout=1)
            names = await self.req(nc, "$JS.API.STREAM.NAMES", {"subject": "e9"})
            self.assertEqual(names["total"], 0)
            # nats-py refuses the bad name itself, before any request
            with self.assertRaises(Exception):
                await js.add_stream(name="bad.name", subjects=["bn"])
        self.js_test(body)

    # -- publishing --------------------------------------------------------------------
    def test_publish_acks_and_headers(self):
        async def body(nc, js):
            await self.create(nc, "P1", subjects=["p1.>"], storage="memory")
            self.assertEqual(await self.pub(nc, "p1.a"), {"stream": "P1", "seq": 1})
            self.assertEqual(await self.pub(nc, "p1.b"), {"stream": "P1", "seq": 2})
            self.assertEqual(await self.pub(nc, "p1.a", headers={"Nats-Msg-Id": "m1"}), {"stream": "P1", "seq": 3})
            self.assertEqual(await self.pub(nc, "p1.a", headers={"Nats-Msg-Id": "m1"}),
                             {"stream": "P1", "seq": 3, "duplicate": True})

            def failed(name):
                return {"error": EXPECTED[name], "stream": "P1", "seq": 0}
            self.assertEqual(await self.pub(nc, "p1.a", headers={"Nats-Expected-Stream": "OTHER"}),
                             failed("expected_stream"))
            self.assertEqual((await self.pub(nc, "p1.a", headers={"Nats-Expected-Stream": "P1"}))["seq"], 4)
            self.assertEqual(await self.pub(nc, "p1.a", headers={"Nats-Expected-Last-Sequence": "1"}),
                             {"error": e(400, 10071, "wrong last sequence: 4"), "stream": "P1", "seq": 0})
            self.assertEqual((await self.pub(nc, "p1.a", headers={"Nats-Expected-Last-Sequence": "4"}))["seq"], 5)
            self.assertEqual(await self.pub(nc, "p1.a", headers={"Nats-Expected-Last-Subject-Sequence": "1"}),
                             {"error": e(400, 10071, "wrong last sequence: 5"), "stream": "P1", "seq": 0})
            self.assertEqual((await self.pub(nc, "p1.b",
                                             headers={"Nats-Expected-Last-Subject-Sequence": "2"}))["seq"], 6)
            self.assertEqual(await self.pub(nc, "p1.a", headers={"Nats-Expected-Last-Msg-Id": "zz"}),
                             {"error": e(400, 10070, "wrong last msg ID: "), "stream": "P1", "seq": 0})
            self.assertEqual((await self.pub(nc, "p1.c", headers={"Nats-Msg-Id": "m2"}))["seq"], 7)
            self.assertEqual((await self.pub(nc, "p1.c", headers={"Nats-Expected-Last-Msg-Id": "m2"}))["seq"], 8)
            self.assertEqual(await self.pub(nc, "p1.a", headers={"Nats-Rollup": "sub"}),
                             failed("rollup_not_permitted"))
            self.assertEqual(await self.pub(nc, "p1.a", headers={"Nats-TTL": "1s"}), failed("ttl_disabled"))
            # nats-py's publish: the ack, and the error as an exception
            ack = await js.publish("p1.z", b"hi", headers={"Nats-Msg-Id": "m3"})
            self.assertEqual((ack.stream, ack.seq, ack.duplicate), ("P1", 9, None))
            ack = await js.publish("p1.z", b"hi", headers={"Nats-Msg-Id": "m3"})
            self.assertEqual((ack.seq, ack.duplicate), (9, True))
            with self.assertRaises(APIError) as cm:
                await js.publish("p1.z", b"hi", stream="NOPE")
            self.assertEqual(cm.exception.err_code, 10060)
            si = await js.stream_info("P1")
            # memory storage counts subject + headers + payload + 16 per message
            self.assertEqual((si.state.messages, si.state.first_seq, si.state.last_seq), (9, 1, 9))
            # publishing without a reply stores without an answer
            await nc.publish("p1.quiet", b"q")
            await flushed(nc)
            # nats-server stores it on another goroutine, after the PONG:
            # poll (bounded) rather than expect it at once
            for _ in range(100):
                si = await js.stream_info("P1")
                if si.state.last_seq == 10:
                    break
                await asyncio.sleep(0.05)
            self.assertEqual(si.state.last_seq, 10)
        self.js_test(body)

    def test_limits_discard_and_sizes(self):
        async def body(nc, js):
            await self.create(nc, "L1", subjects=["l1"], storage="memory", max_msgs=3)
            for _ in range(5):
                await self.pub(nc, "l1", b"12345")
            r = await self.req(nc, "$JS.API.STREAM.INFO.L1")
            st = r["state"]
            self.assertEqual((st["messages"], st["first_seq"], st["last_seq"]), (3, 3, 5))
            self.assertEqual(st["bytes"], 3 * (2 + 5 + 16))
            await self.create(nc, "L2", subjects=["l2"], max_msgs=2, discard="new")
            await self.pub(nc, "l2")
            await self.pub(nc, "l2")
            self.assertEqual(await self.pub(nc, "l2"), {"error": EXPECTED["max_msgs"], "stream": "L2", "seq": 0})
            await self.create(nc, "L3", subjects=["l3"], max_bytes=100, discard="new")
            self.assertEqual(await self.pub(nc, "l3", b"x" * 200),
                             {"error": EXPECTED["max_bytes"], "stream": "L3", "seq": 0})
            await self.create(nc, "L4", subjects=["l4.*"], max_msgs_per_subject=1, discard="new",
                              discard_new_per_subject=True)
            await self.pub(nc, "l4.a")
            self.assertEqual(await self.pub(nc, "l4.a"),
                             {"error": EXPECTED["max_per_subject"], "stream": "L4", "seq": 0})
            self.assertEqual((await self.pub(nc, "l4.b"))["seq"], 2)
            await self.create(nc, "L5", subjects=["l5.*"], max_msgs_per_subject=2)
            for i in range(3):
                await self.pub(nc, "l5.a", b"%d" % i)
            await self.pub(nc, "l5.b")
            r = await self.req(nc, "$JS.API.STREAM.INFO.L5", {"subjects_filter": ">"})
            self.assertEqual(r["state"]["subjects"], {"l5.a": 2, "l5.b": 1})
            self.assertEqual((r["total"], r["offset"], r["limit"]), (2, 0, 100000))
            await self.create(nc, "L6", subjects=["l6"], max_msg_size=10)
            self.assertEqual(await self.pub(nc, "l6", b"x" * 20), {"error": EXPECTED["too_big"], "stream": "L6",
                                                                    "seq": 0})
            self.assertEqual((await self.pub(nc, "l6", b"x" * 10))["seq"], 1)
        self.js_test(body)

    def test_max_age_expires_on_a_timer(self):
        async def body(nc, js):
            await self.create(nc, "A1", subjects=["a1"], storage="memory", max_age=1000000000)
            for _ in range(3):
                await self.pub(nc, "a1")
            r = await self.req(nc, "$JS.API.STREAM.INFO.A1")
            self.assertEqual(r["config"]["duplicate_window"], 1000000000)   # capped by max_age
            for _ in range(100):
                r = await self.req(nc, "$JS.API.STREAM.INFO.A1")
                if r["state"]["messages"] == 0:
                    break
                await asyncio.sleep(0.2)
            self.assertEqual(r["state"]["messages"], 0)
            self.assertEqual((r["state"]["first_seq"], r["state"]["last_seq"]), (4, 3))
        self.js_test(body)

    def test_rollup_and_ttl(self):
        async def body(nc, js):
            await self.create(nc, "R1", subjects=["r1.*"], storage="memory", allow_rollup_hdrs=True,
                              allow_msg_ttl=True)
            for i in range(3):
                await self.pub(nc, "r1.a", b"%d" % i)
            await self.pub(nc, "r1.b")

            def failed(name):
                return {"error": EXPECTED[name], "stream": "R1", "seq": 0}
            self.assertEqual(await self.pub(nc, "r1.a", headers={"Nats-Rollup": "bogus"}), failed("rollup_invalid"))
            self.assertEqual(await self.pub(nc, "r1.a", headers={"Nats-TTL": "bogus"}), failed("ttl_invalid"))
            self.assertEqual((await self.pub(nc, "r1.a", headers={"Nats-Rollup": "sub"}))["seq"], 5)
            r = await self.req(nc, "$JS.API.STREAM.INFO.R1", {"subjects_filter": ">"})
            self.assertEqual(r["state"]["subjects"], {"r1.a": 1, "r1.b": 1})
            self.assertEqual((await self.pub(nc, "r1.c", headers={"Nats-Rollup": "all"}))["seq"], 6)
            r = await self.req(nc, "$JS.API.STREAM.INFO.R1")
            self.assertEqual((r["state"]["messages"], r["state"]["first_seq"]), (1, 6))
            self.assertEqual((await self.pub(nc, "r1.t", headers={"Nats-TTL": "1s"}))["seq"], 7)
            for _ in range(100):
                r = await self.req(nc, "$JS.API.STREAM.INFO.R1")
                if r["state"]["messages"] == 1:
                    break
                await asyncio.sleep(0.2)
            self.assertEqual((r["state"]["messages"], r["state"]["last_seq"]), (1, 7))
        self.js_test(body)

    def test_interest_stream_without_consumers_keeps_nothing(self):
        async def body(nc, js):
            await self.create(nc, "I1", subjects=["i1"], retention="interest", storage="memory")
            self.assertEqual(await self.pub(nc, "i1"), {"stream": "I1", "seq": 1})
            r = await self.req(nc, "$JS.API.STREAM.INFO.I1")
            self.assertEqual((r["state"]["messages"], r["state"]["first_seq"], r["state"]["last_seq"]), (0, 2, 1))
        self.js_test(body)

    def test_republish_and_subject_transform(self):
        async def body(nc, js):
            await self.create(nc, "T1", subjects=["t1.>"], storage="memory",
                              subject_transform={"src": "t1.>", "dest": "t1x.>"},
                              republish={"src": "t1x.>", "dest": "rp1.>"})
            got = []
            async def on_msg(m):
                got.append(m)
            sub = await nc.subscribe("rp1.>", cb=on_msg)
            await flushed(nc)
            self.assertEqual(await self.pub(nc, "t1.a", b"hello", headers={"X-Mine": "1"}),
                             {"stream": "T1", "seq": 1})
            for _ in range(100):
                if got:
                    break
                await asyncio.sleep(0.05)
            self.assertEqual(len(got), 1)
            m = got[0]
            self.assertEqual((m.subject, m.data), ("rp1.a", b"hello"))
            self.assertEqual(m.headers["Nats-Stream"], "T1")
            self.assertEqual(m.headers["Nats-Subject"], "t1x.a")
            self.assertEqual(m.headers["Nats-Sequence"], "1")
            self.assertEqual(m.headers["Nats-Last-Sequence"], "0")
            self.assertEqual(m.headers["X-Mine"], "1")
            await sub.unsubscribe()
            r = await self.req(nc, "$JS.API.STREAM.MSG.GET.T1", {"seq": 1})
            self.assertEqual(r["message"]["subject"], "t1x.a")
        self.js_test(body)

    # -- reading and deleting --------------------------------------------------------------
    def test_msg_get(self):
        async def body(nc, js):
            await self.create(nc, "G1", subjects=["g1.*"])
            await self.pub(nc, "g1.a", b"one")
            await self.pub(nc, "g1.b", b"two", headers={"Nats-Msg-Id": "x"})
            await self.pub(nc, "g1.a", b"three")
            r = await self.req(nc, "$JS.API.STREAM.MSG.GET.G1", {"seq": 2})
            self.assertEqual(r["type"], "io.nats.jetstream.api.v1.stream_msg_get_response")
            m = r["message"]
            self.assertEqual((m["subject"], m["seq"], base64.b64decode(m["data"])), ("g1.b", 2, b"two"))
            self.assertEqual(base64.b64decode(m["hdrs"]), b"NATS/1.0\r\nNats-Msg-Id: x\r\n\r\n")
            self.assertTrue(m["time"].endswith("Z"))
            r = await self.req(nc, "$JS.API.STREAM.MSG.GET.G1", {"last_by_subj": "g1.a"})
            self.assertEqual(r["message"]["seq"], 3)
            self.assertNotIn("hdrs", r["message"])
            r = await self.req(nc, "$JS.API.STREAM.MSG.GET.G1", {"seq": 2, "next_by_subj": "g1.a"})
            self.assertEqual(r["message"]["seq"], 3)
            for req, err in (({"seq": 100}, "no_message"), ({}, "bad_request"),
                             ({"seq": 1, "last_by_subj": "g1.a"}, "bad_request")):
                r = await self.req(nc, "$JS.API.STREAM.MSG.GET.G1", req)
                self.assertEqual(r["error"], EXPECTED[err], req)
            r = await self.req(nc, "$JS.API.STREAM.MSG.GET.NOPE", {"seq": 1})
            self.assertEqual(r["error"], EXPECTED["not_found"])
            msg = await js.get_msg("G1", 1)
            self.assertEqual((msg.subject, msg.seq, msg.data), ("g1.a", 1, b"one"))
            msg = await js.get_last_msg("G1", "g1.b")
            self.assertEqual((msg.seq, msg.headers["Nats-Msg-Id"]), (2, "x"))
            with self.assertRaises(NotFoundError):
                await js.get_msg("G1", 50)
        self.js_test(body)

    def test_direct_get(self):
        async def body(nc, js):
            await self.create(nc, "DG", subjects=["dg.*"], allow_direct=True, allow_msg_ttl=True)
            await self.pub(nc, "dg.a", b"one")
            await self.pub(nc, "dg.b", b"two", headers={"Nats-TTL": "10s"})
            m = await nc.request("$JS.API.DIRECT.GET.DG", b'{"seq":2}', timeout=5)
            self.assertEqual(m.data, b"two")
            self.assertEqual((m.headers["Nats-Stream"], m.headers["Nats-Subject"], m.headers["Nats-Sequence"],
                              m.headers["Nats-TTL"]), ("DG", "dg.b", "2", "10s"))
            self.assertTrue(m.headers["Nats-Time-Stamp"].endswith("Z"))
            m = await nc.request("$JS.API.DIRECT.GET.DG.dg.a", b"", timeout=5)
            self.assertEqual((m.data, m.headers["Nats-Sequence"]), (b"one", "1"))
            for req, status, text in ((b'{"seq":99}', "404", "Message Not Found"),
                                      (b"{x", "408", "Malformed Request"),
                                      (b"", "408", "Empty Request"), (b"{}", "408", "Empty Request")):
                m = await nc.request("$JS.API.DIRECT.GET.DG", req, timeout=5)
                self.assertEqual((m.headers.get("Status"), m.headers.get("Description"), m.data),
                                 (status, text, b""), req)
            msg = await js.get_msg("DG", 1, direct=True)
            self.assertEqual((msg.subject, msg.data), ("dg.a", b"one"))
            # a stream without allow_direct has no direct-get responder
            await self.create(nc, "DN", subjects=["dn"])
            with self.assertRaises(NoRespondersError):
                await nc.request("$JS.API.DIRECT.GET.DN", b'{"seq":1}', timeout=5)
        self.js_test(body)

    def test_msg_delete(self):
        async def body(nc, js):
            await self.create(nc, "X1", subjects=["x1"])
            for _ in range(4):
                await self.pub(nc, "x1")
            r = await self.req(nc, "$JS.API.STREAM.MSG.DELETE.X1", {"seq": 2})
            self.assertEqual(r, {"type": "io.nats.jetstream.api.v1.stream_msg_delete_response", "success": True})
            r = await self.req(nc, "$JS.API.STREAM.MSG.DELETE.X1", {"seq": 2})
            self.assertEqual(r["error"], e(400, 10043, "sequence 2 not found"))
            r = await self.req(nc, "$JS.API.STREAM.MSG.DELETE.X1", {"seq": 3, "no_erase": True})
            self.assertEqual(r["success"], True)
            r = await self.req(nc, "$JS.API.STREAM.MSG.DELETE.X1", {"seq": 1000})
            self.assertEqual(r["error"], EXPECTED["store_eof"])
            r = await self.req(nc, "$JS.API.STREAM.INFO.X1", {"deleted_details": True})
            st = r["state"]
            self.assertEqual((st["messages"], st["first_seq"], st["last_seq"], st["num_deleted"], st["deleted"]),
                             (2, 1, 4, 2, [2, 3]))
            self.assertTrue(await js.delete_msg("X1", 1))
            await self.create(nc, "X2", subjects=["x2"], deny_delete=True)
            await self.pub(nc, "x2")
            r = await self.req(nc, "$JS.API.STREAM.MSG.DELETE.X2", {"seq": 1})
            self.assertEqual(r["error"], EXPECTED["delete_denied"])
        self.js_test(body)

    def test_purge(self):
        async def body(nc, js):
            await self.create(nc, "U1", subjects=["u1.*"])
            for s in ("a", "a", "b", "c", "c", "c", "c", "c"):
                await self.pub(nc, "u1." + s)
            r = await self.req(nc, "$JS.API.STREAM.PURGE.U1", {"filter": "u1.c", "keep": 2})
            self.assertEqual(r, {"type": "io.nats.jetstream.api.v1.stream_purge_response", "success": True,
                                 "purged": 3})
            r = await self.req(nc, "$JS.API.STREAM.PURGE.U1", {"seq": 3})
            self.assertEqual(r["purged"], 2)
            r = await self.req(nc, "$JS.API.STREAM.PURGE.U1", {"seq": 5, "keep": 1})
            self.assertEqual(r["error"], EXPECTED["bad_request"])
            self.assertEqual(r["purged"], 0)
            r = await self.req(nc, "$JS.API.STREAM.PURGE.U1", b"{x")
            self.assertEqual(r["error"]["err_code"], 10025)
            si = await js.stream_info("U1")
            self.assertEqual((si.state.messages, si.state.first_seq), (3, 3))
            self.assertTrue(await js.purge_stream("U1"))
            si = await js.stream_info("U1")
            self.assertEqual((si.state.messages, si.state.first_seq, si.state.last_seq), (0, 9, 8))
            r = await self.req(nc, "$JS.API.STREAM.PURGE.NOPE")
            self.assertEqual((r["error"], r["purged"]), (EXPECTED["not_found"], 0))
            await self.create(nc, "U2", subjects=["u2"], deny_purge=True)
            r = await self.req(nc, "$JS.API.STREAM.PURGE.U2")
            self.assertEqual(r["error"], EXPECTED["purge_denied"])
        self.js_test(body)

    # -- update, seal, delete -----------------------------------------------------------------
    def test_update_and_seal(self):
        async def body(nc, js):
            await self.create(nc, "V1", subjects=["v1.>"], storage="memory")
            await self.create(nc, "V2", subjects=["v2"])
            await self.pub(nc, "v1.a")
            r = await self.req(nc, "$JS.API.STREAM.UPDATE.V1", {"name": "V1", "subjects": ["v1.>", "v1x"],
                                                                "storage": "memory", "max_msgs": 10})
            self.assertEqual(r["type"], "io.nats.jetstream.api.v1.stream_update_response")
            self.assertEqual((r["config"]["subjects"], r["config"]["max_msgs"]), (["v1.>", "v1x"], 10))
            self.assertEqual((await self.pub(nc, "v1x"))["seq"], 2)
            for cfg, err in (({"name": "V1", "subjects": ["v1.>"]}, "update_storage"),
                             ({"name": "V1", "subjects": ["v1.>", "v2"], "storage": "memory"}, "overlap"),
                             ({"name": "V1", "subjects": ["v1.>"], "storage": "memory", "retention": "workqueue"},
                              "update_workqueue"),
                             ({"name": "X", "subjects": ["v1.>"], "storage": "memory"}, "name_mismatch")):
                r = await self.req(nc, "$JS.API.STREAM.UPDATE.V1", cfg)
                self.assertEqual(r.get("error"), EXPECTED[err], cfg)
            r = await self.req(nc, "$JS.API.STREAM.UPDATE.NOPE", {"name": "NOPE", "subjects": ["nope"]})
            self.assertEqual(r["error"], EXPECTED["not_found"])
            r = await self.req(nc, "$JS.API.STREAM.UPDATE.V1", {"name": "V1", "subjects": ["v1.>"],
                                                                "storage": "memory", "sealed": True})
            c = r["config"]
            self.assertEqual((c["sealed"], c["deny_delete"], c["deny_purge"], c["discard"]),
                             (True, True, True, "new"))
            r = await self.req(nc, "$JS.API.STREAM.UPDATE.V1", {"name": "V1", "subjects": ["v1.>"],
                                                                "storage": "memory"})
            self.assertEqual(r["error"], EXPECTED["update_unseal"])
            self.assertEqual(await self.pub(nc, "v1.a"), {"error": EXPECTED["sealed"], "stream": "V1", "seq": 0})
            r = await self.req(nc, "$JS.API.STREAM.PURGE.V1")
            self.assertEqual(r["error"], EXPECTED["sealed"])
            r = await self.req(nc, "$JS.API.STREAM.MSG.DELETE.V1", {"seq": 1})
            self.assertEqual(r["error"], EXPECTED["sealed"])
            # nats-py's update
            si = await js.update_stream(name="V2", subjects=["v2", "v2b"], description="now")
            self.assertEqual((si.config.subjects, si.config.description), (["v2", "v2b"], "now"))
        self.js_test(body)

    def test_delete(self):
        async def body(nc, js):
            await self.create(nc, "Z1", subjects=["z1"])
            await self.pub(nc, "z1")
            r = await self.req(nc, "$JS.API.STREAM.DELETE.Z1", b"{x")
            self.assertEqual(r["error"], EXPECTED["not_empty"])
            r = await self.req(nc, "$JS.API.STREAM.DELETE.Z1")
            self.assertEqual(r, {"type": "io.nats.jetstream.api.v1.stream_delete_response", "success": True})
            r = await self.req(nc, "$JS.API.STREAM.DELETE.Z1")
            self.assertEqual(r["error"], EXPECTED["not_found"])
            r = await self.req(nc, "$JS.API.STREAM.INFO.Z1")
            self.assertEqual(r, {"type": "io.nats.jetstream.api.v1.stream_info_response",
                                 "error": EXPECTED["not_found"], "total": 0, "offset": 0, "limit": 0})
            # the subject is free again: no stream answers it
            with self.assertRaises(NoRespondersError):
                await nc.request("z1", b"", timeout=2)
            # and another stream may take it
            await self.create(nc, "Z2", subjects=["z1"])
            with self.assertRaises(NotFoundError):
                await js.delete_stream("Z1")
        self.js_test(body)

    def test_names_and_list_paging(self):
        async def body(nc, js):
            for i in range(5):
                await self.create(nc, "N%d" % i, subjects=["nl.%d" % i])
            r = await self.req(nc, "$JS.API.STREAM.NAMES", {"subject": "nl.*"})
            self.assertEqual(r, {"type": "io.nats.jetstream.api.v1.stream_names_response", "total": 5,
                                 "offset": 0, "limit": 1024, "streams": ["N0", "N1", "N2", "N3", "N4"]})
            r = await self.req(nc, "$JS.API.STREAM.NAMES", {"subject": "nl.*", "offset": 3})
            self.assertEqual((r["total"], r["offset"], r["streams"]), (5, 3, ["N3", "N4"]))
            r = await self.req(nc, "$JS.API.STREAM.NAMES", {"subject": "nl.2"})
            self.assertEqual(r["streams"], ["N2"])
            r = await self.req(nc, "$JS.API.STREAM.NAMES", {"subject": "nomatch.x"})
            self.assertEqual((r["total"], r["streams"]), (0, None))
            r = await self.req(nc, "$JS.API.STREAM.NAMES", b"{x")
            self.assertEqual((r["error"]["err_code"], r["total"], r["streams"]), (10025, 0, None))
            r = await self.req(nc, "$JS.API.STREAM.LIST", {"subject": "nl.*", "offset": 4})
            self.assertEqual((r["type"], r["total"], r["offset"], r["limit"]),
                             ("io.nats.jetstream.api.v1.stream_list_response", 5, 4, 256))
            self.assertEqual([s["config"]["name"] for s in r["streams"]], ["N4"])
            self.assertEqual(set(r["streams"][0]), {"config", "created", "state", "ts"})
            r = await self.req(nc, "$JS.API.STREAM.LIST", {"subject": "nomatch.x"})
            self.assertEqual((r["total"], r["streams"]), (0, []))
            names = await js.streams_info()
            self.assertTrue({"N0", "N1", "N2", "N3", "N4"} <= {s.config.name for s in names})
        self.js_test(body)

    def test_stream_info_and_monitoring(self):
        async def body(nc, js):
            await self.create(nc, "M1", subjects=["m1.*"], storage="memory")
            for s in ("a", "b", "b"):
                await self.pub(nc, "m1." + s, b"12")
            r = await self.req(nc, "$JS.API.STREAM.INFO.M1")
            self.assertEqual(list(r)[:4], ["type", "total", "offset", "limit"])
            self.assertIn("cluster", r)
            st = r["state"]
            self.assertEqual((st["messages"], st["bytes"], st["num_subjects"], st["consumer_count"]),
                             (3, 3 * (4 + 2 + 16), 2, 0))
            r = await self.req(nc, "$JS.API.STREAM.INFO.M1", {"subjects_filter": "m1.b"})
            self.assertEqual(r["state"]["subjects"], {"m1.b": 2})
            return r
        self.js_test(body)
        port = self.srv.monitor_port
        jsz = json.loads(urllib.request.urlopen(
            "http://127.0.0.1:%d/jsz?accounts=true&streams=true&config=true" % port, timeout=10).read())
        self.assertEqual(jsz["config"]["store_dir"], self.store + "/jetstream")
        self.assertEqual(jsz["api"]["level"], 5)
        acc = jsz["account_details"][0]
        self.assertEqual(acc["name"], "$G")
        streams = dict((s["name"], s) for s in acc["stream_detail"])
        self.assertEqual(streams["M1"]["state"]["messages"], 3)
        self.assertEqual(streams["M1"]["config"]["subjects"], ["m1.*"])
        plain = json.loads(urllib.request.urlopen("http://127.0.0.1:%d/jsz" % port, timeout=10).read())
        self.assertNotIn("account_details", plain)
        self.assertGreaterEqual(plain["streams"], 1)
        self.assertEqual(plain["total"], 1)
        varz = json.loads(urllib.request.urlopen("http://127.0.0.1:%d/varz" % port, timeout=10).read())
        self.assertEqual(set(varz["jetstream"]), {"config", "stats", "limits"})
        self.assertEqual(varz["jetstream"]["config"]["store_dir"], self.store + "/jetstream")
        health = urllib.request.urlopen("http://127.0.0.1:%d/healthz?js-enabled-only=true" % port, timeout=10)
        self.assertEqual((health.status, json.loads(health.read())), (200, {"status": "ok"}))


@needs(nats is not None, "nats-py is not installed (pip install nats-py)")
class TestStreams(StreamsBehaviour, unittest.TestCase):
    """gnatsd.py."""

    def test_info_says_jetstream(self):
        from tests.util import RawClient
        c = RawClient(self.srv.port)
        try:
            info = json.loads(c.info.split(b" ", 1)[1])
        finally:
            c.close()
        self.assertIs(info["jetstream"], True)

    def test_republish_loop_between_streams_ends(self):
        # A republishes into B's subjects and B back into A's: each stream
        # stores a message once, the server stays responsive
        async def body(nc, js):
            await self.create(nc, "LA", subjects=["la.*"], storage="memory",
                              republish={"src": "la.*", "dest": "lb.{{wildcard(1)}}"})
            await self.create(nc, "LB", subjects=["lb.*"], storage="memory",
                              republish={"src": "lb.*", "dest": "la.{{wildcard(1)}}"})
            self.assertEqual(await self.pub(nc, "la.x"), {"stream": "LA", "seq": 1})
            await flushed(nc)
            a = await self.req(nc, "$JS.API.STREAM.INFO.LA")
            b = await self.req(nc, "$JS.API.STREAM.INFO.LB")
            self.assertEqual((a["state"]["messages"], b["state"]["messages"]), (1, 1))
            # a loop entered from outside: LC feeds LD, LD and LE feed each other
            await self.create(nc, "LC", subjects=["lc"], storage="memory", republish={"src": "lc", "dest": "ld"})
            await self.create(nc, "LD", subjects=["ld"], storage="memory", republish={"src": "ld", "dest": "le"})
            await self.create(nc, "LE", subjects=["le"], storage="memory", republish={"src": "le", "dest": "ld"})
            self.assertEqual(await self.pub(nc, "lc"), {"stream": "LC", "seq": 1})
            await flushed(nc)
            counts = [(await self.req(nc, "$JS.API.STREAM.INFO." + n))["state"]["messages"] for n in ("LD", "LE")]
            self.assertEqual(counts, [1, 1])
        self.js_test(body)

    def test_store_dir_locked_against_a_second_server(self):
        with self.assertRaises(RuntimeError) as cm:
            ServerProcess("-js", "-sd", self.store)
        self.assertIn("is in use by another server", str(cm.exception))


@needs(nats is not None and HAVE_GO_215, "nats-py and nats-server 2.15 (/opt/ns/bin/nats-server) are needed")
class TestStreamsOnGo(StreamsBehaviour, unittest.TestCase):
    """The same assertions on nats-server 2.15.1: the expectations are its behaviour."""
    exe = GO_SERVER_215


class ServerLimitsBehaviour:
    """max_memory_store: a reservation over it is refused at create, and
    publishes are refused once the usage is over it."""
    exe = None

    def test_max_memory_store(self):
        store = tempfile.mkdtemp(prefix="js-limits-")
        self.addCleanup(shutil.rmtree, store, True)
        srv = ServerProcess(config='jetstream { store_dir: "%s", max_memory_store: 2000 }\n' % store, exe=self.exe)
        self.addCleanup(srv.stop)

        async def go():
            nc = await nats.connect("nats://127.0.0.1:%d" % srv.port, connect_timeout=5, max_reconnect_attempts=0)
            try:
                r = await StreamsBehaviour.req(nc, "$JS.API.STREAM.CREATE.BIG",
                                               {"name": "BIG", "storage": "memory", "max_bytes": 5000})
                self.assertEqual(r["error"], e(500, 10028, "insufficient memory resources available"))
                r = await StreamsBehaviour.req(nc, "$JS.API.STREAM.CREATE.M", {"name": "M", "storage": "memory"})
                self.assertNotIn("error", r)
                acks = []
                for _ in range(30):
                    acks.append(await StreamsBehaviour.pub(nc, "M", b"x" * 100))
                    if "error" in acks[-1]:
                        break
                # 117 bytes each: the 18th crosses 2000, the 19th is refused
                self.assertEqual(len(acks), 19)
                self.assertEqual(acks[-1], {"error": e(503, 10023, "insufficient resources"), "stream": "M",
                                            "seq": 0})
            finally:
                await nc.close()
        asyncio.run(asyncio.wait_for(go(), 30))


@needs(nats is not None, "nats-py is not installed (pip install nats-py)")
class TestServerLimits(ServerLimitsBehaviour, unittest.TestCase):
    pass


@needs(nats is not None and HAVE_GO_215, "nats-py and nats-server 2.15 (/opt/ns/bin/nats-server) are needed")
class TestServerLimitsOnGo(ServerLimitsBehaviour, unittest.TestCase):
    exe = GO_SERVER_215


@needs(nats is not None, "nats-py is not installed (pip install nats-py)")
class TestClusterReach(unittest.TestCase):
    """Two routed nodes, JetStream on A only: a client of B uses it through
    ordinary interest, and each request is answered once."""

    def test_api_and_publish_through_a_route(self):
        store = tempfile.mkdtemp(prefix="js-cluster-")
        self.addCleanup(shutil.rmtree, store, True)
        a = ServerProcess("-js", "-sd", store, "--cluster", "nats://127.0.0.1:-1")
        self.addCleanup(a.stop)
        b = ServerProcess("--cluster", "nats://127.0.0.1:-1", "--routes",
                          "nats://127.0.0.1:%d" % a.cluster_port)
        self.addCleanup(b.stop)

        async def go():
            nc = await nats.connect("nats://127.0.0.1:%d" % b.port, connect_timeout=5, max_reconnect_attempts=0)
            try:
                js = nc.jetstream()
                info = None
                for _ in range(100):     # until the route carries A's interest
                    try:
                        info = await js.account_info()
                        break
                    except Exception:
                        await asyncio.sleep(0.1)
                self.assertIsNotNone(info)
                await js.add_stream(name="C1", subjects=["c1"], storage="memory")
                for i in range(3):
                    self.assertEqual((await js.publish("c1", b"%d" % i)).seq, i + 1)
                replies = []
                inbox = nc.new_inbox()

                async def on_reply(m):
                    replies.append(m)
                await nc.subscribe(inbox, cb=on_reply)
                await nc.publish("$JS.API.STREAM.INFO.C1", b"", reply=inbox)
                for _ in range(50):
                    if replies:
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.3)        # a second answer would be here by now
                self.assertEqual(len(replies), 1)
                self.assertEqual(json.loads(replies[0].data)["state"]["messages"], 3)
            finally:
                await nc.close()
        asyncio.run(asyncio.wait_for(go(), 30))


class TestConfig(unittest.TestCase):
    """The jetstream config keys and flags, ours."""

    def test_config_block_and_errors(self):
        from gnats.conf import ConfigError, parse
        from gnats.options import Options, apply_config
        o = apply_config(Options(), parse('jetstream { store_dir: "/tmp/x", max_memory_store: 1GB, '
                                          'max_file_store: 10GB, sync_interval: "10s" }'))
        self.assertEqual((o.jetstream, o.store_dir, o.jetstream_max_memory, o.jetstream_max_store,
                          o.jetstream_sync_interval), (True, "/tmp/x", 1 << 30, 10 << 30, 10.0))
        o = apply_config(Options(), parse("jetstream { sync_interval: always }"))
        self.assertTrue(o.jetstream_sync_always)
        for text in ("jetstream: enabled", "jetstream: true", "jetstream { enabled: true }"):
            self.assertTrue(apply_config(Options(), parse(text)).jetstream, text)
        self.assertFalse(apply_config(Options(), parse("jetstream: disabled")).jetstream)
        with self.assertRaises(ConfigError) as cm:
            apply_config(Options(), parse("jetstream {\n  foo: 1\n}"), "x.conf")
        self.assertTrue(str(cm.exception).endswith('2:3: unknown field "foo"'), str(cm.exception))
        with self.assertRaises(ConfigError):
            apply_config(Options(), parse("jetstream { max_memory_store: -1 }"))

    def test_command_line(self):
        from gnats.cli import build_options, parse_command_line
        o = build_options(parse_command_line(["-js", "-sd", "/tmp/y"]))
        self.assertEqual((o.jetstream, o.store_dir), (True, "/tmp/y"))
        o = build_options(parse_command_line(["--jetstream", "--store_dir", "/tmp/z"]))
        self.assertEqual((o.jetstream, o.store_dir), (True, "/tmp/z"))

    def test_unusable_store_dir_is_a_clear_error(self):
        d = tempfile.mkdtemp(prefix="js-ro-")
        self.addCleanup(shutil.rmtree, d, True)
        path = d + "/file"
        with open(path, "w") as f:
            f.write("not a directory")
        with self.assertRaises(RuntimeError) as cm:
            ServerProcess("-js", "-sd", path)
        self.assertIn("could not create JetStream storage directory", str(cm.exception))
        self.assertNotIn("Traceback", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
