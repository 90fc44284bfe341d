"""The hot-path shapes issue 15 (PyPy) changed, black-box over real sockets.

- A run of identical PUB lines is delivered to each receiver in one append
  (inbound.py: the run's payloads joined with the receiver's prefix): every
  message arrives once, in order, with its own payload and the receiver's
  own sid, for one receiver and for fan-out; a payload that contains the
  PUB line itself is not mistaken for a boundary; a bad payload terminator
  in the middle of a run still delivers what came before it. A queue
  group's members get each message once, each in publish order, counted
  once per message in out_msgs.
- `pypy3 gnatsd.py` runs with a 16 MiB young generation (PYPY_GC_NURSERY,
  set by the launcher, which runs itself again in the same process), and a
  value the user set is kept.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.request

from tests.util import GNATSD, ROOT, RawClient, ServerCase, port_of, wait_for

N = 300
SIZE = 40


def payloads(n, size=SIZE):
    """Distinct payloads of one size: one PUB line repeats for the whole run."""
    return [(b"%06d-" % i + b"x" * size)[:size] for i in range(n)]


def batch(subject, pls):
    return b"".join(b"PUB %s %d\r\n%s\r\n" % (subject, len(p), p) for p in pls)


def read_msgs(c, count, timeout=20.0):
    """Messages until `count` arrived (and any surplus sent before the last
    PONG), or the timeout."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        got += c.drain(left)
    return got


class TestRunDelivery(ServerCase):
    server_args = ("-m", "-1")

    def subscriber(self, *subs):
        c = self.client()
        for subject, sid in subs:
            c.send(b"SUB %s %d\r\n" % (subject, sid))
        c.ping()
        return c

    def test_one_receiver_gets_every_message_of_a_run_in_order(self):
        sub = self.subscriber((b"run.one", 5))
        pub = self.client()
        pls = payloads(N)
        pub.send(batch(b"run.one", pls))
        pub.ping()
        got = read_msgs(sub, N)
        self.assertEqual(len(got), N)
        self.assertEqual([m[2] for m in got], pls)
        self.assertEqual({tuple(m[1]) for m in got}, {(b"run.one", b"5", b"%d" % SIZE)})

    def test_fan_out_each_receiver_its_own_sid(self):
        a = self.subscriber((b"run.fan", 1))
        b = self.subscriber((b"run.fan", 2), (b"run.fan", 7))    # two subs, one connection
        c = self.subscriber((b"run.*", 9))
        pub = self.client()
        pls = payloads(N)
        pub.send(batch(b"run.fan", pls))
        pub.ping()
        got_a, got_b, got_c = read_msgs(a, N), read_msgs(b, 2 * N), read_msgs(c, N)
        self.assertEqual([m[2] for m in got_a], pls)
        self.assertEqual([m[2] for m in got_c], pls)
        self.assertEqual({m[1][1] for m in got_a}, {b"1"})
        self.assertEqual({m[1][1] for m in got_c}, {b"9"})
        self.assertEqual(len(got_b), 2 * N)
        for sid in (b"2", b"7"):
            self.assertEqual([m[2] for m in got_b if m[1][1] == sid], pls)

    def test_queue_group_run_each_message_once_in_order(self):
        plain = self.subscriber((b"run.q", 1))
        m1 = self.subscriber()
        m1.send(b"SUB run.q workers 11\r\nSUB run.q workers 12\r\n")   # two members, one connection
        m1.ping()
        m2 = self.subscriber()
        m2.send(b"SUB run.q workers 21\r\n")
        m2.ping()
        before = self.out_msgs()
        pub = self.client()
        pls = payloads(N)
        pub.send(batch(b"run.q", pls))
        pub.ping()
        self.assertEqual([m[2] for m in read_msgs(plain, N)], pls)
        got = []
        deadline = time.monotonic() + 20.0
        while len(got) < N and time.monotonic() < deadline:
            got += m1.drain(5.0) + m2.drain(5.0)
        self.assertEqual(len(got), N)
        self.assertEqual(sorted(m[2] for m in got), pls)         # each exactly once
        by_sid = {}
        for m in got:
            by_sid.setdefault(m[1][1], []).append(m[2])
        self.assertLessEqual(set(by_sid), {b"11", b"12", b"21"})
        for sid, seen in by_sid.items():
            self.assertEqual(seen, sorted(seen), sid)            # publish order per member
        self.assertTrue(wait_for(lambda: self.out_msgs() - before == 2 * N, 10.0),
                        "out_msgs %d, want %d" % (self.out_msgs() - before, 2 * N))

    def out_msgs(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/varz" % self.srv.monitor_port, timeout=10) as r:
            return json.load(r)["out_msgs"]

    def test_payload_holding_the_pub_line(self):
        sub = self.subscriber((b"run.tricky", 3))
        pub = self.client()
        line = b"PUB run.tricky 40\r\n"
        tricky = (line + b"\r\n" + line)[:SIZE]     # the run's own line, then CRLF
        pls = [payloads(1)[0], tricky, tricky, payloads(2)[1]]
        self.assertTrue(all(len(p) == SIZE for p in pls))
        pub.send(batch(b"run.tricky", pls * 50))
        pub.ping()
        got = read_msgs(sub, 200)
        self.assertEqual([m[2] for m in got], pls * 50)

    def test_bad_terminator_mid_run_delivers_what_came_before(self):
        sub = self.subscriber((b"run.bad", 4))
        pub = self.client()
        pls = payloads(10)
        good = batch(b"run.bad", pls[:6])
        bad = b"PUB run.bad %d\r\n%sXY" % (SIZE, pls[6])     # no CRLF after the payload
        pub.send(good + bad + batch(b"run.bad", pls[7:]))
        self.assertTrue(pub.read_line().startswith(b"-ERR"))
        self.assertTrue(pub.closed(10.0))
        got = sub.drain()
        self.assertEqual([m[2] for m in got], pls[:6])


PYPY = shutil.which("pypy3")


@unittest.skipUnless(PYPY, "pypy3 not installed")
class TestPyPyNursery(unittest.TestCase):

    def start(self, env):
        tmp = tempfile.mkdtemp(prefix="gnatsd-perf-")
        self.addCleanup(shutil.rmtree, tmp, True)
        log = open(os.path.join(tmp, "out.log"), "wb")
        self.addCleanup(log.close)
        e = dict(os.environ)
        e.pop("PYPY_GC_NURSERY", None)
        e.update(env)
        proc = subprocess.Popen([PYPY, GNATSD, "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", tmp],
                                cwd=ROOT, env=e, stdout=log, stderr=subprocess.STDOUT)

        def stop():
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.addCleanup(stop)
        ports = os.path.join(tmp, "gnatsd_%d.ports" % proc.pid)
        self.assertTrue(wait_for(lambda: os.path.exists(ports) and os.path.getsize(ports) > 0, 20.0),
                        "no ports file from the PyPy server")
        with open(ports) as f:
            port = port_of(json.load(f)["nats"][0])
        return proc, port

    def environ(self, pid):
        with open("/proc/%d/environ" % pid, "rb") as f:
            return dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)

    def test_launcher_sets_the_nursery_in_the_same_process(self):
        proc, port = self.start({})
        self.assertEqual(self.environ(proc.pid).get(b"PYPY_GC_NURSERY"), b"16M")
        c = RawClient(port)
        self.addCleanup(c.close)
        self.assertEqual(c.ping(), b"")     # the PID Popen started serves

    def test_user_value_is_kept(self):
        proc, port = self.start({"PYPY_GC_NURSERY": "2M"})
        self.assertEqual(self.environ(proc.pid).get(b"PYPY_GC_NURSERY"), b"2M")
        c = RawClient(port)
        self.addCleanup(c.close)
        self.assertEqual(c.ping(), b"")


if __name__ == "__main__":
    unittest.main()
