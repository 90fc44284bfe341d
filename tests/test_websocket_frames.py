"""WebSocket at the frame level (issue 21): raw sockets against a real
gnatsd.py process, written the way RFC 6455 reads. The upgrade (good and
abusive requests), masked client frames, fragmentation, control frames,
close codes, limits tied to max_payload, permessage-deflate; and the pure
frame reader fed a message split at every byte."""

import base64
import hashlib
import json
import os
import socket
import struct
import time
import unittest
import urllib.request
import zlib

from gnats import websocket as W
from tests.util import ServerProcess, port_of, wait_for

TIMEOUT = 10.0


def ws_port(srv):
    return port_of(srv.ports["websocket"][0])


def mask_frame(opcode, payload, fin=True, rsv=0, mask=True, key=b"\x11\x22\x33\x44", length=None):
    """A client frame (masked unless mask=False)."""
    b0 = opcode | (0x80 if fin else 0) | rsv
    n = len(payload) if length is None else length
    if n <= 125:
        head = bytes((b0, (0x80 if mask else 0) | n))
    elif n < 65536:
        head = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return head + payload
    return head + key + W.unmask(payload, key)


class WsConn:
    """A raw websocket client: upgrade, then frames in and out."""

    def __init__(self, port, headers=None, deflate=False, request=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.key = base64.b64encode(os.urandom(16)).decode()
        if request is None:
            lines = ["GET / HTTP/1.1", "Host: 127.0.0.1:%d" % port, "Upgrade: websocket",
                     "Connection: Upgrade", "Sec-WebSocket-Key: " + self.key,
                     "Sec-WebSocket-Version: 13"]
            if deflate:
                lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
            for k, v in (headers or {}).items():
                lines.append("%s: %s" % (k, v))
            request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        try:
            self.sock.sendall(request)
            self.status, self.headers = self.read_response()
        except Exception:
            self.sock.close()
            raise

    def _more(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError("closed")
        self.buf += d

    def read_response(self):
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return int(lines[0].split(" ")[1]), headers

    def send(self, data):
        self.sock.sendall(data)

    def send_nats(self, data, **kw):
        self.sock.sendall(mask_frame(W.OP_BINARY, data, **kw))

    def read_frame(self):
        """(fin, rsv1, opcode, payload) of the next server frame; the
        server never masks."""
        while len(self.buf) < 2:
            self._more()
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "server frames are not masked"
        n, pos = b1 & 0x7F, 2
        if n == 126:
            while len(self.buf) < 4:
                self._more()
            n, pos = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            while len(self.buf) < 10:
                self._more()
            n, pos = struct.unpack("!Q", self.buf[2:10])[0], 10
        while len(self.buf) < pos + n:
            self._more()
        payload, self.buf = self.buf[pos:pos + n], self.buf[pos + n:]
        return bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, payload

    def read_nats_until(self, marker, inflate=False):
        """NATS bytes from binary frames until `marker` was seen."""
        out = b""
        while marker not in out:
            fin, rsv1, op, payload = self.read_frame()
            if op == W.OP_CLOSE:
                raise AssertionError("closed: %r (got %r)" % (payload, out))
            assert op == W.OP_BINARY, op
            if rsv1:
                payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
            out += payload
        return out

    def read_close(self):
        """(status, reason) of the close frame, skipping data frames."""
        while True:
            fin, rsv1, op, payload = self.read_frame()
            if op == W.OP_CLOSE:
                if len(payload) < 2:
                    return None, ""
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8")

    def closed(self):
        """True once the server closed the TCP connection."""
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return True
        except OSError:
            return True

    def close(self):
        self.sock.close()


def http_exchange(port, request, timeout=TIMEOUT):
    """Send raw bytes, return everything the server answers until it closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(request)
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                return out
            out += d
    finally:
        s.close()


def upgrade_request(port, drop=(), extra=(), method="GET", key=None):
    key = key or base64.b64encode(os.urandom(16)).decode()
    headers = [("Host", "127.0.0.1:%d" % port), ("Upgrade", "websocket"),
               ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key),
               ("Sec-WebSocket-Version", "13")]
    lines = ["%s / HTTP/1.1" % method] + ["%s: %s" % kv for kv in headers if kv[0] not in drop]
    lines += ["%s: %s" % kv for kv in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


CONNECT = b'CONNECT {"verbose":false,"pedantic":false,"protocol":1}\r\n'


class WsServerCase(unittest.TestCase):
    config = "websocket { host: 127.0.0.1, port: -1, no_tls: true, handshake_timeout: 1 }\nmax_payload: 4096\n"
    server_args = ("-m", "-1")

    @classmethod
    def setUpClass(cls):
        cls.srv = ServerProcess(*cls.server_args, config=cls.config)
        cls.port = ws_port(cls.srv)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def ws(self, **kw):
        c = WsConn(self.port, **kw)
        self.addCleanup(c.close)
        return c

    def connected(self, **kw):
        c = self.ws(**kw)
        self.assertEqual(c.status, 101)
        info = c.read_nats_until(b"\r\n")
        self.assertTrue(info.startswith(b"INFO {"), info)
        c.send_nats(CONNECT + b"PING\r\n")
        self.assertIn(b"PONG\r\n", c.read_nats_until(b"PONG\r\n"))
        return c

    def assert_closed_with(self, c, status, reason=None):
        got = c.read_close()
        self.assertEqual(got[0], status, got)
        if reason is not None:
            self.assertEqual(got[1], reason)
        self.assertTrue(c.closed())


class TestUpgrade(WsServerCase):
    def test_accept_key_and_info_frame(self):
        c = self.ws()
        self.assertEqual(c.status, 101)
        self.assertEqual(c.headers["upgrade"].lower(), "websocket")
        want = base64.b64encode(hashlib.sha1(c.key.encode() + W.GUID).digest()).decode()
        self.assertEqual(c.headers["sec-websocket-accept"], want)
        self.assertNotIn("sec-websocket-extensions", c.headers)     # compression is off
        fin, rsv1, op, payload = c.read_frame()
        self.assertEqual((fin, rsv1, op), (True, False, W.OP_BINARY))
        info = json.loads(payload[5:].decode())
        self.assertEqual(info["port"], self.port)
        self.assertFalse(info["tls_required"])

    def refused(self, request, status):
        out = http_exchange(self.port, request)
        self.assertTrue(out.startswith(b"HTTP/1.1 %d " % status), out[:80])
        self.assertIn(b"Sec-Websocket-Version: 13", out)

    def test_missing_key(self):
        self.refused(upgrade_request(self.port, drop=("Sec-WebSocket-Key",)), 400)
        self.assertTrue(self.srv.wait_log("websocket handshake error: key missing"))

    def test_bad_key(self):
        self.refused(upgrade_request(self.port, key="c2hvcnQ="), 400)     # 5 bytes, not 16
        self.assertTrue(self.srv.wait_log("invalid websocket key"))

    def test_wrong_version_method_upgrade_connection(self):
        self.refused(upgrade_request(self.port, drop=("Sec-WebSocket-Version",),
                                     extra=(("Sec-WebSocket-Version", "8"),)), 400)
        self.refused(upgrade_request(self.port, method="POST"), 405)
        self.refused(upgrade_request(self.port, drop=("Upgrade",)), 400)
        self.refused(upgrade_request(self.port, drop=("Connection",)), 400)
        self.refused(upgrade_request(self.port, drop=("Host",)), 400)
        self.refused(b"GARBAGE\r\n\r\n", 400)

    def test_data_before_handshake_complete(self):
        self.refused(upgrade_request(self.port) + mask_frame(W.OP_BINARY, CONNECT), 400)

    def test_huge_headers(self):
        req = upgrade_request(self.port, extra=(("X-Big", "a" * (W.MAX_REQUEST_HEAD + 10)),))
        self.refused(req, 431)

    def test_endless_header_stream_is_cut(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        self.addCleanup(s.close)
        s.sendall(b"GET / HTTP/1.1\r\n")
        sent = 0
        try:
            while sent < 4 * W.MAX_REQUEST_HEAD:
                s.sendall(b"X-Junk: " + b"b" * 1000 + b"\r\n")
                sent += 1010
        except OSError:
            pass        # the server closed while we were still sending
        out = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                out += d
        except OSError:
            pass
        self.assertTrue(out == b"" or out.startswith(b"HTTP/1.1 431"), out[:80])

    def test_slow_headers_time_out_and_others_go_on(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        self.addCleanup(s.close)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")     # and nothing more
        c = self.connected()        # another client is served meanwhile
        t0 = time.monotonic()
        self.assertEqual(s.recv(100), b"")      # handshake_timeout: 1 closes it
        self.assertLess(time.monotonic() - t0, TIMEOUT)
        c.send_nats(b"PING\r\n")
        self.assertIn(b"PONG", c.read_nats_until(b"PONG\r\n"))
        self.assertTrue(self.srv.wait_log("websocket handshake error: timeout"))


class TestFrames(WsServerCase):
    def test_pub_sub_and_binary_frames_only(self):
        c = self.connected()
        c.send_nats(b"SUB foo 1\r\nPUB foo 5\r\nhello\r\nPING\r\n")
        data = c.read_nats_until(b"PONG\r\n")
        self.assertIn(b"MSG foo 1 5\r\nhello\r\n", data)

    def test_one_frame_per_flush(self):
        c = self.connected()
        c.send_nats(b"SUB burst 1\r\n" + b"PUB burst 3\r\nabc\r\n" * 200 + b"PING\r\n")
        out, frames = b"", 0
        while b"PONG\r\n" not in out:
            fin, rsv1, op, payload = c.read_frame()
            self.assertEqual((fin, op), (True, W.OP_BINARY))
            out += payload
            frames += 1
        self.assertEqual(out.count(b"MSG burst 1 3\r\nabc\r\n"), 200)
        self.assertLessEqual(frames, 3)     # one read, one flush: not a frame per message

    def test_subprotocol_offer_is_not_echoed(self):
        # nats-server has no subprotocol for clients: the offer is ignored
        c = self.ws(headers={"Sec-WebSocket-Protocol": "nats, chat"})
        self.assertEqual(c.status, 101)
        self.assertNotIn("sec-websocket-protocol", c.headers)

    def test_garbage_never_hurts_the_server(self):
        import random
        rnd = random.Random(21)
        watcher = self.connected()
        for i in range(60):
            c = WsConn(self.port)
            c.read_nats_until(b"\r\n")
            junk = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300)))
            if i % 3 == 0:
                junk = mask_frame(rnd.choice((0, 1, 2, 8, 9, 10)), junk[:200],
                                  fin=bool(i % 2), rsv=rnd.choice((0, 0x40)))
            try:
                c.send(junk)
            except OSError:
                pass
            c.close()
        watcher.send_nats(b"PING\r\n")
        self.assertIn(b"PONG", watcher.read_nats_until(b"PONG\r\n"))
        self.assertNotIn("Traceback", self.srv.output())
        self.assertNotIn("internal error", self.srv.output())

    def test_text_frames_are_accepted(self):
        c = self.connected()
        c.send(mask_frame(W.OP_TEXT, b"SUB t 1\r\nPUB t 2\r\nhi\r\nPING\r\n"))
        self.assertIn(b"MSG t 1 2\r\nhi\r\n", c.read_nats_until(b"PONG\r\n"))

    def test_fragmented_message(self):
        c = self.connected()
        msg = b"SUB f 1\r\nPUB f 10\r\n0123456789\r\nPING\r\n"
        c.send(mask_frame(W.OP_BINARY, msg[:7], fin=False)
               + mask_frame(W.OP_PING, b"mid", key=b"\x01\x02\x03\x04")   # allowed between fragments
               + mask_frame(W.OP_CONT, msg[7:20], fin=False, key=b"\x05\x06\x07\x08")
               + mask_frame(W.OP_CONT, msg[20:], key=b"\x09\x0a\x0b\x0c"))
        out = b""
        pong = None
        while b"PONG\r\n" not in out or pong is None:
            fin, rsv1, op, payload = c.read_frame()
            if op == W.OP_PONG:
                pong = payload
            else:
                out += payload
        self.assertEqual(pong, b"mid")
        self.assertIn(b"MSG f 1 10\r\n0123456789\r\n", out)

    def test_split_at_every_byte_over_the_socket(self):
        c = self.connected()
        data = (mask_frame(W.OP_BINARY, b"SUB s 1\r\nPUB s 3\r\n", fin=False)
                + mask_frame(W.OP_CONT, b"abc\r\nPING\r\n", key=b"\xff\x00\xaa\x55"))
        for i in range(len(data)):
            c.send(data[i:i + 1])
            time.sleep(0.002)
        self.assertIn(b"MSG s 1 3\r\nabc\r\n", c.read_nats_until(b"PONG\r\n"))

    def test_ping_pong(self):
        c = self.connected()
        c.send(mask_frame(W.OP_PING, b"are you there"))
        fin, rsv1, op, payload = c.read_frame()
        self.assertEqual((op, payload), (W.OP_PONG, b"are you there"))
        c.send(mask_frame(W.OP_PONG, b"unsolicited"))     # ignored
        c.send_nats(b"PING\r\n")
        self.assertIn(b"PONG", c.read_nats_until(b"PONG\r\n"))

    def test_unmasked_frame(self):
        c = self.connected()
        c.send_nats(b"PING\r\n", mask=False)
        self.assert_closed_with(c, W.CLOSE_PROTOCOL_ERROR, "mask bit missing")

    def test_reserved_bits(self):
        c = self.connected()
        c.send_nats(b"PING\r\n", rsv=0x20)
        self.assert_closed_with(c, W.CLOSE_PROTOCOL_ERROR, "RSV2 and RSV3 must be clear")

    def test_compressed_frame_without_negotiation(self):
        c = self.connected()
        c.send_nats(b"PING\r\n", rsv=0x40)
        self.assert_closed_with(c, W.CLOSE_PROTOCOL_ERROR,
                                "compressed frame received without negotiated permessage-deflate")

    def test_unknown_opcode(self):
        c = self.connected()
        c.send(mask_frame(3, b"x"))
        self.assert_closed_with(c, W.CLOSE_PROTOCOL_ERROR, "unknown opcode 3")

    def test_oversized_control_frame(self):
        c = self.connected()
        c.send(mask_frame(W.OP_PING, b"p" * 126))
        self.assert_closed_with(c, W.CLOSE_PROTOCOL_ERROR,
                                "control frame length bigger than maximum allowed of 125 bytes")

    def test_fragmented_control_frame(self):
        c = self.connected()
        c.send(mask_frame(W.OP_PING, b"p", fin=False))
        self.assert_closed_with(c, W.CLOSE_PROTOCOL_ERROR, "control frame does not have final bit set")

    def test_continuation_without_start(self):
        c = self.connected()
        c.send(mask_frame(W.OP_CONT, b"PING\r\n"))
        self.assert_closed_with(c, W.CLOSE_PROTOCOL_ERROR, "invalid continuation frame")

    def test_new_message_inside_fragmented_one(self):
        c = self.connected()
        c.send(mask_frame(W.OP_BINARY, b"PI", fin=False) + mask_frame(W.OP_BINARY, b"NG\r\n"))
        self.assert_closed_with(
            c, W.CLOSE_PROTOCOL_ERROR,
            "new message started before final frame for previous message was received")

    def test_bad_64bit_length(self):
        c = self.connected()
        c.send(bytes((0x82, 0x80 | 127)) + struct.pack("!Q", 1 << 63) + b"\x00\x00\x00\x00")
        self.assert_closed_with(c, W.CLOSE_PROTOCOL_ERROR, "invalid 64-bit payload length")

    def test_payload_over_max_payload(self):
        c = self.connected()
        c.send_nats(b"PUB big 5000\r\n" + b"x" * 5000 + b"\r\n")
        self.assertIn(b"-ERR 'Maximum Payload Violation'", c.read_nats_until(b"-ERR"))
        self.assert_closed_with(c, W.CLOSE_TOO_BIG, "Maximum Payload Exceeded")

    def test_log_tag_names_forwarded_address(self):
        c = self.connected(headers={"X-Forwarded-For": "10.9.8.7"})
        c.send_nats(b"PING\r\n", mask=False)
        self.assert_closed_with(c, W.CLOSE_PROTOCOL_ERROR)
        self.assertTrue(self.srv.wait_log(r"10\.9\.8\.7/127\.0\.0\.1:\d+ - wid:\d+ - "
                                          r"websocket protocol error: mask bit missing"))

    def test_nats_protocol_error_closes_with_1002(self):
        c = self.connected()
        c.send_nats(b"FOO BAR\r\n")
        self.assertIn(b"-ERR 'Unknown Protocol Operation'", c.read_nats_until(b"-ERR"))
        self.assert_closed_with(c, W.CLOSE_PROTOCOL_ERROR)


class TestClose(WsServerCase):
    def test_close_is_echoed(self):
        c = self.connected()
        c.send(mask_frame(W.OP_CLOSE, struct.pack("!H", 1000) + "bye ✓".encode()))
        self.assert_closed_with(c, 1000, "bye ✓")

    def test_close_without_status(self):
        c = self.connected()
        c.send(mask_frame(W.OP_CLOSE, b""))
        fin, rsv1, op, payload = c.read_frame()
        self.assertEqual((op, payload), (W.OP_CLOSE, b""))
        self.assertTrue(c.closed())

    def test_bad_utf8_in_close_reason(self):
        c = self.connected()
        c.send(mask_frame(W.OP_CLOSE, struct.pack("!H", 1000) + b"\xff\xfe bad"))
        self.assert_closed_with(c, W.CLOSE_INVALID_DATA, "invalid utf8 body in close frame")

    def test_one_byte_close_payload(self):
        c = self.connected()
        c.send(mask_frame(W.OP_CLOSE, b"\x03"))
        self.assert_closed_with(c, W.CLOSE_PROTOCOL_ERROR, "close frame payload cannot be 1 byte")

    def test_reserved_close_status(self):
        for status in (1005, 1006, 999, 2000, 5000):
            c = self.connected()
            c.send(mask_frame(W.OP_CLOSE, struct.pack("!H", status)))
            self.assert_closed_with(c, W.CLOSE_PROTOCOL_ERROR, "invalid close status code %d" % status)

    def test_data_before_close_is_processed(self):
        sub = self.connected()
        sub.send_nats(b"SUB last 1\r\nPING\r\n")
        sub.read_nats_until(b"PONG\r\n")
        c = self.connected()
        c.send(mask_frame(W.OP_BINARY, b"PUB last 4\r\nlast\r\n")
               + mask_frame(W.OP_CLOSE, struct.pack("!H", 1001)))
        self.assert_closed_with(c, 1001)
        self.assertIn(b"MSG last 1 4\r\nlast\r\n", sub.read_nats_until(b"last\r\n"))


class TestMonitoring(WsServerCase):
    def get(self, path):
        port = self.srv.monitor_port
        return json.loads(urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                                 timeout=TIMEOUT).read())

    def test_varz_and_connz(self):
        c = self.connected()
        c.send_nats(b"SUB m 1\r\nPING\r\n")
        c.read_nats_until(b"PONG\r\n")
        v = self.get("/varz")
        self.assertEqual(v["websocket"], {"host": "127.0.0.1", "port": self.port,
                                          "handshake_timeout": 1000000000, "no_tls": True})
        conns = wait_for(lambda: [x for x in self.get("/connz?subs=1")["connections"]
                                  if x.get("subscriptions_list") == ["m"]], TIMEOUT)
        self.assertEqual(len(conns), 1)
        self.assertEqual((conns[0]["kind"], conns[0]["type"]), ("Client", "websocket"))


class TestCompression(WsServerCase):
    config = ("websocket { host: 127.0.0.1, port: -1, no_tls: true, compression: true }\n"
              "max_payload: 4096\n")

    def test_negotiated_both_ways(self):
        c = self.ws(deflate=True)
        self.assertEqual(c.status, 101)
        self.assertEqual(c.headers["sec-websocket-extensions"],
                         "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        c.read_nats_until(b"\r\n")
        body = b"z" * 1000
        co = zlib.compressobj(6, zlib.DEFLATED, -15)
        wire = co.compress(CONNECT + b"SUB c 1\r\nPUB c 1000\r\n" + body + b"\r\nPING\r\n")
        wire += co.flush(zlib.Z_SYNC_FLUSH)
        self.assertTrue(wire.endswith(b"\x00\x00\xff\xff"))
        c.send(mask_frame(W.OP_BINARY, wire[:-4], rsv=0x40))
        compressed = []
        out = b""
        while b"PONG\r\n" not in out:
            fin, rsv1, op, payload = c.read_frame()
            self.assertEqual(op, W.OP_BINARY)
            compressed.append(rsv1)
            if rsv1:
                payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
            out += payload
        self.assertIn(b"MSG c 1 1000\r\n" + body + b"\r\n", out)
        self.assertIn(True, compressed)     # the 1 KB flush went out compressed

    def test_fragmented_compressed_message(self):
        c = self.ws(deflate=True)
        c.read_nats_until(b"\r\n")
        co = zlib.compressobj(6, zlib.DEFLATED, -15)
        wire = co.compress(CONNECT + b"PING\r\n") + co.flush(zlib.Z_SYNC_FLUSH)
        wire = wire[:-4]
        c.send(mask_frame(W.OP_BINARY, wire[:5], fin=False, rsv=0x40)
               + mask_frame(W.OP_CONT, wire[5:]))
        self.assertIn(b"PONG", c.read_nats_until(b"PONG\r\n"))

    def test_inflation_bomb(self):
        c = self.ws(deflate=True)
        c.read_nats_until(b"\r\n")
        co = zlib.compressobj(9, zlib.DEFLATED, -15)
        wire = co.compress(b"PING\r\n" * 100000) + co.flush(zlib.Z_SYNC_FLUSH)     # 600 KB inflated
        self.assertLess(len(wire), 4096)
        c.send(mask_frame(W.OP_BINARY, wire[:-4], rsv=0x40))
        self.assert_closed_with(c, W.CLOSE_TOO_BIG, "Maximum Payload Exceeded")

    def test_compressed_message_over_limit(self):
        c = self.ws(deflate=True)
        c.read_nats_until(b"\r\n")
        # 8 x max_payload of compressed bytes at most (random data does not shrink)
        c.send(mask_frame(W.OP_BINARY, os.urandom(8 * 4096 + 10), rsv=0x40))
        self.assert_closed_with(c, W.CLOSE_TOO_BIG, "Maximum Payload Exceeded")

    def test_corrupt_deflate_data(self):
        c = self.ws(deflate=True)
        c.read_nats_until(b"\r\n")
        c.send(mask_frame(W.OP_BINARY, b"\xff\xff\xff\xff garbage", rsv=0x40))
        self.assert_closed_with(c, W.CLOSE_INVALID_DATA, "invalid compressed data")
        self.assertNotIn("Traceback", self.srv.output())

    def test_not_offered_not_used(self):
        c = self.connected()
        self.assertNotIn("sec-websocket-extensions", c.headers)
        c.send_nats(b"SUB u 1\r\nPUB u 500\r\n" + b"u" * 500 + b"\r\nPING\r\n")
        out = b""
        while b"PONG\r\n" not in out:
            fin, rsv1, op, payload = c.read_frame()
            self.assertFalse(rsv1)
            out += payload
        self.assertIn(b"MSG u 1 500\r\n", out)


class TestOrigin(WsServerCase):
    config = ('websocket { host: 127.0.0.1, port: -1, no_tls: true, same_origin: false,'
              ' allowed_origins: ["http://good.example", "https://secure.example:8443"] }\n')

    def test_allowed_and_refused(self):
        self.assertEqual(self.ws(headers={"Origin": "http://good.example"}).status, 101)
        self.assertEqual(self.ws(headers={"Origin": "http://good.example:80"}).status, 101)
        self.assertEqual(self.ws(headers={"Origin": "https://secure.example:8443"}).status, 101)
        self.assertEqual(self.ws().status, 101)     # no Origin: not a browser
        for bad in ("http://evil.example", "https://good.example", "http://good.example:81",
                    "https://secure.example"):
            self.assertEqual(self.ws(headers={"Origin": bad}).status, 403, bad)
        self.assertTrue(self.srv.wait_log("origin not allowed: not in the allowed list"))


class TestSameOrigin(WsServerCase):
    config = "websocket { host: 127.0.0.1, port: -1, no_tls: true, same_origin: true }\n"

    def test_same_origin(self):
        self.assertEqual(self.ws(headers={"Origin": "http://127.0.0.1:%d" % self.port}).status, 101)
        self.assertEqual(self.ws(headers={"Origin": "http://localhost:%d" % self.port}).status, 403)
        self.assertEqual(self.ws(headers={"Origin": "https://127.0.0.1:%d" % self.port}).status, 403)


class TestConfigErrors(unittest.TestCase):
    def start_fails(self, config, text):
        srv = ServerProcess(config=config, wait=False)
        try:
            srv.proc.wait(TIMEOUT)
        finally:
            srv.stop()
        self.assertNotEqual(srv.proc.returncode, 0)
        self.assertIn(text, srv.output())
        self.assertNotIn("Traceback", srv.output())

    def test_tls_required_unless_no_tls(self):
        self.start_fails("websocket { port: -1 }\n", "websocket requires TLS configuration")

    def test_bad_origin(self):
        self.start_fails('websocket { host: 127.0.0.1, port: -1, no_tls: true, allowed_origins: ["ftp://x"] }\n',
                         "allowed origins must be absolute URLs with http or https scheme")

    def test_unknown_field(self):
        self.start_fails("websocket { host: 127.0.0.1, port: -1, no_tls: true, bogus: 1 }\n", 'unknown field "bogus"')

    def test_reserved_header(self):
        self.start_fails('websocket { host: 127.0.0.1, port: -1, no_tls: true, headers { Upgrade: "x" } }\n',
                         'websocket: invalid header "Upgrade" not allowed')


class TestFrameReaderSplits(unittest.TestCase):
    """The pure reader: every split point of a stream of frames gives the
    same NATS bytes and events."""

    def stream(self):
        return (mask_frame(W.OP_BINARY, b"PUB a 3\r\n", fin=False)
                + mask_frame(W.OP_PING, b"x", key=b"\x01\x02\x03\x04")
                + mask_frame(W.OP_CONT, b"abc\r\n" + b"y" * 300, key=b"\xaa\xbb\xcc\xdd")
                + mask_frame(W.OP_TEXT, b"z" * 70000, key=b"\x10\x20\x30\x40")
                + mask_frame(W.OP_CLOSE, struct.pack("!H", 1000) + b"ok"))

    def test_every_split(self):
        data = self.stream()
        whole = W.FrameReader(1 << 20).feed(data)
        self.assertEqual(whole[0], b"PUB a 3\r\nabc\r\n" + b"y" * 300 + b"z" * 70000)
        self.assertEqual(whole[1], [("ping", b"x"), ("close", 1000, "ok")])
        for i in list(range(0, 400)) + list(range(len(data) - 200, len(data))):
            r = W.FrameReader(1 << 20)
            a, ea = r.feed(data[:i])
            b, eb = r.feed(data[i:])
            self.assertEqual((a + b, ea + eb), whole, i)

    def test_byte_at_a_time(self):
        data = self.stream()[:600]
        r = W.FrameReader(1 << 20)
        out, events = b"", []
        for i in range(len(data)):
            d, e = r.feed(data[i:i + 1])
            out += d
            events += e
        self.assertTrue(out.startswith(b"PUB a 3\r\nabc\r\n" + b"y" * 300))
        self.assertEqual(events, [("ping", b"x")])


if __name__ == "__main__":
    unittest.main()
