"""JetStream across leaf connections (issue 22, "JetStream across a leaf
(domains)"): a hub with JetStream domain "hub" and a leaf with domain
"leaf"; a client on either side reaches the other side's JetStream as
`$JS.<domain>.API` (stream create, publish with acks naming the domain,
a pull consumer with acks crossing back, stream and consumer info, a
direct get), while the plain `$JS.API` stays with the server the client is
on. Run on gnatsd.py <-> gnatsd.py, a gnatsd.py leaf of a Go 2.15 hub, a
Go 2.15 leaf of a gnatsd.py hub, and Go <-> Go (the reference: the same
assertions hold there). Also: accounts bound at both ends of the leaf
connection, a leaf without JetStream, and the domain API across a
gnatsd.py cluster route.
"""

import asyncio
import json
import shutil
import tempfile
import time
import unittest

import nats
import nats.errors
import nats.js.errors
from nats.js.api import StreamConfig

from tests.test_leaf import LeafCase, leaf_port, leaf_subjects, monitor
from tests.util import GO_SERVER_215, HAVE_GO_215, flushed, needs, wait_for

WAIT = 20.0         # every wait for a condition (a loaded 2-core CI host)
N = 20              # messages per stream


def js_block(domain, store_dir, enabled=True):
    if not enabled:
        return ""
    d = 'domain: "%s", ' % domain if domain else ""
    return 'jetstream { %sstore_dir: "%s" }\n' % (d, store_dir)


def hub_conf(domain="hub", store_dir="", js=True, extra="", leaf_auth=""):
    return ("server_name: hub\n%sleafnodes { host: 127.0.0.1, port: -1\n %s }\n%s"
            % (js_block(domain, store_dir, js), leaf_auth, extra))


def leaf_conf(port, domain="leaf", store_dir="", js=True, extra="", cred="", remote_extra=""):
    return ('server_name: leaf\n%sleafnodes { remotes = [ { url: "nats-leaf://%s127.0.0.1:%d"\n %s } ] }\n%s'
            % (js_block(domain, store_dir, js), cred, port, remote_extra, extra))


async def connect(proc, user=""):
    return await nats.connect("nats://%s127.0.0.1:%d" % (user + "@" if user else "", proc.port),
                              allow_reconnect=False, connect_timeout=WAIT)


async def api_info(nc, prefix, timeout=2.0):
    """$JS...API.INFO through `prefix` ("$JS.API", "$JS.leaf.API"): the
    decoded answer, or None when nobody answers."""
    try:
        msg = await nc.request(prefix + ".INFO", b"", timeout=timeout)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return None
    return json.loads(msg.data)


async def wait_api(nc, domain):
    """Until $JS.<domain>.API.INFO ($JS.API.INFO for None) is answered by
    that domain (the link is up and its interest known), at most WAIT s."""
    deadline = time.monotonic() + WAIT
    prefix = "$JS.%s.API" % domain if domain else "$JS.API"
    while True:
        info = await api_info(nc, prefix, timeout=1.0)
        if info is not None and info.get("domain") == domain:
            return info
        if time.monotonic() > deadline:
            raise AssertionError("$JS.%s.API not answered within %ss (last: %r)" % (domain, WAIT, info))
        await asyncio.sleep(0.1)


async def publish_first(js, subject, payload):
    """The first publish to a stream made across the link: retried while
    the publisher's server has not yet heard of the stream's subjects (no
    responders: the message reached no stream, so nothing is stored twice)."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return await js.publish(subject, payload, timeout=5.0)
        except nats.js.errors.NoStreamResponseError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


class LeafDomainCase(LeafCase):
    """Helpers: a JetStream store directory per server, the async body run
    with one deadline."""

    def store(self):
        d = tempfile.mkdtemp(prefix="gnatsd-jsleaf-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def run_async(self, coro):
        return asyncio.run(asyncio.wait_for(coro, 120))

    def wait_leaf_up(self, *procs):
        for p in procs:
            self.wait_leafs(p, 1)

    async def cross_domain_round(self, near, far, far_domain, near_domain, stream, subj):
        """From `near` (a nats-py connection on one side) to the JetStream
        of the other side (`far`, domain far_domain): create a stream,
        publish N messages, read them with a pull consumer, ack them, and
        check the stream and consumer from both sides."""
        await wait_api(near, far_domain)
        js = near.jetstream(domain=far_domain)
        si = await js.add_stream(StreamConfig(name=stream, subjects=[subj + ".>"], allow_direct=True))
        self.assertEqual(si.config.name, stream)
        first = await publish_first(js, subj + ".0", b"m00")
        self.assertEqual((first.stream, first.seq, first.domain), (stream, 1, far_domain))
        for i in range(1, N):
            ack = await js.publish("%s.%d" % (subj, i), b"m%02d" % i, timeout=5.0)
            self.assertEqual((ack.stream, ack.seq, ack.domain), (stream, i + 1, far_domain))
        # the plain API is the near side's own JetStream: no such stream there
        local = near.jetstream()
        with self.assertRaises(nats.js.errors.NotFoundError):
            await local.stream_info(stream)
        self.assertEqual((await local.account_info()).domain, near_domain)
        self.assertEqual((await js.account_info()).domain, far_domain)
        # the far side's own clients see it on their plain API
        fjs = far.jetstream()
        self.assertEqual((await fjs.stream_info(stream)).state.messages, N)
        # a direct get by domain
        got = await js.get_msg(stream, seq=3, direct=True)
        self.assertEqual((got.subject, got.data), (subj + ".2", b"m02"))
        # a pull consumer by domain: MSG.NEXT across, messages back, acks across
        psub = await js.pull_subscribe(subj + ".>", durable="d", stream=stream)
        await flushed(near)
        datas = []
        deadline = time.monotonic() + WAIT
        while len(datas) < N and time.monotonic() < deadline:
            try:
                msgs = await psub.fetch(N - len(datas), timeout=2.0)
            except nats.errors.TimeoutError:
                continue
            for m in msgs:
                datas.append(m.data)
                await m.ack()
        self.assertEqual(datas, [b"m%02d" % i for i in range(N)])
        await flushed(near)
        deadline = time.monotonic() + WAIT
        while True:
            ci = await js.consumer_info(stream, "d")
            if ci.ack_floor.stream_seq == N or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        self.assertEqual((ci.delivered.stream_seq, ci.ack_floor.stream_seq, ci.num_ack_pending,
                          ci.num_pending), (N, N, 0, 0))
        info = await js.stream_info(stream)
        self.assertEqual((info.state.messages, info.state.first_seq, info.state.last_seq), (N, 1, N))
        # nothing more arrives
        with self.assertRaises(nats.errors.TimeoutError):
            await psub.fetch(1, timeout=0.5)


class Pairing:
    """A hub (domain "hub") and its leaf (domain "leaf"); subclasses name
    the executables (None: gnatsd.py)."""

    hub_exe = None
    leaf_exe = None

    def setUp(self):
        self.hub = self.proc(hub_conf(store_dir=self.store()), self.hub_exe)
        self.leaf = self.proc(leaf_conf(leaf_port(self.hub), store_dir=self.store()), self.leaf_exe)
        self.wait_leaf_up(self.hub, self.leaf)

    def test_hub_client_uses_the_leaf_domain(self):
        async def body():
            h, lc = await connect(self.hub), await connect(self.leaf)
            try:
                await self.cross_domain_round(h, lc, "leaf", "hub", "LS", "ls")
            finally:
                await h.close()
                await lc.close()
        self.run_async(body())

    def test_leaf_client_uses_the_hub_domain(self):
        async def body():
            h, lc = await connect(self.hub), await connect(self.leaf)
            try:
                await self.cross_domain_round(lc, h, "hub", "leaf", "HS", "hs")
            finally:
                await h.close()
                await lc.close()
        self.run_async(body())

    def test_plain_api_stays_on_each_side(self):
        async def body():
            h, lc = await connect(self.hub), await connect(self.leaf)
            try:
                await wait_api(h, "leaf")
                await wait_api(lc, "hub")
                for nc, mine, other in ((h, "hub", "leaf"), (lc, "leaf", "hub")):
                    # answered once, by this side: a second answer from the
                    # other side would show as a second message
                    inbox = nc.new_inbox()
                    sub = await nc.subscribe(inbox)
                    await flushed(nc)
                    await nc.publish("$JS.API.INFO", b"", reply=inbox)
                    first = await sub.next_msg(timeout=5.0)
                    self.assertEqual(json.loads(first.data)["domain"], mine)
                    with self.assertRaises(nats.errors.TimeoutError):
                        await sub.next_msg(timeout=1.0)
                    await sub.unsubscribe()
                    self.assertEqual((await api_info(nc, "$JS.%s.API" % other))["domain"], other)
                    # the same stream name on both sides: two streams
                    await nc.jetstream().add_stream(name="SAME", subjects=["same.%s" % mine])
                for nc, mine in ((h, "hub"), (lc, "leaf")):
                    si = await nc.jetstream().stream_info("SAME")
                    self.assertEqual(si.config.subjects, ["same.%s" % mine])
            finally:
                await h.close()
                await lc.close()
        self.run_async(body())

    def test_jetstream_subjects_are_not_told_across(self):
        """Interest in $JS.API.* never crosses (nats-server denies it);
        the domain API's does."""
        async def body():
            h, lc = await connect(self.hub), await connect(self.leaf)
            try:
                await wait_api(h, "leaf")
                await wait_api(lc, "hub")
            finally:
                await h.close()
                await lc.close()
        self.run_async(body())
        for proc, other in ((self.hub, "leaf"), (self.leaf, "hub")):
            subs = leaf_subjects(proc)
            self.assertIn("$JS.%s.API.INFO" % other, subs)
            # (a Go leaf lists its Go hub's `$JS.API.>`, the interest of an
            # import it never sends anything to)
            self.assertEqual([s for s in subs if s.startswith(("$JS.API.", "$KV.", "$OBJ."))
                              and s != "$JS.API.>"], [], subs)


class TestPyLeafPyHub(Pairing, LeafDomainCase):
    pass


@needs(HAVE_GO_215, "nats-server 2.15 is not installed")
class TestPyLeafGoHub(Pairing, LeafDomainCase):
    hub_exe = GO_SERVER_215


@needs(HAVE_GO_215, "nats-server 2.15 is not installed")
class TestGoLeafPyHub(Pairing, LeafDomainCase):
    leaf_exe = GO_SERVER_215


@needs(HAVE_GO_215, "nats-server 2.15 is not installed")
class TestGoLeafGoHub(Pairing, LeafDomainCase):
    """The reference: the same assertions against two nats-servers."""
    hub_exe = leaf_exe = GO_SERVER_215


class OtherTopologies:
    """hub_exe: the hub's server (the leaf is gnatsd.py), or the leaf's
    with `leaf_exe`."""

    hub_exe = None
    leaf_exe = None

    def test_leaf_without_jetstream_reaches_the_hub_by_domain_only(self):
        hub = self.proc(hub_conf(store_dir=self.store()), self.hub_exe)
        leaf = self.proc(leaf_conf(leaf_port(hub), js=False), self.leaf_exe)
        self.wait_leaf_up(hub, leaf)

        async def body():
            lc = await connect(leaf)
            try:
                await wait_api(lc, "hub")
                # no JetStream here, and the hub's plain API is the hub's own
                with self.assertRaises(nats.errors.NoRespondersError):
                    await lc.request("$JS.API.INFO", b"", timeout=5.0)
                js = lc.jetstream(domain="hub")
                await js.add_stream(name="NJ", subjects=["nj"])
                ack = await publish_first(js, "nj", b"x")
                self.assertEqual((ack.stream, ack.seq, ack.domain), ("NJ", 1, "hub"))
                self.assertEqual((await js.stream_info("NJ")).state.messages, 1)
            finally:
                await lc.close()
        self.run_async(body())

    def test_accounts_bound_at_both_ends(self):
        """The leaf's account L (remote `account`) is the hub's account A
        (the leafnode user's `account`): A's clients reach L's JetStream by
        domain; the hub's account B does not."""
        hub = self.proc(hub_conf(
            store_dir=self.store(),
            leaf_auth="authorization { users = [ { user: lu, password: lp, account: A } ] }",
            extra="accounts { A: { jetstream: enabled, users: [ { user: a, password: a } ] }\n"
                  " B: { users: [ { user: b, password: b } ] } }\n"),
            self.hub_exe)
        leaf = self.proc(leaf_conf(
            leaf_port(hub), store_dir=self.store(), cred="lu:lp@", remote_extra="account: L",
            extra="accounts { L: { jetstream: enabled, users: [ { user: l, password: l } ] } }\n"),
            self.leaf_exe)
        self.wait_leaf_up(hub, leaf)
        self.assertEqual(monitor(hub, "/leafz")["leafs"][0]["account"], "A")

        async def body():
            a, lc, g = await connect(hub, "a:a"), await connect(leaf, "l:l"), await connect(hub, "b:b")
            try:
                await self.cross_domain_round(a, lc, "leaf", "hub", "AS", "as")
                with self.assertRaises(nats.errors.NoRespondersError):
                    await g.request("$JS.leaf.API.INFO", b"", timeout=5.0)
                # and back: L's client reaches A's JetStream
                info = await wait_api(lc, "hub")
                self.assertEqual(info["streams"], 0)
            finally:
                for nc in (a, lc, g):
                    await nc.close()
        self.run_async(body())

    def test_same_domain_on_both_sides_stays_local(self):
        """The same domain on both sides: $JS.x.API and $JS.API are each
        side's own, answered once (a second answer would come from the
        other side)."""
        hub = self.proc(hub_conf(domain="x", store_dir=self.store()), self.hub_exe)
        leaf = self.proc(leaf_conf(leaf_port(hub), domain="x", store_dir=self.store()), self.leaf_exe)
        self.wait_leaf_up(hub, leaf)

        async def body():
            h, lc = await connect(hub), await connect(leaf)
            try:
                await h.jetstream().add_stream(name="ONLYHUB", subjects=["onlyhub"])
                await lc.jetstream().add_stream(name="ONLYLEAF", subjects=["onlyleaf"])
                await flushed(h, lc)
                for nc, mine in ((h, "ONLYHUB"), (lc, "ONLYLEAF")):
                    inbox = nc.new_inbox()
                    sub = await nc.subscribe(inbox)
                    await flushed(nc)
                    for prefix in ("$JS.API", "$JS.x.API") * 5:
                        await nc.publish(prefix + ".STREAM.NAMES", b"", reply=inbox)
                        got = json.loads((await sub.next_msg(timeout=5.0)).data)
                        self.assertEqual(got["streams"], [mine])
                    with self.assertRaises(nats.errors.TimeoutError):
                        await sub.next_msg(timeout=1.0)
                    await sub.unsubscribe()
            finally:
                await h.close()
                await lc.close()
        self.run_async(body())

    def test_system_account_leaf_keeps_all_jetstream_subjects(self):
        """A leaf connection bound to the system account, different
        domains: nats-server's notices, and the domain API still crosses
        in the JetStream account."""
        sys_auth = 'authorization { users = [ { user: s, password: s, account: "$SYS" } ] }'
        hub = self.proc(hub_conf(store_dir=self.store(), leaf_auth=sys_auth), self.hub_exe)
        leaf = self.proc(leaf_conf(leaf_port(hub), store_dir=self.store(), cred="s:s@",
                                   remote_extra='account: "$SYS"'), self.leaf_exe)
        self.wait_leaf_up(hub, leaf)
        for p in (hub, leaf):
            self.assertTrue(p.wait_log(r"lid:\d+ - System account connected from", WAIT), p.output()[-2000:])
            self.assertTrue(p.wait_log(r"lid:\d+ - JetStream not extended, domains differ", WAIT),
                            p.output()[-2000:])
        self.assertEqual(monitor(hub, "/leafz")["leafs"][0]["account"], "$SYS")


class TestOtherTopologiesPy(LeafDomainCase, OtherTopologies):
    pass


@needs(HAVE_GO_215, "nats-server 2.15 is not installed")
class TestOtherTopologiesGoHub(LeafDomainCase, OtherTopologies):
    hub_exe = GO_SERVER_215


@needs(HAVE_GO_215, "nats-server 2.15 is not installed")
class TestOtherTopologiesGoLeaf(LeafDomainCase, OtherTopologies):
    leaf_exe = GO_SERVER_215


class TestAcrossARoute(LeafDomainCase):
    """A gnatsd.py cluster as the hub: the leaf connects to n1 (no
    JetStream), the hub's JetStream (domain "hub") is on n2; requests and
    replies cross the route and the leaf connection both ways."""

    def test_domains_across_route_and_leaf(self):
        n1 = self.proc(hub_conf(js=False, extra="cluster { listen: 127.0.0.1:-1, name: hubc }\n"))
        n2 = self.proc("server_name: n2\n%scluster { listen: 127.0.0.1:-1, name: hubc, routes: "
                       '["nats://127.0.0.1:%d"] }\n' % (js_block("hub", self.store()), n1.cluster_port))
        self.assertTrue(wait_for(lambda: monitor(n1, "/routez")["num_routes"] == 1, WAIT))
        leaf = self.proc(leaf_conf(leaf_port(n1), store_dir=self.store()))
        self.wait_leaf_up(n1, leaf)

        async def body():
            c2, lc = await connect(n2), await connect(leaf)
            try:
                await self.cross_domain_round(c2, lc, "leaf", "hub", "RS", "rs")
                await self.cross_domain_round(lc, c2, "hub", "leaf", "RH", "rh")
            finally:
                await c2.close()
                await lc.close()
        self.run_async(body())


    def test_push_consumer_delivers_across_a_route(self):
        """A consumer's messages reach a subscriber on another server with
        the stream subject and an ack reply that works (jsremote.py), flow
        control and heartbeats on."""
        n1 = self.proc("server_name: n1\ncluster { listen: 127.0.0.1:-1, name: c }\n")
        n2 = self.proc("server_name: n2\n%scluster { listen: 127.0.0.1:-1, name: c, routes: "
                       '["nats://127.0.0.1:%d"] }\n' % (js_block("", self.store()), n1.cluster_port))
        self.assertTrue(wait_for(lambda: monitor(n1, "/routez")["num_routes"] == 1, WAIT))

        async def body():
            c1, c2 = await connect(n1), await connect(n2)
            try:
                js2 = c2.jetstream()
                await js2.add_stream(name="P", subjects=["p.>"])
                for i in range(N):
                    await js2.publish("p.%d" % i, b"x%02d" % i)
                # n1 has no JetStream: the API requests cross the route too
                await wait_api(c1, None)
                sub = await c1.jetstream().subscribe("p.>", stream="P", durable="pc", flow_control=True,
                                                     idle_heartbeat=1.0)
                got = []
                for _ in range(N):
                    m = await sub.next_msg(timeout=WAIT)
                    got.append((m.subject, m.data))
                    await m.ack()
                self.assertEqual(got, [("p.%d" % i, b"x%02d" % i) for i in range(N)])
                await flushed(c1)
                deadline = time.monotonic() + WAIT
                while True:
                    ci = await js2.consumer_info("P", "pc")
                    if ci.ack_floor.stream_seq == N or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                self.assertEqual((ci.ack_floor.stream_seq, ci.num_ack_pending, ci.num_pending), (N, 0, 0))
            finally:
                await c1.close()
                await c2.close()
        self.run_async(body())


if __name__ == "__main__":
    unittest.main()
