"""The server's options: one flat object, filled from defaults, then the config
file, then the command line (which wins).

Durations are float seconds; sizes are int bytes.

apply_config(opts, cfg, path) maps a parsed config file (gnats.conf) onto an
Options; the command line is gnats.cli.
"""

import copy
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from . import authz
from . import leafconf   # [leaf] the leafnodes { } block
from . import ws_options
from . import jwt_accounts
from .conf import ConfigError, ConfMap, SizedInt, parse_duration
from .mapping import Mappings, parse_mappings
from .permissions import PermissionSpec

DEFAULT_PORT = 4222
DEFAULT_HOST = "0.0.0.0"
DEFAULT_CLUSTER_PORT = 6222
MAX_PAYLOAD = 1024 * 1024
MAX_CONTROL_LINE = 4096
MAX_CONNECTIONS = 64 * 1024
MAX_PENDING = 64 * 1024 * 1024
PING_INTERVAL = 120.0
PING_MAX = 2
WRITE_DEADLINE = 2.0
AUTH_TIMEOUT = 1.0
TLS_TIMEOUT = 2.0
LAME_DUCK_DURATION = 120.0
LAME_DUCK_GRACE = 10.0


@dataclass
class Options:
    # client listener
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    server_name: str = ""
    client_advertise: str = ""

    # monitoring
    http_host: str = ""          # empty: same as host
    http_port: int = 0
    https_port: int = 0

    # logging
    debug: bool = False
    trace: bool = False
    logtime: bool = True
    log_file: str = ""
    syslog: bool = False
    remote_syslog: str = ""

    # process
    pid_file: str = ""
    ports_file_dir: str = ""
    config_file: str = ""

    # limits
    max_connections: int = MAX_CONNECTIONS
    max_control_line: int = MAX_CONTROL_LINE
    max_payload: int = MAX_PAYLOAD
    max_pending: int = MAX_PENDING
    max_subscriptions: int = 0      # per connection; 0 = unlimited
    ping_interval: float = PING_INTERVAL
    ping_max: int = PING_MAX
    write_deadline: float = WRITE_DEADLINE

    # client authorization
    username: str = ""
    password: str = ""
    authorization: str = ""         # token
    users: List[dict] = field(default_factory=list)  # [{"user":..,"password":..}]
    # The authorization of issue 16 (gnats.authz; not enforced yet): a users
    # entry may also hold "permissions" (PermissionSpec) and
    # "allowed_connection_types"; nkeys entries are {"nkey", ...the same}.
    nkeys: List[dict] = field(default_factory=list)
    default_permissions: Optional[PermissionSpec] = None
    no_auth_user: str = ""
    # accounts { } (gnats/accounts_conf.py): AccountSpec per account; their
    # users stay in them (accounts_conf.all_users joins them to `users`)
    accounts: list = field(default_factory=list)
    auth_timeout: float = 0.0       # 0: AUTH_TIMEOUT, or the TLS timeout if larger

    # operator mode (gnats.jwt_accounts): operator JWTs (or their files),
    # the MEMORY resolver and its preloaded account JWTs by public key
    operators: List[str] = field(default_factory=list)
    resolver: str = ""
    resolver_preload: Dict[str, str] = field(default_factory=dict)
    system_account: str = ""

    # client TLS
    tls: bool = False
    tls_verify: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca_cert: str = ""
    tls_timeout: float = TLS_TIMEOUT
    tls_cipher_suites: List[str] = field(default_factory=list)
    tls_verify_and_map: bool = False    # the certificate names the user
    tls_handshake_first: bool = False
    tls_handshake_first_fallback: float = 0.0   # >0: plain INFO after this delay
    allow_non_tls: bool = False         # top level in nats-server, not in tls { }

    # cluster
    cluster_host: str = ""
    cluster_port: int = 0           # 0: no cluster listener
    cluster_name: str = ""
    cluster_advertise: str = ""
    cluster_no_advertise: bool = False
    cluster_username: str = ""
    cluster_password: str = ""
    cluster_auth_timeout: float = 0.0
    routes: List[str] = field(default_factory=list)
    cluster_tls: bool = False
    cluster_tls_verify: bool = False
    cluster_tls_cert: str = ""
    cluster_tls_key: str = ""
    cluster_tls_ca_cert: str = ""
    cluster_tls_timeout: float = TLS_TIMEOUT
    cluster_tls_cipher_suites: List[str] = field(default_factory=list)
    cluster_tls_verify_and_map: bool = False
    cluster_permissions: Optional[PermissionSpec] = None   # publish: import, subscribe: export
    connect_retries: int = 0        # for implicit (discovered) routes

    # leaf nodes [leaf]: a gnats.leafconf.LeafOptions, or None without the block
    leafnodes: Optional[object] = None
    # JetStream (gnats/jetstream/): -1 limits mean "no server-wide limit"
    jetstream: bool = False
    store_dir: str = ""             # empty: <temp dir>/nats, as nats-server
    jetstream_max_memory: int = -1
    jetstream_max_store: int = -1
    jetstream_sync_interval: float = 0.0    # 0: 2 minutes
    jetstream_sync_always: bool = False
    jetstream_domain: str = ""              # jetstream { domain }: API also on $JS.<domain>.API

    # subject mappings of the global account (gnats.mapping); None: none
    mappings: Optional[Mappings] = None
    # websocket { } (issue 21): a ws_options.WsOptions, None without the block
    websocket: Optional[ws_options.WsOptions] = None

    # lame duck
    lame_duck_duration: float = LAME_DUCK_DURATION
    lame_duck_grace_period: float = LAME_DUCK_GRACE

    def copy(self) -> "Options":
        return copy.deepcopy(self)



# --- config file -> Options ---------------------------------------------------
#
# apply_config walks the parsed file (gnats.conf ConfMap blocks) with one table
# of handlers per block. Every key must be known, or be a variable that some
# value referenced (nats-server 2.9 treats an unreferenced `NAME = value` as an
# unknown field too). Errors are conf.ConfigError positioned at the bad key or
# value: `FILE:LINE:COL: message`.

ROUTE_SCHEMES = ("nats", "nats-route", "tls")


def split_host_port(text: str):
    """"host:port", "[::1]:port" or ":port" -> (host, port); ValueError when
    the port is missing or not a number."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1:end + 2] != ":":
            raise ValueError("missing port in address")
        host, port = text[1:end], text[end + 2:]
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError("missing port in address")
        if ":" in host:
            raise ValueError("too many colons in address")
    try:
        p = int(port)
    except ValueError:
        raise ValueError("invalid port %r" % port) from None
    return host, p


def check_url(url: str, what: str) -> str:
    """A route or cluster URL: nats://, nats-route:// or tls:// with a host.
    Returns an error message, or "" when the URL is usable."""
    from urllib.parse import urlsplit
    try:
        u = urlsplit(url)
        u.port                      # raises ValueError for a bad port
    except ValueError as e:
        return "invalid %s URL %r: %s" % (what, url, e)
    if u.scheme not in ROUTE_SCHEMES or not u.hostname:
        return "invalid %s URL %r: expected %s://host:port" % (what, url, "|".join(ROUTE_SCHEMES))
    return ""


class _Field:
    """One entry of a block being applied: its value and where it stood."""

    def __init__(self, block: ConfMap, key: str, path: str):
        self.block = block
        self.key = key
        self.name = path + key
        self.value = block[key]

    @property
    def key_pos(self):
        return getattr(self.block, "key_pos", {}).get(self.key)

    @property
    def value_pos(self):
        return getattr(self.block, "value_pos", {}).get(self.key)

    def fail(self, message: str, at_key: bool = False):
        raise ConfigError(message, self.key_pos if at_key else self.value_pos)

    def expected(self, what: str):
        self.fail("%s: expected %s, got %s" % (self.name, what, _describe(self.value)))

    # typed getters
    def bool(self) -> bool:
        if not isinstance(self.value, bool):
            self.expected("a boolean")
        return self.value

    def int(self) -> int:
        v = self.value
        if isinstance(v, bool) or not isinstance(v, int):
            self.expected("an integer")
        return int(v)

    def size(self) -> int:
        v = self.int()
        if v < 0:
            self.fail("%s: must not be negative, got %d" % (self.name, v))
        return v

    def port(self) -> int:
        return self._port_range(self.int())

    def _port_range(self, p: int) -> int:
        if not -1 <= p <= 65535:
            self.fail("%s: port %d out of range (-1 to 65535)" % (self.name, p))
        return p

    def str(self) -> str:
        if not isinstance(self.value, str):
            self.expected("a string")
        return self.value

    def duration(self, allow_zero: bool = False) -> float:
        """A bare number is seconds; a string is a Go duration; `1m` written
        bare is read as one minute, not one million."""
        v = self.value
        if isinstance(v, SizedInt):
            secs = parse_duration(v.raw)
        elif isinstance(v, bool):
            secs = None
        elif isinstance(v, (int, float)):
            secs = float(v)
        elif isinstance(v, str):
            secs = parse_duration(v)
        else:
            secs = None
        if secs is None:
            self.expected('a duration (seconds, or like "2s", "500ms", "1m")')
        if secs < 0 or (secs == 0 and not allow_zero):
            self.fail("%s: must be %s, got %s" % (self.name, "zero or more" if allow_zero
                                                  else "positive", _describe(v)))
        return secs

    def host_port(self):
        """8222 (port only) or "host:port" -> (host, port); host "" if absent."""
        v = self.value
        if isinstance(v, int) and not isinstance(v, bool):
            return "", self._port_range(int(v))
        if not isinstance(v, str):
            self.expected('a port or "host:port"')
        try:
            host, port = split_host_port(v)
        except ValueError as e:
            self.fail("%s: could not parse address %r: %s" % (self.name, v, e))
        return host, self._port_range(port)

    def block_value(self) -> ConfMap:
        if not isinstance(self.value, dict):
            self.expected("a block { ... }")
        return self.value

    def list_value(self) -> list:
        if not isinstance(self.value, list):
            self.expected("an array [ ... ]")
        return self.value

    def str_list(self):
        """Each element of an array of strings, with its position."""
        arr = self.list_value()
        positions = getattr(arr, "pos", [])
        out = []
        for i, item in enumerate(arr):
            pos = positions[i] if i < len(positions) else self.value_pos
            if not isinstance(item, str):
                raise ConfigError("%s: expected an array of strings, got %s"
                                  % (self.name, _describe(item)), pos)
            out.append((item, pos))
        return out


def _describe(v) -> str:
    if isinstance(v, bool):
        return "boolean %s" % ("true" if v else "false")
    if isinstance(v, SizedInt):
        return "size %s" % v.raw
    if isinstance(v, int):
        return "integer %d" % v
    if isinstance(v, float):
        return "float %s" % v
    if isinstance(v, str):
        return "string %s" % _quote(v)
    if isinstance(v, dict):
        return "a block"
    if isinstance(v, list):
        return "an array"
    return type(v).__name__


def _quote(s: str) -> str:
    return '"%s"' % (s if len(s) <= 40 else s[:37] + "...")


def _walk(opts, block: ConfMap, table: dict, path: str):
    """Apply every entry of block through table (key -> handler(opts, field))."""
    for key in list(block):
        handler = table.get(key)
        if handler is None:
            if key in getattr(block, "used", ()):
                continue        # a variable definition that something referenced
            raise ConfigError('unknown field "%s"' % key,
                              getattr(block, "key_pos", {}).get(key))
        handler(opts, _Field(block, key, path))


def _set(name, getter):
    def handler(opts, f):
        setattr(opts, name, getter(f))
    return handler


# -- top level -------------------------------------------------------------

def _listen(opts, f):
    host, port = f.host_port()
    if host:
        opts.host = host
    opts.port = port


def _http(opts, f):
    host, port = f.host_port()
    if host:
        opts.http_host = host
    opts.http_port = port


def _https(opts, f):
    host, port = f.host_port()
    if host:
        opts.http_host = host
    opts.https_port = port


def _tls_block(prefix):
    """The tls { } block of the client port (prefix "") or of routes
    (prefix "cluster_")."""
    def handler(opts, f):
        b = f.block_value()
        seen = {}

        def field(name, getter):
            def h(o, g):
                seen[g.key] = True
                setattr(o, prefix + name, getter(g))
            return h

        def ciphers(o, g):
            try:
                from .tls import CIPHER_SUITES, TLS13_SUITES
                known = set(CIPHER_SUITES) | set(TLS13_SUITES)
            except ImportError:     # no ssl module: tls.py reports it later
                known = None
            names = []
            for name, pos in g.str_list():
                if known is not None and name not in known:
                    raise ConfigError('unrecognized cipher suite "%s"' % name, pos)
                names.append(name)
            setattr(o, prefix + "tls_cipher_suites", names)
        table = {
            "cert_file": field("tls_cert", _Field.str),
            "key_file": field("tls_key", _Field.str),
            "ca_file": field("tls_ca_cert", _Field.str),
            "verify": field("tls_verify", _Field.bool),
            "timeout": field("tls_timeout", lambda g: g.duration(allow_zero=False)),
            "cipher_suites": ciphers,
            "verify_and_map": authz.tls_verify_and_map(prefix),
        }
        if not prefix:
            for alias in ("handshake_first", "first", "immediate"):
                table[alias] = authz.tls_handshake_first
        _walk(opts, b, table, f.name + ".")
        for need in ("cert_file", "key_file"):
            if need not in seen:
                f.fail('missing "%s" in TLS configuration' % need, at_key=True)
        setattr(opts, prefix + "tls", True)
    return handler


def _users(opts, f, name):
    """The users array: password users and nkey users (kept apart, as
    nats-server's Users and Nkeys), with their authorization extras."""
    users, nkeys, seen = [], [], set()
    arr = f.list_value()
    positions = getattr(arr, "pos", [])
    for i, entry in enumerate(arr):
        pos = positions[i] if i < len(positions) else f.value_pos
        if not isinstance(entry, dict):
            raise ConfigError("%s: expected a block { user: ..., password: ... }, got %s"
                              % (name, _describe(entry)), pos)
        u = {}
        table = {
            "user": lambda o, g: u.__setitem__("user", g.str()),
            "username": lambda o, g: u.__setitem__("user", g.str()),
            "password": lambda o, g: u.__setitem__("password", g.str()),
            "pass": lambda o, g: u.__setitem__("password", g.str()),
        }
        for key in entry:
            if key not in table and key not in getattr(entry, "used", ()):
                table[key] = _user_extra(u, entry, name)
        _walk(opts, entry, table, name + ".")
        authz.check_user_entry(u, pos)
        if u.get("nkey"):
            if u["nkey"] in seen:
                raise ConfigError('duplicate nkey "%s"' % u["nkey"], pos)
            seen.add(u["nkey"])
            nkeys.append(u)
            continue
        if not u.get("user"):
            raise ConfigError("user entry requires a user", pos)
        if u["user"] in seen:
            raise ConfigError('duplicate user "%s"' % u["user"], pos)
        seen.add(u["user"])
        u.setdefault("password", "")
        users.append(u)
    opts.nkeys = nkeys
    return users


def _user_extra(u, entry, name):
    """Handler for a users[] key that is not a credential (gnats.authz)."""
    def h(o, g):
        got = authz.user_entry_field(entry, g.key.lower(), g.key, g.value, name)
        if got is None:
            raise ConfigError('unknown field "%s"' % g.key, g.key_pos)
        u[got[0]] = got[1]
        if got[1] and got[0] not in ("nkey", "allowed_connection_types"):
            authz.remember(o, name + "." + got[0], g.key_pos)
    return h


def _keep(got, name, getter):
    """A table handler that stores the value under `name` in `got`."""
    def h(o, g):
        got[name] = getter(g)
    return h


def _credential_table(got):
    """The keys client and cluster authorization blocks share."""
    return {
        "user": _keep(got, "user", _Field.str), "username": _keep(got, "user", _Field.str),
        "password": _keep(got, "password", _Field.str), "pass": _keep(got, "password", _Field.str),
        "timeout": _keep(got, "timeout", lambda g: g.duration(allow_zero=True)),
    }


def _authorization(opts, f):
    b = f.block_value()
    got = {}
    table = _credential_table(got)
    table["token"] = _keep(got, "token", _Field.str)
    table["users"] = lambda o, g: got.__setitem__("users", _users(o, g, g.name))
    for alias in ("default_permission", "default_permissions", "permissions"):
        table[alias] = authz.default_permissions
    _walk(opts, b, table, f.name + ".")
    if "users" in got and ("user" in got or "password" in got):
        f.fail("can not have a single user/password and a users array", at_key=True)
    if "users" in got and "token" in got:
        f.fail("can not have a token and a users array", at_key=True)
    if "token" in got and "user" in got:
        f.fail("can not have a user/password and a token", at_key=True)
    opts.username = got.get("user", "")
    opts.password = got.get("password", "")
    opts.authorization = got.get("token", "")
    opts.users = got.get("users", [])
    opts.auth_timeout = got.get("timeout", 0.0)


# -- cluster ---------------------------------------------------------------

def _cluster_listen(opts, f):
    host, port = f.host_port()
    opts.cluster_host = host or DEFAULT_HOST
    opts.cluster_port = port


def _cluster_authorization(opts, f):
    b = f.block_value()
    got = {}

    def no_users(o, g):
        g.fail("cluster authorization does not allow multiple users", at_key=True)
    table = _credential_table(got)
    table["users"] = no_users
    _walk(opts, b, table, f.name + ".")
    opts.cluster_username = got.get("user", "")
    opts.cluster_password = got.get("password", "")
    opts.cluster_auth_timeout = got.get("timeout", 0.0)


def _routes(opts, f):
    routes = []
    for url, pos in f.str_list():
        problem = check_url(url, "route")
        if problem:
            raise ConfigError(problem, pos)
        routes.append(url)
    opts.routes = routes


_CLUSTER_TABLE = {
    "listen": _cluster_listen,
    "host": _set("cluster_host", _Field.str),
    "net": _set("cluster_host", _Field.str),
    "port": _set("cluster_port", _Field.port),
    "name": _set("cluster_name", _Field.str),
    "advertise": _set("cluster_advertise", _Field.str),
    "cluster_advertise": _set("cluster_advertise", _Field.str),
    "no_advertise": _set("cluster_no_advertise", _Field.bool),
    "connect_retries": _set("connect_retries", _Field.size),
    "authorization": _cluster_authorization,
    "routes": _routes,
    "tls": _tls_block("cluster_"),
    "permissions": authz.cluster_permissions,
}


def _cluster(opts, f):
    _walk(opts, f.block_value(), _CLUSTER_TABLE, f.name + ".")


def _jetstream(opts, f):
    """`jetstream: enabled|disabled|true|false` or `jetstream { ... }`."""
    v = f.value
    if isinstance(v, bool):
        opts.jetstream = v
    elif isinstance(v, str) and v.lower() in ("enabled", "enable", "true", "disabled", "disable", "false"):
        opts.jetstream = v.lower() in ("enabled", "enable", "true")
    elif isinstance(v, dict):
        opts.jetstream = True
        _walk(opts, v, _JETSTREAM_TABLE, f.name + ".")
    else:
        f.expected('a boolean, "enabled", "disabled" or a block { ... }')


def _js_domain(opts, f):
    # nats-server: a domain is one subject token (it becomes $JS.<domain>.API)
    v = f.str()
    if not v or any(ch in v for ch in ".*> \t\r\n"):
        f.fail("invalid domain name: %r is not a valid subject token" % v)
    opts.jetstream_domain = v


def _js_sync_interval(opts, f):
    # nats-server also takes `sync_interval: always`
    if isinstance(f.value, str) and f.value.lower() == "always":
        opts.jetstream_sync_always = True
    else:
        opts.jetstream_sync_interval = f.duration()


_JETSTREAM_TABLE = {
    "enabled": _set("jetstream", _Field.bool),
    "store_dir": _set("store_dir", _Field.str),
    "storedir": _set("store_dir", _Field.str),
    "store": _set("store_dir", _Field.str),
    "max_memory_store": _set("jetstream_max_memory", _Field.size),
    "max_mem_store": _set("jetstream_max_memory", _Field.size),
    "max_mem": _set("jetstream_max_memory", _Field.size),
    "max_file_store": _set("jetstream_max_store", _Field.size),
    "max_file": _set("jetstream_max_store", _Field.size),
    "max_disk": _set("jetstream_max_store", _Field.size),
    "sync_interval": _js_sync_interval,
    "sync_always": _set("jetstream_sync_always", _Field.bool),
    "domain": _js_domain,
}


def _mappings(opts, f):
    ms = parse_mappings(f.block_value(), pos=f.value_pos)
    opts.mappings = ms if len(ms) else None     # an empty block costs nothing


def _websocket(opts, f):
    # issue 21: the block's keys live in ws_options.py
    ws = opts.websocket = ws_options.WsOptions()
    ws.pos = f.key_pos
    _walk(ws, f.block_value(), ws_options.handlers(_walk, _tls_block(""), _credential_table),
          f.name + ".")


# Every top-level key and its aliases (as nats-server spells them; the seed's
# max_pending_size too).
_TOP_TABLE = {
    "listen": _listen,
    "port": _set("port", _Field.port),
    "host": _set("host", _Field.str),
    "net": _set("host", _Field.str),
    "server_name": _set("server_name", _Field.str),
    "client_advertise": _set("client_advertise", _Field.str),
    "http": _http,
    "http_port": _set("http_port", _Field.port),
    "monitor_port": _set("http_port", _Field.port),
    "https": _https,
    "https_port": _set("https_port", _Field.port),
    "debug": _set("debug", _Field.bool),
    "trace": _set("trace", _Field.bool),
    "logtime": _set("logtime", _Field.bool),
    "log_file": _set("log_file", _Field.str),
    "logfile": _set("log_file", _Field.str),
    "syslog": _set("syslog", _Field.bool),
    "remote_syslog": _set("remote_syslog", _Field.str),
    "pid_file": _set("pid_file", _Field.str),
    "pidfile": _set("pid_file", _Field.str),
    "ports_file_dir": _set("ports_file_dir", _Field.str),
    "max_connections": _set("max_connections", _Field.size),
    "max_conn": _set("max_connections", _Field.size),
    "max_control_line": _set("max_control_line", _Field.size),
    "max_payload": _set("max_payload", _Field.size),
    "max_pending": _set("max_pending", _Field.size),
    "max_pending_size": _set("max_pending", _Field.size),
    "max_subscriptions": _set("max_subscriptions", _Field.size),
    "max_subs": _set("max_subscriptions", _Field.size),
    "ping_interval": _set("ping_interval", _Field.duration),
    "ping_max": _set("ping_max", _Field.size),
    "write_deadline": _set("write_deadline", _Field.duration),
    "lame_duck_duration": _set("lame_duck_duration", _Field.duration),
    "lame_duck_grace_period": _set("lame_duck_grace_period",
                                   lambda g: g.duration(allow_zero=True)),
    "authorization": _authorization,
    "no_auth_user": authz.no_auth_user,
    "accounts": lambda opts, f: _accounts(opts, f),
    "allow_non_tls": authz.allow_non_tls,
    "tls": _tls_block(""),
    "cluster": _cluster,
    "leafnodes": leafconf.leafnodes,    # [leaf]
    "leaf": leafconf.leafnodes,         # [leaf] nats-server's alias
    "resolver": jwt_accounts.conf_resolver,
    "account_resolver": jwt_accounts.conf_resolver,
    "accounts_resolver": jwt_accounts.conf_resolver,
    "resolver_preload": jwt_accounts.conf_resolver_preload,
    "system_account": _set("system_account", _Field.str),
    "system": _set("system_account", _Field.str),
    "mappings": _mappings,
    "maps": _mappings,
    "websocket": _websocket,
    "jetstream": _jetstream,
}
for _alias in ("operator", "operators", "roots", "root", "root_operators", "root_operator"):
    _TOP_TABLE[_alias] = jwt_accounts.conf_operators

CONFIG_KEYS = tuple(sorted(_TOP_TABLE))


def _accounts(opts, f):
    from .accounts_conf import parse_accounts
    parse_accounts(opts, f)


def apply_config(opts: "Options", cfg: dict, path: str = "") -> "Options":
    """Apply a parsed config (gnats.conf.parse/parse_file) onto opts and
    return it. path is recorded as opts.config_file. Raises ConfigError
    (`FILE:LINE:COL: message`) for an unknown key, a value of the wrong type
    or out of range. A limit given as 0 keeps its default (as nats-server's
    baseline does); max_subscriptions 0 means unlimited."""
    _walk(opts, cfg, _TOP_TABLE, "")
    if opts.accounts:
        from .accounts_conf import check_with_authorization
        check_with_authorization(opts)
    jwt_accounts.check_operator_mode(opts, cfg)
    for name, default in (("max_connections", MAX_CONNECTIONS),
                          ("max_control_line", MAX_CONTROL_LINE),
                          ("max_payload", MAX_PAYLOAD),
                          ("max_pending", MAX_PENDING),
                          ("ping_max", PING_MAX)):
        if getattr(opts, name) == 0:
            setattr(opts, name, default)
    if opts.max_payload > opts.max_pending:
        key = "max_payload" if "max_payload" in cfg else None
        raise ConfigError("max_payload (%d) cannot be higher than max_pending (%d)"
                          % (opts.max_payload, opts.max_pending),
                          cfg.value_pos.get(key) if isinstance(cfg, ConfMap) and key else None)
    ws_options.validate(opts)       # issue 21: needs the whole file read
    if path:
        opts.config_file = path
    return opts
