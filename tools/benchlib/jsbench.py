"""JetStream scenarios (group "jetstream"): one nats.go worker, goload's js roles.

The server runs with JetStream on a fresh store directory (-js -sd, file
storage, the default sync policy on both sides). goload (jsload.go) sets up
the stream or bucket (and prefills it for js-fetch and kv-get) before it says
"ready", so the measured window holds only the operations themselves: from
the start line to "reached", which goload prints once the server has answered
every request (publish acks, fetches, KV replies; for js-fetch a final flush
proves every ack was read). Then goload checks the outcome against the server
(stream count, consumer ack floor, bucket revisions) and reports; any
mismatch or error is FAIL. Server CPU per operation = utime+stime over the
window / operations. p50/p99 are client-side latencies of one synchronous
request (js-pub with one in flight, kv-put, kv-get).
"""

import json
import os
import shutil
import subprocess
import time

from . import clients


def js_flags(logdir, label):
    store = os.path.join(logdir, "js-%s-%d" % (label, time.monotonic_ns()))
    return store, ["-js", "-sd", store]


def measure(run, timeout):
    """Run sc.js on run.servers[0]; the result dict bench.py summarizes."""
    sc, srv = run.sc, run.servers[0]
    binary = clients.go_binary(run.logdir)            # raises Unavailable
    cmd = [binary, "-role", sc.js, "-url", "nats://127.0.0.1:%d" % srv.port, "-size", str(sc.size),
           "-n", str(run.msgs), "-inflight", str(sc.inflight), "-batch", "100",
           "-timeout", "%ds" % int(timeout)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run.jsproc = proc
    lines = clients._Lines(proc, run.ctl)
    if lines.next(timeout + 60.0) != "ready":
        return {"status": "ERROR", "note": "goload %s: %s" % (sc.js, lines.failure())}
    cpu0, t0 = srv.cpu(), time.monotonic()
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    line = lines.next(timeout + 15.0)
    t1, cpu1 = time.monotonic(), srv.cpu()
    if line == "reached":
        line = lines.next(60.0)
    if not line.startswith("{"):
        return {"status": "ERROR", "note": "goload %s: %s" % (sc.js, lines.failure())}
    res = json.loads(line)
    proc.wait(10.0)
    problems = list(res.get("errors") or [])
    if res["msgs"] != run.msgs and not problems:
        problems.append("%d of %d operations" % (res["msgs"], run.msgs))
    if not srv.alive():
        problems.append("server died: %s" % srv.log_tail())
    wall = t1 - t0
    out = {"status": "FAIL" if problems else "PASS", "note": "; ".join(problems[:3]),
           "cpu_s": cpu1 - cpu0, "wall_s": wall, "check": res.get("check", ""),
           "msgs_per_s": run.msgs / wall if wall > 0 else 0.0,
           "us_per_msg": (cpu1 - cpu0) * 1e6 / run.msgs}
    if res.get("p50_us"):
        out["p50_us"], out["p99_us"] = res["p50_us"], res["p99_us"]
    return out


def cleanup(run):
    proc = getattr(run, "jsproc", None)
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(5.0)
    if getattr(run, "js_store", None):
        shutil.rmtree(run.js_store, ignore_errors=True)
