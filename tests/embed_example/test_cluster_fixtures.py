"""nats_cluster (three routed servers) and nats_server_factory, with nats-py."""

import asyncio
import time

import nats


async def wait_for_interest(nc, subject, timeout=5.0):
    """Routes tell peers about a subscription asynchronously: ask until the
    responder on another server answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await nc.request(subject, b"", timeout=0.2)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)


def test_cluster_of_three(nats_cluster):
    assert len(nats_cluster.urls) == 3
    assert len(set(nats_cluster.urls)) == 3

    async def main():
        sub_nc = await nats.connect(nats_cluster.urls[0])
        pubs = [await nats.connect(u) for u in nats_cluster.urls[1:]]
        got = []
        done = asyncio.Event()

        async def on_msg(msg):
            if msg.reply:
                await msg.respond(b"ready")
                return
            got.append(msg.data)
            if len(got) == 200:
                done.set()
        await sub_nc.subscribe("events", cb=on_msg)
        await sub_nc.flush()
        for nc in pubs:
            await wait_for_interest(nc, "events")
        for n, nc in enumerate(pubs):
            for i in range(100):
                await nc.publish("events", b"%d-%d" % (n, i))
            await nc.flush()
        await asyncio.wait_for(done.wait(), 10)
        await asyncio.sleep(0.1)        # nothing extra may arrive
        for nc in [sub_nc] + pubs:
            await nc.close()
        return got
    got = asyncio.run(main())
    assert len(got) == 200
    assert sorted(got) == sorted(b"%d-%d" % (n, i) for n in range(2) for i in range(100))


def test_factory_servers_are_independent(nats_server_factory):
    a = nats_server_factory(server_name="a")
    b = nats_server_factory(server_name="b", max_payload="2KB")
    assert a.port != b.port

    async def limits():
        out = []
        for srv in (a, b):
            nc = await nats.connect(srv.client_url)
            out.append(nc.max_payload)
            await nc.close()
        return out
    assert asyncio.run(limits()) == [1024 * 1024, 2048]
