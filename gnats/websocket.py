"""WebSocket (RFC 6455) as pure functions: the upgrade request, frames in,
frames out. Bytes in, bytes and events out; no sockets (ws_listener.py and
ws_client.py do the I/O).

Theory of operation
-------------------
Inbound, `FrameReader.feed(data)` walks the bytes once. Application data
(binary or text frames, and their continuations) is unmasked as it arrives,
even when a frame is split across reads, and handed back concatenated: the
NATS parser above sees one byte stream, as nats-server's readLoop does, so
a frame never has to be held whole and the parser's own limits
(max_control_line, max_payload) bound what it buffers. Only three things
are buffered here, each bounded: an incomplete frame header (14 bytes at
most), an incomplete control frame (125 bytes of payload at most) and a
compressed message, which cannot be inflated before its last frame
(bounded by `max_message_size`, as nats-server's wsMaxMessageSize, and
inflated to at most max_payload bytes, so a small "zip bomb" cannot
expand). One feed inflates at most INFLATE_PER_FEED bytes (plus the
message that crosses it): the rest of its input waits, raw, in `head`
(`more` is set) for the caller's next feed(b""), so 1 MiB of small
compressed messages cannot become 1 GiB at once. Control frames come back
as events; the first violation of the protocol comes back as an ("error",
status, text) event and the reader takes no more input.

Outbound, the server sends binary frames only (browsers running nats.ws
read nothing else): `frame_header` builds the 2, 4 or 10 byte header the
caller puts in front of a whole flush of NATS data, `deflate_frame`
compresses such a flush (permessage-deflate, no context takeover in either
direction, as nats-server negotiates it), `split_frames` cuts one for
browsers into frames of at most BROWSER_FRAME bytes (nats-server does the
same: browsers handled large frames badly).

Unmasking runs in place in the bytearray that collects a read's
application data, with bytes.translate over each of the 4 byte lanes of
the key (see unmask_in_place): a few C-level passes, where a Python loop
over bytes would cost ~50 ns a byte.
"""

import base64
import hashlib
import struct
import zlib

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY = 0, 1, 2
OP_CLOSE, OP_PING, OP_PONG = 8, 9, 10

FIN, RSV1, RSV23, MASK = 0x80, 0x40, 0x30, 0x80

# Close status codes (RFC 6455 section 7.4.1)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_NO_STATUS = 1005
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TLS = 1015

MAX_CONTROL = 125               # payload bytes of a control frame
COMPRESS_THRESHOLD = 64         # nats-server does not compress smaller flushes
BROWSER_FRAME = 4096            # nats-server's frame size for browsers
MSG_MULTIPLE = 8                # compressed message limit: 8 x max_payload ...
MSG_LIMIT = 64 * 1024 * 1024    # ... and never more than 64 MiB
DEFLATE_TAIL = b"\x00\x00\xff\xff"
# Inflated bytes one feed may return (then it stops at the next message).
# Without it, one 1 MiB read of 1 KiB messages that each inflate to a
# 1 MiB PUB became 1 GiB in memory at once (peak RSS +540 MiB measured).
INFLATE_PER_FEED = 1024 * 1024


def max_message_size(max_payload):
    """The most compressed bytes one message may hold (nats-server's
    wsMaxMessageSize)."""
    return min(max(max_payload, 1) * MSG_MULTIPLE, MSG_LIMIT)


def accept_key(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (str)."""
    return base64.b64encode(hashlib.sha1(key.encode("latin-1") + GUID).digest()).decode()


def valid_key(key):
    """A Sec-WebSocket-Key must be the base64 of 16 bytes."""
    try:
        return len(base64.b64decode(key.encode("latin-1"), validate=True)) == 16
    except (ValueError, UnicodeEncodeError):
        return False


# -- outbound ---------------------------------------------------------------

def frame_header(length, opcode=OP_BINARY, final=True, compressed=False):
    """The header of an unmasked (server to client) frame."""
    b0 = opcode | (FIN if final else 0) | (RSV1 if compressed else 0)
    if length <= 125:
        return bytes((b0, length))
    if length < 65536:
        return struct.pack("!BBH", b0, 126, length)
    return struct.pack("!BBQ", b0, 127, length)


def control_frame(opcode, payload=b""):
    return frame_header(len(payload), opcode) + payload


def close_payload(status, body=""):
    """Status and reason of a close frame; a reason too long for a control
    frame is cut and ends in "..." (as nats-server's)."""
    raw = body.encode("utf-8")
    if len(raw) > MAX_CONTROL - 2:
        raw = raw[:MAX_CONTROL - 5].decode("utf-8", "ignore").encode("utf-8") + b"..."
    return struct.pack("!H", status) + raw


def close_frame(status, body=""):
    return control_frame(OP_CLOSE, close_payload(status, body))


def valid_close_status(code):
    """May a peer send this status in a close frame?"""
    if code in (CLOSE_NO_STATUS, 1004, 1006, CLOSE_TLS):
        return False
    if code < 1000 or code >= 5000:
        return False
    return not 1016 <= code <= 2999


def new_deflater():
    # raw deflate, fastest level (nats-server uses flate.BestSpeed)
    return zlib.compressobj(1, zlib.DEFLATED, -15)


def deflate_frame(data, browser=False):
    """One flush of NATS data as a compressed message: a fresh deflate
    stream per flush (server_no_context_takeover). A browser gets frames
    of at most BROWSER_FRAME bytes, only the first marked compressed."""
    c = new_deflater()
    body = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    if body.endswith(DEFLATE_TAIL):
        body = body[:-4]
    if browser and len(body) > BROWSER_FRAME:
        return split_frames(body, compressed=True)
    return frame_header(len(body), compressed=True) + body


def split_frames(data, compressed=False):
    """data as a message of fragments of at most BROWSER_FRAME bytes when
    compressed (a compressed message must stay one message), else as
    separate whole messages of that size (what nats-server sends)."""
    parts = []
    n = len(data)
    for i in range(0, n, BROWSER_FRAME):
        chunk = data[i:i + BROWSER_FRAME]
        last = i + BROWSER_FRAME >= n
        if compressed:
            parts.append(frame_header(len(chunk), OP_BINARY if i == 0 else OP_CONT,
                                      final=last, compressed=(i == 0)))
        else:
            parts.append(frame_header(len(chunk)))
        parts.append(chunk)
    return b"".join(parts)


# -- inbound ----------------------------------------------------------------

# _XOR[k] maps every byte b to b ^ k (for bytes.translate)
_XOR = [bytes(b ^ k for b in range(256)) for k in range(256)]


def unmask_in_place(buf, start, end, key):
    """XOR buf[start:end] (a bytearray) with the 4-byte key, in place: one
    translate per key byte over a stride of 4 (aiohttp's pure-Python way).
    Measured against XOR-ing the region as one big integer, the integer
    conversions (from_bytes, to_bytes) and their large temporary objects
    were half the server's CPU time on 1 KiB messages (perf)."""
    if end - start < 16:
        for i in range(start, end):
            buf[i] ^= key[(i - start) & 3]
        return
    for i in range(4):
        buf[start + i:end:4] = buf[start + i:end:4].translate(_XOR[key[i]])


def unmask(data, key, offset=0):
    """data XOR-ed with the 4-byte mask key, starting `offset` bytes into it."""
    if offset:
        key = key[offset:] + key[:offset]
    buf = bytearray(data)
    unmask_in_place(buf, 0, len(buf), key)
    return bytes(buf)


class FrameReader:
    """The inbound state of one connection (see the module docstring).

    feed(data) -> (app_data: bytes, events: list). Events are
    ("ping", payload), ("pong", payload), ("close", status, text) and
    ("error", status, text); after a close or an error, input is ignored.
    """

    __slots__ = ("compress", "mask", "max_payload", "max_message", "head", "rem", "key",
                 "kpos", "in_msg", "msg_compressed", "frame_final", "cbuf", "done",
                 "more")

    def __init__(self, max_payload, compress=False, mask=True):
        self.compress = compress        # permessage-deflate was negotiated
        self.mask = mask                # clients must mask (always, for clients)
        self.max_payload = max_payload
        self.max_message = max_message_size(max_payload)
        self.head = b""                 # an incomplete header (or control frame)
        self.rem = 0                    # payload bytes left in the current data frame
        self.key = b""
        self.kpos = 0
        self.in_msg = False             # a fragmented message is open
        self.msg_compressed = False
        self.frame_final = False
        # a compressed message's frames so far, in one buffer: a list of
        # per-frame chunks cost ~70 bytes of objects per 1-byte frame (3M
        # such frames held +220 MiB under an 8 MiB limit)
        self.cbuf = bytearray()
        self.done = False
        self.more = False               # input held back in head (INFLATE_PER_FEED)

    def feed(self, data, prefix=b""):
        """prefix: earlier application data still waiting for the parser;
        it heads the result, which saves the caller a copy."""
        if self.done:
            self.head = b""
            self.more = False
            return prefix, []
        if self.head:
            data = self.head + data
            self.head = b""
            self.more = False
        out = bytearray(prefix)
        budget = len(out) + INFLATE_PER_FEED
        events = []
        mv = memoryview(data)
        pos = 0
        n = len(data)
        while pos < n:
            if self.rem:
                take = self.rem if self.rem <= n - pos else n - pos
                kpos = self.kpos
                key = self.key
                if kpos:
                    key = key[kpos:] + key[:kpos]
                self.rem -= take
                self.kpos = (kpos + take) & 3
                if self.msg_compressed:
                    chunk = bytearray(mv[pos:pos + take])
                    pos += take
                    if self.mask:
                        unmask_in_place(chunk, 0, take, key)
                    if not self._add_compressed(chunk, out, events):
                        break
                    if len(out) > budget and pos < n:
                        self.head = data[pos:]
                        self.more = True
                        break
                else:
                    start = len(out)
                    out += mv[pos:pos + take]
                    pos += take
                    if self.mask:
                        unmask_in_place(out, start, start + take, key)
                continue
            # a frame header
            if n - pos < 2:
                self.head = data[pos:]
                break
            b0 = data[pos]
            b1 = data[pos + 1]
            need = 2
            ln = b1 & 0x7F
            if ln == 126:
                need = 4
            elif ln == 127:
                need = 10
            if b1 & MASK:
                need += 4
            err = self._check(b0, b1, ln)
            if err:
                events.append(("error", CLOSE_PROTOCOL_ERROR, err))
                self.done = True
                break
            if n - pos < need:
                self.head = data[pos:]
                break
            if ln == 126:
                ln = (data[pos + 2] << 8) | data[pos + 3]
            elif ln == 127:
                ln = int.from_bytes(data[pos + 2:pos + 10], "big")
                if ln >> 63:
                    events.append(("error", CLOSE_PROTOCOL_ERROR, "invalid 64-bit payload length"))
                    self.done = True
                    break
            key = data[pos + need - 4:pos + need] if b1 & MASK else b""
            op = b0 & 0x0F
            if op >= OP_CLOSE:
                # control frames are handled whole (<= 125 bytes)
                if n - pos < need + ln:
                    self.head = data[pos:]
                    break
                payload = data[pos + need:pos + need + ln]
                pos += need + ln
                if key:
                    payload = unmask(payload, key)
                if self._control(op, payload, events):
                    break
                continue
            pos += need
            final = bool(b0 & FIN)
            if op != OP_CONT:
                self.msg_compressed = bool(b0 & RSV1)
            self.in_msg = not final
            self.frame_final = final
            self.key = key
            self.kpos = 0
            self.rem = ln
            if not ln and self.msg_compressed and final:
                if not self._add_compressed(b"", out, events):
                    break
                if len(out) > budget and pos < n:
                    self.head = data[pos:]
                    self.more = True
                    break
        mv.release()
        return bytes(out), events

    def _check(self, b0, b1, ln):
        """The first protocol violation in a frame's first two bytes (the
        checks and texts of nats-server's wsReadLoop), or None."""
        op = b0 & 0x0F
        compressed = b0 & RSV1
        if b0 & RSV23:
            return "RSV2 and RSV3 must be clear"
        if compressed and not self.compress:
            return "compressed frame received without negotiated permessage-deflate"
        if self.mask and not b1 & MASK:
            return "mask bit missing"
        if op >= OP_CLOSE:
            if op not in (OP_CLOSE, OP_PING, OP_PONG):
                return "unknown opcode %d" % op
            if ln > MAX_CONTROL:
                return "control frame length bigger than maximum allowed of %d bytes" % MAX_CONTROL
            if not b0 & FIN:
                return "control frame does not have final bit set"
            if compressed:
                return "control frame must not be compressed"
        elif op == OP_TEXT or op == OP_BINARY:
            if self.in_msg:
                return "new message started before final frame for previous message was received"
        elif op == OP_CONT:
            if not self.in_msg or compressed:
                return "invalid continuation frame"
        else:
            return "unknown opcode %d" % op
        return None

    def _control(self, op, payload, events):
        """A whole control frame; True when reading must stop."""
        if op == OP_PING:
            events.append(("ping", payload))
            return False
        if op == OP_PONG:
            events.append(("pong", payload))
            return False
        # close
        self.done = True
        if len(payload) == 1:
            events.append(("error", CLOSE_PROTOCOL_ERROR, "close frame payload cannot be 1 byte"))
            return True
        status, text = CLOSE_NO_STATUS, ""
        if len(payload) >= 2:
            status = struct.unpack("!H", payload[:2])[0]
            if not valid_close_status(status):
                events.append(("error", CLOSE_PROTOCOL_ERROR, "invalid close status code %d" % status))
                return True
            try:
                text = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                status, text = CLOSE_INVALID_DATA, "invalid utf8 body in close frame"
        events.append(("close", status, text))
        return True

    def _add_compressed(self, chunk, out, events):
        """Collect a compressed message; inflate it after its last frame.
        False (with an error event) when it breaks a limit."""
        if chunk:
            if len(self.cbuf) + len(chunk) > self.max_message:
                return self._too_big(events)
            self.cbuf += chunk
        if self.rem or not self.frame_final:
            return True
        data = self.cbuf
        data += DEFLATE_TAIL
        self.cbuf = bytearray()
        self.msg_compressed = False
        d = zlib.decompressobj(-15)
        try:
            plain = d.decompress(data, self.max_payload + 1)
        except zlib.error:
            events.append(("error", CLOSE_INVALID_DATA, "invalid compressed data"))
            self.done = True
            return False
        if len(plain) > self.max_payload:
            return self._too_big(events)
        out += plain
        return True

    def _too_big(self, events):
        events.append(("error", CLOSE_TOO_BIG, "Maximum Payload Exceeded"))
        self.done = True
        self.cbuf = bytearray()
        return False


# -- the upgrade request ----------------------------------------------------

MAX_REQUEST_HEAD = 64 * 1024    # bytes of request line and headers


class HandshakeError(Exception):
    """The upgrade is refused with an HTTP status; `reason` is logged."""

    def __init__(self, status, reason):
        Exception.__init__(self, reason)
        self.status = status
        self.reason = reason


class Request:
    """A parsed HTTP/1.1 request head: method, target, headers (lower-case
    name -> list of values)."""

    __slots__ = ("method", "target", "version", "headers")

    def __init__(self, method, target, version, headers):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers

    def get(self, name, default=""):
        v = self.headers.get(name.lower())
        return v[0] if v else default

    def has_token(self, name, token):
        """Does a comma-separated header hold `token` (case-insensitive)?"""
        token = token.lower()
        for v in self.headers.get(name.lower(), ()):
            for t in v.split(","):
                if t.strip(" \t").lower() == token:
                    return True
        return False

    def offers_deflate(self):
        for v in self.headers.get("sec-websocket-extensions", ()):
            for ext in v.split(","):
                for p in ext.split(";"):
                    if p.strip(" \t").lower() == "permessage-deflate":
                        return True
        return False

    def cookies(self):
        out = {}
        for v in self.headers.get("cookie", ()):
            for part in v.split(";"):
                name, sep, value = part.strip().partition("=")
                if sep and name:
                    value = value.strip()
                    if len(value) > 1 and value[0] == value[-1] == '"':
                        value = value[1:-1]
                    out.setdefault(name, value)
        return out


def parse_request(head):
    """The request head (bytes, without the blank line) as a Request;
    HandshakeError(400) when it is not HTTP/1.1 as a browser sends it."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:          # pragma: no cover - latin-1 decodes anything
        raise HandshakeError(400, "malformed request")
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HandshakeError(400, "malformed request line")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name:
            raise HandshakeError(400, "malformed header line")
        headers.setdefault(name.lower(), []).append(value.strip(" \t"))
    return Request(parts[0], parts[1], parts[2], headers)


def check_upgrade(req):
    """RFC 6455 4.2.1's checks in nats-server's order and words; returns the
    client's key."""
    if req.method != "GET":
        raise HandshakeError(405, "request method must be GET")
    if not req.get("host"):
        raise HandshakeError(400, "'Host' missing in request")
    if not req.has_token("upgrade", "websocket"):
        raise HandshakeError(400, "invalid value for header 'Upgrade'")
    if not req.has_token("connection", "upgrade"):
        raise HandshakeError(400, "invalid value for header 'Connection'")
    key = req.get("sec-websocket-key")
    if not key:
        raise HandshakeError(400, "key missing")
    if not valid_key(key):
        raise HandshakeError(400, "invalid websocket key")
    if not req.has_token("sec-websocket-version", "13"):
        raise HandshakeError(400, "invalid version")
    return key


HTTP_REASONS = {400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed",
                431: "Request Header Fields Too Large", 500: "Internal Server Error"}


def http_error(status):
    """The response Go's http.Error writes for a refused upgrade."""
    text = HTTP_REASONS.get(status, "Error")
    body = (text + "\n").encode()
    return ("HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Sec-Websocket-Version: 13\r\nX-Content-Type-Options: nosniff\r\n"
            "Connection: close\r\nContent-Length: %d\r\n\r\n"
            % (status, text, len(body))).encode() + body


def upgrade_response(key, compress, extra_headers=""):
    out = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n" % accept_key(key))
    if compress:
        out += ("Sec-WebSocket-Extensions: permessage-deflate; "
                "server_no_context_takeover; client_no_context_takeover\r\n")
    return (out + extra_headers + "\r\n").encode("latin-1")


def host_and_port(tls, hostport):
    """(host lower-cased, port) of a Host or Origin authority, the scheme's
    default port when none is given (nats-server's wsGetHostAndPort)."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ValueError("missing ']' in address %s" % hostport)
        host, rest = hostport[1:end], hostport[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError("address %s: bad port" % hostport)
        port = rest[1:] if rest else ""
    elif hostport.count(":") == 1:
        host, port = hostport.split(":")
    elif ":" in hostport:
        raise ValueError("address %s: too many colons in address" % hostport)
    else:
        host, port = hostport, ""
    if not port:
        port = "443" if tls else "80"
    return host.lower(), port
