"""Shared by every campaign: the Report (figures and failures), process
figures from /proc, starting a server process with a chosen interpreter,
the monitor's JSON, bounded waits, and the cluster Node that can be
SIGKILLed and started again on the same ports.
"""

import json
import os
import resource
import signal
import socket
import sys
import time

from tests import util
from tests.util import ROOT, ServerProcess, free_port, wait_for


def perf_checks():
    """The package's PERF_CHECKS switch (see stresslib/__init__.py), read
    at call time so that a caller setting stresslib.PERF_CHECKS is heard."""
    return sys.modules[__package__].PERF_CHECKS


class Report:
    """Figures (name -> value, in insertion order) and failures (strings)."""

    def __init__(self, name):
        self.name = name
        self.figures = {}
        self.failures = []
        self.t0 = time.monotonic()

    def fig(self, key, value):
        self.figures[key] = value

    def fail(self, msg):
        if len(self.failures) < 50:
            self.failures.append(msg)

    def check(self, cond, msg):
        if not cond:
            self.fail(msg)
        return cond

    def perf(self, cond, msg):
        """A latency or memory bound: a failure when PERF_CHECKS is on,
        otherwise only noted among the figures."""
        if perf_checks():
            return self.check(cond, msg)
        if not cond:
            self.fig("bound not enforced (GNATSD_PERF_ASSERTS)", msg)
        return True

    @property
    def ok(self):
        return not self.failures

    def text(self):
        lines = ["== %s (%.1f s)" % (self.name, time.monotonic() - self.t0)]
        for k, v in self.figures.items():
            lines.append("  %-34s %s" % (k, v))
        for f in self.failures:
            lines.append("  FAIL: %s" % f)
        lines.append("  result: %s" % ("ok" if self.ok else "FAILED"))
        return "\n".join(lines)


def proc_mem(pid):
    """(current RSS, peak RSS) of a process in KiB, from /proc."""
    rss = hwm = 0
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def raise_nofile(want):
    """Raise this process's open-file limit (children inherit it, so the
    server started next gets it too). Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def recv_ready(sock, size=65536):
    """What a readable nonblocking socket has: bytes, b"" at EOF or on an
    error, None when nothing has arrived after all (a spurious wake-up)."""
    try:
        return sock.recv(size)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def server_health(srv, rep):
    """A server process must still be running and its log must hold no
    traceback and no internal error."""
    out = srv.output()
    rep.check(srv.proc.poll() is None, "server process died (rc=%s): %s"
              % (srv.proc.poll(), out[-1500:]))
    for bad in ("Traceback", "internal error"):
        i = out.find(bad)
        rep.check(i < 0, "server log has %r: %s" % (bad, out[max(0, i - 200):i + 1500]))


def start_server(*args, config=None, python=None, port=None):
    """ServerProcess with a chosen interpreter (None: the test default)."""
    if python:
        saved, util.PYTHON = util.PYTHON, python
        try:
            return ServerProcess(*args, config=config, port=port)
        finally:
            util.PYTHON = saved
    return ServerProcess(*args, config=config, port=port)


def monitor_get(port, path, timeout=5.0):
    """GET http://127.0.0.1:port/path -> parsed JSON (or raises OSError)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(b"GET %s HTTP/1.0\r\nHost: x\r\n\r\n" % path.encode())
        data = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            d = s.recv(1 << 20)
            if not d:
                break
            data += d
    finally:
        s.close()
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n")[0]:
        raise OSError("monitor answered %r" % head[:80])
    return json.loads(body)


def settle_rss(pid, seconds=2.0):
    """RSS after letting the server go idle for a moment (KiB); without
    PERF_CHECKS the figure is informative only, so nothing waits for it."""
    idle_for_rss(seconds)
    return proc_mem(pid)[0]


def idle_for_rss(seconds):
    """An idle moment before an RSS figure (only when bounds apply)."""
    if perf_checks():
        time.sleep(seconds)


CERTS = os.path.join(ROOT, "configs", "certs")


def varz(mport):
    """/varz, its `subscriptions` the clients' only: the server's own (the
    system account's request handlers, gnatsd.py's and nats-server's) are
    taken out, so a campaign's exact counts stay its own."""
    try:
        v = monitor_get(mport, "/varz", 3)
    except (OSError, ValueError):
        return None
    try:
        acc = monitor_get(mport, "/accountz?acc=%24SYS", 3)["account_detail"]
        v["subscriptions"] -= acc["subscriptions"]
    except (OSError, ValueError, KeyError, TypeError):
        pass                # no /accountz (an older server): counts as they are
    return v


class Node:
    """A cluster member with fixed client, cluster and monitor ports, so it
    can be SIGKILLed and started again in the same place."""

    def __init__(self, routes=(), python=None):
        self.port, self.cport, self.mport = free_port(), free_port(), free_port()
        self.routes = list(routes)
        self.python = python
        self.srv = None
        self.old_logs = []
        self.start()

    def start(self):
        args = ["-m", str(self.mport), "--cluster", "nats://127.0.0.1:%d" % self.cport]
        if self.routes:
            args += ["--routes", ",".join(self.routes)]
        self.srv = start_server(*args, python=self.python, port=self.port)
        self.server_id = wait_for(lambda: (varz(self.mport) or {}).get("server_id"), 5)
        if not self.server_id:
            # mesh_ok could never hold: say so here, not as a heal timeout
            raise RuntimeError("no server_id from /varz of %s:\n%s" % (args, self.srv.output()[-2000:]))

    @property
    def route_url(self):
        return "nats://127.0.0.1:%d" % self.cport

    def routez(self):
        try:
            return monitor_get(self.mport, "/routez?subs=1", 3)
        except (OSError, ValueError):
            return None

    def remote_ids(self):
        rz = self.routez()
        return None if rz is None else sorted(r.get("remote_id", "") for r in rz["routes"])

    def kill(self):
        self.srv.proc.send_signal(signal.SIGKILL)
        self.srv.proc.wait(5)
        self.old_logs.append(self.srv.output())
        self.srv.stop()

    def stop(self):
        if self.srv is not None:
            self.srv.stop()
            self.old_logs.append(self.srv.output())
