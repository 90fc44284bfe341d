"""JetStream per account, black-box: which accounts get JetStream (config
`accounts { A: { jetstream: ... } }` and operator-mode account JWTs), the
error an account without it sees, account limits on stream create and
publish, $JS.API.INFO's limits, and reloads of `jetstream { }`. Every case
runs against gnatsd.py and nats-server 2.15.1 (/opt/ns/bin/nats-server) on
the same config, so the expected values below stay true of the reference
(captured with nats-py against 2.15.1 on 2026-11-29)."""

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from tests.util import GNATSD, GO_SERVER_215, HAVE_GO_215, PYTHON, ServerProcess, needs

try:
    import nats
except ImportError:     # pragma: no cover
    nats = None
try:
    from tests.test_jwt_unit import UNLIMITED, USER_LIMITS, creds_text, encode, key, nkeys
except ImportError:     # pragma: no cover
    nkeys = None


def e(code, err_code, description):
    return {"code": code, "err_code": err_code, "description": description}


NOT_ENABLED = e(503, 10039, "JetStream not enabled for account")
INFO_TYPE = "io.nats.jetstream.api.v1.account_info_response"


def limits(max_memory=-1, max_storage=-1, max_streams=-1, max_consumers=-1, max_ack_pending=-1,
           memory_max_stream_bytes=-1, storage_max_stream_bytes=-1, max_bytes_required=False):
    return {"max_memory": max_memory, "max_storage": max_storage, "max_streams": max_streams,
            "max_consumers": max_consumers, "max_ack_pending": max_ack_pending,
            "memory_max_stream_bytes": memory_max_stream_bytes,
            "storage_max_stream_bytes": storage_max_stream_bytes, "max_bytes_required": max_bytes_required}


ACCOUNTS_CONF = """
jetstream { store_dir: "%s" }
accounts {
  A: { jetstream: enabled, users: [{user: a, password: a}] }
  B: { users: [{user: b, password: b}] }
  C: { jetstream: { max_mem: 1024, max_file: 4096, max_streams: 2, max_consumers: 3 },
       users: [{user: c, password: c}] }
  D: { jetstream: disabled, users: [{user: d, password: d}] }
  E: { jetstream: { max_memory: 2048, max_store: 1M, streams: 5, consumers: 3, max_bytes_required: true,
                    memory_max_stream_bytes: 1000, store_max_stream_bytes: 2000, max_ack_pending: 7 },
       users: [{user: e, password: e}] }
}
authorization { users: [{user: g, password: g}] }
"""


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def requests(port, user, calls, creds=None):
    """[(subject, body bytes)] -> [parsed JSON replies], one connection."""
    kw = {"user_credentials": creds} if creds else {"user": user, "password": user}
    nc = await nats.connect("nats://127.0.0.1:%d" % port, allow_reconnect=False, **kw)
    try:
        out = []
        for subject, body in calls:
            m = await nc.request(subject, body, timeout=10)
            out.append(json.loads(m.data))
        return out
    finally:
        await nc.close()


def stream(name, storage="memory", **extra):
    cfg = {"name": name, "subjects": [name.lower()], "storage": storage}
    cfg.update(extra)
    return ("$JS.API.STREAM.CREATE." + name, json.dumps(cfg).encode())


INFO = ("$JS.API.INFO", b"")


@needs(nats is not None, "nats-py is not installed")
class ConfigAccountsBase:
    exe = None

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="gnatsd-jsacc-")
        cls.srv = ServerProcess(config=ACCOUNTS_CONF % cls.dir, exe=cls.exe)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def call(self, user, *calls):
        return run(requests(self.srv.port, user, calls))

    def test_enabled_account_is_unlimited(self):
        r, = self.call("a", INFO)
        self.assertEqual(r["type"], INFO_TYPE)
        self.assertEqual(r["limits"], limits())
        self.assertEqual(r["api"]["level"], 5)

    def test_accounts_without_jetstream_get_10039(self):
        for user in ("b", "d", "g"):        # not said, disabled, and $G
            r, = self.call(user, INFO)
            self.assertEqual(r, {"type": INFO_TYPE, "error": NOT_ENABLED}, user)
        names, create = self.call("b", ("$JS.API.STREAM.NAMES", b""), stream("X"))
        self.assertEqual(names, {"type": "io.nats.jetstream.api.v1.stream_names_response", "error": NOT_ENABLED,
                                 "total": 0, "offset": 0, "limit": 0, "streams": None})
        self.assertEqual(create, {"type": "io.nats.jetstream.api.v1.stream_create_response", "error": NOT_ENABLED})

    def test_limits_shown_with_aliases(self):
        r, = self.call("c", INFO)
        self.assertEqual(r["limits"], limits(1024, 4096, 2, 3))
        r, = self.call("e", INFO)
        # max_store: 1M is 1,000,000 bytes in the config format
        self.assertEqual(r["limits"], limits(2048, 1000000, 5, 3, 7, 1000, 2000, True))

    def test_limits_on_create_and_publish(self):
        m1, f1, m2, f2, f3 = self.call(
            "c", stream("M1", max_bytes=2000), stream("F1", "file", max_bytes=5000), stream("M2"),
            stream("F2", "file"), stream("F3", "file"))
        self.assertEqual(m1["error"], e(500, 10028, "insufficient memory resources available"))
        self.assertEqual(f1["error"], e(500, 10047, "insufficient storage resources available"))
        self.assertNotIn("error", m2)
        self.assertNotIn("error", f2)
        self.assertEqual(f3["error"], e(400, 10027, "maximum number of streams reached"))
        big = b"x" * 570        # 2 + 570 + 16 = 588 bytes accounted in memory
        acks = self.call("c", ("m2", big), ("m2", big), INFO)
        self.assertEqual(acks[0], {"stream": "M2", "seq": 1})
        self.assertEqual(acks[1], {"error": e(400, 10002, "resource limits exceeded for account"),
                                   "stream": "M2", "seq": 0})
        self.assertEqual(acks[2]["memory"], 588)
        self.assertEqual(acks[2]["streams"], 2)

    def test_stream_bytes_limits(self):
        n1, n2, n3, n4, upd = self.call(
            "e", stream("N1"), stream("N2", max_bytes=1001), stream("N3", "file", max_bytes=2001),
            stream("N4", "file", max_bytes=2000),
            ("$JS.API.STREAM.UPDATE.N4", json.dumps({"name": "N4", "subjects": ["n4"], "storage": "file",
                                                     "max_bytes": -1}).encode()))
        self.assertEqual(n1["error"], e(400, 10113, "account requires a stream config to have max bytes set"))
        self.assertEqual(n2["error"], e(400, 10122, "stream max bytes exceeds account limit max stream bytes"))
        self.assertEqual(n3["error"], e(400, 10122, "stream max bytes exceeds account limit max stream bytes"))
        self.assertEqual(n4["config"]["max_bytes"], 2000)
        self.assertEqual(upd["error"], e(400, 10113, "account requires a stream config to have max bytes set"))

    def test_accounts_are_isolated(self):
        a, = self.call("a", stream("ISO"))
        self.assertNotIn("error", a)
        names, = self.call("c", ("$JS.API.STREAM.NAMES", b""))
        self.assertNotIn("ISO", names["streams"] or [])


class ConfigAccountsTest(ConfigAccountsBase, unittest.TestCase):
    pass


@needs(HAVE_GO_215, "nats-server 2.15 is not installed at " + GO_SERVER_215)
class ConfigAccountsGoTest(ConfigAccountsBase, unittest.TestCase):
    exe = GO_SERVER_215


@needs(nats is not None, "nats-py is not installed")
class WhoGetsJetStreamBase:
    exe = None

    def start(self, accounts, extra=""):
        d = tempfile.mkdtemp(prefix="gnatsd-jsacc-")
        self.addCleanup(shutil.rmtree, d, True)
        srv = ServerProcess(config='jetstream { store_dir: "%s" }\n%s\n%s\n'
                            'authorization { users: [{user: g, password: g}] }\n' % (d, accounts, extra),
                            exe=self.exe)
        self.addCleanup(srv.stop)
        return srv

    def test_no_account_says_jetstream(self):
        srv = self.start("accounts { A: { users: [{user: a, password: a}] } }")
        for user in ("a", "g"):
            r, = run(requests(srv.port, user, [INFO]))
            self.assertEqual(r["error"], NOT_ENABLED, user)

    def test_only_a_system_account_leaves_it_to_the_global_account(self):
        srv = self.start("accounts { SYS: { users: [{user: s, password: s}] } }", "system_account: SYS")
        r, = run(requests(srv.port, "g", [INFO]))
        self.assertEqual(r["limits"], limits())

    def test_config_errors(self):
        for value, text in (('"maybe"', "Expected 'enabled' or 'disabled' for string value, got 'maybe'"),
                            ('{max_mem: "1G"}', 'Expected a parseable size for "max_mem", got 1G'),
                            ('{foo: 1}', 'unknown field "foo"'),
                            ('1.5', "Expected map, bool or string to define JetStream, got float64"),
                            ('{max_bytes_required: 1}', 'Expected a parseable bool for "max_bytes_required", got 1')):
            d = tempfile.mkdtemp(prefix="gnatsd-jsacc-")
            self.addCleanup(shutil.rmtree, d, True)
            conf = os.path.join(d, "c.conf")
            with open(conf, "w") as f:
                f.write('jetstream { store_dir: "%s" }\naccounts { A: { jetstream: %s } }\n' % (d, value))
            cmd = [self.exe] if self.exe else [PYTHON, GNATSD]
            p = subprocess.run(cmd + ["-c", conf, "-p", "-1", "-a", "127.0.0.1"], capture_output=True,
                               timeout=20)
            self.assertNotEqual(p.returncode, 0, value)
            self.assertIn(text, (p.stdout + p.stderr).decode(), value)

    def test_reload_gives_an_account_jetstream(self):
        srv = self.start("accounts { A: { users: [{user: a, password: a}] } }")
        r, = run(requests(srv.port, "a", [INFO]))
        self.assertEqual(r["error"], NOT_ENABLED)
        with open(srv.config_path) as f:
            conf = f.read()
        with open(srv.config_path, "w") as f:
            f.write(conf.replace("A: {", "A: { jetstream: { max_streams: 4 },"))
        srv.signal(signal.SIGHUP)
        self.assertTrue(srv.wait_log("Reloaded server configuration", 20))
        r, = run(requests(srv.port, "a", [INFO]))
        self.assertEqual(r["limits"], limits(max_streams=4))
        # and takes it away again
        with open(srv.config_path, "w") as f:
            f.write(conf)
        srv.signal(signal.SIGHUP)
        self.assertTrue(wait_count(srv, "Reloaded server configuration", 2))
        r, = run(requests(srv.port, "a", [INFO]))
        self.assertEqual(r["error"], NOT_ENABLED)


class WhoGetsJetStreamTest(WhoGetsJetStreamBase, unittest.TestCase):
    pass


@needs(HAVE_GO_215, "nats-server 2.15 is not installed at " + GO_SERVER_215)
class WhoGetsJetStreamGoTest(WhoGetsJetStreamBase, unittest.TestCase):
    exe = GO_SERVER_215


@needs(nats is not None, "nats-py is not installed")
class ReloadBase:
    """`jetstream { }` on reload: nats-server's rules and texts."""
    exe = None
    BASE = "jetstream { store_dir: \"%s\", max_mem: 1G, max_file: 1G }\n"

    def test_reload_rules(self):
        d = tempfile.mkdtemp(prefix="gnatsd-jsreload-")
        self.addCleanup(shutil.rmtree, d, True)
        srv = ServerProcess(config=self.BASE % d, exe=self.exe)
        self.addCleanup(srv.stop)
        cases = (
            ('store_dir: "%s", max_mem: 2G, max_file: 1G' % d, "Reloaded: JetStream max_mem_store = 1.86 GB"),
            ('store_dir: "%s", max_mem: 1G, max_file: 1G' % d,
             "config reload not supported for decreasing jetstream max memory and store"),
            ('store_dir: "%s", max_mem: 2G' % d, "config reload not supported for jetstream max memory and max store"),
            ('store_dir: "%s/x", max_mem: 2G, max_file: 1G' % d,
             "config reload not supported for jetstream storage directory"),
            ('store_dir: "%s", max_mem: 2G, max_file: 1G, sync_interval: 10s' % d,
             "config reload not supported for SyncInterval: old=2m0s, new=10s"),
            ('store_dir: "%s", max_mem: 2G, max_file: 1G, sync_interval: always' % d,
             "config reload not supported for SyncAlways: old=false, new=true"),
        )
        seen = 0
        for body, text in cases:
            with open(srv.config_path, "w") as f:
                f.write("jetstream { %s }\n" % body)
            srv.signal(signal.SIGHUP)
            self.assertTrue(srv.wait_log("(Reloaded server configuration|Failed to reload)", 20))
            self.assertTrue(srv.wait_log(re.escape(text), 20), text)
            seen += 1
            # one outcome per reload, so each text is this reload's
            out = srv.output()
            self.assertEqual(out.count("Reloaded server configuration") + out.count("Failed to reload"), seen)
        # off, then on again: the account's streams come back
        r = run(requests_g(srv.port, [stream("KEEP", "file"), ("keep", b"1")]))
        self.assertEqual(r[1], {"stream": "KEEP", "seq": 1})
        # count this reload's own line: an earlier case's "Reloaded:
        # JetStream max_mem_store = ..." must not pass for it, or the next
        # config is written before this reload has read its file
        before = srv.output().count("Reloaded: JetStream\n")
        with open(srv.config_path, "w") as f:
            f.write("jetstream: disabled\n")
        srv.signal(signal.SIGHUP)
        self.assertTrue(wait_count(srv, "Reloaded: JetStream\n", before + 1))
        with open(srv.config_path, "w") as f:
            f.write('jetstream { store_dir: "%s", max_mem: 2G, max_file: 1G }\n' % d)
        srv.signal(signal.SIGHUP)
        self.assertTrue(wait_count(srv, "Reloaded: JetStream\n", before + 2))
        r, = run(requests_g(srv.port, [("$JS.API.STREAM.INFO.KEEP", b"")]))
        self.assertEqual(r["state"]["messages"], 1)


def wait_count(srv, text, n, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.output().count(text) >= n:
            return True
        time.sleep(0.05)
    return False


async def requests_g(port, calls):
    """Requests without credentials (the global account), retried while
    JetStream comes back after a reload."""
    nc = await nats.connect("nats://127.0.0.1:%d" % port, allow_reconnect=False)
    try:
        out = []
        for subject, body in calls:
            for attempt in range(100):
                try:
                    m = await nc.request(subject, body, timeout=10)
                    break
                except nats.errors.NoRespondersError:
                    await asyncio.sleep(0.1)
            out.append(json.loads(m.data))
        return out
    finally:
        await nc.close()


class ReloadTest(ReloadBase, unittest.TestCase):
    pass


@needs(HAVE_GO_215, "nats-server 2.15 is not installed at " + GO_SERVER_215)
class ReloadGoTest(ReloadBase, unittest.TestCase):
    exe = GO_SERVER_215


@needs(nats is not None and nkeys is not None, "nats-py or nkeys is not installed")
class JwtAccountsBase:
    """Operator mode: JetStream from an account JWT's limits."""
    exe = None

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="gnatsd-jsjwt-")
        op = key("O")
        cls.keys = {n: key("A") for n in ("simple", "none", "tiered", "sys")}
        claims = {
            "simple": dict(UNLIMITED, mem_storage=4096, disk_storage=-1, streams=3),
            "none": UNLIMITED,
            "tiered": dict(UNLIMITED, tiered_limits={"R1": {"mem_storage": 1000, "disk_storage": 2000,
                                                            "streams": 4, "consumer": 5}}),
            "sys": UNLIMITED,
        }
        preload = "\n".join('  %s: "%s"' % (k.pub, encode("account", k.pub, op, {"limits": claims[n]}))
                            for n, k in cls.keys.items())
        conf = ('operator: %s\nresolver: MEMORY\nresolver_preload: {\n%s\n}\nsystem_account: %s\n'
                'jetstream { store_dir: "%s" }\n' % (encode("operator", op.pub, op), preload,
                                                      cls.keys["sys"].pub, cls.dir))
        cls.srv = ServerProcess(config=conf, exe=cls.exe)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def creds(self, name):
        u = key("U")
        path = os.path.join(self.dir, "%s-%s.creds" % (name, u.pub[:8]))
        with open(path, "w") as f:
            f.write(creds_text(encode("user", u.pub, self.keys[name], dict(USER_LIMITS)), u))
        return path

    def call(self, name, *calls):
        return run(requests(self.srv.port, None, calls, creds=self.creds(name)))

    def test_limits_from_the_claims(self):
        info, s1, big = self.call("simple", INFO, stream("S1"), stream("S2", max_bytes=5000))
        self.assertEqual(info["limits"], limits(4096, -1, 3, 0))
        self.assertNotIn("error", s1)
        self.assertEqual(big["error"], e(500, 10028, "insufficient memory resources available"))

    def test_no_storage_no_jetstream(self):
        info, = self.call("none", INFO)
        self.assertEqual(info["error"], NOT_ENABLED)

    def test_tiered_limits(self):
        info, = self.call("tiered", INFO)
        self.assertEqual(info["limits"], {k: (False if isinstance(v, bool) else 0) for k, v in limits().items()})
        self.assertEqual(info["tiers"]["R1"]["limits"], limits(1000, 2000, 4, 5))


class JwtAccountsTest(JwtAccountsBase, unittest.TestCase):
    pass


@needs(HAVE_GO_215, "nats-server 2.15 is not installed at " + GO_SERVER_215)
class JwtAccountsGoTest(JwtAccountsBase, unittest.TestCase):
    exe = GO_SERVER_215


if __name__ == "__main__":
    unittest.main()
