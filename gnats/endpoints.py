"""The monitoring endpoints as pure functions: a snapshot (gnats/snapshot.py)
and the query in, the JSON-ready dict out, formatted as nats-server 2.9
does it: the same field names, Go's JSON layout (two-space indent, integral
floats without ".0", `<>&` escaped), RFC 3339 times with the local offset,
Go duration strings; /metrics in Prometheus' text format.

Everything a builder shows comes from the snapshot, options included, so a
reload shows at once and the builders are tested without sockets. The HTTP
side (threads, limits, TLS) is gnats/monitor.py.
"""

import json
import re
import time
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

from .jetstream.jsz import build_jsz as jsz, varz_section as js_varz
from .procstats import cpu_count, process_rss, usable_cpus
from .snapshot import as_snapshot
from .sublist import subject_matches

DEFAULT_CONNZ_LIMIT = 1024
DEFAULT_SUBSZ_LIMIT = 1024


class QueryError(ValueError):
    """A bad query value: answered with 400 and a JSON error."""


# ---------------------------------------------------------------------------
# Go-compatible formatting

_ZERO_TIME = "0001-01-01T00:00:00Z"


def go_time(ts):
    """Epoch seconds -> RFC 3339 with fractional seconds (trailing zeros
    trimmed) in local time, `Z` for a zero offset: Go's time.MarshalJSON.
    Floats carry about a microsecond of precision, so that is what we show."""
    if not ts:
        return _ZERO_TIME
    us = int(round(ts * 1e6))
    secs, us = divmod(us, 1000000)
    dt = datetime.fromtimestamp(secs).astimezone()
    s = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if us:
        s += "." + ("%06d" % us).rstrip("0")
    off = int(dt.utcoffset().total_seconds()) // 60
    if off == 0:
        return s + "Z"
    sign = "+" if off > 0 else "-"
    return s + "%s%02d:%02d" % (sign, abs(off) // 60, abs(off) % 60)


def _fraction(value, unit):
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    return "%d.%s" % (whole, ("%0*d" % (len(str(unit)) - 1, frac)).rstrip("0"))


def go_duration_ns(ns):
    """Go's time.Duration.String: 0s, 512ns, 1.5µs, 1.234ms, 2m0s, 1h2m3.5s."""
    ns = int(ns)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1000:
        return "%s%dns" % (sign, u)
    if u < 1000000:
        return sign + _fraction(u, 1000) + "\u00b5s"
    if u < 1000000000:
        return sign + _fraction(u, 1000000) + "ms"
    secs, frac = divmod(u, 1000000000)
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    out = sign
    if h:
        out += "%dh%dm" % (h, m)
    elif m:
        out += "%dm" % m
    return out + _fraction(s * 1000000000 + frac, 1000000000) + "s"


def go_rtt(seconds):
    """RTT as nats-server shows it: µs precision below a millisecond."""
    ns = int(round((seconds or 0) * 1e9))
    if 1000 < ns < 1000000:
        ns -= ns % 1000
    return go_duration_ns(ns)


def go_uptime(seconds):
    """nats-server's uptime format: whole seconds, with days and years:
    4s, 3m4s, 2h3m4s, 1d2h3m4s, 1y2d3h4m5s."""
    t = max(0, int(seconds))
    mins, hrs, days = t // 60, t // 3600, t // 86400
    yrs = days // 365
    if yrs:
        return "%dy%dd%dh%dm%ds" % (yrs, days % 365, hrs % 24, mins % 60, t % 60)
    if days:
        return "%dd%dh%dm%ds" % (days, hrs % 24, mins % 60, t % 60)
    if hrs:
        return "%dh%dm%ds" % (hrs, mins % 60, t % 60)
    if mins:
        return "%dm%ds" % (mins, t % 60)
    return "%ds" % t


def _go_numbers(obj):
    """Go prints integral float64s without a fraction (0, 2, 1): match it."""
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            return 0
        if obj.is_integer() and abs(obj) < 1e21:
            return int(obj)
        return obj
    if isinstance(obj, dict):
        return {k: _go_numbers(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_go_numbers(v) for v in obj]
    return obj


def to_json(obj, indent=True):
    """JSON bytes laid out like Go's json.MarshalIndent(v, "", "  ").
    `<`, `>` and `&` only ever appear inside strings, so replacing them with
    Go's \\u escapes is safe, and keeps a subject like `foo.>` from ever
    being read as markup by a browser."""
    if indent:
        text = json.dumps(_go_numbers(obj), indent=2, ensure_ascii=False)
    else:
        text = json.dumps(_go_numbers(obj), separators=(",", ":"), ensure_ascii=False)
    text = (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return text.encode("utf-8", "replace")


# ---------------------------------------------------------------------------
# Query parsing

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_CALLBACK_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*)*\Z")
MAX_CALLBACK_LEN = 128
_DIGITS_RE = re.compile(r"[0-9]+\Z")       # ASCII only: str.isdigit() takes "١" too


def parse_query(query):
    """First value of each parameter, blanks kept (Go's Query().Get)."""
    out = {}
    for k, v in parse_qs(query, keep_blank_values=True).items():
        out[k] = v[0]
    return out


def query_bool(q, name, allow_detail=False):
    """Go's strconv.ParseBool; empty or absent is False. For `subs`,
    `detail` asks for the detailed list (returned as the string)."""
    v = q.get(name, "")
    if v == "" or v in _FALSE:
        return False
    if v in _TRUE:
        return True
    if allow_detail and v == "detail":
        return "detail"
    raise QueryError("invalid value for '%s': expected a boolean (1, 0, true, false%s)"
                     % (name, ", detail" if allow_detail else ""))


def query_int(q, name, default):
    """A non-negative integer; absent or empty means `default`."""
    v = q.get(name, "")
    if v == "":
        return default
    if not _DIGITS_RE.match(v) or len(v) > 18:
        raise QueryError("invalid value for '%s': expected a non-negative integer" % name)
    return int(v)


def jsonp_callback(q):
    """The callback name, or "" for plain JSON. Never echoed when invalid."""
    cb = q.get("callback", "")
    if cb and (len(cb) > MAX_CALLBACK_LEN or not _CALLBACK_RE.match(cb)):
        raise QueryError("invalid callback: expected a dotted path of JavaScript identifiers")
    return cb


# ---------------------------------------------------------------------------
# Endpoint builders: pure functions of (snapshot, query). A snapshot is a
# snapshot.Snapshot; its plain-data form (dicts) is converted first.

def _host_port(url):
    """nats://user:pw@host:port -> host:port (varz cluster.urls, as in Go)."""
    u = urlsplit(url if "://" in url else "nats://" + url)
    host = u.hostname or ""
    if ":" in host:
        host = "[%s]" % host
    try:
        port = u.port
    except ValueError:
        port = None
    return "%s:%d" % (host, port) if port else host


def _cluster_varz(cluster):
    """Go's ClusterOptsVarz: every field omitted when empty, so no cluster
    prints as {}."""
    out = {}
    if not cluster.port:
        return out
    if cluster.name:
        out["name"] = cluster.name
    if cluster.host:
        out["addr"] = cluster.host
    out["cluster_port"] = cluster.port
    out["auth_timeout"] = float(cluster.auth_timeout or 2.0)
    urls = [_host_port(u) for u in cluster.urls or ()]
    if urls:
        out["urls"] = urls
    if cluster.tls_timeout:
        out["tls_timeout"] = float(cluster.tls_timeout)
    if cluster.tls_required:
        out["tls_required"] = True
    if cluster.tls_verify:
        out["tls_verify"] = True
    return out


def build_varz(snap, req_stats, proc):
    """/varz: nats-server 2.9's fields plus the seed README's older ones
    (ssl_required, max_pending_size, cluster_port)."""
    snap = as_snapshot(snap)
    sv = snap.server
    st = snap.stats
    now = snap.now or time.time()
    start = snap.start or now
    cluster = sv.cluster
    v = {
        "server_id": sv.server_id,
        "server_name": sv.server_name,
        "version": sv.version,
        "proto": sv.proto,
        "go": sv.go,
        "host": sv.host,
        "port": sv.port,
        "auth_required": bool(sv.auth_required),
        "ssl_required": bool(sv.tls_required),
        "tls_required": bool(sv.tls_required),
        "tls_verify": bool(sv.tls_verify),
    }
    if sv.connect_urls:
        v["connect_urls"] = list(sv.connect_urls)
    v["max_connections"] = sv.max_connections
    if sv.max_subscriptions:
        v["max_subscriptions"] = sv.max_subscriptions
    v.update({
        "ping_interval": int(round(sv.ping_interval * 1e9)),
        "ping_max": sv.ping_max,
        "http_host": sv.http_host,
        "http_port": sv.http_port,
        "http_base_path": "",
        "https_port": sv.https_port,
        "auth_timeout": float(sv.auth_timeout),
        "max_control_line": sv.max_control_line,
        "max_payload": sv.max_payload,
        "max_pending": sv.max_pending,
        "max_pending_size": sv.max_pending,
        "cluster": _cluster_varz(cluster),
        "cluster_port": cluster.port or 0,
        "gateway": {},
        "leaf": dict(sv.leaf) if sv.leaf else {},     # [leaf]
        "mqtt": {},
        "websocket": dict(sv.websocket or {}),
        "jetstream": js_varz(snap.jetstream),
        "tls_timeout": float(sv.tls_timeout),
        "write_deadline": int(round(sv.write_deadline * 1e9)),
        "start": go_time(start),
        "now": go_time(now),
        "uptime": go_uptime(now - start),
        "mem": process_rss(),
        "cores": cpu_count(),
        "gomaxprocs": usable_cpus(),
        "cpu": float(proc.cpu()),
        "connections": st.connections,
        "total_connections": st.total_connections,
        "routes": st.routes,
        "remotes": st.remotes,
        "leafnodes": st.leafnodes,                      # [leaf]
        "in_msgs": st.in_msgs,
        "out_msgs": st.out_msgs,
        "in_bytes": st.in_bytes,
        "out_bytes": st.out_bytes,
        "slow_consumers": st.slow_consumers,
        "stalled_clients": st.stalled_clients,     # producer stalls (nats-server 2.11+)
        "subscriptions": st.subscriptions,
        "http_req_stats": dict(sorted(req_stats.items())),
        "config_load_time": go_time(snap.config_load_time or start),
    })
    return v


def build_jsz(snap, q):
    """/jsz (?accounts, streams, consumers, config, acc): gnats/jetstream/jsz.py."""
    snap = as_snapshot(snap)
    return jsz(snap.jetstream, snap.server.server_id, snap.now or time.time(), q,
               lambda name: query_bool(q, name))


def _tls_version(v):
    # Python says "TLSv1.3", nats-server says "1.3".
    return v[4:] if v.startswith("TLSv") else v


def _cipher_name(name):
    try:
        from .tls import cipher_name
    except ImportError:
        return name
    return cipher_name(name)


def _sub_details(entry, cid):
    detail = entry.subs_detail
    if detail is None:
        return [{"subject": s, "cid": cid} for s in entry.subs or ()]
    out = []
    for subject, sid, queue, max_msgs in zip(entry.subs, detail.sids, detail.queues, detail.maxes):
        d = {"subject": subject, "sid": sid, "cid": cid}
        if queue is not None:
            d["qgroup"] = queue
        if max_msgs:
            d["max"] = max_msgs
        out.append(d)
    return out


def _conn_info(c, now, subs, auth):
    cid = c.cid
    ci = {
        "cid": cid,
        "kind": "Client",
        "type": c.conn_type,
        "ip": c.ip,
        "port": c.port,
        "start": go_time(c.start),
        "last_activity": go_time(c.last_activity),
    }
    if c.stop:
        ci["stop"] = go_time(c.stop)
    if c.reason:
        ci["reason"] = c.reason
    end = c.stop or now
    ci.update({
        "rtt": go_rtt(c.rtt),
        "uptime": go_uptime(end - (c.start or end)),
        "idle": go_uptime(end - (c.last_activity or end)),
        "pending_bytes": c.pending_bytes,
        "in_msgs": c.in_msgs,
        "out_msgs": c.out_msgs,
        "in_bytes": c.in_bytes,
        "out_bytes": c.out_bytes,
    })
    if c.stalls:
        ci["stalls"] = c.stalls     # as nats-server 2.11+, only when some
    ci["subscriptions"] = c.subscriptions
    if c.name:
        ci["name"] = c.name
    if c.lang:
        ci["lang"] = c.lang
    if c.version:
        ci["version"] = c.version
    if c.tls_version:
        ci["tls_version"] = _tls_version(c.tls_version)
        if c.tls_cipher_suite:
            ci["tls_cipher_suite"] = _cipher_name(c.tls_cipher_suite)
    if auth and c.user:
        ci["authorized_user"] = c.user
        if c.account:
            ci["account"] = c.account
    if auth and c.account:
        ci["name_tag"] = c.account
    if subs == "detail":
        ci["subscriptions_list_detail"] = _sub_details(c, cid)
    elif subs:
        ci["subscriptions_list"] = list(c.subs or ())
    return ci


# sort name -> (key(entry, now), descending). cid/start/uptime ascend as in Go.
_SORTS = {
    "cid": (lambda c, now: c.cid, False),
    "start": (lambda c, now: c.cid, False),
    "subs": (lambda c, now: c.subscriptions, True),
    "pending": (lambda c, now: c.pending_bytes, True),
    "msgs_to": (lambda c, now: c.out_msgs, True),
    "msgs_from": (lambda c, now: c.in_msgs, True),
    "bytes_to": (lambda c, now: c.out_bytes, True),
    "bytes_from": (lambda c, now: c.in_bytes, True),
    "last": (lambda c, now: c.last_activity, True),
    "idle": (lambda c, now: (c.stop or now) - (c.last_activity or now), True),
    "uptime": (lambda c, now: (c.stop or now) - (c.start or now), False),
    "stop": (lambda c, now: c.stop, True),
    "reason": (lambda c, now: c.reason, False),
}
_CLOSED_ONLY_SORTS = ("stop", "reason")
_STATES = {"open": "open", "closed": "closed", "any": "all", "all": "all"}


def build_connz(snap, q):
    """/connz: paging (offset, limit), sort, subs, auth, cid, state, acc."""
    sort = q.get("sort", "") or "cid"
    if sort not in _SORTS:
        raise QueryError("invalid sorting option: expected one of %s" % ", ".join(_SORTS))
    auth = query_bool(q, "auth")
    subs = query_bool(q, "subs", allow_detail=True)
    offset = query_int(q, "offset", 0)
    limit = query_int(q, "limit", DEFAULT_CONNZ_LIMIT) or DEFAULT_CONNZ_LIMIT
    cid = query_int(q, "cid", 0)
    state = q.get("state", "") or "open"
    if state not in _STATES:
        raise QueryError("invalid state: expected open, closed or any")
    state = _STATES[state]
    if sort in _CLOSED_ONLY_SORTS and state == "open":
        raise QueryError("sort by %s only valid on closed connections" % sort)

    snap = as_snapshot(snap)
    now = snap.now or time.time()
    acc = q.get("acc", "")
    if acc and not any(a.name == acc for a in snap.accounts):
        # nats-server's answer for an account it does not have
        return {"server_id": "", "now": go_time(now), "num_connections": 0, "total": 0,
                "offset": 0, "limit": limit, "connections": None}
    conns = []
    if state in ("open", "all"):
        conns.extend(snap.connections)
    if state in ("closed", "all"):
        conns.extend(snap.closed_connections)
    if acc:
        conns = [c for c in conns if c.account == acc]
    total = len(conns)
    if cid:
        # One connection by id: Go reports it as a page of one.
        conns = [c for c in conns if c.cid == cid]
        offset, limit = 0, 1
    else:
        key, descending = _SORTS[sort]
        # Stable sort on a list in cid order: ties stay in cid order.
        conns = sorted(conns, key=lambda c: key(c, now), reverse=descending)
        conns = conns[offset:offset + limit]
    page = [_conn_info(c, now, subs, auth) for c in conns]
    return {
        "server_id": snap.server.server_id,
        "now": go_time(now),
        "num_connections": len(page),
        "total": total,
        "offset": offset,
        "limit": limit,
        "connections": page,
    }


def _route_info(r, now, subs):
    ri = {
        "rid": r.rid,
        "remote_id": r.remote_id,
        "did_solicit": bool(r.did_solicit),
        "is_configured": bool(r.is_configured),
        "ip": r.ip,
        "port": r.port,
        "start": go_time(r.start),
        "last_activity": go_time(r.last_activity),
        "rtt": go_rtt(r.rtt),
        "uptime": go_uptime(now - (r.start or now)),
        "idle": go_uptime(now - (r.last_activity or now)),
        "pending_size": r.pending_size,
        "in_msgs": r.in_msgs,
        "out_msgs": r.out_msgs,
        "in_bytes": r.in_bytes,
        "out_bytes": r.out_bytes,
        "subscriptions": r.subscriptions,
    }
    if subs == "detail":
        ri["subscriptions_list_detail"] = [{"subject": s} for s in r.subs or ()]
    elif subs:
        ri["subscriptions_list"] = list(r.subs or ())
    return ri


def build_routez(snap, q):
    subs = query_bool(q, "subs", allow_detail=True)
    snap = as_snapshot(snap)
    now = snap.now or time.time()
    routes = [_route_info(r, now, subs) for r in snap.routes]
    return {
        "server_id": snap.server.server_id,
        "now": go_time(now),
        "num_routes": len(routes),
        "routes": routes,
    }


def build_subsz(snap, q):
    """/subsz: the subject index figures; subs=1 adds a paged list of
    subscriptions (optionally only those matching test=SUBJECT)."""
    subs = query_bool(q, "subs")
    offset = query_int(q, "offset", 0)
    limit = query_int(q, "limit", DEFAULT_SUBSZ_LIMIT) or DEFAULT_SUBSZ_LIMIT
    test = q.get("test", "")
    if test and (any(t in ("", "*", ">") for t in test.split(".")) or " " in test):
        raise QueryError("invalid test subject: expected a literal subject")
    snap = as_snapshot(snap)
    stats = snap.sublist._asdict()
    if not (subs or test):
        return stats
    found = []
    for c in snap.connections:
        for s in c.subs or ():
            if not test or subject_matches(s, test):
                found.append({"account": "$G", "subject": s, "cid": c.cid})
    out = {"server_id": snap.server.server_id,
           "now": go_time(snap.now or time.time())}
    out.update(stats)
    out.update({"total": len(found), "offset": offset, "limit": limit})
    if subs:
        out["subscriptions_list"] = found[offset:offset + limit]
    return out


# ---------------------------------------------------------------------------
# Prometheus text format

def _metric_line(lines, name, kind, help_text, value, labels=None):
    lines.append("# HELP %s %s" % (name, help_text))
    lines.append("# TYPE %s %s" % (name, kind))
    if labels is None:
        lines.append("%s %s" % (name, _prom_value(value)))
    else:
        for lab, val in labels:
            lines.append("%s{%s} %s" % (name, lab, _prom_value(val)))


def _prom_value(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(v) if not v.is_integer() else str(int(v))
    return str(int(v))


def _prom_label(v):
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_COUNTERS = (
    ("in_msgs", "Messages received from clients and routes."),
    ("out_msgs", "Messages sent to clients and routes."),
    ("in_bytes", "Payload bytes received from clients and routes."),
    ("out_bytes", "Payload bytes sent to clients and routes."),
    ("total_connections", "Client connections accepted since start."),
    ("slow_consumers", "Connections closed as slow consumers since start."),
)
_GAUGES = (
    ("connections", "Client connections open now."),
    ("subscriptions", "Subscriptions in the subject index now."),
    ("routes", "Routes open now."),
    ("remotes", "Remote servers connected now."),
    ("mem", "Resident memory of the server process in bytes."),
    ("cpu", "CPU use of the server process in percent of one core."),
    ("cores", "CPUs on this host."),
    ("max_connections", "Configured connection limit."),
    ("max_payload", "Configured maximum payload in bytes."),
)
_SUBSZ_METRICS = (
    ("num_subscriptions", "gauge", "Subscriptions in the subject index."),
    ("num_cache", "gauge", "Entries in the match cache."),
    ("num_inserts", "counter", "Subscriptions inserted since start."),
    ("num_removes", "counter", "Subscriptions removed since start."),
    ("num_matches", "counter", "Subject matches performed since start."),
    ("cache_hit_rate", "gauge", "Share of matches answered by the cache."),
    ("max_fanout", "gauge", "Largest number of subscribers one match returned."),
    ("avg_fanout", "gauge", "Average number of subscribers per match."),
)


def build_metrics(varz, subsz, uptime_seconds, start_seconds):
    """Prometheus exposition text (version 0.0.4) from built varz/subsz."""
    lines = []
    _metric_line(lines, "gnatsd_varz_info", "gauge", "Server identity (always 1).", 1,
                 [('server_id="%s",server_name="%s",version="%s",go="%s"'
                   % tuple(_prom_label(varz[k]) for k in
                           ("server_id", "server_name", "version", "go")), 1)])
    for field, text in _COUNTERS:
        _metric_line(lines, "gnatsd_varz_" + field, "counter", text, varz[field])
    for field, text in _GAUGES:
        _metric_line(lines, "gnatsd_varz_" + field, "gauge", text, varz[field])
    _metric_line(lines, "gnatsd_varz_uptime_seconds", "gauge", "Seconds since the server started.",
                 float(uptime_seconds))
    _metric_line(lines, "gnatsd_varz_start_time_seconds", "gauge",
                 "Server start time in seconds since the epoch.", float(start_seconds))
    _metric_line(lines, "gnatsd_varz_http_req_stats", "counter",
                 "Monitoring requests served, by endpoint.", 0,
                 [('path="%s"' % _prom_label(p), n) for p, n in varz["http_req_stats"].items()])
    for field, kind, text in _SUBSZ_METRICS:
        _metric_line(lines, "gnatsd_subsz_" + field, kind, text, float(subsz[field]))
    return ("\n".join(lines) + "\n").encode("utf-8")
