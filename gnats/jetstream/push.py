"""How a consumer's messages leave: `Sender.send` delivers to the local
subscribers of a target subject (a pull request's reply, or a push
consumer's deliver subject) with the stream subject on the MSG line, as
nats-server's consumers do; and what only push consumers have: flow control
(`100 FlowControl Request` with a `$JS.FC.<stream>.<consumer>.<n>` reply to
answer), idle heartbeats (`100 Idle Heartbeat` with Nats-Last-Consumer /
Nats-Last-Stream, and Nats-Consumer-Stalled while flow control waits), and
the wait for interest on the deliver subject.

`Sender` is a base of Consumer (consumer.py); it uses the consumer's
config, account, server, reactor, sequences and timers.
"""

import time

from ..delivery import deliver, match_publish
from ..jsremote import encode, has_remote, split
from .headers import build_headers

FC_WINDOW = 2 << 20         # first flow-control window (bytes); doubles per answer
FC_WINDOW_MAX = 32 << 20
# A push consumer with messages and nobody on its deliver subject checks for
# interest again after 2 ms, doubling up to 250 ms: clients (nats-py's
# ordered consumers, KV watchers) subscribe right after the create reply.
INTEREST_POLL_FIRST = 0.002
INTEREST_POLL = 0.25


class Sender:
    # -- sending -----------------------------------------------------------------
    def send(self, target, subject, reply, hdr, msg):
        """Deliver to the subscribers of `target` with `subject` on the
        MSG line; the number of receivers (0: no interest)."""
        tgt = target.encode()
        result = match_publish(self.account.sublist, tgt)
        if not result.plain and not result.queues:
            return 0
        if hdr:
            payload = hdr + msg + b"\r\n"
            hlen = len(hdr)
        else:
            payload = msg + b"\r\n"
            hlen = -1
        src = self.server.internals.client(self.account)
        subj = subject.encode()
        rep = reply.encode() if reply else b""
        if subj == tgt or not has_remote(result):
            # (flow control and heartbeats go on the deliver subject itself)
            return deliver(self.server, src, subj, rep, hlen, payload, result, False)
        # a peer matches the message's subject against its interest: to
        # routes and leaves it goes on the target, the stream subject at the
        # end of the ack reply (jsremote.py)
        here, remote = split(result)
        n = 0
        if here.plain or here.queues:
            n = deliver(self.server, src, subj, rep, hlen, payload, here, False)
        return n + deliver(self.server, src, tgt, encode(rep, subj), hlen, payload, remote, False)

    def has_interest(self):
        r = match_publish(self.account.sublist, self.config["deliver_subject"].encode())
        return bool(r.plain or r.queues)

    # -- flow control and heartbeats (push) ------------------------------------------
    def _flow(self, size):
        self.fc_bytes += size
        if self.fc_reply is None and self.fc_bytes >= self.fc_window // 2:
            self.fc_count += 1
            self.fc_reply = "$JS.FC.%s.%s.%d" % (self.stream.name, self.name, self.fc_count)
            self.fc_at = self.fc_bytes
            self.send(self.config["deliver_subject"], self.config["deliver_subject"], self.fc_reply,
                      b"NATS/1.0 100 FlowControl Request\r\n\r\n", b"")

    def flow_answer(self, subject):
        if subject != self.fc_reply:
            return
        self.fc_reply = None
        self.fc_bytes = max(0, self.fc_bytes - self.fc_at)
        self.fc_window = min(self.fc_window * 2, FC_WINDOW_MAX)
        self.kick()

    def _heartbeat(self):
        self.hb_timer = None
        if self.closed:
            return
        hb = self.config["idle_heartbeat"] / 1e9
        idle = time.monotonic() - self.last_out
        if idle >= hb * 0.99:
            fields = [("Nats-Last-Consumer", str(self.dseq - 1)), ("Nats-Last-Stream", str(self.sseq - 1))]
            if self.fc_reply is not None:
                fields.append(("Nats-Consumer-Stalled", self.fc_reply))
            ds = self.config["deliver_subject"]
            hdr = build_headers(fields, b"NATS/1.0 100 Idle Heartbeat\r\n\r\n")
            self.send(ds, ds, None, hdr, b"")
            self.last_out = time.monotonic()
            idle = 0
        self.hb_timer = self.reactor.call_later(max(hb - idle, 0.01), self._heartbeat)

    def _poll_interest(self):
        if self.poll_timer is None and not self.closed:
            self.poll_timer = self.reactor.call_later(self.poll_delay, self._poll_due)
            self.poll_delay = min(self.poll_delay * 2, INTEREST_POLL)

    def _poll_due(self):
        self.poll_timer = None
        if self.has_interest():
            self.last_seen = time.monotonic()
            self.poll_delay = INTEREST_POLL_FIRST
            self.kick()
        else:
            self._poll_interest()
