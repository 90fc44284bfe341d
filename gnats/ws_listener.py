"""The websocket listener: accept, TLS (wss), the HTTP upgrade, then a
ws_client.WsClient in the server's registry.

Theory of operation
-------------------
Each accepted socket is a `Handshake` in the reactor until it upgrades.
With TLS it runs the TLS handshake first (in the reactor, as client
connections do). Then it reads the request head: at most
websocket.MAX_REQUEST_HEAD bytes (an abuser streaming headers gets 431)
and within the handshake timeout for the whole exchange, TLS included (a
silent or slow client is closed when it runs out). The request is
checked as nats-server does (method, Host, Upgrade, Connection, key,
version, then Origin); a refused one gets Go's http.Error response and
the reason is logged. An accepted one becomes a WsClient whose output
buffer starts with the 101 response, followed by INFO in the first frame;
no bytes are written by the handshake itself, so a slow reader of the
response is handled by the client's ordinary flush.
"""

import ipaddress
import socket
import ssl

from . import parser as P
from . import websocket as W
from .auth import ClientAuth
from .conn import set_socket_options
from .net import Listener, bind_listener, hostport
from .reactor import EVENT_READ, EVENT_WRITE
from .ws_client import WsClient
from .ws_options import DEFAULT_HANDSHAKE_TIMEOUT, split_origin

_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class Upgrade:
    """What the handshake hands the client: the response to send first,
    whether permessage-deflate is on, whether the peer is a browser, and
    the credentials its cookies carry ([(CONNECT field, value)])."""

    __slots__ = ("response", "compress", "browser", "cookies", "tls_version", "tls_cipher",
                 "forwarded")

    def __init__(self, response, compress, browser, cookies, tls_version, tls_cipher,
                 forwarded=""):
        self.forwarded = forwarded  # X-Forwarded-For's address, for log lines
        self.response = response
        self.compress = compress
        self.browser = browser
        self.cookies = cookies
        self.tls_version = tls_version
        self.tls_cipher = tls_cipher


class WsListener:
    def __init__(self, server, ws):
        """ws: the WsOptions of the `websocket { }` block."""
        self.server = server
        self.opts = ws
        self.log = server.log
        self.tls_context = None
        if ws.tls:
            from .tls import make_server_context
            self.tls_context = make_server_context(ws.tls_cert, ws.tls_key, ws.tls_ca_cert,
                                                   ws.tls_verify, ws.tls_cipher_suites,
                                                   what="Websocket")
        self.tls = self.tls_context is not None
        self.auth = None        # None: the server's credentials
        if ws.auth_override:
            self.auth = ClientAuth(_auth_options(server.opts, ws))
        self.timeout = ws.handshake_timeout or DEFAULT_HANDSHAKE_TIMEOUT
        self.extra_headers = "".join("%s: %s\r\n" % kv for kv in ws.headers.items())
        self.origins = {}       # host -> [(scheme, port)]
        for origin in ws.allowed_origins:
            scheme, authority = split_origin(origin)
            host, port = W.host_and_port(scheme == "https", authority)
            self.origins.setdefault(host, []).append((scheme, port))
        self.cookie_fields = [(name, field) for name, field in (
            (ws.jwt_cookie, "jwt"), (ws.username_cookie, "user"),
            (ws.password_cookie, "pass"), (ws.token_cookie, "auth_token")) if name]
        self.host = ws.host or "0.0.0.0"     # nats-server's default, not the client port's
        self.pending = set()    # handshakes under way
        self.listener = None
        self.port = 0

    def start(self):
        port = self.opts.port
        sock = bind_listener(self.host, 0 if port < 0 else port)
        self.port = sock.getsockname()[1]
        self.listener = Listener(self.server.reactor, sock, self.accept)
        self.log.notice("Listening for websocket clients on %s://%s"
                        % ("wss" if self.tls else "ws", hostport(self.host, self.port)))
        if not self.tls:
            self.log.warn("Websocket not configured with TLS. DO NOT USE IN PRODUCTION!")

    def close(self):
        """Stop accepting (shutdown, lame duck) and drop handshakes under way."""
        if self.listener is not None:
            self.listener.close()
        for h in list(self.pending):
            h.close("Server Shutdown")

    def accept(self, sock, addr):
        srv = self.server
        set_socket_options(sock)
        if srv.lame_duck or srv.shutting_down:
            sock.close()
            return
        self.pending.add(Handshake(self, sock, addr))

    def varz(self):
        """/varz `websocket`: Go's WebsocketOptsVarz, empty fields omitted
        (durations in nanoseconds)."""
        ws = self.opts
        v = {"host": self.host, "port": self.port}
        for key, value in (("advertise", ws.advertise), ("no_auth_user", ws.no_auth_user),
                           ("jwt_cookie", ws.jwt_cookie),
                           ("handshake_timeout", int(round(ws.handshake_timeout * 1e9))),
                           ("auth_timeout", ws.auth_timeout), ("no_tls", ws.no_tls),
                           ("tls_map", ws.tls_verify_and_map), ("same_origin", ws.same_origin),
                           ("allowed_origins", list(ws.allowed_origins)),
                           ("compression", ws.compression)):
            if value:
                v[key] = value
        return v

    # -- origin (nats-server's checkOrigin) ---------------------------------
    def origin_problem(self, req, tls):
        ws = self.opts
        if not ws.same_origin and not self.origins:
            return None
        origin = req.get("origin") or req.get("sec-websocket-origin")
        if not origin:
            return None     # not a browser: the origin model does not apply
        parts = split_origin(origin)
        if parts is None:
            return "parse %r: invalid URI for request" % origin
        scheme, authority = parts
        try:
            oh, op = W.host_and_port(scheme == "https", authority)
            if ws.same_origin:
                rh, rp = W.host_and_port(tls, req.get("host"))
                if oh != rh or op != rp or scheme.lower() != ("https" if tls else "http"):
                    return "not same origin"
        except ValueError as e:
            return str(e)
        if self.origins and (scheme, op) not in self.origins.get(oh, ()):
            return "not in the allowed list"
        return None

    # -- the upgraded connection -----------------------------------------
    def upgraded(self, sock, addr, upgrade):
        """A WsClient for an accepted upgrade, as server.accept_client
        registers a client."""
        srv = self.server
        if srv.lame_duck or srv.shutting_down:
            sock.close()
            return
        srv.next_cid += 1
        c = WsClient(srv, sock, addr, srv.next_cid, upgrade, self)
        if len(srv.clients) >= srv.opts.max_connections:
            self.log.error("%s - maximum connections exceeded" % c.tag())
            c.send_info()
            c.send_err(P.ERR_MAX_CONN)
            c.close_conn("Maximum Connections Exceeded")
            return
        srv.clients[c.cid] = c
        srv.total_connections += 1
        srv.reactor.register(sock, EVENT_READ, c)
        if self.log.debug_on:
            self.log.debug("%s - Client connection created (websocket%s%s)"
                           % (c.tag(), ", compressed" if upgrade.compress else "",
                              ", browser" if upgrade.browser else ""))
        c.send_info()
        auth = c.client_auth
        if auth.required:
            timeout = self.opts.auth_timeout or auth.timeout
            c.timers.append(srv.reactor.call_later(timeout, c.auth_timeout))
        c.timers.append(srv.reactor.call_later(srv.opts.ping_interval, c.ping_timer))


def _auth_options(opts, ws):
    """The server's options with the websocket block's credentials in place
    of the top-level ones (nats-server keeps users and nkeys)."""
    o = opts.copy()
    o.username, o.password, o.authorization = ws.username, ws.password, ws.token
    o.no_auth_user = ws.no_auth_user
    if ws.auth_timeout:
        o.auth_timeout = ws.auth_timeout
    if ws.username or ws.token:
        o.users, o.nkeys = [], []
    return o


def _forwarded_ip(value):
    """X-Forwarded-For's address when it is a valid IP (nats-server shows
    it in front of the connection's in log lines)."""
    try:
        return str(ipaddress.ip_address(value.strip())) if value else ""
    except ValueError:
        return ""


class Handshake:
    """One accepted socket until its upgrade (see the module docstring)."""

    def __init__(self, listener, sock, addr):
        self.listener = listener
        self.server = listener.server
        self.reactor = listener.server.reactor
        self.log = listener.log
        self.sock = sock
        self.addr = addr
        self.buf = b""
        self.out = b""              # an error response being written
        self.closed = False
        self.tls_handshaking = listener.tls_context is not None
        if self.tls_handshaking:
            self.sock = listener.tls_context.wrap_socket(sock, server_side=True,
                                                         do_handshake_on_connect=False)
        self.reactor.register(self.sock, EVENT_READ, self)
        self.timer = self.reactor.call_later(listener.timeout, self._timeout)
        if self.tls_handshaking:
            self._tls_step()

    def tag(self):
        return "%s:%d - wid" % (self.addr[0], self.addr[1]) if self.addr else "wid"

    def _tls_step(self):
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._events(EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._events(EVENT_WRITE)
            return
        except (ssl.SSLError, OSError) as e:
            self.log.error("%s - websocket TLS handshake error: %s"
                           % (self.tag(), getattr(e, "reason", None) or e))
            self.close()
            return
        self.tls_handshaking = False
        self._events(EVENT_READ)
        if self.sock.pending():
            self.on_readable()

    def _events(self, ev):
        if not self.closed:
            self.reactor.modify(self.sock, ev, self)

    def on_readable(self):
        if self.closed:
            return
        if self.tls_handshaking:
            self._tls_step()
            return
        if self.out:
            return      # refused: only writing the answer now
        try:
            data = self.sock.recv(W.MAX_REQUEST_HEAD + 1)
        except _WOULD_BLOCK:
            return
        except (OSError, ssl.SSLError):
            self.close()
            return
        if not data:
            self.close()
            return
        buf = self.buf + data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > W.MAX_REQUEST_HEAD:
                self.refuse(431, "request header too large")
            else:
                self.buf = buf
            return
        if end > W.MAX_REQUEST_HEAD:
            self.refuse(431, "request header too large")
            return
        self.buf = b""
        self.request(buf[:end], buf[end + 4:])

    def request(self, head, rest):
        ls = self.listener
        tls = ls.tls
        try:
            req = W.parse_request(head)
            key = W.check_upgrade(req)
            problem = ls.origin_problem(req, tls)
            if problem:
                raise W.HandshakeError(403, "origin not allowed: %s" % problem)
            if rest or (tls and self.sock.pending()):
                raise W.HandshakeError(400, "client sent data before handshake is complete")
        except W.HandshakeError as e:
            self.refuse(e.status, e.reason)
            return
        compress = ls.opts.compression and req.offers_deflate()
        ua = req.get("user-agent")
        cookies = []
        if ls.cookie_fields:
            jar = req.cookies()
            cookies = [(field, jar[name]) for name, field in ls.cookie_fields if jar.get(name)]
        version = cipher = ""
        if tls:
            version = self.sock.version() or ""
            c = self.sock.cipher()
            cipher = c[0] if c else ""
        upgrade = Upgrade(W.upgrade_response(key, compress, ls.extra_headers), compress,
                          ua.startswith("Mozilla/"), cookies, version, cipher,
                          _forwarded_ip(req.get("x-forwarded-for")))
        sock = self._detach()
        ls.upgraded(sock, self.addr, upgrade)

    def refuse(self, status, reason):
        """Answer with Go's http.Error response, then close."""
        self.log.error("%s - websocket handshake error: %s" % (self.tag(), reason))
        self.out = W.http_error(status)
        self.on_writable()

    def on_writable(self):
        if self.closed:
            return
        if self.tls_handshaking:
            self._tls_step()
            return
        if not self.out:
            return
        try:
            n = self.sock.send(self.out)
        except _WOULD_BLOCK:
            n = 0
        except (OSError, ssl.SSLError):
            self.close()
            return
        self.out = self.out[n:]
        if self.out:
            self._events(EVENT_WRITE)
        else:
            self.close()

    def _timeout(self):
        if not self.closed:
            self.log.error("%s - websocket handshake error: timeout" % self.tag())
            self.close()

    def _detach(self):
        self.closed = True
        self.listener.pending.discard(self)
        self.timer.cancel()
        self.reactor.unregister(self.sock)
        return self.sock

    def close(self, reason=""):
        if self.closed:
            return
        sock = self._detach()
        try:
            if self.out == b"" and not self.tls_handshaking:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass
