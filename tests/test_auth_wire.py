"""Issue 16, the connection side of authorization: nkey users (INFO nonce,
CONNECT sig), no_auth_user, allowed_connection_types, tls { verify_and_map,
handshake_first } and allow_non_tls, black-box over real sockets against a
`gnatsd.py` process, with nats-py, and beside nats-server 2.15 where the
behaviour is subtle (INFO fields, handshake_first timing)."""

import asyncio
import base64
import json
import os
import signal
import socket
import ssl
import time
import unittest

from tests.util import flushed, ROOT, ServerProcess, needs, wait_for

try:
    import nats
except ImportError:
    nats = None
try:
    import nkeys
except ImportError:
    nkeys = None

GO215 = "/opt/ns/bin/nats-server"
HAVE_GO215 = os.access(GO215, os.X_OK)
CERTS = os.path.join(ROOT, "configs", "certs")
CA = os.path.join(CERTS, "ca.pem")
SERVER_TLS = ('cert_file: "configs/certs/server-cert.pem", '
              'key_file: "configs/certs/server-key.pem"')
AUTH_VIOLATION = b"-ERR 'Authorization Violation'\r\n"

# A user seed made for these tests (nkeys.encode_seed of 32 bytes 0x2a).
SEED = b"SUACUKRKFIVCUKRKFIVCUKRKFIVCUKRKFIVCUKRKFIVCUKRKFIVCUKTGMM"


def keypair():
    return nkeys.from_seed(bytearray(SEED))


def public_key():
    return keypair().public_key.decode()


def sign(nonce):
    sig = keypair().sign(nonce.encode())
    return base64.urlsafe_b64encode(sig).decode().rstrip("=")


def read_info(sock, timeout=5.0):
    sock.settimeout(timeout)
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before INFO: %r" % buf)
        buf += chunk
    assert buf.startswith(b"INFO "), buf
    return json.loads(buf[5:])


def read_until(sock, marker, timeout=5.0):
    """Bytes up to and including marker, or what came before the peer closed."""
    sock.settimeout(timeout)
    buf = b""
    deadline = time.monotonic() + timeout
    while marker not in buf and time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except (socket.timeout, ConnectionError, ssl.SSLError):
            break
        if not chunk:
            break
        buf += chunk
    return buf


def raw_connect(port, make_connect, tls_ctx=None):
    """Connect, read INFO, send CONNECT {make_connect(info)} and a PING;
    answers (info, bytes received up to PONG or the close)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        info = read_info(sock)
        if tls_ctx is not None:
            sock = tls_ctx.wrap_socket(sock, server_hostname="localhost")
        connect = make_connect(info)
        sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        return info, read_until(sock, b"PONG\r\n")
    finally:
        sock.close()


def client_ctx(cert=None):
    ctx = ssl.create_default_context(cafile=CA)
    if cert:
        ctx.load_cert_chain(os.path.join(CERTS, cert + "-cert.pem"),
                            os.path.join(CERTS, cert + "-key.pem"))
    return ctx


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def roundtrip(nc, subject="auth.wire"):
    """One message through the server and back, counted exactly."""
    got = []

    async def cb(msg):
        got.append(msg.data)
    sub = await nc.subscribe(subject, cb=cb)
    await nc.publish(subject, b"hello")
    await flushed(nc)
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.02)
    await sub.unsubscribe()
    return got


# --- nkey users ------------------------------------------------------------------

@needs(nkeys is not None, "the nkeys package (test dependency)")
class NkeyUsersTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.conf = ('authorization { users = [ {nkey: "%s"}, {user: a, password: b} ] }\n'
                    % public_key())
        cls.srv = ServerProcess(config=cls.conf)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_info_carries_a_fresh_nonce_per_connection(self):
        nonces = []
        for _ in range(3):
            info, _ = raw_connect(self.srv.port, lambda i: {"user": "a", "pass": "b"})
            nonces.append(info["nonce"])
            self.assertTrue(info["auth_required"])
        self.assertEqual(len(set(nonces)), 3)
        for n in nonces:    # nats-server: 11 random bytes, base64url without padding
            self.assertEqual(len(n), 15)
            base64.urlsafe_b64decode(n + "=")

    def test_signed_nonce_is_accepted(self):
        info, got = raw_connect(self.srv.port, lambda i: {
            "verbose": False, "nkey": public_key(), "sig": sign(i["nonce"])})
        self.assertEqual(got, b"PONG\r\n")

    def test_bad_signatures_are_authorization_violations(self):
        other = base64.urlsafe_b64encode(keypair().sign(b"another nonce")).decode().rstrip("=")
        bad = [
            {"nkey": public_key()},                         # no sig
            {"nkey": public_key(), "sig": other},           # signs something else
            {"nkey": public_key(), "sig": "!!not base64!!"},
            {"nkey": public_key(), "sig": "AAAA"},          # wrong length
            {"nkey": public_key(), "sig": 12345},           # not a string
            {"nkey": "UNKNOWN", "sig": "AAAA"},
        ]
        for connect in bad:
            _, got = raw_connect(self.srv.port, lambda i, c=connect: c)
            self.assertEqual(got, AUTH_VIOLATION, connect)
        # the server kept serving, without a traceback
        _, got = raw_connect(self.srv.port, lambda i: {"verbose": False, "user": "a", "pass": "b"})
        self.assertEqual(got, b"PONG\r\n")
        self.assertNotIn("Traceback", self.srv.output())

    def test_signature_of_another_connections_nonce_is_refused(self):
        first, _ = raw_connect(self.srv.port, lambda i: {"user": "a", "pass": "b"})
        _, got = raw_connect(self.srv.port, lambda i: {
            "nkey": public_key(), "sig": sign(first["nonce"])})
        self.assertEqual(got, AUTH_VIOLATION)

    @needs(nats is not None, "nats-py")
    def test_natspy_nkeys_seed(self):
        path = os.path.join(self.srv.tmp, "user.nk")
        with open(path, "wb") as f:
            f.write(SEED)

        async def go():
            nc = await nats.connect("nats://127.0.0.1:%d" % self.srv.port, nkeys_seed=path,
                                    allow_reconnect=False)
            try:
                return await roundtrip(nc)
            finally:
                await nc.close()
        self.assertEqual(run(go()), [b"hello"])


@needs(HAVE_GO215 and nkeys is not None, "nats-server 2.15 and nkeys")
class NonceBesideGoTest(unittest.TestCase):
    """INFO has a nonce only when nkey users exist, on both servers."""

    def info_keys(self, exe, conf):
        with ServerProcess(config=conf, exe=exe) as srv:
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            try:
                return read_info(sock)
            finally:
                sock.close()

    def test_nonce_only_with_nkey_users(self):
        with_nkeys = 'authorization { users = [ {nkey: "%s"} ] }\n' % public_key()
        passwords = 'authorization { users = [ {user: a, password: b} ] }\n'
        for exe in (None, GO215):
            self.assertIn("nonce", self.info_keys(exe, with_nkeys), exe)
            self.assertNotIn("nonce", self.info_keys(exe, passwords), exe)


# --- no_auth_user and allowed_connection_types ----------------------------------

class NoAuthUserTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = ServerProcess("-m", "-1", config=(
            'authorization { users = [ {user: alice, password: secret}, {user: bob, password: pw} ] }\n'
            'no_auth_user: alice\n'))

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def connz_users(self):
        import urllib.request
        url = "http://127.0.0.1:%d/connz?auth=1" % self.srv.monitor_port
        with urllib.request.urlopen(url, timeout=5) as r:
            return [c.get("authorized_user") for c in json.load(r)["connections"]]

    def test_no_credentials_is_the_no_auth_user(self):
        sock = socket.create_connection(("127.0.0.1", self.srv.port), timeout=5)
        try:
            info = read_info(sock)
            self.assertTrue(info["auth_required"])
            sock.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
            self.assertEqual(read_until(sock, b"PONG\r\n"), b"PONG\r\n")
            self.assertTrue(wait_for(lambda: self.connz_users() == ["alice"], 5),
                            self.connz_users())
        finally:
            sock.close()

    def test_wrong_credentials_are_still_refused(self):
        for connect in ({"user": "alice", "pass": "wrong"}, {"user": "nobody", "pass": "x"},
                        {"user": "bob"}, {"auth_token": "x"}):
            _, got = raw_connect(self.srv.port, lambda i, c=connect: c)
            self.assertEqual(got, AUTH_VIOLATION, connect)

    def test_other_users_log_in_as_themselves(self):
        _, got = raw_connect(self.srv.port, lambda i: {"verbose": False, "user": "bob", "pass": "pw"})
        self.assertEqual(got, b"PONG\r\n")

    @needs(nats is not None, "nats-py")
    def test_natspy_without_credentials(self):
        async def go():
            nc = await nats.connect("nats://127.0.0.1:%d" % self.srv.port, allow_reconnect=False)
            try:
                return await roundtrip(nc)
            finally:
                await nc.close()
        self.assertEqual(run(go()), [b"hello"])


class AllowedConnectionTypesTest(unittest.TestCase):

    def test_standard_client_of_a_websocket_only_user_is_refused(self):
        conf = ('authorization { users = [\n'
                '  {user: web, password: w, allowed_connection_types: ["WEBSOCKET", "MQTT"]},\n'
                '  {user: std, password: s, allowed_connection_types: ["STANDARD"]} ] }\n')
        with ServerProcess(config=conf) as srv:
            _, got = raw_connect(srv.port, lambda i: {"user": "web", "pass": "w"})
            self.assertEqual(got, AUTH_VIOLATION)
            _, got = raw_connect(srv.port, lambda i: {"verbose": False, "user": "std", "pass": "s"})
            self.assertEqual(got, b"PONG\r\n")


# --- TLS -----------------------------------------------------------------------------

class VerifyAndMapTest(unittest.TestCase):
    """The certificate names the user: email SAN, then DNS SAN, then the
    subject DN in RFC 2253 form (certificates from configs/certs/gen.sh)."""

    @classmethod
    def setUpClass(cls):
        cls.srv = ServerProcess("-m", "-1", config=(
            'tls { %s, ca_file: "configs/certs/ca.pem", verify_and_map: true }\n'
            'authorization { users = [ {user: "client@localhost"}, {user: "mapped.example.com"},\n'
            '  {user: "CN=client-dn,O=gnatsd.py test"}, {user: other, password: pw} ] }\n'
            % SERVER_TLS))

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_each_certificate_maps_to_its_user(self):
        for cert in ("client", "client-dns", "client-dn"):
            _, got = raw_connect(self.srv.port, lambda i: {"verbose": False}, client_ctx(cert))
            self.assertEqual(got, b"PONG\r\n", cert)

    def test_the_certificate_wins_over_connect_credentials(self):
        # a user named in CONNECT is ignored, a password is compared with the
        # mapped user's (none): refused, as nats-server 2.15
        _, got = raw_connect(self.srv.port, lambda i: {"verbose": False, "user": "other"},
                             client_ctx("client"))
        self.assertEqual(got, b"PONG\r\n")
        _, got = raw_connect(self.srv.port, lambda i: {"user": "other", "pass": "pw"},
                             client_ctx("client"))
        self.assertEqual(got, AUTH_VIOLATION)

    def test_unmapped_certificate_is_an_authorization_violation(self):
        conf = ('tls { %s, ca_file: "configs/certs/ca.pem", verify_and_map: true }\n'
                'authorization { users = [ {user: "someone@else"} ] }\n' % SERVER_TLS)
        with ServerProcess(config=conf) as srv:
            _, got = raw_connect(srv.port, lambda i: {}, client_ctx("client"))
            self.assertEqual(got, AUTH_VIOLATION)
            self.assertNotIn("Traceback", srv.output())


class AllowNonTLSTest(unittest.TestCase):

    CONF = 'allow_non_tls: true\ntls { %s }\n' % SERVER_TLS

    def test_plain_and_tls_clients_both_connect(self):
        with ServerProcess(config=self.CONF) as srv:
            info, got = raw_connect(srv.port, lambda i: {"verbose": False})
            self.assertEqual(got, b"PONG\r\n")
            self.assertTrue(info["tls_available"])
            self.assertFalse(info.get("tls_required"))
            _, got = raw_connect(srv.port, lambda i: {"verbose": False}, client_ctx())
            self.assertEqual(got, b"PONG\r\n")

    @needs(HAVE_GO215, "nats-server 2.15")
    def test_info_tls_fields_as_nats_server(self):
        fields = {}
        for exe in (None, GO215):
            with ServerProcess(config=self.CONF, exe=exe) as srv:
                sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                info = read_info(sock)
                sock.close()
            fields[exe] = {k: bool(info.get(k)) for k in
                           ("tls_available", "tls_required", "ssl_required", "tls_verify")}
        self.assertEqual(fields[None], fields[GO215])
        self.assertEqual(fields[None]["tls_available"], True)


def first_bytes(port, wait):
    """What a silent client receives within `wait` seconds (b"" if nothing)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.settimeout(wait)
        try:
            return sock.recv(4096)
        except socket.timeout:
            return b""
    finally:
        sock.close()


def tls_first_connect(port):
    """ClientHello first; answers the INFO read over TLS, then a PONG check."""
    sock = client_ctx().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                    server_hostname="localhost")
    try:
        info = read_info(sock)
        sock.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
        return info, read_until(sock, b"PONG\r\n")
    finally:
        sock.close()


class HandshakeFirstTest(unittest.TestCase):

    def test_no_info_before_the_handshake(self):
        conf = 'tls { %s, handshake_first: true }\n' % SERVER_TLS
        with ServerProcess(config=conf) as srv:
            self.assertEqual(first_bytes(srv.port, 0.5), b"")
            info, got = tls_first_connect(srv.port)
            self.assertTrue(info["tls_required"])
            self.assertEqual(got, b"PONG\r\n")

    def test_fallback_delay_then_plain_info(self):
        conf = 'tls { %s, handshake_first: "300ms" }\n' % SERVER_TLS
        with ServerProcess(config=conf) as srv:
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            try:
                start = time.monotonic()
                info = read_info(sock)
                self.assertGreaterEqual(time.monotonic() - start, 0.25)
                self.assertTrue(info["tls_required"])
                # then the usual TLS-after-INFO flow
                sock = client_ctx().wrap_socket(sock, server_hostname="localhost")
                sock.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
                self.assertEqual(read_until(sock, b"PONG\r\n"), b"PONG\r\n")
            finally:
                sock.close()
            # a client that starts TLS at once is served as with `true`
            _, got = tls_first_connect(srv.port)
            self.assertEqual(got, b"PONG\r\n")

    @needs(HAVE_GO215, "nats-server 2.15")
    def test_timing_as_nats_server(self):
        """Both servers: silent with `true`, INFO after the delay with a
        duration (well before the 2 s wait here)."""
        for exe in (None, GO215):
            for value, silent in (("true", True), ('"300ms"', False)):
                conf = 'tls { %s, handshake_first: %s }\n' % (SERVER_TLS, value)
                with ServerProcess(config=conf, exe=exe) as srv:
                    got = first_bytes(srv.port, 2.0)
                    self.assertEqual(got == b"", silent, (exe, value, got[:40]))

    @needs(nats is not None, "nats-py")
    def test_natspy_tls_handshake_first(self):
        conf = 'tls { %s, handshake_first: true }\n' % SERVER_TLS
        with ServerProcess(config=conf) as srv:
            async def go():
                nc = await nats.connect("tls://localhost:%d" % srv.port, tls=client_ctx(),
                                        tls_handshake_first=True, allow_reconnect=False)
                try:
                    return await roundtrip(nc)
                finally:
                    await nc.close()
            self.assertEqual(run(go()), [b"hello"])


# --- reload ------------------------------------------------------------------------

@needs(nkeys is not None, "the nkeys package (test dependency)")
class ReloadNkeysTest(unittest.TestCase):

    def test_nkey_users_rechecked_against_their_nonce(self):
        keep = 'authorization { users = [ {nkey: "%s"}, {user: a, password: b} ] }\n' % public_key()
        gone = 'authorization { users = [ {user: a, password: b} ] }\n'
        with ServerProcess(config=keep) as srv:
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            try:
                info = read_info(sock)
                sock.sendall(b"CONNECT " + json.dumps({
                    "verbose": False, "nkey": public_key(), "sig": sign(info["nonce"])}).encode()
                    + b"\r\nPING\r\n")
                self.assertEqual(read_until(sock, b"PONG\r\n"), b"PONG\r\n")
                # same nkey users, another credential changed: still in
                with open(srv.config_path, "w") as f:
                    f.write(keep.replace("password: b", "password: c"))
                srv.signal(signal.SIGHUP)
                self.assertTrue(srv.wait_log("Reloaded server configuration", 5))
                sock.sendall(b"PING\r\n")
                self.assertEqual(read_until(sock, b"PONG\r\n"), b"PONG\r\n")
                # the nkey user removed: closed with the violation
                with open(srv.config_path, "w") as f:
                    f.write(gone)
                srv.signal(signal.SIGHUP)
                got = read_until(sock, b"Violation'\r\n")
                self.assertEqual(got, AUTH_VIOLATION)
                self.assertIn("Reloaded: authorization nkey users", srv.output())
            finally:
                sock.close()


if __name__ == "__main__":
    unittest.main()
