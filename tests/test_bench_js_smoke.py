"""tools/bench.py's jetstream group: opt-in, and each JetStream role runs
end to end through the nats.go load program with its outcome checked
against the server (stream count, consumer ack floor, bucket revisions)."""

import os
import shutil
import sys
import unittest

from tests.test_bench_smoke import run_bench, table_row

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
from benchlib import scenarios  # noqa: E402

HAVE_GO = bool(shutil.which("go") or os.access("/usr/lib/go/bin/go", os.X_OK)) and os.path.isdir(
    "/usr/share/gocode/src/github.com/nats-io/nats.go")


class JetStreamGroupTest(unittest.TestCase):

    def test_group_is_opt_in(self):
        core, _ = scenarios.select("core")
        js, unknown = scenarios.select("jetstream")
        self.assertEqual(unknown, [])
        self.assertEqual(sorted(js), sorted(["js-pub16-sync", "js-pub16-async", "js-pub1k-sync",
                                             "js-pub1k-async", "js-fetch16", "js-fetch1k",
                                             "kv-put", "kv-get"]))
        self.assertFalse(set(js) & set(core))

    @unittest.skipUnless(HAVE_GO, "Go toolchain or Debian's nats.go sources not installed")
    def test_each_role_on_ours(self):
        names = "js-pub16-sync,js-pub16-async,js-fetch16,kv-put,kv-get"
        r = run_bench("--runs", "1", "--msgs", "600", "--only", "ours", "--scenario", names,
                      "--python", sys.executable, timeout=600)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for name in names.split(","):
            row = table_row(r.stdout, name)
            self.assertIsNotNone(row, r.stdout)
            self.assertTrue(row.startswith("| %s | 600 |" % name), row)
            self.assertTrue(row.endswith("| PASS |"), row)


if __name__ == "__main__":
    unittest.main()
