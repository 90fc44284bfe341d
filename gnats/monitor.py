"""The HTTP(S) monitoring endpoints: /varz, /connz, /routez, /subsz, /healthz,
/metrics and the dashboard at /.

Theory of operation
-------------------
The monitor runs in its own threads and never touches a live connection. For
every request it asks the server for a *snapshot* (plain dicts and lists the
reactor thread built and will not change again) and formats it the way
nats-server 2.9 does: the same field names, Go's JSON layout (two-space
indent, integral floats without ".0", `<>&` escaped), RFC 3339 times with
the local offset, Go duration strings. The builders (`build_varz`,
`build_connz`, ...) are pure functions of a snapshot and the query, so they
are tested without sockets.

Bounds (a monitoring port is often reachable by more than its owner):
- at most MAX_HTTP_CONNECTIONS connections at once. When all are taken, a
  new connection takes the place of the one that has waited longest for its
  request headers (slow or idle sockets never lock out a liveness probe);
  only when every connection is busy answering does the next one get a 503,
  closed at once from the accept thread without reading anything;
- a request's line and headers must arrive within HEADER_TIMEOUT of the
  connection opening (of the previous answer, on a keep-alive connection):
  a watchdog shuts down sockets that dribble a byte at a time (Go's
  ReadHeaderTimeout), and each socket read or write times out after IO_TIMEOUT;
- a connection lives at most CONN_LIFETIME: keep-alive connections are closed
  politely after half of it, and the watchdog shuts down any socket still
  open after all of it;
- request line and headers together are capped at MAX_HEADER_BYTES (Go's
  MaxHeaderBytes): more is a 431 and the connection is closed; http.server
  also caps each line (64 KiB) and the header count (100); request bodies are
  never read (only GET and HEAD are served);
- the TLS handshake of the HTTPS port runs in the connection's own thread,
  under the same timeout, so a silent TLS client cannot stall accept().

Differences from nats-server 2.9 that are deliberate: bad query values
(negative limit or offset too) are a 400 with a JSON body `{"error": ...}`;
a JSONP callback must be a dotted path of identifiers; only GET and HEAD are
allowed; every answer carries `Access-Control-Allow-Origin: *`; `/connz`
sort=idle puts the longest idle first (2.9 sorted by last activity minus
start); with subs=1 every entry has `subscriptions_list`, empty included.
"""

import errno
import http.client
import json
import os
import re
import socket
import socketserver
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from . import VERSION

MAX_HTTP_CONNECTIONS = 64
MAX_HEADER_BYTES = 1 << 20  # request line and headers of one request
HEADER_TIMEOUT = 5.0        # for them to arrive
LINGER_TIME = 1.0           # reading on after an error answer (see _linger)
IO_TIMEOUT = 5.0
CONN_LIFETIME = 30.0
STOP_JOIN_BUDGET = 2.0      # seconds stop() spends joining connection threads
CPU_WINDOW = 0.5            # min seconds between two CPU samples

DEFAULT_CONNZ_LIMIT = 1024
DEFAULT_SUBSZ_LIMIT = 1024

# Paths as counted in http_req_stats (/subscriptionsz counts as /subsz, as in Go).
ROOT, VARZ, CONNZ, ROUTEZ, SUBSZ, HEALTHZ, METRICS = (
    "/", "/varz", "/connz", "/routez", "/subsz", "/healthz", "/metrics")


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
# Process figures: memory and CPU

def process_rss():
    """Resident set size in bytes (VmRSS), 0 when unknown."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (ImportError, OSError):
        return 0


def _cpu_seconds():
    t = os.times()
    return t.user + t.system


class ProcStats:
    """CPU percent of this process between samples, like nats-server's
    periodic /proc/self/stat reading (100 = one core busy). A sample is
    taken at most every CPU_WINDOW seconds so back-to-back requests do not
    divide by a tiny interval."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last = (time.monotonic(), _cpu_seconds())
        self._pct = 0.0

    def cpu(self):
        with self._lock:
            now, used = time.monotonic(), _cpu_seconds()
            last_t, last_used = self._last
            if now - last_t >= CPU_WINDOW:
                self._pct = round(100.0 * (used - last_used) / (now - last_t), 1)
                self._last = (now, used)
            return self._pct


def cpu_count():
    return os.cpu_count() or 1


def usable_cpus():
    """Go's default GOMAXPROCS: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return cpu_count()


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


def subject_matches(pattern, subject):
    """Does subscription subject `pattern` (may hold * and >) match the
    literal `subject`?"""
    pt, st = pattern.split("."), subject.split(".")
    for i, tok in enumerate(pt):
        if tok == ">":
            return len(st) > i
        if i >= len(st) or (tok != "*" and tok != st[i]):
            return False
    return len(pt) == len(st)


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


# ---------------------------------------------------------------------------
# HTTP plumbing

JSON_TYPE = "application/json"
JSONP_TYPE = "application/javascript"
HTML_TYPE = "text/html; charset=utf-8"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _HeaderBudget:
    """The handler's input stream, counting the bytes a request's line and
    headers take: past MAX_HEADER_BYTES, http.server's header parser gets
    LineTooLong and answers 431."""

    def __init__(self, raw):
        self.raw = raw
        self.left = MAX_HEADER_BYTES

    def readline(self, limit=-1):
        want = self.left + 1 if limit is None or limit < 0 else min(limit, self.left + 1)
        line = self.raw.readline(want)
        self.left -= len(line)
        if self.left < 0:
            raise http.client.LineTooLong("request headers over %d bytes" % MAX_HEADER_BYTES)
        return line

    def __getattr__(self, name):
        return getattr(self.raw, name)


class _Handler(BaseHTTPRequestHandler):
    """One HTTP connection (possibly several keep-alive requests)."""

    protocol_version = "HTTP/1.1"
    # Unparseable request lines get a status line too (http.server would
    # answer them HTTP/0.9 style: a bare body).
    default_request_version = "HTTP/1.0"
    timeout = IO_TIMEOUT            # applied to the socket by StreamRequestHandler
    monitor = None                  # set on the per-Monitor subclass

    _ROUTES = {
        ROOT: "page_root", VARZ: "page_varz", CONNZ: "page_connz",
        ROUTEZ: "page_routez", SUBSZ: "page_subsz", "/subscriptionsz": "page_subsz",
        HEALTHZ: "page_healthz", METRICS: "page_metrics",
    }

    # -- request entry points ---------------------------------------------
    def setup(self):
        super().setup()
        self.rfile = _HeaderBudget(self.rfile)

    def handle_one_request(self):
        # A new request: a fresh header budget, and the header deadline runs.
        self.rfile.left = MAX_HEADER_BYTES
        self._waiting_since = self.server.set_waiting(self.connection, True)
        super().handle_one_request()

    def parse_request(self):
        ok = super().parse_request()
        self.server.set_waiting(self.connection, False)     # headers are in
        if ok and time.monotonic() - self._waiting_since > HEADER_TIMEOUT:
            # the watchdog shut the socket: the headers read are cut short
            self.close_connection = True
            return False
        return ok

    def do_GET(self):
        self._serve(head=False)

    def do_HEAD(self):
        self._serve(head=True)

    def __getattr__(self, name):
        # http.server looks up do_<METHOD>; every other method is a 405
        # (rather than http.server's 501) and the connection is closed, so
        # any request body is never read.
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self):
        self.close_connection = True
        self._send(405, to_json({"error": "method not allowed: use GET or HEAD"}),
                   JSON_TYPE, extra=(("Allow", "GET, HEAD"),))

    def _serve(self, head):
        if self.headers.get("Content-Length", "0") not in ("", "0") or \
                self.headers.get("Transfer-Encoding"):
            self.close_connection = True        # a body we will not read
        if time.monotonic() - self.server.conn_born(self.connection) > CONN_LIFETIME / 2:
            self.close_connection = True        # recycle long keep-alive connections
        # Split by hand: urlsplit would read "//varz" as a host name.
        path, _, query = self.path.partition("#")[0].partition("?")
        page = self._ROUTES.get(path)
        if page is None:
            self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        self.monitor.count_request(SUBSZ if page == "page_subsz" else path)
        try:
            getattr(self, page)(parse_query(query))
        except QueryError as e:
            self._send(400, to_json({"error": str(e)}), JSON_TYPE)
        except SnapshotUnavailable as e:
            self._send(503, to_json({"error": str(e)}), JSON_TYPE)
        except (ConnectionError, socket.timeout):
            self.close_connection = True
        except Exception as e:                  # never a traceback to the client
            self.monitor.log.error("Monitor: error serving %s: %s: %s"
                                   % (path, type(e).__name__, e))
            self.close_connection = True
            self._send(500, to_json({"error": "internal error"}), JSON_TYPE)

    # -- pages ---------------------------------------------------------------
    def page_root(self, q):
        from .dashboard import DASHBOARD_HTML
        self._send(200, DASHBOARD_HTML.encode("utf-8"), HTML_TYPE)

    def page_varz(self, q):
        self._json(q, lambda snap: self.monitor.varz(snap), conns=False)

    def page_connz(self, q):
        self._json(q, lambda snap: build_connz(snap, q))

    def page_routez(self, q):
        self._json(q, lambda snap: build_routez(snap, q))

    def page_subsz(self, q):
        # the subscription list (subs=, test=) comes from the connections
        self._json(q, lambda snap: build_subsz(snap, q), conns=("subs" in q or "test" in q))

    def page_healthz(self, q):
        cb = jsonp_callback(q)
        self._reply(cb, to_json({"status": "ok"}, indent=False))

    def page_metrics(self, q):
        snap = self.monitor.snapshot(conns=False)
        now = snap.get("now") or time.time()
        start = snap.get("start") or now
        body = build_metrics(self.monitor.varz(snap), build_subsz(snap, {}),
                             max(0.0, now - start), start)
        self._send(200, body, METRICS_TYPE)

    # -- responses -------------------------------------------------------------
    def _json(self, q, build, conns=True):
        cb = jsonp_callback(q)      # validate before any work
        self._reply(cb, to_json(build(self.monitor.snapshot(conns))))

    def _reply(self, callback, body):
        if callback:
            # nats-server's framing: NAME(JSON), no semicolon.
            self._send(200, callback.encode("ascii") + b"(" + body + b")", JSONP_TYPE)
        else:
            self._send(200, body, JSON_TYPE)

    def _send(self, code, body, ctype, extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        for k, v in extra:
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_response(self, code, message=None):
        # Like Go: a Date header and no Server banner.
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def send_error(self, code, message=None, explain=None):
        # http.server's own errors (bad request line, 414, 431, ...): JSON too.
        self.close_connection = True
        try:
            # http.server's messages quote the bad input; keep only the text.
            text = (message or self.responses.get(code, ("error",))[0]).split(" (")[0][:100]
            if code == 431:
                text = "request header fields too large"
            self._send(code, to_json({"error": text}), JSON_TYPE)
            self.wfile.flush()
            self._linger()
        except OSError:
            pass

    def _linger(self):
        """Closing with unread input makes the kernel send a reset, which
        can destroy the error answer before the client reads it: end our
        side, then discard what still arrives (bounded in bytes and time)."""
        sock = self.connection
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(LINGER_TIME)
        deadline = time.monotonic() + LINGER_TIME
        left = MAX_HEADER_BYTES
        while left > 0 and time.monotonic() < deadline:
            d = sock.recv(min(left, 65536))
            if not d:
                break
            left -= len(d)

    def log_message(self, fmt, *args):
        pass                        # nats-server does not log requests

    def log_error(self, fmt, *args):
        self.monitor.log.debug("Monitor: %s - %s" % (self.address_string(), fmt % args))


class SnapshotUnavailable(RuntimeError):
    """get_snapshot failed: answered with 503."""


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a cap on connections, a lifetime watchdog,
    TLS handshakes in the connection's thread and threads we can join."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, family, ssl_context, log):
        self.address_family = family
        self.ssl_context = ssl_context
        self.log = log
        self._lock = threading.Lock()
        # id -> [socket, born, thread, waiting]: waiting is the monotonic time
        # the connection began waiting for a request's headers, else None
        self._conns = {}
        self._next_id = 0
        super().__init__(addr, handler)

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            try:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            except (OSError, AttributeError):
                pass
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn): skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def process_request(self, request, client_address):
        evict = None
        with self._lock:
            full = len(self._conns) >= MAX_HTTP_CONNECTIONS
            if full:
                # Make room: the connection waiting longest for its headers
                # goes (a slow or idle socket, never one being answered).
                waiting = [(e[3], cid) for cid, e in self._conns.items() if e[3] is not None]
                if waiting:
                    evict = self._conns.pop(min(waiting)[1])[0]
                    full = False
            if not full:
                self._next_id += 1
                cid = self._next_id
                t = threading.Thread(target=self._run_conn, args=(cid, request, client_address),
                                     name="monitor-conn-%d" % cid, daemon=True)
                now = time.monotonic()
                self._conns[cid] = [request, now, t, now]
        if evict is not None:
            self._shutdown(evict)
        if full:
            self._refuse(request)
            return
        t.start()

    def _refuse(self, sock):
        # Over the cap: a short 503 into the empty send buffer, then close.
        # Never blocks the accept thread, reads nothing.
        try:
            sock.setblocking(False)
            if self.ssl_context is None:
                body = b'{"error":"too many monitoring connections"}'
                sock.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass
        self.shutdown_request(sock)

    def _run_conn(self, cid, sock, addr):
        try:
            if self.ssl_context is not None:
                sock.settimeout(IO_TIMEOUT)
                sock = self.ssl_context.wrap_socket(sock, server_side=True)
                with self._lock:
                    if cid in self._conns:
                        self._conns[cid][0] = sock
            self.finish_request(sock, addr)
        except Exception as e:      # handshake failures, resets, timeouts
            self.log.debug("Monitor: connection from %s:%s ended: %s" % (addr[0], addr[1], e))
        finally:
            with self._lock:
                self._conns.pop(cid, None)
            self.shutdown_request(sock)

    def conn_born(self, sock):
        with self._lock:
            for e in self._conns.values():
                if e[0] is sock:
                    return e[1]
        return time.monotonic()

    def set_waiting(self, sock, waiting):
        """The handler starts (True) or ends (False) reading a request's
        headers. Returns the monotonic time of the call."""
        now = time.monotonic()
        with self._lock:
            for e in self._conns.values():
                if e[0] is sock:
                    e[3] = now if waiting else None
                    break
        return now

    def service_actions(self):
        # Runs in the serve_forever thread about every poll interval.
        now = time.monotonic()
        self._shutdown_conns(now - CONN_LIFETIME, now - HEADER_TIMEOUT)

    def _shutdown_conns(self, born_before, waiting_before=float("-inf")):
        with self._lock:
            old = [e[0] for e in self._conns.values()
                   if e[1] < born_before or (e[3] is not None and e[3] < waiting_before)]
        for s in old:
            self._shutdown(s)

    @staticmethod
    def _shutdown(sock):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close_all(self, budget):
        """Shut every open connection down and join their threads."""
        self._shutdown_conns(float("inf"))
        deadline = time.monotonic() + budget
        with self._lock:
            threads = [e[2] for e in self._conns.values()]
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def handle_error(self, request, client_address):
        pass                        # errors are logged in _run_conn, no tracebacks


def _family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _join_host_port(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


class Monitor:
    """The monitoring HTTP and/or HTTPS listeners and their threads.

    get_snapshot(fresh, conns) -> dict is called from the monitor's threads; it must
    be thread-safe. The monitor only reads what it returns.
    """

    def __init__(self, opts, get_snapshot, log, ssl_context=None):
        self.opts = opts
        self.get_snapshot = get_snapshot
        self.log = log
        self.ssl_context = ssl_context
        self.http_port = 0
        self.https_port = 0
        self.proc = ProcStats()
        self._req_lock = threading.Lock()
        self._req_stats = {}
        self._servers = []          # (_HTTPServer, thread)
        self._handler = type("MonitorHandler", (_Handler,), {"monitor": self})

    # -- used by the handler threads ------------------------------------------
    def count_request(self, path):
        with self._req_lock:
            self._req_stats[path] = self._req_stats.get(path, 0) + 1

    def request_stats(self):
        with self._req_lock:
            return dict(self._req_stats)

    def snapshot(self, conns=True):
        try:
            snap = self.get_snapshot(True, conns)
        except Exception as e:
            self.log.error("Monitor: snapshot failed: %s: %s" % (type(e).__name__, e))
            snap = None
        if not snap:
            raise SnapshotUnavailable("server statistics unavailable, try again")
        return snap

    def varz(self, snap):
        return build_varz(snap, self.opts, self.request_stats(), self.proc)

    # -- lifecycle -----------------------------------------------------------------
    def start(self):
        """Bind the configured listeners and start serving. Raises OSError
        when a port cannot be bound, ValueError for HTTPS without TLS."""
        o = self.opts
        host = o.http_host or o.host or "0.0.0.0"
        try:
            if o.http_port:
                self.http_port = self._listen(host, o.http_port, None, "http")
            if o.https_port:
                if self.ssl_context is None:
                    raise ValueError("https monitoring needs a TLS certificate and key")
                self.https_port = self._listen(host, o.https_port, self.ssl_context, "https")
        except BaseException:
            self.stop()
            raise

    def _listen(self, host, port, ctx, scheme):
        bind_port = 0 if port < 0 else port
        try:
            srv = _HTTPServer((host, bind_port), self._handler, _family(host), ctx, self.log)
        except OSError as e:
            raise OSError(e.errno or errno.EADDRINUSE, "can't listen for %s monitoring on %s: %s"
                          % (scheme, _join_host_port(host, bind_port), e.strerror or e)) from None
        actual = srv.server_address[1]
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.25},
                             name="monitor-%s" % scheme, daemon=True)
        self._servers.append((srv, t))
        t.start()
        self.log.notice("Starting %s monitor on %s" % (scheme, _join_host_port(host, actual)))
        return actual

    def stop(self):
        """Close the listeners and open connections; join threads (bounded)."""
        servers, self._servers = self._servers, []
        for srv, t in servers:
            if t.is_alive():
                srv.shutdown()      # returns within one poll interval
            srv.server_close()
        deadline = time.monotonic() + STOP_JOIN_BUDGET
        for srv, t in servers:
            srv.close_all(max(0.0, deadline - time.monotonic()))
            t.join(max(0.0, deadline - time.monotonic()))
