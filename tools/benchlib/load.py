"""Raw-socket load workers. Each runs in its own process (forked by the runner).

Theory of operation
-------------------
Every worker connects, sends CONNECT (verbose and pedantic off) and its SUBs,
then PING, and waits for the PONG: once it arrives the server has registered
the interest. The worker then reports ("ready", name) and waits for the start
event. After the run it reports ("done", name, result) with its own end time
taken from time.monotonic() (CLOCK_MONOTONIC, comparable across processes).

The publisher never builds a frame in the hot loop: it sends one prebuilt chunk
of about 64 KiB of `PUB subject n\r\npayload\r\n` frames over and over, then a
PING, and the PONG proves the server has read every PUB.

The subscriber never parses. Payloads are lowercase letters and subjects hold
no "M", "P" or "-", so after the setup PONG every "M" in the stream starts a
`MSG ` frame: counting b"M" (bytearray.count, C speed, about 3 GB/s where
b"MSG " manages 2) counts frames exactly. "P" and "-" only appear in PING,
PONG and -ERR, which are counted as whole patterns when a read holds one (an
-ERR text may hold an "M": the run has failed by then anyway). Bytes are
counted too and checked against the exact total the plan predicts, which
catches truncated or mangled frames. A pattern split across two reads is
caught by keeping the last 5 bytes in front of the next read and subtracting
what that tail held on its own.

Subscribers of one group (one plain subscriber, or all members of a queue
group) publish their running counts in a shared array and stop when the group
total reaches its target; each then sends a PING and reads to the PONG, so
any surplus (duplicate) message already on its way is counted too.
"""

import json
import socket
import ssl
import time

TAIL = 5                      # longest pattern we count ("PONG\r\n") minus one
RECV_SIZE = 256 * 1024
CHUNK_TARGET = 64 * 1024
LETTERS = b"abcdefghijklmnopqrstuvwxyz"
CONNECT = b'CONNECT {"verbose":false,"pedantic":false,"name":"bench"}\r\n'
CONNECT_TLS = b'CONNECT {"verbose":false,"pedantic":false,"tls_required":true,"name":"bench"}\r\n'
POLL = 0.2                    # socket timeout so loops notice the abort event


class LoadError(Exception):
    pass


def payload(n):
    return (LETTERS * (n // 26 + 1))[:n]


def pub_frame(subject, n, reply=None):
    if reply:
        return b"PUB %s %s %d\r\n%s\r\n" % (subject, reply, n, payload(n))
    return b"PUB %s %d\r\n%s\r\n" % (subject, n, payload(n))


def msg_frame_len(subject, sid, n):
    """Length of the MSG frame a subscriber with this sid receives."""
    return len(b"MSG %s %s %d\r\n" % (subject, sid, n)) + n + 2


def _tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE     # we measure throughput, not trust
    return ctx


def _read_until(sock, data, marker, deadline):
    """Read until marker is in data; return (data up to and including marker, rest)."""
    while marker not in data:
        if b"-ERR" in data and data.endswith(b"\r\n"):
            raise LoadError("server said %s" % data[data.index(b"-ERR"):][:120].decode("latin-1").strip())
        if time.monotonic() > deadline:
            raise LoadError("timed out waiting for %r" % marker)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            raise LoadError("server closed the connection (%r)" % data[-120:])
        data += chunk
    i = data.index(marker) + len(marker)
    return data[:i], data[i:]


def connect(port, tls=False, ops=b"", timeout=20.0, host="127.0.0.1", auth=None):
    """Connect, handshake, send ops, PING and wait for the PONG. auth:
    (user, password) for CONNECT, or None.

    Returns (socket, bytes received after the PONG)."""
    deadline = time.monotonic() + timeout
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(POLL)
    info, rest = _read_until(sock, b"", b"\r\n", deadline)
    if not info.startswith(b"INFO "):
        raise LoadError("expected INFO, got %r" % info[:80])
    if tls:
        if b'"tls_required":true' not in info.replace(b" ", b""):
            raise LoadError("server does not offer TLS")
        sock.settimeout(timeout)
        sock = _tls_context().wrap_socket(sock)
        sock.settimeout(POLL)
        rest = b""
    hello = CONNECT_TLS if tls else CONNECT
    if auth:
        hello = hello.replace(b'"name"', b'"user":"%s","pass":"%s","name"' % auth)
    sock.sendall(hello + ops + b"PING\r\n")
    _, rest = _read_until(sock, rest, b"PONG\r\n", deadline)
    return sock, rest


def _wait_start(ctl, name):
    ctl.ready_q.put(("ready", name))
    if not ctl.start.wait(ctl.timeout):
        raise LoadError("start signal never came")
    if ctl.abort.is_set():
        raise LoadError("aborted before start")


def run_worker(fn, ctl, name, *args):
    """Process target: run fn, report its result or its error; never a traceback."""
    try:
        result = fn(ctl, name, *args)
    except LoadError as e:
        result = {"error": str(e)}
    except (OSError, ValueError) as e:          # ssl.SSLError is an OSError
        result = {"error": "%s: %s" % (type(e).__name__, e)}
    except KeyboardInterrupt:
        result = {"error": "interrupted"}
    if "error" in result:
        ctl.ready_q.put(("failed", name, result["error"]))  # in case the runner still waits
    ctl.done_q.put(("done", name, result))


def publisher(ctl, name, port, tls, plan, cycles, auth=None):
    """Send `cycles` repetitions of plan [(subject, size)], then PING/PONG."""
    sock, _ = connect(port, tls, auth=auth)
    cycle = b"".join(pub_frame(s, n) for s, n in plan)
    per_chunk = max(1, CHUNK_TARGET // len(cycle))
    chunk = cycle * per_chunk
    full, rem = divmod(cycles, per_chunk)
    _wait_start(ctl, name)
    c0 = time.process_time()
    sock.settimeout(ctl.timeout)
    sendall = sock.sendall
    abort = ctl.abort
    for i in range(full):
        sendall(chunk)
        if i & 31 == 31 and abort.is_set():   # a cheap look every 2 MiB or so
            sock.close()
            return {"error": "aborted after %d of %d msgs" % ((i + 1) * per_chunk * len(plan),
                                                             cycles * len(plan))}
    if rem:
        sendall(cycle * rem)
    sendall(b"PING\r\n")
    sock.settimeout(POLL)
    _read_until(sock, b"", b"PONG\r\n", time.monotonic() + ctl.timeout)
    t_done = time.monotonic()
    ctl.pub_done.set()
    sock.close()
    return {"sent": cycles * len(plan), "t_done": t_done, "cpu_s": time.process_time() - c0}


class StreamCounter:
    """Counts MSG frames, PING, PONG and -ERR in a stream fed read by read.

    Read into .view, then call feed(n). The last TAIL bytes of the stream are
    kept in front of .view so that a PING/PONG/-ERR split across reads is seen
    whole; what the tail held on its own was counted the time before."""

    def __init__(self, size=RECV_SIZE):
        self.buf = bytearray(TAIL + size)
        self.view = memoryview(self.buf)[TAIL:]
        self.tail = 0
        self.msgs = self.nbytes = self.pings = self.pongs = self.errs = 0
        self.err_text = ""

    def feed(self, n):
        """Account for n new bytes in .view; return how many PINGs they completed."""
        buf, start, end = self.buf, TAIL - self.tail, TAIL + n
        # Hot path: one C-speed count of "M" (only "MSG " holds one, see the
        # module docstring). "P" (PING, PONG) and "-" (-ERR) are rare: look for
        # them with memchr-speed finds and count whole patterns only then.
        self.msgs += buf.count(b"M", TAIL, end)
        p = 0
        if buf.find(b"P", start, end) >= 0 or buf.find(b"-", start, end) >= 0:
            p = buf.count(b"PING\r\n", start, end) - buf.count(b"PING\r\n", start, TAIL)
            self.pings += p
            self.pongs += buf.count(b"PONG\r\n", start, end) - buf.count(b"PONG\r\n", start, TAIL)
            e = buf.count(b"-ERR", start, end) - buf.count(b"-ERR", start, TAIL)
            if e:
                self.errs += e
                i = buf.find(b"-ERR", start, end)
                if i >= 0 and not self.err_text:
                    self.err_text = bytes(buf[i:min(end, i + 80)]).split(b"\r\n")[0].decode("latin-1")
        self.nbytes += n
        self.tail = min(TAIL, end - start)
        buf[TAIL - self.tail:TAIL] = buf[end - self.tail:end]
        return p

    def message_bytes(self):
        """Bytes of MSG frames: everything but the PING and PONG frames seen."""
        return self.nbytes - 6 * (self.pings + self.pongs)


def subscriber(ctl, name, port, tls, ops, slot, group_slots, target, auth=None):
    """Count MSG frames until the group reaches target, then check for surplus."""
    sock, early = connect(port, tls, ops, auth=auth)
    counts = ctl.counts
    sc = StreamCounter()
    view = sc.view
    _wait_start(ctl, name)
    c0 = time.process_time()
    deadline = time.monotonic() + ctl.timeout
    closed = timed_out = False
    t_done = None
    pending = early                  # bytes that arrived with the setup PONG
    pinged = False
    while True:
        # A group that expects nothing waits for the publisher, then checks for surplus.
        if not pinged and sum(counts[i] for i in group_slots) >= target and (
                target or ctl.pub_done.is_set()):
            t_done = time.monotonic()
            sock.sendall(b"PING\r\n")   # anything before its PONG is surplus
            pinged = True
            deadline = time.monotonic() + 10.0
        if pinged and sc.pongs:
            break
        if ctl.abort.is_set() or time.monotonic() > deadline:
            timed_out = True
            break
        if pending:
            n = len(pending)
            view[:n] = pending
            pending = b""
        else:
            try:
                n = sock.recv_into(view)
            except socket.timeout:
                continue
            except OSError:
                closed = True
                break
            if n == 0:
                closed = True
                break
        p = sc.feed(n)
        if p:
            sock.sendall(b"PONG\r\n" * p)     # server keep-alive: answer it
        counts[slot] = sc.msgs
    sock.close()
    return {"msgs": sc.msgs, "bytes": sc.message_bytes(), "t_done": t_done,
            "timed_out": timed_out, "closed": closed, "errors": sc.errs, "err_text": sc.err_text,
            "cpu_s": time.process_time() - c0}


class FrameReader:
    """Parses MSG frames for the low-rate workers (request/reply, probes)."""

    def __init__(self, sock, data=b""):
        self.sock = sock
        self.buf = bytearray(data)

    def read_msg(self, deadline, abort=None):
        """Return (subject, sid, reply, payload) of the next MSG; answer PINGs."""
        buf = self.buf
        while True:
            i = buf.find(b"\r\n")
            if i >= 0:
                line = bytes(buf[:i])
                if line.startswith(b"MSG "):
                    parts = line.split()
                    size = int(parts[-1])
                    if len(buf) >= i + 2 + size + 2:
                        data = bytes(buf[i + 2:i + 2 + size])
                        del buf[:i + 2 + size + 2]
                        reply = parts[3] if len(parts) == 5 else None
                        return parts[1], parts[2], reply, data
                else:
                    del buf[:i + 2]
                    if line == b"PING":
                        self.sock.sendall(b"PONG\r\n")
                    elif line.startswith(b"-ERR"):
                        raise LoadError("server said %s" % line.decode("latin-1"))
                    continue
            if time.monotonic() > deadline or (abort is not None and abort.is_set()):
                return None
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise LoadError("server closed the connection")
            buf += chunk


def responder(ctl, name, port, subject):
    """Answer every request on subject with its own payload, until stopped."""
    sock, early = connect(port, ops=b"SUB %s 1\r\n" % subject)
    reader = FrameReader(sock, early)
    _wait_start(ctl, name)
    answered = 0
    deadline = time.monotonic() + ctl.timeout
    while not ctl.stop.is_set():
        m = reader.read_msg(min(deadline, time.monotonic() + POLL), ctl.abort)
        if m is None:
            if ctl.abort.is_set() or time.monotonic() > deadline:
                break
            continue
        _, _, reply, data = m
        if reply:
            sock.sendall(b"PUB %s %d\r\n%s\r\n" % (reply, len(data), data))
            answered += 1
    sock.close()
    return {"answered": answered}


def requester(ctl, name, port, subject, size, count, warmup):
    """Sequential requests with a unique reply inbox each; latency per round trip."""
    prefix = b"_INBOX.bench%d" % int(time.time() * 1000 % 1000000)
    sock, early = connect(port, ops=b"SUB %s.* 1\r\n" % prefix)
    reader = FrameReader(sock, early)
    body = payload(size)
    _wait_start(ctl, name)
    lat = []
    deadline = time.monotonic() + ctl.timeout
    t_measure = None
    bad = 0
    clock = time.perf_counter_ns
    for i in range(warmup + count):
        if i == warmup:
            t_measure = time.monotonic()
        inbox = b"%s.%d" % (prefix, i)
        t0 = clock()
        sock.sendall(b"PUB %s %s %d\r\n%s\r\n" % (subject, inbox, size, body))
        m = reader.read_msg(deadline, ctl.abort)
        t1 = clock()
        if m is None:
            sock.close()
            return {"replies": len(lat), "bad": bad, "timed_out": True, "lat_ns": []}
        if m[0] != inbox or m[3] != body:
            bad += 1
        if i >= warmup:
            lat.append(t1 - t0)
    t_done = time.monotonic()
    sock.close()
    return {"replies": len(lat), "bad": bad, "timed_out": False, "lat_ns": lat,
            "t_measure": t_measure, "t_done": t_done}


def idle_holder(ctl, name, port, conns, batch=250):
    """Open conns idle connections (CONNECT + PING answered), hold them until stopped."""
    msg = CONNECT + b"PING\r\n"
    socks = []
    ok = 0
    deadline = time.monotonic() + ctl.timeout
    try:
        for start in range(0, conns, batch):
            group = []
            for _ in range(min(batch, conns - start)):
                s = socket.create_connection(("127.0.0.1", port), timeout=10.0)
                group.append(s)
                socks.append(s)
            for s in group:
                s.sendall(msg)
            for s in group:
                data = b""
                while b"PONG\r\n" not in data:
                    if time.monotonic() > deadline:
                        raise LoadError("timed out after %d connections" % ok)
                    chunk = s.recv(65536)
                    if not chunk:
                        raise LoadError("server closed connection %d" % (ok + 1))
                    data += chunk
                ok += 1
        ctl.ready_q.put(("ready", name))
        ctl.stop.wait(ctl.timeout)
    finally:
        for s in socks:
            s.close()
    return {"connected": ok}


def probe_route(pub_port, sub_port, subject, timeout=15.0):
    """Wait until a message published on pub_port reaches a subscriber on sub_port.

    Used for clusters: once the probe's interest has crossed the route, the
    interest registered earlier on the same node has crossed too (one route
    connection carries RS+ in order)."""
    deadline = time.monotonic() + timeout
    sub, early = connect(sub_port, ops=b"SUB %s 1\r\n" % subject)
    pub, _ = connect(pub_port)
    reader = FrameReader(sub, early)
    try:
        while time.monotonic() < deadline:
            pub.sendall(b"PUB %s 2\r\nhi\r\nPING\r\n" % subject)
            if reader.read_msg(time.monotonic() + 0.2) is not None:
                return True
        return False
    finally:
        sub.close()
        pub.close()


def connect_info(port):
    """The server's INFO as a dict (for notes like the server version)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as s:
        s.settimeout(POLL)
        line, _ = _read_until(s, b"", b"\r\n", time.monotonic() + 5.0)
    return json.loads(line[5:].strip())
