"""Socket plumbing shared by every connection kind, driven by the reactor:
listening sockets (bind IPv4 or IPv6, port 0 for a free one, hand accepted
sockets to a callback: the client and route ports) and a nonblocking TCP
connect (routes dial with it); how addresses are written and advertised."""

import errno
import os
import socket

from .reactor import EVENT_READ, EVENT_WRITE

ACCEPT_BATCH = 64           # connections accepted per readiness event
DIAL_TIMEOUT = 2.0          # seconds for a TCP connect to complete


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


def hostport(host, port):
    """host:port, with an IPv6 host in brackets ([::1]:4222)."""
    if ":" in host:
        return "[%s]:%d" % (host, port)
    return "%s:%d" % (host, port)


_LOCAL_IP = None


def local_ip():
    """A non-loopback address of this host for advertising, else 127.0.0.1."""
    global _LOCAL_IP
    if _LOCAL_IP is None:
        ip = "127.0.0.1"
        try:
            for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
                a = info[4][0]
                if not a.startswith("127."):
                    ip = a
                    break
        except OSError:
            pass
        _LOCAL_IP = ip
    return _LOCAL_IP


class Redial:
    """The dial state of an outbound link that is dialled again when it
    fails or drops (cluster.Solicit, leafnodes.Remote): the dial in flight,
    the timer of the next attempt, and whether it was stopped for good."""

    def __init__(self):
        self.dial = None
        self.timer = None
        self.stopped = False

    def stop(self):
        self.stopped = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.dial is not None:
            self.dial.cancel()
            self.dial = None
