"""Operator mode's accounts from their JWTs, black-box: exports and imports
in the account claims (a public service, a service that needs an
activation token, a stream), the per-connection limits of account and
user claims, a resolver_preload reload, and a mixed cluster with
nats-server 2.15 in the same operator mode. Every key, JWT and .creds file
is made here with the `nkeys` package; clients are nats-py (with
`user_credentials=`) and raw sockets. The single-node cases run against
gnatsd.py and nats-server 2.15 on the same config."""

import asyncio
import json
import os
import shutil
import signal
import tempfile
import time
import unittest
import urllib.request

from tests.test_jwt_unit import UNLIMITED, USER_LIMITS, creds_text, encode, key, nkeys, sign_nonce
from tests.util import (flushed, GO_SERVER_215, HAVE_GO_215, RawClient, ServerProcess, free_port, needs,
                        wait_for)

try:
    import nats
    from nats.errors import NoRespondersError, TimeoutError as NatsTimeout
except ImportError:         # pragma: no cover
    nats = None

TIMEOUT = 15.0


class Operator:
    """One operator and accounts A (exports), B (imports with and without
    an activation token), C (imports the token-only service without a
    token: left out), L (limits) and N (no limits claim: every limit 0),
    each a JWT in resolver_preload."""

    def __init__(self, b_imports=None):
        self.dir = tempfile.mkdtemp(prefix="gnatsd-opacc-")
        self.op = key("O")
        self.op_jwt = encode("operator", self.op.pub, self.op)
        self.a, self.b, self.c, self.l, self.n = key("A"), key("A"), key("A"), key("A"), key("A")
        self.token = encode("activation", self.b.pub, self.a,
                            {"subject": "priv.echo", "kind": "service"})
        self.accounts = {
            self.a.pub: self.account(self.a, exports=[
                {"name": "echo", "subject": "svc.echo", "type": "service"},
                {"name": "priv", "subject": "priv.echo", "type": "service", "token_req": True},
                {"name": "news", "subject": "news.>", "type": "stream"}]),
            self.b.pub: self.account(self.b, imports=self.b_imports() if b_imports is None
                                     else b_imports),
            self.c.pub: self.account(self.c, imports=[
                {"name": "priv", "subject": "priv.echo", "account": self.a.pub,
                 "type": "service"}]),
            self.l.pub: self.account(self.l, limits=dict(UNLIMITED, subs=2, payload=16)),
            # no limits at all: every limit is 0
            self.n.pub: encode("account", self.n.pub, self.op, {}),
        }

    def b_imports(self, stream=True):
        out = [{"name": "echo", "subject": "svc.echo", "account": self.a.pub, "type": "service",
                "local_subject": "echo"},
               # the older form: `subject` is B's, `to` the exporter's
               {"name": "old", "subject": "old.echo", "to": "svc.echo", "account": self.a.pub,
                "type": "service"},
               {"name": "priv", "subject": "priv.echo", "account": self.a.pub,
                "type": "service", "token": self.token}]
        if stream:
            out.append({"name": "news", "subject": "news.>", "account": self.a.pub,
                        "type": "stream", "to": "fromA"})
        return out

    def account(self, kp, exports=(), imports=(), limits=None, **extra):
        claims = {"limits": limits or UNLIMITED, "exports": list(exports),
                  "imports": list(imports)}
        claims.update(extra)
        return encode("account", kp.pub, self.op, claims)

    def config(self, accounts=None, extra=""):
        accounts = self.accounts if accounts is None else accounts
        preload = "\n".join('  %s: "%s"' % kv for kv in accounts.items())
        return ("operator: %s\nresolver: MEMORY\nresolver_preload: {\n%s\n}\n%s"
                % (self.op_jwt, preload, extra))

    def user(self, account, nats_claims=None):
        """(key pair, JWT, .creds path) of a new user of `account`."""
        u = key("U")
        token = encode("user", u.pub, account, dict(USER_LIMITS, **(nats_claims or {})))
        path = os.path.join(self.dir, "%s.creds" % u.pub[:12])
        with open(path, "w") as f:
            f.write(creds_text(token, u))
        return u, token, path

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def raw_user(port, setup, account, nats_claims=None):
    """A raw client logged in as a new user of `account`, after its PONG."""
    u, token, _ = setup.user(account, nats_claims)
    c = RawClient(port, connect=None, timeout=10)
    info = json.loads(c.info.split(b" ", 1)[1])
    obj = {"verbose": False, "pedantic": False, "jwt": token, "protocol": 1,
           "sig": sign_nonce(u, info["nonce"])}
    c.send(b"CONNECT " + json.dumps(obj).encode() + b"\r\nPING\r\n")
    assert next_line(c) == b"PONG"
    return c, u


def next_line(c, timeout=None):
    """The next protocol line but INFO (nats-server 2.15 answers the first
    PING of a protocol-1 client with an INFO too)."""
    while True:
        line = c.read_line(timeout)
        if not line.startswith(b"INFO "):
            return line


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def connect(port, creds):
    return await nats.connect("nats://127.0.0.1:%d" % port, user_credentials=creds,
                              allow_reconnect=False, connect_timeout=10)


@needs(nkeys is not None and nats is not None, "nkeys or nats-py is not installed")
class AccountsFromJwtBase:
    """The single-node cases; subclasses name the server."""
    exe = None

    @classmethod
    def setUpClass(cls):
        cls.setup = Operator()
        cls.srv = ServerProcess(config=cls.setup.config(), exe=cls.exe)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.setup.close()

    def raw(self, account, nats_claims=None):
        c, _ = raw_user(self.srv.port, self.setup, account, nats_claims)
        self.addCleanup(c.close)
        return c

    async def responder(self, subject, prefix):
        nc = await connect(self.srv.port, self.setup.user(self.setup.a)[2])

        async def answer(msg):
            await msg.respond(prefix + msg.data)
        await nc.subscribe(subject, cb=answer)
        await flushed(nc)
        return nc

    def test_service_import_request_reply(self):
        async def go():
            svc = await self.responder("svc.echo", b"echo:")
            b = await connect(self.srv.port, self.setup.user(self.setup.b)[2])
            replies = [await b.request("echo", b"%d" % i, timeout=10) for i in range(20)]
            self.assertEqual([m.data for m in replies], [b"echo:%d" % i for i in range(20)])
            msg = await b.request("old.echo", b"old", timeout=10)
            self.assertEqual(msg.data, b"echo:old")
            # A's subject itself is not B's: nothing answers it in B
            with self.assertRaises(NoRespondersError):
                await b.request("svc.echo", b"x", timeout=5)
            await b.close()
            await svc.close()
        run(go())

    def test_token_service_needs_the_activation(self):
        async def go():
            svc = await self.responder("priv.echo", b"priv:")
            b = await connect(self.srv.port, self.setup.user(self.setup.b)[2])
            c = await connect(self.srv.port, self.setup.user(self.setup.c)[2])
            msg = await b.request("priv.echo", b"hi", timeout=10)
            self.assertEqual(msg.data, b"priv:hi")
            # C imports it without a token: the import is left out
            with self.assertRaises(NoRespondersError):
                await c.request("priv.echo", b"hi", timeout=5)
            for nc in (b, c, svc):
                await nc.close()
        run(go())

    def test_stream_import(self):
        sub_b = self.raw(self.setup.b)
        sub_b.send(b"SUB fromA.news.> 1\r\nSUB news.> 2\r\n")
        sub_b.ping()
        sub_c = self.raw(self.setup.c)
        sub_c.send(b"SUB fromA.news.> 1\r\nSUB news.> 2\r\n")
        sub_c.ping()
        pub = self.raw(self.setup.a)
        pub.send(b"".join(b"PUB news.%d 2\r\n%02d\r\n" % (i, i) for i in range(10)))
        pub.ping()
        got = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < 10 and time.monotonic() < deadline:
            got.extend(sub_b.drain())
        got.extend(sub_b.drain())
        self.assertEqual([(m[1][0], m[1][1], m[2]) for m in got],
                         [(b"fromA.news.%d" % i, b"1", b"%02d" % i) for i in range(10)])
        self.assertEqual(sub_c.drain(), [])     # C imports no stream: isolated

    def test_account_limits_per_connection(self):
        c = self.raw(self.setup.l)
        c.send(b"SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPING\r\n")
        self.assertEqual(next_line(c), b"-ERR 'maximum subscriptions exceeded'")
        self.assertEqual(next_line(c), b"PONG")
        c.send(b"PUB a 16\r\n0123456789abcdef\r\nPING\r\n")
        self.assertEqual(c.read_msg()[2], b"0123456789abcdef")
        self.assertEqual(next_line(c), b"PONG")
        c.send(b"PUB a 17\r\n0123456789abcdefg\r\n")
        self.assertEqual(next_line(c), b"-ERR 'Maximum Payload Violation'")
        self.assertTrue(c.closed(5.0))

    def test_user_limits_lowered_by_the_account(self):
        # the user allows more subscriptions than the account: the account's
        # 2 wins; the user's payload of 4 is lower than the account's 16
        c = self.raw(self.setup.l, {"subs": 5, "payload": 4})
        c.send(b"SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPUB a 4\r\nabcd\r\nPING\r\n")
        self.assertEqual(next_line(c), b"-ERR 'maximum subscriptions exceeded'")
        self.assertEqual(c.read_msg()[2], b"abcd")
        self.assertEqual(next_line(c), b"PONG")
        c.send(b"PUB a 5\r\nabcde\r\n")
        self.assertEqual(next_line(c), b"-ERR 'Maximum Payload Violation'")
        self.assertTrue(c.closed(5.0))

    def test_user_subs_limit_in_an_unlimited_account(self):
        c = self.raw(self.setup.a, {"subs": 1})
        c.send(b"SUB a 1\r\nSUB b 2\r\nPUB a 2\r\nok\r\nPING\r\n")
        self.assertEqual(next_line(c), b"-ERR 'maximum subscriptions exceeded'")
        self.assertEqual(c.read_msg()[2], b"ok")
        self.assertEqual(next_line(c), b"PONG")

    def test_account_without_limits_admits_nobody(self):
        u, token, _ = self.setup.user(self.setup.n)
        c = RawClient(self.srv.port, connect=None, timeout=10)
        self.addCleanup(c.close)
        info = json.loads(c.info.split(b" ", 1)[1])
        obj = {"verbose": False, "pedantic": False, "jwt": token, "protocol": 1,
               "sig": sign_nonce(u, info["nonce"])}
        c.send(b"CONNECT " + json.dumps(obj).encode() + b"\r\nPING\r\n")
        self.assertEqual(next_line(c), b"-ERR 'maximum account active connections exceeded'")
        self.assertTrue(c.closed(5.0))

    def test_zero_subscriptions_allowed_closes(self):
        # a user JWT with subs 0: nats-server says so and closes at once
        u, token, _ = self.setup.user(self.setup.a, {"subs": 0})
        c = RawClient(self.srv.port, connect=None, timeout=10)
        self.addCleanup(c.close)
        info = json.loads(c.info.split(b" ", 1)[1])
        obj = {"verbose": False, "pedantic": False, "jwt": token, "protocol": 1,
               "sig": sign_nonce(u, info["nonce"])}
        c.send(b"CONNECT " + json.dumps(obj).encode() + b"\r\n")
        self.assertEqual(next_line(c), b"-ERR 'maximum subscriptions exceeded'")
        self.assertTrue(c.closed(5.0))


class GnatsdAccountsFromJwtTest(AccountsFromJwtBase, unittest.TestCase):
    pass


@needs(HAVE_GO_215, "nats-server 2.15 is not installed")
class GoAccountsFromJwtTest(AccountsFromJwtBase, unittest.TestCase):
    exe = GO_SERVER_215


# --- the system account ------------------------------------------------------------

@needs(nkeys is not None, "the nkeys package is not installed")
class SystemAccountBase:
    """The operator JWT names the system account: the registry has it under
    its public key from the start (what /accountz and the system account's
    code use)."""
    exe = None

    def test_system_account_is_the_operator_jwts(self):
        s = Operator()
        self.addCleanup(s.close)
        sys_acc = key("A")
        s.op_jwt = encode("operator", s.op.pub, s.op, {"system_account": sys_acc.pub})
        accounts = dict(s.accounts)
        accounts[sys_acc.pub] = s.account(sys_acc)
        srv = ServerProcess("-m", "-1", config=s.config(accounts), exe=self.exe)
        self.addCleanup(srv.stop)
        url = "http://127.0.0.1:%d/accountz" % srv.monitor_port
        with urllib.request.urlopen(url, timeout=10) as r:
            az = json.load(r)
        self.assertEqual(az["system_account"], sys_acc.pub)
        self.assertIn(sys_acc.pub, az["accounts"])
        self.assertNotIn("$SYS", az["accounts"])


class GnatsdSystemAccountTest(SystemAccountBase, unittest.TestCase):
    pass


@needs(HAVE_GO_215, "nats-server 2.15 is not installed")
class GoSystemAccountTest(SystemAccountBase, unittest.TestCase):
    exe = GO_SERVER_215


# --- reload --------------------------------------------------------------------

@needs(nkeys is not None, "the nkeys package is not installed")
class ReloadBase:
    """SIGHUP with an updated resolver_preload: B gains its stream import,
    A revokes a connected user, L's conn limit drops, C goes."""
    exe = None

    def test_reload_applies_updated_account_jwts(self):
        s = Operator(b_imports=[])
        self.addCleanup(s.close)
        s.accounts[s.l.pub] = s.account(s.l, limits=dict(UNLIMITED, conn=3))
        srv = ServerProcess(config=s.config(), exe=self.exe)
        self.addCleanup(srv.stop)
        sub_b, _ = raw_user(srv.port, s, s.b)
        sub_b.send(b"SUB fromA.news.> 1\r\n")
        sub_b.ping()
        pub, _ = raw_user(srv.port, s, s.a)
        doomed, doomed_key = raw_user(srv.port, s, s.a)
        gone, _ = raw_user(srv.port, s, s.c)
        limited = []
        for _ in range(3):
            limited.append(raw_user(srv.port, s, s.l)[0])
            limited[-1].ping()
        for c in [sub_b, pub, doomed, gone] + limited:
            self.addCleanup(c.close)
        pub.send(b"PUB news.1 6\r\nbefore\r\n")
        pub.ping()
        self.assertEqual(sub_b.drain(), [])   # no import yet

        new = dict(s.accounts)
        new[s.b.pub] = s.account(s.b, imports=s.b_imports())
        new[s.a.pub] = s.account(s.a, exports=[
            {"name": "news", "subject": "news.>", "type": "stream"}],
            revocations={doomed_key.pub: int(time.time()) + 10})
        new[s.l.pub] = s.account(s.l, limits=dict(UNLIMITED, conn=1))
        del new[s.c.pub]
        with open(srv.config_path, "w") as f:
            f.write(s.config(new))
        srv.signal(signal.SIGHUP)
        self.assertEqual(next_line(doomed, TIMEOUT), b"-ERR 'User Authentication Revoked'")
        self.assertTrue(doomed.closed(5.0))
        self.assertEqual(next_line(gone, TIMEOUT), b"-ERR 'Authorization Violation'")
        self.assertTrue(gone.closed(5.0))
        # the newest connections above the new limit go, the oldest stays
        for c in limited[1:]:
            self.assertEqual(next_line(c, TIMEOUT),
                             b"-ERR 'maximum account active connections exceeded'")
            self.assertTrue(c.closed(5.0))
        limited[0].ping()      # still served (a closed one raises)

        def delivered():
            pub.send(b"PUB news.2 5\r\nafter\r\n")
            pub.ping()
            return [m for m in sub_b.drain() if m[2] == b"after"]
        self.assertTrue(wait_for(delivered, TIMEOUT, interval=0.2))
        self.assertNotIn("eyJ", "\n".join(line for line in srv.output().splitlines()
                                          if "reload" in line.lower()))


class GnatsdReloadTest(ReloadBase, unittest.TestCase):
    def test_changed_operator_is_refused_without_printing_jwts(self):
        # the refusal's log text is ours (nats-server words it its own way)
        s = Operator()
        self.addCleanup(s.close)
        srv = ServerProcess(config=s.config(), exe=self.exe)
        self.addCleanup(srv.stop)
        c, _ = raw_user(srv.port, s, s.a)
        self.addCleanup(c.close)
        other = key("O")
        s.op_jwt = '["%s", "%s"]' % (s.op_jwt, encode("operator", other.pub, other))
        with open(srv.config_path, "w") as f:
            f.write(s.config())
        srv.signal(signal.SIGHUP)
        self.assertTrue(srv.wait_log("config reload not supported for TrustedOperators", TIMEOUT))
        line = [ln for ln in srv.output().splitlines() if "TrustedOperators" in ln][0]
        self.assertIn(s.op.pub, line)
        self.assertIn(other.pub, line)
        self.assertNotIn("eyJ", line)
        c.ping()        # the running configuration stays (a closed client raises)


@needs(HAVE_GO_215, "nats-server 2.15 is not installed")
class GoReloadTest(ReloadBase, unittest.TestCase):
    exe = GO_SERVER_215


# --- a mixed cluster ------------------------------------------------------------

@needs(nkeys is not None and HAVE_GO_215, "nkeys or nats-server 2.15 is not installed")
class MixedClusterTest(unittest.TestCase):
    """gnatsd.py and nats-server 2.15, the same operator and preload, one
    route: account traffic crosses it and stays in its account, and a
    service import answers across it."""

    @classmethod
    def setUpClass(cls):
        cls.s = Operator()
        p1, p2 = free_port(), free_port()
        cls.py = ServerProcess(config=cls.s.config(
            extra="cluster { name: op, listen: 127.0.0.1:%d }\n" % p1))
        # a fixed client port, waited for on the socket: nats-server 2.15
        # with a cluster may log "Server is ready" before its ports file
        cls.go = ServerProcess(config=cls.s.config(
            extra="cluster { name: op, listen: 127.0.0.1:%d, routes: [nats://127.0.0.1:%d] }\n"
            % (p2, p1)), exe=GO_SERVER_215, port=free_port(), wait=False)
        if not cls.go.wait_ready(TIMEOUT):
            out = cls.go.output()
            cls.go.stop()
            cls.py.stop()
            raise RuntimeError("nats-server did not start:\n" + out)

    @classmethod
    def tearDownClass(cls):
        cls.go.stop()
        cls.py.stop()
        cls.s.close()

    def raw(self, node, account):
        c, _ = raw_user(node.port, self.s, account)
        self.addCleanup(c.close)
        return c

    def until_seen(self, pub, sub, subject, want):
        def seen():
            pub.send(b"PUB %s 5\r\nprobe\r\n" % subject)
            pub.ping()
            return any(m[1][0] == want for m in sub.drain())
        self.assertTrue(wait_for(seen, TIMEOUT, interval=0.2))
        time.sleep(0.3)
        sub.drain()

    def collect(self, c, n):
        got = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < n and time.monotonic() < deadline:
            got.extend(c.drain())
        got.extend(c.drain())
        return got

    def test_account_traffic_crosses_the_route_and_stays_apart(self):
        for src, dst in ((self.py, self.go), (self.go, self.py)):
            sub_a, sub_b = self.raw(dst, self.s.a), self.raw(dst, self.s.b)
            sub_a.send(b"SUB shared.x 1\r\n")
            sub_b.send(b"SUB shared.x 1\r\nSUB marker 2\r\n")
            sub_a.ping(), sub_b.ping()
            pub_a, pub_b = self.raw(src, self.s.a), self.raw(src, self.s.b)
            self.until_seen(pub_a, sub_a, b"shared.x", b"shared.x")
            self.until_seen(pub_b, sub_b, b"marker", b"marker")
            pub_a.send(b"".join(b"PUB shared.x 3\r\n%03d\r\n" % i for i in range(50)))
            pub_a.ping()
            self.assertEqual([m[2] for m in self.collect(sub_a, 50)],
                             [b"%03d" % i for i in range(50)])
            pub_b.send(b"PUB marker 3\r\nend\r\n")
            pub_b.ping()
            self.assertEqual([m[2] for m in self.collect(sub_b, 1)], [b"end"])

    def test_stream_import_across_the_route(self):
        for src, dst in ((self.py, self.go), (self.go, self.py)):
            imp = self.raw(dst, self.s.b)
            imp.send(b"SUB fromA.news.> 1\r\n")
            imp.ping()
            pub = self.raw(src, self.s.a)
            self.until_seen(pub, imp, b"news.probe", b"fromA.news.probe")
            pub.send(b"".join(b"PUB news.%d 2\r\n%02d\r\n" % (i, i) for i in range(20)))
            pub.ping()
            got = self.collect(imp, 20)
            self.assertEqual([(m[1][0], m[2]) for m in got],
                             [(b"fromA.news.%d" % i, b"%02d" % i) for i in range(20)])

    @needs(nats is not None, "nats-py is not installed")
    def test_service_import_across_the_route(self):
        for svc_node, req_node in ((self.go, self.py), (self.py, self.go)):
            async def go():
                svc = await connect(svc_node.port, self.s.user(self.s.a)[2])

                async def answer(msg):
                    await msg.respond(b"re:" + msg.data)
                await svc.subscribe("svc.echo", cb=answer)
                await flushed(svc)
                b = await connect(req_node.port, self.s.user(self.s.b)[2])
                deadline = time.monotonic() + TIMEOUT
                while True:     # until the responder's interest crossed the route
                    try:
                        first = await b.request("echo", b"0", timeout=2)
                        break
                    except (NoRespondersError, NatsTimeout):
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.2)
                rest = [await b.request("echo", b"%d" % i, timeout=10) for i in range(1, 10)]
                self.assertEqual([m.data for m in [first] + rest],
                                 [b"re:%d" % i for i in range(10)])
                await b.close()
                await svc.close()
            run(go())


if __name__ == "__main__":
    unittest.main()
