"""A route connection: one link of the cluster's full mesh (cluster.py
holds the membership, gossip and interest bookkeeping that crosses routes).

Handshake (what nats-server 2.9 does, so Go and Python nodes mix):
  * TLS first when cluster TLS is configured (no plain-text INFO before it);
  * the accepting side sends its INFO at once; the dialling side sends
    CONNECT (credentials, its server id as `name`, cluster name) and its INFO;
  * each side registers the route when it receives the peer's INFO. A route
    to ourselves is dropped quietly; when two routes join the same pair of
    servers, both ends keep the one dialled by the server with the smaller
    server id, so the choice agrees without another round trip.

Interest: RS+/RS- from the peer become `Subscription(route, subject, queue,
weight=w)` in the account's Sublist, so delivery.py forwards messages with
no route-specific lookup. Messages from a route (RMSG/HMSG) are delivered
locally only (one hop). Every RS+/RS-/RMSG/HMSG names an account, resolved
through the server's registry (account.py): a route's interest goes into
that account's subject index, keyed by (account, subject, queue). Lines
naming an account this server does not have (a Go node's `$SYS`) are read
and ignored. (What this server tells its peers, and discovery, are
cluster.py's.)
"""

import json

from . import parser as P
from .peer import PeerConnection
from .delivery import build_fast_bases, fast_entry, match_publish
from .inbound import cache_entry
from .parser import ProtocolError
from .sublist import Subscription, valid_subject

MAX_JSON_LINE = 64 * 1024   # INFO/CONNECT may be longer than max_control_line
MAX_REMOTE_SUBS = 1 << 20   # interest entries one peer may register (memory bound)


def _is_json_op(buf, pos):
    head = bytes(buf[pos:pos + 8]).upper()
    return head.startswith(b"INFO") or head.startswith(b"CONNECT")


# ---------------------------------------------------------------------------
class Route(PeerConnection):
    """One route connection, accepted or dialled. Has what delivery.py
    expects of a receiver (wbuf, counters, trace_out, echo, headers)."""

    kind = "route"
    parser_name = "Router"
    echo = True
    headers = True

    def __init__(self, cluster, sock, addr, rid, solicit=None):
        # Routed messages name any account: the parse cache follows every
        # account's index through their shared Generation (account.py).
        srv = cluster.server
        PeerConnection.__init__(self, srv, sock, addr, srv.accounts.generation)
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
            text = P.show(line[4:]).strip()
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
            self.log.trace("%s - <<- MSG_PAYLOAD: [%s]" % (self.tag(), P.show(buf[after:end])))
        account = self.server.accounts.find_wire(acc)
        if account is None:
            return None                 # an account we do not have (a Go node's $SYS)
        perms = self.cluster.route_perms()
        if perms is not None and not perms.can_publish(subject.decode("utf-8", "surrogateescape")):
            return None                 # not imported: never cached, never delivered
        result = match_publish(account.sublist, subject)
        if hdr < 0 and queues is None and not trace and self.cacheable(reply):
            bases = build_fast_bases(self, subject, reply, result, True)
            if bases is not None:
                # the loop delivers it (and its repeats) from the cache
                return cache_entry(self, line, fast_entry(bases, size))
        self.deliver_general(subject, reply, hdr, buf[after:end + 2], size, result, queues)
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
        perms = self.cluster.route_perms()
        if perms is not None and not perms.can_subscribe(subject, queue):
            if self.log.debug_on:
                self.log.debug("%s - Ignoring remote interest on %r: not exported" % (self.tag(), subject))
            return
        key = (account, subject, queue)
        self.inherited.discard(key)
        sub = self.subs.get(key)
        if sub is not None:
            delta = weight - sub.weight
            sub.weight = weight         # a queue group's new member count
            if self.registered and delta and queue is not None:
                self._leaf_interest(sub, delta, account)       # [leaf]
            return
        if len(self.subs) >= MAX_REMOTE_SUBS:
            self.log.error("%s - Too many remote subscriptions, ignoring %r" % (self.tag(), subject))
            return
        sub = Subscription(self, subject, queue, None, weight)
        self.subs[key] = sub
        if self.registered:
            account.sublist.insert(sub)
            self._leaf_interest(sub, weight, account)          # [leaf]

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
                self._leaf_interest(sub, -sub.weight, account)     # [leaf]

    def drop_unconfirmed(self):
        for key in self.inherited:
            sub = self.subs.pop(key, None)
            if sub is not None:
                sub.closed = True
                if self.registered:
                    key[0].sublist.remove(sub)
                    self._leaf_interest(sub, -sub.weight, key[0])  # [leaf]
        self.inherited.clear()

    def insert_remote_subs(self):
        for key, sub in self.subs.items():
            key[0].sublist.insert(sub)
            self._leaf_interest(sub, sub.weight, key[0])           # [leaf]

    def remove_remote_subs(self):
        for key, sub in self.subs.items():
            sub.closed = True
            if self.registered:
                key[0].sublist.remove(sub)
                self._leaf_interest(sub, -sub.weight, key[0])      # [leaf]
        self.subs.clear()

    def _leaf_interest(self, sub, delta, account):
        """[leaf] The hub's leaves learn the cluster's interest too."""
        leafnodes = self.server.leafnodes
        if leafnodes is not None:
            leafnodes.sub_changed(sub, delta, account)

    # -- handshake input -------------------------------------------------
    connect_obj = None              # an accepted route's CONNECT, re-checked on reload

    def process_connect(self, obj):
        if self.did_solicit or self.ready:
            return                      # nothing to learn from a second CONNECT
        self.connect_obj = obj
        cluster = self.cluster
        self.server.authorizer.authorize(self, obj, lambda: cluster.auth, self.auth_done)

    def auth_done(self, user):
        """CONNECT passed authorization (gnats/authorize.py); the cluster
        may still refuse the route (to ourselves, another cluster name)."""
        if self.cluster.accept_connect(self, self.connect_obj):
            self.ready = True

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
