"""Warm-up curve: a server's throughput and CPU per message, interval by interval.

    python3 tools/benchlib/warmup.py "pypy3 gnatsd.py" [SECONDS [STEP [SIZE]]]

Starts the server command (with -a 127.0.0.1 -p PORT appended) from the
checkout root, connects one raw-socket subscriber (load.StreamCounter) and one
publisher sending SIZE-byte PUBs (default 16) on its subject as fast as the
server reads them, and prints, every STEP seconds (default 1) for SECONDS
(default 20) from the publisher's start, the messages delivered so far, the
messages delivered per second and the server's CPU (utime+stime) per
delivered message over that interval. Used to see how long
PyPy's JIT takes to reach its steady speed (PERFORMANCE.md). It counts and
does not check: use tools/bench.py for figures that must be exact.
"""

import multiprocessing
import os
import socket
import sys
import tempfile
import time

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOOLS)

from benchlib import load, servers  # noqa: E402

SUBJECT = b"bench.ps"


def _subscriber(port, count, stop):
    sock, _ = load.connect(port, ops=b"SUB %s 1\r\n" % SUBJECT)
    sc = load.StreamCounter()
    while not stop.is_set():
        try:
            n = sock.recv_into(sc.view)
        except socket.timeout:
            continue
        if not n:
            break
        pings = sc.feed(n)
        if pings:
            sock.sendall(b"PONG\r\n" * pings)
        count.value = sc.msgs


def _publisher(port, stop, size):
    sock, _ = load.connect(port)
    sock.settimeout(5.0)
    frame = load.pub_frame(SUBJECT, size)
    chunk = frame * max(1, load.CHUNK_TARGET // len(frame))
    while not stop.is_set():
        sock.sendall(chunk)


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    secs = float(argv[1]) if len(argv) > 1 else 20.0
    step = float(argv[2]) if len(argv) > 2 else 1.0
    size = int(argv[3]) if len(argv) > 3 else 16
    port = servers.free_port()
    cmd = argv[0].split() + ["-a", "127.0.0.1", "-p", str(port)]
    srv = servers.Server("warmup", cmd, port, tempfile.gettempdir(), cwd=os.path.dirname(TOOLS)).start()
    ctx = multiprocessing.get_context("fork")
    count, stop = ctx.Value("q", 0, lock=False), ctx.Event()
    sub = ctx.Process(target=_subscriber, args=(port, count, stop), daemon=True)
    pub = ctx.Process(target=_publisher, args=(port, stop, size), daemon=True)
    try:
        sub.start()
        time.sleep(0.5)                 # the SUB is registered before the first PUB
        pub.start()
        t_prev = t0 = time.monotonic()
        c_prev, n_prev = srv.cpu(), count.value
        print("t_s msgs msgs_per_s us_cpu_per_msg")
        for i in range(int(secs / step)):
            time.sleep(max(0.0, t0 + (i + 1) * step - time.monotonic()))
            t, c, n = time.monotonic(), srv.cpu(), count.value
            print("%6.2f %9d %9.0f %6.3f" % ((i + 1) * step, n, (n - n_prev) / (t - t_prev),
                                         (c - c_prev) * 1e6 / max(1, n - n_prev)), flush=True)
            t_prev, c_prev, n_prev = t, c, n
    finally:
        stop.set()
        for p in (pub, sub):
            p.join(3.0)
            if p.is_alive():
                p.terminate()
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
