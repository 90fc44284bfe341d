"""NATS/1.0 header blocks: read the JetStream headers of a published
message, build the ones the server adds (direct get, republish), and the
RFC 3339 timestamps JetStream's JSON uses."""

import time

ZERO_TIME = "0001-01-01T00:00:00Z"


def parse_headers(hdr):
    """{name: value} of a header block (first value wins, as nats-server's
    getHeader); b"" or a block without fields gives {}."""
    out = {}
    if not hdr:
        return out
    try:
        text = hdr.decode("utf-8", "replace")
    except AttributeError:
        return out
    for line in text.split("\r\n")[1:]:
        k, sep, v = line.partition(":")
        if sep and k and k not in out:
            out[k] = v.strip()
    return out


def build_headers(fields, base=b""):
    """A header block: the fields of `base` (a block or b"") then `fields`
    ((name, value) pairs)."""
    head = base[:-2] if base.endswith(b"\r\n\r\n") else b"NATS/1.0\r\n"
    extra = "".join("%s: %s\r\n" % kv for kv in fields).encode()
    return head + extra + b"\r\n"


def status_headers(code, text):
    return ("NATS/1.0 %d %s\r\n\r\n" % (code, text)).encode()


def rfc3339(ns):
    """Go's RFC3339Nano in UTC: fraction without trailing zeros."""
    if not ns:
        return ZERO_TIME
    secs, frac = divmod(ns, 10 ** 9)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        base += ("." + "%09d" % frac).rstrip("0")
    return base + "Z"


def parse_ttl(value):
    """Nats-TTL: "never" (-1), a Go duration ("10s", "1m30s", "500ms") or
    whole seconds; whole seconds >= 1 out; None when invalid."""
    v = value.strip()
    if v == "never":
        return -1
    if v.isdigit():
        n = int(v)
        return n if n >= 1 else None
    ns = parse_duration(v)
    if ns is None or ns < 10 ** 9:
        return None
    return ns // 10 ** 9


_UNITS = (("ns", 1), ("us", 10 ** 3), ("µs", 10 ** 3), ("ms", 10 ** 6), ("s", 10 ** 9), ("m", 60 * 10 ** 9),
          ("h", 3600 * 10 ** 9))


def parse_duration(v):
    """A Go duration string in nanoseconds, None if malformed."""
    if not v:
        return None
    total = 0
    i, n = 0, len(v)
    while i < n:
        j = i
        while j < n and (v[j].isdigit() or v[j] == "."):
            j += 1
        if j == i:
            return None
        try:
            num = float(v[i:j])
        except ValueError:
            return None
        k = j
        while k < n and not (v[k].isdigit() or v[k] == "."):
            k += 1
        unit = v[j:k]
        mult = dict(_UNITS).get(unit)
        if mult is None:
            return None
        total += int(num * mult)
        i = k
    return total
