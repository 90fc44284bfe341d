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

from . import VERSION
from .procstats import cpu_count, process_rss, usable_cpus
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
# Endpoint builders: pure functions of (snapshot, query)

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


def _cluster_varz(cluster, opts):
    """Go's ClusterOptsVarz: every field omitted when empty, so no cluster
    prints as {}."""
    out = {}
    if not cluster or not cluster.get("port"):
        return out
    if cluster.get("name"):
        out["name"] = cluster["name"]
    if cluster.get("host"):
        out["addr"] = cluster["host"]
    out["cluster_port"] = cluster["port"]
    auth_timeout = cluster.get("auth_timeout") or getattr(opts, "cluster_auth_timeout", 0) or 2.0
    out["auth_timeout"] = float(auth_timeout)
    urls = [_host_port(u) for u in cluster.get("urls") or []]
    if urls:
        out["urls"] = urls
    tls_timeout = cluster.get("tls_timeout") or getattr(opts, "cluster_tls_timeout", 0)
    if tls_timeout:
        out["tls_timeout"] = float(tls_timeout)
    if cluster.get("tls_required", getattr(opts, "cluster_tls", False)):
        out["tls_required"] = True
    if cluster.get("tls_verify", getattr(opts, "cluster_tls_verify", False)):
        out["tls_verify"] = True
    return out


def build_varz(snap, opts, req_stats, proc):
    """/varz: nats-server 2.9's fields plus the seed README's older ones
    (ssl_required, max_pending_size, cluster_port)."""
    sv = snap.get("server", {})
    st = snap.get("stats", {})
    now = snap.get("now") or time.time()
    start = snap.get("start") or now
    cluster = sv.get("cluster") or {}
    v = {
        "server_id": sv.get("server_id", ""),
        "server_name": sv.get("server_name", ""),
        "version": sv.get("version", VERSION),
        "proto": sv.get("proto", 1),
        "go": sv.get("go", ""),
        "host": sv.get("host", ""),
        "port": sv.get("port", 0),
        "auth_required": bool(sv.get("auth_required")),
        "ssl_required": bool(sv.get("tls_required")),
        "tls_required": bool(sv.get("tls_required")),
        "tls_verify": bool(sv.get("tls_verify")),
    }
    if sv.get("connect_urls"):
        v["connect_urls"] = list(sv["connect_urls"])
    v["max_connections"] = sv.get("max_connections", 0)
    if sv.get("max_subscriptions"):
        v["max_subscriptions"] = sv["max_subscriptions"]
    v.update({
        "ping_interval": int(round(sv.get("ping_interval", 0) * 1e9)),
        "ping_max": sv.get("ping_max", 0),
        "http_host": sv.get("http_host", ""),
        "http_port": sv.get("http_port", 0),
        "http_base_path": "",
        "https_port": sv.get("https_port", 0),
        "auth_timeout": float(sv.get("auth_timeout", 0)),
        "max_control_line": sv.get("max_control_line", 0),
        "max_payload": sv.get("max_payload", 0),
        "max_pending": sv.get("max_pending", 0),
        "max_pending_size": sv.get("max_pending", 0),
        "cluster": _cluster_varz(cluster, opts),
        "cluster_port": cluster.get("port", 0) or 0,
        "gateway": {},
        "leaf": {},
        "mqtt": {},
        "websocket": {},
        "jetstream": {},
        "tls_timeout": float(sv.get("tls_timeout", 0)),
        "write_deadline": int(round(sv.get("write_deadline", 0) * 1e9)),
        "start": go_time(start),
        "now": go_time(now),
        "uptime": go_uptime(now - start),
        "mem": process_rss(),
        "cores": cpu_count(),
        "gomaxprocs": usable_cpus(),
        "cpu": float(proc.cpu()),
        "connections": st.get("connections", 0),
        "total_connections": st.get("total_connections", 0),
        "routes": st.get("routes", 0),
        "remotes": st.get("remotes", 0),
        "leafnodes": 0,
        "in_msgs": st.get("in_msgs", 0),
        "out_msgs": st.get("out_msgs", 0),
        "in_bytes": st.get("in_bytes", 0),
        "out_bytes": st.get("out_bytes", 0),
        "slow_consumers": st.get("slow_consumers", 0),
        "subscriptions": st.get("subscriptions", 0),
        "http_req_stats": dict(sorted(req_stats.items())),
        "config_load_time": go_time(snap.get("config_load_time") or start),
    })
    return v


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
    if entry.get("subs_detail") is not None:
        return [dict(d) for d in entry["subs_detail"]]
    return [{"subject": s, "cid": cid} for s in entry.get("subs") or []]


def _conn_info(c, now, subs, auth):
    cid = c.get("cid", 0)
    ci = {
        "cid": cid,
        "kind": "Client",
        "type": "nats",
        "ip": c.get("ip", ""),
        "port": c.get("port", 0),
        "start": go_time(c.get("start")),
        "last_activity": go_time(c.get("last_activity")),
    }
    if c.get("stop"):
        ci["stop"] = go_time(c["stop"])
    if c.get("reason"):
        ci["reason"] = c["reason"]
    end = c.get("stop") or now
    ci.update({
        "rtt": go_rtt(c.get("rtt", 0)),
        "uptime": go_uptime(end - (c.get("start") or end)),
        "idle": go_uptime(end - (c.get("last_activity") or end)),
        "pending_bytes": c.get("pending_bytes", 0),
        "in_msgs": c.get("in_msgs", 0),
        "out_msgs": c.get("out_msgs", 0),
        "in_bytes": c.get("in_bytes", 0),
        "out_bytes": c.get("out_bytes", 0),
        "subscriptions": c.get("subscriptions", 0),
    })
    for key in ("name", "lang", "version"):
        if c.get(key):
            ci[key] = c[key]
    if c.get("tls_version"):
        ci["tls_version"] = _tls_version(c["tls_version"])
        if c.get("tls_cipher_suite"):
            ci["tls_cipher_suite"] = _cipher_name(c["tls_cipher_suite"])
    if auth and c.get("user"):
        ci["authorized_user"] = c["user"]
    if subs == "detail":
        ci["subscriptions_list_detail"] = _sub_details(c, cid)
    elif subs:
        ci["subscriptions_list"] = list(c.get("subs") or [])
    return ci


# sort name -> (key(entry, now), descending). cid/start/uptime ascend as in Go.
_SORTS = {
    "cid": (lambda c, now: c.get("cid", 0), False),
    "start": (lambda c, now: c.get("cid", 0), False),
    "subs": (lambda c, now: c.get("subscriptions", 0), True),
    "pending": (lambda c, now: c.get("pending_bytes", 0), True),
    "msgs_to": (lambda c, now: c.get("out_msgs", 0), True),
    "msgs_from": (lambda c, now: c.get("in_msgs", 0), True),
    "bytes_to": (lambda c, now: c.get("out_bytes", 0), True),
    "bytes_from": (lambda c, now: c.get("in_bytes", 0), True),
    "last": (lambda c, now: c.get("last_activity", 0), True),
    "idle": (lambda c, now: (c.get("stop") or now) - (c.get("last_activity") or now), True),
    "uptime": (lambda c, now: (c.get("stop") or now) - (c.get("start") or now), False),
    "stop": (lambda c, now: c.get("stop", 0), True),
    "reason": (lambda c, now: c.get("reason", ""), False),
}
_CLOSED_ONLY_SORTS = ("stop", "reason")
_STATES = {"open": "open", "closed": "closed", "any": "all", "all": "all"}


def build_connz(snap, q):
    """/connz: paging (offset, limit), sort, subs, auth, cid, state."""
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

    now = snap.get("now") or time.time()
    conns = []
    if state in ("open", "all"):
        conns.extend(snap.get("connections") or [])
    if state in ("closed", "all"):
        conns.extend(snap.get("closed_connections") or [])
    total = len(conns)
    if cid:
        # One connection by id: Go reports it as a page of one.
        conns = [c for c in conns if c.get("cid") == cid]
        offset, limit = 0, 1
    else:
        key, descending = _SORTS[sort]
        # Stable sort on a list in cid order: ties stay in cid order.
        conns = sorted(conns, key=lambda c: key(c, now), reverse=descending)
        conns = conns[offset:offset + limit]
    page = [_conn_info(c, now, subs, auth) for c in conns]
    return {
        "server_id": snap.get("server", {}).get("server_id", ""),
        "now": go_time(now),
        "num_connections": len(page),
        "total": total,
        "offset": offset,
        "limit": limit,
        "connections": page,
    }


def _route_info(r, now, subs):
    rid = r.get("rid", 0)
    ri = {
        "rid": rid,
        "remote_id": r.get("remote_id", ""),
        "did_solicit": bool(r.get("did_solicit")),
        "is_configured": bool(r.get("is_configured")),
        "ip": r.get("ip", ""),
        "port": r.get("port", 0),
        "start": go_time(r.get("start")),
        "last_activity": go_time(r.get("last_activity")),
        "rtt": go_rtt(r.get("rtt", 0)),
        "uptime": go_uptime(now - (r.get("start") or now)),
        "idle": go_uptime(now - (r.get("last_activity") or now)),
        "pending_size": r.get("pending_size", 0),
        "in_msgs": r.get("in_msgs", 0),
        "out_msgs": r.get("out_msgs", 0),
        "in_bytes": r.get("in_bytes", 0),
        "out_bytes": r.get("out_bytes", 0),
        "subscriptions": r.get("subscriptions", 0),
    }
    if subs == "detail":
        ri["subscriptions_list_detail"] = [{"subject": s} for s in r.get("subs") or []]
    elif subs:
        ri["subscriptions_list"] = list(r.get("subs") or [])
    return ri


def build_routez(snap, q):
    subs = query_bool(q, "subs", allow_detail=True)
    now = snap.get("now") or time.time()
    routes = [_route_info(r, now, subs) for r in snap.get("routes") or []]
    return {
        "server_id": snap.get("server", {}).get("server_id", ""),
        "now": go_time(now),
        "num_routes": len(routes),
        "routes": routes,
    }


_SUBLIST_FIELDS = (("num_subscriptions", 0), ("num_cache", 0), ("num_inserts", 0),
                   ("num_removes", 0), ("num_matches", 0), ("cache_hit_rate", 0.0),
                   ("max_fanout", 0), ("avg_fanout", 0.0))


def build_subsz(snap, q):
    """/subsz: the subject index figures; subs=1 adds a paged list of
    subscriptions (optionally only those matching test=SUBJECT)."""
    subs = query_bool(q, "subs")
    offset = query_int(q, "offset", 0)
    limit = query_int(q, "limit", DEFAULT_SUBSZ_LIMIT) or DEFAULT_SUBSZ_LIMIT
    test = q.get("test", "")
    if test and (any(t in ("", "*", ">") for t in test.split(".")) or " " in test):
        raise QueryError("invalid test subject: expected a literal subject")
    sl = snap.get("sublist", {})
    stats = {k: sl.get(k, d) for k, d in _SUBLIST_FIELDS}
    if not (subs or test):
        return stats
    found = []
    for c in snap.get("connections") or []:
        for s in c.get("subs") or []:
            if not test or subject_matches(s, test):
                found.append({"account": "$G", "subject": s, "cid": c.get("cid", 0)})
    out = {"server_id": snap.get("server", {}).get("server_id", ""),
           "now": go_time(snap.get("now") or time.time())}
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
