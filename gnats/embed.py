"""A server inside a Python process: `gnats.run(config=None, **options)`.

    with gnats.run(port=-1, max_payload="1MB") as srv:
        connect(srv.client_url)
        srv.reload(max_payload=2048)

Options are the config file's keys with its value forms. The keywords become
the same parsed form a file gives (conf.ConfMap / ConfList) and go through
options.apply_config, so every key, value form and check is the file's. Each
keyword value carries a position whose "file" is its dotted key path, which
names the key in the ValueError and tells which value a refusal was about: a
string where the file would have had a bare word (`max_payload="1MB"`,
`ping_interval="2"`) is read as that bare word (conf's own classification) and
the keywords applied again. With `config=`, the file is applied first and the
keywords over it, as the command line does.

Defaults differ from the command line only where a test wants them to:
loopback host (127.0.0.1, also for the cluster listener) and port -1 (a free
one). Each server has its own reactor thread, Logger and ports; it installs no
signal handlers, never exits the process, and logs to the `logging` logger
"gnats" (which has a NullHandler: quiet until the application configures
logging) unless log_file, syslog or remote_syslog name a destination.

stop() is idempotent and callable from any thread; it returns once every
socket is closed and the thread has ended. An exception inside the server
(a reactor callback that raised, logged as "internal error") is raised from
stop() as ServerError, so a test cannot pass over it.
"""

import logging
import threading

from .conf import ConfigError, ConfList, ConfMap, Pos, parse, parse_file
from .log import Logger
from .options import DEFAULT_PORT, Options, apply_config
from .server import Server

LOGGER_NAME = "gnats"
START_TIMEOUT = 10.0    # seconds run() waits for the reactor to be serving
STOP_TIMEOUT = 10.0     # seconds stop() waits for the thread to end
LOOPBACK = "127.0.0.1"

logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())


class ServerError(RuntimeError):
    """Raised by stop(): the server failed while running (the first failure
    is the __cause__; all were logged)."""


# -- keywords -> Options -------------------------------------------------------

def _conf_value(value, path, spots):
    """A Python value as the config parser would have produced it. spots maps
    each key path to (container, key) so a value can be replaced later."""
    if isinstance(value, dict):
        block = ConfMap()
        for key, v in value.items():
            if not isinstance(key, str):
                raise ValueError("%s%r: option names must be strings" % (path, key))
            where = path + key
            pos = Pos(where, 0, 0)
            block.put(key, _conf_value(v, where + ".", spots), pos, pos)
            spots[where] = (block, key)
        return block
    if isinstance(value, (list, tuple)):
        arr = ConfList()
        base = path[:-1]
        for i, v in enumerate(value):
            where = "%s[%d]" % (base, i)
            arr.append(_conf_value(v, where + ".", spots))
            arr.pos.append(Pos(where, 0, 0))
            spots[where] = (arr, i)
        return arr
    if isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError("%s: unsupported value %r (use a string, number, boolean, "
                     "dict or list)" % (path[:-1], value))


def _bare_word(text):
    """text as conf classifies an unquoted value, or None if it is not one
    or stays a string."""
    try:
        v = parse("v: " + text)["v"]
    except ConfigError:
        return None
    return None if isinstance(v, (str, dict, list)) else v


def _message(e):
    where = e.pos.file if e.pos is not None else ""
    if not where or e.message.startswith(where):
        return e.message
    return "%s: %s" % (where, e.message)


def _apply_keywords(opts, options):
    spots = {}
    cfg = _conf_value(dict(options), "", spots)
    for _ in range(len(spots) + 1):
        trial = opts.copy()
        try:
            apply_config(trial, cfg)
        except ConfigError as e:
            spot = spots.get(e.pos.file) if e.pos is not None else None
            if spot is not None:
                container, key = spot
                if isinstance(container[key], str):
                    bare = _bare_word(container[key])
                    if bare is not None:
                        container[key] = bare
                        continue
            raise ValueError(_message(e)) from None
        opts.__dict__.update(trial.__dict__)
        return
    raise AssertionError("unreachable: each retry converts one value")


def build_options(config=None, options=None):
    """Options from a config file and/or keywords (keywords win). Raises
    ValueError naming the bad key (FILE:LINE:COL for the file)."""
    opts = Options()
    opts.host = LOOPBACK
    opts.cluster_host = LOOPBACK
    opts.port = -1
    if config:
        try:
            apply_config(opts, parse_file(config), config)
        except ConfigError as e:
            raise ValueError(str(e)) from None
    if options:
        _apply_keywords(opts, options)
    if opts.tls_verify:
        opts.tls = True
    if opts.port == 0:
        opts.port = DEFAULT_PORT
    return opts


def _make_log(opts):
    try:
        return Logger(debug=opts.debug, trace=opts.trace, logtime=opts.logtime,
                      log_file=opts.log_file, syslog=opts.syslog,
                      remote_syslog=opts.remote_syslog,
                      logger=logging.getLogger(LOGGER_NAME))
    except OSError as e:
        raise ValueError("log_file: error opening log: %s" % e) from None


def _url(scheme, host, port):
    if host in ("", "0.0.0.0"):
        host = LOOPBACK
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = "[%s]" % host
    return "%s://%s:%d" % (scheme, host, port)


# -- the server -----------------------------------------------------------------

class EmbeddedServer:
    """A running server; see the module docstring. Made by gnats.run()."""

    def __init__(self, config=None, options=None):
        self._config = config
        self._options = dict(options or {})
        opts = build_options(config, self._options)
        self._log = _make_log(opts)
        self._server = Server(opts, self._log)
        self._errors = []
        self._stop_lock = threading.Lock()
        self._stopped = False
        self._ready = threading.Event()
        self._start_error = None
        # The reactor logs an internal error and keeps serving; record it
        # too, so that stop() raises it (reactor.py, "Internal errors").
        self._server.reactor.on_error = self._errors.append
        self._thread = threading.Thread(target=self._main, name="gnats-server", daemon=True)

    def _start(self):
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            self.stop()
            raise RuntimeError("gnats: the server did not start within %.0f s" % START_TIMEOUT)
        if self._start_error is not None:
            self._thread.join(STOP_TIMEOUT)
            self._stopped = True
            raise self._start_error
        self._thread.name = "gnats-server-%d" % self._server.port
        return self

    def _main(self):
        srv = self._server
        try:
            srv.start()
        except BaseException as e:     # e.g. a port in use: raised by run()
            self._start_error = e
            try:
                srv.shutdown()
                srv._cleanup()
            finally:
                self._log.close()
                self._ready.set()
            return
        srv.reactor.call_soon_threadsafe(self._ready.set)   # set once the loop turns
        try:
            srv.run()
        except BaseException as e:
            self._errors.append(e)
            self._log.error("server stopped by an internal error: %r" % e)
        finally:
            self._log.close()

    # -- what a test needs ---------------------------------------------------
    @property
    def port(self):
        return self._server.port

    @property
    def client_url(self):
        return _url("nats", self._server.opts.host, self._server.port)

    @property
    def monitor_url(self):
        """http(s)://host:port of the monitor, or None without http_port."""
        mon = self._server.monitor
        if mon is None:
            return None
        host = self._server.opts.http_host or self._server.opts.host
        if mon.http_port:
            return _url("http", host, mon.http_port)
        return _url("https", host, mon.https_port)

    @property
    def cluster_url(self):
        """nats://host:port of the route listener (for other servers'
        cluster.routes), or None without a cluster block."""
        cluster = self._server.cluster
        if cluster is None:
            return None
        return _url("nats", self._server.opts.cluster_host, cluster.port)

    def route_count(self):
        """Routes registered with peers (a cluster is formed when every
        member has one per other member)."""
        return len(self._server.routes)     # a len() is safe from another thread

    @property
    def running(self):
        return self._thread.is_alive() and not self._stopped

    # -- reload / stop -------------------------------------------------------
    def reload(self, **options):
        """Apply the original config and keywords updated with these, as a
        SIGHUP reload would; the file is read again. Raises ValueError for a
        bad option, or what Server.apply_options refuses with; the running
        configuration is then kept."""
        merged = dict(self._options)
        merged.update(options)
        new = build_options(self._config, merged)
        if not self.running:
            raise RuntimeError("gnats: the server is not running")
        done = threading.Event()
        failed = []

        def apply():
            try:
                self._server.apply_options(new)
            except Exception as e:
                failed.append(e)
            finally:
                done.set()
        self._server.reactor.call_soon_threadsafe(apply)
        if not done.wait(STOP_TIMEOUT):
            raise RuntimeError("gnats: the server did not apply the reload")
        if failed:
            raise failed[0]
        self._options = merged

    def stop(self):
        """Stop the server: listeners, clients, routes and the monitor closed,
        the thread ended. Idempotent; from any thread. Raises ServerError if
        the server failed while running (once)."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            srv = self._server
            if threading.current_thread() is self._thread:
                srv.shutdown()      # a callback stopping its own server: the loop ends after it
                return
            srv.reactor.call_soon_threadsafe(srv.shutdown)
            self._thread.join(STOP_TIMEOUT)
            if self._thread.is_alive():
                raise ServerError("gnats: the server thread did not end within %.0f s"
                                  % STOP_TIMEOUT)
        if self._errors:
            first = self._errors[0]
            raise ServerError("gnats: the server failed while running (%d error%s, logged to "
                              "the 'gnats' logger): %r" % (len(self._errors),
                                                           "" if len(self._errors) == 1 else "s",
                                                           first)) from first

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return "<gnats server %s%s>" % (self.client_url, "" if self.running else " stopped")


def run(config=None, **options):
    """Start a server in a background thread; returns once it accepts
    clients. See the module docstring."""
    return EmbeddedServer(config, options)._start()
