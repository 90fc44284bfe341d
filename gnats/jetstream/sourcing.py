"""Mirrors and sources between streams of one account on this server.

Theory of operation
-------------------
nats-server copies with a consumer on the origin stream (through the API,
even on one server). Here, with origin and copy in the same process, a
`Link` reads the origin's store directly: one Link per mirror or source,
held by the account's `SourcingHub`.

  - Keeping up: a Link hooks the origin stream's `on_stored` list. A store
    there only marks the Link and schedules one `pump()` for the next
    reactor turn, so a burst of publishes is copied in one batch; a pump
    copies at most PUMP_MSGS messages / PUMP_BYTES bytes / PUMP_SCAN
    sequences and reschedules itself for the rest (a large backlog never
    holds the reactor). No polling: an idle Link costs nothing but the
    hub's one-second tick (the "heartbeat" that refreshes `active`,
    retries a copy refused for lack of room, notes a missing origin).
  - Where to start: a mirror continues after its own last sequence (the
    mirror's sequences are the origin's). A source continues after the
    last origin sequence it copied: kept in the Link while the server
    runs; for a file stream also written to SOURCES_FILE beside its
    meta.json (each tick when it changed, and at shutdown), so that a
    restart after the copies were purged or expired does not copy them
    again (nats-server 2.15's SourcesState); and found again after a
    restart from the `Nats-Stream-Source` headers of the stored messages
    (a backward scan, as nats-server's startingSequenceForSources; the
    newer of the two wins, so a crash between writes copies nothing
    twice). Otherwise `opt_start_seq`, `opt_start_time`, or the origin's
    first message.
  - A mirror stores each message with its origin sequence and timestamp
    (gaps left by the filter, deletes or expiry become skipped sequences)
    and without any header checks. A source stores through the stream's
    publish checks (limits, discard new, Nats-Msg-Id within its duplicate
    window) with a new sequence and time and the header
    `Nats-Stream-Source: <origin> <origin seq> <filters> <dests> <subject> <ident>`
    (ident: the hash of the origin's creation time, so a recreated origin
    is noticed and copied from its start, as nats-server 2.15).
  - The origin created after the copy, deleted, recreated: the hub
    attaches and detaches Links as the account's streams come and go.
    A purge of the origin needs nothing: its sequences go on.

Origins through an `external` API prefix (another account or domain)
are copied by sourcing_external.ExternalLink, through a consumer on the
far side; durable `consumer` sourcing is refused by sourcing_config.py.
The account's links are held by sourcing_hub.SourcingHub.
"""

import time

from . import errors as E
from .headers import build_headers, parse_headers, parse_ttl, rfc3339
from .sourcing_config import go_hash, iname, parse_time
from ..sublist import subject_matches
from ..transform import SubjectTransform

PUMP_MSGS = 1000
PUMP_BYTES = 4 << 20
PUMP_SCAN = 10000       # sequences looked at per pump (filtered copies, skips)
TICK = 1.0              # seconds: the hub's heartbeat
STALE = 10 * 10 ** 9    # ns without an origin before a copy reports an error
SOURCES_FILE = "sources.json"
STRIPPED = ("Nats-Stream-Source:", "Nats-Expected-", "Nats-Batch-")
# a source copy the stream refuses for lack of room is retried (nats-server
# retries these); any other refusal skips the message with a warning
_RETRY_CODES = (10077, 10023, 10002)


class _Again(Exception):
    """A copy that did part of its work (a long run of skipped sequences):
    the pump yields the turn and comes back for the rest."""


class Link:
    """One mirror or one source of a stream, from an origin in the same
    account."""

    external = False

    def __init__(self, hub, stream, src, mirror):
        self.hub = hub
        self.stream = stream            # the copy
        self.src = src                  # its StreamSource config
        self.mirror = mirror
        self.name = src["name"]
        self.iname = iname(src)
        trs = src.get("subject_transforms") or []
        if trs:
            self.filters = [t["src"] or ">" for t in trs]
            self.transforms = [SubjectTransform(t["src"] or ">", t["dest"]) if t["dest"] else None for t in trs]
        else:
            f = src.get("filter_subject")
            self.filters = [f] if f and f != ">" else None
            self.transforms = []
        self.origin = None
        self.sseq = 0                   # the last origin sequence copied
        self.ident = ""                 # the origin's identity when it was copied
        self.next_seq = None            # where the next pump reads (None: work it out)
        self.last = 0                   # ns of the last contact with the origin
        self.err = None                 # an ApiError shown in STREAM.INFO
        self.scheduled = False
        self.stalled = False
        self.saved = (0, "")            # (sseq, ident) as SOURCES_FILE has them
        self.warned = set()             # refusals logged already (once each)

    # -- origin ---------------------------------------------------------------
    def attach(self, origin):
        self.detach()
        self.origin = origin
        origin.on_stored.append(self.on_origin_stored)
        ident = go_hash(rfc3339(origin.created))
        if not self.mirror and self.ident and self.ident != ident:
            self.hub.log.warn("JetStream source stream '%s' for stream '%s > %s' was recreated, resetting "
                              "source state" % (self.name, self.hub.jsa.name, self.stream.name))
            self.sseq = 0
        self.ident = ident
        self.next_seq = None
        self.err = None
        self.schedule()

    def detach(self):
        o = self.origin
        if o is not None:
            try:
                o.on_stored.remove(self.on_origin_stored)
            except ValueError:
                pass
        self.origin = None

    def on_origin_stored(self, seq, subject):
        if not self.scheduled:
            self.schedule()

    def schedule(self):
        self.scheduled = True
        self.hub.reactor.call_later(0, self.pump)

    # -- copying -----------------------------------------------------------------
    def pump(self):
        self.scheduled = False
        origin, stream = self.origin, self.stream
        if origin is None or origin.closed or stream.closed:
            return
        self.last = time.time_ns()
        self.stalled = False
        store = origin.store
        last = store.state().last_seq
        if self.next_seq is None:
            self.next_seq = self._start(store)
        msgs = nbytes = scanned = 0
        while self.next_seq <= last:
            sm, looked = self._next(store, self.next_seq, last)
            scanned += looked
            if sm is None:
                self.next_seq += looked
            else:
                try:
                    if not self._copy(sm):
                        self.stalled = True
                        return
                except _Again:
                    self.schedule()
                    return
                self.sseq = sm.seq
                self.next_seq = sm.seq + 1
                msgs += 1
                nbytes += len(sm.hdr) + len(sm.msg)
            if msgs >= PUMP_MSGS or nbytes >= PUMP_BYTES or scanned >= PUMP_SCAN:
                self.schedule()
                return

    def _start(self, store):
        """The first origin sequence to read."""
        src = self.src
        if self.mirror:
            st = self.stream.store.state()
            if st.first_seq or st.last_seq:
                return st.last_seq + 1
        elif self.sseq:
            return self.sseq + 1
        if src.get("opt_start_seq"):
            return src["opt_start_seq"]
        if src.get("opt_start_time"):
            return _seq_at_time(store, parse_time(src["opt_start_time"])[0])
        return 1

    def _next(self, store, start, last):
        """(first message at or after start that the filters take, or None;
        how many sequences that covered)."""
        filters = self.filters
        if filters is None:
            sm = store.load_next(">", start)
            return sm, (sm.seq - start + 1 if sm is not None else last - start + 1)
        if len(filters) == 1 and _literal(filters[0]):
            sm = store.load_next(filters[0], start)
            return sm, (sm.seq - start + 1 if sm is not None else last - start + 1)
        # wildcard filters: read in order (a per-filter lookup would walk
        # every subject of the origin for each message)
        end = min(last, start + PUMP_SCAN - 1)
        for seq in range(start, end + 1):
            sm = store.load_msg(seq)
            if sm is not None and self._takes(sm.subject):
                return sm, seq - start + 1
        return None, end - start + 1

    def _takes(self, subject):
        return any(subject_matches(f, subject) for f in self.filters)

    def _subject(self, subject):
        for t in self.transforms:
            if t is not None:
                d = t.match(subject)
                if d is not None:
                    return d
        return subject

    def _copy(self, sm):
        try:
            if self.mirror:
                self._copy_mirrored(sm)
            else:
                self._copy_sourced(sm)
        except E.ApiError as e:
            if e.err_code in _RETRY_CODES:
                return False
            if e.description in self.warned:
                return True
            self.warned.add(e.description)
            self.hub.log.warn("JetStream: error processing inbound %s message %d from '%s' for '%s > %s': %s"
                              % ("mirror" if self.mirror else "source", sm.seq, self.name, self.hub.jsa.name,
                                 self.stream.name, e.description))
        return True

    def _copy_mirrored(self, sm):
        stream = self.stream
        store = stream.store
        st = store.state()
        if sm.seq <= st.last_seq:
            return      # had it already
        if sm.seq > st.last_seq + 1:
            if st.msgs == 0:
                store.compact(sm.seq)   # empty: just move on (any gap size)
            else:
                gap = sm.seq - st.last_seq - 1
                for _ in range(min(gap, PUMP_SCAN)):
                    store.skip_msg()
                if gap > PUMP_SCAN:
                    stream.host.js.touch(store)
                    raise _Again()
        subject = self._subject(sm.subject)
        # no publish checks (the origin made them), but the headers that
        # change what the mirror keeps apply when its config allows them
        ttl, rollup = 0, None
        if b"Nats-TTL" in sm.hdr or b"Nats-Rollup" in sm.hdr:
            h = parse_headers(sm.hdr)
            secs = parse_ttl(h.get("Nats-TTL", "")) or 0
            ttl = -1 if secs < 0 else (secs * 10 ** 9 if stream.config.get("allow_msg_ttl") else 0)
            if stream.config.get("allow_rollup_hdrs"):
                rollup = h.get("Nats-Rollup")
        seq, ts = stream.host.store_msg(stream, subject, sm.hdr, sm.msg, ttl, ts=sm.ts)
        if rollup == "sub":
            store.purge(subject, 0, 1)
        elif rollup == "all":
            store.purge(None, 0, 1)
        if stream.republish is not None:
            stream._republish(subject, seq, ts, sm.hdr, sm.msg)
        for fn in stream.on_stored:
            fn(seq, subject)

    def _copy_sourced(self, sm):
        value = "%s %d %s %s" % (self.iname.split(" ")[0], sm.seq, self.iname.split(" ", 1)[1], sm.subject)
        if self.ident:
            value += " " + self.ident
        hdr = build_headers([("Nats-Stream-Source", value)], _strip(sm.hdr))
        self.stream.process_sourced(self._subject(sm.subject), hdr, sm.msg)

    # -- STREAM.INFO ----------------------------------------------------------------
    def info(self, now):
        d = {"name": self.name}
        ext = self.src.get("external")
        if ext is not None:
            d["external"] = ext
        d["lag"] = self._lag()
        if not self.mirror and self.sseq:
            d["seq"] = self.sseq
        d["active"] = now - self.last if self.last else -1
        if self.err is not None:
            d["error"] = self.err.body()
        if self.src.get("filter_subject"):
            d["filter_subject"] = self.src["filter_subject"]
        if self.src.get("subject_transforms"):
            d["subject_transforms"] = self.src["subject_transforms"]
        return d

    def _lag(self):
        o = self.origin
        if o is None or o.closed or not self.last:
            return 0        # not heard from yet: nats-server shows 0 too
        start = self.next_seq or (self.sseq + 1)
        return sum(o.store.num_pending(start, f) for f in (self.filters or [">"]))


def _strip(hdr):
    """The origin's header block without the headers a source must not
    carry on (an earlier Nats-Stream-Source, Nats-Expected-*, Nats-Batch-*)."""
    if not hdr or not any(p.encode() in hdr for p in STRIPPED):
        return hdr or b""
    lines = hdr.split(b"\r\n")
    keep = [lines[0]] + [x for x in lines[1:] if x and not any(x.startswith(p.encode()) for p in STRIPPED)]
    return b"\r\n".join(keep) + b"\r\n\r\n"


def _literal(subject):
    return "*" not in subject.split(".") and ">" not in subject.split(".")


def _seq_at_time(store, ns):
    """The first sequence stored at or after `ns` (stream order is time
    order): a binary search over the live messages."""
    st = store.state()
    lo, hi = st.first_seq, st.last_seq + 1
    while lo < hi:
        mid = (lo + hi) // 2
        sm = store.load_next(">", mid)
        if sm is None:
            hi = mid
        elif sm.ts >= ns:
            hi = mid
        else:
            lo = sm.seq + 1
    return max(lo, 1)
