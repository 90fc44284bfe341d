"""gnats.tls: contexts from Options, real handshakes over socket pairs,
clear errors for bad files and settings, the debug description line."""

import os
import re
import selectors
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import warnings

from gnats import tls
from gnats.options import Options
from tests.util import needs
from gnats.tls import (TLSConfigError, describe,
                       monitor_context, openssl_ciphers, route_contexts, server_context)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CERTS = os.path.join(ROOT, "configs", "certs")
OPENSSL = shutil.which("openssl")
TIMEOUT = 5.0


def cert(name: str) -> str:
    return os.path.join(CERTS, name)


def tls_opts(**kw) -> Options:
    base = dict(tls=True, tls_cert=cert("server-cert.pem"), tls_key=cert("server-key.pem"))
    base.update(kw)
    return Options(**base)


def client_ctx(name=None, ca="ca.pem", max_version=None) -> ssl.SSLContext:
    """A client like nats-py builds: verifies the server against our CA."""
    ctx = ssl.create_default_context(cafile=cert(ca))
    if name:
        ctx.load_cert_chain(cert(name + "-cert.pem"), cert(name + "-key.pem"))
    if max_version:
        ctx.maximum_version = max_version
    return ctx


class Handshake:
    """Server and client handshake on the two ends of a socket pair, then one
    round trip of application data. Records what each side saw, then closes
    everything: server/client are None on success or the exception hit;
    server_peer/client_peer the peer certificates; description describe()."""

    def __init__(self, server_ctx, client_ctx, server_hostname="localhost"):
        a, b = socket.socketpair()
        for s in (a, b):
            s.settimeout(TIMEOUT)
        self.server = self.client = None
        self.server_peer = self.client_peer = self.description = None
        self.server_read = self.client_read = None
        t = threading.Thread(target=self._serve, args=(server_ctx, a), daemon=True)
        t.start()
        conn = None
        try:
            conn = client_ctx.wrap_socket(b, server_hostname=server_hostname)
            self.client_peer = conn.getpeercert()
            conn.sendall(b"PING\r\n")
            self.client_read = conn.recv(100)
        except (OSError, ssl.SSLError) as e:
            self.client = e
        finally:
            (conn or b).close()
        t.join(TIMEOUT)
        assert not t.is_alive(), "server side of the handshake hung"

    def _serve(self, ctx, sock):
        conn = None
        try:
            conn = ctx.wrap_socket(sock, server_side=True)
            self.server_peer = conn.getpeercert()
            self.description = describe(conn)
            self.server_read = conn.recv(100)
            conn.sendall(b"PONG\r\n")
        except (OSError, ssl.SSLError) as e:
            self.server = e
        finally:
            (conn or sock).close()

    @property
    def ok(self) -> bool:
        return self.server is None and self.client is None \
            and self.server_read == b"PING\r\n" and self.client_read == b"PONG\r\n"


def common_name(cert) -> str:
    return dict(x[0] for x in cert["subject"])["commonName"]


class TestClientPort(unittest.TestCase):
    def test_tls_without_verify(self):
        for name in (None, "client", "client-expired", "client-wrongca"):
            h = Handshake(server_context(tls_opts()), client_ctx(name))
            self.assertTrue(h.ok, (name, h.server, h.client))
            self.assertIsNone(h.server_peer)

    def test_minimum_tls12_and_server_settings(self):
        ctx = server_context(tls_opts())
        self.assertEqual(ctx.minimum_version, ssl.TLSVersion.TLSv1_2)
        self.assertEqual(ctx.verify_mode, ssl.CERT_NONE)
        self.assertTrue(ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE)
        self.assertTrue(ctx.options & ssl.OP_NO_COMPRESSION)
        names = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
        self.assertEqual(names[:2], ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"])
        self.assertTrue(all("ECDHE" in n for n in names), names)

    def test_old_tls_refused(self):
        c = client_ctx()
        try:
            with warnings.catch_warnings():  # deprecated: that is the point
                warnings.simplefilter("ignore", DeprecationWarning)
                c.minimum_version = ssl.TLSVersion.TLSv1
                c.maximum_version = ssl.TLSVersion.TLSv1_1
        except (ValueError, ssl.SSLError):
            self.skipTest("this OpenSSL cannot even offer TLS 1.1")
        h = Handshake(server_context(tls_opts()), c)
        self.assertIsInstance(h.server, ssl.SSLError)
        self.assertFalse(h.ok)

    def test_verify_accepts_good_client(self):
        ctx = server_context(tls_opts(tls_verify=True, tls_ca_cert=cert("ca.pem")))
        self.assertEqual(ctx.verify_mode, ssl.CERT_REQUIRED)
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            h = Handshake(ctx, client_ctx("client", max_version=version))
            self.assertTrue(h.ok, (h.server, h.client))
            self.assertEqual(common_name(h.server_peer), "client")

    def assert_refused(self, client, reason):
        ctx = server_context(tls_opts(tls_verify=True, tls_ca_cert=cert("ca.pem")))
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            h = Handshake(ctx, client_ctx(client, max_version=version))
            self.assertFalse(h.ok)
            self.assertIsInstance(h.server, ssl.SSLError, (client, version))
            self.assertRegex(str(h.server), reason)

    def test_verify_refuses_client_without_cert(self):
        self.assert_refused(None, "(?i)peer did not return a certificate|certificate required")

    def test_verify_refuses_expired_client(self):
        self.assert_refused("client-expired", "(?i)certificate has expired")

    def test_verify_refuses_wrong_ca(self):
        self.assert_refused("client-wrongca", "(?i)certificate verify failed")

    def test_ca_without_verify_does_not_ask_for_certs(self):
        h = Handshake(server_context(tls_opts(tls_ca_cert=cert("ca.pem"))), client_ctx())
        self.assertTrue(h.ok)

    def test_server_cert_names(self):
        # The server certificate is valid for localhost and 127.0.0.1.
        for host in ("localhost", "127.0.0.1"):
            h = Handshake(server_context(tls_opts()), client_ctx(), server_hostname=host)
            self.assertTrue(h.ok, (host, h.client))
        h = Handshake(server_context(tls_opts()), client_ctx(), server_hostname="example.com")
        self.assertIsInstance(h.client, ssl.SSLCertVerificationError)

    def test_describe_like_the_seed_log(self):
        h = Handshake(server_context(tls_opts()), client_ctx(max_version=ssl.TLSVersion.TLSv1_2))
        self.assertEqual(h.description,
                         "TLS version 1.2, cipher suite TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
        h = Handshake(server_context(tls_opts()), client_ctx())
        self.assertRegex(h.description,
                         r"^TLS version 1\.3, cipher suite TLS_(AES_128_GCM_SHA256|"
                         r"AES_256_GCM_SHA384|CHACHA20_POLY1305_SHA256)$")

    def test_configured_cipher_suites(self):
        ctx = server_context(tls_opts(tls_cipher_suites=["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"]))
        h = Handshake(ctx, client_ctx(max_version=ssl.TLSVersion.TLSv1_2))
        self.assertEqual(h.description,
                         "TLS version 1.2, cipher suite TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384")
        # A client that offers none of them is refused.
        c = client_ctx(max_version=ssl.TLSVersion.TLSv1_2)
        c.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
        self.assertFalse(Handshake(ctx, c).ok)

    def test_nonblocking_handshake(self):
        """The way the reactor drives it: non-blocking, one step per event."""
        ctx = server_context(tls_opts(tls_verify=True, tls_ca_cert=cert("ca.pem")))
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        a.setblocking(False)
        conn = ctx.wrap_socket(a, server_side=True, do_handshake_on_connect=False)
        self.addCleanup(conn.close)
        b.settimeout(TIMEOUT)
        result = {}

        def client():
            try:
                s = client_ctx("client").wrap_socket(b, server_hostname="localhost")
                s.sendall(b"CONNECT {}\r\n")
                result["client"] = s
            except (OSError, ssl.SSLError) as e:
                result["client"] = e

        # Nothing has arrived yet: the first step must ask for more input
        # instead of blocking (the client starts only after it).
        with self.assertRaises(ssl.SSLWantReadError):
            conn.do_handshake()
        t = threading.Thread(target=client, daemon=True)
        t.start()
        sel = selectors.DefaultSelector()
        self.addCleanup(sel.close)
        sel.register(conn, selectors.EVENT_READ)
        deadline = time.monotonic() + TIMEOUT
        steps = 0
        while True:
            self.assertLess(time.monotonic(), deadline, "handshake did not finish")
            try:
                conn.do_handshake()
                break
            except ssl.SSLWantReadError:
                sel.modify(conn, selectors.EVENT_READ)
            except ssl.SSLWantWriteError:
                sel.modify(conn, selectors.EVENT_WRITE)
            sel.select(0.5)
            steps += 1
        self.assertGreater(steps, 0)
        self.assertTrue(describe(conn).startswith("TLS version 1."))
        data = b""
        while not data.endswith(b"\r\n"):
            self.assertLess(time.monotonic(), deadline)
            sel.select(0.5)
            try:
                data += conn.recv(100)
            except ssl.SSLWantReadError:
                pass
        self.assertEqual(data, b"CONNECT {}\r\n")
        t.join(TIMEOUT)
        self.assertIsInstance(result.get("client"), ssl.SSLSocket)
        result["client"].close()


class TestRoutes(unittest.TestCase):
    def route_opts(self, **kw):
        base = dict(cluster_tls=True, cluster_tls_cert=cert("srva-cert.pem"),
                    cluster_tls_key=cert("srva-key.pem"), cluster_tls_ca_cert=cert("ca.pem"))
        base.update(kw)
        return Options(**base)

    def test_both_directions_verified(self):
        a_server, a_client = route_contexts(self.route_opts())
        b_server, b_client = route_contexts(self.route_opts(
            cluster_tls_cert=cert("srvb-cert.pem"), cluster_tls_key=cert("srvb-key.pem")))
        for server, client, peer in ((a_server, b_client, "srvb"), (b_server, a_client, "srva")):
            self.assertEqual(server.verify_mode, ssl.CERT_REQUIRED)
            self.assertEqual(client.verify_mode, ssl.CERT_REQUIRED)
            for host in ("127.0.0.1", "localhost"):
                h = Handshake(server, client, server_hostname=host)
                self.assertTrue(h.ok, (h.server, h.client))
                self.assertEqual(common_name(h.server_peer), peer)
                self.assertNotEqual(common_name(h.client_peer), peer)

    def test_route_without_cert_refused(self):
        server, _ = route_contexts(self.route_opts())
        h = Handshake(server, client_ctx(None))
        self.assertFalse(h.ok)
        self.assertIsInstance(h.server, ssl.SSLError)

    def test_route_from_other_ca_refused(self):
        server, _ = route_contexts(self.route_opts())
        h = Handshake(server, client_ctx("client-wrongca"))
        self.assertIsInstance(h.server, ssl.SSLError)

    def test_dialler_checks_the_host_name(self):
        server, client = route_contexts(self.route_opts())
        h = Handshake(server, client, server_hostname="example.com")
        self.assertIsInstance(h.client, ssl.SSLCertVerificationError)

    def test_dialler_refuses_server_of_other_ca(self):
        server = tls.make_server_context(cert("client-wrongca-cert.pem"), cert("client-wrongca-key.pem"))
        _, client = route_contexts(self.route_opts())
        h = Handshake(server, client)
        self.assertIsInstance(h.client, ssl.SSLCertVerificationError)


class TestMonitor(unittest.TestCase):
    def test_https_never_asks_for_client_certs(self):
        ctx = monitor_context(tls_opts(tls_verify=True, tls_ca_cert=cert("ca.pem")))
        self.assertEqual(ctx.verify_mode, ssl.CERT_NONE)
        self.assertTrue(Handshake(ctx, client_ctx()).ok)

    def test_needs_cert_and_key(self):
        with self.assertRaisesRegex(TLSConfigError, "^TLS cert and key required for HTTPS$"):
            monitor_context(Options())


class TestConfigErrors(unittest.TestCase):
    def setUp(self):
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        self.dir = d.name

    def write(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(data)
        return path

    def assert_error(self, pattern, **kw):
        with self.assertRaises(TLSConfigError) as cm:
            server_context(tls_opts(**kw))
        message = str(cm.exception)
        self.assertRegex(message, pattern)
        self.assertNotIn("\n", message)
        return message

    def test_missing_settings(self):
        self.assert_error("^TLS Server certificate must be present and valid$", tls_cert="")
        self.assert_error("^TLS Server private key must be present and valid$", tls_key="")

    def test_missing_files_are_named(self):
        self.assert_error("TLS certificate file /nonexistent/c.pem: No such file",
                          tls_cert="/nonexistent/c.pem")
        self.assert_error("TLS private key file /nonexistent/k.pem: No such file",
                          tls_key="/nonexistent/k.pem")
        self.assert_error("TLS CA file /nonexistent/ca.pem: No such file",
                          tls_verify=True, tls_ca_cert="/nonexistent/ca.pem")
        self.assert_error("TLS CA file /nonexistent/ca.pem: No such file",
                          tls_ca_cert="/nonexistent/ca.pem")

    def test_junk_files_are_named(self):
        junk = self.write("junk.pem", "not a certificate\n")
        self.assert_error("TLS certificate file %s: no PEM certificate found" % re.escape(junk),
                          tls_cert=junk)
        self.assert_error("TLS private key file %s: no PEM private key found" % re.escape(junk),
                          tls_key=junk)
        self.assert_error("TLS CA file %s: no PEM certificate found" % re.escape(junk),
                          tls_verify=True, tls_ca_cert=junk)
        self.assert_error("TLS private key file .*server-cert.pem: no PEM private key",
                          tls_key=cert("server-cert.pem"))

    def test_corrupt_pem(self):
        bad = self.write("bad.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        self.assert_error("error loading TLS certificate %s" % re.escape(bad), tls_cert=bad)
        self.assert_error("TLS CA file %s" % re.escape(bad), tls_verify=True, tls_ca_cert=bad)

    def test_key_does_not_match(self):
        self.assert_error("TLS private key file .*client-key.pem does not match certificate "
                          ".*server-cert.pem", tls_key=cert("client-key.pem"))

    @needs(OPENSSL, "openssl not installed")
    def test_encrypted_key_is_refused_without_prompting(self):
        enc = os.path.join(self.dir, "enc-key.pem")
        subprocess.run([OPENSSL, "pkey", "-in", cert("server-key.pem"), "-aes256",
                        "-passout", "pass:secret", "-out", enc], check=True, timeout=30,
                       capture_output=True)
        self.assert_error("TLS private key file %s: encrypted private keys are not supported"
                          % re.escape(enc), tls_key=enc)

    def test_cipher_suites(self):
        self.assert_error("^unrecognized cipher FOO$", tls_cipher_suites=["FOO"])
        self.assert_error("^none of the cipher suites TLS_RSA_WITH_RC4_128_SHA is supported",
                          tls_cipher_suites=["TLS_RSA_WITH_RC4_128_SHA"])
        # TLS 1.3 names are accepted (always on); OpenSSL names are tolerated.
        server_context(tls_opts(tls_cipher_suites=["TLS_AES_128_GCM_SHA256"]))
        server_context(tls_opts(tls_cipher_suites=["ECDHE-RSA-AES128-GCM-SHA256"]))

    def test_openssl_ciphers(self):
        self.assertEqual(openssl_ciphers(["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                                          "TLS_AES_256_GCM_SHA384",
                                          "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
                                          "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"]),
                         "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305")
        with self.assertRaises(TLSConfigError):
            openssl_ciphers([None])

    @needs(OPENSSL, "openssl not installed")
    def test_cipher_table_agrees_with_openssl(self):
        out = subprocess.run([OPENSSL, "ciphers", "-stdname", "ALL:@SECLEVEL=0"],
                             capture_output=True, text=True, timeout=30).stdout
        standard = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1] == "-":
                standard[parts[0]] = parts[2]
        checked = 0
        for iana, openssl_name in tls.CIPHER_SUITES.items():
            for std in (iana, iana + "_SHA256"):
                if std in standard:
                    self.assertEqual(standard[std], openssl_name, iana)
                    checked += 1
        self.assertGreaterEqual(checked, 15)


class TestCertificates(unittest.TestCase):
    """The committed certificates are what the tests expect."""

    @needs(OPENSSL, "openssl not installed")
    def test_validity(self):
        for name in ("ca.pem", "wrongca.pem", "server-cert.pem", "client-cert.pem",
                     "client-wrongca-cert.pem", "srva-cert.pem", "srvb-cert.pem"):
            r = subprocess.run([OPENSSL, "x509", "-in", cert(name), "-noout", "-checkend",
                                str(365 * 24 * 3600)], capture_output=True, timeout=30)
            self.assertEqual(r.returncode, 0, "%s expires within a year: run configs/certs/gen.sh"
                             % name)
        r = subprocess.run([OPENSSL, "x509", "-in", cert("client-expired-cert.pem"), "-noout",
                            "-checkend", "0"], capture_output=True, timeout=30)
        self.assertNotEqual(r.returncode, 0, "client-expired-cert.pem is not expired")


class TestHelp(unittest.TestCase):
    def test_help_mentions_options(self):
        for word in ("--tls ", "--tlscert", "--tlskey", "--tlsverify", "--tlscacert",
                     "tls {", "cert_file", "key_file", "ca_file", "verify",
                     "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"):
            self.assertIn(word, tls.TLS_HELP)


if __name__ == "__main__":
    unittest.main()
