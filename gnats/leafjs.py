"""JetStream across leaf connections: which JetStream subjects stay on
each side of one leaf connection, decided when it registers from the two
servers' JetStream domains (nats-server 2.15's addLeafNodeConnection).

  * `$JS.API.>`, `$KV.>` and `$OBJ.>` cross in neither direction, on a
    connection bound to any account, whatever the domains: the interest
    is not told to the peer, messages are not sent to it, and a spoke
    drops them if the hub sends them. So the plain API is always answered
    by the JetStream of the server the client is on (never by two).
  * A domain names a JetStream across the link: the API also answers on
    `$JS.<domain>.API.>` (manager.py), interest like any other, so a
    client of the hub reaches the leaf's JetStream as
    `$JS.<leaf domain>.API` and a leaf's client the hub's as
    `$JS.<hub domain>.API`; replies, acks and stream subjects cross as
    plain messages.
  * Messages for this server's own `$JS.<domain>.API.>` never leave by a
    leaf connection. nats-server says so when the domains differ (a guard
    against a peer further away with the same domain); when they are the
    same, its account mapping `$JS.<domain>.API.>` -> `$JS.API.>` rewrites
    them on the publishing server, so they never leave either. Here the
    domain subscriptions stay, so the deny is what keeps a request from
    being answered on both sides (a Go peer's interest in them is plain,
    not in the API's queue group).
  * A connection bound to the system account also keeps `$JSC.>` and
    `$NRG.>` (clustered JetStream's): nats-server extends a domain across
    such a link when the domains are the same; gnatsd.py has no clustered
    JetStream and never does.

Patterns are all `<prefix>.>`, so a subject (or a subscription's subject,
wildcards compared as tokens, as nats-server's deny sublist does) is
denied when it starts with `<prefix>.`: `Leaf` keeps the prefixes.
"""

CLIENT_JS = ("$JS.API.>", "$KV.>", "$OBJ.>")           # nats-server denyAllClientJs
ALL_JS = ("$JSC.>", "$NRG.>") + CLIENT_JS               # nats-server denyAllJs


def prefixes(patterns):
    """("$JS.API.>", ...) -> ("$JS.API.", ...)"""
    return tuple(p[:-1] for p in patterns)


def set_js_denies(server, leaf):
    """At register: the prefixes `leaf` checks (leaf.py) of interest not
    told to the peer, of the peer's interest not taken (nothing could be
    sent for it), of messages not sent, of messages dropped when they come
    (a spoke's only, as nats-server: a hub takes what a leaf sends)."""
    both, send_only = js_denies(server, leaf)
    both = prefixes(both)
    leaf.js_deny_interest = both
    leaf.js_deny_peer_interest = both + prefixes(send_only)
    leaf.js_deny_send = tuple(p.encode("latin-1") for p in leaf.js_deny_peer_interest)
    leaf.js_deny_recv = tuple(p.encode("latin-1") for p in both) if leaf.is_spoke else ()


def js_denies(server, leaf):
    """(both, out): the patterns denied both ways on `leaf` (interest and
    messages), and those denied for messages to the peer only. Logs what
    nats-server logs for the same decision."""
    log = server.log
    tag = leaf.tag()
    local = server.opts.jetstream_domain or ""
    js_on = server.jetstream is not None
    remote = leaf.remote_domain
    acc = leaf.account
    system = server.system.account
    peer = leaf.remote_name + ("/" + leaf.remote_cluster if leaf.remote_cluster else "")
    block_own_domain = False
    if local != remote or (not js_on and not local) or system is None:
        if acc is system:
            log.notice("%s - System account connected from %s" % (tag, peer))
            log.notice("%s - JetStream not extended, domains differ" % tag)
            both = ALL_JS
        else:
            log.notice('%s - JetStream using domains: local "%s", remote "%s"' % (tag, local, remote))
            both = CLIENT_JS
        block_own_domain = True
    elif acc is system:
        log.notice('%s - JetStream domain "%s" not extended to %s: gnatsd.py has no clustered JetStream'
                   % (tag, local, peer))
        both = ALL_JS
    else:
        if log.debug_on:
            log.debug('%s - Adding deny [%s] for account "%s"' % (tag, " ".join(CLIENT_JS), acc.name))
        both = CLIENT_JS
    out = ()
    if local and js_on:
        own = "$JS.%s.API.>" % local
        out = (own,)
        if block_own_domain and log.debug_on:
            log.debug('%s - Adding deny "%s" for outgoing messages to account "%s"' % (tag, own, acc.name))
    return both, out
