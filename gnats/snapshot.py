"""The monitoring snapshot: its schema, how the reactor builds it, the ring
of closed connections, and how monitor threads get it.

Theory of operation
-------------------
The schema is declared once, here, as typed records (`typing.NamedTuple`):
a record built with a field it does not have raises TypeError, reading a
field it does not have raises AttributeError, so a misspelled field is an
error, never a silent 0. Records are tuples: once built they cannot change.

Only the reactor thread builds snapshots (`Snapshots.build`, from live
connections and the server's current options, so a reload shows at once).
A monitor thread calls `Snapshots.get`: it asks the reactor for a fresh
build through `call_soon_threadsafe` and waits for it, bounded (the reactor
never waits for a monitor thread). Requests share one pending build of each
kind; the lock guards only that pending map and the swap of the latest
snapshot. A snapshot without connection lists (`conns=False`) serves /varz,
/subsz and /metrics: listing 10k connections took ~65 ms.

A published snapshot never changes afterwards: it holds its own tuples of
records, and the closed ring, when it drops a record's subscription list to
stay within its budget, puts a trimmed copy in the ring instead of editing
the record a snapshot may share.

The plain-data form (dicts of the same field names, as a test fake or a
recorded snapshot gives them) converts with `Snapshot.from_dict`, under the
same rule: an unknown field raises, a missing one takes its default.
"""

import itertools
import platform
import threading
import time
from collections import deque
from typing import NamedTuple, Optional, Tuple

from . import VERSION

MAX_CLOSED_CLIENTS = 10000  # closed connections remembered for /connz (as nats-server)
# Subscription details kept across all those records. The ring bounds the
# number of records, not their size: every client that left after holding
# 100k subscriptions kept ~34 MB alive, so a few reconnecting abusers
# could exhaust memory. Oldest records lose their lists first.
MAX_CLOSED_SUB_DETAILS = 100000
SNAPSHOT_WAIT = 1.0         # seconds a monitor thread waits for a fresh build


# ---------------------------------------------------------------------------
# The schema

class SubDetails(NamedTuple):
    """What /connz?subs=detail adds to a record's `subs`: columns parallel
    to it, not a record per subscription (100k small tuples kept waking the
    cyclic garbage collector and doubled the build time of a snapshot; the
    dicts they replaced, holding only strings and numbers, are not tracked).
    No per-subscription message count: the fast path counts per connection
    only, and a wrong figure is worse than none."""
    sids: Tuple[str, ...] = ()
    queues: Tuple[Optional[str], ...] = ()    # None: not in a queue group
    maxes: Tuple[int, ...] = ()               # 0: no auto-unsubscribe

    def cut(self, n):
        return SubDetails(self.sids[:n], self.queues[:n], self.maxes[:n])


class ConnRecord(NamedTuple):
    """A client connection, open or closed (then `stop` and `reason` are set).
    `subs` (subjects) may list fewer than `subscriptions` (the closed ring's
    budget); `subs_detail` None means only the subjects are known."""
    cid: int = 0
    ip: str = ""
    port: int = 0
    start: float = 0.0
    last_activity: float = 0.0
    rtt: float = 0.0
    pending_bytes: int = 0
    in_msgs: int = 0
    out_msgs: int = 0
    in_bytes: int = 0
    out_bytes: int = 0
    subscriptions: int = 0
    subs: Tuple[str, ...] = ()
    subs_detail: Optional[SubDetails] = None
    name: str = ""
    lang: str = ""
    version: str = ""
    tls_version: str = ""
    tls_cipher_suite: str = ""
    user: str = ""
    stop: float = 0.0
    reason: str = ""
    stalls: int = 0         # producers stalled by this receiver (back-pressure)
    conn_type: str = "nats"     # /connz `type`: "nats" or "websocket" (issue 21)
    account: str = ""

    def listing(self, n):
        """A copy listing at most `n` subscriptions."""
        detail = self.subs_detail
        return self._replace(subs=self.subs[:n], subs_detail=detail and detail.cut(n))

    @classmethod
    def from_dict(cls, d):
        detail = d.get("subs_detail")
        if detail is not None:
            d = dict(d, subs_detail=SubDetails(**detail))
        return cls(**d)


class RouteRecord(NamedTuple):
    rid: int = 0
    remote_id: str = ""
    did_solicit: bool = False
    is_configured: bool = False
    ip: str = ""
    port: int = 0
    pending_size: int = 0
    in_msgs: int = 0
    out_msgs: int = 0
    in_bytes: int = 0
    out_bytes: int = 0
    subscriptions: int = 0
    subs: Tuple[str, ...] = ()
    start: float = 0.0
    last_activity: float = 0.0
    rtt: float = 0.0            # routes do not measure it (yet): /routez shows 0s


class ClusterInfo(NamedTuple):
    """The cluster block of /varz, from the options in force (port 0: none)."""
    name: str = ""
    host: str = ""
    port: int = 0
    urls: Tuple[str, ...] = ()
    auth_timeout: float = 0.0
    tls_timeout: float = 0.0
    tls_required: bool = False
    tls_verify: bool = False


class ServerInfo(NamedTuple):
    """Identity and the options in force, as /varz shows them."""
    server_id: str = ""
    server_name: str = ""
    version: str = VERSION
    proto: int = 1
    go: str = ""
    host: str = ""
    port: int = 0
    auth_required: bool = False
    tls_required: bool = False
    tls_verify: bool = False
    max_connections: int = 0
    ping_interval: float = 0.0
    ping_max: int = 0
    http_host: str = ""
    http_port: int = 0
    https_port: int = 0
    auth_timeout: float = 0.0
    max_control_line: int = 0
    max_payload: int = 0
    max_pending: int = 0
    tls_timeout: float = 0.0
    write_deadline: float = 0.0
    max_subscriptions: int = 0
    cluster: ClusterInfo = ClusterInfo()
    connect_urls: Tuple[str, ...] = ()
    leaf: Optional[dict] = None     # [leaf] /varz's leaf block (gnats/leafz.py)
    websocket: Optional[dict] = None    # /varz `websocket` as built (issue 21)

    @classmethod
    def from_dict(cls, d):
        if "cluster" in d:
            d = dict(d, cluster=ClusterInfo(**d["cluster"]))
        return cls(**d)


class Stats(NamedTuple):
    connections: int = 0
    total_connections: int = 0
    routes: int = 0
    remotes: int = 0
    in_msgs: int = 0
    out_msgs: int = 0
    in_bytes: int = 0
    out_bytes: int = 0
    slow_consumers: int = 0
    stalled_clients: int = 0
    subscriptions: int = 0
    leafnodes: int = 0              # [leaf]


class SublistStats(NamedTuple):
    """Sublist.stats(), in /subsz's field order."""
    num_subscriptions: int = 0
    num_cache: int = 0
    num_inserts: int = 0
    num_removes: int = 0
    num_matches: int = 0
    cache_hit_rate: float = 0.0
    max_fanout: int = 0
    avg_fanout: float = 0.0


class AccountRecord(NamedTuple):
    """One account, as /accountz shows it. exports: (subject, type,
    response_type or "", approved accounts or ()); imports: (subject,
    account, to, local_subject, type, share)."""
    name: str = ""
    update_time: float = 0.0
    client_connections: int = 0
    subscriptions: int = 0
    exports: Tuple[tuple, ...] = ()
    imports: Tuple[tuple, ...] = ()
    sublist: SublistStats = SublistStats()

    @classmethod
    def from_dict(cls, d):
        if "sublist" in d:
            d = dict(d, sublist=SublistStats(**d["sublist"]))
        return cls(**d)


class Snapshot(NamedTuple):
    now: float = 0.0
    start: float = 0.0
    config_load_time: float = 0.0
    server: ServerInfo = ServerInfo()
    stats: Stats = Stats()
    sublist: SublistStats = SublistStats()
    connections: Tuple[ConnRecord, ...] = ()
    closed_connections: Tuple[ConnRecord, ...] = ()
    routes: Tuple[RouteRecord, ...] = ()
    leafs: tuple = ()               # [leaf] gnats.leafz.LeafRecord
    accounts: Tuple[AccountRecord, ...] = ()
    system_account: str = ""
    # JetStream's figures (gnats/jetstream/monitor.py's plain dict, built on
    # the reactor thread and never changed afterwards); None: not enabled
    jetstream: Optional[dict] = None

    @classmethod
    def from_dict(cls, d):
        """The plain-data form: unknown fields raise TypeError."""
        d = dict(d)
        for key, conv in (("server", ServerInfo.from_dict), ("stats", _kw(Stats)),
                          ("sublist", _kw(SublistStats))):
            if key in d:
                d[key] = conv(d[key])
        for key, conv in (("connections", ConnRecord.from_dict),
                          ("closed_connections", ConnRecord.from_dict),
                          ("routes", _kw(RouteRecord)),
                          ("accounts", AccountRecord.from_dict)):
            if key in d:
                d[key] = tuple(conv(r) for r in d[key] or ())
        return cls(**d)


def _kw(cls):
    return lambda d: cls(**d)


def as_snapshot(snap):
    """A Snapshot as it is; its plain-data form converted."""
    return snap if isinstance(snap, Snapshot) else Snapshot.from_dict(snap)


# ---------------------------------------------------------------------------
# Records of live connections (reactor thread)

# conn_record builds with tuple.__new__ in field order, skipping the
# NamedTuple's own __new__ (a Python function, 2x the cost of the dict
# literal it replaced). tests/test_restructure_snapshot.py checks every
# field of a record built here.
_make = tuple.__new__


def conn_record(c, max_subs=None, stop=0.0, reason=""):
    """A client connection as a record, with at most `max_subs`
    subscriptions listed (the count stays complete)."""
    subs = list(itertools.islice(c.subs.values(), max_subs))
    return _make(ConnRecord, (
        c.cid, c.ip, c.port, c.start, c.last_activity, c.rtt, len(c.wbuf),
        c.in_msgs, c.out_msgs, c.in_bytes, c.out_bytes, len(c.subs),
        tuple([s.subject for s in subs]),
        _make(SubDetails, (tuple([s.sid.decode("latin-1") for s in subs]),
                           tuple([s.queue for s in subs]),
                           tuple([s.max_msgs or 0 for s in subs]))),
        c.name, c.lang, c.version, c.tls_version, c.tls_cipher, c.user, stop, reason,
        c.stalls, getattr(c, "conn_type", "nats"), c.account.name))


def route_record(r):
    """A route connection as a record (was Route.snapshot)."""
    return RouteRecord(
        rid=r.rid, remote_id=r.remote_id, did_solicit=r.did_solicit,
        is_configured=r.is_configured, ip=r.ip, port=r.port,
        pending_size=len(r.wbuf), in_msgs=r.in_msgs, out_msgs=r.out_msgs,
        in_bytes=r.in_bytes, out_bytes=r.out_bytes, subscriptions=len(r.subs),
        subs=tuple([s.subject for s in r.subs.values()]),
        start=r.start, last_activity=r.last_activity)


# ---------------------------------------------------------------------------
# The closed-connection ring

class ClosedRing:
    """The last `maxlen` closed connections, holding at most `max_details`
    subscription details across all of them. Each place in the ring is a
    one-item list, so trimming swaps in a copy of the record without a
    search, and never edits a record a published snapshot holds."""

    def __init__(self, maxlen=MAX_CLOSED_CLIENTS, max_details=MAX_CLOSED_SUB_DETAILS):
        self.max_details = max_details
        self._ring = deque(maxlen=maxlen)     # [record]
        self._with_subs = deque()             # the places still holding a list, oldest first
        self.details = 0                      # subscription details kept

    def records(self):
        return tuple([place[0] for place in self._ring])

    def append(self, rec):
        ring, with_subs, cap = self._ring, self._with_subs, self.max_details
        if len(ring) == ring.maxlen and with_subs and with_subs[0] is ring[0]:
            self.details -= len(with_subs.popleft()[0].subs)     # about to drop out
        n = len(rec.subs)
        if n > cap:
            rec, n = rec.listing(cap), cap
        while self.details + n > cap:
            old = with_subs.popleft()
            self.details -= len(old[0].subs)
            old[0] = old[0].listing(0)
        place = [rec]
        if n:
            with_subs.append(place)
            self.details += n
        ring.append(place)


# ---------------------------------------------------------------------------
# Building and publishing

class Snapshots:
    """The server's snapshots: built on the reactor thread, handed to the
    monitor threads by `get`. Owns the closed-connection ring."""

    def __init__(self, server):
        self.server = server
        self.closed = ClosedRing()
        self._lock = threading.Lock()
        self._latest = {}           # with connection lists (True) or not -> Snapshot
        self._pending = {}          # kind -> event of a requested build not yet started

    def remember_closed(self, c, reason):
        """Reactor thread: a client connection just closed."""
        # never list more subscriptions than the ring keeps
        self.closed.append(conn_record(c, self.closed.max_details, time.time(), reason))

    def get(self, fresh=True, conns=True):
        """Called from a monitor thread. Returns the snapshot built by the
        reactor thread, asking for a fresh one first (waits up to
        SNAPSHOT_WAIT; a stalled reactor yields the previous snapshot, or
        None). Without `conns` the per-connection lists are left out."""
        kind = bool(conns)
        if fresh:
            # Requests share one pending build of each kind: a build per
            # request queued faster than the reactor could build them, and
            # hammering the monitor froze every client.
            with self._lock:
                ev = self._pending.get(kind)
                queue = ev is None
                if queue:
                    ev = self._pending[kind] = threading.Event()
            if queue:
                self.server.reactor.call_soon_threadsafe(self._publish, ev, kind)
            ev.wait(SNAPSHOT_WAIT)
        with self._lock:
            return self._latest.get(kind)

    def _publish(self, ev, conns=True):
        with self._lock:
            if self._pending.get(conns) is ev:
                del self._pending[conns]        # later requests need a later build
        snap = self.build(conns)
        with self._lock:
            self._latest[conns] = snap
        if ev is not None:
            ev.set()

    def build(self, with_conns=True):
        """Reactor thread: a Snapshot of the server now."""
        srv = self.server
        conns = []
        out_msgs = srv._closed_out_msgs
        out_bytes = srv._closed_out_bytes
        if with_conns:
            for cid in sorted(srv.clients):
                c = srv.clients[cid]
                out_msgs += c.out_msgs
                out_bytes += c.out_bytes
                conns.append(conn_record(c))
        else:
            for c in srv.clients.values():
                out_msgs += c.out_msgs
                out_bytes += c.out_bytes
        routes = []
        for rid in sorted(srv.routes):
            r = srv.routes[rid]
            out_msgs += r.out_msgs
            out_bytes += r.out_bytes
            routes.append(route_record(r))
        leafs = []                  # [leaf]
        if srv.leafnodes is not None:
            for lid in sorted(srv.leaf_conns):
                c = srv.leaf_conns[lid]
                out_msgs += c.out_msgs
                out_bytes += c.out_bytes
                leafs.append(srv.leafnodes.record(c))
        stats = Stats(
            connections=len(srv.clients), total_connections=srv.total_connections,
            routes=len(srv.routes), remotes=len(srv.routes),
            in_msgs=srv.in_msgs, out_msgs=out_msgs, in_bytes=srv.in_bytes,
            out_bytes=out_bytes, slow_consumers=srv.slow_consumers,
            stalled_clients=srv.stalls,
            subscriptions=sum([a.sublist.count for a in srv.accounts.all()]),
            leafnodes=len(srv.leaf_conns))
        return Snapshot(
            now=time.time(), start=srv.start_time, config_load_time=srv.config_load_time,
            server=server_info(srv), stats=stats, sublist=SublistStats(**srv.sublist.stats()),
            connections=tuple(conns),
            closed_connections=self.closed.records() if with_conns else (),
            routes=tuple(routes), leafs=tuple(leafs),
            accounts=tuple([account_record(a) for a in srv.accounts.all()]),
            system_account=getattr(srv.opts, "system_account", "") or "$SYS",
            jetstream=srv.jetstream.monitor_info() if srv.jetstream is not None else None)


def account_record(acc):
    """One account as a record (imports.py's objects flattened)."""
    exports = tuple([(e.subject, e.kind, e.response_type if e.kind == "service" else "",
                      tuple(e.accounts or ())) for e in acc.exports])
    imports = tuple([(im.subject, im.exporter.name, im.to, im.local, "stream", False)
                     for im in acc.stream_imports]
                    + [(si.subject, si.exporter.name, si.to, si.to, "service", si.share)
                       for si in acc.service_imports])
    return AccountRecord(
        name=acc.name, update_time=acc.update_time, client_connections=len(acc.clients),
        subscriptions=acc.sublist.count, exports=exports, imports=imports,
        sublist=SublistStats(**acc.sublist.stats()))


def server_info(srv):
    """Identity and the options in force (srv.opts is replaced on reload)."""
    o = srv.opts
    cl = srv.cluster
    if cl is None:
        cluster = ClusterInfo(host=o.cluster_host)
    else:
        cluster = ClusterInfo(
            name=cl.name, host=o.cluster_host or "0.0.0.0", port=cl.port, urls=tuple(o.routes),
            auth_timeout=o.cluster_auth_timeout, tls_timeout=o.cluster_tls_timeout,
            tls_required=bool(o.cluster_tls), tls_verify=bool(o.cluster_tls_verify))
    mon = srv.monitor
    return ServerInfo(
        server_id=srv.server_id, server_name=srv.server_name, version=VERSION,
        proto=1, go="python" + platform.python_version(), host=o.host,
        port=getattr(srv, "port", o.port), auth_required=srv.client_auth.required,
        tls_required=bool(o.tls), tls_verify=bool(o.tls_verify),
        max_connections=o.max_connections, ping_interval=o.ping_interval,
        ping_max=o.ping_max, http_host=o.http_host or o.host,
        http_port=mon.http_port if mon else o.http_port,
        https_port=mon.https_port if mon else o.https_port,
        auth_timeout=srv.client_auth.timeout, max_control_line=srv.max_control_line,
        max_payload=srv.max_payload, max_pending=srv.max_pending,
        tls_timeout=o.tls_timeout, write_deadline=o.write_deadline,
        max_subscriptions=o.max_subscriptions, cluster=cluster,
        connect_urls=tuple(cl.connect_urls()) if cl is not None else (),
        leaf=srv.leafnodes.varz_block() if srv.leafnodes is not None else None,
        websocket=srv.websocket.varz() if getattr(srv, "websocket", None) else None)
