"""Internal subscriptions (gnats/internal.py): server-side subscribers with a
callback, fed by real clients over loopback, in in-process servers
(gnats.run), alone and in a cluster."""

import logging
import threading
import unittest

import gnats
from gnats import internal
from tests.util import RawClient, parse_msgs, wait_for

TIMEOUT = 15.0


def on_reactor(srv, fn, *args):
    """Run fn(*args) on the embedded server's reactor thread; its result."""
    done = threading.Event()
    out = []

    def call():
        try:
            out.append(fn(*args))
        finally:
            done.set()
    srv._server.reactor.call_soon_threadsafe(call)
    if not done.wait(TIMEOUT):
        raise TimeoutError("the reactor did not run the call")
    return out[0] if out else None


def gacc(srv):
    return srv._server.accounts.global_account


class Recorder:
    """A callback that records what it got (on the reactor thread)."""

    def __init__(self):
        self.calls = []

    def __call__(self, sub, subject, reply, hdr, msg, client):
        self.calls.append((subject, reply, hdr, msg, client))


class InternalSubsSingle(unittest.TestCase):

    def setUp(self):
        self.srv = gnats.run()
        self.addCleanup(self.srv.stop)
        self.server = self.srv._server

    def client(self, connect=b'{"verbose":false,"pedantic":false,"headers":true}'):
        c = RawClient(self.srv.port, connect)
        self.addCleanup(c.close)
        return c

    def subscribe(self, subject, cb, queue=None):
        return on_reactor(self.srv, self.server.internal_subscribe, gacc(self.srv), subject, cb, queue)

    def test_request_answered_by_a_callback(self):
        server = self.server

        def echo(sub, subject, reply, hdr, msg, client):
            seen.append((subject, client.kind, client.cid))
            server.publish_internal(sub.client.account, reply, None, None, b"echo:" + msg)
        seen = []
        self.subscribe("svc.echo", echo)
        c = self.client()
        c.send(b"SUB _INBOX.1 1\r\nPUB svc.echo _INBOX.1 5\r\nhello\r\n")
        op, args, payload = c.read_msg(TIMEOUT)
        self.assertEqual((op, args, payload), (b"MSG", [b"_INBOX.1", b"1", b"10"], b"echo:hello"))
        self.assertEqual(len(seen), 1)
        self.assertEqual(seen[0][:2], ("svc.echo", "client"))

    def test_wildcards_headers_and_no_reply(self):
        rec = Recorder()
        self.subscribe("ev.>", rec)
        c = self.client()
        hdr = b"NATS/1.0\r\nA: 1\r\n\r\n"
        c.send(b"PUB ev.a 3\r\nabc\r\nHPUB ev.b.c R %d %d\r\n%sxy\r\n" % (len(hdr), len(hdr) + 2, hdr))
        c.ping(TIMEOUT)
        wait_for(lambda: len(rec.calls) == 2, TIMEOUT)
        self.assertEqual(rec.calls[0][:4], ("ev.a", None, None, b"abc"))
        self.assertEqual(rec.calls[1][:4], ("ev.b.c", "R", hdr, b"xy"))

    def test_callbacks_deferred_fifo_never_reentrant(self):
        server = self.server
        order = []
        depth = [0, 0]      # current, deepest

        def first(sub, subject, reply, hdr, msg, client):
            depth[0] += 1
            depth[1] = max(depth[1], depth[0])
            order.append("first:" + msg.decode())
            # queued behind this callback, not run inside it
            server.publish_internal(gacc(self.srv), "b.x", None, None, msg + b"-1")
            server.publish_internal(gacc(self.srv), "b.x", None, None, msg + b"-2")
            order.append("first-done:" + msg.decode())
            depth[0] -= 1

        def second(sub, subject, reply, hdr, msg, client):
            depth[0] += 1
            depth[1] = max(depth[1], depth[0])
            order.append("second:" + msg.decode())
            self.assertIsNone(client)       # an internal publisher
            depth[0] -= 1
        self.subscribe("a.x", first)
        self.subscribe("b.x", second)
        c = self.client()
        c.send(b"PUB a.x 1\r\nm\r\nPUB a.x 1\r\nn\r\n")
        c.ping(TIMEOUT)
        wait_for(lambda: len(order) == 8, TIMEOUT)
        self.assertEqual(order, ["first:m", "first-done:m", "second:m-1", "second:m-2",
                                 "first:n", "first-done:n", "second:n-1", "second:n-2"])
        self.assertEqual(depth[1], 1)

    def test_publish_internal_reaches_client_subscribers(self):
        c = self.client()
        c.send(b"SUB out.* 7\r\n")
        c.ping(TIMEOUT)
        hdr = b"NATS/1.0\r\nK: v\r\n\r\n"
        n = on_reactor(self.srv, self.server.publish_internal, gacc(self.srv), "out.1", "rep", hdr, b"data")
        self.assertEqual(n, 1)
        op, args, payload = c.read_msg(TIMEOUT)
        self.assertEqual(op, b"HMSG")
        self.assertEqual(args, [b"out.1", b"7", b"rep", b"%d" % len(hdr), b"%d" % (len(hdr) + 4)])
        self.assertEqual(payload, hdr + b"data")
        # a client without headers gets the payload only
        plain = self.client(b'{"verbose":false,"pedantic":false}')
        plain.send(b"SUB out.2 1\r\n")
        plain.ping(TIMEOUT)
        on_reactor(self.srv, self.server.publish_internal, gacc(self.srv), "out.2", None, hdr, b"zz")
        self.assertEqual(plain.read_msg(TIMEOUT), (b"MSG", [b"out.2", b"1", b"2"], b"zz"))

    def test_raising_callback_is_logged_and_serving_goes_on(self):
        records = []
        handler = logging.Handler()
        handler.emit = records.append
        logging.getLogger("gnats").addHandler(handler)
        self.addCleanup(logging.getLogger("gnats").removeHandler, handler)
        logging.getLogger("gnats").setLevel(logging.DEBUG)
        rec = Recorder()

        def bad(sub, subject, reply, hdr, msg, client):
            raise RuntimeError("boom")
        self.subscribe("x", bad)
        self.subscribe("x", rec)
        c = self.client()
        c.send(b"SUB x 1\r\nPUB x 2\r\nhi\r\nPUB x 2\r\nho\r\n")
        msgs = []
        wait_for(lambda: msgs.extend(c.drain(TIMEOUT)) or len(msgs) >= 2, TIMEOUT)
        self.assertEqual([m[2] for m in msgs], [b"hi", b"ho"])
        wait_for(lambda: len(rec.calls) == 2, TIMEOUT)
        texts = [r.getMessage() for r in records]
        self.assertEqual(sum("boom" in t for t in texts), 2, texts)
        self.assertTrue(self.srv.running)

    def test_queue_group_shared_with_clients(self):
        rec1, rec2 = Recorder(), Recorder()
        self.subscribe("work", rec1, "q")
        self.subscribe("work", rec2, "q")
        member = self.client()
        member.send(b"SUB work q 1\r\n")
        member.ping(TIMEOUT)
        pub = self.client()
        pub.send(b"".join(b"PUB work 2\r\n%02d\r\n" % i for i in range(60)))
        pub.ping(TIMEOUT)
        got = []
        wait_for(lambda: got.extend(member.drain(TIMEOUT)) or
                 len(got) + len(rec1.calls) + len(rec2.calls) == 60, TIMEOUT)
        self.assertEqual(len(got) + len(rec1.calls) + len(rec2.calls), 60)
        payloads = sorted([m[2] for m in got] + [c[3] for c in rec1.calls + rec2.calls])
        self.assertEqual(payloads, [b"%02d" % i for i in range(60)])

    def test_unsubscribe_stops_callbacks(self):
        rec = Recorder()
        sub = self.subscribe("u", rec)
        c = self.client()
        c.send(b"PUB u 1\r\n1\r\n")
        c.ping(TIMEOUT)
        wait_for(lambda: len(rec.calls) == 1, TIMEOUT)
        on_reactor(self.srv, self.server.internal_unsubscribe, sub)
        c.send(b"PUB u 1\r\n2\r\n")
        c.ping(TIMEOUT)
        self.assertEqual(on_reactor(self.srv, lambda: len(rec.calls)), 1)

    def test_fast_path_publisher_sees_a_new_internal_sub(self):
        # a publisher whose line is cached on the fast path must reach an
        # internal subscription added later (the cached entry is dropped)
        c = self.client()
        c.send(b"SUB f 1\r\n" + b"PUB f 1\r\na\r\n" * 3)
        self.assertEqual(len(c.drain(TIMEOUT)), 3)
        rec = Recorder()
        self.subscribe("f", rec)
        c.send(b"PUB f 1\r\na\r\n" * 3)
        self.assertEqual(len(c.drain(TIMEOUT)), 3)
        wait_for(lambda: len(rec.calls) == 3, TIMEOUT)

    def test_queue_is_bounded_in_bytes(self):
        self.addCleanup(setattr, internal, "MAX_PENDING", internal.MAX_PENDING)
        internal.MAX_PENDING = 20000
        server = self.server
        rec = Recorder()

        def burst(sub, subject, reply, hdr, msg, client):
            for i in range(50):
                server.publish_internal(gacc(self.srv), "sink", None, None, b"x" * 1000)
        self.subscribe("burst", burst)
        self.subscribe("sink", rec)
        c = self.client()
        c.send(b"PUB burst 0\r\n\r\n")
        c.ping(TIMEOUT)
        wait_for(lambda: server.internals.dropped > 0, TIMEOUT)
        n = on_reactor(self.srv, lambda: len(rec.calls))
        # 20000 bytes hold 17 entries of ~1125 bytes; the rest were dropped
        self.assertEqual(n + server.internals.dropped, 50)
        self.assertTrue(10 <= n < 20, n)
        self.assertEqual(server.internals.pending_bytes, 0)


class InternalSubsRouted(unittest.TestCase):

    def setUp(self):
        self.a = gnats.run(cluster={"name": "isubs", "port": -1})
        self.addCleanup(self.a.stop)
        self.b = gnats.run(cluster={"name": "isubs", "port": -1, "routes": [self.a.cluster_url]})
        self.addCleanup(self.b.stop)
        wait_for(lambda: self.a.route_count == 1 and self.b.route_count == 1, TIMEOUT)

    def test_request_across_a_route(self):
        server = self.a._server

        def svc(sub, subject, reply, hdr, msg, client):
            kinds.append(client.kind)
            server.publish_internal(sub.client.account, reply, None, None, msg.upper())
        kinds = []
        on_reactor(self.a, server.internal_subscribe, gacc(self.a), "svc.up", svc)
        c = RawClient(self.b.port)
        self.addCleanup(c.close)
        c.send(b"SUB _INBOX.r 1\r\n")
        c.ping(TIMEOUT)
        # both interests have crossed the route when a request is answered
        got = []

        def ask():
            c.send(b"PUB svc.up _INBOX.r 3\r\nabc\r\n")
            got.extend(c.drain(TIMEOUT))
            return got
        wait_for(ask, TIMEOUT, interval=0.2)
        self.assertEqual(got[0][2], b"ABC")
        self.assertEqual(kinds[0], "route")

    def test_internal_publish_reaches_remote_subscriber_once(self):
        c = RawClient(self.b.port)
        self.addCleanup(c.close)
        c.send(b"SUB news 1\r\nSUB news 2\r\n")
        c.ping(TIMEOUT)
        server = self.a._server
        wait_for(lambda: on_reactor(self.a, lambda: bool(gacc(self.a).sublist.match("news").plain)), TIMEOUT)
        self.assertEqual(on_reactor(self.a, server.publish_internal, gacc(self.a), "news", None, None, b"n1"), 1)
        msgs = []
        wait_for(lambda: msgs.extend(c.drain(TIMEOUT)) or len(msgs) >= 2, TIMEOUT)
        self.assertEqual(sorted(m[1][1] for m in msgs), [b"1", b"2"])
        self.assertEqual([m[2] for m in msgs], [b"n1", b"n1"])

    def test_unrouted_internal_sub_stays_local(self):
        rec = Recorder()
        server = self.a._server
        on_reactor(self.a, server.internal_subscribe, gacc(self.a), "local.only", rec, None, False)
        on_reactor(self.a, server.internal_subscribe, gacc(self.a), "marker", Recorder())
        wait_for(lambda: on_reactor(self.b, lambda: bool(gacc(self.b).sublist.match("marker").plain)), TIMEOUT)
        self.assertEqual(on_reactor(self.b, lambda: len(gacc(self.b).sublist.match("local.only").plain)), 0)


if __name__ == "__main__":
    unittest.main()
