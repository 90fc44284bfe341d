"""Leaf connections on the monitor: the /leafz record of one leaf (built
on the reactor thread), the /leafz page and the /varz `leaf` block (pure
functions of a snapshot), in nats-server 2.15's field order (2.9.10 has
the same fields without id, name and is_spoke)."""

import time
from typing import NamedTuple, Tuple

from .endpoints import go_rtt, go_time, query_bool
from .snapshot import as_snapshot


class LeafRecord(NamedTuple):
    lid: int = 0
    name: str = ""
    is_spoke: bool = False
    account: str = ""
    ip: str = ""
    port: int = 0
    in_msgs: int = 0
    out_msgs: int = 0
    in_bytes: int = 0
    out_bytes: int = 0
    subscriptions: int = 0
    subs: Tuple[str, ...] = ()
    rtt: float = 0.0            # not measured (yet): shown as 0s


def leaf_record(c):
    """A registered leaf.Leaf as a record (reactor thread)."""
    return LeafRecord(
        lid=c.lid, name=c.remote_name, is_spoke=c.is_spoke, account=c.account.name,
        ip=c.ip, port=c.port, in_msgs=c.in_msgs, out_msgs=c.out_msgs,
        in_bytes=c.in_bytes, out_bytes=c.out_bytes, subscriptions=len(c.subs),
        subs=tuple([s.subject for s in c.subs.values()]))


def leaf_options_record(srv):
    """What /varz shows of the leafnodes block in force, or None."""
    mgr = srv.leafnodes
    if mgr is None or not mgr.port:
        return None
    o = mgr.opts
    out = {"host": o.host, "port": mgr.port, "auth_timeout": float(mgr.auth.timeout)}
    if o.tls is not None:
        out["tls_timeout"] = float(o.tls.timeout)
        out["tls_required"] = True
        out["tls_verify"] = bool(o.tls.verify)
    else:
        out["tls_timeout"] = 2.0
    return out


def build_leafz(snap, q):
    """/leafz (subs=1 adds subscriptions_list)."""
    subs = query_bool(q, "subs")
    snap = as_snapshot(snap)
    now = snap.now or time.time()
    leafs = []
    for r in snap.leafs:
        d = {"id": r.lid, "name": r.name, "is_spoke": bool(r.is_spoke), "account": r.account,
             "ip": r.ip, "port": r.port, "rtt": go_rtt(r.rtt),
             "in_msgs": r.in_msgs, "out_msgs": r.out_msgs,
             "in_bytes": r.in_bytes, "out_bytes": r.out_bytes,
             "subscriptions": r.subscriptions}
        if subs:
            d["subscriptions_list"] = list(r.subs)
        leafs.append(d)
    return {
        "server_id": snap.server.server_id,
        "now": go_time(now),
        "leafnodes": len(leafs),
        "leafs": leafs,
    }
