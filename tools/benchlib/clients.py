"""Load workers on real client libraries: nats-py (asyncio) and nats.go.

The raw-socket workers in load.py drain the server as fast as the kernel
allows and never parse. Applications read through a client library that
parses every message, reads in smaller pieces and writes through its own
buffer, which changes how much output the server queues and how it batches.
These workers run the flow scenarios through the libraries themselves.

Each worker is a process started by the runner through load.run_worker, with
the same ready / start / done handshake and the same result fields as
load.publisher and load.subscriber, so scenarios.Run checks them alike: every
subscriber must count exactly its target, with the exact payload bytes (a
library hides the frames), and after reaching it flushes (PING/PONG) and
lets its callback drain, so a surplus (duplicate) message already on its way
is counted too. Asynchronous client errors (slow consumer, disconnect) fail
the run; no client reconnects.

nats-py must be importable by the load generator's python (sys.executable).
nats.go: goload/*.go is built once per bench run into its log directory,
offline, in GOPATH mode against Debian's packages:
    apt-get install golang-go golang-github-nats-io-go-nats-dev
"""

import json
import os
import resource
import selectors
import shutil
import subprocess
import sys
import time

from . import load

GOPATH = "/usr/share/gocode"          # where Debian's golang-*-dev packages put sources
GO_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "goload")  # main.go, jsload.go
MAX_ERRORS = 10

_go_built = {}                        # workdir -> binary path, or the reason it cannot be built


class Unavailable(Exception):
    """A client library cannot be used here; the message says why and what to install."""


def nats_py_reason():
    """None if nats-py imports in this interpreter, else why not."""
    try:
        import nats  # noqa: F401
    except ImportError as e:
        return "nats-py is not installed for %s (%s): pip install nats-py" % (sys.executable, e)
    return None


def go_binary(workdir):
    """Path of the goload program, built on first use into workdir.

    Raises Unavailable with the reason (cached: a failed build is not retried
    for every scenario)."""
    if workdir not in _go_built:
        try:
            _go_built[workdir] = _build_go(workdir)
        except Unavailable as e:
            _go_built[workdir] = e
    got = _go_built[workdir]
    if isinstance(got, Unavailable):
        raise got
    return got


def _build_go(workdir):
    go = shutil.which("go") or ("/usr/lib/go/bin/go" if os.access("/usr/lib/go/bin/go", os.X_OK) else None)
    hint = "apt-get install golang-go golang-github-nats-io-go-nats-dev"
    if go is None:
        raise Unavailable("no Go toolchain (%s)" % hint)
    if not os.path.isdir(os.path.join(GOPATH, "src", "github.com", "nats-io", "nats.go")):
        raise Unavailable("nats.go sources not in %s (%s)" % (GOPATH, hint))
    build = os.path.join(workdir, "goload")
    os.makedirs(build, exist_ok=True)
    for name in os.listdir(GO_SOURCE):
        if name.endswith(".go"):
            shutil.copy(os.path.join(GO_SOURCE, name), os.path.join(build, name))
    out = os.path.join(build, "goload")
    # GOPATH mode finds nats.go (and its nkeys/nuid/x/crypto imports) in
    # Debian's tree; GOPROXY=off makes any attempt to download an error.
    env = dict(os.environ, GO111MODULE="off", GOPATH=GOPATH, GOPROXY="off", GOFLAGS="",
               GOCACHE=os.path.join(build, "cache"))
    try:
        r = subprocess.run([go, "build", "-o", out, "."], cwd=build, env=env,
                           capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as e:
        raise Unavailable("cannot run %s build: %s" % (go, e))
    if r.returncode != 0:
        raise Unavailable("cannot build goload offline: %s"
                          % (r.stderr.strip().replace("\n", " / ")[-300:] or r.returncode))
    return out


# -- nats.go ----------------------------------------------------------------------

def go_client(ctl, name, binary, role, port, subject, size, count):
    """Run goload as publisher or subscriber; translate its lines into a result."""
    cmd = [binary, "-role", role, "-url", "nats://127.0.0.1:%d" % port, "-subject", subject.decode(),
           "-size", str(size), "-n", str(count), "-timeout", "%ds" % int(ctl.timeout)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        lines = _Lines(proc, ctl)
        if lines.next(ctl.timeout) != "ready":
            raise load.LoadError("goload %s: %s" % (role, lines.failure()))
        load._wait_start(ctl, name)
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        t_done = None
        line = lines.next(ctl.timeout + 15.0)
        if line == "reached":
            t_done = time.monotonic()
            line = lines.next(30.0)
        if not line.startswith("{"):
            raise load.LoadError("goload %s: %s" % (role, lines.failure()))
        if role == "pub":
            t_done = time.monotonic()
            ctl.pub_done.set()
        res = json.loads(line)
        proc.wait(10.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5.0)
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    return _result(role, res["msgs"], res["bytes"], res.get("sent", 0), res["timed_out"],
                   res["errors"] or [], t_done, cpu.ru_utime + cpu.ru_stime)


class _Lines:
    """stdout of a child, line by line, with a deadline and an eye on ctl.abort."""

    def __init__(self, proc, ctl):
        self.proc, self.ctl = proc, ctl
        self.buf = b""
        self.sel = selectors.DefaultSelector()
        self.sel.register(proc.stdout, selectors.EVENT_READ)

    def next(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            if self.ctl.abort.is_set() or time.monotonic() > deadline:
                return ""
            if self.sel.select(load.POLL):
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    return ""
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("utf-8", "replace").strip()

    def failure(self):
        if self.proc.poll() is None:
            return "no answer in time" + (" (aborted)" if self.ctl.abort.is_set() else "")
        err = self.proc.stderr.read().decode("utf-8", "replace").strip()
        return "exited with %s: %s" % (self.proc.returncode, err[-200:])


# -- nats-py ------------------------------------------------------------------------

def py_client(ctl, name, role, port, subject, size, count):
    """Publisher or subscriber on nats-py, in a fresh event loop."""
    import asyncio
    try:
        return asyncio.run(_py_run(ctl, name, role, port, subject.decode(), size, count))
    except Exception as e:      # nats-py's own errors are not OSErrors: report, no traceback
        return {"error": "nats-py %s: %s: %s" % (role, type(e).__name__, e)}


async def _py_run(ctl, name, role, port, subject, size, count):
    import asyncio
    import nats
    errs = []
    closing = False

    async def on_error(e):
        if len(errs) < MAX_ERRORS:
            errs.append("%s: %s" % (type(e).__name__, e))

    async def on_disconnect():
        if not closing:
            errs.append("disconnected")

    nc = await nats.connect("nats://127.0.0.1:%d" % port, name="bench-py", allow_reconnect=False,
                            connect_timeout=10, error_cb=on_error, disconnected_cb=on_disconnect)
    loop = asyncio.get_running_loop()
    got = {"msgs": 0, "bytes": 0, "t_done": None}
    reached = asyncio.Event()
    sub = None
    if role == "sub":
        async def on_msg(msg):
            got["bytes"] += len(msg.data)
            got["msgs"] += 1
            if got["msgs"] == count:
                got["t_done"] = time.monotonic()
                reached.set()
        # 0 = no limit: the library's own slow-consumer drop would lose messages
        sub = await nc.subscribe(subject, cb=on_msg, pending_msgs_limit=0, pending_bytes_limit=0)
    await nc.flush(ctl.timeout)
    # Wait for the start signal off the loop, so the loop keeps serving the connection.
    await loop.run_in_executor(None, load._wait_start, ctl, name)
    c0 = time.process_time()
    sent, timed_out = 0, False
    if role == "pub":
        body = load.payload(size)
        publish, abort = nc.publish, ctl.abort
        for i in range(count):
            await publish(subject, body)
            if i & 0xFFFF == 0xFFFF and abort.is_set():
                break
            sent += 1
        await nc.flush(ctl.timeout)
        got["t_done"] = time.monotonic()
        ctl.pub_done.set()
    else:
        deadline = time.monotonic() + ctl.timeout
        while not reached.is_set() and not nc.is_closed:     # closed: cut by the server
            if ctl.abort.is_set() or time.monotonic() > deadline:
                timed_out = True
                break
            try:
                await asyncio.wait_for(reached.wait(), load.POLL)
            except asyncio.TimeoutError:
                pass
        # Anything already on its way arrives before the PONG; then let the
        # callback catch up with what the library has read (sub.delivered).
        try:
            await nc.flush(10)
        except Exception as e:  # e.g. the server cut us as a slow consumer
            errs.append("final flush: %s: %s" % (type(e).__name__, e))
        deadline = time.monotonic() + 10.0
        while got["msgs"] < sub.delivered and time.monotonic() < deadline and not nc.is_closed:
            await asyncio.sleep(0.001)
    cpu = time.process_time() - c0
    closing = True
    if not nc.is_closed:
        await nc.close()
    return _result(role, got["msgs"], got["bytes"], sent, timed_out, errs, got["t_done"], cpu)


def _result(role, msgs, nbytes, sent, timed_out, errs, t_done, cpu):
    """The result fields load.publisher / load.subscriber report."""
    if role == "pub":
        if errs:
            return {"error": "; ".join(errs[:3])}
        return {"sent": sent, "t_done": t_done, "cpu_s": cpu}
    return {"msgs": msgs, "bytes": nbytes, "t_done": t_done, "timed_out": timed_out, "closed": False,
            "errors": len(errs), "err_text": "; ".join(errs[:3]), "cpu_s": cpu}
