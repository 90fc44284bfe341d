"""The system account: $SYS.REQ.* requests answered over NATS, and the
CONNECT / DISCONNECT / STATSZ events (gnats/sysacct.py, gnats/sysevents.py).

The shapes were captured from nats-server 2.15.1 (a config with
`system_account: SYS`, a SYS user and an account A) and are kept here as
the expected key sets and texts; the black-box cases run the same
assertions against gnatsd.py and, when it is installed, against
nats-server 2.15.1 itself.

Both servers get the same configuration; in a cluster, two gnatsd.py
nodes, two with nats-server 2.15.1 between them, and two nats-server nodes
(the reference) run the same assertions.
"""

import asyncio
import json
import os
import shutil
import signal
import tempfile
import threading
import unittest
import urllib.request

import gnats
from gnats import sysevents as E
from tests.test_jwt_unit import UNLIMITED, USER_LIMITS, creds_text, encode, key, nkeys
from tests.util import (flushed, GO_SERVER_215, HAVE_GO_215, RawClient, ServerProcess, free_port, needs,
                        wait_for)

try:
    import nats
    from nats.errors import NoRespondersError, TimeoutError as NatsTimeout
except ImportError:     # pragma: no cover - the test extras install it
    nats = None

# -- what nats-server 2.15.1 sends (captured) ------------------------------------
SERVER_KEYS = {"name", "host", "id", "ver", "jetstream", "flags", "seq", "time"}
GO_ONLY_SERVER_KEYS = {"feature_flags"}     # omitted when a server has none
STATSZ_KEYS = {"start", "mem", "cores", "cpu", "connections", "total_connections",
               "active_accounts", "subscriptions", "sent", "sent_to_clients", "received",
               "received_from_clients", "slow_consumers", "active_servers", "gomaxprocs"}
CONNECT_KEYS = {"type", "id", "timestamp", "server", "client"}
DISCONNECT_KEYS = CONNECT_KEYS | {"sent", "received", "reason"}
CLIENT_KEYS = {"start", "host", "id", "acc", "name", "lang", "ver", "name_tag", "kind",
               "client_type"}
ACCOUNT_CONNS_KEYS = {"type", "id", "timestamp", "server", "acc", "name", "conns", "leafnodes",
                      "total_conns", "num_subscriptions", "sent", "received", "slow_consumers"}
HEALTHZ = {"status": "ok", "status_code": 200}
ERR_END = "unexpected end of JSON input"
ERR_CHAR = "invalid character 'x' looking for beginning of value"
ERR_ARRAY = "json: cannot unmarshal array into Go value of type server.ConnzEventOptions"
ERR_LIMIT = ("json: cannot unmarshal string into Go struct field ConnzEventOptions.limit "
             "of type int")
ERR_CID = ("json: cannot unmarshal number -1 into Go struct field ConnzEventOptions.cid "
           "of type uint64")
ERR_SORT = "invalid sorting option: bogus"
ERR_TEST = "invalid test subject, must be valid publish subject: foo.*"

GO_CONFIG = """
server_name: gosys
accounts {
  SYS: { users: [{user: sys, password: sys}] }
  A: { users: [{user: a, password: a}] }
}
system_account: SYS
"""


async def _quiet(e):
    """nats-py's error callback: a server shut down in a test is expected."""


def run_async(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def collect(nc, subject, body=b"", want=1, linger=0.5, timeout=10.0):
    """Publish a request and gather the replies: wait (up to `timeout`)
    for `want`, then `linger` more to catch any extra."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(subject, body, reply=inbox)
    got = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time() if len(got) < want else linger
        if left <= 0:
            break
        try:
            msg = await sub.next_msg(timeout=left)
        except NatsTimeout:
            break
        got.append(json.loads(msg.data))
        if len(got) >= want:
            deadline = loop.time()      # from now only the linger
    await sub.unsubscribe()
    return got


def http_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


# -- the servers under test -----------------------------------------------------------

class SysPy:
    """gnatsd.py, embedded, with a monitor and the configuration captured
    from nats-server (accounts SYS and A, system_account: SYS)."""

    other_account = "A"
    server_name = "pysys"

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="gnatsd-sysacct-")
        path = os.path.join(self.tmp, "server.conf")
        with open(path, "w") as f:
            f.write(GO_CONFIG.replace("server_name: gosys", "server_name: " + self.server_name))
        self.srv = gnats.run(config=path, http_port=-1)
        self.server = self.srv._server
        self.port = self.srv.port
        self.url = self.srv.client_url
        self.server_id = self.server.server_id
        self.monitor_url = self.srv.monitor_url

    def on_reactor(self, fn):
        done = threading.Event()
        out = []

        def run():
            try:
                out.append(fn())
            finally:
                done.set()
        self.server.reactor.call_soon_threadsafe(run)
        assert done.wait(10), "the reactor did not run the call"
        return out[0]

    async def sys_connect(self):
        return await nats.connect(self.url, user="sys", password="sys", max_reconnect_attempts=0,
                                  error_cb=_quiet)

    async def other_connect(self, **kw):
        return await nats.connect(self.url, user="a", password="a", max_reconnect_attempts=0,
                                  **kw)

    def lame_duck(self):
        self.on_reactor(self.server.enter_lame_duck)

    def shutdown(self):
        self.server.reactor.call_soon_threadsafe(self.server.shutdown)

    def stop(self):
        self.srv.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


class SysGo:
    """nats-server 2.15.1 with the captured configuration."""

    other_account = "A"
    server_name = "gosys"

    def __init__(self):
        self.proc = ServerProcess("-m", "-1", exe=GO_SERVER_215, config=GO_CONFIG)
        self.port = self.proc.port
        self.url = "nats://127.0.0.1:%d" % self.proc.port
        self.monitor_url = "http://127.0.0.1:%d" % self.proc.monitor_port
        self.server_id = http_json(self.monitor_url + "/varz")["server_id"]

    async def sys_connect(self):
        return await nats.connect(self.url, user="sys", password="sys", max_reconnect_attempts=0,
                                  error_cb=_quiet)

    async def other_connect(self, **kw):
        return await nats.connect(self.url, user="a", password="a", max_reconnect_attempts=0,
                                  **kw)

    def lame_duck(self):
        self.proc.signal(signal.SIGUSR2)

    def shutdown(self):
        self.proc.signal(signal.SIGTERM)

    def stop(self):
        self.proc.stop()


class SysCases:
    """Assertions both servers must pass. `target` is set by setUpClass."""

    target = None

    def sys_request(self, subject, body=b"", want=1, linger=0.5):
        async def go():
            nc = await self.target.sys_connect()
            try:
                return await collect(nc, subject, body, want, linger)
            finally:
                await nc.close()
        return run_async(go())

    def check_server(self, block):
        self.assertTrue(SERVER_KEYS <= set(block) <= SERVER_KEYS | GO_ONLY_SERVER_KEYS, block)
        self.assertEqual(block["id"], self.target.server_id)
        self.assertEqual(block["name"], self.target.server_name)
        self.assertTrue(block["time"].endswith("Z"), block["time"])
        self.assertIsInstance(block["seq"], int)

    # -- requests ------------------------------------------------------------------
    def test_ping_one_statsz_reply(self):
        got = self.sys_request("$SYS.REQ.SERVER.PING", want=1, linger=1.0)
        self.assertEqual(len(got), 1)
        self.assertEqual(set(got[0]), {"server", "statsz"})
        self.check_server(got[0]["server"])
        st = got[0]["statsz"]
        self.assertEqual(set(st), STATSZ_KEYS)
        self.assertGreaterEqual(st["connections"], 1)     # the requester
        self.assertEqual(st["active_servers"], 1)
        self.assertEqual(set(st["sent"]), {"msgs", "bytes"})

    def test_ping_statsz_same_as_ping(self):
        got = self.sys_request("$SYS.REQ.SERVER.PING.STATSZ")
        self.assertEqual(len(got), 1)
        self.assertEqual(set(got[0]["statsz"]), STATSZ_KEYS)

    def test_varz_over_nats_is_the_http_varz(self):
        http = http_json(self.target.monitor_url + "/varz")
        for subject in ("$SYS.REQ.SERVER.PING.VARZ",
                        "$SYS.REQ.SERVER.%s.VARZ" % self.target.server_id):
            got = self.sys_request(subject)
            self.assertEqual(len(got), 1, subject)
            self.assertEqual(set(got[0]), {"server", "data"})
            self.check_server(got[0]["server"])
            data = got[0]["data"]
            self.assertEqual(set(data) - {"http_req_stats"}, set(http) - {"http_req_stats"})
            for field in ("server_id", "server_name", "port", "max_payload", "start"):
                self.assertEqual(data[field], http[field], field)

    def test_connz_subsz_routez_over_nats_match_http(self):
        for name in ("connz", "subsz", "routez"):
            http = http_json(self.target.monitor_url + "/" + name)
            got = self.sys_request("$SYS.REQ.SERVER.PING." + name.upper())
            self.assertEqual(len(got), 1, name)
            data = got[0]["data"]
            # the requester's own connection is listed over NATS, not over HTTP
            self.assertEqual(set(data) - {"server_name"}, set(http) - {"server_name"}, name)
        got = self.sys_request("$SYS.REQ.SERVER.PING.CONNZ", b'{"subscriptions":true}')
        conns = got[0]["data"]["connections"]
        self.assertEqual(len(conns), 1)
        self.assertIn("subscriptions_list", conns[0])      # the request's own inbox at least

    def test_healthz_and_idz(self):
        got = self.sys_request("$SYS.REQ.SERVER.PING.HEALTHZ")
        self.assertEqual(got[0]["data"], HEALTHZ)
        got = self.sys_request("$SYS.REQ.SERVER.PING.IDZ")
        self.assertEqual(got, [{"name": self.target.server_name, "host": "127.0.0.1",
                                "id": self.target.server_id}])

    def test_accountz_names_the_system_account(self):
        got = self.sys_request("$SYS.REQ.SERVER.PING.ACCOUNTZ")
        data = got[0]["data"]
        self.assertEqual(set(data), {"server_id", "now", "system_account", "accounts"})
        self.assertIn(data["system_account"], data["accounts"])
        self.assertIn("$G", data["accounts"])

    def test_accountz_detail_of_one_account(self):
        got = self.sys_request("$SYS.REQ.SERVER.PING.ACCOUNTZ", b'{"account":"A"}')
        data = got[0]["data"]
        self.assertEqual(set(data), {"server_id", "now", "system_account", "account_detail"})
        self.assertEqual(data["account_detail"]["account_name"], "A")

    def test_account_info(self):
        got = self.sys_request("$SYS.REQ.ACCOUNT.A.INFO")
        data = got[0]["data"]
        self.assertEqual(data["account_name"], "A")
        self.assertTrue({"update_time", "expired", "complete", "jetstream_enabled",
                         "leafnode_connections", "client_connections",
                         "subscriptions"} <= set(data), data)

    def test_other_server_id_or_unknown_request_gets_no_responders(self):
        async def go():
            nc = await self.target.sys_connect()
            out = []
            for subject in ("$SYS.REQ.SERVER.NOPE.VARZ", "$SYS.REQ.SERVER.PING.NOPE"):
                try:
                    await nc.request(subject, b"", timeout=5)
                    out.append("answered")
                except NoRespondersError:
                    out.append("no responders")
            await nc.close()
            return out
        self.assertEqual(run_async(go()), ["no responders", "no responders"])

    def answers_before_marker(self, subject, body, marker):
        """Replies to a request, counted without waiting for silence: a
        marker request on another inbox follows it, and the server answers
        in order on the one connection, so once the marker's answer is in,
        any answer to the first has come."""
        async def go():
            nc = await self.target.sys_connect()
            got = []

            async def answer(msg):
                got.append(json.loads(msg.data))
            await nc.subscribe("answers.here", cb=answer)
            done = await nc.subscribe("marker.here")
            await nc.publish(subject, body, reply="answers.here")
            await nc.publish(marker, b"", reply="marker.here")
            await done.next_msg(timeout=10)
            await flushed(nc)
            await nc.close()
            return got
        return run_async(go())

    def test_filters(self):
        name = self.target.server_name
        for body, want in ((b'{"server_name":"%s"}' % name.encode(), 1),
                           (b'{"server_name":"%s"}' % name[:3].encode(), 1),
                           (b'{"server_name":"%s","exact_match":true}' % name[:3].encode(), 0),
                           (b'{"server_name":"%s","exact_match":true}' % name.encode(), 1),
                           (b'{"server_name":"nope"}', 0),
                           (b'{"host":"127.0.0.1"}', 1),
                           (b'{"cluster":"x"}', 0),
                           (b'{"tags":["x"]}', 0)):
            got = self.answers_before_marker("$SYS.REQ.SERVER.PING.CONNZ", body,
                                             "$SYS.REQ.SERVER.PING.HEALTHZ")
            self.assertEqual(len(got), want, body)
            if want:
                self.assertIn("connections", got[0]["data"])
        # PING (STATSZ) has its own queue in nats-server: a STATSZ marker
        for body, want in ((b'{"server_name":"nope"}', 0), (b'{"server_name":"%s"}' % name.encode(), 1)):
            got = self.answers_before_marker("$SYS.REQ.SERVER.PING", body, "$SYS.REQ.SERVER.PING")
            self.assertEqual(len(got), want, body)

    def test_bad_requests(self):
        for body, code, text, data_null in ((b'{"bad json', 400, ERR_END, False),
                                            (b"x", 400, ERR_CHAR, False),
                                            (b"[1]", 400, ERR_ARRAY, False),
                                            (b'{"limit":"abc"}', 400, ERR_LIMIT, False),
                                            (b'{"cid":-1}', 400, ERR_CID, False),
                                            (b'{"sort":"bogus"}', 500, ERR_SORT, True)):
            got = self.sys_request("$SYS.REQ.SERVER.PING.CONNZ", body)
            self.assertEqual(len(got), 1, body)
            self.assertEqual(got[0]["error"], {"code": code, "description": text}, body)
            self.assertEqual("data" in got[0], data_null, body)
            if data_null:
                self.assertIsNone(got[0]["data"])
        got = self.sys_request("$SYS.REQ.SERVER.PING.SUBSZ", b'{"test":"foo.*"}')
        self.assertEqual(got[0]["error"], {"code": 500, "description": ERR_TEST})
        got = self.sys_request("$SYS.REQ.SERVER.PING", b"x")
        self.assertEqual(got[0]["error"], {"code": 400, "description": ERR_CHAR})

    def test_account_connz_lists_that_account_only(self):
        async def go():
            other = await self.target.other_connect(name="acc-client")
            await other.subscribe("acc.one")
            await flushed(other)
            nc = await self.target.sys_connect()
            acc = self.target.other_account
            connz = await collect(nc, "$SYS.REQ.ACCOUNT.%s.CONNZ" % acc)
            subsz = await collect(nc, "$SYS.REQ.ACCOUNT.%s.SUBSZ" % acc)
            await nc.close()
            await other.close()
            return connz, subsz
        connz, subsz = run_async(go())
        conns = connz[0]["data"]["connections"]
        self.assertEqual([c.get("name") for c in conns], ["acc-client"])
        subs = [s for s in subsz[0]["data"]["subscriptions_list"] if s["subject"] == "acc.one"]
        self.assertEqual(len(subs), 1)
        self.assertEqual(subs[0]["account"], self.target.other_account)

    def test_user_info(self):
        got = self.sys_request("$SYS.REQ.USER.INFO")
        data = got[0]["data"]
        self.assertTrue({"user", "account"} <= set(data), data)
        self.assertEqual(data["account"], got[0]["data"]["account_name"])

    def test_non_system_user_gets_no_responders(self):
        async def go():
            nc = await self.target.other_connect()
            out = []
            for subject in ("$SYS.REQ.SERVER.PING", "$SYS.REQ.SERVER.PING.VARZ",
                            "$SYS.REQ.SERVER.%s.VARZ" % self.target.server_id):
                try:
                    await nc.request(subject, b"", timeout=5)
                    out.append("answered")
                except NoRespondersError:
                    out.append("no responders")
            await nc.close()
            return out
        self.assertEqual(run_async(go()), ["no responders"] * 3)

    # -- events --------------------------------------------------------------------
    def test_connect_and_disconnect_events_of_another_account(self):
        acc = self.target.other_account

        async def go():
            nc = await self.target.sys_connect()
            events = await nc.subscribe("$SYS.ACCOUNT.%s.*" % acc)
            await flushed(nc)
            other = await self.target.other_connect(name="watched")
            await other.publish("ev.a", b"12345")
            await other.publish("ev.b", b"678")
            await flushed(other)
            await other.close()
            got = []
            while len(got) < 2:
                msg = await events.next_msg(timeout=10)
                got.append((msg.subject, json.loads(msg.data)))
            await nc.close()
            return got
        (s1, connect), (s2, disconnect) = run_async(go())
        self.assertEqual(s1, "$SYS.ACCOUNT.%s.CONNECT" % acc)
        self.assertEqual(s2, "$SYS.ACCOUNT.%s.DISCONNECT" % acc)
        self.assertEqual(set(connect), CONNECT_KEYS)
        self.assertEqual(connect["type"], "io.nats.server.advisory.v1.client_connect")
        self.check_server(connect["server"])
        self.assertEqual(set(connect["client"]) - {"user"}, CLIENT_KEYS)
        self.assertEqual((connect["client"]["acc"], connect["client"]["name"],
                          connect["client"]["kind"]), (acc, "watched", "Client"))
        self.assertEqual(set(disconnect), DISCONNECT_KEYS)
        self.assertEqual(disconnect["type"], "io.nats.server.advisory.v1.client_disconnect")
        self.assertEqual(set(disconnect["client"]) - {"user", "rtt"}, CLIENT_KEYS | {"stop"})
        self.assertEqual(disconnect["client"]["id"], connect["client"]["id"])
        self.assertEqual(disconnect["reason"], "Client Closed")
        self.assertEqual(disconnect["sent"], {"msgs": 2, "bytes": 8})
        self.assertNotEqual(disconnect["id"], connect["id"])
        self.assertGreater(disconnect["server"]["seq"], connect["server"]["seq"])

    def test_refused_login_events(self):
        """A wrong password: CLIENT.AUTH.ERR, then the DISCONNECT in $G
        (where a client is until its credentials are accepted)."""
        async def go():
            nc = await self.target.sys_connect()
            auth = await nc.subscribe("$SYS.SERVER.%s.CLIENT.AUTH.ERR" % self.target.server_id)
            gone = await nc.subscribe("$SYS.ACCOUNT.$G.DISCONNECT")
            await flushed(nc)
            raw = RawClient(self.target.port, b'{"verbose":false,"user":"a","pass":"no",'
                                              b'"name":"refused"}')
            try:
                line = raw.read_line()
            finally:
                raw.close()
            a = json.loads((await auth.next_msg(timeout=10)).data)
            d = json.loads((await gone.next_msg(timeout=10)).data)
            await nc.close()
            return line, a, d
        line, a, d = run_async(go())
        self.assertEqual(line, b"-ERR 'Authorization Violation'")
        for event in (a, d):
            self.assertEqual(event["type"], "io.nats.server.advisory.v1.client_disconnect")
            self.assertEqual(event["reason"], "Authentication Failure")
            self.assertEqual((event["client"]["acc"], event["client"]["user"],
                              event["client"]["name"]), ("$G", "a", "refused"))
        self.assertGreater(d["server"]["seq"], a["server"]["seq"])

    def test_statsz_broadcast_repeats(self):
        """A fresh server: the first broadcasts come after 0.25, 0.5, 1 s."""
        target = self.make_target()

        async def go():
            nc = await target.sys_connect()
            sub = await nc.subscribe("$SYS.SERVER.%s.STATSZ" % target.server_id)
            await flushed(nc)
            first = json.loads((await sub.next_msg(timeout=15)).data)
            second = json.loads((await sub.next_msg(timeout=15)).data)
            await nc.close()
            return first, second
        try:
            first, second = run_async(go())
        finally:
            target.stop()
        for m in (first, second):
            self.assertEqual(set(m), {"server", "statsz"})
            self.assertEqual(m["server"]["id"], target.server_id)
            self.assertEqual(set(m["statsz"]), STATSZ_KEYS)
        self.assertGreater(second["server"]["seq"], first["server"]["seq"])

    def test_lame_duck_and_shutdown_events(self):
        for what, act in (("LAMEDUCK", "lame_duck"), ("SHUTDOWN", "shutdown")):
            target = self.make_target()

            async def go():
                nc = await target.sys_connect()
                sub = await nc.subscribe("$SYS.SERVER.%s.%s" % (target.server_id, what))
                await flushed(nc)
                getattr(target, act)()
                try:
                    msg = json.loads((await sub.next_msg(timeout=15)).data)
                except NatsTimeout:
                    self.fail("no %s event" % what)
                try:
                    await nc.close()
                except asyncio.CancelledError:
                    pass            # nats-py, when the server closed the socket meanwhile
                return msg
            try:
                block = run_async(go())
            finally:
                target.stop()
            self.assertTrue(SERVER_KEYS <= set(block) <= SERVER_KEYS | GO_ONLY_SERVER_KEYS, what)
            self.assertEqual(block["id"], target.server_id)


@needs(nats is not None, "nats-py is not installed (pip install nats-py)")
class TestSysacct(SysCases, unittest.TestCase):
    make_target = SysPy

    @classmethod
    def setUpClass(cls):
        cls.target = SysPy()

    @classmethod
    def tearDownClass(cls):
        cls.target.stop()

    def test_statsz_silent_without_listeners(self):
        """Standalone, the periodic STATSZ is built only when someone
        listens (nats-server's rule): on a fresh server the heartbeats of
        0.25, 0.5 and 1 s run, and nothing is sent (seq stays 0)."""
        target = SysPy()
        try:
            system = target.server.system
            ran = wait_for(lambda: target.on_reactor(lambda: system.statsz_every) >= 4.0, 20)
            self.assertTrue(ran)
            self.assertEqual(target.on_reactor(lambda: system.seq), 0)
        finally:
            target.stop()


@needs(nats is not None and HAVE_GO_215, "nats-py or nats-server 2.15 is missing")
class TestSysacctOnGo(SysCases, unittest.TestCase):
    """The same assertions on nats-server 2.15.1: the reference."""

    make_target = SysGo

    @classmethod
    def setUpClass(cls):
        cls.target = SysGo()

    @classmethod
    def tearDownClass(cls):
        cls.target.stop()


class OperatorModeCases:
    """Operator mode: the operator JWT names the system account (a public
    key); its users prove JWTs. `exe`: None for gnatsd.py."""

    exe = None

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="gnatsd-sysacct-jwt-")
        op, cls.sys_acc, acc_a = key("O"), key("A"), key("A")
        op_jwt = encode("operator", op.pub, op, {"system_account": cls.sys_acc.pub})
        preload = "".join('  %s: "%s"\n' % (k.pub, encode("account", k.pub, op,
                                                             {"limits": UNLIMITED}))
                          for k in (cls.sys_acc, acc_a))
        cls.creds = {}
        for name, acc in (("sys", cls.sys_acc), ("a", acc_a)):
            u = key("U")
            path = os.path.join(cls.dir, name + ".creds")
            with open(path, "w") as f:
                f.write(creds_text(encode("user", u.pub, acc, dict(USER_LIMITS)), u))
            cls.creds[name] = path
        cls.srv = ServerProcess(config="operator: %s\nresolver: MEMORY\nresolver_preload: {\n%s}\n"
                                % (op_jwt, preload), exe=cls.exe)
        cls.url = "nats://127.0.0.1:%d" % cls.srv.port

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_system_user_pings_other_user_has_no_responders(self):
        async def go():
            nc = await nats.connect(self.url, user_credentials=self.creds["sys"],
                                    max_reconnect_attempts=0, error_cb=_quiet)
            got = await collect(nc, "$SYS.REQ.SERVER.PING", linger=0.5)
            info = await collect(nc, "$SYS.REQ.USER.INFO", linger=0)
            accz = await collect(nc, "$SYS.REQ.SERVER.PING.ACCOUNTZ", linger=0)
            await nc.close()
            other = await nats.connect(self.url, user_credentials=self.creds["a"],
                                       max_reconnect_attempts=0, error_cb=_quiet)
            try:
                await other.request("$SYS.REQ.SERVER.PING", b"", timeout=5)
                answered = True
            except NoRespondersError:
                answered = False
            await other.close()
            return got, info, accz, answered
        got, info, accz, answered = run_async(go())
        self.assertEqual(len(got), 1)
        self.assertEqual(set(got[0]["statsz"]), STATSZ_KEYS)
        self.assertEqual(info[0]["data"]["account"], self.sys_acc.pub)
        self.assertEqual(accz[0]["data"]["system_account"], self.sys_acc.pub)
        self.assertFalse(answered)


@needs(nats is not None and nkeys is not None, "nats-py or nkeys is not installed")
class TestSysacctOperatorMode(OperatorModeCases, unittest.TestCase):
    pass


@needs(nats is not None and nkeys is not None and HAVE_GO_215,
       "nats-py, nkeys or nats-server 2.15 is missing")
class TestSysacctOperatorModeOnGo(OperatorModeCases, unittest.TestCase):
    exe = GO_SERVER_215


# -- in a cluster -------------------------------------------------------------------

def cluster_conf(name, cport, routes=()):
    conf = GO_CONFIG.replace("server_name: gosys", "server_name: %s" % name)
    conf += "cluster { name: sysc, listen: 127.0.0.1:%d" % cport
    if routes:
        conf += ", routes: [%s]" % ", ".join("nats://127.0.0.1:%d" % p for p in routes)
    return conf + " }\n"


async def ping_servers(url, subject, want, timeout=20.0):
    """The server names answering `subject` from a system user on `url`:
    asked again until `want` answer (routes and their interest take a
    moment), then once more to count them exactly."""
    nc = await nats.connect(url, user="sys", password="sys", max_reconnect_attempts=0)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            got = await collect(nc, subject, want=want, linger=0, timeout=2.0)
            if len(got) >= want or loop.time() > deadline:
                break
        got = await collect(nc, subject, want=want, linger=1.0, timeout=5.0)
        return sorted(m["server"]["name"] for m in got)
    finally:
        await nc.close()


class ClusterCases:
    """Each server answers a PING with its own reply, so a requester that
    collects replies hears every member once; events cross the routes in
    the system account. `exes`: the nodes' executables (None: gnatsd.py)."""

    exes = ()

    @classmethod
    def setUpClass(cls):
        ports = [free_port() for _ in cls.exes]
        cls.names = ["%s%d" % ("go" if exe else "py", i + 1) for i, exe in enumerate(cls.exes)]
        cls.nodes = []
        try:
            for i, exe in enumerate(cls.exes):
                cls.nodes.append(ServerProcess(config=cluster_conf(cls.names[i], ports[i],
                                                                   ports[:i]), exe=exe))
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for n in cls.nodes:
            n.stop()

    def url(self, i):
        return "nats://127.0.0.1:%d" % self.nodes[i].port

    def test_ping_one_reply_per_server(self):
        want = len(self.nodes)
        for i in range(want):
            for subject in ("$SYS.REQ.SERVER.PING", "$SYS.REQ.SERVER.PING.VARZ",
                            "$SYS.REQ.SERVER.PING.HEALTHZ"):
                got = run_async(ping_servers(self.url(i), subject, want))
                self.assertEqual(got, sorted(self.names), (i, subject))

    def test_filter_picks_one_server(self):
        last = self.names[-1]
        body = b'{"server_name":"%s","exact_match":true}' % last.encode()

        async def go():
            await ping_servers(self.url(0), "$SYS.REQ.SERVER.PING", len(self.nodes))
            nc = await nats.connect(self.url(0), user="sys", password="sys")
            got = await collect(nc, "$SYS.REQ.SERVER.PING.VARZ", body, linger=1.0)
            await nc.close()
            return [m["data"]["server_name"] for m in got]
        self.assertEqual(run_async(go()), [last])

    def test_connect_events_cross_routes(self):
        async def go():
            await ping_servers(self.url(0), "$SYS.REQ.SERVER.PING", len(self.nodes))
            nc = await nats.connect(self.url(0), user="sys", password="sys")
            events = await nc.subscribe("$SYS.ACCOUNT.A.CONNECT")
            await flushed(nc)
            seen = []
            for i in range(1, len(self.nodes)):
                # until the subscription's interest has reached node i, its
                # clients' events go nowhere: connect again until one is seen
                found = None
                for attempt in range(40):
                    other = await nats.connect(self.url(i), user="a", password="a",
                                               name="on-%s-%d" % (self.names[i], attempt))
                    await other.close()
                    try:
                        while found is None:
                            d = json.loads((await events.next_msg(timeout=0.5)).data)
                            if d["client"]["name"].startswith("on-%s-" % self.names[i]):
                                found = d
                    except NatsTimeout:
                        pass
                    if found is not None:
                        break
                self.assertIsNotNone(found, self.names[i])
                seen.append((found["server"]["name"], found["client"]["acc"]))
            await nc.close()
            return seen
        self.assertEqual(run_async(go()), [(n, "A") for n in self.names[1:]])


@needs(nats is not None, "nats-py is not installed (pip install nats-py)")
class TestSysacctPythonPair(ClusterCases, unittest.TestCase):
    exes = (None, None)


@needs(nats is not None and HAVE_GO_215, "nats-py or nats-server 2.15 is missing")
class TestSysacctMixedCluster(ClusterCases, unittest.TestCase):
    """Two gnatsd.py nodes and nats-server 2.15.1 sharing one config."""
    exes = (None, GO_SERVER_215, None)


@needs(nats is not None and HAVE_GO_215, "nats-py or nats-server 2.15 is missing")
class TestSysacctGoCluster(ClusterCases, unittest.TestCase):
    """The reference: the same assertions on two nats-server 2.15.1 nodes."""
    exes = (GO_SERVER_215, GO_SERVER_215)


class TestSystemAccountConfig(unittest.TestCase):
    def test_default_system_account_exists(self):
        with gnats.run() as srv:
            names = srv._server.system.account_names()
            self.assertEqual(names, ["$G", "$SYS"])
            self.assertEqual(srv._server.system.name, "$SYS")

    def test_missing_system_account_refused(self):
        with self.assertRaises(ValueError) as cm:
            gnats.run(system_account="FOO")
        self.assertIn("error resolving system account: account missing", str(cm.exception))

    @needs(HAVE_GO_215, "nats-server 2.15 is missing")
    def test_missing_system_account_refused_on_go(self):
        proc = ServerProcess(exe=GO_SERVER_215, config="system_account: FOO\n", wait=False)
        proc.proc.wait(10)
        self.assertEqual(proc.stop(), 1)
        self.assertIn("error resolving system account: account missing", proc.output())

    def test_process_refuses_missing_system_account(self):
        proc = ServerProcess(config="system_account: FOO\n", wait=False)
        proc.proc.wait(20)
        self.assertEqual(proc.stop(), 1)
        self.assertIn("error resolving system account: account missing", proc.output())


class TestSysEvents(unittest.TestCase):
    """The pure builders."""

    def test_utc_time(self):
        self.assertEqual(E.utc_time(1764444000123456789), "2025-11-29T19:20:00.123456789Z")
        self.assertEqual(E.utc_time(1764444000120000000), "2025-11-29T19:20:00.12Z")
        self.assertEqual(E.utc_time(1764444000000000000), "2025-11-29T19:20:00Z")

    def test_event_ids_unique(self):
        ids = E.EventIds()
        got = {ids.next() for _ in range(1000)}
        self.assertEqual(len(got), 1000)
        self.assertEqual({len(i) for i in got}, {22})

    def test_parse_options(self):
        parse = E.parse_options
        self.assertEqual(parse(b"", "CONNZ", "ConnzEventOptions"), {})
        self.assertEqual(parse(b"null", "CONNZ", "ConnzEventOptions"), {})
        self.assertEqual(parse(b'{"limit":2,"unknown":1,"sort":null}', "CONNZ",
                               "ConnzEventOptions"), {"limit": 2})
        for body, text in ((b'{"bad json', ERR_END), (b"  ", ERR_END), (b"x", ERR_CHAR),
                           (b"[1]", ERR_ARRAY), (b'{"limit":"abc"}', ERR_LIMIT),
                           (b'{"cid":-1}', ERR_CID)):
            with self.assertRaises(E.RequestError) as cm:
                parse(body, "CONNZ", "ConnzEventOptions")
            self.assertEqual(str(cm.exception), text, body)

    def test_filtered_out(self):
        f = E.filtered_out
        self.assertFalse(f({}, "srv-a", "127.0.0.1", ""))
        self.assertFalse(f({"server_name": "srv"}, "srv-a", "127.0.0.1", ""))
        self.assertTrue(f({"server_name": "srv", "exact_match": True}, "srv-a", "127.0.0.1", ""))
        self.assertTrue(f({"cluster": "c"}, "srv-a", "127.0.0.1", ""))
        self.assertFalse(f({"cluster": "c"}, "srv-a", "127.0.0.1", "c1"))
        self.assertTrue(f({"tags": ["t"]}, "srv-a", "127.0.0.1", ""))

    def test_endpoint_query(self):
        q = E.endpoint_query
        self.assertEqual(q("CONNZ", {"subscriptions": True, "limit": 1, "state": 1}),
                         {"subs": "1", "limit": "1", "state": "closed"})
        self.assertEqual(q("CONNZ", {"subscriptions_detail": True, "limit": -1, "offset": 0}),
                         {"subs": "detail"})
        self.assertEqual(q("SUBSZ", {"subscriptions": True, "test": "a.b"}),
                         {"subs": "1", "test": "a.b"})
        self.assertEqual(q("ROUTEZ", {"subscriptions": True}), {"subs": "1"})

    def test_public_permissions(self):
        """As nats-server 2.15.1 showed them in USER.INFO for
        publish {allow: ["$SYS.>", "_INBOX.>"], deny: ["x"]},
        subscribe {allow: [">"]}, allow_responses {max: 3, expires: "1s"}."""
        from gnats.permissions import PermissionSpec, ResponseRule, SubjectRule
        spec = PermissionSpec(publish=SubjectRule(allow=("$SYS.>", "_INBOX.>"), deny=("x",)),
                              subscribe=SubjectRule(allow=(">",)),
                              response=ResponseRule(max_msgs=3, expires=1.0))
        self.assertEqual(E.public_permissions(spec),
                         {"publish": {"allow": ["$SYS.>", "_INBOX.>"], "deny": ["x"]},
                          "subscribe": {"allow": [">"]},
                          "responses": {"max": 3, "ttl": 1000000000}})

    def test_api_response(self):
        self.assertEqual(E.api_response({"id": "x"}, {"a": 1}), {"server": {"id": "x"},
                                                                 "data": {"a": 1}})
        self.assertEqual(E.api_response({}, error=(400, "bad")),
                         {"server": {}, "error": {"code": 400, "description": "bad"}})
        self.assertEqual(E.api_response({}, error=(500, "bad"), data_null=True),
                         {"server": {}, "data": None,
                          "error": {"code": 500, "description": "bad"}})


if __name__ == "__main__":
    unittest.main()
