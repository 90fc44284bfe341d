"""/accountz as nats-server 2.15 shows it: the account names, or with
?acc=NAME one account's detail (connections, subscriptions, exports,
imports, its subject index figures). A pure function of the snapshot."""

import time

from .endpoints import QueryError, go_time
from .snapshot import as_snapshot


def build_accountz(snap, q):
    snap = as_snapshot(snap)
    now = snap.now or time.time()
    out = {"server_id": snap.server.server_id, "now": go_time(now),
           "system_account": snap.system_account}
    name = q.get("acc", "")
    if not name:
        out["accounts"] = sorted(a.name for a in snap.accounts)
        return out
    for a in snap.accounts:
        if a.name == name:
            out["account_detail"] = account_detail(a)
            return out
    raise QueryError("Account %s does not exist" % name)


def account_detail(a):
    d = {
        "account_name": a.name,
        "update_time": go_time(a.update_time),
        "expired": False,
        "complete": True,
        "jetstream_enabled": False,
        "leafnode_connections": 0,
        "client_connections": a.client_connections,
        "subscriptions": a.subscriptions,
    }
    if a.exports:
        exports = []
        for subject, kind, rtype, approved in a.exports:
            e = {"subject": subject, "type": kind}
            if kind == "service":
                e["response_type"] = rtype
            if approved:
                e["approved_accounts"] = list(approved)
            exports.append(e)
        d["exports"] = exports
    if a.imports:
        imports = []
        for subject, account, to, local, kind, share in a.imports:
            im = {"subject": subject, "account": account}
            if to:
                im["to"] = to
            im.update({"local_subject": local, "type": kind, "invalid": False,
                       "share": share, "tracking": False})
            imports.append(im)
        d["imports"] = imports
    d["name_tag"] = a.name
    d["sublist_stats"] = a.sublist._asdict()
    return d
