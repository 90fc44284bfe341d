#!/usr/bin/env python3
"""JetStream consumer benchmark: gnatsd.py ("ours") against nats-server 2.15.1,
the same scenarios and the same file-storage stream on both, one after the other.

Usage (from the checkout root):

    python3 tools/bench_js.py                      # 20,000 messages of 128 B
    python3 tools/bench_js.py --msgs 50000 --idle 10000

Scenarios (server CPU per consumed message: utime+stime of the server
process over the consuming window, divided by the messages; throughput is
messages over that window's wall time):
  pull   durable pull consumer draining the stream with nats-py's fetch in
         batches of 100, an explicit ack per message (a publish each);
  push   push consumer with ack_policy none onto a plain subscription;
  idle   N ephemeral push consumers with a 1 s idle heartbeat and nobody
         listening (--idle N, default 0 = skipped; at most 1000, both servers'
         default consumer limit per stream): server CPU per second while
         they sit idle (their heartbeats are the only work).

  --scale  store scale instead (tools/benchlib/jsscale.py): a stream of
         --msgs messages (default then 1,000,000 of --size 128 B) and a KV
         bucket of --keys keys (default 100,000), loaded by a pipelined
         raw-socket publisher; RSS, start-up after a clean stop and after
         kill -9, KV get (direct get last_by_subj) and STREAM.INFO p50/p99.

The load generator is nats-py, which cannot saturate nats-server: the Go
figures are a floor, the ratio of CPU per message is what to read.
`python3 tools/bench.py --scenario jetstream` is the side-by-side JetStream
benchmark (nats.go load: publish, pull, KV); this script stays for the push
consumer and idle-heartbeat figures, which that group does not cover.
Options: --msgs N, --idle N, --python PATH (interpreter for ours, default
this one), --go PATH (default /opt/ns/bin/nats-server).
"""

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import nats

HERE = os.path.dirname(os.path.abspath(__file__))
GNATSD = os.path.join(os.path.dirname(HERE), "gnatsd.py")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def connect(port):
    for _ in range(200):
        try:
            return await nats.connect("nats://127.0.0.1:%d" % port, max_reconnect_attempts=0)
        except Exception:
            await asyncio.sleep(0.05)
    raise RuntimeError("server did not start")


async def fill(nc, js, n):
    await js.add_stream(name="B", subjects=["b.>"], storage="file")
    payload = b"x" * 128
    for i in range(n):
        await nc.publish("b.a", payload)
        if i % 1000 == 999:
            await nc.flush()
    while (await js.stream_info("B")).state.messages < n:
        await asyncio.sleep(0.05)


async def bench_pull(nc, js, pid, n):
    await js.add_consumer("B", durable_name="P", ack_policy="explicit")
    psub = await js.pull_subscribe_bind("P", stream="B")
    c0, t0, got = cpu_seconds(pid), time.monotonic(), 0
    while got < n:
        msgs = await psub.fetch(100, timeout=10)
        for m in msgs:
            await m.ack()
        got += len(msgs)
    await nc.flush()
    while (await js.consumer_info("B", "P")).num_ack_pending:
        await asyncio.sleep(0.01)
    return cpu_seconds(pid) - c0, time.monotonic() - t0


async def bench_push(nc, js, pid, n):
    done = asyncio.Event()
    count = [0]

    async def cb(m):
        count[0] += 1
        if count[0] >= n:
            done.set()
    await nc.subscribe("dl.x", cb=cb)
    await nc.flush()
    c0, t0 = cpu_seconds(pid), time.monotonic()
    await js.add_consumer("B", durable_name="Q", ack_policy="none", deliver_subject="dl.x")
    await asyncio.wait_for(done.wait(), 300)
    return cpu_seconds(pid) - c0, time.monotonic() - t0


async def bench_idle(nc, js, pid, n):
    await js.add_stream(name="I", subjects=["i.>"], storage="file")
    for i in range(n):
        await js.add_consumer("I", ack_policy="none", deliver_subject="idle.%d" % i, idle_heartbeat=1.0,
                              deliver_policy="new", inactive_threshold=3600.0)
    await asyncio.sleep(2)
    c0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(5)
    return cpu_seconds(pid) - c0, time.monotonic() - t0


async def run_side(cmd, args):
    port = free_port()
    store = tempfile.mkdtemp(prefix="bench-js-")
    proc = subprocess.Popen(cmd + ["-js", "-sd", store, "-p", str(port), "-a", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        nc = await connect(port)
        js = nc.jetstream()
        await fill(nc, js, args.msgs)
        out = {"pull": await bench_pull(nc, js, proc.pid, args.msgs),
               "push": await bench_push(nc, js, proc.pid, args.msgs)}
        if args.idle:
            out["idle"] = await bench_idle(nc, js, proc.pid, args.idle)
        await nc.close()
        return out
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(store, ignore_errors=True)


def main_scale(args):
    from benchlib import jsscale

    def say(text):
        print(text, flush=True)
    args.msgs = args.msgs or 1000000
    res = {"ours": jsscale.run_side("gnatsd.py", [args.python, GNATSD], args, say),
           "go": jsscale.run_side("nats-server", [args.go], args, say)}
    print(jsscale.report(res, args))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--msgs", type=int, default=0, help="default 20,000 (--scale: 1,000,000)")
    ap.add_argument("--idle", type=int, default=0)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--go", default="/opt/ns/bin/nats-server")
    ap.add_argument("--scale", action="store_true", help="the store-scale run (see above)")
    ap.add_argument("--keys", type=int, default=100000, help="--scale: KV keys")
    ap.add_argument("--size", type=int, default=128, help="--scale: message size")
    ap.add_argument("--window", type=int, default=1000, help="--scale: publishes in flight")
    ap.add_argument("--lookups", type=int, default=5000, help="--scale: KV gets timed")
    ap.add_argument("--infos", type=int, default=500, help="--scale: STREAM.INFO requests timed")
    args = ap.parse_args(argv)
    if args.scale:
        return main_scale(args)
    args.msgs = args.msgs or 20000
    res = {"ours": asyncio.run(run_side([args.python, GNATSD], args)),
           "go": asyncio.run(run_side([args.go], args))}
    n = args.msgs
    print("%-5s %28s %28s %9s" % ("", "ours: CPU/msg  msg/s", "nats-server: CPU/msg  msg/s", "CPU ratio"))
    for sc in ("pull", "push"):
        o, g = res["ours"][sc], res["go"][sc]
        print("%-5s %14.1f us %10.0f %17.1f us %10.0f %8.2fx" % (
            sc, o[0] / n * 1e6, n / o[1], g[0] / n * 1e6, n / g[1], o[0] / max(g[0], 1e-9)))
    if args.idle:
        o, g = res["ours"]["idle"], res["go"]["idle"]
        print("idle  %d consumers, 1 s heartbeats: ours %.1f%% of a core, nats-server %.1f%%" % (
            args.idle, 100 * o[0] / o[1], 100 * g[0] / g[1]))


if __name__ == "__main__":
    main()
