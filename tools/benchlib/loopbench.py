"""The parse loop alone: CPU per published message, without sockets.

    python3 tools/benchlib/loopbench.py SCENARIO [REPS]      (from a checkout root)

SCENARIO is one of pub16, pubsub16, pubsub128, pubsub1k, fanout5, queue4,
wildcard, mixed: the tools/bench.py flows of those names. A server object
is built (its reactor never runs), with real Client objects on socketpairs:
one publisher and the scenario's subscribers (SUBs parsed like any input).
A 1 MiB buffer of the scenario's PUBs (whole cycles of its plan) is then
fed to inbound.process_input REPS times (default 30, after 3 to warm up);
after each feed the receivers' output is dropped (no send). Prints the
minimum and the median of the per-feed CPU time per published message.

What it leaves out is what tools/bench.py measures on top: recv and send,
the reactor, and how the load generator paces the server. What it keeps
is every per-message operation of the hot path and the allocator's work
for a read's worth of output (the buffers grow and are emptied each feed,
as in a reactor turn). Noise is far lower than bench.py's on a shared
machine, so before/after comparisons of a hot-path change run here first
(alternate the trees; compare minimums). The launcher's set-up is not
applied: set PYPY_GC_NURSERY=16M for PyPy, and TUNE=1 applies main.py's
malloc thresholds.
"""

import os
import random
import socket
import sys
import time

sys.path.insert(0, os.getcwd())

from gnats.embed import _make_log, build_options  # noqa: E402
from gnats.inbound import process_input  # noqa: E402
from gnats.server import Server  # noqa: E402

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOOLS)

from benchlib.scenarios import all_scenarios  # noqa: E402

NAMES = ("pub16", "pubsub16", "pubsub128", "pubsub1k", "fanout5", "queue4", "wildcard", "mixed")
CONNECT = b'CONNECT {"verbose":false}\r\n'


def feed(c, data):
    """process_input as the reactor would call it, resuming a deferral
    (inbound.INPUT_SLICE) at once."""
    rest = process_input(c, data)
    while rest:
        if not c.deferred:
            raise SystemExit("unparsed input left: %r" % rest[:80])
        c.deferred = False
        rest = process_input(c, rest)


def connect(srv, keep):
    a, b = socket.socketpair()
    keep.append(b)
    srv.accept_client(a, ("127.0.0.1", 1))
    c = srv.clients[srv.next_cid]
    feed(c, CONNECT)
    return c


def main(argv):
    if not argv or argv[0] not in NAMES:
        raise SystemExit("usage: loopbench.py {%s} [REPS]" % ",".join(NAMES))
    sc = {s.name: s for s in all_scenarios()}[argv[0]]
    reps = int(argv[1]) if len(argv) > 1 else 30
    if os.environ.get("TUNE"):
        from gnats.main import tune_malloc
        tune_malloc()
    random.seed(1)
    opts = build_options(None, {"port": -1})
    srv = Server(opts, _make_log(opts))
    srv.port = 0                # never listens: INFO needs a port to name
    srv.tls_context = None
    keep = []
    pub = connect(srv, keep)
    rcv = []
    for sconn in sc.subscribers:
        c = connect(srv, keep)
        for i, (subject, queue) in enumerate(sconn.subs):
            if queue:
                feed(c, b"SUB %s %s %d\r\n" % (subject, queue, i + 1))
            else:
                feed(c, b"SUB %s %d\r\n" % (subject, i + 1))
        rcv.append(c)
    cycle = b"".join(b"PUB %s %d\r\n%s\r\n" % (s, n, b"x" * n) for s, n in sc.plan)
    per = max(1, (1 << 20) // len(cycle))
    chunk = cycle * per
    nmsg = per * len(sc.plan)
    dirty = srv.reactor.dirty
    pub.wbuf.clear()

    def one():
        feed(pub, chunk)
        for c in rcv:
            c.wbuf.clear()
        dirty.clear()

    for c in rcv:
        c.wbuf.clear()
    for _ in range(3):
        one()
    per_feed = []
    in0 = pub.in_msgs
    for _ in range(reps):
        t = time.process_time()
        one()
        per_feed.append(time.process_time() - t)
    per_feed.sort()
    delivered = sum(c.out_msgs for c in rcv)
    print("%s: min %.3f med %.3f us/published msg (%d msgs a feed, %.2f deliveries each)" % (
        sc.name, per_feed[0] / nmsg * 1e6, per_feed[len(per_feed) // 2] / nmsg * 1e6, nmsg,
        delivered / pub.in_msgs if rcv else 0.0))
    if pub.in_msgs - in0 != reps * nmsg:
        raise SystemExit("counted %d published messages, expected %d" % (pub.in_msgs - in0, reps * nmsg))


if __name__ == "__main__":
    main(sys.argv[1:])
