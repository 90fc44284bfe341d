"""gnats/transform.py and gnats/mapping.py alone: every transform function,
the weighted choice, the validation rules and their texts, and the config
block's errors.

The expected subjects below were produced by nats-server 2.15.1 for the
same mappings (tests/test_mappings.py compares the two servers live)."""

import unittest
from collections import Counter

from gnats import conf
from gnats.mapping import CACHE_BUDGET, DROPPED, Mappings, parse_mappings
from gnats.transform import MappingError, SubjectTransform, fnv1a32


def tr(src, dest, subject):
    return SubjectTransform(src, dest).match(subject)


class TransformFunctions(unittest.TestCase):
    def test_wildcards(self):
        self.assertEqual(tr("wc.*.*", "out.wc.$2.{{wildcard(1)}}", "wc.a.b"), "out.wc.b.a")
        self.assertEqual(tr("a.*", "b.{{ Wildcard( 1 ) }}", "a.x"), "b.x")
        self.assertEqual(tr("fwc.*.>", "out.fwc.$1.>", "fwc.x.y.z"), "out.fwc.x.y.z")
        self.assertEqual(tr("fwc.*.>", "out.fwc.$1.>", "fwc.x.y"), "out.fwc.x.y")
        self.assertEqual(tr(">", ">", "any.thing"), "any.thing")
        self.assertEqual(tr("foo", "bar", "foo"), "bar")
        # a $word that is not a number is a literal token
        self.assertEqual(tr("a.*", "b.$x.$1", "a.q"), "b.$x.q")

    def test_no_match(self):
        t = SubjectTransform("a.*.c", "x.$1")
        self.assertIsNone(t.match("a.b"))
        self.assertIsNone(t.match("a.b.d"))
        self.assertIsNone(t.match("a.b.c.d"))
        self.assertIsNone(t.match("a..c"))
        self.assertIsNone(t.match("a.*.c"))
        self.assertEqual(t.match("a.b.c"), "x.b")
        self.assertIsNone(SubjectTransform("a.>", "b.>").match("a"))

    def test_fnv1a32(self):
        # the FNV-1a 32 test vectors (Go's hash/fnv New32a gives the same)
        self.assertEqual(fnv1a32(b""), 0x811C9DC5)
        self.assertEqual(fnv1a32(b"a"), 0xE40C292C)
        self.assertEqual(fnv1a32(b"foobar"), 0xBF9CF968)

    def test_partition(self):
        d = "out.part.{{partition(10,1,2)}}.{{Partition(3, 2)}}"
        for subject, want in (("part.x.y", "out.part.2.1"), ("part.abc.def", "out.part.6.0"),
                              ("part.1.2", "out.part.0.1")):
            self.assertEqual(tr("part.*.*", d, subject), want)
        # partition(n) alone hashes the whole subject, dots included
        self.assertEqual(tr("partall.*.*", "out.partall.{{partition(5)}}", "partall.a.b"), "out.partall.3")
        self.assertEqual(tr("partall.*.*", "out.partall.{{partition(5)}}", "partall.hello.world"),
                         "out.partall.4")
        self.assertEqual(tr("a.*.*", "b.{{partition(7,1,2)}}.$2", "a.x.y"), "b.4.y")
        self.assertEqual(tr("a.*", "b.{{partition(0,1)}}", "a.x"), "b.0")
        # the tokens are concatenated without a separator: (ab, c) = (a, bc)
        self.assertEqual(tr("p.*.*", "{{partition(1000,1,2)}}", "p.ab.c"),
                         tr("p.*.*", "{{partition(1000,1,2)}}", "p.a.bc"))
        self.assertEqual(tr("p.*.*", "{{partition(1000,1,2)}}", "p.ab.c"),
                         str(fnv1a32(b"abc") % 1000))

    def test_split(self):
        d = "out.split.{{split(1,-)}}"
        self.assertEqual(tr("split.*", d, "split.-a--b-c-"), "out.split.a.b.c")
        self.assertEqual(tr("split.*", d, "split.abc"), "out.split.abc")
        self.assertEqual(tr("split.*", d, "split.a-b"), "out.split.a.b")

    def test_split_from_left_and_right(self):
        self.assertEqual(tr("s.*", "o.{{SplitFromLeft(1,3)}}", "s.abcdefg"), "o.abc.defg")
        self.assertEqual(tr("s.*", "o.{{splitfromleft(1,3)}}", "s.abc"), "o.abc")
        self.assertEqual(tr("s.*", "o.{{splitfromleft(1,3)}}", "s.ab"), "o.ab")
        self.assertEqual(tr("s.*", "o.{{splitfromright(1,3)}}", "s.abcdefg"), "o.abcd.efg")
        self.assertEqual(tr("s.*", "o.{{splitfromright(1,3)}}", "s.abc"), "o.abc")

    def test_slice_from_left_and_right(self):
        self.assertEqual(tr("s.*", "o.{{slicefromleft(1,3)}}", "s.abcdefgh"), "o.abc.def.gh")
        self.assertEqual(tr("s.*", "o.{{slicefromleft(1,3)}}", "s.abcdef"), "o.abc.def")
        self.assertEqual(tr("s.*", "o.{{slicefromleft(1,3)}}", "s.ab"), "o.ab")
        self.assertEqual(tr("s.*", "o.{{SliceFromRight(1,3)}}", "s.abcdefgh"), "o.ab.cde.fgh")
        self.assertEqual(tr("s.*", "o.{{slicefromright(1,3)}}", "s.abcdef"), "o.abc.def")
        self.assertEqual(tr("s.*", "o.{{slicefromright(1,3)}}", "s.ab"), "o.ab")

    def test_left_right(self):
        self.assertEqual(tr("l.*", "o.{{left(1,2)}}", "l.abcd"), "o.ab")
        self.assertEqual(tr("l.*", "o.{{left(1,2)}}", "l.a"), "o.a")
        self.assertEqual(tr("r.*", "o.{{right(1,2)}}", "r.abcd"), "o.cd")
        self.assertEqual(tr("r.*", "o.{{Right(1,2)}}", "r.a"), "o.a")

    def test_random(self):
        t = SubjectTransform("r.*", "o.{{random(4)}}.$1")
        seen = Counter(t.match("r.x") for _ in range(2000))
        self.assertEqual(set(seen), {"o.0.x", "o.1.x", "o.2.x", "o.3.x"})
        self.assertTrue(t.random)
        self.assertFalse(SubjectTransform("r.*", "o.$1").random)

    def test_literal_source_functions(self):
        # a literal source may use partition/random (of the whole subject)
        self.assertEqual(tr("foo", "bar.{{partition(10)}}", "foo"), "bar.%d" % (fnv1a32(b"foo") % 10))

    def test_utf8_partition(self):
        # hashed as UTF-8 bytes, as Go hashes its strings
        self.assertEqual(tr("u.*", "{{partition(97,1)}}", "u.é"), str(fnv1a32("é".encode()) % 97))

    def test_reverse(self):
        t = SubjectTransform("a.*.*", "b.$2.$1")
        r = t.reverse()
        self.assertEqual(r.match(t.match("a.x.y")), "a.x.y")
        self.assertEqual(SubjectTransform("a", "b").reverse().match("b"), "a")


class TransformErrors(unittest.TestCase):
    def check(self, src, dest, text):
        with self.assertRaises(MappingError) as cm:
            SubjectTransform(src, dest)
        self.assertEqual(str(cm.exception), text)

    def test_texts(self):
        pre = "invalid mapping destination: "
        self.check("a.*", "b.$2", pre + "wildcard index out of range in $2: [2]")
        self.check("s", "t.$1", pre + "wildcard index out of range in $1")
        self.check("j", "k.{{nope(1)}}", pre + "unknown function in {{nope(1)}}")
        self.check("k.*", "k.{{split(1)}}", pre + "not enough arguments passed to the function in {{split(1)}}")
        self.check("u.*", "v.{{wildcard(1,2)}}",
                   pre + "too many arguments passed to the function in {{wildcard(1,2)}}")
        self.check("w.*", "v.{{partition(a)}}",
                   pre + "function argument is invalid or in the wrong format in {{partition(a)}}")
        self.check("z.*", "a.{{wildcard()}}", pre + "not enough arguments passed to the function in {{wildcard()}}")
        self.check("z.*", "a.{{random()}}",
                   pre + "function argument is invalid or in the wrong format in {{random()}}")
        self.check("z.*", "a.{{left(1)}}", pre + "not enough arguments passed to the function in {{left(1)}}")
        self.check("z.*", "a.{{slicefromleft(1,2,3)}}",
                   pre + "too many arguments passed to the function in {{slicefromleft(1,2,3)}}")
        self.check("z.*", "a.{{split(1,a b)}}",
                   pre + "function argument is invalid or in the wrong format in {{split(1,a b)}}")
        self.check("o", "p.*", "invalid subject")
        self.check("q.>", "r", "invalid subject")
        self.check("q", "r.>", "invalid subject")
        self.check("q", "r..s", "invalid subject")

    def test_strict_import(self):
        with self.assertRaises(MappingError) as cm:
            SubjectTransform("a.*", "b.{{partition(3,1)}}", strict=True)
        self.assertIn("the only mapping function allowed for import transforms is {{Wildcard()}}",
                      str(cm.exception))
        with self.assertRaises(MappingError) as cm:
            SubjectTransform("a.*.*", "b.$1", strict=True)
        self.assertEqual(str(cm.exception),
                         "invalid mapping destination: not using all of the token wildcard(s) in b.$1")


class WeightedMappings(unittest.TestCase):
    N = 10000

    def draws(self, m, subject):
        return Counter(m.map(subject) for _ in range(self.N))

    def near(self, got, pct):
        # within 3 percentage points of the weight: > 6 standard deviations
        # at 10,000 draws, so this never fails by chance
        self.assertLess(abs(got - self.N * pct / 100), self.N * 3 / 100, (got, pct))

    def test_fifty_fifty(self):
        m = Mappings()
        m.add("foo", [("bar", 50, ""), ("baz", 50, "")])
        c = self.draws(m, "foo")
        self.assertEqual(set(c), {"bar", "baz"})
        self.near(c["bar"], 50)
        self.near(c["baz"], 50)

    def test_uneven_with_wildcards(self):
        m = Mappings()
        m.add("o.*", [("a.$1", 10, ""), ("b.$1", 20, ""), ("c.$1", 70, "")])
        c = self.draws(m, "o.7")
        self.assertEqual(set(c), {"a.7", "b.7", "c.7"})
        for k, w in (("a.7", 10), ("b.7", 20), ("c.7", 70)):
            self.near(c[k], w)

    def test_remainder_goes_to_the_source(self):
        m = Mappings()
        m.add("o.*", [("a.$1", 30, "")])
        c = self.draws(m, "o.x")
        self.assertEqual(set(c), {"a.x", "o.x"})
        self.near(c["a.x"], 30)
        self.near(c["o.x"], 70)

    def test_loss_mapping_drops_the_rest(self):
        m = Mappings()
        m.add("d", [("d", 20, ""), ("e", 30, "")])
        c = self.draws(m, "d")
        self.assertEqual(set(c), {"d", "e", ""})
        self.near(c["d"], 20)
        self.near(c["e"], 30)
        self.near(c[""], 50)
        self.assertEqual(Counter(m.select(b"d") for _ in range(200))[(DROPPED, False)] > 0, True)

    def test_cluster_scoped(self):
        m = Mappings(cluster="east")
        m.add("s.*", [("all.$1", 100, ""), ("east.$1", 100, "east")])
        self.assertEqual(m.map("s.1"), "east.1")
        m.set_cluster("west")
        self.assertEqual(m.map("s.1"), "all.1")
        m.set_cluster("")
        self.assertEqual(m.map("s.1"), "all.1")
        # only scoped entries: elsewhere the subject is left as it is
        m2 = Mappings(cluster="x")
        m2.add("t", [("u", 100, "east")])
        self.assertEqual(m2.map("t"), "t")

    def test_rules(self):
        m = Mappings()
        for dests, text in (
                ([("x", 50, ""), ("x", 20, "")], 'duplicate entry for "x"'),
                ([("x", 60, ""), ("y", 50, "")], "total weight needs to be <= 100"),
                ([("x", 101, "")], "individual weights need to be <= 100"),
                ([("x", 60, "c"), ("y", 50, "c")], "total weight needs to be <= 100")):
            with self.assertRaises(MappingError) as cm:
                m.add("src", dests)
            self.assertEqual(str(cm.exception), text)
        # per cluster totals are separate
        m.add("src", [("x", 60, "c1"), ("y", 60, "c2"), ("z", 60, "")])
        with self.assertRaises(MappingError) as cm:
            m.add("a b", [("x", 100, "")])
        self.assertEqual(str(cm.exception), "invalid subject")

    def test_order_and_no_match(self):
        m = Mappings()
        m.add("a.*", [("first.$1", 100, "")])
        m.add("a.b", [("second", 100, "")])
        self.assertEqual(m.map("a.b"), "first.b")     # the first that matches
        self.assertIsNone(m.map("zzz"))
        self.assertEqual(m.select(b"zzz"), (b"zzz", True))
        self.assertEqual(m.select(b"a.q"), (b"first.q", True))
        # the same source again replaces the first entry, in place
        m.add("a.*", [("third.$1", 100, "")])
        self.assertEqual(m.map("a.b"), "third.b")
        self.assertEqual(len(m), 2)

    def test_select_fixed_flag(self):
        m = Mappings()
        m.add("w", [("x", 50, ""), ("y", 50, "")])
        m.add("r.*", [("o.{{random(3)}}", 100, "")])
        out, fixed = m.select(b"w")
        self.assertIn(out, (b"x", b"y"))
        self.assertFalse(fixed)
        self.assertFalse(m.select(b"r.1")[1])

    def test_cache_is_bounded(self):
        m = Mappings()
        m.add("a.*", [("b.$1", 100, "")])
        for i in range(20000):
            self.assertEqual(m.select(b"a.%d" % i), (b"b.%d" % i, True))
            m.select(b"miss.%d.%s" % (i, b"x" * 40))
        self.assertLessEqual(m._used, CACHE_BUDGET)
        self.assertLess(len(m._cache), 20000)
        self.assertEqual(m.select(b"a.5"), (b"b.5", True))

    def test_equality_for_reload(self):
        a, b = Mappings(), Mappings()
        a.add("x", [("y", 100, "")])
        b.add("x", [("y", 100, "")])
        self.assertEqual(a, b)
        b.add("x", [("z", 100, "")])
        self.assertNotEqual(a, b)


class ConfigBlock(unittest.TestCase):
    def load(self, body):
        cfg = conf.parse("mappings {\n%s\n}\n" % body, "m.conf")
        return parse_mappings(cfg["mappings"])

    def err(self, body):
        with self.assertRaises(conf.ConfigError) as cm:
            self.load(body)
        return str(cm.exception)

    def test_forms(self):
        m = self.load('  "orders.*": "orders.v2.$1"\n'
                      '  w: [ {destination: "a", weight: 40%}, {dest: "b", weight: 60} ]\n'
                      '  one: {destination: "two", weight: 100}\n'
                      '  c.*: [ {destination: "east.$1", weight: 100%, cluster: east} ]\n')
        self.assertEqual(m.map("orders.7"), "orders.v2.7")
        self.assertEqual(m.map("one"), "two")
        self.assertIn(m.map("w"), ("a", "b"))
        self.assertEqual(m.map("c.1"), "c.1")
        m.set_cluster("east")
        self.assertEqual(m.map("c.1"), "east.1")

    def test_errors(self):
        # nats-server 2.15.1's texts; positions are this loader's (the key)
        self.assertEqual(self.err('  "foo..x": "bar"'), 'm.conf:2:3: Subject "foo..x" is not a valid subject')
        self.assertEqual(self.err('  "a.*": "b.$2"'),
                         'm.conf:2:3: Error adding mapping for "a.*" to "b.$2" : invalid mapping '
                         'destination: wildcard index out of range in $2: [2]')
        self.assertEqual(self.err('  c.*: [ {destination: "x.$1", weight: 60%}, {destination: "y.$1", weight: 50%} ]'),
                         'm.conf:2:3: Error adding mapping for "c.*" : total weight needs to be <= 100')
        self.assertEqual(self.err('  d: [ {destination: "x", weight: 101} ]'),
                         "m.conf:2:27: Invalid weight 101 for mapping destination")
        self.assertEqual(self.err('  e: [ {destination: "x", weight: "abc%"} ]'),
                         'm.conf:2:27: Invalid weight "abc" for mapping destination')
        self.assertEqual(self.err('  f: [ {destination: "x"} ]'),
                         'm.conf:2:8: Missing weight for mapping destination "x"')
        self.assertEqual(self.err('  g: [ {destination: "x", weight: 0.5} ]'),
                         "m.conf:2:27: Unknown entry type for weight of 0.5")
        self.assertEqual(self.err('  h: [ {destination: "x", weight: 10, foo: 1} ]'),
                         'm.conf:2:39: Unknown field "foo" for mapping destination')
        self.assertEqual(self.err("  i: 5"), "m.conf:2:3: Expected an entry for the mapping destination")
        self.assertEqual(self.err('  l: [ {destination: 7, weight: 10} ]'),
                         "m.conf:2:22: interface conversion: interface {} is int64, not string")
        self.assertEqual(self.err('  m: [ {destination: "x", weight: 50}, {destination: "x", weight: 20} ]'),
                         'm.conf:2:3: Error adding mapping for "m" : duplicate entry for "x"')
        self.assertEqual(self.err('  y: [ {destination: "z", weight: -5} ]'),
                         "m.conf:2:27: Invalid weight -5 for mapping destination")

    def test_not_a_block(self):
        with self.assertRaises(conf.ConfigError) as cm:
            parse_mappings("foo")
        self.assertIn("not map[string]interface {}", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
