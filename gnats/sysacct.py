"""The system account: server events and the monitoring requests over NATS.

nats-server keeps one account for itself (`system_account`, `$SYS` when
none is configured; it always exists). The server answers requests there
and publishes events there, so tools that reach the system account (the
`nats` CLI's `server list`, `server req`, event watchers) see every server
of a cluster without HTTP. This module does the same through the internal
subscriptions of gnats/internal.py; the messages themselves are built by
the pure functions of gnats/sysevents.py over a monitoring snapshot, with
the HTTP endpoints' own builders (gnats/endpoints.py), so
`$SYS.REQ.SERVER.PING.VARZ` answers `{"server":{...},"data":<the /varz
JSON>}`.

Requests (answered on the request's reply subject; without a reply none):
  $SYS.REQ.SERVER.PING                   STATSZ of every server
  $SYS.REQ.SERVER.PING.<Z>, .<id>.<Z>    Z in STATSZ VARZ CONNZ SUBSZ ROUTEZ
                                         HEALTHZ ACCOUNTZ IDZ
  $SYS.REQ.ACCOUNT.<acc>.CONNZ|SUBSZ|STATZ|INFO, $SYS.REQ.ACCOUNT.PING.STATZ
  $SYS.REQ.USER.INFO                     who the requester is (not routed:
                                         only its own server knows)
A JSON body carries the endpoint's options and the filters nats-server
takes (server_name, host, cluster, exact_match: a server left out by them
stays silent). A body that is not valid JSON is answered with a 400 error,
a bad option with a 500, both in nats-server's envelope.

Events:
  $SYS.ACCOUNT.<acc>.CONNECT / DISCONNECT     every client, every account
                                         (DISCONNECT also for one never let in)
  $SYS.SERVER.<id>.CLIENT.AUTH.ERR       a client refused for its credentials
  $SYS.ACCOUNT.<acc>.SERVER.CONNS (and the older $SYS.SERVER.ACCOUNT.<acc>.CONNS)
                                         on each change of an account's
                                         client count, and every 30 s while
                                         it has clients; never for $G
  $SYS.SERVER.<id>.SHUTDOWN / LAMEDUCK   the server block, when it happens
  $SYS.SERVER.<id>.STATSZ                after 250 ms, then at doubling
                                         intervals up to every 10 s (as
                                         nats-server); on a server without
                                         routes only when someone listens

Everything runs on the reactor thread (internal callbacks, timers, the
client hooks Server calls).
"""

import time

from .endpoints import (QueryError, _SORTS, build_connz, build_routez, build_subsz, build_varz,
                        go_time, to_json)
from .procstats import ProcStats, cpu_count, process_rss, usable_cpus
from .accountz import build_accountz
from .snapshot import SublistStats, conn_record
from .sublist import is_literal, valid_subject
from . import sysevents as E

DEFAULT_SYSTEM_ACCOUNT = "$SYS"
STATSZ_FIRST = 0.25         # the first STATSZ broadcast, then doubling ...
STATSZ_INTERVAL = 10.0      # ... up to this (nats-server statsHBInterval)
CONNS_HEARTBEAT = 30.0      # account conns events while it has clients (eventsHBInterval)

# the monitoring requests answered under $SYS.REQ.SERVER.PING.<Z> and
# $SYS.REQ.SERVER.<id>.<Z>, with the Go struct their options unmarshal into
_SERVER_REQUESTS = (("STATSZ", "StatszEventOptions"), ("VARZ", "VarzEventOptions"),
                    ("CONNZ", "ConnzEventOptions"), ("SUBSZ", "SubszEventOptions"),
                    ("ROUTEZ", "RoutezEventOptions"), ("HEALTHZ", "HealthzEventOptions"),
                    ("ACCOUNTZ", "AccountzEventOptions"), ("IDZ", "EventFilterOptions"))
_ACCOUNT_REQUESTS = (("CONNZ", "ConnzEventOptions"), ("SUBSZ", "SubszEventOptions"),
                     ("STATZ", "AccountStatzEventOptions"), ("INFO", "AccInfoEventOptions"))


def resolve_system_account(server):
    """The system account: the one `system_account` names, or `$SYS`,
    registered here when no configuration made it. In operator mode the
    name is an account public key the operator vouched for (checked when
    the config loaded); accounts are registered on first use there, so this
    one is now. Otherwise a name that is no account is nats-server's
    "account missing"."""
    opts = server.opts
    name = opts.system_account or DEFAULT_SYSTEM_ACCOUNT
    acc = server.accounts.find_wire(name.encode("utf-8"))
    if acc is None:
        if name != DEFAULT_SYSTEM_ACCOUNT and not opts.operators:
            raise ValueError("error resolving system account: account missing")
        acc = server.accounts.register(name)
    return acc


class SystemAccount:
    def __init__(self, server):
        self.server = server
        self.account = None         # resolved by start(), once configured accounts exist
        self.seq = 0                # messages sent: the server block's seq
        self.ids = E.EventIds()
        self.proc = ProcStats()     # CPU figures when no monitor runs
        self.subs = []
        self.announced = set()      # cids whose CONNECT event went out
        self.conns_timers = {}      # account name -> its heartbeat Timer
        self.statsz_timer = None
        self.statsz_every = STATSZ_FIRST

    @property
    def name(self):
        return self.account.name if self.account is not None else ""

    # -- start / stop ------------------------------------------------------------
    def start(self):
        """Resolve the account (ValueError when `system_account` names none)
        and subscribe its request handlers; the STATSZ timer starts."""
        srv = self.server
        self.account = resolve_system_account(srv)
        sub = self._subscribe
        sub("$SYS.REQ.SERVER.PING", self.on_statsz)
        for kind, struct in _SERVER_REQUESTS:
            handler = self.on_statsz if kind == "STATSZ" else self._zreq(kind, struct)
            sub("$SYS.REQ.SERVER.PING." + kind, handler)
            sub("$SYS.REQ.SERVER.%s.%s" % (srv.server_id, kind), handler)
        for kind, struct in _ACCOUNT_REQUESTS:
            sub("$SYS.REQ.ACCOUNT.*.%s" % kind, self._zreq("ACC_" + kind, struct))
        sub("$SYS.REQ.ACCOUNT.PING.STATZ", self._zreq("PINGSTATZ", "AccountStatzEventOptions"))
        sub("$SYS.REQ.USER.INFO", self.on_user_info, routed=False)
        self.statsz_timer = srv.reactor.call_later(STATSZ_FIRST, self.statsz_heartbeat)

    def _subscribe(self, subject, callback, routed=True):
        self.subs.append(self.server.internal_subscribe(self.account, subject, callback,
                                                        routed=routed))

    # -- sending -----------------------------------------------------------------
    def server_block(self):
        srv = self.server
        self.seq += 1
        cluster = srv.cluster.name if srv.cluster is not None else ""
        return E.server_block(srv.server_name, srv.opts.host, srv.server_id, cluster, self.seq)

    def send(self, subject, obj):
        self.server.publish_internal(self.account, subject, None, None, to_json(obj, indent=False))

    def interest(self, subject):
        """Worth building? Without routes, only when a local subscriber
        listens (nats-server's standalone rule for STATSZ; events alike)."""
        if self.account is None:
            return False            # not started
        if self.server.routes:
            return True
        r = self.account.sublist.match(subject)
        return bool(r.plain or r.queues)

    # -- requests ----------------------------------------------------------------
    def _zreq(self, kind, struct):
        def handler(sub, subject, reply, hdr, msg, client):
            if not reply:
                return
            fields = "STATZ" if kind == "PINGSTATZ" else _endpoint(kind)
            try:
                opts = E.parse_options(msg, fields, struct)
            except E.RequestError as e:
                self.send(reply, E.api_response(self.server_block(), error=(400, str(e))))
                return
            if E.filtered_out(opts, self.server.server_name, self.server.opts.host,
                              self._cluster_name()):
                return
            if kind == "IDZ":
                srv = self.server
                self.send(reply, E.idz(srv.server_name, srv.opts.host, srv.server_id))
                return
            try:
                data = self.build(kind, opts, subject)
            except QueryError as e:
                self.send(reply, E.api_response(self.server_block(), error=(500, str(e)),
                                                data_null=True))
                return
            if data is not None:
                self.send(reply, E.api_response(self.server_block(), data))
        return handler

    def _cluster_name(self):
        cl = self.server.cluster
        return cl.name if cl is not None else ""

    def build(self, kind, opts, subject):
        """The data of one request (None: this server stays silent)."""
        srv = self.server
        if kind == "HEALTHZ":
            return {"status": "ok", "status_code": 200}
        if kind == "ACCOUNTZ":
            # /accountz's builder; {"account": NAME} asks for one account's detail
            name = opts.get("account", "")
            return build_accountz(srv.snapshots.build(False), {"acc": name} if name else {})
        if kind == "ACC_INFO":
            # /accountz?acc=NAME's detail (an unknown account: its error, a 500)
            name = subject.split(".")[3]
            return build_accountz(srv.snapshots.build(False), {"acc": name})["account_detail"]
        if kind in ("ACC_STATZ", "PINGSTATZ"):
            return self.account_statz(kind, opts, subject)
        # nats-server's texts for the two option errors worded apart from HTTP's
        sort = opts.get("sort", "")
        if sort and sort not in _SORTS:
            raise QueryError("invalid sorting option: %s" % sort)
        test = opts.get("test", "")
        if test and not (valid_subject(test) and is_literal(test)):
            raise QueryError("invalid test subject, must be valid publish subject: %s" % test)
        snap = srv.snapshots.build(kind != "VARZ")
        if kind == "VARZ":
            mon = srv.monitor
            return build_varz(snap, mon.request_stats() if mon else {},
                              mon.proc if mon else self.proc)
        q = E.endpoint_query(_endpoint(kind), opts)
        if kind == "CONNZ":
            return build_connz(snap, q)
        if kind == "SUBSZ":
            return build_subsz(snap, q)
        if kind == "ROUTEZ":
            return build_routez(snap, q)
        # $SYS.REQ.ACCOUNT.<acc>.CONNZ|SUBSZ: the account's clients only
        name = subject.split(".")[3]
        if kind == "ACC_CONNZ":
            q["acc"] = name
            return build_connz(snap, q)
        acc = self.find_account(name)
        if acc is None:
            return None
        # nats-server always lists an account's subscriptions, and its figures
        q["subs"] = "1"
        snap = snap._replace(connections=tuple(r for r in snap.connections if r.account == name),
                             sublist=SublistStats(**acc.sublist.stats()))
        data = build_subsz(snap, q)
        for d in data.get("subscriptions_list", ()):
            d["account"] = name         # the HTTP builder labels every one $G
        return data

    def account_names(self):
        return [a.name for a in self.server.accounts.all()]

    def find_account(self, name):
        return self.server.accounts.find(name)

    def account_stat(self, acc):
        clients = list(acc.clients)
        return E.account_stat(acc.name, len(clients), acc.sublist.count,
                              sum(c.in_msgs for c in clients), sum(c.in_bytes for c in clients),
                              sum(c.out_msgs for c in clients), sum(c.out_bytes for c in clients))

    def account_statz(self, kind, opts, subject):
        if kind == "ACC_STATZ":
            name = subject.split(".")[3]
            if name == "PING":
                return None         # $SYS.REQ.ACCOUNT.PING.STATZ has its own handler
            names = [name]
        else:
            names = opts.get("accounts") or self.account_names()
        stats = []
        for name in names:
            acc = self.find_account(name)
            if acc is None:
                continue
            st = self.account_stat(acc)
            if st["conns"] or opts.get("include_unused"):
                stats.append(st)
        if not stats:
            return None             # nothing to say: silent, as nats-server
        return {"server_id": self.server.server_id, "now": go_time(time.time()),
                "account_statz": stats}

    def on_user_info(self, sub, subject, reply, hdr, msg, client):
        if not reply or client is None or getattr(client, "kind", "") != "client":
            return
        data = {"user": client.user, "account": client.account.name,
                "account_name": client.account.name}
        if client.perms is not None:
            data["permissions"] = E.public_permissions(client.perms.perms.spec)
        self.send(reply, E.api_response(self.server_block(), data))

    # -- STATSZ ------------------------------------------------------------------
    def on_statsz(self, sub, subject, reply, hdr, msg, client):
        if msg:
            try:
                opts = E.parse_options(msg, None, "StatszEventOptions")
            except E.RequestError as e:
                if reply:
                    self.send(reply, E.api_response(self.server_block(), error=(400, str(e))))
                return
            if E.filtered_out(opts, self.server.server_name, self.server.opts.host,
                              self._cluster_name()):
                return
        # no reply: a broadcast on our own STATSZ subject (nats-server's rule)
        self.send_statsz(reply or self.statsz_subject())

    def statsz_subject(self):
        return "$SYS.SERVER.%s.STATSZ" % self.server.server_id

    def statsz_heartbeat(self):
        srv = self.server
        if srv.shutting_down:
            return
        self.statsz_every = min(self.statsz_every * 2, STATSZ_INTERVAL)
        self.statsz_timer = srv.reactor.call_later(self.statsz_every, self.statsz_heartbeat)
        subject = self.statsz_subject()
        if self.interest(subject):
            self.send_statsz(subject)

    def send_statsz(self, subject):
        srv = self.server
        snap = srv.snapshots.build(False)
        mon = srv.monitor
        proc = mon.proc if mon else self.proc
        active = len({c.account.name for c in srv.clients.values()})
        servers = 1 + len({r.remote_id for r in snap.routes if r.remote_id})
        stats = E.statsz(snap, process_rss(), cpu_count(), float(proc.cpu()), usable_cpus(),
                         active, servers)
        self.send(subject, {"server": self.server_block(), "statsz": stats})

    def server_event(self, what):
        """$SYS.SERVER.<id>.SHUTDOWN or .LAMEDUCK: the server block alone,
        so other servers stop counting this one (nats-server sends both)."""
        subject = "$SYS.SERVER.%s.%s" % (self.server.server_id, what)
        if self.interest(subject):
            self.send(subject, self.server_block())

    # -- connection events (Server's hooks) --------------------------------------------
    def client_connected(self, c):
        """A client was accepted (CONNECT, credentials checked): its
        account's CONNS update and the CONNECT event, once per connection."""
        if c.closed or c.closing_after_flush or c.cid in self.announced:
            return
        self.announced.add(c.cid)
        acc = c.account
        self.conns_update(acc)
        subject = "$SYS.ACCOUNT.%s.CONNECT" % acc.name
        if self.interest(subject):
            rec = conn_record(c, 0)
            self.send(subject, E.connect_event(self.ids.next(), self.server_block(), rec,
                                               acc.name, _raw_user(c)))

    def client_closed(self, c, reason):
        """A client left: as nats-server, a DISCONNECT event for every one,
        accepted or not (a failed login also gets CLIENT.AUTH.ERR first);
        the account's CONNS update for one that was counted in."""
        acc = c.account
        if c.cid in self.announced:
            self.announced.discard(c.cid)
            self.conns_update(acc)
        rec = None
        for subject in ("$SYS.SERVER.%s.CLIENT.AUTH.ERR" % self.server.server_id
                        if reason == "Authentication Failure" else None,
                        "$SYS.ACCOUNT.%s.DISCONNECT" % acc.name):
            if subject and self.interest(subject):
                rec = rec or conn_record(c, 0)
                self.send(subject, E.disconnect_event(self.ids.next(), self.server_block(), rec,
                                                      acc.name, _raw_user(c), reason))

    def conns_update(self, acc):
        """The account's client count changed (or its heartbeat is due)."""
        srv = self.server
        if acc is srv.accounts.global_account or srv.shutting_down:
            return
        timer = self.conns_timers.pop(acc.name, None)
        if timer is not None:
            timer.cancel()
        if acc.clients:
            self.conns_timers[acc.name] = srv.reactor.call_later(CONNS_HEARTBEAT,
                                                                 self.conns_update, acc)
        stat = None
        for subject in ("$SYS.SERVER.ACCOUNT.%s.CONNS" % acc.name,
                        "$SYS.ACCOUNT.%s.SERVER.CONNS" % acc.name):
            if self.interest(subject):
                stat = stat or self.account_stat(acc)
                self.send(subject, E.account_conns_event(self.ids.next(), self.server_block(),
                                                         stat))


def _endpoint(kind):
    """The endpoint of a handler kind: ACC_CONNZ (an account's) -> CONNZ."""
    return kind[4:] if kind.startswith("ACC_") else kind


def _raw_user(c):
    """nats-server's getRawAuthUser: the CONNECT's nkey or user name (also
    when they were refused), "[REDACTED]" for a token; else the user the
    server gave it (no_auth_user, a certificate's)."""
    obj = c.connect_obj if isinstance(c.connect_obj, dict) else {}
    for key in ("nkey", "user"):
        if obj.get(key) and isinstance(obj[key], str):
            return obj[key]
    if obj.get("auth_token"):
        return "[REDACTED]"
    return c.user
