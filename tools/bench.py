#!/usr/bin/env python3
"""Side-by-side benchmark: gnatsd.py ("ours") against the Go nats-server, same run.

Usage (from the checkout root):

    python3 tools/bench.py                          # every core scenario, median of 3 runs
    python3 tools/bench.py --scenario clients       # the same flows through nats-py and nats.go
    python3 tools/bench.py --scenario pubsub16,fanout5 --runs 5
    python3 tools/bench.py --quick                  # small smoke run, one run each
    python3 tools/bench.py --only go --json out.json

Options: --scenario a,b (names or groups: core, the default; clients; websocket; jetstream; all), --runs N (3), --msgs N (published
messages per run; requests for reqrep, connections for idle10k), --quick,
--only ours|go, --python PATH (interpreter for ours; default the distribution's
python3 on the system PATH, e.g. /usr/bin/python3, whose figures count),
--ours-cmd "CMD ..." (replaces `PYTHON gnatsd.py`; -a/-p and scenario flags are
appended), --go PATH (default /usr/sbin/nats-server), --tlscert/--tlskey
(default configs/certs/server-cert.pem and server-key.pem), --timeout S (per
run, 60), --cluster-settle S (wait after a cluster's nodes start, 2), --json FILE.

Scenarios: pub16 (publish only, 16 B), pubsub16/pubsub128/pubsub1k (1:1),
pub16perm/pubsub16perm (pub16/pubsub16 by users with permissions, the same
config file on both sides), import16/importfan5 (pubsub16/fanout5 across
accounts: the subscribers' account imports the publisher's stream),
fanout5 (1:5, 128 B), queue4 (queue group of 4, 128 B), wildcard (foo.* and
foo.> among 1,000 other subscriptions, mixed sizes), mixed (2,000 subjects,
mixed sizes), reqrep (sequential request/reply latency, 128 B), tls (1:1 over
TLS, 128 B), cluster (pub on node A, sub on node B; CPU of both nodes), leaf (pub
on a leaf node, sub on its hub; CPU of both, and each in the JSON's
us_per_msg_each: [leaf, hub]), idle10k
(10,000 idle connections, RSS per connection).

JetStream scenarios (group "jetstream", not run by default; compare with
nats-server 2.15: --go /opt/ns/bin/nats-server): js-pub16-sync,
js-pub1k-sync (publish with ack to a file stream, one in flight, p50/p99 of
each ack), js-pub16-async, js-pub1k-async (256 in flight), js-fetch16,
js-fetch1k (a durable pull consumer drains the stream, Fetch(100), explicit
ack each), kv-put and kv-get (one at a time, 1,000 keys, 128 B). One nats.go
worker (goload's JetStream roles, tools/benchlib/jsload.go) does the work
and checks the outcome; see tools/benchlib/jsbench.py for the window.

Client-library scenarios (group "clients", not run by default): py-X and go-X
for X in pub16, pubsub16, pubsub128, pubsub1k, fanout5 run the flow X through
nats-py (asyncio) or nats.go workers, one process per connection, with the
same checks on message counts and payload bytes. The Go workers are a small
program (tools/benchlib/goload/main.go) built offline at bench time against
Debian's golang-go and golang-github-nats-io-go-nats-dev; without them, or
without nats-py for the load generator's python, those rows are SKIP with the
reason. nats-py cannot saturate a server (the rows describe the library's
pace); nats.go can.

What is measured: each run starts fresh servers, connects every worker (raw
sockets, one process each; subscribers' interest confirmed with PING/PONG),
then starts the clock. Server CPU = utime+stime from /proc/PID/stat over the
window, divided by messages handled: delivered messages, or published ones for
pub16 ("per" column). msgs/s = the same count over the wall time of the window.
Every run checks exact counts and byte totals (queue groups: the group total,
and every member used); any difference is FAIL. Sides alternate run by run; the
table shows medians. On a 2-core machine the load generator takes about a core,
so msgs/s mostly describes the load generator: compare servers by CPU/msg.
"""

import argparse
import datetime
import json
import os
import resource
import shlex
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from benchlib import scenarios, servers  # noqa: E402

SIDES = ("ours", "go")
QUICK_DIVISOR = 20


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bench.py", description="gnatsd.py vs nats-server benchmark",
                                 epilog="See the module docstring for what each figure means.")
    names = [s.name for s in scenarios.all_scenarios()]
    ap.add_argument("--scenario", default="core",
                    help="comma-separated names or groups (%s; default core): %s"
                    % (", ".join(scenarios.GROUPS), ",".join(names)))
    ap.add_argument("--runs", type=int, default=None, help="runs per side, median reported (default 3)")
    ap.add_argument("--msgs", type=int, default=None, help="messages per run (overrides each scenario's default)")
    ap.add_argument("--quick", action="store_true", help="small smoke run: 1/20 of the messages, one run")
    ap.add_argument("--only", choices=SIDES, help="run one side only")
    ap.add_argument("--python", default=None, help="interpreter for gnatsd.py (default: the system python3)")
    ap.add_argument("--ours-cmd", default=None, help="command that starts our server (default: PYTHON gnatsd.py)")
    ap.add_argument("--go", default=servers.GO_SERVER, help="nats-server binary")
    ap.add_argument("--tlscert", default=os.path.join(ROOT, "configs", "certs", "server-cert.pem"))
    ap.add_argument("--tlskey", default=os.path.join(ROOT, "configs", "certs", "server-key.pem"))
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per run (default 60)")
    ap.add_argument("--cluster-settle", type=float, default=2.0,
                    help="seconds to let a new cluster resolve duplicate routes before measuring (2)")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args(argv)
    wanted, unknown = scenarios.select(args.scenario)
    if unknown:
        ap.error("unknown scenario %s; known: %s (groups: %s)"
                 % (", ".join(unknown), ", ".join(names), ", ".join(scenarios.GROUPS)))
    args.wanted = wanted
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.runs < 1 or (args.msgs is not None and args.msgs < 1) or args.timeout <= 0 \
            or args.cluster_settle < 0:
        ap.error("--runs, --msgs and --timeout must be positive, --cluster-settle not negative")
    if args.python is None:
        args.python = servers.system_python() or sys.executable
    return args


def raise_nofile():
    """idle10k needs ~10,000 descriptors in the load generator and in the server."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def make_sides(args):
    """{label: Side or a reason it cannot run}."""
    sides = {}
    if args.only in (None, "ours"):
        if args.ours_cmd:
            sides["ours"] = scenarios.Side("ours", shlex.split(args.ours_cmd), ROOT)
        elif os.path.exists(os.path.join(ROOT, "gnatsd.py")):
            sides["ours"] = scenarios.Side("ours", [args.python, "gnatsd.py"], ROOT)
        else:
            sides["ours"] = "gnatsd.py not found in %s" % ROOT
    if args.only in (None, "go"):
        if os.access(args.go, os.X_OK):
            sides["go"] = scenarios.Side("go", [args.go], ROOT)
        else:
            sides["go"] = "%s not found" % args.go
    return sides


def run_count(sc, args, nofile):
    if args.msgs is not None:
        n = args.msgs
    elif args.quick:
        n = max(1000 if sc.kind != "reqrep" else 500, sc.msgs // QUICK_DIVISOR)
    else:
        n = sc.msgs
    if sc.kind == "idle":           # each connection costs a descriptor on both ends
        n = min(n, max(100, nofile - 200))
    return n


def fmt_rate(x):
    if not x:
        return "-"
    if x >= 1e6:
        return "%.2fM" % (x / 1e6)
    if x >= 1e3:
        return "%.0fk" % (x / 1e3)
    return "%.0f" % x


def fmt_num(x, digits=2):
    return "-" if x is None else "%.*f" % (digits, x)


def fmt_ratio(a, b):
    return "%.2fx" % (a / b) if a and b else "-"


def summarize(runs):
    """Median figures over the PASS runs, a status and the first problem seen."""
    statuses = [r["status"] for r in runs]
    good = [r for r in runs if r["status"] == "PASS"]     # a failed run's figures mean nothing
    med = {}
    for key in ("msgs_per_s", "us_per_msg", "p50_us", "p99_us", "kb_per_conn"):
        vals = [r[key] for r in good if r.get(key) is not None]
        if vals:
            med[key] = statistics.median(vals)
    if all(s == "PASS" for s in statuses):
        status = "PASS"
    elif all(s == "SKIP" for s in statuses):
        status = "SKIP"
    elif "FAIL" in statuses:
        status = "FAIL"
    else:
        status = "ERROR"
    notes = [r["note"] for r in runs if r.get("note")]
    bad = sum(1 for s in statuses if s != "PASS")
    note = notes[0] if notes else ""
    if bad and len(runs) > 1 and status != "SKIP":
        note = "%d of %d runs: %s" % (bad, len(runs), note)
    return {"status": status, "note": note, "median": med, "runs": runs}


def check_cell(summary):
    """PASS when every side passed, else the first problem with its side."""
    for label in SIDES:
        s = summary.get(label)
        if s and s["status"] != "PASS":
            return "%s (%s: %s)" % (s["status"], label, s["note"][:160].replace("|", "/"))
    return "PASS"


def med(summary, label, key):
    s = summary.get(label)
    return s["median"].get(key) if s else None


def progress(text):
    print(text, file=sys.stderr, flush=True)


def run_all(args, sides, nofile, logdir):
    results = {}
    for sc in scenarios.all_scenarios():
        if sc.name not in args.wanted:
            continue
        n = run_count(sc, args, nofile)
        per_side = {label: [] for label in sides}
        for i in range(args.runs):
            order = list(sides) if i % 2 == 0 else list(reversed(list(sides)))
            for label in order:
                side = sides[label]
                if isinstance(side, str):
                    r = {"status": "SKIP", "note": side}
                elif sc.tls and not (os.path.exists(args.tlscert) and os.path.exists(args.tlskey)):
                    r = {"status": "SKIP", "note": "no certificate at %s" % args.tlscert}
                else:
                    r = scenarios.Run(sc, side, n, args, logdir).measure()
                per_side[label].append(r)
                progress("%-9s run %d/%d %-4s %s %s%s" % (
                    sc.name, i + 1, args.runs, label, r["status"],
                    " ".join("%s=%.4g" % (k, v) for k, v in r.items()
                             if k in ("msgs_per_s", "us_per_msg", "p50_us", "p99_us", "kb_per_conn",
                                      "cpu_s", "wall_s", "loadgen_cpu_s")),
                    (" (%s)" % r["note"]) if r.get("note") else ""))
        results[sc.name] = {"scenario": sc, "count": n,
                            "sides": {label: summarize(runs) for label, runs in per_side.items()}}
    return results


def tables(results):
    lines = []
    flow = [(k, v) for k, v in results.items() if v["scenario"].kind == "flow"]
    rr = [(k, v) for k, v in results.items() if v["scenario"].kind == "reqrep"]
    idle = [(k, v) for k, v in results.items() if v["scenario"].kind == "idle"]
    js = [(k, v) for k, v in results.items() if v["scenario"].kind == "js"]
    if flow:
        lines += ["| scenario | published | per | ours msgs/s | Go msgs/s | ours µs CPU/msg | Go µs CPU/msg "
                  "| ours/Go CPU | check |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, v in flow:
            s = v["sides"]
            o, g = med(s, "ours", "us_per_msg"), med(s, "go", "us_per_msg")
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                name, fmt_rate(v["count"]), v["scenario"].per,
                fmt_rate(med(s, "ours", "msgs_per_s")), fmt_rate(med(s, "go", "msgs_per_s")),
                fmt_num(o), fmt_num(g), fmt_ratio(o, g), check_cell(s)))
    if rr:
        lines += ["", "| scenario | requests | ours p50 µs | Go p50 µs | p50 ours/Go | ours p99 µs "
                  "| Go p99 µs | p99 ours/Go | ours µs CPU/req | Go µs CPU/req | check |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, v in rr:
            s = v["sides"]
            o50, g50 = med(s, "ours", "p50_us"), med(s, "go", "p50_us")
            o99, g99 = med(s, "ours", "p99_us"), med(s, "go", "p99_us")
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                name, fmt_rate(v["count"]), fmt_num(o50, 0), fmt_num(g50, 0), fmt_ratio(o50, g50),
                fmt_num(o99, 0), fmt_num(g99, 0), fmt_ratio(o99, g99),
                fmt_num(med(s, "ours", "us_per_msg")), fmt_num(med(s, "go", "us_per_msg")),
                check_cell(s)))
    if idle:
        lines += ["", "| scenario | connections | ours KB/conn | Go KB/conn | ours/Go | check |",
                  "|---|---|---|---|---|---|"]
        for name, v in idle:
            s = v["sides"]
            o, g = med(s, "ours", "kb_per_conn"), med(s, "go", "kb_per_conn")
            lines.append("| %s | %d | %s | %s | %s | %s |" % (
                name, v["count"], fmt_num(o, 1), fmt_num(g, 1), fmt_ratio(o, g), check_cell(s)))
    if js:
        lines += ["", "| scenario | ops | ours ops/s | Go ops/s | ours µs CPU/op | Go µs CPU/op | ours/Go CPU "
                  "| ours p50/p99 µs | Go p50/p99 µs | check |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for name, v in js:
            s = v["sides"]
            o, g = med(s, "ours", "us_per_msg"), med(s, "go", "us_per_msg")
            lat = ["%s/%s" % (fmt_num(med(s, side, "p50_us"), 0), fmt_num(med(s, side, "p99_us"), 0))
                   if med(s, side, "p50_us") else "-" for side in SIDES]
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                name, fmt_rate(v["count"]), fmt_rate(med(s, "ours", "msgs_per_s")),
                fmt_rate(med(s, "go", "msgs_per_s")), fmt_num(o, 1), fmt_num(g, 1), fmt_ratio(o, g),
                lat[0], lat[1], check_cell(s)))
    return "\n".join(lines)


def header(args, sides):
    ours = sides.get("ours")
    go = sides.get("go")
    if isinstance(ours, scenarios.Side):
        ours_desc = " ".join(ours.cmd) if args.ours_cmd else \
            "%s gnatsd.py" % servers.describe_python(args.python)
    else:
        ours_desc = ours or "not run"
    go_desc = servers.go_version(args.go) if isinstance(go, scenarios.Side) else (go or "not run")
    return {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cores": os.cpu_count(),
        "ours": ours_desc,
        "go": go_desc,
        "load_generator": servers.describe_python(sys.executable),
        "runs": args.runs,
        "command": "python3 tools/bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    }


def main(argv):
    args = parse_args(argv)
    nofile = raise_nofile()
    sides = make_sides(args)
    meta = header(args, sides)
    progress("ours: %s\ngo:   %s\nload generator: %s" % (meta["ours"], meta["go"], meta["load_generator"]))
    logdir = tempfile.mkdtemp(prefix="gnatsd-bench-")
    results = run_all(args, sides, nofile, logdir)
    print("gnatsd.py benchmark, %s, %d cores, median of %d run(s)" % (meta["date"], meta["cores"] or 0, args.runs))
    print("ours: %s" % meta["ours"])
    print("go: %s" % meta["go"])
    print("load generator: %s" % meta["load_generator"])
    print("command: %s" % meta["command"])
    print()
    print(tables(results))
    print()
    print("µs CPU/msg: server utime+stime over the measured window per message (per: dlv = "
          "delivered, pub = published, req = request). Server logs: %s" % logdir)
    if args.json:
        out = {"meta": meta, "results": {
            name: {"count": v["count"], "per": v["scenario"].per, "about": v["scenario"].about,
                   "sides": v["sides"]} for name, v in results.items()}}
        try:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1, default=str)
        except OSError as e:
            print("cannot write %s: %s" % (args.json, e), file=sys.stderr)
            return 1
    statuses = [s["status"] for v in results.values() for s in v["sides"].values()]
    return 1 if any(s in ("FAIL", "ERROR") for s in statuses) else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
