"""Faults (`faults`): clients killed mid-message, RSTs, half-open TLS,
monitor hammering under many connections, and route kills in a
three-node mesh.
"""

import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

from tests.util import RawClient, free_port
from .common import CERTS, Node, Report, raise_nofile, server_health, start_server, varz, wait_for
from .clients import CleanTraffic, Swarm, drain_until_closed


RST = b"\x01\0\0\0\0\0\0\0"        # struct linger {on, 0 s}: close sends RST


_KILLED_CLIENT = r"""
import os, signal, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.recv(4096)
s.sendall(b'CONNECT {"verbose":false}\r\nPUB fault.killed 100\r\n' + b"k" * 40)
os.kill(os.getpid(), signal.SIGKILL)
"""


def faults_midmsg(conns=300, kills=10, python=None, rep=None):
    """Clients that die half-way through a message: FIN or RST after half
    a control line or half a payload, and client processes SIGKILLed
    mid-PUB. A subscriber gets exactly the complete messages, never a
    partial one; the clean pair loses nothing; no connection lingers."""
    rep = rep or Report("faults: clients killed mid-message")
    mport = free_port()
    srv = start_server("-m", str(mport), python=python)
    rep.fig("server", " ".join(srv.cmd[:2]))
    rnd = random.Random(5)
    cuts = [b"PUB fault.x 10\r\nhalf", b"PUB fault.x 10\r\n0123456789", b"PUB fau", b"PU",
            b"PUB fault.x 100000\r\n" + b"z" * 50000, b"SUB fault.half 9\r\nPUB fault.x 4\r\nab",
            b"HPUB fault.x 12 14\r\nNATS/1.0\r\n"]
    try:
        clean = CleanTraffic(srv.port)
        watcher = RawClient(srv.port)
        watcher.send(b"SUB fault.> 1\r\n")
        watcher.ping()
        complete = 0
        rst_n = fin_n = 0
        for i in range(conns):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            s.recv(4096)
            k = rnd.randrange(0, 4)
            whole = b"".join(b"PUB fault.ok %d\r\n%d\r\n" % (len(b"%d" % j), j) for j in range(k))
            s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n' + whole)
            complete += k
            if i % 2:
                # RST: first make sure the complete messages were processed
                s.sendall(b"PING\r\n")
                buf = b""
                while b"PONG" not in buf:
                    d = s.recv(4096)        # the socket's 5 s timeout bounds each read
                    if not d:
                        raise AssertionError("the server closed a client before its PONG: %r" % buf)
                    buf += d
                s.sendall(rnd.choice(cuts))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RST)
                rst_n += 1
            else:
                s.sendall(rnd.choice(cuts))
                fin_n += 1
            s.close()
        procs = [subprocess.Popen([sys.executable, "-c", _KILLED_CLIENT, str(srv.port)])
                 for _ in range(kills)]
        for p in procs:
            p.wait(10)
        got = []
        deadline = time.monotonic() + 10
        while len(got) < complete and time.monotonic() < deadline:
            try:
                op, args, data = watcher.read_msg(timeout=1)
            except TimeoutError:
                continue
            got.append((args[0], data))
        extra = watcher.ping(5)
        rep.fig("connections cut (FIN / RST)", "%d / %d" % (fin_n, rst_n))
        rep.fig("client processes SIGKILLed mid-PUB", kills)
        rep.fig("complete messages sent / received", "%d / %d" % (complete, len(got)))
        rep.check(len(got) == complete and all(a == b"fault.ok" for a, _ in got),
                  "watcher got %d messages (expected %d complete ones): %r"
                  % (len(got), complete, [a for a, _ in got if a != b"fault.ok"][:5]))
        rep.check(extra == b"", "a partial message was delivered: %r" % extra[:200])
        v = wait_for(lambda: (lambda x: x if x and x["connections"] == 3 else None)(varz(mport)), 10)
        sent, received, errors = clean.finish()
        for e in errors:
            rep.fail("clean pair: %s" % e)
        rep.check(sent == received, "clean pair sent %d, received %d" % (sent, received))
        rep.fig("clean messages sent/received", "%d/%d" % (sent, received))
        if v is None:
            rep.fail("connections did not drop back to 3 (watcher + clean pair): %s" % varz(mport))
        else:
            rep.fig("connections after (watcher + clean pair)", v["connections"])
            rep.check(v["subscriptions"] == 2, "subscriptions after: %s, expected 2" % v["subscriptions"])
        watcher.close()
        server_health(srv, rep)
    finally:
        srv.stop()
    return rep


def client_hello():
    """The bytes of a real TLS ClientHello (from a memory BIO handshake)."""
    ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.pem"))
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def tls_client(port, timeout=5.0):
    """A well-behaved TLS client: INFO in clear, then the handshake."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    buf = b""
    while b"\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise OSError("closed before INFO")
        buf += d
    ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.pem"))
    ctx.check_hostname = False
    return ctx.wrap_socket(s, server_hostname="localhost")


def faults_tls(half_open=200, python=None, rep=None):
    """TLS handshakes left half-open (silent after INFO, half a record
    header, a ClientHello and then silence): the server closes each after
    its TLS timeout, while well-behaved TLS clients keep working."""
    rep = rep or Report("faults: half-open TLS handshakes")
    raise_nofile(half_open + 1024)
    mport = free_port()
    srv = start_server("--tls", "--tlscert", os.path.join(CERTS, "server-cert.pem"),
                       "--tlskey", os.path.join(CERTS, "server-key.pem"), "-m", str(mport),
                       python=python)
    rep.fig("server", " ".join(srv.cmd[:2]))
    hello = client_hello()
    kinds = [b"", hello[:5], hello[:3], hello, b"\x16"]
    socks = []
    try:
        t0 = time.monotonic()
        for i in range(half_open):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            s.recv(4096)                            # INFO, in clear
            if kinds[i % len(kinds)]:
                s.sendall(kinds[i % len(kinds)])
            socks.append(s)
        opened = time.monotonic() - t0
        # meanwhile, a real TLS client works, and quickly
        t1 = time.monotonic()
        good = tls_client(srv.port)
        good.sendall(b'CONNECT {"verbose":false}\r\nSUB tls.ok 1\r\nPUB tls.ok 2\r\nhi\r\nPING\r\n')
        buf = b""
        while b"PONG\r\n" not in buf:
            d = good.recv(4096)
            if not d:
                break
            buf += d
        rtt = time.monotonic() - t1
        rep.check(b"MSG tls.ok 1 2\r\nhi\r\n" in buf, "the TLS client did not get its message: %r" % buf[:200])
        rep.fig("half-open handshakes (kinds)", "%d (%d kinds, opened in %.2f s)" % (half_open, len(kinds), opened))
        rep.fig("good TLS client round trip s", round(rtt, 3))
        # each half-open one must be closed by the server after tls_timeout (2 s)
        closed = 0
        t2 = time.monotonic()
        for s in socks:
            s.settimeout(max(0.1, 8.0 - (time.monotonic() - t2)))
            try:
                while s.recv(4096):
                    pass
                closed += 1
            except ConnectionResetError:
                closed += 1
            except (socket.timeout, OSError):
                pass
        rep.fig("closed by the server", "%d of %d within %.1f s" % (closed, half_open, time.monotonic() - t0))
        rep.check(closed == half_open, "%d of %d half-open TLS connections were not closed"
                  % (half_open - closed, half_open))
        # handshake done, then raw bytes under the TLS layer: bad records,
        # alerts, plain text; each connection must be closed, nothing else
        junk = [b"\x17\x03\x03\x00\x10" + b"A" * 16, b"PUB foo 1\r\nx\r\n", b"\x15\x03\x03\x00\x02\x02\x28",
                b"\x16\x03\x01\x00\x05hello", b"\x00" * 100, b"\x17\x03\x03\xff\xff"]
        jclosed = 0
        for j in range(len(junk) * 5):
            t = tls_client(srv.port)
            t.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
            t.recv(4096)
            raw = socket.socket(fileno=os.dup(t.fileno()))
            raw.sendall(junk[j % len(junk)])
            n, closed = drain_until_closed(raw, 5)
            jclosed += closed
            raw.close()
            t.close()
        rep.fig("garbage under an established TLS session", "%d of %d closed by the server" % (jclosed, len(junk) * 5))
        rep.check(jclosed == len(junk) * 5, "%d garbage TLS connections left open" % (len(junk) * 5 - jclosed))
        good.sendall(b"PING\r\n")
        good.settimeout(5)
        rep.check(b"PONG" in good.recv(4096), "the TLS client was not answered after the timeouts")
        good.close()
        v = wait_for(lambda: (lambda x: x if x and x["connections"] == 0 else None)(varz(mport)), 5)
        rep.check(v is not None, "connections left over: %s" % varz(mport))
        server_health(srv, rep)
    finally:
        for s in socks:
            s.close()
        srv.stop()
    return rep


def faults_monitor(seconds=5.0, threads=8, idle=100, conns=0, python=None, rep=None, ping_bound=1.0):
    """The monitoring port hammered by request loops on every endpoint and
    by idle sockets past its connection cap, while `conns` subscribed
    clients are connected (every snapshot covers them), a clean pair
    exchanges messages and a client times PINGs."""
    rep = rep or Report("faults: monitor hammering")
    raise_nofile(conns + 2048)
    mport = free_port()
    srv = start_server("-m", str(mport), python=python)
    swarm = Swarm(srv.port)
    if conns:
        n = swarm.open(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB mon.%d 1\r\nPING\r\n'
                       % random.getrandbits(16), conns, timeout=120)
        rep.check(n == conns, "only %d of %d connections held" % (n, conns))
    rep.fig("client connections held meanwhile", conns)
    rep.fig("server", " ".join(srv.cmd[:2]))
    paths = ["/varz", "/connz", "/connz?subs=1&limit=5000", "/subsz?subs=1", "/routez",
             "/healthz", "/metrics", "/", "/connz?sort=bogus", "/nope", "/varz?callback=x"]
    counts = {"ok": 0, "503": 0, "4xx": 0, "error": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def hammer(seed):
        r = random.Random(seed)
        while not stop.is_set():
            path = r.choice(paths)
            try:
                s = socket.create_connection(("127.0.0.1", mport), timeout=10)
                s.sendall(b"GET %s HTTP/1.0\r\nHost: x\r\n\r\n" % path.encode())
                data = b""
                while True:
                    d = s.recv(1 << 16)
                    if not d:
                        break
                    data += d
                s.close()
                code = data[9:12]
                key = "ok" if code == b"200" else "503" if code == b"503" else "4xx" if code[:1] == b"4" else "error"
            except OSError:
                key = "error"
            with lock:
                counts[key] += 1

    idlers = []
    pings = []

    def ping_for(secs):
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            pinger.ping(10)
            pings.append(time.monotonic() - t0)
            time.sleep(0.02)

    try:
        clean = CleanTraffic(srv.port)
        pinger = RawClient(srv.port)
        ts = [threading.Thread(target=hammer, args=(k,), daemon=True) for k in range(threads)]
        for t in ts:
            t.start()
        ping_for(seconds / 2)                       # phase 1: request loops only
        with lock:
            phase1 = dict(counts)
            for k in counts:
                counts[k] = 0
        for _ in range(idle):                       # phase 2: plus idle sockets
            try:
                idlers.append(socket.create_connection(("127.0.0.1", mport), timeout=5))
            except OSError:
                break
        ping_for(seconds / 2)
        stop.set()
        for t in ts:
            t.join(30)
        for s in idlers:
            s.close()
        t0 = time.monotonic()
        back = wait_for(lambda: varz(mport), 15)
        recovery = time.monotonic() - t0
        pinger.close()
        sent, received, errors = clean.finish()
        for e in errors:
            rep.fail("clean pair: %s" % e)
        rep.check(sent == received, "clean pair sent %d, received %d" % (sent, received))
        pings.sort()
        rep.fig("hammer threads", threads)
        rep.fig("phase 1 ok / 503 / 4xx / errors", "%(ok)d / %(503)d / %(4xx)d / %(error)d" % phase1)
        rep.fig("phase 2 (+%d idle sockets)" % len(idlers), "%(ok)d / %(503)d / %(4xx)d / %(error)d" % counts)
        rep.fig("monitor answers again after", "%.2f s" % recovery)
        rep.fig("clean messages sent/received", "%d/%d" % (sent, received))
        counts["ok"] += phase1["ok"]
        rep.fig("PING ms p50 / p99 / max", "%.1f / %.1f / %.1f" % (
            pings[len(pings) // 2] * 1e3, pings[int(len(pings) * 0.99)] * 1e3, pings[-1] * 1e3))
        rep.check(counts["ok"] > 0, "no monitor request succeeded")
        rep.perf(pings[-1] < ping_bound, "a PING took %.2f s during the hammering" % pings[-1])
        rep.check(back is not None, "the monitor does not answer after the hammering")
        server_health(srv, rep)
    finally:
        stop.set()
        for s in idlers:
            s.close()
        swarm.close_all()
        srv.stop()
    return rep


def mesh_ok(nodes):
    for n in nodes:
        want = sorted(m.server_id for m in nodes if m is not n)
        if n.remote_ids() != want:
            return False
    return True


def interest_ok(node, subject):
    rz = node.routez()
    return bool(rz) and any(subject in r.get("subscriptions_list", []) for r in rz["routes"])


def faults_routes(cycles=3, stop_seconds=3.0, python=None, rep=None):
    """Three servers in a full mesh; traffic flows from A to B the whole
    time while C is SIGKILLed and restarted, and SIGSTOPped and SIGCONTed,
    in a loop. Between A and B nothing may be lost; after each fault the
    mesh heals and C receives what is published on A again."""
    rep = rep or Report("faults: routes killed and stopped")
    nodes = []
    heal_times = []
    try:
        a = Node(python=python)
        nodes.append(a)
        b = Node(routes=[a.route_url], python=python)
        nodes.append(b)
        c = Node(routes=[a.route_url], python=python)
        nodes.append(c)
        rep.fig("servers", "3 x %s" % " ".join(a.srv.cmd[:2]))
        rep.check(wait_for(lambda: mesh_ok(nodes), 15), "no full mesh at start")
        clean = CleanTraffic(b.port, pub_port=a.port, rate=500,
                             before_publish=lambda subj: wait_for(lambda: interest_ok(a, subj.decode()), 10))
        # C listens to the same subject (its route from A is the one that stalls)
        c_watch = RawClient(c.port)
        c_watch.send(b"SUB %s 1\r\nSUB flood.c 2\r\n" % clean.subject)
        c_watch.ping()
        rep.check(wait_for(lambda: interest_ok(a, "flood.c"), 10), "A never learned C's interest at start")
        kills = stops = heals = 0
        flood = b"PUB flood.c 4096\r\n" + b"f" * 4096 + b"\r\n"
        for i in range(cycles * 2):
            t0 = time.monotonic()
            if i % 2 == 0:
                c_watch.close()
                c.kill()
                kills += 1
                rep.check(wait_for(lambda: a.remote_ids() == [b.server_id], 10),
                          "cycle %d: A still lists C's route after SIGKILL" % i)
                time.sleep(0.5)     # deliberate: traffic flows between the survivors only
                c.start()
            else:
                c.srv.proc.send_signal(signal.SIGSTOP)
                stops += 1
                # 8 MB for C while it is stopped: A's route to C blocks, and
                # A must cut it (write deadline) without slowing A->B
                fp = RawClient(a.port)
                fp.send(flood * 2000)
                fp.ping(10)
                fp.close()
                time.sleep(stop_seconds)    # deliberate: longer than the write deadline
                c.srv.proc.send_signal(signal.SIGCONT)
            healed = wait_for(lambda: mesh_ok(nodes), 20)
            heal_times.append(time.monotonic() - t0)
            if not rep.check(healed, "cycle %d: no full mesh 20 s after the fault: %s"
                             % (i, [(n.server_id[:6], n.remote_ids()) for n in nodes])):
                continue
            # C receives from A again (interest crossed the new route)
            subj = "heal.%d" % i
            w = RawClient(c.port)
            w.send(b"SUB %s 1\r\n" % subj.encode())
            w.ping()
            if not rep.check(wait_for(lambda: interest_ok(a, subj), 10),
                             "cycle %d: A never learned C's interest" % i):
                w.close()
                continue
            p = RawClient(a.port)
            p.send(b"".join(b"PUB %s 1\r\n%d\r\n" % (subj.encode(), k) for k in range(10)))
            p.ping()
            try:
                got = [w.read_msg(5)[2] for _ in range(10)]
                heals += got == [b"%d" % k for k in range(10)]
            except (TimeoutError, EOFError) as e:
                rep.fail("cycle %d: C got too few messages after healing: %r" % (i, e))
            p.close()
            w.close()
            if i % 2 == 0:
                c_watch = RawClient(c.port)
                c_watch.send(b"SUB %s 1\r\nSUB flood.c 2\r\n" % clean.subject)
                c_watch.ping()
                rep.check(wait_for(lambda: interest_ok(a, "flood.c"), 10),
                          "cycle %d: A never learned the restarted C's interest" % i)
        c_watch.close()
        sent, received, errors = clean.finish()
        for e in errors:
            rep.fail("A->B traffic: %s" % e)
        rep.check(sent == received, "A->B: sent %d, received %d" % (sent, received))
        rep.fig("SIGKILL+restart / SIGSTOP(%.0f s)+SIGCONT cycles" % stop_seconds, "%d / %d" % (kills, stops))
        rep.fig("mesh healed, C served again", "%d of %d" % (heals, kills + stops))
        rep.fig("heal time s (min / max)", "%.1f / %.1f" % (min(heal_times), max(heal_times)) if heal_times else "-")
        rep.fig("A->B messages sent/received", "%d/%d" % (sent, received))
        cut = a.srv.output().count("Slow Consumer Detected")
        rep.fig("routes A cut as slow consumers", cut)
        # each SIGSTOP outlasts the write deadline with 8 MB queued for C
        rep.check(cut >= stops, "A cut its route to the stopped C %d times in %d stops" % (cut, stops))
        rep.check(heals == kills + stops, "C was served again after %d of %d faults" % (heals, kills + stops))
        for n in (a, b):
            server_health(n.srv, rep)
        for log in c.old_logs + [c.srv.output()]:
            rep.check("Traceback" not in log, "C logged a traceback: %s" % log[log.find("Traceback"):][:1500])
    finally:
        for n in nodes:
            if n.srv.proc.poll() is None:
                try:
                    n.srv.proc.send_signal(signal.SIGCONT)
                except OSError:
                    pass
            n.stop()
    return rep
