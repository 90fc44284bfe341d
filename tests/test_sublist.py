"""The subject index: matching, wildcards, queues, removal, cache."""

import unittest

from gnats.sublist import Sublist, Subscription, subject_matches, valid_subject


def sub(subject, queue=None, client="c", sid=b"1"):
    return Subscription(client, subject, queue, sid)


def subjects(result):
    return sorted(s.subject for s in result.plain)


class TestValidity(unittest.TestCase):
    def test_valid_subjects(self):
        for s in ["foo", "foo.bar", "foo.*", "foo.>", "*", ">", "*.bar.>", "foo*.bar"]:
            self.assertTrue(valid_subject(s), s)

    def test_invalid_subjects(self):
        for s in ["", ".", "foo.", ".foo", "foo..bar", "foo.>.bar", "foo bar", "foo\tbar"]:
            self.assertFalse(valid_subject(s), s)

    def test_publish_subjects_have_no_wildcards(self):
        self.assertFalse(valid_subject("foo.*", wildcards=False))
        self.assertFalse(valid_subject("foo.>", wildcards=False))
        self.assertTrue(valid_subject("foo.bar", wildcards=False))

    def test_subject_matches(self):
        self.assertTrue(subject_matches("foo.*", "foo.bar"))
        self.assertFalse(subject_matches("foo.*", "foo.bar.baz"))
        self.assertTrue(subject_matches("foo.>", "foo.bar.baz"))
        self.assertFalse(subject_matches("foo.>", "foo"))
        self.assertTrue(subject_matches(">", "a"))


class TestMatch(unittest.TestCase):
    def setUp(self):
        self.sl = Sublist()

    def test_literal(self):
        self.sl.insert(sub("foo.bar"))
        self.assertEqual(subjects(self.sl.match("foo.bar")), ["foo.bar"])
        self.assertEqual(subjects(self.sl.match("foo")), [])
        self.assertEqual(subjects(self.sl.match("foo.bar.baz")), [])

    def test_wildcards(self):
        for s in ["foo.*", "foo.>", "*.bar", ">", "foo.*.baz", "*.*.*"]:
            self.sl.insert(sub(s))
        self.assertEqual(subjects(self.sl.match("foo.bar")), sorted(["foo.*", "foo.>", "*.bar", ">"]))
        self.assertEqual(subjects(self.sl.match("foo.bar.baz")), sorted(["foo.>", ">", "foo.*.baz", "*.*.*"]))
        self.assertEqual(subjects(self.sl.match("foo")), [">"])
        self.assertEqual(subjects(self.sl.match("x.y.z.w")), [">"])

    def test_full_wildcard_needs_a_token(self):
        self.sl.insert(sub("foo.>"))
        self.assertEqual(subjects(self.sl.match("foo")), [])
        self.assertEqual(subjects(self.sl.match("foo.a")), ["foo.>"])

    def test_queue_groups_are_grouped_by_name(self):
        self.sl.insert(sub("foo", "q1", sid=b"1"))
        self.sl.insert(sub("foo", "q1", sid=b"2"))
        self.sl.insert(sub("foo.*", "q2", sid=b"3"))
        self.sl.insert(sub("*", "q1", sid=b"4"))
        r = self.sl.match("foo")
        self.assertEqual(r.plain, [])
        groups = {g[0].queue: sorted(s.sid for s in g) for g in r.queues}
        self.assertEqual(groups, {"q1": [b"1", b"2", b"4"]})

    def test_remove_and_prune(self):
        a, b = sub("foo.bar"), sub("foo.*")
        self.sl.insert(a)
        self.sl.insert(b)
        self.assertEqual(self.sl.count, 2)
        self.assertTrue(self.sl.remove(a))
        self.assertFalse(self.sl.remove(a))
        self.assertEqual(subjects(self.sl.match("foo.bar")), ["foo.*"])
        self.assertTrue(self.sl.remove(b))
        self.assertEqual(self.sl.count, 0)
        self.assertTrue(self.sl.root.is_empty())

    def test_cache_invalidated_by_changes(self):
        self.sl.insert(sub("foo"))
        self.assertEqual(len(self.sl.match("foo").plain), 1)
        self.assertEqual(len(self.sl.match("foo").plain), 1)
        st = self.sl.stats()
        self.assertEqual(st["num_matches"], 2)
        self.assertEqual(st["num_cache"], 1)
        self.assertAlmostEqual(st["cache_hit_rate"], 0.5)
        gen = self.sl.gen
        w = sub("f*")
        self.sl.insert(sub("*"))
        self.assertGreater(self.sl.gen, gen)
        self.assertEqual(len(self.sl.match("foo").plain), 2)
        self.sl.insert(w)
        self.assertEqual(len(self.sl.match("foo").plain), 2)

    def test_stats(self):
        for i in range(3):
            self.sl.insert(sub("a", sid=str(i).encode()))
        self.sl.match("a")
        st = self.sl.stats()
        self.assertEqual(st["num_subscriptions"], 3)
        self.assertEqual(st["num_inserts"], 3)
        self.assertEqual(st["max_fanout"], 3)
        self.assertEqual(st["avg_fanout"], 3.0)

    def test_cache_bounded(self):
        from gnats.sublist import CACHE_MAX
        self.sl.insert(sub(">"))
        for i in range(CACHE_MAX + 50):
            self.sl.match("s.%d" % i)
        self.assertLessEqual(len(self.sl.cache), CACHE_MAX)

    def test_many_subs_on_one_subject_remove_fast(self):
        subs = [sub("same", sid=str(i).encode()) for i in range(50000)]
        for s_ in subs:
            self.sl.insert(s_)
        # Removal was quadratic when a node kept its subscriptions in a list;
        # a dict makes each removal O(1). Checked by structure, not by a
        # wall-clock bound that a busy machine would break.
        node = self.sl.root.nodes["same"]
        self.assertIsInstance(node.plain, dict)
        self.assertEqual(len(node.plain), 50000)
        self.assertEqual(self.sl.remove_many(subs[:25000]), 25000)
        for s_ in subs[25000:]:
            self.assertTrue(self.sl.remove(s_))
        self.assertEqual(self.sl.count, 0)
        self.assertEqual(self.sl.match("same").plain, [])

    def test_remove_many_invalidates_cache(self):
        a, b = sub("x.y"), sub("x.*")
        self.sl.insert(a)
        self.sl.insert(b)
        self.assertEqual(len(self.sl.match("x.y").plain), 2)
        gen = self.sl.gen
        self.assertEqual(self.sl.remove_many([a, b, a]), 2)
        self.assertGreater(self.sl.gen, gen)
        self.assertEqual(self.sl.match("x.y").plain, [])

    def test_all_subs(self):
        for s in ["a", "a.b", "a.*", "a.>", ">"]:
            self.sl.insert(sub(s))
        self.sl.insert(sub("a", "q"))
        self.assertEqual(self.sl.count, 6)


if __name__ == "__main__":
    unittest.main()
