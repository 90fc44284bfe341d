"""JetStream's monitoring figures: `collect(js)` builds a plain dict on the
reactor thread (it goes into the monitoring snapshot); `build_jsz` and
`varz_section` turn it into /jsz and the /varz `jetstream` block, in
nats-server 2.15's shapes. (/healthz?js-enabled-only=true needs nothing
here: nats-server 2.15 answers ok whether JetStream is on or off.)"""

from .headers import rfc3339

UINT64_MAX = (1 << 64) - 1      # nats-server prints an unlimited reservation as uint64(-1)
API_LEVEL = 5


def collect(js):
    """Reactor thread: every figure /jsz and /varz may show."""
    accounts = []
    totals = {"memory": 0, "storage": 0, "reserved_memory": 0, "reserved_storage": 0,
              "streams": 0, "consumers": 0, "messages": 0, "bytes": 0, "api_total": 0, "api_errors": 0}
    for name in sorted(js.accounts):
        jsa = js.accounts[name]
        streams = []
        for sname in sorted(jsa.streams):
            s = jsa.streams[sname]
            state = s.state_json()
            streams.append({"name": s.name, "created": rfc3339(s.created),
                            "cluster": {"leader": js.server_name},
                            "config": dict(s.config), "state": state,
                            "consumers": s.public_consumers()})
            totals["messages"] += state["messages"]
            totals["bytes"] += state["bytes"]
        acc = {"name": name, "memory": jsa.usage(True), "storage": jsa.usage(False),
               "reserved_memory": jsa.reserved(True), "reserved_storage": jsa.reserved(False),
               "limits": dict(jsa.limits), "api_total": jsa.api_total, "api_errors": jsa.api_errors,
               "streams": streams, "consumers": jsa.consumer_count()}
        for k in ("memory", "storage", "reserved_memory", "reserved_storage", "consumers"):
            totals[k] += acc[k]
        totals["streams"] += len(streams)
        totals["api_total"] += jsa.api_total
        totals["api_errors"] += jsa.api_errors
        accounts.append(acc)
    return {"server_id": js.server.server_id, "server_name": js.server_name,
            "config": {"max_memory": js.max_memory, "max_storage": js.max_store, "store_dir": js.root,
                       "sync_interval": int(js.sync_interval * 1e9), "sync_always": js.sync_always},
            "totals": totals, "accounts": accounts}


def _config(info):
    c = info["config"]
    out = {"max_memory": c["max_memory"], "max_storage": c["max_storage"], "store_dir": c["store_dir"],
           "sync_interval": c["sync_interval"]}
    if c["sync_always"]:
        out["sync_always"] = True
    out["strict"] = True
    return out


def _stats(t, accounts):
    return {"memory": t["memory"], "storage": t["storage"], "reserved_memory": t["reserved_memory"],
            "reserved_storage": t["reserved_storage"], "accounts": accounts, "ha_assets": 0,
            "api": {"level": API_LEVEL, "total": t["api_total"], "errors": t["api_errors"]}}


def varz_section(info):
    """/varz's `jetstream` block ({} when JetStream is off)."""
    if info is None:
        return {}
    return {"config": _config(info), "stats": _stats(info["totals"], len(info["accounts"])),
            "limits": {"default_max_consumers": 1000}}


def build_jsz(info, server_id, now, q, flag):
    """/jsz at `now` (seconds); `flag(name)` reads a boolean query parameter."""
    now = rfc3339(int(now * 1e9))
    if info is None:
        out = _stats({"memory": 0, "storage": 0, "reserved_memory": 0, "reserved_storage": 0,
                      "api_total": 0, "api_errors": 0}, 0)
        out["api"]["level"] = 0
        out.update({"server_id": server_id, "now": now, "disabled": True,
                    "config": {"max_memory": 0, "max_storage": 0},
                    "streams": 0, "consumers": 0, "messages": 0, "bytes": 0, "total": 0})
        return out
    t = info["totals"]
    out = _stats(t, len(info["accounts"]))
    out.update({"server_id": info["server_id"], "now": now, "config": _config(info),
                "limits": {"default_max_consumers": 1000}, "streams": t["streams"],
                "consumers": t["consumers"], "messages": t["messages"], "bytes": t["bytes"]})
    want_acc = flag("accounts")
    want_streams = flag("streams")
    want_consumers = flag("consumers")
    want_config = flag("config")
    only = q.get("acc") or q.get("account")
    if want_acc or want_streams or want_consumers or only:
        details = []
        for a in info["accounts"]:
            if only and a["name"] != only:
                continue
            d = {"name": a["name"], "id": a["name"], "memory": a["memory"], "storage": a["storage"],
                 "reserved_memory": a["reserved_memory"] or UINT64_MAX,
                 "reserved_storage": a["reserved_storage"] or UINT64_MAX,
                 "accounts": 0, "ha_assets": 0,
                 "api": {"level": 0, "total": a["api_total"], "errors": a["api_errors"]}}
            if want_streams or want_consumers:
                sd = []
                for s in a["streams"]:
                    e = {"name": s["name"], "created": s["created"], "cluster": s["cluster"]}
                    if want_config:
                        e["config"] = s["config"]
                    e["state"] = s["state"]
                    if want_consumers and s["consumers"]:
                        e["consumer_detail"] = []    # consumers arrive with issue 19
                    sd.append(e)
                if sd:
                    d["stream_detail"] = sd
            details.append(d)
        out["account_details"] = details
    out["total"] = len(info["accounts"])
    return out
