"""A leaf node connection: one link between this server and another NATS
system, dialled (we are the leaf, the peer is the hub) or accepted (we are
the hub). leafnodes.py holds the listener, the remotes and the interest
bookkeeping; this module is the wire.

Handshake (nats-server 2.9 and 2.15 agree on it):
  * the accepting side sends `INFO {...}` at once, in plain text, with a
    `nonce`, `client_id`, `leafnode_urls` (a dialler checks both to know it
    reached a leaf port) and `info_on_connect: true`; with TLS configured the
    handshake follows that INFO (the dialler starts it);
  * the dialler answers `CONNECT {...}` (user/pass, server_id, name,
    cluster, headers, remote_account, is_hub, deny_pub); the accepting side
    authenticates it, binds the account, and answers a second INFO with
    `connect_info: true` and `remote_account`;
  * each side then registers the connection and sends its interest.
    A dialler waits for that second INFO when the first said
    `info_on_connect` (nats-server 2.9 on: its CONNECT is checked first),
    and at most 2 s.

Wire (no account on any line: a leaf connection is bound to one account):
  LS+ <subject> [<queue> <weight>]    LS- <subject> [<queue>]
  LMSG <subject> [reply] <size>      LMSG <subject> + <reply> <queues...> <size>
  LMSG <subject> | <queues...> <size>, and HMSG alike with <hdr> <size>.
Interest from the peer becomes `Subscription(leaf, subject, queue,
weight=w)` in the bound account's Sublist, so delivery.py sends messages
to the leaf like to a route (`takes`, `send_msg`, `lmsg_head`).

Roles: `is_spoke` is true on the dialling side unless the remote says
`hub: true`, and on the accepting side when the dialler said `is_hub`.
A spoke forwards what the hub sends to its own clients and hub-side
leaves but never over routes, and tells the hub only the interest of its
own clients and of its own leaves (nats-server's rules, leafnode.go).

JetStream: the peer's `domain` comes in INFO/CONNECT; at register
leafjs.py decides which JetStream subjects stay on each side, and
`takes`, `process_msg`, `process_leaf_sub` and `may_import` check its
prefixes (one startswith, on subjects that begin with `$`).
"""

import json
import platform

from . import VERSION
from . import parser as P
from .auth import AuthContext
from .peer import PeerConnection
from .delivery import build_fast_bases, fast_entry, match_publish
from .inbound import cache_entry
from .parser import ProtocolError
from .sublist import MatchResult, Subscription, subject_matches, valid_subject

MAX_JSON_LINE = 64 * 1024       # INFO/CONNECT may be longer than max_control_line
MAX_LEAF_SUBS = 1 << 20         # interest entries one peer may register (memory bound)
CONNECT_INFO_WAIT = 2.0         # nats-server connectProcessTimeout
LDS_PREFIX = "$LDS."            # loop detection subjects
LOOP_DELAY = 30.0               # nats-server leafNodeReconnectDelayAfterLoopDetected
SAME_CLUSTER = "Leafnode Has Same Cluster Name"
LEAF_WRITE_DEADLINE = 10.0      # nats-server 2.x's default write_deadline


def _denied(patterns, subject):
    for p in patterns:
        if subject_matches(p, subject):
            return True
    return False


def _text(v):
    return v if isinstance(v, str) else ""


class Leaf(PeerConnection):
    """One leaf connection. Has what delivery.py expects of a receiver
    (wbuf, counters, trace_out, headers) and of a source (account, echo)."""

    kind = "leaf"
    parser_name = "Leafnode"
    echo = True
    perms = None                    # client permissions: leaves use deny lists

    def __init__(self, mgr, sock, addr, lid, remote=None):
        srv = mgr.server
        account = remote.account if remote is not None else srv.accounts.global_account
        PeerConnection.__init__(self, srv, sock, addr, account.sublist)
        self.mgr = mgr
        self.lid = self.cid = lid
        self.remote = remote            # leafnodes.Remote when we dialled
        self.did_solicit = remote is not None
        self.is_spoke = remote is not None and not remote.cfg.hub
        self.account = account
        self.headers = True
        self.ready = False              # CONNECT done (accepted) / INFO seen (dialled)
        self.registered = False
        self.info_received = False
        self.nonce = ""
        self.remote_id = self.remote_name = self.remote_cluster = ""
        self.remote_version = ""
        self.remote_account_name = ""
        self.connect_obj = None
        self.auth_user = ""
        # deny_exports: subjects we never send; deny_imports: never receive
        self.deny_out = list(remote.cfg.deny_exports) if remote else []
        self.deny_in = list(remote.cfg.deny_imports) if remote else []
        # JetStream's subjects kept on our side (leafjs.py, set at register):
        # prefixes of interest not told, of messages not sent (and of the
        # peer's interest not taken: nothing could be sent for it), of
        # messages dropped when they come (a spoke's only)
        self.remote_domain = ""
        self.js_deny_interest = ()
        self.js_deny_send = ()
        self.js_deny_peer_interest = ()
        self.js_deny_recv = ()
        self.subs = {}                  # key (subject or "subject queue") -> Subscription
        self.smap = {}                  # key -> count: the interest told to the peer
        self.finish_timer = None
        self.wait_connect_info = False  # the hub's first INFO said info_on_connect

    def idtag(self):
        return "lid:%d" % self.lid

    # -- what delivery.py asks of a receiver ------------------------------
    def takes(self, src, subject):
        """May a message from `src` on `subject` be sent to this leaf?
        nats-server: never back to where it came from, from a route only to
        a leaf we are the hub of, never to a leaf of the message's origin
        cluster, never what deny_exports (or the peer's deny_pub) forbids."""
        if src is self or not self.registered or self.closed:
            return False
        k = src.kind
        if k == "route":
            if self.is_spoke:
                return False
        elif k == "leaf":
            if src.remote_cluster and src.remote_cluster == self.remote_cluster:
                return False
        if subject[:1] == b"$" and subject.startswith(self.js_deny_send):
            return False
        if self.deny_out:
            return not _denied(self.deny_out, subject.decode("latin-1"))
        return True

    def lmsg_head(self, subject):
        return b"LMSG " + subject

    def send_msg(self, subject, reply, queues, hdr, payload, size):
        """One LMSG/HMSG (payload with its CRLF, headers included when hdr
        >= 0) naming the queue groups the peer must serve."""
        if self.closed:
            return False
        parts = [b"LMSG ", subject, b" "]
        if queues:
            parts.append(b"+ " + reply + b" " if reply else b"| ")
            parts.append(b" ".join(queues))
            parts.append(b" ")
        elif reply:
            parts.append(reply + b" ")
        wb = self.wbuf
        if hdr >= 0 and self.headers:
            parts[0] = b"HMSG "
            parts.append(b"%d %d\r\n" % (hdr, size))
            wb += b"".join(parts)
            wb += payload
        elif hdr >= 0:
            parts.append(b"%d\r\n" % (size - hdr))
            wb += b"".join(parts)
            wb += payload[hdr:]
            size -= hdr
        else:
            parts.append(b"%d\r\n" % size)
            wb += b"".join(parts)
            wb += payload
        self.out_msgs += 1
        self.out_bytes += size
        self.reactor.dirty.add(self)
        if self.log.trace_on:
            self.trace_out(b"".join(parts)[:-2])
        return True

    # -- handshake output ----------------------------------------------
    def info_obj(self):
        mgr = self.mgr
        srv = self.server
        info = {
            "server_id": srv.server_id,
            "server_name": srv.server_name,
            "version": VERSION,
            "proto": 1,
            "go": "python" + platform.python_version(),
            "host": mgr.info_host,
            "port": mgr.info_port,
            "headers": True,
            "auth_required": True,
            "tls_required": mgr.tls_server_ctx is not None,
            "tls_verify": bool(mgr.tls_server_ctx is not None and mgr.opts.tls.verify),
            "max_payload": srv.max_payload,
            "ip": "%s:%d" % (mgr.info_host, mgr.info_port),
            "client_id": self.lid,
            "nonce": self.nonce,
            "info_on_connect": True,
            "leafnode_urls": mgr.leafnode_urls(),
        }
        name = mgr.cluster_name()
        if name:
            info["cluster"] = name
        if srv.jetstream is not None:
            info["jetstream"] = True
        if srv.opts.jetstream_domain:
            info["domain"] = srv.opts.jetstream_domain
        return info

    def send_info(self, extra=None):
        info = self.info_obj()
        if extra:
            info.update(extra)
        line = ("INFO %s\r\n" % json.dumps(info, separators=(",", ":"))).encode()
        self.send_now(line)
        return line

    def send_connect(self):
        cfg = self.remote.cfg
        url = self.remote.url
        srv = self.server
        obj = {"version": VERSION, "server_id": srv.server_id, "name": srv.server_name}
        if srv.opts.jetstream_domain:
            obj["domain"] = srv.opts.jetstream_domain
        if url.user:
            obj["user"] = url.user
            obj["pass"] = url.password
        creds = self.mgr.credentials_for(self.remote, self.nonce)
        if creds is None:
            self.close_conn("Missing Account")      # an unusable credentials file
            return
        obj.update(creds)               # jwt + sig from a .creds file
        cluster = self.mgr.cluster_name()
        if cluster:
            obj["cluster"] = cluster
        obj["headers"] = True
        js = srv.jetstream
        if js is not None and self.account.name in js.accounts:
            obj["jetstream"] = True
        if cfg.hub:
            obj["is_hub"] = True
        if cfg.deny_imports:
            obj["deny_pub"] = list(cfg.deny_imports)
        obj["remote_account"] = self.account.name
        line = ("CONNECT %s\r\n" % json.dumps(obj, separators=(",", ":"))).encode()
        self.send_proto(line)
        if self.log.debug_on:
            self.log.debug("%s - Remote leafnode connect msg sent" % self.tag())

    def on_tls_ready(self):
        if self.did_solicit:
            self.send_connect()
            if not self.closed:
                self._after_connect_sent()

    # -- input (the loop is inbound.py's) ---------------------------------
    def long_line_ok(self, buf, pos, length):
        if length > MAX_JSON_LINE:
            return False
        head = bytes(buf[pos:pos + 8]).upper()
        return head.startswith(b"INFO") or head.startswith(b"CONNECT")

    def process_op(self, line, buf, pos, after):
        op, args = P.split_args(line)
        op = op.upper()
        if op == b"LMSG" or op == b"HMSG":
            if not self.registered:
                raise ProtocolError(P.ERR_AUTH, "leafnode sent a message before CONNECT")
            return self.process_msg(op, line, args, buf, pos, after)
        if self.log.trace_on:
            self.trace_in(line)
        if op == b"PING":
            self.send_proto(b"PONG\r\n")
        elif op == b"PONG":
            self.pings_out = 0
        elif op == b"INFO":
            self.process_info(P.parse_json_arg(line, 4))
        elif op == b"CONNECT":
            self.process_connect(P.parse_json_arg(line, 7))
        elif op == b"-ERR":
            self.process_err(P.show(line[4:]).strip())
        elif op == b"+OK":
            pass
        elif not self.registered:
            raise ProtocolError(P.ERR_AUTH, "leafnode sent %s before CONNECT" % op.decode("latin-1")[:16])
        elif op == b"LS+":
            self.process_leaf_sub(args)
        elif op == b"LS-":
            self.process_leaf_unsub(args)
        else:
            raise ProtocolError(P.ERR_UNKNOWN_OP, "unknown op %r" % bytes(op[:16]))
        return None

    # -- messages --------------------------------------------------------
    def process_msg(self, op, line, args, buf, pos, after):
        if op == b"LMSG":
            if len(args) < 2:
                raise ProtocolError(P.ERR_PARSER, "processLeafMsgArgs parse error")
            hdr = -1
            size = P.parse_size(args[-1])
            mid = args[1:-1]
        else:
            if len(args) < 3:
                raise ProtocolError(P.ERR_PARSER, "processLeafHeaderMsgArgs parse error")
            hdr = P.parse_size(args[-2])
            size = P.parse_size(args[-1])
            if hdr < 0 or hdr > size:
                raise ProtocolError(P.ERR_PARSER, "bad header size")
            mid = args[1:-2]
        if size < 0:
            raise ProtocolError(P.ERR_PARSER, "bad message size")
        if size > self.server.max_payload:
            raise ProtocolError(P.ERR_MAX_PAYLOAD, "payload %d > %d" % (size, self.server.max_payload))
        subject = args[0]
        reply = b""
        queues = None
        if mid:
            first = mid[0]
            if first == b"+" and len(mid) >= 3:
                reply, queues = mid[1], mid[2:]
            elif first == b"|" and len(mid) >= 2:
                queues = mid[1:]
            elif len(mid) == 1 and first not in (b"+", b"|"):
                reply = first
            else:
                raise ProtocolError(P.ERR_PARSER, "bad leaf message arguments")
        if not self.inb.payload_end(buf, pos, after, size):
            return None
        end = after + size
        trace = self.log.trace_on
        if trace:
            self.trace_in(line)
            self.log.trace("%s - <<- MSG_PAYLOAD: [%s]" % (self.tag(), P.show(buf[after:end])))
        if self.deny_in and _denied(self.deny_in, subject.decode("latin-1")):
            return None                 # deny_imports: the hub should not have sent it
        if subject[:1] == b"$" and subject.startswith(self.js_deny_recv):
            return None                 # the hub's JetStream API is not ours (leafjs.py)
        result = match_publish(self.account.sublist, subject)
        if hdr < 0 and queues is None and not trace and self.cacheable(reply):
            # a plain LMSG serves no queue group (nats-server: only listed ones)
            bases = build_fast_bases(self, subject, reply, MatchResult(result.plain, []),
                                     self.is_spoke)
            if bases is not None:
                return cache_entry(self, line, fast_entry(bases, size))
        self.deliver_general(subject, reply, hdr, buf[after:end + 2], size, result, queues)
        return None

    # -- interest from the peer --------------------------------------------
    def process_leaf_sub(self, args):
        """LS+ <subject> [<queue> <weight>]"""
        n = len(args)
        if n not in (1, 3):
            raise ProtocolError(P.ERR_PARSER, "processLeafSub parse error")
        subject = args[0].decode("latin-1")
        queue = args[1].decode("latin-1") if n == 3 else None
        weight = max(P.parse_size(args[2]), 1) if n == 3 else 1
        if subject.startswith(LDS_PREFIX) and subject == self.mgr.lds(self.account):
            self.loop_detected(send_err=True)
            return
        if not valid_subject(subject) or (queue is not None and not valid_subject(queue, wildcards=False)):
            self.log.error("%s - Ignoring leafnode interest with an invalid subject %r" % (self.tag(), subject))
            return
        if subject[:1] == "$" and subject.startswith(self.js_deny_peer_interest):
            # every subject it matches is one we never send (a Go hub's
            # $JS.API.> import): without it, a request no one here answers
            # gets "no responders" as nats-server's does
            if self.log.debug_on:
                self.log.debug("%s - Not taking interest in %r: JetStream subjects stay here" % (self.tag(), subject))
            return
        key = subject if queue is None else subject + " " + queue
        sub = self.subs.get(key)
        if sub is not None:
            if queue is None:
                return
            delta = weight - sub.weight
            sub.weight = weight
        else:
            if len(self.subs) >= MAX_LEAF_SUBS:
                self.log.error("%s - Too many leafnode subscriptions, ignoring %r" % (self.tag(), subject))
                return
            sub = Subscription(self, subject, queue, None, weight)
            self.subs[key] = sub
            self.account.sublist.insert(sub)
            delta = weight
        if delta:
            self.mgr.leaf_sub_changed(self, sub, delta)

    def process_leaf_unsub(self, args):
        """LS- <subject> [<queue>]"""
        if len(args) not in (1, 2):
            raise ProtocolError(P.ERR_PARSER, "processLeafUnsub parse error")
        key = b" ".join(args).decode("latin-1")
        sub = self.subs.pop(key, None)
        if sub is None:
            return
        sub.closed = True
        self.account.sublist.remove(sub)
        self.mgr.leaf_sub_changed(self, sub, -sub.weight)

    def remove_leaf_subs(self):
        subs = list(self.subs.values())
        self.subs.clear()
        for sub in subs:
            sub.closed = True
        self.account.sublist.remove_many(subs)
        for sub in subs:
            self.mgr.leaf_sub_changed(self, sub, -sub.weight)

    # -- interest to the peer (leafnodes.py decides what) --------------------
    def smap_update(self, key, delta, queue):
        """Count `delta` more (or fewer) of `key` and tell the peer when that
        changes what it knows: a plain subject's first and last, every
        weight change of a queue group."""
        n = self.smap.get(key, 0)
        if delta < 0 and not n:
            return
        m = n + delta
        if m > 0:
            self.smap[key] = m
        else:
            self.smap.pop(key, None)
        if queue is not None:
            self.send_proto(b"LS+ %s %d\r\n" % (key.encode("latin-1"), m) if m > 0
                            else b"LS- %s\r\n" % key.encode("latin-1"))
        elif n <= 0 < m:
            self.send_proto(b"LS+ %s\r\n" % key.encode("latin-1"))
        elif m <= 0 < n:
            self.send_proto(b"LS- %s\r\n" % key.encode("latin-1"))

    def send_smap(self):
        parts = []
        for key, n in self.smap.items():
            if " " in key:
                parts.append(b"LS+ %s %d\r\n" % (key.encode("latin-1"), n))
            else:
                parts.append(b"LS+ %s\r\n" % key.encode("latin-1"))
        if parts:
            self.send_now(b"".join(parts))
            if self.log.trace_on:
                for p in parts:
                    self.trace_out(p)

    def may_import(self, subject):
        """Do we ask the peer for this interest? (deny_imports; the loop
        detection subject always goes.)"""
        if subject[:1] == "$" and subject.startswith(self.js_deny_interest):
            return False
        return not self.deny_in or subject.startswith(LDS_PREFIX) or not _denied(self.deny_in, subject)

    # -- handshake input -------------------------------------------------
    def process_info(self, info):
        if not self.did_solicit:
            return                      # a dialler's INFO tells an accepting side nothing
        if not self.info_received:
            self.info_received = True
            if not info.get("client_id") or info.get("leafnode_urls") is None:
                self.log.error("%s - attempted to connect to a port that is not a leafnode port" % self.tag())
                self.close_conn("Wrong Port")
                return
            self.remote_id = str(info.get("server_id") or "")
            self.remote_name = str(info.get("server_name") or self.remote_id)
            self.remote_version = str(info.get("version") or "")
            cl = info.get("cluster")
            self.remote_cluster = cl if isinstance(cl, str) else ""
            self.nonce = str(info.get("nonce") or "")
            self.remote_domain = _text(info.get("domain"))
            self.headers = bool(info.get("headers"))
            self.wait_connect_info = bool(info.get("info_on_connect"))
            ctx = self.mgr.tls_client_context(self.remote, bool(info.get("tls_required")))
            if ctx is not None and not self.tls_version:
                self.start_tls(ctx, False, self.mgr.remote_tls_timeout(self.remote),
                               server_hostname=self.remote.url.host)
                return                  # CONNECT goes out once TLS is up
            self.send_connect()
            if not self.closed:
                self._after_connect_sent()
            return
        ra = info.get("remote_account")
        if isinstance(ra, str):
            self.remote_account_name = ra
        if info.get("connect_info") and not self.registered:
            self.finish_connect()

    def _after_connect_sent(self):
        if self.wait_connect_info:
            self.finish_timer = self.reactor.call_later(CONNECT_INFO_WAIT, self._connect_info_timeout)
            self.timers.append(self.finish_timer)
        else:
            self.finish_connect()

    def _connect_info_timeout(self):
        if not self.registered and not self.closed:
            self.send_err("Stale Leaf Node Connection - Closing")
            self.close_after_flush("Stale Connection")

    def finish_connect(self):
        """Dialled side: the hub accepted our CONNECT."""
        if self.finish_timer is not None:
            self.finish_timer.cancel()
            self.finish_timer = None
        self.ready = True
        self.mgr.register(self)

    def process_connect(self, obj):
        if self.did_solicit or self.ready or self.connect_obj is not None:
            return
        if obj.get("lang"):
            # a client library dialled the leafnode port
            self.send_err("Client Connected To Leafnode Port")
            self.close_after_flush("Wrong Port")
            return
        self.connect_obj = obj
        cert = None
        if self.tls_version:
            try:
                cert = self.sock.getpeercert()
            except (ValueError, OSError):
                cert = None
        ctx = AuthContext(nonce=self.nonce, cert=cert, kind="LEAFNODE")
        self.server.authorizer.authorize(self, obj, lambda: self.mgr.auth, self.auth_done, ctx=ctx)

    def auth_done(self, user):
        obj = self.connect_obj
        mgr = self.mgr
        account = mgr.account_for(user)
        if account is None:
            self.log.error("%s - leafnode bound to an unknown account" % self.tag())
            self.send_err(P.ERR_AUTH)
            self.close_after_flush("Missing Account")
            return
        cluster = obj.get("cluster") or ""
        if not isinstance(cluster, str):
            cluster = ""
        mine = mgr.cluster_name()
        if mine and cluster and cluster == mine:
            self.log.error("%s - %s" % (self.tag(), SAME_CLUSTER))
            self.send_err(SAME_CLUSTER)
            self.close_after_flush("Cluster Names Identical")
            return
        self.auth_user = getattr(user, "name", "") or ""
        self.account = account
        self.inb.sublist = account.sublist
        self.inb.reset()
        self.remote_id = str(obj.get("server_id") or "")
        self.remote_name = str(obj.get("name") or self.remote_id)
        self.remote_version = str(obj.get("version") or "")
        self.remote_cluster = cluster
        self.remote_account_name = str(obj.get("remote_account") or "")
        self.remote_domain = _text(obj.get("domain"))
        self.headers = bool(obj.get("headers"))
        self.is_spoke = bool(obj.get("is_hub"))
        deny = obj.get("deny_pub")
        if isinstance(deny, list):
            self.deny_out = [d for d in deny if isinstance(d, str)]
        self.ready = True
        self.send_info({"connect_info": True, "remote_account": account.name})
        mgr.register(self)

    def refuse_auth(self):
        """Credentials did not pass: nats-server's log line names the user."""
        user = (self.connect_obj or {}).get("user")
        self.paused = False
        self.pend = []
        self.pend_len = 0
        if isinstance(user, str) and user:
            self.log.error('%s - authentication error - User "%s"' % (self.tag(), user))
        else:
            self.log.error("%s - authentication error" % self.tag())
        self.send_err(P.ERR_AUTH)
        self.close_after_flush("Authentication Failure")

    def process_err(self, text):
        self.log.error("%s - Leafnode Error %s" % (self.tag(), text))
        if "Loop detected" in text:
            self.loop_detected(send_err=False)
            return
        if SAME_CLUSTER.lower() in text.lower() and self.remote is not None:
            self.remote.delay_next(LOOP_DELAY)
        self.close_conn("Client Closed")

    def loop_detected(self, send_err):
        text = 'Loop detected for leafnode account="%s". Delaying attempt to reconnect for %ds' % (
            self.account.name, int(LOOP_DELAY))
        if self.remote is not None:
            self.remote.delay_next(LOOP_DELAY)
        if send_err:
            self.send_err(text)
        self.log.error("%s - %s" % (self.tag(), text))
        self.close_after_flush("Protocol Violation")

    # -- keep-alive and timeouts -----------------------------------------
    def auth_timeout(self):
        if not self.ready and not self.closed:
            self.log.error("%s - authentication timeout" % self.tag())
            self.send_err(P.ERR_AUTH_TIMEOUT)
            self.close_after_flush("Authentication Timeout")

    def first_info_timeout(self):
        if not self.info_received and not self.closed:
            self.log.error("%s - no INFO from the remote in time" % self.tag())
            self.close_conn("Read Error")

    def eof_reason(self):
        return "Client Closed"

    def check_slow(self, now):
        """As a client's, with nats-server 2.x's default write deadline
        (10 s) at least: cutting a server link loses everything in flight,
        and a peer busy for 2 s on a loaded host is not a dead one (the
        bench's leaf run was cut so on a 2-core machine shared with tests)."""
        if len(self.wbuf) > self.server.max_pending:
            self.slow_consumer("max pending")
        elif now - self.last_write_progress > max(self.server.opts.write_deadline, LEAF_WRITE_DEADLINE):
            self.slow_consumer("write deadline")

    # -- closing -----------------------------------------------------------
    def on_closed(self, reason):
        self.mgr.leaf_closed(self, reason)
