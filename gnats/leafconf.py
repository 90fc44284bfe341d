"""The `leafnodes { }` block of a config file: the leaf listener and the
remotes this server dials (gnats/leafnodes.py runs them).

Theory of operation: gnats.options walks the file with tables of handlers;
`leafnodes(opts, f)` is the handler of the top-level key and fills
`opts.leafnodes` with a `LeafOptions`. Keys are matched as nats-server 2.15's
opts.go spells them (case-insensitively, with its aliases); anything else is
`FILE:LINE:COL: unknown field "x"`, a value of the wrong type is reported at
the value.

    leafnodes {
      host: 0.0.0.0, port: 7422         # or listen: "0.0.0.0:7422"
      advertise: "leaf.example.com:7422", no_advertise: false
      authorization { user: a, password: b, timeout: 2, account: A }
      #  or users = [ {user: a, password: b, account: A}, ... ]
      tls { cert_file, key_file, ca_file, verify, timeout }
      reconnect: "1s"                   # delay between dials of a remote
      remotes = [
        { url: "nats-leaf://user:pw@hub:7422"   # or urls: [ ... ]
          account: A, credentials: "/path/user.creds",
          tls { ca_file, cert_file, key_file, timeout }
          deny_imports: ["x.>"], deny_exports: ["y.>"],
          hub: false, first_info_timeout: "1s" }
      ]
    }
"""

from dataclasses import dataclass, field
from typing import List
from urllib.parse import urlsplit

from .conf import ConfigError, SizedInt, parse_duration

LEAF_SCHEMES = ("nats-leaf", "nats", "tls", "leafnode")
DEFAULT_RECONNECT = 1.0         # nats-server DEFAULT_LEAF_NODE_RECONNECT
DEFAULT_FIRST_INFO = 1.0        # nats-server's first_info_timeout default
DEFAULT_TLS_TIMEOUT = 2.0


@dataclass
class LeafTLS:
    cert: str = ""
    key: str = ""
    ca: str = ""
    verify: bool = False
    insecure: bool = False      # a remote that does not check the hub's certificate
    timeout: float = DEFAULT_TLS_TIMEOUT


@dataclass
class LeafRemote:
    urls: List[str] = field(default_factory=list)
    account: str = ""               # local account bound (empty: $G)
    credentials: str = ""           # a .creds file (user JWT + seed)
    tls: object = None              # LeafTLS, or None (tls:// URLs still use TLS)
    deny_imports: List[str] = field(default_factory=list)
    deny_exports: List[str] = field(default_factory=list)
    hub: bool = False
    first_info_timeout: float = DEFAULT_FIRST_INFO


@dataclass(repr=False)
class LeafOptions:
    host: str = "0.0.0.0"
    port: int = 0                   # 0: no listener, -1: a free port
    advertise: str = ""
    no_advertise: bool = False
    username: str = ""
    password: str = ""
    users: List[dict] = field(default_factory=list)     # {user, password, account}
    auth_timeout: float = 0.0
    account: str = ""               # bound for single-user authorization
    tls: object = None              # LeafTLS for accepted connections
    remotes: List[LeafRemote] = field(default_factory=list)
    reconnect: float = DEFAULT_RECONNECT

    def __repr__(self):
        # what a refused reload prints: never a password (in the block or
        # a remote's URL)
        return "{host: %s, port: %d, remotes: %d}" % (self.host, self.port, len(self.remotes))


# --- value checks ---------------------------------------------------------------

def _items(block):
    used = getattr(block, "used", ())
    for key in list(block):
        if key not in used:
            yield key.lower(), key, block[key]


def _vpos(block, key):
    return getattr(block, "value_pos", {}).get(key)


def _kpos(block, key):
    return getattr(block, "key_pos", {}).get(key)


def _unknown(block, key):
    raise ConfigError('unknown field "%s"' % key, _kpos(block, key))


def _want(ok, block, key, name, what):
    if not ok:
        raise ConfigError("%s: expected %s" % (name, what), _vpos(block, key))


def _str(block, key, name):
    v = block[key]
    _want(isinstance(v, str), block, key, name, "a string")
    return v


def _bool(block, key, name):
    v = block[key]
    _want(isinstance(v, bool), block, key, name, "a boolean")
    return v


def _block(block, key, name):
    v = block[key]
    _want(isinstance(v, dict), block, key, name, "a block { ... }")
    return v


def _port(block, key, name):
    v = block[key]
    _want(isinstance(v, int) and not isinstance(v, bool) and -1 <= v <= 65535,
          block, key, name, "a port (-1 to 65535)")
    return int(v)


def _duration(block, key, name):
    v = block[key]
    if isinstance(v, SizedInt):
        secs = parse_duration(v.raw)
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        secs = float(v)
    elif isinstance(v, str):
        secs = parse_duration(v)
    else:
        secs = None
    _want(secs is not None and secs >= 0, block, key, name,
          'a duration (seconds, or like "2s", "500ms")')
    return secs


def _strs(block, key, name):
    """A string or an array of strings."""
    v = block[key]
    if isinstance(v, str):
        return [v]
    _want(isinstance(v, list), block, key, name, "a string or an array of strings")
    pos = getattr(v, "pos", [])
    for i, item in enumerate(v):
        if not isinstance(item, str):
            raise ConfigError("%s: expected an array of strings" % name,
                              pos[i] if i < len(pos) else _vpos(block, key))
    return list(v)


def check_leaf_url(url):
    """An error message for a remote URL, or ""."""
    try:
        u = urlsplit(url if "://" in url else "nats-leaf://" + url)
        u.port
    except ValueError as e:
        return "invalid leafnode URL %r: %s" % (url, e)
    if u.scheme not in LEAF_SCHEMES or not u.hostname:
        return "invalid leafnode URL %r: expected nats-leaf://host:port" % url
    return ""


# --- blocks ------------------------------------------------------------------

def _tls(block, key, name, server_side):
    b = _block(block, key, name)
    t = LeafTLS()
    for low, k, _ in _items(b):
        n = name + "." + k
        if low == "cert_file":
            t.cert = _str(b, k, n)
        elif low == "key_file":
            t.key = _str(b, k, n)
        elif low == "ca_file":
            t.ca = _str(b, k, n)
        elif low == "verify":
            t.verify = _bool(b, k, n)
        elif low == "insecure":
            t.insecure = _bool(b, k, n)
        elif low == "timeout":
            t.timeout = _duration(b, k, n)
        else:
            _unknown(b, k)
    if server_side and not (t.cert and t.key):
        raise ConfigError('missing "cert_file" or "key_file" in TLS configuration', _kpos(block, key))
    if bool(t.cert) != bool(t.key):
        raise ConfigError('TLS configuration needs both "cert_file" and "key_file"', _kpos(block, key))
    return t


def _users(block, key, name):
    arr = block[key]
    _want(isinstance(arr, list), block, key, name, "an array of users")
    pos = getattr(arr, "pos", [])
    out, seen = [], set()
    for i, entry in enumerate(arr):
        at = pos[i] if i < len(pos) else _vpos(block, key)
        if not isinstance(entry, dict):
            raise ConfigError("%s: expected a block { user: ..., password: ... }" % name, at)
        u = {}
        for low, k, _ in _items(entry):
            n = name + "." + k
            if low in ("user", "username"):
                u["user"] = _str(entry, k, n)
            elif low in ("password", "pass"):
                u["password"] = _str(entry, k, n)
            elif low == "account":
                u["account"] = _str(entry, k, n)
            else:
                _unknown(entry, k)
        if not u.get("user"):
            raise ConfigError("user entry requires a user", at)
        if u["user"] in seen:
            raise ConfigError('duplicate user "%s"' % u["user"], at)
        seen.add(u["user"])
        u.setdefault("password", "")
        out.append(u)
    return out


def _authorization(lo, block, key, name):
    b = _block(block, key, name)
    for low, k, _ in _items(b):
        n = name + "." + k
        if low in ("user", "username"):
            lo.username = _str(b, k, n)
        elif low in ("password", "pass"):
            lo.password = _str(b, k, n)
        elif low == "users":
            lo.users = _users(b, k, n)
        elif low == "timeout":
            lo.auth_timeout = _duration(b, k, n)
        elif low == "account":
            lo.account = _str(b, k, n)
        else:
            _unknown(b, k)
    if lo.users and (lo.username or lo.password):
        raise ConfigError("can not have a single user/password and a users array", _kpos(block, key))


def _remote(entry, at, name):
    if not isinstance(entry, dict):
        raise ConfigError("%s: expected a block { url: ... }" % name, at)
    r = LeafRemote()
    for low, k, _ in _items(entry):
        n = name + "." + k
        if low in ("url", "urls"):
            urls = _strs(entry, k, n)
            for u in urls:
                problem = check_leaf_url(u)
                if problem:
                    raise ConfigError(problem, _vpos(entry, k))
            r.urls = urls
        elif low in ("account", "local"):
            r.account = _str(entry, k, n)
        elif low == "credentials":
            r.credentials = _str(entry, k, n)
        elif low == "tls":
            r.tls = _tls(entry, k, n, server_side=False)
        elif low in ("deny_imports", "deny_import"):
            r.deny_imports = _strs(entry, k, n)
        elif low in ("deny_exports", "deny_export"):
            r.deny_exports = _strs(entry, k, n)
        elif low == "hub":
            r.hub = _bool(entry, k, n)
        elif low == "first_info_timeout":
            r.first_info_timeout = _duration(entry, k, n)
        else:
            _unknown(entry, k)
    if not r.urls:
        raise ConfigError("%s: a remote needs a url" % name, at)
    return r


def _remotes(block, key, name):
    arr = block[key]
    _want(isinstance(arr, list), block, key, name, "an array of remotes")
    pos = getattr(arr, "pos", [])
    return [_remote(e, pos[i] if i < len(pos) else _vpos(block, key), name)
            for i, e in enumerate(arr)]


def _host_port(block, key, name):
    v = block[key]
    if isinstance(v, int) and not isinstance(v, bool):
        return "", _port(block, key, name)
    _want(isinstance(v, str) and ":" in v, block, key, name, 'a port or "host:port"')
    host, _, port = v.rpartition(":")
    try:
        p = int(port)
    except ValueError:
        p = -2
    _want(-1 <= p <= 65535, block, key, name, 'a port or "host:port"')
    return host.strip("[]"), p


def leafnodes(opts, f):
    """The options.py table handler for `leafnodes { ... }`."""
    b = f.value
    if not isinstance(b, dict):
        f.fail("%s: expected a block { ... }" % f.name)
    lo = LeafOptions()
    for low, k, _ in _items(b):
        n = f.name + "." + k
        if low == "listen":
            host, lo.port = _host_port(b, k, n)
            lo.host = host or lo.host
        elif low in ("host", "net"):
            lo.host = _str(b, k, n)
        elif low == "port":
            lo.port = _port(b, k, n)
        elif low == "advertise":
            lo.advertise = _str(b, k, n)
        elif low == "no_advertise":
            lo.no_advertise = _bool(b, k, n)
        elif low == "authorization":
            _authorization(lo, b, k, n)
        elif low == "tls":
            lo.tls = _tls(b, k, n, server_side=True)
        elif low == "remotes":
            lo.remotes = _remotes(b, k, n)
        elif low in ("reconnect", "reconnect_delay", "reconnect_interval"):
            lo.reconnect = _duration(b, k, n) or DEFAULT_RECONNECT
        else:
            _unknown(b, k)
    opts.leafnodes = lo
