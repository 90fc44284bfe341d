"""JetStream domains: `jetstream { domain }` puts the API on
$JS.<domain>.API as well as $JS.API, and names the domain in $JS.API.INFO
and in publish acks, as nats-server 2.15 does (each case runs on gnatsd.py
and on nats-server 2.15 with the same config)."""

import asyncio
import json
import shutil
import tempfile
import unittest

import nats

from tests.util import GO_SERVER_215, HAVE_GO_215, ServerProcess, needs

TIMEOUT = 5.0


class DomainBase:
    exe = None

    def setUp(self):
        self.sd = tempfile.mkdtemp(prefix="gnatsd-jsdomain-")
        self.addCleanup(shutil.rmtree, self.sd, True)
        self.srv = ServerProcess(config='jetstream { domain: "hub-x", store_dir: "%s" }\n' % self.sd,
                                 exe=self.exe)
        self.addCleanup(self.srv.stop)

    def run_async(self, coro):
        return asyncio.run(asyncio.wait_for(coro, 30))

    def test_api_answers_on_both_prefixes_and_names_the_domain(self):
        async def body():
            nc = await nats.connect("nats://127.0.0.1:%d" % self.srv.port)
            try:
                plain = json.loads((await nc.request("$JS.API.INFO", b"", timeout=TIMEOUT)).data)
                dom = json.loads((await nc.request("$JS.hub-x.API.INFO", b"", timeout=TIMEOUT)).data)
                self.assertEqual((plain["domain"], dom["domain"]), ("hub-x", "hub-x"))
                self.assertEqual(list(plain).index("domain") + 1, list(plain).index("api"))
                r = json.loads((await nc.request("$JS.hub-x.API.STREAM.CREATE.S",
                                                 json.dumps({"name": "S", "subjects": ["s"]}).encode(),
                                                 timeout=TIMEOUT)).data)
                self.assertEqual(r["config"]["name"], "S")
                ack = (await nc.request("s", b"x", timeout=TIMEOUT)).data
                self.assertEqual(ack, b'{"stream":"S","domain":"hub-x","seq":1}')
                js = nc.jetstream(domain="hub-x")
                info = await js.stream_info("S")
                self.assertEqual(info.state.messages, 1)
                self.assertEqual((await js.account_info()).domain, "hub-x")
                # another domain's prefix reaches nobody here
                with self.assertRaises(nats.errors.NoRespondersError):
                    await nc.request("$JS.other.API.INFO", b"", timeout=TIMEOUT)
            finally:
                await nc.close()
        self.run_async(body())


class GnatsdDomainTest(DomainBase, unittest.TestCase):
    def test_a_domain_must_be_one_token(self):
        with self.assertRaises(RuntimeError) as cm:
            ServerProcess(config='jetstream { domain: "a.b" }\n')
        self.assertIn("server.conf:1:21: invalid domain name", str(cm.exception))


@needs(HAVE_GO_215, "nats-server 2.15 is not installed")
class GoDomainTest(DomainBase, unittest.TestCase):
    exe = GO_SERVER_215


if __name__ == "__main__":
    unittest.main()
