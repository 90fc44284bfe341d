"""The reliability campaigns behind tools/stress.py, one module per family.

common      Report, /proc figures, server processes, monitor JSON, waits, Node
bed         in-process Server on socketpairs (the fuzzers' test bed)
clients     counting clients shared by campaigns: CleanTraffic, Swarm, churn
fuzz        fuzz-parser, fuzz-wire (and the route protocol fuzzer)
fuzzconfig  fuzz-config
traffic     load, slow
faults      faults (mid-message kills, RSTs, half-open TLS, monitor, routes)
abuse       abuse (floods, huge CONNECT, subscription limits, wildcards)
endurance   soak
reload      reload under load

The campaign functions are exported here, so `stresslib.load(...)` is the
campaign, as tests/test_reliability.py calls it.
"""

# Latency and RSS bounds (and the idle waits that only serve RSS figures)
# are enforced when the campaigns run from tools/stress.py.
# tests/test_reliability turns them off (stresslib.PERF_CHECKS = False)
# unless GNATSD_PERF_ASSERTS=1: on a shared 2-core machine they measure the
# machine, and a failure there would read as a correctness regression.
# Correctness checks (exact counts, closes, no traceback) always apply.
# Read at call time by common.perf_checks(), so setting it here takes effect.
PERF_CHECKS = True

from .abuse import abuse_big_connect, abuse_silent, abuse_subscriptions, abuse_wildcards  # noqa: E402
from .bed import Bed, run_stream  # noqa: E402
from .common import Report  # noqa: E402
from .endurance import soak  # noqa: E402
from .faults import faults_midmsg, faults_monitor, faults_routes, faults_tls  # noqa: E402
from .fuzz import fuzz_parser, fuzz_routes, fuzz_wire  # noqa: E402
from .fuzzconfig import fuzz_config  # noqa: E402
from .reload import reload_under_load  # noqa: E402
from .traffic import load, slow  # noqa: E402
