"""WebSocket clients through a real client library (issue 21): nats-py's
websocket transport (aiohttp) against a gnatsd.py process, over ws:// and
wss://: pub/sub, request/reply, headers, the websocket block's own
authorization, cookies, allowed_connection_types, mixing with plain TCP
clients, and the slow-consumer rule."""

import asyncio
import json
import os
import ssl
import time
import unittest
import urllib.request

from tests.util import flushed, ROOT, RawClient, ServerProcess, needs, port_of, wait_for
from tests.test_websocket_frames import CONNECT, WsConn

try:
    import nats
    import aiohttp  # noqa: F401  (nats-py's websocket transport)
    HAVE_NATSPY = True
except ImportError:
    HAVE_NATSPY = False

TIMEOUT = 10.0
CERTS = os.path.join(ROOT, "configs", "certs")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


class WsCase(unittest.TestCase):
    config = "websocket { host: 127.0.0.1, port: -1, no_tls: true }\n"

    @classmethod
    def setUpClass(cls):
        cls.srv = ServerProcess("-m", "-1", config=cls.config)
        cls.ws_port = port_of(cls.srv.ports["websocket"][0])
        cls.url = "ws://127.0.0.1:%d" % cls.ws_port

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def monitor(self, path):
        return json.loads(urllib.request.urlopen(
            "http://127.0.0.1:%d%s" % (self.srv.monitor_port, path), timeout=TIMEOUT).read())


@needs(HAVE_NATSPY, "nats-py and aiohttp are needed")
class TestNatsPyWs(WsCase):
    def test_pub_sub_exact_count(self):
        async def go():
            sub_nc = await nats.connect(self.url)
            pub_nc = await nats.connect(self.url)
            got = []
            done = asyncio.Event()

            async def cb(msg):
                got.append(msg.data)
                if len(got) == 500:
                    done.set()
            await sub_nc.subscribe("ws.count", cb=cb)
            await flushed(sub_nc)
            for i in range(500):
                await pub_nc.publish("ws.count", b"m%d" % i)
            await flushed(pub_nc)
            await asyncio.wait_for(done.wait(), TIMEOUT)
            await asyncio.sleep(0.2)
            await pub_nc.close()
            await sub_nc.close()
            return got
        got = run(go())
        self.assertEqual(got, [b"m%d" % i for i in range(500)])

    def test_request_reply_and_headers(self):
        async def go():
            nc = await nats.connect(self.url)

            async def handler(msg):
                await nc.publish(msg.reply, b"re:" + msg.data,
                                 headers={"X-Echo": msg.headers["X-In"]})
            await nc.subscribe("svc", cb=handler)
            r = await nc.request("svc", b"ping", timeout=TIMEOUT, headers={"X-In": "abc"})
            with self.assertRaises(nats.errors.NoRespondersError):
                await nc.request("nobody.home", b"", timeout=TIMEOUT)
            await nc.close()
            return r
        r = run(go())
        self.assertEqual(r.data, b"re:ping")
        self.assertEqual(r.headers, {"X-Echo": "abc"})

    def test_large_message_both_ways(self):
        body = os.urandom(300 * 1024)

        async def go():
            nc = await nats.connect(self.url)
            sub = await nc.subscribe("big")
            await nc.publish("big", body)
            msg = await sub.next_msg(timeout=TIMEOUT)
            await nc.close()
            return msg.data
        self.assertEqual(run(go()), body)

    def test_ws_and_tcp_clients_share_subjects(self):
        tcp = RawClient(self.srv.port)
        self.addCleanup(tcp.close)
        tcp.send(b"SUB mix 1\r\n")
        tcp.ping()

        async def go():
            nc = await nats.connect(self.url)
            sub = await nc.subscribe("back")
            await nc.publish("mix", b"from-ws")
            await flushed(nc)
            tcp.send(b"PUB back 7\r\nfrom-tc\r\n")
            msg = await sub.next_msg(timeout=TIMEOUT)
            await nc.close()
            return msg.data
        self.assertEqual(run(go()), b"from-tc")
        self.assertEqual(tcp.read_msg()[-1], b"from-ws")

    def test_connz_kind_type_and_counters(self):
        async def go():
            nc = await nats.connect(self.url, name="counted")
            for _ in range(7):
                await nc.publish("counted.x", b"12345")
            await flushed(nc)
            conns = wait_for(lambda: [c for c in self.monitor("/connz")["connections"]
                                      if c.get("name") == "counted" and c["in_msgs"] == 7], TIMEOUT)
            await nc.close()
            return conns
        conns = run(go())
        self.assertEqual(len(conns), 1)
        self.assertEqual((conns[0]["type"], conns[0]["in_bytes"]), ("websocket", 35))


class TestSlowConsumer(WsCase):
    config = "websocket { host: 127.0.0.1, port: -1, no_tls: true }\nmax_pending: 262144\nmax_payload: 65536\nwrite_deadline: 1s\n"

    def test_reader_that_stops_is_cut(self):
        c = WsConn(self.ws_port)
        self.addCleanup(c.close)
        c.read_nats_until(b"\r\n")
        from gnats import websocket as W
        from tests.test_websocket_frames import mask_frame
        c.send(mask_frame(W.OP_BINARY, CONNECT + b"SUB flood 1\r\nPING\r\n"))
        c.read_nats_until(b"PONG\r\n")
        before = self.monitor("/varz")["slow_consumers"]
        pub = RawClient(self.srv.port)
        self.addCleanup(pub.close)
        chunk = b"PUB flood 1000\r\n" + b"f" * 1000 + b"\r\n"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.monitor("/varz")["slow_consumers"] == before:
            try:
                pub.send(chunk * 200)
            except OSError:
                break
        self.assertEqual(self.monitor("/varz")["slow_consumers"], before + 1)
        closed = wait_for(lambda: [x for x in self.monitor("/connz?state=closed")["connections"]
                                   if x.get("type") == "websocket"
                                   and x.get("reason", "").startswith("Slow Consumer")], TIMEOUT)
        self.assertTrue(closed)


@needs(HAVE_NATSPY, "nats-py and aiohttp are needed")
class TestWsAuthorization(WsCase):
    config = ("authorization { users: [ {user: alice, password: pw1},"
              " {user: tcponly, password: pw2, allowed_connection_types: [\"STANDARD\"]} ] }\n"
              "websocket { host: 127.0.0.1, port: -1, no_tls: true, no_auth_user: alice }\n")

    def test_no_auth_user_and_connection_types(self):
        async def go():
            nc = await nats.connect(self.url)       # no credentials: alice
            await nc.publish("x", b"1")
            await flushed(nc)
            await nc.close()
            errors = []

            async def err_cb(e):
                errors.append(e)
            with self.assertRaises(Exception):
                await nats.connect("ws://tcponly:pw2@127.0.0.1:%d" % self.ws_port,
                                   allow_reconnect=False, error_cb=err_cb,
                                   max_reconnect_attempts=0, connect_timeout=5)
            return errors
        run(go())
        # the same user over plain TCP is fine
        tcp = RawClient(self.srv.port, b'{"user":"tcponly","pass":"pw2","verbose":false}')
        self.addCleanup(tcp.close)
        self.assertEqual(tcp.ping(), b"")


class TestWsOwnCredentials(WsCase):
    config = ("websocket { host: 127.0.0.1, port: -1, no_tls: true,"
              " authorization { user: wsuser, password: wspass, timeout: 2 },"
              " user_cookie: u, pass_cookie: p }\n")

    def info_and_reply(self, connect, headers=None):
        from gnats import websocket as W
        from tests.test_websocket_frames import mask_frame
        c = WsConn(self.ws_port, headers=headers)
        self.addCleanup(c.close)
        info = json.loads(c.read_nats_until(b"\r\n")[5:])
        c.send(mask_frame(W.OP_BINARY, connect + b"PING\r\n"))
        try:
            out = c.read_nats_until(b"\r\n")
        except (AssertionError, EOFError) as e:
            out = str(e).encode()
        return info, out

    def test_auth_timeout_closes_with_policy_violation(self):
        c = WsConn(self.ws_port)
        self.addCleanup(c.close)
        c.read_nats_until(b"\r\n")
        t0 = time.monotonic()
        self.assertIn(b"-ERR 'Authentication Timeout'", c.read_nats_until(b"-ERR"))
        self.assertEqual(c.read_close(), (1008, "Authentication Timeout"))
        self.assertGreater(time.monotonic() - t0, 1.0)      # the block's timeout: 2 s

    def test_block_credentials_and_cookies(self):
        info, out = self.info_and_reply(
            b'CONNECT {"user":"wsuser","pass":"wspass","verbose":false}\r\n')
        self.assertTrue(info["auth_required"])
        self.assertTrue(out.startswith(b"PONG"), out)
        info, out = self.info_and_reply(b'CONNECT {"user":"wsuser","pass":"no","verbose":false}\r\n')
        self.assertIn(b"Authorization Violation", out)
        info, out = self.info_and_reply(b'CONNECT {"verbose":false}\r\n',
                                        headers={"Cookie": "u=wsuser; p=wspass"})
        self.assertTrue(out.startswith(b"PONG"), out)
        # the TCP port has no authorization at all
        tcp = RawClient(self.srv.port)
        self.addCleanup(tcp.close)
        self.assertEqual(tcp.ping(), b"")


def _bcrypt_hash(pw):
    try:
        import bcrypt
    except ImportError:
        return None
    return bcrypt.hashpw(pw, bcrypt.gensalt(10)).decode()


_HASH = _bcrypt_hash(b"slow")


@needs(_HASH is not None, "bcrypt is needed")
class TestOrderBehindAuthCheck(WsCase):
    config = ("authorization { users: [ {user: u, password: \"%s\"}, {user: s, password: s} ] }\n"
              "websocket { host: 127.0.0.1, port: -1, no_tls: true }\n" % _HASH)

    def test_publish_then_close_in_one_read(self):
        """CONNECT (a bcrypt check: input waits), PUB and a close frame in
        one write: the PUB is delivered before the close is honoured."""
        from gnats import websocket as W
        from tests.test_websocket_frames import mask_frame
        import struct
        sub = RawClient(self.srv.port, b'{"user":"s","pass":"s","verbose":false}')
        self.addCleanup(sub.close)
        sub.send(b"SUB order 1\r\n")
        sub.ping(timeout=TIMEOUT)
        c = WsConn(self.ws_port)
        self.addCleanup(c.close)
        c.read_nats_until(b"\r\n")
        c.send(mask_frame(W.OP_BINARY, b'CONNECT {"user":"u","pass":"slow","verbose":false}\r\n'
                          b"PUB order 5\r\nfirst\r\n")
               + mask_frame(W.OP_CLOSE, struct.pack("!H", 1000)))
        self.assertEqual(c.read_close()[0], 1000)
        self.assertEqual(sub.read_msg(timeout=TIMEOUT)[2], b"first")


class TestReload(WsCase):
    config = "websocket { host: 127.0.0.1, port: -1, no_tls: true }\n"

    def test_reload_keeps_clients_and_refuses_changes(self):
        import signal
        from gnats import websocket as W
        from tests.test_websocket_frames import mask_frame
        c = WsConn(self.ws_port)
        self.addCleanup(c.close)
        c.read_nats_until(b"\r\n")
        c.send(mask_frame(W.OP_BINARY, CONNECT + b"PING\r\n"))
        c.read_nats_until(b"PONG\r\n")
        path = self.srv.config_path
        with open(path, "w") as f:          # the same block, on another line
            f.write("\n# moved\n" + self.config)
        self.srv.signal(signal.SIGHUP)
        self.assertTrue(self.srv.wait_log("Reloaded server configuration", TIMEOUT))
        with open(path, "w") as f:
            f.write("websocket { host: 127.0.0.1, port: -1, no_tls: true, compression: true }\n")
        self.srv.signal(signal.SIGHUP)
        self.assertTrue(self.srv.wait_log("config reload not supported for websocket", TIMEOUT))
        c.send(mask_frame(W.OP_BINARY, b"PING\r\n"))
        self.assertIn(b"PONG", c.read_nats_until(b"PONG\r\n"))


@needs(HAVE_NATSPY, "nats-py and aiohttp are needed")
class TestWss(WsCase):
    config = ('websocket { host: 127.0.0.1, port: -1, tls { cert_file: "%s", key_file: "%s" } }\n'
              % (os.path.join(CERTS, "server-cert.pem"), os.path.join(CERTS, "server-key.pem")))

    def test_wss_pub_sub_request(self):
        ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.pem"))
        url = "wss://localhost:%d" % self.ws_port

        async def go():
            nc = await nats.connect(url, tls=ctx)

            async def handler(msg):
                await nc.publish(msg.reply, msg.data.upper())
            await nc.subscribe("up", cb=handler)
            r = await nc.request("up", b"secure", timeout=TIMEOUT)
            info = nc._server_info
            await nc.close()
            return r.data, info
        data, info = run(go())
        self.assertEqual(data, b"SECURE")
        self.assertTrue(info["tls_required"])
        self.assertEqual(info["port"], self.ws_port)
        conns = self.monitor("/connz?state=closed")["connections"]
        self.assertTrue(any(c.get("type") == "websocket" and c.get("tls_version", "").startswith("1.")
                            for c in conns), conns)
        self.assertTrue(self.srv.ports["websocket"][0].startswith("wss://"))

    def test_plain_http_on_wss_port_is_refused(self):
        with self.assertRaises((EOFError, OSError, ValueError, IndexError)):
            WsConn(self.ws_port)
        self.assertTrue(self.srv.wait_log("websocket TLS handshake error"))


if __name__ == "__main__":
    unittest.main()
