"""unittest support: a NATS server per test class.

    class MyTest(gnats.testing.NatsServerTestCase):
        nats_options = {"max_payload": 1024}     # gnats.run() keywords
        def test_x(self):
            connect(self.nats_url)

`nats_config` names a config file; the keywords win over it. The server
starts before the class's first test and is stopped after its last (through
addClassCleanup, so a failing setUpClass still stops it).
"""

import unittest


class NatsServerTestCase(unittest.TestCase):
    nats_config = None
    nats_options = {}
    nats_server = None      # the EmbeddedServer, set in setUpClass
    nats_url = None         # its client URL

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        from .embed import run
        cls.nats_server = run(cls.nats_config, **cls.nats_options)
        cls.addClassCleanup(cls.nats_server.stop)
        cls.nats_url = cls.nats_server.client_url
