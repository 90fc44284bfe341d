"""Issue 13, cluster cut: the cluster reads the server's options in force.

A reload that changes `ping_interval` reaches routes as it reaches clients:
the keep-alive PING armed for a route that was already up goes by the new
interval, and so does a route accepted after the reload. Peers are raw
sockets on the cluster port that speak the route protocol (CONNECT, INFO,
PONG), so the server's PINGs are read as bytes.
"""

import json
import os
import signal
import time
import unittest

from tests.util import RawClient, ServerProcess

OLD_INTERVAL = 120          # seconds: no PING could come from it within WAIT
NEW_INTERVAL = 1
WAIT = 15.0                 # generous on a loaded machine, far below OLD_INTERVAL


def _peer_id():
    return ("NRESTRUCT%s" % os.urandom(6).hex().upper()).ljust(56, "X")[:56]


class RoutePeer(RawClient):
    """A fake cluster member on a raw socket: the dialling side's handshake."""

    def __init__(self, port):
        RawClient.__init__(self, port, connect=None, timeout=WAIT)
        assert self.info.startswith(b"INFO "), self.info
        sid = _peer_id()
        connect = {"echo": True, "verbose": False, "pedantic": False, "tls_required": False,
                   "headers": True, "name": sid, "cluster": "rc"}
        info = {"server_id": sid, "server_name": sid, "version": "2.9.10", "proto": 2,
                "host": "127.0.0.1", "port": 4248, "headers": True, "cluster": "rc"}
        self.send(b"CONNECT " + json.dumps(connect).encode() + b"\r\n")
        self.send(b"INFO " + json.dumps(info).encode() + b"\r\n")

    def wait_ping(self, timeout):
        """Seconds until the server's next PING (answered with PONG);
        raises TimeoutError when none comes within `timeout`."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            line = self.read_line(max(0.01, deadline - time.monotonic()))
            if line == b"PING":
                self.send(b"PONG\r\n")
                return time.monotonic() - start


class PingIntervalReloadTest(unittest.TestCase):
    def setUp(self):
        self.srv = ServerProcess("--cluster", "nats://127.0.0.1:-1",
                                 config='cluster { name: "rc" }\nping_interval: "%ds"\n' % OLD_INTERVAL)
        self.addCleanup(self.srv.stop)

    def reload(self, interval):
        with open(self.srv.config_path, "w") as f:
            f.write('cluster { name: "rc" }\nping_interval: "%ds"\n' % interval)
        self.srv.signal(signal.SIGHUP)
        self.assertTrue(self.srv.wait_log(r"Reloaded: ping_interval = %ds" % interval, WAIT),
                        self.srv.output())

    def peer(self):
        p = RoutePeer(self.srv.cluster_port)
        self.addCleanup(p.close)
        # the route is registered once the server answers our PING
        p.send(b"PING\r\n")
        p.read_until(b"PONG\r\n")
        return p

    def test_reload_reaches_existing_and_new_routes(self):
        before = self.peer()
        self.reload(NEW_INTERVAL)
        after = self.peer()
        # Both keep-alives run on the new interval: the next PING of each
        # comes within WAIT (the old interval would be 120 s), and a second
        # one too (re-armed from the options in force).
        for p in (before, after):
            self.assertLess(p.wait_ping(WAIT), WAIT)
            self.assertLess(p.wait_ping(WAIT), WAIT)

    def test_reload_reaches_existing_clients(self):
        c = RawClient(self.srv.port)
        self.addCleanup(c.close)
        self.assertEqual(c.ping(), b"")
        self.reload(NEW_INTERVAL)
        deadline = time.monotonic() + WAIT
        line = b""
        while line != b"PING":      # TimeoutError if it keeps the old interval
            line = c.read_line(max(0.01, deadline - time.monotonic()))
        c.send(b"PONG\r\n")
        self.assertEqual(c.ping(), b"")    # still connected, nothing else queued


if __name__ == "__main__":
    unittest.main()
