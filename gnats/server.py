"""The server: listeners, the connection registry, lifecycle and signals,
and the stats snapshot the monitor reads.

Everything here runs on the reactor thread except `get_snapshot`, which the
HTTP monitor thread calls: it asks the reactor for a fresh snapshot through
a thread-safe call and waits (bounded) for it, so monitoring never touches
live connection state.
"""

import base64
import itertools
import json
import os
import platform
import signal
import socket
import sys
import threading
import time
from collections import deque

from . import RELEASE, SERVER_NAME, VERSION
from . import parser as P
from .account import Accounts
from .client import Client
from .conn import set_socket_options
from .listener import Listener, bind_listener
from .reactor import EVENT_READ, Reactor

SLOW_CHECK_INTERVAL = 0.25  # how often write-blocked connections are checked
MAX_CLOSED_CLIENTS = 10000  # closed connections remembered for /connz (as nats-server)
SUB_REMOVE_SLICE = 20000    # subscriptions of a closed client removed per reactor turn
# Subscription details kept across all those records. The ring bounds the
# number of records, not their size: every client that left after holding
# 100k subscriptions kept ~34 MB alive, so a few reconnecting abusers
# could exhaust memory. Oldest records lose their lists first.
MAX_CLOSED_SUB_DETAILS = 100000


def new_server_id():
    # nats-server 2.x ids: 56 upper-case base32 characters starting with 'N'
    raw = base64.b32encode(os.urandom(35)).decode().rstrip("=")
    return ("N" + raw)[:56]


def _client_auth(opts):
    from .auth import ClientAuth
    return ClientAuth(opts)


class Server:
    def __init__(self, opts, log):
        self.opts = opts
        self.log = log
        self.reactor = Reactor(log)
        self.accounts = Accounts()
        # The global account's subject index under its old name, for the
        # server-wide readers (snapshot, reload, tests, tools/stress.py).
        self.sublist = self.accounts.global_account.sublist
        self.server_id = new_server_id()
        self.server_name = opts.server_name or self.server_id
        self.clients = {}           # cid -> Client
        self.routes = {}            # rid -> Route
        self.next_cid = 0
        self.write_blocked = set()
        # recently closed connections for /connz?state=closed (bounded)
        self.closed_conns = deque(maxlen=MAX_CLOSED_CLIENTS)
        self._closed_with_subs = deque()    # records still holding a subs list, oldest first
        self._closed_subs_n = 0
        self.start_time = time.time()
        self.config_load_time = self.start_time
        self.in_msgs = self.in_bytes = 0
        self.total_connections = 0
        self.slow_consumers = 0
        self.listener = None
        self.monitor = None
        self.cluster = None
        self.lame_duck = False
        self.shutting_down = False
        self.exit_code = 0
        self._snap_lock = threading.Lock()
        self._snaps = {}            # with connection lists (True) or not -> latest
        self._snap_next = {}        # kind -> event of a requested build not yet started
        self.client_auth = _client_auth(opts)
        self.apply_limits()

    def apply_limits(self):
        o = self.opts
        self.max_payload = o.max_payload
        self.max_control_line = o.max_control_line
        self.max_pending = o.max_pending

    # out counters of connections that are gone (live ones are summed at
    # snapshot time: receivers count their own deliveries)
    _closed_out_msgs = 0
    _closed_out_bytes = 0

    # -- start -------------------------------------------------------------
    def start(self):
        o = self.opts
        log = self.log
        log.notice("Starting nats-server version %s (%s release %s, Python %s)"
                   % (VERSION, SERVER_NAME, RELEASE, platform.python_version()))
        log.notice("  Version:  %s" % VERSION)
        log.notice("  Name:     %s" % self.server_name)
        log.notice("  ID:       %s" % self.server_id)
        if o.config_file:
            log.notice("Using configuration file: %s" % o.config_file)
        if o.tls:
            self.setup_tls()
        if o.http_port or o.https_port:
            self.start_monitor()
        if o.cluster_port:
            from .route import Cluster
            self.cluster = Cluster(self)
            self.cluster.start()
        port = o.port
        if port == 0:
            port = 4222
        elif port < 0:
            port = 0
        sock = bind_listener(o.host, port)
        self.port = sock.getsockname()[1]
        self.listener = Listener(self.reactor, sock, self.accept_client)
        log.notice("Listening for client connections on %s" % _hostport(o.host, self.port))
        if self.client_auth.plaintext_passwords:
            from .auth import PLAINTEXT_WARNING
            log.warn(PLAINTEXT_WARNING)
        if o.tls:
            log.notice("TLS required for client connections")
        log.debug("server id is %s" % self.server_id)
        self.write_pid_file()
        self.write_ports_file()
        self.reactor.call_later(SLOW_CHECK_INTERVAL, self.check_write_blocked)
        log.notice("Server is ready")
        if self.cluster is not None:
            self.cluster.solicit_routes()

    def setup_tls(self):
        from .tls import files_digest, server_context
        o = self.opts
        self.tls_context = server_context(o)
        self.tls_digest = files_digest(o.tls_cert, o.tls_key, o.tls_ca_cert)

    tls_context = None
    tls_digest = ""             # of the certificate files in use (reload spots rotation)

    def start_monitor(self):
        from .monitor import Monitor
        ctx = None
        if self.opts.https_port:
            from .tls import monitor_context
            ctx = monitor_context(self.opts)
        self.monitor = Monitor(self.opts, self.get_snapshot, self.log, ctx)
        self.monitor.start()

    def client_urls(self, advertised=True):
        """This server's client URL(s) as host:port: for connect_urls the
        advertised address; for the ports file (advertised=False) the one it
        listens on, as nats-server writes it, so a tool reading the file can
        connect."""
        host = (advertised and self.opts.client_advertise) or self.opts.host
        if host in ("", "0.0.0.0", "::"):
            host = _local_ip()
        if ":" in host and not host.startswith("["):
            if host.count(":") == 1:
                return [host]
            host = "[%s]" % host
        return ["%s:%d" % (host, self.port)]

    def write_pid_file(self):
        if self.opts.pid_file:
            try:
                with open(self.opts.pid_file, "w") as f:
                    f.write(str(os.getpid()))
            except OSError as e:
                self.log.error("Could not write pid file: %s" % e)

    def write_ports_file(self):
        d = self.opts.ports_file_dir
        if not d:
            return
        ports = {"nats": ["nats://%s" % u for u in self.client_urls(advertised=False)]}
        if self.monitor is not None:
            if self.monitor.http_port:
                ports["monitoring"] = ["http://%s:%d" % (_local_ip(), self.monitor.http_port)]
        if self.cluster is not None:
            ports["cluster"] = ["nats://%s:%d" % (_local_ip(), self.cluster.port)]
        path = os.path.join(d, "%s_%d.ports" % (os.path.basename(sys.argv[0] or "gnatsd").split(".")[0], os.getpid()))
        try:
            with open(path, "w") as f:
                json.dump(ports, f)
            self.ports_file = path
        except OSError as e:
            self.log.error("Could not write ports file: %s" % e)

    ports_file = ""

    # -- clients -------------------------------------------------------------
    def accept_client(self, sock, addr):
        set_socket_options(sock)
        if self.lame_duck or self.shutting_down:
            sock.close()
            return
        self.next_cid += 1
        cid = self.next_cid
        c = Client(self, sock, addr, cid)
        if len(self.clients) >= self.opts.max_connections:
            self.log.error("%s - maximum connections exceeded" % c.tag())
            try:
                sock.send(("INFO %s \r\n" % c.info_json()).encode() + P.err_line(P.ERR_MAX_CONN))
            except OSError:
                pass
            sock.close()
            return
        self.clients[cid] = c
        self.total_connections += 1
        self.reactor.register(sock, EVENT_READ, c)
        if self.log.debug_on:
            self.log.debug("%s - Client connection created" % c.tag())
        info = ("INFO %s \r\n" % c.info_json()).encode()
        if self.tls_context is not None:
            # INFO goes out in plain text, then the handshake runs in the reactor
            try:
                sock.send(info)
            except OSError:
                c.close_conn("Write Error", flush=False)
                return
            c.wait_tls_hello(self.tls_context, self.opts.tls_timeout)
        else:
            c.send_now(info)
        if self.client_auth.required:
            c.timers.append(self.reactor.call_later(self.client_auth.timeout, c.auth_timeout))
        c.timers.append(self.reactor.call_later(self.opts.ping_interval, c.ping_timer))

    def client_info(self, c):
        o = self.opts
        info = {
            "server_id": self.server_id,
            "server_name": self.server_name,
            "version": VERSION,
            "proto": 1,
            "go": "python" + platform.python_version(),
            "python": platform.python_version(),
            "host": o.host,
            "port": self.port,
            "headers": True,
            "auth_required": self.client_auth.required,
            "ssl_required": bool(o.tls),
            "tls_required": bool(o.tls),
            "tls_verify": bool(o.tls_verify),
            "max_payload": self.max_payload,
            "client_id": c.cid,
            "client_ip": c.ip,
        }
        if self.cluster is not None:
            urls = self.cluster.connect_urls()
            if urls:
                info["connect_urls"] = urls
            if self.cluster.name:
                info["cluster"] = self.cluster.name
        if self.lame_duck:
            info["ldm"] = True
        return info

    def broadcast_info(self):
        """Send an updated INFO to every protocol-1 client (cluster members
        came or went, or lame duck mode began)."""
        for c in list(self.clients.values()):
            if c.protocol >= 1 and c.connected and not c.closed and c.authed:
                c.send_now(("INFO %s \r\n" % c.info_json()).encode())

    def authorize_client(self, c, connect):
        """CONNECT from a client that must authenticate. A bcrypt check runs
        in a worker thread (it takes ~0.1 s by design) while the client's
        further input waits, so the reactor stays responsive."""
        auth = self.client_auth
        if auth.needs_slow_check(connect):
            c.paused = True

            def work():
                user = auth.check(connect)
                self.reactor.call_soon_threadsafe(self._auth_result, c, user, auth)
            self._auth_pool().submit(work)
            return
        self._auth_result(c, auth.check(connect), auth)

    _pool = None

    def _auth_pool(self):
        # Two workers: bcrypt releases the GIL, and a flood of connections
        # then queues instead of spawning a thread each.
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="auth")
        return self._pool

    def _auth_result(self, c, user, auth):
        if c.closed:
            return
        if auth is not self.client_auth:
            # a reload replaced the credentials while this check ran:
            # check again against those in force now
            self.authorize_client(c, c.connect_obj or {})
            return
        if user is None:
            c.refuse_auth()
            return
        c.auth_done(user)
        if c.paused:
            c.paused = False
            if c.pend:
                c.feed(b"")
        self.reactor.dirty.add(c)

    def client_closed(self, c, reason):
        self.clients.pop(c.cid, None)
        rec = conn_record(c, MAX_CLOSED_SUB_DETAILS)     # never build more than the ring keeps
        rec["stop"] = time.time()
        rec["reason"] = reason
        self.remember_closed(rec)
        subs = list(c.subs.values())
        c.subs.clear()
        self.remove_closed_subs(c.account.sublist, subs, 0)
        self._closed_out_msgs += c.out_msgs
        self._closed_out_bytes += c.out_bytes
        if self.log.debug_on:
            self.log.debug("%s - Client connection closed: %s" % (c.tag(), reason))

    def remember_closed(self, rec):
        """Append to the closed-connection ring within MAX_CLOSED_SUB_DETAILS.
        (A list is replaced, never changed: snapshots may share it.)"""
        ring, with_subs, cap = self.closed_conns, self._closed_with_subs, MAX_CLOSED_SUB_DETAILS
        if len(ring) == ring.maxlen and with_subs and with_subs[0] is ring[0]:
            self._closed_subs_n -= len(with_subs.popleft()["subs_detail"])   # about to drop out
        n = len(rec["subs_detail"])
        if n > cap:
            rec["subs"], rec["subs_detail"], n = rec["subs"][:cap], rec["subs_detail"][:cap], cap
        while self._closed_subs_n + n > cap:
            old = with_subs.popleft()
            self._closed_subs_n -= len(old["subs_detail"])
            old["subs"], old["subs_detail"] = [], []
        if n:
            with_subs.append(rec)
            self._closed_subs_n += n
        ring.append(rec)

    # -- interest -----------------------------------------------------------
    def add_sub(self, sub):
        sub.client.account.sublist.insert(sub)
        if self.cluster is not None and sub.client.kind == "client":
            self.cluster.local_sub_added(sub)

    def remove_sub(self, sub):
        sub.client.account.sublist.remove(sub)
        if self.cluster is not None and sub.client.kind == "client":
            self.cluster.local_sub_removed(sub)

    def remove_closed_subs(self, sl, subs, start):
        """Remove a closed client's subscriptions, SUB_REMOVE_SLICE per
        reactor turn: a client leaving with 1M subscriptions stalled
        everyone for seconds. Until removed they match but deliver nothing
        (their client is closed; delivery skips it)."""
        part = subs[start:start + SUB_REMOVE_SLICE]
        for sub in part:
            sub.closed = True
        sl.remove_many(part)
        if self.cluster is not None:
            for sub in part:
                self.cluster.local_sub_removed(sub)
        nxt = start + SUB_REMOVE_SLICE
        if nxt < len(subs):
            self.reactor.call_later(0, self.remove_closed_subs, sl, subs, nxt)

    # -- slow consumers ------------------------------------------------------
    def check_write_blocked(self):
        if self.write_blocked:
            now = time.monotonic()
            for c in list(self.write_blocked):
                if not c.closed:
                    c.check_slow(now)
        if not self.shutting_down:
            self.reactor.call_later(SLOW_CHECK_INTERVAL, self.check_write_blocked)

    # -- monitoring snapshot -------------------------------------------------
    def get_snapshot(self, fresh=True, conns=True):
        """Called from the monitor thread. Returns the snapshot built by the
        reactor thread, asking for a fresh one first (waits up to 1 s; a
        stalled reactor yields the previous snapshot, or None). Without
        `conns` the per-connection lists are left out: /varz, /subsz and
        /metrics need only totals, and listing 10k connections took ~65 ms."""
        kind = bool(conns)
        if fresh:
            # Requests share one pending build of each kind: a build per
            # request queued faster than the reactor could build them, and
            # hammering the monitor froze every client.
            with self._snap_lock:
                ev = self._snap_next.get(kind)
                queue = ev is None
                if queue:
                    ev = self._snap_next[kind] = threading.Event()
            if queue:
                self.reactor.call_soon_threadsafe(self._publish_snapshot, ev, kind)
            ev.wait(1.0)
        with self._snap_lock:
            return self._snaps.get(kind)

    def _publish_snapshot(self, ev, conns=True):
        with self._snap_lock:
            if self._snap_next.get(conns) is ev:
                del self._snap_next[conns]      # later requests need a later build
        snap = self.build_snapshot(conns)
        with self._snap_lock:
            self._snaps[conns] = snap
        if ev is not None:
            ev.set()

    def build_snapshot(self, with_conns=True):
        o = self.opts
        conns = []
        out_msgs = self._closed_out_msgs
        out_bytes = self._closed_out_bytes
        if with_conns:
            for cid in sorted(self.clients):
                c = self.clients[cid]
                out_msgs += c.out_msgs
                out_bytes += c.out_bytes
                conns.append(conn_record(c))
        else:
            for c in self.clients.values():
                out_msgs += c.out_msgs
                out_bytes += c.out_bytes
        routes = []
        in_msgs = self.in_msgs
        in_bytes = self.in_bytes
        for rid in sorted(self.routes):
            r = self.routes[rid]
            out_msgs += r.out_msgs
            out_bytes += r.out_bytes
            routes.append(r.snapshot())
        cluster = {"name": "", "host": o.cluster_host, "port": 0, "urls": []}
        if self.cluster is not None:
            cluster = {"name": self.cluster.name, "host": o.cluster_host or "0.0.0.0",
                       "port": self.cluster.port, "urls": list(o.routes)}
        mon = self.monitor
        return {
            "now": time.time(), "start": self.start_time, "config_load_time": self.config_load_time,
            "server": {
                "server_id": self.server_id, "server_name": self.server_name, "version": VERSION,
                "proto": 1, "go": "python" + platform.python_version(), "host": o.host,
                "port": getattr(self, "port", o.port), "auth_required": self.client_auth.required,
                "tls_required": bool(o.tls), "tls_verify": bool(o.tls_verify),
                "max_connections": o.max_connections, "ping_interval": o.ping_interval,
                "ping_max": o.ping_max, "http_host": o.http_host or o.host,
                "http_port": mon.http_port if mon else o.http_port,
                "https_port": mon.https_port if mon else o.https_port,
                "auth_timeout": self.client_auth.timeout, "max_control_line": self.max_control_line,
                "max_payload": self.max_payload, "max_pending": self.max_pending,
                "tls_timeout": o.tls_timeout, "write_deadline": o.write_deadline,
                "max_subscriptions": o.max_subscriptions, "cluster": cluster,
                "connect_urls": self.cluster.connect_urls() if self.cluster is not None else [],
            },
            "stats": {
                "connections": len(self.clients), "total_connections": self.total_connections,
                "routes": len(self.routes), "remotes": len(self.routes),
                "in_msgs": in_msgs, "out_msgs": out_msgs, "in_bytes": in_bytes,
                "out_bytes": out_bytes, "slow_consumers": self.slow_consumers,
                "subscriptions": self.sublist.count,
            },
            "sublist": self.sublist.stats(),
            "connections": conns,
            "closed_connections": list(self.closed_conns) if with_conns else [],
            "routes": routes,
        }

    # -- lifecycle -----------------------------------------------------------
    def install_signal_handlers(self):
        r = self.reactor

        def on(signum, fn):
            try:
                signal.signal(signum, lambda s, f: r.call_soon_threadsafe(fn, s))
            except (ValueError, OSError, AttributeError):
                pass
        on(signal.SIGINT, self._sig_stop)
        on(signal.SIGTERM, self._sig_stop)
        if hasattr(signal, "SIGHUP"):
            on(signal.SIGHUP, lambda s: self.reload())
            on(signal.SIGUSR1, lambda s: self.reopen_log())
            on(signal.SIGUSR2, lambda s: self.enter_lame_duck())

    def _sig_stop(self, signum):
        name = {signal.SIGINT: "interrupt", signal.SIGTERM: "terminated"}.get(signum, str(signum))
        self.log.notice('Trapped "%s" signal' % name)
        self.shutdown()

    def reopen_log(self):
        self.log.notice("Re-opening log file")
        self.log.reopen()

    def run(self):
        try:
            self.reactor.run()
        finally:
            if not self.shutting_down:
                self.shutdown()     # the loop died: still close every socket
            self._cleanup()
        return self.exit_code

    def shutdown(self):
        if self.shutting_down:
            return
        self.shutting_down = True
        self.log.notice("Initiating Shutdown...")
        if self.listener is not None:
            self.listener.close()
        if self.cluster is not None:
            self.cluster.shutdown()
        for c in list(self.clients.values()):
            c.close_conn("Server Shutdown")
        if self.monitor is not None:
            self.monitor.stop()
        self.log.notice("Server Exiting..")
        self.reactor.stop()

    def _cleanup(self):
        # An embedded server lives on in its process: leave no thread, pipe
        # or selector behind (a bcrypt check still running is waited for).
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self.reactor.close()
        if self.opts.pid_file:
            try:
                os.unlink(self.opts.pid_file)
            except OSError:
                pass
        self.remove_ports_file()

    def remove_ports_file(self):
        if self.ports_file:
            try:
                os.unlink(self.ports_file)
            except OSError:
                pass
            self.ports_file = ""

    # -- reload (SIGHUP) -----------------------------------------------------
    def reload(self):
        """Re-read the configuration file and the command line, then apply
        them (gnats/reload.py); a bad file or a refused change keeps the
        running configuration."""
        cmdline = getattr(self.opts, "cmdline", None)
        if cmdline is None or not self.opts.config_file:
            self.log.error("Failed to reload server configuration: no configuration file")
            return
        from .cli import build_options
        from .reload import ReloadError
        try:
            self.apply_options(build_options(cmdline))
        except (ReloadError, ValueError, OSError) as e:    # ConfigError is a ValueError
            self.log.error("Failed to reload server configuration: %s" % e)

    def apply_options(self, new_opts):
        """Apply new Options to the running server (reactor thread only), or
        raise reload.ReloadError with nats-server's text, applying nothing."""
        from .reload import apply_options
        apply_options(self, new_opts)
        self.config_load_time = time.time()

    # -- lame duck (SIGUSR2) -------------------------------------------------
    def enter_lame_duck(self):
        if self.lame_duck or self.shutting_down:
            return
        self.lame_duck = True
        o = self.opts
        self.log.notice("Entering lame duck mode, stop accepting new clients")
        if self.listener is not None:
            self.listener.close()
        self.broadcast_info()
        grace = o.lame_duck_grace_period
        duration = max(o.lame_duck_duration - grace, 0.0)
        self.reactor.call_later(grace, self._lame_duck_close, duration)

    def _lame_duck_close(self, duration):
        clients = list(self.clients.values())
        if clients:
            step = duration / len(clients) if duration > 0 else 0
            for i, c in enumerate(clients):
                self.reactor.call_later(step * i, c.close_conn, "Server Shutdown")
            self.reactor.call_later(step * len(clients) + 0.05, self.shutdown)
        else:
            self.shutdown()


def conn_record(c, max_subs=None):
    """A client connection as plain data for the monitoring snapshot, with
    at most `max_subs` subscriptions listed (the count stays complete)."""
    subs = list(itertools.islice(c.subs.values(), max_subs))
    return {
        "cid": c.cid, "ip": c.ip, "port": c.port, "start": c.start,
        "last_activity": c.last_activity, "rtt": c.rtt,
        "pending_bytes": len(c.wbuf), "in_msgs": c.in_msgs, "out_msgs": c.out_msgs,
        "in_bytes": c.in_bytes, "out_bytes": c.out_bytes,
        "subscriptions": len(c.subs), "subs": [s.subject for s in subs],
        "subs_detail": [_sub_detail(s, c.cid) for s in subs],
        "name": c.name, "lang": c.lang, "version": c.version,
        "tls_version": c.tls_version, "tls_cipher_suite": c.tls_cipher, "user": c.user,
    }


def _sub_detail(s, cid):
    # no per-subscription message count: the fast path counts per
    # connection only, and a wrong figure is worse than none
    d = {"subject": s.subject, "sid": s.sid.decode("latin-1"), "cid": cid}
    if s.queue is not None:
        d["qgroup"] = s.queue
    if s.max_msgs:
        d["max"] = s.max_msgs
    return d


def _hostport(host, port):
    if ":" in host:
        return "[%s]:%d" % (host, port)
    return "%s:%d" % (host, port)


_LOCAL_IP = None


def _local_ip():
    """A non-loopback address of this host for advertising, else 127.0.0.1."""
    global _LOCAL_IP
    if _LOCAL_IP is None:
        ip = "127.0.0.1"
        try:
            for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
                a = info[4][0]
                if not a.startswith("127."):
                    ip = a
                    break
        except OSError:
            pass
        _LOCAL_IP = ip
    return _LOCAL_IP
