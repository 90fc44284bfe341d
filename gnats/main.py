"""Entry point: options, logger, server, run."""

import functools
import gc
import sys

from .cli import build_options, main_options
from .log import Logger


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

