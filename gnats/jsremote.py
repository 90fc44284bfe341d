"""A JetStream consumer's message for a subscriber on another server, as
nats-server carries it over routes and leaf connections.

A consumer delivers to a target subject (a pull request's reply inbox, a
push consumer's deliver subject) with the stream subject on the client's
MSG line. A peer matches the subject of an RMSG/LMSG against its interest,
so across a link the message travels on the target subject, and the
stream subject rides at the end of the ack reply:

    LMSG <target> $JS.ACK.<stream>.<consumer>.<n>.<sseq>.<dseq>.<ts>.<pending>@<subject> <size>

The receiving server matches <target> and gives its own clients (and
internal subscribers) `MSG <subject> <sid> $JS.ACK...` (the reply without
the suffix); to its further peers it passes the message on as it came.
The `@` that counts is the first after the reply's eight dots (stream and
consumer names may hold an `@`), as nats-server's jsAckDeliverIdx.
"""

from .sublist import MatchResult

ACK_PREFIX = b"$JS.ACK."
REMOTE = ("route", "leaf")


def deliver_index(reply):
    """The offset of the `@` of an encoded ack reply (bytes), or -1."""
    if not reply.startswith(ACK_PREFIX):
        return -1
    dots = 0
    for i, b in enumerate(reply):
        if b == 46:         # "."
            dots += 1
        elif b == 64 and dots >= 8:     # "@"
            return i if i < len(reply) - 1 else -1
    return -1


def encode(reply, subject):
    """The reply a peer gets for a consumer's message (bytes)."""
    if not reply or deliver_index(reply) >= 0:
        return reply
    return reply + b"@" + subject


def has_remote(result):
    for s in result.plain:
        if s.client.kind in REMOTE:
            return True
    for grp in result.queues:
        for s in grp:
            if s.client.kind in REMOTE:
                return True
    return False


def split(result):
    """(local, remote) parts of a match: plain subscriptions by where they
    are; a queue group whole on one side, here when it has a member here
    (local members are preferred)."""
    lp, rp, lq, rq = [], [], [], []
    for s in result.plain:
        (rp if s.client.kind in REMOTE else lp).append(s)
    for grp in result.queues:
        mine = [s for s in grp if s.client.kind not in REMOTE]
        if mine:
            lq.append(mine)
        else:
            rq.append(grp)
    return MatchResult(lp, lq), MatchResult(rp, rq)
