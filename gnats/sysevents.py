"""The system account's messages as pure functions: JSON-ready dicts in,
nothing sent. gnats/sysacct.py decides when and where they go.

Shapes are nats-server 2.15.1's (server/events.go), captured from it and
kept in tests/test_sysacct.py:

  server block   {"name","host","id","cluster"?,"ver","jetstream","flags",
                  "seq","time"} heads every event and every response; `seq`
                  counts the messages this server sent from its system
                  account, `time` is UTC with nanoseconds.
  API response   {"server":{...},"data":{...}} or {"server":{...},
                  "error":{"code":N,"description":"..."}} (and "data":null
                  beside an error the builder raised), for every
                  $SYS.REQ.SERVER.* and $SYS.REQ.ACCOUNT.* request.
  STATSZ         {"server":{...},"statsz":{...}}: periodic on
                  $SYS.SERVER.<id>.STATSZ, and the answer to a PING.
  CONNECT /      {"type":"io.nats.server.advisory.v1.client_connect", "id",
  DISCONNECT     "timestamp","server":{...},"client":{...}} (+ sent,
                  received, reason on disconnect).
  account conns  {"type":"io.nats.server.advisory.v1.account_connections",
                  ...,"acc","name","conns",...}.

Request bodies are JSON options (nats-server's *EventOptions): the filter
fields every request shares (server_name, cluster, host, exact_match, tags,
domain) and the endpoint's own ones, which `endpoint_query` turns into the
query dict the HTTP builders of gnats/endpoints.py take, so a request over
NATS and a GET answer with the same JSON.
"""

import json
import os
import time

from . import VERSION

CONNECT_TYPE = "io.nats.server.advisory.v1.client_connect"
DISCONNECT_TYPE = "io.nats.server.advisory.v1.client_disconnect"
ACCOUNT_CONNS_TYPE = "io.nats.server.advisory.v1.account_connections"


# ---------------------------------------------------------------------------
# Time and ids

def utc_time(ns=None):
    """Go's time.Time.MarshalJSON of a UTC time: RFC 3339 with up to nine
    fraction digits, trailing zeros trimmed, "Z"."""
    if ns is None:
        ns = time.time_ns()
    secs, frac = divmod(int(ns), 1000000000)
    s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        s += "." + ("%09d" % frac).rstrip("0")
    return s + "Z"


_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class EventIds:
    """Unique 22-character event ids, as nats-server's nuid gives them: a
    random 12-character prefix and a 10-character sequence."""

    def __init__(self):
        self.prefix = "".join(_B62[b % 62] for b in os.urandom(12))
        self.seq = int.from_bytes(os.urandom(6), "big")

    def next(self):
        self.seq += 1
        n, digits = self.seq, []
        for _ in range(10):
            n, r = divmod(n, 62)
            digits.append(_B62[r])
        return self.prefix + "".join(reversed(digits))


# ---------------------------------------------------------------------------
# The server block

def server_block(name, host, server_id, cluster, seq, ns=None):
    """nats-server's ServerInfo as an event carries it. No tags, metadata,
    feature flags or JetStream here (omitted as Go omits empty ones)."""
    si = {"name": name, "host": host, "id": server_id}
    if cluster:
        si["cluster"] = cluster
    si.update({"ver": VERSION, "jetstream": False, "flags": 0,
               "seq": seq, "time": utc_time(ns)})
    return si


def api_response(server, data=None, error=None, data_null=False):
    """The envelope of every $SYS.REQ answer. `error` is (code, text);
    `data_null` keeps "data": null beside it (an endpoint that failed, as
    Go's typed nil shows), a request that could not be read has none."""
    out = {"server": server}
    if data is not None or data_null:
        out["data"] = data
    if error is not None:
        out["error"] = {"code": error[0], "description": error[1]}
    return out


def idz(name, host, server_id):
    """IDZ answers bare, without the envelope."""
    return {"name": name, "host": host, "id": server_id}


# ---------------------------------------------------------------------------
# STATSZ

def _msg_bytes(msgs, nbytes):
    return {"msgs": msgs, "bytes": nbytes}


def statsz(snap, mem, cores, cpu, gomaxprocs, active_accounts, active_servers):
    """The "statsz" object from a snapshot (gnats/snapshot.py). Client and
    route traffic are not counted apart here, so the *_clients figures are
    the totals. Routes are listed as Go lists them (omitted when none)."""
    st = snap.stats
    out = {
        "start": utc_time(int(round((snap.start or snap.now) * 1e9))),
        "mem": mem,
        "cores": cores,
        "cpu": cpu,
        "connections": st.connections,
        "total_connections": st.total_connections,
        "active_accounts": active_accounts,
        "subscriptions": st.subscriptions,
        "sent": _msg_bytes(st.out_msgs, st.out_bytes),
        "sent_to_clients": _msg_bytes(st.out_msgs, st.out_bytes),
        "received": _msg_bytes(st.in_msgs, st.in_bytes),
        "received_from_clients": _msg_bytes(st.in_msgs, st.in_bytes),
        "slow_consumers": st.slow_consumers,
    }
    if st.stalled_clients:
        out["stalled_clients"] = st.stalled_clients
    if snap.routes:
        out["routes"] = [{"rid": r.rid, "name": r.remote_id,
                          "sent": _msg_bytes(r.out_msgs, r.out_bytes),
                          "received": _msg_bytes(r.in_msgs, r.in_bytes),
                          "pending": r.pending_size} for r in snap.routes]
    out["active_servers"] = active_servers
    out["gomaxprocs"] = gomaxprocs
    return out


# ---------------------------------------------------------------------------
# Connection events

def client_info(rec, account, user, stop_ns=None):
    """ClientInfo of a connection record (snapshot.ConnRecord): Go's field
    order, empty fields omitted. `user` as nats-server's getRawAuthUser
    gives it (user name, nkey, or "[REDACTED]" for a token)."""
    ci = {"start": utc_time(int(round(rec.start * 1e9))), "host": rec.ip, "id": rec.cid,
          "acc": account}
    if user:
        ci["user"] = user
    for key, value in (("name", rec.name), ("lang", rec.lang), ("ver", rec.version)):
        if value:
            ci[key] = value
    if stop_ns is not None:
        rtt = int(round(rec.rtt * 1e9))
        if rtt:
            ci["rtt"] = rtt
        ci["stop"] = utc_time(stop_ns)
    ci.update({"name_tag": account, "kind": "Client", "client_type": "nats"})
    return ci


def connect_event(eid, server, rec, account, user, ns=None):
    return {"type": CONNECT_TYPE, "id": eid, "timestamp": utc_time(ns),
            "server": server, "client": client_info(rec, account, user)}


def disconnect_event(eid, server, rec, account, user, reason, ns=None):
    """`sent` is what the client sent (its in_msgs), `received` what it was
    delivered, as nats-server counts them from the client's side."""
    if ns is None:
        ns = time.time_ns()
    return {"type": DISCONNECT_TYPE, "id": eid, "timestamp": utc_time(ns),
            "server": server, "client": client_info(rec, account, user, ns),
            "sent": _msg_bytes(rec.in_msgs, rec.in_bytes),
            "received": _msg_bytes(rec.out_msgs, rec.out_bytes),
            "reason": reason}


def _data_stats(msgs, nbytes):
    zero = _msg_bytes(0, 0)
    return {"msgs": msgs, "bytes": nbytes, "gateways": zero, "routes": dict(zero),
            "leafs": dict(zero)}


def account_stat(account, conns, num_subs, in_msgs, in_bytes, out_msgs, out_bytes,
                 slow_consumers=0):
    """AccountStat: the figures of one account on this server. Traffic is
    what the account's clients sent (received) and were delivered (sent)."""
    return {"acc": account, "name": account, "conns": conns, "leafnodes": 0,
            "total_conns": conns, "num_subscriptions": num_subs,
            "sent": _data_stats(out_msgs, out_bytes),
            "received": _data_stats(in_msgs, in_bytes),
            "slow_consumers": slow_consumers}


def account_conns_event(eid, server, stat, ns=None):
    out = {"type": ACCOUNT_CONNS_TYPE, "id": eid, "timestamp": utc_time(ns),
           "server": server}
    out.update(stat)
    return out


def public_permissions(spec):
    """A user's permissions as USER.INFO shows them (nats-server's
    publicPermissions): only the lists and rules that are set; the
    responses' ttl in nanoseconds."""
    out = {}
    for key, rule in (("publish", spec.publish), ("subscribe", spec.subscribe)):
        if rule is None:
            continue
        lists = {}
        for name in ("allow", "deny"):
            entries = getattr(rule, name)
            if entries:
                lists[name] = list(entries)
        if lists:
            out[key] = lists
    if spec.response is not None:
        out["responses"] = {"max": spec.response.max_msgs,
                            "ttl": int(round(spec.response.expires * 1e9))}
    return out


# ---------------------------------------------------------------------------
# Request bodies

class RequestError(ValueError):
    """A request body nats-server could not unmarshal: answered 400."""


class UINT(int):
    """A field Go declares unsigned (a negative number does not unmarshal)."""


# the filter fields (EventFilterOptions) and their JSON types
_FILTER_FIELDS = {"server_name": str, "cluster": str, "host": str, "exact_match": bool,
                  "tags": list, "domain": str}

# endpoint option fields (nats-server's *Options structs) and their types
ENDPOINT_FIELDS = {
    "CONNZ": {"sort": str, "auth": bool, "subscriptions": bool, "subscriptions_detail": bool,
              "offset": int, "limit": int, "cid": UINT, "mqtt_client": str, "state": int,
              "user": str, "acc": str, "filter_subject": str},
    "SUBSZ": {"offset": int, "limit": int, "subscriptions": bool, "account": str, "test": str},
    "ROUTEZ": {"subscriptions": bool, "subscriptions_detail": bool},
    "ACCOUNTZ": {"account": str},
    "STATZ": {"accounts": list, "include_unused": bool},
    "HEALTHZ": {"js-enabled": bool, "js-enabled-only": bool, "js-server-only": bool,
                "js-meta-only": bool, "account": str, "stream": str, "consumer": str,
                "details": bool},
}

_GO_TYPES = {str: "string", bool: "bool", int: "int", list: "[]string"}
_GO_TYPES[UINT] = "uint64"
_JSON_KINDS = {str: "string", bool: "bool", int: "number", float: "number", list: "array",
               dict: "object", type(None): "null"}


def parse_options(body, kind, struct):
    """The options of a request body (b"" or None: none) as a dict, checked
    against the field types of `kind` (an ENDPOINT_FIELDS key, or None for
    filter-only requests). Raises RequestError with Go's json texts."""
    if not body:
        return {}
    try:
        obj = json.loads(bytes(body).decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestError("invalid character in JSON input") from None
    except ValueError as e:
        text = bytes(body).strip()
        pos = getattr(e, "pos", 0)
        if pos >= len(text) or str(e).startswith("Unterminated string"):
            raise RequestError("unexpected end of JSON input") from None
        raise RequestError("invalid character %r looking for beginning of value"
                           % chr(text[pos])) from None
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise RequestError("json: cannot unmarshal %s into Go value of type server.%s"
                           % (_JSON_KINDS.get(type(obj), "value"), struct))
    fields = dict(_FILTER_FIELDS)
    fields.update(ENDPOINT_FIELDS.get(kind, {}))
    out = {}
    for key, value in obj.items():
        want = fields.get(key)
        if want is None or value is None:
            continue            # Go ignores unknown fields and nulls
        base = int if want is UINT else want
        ok = isinstance(value, base) and not (base is int and isinstance(value, bool))
        if base is int and isinstance(value, float) and value.is_integer():
            value, ok = int(value), True
        if want is list and ok and not all(isinstance(v, str) for v in value):
            ok = False
        kind_text = _JSON_KINDS.get(type(value), "value")
        if want is UINT and ok and value < 0:
            ok, kind_text = False, "number %d" % value
        if not ok:
            raise RequestError("json: cannot unmarshal %s into Go struct field %s.%s of type %s"
                               % (kind_text, struct, key, _GO_TYPES[want]))
        out[key] = value
    return out


def filtered_out(opts, name, host, cluster):
    """True when the filter options exclude this server (nats-server
    filterRequest): names contain the filter, or equal it with exact_match;
    tags and a JetStream domain never match here (none are configured)."""
    exact = opts.get("exact_match", False)
    for key, mine in (("server_name", name), ("host", host), ("cluster", cluster)):
        want = opts.get(key, "")
        if want and ((exact and want != mine) or (not exact and want not in mine)):
            return True
    return bool(opts.get("tags")) or bool(opts.get("domain"))


_STATES = {0: "open", 1: "closed", 2: "any"}


def endpoint_query(kind, opts):
    """The HTTP query dict (values as strings) for the endpoint builder,
    from a request's options."""
    q = {}
    if kind == "CONNZ":
        for key in ("sort", "offset", "limit", "cid"):
            if opts.get(key) and (key == "sort" or opts[key] > 0):
                q[key] = str(opts[key])
        if opts.get("auth"):
            q["auth"] = "1"
        if opts.get("subscriptions_detail"):
            q["subs"] = "detail"
        elif opts.get("subscriptions"):
            q["subs"] = "1"
        if "state" in opts:
            q["state"] = _STATES.get(opts["state"], "open")
    elif kind == "SUBSZ":
        for key in ("offset", "limit", "test"):
            if opts.get(key) and (key == "test" or opts[key] > 0):
                q[key] = str(opts[key])
        if opts.get("subscriptions"):
            q["subs"] = "1"
    elif kind == "ROUTEZ":
        if opts.get("subscriptions_detail"):
            q["subs"] = "detail"
        elif opts.get("subscriptions"):
            q["subs"] = "1"
    return q
