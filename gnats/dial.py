"""A nonblocking TCP connect driven by the reactor (routes dial with it)."""

import errno
import os
import socket

from .reactor import EVENT_WRITE

DIAL_TIMEOUT = 2.0          # seconds for a TCP connect to complete


class Dial:
    """One nonblocking TCP connect, watched by the reactor (the loop never
    blocks on a slow or silent peer). Calls `done(sock)` or `failed(why)`."""

    closed = False

    def __init__(self, reactor, host, port, done, failed):
        self.reactor = reactor
        self.done = done
        self.failed = failed
        self.sock = None
        self.timer = None
        try:
            infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except OSError as e:
            reactor.call_later(0, self._fail, "lookup of %s: %s" % (host, e))
            return
        family, stype, proto, _, addr = infos[0]
        s = socket.socket(family, stype, proto)
        s.setblocking(False)
        err = s.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
            s.close()
            reactor.call_later(0, self._fail, os.strerror(err))
            return
        self.sock = s
        reactor.register(s, EVENT_WRITE, self)
        self.timer = reactor.call_later(DIAL_TIMEOUT, self._timeout)

    def on_writable(self):
        s = self._detach()
        if s is None:
            return
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            s.close()
            self._fail(os.strerror(err))
            return
        self.done(s)

    on_readable = on_writable

    def _timeout(self):
        s = self._detach()
        if s is not None:
            s.close()
            self._fail("i/o timeout")

    def cancel(self):
        s = self._detach()
        if s is not None:
            s.close()
        self.closed = True

    def _detach(self):
        if self.closed or self.sock is None:
            return None
        self.closed = True
        s = self.sock
        self.sock = None
        self.reactor.unregister(s)
        if self.timer is not None:
            self.timer.cancel()
        return s

    def _fail(self, why):
        self.closed = True
        self.failed(why)
