"""Producer back-pressure meets JetStream: with a small `max_pending` (or
any connection write-blocked) every publish runs the stall check over its
receivers, and a stream's own subscription is an internal one with no
output buffer. That check cut the publisher with `Internal Error` (a
traceback in the log) whenever a stream was among the receivers; nats.py's
`test_ordered_consumer_larger_streams` hit it 1 run in 7."""

import json
import shutil
import tempfile
import unittest

from tests.util import RawClient, ServerProcess


class TestStallCheckWithStreams(unittest.TestCase):
    def test_publishes_to_a_stream_under_a_small_max_pending_are_acked(self):
        store = tempfile.mkdtemp(prefix="js-bp-")
        self.addCleanup(shutil.rmtree, store, True)
        srv = ServerProcess(config='max_pending: 1MB\njetstream { store_dir: "%s" }\n' % store)
        self.addCleanup(srv.stop)
        c = RawClient(srv.port, b'{"verbose":false,"headers":true}', timeout=10)
        self.addCleanup(c.close)
        body = json.dumps({"name": "S", "subjects": ["s.>"], "storage": "memory"}).encode()
        c.send(b"SUB _in.> 1\r\nPUB $JS.API.STREAM.CREATE.S _in.create %d\r\n%s\r\n" % (len(body), body))
        c.read_until(b"\r\n")                   # MSG _in.create 1 n
        self.assertNotIn(b"error", c.read_until(b"\r\n"))
        n = 200
        c.send(b"".join(b"PUB s.%d _in.%d 5\r\nhello\r\n" % (i, i) for i in range(n)))
        acks = []
        for _ in range(n):
            head = c.read_until(b"\r\n")
            self.assertTrue(head.startswith(b"MSG _in."), head)
            acks.append(json.loads(c.read_until(b"\r\n")))
        self.assertEqual([a["seq"] for a in acks], list(range(1, n + 1)))
        self.assertEqual(c.ping(), b"")
        self.assertNotIn("Traceback", srv.output())


if __name__ == "__main__":
    unittest.main()
