"""How a published message reaches its subscribers.

Two ways, chosen once per distinct PUB control line (see client.py):

* the fast path: when every match is a plain subscription without an
  auto-unsubscribe limit, the publisher caches, for that exact control line,
  the list of (receiver output buffer, ready-made `MSG <subject> <sid> ...`
  prefix). Delivering is then two bytearray appends per receiver;
  `build_fast_bases` and `fast_entry` build it.
* the general path (`deliver`): queue groups (a random member per group,
  across local members and routes), auto-unsubscribe limits, headers to
  clients that do not speak them, verbose and traced publishers, routes with
  queue lists. It costs more per message and is correct for everything.

Internal subscriptions (internal.py) always take the general path, where
`deliver_to_sub` queues their messages and `deliver` runs the queued
callbacks once the publish has reached everyone.

Routes receive at most one RMSG per message, whatever the number of
matching subscriptions they registered, and never a message that itself
came from a route (one hop only).

Permissions: a receiving client with a delivery deny filter is left out of
a fast entry for a denied subject (the entry is per subject, so this is
decided once), and one that must record a response grant per message
sends the publisher down the general path, where `deliver_to_sub` asks
`perms.on_delivery`. Routes carry only what the cluster's export rules
allow (`_exports`).
"""

import random

from .sublist import EMPTY, Subscription

_rand = random.random


# The two cache layouts (inbound.py caches them, the loop unpacks them
# positionally), declared here, where they are built:
#   bases (scache value, any size): (tgts, counted, receivers, qgroups)
#     tgts       ((receiver stage, prefix without the size), ...)
#     counted    ((receiver, subscription), ...) once per delivery
#     receivers  frozenset of the connections to flush
#     qgroups    (((stage, prefix, client, subscription), ...), ...) or None
#   entry (pcache value, one control line): (size, tgts, counted, receivers,
#     qgroups), prefixes completed with the size and CRLF.
# Plain tuples, not typing.NamedTuple: CPython 3.11 unpacks only an exact
# tuple with its specialised opcode, and a NamedTuple took 45-55 ns to
# unpack against 19 (timeit, /usr/bin/python3 3.11.2 and 3.11.7); the loop
# unpacks one per message of traffic whose lines do not repeat.


def match_publish(sublist, subject):
    """The subscriptions a published message goes to. A subject with an
    empty token (`foo..bar`, `.foo`, `foo.`; reachable when pedantic is off)
    matches nothing, as in nats-server, whose Sublist.Match returns an empty
    result for it: no local delivery and nothing forwarded to routes."""
    if b".." in subject or subject[:1] == b"." or subject[-1:] == b".":
        return EMPTY
    return sublist.match(subject.decode("latin-1"))


def msg_prefix(subject, sid, reply, size):
    if reply:
        return b"MSG %s %s %s %d\r\n" % (subject, sid, reply, size)
    return b"MSG %s %s %d\r\n" % (subject, sid, size)


def hmsg_prefix(subject, sid, reply, hdr, total):
    if reply:
        return b"HMSG %s %s %s %d %d\r\n" % (subject, sid, reply, hdr, total)
    return b"HMSG %s %s %d %d\r\n" % (subject, sid, hdr, total)


def rmsg_prefix(acc, subject, reply, queues, hdr, size):
    """RMSG/HMSG line for a route in account `acc` (wire name), optionally
    listing the queue groups the receiver must serve (`+ reply q...` or
    `| q...`)."""
    parts = [b"HMSG " if hdr >= 0 else b"RMSG ", acc, b" ", subject, b" "]
    if queues:
        parts.append(b"+ " + reply + b" " if reply else b"| ")
        parts.append(b" ".join(queues))
        parts.append(b" ")
    elif reply:
        parts.append(reply + b" ")
    if hdr >= 0:
        parts.append(b"%d %d\r\n" % (hdr, size))
    else:
        parts.append(b"%d\r\n" % size)
    return b"".join(parts)


class _Sink:
    """Stands for a route's subscription in `counted`: routes have no
    auto-unsubscribe, their count goes nowhere."""
    __slots__ = ("delivered",)

    def __init__(self):
        self.delivered = 0


_ROUTE_SINK = _Sink()


def build_fast_bases(src, subject, reply, result, from_route):
    """What the fast path needs for one subject and reply, whatever the
    payload size: ((receiver stage, prefix without size), ...) for plain deliveries,
    (receiver, subscription) once per delivery (for out_msgs and the
    subscription's `delivered`, which UNSUB <sid> <max> compares with, as
    nats-server counts every delivery), the set of receivers to flush, and
    the queue groups as tuples of (stage, prefix without size, client,
    subscription) to pick from (None when there are none). Returns
    None when this match needs the general path (auto-unsubscribe limits, or
    queue members behind routes)."""
    tgts = []
    counted = []
    seen_routes = set()
    echo = src.echo
    if reply:
        sfx = b" " + reply + b" "
    else:
        sfx = b" "
    for sub in result.plain:
        c = sub.client
        if c.closed:
            continue        # a closed client whose subscriptions are being removed
        if sub.max_msgs:
            return None
        if c.kind == "route":
            if from_route or c in seen_routes or not _exports(c, subject):
                continue
            seen_routes.add(c)
            tgts.append((c.stage, b"RMSG " + src.account.wire + b" " + subject + sfx))
            counted.append((c, _ROUTE_SINK))
        elif c.kind == "leaf":          # [leaf] one LMSG per leaf, as per route
            if c in seen_routes or not c.takes(src, subject):
                continue
            seen_routes.add(c)
            tgts.append((c.stage, c.lmsg_head(subject) + sfx))
            counted.append((c, _ROUTE_SINK))
        elif c.kind == "internal":
            return None     # a callback, queued per message (internal.py)
        else:
            if c is src and not echo:
                continue
            subj = subject if type(sub) is Subscription else sub.im.to_local(subject)
            if c.perms is not None and not _fast_ok(c.perms, subj, None, reply):
                if reply and c.perms.responses is not None:
                    return None
                continue
            tgts.append((c.stage, b"MSG " + subj + b" " + sub.sid + sfx))
            counted.append((c, sub))
    receivers = set([c for c, _ in counted])
    qgroups = None
    if result.queues:
        if from_route:
            # which groups a routed message must serve is per message
            return None
        qgroups = []
        for group in result.queues:
            members = []
            for sub in group:
                c = sub.client
                if c.closed:
                    continue
                if c.kind != "client" or sub.max_msgs:
                    return None     # routes, internal subscriptions
                if c is src and not echo:
                    continue
                subj = subject if type(sub) is Subscription else sub.im.to_local(subject)
                if c.perms is not None and not _fast_ok(c.perms, subj, sub.queue, reply):
                    if reply and c.perms.responses is not None:
                        return None
                    continue
                members.append((c.stage, b"MSG " + subj + b" " + sub.sid + sfx, c, sub))
                receivers.add(c)
            if members:
                qgroups.append(tuple(members))
        qgroups = tuple(qgroups) or None
    return tuple(tgts), tuple(counted), frozenset(receivers), qgroups


def _exports(route, subject):
    """May a message on subject cross this route? Its interest was checked
    against the cluster's export rules when it came; a wildcard interest
    overlapping an export deny still must not carry denied subjects
    (nats-server's delivery deny filter, for routes too)."""
    p = route.cluster.route_perms()
    return p is None or p.sub_deny is None or not p.delivery_denied(
        subject.decode("utf-8", "surrogateescape"))


def _fast_ok(perms, subject, queue, reply):
    """May a cached entry deliver `subject` to a client with permissions?
    Decided once per entry: the delivery filter depends on the subject (and
    queue) only. False also when a response grant must be recorded per
    message (the caller then takes the general path)."""
    if reply and perms.responses is not None:
        return False
    return perms.deny_filter is None or not perms.perms.delivery_denied(
        subject.decode("utf-8", "surrogateescape"), queue)


def fast_entry(bases, size):
    """The cache entry for one control line of the given size."""
    tgts, counted, receivers, qgroups = bases
    tail = b"%d\r\n" % size
    tgts = tuple([(out, pre + tail) for out, pre in tgts])
    if qgroups is not None:
        qgroups = tuple([tuple([(out, pre + tail, c, s) for out, pre, c, s in g]) for g in qgroups])
    return (size, tgts, counted, receivers, qgroups)


def deliver(server, src, subject, reply, hdr, payload, result, from_route, route_queues=None):
    """Deliver one message. `payload` includes headers (when hdr >= 0) and
    the trailing CRLF. `route_queues` (for messages from a route) lists the
    queue groups this server must serve; None means none.
    Returns the number of deliveries made (0: nobody was interested)."""
    size = len(payload) - 2
    dirty = server.reactor.dirty
    internals = server.internals
    internals.src = src     # for the callbacks of internal subscriptions
    echo = src.echo if not from_route else True
    # [leaf] from_route: from another server (a route or a leaf); what came
    # from a leaf we are the hub of still goes to routes
    fwd = not from_route or (src.kind == "leaf" and not src.is_spoke)
    routes = {}     # route -> queue names it must serve for this message
    leaves = {}     # [leaf] leaf -> queue names
    count = 0
    for sub in result.plain:
        c = sub.client
        if c.kind == "route":
            if fwd and c not in routes:
                routes[c] = []
            continue
        if c.kind == "leaf":            # [leaf]
            if c not in leaves and c.takes(src, subject):
                leaves[c] = []
            continue
        if c is src and not echo:
            continue
        if deliver_to_sub(sub, subject, reply, hdr, payload, size, dirty):
            count += 1
    for group in result.queues:
        qname = group[0].queue
        if from_route:
            if route_queues is None or qname.encode("latin-1") not in route_queues:
                continue
            members = [s for s in group if (fwd or s.client.kind != "route") and not s.closed]
        else:
            members = [s for s in group if not s.closed and (echo or s.client is not src)]
        count += _deliver_queue(members, subject, reply, hdr, payload, size, dirty,
                                routes if fwd else None, qname, src, leaves)
    if routes:
        acc = src.account.wire
        for r, queues in routes.items():
            if r.closed or not _exports(r, subject):
                continue
            r.wbuf += rmsg_prefix(acc, subject, reply, queues, hdr, size)
            r.wbuf += payload
            r.out_msgs += 1
            r.out_bytes += size
            dirty.add(r)
            if r.log.trace_on:
                r.trace_out(b"RMSG " + acc + b" " + subject)
            count += 1
    for lf, queues in leaves.items():   # [leaf]
        if lf.send_msg(subject, reply, queues, hdr, payload, size):
            count += 1
    if internals.pending and not internals.draining:
        internals.drain()   # the callbacks run after the publish, in order
    return count


def _deliver_queue(members, subject, reply, hdr, payload, size, dirty, routes_out, qname,
                   src=None, leaves_out=None):
    """Pick one member of a queue group, weighting route members by the
    number of members they reported; try again if the pick is spent.

    Server-side responders come first: when the pick is a route but the
    group has an internal member here (the JetStream API, internal.py), a
    message this node's client published goes to that member. nats-server
    picks queue members at random across routes too (measured on 2.15.1:
    508/492 local/remote), but its clients reach their server's JetStream
    through a service import, on their own node: so do ours, instead of
    another node's JetStream answering "stream not found". Only looked at
    once a route was picked: plain queue groups pay nothing.

    [leaf] Leaf members are the last resort (nats-server prefers members
    of this cluster), picked at random."""
    leafs = [s for s in members if s.client.kind == "leaf"]
    if leafs:
        members = [s for s in members if s.client.kind != "leaf"]
    while members:
        total = 0
        for s in members:
            total += s.weight
        pick = _rand() * total
        chosen = members[-1]
        for s in members:
            pick -= s.weight
            if pick < 0:
                chosen = s
                break
        c = chosen.client
        if c.kind == "route":
            if routes_out is None:
                members.remove(chosen)
                continue
            local = None
            for s in members:
                if s.client.kind == "internal":
                    local = s
                    break
            if local is None:
                routes_out.setdefault(c, []).append(qname.encode("latin-1"))
                return 0
            chosen = local
        if deliver_to_sub(chosen, subject, reply, hdr, payload, size, dirty):
            return 1
        members.remove(chosen)
    leafs = [s for s in leafs if s.client.takes(src, subject)]      # [leaf]
    if leafs and leaves_out is not None:
        c = leafs[int(_rand() * len(leafs))].client
        leaves_out.setdefault(c, []).append(qname.encode("latin-1"))
    return 0


def deliver_to_sub(sub, subject, reply, hdr, payload, size, dirty):
    """Append one MSG/HMSG for `sub` to its client's buffer. Returns False if
    the subscription is spent (auto-unsubscribe limit reached)."""
    c = sub.client
    if sub.closed or c.closed:
        return False
    if type(sub) is not Subscription and c.kind != "internal":
        # a stream import's shadow (imports.py): the importer's subject; as
        # in nats-server it has no auto-unsubscribe limit of its own
        subject = sub.im.to_local(subject)
    if c.perms is not None and not c.perms.on_delivery(
            subject.decode("utf-8", "surrogateescape"), sub.queue,
            reply.decode("utf-8", "surrogateescape") if reply else None):
        return False                # the delivery filter (a grant is recorded)
    sub.delivered += 1
    if c.kind == "internal":
        return c.internals.enqueue(sub, subject, reply, hdr, payload, size)
    if sub.max_msgs:
        if sub.delivered > sub.max_msgs:
            return False
        if sub.delivered == sub.max_msgs:
            c.remove_sub(sub)
    wb = c.wbuf
    if hdr >= 0:
        if c.headers:
            line = hmsg_prefix(subject, sub.sid, reply, hdr, size)
            wb += line
            wb += payload
            c.out_bytes += size
        else:
            # a client that did not declare headers gets the payload only
            line = msg_prefix(subject, sub.sid, reply, size - hdr)
            wb += line
            wb += payload[hdr:]
            c.out_bytes += size - hdr
    else:
        line = msg_prefix(subject, sub.sid, reply, size)
        wb += line
        wb += payload
        c.out_bytes += size
    c.out_msgs += 1
    dirty.add(c)
    if c.log.trace_on:
        c.trace_out(line[:-2])
    return True
