"""Cluster routes: servers of one cluster linked in a full mesh.

Theory of operation
-------------------
`Cluster` owns the route listener, the routes this server dials and the
bookkeeping that crosses routes; `Route` is one route connection.

Handshake (what nats-server 2.9 does, so Go and Python nodes mix):
  * TLS first when cluster TLS is configured (no plain-text INFO before it);
  * the accepting side sends its INFO at once; the dialling side sends
    CONNECT (credentials, its server id as `name`, cluster name) and its INFO;
  * each side registers the route when it receives the peer's INFO. A route
    to ourselves is dropped quietly; when two routes join the same pair of
    servers, both ends keep the one dialled by the server with the smaller
    server id, so the choice agrees without another round trip.

Discovery: when a route registers and other routes exist, its INFO (with
`ip` = `nats-route://host:port/`) goes to every other route; a server that
receives an INFO about a server it has no route to dials it ("implicit"
route). Configured routes are redialled forever with backoff; implicit
ones get a few attempts.

Interest: local subscriptions are counted per subject (plain) and per
(subject, queue) (queue weight); only the first SUB / last UNSUB of a plain
subject and every weight change of a queue group cross as RS+/RS-. Remote
interest becomes `Subscription(route, subject, queue, weight=w)` in the
account's Sublist, so delivery.py forwards messages with no route-specific
lookup. Messages from a route are delivered locally only (one hop).
Every RS+/RS-/RMSG/HMSG names an account, resolved through the server's
registry (account.py): a route's interest goes into that account's subject
index, keyed by (account, subject, queue). Only the global account `$G`
exists; lines naming another (a Go node's `$SYS`) are read and ignored.
"""

import json
import os
import random
from urllib.parse import unquote, urlsplit

from . import VERSION
from . import parser as P
from .conn import Connection, set_socket_options
from .delivery import build_fast_bases, deliver, fast_entry, match_publish
from .dial import Dial
from .inbound import cache_entry
from .listener import Listener, bind_listener
from .parser import ProtocolError
from .reactor import EVENT_READ
from .sublist import Subscription, valid_subject

ROUTE_PROTO = 2             # nats-server's route protocol level with RS+/RMSG
ROUTE_SCHEMES = ("nats", "nats-route", "tls")
REDIAL_FIRST = 1.0          # first redial delay of a configured route ...
REDIAL_MAX = 5.0            # ... growing to this
IMPLICIT_ATTEMPTS = 3       # least dial attempts for a route learned by gossip
MAX_JSON_LINE = 64 * 1024   # INFO/CONNECT may be longer than max_control_line
MAX_REMOTE_SUBS = 1 << 20   # interest entries one peer may register (memory bound)
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
        if ":" in self.host:
            return "[%s]:%d" % (self.host, self.port)
        return "%s:%d" % (self.host, self.port)

    def redacted(self):
        """The URL for logs: never the password."""
        cred = ""
        if self.user:
            cred = self.user + (":xxxxx" if self.password else "") + "@"
        return "%s://%s%s" % (self.scheme, cred, self.hostport())


def _hostport(host, port):
    if ":" in host:
        return "[%s]:%d" % (host, port)
    return "%s:%d" % (host, port)


def _show(b):
    if isinstance(b, (bytes, bytearray)):
        b = bytes(b).decode("utf-8", "replace")
    return b.rstrip("\r\n")


def _masked(line):
    """A CONNECT line with its password hidden (both directions are traced)."""
    if line.lstrip()[:7].upper() == b"CONNECT":
        from .auth import mask_connect
        return mask_connect(bytes(line))
    return line


def _is_json_op(buf, pos):
    head = bytes(buf[pos:pos + 8]).upper()
    return head.startswith(b"INFO") or head.startswith(b"CONNECT")


# ---------------------------------------------------------------------------
class Route(Connection):
    """One route connection, accepted or dialled. Has what delivery.py
    expects of a receiver (wbuf, counters, trace_out, echo, headers)."""

    kind = "route"
    parser_name = "Router"
    echo = True
    headers = True

    def __init__(self, cluster, sock, addr, rid, solicit=None):
        # The parse cache follows the global account's index, the one
        # account routed messages can name today.
        srv = cluster.server
        Connection.__init__(self, srv, sock, addr, srv.accounts.global_account.sublist)
        self.cluster = cluster
        self.rid = rid
        self.solicit = solicit          # the Solicit that dialled it, or None
        self.did_solicit = solicit is not None
        self.is_configured = bool(solicit is not None and solicit.explicit)
        # an accepted route may speak only after a valid CONNECT
        self.ready = self.did_solicit
        self.remote_id = ""
        self.remote_info = None
        self.info_received = False
        self.registered = False
        self.connect_urls = []
        self.subs = {}                  # (account, subject, queue or None) -> Subscription
        self.inherited = set()          # keys taken over from a retired duplicate
        self.retired = False

    def idtag(self):
        return "rid:%d" % self.rid

    # -- tracing -------------------------------------------------------
    def trace_in(self, line):
        self.log.trace("%s - <<- [%s]" % (self.tag(), _show(_masked(line))))

    def trace_out(self, line):
        self.log.trace("%s - ->> [%s]" % (self.tag(), _show(_masked(line))))

    def send_proto(self, line):
        """Queue one control line (CRLF included)."""
        self.send_now(line)
        if self.log.trace_on:
            self.trace_out(line)

    # -- handshake output ----------------------------------------------
    def send_info(self):
        info = self.cluster.route_info()
        self.send_now(("INFO %s\r\n" % json.dumps(info, separators=(",", ":"))).encode())

    def send_connect(self):
        c = self.cluster
        url = self.solicit.url
        obj = {"echo": True, "verbose": False, "pedantic": False}
        if url.user:
            obj["user"] = url.user
            obj["pass"] = url.password
        obj["tls_required"] = c.tls_client_ctx is not None
        obj["headers"] = True
        obj["name"] = self.server.server_id
        obj["cluster"] = c.name
        if c.name_dynamic:
            obj["cluster_dynamic"] = True
        line = ("CONNECT %s\r\n" % json.dumps(obj, separators=(",", ":"))).encode()
        self.send_now(line)
        if self.log.trace_on:
            self.trace_out(line)
        self.send_info()
        if self.log.debug_on:
            self.log.debug("%s - Route connect msg sent" % self.tag())

    def on_tls_ready(self):
        if self.log.debug_on:
            from .tls import describe
            self.log.debug("%s - TLS handshake complete" % self.tag())
            self.log.debug("%s - %s" % (self.tag(), describe(self.sock)))
        if self.did_solicit:
            self.send_connect()
        else:
            self.send_info()

    # -- input (the loop is inbound.py's) ---------------------------------
    def long_line_ok(self, buf, pos, length):
        # INFO and CONNECT carry JSON that may exceed max_control_line
        return length <= MAX_JSON_LINE and _is_json_op(buf, pos)

    def process_op(self, line, buf, pos, after):
        """One control line that is not a cached RMSG (the contract is in
        inbound.py): returns a cache entry for a fast-path RMSG, else None."""
        op, args = P.split_args(line)
        if not self.ready and op not in (b"CONNECT", b"PING", b"PONG"):
            if self.log.trace_on:
                self.trace_in(line)
            raise ProtocolError(P.ERR_AUTH, "route sent %s before CONNECT" % op.decode("latin-1")[:16])
        if op == b"RMSG" or op == b"HMSG":
            return self.process_msg(op, line, args, buf, pos, after)
        if self.log.trace_on:
            self.trace_in(line)
        if op == b"RS+":
            self.process_remote_sub(args)
        elif op == b"RS-":
            self.process_remote_unsub(args)
        elif op == b"PING":
            self.send_proto(b"PONG\r\n")
        elif op == b"PONG":
            self.pings_out = 0
        elif op == b"INFO":
            self.process_info(P.parse_json_arg(line, 4))
        elif op == b"CONNECT":
            self.process_connect(P.parse_json_arg(line, 7))
        elif op == b"-ERR":
            text = _show(line[4:]).strip()
            self.log.error("%s - Route Error %s" % (self.tag(), text))
            self.close_conn("Remote Error")
        elif op == b"+OK":
            pass
        else:
            raise ProtocolError(P.ERR_UNKNOWN_OP, "unknown op %r" % bytes(op[:16]))
        return None

    # -- messages --------------------------------------------------------
    def process_msg(self, op, line, args, buf, pos, after):
        """RMSG <acc> <subject> [reply] <size>, with the queue forms
        `+ <reply> <queue...>` and `| <queue...>`; HMSG adds <hdr size>."""
        if op == b"RMSG":
            if len(args) < 3:
                raise ProtocolError(P.ERR_PARSER, "processRoutedMsgArgs parse error")
            hdr = -1
            size = P.parse_size(args[-1])
            mid = args[2:-1]
        else:
            if len(args) < 4:
                raise ProtocolError(P.ERR_PARSER, "processRoutedHeaderMsgArgs parse error")
            hdr = P.parse_size(args[-2])
            size = P.parse_size(args[-1])
            if hdr > size:
                raise ProtocolError(P.ERR_PARSER, "header size larger than total size")
            mid = args[2:-2]
        if size > self.server.max_payload:
            raise ProtocolError(P.ERR_MAX_PAYLOAD, "payload %d > %d" % (size, self.server.max_payload))
        acc, subject = args[0], args[1]
        reply = b""
        queues = None
        if mid:
            first = mid[0]
            if first == b"+" and len(mid) >= 3:
                reply = mid[1]
                queues = mid[2:]
            elif first == b"|" and len(mid) >= 2:
                queues = mid[1:]
            elif len(mid) == 1 and first not in (b"+", b"|"):
                reply = first
            else:
                raise ProtocolError(P.ERR_PARSER, "bad routed message arguments")
        if not self.inb.payload_end(buf, pos, after, size):
            return None
        end = after + size
        trace = self.log.trace_on
        if trace:
            self.trace_in(line)
            self.log.trace("%s - <<- MSG_PAYLOAD: [%s]" % (self.tag(), _show(buf[after:end])))
        account = self.server.accounts.find_wire(acc)
        if account is None:
            return None                 # an account we do not have (a Go node's $SYS)
        srv = self.server
        result = match_publish(account.sublist, subject)
        if hdr < 0 and queues is None and not trace:
            bases = build_fast_bases(self, subject, reply, result, True)
            if bases is not None:
                # the loop delivers it (and its repeats) from the cache
                return cache_entry(self, line, fast_entry(bases, size))
        self.in_msgs += 1
        self.in_bytes += size
        srv.in_msgs += 1
        srv.in_bytes += size
        deliver(srv, self, subject, reply, hdr, buf[after:end + 2], result, True,
                route_queues=set(queues) if queues else None)
        return None

    # -- interest --------------------------------------------------------
    def process_remote_sub(self, args):
        """RS+ <acc> <subject> [<queue> <weight>]"""
        n = len(args)
        if n < 2 or n > 4:
            raise ProtocolError(P.ERR_PARSER, "processRemoteSub parse error")
        account = self.server.accounts.find_wire(args[0])
        if account is None:
            return
        subject = args[1].decode("latin-1")
        queue = args[2].decode("latin-1") if n >= 3 else None
        weight = P.parse_size(args[3]) if n == 4 else 1
        if weight < 1:
            weight = 1
        if not valid_subject(subject) or (queue is not None and not valid_subject(queue, wildcards=False)):
            self.log.error("%s - Ignoring remote interest with an invalid subject %r" % (self.tag(), subject))
            return
        key = (account, subject, queue)
        self.inherited.discard(key)
        sub = self.subs.get(key)
        if sub is not None:
            sub.weight = weight         # a queue group's new member count
            return
        if len(self.subs) >= MAX_REMOTE_SUBS:
            self.log.error("%s - Too many remote subscriptions, ignoring %r" % (self.tag(), subject))
            return
        sub = Subscription(self, subject, queue, None, weight)
        self.subs[key] = sub
        if self.registered:
            account.sublist.insert(sub)

    def process_remote_unsub(self, args):
        """RS- <acc> <subject> [<queue>]"""
        n = len(args)
        if n < 2 or n > 3:
            raise ProtocolError(P.ERR_PARSER, "processRemoteUnsub parse error")
        account = self.server.accounts.find_wire(args[0])
        if account is None:
            return
        key = (account, args[1].decode("latin-1"), args[2].decode("latin-1") if n == 3 else None)
        sub = self.subs.pop(key, None)
        if sub is not None:
            sub.closed = True
            if self.registered:
                account.sublist.remove(sub)

    def drop_unconfirmed(self):
        for key in self.inherited:
            sub = self.subs.pop(key, None)
            if sub is not None:
                sub.closed = True
                if self.registered:
                    key[0].sublist.remove(sub)
        self.inherited.clear()

    def insert_remote_subs(self):
        for key, sub in self.subs.items():
            key[0].sublist.insert(sub)

    def remove_remote_subs(self):
        for key, sub in self.subs.items():
            sub.closed = True
            if self.registered:
                key[0].sublist.remove(sub)
        self.subs.clear()

    # -- handshake input -------------------------------------------------
    connect_obj = None              # an accepted route's CONNECT, re-checked on reload

    def process_connect(self, obj):
        if self.did_solicit or self.ready:
            return                      # nothing to learn from a second CONNECT
        self.connect_obj = obj
        auth = self.cluster.auth
        if auth.needs_slow_check(obj):
            self.paused = True
            srv = self.server

            def work():
                user = auth.check(obj)
                self.reactor.call_soon_threadsafe(self._auth_result, obj, user, auth)
            srv._auth_pool().submit(work)
            return
        self._auth_result(obj, auth.check(obj), auth)

    def _auth_result(self, obj, user, auth):
        if self.closed:
            return
        if auth is not self.cluster.auth:
            self.process_connect(obj)   # a reload changed the credentials meanwhile
            return
        resume = self.paused
        self.paused = False
        if user is None:
            self.refuse_auth()
            return
        if not self.cluster.accept_connect(self, obj):
            return
        self.ready = True
        for t in self.timers:
            if t.fn == self.auth_timeout:
                t.cancel()
        if resume and self.pend:
            self.feed(b"")

    def process_info(self, info):
        sid = info.get("server_id")
        if not isinstance(sid, str) or not sid:
            raise ProtocolError(P.ERR_PARSER, "route INFO without server_id")
        if not self.info_received:
            self.cluster.first_info(self, info)
        elif sid != self.remote_id:
            self.cluster.gossip_info(info)
        else:
            self.cluster.info_update(self, info)

    # -- keep-alive and timeouts -----------------------------------------
    def auth_timeout(self):
        if not self.ready and not self.closed:
            self.log.error("%s - authentication timeout" % self.tag())
            self.send_err(P.ERR_AUTH_TIMEOUT)
            self.close_after_flush("Authentication Timeout")

    # -- errors and closing ----------------------------------------------
    def on_closed(self, reason):
        self.cluster.route_closed(self, reason)

    # -- monitoring ------------------------------------------------------
    def snapshot(self):
        return {
            "rid": self.rid,
            "remote_id": self.remote_id,
            "did_solicit": self.did_solicit,
            "is_configured": self.is_configured,
            "ip": self.ip,
            "port": self.port,
            "pending_size": len(self.wbuf),
            "in_msgs": self.in_msgs,
            "out_msgs": self.out_msgs,
            "in_bytes": self.in_bytes,
            "out_bytes": self.out_bytes,
            "subscriptions": len(self.subs),
            "subs": [s.subject for s in self.subs.values()],
            "start": self.start,
            "last_activity": self.last_activity,
        }


class Solicit:
    """A route this server dials: a configured URL (`explicit`, redialled
    forever with backoff) or one learned by gossip (a few attempts)."""

    def __init__(self, cluster, url, explicit):
        self.cluster = cluster
        self.url = url
        self.explicit = explicit
        self.attempts = 0
        self.route = None           # the live Route this dial produced
        self.dial = None
        self.timer = None
        self.remote_id = ""         # the server last found at this URL
        self.stopped = False        # a route to ourselves, or shutdown

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

    def stop(self):
        self.stopped = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.dial is not None:
            self.dial.cancel()
            self.dial = None


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
        self.routes = server.routes  # rid -> Route: registered routes only
        self.remotes = {}           # remote server_id -> registered Route
        self.next_rid = 0
        self.plain_refs = {}        # subject -> local plain subscriptions
        self.queue_refs = {}        # (subject, queue) -> local members
        self._urls = []             # connect_urls for clients
        self.configured = [Solicit(self, RouteURL(u), True) for u in o.routes]
        self.implicit = {}          # host:port -> Solicit learned by gossip
        from .auth import RouteAuth
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
        self.log.notice("Listening for route connections on %s" % _hostport(host, self.port))
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
            info["ip"] = "nats-route://%s/" % _hostport(host, port)
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
        if self.routes.pop(r.rid, None) is not None:
            srv = self.server
            srv._closed_out_msgs += r.out_msgs
            srv._closed_out_bytes += r.out_bytes
            r.out_msgs = r.out_bytes = 0

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
        self.routes[r.rid] = r
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
            info["ip"] = "nats-route://%s/" % _hostport(r.ip, port)
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
                url = RouteURL("nats-route://%s/" % _hostport(str(info.get("host")), int(info.get("port"))))
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
        r.remove_remote_subs()
        r.registered = False
        if was_registered:
            del self.remotes[r.remote_id]
            self.routes.pop(r.rid, None)
            srv = self.server
            srv._closed_out_msgs += r.out_msgs
            srv._closed_out_bytes += r.out_bytes
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

    # -- local interest --------------------------------------------------
    def send_local_subs(self, r):
        parts = []
        for subj in self.plain_refs:
            parts.append(b"RS+ $G %s\r\n" % subj.encode("latin-1"))
        for (subj, queue), w in self.queue_refs.items():
            parts.append(b"RS+ $G %s %s %d\r\n" % (subj.encode("latin-1"), queue.encode("latin-1"), w))
        if parts:
            r.send_now(b"".join(parts))
            if self.log.trace_on:
                for p in parts:
                    r.trace_out(p)

    def _broadcast(self, line):
        for r in self.remotes.values():
            r.send_proto(line)

    def local_sub_added(self, sub):
        subj = sub.subject
        if sub.queue is None:
            n = self.plain_refs.get(subj, 0) + 1
            self.plain_refs[subj] = n
            if n == 1:
                self._broadcast(b"RS+ $G %s\r\n" % subj.encode("latin-1"))
        else:
            key = (subj, sub.queue)
            n = self.queue_refs.get(key, 0) + 1
            self.queue_refs[key] = n
            self._broadcast(b"RS+ $G %s %s %d\r\n" % (subj.encode("latin-1"), sub.queue.encode("latin-1"), n))

    def local_sub_removed(self, sub):
        subj = sub.subject
        if sub.queue is None:
            n = self.plain_refs.get(subj, 0) - 1
            if n > 0:
                self.plain_refs[subj] = n
            elif subj in self.plain_refs:
                del self.plain_refs[subj]
                self._broadcast(b"RS- $G %s\r\n" % subj.encode("latin-1"))
        else:
            key = (subj, sub.queue)
            n = self.queue_refs.get(key, 0) - 1
            if n > 0:
                self.queue_refs[key] = n
                self._broadcast(b"RS+ $G %s %s %d\r\n" % (subj.encode("latin-1"), sub.queue.encode("latin-1"), n))
            elif key in self.queue_refs:
                del self.queue_refs[key]
                self._broadcast(b"RS- $G %s %s\r\n" % (subj.encode("latin-1"), sub.queue.encode("latin-1")))
