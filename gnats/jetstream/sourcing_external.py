"""Mirrors and sources whose origin is reached through an API prefix
(`external: {"api": ..., "deliver": ...}`): another account through its
exports, or another JetStream domain.

Theory of operation
-------------------
As nats-server 2.15 does (stream.go's setupMirrorConsumer and
trySetupSourceConsumer), an `ExternalLink` asks the far side for a push
consumer and stores what it delivers; nothing of the origin is read in
process.

  - Setup: a request on `<api>.CONSUMER.CREATE.<origin>[.<name>.<filter>]`
    (published in the copy's account, so its service imports carry it
    across) for a consumer named JS_MIRROR_/JS_SRC_<hash of stream and
    account>, delivering to `<deliver>.M|S.<random>` with ack none,
    max_deliver 1, heartbeats every second, flow control, `direct` and
    `sourcing` set and a 10 s inactive threshold, starting at the next
    origin sequence wanted: a mirror's last sequence + 1 (or its
    opt_start_seq / opt_start_time / everything when empty), a source's
    last copied origin sequence + 1 (sourcing.py recovers it after a
    restart). The request carries Nats-Required-Api-Level and, once
    known, the origin's identity (Nats-Stream-Identity): a recreated origin
    answers 10225 and a source then starts over from the origin's start.
  - Receiving: an internal subscription on the deliver subject that also
    sees the account's stream imports (internal.py). Each message's ack
    reply subject `$JS.ACK.<stream>.<consumer>.<dc>.<sseq>.<dseq>.<ts>.<pending>`
    gives the origin sequence and time, the consumer's delivery sequence
    and the lag. Delivery sequences must follow each other; a jump, or a
    heartbeat whose Nats-Last-Consumer is not the last one seen, means a
    message was lost in between, and the consumer is recreated from the
    next origin sequence wanted. A mirror skips the origin sequences a gap
    leaves (filters, deletes) so its sequences stay the origin's.
  - Flow control: a `100 FlowControl Request` is answered on its reply
    subject with Nats-Last-Consumer / Nats-Last-Stream; a heartbeat with
    Nats-Consumer-Stalled is answered too (the consumer waits for it).
  - Health: the hub's one-second tick. No message or heartbeat for 10 s
    (sourceHealthCheckInterval) recreates the consumer. Requests are at
    least 2 s apart; failures back off by 10 s per failure up to 2 minutes,
    as nats-server; an unanswered request is given up after 30 s.
"""

import json
import os
import random
import time

from . import errors as E
from .headers import build_headers, parse_headers
from .sourcing import PUMP_SCAN, Link
from .sourcing_config import go_hash

HEALTH = 10.0               # s without a message or heartbeat: recreate
HEARTBEAT = 10 ** 9         # ns: the consumer's idle heartbeat
RETRY_MIN = 2.0             # s between two requests
RETRY_STEP = 10.0           # s of back-off per failure
RETRY_MAX = 120.0
REQUEST_TIMEOUT = 30.0
API_LEVEL = 5
IDENTITY_MISMATCH = 10225
DOWNGRADE_CODES = (10185, 10025)    # required api level; invalid JSON (an older server)
_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _token(n=8):
    return "".join(_DIGITS[b % 62] for b in os.urandom(n))


class _Msg:
    """What Link's copy methods read of a stored message."""
    __slots__ = ("seq", "subject", "hdr", "msg", "ts")

    def __init__(self, seq, subject, hdr, msg, ts):
        self.seq, self.subject, self.hdr, self.msg, self.ts = seq, subject, hdr, msg, ts


def ack_info(reply):
    """(consumer, stream seq, delivery seq, delivery count, ts, pending) of
    a `$JS.ACK` reply subject (nats-server's 9-token form or the 11+ token
    form with domain and account hash), or None."""
    t = reply.split(".") if reply else ()
    if len(t) < 9 or t[0] != "$JS" or t[1] != "ACK" or len(t) == 10:
        return None
    o = 2 if len(t) == 9 else 4
    try:
        return t[o + 1], int(t[o + 3]), int(t[o + 4]), int(t[o + 2]), int(t[o + 5]), int(t[o + 6])
    except ValueError:
        return None


def split_ack_reply(subject, reply):
    """(stored subject, ack reply) of a delivery. A nats-server that sends
    a consumer's message over a route or leaf connection routes it on the
    deliver subject and appends the stored subject to the reply:
    `$JS.ACK.<8 tokens>@<subject>` (the first `@` after eight dots)."""
    if not reply or not reply.startswith("$JS.ACK.") or "@" not in reply:
        return subject, reply
    dots = 0
    for i, ch in enumerate(reply):
        if ch == ".":
            dots += 1
        elif ch == "@" and dots >= 8:
            return reply[i + 1:], reply[:i]
    return subject, reply


class ExternalLink(Link):
    """One mirror or source through an `external` API prefix (see the
    module docstring). The hub drives it with start(), tick() and detach()."""

    external = True

    def __init__(self, hub, stream, src, mirror):
        Link.__init__(self, hub, stream, src, mirror)
        ext = src["external"]
        self.api = ext.get("api") or "$JS.API"
        self.deliver = ext.get("deliver") or ""
        self.server = hub.jsa.js.server
        self.account = hub.jsa.account
        self.sub = None             # the deliver subscription
        self.req_sub = None         # the reply subscription of a request in flight
        self.req_timer = None
        self.retry_timer = None
        self.cname = ""             # the consumer delivering to us
        self.dseq = 0               # its last delivery sequence seen
        self.lag = 0
        self.fails = 0
        self.lreq = 0.0             # monotonic time of the last request
        self.sourcing = True        # cleared for a server that does not know it
        self.deliver_subject = ""   # of the request in flight
        self.skip_to = 0            # a long run of skips in progress: up to this sequence
        self.closed = False

    # -- the hub's calls ----------------------------------------------------------
    def start(self):
        self.closed = False
        self._schedule_setup()

    def attach(self, origin):
        pass        # an external origin is never a stream of this account

    def detach(self):
        self.closed = True
        self._cancel()
        if self.retry_timer is not None:
            self.retry_timer.cancel()
            self.retry_timer = None

    def tick(self, now):
        """The hub's heartbeat: recreate a consumer that went quiet."""
        if self.closed or self.req_sub is not None or self.retry_timer is not None or self.skip_to:
            return
        if self.sub is None or now - self.last > HEALTH * 10 ** 9:
            self.hub.log.debug("JetStream: retrying %s consumer for '%s > %s'"
                               % (self._kind(), self.hub.jsa.name, self.stream.name))
            self._cancel()
            self._schedule_setup()

    def _lag(self):
        return self.lag

    # -- setting up the consumer -------------------------------------------------------
    def _kind(self):
        return "mirror" if self.mirror else "source"

    def _cancel(self):
        for s in (self.sub, self.req_sub):
            if s is not None:
                self.server.internal_unsubscribe(s)
        self.sub = self.req_sub = None
        if self.req_timer is not None:
            self.req_timer.cancel()
            self.req_timer = None
        self.cname = ""

    def _schedule_setup(self):
        if self.closed or self.retry_timer is not None or self.req_sub is not None or self.skip_to:
            return
        delay = 0.0
        if self.lreq:
            delay = max(0.0, RETRY_MIN - (time.monotonic() - self.lreq))
            delay += min(RETRY_STEP * self.fails, RETRY_MAX)
        delay += 0.1 + random.random() * 0.1        # nats-server's jitter
        self.retry_timer = self.hub.reactor.call_later(delay, self._setup)

    def _consumer_name(self):
        pre = "JS_MIRROR_" if self.mirror else "JS_SRC_"
        ident = "%s %s" % (self.stream.name, self.hub.jsa.name)
        if self.hub.jsa.js.domain:
            ident += " " + self.hub.jsa.js.domain
        if not self.mirror and sum(1 for s in self.stream.config.get("sources") or []
                                   if s["name"] == self.name) > 1:
            ident += " " + self.iname
        name = pre + go_hash(ident)
        if not self.sourcing:
            name += "_" + go_hash(_token())
        return name

    def _request(self):
        """(subject, config) of the consumer create request."""
        src, stream = self.src, self.stream
        meta_pre = "_nats.mirror." if self.mirror else "_nats.src."
        meta = {meta_pre + "stream": stream.name, meta_pre + "acc": self.hub.jsa.name}
        if self.hub.jsa.js.domain:
            meta[meta_pre + "domain"] = self.hub.jsa.js.domain
        ds = (self.deliver + (".M." if self.mirror else ".S.") + _token()) if self.deliver \
            else ("$JS.M." if self.mirror else "$JS.S.") + _token()
        self.deliver_subject = ds = ds.replace("..", ".")
        cfg = {"name": self._consumer_name(), "deliver_policy": "all", "ack_policy": "none",
               "ack_wait": 22 * 3600 * 10 ** 9, "max_deliver": 1, "replay_policy": "instant",
               "deliver_subject": ds, "idle_heartbeat": HEARTBEAT, "flow_control": True,
               "inactive_threshold": int(HEALTH * 10 ** 9), "num_replicas": 0, "direct": True,
               "metadata": meta}
        if self.sourcing:
            cfg["sourcing"] = True
        st = stream.store.state()
        if self.mirror:
            if st.msgs == 0 and st.first_seq == 0:
                if src.get("opt_start_seq"):
                    cfg.update(deliver_policy="by_start_sequence", opt_start_seq=src["opt_start_seq"])
                elif src.get("opt_start_time"):
                    cfg.update(deliver_policy="by_start_time", opt_start_time=src["opt_start_time"])
            else:
                cfg.update(deliver_policy="by_start_sequence", opt_start_seq=st.last_seq + 1)
        elif self.sseq:
            cfg.update(deliver_policy="by_start_sequence", opt_start_seq=self.sseq + 1)
        elif src.get("opt_start_seq"):
            cfg.update(deliver_policy="by_start_sequence", opt_start_seq=src["opt_start_seq"])
        elif src.get("opt_start_time"):
            cfg.update(deliver_policy="by_start_time", opt_start_time=src["opt_start_time"])
        filters = [t["src"] or ">" for t in src.get("subject_transforms") or []] or (
            [src["filter_subject"]] if src.get("filter_subject") else [])
        if filters == [">"]:
            filters = []        # everything: the plain create subject
        subject = "%s.CONSUMER.CREATE.%s" % (self.api, self.name)
        if len(filters) == 1:
            cfg["filter_subject"] = filters[0]
            subject += ".%s.%s" % (cfg["name"], filters[0])
        elif filters:
            cfg["filter_subjects"] = filters
        return subject.replace("..", "."), cfg

    def _setup(self):
        self.retry_timer = None
        if self.closed or self.stream.closed:
            return
        self._cancel()
        self.lreq = time.monotonic()
        subject, cfg = self._request()
        reply = "$JSC.R." + _token()
        self.req_sub = self.server.internal_subscribe(self.account, reply, self._on_response)
        fields = [("Nats-Required-Api-Level", str(API_LEVEL if self.sourcing else 0))]
        if self.ident and not self.mirror:
            fields.append(("Nats-Stream-Identity", self.ident))
        body = json.dumps({"stream_name": self.name, "config": cfg}).encode()
        self.req_timer = self.hub.reactor.call_later(REQUEST_TIMEOUT, self._on_timeout)
        self.server.publish_internal(self.account, subject, reply, build_headers(fields) if self.sourcing else None,
                                     body)

    def _on_timeout(self):
        self.req_timer = None
        self._failed(None)

    def _failed(self, err, count=True):
        self._cancel()
        if err is not None:
            self.err = err
        if count:
            self.fails += 1
        self._schedule_setup()

    def _on_response(self, sub, subject, reply, hdr, msg, client):
        if sub is not self.req_sub:
            return
        self.server.internal_unsubscribe(sub)
        self.req_sub = None
        if self.req_timer is not None:
            self.req_timer.cancel()
            self.req_timer = None
        try:
            resp = json.loads(msg)
            if not isinstance(resp, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            self.hub.log.warn("JetStream bad %s consumer create response: %r" % (self._kind(), msg[:200]))
            self._failed(E.err(E.INVALID_JSON, err="bad consumer create response"))
            return
        err = resp.get("error")
        name = resp.get("name")
        delivered = resp.get("delivered")
        delivered = delivered.get("stream_seq") if isinstance(delivered, dict) else 0
        if err is not None or not isinstance(resp.get("config"), dict) or not isinstance(name, str) or not name:
            self._refused(err if isinstance(err, dict) else {})
            return
        if isinstance(delivered, bool) or not isinstance(delivered, int) or delivered < 0:
            delivered = 0
        ident = parse_headers(hdr).get("Nats-Stream-Identity", "") if hdr else ""
        self._established(name, delivered, ident)

    def _refused(self, err):
        code = err.get("err_code")
        if code == IDENTITY_MISMATCH and not self.mirror:
            # the origin was recreated: start over from its beginning
            self.hub.log.warn("JetStream source stream '%s' for stream '%s > %s' was recreated, resetting "
                              "source state" % (self.name, self.hub.jsa.name, self.stream.name))
            self.sseq, self.ident = 0, ""
            self._failed(None, count=False)
            return
        if code in DOWNGRADE_CODES and self.sourcing:
            # an older server: a plain consumer with a unique name (nats-server
            # first tries API level 4, which has nothing this copy uses)
            self.sourcing = False
            self.lreq = 0.0
            self._failed(None, count=False)
            return
        if not isinstance(code, int) or isinstance(code, bool):
            code = 10029 if self.mirror else 10045
        status = err.get("code") if isinstance(err.get("code"), int) else 500
        text = err.get("description") if isinstance(err.get("description"), str) else ""
        e = E.ApiError(status, code, text or "invalid consumer create response")
        self.hub.log.warn("JetStream error response for stream %s create %s consumer %s: %s"
                          % (self.stream.name, self._kind(), self.name, e.description))
        self._failed(e)

    def _established(self, name, delivered, ident):
        if not self.mirror:
            if ident:
                self.ident = ident
            self.sseq = max(self.sseq, delivered)
        else:
            store = self.stream.store
            st = store.state()
            if st.last_seq < delivered:
                # the origin starts past our end (purged, or opt_start_seq)
                if st.msgs == 0:
                    store.compact(delivered + 1)
                    self.stream.host.js.touch(store)
                elif not self._skip_to(delivered):
                    return      # a long run: the consumer is asked again after it
            self.sseq = max(delivered, store.state().last_seq)
        self.cname = name
        self.dseq = 0
        self.err = None
        self.fails = 0
        self.last = time.time_ns()
        # the subject we asked for (not the answer's: the far side does
        # not choose what this account subscribes to)
        self.sub = self.server.internal_subscribe(self.account, self.deliver_subject, self._on_msg, imports=True)

    # -- receiving ---------------------------------------------------------------------
    def _on_msg(self, sub, subject, reply, hdr, msg, client):
        if sub is not self.sub or self.stream.closed:
            return
        self.last = time.time_ns()
        if not msg and hdr and hdr.startswith(b"NATS/1.0 100 "):
            self._control(reply, hdr)
            return
        subject, reply = split_ack_reply(subject, reply)
        info = ack_info(reply)
        if info is None or info[0] != self.cname:
            return      # from an earlier consumer of ours
        _, sseq, dseq, dc, ts, pending = info
        if dc > 1:
            return
        if sseq <= self.sseq:
            if dseq == self.dseq + 1:
                self.dseq += 1
            return
        if self.mirror:
            if sseq != self.sseq + 1 and dseq != self.dseq + 1:
                self._restart()
                return
        elif dseq != self.dseq + 1:
            self._restart()
            return
        osseq, odseq = self.sseq, self.dseq
        self.sseq, self.dseq = sseq, dseq
        self.lag = max(pending - 1, 0)
        # the MSG subject is the origin's stored subject
        sm = _Msg(sseq, subject, hdr or b"", msg, ts)
        if self.mirror:
            ok = self._mirror_store(sm)
        else:
            ok = self._copy(sm)
        if not ok:
            # refused for lack of room: ask again from this message
            self.sseq, self.dseq = osseq, odseq
            self._restart()

    def _control(self, reply, hdr):
        h = parse_headers(hdr)
        if reply:       # flow control: tell the consumer where we are
            fc = build_headers([("Nats-Last-Consumer", str(self.dseq)), ("Nats-Last-Stream", str(self.sseq))])
            self.server.publish_internal(self.account, reply, None, fc, b"")
            return
        try:
            last = int(h.get("Nats-Last-Consumer", "0"))
        except ValueError:
            last = 0
        if last > 0 and last != self.dseq:
            self._restart()     # missed a delivery
        elif h.get("Nats-Consumer-Stalled"):
            self.server.publish_internal(self.account, h["Nats-Consumer-Stalled"], None, None, b"")

    def _restart(self):
        self.hub.log.debug("JetStream: retrying %s consumer for '%s > %s' at %d"
                           % (self._kind(), self.hub.jsa.name, self.stream.name, self.sseq + 1))
        self._cancel()
        self._schedule_setup()

    def _mirror_store(self, sm):
        """Store one origin message at its own sequence: the sequences
        between the last stored and it are skipped (deleted)."""
        store = self.stream.store
        st = store.state()
        if sm.seq <= st.last_seq:
            return True
        if sm.seq > st.last_seq + 1:
            if st.msgs == 0:
                store.compact(sm.seq)
            elif not self._skip_to(sm.seq - 1):
                self.sseq = sm.seq - 1      # asked again from this message after the run
                return True
        sm.hdr = _strip_for_mirror(sm.hdr)
        return self._copy(sm)

    def _skip_to(self, seq):
        """Skip the mirror's sequences up to `seq`: at once (True) when
        that is at most PUMP_SCAN of them; else (False) PUMP_SCAN per
        reactor turn with the consumer stopped, then it is asked again
        from the end of the run (a skip is a record in the store: a long
        run must not hold the reactor)."""
        store = self.stream.store
        n = seq - store.state().last_seq
        if n <= PUMP_SCAN:
            for _ in range(n):
                store.skip_msg()
            return True
        self._cancel()
        self.skip_to = seq
        self._skip_turn()
        return False

    def _skip_turn(self):
        store = self.stream.store
        if self.closed or self.stream.closed:
            self.skip_to = 0
            return
        for _ in range(min(PUMP_SCAN, self.skip_to - store.state().last_seq)):
            store.skip_msg()
        self.stream.host.js.touch(store)
        if store.state().last_seq < self.skip_to:
            self.hub.reactor.call_later(0, self._skip_turn)
            return
        self.skip_to = 0
        self._schedule_setup()


def _strip_for_mirror(hdr):
    # nats-server drops these from what a mirror consumer delivers
    if not hdr or (b"Nats-Expected-" not in hdr and b"Nats-Batch-" not in hdr):
        return hdr
    lines = hdr.split(b"\r\n")
    keep = [lines[0]] + [x for x in lines[1:] if x and not x.startswith((b"Nats-Expected-", b"Nats-Batch-"))]
    return b"\r\n".join(keep) + b"\r\n\r\n"

