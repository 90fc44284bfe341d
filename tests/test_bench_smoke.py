"""tools/bench.py: the benchmark runs end to end, and its frame counting is exact.

The smoke runs start real servers (nats-server and/or gnatsd.py) through the
tool exactly as a user does; the counting test feeds the subscriber worker a
stream cut at awkward places from a real local socket.
"""

import os
import socket
import subprocess
import sys
import threading
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "tools", "bench.py")
sys.path.insert(0, os.path.join(ROOT, "tools"))

from benchlib import load, scenarios  # noqa: E402
from tests.util import GO_SERVER, needs  # noqa: E402


def run_bench(*args, timeout=60):
    return subprocess.run([sys.executable, BENCH] + list(args), cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def table_row(out, name):
    for line in out.splitlines():
        if line.startswith("| %s |" % name):
            return line
    return None


class BenchSmokeTest(unittest.TestCase):

    @needs(GO_SERVER, "nats-server (the Go reference server) is not installed")
    def test_quick_go_pubsub16(self):
        r = run_bench("--quick", "--only", "go", "--go", GO_SERVER, "--scenario", "pubsub16")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        row = table_row(r.stdout, "pubsub16")
        self.assertIsNotNone(row, r.stdout)
        self.assertIn("| PASS |", row)
        self.assertIn("nats-server", r.stdout)

    def test_quick_ours_pubsub16(self):
        r = run_bench("--quick", "--only", "ours", "--scenario", "pubsub16", "--python", sys.executable)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        row = table_row(r.stdout, "pubsub16")
        self.assertIsNotNone(row, r.stdout)
        self.assertIn("| PASS |", row)
        self.assertIn("gnatsd.py", r.stdout)

    def test_quick_ours_nats_py_pubsub128(self):
        """A client-library row: nats-py publisher and subscriber, exact counts."""
        try:
            import nats  # noqa: F401
        except ImportError:
            self.skipTest("nats-py is not installed")
        r = run_bench("--quick", "--only", "ours", "--scenario", "py-pubsub128", "--python", sys.executable,
                      "--msgs", "5000")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        row = table_row(r.stdout, "py-pubsub128")
        self.assertIsNotNone(row, r.stdout)
        self.assertIn("| 5k | dlv |", row)
        self.assertIn("| PASS |", row)

    def test_client_group_is_opt_in(self):
        wanted, unknown = scenarios.select("core")
        self.assertEqual(unknown, [])
        self.assertIn("pubsub16", wanted)
        self.assertFalse([n for n in wanted if n.startswith(("py-", "go-"))])
        wanted, _ = scenarios.select("clients,pub16")
        self.assertIn("go-fanout5", wanted)
        self.assertIn("py-pub16", wanted)
        self.assertIn("pub16", wanted)
        self.assertEqual(scenarios.select("clients,nosuch")[1], ["nosuch"])

    def test_bad_arguments_are_clear_errors(self):
        r = run_bench("--scenario", "nosuch")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown scenario nosuch", r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        r = run_bench("--runs", "0")
        self.assertEqual(r.returncode, 2)
        self.assertNotIn("Traceback", r.stderr)

    def test_missing_server_is_a_skip(self):
        r = run_bench("--quick", "--only", "go", "--go", "/nonexistent/nats-server",
                      "--scenario", "pub16")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SKIP", table_row(r.stdout, "pub16"))


class PlanBookkeepingTest(unittest.TestCase):

    def test_matches(self):
        m = scenarios.matches
        self.assertTrue(m(b"foo.*", b"foo.1"))
        self.assertFalse(m(b"foo.*", b"foo.1.x"))
        self.assertTrue(m(b"foo.>", b"foo.1.x"))
        self.assertFalse(m(b"foo.>", b"foo"))
        self.assertFalse(m(b"foo.1.x", b"foo.1"))

    def test_wildcard_expectations(self):
        sc = {s.name: s for s in scenarios.all_scenarios()}["wildcard"]
        groups = scenarios.expected(sc, 3)
        n = len(sc.plan) * 3
        self.assertEqual(groups["conn0"][1], n)     # foo.*
        self.assertEqual(groups["conn1"][1], n)     # foo.>
        self.assertEqual(groups["conn2"][1:], (0, 0))   # 1,000 subs that never match

    def test_queue_group_is_one_target(self):
        sc = {s.name: s for s in scenarios.all_scenarios()}["queue4"]
        groups = scenarios.expected(sc, 10)
        self.assertEqual(list(groups), ["workers"])
        self.assertEqual(groups["workers"][0], [0, 1, 2, 3])
        self.assertEqual(groups["workers"][1], 10)

    def test_subjects_that_would_miscount_are_refused(self):
        sc = scenarios.Scenario("x", "flow", 1, "dlv", "", [(b"Msg.x", 1)])
        with self.assertRaises(ValueError):
            scenarios.expected(sc, 1)


class StreamCounterTest(unittest.TestCase):
    """The counter sees the stream cut at every possible place."""

    def test_every_split_counts_exactly(self):
        frames = [b"MSG a.b 1 %d\r\n%s\r\n" % (n, load.payload(n)) for n in (0, 5, 16, 3)]
        stream = frames[0] + frames[1] + b"PING\r\n" + frames[2] + frames[3] + b"PONG\r\n"
        size = sum(len(f) for f in frames)
        for step in range(1, 12):
            for first in range(0, len(stream)):
                sc = load.StreamCounter(256)
                pieces = [stream[:first]] + [stream[i:i + step] for i in range(first, len(stream), step)]
                pings = 0
                for p in pieces:
                    sc.view[:len(p)] = p
                    pings += sc.feed(len(p))
                self.assertEqual((sc.msgs, pings, sc.pongs, sc.message_bytes()), (4, 1, 1, size),
                                 "step %d first %d" % (step, first))

    def test_err_is_reported(self):
        sc = load.StreamCounter(64)
        data = b"-ERR 'Slow Consumer'\r\n"
        sc.view[:len(data)] = data
        sc.feed(len(data))
        self.assertEqual((sc.errs, sc.err_text), (1, "-ERR 'Slow Consumer'"))


class SubscriberCountingTest(unittest.TestCase):
    """A one-connection server on a real socket sends frames in 1..7-byte pieces
    (the kernel may join some): the worker counts them and answers the PING."""

    def test_split_reads_count_exactly(self):
        frames = [b"MSG a.b 1 %d\r\n%s\r\n" % (n, load.payload(n)) for n in (0, 5, 16, 3) * 25]
        body = b"".join(frames[:50]) + b"PING\r\n" + b"".join(frames[50:])
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        lsock.settimeout(5.0)
        seen = {}

        def server():
            conn, _ = lsock.accept()
            conn.settimeout(5.0)
            conn.sendall(b'INFO {"server_id":"t"}\r\n')
            data = b""
            while b"PING\r\n" not in data:
                d = conn.recv(4096)         # 5 s timeout per read
                if not d:
                    raise EOFError("the bench client closed before PING: %r" % data)
                data += d
            conn.sendall(b"PONG\r\n")
            pieces, i, k = [], 0, 0
            while i < len(body):
                step = 1 + k % 7
                pieces.append(body[i:i + step])
                i, k = i + step, k + 1
            for p in pieces:
                conn.sendall(p)
            got = b""
            while got.count(b"PING\r\n") < 1 or b"PONG\r\n" not in got:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                got += chunk
            seen["from_client"] = got
            for i in range(0, 6):          # the final PONG, split too
                conn.sendall(b"PONG\r\n"[i:i + 1])
            conn.close()

        t = threading.Thread(target=server, daemon=True)
        t.start()
        ctl = scenarios.Control(1, 10.0)
        ctl.start.set()
        res = load.subscriber(ctl, "s", lsock.getsockname()[1], False, b"SUB a.b 1\r\n",
                              0, [0], len(frames))
        t.join(5.0)
        lsock.close()
        self.assertEqual(res["msgs"], len(frames))
        self.assertEqual(res["bytes"], sum(len(f) for f in frames))
        self.assertFalse(res["timed_out"])
        self.assertIn(b"PONG\r\n", seen["from_client"])   # the keep-alive was answered


if __name__ == "__main__":
    unittest.main()
