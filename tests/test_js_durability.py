"""The js-kill9 campaign (tools/stresslib/jsdurable.py), CI-sized: a
gnatsd.py process SIGKILLed at random moments while acknowledged JetStream
publishes flow; after each restart every acknowledged message must be back
with its exact payload, with sync_interval: always and with the default.
RELIABILITY.md section 12 has the long run's figures."""

import unittest

from tools import stresslib as stress


class TestJsKill9(unittest.TestCase):

    def run_campaign(self, sync_always):
        rep = stress.js_kill9(rounds=2, sync_always=sync_always, seed=7)
        self.assertTrue(rep.ok, rep.text())
        self.assertEqual(rep.figures["acknowledged and missing"], 0, rep.text())
        # the campaign must have had something to check
        self.assertGreater(rep.figures["acknowledged, all rounds"], 0, rep.text())

    def test_sync_always(self):
        self.run_campaign(True)

    def test_default_sync_interval(self):
        self.run_campaign(False)


if __name__ == "__main__":
    unittest.main()
