"""Operator mode's accounts in the account registry: what each preloaded
account JWT says (exports, imports, limits, mappings) applied as the
`accounts { }` block's accounts are, at start and on a SIGHUP reload.

Theory of operation. `account_specs(trust)` turns every account of a
gnats.jwt_accounts.OperatorTrust into an accounts_conf.AccountSpec named by
the account's public key, through `account_config` (the shape of a
nats-server `accounts { NAME: {...} }` entry, with every import checked
against its exporter's exports and activation tokens).
`Server.configure_accounts` then registers them, wires exports and imports
(gnats/imports.py) and gives each its mappings and limits, exactly as for
configured accounts, so routes know every account from the start (a Go
node in the same operator mode resolves the same keys from its own
preload), and JetStream reads their storage limits (jetstream/accounts.py).

Per-connection limits come from both JWTs, as nats-server's
applyAccountLimits: the user's (or its scoped signing key's) `subs` and
`payload`, lowered by the account's and by the server's; -1 is unlimited
and 0 is zero (a limit left out of the claims is 0).
jwt_accounts.client_limits computes them; JwtUser.bind applies them. A
connection already at its subscription limit when bound is told so and
closed, as Go does.

On reload (`reload_accounts`), an account whose JWT changed is configured
again; clients of an account that revokes them get "User Authentication
Revoked", the newest connections above a lowered `conn` limit get
"maximum account active connections exceeded", and an account gone from
the preload is deleted (its clients then fail the re-authentication that
follows: "Authorization Violation"), as nats-server's reloadAuthorization.
"""

import json

from . import jwt as J
from .account import ERR_ACCOUNT_CONNECTIONS
from .accounts_conf import DEFAULT_RESPONSE_THRESHOLD, RESPONSE_TYPES, AccountSpec
from .jwt import NO_LIMIT, JWTError
from .jwt_claims import subject_contained_in

ERR_REVOKED = "User Authentication Revoked"


# --- account claims -> an accounts { } entry ---------------------------------------

def check_activation(imp, importer: str, exporter, now=None) -> str:
    """"" when `imp` (an Import of account `importer`) carries an activation
    token that `exporter` (the AccountClaims it imports from) issued for it,
    else why not (jwt Import.Validate, nats-server checkActivation)."""
    subj = json.dumps(imp.subject)
    try:
        act = J.decode_activation(imp.token)
    except JWTError:
        return "import %s contains an invalid activation token" % subj
    if imp.account not in (act.issuer, act.issuer_account):
        return "activation token doesn't match account for import %s" % subj
    if act.subject != importer:
        return "activation token doesn't match account it is being included in, %s" % subj
    if act.import_type != imp.type:
        return "mismatch between token import type %s and type of import %s" % (
            act.import_type, imp.type)
    wanted = imp.to if imp.type == "service" and imp.to else imp.subject
    if not subject_contained_in(wanted, act.import_subject):
        return "activation token import subject %s doesn't match import %s" % (
            json.dumps(act.import_subject), subj)
    issues = act.validate(now)
    if issues:
        return issues[0]
    if act.issuer != exporter.subject and not (act.issuer_account == exporter.subject
                                               and act.issuer in exporter.signing_keys):
        return "activation token not issued by the exporting account"
    for e in exporter.exports:
        if e.type == imp.type and subject_contained_in(imp.subject, e.subject) \
                and J.is_revoked(e.revocations, act.subject, act.issued_at):
            return "activation token revoked"
    return ""


def account_config(key: str, trust, now=None):
    """The account `key` of `trust` (a jwt_accounts.OperatorTrust) in the
    shape of a nats-server `accounts { NAME: {...} }` entry, and the problems nats-server would log. Exports that
    require a token list the accounts holding a valid activation; imports
    of unknown accounts, of exports that do not exist, or without a valid
    token where one is required are left out (nats-server's incomplete
    imports). Limits: -1 is unlimited, a limit left out is 0 (as in Go)."""
    acc = trust.accounts[key]
    problems = []
    exports = []
    for e in acc.exports:
        entry = {e.type: e.subject}
        if e.type == "service" and e.response_type:
            entry["response_type"] = e.response_type.lower()
        if e.type == "service" and e.response_threshold > 0:
            entry["threshold"] = e.response_threshold / 1e9     # ns in the claim; seconds here
        if e.token_req:
            entry["accounts"] = sorted(
                other for other, oc in trust.accounts.items() if other != key and any(
                    i.account == key and i.type == e.type and i.token
                    and subject_contained_in(i.subject, e.subject)
                    and not check_activation(i, other, acc, now) for i in oc.imports))
        exports.append(entry)
    imports = []
    for i in acc.imports:
        exporter = trust.accounts.get(i.account)
        # the exporter's subject: a service's `to` when set without local_subject
        remote = i.to if i.type == "service" and i.to and not i.local_subject else i.subject
        export = None if exporter is None else next(
            (e for e in exporter.exports if e.type == i.type
             and subject_contained_in(remote, e.subject)), None)
        if exporter is None:
            problems.append("Can't locate account [%s] for import of [%s] %s"
                            % (i.account, i.subject, i.type))
            continue
        if export is None:
            problems.append("import of [%s] %s from [%s]: no such export"
                            % (i.subject, i.type, i.account))
            continue
        if export.token_req:
            why = check_activation(i, key, exporter, now) if i.token else "no activation token"
            if why:
                problems.append("import of [%s] from [%s]: %s" % (i.subject, i.account, why))
                continue
        if i.type == "stream":
            entry = {"stream": {"account": i.account, "subject": i.subject}}
            if i.local_subject:
                entry["to"] = i.local_subject
            elif i.to:
                entry["prefix"] = i.to
        else:
            local, remote = i.subject, i.to or i.subject
            if i.local_subject:
                local, remote = i.local_subject, i.subject
            entry = {"service": {"account": i.account, "subject": remote}}
            if local != remote:
                entry["to"] = local
        if i.share:
            entry["share"] = True
        imports.append(entry)
    lim = acc.limits
    limits = {}
    for name, value in (("max_connections", lim.conn), ("max_subscriptions", lim.subs),
                        ("max_payload", lim.payload), ("max_leafnodes", lim.leaf)):
        if value >= 0:
            limits[name] = value
    out = {"exports": exports, "imports": imports, "limits": limits}
    if acc.mappings:
        out["mappings"] = acc.mappings
    return out, problems



def account_spec(key, trust, now=None):
    """(AccountSpec, problems) for the account `key` of `trust`."""
    cfg, problems = account_config(key, trust, now)
    spec = AccountSpec(key)
    for e in cfg["exports"]:
        kind = "service" if "service" in e else "stream"
        accounts = e.get("accounts")
        spec.exports.append({
            "kind": kind, "subject": e[kind],
            "accounts": tuple(accounts) if accounts is not None else None,
            "response_type": RESPONSE_TYPES.get(e.get("response_type", "singleton"), "Singleton"),
            "threshold": e.get("threshold", DEFAULT_RESPONSE_THRESHOLD)})
    for i in cfg["imports"]:
        kind = "service" if "service" in i else "stream"
        src = i[kind]
        im = {"kind": kind, "account": src["account"], "subject": src["subject"],
              "to": i.get("to", ""), "prefix": i.get("prefix", ""),
              "share": bool(i.get("share"))}
        if kind == "service" and not im["to"]:
            im["to"] = im["subject"]
        spec.imports.append(im)
    # the registry's limits (0: none there); a JWT's 0 and the per-user
    # limits are enforced per connection (jwt_accounts.client_limits)
    spec.limits = {k: v for k, v in cfg["limits"].items() if v > 0}
    spec.mappings = trust.mappings.get(key)
    return spec, problems


def account_specs(trust, log=None, now=None):
    """Every account of `trust` as an AccountSpec; the imports left out are
    logged as nats-server logs them."""
    specs = []
    for key in trust.accounts:
        spec, problems = account_spec(key, trust, now)
        if log is not None:
            for p in problems:
                # as nats-server: a missing exporter is an error, a refused import a debug line
                (log.error if p.startswith("Can't locate") else log.debug)(p)
        specs.append(spec)
    return specs


# --- reload ------------------------------------------------------------------------

def reload_accounts(server, trust):
    """Apply a new OperatorTrust's accounts to the running server (reactor
    thread): configure them, then close the clients the new claims refuse
    (revoked users, connections over a lowered `conn` limit). Clients of
    a deleted account are left to the re-authentication that follows."""
    log = server.log
    before = {a.name for a in server.accounts.all() if a.spec is not None}
    gone = server.configure_accounts(account_specs(trust, log))
    for acc in gone:
        log.notice('Reloaded: deleting account [removed]: "%s"' % acc.name)
    for key, claims in trust.accounts.items():
        acc = server.accounts.find(key)
        if acc is None or key not in before:
            continue
        live = sorted((c for c in acc.clients if not c.closed and not c.closing_after_flush
                       and getattr(c.jwt_user, "claims", None) is not None),
                      key=lambda c: c.cid)     # oldest first: the newest go
        kept = 0
        conn = claims.limits.conn
        for c in live:
            if claims.user_revoked(c.jwt_user.claims):
                c.send_err(ERR_REVOKED)
                c.close_after_flush("Credentials Revoked")
                continue
            if conn != NO_LIMIT and kept >= conn:
                log.error("%s - %s" % (c.tag(), ERR_ACCOUNT_CONNECTIONS))
                c.send_err(ERR_ACCOUNT_CONNECTIONS)
                c.close_after_flush("Maximum Account Connections Exceeded")
                continue
            kept += 1
