"""Credential checks for client and route connections (plain and bcrypt).

Theory of operation: the server builds a ClientAuth (and a RouteAuth for the
cluster port) from its Options at start and on reload. When a CONNECT arrives,
the connection asks `.check(connect_dict)`; the answer is the authenticated
user name ("" for token or no auth) or None for "Authorization Violation".

A bcrypt check costs ~0.1-0.2 s of CPU at cost 11. The reactor must not stall
for that, so `.needs_slow_check(connect)` tells it when to run `.check` in a
worker thread. Successful bcrypt checks are remembered in a small bounded
cache so a client that reconnects is fast again (nats-server does not do this;
it avoids one cheap way to pin the CPU). Only successes are cached, so guessing
passwords still pays the full bcrypt cost per guess.

Which credentials count (nats-server 2.9 precedence): a users list wins over a
token, a token wins over a single user/password. A config file that sets two of
them is an error, reported with its file position by the config module
(options._authorization).

Who is it (issue 16): clients go through `ClientAuth.identify(connect, ctx)`
(the Authorizer calls it; routes keep `.check` through `RouteAuth.identify`),
which answers the matched UserEntry (name, compiled permissions, allowed
connection types) instead of a bare name. `.authenticate(connect, nonce)`
covers what `.check` does not:
nkey users (the CONNECT `sig` over the INFO nonce, an Ed25519 verify of
~1.3 ms: `.needs_signature_check` says when to run it off the reactor) and
`no_auth_user` (a CONNECT without credentials is that user);
`.authenticate_cert` maps a client certificate to a user (verify_and_map,
gnats.certmap). With only nkey
users configured, `.check` refuses everyone: without a nonce no nkey can be
verified, and letting anyone in would be worse.

Operator mode (`operator` in the config): ClientAuth's mode is "jwt" and
`trust` (gnats.jwt_accounts.OperatorTrust) decides alone; every CONNECT is
a slow check (two Ed25519 verifies) and its verdict is a JwtUser, which
places the client in its account when the client binds it.

Everything here is safe to call from any thread.
"""

import hashlib
import hmac
import os
import re
import threading
from collections import OrderedDict
from typing import Any, Dict, Iterable, NamedTuple, Optional

try:
    import bcrypt
except ImportError:  # optional: only needed when a hash is configured
    bcrypt = None

from .accounts_conf import all_users
from .nkeys import verify_connect_sig
from . import jwt_accounts
from .options import AUTH_TIMEOUT
from . import certmap
from .authz import parse_permissions
from .permissions import PermissionSpec, Permissions, compile_permissions

BCRYPT_MISSING = "bcrypt password hashes need the bcrypt package: pip install bcrypt"
PLAINTEXT_WARNING = "Plaintext passwords detected, use nkeys or bcrypt"

# nats-server's test is ^\$2[abxy]\$\d{2}\$; "$2x$" hashes are a broken 2011
# variant the Python bcrypt package cannot check, so they count as plain text.
_BCRYPT_RE = re.compile(r"^\$2[aby]\$\d\d\$")
# bcrypt only ever reads the first 72 bytes of a password. Go's
# CompareHashAndPassword silently ignores the rest; the Python package raises
# instead, so we truncate to behave like nats-server.
_BCRYPT_MAX_PASSWORD = 72


class AuthError(ValueError):
    """An authorization configuration that cannot work."""


# The whole shape of a bcrypt hash: version, two-digit cost, 22 characters of
# salt and 31 of hash in bcrypt's base64 alphabet.
_BCRYPT_FULL_RE = re.compile(r"\$2[aby]?\$[0-9]{2}\$[./A-Za-z0-9]{53}\Z")


def is_bcrypt(s: Any) -> bool:
    """True when s looks like a bcrypt hash ($2a$, $2b$ or $2y$ with a cost)."""
    return isinstance(s, str) and _BCRYPT_RE.match(s) is not None


# --- the cache of successful bcrypt checks -------------------------------

_CACHE_MAX = 1024
# Keys are an HMAC of (hash, password) under a per-process random key, so the
# cache never holds a password, nor a fast unsalted digest of one.
_cache_key_secret = os.urandom(32)
_cache: "OrderedDict[bytes, None]" = OrderedDict()
_cache_lock = threading.Lock()


def _cache_key(hashed: bytes, given: bytes) -> bytes:
    # A bcrypt hash never contains NUL, so the concatenation is unambiguous.
    return hmac.new(_cache_key_secret, hashed + b"\0" + given, hashlib.sha256).digest()


def _cache_hit(key: bytes) -> bool:
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return True
        return False


def _cache_add(key: bytes) -> None:
    with _cache_lock:
        _cache[key] = None
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_MAX:
            _cache.popitem(last=False)


def clear_cache() -> None:
    """Forget every remembered bcrypt success (tests, paranoid reloads)."""
    with _cache_lock:
        _cache.clear()


def _as_bytes(value: Any) -> Optional[bytes]:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates from a hostile JSON string
            return None
    return None


def _bcrypt_key(configured: str, given: Any):
    """(hash bytes, truncated password bytes) or None when given is unusable."""
    given_b = _as_bytes(given)
    if given_b is None:
        return None
    return configured.encode("ascii", "replace"), given_b[:_BCRYPT_MAX_PASSWORD]


def is_cached(configured: str, given: Any) -> bool:
    """True when this bcrypt (hash, password) pair already checked out."""
    pair = _bcrypt_key(configured, given)
    return pair is not None and _cache_hit(_cache_key(*pair))


def check_secret(configured: str, given: Any) -> bool:
    """Does the client's secret `given` (str or bytes) match `configured`?

    A bcrypt hash is checked with bcrypt (slow unless cached); anything else is
    compared in constant time. Never raises: junk input is simply False.
    """
    if not isinstance(configured, str):
        return False
    if is_bcrypt(configured):
        if bcrypt is None:
            return False
        pair = _bcrypt_key(configured, given)
        if pair is None:
            return False
        key = _cache_key(*pair)
        if _cache_hit(key):
            return True
        if _BCRYPT_FULL_RE.match(configured) is None:
            # a malformed hash never matches; and it is refused here, not by
            # the bcrypt package, whose older releases (PyPy's 4.0) panic on
            # a short hash with an exception `except Exception` misses
            return False
        try:
            ok = bcrypt.checkpw(pair[1], pair[0])
        except (ValueError, TypeError):  # malformed password
            return False
        if ok:
            _cache_add(key)
        return ok
    given_b = _as_bytes(given)
    if given_b is None:
        return False
    return hmac.compare_digest(configured.encode("utf-8", "surrogatepass"), given_b)


# --- configuration ------------------------------------------------------

def _secret_str(value: Any, what: str) -> str:
    """Config values are strings; a bare number (password: 1234) is taken as
    written. Anything else is refused instead of crashing later."""
    if value is None:
        return ""
    if isinstance(value, bool):
        raise AuthError("%s must be a string" % what)
    if isinstance(value, (int, str)):
        return str(value)
    raise AuthError("%s must be a string" % what)


def _user_map(users: Iterable[Any]) -> Dict[str, str]:
    """{user: password} from the Options users list, checked like nats-server."""
    out: Dict[str, str] = {}
    for entry in users:
        if not isinstance(entry, dict):
            raise AuthError("User entry must be a map, got %r" % (entry,))
        name = entry.get("user", entry.get("username"))
        name = _secret_str(name, "user name")
        if not name:
            raise AuthError("User entry requires a user")
        if name in out:
            raise AuthError('Duplicate user "%s" detected' % name)
        out[name] = _secret_str(entry.get("password", entry.get("pass")),
                                'password of user "%s"' % name)
    return out


def _need_bcrypt(secrets: Iterable[str]) -> None:
    if bcrypt is None and any(is_bcrypt(s) for s in secrets):
        raise AuthError(BCRYPT_MISSING)


def _timeout(configured: float, tls: bool, tls_timeout: float) -> float:
    # An unset auth timeout grows to the TLS timeout, since the handshake
    # eats into it.
    t = configured or AUTH_TIMEOUT
    if tls and not configured and tls_timeout > t:
        t = tls_timeout
    return t


class UserEntry:
    """Who a connection authenticated as: `name` (user name, nkey, or "" for
    token or no auth), `permissions` (compiled, shared; None: may do
    anything), `nkey` when it is an nkey user, and the connection types it
    may use (empty: any)."""

    __slots__ = ("name", "permissions", "nkey", "connection_types", "account")

    def __init__(self, name: str, permissions: Optional[Permissions] = None,
                 nkey: str = "", connection_types=(), account: str = ""):
        self.name = name
        self.permissions = permissions
        self.nkey = nkey
        self.connection_types = tuple(connection_types)
        self.account = account      # the configured account's name; "": $G

    def allows_connection_type(self, kind: str) -> bool:
        """kind as nats-server names them: "STANDARD", "WEBSOCKET", ..."""
        return not self.connection_types or kind in self.connection_types

    def __repr__(self):
        return "<UserEntry %r%s>" % (self.name, " with permissions" if self.permissions else "")


_ANONYMOUS = UserEntry("")


def _spec(value):
    """A PermissionSpec from Options: as the config loader made it, or a plain
    dict in config shape (Options built in code)."""
    if value is None or isinstance(value, PermissionSpec):
        return value
    try:
        return parse_permissions(value, None, "permissions")
    except ValueError as e:
        raise AuthError(str(e)) from None


def _entries(opts, key: str) -> Dict[str, UserEntry]:
    """UserEntry per user name (key "user") or nkey (key "nkey"), with the
    user's own permissions or else default_permissions (nats-server
    applyDefaultPermissions; an account's users took their account's
    default when the config was read), and the account it belongs to."""
    default = _spec(getattr(opts, "default_permissions", None))
    compiled = {}   # one Permissions per distinct spec, shared
    out = {}
    users, nkeys = all_users(opts)
    for u in users if key == "user" else nkeys:
        name = u.get(key, u.get("username")) if isinstance(u, dict) else None
        if not name or not isinstance(name, str):
            continue
        spec = _spec(u.get("permissions"))
        if spec is None and not u.get("account"):
            spec = default
        if spec is not None and spec not in compiled:
            compiled[spec] = compile_permissions(spec)
        out[name] = UserEntry(name, compiled.get(spec) if spec else None,
                              name if key == "nkey" else "",
                              u.get("allowed_connection_types") or (), u.get("account") or "")
    return out


def _no_credentials(connect: dict) -> bool:
    return not (connect.get("user") or connect.get("pass") or connect.get("auth_token"))


class _Credentials:
    """The shared checking logic. Subclasses set mode and the secrets.

    mode: "none" (anyone), "token", "user" (one user/password), "users",
    "nkeys" (nkey users only: check() refuses, authenticate() verifies).
    """

    mode = "none"

    def __init__(self) -> None:
        self._token = ""
        self._user = ""
        self._password = ""
        self._users: Dict[str, str] = {}
        self._entries: Dict[str, UserEntry] = {}
        self._nkeys: Dict[str, UserEntry] = {}
        self.no_auth_user = ""
        self.timeout = AUTH_TIMEOUT

    @property
    def required(self) -> bool:
        """True when a CONNECT must carry credentials (INFO auth_required)."""
        return self.mode != "none"

    def _secret_for(self, connect: Any):
        """(configured secret, given secret, user name) or None if no match."""
        if not isinstance(connect, dict):
            return None
        if self.mode == "token":
            return self._token, connect.get("auth_token", ""), ""
        user = connect.get("user", "")
        if not isinstance(user, str):
            return None
        if self.mode == "user":
            if user != self._user:
                return None
            return self._password, connect.get("pass", ""), user
        if self.mode == "users":
            secret = self._users.get(user)
            if secret is None:
                return None
            return secret, connect.get("pass", ""), user
        return None

    def check(self, connect: Any) -> Optional[str]:
        """The authenticated user name ("" for token or no auth), or None.

        May take ~0.2 s when needs_slow_check(connect) is True.
        """
        if self.mode == "none":
            return ""
        found = self._secret_for(connect)
        if found is None:
            return None
        configured, given, user = found
        if given is None:
            given = ""
        return user if check_secret(configured, given) else None

    def needs_slow_check(self, connect: Any) -> bool:
        """True when check(connect) would run bcrypt (matching secret is a
        hash and this pair is not cached): run it off the reactor thread."""
        found = self._secret_for(connect) if self.mode != "none" else None
        if found is None or not is_bcrypt(found[0]):
            return False
        given = "" if found[1] is None else found[1]
        if _as_bytes(given) is None:  # junk: check() refuses it at once
            return False
        return not is_cached(found[0], given)

    # -- who is it (issue 16) ------------------------------------------------
    def _nkey_of(self, connect: dict) -> str:
        """The nkey user this CONNECT claims ("" when none), after no_auth_user."""
        if not self._nkeys:
            return ""
        nkey = connect.get("nkey") or ""
        if not nkey and self.no_auth_user in self._nkeys and _no_credentials(connect):
            nkey = self.no_auth_user
        return nkey if isinstance(nkey, str) else ""

    def needs_signature_check(self, connect: Any) -> bool:
        """True when authenticate(connect) would verify an Ed25519 signature
        (~1.3 ms): run it off the reactor thread."""
        if not isinstance(connect, dict):
            return False
        nkey = self._nkey_of(connect)
        return bool(nkey) and nkey in self._nkeys and nkey != self.no_auth_user

    def authenticate(self, connect: Any, nonce: Any = None) -> Optional[UserEntry]:
        """The UserEntry this CONNECT proves, or None ("Authorization
        Violation"). nonce: the one sent in this connection's INFO. Slow
        when needs_slow_check or needs_signature_check says so."""
        if not isinstance(connect, dict):
            return None
        nkey = self._nkey_of(connect)
        if nkey:
            entry = self._nkeys.get(nkey)
            if entry is None:
                return None
            # nats-server skips the signature for the no_auth_user nkey only
            if nkey != self.no_auth_user and not verify_connect_sig(
                    nkey, nonce, connect.get("sig")):
                return None
            return entry
        if self.mode == "users" and self.no_auth_user in self._entries \
                and _no_credentials(connect):
            return self._entries[self.no_auth_user]
        name = self.check(connect)
        if name is None:
            return None
        return self._entries.get(name) or (UserEntry(name) if name else _ANONYMOUS)

    # -- what the Authorizer calls (gnats.authorize) -------------------------
    def is_slow(self, connect: Any) -> bool:
        """True when identify(connect, ...) should run off the reactor."""
        return self.needs_slow_check(connect)

    def identify(self, connect: Any, ctx: Any = None):
        """The verdict the connection's CONNECT path expects (None:
        refused). Routes: the user name, as check() gives it."""
        return self.check(connect)

    def authenticate_cert(self, peercert: Any) -> Optional[UserEntry]:
        """tls { verify_and_map }: the user the client certificate (as
        SSLSocket.getpeercert() gives it) names, or None."""
        return certmap.cert_user(peercert, self._entries)


class AuthContext(NamedTuple):
    """What a client connection adds to its CONNECT for identify(): the
    nonce its INFO carried, its certificate (getpeercert(), None without
    TLS), its connection type as nats-server names it, its address (a JWT
    user's `src` CIDRs) and, when debug logging is on, where to say why a
    JWT user was refused (called from the auth worker thread)."""
    nonce: str = ""
    cert: Any = None
    kind: str = "STANDARD"
    host: str = ""
    debug: Any = None


class ClientAuth(_Credentials):
    """Client-port credentials from Options (username/password, authorization
    token, users list, auth_timeout). Raises AuthError for unusable config."""

    def __init__(self, opts) -> None:
        super().__init__()
        all_pw, all_nk = all_users(opts)
        users = _user_map(all_pw)
        token = _secret_str(opts.authorization, "authorization token")
        username = _secret_str(opts.username, "user")
        password = _secret_str(opts.password, "password")
        if users:
            self.mode, self._users = "users", users
            secrets = list(users.values())
        elif token:
            self.mode, self._token = "token", token
            secrets = [token]
        elif username:
            self.mode, self._user, self._password = "user", username, password
            secrets = [password]
        elif all_nk:
            self.mode = "nkeys"
            secrets = []
        else:
            secrets = []
        self._entries = _entries(opts, "user")
        self._nkeys = _entries(opts, "nkey")
        self.no_auth_user = getattr(opts, "no_auth_user", "") or ""
        self.tls_map = bool(getattr(opts, "tls_verify_and_map", False))
        # operator mode: user JWTs signed into preloaded accounts, nothing else
        self.trust = None
        if getattr(opts, "operators", None):
            try:
                self.trust = jwt_accounts.OperatorTrust(
                    opts.operators, opts.resolver_preload, opts.system_account)
            except jwt_accounts.TrustError as e:
                raise AuthError(str(e)) from None
            self.mode = "jwt"
        _need_bcrypt(secrets)
        # nats-server warns about plain passwords, not about plain tokens.
        self.plaintext_passwords = self.mode in ("user", "users") and any(
            s and not is_bcrypt(s) for s in secrets)
        self.timeout = _timeout(opts.auth_timeout, opts.tls, opts.tls_timeout)

    @property
    def nonce_required(self) -> bool:
        """INFO carries a nonce when nkey users exist or in operator mode
        (nats-server nonceRequired)."""
        return bool(self._nkeys) or self.trust is not None

    def is_slow(self, connect: Any) -> bool:
        if self.trust is not None:
            return True     # two Ed25519 verifies: the user JWT and the nonce
        return self.needs_slow_check(connect) or self.needs_signature_check(connect)

    def identify(self, connect: Any, ctx: Any = None) -> Optional[UserEntry]:
        """The UserEntry a client's CONNECT (with its AuthContext) proves,
        or None. nats-server processClientOrLeafAuthentication's order: a
        claimed nkey; else, with verify_and_map, the certificate alone
        names the user (a CONNECT user is ignored); else no_auth_user and
        the credentials. The user must allow this connection type."""
        ctx = ctx or AuthContext()
        if self.trust is not None:
            user, reason = self.trust.authenticate(connect, ctx.nonce, ctx.host, ctx.kind)
            if ctx.debug is not None:
                ctx.debug(reason or "Authenticated JWT: %s of account %s"
                          % (user.name, user.account_name))
            return user
        if self.tls_map and self._entries and isinstance(connect, dict) \
                and not self._nkey_of(connect):
            entry = self.authenticate_cert(ctx.cert) if ctx.cert else None
            # nats-server still compares the CONNECT password with the mapped
            # user's (mapped users have none: a password given is refused)
            if entry is not None and not check_secret(
                    self._users.get(entry.name, ""), connect.get("pass") or ""):
                entry = None
        else:
            entry = self.authenticate(connect, ctx.nonce)
        if entry is None or not entry.allows_connection_type(ctx.kind):
            return None
        return entry


class RouteAuth(_Credentials):
    """Cluster-port credentials (cluster_username/password/auth_timeout)."""

    def __init__(self, opts) -> None:
        super().__init__()
        username = _secret_str(opts.cluster_username, "cluster user")
        password = _secret_str(opts.cluster_password, "cluster password")
        if username:
            self.mode, self._user, self._password = "user", username, password
            _need_bcrypt([password])
        self.plaintext_passwords = False
        self.timeout = _timeout(opts.cluster_auth_timeout, opts.cluster_tls,
                                opts.cluster_tls_timeout)


# --- hiding secrets in traces -------------------------------------------

# nats-server 2.9 redacts the first "pass..." value of a CONNECT trace with
# [REDACTED]; 2.10 adds auth_token. We redact every pass, password and
# auth_token value (keys matched case-insensitively, as Go's JSON decoding
# accepts "PASS" too), and handle escaped quotes inside the value. jwt, nkey
# and sig are left alone: they are public or bound to a one-time nonce.
_SECRET_KEYS = r"pass|password|auth_token"
_VALUE = r'"(?:[^"\\]|\\.)*"?|[^,}\s]+'
_MASK_STR = re.compile(r'("(?:%s)"\s*:\s*)(?:%s)' % (_SECRET_KEYS, _VALUE), re.I | re.S)
_MASK_BYTES = re.compile(_MASK_STR.pattern.encode(), re.I | re.S)
_REDACTED = '"[REDACTED]"'


def mask_connect_json(text: str) -> str:
    """The CONNECT JSON with every secret value replaced by "[REDACTED]"."""
    return _MASK_STR.sub(lambda m: m.group(1) + _REDACTED, text)


def mask_connect(line: bytes) -> bytes:
    """mask_connect_json for a raw protocol line (`CONNECT {...}\\r\\n`)."""
    low = line.lower()
    if b"pass" not in low and b"auth_token" not in low:
        return line
    return _MASK_BYTES.sub(lambda m: m.group(1) + _REDACTED.encode(), line)
