"""The client protocol parser, fed bytes in-process (no sockets): every op,
split reads at every byte boundary, errors and limits."""

import io
import random
import unittest

from gnats.client import Client
from gnats.log import Logger
from gnats.options import Options
from gnats.server import Server
from tests.util import parse_msgs


class Harness:
    def __init__(self, **opts):
        o = Options()
        for k, v in opts.items():
            setattr(o, k, v)
        self.logbuf = io.StringIO()
        self.server = Server(o, Logger(stream=self.logbuf))
        self.cid = 0

    def client(self, connect=b'CONNECT {"verbose":false,"pedantic":false}\r\n'):
        self.cid += 1
        c = Client(self.server, None, ("127.0.0.1", 1000 + self.cid), self.cid)
        c.close_conn = lambda reason, flush=True: self._close(c, reason)
        c.close_after_flush = lambda reason: self._close(c, reason)
        self.server.clients[c.cid] = c
        feed = c.feed

        def feed_all(data):
            # no reactor runs here: finish a read whose time slice ran out
            # (inbound.INPUT_SLICE; a GC or JIT pause can end one) at once
            feed(data)
            while c.deferred and not c.closed:
                c.deferred = False
                feed(b"")
        c.feed = feed_all
        if connect:
            c.feed(connect)
        return c

    def _close(self, c, reason):
        if not c.closed:
            c.closed = True
            c.close_reason = reason
            self.server.client_closed(c, reason)

    def close(self):
        self.server.reactor.close()


def out(c):
    d = bytes(c.wbuf)
    c.wbuf.clear()
    return d


class TestOps(unittest.TestCase):
    def setUp(self):
        self.h = Harness()

    def tearDown(self):
        self.h.close()

    def test_ping_pong(self):
        c = self.h.client()
        c.feed(b"PING\r\n")
        self.assertEqual(out(c), b"PONG\r\n")
        c.feed(b"ping\n")
        self.assertEqual(out(c), b"PONG\r\n")

    def test_pub_sub_delivery(self):
        s, p = self.h.client(), self.h.client()
        s.feed(b"SUB foo 7\r\n")
        p.feed(b"PUB foo 5\r\nhello\r\nPUB foo reply.x 3\r\nabc\r\n")
        self.assertEqual(out(s), b"MSG foo 7 5\r\nhello\r\nMSG foo 7 reply.x 3\r\nabc\r\n")
        self.assertEqual(p.in_msgs, 2)
        self.assertEqual(p.in_bytes, 8)
        self.assertEqual(s.out_msgs, 2)
        self.assertEqual(s.out_bytes, 8)

    def test_repeated_lines_use_the_fast_path_and_count_exactly(self):
        s, p = self.h.client(), self.h.client()
        s.feed(b"SUB foo 1\r\nSUB foo 2\r\n")
        p.feed(b"PUB foo 2\r\nab\r\n" * 100 + b"PUB foo 1\r\nz\r\n")
        d = out(s)
        self.assertEqual(d.count(b"MSG foo 1 2\r\nab\r\n"), 100)
        self.assertEqual(d.count(b"MSG foo 2 2\r\nab\r\n"), 100)
        self.assertTrue(d.endswith(b"MSG foo 1 1\r\nz\r\nMSG foo 2 1\r\nz\r\n"))
        self.assertEqual(s.out_msgs, 202)
        self.assertEqual(s.out_bytes, 402)
        self.assertEqual(p.in_msgs, 101)

    def test_varying_sizes_take_the_size_only_path(self):
        s, q1, q2, p = self.h.client(), self.h.client(), self.h.client(), self.h.client()
        s.feed(b"SUB v.* 1\r\n")
        q1.feed(b"SUB v.a grp 2\r\n")
        q2.feed(b"SUB v.a grp 3\r\n")
        stream = []
        expect = []
        for i in range(200):
            subj = b"v.a" if i % 3 else b"v.b"
            body = b"x" * (i % 17)
            reply = b" r.%d" % i if i % 5 == 0 else b""
            stream.append(b"PUB %s%s %d\r\n%s\r\n" % (subj, reply, len(body), body))
            expect.append(b"MSG %s 1%s %d\r\n%s\r\n" % (subj, reply, len(body), body))
        p.feed(b"".join(stream))
        self.assertEqual(out(s), b"".join(expect))
        queued = out(q1) + out(q2)
        self.assertEqual(queued.count(b"MSG v.a "), sum(1 for i in range(200) if i % 3))
        self.assertEqual(s.out_msgs, 200)
        self.assertEqual(p.in_msgs, 200)
        self.assertEqual(p.in_bytes, sum(i % 17 for i in range(200)))
        self.assertEqual(q1.out_msgs + q2.out_msgs, sum(1 for i in range(200) if i % 3))

    def test_size_only_path_still_checks_limits_and_framing(self):
        h = Harness(max_payload=10)
        try:
            s, p = h.client(), h.client()
            s.feed(b"SUB lim 1\r\n")
            p.feed(b"PUB lim 2\r\nab\r\nPUB lim 3\r\nabc\r\n")
            self.assertEqual(out(s), b"MSG lim 1 2\r\nab\r\nMSG lim 1 3\r\nabc\r\n")
            p.feed(b"PUB lim 11\r\n")
            self.assertIn(b"Maximum Payload Violation", out(p))
            self.assertTrue(p.closed)
            p2 = h.client()
            p2.feed(b"PUB lim 2\r\nab\r\nPUB lim 4\r\nabcdef\r\n")
            self.assertIn(b"Parser Error", out(p2))
            self.assertTrue(p2.closed)
            p3 = h.client()
            p3.feed(b"PUB lim 2\r\nab\r\nPUB lim +3\r\nabc\r\n")
            self.assertIn(b"Parser Error", out(p3))
        finally:
            h.close()

    def test_unsub_and_auto_unsub(self):
        s, p = self.h.client(), self.h.client()
        s.feed(b"SUB foo 1\r\nUNSUB 1 2\r\n")
        p.feed(b"PUB foo 1\r\na\r\n" * 5)
        self.assertEqual(out(s), b"MSG foo 1 1\r\na\r\n" * 2)
        self.assertEqual(self.h.server.sublist.count, 0)
        s.feed(b"SUB bar 2\r\nUNSUB 2\r\n")
        p.feed(b"PUB bar 1\r\na\r\n")
        self.assertEqual(out(s), b"")

    # nats-server removes a subscription at once when UNSUB's max is at or
    # below what it has already received ("If the subscriber has already
    # received one or more messages, the unsubscribe will be immediate").
    def test_unsub_max_already_reached_is_immediate(self):
        s, p = self.h.client(), self.h.client()
        s.feed(b"SUB foo 1\r\n")
        p.feed(b"PUB foo 1\r\na\r\n" * 5)
        self.assertEqual(out(s), b"MSG foo 1 1\r\na\r\n" * 5)
        s.feed(b"UNSUB 1 3\r\n")
        p.feed(b"PUB foo 1\r\nb\r\n" * 5)
        self.assertEqual(out(s), b"")
        self.assertEqual(self.h.server.sublist.count, 0)

    def test_queue_group_one_member_each(self):
        subs = [self.h.client() for _ in range(3)]
        for c in subs:
            c.feed(b"SUB q.x workers 1\r\n")
        p = self.h.client()
        # numbered payloads: a duplicate plus a loss cannot cancel out
        p.feed(b"".join(b"PUB q.x 4\r\nm%03d\r\n" % k for k in range(300)))
        got = [[m[2] for m in parse_msgs(out(c))] for c in subs]
        self.assertEqual(sorted(x for g in got for x in g), [b"m%03d" % k for k in range(300)])
        self.assertTrue(all(got), [len(g) for g in got])

    def test_echo_off(self):
        c = self.h.client(b'CONNECT {"verbose":false,"echo":false}\r\n')
        c.feed(b"SUB foo 1\r\nPUB foo 1\r\nx\r\nPING\r\n")
        self.assertEqual(out(c), b"PONG\r\n")

    def test_verbose(self):
        c = self.h.client(b"CONNECT {}\r\n")
        self.assertEqual(out(c), b"+OK\r\n")
        c.feed(b"SUB foo 1\r\nPUB foo 1\r\nx\r\nUNSUB 1\r\nPING\r\n")
        self.assertEqual(out(c), b"+OK\r\n+OK\r\nMSG foo 1 1\r\nx\r\n+OK\r\nPONG\r\n")

    def test_headers(self):
        h = self.h.client(b'CONNECT {"verbose":false,"headers":true}\r\n')
        plain = self.h.client()
        h.feed(b"SUB foo 1\r\n")
        plain.feed(b"SUB foo 2\r\n")
        h.feed(b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")
        self.assertEqual(out(h), b"HMSG foo 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")
        self.assertEqual(out(plain), b"MSG foo 2 2\r\nhi\r\n")

    def test_hpub_without_headers_closes(self):
        c = self.h.client()
        c.feed(b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")
        self.assertTrue(c.closed)

    def test_no_responders(self):
        c = self.h.client(b'CONNECT {"verbose":false,"headers":true,"no_responders":true}\r\n')
        c.feed(b"SUB inbox.1 5\r\nPUB svc inbox.1 2\r\nhi\r\n")
        self.assertEqual(out(c), b"HMSG inbox.1 5 16 16\r\nNATS/1.0 503\r\n\r\n\r\n")

    def test_pedantic_publish_subject(self):
        c = self.h.client(b'CONNECT {"verbose":false,"pedantic":true}\r\n')
        c.feed(b"PUB foo.* 2\r\nhi\r\nPING\r\n")
        self.assertEqual(out(c), b"-ERR 'Invalid Publish Subject'\r\nPONG\r\n")
        self.assertFalse(c.closed)

    def test_invalid_subscription_subject(self):
        c = self.h.client()
        c.feed(b"SUB foo..bar 1\r\nPING\r\n")
        self.assertEqual(out(c), b"-ERR 'Invalid Subject'\r\nPONG\r\n")


class TestErrors(unittest.TestCase):
    def setUp(self):
        self.h = Harness(max_payload=100, max_control_line=64)

    def tearDown(self):
        self.h.close()

    def check_error(self, data, text):
        c = self.h.client()
        c.feed(data)
        self.assertIn(("-ERR '%s'\r\n" % text).encode(), out(c))
        self.assertTrue(c.closed)

    def test_unknown_op(self):
        self.check_error(b"FOO bar\r\n", "Unknown Protocol Operation")
        self.check_error(b"MSG foo 1 2\r\nhi\r\n", "Unknown Protocol Operation")

    def test_parser_errors(self):
        for bad in [b"PUB foo -1\r\n", b"PUB foo abc\r\n", b"PUB foo\r\n", b"PUB\r\n",
                    b"SUB foo\r\n", b"SUB a b c d\r\n", b"UNSUB\r\n", b"UNSUB 1 x\r\n",
                    b"PUB foo 2\r\nhiX\r\n", b"CONNECT {nope\r\n", b"CONNECT [1]\r\n",
                    b"HPUB foo 5 2\r\n"]:
            self.check_error(bad, "Parser Error")

    def test_max_payload(self):
        self.check_error(b"PUB foo 101\r\n", "Maximum Payload Violation")

    def test_max_control_line(self):
        self.check_error(b"SUB " + b"a" * 100 + b" 1\r\n", "Maximum Control Line Exceeded")
        self.check_error(b"SUB " + b"a" * 100, "Maximum Control Line Exceeded")

    def test_bad_client_does_not_affect_others(self):
        s, p = self.h.client(), self.h.client()
        s.feed(b"SUB foo 1\r\n")
        bad = self.h.client()
        bad.feed(b"SUB foo 2\r\nGARBAGE\r\n")
        p.feed(b"PUB foo 1\r\nx\r\n")
        self.assertEqual(out(s), b"MSG foo 1 1\r\nx\r\n")
        self.assertTrue(bad.closed)
        self.assertEqual(self.h.server.sublist.count, 1)


class TestSplitReads(unittest.TestCase):
    STREAM = (b"SUB foo 1\r\nSUB bar q 2\r\nPUB foo 5\r\nhello\r\nPUB foo 5\r\nworld\r\n"
              b"PUB bar r.1 3\r\nabc\r\nPING\r\nPUB foo 0\r\n\r\nUNSUB 1\r\nPUB foo 1\r\nx\r\nPING\r\n")
    EXPECT = (b"MSG foo 1 5\r\nhello\r\nMSG foo 1 5\r\nworld\r\nMSG bar 2 r.1 3\r\nabc\r\nPONG\r\n"
              b"MSG foo 1 0\r\n\r\nPONG\r\n")

    def run_chunks(self, chunks):
        h = Harness()
        try:
            c = h.client()
            for ch in chunks:
                c.feed(ch)
            self.assertFalse(c.closed, getattr(c, "close_reason", ""))
            return out(c)
        finally:
            h.close()

    def test_every_split_point(self):
        s = self.STREAM
        for i in range(1, len(s)):
            self.assertEqual(self.run_chunks([s[:i], s[i:]]), self.EXPECT, "split at %d" % i)

    def test_every_two_split_points(self):
        s = self.STREAM
        for i in range(1, len(s), 3):
            for j in range(i + 1, len(s), 5):
                self.assertEqual(self.run_chunks([s[:i], s[i:j], s[j:]]), self.EXPECT)

    def test_byte_at_a_time(self):
        s = self.STREAM
        self.assertEqual(self.run_chunks([s[i:i + 1] for i in range(len(s))]), self.EXPECT)

    def test_random_chunking_large_payloads(self):
        rnd = random.Random(7)
        payload = bytes(rnd.randrange(256) for _ in range(5000))
        stream = b"SUB big 1\r\n" + (b"PUB big 5000\r\n" + payload + b"\r\n") * 20 + b"PING\r\n"
        expect = (b"MSG big 1 5000\r\n" + payload + b"\r\n") * 20 + b"PONG\r\n"
        for _ in range(20):
            chunks, i = [], 0
            while i < len(stream):
                k = rnd.randrange(1, 9000)
                chunks.append(stream[i:i + k])
                i += k
            self.assertEqual(self.run_chunks(chunks), expect)


if __name__ == "__main__":
    unittest.main()
