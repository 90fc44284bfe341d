"""Queue groups across routes, and the JetStream API in a cluster.

nats-server 2.15.1 picks a queue member at random across the cluster for a
client's message (measured: 508/492 between a local and a remote member),
so gnatsd.py does the same for client queue groups. Server-side responders
are the exception (delivery._deliver_queue): the JetStream API's queue
group answers a client's request on the client's own node when that node
has JetStream, as nats-server's service import does; a node without
JetStream reaches another node's through the routes.

Clusters of two gnatsd.py nodes, and mixed pairs with a Go nats-server
(2.15.1 when installed) that runs no JetStream.
"""

import asyncio
import json
import shutil
import tempfile
import time
import unittest

from tests.test_cluster import Node
from tests.util import flushed, GO_SERVER_215, HAVE_GO_215, needs

try:
    import nats
    from nats.errors import NoRespondersError, TimeoutError as NatsTimeout
except ImportError:     # pragma: no cover
    nats = None

REQUESTS = 30


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def connect(node):
    return await nats.connect("nats://127.0.0.1:%d" % node.port, allow_reconnect=False)


async def request_when_ready(nc, subject, body=b"", timeout=20):
    """The first answer to a request, retried while the cluster's interest
    is still on its way."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return json.loads((await nc.request(subject, body, timeout=2)).data)
        except (NoRespondersError, NatsTimeout):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def create(name):
    return ("$JS.API.STREAM.CREATE." + name,
            json.dumps({"name": name, "subjects": [name.lower() + ".>"], "storage": "memory"}).encode())


async def queue_counts(pub_node, nodes, n=400):
    """Publish n messages from a client of pub_node to a queue group with
    one member on each of nodes; the count each member got."""
    subs = []
    counts = [0] * len(nodes)
    for i, node in enumerate(nodes):
        nc = await connect(node)

        async def cb(m, i=i):
            counts[i] += 1
        await nc.subscribe("work", queue="q", cb=cb)
        await flushed(nc)
        subs.append(nc)
    pub = await connect(pub_node)
    # every member's interest has reached the publisher's node once a
    # request to a subject only that member's connection serves is answered
    async def pong(m):
        await m.respond(b"ok")
    for i, nc in enumerate(subs):
        await nc.subscribe("ready.%d" % i, cb=pong)
        await flushed(nc)
        await _ready(pub, "ready.%d" % i)
    for _ in range(n):
        await pub.publish("work", b"x")
    await flushed(pub)
    deadline = time.monotonic() + 20
    while sum(counts) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)        # nothing more may come
    for nc in subs + [pub]:
        await nc.close()
    return counts


async def _ready(nc, subject, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        try:
            await nc.request(subject, b"", timeout=2)
            return
        except (NoRespondersError, NatsTimeout):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@needs(nats is not None, "nats-py is not installed")
class TwoJetStreamNodesTest(unittest.TestCase):
    """Two gnatsd.py nodes, each with its own JetStream."""

    @classmethod
    def setUpClass(cls):
        cls.dirs = [tempfile.mkdtemp(prefix="gnatsd-qlocal-") for _ in range(2)]
        cls.n1 = Node(name="ql", extra=["-js", "-sd", cls.dirs[0], "--server_name", "n1"])
        cls.n2 = Node(routes=[cls.n1.route_url], name="ql", extra=["-js", "-sd", cls.dirs[1], "--server_name", "n2"])

    @classmethod
    def tearDownClass(cls):
        for n in (cls.n1, cls.n2):
            n.proc.stop()
        for d in cls.dirs:
            shutil.rmtree(d, ignore_errors=True)

    def test_api_requests_stay_on_the_clients_node(self):
        async def go():
            c1, c2 = await connect(self.n1), await connect(self.n2)
            # the other node's API interest arrives over the route: wait for
            # it, so that a remote pick would be possible
            await _ready(c1, "$JS.API.INFO")
            await asyncio.sleep(0.5)
            r1 = await request_when_ready(c1, *create("ONE"))
            r2 = await request_when_ready(c2, *create("TWO"))
            self.assertNotIn("error", r1)
            self.assertNotIn("error", r2)
            for _ in range(REQUESTS):
                info = json.loads((await c1.request("$JS.API.STREAM.INFO.ONE", b"", timeout=5)).data)
                self.assertEqual(info["cluster"]["leader"], "n1")
                names = json.loads((await c2.request("$JS.API.STREAM.NAMES", b"", timeout=5)).data)
                self.assertEqual(names["streams"], ["TWO"])
            await c1.close()
            await c2.close()
        run(go())

    def test_client_queue_groups_stay_random_across_routes(self):
        counts = run(queue_counts(self.n1, [self.n1, self.n2]))
        self.assertEqual(sum(counts), 400)
        # as nats-server: both members get a share (p < 1e-40 of failing by chance)
        self.assertGreater(counts[0], 80)
        self.assertGreater(counts[1], 80)


@needs(nats is not None, "nats-py is not installed")
@needs(HAVE_GO_215, "nats-server 2.15 is not installed at " + GO_SERVER_215)
class MixedPairTest(unittest.TestCase):
    """A Go node without JetStream routed to a gnatsd.py node with it."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="gnatsd-qlocal-")
        cls.py = Node(name="qm", extra=["-js", "-sd", cls.dir, "--server_name", "py"])
        cls.go = Node(routes=[cls.py.route_url], name="qm", exe=GO_SERVER_215)

    @classmethod
    def tearDownClass(cls):
        cls.go.proc.stop()
        cls.py.proc.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_the_go_nodes_clients_reach_the_api_over_the_route(self):
        async def go():
            cg, cp = await connect(self.go), await connect(self.py)
            r = await request_when_ready(cp, *create("MIX"))
            self.assertNotIn("error", r)
            await request_when_ready(cg, "$JS.API.STREAM.INFO.MIX")
            for nc in (cg, cp):
                for _ in range(10):
                    info = json.loads((await nc.request("$JS.API.STREAM.INFO.MIX", b"", timeout=5)).data)
                    self.assertEqual(info["cluster"]["leader"], "py")
            ack = json.loads((await cg.request("mix.a", b"hello", timeout=5)).data)
            self.assertEqual(ack, {"stream": "MIX", "seq": 1})
            await cg.close()
            await cp.close()
        run(go())

    def test_queue_groups_random_from_either_side(self):
        for pub in (self.go, self.py):
            counts = run(queue_counts(pub, [self.go, self.py]))
            self.assertEqual(sum(counts), 400)
            self.assertGreater(counts[0], 80)
            self.assertGreater(counts[1], 80)


if __name__ == "__main__":
    unittest.main()
