"""The typed claims of NATS JWTs (as nats-io/jwt v2 reads them): operator,
account, user and activation, with nats-server's blocking validation issues
and the connect-time checks a user's claims carry (`src` CIDRs, `times`
windows, revocations).

Version 2 claims keep everything NATS-specific under `nats` (with its own
`type` and `version`); version 1 had `type` (and a user's `issuer_account`,
tags) at the top level. The classes read both. Everything comes from a
token, so it is hostile input: a wrong JSON type anywhere is a JWTError
with a short message, never another exception. gnats.jwt decodes and
verifies tokens into these classes.
"""

import datetime
import ipaddress
import json
import re
import time

from .nkeys import (PREFIX_ACCOUNT, PREFIX_CLUSTER, PREFIX_OPERATOR, PREFIX_SERVER,
                    PREFIX_USER, decode_public)

NO_LIMIT = -1
ALL_REVOKED = "*"                   # a revocations key that covers every user
CONNECTION_TYPES = ("STANDARD", "WEBSOCKET", "LEAFNODE", "LEAFNODE_WS", "MQTT",
                    "MQTT_WS", "IN_PROCESS")

_KEY_PREFIXES = {"U": PREFIX_USER, "A": PREFIX_ACCOUNT, "O": PREFIX_OPERATOR,
                 "N": PREFIX_SERVER, "C": PREFIX_CLUSTER}

class JWTError(ValueError):
    """A token that cannot be used; the message says why."""


# --- keys and encodings -------------------------------------------------------

def is_public_key(key, kind: str) -> bool:
    """Is `key` a well-formed public nkey of `kind` ("U", "A", "O", ...)?"""
    try:
        decode_public(key, _KEY_PREFIXES[kind])
    except (ValueError, KeyError):
        return False
    return True


def raw_key(key) -> bytes:
    """The Ed25519 key of any public nkey (nkeys.FromPublicKey)."""
    if not isinstance(key, str) or not key:
        raise JWTError("issuer is not a public nkey")
    prefix = _KEY_PREFIXES.get(key[0])
    if prefix is None:
        raise JWTError("issuer is not a public nkey")
    try:
        return decode_public(key, prefix)
    except ValueError as e:
        raise JWTError("issuer is not a public nkey (%s)" % e) from None


# --- typed field readers (a wrong JSON type is a JWTError) -------------------

def _get(d, key, kind, default, what):
    v = d.get(key, default)
    if v is None:
        return default
    if kind is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif kind is float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    else:
        ok = isinstance(v, kind)
    if not ok:
        raise JWTError("%s: %s has the wrong type" % (what, key))
    return v


def _str(d, key, what):
    return _get(d, key, str, "", what)


def _int(d, key, what, default=0):
    return _get(d, key, int, default, what)


def _bool(d, key, what):
    return _get(d, key, bool, False, what)


def _obj(d, key, what):
    return _get(d, key, dict, {}, what)


def _strs(d, key, what):
    v = _get(d, key, list, [], what)
    if not all(isinstance(x, str) for x in v):
        raise JWTError("%s: %s must be a list of strings" % (what, key))
    return tuple(v)


# --- claims -------------------------------------------------------------------

class Claims:
    """The fields every NATS JWT has. `nats` is the NATS-specific object
    (v2: the claims' `nats`; v1: the same, with `type`/tags at the top)."""

    kind = "generic"
    issuer_prefixes = ()            # the key kinds allowed to sign it

    def __init__(self, data: dict, version: int, token: str = ""):
        w = self.kind + " JWT"
        self.token = token
        self.data = data
        self.version = version
        self.audience = _get(data, "aud", (str, list), "", w)
        self.expires = _int(data, "exp", w)
        self.id = _str(data, "jti", w)
        self.issued_at = _int(data, "iat", w)
        self.issuer = _str(data, "iss", w)
        self.name = _str(data, "name", w)
        self.not_before = _int(data, "nbf", w)
        self.subject = _str(data, "sub", w)
        self.nats = _obj(data, "nats", w)
        self.tags = _strs(data if version == 1 else self.nats, "tags", w)

    def validate(self, now=None):
        """Blocking issues (nats-server's ValidationResults.IsBlocking(true)),
        as a list of messages; empty when the claim is usable now."""
        now = int(time.time()) if now is None else now
        issues = []
        if self.expires > 0 and now > self.expires:
            issues.append("claim is expired")
        if self.not_before > 0 and self.not_before > now:
            issues.append("claim is not yet valid")
        return issues

    def expired(self, now=None) -> bool:
        now = int(time.time()) if now is None else now
        return self.expires > 0 and now > self.expires

    def __repr__(self):
        return "<%s claims %s iss=%s>" % (self.kind, self.subject, self.issuer)


class SubjectRule:
    """A JWT permission list pair: allow and deny, each possibly empty."""

    __slots__ = ("allow", "deny")

    def __init__(self, d, what):
        self.allow = _strs(d, "allow", what)
        self.deny = _strs(d, "deny", what)


class UserPermissionLimits:
    """What a user may do: the `nats` part of a user JWT and the template of
    a scoped signing key (pub, sub, resp, src, times, limits, bearer,
    connection types)."""

    def __init__(self, d: dict, what: str, version: int = 2, unlimited: bool = False):
        self.pub = SubjectRule(_obj(d, "pub", what), what + " pub")
        self.sub = SubjectRule(_obj(d, "sub", what), what + " sub")
        resp = _get(d, "resp", dict, None, what)
        # resp: {"max": n, "ttl": nanoseconds}
        self.resp = None if resp is None else (_int(resp, "max", what), _int(resp, "ttl", what))
        src = d.get("src")
        if isinstance(src, str):        # CIDRList also reads "a,b,c"
            src = [s for s in src.lower().split(",") if s]
        elif src is None:
            src = []
        if not isinstance(src, list) or not all(isinstance(s, str) for s in src):
            raise JWTError("%s: src has the wrong type" % what)
        self.src = tuple(s.strip().lower() for s in src if s.strip())
        times = _get(d, "times", list, [], what)
        self.times = []
        for t in times:
            if not isinstance(t, dict):
                raise JWTError("%s: times has the wrong type" % what)
            self.times.append((_str(t, "start", what), _str(t, "end", what)))
        self.times_location = _str(d, "times_location", what)
        # v1 claims and scope templates default the NATS limits to "none"
        dflt = NO_LIMIT if (version == 1 or unlimited) else 0
        self.subs = _int(d, "subs", what, dflt)
        self.data = _int(d, "data", what, dflt)
        self.payload = _int(d, "payload", what, dflt)
        self.bearer_token = _bool(d, "bearer_token", what)
        self.proxy_required = _bool(d, "proxy_required", what)
        self.allowed_connection_types = _strs(d, "allowed_connection_types", what)

    def is_empty(self) -> bool:
        """No permissions or limits at all (what a scoped signing key
        requires of the users it signs)."""
        return not (self.pub.allow or self.pub.deny or self.sub.allow or self.sub.deny
                    or self.resp is not None or self.src or self.times
                    or self.times_location or self.subs or self.data or self.payload
                    or self.bearer_token or self.proxy_required
                    or self.allowed_connection_types)

    def issues(self):
        out = []
        for rule, queue in ((self.pub, False), (self.sub, True)):
            for subj in rule.allow + rule.deny:
                out.extend(_permission_issues(subj, queue))
        for cidr in self.src:
            try:
                ipaddress.ip_network(cidr, strict=False)
                if "/" not in cidr:
                    raise ValueError
            except ValueError:
                out.append("invalid cidr %s in user src limits" % json.dumps(cidr))
        for start, end in self.times:
            if not start:
                out.append("time ranges start must contain a start")
            elif _clock(start) is None:
                out.append("start in time range is invalid %s" % json.dumps(start))
            if not end:
                out.append("time ranges end must contain an end")
            elif _clock(end) is None:
                out.append("end in time range is invalid %s" % json.dumps(end))
        if self.times_location and _zone(self.times_location) is None:
            out.append("could not parse iana time zone by name: %s" % self.times_location)
        return out


def _subject_issues(v: str):
    if not v:
        return ["subject cannot be empty"]
    out = []
    if " " in v:
        out.append("subject %s cannot have spaces" % json.dumps(v))
    if v[0] == "." or v[-1] == ".":
        out.append("subject %s cannot start or end with a `.`" % json.dumps(v))
    if ".." in v:
        out.append("subject %s cannot contain consecutive `.`" % json.dumps(v))
    return out


def _permission_issues(subj: str, permit_queue: bool):
    tk = subj.split(" ")
    if len(tk) == 1:
        return _subject_issues(tk[0])
    if len(tk) == 2:
        out = _subject_issues(tk[0]) + _subject_issues(tk[1])
        if not permit_queue:
            out.append('Permission Subject "%s" is not allowed to contain queue' % subj)
        return out
    return ['Permission Subject "%s" contains too many spaces' % subj]


def _clock(text: str):
    """"15:04:05" -> seconds into the day, or None."""
    m = re.match(r"^(\d{2}):(\d{2}):(\d{2})$", text)
    if not m:
        return None
    h, mi, s = (int(x) for x in m.groups())
    if h > 23 or mi > 59 or s > 59:
        return None
    return h * 3600 + mi * 60 + s


def _zone(name: str):
    try:
        import zoneinfo
        return zoneinfo.ZoneInfo(name)
    except Exception:               # unknown name, no tz database, bad text
        return None


class UserClaims(Claims):
    kind = "user"
    issuer_prefixes = ("A",)

    def __init__(self, data, version, token=""):
        Claims.__init__(self, data, version, token)
        w = "user JWT"
        src = data if version == 1 else self.nats
        self.issuer_account = _str(src, "issuer_account", w)
        self.limits = UserPermissionLimits(self.nats, w, version)

    def validate(self, now=None):
        issues = Claims.validate(self, now) + self.limits.issues()
        if self.issuer_account and not is_public_key(self.issuer_account, "A"):
            issues.append("account_id is not an account public key")
        return issues

    @property
    def account(self) -> str:
        """The account this user belongs to: its issuer, or issuer_account
        when an account signing key signed it."""
        return self.issuer_account or self.issuer


class UserScope:
    """A scoped signing key: users it signs get `template`'s permissions and
    limits, never their own."""

    def __init__(self, d, what):
        self.key = _str(d, "key", what)
        self.role = _str(d, "role", what)
        self.description = _str(d, "description", what)
        self.template = UserPermissionLimits(_obj(d, "template", what), what + " template",
                                             unlimited=True)


class Export:
    __slots__ = ("name", "subject", "type", "token_req", "revocations", "response_type",
                 "response_threshold", "account_token_position", "advertise")

    def __init__(self, d, what):
        self.name = _str(d, "name", what)
        self.subject = _str(d, "subject", what)
        self.type = _str(d, "type", what)
        self.token_req = _bool(d, "token_req", what)
        self.revocations = _revocations(d, what)
        self.response_type = _str(d, "response_type", what)
        self.response_threshold = _int(d, "response_threshold", what)
        self.account_token_position = _int(d, "account_token_position", what)
        self.advertise = _bool(d, "advertise", what)


class Import:
    __slots__ = ("name", "subject", "account", "token", "local_subject", "to", "type", "share")

    def __init__(self, d, what):
        self.name = _str(d, "name", what)
        self.subject = _str(d, "subject", what)
        self.account = _str(d, "account", what)
        self.token = _str(d, "token", what)
        self.local_subject = _str(d, "local_subject", what)
        # deprecated: a stream's prefix, a service's subject in the exporter
        self.to = _str(d, "to", what)
        self.type = _str(d, "type", what)
        self.share = _bool(d, "share", what)


def _revocations(d, what):
    rev = _obj(d, "revocations", what)
    for k, v in rev.items():
        if isinstance(v, bool) or not isinstance(v, int):
            raise JWTError("%s: revocations has the wrong type" % what)
    return dict(rev)


def is_revoked(revocations: dict, key: str, issued_at: int) -> bool:
    """nats-server isRevoked: revoked when the revocation (of this key, or
    of "*") is at or after the moment the JWT was issued."""
    if not revocations:
        return False
    t = revocations.get(key)
    if t is not None and t >= issued_at:
        return True
    t = revocations.get(ALL_REVOKED)
    return t is not None and t >= issued_at


class AccountLimits:
    """The account's `limits` (NatsLimits, AccountLimits; JetStream ones are
    kept raw). -1 (NO_LIMIT) is unlimited; absent is 0 in v2 claims."""

    def __init__(self, d, what):
        self.subs = _int(d, "subs", what)
        self.data = _int(d, "data", what)
        self.payload = _int(d, "payload", what)
        self.imports = _int(d, "imports", what)
        self.exports = _int(d, "exports", what)
        self.wildcards = _bool(d, "wildcards", what)
        self.disallow_bearer = _bool(d, "disallow_bearer", what)
        self.conn = _int(d, "conn", what)
        self.leaf = _int(d, "leaf", what)
        self.raw = dict(d)

    def is_empty(self) -> bool:
        return not self.raw


class AccountClaims(Claims):
    kind = "account"
    issuer_prefixes = ("A", "O")

    def __init__(self, data, version, token=""):
        Claims.__init__(self, data, version, token)
        w = "account JWT"
        n = self.nats
        self.imports = [Import(_dict(i, w + " import"), w + " import")
                        for i in _get(n, "imports", list, [], w)]
        self.exports = [Export(_dict(e, w + " export"), w + " export")
                        for e in _get(n, "exports", list, [], w)]
        self.limits = AccountLimits(_obj(n, "limits", w), w + " limits")
        # signing keys: plain keys, or scopes {"kind": "user_scope", ...}
        self.signing_keys = {}
        for k in _get(n, "signing_keys", list, [], w):
            if isinstance(k, str):
                self.signing_keys[k] = None
            elif isinstance(k, dict) and k.get("kind") == "user_scope":
                scope = UserScope(k, w + " signing key")
                self.signing_keys[scope.key] = scope
            else:
                raise JWTError("%s: unknown signing key scope" % w)
        self.revocations = _revocations(n, w)
        dp = _obj(n, "default_permissions", w)
        self.default_permissions = UserPermissionLimits(dp, w + " default_permissions")
        self.mappings = _obj(n, "mappings", w)
        self.description = _str(n, "description", w)

    def validate(self, now=None):
        issues = Claims.validate(self, now)
        for k, scope in self.signing_keys.items():
            if not is_public_key(k, "A"):
                issues.append("%s is not an account public key" % k)
        for e in self.exports:
            issues.extend(_subject_issues(e.subject))
            if e.type not in ("stream", "service"):
                issues.append("unknown export type %s" % json.dumps(e.type))
        for i in self.imports:
            issues.extend(_subject_issues(i.subject))
            if not is_public_key(i.account, "A"):
                issues.append("account to import from is not a valid public account key")
            if i.type not in ("stream", "service"):
                issues.append("unknown import type %s" % json.dumps(i.type))
        lim = self.limits
        if lim.imports != NO_LIMIT and not lim.is_empty() and len(self.imports) > lim.imports:
            issues.append("the account contains more imports than allowed by the operator")
        if lim.exports != NO_LIMIT and not lim.is_empty():
            if len(self.exports) > lim.exports:
                issues.append("the account contains more exports than allowed by the operator")
            if not lim.wildcards and any(_has_wildcards(e.subject) for e in self.exports):
                issues.append("the account contains wildcard exports that are not allowed "
                              "by the operator")
        return issues

    def signed_user(self, user: "UserClaims") -> bool:
        """Did this account (or one of its signing keys) sign `user`?"""
        if user.issuer == self.subject:
            return True
        return user.issuer_account == self.subject and user.issuer in self.signing_keys

    def user_revoked(self, user: "UserClaims") -> bool:
        """AccountClaims.IsClaimRevoked: no iat counts as revoked."""
        if not user.issued_at or not user.subject:
            return True
        return is_revoked(self.revocations, user.subject, user.issued_at)


def subject_contained_in(subject: str, other: str) -> bool:
    """jwt Subject.IsContainedIn: every subject `subject` matches is one
    `other` matches."""
    mine, theirs = subject.split("."), other.split(".")
    if len(mine) > len(theirs) and theirs[-1] != ">":
        return False
    if len(mine) < len(theirs):
        return False
    for i, tok in enumerate(theirs):
        if i == len(theirs) - 1 and tok == ">":
            return True
        if tok != mine[i] and tok != "*":
            return False
    return True


def _dict(v, what):
    if not isinstance(v, dict):
        raise JWTError("%s has the wrong type" % what)
    return v


def _has_wildcards(v: str) -> bool:
    return (v.endswith(".>") or ".*." in v or v.endswith(".*") or v.startswith("*.")
            or v in ("*", ">"))


class OperatorClaims(Claims):
    kind = "operator"
    issuer_prefixes = ("O",)

    def __init__(self, data, version, token=""):
        Claims.__init__(self, data, version, token)
        w = "operator JWT"
        n = self.nats
        self.signing_keys = _strs(n, "signing_keys", w)
        self.account_server_url = _str(n, "account_server_url", w)
        self.operator_service_urls = _strs(n, "operator_service_urls", w)
        self.system_account = _str(n, "system_account", w)
        self.assert_server_version = _str(n, "assert_server_version", w)
        self.strict_signing_key_usage = _bool(n, "strict_signing_key_usage", w)

    def validate(self, now=None):
        issues = Claims.validate(self, now)
        for k in self.signing_keys:
            if not is_public_key(k, "O"):
                issues.append("%s is not an operator public key" % k)
        if self.system_account and not is_public_key(self.system_account, "A"):
            issues.append("%s is not an account public key" % self.system_account)
        return issues

    def trusted_keys(self):
        """The keys whose signature on an account JWT this operator vouches
        for (nats-server validateTrustedOperators)."""
        own = () if self.strict_signing_key_usage else (self.subject,)
        return own + self.signing_keys


class ActivationClaims(Claims):
    """An export's activation token: the exporting account (or its signing
    key, with issuer_account) lets the account in `sub` import `subject`."""
    kind = "activation"
    issuer_prefixes = ("A", "O")

    def __init__(self, data, version, token=""):
        Claims.__init__(self, data, version, token)
        w = "activation JWT"
        n = self.nats
        self.import_subject = _str(n, "subject", w)
        self.import_type = _str(n, "kind", w)
        src = data if version == 1 else n
        self.issuer_account = _str(src, "issuer_account", w)


# --- connect time windows (nats-server validateTimes) ------------------------

def time_window(limits: UserPermissionLimits, now=None):
    """(allowed now, seconds it stays allowed; 0 = no window) for the
    user's `times` ranges, read in `times_location` (else local time)."""
    if not limits.times:
        return True, 0.0
    tz = _zone(limits.times_location) if limits.times_location else None
    if limits.times_location and tz is None:
        return False, 0.0
    ts = time.time() if now is None else now
    local = datetime.datetime.fromtimestamp(ts, tz) if tz else datetime.datetime.fromtimestamp(ts)
    secs = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    ok, valid_for = False, 0.0
    for start_text, end_text in limits.times:
        start, end = _clock(start_text), _clock(end_text)
        if start is None or end is None:
            return False, 0.0
        left = None
        if start < secs < end:
            left = end - secs
        elif start > end:               # the range wraps past midnight
            if end > secs:
                left = end - secs
            elif start < secs:
                left = end + 86400 - secs
        if left is not None and (not ok or left > valid_for):
            ok, valid_for = True, left
    return ok, valid_for


def source_allowed(limits: UserPermissionLimits, host: str) -> bool:
    """nats-server validateSrc: no `src` allows any address; else the
    client's address must be inside one of the CIDRs."""
    if not limits.src:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    for cidr in limits.src:
        try:
            if ip in ipaddress.ip_network(cidr, strict=False):
                return True
        except ValueError:
            return False
    return False
