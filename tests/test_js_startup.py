"""JetStream start-up off the reactor (gnats/jetstream/recovery.py): a
stream of many small messages, the server killed with SIGKILL (so the next
open rebuilds the index from the blocks), restarted; the client port opens
before the store is back, PINGs are answered while it is rebuilt, API
requests made meanwhile are answered once it is back, with the state it
had, and publishes made meanwhile are stored after it.

Run as a script to measure (the figures in the README):
    python3 -m tests.test_js_startup 1000000
prints the time to the first PONG and to a STREAM.INFO showing every
message, and the worst PING round trip during the rebuild.
"""

import json
import re
import shutil
import sys
import tempfile
import threading
import time
import unittest

from tests.util import RawClient, ServerProcess

MESSAGES = 200000
BATCH = 20000


def info_request(c, sid, name="S"):
    """STREAM.INFO over a raw client subscribed to _INBOX.s (sid)."""
    c.send(b"PUB $JS.API.STREAM.INFO.%s _INBOX.s.%d 0\r\n\r\n" % (name.encode(), sid))


def read_msg(c, timeout=30):
    """The next MSG's payload (skipping PONGs and INFOs)."""
    while True:
        line = c.read_line(timeout)
        if line.startswith(b"MSG "):
            size = int(line.split()[-1])
            return c.read_exact(size + 2, timeout)[:-2]


def fill_and_kill(store_dir, n):
    """A server with stream S (subjects s.*) holding n 16-byte messages,
    killed with SIGKILL once they are stored: the next open rebuilds."""
    srv = ServerProcess("-js", "-sd", store_dir)
    try:
        c = RawClient(srv.port)
        c.send(b'SUB _INBOX.s.> 1\r\nPUB $JS.API.STREAM.CREATE.S _INBOX.s.1 %d\r\n%s\r\n'
               % _body({"name": "S", "subjects": ["s.*"], "storage": "file"}))
        created = json.loads(read_msg(c))
        assert "error" not in created, created
        payload = b"0123456789abcdef"
        for start in range(0, n, BATCH):
            chunk = b"".join(b"PUB s.%d 16\r\n%s\r\n" % (i % 100, payload)
                             for i in range(start, min(n, start + BATCH)))
            c.send(chunk + b"PING\r\n")
            c.read_until(b"PONG\r\n", 60)
        info_request(c, 2)
        state = json.loads(read_msg(c))["state"]
        assert state["messages"] == n, state
        c.close()
    finally:
        srv.proc.kill()
        srv.proc.wait(10)
        srv.stop()


def _body(obj):
    b = json.dumps(obj).encode()
    return len(b), b


class Pinger(threading.Thread):
    """PINGs one at a time until stopped; keeps the worst round trip."""

    def __init__(self, port):
        threading.Thread.__init__(self, daemon=True)
        self.c = RawClient(port, timeout=30)
        self.c.send(b"PING\r\n")
        self.c.read_until(b"PONG\r\n", 30)
        self.first_pong = time.monotonic()
        self.worst = 0.0
        self.count = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            self.c.send(b"PING\r\n")
            self.c.read_until(b"PONG\r\n", 30)
            self.worst = max(self.worst, time.monotonic() - t0)
            self.count += 1
            time.sleep(0.001)


def restart_and_watch(store_dir, n):
    """Restart on the killed store; returns figures and the server."""
    t0 = time.monotonic()
    srv = ServerProcess("-js", "-sd", store_dir)
    pinger = Pinger(srv.port)
    first_pong = pinger.first_pong - t0
    pinger.start()
    c = RawClient(srv.port, timeout=60)
    c.send(b"SUB _INBOX.s.> 1\r\n")
    # a publish and an API request made while the stream may still be
    # coming back: both wait for it
    c.send(b"PUB s.x _INBOX.s.7 4\r\nlate\r\n")
    info_request(c, 8)
    ack = json.loads(read_msg(c, 120))
    info = json.loads(read_msg(c, 120))
    t_info = time.monotonic() - t0
    pinger.stop.set()
    pinger.join(60)
    pinger.c.close()
    c.close()
    return {"first_pong": first_pong, "info": t_info, "worst_ping": pinger.worst, "pings": pinger.count,
            "ack": ack, "state": info["state"]}, srv


class StartupTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="gnatsd-jsstart-")
        fill_and_kill(cls.dir, MESSAGES)
        cls.figures, cls.srv = restart_and_watch(cls.dir, MESSAGES)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_client_port_opens_before_the_store_is_back(self):
        out = self.srv.output()
        ready = out.index("Server is ready")
        opened = re.search(r"Opened stream '\$G > S' from blocks in [0-9.]+s: %d messages" % MESSAGES, out)
        self.assertIsNotNone(opened, out)
        # the listener is up (and the log says so) before the rebuild ends
        self.assertLess(ready, opened.start())

    def test_state_after_recovery(self):
        f = self.figures
        # the publish made during recovery came after the MESSAGES
        self.assertEqual(f["ack"], {"stream": "S", "seq": MESSAGES + 1})
        self.assertEqual(f["state"]["messages"], MESSAGES + 1)
        self.assertEqual(f["state"]["last_seq"], MESSAGES + 1)
        self.assertEqual(f["state"]["num_subjects"], 101)

    def test_pings_answered_throughout(self):
        f = self.figures
        self.assertGreater(f["pings"], 0)
        # generous: the reactor must not stall for the whole rebuild's length
        self.assertLess(f["worst_ping"], 5.0)
        sys.stderr.write("\n  startup of %d msgs: first PONG %.3fs, STREAM.INFO %.3fs, worst PING %.1f ms (%d PINGs)\n"
                         % (MESSAGES, f["first_pong"], f["info"], f["worst_ping"] * 1000, f["pings"]))


def measure(n):
    d = tempfile.mkdtemp(prefix="gnatsd-jsstart-")
    try:
        t = time.monotonic()
        fill_and_kill(d, n)
        print("filled %d messages in %.1fs, killed with SIGKILL" % (n, time.monotonic() - t))
        f, srv = restart_and_watch(d, n)
        print("restart: first PONG %.3fs, STREAM.INFO showing %d messages %.3fs, worst PING round trip "
              "during recovery %.1f ms over %d PINGs" % (f["first_pong"], f["state"]["messages"], f["info"],
                                                          f["worst_ping"] * 1000, f["pings"]))
        for line in srv.output().splitlines():
            if "Opened stream" in line or "Restored" in line or "JetStream stream" in line:
                print("  log: " + line)
        srv.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1000000)
