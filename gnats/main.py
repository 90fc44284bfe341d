"""Entry point: options, logger, server, run."""

import sys

from .log import Logger


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        from .cli import main_options
    except ImportError:     # TEMP until cli.py lands
        main_options = _tmp_options
    opts = main_options(argv)       # prints and exits for -h, -v, errors
    log = Logger(debug=opts.debug, trace=opts.trace, logtime=opts.logtime,
                 log_file=opts.log_file, syslog=opts.syslog,
                 remote_syslog=opts.remote_syslog)
    from .server import Server
    try:
        server = Server(opts, log)
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


def _tmp_options(argv):
    from .options import Options
    o = Options()
    it = iter(argv)
    for a in it:
        if a in ("-p", "--port"):
            o.port = int(next(it))
        elif a in ("-a", "--addr"):
            o.host = next(it)
        elif a == "-m":
            o.http_port = int(next(it))
        elif a == "-D":
            o.debug = True
        elif a == "-V":
            o.trace = True
        elif a == "-DV":
            o.debug = o.trace = True
        elif a in ("--cluster", "-cluster"):       # TEMP (route tests)
            from .route import RouteURL
            u = RouteURL(next(it))
            o.cluster_host, o.cluster_port = u.host, u.port
            o.cluster_username, o.cluster_password = u.user, u.password
        elif a in ("--routes", "-routes"):
            o.routes = [r.strip() for r in next(it).split(",") if r.strip()]
        elif a in ("--cluster_name", "-cluster_name"):
            o.cluster_name = next(it)
    return o
