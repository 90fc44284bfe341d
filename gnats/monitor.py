"""The HTTP(S) monitoring server: /varz, /connz, /routez, /subsz, /jsz,
/healthz, /metrics and the dashboard at /.

Theory of operation
-------------------
The monitor runs in its own threads and never touches a live connection. For
every request it asks the server for a *snapshot* (gnats/snapshot.py: typed
records the reactor thread built and that never change afterwards) and hands
it with the query to the pure builders of gnats/endpoints.py, which format
it the way nats-server 2.9 does. This module is the HTTP side: routing,
answers, limits, TLS and the listeners' lifecycle.

Bounds (a monitoring port is often reachable by more than its owner):
- at most MAX_HTTP_CONNECTIONS connections at once. When all are taken, a
  new connection takes the place of the one that has waited longest for its
  request headers (slow or idle sockets never lock out a liveness probe);
  only when every connection is busy answering does the next one get a 503,
  closed at once from the accept thread without reading anything;
- a request's line and headers must arrive within HEADER_TIMEOUT of the
  connection opening (of the previous answer, on a keep-alive connection):
  a watchdog shuts down sockets that dribble a byte at a time (Go's
  ReadHeaderTimeout), and each socket read or write times out after IO_TIMEOUT;
- a connection lives at most CONN_LIFETIME: keep-alive connections are closed
  politely after half of it, and the watchdog shuts down any socket still
  open after all of it;
- request line and headers together are capped at MAX_HEADER_BYTES (Go's
  MaxHeaderBytes): more is a 431 and the connection is closed; http.server
  also caps each line (64 KiB) and the header count (100); request bodies are
  never read (only GET and HEAD are served);
- the TLS handshake of the HTTPS port runs in the connection's own thread,
  under the same timeout, so a silent TLS client cannot stall accept().

Differences from nats-server 2.9 that are deliberate: bad query values
(negative limit or offset too) are a 400 with a JSON body `{"error": ...}`;
a JSONP callback must be a dotted path of identifiers; only GET and HEAD are
allowed; every answer carries `Access-Control-Allow-Origin: *`; `/connz`
sort=idle puts the longest idle first (2.9 sorted by last activity minus
start); with subs=1 every entry has `subscriptions_list`, empty included.
"""

import errno
import http.client
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .endpoints import (QueryError, build_connz, build_jsz, build_metrics, build_routez, build_subsz,
                        build_varz, jsonp_callback, parse_query, to_json)
from .leafz import build_leafz
from .net import hostport
from .procstats import ProcStats
from .snapshot import as_snapshot

MAX_HTTP_CONNECTIONS = 64
MAX_HEADER_BYTES = 1 << 20  # request line and headers of one request
HEADER_TIMEOUT = 5.0        # for them to arrive
LINGER_TIME = 1.0           # reading on after an error answer (see _linger)
IO_TIMEOUT = 5.0
CONN_LIFETIME = 30.0
STOP_JOIN_BUDGET = 2.0      # seconds stop() spends joining connection threads

# Paths as counted in http_req_stats (/subscriptionsz counts as /subsz, as in Go).
ROOT, VARZ, CONNZ, ROUTEZ, SUBSZ, HEALTHZ, METRICS, JSZ = (
    "/", "/varz", "/connz", "/routez", "/subsz", "/healthz", "/metrics", "/jsz")


# ---------------------------------------------------------------------------
# HTTP plumbing

JSON_TYPE = "application/json"
JSONP_TYPE = "application/javascript"
HTML_TYPE = "text/html; charset=utf-8"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _HeaderBudget:
    """The handler's input stream, counting the bytes a request's line and
    headers take: past MAX_HEADER_BYTES, http.server's header parser gets
    LineTooLong and answers 431."""

    def __init__(self, raw):
        self.raw = raw
        self.left = MAX_HEADER_BYTES

    def readline(self, limit=-1):
        want = self.left + 1 if limit is None or limit < 0 else min(limit, self.left + 1)
        line = self.raw.readline(want)
        self.left -= len(line)
        if self.left < 0:
            raise http.client.LineTooLong("request headers over %d bytes" % MAX_HEADER_BYTES)
        return line

    def __getattr__(self, name):
        return getattr(self.raw, name)


class _Handler(BaseHTTPRequestHandler):
    """One HTTP connection (possibly several keep-alive requests)."""

    protocol_version = "HTTP/1.1"
    # Unparseable request lines get a status line too (http.server would
    # answer them HTTP/0.9 style: a bare body).
    default_request_version = "HTTP/1.0"
    timeout = IO_TIMEOUT            # applied to the socket by StreamRequestHandler
    monitor = None                  # set on the per-Monitor subclass

    _ROUTES = {
        ROOT: "page_root", VARZ: "page_varz", CONNZ: "page_connz",
        ROUTEZ: "page_routez", SUBSZ: "page_subsz", "/subscriptionsz": "page_subsz",
        HEALTHZ: "page_healthz", METRICS: "page_metrics", "/accountz": "page_accountz",
        JSZ: "page_jsz",
        "/leafz": "page_leafz",     # [leaf]
    }

    # -- request entry points ---------------------------------------------
    def setup(self):
        super().setup()
        self.rfile = _HeaderBudget(self.rfile)

    def handle_one_request(self):
        # A new request: a fresh header budget, and the header deadline runs.
        self.rfile.left = MAX_HEADER_BYTES
        self._waiting_since = self.server.set_waiting(self.connection, True)
        super().handle_one_request()

    def parse_request(self):
        ok = super().parse_request()
        self.server.set_waiting(self.connection, False)     # headers are in
        if ok and time.monotonic() - self._waiting_since > HEADER_TIMEOUT:
            # the watchdog shut the socket: the headers read are cut short
            self.close_connection = True
            return False
        return ok

    def do_GET(self):
        self._serve(head=False)

    def do_HEAD(self):
        self._serve(head=True)

    def __getattr__(self, name):
        # http.server looks up do_<METHOD>; every other method is a 405
        # (rather than http.server's 501) and the connection is closed, so
        # any request body is never read.
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self):
        self.close_connection = True
        self._send(405, to_json({"error": "method not allowed: use GET or HEAD"}),
                   JSON_TYPE, extra=(("Allow", "GET, HEAD"),))

    def _serve(self, head):
        if self.headers.get("Content-Length", "0") not in ("", "0") or \
                self.headers.get("Transfer-Encoding"):
            self.close_connection = True        # a body we will not read
        if time.monotonic() - self.server.conn_born(self.connection) > CONN_LIFETIME / 2:
            self.close_connection = True        # recycle long keep-alive connections
        # Split by hand: urlsplit would read "//varz" as a host name.
        path, _, query = self.path.partition("#")[0].partition("?")
        page = self._ROUTES.get(path)
        if page is None:
            self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        self.monitor.count_request(SUBSZ if page == "page_subsz" else path)
        try:
            getattr(self, page)(parse_query(query))
        except QueryError as e:
            self._send(400, to_json({"error": str(e)}), JSON_TYPE)
        except SnapshotUnavailable as e:
            self._send(503, to_json({"error": str(e)}), JSON_TYPE)
        except (ConnectionError, socket.timeout):
            self.close_connection = True
        except Exception as e:                  # never a traceback to the client
            self.monitor.log.error("Monitor: error serving %s: %s: %s"
                                   % (path, type(e).__name__, e))
            self.close_connection = True
            self._send(500, to_json({"error": "internal error"}), JSON_TYPE)

    # -- pages ---------------------------------------------------------------
    def page_root(self, q):
        from .dashboard import DASHBOARD_HTML
        self._send(200, DASHBOARD_HTML.encode("utf-8"), HTML_TYPE)

    def page_varz(self, q):
        self._json(q, lambda snap: self.monitor.varz(snap), conns=False)

    def page_connz(self, q):
        self._json(q, lambda snap: build_connz(snap, q))

    def page_routez(self, q):
        self._json(q, lambda snap: build_routez(snap, q))

    def page_leafz(self, q):        # [leaf]
        self._json(q, lambda snap: build_leafz(snap, q))

    def page_subsz(self, q):
        # the subscription list (subs=, test=) comes from the connections
        self._json(q, lambda snap: build_subsz(snap, q), conns=("subs" in q or "test" in q))

    def page_accountz(self, q):
        from .accountz import build_accountz
        self._json(q, lambda snap: build_accountz(snap, q), conns=False)

    def page_jsz(self, q):
        self._json(q, lambda snap: build_jsz(snap, q), conns=False)

    def page_healthz(self, q):
        cb = jsonp_callback(q)
        self._reply(cb, to_json({"status": "ok"}, indent=False))

    def page_metrics(self, q):
        snap = self.monitor.snapshot(conns=False)
        now = snap.now or time.time()
        start = snap.start or now
        body = build_metrics(self.monitor.varz(snap), build_subsz(snap, {}),
                             max(0.0, now - start), start)
        self._send(200, body, METRICS_TYPE)

    # -- responses -------------------------------------------------------------
    def _json(self, q, build, conns=True):
        cb = jsonp_callback(q)      # validate before any work
        self._reply(cb, to_json(build(self.monitor.snapshot(conns))))

    def _reply(self, callback, body):
        if callback:
            # nats-server's framing: NAME(JSON), no semicolon.
            self._send(200, callback.encode("ascii") + b"(" + body + b")", JSONP_TYPE)
        else:
            self._send(200, body, JSON_TYPE)

    def _send(self, code, body, ctype, extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        for k, v in extra:
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_response(self, code, message=None):
        # Like Go: a Date header and no Server banner.
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def send_error(self, code, message=None, explain=None):
        # http.server's own errors (bad request line, 414, 431, ...): JSON too.
        self.close_connection = True
        try:
            # http.server's messages quote the bad input; keep only the text.
            text = (message or self.responses.get(code, ("error",))[0]).split(" (")[0][:100]
            if code == 431:
                text = "request header fields too large"
            self._send(code, to_json({"error": text}), JSON_TYPE)
            self.wfile.flush()
            self._linger()
        except OSError:
            pass

    def _linger(self):
        """Closing with unread input makes the kernel send a reset, which
        can destroy the error answer before the client reads it: end our
        side, then discard what still arrives (bounded in bytes and time)."""
        sock = self.connection
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(LINGER_TIME)
        deadline = time.monotonic() + LINGER_TIME
        left = MAX_HEADER_BYTES
        while left > 0 and time.monotonic() < deadline:
            d = sock.recv(min(left, 65536))
            if not d:
                break
            left -= len(d)

    def log_message(self, fmt, *args):
        pass                        # nats-server does not log requests

    def log_error(self, fmt, *args):
        self.monitor.log.debug("Monitor: %s - %s" % (self.address_string(), fmt % args))


class SnapshotUnavailable(RuntimeError):
    """get_snapshot failed: answered with 503."""


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a cap on connections, a lifetime watchdog,
    TLS handshakes in the connection's thread and threads we can join."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, family, ssl_context, log):
        self.address_family = family
        self.ssl_context = ssl_context
        self.log = log
        self._lock = threading.Lock()
        # id -> [socket, born, thread, waiting]: waiting is the monotonic time
        # the connection began waiting for a request's headers, else None
        self._conns = {}
        self._next_id = 0
        super().__init__(addr, handler)

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            try:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            except (OSError, AttributeError):
                pass
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn): skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def process_request(self, request, client_address):
        evict = None
        with self._lock:
            full = len(self._conns) >= MAX_HTTP_CONNECTIONS
            if full:
                # Make room: the connection waiting longest for its headers
                # goes (a slow or idle socket, never one being answered).
                waiting = [(e[3], cid) for cid, e in self._conns.items() if e[3] is not None]
                if waiting:
                    evict = self._conns.pop(min(waiting)[1])[0]
                    full = False
            if not full:
                self._next_id += 1
                cid = self._next_id
                t = threading.Thread(target=self._run_conn, args=(cid, request, client_address),
                                     name="monitor-conn-%d" % cid, daemon=True)
                now = time.monotonic()
                self._conns[cid] = [request, now, t, now]
        if evict is not None:
            self._shutdown(evict)
        if full:
            self._refuse(request)
            return
        t.start()

    def _refuse(self, sock):
        # Over the cap: a short 503 into the empty send buffer, then close.
        # Never blocks the accept thread, reads nothing.
        try:
            sock.setblocking(False)
            if self.ssl_context is None:
                body = b'{"error":"too many monitoring connections"}'
                sock.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass
        self.shutdown_request(sock)

    def _run_conn(self, cid, sock, addr):
        try:
            if self.ssl_context is not None:
                sock.settimeout(IO_TIMEOUT)
                sock = self.ssl_context.wrap_socket(sock, server_side=True)
                with self._lock:
                    if cid in self._conns:
                        self._conns[cid][0] = sock
            self.finish_request(sock, addr)
        except Exception as e:      # handshake failures, resets, timeouts
            self.log.debug("Monitor: connection from %s:%s ended: %s" % (addr[0], addr[1], e))
        finally:
            with self._lock:
                self._conns.pop(cid, None)
            self.shutdown_request(sock)

    def conn_born(self, sock):
        with self._lock:
            for e in self._conns.values():
                if e[0] is sock:
                    return e[1]
        return time.monotonic()

    def set_waiting(self, sock, waiting):
        """The handler starts (True) or ends (False) reading a request's
        headers. Returns the monotonic time of the call."""
        now = time.monotonic()
        with self._lock:
            for e in self._conns.values():
                if e[0] is sock:
                    e[3] = now if waiting else None
                    break
        return now

    def service_actions(self):
        # Runs in the serve_forever thread about every poll interval.
        now = time.monotonic()
        self._shutdown_conns(now - CONN_LIFETIME, now - HEADER_TIMEOUT)

    def _shutdown_conns(self, born_before, waiting_before=float("-inf")):
        with self._lock:
            old = [e[0] for e in self._conns.values()
                   if e[1] < born_before or (e[3] is not None and e[3] < waiting_before)]
        for s in old:
            self._shutdown(s)

    @staticmethod
    def _shutdown(sock):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close_all(self, budget):
        """Shut every open connection down and join their threads."""
        self._shutdown_conns(float("inf"))
        deadline = time.monotonic() + budget
        with self._lock:
            threads = [e[2] for e in self._conns.values()]
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def handle_error(self, request, client_address):
        pass                        # errors are logged in _run_conn, no tracebacks


def _family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class Monitor:
    """The monitoring HTTP and/or HTTPS listeners and their threads.

    get_snapshot(fresh, conns) -> snapshot.Snapshot (or its plain-data form)
    is called from the monitor's threads; it must be thread-safe. Everything
    the endpoints show comes from it, options included: `opts` gives only
    the addresses to listen on (not reloadable, as in nats-server).
    """

    def __init__(self, opts, get_snapshot, log, ssl_context=None):
        self.host = opts.http_host or opts.host or "0.0.0.0"
        self._ports = (opts.http_port, opts.https_port)
        self.get_snapshot = get_snapshot
        self.log = log
        self.ssl_context = ssl_context
        self.http_port = 0
        self.https_port = 0
        self.proc = ProcStats()
        self._req_lock = threading.Lock()
        self._req_stats = {}
        self._servers = []          # (_HTTPServer, thread)
        self._handler = type("MonitorHandler", (_Handler,), {"monitor": self})

    # -- used by the handler threads ------------------------------------------
    def count_request(self, path):
        with self._req_lock:
            self._req_stats[path] = self._req_stats.get(path, 0) + 1

    def request_stats(self):
        with self._req_lock:
            return dict(self._req_stats)

    def snapshot(self, conns=True):
        try:
            snap = self.get_snapshot(True, conns)
            if snap:
                snap = as_snapshot(snap)
        except Exception as e:
            self.log.error("Monitor: snapshot failed: %s: %s" % (type(e).__name__, e))
            snap = None
        if not snap:
            raise SnapshotUnavailable("server statistics unavailable, try again")
        return snap

    def varz(self, snap):
        return build_varz(snap, self.request_stats(), self.proc)

    def set_tls_context(self, ctx):
        """A reload rebuilt the certificate: new HTTPS handshakes use `ctx`,
        open connections keep theirs (nats-server's getMonitoringTLSConfig
        takes the TLS config in force at each handshake). Reactor thread."""
        self.ssl_context = ctx
        for srv, _ in self._servers:
            if srv.ssl_context is not None:
                srv.ssl_context = ctx     # read once per connection, in its own thread

    # -- lifecycle -----------------------------------------------------------------
    def start(self):
        """Bind the configured listeners and start serving. Raises OSError
        when a port cannot be bound, ValueError for HTTPS without TLS."""
        http_port, https_port = self._ports
        try:
            if http_port:
                self.http_port = self._listen(self.host, http_port, None, "http")
            if https_port:
                if self.ssl_context is None:
                    raise ValueError("https monitoring needs a TLS certificate and key")
                self.https_port = self._listen(self.host, https_port, self.ssl_context, "https")
        except BaseException:
            self.stop()
            raise

    def _listen(self, host, port, ctx, scheme):
        bind_port = 0 if port < 0 else port
        try:
            srv = _HTTPServer((host, bind_port), self._handler, _family(host), ctx, self.log)
        except OSError as e:
            raise OSError(e.errno or errno.EADDRINUSE, "can't listen for %s monitoring on %s: %s"
                          % (scheme, hostport(host, bind_port), e.strerror or e)) from None
        actual = srv.server_address[1]
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.25},
                             name="monitor-%s" % scheme, daemon=True)
        self._servers.append((srv, t))
        t.start()
        self.log.notice("Starting %s monitor on %s" % (scheme, hostport(host, actual)))
        return actual

    def stop(self):
        """Close the listeners and open connections; join threads (bounded)."""
        servers, self._servers = self._servers, []
        for srv, t in servers:
            if t.is_alive():
                srv.shutdown()      # returns within one poll interval
            srv.server_close()
        deadline = time.monotonic() + STOP_JOIN_BUDGET
        for srv, t in servers:
            srv.close_all(max(0.0, deadline - time.monotonic()))
            t.join(max(0.0, deadline - time.monotonic()))
