"""One client connection: the ops a client sends (PUB, HPUB, SUB, UNSUB,
PING/PONG, CONNECT), its options, authentication and TLS start.

Input goes through the shared parse loop (inbound.py, `process`), which
serves repeated and resized PUBs from the client's caches (its
`inbound.PubState`) and calls `process_op` for every other line. A client
belongs to an `Account` (account.py) and resolves subjects in the
account's subject index.

Permissions (issue 16): `perms` is the client's ConnectionPermissions, or
None for an unrestricted client, which then takes exactly the old paths. A
PUB is checked before its cache entries are built, so the loop's caches
only ever hold permitted lines; a PUB allowed only by a response grant is
delivered on the general path, never cached. Receivers' delivery filters
and grants are applied by delivery.py.

Everything unusual (queue groups, auto-unsubscribe limits, headers,
verbose, tracing, no-responders) takes the general path in delivery.py.
"""

import json
import random
import socket
import time

from . import parser as P
from .auth import AuthContext, mask_connect
from .account import ERR_ACCOUNT_CONNECTIONS
from .conn import Connection
from .delivery import build_fast_bases, deliver, deliver_to_sub, fast_entry, match_publish
from .imports import add_shadows, remove_shadows
from .inbound import PubState, cache_entry, scache_put
from .nkeys import make_nonce
from .parser import ProtocolError
from .permissions import (ConnectionPermissions, go_quote, publish_violation,
                          publish_violation_log, subscribe_violation, subscribe_violation_log)
from .sublist import Subscription, valid_subject

NO_RESPONDERS_HDR = b"NATS/1.0 503\r\n\r\n"
# nats-server's firstClientPingInterval: its first PING to a client goes out
# this long after the connection opened (plus up to a fifth, so a crowd that
# reconnected at once is not pinged at once), which gives /connz an `rtt`
# without waiting a whole ping_interval (2 minutes by default).
FIRST_PING = 2.0


class Client(Connection):
    kind = "client"
    can_stall = True                # back-pressure stalls clients, not routes
    inbound_state = PubState        # clients PUB: (subject, reply) cache too
    shadows = None                  # subscription -> its stream-import shadows (imports.py)
    mpay = 0                        # the account's max_payload when lower than the server's

    def __init__(self, server, sock, addr, cid):
        # Every client is in the global account until configured accounts
        # exist; its subject index is the account's.
        account = server.accounts.global_account
        Connection.__init__(self, server, sock, addr, account.sublist)
        self.account = account
        self.perms = None           # publish/subscribe permissions: none yet
        self.cid = cid
        self.subs = {}              # sid (bytes) -> Subscription
        self.connected = False      # CONNECT seen (lifecycle: see conn.py)
        self.authed = not server.client_auth.required
        # the nonce of this connection's INFO, kept: an nkey user signed it,
        # and a reload re-checks the signature against it
        self.nonce = make_nonce() if server.client_auth.nonce_required else ""
        self.info_pending = False   # handshake_first: INFO after the handshake
        self.tls_optional = False   # allow_non_tls: plain text may follow INFO
        # nats-server's defaults until CONNECT says otherwise
        self.verbose = True
        self.pedantic = True
        self.echo = True
        self.headers = False
        self.no_responders = False
        self.protocol = 0
        self.name = self.lang = self.version = self.user = ""
        self.connect_obj = None
        self.rtt = 0.0

    def idtag(self):
        return "cid:%d" % self.cid

    # issue 21 (websocket): the credentials this client is checked against;
    # ws_client.WsClient overrides it with its listener's
    @property
    def client_auth(self):
        return self.server.client_auth

    # -- tracing ---------------------------------------------------------
    def trace_in(self, line):
        if line.lstrip()[:7].upper() == b"CONNECT":
            line = mask_connect(line)     # never log secrets
        self.log.trace("%s - <<- [%s]" % (self.tag(), P.show(line)))

    def trace_out(self, line):
        self.log.trace("%s - ->> [%s]" % (self.tag(), P.show(line)))

    # -- one control line (cache miss) -----------------------------------
    def process_op(self, line, buf, pos, after):
        """Handle one control line that is not a cached PUB (the contract is
        in inbound.py): returns a cache entry for a fast-path PUB (the loop
        then delivers its payload), else None."""
        op, args = P.split_args(line)
        if not self.authed and op != b"CONNECT" and op != b"PING":
            if self.log.trace_on:
                self.trace_in(line)
            raise ProtocolError(P.ERR_AUTH, "op before CONNECT")
        if op == b"PUB":
            return self.process_pub(line, args, buf, pos, after)
        if self.log.trace_on:
            self.trace_in(line)
        if op == b"SUB":
            self.process_sub(args)
        elif op == b"PING":
            self.send_now(b"PONG\r\n")
            if self.log.trace_on:
                self.trace_out(b"PONG")
        elif op == b"PONG":
            self.pings_out = 0
            if self.ping_sent_at:
                self.rtt = time.monotonic() - self.ping_sent_at
                self.ping_sent_at = 0.0
        elif op == b"UNSUB":
            self.process_unsub(args)
        elif op == b"HPUB":
            self.process_hpub(line, args, buf, pos, after)
        elif op == b"CONNECT":
            self.process_connect(line)
        elif op == b"+OK" or op == b"INFO":
            pass
        elif op == b"-ERR":
            raise ProtocolError(P.ERR_PARSER, "client sent -ERR")
        elif op.startswith(b"PING"):
            # nats-server answers any line starting with PING
            self.send_now(b"PONG\r\n")
        elif op.startswith(b"PONG"):
            self.pings_out = 0
        else:
            raise ProtocolError(P.ERR_UNKNOWN_OP, "unknown op %r" % op[:16])
        return None

    def ok(self):
        if self.verbose:
            self.send_now(b"+OK\r\n")
            if self.log.trace_on:
                self.trace_out(b"OK")

    def process_pub(self, line, args, buf, pos, after):
        """A PUB neither of the loop's caches knew. Resolves its subject and
        reply once for every size: the result goes into scache (which the
        loop looks up, by the text between "PUB " and the size) and the
        line's entry into pcache."""
        subject, reply, size = P.parse_pub_args(args)
        if size > self.server.max_payload or (self.mpay and size > self.mpay):
            raise ProtocolError(P.ERR_MAX_PAYLOAD, "payload %d > %d" % (size, self.server.max_payload))
        st = self.inb
        if self.pedantic and not (valid_subject(subject.decode("latin-1"), wildcards=False)
                                  and (not reply or valid_subject(reply.decode("latin-1"), wildcards=False))):
            # the op is refused but the connection stays: skip the payload
            end = after + size
            if end + 2 > len(buf):
                st.need = end + 2 - pos
                return None
            if self.log.trace_on:
                self.trace_in(line)
            self.send_err(P.ERR_INVALID_PUB_SUBJECT)
            st.resume_at = end + 2
            return None
        perms = self.perms
        cacheable = True
        pub = subject
        if self.account.mappings is not None:
            # mapped before the permission check, as nats-server (parser.go);
            # a mapping drawn per message is never cached (gnats/mapping.py)
            subject, cacheable = self.account.mappings.select(subject)
        if perms is not None:
            # checked before any entry is built: only permitted subjects
            # reach the caches (a grant of allow_responses is per message)
            subj = subject.decode("utf-8", "surrogateescape")
            end = after + size
            if end + 2 > len(buf):
                # checked once, with the whole message here: a check may use
                # up a response grant, and this line is parsed again then
                st.need = end + 2 - pos
                return None
            if not perms.can_publish(subj):
                if self.log.trace_on:
                    self.trace_in(line)
                self.publish_denied(subj)
                st.resume_at = end + 2
                return None
            cacheable = cacheable and perms.cacheable(subj)
        general = self.verbose or self.log.trace_on or not cacheable
        result = match_publish(self.account.sublist, subject)
        if not general:
            bases = build_fast_bases(self, subject, reply, result, False)
            if bases is not None and (bases[0] or bases[3] or not (reply and self.no_responders)):
                if not self.mpay:
                    # (the loop's scache hits check the server's max_payload only)
                    scache_put(self, pub + b" " + reply if reply else pub, bases)
                return cache_entry(self, line, fast_entry(bases, size))
        # general path: one message, now
        if not st.payload_end(buf, pos, after, size):
            return None
        end = after + size
        if self.log.trace_on:
            self.trace_in(line)
            self.log.trace("%s - <<- MSG_PAYLOAD: [%s]" % (self.tag(), P.show(buf[after:end])))
        self.ok()
        self.publish(subject, reply, -1, buf[after:end + 2], result)
        return None

    def process_hpub(self, line, args, buf, pos, after):
        subject, reply, hdr, total = P.parse_hpub_args(args)
        if hdr == 0:
            hdr = -1        # an empty header block: nats-server delivers a plain MSG
        if not self.headers:
            raise ProtocolError(P.ERR_NO_HEADERS, "message headers not supported")
        if total > self.server.max_payload or (self.mpay and total > self.mpay):
            raise ProtocolError(P.ERR_MAX_PAYLOAD, "payload %d > %d" % (total, self.server.max_payload))
        if not self.inb.payload_end(buf, pos, after, total):
            return
        if self.pedantic and not valid_subject(subject.decode("latin-1"), wildcards=False):
            self.send_err(P.ERR_INVALID_PUB_SUBJECT)
            return
        if self.account.mappings is not None:
            subject, _ = self.account.mappings.select(subject)
        if self.perms is not None:
            subj = subject.decode("utf-8", "surrogateescape")
            if not self.perms.can_publish(subj):
                self.publish_denied(subj)
                return
        self.ok()
        result = match_publish(self.account.sublist, subject)
        self.publish(subject, reply, hdr, buf[after:after + total + 2], result)

    def publish_denied(self, subj):
        """nats-server's pubPermissionViolation: -ERR, an error log line,
        and the connection stays open."""
        self.send_err(publish_violation(subj))
        self.perm_log(publish_violation_log(subj))

    def perm_log(self, text):
        """A violation in nats-server 2.15's form: the account and user after
        the connection (2.9 wrote `User "name"` after the dash instead)."""
        self.log.error('%s - "%s/user:%s" - %s' % (self.tag(), self.account.wire.decode("latin-1"),
                                                  self.user, text))

    def publish(self, subject, reply, hdr, payload, result):
        """General-path publish of one message (payload has its CRLF)."""
        size = len(payload) - 2
        self.in_msgs += 1
        self.in_bytes += size
        self.server.in_msgs += 1
        self.server.in_bytes += size
        srv = self.server
        n = deliver(srv, self, subject, reply, hdr, payload, result, False)
        if srv.stall_small or srv.write_blocked:
            # producer back-pressure, as the parse loop's guard mode (conn.py)
            self.stall_check([s.client for s in result.plain]
                             + [s.client for g in result.queues for s in g], size)
        if n == 0 and reply and self.no_responders and self.headers \
                and not result.plain and not result.queues:
            self.send_no_responders(reply)

    def send_no_responders(self, reply):
        """Answer a request nobody can serve with a 503 status message
        on the requester's own inbox subscription."""
        r = self.account.sublist.match(reply.decode("latin-1"))
        dirty = self.reactor.dirty
        payload = NO_RESPONDERS_HDR + b"\r\n"
        for sub in r.plain:
            if sub.client is self:
                deliver_to_sub(sub, reply, b"", len(NO_RESPONDERS_HDR), payload,
                               len(NO_RESPONDERS_HDR), dirty)
                return

    # -- subscriptions ---------------------------------------------------
    def process_sub(self, args):
        subject, queue, sid = P.parse_sub_args(args)
        subj = subject.decode("latin-1")
        if not valid_subject(subj) or (queue is not None and not valid_subject(queue.decode("latin-1"), wildcards=False)):
            self.send_err(P.ERR_INVALID_SUBJECT)
            return
        qname = queue.decode("latin-1") if queue is not None else None
        if self.perms is not None and not self.perms.can_subscribe(subj, qname):
            self.send_err(subscribe_violation(subj, qname))
            self.perm_log(subscribe_violation_log(subj, qname, sid.decode("latin-1")))
            return
        if sid in self.subs:
            # nats-server ignores a duplicate sid
            self.ok()
            return
        limit = self.server.opts.max_subscriptions
        acc_limit = self.account.max_subscriptions
        if acc_limit > 0 and (not limit or acc_limit < limit):
            limit = acc_limit
        if limit and len(self.subs) >= limit:
            self.send_err(P.ERR_MAX_SUBS)
            return
        sub = Subscription(self, subj, qname, sid)
        self.subs[sid] = sub
        self.server.add_sub(sub)
        if self.account.stream_imports:
            add_shadows(self.server, self, sub)
        self.ok()

    def process_unsub(self, args):
        sid, max_msgs = P.parse_unsub_args(args)
        sub = self.subs.get(sid)
        if sub is not None:
            if max_msgs and sub.delivered < max_msgs:
                sub.max_msgs = max_msgs
                # limited subscriptions need per-delivery counting: force the
                # general path by invalidating cached fast entries
                self.account.sublist.bump()
            else:
                self.remove_sub(sub)
        self.ok()

    def remove_sub(self, sub):
        if sub.closed:
            return
        sub.closed = True
        self.subs.pop(sub.sid, None)
        self.server.remove_sub(sub)
        if self.shadows:
            remove_shadows(self.server, self, sub)

    # -- CONNECT ---------------------------------------------------------
    def process_connect(self, line):
        if self.connected and not self.authed:
            raise ProtocolError(P.ERR_AUTH)
        obj = P.parse_json_arg(line, 7)
        g = obj.get
        self.verbose = bool(g("verbose", True))
        self.pedantic = bool(g("pedantic", True))
        self.echo = bool(g("echo", True))
        self.headers = bool(g("headers", False))
        self.no_responders = bool(g("no_responders", False))
        try:
            self.protocol = int(g("protocol", 0) or 0)
        except (TypeError, ValueError, OverflowError):     # e.g. 1e400 is inf
            raise ProtocolError(P.ERR_PARSER, "bad protocol value")
        self.name = _str(g("name"))
        self.lang = _str(g("lang"))
        self.version = _str(g("version"))
        again = self.connected
        if not again:
            self.schedule_rtt_ping()
        self.connected = True
        self.connect_obj = obj      # kept to re-check credentials on reload
        self.reset_caches()
        if not self.authed or (again and self.client_auth.required):
            # as nats-server, every CONNECT is checked, a second one too:
            # wrong credentials there close the connection
            srv = self.server
            srv.authorizer.authorize(self, obj, lambda: self.client_auth, self.auth_done,
                                     self.auth_context())
            return
        self.ok()
        self.server.system.client_connected(self)

    def schedule_rtt_ping(self):
        """After the first CONNECT: measure the RTT at FIRST_PING after the
        connection opened, as nats-server does, unless the keep-alive PING
        (every ping_interval) comes first anyway. Only for client libraries
        (CONNECT names a `lang`): nats-server's rule for RTT PINGs, which
        spares telnet sessions and raw test clients an unsolicited PING."""
        first = FIRST_PING * (1.0 + random.random() / 5)
        if not self.lang or self.server.opts.ping_interval <= first:
            return
        delay = max(0.0, first - (time.time() - self.start))
        self.timers.append(self.reactor.call_later(delay, self.rtt_ping))

    def rtt_ping(self):
        if self.closed or self.rtt or self.ping_sent_at:
            return                  # measured already, or a PING is out
        self.pings_out += 1         # counted like a keep-alive PING
        self.ping_sent_at = time.monotonic()
        self.send_now(b"PING\r\n")
        if self.log.trace_on:
            self.trace_out(b"PING")

    def auth_context(self):
        """What identifies this client besides its CONNECT (auth.AuthContext)."""
        cert = self.sock.getpeercert() if self.tls_version else None
        debug = None
        if self.log.debug_on and self.server.client_auth.trust is not None:
            debug = lambda text: self.log.debug("%s - %s" % (self.tag(), text))
        return AuthContext(self.nonce, cert, host=self.ip, debug=debug)

    def auth_done(self, user):
        """Called (on the reactor thread) when credentials were accepted;
        user: the auth.UserEntry they prove."""
        acc = self.server.accounts.for_user(user)
        if acc is not self.account or self not in acc.clients:
            if not self.join_account(acc):
                return
        self.authed = True
        self.set_user(user)
        self.ok()
        self.server.system.client_connected(self)

    def join_account(self, acc):
        """Move into account `acc` (its subject index, limits and imports);
        False when the account's max_connections is reached (nats-server's
        -ERR, and the connection closes)."""
        if acc.max_connections > 0 and len(acc.clients) >= acc.max_connections:
            self.log.error("%s - %s" % (self.tag(), ERR_ACCOUNT_CONNECTIONS))
            self.send_err(ERR_ACCOUNT_CONNECTIONS)
            self.close_after_flush("Maximum Account Connections Exceeded")
            return False
        old = self.account
        subs = list(self.subs.values())
        for sub in subs:            # a second CONNECT as another account's user
            self.server.remove_sub(sub)
            if self.shadows:
                remove_shadows(self.server, self, sub)
        old.clients.discard(self)
        self.account = acc
        acc.clients.add(self)
        pay = acc.max_payload
        self.mpay = pay if 0 < pay < self.server.max_payload else 0
        self.inb.sublist = acc.sublist
        self.reset_caches()
        for sub in subs:
            self.server.add_sub(sub)
            if acc.stream_imports:
                add_shadows(self.server, self, sub)
        return True

    def set_user(self, user):
        """Who the client is now, and what it may do. `user` is a UserEntry
        (auth.py), or a user name, looked up among the users in force, whose
        entries already carry default_permissions where a user has none.
        Unrestricted clients get perms None: they pay nothing."""
        if isinstance(user, str):
            # the name-only flows (today's CONNECT check, reload re-checks)
            user = self.client_auth._entries.get(user) or user
        bind = getattr(user, "bind", None)
        if bind is not None and not bind(self):
            return                  # a JWT user's account refused it (jwt_accounts)
        self.user = getattr(user, "name", user) or ""
        rules = getattr(user, "permissions", None)
        old = self.perms
        if rules is None:
            self.perms = None
        elif old is None or old.perms is not rules:
            self.perms = ConnectionPermissions(rules)
        if self.perms is not old:
            self.reset_caches()     # its own cached PUB lines were checked under `old`
            if old is not None or self.subs:
                self.permissions_changed()

    def permissions_changed(self):
        """After a reload: drop the subscriptions no longer allowed, with the
        error nats-server sends (processSubsOnConfigReload), and make every
        publisher resolve its cached lines again (delivery filters and
        response grants are decided when an entry is built)."""
        perms = self.perms
        if perms is not None:
            for sub in list(self.subs.values()):
                if not perms.can_subscribe(sub.subject, sub.queue):
                    self.remove_sub(sub)
                    # 2.15's texts (2.9 did not name the queue here)
                    what = go_quote(sub.subject)
                    if sub.queue:
                        what += " using queue " + go_quote(sub.queue)
                    sid = go_quote(sub.sid.decode("latin-1"))
                    self.send_err("Permissions Violation for Subscription to %s (sid %s)" % (what, sid))
                    self.log.notice("Removed sub %s (sid %s) for User %s - not authorized"
                                    % (what, sid, go_quote(self.user or "N/A")))
        self.account.sublist.bump()
        for shadows in (self.shadows or {}).values():
            for sh in shadows:      # entries in the exporters were built under `old`
                sh.account.sublist.bump()

    def auth_timeout(self):
        if not self.authed and not self.closed:
            self.send_err(P.ERR_AUTH_TIMEOUT)
            self.close_after_flush("Authentication Timeout")

    # -- errors and closing ----------------------------------------------
    def on_closed(self, reason):
        self.server.client_closed(self, reason)

    # -- TLS -------------------------------------------------------------
    def wait_tls_hello(self, ctx, timeout, optional=False):
        """INFO went out in plain text; the client must now start TLS. A
        client that sends plain protocol instead is told so and closed,
        unless TLS is `optional` (allow_non_tls): then it goes on in plain
        text, as nats-server peeks at the first bytes for a handshake."""
        self.tls_ctx = ctx
        self.tls_waiting = True
        self.tls_optional = optional
        if not optional:
            self.timers.append(self.reactor.call_later(timeout, self._tls_timeout))

    def wait_tls_first(self, ctx, timeout, fallback):
        """tls { handshake_first }: the client speaks first with a TLS
        ClientHello and INFO follows the handshake. fallback > 0: a client
        silent that long gets INFO in plain text and the usual TLS-after-INFO
        flow (nats-server's "300ms" / "auto"); 0: it waits for the handshake
        until the TLS timeout."""
        self.info_pending = True
        self.tls_ctx = ctx
        self.tls_waiting = True
        self.timers.append(self.reactor.call_later(timeout, self._tls_timeout))
        if fallback > 0:
            self.timers.append(self.reactor.call_later(fallback, self._tls_first_fallback))

    def _tls_first_fallback(self):
        if self.closed or not self.tls_waiting or not self.info_pending:
            return
        self.info_pending = False
        self.send_info()

    def send_info(self):
        self.send_now(("INFO %s \r\n" % self.info_json()).encode())

    def on_tls_ready(self):
        if self.info_pending:
            self.info_pending = False
            self.send_info()

    def on_readable(self):
        if self.tls_waiting:
            try:
                first = self.sock.recv(1, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close_conn("Read Error", flush=False)
                return
            if not first:
                self.close_conn(self.eof_reason(), flush=False)
                return
            self.tls_waiting = False
            if first != b"\x16" and self.tls_optional:
                Connection.on_readable(self)    # a plain client (allow_non_tls)
                return
            if first != b"\x16" and self.info_pending:
                # handshake_first: nats-server closes without a word
                self.log.error("%s - TLS handshake error: client sent plain text" % self.tag())
                self.close_conn("TLS Handshake Failure", flush=False)
                return
            if first != b"\x16":       # not a TLS handshake record
                self.log.error("%s - TLS handshake error: client sent plain text" % self.tag())
                self.send_err(P.ERR_TLS_REQUIRED)
                self.close_after_flush("TLS Handshake Failure")
                return
            if self.log.debug_on:
                self.log.debug("%s - Starting TLS client connection handshake" % self.tag())
            self.start_tls(self.tls_ctx, True, self.server.opts.tls_timeout)
            return
        Connection.on_readable(self)

    def info_json(self):
        return json.dumps(self.server.client_info(self), separators=(",", ":"))


def _str(v):
    return v if isinstance(v, str) else ("" if v is None else str(v))

