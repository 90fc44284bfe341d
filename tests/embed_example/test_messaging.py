"""Pub/sub and request/reply against the nats_server fixture, with nats-py."""

import asyncio

import nats
import pytest


def test_pub_sub(nats_server):
    async def main():
        nc = await nats.connect(nats_server.client_url)
        got = []
        done = asyncio.Event()

        async def on_msg(msg):
            got.append(msg.data)
            if len(got) == 10:
                done.set()
        await nc.subscribe("orders.*", cb=on_msg)
        for i in range(10):
            await nc.publish("orders.new", b"order %d" % i)
        await asyncio.wait_for(done.wait(), 5)
        await nc.flush()
        await nc.close()
        return got
    assert asyncio.run(main()) == [b"order %d" % i for i in range(10)]


def test_request_reply(nats_server):
    async def main():
        nc = await nats.connect(nats_server.client_url)

        async def double(msg):
            await msg.respond(str(2 * int(msg.data)).encode())
        await nc.subscribe("math.double", cb=double)
        replies = [(await nc.request("math.double", b"%d" % i, timeout=5)).data
                   for i in range(5)]
        await nc.close()
        return replies
    assert asyncio.run(main()) == [b"0", b"2", b"4", b"6", b"8"]


def test_ini_config_applies(nats_server):
    async def main():
        nc = await nats.connect(nats_server.client_url)
        size = nc.max_payload
        await nc.close()
        return size
    assert asyncio.run(main()) == 512 * 1024       # nats.conf via pytest.ini


@pytest.mark.nats_server(max_payload=1024)
def test_marker_options(nats_server):
    async def main():
        nc = await nats.connect(nats_server.client_url)
        size = nc.max_payload
        with pytest.raises(nats.errors.MaxPayloadError):
            await nc.publish("big", b"x" * 1025)
        await nc.close()
        return size
    assert asyncio.run(main()) == 1024


@pytest.mark.nats_server(authorization={"user": "app", "password": "s3cret"})
def test_auth_options(nats_server):
    host_port = nats_server.client_url[len("nats://"):]

    async def main():
        with pytest.raises(Exception):
            await nats.connect(nats_server.client_url, allow_reconnect=False,
                               max_reconnect_attempts=0, connect_timeout=2)
        nc = await nats.connect("nats://app:s3cret@" + host_port)
        reply_sub = await nc.subscribe("ping")
        await nc.publish("ping", b"hi")
        msg = await reply_sub.next_msg(timeout=5)
        await nc.close()
        return msg.data
    assert asyncio.run(main()) == b"hi"


def test_reload(nats_server):
    async def payload_limit():
        nc = await nats.connect(nats_server.client_url)
        size = nc.max_payload
        await nc.close()
        return size
    assert asyncio.run(payload_limit()) == 512 * 1024
    nats_server.reload(max_payload=2048)
    assert asyncio.run(payload_limit()) == 2048
