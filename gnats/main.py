"""Entry point: options, logger, server, run."""

import functools
import gc
import sys

from .cli import build_options, main_options
from .log import Logger

# glibc's malloc (mallopt(3)): blocks from M_MMAP_THRESHOLD up are mapped
# on their own and unmapped when freed, and a free heap top over
# M_TRIM_THRESHOLD goes back to the kernel. The server's big buffers live
# one reactor turn: a read of up to 1 MiB, and each receiver's output
# buffer that grows to about that much and is emptied when sent. With the
# defaults (128 KiB, dynamically raised; trim at twice that) those pages
# were faulted in afresh turn after turn, which cost more than the parse
# loop itself: the loop alone (in-process, no sockets) took 0.76 us per
# 1 KiB pub -> sub message by default and 0.26 with 4 MiB / 16 MiB, 128 B
# 0.24 -> 0.16, wildcard 2.3 -> 1.4 us (CPython; PyPy pubsub1k 0.62 ->
# 0.35). Buffers past 4 MiB (slow consumers) are still mapped on their
# own, and at most 16 MiB of freed heap is kept back from the kernel.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 16 << 20


def tune_malloc():
    """Set glibc's thresholds (above) where there is a mallopt; elsewhere
    (macOS, or Python without ctypes) nothing changes."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    opts = main_options(argv)       # prints and exits for -h, -v, errors
    try:
        log = Logger(debug=opts.debug, trace=opts.trace, logtime=opts.logtime,
                     log_file=opts.log_file, syslog=opts.syslog,
                     remote_syslog=opts.remote_syslog)
    except (OSError, ValueError) as e:
        # an unopenable log_file or a bad remote_syslog URL (nats-server:
        # "error opening file: ...", exit 1), not a traceback
        sys.stderr.write("gnatsd.py: error opening log: %s\n" % e)
        return 1
    # here, not at the top: -h, -v and option errors work on a Python
    # without ssl (cli.py has a fallback; conn.py needs ssl)
    from .server import Server
    # The cyclic GC's default young-generation threshold (700 allocations)
    # ran collections mid-request often enough to double request/reply p99
    # latency (tools/bench.py reqrep: 795 -> 353 us); a larger threshold
    # keeps the same collector with fewer, still small, passes.
    # PyPy has no gc.set_threshold: its collector (incminimark) is not driven
    # by allocation counts but by a nursery of fixed size (PYPY_GC_NURSERY),
    # collected by a cheap copying minor pass, with incremental major passes.
    if hasattr(gc, "set_threshold"):
        gc.set_threshold(10000, 20, 20)
    tune_malloc()
    try:
        # a SIGHUP reload builds the options again from the same command line
        server = Server(opts, log, rebuild=functools.partial(build_options, opts.cmdline))
    except (ValueError, OSError) as e:
        log.fatal("Error configuring server: %s" % e)
        return 1
    server.install_signal_handlers()
    try:
        server.start()
    except OSError as e:
        log.fatal("Error listening: %s" % e)
        return 1
    except ValueError as e:
        log.fatal("Error starting server: %s" % e)
        return 1
    return server.run()

