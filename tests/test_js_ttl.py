"""Per-message TTL (`allow_msg_ttl`, the Nats-TTL header) and subject
delete markers (`subject_delete_marker_ttl`), as nats-server 2.15 has
them: how Nats-TTL values are read, expiry in the memory and file stores
and across a restart, `Nats-TTL: never` outliving max_age, the marker a
stream writes when max_age or a TTL removes a subject's last message, and
nats-py's Key/Value per-key TTL and limit markers on top of them.

Each case runs on gnatsd.py and on nats-server 2.15 with the same input.
TTLs are short (1-3 s); presence is always polled for with a deadline,
and only absence is proved by a short sleep."""

import asyncio
import base64
import json
import os
import shutil
import signal
import tempfile
import time
import unittest

import nats
from nats.js.api import KeyValueConfig, StorageType

from gnats.jetstream.filestore import FileStore
from gnats.jetstream.memstore import MemStore
from gnats.jetstream.store import StoreLimits

from tests.util import GO_SERVER_215, HAVE_GO_215, RawClient, ServerProcess, needs

TIMEOUT = 5.0
WAIT = 20.0             # generous: the machine may be loaded
SEC = 10 ** 9
MARKER = b"NATS/1.0\r\nNats-Marker-Reason: MaxAge\r\nNats-TTL: %s\r\nNats-Rollup: sub\r\n\r\n"


def bad(code, err_code, description):
    return {"code": code, "err_code": err_code, "description": description}


TTL_INVALID = bad(400, 10165, "invalid per-message TTL")
TTL_DISABLED = bad(400, 10166, "per-message TTL is disabled")


def invalid_config(text):
    return bad(500, 10052, text)


async def api(nc, subject, body=None):
    data = json.dumps(body).encode() if body is not None else b""
    return json.loads((await nc.request(subject, data, timeout=TIMEOUT)).data)


async def create(nc, **cfg):
    return await api(nc, "$JS.API.STREAM.CREATE." + cfg["name"], cfg)


async def state(nc, name):
    return (await api(nc, "$JS.API.STREAM.INFO." + name, {"subjects_filter": ">"}))["state"]


async def get_msg(nc, name, seq):
    """(subject, header bytes, body) of message `seq`, or None."""
    r = await api(nc, "$JS.API.STREAM.MSG.GET." + name, {"seq": seq})
    if "error" in r:
        return None
    m = r["message"]
    return m["subject"], base64.b64decode(m.get("hdrs", "")), base64.b64decode(m.get("data", ""))


async def until(test, fn, what, timeout=WAIT):
    """Poll the coroutine function `fn` until it returns something true."""
    deadline = time.monotonic() + timeout
    while True:
        v = await fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            test.fail("timed out waiting for %s (last: %r)" % (what, v))
        await asyncio.sleep(0.1)


async def pub(nc, subject, body=b"v", headers=None):
    return json.loads((await nc.request(subject, body, headers=headers, timeout=TIMEOUT)).data)


class Deliveries:
    """A raw-socket subscriber to push consumers' deliver subjects (literal:
    nats-server 2.15 does not deliver to a wildcard subscription): the exact
    header bytes and stream sequence of each message delivered."""

    def __init__(self, port, *subjects):
        self.raw = RawClient(port, connect=b'{"verbose":false,"pedantic":false,"headers":true}', timeout=WAIT)
        for i, subject in enumerate(subjects):
            self.raw.send(b"SUB %s %d\r\n" % (subject.encode(), i + 1))
        self.raw.ping()

    def take(self, n):
        """n messages: [(stream, stream seq, subject, header, body)]."""
        out = []
        while len(out) < n:
            op, args, payload = self.raw.read_msg()
            if op == b"PING":
                self.raw.send(b"PONG\r\n")
                continue
            if op not in (b"MSG", b"HMSG"):
                continue
            hlen = int(args[-2]) if op == b"HMSG" else 0
            ack = args[2].decode().split(".")   # $JS.ACK.<stream>.<consumer>.<n>.<sseq>...
            out.append((ack[2], int(ack[5]), args[0].decode(), payload[:hlen], payload[hlen:]))
        return out

    def close(self):
        self.raw.close()


class TtlBase:
    exe = None

    def setUp(self):
        self.sd = tempfile.mkdtemp(prefix="gnatsd-jsttl-")
        self.addCleanup(shutil.rmtree, self.sd, True)
        self.srv = self.start()

    def start(self):
        srv = ServerProcess(config='jetstream { store_dir: "%s" }\n' % self.sd, exe=self.exe)
        self.addCleanup(srv.stop)
        return srv

    def run_async(self, fn, timeout=120):
        """Run the coroutine function `fn`; the connections it opened with
        connect() are closed after it."""
        async def run():
            self.conns = []
            try:
                await fn()
            finally:
                for nc in self.conns:
                    await nc.close()
        asyncio.run(asyncio.wait_for(run(), timeout))

    async def connect(self):
        nc = await nats.connect("nats://127.0.0.1:%d" % self.srv.port)
        self.conns.append(nc)
        return nc

    async def take(self, got, n):
        # the raw socket blocks: off the event loop
        return await asyncio.get_running_loop().run_in_executor(None, got.take, n)

    async def push_consumer(self, nc, stream, deliver):
        r = await api(nc, "$JS.API.CONSUMER.CREATE." + stream,
                      {"stream_name": stream, "config": {"deliver_subject": deliver, "ack_policy": "none",
                                                         "deliver_policy": "all"}})
        self.assertNotIn("error", r)

    # -- Nats-TTL and the config ----------------------------------------------

    def test_nats_ttl_values_are_read_as_nats_server_reads_them(self):
        async def body():
            nc = await self.connect()
            self.assertNotIn("error", await create(nc, name="T", subjects=["t"], allow_msg_ttl=True))
            self.assertNotIn("error", await create(nc, name="N", subjects=["n"]))
            # value: (on a stream with TTLs, on one without); True = stored
            table = [("1", True, TTL_DISABLED), ("0", TTL_INVALID, TTL_INVALID), ("00", True, True),
                     ("-1", TTL_INVALID, TTL_INVALID), ("never", True, TTL_DISABLED),
                     ("NEVER", True, TTL_DISABLED), ("1s", True, TTL_DISABLED),
                     ("500ms", TTL_INVALID, TTL_INVALID), ("1m", True, TTL_DISABLED),
                     ("1.5s", True, TTL_DISABLED), ("1h0m0s", True, TTL_DISABLED),
                     ("x", TTL_INVALID, TTL_INVALID), ("+5", TTL_INVALID, TTL_INVALID)]
            seqs = {"T": 0, "N": 0}
            for value, on_t, on_n in table:
                for name, want in (("T", on_t), ("N", on_n)):
                    ack = await pub(nc, name.lower(), headers={"Nats-TTL": value})
                    if want is True:
                        seqs[name] += 1
                        self.assertEqual(ack, {"stream": name, "seq": seqs[name]}, (name, value))
                    else:
                        self.assertEqual(ack, {"error": want, "stream": name, "seq": 0}, (name, value))
        self.run_async(body)

    def test_marker_ttl_config_is_checked_as_nats_server_checks_it(self):
        async def body():
            nc = await self.connect()
            r = await create(nc, name="A", subjects=["a"], subject_delete_marker_ttl=SEC // 2)
            self.assertEqual(r["error"], invalid_config("subject delete marker TTL must be at least 1 second"))
            r = await create(nc, name="B", subjects=["b"], subject_delete_marker_ttl=-1)
            self.assertEqual(r["error"], invalid_config("subject delete marker TTL must not be negative"))
            # markers need TTLs and roll-ups: both switched on, purges allowed again
            r = await create(nc, name="C", subjects=["c"], subject_delete_marker_ttl=2 * SEC, deny_purge=True)
            cfg = r["config"]
            self.assertEqual((cfg["allow_msg_ttl"], cfg["allow_rollup_hdrs"], cfg["deny_purge"],
                              cfg["subject_delete_marker_ttl"]), (True, True, False, 2 * SEC))
            self.assertEqual(cfg["metadata"]["_nats.req.level"], "1")
            r = await create(nc, name="M", mirror={"name": "C"}, subject_delete_marker_ttl=2 * SEC)
            self.assertEqual(r["error"], invalid_config("subject delete markers forbidden on mirrors"))
            # an update may add markers, and cannot take TTLs away again
            self.assertNotIn("error", await create(nc, name="U", subjects=["u"]))
            r = await api(nc, "$JS.API.STREAM.UPDATE.U", {"name": "U", "subjects": ["u"],
                                                          "subject_delete_marker_ttl": SEC})
            self.assertEqual((r["config"]["allow_msg_ttl"], r["config"]["subject_delete_marker_ttl"]), (True, SEC))
            r = await api(nc, "$JS.API.STREAM.UPDATE.U", {"name": "U", "subjects": ["u"]})
            self.assertEqual(r["error"], invalid_config("message TTL status can not be disabled"))
        self.run_async(body)

    # -- expiry ------------------------------------------------------------------

    def test_message_ttl_expires_in_both_stores(self):
        async def body():
            nc = await self.connect()
            for name, storage in (("TM", "memory"), ("TF", "file")):
                p = name.lower()
                self.assertNotIn("error", await create(nc, name=name, subjects=[p + ".>"], storage=storage,
                                                       allow_msg_ttl=True))
                await pub(nc, p + ".a", headers={"Nats-TTL": "1s"})
                await pub(nc, p + ".b")
                await pub(nc, p + ".c", headers={"Nats-TTL": "never"})
                await pub(nc, p + ".d", headers={"Nats-TTL": "2"})
            for name in ("TM", "TF"):
                p = name.lower()

                async def expired():
                    st = await state(nc, name)
                    return st if st["messages"] == 2 else None
                st = await until(self, expired, "the TTLs of %s" % name)
                # no marker without subject_delete_marker_ttl
                self.assertEqual((st["first_seq"], st["last_seq"], st["subjects"]),
                                 (2, 4, {p + ".b": 1, p + ".c": 1}))
        self.run_async(body)

    def test_nats_ttl_never_outlives_max_age(self):
        async def body():
            nc = await self.connect()
            for name, storage in (("NM", "memory"), ("NF", "file")):
                p = name.lower()
                self.assertNotIn("error", await create(nc, name=name, subjects=[p + ".>"], storage=storage,
                                                       allow_msg_ttl=True, max_age=SEC))
                await pub(nc, p + ".a", headers={"Nats-TTL": "never"})
                await pub(nc, p + ".b")
                await pub(nc, p + ".c", headers={"Nats-TTL": "never"})
                await pub(nc, p + ".d")
            for name in ("NM", "NF"):
                p = name.lower()
                want = {p + ".a": 1, p + ".c": 1}

                async def aged():
                    st = await state(nc, name)
                    return st if st.get("subjects") == want else None
                await until(self, aged, "max_age on %s" % name)
                # later messages age out past the spared ones too
                await pub(nc, p + ".e")
                await until(self, aged, "max_age on %s's newer message" % name)
            await asyncio.sleep(1.5)
            for name in ("NM", "NF"):
                st = await state(nc, name)
                self.assertEqual((st["messages"], st["first_seq"], st["last_seq"]), (2, 1, 5))
                self.assertEqual((await get_msg(nc, name, 1))[1], b"NATS/1.0\r\nNats-TTL: never\r\n\r\n")
        self.run_async(body)

    # -- subject delete markers -----------------------------------------------------

    def test_max_age_leaves_a_marker_for_each_subject_it_empties(self):
        async def body():
            nc = await self.connect()
            got = Deliveries(self.srv.port, "dlv.MM", "dlv.MF")
            self.addCleanup(got.close)
            for name, storage in (("MM", "memory"), ("MF", "file")):
                p = name.lower()
                self.assertNotIn("error", await create(nc, name=name, subjects=[p + ".>"], storage=storage,
                                                       max_age=SEC, subject_delete_marker_ttl=2 * SEC))
                await self.push_consumer(nc, name, "dlv." + name)
                await pub(nc, p + ".a")
                await pub(nc, p + ".b")
                await pub(nc, p + ".b")
                await pub(nc, p + ".e", headers={"Nats-Marker-Reason": "Foo"})     # a marker already
                await pub(nc, p + ".f", headers={"KV-Operation": "PURGE"})         # counts as one
                await pub(nc, p + ".n", headers={"Nats-TTL": "never"})
            msgs = await self.take(got, 16)
            for name in ("MM", "MF"):
                p = name.lower()
                mine = [m[1:] for m in msgs if m[0] == name]
                self.assertEqual([seq for seq, _, _, _ in mine], list(range(1, 9)))
                # one marker per emptied subject (s.b's older message just goes),
                # in the order the messages expired
                self.assertEqual(mine[6:], [(7, p + ".a", MARKER % b"2s", b""), (8, p + ".b", MARKER % b"2s", b"")])
            for name in ("MM", "MF"):
                p = name.lower()
                # the markers carry their subjects; they expire in turn and
                # leave no marker, nor do the Foo and KV purge messages
                async def settled():
                    st = await state(nc, name)
                    return st if st.get("subjects") == {p + ".n": 1} else None
                st = await until(self, settled, "the markers of %s to expire" % name)
                self.assertEqual((st["messages"], st["first_seq"], st["last_seq"]), (1, 6, 8))
            await asyncio.sleep(1.5)
            for name in ("MM", "MF"):
                self.assertEqual((await state(nc, name))["last_seq"], 8)
        self.run_async(body)

    def test_message_ttl_leaves_a_marker_and_is_raised_to_the_marker_ttl(self):
        async def body():
            nc = await self.connect()
            got = Deliveries(self.srv.port, "dlv.R")
            self.addCleanup(got.close)
            self.assertNotIn("error", await create(nc, name="R", subjects=["r.>"], storage="file",
                                                   subject_delete_marker_ttl=2 * SEC))
            # one message per subject: a TTL below the markers' is kept
            self.assertNotIn("error", await create(nc, name="O", subjects=["o.>"], max_msgs_per_subject=1,
                                                   subject_delete_marker_ttl=2 * SEC))
            await self.push_consumer(nc, "R", "dlv.R")
            await pub(nc, "r.a", headers={"Nats-TTL": "1"})
            await pub(nc, "r.b", headers={"A": "1", "Nats-TTL": "1s", "B": "2"})
            await pub(nc, "r.c", headers={"Nats-TTL": "3s"})
            await pub(nc, "o.a", headers={"Nats-TTL": "1"})
            self.assertEqual((await get_msg(nc, "R", 1))[1], b"NATS/1.0\r\nNats-TTL: 2\r\n\r\n")
            self.assertEqual((await get_msg(nc, "R", 2))[1], b"NATS/1.0\r\nA: 1\r\nB: 2\r\nNats-TTL: 2\r\n\r\n")
            self.assertEqual((await get_msg(nc, "R", 3))[1], b"NATS/1.0\r\nNats-TTL: 3s\r\n\r\n")
            self.assertEqual((await get_msg(nc, "O", 1))[1], b"NATS/1.0\r\nNats-TTL: 1\r\n\r\n")
            msgs = [m[1:] for m in await self.take(got, 6)]
            self.assertEqual(msgs[3:], [(4, "r.a", MARKER % b"2s", b""), (5, "r.b", MARKER % b"2s", b""),
                                        (6, "r.c", MARKER % b"2s", b"")])
            # the delivered headers are the stored ones (raised TTL included)
            self.assertEqual(msgs[1][2], b"NATS/1.0\r\nA: 1\r\nB: 2\r\nNats-TTL: 2\r\n\r\n")

            async def settled():
                st = await state(nc, "R")
                return st if st["messages"] == 0 else None
            st = await until(self, settled, "the markers to expire")
            self.assertEqual(st["last_seq"], 6)
        self.run_async(body)

    def test_purge_and_delete_leave_no_marker(self):
        async def body():
            nc = await self.connect()
            self.assertNotIn("error", await create(nc, name="P", subjects=["p.>"],
                                                   subject_delete_marker_ttl=SEC))
            for s in ("p.a", "p.a", "p.b", "p.c"):
                await pub(nc, s)
            r = await api(nc, "$JS.API.STREAM.PURGE.P", {"filter": "p.a"})
            self.assertEqual((r["success"], r["purged"]), (True, 2))
            r = await api(nc, "$JS.API.STREAM.MSG.DELETE.P", {"seq": 3})
            self.assertTrue(r["success"])
            await asyncio.sleep(1.5)
            st = await state(nc, "P")
            self.assertEqual((st["messages"], st["first_seq"], st["last_seq"], st["subjects"]),
                             (1, 4, 4, {"p.c": 1}))
        self.run_async(body)

    # -- Key/Value --------------------------------------------------------------------

    def test_kv_per_key_ttl_and_limit_markers(self):
        async def body():
            nc = await self.connect()
            js = nc.jetstream()
            kv = await js.create_key_value(KeyValueConfig(bucket="T", history=5, limit_marker_ttl=3,
                                                          storage=StorageType.FILE))
            self.assertEqual((await kv.status()).marker_ttl, 3.0)
            cfg = (await js.stream_info("KV_T")).config
            self.assertEqual((cfg.allow_msg_ttl, cfg.subject_delete_marker_ttl), (True, 3.0))
            w = await kv.watch(">", include_history=True)
            self.assertIsNone(await w.updates(timeout=WAIT))
            self.assertEqual(await kv.create("k1", b"one", msg_ttl=1), 1)
            self.assertEqual(await kv.put("k2", b"two"), 2)
            self.assertEqual(await kv.put("k3", b"x"), 3)
            await kv.purge("k3", msg_ttl=1)
            with self.assertRaises(nats.js.errors.BadRequestError) as cm:
                await kv.create("k4", b"x", msg_ttl=0.5)     # sent as "0": invalid
            self.assertEqual(cm.exception.err_code, 10165)
            seen = []
            for _ in range(5):
                e = await w.updates(timeout=WAIT)
                seen.append((e.key, e.revision, e.operation, e.value))
            # the TTL expiry of k1 (raised to the marker TTL) leaves a
            # MaxAge marker, which nats-py reports as a purge
            self.assertEqual(seen, [("k1", 1, None, b"one"), ("k2", 2, None, b"two"), ("k3", 3, None, b"x"),
                                    ("k3", 4, "PURGE", b""), ("k1", 5, "PURGE", b"")])
            # while the marker lives, get() answers with it, as on nats-server
            e = await kv.get("k1")
            self.assertEqual((e.revision, e.value or b""), (5, b""))
            with self.assertRaises(nats.js.errors.KeyNotFoundError):
                await kv.get("k3")

            async def gone():
                try:
                    await kv.get("k1")
                except nats.js.errors.KeyNotFoundError:
                    return True
                return False
            await until(self, gone, "k1's marker to expire")

            async def settled():
                st = await state(nc, "KV_T")
                return st if st.get("subjects") == {"$KV.T.k2": 1} else None
            st = await until(self, settled, "the purge marker to expire")
            self.assertEqual(st["last_seq"], 5)
            # expiring markers leave none: no further update
            with self.assertRaises(nats.errors.TimeoutError):
                await w.updates(timeout=1.5)
            self.assertEqual(await kv.keys(), ["k2"])
        self.run_async(body)

    # -- restart -------------------------------------------------------------------------

    def _publish_for_restart(self):
        async def body():
            nc = await self.connect()
            self.assertNotIn("error", await create(nc, name="S", subjects=["s.>"], storage="file",
                                                   max_age=2 * SEC, subject_delete_marker_ttl=SEC))
            await pub(nc, "s.a", headers={"Nats-TTL": "2s"})
            await pub(nc, "s.b", headers={"Nats-TTL": "never"})
            await pub(nc, "s.c")
        self.run_async(body)

    def _check_after_restart(self):
        async def body():
            nc = await self.connect()

            async def settled():
                st = await state(nc, "S")
                return st if st.get("subjects") == {"s.b": 1} and st["last_seq"] == 5 else None
            # s.a (TTL) and s.c (max_age) leave a marker each, which expire in turn
            st = await until(self, settled, "expiry after the restart")
            self.assertEqual((st["messages"], st["first_seq"]), (1, 2))
            self.assertEqual(await get_msg(nc, "S", 2), ("s.b", b"NATS/1.0\r\nNats-TTL: never\r\n\r\n", b"v"))
            await asyncio.sleep(1.5)
            self.assertEqual((await state(nc, "S"))["messages"], 1)
        self.run_async(body)

    def test_file_store_keeps_ttls_and_never_across_a_restart(self):
        self._publish_for_restart()
        self.srv.stop()
        self.srv = self.start()
        self._check_after_restart()


class StoreExpiryTest(unittest.TestCase):
    """The stores' side, in process: what max_age spares, the next expiry
    the stream's timer is set to, and which messages a delete-marker
    callback is handed."""

    def stores(self):
        d = tempfile.mkdtemp(prefix="gnatsd-jsttl-store-")
        self.addCleanup(shutil.rmtree, d, True)
        return [("memory", lambda: MemStore(StoreLimits(max_age=SEC)), None),
                ("file", lambda: FileStore(d, StoreLimits(max_age=SEC)), d)]

    def test_never_is_spared_by_max_age_and_by_the_next_expiry(self):
        for kind, new, d in self.stores():
            with self.subTest(kind):
                st = new()
                now = time.time_ns()
                old = now - 2 * SEC
                st.store_msg("a", b"", b"1", ts=old, ttl=-1)
                st.store_msg("b", b"", b"2", ts=old)
                st.store_msg("c", b"", b"3", ts=old, ttl=-1)
                st.store_msg("d", b"", b"4", ts=now)
                st.store_msg("e", b"", b"5", ts=now, ttl=-1)
                self.assertEqual(st.expire(now), 1)
                self.assertEqual(st.subjects_state(), {"a": 1, "c": 1, "d": 1, "e": 1})
                # the spared messages in front do not make the next expiry past
                self.assertEqual(st.next_expiry(), now + SEC)
                self.assertEqual(st.expire(now + SEC), 1)
                self.assertEqual(st.next_expiry(), 0)
                if d is None:
                    continue
                # the set comes back from the index snapshot (clean close) and
                # from the records (no snapshot)
                for drop_snapshot in (False, True):
                    st.close()
                    if drop_snapshot:
                        os.unlink(os.path.join(d, "index.snap"))
                    st = new()
                    self.assertEqual(st.expire(now + 10 * SEC), 0)
                    self.assertEqual(st.subjects_state(), {"a": 1, "c": 1, "e": 1})
                st.store_msg("f", b"", b"6", ts=now)
                self.assertEqual(st.expire(now + 10 * SEC), 1)
                self.assertEqual(st.state().msgs, 3)
                st.close()

    def test_the_marker_callback_gets_each_subjects_last_message(self):
        for kind, new, d in self.stores():
            with self.subTest(kind):
                st = new()
                now = time.time_ns()
                old = now - 2 * SEC
                st.store_msg("x", b"", b"1", ts=old)
                st.store_msg("x", b"", b"2", ts=old)
                st.store_msg("y", b"", b"3", ts=old)
                st.store_msg("x", b"", b"4", ts=now - SEC // 2, ttl=SEC // 4)
                st.store_msg("z", b"", b"5", ts=now)
                calls = []
                # x's older messages go plainly (x.4 still holds the subject);
                # the callback may leave the message: the store removes it
                self.assertEqual(st.expire(now, lambda seq, subj: calls.append((seq, subj))), 4)
                self.assertEqual(calls, [(3, "y"), (4, "x")])
                self.assertEqual(st.subjects_state(), {"z": 1})
                st.close()


class GnatsdTtlTest(TtlBase, unittest.TestCase):
    def test_file_store_keeps_ttls_and_never_across_a_kill(self):
        # kill -9: no index snapshot, the store is read back record by record
        # (acknowledged writes reached the OS; nats-server needs sync_always
        # for that, so this case is ours alone)
        self._publish_for_restart()
        self.srv.signal(signal.SIGKILL)
        self.srv.proc.wait(10)
        self.srv.stop()
        self.srv = self.start()
        self._check_after_restart()


@needs(HAVE_GO_215, "nats-server 2.15 is not installed")
class GoTtlTest(TtlBase, unittest.TestCase):
    exe = GO_SERVER_215


if __name__ == "__main__":
    unittest.main()
