"""Store scale (issue 20): a big file-stored stream and a big KV bucket on
one server, then start-up time, memory and lookup latency, the same steps
on gnatsd.py and on nats-server (`tools/bench_js.py --scale`).

Steps, per server, on a fresh store directory:
  1. create stream S (subjects s.>, file storage) and bucket `scale` as
     nats-py's create_key_value makes it (stream KV_scale on $KV.scale.>,
     one message per key, allow_direct);
  2. load `msgs` messages of `size` bytes into S (subjects s.0..s.99) and
     `keys` keys into the bucket: a raw socket pipelining PUBs with a reply
     subject each, `window` in flight, every PubAck read and counted (an
     error ack fails the run); then STREAM.INFO must show the exact counts;
  3. RSS of the server once loaded (after 2 s idle);
  4. latency, one request at a time on a raw socket: `lookups` KV gets
     (`$JS.API.DIRECT.GET.KV_scale` with `{"last_by_subj": "$KV.scale.kN"}`,
     random keys, each answer checked to be that key's value) and `infos`
     STREAM.INFO of S; p50/p99 client-side;
  5. clean stop (SIGTERM, wait), start again: start-up time = process start
     to the first moment both streams answer STREAM.INFO with their full
     counts; RSS then;
  6. SIGKILL, start again: the same figures after a crash (no clean-close
     snapshot for either server to use).
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from .servers import free_port

KV = "KV_scale"


class Raw:
    """A raw client connection: requests, and pipelined publishes whose
    acks are counted."""

    def __init__(self, port, timeout=120.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = bytearray()
        self.sock.sendall(b'CONNECT {"verbose":false,"headers":true}\r\nPING\r\n')
        while b"PONG\r\n" not in self.buf:
            self._more()
        self.buf.clear()
        self.sock.sendall(b"SUB _R.* 1\r\n")

    def _more(self):
        d = self.sock.recv(1 << 20)
        if not d:
            raise OSError("connection closed by the server")
        self.buf += d

    def frame(self):
        """(reply-subject, header bytes, payload) of the next MSG/HMSG."""
        buf = self.buf
        while True:
            i = buf.find(b"\r\n")
            while i < 0:
                self._more()
                i = buf.find(b"\r\n")
            line = bytes(buf[:i])
            if line.startswith(b"MSG ") or line.startswith(b"HMSG "):
                parts = line.split()
                size = int(parts[-1])
                hsz = int(parts[-2]) if parts[0] == b"HMSG" else 0
                while len(buf) < i + 2 + size + 2:
                    self._more()
                body = bytes(buf[i + 2:i + 2 + size])
                del buf[:i + 2 + size + 2]
                return parts[1], body[:hsz], body[hsz:]
            del buf[:i + 2]
            if line == b"PING":
                self.sock.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise OSError(line.decode())

    def request(self, subject, body=b""):
        self.sock.sendall(b"PUB %s _R.x %d\r\n%s\r\n" % (subject.encode(), len(body), body))
        return self.frame()

    def publish_many(self, items, window):
        """Publish (subject bytes, payload) pairs, `window` acks outstanding.
        Returns (acks, error acks, first error text)."""
        sent = got = errors = 0
        first_err = None
        it = iter(items)
        done = False
        while not done or got < sent:
            burst = []
            while not done and sent - got < window:
                nxt = next(it, None)
                if nxt is None:
                    done = True
                    break
                subj, data = nxt
                burst.append(b"PUB %s _R.a %d\r\n%s\r\n" % (subj, len(data), data))
                sent += 1
            if burst:
                self.sock.sendall(b"".join(burst))
            # read at least half a window of acks before topping it up
            want = got + max(1, min(sent - got, window // 2)) if not done else sent
            while got < want:
                _, _, data = self.frame()
                got += 1
                if b'"error"' in data:
                    errors += 1
                    first_err = first_err or data[:200].decode("utf-8", "replace")
        return got, errors, first_err

    def close(self):
        self.sock.close()


def info(c, stream):
    _, _, data = c.request("$JS.API.STREAM.INFO." + stream)
    return json.loads(data)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else 0.0


class Side:
    """One server on one store directory; restartable."""

    def __init__(self, cmd, store, log):
        self.cmd, self.store, self.log = cmd, store, log
        self.port = free_port()
        self.proc = None

    def start(self):
        self.logf = open(self.log, "ab")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(self.cmd + ["-js", "-sd", self.store, "-p", str(self.port),
                                                 "-a", "127.0.0.1"],
                                     stdout=self.logf, stderr=subprocess.STDOUT)

    def connect(self, timeout=600.0):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited rc=%s (log %s)" % (self.proc.returncode, self.log))
            try:
                return Raw(self.port)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def served(self, want, timeout=600.0):
        """Seconds from process start until every stream in `want`
        (name -> messages) answers STREAM.INFO with that count."""
        c = self.connect(timeout)
        try:
            deadline = time.monotonic() + timeout
            for name, n in want.items():
                while True:
                    got = info(c, name).get("state", {}).get("messages")
                    if got == n:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError("%s: %s of %d messages after restart" % (name, got, n))
                    time.sleep(0.01)
            return time.monotonic() - self.t0
        finally:
            c.close()

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(300)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def load(side, msgs, keys, size, window, say):
    c = side.connect()
    try:
        cfg = {"name": "S", "subjects": ["s.>"], "storage": "file"}
        r = json.loads(c.request("$JS.API.STREAM.CREATE.S", json.dumps(cfg).encode())[2])
        if "error" in r:
            raise RuntimeError("stream create: %s" % r)
        kv = {"name": KV, "subjects": ["$KV.scale.>"], "storage": "file", "max_msgs_per_subject": 1,
              "discard": "new", "allow_rollup_hdrs": True, "deny_delete": True, "allow_direct": True,
              "num_replicas": 1}
        r = json.loads(c.request("$JS.API.STREAM.CREATE." + KV, json.dumps(kv).encode())[2])
        if "error" in r:
            raise RuntimeError("bucket create: %s" % r)
        payload = b"x" * size
        t0 = time.monotonic()
        got, errs, first = c.publish_many(((b"s.%d" % (i % 100), payload) for i in range(msgs)), window)
        t1 = time.monotonic()
        say("  loaded %d msgs in %.1f s (%.0f acked/s), %d error acks%s"
            % (got, t1 - t0, got / (t1 - t0), errs, ": " + first if first else ""))
        got2, errs2, first2 = c.publish_many(((b"$KV.scale.k%d" % i, b"v%d" % i) for i in range(keys)), window)
        say("  loaded %d keys in %.1f s, %d error acks%s"
            % (got2, time.monotonic() - t1, errs2, ": " + first2 if first2 else ""))
        if errs or errs2 or got != msgs or got2 != keys:
            raise RuntimeError("load: %d/%d msgs, %d/%d keys acked, %d errors: %s"
                               % (got, msgs, got2, keys, errs + errs2, first or first2))
        for name, n in (("S", msgs), (KV, keys)):
            st = info(c, name)["state"]
            if st["messages"] != n:
                raise RuntimeError("%s holds %d messages, %d acked" % (name, st["messages"], n))
    finally:
        c.close()


def lookups(side, keys, n, infos, seed=1):
    """(get p50, p99, info p50, p99) in microseconds; every answer checked."""
    rng = random.Random(seed)
    c = side.connect()
    try:
        gets = []
        subj = "$JS.API.DIRECT.GET." + KV
        for _ in range(n):
            k = rng.randrange(keys)
            body = b'{"last_by_subj":"$KV.scale.k%d"}' % k
            t = time.perf_counter()
            _, hdr, data = c.request(subj, body)
            gets.append(time.perf_counter() - t)
            if data != b"v%d" % k:
                raise RuntimeError("direct get of k%d answered %r %r" % (k, hdr[:120], data[:60]))
        inf = []
        for _ in range(infos):
            t = time.perf_counter()
            st = info(c, "S")
            inf.append(time.perf_counter() - t)
            if "state" not in st:
                raise RuntimeError("STREAM.INFO answered %s" % st)
        return tuple(1e6 * x for x in (pct(gets, .5), pct(gets, .99), pct(inf, .5), pct(inf, .99)))
    finally:
        c.close()


def run_side(label, cmd, args, say):
    tmp = tempfile.mkdtemp(prefix="bench-scale-")
    side = Side(cmd, os.path.join(tmp, "store"), os.path.join(tmp, "server.log"))
    out = {}
    want = {"S": args.msgs, KV: args.keys}
    try:
        say("%s: %s" % (label, " ".join(cmd)))
        side.start()
        load(side, args.msgs, args.keys, args.size, args.window, say)
        time.sleep(2)
        out["rss_loaded"] = rss_kib(side.proc.pid)
        out["lat"] = lookups(side, args.keys, args.lookups, args.infos)
        for how, sig in (("clean", signal.SIGTERM), ("kill9", signal.SIGKILL)):
            side.stop(sig)
            side.start()
            out["start_" + how] = side.served(want)
            time.sleep(2)
            out["rss_" + how] = rss_kib(side.proc.pid)
            say("  after %s stop: served in %.2f s, RSS %d MiB"
                % (how, out["start_" + how], out["rss_" + how] >> 10))
        out["lat_after"] = lookups(side, args.keys, args.lookups, args.infos, seed=2)
        out["disk"] = sum(os.path.getsize(os.path.join(d, f))
                          for d, _, fs in os.walk(side.store) for f in fs)
        return out
    except Exception:
        say("  log tail of %s:\n%s" % (label, open(side.log, "rb").read()[-3000:].decode("utf-8", "replace")))
        raise
    finally:
        side.stop(signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


def report(res, args):
    """The markdown table PERFORMANCE.md holds."""
    o, g = res["ours"], res["go"]
    rows = [
        ("RSS once loaded", "%d MiB" % (o["rss_loaded"] >> 10), "%d MiB" % (g["rss_loaded"] >> 10)),
        ("start-up after a clean stop", "%.2f s" % o["start_clean"], "%.2f s" % g["start_clean"]),
        ("RSS after that start", "%d MiB" % (o["rss_clean"] >> 10), "%d MiB" % (g["rss_clean"] >> 10)),
        ("start-up after kill -9", "%.2f s" % o["start_kill9"], "%.2f s" % g["start_kill9"]),
        ("RSS after that start", "%d MiB" % (o["rss_kill9"] >> 10), "%d MiB" % (g["rss_kill9"] >> 10)),
        ("KV get (direct get last_by_subj) p50/p99", "%.0f/%.0f µs" % o["lat"][:2], "%.0f/%.0f µs" % g["lat"][:2]),
        ("same, after the restarts", "%.0f/%.0f µs" % o["lat_after"][:2],
         "%.0f/%.0f µs" % g["lat_after"][:2]),
        ("STREAM.INFO of the 1M stream p50/p99", "%.0f/%.0f µs" % o["lat"][2:],
         "%.0f/%.0f µs" % g["lat"][2:]),
        ("store on disk", "%d MiB" % (o["disk"] >> 20), "%d MiB" % (g["disk"] >> 20)),
    ]
    lines = ["| %d msgs of %d B + %d KV keys | gnatsd.py | nats-server |" % (args.msgs, args.size, args.keys),
             "|---|---|---|"]
    lines += ["| %s | %s | %s |" % r for r in rows]
    return "\n".join(lines)
