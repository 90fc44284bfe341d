"""The authorization settings of a config file (issue 16): permissions blocks,
nkey users, no_auth_user, and the TLS and cluster keys that go with them.

Theory of operation: gnats.options walks a config file with tables of
handlers; the handlers for these keys live here, so that options.py stays a
table of plain settings. Each one checks its value the way nats-server 2.15's
opts.go does (keys case-insensitive, the same aliases) and raises
conf.ConfigError at the offending key or value (`FILE:LINE:COL: message`).

What they produce is plain, comparable data on Options: PermissionSpec
values (gnats.permissions), `nkeys` entries {"nkey", "permissions"}, and
flags. Until the connection path enforces them, a server must not start with
them and silently ignore them: `unsupported_settings(opts)` lists what is
set, with where it was written, for the start-up path to refuse.
"""

from typing import List, Optional, Tuple

from .conf import ConfigError, parse_duration
from .nkeys import decode_public, PREFIX_USER
from .permissions import PermissionSpec, ResponseRule, SubjectRule, go_quote

CONNECTION_TYPES = ("STANDARD", "WEBSOCKET", "LEAFNODE", "LEAFNODE_WS", "MQTT",
                    "MQTT_WS", "IN_PROCESS")
NOT_ENFORCED = "not enforced yet by this build (issue 16)"
# nats-server's DEFAULT_TLS_HANDSHAKE_FIRST_FALLBACK_DELAY ("auto")
HANDSHAKE_FIRST_AUTO_DELAY = 0.05

_PUB_KEYS = ("pub", "publish", "import")
_SUB_KEYS = ("sub", "subscribe", "export")
_RESP_KEYS = ("publish_allow_responses", "allow_responses")


# --- positions ----------------------------------------------------------------

def _pos(block, key, value=True):
    table = getattr(block, "value_pos" if value else "key_pos", {})
    return table.get(key)


def _items(block):
    """(lowercased key, original key, value) of a block, skipping variables
    that a value referenced (nats-server's IsUsedVariable)."""
    used = getattr(block, "used", ())
    for key in list(block):
        if key in used:
            continue
        yield key.lower(), key, block[key]


def remember(opts, key: str, pos) -> None:
    """Note that `key` was set at pos, for unsupported_settings."""
    seen = opts.__dict__.setdefault("_authz_set", [])
    seen.append((key, pos))


def _describe(v) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a float"
    if isinstance(v, dict):
        return "a block"
    if isinstance(v, list):
        return "an array"
    return "a string"


# --- subjects -------------------------------------------------------------------

def valid_subject(s: str) -> bool:
    """nats-server IsValidSubject: non-empty tokens, no whitespace, '>' last."""
    if not s:
        return False
    tokens = s.split(".")
    for i, t in enumerate(tokens):
        if not t or any(c in t for c in " \t\n\r\f"):
            return False
        if t == ">" and i != len(tokens) - 1:
            return False
    return True


def check_subject(entry: str, allow_queue: bool) -> Optional[str]:
    """nats-server checkPermSubjectArray's message for a bad entry, or None."""
    if valid_subject(entry):
        return None
    if not allow_queue:
        return "subject %s is not a valid subject" % _q(entry)
    parts = entry.split()
    if len(parts) != 2:
        return "subject %s is not a valid subject" % _q(entry)
    if not valid_subject(parts[0]):
        return "subject %s is not a valid subject" % _q(parts[0])
    if not valid_subject(parts[1]):
        return "queue %s is not a valid queue" % _q(parts[1])
    return None


def _q(s: str) -> str:
    return go_quote(s)


def _subjects(value, pos, where: str, allow_queue: bool) -> Tuple[str, ...]:
    """A subject or an array of subjects, each checked, as a tuple."""
    if isinstance(value, str):
        items, positions = [value], [pos]
    elif isinstance(value, list):
        items = value
        positions = list(getattr(value, "pos", [])) + [pos] * len(value)
    else:
        raise ConfigError("%s: expected a subject or an array of subjects, got %s"
                          % (where, _describe(value)), pos)
    out = []
    for item, at in zip(items, positions):
        if not isinstance(item, str):
            raise ConfigError("%s: subject in permissions array must be a string, got %s"
                              % (where, _describe(item)), at)
        problem = check_subject(item, allow_queue)
        if problem:
            raise ConfigError("%s: %s" % (where, problem), at)
        out.append(item)
    return tuple(out)


def _subject_rule(value, pos, where: str, allow_queue: bool) -> Optional[SubjectRule]:
    if not isinstance(value, dict):
        return SubjectRule(allow=_subjects(value, pos, where, allow_queue))
    if not value:
        return None             # `publish {}`: as nats-server, no rule at all
    got = {}
    for low, key, v in _items(value):
        if low not in ("allow", "deny"):
            raise ConfigError("%s: unknown field %s, only 'allow' or 'deny' are permitted"
                              % (where, _q(key)), _pos(value, key, value=False))
        got[low] = _subjects(v, _pos(value, key), "%s.%s" % (where, low), allow_queue)
    return SubjectRule(allow=got.get("allow"), deny=got.get("deny"))


def _response_rule(value, pos, where: str) -> Optional[ResponseRule]:
    if isinstance(value, bool):
        return ResponseRule() if value else None
    if not isinstance(value, dict):
        raise ConfigError("%s: expected a boolean or a block { max, expires }, got %s"
                          % (where, _describe(value)), pos)
    max_msgs, expires = ResponseRule.max_msgs, ResponseRule.expires
    for low, key, v in _items(value):
        at = _pos(value, key)
        if low in ("max", "max_msgs", "max_messages", "max_responses"):
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError("%s.%s: expected an integer, got %s"
                                  % (where, key, _describe(v)), at)
            if v != 0:          # 0 keeps the default; negative: no limit
                max_msgs = int(v)
        elif low in ("expires", "expiration", "ttl"):
            raw = getattr(v, "raw", None)   # `expires: 1m` written bare
            text = raw if raw is not None else v
            secs = parse_duration(text) if isinstance(text, str) else None
            if secs is None:
                raise ConfigError('%s.%s: expected a duration string like "1m", got %s'
                                  % (where, key, _describe(v)), at)
            if secs != 0:
                expires = secs
        else:
            raise ConfigError("%s: unknown field %s parsing permissions" % (where, _q(key)),
                              _pos(value, key, value=False))
    return ResponseRule(max_msgs=max_msgs, expires=expires)


def parse_permissions(value, pos, where: str, cluster: bool = False) -> PermissionSpec:
    """A `permissions { }` block as a PermissionSpec (nats-server
    parseUserPermissions). cluster: import/export, no queues, no responses."""
    if not isinstance(value, dict):
        raise ConfigError("%s: expected permissions to be a block { ... }, got %s"
                          % (where, _describe(value)), pos)
    publish = subscribe = response = None
    resp_at = None
    for low, key, v in _items(value):
        at = _pos(value, key)
        name = "%s.%s" % (where, key)
        if low in _PUB_KEYS:
            publish = _subject_rule(v, at, name, allow_queue=False)
        elif low in _SUB_KEYS:
            subscribe = _subject_rule(v, at, name, allow_queue=not cluster)
        elif low in _RESP_KEYS:
            response, resp_at = _response_rule(v, at, name), _pos(value, key, value=False)
        else:
            raise ConfigError("%s: unknown field %s parsing permissions" % (where, _q(key)),
                              _pos(value, key, value=False))
    if response is not None:
        if cluster:
            raise ConfigError("%s: cluster permissions do not support dynamic responses"
                              % where, resp_at)
        # allow_responses turns the blanket publish allow off (opts.go). Go
        # applies this in map order, so `publish { deny }` may or may not
        # keep "allow all"; we always turn it off, the safe reading.
        if publish is None or publish.allow is None:
            publish = SubjectRule(allow=(), deny=publish.deny if publish else None)
    return PermissionSpec(publish=publish, subscribe=subscribe, response=response)


# --- handlers for gnats.options' tables -------------------------------------

def user_entry_field(entry: dict, low: str, key: str, value, name: str):
    """One key of a users[] entry beyond user/password: ("nkey", str),
    ("permissions", PermissionSpec), ... or None when the key is unknown."""
    at = _pos(entry, key)
    if low == "nkey":
        if not isinstance(value, str):
            raise ConfigError("%s.%s: expected a string, got %s" % (name, key, _describe(value)), at)
        try:
            decode_public(value, PREFIX_USER)
        except ValueError as e:
            raise ConfigError("%s.%s: not a valid public nkey for a user (%s)"
                              % (name, key, str(e).replace("nkeys: ", "")), at) from None
        return "nkey", value
    if low in ("permission", "permissions", "authorization"):
        return "permissions", parse_permissions(value, at, "%s.%s" % (name, key))
    if low in ("allowed_connection_types", "connection_types", "clients"):
        items = value if isinstance(value, list) else None
        if items is None or not all(isinstance(i, str) for i in items):
            raise ConfigError("%s.%s: expected an array of connection types" % (name, key), at)
        unknown = [i.upper() for i in items if i.upper() not in CONNECTION_TYPES]
        if unknown:
            raise ConfigError("%s.%s: invalid connection types [%s]"
                              % (name, key, " ".join(_q(u) for u in unknown)), at)
        return "allowed_connection_types", tuple(i.upper() for i in items)
    if low == "proxy_required":
        if not isinstance(value, bool):
            raise ConfigError("%s.%s: expected a boolean, got %s" % (name, key, _describe(value)), at)
        return "proxy_required", value
    return None


def check_user_entry(u: dict, pos) -> None:
    """nats-server parseUsers' rules once an entry is read."""
    if u.get("nkey") and (u.get("user") or u.get("password")):
        raise ConfigError("nkey users do not take usernames or passwords", pos)


def default_permissions(opts, f) -> None:
    opts.default_permissions = parse_permissions(f.value, f.value_pos, f.name)
    remember(opts, f.name, f.key_pos)


def cluster_permissions(opts, f) -> None:
    opts.cluster_permissions = parse_permissions(f.value, f.value_pos, f.name, cluster=True)
    remember(opts, f.name, f.key_pos)


def no_auth_user(opts, f) -> None:
    opts.no_auth_user = f.str()
    opts.__dict__["_no_auth_user_pos"] = f.value_pos


def allow_non_tls(opts, f) -> None:
    opts.allow_non_tls = f.bool()


def tls_verify_and_map(prefix: str):
    def handler(opts, f):
        on = f.bool()
        setattr(opts, prefix + "tls_verify_and_map", on)
        if on:                  # as nats-server: mapping implies verify
            setattr(opts, prefix + "tls_verify", True)
            if prefix:          # routes do not map certificates yet
                remember(opts, f.name, f.key_pos)
    return handler


def tls_handshake_first(opts, f) -> None:
    """true/false, "true"/"on"/"false"/"off", "auto" or a duration: the
    fallback delay after which a plain-INFO client is still accepted."""
    v = f.value
    first, delay = False, 0.0
    if isinstance(v, bool):
        first = v
    elif isinstance(v, str):
        low = v.lower()
        if low in ("true", "on"):
            first = True
        elif low in ("false", "off"):
            first = False
        elif low in ("auto", "auto_fallback"):
            first, delay = True, HANDSHAKE_FIRST_AUTO_DELAY
        else:
            secs = parse_duration(v)
            if secs is None:
                f.fail('field %s\'s value %s is invalid' % (_q(f.key), _q(v)))
            first, delay = True, secs
    else:
        f.fail("field %s should be a boolean or a string, got %s" % (_q(f.key), _describe(v)))
    opts.tls_handshake_first = first
    opts.tls_handshake_first_fallback = delay


def check_no_auth_user(opts) -> None:
    """nats-server validateNoAuthUser, positioned at the no_auth_user value."""
    name = opts.no_auth_user
    if not name:
        return
    pos = opts.__dict__.get("_no_auth_user_pos")
    from .accounts_conf import all_users
    users, nkeys = all_users(opts)      # the accounts' users count too
    if not users and not nkeys:
        raise ConfigError('no_auth_user: "%s" present, but users/nkeys are not defined'
                          % name, pos)
    if any(u.get("user") == name for u in users) or \
            any(n.get("nkey") == name for n in nkeys):
        return
    raise ConfigError('no_auth_user: "%s" not present as user or nkey in authorization '
                      'block or account configuration' % name, pos)


# --- what the running server cannot honour yet ---------------------------------

# Enforced (issue 16): users' permissions, default_permissions (and its
# aliases), cluster permissions; allow_responses is inside permissions.
PERMISSION_KEYS = ("permission", "permissions", "default_permission", "default_permissions")


def unsupported_settings(opts) -> List[Tuple[str, object]]:
    """(key, position or None) of each authorization setting in opts that the
    connection path does not enforce yet; empty when there is none. The
    start-up path (and a reload) must refuse a non-empty answer, e.g.
    `FILE:LINE:COL: permissions: not enforced yet by this build (issue 16)`."""
    found = list(opts.__dict__.get("_authz_set", []))
    found = [(k, p) for k, p in found if k.rsplit(".", 1)[-1] not in PERMISSION_KEYS]
    keys = {k for k, _ in found}

    def add(key, present):
        if present and not any(k == key or k.endswith("." + key) for k in keys):
            found.append((key, None))
    # Options built in code (the embed API) have no positions: look at values.
    add("verify_and_map", opts.cluster_tls_verify_and_map)     # routes map no certificates
    return found


def unsupported_message(key: str, pos) -> str:
    text = "%s: %s" % (key, NOT_ENFORCED)
    return "%s: %s" % (pos, text) if pos else text


def refuse_unenforced(opts) -> None:
    """Raise ValueError naming the first authorization setting the running
    server would not enforce yet (and check no_auth_user as nats-server does
    at start): a config must never load and then be silently ignored. Called
    by Server() and by reload."""
    check_no_auth_user(opts)
    found = unsupported_settings(opts)
    if found:
        raise ValueError(unsupported_message(*found[0]))
