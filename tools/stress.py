#!/usr/bin/env python3
"""Reliability campaigns: try to knock gnatsd.py over, and count everything.

Each campaign is a subcommand. The default run is short (seconds); `--long`
is the hand-run version whose figures go into RELIABILITY.md. A campaign
returns a `Report` (figures plus failures); the exit status is 1 when
anything failed. tests/test_reliability.py runs CI-sized versions of the
same functions.

  fuzz-parser  seeded mutation loop through the client parser, in-process
  fuzz-wire    mutated streams over real sockets while a clean pair counts
  fuzz-config  random and mutated config files through `gnatsd.py -c FILE`
  load         many concurrent subscribers and fan-out, then connect churn
  slow         fast and stalled subscribers, max_pending from a config file
  faults       half PUBs, RSTs, half-open TLS, monitor hammering, route kills
  abuse        silent connection floods, huge CONNECT, subscription limits,
               wildcard blow-up, while a PING is timed from a clean client
  reload       SIGHUP every 300 ms (users, route password, TLS certificate
               and verify) while TLS clients publish, reconnect and intrude
  js-kill9     acknowledged JetStream publishes (64 in flight) while the
               server is SIGKILLed at random moments, with sync_interval:
               always and with the default; every acked message must be back
  js-torn      kill -9 under sync_interval: always, then the last block cut
               at a random byte or a byte flipped in a record: every intact
               acked message back, the damaged ones gone, the damage logged
  js-diskfull  the server's RLIMIT_FSIZE lowered while it runs: error acks,
               other clients and stored messages still served, publishing
               resumes once the limit is raised, nothing acked lost
  js-churn     thousands of consumers created and dropped while publishing:
               consumer count and RSS back to baseline, no lost acks
  soak         mixed traffic for --minutes, RSS sampled every 10 s

Servers run as real processes (`PYTHON gnatsd.py ...`, `--python` picks the
interpreter). Nothing here mocks the network: sockets are real, on
127.0.0.1 only, and every wait is bounded.
"""

# The campaigns live in tools/stresslib/ (one module per family, listed in
# its __init__); this file is the command line over them, as tools/bench.py
# sits over tools/benchlib/.

import argparse
import os
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (ROOT, HERE):             # tests.util (ROOT) and stresslib (HERE)
    if _p not in sys.path:
        sys.path.insert(0, _p)

from stresslib import (Report, abuse_big_connect, abuse_silent, abuse_subscriptions,  # noqa: E402
                       abuse_wildcards, faults_midmsg, faults_monitor, faults_routes, faults_tls,
                       fuzz_config, fuzz_parser, fuzz_routes, fuzz_wire, js_churn, js_diskfull, js_kill9,
                       js_torn, load, reload_under_load,
                       slow, soak)

SYSTEM_PYTHON = "/usr/bin/python3"


def _campaigns(args):
    """name -> list of thunks, each returning one Report."""
    L = args.long
    py = args.python
    seed = args.seed
    return {
        "fuzz-parser": [lambda: fuzz_parser(inputs=1000000 if L else 20000, seed=seed, progress=L)],
        "fuzz-wire": [lambda: fuzz_wire(inputs=50000 if L else 2000, seed=seed, python=py, progress=L),
                      lambda: fuzz_routes(inputs=20000 if L else 500, seed=seed, python=py)],
        "fuzz-config": [lambda: fuzz_config(inputs=100000 if L else 3000, processes=400 if L else 40,
                                            seed=seed, python=py, progress=L)],
        "load": [lambda: load(conns=10000 if L else 2000, cycles=100000 if L else 5000,
                              msgs=100 if L else 20, python=py, hold_rounds=3 if L else 2)],
        "slow": [lambda mp=mp: slow(fast=8 if L else 4, stalled=8 if L else 4, msgs=20000 if L else 8000,
                                    max_pending=mp, python=py) for mp in ("1MB", "1048576")],
        "faults": [lambda: faults_midmsg(conns=3000 if L else 300, kills=50 if L else 10, python=py),
                   lambda: faults_tls(half_open=2000 if L else 200, python=py),
                   lambda: faults_monitor(seconds=20 if L else 5, python=py),
                   lambda: faults_monitor(seconds=20 if L else 5, conns=10000 if L else 1000, python=py,
                                          ping_bound=5.0 if L else 1.0),
                   lambda: faults_routes(cycles=10 if L else 3, python=py)],
        "abuse": [lambda: abuse_silent(conns=10000 if L else 1000, python=py),
                  lambda: abuse_big_connect(sizes=(5000, 1 << 20, 64 << 20) if L else (5000, 1 << 20), python=py),
                  lambda: abuse_subscriptions(n=1000000 if L else 100000, python=py,
                                              ping_bound=10.0 if L else 1.0),
                  lambda: abuse_wildcards(depth=16 if L else 13, python=py)],
        "reload": [lambda: reload_under_load(seconds=60 if L else 4, python=py)],
        "js-kill9": [lambda a=a: js_kill9(rounds=10 if L else 3, sync_always=a, python=py, seed=seed,
                                               exe=args.exe)
                     for a in (True, False)],
        "js-torn": [lambda: js_torn(rounds=20 if L else 4, python=py, seed=seed)],
        "js-diskfull": [lambda: js_diskfull(python=py, exe=args.exe, before=5000 if L else 1000,
                                            during=2000 if L else 200, after=5000 if L else 1000)],
        "js-churn": [lambda: js_churn(consumers=10000 if L else 1000, python=py, exe=args.exe)],
        "soak": [lambda: soak(minutes=args.minutes, python=py)],
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("campaign", nargs="+", help="campaign name(s), or 'all' (every one but soak)")
    ap.add_argument("--long", action="store_true", help="the hand-run sizes (minutes, not seconds)")
    ap.add_argument("--python", default=SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else sys.executable,
                    help="interpreter for the server processes (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the fuzzers (default 1)")
    ap.add_argument("--exe", default=None,
                    help="js-kill9, js-diskfull, js-churn: run against this server binary instead "
                         "(e.g. /opt/ns/bin/nats-server)")
    ap.add_argument("--minutes", type=float, default=1.0, help="soak duration (default 1)")
    args = ap.parse_args(argv)
    table = _campaigns(args)
    names = [n for n in table if n != "soak"] if args.campaign == ["all"] else args.campaign
    bad = [n for n in names if n not in table]
    if bad:
        ap.error("unknown campaign(s): %s (choose from %s)" % (", ".join(bad), ", ".join(table)))
    print("server interpreter: %s; runner: %s %s" % (args.python, sys.executable, sys.version.split()[0]), flush=True)
    ok = True
    for n in names:
        for thunk in table[n]:
            try:
                rep = thunk()
            except Exception as e:      # one broken campaign must not hide the others' figures
                rep = Report(n)
                rep.fail("the campaign itself raised %r:\n%s" % (e, traceback.format_exc()[-2000:]))
            print(rep.text(), flush=True)
            ok = ok and rep.ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
