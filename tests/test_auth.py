"""gnats.auth: secret checks, ClientAuth/RouteAuth, trace masking.

The TestAgainstNatsServer class asks the Go reference server the same
questions over real sockets and checks that ClientAuth answers alike.
"""

import json
import os
import socket
import subprocess
import sys
import unittest
from unittest import mock

try:
    import bcrypt
except ImportError:  # optional: the bcrypt tests skip, the rest still run
    bcrypt = None

from gnats import auth
from gnats.auth import (AuthError, ClientAuth, RouteAuth, check_secret, is_bcrypt,
                        mask_connect, mask_connect_json)
from gnats.options import Options
from tests.util import GO_SERVER, ServerProcess, needs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The seed README's example: ./util/mkpassword -p T0pS3cr3t
SEED_HASH = "$2a$11$W2zko751KUvVy59mUTWmpOdWjpEm5qhcCZRd05GjI/sSOT.xtiHyG"
SEED_PASS = "T0pS3cr3t"


needs_bcrypt = needs(bcrypt is not None, "the optional bcrypt package is not installed")


def fast_hash(password: str, prefix: bytes = b"2a") -> str:
    """Cost 4: real bcrypt, a millisecond per check."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4, prefix)).decode()


class TestIsBcrypt(unittest.TestCase):
    def test_prefixes(self):
        for h in (SEED_HASH, "$2b$" + SEED_HASH[4:], "$2y$" + SEED_HASH[4:]):
            self.assertTrue(is_bcrypt(h), h)

    def test_not_bcrypt(self):
        for s in ("", "secret", "$2a$", "$2x$11$abc", "$1$abc", "2a$11$x", None, 42, b"$2a$11$"):
            self.assertFalse(is_bcrypt(s), s)


class TestCheckSecret(unittest.TestCase):
    def setUp(self):
        auth.clear_cache()

    def test_plain(self):
        self.assertTrue(check_secret("s3cr3t", "s3cr3t"))
        self.assertTrue(check_secret("s3cr3t", b"s3cr3t"))
        self.assertTrue(check_secret("", ""))
        self.assertTrue(check_secret("pässwörd", "pässwörd"))
        self.assertFalse(check_secret("s3cr3t", "s3cr3T"))
        self.assertFalse(check_secret("s3cr3t", "s3cr3t "))
        self.assertFalse(check_secret("s3cr3t", ""))

    def test_junk_is_false_not_an_exception(self):
        for given in (None, 123, 1.5, [], {}, True, "\ud800", b"\xff\xfe"):
            self.assertFalse(check_secret("s3cr3t", given), given)
            if bcrypt is not None:
                self.assertFalse(check_secret(fast_hash("s3cr3t"), given), given)
        self.assertFalse(check_secret(None, "x"))
        self.assertFalse(check_secret("$2a$11$garbage", "x"))
        self.assertFalse(check_secret("$2a$04$" + "!" * 53, "x"))

    @needs_bcrypt
    def test_bcrypt_seed_example(self):
        self.assertTrue(check_secret(SEED_HASH, SEED_PASS))
        self.assertFalse(check_secret(SEED_HASH, "t0pS3cr3t"))

    @needs_bcrypt
    def test_bcrypt_variants(self):
        h = fast_hash("pw")
        for variant in (h, "$2b$" + h[4:], "$2y$" + h[4:]):
            self.assertTrue(check_secret(variant, "pw"), variant)
            self.assertTrue(check_secret(variant, b"pw"), variant)
            self.assertFalse(check_secret(variant, "pW"), variant)

    @needs_bcrypt
    def test_bcrypt_reads_72_bytes_like_go(self):
        # nats-server (Go) accepts a longer password whose first 72 bytes match.
        h = fast_hash("a" * 72)
        self.assertTrue(check_secret(h, "a" * 72))
        self.assertTrue(check_secret(h, "a" * 80))
        self.assertFalse(check_secret(h, "a" * 71))

    @needs_bcrypt
    def test_cache_makes_repeats_fast(self):
        # counted, not timed: a repeat must not run bcrypt again
        with mock.patch.object(auth.bcrypt, "checkpw", wraps=auth.bcrypt.checkpw) as checkpw:
            self.assertTrue(check_secret(SEED_HASH, SEED_PASS))
            first = checkpw.call_count
            self.assertTrue(auth.is_cached(SEED_HASH, SEED_PASS))
            for _ in range(100):
                self.assertTrue(check_secret(SEED_HASH, SEED_PASS))
            self.assertEqual(first, 1)              # setUp cleared the cache
            self.assertEqual(checkpw.call_count, 1)

    @needs_bcrypt
    def test_cache_holds_only_successes_and_is_bounded(self):
        h = fast_hash("right")
        self.assertFalse(check_secret(h, "wrong"))
        self.assertFalse(auth.is_cached(h, "wrong"))
        self.assertEqual(len(auth._cache), 0)
        saved = auth._CACHE_MAX
        auth._CACHE_MAX = 3
        try:
            hashes = [fast_hash("p%d" % i) for i in range(5)]
            for i, hh in enumerate(hashes):
                self.assertTrue(check_secret(hh, "p%d" % i))
            self.assertEqual(len(auth._cache), 3)
            self.assertFalse(auth.is_cached(hashes[0], "p0"))
            self.assertTrue(auth.is_cached(hashes[4], "p4"))
        finally:
            auth._CACHE_MAX = saved
        # the cache keys never contain the password
        self.assertTrue(all(b"p4" not in k for k in auth._cache))


def opts(**kw) -> Options:
    return Options(**kw)


class TestClientAuth(unittest.TestCase):
    def test_no_auth(self):
        a = ClientAuth(opts())
        self.assertFalse(a.required)
        self.assertEqual(a.check({}), "")
        self.assertEqual(a.check({"user": "x", "pass": "y"}), "")
        self.assertFalse(a.needs_slow_check({}))

    def test_token(self):
        a = ClientAuth(opts(authorization="tok"))
        self.assertTrue(a.required)
        self.assertEqual(a.check({"auth_token": "tok"}), "")
        # nats-server 2.9 takes the token from auth_token only
        for c in ({"pass": "tok"}, {"user": "tok"}, {"user": "x", "pass": "tok"},
                  {"auth_token": "bad"}, {}, {"auth_token": None}, {"auth_token": 1}):
            self.assertIsNone(a.check(c), c)

    @needs_bcrypt
    def test_bcrypt_token(self):
        a = ClientAuth(opts(authorization=fast_hash("tok")))
        self.assertTrue(a.needs_slow_check({"auth_token": "tok"}))
        self.assertEqual(a.check({"auth_token": "tok"}), "")
        self.assertFalse(a.needs_slow_check({"auth_token": "tok"}))  # cached now
        self.assertTrue(a.needs_slow_check({"auth_token": "other"}))
        self.assertFalse(a.needs_slow_check({"auth_token": 12}))  # refused at once
        self.assertTrue(a.needs_slow_check({"user": "x"}))  # an empty token is checked too
        self.assertIsNone(a.check({"auth_token": "nope"}))

    def test_single_user(self):
        a = ClientAuth(opts(username="derek", password="pw"))
        self.assertTrue(a.required)
        self.assertEqual(a.check({"user": "derek", "pass": "pw"}), "derek")
        for c in ({"user": "derek", "pass": "PW"}, {"user": "Derek", "pass": "pw"},
                  {"user": "derek"}, {"pass": "pw"}, {"auth_token": "pw"}, {},
                  {"user": ["derek"], "pass": "pw"}, {"user": "derek", "pass": 5}):
            self.assertIsNone(a.check(c), c)
        self.assertTrue(a.plaintext_passwords)

    @needs_bcrypt
    def test_single_user_bcrypt_seed(self):
        auth.clear_cache()
        a = ClientAuth(opts(username="derek", password=SEED_HASH))
        self.assertFalse(a.plaintext_passwords)
        c = {"user": "derek", "pass": SEED_PASS}
        self.assertTrue(a.needs_slow_check(c))
        self.assertFalse(a.needs_slow_check({"user": "other", "pass": SEED_PASS}))
        self.assertEqual(a.check(c), "derek")
        self.assertFalse(a.needs_slow_check(c))

    @needs_bcrypt
    def test_users(self):
        a = ClientAuth(opts(users=[
            {"user": "alice", "password": "a1"},
            {"user": "bob", "password": fast_hash("b2"), "permissions": {"publish": ">"}},
            {"user": "carol"},  # no password: must send none (or an empty one)
        ]))
        self.assertTrue(a.required)
        self.assertEqual(a.check({"user": "alice", "pass": "a1"}), "alice")
        self.assertEqual(a.check({"user": "bob", "pass": "b2"}), "bob")
        self.assertEqual(a.check({"user": "carol"}), "carol")
        self.assertEqual(a.check({"user": "carol", "pass": None}), "carol")
        for c in ({"user": "alice", "pass": "b2"}, {"user": "bob", "pass": "a1"},
                  {"user": "carol", "pass": "x"}, {"user": "dave", "pass": ""}, {},
                  {"pass": "a1"}, "not a dict", None):
            self.assertIsNone(a.check(c), c)
        self.assertFalse(a.needs_slow_check({"user": "alice", "pass": "a1"}))
        self.assertTrue(a.plaintext_passwords)

    @needs_bcrypt
    def test_users_all_bcrypt_is_not_plaintext(self):
        a = ClientAuth(opts(users=[{"user": "a", "password": fast_hash("x")}, {"user": "b"}]))
        self.assertFalse(a.plaintext_passwords)
        self.assertFalse(ClientAuth(opts(authorization="plain-token")).plaintext_passwords)

    def test_precedence_like_nats_server(self):
        # Command line user/pass merged over a config users list: users win;
        # a token wins over user/pass (nats-server 2.9 at run time).
        a = ClientAuth(opts(username="a", password="b", users=[{"user": "c", "password": "d"}]))
        self.assertEqual(a.check({"user": "c", "pass": "d"}), "c")
        self.assertIsNone(a.check({"user": "a", "pass": "b"}))
        a = ClientAuth(opts(username="a", password="b", authorization="t"))
        self.assertEqual(a.check({"auth_token": "t"}), "")
        self.assertIsNone(a.check({"user": "a", "pass": "b"}))

    def test_password_without_user_is_no_auth(self):
        a = ClientAuth(opts(password="b"))
        self.assertFalse(a.required)
        self.assertEqual(a.check({}), "")

    def test_numeric_password_taken_as_written(self):
        a = ClientAuth(opts(username="a", password=1234))
        self.assertEqual(a.check({"user": "a", "pass": "1234"}), "a")

    def test_config_errors(self):
        cases = [
            ([{"password": "x"}], "User entry requires a user"),
            ([{"user": "", "password": "x"}], "User entry requires a user"),
            ([{"user": "c", "password": "d"}, {"user": "c", "password": "e"}],
             'Duplicate user "c" detected'),
            (["c"], "User entry must be a map"),
            ([{"user": "c", "password": True}], 'password of user "c" must be a string'),
            ([{"user": "c", "password": ["x"]}], 'password of user "c" must be a string'),
        ]
        for users, message in cases:
            with self.assertRaises(AuthError) as cm:
                ClientAuth(opts(users=users))
            self.assertIn(message, str(cm.exception))

    def test_timeouts(self):
        self.assertEqual(ClientAuth(opts()).timeout, 1.0)
        self.assertEqual(ClientAuth(opts(auth_timeout=0.5)).timeout, 0.5)
        self.assertEqual(ClientAuth(opts(tls=True, tls_timeout=3.0)).timeout, 3.0)
        self.assertEqual(ClientAuth(opts(tls=True, tls_timeout=3.0, auth_timeout=0.5)).timeout, 0.5)
        self.assertEqual(RouteAuth(opts(cluster_auth_timeout=0.5)).timeout, 0.5)
        self.assertEqual(RouteAuth(opts(cluster_tls=True, cluster_tls_timeout=4.0)).timeout, 4.0)
        o = opts(tls=True, tls_timeout=3.0)
        self.assertEqual(ClientAuth(o).timeout, auth._timeout(o.auth_timeout, o.tls, o.tls_timeout))


class TestRouteAuth(unittest.TestCase):
    def test_no_auth(self):
        a = RouteAuth(opts(username="client-only"))
        self.assertFalse(a.required)
        self.assertEqual(a.check({"user": "x"}), "")

    @needs_bcrypt
    def test_user_password(self):
        a = RouteAuth(opts(cluster_username="route_user", cluster_password=fast_hash("T0pS3cr3tT00!")))
        self.assertTrue(a.required)
        c = {"user": "route_user", "pass": "T0pS3cr3tT00!", "name": "NABC"}
        auth.clear_cache()
        self.assertTrue(a.needs_slow_check(c))
        self.assertEqual(a.check(c), "route_user")
        self.assertIsNone(a.check({"user": "route_user", "pass": "x"}))
        self.assertIsNone(a.check({"user": "other", "pass": "T0pS3cr3tT00!"}))
        self.assertIsNone(a.check({"auth_token": "T0pS3cr3tT00!"}))


class TestWithoutBcrypt(unittest.TestCase):
    """Hide the bcrypt package from a child interpreter."""

    SCRIPT = r"""
import sys, json
sys.modules["bcrypt"] = None
sys.path.insert(0, %r)
from gnats.auth import ClientAuth, RouteAuth, AuthError, check_secret
from gnats.options import Options
out = {}
for name, make in [
    ("user", lambda: ClientAuth(Options(username="a", password=%r))),
    ("users", lambda: ClientAuth(Options(users=[{"user": "a", "password": %r}]))),
    ("token", lambda: ClientAuth(Options(authorization=%r))),
    ("route", lambda: RouteAuth(Options(cluster_username="r", cluster_password=%r))),
]:
    try:
        make()
        out[name] = "ok"
    except AuthError as e:
        out[name] = str(e)
a = ClientAuth(Options(username="a", password="plain"))
out["plain"] = a.check({"user": "a", "pass": "plain"})
out["check_secret"] = check_secret(%r, %r)
print(json.dumps(out))
"""

    def test_clear_error(self):
        h = SEED_HASH
        script = self.SCRIPT % (ROOT, h, h, h, h, h, SEED_PASS)
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True,
                              text=True, timeout=30)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        out = json.loads(proc.stdout)
        message = "bcrypt password hashes need the bcrypt package: pip install bcrypt"
        for name in ("user", "users", "token", "route"):
            self.assertEqual(out[name], message)
        self.assertEqual(out["plain"], "a")
        self.assertFalse(out["check_secret"])


class TestMaskConnect(unittest.TestCase):
    def test_like_nats_server_trace(self):
        line = b'CONNECT {"user": "a", "pass": "b", "verbose": false}\r\n'
        self.assertEqual(mask_connect(line),
                         b'CONNECT {"user": "a", "pass": "[REDACTED]", "verbose": false}\r\n')

    def test_all_secret_fields(self):
        text = ('{"verbose":false,"auth_token":"tok","user":"u","pass":"p",'
                '"password":"pw","jwt":"eyJ","sig":"s","nkey":"UABC"}')
        masked = json.loads(mask_connect_json(text))
        self.assertEqual(masked, {"verbose": False, "auth_token": "[REDACTED]", "user": "u",
                                  "pass": "[REDACTED]", "password": "[REDACTED]",
                                  "jwt": "eyJ", "sig": "s", "nkey": "UABC"})

    def test_escapes_case_and_odd_values(self):
        text = r'{"PASS" : "a\"b,c}", "Auth_Token":12345, "user":"x"}'
        masked = mask_connect_json(text)
        self.assertEqual(json.loads(masked),
                         {"PASS": "[REDACTED]", "Auth_Token": "[REDACTED]", "user": "x"})
        self.assertNotIn("12345", masked)
        self.assertNotIn("a\\\"b", masked)

    def test_truncated_line_still_masked(self):
        self.assertEqual(mask_connect(b'CONNECT {"pass":"secr'), b'CONNECT {"pass":"[REDACTED]"')

    def test_nothing_to_mask_is_unchanged(self):
        line = b'CONNECT {"verbose":false,"pedantic":false,"name":"x"}\r\n'
        self.assertIs(mask_connect(line), line)
        self.assertEqual(mask_connect_json('{"user":"passenger"}'), '{"user":"passenger"}')


@needs(GO_SERVER, "nats-server (the Go reference server) is not installed")
class TestAgainstNatsServer(unittest.TestCase):
    """The same CONNECTs against nats-server and ClientAuth: same verdicts."""

    CONNECTS = [{}, {"user": "a", "pass": "b"}, {"user": "a", "pass": "x"}, {"user": "A", "pass": "b"},
                {"user": "a"}, {"pass": "b"}, {"auth_token": "t"}, {"pass": "t"},
                {"user": "t"}, {"user": "c", "pass": "d"}, {"user": "c"},
                {"user": "e", "pass": ""}, {"auth_token": "a" * 80}]

    def run_server(self, args):
        srv = ServerProcess(*args, exe=GO_SERVER)
        self.addCleanup(srv.stop)
        return srv.port

    @staticmethod
    def go_accepts(port, connect) -> bool:
        with socket.create_connection(("127.0.0.1", port), 2) as s:
            s.settimeout(2)
            f = s.makefile("rb")
            f.readline()  # INFO
            s.sendall(b"CONNECT " + json.dumps(dict(connect, verbose=False)).encode()
                      + b"\r\nPING\r\n")
            reply = f.readline()
        if reply == b"PONG\r\n":
            return True
        if reply.startswith(b"-ERR 'Authorization Violation'"):
            return False
        raise AssertionError("unexpected reply %r" % reply)

    def compare(self, args, options):
        port = self.run_server(args)
        a = ClientAuth(options)
        for c in self.CONNECTS:
            self.assertEqual(a.check(c) is not None, self.go_accepts(port, c), (args, c))

    def test_token(self):
        self.compare(["--auth", "t"], opts(authorization="t"))

    @needs_bcrypt
    def test_bcrypt_token_72_bytes(self):
        h = fast_hash("a" * 72)
        self.compare(["--auth", h], opts(authorization=h))

    def test_user(self):
        self.compare(["--user", "a", "--pass", "b"], opts(username="a", password="b"))

    def test_token_wins_over_user(self):
        self.compare(["--user", "a", "--pass", "b", "--auth", "t"],
                     opts(username="a", password="b", authorization="t"))

    @needs_bcrypt
    def test_users(self):
        conf = os.path.join(self.tmpdir(), "users.conf")
        h = fast_hash("d")
        with open(conf, "w") as f:
            f.write('authorization { users = [{user: c, password: "%s"}, {user: e}] }\n' % h)
        self.compare(["-c", conf], opts(users=[{"user": "c", "password": h}, {"user": "e"}]))

    def tmpdir(self):
        import tempfile
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        return d.name


if __name__ == "__main__":
    unittest.main()
