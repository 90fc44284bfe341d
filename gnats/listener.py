"""Listening sockets: bind (IPv4 or IPv6, port 0 for a free one) and hand
accepted sockets to a callback. The client port and the route port use it."""

import socket

from .reactor import EVENT_READ

ACCEPT_BATCH = 64           # connections accepted per readiness event


class Listener:
    """A listening socket that hands accepted sockets to a callback."""
    closed = False

    def __init__(self, reactor, sock, on_accept):
        self.reactor = reactor
        self.sock = sock
        self.on_accept = on_accept
        reactor.register(sock, EVENT_READ, self)

    def on_readable(self):
        for _ in range(ACCEPT_BATCH):
            try:
                s, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return      # e.g. EMFILE: try again on the next event
            self.on_accept(s, addr)

    def on_writable(self):
        pass

    def close(self):
        if not self.closed:
            self.closed = True
            self.reactor.unregister(self.sock)
            self.sock.close()


def bind_listener(host, port, backlog=1024):
    """Bind host:port (port 0 picks a free one). IPv6 hosts work too."""
    infos = socket.getaddrinfo(host or None, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    last = None
    for family, stype, proto, _, addr in infos:
        s = socket.socket(family, stype, proto)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)
            s.listen(backlog)
            s.setblocking(False)
            return s
        except OSError as e:
            s.close()
            last = e
    raise last or OSError("cannot bind %s:%s" % (host, port))
