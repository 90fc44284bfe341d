"""Reload (SIGHUP) and security: issue 11's D1, D2, D5 and M3.

Real `gnatsd.py` processes with config files in temp dirs, SIGHUP, raw
sockets. Each test names the audit finding it guards against
(/work/shared/findings/SECURITY-AUDIT.md).
"""

import json
import os
import re
import shutil
import signal
import socket
import ssl
import tempfile
import time
import unittest

from tests.util import ROOT, RawClient, ServerProcess, free_port

from tools import stresslib as stress

CERTS = os.path.join(ROOT, "configs", "certs")
AUTH_VIOLATION = b"-ERR 'Authorization Violation'"

try:
    import bcrypt
except ImportError:     # the D5 test needs it
    bcrypt = None


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def reload(srv, text, done="Reloaded server configuration|Failed to reload"):
    """Write the config, SIGHUP, and wait until this reload's outcome
    (applied or refused) is in the log."""
    write(srv.config_path, text)
    srv.reloads = getattr(srv, "reloads", 0) + 1
    srv.signal(signal.SIGHUP)
    want = srv.reloads
    rx = re.compile(done)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if len(rx.findall(srv.output())) >= want:
            return True
        time.sleep(0.05)
    return False


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


class ServerCase(unittest.TestCase):
    def server(self, conf, *args):
        srv = ServerProcess(*args, config=conf)
        self.addCleanup(srv.stop)
        return srv

    def raw(self, port, connect=b'{"verbose":false,"pedantic":false}'):
        c = RawClient(port, connect)
        self.addCleanup(c.close)
        return c


# --- D1 ----------------------------------------------------------------------

class TestD1AuthTurnedOn(ServerCase):
    def test_client_without_connect_is_closed(self):
        srv = self.server("")
        a = self.raw(srv.port, connect=None)       # INFO read, nothing sent
        self.assertTrue(reload(srv, "authorization { user: alice, password: s3cret }\n"))
        self.assertEqual(a.read_line(), AUTH_VIOLATION)
        self.assertTrue(a.closed())

    def test_subscriber_without_connect_gets_nothing(self):
        srv = self.server("")
        a = self.raw(srv.port, connect=None)
        a.send(b"SUB > 1\r\nPING\r\n")
        self.assertEqual(a.read_until(b"PONG\r\n"), b"+OK\r\nPONG\r\n")
        self.assertTrue(reload(srv, "authorization { user: alice, password: s3cret }\n"))
        c = self.raw(srv.port, b'{"verbose":false,"user":"alice","pass":"s3cret"}')
        c.send(b"PUB payroll 6\r\nsecret\r\n")
        self.assertEqual(c.ping(), b"")
        self.assertEqual(a.read_line(), AUTH_VIOLATION)
        self.assertTrue(a.closed())
        self.assertNotIn(b"secret", a.buf)

    def test_connected_client_with_no_credentials_is_closed(self):
        srv = self.server("")
        a = self.raw(srv.port)
        self.assertEqual(a.ping(), b"")
        self.assertTrue(reload(srv, "authorization { token: t0k }\n"))
        self.assertEqual(a.read_line(), AUTH_VIOLATION)
        self.assertTrue(a.closed())
        ok = self.raw(srv.port, b'{"verbose":false,"auth_token":"t0k"}')
        self.assertEqual(ok.ping(), b"")

    def test_connecting_client_checked_against_new_auth(self):
        # auth on before and after: a client that has not sent CONNECT is
        # checked against the credentials in force when its CONNECT comes
        srv = self.server("authorization { user: a, password: b, timeout: 5 }\n")
        pending = self.raw(srv.port, connect=None)
        self.assertTrue(reload(srv, "authorization { user: a, password: c, timeout: 5 }\n"))
        pending.send(b'CONNECT {"verbose":false,"user":"a","pass":"b"}\r\nPING\r\n')
        self.assertEqual(pending.read_line(), AUTH_VIOLATION)
        good = self.raw(srv.port, connect=None)
        good.send(b'CONNECT {"verbose":false,"user":"a","pass":"c"}\r\n')
        self.assertEqual(good.ping(), b"")


# --- D2 ----------------------------------------------------------------------

ROUTE_PEER = (b'CONNECT {"user":"r","pass":"%s","name":"NFAKE%d","cluster":"c1"}\r\n'
              b'INFO {"server_id":"NFAKE%d","cluster":"c1","host":"127.0.0.1","port":1}\r\n'
              b'RS+ $G >\r\nPING\r\n')


class TestD2ClusterAuthorization(ServerCase):
    def conf(self, cport, pw):
        return 'cluster { name: c1, listen: 127.0.0.1:%d, authorization { user: r, password: %s } }\n' % (cport, pw)

    def peer(self, cport, pw, n):
        r = RawClient(cport, connect=None)
        self.addCleanup(r.close)
        r.send(ROUTE_PEER % (pw, n, n))
        return r

    def test_route_password_rotation(self):
        cport = free_port()
        srv = self.server(self.conf(cport, "oldpw"))
        kept = self.peer(cport, b"oldpw", 1)
        self.assertEqual(kept.read_until(b"PONG\r\n")[-6:], b"PONG\r\n")
        self.assertTrue(reload(srv, self.conf(cport, "newpw")))
        self.assertIn("Reloaded: cluster", srv.output())
        # the accepted route that used the old password is closed
        self.assertIn(AUTH_VIOLATION, kept.read_until(AUTH_VIOLATION))
        self.assertTrue(kept.closed())
        old = self.peer(cport, b"oldpw", 2)
        self.assertIn(AUTH_VIOLATION, old.read_until(AUTH_VIOLATION))
        new = self.peer(cport, b"newpw", 3)
        new.read_until(b"PONG\r\n")
        c = self.raw(srv.port)
        c.send(b"PUB secret.x 5\r\nhello\r\n")
        self.assertEqual(c.ping(), b"")
        self.assertIn(b"RMSG $G secret.x 5\r\nhello\r\n", new.read_until(b"hello\r\n"))


class TestD2ClusterTLS(ServerCase):
    def test_cluster_tls_turned_on(self):
        cport = free_port()
        base = "cluster { name: c1, listen: 127.0.0.1:%d %%s }\n" % cport
        srv = self.server(base % "")
        plain = RawClient(cport, connect=None)
        self.addCleanup(plain.close)
        self.assertTrue(plain.info.startswith(b"INFO "))        # plain INFO first
        tls = (', tls { cert_file: "%s", key_file: "%s", ca_file: "%s" }'
               % (os.path.join(CERTS, "srva-cert.pem"), os.path.join(CERTS, "srva-key.pem"),
                  os.path.join(CERTS, "ca.pem")))
        self.assertTrue(reload(srv, base % tls))
        self.assertIn("Reloaded: cluster", srv.output())
        # the handshake now comes first: no plain INFO, and a plain CONNECT fails
        s = socket.create_connection(("127.0.0.1", cport), timeout=5)
        self.addCleanup(s.close)
        s.settimeout(0.5)
        with self.assertRaises(socket.timeout):
            s.recv(10)
        s.settimeout(5)
        s.sendall(ROUTE_PEER % (b"x", 9, 9))
        got = b""
        try:
            while True:
                d = s.recv(4096)
                if not d:
                    break
                got += d
        except OSError:
            pass
        self.assertNotIn(b"PONG", got)
        # a TLS peer with a certificate of the same CA is served
        ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.pem"))
        ctx.load_cert_chain(os.path.join(CERTS, "srvb-cert.pem"), os.path.join(CERTS, "srvb-key.pem"))
        t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", cport), timeout=5),
                            server_hostname="127.0.0.1")
        self.addCleanup(t.close)
        self.assertTrue(t.recv(4096).startswith(b"INFO "))


class TestD2TLS(ServerCase):
    def tls_conf(self, d, verify):
        return ('tls { cert_file: "%s", key_file: "%s", ca_file: "%s", verify: %s }\n'
                % (os.path.join(d, "cert.pem"), os.path.join(d, "key.pem"),
                   os.path.join(CERTS, "ca.pem"), "true" if verify else "false"))

    def certs(self, name):
        d = tempfile.mkdtemp(prefix="reload-tls-")
        self.addCleanup(shutil.rmtree, d, True)
        self.use(d, name)
        return d

    def use(self, d, name):
        shutil.copy(os.path.join(CERTS, name + "-cert.pem"), os.path.join(d, "cert.pem"))
        shutil.copy(os.path.join(CERTS, name + "-key.pem"), os.path.join(d, "key.pem"))

    def handshake(self, port, client_cert=False):
        """(INFO dict, peer certificate subject CN, reply to PING or the
        handshake error)."""
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            info = json.loads(s.recv(4096).split(b" ", 1)[1])
            ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.pem"))
            if client_cert:
                ctx.load_cert_chain(os.path.join(CERTS, "client-cert.pem"),
                                    os.path.join(CERTS, "client-key.pem"))
            try:
                t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
                t.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
                reply = t.recv(100)
                cn = dict(x[0] for x in t.getpeercert()["subject"])["commonName"]
                t.close()
            except (ssl.SSLError, OSError) as e:
                return info, None, e
            return info, cn, reply
        finally:
            s.close()

    def test_verify_turned_on(self):
        d = self.certs("server")
        srv = self.server(self.tls_conf(d, False))
        info, _, reply = self.handshake(srv.port)
        self.assertEqual((info["tls_verify"], reply), (False, b"PONG\r\n"))
        self.assertTrue(reload(srv, self.tls_conf(d, True)))
        self.assertIn("Reloaded: tls = enabled", srv.output())
        info, _, reply = self.handshake(srv.port)
        self.assertTrue(info["tls_verify"])
        self.assertIsInstance(reply, (ssl.SSLError, OSError))     # no client certificate
        info, _, reply = self.handshake(srv.port, client_cert=True)
        self.assertEqual(reply, b"PONG\r\n")

    def test_certificate_rotation(self):
        d = self.certs("srva")
        conf = self.tls_conf(d, False)
        srv = self.server(conf)
        self.assertEqual(self.handshake(srv.port)[1], "srva")
        self.use(d, "srvb")                 # same file names, new content
        self.assertTrue(reload(srv, conf))
        self.assertIn("Reloaded: tls = enabled", srv.output())
        self.assertEqual(self.handshake(srv.port)[1:], ("srvb", b"PONG\r\n"))

    def test_bad_certificate_refused_keeps_running_config(self):
        d = self.certs("server")
        srv = self.server(self.tls_conf(d, False) + "max_payload: 1000\n")
        write(os.path.join(d, "key.pem"), "not a key\n")
        self.assertTrue(reload(srv, self.tls_conf(d, True) + "max_payload: 2000\n"))
        self.assertIn("Failed to reload server configuration: TLS private key file", srv.output())
        info, _, reply = self.handshake(srv.port)
        self.assertEqual((info["max_payload"], info["tls_verify"], reply), (1000, False, b"PONG\r\n"))


class TestD2Refusals(ServerCase):
    def test_refused_option_applies_nothing(self):
        srv = self.server("server_name: a\nmax_payload: 1000\n")
        self.assertTrue(reload(srv, "server_name: b\nmax_payload: 2000\n"))
        self.assertIn("[ERR] Failed to reload server configuration: "
                      "config reload not supported for ServerName: old=a, new=b", srv.output())
        self.assertNotIn("Reloaded", srv.output())
        c = self.raw(srv.port)
        self.assertEqual(json.loads(c.info[5:])["max_payload"], 1000)

    def test_cluster_port_refused(self):
        c1, c2 = free_port(), free_port()
        srv = self.server("cluster { name: c1, listen: 127.0.0.1:%d }\n" % c1)
        self.assertTrue(reload(srv, "cluster { name: c1, listen: 127.0.0.1:%d }\n" % c2))
        self.assertIn("config reload not supported for cluster port: old=%d, new=%d" % (c1, c2),
                      srv.output())

    def test_apply_options_in_process(self):
        # the embedding API: refusal names the field as nats-server does and
        # leaves the running options in place
        from gnats.log import Logger
        from gnats.options import Options
        from gnats.reload import ReloadError
        from gnats.server import Server
        sink = open(os.devnull, "w")
        self.addCleanup(sink.close)
        log = Logger(stream=sink)
        srv = Server(Options(port=4333), log)
        new = Options(port=4334, max_payload=2000)
        with self.assertRaises(ReloadError) as e:
            srv.apply_options(new)
        self.assertEqual(str(e.exception), "config reload not supported for Port: old=4333, new=4334")
        self.assertEqual((srv.opts.port, srv.max_payload), (4333, 1024 * 1024))
        srv.apply_options(Options(port=4333, max_payload=2000, lame_duck_duration=120.0))
        self.assertEqual(srv.max_payload, 2000)
        with self.assertRaises(ReloadError) as e:
            srv.apply_options(Options(port=4333, max_payload=2000, lame_duck_duration=30.0))
        self.assertEqual(str(e.exception), "config reload not supported for "
                                           "LameDuckDuration: old=2m0s, new=30s")

    def test_changes_logged_as_nats_server(self):
        srv = self.server("max_connections: 10\n")
        a, b = self.raw(srv.port), self.raw(srv.port)
        self.assertEqual((a.ping(), b.ping()), (b"", b""))
        self.assertTrue(reload(srv, 'max_connections: 1\nping_interval: "10s"\ndebug: true\n'))
        out = srv.output()
        for line in ("Reloaded: debug = true", "Reloaded: max_connections = 1",
                     "Reloaded: ping_interval = 10s",
                     "Closed 1 connections to fall within max_connections"):
            self.assertIn(line, out)
        closed = [c for c in (a, b) if c.closed(1.0)]
        self.assertEqual(len(closed), 1)


class TestD2Routes(ServerCase):
    def test_routes_added_and_removed(self):
        ca, cb = free_port(), free_port()
        a = self.server("cluster { name: c1, listen: 127.0.0.1:%d }\n" % ca)
        b = self.server("cluster { name: c1, listen: 127.0.0.1:%d }\n" % cb)
        route = "nats://127.0.0.1:%d" % cb
        self.assertTrue(reload(a, 'cluster { name: c1, listen: 127.0.0.1:%d, routes: ["%s"] }\n'
                               % (ca, route)))
        self.assertIn("Reloaded: cluster routes", a.output())
        # interest crosses the new route: a subscriber on B hears A
        sub = self.raw(b.port)
        sub.send(b"SUB x 1\r\n")
        sub.ping()
        pub = self.raw(a.port)

        def crossed():
            pub.send(b"PUB x 2\r\nhi\r\n")
            pub.ping()
            try:
                return sub.read_line(0.2) == b"MSG x 1 2"
            except TimeoutError:
                return False
        self.assertTrue(wait_for(crossed))
        self.assertTrue(reload(a, "cluster { name: c1, listen: 127.0.0.1:%d }\n" % ca))
        self.assertTrue(a.wait_log("Removed route nats://127.0.0.1:%d" % cb))
        self.assertTrue(a.wait_log("Route Removed"))
        time.sleep(1.5)                 # longer than the first redial delay
        self.assertEqual(a.output().count("Route connection created"), 1)


# --- D5 ----------------------------------------------------------------------

@unittest.skipIf(bcrypt is None, "needs bcrypt")
class TestD5NoStall(ServerCase):
    USERS = 8

    def conf(self, passwords):
        users = ", ".join('{user: u%d, password: "%s"}' % (
            i, bcrypt.hashpw(pw, bcrypt.gensalt(11)).decode()) for i, pw in enumerate(passwords))
        # cost-11 checks on a loaded 2-core machine can outlast the default
        # 2 s auth timeout; the stall measured here is the PINGs', not theirs
        return "authorization { timeout: 10, users = [ %s ] }\n" % users

    def test_ping_during_reload_with_rotated_bcrypt_users(self):
        pws = [b"pw%d" % i for i in range(self.USERS)]
        srv = self.server(self.conf(pws))
        cs = []
        for i, pw in enumerate(pws):
            c = RawClient(srv.port, b'{"verbose":false,"user":"u%d","pass":"%s"}' % (i, pw), timeout=10)
            self.addCleanup(c.close)
            self.assertEqual(c.ping(), b"")
            cs.append(c)
        # same passwords with new salts, except u7's which changed
        text = self.conf(pws[:-1] + [b"changed"])
        write(srv.config_path, text)
        srv.signal(signal.SIGHUP)
        worst, t0 = 0.0, time.monotonic()
        while time.monotonic() - t0 < 3:
            t = time.monotonic()
            self.assertEqual(cs[0].ping(), b"")
            worst = max(worst, time.monotonic() - t)
            time.sleep(0.02)
        print("\nD5: worst PING round trip during the reload: %.3f s" % worst)
        self.assertTrue(srv.wait_log("Reloaded server configuration"))
        # Re-checking on the reactor stalled it for all 8 checks in a row
        # (>= 8 x 0.12 s here; the audit saw 1.45-2.46 s). In the pool a
        # PING typically waits 1-50 ms; 0.3 s was exceeded once in ~10 runs
        # (0.46 s) while other suites loaded this shared 2-core machine.
        self.assertLess(worst, 0.5)
        self.assertEqual(cs[-1].read_line(), AUTH_VIOLATION)
        self.assertTrue(cs[-1].closed())
        for c in cs[:-1]:
            self.assertEqual(c.ping(), b"")


# --- M3 ----------------------------------------------------------------------

class TestM3SecondConnect(ServerCase):
    CONF = "authorization { users = [ {user: alice, password: a1}, {user: bob, password: b1} ] }\n"

    def test_wrong_second_connect_closes(self):
        srv = self.server(self.CONF)
        c = self.raw(srv.port, b'{"verbose":false,"user":"alice","pass":"a1"}')
        self.assertEqual(c.ping(), b"")
        c.send(b'CONNECT {"verbose":false,"user":"bob","pass":"WRONG"}\r\nPING\r\n')
        self.assertEqual(c.read_line(), AUTH_VIOLATION)
        self.assertTrue(c.closed())

    def test_right_second_connect_passes(self):
        srv = self.server(self.CONF)
        c = self.raw(srv.port, b'{"verbose":false,"user":"alice","pass":"a1"}')
        self.assertEqual(c.ping(), b"")
        c.send(b'CONNECT {"verbose":true,"user":"bob","pass":"b1"}\r\n')
        self.assertEqual(c.read_line(), b"+OK")
        self.assertEqual(c.ping(), b"")


# --- the reload-under-load campaign, CI size ------------------------------------

class TestReloadUnderLoad(unittest.TestCase):
    def test_campaign_ci(self):
        rep = stress.reload_under_load(seconds=4.0)
        print("\n" + rep.text())
        self.assertEqual(rep.failures, [])
        self.assertEqual(rep.figures["lost"], 0)
        self.assertTrue(rep.figures["intruder attempts / through"].endswith(" / 0"))
        self.assertGreaterEqual(rep.figures["reloads"], 5)


if __name__ == "__main__":
    unittest.main()
