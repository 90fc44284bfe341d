"""The `accounts { }` config block, as nats-server 2.15's parseAccounts reads it.

    accounts {
      A: {
        users: [ {user: a, password: pwd, permissions: {...}}, {nkey: U...} ]
        default_permissions: { ... }
        exports: [ {stream: "pub.>"}, {service: "svc.>", response_type: stream,
                    accounts: [B]} ]
        imports: [ {stream: {account: B, subject: "x.>"}, prefix: "fromB"},
                   {service: {account: B, subject: "req"}, to: "b.req"} ]
        limits: { max_connections: 10, max_subscriptions: 100, max_payload: 1024 }
        mappings: { "orders.*": "orders.v2.$1" }     # gnats/mapping.py
        jetstream: enabled      # or disabled, or { max_mem: 1G, max_file: 10G,
                                #   max_streams: 10, max_consumers: 100 }
      }
      B: { ... }
    }

`parse_accounts` turns it into `AccountSpec`s on `opts.accounts` (pure data,
compared on reload) and checks what nats-server checks at load, with its
texts: reserved names, users unique across accounts and the authorization
block, and every import against the exporter's exports ("Error adding
stream import "x.>": stream import not authorized", to which we add the two
accounts). The account users stay in their specs; `all_users(opts)` gives
the authorization block's users and theirs together (auth.py, authz.py).
"""

from .conf import ConfigError
from .sublist import valid_subject

RESERVED = ("$G",)      # nats-server isReservedAccount: the global account only
RESPONSE_TYPES = {"single": "Singleton", "singleton": "Singleton", "stream": "Streamed",
                  "chunk": "Chunked", "chunked": "Chunked"}
DEFAULT_RESPONSE_THRESHOLD = 120.0      # nats-server DEFAULT_SERVICE_EXPORT_RESPONSE_THRESHOLD


class AccountSpec:
    """One configured account. Equality ignores positions (a reload of the
    same accounts moved to other lines changes nothing)."""

    def __init__(self, name, pos=None):
        self.name = name
        self.pos = pos
        self.users = []             # as options._users gives them, with "account"
        self.nkeys = []
        self.exports = []           # dicts: kind, subject, accounts (tuple or None), response_type, threshold
        self.imports = []           # dicts: kind, account, subject, to, prefix, share; "_pos"
        self.limits = {}            # max_connections, max_subscriptions, max_payload
        self.mappings = None        # gnats.mapping.Mappings, or None
        self.default_permissions = None
        # JetStream limits as $JS.API.INFO shows them ({} is unlimited), or
        # None when the account has no JetStream
        self.jetstream = None

    def _key(self):
        strip = lambda ds: [{k: v for k, v in d.items() if not k.startswith("_")} for d in ds]
        return (self.name, self.users, self.nkeys, strip(self.exports), strip(self.imports),
                self.limits, self.mappings, self.default_permissions, self.jetstream)

    def __eq__(self, other):
        return isinstance(other, AccountSpec) and self._key() == other._key()

    def __ne__(self, other):
        return not self == other

    def __repr__(self):
        return "<AccountSpec %s>" % self.name


def all_users(opts):
    """(password users, nkey users) of the authorization block and of every
    account, each account user's dict naming its account."""
    users = list(opts.users or [])
    nkeys = list(opts.nkeys or [])
    for spec in getattr(opts, "accounts", None) or []:
        users.extend(spec.users)
        nkeys.extend(spec.nkeys)
    return users, nkeys


def _pos(block, key):
    return getattr(block, "key_pos", {}).get(key)


def _vpos(block, key):
    return getattr(block, "value_pos", {}).get(key)


def parse_accounts(opts, f):
    """options.py's handler for the top-level `accounts` key."""
    from .options import _Field, _users, _walk
    value = f.value
    specs = []
    if isinstance(value, list):
        # accounts: [A, B]: names only
        seen = set()
        for name, pos in f.str_list():
            if name in RESERVED:
                raise ConfigError('"%s" is a Reserved Account' % name, pos)
            if name in seen:
                raise ConfigError("Duplicate Account Entry: %s" % name, pos)
            seen.add(name)
            specs.append(AccountSpec(name, pos))
        opts.accounts = specs
        return
    block = f.block_value()
    for name in list(block):
        if name in getattr(block, "used", ()):
            continue
        body = block[name]
        pos = _pos(block, name)
        if not isinstance(body, dict):
            raise ConfigError("Expected map entries for accounts", _vpos(block, name))
        if name in RESERVED:
            raise ConfigError('"%s" is a Reserved Account' % name, pos)
        spec = AccountSpec(name, pos)
        saved_nkeys = opts.nkeys
        where = "accounts.%s." % name

        def users(o, g, spec=spec):
            spec.users = _users(o, g, g.name)
            spec.nkeys = opts.nkeys
            spec.__dict__["_users_pos"] = g.key_pos

        def default_perms(o, g, spec=spec):
            from .authz import parse_permissions
            spec.default_permissions = parse_permissions(g.value, g.value_pos, g.name)

        def mappings(o, g, spec=spec):
            from .mapping import parse_mappings
            ms = parse_mappings(g.block_value(), pos=g.value_pos)
            spec.mappings = ms if len(ms) else None     # an empty block costs nothing

        table = {
            "users": users,
            "default_permissions": default_perms,
            "exports": lambda o, g, spec=spec: _exports(spec, g),
            "imports": lambda o, g, spec=spec: _imports(spec, g),
            "limits": lambda o, g, spec=spec: _limits(spec, g),
            "mappings": mappings,
            "maps": mappings,
            "jetstream": lambda o, g, spec=spec: _jetstream(spec, g),
        }
        try:
            _walk(opts, body, table, where)
        finally:
            opts.nkeys = saved_nkeys
        for u in spec.users + spec.nkeys:
            u["account"] = name
            if u.get("permissions") is None and spec.default_permissions is not None:
                u["permissions"] = spec.default_permissions
            u["_account_user"] = True
        specs.append(spec)
    opts.accounts = specs
    _check_links(specs, f.key_pos)


def _subject(v, pos, what):
    if not isinstance(v, str) or not valid_subject(v):
        raise ConfigError("%s: invalid subject %r" % (what, v), pos)
    return v


def _exports(spec, g):
    arr = g.value
    if not isinstance(arr, list):
        g.fail("Exports should be an array, got %s" % type(arr).__name__)
    positions = getattr(arr, "pos", [])
    for i, item in enumerate(arr):
        at = positions[i] if i < len(positions) else g.value_pos
        if not isinstance(item, dict):
            raise ConfigError("Export Items should be a map with type entry, got %s"
                              % type(item).__name__, at)
        e = {"kind": None, "subject": None, "accounts": None, "response_type": "Singleton",
             "threshold": DEFAULT_RESPONSE_THRESHOLD, "_pos": at}
        rt_seen = False
        for key, v in item.items():
            low = key.lower()
            kp = _pos(item, key) or at
            if low in ("stream", "service"):
                if e["kind"] is not None:
                    raise ConfigError("Detected %s %r but already saw a %s" % (low, v, e["kind"]), kp)
                e["kind"] = low
                e["subject"] = _subject(v, kp, "%s export" % low)
            elif low in ("response", "response_type"):
                if not isinstance(v, str) or v.lower() not in RESPONSE_TYPES:
                    raise ConfigError("Unknown response type: %r" % (v,), kp)
                e["response_type"] = RESPONSE_TYPES[v.lower()]
                rt_seen = True
            elif low in ("threshold", "response_threshold", "response_max_time", "response_time"):
                from .conf import parse_duration
                secs = parse_duration(v) if isinstance(v, str) else None
                if secs is None:
                    raise ConfigError("Expected response threshold to be a parseable time "
                                      "duration, got %r" % (v,), kp)
                e["threshold"] = secs
                rt_seen = True
            elif low == "accounts":
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise ConfigError("accounts: expected an array of account names", kp)
                e["accounts"] = tuple(v)
            elif key not in getattr(item, "used", ()):
                raise ConfigError('unknown field "%s"' % key, kp)
        if e["kind"] is None:
            raise ConfigError("Export Items should have a stream or a service", at)
        if e["kind"] == "stream" and rt_seen:
            raise ConfigError("Detected response directive on non-service", at)
        spec.exports.append(e)


def _imports(spec, g):
    arr = g.value
    if not isinstance(arr, list):
        g.fail("Imports should be an array, got %s" % type(arr).__name__)
    positions = getattr(arr, "pos", [])
    for i, item in enumerate(arr):
        at = positions[i] if i < len(positions) else g.value_pos
        if not isinstance(item, dict):
            raise ConfigError("Import Items should be a map with type entry, got %s"
                              % type(item).__name__, at)
        im = {"kind": None, "account": None, "subject": None, "to": "", "prefix": "",
              "share": False, "_pos": at}
        for key, v in item.items():
            low = key.lower()
            kp = _pos(item, key) or at
            if low in ("stream", "service"):
                if im["kind"] is not None:
                    raise ConfigError("Detected %s but already saw a %s" % (low, im["kind"]), kp)
                if not isinstance(v, dict):
                    raise ConfigError("%s entry should be an account map, got %s"
                                      % (low.capitalize(), type(v).__name__), kp)
                for k2, v2 in v.items():
                    if k2.lower() == "account" and isinstance(v2, str):
                        im["account"] = v2
                    elif k2.lower() == "subject" and isinstance(v2, str):
                        im["subject"] = v2
                    elif k2 not in getattr(v, "used", ()):
                        raise ConfigError('unknown field "%s"' % k2, _pos(v, k2) or kp)
                if not im["account"] or not im["subject"]:
                    raise ConfigError("Expect an account name and a subject", kp)
                _subject(im["subject"], kp, "%s import" % low)
                im["kind"] = low
            elif low == "prefix":
                if not isinstance(v, str):
                    raise ConfigError("prefix: expected a string", kp)
                im["prefix"] = v
            elif low == "to":
                if not isinstance(v, str):
                    raise ConfigError("to: expected a string", kp)
                im["to"] = v
            elif low == "share":
                im["share"] = bool(v)
            elif key not in getattr(item, "used", ()):
                raise ConfigError('unknown field "%s"' % key, kp)
        if im["kind"] is None:
            raise ConfigError("Import Items should have a stream or a service", at)
        if im["kind"] == "stream" and im["prefix"] and im["to"]:
            raise ConfigError("Stream import can not have a 'prefix' and a 'to' property", at)
        if im["kind"] == "service" and not im["to"]:
            im["to"] = im["subject"]
        local = local_subject(im)
        if not valid_subject(local):
            raise ConfigError("%s import: invalid local subject %r" % (im["kind"], local), at)
        if im["kind"] == "service":
            for other in spec.imports:
                if other["kind"] == "service" and other["to"] == im["to"] \
                        and other["account"] == im["account"]:
                    raise ConfigError('Duplicate service import subject "%s", previously used in '
                                      'import for account "%s", subject "%s"'
                                      % (im["to"], other["account"], other["subject"]), at)
        spec.imports.append(im)


def local_subject(im):
    """The subject an import shows in the importing account."""
    if im["kind"] == "stream":
        if im["prefix"]:
            return im["prefix"].rstrip(".") + "." + im["subject"]
        return im["to"] or im["subject"]
    return im["to"] or im["subject"]


_LIMIT_KEYS = {"max_connections": "max_connections", "max_conn": "max_connections",
               "max_subscriptions": "max_subscriptions", "max_subs": "max_subscriptions",
               "max_payload": "max_payload", "max_pay": "max_payload",
               "max_leafnodes": None, "max_leafs": None}


def _limits(spec, g):
    block = g.block_value()
    for key, v in block.items():
        low = key.lower()
        if low not in _LIMIT_KEYS:
            if key in getattr(block, "used", ()):
                continue
            raise ConfigError('Unknown field "%s" parsing account limits' % key, _pos(block, key))
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError("%s.%s: expected an integer" % (g.name, key), _vpos(block, key))
        if _LIMIT_KEYS[low]:
            spec.limits[_LIMIT_KEYS[low]] = int(v)


# nats-server parseJetStreamForAccount: key (lower case) -> (limit, kind)
_JS_KEYS = {}
for _names, _limit, _kind in (
        (("max_memory", "max_mem", "mem", "memory"), "max_memory", int),
        (("max_store", "max_file", "max_disk", "store", "disk"), "max_storage", int),
        (("max_streams", "streams"), "max_streams", int),
        (("max_consumers", "consumers"), "max_consumers", int),
        (("max_bytes_required", "max_stream_bytes", "max_bytes"), "max_bytes_required", bool),
        (("mem_max_stream_bytes", "memory_max_stream_bytes"), "memory_max_stream_bytes", int),
        (("disk_max_stream_bytes", "store_max_stream_bytes"), "storage_max_stream_bytes", int),
        (("max_ack_pending",), "max_ack_pending", int)):
    for _n in _names:
        _JS_KEYS[_n] = (_limit, _kind)
_GO_TYPES = {float: "float64", list: "[]interface {}", int: "int64"}


def _jetstream(spec, g):
    """`jetstream: enabled|disabled|true|false` or a block of limits."""
    v = g.value
    if isinstance(v, bool):
        spec.jetstream = {} if v else None
    elif isinstance(v, str):
        low = v.lower()
        if low not in ("enabled", "enable", "disabled", "disable"):
            g.fail("Expected 'enabled' or 'disabled' for string value, got '%s'" % v)
        spec.jetstream = {} if low.startswith("enable") else None
    elif isinstance(v, dict):
        limits = {}
        for key, mv in v.items():
            low = key.lower()
            at = _vpos(v, key) or g.value_pos
            if low == "cluster_traffic":
                # where a clustered stream's traffic goes; no clustered
                # JetStream here, so only checked
                if mv not in ("system", "owner", ""):
                    raise ConfigError("Expected 'system' or 'owner' string value for \"%s\", got %s"
                                      % (key, mv), at)
                continue
            if low not in _JS_KEYS:
                if key in getattr(v, "used", ()):
                    continue
                raise ConfigError('unknown field "%s"' % key, at)
            name, kind = _JS_KEYS[low]
            if kind is bool:
                if not isinstance(mv, bool):
                    raise ConfigError('Expected a parseable bool for "%s", got %s' % (key, mv), at)
            elif isinstance(mv, bool) or not isinstance(mv, int):
                raise ConfigError('Expected a parseable size for "%s", got %s' % (key, mv), at)
            limits[name] = kind(mv)
        spec.jetstream = limits
    else:
        g.fail("Expected map, bool or string to define JetStream, got %s"
               % _GO_TYPES.get(type(v), type(v).__name__))


# -- checks across accounts (nats-server does them once all are read) ----------

def subject_subset(sub, of):
    """Does every subject `sub` matches also match `of`? (nats-server
    isSubsetMatch, with both sides possibly wildcards.)"""
    a = sub.split(".")
    b = of.split(".")
    for i, bt in enumerate(b):
        if i >= len(a):
            return False
        at = a[i]
        if bt == ">":
            return True
        if at == ">":
            return False
        if bt == "*":
            continue
        if at == "*" or at != bt:
            return False
    return len(a) == len(b)


def find_export(specs_by_name, kind, exporter, subject, importer):
    """The export of `exporter` that lets `importer` import `subject`, or
    None (nats-server checkStreamImportAuthorized / checkServiceImportAuthorized)."""
    spec = specs_by_name.get(exporter)
    if spec is None:
        return None
    for e in spec.exports:
        if e["kind"] == kind and subject_subset(subject, e["subject"]) \
                and (e["accounts"] is None or importer in e["accounts"]):
            return e
    return None


def _check_links(specs, pos):
    by_name = {s.name: s for s in specs}
    seen = {}
    for s in specs:
        for u in s.users:
            key = u["user"]
            if key in seen:
                raise ConfigError('Duplicate user "%s" detected' % key, s.__dict__.get("_users_pos"))
            seen[key] = s.name
        for u in s.nkeys:
            key = u["nkey"]
            if key in seen:
                raise ConfigError('Duplicate nkey "%s" detected' % key, s.__dict__.get("_users_pos"))
            seen[key] = s.name
        for e in s.exports:
            for an in e["accounts"] or ():
                if an not in by_name:
                    raise ConfigError('"%s" account not defined for %s export' % (an, e["kind"]), e["_pos"])
    for s in specs:
        for im in s.imports:
            if im["account"] not in by_name:
                raise ConfigError('"%s" account not defined for %s import (in account "%s")'
                                  % (im["account"], im["kind"], s.name), im["_pos"])
            if find_export(by_name, im["kind"], im["account"], im["subject"], s.name) is None:
                raise ConfigError('Error adding %s import "%s": %s import not authorized '
                                  '(account "%s" importing from account "%s")'
                                  % (im["kind"], im["subject"], im["kind"], s.name, im["account"]),
                                  im["_pos"])


def check_with_authorization(opts):
    """After the whole file: nats-server refuses account users next to a
    single authorization user or token, and a user defined twice."""
    users, nkeys = all_users(opts)
    acc_users = [u for u in users + nkeys if u.get("account")]
    if not acc_users:
        return
    spec = next(s for s in opts.accounts if s.users or s.nkeys)
    pos = spec.__dict__.get("_users_pos")
    if opts.username:
        raise ConfigError("Can not have a single user/pass and accounts", pos)
    if opts.authorization:
        raise ConfigError("Can not have a token and accounts", pos)
    names = {}
    for u in users:
        if u["user"] in names:
            raise ConfigError('Duplicate user "%s" detected' % u["user"], pos)
        names[u["user"]] = True
    for u in nkeys:
        if u["nkey"] in names:
            raise ConfigError('Duplicate nkey "%s" detected' % u["nkey"], pos)
        names[u["nkey"]] = True
