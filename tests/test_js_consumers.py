"""JetStream consumers, black-box: nats-py (its JetStream client and raw
requests) against `python3 gnatsd.py -js`, and the same tests against
nats-server 2.15.1 (/opt/ns/bin/nats-server) so the expected values stay
true of the reference.

EXPECTED holds nats-server 2.15.1's answers, captured with nats-py against
`nats-server -js -sd DIR` on 2026-11-29: error bodies, the config a minimal
consumer gets, and the pull status replies.
"""

import asyncio
import importlib.util
import json
import shutil
import tempfile
import time
import unittest

from tests.util import flushed, GO_SERVER_215, HAVE_GO_215, ServerProcess, needs

try:
    import nats
    from nats.errors import NoRespondersError, TimeoutError as NatsTimeout
except ImportError:     # pragma: no cover
    nats = None

HAVE_FILESTORE = importlib.util.find_spec("gnats.jetstream.filestore") is not None


def e(code, err_code, description):
    return {"code": code, "err_code": err_code, "description": description}


EXPECTED = {
    "ack_update": e(500, 10012, "ack policy can not be updated"),
    "push_to_pull": e(500, 10012, "can not update push consumer to pull based"),
    "exists": e(400, 10148, "consumer already exists"),
    "not_exist": e(400, 10149, "consumer does not exist"),
    "filter_mismatch": e(400, 10131, "Consumer create request did not match filtered subject from create subject"),
    "filters_overlap": e(400, 10138, "consumer subject filters cannot overlap"),
    "both_filters": e(400, 10136, "consumer cannot have both FilterSubject and FilterSubjects specified"),
    "stream_not_found": e(404, 10059, "stream not found"),
    "stream_mismatch": e(400, 10056, "stream name in subject does not match request"),
    "durable_mismatch": e(400, 10017, "consumer name in subject does not match durable name in request"),
    "ephemeral_durable": e(400, 10020, "consumer expected to be ephemeral but a durable name was set in request"),
    "durable_not_set": e(400, 10018, "consumer expected to be durable but a durable name was not set"),
    "bad_name": e(500, 10052, "consumer name can not contain '.', '*', '>', '\\', '/'"),
    "seq_not_set": e(400, 10094, "consumer delivery policy is deliver by start sequence, but optional start "
                                 "sequence is not set"),
    "seq_also_set": e(400, 10094, "consumer delivery policy is deliver all, but optional start sequence is "
                                  "also set"),
    "lps_no_filter": e(400, 10094, "consumer delivery policy is deliver last per subject, but optional filter "
                                   "subject is not set"),
    "bad_enum": e(400, 10025, 'invalid JSON: can not unmarshal "\\"bogus\\""'),
    "unknown_field": e(400, 10025, 'invalid JSON: json: unknown field "bogus_field"'),
    "backoff": e(400, 10116, "max deliver is required to be > length of backoff values"),
    "fc_pull": e(400, 10089, "consumer flow control requires a push based consumer"),
    "fc_no_hb": e(400, 10108, "consumer with flow control also needs heartbeats"),
    "hb_pull": e(400, 10088, "consumer idle heartbeat requires a push based consumer"),
    "push_max_waiting": e(400, 10080, "consumer in push mode can not set max waiting"),
    "cycle": e(400, 10081, "consumer deliver subject forms a cycle"),
    "pull_rate": e(400, 10086, "consumer in pull mode can not have rate limit set"),
    "ack_wait_negative": e(400, 10183, "consumer ack wait needs to be positive"),
    "replicas": e(500, 10074, "replicas > 1 not supported in non-clustered mode"),
    "not_found": e(404, 10014, "consumer not found"),
    "wq_pull_ack": e(400, 10084, "consumer in pull mode requires explicit ack policy on workqueue stream"),
    "max_consumers": e(400, 10026, "maximum consumers limit reached"),
    "wq_not_unique": e(400, 10100, "filtered consumer not unique on workqueue stream"),
}

# nats-server 2.15.1's config for {"durable_name": "D", "ack_policy": "explicit"} (metadata aside)
DURABLE_DEFAULTS = {"durable_name": "D", "name": "D", "deliver_policy": "all", "ack_policy": "explicit",
                    "ack_wait": 30000000000, "max_deliver": -1, "replay_policy": "instant", "max_waiting": 512,
                    "max_ack_pending": 1000, "num_replicas": 0}
# ... and for an ephemeral {} (no name in the config, a 5 s inactive threshold)
EPHEMERAL_DEFAULTS = {"deliver_policy": "all", "ack_policy": "none", "max_deliver": -1,
                      "replay_policy": "instant", "max_waiting": 512, "inactive_threshold": 5000000000,
                      "num_replicas": 0}


async def wait_until(cond, timeout=15.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = await cond()
        if v:
            return v
        await asyncio.sleep(step)
    raise AssertionError("condition not met within %.0f s" % timeout)


class Inbox:
    """A raw subscription collecting every message (statuses included)."""

    def __init__(self):
        self.msgs = []

    async def start(self, nc, subject):
        async def cb(m):
            self.msgs.append(m)
        self.sub = await nc.subscribe(subject, cb=cb)
        return self

    async def wait(self, n, timeout=15.0):
        async def enough():
            return len(self.msgs) >= n
        await wait_until(enough, timeout)
        return self.msgs

    def statuses(self):
        return [(m.headers or {}).get("Status") for m in self.msgs]


class ConsumersBehaviour:
    exe = None

    @classmethod
    def setUpClass(cls):
        cls.store = tempfile.mkdtemp(prefix="js-consumers-")
        cls.srv = ServerProcess("-js", "-sd", cls.store, exe=cls.exe)
        cls.url = "nats://127.0.0.1:%d" % cls.srv.port

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        shutil.rmtree(cls.store, ignore_errors=True)

    def js_test(self, body, url=None):
        async def go():
            nc = await nats.connect(url or self.url, connect_timeout=5, max_reconnect_attempts=0)
            try:
                return await body(nc, nc.jetstream())
            finally:
                await nc.close()
        return asyncio.run(asyncio.wait_for(go(), 60))

    @staticmethod
    async def req(nc, subject, body=b"", timeout=5):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        m = await nc.request(subject, body, timeout=timeout)
        return json.loads(m.data)

    async def stream(self, nc, name, n=0, subject=None, **cfg):
        cfg.update(name=name, subjects=[(name.lower() + ".>")])
        r = await self.req(nc, "$JS.API.STREAM.CREATE." + name, cfg)
        self.assertNotIn("error", r, r)
        for i in range(n):
            await nc.request(subject or name.lower() + ".a", b"m%d" % i, timeout=5)
        return r

    async def consumer(self, nc, stream, cfg, name=None, expect=None):
        subj = "$JS.API.CONSUMER.CREATE." + stream + ("." + name if name else "")
        r = await self.req(nc, subj, {"stream_name": stream, "config": cfg})
        if expect is None:
            self.assertNotIn("error", r, r)
        else:
            self.assertEqual(r.get("error"), EXPECTED[expect], cfg)
        return r

    async def info(self, nc, stream, name):
        return await self.req(nc, "$JS.API.CONSUMER.INFO.%s.%s" % (stream, name))

    # -- API ---------------------------------------------------------------------
    def test_create_defaults_update_and_errors(self):
        async def body(nc, js):
            await self.stream(nc, "CA", 4)
            r = await self.consumer(nc, "CA", {"durable_name": "D", "ack_policy": "explicit"}, "D")
            cfg = dict(r["config"])
            self.assertEqual(cfg.pop("metadata")["_nats.req.level"], "0")
            self.assertEqual(cfg, DURABLE_DEFAULTS)
            self.assertEqual((r["name"], r["stream_name"], r["num_pending"], r["num_ack_pending"]), ("D", "CA", 4, 0))
            self.assertEqual(r["delivered"], {"consumer_seq": 0, "stream_seq": 0})
            r = await self.consumer(nc, "CA", {})
            cfg = dict(r["config"])
            cfg.pop("metadata")
            self.assertEqual(cfg, EPHEMERAL_DEFAULTS)
            self.assertEqual(len(r["name"]), 8)
            # the same config again is fine; an update may change max_deliver but not the ack policy
            await self.consumer(nc, "CA", {"durable_name": "D", "ack_policy": "explicit"}, "D")
            r = await self.consumer(nc, "CA", {"durable_name": "D", "ack_policy": "explicit", "max_deliver": 4}, "D")
            self.assertEqual(r["config"]["max_deliver"], 4)
            await self.consumer(nc, "CA", {"durable_name": "D", "ack_policy": "none"}, "D", "ack_update")
            r = await self.req(nc, "$JS.API.CONSUMER.CREATE.CA.D", {"stream_name": "CA", "action": "create",
                               "config": {"durable_name": "D", "ack_policy": "explicit", "max_deliver": 9}})
            self.assertEqual(r["error"], EXPECTED["exists"])
            r = await self.req(nc, "$JS.API.CONSUMER.CREATE.CA.N", {"stream_name": "CA", "action": "update",
                               "config": {"durable_name": "N", "ack_policy": "explicit"}})
            self.assertEqual(r["error"], EXPECTED["not_exist"])
            await self.consumer(nc, "CA", {"durable_name": "P", "deliver_subject": "dl.p"}, "P")
            await self.consumer(nc, "CA", {"durable_name": "P"}, "P", "push_to_pull")
            cases = [
                ({"durable_name": "R"}, "Q", "durable_mismatch"),
                ({"durable_name": "R"}, None, "ephemeral_durable"),
                ({"name": "a.b"}, None, "bad_name"),
                ({"deliver_policy": "by_start_sequence"}, None, "seq_not_set"),
                ({"deliver_policy": "all", "opt_start_seq": 3}, None, "seq_also_set"),
                ({"deliver_policy": "last_per_subject"}, None, "lps_no_filter"),
                ({"deliver_policy": "bogus"}, None, "bad_enum"),
                ({"bogus_field": 1}, None, "unknown_field"),
                ({"max_deliver": 1, "backoff": [10 ** 9, 2 * 10 ** 9]}, None, "backoff"),
                ({"flow_control": True}, None, "fc_pull"),
                ({"flow_control": True, "deliver_subject": "x.y"}, None, "fc_no_hb"),
                ({"idle_heartbeat": 500000000}, None, "hb_pull"),
                ({"max_waiting": 5, "deliver_subject": "x.y3"}, None, "push_max_waiting"),
                ({"deliver_subject": "ca.foo"}, None, "cycle"),
                ({"rate_limit_bps": 100}, None, "pull_rate"),
                ({"ack_wait": -5}, None, "ack_wait_negative"),
                ({"num_replicas": 3}, None, "replicas"),
                ({"filter_subjects": ["ca.a", "ca.*"]}, None, "filters_overlap"),
                ({"filter_subjects": ["ca.a"], "filter_subject": "ca.a"}, None, "both_filters"),
            ]
            for cfg, name, want in cases:
                await self.consumer(nc, "CA", cfg, name, want)
            r = await self.req(nc, "$JS.API.CONSUMER.CREATE.CA.F.ca.a", {"stream_name": "CA",
                               "config": {"name": "F", "filter_subject": "ca.b"}})
            self.assertEqual(r["error"], EXPECTED["filter_mismatch"])
            r = await self.req(nc, "$JS.API.CONSUMER.CREATE.NOPE", {"stream_name": "NOPE", "config": {}})
            self.assertEqual(r["error"], EXPECTED["stream_not_found"])
            r = await self.req(nc, "$JS.API.CONSUMER.CREATE.CA", {"stream_name": "X", "config": {}})
            self.assertEqual(r["error"], EXPECTED["stream_mismatch"])
            r = await self.req(nc, "$JS.API.CONSUMER.DURABLE.CREATE.CA.DD", {"stream_name": "CA", "config": {}})
            self.assertEqual(r["error"], EXPECTED["durable_not_set"])
            r = await self.req(nc, "$JS.API.CONSUMER.DURABLE.CREATE.CA.DD",
                               {"stream_name": "CA", "config": {"durable_name": "DD"}})
            self.assertEqual(r["name"], "DD")
            r = await self.req(nc, "$JS.API.CONSUMER.INFO.CA.NOPE")
            self.assertEqual(r["error"], EXPECTED["not_found"])
            r = await self.req(nc, "$JS.API.CONSUMER.NAMES.CA")
            self.assertEqual((r["total"], r["limit"]), (4, 1024))
            self.assertEqual([n for n in r["consumers"] if len(n) <= 2], ["D", "DD", "P"])
            r = await self.req(nc, "$JS.API.CONSUMER.LIST.CA")
            self.assertEqual(r["total"], 4)
            self.assertEqual(r["consumers"][0]["config"]["metadata"], {"_nats.req.level": "0"})
            r = await self.req(nc, "$JS.API.CONSUMER.DELETE.CA.D")
            self.assertEqual(r, {"type": "io.nats.jetstream.api.v1.consumer_delete_response", "success": True})
            r = await self.req(nc, "$JS.API.CONSUMER.DELETE.CA.D")
            self.assertEqual(r["error"], EXPECTED["not_found"])
            r = await self.req(nc, "$JS.API.CONSUMER.NAMES.NOPE")
            self.assertEqual(r["error"], EXPECTED["stream_not_found"])
        self.js_test(body)

    def test_max_consumers(self):
        async def body(nc, js):
            await self.stream(nc, "MC", max_consumers=2)
            for i in range(2):
                await self.consumer(nc, "MC", {"durable_name": "c%d" % i}, "c%d" % i)
            await self.consumer(nc, "MC", {"durable_name": "c2"}, "c2", "max_consumers")
            await self.consumer(nc, "MC", {"durable_name": "c1"}, "c1")    # an existing one is fine
        self.js_test(body)

    # -- pull --------------------------------------------------------------------
    def test_pull_fetch_exact_counts_and_state(self):
        async def body(nc, js):
            await self.stream(nc, "PF", 10)
            psub = await js.pull_subscribe("pf.>", durable="d1", stream="PF")
            msgs = await psub.fetch(3, timeout=5)
            self.assertEqual([m.data for m in msgs], [b"m0", b"m1", b"m2"])
            md = msgs[0].metadata
            self.assertEqual((md.sequence.stream, md.sequence.consumer, md.num_pending, md.num_delivered),
                             (1, 1, 9, 1))
            for m in msgs:
                await m.ack()
            msgs = await psub.fetch(20, timeout=2)
            self.assertEqual(len(msgs), 7)
            self.assertEqual(msgs[-1].metadata.num_pending, 0)

            async def acked():
                r = await self.info(nc, "PF", "d1")
                return r if r["ack_floor"]["stream_seq"] == 3 else None
            r = await wait_until(acked)
            self.assertEqual((r["num_ack_pending"], r["num_pending"], r["num_waiting"]), (7, 0, 0))
            self.assertEqual((r["delivered"]["consumer_seq"], r["delivered"]["stream_seq"]), (10, 10))
            self.assertEqual(r["ack_floor"]["consumer_seq"], 3)
            for m in msgs:
                await m.ack_sync()      # the double ack: the server answers each
            r = await self.info(nc, "PF", "d1")
            self.assertEqual((r["num_ack_pending"], r["ack_floor"]["stream_seq"]), (0, 10))
            with self.assertRaises(NatsTimeout):
                await psub.fetch(1, timeout=0.5)
        self.js_test(body)

    def test_pull_status_replies(self):
        async def body(nc, js):
            await self.stream(nc, "PS", 4)
            await self.consumer(nc, "PS", {"durable_name": "W", "ack_policy": "explicit", "max_waiting": 1}, "W")
            inbox = await Inbox().start(nc, "inb.>")
            nxt = "$JS.API.CONSUMER.MSG.NEXT.PS.W"
            await nc.publish(nxt, json.dumps({"batch": 5, "no_wait": True}).encode(), reply="inb.a")
            msgs = await inbox.wait(5)
            self.assertEqual([m.data for m in msgs[:4]], [b"m0", b"m1", b"m2", b"m3"])
            self.assertEqual(msgs[4].headers, {"Status": "404", "Description": "No Messages"})
            self.assertEqual(msgs[0].reply.split(".")[:7], ["$JS", "ACK", "PS", "W", "1", "1", "1"])
            self.assertEqual(msgs[0].reply.split(".")[8], "3")
            await nc.publish(nxt, json.dumps({"batch": 3, "expires": 300000000}).encode(), reply="inb.b")
            msgs = await inbox.wait(6)
            self.assertEqual(msgs[5].headers, {"Status": "408", "Description": "Request Timeout",
                                               "Nats-Pending-Messages": "3", "Nats-Pending-Bytes": "0"})
            await nc.request("ps.b", b"z" * 100, timeout=5)
            await nc.publish(nxt, json.dumps({"batch": 2, "max_bytes": 50, "expires": 10 ** 9}).encode(),
                             reply="inb.c")
            msgs = await inbox.wait(7)
            self.assertEqual(msgs[6].headers, {"Status": "409", "Description": "Message Size Exceeds MaxBytes",
                                               "Nats-Pending-Messages": "2", "Nats-Pending-Bytes": "50"})
            await nc.publish(nxt, b"", reply="inb.z")      # takes the big one
            msgs = await inbox.wait(8)
            self.assertEqual((msgs[7].subject, len(msgs[7].data)), ("ps.b", 100))
            # max_waiting 1: a second waiting request is refused
            await nc.publish(nxt, json.dumps({"batch": 1, "expires": 5 * 10 ** 9}).encode(), reply="inb.d")
            await flushed(nc)
            await asyncio.sleep(0.2)
            await nc.publish(nxt, json.dumps({"batch": 1, "expires": 5 * 10 ** 9}).encode(), reply="inb.e")
            msgs = await inbox.wait(9)
            self.assertEqual((msgs[8].subject, msgs[8].headers), ("inb.e", {"Status": "409",
                             "Description": "Exceeded MaxWaiting"}))
            r = await self.info(nc, "PS", "W")
            self.assertEqual(r["num_waiting"], 1)
            await self.req(nc, "$JS.API.CONSUMER.DELETE.PS.W")
            msgs = await inbox.wait(10)
            self.assertEqual((msgs[9].subject, msgs[9].headers), ("inb.d", {"Status": "409",
                             "Description": "Consumer Deleted"}))
            with self.assertRaises(NoRespondersError):
                await nc.request(nxt, b"", timeout=2)
        self.js_test(body)

    def test_no_wait_with_expires_and_heartbeat_limits(self):
        async def body(nc, js):
            await self.stream(nc, "NW", 2)
            await self.consumer(nc, "NW", {"durable_name": "W", "ack_policy": "explicit"}, "W")
            inbox = await Inbox().start(nc, "nwi.>")
            nxt = "$JS.API.CONSUMER.MSG.NEXT.NW.W"

            async def ask(tag, **req):
                await nc.publish(nxt, json.dumps(req).encode(), reply="nwi." + tag)
            # messages there: delivered, then 404 at once although it could wait
            await ask("a", batch=5, no_wait=True, expires=5 * 10 ** 9)
            msgs = await inbox.wait(3, timeout=3)
            self.assertEqual(inbox.statuses(), [None, None, "404"])
            # nothing there: it waits (a one-shot request) and ends after the first message
            await ask("b", batch=5, no_wait=True, expires=5 * 10 ** 9)
            await flushed(nc)
            await asyncio.sleep(0.3)
            self.assertEqual(len(inbox.msgs), 3)
            await nc.request("nw.c", b"late", timeout=5)
            msgs = await inbox.wait(5, timeout=3)
            self.assertEqual([(m.subject, m.data) for m in msgs[3:]], [("nw.c", b"late"), ("nwi.b", b"")])
            self.assertEqual(msgs[4].headers, {"Status": "404", "Description": "No Messages"})
            # a heartbeat over half the expiry, or without one, is refused
            await ask("c", batch=1, expires=2 * 10 ** 9, idle_heartbeat=1100000000)
            await ask("d", batch=1, idle_heartbeat=100000000)
            msgs = await inbox.wait(7, timeout=3)
            for m in msgs[5:]:
                self.assertEqual(m.headers, {"Status": "400", "Description": "Bad Request - heartbeat value too large"})
            # an accepted heartbeat: `100 Idle Heartbeat` while the request waits
            await ask("e", batch=1, expires=2 * 10 ** 9, idle_heartbeat=200000000)
            msgs = await inbox.wait(8, timeout=3)
            self.assertEqual((msgs[7].subject, msgs[7].headers), ("nwi.e", {"Status": "100",
                             "Description": "Idle Heartbeat", "Nats-Last-Consumer": "3", "Nats-Last-Stream": "3"}))
        self.js_test(body)

    # -- acknowledgements ---------------------------------------------------------------
    def test_nak_term_in_progress_and_ack_wait_redelivery(self):
        async def body(nc, js):
            await self.stream(nc, "AK", 4)
            await self.consumer(nc, "AK", {"durable_name": "A", "ack_policy": "explicit", "ack_wait": 10 ** 9}, "A")
            psub = await js.pull_subscribe_bind("A", stream="AK")
            msgs = await psub.fetch(4, timeout=5)
            self.assertEqual(len(msgs), 4)
            await msgs[0].nak()
            await msgs[1].term()
            await msgs[2].ack()
            await msgs[3].in_progress()
            again = await psub.fetch(1, timeout=5)
            self.assertEqual((again[0].data, again[0].metadata.num_delivered), (b"m0", 2))
            await again[0].ack()
            # m3 was never acked: redelivered after ack_wait (1 s)
            later = await psub.fetch(1, timeout=10)
            self.assertEqual((later[0].data, later[0].metadata.num_delivered), (b"m3", 2))
            await later[0].ack_sync()
            r = await self.info(nc, "AK", "A")
            self.assertEqual((r["num_ack_pending"], r["num_redelivered"], r["num_pending"]), (0, 0, 0))
            self.assertEqual(r["ack_floor"], dict(r["delivered"], last_active=r["ack_floor"]["last_active"]))
            with self.assertRaises(NatsTimeout):
                await psub.fetch(1, timeout=1.5)   # the termed message stays gone
        self.js_test(body)

    def test_max_deliver_and_advisory(self):
        async def body(nc, js):
            await self.stream(nc, "MD", 1)
            adv = await Inbox().start(nc, "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.MD.M")
            await self.consumer(nc, "MD", {"durable_name": "M", "ack_policy": "explicit", "ack_wait": 500000000,
                                           "max_deliver": 2}, "M")
            psub = await js.pull_subscribe_bind("M", stream="MD")
            first = await psub.fetch(1, timeout=5)
            second = await psub.fetch(1, timeout=10)
            self.assertEqual([first[0].metadata.num_delivered, second[0].metadata.num_delivered], [1, 2])
            with self.assertRaises(NatsTimeout):
                await psub.fetch(1, timeout=1.5)
            msgs = await adv.wait(1)
            a = json.loads(msgs[0].data)
            self.assertEqual((a["type"], a["stream"], a["consumer"], a["stream_seq"], a["deliveries"]),
                             ("io.nats.jetstream.advisory.v1.max_deliver", "MD", "M", 1, 2))
            r = await self.info(nc, "MD", "M")
            self.assertEqual((r["num_ack_pending"], r["num_redelivered"]), (0, 1))
        self.js_test(body)

    # -- deliver policies ---------------------------------------------------------------
    def test_deliver_policies(self):
        async def body(nc, js):
            await self.stream(nc, "DP")
            for subj in ("dp.a", "dp.b", "dp.a", "dp.c", "dp.b"):
                await nc.request(subj, subj.encode(), timeout=5)
            want = {"last": (5, 1), "new": (6, 0), "by_start_sequence": (3, 3), "last_per_subject": (3, 3)}
            for policy, (seq, pending) in want.items():
                cfg = {"deliver_policy": policy, "ack_policy": "explicit"}
                if policy == "by_start_sequence":
                    cfg["opt_start_seq"] = 3
                if policy == "last_per_subject":
                    cfg["filter_subject"] = "dp.*"
                r = await self.consumer(nc, "DP", cfg)
                self.assertEqual((r["num_pending"], r["delivered"]["stream_seq"]), (pending, seq - 1), policy)
            r = await self.consumer(nc, "DP", {"durable_name": "L", "deliver_policy": "last_per_subject",
                                               "filter_subject": "dp.*", "ack_policy": "explicit"}, "L")
            psub = await js.pull_subscribe_bind("L", stream="DP")
            msgs = await psub.fetch(3, timeout=5)
            self.assertEqual([m.metadata.sequence.stream for m in msgs], [3, 4, 5])
            r = await self.consumer(nc, "DP", {"durable_name": "F", "filter_subjects": ["dp.a", "dp.c"],
                                               "ack_policy": "explicit"}, "F")
            self.assertEqual(r["num_pending"], 3)
            psub = await js.pull_subscribe_bind("F", stream="DP")
            msgs = await psub.fetch(5, timeout=2)
            self.assertEqual([m.subject for m in msgs], ["dp.a", "dp.a", "dp.c"])
        self.js_test(body)

    # -- push ------------------------------------------------------------------------
    def test_push_queue_group_and_durable(self):
        async def body(nc, js):
            await self.stream(nc, "PQ", 0)
            got = {1: [], 2: []}

            def cb(k):
                async def f(m):
                    got[k].append(m.data)
                    await m.ack()
                return f
            await js.subscribe("pq.>", queue="q", cb=cb(1), stream="PQ")
            await js.subscribe("pq.>", queue="q", cb=cb(2), stream="PQ")
            for i in range(40):
                await nc.request("pq.a", b"%d" % i, timeout=5)

            async def all_in():
                return len(got[1]) + len(got[2]) >= 40
            await wait_until(all_in)
            await asyncio.sleep(0.3)
            self.assertEqual(sorted(got[1] + got[2], key=int), [b"%d" % i for i in range(40)])

            async def drained():
                r = await self.info(nc, "PQ", "q")
                return r if r["num_ack_pending"] == 0 else None
            r = await wait_until(drained)
            self.assertEqual((r["config"]["deliver_group"], r["delivered"]["stream_seq"]), ("q", 40))
        self.js_test(body)

    def test_ordered_consumer_and_heartbeats(self):
        async def body(nc, js):
            await self.stream(nc, "OC", 30)
            sub = await js.subscribe("oc.>", ordered_consumer=True, stream="OC", idle_heartbeat=0.2)
            data = []
            for _ in range(30):
                m = await sub.next_msg(timeout=5)
                data.append(m.data)
            self.assertEqual(data, [b"m%d" % i for i in range(30)])
            # a raw push consumer with heartbeats: idle, it sends `100 Idle Heartbeat`
            inbox = await Inbox().start(nc, "hb.in")
            await self.consumer(nc, "OC", {"deliver_subject": "hb.in", "idle_heartbeat": 200000000,
                                           "flow_control": True, "deliver_policy": "new"})
            msgs = await inbox.wait(1)
            self.assertEqual(msgs[0].headers["Status"], "100")
            self.assertEqual(msgs[0].headers["Description"], "Idle Heartbeat")
            self.assertEqual((msgs[0].headers["Nats-Last-Consumer"], msgs[0].headers["Nats-Last-Stream"]),
                             ("0", "30"))
        self.js_test(body)

    def test_flow_control_paces_a_large_push(self):
        async def body(nc, js):
            await self.stream(nc, "FC")
            payload = b"x" * 4096
            for i in range(1500):       # 6 MB: several flow-control rounds of the 2 MiB window
                await nc.publish("fc.a", payload)
            await flushed(nc)

            async def stored():
                si = await js.stream_info("FC")
                return si.state.messages == 1500
            await wait_until(stored)
            inbox = Inbox()

            async def on_msg(m):
                inbox.msgs.append(m)
                if m.reply and m.reply.startswith("$JS.FC."):
                    await nc.publish(m.reply, b"")     # the answer a client gives
            await nc.subscribe("fcin.x", cb=on_msg)
            await self.consumer(nc, "FC", {"deliver_subject": "fcin.x", "idle_heartbeat": 10 ** 9,
                                           "flow_control": True, "ack_policy": "none"})

            async def all_in():
                return sum(1 for m in inbox.msgs if m.data == payload) >= 1500
            await wait_until(all_in, timeout=30)
            fc = [m for m in inbox.msgs if (m.headers or {}).get("Description") == "FlowControl Request"]
            self.assertGreaterEqual(len(fc), 1)
            self.assertTrue(all(m.reply.startswith("$JS.FC.FC.") for m in fc))
        self.js_test(body)

    # -- retention -------------------------------------------------------------------
    def test_workqueue_removes_acked_and_refuses_overlap(self):
        async def body(nc, js):
            await self.stream(nc, "WQ", 3, retention="workqueue")
            await self.consumer(nc, "WQ", {"durable_name": "w", "ack_policy": "none"}, "w", "wq_pull_ack")
            await self.consumer(nc, "WQ", {"durable_name": "w", "ack_policy": "explicit"}, "w")
            await self.consumer(nc, "WQ", {"durable_name": "v", "ack_policy": "explicit",
                                           "filter_subject": "wq.a"}, "v", "wq_not_unique")
            psub = await js.pull_subscribe_bind("w", stream="WQ")
            msgs = await psub.fetch(3, timeout=5)
            await msgs[0].ack_sync()
            await msgs[2].ack_sync()
            si = await js.stream_info("WQ")
            self.assertEqual((si.state.messages, si.state.first_seq), (1, 2))
        self.js_test(body)

    def test_interest_keeps_until_every_consumer_acked(self):
        async def body(nc, js):
            await self.stream(nc, "IN", 0, retention="interest")
            await self.consumer(nc, "IN", {"durable_name": "a", "ack_policy": "explicit"}, "a")
            await self.consumer(nc, "IN", {"durable_name": "b", "ack_policy": "explicit"}, "b")
            for i in range(2):
                await nc.request("in.x", b"%d" % i, timeout=5)
            pa = await js.pull_subscribe_bind("a", stream="IN")
            pb = await js.pull_subscribe_bind("b", stream="IN")
            for m in await pa.fetch(2, timeout=5):
                await m.ack_sync()
            si = await js.stream_info("IN")
            self.assertEqual(si.state.messages, 2)
            mb = await pb.fetch(2, timeout=5)
            await mb[0].ack_sync()
            si = await js.stream_info("IN")
            self.assertEqual((si.state.messages, si.state.first_seq), (1, 2))
        self.js_test(body)


@needs(nats is not None, "nats-py is not installed (pip install nats-py)")
class TestConsumers(ConsumersBehaviour, unittest.TestCase):
    pass


@needs(nats is not None and HAVE_GO_215, "nats-py and nats-server 2.15 (/opt/ns/bin/nats-server) are needed")
class TestConsumersOnGo(ConsumersBehaviour, unittest.TestCase):
    exe = GO_SERVER_215


@needs(nats is not None, "nats-py is not installed (pip install nats-py)")
class TestDurableAcrossRestart(unittest.TestCase):
    """Acked messages are not redelivered after a restart (kill -9 included);
    the unacked ones are. Needs file storage (gnats.jetstream.filestore)."""

    def run_case(self, exe, kill):
        store = tempfile.mkdtemp(prefix="js-cons-restart-")
        self.addCleanup(shutil.rmtree, store, True)

        async def phase1(nc, js):
            await js.add_stream(name="RS", subjects=["rs.>"])
            for i in range(6):
                await js.publish("rs.a", b"%d" % i)
            await js.add_consumer("RS", durable_name="dur", ack_policy="explicit", ack_wait=1.0)
            psub = await js.pull_subscribe_bind("dur", stream="RS")
            msgs = await psub.fetch(4, timeout=5)
            for m in msgs[:3]:
                await m.ack_sync()

        async def phase2(nc, js):
            psub = await js.pull_subscribe_bind("dur", stream="RS")
            await asyncio.sleep(1.5)    # the unacked one comes back after ack_wait
            msgs = await psub.fetch(10, timeout=3)
            return [(m.data, m.metadata.num_delivered) for m in msgs]

        srv = ServerProcess("-js", "-sd", store, exe=exe)
        try:
            self.run_phase(srv, phase1)
            time.sleep(0.3)
        finally:
            if kill:
                srv.proc.kill()
                srv.proc.wait(5)
            srv.stop()
        srv = ServerProcess("-js", "-sd", store, exe=exe)
        try:
            got = self.run_phase(srv, phase2)
        finally:
            srv.stop()
        self.assertEqual(got, [(b"3", 2), (b"4", 1), (b"5", 1)])

    def run_phase(self, srv, body):
        async def go():
            nc = await nats.connect("nats://127.0.0.1:%d" % srv.port, connect_timeout=5, max_reconnect_attempts=0)
            try:
                return await body(nc, nc.jetstream())
            finally:
                await nc.close()
        return asyncio.run(asyncio.wait_for(go(), 60))

    @unittest.skipUnless(HAVE_FILESTORE, "file storage (gnats.jetstream.filestore) is not in this tree")
    def test_restart(self):
        self.run_case(None, False)

    @unittest.skipUnless(HAVE_FILESTORE, "file storage (gnats.jetstream.filestore) is not in this tree")
    def test_kill_9(self):
        self.run_case(None, True)

    @unittest.skipUnless(HAVE_GO_215, "nats-server 2.15 is needed")
    def test_restart_on_go(self):
        self.run_case(GO_SERVER_215, False)


if __name__ == "__main__":
    unittest.main()
