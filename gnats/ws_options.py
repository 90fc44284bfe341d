"""The `websocket { }` block of the config file: its options, their
defaults, and the checks nats-server 2.15 makes (opts.go parseWebsocket,
websocket.go validateWebsocketOptions), with its error texts.

options.py walks the block with `handlers(...)` (this module reads values
only through the config field objects it is handed, so it imports nothing
of options.py) and calls `validate` once the whole file is read (users may
be defined after the block).
"""

from .conf import ConfigError
from .websocket import host_and_port

# nats-server has no handshake timeout by default (its HTTP server then
# waits forever for a request head); a silent socket here would hold a
# descriptor and a buffer for as long as it lasts, so the default bounds it.
DEFAULT_HANDSHAKE_TIMEOUT = 2.0

# Response headers a `headers { }` entry may not set (nats-server's list).
_RESERVED_HEADERS = ("host", "content-length", "connection", "upgrade", "nats-no-masking")


class WsOptions:
    """What the block says. tls_* as the client port's (gnats.tls reads
    them); host "" means the top-level host."""

    def __init__(self):
        self.host = ""
        self.port = 0                   # 0: no websocket listener; -1: a free port
        self.advertise = ""
        self.no_tls = False
        self.tls = False
        self.tls_cert = self.tls_key = self.tls_ca_cert = ""
        self.tls_verify = False
        self.tls_timeout = 2.0
        self.tls_cipher_suites = []
        self.tls_verify_and_map = False
        self.tls_handshake_first = False            # accepted by the shared tls
        self.tls_handshake_first_fallback = 0.0     # block parser; unused here
        self.same_origin = False
        self.allowed_origins = []
        self.compression = False
        self.handshake_timeout = 0.0    # 0: DEFAULT_HANDSHAKE_TIMEOUT
        self.username = self.password = self.token = ""
        self.auth_timeout = 0.0
        self.no_auth_user = ""
        self.jwt_cookie = self.username_cookie = self.password_cookie = self.token_cookie = ""
        self.headers = {}               # extra upgrade response headers
        self.ping_interval = 0.0        # accepted; the top-level ping_interval applies
        self.pos = None                 # where the block stood, for errors

    @property
    def auth_override(self):
        """nats-server's authOverride: the block brings its own credentials."""
        return bool(self.username or self.token or self.no_auth_user)

    def __eq__(self, other):
        # where the block stood is not a setting (a reload of an edited file)
        return isinstance(other, WsOptions) and \
            dict(vars(self), pos=None) == dict(vars(other), pos=None)

    __hash__ = None

    def __repr__(self):
        return "{%s}" % " ".join("%s:%r" % kv for kv in sorted(vars(self).items()) if kv[0] != "pos")


def _set(name, getter):
    def h(ws, g):
        setattr(ws, name, getter(g))
    return h


def _listen(ws, g):
    host, port = g.host_port()
    if host:
        ws.host = host
    ws.port = port


def _origins(ws, g):
    v = g.value
    ws.allowed_origins = [v] if isinstance(v, str) else [s for s, _ in g.str_list()]


def _handshake_timeout(ws, g):
    ws.handshake_timeout = g.duration(allow_zero=True)


def _headers(ws, g):
    block = g.block_value()
    out = {}
    for key, val in block.items():
        if not isinstance(val, str):
            g.fail("error parsing header key %s: unsupported type %s" % (key, type(val).__name__))
        out[key] = val
    ws.headers = out


def _authorization(walk, credential_table):
    def h(ws, g):
        got = {}
        table = credential_table(got)
        table["token"] = lambda o, f: got.__setitem__("token", f.str())
        walk(ws, g.block_value(), table, g.name + ".")
        if "token" in got and "user" in got:
            g.fail("can not have a user/password and a token", at_key=True)
        ws.username = got.get("user", "")
        ws.password = got.get("password", "")
        ws.token = got.get("token", "")
        ws.auth_timeout = got.get("timeout", 0.0)
    return h


def handlers(walk, tls_block, credential_table):
    """The block's keys (and nats-server's aliases) -> handler(ws, field).
    walk, tls_block and credential_table are options.py's helpers."""
    table = {
        "listen": _listen,
        "port": _set("port", lambda g: g.port()),
        "host": _set("host", lambda g: g.str()),
        "net": _set("host", lambda g: g.str()),
        "advertise": _set("advertise", lambda g: g.str()),
        "no_tls": _set("no_tls", lambda g: g.bool()),
        "tls": tls_block,
        "same_origin": _set("same_origin", lambda g: g.bool()),
        "handshake_timeout": _handshake_timeout,
        "compress": _set("compression", lambda g: g.bool()),
        "compression": _set("compression", lambda g: g.bool()),
        "authorization": _authorization(walk, credential_table),
        "authentication": _authorization(walk, credential_table),
        "jwt_cookie": _set("jwt_cookie", lambda g: g.str()),
        "user_cookie": _set("username_cookie", lambda g: g.str()),
        "pass_cookie": _set("password_cookie", lambda g: g.str()),
        "token_cookie": _set("token_cookie", lambda g: g.str()),
        "no_auth_user": _set("no_auth_user", lambda g: g.str()),
        "headers": _headers,
        "ping_interval": _set("ping_interval", lambda g: g.duration()),
    }
    for alias in ("allowed_origins", "allowed_origin", "allow_origins", "allow_origin",
                  "origins", "origin"):
        table[alias] = _origins
    return table


def validate(opts):
    """nats-server's validateWebsocketOptions, at the `websocket` key."""
    ws = getattr(opts, "websocket", None)
    if ws is None or not ws.port:
        return

    def fail(msg):
        raise ConfigError(msg, ws.pos)
    if not ws.tls and not ws.no_tls:
        fail("websocket requires TLS configuration")
    for origin in ws.allowed_origins:
        problem = origin_problem(origin)
        if problem:
            fail(problem)
    if ws.no_auth_user:
        users = [u.get("user") for u in opts.users] + [n.get("nkey") for n in opts.nkeys]
        if not users:
            fail('no_auth_user: "%s" present, but users/nkeys are not defined' % ws.no_auth_user)
        if ws.no_auth_user not in users:
            fail('no_auth_user: "%s" not present as user or nkey in authorization block '
                 'or account configuration' % ws.no_auth_user)
    if opts.users or opts.nkeys:
        if ws.username:
            fail("websocket authentication username not compatible with presence of users/nkeys")
        if ws.token:
            fail("websocket authentication token not compatible with presence of users/nkeys")
    if ws.jwt_cookie and not opts.operators:
        # nats-server's check: a JWT from a cookie needs operator mode
        fail('trusted operators or trusted keys configuration is required for JWT '
             'authentication via cookie "%s"' % ws.jwt_cookie)
    for key in ws.headers:
        k = key.lower()
        if k in _RESERVED_HEADERS:
            fail('websocket: invalid header "%s" not allowed' % key)
        if k.startswith("sec-websocket-"):
            fail('websocket: invalid header "%s", "Sec-WebSocket-" prefix not allowed' % key)


def split_origin(origin):
    """(scheme, authority) of an absolute http(s) URL, or None."""
    scheme, sep, rest = origin.partition("://")
    if not sep:
        return None
    return scheme, rest.split("/", 1)[0]


def origin_problem(origin):
    """Why an allowed_origins entry cannot be used, or None."""
    parts = split_origin(origin)
    if parts is None:
        return "unable to parse allowed origin: parse %r: invalid URI for request" % origin
    scheme, authority = parts
    if scheme not in ("http", "https"):
        return ('unable to parse allowed origin "%s": allowed origins must be absolute URLs '
                'with http or https scheme' % origin)
    if not authority:
        return 'unable to parse allowed origin "%s": host is required' % origin
    try:
        host_and_port(scheme == "https", authority)
    except ValueError as e:
        return "unable to parse allowed origin: %s" % e
    return None
