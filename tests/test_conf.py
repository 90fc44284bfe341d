"""The config file format (gnats.conf) and its mapping onto Options
(gnats.options.apply_config): every syntax element, every error with its exact
FILE:LINE:COL text, includes, variables, sizes and durations, and a seeded
mutation loop that may only ever raise ConfigError."""

import glob
import os
import random
import shutil
import tempfile
import unittest

from gnats import conf, options
from gnats.auth import ClientAuth
from gnats.conf import ConfigError, parse
from gnats.options import Options, apply_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def err(text, filename="<string>"):
    """The error text parse() raises for text."""
    try:
        parse(text, filename)
    except ConfigError as e:
        return str(e)
    raise AssertionError("no error for %r" % text)


def opts_of(text, filename="t.conf"):
    return apply_config(Options(), parse(text, filename), filename)


def opt_err(text, filename="t.conf"):
    try:
        opts_of(text, filename)
    except ConfigError as e:
        return str(e)
    raise AssertionError("no error for %r" % text)


class TestSyntax(unittest.TestCase):
    def test_separators(self):
        self.assertEqual(parse("a: 1\nb = 2\nc 3\nd:4\ne=5\n"),
                         {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5})

    def test_terminators(self):
        self.assertEqual(parse("a: 1; b: 2\nc: 3,\n"), {"a": 1, "b": 2, "c": 3})
        self.assertEqual(parse("x { a: 1, b: 2; c: 3 }"), {"x": {"a": 1, "b": 2, "c": 3}})

    def test_blocks(self):
        self.assertEqual(parse("a { b: 1 }\nc: { d { e: x } }\nf = {}\n"),
                         {"a": {"b": 1}, "c": {"d": {"e": "x"}}, "f": {}})
        self.assertEqual(parse("a{\n  b: 1\n}\n"), {"a": {"b": 1}})

    def test_arrays(self):
        self.assertEqual(parse("a: [1, 2, 3]"), {"a": [1, 2, 3]})
        self.assertEqual(parse("a: [\n  1\n  2,\n  3,\n]"), {"a": [1, 2, 3]})
        self.assertEqual(parse("a: []"), {"a": []})
        self.assertEqual(parse("a: [[1, 2], [x]]"), {"a": [[1, 2], ["x"]]})
        self.assertEqual(parse("a = [ {user: a, password: b}, {user: c, password: d} ]"),
                         {"a": [{"user": "a", "password": "b"}, {"user": "c", "password": "d"}]})
        self.assertEqual(parse("a: [ # c\n  x # c\n  // c\n  y\n]"), {"a": ["x", "y"]})

    def test_comments(self):
        self.assertEqual(parse("# c\n// c\na: 1 # c\nb: 2 // c\n  # c\n"), {"a": 1, "b": 2})
        # a comment starts only where a token may: URLs and a#b stay whole
        self.assertEqual(parse("a: nats://h:1\nb: a#b\nc: a//b"),
                         {"a": "nats://h:1", "b": "a#b", "c": "a//b"})

    def test_strings(self):
        self.assertEqual(parse('a: "x y"\nb: \'x "y"\'\nc: ""\n'),
                         {"a": "x y", "b": 'x "y"', "c": ""})
        self.assertEqual(parse(r'a: "t\tn\nr\rq\"b\\x\x41"'), {"a": "t\tn\nr\rq\"b\\xA"})
        self.assertEqual(parse(r"a: 'raw\n'"), {"a": "raw\\n"})
        self.assertEqual(parse('a: "# not a comment"'), {"a": "# not a comment"})

    def test_bare_strings(self):
        self.assertEqual(parse("a: localhost:4242\nb: 127.0.0.1:4222\nc: /tmp/x.log"),
                         {"a": "localhost:4242", "b": "127.0.0.1:4222", "c": "/tmp/x.log"})
        self.assertEqual(parse("x { a: b}"), {"x": {"a": "b"}})
        self.assertEqual(parse("a: [b,c]"), {"a": ["b", "c"]})
        self.assertEqual(parse("a: b;"), {"a": "b"})
        self.assertEqual(parse("a: 1.2.3.4\nb: 1_000\nc: 0x10\nd: 1xx"),
                         {"a": "1.2.3.4", "b": "1_000", "c": "0x10", "d": "1xx"})

    def test_quoted_keys(self):
        self.assertEqual(parse('"a b": 1\n\'c\' = 2'), {"a b": 1, "c": 2})

    def test_numbers(self):
        c = parse("a: 0\nb: -1\nc: 4222\nd: 1.5\ne: -0.25\n")
        self.assertEqual(c, {"a": 0, "b": -1, "c": 4222, "d": 1.5, "e": -0.25})
        self.assertIsInstance(c["c"], int)
        self.assertIsInstance(c["d"], float)

    def test_sizes(self):
        # K/M/G... are powers of 1000, KB/KI/KIB powers of 1024, any case
        cases = {"1k": 1000, "1K": 1000, "1kb": 1024, "1KB": 1024, "64KB": 65536,
                 "2ki": 2048, "1KiB": 1024, "1m": 10 ** 6, "10M": 10 ** 7,
                 "1MB": 1 << 20, "1mb": 1 << 20, "1g": 10 ** 9, "1G": 10 ** 9,
                 "1GB": 1 << 30, "1t": 10 ** 12, "1TB": 1 << 40, "1p": 10 ** 15,
                 "1e": 10 ** 18, "-2k": -2000}
        for text, want in cases.items():
            v = parse("a: " + text)["a"]
            self.assertEqual(v, want, text)
            self.assertIsInstance(v, conf.SizedInt)
            self.assertEqual(v.raw, text)

    def test_booleans(self):
        for t in ("true", "TRUE", "True", "yes", "Yes", "on", "ON"):
            self.assertIs(parse("a: " + t)["a"], True, t)
        for t in ("false", "False", "no", "NO", "off", "Off"):
            self.assertIs(parse("a: " + t)["a"], False, t)
        self.assertEqual(parse('a: "true"')["a"], "true")

    def test_durations_stay_strings(self):
        self.assertEqual(parse("a: 2s\nb: 500ms\nc: 1h30m\nd: \"1m\""),
                         {"a": "2s", "b": "500ms", "c": "1h30m", "d": "1m"})

    def test_later_key_wins(self):
        self.assertEqual(parse("a: 1\na: 2"), {"a": 2})

    def test_crlf_and_bom(self):
        d = tempfile.mkdtemp()
        p = os.path.join(d, "x.conf")
        with open(p, "wb") as f:
            f.write(b"\xef\xbb\xbfa: 1\r\nb {\r\n c: 2\r\n}\r\n")
        self.assertEqual(conf.parse_file(p), {"a": 1, "b": {"c": 2}})
        shutil.rmtree(d)

    def test_positions(self):
        c = parse("a: 1\n  b {\n    c: [x,\n  y]\n  }\n", "f.conf")
        self.assertEqual(str(c.key_pos["a"]), "f.conf:1:1")
        self.assertEqual(str(c.value_pos["a"]), "f.conf:1:4")
        self.assertEqual(str(c.key_pos["b"]), "f.conf:2:3")
        self.assertEqual(str(c["b"].key_pos["c"]), "f.conf:3:5")
        self.assertEqual([str(p) for p in c["b"]["c"].pos], ["f.conf:3:9", "f.conf:4:3"])


class TestSyntaxErrors(unittest.TestCase):
    def test_unclosed_array_reported_at_brace(self):
        self.assertEqual(err("x {\n  a: [\n    1\n}\n", "f.conf"),
                         "f.conf:4:1: unexpected '}' in the array opened at 2:6 (missing ']'?)")
        self.assertEqual(err("max_payload: [\n1\n}\n"),
                         "<string>:3:1: unexpected '}' in the array opened at 1:14 (missing ']'?)")

    def test_eof(self):
        self.assertEqual(err("a: [1,\n2"),
                         "<string>:2:2: unexpected end of file: array opened at 1:4 is not closed")
        self.assertEqual(err("a {\n b: 1\n"),
                         "<string>:3:1: unexpected end of file: block opened at 1:3 is not closed")

    def test_array_separator(self):
        self.assertEqual(err("a: [1 2]"),
                         "<string>:1:7: expected ',' or ']' after an array element, got '2'")
        self.assertEqual(err("a: [1,,2]"), "<string>:1:7: expected an array element, got ','")

    def test_value_must_end_the_line(self):
        self.assertEqual(err("a: x y"),
                         "<string>:1:6: expected a new line, ';' or end of file after a value, got 'y'")
        self.assertEqual(err("x { a: 1 b: 2 }"),
                         "<string>:1:10: expected a new line, ';' or '}' after a value, got 'b'")
        self.assertEqual(err("a: [1] x"),
                         "<string>:1:8: expected a new line, ';' or end of file after a value, got 'x'")

    def test_missing_value(self):
        self.assertEqual(err("a:\nb: 1"), "<string>:1:3: expected a value for 'a', got new line")
        self.assertEqual(err("a ="), "<string>:1:4: expected a value for 'a', got end of file")
        self.assertEqual(err("x { a: }"), "<string>:1:8: expected a value for 'a', got '}'")
        self.assertEqual(err("a"), "<string>:1:2: expected a value for 'a', got end of file")

    def test_stray_tokens(self):
        self.assertEqual(err("a: 1\n}"), "<string>:2:1: unexpected '}' (no block is open)")
        self.assertEqual(err(": 1"), "<string>:1:1: expected a key, got ':'")
        self.assertEqual(err("]"), "<string>:1:1: expected a key, got ']'")

    def test_strings(self):
        self.assertEqual(err('a: "abc\nb: 1'), "<string>:1:8: string not closed before new line")
        self.assertEqual(err("a: 'abc"), "<string>:1:8: string not closed before end of file")
        self.assertEqual(err(r'a: "x\qy"'),
                         r'<string>:1:6: invalid escape \q: only \t \n \r \" \\ and \xXX are allowed')
        self.assertEqual(err(r'a: "\xZZ"'), r"<string>:1:5: invalid \x escape: two hex digits expected")

    def test_integer_range(self):
        self.assertEqual(err("a: 1\nb: 99999999999999999999"),
                         "<string>:2:4: integer 99999999999999999999 is out of range")
        self.assertEqual(err("a: 99999999EB"), "<string>:1:4: integer 99999999EB is out of range")

    def test_depth_limit(self):
        deep = "a: " + "[" * (conf.MAX_DEPTH + 5) + "]" * (conf.MAX_DEPTH + 5)
        self.assertIn("nested deeper than %d" % conf.MAX_DEPTH, err(deep))
        ok = "a: " + "[" * conf.MAX_DEPTH + "]" * conf.MAX_DEPTH
        parse(ok)
        blocks = "a " + "{ b " * 200 + "}" * 200
        self.assertIn("nested deeper", err(blocks))

    def test_invalid_utf8(self):
        d = tempfile.mkdtemp()
        p = os.path.join(d, "x.conf")
        with open(p, "wb") as f:
            f.write(b"a: 1\nb: \xff\n")
        with self.assertRaises(ConfigError) as cm:
            conf.parse_file(p)
        self.assertEqual(str(cm.exception), "%s:2:4: invalid UTF-8 byte" % p)
        shutil.rmtree(d)

    def test_missing_file(self):
        with self.assertRaises(ConfigError) as cm:
            conf.parse_file("/nonexistent/x.conf")
        self.assertEqual(str(cm.exception),
                         "error opening config file /nonexistent/x.conf: No such file or directory")


class TestVariables(unittest.TestCase):
    def setUp(self):
        self._env = dict(os.environ)

    def tearDown(self):
        os.environ.clear()
        os.environ.update(self._env)

    def test_top_level_variable(self):
        c = parse("PORT = 4333\nport: $PORT\nx { y: $PORT }\n")
        self.assertEqual(c["port"], 4333)
        self.assertEqual(c["x"]["y"], 4333)
        self.assertEqual(c.used, {"PORT"})

    def test_block_scoped_variable(self):
        c = parse("x { P = 1\n y: $P }")
        self.assertEqual(c["x"]["y"], 1)
        self.assertEqual(c["x"].used, {"P"})

    def test_variables_of_any_type(self):
        c = parse("R = [nats://a:1, nats://b:2]\nA = { user: u }\nr: $R\na: $A\n")
        self.assertEqual(c["r"], ["nats://a:1", "nats://b:2"])
        self.assertEqual(c["a"], {"user": "u"})

    def test_variable_chain(self):
        self.assertEqual(parse("A = 1\nB = $A\nc: $B")["c"], 1)

    def test_undefined(self):
        os.environ.pop("GNATSD_NOPE", None)
        self.assertEqual(err("a: 1\nport: $GNATSD_NOPE", "f.conf"),
                         "f.conf:2:7: variable reference for 'GNATSD_NOPE' can not be found")

    def test_defined_later_is_undefined(self):
        os.environ.pop("LATER", None)
        self.assertEqual(err("a: $LATER\nLATER = 1"),
                         "<string>:1:4: variable reference for 'LATER' can not be found")

    def test_environment(self):
        os.environ["GNATSD_T_PORT"] = "5000"
        os.environ["GNATSD_T_STR"] = "localhost:4222"
        os.environ["GNATSD_T_Q"] = '"5000"'
        os.environ["GNATSD_T_BOOL"] = "true"
        os.environ["GNATSD_T_SIZE"] = "1MB"
        os.environ["GNATSD_T_ARR"] = "[a, b]"
        os.environ["GNATSD_T_EMPTY"] = ""
        c = parse("a: $GNATSD_T_PORT\nb: $GNATSD_T_STR\nc: $GNATSD_T_Q\nd: $GNATSD_T_BOOL\n"
                  "e: $GNATSD_T_SIZE\nf: $GNATSD_T_ARR\ng: $GNATSD_T_EMPTY\n")
        self.assertEqual(c, {"a": 5000, "b": "localhost:4222", "c": "5000", "d": True,
                             "e": 1 << 20, "f": ["a", "b"], "g": ""})
        self.assertIsInstance(c["a"], int)

    def test_file_variable_beats_environment(self):
        os.environ["GNATSD_T_X"] = "1"
        self.assertEqual(parse("GNATSD_T_X = 2\na: $GNATSD_T_X")["a"], 2)

    def test_bad_environment_value(self):
        os.environ["GNATSD_T_BAD"] = "a b"
        self.assertEqual(err("x: 1\nport: $GNATSD_T_BAD"),
                         "<string>:2:7: environment variable GNATSD_T_BAD: "
                         "$GNATSD_T_BAD:1:3: unexpected 'b' after the value")

    def test_environment_self_reference_is_bounded(self):
        os.environ["GNATSD_T_LOOP"] = "$GNATSD_T_LOOP"
        self.assertIn("nested deeper than %d" % conf.MAX_ENV_DEPTH, err("a: $GNATSD_T_LOOP"))

    def test_dollar_is_literal_in_quotes(self):
        self.assertEqual(parse('a: "$NOT_A_VAR"\nb: \'$X\'')["a"], "$NOT_A_VAR")
        h = "$2a$11$W2zko751KUvVy59mUTWmpOdWjpEm5qhcCZRd05GjI/sSOT.xtiHyG"
        self.assertEqual(parse('p: "%s"' % h)["p"], h)

    def test_unquoted_bcrypt_hash_is_literal(self):
        for prefix in ("$2a$", "$2b$", "$2y$"):
            h = prefix + "11$W2zko751KUvVy59mUTWmpOdWjpEm5qhcCZRd05GjI/sSOT.xtiHyG"
            self.assertEqual(parse("password: " + h)["password"], h)

    def test_dollar_only_as_whole_value(self):
        self.assertEqual(parse("a: x$y")["a"], "x$y")
        self.assertEqual(err("a: $a.b"), "<string>:1:4: invalid variable reference '$a.b'")

    def test_no_exponential_blowup(self):
        text = "V0 = [1, 2]\n" + "".join("V%d = [$V%d, $V%d]\n" % (i + 1, i, i) for i in range(60))
        c = parse(text + "x: $V60")
        self.assertIs(c["x"][0], c["V59"])     # shared, not copied


class TestIncludes(unittest.TestCase):
    def setUp(self):
        self.d = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.d)

    def write(self, name, text):
        p = os.path.join(self.d, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
        return p

    def test_include_quoted_and_bare(self):
        self.write("a.conf", "a: 1\n")
        self.write("sub/b.conf", "b: 2\ninclude c.conf\n")
        self.write("sub/c.conf", "c: 3\n")
        main = self.write("main.conf", 'include "a.conf"\ninclude sub/b.conf\nd: 4\n')
        self.assertEqual(conf.parse_file(main), {"a": 1, "b": 2, "c": 3, "d": 4})

    def test_include_relative_to_including_file_not_cwd(self):
        self.write("x/inc.conf", "port: 1\n")
        main = self.write("x/main.conf", "include 'inc.conf'\n")
        cwd = os.getcwd()
        try:
            os.chdir("/")
            self.assertEqual(conf.parse_file(main), {"port": 1})
        finally:
            os.chdir(cwd)

    def test_include_in_block_and_positions(self):
        inc = self.write("auth.conf", "user: a\npassword: b\n")
        main = self.write("main.conf", "authorization {\n  include auth.conf\n  timeout: 1\n}\n")
        c = conf.parse_file(main)
        self.assertEqual(c, {"authorization": {"user": "a", "password": "b", "timeout": 1}})
        self.assertEqual(str(c["authorization"].key_pos["password"]), "%s:2:1" % inc)

    def test_variables_from_include(self):
        self.write("vars.conf", "PORT = 4555\n")
        main = self.write("main.conf", "include vars.conf\nport: $PORT\n")
        c = conf.parse_file(main)
        self.assertEqual(c["port"], 4555)
        self.assertEqual(c.used, {"PORT"})

    def test_missing_include(self):
        main = self.write("main.conf", "a: 1\n  include nope.conf\n")
        with self.assertRaises(ConfigError) as cm:
            conf.parse_file(main)
        self.assertEqual(str(cm.exception),
                         "%s:2:11: cannot include 'nope.conf': No such file or directory" % main)

    def test_include_name_the_os_cannot_take(self):
        self.assertEqual(err('include "a\\x00b"'),
                         "<string>:1:9: include file name contains a NUL character")
        self.assertIn("cannot include", err('include "\udc80"'))

    def test_include_invalid_utf8(self):
        with open(os.path.join(self.d, "bin.conf"), "wb") as f:
            f.write(b"a: \xfe\n")
        main = self.write("main.conf", "include bin.conf\n")
        with self.assertRaises(ConfigError) as cm:
            conf.parse_file(main)
        self.assertEqual(str(cm.exception), "%s:1:9: in included file 'bin.conf': %s:1:4: "
                         "invalid UTF-8 byte" % (main, os.path.join(self.d, "bin.conf")))

    def test_error_inside_include_names_that_file(self):
        inc = self.write("bad.conf", "a: 1\nb: [\n")
        main = self.write("main.conf", "include bad.conf\n")
        with self.assertRaises(ConfigError) as cm:
            conf.parse_file(main)
        self.assertEqual(str(cm.exception),
                         "%s:3:1: unexpected end of file: array opened at 2:4 is not closed" % inc)

    def test_include_cycle(self):
        self.write("a.conf", "include b.conf\n")
        self.write("b.conf", "x: 1\ninclude a.conf\n")
        main = os.path.join(self.d, "a.conf")
        with self.assertRaises(ConfigError) as cm:
            conf.parse_file(main)
        self.assertEqual(str(cm.exception),
                         "%s:2:9: include cycle: a.conf -> b.conf -> a.conf"
                         % os.path.join(self.d, "b.conf"))
        self.write("self.conf", "include self.conf\n")
        with self.assertRaises(ConfigError):
            conf.parse_file(os.path.join(self.d, "self.conf"))

    def test_include_fanout_is_bounded(self):
        # a diamond of includes would grow as 2**depth without the count limit
        for i in range(12):
            self.write("l%d.conf" % i, "include l%d.conf\ninclude l%d.conf\n" % (i + 1, i + 1))
        self.write("l12.conf", "x: 1\n")
        with self.assertRaises(ConfigError) as cm:
            conf.parse_file(os.path.join(self.d, "l0.conf"))
        self.assertIn("more than %d includes" % conf.MAX_INCLUDES, str(cm.exception))

    def test_include_key_still_usable_as_key(self):
        self.assertEqual(parse("include: 1"), {"include": 1})


class TestMapping(unittest.TestCase):
    def test_seed_sample(self):
        with open(os.path.join(ROOT, "configs", "gnatsd.conf")) as f:
            o = opts_of(f.read())
        self.assertEqual((o.host, o.port), ("localhost", 4242))
        self.assertEqual((o.http_host, o.http_port), ("localhost", 8222))
        self.assertEqual(o.username, "derek")
        self.assertTrue(o.password.startswith("$2a$11$W2zko751"))
        self.assertEqual(o.auth_timeout, 1.0)
        self.assertEqual((o.cluster_host, o.cluster_port), ("localhost", 4244))
        self.assertEqual(o.cluster_username, "route_user")
        self.assertEqual(o.cluster_auth_timeout, 0.5)
        self.assertEqual(o.routes, ["nats-route://user1:pass1@127.0.0.1:4245",
                                    "nats-route://user2:pass2@127.0.0.1:4246"])
        self.assertEqual((o.debug, o.trace, o.logtime), (False, True, False))
        self.assertEqual(o.log_file, "/tmp/nats-server.log")
        self.assertEqual(o.pid_file, "/tmp/nats-server.pid")
        self.assertEqual((o.max_connections, o.max_control_line, o.max_payload, o.max_pending),
                         (100, 512, 65536, 10000000))
        self.assertEqual(o.config_file, "t.conf")

    def test_listen_forms(self):
        self.assertEqual((opts_of("listen: 4242").host, opts_of("listen: 4242").port),
                         ("0.0.0.0", 4242))
        o = opts_of("listen: 127.0.0.1:4222")
        self.assertEqual((o.host, o.port), ("127.0.0.1", 4222))
        o = opts_of('listen: "[::1]:4333"')
        self.assertEqual((o.host, o.port), ("::1", 4333))
        o = opts_of("listen: :4444")
        self.assertEqual((o.host, o.port), ("0.0.0.0", 4444))
        o = opts_of("host: 127.0.0.2\nport: 4223")
        self.assertEqual((o.host, o.port), ("127.0.0.2", 4223))
        self.assertEqual(opts_of("net: 10.0.0.1").host, "10.0.0.1")
        self.assertEqual(opts_of("port: -1").port, -1)

    def test_monitoring_forms(self):
        self.assertEqual(opts_of("http: 8222").http_port, 8222)
        o = opts_of("http: localhost:8223")
        self.assertEqual((o.http_host, o.http_port), ("localhost", 8223))
        self.assertEqual(opts_of("http_port: 8224").http_port, 8224)
        self.assertEqual(opts_of("monitor_port: 8225").http_port, 8225)
        self.assertEqual(opts_of("https: 8226").https_port, 8226)
        o = opts_of("https: 127.0.0.1:8227")
        self.assertEqual((o.http_host, o.https_port), ("127.0.0.1", 8227))
        self.assertEqual(opts_of("https_port: 8228").https_port, 8228)

    def test_plain_fields(self):
        o = opts_of('server_name: srv1\nclient_advertise: "a:1"\ndebug: true\ntrace: on\n'
                    'logtime: no\nlogfile: /tmp/l\nsyslog: true\nremote_syslog: "udp://h:514"\n'
                    'pidfile: /tmp/p\nports_file_dir: /tmp\nmax_conn: 5\nmax_subs: 7\n'
                    'ping_max: 3\n')
        self.assertEqual((o.server_name, o.client_advertise), ("srv1", "a:1"))
        self.assertEqual((o.debug, o.trace, o.logtime, o.syslog), (True, True, False, True))
        self.assertEqual((o.log_file, o.remote_syslog, o.pid_file, o.ports_file_dir),
                         ("/tmp/l", "udp://h:514", "/tmp/p", "/tmp"))
        self.assertEqual((o.max_connections, o.max_subscriptions, o.ping_max), (5, 7, 3))
        o = opts_of("log_file: x\npid_file: y\nmax_connections: 9\nmax_subscriptions: 10\n"
                    "max_pending: 2MB\nmax_payload: 64KB\nmax_control_line: 1k\n")
        self.assertEqual((o.log_file, o.pid_file, o.max_connections, o.max_subscriptions),
                         ("x", "y", 9, 10))
        self.assertEqual((o.max_pending, o.max_payload, o.max_control_line),
                         (2 << 20, 65536, 1000))

    def test_zero_limits_keep_defaults(self):
        o = opts_of("max_payload: 0\nmax_connections: 0\nmax_control_line: 0\nmax_pending: 0")
        self.assertEqual((o.max_payload, o.max_connections, o.max_control_line, o.max_pending),
                         (options.MAX_PAYLOAD, options.MAX_CONNECTIONS,
                          options.MAX_CONTROL_LINE, options.MAX_PENDING))

    def test_durations(self):
        cases = {"100": 100.0, "1.5": 1.5, "2s": 2.0, '"2s"': 2.0, "1m": 60.0, '"1m"': 60.0,
                 "500ms": 0.5, "1h": 3600.0, "1h30m": 5400.0, "1m30.5s": 90.5, "250us": 0.00025}
        for text, want in cases.items():
            self.assertAlmostEqual(opts_of("ping_interval: " + text).ping_interval, want, msg=text)
        o = opts_of('write_deadline: "10s"\nlame_duck_duration: 30\nlame_duck_grace_period: 0')
        self.assertEqual((o.write_deadline, o.lame_duck_duration, o.lame_duck_grace_period),
                         (10.0, 30.0, 0.0))

    def test_duration_errors(self):
        self.assertEqual(opt_err("ping_interval: soon"),
                         't.conf:1:16: ping_interval: expected a duration (seconds, or like "2s", '
                         '"500ms", "1m"), got string "soon"')
        self.assertEqual(opt_err("ping_interval: -5"),
                         "t.conf:1:16: ping_interval: must be positive, got integer -5")
        self.assertEqual(opt_err("write_deadline: 0"),
                         "t.conf:1:17: write_deadline: must be positive, got integer 0")
        self.assertEqual(opt_err("ping_interval: 1k"),
                         't.conf:1:16: ping_interval: expected a duration (seconds, or like "2s", '
                         '"500ms", "1m"), got size 1k')

    def test_authorization(self):
        o = opts_of("authorization { user: a\n password: b\n timeout: 2 }")
        self.assertEqual((o.username, o.password, o.auth_timeout), ("a", "b", 2.0))
        self.assertTrue(ClientAuth(o).required)
        o = opts_of('authorization { token: "s3cr3t"\n timeout: "500ms" }')
        self.assertEqual((o.authorization, o.auth_timeout), ("s3cr3t", 0.5))
        o = opts_of("authorization {\n users = [\n {user: a, password: x}\n"
                    " {username: b, pass: y}\n ]\n}")
        self.assertEqual(o.users, [{"user": "a", "password": "x"}, {"user": "b", "password": "y"}])

    def test_authorization_errors(self):
        self.assertEqual(opt_err("authorization { user: a\n password: b\n token: c }"),
                         "t.conf:1:1: can not have a user/password and a token")
        self.assertEqual(opt_err("authorization { user: a\n users: [{user: x, password: y}] }"),
                         "t.conf:1:1: can not have a single user/password and a users array")
        self.assertEqual(opt_err("authorization { token: a\n users: [{user: x, password: y}] }"),
                         "t.conf:1:1: can not have a token and a users array")
        self.assertEqual(opt_err("authorization { users: [{user: x, password: y},"
                                 " {user: x, password: z}] }"),
                         't.conf:1:49: duplicate user "x"')
        self.assertEqual(opt_err("authorization { users: [{password: y}] }"),
                         "t.conf:1:25: user entry requires a user")
        self.assertEqual(opt_err("authorization { users: [x] }"),
                         't.conf:1:25: authorization.users: expected a block { user: ..., '
                         'password: ... }, got string "x"')
        self.assertEqual(opt_err("authorization { users: [{user: a, perms: 1}] }"),
                         't.conf:1:35: unknown field "perms"')
        self.assertEqual(opt_err("authorization { bogus: 1 }"), 't.conf:1:17: unknown field "bogus"')
        self.assertEqual(opt_err("authorization: 5"),
                         "t.conf:1:16: authorization: expected a block { ... }, got integer 5")

    def test_cluster(self):
        o = opts_of("cluster {\n listen: 127.0.0.1:6333\n name: c1\n advertise: \"h:1\"\n"
                    " no_advertise: true\n connect_retries: 3\n"
                    " authorization { user: r\n password: p\n timeout: 2 }\n"
                    " routes = [\n  nats://127.0.0.1:6334\n  nats-route://u:p@h:6335\n"
                    "  tls://h:6336\n ]\n}")
        self.assertEqual((o.cluster_host, o.cluster_port, o.cluster_name, o.cluster_advertise),
                         ("127.0.0.1", 6333, "c1", "h:1"))
        self.assertTrue(o.cluster_no_advertise)
        self.assertEqual(o.connect_retries, 3)
        self.assertEqual((o.cluster_username, o.cluster_password, o.cluster_auth_timeout),
                         ("r", "p", 2.0))
        self.assertEqual(o.routes, ["nats://127.0.0.1:6334", "nats-route://u:p@h:6335",
                                    "tls://h:6336"])
        o = opts_of("cluster { host: 127.0.0.1\n port: 4248 }")
        self.assertEqual((o.cluster_host, o.cluster_port), ("127.0.0.1", 4248))
        o = opts_of("cluster { listen: 4248\n cluster_advertise: x }")
        self.assertEqual((o.cluster_host, o.cluster_port, o.cluster_advertise),
                         ("0.0.0.0", 4248, "x"))

    def test_cluster_errors(self):
        self.assertEqual(opt_err("cluster { x = 1\n port: 6333 }"), 't.conf:1:11: unknown field "x"')
        self.assertEqual(opt_err("cluster {\n routes: nats://a:1\n}"),
                         't.conf:2:10: cluster.routes: expected an array [ ... ], got string "nats://a:1"')
        self.assertEqual(opt_err("cluster {\n routes: [\n  foo\n ]\n}"),
                         "t.conf:3:3: invalid route URL 'foo': expected nats|nats-route|tls://host:port")
        self.assertEqual(opt_err("cluster {\n routes: [ 5 ]\n}"),
                         "t.conf:2:12: cluster.routes: expected an array of strings, got integer 5")
        self.assertEqual(opt_err("cluster { authorization { users: [{user: x, password: y}] } }"),
                         "t.conf:1:27: cluster authorization does not allow multiple users")
        self.assertEqual(opt_err("cluster { port: 70000 }"),
                         "t.conf:1:17: cluster.port: port 70000 out of range (-1 to 65535)")

    def test_tls(self):
        o = opts_of('tls {\n cert_file: "c.pem"\n key_file: "k.pem"\n ca_file: "ca.pem"\n'
                    ' verify: true\n timeout: 3\n cipher_suites: [\n'
                    '  "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"\n ]\n}')
        self.assertEqual((o.tls, o.tls_cert, o.tls_key, o.tls_ca_cert, o.tls_verify, o.tls_timeout),
                         (True, "c.pem", "k.pem", "ca.pem", True, 3.0))
        self.assertEqual(o.tls_cipher_suites, ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"])
        o = opts_of("cluster { port: 1\n tls { cert_file: a\n key_file: b\n ca_file: c\n timeout: 0.5 } }")
        self.assertEqual((o.cluster_tls, o.cluster_tls_cert, o.cluster_tls_key,
                          o.cluster_tls_ca_cert, o.cluster_tls_timeout), (True, "a", "b", "c", 0.5))
        self.assertFalse(o.tls)

    def test_tls_errors(self):
        self.assertEqual(opt_err("tls { cert_file: a }"),
                         't.conf:1:1: missing "key_file" in TLS configuration')
        self.assertEqual(opt_err("tls { cert_file: a\nkey_file: b\nbogus: 1 }"),
                         't.conf:3:1: unknown field "bogus"')
        self.assertEqual(opt_err("tls { cert_file: a\nkey_file: b\ncipher_suites: [X] }"),
                         't.conf:3:17: unrecognized cipher suite "X"')
        self.assertEqual(opt_err("tls { cert_file: a\nkey_file: b\nverify: 1 }"),
                         "t.conf:3:9: tls.verify: expected a boolean, got integer 1")

    def test_unknown_field(self):
        self.assertEqual(opt_err("port: 4222\nmax_paylod: 5\n", "/x/bad.conf"),
                         '/x/bad.conf:2:1: unknown field "max_paylod"')
        self.assertEqual(opt_err("  foo: 1"), 't.conf:1:3: unknown field "foo"')

    def test_variables_and_unknown_fields(self):
        # a referenced variable is not an option; an unreferenced one is
        # unknown, as in nats-server 2.9
        o = opts_of("PORT = 4999\nport: $PORT")
        self.assertEqual(o.port, 4999)
        self.assertEqual(opt_err("PORT = 4999\nport: 1"), 't.conf:1:1: unknown field "PORT"')
        # a known field referenced as a variable still applies
        o = opts_of("port = 4998\nhttp: $port")
        self.assertEqual((o.port, o.http_port), (4998, 4998))

    def test_type_errors_name_the_option(self):
        self.assertEqual(opt_err("max_connections: \"5\""),
                         't.conf:1:18: max_connections: expected an integer, got string "5"')
        self.assertEqual(opt_err("debug: 1"), "t.conf:1:8: debug: expected a boolean, got integer 1")
        self.assertEqual(opt_err("server_name: 12"),
                         "t.conf:1:14: server_name: expected a string, got integer 12")
        self.assertEqual(opt_err("max_payload: 1.5"),
                         "t.conf:1:14: max_payload: expected an integer, got float 1.5")
        self.assertEqual(opt_err("port: true"), "t.conf:1:7: port: expected an integer, got boolean true")
        self.assertEqual(opt_err("http: [1]"),
                         't.conf:1:7: http: expected a port or "host:port", got an array')

    def test_validation(self):
        self.assertEqual(opt_err("max_payload: -5"),
                         "t.conf:1:14: max_payload: must not be negative, got -5")
        self.assertEqual(opt_err("port: 65536"),
                         "t.conf:1:7: port: port 65536 out of range (-1 to 65535)")
        self.assertEqual(opt_err("http: localhost:99999"),
                         "t.conf:1:7: http: port 99999 out of range (-1 to 65535)")
        self.assertEqual(opt_err("listen: localhost"),
                         "t.conf:1:9: listen: could not parse address 'localhost': missing port in address")
        self.assertEqual(opt_err("listen: h:x"),
                         "t.conf:1:9: listen: could not parse address 'h:x': invalid port 'x'")
        self.assertEqual(opt_err("max_pending: 1000\nmax_payload: 2000"),
                         "t.conf:2:14: max_payload (2000) cannot be higher than max_pending (1000)")
        self.assertEqual(opt_err("max_pending: 1000"),
                         "max_payload (1048576) cannot be higher than max_pending (1000)")


class TestParseDuration(unittest.TestCase):
    def test_values(self):
        pd = options.parse_duration
        self.assertEqual(pd("2s"), 2.0)
        self.assertEqual(pd("1h2m3s"), 3723.0)
        self.assertEqual(pd("0"), 0.0)
        self.assertEqual(pd("-1s"), -1.0)
        self.assertAlmostEqual(pd("10ns"), 1e-8)
        self.assertAlmostEqual(pd("1µs"), 1e-6)
        for bad in ("", "s", "1", "1d", "2 s", "1s2", "-", "abc"):
            self.assertIsNone(pd(bad), bad)


class TestSampleConfigs(unittest.TestCase):
    def test_every_config_loads(self):
        from gnats.cli import build_options, parse_command_line
        paths = sorted(glob.glob(os.path.join(ROOT, "configs", "*.conf")))
        self.assertGreaterEqual(len(paths), 5)
        for p in paths:
            o = build_options(parse_command_line(["-c", p]))
            self.assertEqual(o.config_file, p)
        for name in ("gnatsd.conf", "seed.conf", "tls.conf", "tls_verify.conf", "cluster.conf"):
            self.assertIn(os.path.join(ROOT, "configs", name), paths)

    def test_seed_conf(self):
        o = apply_config(Options(), conf.parse_file(os.path.join(ROOT, "configs", "seed.conf")))
        self.assertEqual((o.host, o.port, o.http_port, o.cluster_host, o.cluster_port),
                         ("127.0.0.1", 4222, 8222, "127.0.0.1", 4248))

    def test_tls_verify_conf(self):
        o = apply_config(Options(), conf.parse_file(os.path.join(ROOT, "configs", "tls_verify.conf")))
        self.assertTrue(o.tls and o.tls_verify)
        self.assertEqual(o.tls_ca_cert, "./configs/certs/ca.pem")


class TestMutationFuzz(unittest.TestCase):
    """Random edits of real configs: parse and apply may only raise ConfigError."""

    ALPHABET = list("{}[]:=,;\"'$#/\\\n \t-.0123456789abcxyzKMGs@") + \
        ["include ", "//", "$2a$", "\\x", "1MB", "true", "[", "{", "\n}\n", "$HOME", "\u00e9", "\x00"]

    def mutate(self, rng, text):
        chars = list(text)
        for _ in range(rng.randint(1, 6)):
            op = rng.random()
            pos = rng.randint(0, len(chars))
            if op < 0.35 and chars:
                del chars[min(pos, len(chars) - 1)]
            elif op < 0.7:
                chars.insert(pos, rng.choice(self.ALPHABET))
            elif op < 0.85 and chars:
                a = rng.randint(0, len(chars) - 1)
                b = min(len(chars), a + rng.randint(1, 40))
                chars[pos:pos] = chars[a:b]          # duplicate a slice
            elif chars:
                chars[min(pos, len(chars) - 1)] = rng.choice(self.ALPHABET)
        return "".join(chars)

    def test_mutations_only_raise_config_error(self):
        seeds = []
        for p in sorted(glob.glob(os.path.join(ROOT, "configs", "*.conf"))):
            with open(p) as f:
                seeds.append(f.read())
        seeds.append("a = [1, {b: $a}]\nport: 1k\nauthorization { users = [{user: a, password: b}] }\n"
                     "ping_interval: 1m\ncluster { routes: [nats://h:1] tls { cert_file: a\n"
                     "key_file: b } }\n")
        rng = random.Random(20240601)
        outcomes = {"ok": 0, "error": 0}
        d = tempfile.mkdtemp()
        cwd = os.getcwd()
        os.chdir(d)                 # random includes resolve in an empty folder
        try:
            for n in range(3000):
                text = rng.choice(seeds)
                for _ in range(rng.randint(1, 3)):
                    text = self.mutate(rng, text)
                try:
                    apply_config(Options(), parse(text, "fuzz.conf"), "fuzz.conf")
                    outcomes["ok"] += 1
                except ConfigError as e:
                    self.assertRegex(str(e), r"^(fuzz\.conf:\d+:\d+: |max_payload )")
                    outcomes["error"] += 1
                except Exception as e:      # pragma: no cover - the failure we look for
                    self.fail("input %d raised %s: %s\n%r" % (n, type(e).__name__, e, text))
        finally:
            os.chdir(cwd)
            shutil.rmtree(d)
        self.assertGreater(outcomes["ok"], 100)
        self.assertGreater(outcomes["error"], 100)


if __name__ == "__main__":
    unittest.main()
