"""Internal subscriptions: server-side subscribers with a Python callback.

Service and stream imports, the system account's request handlers and the
JetStream API subscribe like clients do: a `Subscription` in an account's
subject index. Their `client` is an `InternalClient` (kind "internal",
never a socket), so matching, queue groups and route interest work as for
any client; delivery.py hands a message for one to `Internals.enqueue`
instead of writing a MSG line.

The callback never runs inside delivery: a message is queued and the queue
is run when the publish that produced it has been delivered to everyone
(`deliver` drains it on its way out), first in first out. A callback that
publishes (`publish_internal`) only queues more work behind itself, so
callbacks are never re-entrant and the receivers of one publish see its
messages in order. A callback that raises is logged and the next one runs.
The queue is bounded in bytes (MAX_PENDING): past it a message for an
internal subscription is dropped and counted, as a slow consumer's would be.

Internal subscriptions force the general delivery path (build_fast_bases
refuses them): the fast path's cache entries are buffers to append to.

With `imports=True` an internal subscription also sees what its account's
stream imports show (nats-server's shadow subscriptions, which its internal
clients get as any client): one `InternalShadow` per import that matches,
in the exporter's index on the exporter's subject; its message reaches the
callback under the importer's subject. JetStream's sourcing from another
account (jetstream/sourcing_external.py) receives its deliveries so.
"""

import itertools
from collections import deque

from .delivery import deliver, match_publish
from .sublist import Subscription, subject_matches

# Bytes of queued messages for internal subscriptions (payloads and
# subjects) before new ones are dropped.
MAX_PENDING = 64 << 20
# Per queued message beyond its bytes: the tuple and its deque slot.
ENTRY_COST = 120


class InternalClient:
    """Stands for the server in an account: the owner of internal
    subscriptions and the publisher of internal messages. Has what
    delivery.py reads of a sender or a receiver."""

    kind = "internal"
    closed = False
    echo = True
    headers = True
    no_responders = False
    perms = None
    user = ""
    # producer back-pressure (conn.stall_check) reads every receiver's
    # pending output: an internal subscriber has none and never stalls one
    wbuf = b""

    def __init__(self, internals, account):
        self.internals = internals
        self.account = account
        self.out_msgs = self.out_bytes = 0
        self.in_msgs = self.in_bytes = 0

    def __repr__(self):
        return "<internal client %s>" % self.account.name


class InternalSub(Subscription):
    """A subscription whose deliveries go to `callback`; `routed`: whether
    its interest is announced to routes (a service import's is not: every
    server serves its own importers)."""

    __slots__ = ("callback", "routed", "shadows")


class InternalShadow(InternalSub):
    """An internal subscription as seen in an exporting account (see the
    module docstring); `account` is the exporter, `im` the StreamImport."""

    __slots__ = ("im", "account")


class Internals:
    """The server's internal clients (one per account) and the deferred
    callback queue."""

    def __init__(self, server):
        self.server = server
        self.log = server.log
        self._clients = {}          # account -> InternalClient
        self._sids = itertools.count(1)
        # the live internal subscriptions, in order (a dict as an ordered
        # set): leafnodes.py tells a new leaf connection about them, also
        # those made before the leafnodes block started (JetStream's API)
        self.subs = {}
        self.pending = deque()      # (sub, subject, reply, hdr, msg, src)
        self.pending_bytes = 0
        self.draining = False
        self.dropped = 0
        self.src = None             # the publisher of the message being delivered

    def client(self, account):
        c = self._clients.get(account)
        if c is None:
            c = self._clients[account] = InternalClient(self, account)
        return c

    # -- subscribe -----------------------------------------------------------
    def subscribe(self, account, subject, callback, queue=None, routed=True, imports=False):
        c = self.client(account)
        sub = InternalSub(c, subject, queue, b"%d" % next(self._sids))
        sub.callback = callback
        sub.routed = routed
        sub.shadows = None
        self.subs[sub] = None
        self.server.add_sub(sub)
        if imports:
            sub.shadows = [self._shadow(c, sub, im, s) for im, s in
                           ((im, im.shadow_subject(subject)) for im in account.stream_imports) if s is not None]
        return sub

    def _shadow(self, c, sub, im, subject):
        def on_msg(_sh, subj, reply, hdr, msg, client):
            # a JetStream push consumer delivers under the stored subject,
            # which the import does not map: only its own subjects are
            if subject_matches(im.subject, subj):
                subj = im.to_local(subj.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")
            sub.callback(sub, subj, reply, hdr, msg, client)
        sh = InternalShadow(c, subject, sub.queue, b"%d" % next(self._sids))
        sh.callback = on_msg
        sh.routed = True
        sh.shadows = None
        sh.im = im
        sh.account = im.exporter
        self.server.add_sub(sh)
        return sh

    def unsubscribe(self, sub):
        if sub.closed:
            return
        sub.closed = True
        self.subs.pop(sub, None)
        self.server.remove_sub(sub)
        for sh in sub.shadows or ():
            self.unsubscribe(sh)

    # -- publish -------------------------------------------------------------
    def publish(self, account, subject, reply, hdr, msg):
        """Deliver like a client publish in `account`: local subscribers,
        routes, internal subscriptions (queued behind the running one)."""
        if isinstance(subject, str):
            subject = subject.encode("utf-8")
        if isinstance(reply, str):
            reply = reply.encode("utf-8")
        reply = reply or b""
        if hdr:
            payload = bytes(hdr) + bytes(msg) + b"\r\n"
            hlen = len(hdr)
        else:
            payload = bytes(msg) + b"\r\n"
            hlen = -1
        src = self.client(account)
        src.in_msgs += 1
        src.in_bytes += len(payload) - 2
        result = match_publish(account.sublist, subject)
        return deliver(self.server, src, subject, reply, hlen, payload, result, False)

    # -- the deferred queue ----------------------------------------------------
    def enqueue(self, sub, subject, reply, hdr, payload, size):
        """delivery.py's hand-over of one message for `sub` (payload with
        its headers and CRLF, as deliver has it)."""
        cost = len(subject) + len(reply) + size + ENTRY_COST
        if self.pending_bytes + cost > MAX_PENDING:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10000 == 0:
                self.log.error("Internal subscription queue full (%d bytes): dropped %d message(s) on %s"
                               % (MAX_PENDING, self.dropped, subject.decode("utf-8", "replace")))
            return False
        if hdr >= 0:
            h, msg = bytes(payload[:hdr]), bytes(payload[hdr:size])
        else:
            h, msg = None, bytes(payload[:size])
        src = self.src
        if src is not None and src.kind == "internal":
            src = None
        self.pending.append((sub, subject.decode("utf-8", "surrogateescape"),
                             reply.decode("utf-8", "surrogateescape") if reply else None,
                             h, msg, src, cost))
        self.pending_bytes += cost
        return True

    def drain(self):
        """Run the queued callbacks, in order, until none is left (callbacks
        that publish add to the queue as it runs)."""
        if self.draining:
            return
        self.draining = True
        pending = self.pending
        try:
            while pending:
                sub, subject, reply, hdr, msg, src, cost = pending.popleft()
                self.pending_bytes -= cost
                if sub.closed:
                    continue
                try:
                    sub.callback(sub, subject, reply, hdr, msg, src)
                except Exception as e:      # a handler's bug must not stop the server
                    self.log.error("Internal subscription on %r failed: %s: %s"
                                   % (sub.subject, type(e).__name__, e))
        finally:
            self.draining = False
