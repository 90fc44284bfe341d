"""Operator mode, black-box: a server started with an operator JWT, the MEMORY
resolver and preloaded account JWTs (all made here with the `nkeys`
package), and clients proving user JWTs: nats-py with `user_credentials=`
a .creds file, and raw sockets that sign the INFO nonce themselves. Every
case runs against gnatsd.py and, when present, against nats-server 2.15 on
the same config: both must answer alike."""

import asyncio
import json
import os
import shutil
import tempfile
import time
import unittest

from tests.test_jwt_unit import (UNLIMITED, USER_LIMITS, creds_text, encode, key, nkeys,
                                 sign_nonce)
from tests.util import flushed, GO_SERVER_215, HAVE_GO_215, RawClient, ServerProcess, needs

try:
    import nats
except ImportError:         # pragma: no cover
    nats = None


class Setup:
    """One operator, accounts A (revokes one user), B, and C (one
    connection at most), their users and their .creds files."""

    def __init__(self):
        now = int(time.time())
        self.dir = tempfile.mkdtemp(prefix="gnatsd-jwt-")
        self.op = key("O")
        op_jwt = encode("operator", self.op.pub, self.op)
        self.a, self.b, self.c = key("A"), key("A"), key("A")
        self.revoked = key("U")
        accounts = {
            self.a.pub: encode("account", self.a.pub, self.op, {
                "limits": UNLIMITED, "revocations": {self.revoked.pub: now + 3600},
                "mappings": {"map.*": [{"subject": "mapped.$1"}]}}),
            self.b.pub: encode("account", self.b.pub, self.op, {"limits": UNLIMITED}),
            self.c.pub: encode("account", self.c.pub, self.op, {"limits": dict(UNLIMITED, conn=1)}),
        }
        preload = "\n".join('  %s: "%s"' % kv for kv in accounts.items())
        self.config = ("operator: %s\nresolver: MEMORY\nresolver_preload: {\n%s\n}\n"
                       % (op_jwt, preload))

    def user(self, account=None, nats_claims=None, **top):
        """(key pair, JWT, .creds path) of a new user of `account` (A)."""
        u = key("U")
        return self.user_for(u, account, nats_claims, **top)

    def user_for(self, u, account=None, nats_claims=None, **top):
        token = encode("user", u.pub, account or self.a, dict(USER_LIMITS, **(nats_claims or {})),
                       **top)
        path = os.path.join(self.dir, "%s.creds" % u.pub[:12])
        with open(path, "w") as f:
            f.write(creds_text(token, u))
        return u, token, path

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def next_line(c, timeout=None):
    """The next protocol line but INFO (nats-server 2.15 answers a protocol-1
    client's first PING with an INFO naming its account: `connect_info`)."""
    while True:
        line = c.read_line(timeout)
        if not line.startswith(b"INFO "):
            return line


def raw_connect(port, token, kp=None, sig=None, extra=None):
    """A raw client that proves `token` (signing the INFO nonce with kp)
    and sends PING; returns (client, INFO dict)."""
    c = RawClient(port, connect=None, timeout=10)
    info = json.loads(c.info.split(b" ", 1)[1])
    obj = {"verbose": False, "pedantic": False, "jwt": token, "protocol": 1}
    if kp is not None:
        obj["sig"] = sig or sign_nonce(kp, info.get("nonce", ""))
    obj.update(extra or {})
    c.send(b"CONNECT " + json.dumps(obj).encode() + b"\r\nPING\r\n")
    return c, info


@needs(nkeys is not None, "the nkeys package is not installed")
class OperatorModeBase:
    """The cases; subclasses say which server runs them."""
    exe = None

    @classmethod
    def setUpClass(cls):
        cls.setup = Setup()
        cls.srv = ServerProcess("-D", config=cls.setup.config, exe=cls.exe)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.setup.close()

    def refused(self, c, text="Authorization Violation"):
        self.assertEqual(next_line(c), ("-ERR '%s'" % text).encode())
        self.assertTrue(c.closed(5.0))

    def accepted(self, c):
        self.assertEqual(next_line(c), b"PONG")

    def test_info_carries_a_nonce(self):
        u, token, _ = self.setup.user()
        c, info = raw_connect(self.srv.port, token, u)
        self.addCleanup(c.close)
        self.assertTrue(info["auth_required"])
        self.assertEqual(len(info["nonce"]), 15)
        self.accepted(c)

    def test_wrong_signature_is_refused(self):
        u, token, _ = self.setup.user()
        c, _ = raw_connect(self.srv.port, token, key("U"))     # another key signs
        self.addCleanup(c.close)
        self.refused(c)
        c, _ = raw_connect(self.srv.port, token, None)         # no sig at all
        self.addCleanup(c.close)
        self.refused(c)

    def test_tampered_jwt_is_refused(self):
        u, token, _ = self.setup.user()
        h, p, s = token.split(".")
        c, _ = raw_connect(self.srv.port, h + "." + p + "." + s[::-1], u)
        self.addCleanup(c.close)
        self.refused(c)

    def test_expired_revoked_and_unknown_account_are_refused(self):
        # each client signs the nonce properly: the JWT alone is refused
        u, expired, _ = self.setup.user(exp=int(time.time()) - 10)
        c, _ = raw_connect(self.srv.port, expired, u)
        self.addCleanup(c.close)
        self.refused(c)
        _, revoked, _ = self.setup.user_for(self.setup.revoked)
        c, _ = raw_connect(self.srv.port, revoked, self.setup.revoked)
        self.addCleanup(c.close)
        self.refused(c)
        s, unknown, _ = self.setup.user(account=key("A"))
        c, _ = raw_connect(self.srv.port, unknown, s)
        self.addCleanup(c.close)
        self.refused(c)

    def send_connect(self, obj_bytes):
        c = RawClient(self.srv.port, connect=None, timeout=10)
        self.addCleanup(c.close)
        c.send(b"CONNECT " + obj_bytes + b"\r\nPING\r\n")
        return c

    def test_junk_jwts_are_refused(self):
        for obj in (b'{"jwt": "' + b"x" * 3000 + b'"}', b'{"sig": "abc"}', b'{"jwt": null}',
                    b'{"jwt": "a.b.c", "sig": "abc"}', b'{"verbose": false}'):
            self.refused(self.send_connect(obj))

    def test_bearer_token_needs_no_signature(self):
        _, token, _ = self.setup.user(nats_claims={"bearer_token": True})
        c, _ = raw_connect(self.srv.port, token, None)
        self.addCleanup(c.close)
        self.accepted(c)

    def test_user_permissions_apply(self):
        u, token, _ = self.setup.user(nats_claims={"pub": {"allow": ["ok.>"]}})
        c, _ = raw_connect(self.srv.port, token, u)
        self.addCleanup(c.close)
        self.accepted(c)
        c.send(b"SUB ok.> 1\r\nPUB ok.1 2\r\nhi\r\nPUB no 2\r\nhi\r\nPING\r\n")
        self.assertEqual(next_line(c), b"MSG ok.1 1 2")
        self.assertEqual(next_line(c), b"hi")
        self.assertEqual(next_line(c), b"-ERR 'Permissions Violation for Publish to \"no\"'")
        self.assertEqual(next_line(c), b"PONG")

    def test_account_mappings_apply(self):
        u, token, _ = self.setup.user()
        c, _ = raw_connect(self.srv.port, token, u)
        self.addCleanup(c.close)
        self.accepted(c)
        c.send(b"SUB mapped.> 1\r\nSUB map.> 2\r\nPUB map.x 2\r\nhi\r\nPING\r\n")
        self.assertEqual(next_line(c), b"MSG mapped.x 1 2")
        self.assertEqual(next_line(c), b"hi")
        self.assertEqual(next_line(c), b"PONG")       # nothing on map.x itself
        # another account has no such mapping
        ub, tb, _ = self.setup.user(account=self.setup.b)
        b, _ = raw_connect(self.srv.port, tb, ub)
        self.addCleanup(b.close)
        self.accepted(b)
        b.send(b"SUB map.> 1\r\nPUB map.x 2\r\nhi\r\nPING\r\n")
        self.assertEqual(next_line(b), b"MSG map.x 1 2")

    def test_account_connection_limit(self):
        u1, t1, _ = self.setup.user(account=self.setup.c)
        u2, t2, _ = self.setup.user(account=self.setup.c)
        first, _ = raw_connect(self.srv.port, t1, u1)
        self.addCleanup(first.close)
        self.accepted(first)
        # verbose: the -ERR comes alone, no +OK before it
        second, _ = raw_connect(self.srv.port, t2, u2, extra={"verbose": True})
        self.addCleanup(second.close)
        self.refused(second, "maximum account active connections exceeded")
        first.send(b"PING\r\n")
        self.assertEqual(next_line(first), b"PONG")     # the first one stays

    def test_user_expiring_while_connected_is_closed(self):
        u, token, _ = self.setup.user(exp=int(time.time()) + 2)
        c, _ = raw_connect(self.srv.port, token, u)
        self.addCleanup(c.close)
        self.accepted(c)
        self.assertEqual(next_line(c, timeout=15), b"-ERR 'User Authentication Expired'")
        self.assertTrue(c.closed(5.0))

    def test_refusals_are_logged_with_the_reason(self):
        u, expired, _ = self.setup.user(exp=int(time.time()) - 10)
        c, _ = raw_connect(self.srv.port, expired, u)
        self.addCleanup(c.close)
        self.refused(c)
        rx = r"\[DBG\] 127\.0\.0\.1:\d+ - cid:\d+ - User JWT no longer valid: .*claim is expired"
        self.assertTrue(self.srv.wait_log(rx, 10), self.srv.output()[-2000:])
        self.assertTrue(self.srv.wait_log(r"\[ERR\] 127\.0\.0\.1:\d+ - cid:\d+ - "
                                          r"authentication error", 10))

    @needs(nats is not None, "nats-py is not installed")
    def test_natspy_creds_pubsub_and_isolation(self):
        _, _, creds_a1 = self.setup.user()
        _, _, creds_a2 = self.setup.user()
        _, _, creds_b = self.setup.user(account=self.setup.b)
        url = "nats://127.0.0.1:%d" % self.srv.port

        async def run():
            a1 = await nats.connect(url, user_credentials=creds_a1, allow_reconnect=False)
            a2 = await nats.connect(url, user_credentials=creds_a2, allow_reconnect=False)
            b = await nats.connect(url, user_credentials=creds_b, allow_reconnect=False)
            got_a, got_b = [], []

            async def on_a(m):
                got_a.append(m.data)

            async def on_b(m):
                got_b.append(m.data)
            await a2.subscribe("orders.>", cb=on_a)
            await b.subscribe("orders.>", cb=on_b)
            await flushed(a2)
            await flushed(b)
            for i in range(10):
                await a1.publish("orders.%d" % i, b"m%d" % i)
            await b.publish("orders.from_b", b"b")
            await flushed(a1)
            await flushed(b)
            deadline = time.monotonic() + 15
            while len(got_a) < 10 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await flushed(a2)
            await flushed(b)
            # request/reply inside A; B sees nobody
            async def helper(m):
                await a2.publish(m.reply, b"OK!")
            await a2.subscribe("help", cb=helper)
            await flushed(a2)
            reply = await a1.request("help", b"?", timeout=5)
            no_resp = None
            try:
                await b.request("help", b"?", timeout=2)
            except Exception as e:      # NoRespondersError on both servers
                no_resp = type(e).__name__
            for nc in (a1, a2, b):
                await nc.close()
            return got_a, got_b, reply.data, no_resp
        got_a, got_b, reply, no_resp = asyncio.run(run())
        self.assertEqual(got_a, [b"m%d" % i for i in range(10)])
        self.assertEqual(got_b, [b"b"])
        self.assertEqual(reply, b"OK!")
        self.assertEqual(no_resp, "NoRespondersError")

    @needs(nats is not None, "nats-py is not installed")
    def test_natspy_sees_authorization_violation(self):
        u = key("U")
        _, _, path = self.setup.user_for(u, exp=int(time.time()) - 10)

        async def quiet(e):
            pass

        async def run():
            try:
                nc = await nats.connect("nats://127.0.0.1:%d" % self.srv.port,
                                        user_credentials=path, allow_reconnect=False,
                                        connect_timeout=5, error_cb=quiet)
                await nc.close()
                return "connected"
            except Exception as e:
                return str(e)
        self.assertEqual(asyncio.run(run()), "nats: 'Authorization Violation'")


class GnatsdOperatorModeTest(OperatorModeBase, unittest.TestCase):
    def test_wrongly_typed_fields_are_refused(self):
        # nats-server closes without a word when CONNECT's JSON does not fit
        # its types; we say Authorization Violation (and log no traceback)
        for obj in (b'{"jwt": 12345, "sig": "x"}', b'{"jwt": ["a"]}',
                    b'{"jwt": "a.b.c", "sig": [1, 2]}', b'{"jwt": {"a": 1}, "sig": 5}'):
            self.refused(self.send_connect(obj))
        self.assertNotIn("Traceback", self.srv.output())


@needs(HAVE_GO_215, "nats-server 2.15 is not installed")
class GoOperatorModeTest(OperatorModeBase, unittest.TestCase):
    exe = GO_SERVER_215


del OperatorModeBase

if __name__ == "__main__":
    unittest.main()
