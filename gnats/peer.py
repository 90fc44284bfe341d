"""What route and leaf connections share: each is a link to another
server, not to a client, and its control lines are traced in both
directions with CONNECT's secrets masked (a peer's CONNECT carries the
cluster or leaf credentials)."""

from . import parser as P
from .auth import mask_connect
from .conn import Connection
from .delivery import deliver
from .jsremote import ACK_PREFIX, deliver_index, split


def masked(line):
    """A CONNECT line with its password hidden; any other line as it is."""
    if line.lstrip()[:7].upper() == b"CONNECT":
        return mask_connect(bytes(line))
    return line


class PeerConnection(Connection):
    """A connection to another server (route.Route, leaf.Leaf)."""

    def trace_in(self, line):
        self.log.trace("%s - <<- [%s]" % (self.tag(), P.show(masked(line))))

    def trace_out(self, line):
        self.log.trace("%s - ->> [%s]" % (self.tag(), P.show(masked(line))))

    def deliver_general(self, subject, reply, hdr, payload, size, result, queues):
        """Count one message from the peer and deliver it by the general
        path (`queues`: the groups the peer asks this server to serve)."""
        srv = self.server
        self.in_msgs += 1
        self.in_bytes += size
        srv.in_msgs += 1
        srv.in_bytes += size
        rq = set(queues) if queues else None
        i = deliver_index(reply) if reply.startswith(ACK_PREFIX) else -1
        if i < 0:
            deliver(srv, self, subject, reply, hdr, payload, result, True, route_queues=rq)
            return
        # a JetStream consumer's message (jsremote.py): our subscribers get
        # the stream subject and the plain ack reply, further peers the
        # message as it came
        here, remote = split(result)
        deliver(srv, self, reply[i + 1:], reply[:i], hdr, payload, here, True, route_queues=rq)
        deliver(srv, self, subject, reply, hdr, payload, remote, True, route_queues=rq)

    @staticmethod
    def cacheable(reply):
        """May a plain message with this reply use the fast path's cache?
        (Not a consumer's message with its stream subject in the reply.)"""
        return not reply.startswith(ACK_PREFIX)

    def send_proto(self, line):
        """Queue one control line (CRLF included)."""
        self.send_now(line)
        if self.log.trace_on:
            self.trace_out(line)
