"""Configuration reload: SIGHUP, or an embedding program's apply_options.

Theory of operation, as nats-server's reload.go: the running Options are
compared field by field with the new ones. Every field belongs to one
concern in CONCERNS that knows how to apply it, or to REFUSED, which names
it as nats-server does ("config reload not supported for Port: old=4222,
new=4223"). A field in neither is refused too, so an option added later can
never be ignored while the log says "Reloaded".

Two phases. `prepare` builds everything that can fail (credential tables,
SSL contexts, route URLs, a new log destination) without touching the
server; only when every concern is ready does `commit` swap them in, log
nats-server's "Reloaded: ..." line for what changed, and finally "Reloaded
server configuration". A refusal or a bad file therefore applies nothing.

TLS contexts are rebuilt on every reload while TLS is on, even with the
same file names: rotating a certificate means replacing the file's content.
New handshakes use the new context; established connections keep theirs.
The HTTPS monitor, which serves the client certificate, takes it too.

Credentials: when the client (or cluster) authorization changed, every
authenticated connection is checked again against the new one (Go's
reloadAuthorization / isRouterAuthorized); a bcrypt check runs in the
auth worker pool (gnats/authorize.py) and its verdict comes back through
the reactor's call_soon_threadsafe, so a reload with many rotated hashes
never stalls traffic. Until its verdict arrives a connection keeps
working on the credentials it passed under the previous configuration, as
in Go. A connection that never sent CONNECT while authorization was off is
closed when a reload turns it on (it has no credentials to check).

Everything here runs on the reactor thread, except the bcrypt checks.
"""

import dataclasses

from .account import GLOBAL_ACCOUNT
from .accounts_conf import all_users
from .authz import refuse_unenforced
from .imports import relink_client
from . import parser as P
from .auth import PLAINTEXT_WARNING, AuthError, ClientAuth, RouteAuth
from .jetstream import reloading as js_reloading
from .jetstream.accounts import configured as js_accounts
from .log import Logger
from . import procfiles


class ReloadError(Exception):
    """A reload that was refused; the message is nats-server's text."""


def go_duration(secs):
    """Seconds as Go prints a time.Duration: 2m0s, 10s, 500ms."""
    if secs == 0:
        return "0s"
    if secs < 1:
        for unit, scale in (("ms", 1e3), ("µs", 1e6), ("ns", 1e9)):
            if secs * scale >= 1:
                return _num(secs * scale) + unit
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    out = "%dh" % h if h else ""
    if h or m:
        out += "%dm" % m
    return out + _num(s) + "s"


def _num(v):
    """A number as Go's %v prints a float64: 4, 0.5."""
    return ("%.9f" % v).rstrip("0").rstrip(".")


def _go(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, list):
        return "[%s]" % " ".join(_go(x) for x in v)
    return str(v)


# Fields nats-server refuses to reload: its field name and how it prints the
# values. (The cluster's host and port have their own wording, below.)
REFUSED = {
    "host": ("Host", _go), "port": ("Port", _go), "server_name": ("ServerName", _go),
    "http_host": ("HTTPHost", _go), "http_port": ("HTTPPort", _go),
    "https_port": ("HTTPSPort", _go), "max_pending": ("MaxPending", _go),
    "max_subscriptions": ("MaxSubs", _go),
    "lame_duck_duration": ("LameDuckDuration", go_duration),
    "lame_duck_grace_period": ("LameDuckGracePeriod", go_duration),
}
_CLUSTER_REFUSED = {"cluster_host": "cluster host", "cluster_port": "cluster port"}
# Same file on every reload (the command line is fixed); nothing to apply.
_IGNORED = ("config_file",)


def refusal(name, old, new):
    """nats-server's text for a field that cannot change without a restart."""
    if name in _CLUSTER_REFUSED:
        return "config reload not supported for %s: old=%s, new=%s" % (
            _CLUSTER_REFUSED[name], _go(old), _go(new))
    go_name, fmt = REFUSED.get(name, (name, _go))
    return "config reload not supported for %s: old=%s, new=%s" % (go_name, fmt(old), fmt(new))


# --- the concerns -------------------------------------------------------------

class Concern:
    """The fields one part of the server takes from Options. `prepare` may
    raise ReloadError and must not change the server; `commit` cannot fail."""
    fields = ()
    always = False      # prepare even when none of `fields` changed

    def prepare(self, srv, old, new, changed):
        pass

    def commit(self, srv, old, new, changed):
        pass

    def abandon(self):
        """Another concern refused: release what prepare opened."""


class Logging(Concern):
    fields = ("debug", "trace", "logtime", "log_file", "syslog", "remote_syslog")
    _DEST = ("log_file", "syslog", "remote_syslog")
    dest = None         # a Logger for the new destination, once prepared

    def prepare(self, srv, old, new, changed):
        self.dest = None
        if any(f in changed for f in self._DEST):
            try:
                self.dest = Logger(log_file=new.log_file, syslog=new.syslog,
                                   remote_syslog=new.remote_syslog)
            except (OSError, ValueError) as e:
                raise ReloadError("error opening log: %s" % e) from None

    def abandon(self):
        if self.dest is not None:
            self.dest.close()

    def commit(self, srv, old, new, changed):
        log = srv.log
        for f in self.fields:
            if f in changed:
                log.notice("Reloaded: %s = %s" % (f, _go(getattr(new, f))))
        if self.dest is not None:
            log.retarget(self.dest)
        log.debug_on, log.trace_on, log.logtime = new.debug, new.trace, new.logtime


class Limits(Concern):
    fields = ("max_connections", "max_control_line", "max_payload",
              "ping_interval", "ping_max", "write_deadline")

    def commit(self, srv, old, new, changed):
        srv.apply_limits()
        for c in list(srv.clients.values()):
            c.reset_caches()        # cached PUB entries were sized by the old limits
        for acc in srv.accounts.all():
            acc.sublist.bump()
        for f in self.fields:
            if f in changed:
                v = getattr(new, f)
                text = go_duration(v) if f in ("ping_interval", "write_deadline") else _go(v)
                srv.log.notice("Reloaded: %s = %s" % (f, text))
        if "ping_interval" in changed:
            rearm_pings(srv, new.ping_interval)
        excess = len(srv.clients) - new.max_connections
        if "max_connections" in changed and excess > 0:
            for c in list(srv.clients.values())[-excess:]:   # the newest go first
                c.send_err(P.ERR_MAX_CONN)
                c.close_after_flush("Maximum Connections Exceeded")
            srv.log.notice("Closed %d connections to fall within max_connections" % excess)


class ClientTLS(Concern):
    # handshake_first and allow_non_tls are read at each accept: a new
    # value applies to the connections that come after the reload
    fields = ("tls", "tls_verify", "tls_cert", "tls_key", "tls_ca_cert",
              "tls_cipher_suites", "tls_timeout", "tls_handshake_first",
              "tls_handshake_first_fallback", "allow_non_tls")
    always = True

    def prepare(self, srv, old, new, changed):
        self.ctx = self.monitor_ctx = None
        self.digest = ""
        if new.tls:
            from .tls import TLSConfigError, files_digest, server_context
            try:
                self.ctx = server_context(new)
            except (TLSConfigError, OSError) as e:
                raise ReloadError(str(e)) from None
            self.digest = files_digest(new.tls_cert, new.tls_key, new.tls_ca_cert)
        if srv.monitor is not None and srv.monitor.https_port:
            # the HTTPS monitor serves the client certificate: the new one
            # (a config that drops it is refused, as at startup)
            from .tls import TLSConfigError, monitor_context
            try:
                self.monitor_ctx = monitor_context(new)
            except (TLSConfigError, OSError) as e:
                raise ReloadError(str(e)) from None

    def commit(self, srv, old, new, changed):
        rotated = self.digest != srv.tls_digest
        srv.tls_context = self.ctx
        srv.tls_digest = self.digest
        if self.monitor_ctx is not None:
            srv.monitor.set_tls_context(self.monitor_ctx)
        if rotated or any(f in changed for f in self.fields if f != "tls_timeout"):
            srv.log.notice("Reloaded: tls = %s" % ("enabled" if new.tls else "disabled"))
        if "tls_timeout" in changed:
            srv.log.notice("Reloaded: tls timeout = %s" % _go(new.tls_timeout))


class ClientAuthorization(Concern):
    _CREDS = {"username": "authorization username", "password": "authorization password",
              "authorization": "authorization token", "users": "authorization users",
              "default_permissions": "default_permissions",
              "nkeys": "authorization nkey users", "no_auth_user": "no_auth_user",
              "tls_verify_and_map": "tls verify_and_map", "accounts": "accounts"}
    # the TLS fields too: an unset auth timeout follows the TLS timeout
    fields = tuple(_CREDS) + ("auth_timeout", "tls", "tls_timeout")

    def prepare(self, srv, old, new, changed):
        try:
            self.auth = ClientAuth(new)
        except AuthError as e:
            raise ReloadError(str(e)) from None

    def commit(self, srv, old, new, changed):
        log = srv.log
        creds = [f for f in self._CREDS if f in changed]
        for f in creds:
            log.notice("Reloaded: %s" % self._CREDS[f])
        if "auth_timeout" in changed:
            log.notice("Reloaded: authorization timeout = %s" % _go(self.auth.timeout))
        if not creds:
            # Same credentials: keep the checker (in-flight verdicts stay
            # valid), with the new timeout.
            srv.client_auth.timeout = self.auth.timeout
            return
        srv.client_auth = self.auth
        if self.auth.plaintext_passwords:
            log.warn(PLAINTEXT_WARNING)
        recheck_clients(srv, self.auth)


class Accounts(Concern):
    """accounts { }, as nats-server's reloadAuthorization: an account that
    stays keeps its Account (and its clients' subscriptions); exports,
    imports and limits are wired again; a client whose user now belongs to
    another account, or is gone, is closed (it reconnects into the right
    one); the others are checked again by ClientAuthorization, after this."""
    fields = ("accounts",)

    def commit(self, srv, old, new, changed):
        srv.configure_accounts(new.accounts)
        where = {}
        users, nkeys = all_users(new)
        for u in users:
            where[u.get("user")] = u.get("account") or GLOBAL_ACCOUNT
        for u in nkeys:
            where[u.get("nkey")] = u.get("account") or GLOBAL_ACCOUNT
        for c in list(srv.clients.values()):
            if c.closed:
                continue
            if c.user and where.get(c.user) != c.account.name:
                c.close_conn("Client Closed")
                continue
            pay = c.account.max_payload
            c.mpay = pay if 0 < pay < srv.max_payload else 0
            relink_client(srv, c)
            c.reset_caches()


class ClusterSettings(Concern):
    """cluster { } except host, port and routes: nats-server's "cluster"."""
    fields = ("cluster_name", "cluster_advertise", "cluster_no_advertise",
              "cluster_username", "cluster_password", "cluster_auth_timeout",
              "cluster_tls", "cluster_tls_verify", "cluster_tls_cert", "cluster_tls_key",
              "cluster_tls_ca_cert", "cluster_tls_timeout", "cluster_tls_cipher_suites",
              "connect_retries")
    always = True
    _AUTH = ("cluster_username", "cluster_password")

    def prepare(self, srv, old, new, changed):
        self.ready = None
        if srv.cluster is None:
            return                  # no cluster running: the options are just kept
        try:
            auth = RouteAuth(new)
        except AuthError as e:
            raise ReloadError(str(e)) from None
        ctxs, digest = (None, None), ""
        if new.cluster_tls or new.cluster_tls_cert:
            from .tls import TLSConfigError, files_digest, route_contexts
            try:
                ctxs = route_contexts(new)
            except (TLSConfigError, OSError) as e:
                raise ReloadError(str(e)) from None
            digest = files_digest(new.cluster_tls_cert, new.cluster_tls_key,
                                   new.cluster_tls_ca_cert)
        self.ready = (auth, ctxs, digest)

    def commit(self, srv, old, new, changed):
        cl = srv.cluster
        if cl is None:
            if any(f in changed for f in self.fields):
                srv.log.notice("Reloaded: cluster")
            return
        auth, ctxs, digest = self.ready
        new_creds = any(f in changed for f in self._AUTH)
        if not new_creds:
            cl.auth.timeout, auth = auth.timeout, cl.auth   # in-flight verdicts stay valid
        rotated = digest != cl.tls_digest
        cl.reconfigure(auth, ctxs, digest)
        if any(f in changed for f in self.fields) or rotated:
            srv.log.notice("Reloaded: cluster")
        if new_creds:
            recheck_routes(srv, auth)


class ClusterRoutes(Concern):
    fields = ("routes",)

    def prepare(self, srv, old, new, changed):
        self.add, self.remove = [], []
        if srv.cluster is None or "routes" not in changed:
            return
        from .cluster import RouteURL
        self.add = [u for u in new.routes if u not in old.routes]
        self.remove = [u for u in old.routes if u not in new.routes]
        try:
            self.add = [RouteURL(u) for u in self.add]
        except ValueError as e:
            raise ReloadError(str(e)) from None

    def commit(self, srv, old, new, changed):
        if "routes" not in changed:
            return
        if srv.cluster is not None:
            _update_routes(srv.cluster, self.add, self.remove)
        srv.log.notice("Reloaded: cluster routes")


def _update_routes(cl, add, remove):
    """Dial the added URLs (RouteURL); drop the routes of the removed ones
    (URL texts) for good, as nats-server's routesOption."""
    from .cluster import Solicit
    keep = []
    for s in cl.configured:
        if s.url.text in remove:
            s.stop()
            if s.route is not None and not s.route.closed:
                s.route.close_conn("Route Removed")
            cl.log.notice("Removed route %s" % s.url.redacted())
        else:
            keep.append(s)
    cl.configured = keep
    for url in add:
        s = Solicit(cl, url, True)
        cl.configured.append(s)
        s.connect()


class Process(Concern):
    fields = ("pid_file", "ports_file_dir", "client_advertise")

    def commit(self, srv, old, new, changed):
        log = srv.log
        if "pid_file" in changed and new.pid_file:
            procfiles.write_pid_file(srv)
            log.notice("Reloaded: pid_file = %s" % new.pid_file)
        if "ports_file_dir" in changed:
            procfiles.remove_ports_file(srv)
            procfiles.write_ports_file(srv)
            log.notice("Reloaded: ports_file_dir = %s" % new.ports_file_dir)
        if "client_advertise" in changed:
            # INFO is built per connection from the options: nothing to redo
            log.notice("Reload: client_advertise = %s" % new.client_advertise)   # sic, as Go


class SubjectMappings(Concern):
    """Top-level `mappings { }` (gnats/mapping.py): the global account's."""
    fields = ("mappings", "cluster_name")

    def commit(self, srv, old, new, changed):
        install_mappings(srv, new)
        if "mappings" in changed:
            srv.log.notice("Reloaded: accounts")    # nats-server's word for it


def install_mappings(srv, opts):
    """Give the global account the options' mappings (at start and on
    reload). Every client resolves its cached PUB lines again: they hold
    what the old mappings gave."""
    ms = opts.mappings
    if ms is not None:
        ms.set_cluster(opts.cluster_name)   # for cluster-scoped destinations
    acc = srv.accounts.global_account
    acc.mappings = ms
    acc.sublist.bump()


class JetStream(Concern):
    """jetstream { }: what may change is gnats/jetstream/reloading.py's
    (nats-server's rules and texts). After the accounts: which accounts
    have JetStream, with which limits, is decided again on every reload,
    as nats-server does."""
    fields = ("jetstream", "store_dir", "jetstream_max_memory", "jetstream_max_store",
              "jetstream_sync_interval", "jetstream_sync_always")
    always = True

    def prepare(self, srv, old, new, changed):
        err, self.raise_to = js_reloading.plan(srv.jetstream is not None, old, new, go_duration)
        if err:
            raise ReloadError(err)

    def commit(self, srv, old, new, changed):
        js = srv.jetstream
        if js is not None and not new.jetstream:
            srv.stop_jetstream()
            srv.log.notice("Reloaded: JetStream")
            return
        if js is None:
            if new.jetstream:
                try:
                    srv.start_jetstream()
                except ValueError as e:
                    srv.log.warn("Can't start JetStream: %s" % e)
                srv.log.notice("Reloaded: JetStream")
            return
        for field, n in self.raise_to.items():
            js.raise_limit(field == "jetstream_max_memory", n)
            srv.log.notice("Reloaded: JetStream %s = %s" % (js_reloading.log_name(field), js_reloading.friendly(n)))
        js.configure_accounts(js_accounts(srv))


CONCERNS = (Logging, Limits, ClientTLS, Accounts, ClientAuthorization, ClusterSettings,
            ClusterRoutes, Process, SubjectMappings, JetStream)


# --- the reload -----------------------------------------------------------------

def changed_fields(old, new):
    """Names of the Options fields whose values differ, in declaration order."""
    return [f.name for f in dataclasses.fields(old)
            if getattr(old, f.name) != getattr(new, f.name)]


def apply_options(srv, new):
    """Apply `new` to the running server, or raise ReloadError having
    applied nothing. Logs what changed and "Reloaded server configuration".
    `new` must be a fresh Options (e.g. `server.opts.copy()` then edited):
    the running object compared with itself shows no change."""
    old = srv.opts
    try:
        refuse_unenforced(new)
    except ValueError as e:
        raise ReloadError(str(e))
    changed = changed_fields(old, new)
    owned = {f for c in CONCERNS for f in c.fields}
    for name in changed:
        if name not in owned and name not in _IGNORED:
            raise ReloadError(refusal(name, getattr(old, name), getattr(new, name)))
    if new.max_payload > new.max_pending:
        raise ReloadError("max_payload (%d) cannot be higher than max_pending (%d)"
                          % (new.max_payload, new.max_pending))
    concerns = [c() for c in CONCERNS]
    active = [c for c in concerns if c.always or any(f in changed for f in c.fields)]
    try:
        for c in active:
            c.prepare(srv, old, new, changed)
    except ReloadError:
        for c in active:
            c.abandon()
        raise
    srv.opts = new
    for c in active:
        c.commit(srv, old, new, changed)
    srv.log.notice("Reloaded server configuration")


def rearm_pings(srv, interval):
    """The keep-alive PING already armed for each connection, client or
    route, goes by the new interval from now (later ones re-arm from the
    options in force anyway): shortened from 2 minutes, it would otherwise
    wait out the old one."""
    conns = list(srv.clients.values())
    if srv.cluster is not None:
        conns += list(srv.cluster.conns.values())
    for c in conns:
        if c.closed:
            continue
        for t in c.timers:
            if t.fn == c.ping_timer:
                t.cancel()
        c.timers.append(c.reactor.call_later(interval, c.ping_timer))


def recheck_clients(srv, auth):
    """Every client against the client authorization now in force (D1, D5)."""
    for c in list(srv.clients.values()):
        if c.closed or c.client_auth is not auth:
            continue        # issue 21: websocket clients under their block's own credentials
        if not auth.required:
            c.authed = True         # an in-flight check is redone under `auth`
            c.set_user(c.user)      # no users: no permissions either
            continue
        if not c.authed or c.paused:
            # Not yet authenticated: its CONNECT is checked against the auth
            # in force when it arrives (an in-flight check is redone if the
            # auth changed meanwhile; see gnats/authorize.py).
            continue
        if not c.connected:
            # Let in while authorization was off and never sent CONNECT:
            # nothing to check, so it goes, as in nats-server.
            _client_violation(c)
            continue
        srv.authorizer.check(auth, c.connect_obj or {}, _client_verdict, srv, auth, c,
                             ctx=c.auth_context(), conn=c)


def recheck_routes(srv, auth):
    """Accepted routes against the new cluster authorization (Go's
    isRouterAuthorized); routes we dialled carry our credentials, not theirs."""
    for r in list(srv.cluster.conns.values()):
        if r.closed or r.did_solicit or not r.ready:
            continue                # unready routes are checked at CONNECT
        srv.authorizer.check(auth, r.connect_obj or {}, _route_verdict, srv, auth, r,
                             conn=r)


def _client_verdict(srv, auth, c, user):
    if c.closed or auth is not srv.client_auth:
        return                      # gone, or a later reload checks it again
    if user is None:
        _client_violation(c)
    else:
        c.set_user(user)


def _client_violation(c):
    c.authed = False
    c.refuse_auth()


def _route_verdict(srv, auth, r, user):
    cl = srv.cluster
    if r.closed or cl is None or auth is not cl.auth:
        return
    if user is None:
        r.ready = False
        r.refuse_auth()
