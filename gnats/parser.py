"""Protocol control-line parsing shared by client and route connections.

The byte-level loop lives in inbound.py, shared by client and route
connections, because it is the hot path and delivers as it parses; what is
here is what the loop and the connection kinds call on a cache miss:
splitting arguments, checking sizes and subjects, and the protocol's error
texts. Pure functions, no sockets.
"""

import json
import re

# -ERR texts, exactly as clients match on them
ERR_UNKNOWN_OP = "Unknown Protocol Operation"
ERR_PARSER = "Parser Error"
ERR_AUTH = "Authorization Violation"
ERR_AUTH_TIMEOUT = "Authentication Timeout"
ERR_MAX_PAYLOAD = "Maximum Payload Violation"
ERR_MAX_CONTROL = "Maximum Control Line Exceeded"
ERR_MAX_CONN = "maximum connections exceeded"
ERR_STALE = "Stale Connection"
ERR_TLS_REQUIRED = "Secure Connection - TLS Required"
ERR_INVALID_SUBJECT = "Invalid Subject"
ERR_INVALID_PUB_SUBJECT = "Invalid Publish Subject"
ERR_MAX_SUBS = "maximum subscriptions exceeded"     # nats-server 2.9 and 2.15
ERR_NO_HEADERS = "Message Headers Not Supported"


class ProtocolError(Exception):
    """A violation that ends the connection with `-ERR '<text>'`."""

    def __init__(self, text, detail=""):
        Exception.__init__(self, text)
        self.text = text
        self.detail = detail or text


def err_line(text):
    return ("-ERR '%s'\r\n" % text).encode()


def split_args(line):
    """Split a control line into its op (upper-cased) and arguments.
    Arguments are separated by runs of spaces or tabs (the line's CR/LF end
    it), as nats-server's splitArg: `bytes.split()` would also split on
    \x0b and \x0c, and in a mixed cluster a subject `foo\x0bbar` sent by a
    Go node would then reach subscribers of `foo` with reply `bar`."""
    if b"\x0b" in line or b"\x0c" in line:
        parts = _split_sp_tab(line)
    else:
        parts = line.split()
    if not parts:
        raise ProtocolError(ERR_UNKNOWN_OP, "empty line")
    return parts[0].upper(), parts[1:]


_split_sp_tab = re.compile(rb"[^ \t\r\n]+").findall


def parse_size(b):
    """A payload size: decimal digits only (no sign, no spaces)."""
    if not b or len(b) > 12 or not b.isdigit():
        raise ProtocolError(ERR_PARSER, "bad or missing size %r" % b)
    return int(b)


def parse_pub_args(args):
    """PUB <subject> [reply] <size> -> (subject, reply, size)."""
    n = len(args)
    if n == 2:
        return args[0], b"", parse_size(args[1])
    if n == 3:
        return args[0], args[1], parse_size(args[2])
    raise ProtocolError(ERR_PARSER, "processPub parse error")


def parse_hpub_args(args):
    """HPUB <subject> [reply] <hdr size> <total size> -> (subject, reply, hdr, total)."""
    n = len(args)
    if n == 3:
        subject, reply = args[0], b""
    elif n == 4:
        subject, reply = args[0], args[1]
    else:
        raise ProtocolError(ERR_PARSER, "processHeaderPub parse error")
    hdr = parse_size(args[-2])
    total = parse_size(args[-1])
    if hdr > total:
        raise ProtocolError(ERR_PARSER, "header size larger than total size")
    return subject, reply, hdr, total


def parse_sub_args(args):
    """SUB <subject> [queue] <sid> -> (subject, queue or None, sid)."""
    n = len(args)
    if n == 2:
        return args[0], None, args[1]
    if n == 3:
        return args[0], args[1], args[2]
    raise ProtocolError(ERR_PARSER, "processSub parse error")


def parse_unsub_args(args):
    """UNSUB <sid> [max] -> (sid, max or 0)."""
    n = len(args)
    if n == 1:
        return args[0], 0
    if n == 2:
        return args[0], parse_size(args[1])
    raise ProtocolError(ERR_PARSER, "processUnsub parse error")


def parse_json_arg(line, op_len):
    """The JSON object after CONNECT/INFO. Returns a dict. No size limit of
    its own: the read loop has bounded the whole line already
    (max_control_line; a route's INFO/CONNECT, route.MAX_JSON_LINE)."""
    raw = line[op_len:].strip()
    try:
        obj = json.loads(raw.decode("utf-8", "strict"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(ERR_PARSER, "invalid JSON: %s" % e)
    except RecursionError:
        # `CONNECT [[[[...` fits in a control line and nests deeper than
        # the interpreter's recursion limit: bad input, not a server crash
        raise ProtocolError(ERR_PARSER, "invalid JSON: nested too deeply")
    if not isinstance(obj, dict):
        raise ProtocolError(ERR_PARSER, "JSON is not an object")
    return obj


def snippet(buf, pos, n=32):
    """A short printable sample of offending input, for the error log."""
    return repr(bytes(buf[pos:pos + n]))


def show(b):
    """A protocol line or payload as trace text (no line end)."""
    if isinstance(b, (bytes, bytearray)):
        b = bytes(b).decode("utf-8", "replace")
    return b.rstrip("\r\n")
