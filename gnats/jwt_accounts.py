"""Operator mode: who is trusted, which accounts exist, and whether a user
JWT in a CONNECT proves a user of one of them (nats-server's decentralized
JWT auth, with the MEMORY resolver).

Theory of operation. `OperatorTrust` is built from the options (operator
JWTs, `resolver_preload`, `system_account`) when the config loads and
whenever the client authorization is rebuilt. It decodes each operator JWT
and collects the keys it vouches for (the operator's own key unless
`strict_signing_key_usage`, and its signing keys); then it decodes every
preloaded account JWT and insists that its subject is the key it is filed
under and that a trusted key signed it. Any failure is a TrustError whose
message names the account, so the config never loads half-trusted.

A CONNECT then goes through `OperatorTrust.authenticate` (off the reactor
thread: two Ed25519 verifies, ~2.5 ms), in nats-server's order
(processClientOrLeafAuthentication): the user JWT decodes and verifies and
is currently valid; its account (issuer_account, else the issuer) is
known; the account is still valid and its issuer trusted; the user's
issuer is the account or one of its signing keys (a scoped key replaces
the user's permissions and limits with its template); bearer tokens are
allowed by the account; the connection type is allowed; the nonce
signature verifies (not for bearer tokens); the user is not revoked; the
client's address is inside `src`; now is inside `times`. Every refusal is
"Authorization Violation" on the wire, as in Go; `reason` says which.

For the account registry, `account_config` turns an account's claims into
the shape of a nats-server `accounts { NAME: {...} }` entry (exports,
imports, limits, mappings), checking activation tokens
(`check_activation`) where an export requires one.

The verdict is a `JwtUser`: the user's name (its public key), compiled
permissions (its own, or the account's default_permissions when it has
none), the account it belongs to and when it must be disconnected. The
client calls `JwtUser.bind(client)` on the reactor thread once accepted:
that puts it in the account named by the account's public key (registered
in the server's registry on first use, with the account's `mappings`
claim as gnats.mapping.Mappings), enforces the account's `conn`
limit, and arms the expiry timer ("User Authentication Expired").
"""

import json
import re
import time

from . import jwt as J
from .conf import ConfigError
from .jetstream import accounts as jetstream_accounts
from .jwt import JWTError
from .jwt_claims import subject_contained_in
from .mapping import MappingError, Mappings
from .nkeys import verify_connect_sig
from .permissions import (DEFAULT_RESPONSE_EXPIRES, DEFAULT_RESPONSE_MAX_MSGS,
                          PermissionSpec, ResponseRule, SubjectRule, compile_permissions)

ERR_ACCOUNT_CONNECTIONS = "maximum account active connections exceeded"
ERR_AUTH_EXPIRED = "User Authentication Expired"
_MUSTACHE = re.compile(r"{{2}([^}]+)}{2}")
_MAX_TEMPLATE_EXPANSIONS = 4096     # nats-server maxPermTemplateSubjectExpansions


class TrustError(ValueError):
    """Operator-mode configuration that cannot be trusted."""


def read_operator(value: str) -> J.OperatorClaims:
    """An `operator` config value: a file (decorated or not) or, when no
    such file exists and it looks like one, the JWT itself
    (nats-server readOperatorJWT)."""
    try:
        with open(value, "r", encoding="utf-8") as f:
            text = f.read(J.MAX_TOKEN_SIZE + 4096)
    except (OSError, ValueError) as e:
        if not value.startswith("eyJ"):
            raise TrustError("error parsing operator JWT: %s" % (getattr(e, "strerror", "") or e))
        text = value
    try:
        op = J.decode_operator(J.parse_decorated_jwt(text))
    except JWTError as e:
        raise TrustError("error parsing operator JWT: %s" % e) from None
    issues = [i for i in op.validate() if "expired" not in i and "not yet valid" not in i]
    if issues:
        raise TrustError("operator %s: %s" % (op.subject, issues[0]))
    return op


def check_preload(key: str, token) -> J.AccountClaims:
    """One resolver_preload entry, decoded and verified (not yet checked
    against the operators)."""
    if not isinstance(token, str):
        raise TrustError("preload map value should be a string JWT")
    try:
        acc = J.decode_account(token)
    except JWTError as e:
        raise TrustError('invalid account JWT for "%s": %s' % (key, e)) from None
    if acc.subject != key:
        raise TrustError('account JWT for "%s" is for account "%s"' % (key, acc.subject))
    return acc


class OperatorTrust:
    """The trusted operators and the MEMORY resolver's accounts."""

    def __init__(self, operators, preload=None, system_account=""):
        self.operators = [read_operator(o) if isinstance(o, str) else o for o in operators]
        self.trusted = set()
        # signing keys of operators with strict_signing_key_usage: accounts
        # they sign may not sign users with their own key
        self.strict = set()
        for op in self.operators:
            self.trusted.update(op.trusted_keys())
            if op.strict_signing_key_usage:
                self.strict.update(op.signing_keys)
        ops_sys = [op.system_account for op in self.operators if op.system_account]
        if system_account and ops_sys and system_account not in ops_sys:
            raise TrustError("system_account in config and operator JWT must be identical")
        self.system_account = system_account or (ops_sys[0] if len(self.operators) == 1
                                                 and ops_sys else "")
        self.accounts = {}
        self.users = J.VerifiedCache()      # user JWTs seen at CONNECT
        self.mappings = {}          # account key -> Mappings or None
        self.warnings = []          # (account, issue): logged at start, as Go
        for key, token in (preload or {}).items():
            acc = check_preload(key, token)
            if acc.issuer not in self.trusted:
                raise TrustError('account "%s" is not signed by a trusted operator (issuer %s)'
                                 % (key, acc.issuer))
            for issue in acc.validate():
                self.warnings.append((key, issue))
            self.accounts[key] = acc
            self.mappings[key] = self._mappings(key, acc)

    def _mappings(self, key, acc):
        """The account's `mappings` claim as gnats.mapping.Mappings (None:
        none). An entry nats-server's AddWeightedMappings refuses is left
        out with a warning, as Go ignores its error."""
        if not acc.mappings:
            return None
        ms = Mappings()
        for src, dests in acc.mappings.items():
            try:
                if not isinstance(dests, list):
                    raise MappingError("expected a list of destinations")
                spec = []
                for d in dests:
                    if not isinstance(d, dict) or not isinstance(d.get("subject"), str):
                        raise MappingError("a destination needs a subject")
                    w, cluster = d.get("weight", 0), d.get("cluster", "")
                    if isinstance(w, bool) or not isinstance(w, int) or w < 0 \
                            or not isinstance(cluster, str):
                        raise MappingError("bad weight or cluster")
                    spec.append((d["subject"], w or 100, cluster))    # 0 means 100
                ms.add(src, spec)
            except MappingError as e:
                self.warnings.append((key, 'mapping "%s": %s' % (src, e)))
        return ms if len(ms) else None

    # -- CONNECT -------------------------------------------------------------
    def authenticate(self, connect, nonce="", host="", kind="STANDARD", now=None):
        """(JwtUser, "") when the CONNECT's `jwt` and `sig` prove a user of
        a known account, else (None, reason)."""
        if not isinstance(connect, dict):
            return None, "no CONNECT"
        token = connect.get("jwt")
        if not token or not isinstance(token, str):
            return None, "Authentication requires a user JWT"
        try:
            user = self.users.decode(token, "user")
        except JWTError as e:
            return None, "User JWT not valid: %s" % e
        now = int(time.time()) if now is None else now
        issues = user.validate(now)
        if issues:
            return None, "User JWT no longer valid: %s" % "; ".join(issues)
        account_key = user.account
        acc = self.accounts.get(account_key)
        if acc is None:
            return None, "Account JWT lookup error: %s not found" % account_key
        if acc.issuer not in self.trusted:
            return None, "Account JWT not signed by trusted operator"
        limits = user.limits
        if user.issuer != account_key or acc.issuer in self.strict:
            if user.issuer not in acc.signing_keys:
                return None, "User JWT issuer is not known"
            scope = acc.signing_keys[user.issuer]
            if scope is not None:
                if not user.limits.is_empty():
                    return None, ("User JWT is not valid: scoped users require no "
                                  "permissions or limits set")
                try:
                    limits = expand_templates(scope.template, user, acc)
                except ValueError:
                    return None, "User JWT generated invalid permissions"
        if acc.expired(now):
            return None, "Account JWT has expired"
        if limits.bearer_token and acc.limits.disallow_bearer:
            return None, "Account does not allow bearer tokens"
        types = tuple(t.upper() for t in limits.allowed_connection_types)
        known = tuple(t for t in types if t in J.CONNECTION_TYPES)
        if types and not known:
            return None, "invalid connection types %s" % (types,)
        if known and kind not in known:
            return None, "Connection type not allowed"
        if not limits.bearer_token:
            if not connect.get("sig"):
                return None, "Signature missing"
            if not verify_connect_sig(user.subject, nonce, connect.get("sig")):
                return None, "Signature not verified"
        if acc.user_revoked(user):
            return None, "User authentication revoked"
        if not J.source_allowed(limits, host):
            return None, "Bad src Ip %s" % host
        allowed, valid_for = J.time_window(limits)
        if not allowed:
            return None, "Outside connect times"
        expires_in = valid_for
        if user.expires:
            left = max(0, user.expires - now)
            if not expires_in or left < expires_in:
                expires_in = left
        return JwtUser(user, acc, limits, self._permissions(limits, acc), known,
                       expires_in, self.mappings.get(account_key)), ""

    def _permissions(self, limits, acc):
        spec = permission_spec(limits)
        if spec is None:
            spec = permission_spec(acc.default_permissions)
        return compile_permissions(spec) if spec is not None else None


def permission_spec(limits):
    """A PermissionSpec from JWT pub/sub/resp (nats-server
    buildPermissionsFromJwt), or None when the JWT sets none."""
    pub = sub = resp = None
    if limits.pub.allow or limits.pub.deny:
        pub = SubjectRule(allow=limits.pub.allow or None, deny=limits.pub.deny or None)
    if limits.sub.allow or limits.sub.deny:
        sub = SubjectRule(allow=limits.sub.allow or None, deny=limits.sub.deny or None)
    if limits.resp is not None:
        max_msgs, ttl_ns = limits.resp
        resp = ResponseRule(max_msgs=max_msgs or DEFAULT_RESPONSE_MAX_MSGS,
                            expires=ttl_ns / 1e9 if ttl_ns else DEFAULT_RESPONSE_EXPIRES)
        # validateResponsePermissions: responses turn the blanket allow off
        if pub is None or pub.allow is None:
            pub = SubjectRule(allow=(), deny=pub.deny if pub else None)
    if pub is None and sub is None and resp is None:
        return None
    return PermissionSpec(publish=pub, subscribe=sub, response=resp)


# --- scoped signing key templates (nats-server processUserPermissionsTemplate) --

def expand_templates(template, user, acc):
    """The scope's template with {{name()}}, {{subject()}},
    {{account-name()}}, {{account-subject()}}, {{tag(x)}} and
    {{account-tag(x)}} filled in for this user. ValueError when a deny
    entry cannot be generated or an operation is unknown."""
    import copy
    out = copy.copy(template)
    for attr in ("pub", "sub"):
        rule = copy.copy(getattr(template, attr))
        had_allow = bool(rule.allow)
        rule.allow = tuple(_apply_template(rule.allow, user, acc, False))
        rule.deny = tuple(_apply_template(rule.deny, user, acc, True))
        if had_allow and not rule.allow:
            rule.deny = rule.deny + (">",)      # allow emptied: deny everything
        setattr(out, attr, rule)
    return out


def _template_values(op, user, acc):
    low = op.lower()
    if low == "name()":
        return [user.name], False
    if low == "subject()":
        return [user.subject], False
    if low == "account-name()":
        return [acc.name], False
    if low == "account-subject()":
        return [user.issuer_account], False
    for prefix, tags in (("tag(", user.tags), ("account-tag(", acc.tags)):
        if low.startswith(prefix) and low.endswith(")"):
            name = op[len(prefix):-1].lower() + ":"
            return [t[len(name):] for t in tags if t.lower().startswith(name)], True
    raise ValueError("template operation %r is not defined" % op)


def _apply_template(entries, user, acc, strict):
    out = []
    for entry in entries:
        tokens = _MUSTACHE.findall(entry)
        if not tokens:
            out.append(entry)
            continue
        combos = [entry]
        for tk in tokens:
            values, is_tag = _template_values(tk.strip(), user, acc)
            if is_tag and not values:
                if strict:
                    raise ValueError("generated invalid subject")
                values = [" "]
            if len(combos) * len(values) > _MAX_TEMPLATE_EXPANSIONS:
                raise ValueError("template expansion exceeds limit")
            src = "{{" + tk + "}}"
            combos = [c.replace(src, v) for c in combos for v in values]
        for subj in combos:
            if _valid_subject(subj):
                out.append(subj)
            elif strict:
                raise ValueError("generated invalid subject")
        if len(out) > _MAX_TEMPLATE_EXPANSIONS:
            raise ValueError("template expansion exceeds limit")
    return out


def _valid_subject(s):
    return bool(s) and not any(c in s for c in " \t\r\n") and "" not in s.split(".")


# --- account claims -> what an account needs (for the account registry) --------

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


def account_config(key: str, trust: "OperatorTrust", now=None):
    """The account `key` of `trust` in the shape of a nats-server
    `accounts { NAME: {...} }` entry (what the config path of the account
    registry takes), and the problems nats-server would log. Exports that
    require a token list the accounts holding a valid activation; imports
    of unknown accounts, of exports that do not exist, or without a valid
    token where one is required are left out (nats-server's incomplete
    imports). Limits: only those the claims set (-1 is unlimited)."""
    acc = trust.accounts[key]
    problems = []
    exports = []
    for e in acc.exports:
        entry = {e.type: e.subject}
        if e.type == "service" and e.response_type:
            entry["response_type"] = e.response_type.lower()
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
        export = None if exporter is None else next(
            (e for e in exporter.exports if e.type == i.type
             and subject_contained_in(i.subject, e.subject)), None)
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
        imports.append(entry)
    lim = acc.limits
    limits = {}
    if not lim.is_empty():
        for name, value in (("max_connections", lim.conn), ("max_subscriptions", lim.subs),
                            ("max_payload", lim.payload), ("max_leafnodes", lim.leaf)):
            if value >= 0:
                limits[name] = value
    out = {"exports": exports, "imports": imports, "limits": limits}
    if acc.mappings:
        out["mappings"] = acc.mappings
    return out, problems


# --- the verdict ---------------------------------------------------------------

class JwtUser:
    """An authenticated JWT user, with what auth.UserEntry has (name,
    permissions, nkey, connection types) plus its account and expiry."""

    __slots__ = ("name", "permissions", "nkey", "connection_types", "claims",
                 "account_name", "account_claims", "limits", "expires_in", "mappings")

    def __init__(self, claims, acc, limits, permissions, connection_types, expires_in,
                 mappings=None):
        self.name = claims.subject
        self.nkey = claims.subject
        self.permissions = permissions
        self.connection_types = connection_types
        self.claims = claims
        self.account_name = acc.subject
        self.account_claims = acc
        self.limits = limits
        self.expires_in = expires_in    # seconds; 0: never
        self.mappings = mappings        # the account's (gnats.mapping), or None

    def allows_connection_type(self, kind: str) -> bool:
        return not self.connection_types or kind in self.connection_types

    def bind(self, client):
        """On the reactor thread, once the client is accepted: move it into
        its account, apply the account's connection limit, arm the expiry.
        Returns False when it refused (and closed) the client."""
        srv = client.server
        wire = self.account_name.encode("latin-1")
        acc = srv.accounts.find_wire(wire)
        if acc is None:
            # first use: the account and its mappings claim
            acc = srv.accounts.register(self.account_name)
            if self.mappings is not None:
                self.mappings.set_cluster(srv.opts.cluster_name)
                acc.mappings = self.mappings
            # JetStream for it when its limits give storage, else 10039
            jetstream_accounts.jwt_account_registered(srv, acc, self.account_claims)
        if client.account is not acc:
            if client.subs:
                # its subscriptions live in the other account's index
                client.refuse_auth()
                return False
            limit = self.account_claims.limits.conn
            if limit >= 0 and not self.account_claims.limits.is_empty():
                n = sum(1 for c in srv.clients.values()
                        if c.account is acc and not c.closed and c is not client)
                if n >= limit:
                    client.verbose = False      # no +OK after the -ERR (auth_done)
                    client.log.error("%s - %s" % (client.tag(), ERR_ACCOUNT_CONNECTIONS))
                    client.send_err(ERR_ACCOUNT_CONNECTIONS)
                    client.close_after_flush("Maximum Account Connections Exceeded")
                    return False
            if not client.join_account(acc):    # its index, clients, limits, imports
                return False
        for t in client.timers:
            if getattr(t, "fn", None) == _expire:
                t.cancel()
        if self.expires_in:
            client.timers.append(client.reactor.call_later(self.expires_in, _expire, client))
        return True

    def __repr__(self):
        return "<JwtUser %s of %s>" % (self.name, self.account_name)


def _expire(client):
    if client.closed or client.closing_after_flush:
        return
    client.send_err(ERR_AUTH_EXPIRED)
    client.close_after_flush("Authentication Expired")


def resolver_kind(value) -> str:
    """The `resolver` config value this server supports: MEM/MEMORY only
    (nats-server also has URL(...) and the directory resolvers)."""
    if isinstance(value, str) and re.match(r"(?i)^\s*(MEM|MEMORY)\s*$", value):
        return "MEMORY"
    if isinstance(value, dict):
        t = value.get("type")
        if isinstance(t, str) and t.upper() in ("MEM", "MEMORY"):
            return "MEMORY"
    raise TrustError("error parsing account resolver: only MEMORY is supported here "
                     "(nats-server also has URL(...) and directory resolvers)")


# --- the config keys (handlers for gnats.options' top-level table) ---------------


def conf_operators(opts, f):
    """`operator` (and its aliases): one JWT or file, or a list."""
    v = f.value
    items = [(v, f.value_pos)] if isinstance(v, str) else f.str_list()
    out = []
    for text, pos in items:
        try:
            read_operator(text)
        except TrustError as e:
            raise ConfigError(str(e), pos) from None
        out.append(text)
    opts.operators = out


def conf_resolver(opts, f):
    """`resolver`: MEM or MEMORY, as a string or `{ type: MEMORY }`."""
    try:
        opts.resolver = resolver_kind(f.value)
    except TrustError as e:
        f.fail(str(e))


def conf_resolver_preload(opts, f):
    """`resolver_preload { <account public key>: <account JWT> }`."""
    b = f.block_value()
    out = {}
    for key in b:
        try:
            check_preload(key, b[key])
        except TrustError as e:
            raise ConfigError(str(e), getattr(b, "value_pos", {}).get(key)) from None
        out[key] = b[key]
    opts.resolver_preload = out


def check_operator_mode(opts, cfg):
    """The cross-key rules of nats-server validateTrustedOperators, and
    every preloaded account checked against the operators."""
    keys = [k for k in ("operator", "operators", "roots", "root", "root_operators",
                        "root_operator") if k in cfg]
    at = getattr(cfg, "key_pos", {}).get(keys[0]) if keys else None
    if not opts.operators:
        if opts.resolver_preload or opts.resolver:
            key = "resolver_preload" if opts.resolver_preload else "resolver"
            raise ConfigError("%s needs an operator (operator mode)" % key,
                              getattr(cfg, "key_pos", {}).get(key))
        return
    if not opts.resolver:
        raise ConfigError("operators require an account resolver to be configured", at)
    if getattr(opts, "accounts", None):
        raise ConfigError("operators do not allow Accounts to be configured directly", at)
    if opts.users or opts.nkeys:
        raise ConfigError("operators do not allow users to be configured directly", at)
    try:
        trust = OperatorTrust(opts.operators, opts.resolver_preload, opts.system_account)
    except TrustError as e:
        raise ConfigError(str(e), at) from None
    opts.system_account = trust.system_account
