"""The inbound parse loop clients and routes share: the server's hot path.

Theory of operation
-------------------
`process_input(conn, buf)` walks `buf` once. Each control line is found
with one `find`; payloads are jumped over by their declared size, never
scanned. A message control line (`PUB ...` from a client, `RMSG ...` from a
route) is resolved once, by the connection's `process_op`, into a cache
entry:

    (size, tgts, counted, receivers, qgroups)

where `tgts` are (receiver's stage list, ready-made `MSG ...` prefix) pairs,
`counted` lists (receiver, subscription) once per delivery (for out_msgs,
and the subscription's `delivered`, which UNSUB <sid> <max> compares with),
`receivers` is the set to flush, and `qgroups` holds queue groups to pick
one member of per message (or None). The entry is cached under the
control line's exact bytes, so the next identical line costs one dict
lookup; and while the lines
that follow repeat it byte for byte (a publisher in a loop), an inner loop
handles them with one `startswith` each and no lookup at all, collecting
the run's payloads; each receiver then gets them as one piece
(`pre.join(payloads)` puts its prefix before each). A line that does not
repeat (traffic on many subjects) is delivered alone, without the run's
set-up. Deliveries are staged: pieces go to the receiver's `stage` list,
and `_unstage` moves them into its output buffer once per read (before
anything else writes there); the reactor flushes every receiver once per
turn. Counters are added once per run of identical lines, not per message.

Measured (parser alone, 1 MiB of 16 B PUBs, /usr/bin/python3 3.11): the
specialised inner loops below took the no-subscriber case from 0.32 to
0.17 µs per message, and one subscriber from 0.53 to 0.33 µs; one
`startswith` per frame and nothing else (session 4) 0.114 -> 0.081 µs
with no subscriber (tools/benchlib/loopbench.py).

The contract with the connection kinds (client.py, route.py) is declared
here, not duck-typed: each connection holds one `InboundState` (`conn.inb`),
whose slots are the whole parse state kept between reads. Besides it the
loop uses, of the connection: `paused`, `stalled`, `closed`, `defer_input()`,
`can_stall` and `stall_check(receivers, parsed)` (producer back-pressure,
conn.py), `protocol_error(e, buf, pos)`, `long_line_ok(buf, pos, length)`, the
counters `in_msgs`/`in_bytes`/`last_activity`, `cache_timer`/
`cache_filled()` (conn.py drops idle caches), `server` (max_payload,
max_control_line, in_msgs/in_bytes, stall_small/stall_window/
write_blocked), `reactor.dirty`, and `process_op(line, buf, pos, after)`;
of each receiver in an entry, `stage` and `wbuf`. When the loop calls
`process_op`, `inb.resume_at` is the end of the line and `inb.need` is 0,
so a handler of a line without a payload has nothing to set; a handler that
consumes a payload calls `inb.payload_end(...)`, which sets one or the
other (or writes them itself, as a refused PUB does). `process_op` returns
a cache entry for a message the loop delivers (and caches), else None.

Only clients publish with `PUB`: their state is a `PubState`, which adds
`scache` (subject and reply -> the parts of an entry that do not depend on
the size). Routes hold a plain `InboundState`, whose `scache` is None, and
the loop's `PUB ` branch is skipped for them.
"""

import random
import time
from itertools import islice

from . import parser as P
from .delivery import fast_entry
from .parser import ProtocolError

# Time one read's input may take before the rest waits for a later reactor
# turn. Without it, a client with ~30k wildcard subscriptions that publishes
# to distinct subjects (each match walks 2^15 trie paths, ~30 ms) froze every
# other client for 10 s per 300 PUBs. Checked only on cache misses.
INPUT_SLICE = 0.02
# Parse caches are bounded in bytes, per connection and per cache: up to
# 2 MiB of message lines (pcache) and 2 MiB of resolved (subject, reply)
# pairs (scache), 4 MiB per connection at most (nats-server holds about
# 5 MiB per connection under the same input). Counting entries was not
# enough: a line may be 4 KiB and its entry holds a prefix of about that
# size for each matching subscription, so 8,192 + 4,096 entries reached
# ~50 MiB per connection, and more with fan-out. 2 MiB each still holds
# ~4,000 lines and ~3,000 subjects of ordinary size (the bench's `mixed`
# working set) without thrashing. A single entry over the budget (a huge
# fan-out) is kept alone: its size is bounded by the subscriptions it
# names. Connections drop both caches after CACHE_IDLE s without input
# (conn.py).
PCACHE_BUDGET = 2 << 20
SCACHE_BUDGET = 2 << 20
# Bytes an entry costs beyond its key and prefixes, measured with
# tracemalloc on CPython 3.11 (1 and 8 targets, within 20%): a line entry
# is a 5-tuple, its dict slot and key header, and per target a pair and a
# bytes header (it shares the rest with its scache entry); a scache entry
# also holds per target a (receiver, subscription) pair and a frozenset slot.
PCACHE_ENTRY_COST = 250
PCACHE_TARGET_COST = 100
SCACHE_ENTRY_COST = 250
SCACHE_TARGET_COST = 230
EVICT_CHUNK = 256
# Up to this many bytes of the line cache, a PUB line whose subject is known
# (scache) is cached the first time it is seen; past it, only when it
# repeats at once (so it never evicts for a line that may not come back).
PCACHE_ROOM = PCACHE_BUDGET - (PCACHE_BUDGET >> 3)

_monotonic = time.monotonic
_rand = random.random


def _bad_payload_end():
    return ProtocolError(P.ERR_PARSER, "payload not followed by CRLF")


class InboundState:
    """What the parse loop keeps for one connection between reads; every
    field it has is a slot here.

    sublist      the subject index the cached entries were resolved in
    pgen         that index's generation when they were (stale when it moved)
    pcache       control line (bytes) -> entry (delivery.py's layouts);
                 `pcache_used` bytes
    need         bytes (from the unconsumed tail's start) needed before
                 parsing can progress; 0 when any more input will do
    resume_at    where parsing goes on after the op `process_op` handled
    """

    __slots__ = ("sublist", "pgen", "pcache", "pcache_used", "need", "resume_at")

    scache = None       # this kind has no PUB: the loop skips that branch

    def __init__(self, sublist):
        self.sublist = sublist
        self.pgen = -1
        self.pcache = {}
        self.pcache_used = 0
        self.need = 0
        self.resume_at = 0

    def reset(self):
        """The subject index changed: what was resolved may be stale."""
        self.drop()
        self.pgen = self.sublist.gen

    def drop(self):
        self.pcache.clear()
        self.pcache_used = 0

    def holds(self):
        return bool(self.pcache)

    def payload_end(self, buf, pos, after, size):
        """A payload of `size` bytes starts at `after` (its op line at
        `pos`): return the index past its CRLF and resume there, or 0 and
        `need` set when it has not fully arrived."""
        end = after + size
        if end + 2 > len(buf):
            self.need = end + 2 - pos
            return 0
        if buf[end] != 13 or buf[end + 1] != 10:
            raise _bad_payload_end()
        self.resume_at = end + 2
        return end + 2


class PubState(InboundState):
    """A client's state: adds `scache`, (subject, reply) text -> bases,
    with `scache_used` bytes, for PUBs whose size varies."""

    __slots__ = ("scache", "scache_used")

    def __init__(self, sublist):
        InboundState.__init__(self, sublist)
        self.scache = {}
        self.scache_used = 0

    def drop(self):
        self.pcache.clear()
        self.scache.clear()
        self.pcache_used = self.scache_used = 0

    def holds(self):
        return bool(self.pcache or self.scache)


def process_input(conn, buf):
    """Parse and act on `buf`; return the unconsumed tail (or None)."""
    if conn.paused or conn.stalled:
        return buf
    srv = conn.server
    st = conn.inb
    sl = st.sublist
    if st.pgen != sl.gen:
        st.reset()
    cache = st.pcache
    scache = st.scache
    dirty = conn.reactor.dirty
    touched = set()     # receivers with output staged (_unstage)
    maxcl = srv.max_control_line
    maxpay = srv.max_payload
    startswith = buf.startswith
    find = buf.find
    n = len(buf)
    pos = 0
    size = 0
    counted = ()
    rep = 0             # messages handled with the current entry, not yet counted
    in_msgs = in_bytes = 0
    deadline = _monotonic() + INPUT_SLICE
    st.need = 0
    # Producer back-pressure (conn.py): in guard mode a run of identical
    # lines stops every stall_window bytes (`lim`), and the receivers fed
    # are checked after each run; spos is where the stall budget was last
    # credited. Off (no cost but one test per run) while no connection is
    # write-blocked and max_pending is large.
    guard = conn.can_stall and (srv.stall_small or bool(srv.write_blocked))
    win = srv.stall_window
    spos = 0
    try:
        while pos < n:
            eol = find(b"\n", pos)
            if eol < 0:
                if n - pos > maxcl and not conn.long_line_ok(buf, pos, n - pos):
                    raise ProtocolError(P.ERR_MAX_CONTROL)
                break
            if eol - pos > maxcl and not conn.long_line_ok(buf, pos, eol - pos):
                raise ProtocolError(P.ERR_MAX_CONTROL)
            line = buf[pos:eol + 1]
            ent = cache.get(line)
            if ent is None and scache is not None and line[:4] == b"PUB ":
                # A subject and reply already resolved, with another size:
                # real traffic, whose payload sizes vary. Only the size is
                # parsed. The line is cached while the line cache has room
                # (a later one costs a lookup: wildcard and mixed 10-20%
                # less in the loop alone), or when it repeats at once;
                # otherwise the message is delivered here, uncached, so
                # that sizes that never come back do not churn the cache.
                sp = line.rfind(b" ")
                bases = scache.get(line[4:sp])
                if bases is not None and buf[eol - 1] == 13:
                    sz = line[sp + 1:-2]
                    if sz.isdigit() and len(sz) < 12:
                        size = int(sz)
                        end = eol + 1 + size
                        if size <= maxpay:
                            if end + 2 > n:
                                st.need = end + 2 - pos
                                break
                            if startswith(line, end + 2) or st.pcache_used < PCACHE_ROOM:
                                ent = cache_entry(conn, line, fast_entry(bases, size))
                            else:
                                if buf[end] != 13 or buf[end + 1] != 10:
                                    raise _bad_payload_end()
                                tgts, counted1, receivers, qgroups = bases
                                # The input from the size on ("SIZE\r\n",
                                # payload, CRLF) is what follows a prefix
                                # without its size: two appends per receiver.
                                pl = buf[pos + sp + 1:end + 2]
                                for out, pre in tgts:
                                    out += (pre, pl)
                                if qgroups is not None:
                                    for g in qgroups:
                                        out, pre, c, s = g[int(_rand() * len(g))]
                                        out += (pre, pl)
                                        c.out_msgs += 1
                                        c.out_bytes += size
                                        s.delivered += 1
                                for c, s in counted1:
                                    c.out_msgs += 1
                                    c.out_bytes += size
                                    s.delivered += 1
                                if receivers:
                                    touched.update(receivers)
                                in_msgs += 1
                                in_bytes += size
                                pos = end + 2
                                if guard and receivers:
                                    _unstage(touched, dirty)
                                    if conn.stall_check(receivers, pos - spos):
                                        break
                                    spos = pos
                                continue
            if ent is None:
                if _monotonic() > deadline:
                    conn.defer_input()
                    break
                if touched:
                    _unstage(touched, dirty)    # what the op writes comes after
                st.resume_at = eol + 1
                ent = conn.process_op(line, buf, pos, eol + 1)
                if ent is None:
                    # not a cacheable message: the op ran, or needs more input
                    if conn.closed:
                        return None
                    if conn.paused or conn.stalled:
                        return buf[st.resume_at:]
                    if st.need:
                        break
                    pos = st.resume_at
                    if st.pgen != sl.gen:
                        st.reset()
                    continue
            # A cached message line: handle it and every identical line after it.
            size, tgts, counted, receivers, qgroups = ent
            end = eol + 1 + size        # where its payload ends
            if qgroups is None and not startswith(line, end + 2):
                # A message alone (the next line differs, as traffic on
                # many subjects mostly has): no run to set up.
                if end + 2 > n:
                    st.need = end + 2 - pos
                    break
                if buf[end] != 13 or buf[end + 1] != 10:
                    raise _bad_payload_end()
                in_msgs += 1
                in_bytes += size
                pos = end + 2
                if tgts:
                    pl = buf[eol + 1:pos]
                    for out, pre in tgts:
                        out += (pre, pl)
                    for c, s in counted:
                        c.out_msgs += 1
                        c.out_bytes += size
                        s.delivered += 1
                    touched.update(receivers)
                    if guard:
                        _unstage(touched, dirty)
                        if conn.stall_check(receivers, pos - spos):
                            break
                        spos = pos
                continue
            # A run of identical lines (or queue groups to pick members of).
            if receivers:
                touched.update(receivers)
            hop = len(line) + size      # line start -> payload end
            step = hop + 2              # one whole frame
            # One startswith checks both this payload's CRLF and that the
            # next line repeats this one (measured: 20% off the loop); its
            # end argument keeps the frame inside `lim` at no extra cost.
            # Each run loop below is that call and its frame's work, and
            # the frame that ends the run (the next line differs, has not
            # arrived, or is past `lim`) is handled after it, once.
            crl = b"\r\n" + line
            lim = n
            if guard:
                lim = end + 2 + win
                if lim > n:
                    lim = n
            stop = lim + len(line)
            if qgroups is None:
                if not tgts:                        # nobody is interested
                    e0 = end
                    while startswith(crl, end, stop):
                        end += step
                    rep += (end - e0) // step
                    pos = end - hop
                    if end + 2 > n:
                        st.need = end + 2 - pos
                    elif buf[end] != 13 or buf[end + 1] != 10:
                        raise _bad_payload_end()
                    else:
                        rep += 1
                        pos = end + 2
                else:                               # one receiver or fan-out
                    # The run's payloads (with their CRLF) are collected and
                    # each receiver gets them in one append, `pre.join`
                    # putting its prefix in front of each: per message a
                    # slice and a list append, never a small append to a
                    # receiver's buffer. PyPy's bytearray grows by 1/8 and
                    # copies (no realloc), so per-message appends into a
                    # growing buffer cost it ~2 us per KiB (pubsub1k 4.3 us
                    # per message, 60% of it in the GC freeing the copies).
                    pls = []
                    add = pls.append
                    while startswith(crl, end, stop):
                        add(buf[end - size:end + 2])
                        end += step
                    pos = end - hop
                    bad = False
                    if end + 2 > lim:
                        if end + 2 > n:
                            st.need = end + 2 - pos
                    elif buf[end] != 13 or buf[end + 1] != 10:
                        bad = True          # deliver what came before it first
                    else:
                        add(buf[end - size:end + 2])
                        pos = end + 2
                    if pls:
                        rep += len(pls)
                        for out, pre in tgts:
                            out += (pre, pre.join(pls))
                    if bad:
                        raise _bad_payload_end()
            else:                                   # queue groups: a member each
                # As above, one append per receiver per run: plain
                # subscribers get every payload (`pls`), each group's
                # members the ones picked for them at random (`picks`:
                # member index -> payloads), counted once per run.
                pls = []
                add = pls.append
                while startswith(crl, end, stop):
                    add(buf[end - size:end + 2])
                    end += step
                pos = end - hop
                bad = False
                if end + 2 > lim:
                    if end + 2 > n:
                        st.need = end + 2 - pos
                elif buf[end] != 13 or buf[end + 1] != 10:
                    bad = True
                else:
                    add(buf[end - size:end + 2])
                    pos = end + 2
                if pls:
                    rep += len(pls)
                    for out, pre in tgts:
                        out += (pre, pre.join(pls))
                    for g in qgroups:
                        _deal(g, pls, size)
                if bad:
                    raise _bad_payload_end()
            if rep:
                in_msgs += rep
                in_bytes += rep * size
                for c, s in counted:
                    c.out_msgs += rep
                    c.out_bytes += rep * size
                    s.delivered += rep
                rep = 0
            if guard and receivers and pos > spos:
                _unstage(touched, dirty)
                if conn.stall_check(receivers, pos - spos):
                    break
                spos = pos
            if st.need:
                break
        else:
            pos = n
    except ProtocolError as e:
        if touched:
            _unstage(touched, dirty)
        conn.protocol_error(e, buf, pos)
        return None
    finally:
        if touched:
            _unstage(touched, dirty)
        if rep:
            in_msgs += rep
            in_bytes += rep * size
            for c, s in counted:
                c.out_msgs += rep
                c.out_bytes += rep * size
                s.delivered += rep
        if in_msgs:
            conn.in_msgs += in_msgs
            conn.in_bytes += in_bytes
            srv.in_msgs += in_msgs
            srv.in_bytes += in_bytes
        conn.last_activity = time.time()
    if pos < n:
        return buf[pos:]
    return None


def _unstage(touched, dirty):
    """Move the output staged for each receiver in `touched` into its
    buffer, and mark it for the reactor's end-of-turn flush. Deliveries
    add pieces to a receiver's `stage` list (conn.py), not to its buffer:
    PyPy grows a bytearray by copying it (no realloc), so per-message
    appends into a buffer that grows to a MiB in a turn cost it up to
    1.4 us a pair (a micro-benchmark), against 0.03 us staged and joined.
    Called before anything else writes to a buffer (an op the loop does
    not cache, a protocol error) and before the stall check reads their
    sizes, so the order on the wire is the order of delivery."""
    for c in touched:
        pieces = c.stage
        if pieces:
            wb = c.wbuf
            if len(pieces) > 4:
                wb += b"".join(pieces)
            else:
                for p in pieces:
                    wb += p
            pieces.clear()
    dirty.update(touched)
    touched.clear()


def _deal(group, pls, size):
    """Each payload of a run to one member of a queue group, picked at
    random; each picked member gets its share in one append and is counted
    once per run."""
    rand = _rand
    m = len(group)
    picks = {}
    for pl in pls:
        i = int(rand() * m)
        got = picks.get(i)
        if got is None:
            picks[i] = [pl]
        else:
            got.append(pl)
    for i, got in picks.items():
        out, pre, c, s = group[i]
        k = len(got)
        out += (pre, pre.join(got))
        c.out_msgs += k
        c.out_bytes += k * size
        s.delivered += k


def _targets_cost(tgts, qgroups, each):
    n = 0
    for t in tgts:
        n += len(t[1]) + each
    if qgroups is not None:
        for g in qgroups:
            for m in g:
                n += len(m[1]) + each
    return n


def pcache_cost(line, ent):
    _, tgts, _, _, qgroups = ent
    return len(line) + PCACHE_ENTRY_COST + _targets_cost(tgts, qgroups, PCACHE_TARGET_COST)


def scache_cost(key, bases):
    tgts, _, _, qgroups = bases
    return len(key) + SCACHE_ENTRY_COST + _targets_cost(tgts, qgroups, SCACHE_TARGET_COST)


def cache_entry(conn, line, ent):
    """Remember what a message control line resolved to."""
    st = conn.inb
    st.pcache_used = _put(conn, st.pcache, st.pcache_used, line, ent,
                          pcache_cost(line, ent), PCACHE_BUDGET, pcache_cost)
    return ent


def scache_put(conn, key, bases):
    """Remember what a subject and reply resolved to, whatever the size."""
    st = conn.inb
    st.scache_used = _put(conn, st.scache, st.scache_used, key, bases,
                          scache_cost(key, bases), SCACHE_BUDGET, scache_cost)


def _put(conn, cache, used, key, value, cost, budget, cost_of):
    """Insert within `budget` bytes; returns the bytes now used. When full,
    the oldest entries go until 1/16 of the budget is free, a chunk at a
    time: evicting half at once cost a ~1 ms stall every few thousand
    requests, which showed in request/reply p99 latency. A key already
    present (a PUB line the loop's scache probe missed by its spacing) is
    replaced, its cost returned first."""
    old = cache.pop(key, None)
    if old is not None:
        used -= cost_of(key, old)
    if used + cost > budget:
        room = budget - (budget >> 4) - cost
        while cache and used > room:
            for k in list(islice(cache, EVICT_CHUNK)):
                used -= cost_of(k, cache.pop(k))
                if used <= room:
                    break
        if not cache:
            used = 0
    cache[key] = value
    if conn.cache_timer is None:
        conn.cache_filled()
    return used + cost
