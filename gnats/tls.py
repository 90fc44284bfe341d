"""ssl.SSLContext construction for the client port, routes and HTTPS monitoring.

Theory of operation: the server builds its contexts once at start (and on
reload) from Options; a bad file or setting raises TLSConfigError with a
one-line message naming the file, which the caller prints and exits on. The
handshake itself belongs to the reactor (non-blocking, do_handshake on
readiness); `describe` gives the debug line once it is done.

Policy, as in the seed: TLS 1.2 at least, ECDHE with AES-GCM preferred (then
ChaCha20), server preference, no compression, no renegotiation. Cipher suites
are configured with nats-server's (IANA) names and mapped to OpenSSL's; TLS 1.3
suites are always on and not configurable (as in Go).
"""

import hashlib
import ssl
from typing import Iterable, Optional, Tuple


class TLSConfigError(ValueError):
    """A TLS setting or file that cannot be used."""


# nats-server's cipher suite names (IANA, as Go spells them) -> OpenSSL names.
# RC4 and 3DES suites are listed so a config naming them gets a clear
# "not supported" instead of "unknown"; modern OpenSSL builds refuse them.
CIPHER_SUITES = {
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# TLS 1.3 suites: same name in both worlds; OpenSSL enables all of them.
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256")

# OpenSSL name -> the name nats-server logs (Go drops the _SHA256 of ChaCha).
_IANA_BY_OPENSSL = {}
for _iana, _openssl in CIPHER_SUITES.items():
    _IANA_BY_OPENSSL.setdefault(_openssl, _iana)

# The seed's preference, AES-128 first as Go does (it is as strong in practice
# and faster); this is also what nats-server negotiates with an RSA cert:
# "TLS version 1.2, cipher suite TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".
DEFAULT_CIPHER_SUITES = (
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
)

TLS_HELP = """\
TLS is turned on for client connections from the command line:

    --tls                   Enable TLS, do not verify clients (default: false)
    --tlscert FILE          Server certificate file
    --tlskey FILE           Private key for server certificate
    --tlsverify             Enable TLS, verify client certificates
    --tlscacert FILE        Client certificate CA for verification

or in the tls section of a configuration file (the cluster section takes its
own tls block for routes; routes always verify the peer in both directions):

    tls {
        cert_file:      "./configs/certs/server-cert.pem"
        key_file:       "./configs/certs/server-key.pem"
        ca_file:        "./configs/certs/ca.pem"
        verify:         true
        timeout:        2

        cipher_suites: [
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        ]
    }

TLS 1.2 is the minimum. TLS 1.3 suites (%s)
are always enabled. Available TLS 1.2 cipher suites include:
%s
""" % (", ".join(TLS13_SUITES),
       "\n".join("    " + name for name in sorted(CIPHER_SUITES)))


# --- building blocks ------------------------------------------------------

def _check_pem(path: str, what: str, marker: str) -> None:
    """Fail early, naming the file, when it is missing or holds no PEM block
    of the expected kind (OpenSSL's own errors name neither)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TLSConfigError("%s file %s: %s" % (what, path, e.strerror or e)) from None
    if b"-----BEGIN" not in data or marker.encode() not in data:
        raise TLSConfigError("%s file %s: no PEM %s found" % (what, path, marker.lower()))


def _no_password(*_args) -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an
    # encrypted key and block the server; refuse instead.
    raise TLSConfigError("encrypted private keys are not supported")


def _load_chain(ctx: ssl.SSLContext, cert: str, key: str, what: str) -> None:
    if not cert:
        raise TLSConfigError("TLS %s certificate must be present and valid" % what)
    if not key:
        raise TLSConfigError("TLS %s private key must be present and valid" % what)
    _check_pem(cert, "TLS certificate", "CERTIFICATE")
    _check_pem(key, "TLS private key", "PRIVATE KEY")
    try:
        ctx.load_cert_chain(cert, key, password=_no_password)
    except TLSConfigError as e:
        raise TLSConfigError("TLS private key file %s: %s" % (key, e)) from None
    except ssl.SSLError as e:
        reason = getattr(e, "reason", None) or str(e)
        if reason == "KEY_VALUES_MISMATCH":
            raise TLSConfigError("TLS private key file %s does not match certificate %s"
                                 % (key, cert)) from None
        raise TLSConfigError("error loading TLS certificate %s / key %s: %s"
                             % (cert, key, reason)) from None


def _load_ca(ctx: ssl.SSLContext, ca: str, purpose: ssl.Purpose) -> None:
    """Trust ca (a PEM file), or the system's roots when none is given."""
    if not ca:
        ctx.load_default_certs(purpose)
        return
    _check_pem(ca, "TLS CA", "CERTIFICATE")
    try:
        ctx.load_verify_locations(cafile=ca)
    except ssl.SSLError as e:
        raise TLSConfigError("TLS CA file %s: %s"
                             % (ca, getattr(e, "reason", None) or e)) from None


def openssl_ciphers(names: Iterable[str]) -> str:
    """The OpenSSL cipher string for nats-server cipher suite names.

    Unknown names raise TLSConfigError("unrecognized cipher NAME") as
    nats-server does; TLS 1.3 names are accepted and skipped (always on).
    """
    out = []
    for name in names:
        if not isinstance(name, str):
            raise TLSConfigError("unrecognized cipher %r" % (name,))
        if name in TLS13_SUITES:
            continue
        if name in CIPHER_SUITES:
            openssl = CIPHER_SUITES[name]
        elif name in _IANA_BY_OPENSSL:  # an OpenSSL name given directly
            openssl = name
        else:
            raise TLSConfigError("unrecognized cipher %s" % name)
        if openssl not in out:
            out.append(openssl)
    return ":".join(out)


def _harden(ctx: ssl.SSLContext, suites: Iterable[str]) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    suites = list(suites) or list(DEFAULT_CIPHER_SUITES)
    ciphers = openssl_ciphers(suites)
    if not ciphers:  # only TLS 1.3 names: keep TLS 1.2 on the defaults
        ciphers = openssl_ciphers(DEFAULT_CIPHER_SUITES)
    try:
        ctx.set_ciphers(ciphers)
    except ssl.SSLError:
        raise TLSConfigError("none of the cipher suites %s is supported by %s"
                             % (", ".join(suites), ssl.OPENSSL_VERSION)) from None


def make_server_context(cert: str, key: str, ca: str = "", verify: bool = False,
                        cipher_suites: Iterable[str] = (), what: str = "Server"
                        ) -> ssl.SSLContext:
    """A server-side context; verify requires and checks client certificates
    against ca (or the system roots when ca is empty)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx, cipher_suites)
    _load_chain(ctx, cert, key, what)
    if verify:
        _load_ca(ctx, ca, ssl.Purpose.CLIENT_AUTH)
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif ca:
        _check_pem(ca, "TLS CA", "CERTIFICATE")  # report a bad file even if unused
    return ctx


def make_client_context(ca: str = "", cert: str = "", key: str = "",
                        verify: bool = True, cipher_suites: Iterable[str] = ()
                        ) -> ssl.SSLContext:
    """A client-side context (route dialling, tests). With verify the peer's
    chain and host name are checked: pass server_hostname=<host> to wrap."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(ctx, cipher_suites)
    if cert or key:
        _load_chain(ctx, cert, key, "Client")
    if verify:
        _load_ca(ctx, ca, ssl.Purpose.SERVER_AUTH)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --- what the server uses ---------------------------------------------------

def server_context(opts) -> ssl.SSLContext:
    """The client port's context: tls_cert, tls_key, tls_ca_cert, tls_verify,
    tls_cipher_suites."""
    return make_server_context(opts.tls_cert, opts.tls_key, opts.tls_ca_cert,
                               opts.tls_verify, opts.tls_cipher_suites)


def route_contexts(opts) -> Tuple[ssl.SSLContext, ssl.SSLContext]:
    """(accepting side, dialling side) for cluster_tls_*.

    As nats-server does, routes always verify in both directions: the route
    certificate is presented both ways and checked against cluster_tls_ca_cert
    (system roots without one); the dialler also checks the host name of the
    route URL.
    """
    cert, key, ca = opts.cluster_tls_cert, opts.cluster_tls_key, opts.cluster_tls_ca_cert
    server = make_server_context(cert, key, ca, verify=True, what="Route")
    client = make_client_context(ca, cert, key, verify=True)
    return server, client


def monitor_context(opts) -> ssl.SSLContext:
    """HTTPS monitoring: the client port's certificate, no client verification."""
    if not (opts.tls_cert and opts.tls_key):
        raise TLSConfigError("TLS cert and key required for HTTPS")
    return make_server_context(opts.tls_cert, opts.tls_key,
                               cipher_suites=opts.tls_cipher_suites)


def files_digest(*paths: str) -> str:
    """A digest of the files' contents: a rotated certificate keeps its file
    name, so a reload compares this to know that TLS changed."""
    h = hashlib.sha256()
    for p in paths:
        if p:
            try:
                with open(p, "rb") as f:
                    h.update(f.read())
            except OSError:
                h.update(b"\0missing\0" + p.encode("utf-8", "replace"))
        h.update(b"\0")
    return h.hexdigest()


def cipher_name(openssl_name: str) -> str:
    """nats-server's (IANA) name for an OpenSSL cipher name, when known."""
    return _IANA_BY_OPENSSL.get(openssl_name, openssl_name)


def describe(sslobj) -> str:
    """'TLS version 1.2, cipher suite TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256'
    for a finished handshake (ssl.SSLSocket or ssl.SSLObject)."""
    version: Optional[str] = sslobj.version()
    cipher = sslobj.cipher()
    if version and version.startswith("TLSv"):
        version = version[4:]
    name = cipher_name(cipher[0]) if cipher else "unknown"
    return "TLS version %s, cipher suite %s" % (version or "unknown", name)
