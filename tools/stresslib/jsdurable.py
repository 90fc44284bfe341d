"""js-kill9: acknowledged JetStream publishes against SIGKILL of the server.

A publisher keeps up to `window` acknowledged publishes in flight to a
file-stored stream over a raw socket (PUB with a reply inbox per message,
the PubAck JSON read back), and records the sequence and payload of every
one acknowledged. At a random moment the server is SIGKILLed; it is started
again on the same store directory, and every message acknowledged so far, in
every round, must be there with its exact payload (read back with
$JS.API.STREAM.MSG.GET, pipelined). Messages stored but not acknowledged
before the kill (in flight at that moment) may be there or not: they are
counted, not required. Rounds repeat on the same store, so recovery also
runs on stores recovered before.

With `sync_interval: always` every ack follows an fsync; with the default
policy the write reaches the OS before the ack leaves (a process crash
loses nothing acknowledged; a power loss may lose up to sync_interval).
`exe` runs the same campaign against another server binary (nats-server).
"""

import base64
import json
import os
import random
import shutil
import signal
import socket
import tempfile
import threading
import time

from .common import Report, server_health, start_server
from tests.util import ServerProcess

STREAM = "D"


class Conn:
    """A raw client connection that reads whole MSG frames."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.sock.sendall(b'CONNECT {"verbose":false,"headers":true}\r\nPING\r\n')
        while b"PONG\r\n" not in self.buf:
            self._more()
        self.buf = b""

    def _more(self):
        d = self.sock.recv(1 << 20)
        if not d:
            raise OSError("connection closed")
        self.buf += d

    def msg(self):
        """(reply-subject token after the inbox prefix, payload) of the next MSG/HMSG."""
        while True:
            while b"\r\n" not in self.buf:
                self._more()
            line, rest = self.buf.split(b"\r\n", 1)
            if line == b"PING":
                self.sock.sendall(b"PONG\r\n")
                self.buf = rest
                continue
            parts = line.split()
            if parts[0] not in (b"MSG", b"HMSG"):
                self.buf = rest
                if parts[0] == b"-ERR":
                    raise OSError(line.decode())
                continue
            size = int(parts[-1])
            while len(rest) < size + 2:
                self._more()
                rest = self.buf.split(b"\r\n", 1)[1]
            hdr = int(parts[-2]) if parts[0] == b"HMSG" else 0
            self.buf = rest[size + 2:]
            return parts[1], rest[hdr:size]

    def close(self):
        self.sock.close()


def request(conn, subject, body):
    conn.sock.sendall(b"SUB _R.x 99\r\nPUB %s _R.x %d\r\n%s\r\n" % (subject.encode(), len(body), body))
    _, data = conn.msg()
    conn.sock.sendall(b"UNSUB 99\r\n")
    return json.loads(data)


def publisher(port, tag, window, acked, stop, errors):
    """Publish d.<tag>.<i> with payload tag-i until stop or the socket dies."""
    c = None
    try:
        c = Conn(port)
        c.sock.sendall(b"SUB _A.%s.* 1\r\n" % tag.encode())
        sent = got = 0
        while not stop.is_set():
            burst = []
            while sent - got < window:
                p = b"%s-%d" % (tag.encode(), sent)
                burst.append(b"PUB d.%s _A.%s.%d %d\r\n%s\r\n" % (tag.encode(), tag.encode(), sent, len(p), p))
                sent += 1
            c.sock.sendall(b"".join(burst))
            subj, data = c.msg()
            ack = json.loads(data)
            got += 1
            if "error" in ack:
                errors.append("publish %s: %s" % (subj, ack["error"]))
                return
            i = int(subj.rsplit(b".", 1)[1])
            acked[ack["seq"]] = b"%s-%d" % (tag.encode(), i)
    except (OSError, ValueError):
        pass                    # the kill cut us: what was acked is recorded
    finally:
        if c is not None:
            c.close()


def verify(port, acked, rep, label):
    """Every acked seq present with its payload; returns (stored msgs, last seq)."""
    c = Conn(port)
    try:
        info = request(c, "$JS.API.STREAM.INFO.%s" % STREAM, b"")
        state = info["state"]
        c.sock.sendall(b"SUB _G.* 2\r\n")
        seqs = sorted(acked)
        missing = 0
        for i in range(0, len(seqs), 200):
            chunk = seqs[i:i + 200]
            reqs = []
            for s in chunk:
                body = b'{"seq":%d}' % s
                reqs.append(b"PUB $JS.API.STREAM.MSG.GET.%s _G.%d %d\r\n%s\r\n"
                            % (STREAM.encode(), s, len(body), body))
            c.sock.sendall(b"".join(reqs))
            for _ in chunk:
                subj, data = c.msg()
                s = int(subj.rsplit(b".", 1)[1])
                m = json.loads(data).get("message")
                if m is None or base64.b64decode(m.get("data", "")) != acked[s]:
                    missing += 1
                    if missing <= 5:
                        rep.fail("%s: acknowledged seq %d lost or changed: %s" % (label, s, data[:200]))
        rep.check(missing == 0, "%s: %d of %d acknowledged messages missing" % (label, missing, len(seqs)))
        return state["messages"], state["last_seq"], missing
    finally:
        c.close()


def js_kill9(rounds=10, sync_always=True, window=64, python=None, exe=None, seed=1, rep=None):
    mode = "sync_interval: always" if sync_always else "default sync_interval (2 min)"
    rep = rep or Report("js-kill9 (%s, %s)" % (mode, "nats-server" if exe else "gnatsd.py"))
    rng = random.Random(seed)
    store = tempfile.mkdtemp(prefix="js-kill9-")
    conf = "jetstream { store_dir: %s%s }\n" % (json.dumps(store), ", sync_interval: always" if sync_always else "")
    acked, lifetimes, recover = {}, [], []
    try:
        for r in range(rounds + 1):
            t0 = time.monotonic()
            srv = ServerProcess(config=conf, exe=exe) if exe else start_server(config=conf, python=python)
            try:
                c = Conn(srv.port)
                if r == 0:
                    cfg = json.dumps({"name": STREAM, "subjects": ["d.>"], "storage": "file"}).encode()
                    res = request(c, "$JS.API.STREAM.CREATE.%s" % STREAM, cfg)
                    rep.check("error" not in res, "stream create: %s" % res)
                else:
                    info = request(c, "$JS.API.STREAM.INFO.%s" % STREAM, b"")
                    rep.check("error" not in info, "round %d: stream not recovered: %s" % (r, info))
                recover.append(time.monotonic() - t0)
                c.close()
                stored, last, missing = verify(srv.port, acked, rep, "round %d" % r)
                server_health(srv, rep)             # alive, no traceback in its log
                rep.check(stored == last and last >= max(acked, default=0),
                          "round %d: stream holds %d msgs up to seq %d, acked up to %d"
                          % (r, stored, last, max(acked, default=0)))
                if r == rounds:
                    rep.fig("stored after the last restart", "%d msgs (last seq %d)" % (stored, last))
                    rep.fig("acknowledged and missing", missing)
                    rep.fig("stored, not acknowledged (in flight)", stored - len(acked))
                    break
                stop, errors = threading.Event(), []
                th = threading.Thread(target=publisher, args=(srv.port, "r%d" % r, window, acked, stop, errors),
                                      daemon=True)
                th.start()
                life = rng.uniform(0.3, 2.0)
                time.sleep(life)
                lifetimes.append(life)
                srv.proc.send_signal(signal.SIGKILL)
                srv.proc.wait(10)
                stop.set()
                th.join(15)
                for e in errors[:3]:
                    rep.fail("round %d: %s" % (r, e))
            finally:
                srv.stop()
        rep.fig("rounds (SIGKILL at 0.3-2 s)", rounds)
        rep.fig("acknowledged, all rounds", len(acked))
        rep.fig("restart to stream served, s", "max %.2f, median %.2f" % (
            max(recover), sorted(recover)[len(recover) // 2]))
    finally:
        shutil.rmtree(store, ignore_errors=True)
    return rep
