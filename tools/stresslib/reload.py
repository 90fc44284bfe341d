"""Reload under load (`reload`, issue 11: D1, D2, D5): SIGHUP every 300 ms
(users, route password, TLS certificate and verify) while TLS clients
publish, reconnect and intrude.
"""

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

from tests import util
from tests.util import free_port
from .common import CERTS, Report, server_health, start_server, wait_for


AUTH_VIOLATION = b"-ERR 'Authorization Violation'"


class _Line:
    """Blocking line reader over a (TLS) socket, for the reload campaign."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError("closed; have %r" % self.buf[:100])
            self.buf += d
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError("closed")
            self.buf += d
        d, self.buf = self.buf[:n], self.buf[n:]
        return d


def nats_tls(port, connect, cert=True, timeout=5.0):
    """INFO in clear, TLS (with the test client certificate unless `cert` is
    False), then `CONNECT connect` and PING unless connect is None.
    Returns (reader, first reply line) or raises ssl.SSLError / OSError."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    r = _Line(s)
    try:
        r.line()
        ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.pem"))
        if cert:
            ctx.load_cert_chain(os.path.join(CERTS, "client-cert.pem"), os.path.join(CERTS, "client-key.pem"))
        r.sock = ctx.wrap_socket(s, server_hostname="127.0.0.1")
        if connect is None:
            return r, b""
        r.sock.sendall(b"CONNECT " + connect + b"\r\nPING\r\n")
        return r, r.line()
    except BaseException:
        r.sock.close()
        s.close()
        raise


def first_reply(port, connect, cert=True):
    """nats_tls's first reply line, b"" when refused or closed; closes."""
    try:
        r, first = nats_tls(port, connect, cert)
    except (OSError, EOFError):
        return b""
    r.sock.close()
    return first


def _reload_conf(d, k, alice_hash):
    """Generation k: rotated server certificate (srva/srvb, same CA), client
    verify on for odd k, user rot's and the route password changing."""
    name = "srva" if k % 2 == 0 else "srvb"
    for part in ("cert", "key"):
        src = os.path.join(CERTS, "%s-%s.pem" % (name, part))
        tmp = os.path.join(d, "%s.pem.tmp" % part)
        with open(src, "rb") as f, open(tmp, "wb") as g:
            g.write(f.read())
        os.replace(tmp, os.path.join(d, "%s.pem" % part))     # never half a file
    return ("authorization { users = [ {user: alice, password: \"%s\"}, {user: rot, password: r%d} ],"
            " timeout: 5 }\n"
            "tls { cert_file: \"%s\", key_file: \"%s\", ca_file: \"%s\", verify: %s, timeout: 5 }\n"
            "cluster { name: c1, listen: 127.0.0.1:%%d, authorization { user: route, password: cp%d } }\n"
            % (alice_hash, k, os.path.join(d, "cert.pem"), os.path.join(d, "key.pem"),
               os.path.join(CERTS, "ca.pem"), "true" if k % 2 else "false", k))


def reload_under_load(seconds=4.0, interval=0.3, python=None, rep=None):
    """Clients connect, publish, subscribe and authenticate (TLS with client
    certificates, bcrypt passwords) while the config is reloaded every
    `interval` s with a new bcrypt hash of alice's password, a new password
    for user rot and for routes, a rotated server certificate and client
    verification toggled. After each reload has been applied: the previous
    rot and route passwords and a certificate-less client are refused, the
    new ones pass. Throughout: alice's publisher and subscriber stay up and
    lose nothing, alice's reconnect churn always passes, and intruders
    (wrong password, no CONNECT) never get a PONG."""
    rep = rep or Report("reload_under_load")
    try:
        import bcrypt
    except ImportError:
        bcrypt = None
    server_bcrypt = subprocess.run([python or util.PYTHON, "-c", "import bcrypt"],
                                   capture_output=True).returncode == 0
    use_bcrypt = bcrypt is not None and server_bcrypt
    rep.fig("alice's password", "bcrypt, new salt each reload" if use_bcrypt
            else "plain (no bcrypt for the server's interpreter)")
    d = tempfile.mkdtemp(prefix="reload-load-")
    alice = b'{"verbose":false,"user":"alice","pass":"a-pw"}'

    def alice_hash():
        return bcrypt.hashpw(b"a-pw", bcrypt.gensalt(4)).decode() if use_bcrypt else "a-pw"
    cport = free_port()
    srv = start_server(config=_reload_conf(d, 0, alice_hash()) % cport, python=python)
    stop = threading.Event()
    counts = {"sent": 0, "churn_ok": 0, "churn_failed": 0, "intruders": 0, "through": 0}
    got = set()
    lock = threading.Lock()

    def subscriber(r):
        try:
            while not stop.is_set() or len(got) < counts["sent"]:
                line = r.line()
                if line.startswith(b"MSG "):
                    payload = r.exact(int(line.split()[-1]) + 2)[:-2]
                    with lock:
                        got.add(int(payload))
                elif line.startswith(b"-ERR"):
                    rep.fail("alice's subscriber got %r" % line)
                    return
        except socket.timeout:
            return
        except (OSError, EOFError) as e:
            if not stop.is_set():
                rep.fail("alice's subscriber lost its connection: %r" % e)

    def publisher(r):
        seq = 0
        try:
            while not stop.is_set():
                batch = []
                for _ in range(20):
                    data = b"%d" % seq
                    batch.append(b"PUB load.x %d\r\n%s\r\n" % (len(data), data))
                    seq += 1
                r.sock.sendall(b"".join(batch))
                counts["sent"] = seq
                time.sleep(0.01)
            r.sock.sendall(b"PING\r\n")
            rep.check(r.line() == b"PONG", "alice's publisher: no PONG at the end")
        except (OSError, EOFError) as e:
            rep.fail("alice's publisher lost its connection: %r" % e)

    def churn():
        while not stop.is_set():
            first = first_reply(srv.port, alice)
            ok = first == b"PONG"
            counts["churn_ok" if ok else "churn_failed"] += 1
            if not ok:
                rep.fail("alice could not connect during reloads: %s" % first)

    def intruder():
        n = 0
        while not stop.is_set():
            n += 1
            if n % 2:
                first = first_reply(srv.port, b'{"verbose":false,"user":"alice","pass":"guess%d"}' % n)
            else:                   # no CONNECT at all
                try:
                    r, _ = nats_tls(srv.port, None)
                    try:
                        r.sock.sendall(b"SUB > 9\r\nPING\r\n")
                        first = r.line()
                    finally:
                        r.sock.close()
                except (OSError, EOFError):
                    first = b""     # refused at TLS or closed: not through
            counts["intruders"] += 1
            if first == b"PONG":
                counts["through"] += 1
                rep.fail("an intruder got through (attempt %d)" % n)

    def route_probe(pw):
        s = socket.create_connection(("127.0.0.1", cport), timeout=5)
        r = _Line(s)
        try:
            r.line()
            s.sendall(b'CONNECT {"user":"route","pass":"%s","name":"NPROBE","cluster":"c1"}\r\nPING\r\n' % pw)
            return r.line()
        except (OSError, EOFError):
            return b""
        finally:
            s.close()

    threads, sub, pub = [], None, None
    try:
        sub, first = nats_tls(srv.port, alice)
        sub.sock.sendall(b"SUB load.> 1\r\nPING\r\n")
        rep.check(first == b"PONG" and sub.line() == b"PONG", "alice's subscriber did not start")
        pub, first = nats_tls(srv.port, alice)
        rep.check(first == b"PONG", "alice's publisher did not start")
        threads = [threading.Thread(target=subscriber, args=(sub,)),
                   threading.Thread(target=publisher, args=(pub,)),
                   threading.Thread(target=churn), threading.Thread(target=intruder)]
        for t in threads:
            t.daemon = True
            t.start()
        k, worst, t_end = 0, 0.0, time.monotonic() + seconds
        while time.monotonic() < t_end and rep.ok:
            k += 1
            with open(srv.config_path, "w") as f:
                f.write(_reload_conf(d, k, alice_hash()) % cport)
            t0 = time.monotonic()
            srv.signal(signal.SIGHUP)
            if not wait_for(lambda: srv.output().count("Reloaded server configuration") >= k, 10):
                rep.fail("reload %d not applied: %s" % (k, srv.output()[-1500:]))
                break
            worst = max(worst, time.monotonic() - t0)
            rep.check(route_probe(b"cp%d" % (k - 1)) == AUTH_VIOLATION, "old route password accepted (reload %d)" % k)
            rep.check(route_probe(b"cp%d" % k) == b"PONG", "new route password refused (reload %d)" % k)
            rot = b'{"verbose":false,"user":"rot","pass":"r%d"}'
            old = first_reply(srv.port, rot % (k - 1))
            rep.check(old == AUTH_VIOLATION, "rot's old password: %r (reload %d)" % (old, k))
            rep.check(first_reply(srv.port, rot % k) == b"PONG", "rot's new password refused (reload %d)" % k)
            if k % 2:
                rep.check(first_reply(srv.port, alice, cert=False) != b"PONG",
                          "a client without certificate got through with verify on")
            time.sleep(max(0.0, interval - (time.monotonic() - t0)))
        stop.set()
        for t in threads[1:]:
            t.join(15)
        wait_for(lambda: len(got) >= counts["sent"], 10)
        sub.sock.close()
        threads[0].join(5)
        lost = counts["sent"] - len(got)
        rep.fig("reloads", k)
        rep.fig("slowest reload (s)", round(worst, 3))
        rep.fig("messages sent / delivered", "%d / %d" % (counts["sent"], len(got)))
        rep.fig("lost", lost)
        rep.fig("alice reconnects ok / failed", "%d / %d" % (counts["churn_ok"], counts["churn_failed"]))
        rep.fig("intruder attempts / through", "%d / %d" % (counts["intruders"], counts["through"]))
        rep.check(lost == 0, "%d messages lost" % lost)
        rep.check(counts["churn_ok"] > 0 and counts["intruders"] > 0, "no churn or no intruders ran")
        server_health(srv, rep)
    finally:
        stop.set()
        for r in (sub, pub):
            if r is not None:
                r.sock.close()
        srv.stop()
        shutil.rmtree(d, True)
    return rep
