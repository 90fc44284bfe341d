"""The scenarios and the runner that measures one run of one on one side.

A flow scenario is a publish plan (a cycle of (subject, payload size) entries
sent again and again) plus subscriber connections. From the plan the runner
knows, before the run, exactly how many frames and bytes each subscriber (or
queue group, in total) must receive; anything else is reported as loss.

Measured window: from the start signal (every connection is set up and its
interest confirmed by PING/PONG) to the moment the last subscriber has its
full count (pub-only: the publisher's final PONG). Server CPU is the change in
utime+stime over that window, summed over the server processes involved.

Client-library scenarios (py-*, go-*) run the same kind of flow through
nats-py or nats.go workers (clients.py) instead of raw sockets: one subject,
one payload size, each subscriber its own connection and its own target.
"""

import math
import multiprocessing
import os
import queue
import random
import time
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from . import clients, jsbench, load, wsload
from .servers import Server, ServerError, free_port

CTX = multiprocessing.get_context("fork")
MIXED_SIZES = [16] * 4 + [64] * 3 + [128] * 3 + [512] * 2 + [0, 1024, 4096]


@dataclass
class SubConn:
    """One subscriber connection: its SUBs as (subject, queue or None)."""
    subs: List[Tuple[bytes, Optional[bytes]]]
    group: str = ""               # queue group name; "" = a plain subscriber


@dataclass
class Scenario:
    name: str
    kind: str                     # "flow", "reqrep" or "idle"
    msgs: int                     # default published messages (requests, connections)
    per: str                      # CPU denominator: "pub", "dlv", "req" or "conn"
    about: str
    plan: List[Tuple[bytes, int]] = field(default_factory=list)
    subscribers: List[SubConn] = field(default_factory=list)
    tls: bool = False
    cluster: bool = False
    leaf: bool = False            # a leaf (publisher side) dialling a hub (subscriber side)
    size: int = 128               # reqrep payload
    client: str = ""              # "py" (nats-py) or "go" (nats.go) workers; "" = raw sockets
    config: str = ""              # server config file text (both sides), e.g. PERMS_CONFIG
    auth: Optional[Tuple[bytes, bytes]] = None     # CONNECT user and password
    sub_auth: Optional[Tuple[bytes, bytes]] = None  # the subscribers' own, when not `auth`
    ws: bool = False              # publisher and subscribers over websocket (wsload.py)
    js: str = ""                  # goload JetStream role (jsbench.py): js-pub, js-fetch, kv-put, kv-get
    inflight: int = 1             # js-pub: acknowledged publishes outstanding


# Issue 16: a user allowed bench.> both ways, with a few deny entries that
# do not overlap the benched subjects (the common shape: a sandbox and some
# forbidden corners). The same file for nats-server.
PERMS_CONFIG = """authorization { users = [
  {user: bench, password: bench, permissions: {
    publish: {allow: ["bench.>", "_INBOX.>"], deny: ["bench.secret", "bench.admin.>", "sys.*"]},
    subscribe: {allow: ["bench.>", "_INBOX.>"], deny: ["bench.secret", "bench.admin.>", "sys.*"]}}}
] }
"""
PERMS_AUTH = (b"bench", b"bench")

# Issue 17: the publisher in account PUB, the subscribers in account SUB,
# which imports PUB's bench.> stream under the same subjects (so the plan's
# bookkeeping holds): every delivery crosses accounts.
IMPORT_CONFIG = """accounts {
  PUB: { users: [{user: pub, password: pub}], exports: [{stream: "bench.>"}] }
  SUB: { users: [{user: sub, password: sub}],
         imports: [{stream: {account: PUB, subject: "bench.>"}}] }
}
"""


def matches(pattern, subject):
    """NATS subject match for the plan's bookkeeping (tokens, * and >)."""
    p, s = pattern.split(b"."), subject.split(b".")
    for i, tok in enumerate(p):
        if tok == b">":
            return len(s) > i
        if i >= len(s) or (tok != b"*" and tok != s[i]):
            return False
    return len(p) == len(s)


def _wildcard():
    rng = random.Random(7)
    plan = [(b"foo.%d" % rng.randrange(1000), rng.choice(MIXED_SIZES)) for _ in range(2000)]
    noise = [(b"bar.%d" % i, None) for i in range(500)] + \
            [(b"foo.%d.x" % i, None) for i in range(500)]
    subs = [SubConn([(b"foo.*", None)]), SubConn([(b"foo.>", None)]), SubConn(noise)]
    return plan, subs


def _mixed():
    rng = random.Random(11)
    plan = [(b"mix.%d" % rng.randrange(2000), rng.choice(MIXED_SIZES)) for _ in range(4000)]
    subs = [SubConn([(b"mix.%d" % i, None) for i in range(0, 1000)]),
            SubConn([(b"mix.%d" % i, None) for i in range(500, 1500)])]
    return plan, subs


def all_scenarios():
    """Default counts give runs of 2-3 s for gnatsd.py on 2 cores (1 s for Go):
    long enough that the 10 ms tick of /proc CPU times stays under 1%."""
    w_plan, w_subs = _wildcard()
    m_plan, m_subs = _mixed()
    one = [SubConn([(b"bench.ps", None)])]
    return [
        Scenario("pub16", "flow", 12_000_000, "pub", "publish only, 16 B, no subscriber",
                 [(b"bench.pub", 16)]),
        Scenario("pubsub16", "flow", 6_000_000, "dlv", "pub -> sub 1:1, 16 B",
                 [(b"bench.ps", 16)], one),
        Scenario("pubsub128", "flow", 4_000_000, "dlv", "pub -> sub 1:1, 128 B",
                 [(b"bench.ps", 128)], one),
        Scenario("pub16perm", "flow", 12_000_000, "pub",
                 "pub16 by a user with permissions (allow bench.>, 3 denies)",
                 [(b"bench.pub", 16)], config=PERMS_CONFIG, auth=PERMS_AUTH),
        Scenario("pubsub16perm", "flow", 6_000_000, "dlv",
                 "pubsub16, both users with permissions (allow bench.>, 3 denies)",
                 [(b"bench.ps", 16)], one, config=PERMS_CONFIG, auth=PERMS_AUTH),
        Scenario("import16", "flow", 6_000_000, "dlv",
                 "pubsub16 across accounts: the subscriber's account imports the stream",
                 [(b"bench.ps", 16)], one, config=IMPORT_CONFIG, auth=(b"pub", b"pub"),
                 sub_auth=(b"sub", b"sub")),
        Scenario("importfan5", "flow", 2_000_000, "dlv",
                 "fanout5 across accounts: 5 subscribers in the importing account, 128 B",
                 [(b"bench.fan", 128)], [SubConn([(b"bench.fan", None)]) for _ in range(5)],
                 config=IMPORT_CONFIG, auth=(b"pub", b"pub"), sub_auth=(b"sub", b"sub")),
        Scenario("pubsub1k", "flow", 1_000_000, "dlv", "pub -> sub 1:1, 1 KiB",
                 [(b"bench.ps", 1024)], one),
        Scenario("fanout5", "flow", 2_000_000, "dlv", "fan-out 1:5, 128 B (per delivered)",
                 [(b"bench.fan", 128)], [SubConn([(b"bench.fan", None)]) for _ in range(5)]),
        Scenario("queue4", "flow", 3_000_000, "dlv", "queue group of 4, 128 B",
                 [(b"bench.q", 128)],
                 [SubConn([(b"bench.q", b"workers")], "workers") for _ in range(4)]),
        Scenario("wildcard", "flow", 500_000, "dlv",
                 "foo.* and foo.> among 1,000 other subs, 1,000 foo.N subjects, mixed sizes",
                 w_plan, w_subs),
        Scenario("mixed", "flow", 500_000, "dlv",
                 "2,000 subjects (1/4 without interest), 2 subscribers, mixed sizes",
                 m_plan, m_subs),
        Scenario("reqrep", "reqrep", 20_000, "req", "request/reply 128 B, sequential"),
        Scenario("tls", "flow", 3_000_000, "dlv", "pub -> sub 1:1 over TLS, 128 B",
                 [(b"bench.tls", 128)], [SubConn([(b"bench.tls", None)])], tls=True),
        Scenario("cluster", "flow", 3_000_000, "dlv",
                 "pub on node A -> sub on node B, 128 B (CPU of both nodes)",
                 [(b"bench.route", 128)], [SubConn([(b"bench.route", None)])], cluster=True),
        Scenario("leaf", "flow", 3_000_000, "dlv",
                 "pub on a leaf node -> sub on its hub, 128 B (CPU of both servers)",
                 [(b"bench.leaf", 128)], [SubConn([(b"bench.leaf", None)])], leaf=True),
        Scenario("idle10k", "idle", 10_000, "conn", "10,000 idle connections: RSS per connection"),
    ] + client_scenarios() + ws_scenarios() + js_scenarios()


def js_scenarios():
    """Issue 20: JetStream through nats.go, file storage (jsbench.py)."""
    rows = []
    # Default counts: runs of 1-3 s for gnatsd.py on this machine.
    for size, tag, many in ((16, "16", 100_000), (1024, "1k", 50_000)):
        rows += [Scenario("js-pub%s-sync" % tag, "js", 15_000, "op",
                          "publish with ack to a file stream, %s B, one in flight" % size, size=size,
                          js="js-pub"),
                 Scenario("js-pub%s-async" % tag, "js", many, "op",
                          "publish with ack to a file stream, %s B, 256 in flight" % size, size=size,
                          js="js-pub", inflight=256)]
    return rows + [
        Scenario("js-fetch16", "js", 100_000, "op",
                 "pull consumer drains a file stream, Fetch(100), explicit ack each, 16 B",
                 size=16, js="js-fetch"),
        Scenario("js-fetch1k", "js", 50_000, "op",
                 "pull consumer drains a file stream, Fetch(100), explicit ack each, 1 KiB",
                 size=1024, js="js-fetch"),
        Scenario("kv-put", "js", 15_000, "op", "KV put, 1,000 keys, 128 B values, one at a time",
                 size=128, js="kv-put"),
        Scenario("kv-get", "js", 15_000, "op", "KV get, 1,000 keys, 128 B values, one at a time",
                 size=128, js="kv-get"),
    ]


def ws_scenarios():
    """Issue 21: the 1:1 flows with every connection over websocket (no
    TLS, no compression), both servers with a `websocket { }` listener."""
    one = [SubConn([(b"bench.ws", None)])]
    return [
        Scenario("ws16", "flow", 3_000_000, "dlv", "pub -> sub 1:1 over websocket, 16 B",
                 [(b"bench.ws", 16)], one, ws=True),
        Scenario("ws128", "flow", 2_000_000, "dlv", "pub -> sub 1:1 over websocket, 128 B",
                 [(b"bench.ws", 128)], one, ws=True),
        Scenario("ws1k", "flow", 600_000, "dlv", "pub -> sub 1:1 over websocket, 1 KiB",
                 [(b"bench.ws", 1024)], one, ws=True),
    ]


def client_scenarios():
    """The core flows through real client libraries (opt-in: --scenario clients).

    nats-py publishes about 450k msgs/s and its subscriber counts 50-150k/s
    on this kind of machine, so its counts are smaller (runs of 4-6 s, still
    only 20-60 of the 10 ms ticks of server CPU); the nats.go counts give runs
    about as long as the raw-socket ones."""
    out = []
    for lib, what, counts in (("py", "nats-py (asyncio)", (2_000_000, 900_000, 600_000, 300_000, 150_000)),
                              ("go", "nats.go", (6_000_000, 3_000_000, 2_000_000, 500_000, 400_000))):
        rows = (("pub16", "pub", "publish only, 16 B, no subscriber", b"bench.pub", 16, 0),
                ("pubsub16", "dlv", "pub -> sub 1:1, 16 B", b"bench.ps", 16, 1),
                ("pubsub128", "dlv", "pub -> sub 1:1, 128 B", b"bench.ps", 128, 1),
                ("pubsub1k", "dlv", "pub -> sub 1:1, 1 KiB", b"bench.ps", 1024, 1),
                ("fanout5", "dlv", "fan-out 1:5, 128 B (per delivered)", b"bench.fan", 128, 5))
        for (name, per, about, subject, size, nsubs), msgs in zip(rows, counts):
            out.append(Scenario("%s-%s" % (lib, name), "flow", msgs, per, "%s, %s clients" % (about, what),
                                [(subject, size)], [SubConn([(subject, None)]) for _ in range(nsubs)],
                                client=lib))
    return out


# Names --scenario accepts for a set of scenarios; the default is "core".
GROUPS = {
    "core": lambda sc: not sc.client and not sc.ws and not sc.js,
    "websocket": lambda sc: sc.ws,
    "clients": lambda sc: bool(sc.client),
    "jetstream": lambda sc: bool(sc.js),
    "all": lambda sc: True,
}


def select(spec):
    """Scenario names for a --scenario value (names and group names, comma-separated)."""
    known = all_scenarios()
    wanted, unknown = [], []
    for item in (n.strip() for n in spec.split(",")):
        if not item:
            continue
        if item in GROUPS:
            wanted += [sc.name for sc in known if GROUPS[item](sc)]
        elif any(sc.name == item for sc in known):
            wanted.append(item)
        else:
            unknown.append(item)
    return list(dict.fromkeys(wanted)), unknown


def check_subject(subject):
    """The subscriber counts frames by their "M" and spots PING/PONG/-ERR by
    "P" and "-": a subject holding one of those would be miscounted."""
    if any(c in subject for c in (b"M", b"P", b"-")):
        raise ValueError("bench subjects must not contain M, P or -: %r" % subject)


def expected(sc, cycles):
    """Per subscriber group: (slots, messages, bytes) it must receive in total."""
    groups = {}
    for idx, conn in enumerate(sc.subscribers):
        key = conn.group or "conn%d" % idx
        slots, _, _ = groups.setdefault(key, ([], 0, 0))
        slots.append(idx)
    for subject, _ in sc.plan:
        check_subject(subject)
    for conn in sc.subscribers:
        for subject, _ in conn.subs:
            check_subject(subject)
    out = {}
    for key, (slots, _, _) in groups.items():
        conn = sc.subscribers[slots[0]]
        msgs = nbytes = 0
        for subject, size in sc.plan:
            for i, (pattern, _q) in enumerate(conn.subs):
                if matches(pattern, subject):
                    msgs += 1
                    # sids are 1.. in SUB order; queue members share sid 1
                    nbytes += load.msg_frame_len(subject, b"%d" % (i + 1), size)
        out[key] = (slots, msgs * cycles, nbytes * cycles)
    return out


def sub_ops(conn):
    ops = []
    for i, (subject, queue) in enumerate(conn.subs):
        if queue:
            ops.append(b"SUB %s %s %d\r\n" % (subject, queue, i + 1))
        else:
            ops.append(b"SUB %s %d\r\n" % (subject, i + 1))
    return b"".join(ops)


class Control:
    """What the runner shares with its worker processes."""

    def __init__(self, nslots, timeout):
        self.ready_q = CTX.Queue()
        self.done_q = CTX.Queue()
        self.start = CTX.Event()
        self.stop = CTX.Event()
        self.abort = CTX.Event()
        self.pub_done = CTX.Event()     # set by the publisher once its PONG is back
        self.counts = CTX.Array("q", max(1, nslots), lock=False)
        self.timeout = timeout


class Side:
    """How to start one side's server: label ("ours" or "go") and command prefix."""

    def __init__(self, label, cmd, cwd=None):
        self.label = label
        self.cmd = list(cmd)
        self.cwd = cwd

    def server(self, logdir, extra=()):
        port = free_port()
        cmd = self.cmd + ["-a", "127.0.0.1", "-p", str(port)] + list(extra)
        return Server(self.label, cmd, port, logdir, self.cwd)


class Run:
    """One run of one scenario on one side; call measure() once."""

    def __init__(self, sc, side, msgs, opts, logdir):
        self.sc, self.side, self.msgs, self.opts, self.logdir = sc, side, msgs, opts, logdir
        self.servers = []
        self.procs = []

    def measure(self):
        """A result dict: status PASS/FAIL/SKIP/ERROR, note, and the figures."""
        try:
            self._start_servers()
            if self.sc.kind == "flow":
                return self._flow()
            if self.sc.kind == "reqrep":
                return self._reqrep()
            if self.sc.kind == "js":
                self.ctl = Control(1, self.opts.timeout)
                return jsbench.measure(self, self.opts.timeout)
            return self._idle()
        except (SkipRun, clients.Unavailable) as e:
            return {"status": "SKIP", "note": str(e)}
        except (ServerError, load.LoadError, OSError, RunError) as e:
            return {"status": "ERROR", "note": str(e)}
        finally:
            self._cleanup()

    # -- servers ---------------------------------------------------------------

    def _start_servers(self):
        extra = []
        if self.sc.js:
            self.js_store, extra = jsbench.js_flags(self.logdir, self.side.label)
        if self.sc.tls:
            extra = ["--tls", "--tlscert", self.opts.tlscert, "--tlskey", self.opts.tlskey]
        config = self.sc.config
        if self.sc.ws:
            self.ws_port = free_port()
            config += "websocket { host: 127.0.0.1, port: %d, no_tls: true }\n" % self.ws_port
        if config:
            path = os.path.join(self.logdir, "%s.conf" % self.sc.name)
            with open(path, "w") as f:
                f.write(config)
            extra += ["-c", path]
        if self.sc.leaf:
            self._start_leaf_pair(extra)
            return
        if not self.sc.cluster:
            self.servers.append(self.side.server(self.logdir, extra).start())
            return
        ca, cb = free_port(), free_port()
        for mine, other in ((ca, cb), (cb, ca)):
            flags = ["--cluster", "nats://127.0.0.1:%d" % mine,
                     "--routes", "nats://127.0.0.1:%d" % other, "--cluster_name", "bench"]
            try:
                self.servers.append(self.side.server(self.logdir, flags).start())
            except ServerError as e:
                raise SkipRun("%s cannot run a cluster: %s" % (self.side.label, e))
        # Both nodes dial each other; the first dial of the node started first is
        # refused and retried a second later, which makes a duplicate route that
        # one side then closes. Measure the settled cluster, not that moment.
        time.sleep(self.opts.cluster_settle)

    def _start_leaf_pair(self, extra):
        """The hub (subscribers) with a leafnode port, then the leaf
        (publisher) with one remote to it; servers = [leaf, hub]."""
        lport = free_port()
        confs = {"hub": "leafnodes { host: 127.0.0.1, port: %d }\n" % lport,
                 "leaf": 'leafnodes { remotes = [ { url: "nats-leaf://127.0.0.1:%d" } ] }\n' % lport}
        started = {}
        for role in ("hub", "leaf"):
            path = os.path.join(self.logdir, "%s-%s.conf" % (self.side.label, role))
            with open(path, "w") as f:
                f.write(confs[role])
            try:
                started[role] = self.side.server(self.logdir, list(extra) + ["-c", path]).start()
            except ServerError as e:
                raise SkipRun("%s cannot run a leaf node: %s" % (self.side.label, e))
            self.servers.append(started[role])
        self.servers = [started["leaf"], started["hub"]]

    def _check_alive(self):
        for s in self.servers:
            if not s.alive():
                raise RunError("%s server died (exit %s): %s"
                               % (s.label, s.proc.returncode, s.log_tail()))

    def _cpu(self):
        return sum(s.cpu() for s in self.servers)

    # -- workers ---------------------------------------------------------------

    def _spawn(self, ctl, name, fn, *args):
        p = CTX.Process(target=load.run_worker, args=(fn, ctl, name) + args, daemon=True)
        p.start()
        self.procs.append(p)

    def _wait_ready(self, ctl, names, timeout=60.0):
        want, deadline = set(names), time.monotonic() + timeout
        while want:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RunError("workers not ready: %s" % ", ".join(sorted(want)))
            try:
                msg = ctl.ready_q.get(timeout=min(left, 1.0))
            except queue.Empty:         # poll the servers meanwhile
                self._check_alive()
                continue
            if msg[0] == "failed":
                raise RunError("%s: %s" % (msg[1], msg[2]))
            want.discard(msg[1])

    def _collect(self, ctl, names, timeout):
        """Results by worker name; on timeout or a dead server, abort and wait 10s more."""
        results, deadline, grace = {}, time.monotonic() + timeout, None
        while len(results) < len(names):
            now = time.monotonic()
            if grace is None and (now > deadline or any(not s.alive() for s in self.servers)):
                ctl.abort.set()         # workers give up and report what they have
                grace = now + 10.0
            if grace is not None and now > grace:
                break
            try:
                msg = ctl.done_q.get(timeout=0.5)
            except queue.Empty:
                continue
            results[msg[1]] = msg[2]
        return results

    def _cleanup(self):
        for p in self.procs:
            p.join(2.0)
            if p.is_alive():
                p.terminate()
                p.join(2.0)
            if p.is_alive():
                p.kill()
                p.join(2.0)
        for s in self.servers:
            s.stop()
        jsbench.cleanup(self)

    # -- flow scenarios ----------------------------------------------------------

    def _flow(self):
        sc = self.sc
        if sc.client:
            return self._client_flow()
        cycles = max(1, math.ceil(self.msgs / len(sc.plan)))
        groups = expected(sc, cycles)
        ctl = Control(len(sc.subscribers), self.opts.timeout)
        pub_port = self.servers[0].port
        sub_port = self.servers[-1].port
        workers = load
        if sc.ws:
            workers = wsload
            pub_port = sub_port = self.ws_port
        names = []
        for key, (slots, target, _) in groups.items():
            for idx in slots:
                name = "sub%d" % idx
                names.append(name)
                self._spawn(ctl, name, workers.subscriber, sub_port, sc.tls,
                            sub_ops(sc.subscribers[idx]), idx, slots, target,
                            sc.sub_auth or sc.auth)
        self._wait_ready(ctl, names)
        if (sc.cluster or sc.leaf) and not load.probe_route(pub_port, sub_port, b"bench.probe"):
            raise SkipRun("%s: interest did not cross the route or leaf within 15s" % self.side.label)
        self._spawn(ctl, "pub", workers.publisher, pub_port, sc.tls, sc.plan, cycles, sc.auth)
        self._wait_ready(ctl, ["pub"])
        each0 = [s.cpu() for s in self.servers]
        cpu0, t0 = sum(each0), time.monotonic()
        ctl.start.set()
        res = self._collect(ctl, names + ["pub"], self.opts.timeout)
        each1 = [s.cpu() for s in self.servers]
        out = self._flow_verdict(res, groups, cycles * len(sc.plan), sum(each1) - cpu0, t0)
        if len(self.servers) > 1 and out.get("expected"):
            # per server (cluster: node A, B; leaf: the leaf, the hub)
            out["us_per_msg_each"] = [(b - a) * 1e6 / out["expected"] for a, b in zip(each0, each1)]
        return out

    def _client_flow(self):
        """The flow through client-library workers: same window, same checks,
        payload bytes instead of frame bytes."""
        sc = self.sc
        (subject, size), = sc.plan
        if sc.client == "go":
            try:
                lead = (clients.go_binary(self.logdir),)
            except clients.Unavailable as e:
                raise SkipRun("nats.go load program: %s" % e)
            fn = clients.go_client
        else:
            reason = clients.nats_py_reason()
            if reason:
                raise SkipRun(reason)
            fn, lead = clients.py_client, ()
        port = self.servers[0].port
        groups = {"conn%d" % i: ([i], self.msgs, self.msgs * size) for i in range(len(sc.subscribers))}
        ctl = Control(len(sc.subscribers), self.opts.timeout)
        names = ["sub%d" % i for i in range(len(sc.subscribers))]
        for name in names:
            self._spawn(ctl, name, fn, *lead, "sub", port, subject, size, self.msgs)
        self._wait_ready(ctl, names)
        self._spawn(ctl, "pub", fn, *lead, "pub", port, subject, size, self.msgs)
        self._wait_ready(ctl, ["pub"])
        cpu0, t0 = self._cpu(), time.monotonic()
        ctl.start.set()
        res = self._collect(ctl, names + ["pub"], self.opts.timeout + 30.0)
        cpu1 = self._cpu()
        return self._flow_verdict(res, groups, self.msgs, cpu1 - cpu0, t0)

    def _flow_verdict(self, res, groups, published, cpu, t0):
        problems = []
        pub = res.get("pub")
        if pub is None or "error" in pub:
            problems.append("publisher: %s" % (pub or {}).get("error", "no result"))
        delivered, ends = 0, []
        for key, (slots, target, nbytes) in groups.items():
            got = [res.get("sub%d" % i) or {"error": "no result"} for i in slots]
            errs = [g["error"] for g in got if "error" in g]
            if errs:
                problems.append("%s: %s" % (key, errs[0]))
                continue
            msgs = sum(g["msgs"] for g in got)
            byts = sum(g["bytes"] for g in got)
            delivered += msgs
            if target:                  # a group expecting nothing finishes after the publisher
                ends += [g["t_done"] for g in got if g["t_done"]]
            if msgs != target:
                late = " (timed out)" if any(g["timed_out"] for g in got) else ""
                problems.append("%s got %d of %d msgs%s" % (key, msgs, target, late))
            elif byts != nbytes:
                problems.append("%s got %d of %d bytes" % (key, byts, nbytes))
            if len(slots) > 1 and any(g["msgs"] == 0 for g in got):
                problems.append("%s: a member got nothing" % key)
            for g in got:
                if g["errors"]:
                    problems.append("%s: %s" % (key, g["err_text"]))
                    break
        if not groups and pub and "t_done" in pub:
            ends.append(pub["t_done"])
        try:
            self._check_alive()
        except RunError as e:
            problems.append(str(e))
        expected_total = sum(t for _, t, _ in groups.values())
        handled = published if self.sc.per == "pub" else expected_total
        wall = (max(ends) - t0) if ends else 0.0
        out = {"published": published, "delivered": delivered, "expected": expected_total,
               "cpu_s": cpu, "wall_s": wall,
               "msgs_per_s": handled / wall if wall > 0 else 0.0,
               "us_per_msg": cpu * 1e6 / handled if handled else 0.0}
        # The load generator's own CPU, to tell when it (not the server) is the limit.
        out["loadgen_cpu_s"] = sum(r.get("cpu_s", 0.0) for r in res.values())
        out["status"] = "FAIL" if problems else "PASS"
        out["note"] = "; ".join(problems[:3])
        return out

    # -- request/reply -----------------------------------------------------------

    def _reqrep(self):
        ctl = Control(1, self.opts.timeout)
        port = self.servers[0].port
        warmup = min(500, max(50, self.msgs // 20))
        self._spawn(ctl, "resp", load.responder, port, b"bench.req")
        self._wait_ready(ctl, ["resp"])
        self._spawn(ctl, "req", load.requester, port, b"bench.req", self.sc.size,
                    self.msgs, warmup)
        self._wait_ready(ctl, ["req"])
        cpu0 = self._cpu()
        ctl.start.set()
        res = self._collect(ctl, ["req"], self.opts.timeout)
        cpu1 = self._cpu()
        ctl.stop.set()
        res.update(self._collect(ctl, ["resp"], 5.0))
        req = res.get("req") or {"error": "no result"}
        if "error" in req:
            return {"status": "ERROR", "note": "requester: " + req["error"]}
        lat = sorted(req["lat_ns"])
        problems = []
        if req["timed_out"] or len(lat) != self.msgs:
            problems.append("%d of %d replies" % (len(lat), self.msgs))
        if req["bad"]:
            problems.append("%d replies on the wrong inbox or with the wrong payload" % req["bad"])
        try:
            self._check_alive()
        except RunError as e:
            problems.append(str(e))
        out = {"status": "FAIL" if problems else "PASS", "note": "; ".join(problems)}
        if lat:
            out["p50_us"] = lat[len(lat) // 2] / 1000.0
            out["p99_us"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1000.0
            wall = req.get("t_done", 0) - req.get("t_measure", 0)
            out["msgs_per_s"] = len(lat) / wall if wall > 0 else 0.0
            # CPU covers the warmup too, so divide by every request made.
            out["us_per_msg"] = (cpu1 - cpu0) * 1e6 / (len(lat) + warmup)
        return out

    # -- idle connections ----------------------------------------------------------

    def _idle(self):
        ctl = Control(1, max(self.opts.timeout, 120.0))
        srv = self.servers[0]
        time.sleep(0.3)
        before = srv.rss_kb()
        self._spawn(ctl, "idle", load.idle_holder, srv.port, self.msgs)
        self._wait_ready(ctl, ["idle"], timeout=ctl.timeout)
        time.sleep(1.0)                 # let the server finish its per-connection work
        after = srv.rss_kb()
        self._check_alive()
        ctl.stop.set()
        res = self._collect(ctl, ["idle"], 30.0).get("idle") or {"error": "no result"}
        if "error" in res:
            return {"status": "ERROR", "note": res["error"]}
        ok = res["connected"] == self.msgs
        return {"status": "PASS" if ok else "FAIL",
                "note": "" if ok else "%d of %d connected" % (res["connected"], self.msgs),
                "rss_before_kb": before, "rss_after_kb": after,
                "kb_per_conn": (after - before) / self.msgs}


class SkipRun(Exception):
    pass


class RunError(Exception):
    pass
