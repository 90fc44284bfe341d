"""NATS/1.0 header blocks: read the JetStream headers of a published
message (Nats-TTL as nats-server parses it), build the ones the server adds
(direct get, republish, subject delete markers), and the RFC 3339
timestamps JetStream's JSON uses."""

import time

from ..conf import parse_duration

ZERO_TIME = "0001-01-01T00:00:00Z"
MAX_TTL = (1 << 62) // 10 ** 9    # seconds (about 146 years)


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


def set_header(hdr, name, value):
    """`hdr` without its `name` fields, then `name: value` last (nats-server's
    removeHeaderIfPresent then genHeader)."""
    key = ("\r\n%s:" % name).encode()
    i = hdr.find(key)
    while i >= 0:
        j = hdr.find(b"\r\n", i + 2)
        if j < 0:
            break
        hdr = hdr[:i] + hdr[j:]
        i = hdr.find(key)
    return build_headers([(name, value)], hdr)


def is_delete_marker(hdr):
    """A subject delete marker (a Nats-Marker-Reason field) or a KV purge
    (KV-Operation: PURGE): expiring it leaves no new marker (nats-server's
    isSubjectDeleteMarker)."""
    if not hdr or (b"Nats-Marker-Reason" not in hdr and b"KV-Operation" not in hdr):
        return False
    h = parse_headers(hdr)
    return bool(h.get("Nats-Marker-Reason")) or h.get("KV-Operation") == "PURGE"


def max_age_marker(ttl_ns):
    """The header block of the marker that replaces a subject's last
    message when max_age or its TTL removes it (nats-server writes these
    fields in this order; the marker expires after `ttl_ns`, whole seconds)."""
    return ("NATS/1.0\r\nNats-Marker-Reason: MaxAge\r\nNats-TTL: %s\r\nNats-Rollup: sub\r\n\r\n"
            % go_seconds(ttl_ns // 10 ** 9)).encode()


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
    """Nats-TTL as nats-server 2.15 reads it (parseMessageTTL): whole
    seconds > 0; -1 for "never" (any case); 0 for no TTL (an empty value,
    or digits worth 0 such as "00"); None when invalid (a Go duration
    under one second, "0", a negative number, anything else)."""
    if not value:
        return 0
    if value.lower() == "never":
        return -1
    secs = parse_duration(value)
    if secs is not None:
        secs = int(secs) if secs >= 1 else None
    elif value.isascii() and value.isdigit():
        secs = int(value)
    # beyond what expiry times in int64 nanoseconds hold: Go's duration
    # overflows (invalid), here too
    return secs if secs is not None and secs <= MAX_TTL else None


def go_seconds(n):
    """Whole seconds as Go's time.Duration prints them ("2s", "1m30s",
    "1h0m0s"): the TTL a subject delete marker carries."""
    h, rest = divmod(n, 3600)
    m, s = divmod(rest, 60)
    if h:
        return "%dh%dm%ds" % (h, m, s)
    if m:
        return "%dm%ds" % (m, s)
    return "%ds" % s
