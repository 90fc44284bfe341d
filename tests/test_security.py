"""Authorization and TLS through `python3 gnatsd.py`, over real sockets,
with raw clients and nats-py."""

import asyncio
import json
import os
import re
import select
import socket
import ssl
import subprocess
import time
import unittest
import urllib.request

from tests.util import PYTHON, ROOT, RawClient, ServerProcess, needs, wait_for

CERTS = os.path.join(ROOT, "configs", "certs")
SERVER_CERT = os.path.join(CERTS, "server-cert.pem")
SERVER_KEY = os.path.join(CERTS, "server-key.pem")
CA = os.path.join(CERTS, "ca.pem")

try:
    import bcrypt
except ImportError:
    bcrypt = None
try:
    import nats
except ImportError:
    nats = None


def connect_json(**kw):
    d = {"verbose": False, "pedantic": False}
    d.update(kw)
    return json.dumps(d).encode()


class TestUserPassword(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = ServerProcess("--user", "derek", "--pass", "s3cr3t!", "-DV")

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_info_says_auth_required(self):
        c = RawClient(self.srv.port, None)
        self.assertTrue(json.loads(c.info[5:])["auth_required"])
        c.close()

    def test_good_credentials(self):
        c = RawClient(self.srv.port, connect_json(user="derek", **{"pass": "s3cr3t!"}))
        self.assertEqual(c.ping(), b"")
        c.close()

    def test_bad_credentials(self):
        for creds in ({"user": "derek", "pass": "nope"}, {"user": "bob", "pass": "s3cr3t!"}, {}):
            c = RawClient(self.srv.port, connect_json(**creds))
            self.assertEqual(c.read_line(), b"-ERR 'Authorization Violation'")
            self.assertTrue(c.closed())
            c.close()

    def test_op_before_connect(self):
        c = RawClient(self.srv.port, None)
        c.send(b"SUB foo 1\r\n")
        self.assertEqual(c.read_line(), b"-ERR 'Authorization Violation'")
        self.assertTrue(c.closed())
        c.close()

    def test_ping_before_connect_answered(self):
        # README: until CONNECT a client may only send CONNECT and PING.
        # (nats-server 2.9 and 2.15 answer -ERR 'Authorization Violation'
        # here instead; a difference the README states on purpose)
        c = RawClient(self.srv.port, None)
        c.send(b"PING\r\n")
        self.assertEqual(c.read_line(), b"PONG")
        c.send(b"CONNECT " + connect_json(user="derek", **{"pass": "s3cr3t!"}) + b"\r\n")
        self.assertEqual(c.ping(), b"")
        c.close()

    def test_password_never_logged(self):
        c = RawClient(self.srv.port, connect_json(user="derek", **{"pass": "s3cr3t!"}))
        c.ping()
        bad = RawClient(self.srv.port, connect_json(user="derek", **{"pass": "wrongpass77"}))
        bad.closed()
        self.assertTrue(self.srv.wait_log(r"REDACTED"))
        self.assertTrue(self.srv.wait_log(r"authentication error|Authorization"))
        out = self.srv.output()
        self.assertNotIn("s3cr3t!", out)
        self.assertNotIn("wrongpass77", out)
        c.close()
        bad.close()


class TestSecretsNotInMonitoring(unittest.TestCase):
    def test_monitoring_output_has_no_secrets(self):
        srv = ServerProcess("--user", "derek", "--pass", "s3cr3t!", "-m", "-1", "-n", "named-one",
                            "--cluster", "nats://ruser:rp4ssw0rd@127.0.0.1:-1")
        self.addCleanup(srv.stop)
        c = RawClient(srv.port, connect_json(user="derek", **{"pass": "s3cr3t!"}))
        self.addCleanup(c.close)
        c.send(b"SUB s 1\r\n")
        c.ping()
        self.assertEqual(json.loads(c.info[5:])["server_name"], "named-one")      # -n
        bodies = {}
        for path in ("/varz", "/connz?auth=1&subs=1", "/routez?subs=1", "/subsz?subs=1", "/metrics"):
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (srv.monitor_port, path), timeout=5) as r:
                bodies[path] = r.read().decode()
        for path, body in bodies.items():
            self.assertNotIn("s3cr3t", body, path)
            self.assertNotIn("rp4ssw0rd", body, path)
        self.assertEqual(json.loads(bodies["/varz"])["server_name"], "named-one")
        conns = json.loads(bodies["/connz?auth=1&subs=1"])["connections"]
        self.assertEqual([x.get("authorized_user") for x in conns], ["derek"])   # the user, not the password


class TestTimeoutAndToken(unittest.TestCase):
    def test_auth_timeout(self):
        with ServerProcess(config="authorization { user: a\n password: b\n timeout: 0.5 }\n") as srv:
            c = RawClient(srv.port, None)
            t0 = time.monotonic()
            self.assertEqual(c.read_line(timeout=3), b"-ERR 'Authentication Timeout'")
            self.assertTrue(c.closed())
            self.assertLess(time.monotonic() - t0, 2.5)
            c.close()

    def test_token(self):
        with ServerProcess("--auth", "tok3n") as srv:
            good = RawClient(srv.port, connect_json(auth_token="tok3n"))
            self.assertEqual(good.ping(), b"")
            bad = RawClient(srv.port, connect_json(auth_token="other"))
            self.assertEqual(bad.read_line(), b"-ERR 'Authorization Violation'")
            good.close()
            bad.close()

    def test_users_list(self):
        conf = 'authorization { users = [ {user: alice, password: "pa"}, {user: bob, password: "pb"} ] }\n'
        with ServerProcess(config=conf) as srv:
            for u, p in (("alice", "pa"), ("bob", "pb")):
                c = RawClient(srv.port, connect_json(user=u, **{"pass": p}))
                self.assertEqual(c.ping(), b"")
                c.close()
            c = RawClient(srv.port, connect_json(user="alice", **{"pass": "pb"}))
            self.assertEqual(c.read_line(), b"-ERR 'Authorization Violation'")
            c.close()


@needs(bcrypt is not None, "bcrypt is not installed")
class TestBcrypt(unittest.TestCase):
    def test_mkpasswd_hash_accepted(self):
        out = subprocess.run([PYTHON, os.path.join(ROOT, "tools", "mkpasswd.py"), "-p", "--cost", "6"],
                             input=b"T0pS3cr3t\n", capture_output=True, timeout=30, cwd=ROOT)
        self.assertEqual(out.returncode, 0, out.stderr)
        h = [l for l in out.stdout.decode().splitlines() if l.startswith("bcrypt hash:")][0].split()[-1]
        conf = 'authorization { user: derek\n password: "%s"\n timeout: 2 }\n' % h
        with ServerProcess(config=conf) as srv:
            ok = RawClient(srv.port, connect_json(user="derek", **{"pass": "T0pS3cr3t"}))
            self.assertEqual(ok.ping(), b"")
            bad = RawClient(srv.port, connect_json(user="derek", **{"pass": "x"}))
            self.assertEqual(bad.read_line(), b"-ERR 'Authorization Violation'")
            ok.close()
            bad.close()

    def test_slow_bcrypt_does_not_block_others(self):
        h = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=12)).decode()
        conf = 'authorization { user: u\n password: "%s"\n timeout: 5 }\n' % h
        with ServerProcess(config=conf) as srv:
            authed = RawClient(srv.port, connect_json(user="u", **{"pass": "pw"}))
            self.assertEqual(authed.ping(timeout=10), b"")
            authed.send(b"SUB x 1\r\n")
            slow = [RawClient(srv.port, connect_json(user="u", **{"pass": "wrong%d" % i})) for i in range(3)]
            authed.send(b"PUB x 1\r\nz\r\n")
            self.assertEqual(authed.ping(), b"MSG x 1 1\r\nz\r\n")
            # Ordered, not timed: two workers need two bcrypt rounds for
            # three checks, so the PONG came before the last verdict. A
            # reactor blocked by bcrypt would answer only after all three.
            ready = select.select([c.sock for c in slow], [], [], 0)[0]
            self.assertLess(len(ready), 3, "the PONG waited for every bcrypt check")
            for c in slow:
                self.assertEqual(c.read_line(timeout=10), b"-ERR 'Authorization Violation'")
                c.close()
            authed.close()


class TestTLS(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = ServerProcess("--tls", "--tlscert", SERVER_CERT, "--tlskey", SERVER_KEY, "-D")

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def tls_client(self, ctx=None):
        raw = socket.create_connection(("127.0.0.1", self.srv.port), timeout=5)
        f = raw.makefile("rb")
        info = f.readline()
        self.assertTrue(json.loads(info[5:])["tls_required"])
        ctx = ctx or ssl.create_default_context(cafile=CA)
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        return s

    def test_tls_pub_sub(self):
        s = self.tls_client()
        s.sendall(b'CONNECT {"verbose":false}\r\nSUB t 1\r\nPUB t 2\r\nok\r\nPING\r\n')
        buf = b""
        while b"PONG" not in buf:
            d = s.recv(4096)         # the socket's 5 s timeout bounds each read
            if not d:
                self.fail("server closed the TLS connection; got %r" % buf)
            buf += d
        self.assertEqual(buf, b"MSG t 1 2\r\nok\r\nPONG\r\n")
        self.assertTrue(self.srv.wait_log(r"TLS handshake complete"))
        self.assertTrue(self.srv.wait_log(r"TLS version 1\.[23], cipher suite"))
        s.close()

    def test_plain_client_refused(self):
        c = RawClient(self.srv.port, None)
        c.send(b'CONNECT {"verbose":false}\r\nPING\r\n')
        self.assertEqual(c.read_line(), b"-ERR 'Secure Connection - TLS Required'")
        self.assertTrue(c.closed())
        c.close()

    def test_stalled_handshake_does_not_block_others(self):
        stalled = socket.create_connection(("127.0.0.1", self.srv.port), timeout=5)
        stalled.recv(4096)
        stalled.send(b"\x16\x03\x01")   # the start of a ClientHello, then nothing
        s = self.tls_client()
        s.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
        self.assertEqual(s.recv(100), b"PONG\r\n")
        # ordered, not timed: the other client was served while the stalled
        # handshake was still pending (not yet dropped by the 2 s TLS timeout)
        stalled.settimeout(0)
        with self.assertRaises(BlockingIOError):
            stalled.recv(100)
        s.close()
        # and the stalled one is dropped by the TLS timeout, not left open
        stalled.settimeout(10)
        try:
            while stalled.recv(100):
                pass
            ended = "closed"
        except socket.timeout:
            ended = "still open after 10 s"
        except OSError:
            ended = "closed"
        self.assertEqual(ended, "closed")
        self.assertTrue(self.srv.wait_log(r"TLS handshake timeout"), self.srv.output()[-1500:])
        stalled.close()

    def test_tls_under_load(self):
        sub = self.tls_client()
        sub.sendall(b'CONNECT {"verbose":false}\r\nSUB load 1\r\nPING\r\n')
        self.assertEqual(sub.recv(100), b"PONG\r\n")
        pub = self.tls_client()
        n = 20000
        msg = b"PUB load 100\r\n" + b"p" * 100 + b"\r\n"
        pub.sendall(b'CONNECT {"verbose":false}\r\n' + msg * n + b"PING\r\n")
        frame = len(b"MSG load 1 100\r\n") + 102
        got = 0
        sub.settimeout(10)
        while got < n * frame:
            d = sub.recv(1 << 20)
            if not d:
                break
            got += len(d)
        self.assertEqual(got, n * frame)
        sub.close()
        pub.close()

    @needs(nats is not None, "nats-py is not installed")
    def test_natspy_over_tls(self):
        async def go():
            ctx = ssl.create_default_context(cafile=CA)
            nc = await nats.connect("tls://127.0.0.1:%d" % self.srv.port, tls=ctx,
                                    tls_hostname="localhost", connect_timeout=3, max_reconnect_attempts=0)
            sub = await nc.subscribe("sec")
            await nc.publish("sec", b"hi")
            m = await sub.next_msg(timeout=2)
            await nc.close()
            return m.data
        self.assertEqual(asyncio.run(asyncio.wait_for(go(), 15)), b"hi")


class TestTLSVerify(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = ServerProcess("--tlsverify", "--tlscert", SERVER_CERT, "--tlskey", SERVER_KEY,
                                "--tlscacert", CA)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def handshake(self, cert, key, version=None, send=True):
        raw = socket.create_connection(("127.0.0.1", self.srv.port), timeout=5)
        raw.makefile("rb").readline()
        ctx = ssl.create_default_context(cafile=CA)
        if version:
            ctx.maximum_version = version
        if cert:
            ctx.load_cert_chain(os.path.join(CERTS, cert), os.path.join(CERTS, key))
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        try:
            # With TLS 1.3 the server's verdict on the client certificate
            # arrives after the client's side of the handshake, on the first
            # read. Data sent before it could meet a closed socket (a reset
            # that hides the alert), so a refusal is checked with send=False.
            if send:
                s.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
            return s.recv(100)
        finally:
            s.close()

    def test_client_cert_accepted(self):
        self.assertEqual(self.handshake("client-cert.pem", "client-key.pem"), b"PONG\r\n")

    def test_refused_without_or_with_bad_cert(self):
        # The refusal itself: a TLS alert naming the reason, seen by the
        # client as ssl.SSLError (a timeout, a reset or a crashed server are
        # other errors and fail here), and the server's log line saying why.
        cases = ((None, None, r"(?i)certificate required|handshake failure", "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
                 ("client-wrongca-cert.pem", "client-wrongca-key.pem", r"(?i)unknown ca",
                  "CERTIFICATE_VERIFY_FAILED"),
                 ("client-expired-cert.pem", "client-expired-key.pem", r"(?i)certificate expired",
                  "CERTIFICATE_VERIFY_FAILED"))
        refused = 0
        for cert, key, alert, reason in cases:
            for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
                with self.subTest(cert=cert, version=version.name):
                    with self.assertRaisesRegex(ssl.SSLError, alert):
                        self.handshake(cert, key, version, send=False)
                    refused += 1
                    # one log line per refusal, with the reason
                    rx = r"\[ERR\] .*cid:\d+ - TLS handshake error: (\w+)"
                    self.assertTrue(wait_for(lambda: len(re.findall(rx, self.srv.output())) == refused),
                                    self.srv.output())
                    self.assertEqual(re.findall(rx, self.srv.output())[-1], reason)
        # and the server still serves a good client
        self.assertEqual(self.handshake("client-cert.pem", "client-key.pem"), b"PONG\r\n")

if __name__ == "__main__":
    unittest.main()
