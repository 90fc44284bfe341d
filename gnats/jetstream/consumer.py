"""One JetStream consumer: which stream messages it delivers next, to whom,
and what is still waiting for an acknowledgement (nats-server 2.15's
consumer.go, for one server).

Theory of operation
-------------------
`sseq` is the next stream sequence to look at, `dseq` the next delivery
(consumer) sequence; every delivery, first or repeated, takes a new dseq.
`pending` maps the stream sequence of each unacknowledged delivery to
[dseq, delivered ns, deadline (monotonic s)], in stream order (so its first
key is the ack floor's successor); `rdc` counts deliveries of messages
delivered more than once; `rdq` lists the messages due for redelivery,
served before new ones. Deadlines sit in one heap per consumer with one
reactor timer for its top: nothing scans all consumers or all pending
messages on a turn.

`kick()` runs the delivery loop: while there is a target (a waiting pull
request, or the deliver subject with interest and flow-control credit)
and a message (a redelivery, the last-per-subject list, or the next
stored message matching the filters under max_ack_pending), deliver it
with the ack reply `$JS.ACK.<stream>.<consumer>.<delivery count>.<stream
seq>.<consumer seq>.<timestamp ns>.<pending>`. Pull requests live in
pull.py. Messages go out with the stream subject on the MSG line, to the
subscriptions of the target subject, as nats-server's do.

Durable consumers write their state (delivered, ack floor, pending,
redelivery counts) through the stream store's write_consumer_state within
STATE_DELAY of a change, and before the reply to an ack that asks for one
(through the JetStream flush hook), so acks survive a restart; a restart
redelivers what was pending once its ack wait is over.
"""

import heapq
import json
import time
from collections import deque

from ..sublist import subject_matches
from .consumer_config import config_json, filters_of, parse_time
from .headers import build_headers, rfc3339
from .pull import PullRequests
from .push import INTEREST_POLL_FIRST, FC_WINDOW, Sender

ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER."
# A durable consumer's state is written at most this long after a change
# (a write and rename per reactor turn cost about half the CPU of a pull
# drain), and at once for an ack that asks for a reply (ack_sync).
STATE_DELAY = 0.1


class Consumer(Sender):
    def __init__(self, jsa, stream, name, cfg, created_ns):
        self.jsa = jsa
        self.js = jsa.js
        self.server = jsa.js.server
        self.reactor = self.server.reactor
        self.account = jsa.account
        self.stream = stream
        self.name = name
        self.created = created_ns
        self.closed = False
        self.dirty = False
        self.sseq = self.dseq = 1
        self.adflr = self.asflr = 0
        self.pending = {}           # sseq -> [dseq, delivered ns, deadline]
        self.rdc = {}               # sseq -> deliveries, for those delivered more than once
        self.rdq = deque()
        self.rdqset = set()
        self.lss = deque()          # last-per-subject sequences still to deliver
        self.heap = []              # (deadline, sseq)
        self.ack_timer = None
        self.hb_timer = None
        self.idle_timer = None
        self.poll_timer = None
        self.state_timer = None
        self.poll_delay = INTEREST_POLL_FIRST
        self.replay_timer = None
        self.rate_timer = None      # rate_limit_bps: the loop waits for tokens
        self.last_delivered = 0     # ns, for delivered.last_active
        self.last_acked = 0
        self.last_out = time.monotonic()    # last message to the deliver subject (heartbeats)
        self.last_seen = time.monotonic()   # last interest or pull request (inactive_threshold)
        self.replay_prev = None     # (msg ts ns, monotonic) of the previous replay-original delivery
        self.fc_window = FC_WINDOW
        self.fc_bytes = 0           # delivered bytes not yet confirmed by a flow-control answer
        self.fc_reply = None        # outstanding flow-control request subject
        self.fc_at = 0
        self.fc_count = 0
        self.paused_until = 0       # ns
        self._running = False
        self._again = False
        self.sub_next = None
        self.on_inactive = None     # the registry's delete, for inactive_threshold
        self.pulls = PullRequests(self)
        self.apply_config(cfg)

    # -- configuration -----------------------------------------------------------
    def apply_config(self, cfg):
        self.config = cfg
        self.filters = filters_of(cfg)
        self.push = bool(cfg.get("deliver_subject"))
        self.ack = cfg["ack_policy"]
        self.ack_wait = (cfg.get("ack_wait") or 30 * 10 ** 9) / 1e9
        self.backoff = [b / 1e9 for b in cfg.get("backoff") or ()]
        self.max_deliver = cfg.get("max_deliver", -1)
        self.max_ack_pending = cfg.get("max_ack_pending", 0) if self.ack != "none" else 0
        self.headers_only = bool(cfg.get("headers_only"))
        self.durable = bool(cfg.get("durable_name"))
        # rate_limit_bps (push only): a token bucket of bytes, as nats-server's
        # rate.Limiter: bps/8 bytes a second, a burst of one largest message
        # (the stream's max_msg_size, else max_payload)
        self.rate = (cfg.get("rate_limit_bps") or 0) / 8.0
        biggest = self.stream.config.get("max_msg_size", -1)
        self.rate_burst = float(biggest if biggest and biggest > 0 else self.server.opts.max_payload)
        self.rate_tokens = self.rate_burst
        self.rate_at = time.monotonic()

    def start_position(self):
        """Set sseq (and the last-per-subject list) from the deliver policy."""
        cfg = self.config
        store = self.stream.store
        st = store.state()
        dp = cfg["deliver_policy"]
        if dp == "all":
            self.sseq = max(st.first_seq, 1)
        elif dp == "new":
            self.sseq = st.last_seq + 1
        elif dp == "last":
            last = 0
            for f in self.filters or [None]:
                sm = store.load_last(f)
                if sm is not None and sm.seq > last:
                    last = sm.seq
            self.sseq = last or st.last_seq + 1
        elif dp == "by_start_sequence":
            self.sseq = max(cfg["opt_start_seq"], 1)
        elif dp == "by_start_time":
            t = parse_time(cfg["opt_start_time"])
            seq = max(st.first_seq, 1)
            while seq <= st.last_seq:
                sm = store.load_msg(seq)
                if sm is not None and sm.ts >= t:
                    break
                seq += 1
            self.sseq = seq
        elif dp == "last_per_subject":
            seqs = set()
            for f in self.filters:
                for subj in store.subjects_state(f):
                    sm = store.load_last(subj)
                    if sm is not None:
                        seqs.add(sm.seq)
            self.lss = deque(sorted(seqs))
            self.sseq = self.lss[0] if self.lss else st.last_seq + 1
        self.asflr = self.sseq - 1

    # -- counts ------------------------------------------------------------------
    def num_pending(self):
        store = self.stream.store
        start = self.sseq
        if self.lss:
            return len(self.lss) + self._count_from(self.lss[-1] + 1)
        if not self.filters:
            st = store.state()
            if start > st.last_seq:
                return 0
            if not st.num_deleted:      # contiguous: no scan
                return st.last_seq - max(start, st.first_seq) + 1
        return self._count_from(start)

    def _count_from(self, start):
        store = self.stream.store
        if not self.filters:
            return store.num_pending(start)
        return sum(store.num_pending(start, f) for f in self.filters)

    def info(self, stored=False):
        d = {"stream_name": self.stream.name, "name": self.name, "created": rfc3339(self.created),
             "config": self.config if stored else config_json(self.config, self.js.version)}
        dl = {"consumer_seq": self.dseq - 1, "stream_seq": self.sseq - 1}
        if self.last_delivered:
            dl["last_active"] = rfc3339(self.last_delivered)
        af = {"consumer_seq": self.adflr, "stream_seq": self.asflr}
        if self.last_acked:
            af["last_active"] = rfc3339(self.last_acked)
        d.update({"delivered": dl, "ack_floor": af, "num_ack_pending": len(self.pending),
                  "num_redelivered": len(self.rdc), "num_waiting": len(self.pulls.waiting),
                  "num_pending": self.num_pending()})
        if self.push and self.has_interest():
            d["push_bound"] = True
        if self.paused_until:
            d["paused"] = True
            d["pause_remaining"] = max(0, self.paused_until - time.time_ns())
        d["ts"] = rfc3339(time.time_ns())
        return d

    # -- the delivery loop -------------------------------------------------------
    def kick(self):
        if self.closed:
            return
        if self._running:
            self._again = True
            return
        self._running = True
        try:
            self._again = True
            while self._again and not self.closed:
                self._again = False
                self._deliver_loop()
        finally:
            self._running = False

    def _deliver_loop(self):
        if self.paused_until:
            if time.time_ns() < self.paused_until:
                return
            self.paused_until = 0
        if self.replay_timer is not None:
            return
        while not self.closed:
            if self.push:
                if self.fc_reply is not None and self.fc_bytes >= self.fc_window:
                    return      # stalled until the client answers flow control
                if self.rate_timer is not None:
                    return      # rate_limit_bps: waiting for tokens
                target = self.config["deliver_subject"]
                req = None
            else:
                req = self.pulls.first()
                if req is None:
                    return
                target = req.reply
            cand = self._next()
            if cand is None:
                if req is not None:
                    self.pulls.none_left()
                return
            sm, dc, redelivery = cand
            if self.config.get("replay_policy") == "original" and not redelivery and self._replay_wait(sm):
                self._unpick(sm, redelivery)
                return
            hdr, msg = sm.hdr or b"", sm.msg
            if self.headers_only:
                hdr, msg = build_headers([("Nats-Msg-Size", str(len(msg)))], hdr), b""
            dseq = self.dseq
            pending = self._pending_after(sm, redelivery)
            reply = "$JS.ACK.%s.%s.%d.%d.%d.%d.%d" % (self.stream.name, self.name, dc, sm.seq, dseq, sm.ts, pending)
            size = len(sm.subject) + len(reply) + len(hdr) + len(msg)
            if req is not None and not self.pulls.fits(req, size):
                self._unpick(sm, redelivery)
                continue
            if self.rate and req is None and not self._rate_take(size):
                self._unpick(sm, redelivery)
                return
            n = self.send(target, sm.subject, reply, hdr, msg)
            if not n:
                self._unpick(sm, redelivery)
                if req is not None:
                    self.pulls.drop(req)    # nobody listens for it any more
                    continue
                self._poll_interest()
                return
            self._delivered(sm, dc, dseq, redelivery)
            if req is not None:
                self.pulls.delivered(req, size)
            else:
                self.last_out = time.monotonic()
                if self.config.get("flow_control"):
                    self._flow(size)

    def _rate_take(self, size):
        """Take `size` bytes from the rate_limit_bps bucket, or schedule the
        delivery loop for when they will be there."""
        now = time.monotonic()
        self.rate_tokens = min(self.rate_burst, self.rate_tokens + (now - self.rate_at) * self.rate)
        self.rate_at = now
        need = min(float(size), self.rate_burst)
        if self.rate_tokens >= need:
            self.rate_tokens -= need
            return True
        self.rate_timer = self.reactor.call_later((need - self.rate_tokens) / self.rate, self._rate_due)
        return False

    def _rate_due(self):
        self.rate_timer = None
        self.kick()

    def _next(self):
        """(StoredMsg, delivery count, is redelivery) or None."""
        store = self.stream.store
        while self.rdq:
            seq = self.rdq.popleft()
            self.rdqset.discard(seq)
            if seq not in self.pending:
                continue
            sm = store.load_msg(seq)
            if sm is None:
                self._forget(seq)
                continue
            return sm, self.rdc.get(seq, 1) + 1, True
        if self.max_ack_pending > 0 and len(self.pending) >= self.max_ack_pending:
            return None
        while self.lss:
            seq = self.lss[0]
            sm = store.load_msg(seq)
            if sm is not None:
                return sm, 1, False
            self.lss.popleft()
        sm = self._load_next(self.sseq)
        return (sm, 1, False) if sm is not None else None

    def _load_next(self, seq):
        store = self.stream.store
        if not self.filters:
            return store.load_next(None, seq)
        if len(self.filters) == 1:
            return store.load_next(self.filters[0], seq)
        best = None
        for f in self.filters:
            sm = store.load_next(f, seq)
            if sm is not None and (best is None or sm.seq < best.seq):
                best = sm
        return best

    def _pending_after(self, sm, redelivery):
        """num_pending as it will be once sm is delivered (the ack reply's last token)."""
        if redelivery:
            return self.num_pending()
        lss = self.lss
        if lss:
            return len(lss) - (lss[0] == sm.seq) + self._count_from(lss[-1] + 1)
        saved = self.sseq
        self.sseq = sm.seq + 1
        n = self.num_pending()
        self.sseq = saved
        return n

    def _advance(self, sm):
        lss = self.lss
        if lss and lss[0] == sm.seq:
            lss.popleft()
        self.sseq = lss[0] if lss else sm.seq + 1

    def _unpick(self, sm, redelivery):
        if redelivery:
            self.rdq.appendleft(sm.seq)
            self.rdqset.add(sm.seq)

    def _delivered(self, sm, dc, dseq, redelivery):
        now = time.time_ns()
        self.dseq = dseq + 1
        if not redelivery:
            self._advance(sm)
        self.last_delivered = now
        if self.ack == "none":
            self.adflr, self.asflr = self.dseq - 1, self.sseq - 1
            if self.stream.config["retention"] != "limits":
                self._retire(sm.seq)
        else:
            deadline = time.monotonic() + self._wait_for(dc)
            p = self.pending.get(sm.seq)
            if p is None:
                self.pending[sm.seq] = [dseq, now, deadline]
            else:
                p[0], p[1], p[2] = dseq, now, deadline
            if dc > 1:
                self.rdc[sm.seq] = dc
            self._arm(deadline, sm.seq)
        self._changed()

    def _wait_for(self, dc):
        if self.backoff:
            return self.backoff[min(dc - 1, len(self.backoff) - 1)]
        return self.ack_wait

    def _replay_wait(self, sm):
        prev = self.replay_prev
        now = time.monotonic()
        if prev is not None:
            delay = (sm.ts - prev[0]) / 1e9 - (now - prev[1])
            if delay > 0.001:
                self.replay_timer = self.reactor.call_later(delay, self._replay_due, sm.ts)
                return True
        self.replay_prev = (sm.ts, now)
        return False

    def _replay_due(self, ts):
        self.replay_timer = None
        self.replay_prev = (ts, time.monotonic())
        self.kick()

    def _check_idle(self):
        """inactive_threshold: remove the consumer once nobody has wanted
        its messages for that long."""
        self.idle_timer = None
        if self.closed:
            return
        thr = self.config["inactive_threshold"] / 1e9
        now = time.monotonic()
        if (self.push and self.has_interest()) or (not self.push and self.pulls.waiting):
            self.last_seen = now
        if now - self.last_seen >= thr:
            self.on_inactive(self)
            return
        self.idle_timer = self.reactor.call_later(max(thr - (now - self.last_seen), 0.01), self._check_idle)


    # -- acknowledgements -----------------------------------------------------------
    def process_ack(self, sseq, dseq, body, reply):
        """One message on our $JS.ACK subject; `reply` is the pull reply for +NXT."""
        if body in (b"", b"+ACK") or body.startswith(b"+ACK"):
            self.ack_msg(sseq, dseq)
        elif body.startswith(b"-NAK"):
            self._nak(sseq, body[4:].strip())
        elif body.startswith(b"+WPI"):
            p = self.pending.get(sseq)
            if p is not None:
                p[2] = time.monotonic() + self._wait_for(self.rdc.get(sseq, 1))
                self._arm(p[2], sseq)
        elif body.startswith(b"+NXT"):
            self.ack_msg(sseq, dseq)
            if reply:
                self.pulls.request(reply, body[4:].strip())
        elif body.startswith(b"+TERM"):
            if sseq in self.pending:
                self.ack_msg(sseq, dseq, retire=False)
                self._advise("MSG_TERMINATED", sseq, {"deliveries": self.rdc.get(sseq, 1)})
        self.kick()

    def ack_msg(self, sseq, dseq, retire=True):
        if self.ack == "none":
            return
        if self.ack == "all":
            done = [s for s in self.pending if s <= sseq]
        else:
            done = [sseq] if sseq in self.pending else []
        if not done:
            return
        for s in done:
            del self.pending[s]
            self.rdc.pop(s, None)
        self.last_acked = time.time_ns()
        self._update_floor()
        if retire and self.stream.config["retention"] != "limits":
            for s in done:
                self._retire(s)
        self._changed()

    def _update_floor(self):
        if not self.pending:
            self.adflr, self.asflr = self.dseq - 1, self.sseq - 1
            return
        s = next(iter(self.pending))
        self.adflr, self.asflr = self.pending[s][0] - 1, s - 1

    def _nak(self, sseq, arg):
        p = self.pending.get(sseq)
        if p is None:
            return
        delay = 0
        if arg:
            try:
                delay = int(json.loads(arg).get("delay", 0)) / 1e9
            except (ValueError, AttributeError, TypeError):
                delay = 0
        if delay > 0:
            p[2] = time.monotonic() + delay
            self._arm(p[2], sseq)
        elif sseq not in self.rdqset:
            self.rdq.append(sseq)
            self.rdqset.add(sseq)

    def _forget(self, sseq):
        """A pending message left the stream: nothing to redeliver."""
        self.pending.pop(sseq, None)
        self.rdc.pop(sseq, None)

    def _arm(self, deadline, sseq):
        heapq.heappush(self.heap, (deadline, sseq))
        top = self.heap[0][0]
        t = self.ack_timer
        if t is None or t.when > top + 0.0005:
            if t is not None:
                t.cancel()
            self.ack_timer = self.reactor.call_later(max(top - time.monotonic(), 0), self._ack_due)

    def _ack_due(self):
        self.ack_timer = None
        if self.closed:
            return
        now = time.monotonic()
        heap = self.heap
        while heap and heap[0][0] <= now:
            deadline, seq = heapq.heappop(heap)
            p = self.pending.get(seq)
            if p is None or p[2] != deadline or seq in self.rdqset:
                continue
            dc = self.rdc.get(seq, 1)
            if 0 < self.max_deliver <= dc:
                # nats-server drops it from pending (the ack floor stays) and advises
                del self.pending[seq]
                self._advise("MAX_DELIVERIES", seq, {"deliveries": dc})
                self._changed()
                continue
            self.rdq.append(seq)
            self.rdqset.add(seq)
        if heap:
            self.ack_timer = self.reactor.call_later(max(heap[0][0] - now, 0.001), self._ack_due)
        self.kick()

    def _advise(self, kind, sseq, extra):
        """$JS.EVENT.ADVISORY.CONSUMER.<MAX_DELIVERIES|MSG_TERMINATED>.<stream>.<consumer>"""
        kinds = {"MAX_DELIVERIES": "max_deliver", "MSG_TERMINATED": "terminated"}
        body = {"type": "io.nats.jetstream.advisory.v1." + kinds[kind], "stream": self.stream.name,
                "consumer": self.name, "stream_seq": sseq}
        body.update(extra)
        body["timestamp"] = rfc3339(time.time_ns())
        subject = "%s%s.%s.%s" % (ADVISORY, kind, self.stream.name, self.name)
        self.server.publish_internal(self.account, subject, None, None, json.dumps(body).encode())

    # -- retention ---------------------------------------------------------------
    def acked(self, sseq):
        """Is this consumer done with sseq (interest retention)?"""
        if sseq >= self.sseq or sseq in self.pending:
            return False
        return not self.lss or sseq not in self.lss

    def wants(self, subject):
        return not self.filters or any(subject_matches(f, subject) for f in self.filters)

    def _retire(self, sseq):
        stream = self.stream
        if stream.config["retention"] == "interest":
            sm = stream.store.load_msg(sseq)
            if sm is None:
                return
            for c in stream.consumers.values():
                if c is not self and c.wants(sm.subject) and not c.acked(sseq):
                    return
        if stream.store.remove_msg(sseq):
            self.js.touch(stream.store)

    # -- the stream's calls ------------------------------------------------------
    def on_stored(self, seq, subject):
        if self.push or self.pulls.waiting:
            self.kick()

    # -- state persistence (durables) -----------------------------------------------
    def _changed(self):
        if self.durable:
            self.dirty = True
            if self.state_timer is None:
                self.state_timer = self.reactor.call_later(STATE_DELAY, self._state_due)

    def _state_due(self):
        self.state_timer = None
        self.flush()

    def sync_state(self):
        """Write the state before this turn's replies leave (ack_sync)."""
        if self.dirty:
            self.js.touch(self)

    def state(self):
        return {"delivered": [self.dseq - 1, self.sseq - 1], "ack_floor": [self.adflr, self.asflr],
                "pending": [[s, p[0], p[1]] for s, p in self.pending.items()],
                "redelivered": [[s, n] for s, n in self.rdc.items()],
                "last": [self.last_delivered, self.last_acked]}

    def restore(self, st):
        """Bring back a written state (pending messages keep their delivery time)."""
        self.dseq, self.sseq = st["delivered"][0] + 1, st["delivered"][1] + 1
        self.adflr, self.asflr = st["ack_floor"]
        self.lss = deque()
        self.rdc = dict((s, n) for s, n in st["redelivered"])
        # redelivered once their ack wait, counted from the delivery, is over (as nats-server)
        mono, wall = time.monotonic(), time.time_ns()
        for s, d, ts in st["pending"]:
            deadline = mono + max(0.0, self._wait_for(self.rdc.get(s, 1)) - (wall - ts) / 1e9)
            self.pending[s] = [d, ts, deadline]
            self.heap.append((deadline, s))
        heapq.heapify(self.heap)
        self.last_delivered, self.last_acked = st.get("last", [0, 0])

    def flush(self):
        """The JetStream flush hook (once per reactor turn after a change)."""
        if not self.dirty or self.closed:
            return
        self.dirty = False
        self.stream.store.write_consumer_state(self.name, json.dumps(self.state()).encode())

    # -- life cycle ------------------------------------------------------------------
    def start(self):
        cfg = self.config
        if self.push and cfg.get("idle_heartbeat"):
            self.hb_timer = self.reactor.call_later(cfg["idle_heartbeat"] / 1e9, self._heartbeat)
        if cfg.get("inactive_threshold"):
            self.idle_timer = self.reactor.call_later(cfg["inactive_threshold"] / 1e9, self._check_idle)
        if self.heap:
            self.ack_timer = self.reactor.call_later(max(self.heap[0][0] - time.monotonic(), 0), self._ack_due)
        if self.push:
            self.reactor.call_later(0, self.kick)

    def stop(self, deleted=True):
        self.closed = True
        for t in (self.ack_timer, self.hb_timer, self.idle_timer, self.poll_timer, self.replay_timer,
                  self.state_timer, self.rate_timer):
            if t is not None:
                t.cancel()
        self.ack_timer = self.hb_timer = self.idle_timer = self.poll_timer = self.replay_timer = None
        self.state_timer = self.rate_timer = None
        self.pulls.close(deleted)
        self.js.untouch(self)
