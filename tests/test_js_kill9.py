"""kill -9 a process that is writing a FileStore; every acknowledged write
must be there after reopening.

The child stores messages (and deletes some) and acknowledges each
operation to the parent through a pipe only once the store said it is done:
with sync_always, after store_msg/remove_msg returned (fsynced); with the
default policy, after flush() (the reactor's end-of-turn flush, which is
what a process crash cannot undo). The parent SIGKILLs the child at a random
point, reopens the store, checks every acknowledged operation, and repeats
on the same store (so recovery also runs on stores recovered before).
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from gnats.jetstream.filestore import FileStore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import os, sys
from gnats.jetstream.filestore import FileStore
d, always = sys.argv[1], sys.argv[2] == "always"
st = FileStore(d, sync_always=always, block_size=16384)
out = os.fdopen(1, "w", buffering=1)
print("ready %d" % st.state().last_seq, file=out)
i = 0
while True:
    i += 1
    seq, _ = st.store_msg("k.%d" % (i % 5), b"", b"payload-%d" % i * 3)
    if not always:
        st.flush()
    print("S %d %d" % (seq, i), file=out)
    if i % 7 == 0:
        st.remove_msg(seq - 3)
        if not always:
            st.flush()
        print("D %d" % (seq - 3), file=out)
"""


class Kill9Test(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="js-kill9-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def run_round(self, mode, stored, deleted, rng):
        p = subprocess.Popen([sys.executable, "-c", CHILD, self.dir, mode], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # A child that hung would block readline(): kill it after 60 s.
        watchdog = threading.Timer(60, p.kill)
        watchdog.start()
        try:
            first = p.stdout.readline().split()
            self.assertEqual(first[0], b"ready", p.stderr.read() if not first else first)
            target = rng.randint(20, 1500)
            acks = 0
            deadline = time.monotonic() + 60
            while acks < target and time.monotonic() < deadline:
                line = p.stdout.readline()
                if not line:
                    self.fail("child died: %s" % p.stderr.read().decode())
                acks += self.record(line, stored, deleted)
            p.send_signal(signal.SIGKILL)
            # Lines the child wrote before dying were acknowledged too.
            # (Only whole lines: a line cut by the kill was never finished.)
            for line in p.stdout.read().split(b"\n")[:-1]:
                self.record(line, stored, deleted)
            p.wait(20)
        finally:
            watchdog.cancel()
            if p.poll() is None:
                p.kill()
                p.wait(20)
            p.stdout.close()
            p.stderr.close()
        self.assertEqual(p.returncode, -signal.SIGKILL)
        self.assertGreaterEqual(acks, 20)

    def record(self, line, stored, deleted):
        parts = line.split()
        if parts[:1] == [b"S"] and len(parts) == 3:
            stored[int(parts[1])] = int(parts[2])
            return 1
        if parts[:1] == [b"D"] and len(parts) == 2:
            deleted.add(int(parts[1]))
            return 1
        self.fail("bad line %r" % line)

    def check(self, stored, deleted):
        st = FileStore(self.dir, block_size=16384)
        try:
            self.assertEqual(st.warnings, [])
            last = st.state().last_seq
            self.assertGreaterEqual(last, max(stored))
            # The kill may land between a delete and its acknowledgement:
            # that one delete may or may not have happened.
            in_flight = {seq - 3 for seq, i in stored.items()
                         if i % 7 == 0 and seq - 3 not in deleted}
            self.assertLessEqual(len(in_flight), 6)      # one per round at most
            for seq, i in stored.items():
                m = st.load_msg(seq)
                if seq in in_flight and m is None:
                    deleted.add(seq)
                elif seq in deleted:
                    self.assertIsNone(m, seq)
                else:
                    self.assertIsNotNone(m, "acknowledged seq %d lost" % seq)
                    self.assertEqual(m.msg, b"payload-%d" % i * 3)
                    self.assertEqual(m.subject, "k.%d" % (i % 5))
            # Per-subject state agrees with a scan of the messages.
            counts = {}
            for seq in range(st.state().first_seq, last + 1):
                m = st.load_msg(seq)
                if m is not None:
                    counts[m.subject] = counts.get(m.subject, 0) + 1
            self.assertEqual(st.subjects_state(), counts)
        finally:
            st.close()

    def run_mode(self, mode, seed):
        rng = random.Random(seed)
        stored, deleted = {}, set()
        for _ in range(6):
            self.run_round(mode, stored, deleted, rng)
            self.check(stored, deleted)

    def test_kill9_sync_always(self):
        self.run_mode("always", 1)

    def test_kill9_default_policy_after_flush(self):
        self.run_mode("interval", 2)


if __name__ == "__main__":
    unittest.main()
