"""Test helpers: free ports, a real `python3 gnatsd.py` process, and a raw
protocol client that reads with timeouts. No mocks: real sockets only."""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GNATSD = os.path.join(ROOT, "gnatsd.py")
PYTHON = sys.executable


def free_port():
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


class ServerProcess:
    """`python3 gnatsd.py ARGS` as a user starts it; log captured to a file."""

    def __init__(self, *args, port=None, config=None, wait=True, env=None):
        self.port = port or free_port()
        self.tmp = tempfile.mkdtemp(prefix="gnatsd-test-")
        self.log_path = os.path.join(self.tmp, "out.log")
        cmd = [PYTHON, GNATSD, "-a", "127.0.0.1", "-p", str(self.port)]
        if config is not None:
            path = os.path.join(self.tmp, "server.conf")
            with open(path, "w") as f:
                f.write(config)
            self.config_path = path
            cmd += ["-c", path]
        cmd += list(args)
        self.cmd = cmd
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
                return wait_port(self.port, max(0.1, deadline - time.monotonic()))
            time.sleep(0.05)
        return False

    def output(self):
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
        self.logf.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class RawClient:
    """A protocol-level client: send bytes, expect bytes, with timeouts."""

    def __init__(self, port, connect=b'{"verbose":false,"pedantic":false}', host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
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
