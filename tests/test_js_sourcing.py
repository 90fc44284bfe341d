"""JetStream mirrors and sources, black-box: nats-py (raw API requests and
its JetStream client) against `python3 gnatsd.py -js`, and the same tests
against nats-server 2.15.1 (/opt/ns/bin/nats-server), so the expectations
stay true of the reference.

The error bodies and the STREAM.INFO `mirror`/`sources` shapes below were
captured from nats-server 2.15.1 over a socket (nats-py requests to
`nats-server -js -sd DIR`, 2026-11-29). nats-server copies through an
internal consumer and retries a missing origin with a back-off of several
seconds, so the waits here are generous (60 s); ours copies within a
reactor turn or two.
"""

import asyncio
import base64
import datetime
import hashlib
import json
import shutil
import tempfile
import time
import unittest

from tests.util import flushed, GO_SERVER_215, HAVE_GO_215, ServerProcess, needs

try:
    import nats
    from nats.errors import NoRespondersError
except ImportError:     # pragma: no cover
    nats = None

WAIT = 60.0


def e(code, err_code, description):
    return {"code": code, "err_code": err_code, "description": description}


# bad configs -> nats-server 2.15.1's error bodies (an origin "O" on "o.>" exists)
BAD_CONFIGS = [
    ({"mirror": {"name": "O"}, "subjects": ["e"]}, e(400, 10034, "stream mirrors can not contain subjects")),
    ({"mirror": {"name": "O"}, "sources": [{"name": "O"}]},
     e(400, 10031, "stream mirrors can not also contain other sources")),
    ({"mirror": {"name": "O"}, "first_seq": 5},
     e(400, 10143, "stream mirrors can not have first sequence configured")),
    ({"mirror": {"name": "O", "filter_subject": "o.1", "subject_transforms": [{"src": "o.2", "dest": "x"}]}},
     e(400, 10150, "mirror with multiple subject transforms cannot also have a single subject filter")),
    ({"mirror": {"name": "O.x"}}, e(400, 10142, "mirrored stream name is invalid")),
    ({"mirror": {"name": ""}}, e(400, 10142, "mirrored stream name is invalid")),
    ({"mirror": {"name": "O", "subject_transforms": [{"src": "o..", "dest": "x"}]}},
     e(400, 10151, "mirror transform source: invalid subject o..")),
    ({"mirror": {"name": "O", "subject_transforms": [{"src": "o.*", "dest": "x.$3"}]}},
     e(400, 10154, "mirror transform: invalid mapping destination: wildcard index out of range in $3: [3]")),
    ({"mirror": {"name": "O", "subject_transforms": [{"src": "o.*", "dest": "x.$1"}, {"src": "o.>", "dest": "y.>"}]}},
     e(400, 10152, "mirror subject filters can not overlap")),
    ({"mirror": {"name": "O", "filter_subject": "o.."}},
     e(500, 10049, "subject filter 'o..' for the mirror invalid subject")),
    ({"mirror": {"name": "O"}, "subject_delete_marker_ttl": 2000000000},
     e(500, 10052, "subject delete markers forbidden on mirrors")),
    ({"sources": [{"name": "a b"}]}, e(400, 10141, "sourced stream name is invalid")),
    ({"sources": [None]}, e(400, 10141, "sourced stream name is invalid")),
    ({"sources": [{"name": "O"}, {"name": "O"}]}, e(400, 10140, "duplicate source configuration detected")),
    ({"sources": [{"name": "O", "filter_subject": ">"}, {"name": "O"}]},
     e(400, 10140, "duplicate source configuration detected")),
    ({"sources": [{"name": "O", "filter_subject": "o.1", "subject_transforms": [{"src": "o.2", "dest": "x"}]}]},
     e(400, 10144, "source with multiple subject transforms cannot also have a single subject filter")),
    ({"sources": [{"name": "O", "subject_transforms": [{"src": "o..", "dest": "x"}]}]},
     e(400, 10145, "source transform source: invalid subject o..")),
    ({"sources": [{"name": "O", "subject_transforms": [{"src": "a.*", "dest": "b.*"}]}]},
     e(400, 10146, "source transform: invalid subject")),
    ({"sources": [{"name": "O", "subject_transforms": [{"src": ">", "dest": "a.>"}, {"src": ">", "dest": "b.>"}]}]},
     e(400, 10147, "source filters can not overlap")),
    ({"sources": [{"name": "O", "filter_subject": "o.."}]},
     e(500, 10049, "subject filter 'o..' for the source: invalid subject")),
    ({"sources": [{"name": "O", "external": {"api": "$JS.API", "deliver": ""}}]},
     e(400, 10021, "stream external api prefix $JS.API must not overlap with $JS.API")),
    ({"sources": [{"name": "O", "external": {"api": "$JS.*.API", "deliver": ""}}]},
     e(500, 10052, 'stream external api prefix "$JS.*.API" must be a valid subject without wildcards')),
    ({"sources": [{"name": "O", "external": {"api": "$JS.hub.API", "deliver": "dl.*"}}]},
     e(400, 10024, "stream external delivery prefix dl.* must not contain wildcards")),
    ({"sources": [{"name": "O", "consumer": {"name": "c", "deliver_subject": "d.*"}}]},
     e(400, 10215, "stream source consumer config is invalid")),
    ({"sources": [{"name": "O", "domain": "hub"}]}, e(400, 10025, 'invalid JSON: json: unknown field "domain"')),
    ({"sources": [{"name": "O", "bogus": 1}]}, e(400, 10025, 'invalid JSON: json: unknown field "bogus"')),
    ({"mirror": "O"}, e(400, 10025, "invalid JSON: json: cannot unmarshal string into Go struct field "
                                    "StreamConfigRequest.mirror of type server.StreamSource")),
    ({"sources": {"name": "O"}}, e(400, 10025, "invalid JSON: json: cannot unmarshal object into Go struct field "
                                               "StreamConfigRequest.sources of type []*server.StreamSource")),
    ({"sources": [{"name": "O", "opt_start_seq": "1"}]},
     e(400, 10025, "invalid JSON: json: cannot unmarshal string into Go struct field "
                   "StreamConfigRequest.sources.0.opt_start_seq of type uint64")),
    ({"mirror": {"name": "O", "opt_start_seq": -1}},
     e(400, 10025, "invalid JSON: json: cannot unmarshal number -1 into Go struct field "
                   "StreamConfigRequest.mirror.opt_start_seq of type uint64")),
    ({"sources": [{"name": "O", "opt_start_time": "yesterday"}]},
     e(400, 10025, 'invalid JSON: parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse '
                   '"yesterday" as "2006"')),
    ({"sources": [{"name": "O", "subject_transforms": [{"src": "a", "dest": "b", "x": 1}]}]},
     e(400, 10025, 'invalid JSON: json: unknown field "x"')),
]
CYCLE = e(500, 10052, "detected cycle")
NOT_UPDATABLE = e(400, 10055, "stream mirror configuration can not be updated")
MIRROR_SUBJECTS = e(400, 10034, "stream mirrors can not contain subjects")
SOURCE_HEADER = e(400, 10227, "message stream source header is not allowed")
NOT_FOUND = e(404, 10059, "stream not found")

_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def by_filter(blocks):
    """Sources blocks in a stable order: nats-server lists them from a map."""
    return sorted(blocks, key=lambda b: json.dumps(b, sort_keys=True))


def stream_identity(created):
    """nats-server's identity of a stream: getHash of its creation time."""
    return "".join(_DIGITS[b % 62] for b in hashlib.sha256(created.encode()).digest()[:8])


class JsApiHelpers:
    """JetStream API requests and waits on STREAM.INFO (a TestCase mixin;
    tests/test_js_external.py uses it too)."""

    @staticmethod
    async def req(nc, subject, body=b""):
        if body is None or isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        m = await nc.request(subject, body, timeout=10)
        return json.loads(m.data)

    async def create(self, nc, name, **cfg):
        cfg["name"] = name
        r = await self.req(nc, "$JS.API.STREAM.CREATE." + name, cfg)
        self.assertNotIn("error", r, r)
        return r

    async def info(self, nc, name):
        r = await self.req(nc, "$JS.API.STREAM.INFO." + name)
        self.assertNotIn("error", r, r)
        return r

    async def wait_info(self, nc, name, cond, what):
        deadline = time.monotonic() + WAIT
        while True:
            r = await self.info(nc, name)
            if cond(r):
                return r
            if time.monotonic() > deadline:
                self.fail("%s: %s never came: %s" % (name, what, json.dumps(r)))
            await asyncio.sleep(0.1)

    async def get(self, nc, name, seq):
        r = await self.req(nc, "$JS.API.STREAM.MSG.GET." + name, {"seq": seq})
        m = r.get("message")
        if m is None:
            return None
        m["hdrs"] = base64.b64decode(m.get("hdrs", ""))
        m["data"] = base64.b64decode(m.get("data", ""))
        return m

    async def all_msgs(self, nc, name):
        st = (await self.info(nc, name))["state"]
        out = []
        for seq in range(max(st["first_seq"], 1), st["last_seq"] + 1):
            m = await self.get(nc, name, seq)
            if m is not None:
                out.append(m)
        return out


class SourcingBehaviour(JsApiHelpers):
    """The tests, run against one server per test (`exe`: None for ours)."""
    exe = None

    def setUp(self):
        self.store = tempfile.mkdtemp(prefix="js-sourcing-")
        self.addCleanup(shutil.rmtree, self.store, True)
        self.srv = self.start()

    def start(self):
        srv = ServerProcess("-js", "-sd", self.store, exe=self.exe)
        self.addCleanup(srv.stop)
        return srv

    def js_test(self, body, srv=None):
        srv = srv or self.srv

        async def go():
            nc = await nats.connect("nats://127.0.0.1:%d" % srv.port, connect_timeout=5, max_reconnect_attempts=0)
            try:
                return await body(nc, nc.jetstream())
            finally:
                await nc.close()
        return asyncio.run(asyncio.wait_for(go(), 3 * WAIT))

    async def wait_last(self, nc, name, last_seq, msgs=None):
        r = await self.wait_info(nc, name, lambda r: r["state"]["last_seq"] >= last_seq,
                                 "last_seq %d" % last_seq)
        self.assertEqual(r["state"]["last_seq"], last_seq)
        if msgs is not None:
            self.assertEqual(r["state"]["messages"], msgs)
        return r

    # -- mirrors ---------------------------------------------------------------
    def test_mirror_copies_every_message_with_its_sequence(self):
        async def body(nc, js):
            await self.create(nc, "O", subjects=["o.>"])
            for i in range(10):
                await js.publish("o.%d" % (i % 3), b"early-%d" % i, headers={"H": str(i)})
            await js.delete_msg("O", 4)
            await self.create(nc, "M", mirror={"name": "O"})
            for i in range(10, 25):
                await js.publish("o.%d" % (i % 3), b"late-%d" % i)
            await self.wait_last(nc, "M", 25, msgs=24)
            origin = await self.all_msgs(nc, "O")
            mirror = await self.all_msgs(nc, "M")
            self.assertEqual(len(origin), 24)
            # same sequences, subjects, headers, payloads and times
            self.assertEqual(mirror, origin)
            self.assertIsNone(await self.get(nc, "M", 4))
            cfg = (await self.info(nc, "M"))["config"]
            self.assertNotIn("subjects", cfg)
            self.assertNotIn("duplicate_window", cfg)
            # no subjects: a publish to the mirror's name finds no stream
            with self.assertRaises(NoRespondersError):
                await nc.request("M", b"direct", timeout=5)
        self.js_test(body)

    def test_mirror_start_sequence_filter_and_transform(self):
        async def body(nc, js):
            await self.create(nc, "Q", subjects=["q.>"])
            for i in range(6):
                await js.publish("q.%d" % (i % 3), b"q%d" % i)
            await self.create(nc, "MS", mirror={"name": "Q", "opt_start_seq": 3})
            await self.create(nc, "MF", mirror={"name": "Q", "filter_subject": "q.1"})
            await self.create(nc, "MT", mirror={"name": "Q", "subject_transforms": [{"src": "q.2", "dest": "z.2"}]})
            ms = await self.wait_last(nc, "MS", 6, msgs=4)
            self.assertEqual(ms["state"]["first_seq"], 3)
            self.assertEqual([(m["seq"], m["subject"]) for m in await self.all_msgs(nc, "MS")],
                             [(3, "q.2"), (4, "q.0"), (5, "q.1"), (6, "q.2")])
            mf = await self.wait_last(nc, "MF", 5, msgs=2)
            # the filter's gaps are deleted sequences of the mirror
            self.assertEqual((mf["state"]["first_seq"], mf["state"]["num_deleted"]), (2, 2))
            self.assertEqual([(m["seq"], m["subject"]) for m in await self.all_msgs(nc, "MF")],
                             [(2, "q.1"), (5, "q.1")])
            await self.wait_last(nc, "MT", 6, msgs=2)
            self.assertEqual([(m["seq"], m["subject"]) for m in await self.all_msgs(nc, "MT")],
                             [(3, "z.2"), (6, "z.2")])
        self.js_test(body)

    def test_mirror_applies_rollups_and_ttls_only_when_its_config_allows(self):
        async def body(nc, js):
            await self.create(nc, "O", subjects=["o.>"], allow_rollup_hdrs=True, allow_msg_ttl=True)
            await self.create(nc, "M", mirror={"name": "O"}, allow_rollup_hdrs=True)
            await self.create(nc, "M2", mirror={"name": "O"})
            for n in ("M", "M2"):   # copying from the start (nats-server sets up a consumer first)
                await self.wait_info(nc, n, lambda r: r["mirror"]["active"] >= 0, "contact")
            for i in range(3):
                await js.publish("o.a", b"x%d" % i)
            await js.publish("o.b", b"y")
            await js.publish("o.a", b"roll", headers={"Nats-Rollup": "sub"})
            await js.publish("o.c", b"ttl", headers={"Nats-TTL": "1s"})
            m = await self.wait_last(nc, "M", 6, msgs=3)
            self.assertEqual(m["state"]["first_seq"], 4)
            await self.wait_last(nc, "M2", 6, msgs=6)
            await self.wait_info(nc, "O", lambda r: r["state"]["messages"] == 2, "the TTL expiry")
            self.assertEqual((await self.info(nc, "M"))["state"]["messages"], 3)
        self.js_test(body)

    def test_mirror_update_rules_and_promotion(self):
        async def body(nc, js):
            await self.create(nc, "O", subjects=["o.>"])
            for i in range(4):
                await js.publish("o.%d" % i, b"m")
            await self.create(nc, "M", mirror={"name": "O"})
            await self.wait_last(nc, "M", 4, msgs=4)
            r = await self.req(nc, "$JS.API.STREAM.UPDATE.M", {"name": "M", "mirror": {"name": "O", "filter_subject": "o.1"}})
            self.assertEqual(r["error"], NOT_UPDATABLE)
            r = await self.req(nc, "$JS.API.STREAM.UPDATE.M", {"name": "M", "mirror": {"name": "O"}, "subjects": ["zz"]})
            self.assertEqual(r["error"], MIRROR_SUBJECTS)
            r = await self.req(nc, "$JS.API.STREAM.UPDATE.M", {"name": "M", "mirror": {"name": "O"}, "max_msgs": 100})
            self.assertNotIn("error", r)
            self.assertEqual(r["config"]["max_msgs"], 100)
            await self.create(nc, "N", subjects=["n"])
            r = await self.req(nc, "$JS.API.STREAM.UPDATE.N", {"name": "N", "mirror": {"name": "O"}})
            self.assertEqual(r["error"], NOT_UPDATABLE)
            # removing the mirror promotes it to a plain stream on its name
            r = await self.req(nc, "$JS.API.STREAM.UPDATE.M", {"name": "M"})
            self.assertNotIn("error", r)
            self.assertEqual((r["config"]["subjects"], r["config"]["duplicate_window"]), (["M"], 120000000000))
            self.assertNotIn("mirror", r)
            self.assertEqual(r["state"]["messages"], 4)
            self.assertEqual((await js.publish("M", b"own")).seq, 5)
            await js.publish("o.9", b"not copied any more")
            await flushed(nc)
            await asyncio.sleep(0.5)
            self.assertEqual((await self.info(nc, "M"))["state"]["last_seq"], 5)
        self.js_test(body)

    # -- sources -----------------------------------------------------------------
    def test_sources_merge_two_streams_with_filter_and_transform(self):
        async def body(nc, js):
            a = await self.create(nc, "A", subjects=["a.*"])
            b = await self.create(nc, "B", subjects=["b.*"])
            for i in range(6):
                await js.publish("a.%d" % (i % 2), b"a%d" % i, headers={"Nats-Expected-Stream": "A"})
                await js.publish("b.%d" % (i % 3), b"b%d" % i)
            await self.create(nc, "S", subjects=["s"], sources=[
                {"name": "A", "filter_subject": "a.1"},
                {"name": "B", "subject_transforms": [{"src": "b.*", "dest": "x.{{wildcard(1)}}"}]}])
            await js.publish("a.1", b"a-late")
            await js.publish("b.0", b"b-late")
            await js.publish("s", b"own")
            # a.1: 3 + 1, b.*: 6 + 1, own: 1
            await self.wait_info(nc, "S", lambda r: r["state"]["messages"] >= 12, "12 messages")
            await flushed(nc)
            await asyncio.sleep(0.3)
            msgs = await self.all_msgs(nc, "S")
            self.assertEqual(len(msgs), 12)
            self.assertEqual([m["seq"] for m in msgs], list(range(1, 13)))
            ida, idb = stream_identity(a["created"]), stream_identity(b["created"])
            got_a = [(m["subject"], m["data"], m["hdrs"]) for m in msgs if m["subject"].startswith("a.")]
            # Nats-Expected-* headers are dropped; the source header is
            # "<origin> <seq> <filter> <dest> <subject> <origin identity>"
            self.assertEqual(got_a, [("a.1", b"a%d" % i, b"NATS/1.0\r\nNats-Stream-Source: A %d a.1 > a.1 %s\r\n\r\n"
                                      % (i + 1, ida.encode())) for i in (1, 3, 5)]
                             + [("a.1", b"a-late", b"NATS/1.0\r\nNats-Stream-Source: A 7 a.1 > a.1 %s\r\n\r\n"
                                 % ida.encode())])
            got_b = sorted((m["subject"], m["data"], m["hdrs"]) for m in msgs if m["subject"].startswith("x."))
            want_b = [("x.%d" % (i % 3), b"b%d" % i, b"NATS/1.0\r\nNats-Stream-Source: B %d b.* x.{{wildcard(1)}} b.%d %s"
                       b"\r\n\r\n" % (i + 1, i % 3, idb.encode())) for i in range(6)]
            want_b.append(("x.0", b"b-late", b"NATS/1.0\r\nNats-Stream-Source: B 7 b.* x.{{wildcard(1)}} b.0 %s\r\n\r\n"
                           % idb.encode()))
            self.assertEqual(got_b, sorted(want_b))
            self.assertEqual([m["data"] for m in msgs if m["subject"] == "s"], [b"own"])
        self.js_test(body)

    def test_source_start_sequence_and_time(self):
        async def body(nc, js):
            await self.create(nc, "Q", subjects=["q.>"])
            for i in range(3):
                await js.publish("q.%d" % i, b"before")
            await asyncio.sleep(0.2)
            midpoint = datetime.datetime.now(datetime.timezone.utc)
            await asyncio.sleep(0.2)
            for i in range(3, 6):
                await js.publish("q.%d" % i, b"after")
            await self.create(nc, "SS", sources=[{"name": "Q", "opt_start_seq": 5}])
            await self.create(nc, "ST", sources=[{"name": "Q", "opt_start_time": midpoint.isoformat().replace(
                "+00:00", "Z")}])
            await self.wait_last(nc, "SS", 2, msgs=2)
            self.assertEqual([m["subject"] for m in await self.all_msgs(nc, "SS")], ["q.4", "q.5"])
            await self.wait_last(nc, "ST", 3, msgs=3)
            self.assertEqual([(m["subject"], m["data"]) for m in await self.all_msgs(nc, "ST")],
                             [("q.3", b"after"), ("q.4", b"after"), ("q.5", b"after")])
        self.js_test(body)

    def test_source_header_refused_on_a_client_publish(self):
        async def body(nc, js):
            await self.create(nc, "N", subjects=["n"])
            m = await nc.request("n", b"x", headers={"Nats-Stream-Source": "O 1 > > o.1"}, timeout=5)
            self.assertEqual(json.loads(m.data), {"error": SOURCE_HEADER, "stream": "N", "seq": 0})
        self.js_test(body)

    # -- origins that come and go ------------------------------------------------------
    def test_origin_created_after_the_copies(self):
        async def body(nc, js):
            r = await self.create(nc, "M", mirror={"name": "O"})
            self.assertEqual(r["mirror"], {"name": "O", "lag": 0, "active": -1})
            r = await self.create(nc, "S", sources=[{"name": "O"}, {"name": "P", "filter_subject": "p.1"}])
            self.assertEqual(by_filter(r["sources"]), by_filter([
                {"name": "O", "lag": 0, "active": -1},
                {"name": "P", "lag": 0, "active": -1, "filter_subject": "p.1"}]))
            r = await self.wait_info(nc, "M", lambda r: "error" in r["mirror"], "the mirror's error")
            self.assertEqual(r["mirror"], {"name": "O", "lag": 0, "active": -1, "error": NOT_FOUND})
            r = await self.wait_info(nc, "S", lambda r: all("error" in s for s in r["sources"]), "the errors")
            self.assertEqual(by_filter(r["sources"]), by_filter([
                {"name": "O", "lag": 0, "active": -1, "error": NOT_FOUND},
                {"name": "P", "lag": 0, "active": -1, "error": NOT_FOUND, "filter_subject": "p.1"}]))
            await self.create(nc, "O", subjects=["o.>"])
            for i in range(5):
                await js.publish("o.%d" % (i % 2), b"m%d" % i)
            m = await self.wait_last(nc, "M", 5, msgs=5)
            self.assertNotIn("error", m["mirror"])
            s = await self.wait_last(nc, "S", 5, msgs=5)
            src = dict((x["name"], x) for x in s["sources"])
            self.assertEqual(src["P"]["error"], NOT_FOUND)
            self.assertNotIn("error", src["O"])
        self.js_test(body)

    def test_origin_purged_then_deleted_and_recreated(self):
        async def body(nc, js):
            await self.create(nc, "O", subjects=["o.>"])
            await self.create(nc, "M", mirror={"name": "O"})
            await self.create(nc, "S", sources=[{"name": "O"}])
            for i in range(5):
                await js.publish("o.%d" % (i % 2), b"m%d" % i)
            await self.wait_last(nc, "M", 5, msgs=5)
            await self.wait_last(nc, "S", 5, msgs=5)
            # a purge of the origin leaves the copies; its sequences go on
            await self.req(nc, "$JS.API.STREAM.PURGE.O")
            for i in range(2):
                await js.publish("o.x", b"after-purge")
            await self.wait_last(nc, "M", 7, msgs=7)
            await self.wait_last(nc, "S", 7, msgs=7)
            self.assertEqual((await self.get(nc, "M", 6))["data"], b"after-purge")
            # deleted and recreated: the source copies the new stream from
            # its start; the mirror waits for sequences past its own
            await self.req(nc, "$JS.API.STREAM.DELETE.O")
            r = await self.create(nc, "O", subjects=["o.>"])
            for i in range(3):
                await js.publish("o.y", b"recreated-%d" % i)
            s = await self.wait_last(nc, "S", 10, msgs=10)
            self.assertEqual(s["sources"][0]["seq"], 3)
            hdr = (await self.get(nc, "S", 10))["hdrs"]
            self.assertEqual(hdr, b"NATS/1.0\r\nNats-Stream-Source: O 3 > > o.y %s\r\n\r\n"
                             % stream_identity(r["created"]).encode())
            self.assertEqual((await self.info(nc, "M"))["state"]["last_seq"], 7)
        self.js_test(body)

    # -- STREAM.INFO and config errors ---------------------------------------------------
    def test_info_blocks(self):
        async def body(nc, js):
            await self.create(nc, "O", subjects=["o.>"])
            for i in range(3):
                await js.publish("o.a" if i % 2 == 0 else "o.b", b"m%d" % i)
            r = await self.create(nc, "M", mirror={"name": "O"})
            self.assertEqual(r["mirror"], {"name": "O", "lag": 0, "active": -1})
            self.assertEqual(list(r)[-4:], ["state", "mirror", "ts", "did_create"])
            r = await self.create(nc, "S", sources=[
                {"name": "O", "filter_subject": "o.a"},
                {"name": "O", "subject_transforms": [{"src": "o.b", "dest": "x.b"}]}])
            self.assertEqual(r["config"]["sources"], [
                {"name": "O", "filter_subject": "o.a"},
                {"name": "O", "subject_transforms": [{"src": "o.b", "dest": "x.b"}]}])
            m = await self.wait_last(nc, "M", 3)
            s = await self.wait_last(nc, "S", 3)
            self.assertEqual(list(m)[-3:], ["cluster", "mirror", "ts"])
            # caught up: lag 0, `active` ns since the last contact
            active = m["mirror"].pop("active")
            self.assertTrue(0 <= active < 20 * 10 ** 9, active)
            self.assertEqual(m["mirror"], {"name": "O", "lag": 0})
            for src in s["sources"]:
                self.assertTrue(0 <= src.pop("active") < 20 * 10 ** 9)
            self.assertEqual(by_filter(s["sources"]), by_filter([
                {"name": "O", "lag": 0, "seq": 3, "filter_subject": "o.a"},
                {"name": "O", "lag": 0, "seq": 2, "subject_transforms": [{"src": "o.b", "dest": "x.b"}]}]))
            self.assertEqual(sorted(list(x) for x in (await self.info(nc, "S"))["sources"]),
                             [["name", "lag", "seq", "active", "filter_subject"],
                              ["name", "lag", "seq", "active", "subject_transforms"]])
        self.js_test(body)

    def test_bad_configs(self):
        async def body(nc, js):
            await self.create(nc, "O", subjects=["o.>"])
            for cfg, want in BAD_CONFIGS:
                cfg = dict(cfg, name="E")
                r = await self.req(nc, "$JS.API.STREAM.CREATE.E", cfg)
                self.assertEqual(r.get("error"), want, cfg)
            r = await self.req(nc, "$JS.API.STREAM.CREATE.C1", {"name": "C1", "subjects": ["c1"],
                                                                  "sources": [{"name": "C1"}]})
            self.assertEqual(r["error"], CYCLE)
            r = await self.req(nc, "$JS.API.STREAM.CREATE.C2", {"name": "C2", "mirror": {"name": "C2"}})
            self.assertEqual(r["error"], CYCLE)
            await self.create(nc, "CA", subjects=["ca"])
            await self.create(nc, "CB", subjects=["cb"], sources=[{"name": "CA"}])
            r = await self.req(nc, "$JS.API.STREAM.UPDATE.CA", {"name": "CA", "subjects": ["ca"],
                                                                  "sources": [{"name": "CB"}]})
            self.assertEqual(r["error"], CYCLE)
            # what nats-server accepts: start seq and time together, an
            # explicit duplicate window, sources beside own subjects
            r = await self.create(nc, "OK1", mirror={"name": "O", "opt_start_seq": 2,
                                                     "opt_start_time": "2020-01-01T00:00:00.500000000Z"})
            self.assertEqual(r["config"]["mirror"], {"name": "O", "opt_start_seq": 2,
                                                     "opt_start_time": "2020-01-01T00:00:00.5Z"})
            r = await self.create(nc, "OK2", mirror={"name": "O"}, duplicate_window=5000000000)
            self.assertEqual(r["config"]["duplicate_window"], 5000000000)
            r = await self.create(nc, "OK3", subjects=["ok3"], sources=[{"name": "O"}], sealed=False)
            self.assertEqual(r["config"]["subjects"], ["ok3"])
            self.assertNotIn("duplicate_window", r["config"])
        self.js_test(body)

    # -- restarts ---------------------------------------------------------------------------
    def test_copies_catch_up_after_a_restart(self):
        async def fill(nc, js):
            await self.create(nc, "O", subjects=["o.>"])
            await self.create(nc, "M", mirror={"name": "O"})
            await self.create(nc, "S", sources=[{"name": "O", "filter_subject": "o.1"}, {"name": "O"}])
            for i in range(10):
                await js.publish("o.%d" % (i % 2), b"first-%d" % i)
            await self.wait_last(nc, "M", 10, msgs=10)
            await self.wait_last(nc, "S", 15, msgs=15)
        self.js_test(fill)
        self.srv.stop()
        srv = self.start()

        async def more(nc, js):
            for i in range(10, 20):
                await js.publish("o.%d" % (i % 2), b"second-%d" % i)
            m = await self.wait_last(nc, "M", 20, msgs=20)
            self.assertEqual(m["mirror"]["name"], "O")
            self.assertEqual(await self.all_msgs(nc, "M"), await self.all_msgs(nc, "O"))
            # nothing copied twice: the restarted source went on from the
            # sequences in its stored Nats-Stream-Source headers
            await self.wait_last(nc, "S", 30, msgs=30)
            await flushed(nc)
            await asyncio.sleep(0.5)
            msgs = await self.all_msgs(nc, "S")
            self.assertEqual(len(msgs), 30)
            seen = sorted((m["hdrs"].split(b"Nats-Stream-Source: ")[1].split(b" ")[2], m["data"]) for m in msgs)
            self.assertEqual(len(set(seen)), 30)
            self.assertEqual(sum(1 for f, _ in seen if f == b"o.1"), 10)
        self.js_test(more, srv)

    def test_purged_copies_are_not_copied_again_after_a_restart(self):
        async def fill(nc, js):
            await self.create(nc, "O", subjects=["o.>"])
            await self.create(nc, "S", sources=[{"name": "O"}])
            await self.create(nc, "M", mirror={"name": "O"})
            for i in range(5):
                await js.publish("o.%d" % i, b"x")
            await self.wait_last(nc, "S", 5, msgs=5)
            await self.wait_last(nc, "M", 5, msgs=5)
            for n in ("S", "M"):
                self.assertEqual((await self.req(nc, "$JS.API.STREAM.PURGE." + n))["purged"], 5)
        self.js_test(fill)
        self.srv.stop()
        srv = self.start()

        async def more(nc, js):
            await js.publish("o.9", b"y")
            s = await self.wait_last(nc, "S", 6, msgs=1)
            self.assertEqual(s["sources"][0]["seq"], 6)
            await self.wait_last(nc, "M", 6, msgs=1)
            await flushed(nc)
            await asyncio.sleep(0.5)
            self.assertEqual((await self.info(nc, "S"))["state"]["messages"], 1)
        self.js_test(more, srv)


@needs(nats is not None, "nats-py is not installed (pip install nats-py)")
class TestSourcing(SourcingBehaviour, unittest.TestCase):
    """On gnatsd.py (origins in another account: tests/test_js_external.py)."""


@needs(nats is not None and HAVE_GO_215, "nats-py and nats-server 2.15 (/opt/ns/bin/nats-server) are needed")
class TestSourcingOnGo(SourcingBehaviour, unittest.TestCase):
    """The same assertions on nats-server 2.15.1: the expectations are its behaviour."""
    exe = GO_SERVER_215
