"""A pull consumer's waiting requests (`$JS.API.CONSUMER.MSG.NEXT`), served
in arrival order, and the status replies nats-server 2.15 sends for them.

A request body is empty (batch 1), a number (the batch) or JSON: batch,
expires (ns), no_wait, max_bytes, idle_heartbeat (ns). A request ends when
its batch is delivered (no reply), when nothing is left and it asked for
no_wait (`404 No Messages`), when its time is up (`408 Request Timeout`
with Nats-Pending-Messages / Nats-Pending-Bytes: what was left of it), when
the next message would not fit its max_bytes (`409 Message Size Exceeds
MaxBytes`), or when the consumer is deleted (`409 Consumer Deleted`).
Requests beyond max_waiting get `409 Exceeded MaxWaiting`. Each request
with an expiry or heartbeat holds one reactor timer.
"""

import json
import time
from collections import deque


def _status(code, text, fields=()):
    return ("NATS/1.0 %d %s\r\n%s\r\n" % (code, text, "".join("%s: %s\r\n" % kv for kv in fields))).encode()


class PullRequest:
    __slots__ = ("reply", "batch", "max_bytes", "bytes_left", "no_wait", "expires", "hb", "expire_timer",
                 "hb_timer", "last_out", "done", "sent", "deadline")

    def __init__(self, reply, batch, max_bytes, no_wait, expires, hb):
        self.reply = reply
        self.expires = expires
        self.deadline = time.monotonic() + expires / 1e9 if expires > 0 else 0
        self.sent = 0
        self.batch = batch
        self.max_bytes = max_bytes
        self.bytes_left = max_bytes
        self.no_wait = no_wait
        self.hb = hb
        self.expire_timer = None
        self.hb_timer = None
        self.last_out = time.monotonic()
        self.done = False


def _duration(ns):
    """Go's time.Duration String() for the 409 texts."""
    if ns % 10 ** 9 == 0:
        s = ns // 10 ** 9
        h, rest = divmod(s, 3600)
        m, sec = divmod(rest, 60)
        out = ""
        if h:
            out += "%dh" % h
        if h or m:
            out += "%dm" % m
        return out + "%ds" % sec
    if ns >= 10 ** 9:
        return ("%.9f" % (ns / 1e9)).rstrip("0") + "s"
    if ns >= 10 ** 6:
        return ("%.6f" % (ns / 1e6)).rstrip("0").rstrip(".") + "ms"
    return "%dns" % ns


class PullRequests:
    def __init__(self, consumer):
        self.c = consumer
        self.waiting = deque()

    def _reply(self, reply, code, text, fields=()):
        self.c.server.publish_internal(self.c.account, reply, None, _status(code, text, fields), b"")

    def request(self, reply, body):
        """A MSG.NEXT request (or the body of +NXT) from `reply`."""
        c = self.c
        cfg = c.config
        c.last_seen = time.monotonic()
        if not reply:
            return
        if c.push:
            self._reply(reply, 409, "Consumer is push based")
            return
        batch, expires, no_wait, max_bytes, hb = 1, 0, False, 0, 0
        body = (body or b"").strip()
        if body.isdigit():
            batch = int(body)
        elif body:
            try:
                req = json.loads(body)
                if not isinstance(req, dict):
                    raise ValueError("not an object")
                batch = int(req.get("batch") or 0)
                expires = int(req.get("expires") or 0)
                no_wait = bool(req.get("no_wait"))
                max_bytes = int(req.get("max_bytes") or 0)
                hb = int(req.get("idle_heartbeat") or 0)
            except (ValueError, TypeError, UnicodeDecodeError):
                self._reply(reply, 400, "Bad Request")
                return
        if batch <= 0:
            batch = 1
        mb = cfg.get("max_batch", 0)
        if mb > 0 and batch > mb:
            self._reply(reply, 409, "Exceeded MaxRequestBatch of %d" % mb)
            return
        me = cfg.get("max_expires", 0)
        if me > 0 and expires > me:
            self._reply(reply, 409, "Exceeded MaxRequestExpires of %s" % _duration(me))
            return
        mx = cfg.get("max_bytes", 0)
        if mx > 0 and max_bytes > mx:
            self._reply(reply, 409, "Exceeded MaxRequestMaxBytes of %d" % mx)
            return
        if hb and (not expires or hb > expires // 2):
            self._reply(reply, 400, "Bad Request - heartbeat value too large")
            return
        if len(self.waiting) >= cfg.get("max_waiting", 512):
            self._reply(reply, 409, "Exceeded MaxWaiting")
            return
        r = PullRequest(reply, batch, max_bytes, no_wait, expires, hb / 1e9)
        self.waiting.append(r)
        reactor = c.reactor
        if expires > 0:
            r.expire_timer = reactor.call_later(expires / 1e9, self._expired, r)
        if r.hb > 0:
            r.hb_timer = reactor.call_later(r.hb, self._heartbeat, r)
        c.kick()

    def first(self):
        """The oldest live request. One whose time is up ends here even if
        its timer has not run yet: a client times out on its own clock, and
        a message sent to it then would wait out ack_wait."""
        w = self.waiting
        while w:
            r = w[0]
            if r.deadline and time.monotonic() >= r.deadline:
                self._expired(r)
                continue
            return r
        return None

    def none_left(self):
        """Nothing to deliver now: the no_wait requests end with 404, the
        others keep waiting. A no_wait request with an expiry that got
        nothing yet waits too (nats-server's one-shot request: it ends at
        its first messages or its expiry)."""
        for r in [r for r in self.waiting if r.no_wait and (r.sent or not r.expires)]:
            self._finish(r)
            self._reply(r.reply, 404, "No Messages")

    def fits(self, r, size):
        if not r.max_bytes or size <= r.bytes_left:
            return True
        self._finish(r)
        self._reply(r.reply, 409, "Message Size Exceeds MaxBytes",
                    (("Nats-Pending-Messages", r.batch), ("Nats-Pending-Bytes", r.bytes_left)))
        return False

    def delivered(self, r, size):
        r.batch -= 1
        r.sent += 1
        r.last_out = time.monotonic()
        if r.max_bytes:
            r.bytes_left -= size
        if r.batch <= 0:
            self._finish(r)

    def drop(self, r):
        self._finish(r)

    def _finish(self, r):
        if r.done:
            return
        r.done = True
        for t in (r.expire_timer, r.hb_timer):
            if t is not None:
                t.cancel()
        try:
            self.waiting.remove(r)
        except ValueError:
            pass

    def _expired(self, r):
        if r.done:
            return
        self._finish(r)
        self._reply(r.reply, 408, "Request Timeout",
                    (("Nats-Pending-Messages", r.batch), ("Nats-Pending-Bytes", r.bytes_left)))

    def _heartbeat(self, r):
        r.hb_timer = None
        if r.done or self.c.closed:
            return
        idle = time.monotonic() - r.last_out
        if idle >= r.hb * 0.99:
            c = self.c
            self._reply(r.reply, 100, "Idle Heartbeat", (("Nats-Last-Consumer", c.dseq - 1),
                                                         ("Nats-Last-Stream", c.sseq - 1)))
            r.last_out = time.monotonic()
            idle = 0
        r.hb_timer = self.c.reactor.call_later(max(r.hb - idle, 0.01), self._heartbeat, r)

    def close(self, deleted):
        for r in list(self.waiting):
            self._finish(r)
            if deleted:
                self._reply(r.reply, 409, "Consumer Deleted")

