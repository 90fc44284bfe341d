"""Leaf nodes: the leafnode listener, the remotes this server dials, and
the interest that crosses leaf connections (leaf.py is one connection,
leafconf.py the config block).

`Leafnodes` runs on the reactor thread. `Remote` is one `remotes` entry:
it dials its URLs in turn, every `reconnect` seconds (with jitter) while
down, and 30 s after the hub reported a loop.

Interest (nats-server's updateLeafNodes/updateSmap): every registered leaf
keeps `smap`, the interest it told its peer. A change of any subscription
in the bound account (`sub_changed`: a client's SUB/UNSUB, a route's
RS+/RS-, another leaf's LS+/LS-) is offered to each leaf, which forwards it
unless
  * the subscription is the leaf's own;
  * it came from a leaf of the same origin cluster (the peer has it);
  * the leaf is a spoke (we dialled a hub) and the interest is not our own
    clients' or that of a leaf we are the hub of (the hub learns the rest
    from the servers that have it);
  * deny_imports forbids it, or it is JetStream's (leafjs.py: `$JS.API.>`
    and the like stay on each side; `$JS.<domain>.API.>` crosses).
Loop detection: each account has a `$LDS.<random>` subject, sent to every
leaf; a leaf that receives back its own account's subject is in a loop and
is closed (30 s before the dialler tries again). Interest from a leaf we
are the hub of also crosses routes (`cluster.local_sub_added`), so a
gnatsd.py cluster serves leaves on any member.
"""

import os
import random
from urllib.parse import unquote, urlsplit

from .auth import ClientAuth
from .conn import set_socket_options
from .leafcreds import CredsError, connect_fields
from .leaf import LDS_PREFIX, Leaf
from .leafjs import set_js_denies
from .leafz import leaf_options_record, leaf_record
from .net import Dial, Listener, Redial, bind_listener, hostport, local_ip
from .nkeys import make_nonce
from .reactor import EVENT_READ
from .sysacct import DEFAULT_SYSTEM_ACCOUNT, resolve_system_account

_B62 = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _nuid():
    return bytes(_B62[b % 62] for b in os.urandom(22)).decode()


class LeafURL:
    """nats-leaf://[user:pass@]host:port (also nats://, tls://)."""

    def __init__(self, text):
        u = urlsplit(text if "://" in text else "nats-leaf://" + text)
        self.text = text
        self.scheme = u.scheme
        self.host = u.hostname
        self.port = u.port or 7422
        self.user = unquote(u.username) if u.username else ""
        self.password = unquote(u.password) if u.password else ""

    def redacted(self):
        return "%s://%s" % (self.scheme, hostport(self.host, self.port))


class Remote(Redial):
    """One `remotes` entry: the account it binds, its URLs, the dial state."""

    def __init__(self, mgr, cfg, account):
        self.mgr = mgr
        self.cfg = cfg
        self.account = account
        self.urls = [LeafURL(u) for u in cfg.urls]
        self.index = -1
        self.url = self.urls[0]
        self.leaf = None
        Redial.__init__(self)
        self.delay = 0.0            # a longer wait before the next dial (loop)
        self.tls_ctx = None         # the client TLS context, made on first use

    def connect(self):
        self.timer = None
        if self.stopped or self.leaf is not None or self.dial is not None:
            return
        self.index = (self.index + 1) % len(self.urls)
        self.url = self.urls[self.index]
        self.mgr.log.debug('Trying to connect as leafnode to remote server on "%s"'
                           % hostport(self.url.host, self.url.port))
        self.dial = Dial(self.mgr.reactor, self.url.host, self.url.port, self._connected, self._failed)

    def _connected(self, sock):
        self.dial = None
        if self.stopped:
            sock.close()
            return
        self.mgr.create_solicited(self, sock)

    def _failed(self, why):
        self.dial = None
        self.mgr.log.debug("Error trying to connect as leafnode to remote server %s: %s"
                           % (hostport(self.url.host, self.url.port), why))
        self.retry()

    def delay_next(self, seconds):
        self.delay = seconds

    def retry(self):
        if self.stopped or self.timer is not None:
            return
        delay = self.delay or self.mgr.opts.reconnect
        self.delay = 0.0
        delay *= 0.9 + 0.2 * random.random()
        self.timer = self.mgr.reactor.call_later(delay, self.connect)


class Leafnodes:
    """The leaf listener, the remotes and the registered leaf connections."""

    def __init__(self, server):
        self.server = server
        self.log = server.log
        self.reactor = server.reactor
        self.listener = None
        self.port = 0
        self.info_host = ""
        self.info_port = 0
        self.conns = {}             # lid -> Leaf, every leaf connection
        self.leafs = {}             # lid -> Leaf, registered
        self._lds = {}              # account -> its loop detection subject
        self.next_lid = 0
        o = self.opts
        self.auth = self._make_auth(o)
        self.tls_server_ctx = None
        if o.tls is not None:
            from .tls import make_server_context
            t = o.tls
            self.tls_server_ctx = make_server_context(t.cert, t.key, t.ca, t.verify, what="Leafnode")
        self.remotes = []
        for cfg in o.remotes:
            account = self.find_account(cfg.account) if cfg.account else server.accounts.global_account
            if account is None and cfg.account == (server.opts.system_account or DEFAULT_SYSTEM_ACCOUNT):
                # the system account is registered when the server starts
                # it, after the leafnodes block: registered here first
                account = resolve_system_account(server)
            if account is None:
                # nats-server's text; it retries the lookup, we have no
                # account that could appear later
                self.log.error("Unable to lookup account %s for solicited leafnode connection"
                               % cfg.account)
                continue
            self.remotes.append(Remote(self, cfg, account))

    @property
    def opts(self):
        return self.server.opts.leafnodes

    # -- accounts (the registry of gnats/account.py) ---------------------
    def find_account(self, name):
        return self.server.accounts.find_wire(name.encode("latin-1"))

    def account_for(self, user):
        """The account an accepted leaf binds: its user's `account`, else
        the authorization block's, else the global account."""
        o = self.opts
        name = ""
        uname = getattr(user, "name", "") or ""
        for u in o.users:
            if u.get("user") == uname:
                name = u.get("account", "")
        name = name or o.account
        if not name:
            return self.server.accounts.global_account
        return self.find_account(name)

    def lds(self, account):
        s = self._lds.get(account)
        if s is None:
            s = self._lds[account] = LDS_PREFIX + _nuid()
        return s

    def _make_auth(self, o):
        """The leafnode authorization block; without one, the client port's
        (nats-server checks leaves against the server's users then)."""
        if o.username or o.users:
            class _O:
                users = [{"user": u["user"], "password": u["password"]} for u in o.users]
                username, password, authorization = o.username, o.password, ""
                nkeys = ()
                no_auth_user = ""
                tls_verify_and_map = False
                auth_timeout = o.auth_timeout or 2.0
                tls = o.tls is not None
                tls_timeout = o.tls.timeout if o.tls is not None else 2.0
            return ClientAuth(_O)
        return self.server.client_auth

    def credentials_for(self, remote, nonce):
        """CONNECT fields (jwt, sig) for a remote's `credentials` file, {}
        without one, None when the file cannot be used (logged; the
        connection is closed and dialled again later, as nats-server does)."""
        path = remote.cfg.credentials
        if not path:
            return {}
        self.log.debug('Authenticating with credentials file "%s"' % path)
        try:
            return connect_fields(path, nonce)
        except (CredsError, OSError) as e:
            self.log.error("Leafnode remote credentials %s: %s" % (path, e))
            return None

    # -- TLS -------------------------------------------------------------
    def tls_client_context(self, remote, hub_requires):
        t = remote.cfg.tls
        if t is None and not hub_requires and remote.url.scheme != "tls":
            return None
        ctx = remote.tls_ctx
        if ctx is None:
            from .tls import make_client_context
            if t is None:
                ctx = make_client_context(verify=True)
            else:
                ctx = make_client_context(t.ca, t.cert, t.key, verify=not t.insecure)
            remote.tls_ctx = ctx
        return ctx

    def remote_tls_timeout(self, remote):
        return remote.cfg.tls.timeout if remote.cfg.tls is not None else 2.0

    # -- what peers are told ----------------------------------------------
    def cluster_name(self):
        """The cluster name leaves compare (a dialler with no cluster uses
        its server name, as nats-server does)."""
        c = self.server.cluster
        if c is not None:
            return c.name
        return self.server.server_name if self.remotes else ""

    def leafnode_urls(self):
        o = self.opts
        if o.no_advertise or not self.port:
            return []
        return ["%s:%d" % (self.info_host, self.info_port)]

    # -- lifecycle -------------------------------------------------------
    def start(self):
        o = self.opts
        if not o.port:
            return
        port = o.port if o.port > 0 else 0
        sock = bind_listener(o.host, port)
        self.port = sock.getsockname()[1]
        self.listener = Listener(self.reactor, sock, self.accept_leaf)
        host, iport = o.host, self.port
        if o.advertise:
            h, _, p = o.advertise.rpartition(":")
            host, iport = (h, int(p)) if p.isdigit() else (o.advertise, self.port)
        elif host in ("", "0.0.0.0", "::"):
            host = local_ip()
        self.info_host, self.info_port = host, iport
        self.log.notice("Listening for leafnode connections on %s" % hostport(o.host, self.port))
        if self.tls_server_ctx is not None:
            self.log.notice("TLS required for leafnode connections")

    def solicit(self):
        for r in self.remotes:
            r.connect()

    def shutdown(self):
        if self.listener is not None:
            self.listener.close()
        for r in self.remotes:
            r.stop()
        for c in list(self.conns.values()):
            c.close_conn("Server Shutdown")

    # -- monitoring (gnats/leafz.py) -------------------------------------
    def record(self, c):
        return leaf_record(c)

    def varz_block(self):
        return leaf_options_record(self.server)

    # -- connections -------------------------------------------------------
    def _new_leaf(self, sock, addr, remote):
        self.next_lid = self.server.next_cid = self.server.next_cid + 1
        c = Leaf(self, sock, addr, self.next_lid, remote)
        self.conns[c.lid] = c
        self.reactor.register(sock, EVENT_READ, c)
        return c

    def accept_leaf(self, sock, addr):
        set_socket_options(sock)
        srv = self.server
        if srv.shutting_down or srv.lame_duck:
            sock.close()
            return
        c = self._new_leaf(sock, addr, None)
        self.log.notice("%s - Leafnode connection created " % c.tag())
        c.nonce = make_nonce()
        line = c.send_info()
        if self.tls_server_ctx is not None:
            # INFO in plain text, then the dialler starts the handshake
            c.wbuf.clear()
            try:
                sock.send(line)
            except OSError:
                c.close_conn("Write Error", flush=False)
                return
            c.start_tls(self.tls_server_ctx, True, self.opts.tls.timeout)
        timeout = self.auth.timeout if self.auth.required else max(self.auth.timeout, 2.0)
        c.timers.append(self.reactor.call_later(timeout, c.auth_timeout))

    def create_solicited(self, remote, sock):
        set_socket_options(sock)
        try:
            addr = sock.getpeername()
        except OSError:
            sock.close()
            remote._failed("connection lost")
            return
        c = self._new_leaf(sock, addr, remote)
        remote.leaf = c
        self.log.notice("%s - Leafnode connection created for account: %s " % (c.tag(), remote.account.name))
        c.timers.append(self.reactor.call_later(remote.cfg.first_info_timeout, c.first_info_timeout))

    def register(self, c):
        """The handshake is done: interest both ways, keep-alive."""
        self.leafs[c.lid] = c
        c.registered = True
        srv = self.server
        srv.leaf_conns[c.lid] = c
        self.log.notice("%s - Leafnode connection registered with %s%s (account %s)" % (
            c.tag(), c.remote_name, "/" + c.remote_cluster if c.remote_cluster else "", c.account.name))
        set_js_denies(srv, c)
        self._init_smap(c)
        c.send_smap()
        c.timers.append(self.reactor.call_later(srv.opts.ping_interval, c.ping_timer))

    def leaf_closed(self, c, reason):
        self.conns.pop(c.lid, None)
        was = self.leafs.pop(c.lid, None) is not None
        srv = self.server
        if srv.leaf_conns.pop(c.lid, None) is not None:
            srv.retire_counters(c)
        if c.remote_name:
            self.log.notice("%s - Leafnode connection closed: %s - Remote: %s" % (c.tag(), reason, c.remote_name))
        else:
            self.log.notice("%s - Leafnode connection closed: %s" % (c.tag(), reason))
        c.registered = False
        if was:
            c.remove_leaf_subs()
        r = c.remote
        if r is not None and r.leaf is c:
            r.leaf = None
            if not srv.shutting_down:
                r.retry()

    # -- interest ----------------------------------------------------------
    def _forwards(self, c, sub):
        """Does leaf `c` tell its peer about `sub`? (the rules above)"""
        src = sub.client
        if src is c:
            return False
        k = src.kind
        origin = src.remote_cluster if k == "leaf" else ""
        if origin and origin == c.remote_cluster:
            return False
        if sub.subject.startswith(LDS_PREFIX):
            return True
        if c.is_spoke and not (k == "client" or k == "internal" or (k == "leaf" and not src.is_spoke)):
            return False
        return c.may_import(sub.subject)

    def sub_changed(self, sub, delta, account=None):
        """A subscription of an account (a route's names it: routes carry
        every account) came, went or changed weight by `delta`: tell the
        leaves that should know."""
        if not self.leafs:
            return
        if account is None:
            account = sub.client.account
        key = sub.subject if sub.queue is None else sub.subject + " " + sub.queue
        for c in list(self.leafs.values()):
            if c.account is account and not c.closed and self._forwards(c, sub):
                c.smap_update(key, delta, sub.queue)

    def leaf_sub_changed(self, c, sub, delta):
        """LS+/LS- from leaf `c`: other leaves, and routes unless `c` is a
        spoke (the hub's interest stays on this server)."""
        cluster = self.server.cluster
        if cluster is not None and not c.is_spoke:
            if delta > 0:
                cluster.local_sub_added(sub, c.account, delta)
            else:
                cluster.local_sub_removed(sub, c.account, -delta)
        self.sub_changed(sub, delta)

    def _all_subs(self, account):
        """Every subscription of the account: clients', routes', leaves'."""
        srv = self.server
        for cl in list(srv.clients.values()):
            if cl.account is account and not cl.closed:
                yield from cl.subs.values()
        for r in list(srv.routes.values()):
            for key, sub in r.subs.items():
                if key[0] is account:
                    yield sub
        for lf in list(self.leafs.values()):
            if lf.account is account:
                yield from lf.subs.values()
        # internal subscriptions (imports, system handlers, JetStream) are
        # listed nowhere else; leaves learn them as nats-server's do
        for sub in list(srv.internals.subs):
            if sub.client.account is account:
                yield sub

    def _init_smap(self, c):
        smap = c.smap
        smap.clear()
        for sub in self._all_subs(c.account):
            if sub.closed or not self._forwards(c, sub):
                continue
            key = sub.subject if sub.queue is None else sub.subject + " " + sub.queue
            smap[key] = smap.get(key, 0) + (sub.weight if sub.queue is not None else 1)
        smap[self.lds(c.account)] = 1
