"""Hot-path hardening (issue 11): bounded parse caches (D3), no reading
while a password check runs (D4), closed connections' buffers released at
once (D8), Go's argument splitting (M1), empty-token subjects (M2), HPUB
with an empty header block (M6), and UNSUB <sid> <max> after max messages.

Memory checks look at what the server itself holds (cache contents,
buffer lengths, selector registrations) in an in-process server, never at
the RSS of a shared machine. Everything else is bytes over loopback.
"""

import io
import json
import socket
import struct
import threading
import time
import unittest

from gnats.log import Logger
from gnats.options import Options
from gnats.reactor import EVENT_READ
from gnats.server import Server
from tests.util import RawClient, ServerCase, ServerProcess

try:
    import bcrypt
except ImportError:     # pragma: no cover
    bcrypt = None

TIMEOUT = 10.0
MiB = 1 << 20


class InProcess:
    """A real server on its own reactor thread; `call(fn)` runs fn on that
    thread and returns its result (the server's state is only read there)."""

    def __init__(self, **opts):
        o = Options()
        o.host, o.port = "127.0.0.1", -1
        for k, v in opts.items():
            setattr(o, k, v)
        self.log = io.StringIO()
        self.srv = Server(o, Logger(stream=self.log))
        self.srv.start()
        self.port = self.srv.port
        self.thread = threading.Thread(target=self.srv.run, daemon=True)
        self.thread.start()

    def call(self, fn):
        done = threading.Event()
        box = []

        def run():
            try:
                box.append((True, fn()))
            except Exception as e:      # hand it to the test thread
                box.append((False, e))
            done.set()
        self.srv.reactor.call_soon_threadsafe(run)
        if not done.wait(TIMEOUT):
            raise TimeoutError("reactor did not run the call")
        ok, v = box[0]
        if not ok:
            raise v
        return v

    def wait_for(self, fn, timeout=TIMEOUT):
        """Poll fn (on the reactor thread) until it returns a true value."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.call(fn)
            if v or time.monotonic() > deadline:
                return v
            time.sleep(0.05)

    def last_client(self):
        return self.srv.clients[max(self.srv.clients)]

    def stop(self):
        self.srv.reactor.call_soon_threadsafe(self.srv.shutdown)
        self.thread.join(TIMEOUT)
        if not self.thread.is_alive():
            self.srv.reactor.close()        # its wake-up socket pair


def cache_bytes(c):
    """Bytes the parse caches of connection `c` hold in keys and ready-made
    prefixes (what the audit measured), counted from their contents."""
    n = 0
    for line, ent in c.inb.pcache.items():
        n += len(line) + sum(len(t[1]) for t in ent[1])
    for key, bases in c.inb.scache.items():
        n += len(key) + sum(len(t[1]) for t in bases[0])
    return n


def drain(sock):
    """Read whatever arrives until the peer is quiet for a moment."""
    sock.settimeout(0.3)
    got = b""
    try:
        while True:
            d = sock.recv(1 << 16)
            if not d:
                break
            got += d
    except OSError:
        pass
    return got


class TestParseCacheBounds(unittest.TestCase):
    """D3: one publisher filled 8,192 + 4,096 cache entries of ~4 KiB
    subjects (~50 MiB, more with fan-out) and kept them while idle."""

    def setUp(self):
        self.s = InProcess()
        self.addCleanup(self.s.stop)

    def publish_distinct(self, c, n, tag):
        for i in range(0, n, 256):
            c.send(b"".join(b"PUB %s.%s.%d 1\r\nx\r\n" % (b"x" * 3950, tag, j)
                            for j in range(i, i + 256)))

    def test_caches_stay_within_a_few_mib(self):
        subs = RawClient(self.s.port)
        for k in range(4):                      # 4 matches: 4 prefixes per subject
            subs.send(b"SUB > %d\r\n" % k)
        subs.ping()
        pub = RawClient(self.s.port)
        pub.ping()
        cid = self.s.call(lambda: self.s.last_client().cid)
        # a reader so the subscriber's output never blocks the server
        stop = threading.Event()

        def read():
            try:
                while not stop.is_set() and subs.sock.recv(1 << 20):
                    pass
            except OSError:
                pass
        threading.Thread(target=read, daemon=True).start()
        self.addCleanup(stop.set)
        self.publish_distinct(pub, 3000, b"a")
        pub.ping(timeout=60)
        held = self.s.call(lambda: cache_bytes(self.s.srv.clients[cid]))
        # before the bounds: 3,000 lines and subjects of ~4 KiB, each with
        # 4 prefixes in both caches, about 110 MiB
        self.assertGreater(held, 100 * 1024)
        self.assertLessEqual(held, 4 * MiB)
        accounted = self.s.call(lambda: (lambda c: c.inb.pcache_used + c.inb.scache_used)(self.s.srv.clients[cid]))
        self.assertLessEqual(held, accounted)
        self.assertLessEqual(accounted, 4 * MiB + 64 * 1024)
        stop.set()
        subs.close()
        pub.close()

    def test_idle_connection_drops_its_caches(self):
        pub = RawClient(self.s.port)
        self.publish_distinct(pub, 64, b"b")
        pub.ping()
        cid = self.s.call(lambda: self.s.last_client().cid)
        self.assertGreater(self.s.call(lambda: cache_bytes(self.s.srv.clients[cid])), 0)
        # conn.CACHE_IDLE (2 s) without input: both caches empty
        self.assertTrue(self.s.wait_for(lambda: cache_bytes(self.s.srv.clients[cid]) == 0))
        self.assertEqual(self.s.call(lambda: self.s.srv.clients[cid].inb.pcache_used), 0)
        # and a dropped cache is only a miss: delivery still works
        sub = RawClient(self.s.port)
        sub.send(b"SUB %s.b.1 7\r\n" % (b"x" * 3950))
        sub.ping()
        pub.send(b"PUB %s.b.1 1\r\nx\r\n" % (b"x" * 3950))
        pub.ping()
        self.assertEqual(sub.read_msg(), (b"MSG", [b"x" * 3950 + b".b.1", b"7", b"1"], b"x"))
        sub.close()
        pub.close()


@unittest.skipIf(bcrypt is None, "bcrypt is not installed")
class TestNoReadDuringPasswordCheck(unittest.TestCase):
    """D4: while a CONNECT's bcrypt check ran, the server kept reading the
    socket into `pend`, with no bound (35-40 MB per check)."""

    @staticmethod
    def new_hash(password):
        # cost 13: the check lasts long enough (~0.6 s) to look at it. A
        # fresh password per test: successful checks are cached process-wide.
        return bcrypt.hashpw(password, bcrypt.gensalt(13)).decode()

    def test_client_socket_is_not_read_while_checking(self):
        s = InProcess(auth_timeout=10.0, users=[{"user": "alice", "password": self.new_hash(b"pw-d4-a")}])
        self.addCleanup(s.stop)
        c = RawClient(s.port, connect=None)
        c.send(b'CONNECT {"user":"alice","pass":"wrong","verbose":false}\r\n')
        state = s.wait_for(lambda: self._state(s))
        self.assertIsNotNone(state, "the password check was not seen running")
        self.assertEqual(state, (True, False, 0))     # paused, not reading, nothing pending
        c.sock.setblocking(False)
        blob = (b"PUB foo 1000\r\n" + b"x" * 1000 + b"\r\n") * 1000
        sent = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                sent += c.sock.send(blob)
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:
                break
        state = s.call(lambda: self._state(s))
        if state is not None:       # still checking (it should be)
            paused, reading, pend_len = state
            self.assertTrue(paused)
            self.assertFalse(reading)
            self.assertEqual(pend_len, 0)
        # what got in is the kernel's socket buffers, not ~35 MB
        self.assertLess(sent, 16 * MiB)
        c.sock.setblocking(True)
        self.assertTrue(c.closed(TIMEOUT))
        c.close()

    @staticmethod
    def _state(s):
        if not s.srv.clients:
            return None
        cl = s.last_client()
        if cl.closed or not cl.paused:
            return None
        try:
            reading = bool(s.srv.reactor.sel.get_key(cl.sock).events & EVENT_READ)
        except KeyError:
            reading = False
        return cl.paused, reading, cl.pend_len

    def test_input_sent_with_connect_is_handled_after_the_check(self):
        s = InProcess(auth_timeout=10.0, users=[{"user": "alice", "password": self.new_hash(b"pw-d4-b")}])
        self.addCleanup(s.stop)
        c = RawClient(s.port, connect=None)
        c.send(b'CONNECT {"user":"alice","pass":"pw-d4-b","verbose":false}\r\n'
               b"SUB foo 1\r\nPUB foo 2\r\nhi\r\n")
        self.assertTrue(s.wait_for(lambda: s.srv.clients and s.last_client().paused))
        c.send(b"PUB foo 3\r\nbye\r\n")          # arrives while paused: read after
        self.assertEqual(c.read_msg(TIMEOUT), (b"MSG", [b"foo", b"1", b"2"], b"hi"))
        self.assertEqual(c.read_msg(TIMEOUT), (b"MSG", [b"foo", b"1", b"3"], b"bye"))
        self.assertEqual(c.ping(TIMEOUT), b"")
        c.close()

    def test_route_socket_is_not_read_while_checking(self):
        s = InProcess(cluster_port=-1, cluster_name="hp",
                      cluster_username="ru", cluster_password=self.new_hash(b"pw-d4-c"),
                      cluster_auth_timeout=10.0)
        self.addCleanup(s.stop)
        r = socket.create_connection(("127.0.0.1", s.srv.cluster.port), timeout=TIMEOUT)
        self.addCleanup(r.close)
        obj = {"user": "ru", "pass": "pw-d4-c", "verbose": False, "pedantic": False,
               "headers": True, "name": "NPEERHP", "cluster": "hp"}
        info = {"server_id": "NPEERHP", "server_name": "NPEERHP", "version": "2.9.10",
                "proto": 2, "host": "127.0.0.1", "port": 1, "headers": True, "cluster": "hp"}
        r.sendall(b"CONNECT " + json.dumps(obj).encode() + b"\r\n"
                  + b"INFO " + json.dumps(info).encode() + b"\r\n")
        reading = s.wait_for(lambda: self._paused_route_reading(s))
        self.assertIsNotNone(reading, "the route's password check was not seen running")
        self.assertEqual(reading, [False])
        # once the check passes the route is read again: interest flows
        r.sendall(b"RS+ $G foo\r\nPING\r\n")
        r.settimeout(TIMEOUT)
        got = b""
        while b"PONG" not in got:
            try:
                d = r.recv(4096)
            except OSError:
                d = b""
            self.assertTrue(d, (got, s.log.getvalue()))
            got += d
        c = RawClient(s.port)
        c.send(b"PUB foo 2\r\nhi\r\n")
        c.ping()
        got = b""
        while b"RMSG $G foo 2\r\nhi\r\n" not in got:
            d = r.recv(4096)
            self.assertTrue(d, got)
            got += d
        c.close()

    @staticmethod
    def _paused_route_reading(s):
        """[is it registered for reading?] for a route whose check runs."""
        for rt in list(s.srv.cluster.conns.values()):
            if rt.paused and not rt.closed:
                try:
                    return [bool(s.srv.reactor.sel.get_key(rt.sock).events & EVENT_READ)]
                except KeyError:
                    return [False]
        return None


class TestClosedConnectionBuffers(unittest.TestCase):
    """D8: a closed subscriber's unsent output stayed referenced by the
    cache of every idle publisher that had sent to it."""

    def test_closed_subscribers_buffer_is_released_at_once(self):
        s = InProcess()
        self.addCleanup(s.stop)
        sub = socket.socket()
        sub.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sub.connect(("127.0.0.1", s.port))
        sub.recv(4096)
        sub.sendall(b'CONNECT {"verbose":false}\r\nSUB big 1\r\nPING\r\n')
        self.assertIn(b"PONG", drain(sub))
        scid = s.call(lambda: s.last_client().cid)
        pub = RawClient(s.port)
        pub.ping()
        pcid = s.call(lambda: s.last_client().cid)
        chunk = b"PUB big 100000\r\n" + b"x" * 100000 + b"\r\n"
        pub.send(chunk * 50)                    # 5 MB the subscriber never reads
        pub.ping()
        sc = s.call(lambda: s.srv.clients[scid])
        self.assertGreater(s.call(lambda: len(sc.wbuf)), 1 * MiB)
        sub.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sub.close()                             # leaves with a reset
        self.assertTrue(s.wait_for(lambda: sc.closed))
        # the publisher sent nothing since: its cache still names that buffer
        pinned = s.call(lambda: sum(len(wb) for ent in s.srv.clients[pcid].inb.pcache.values()
                                    for wb, _ in ent[1]))
        self.assertEqual(s.call(lambda: len(sc.wbuf)), 0)
        self.assertEqual(pinned, 0)
        pub.close()


class TestWireDetails(ServerCase):
    """M1, M2, M6 and UNSUB <sid> <max>, checked against nats-server 2.9.10
    and 2.15.1 over a socket (both give the bytes expected here)."""


    def test_m1_only_space_and_tab_separate_arguments(self):
        c = self.client()
        c.send(b"SUB foo 1\r\nSUB > 2\r\n")
        c.send(b"PUB foo\x0bbar 2\r\nhi\r\nPUB foo\x0cbar 2\r\nhi\r\nPUB foo\tbar 2\r\nhi\r\n")
        # \x0b and \x0c are part of the subject (only `>` matches it); a tab
        # separates the reply
        self.assertEqual(sorted(frames(c.ping())),
                         sorted([b"MSG foo 1 bar 2\r\nhi\r\n", b"MSG foo 2 bar 2\r\nhi\r\n",
                                 b"MSG foo\x0bbar 2 2\r\nhi\r\n", b"MSG foo\x0cbar 2 2\r\nhi\r\n"]))

    def test_m2_empty_token_subject_is_not_delivered(self):
        c = self.client()
        c.send(b"SUB foo.> 1\r\nSUB > 2\r\n")
        for subj in (b"foo..bar", b".foo", b"foo.", b"foo.bar..", b".."):
            c.send(b"PUB %s 2\r\nhi\r\n" % subj)
            c.send(b"PUB %s 2\r\nhi\r\n" % subj)        # the cached path too
        c.send(b"PUB foo.ok 2\r\nok\r\n")
        self.assertEqual(sorted(frames(c.ping())),
                         [b"MSG foo.ok 1 2\r\nok\r\n", b"MSG foo.ok 2 2\r\nok\r\n"])
        # pedantic keeps its error, and the connection
        p = self.client(b'{"verbose":false,"pedantic":true}')
        p.send(b"SUB > 1\r\nPUB foo..bar 2\r\nhi\r\nPUB foo.x 2\r\nok\r\n")
        self.assertEqual(p.ping(), b"-ERR 'Invalid Publish Subject'\r\nMSG foo.x 1 2\r\nok\r\n")

    def test_m2_empty_token_subject_is_not_forwarded_to_routes(self):
        with ServerProcess("--cluster", "nats://127.0.0.1:-1", "--cluster_name", "m2") as srv:
            m = srv.wait_log(r"Listening for route connections on [^:]+:(\d+)")
            self.assertTrue(m)
            import re
            port = int(re.search(r"Listening for route connections on [^:]+:(\d+)", srv.output()).group(1))
            r = RawClient(port, connect=None)
            self.addCleanup(r.close)
            obj = {"verbose": False, "pedantic": False, "headers": True, "name": "NPEERM2", "cluster": "m2"}
            info = {"server_id": "NPEERM2", "server_name": "NPEERM2", "version": "2.9.10", "proto": 2,
                    "host": "127.0.0.1", "port": 1, "headers": True, "cluster": "m2"}
            r.send(b"CONNECT " + json.dumps(obj).encode() + b"\r\nINFO " + json.dumps(info).encode()
                   + b"\r\nRS+ $G >\r\n")
            r.ping()
            c = RawClient(srv.port)
            self.addCleanup(c.close)
            c.send(b"PUB foo..bar 2\r\nhi\r\nPUB foo.bar 2\r\nok\r\n")
            c.ping()
            got = r.read_until(b"RMSG $G foo.bar 2\r\nok\r\n")
            self.assertNotIn(b"foo..bar", got)

    def test_m6_hpub_with_empty_header_block_is_a_plain_msg(self):
        c = self.client(b'{"verbose":false,"pedantic":false,"headers":true}')
        c.send(b"SUB foo 1\r\nHPUB foo 0 2\r\nhi\r\nHPUB foo r 0 2\r\nhi\r\n")
        self.assertEqual(c.ping(), b"MSG foo 1 2\r\nhi\r\nMSG foo 1 r 2\r\nhi\r\n")

    def test_unsub_max_already_reached_removes_at_once(self):
        c = self.client()
        c.send(b"SUB foo 1\r\nPUB foo 1\r\na\r\nPUB foo 1\r\nb\r\n")
        self.assertEqual(c.ping(), b"MSG foo 1 1\r\na\r\nMSG foo 1 1\r\nb\r\n")
        c.send(b"UNSUB 1 2\r\nPUB foo 1\r\nc\r\n")
        self.assertEqual(c.ping(), b"")

    def test_unsub_max_counts_messages_already_delivered(self):
        c = self.client()
        c.send(b"SUB foo 1\r\nSUB foo 2\r\nSUB q workers 3\r\n")
        c.send(b"PUB foo 1\r\na\r\nPUB q 1\r\na\r\nPUB q 2\r\nbb\r\n")   # q: another size
        self.assertEqual(sorted(frames(c.ping())),
                         [b"MSG foo 1 1\r\na\r\n", b"MSG foo 2 1\r\na\r\n",
                          b"MSG q 3 1\r\na\r\n", b"MSG q 3 2\r\nbb\r\n"])
        c.send(b"UNSUB 1 2\r\nUNSUB 3 3\r\n")
        for _ in range(3):
            c.send(b"PUB foo 1\r\nb\r\nPUB q 1\r\nb\r\n")
        self.assertEqual(sorted(frames(c.ping())),
                         [b"MSG foo 1 1\r\nb\r\n"] + [b"MSG foo 2 1\r\nb\r\n"] * 3
                         + [b"MSG q 3 1\r\nb\r\n"])


def frames(data):
    """Split MSG frames: [b"MSG ... size\\r\\npayload\\r\\n", ...]."""
    out = []
    pos = 0
    while pos < len(data):
        eol = data.index(b"\r\n", pos)
        size = int(data[pos:eol].split(b" ")[-1])
        end = eol + 2 + size + 2
        out.append(data[pos:end])
        pos = end
    return out
