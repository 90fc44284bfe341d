"""Protocol fuzzing: `fuzz-parser` (seeded mutation loop through the client
parser, in-process), `fuzz-wire` (mutated streams over real sockets while
a clean pair counts) and the route protocol fuzzer run with it.
"""

import random
import time

from tests.util import free_port
from .common import Report, proc_mem, server_health, start_server, varz, wait_for
from .bed import Bed, run_stream, split_chunks
from .clients import CleanTraffic, wire_exchange


# Error texts that end a connection (the others leave it open).
CLOSING_ERRORS = (b"Unknown Protocol Operation", b"Parser Error", b"Authorization Violation",
                  b"Maximum Payload Violation", b"Maximum Control Line Exceeded",
                  b"Message Headers Not Supported")


NONCLOSING_ERRORS = (b"Invalid Subject", b"Invalid Publish Subject",
                     b"maximum subscriptions exceeded")


SUBJECTS = [b"foo", b"foo.bar", b"a.b.c", b"*", b">", b"foo.*", b"foo.>", b"*.bar", b"a.*.c.>",
            b"x", b"foo..bar", b".foo", b"foo.", b"f\x00o", b"\xff\xfe", b"caf\xc3\xa9",
            b"a" * 300, b".".join([b"t"] * 200), b".".join([b"*"] * 60), b"foo*", b"fo>o",
            b"_INBOX.abc", b"$SYS.x", b".".join([b"*"] * 1200), b".".join([b"s"] * 1200),
            b".".join([b"*", b"s"] * 700)]


NUMBERS = [b"0", b"1", b"5", b"-1", b"-0", b"+5", b"99999999999", b"999999999999",
           b"9999999999999", b"18446744073709551616", b"1e3", b"0x10", b"\xd9\xa3", b"",
           b"4294967296", b"1048576", b"1048577", b"65536", b"007", b" 5", b"5 ", b"NaN"]


JSON_VALUES = [b"true", b"false", b"null", b"0", b"1", b"2", b"-1", b"1e400", b"-1e400", b"1.5",
               b'"x"', b'""', b"[]", b"{}", b'"\\ud800"', b"99999999999999999999999",
               b'{"a":[1,2,{"b":null}]}', b'"' + b"\\" * 4 + b'"']


JSON_KEYS = [b"verbose", b"pedantic", b"echo", b"headers", b"no_responders", b"protocol",
             b"name", b"lang", b"version", b"user", b"pass", b"auth_token", b"tls_required",
             b"jwt", b"sig", b"nkey", b"PASS", b"Verbose"]


def gen_connect(rnd):
    keys = rnd.sample(JSON_KEYS, rnd.randrange(0, 6))
    items = []
    for k in keys:
        if k in (b"verbose", b"pedantic") and rnd.random() < 0.6:
            v = b"false"
        else:
            v = rnd.choice(JSON_VALUES)
        items.append(b'"%s":%s' % (k, v))
    body = b"{" + b",".join(items) + b"}"
    r = rnd.random()
    if r < 0.03:
        body = b"[" * rnd.randrange(500, 3000)           # deep nesting
    elif r < 0.05:
        body = b'{"name":"' + b"n" * rnd.randrange(100, 6000) + b'"}'   # oversized
    elif r < 0.07:
        body = b"{" + b'"a":[' * rnd.randrange(200, 900) + b"1"  # unterminated, deep
    return b"CONNECT " + body + b"\r\n"


def gen_op(rnd, sids):
    """One protocol operation, valid or nearly so."""
    r = rnd.random()
    subj = rnd.choice(SUBJECTS[:10]) if rnd.random() < 0.8 else rnd.choice(SUBJECTS)
    if r < 0.30:
        size = rnd.choice((0, 1, 5, 16, 100, 1000, 5000))
        payload = bytes(rnd.randrange(256) for _ in range(min(size, 64))) + b"p" * max(0, size - 64)
        reply = b" " + rnd.choice(SUBJECTS[:6]) if rnd.random() < 0.2 else b""
        subj = subj.replace(b"*", b"s").replace(b">", b"g") if rnd.random() < 0.7 else subj
        return b"PUB %s%s %d\r\n%s\r\n" % (subj, reply, size, payload)
    if r < 0.40:
        hdr = b"NATS/1.0\r\nK: v\r\n\r\n" if rnd.random() < 0.8 else b"NATS/1.0 503\r\n\r\n"
        body = b"h" * rnd.choice((0, 3, 100))
        reply = b" inbox.1" if rnd.random() < 0.3 else b""
        subj = subj.replace(b"*", b"s").replace(b">", b"g")
        return b"HPUB %s%s %d %d\r\n%s%s\r\n" % (subj, reply, len(hdr), len(hdr) + len(body), hdr, body)
    if r < 0.62:
        sid = b"%d" % rnd.randrange(1, 30)
        sids.append(sid)
        queue = b" q%d" % rnd.randrange(3) if rnd.random() < 0.25 else b""
        return b"SUB %s%s %s\r\n" % (subj, queue, sid)
    if r < 0.72:
        sid = rnd.choice(sids) if sids else b"1"
        mx = b" %d" % rnd.randrange(0, 4) if rnd.random() < 0.5 else b""
        return b"UNSUB %s%s\r\n" % (sid, mx)
    if r < 0.82:
        return rnd.choice((b"PING\r\n", b"PONG\r\n", b"ping\r\n", b"PING\n", b"+OK\r\n",
                           b"PINGX\r\n", b"PONGY\r\n"))
    if r < 0.90:
        return gen_connect(rnd)
    if r < 0.93:
        return rnd.choice((b"INFO {}\r\n", b"-ERR 'x'\r\n", b"MSG foo 1 1\r\nx\r\n"))
    return b"PUB foo.bar %d\r\n%s\r\n" % (3, b"abc")


def gen_stream(rnd, max_ops=12):
    """A stream of operations, usually starting with a CONNECT."""
    sids = []
    parts = []
    if rnd.random() < 0.9:
        parts.append(b'CONNECT {"verbose":false,"pedantic":false}\r\n' if rnd.random() < 0.6
                     else gen_connect(rnd))
    for _ in range(rnd.randrange(1, max_ops)):
        op = gen_op(rnd, sids)
        if rnd.random() < 0.1:      # the same PUB repeated: the fast path
            op = op * rnd.randrange(2, 20)
        parts.append(op)
    return b"".join(parts)


def _replace_number(rnd, data):
    digits = [i for i in range(len(data)) if 48 <= data[i] <= 57]
    if not digits:
        return data
    i = rnd.choice(digits)
    j = i
    while j < len(data) and 48 <= data[j] <= 57:
        j += 1
    while i > 0 and 48 <= data[i - 1] <= 57:
        i -= 1
    return data[:i] + rnd.choice(NUMBERS) + data[j:]


def mutate(rnd, data):
    """Apply one to four random edits: flips, junk, cuts, splices, numbers,
    lost CRLFs, case, separators, floods."""
    for _ in range(rnd.randrange(1, 5)):
        n = len(data)
        m = rnd.randrange(14)
        i = rnd.randrange(n + 1)
        if m == 0 and n:
            i = min(i, n - 1)
            data = data[:i] + bytes([data[i] ^ (1 << rnd.randrange(8))]) + data[i + 1:]
        elif m == 1:
            junk = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 16)))
            data = data[:i] + junk + data[i:]
        elif m == 2:
            data = data[:i] + data[i + rnd.randrange(1, 40):]
        elif m == 3:
            j = min(n, i + rnd.randrange(1, 60))
            data = data[:j] + data[i:j] + data[j:]
        elif m == 4:
            data = data[:i]                                    # truncation
        elif m == 5:
            data = _replace_number(rnd, data)
        elif m == 6:
            k = data.find(b"\r\n", i)
            if k >= 0:
                data = data[:k] + rnd.choice((b"", b"\r", b"\n", b"\n\r", b"\r\r\n")) + data[k + 2:]
        elif m == 7:
            j = min(n, i + rnd.randrange(1, 10))
            data = data[:i] + data[i:j].swapcase() + data[j:]
        elif m == 8:
            k = data.find(b" ", i)
            if k >= 0:
                data = data[:k] + rnd.choice((b"\t", b"  ", b" \t ", b"", b"\x0b")) + data[k + 1:]
        elif m == 9:
            data = data[:i] + rnd.choice((b" ", b"a", b"\x00", b".", b"*")) * rnd.randrange(100, 6000) + data[i:]
        elif m == 10:
            data = data[:i] + gen_op(rnd, []) + data[i:]
        elif m == 11:
            data = data[:i] + rnd.choice((b"\r\n", b"\n", b"\r", b"\x16\x03\x01", b"\xff" * 8)) + data[i:]
        elif m == 12:
            lines = data.split(b"\n")
            if len(lines) > 2:
                a, b = rnd.randrange(len(lines)), rnd.randrange(len(lines))
                lines[a], lines[b] = lines[b], lines[a]
                data = b"\n".join(lines)
        else:
            data = data + gen_stream(rnd, 4)
    return data


def check_error_close(out, closed):
    """A closed connection must have been told why: its output ends with
    a closing -ERR. An open one must not have received a closing -ERR."""
    if closed:
        tail = out[-120:]
        k = tail.rfind(b"-ERR '")
        if k < 0 or not tail.endswith(b"'\r\n"):
            return "closed without -ERR (tail %r)" % tail[-80:]
        text = tail[k + 6:-3]
        if text not in CLOSING_ERRORS:
            return "closed after a non-closing -ERR %r" % text
        return None
    for e in CLOSING_ERRORS:
        if b"-ERR '" + e + b"'" in out:
            return "got -ERR %r but the connection stayed open" % e
    return None


class CleanPair:
    """A subscriber and a publisher that behave, inside a fuzzed Bed: after
    each fuzz input one probe message must reach the subscriber exactly."""

    def __init__(self, bed, rnd):
        self.bed = bed
        self.subject = b"clean.%08x" % rnd.getrandbits(32)
        self.sub, self.sub_peer = bed.connect(b'CONNECT {"verbose":false}\r\nSUB %s 1\r\n' % self.subject)
        self.pub, self.pub_peer = bed.connect(b'CONNECT {"verbose":false}\r\n')
        bed.peers.extend((self.sub_peer, self.pub_peer))
        self.sent = self.received = 0
        self.buf = b""

    def probe(self):
        self.sent += 1
        self.pub.feed(b"PUB %s %d\r\n%d\r\n" % (self.subject, len(b"%d" % self.sent), self.sent))
        self.bed.pump(self.pub, self.pub_peer)
        self.buf += self.bed.pump(self.sub, self.sub_peer)
        want = b"MSG %s 1 %d\r\n%d\r\n" % (self.subject, len(b"%d" % self.sent), self.sent)
        if self.buf.startswith(want):
            self.buf = self.buf[len(want):]
            self.received += 1
            return True
        return False

    def alive(self):
        return not self.sub.closed and not self.pub.closed


def subs_of(server):
    return sum(len(c.subs) for c in server.clients.values())


BED_VARIANTS = [
    ("default", {}),
    ("small limits", dict(max_payload=100, max_control_line=64)),
    ("max_subscriptions 3", dict(max_subscriptions=3)),
    ("auth user/pass", dict(username="a", password="b")),
    ("trace", dict(trace=True)),
]


def fuzz_parser(inputs=20000, seed=1, every_split=200, rep=None, progress=False):
    """Seeded mutation loop through the client parser. Each input is fed
    whole and in random chunks (and, for some valid streams, split at every
    byte and byte by byte): nothing may raise, all feedings must give the
    same output, a closed connection must have got a closing -ERR, the
    subject index and the client table must return to the baseline, and
    the clean pair must keep receiving."""
    rep = rep or Report("fuzz-parser")
    rnd = random.Random(seed)
    raised = mismatches = bad_close = leaks = closed_n = 0
    crashes = {}        # signature -> first stream that hit it
    split_runs = 0
    t0 = time.monotonic()
    per_bed = 2000
    done = 0
    vi = 0
    while done < inputs:
        name, opts = BED_VARIANTS[vi % len(BED_VARIANTS)]
        vi += 1
        bed = Bed(**opts)
        pair = CleanPair(bed, rnd) if name != "auth user/pass" else None
        if name == "auth user/pass":
            base_subs = 0
        else:
            base_subs = subs_of(bed.server)
        base_clients = len(bed.server.clients)
        base_count = bed.server.sublist.count
        for _ in range(min(per_bed, inputs - done)):
            done += 1
            data = gen_stream(rnd)
            valid = rnd.random() < 0.15
            if not valid:
                data = mutate(rnd, data)
            if name == "auth user/pass" and rnd.random() < 0.5:
                data = b'CONNECT {"user":"a","pass":"b","verbose":false}\r\n' + data
            modes = ["whole", "random"]
            if valid and split_runs < every_split and len(data) < 400:
                modes.append("bytes")
                split_runs += 1
            seed_i = rnd.getrandbits(32)
            results = []
            for mode in modes:
                random.seed(seed_i)         # queue-group picks repeat exactly
                out, closed, exc = run_stream(bed, data, split_chunks(rnd, data, mode))
                results.append((mode, out, closed, exc))
                if exc:
                    raised += 1
                    if exc not in crashes:
                        crashes[exc] = data
                        rep.fail("input %d (%s, %s) raised %s; stream %r"
                                 % (done, name, mode, exc, data[:300]))
            if "bytes" in modes and split_runs <= 20:
                # a few streams also split at every single byte position
                for i in range(1, len(data)):
                    random.seed(seed_i)
                    out, closed, exc = run_stream(bed, data, [data[:i], data[i:]])
                    results.append(("split@%d" % i, out, closed, exc))
            mode0, out0, closed0, _ = results[0]
            closed_n += closed0
            for mode, out, closed, exc in results[1:]:
                if (out, closed) != (out0, closed0) and not exc:
                    mismatches += 1
                    rep.fail("input %d (%s): %s gave %r closed=%s, whole gave %r closed=%s; stream %r"
                             % (done, name, mode, out[-200:], closed, out0[-200:], closed0, data[:300]))
                    break
            why = check_error_close(out0, closed0)
            if why:
                bad_close += 1
                rep.fail("input %d (%s): %s; stream %r" % (done, name, why, data[:300]))
            if (len(bed.server.clients) != base_clients or bed.server.sublist.count != base_count
                    or subs_of(bed.server) != base_subs):
                leaks += 1
                rep.fail("input %d (%s): state leak: clients %d/%d, sublist %d/%d; stream %r"
                         % (done, name, len(bed.server.clients), base_clients,
                            bed.server.sublist.count, base_count, data[:300]))
                base_clients = len(bed.server.clients)
                base_count = bed.server.sublist.count
            if pair is not None and not pair.probe():
                rep.fail("input %d (%s): the clean subscriber missed probe %d (alive=%s); stream %r"
                         % (done, name, pair.sent, pair.alive(), data[:300]))
                pair = CleanPair(bed, rnd)
                base_subs = subs_of(bed.server)
                base_count = bed.server.sublist.count
                base_clients = len(bed.server.clients)
            if done % 500 == 0:
                bed.purge_timers()
            if progress and done % 50000 == 0:
                print("  fuzz-parser: %d inputs, %.0f s" % (done, time.monotonic() - t0), flush=True)
        if bed.sink.internal:
            rep.fail("internal errors logged: %s" % bed.sink.internal[:3])
        bed.close()
    rep.fig("inputs", done)
    rep.fig("feedings per input", "whole + random chunks (+ every byte for %d valid streams)" % split_runs)
    rep.fig("closed with -ERR", closed_n)
    rep.fig("raised", "%d (%d distinct)" % (raised, len(crashes)))
    rep.fig("chunking mismatches", mismatches)
    rep.fig("closed without -ERR", bad_close)
    rep.fig("state leaks", leaks)
    rep.fig("inputs/s", int(done / max(1e-9, time.monotonic() - t0)))
    return rep


def events(out):
    """Server output as a list of events, with MSG/HMSG sids dropped (a
    queue group may pick either of a client's own members)."""
    ev = []
    pos, n = 0, len(out)
    while pos < n:
        eol = out.find(b"\r\n", pos)
        if eol < 0:
            ev.append(("partial", out[pos:]))
            break
        line = out[pos:eol]
        pos = eol + 2
        parts = line.split(b" ")
        if parts[0] in (b"MSG", b"HMSG") and len(parts) >= 4 and parts[-1].isdigit():
            size = int(parts[-1])
            reply = parts[3] if (parts[0] == b"MSG" and len(parts) == 5) or len(parts) == 6 else b""
            ev.append((parts[0], parts[1], reply, out[pos:pos + size]))
            pos += size + 2
        else:
            ev.append(("line", line))
    return ev


def fuzz_wire(inputs=1000, seed=2, python=None, rep=None, progress=False):
    """The fuzzer's streams sent to a real server process, compared with the
    in-process run of the same stream, while a clean pair exchanges a steady
    stream of messages on the same server and must receive every one."""
    rep = rep or Report("fuzz-wire")
    rnd = random.Random(seed)
    bed = Bed()
    srv = start_server(python=python)
    rep.fig("server", " ".join(srv.cmd[:2]))
    exact = prefix = differ = closed_n = explained = 0
    t0 = time.monotonic()
    try:
        clean = CleanTraffic(srv.port)
        for k in range(inputs):
            data = gen_stream(rnd)
            if rnd.random() < 0.85:
                data = mutate(rnd, data)
            random.seed(k)
            want, want_closed, exc = run_stream(bed, data, [data])
            if exc:
                rep.fail("in-process run raised %s; stream %r" % (exc, data[:300]))
                continue
            closed_n += want_closed
            try:
                got, reset = wire_exchange(srv.port, data, rnd)
            except OSError as e:
                rep.fail("input %d: %s; stream %r" % (k, e, data[:300]))
                if srv.proc.poll() is not None:
                    break
                continue
            # a fuzzed `SUB >` also receives the clean pair's traffic
            ge = [e for e in events(got) if e[1] != clean.subject]
            we = events(want)
            if ge == we:
                exact += 1
            elif (reset or not want_closed) and we[:len(ge)] == ge:
                prefix += 1     # cut short by our half-close or the server's RST
            elif b"UNSUB" in data.upper() and clean.subject in got:
                explained += 1  # clean messages used up an auto-unsubscribe limit
            else:
                differ += 1
                rep.fail("input %d: wire %r, in-process %r; stream %r"
                         % (k, got[-200:], want[-200:], data[:300]))
            if k % 500 == 0:
                bed.purge_timers()
            if progress and k and k % 10000 == 0:
                print("  fuzz-wire: %d inputs, %.0f s" % (k, time.monotonic() - t0), flush=True)
        sent, received, errors = clean.finish()
        for e in errors:
            rep.fail("clean pair: %s" % e)
        rep.check(sent == received, "clean pair: sent %d, received %d" % (sent, received))
        rep.fig("inputs", inputs)
        rep.fig("closed by the server with -ERR", closed_n)
        rep.fig("same output as in-process", exact)
        rep.fig("a prefix of it (cut short)", prefix)
        rep.fig("differing because a fuzzed `SUB >` with UNSUB max also got clean traffic", explained)
        rep.fig("different", differ)
        rep.fig("clean messages sent/received", "%d/%d" % (sent, received))
        rep.fig("server RSS KiB (now, peak)", proc_mem(srv.proc.pid))
        server_health(srv, rep)
    finally:
        srv.stop()
        bed.close()
    return rep


def gen_route_stream(rnd, k):
    """A peer's side of a route: CONNECT and its INFO (never with `ip` or
    gossip, so the server dials nothing), then interest and messages."""
    name = b"FAKE%06d" % k
    parts = []
    if rnd.random() < 0.9:
        parts.append(b'CONNECT {"verbose":false,"pedantic":false,"name":"%s","headers":true}\r\n' % name)
        parts.append(b'INFO {"server_id":"%s","name":"%s","headers":true,"proto":1}\r\n' % (name, name))
    for _ in range(rnd.randrange(1, 12)):
        r = rnd.random()
        subj = rnd.choice(SUBJECTS[:12]) if rnd.random() < 0.85 else rnd.choice(SUBJECTS)
        if r < 0.3:
            q = b" q%d %d" % (rnd.randrange(3), rnd.choice((0, 1, 5, 999999999999))) if rnd.random() < 0.3 else b""
            parts.append(b"RS+ $G %s%s\r\n" % (subj, q))
        elif r < 0.4:
            parts.append(b"RS- $G %s%s\r\n" % (subj, b" q1" if rnd.random() < 0.3 else b""))
        elif r < 0.75:
            size = rnd.choice((0, 3, 100, 5000))
            mid = rnd.choice((b"", b" reply.x", b" + reply.x q0 q1", b" | q0", b" | q2 q0"))
            subj = subj.replace(b"*", b"s").replace(b">", b"g")
            parts.append(b"RMSG $G %s%s %d\r\n%s\r\n" % (subj, mid, size, b"r" * size))
        elif r < 0.85:
            hdr = b"NATS/1.0\r\nK: v\r\n\r\n"
            parts.append(b"HMSG $G foo %d %d\r\n%sxy\r\n" % (len(hdr), len(hdr) + 2, hdr))
        elif r < 0.95:
            parts.append(rnd.choice((b"PING\r\n", b"PONG\r\n", b"+OK\r\n", b"RS+ $SYS x\r\n",
                                     b"RMSG $SYS x 1\r\nz\r\n")))
        else:
            parts.append(rnd.choice((b"-ERR 'bye'\r\n", b"CONNECT {}\r\n", b"RMSG $G\r\n")))
    return b"".join(parts)


def fuzz_routes(inputs=500, seed=4, python=None, rep=None):
    """Mutated route protocol from fake peers on the cluster port (no
    authorization configured, so anyone reaching it may try), while a clean
    pair on the client port must receive everything. The server must stay
    up, log no internal error, and end with no route and no stray interest."""
    rep = rep or Report("fuzz-routes")
    rnd = random.Random(seed)
    cport, mport = free_port(), free_port()
    srv = start_server("--cluster", "nats://127.0.0.1:%d" % cport, "-m", str(mport), python=python)
    rep.fig("server", " ".join(srv.cmd[:2]))
    registered = closed_err = 0
    try:
        clean = CleanTraffic(srv.port)
        for k in range(inputs):
            data = gen_route_stream(rnd, k)
            if rnd.random() < 0.8:
                head = data.find(b"\r\n", data.find(b"INFO")) + 2 if data.startswith(b"CONNECT") else 0
                data = data[:head] + mutate(rnd, data[head:]) if rnd.random() < 0.8 else mutate(rnd, data)
            try:
                out, reset = wire_exchange(cport, data, rnd)
            except OSError as e:
                rep.fail("input %d: %s; stream %r" % (k, e, data[:300]))
                if srv.proc.poll() is not None:
                    break
                continue
            registered += b"RS+ $G" in out or b"PONG" in out
            closed_err += b"-ERR '" in out
        sent, received, errors = clean.finish()
        for e in errors:
            rep.fail("clean pair: %s" % e)
        rep.check(sent == received, "clean pair: sent %d, received %d" % (sent, received))
        v = wait_for(lambda: (lambda x: x if x and x.get("routes") == 0 else None)(varz(mport)), 10)
        rep.check(v is not None, "routes left after the fake peers closed: %s" % varz(mport))
        if v:
            rep.check(v["subscriptions"] == 0, "interest left behind: %s subscriptions" % v["subscriptions"])
        rep.fig("fake peers (inputs)", inputs)
        rep.fig("answered as a route / told -ERR", "%d / %d" % (registered, closed_err))
        rep.fig("clean messages sent/received", "%d/%d" % (sent, received))
        server_health(srv, rep)
    finally:
        srv.stop()
    return rep
