"""A leaf remote's `credentials` file: the user JWT it presents and the
Ed25519 signature of the hub's nonce made with the file's nkey seed (what
nats-server's sendLeafConnect puts in CONNECT as `jwt` and `sig`).

The rest of the server only verifies signatures (gnats/nkeys.py); a leaf
that dials has to sign, once per connection, so this module carries a small
Ed25519 signer (RFC 8032, pure Python, ~5 ms a signature). The seed is read
from the file at each dial and dropped after use, as nats-server does.
"""

import base64
import hashlib

from .jwt import read_creds
from .nkeys import crc16

_Q = 2 ** 255 - 19
_L = 2 ** 252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _Q - 2, _Q) % _Q
_SQRT_M1 = pow(2, (_Q - 1) // 4, _Q)
PREFIX_SEED = 18 << 3           # 'S'


class CredsError(ValueError):
    pass


def _recover_x(y, sign):
    xx = (y * y - 1) * pow(_D * y * y + 1, _Q - 2, _Q)
    x = pow(xx, (_Q + 3) // 8, _Q)
    if (x * x - xx) % _Q:
        x = x * _SQRT_M1 % _Q
    if x & 1 != sign:
        x = _Q - x
    return x


_BY = 4 * pow(5, _Q - 2, _Q) % _Q
_B = (_recover_x(_BY, 0), _BY, 1, _recover_x(_BY, 0) * _BY % _Q)


def _add(p, q):
    # extended twisted Edwards coordinates (RFC 8032, 5.1.4)
    a = (p[1] - p[0]) * (q[1] - q[0]) % _Q
    b = (p[1] + p[0]) * (q[1] + q[0]) % _Q
    c = 2 * p[3] * q[3] * _D % _Q
    d = 2 * p[2] * q[2] % _Q
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _Q, g * h % _Q, f * g % _Q, e * h % _Q)


def _mul(s, p):
    q = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _encode(p):
    zi = pow(p[2], _Q - 2, _Q)
    x, y = p[0] * zi % _Q, p[1] * zi % _Q
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _h(*parts):
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little")


def sign(seed32, message):
    """The Ed25519 signature of `message` by the 32-byte private seed."""
    h = hashlib.sha512(seed32).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    pub = _encode(_mul(a, _B))
    r = _h(h[32:], message) % _L
    big_r = _encode(_mul(r, _B))
    s = (r + _h(big_r, pub, message) * a) % _L
    return big_r + s.to_bytes(32, "little")


def decode_seed(seed):
    """An nkey seed ("SU...") -> its 32 raw bytes, checked like nkeys.FromSeed."""
    text = seed.strip()
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (ValueError, TypeError):
        raise CredsError("Credentials file has malformed seed") from None
    if len(raw) != 36 or raw[0] & 0xF8 != PREFIX_SEED:
        raise CredsError("Credentials file has malformed seed")
    if crc16(raw[:34]) != int.from_bytes(raw[34:], "little"):
        raise CredsError("Credentials file has malformed seed")
    return raw[2:34]


def connect_fields(path, nonce):
    """{"jwt", "sig"} for a leaf CONNECT: the file's user JWT, and the
    nonce signed (unpadded base64url). CredsError or OSError when the file
    cannot be used."""
    try:
        token, seed = read_creds(path)
    except ValueError as e:
        raise CredsError(str(e)) from None
    sig = sign(decode_seed(seed), nonce.encode())
    return {"jwt": token, "sig": base64.urlsafe_b64encode(sig).rstrip(b"=").decode()}
