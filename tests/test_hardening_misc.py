"""Hardening items of issue 11 (SECURITY-AUDIT.md D6, D7, M4, M5) and two
protocol gaps against nats-server: the RTT PING shortly after CONNECT, the
connect_urls a lone survivor of a cluster sends, and output sent after a TLS
client's close_notify. Real server processes and raw sockets (one in-process
monitor where a test must hold its threads busy).
"""

import io
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import unittest

from gnats import conf
from gnats import monitor as M
from gnats.log import Logger
from gnats.options import Options
from tests.util import GNATSD, PYTHON, ROOT, RawClient, ServerProcess, free_port

TIMEOUT = 5.0
CERTS = os.path.join(ROOT, "configs", "certs")


def http_status(port, request, timeout=TIMEOUT):
    """Send a raw HTTP request, return (status code, body) of the answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(request)
        data = b""
        while True:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            data += d
            if b"\r\n\r\n" in data and b"Connection: close" not in data.split(b"\r\n\r\n")[0]:
                break
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ")[1]), body
    finally:
        s.close()


def get(port, path):
    return http_status(port, b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())


def wait_for(pred, timeout=TIMEOUT, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return pred()


class _Lines:
    """A raw NATS connection read line by line, answering server PINGs."""

    def __init__(self, port, connect=b'{"verbose":false,"protocol":1}'):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""
        self.info = json.loads(self.line()[5:])
        self.sock.sendall(b"CONNECT " + connect + b"\r\nPING\r\n")

    def line(self, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no line; have %r" % self.buf[:200])
            self.sock.settimeout(left)
            d = self.sock.recv(65536)
            if not d:
                raise EOFError("closed")
            self.buf += d
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def infos_until(self, pred, timeout=TIMEOUT):
        """connect_urls of each INFO received, until pred(urls) holds."""
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.line(deadline - time.monotonic())
            except TimeoutError:
                break
            if line == b"PING":
                self.sock.sendall(b"PONG\r\n")
            elif line.startswith(b"INFO "):
                urls = json.loads(line[5:]).get("connect_urls")
                seen.append(urls)
                if pred(urls):
                    break
        return seen

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------------------
# D6: slow or idle sockets must not lock the monitor (/healthz) out

class TestMonitorSlowSockets(unittest.TestCase):
    def setUp(self):
        self.mport = free_port()
        self.srv = ServerProcess("-m", str(self.mport))
        self.held = []

    def tearDown(self):
        for s in self.held:
            s.close()
        self.srv.stop()

    def test_healthz_answers_while_64_sockets_dribble_headers(self):
        # The audit's D6: 64 sockets hold the cap with a never-ending request.
        # Before: 503 for as long as they dribble. nats-server (and now): 200.
        for _ in range(M.MAX_HTTP_CONNECTIONS):
            s = socket.create_connection(("127.0.0.1", self.mport), timeout=TIMEOUT)
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            self.held.append(s)
        for _ in range(3):
            for s in self.held:
                try:
                    s.send(b"X")
                except OSError:
                    pass            # already evicted: fine
            status, body = get(self.mport, "/healthz")
            self.assertEqual(status, 200, body)
            self.assertEqual(json.loads(body), {"status": "ok"})

    def test_headers_must_arrive_within_the_header_deadline(self):
        # One byte every 0.3 s stays under the per-read timeout; only a
        # deadline on the whole header (HEADER_TIMEOUT, 5 s) ends it, long
        # before the 30 s connection lifetime that used to be the only bound.
        s = socket.create_connection(("127.0.0.1", self.mport), timeout=TIMEOUT)
        self.held.append(s)
        t0 = time.monotonic()
        closed_after = None
        for ch in (b"GET /varz HTTP/1.1\r\nX-Slow: " + b"a" * 200):
            try:
                s.sendall(bytes([ch]))
                s.settimeout(0.3)
                if s.recv(100) == b"":
                    closed_after = time.monotonic() - t0
                    break
            except socket.timeout:
                continue
            except OSError:
                closed_after = time.monotonic() - t0
                break
            if time.monotonic() - t0 > M.HEADER_TIMEOUT + 5:
                break
        self.assertIsNotNone(closed_after, "a dribbling request was not cut at the header deadline")
        self.assertGreaterEqual(closed_after, M.HEADER_TIMEOUT - 0.5)
        self.assertLess(closed_after, M.HEADER_TIMEOUT + 5)


class TestMonitorBusyCap(unittest.TestCase):
    """When every connection is busy answering, a new one still gets a 503
    (nothing to evict): the cap bounds threads."""

    def test_busy_connections_are_not_evicted(self):
        release = threading.Event()
        inside = []
        lock = threading.Lock()

        def snapshot(fresh, conns):
            with lock:
                inside.append(1)
            release.wait(TIMEOUT)
            return {"now": time.time(), "start": time.time(), "clients": [], "routes": []}

        old = M.MAX_HTTP_CONNECTIONS
        M.MAX_HTTP_CONNECTIONS = 2
        mon = M.Monitor(Options(host="127.0.0.1", http_port=-1), snapshot, Logger(stream=io.StringIO()))
        mon.start()
        results = []
        try:
            threads = [threading.Thread(target=lambda: results.append(get(mon.http_port, "/varz")[0]))
                       for _ in range(2)]
            for t in threads:
                t.start()
            self.assertTrue(wait_for(lambda: len(inside) == 2), "both requests should be in progress")
            self.assertEqual(get(mon.http_port, "/healthz")[0], 503)
            release.set()
            for t in threads:
                t.join(TIMEOUT)
            self.assertEqual(len(results), 2)
            self.assertEqual(wait_for(lambda: get(mon.http_port, "/healthz")[0] == 200), True)
        finally:
            release.set()
            M.MAX_HTTP_CONNECTIONS = old
            mon.stop()


# ---------------------------------------------------------------------------
# M4: request line and headers capped at 1 MiB

class TestMonitorHeaderCap(unittest.TestCase):
    def test_headers_over_one_mebibyte_get_431(self):
        mport = free_port()
        with ServerProcess("-m", str(mport)):
            line = b"X-Pad-%02d: " + b"a" * 64000 + b"\r\n"
            under = b"GET /varz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + \
                b"".join(line % i for i in range(15)) + b"\r\n"           # ~960 KB
            over = b"GET /varz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + \
                b"".join(line % i for i in range(17)) + b"\r\n"           # ~1.09 MB
            self.assertLess(len(under), M.MAX_HEADER_BYTES)
            self.assertGreater(len(over), M.MAX_HEADER_BYTES)
            self.assertEqual(http_status(mport, under)[0], 200)
            status, body = http_status(mport, over)
            self.assertEqual(status, 431)
            self.assertEqual(json.loads(body), {"error": "request header fields too large"})
            self.assertEqual(get(mport, "/healthz")[0], 200)


# ---------------------------------------------------------------------------
# D7: no secret in the log, malformed and oversized CONNECTs included

class TestNoSecretsInLog(unittest.TestCase):
    def test_malformed_and_oversized_connect_on_client_and_route_ports(self):
        cport = free_port()
        srv = ServerProcess("--user", "alice", "--pass", "SECRETPW1", "-DV",
                            "--cluster", "nats://r:ROUTEPW2@127.0.0.1:%d" % cport)
        try:
            probes = [
                (srv.port, b'CONNECT {"pass":"SECRETPW1","user":"alice",}\r\n'),
                (cport, b'CONNECT {"pass":"ROUTEPW2","user":"r",}\r\n'),
                (srv.port, b'CONNECT {"pass":"SECRETPW1","user":"' + b"a" * 5000 + b'"}\r\n'),
                (cport, b'CONNECT {"pass":"ROUTEPW2","user":"' + b"a" * 70000 + b'"}\r\n'),
                (srv.port, b'connect {"auth_token":"SECRETPW1","user":"\xff"}\r\n'),
                (srv.port, b'   CONNECT {"pass":"SECRETPW1" "user":"alice"}\r\n'),
            ]
            for port, line in probes:
                s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
                s.recv(4096)
                s.sendall(line)
                s.settimeout(TIMEOUT)
                try:
                    while s.recv(4096):
                        pass            # until the server closes it
                except OSError:
                    pass
                s.close()
            self.assertTrue(wait_for(lambda: srv.output().count("parser ERROR") >= len(probes)),
                            srv.output()[-2000:])
        finally:
            srv.stop()
        out = srv.output()
        self.assertIn("Router parser ERROR", out)
        self.assertIn("Client parser ERROR: invalid JSON", out)
        self.assertNotIn("SECRETPW1", out)
        self.assertNotIn("ROUTEPW2", out)

    def test_other_protocol_errors_keep_their_snippet(self):
        with ServerProcess() as srv:
            c = RawClient(srv.port)
            c.send(b"BOGUS stuff\r\n")
            self.assertTrue(c.closed())
            self.assertTrue(srv.wait_log(r"parser ERROR: .*proto=b'BOGUS stuff"), srv.output())


# ---------------------------------------------------------------------------
# M5: environment variable expansion is linear

class TestEnvExpansion(unittest.TestCase):
    def setUp(self):
        self.saved = dict(os.environ)

    def tearDown(self):
        os.environ.clear()
        os.environ.update(self.saved)

    def _chain(self, levels, width):
        env = {"GN_E0": "1"}
        for i in range(1, levels + 1):
            env["GN_E%d" % i] = "[" + ",".join(["$GN_E%d" % (i - 1)] * width) + "]"
        return env

    def test_nested_references_are_parsed_once(self):
        os.environ.update(self._chain(3, 3))
        x = conf.parse("x: $GN_E3\n")["x"]
        self.assertEqual(len(x), 3)
        self.assertEqual(x[0], [[1, 1, 1]] * 3)
        # one parse per variable (and depth): the references share it
        self.assertIs(x[0], x[1])
        self.assertIs(x[0][0], x[2][2])

    def test_seven_levels_of_ten_check_quickly(self):
        # The audit's case had 6 levels (18 s for -t); this is 7 (10^7 parses
        # before the change). The bound is generous: a linear parse is ~0.1 s.
        env = dict(os.environ)
        env.update(self._chain(7, 10))
        path = os.path.join(self._tmpdir(), "env.conf")
        with open(path, "w") as f:
            f.write("x: $GN_E7\n")
        t0 = time.monotonic()
        p = subprocess.run([PYTHON, GNATSD, "-t", "-c", path], env=env, cwd=ROOT,
                           capture_output=True, timeout=60)
        # parsed through; only then is the field itself refused
        self.assertIn(b'unknown field "x"', p.stdout + p.stderr)
        self.assertLess(time.monotonic() - t0, 20)

    def test_cycles_and_depth_still_refused(self):
        os.environ["GN_SELF"] = "$GN_SELF"
        with self.assertRaises(conf.ConfigError) as cm:
            conf.parse("x: $GN_SELF\n")
        self.assertIn("nested deeper than %d" % conf.MAX_ENV_DEPTH, str(cm.exception))
        # a chain of MAX_ENV_DEPTH variables is fine, one more is refused
        os.environ.update(self._chain(conf.MAX_ENV_DEPTH, 2))
        self.assertEqual(len(conf.parse("x: $GN_E%d\n" % (conf.MAX_ENV_DEPTH - 1))["x"]), 2)
        with self.assertRaises(conf.ConfigError) as cm:
            conf.parse("x: $GN_E%d\n" % conf.MAX_ENV_DEPTH)
        self.assertIn("nested deeper than", str(cm.exception))

    def _tmpdir(self):
        import tempfile
        d = tempfile.mkdtemp(prefix="gnatsd-env-")
        self.addCleanup(lambda: __import__("shutil").rmtree(d, ignore_errors=True))
        return d


# ---------------------------------------------------------------------------
# /connz rtt: measured about 2 s after the connection opened, as nats-server does

class TestRttPing(unittest.TestCase):
    LIB = b'{"verbose":false,"pedantic":false,"lang":"raw-test"}'

    def test_first_ping_after_two_seconds_gives_connz_an_rtt(self):
        mport = free_port()
        with ServerProcess("-m", str(mport)) as srv:
            c = RawClient(srv.port, connect=self.LIB)
            t0 = time.monotonic()
            self.assertEqual(c.ping(), b"")             # nothing unsolicited at once
            self.assertEqual(c.read_line(timeout=6.0), b"PING")
            waited = time.monotonic() - t0
            self.assertGreaterEqual(waited, 1.5)        # FIRST_PING (2 s), not sooner
            c.send(b"PONG\r\n")

            def rtt():
                conns = json.loads(get(mport, "/connz")[1])["connections"]
                return conns and conns[0]["rtt"] != "0s" and conns[0]["rtt"]
            self.assertTrue(wait_for(rtt), "connz rtt stayed 0s")
            c.close()

    def test_no_rtt_ping_for_a_client_without_lang(self):
        # telnet and raw protocol clients (no `lang`) get no unsolicited PING
        with ServerProcess() as srv:
            c = RawClient(srv.port)
            with self.assertRaises(TimeoutError):
                c.read_line(timeout=3.5)
            self.assertEqual(c.ping(), b"")
            c.close()

    def test_no_rtt_ping_when_keepalive_comes_first(self):
        with ServerProcess(config="ping_interval: 1\n") as srv:
            c = RawClient(srv.port, connect=self.LIB)
            self.assertEqual(c.read_line(timeout=4.0), b"PING")
            c.send(b"PONG\r\n")
            # the keep-alive measured the RTT: the next PING is the next
            # keep-alive, a full interval later, not an extra one at 2 s
            t1 = time.monotonic()
            self.assertEqual(c.read_line(timeout=4.0), b"PING")
            self.assertGreaterEqual(time.monotonic() - t1, 0.8)
            c.close()


# ---------------------------------------------------------------------------
# The last server of a cluster tells its clients connect_urls: [itself]

class TestConnectUrlsShrink(unittest.TestCase):
    """nats.c's test_ServerPoolUpdatedOnClusterUpdate: three servers started
    with -cluster_name abc -routes <the other two>; two stop; the survivor's
    clients must be told that the others left, or their pools keep them."""

    def test_survivor_sends_its_own_url_only(self):
        ports = [free_port() for _ in range(3)]
        cports = [free_port() for _ in range(3)]
        srvs = []
        try:
            for i in range(3):
                routes = ",".join("nats://127.0.0.1:%d" % cports[j] for j in range(3) if j != i)
                srvs.append(ServerProcess("-cluster", "nats://127.0.0.1:%d" % cports[i],
                                          "-cluster_name", "abc", "-routes", routes, port=ports[i]))
            urls = ["127.0.0.1:%d" % p for p in ports]
            c = _Lines(ports[1])
            full = lambda u: u is not None and sorted(u) == sorted(urls)
            seen = [c.info.get("connect_urls")]
            if not full(seen[0]):
                seen += c.infos_until(full, timeout=15)
            self.assertEqual(sorted(seen[-1] or []), sorted(urls), seen)
            srvs[0].stop()
            srvs[2].stop()
            seen = c.infos_until(lambda u: u == [urls[1]], timeout=10)
            self.assertEqual(seen[-1:], [[urls[1]]], seen)
            fresh = _Lines(ports[1])
            self.assertEqual(fresh.info.get("connect_urls"), [urls[1]])
            fresh.close()
            c.close()
        finally:
            for s in srvs:
                s.stop()

    def test_never_clustered_server_sends_no_connect_urls(self):
        cport = free_port()
        with ServerProcess("-cluster", "nats://127.0.0.1:%d" % cport, "-cluster_name", "abc") as srv:
            c = _Lines(srv.port)
            self.assertNotIn("connect_urls", c.info)
            c.close()


# ---------------------------------------------------------------------------
# TLS: nothing is written after a client's close_notify

class _BioClient:
    """A TLS client on memory BIOs, so that records can be sent together in
    one TCP write (a PUB and the close_notify right behind it)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""
        while b"\r\n" not in self.buf:
            self.buf += self.sock.recv(4096)            # plain-text INFO first
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out)
        self._pump(self.obj.do_handshake)

    def _pump(self, step):
        while True:
            try:
                r = step()
                self._send_out()
                return r
            except ssl.SSLWantReadError:
                self._send_out()
                d = self.sock.recv(65536)
                if not d:
                    self.inc.write_eof()
                else:
                    self.inc.write(d)

    def _send_out(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def send(self, data):
        self.obj.write(data)
        self._send_out()

    def read_until(self, marker):
        got = b""
        while marker not in got:
            got += self._pump(lambda: self.obj.read(65536))
        return got

    def send_and_close_notify(self, data):
        """data and close_notify in one TCP write; then read to EOF and
        finish the shutdown. Returns the SSLError it raised, if any."""
        self.obj.write(data)
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        self.sock.sendall(self.out.read())
        self.sock.settimeout(TIMEOUT)
        while True:
            try:
                d = self.sock.recv(65536)
            except ConnectionResetError:
                d = b""
            if not d:
                break
            self.inc.write(d)
        self.inc.write_eof()
        try:
            self.obj.unwrap()
        except ssl.SSLError as e:
            return e
        return None


class TestTlsCloseNotify(unittest.TestCase):
    """nats.py's ClientTLSReconnectTest counted an SSLError at close against
    gnatsd.py: the reply to the client's last PUB arrived after its
    close_notify (OpenSSL: APPLICATION_DATA_AFTER_CLOSE_NOTIFY)."""

    def test_no_data_after_close_notify_and_last_pub_delivered(self):
        with ServerProcess("--tls", "--tlscert", os.path.join(CERTS, "server-cert.pem"),
                           "--tlskey", os.path.join(CERTS, "server-key.pem")) as srv:
            watcher = _BioClient(srv.port)
            watcher.send(b'CONNECT {"verbose":false}\r\nSUB foo 1\r\nPING\r\n')
            watcher.read_until(b"PONG\r\n")
            c = _BioClient(srv.port)
            c.send(b'CONNECT {"verbose":false}\r\nSUB foo 1\r\nPING\r\n')
            c.read_until(b"PONG\r\n")
            err = c.send_and_close_notify(b"PUB foo 2\r\nhi\r\n")
            self.assertNotIn("APPLICATION_DATA_AFTER_CLOSE_NOTIFY", str(err or ""))
            # the closing client's last PUB still reached the other subscriber
            self.assertEqual(watcher.read_until(b"hi\r\n"), b"MSG foo 1 2\r\nhi\r\n")
            watcher.sock.close()
            c.sock.close()


if __name__ == "__main__":
    unittest.main()
