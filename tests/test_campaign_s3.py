"""Session 3 campaign (RELIABILITY.md section 11): the websocket listener,
operator mode (JWT) and subject mappings attacked from outside, against a
real gnatsd.py process. Each test here failed before its fix."""

import os
import platform
import socket
import unittest
import zlib

import gnats
from gnats import conf as C
from gnats import mapping as M
from gnats import websocket as W
from tests.test_jwt_unit import key, sign_nonce
from tests.test_operator_mode import Setup, next_line, raw_connect
from tests.test_websocket_frames import CONNECT, WsConn, mask_frame, ws_port
from tests.util import RawClient, ServerProcess, needs

try:
    import nkeys
except ImportError:         # pragma: no cover
    nkeys = None

TIMEOUT = 20.0


def peak_rss_mib(pid):
    """The process's peak resident set (VmHWM), MiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmHWM for %d" % pid)


def deflated(data):
    """data as one permessage-deflate message body (tail removed)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(W.DEFLATE_TAIL)
    return body[:-4]


class WsCompressedCase(unittest.TestCase):
    """A server with a compressing websocket listener, default max_payload
    (1 MiB)."""

    config = "websocket { host: 127.0.0.1, port: -1, no_tls: true, compression: true }\n"

    @classmethod
    def setUpClass(cls):
        cls.srv = ServerProcess(config=cls.config)
        cls.port = ws_port(cls.srv)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def connected(self):
        c = WsConn(self.port, deflate=True)
        self.addCleanup(c.close)
        c.sock.settimeout(TIMEOUT)
        self.assertEqual(c.status, 101)
        c.read_nats_until(b"\r\n", inflate=True)
        c.send_nats(CONNECT + b"PING\r\n")
        c.read_nats_until(b"PONG\r\n", inflate=True)
        return c


class TestWsInflateBound(WsCompressedCase):
    def test_one_read_of_small_bombs_is_inflated_in_slices(self):
        # 400 messages of ~1 KiB that each inflate to a 1 MiB PUB, in one
        # send: before, one feed inflated all of them at once (peak RSS
        # +400 MiB); now at most ~1 MiB per reactor turn
        n = 1024 * 1024 - 100
        bomb = mask_frame(W.OP_BINARY, deflated(b"PUB x %d\r\n" % n + b"\0" * n + b"\r\n"), rsv=0x40)
        self.assertLess(len(bomb), 1200)
        c = self.connected()
        before = peak_rss_mib(self.srv.proc.pid)
        c.send(bomb * 400 + mask_frame(W.OP_BINARY, b"PING\r\n"))
        self.assertEqual(c.read_nats_until(b"PONG\r\n", inflate=True), b"PONG\r\n")
        grew = peak_rss_mib(self.srv.proc.pid) - before
        self.assertLess(grew, 100, "peak RSS grew %.0f MiB" % grew)

    def test_held_back_messages_arrive_whole_and_in_order(self):
        # 40 compressed PUBs of 200 kB in one send cross the per-turn
        # budget 7 times: all arrive, in order, with a ping answered after
        sub = RawClient(self.srv.port, timeout=TIMEOUT)
        self.addCleanup(sub.close)
        sub.send(b"SUB seq 1\r\nPING\r\n")
        sub.read_until(b"PONG\r\n")
        c = self.connected()
        size = 200000
        frames = b"".join(
            mask_frame(W.OP_BINARY, deflated(b"PUB seq %d\r\n%06d" % (size, i) + b"z" * (size - 6)
                                             + b"\r\n"), rsv=0x40) for i in range(40))
        c.send(frames + mask_frame(W.OP_PING, b"after") + mask_frame(W.OP_BINARY, b"PING\r\n"))
        for i in range(40):
            op, args, payload = sub.read_msg(TIMEOUT)
            self.assertEqual((op, len(payload), payload[:6]), (b"MSG", size, b"%06d" % i))
        sub.send(b"PING\r\n")
        self.assertEqual(sub.read_line(TIMEOUT), b"PONG")     # nothing more came
        pong = nats_pong = False
        for _ in range(10):
            fin, rsv1, op, payload = c.read_frame()
            pong = pong or (op, payload) == (W.OP_PONG, b"after")
            nats_pong = nats_pong or (op == W.OP_BINARY and payload == b"PONG\r\n")
            if pong and nats_pong:
                break
        self.assertEqual((pong, nats_pong), (True, True))
    def test_a_message_in_one_byte_frames_costs_its_bytes(self):
        # a 1 MB compressed PUB sent as 1,000,300 one-byte frames: before,
        # each frame was its own buffer object (~70 bytes each: +70 MiB
        # for 1 MB of data, ~600 MiB at the 8 MiB message limit)
        sub = RawClient(self.srv.port, timeout=TIMEOUT)
        self.addCleanup(sub.close)
        sub.send(b"SUB tiny 1\r\nPING\r\n")
        sub.read_until(b"PONG\r\n")
        body = os.urandom(1000000)
        z = deflated(b"PUB tiny %d\r\n" % len(body) + body + b"\r\n")
        self.assertGreater(len(z), 1000000)
        c = self.connected()
        before = peak_rss_mib(self.srv.proc.pid)
        frames = [mask_frame(W.OP_BINARY, z[:1], fin=False, rsv=0x40)]
        frames += [mask_frame(W.OP_CONT, z[i:i + 1], fin=False) for i in range(1, len(z) - 1)]
        frames.append(mask_frame(W.OP_CONT, z[-1:]))
        c.send(b"".join(frames))
        del frames
        op, args, payload = sub.read_msg(TIMEOUT)
        self.assertEqual((op, payload == body), (b"MSG", True))
        grew = peak_rss_mib(self.srv.proc.pid) - before
        # PyPy's collector runs later than CPython's reference counting (a
        # loaded run peaked at +30.3 MiB); the defect this pins cost +70
        bound = 45 if platform.python_implementation() == "PyPy" else 30
        self.assertLess(grew, bound, "peak RSS grew %.0f MiB" % grew)


@needs(nkeys is not None, "the nkeys package is not installed")
class TestJwtConnectFlood(unittest.TestCase):
    """CONNECTs with a real user JWT and a well-formed signature of the
    wrong nonce cost the server a pure-Python Ed25519 verify each, off the
    reactor thread."""

    @classmethod
    def setUpClass(cls):
        cls.setup = Setup()
        cls.srv = ServerProcess(config=cls.setup.config)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.setup.close()

    def test_a_real_client_gets_in_behind_a_flood_of_junk_signatures(self):
        u, token, _ = self.setup.user()
        good, _ = raw_connect(self.srv.port, token, u)
        self.addCleanup(good.close)
        self.assertEqual(next_line(good), b"PONG")
        junk = (b'CONNECT {"verbose":false,"jwt":"%s","sig":"%s"}\r\nPING\r\n'
                % (token.encode(), sign_nonce(key("U"), "not the nonce").encode()))
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for _ in range(1500):       # >= 2 s of checks even on a fast, idle box
            s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=TIMEOUT)
            s.sendall(junk)
            socks.append(s)
        # before: served oldest first, it waited behind all 1,500 and its
        # own auth timer (2 s) ran out
        late, _ = raw_connect(self.srv.port, token, u)
        self.addCleanup(late.close)
        self.assertEqual(next_line(late, TIMEOUT), b"PONG")
        good.send(b"PING\r\n")
        self.assertEqual(next_line(good, TIMEOUT), b"PONG")
        answers = {}
        for s in socks:
            got = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                got += d
            err = got.rsplit(b"\r\n-ERR ", 1)[-1] if b"-ERR" in got else got[-40:]
            answers[err] = answers.get(err, 0) + 1
        self.assertEqual(sum(answers.values()), 1500)
        self.assertLessEqual(set(answers), {b"'Authorization Violation'\r\n",
                                            b"'Authentication Timeout'\r\n"}, answers)
        self.assertIn("Server is ready", self.srv.output())
        self.assertNotIn("Traceback", self.srv.output())


class TestMappedSubjectCaches(unittest.TestCase):
    """A mapping may turn a short subject into a huge one: the caches that
    hold mapped subjects are bounded in bytes, not in entries."""

    def test_unit_mapping_cache_counts_mapped_subjects(self):
        ms = M.Mappings()
        ms.add("w.*", [(".".join(["{{wildcard(1)}}"] * 100), 100, "")])
        for i in range(300):
            out, fixed = ms.select(b"w.%05d" % i + b"x" * 2000)
            self.assertEqual((len(out), fixed), (100 * 2005 + 99, True))
        held = sum(len(k) + len(v[0]) for k, v in ms._cache.items())
        self.assertLessEqual(held, M.CACHE_BUDGET)        # before: 10.5 MB
        self.assertLessEqual(ms._used, M.CACHE_BUDGET)

    def test_huge_mapped_subjects_do_not_pile_up(self):
        # 400 PUBs of 20 kB subjects, each mapped to 2 MB through 100
        # copies of its wildcard: before, the Sublist match cache (4,096
        # entries, any size) and the mapping cache kept them: +840 MiB
        dest = ".".join(["{{wildcard(1)}}"] * 100)
        srv = ServerProcess(config='max_control_line: 65536\nmappings {\n  "w.*": "%s"\n}\n' % dest)
        self.addCleanup(srv.stop)
        sub = RawClient(srv.port, timeout=TIMEOUT)
        self.addCleanup(sub.close)
        sub.send(b"SUB abc.> 1\r\nPING\r\n")
        sub.read_until(b"PONG\r\n")
        pub = RawClient(srv.port, timeout=TIMEOUT)
        self.addCleanup(pub.close)
        pub.send(b"PING\r\n")
        pub.read_until(b"PONG\r\n")
        before = peak_rss_mib(srv.proc.pid)
        for i in range(400):
            pub.send(b"PUB w.%05d%s 1\r\nx\r\n" % (i, b"x" * 20000))
        pub.send(b"PUB w.abc 2\r\nok\r\nPING\r\n")
        pub.read_until(b"PONG\r\n", 120)
        op, args, payload = sub.read_msg(TIMEOUT)
        self.assertEqual((op, args[0], payload), (b"MSG", b".".join([b"abc"] * 100), b"ok"))
        grew = peak_rss_mib(srv.proc.pid) - before
        # before the fix +842 MiB; PyPy's collector (a 16 MiB nursery, major
        # collections only as the heap grows) holds more garbage at its peak
        bound = 200 if platform.python_implementation() == "PyPy" else 100
        self.assertLess(grew, bound, "peak RSS grew %.0f MiB" % grew)


class TestConfBlockOnNextLine(unittest.TestCase):
    """`key` + new line + `{` opens a block (as nats-server's lexer); every
    other `key` + new line form stays the positioned error it was before
    that change, so no config that loaded before changes meaning. (Go also
    takes `port\n4222` and `user\n"bob"`: a gap, refused with a position.)"""

    def test_block_on_a_later_line(self):
        m = C.parse("websocket\n\n  {\n port: -1, no_tls: true }\nport: 1\n")
        self.assertEqual((m["websocket"]["port"], m["port"]), (-1, 1))

    def test_a_comment_after_the_key_is_not_white_space(self):
        # nats-server 2.15.1: "Expected a top-level value to end with a new
        # line, comment or EOF, but got 'c' instead"; before: accepted
        with self.assertRaises(C.ConfigError) as e:
            C.parse("mappings # c\n{ a: b }\n", "x.conf")
        self.assertIn("x.conf:1:13:", str(e.exception))

    def test_other_values_on_the_next_line_stay_errors(self):
        for text, where in (("port\n4222\n", "1:5"), ("port:\n4222\n", "1:6"),
                            ("accounts\n[1]\n", "1:9"), ("debug\ntrace: true\n", "1:6")):
            with self.assertRaises(C.ConfigError, msg=text) as e:
                C.parse(text, "x.conf")
            self.assertIn("x.conf:%s: expected a value for" % where, str(e.exception))


class TestDeferredReadsLeaveNoTimers(unittest.TestCase):
    def test_a_long_lived_connection_keeps_no_fired_resume_timers(self):
        # in-process, to count what the connection object holds: 300
        # compressed 1 MiB PUBs defer the read 150 times; before, each
        # deferral left its fired Timer in the connection's timers list
        # (nothing prunes fired ones) for as long as the connection lived
        with gnats.run(websocket={"host": "127.0.0.1", "port": -1, "no_tls": True,
                                  "compression": True}) as es:
            srv = es._server
            c = WsConn(srv.websocket.port, deflate=True)
            self.addCleanup(c.close)
            c.sock.settimeout(TIMEOUT)
            c.read_nats_until(b"\r\n", inflate=True)
            c.send_nats(CONNECT + b"PING\r\n")
            c.read_nats_until(b"PONG\r\n", inflate=True)
            n = 1024 * 1024 - 100
            bomb = mask_frame(W.OP_BINARY, deflated(b"PUB x %d\r\n" % n + b"\0" * n + b"\r\n"),
                              rsv=0x40)
            c.send(bomb * 300 + mask_frame(W.OP_BINARY, b"PING\r\n"))
            self.assertEqual(c.read_nats_until(b"PONG\r\n", inflate=True), b"PONG\r\n")
            ws = [k for k in list(srv.clients.values()) if k.conn_type == "websocket"]
            self.assertEqual(len(ws), 1)
            self.assertEqual(ws[0].in_msgs, 300)
            self.assertLessEqual(len(ws[0].timers), 3)    # before: 150


class TestWsHeldBackInputBehindBcrypt(unittest.TestCase):
    def test_compressed_pubs_behind_a_bcrypt_connect_all_arrive(self):
        # the CONNECT's bcrypt check pauses the connection while the reader
        # still holds compressed input back: nothing may be lost, reordered
        # or inflated early
        pw_hash = "$2b$11$.UZ5RfkKPObUbY.4iyHqueX5QHnDGUqp635RxeNdyj6uv/ZK.0pw2"     # "pw"
        srv = ServerProcess(config="authorization { user: u, password: \"%s\" }\n"
                            "websocket { host: 127.0.0.1, port: -1, no_tls: true, "
                            "compression: true }\n" % pw_hash)
        self.addCleanup(srv.stop)
        sub = RawClient(srv.port, connect=b'{"verbose":false,"user":"u","pass":"pw"}',
                        timeout=TIMEOUT)
        self.addCleanup(sub.close)
        sub.send(b"SUB seq 1\r\nPING\r\n")
        sub.read_until(b"PONG\r\n", TIMEOUT)
        c = WsConn(ws_port(srv), deflate=True)
        self.addCleanup(c.close)
        c.sock.settimeout(TIMEOUT)
        c.read_nats_until(b"\r\n", inflate=True)
        size = 300000
        frames = [mask_frame(W.OP_BINARY, deflated(
            b'CONNECT {"verbose":false,"user":"u","pass":"pw"}\r\n'), rsv=0x40)]
        frames += [mask_frame(W.OP_BINARY, deflated(b"PUB seq %d\r\n%06d" % (size, i)
                                                    + b"q" * (size - 6) + b"\r\n"), rsv=0x40)
                   for i in range(30)]
        c.send(b"".join(frames) + mask_frame(W.OP_BINARY, b"PING\r\n"))
        self.assertIn(b"PONG\r\n", c.read_nats_until(b"PONG\r\n", inflate=True))
        for i in range(30):
            op, args, payload = sub.read_msg(TIMEOUT)
            self.assertEqual((op, len(payload), payload[:6]), (b"MSG", size, b"%06d" % i))
        sub.send(b"PING\r\n")
        self.assertEqual(sub.read_line(TIMEOUT), b"PONG")


if __name__ == "__main__":
    unittest.main()
