"""FileStore: the store contract, recovery (torn tail at every byte, damaged
records), reopen after deletes/purges/compaction, format/lock errors, and
disk errors (EFBIG from RLIMIT_FSIZE in a child process: we run as root, so
a read-only directory would not fail; the file-size limit makes write(2)
fail the same way ENOSPC does, through the same code path)."""

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from gnats.jetstream import filestore_format as fmt
from gnats.jetstream.filestore import FileStore, lock_store_dir
from gnats.jetstream.filestore_index import DenseIndex
from gnats.jetstream.store import (StoreCorrupt, StoreError, StoreLimits,
                                   StoreNewerFormat)
from tests.test_js_memstore import StoreContract

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TmpDirCase(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="js-fs-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.n = 0

    def new_dir(self):
        self.n += 1
        return os.path.join(self.tmp, "s%d" % self.n)

    def blocks(self, d):
        return sorted(os.listdir(os.path.join(d, "blocks")))


class FileStoreContractTest(StoreContract, TmpDirCase):

    def make_store(self, limits=None):
        st = FileStore(self.new_dir(), limits)
        self.addCleanup(st.close)
        return st


class FileStoreContractSmallBlocksTest(StoreContract, TmpDirCase):
    """The same contract with blocks of ~3 records: rolls and block drops."""

    def make_store(self, limits=None):
        st = FileStore(self.new_dir(), limits, block_size=150)
        self.addCleanup(st.close)
        return st


def simulate(records):
    """Independent model of what a prefix of whole records means:
    returns (live {seq: (subject, hdr, msg)}, first, last)."""
    live, mark, last = {}, 0, 0
    for rec in records:
        kind, seq, ts, ttl, subj, hdr, msg = fmt.decode_record(rec)
        last = max(last, seq)
        if kind == fmt.MSG:
            live[seq] = (subj.decode(), hdr, msg)
        elif kind == fmt.TOMB:
            live.pop(seq, None)
        elif kind == fmt.TOMBS:
            for i in range(0, len(msg), 8):
                live.pop(fmt.U64.unpack(msg[i:i + 8])[0], None)
        elif kind == fmt.MARK:
            mark = max(mark, fmt.U64.unpack(msg)[0])
    live = {s: v for s, v in live.items() if s >= mark}
    first = min(live) if live else (last + 1 if last else 0)
    return live, first, last


class RecoveryTest(TmpDirCase):

    def reopen(self, d, **kw):
        st = FileStore(d, **kw)
        self.addCleanup(st.close)
        return st

    def small_store(self):
        """A closed store with messages, headers, a delete and a skip."""
        d = self.new_dir()
        st = FileStore(d)
        st.store_msg("a.1", b"", b"one")
        st.store_msg("a.2", b"NATS/1.0\r\nK: v\r\n\r\n", b"two")
        st.store_msg("b", b"", b"")
        st.remove_msg(2)
        st.store_msg("a.1", b"", b"four")
        st.skip_msg()
        st.store_msg("c", b"", b"x" * 20)
        st.remove_msg(1)
        st.store_msg("p", b"", b"p1")
        st.store_msg("c", b"", b"y")
        st.store_msg("p", b"", b"p2")
        st.store_msg("p", b"", b"p3")
        self.assertEqual(st.purge("p", keep=1), 2)      # a TOMBS record
        st.close()
        return d

    def test_truncated_at_every_byte(self):
        d = self.small_store()
        [blk] = self.blocks(d)
        with open(os.path.join(d, "blocks", blk), "rb") as f:
            data = f.read()
        bounds = [(off, off + n) for _, off, n, *_ in fmt.scan_block(data)]
        kinds = [k for k, *_ in fmt.scan_block(data)]
        for k in (fmt.MSG, fmt.TOMB, fmt.TOMBS, fmt.SKIP, fmt.MARK):
            self.assertIn(k, kinds)
        self.assertEqual(bounds[-1][1], len(data))
        records = [data[a:b] for a, b in bounds]
        for cut in range(len(data) + 1):
            whole = [r for (a, b), r in zip(bounds, records) if b <= cut]
            live, first, last = simulate(whole)
            c = self.new_dir()
            os.makedirs(os.path.join(c, "blocks"))
            shutil.copy(os.path.join(d, fmt.META_NAME), c)
            path = os.path.join(c, "blocks", blk)
            with open(path, "wb") as f:
                f.write(data[:cut])
            st = FileStore(c)
            try:
                s = st.state()
                self.assertEqual(st.warnings, [], cut)
                self.assertEqual(st.torn_bytes, cut - sum(b - a for a, b in bounds if b <= cut),
                                 cut)
                self.assertEqual((s.msgs, s.first_seq, s.last_seq),
                                 (len(live), first, last), cut)
                for seq, (subj, hdr, msg) in live.items():
                    m = st.load_msg(seq)
                    self.assertEqual((m.subject, m.hdr, m.msg), (subj, hdr, msg), cut)
                self.assertEqual(st.subject_count("a.1"),
                                 sum(1 for v in live.values() if v[0] == "a.1"), cut)
                # The torn tail is gone: a new message lands after the whole records.
                seq, _ = st.store_msg("new", b"", b"after")
                self.assertEqual(seq, last + 1, cut)
            finally:
                st.close()
            st = FileStore(c)
            self.assertEqual(st.load_msg(last + 1).msg, b"after", cut)
            self.assertEqual(st.state().msgs, len(live) + 1, cut)
            st.close()
            shutil.rmtree(c)

    def test_checksum_damage_in_the_middle_is_reported_and_skipped(self):
        d = self.new_dir()
        st = FileStore(d)
        for i in range(1, 6):
            st.store_msg("s.%d" % i, b"", b"payload-%d" % i)
        st.close()
        path = os.path.join(d, "blocks", self.blocks(d)[0])
        with open(path, "rb") as f:
            data = bytearray(f.read())
        third = list(fmt.scan_block(bytes(data)))[2]
        off, n = third[1], third[2]
        data[off + n - 6] ^= 0xFF           # a payload byte of seq 3
        with open(path, "wb") as f:
            f.write(data)
        st = self.reopen(d)
        self.assertEqual(len(st.warnings), 1)
        self.assertIn(path, st.warnings[0])
        self.assertIn("checksum", st.warnings[0])
        self.assertIn("offset %d" % off, st.warnings[0])
        s = st.state()
        self.assertEqual((s.msgs, s.first_seq, s.last_seq, s.num_deleted), (4, 1, 5, 1))
        self.assertIsNone(st.load_msg(3))
        self.assertEqual(st.load_msg(4).msg, b"payload-4")
        self.assertEqual(st.subject_count("s.3"), 0)

    def test_damaged_length_mid_block_keeps_the_records_after_it(self):
        d = self.new_dir()
        st = FileStore(d)
        for i in range(1, 9):
            st.store_msg("s", b"", b"p%d" % i)
        st.close()
        os.unlink(os.path.join(d, "index.snap"))
        path = os.path.join(d, "blocks", self.blocks(d)[0])
        with open(path, "rb") as f:
            data = bytearray(f.read())
        recs = list(fmt.scan_block(bytes(data)))
        off = recs[3][1]                               # seq 4, in the last block
        data[off:off + 4] = b"\x00\x00\x10\x00"         # a plausible wrong length
        with open(path, "wb") as f:
            f.write(data)
        st = self.reopen(d)
        self.assertEqual(len(st.warnings), 1)
        self.assertIn("offset %d" % off, st.warnings[0])
        self.assertEqual(st.torn_bytes, 0)
        self.assertEqual(sorted(m.seq for m in map(st.load_msg, range(1, 9)) if m),
                         [1, 2, 3, 5, 6, 7, 8])
        self.assertEqual(st.store_msg("s", b"", b"new")[0], 9)

    def test_zero_filled_tail_is_a_torn_tail(self):
        """Power loss on ext4 can leave the file longer than its data, the
        rest zeros: cut off silently like any torn tail."""
        d = self.new_dir()
        st = FileStore(d)
        for i in range(1, 4):
            st.store_msg("s", b"", b"p%d" % i)
        st.close()
        os.unlink(os.path.join(d, "index.snap"))
        path = os.path.join(d, "blocks", self.blocks(d)[0])
        size = os.path.getsize(path)
        with open(path, "ab") as f:
            f.write(bytes(4 << 20))
        t = time.monotonic()
        st = self.reopen(d)
        self.assertLess(time.monotonic() - t, 10)
        self.assertEqual((st.warnings, st.torn_bytes), ([], 4 << 20))
        self.assertEqual(os.path.getsize(path), size)
        self.assertEqual(st.state().msgs, 3)

    def test_damaged_length_in_an_older_block_loses_its_rest(self):
        d = self.new_dir()
        st = FileStore(d, block_size=120)
        for i in range(1, 7):
            st.store_msg("s", b"", b"p%d" % i)
        st.close()
        names = self.blocks(d)
        self.assertGreater(len(names), 2)
        path = os.path.join(d, "blocks", names[0])
        with open(path, "rb") as f:
            data = bytearray(f.read())
        recs = list(fmt.scan_block(bytes(data)))
        self.assertEqual(len(recs), 2)
        data[recs[1][1]:recs[1][1] + 4] = b"\xff\xff\xff\xff"   # length of seq 2
        with open(path, "wb") as f:
            f.write(data)
        st = self.reopen(d, block_size=120)
        self.assertEqual(len(st.warnings), 1)
        self.assertIn("lost", st.warnings[0])
        self.assertIsNone(st.load_msg(2))
        self.assertEqual(st.state().msgs, 5)
        self.assertEqual(st.load_msg(6).msg, b"p6")

    def test_reopen_after_deletes_purges_and_compaction(self):
        d = self.new_dir()
        st = FileStore(d, block_size=200)
        for i in range(1, 31):
            st.store_msg("k.%d" % (i % 3), b"", b"v%d" % i)
        st.remove_msg(7)
        st.remove_msg(8, erase=True)
        self.assertEqual(st.purge("k.1", keep=2), 7)      # 10 of k.1, 7 deleted before
        self.assertEqual(st.compact(5), 2)       # 1..4 minus k.1's seq 1 and 4
        before = (st.state(), st.subjects_state(), [st.load_msg(s) for s in range(1, 31)])
        st.close()
        st = self.reopen(d, block_size=200)
        self.assertEqual(st.warnings, [])
        self.assertEqual((st.state(), st.subjects_state(),
                          [st.load_msg(s) for s in range(1, 31)]), before)
        self.assertEqual(st.load_last("k.1").seq, 28)
        self.assertEqual(st.load_next("k.2", 1).seq, 5)

    def test_erase_overwrites_the_payload_on_disk(self):
        d = self.new_dir()
        st = FileStore(d)
        st.store_msg("s", b"", b"SECRET-ONE")
        st.store_msg("s", b"", b"keep")
        st.flush()
        st.remove_msg(1, erase=True)
        st.store_msg("s", b"", b"SECRET-TWO")
        st.remove_msg(3, erase=True)             # still in the write buffer
        st.close()
        raw = b""
        for n in self.blocks(d):
            with open(os.path.join(d, "blocks", n), "rb") as f:
                raw += f.read()
        self.assertNotIn(b"SECRET", raw)
        st = self.reopen(d)
        self.assertEqual(st.warnings, [])
        s = st.state()
        self.assertEqual((s.msgs, s.first_seq, s.last_seq), (1, 2, 3))

    def test_purge_drops_block_files_and_keeps_sequences(self):
        d = self.new_dir()
        st = FileStore(d, block_size=4096)
        for i in range(2000):
            st.store_msg("p.%d" % (i % 10), b"", b"0123456789abcdef")
        self.assertGreater(len(self.blocks(d)), 10)
        self.assertEqual(st.purge(), 2000)
        self.assertEqual(len(self.blocks(d)), 1)
        st.close()
        st = self.reopen(d, block_size=4096)
        s = st.state()
        self.assertEqual((s.msgs, s.first_seq, s.last_seq), (0, 2001, 2000))
        self.assertEqual(st.store_msg("p.0", b"", b"x")[0], 2001)

    def test_front_blocks_are_unlinked_as_limits_remove_messages(self):
        d = self.new_dir()
        st = FileStore(d, StoreLimits(max_msgs=10), block_size=1024)
        for i in range(500):
            st.store_msg("m", b"", b"x" * 30)
            st.flush()
        self.assertLessEqual(len(self.blocks(d)), 2)
        st.close()
        st = self.reopen(d, limits=StoreLimits(max_msgs=10), block_size=1024)
        s = st.state()
        self.assertEqual((s.msgs, s.first_seq, s.last_seq), (10, 491, 500))

    def test_limits_applied_at_open(self):
        d = self.new_dir()
        st = FileStore(d)
        for i in range(20):
            st.store_msg("k", b"", b"%d" % i)
        st.close()
        st = self.reopen(d, limits=StoreLimits(max_msgs_per_subject=5))
        self.assertEqual(st.state().first_seq, 16)

    def test_ttl_survives_reopen(self):
        d = self.new_dir()
        st = FileStore(d)
        now = time.time_ns()
        st.store_msg("t", b"", b"x", ts=now, ttl=5 * 10**9)
        st.store_msg("t", b"", b"y", ts=now)
        st.close()
        st = self.reopen(d)
        self.assertEqual(st.next_expiry(), now + 5 * 10**9)
        self.assertEqual(st.expire(now + 5 * 10**9), 1)
        self.assertEqual(st.state().msgs, 1)

    def test_subject_bytes_round_trip(self):
        d = self.new_dir()
        st = FileStore(d)
        odd = b"caf\xe9.\xc3\xa9t\xc3\xa9".decode("utf-8", "surrogateescape")
        st.store_msg(odd, b"", b"1")
        st.remove_msg(1, erase=True)
        st.store_msg(odd, b"", b"2")
        st.close()
        st = self.reopen(d)
        self.assertEqual(st.load_last(odd).msg, b"2")
        self.assertEqual(st.subjects_state(), {odd: 1})
        self.assertEqual(st.warnings, [])

    def test_unflushed_messages_are_readable(self):
        st = self.reopen(self.new_dir())
        st.store_msg("u", b"", b"buffered")
        self.assertEqual(st.load_msg(1).msg, b"buffered")
        st.flush()
        self.assertEqual(st.load_msg(1).msg, b"buffered")

    def test_consumer_state_persists(self):
        d = self.new_dir()
        st = FileStore(d)
        st.write_consumer_state("dur-1", b"\x00state")
        st.write_consumer_state("weird/../name", b"w")
        st.close()
        st = self.reopen(d)
        self.assertEqual(st.read_consumer_state("dur-1"), b"\x00state")
        self.assertEqual(st.read_consumer_state("weird/../name"), b"w")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "name.state")))
        st.remove_consumer_state("dur-1")
        self.assertIsNone(st.read_consumer_state("dur-1"))

    def test_delete_removes_the_directory(self):
        d = self.new_dir()
        st = FileStore(d)
        st.store_msg("a", b"", b"b")
        st.delete()
        self.assertFalse(os.path.exists(d))

    def test_open_async(self):
        d = self.new_dir()
        st = FileStore(d)
        st.store_msg("a", b"", b"b")
        st.close()
        got = []
        done = threading.Event()

        def cb(store, err):
            got.append((store, err))
            done.set()
        FileStore.open_async(d, cb, sync_always=True)
        self.assertTrue(done.wait(20))
        store, err = got[0]
        self.assertIsNone(err)
        self.addCleanup(store.close)
        self.assertTrue(store.sync_always)
        self.assertEqual(store.load_msg(1).msg, b"b")
        got.clear()
        done.clear()
        with open(os.path.join(d, fmt.META_NAME), "w") as f:
            f.write("{bad")
        FileStore.open_async(d, cb)
        self.assertTrue(done.wait(20))
        self.assertIsNone(got[0][0])
        self.assertIsInstance(got[0][1], StoreCorrupt)


class DenseIndexTest(unittest.TestCase):
    """The file store's array index behaves as the dict it replaces."""

    def test_random_operations_match_a_dict(self):
        rng = random.Random(7)
        idx, model = DenseIndex(), {}
        seq = 0
        for step in range(60000):
            r = rng.random()
            if r < 0.5 or not model:
                seq += 1 if rng.random() < 0.95 else rng.randint(2, 50)
                e = ("s.%d" % rng.randint(0, 30), step, rng.randint(1, 999), rng.randint(0, 9),
                     rng.randint(0, 2**31), rng.randint(1, 99))
                idx[seq] = e
                model[seq] = e
            elif r < 0.8:
                s = min(model)                      # front removal
                self.assertEqual(idx.pop(s), model.pop(s))
            else:
                s = rng.randint(max(1, seq - 200), seq + 5)
                self.assertEqual(idx.pop(s, None), model.pop(s, None))
            if step % 997 == 0:
                self.assertEqual(len(idx), len(model))
                if model:
                    self.assertEqual(idx.first(), min(model))
                    lo = rng.randint(min(model), seq)
                    self.assertEqual(idx.live_in(lo, lo + 300),
                                     sorted(k for k in model if lo <= k < lo + 300))
                    self.assertEqual(idx.count_in(lo, lo + 300),
                                     sum(1 for k in model if lo <= k < lo + 300))
                    hi = lo + 300
                    self.assertEqual(idx.dead_in(lo, hi),
                                     [k for k in range(lo, hi) if k not in model])
                for s in range(seq - 100, seq + 2):
                    self.assertEqual(s in idx, s in model)
                    self.assertEqual(idx.get(s), model.get(s))
        # Front trimming kept the arrays near the live span, and subject ids
        # of vanished subjects were recycled.
        self.assertLess(len(idx.rlen), 2 * (seq - min(model) + 1) + 4096)
        self.assertEqual(len(idx.ids), len({e[0] for e in model.values()}))
        self.assertLessEqual(len(idx.names), 31)
        with self.assertRaises(ValueError):
            idx[seq - 1] = ("x", 0, 0, 0, 0, 1)


class SyncPolicyTest(TmpDirCase):

    def test_interval_sync_runs_in_the_background(self):
        st = FileStore(self.new_dir(), sync_interval=0.05)
        self.addCleanup(st.close)
        before = st._last_sync
        deadline = time.monotonic() + 20
        while st._last_sync == before and time.monotonic() < deadline:
            st.store_msg("s", b"", b"x")
            st.flush()
            time.sleep(0.01)
        self.assertGreater(st._last_sync, before)
        self.assertEqual(st.warnings, [])

    def test_rolled_blocks_do_not_pile_up_descriptors(self):
        st = FileStore(self.new_dir(), block_size=256)
        self.addCleanup(st.close)
        fds_before = len(os.listdir("/proc/self/fd"))
        for i in range(3000):
            st.store_msg("r", b"", b"y" * 50)
            st.flush()
        for seq in range(1, 3001, 7):
            self.assertEqual(st.load_msg(seq).msg, b"y" * 50)
        self.assertGreater(len(st._blocks), 1000)
        self.assertLessEqual(len(os.listdir("/proc/self/fd")), fds_before + 40)
        st.sync()
        self.assertEqual(st.state().msgs, 3000)

    def test_sync_always_writes_through(self):
        d = self.new_dir()
        st = FileStore(d, sync_always=True)
        self.addCleanup(st.close)
        path = os.path.join(d, "blocks", "00000001.blk")

        def on_disk():
            with open(path, "rb") as f:   # the file as it is, no flush() called
                data = f.read()
            return simulate([data[r[1]:r[1] + r[2]] for r in fmt.scan_block(data)])
        st.store_msg("w", b"", b"durable")
        self.assertEqual(on_disk(), ({1: ("w", b"", b"durable")}, 1, 1))
        st.remove_msg(1)
        self.assertEqual(on_disk(), ({}, 2, 1))


class SnapshotTest(TmpDirCase):
    """The index snapshot written at a clean close gives the same store as
    the full recovery, and is never trusted when the blocks changed."""

    def build(self):
        d = self.new_dir()
        st = FileStore(d, block_size=300)
        now = time.time_ns()
        for i in range(1, 61):
            st.store_msg("s.%d" % (i % 7), b"NATS/1.0\r\nI: %d\r\n\r\n" % i if i % 3 else b"",
                         b"m%d" % i, ttl=(100 + i) * 10**9 if i % 5 == 0 else 0)
        st.remove_msg(20)
        st.remove_msg(33, erase=True)
        st.purge("s.3", keep=2)
        st.compact(5)
        st.skip_msg()
        self.assertGreater(len(self.blocks(d)), 3)
        st.close()
        self.assertTrue(os.path.exists(os.path.join(d, "index.snap")))
        return d, now

    def picture(self, st):
        s = st.state()
        return (s, st.subjects_state(), st.deleted_seqs(), st.next_expiry(),
                [st.load_msg(q) for q in range(1, s.last_seq + 2)],
                [st.load_last("s.%d" % k) for k in range(7)],
                st.num_pending(30, "s.*"), len(st._idx))

    def test_snapshot_equals_full_recovery(self):
        d, _ = self.build()
        snap = os.path.join(d, "index.snap")
        st = FileStore(d, block_size=300)
        self.assertEqual(st.opened_from, "snapshot")
        self.assertFalse(os.path.exists(snap))          # used once only
        with_snap = self.picture(st)
        st.close()
        os.unlink(snap)
        st = FileStore(d, block_size=300)
        self.assertEqual((st.opened_from, st.warnings), ("blocks", []))
        self.assertEqual(self.picture(st), with_snap)
        # Work on a store opened from a snapshot persists like any other.
        st.close()
        st = FileStore(d, block_size=300)
        self.assertEqual(st.opened_from, "snapshot")
        st.store_msg("s.1", b"", b"after")
        st.remove_msg(40)
        st.purge("s.2", keep=1)
        before = self.picture(st)
        st.close()
        os.unlink(snap)
        st = FileStore(d, block_size=300)
        self.addCleanup(st.close)
        self.assertEqual((st.opened_from, st.warnings), ("blocks", []))
        self.assertEqual(self.picture(st), before)

    def test_changed_or_damaged_blocks_are_not_trusted(self):
        d, _ = self.build()
        path = os.path.join(d, "blocks", self.blocks(d)[1])
        with open(path, "r+b") as f:            # same size, one byte flipped
            data = bytearray(f.read())
            data[-6] ^= 0x01
            f.seek(0)
            f.write(data)
        st = FileStore(d, block_size=300)
        self.addCleanup(st.close)
        self.assertEqual(st.opened_from, "blocks")
        self.assertEqual(len(st.warnings), 1)
        self.assertIn(path, st.warnings[0])

    def test_damaged_snapshot_is_ignored(self):
        d, _ = self.build()
        snap = os.path.join(d, "index.snap")
        with open(snap, "r+b") as f:
            f.seek(40)
            f.write(b"\xff\xff")
        st = FileStore(d, block_size=300)
        self.addCleanup(st.close)
        self.assertEqual(st.opened_from, "blocks")
        self.assertEqual(st.warnings, [])
        self.assertEqual(st.state().last_seq, 61)

    def test_appended_after_snapshot_is_not_trusted(self):
        d, _ = self.build()
        snap = os.path.join(d, "index.snap")
        with open(snap, "rb") as f:
            saved = f.read()
        st = FileStore(d, block_size=300)
        st.store_msg("late", b"", b"x")
        st.close()
        with open(snap, "wb") as f:             # an old snapshot put back
            f.write(saved)
        st = FileStore(d, block_size=300)
        self.addCleanup(st.close)
        self.assertEqual(st.opened_from, "blocks")
        self.assertEqual(st.load_last("late").msg, b"x")


class FormatAndLockTest(TmpDirCase):

    def make(self):
        d = self.new_dir()
        st = FileStore(d)
        st.store_msg("a", b"", b"b")
        st.close()
        return d

    def test_newer_format_refused(self):
        d = self.make()
        with open(os.path.join(d, fmt.META_NAME), "w") as f:
            json.dump({"format": 2}, f)
        with self.assertRaises(StoreNewerFormat) as cm:
            FileStore(d)
        self.assertIn(os.path.join(d, fmt.META_NAME), str(cm.exception))
        self.assertIn("newer", str(cm.exception))

    def test_damaged_meta_refused(self):
        d = self.make()
        for content, why in ((b"\x00\xffgarbage", "not valid JSON"),
                             (b'{"format": "one"}', "format"),
                             (b"[]", "format")):
            with open(os.path.join(d, fmt.META_NAME), "wb") as f:
                f.write(content)
            with self.assertRaises(StoreCorrupt) as cm:
                FileStore(d)
            self.assertIn(fmt.META_NAME, str(cm.exception))
            self.assertIn(why, str(cm.exception))
        os.unlink(os.path.join(d, fmt.META_NAME))
        with self.assertRaises(StoreCorrupt) as cm:
            FileStore(d)
        self.assertIn("missing", str(cm.exception))

    def test_store_dir_lock(self):
        d = self.new_dir()
        lock = lock_store_dir(d)
        with self.assertRaises(StoreError) as cm:
            lock_store_dir(d)
        self.assertIn("in use by another server (pid %d)" % os.getpid(), str(cm.exception))
        # A second process (a second server) is refused the same way.
        code = ("import sys; from gnats.jetstream.filestore import lock_store_dir\n"
                "try:\n    lock_store_dir(sys.argv[1])\n"
                "except Exception as e:\n    print(e); sys.exit(3)\n")
        p = subprocess.run([sys.executable, "-c", code, d], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn("in use by another server", p.stdout)
        lock.release()
        lock_store_dir(d).release()

    def test_store_dir_not_creatable(self):
        d = self.new_dir()
        with open(d, "w") as f:
            f.write("a file, not a directory")
        with self.assertRaises(StoreError) as cm:
            lock_store_dir(os.path.join(d, "sub"))
        self.assertIn(d, str(cm.exception))
        with self.assertRaises(StoreError) as cm:
            FileStore(os.path.join(d, "sub"))
        self.assertIn("Not a directory", str(cm.exception))


DISK_CHILD = r"""
import json, resource, signal, sys
from gnats.jetstream.filestore import FileStore
from gnats.jetstream.store import StoreError
d, mode = sys.argv[1], sys.argv[2]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)    # write(2) then fails with EFBIG
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
st = FileStore(d, sync_always=(mode == "always"))
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, hard))
out = {"acked": 0}
try:
    for i in range(100000):
        st.store_msg("d", b"", b"x" * 100)
        out["acked"] = i + 1
        if mode == "interval" and i % 10 == 9:
            st.flush()                 # the reactor's end-of-turn flush
except StoreError as e:
    out["err"] = str(e)
try:
    st.store_msg("d", b"", b"y" * 100)
except StoreError as e:
    out["err2"] = str(e)
out["loaded"] = st.load_msg(1).msg.decode()
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))   # space again
st.store_msg("d", b"", b"after")
out["last"] = st.state().last_seq
st.close()
print(json.dumps(out))
"""


class DiskErrorTest(TmpDirCase):

    def run_child(self, mode):
        d = self.new_dir()
        p = subprocess.run([sys.executable, "-c", DISK_CHILD, d, mode], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        return d, json.loads(p.stdout)

    def check(self, d, out):
        self.assertIn(os.path.join(d, "blocks", "00000001.blk"), out["err"])
        self.assertIn("write failed: File too large", out["err"])
        self.assertIn("File too large", out["err2"])
        self.assertEqual(out["loaded"], "x" * 100)
        st = FileStore(d)
        self.addCleanup(st.close)
        self.assertEqual(st.warnings, [])
        self.assertEqual(st.torn_bytes, 0)
        s = st.state()
        return s

    def test_sync_always_error_means_not_stored(self):
        d, out = self.run_child("always")
        s = self.check(d, out)
        # Every acknowledged message is there, the refused ones are not.
        self.assertGreater(out["acked"], 50)
        self.assertEqual(out["last"], out["acked"] + 1)
        self.assertEqual((s.msgs, s.last_seq), (out["acked"] + 1, out["acked"] + 1))

    def test_buffered_error_keeps_the_buffer_until_the_disk_recovers(self):
        d, out = self.run_child("interval")
        s = self.check(d, out)
        # Messages stored before the failed flush were kept in the buffer and
        # written once the limit was lifted; nothing was lost.
        self.assertEqual(s.msgs, out["last"])
        self.assertEqual(out["last"], out["acked"] + 1)


if __name__ == "__main__":
    unittest.main()
