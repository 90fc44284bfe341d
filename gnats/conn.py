"""A nonblocking socket with an input reassembly buffer and an output buffer:
what clients and routes share.

Reads are large (growing up to MAX_READ) and handed to `process(data)`,
which subclasses implement and which returns the unconsumed tail. Output is
appended to `wbuf` (a bytearray) by anyone and flushed once per reactor turn:
try `send` at once, and only when the kernel would block register for write
and keep the rest. Pending output over `max_pending`, or no write progress
for `write_deadline` seconds, makes a slow consumer: it is dropped so it
never slows the server or other connections.

Lifecycle
---------
Every attribute `Connection` reads is created in `Connection.__init__`;
subclasses add only their own. The lifecycle is these flags, all plain
attributes (one load each on the hot path) except `paused`, a property
because it changes what the socket is registered for. `connected` and
`authed` belong to Client (a route's counterpart is `ready`), the rest to
every connection:

  flag                 set by                          means
  tls_waiting          Client.wait_tls_hello           INFO sent in plain text; the
                                                       client's first byte must start TLS
  tls_handshaking      start_tls .. _tls_step          handshake running; no input is
                                                       parsed, output waits in wbuf
  connected            Client.process_connect          a CONNECT was seen (clients)
  authed               Client (ClientAuth), auth_done  may send anything but CONNECT/PING
                                                       (routes: Route.ready)
  paused               Server/Route auth checks        a bcrypt check runs: socket out of
                                                       the read set, input waits in pend
  deferred             defer_input .. resume_input     this read's time slice ran out
  stalled              stall_on .. _stall_release      a receiver it fed is over the
                                                       stall threshold: socket out of the
                                                       read set, input waits in pend
  write_blocked        flush .. on_writable            the kernel took not all of wbuf
  closing_after_flush  close_after_flush               a reason: close once wbuf drained
  closed               close_conn                      final; every other flag is moot

Legal combinations: at most one of tls_waiting / tls_handshaking, and
neither with connected (TLS comes before the CONNECT is read). `paused` only
while a CONNECT's credentials are checked (not authed yet, or a client's
second CONNECT). `deferred` and `paused` may overlap (the deferred turn
then finds `paused` and leaves the input in pend); so may `stalled` with
either (only clients stall, see "Producer back-pressure" below). `write_blocked` and
`closing_after_flush` are independent of the rest; `closing_after_flush`
implies write_blocked until the close. Routes add their cluster states in
route.py (ready, info_received, registered, retired).

The parse state the loop keeps between reads is one `inbound.InboundState`
(`inb`), of the class the kind names in `inbound_state`.

Producer back-pressure
----------------------
nats-server's rule (server/client.go, 2.15): a receiver with more than
three quarters of max_pending queued is a stall gate; a *client* that
publishes to it waits until the receiver drains below that (or wrote all
it had), for at most 2 ms (5 ms once the receiver holds max_pending), and
at most 10 ms per 64 KiB read of its input, so fast producers slow to the
pace of their consumers and only consumers that truly stop reading reach
max_pending or write_deadline and are cut. Routes are never stalled. One
difference, for receivers that drain slowly but steadily (STALL_PROGRESS):
their stalls go on up to STALL_PACED without using the budget.
With one thread nobody can wait in place: the producer stops parsing
(`stall_on`; the rest of its input waits in pend, its socket leaves the
read set, the reactor serves everyone else) and goes on when the receiver's
flush gets it below the gate or a timer fires. The budget is a bucket of
stall time credited with the input parsed, 10 ms per 64 KiB (STALL_INPUT),
never more than 10 ms: a producer whose receiver never drains is slowed to
about 6 MB/s, as nats-server's, never stopped. The parse loop checks the
receivers it fed only in `guard` mode (inbound.py), per run of identical
lines and at most every `stall_window` bytes of a run.
"""

import socket
import ssl
import time

from . import parser as P
from .inbound import InboundState, process_input
from .reactor import EVENT_READ, EVENT_WRITE
from .tls import describe

MIN_READ = 32 * 1024
MAX_READ = 1024 * 1024
TLS_RECORD = 16 * 1024      # the most plaintext one TLS record carries
# Producer back-pressure (see the module docstring): nats-server's
# stallClientMinDuration, stallClientMaxDuration, stallTotalAllowed, and
# its largest client read, over which that total is allowed.
STALL_MIN = 0.002
STALL_MAX = 0.005
STALL_TOTAL = 0.010
STALL_INPUT = 64 * 1024
STALL_CREDIT = STALL_TOTAL / STALL_INPUT    # stall seconds earned per input byte
# Where this server is more patient than nats-server 2.15, whose 10 ms per
# read cut a subscriber draining 2 MB/s at a 256 KiB max_pending (the
# tests' scenario, checked against /opt/ns 2.15.1): a stall whose receiver
# wrote something in the last STALL_PROGRESS seconds is slow, not stuck,
# and goes on waiting for it to drain, up to STALL_PACED (nats-server 2.9's
# stallClientMaxDuration) per stall, without using the budget. The kernel
# reports a socket writable only once about half its send buffer (up to
# 4 MB on Linux) is free, so a slow reader shows progress in bursts about a
# second apart at 2 MB/s.
STALL_PROGRESS = 2.0
STALL_PACED = 1.0
# Seconds without input after which a connection's parse caches are
# dropped. Rebuilding an entry costs microseconds; holding up to 4 MiB
# (inbound.PCACHE_BUDGET + SCACHE_BUDGET) per idle connection costs memory
# for as long as it idles.
CACHE_IDLE = 2.0

_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class Connection:
    kind = "conn"
    can_stall = False           # only clients are stalled as producers
    inbound_state = InboundState
    parser_name = "Client"      # for "<name> parser ERROR" log lines

    def __init__(self, server, sock, addr, sublist):
        """`sublist`: the subject index this connection's input resolves in."""
        self.server = server
        self.reactor = server.reactor
        self.log = server.log
        self.sock = sock
        self.ip = addr[0] if addr else ""
        self.port = addr[1] if addr else 0
        self.wbuf = bytearray()
        self.stage = []             # output the parse loop staged for wbuf (inbound._unstage)
        self.pend = []              # input chunks not yet parsed
        self.pend_len = 0
        self.inb = self.inbound_state(sublist)
        self.cache_timer = None     # drops inb's caches once the connection idles
        self.rsize = MIN_READ
        self.last_write_progress = 0.0
        self.start = time.time()
        self.last_activity = self.start
        self.in_msgs = self.in_bytes = self.out_msgs = self.out_bytes = 0
        self.pings_out = 0
        self.ping_sent_at = 0.0
        self.tls_version = ""
        self.tls_cipher = ""
        self.timers = []
        # lifecycle (see the module docstring)
        self.tls_waiting = False
        self.tls_handshaking = False
        self._paused = False
        self._events = EVENT_READ   # what the socket is registered for
        self.deferred = False
        self.stalled = False
        self.write_blocked = False
        # back-pressure: as a producer, the stall budget (s), the receiver
        # waited on and the timeout; as a receiver, the producers waiting
        # and how many stalls it caused (/connz `stalls`, as nats-server)
        self.stall_left = STALL_TOTAL
        self.stalled_on = None
        self.stall_timer = None
        self.stall_started = 0.0
        self.stalled_producers = None
        self.stalls = 0
        self.closing_after_flush = ""
        self.closed = False

    # -- identification for logs ----------------------------------------
    def tag(self):
        return "%s:%d - %s" % (self.ip, self.port, self.idtag())

    def idtag(self):
        return "conn"

    # -- reading ---------------------------------------------------------
    def on_readable(self):
        if self.tls_handshaking:
            self._tls_step()
            return
        if self.deferred:
            return          # input backlog: resume_input() goes on with it
        sock = self.sock
        try:
            data = sock.recv(self.rsize)
        except _WOULD_BLOCK:
            return
        except (OSError, ssl.SSLError) as e:
            self.close_conn(self.read_error_reason(e))
            return
        if not data:
            self.close_conn(self.eof_reason())
            return
        if len(data) == self.rsize and self.rsize < MAX_READ:
            self.rsize <<= 1
        # TLS may hold already-decrypted bytes the selector cannot see.
        peer_closed = False
        if self.tls_version:
            more = [data]
            try:
                while sock.pending():
                    d = sock.recv(MAX_READ)
                    if not d:
                        peer_closed = True      # close_notify after the data
                        break
                    more.append(d)
                else:
                    if sum(map(len, more)) < TLS_RECORD:
                        # A short write may be a client's last: NATS clients
                        # send close_notify right behind it. One more record
                        # at most (reading on to EAGAIN took a publisher's
                        # input faster than its subscribers could drain).
                        d = sock.recv(self.rsize)
                        if d:
                            more.append(d)
                        else:
                            peer_closed = True
            except _WOULD_BLOCK:
                pass
            except (OSError, ssl.SSLError):
                pass
            if len(more) > 1:
                data = b"".join(more)
        self.feed(data)
        if peer_closed and not self.closed:
            # The peer is closing: its last input is processed (a PUB still
            # reaches subscribers), but what it would get back is dropped.
            # Data sent after its close_notify fails its TLS shutdown
            # (OpenSSL: "application data after close notify").
            self.wbuf.clear()
            self.close_conn(self.eof_reason(), flush=False)

    def feed(self, data):
        """Reassemble split input and hand complete data to process()."""
        if self.pend:
            self.pend.append(data)
            self.pend_len += len(data)
            if self.pend_len < self.inb.need:
                return
            data = b"".join(self.pend)
            self.pend = []
            self.pend_len = 0
        rest = self.process(data)
        if rest and not self.closed:
            self.pend = [rest]
            self.pend_len = len(rest)

    # -- sharing the reactor ---------------------------------------------
    def defer_input(self):
        """This read used up its time slice (inbound.INPUT_SLICE): stop
        reading from the socket, so the backlog stays bounded, and go on in a
        later reactor turn, after the other ready connections had theirs."""
        if not self.deferred:
            self.deferred = True
            # Not kept in self.timers (whose fired entries nothing prunes):
            # it fires in the next turn and does nothing on a closed
            # connection. Kept, every deferral left a Timer on the
            # connection for its lifetime (a websocket client defers once
            # per MiB of compressed input inflated: 150 after 300 MiB).
            self.reactor.call_later(0, self.resume_input)

    def resume_input(self):
        self.deferred = False
        if not self.closed and self.has_input():
            self.feed(b"")

    def has_input(self):
        """Is input read but not yet parsed (for feed(b""))? A websocket
        client may also hold raw frames (ws_client.py)."""
        return bool(self.pend)

    # -- producer back-pressure (see the module docstring) ---------------
    def stall_check(self, receivers, parsed):
        """The parse loop's check in guard mode (inbound.py), after it
        delivered to `receivers`: credit the stall budget with the `parsed`
        input bytes, and stall if a receiver is over the threshold. True
        when this producer is now stalled and must stop parsing."""
        left = self.stall_left + parsed * STALL_CREDIT
        self.stall_left = left if left < STALL_TOTAL else STALL_TOTAL
        stall_at = self.server.stall_at
        for c in receivers:
            if len(c.wbuf) > stall_at and not c.closed:
                return self.stall_on(c)
        return False

    def stall_on(self, receiver):
        """This client just fed `receiver`, now over the stall threshold:
        stop parsing (the caller leaves the rest of the input in pend) and
        reading, until the receiver drains or the stall times out. Returns
        False when the stall budget is spent: the producer goes on."""
        left = self.stall_left
        if left < STALL_MIN / 4:
            return False
        srv = self.server
        ttl = STALL_MAX if len(receiver.wbuf) >= srv.max_pending else STALL_MIN
        if ttl > left:
            ttl = left
        # A stall leaves the rest of the read in pend, copied again by each
        # resume: with small windows (a small max_pending) keep reads to a
        # few windows, or a 1 MiB read costs ~100 copies of its remainder.
        cap = 8 * srv.stall_window
        if self.rsize > cap:
            self.rsize = max(MIN_READ, cap)
        self.stalled = True
        self.stalled_on = receiver
        self.stall_started = time.monotonic()
        if receiver.stalled_producers is None:
            receiver.stalled_producers = set()
        receiver.stalled_producers.add(self)
        receiver.stalls += 1
        srv.stalls += 1
        self.set_events(self.write_blocked)
        self.stall_timer = self.reactor.call_later(ttl, self._stall_timeout, ttl)
        if self.log.debug_on:
            self.log.debug("%s - Fast producer stalled: %s has %d bytes pending"
                           % (self.tag(), receiver.idtag(), len(receiver.wbuf)))
        return True

    def _stall_timeout(self, ttl):
        self.stall_timer = None
        if not self.stalled or self.closed:
            return
        r = self.stalled_on
        now = time.monotonic()
        if (not r.closed and now - r.last_write_progress < STALL_PROGRESS
                and now - self.stall_started < STALL_PACED):
            # the receiver is slow, not stuck: wait on for it to drain
            self.stall_timer = self.reactor.call_later(ttl, self._stall_timeout, ttl)
            return
        self.stall_left -= ttl      # only waits that ran out use the budget
        if self.log.debug_on:
            self.log.debug("%s - Timed out of fast producer stall (%.0fms)" % (self.tag(), ttl * 1000))
        waiting = self.stalled_on.stalled_producers
        if waiting:
            waiting.discard(self)
        self._stall_release()

    def release_producers(self):
        """This receiver drained below the stall threshold (or closed):
        the producers waiting on it go on."""
        waiting = self.stalled_producers
        self.stalled_producers = None
        for p in waiting:
            p._stall_release()

    def _stall_release(self):
        if not self.stalled:
            return
        self.stalled = False
        self.stalled_on = None
        if self.stall_timer is not None:
            self.stall_timer.cancel()
            self.stall_timer = None
        if self.closed:
            return
        self.set_events(self.write_blocked)
        # parse the input that waited in a later step of this turn, not
        # inside the receiver's flush that released us
        self.reactor.call_later(0, self._stall_resume)

    def _stall_resume(self):
        if self.closed or self.stalled:
            return
        if not self.deferred and self.has_input():
            self.feed(b"")
        if self.tls_version and not self.closed:
            self._read_tls_pending()

    # -- read interest -------------------------------------------------
    # While a CONNECT's password check runs (`paused`, set by the server or
    # the route code) nothing is read: the socket leaves the selector's read
    # set, as nats-server reads nothing until its check returns. Reading on
    # into `pend` let one unauthenticated client queue ~40 MB per bcrypt
    # check. Input that came with the CONNECT waits in `pend`
    # (at most one read, MAX_READ).
    @property
    def paused(self):
        return self._paused

    @paused.setter
    def paused(self, value):
        value = bool(value)
        if value == self._paused:
            return
        self._paused = value
        if self.closed:
            return
        self.set_events(self.write_blocked)
        if not value and self.tls_version:
            # TLS may hold decrypted input the selector cannot see
            self.reactor.call_later(0, self._read_tls_pending)

    def _read_tls_pending(self):
        if not self.closed and not self._paused and not self.stalled and self.sock.pending():
            self.on_readable()

    def set_events(self, write):
        """Register for write events or not; for read events unless paused
        or stalled."""
        ev = (0 if self._paused or self.stalled else EVENT_READ) | (EVENT_WRITE if write else 0)
        if ev == self._events:
            return
        if not ev:
            self.reactor.unregister(self.sock)
        elif not self._events:
            self.reactor.register(self.sock, ev, self)
        else:
            self.reactor.modify(self.sock, ev, self)
        self._events = ev

    # -- parse caches (see inbound.py) -----------------------------------
    def reset_caches(self):
        """Forget what input resolved to (the subject index or the limits
        changed)."""
        self.inb.reset()

    def cache_filled(self):
        """A cache got an entry and no idle check is pending: drop both
        caches once no input came for CACHE_IDLE seconds, so an idle
        connection holds nothing. One timer per CACHE_IDLE at most."""
        self.cache_timer = self.reactor.call_later(CACHE_IDLE, self._cache_idle)

    def _cache_idle(self):
        self.cache_timer = None
        if self.closed or not self.inb.holds():
            return
        idle = time.time() - self.last_activity
        if idle >= CACHE_IDLE:
            self.inb.drop()
        else:
            self.cache_timer = self.reactor.call_later(CACHE_IDLE - idle, self._cache_idle)

    def long_line_ok(self, buf, pos, length):
        """May a control line exceed max_control_line? (Routes allow long
        INFO/CONNECT JSON.)"""
        return False

    def read_error_reason(self, e):
        return "Read Error"

    def eof_reason(self):
        return "Client Closed"

    # The parse loop every kind shares: parse and act on the data, return
    # the unconsumed tail. Kinds differ by `process_op` and `inbound_state`.
    process = process_input

    def process_op(self, line, buf, pos, after):
        """One control line the loop's caches did not serve; returns a cache
        entry or None (the contract is in inbound.py)."""
        raise NotImplementedError

    # -- writing ---------------------------------------------------------
    def send_now(self, data):
        """Queue bytes and mark for flush at the end of this reactor turn."""
        self.wbuf += data
        self.reactor.dirty.add(self)

    def flush(self):
        wb = self.wbuf
        if not wb or self.closed:
            return
        if self.write_blocked or self.tls_handshaking:
            # the kernel is not taking bytes: bound what piles up meanwhile
            if len(wb) > self.server.max_pending:
                self.slow_consumer("max pending")
            return
        try:
            n = self.sock.send(wb)
        except _WOULD_BLOCK:
            n = 0
        except (OSError, ssl.SSLError):
            self.close_conn("Write Error", flush=False)
            return
        if n == len(wb):
            wb.clear()
            if self.stalled_producers:
                self.release_producers()
            return
        if n:
            del wb[:n]
        if len(wb) > self.server.max_pending:
            self.slow_consumer("max pending")
            return
        if self.stalled_producers and len(wb) < self.server.stall_at:
            self.release_producers()
        self.write_blocked = True
        self.last_write_progress = time.monotonic()
        self.set_events(True)
        self.server.write_blocked.add(self)

    def on_writable(self):
        wb = self.wbuf
        if self.tls_handshaking:
            self._tls_step()
            return
        try:
            n = self.sock.send(wb) if wb else 0
        except _WOULD_BLOCK:
            return
        except (OSError, ssl.SSLError):
            self.close_conn("Write Error", flush=False)
            return
        if n:
            del wb[:n]
            self.last_write_progress = time.monotonic()
            if self.stalled_producers and len(wb) < self.server.stall_at:
                self.release_producers()
        if not wb:
            self.write_blocked = False
            self.server.write_blocked.discard(self)
            self.set_events(False)
            if self.closing_after_flush:
                self.close_conn(self.closing_after_flush, flush=False)

    def check_slow(self, now):
        """Called periodically for write-blocked connections."""
        if len(self.wbuf) > self.server.max_pending:
            self.slow_consumer("max pending")
        elif now - self.last_write_progress > self.server.opts.write_deadline:
            self.slow_consumer("write deadline")

    def slow_consumer(self, why):
        self.server.slow_consumers += 1
        self.log.notice("%s - Slow Consumer Detected: %s (pending %d bytes)"
                        % (self.tag(), why, len(self.wbuf)))
        self.wbuf.clear()
        self.close_conn("Slow Consumer (%s)" % why.title(), flush=False)

    # -- closing ---------------------------------------------------------
    def close_conn(self, reason, flush=True):
        if self.closed:
            return
        if flush and self.wbuf and not self.tls_handshaking:
            try:
                n = self.sock.send(self.wbuf)
                del self.wbuf[:n]
            except Exception:
                pass
        self.closed = True
        # Release buffers now: other publishers' cache entries still name
        # this connection's wbuf (delivery skips closed receivers only once
        # their caches are rebuilt), and idle ones would pin up to
        # max_pending each. Our own caches name other connections' buffers.
        self.wbuf.clear()
        self.pend = []
        self.pend_len = 0
        self.inb.drop()
        if self.stalled_producers:
            self.release_producers()
        if self.cache_timer is not None:
            self.cache_timer.cancel()
            self.cache_timer = None
        for t in self.timers:
            t.cancel()
        self.timers = []
        self.reactor.unregister(self.sock)
        self._events = 0
        self.server.write_blocked.discard(self)
        self.reactor.dirty.discard(self)
        try:
            self.sock.close()
        except OSError:
            pass
        self.on_closed(reason)

    def close_after_flush(self, reason):
        """Close once what is queued (e.g. an -ERR) has gone out."""
        if self.closed:
            return
        self.flush()
        if self.wbuf and self.write_blocked:
            self.closing_after_flush = reason
            self.timers.append(self.reactor.call_later(1.0, self.close_conn, reason, False))
        else:
            self.close_conn(reason, flush=False)

    def on_closed(self, reason):
        pass

    # -- protocol-level behaviour clients and routes share -----------------
    def send_err(self, text):
        self.send_now(P.err_line(text))
        if self.log.trace_on:
            self.trace_out(b"-ERR '" + text.encode() + b"'")

    def trace_out(self, line):
        pass

    def ping_timer(self):
        """Keep-alive: PING every ping_interval; ping_max unanswered PINGs
        in a row make a stale connection."""
        if self.closed:
            return
        if self.pings_out + 1 > self.server.opts.ping_max:
            self.send_err(P.ERR_STALE)
            self.close_after_flush("Stale Connection")
            return
        self.pings_out += 1
        self.ping_sent_at = time.monotonic()
        self.send_now(b"PING\r\n")
        if self.log.trace_on:
            self.trace_out(b"PING")
        if len(self.timers) > 8:
            self.timers = [t for t in self.timers if not t.cancelled]
        self.timers.append(self.reactor.call_later(self.server.opts.ping_interval, self.ping_timer))

    def refuse_auth(self):
        """Credentials did not pass: say so and close."""
        self.paused = False
        self.pend = []
        self.pend_len = 0
        self.log.error("%s - authentication error" % self.tag())
        self.send_err(P.ERR_AUTH)
        self.close_after_flush("Authentication Failure")

    def protocol_error(self, e, buf, pos):
        """The parser refused the input: log it with a snippet, send the
        protocol's -ERR text and close. A CONNECT line is never quoted (its
        JSON may hold a password or token, and a malformed one cannot be
        masked reliably): like nats-server, only the error text is logged."""
        if e.text == P.ERR_AUTH:
            self.log.error("%s - %s" % (self.tag(), "Authorization Error" if e.detail == e.text else e.detail))
        elif bytes(buf[pos:pos + 64]).lstrip().upper().startswith(b"CONNECT"):
            self.log.error("%s - %s parser ERROR: %s" % (self.tag(), self.parser_name, e.detail))
        else:
            self.log.error("%s - %s parser ERROR: %s: proto=%s"
                           % (self.tag(), self.parser_name, e.detail, P.snippet(buf, pos)))
        self.send_err(e.text)
        reason = {P.ERR_AUTH: "Authentication Failure",
                  P.ERR_MAX_PAYLOAD: "Maximum Payload Exceeded",
                  P.ERR_MAX_CONTROL: "Maximum Control Line Exceeded"}.get(e.text, "Protocol Violation")
        self.close_after_flush(reason)

    # -- TLS -------------------------------------------------------------
    def start_tls(self, ctx, server_side, timeout, server_hostname=None):
        """Wrap the socket and run the handshake inside the reactor."""
        self.tls_handshaking = True
        self.sock = ctx.wrap_socket(self.sock, server_side=server_side,
                                    do_handshake_on_connect=False,
                                    server_hostname=server_hostname)
        self.set_events(False)
        self.timers.append(self.reactor.call_later(timeout, self._tls_timeout))
        self._tls_step()

    def _tls_timeout(self):
        if (self.tls_handshaking or self.tls_waiting) and not self.closed:
            self.log.error("%s - TLS handshake timeout" % self.tag())
            self.close_conn("TLS Handshake Timeout", flush=False)

    def _tls_step(self):
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.set_events(False)
            return
        except ssl.SSLWantWriteError:
            self.set_events(True)
            return
        except (ssl.SSLError, OSError) as e:
            self.log.error("%s - TLS handshake error: %s" % (self.tag(), getattr(e, "reason", None) or e))
            self.close_conn("TLS Handshake Failure", flush=False)
            return
        self.tls_handshaking = False
        self.tls_version = self.sock.version() or ""
        c = self.sock.cipher()
        self.tls_cipher = c[0] if c else ""
        self.set_events(bool(self.wbuf))
        if self.wbuf:
            self.write_blocked = True
            self.last_write_progress = time.monotonic()
            self.server.write_blocked.add(self)
        if self.log.debug_on:
            self.log.debug("%s - TLS handshake complete" % self.tag())
            self.log.debug("%s - %s" % (self.tag(), describe(self.sock)))
        self.on_tls_ready()
        # data may already be decrypted and waiting
        if not self.closed and self.sock.pending():
            self.on_readable()

    def on_tls_ready(self):
        pass


def set_socket_options(sock):
    sock.setblocking(False)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
