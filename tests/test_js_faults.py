"""JetStream store faults, CI-sized versions of tools/stress.py's js-torn
and js-diskfull (tools/stresslib/jsfaults.py; RELIABILITY.md has the long
runs): a server process SIGKILLed under `sync_interval: always`, its last
block then cut at a random byte and, next round, a byte flipped inside a
record; and a full disk (RLIMIT_FSIZE lowered on the running server).
Each campaign's checks are exact (every acknowledged message back byte for
byte unless the damage hit it, the damage named in the log, error acks
while full and none after, no traceback)."""

import unittest

from tools import stresslib as stress


class TestJsFaults(unittest.TestCase):

    def assertCampaign(self, rep):
        self.assertTrue(rep.ok, rep.text())

    def test_torn_and_flipped_blocks(self):
        rep = stress.js_torn(rounds=2, seed=7)      # round 0 truncates, round 1 flips
        self.assertCampaign(rep)
        self.assertIn("1 truncated, 1 flipped", rep.figures["rounds (kill -9, then damage)"])
        self.assertGreater(rep.figures["acknowledged, kept and checked"], 0)

    def test_disk_full(self):
        rep = stress.js_diskfull(before=200, during=50, after=200)
        self.assertCampaign(rep)
        self.assertIn("10077", rep.figures["error ack"])
        self.assertEqual(rep.figures["publishes once space was back"], "200 of 200 acked")


if __name__ == "__main__":
    unittest.main()
