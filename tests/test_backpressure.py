"""Producer back-pressure (issue 15, part 3): a receiver over 3/4 of
max_pending stalls the clients publishing to it, so a burst into a slow
subscriber is paced instead of cut, and only subscribers that stop reading
are cut (at max_pending or write_deadline) while everyone else goes on."""

import asyncio
import json
import socket
import threading
import time
import unittest
import urllib.request

from tests.util import flushed, RawClient, ServerProcess, needs, wait_for

try:
    import nats
except ImportError:     # pragma: no cover - the test extras install it
    nats = None

SMALL = "max_pending: 262144\nmax_payload: 65536\nwrite_deadline: \"60s\"\n"


def varz(srv, path="/varz"):
    url = "http://127.0.0.1:%d%s" % (srv.monitor_port, path)
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


class SlowReader(threading.Thread):
    """Reads a socket at a bounded rate (`chunk` bytes per `pause` s) until
    it has `want` bytes, the peer closes, or `timeout` passes."""

    def __init__(self, sock, want, chunk, pause, timeout=60.0):
        threading.Thread.__init__(self, daemon=True)
        self.sock, self.want, self.chunk, self.pause = sock, want, chunk, pause
        self.deadline = time.monotonic() + timeout
        self.data = bytearray()
        self.eof = False

    def run(self):
        self.sock.settimeout(0.5)
        while len(self.data) < self.want and time.monotonic() < self.deadline:
            try:
                d = self.sock.recv(self.chunk)
            except socket.timeout:
                continue
            except OSError:
                self.eof = True
                return
            if not d:
                self.eof = True
                return
            self.data += d
            if self.pause:
                time.sleep(self.pause)


class TestBackPressure(unittest.TestCase):
    def test_slow_subscriber_loses_nothing(self):
        # 8 MB at full speed into a subscriber that reads ~2 MB/s, through
        # a 256 KiB max_pending: without back-pressure it is cut once the
        # kernel's send buffer (up to 4 MB on loopback) is full
        with ServerProcess("-m", "-1", config=SMALL) as srv:
            sub = RawClient(srv.port, rcvbuf=16384)
            self.addCleanup(sub.close)
            sub.send(b"SUB bp 1\r\n")
            sub.ping()
            total, size = 60000, 120
            frames = [b"MSG bp 1 %d\r\n%s\r\n" % (size, (b"%08d" % i).ljust(size, b"x")) for i in range(total)]
            expect = b"".join(frames)
            reader = SlowReader(sub.sock, len(expect), 16384, 0.008)
            reader.start()
            pub = RawClient(srv.port)
            self.addCleanup(pub.close)
            pubs = [b"PUB bp %d\r\n%s\r\n" % (size, f[-size - 2:-2]) for f in frames]
            for i in range(0, total, 1000):
                pub.send(b"".join(pubs[i:i + 1000]))
            pub.ping(timeout=60)
            reader.join(60)
            self.assertFalse(reader.eof, "the slow subscriber was cut")
            self.assertEqual(len(reader.data), len(expect))
            self.assertTrue(reader.data == expect, "messages lost, repeated or out of order")
            v = varz(srv)
            self.assertEqual(v["slow_consumers"], 0)
            self.assertGreater(v["stalled_clients"], 0)
            # /connz counts them on the receiver, as nats-server (omitted when 0)
            conns = {c["subscriptions"]: c for c in varz(srv, "/connz")["connections"]}
            self.assertEqual(conns[1]["stalls"], v["stalled_clients"])
            self.assertNotIn("stalls", conns[0])
            self.assertNotIn("Slow Consumer", srv.output())

    def _stuck_subscriber(self, conf, why):
        """A subscriber that never reads is cut for `why`; the producer's
        other subscriber gets everything and an unrelated client's PINGs
        are answered promptly all along."""
        with ServerProcess("-m", "-1", config=conf) as srv:
            stuck = RawClient(srv.port, rcvbuf=4096)
            stuck.send(b"SUB flood 1\r\n")
            stuck.ping()
            fast = RawClient(srv.port)
            fast.send(b"SUB flood 2\r\n")
            fast.ping()
            other = RawClient(srv.port)
            for c in (stuck, fast, other):
                self.addCleanup(c.close)
            total, payload = 20000, b"y" * 1000
            frame = len(b"MSG flood 2 1000\r\n") + 1002
            reader = SlowReader(fast.sock, total * frame, 1 << 20, 0)
            reader.start()
            done = threading.Event()
            worst = [0.0]

            def pinger():
                while not done.is_set():
                    t0 = time.monotonic()
                    other.ping(timeout=5)
                    worst[0] = max(worst[0], time.monotonic() - t0)
                    time.sleep(0.02)
            t = threading.Thread(target=pinger, daemon=True)
            t.start()
            pub = RawClient(srv.port)
            self.addCleanup(pub.close)
            for _ in range(total // 100):
                pub.send((b"PUB flood 1000\r\n" + payload + b"\r\n") * 100)
            pub.ping(timeout=60)
            reader.join(60)
            # (reading the stuck socket would make it progress: log first)
            self.assertTrue(srv.wait_log(r"Slow Consumer Detected: %s" % why, 15), srv.output()[-2000:])
            self.assertTrue(stuck.closed(5), "the stuck subscriber was not cut")
            done.set()
            t.join(10)
            self.assertEqual(len(reader.data), total * frame)
            self.assertFalse(reader.eof)
            self.assertLess(worst[0], 2.0)          # everyone else is served
            self.assertEqual(varz(srv)["slow_consumers"], 1)
            self.assertEqual(other.ping(), b"")

    def test_stuck_subscriber_cut_at_max_pending(self):
        self._stuck_subscriber(SMALL, "max pending")

    def test_stuck_subscriber_cut_at_write_deadline(self):
        self._stuck_subscriber("write_deadline: \"1s\"\n", "write deadline")


@needs(nats is not None, "nats-py is not installed (pip install nats-py)")
class TestBackPressureNatsPy(unittest.TestCase):
    def test_fast_publisher_slow_subscriber(self):
        # The subscriber's callback blocks its event loop now and then, so
        # its socket is read slower than the publisher writes.
        total = 12000
        with ServerProcess("-m", "-1", config="max_pending: 1048576\n") as srv:
            url = "nats://127.0.0.1:%d" % srv.port
            got = []
            ready = threading.Event()
            finished = threading.Event()
            errors = []

            async def subscriber():
                async def on_error(e):
                    errors.append(e)
                nc = await nats.connect(url, max_reconnect_attempts=0, error_cb=on_error)

                async def cb(msg):
                    got.append(int(msg.data[:8]))
                    if len(got) % 50 == 0:
                        time.sleep(0.01)        # a slow consumer: blocks the loop
                    if len(got) == total:
                        finished.set()
                await nc.subscribe("bp.py", cb=cb, pending_msgs_limit=total * 2,
                                   pending_bytes_limit=1 << 30)
                await flushed(nc)
                ready.set()
                while not finished.is_set() and nc.is_connected:
                    await asyncio.sleep(0.05)
                await nc.close()

            def run_sub():
                try:
                    asyncio.run(asyncio.wait_for(subscriber(), 120))
                except Exception as e:      # reported by the assertions below
                    errors.append(e)
            t = threading.Thread(target=run_sub, daemon=True)
            t.start()
            self.assertTrue(ready.wait(10), errors)

            async def publisher():
                nc = await nats.connect(url, max_reconnect_attempts=0)
                body = b"x" * 1000
                for i in range(total):
                    await nc.publish("bp.py", b"%08d" % i + body)
                await nc.flush(timeout=60)
                await nc.close()
            asyncio.run(asyncio.wait_for(publisher(), 120))
            self.assertTrue(wait_for(finished.is_set, 120), "got %d of %d" % (len(got), total))
            t.join(10)
            self.assertEqual(got, list(range(total)))
            self.assertEqual(errors, [])
            self.assertEqual(varz(srv)["slow_consumers"], 0)


if __name__ == "__main__":
    unittest.main()
