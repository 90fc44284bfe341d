"""JetStream store faults: torn writes and flipped bytes, a full disk,
consumer churn (issue 20's "Durability and faults").

js-torn      acknowledged publishes with `sync_interval: always`, the
             server SIGKILLed, then the last block damaged on purpose:
             truncated at a random byte offset inside what this round wrote,
             or one byte flipped inside a random message record. The block
             is read with the store's own record scanner (filestore_format)
             to know which sequences the damage hit. After restart every
             acknowledged message outside the damaged record(s) must be back
             byte for byte, the damaged ones must be gone (no garbage served
             in their place), the server must name the damage in its log
             (a torn tail, or the file and offset of the bad record) and
             have no traceback.
js-diskfull  a full disk without root: the server's RLIMIT_FSIZE is lowered
             from outside while it runs (prlimit(2), Python ignores
             SIGXFSZ, so a write past the limit fails with EFBIG, the errno
             a full quota gives as ENOSPC). Publishes while full must get an
             error PubAck (never a false success); meanwhile the server must
             go on serving: a core request/reply round trip from another
             client and MSG.GET of stored messages. The limit is raised
             again and publishing must succeed at once; after a clean
             restart every acknowledged message is there.
js-churn     consumers created and deleted in rounds while a publisher keeps
             acknowledged publishes flowing: durables deleted explicitly,
             ephemerals abandoned (a 1 s inactive_threshold reaps them).
             At the end the stream's consumer count is back to 0, every
             publish was acknowledged exactly once with no gap, and RSS is
             back near the baseline taken after a warm-up round.
"""

import json
import os
import random
import resource
import shutil
import signal
import socket
import tempfile
import threading
import time

from gnats.jetstream import filestore_format as fmt

from .common import Report, proc_mem, server_health, start_server
from .jsdurable import STREAM, Conn, publisher, request, verify
from tests.util import ServerProcess, wait_for


def _conn(port):
    """A Conn without Nagle: request() writes its UNSUB after the reply,
    and the next request would wait for that segment's delayed ACK (40 ms)."""
    c = Conn(port)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def _server(conf, python, exe):
    return ServerProcess(config=conf, exe=exe) if exe else start_server(config=conf, python=python)


def _last_block(store):
    """Path of stream D's last block file (gnatsd.py's layout, or
    nats-server's msgs/N.blk)."""
    found = []
    for d, _, files in os.walk(store):
        if os.sep + STREAM + os.sep not in d + os.sep:
            continue
        for f in files:
            if f.endswith(".blk"):
                try:
                    found.append((int(f[:-4]), os.path.join(d, f)))
                except ValueError:
                    pass
    return max(found)[1] if found else None


def _records(path):
    """[(off, len, seq)] of the intact MSG records of a block."""
    with open(path, "rb") as f:
        data = f.read()
    return [(off, n, seq) for kind, off, n, seq, *_ in fmt.scan_block(data) if kind == fmt.MSG]


def _absent(port, seqs):
    """The sequences of `seqs` the server still serves a message for."""
    c = _conn(port)
    try:
        served = []
        for s in seqs:
            r = request(c, "$JS.API.STREAM.MSG.GET.%s" % STREAM, b'{"seq":%d}' % s)
            if "message" in r:
                served.append(s)
        return served
    finally:
        c.close()


def _publish_for(port, tag, acked, seconds, window=64):
    stop, errors = threading.Event(), []
    th = threading.Thread(target=publisher, args=(port, tag, window, acked, stop, errors), daemon=True)
    th.start()
    time.sleep(seconds)
    return stop, th, errors


def js_torn(rounds=10, python=None, seed=1, rep=None):
    rep = rep or Report("js-torn (sync_interval: always, gnatsd.py)")
    rng = random.Random(seed)
    store = tempfile.mkdtemp(prefix="js-torn-")
    conf = "jetstream { store_dir: %s, sync_interval: always }\n" % json.dumps(store)
    acked, damaged, logged, detectable = {}, {"truncate": 0, "flip": 0}, 0, 0
    lost_total = 0
    try:
        srv = _server(conf, python, None)
        c = Conn(srv.port)
        cfg = json.dumps({"name": STREAM, "subjects": ["d.>"], "storage": "file"}).encode()
        res = request(c, "$JS.API.STREAM.CREATE.%s" % STREAM, cfg)
        c.close()
        rep.check("error" not in res, "stream create: %s" % res)
        for r in range(rounds):
            path = _last_block(store)
            start = os.path.getsize(path) if path else 0
            stop, th, errors = _publish_for(srv.port, "r%d" % r, acked, rng.uniform(0.3, 1.5))
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait(10)
            stop.set()
            th.join(15)
            srv.stop()
            for e in errors[:3]:
                rep.fail("round %d: %s" % (r, e))
            if _last_block(store) != path:
                start = 0               # the round rolled over into a new block
            path = _last_block(store)
            recs = _records(path)
            size = os.path.getsize(path)
            if size <= start or not recs:
                rep.fail("round %d: nothing written to %s" % (r, path))
                srv = _server(conf, python, None)
                continue
            if r % 2 == 0:
                how = "truncate"
                cut = rng.randrange(start, size)
                lost = [s for off, n, s in recs if off + n > cut]
                torn = any(off < cut < off + n for off, n, _ in recs)
                os.truncate(path, cut)
                expect = "torn" if torn else None
            else:
                how = "flip"
                off, n, seq = rng.choice([x for x in recs if x[0] + x[1] > start] or recs)
                at = off + rng.randrange(n)
                with open(path, "r+b") as f:
                    f.seek(at)
                    b = f.read(1)
                    f.seek(at)
                    f.write(bytes([b[0] ^ (1 << rng.randrange(8))]))
                lost = [seq]
                # the last record damaged is a torn tail: nothing intact follows
                expect = "offset %d" % off if off + n < size else "torn"
            damaged[how] += 1
            lost_acked = [s for s in lost if s in acked]
            lost_total += len(lost_acked)
            for s in lost:
                acked.pop(s, None)
            srv = _server(conf, python, None)
            verify(srv.port, acked, rep, "round %d (%s)" % (r, how))    # answers once recovered
            out = srv.output()
            if expect:
                detectable += 1
                ok = expect in out and (how == "truncate" or os.path.basename(path) in out)
                logged += ok
                rep.check(ok, "round %d (%s): the server's log does not name the damage (%r): %s"
                          % (r, how, expect, out[-1500:]))
            served = _absent(srv.port, lost[:50])
            rep.check(not served, "round %d (%s): damaged seqs still served: %s" % (r, how, served[:5]))
            server_health(srv, rep)
        srv.stop()
        rep.fig("rounds (kill -9, then damage)", "%d (%d truncated, %d flipped)"
                % (rounds, damaged["truncate"], damaged["flip"]))
        rep.fig("acknowledged, kept and checked", len(acked))
        rep.fig("acknowledged, in the damage", lost_total)
        rep.fig("damage named in the log", "%d of %d rounds (the others cut on a record "
                "boundary: nothing to detect)" % (logged, detectable))
    finally:
        shutil.rmtree(store, ignore_errors=True)
    return rep


def _core_roundtrip(port):
    """A request/reply between two plain clients through the server."""
    a, b = Conn(port), Conn(port)
    try:
        a.sock.sendall(b"SUB core.echo 1\r\nPING\r\n")
        while b"PONG" not in a.buf:
            a._more()
        a.buf = a.buf.split(b"PONG\r\n", 1)[1]
        b.sock.sendall(b"SUB _E.x 2\r\nPUB core.echo _E.x 4\r\nping\r\n")
        subj, data = a.msg()
        a.sock.sendall(b"PUB _E.x 4\r\npong\r\n")
        _, back = b.msg()
        return data == b"ping" and back == b"pong"
    finally:
        a.close()
        b.close()


def _publish_n(port, tag, n, acked):
    """n publishes one at a time: (ok acks, error texts); a publish left
    unanswered for 5 s counts as an error for it and every one after."""
    c = _conn(port)
    c.sock.settimeout(5)
    errs = []
    try:
        c.sock.sendall(b"SUB _P.* 1\r\n")
        for i in range(n):
            p = b"%s-%d" % (tag.encode(), i)
            c.sock.sendall(b"PUB d.%s _P.%d %d\r\n%s\r\n" % (tag.encode(), i, len(p), p))
            try:
                _, data = c.msg()
            except socket.timeout:
                # nats-server 2.15 answers nothing once a write failed
                errs += ["no PubAck within 5 s"] * (n - i)
                break
            ack = json.loads(data)
            if "error" in ack:
                errs.append(ack["error"])
            else:
                acked[ack["seq"]] = p
        return n - len(errs), errs
    finally:
        c.close()


def _server_with_stream(conf, python, exe, rep):
    """A server on `conf` with the campaign's file stream on d.>."""
    srv = _server(conf, python, exe)
    try:
        c = Conn(srv.port)
        cfg = json.dumps({"name": STREAM, "subjects": ["d.>"], "storage": "file"}).encode()
        rep.check("error" not in request(c, "$JS.API.STREAM.CREATE.%s" % STREAM, cfg), "stream create")
        c.close()
    except BaseException:
        srv.stop()
        raise
    return srv


def js_diskfull(python=None, exe=None, before=2000, during=500, after=2000, rep=None):
    rep = rep or Report("js-diskfull (RLIMIT_FSIZE lowered at run time, %s)" % ("nats-server" if exe else "gnatsd.py"))
    store = tempfile.mkdtemp(prefix="js-full-")
    conf = "jetstream { store_dir: %s }\n" % json.dumps(store)
    acked = {}
    try:
        srv = _server_with_stream(conf, python, exe, rep)
        ok, errs = _publish_n(srv.port, "before", before, acked)
        rep.check(ok == before, "before the disk filled: %d of %d acked: %s" % (ok, before, errs[:2]))
        # full: no file of the server may grow past its current largest block
        path = _last_block(store)
        limit = os.path.getsize(path) + 1024
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.prlimit(srv.proc.pid, resource.RLIMIT_FSIZE, (limit, hard))
        ok_full, errs = _publish_n(srv.port, "full", during, acked)
        rep.check(errs, "no publish failed while the disk was full (%d acked)" % ok_full)
        rep.fig("publishes while full", "%d: %d acked (until the limit), %d error acks" % (during, ok_full, len(errs)))
        if errs:
            rep.fig("error ack", json.dumps(errs[0])[:160])
        rep.check(srv.proc.poll() is None, "server died when the disk filled: %s" % srv.output()[-1500:])
        rep.check(_core_roundtrip(srv.port), "core request/reply failed while the disk was full")
        verify(srv.port, acked, rep, "while full")
        resource.prlimit(srv.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
        ok2, errs = _publish_n(srv.port, "after", after, acked)
        rep.check(ok2 == after, "once space was back: %d of %d acked: %s" % (ok2, after, errs[:2]))
        rep.fig("publishes once space was back", "%d of %d acked" % (ok2, after))
        verify(srv.port, acked, rep, "space back")
        server_health(srv, rep)
        srv.proc.send_signal(signal.SIGTERM)
        srv.proc.wait(30)
        srv.stop()
        srv = _server(conf, python, exe)
        stored, last, missing = verify(srv.port, acked, rep, "after a restart")
        rep.fig("acknowledged / after restart missing", "%d / %d (stream: %d msgs, last seq %d)"
                % (len(acked), missing, stored, last))
        rep.check(stored == len(acked), "the stream holds %d messages, %d were acknowledged (a failed "
                  "publish stored?)" % (stored, len(acked)))
        server_health(srv, rep)
        srv.stop()
    finally:
        shutil.rmtree(store, ignore_errors=True)
    return rep


def _churn_round(port, n, rep, tag):
    """n consumers created, half durable (deleted), half ephemeral with a
    1 s inactive_threshold (abandoned). Returns the create latency list."""
    c = _conn(port)
    lat = []
    try:
        for i in range(n):
            if i % 2 == 0:
                name = "%s_%d" % (tag, i)
                cfg = {"stream_name": STREAM, "config": {"durable_name": name, "ack_policy": "explicit"}}
                subj = "$JS.API.CONSUMER.CREATE.%s.%s" % (STREAM, name)
            else:
                cfg = {"stream_name": STREAM, "config": {"ack_policy": "none", "inactive_threshold": 10 ** 9,
                                                         "deliver_policy": "new"}}
                subj = "$JS.API.CONSUMER.CREATE.%s" % STREAM
            t = time.monotonic()
            res = request(c, subj, json.dumps(cfg).encode())
            lat.append(time.monotonic() - t)
            if not rep.check("error" not in res, "%s: create %d: %s" % (tag, i, res)):
                return lat
            if i % 2 == 0:
                res = request(c, "$JS.API.CONSUMER.DELETE.%s.%s" % (STREAM, name), b"")
                rep.check(res.get("success") is True, "%s: delete %s: %s" % (tag, name, res))
        return lat
    finally:
        c.close()


def _consumers(port):
    c = _conn(port)
    try:
        return request(c, "$JS.API.STREAM.INFO.%s" % STREAM, b"").get("state", {}).get("consumer_count")
    finally:
        c.close()


def _paced_publisher(port, acked, stop, errors, burst=8, pause=0.01):
    """Bursts of `burst` acknowledged publishes, a pause between them (so
    the stream grows by a few hundred a second, and RSS measures the
    consumers, not the stream); every ack is read before it stops."""
    c = None
    try:
        c = Conn(port)
        c.sock.sendall(b"SUB _C.* 1\r\n")
        sent = 0
        while not stop.is_set():
            out = []
            for i in range(sent, sent + burst):
                p = b"churn-%d" % i
                out.append(b"PUB d.churn _C.%d %d\r\n%s\r\n" % (i, len(p), p))
            c.sock.sendall(b"".join(out))
            for _ in range(burst):
                subj, data = c.msg()
                ack = json.loads(data)
                if "error" in ack:
                    errors.append("publish %s: %s" % (subj, ack["error"]))
                    return
                acked[ack["seq"]] = b"churn-%d" % int(subj.rsplit(b".", 1)[1])
            sent += burst
            time.sleep(pause)
    except (OSError, ValueError) as e:
        errors.append("publisher: %r" % e)
    finally:
        if c is not None:
            c.close()


def js_churn(consumers=5000, python=None, exe=None, rep=None):
    rep = rep or Report("js-churn (%d consumers created and dropped, %s)"
                        % (consumers, "nats-server" if exe else "gnatsd.py"))
    store = tempfile.mkdtemp(prefix="js-churn-")
    conf = "jetstream { store_dir: %s }\n" % json.dumps(store)
    acked = {}
    try:
        srv = _server_with_stream(conf, python, exe, rep)
        stop, errors = threading.Event(), []
        th = threading.Thread(target=_paced_publisher, args=(srv.port, acked, stop, errors), daemon=True)
        th.start()
        warm = min(500, consumers // 10)
        _churn_round(srv.port, warm, rep, "warm")
        rep.check(wait_for(lambda: _consumers(srv.port) == 0, 30), "warm-up consumers not reaped")
        time.sleep(1)
        base = proc_mem(srv.proc.pid)[0]
        lat = []
        t0 = time.monotonic()
        per = 500
        for k in range(0, consumers, per):
            lat += _churn_round(srv.port, min(per, consumers - k), rep, "c%d" % k)
            if not rep.ok:
                break
        secs = time.monotonic() - t0
        peak = proc_mem(srv.proc.pid)[0]
        stop.set()
        th.join(15)
        for e in errors[:3]:
            rep.fail("publisher: %s" % e)
        left = wait_for(lambda: _consumers(srv.port) == 0, 60)
        rep.check(left, "consumers left after 60 s: %s" % _consumers(srv.port))
        time.sleep(2)
        end = proc_mem(srv.proc.pid)[0]
        stored, last, missing = verify(srv.port, acked, rep, "end")
        rep.check(stored == last == len(acked), "stream holds %d msgs up to seq %d, %d acknowledged"
                  % (stored, last, len(acked)))
        lat.sort()
        rep.fig("consumers created", "%d in %.1f s (half durable and deleted, half ephemeral and "
                "abandoned); create p50 %.1f ms, p99 %.1f ms" % (len(lat), secs, 1e3 * lat[len(lat) // 2],
                                                                  1e3 * lat[int(len(lat) * .99)]))
        rep.fig("publishes acknowledged meanwhile", "%d, missing %d" % (len(acked), missing))
        rep.fig("RSS baseline / at the end of churn / after reaping", "%d / %d / %d MiB"
                % (base >> 10, peak >> 10, end >> 10))
        rep.perf(end < base + 20 * 1024, "RSS did not come back: %d KiB, baseline %d KiB" % (end, base))
        server_health(srv, rep)
        srv.stop()
    finally:
        shutil.rmtree(store, ignore_errors=True)
    return rep
