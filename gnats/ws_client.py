"""A client connection over WebSocket: the framing layer under an ordinary
Client (same parser, auth, permissions, slow-consumer rules and counters).

Theory of operation
-------------------
Inbound, `feed` unframes the socket's bytes (websocket.FrameReader) and
passes the NATS bytes on to Connection.feed, so the parse loop, its caches
and its back-pressure work as for any client. Input the loop left waiting
(`pend`, resumed with feed(b"")) is already unframed. Compressed input the
reader held back (its `more`) is fed one slice per reactor turn, as a
deferred read (`defer_input`), and not while the connection is paused or
stalled.

Outbound, deliveries append plain NATS data to `wbuf` as for any client.
`wbuf` holds framed bytes first, then the data appended since: `ws_framed`
is where the unframed tail begins. Before the kernel is offered anything
(`flush`, `on_writable`, a close) that tail becomes one binary frame: a
header inserted in place (a memmove, not a copy per message), or, with
permessage-deflate, one compressed message. So a client gets one frame per
reactor flush, and every rule that measures `wbuf` (max_pending, the stall
gate, /connz pending_bytes) sees what is really queued for it. Control
frames (pong, close) go in after the tail is framed.

Closing sends a close frame whose status follows the reason, as
nats-server's wsEnqueueCloseMessage; a close from the client is answered
with its own status.
"""

import json

from . import parser as P
from . import websocket as W
from .auth import AuthContext
from .client import Client
from .conn import Connection
from .nkeys import make_nonce

# close reason (as on_closed / connz show it) -> close status
_POLICY = ("Authentication Timeout", "Authentication Failure", "Authorization Violation",
           "Slow Consumer (Max Pending)", "Slow Consumer (Write Deadline)",
           "Maximum Connections Exceeded", "Maximum Control Line Exceeded",
           "Maximum Subscriptions Exceeded")
_GOING_AWAY = ("Write Error", "Read Error", "Stale Connection", "Server Shutdown")


def close_status(reason):
    """nats-server's status for a close reason."""
    if reason == "Client Closed":
        return W.CLOSE_NORMAL
    if reason in _POLICY:
        return W.CLOSE_POLICY
    if reason in ("Parse Error", "Protocol Violation"):
        return W.CLOSE_PROTOCOL_ERROR
    if reason == "Maximum Payload Exceeded":
        return W.CLOSE_TOO_BIG
    if reason in _GOING_AWAY:
        return W.CLOSE_GOING_AWAY
    return W.CLOSE_INTERNAL


class WsClient(Client):
    conn_type = "websocket"         # /connz `type`

    def __init__(self, server, sock, addr, cid, upgrade, listener):
        """upgrade: the handshake's result (ws_listener.Upgrade); its
        response is the first thing this connection sends."""
        self.listener = listener
        Client.__init__(self, server, sock, addr, cid)
        # the block's own credentials, if any (Client.__init__ saw the server's)
        auth = self.client_auth
        self.authed = not auth.required
        self.nonce = make_nonce() if auth.nonce_required else ""
        self.ws_reader = W.FrameReader(server.max_payload, upgrade.compress)
        self.ws_compress = upgrade.compress
        self.ws_browser = upgrade.browser
        self.ws_cookies = upgrade.cookies
        self.ws_forwarded = upgrade.forwarded
        self.ws_close_sent = False
        self.ws_later = []              # control events behind input that waits
        self.wbuf += upgrade.response
        self.ws_framed = len(self.wbuf)
        self.tls_version = upgrade.tls_version
        self.tls_cipher = upgrade.tls_cipher

    def idtag(self):
        return "wid:%d" % self.cid         # nats-server's tag for websocket clients

    def tag(self):
        fwd = self.ws_forwarded
        if not fwd:
            return Client.tag(self)
        return "%s/%s:%d - %s" % ("[%s]" % fwd if ":" in fwd else fwd, self.ip, self.port,
                                  self.idtag())

    @property
    def client_auth(self):
        # the websocket block's credentials override the server's (as
        # nats-server's authOverride); users and nkeys are the server's
        return self.listener.auth or self.server.client_auth

    def auth_context(self):
        cert = self.sock.getpeercert() if self.tls_version else None
        return AuthContext(self.nonce, cert, "WEBSOCKET")

    def info_json(self):
        """nats-server's INFO for websocket clients: the websocket
        listener's host, port and TLS; no client-port connect_urls."""
        info = self.server.client_info(self)
        ls = self.listener
        info["host"] = ls.host
        info["port"] = ls.port
        info["tls_required"] = info["ssl_required"] = ls.tls
        info.pop("tls_available", None)
        if ls.tls:
            info["tls_available"] = True
        info.pop("connect_urls", None)
        if not info["auth_required"]:
            info["auth_required"] = self.client_auth.required
        return json.dumps(info, separators=(",", ":"))

    def process_connect(self, line):
        """Credentials a browser keeps in cookies fill the CONNECT fields
        it left out (the names are the block's *_cookie options)."""
        if self.ws_cookies:
            obj = P.parse_json_arg(line, 7)
            if isinstance(obj, dict):
                for field, value in self.ws_cookies:
                    if not obj.get(field):
                        obj[field] = value
                line = b"CONNECT " + json.dumps(obj).encode()
        Client.process_connect(self, line)

    # -- inbound -----------------------------------------------------------
    def has_input(self):
        return bool(self.pend) or self.ws_reader.more

    def feed(self, data):
        if not data and (not self.ws_reader.more or self.paused or self.stalled):
            # resume_input and the like: pend only (while the input waits,
            # the reader's held-back frames stay raw: pend stays one read)
            Connection.feed(self, data)
            if self.ws_later and not self.closed and not self.ws_input_waits():
                events, self.ws_later = self.ws_later, []
                self.ws_events(events)
            return
        pend = self.pend
        if pend:
            # the unframed data goes in behind what waits in pend, in the
            # one copy the reader makes anyway (Connection.feed would join)
            prefix = pend[0] if len(pend) == 1 else b"".join(pend)
            self.pend = []
            self.pend_len = 0
            data, events = self.ws_reader.feed(data, prefix)
            if len(data) < self.inb.need:
                self.pend = [data]
                self.pend_len = len(data)
                data = b""
        else:
            data, events = self.ws_reader.feed(data)
        if data:
            Connection.feed(self, data)
        if self.ws_reader.more and not (self.closed or self.paused or self.stalled):
            # the reader held input back (websocket.INFLATE_PER_FEED): go on
            # in a later reactor turn, the socket unread meanwhile
            self.defer_input()
        if (events or self.ws_later) and not self.closed:
            # the data before these frames may wait (an auth check, a stall,
            # a time slice): they come after it, as they came
            events = self.ws_later + events
            self.ws_later = []
            if self.ws_input_waits():
                self.ws_later = events
            else:
                self.ws_events(events)

    def ws_input_waits(self):
        return bool(self.pend) and (self.deferred or self.stalled or self.paused)

    def ws_events(self, events):
        for ev in events:
            kind = ev[0]
            if kind == "ping":
                self.ws_control(W.OP_PONG, ev[1])
            elif kind == "pong":
                continue
            elif kind == "close":
                status, text = ev[1], ev[2]
                # echo the client's status (none if it gave none)
                payload = b"" if status == W.CLOSE_NO_STATUS else W.close_payload(status, text)
                self.ws_control(W.OP_CLOSE, payload)
                self.ws_close_sent = True
                self.close_after_flush("Client Closed")
                return
            else:                       # "error": a protocol violation
                status, text = ev[1], ev[2]
                self.log.error("%s - websocket protocol error: %s" % (self.tag(), text))
                self.ws_control(W.OP_CLOSE, W.close_payload(status, text))
                self.ws_close_sent = True
                self.close_after_flush("Maximum Payload Exceeded" if status == W.CLOSE_TOO_BIG
                                       else "Protocol Violation")
                return

    # -- outbound ----------------------------------------------------------
    def ws_frame_pending(self):
        """Frame the NATS data appended since the last flush (see the
        module docstring)."""
        wb = self.wbuf
        start = self.ws_framed
        n = len(wb) - start
        if n <= 0:
            self.ws_framed = len(wb)
            return
        if self.ws_compress and n > W.COMPRESS_THRESHOLD:
            wb[start:] = W.deflate_frame(bytes(wb[start:]), self.ws_browser)
        elif self.ws_browser and n > W.BROWSER_FRAME:
            wb[start:] = W.split_frames(bytes(wb[start:]))
        else:
            wb[start:start] = W.frame_header(n)
        self.ws_framed = len(wb)

    def ws_control(self, opcode, payload):
        self.ws_frame_pending()
        self.wbuf += W.control_frame(opcode, payload)
        self.ws_framed = len(self.wbuf)
        self.reactor.dirty.add(self)

    def flush(self):
        if len(self.wbuf) != self.ws_framed:
            self.ws_frame_pending()
        Connection.flush(self)
        self.ws_framed = len(self.wbuf)     # whatever is left is framed

    def on_writable(self):
        if len(self.wbuf) != self.ws_framed:
            self.ws_frame_pending()
        Connection.on_writable(self)
        self.ws_framed = len(self.wbuf)

    # -- closing -----------------------------------------------------------
    def ws_send_close(self, reason):
        if not self.ws_close_sent:
            self.ws_close_sent = True
            self.ws_control(W.OP_CLOSE, W.close_payload(close_status(reason), reason))

    def close_after_flush(self, reason):
        if not self.closed:
            self.ws_send_close(reason)
        Client.close_after_flush(self, reason)

    def close_conn(self, reason, flush=True):
        if self.closed:
            return
        if flush:
            self.ws_send_close(reason)
        Client.close_conn(self, reason, flush)
