"""websocket { jwt_cookie }: in operator mode a browser's user JWT may come
in a cookie of the upgrade request, and the CONNECT then carries only the
nonce signature, as nats-server does (each case on gnatsd.py and on
nats-server 2.15 with the same config)."""

import json
import unittest

from tests.test_jwt_unit import nkeys, sign_nonce
from tests.test_operator_accounts import Operator
from tests.test_websocket_frames import WsConn, ws_port
from tests.util import GO_SERVER_215, HAVE_GO_215, ServerProcess, needs


class JwtCookieBase:
    exe = None

    def setUp(self):
        self.op = Operator()
        self.addCleanup(self.op.close)
        ws = 'websocket { host: 127.0.0.1, port: -1, no_tls: true, jwt_cookie: "natsjwt" }\n'
        self.srv = ServerProcess(config=self.op.config(extra=ws), exe=self.exe)
        self.addCleanup(self.srv.stop)

    def login(self, cookie_jwt, sig_key):
        c = WsConn(ws_port(self.srv), headers={"Cookie": "other=1; natsjwt=%s" % cookie_jwt})
        self.addCleanup(c.close)
        self.assertEqual(c.status, 101)
        info = json.loads(c.read_nats_until(b"\r\n").split(b" ", 1)[1])
        obj = {"verbose": False, "pedantic": False, "protocol": 1,
               "sig": sign_nonce(sig_key, info["nonce"])}
        c.send_nats(b"CONNECT " + json.dumps(obj).encode() + b"\r\nPING\r\n")
        return c

    def test_the_jwt_from_the_cookie_logs_in(self):
        u, token, _ = self.op.user(self.op.a)
        c = self.login(token, u)
        out = c.read_nats_until(b"PONG\r\n")     # nats-server 2.15 may send an INFO first
        self.assertNotIn(b"-ERR", out)

    def test_a_signature_by_another_key_is_refused(self):
        u, token, _ = self.op.user(self.op.a)
        other, _, _ = self.op.user(self.op.a)
        c = self.login(token, other)
        self.assertIn(b"-ERR 'Authorization Violation'", c.read_nats_until(b"Violation'"))


@needs(nkeys is not None, "the nkeys package is not installed")
class GnatsdJwtCookieTest(JwtCookieBase, unittest.TestCase):
    pass


@needs(nkeys is not None and HAVE_GO_215, "nkeys or nats-server 2.15 is not installed")
class GoJwtCookieTest(JwtCookieBase, unittest.TestCase):
    exe = GO_SERVER_215


if __name__ == "__main__":
    unittest.main()
