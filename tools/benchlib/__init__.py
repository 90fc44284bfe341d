"""Helpers for tools/bench.py, the side-by-side benchmark.

servers   start and stop a server process, read its CPU time and RSS from /proc
load      raw-socket load workers (publisher, counting subscriber, requester,
          responder, idle connection holder) that run in their own processes
clients   the same roles on real client libraries (nats-py; nats.go through
          goload/main.go, built at bench time)
scenarios what each named scenario publishes and who receives it, and the
          runner that measures one run of one scenario against one side
warmup    a standalone script: throughput and CPU/msg interval by interval
          (JIT warm-up)
"""
