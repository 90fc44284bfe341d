"""The server: listeners, the connection registry, lifecycle and signals.

Everything here runs on the reactor thread. The monitor's threads read the
server only through `self.snapshots` (gnats/snapshot.py), which owns the
closed-connection ring and hands out snapshots the reactor built.
"""

import base64
import os
import platform
import signal
import time

from .authz import refuse_unenforced
from . import RELEASE, SERVER_NAME, VERSION
from . import parser as P
from . import procfiles
from .account import GLOBAL_ACCOUNT, SYSTEM_ACCOUNT, Accounts
from .auth import PLAINTEXT_WARNING, ClientAuth
from .authorize import Authorizer
from .client import Client
from .cluster import Cluster
from .conn import MAX_READ, set_socket_options
from .imports import link as link_accounts, remove_shadows
from .internal import InternalClient, Internals
from .net import Listener, bind_listener, hostport, local_ip
from .operator_accounts import account_specs
from .reactor import EVENT_READ, Reactor
from .reload import ReloadError, apply_options as apply_reload, install_mappings
from .snapshot import Snapshots
from .sysacct import SystemAccount

SLOW_CHECK_INTERVAL = 0.25  # how often write-blocked connections are checked
SUB_REMOVE_SLICE = 20000    # subscriptions of a closed client removed per reactor turn


def _routed(sub):
    """Is this local subscription's interest announced to routes?"""
    c = sub.client
    if c.kind == "client":
        return True
    return isinstance(c, InternalClient) and sub.routed


def _account_of(sub):
    """The account whose index holds `sub`: a stream import's shadow sits
    in the exporter's, every other subscription in its client's."""
    acc = getattr(sub, "account", None)
    return acc if acc is not None else sub.client.account


def new_server_id():
    # nats-server 2.x ids: 56 upper-case base32 characters starting with 'N'
    raw = base64.b32encode(os.urandom(35)).decode().rstrip("=")
    return ("N" + raw)[:56]


class Server:
    def __init__(self, opts, log, rebuild=None):
        refuse_unenforced(opts)
        self.opts = opts
        self.rebuild = rebuild      # () -> fresh Options for a SIGHUP reload (main.py's)
        self.log = log
        self.reactor = Reactor(log)
        self.accounts = Accounts()
        # The global account's subject index under its old name, for the
        # server-wide readers (snapshot, reload, tests, tools/stress.py).
        self.sublist = self.accounts.global_account.sublist
        install_mappings(self, opts)    # top-level mappings { } (gnats/mapping.py)
        self.internals = Internals(self)    # server-side subscribers (internal.py)
        self.server_id = new_server_id()
        self.server_name = opts.server_name or self.server_id
        self.clients = {}           # cid -> Client
        self.routes = {}            # rid -> Route
        self.leaf_conns = {}        # lid -> registered Leaf [leaf]
        self.leafnodes = None       # gnats.leafnodes.Leafnodes with a leafnodes block [leaf]
        self.next_cid = 0
        self.write_blocked = set()
        self.start_time = time.time()
        self.config_load_time = self.start_time
        self.in_msgs = self.in_bytes = 0
        self.total_connections = 0
        self.slow_consumers = 0
        self.stalls = 0             # producer stalls (varz stalled_clients)
        self.listener = None
        self.monitor = None
        self.cluster = None
        self.jetstream = None       # gnats/jetstream/manager.py when enabled
        self.websocket = None       # the ws_listener.WsListener (issue 21)
        self.lame_duck = False
        self.shutting_down = False
        self.exit_code = 0
        self.snapshots = Snapshots(self)    # for the monitor; the closed-connection ring
        self.client_auth = ClientAuth(opts)
        self.authorizer = Authorizer(self.reactor)    # CONNECT checks off the reactor thread
        self.apply_limits()
        self.system = SystemAccount(self)   # $SYS: events and requests (sysacct.py)

    def configure_accounts(self, specs):
        """Register the configured accounts (keeping the Account of a name
        that stays, with its clients' subscriptions), give each its
        limits and mappings, and wire exports and imports (imports.py).
        Returns the accounts that went away."""
        accs = self.accounts
        # the system account stays even when no config names it ($SYS, sysacct.py)
        keep = {GLOBAL_ACCOUNT, self.opts.system_account or SYSTEM_ACCOUNT}
        now = time.time()
        for spec in specs:
            acc = accs.register(spec.name)
            keep.add(spec.name)
            if acc.spec != spec:
                acc.update_time = now
            acc.spec = spec
            lim = spec.limits
            acc.max_connections = lim.get("max_connections", 0)
            acc.max_subscriptions = lim.get("max_subscriptions", 0)
            acc.max_payload = lim.get("max_payload", 0)
            acc.mappings = spec.mappings
            if spec.mappings is not None:
                spec.mappings.set_cluster(self.opts.cluster_name)   # cluster-scoped destinations
            acc.sublist.bump()      # cached PUB lines hold what the old mappings gave
            if not acc.update_time:
                acc.update_time = now
        if not accs.global_account.update_time:
            accs.global_account.update_time = now
        # only configured accounts go (those of the config or of the operator
        # mode's preload; not $G, not the system account registered alone)
        gone = [a for a in accs.all() if a.spec is not None and a.name not in keep]
        for acc in gone:
            accs.remove(acc)
            if acc.responses is not None:
                acc.responses.close()
                acc.responses = None
            acc.spec = None
        link_accounts(self, accs.all() + gone)
        return gone

    def apply_limits(self):
        o = self.opts
        self.max_payload = o.max_payload
        self.max_control_line = o.max_control_line
        self.max_pending = o.max_pending
        # Producer back-pressure (conn.py): receivers over stall_at (3/4 of
        # max_pending, nats-server's mp/4*3) stall the clients feeding them.
        # The parse loop checks in guard mode: when some connection is
        # write-blocked (a receiver over stall_at is), or always when one
        # read (MAX_READ, ~3x that in MSG lines) could carry a receiver
        # from empty past it; and within a run every stall_window bytes,
        # so a receiver overshoots the gate by far less than the quarter
        # left to max_pending (at the default, 2 MiB: whole reads).
        self.stall_at = o.max_pending // 4 * 3
        self.stall_small = self.stall_at < 4 * MAX_READ
        self.stall_window = max(1024, min(MAX_READ, self.stall_at // 24))

    # out counters of connections that are gone (live ones are summed at
    # snapshot time: receivers count their own deliveries)
    _closed_out_msgs = 0
    _closed_out_bytes = 0

    def retire_counters(self, conn):
        """A connection leaves the registry: its out counters join the
        closed totals (zeroed, so they are never counted twice)."""
        self._closed_out_msgs += conn.out_msgs
        self._closed_out_bytes += conn.out_bytes
        conn.out_msgs = conn.out_bytes = 0

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
            self.cluster = Cluster(self)
            self.cluster.start()
        # after the cluster exists: the imports' routed interest is announced.
        # In operator mode the accounts are the preloaded account JWTs.
        trust = self.client_auth.trust
        self.configure_accounts(o.accounts if trust is None else account_specs(trust, log))
        # after the cluster and the accounts exist: JetStream's internal
        # subscriptions are route interest in their accounts
        if o.jetstream:
            self.start_jetstream()      # ValueError: directory in use or unusable
        # JetStream, leaf nodes and websocket are imported when configured:
        # a plain server starts ~0.1 s sooner (clients that reconnect to a
        # restarted server, as nats.py's tests do, wait for that)
        if o.leafnodes is not None:                 # [leaf]
            from .leafnodes import Leafnodes
            self.leafnodes = Leafnodes(self)
            self.leafnodes.start()
        if o.websocket is not None and o.websocket.port:
            from .ws_listener import WsListener
            self.websocket = WsListener(self, o.websocket)
            self.websocket.start()
        port = o.port
        if port == 0:
            port = 4222
        elif port < 0:
            port = 0
        sock = bind_listener(o.host, port)
        self.port = sock.getsockname()[1]
        self.listener = Listener(self.reactor, sock, self.accept_client)
        log.notice("Listening for client connections on %s" % hostport(o.host, self.port))
        self.system.start()
        if self.client_auth.plaintext_passwords:
            log.warn(PLAINTEXT_WARNING)
        if o.tls:
            log.notice("TLS required for client connections")
        log.debug("server id is %s" % self.server_id)
        procfiles.write_pid_file(self)
        procfiles.write_ports_file(self)
        self.reactor.call_later(SLOW_CHECK_INTERVAL, self.check_write_blocked)
        log.notice("Server is ready")
        if self.cluster is not None:
            self.cluster.solicit_routes()
        if self.leafnodes is not None:              # [leaf]
            self.leafnodes.solicit()

    def start_jetstream(self):
        """At start, or when a reload turns JetStream on."""
        from .jetstream.manager import JetStream
        o = self.opts
        js = JetStream(self, {
            "store_dir": o.store_dir, "max_memory_store": o.jetstream_max_memory,
            "max_file_store": o.jetstream_max_store, "sync_interval": o.jetstream_sync_interval,
            "sync_always": o.jetstream_sync_always, "domain": o.jetstream_domain})
        js.start()
        self.jetstream = js

    def stop_jetstream(self):
        """A reload turns JetStream off: streams close, their files stay."""
        self.jetstream.shutdown()
        self.jetstream = None

    def setup_tls(self):
        from .tls import files_digest, server_context
        o = self.opts
        self.tls_context = server_context(o)
        self.tls_digest = files_digest(o.tls_cert, o.tls_key, o.tls_ca_cert)

    ports_file = ""             # the ports file written (procfiles.py), removed at exit
    tls_context = None
    tls_digest = ""             # of the certificate files in use (reload spots rotation)

    def start_monitor(self):
        from .monitor import Monitor
        ctx = None
        if self.opts.https_port:
            from .tls import monitor_context
            ctx = monitor_context(self.opts)
        self.monitor = Monitor(self.opts, self.snapshots.get, self.log, ctx)
        self.monitor.start()

    def client_urls(self, advertised=True):
        """This server's client URL(s) as host:port: for connect_urls the
        advertised address; for the ports file (advertised=False) the one it
        listens on, as nats-server writes it, so a tool reading the file can
        connect."""
        host = (advertised and self.opts.client_advertise) or self.opts.host
        if host in ("", "0.0.0.0", "::"):
            host = local_ip()
        if ":" in host and not host.startswith("["):
            if host.count(":") == 1:
                return [host]
            host = "[%s]" % host
        return ["%s:%d" % (host, self.port)]

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
        c.account.clients.add(c)
        self.total_connections += 1
        self.reactor.register(sock, EVENT_READ, c)
        if self.log.debug_on:
            self.log.debug("%s - Client connection created" % c.tag())
        o = self.opts
        if self.tls_context is not None and o.tls_handshake_first:
            # the client's ClientHello comes first, INFO after the handshake
            c.wait_tls_first(self.tls_context, o.tls_timeout, o.tls_handshake_first_fallback)
        elif self.tls_context is not None:
            # INFO goes out in plain text, then the handshake runs in the reactor
            try:
                sock.send(("INFO %s \r\n" % c.info_json()).encode())
            except OSError:
                c.close_conn("Write Error", flush=False)
                return
            c.wait_tls_hello(self.tls_context, o.tls_timeout, optional=o.allow_non_tls)
        else:
            c.send_info()
        if self.client_auth.required:
            c.timers.append(self.reactor.call_later(self.client_auth.timeout, c.auth_timeout))
        c.timers.append(self.reactor.call_later(self.opts.ping_interval, c.ping_timer))

    def client_info(self, c):
        o = self.opts
        # allow_non_tls: TLS is offered, not required (nats-server 2.x says
        # tls_available instead of tls_required)
        tls_required = bool(o.tls) and not o.allow_non_tls
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
            "ssl_required": tls_required,
            "tls_required": tls_required,
            "tls_verify": bool(o.tls_verify),
            "max_payload": self.max_payload,
            "client_id": c.cid,
            "client_ip": c.ip,
        }
        if o.tls and o.allow_non_tls:
            info["tls_available"] = True
        if c.nonce and not c.connected:
            info["nonce"] = c.nonce     # the first INFO only, as nats-server
        if self.cluster is not None:
            urls = self.cluster.connect_urls()
            if urls:
                info["connect_urls"] = urls
            if self.cluster.name:
                info["cluster"] = self.cluster.name
        if self.lame_duck:
            info["ldm"] = True
        if self.jetstream is not None:
            info["jetstream"] = True
        return info

    def broadcast_info(self):
        """Send an updated INFO to every protocol-1 client (cluster members
        came or went, or lame duck mode began)."""
        for c in list(self.clients.values()):
            if c.protocol >= 1 and c.connected and not c.closed and c.authed:
                c.send_now(("INFO %s \r\n" % c.info_json()).encode())

    def client_closed(self, c, reason):
        self.clients.pop(c.cid, None)
        self.snapshots.remember_closed(c, reason)
        subs = list(c.subs.values())
        c.subs.clear()
        if c.shadows:
            # its stream imports' shadows, in the exporters' indexes
            for sub in list(c.shadows):
                remove_shadows(self, c, sub)
        c.account.clients.discard(c)
        self.remove_closed_subs(c.account, subs, 0)
        self.retire_counters(c)
        self.system.client_closed(c, reason)
        if self.log.debug_on:
            self.log.debug("%s - Client connection closed: %s" % (c.tag(), reason))

    # -- interest -----------------------------------------------------------
    def add_sub(self, sub):
        acc = _account_of(sub)
        acc.sublist.insert(sub)
        if self.cluster is not None and _routed(sub):
            self.cluster.local_sub_added(sub, acc)
        if self.leafnodes is not None:              # [leaf]
            self.leafnodes.sub_changed(sub, 1, acc)

    def remove_sub(self, sub):
        acc = _account_of(sub)
        acc.sublist.remove(sub)
        if self.cluster is not None and _routed(sub):
            self.cluster.local_sub_removed(sub, acc)
        if self.leafnodes is not None:              # [leaf]
            self.leafnodes.sub_changed(sub, -1, acc)

    # -- internal subscriptions (gnats/internal.py) ---------------------------
    def internal_subscribe(self, account, subject, callback, queue=None, routed=True, imports=False):
        """Subscribe the server itself in `account`: callback(sub, subject,
        reply, hdr, msg, client) runs on the reactor thread after each
        matching publish has been delivered (client: the publishing
        connection, None for an internal publish). `routed`: announce the
        interest to routes (as a client's). `imports`: also receive what the
        account's stream imports show (internal.py)."""
        return self.internals.subscribe(account, subject, callback, queue, routed, imports)

    def internal_unsubscribe(self, sub):
        self.internals.unsubscribe(sub)

    def publish_internal(self, account, subject, reply, hdr, msg):
        """Publish in `account` as a client would (hdr: the NATS/1.0 header
        block bytes, or None). Returns the number of deliveries."""
        return self.internals.publish(account, subject, reply, hdr, msg)

    def remove_closed_subs(self, acc, subs, start):
        """Remove a closed client's subscriptions (all in account `acc`),
        SUB_REMOVE_SLICE per reactor turn: a client leaving with 1M
        subscriptions stalled everyone for seconds. Until removed they
        match but deliver nothing (their client is closed; delivery skips
        it)."""
        part = subs[start:start + SUB_REMOVE_SLICE]
        for sub in part:
            sub.closed = True
        acc.sublist.remove_many(part)
        if self.cluster is not None:
            for sub in part:
                self.cluster.local_sub_removed(sub, acc)
        if self.leafnodes is not None:              # [leaf]
            for sub in part:
                self.leafnodes.sub_changed(sub, -1, acc)
        nxt = start + SUB_REMOVE_SLICE
        if nxt < len(subs):
            self.reactor.call_later(0, self.remove_closed_subs, acc, subs, nxt)

    # -- slow consumers ------------------------------------------------------
    def check_write_blocked(self):
        if self.write_blocked:
            now = time.monotonic()
            for c in list(self.write_blocked):
                if not c.closed:
                    c.check_slow(now)
        if not self.shutting_down:
            self.reactor.call_later(SLOW_CHECK_INTERVAL, self.check_write_blocked)

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
        self.system.server_event("SHUTDOWN")   # before routes and clients close (flushed then)
        if self.listener is not None:
            self.listener.close()
        if self.websocket is not None:
            self.websocket.close()
        if self.cluster is not None:
            self.cluster.shutdown()
        if self.leafnodes is not None:              # [leaf]
            self.leafnodes.shutdown()
        for c in list(self.clients.values()):
            c.close_conn("Server Shutdown")
        if self.jetstream is not None:
            self.jetstream.shutdown()
        if self.monitor is not None:
            self.monitor.stop()
        self.log.notice("Server Exiting..")
        self.reactor.stop()

    def _cleanup(self):
        # An embedded server lives on in its process: leave no thread, pipe
        # or selector behind (a bcrypt check still running is waited for).
        self.authorizer.close()
        self.reactor.close()
        procfiles.remove_pid_file(self)
        procfiles.remove_ports_file(self)

    # -- reload (SIGHUP) -----------------------------------------------------
    def reload(self):
        """Build the options again with `rebuild` (main.py re-reads the
        configuration file and the command line), then apply them
        (gnats/reload.py); a bad file or a refused change keeps the running
        configuration."""
        if self.rebuild is None or not self.opts.config_file:
            self.log.error("Failed to reload server configuration: no configuration file")
            return
        try:
            self.apply_options(self.rebuild())
        except (ReloadError, ValueError, OSError) as e:    # ConfigError is a ValueError
            self.log.error("Failed to reload server configuration: %s" % e)

    def apply_options(self, new_opts):
        """Apply new Options to the running server (reactor thread only), or
        raise reload.ReloadError with nats-server's text, applying nothing."""
        apply_reload(self, new_opts)
        self.config_load_time = time.time()

    # -- lame duck (SIGUSR2) -------------------------------------------------
    def enter_lame_duck(self):
        if self.lame_duck or self.shutting_down:
            return
        self.lame_duck = True
        o = self.opts
        self.log.notice("Entering lame duck mode, stop accepting new clients")
        self.system.server_event("LAMEDUCK")
        if self.listener is not None:
            self.listener.close()
        if self.websocket is not None:
            self.websocket.close()
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
