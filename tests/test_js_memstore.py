"""The JetStream message-store contract, run against MemStore here; the same
mixin runs against FileStore in test_js_filestore.py."""

import time
import unittest

from gnats.jetstream.memstore import MemStore
from gnats.jetstream.store import StoreLimits, StoreMsgTooLarge, StreamState

SEC = 1_000_000_000


class StoreContract:
    """Tests every MsgStore must pass. `make_store(limits)` builds one."""

    def make_store(self, limits=None):
        raise NotImplementedError

    def fill(self, st, subjects, n=None):
        """Store one message per subject in `subjects` (payload = seq text)."""
        seqs = []
        for i, subj in enumerate(subjects):
            seq, _ = st.store_msg(subj, b"", ("m%d" % (i + 1)).encode())
            seqs.append(seq)
        return seqs

    def test_store_and_load(self):
        st = self.make_store()
        hdr = b"NATS/1.0\r\nA: b\r\n\r\n"
        seq, ts = st.store_msg("orders.1", hdr, b"hello", ts=1234)
        self.assertEqual((seq, ts), (1, 1234))
        seq2, ts2 = st.store_msg("orders.2", b"", b"")
        self.assertEqual(seq2, 2)
        self.assertGreater(ts2, 1234)
        m = st.load_msg(1)
        self.assertEqual(tuple(m), ("orders.1", 1, hdr, b"hello", 1234))
        self.assertEqual(st.load_msg(2).msg, b"")
        self.assertEqual(st.load_msg(2).hdr, b"")
        self.assertIsNone(st.load_msg(3))
        self.assertIsNone(st.load_msg(0))
        s = st.state()
        self.assertEqual((s.msgs, s.first_seq, s.last_seq, s.first_ts, s.num_subjects,
                          s.num_deleted), (2, 1, 2, 1234, 2, 0))
        self.assertEqual(s.last_ts, ts2)

    def test_empty_state(self):
        st = self.make_store()
        self.assertEqual(st.state(), StreamState(0, 0, 0, 0, 0, 0, 0, 0))
        self.assertIsNone(st.load_last(">"))
        self.assertIsNone(st.load_next(">", 1))
        self.assertEqual(st.num_pending(1), 0)

    def test_subject_index(self):
        st = self.make_store()
        self.fill(st, ["a.1", "a.2", "b.1", "a.1", "b.1", "a.1"])
        self.assertEqual(st.subject_count("a.1"), 3)
        self.assertEqual(st.subject_count("b.1"), 2)
        self.assertEqual(st.subject_count("zzz"), 0)
        self.assertEqual(st.load_last("a.1").seq, 6)
        self.assertEqual(st.load_last("b.1").seq, 5)
        self.assertEqual(st.load_last("a.*").seq, 6)
        self.assertEqual(st.load_last("a.2").seq, 2)
        self.assertEqual(st.load_last(">").seq, 6)
        self.assertIsNone(st.load_last("c"))
        self.assertEqual(st.load_next("b.1", 1).seq, 3)
        self.assertEqual(st.load_next("b.1", 4).seq, 5)
        self.assertIsNone(st.load_next("b.1", 6))
        self.assertEqual(st.load_next("*.2", 1).seq, 2)
        self.assertEqual(st.load_next(">", 4).seq, 4)
        self.assertEqual(st.load_next("a.>", 3).seq, 4)
        self.assertEqual(st.subjects_state(), {"a.1": 3, "a.2": 1, "b.1": 2})
        self.assertEqual(st.subjects_state("a.*"), {"a.1": 3, "a.2": 1})
        self.assertEqual(st.subjects_state("b.1"), {"b.1": 2})
        self.assertEqual(st.num_pending(1), 6)
        self.assertEqual(st.num_pending(4), 3)
        self.assertEqual(st.num_pending(1, "a.1"), 3)
        self.assertEqual(st.num_pending(5, "a.*"), 1)
        self.assertEqual(st.num_pending(1, ">", last_per_subject=True), 3)
        self.assertEqual(st.num_pending(3, "a.*", last_per_subject=True), 1)
        self.assertEqual(st.state().num_subjects, 3)

    def test_remove_and_deleted(self):
        st = self.make_store()
        self.fill(st, ["a", "b", "a", "c", "a"])
        self.assertTrue(st.remove_msg(3))
        self.assertFalse(st.remove_msg(3))
        self.assertFalse(st.remove_msg(99))
        s = st.state()
        self.assertEqual((s.msgs, s.first_seq, s.last_seq, s.num_deleted), (4, 1, 5, 1))
        self.assertEqual(st.subject_count("a"), 2)
        self.assertEqual(st.load_next("a", 2).seq, 5)
        self.assertTrue(st.remove_msg(1, erase=True))
        self.assertTrue(st.remove_msg(2))
        s = st.state()
        self.assertEqual((s.msgs, s.first_seq, s.num_deleted, s.num_subjects), (2, 4, 0, 2))
        self.assertTrue(st.remove_msg(5))
        self.assertEqual(st.load_last("a"), None)
        self.assertEqual(st.subject_count("a"), 0)
        self.assertTrue(st.remove_msg(4))
        s = st.state()
        self.assertEqual((s.msgs, s.bytes, s.first_seq, s.last_seq, s.num_deleted),
                         (0, 0, 6, 5, 0))
        self.assertEqual(st.store_msg("x", b"", b"y")[0], 6)
        self.assertEqual(st.state().first_seq, 6)

    def test_skip_msg(self):
        st = self.make_store()
        self.assertEqual(st.skip_msg(), 1)
        s = st.state()
        self.assertEqual((s.msgs, s.first_seq, s.last_seq), (0, 2, 1))
        self.fill(st, ["a"])
        self.assertEqual(st.skip_msg(), 3)
        self.fill(st, ["a"])
        s = st.state()
        self.assertEqual((s.msgs, s.first_seq, s.last_seq, s.num_deleted), (2, 2, 4, 1))
        self.assertEqual(st.skip_msg(), 5)
        self.assertEqual(st.deleted_seqs(), [3, 5])
        self.assertEqual(st.state().num_deleted, 2)
        self.assertEqual(st.num_pending(1), 2)
        self.assertEqual(st.num_pending(4), 1)
        self.assertEqual(st.num_pending(5), 0)

    def test_purge_all(self):
        st = self.make_store()
        self.fill(st, ["a", "b", "c"])
        self.assertEqual(st.purge(), 3)
        s = st.state()
        self.assertEqual((s.msgs, s.bytes, s.first_seq, s.last_seq, s.num_subjects),
                         (0, 0, 4, 3, 0))
        self.assertIsNone(st.load_msg(2))
        self.assertEqual(st.store_msg("a", b"", b"x")[0], 4)
        self.assertEqual(st.purge(">"), 1)
        self.assertEqual(st.state().first_seq, 5)

    def test_purge_seq_and_keep(self):
        st = self.make_store()
        self.fill(st, ["a", "b"] * 5)           # 1..10
        self.assertEqual(st.purge(seq=4), 3)     # below 4
        self.assertEqual(st.state().first_seq, 4)
        self.assertEqual(st.purge(keep=2), 5)    # keep 9, 10
        s = st.state()
        self.assertEqual((s.msgs, s.first_seq), (2, 9))
        self.assertEqual(st.purge(keep=5), 0)

    def test_purge_subject(self):
        st = self.make_store()
        self.fill(st, ["a", "b", "a", "b", "a", "c", "a"])   # a: 1 3 5 7
        self.assertEqual(st.purge("a", keep=1), 3)
        self.assertEqual(st.subject_count("a"), 1)
        self.assertEqual(st.load_last("a").seq, 7)
        self.assertEqual(st.state().msgs, 4)
        self.assertEqual(st.purge("a", keep=1), 0)
        self.assertEqual(st.purge("b", seq=4), 1)            # b below 4: seq 2
        self.assertEqual(st.load_next("b", 1).seq, 4)
        self.assertEqual(st.purge("*"), 3)                   # b, c, a
        s = st.state()
        self.assertEqual((s.msgs, s.first_seq, s.last_seq), (0, 8, 7))

    def test_purge_wildcard_keep_across_subjects(self):
        st = self.make_store()
        self.fill(st, ["x.1", "x.2", "y", "x.1", "x.2"])
        self.assertEqual(st.purge("x.*", keep=2), 2)          # keeps seqs 4, 5
        self.assertEqual(sorted(st.subjects_state().items()),
                         [("x.1", 1), ("x.2", 1), ("y", 1)])
        self.assertEqual(st.load_next("x.*", 1).seq, 4)

    def test_compact(self):
        st = self.make_store()
        self.fill(st, ["a", "b", "c", "d", "e"])
        st.remove_msg(4)
        self.assertEqual(st.compact(3), 2)
        s = st.state()
        self.assertEqual((s.msgs, s.first_seq, s.num_deleted), (2, 3, 1))
        self.assertEqual(st.compact(2), 0)
        self.assertEqual(st.compact(5), 1)
        self.assertEqual(st.state().first_seq, 5)
        self.assertEqual(st.compact(10), 1)
        s = st.state()
        self.assertEqual((s.msgs, s.first_seq, s.last_seq), (0, 10, 9))
        self.assertEqual(st.store_msg("z", b"", b"")[0], 10)

    def test_compact_many_msgs_few_subjects(self):
        st = self.make_store()
        self.fill(st, ["a", "b", "c"] * 100)
        self.assertEqual(st.compact(151), 150)
        self.assertEqual(st.subjects_state(), {"a": 50, "b": 50, "c": 50})
        self.assertEqual(st.load_next("a", 1).seq, 151)
        self.assertEqual(st.state().bytes,
                         sum(st._idx[s][2] for s in range(151, 301)))

    def test_limits_max_msgs_and_bytes(self):
        st = self.make_store(StoreLimits(max_msgs=3))
        self.fill(st, ["a", "b", "c", "d", "e"])
        s = st.state()
        self.assertEqual((s.msgs, s.first_seq, s.last_seq), (3, 3, 5))
        one = st.state().bytes // 3
        st.update_limits(StoreLimits(max_bytes=2 * one))
        s = st.state()
        self.assertEqual((s.msgs, s.first_seq), (2, 4))
        st.update_limits(StoreLimits(max_msgs=0, max_bytes=-1))
        self.fill(st, ["f"] * 10)
        self.assertEqual(st.state().msgs, 12)

    def test_limits_per_subject(self):
        st = self.make_store(StoreLimits(max_msgs_per_subject=2))
        self.fill(st, ["k1", "k2", "k1", "k1", "k2", "k1"])
        self.assertEqual(st.subjects_state(), {"k1": 2, "k2": 2})
        self.assertEqual(st.load_next("k1", 1).seq, 4)
        st.update_limits(StoreLimits(max_msgs_per_subject=1))
        self.assertEqual(st.subjects_state(), {"k1": 1, "k2": 1})
        self.assertEqual(st.load_last("k1").seq, 6)
        self.assertEqual(st.state().first_seq, 5)

    def test_max_msg_size(self):
        st = self.make_store(StoreLimits(max_msg_size=10))
        st.store_msg("a", b"", b"x" * 10)
        with self.assertRaises(StoreMsgTooLarge):
            st.store_msg("a", b"", b"x" * 11)
        self.assertEqual(st.state().msgs, 1)
        self.assertEqual(st.state().last_seq, 1)

    def test_max_age(self):
        st = self.make_store(StoreLimits(max_age=10 * SEC))
        now = time.time_ns()
        st.store_msg("a", b"", b"1", ts=now - 20 * SEC)
        st.store_msg("a", b"", b"2", ts=now - 5 * SEC)
        st.store_msg("a", b"", b"3", ts=now)
        self.assertEqual(st.next_expiry(), now - 10 * SEC)
        self.assertEqual(st.expire(now), 1)
        self.assertEqual(st.state().first_seq, 2)
        self.assertEqual(st.expire(now + 6 * SEC), 1)
        self.assertEqual(st.expire(now + 6 * SEC), 0)
        self.assertEqual(st.state().msgs, 1)

    def test_ttl(self):
        st = self.make_store()
        now = time.time_ns()
        st.store_msg("a", b"", b"1", ts=now, ttl=2 * SEC)
        st.store_msg("b", b"", b"2", ts=now)
        st.store_msg("c", b"", b"3", ts=now, ttl=1 * SEC)
        self.assertEqual(st.next_expiry(), now + SEC)
        self.assertEqual(st.expire(now + SEC), 1)
        self.assertIsNone(st.load_msg(3))
        st.remove_msg(1)
        self.assertEqual(st.expire(now + 3 * SEC), 0)
        self.assertEqual(st.state().msgs, 1)
        self.assertEqual(st.load_msg(2).msg, b"2")

    def test_consumer_state(self):
        st = self.make_store()
        self.assertIsNone(st.read_consumer_state("c1"))
        st.write_consumer_state("c1", b"state-1")
        st.write_consumer_state("c1", b"state-2")
        self.assertEqual(st.read_consumer_state("c1"), b"state-2")
        st.remove_consumer_state("c1")
        self.assertIsNone(st.read_consumer_state("c1"))
        st.remove_consumer_state("never")

    def test_deleted_seqs(self):
        st = self.make_store()
        self.fill(st, ["a"] * 6)
        st.remove_msg(2)
        st.remove_msg(5)
        self.assertEqual(st.deleted_seqs(), [2, 5])
        self.assertEqual(st.state().num_deleted, 2)


class MemStoreTest(StoreContract, unittest.TestCase):

    def make_store(self, limits=None):
        return MemStore(limits)

    def test_memstore_sizes_as_nats_server(self):
        st = MemStore()
        st.store_msg("foo", b"NATS/1.0\r\n\r\n", b"hello")
        self.assertEqual(st.state().bytes, 3 + 12 + 5 + 16)

    def test_big_purge_is_quick(self):
        st = MemStore()
        for _ in range(200_000):
            st.store_msg("a.b", b"", b"0123456789abcdef")
        t = time.monotonic()
        self.assertEqual(st.purge(), 200_000)
        self.assertLess(time.monotonic() - t, 2.0)
        self.assertEqual(st.state().first_seq, 200_001)


if __name__ == "__main__":
    unittest.main()
