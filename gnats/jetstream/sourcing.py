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

Only same-account origins without `external`/`consumer`:
sourcing_config.py refuses the others for now.
"""

import json
import os
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
    """One mirror or one source of a stream."""

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


class SourcingHub:
    """The Links of one account's streams (JsAccount.sourcing)."""

    def __init__(self, jsa):
        self.jsa = jsa
        self.log = jsa.js.log
        self.reactor = jsa.js.server.reactor
        self.links = {}         # stream name -> [Link]
        self._timer = None

    # -- the account's streams come and go (hooks in account.py) ---------------------
    def stream_added(self, stream):
        for links in self.links.values():
            for link in links:
                if link.name == stream.name and link.origin is None:
                    link.attach(stream)
        self._make_links(stream, {})

    def stream_updated(self, stream, old_cfg):
        cfg = stream.config
        if cfg.get("mirror") == old_cfg.get("mirror") and cfg.get("sources") == old_cfg.get("sources"):
            return
        keep = dict((l.iname, l) for l in self.links.pop(stream.name, []))
        for l in keep.values():
            l.detach()
        self._make_links(stream, keep)

    def stream_removed(self, stream):
        for l in self.links.pop(stream.name, []):
            l.detach()
        for links in self.links.values():
            for l in links:
                if l.origin is stream:
                    l.detach()

    def close(self):
        """Shutdown: save the sources' positions, let go of the origins."""
        self._save_positions()
        for links in self.links.values():
            for l in links:
                l.detach()
        self.links = {}
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _make_links(self, stream, previous):
        cfg = stream.config
        links = []
        if cfg.get("mirror") is not None:
            links.append(Link(self, stream, cfg["mirror"], True))
        for src in cfg.get("sources") or []:
            links.append(Link(self, stream, src, False))
        if not links:
            return
        fresh = []
        for l in links:
            old = previous.get(l.iname)
            if old is not None and old.mirror == l.mirror:
                l.sseq, l.ident, l.last = old.sseq, old.ident, old.last
            else:
                fresh.append(l)
        if fresh and not links[0].mirror:
            self._load_positions(stream, fresh)
            _recover_sources(stream, fresh)
        self.links[stream.name] = links
        for l in links:
            origin = self.jsa.streams.get(l.name)
            if origin is not None and origin is not stream:
                l.attach(origin)
        if self._timer is None:
            self._timer = self.reactor.call_later(TICK, self._tick)

    # -- STREAM.INFO (hooks in api.py) ------------------------------------------------------
    def info(self, stream):
        links = self.links.get(stream.name)
        if not links:
            return {}
        now = time.time_ns()
        if links[0].mirror:
            return {"mirror": links[0].info(now)}
        return {"sources": [l.info(now) for l in links]}

    # -- source positions on disk (file streams) ---------------------------------------
    def _positions_path(self, stream):
        if stream.config["storage"] != "file" or self.jsa.streams.get(stream.name) is not stream:
            return None
        return os.path.join(self.jsa.dir, stream.name, SOURCES_FILE)

    def _load_positions(self, stream, links):
        path = self._positions_path(stream)
        if path is None:
            return
        try:
            with open(path, "rb") as f:
                saved = json.loads(f.read())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            self.log.warn("JetStream: ignoring %s: %s" % (path, e))
            return
        if not isinstance(saved, dict):
            return
        for l in links:
            v = saved.get(l.iname)
            if isinstance(v, dict) and isinstance(v.get("seq"), int) and isinstance(v.get("ident", ""), str):
                l.sseq, l.ident = v["seq"], v.get("ident", "")
                l.saved = (l.sseq, l.ident)

    def _save_positions(self):
        for name, links in self.links.items():
            if links[0].mirror or all((l.sseq, l.ident) == l.saved for l in links):
                continue
            path = self._positions_path(links[0].stream)
            if path is None or not os.path.isdir(os.path.dirname(path)):
                continue
            body = json.dumps(dict((l.iname, {"seq": l.sseq, "ident": l.ident}) for l in links)).encode()
            try:
                with open(path + ".tmp", "wb") as f:
                    f.write(body)
                os.replace(path + ".tmp", path)
            except OSError as e:
                self.log.error("JetStream: could not write %s: %s" % (path, e))
                continue
            for l in links:
                l.saved = (l.sseq, l.ident)

    def _tick(self):
        self._timer = None
        if not self.links:
            return
        self._save_positions()
        now = time.time_ns()
        for links in self.links.values():
            for l in links:
                if l.origin is not None and not l.origin.closed:
                    l.last = now        # the origin is there: our heartbeat
                    if l.stalled and not l.scheduled:
                        l.schedule()
                elif l.err is None and (not l.last or now - l.last > STALE):
                    l.err = E.err(E.STREAM_NOT_FOUND)
        self._timer = self.reactor.call_later(TICK, self._tick)


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


def _recover_sources(stream, links):
    """After a restart (or a source added): each source's last copied
    origin sequence and identity, from the newest stored message that
    carries its Nats-Stream-Source header."""
    want = dict((l.iname, l) for l in links)
    store = stream.store
    st = store.state()
    seq = st.last_seq
    while want and seq >= st.first_seq and seq > 0:
        sm = store.load_msg(seq)
        seq -= 1
        if sm is None or b"Nats-Stream-Source:" not in sm.hdr:
            continue
        for line in sm.hdr.split(b"\r\n"):
            if not line.startswith(b"Nats-Stream-Source:"):
                continue
            f = line[len(b"Nats-Stream-Source:"):].strip().decode("utf-8", "replace").split(" ")
            if len(f) >= 4:
                link = want.pop("%s %s %s" % (f[0], f[2], f[3]), None)
            elif len(f) == 2:   # pre-2.10: "<origin> <seq>"
                link = next((l for l in want.values() if l.name == f[0]), None)
                if link is not None:
                    del want[link.iname]
            else:
                link = None
            if link is not None:
                try:
                    seq = int(f[1])
                except ValueError:
                    break
                ident = f[5] if len(f) >= 6 else ""
                # the saved position wins when it is further on the same origin
                if not (link.ident == ident and link.sseq > seq):
                    link.sseq, link.ident = seq, ident
            break
