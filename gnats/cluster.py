"""The cluster: the route listener, the routes this server dials and the
bookkeeping that crosses routes (route.py is one route connection).

`Cluster` owns membership (registered peers by server id), cluster-name
agreement, duplicate resolution and the local interest peers are told
about; `Solicit` is one route this server dials; `RouteURL` parses the
route URLs of the configuration and of gossip.

Discovery: when a route registers and other routes exist, its INFO (with
`ip` = `nats-route://host:port/`) goes to every other route; a server that
receives an INFO about a server it has no route to dials it ("implicit"
route). Configured routes are redialled forever with backoff; implicit
ones get a few attempts.

Interest: local subscriptions are counted per subject (plain) and per
(subject, queue) (queue weight); only the first SUB / last UNSUB of a plain
subject and every weight change of a queue group cross as RS+/RS-.
"""

import json
import os
import random
from urllib.parse import unquote, urlsplit

from . import VERSION
from .auth import RouteAuth
from .conn import set_socket_options
from .permissions import compile_permissions
from .net import Dial, Listener, Redial, bind_listener, hostport
from .reactor import EVENT_READ
from .route import Route
from .sublist import Subscription

ROUTE_PROTO = 2             # nats-server's route protocol level with RS+/RMSG
ROUTE_SCHEMES = ("nats", "nats-route", "tls")
REDIAL_FIRST = 1.0          # first redial delay of a configured route ...
REDIAL_MAX = 5.0            # ... growing to this
IMPLICIT_ATTEMPTS = 3       # least dial attempts for a route learned by gossip
RETIRE_GRACE = 2.0          # seconds a dropped duplicate route is still read

# name check verdicts
NAME_OK, NAME_ADOPT, NAME_CONFLICT = 0, 1, 2

_B62 = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def new_cluster_name():
    """A random 22-character name, like nats-server's dynamic names."""
    return bytes(_B62[b % 62] for b in os.urandom(22)).decode()


class RouteURL:
    """A route URL: nats://, nats-route:// or tls://, optional user:pass@."""

    def __init__(self, text):
        self.text = text
        raw = text if "://" in text else "nats-route://" + text
        try:
            u = urlsplit(raw)
            port = u.port
        except ValueError:
            raise ValueError("invalid route URL %r" % text)
        if u.scheme not in ROUTE_SCHEMES:
            raise ValueError("invalid route URL %r: scheme must be one of %s"
                             % (text, ", ".join(s + "://" for s in ROUTE_SCHEMES)))
        if not u.hostname or not port:
            raise ValueError("invalid route URL %r: host and port required" % text)
        self.scheme = u.scheme
        self.host = u.hostname
        self.port = port
        self.user = unquote(u.username) if u.username else ""
        self.password = unquote(u.password) if u.password else ""

    def hostport(self):
        return hostport(self.host, self.port)

    def redacted(self):
        """The URL for logs: never the password."""
        cred = ""
        if self.user:
            cred = self.user + (":xxxxx" if self.password else "") + "@"
        return "%s://%s%s" % (self.scheme, cred, self.hostport())


class Solicit(Redial):
    """A route this server dials: a configured URL (`explicit`, redialled
    forever with backoff) or one learned by gossip (a few attempts)."""

    def __init__(self, cluster, url, explicit):
        self.cluster = cluster
        self.url = url
        self.explicit = explicit
        self.attempts = 0
        self.route = None           # the live Route this dial produced
        self.remote_id = ""         # the server last found at this URL
        Redial.__init__(self)       # stopped: a route to ourselves, or shutdown

    def idle(self):
        return self.route is None and self.dial is None and self.timer is None and not self.stopped

    def connect(self):
        self.timer = None
        c = self.cluster
        if self.stopped or c.shutting_down or self.route is not None or self.dial is not None:
            return
        if self.remote_id and self.remote_id in c.remotes:
            return                  # already linked to that server another way
        self.attempts += 1
        c.log.debug("Trying to connect to route on %s" % self.url.hostport())
        self.dial = Dial(c.reactor, self.url.host, self.url.port, self._connected, self._failed)

    def _connected(self, sock):
        self.dial = None
        if self.cluster.shutting_down:
            sock.close()
            return
        self.cluster.create_solicited(self, sock)

    def _failed(self, why):
        self.dial = None
        self.cluster.log.debug("Error trying to connect to route (attempt %d): %s"
                               % (self.attempts, why))
        self.retry()

    def retry(self):
        """Schedule the next attempt, if this route deserves one."""
        c = self.cluster
        if self.stopped or c.shutting_down or self.timer is not None:
            return
        # nats-server tries a gossiped route 1 + connect_retries times; we
        # allow a few at least, since one refused connect costs little
        if not self.explicit and self.attempts >= max(IMPLICIT_ATTEMPTS, 1 + c.opts.connect_retries):
            c.forget(self)
            return
        delay = min(REDIAL_FIRST * (1.5 ** max(self.attempts - 1, 0)), REDIAL_MAX)
        delay *= 0.9 + 0.2 * random.random()    # desynchronise peers dialling each other
        self.timer = c.reactor.call_later(delay, self.connect)

    def now(self):
        """Dial at once (a gossiped INFO says the server is up)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.connect()


# ---------------------------------------------------------------------------
class Cluster:
    """The route listener, dialled routes, registered peers and the local
    interest they are told about. Runs on the reactor thread."""

    def __init__(self, server):
        self.server = server
        o = server.opts
        self.log = server.log
        self.reactor = server.reactor
        self.name = o.cluster_name or new_cluster_name()
        self.name_dynamic = not o.cluster_name
        self.port = 0
        self.listener = None
        self.shutting_down = False
        self.conns = {}             # rid -> Route: every route connection
        self.remotes = {}           # remote server_id -> registered Route
        self.next_rid = 0
        self._perm_spec = self._perms = None    # route_perms() compiles once per spec
        self.plain_refs = {}        # (account wire, subject) -> local plain subscriptions
        self.queue_refs = {}        # (account wire, subject, queue) -> local members
        self._urls = []             # connect_urls for clients
        self.configured = [Solicit(self, RouteURL(u), True) for u in o.routes]
        self.implicit = {}          # host:port -> Solicit learned by gossip
        self.auth = RouteAuth(o)
        self.tls_server_ctx = self.tls_client_ctx = None
        self.tls_digest = ""        # of the certificate files in use (reload spots rotation)
        if o.cluster_tls or o.cluster_tls_cert:
            from .tls import files_digest, route_contexts
            self.tls_server_ctx, self.tls_client_ctx = route_contexts(o)
            self.tls_digest = files_digest(o.cluster_tls_cert, o.cluster_tls_key,
                                           o.cluster_tls_ca_cert)

    @property
    def opts(self):
        # the server's options in force: a reload replaces them
        return self.server.opts

    # -- reload (gnats/reload.py prepares what may fail) ----------------
    def reconfigure(self, auth, tls_contexts, tls_digest):
        """New credentials and TLS contexts for connections from now on;
        a configured cluster name replaces the current one."""
        self.auth = auth
        self.tls_server_ctx, self.tls_client_ctx = tls_contexts
        self.tls_digest = tls_digest
        name = self.opts.cluster_name
        if name and name != self.name:
            self.name, self.name_dynamic = name, False

    # -- lifecycle -------------------------------------------------------
    def start(self):
        o = self.opts
        host = o.cluster_host or "0.0.0.0"
        port = o.cluster_port if o.cluster_port > 0 else 0
        sock = bind_listener(host, port)
        self.port = sock.getsockname()[1]
        self.listener = Listener(self.reactor, sock, self.accept_route)
        self.log.notice("Cluster name is %s" % self.name)
        if self.name_dynamic:
            self.log.warn("Cluster name was dynamically generated, consider setting one")
        self.log.notice("Listening for route connections on %s" % hostport(host, self.port))
        if self.tls_server_ctx is not None:
            self.log.notice("TLS required for route connections")

    def solicit_routes(self):
        for s in self.configured:
            s.connect()

    def shutdown(self):
        self.shutting_down = True
        if self.listener is not None:
            self.listener.close()
        for s in self.configured + list(self.implicit.values()):
            s.stop()
        for r in list(self.conns.values()):
            r.close_conn("Server Shutdown")

    # -- what peers and clients are told ----------------------------------
    def route_info(self):
        o = self.opts
        srv = self.server
        host = o.cluster_host or "0.0.0.0"
        port = self.port
        adv = ""
        if o.cluster_advertise:
            adv = o.cluster_advertise
            try:
                u = RouteURL(adv)
                host, port = u.host, u.port
            except ValueError:
                pass
        info = {
            "server_id": srv.server_id,
            "server_name": srv.server_name,
            "version": VERSION,
            "proto": ROUTE_PROTO,
            "host": host,
            "port": port,
            "headers": True,
            "auth_required": self.auth.required,
            "tls_required": self.tls_server_ctx is not None,
            "tls_verify": self.tls_server_ctx is not None,
            "max_payload": srv.max_payload,
            "cluster": self.name,
        }
        if self.name_dynamic:
            info["cluster_dynamic"] = True
        if not o.cluster_no_advertise:
            info["connect_urls"] = srv.client_urls()
        if adv:
            info["ip"] = "nats-route://%s/" % hostport(host, port)
        return info

    def connect_urls(self):
        """Client URLs of every member, this server first (empty until this
        server first joins a cluster, or with no_advertise)."""
        return list(self._urls)

    def _update_urls(self):
        """Recompute connect_urls; tell protocol-1 clients if it changed.
        Once this server has been part of a cluster the list keeps at least
        its own URL, as nats-server's does: when the last route goes,
        clients get `connect_urls: [self]`, which tells them to drop the
        departed servers from their pools (an INFO without the field
        changes nothing, so they kept retrying servers that were gone)."""
        urls = []
        if (self.remotes or self._urls) and not self.opts.cluster_no_advertise:
            urls = list(self.server.client_urls())
            for r in self.remotes.values():
                for u in r.connect_urls:
                    if isinstance(u, str) and u not in urls:
                        urls.append(u)
        if urls != self._urls:
            self._urls = urls
            if not self.shutting_down:
                self.server.broadcast_info()

    def check_name(self, remote, remote_dynamic):
        """nats-server's rule: a dynamic name gives way to a configured one,
        or (both dynamic) to the higher-sorting one; an empty name is taken
        as agreeing; two different configured names conflict."""
        if not remote or remote == self.name:
            return NAME_OK
        if not self.name_dynamic and not remote_dynamic:
            return NAME_CONFLICT
        if self.name_dynamic and (not remote_dynamic or remote > self.name):
            return NAME_ADOPT
        return NAME_OK             # the peer adopts ours

    def adopt_name(self, name, dynamic):
        self.name = name
        self.name_dynamic = dynamic
        self.log.notice("Cluster name updated to %s" % name)

    # -- connections -----------------------------------------------------
    def _new_route(self, sock, addr, solicit):
        self.next_rid += 1
        r = Route(self, sock, addr, self.next_rid, solicit)
        self.conns[r.rid] = r
        self.reactor.register(sock, EVENT_READ, r)
        self.log.notice("%s - Route connection created" % r.tag())
        o = self.opts
        r.timers.append(self.reactor.call_later(o.ping_interval, r.ping_timer))
        return r

    def accept_route(self, sock, addr):
        set_socket_options(sock)
        if self.shutting_down:
            sock.close()
            return
        r = self._new_route(sock, addr, None)
        if self.tls_server_ctx is not None:
            # as nats-server: the TLS handshake comes first, INFO after it
            r.start_tls(self.tls_server_ctx, True, self.opts.cluster_tls_timeout)
        else:
            r.send_info()
        if self.auth.required:
            r.timers.append(self.reactor.call_later(self.auth.timeout, r.auth_timeout))

    def create_solicited(self, solicit, sock):
        set_socket_options(sock)
        try:
            addr = sock.getpeername()
        except OSError:
            sock.close()
            solicit._failed("connection lost")
            return
        r = self._new_route(sock, addr, solicit)
        solicit.route = r
        if self.tls_client_ctx is not None:
            r.start_tls(self.tls_client_ctx, False, self.opts.cluster_tls_timeout,
                        server_hostname=solicit.url.host)
        else:
            r.send_connect()

    def accept_connect(self, r, obj):
        """CONNECT on an accepted route passed authorization. Returns False
        when the route was refused (and is being closed)."""
        name = obj.get("name")
        if name == self.server.server_id:
            r.close_conn("Duplicate Route")     # we dialled ourselves: quietly
            return False
        remote = obj.get("cluster") or ""
        if not isinstance(remote, str):
            remote = ""
        verdict = self.check_name(remote, bool(obj.get("cluster_dynamic")))
        if verdict == NAME_CONFLICT:
            text = 'Rejecting connection, cluster name "%s" does not match "%s"' % (remote, self.name)
            self.log.error("%s - %s" % (r.tag(), text))
            r.send_err(text)
            r.close_after_flush("Cluster Name Conflict")
            return False
        if verdict == NAME_ADOPT:
            self.adopt_name(remote, bool(obj.get("cluster_dynamic")))
        return True

    def first_info(self, r, info):
        """The peer's own INFO: detect a route to self, agree on the cluster
        name (dialled side), resolve duplicates, then register."""
        sid = info["server_id"]
        r.remote_id = sid
        r.remote_info = info
        r.info_received = True
        urls = info.get("connect_urls")
        r.connect_urls = list(urls) if isinstance(urls, list) else []
        if sid == self.server.server_id:
            if r.solicit is not None:
                self.log.debug('Detected route to self, ignoring "%s"' % r.solicit.url.redacted())
                r.solicit.stopped = True
            r.close_conn("Duplicate Route")
            return
        if r.did_solicit:
            remote = info.get("cluster") or ""
            if not isinstance(remote, str):
                remote = ""
            verdict = self.check_name(remote, bool(info.get("cluster_dynamic")))
            if verdict == NAME_CONFLICT:
                self.log.error('%s - Rejecting route, cluster name "%s" does not match "%s"'
                               % (r.tag(), remote, self.name))
                r.close_conn("Cluster Name Conflict")
                return
            if verdict == NAME_ADOPT:
                self.adopt_name(remote, bool(info.get("cluster_dynamic")))
        existing = self.remotes.get(sid)
        if existing is not None:
            if self._keeps(existing, r):
                self.log.debug('%s - Detected duplicate remote route "%s"' % (r.tag(), sid))
                self.retire(r)
                return
            self.log.debug('%s - Detected duplicate remote route "%s"' % (existing.tag(), sid))
            # the new route inherits the interest, so no message published
            # before the peer resends it over the new route is dropped
            for key, sub in existing.subs.items():
                if key not in r.subs:
                    r.subs[key] = Subscription(r, sub.subject, sub.queue, None, sub.weight)
                    r.inherited.add(key)
            self.unregister(existing)
            self.retire(existing)
            # what the peer does not confirm over the new route meanwhile was
            # withdrawn on the old one: drop it when the grace period ends
            r.timers.append(self.server.reactor.call_later(RETIRE_GRACE, r.drop_unconfirmed))
        self.register(r)

    def retire(self, r):
        """Stop sending on a duplicate route but lose nothing the peer
        already sent on it: keep reading (and delivering) for a grace
        period, then close. Closing at once lost messages in flight when
        both ends dropped the route that carried traffic."""
        r.retired = True
        r.timers.append(self.server.reactor.call_later(RETIRE_GRACE, r.close_conn, "Duplicate Route"))

    def unregister(self, r):
        """Take a registered route out of use (its interest too)."""
        r.remove_remote_subs()
        r.registered = False
        if self.remotes.get(r.remote_id) is r:
            del self.remotes[r.remote_id]
        srv = self.server
        if srv.routes.pop(r.rid, None) is not None:     # the server's registry
            srv.retire_counters(r)

    def _keeps(self, existing, new):
        """Of two routes to one server, keep the one dialled by the server
        with the smaller id: both ends decide alike. Same dialler: keep the
        older."""
        me = self.server.server_id
        d_old = me if existing.did_solicit else existing.remote_id
        d_new = me if new.did_solicit else new.remote_id
        if d_old == d_new:
            return True
        return d_old < d_new

    def register(self, r):
        sid = r.remote_id
        self.remotes[sid] = r
        self.server.routes[r.rid] = r
        r.registered = True
        if r.solicit is not None:
            r.solicit.remote_id = sid
            r.solicit.attempts = 0
        log = self.log
        if log.debug_on:
            log.debug('%s - Registering remote route "%s"' % (r.tag(), sid))
        r.insert_remote_subs()
        self.send_local_subs(r)
        if log.debug_on:
            log.debug("%s - Route sent local subscriptions" % r.tag())
        if len(self.remotes) > 1:
            self.forward_new_route(r)
        self._update_urls()

    def forward_new_route(self, r):
        """Tell every other peer about the new member, so they dial it."""
        info = dict(r.remote_info)
        if not info.get("ip"):
            port = info.get("port")
            if not isinstance(port, int):
                return
            info["ip"] = "nats-route://%s/" % hostport(r.ip, port)
        line = ("INFO %s\r\n" % json.dumps(info, separators=(",", ":"))).encode()
        for other in self.remotes.values():
            if other is not r:
                other.send_proto(line)

    def gossip_info(self, info):
        """An INFO about another server: dial it unless linked already."""
        sid = info["server_id"]
        if sid == self.server.server_id or sid in self.remotes:
            return
        ip = info.get("ip")
        try:
            if isinstance(ip, str) and ip:
                url = RouteURL(ip)
            else:
                url = RouteURL("nats-route://%s/" % hostport(str(info.get("host")), int(info.get("port"))))
        except (ValueError, TypeError):
            self.log.error("Error parsing URL from INFO: %r" % ip)
            return
        key = url.hostport()
        for s in self.configured:
            if s.url.hostport() == key:
                if s.idle():
                    s.now()
                return
        if key in self.implicit:
            return
        if info.get("auth_required"):
            url.user = self.opts.cluster_username
            url.password = self.opts.cluster_password
        s = Solicit(self, url, False)
        s.remote_id = sid
        self.implicit[key] = s
        s.connect()

    def info_update(self, r, info):
        """A peer's INFO again (its client URLs may have changed)."""
        urls = info.get("connect_urls")
        r.connect_urls = list(urls) if isinstance(urls, list) else []
        r.remote_info = info
        if r.registered:
            self._update_urls()

    def forget(self, solicit):
        if self.implicit.get(solicit.url.hostport()) is solicit:
            del self.implicit[solicit.url.hostport()]

    def route_closed(self, r, reason):
        self.conns.pop(r.rid, None)
        self.log.notice("%s - Router connection closed: %s" % (r.tag(), reason))
        was_registered = r.registered and self.remotes.get(r.remote_id) is r
        self.unregister(r)
        if was_registered:
            self._update_urls()
        s = r.solicit
        if s is not None and s.route is r:
            s.route = None
            if r.remote_id:
                s.remote_id = r.remote_id
            if not s.explicit and (reason == "Duplicate Route" or was_registered):
                self.forget(s)          # gossip will tell us again if needed
            else:
                if s.explicit and not s.stopped and not self.shutting_down and reason != "Duplicate Route":
                    self.log.debug('Attempting reconnect for solicited route "%s"' % s.url.redacted())
                s.retry()
        if was_registered and not self.shutting_down:
            # dials that gave way to this route now have to take over
            for s in self.configured:
                if s.remote_id == r.remote_id and s.idle():
                    s.retry()

    # -- permissions ------------------------------------------------------
    def route_perms(self):
        """The cluster's `permissions { import, export }` compiled (publish
        is import: what we ask peers for; subscribe is export: what peers
        may ask us for, nats-server canImport/canExport), or None."""
        spec = self.server.opts.cluster_permissions
        if spec is not self._perm_spec:
            self._perm_spec, self._perms = spec, compile_permissions(spec)
        return self._perms

    def imports(self, subject):
        """Do we send RS+ for local interest on subject?"""
        p = self.route_perms()
        return p is None or p.can_publish(subject)

    # -- local interest --------------------------------------------------
    # Keyed by account: every RS+/RS- names the account (its wire bytes).
    def send_local_subs(self, r):
        parts = []
        for (acc, subj) in self.plain_refs:
            if self.imports(subj):
                parts.append(b"RS+ %s %s\r\n" % (acc, subj.encode("latin-1")))
        for (acc, subj, queue), w in self.queue_refs.items():
            if self.imports(subj):
                parts.append(b"RS+ %s %s %s %d\r\n" % (acc, subj.encode("latin-1"),
                                                        queue.encode("latin-1"), w))
        if parts:
            r.send_now(b"".join(parts))
            if self.log.trace_on:
                for p in parts:
                    r.trace_out(p)

    def _broadcast(self, line):
        for r in self.remotes.values():
            r.send_proto(line)

    def local_sub_added(self, sub, account, count=1):
        """`count`: members it stands for (a leaf's queue weight) [leaf]."""
        subj = sub.subject
        if not self.imports(subj):
            return
        acc = account.wire
        if sub.queue is None:
            key = (acc, subj)
            n = self.plain_refs.get(key, 0) + count
            self.plain_refs[key] = n
            if n == count:
                self._broadcast(b"RS+ %s %s\r\n" % (acc, subj.encode("latin-1")))
        else:
            key = (acc, subj, sub.queue)
            n = self.queue_refs.get(key, 0) + count
            self.queue_refs[key] = n
            self._broadcast(b"RS+ %s %s %s %d\r\n" % (acc, subj.encode("latin-1"),
                                                       sub.queue.encode("latin-1"), n))

    def local_sub_removed(self, sub, account, count=1):
        subj = sub.subject
        if not self.imports(subj):
            return
        acc = account.wire
        if sub.queue is None:
            key = (acc, subj)
            n = self.plain_refs.get(key, 0) - count
            if n > 0:
                self.plain_refs[key] = n
            elif key in self.plain_refs:
                del self.plain_refs[key]
                self._broadcast(b"RS- %s %s\r\n" % (acc, subj.encode("latin-1")))
        else:
            key = (acc, subj, sub.queue)
            n = self.queue_refs.get(key, 0) - count
            q = sub.queue.encode("latin-1")
            if n > 0:
                self.queue_refs[key] = n
                self._broadcast(b"RS+ %s %s %s %d\r\n" % (acc, subj.encode("latin-1"), q, n))
            elif key in self.queue_refs:
                del self.queue_refs[key]
                self._broadcast(b"RS- %s %s %s\r\n" % (acc, subj.encode("latin-1"), q))
