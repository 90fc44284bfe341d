"""The authorization keys of issue 16 in config files (gnats.authz, gnats.options):
what loads, what fails at FILE:LINE:COL, the same files checked with
`nats-server -t` (2.15.1) when it is installed, what the auth layer makes of
them, and the list of settings a server must refuse until they are enforced."""

import base64
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest

from gnats import authz, certmap, conf, options
from gnats.auth import AuthError, ClientAuth
from gnats.conf import ConfigError
from gnats.nkeys import PREFIX_ACCOUNT, decode_public, encode_public, make_nonce
from gnats.permissions import PermissionSpec, ResponseRule, SubjectRule

from tests.util import GO_SERVER_215, HAVE_GO_215, free_port, needs, wait_port

try:
    import nkeys as nkeys_pkg
except ImportError:  # pragma: no cover - the test extra installs it
    nkeys_pkg = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CERTS = os.path.join(ROOT, "configs", "certs")
GO_215 = GO_SERVER_215
HAVE_GO = HAVE_GO_215

USER_KEY = encode_public(bytes(range(32)))                  # a valid 'U...' key
ACCOUNT_KEY = encode_public(bytes(range(32)), PREFIX_ACCOUNT)
BAD_CRC_KEY = USER_KEY[:-1] + ("A" if USER_KEY[-1] != "A" else "B")

TLS = 'cert_file: "%s", key_file: "%s", ca_file: "%s"' % (
    os.path.join(CERTS, "server-cert.pem"), os.path.join(CERTS, "server-key.pem"),
    os.path.join(CERTS, "ca.pem"))

# Configs nats-server 2.15 accepts, each of which must load here too.
GOOD = {
    "full": """
        no_auth_user: guest
        authorization {
          default_permissions = { publish = "SANDBOX.*", subscribe = ["PUBLIC.>", "_INBOX.>"] }
          users = [
            {user: alice, password: foo, permissions: {
                publish: {allow: ["a.>"], deny: "a.secret"},
                subscribe: ["b.*", "q.> workers"],
                allow_responses: {max: 3, expires: "1m"}}}
            {user: guest, password: ""}
            {nkey: %(user_key)s, permissions: {sub: ">"}}
          ]
        }
        """,
    "variables": """
        ADMIN = { publish = ">", subscribe = ">" }
        REQ = { publish = ["req.a", "req.b"], subscribe = "_INBOX.>" }
        authorization {
          ADMIN_PASS: secret
          users = [
            {user: admin, password: $ADMIN_PASS, permissions: $ADMIN}
            {user: client, password: x, permissions: $REQ}
          ]
        }
        """,
    "aliases": """
        authorization {
          default_permission = { pub = "x" }
          users = [
            {username: a, pass: b, permission: {pub: "p", sub: "s", publish_allow_responses: true}}
            {user: c, authorization: {import: "i", export: "e"}}
            {user: d, password: e, permissions: {allow_responses: {max_msgs: 2, ttl: "30s"}}}
            {user: f, password: g, permissions: {allow_responses: {max_responses: -1, expiration: "1h"}}}
          ]
        }
        """,
    "top_level_permissions_is_default": """
        authorization {
          permissions = { subscribe = { deny = ["secret.>", "jobs.* slackers"] } }
          users = [ {user: a, password: b} ]
        }
        """,
    "empty_publish_map": """
        authorization { users = [ {user: a, password: b, permissions: {publish: {}, subscribe: []}} ] }
        """,
    "connection_types": """
        authorization { users = [ {user: a, password: b,
            allowed_connection_types: ["STANDARD", "websocket", "MQTT_WS", "IN_PROCESS"],
            proxy_required: false} ] }
        """,
    "nkey_only_and_no_auth_nkey": """
        no_auth_user: %(user_key)s
        authorization { users = [ {nkey: "%(user_key)s"} ] }
        """,
    "tls_options": """
        allow_non_tls: true
        tls { %(tls)s
              verify_and_map: true
              handshake_first: "300ms" }
        authorization { users = [ {user: "CN=localhost,OU=nats.io,O=Synadia,ST=California,C=US"} ] }
        """,
    "tls_handshake_first_forms": """
        tls { %(tls)s, first: auto }
        """,
    "tls_handshake_first_bool": """
        tls { %(tls)s, handshake_first: true, verify_and_map: false }
        """,
    "cluster_permissions": """
        cluster {
          listen: 127.0.0.1:-1
          permissions { import: { allow: ["x.>", "y"], deny: "x.secret" }, export: ["z.*"] }
        }
        """,
}

# Configs nats-server 2.15 refuses: our message fragment and the text the
# error must point at (its first occurrence; "@KEY" for the key before it).
BAD = {
    "nkey_checksum": ('authorization { users = [ {nkey: %(bad_crc)s} ] }',
                      "invalid checksum", "%(bad_crc)s"),
    "nkey_prefix": ('authorization { users = [ {nkey: %(account_key)s} ] }',
                    "expected a user key", "%(account_key)s"),
    "nkey_garbage": ('authorization { users = [ {nkey: "UABC"} ] }',
                     "not a valid public nkey", '"UABC"'),
    "nkey_with_password": ('authorization { users = [ {nkey: %(user_key)s, password: x} ] }',
                           "nkey users do not take usernames or passwords", "{nkey"),
    "unknown_key_in_permissions": (
        'authorization { users = [ {user: a, permissions: {publish: "x", bogus: 1}} ] }',
        'unknown field "bogus" parsing permissions', "bogus"),
    "unknown_key_in_subject_map": (
        'authorization { users = [ {user: a, permissions: {subscribe: {allow: "x", allows: "y"}}} ] }',
        "only 'allow' or 'deny' are permitted", "allows"),
    "unknown_key_in_responses": (
        'authorization { users = [ {user: a, permissions: {allow_responses: {max: 1, maximum: 2}}} ] }',
        'unknown field "maximum"', "maximum"),
    "bad_publish_subject": (
        'authorization { users = [ {user: a, permissions: {publish: ["ok", "a b"]}} ] }',
        'subject "a b" is not a valid subject', '"a b"'),
    "publish_takes_no_queue": (
        'authorization { users = [ {user: a, permissions: {publish: {deny: "foo.> workers"}}} ] }',
        'subject "foo.> workers" is not a valid subject', '"foo.> workers"'),
    "bad_subscribe_subject": (
        'authorization { users = [ {user: a, permissions: {subscribe: "a.>.b"}} ] }',
        'subject "a.>.b" is not a valid subject', '"a.>.b"'),
    "empty_token": (
        'authorization { users = [ {user: a, permissions: {subscribe: {deny: ["a..b"]}}} ] }',
        'subject "a..b" is not a valid subject', '"a..b"'),
    "three_words": (
        'authorization { users = [ {user: a, permissions: {subscribe: "a b c"}} ] }',
        'subject "a b c" is not a valid subject', '"a b c"'),
    "bad_queue": (
        'authorization { users = [ {user: a, permissions: {subscribe: "foo q..x"}} ] }',
        'queue "q..x" is not a valid queue', '"foo q..x"'),
    "subject_not_a_string": (
        'authorization { users = [ {user: a, permissions: {publish: ["a", 5]}} ] }',
        "must be a string", "5]"),
    "permissions_not_a_map": (
        'authorization { users = [ {user: a, permissions: "x"} ] }',
        "expected permissions to be a block", '"x"'),
    "expires_not_a_duration": (
        'authorization { users = [ {user: a, permissions: {allow_responses: {expires: 5}}} ] }',
        "expected a duration string", "5}"),
    "expires_bad_duration": (
        'authorization { users = [ {user: a, permissions: {allow_responses: {expires: "5 minutes"}}} ] }',
        "expected a duration string", '"5 minutes"'),
    "responses_wrong_type": (
        'authorization { users = [ {user: a, permissions: {allow_responses: "yes please"}} ] }',
        "expected a boolean or a block", '"yes please"'),
    "cluster_responses": (
        'cluster { listen: "127.0.0.1:-1", permissions: {import: "a", allow_responses: true} }',
        "cluster permissions do not support dynamic responses", "@allow_responses"),
    "cluster_queue": (
        'cluster { listen: "127.0.0.1:-1", permissions: {export: "a q"} }',
        'subject "a q" is not a valid subject', '"a q"'),
    "handshake_first_value": ('tls { %(tls)s, handshake_first: "sometimes" }',
                              "\"handshake_first\"'s value \"sometimes\" is invalid", '"sometimes"'),
    "handshake_first_type": ('tls { %(tls)s, handshake_first: 5 }',
                             "should be a boolean or a string", "5 }"),
    "verify_and_map_type": ('tls { %(tls)s, verify_and_map: "yes" }',
                            "expected a boolean", '"yes"'),
    "connection_type": ('authorization { users = [ {user: a, allowed_connection_types: ["PIGEON"]} ] }',
                        'invalid connection types ["PIGEON"]', '["PIGEON"]'),
    # top level only, in 2.9.10 and 2.15.1 alike
    "allow_non_tls_inside_tls": ('tls { %(tls)s, allow_non_tls: true }',
                                 'unknown field "allow_non_tls"', "allow_non_tls"),
    "unknown_user_key": ('authorization { users = [ {user: a, permissons: {}} ] }',
                         'unknown field "permissons"', "permissons"),
}

FILL = {"user_key": USER_KEY, "account_key": ACCOUNT_KEY, "bad_crc": BAD_CRC_KEY, "tls": TLS}


def where(text: str, needle: str):
    """(line, col), 1-based, of needle's first occurrence in text."""
    i = text.index(needle)
    return text.count("\n", 0, i) + 1, i - (text.rfind("\n", 0, i) + 1) + 1


class ConfFiles(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, name, text):
        path = os.path.join(self.dir, name + ".conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def load(self, text, name="t"):
        path = self.write(name, text)
        return options.apply_config(options.Options(), conf.parse_file(path), path), path

    def go_check(self, path):
        """(ok, output) of nats-server 2.15.1 -t on the file."""
        r = subprocess.run([GO_215, "-t", "-c", path], capture_output=True, text=True,
                           timeout=20)
        return r.returncode == 0, (r.stdout + r.stderr).strip()


class TestGoodConfigs(ConfFiles):
    def test_each_loads(self):
        for name, text in GOOD.items():
            with self.subTest(name):
                opts, path = self.load(text % FILL, name)
                # issue 16 enforces every client setting; what remains
                # refused is certificate mapping on routes
                for key, _ in authz.unsupported_settings(opts):
                    self.assertEqual(key, "cluster.tls.verify_and_map", name)

    @needs(HAVE_GO, "no nats-server 2.15 at " + GO_215)
    def test_nats_server_accepts_them_too(self):
        for name, text in GOOD.items():
            with self.subTest(name):
                ok, out = self.go_check(self.write(name, text % FILL))
                self.assertTrue(ok, out)

    def test_full_values(self):
        opts, _ = self.load(GOOD["full"] % FILL)
        alice = opts.users[0]
        self.assertEqual(alice["user"], "alice")
        self.assertEqual(alice["permissions"], PermissionSpec(
            publish=SubjectRule(allow=("a.>",), deny=("a.secret",)),
            subscribe=SubjectRule(allow=("b.*", "q.> workers")),
            response=ResponseRule(max_msgs=3, expires=60.0)))
        self.assertNotIn("permissions", opts.users[1])
        self.assertEqual(opts.nkeys, [{"nkey": USER_KEY, "permissions": PermissionSpec(
            subscribe=SubjectRule(allow=(">",)))}])
        self.assertEqual(opts.default_permissions, PermissionSpec(
            publish=SubjectRule(allow=("SANDBOX.*",)),
            subscribe=SubjectRule(allow=("PUBLIC.>", "_INBOX.>"))))
        self.assertEqual(opts.no_auth_user, "guest")
        self.assertTrue(ClientAuth(opts).required)

    def test_aliases_and_response_defaults(self):
        opts, _ = self.load(GOOD["aliases"])
        a, c, d, f = opts.users
        self.assertEqual(a["permissions"].response, ResponseRule(1, 120.0))
        # allow_responses turns the blanket publish allow off, keeping the list
        self.assertEqual(a["permissions"].publish, SubjectRule(allow=("p",)))
        self.assertEqual(c["permissions"], PermissionSpec(
            publish=SubjectRule(allow=("i",)), subscribe=SubjectRule(allow=("e",))))
        self.assertEqual(d["permissions"].response, ResponseRule(2, 30.0))
        self.assertEqual(d["permissions"].publish, SubjectRule(allow=()))
        self.assertEqual(f["permissions"].response, ResponseRule(-1, 3600.0))
        self.assertEqual(opts.default_permissions.publish, SubjectRule(allow=("x",)))

    def test_variables_share_values(self):
        opts, _ = self.load(GOOD["variables"])
        self.assertEqual(opts.users[0]["password"], "secret")
        self.assertEqual(opts.users[0]["permissions"].publish, SubjectRule(allow=(">",)))
        self.assertEqual(opts.users[1]["permissions"].publish, SubjectRule(allow=("req.a", "req.b")))

    def test_tls_and_cluster_values(self):
        opts, _ = self.load(GOOD["tls_options"] % FILL)
        self.assertTrue(opts.allow_non_tls)
        self.assertTrue(opts.tls_verify_and_map)
        self.assertTrue(opts.tls_verify)                # mapping implies verify
        self.assertTrue(opts.tls_handshake_first)
        self.assertAlmostEqual(opts.tls_handshake_first_fallback, 0.3)
        opts, _ = self.load(GOOD["tls_handshake_first_forms"] % FILL)
        self.assertEqual((opts.tls_handshake_first, opts.tls_handshake_first_fallback),
                         (True, authz.HANDSHAKE_FIRST_AUTO_DELAY))
        opts, _ = self.load(GOOD["tls_handshake_first_bool"] % FILL)
        self.assertEqual((opts.tls_handshake_first, opts.tls_handshake_first_fallback,
                          opts.tls_verify_and_map), (True, 0.0, False))
        opts, _ = self.load(GOOD["cluster_permissions"])
        self.assertEqual(opts.cluster_permissions, PermissionSpec(
            publish=SubjectRule(allow=("x.>", "y"), deny=("x.secret",)),
            subscribe=SubjectRule(allow=("z.*",))))
        opts, _ = self.load(GOOD["connection_types"])
        self.assertEqual(opts.users[0]["allowed_connection_types"],
                         ("STANDARD", "WEBSOCKET", "MQTT_WS", "IN_PROCESS"))

    def test_plain_configs_have_nothing_unsupported(self):
        for text in ("port: 4222", "authorization { user: a, password: b }",
                     "authorization { token: abc }",
                     "authorization { users = [ {user: a, password: b} ] }",
                     "tls { %s }" % TLS):
            opts, _ = self.load(text)
            self.assertEqual(authz.unsupported_settings(opts), [], text)
            self.assertEqual(opts.nkeys, [])


class TestBadConfigs(ConfFiles):
    def test_each_fails_at_its_position(self):
        for name, (text, message, needle) in BAD.items():
            with self.subTest(name):
                text = text % FILL
                at_key = needle.startswith("@")
                line, col = where(text, (needle[1:] if at_key else needle) % FILL)
                with self.assertRaises(ConfigError) as cm:
                    self.load(text, name)
                e = cm.exception
                self.assertIn(message, e.message)
                self.assertEqual((e.pos.line, e.pos.col), (line, col), str(e))
                self.assertTrue(str(e).startswith("%s:%d:%d: " % (e.pos.file, line, col)))

    @needs(HAVE_GO, "no nats-server 2.15 at " + GO_215)
    def test_nats_server_refuses_them_too(self):
        for name, (text, _, _) in BAD.items():
            with self.subTest(name):
                ok, out = self.go_check(self.write(name, text % FILL))
                self.assertFalse(ok, out)


class TestNoAuthUserCheck(ConfFiles):
    """nats-server checks no_auth_user when the server starts (validateOptions),
    not under -t; authz.check_no_auth_user is that check, with the position."""

    def test_must_name_a_user_or_nkey(self):
        for text, message in (
                ("no_auth_user: x\n", 'no_auth_user: "x" present, but users/nkeys are not defined'),
                ("no_auth_user: x\nauthorization { users = [ {user: a, password: b} ] }\n",
                 'no_auth_user: "x" not present as user or nkey in authorization block')):
            opts, path = self.load(text)
            with self.assertRaises(ConfigError) as cm:
                authz.check_no_auth_user(opts)
            self.assertIn(message, str(cm.exception))
            self.assertTrue(str(cm.exception).startswith(path + ":1:15: "), str(cm.exception))
        for text in (GOOD["full"] % FILL, GOOD["nkey_only_and_no_auth_nkey"] % FILL):
            opts, _ = self.load(text)
            authz.check_no_auth_user(opts)      # names a user: no error


class TestUnsupportedSettings(ConfFiles):
    ROUTE_MAP = ("cluster { listen: 127.0.0.1:-1\n  tls { cert_file: \"%s\", key_file: \"%s\",\n"
                 "    ca_file: \"%s\", verify_and_map: true } }\n"
                 % (os.path.join(CERTS, "server-cert.pem"), os.path.join(CERTS, "server-key.pem"),
                    os.path.join(CERTS, "ca.pem")))

    def test_every_client_setting_is_enforced(self):
        text = GOOD["full"] % FILL + "\nallow_non_tls: true\ncluster { listen: 127.0.0.1:-1\n" \
            "  permissions { export: x } }\n"
        opts, path = self.load(text)
        self.assertEqual(authz.unsupported_settings(opts), [])

    def test_route_certificate_mapping_is_listed_with_its_position(self):
        opts, path = self.load(self.ROUTE_MAP)
        found = authz.unsupported_settings(opts)
        self.assertEqual([k for k, _ in found], ["cluster.tls.verify_and_map"])
        pos = found[0][1]
        self.assertEqual(pos.file, path)
        self.assertEqual((pos.line, pos.col), where(self.ROUTE_MAP, "verify_and_map"))
        self.assertEqual(authz.unsupported_message(*found[0]),
                         "%s: cluster.tls.verify_and_map: not enforced yet by this build (issue 16)"
                         % (pos,))

    def test_options_built_in_code(self):
        o = options.Options()
        o.users = [{"user": "a", "password": "b", "permissions": {"publish": "x"}}]
        o.no_auth_user = "a"
        o.tls_handshake_first = True
        self.assertEqual(authz.unsupported_settings(o), [])
        o.cluster_tls_verify_and_map = True
        self.assertEqual(authz.unsupported_settings(o), [("verify_and_map", None)])


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class TestAuthLayer(ConfFiles):
    """What ClientAuth.authenticate answers for these configs."""

    def auth(self, text):
        opts, _ = self.load(text % FILL)
        return ClientAuth(opts)

    def test_user_entries_and_default_permissions(self):
        a = self.auth(GOOD["full"])
        alice = a.authenticate({"user": "alice", "pass": "foo"})
        self.assertEqual(alice.name, "alice")
        self.assertTrue(alice.permissions.can_publish("a.x"))
        self.assertFalse(alice.permissions.can_publish("a.secret"))
        self.assertTrue(alice.permissions.can_subscribe("q.x", "workers"))
        self.assertIsNone(a.authenticate({"user": "alice", "pass": "bad"}))
        self.assertIsNone(a.authenticate({"user": "nobody", "pass": "foo"}))
        # guest has no permissions of its own: default_permissions apply
        guest = a.authenticate({"user": "guest", "pass": ""})
        self.assertTrue(guest.permissions.can_publish("SANDBOX.x"))
        self.assertFalse(guest.permissions.can_publish("a.x"))
        # existing name-only check is unchanged
        self.assertEqual(a.check({"user": "alice", "pass": "foo"}), "alice")

    def test_no_auth_user(self):
        a = self.auth(GOOD["full"])
        for connect in ({}, {"verbose": False}, {"user": "", "pass": ""}):
            entry = a.authenticate(connect)
            self.assertIsNotNone(entry, connect)
            self.assertEqual(entry.name, "guest")
        # wrong credentials are still refused, not mapped to the no-auth user
        self.assertIsNone(a.authenticate({"user": "alice", "pass": "wrong"}))
        self.assertIsNone(a.authenticate({"pass": "foo"}))
        self.assertIsNone(a.authenticate({"auth_token": "t"}))
        self.assertIsNone(a.authenticate("junk"))

    def test_plain_configs_answer_entries_without_permissions(self):
        opts, _ = self.load("authorization { token: abc }")
        a = ClientAuth(opts)
        self.assertEqual(a.authenticate({"auth_token": "abc"}).name, "")
        self.assertIsNone(a.authenticate({"auth_token": "abd"}))
        a = ClientAuth(options.Options())
        entry = a.authenticate({})
        self.assertEqual((entry.name, entry.permissions), ("", None))

    def test_permissions_from_code_must_be_valid(self):
        o = options.Options()
        o.users = [{"user": "a", "password": "b", "permissions": {"publish": "a b"}}]
        with self.assertRaises(AuthError):
            ClientAuth(o)

    @needs(nkeys_pkg is not None, "pip install nkeys (the test extra)")
    def test_nkey_users(self):
        kp = nkeys_pkg.from_seed(nkeys_pkg.encode_seed(os.urandom(32), nkeys_pkg.PREFIX_BYTE_USER))
        pub = kp.public_key.decode()
        text = "authorization { users = [ {nkey: %s, permissions: {publish: \"ok\"}} ] }" % pub
        opts, _ = self.load(text)
        a = ClientAuth(opts)
        self.assertTrue(a.required)
        nonce = make_nonce()
        connect = {"nkey": pub, "sig": b64url(kp.sign(nonce.encode()))}
        self.assertTrue(a.needs_signature_check(connect))
        entry = a.authenticate(connect, nonce)
        self.assertEqual((entry.name, entry.nkey), (pub, pub))
        self.assertTrue(entry.permissions.can_publish("ok"))
        self.assertFalse(entry.permissions.can_publish("no"))
        # another nonce, another key, no sig, junk sig: refused
        self.assertIsNone(a.authenticate(connect, make_nonce()))
        self.assertIsNone(a.authenticate(dict(connect, sig=""), nonce))
        self.assertIsNone(a.authenticate(dict(connect, sig="!!"), nonce))
        self.assertIsNone(a.authenticate(dict(connect, sig=12), nonce))
        self.assertIsNone(a.authenticate({"nkey": USER_KEY, "sig": connect["sig"]}, nonce))
        self.assertIsNone(a.authenticate({}, nonce))
        # with only nkey users, the name-based check cannot let anyone in
        self.assertIsNone(a.check({}))
        self.assertIsNone(a.check(connect))

    def test_no_auth_nkey_needs_no_signature(self):
        a = self.auth(GOOD["nkey_only_and_no_auth_nkey"])
        self.assertFalse(a.needs_signature_check({}))
        self.assertEqual(a.authenticate({}).nkey, USER_KEY)
        self.assertEqual(decode_public(a.authenticate({}).name), bytes(range(32)))


# --- tls { verify_and_map }: which user a certificate names ----------------------

CLIENT_CERT = ssl._ssl._test_decode_cert(os.path.join(CERTS, "client-cert.pem"))
# user name -> does configs/certs/client-cert.pem (O=gnatsd.py test, CN=client,
# SANs DNS:localhost, email:client@localhost) name it? nats-server 2.15.1 agrees
# (TestCertMap.test_against_nats_server).
CERT_NAMES = {
    "client@localhost": True, "localhost": True,
    "CN=client,O=gnatsd.py test": True, "O=gnatsd.py test,CN=client": True,
    "cn=client , o=gnatsd.py test": True, "CN=client, O=gnatsd.py test": True,
    "CN=client": False, "CN=Client,O=gnatsd.py test": False, "client": False,
}


class TestCertMap(unittest.TestCase):
    def test_names(self):
        for name, want in CERT_NAMES.items():
            self.assertEqual(certmap.cert_user(CLIENT_CERT, {name: "entry"}) == "entry",
                             want, name)

    def test_order_email_then_dns_then_dn(self):
        users = {"CN=client,O=gnatsd.py test": "dn", "localhost": "dns",
                 "client@localhost": "email"}
        self.assertEqual(certmap.cert_user(CLIENT_CERT, users), "email")
        del users["client@localhost"]
        self.assertEqual(certmap.cert_user(CLIENT_CERT, users), "dns")
        del users["localhost"]
        self.assertEqual(certmap.cert_user(CLIENT_CERT, users), "dn")
        self.assertIsNone(certmap.cert_user(CLIENT_CERT, {}))
        self.assertIsNone(certmap.cert_user(None, users))
        self.assertIsNone(certmap.cert_user({}, users))

    def test_pkix_string_order_and_escaping(self):
        cert = {"subject": ((("countryName", "US"),), (("stateOrProvinceName", "CA"),),
                            (("organizationName", "Acme, Inc."),),
                            (("organizationalUnitName", "a"),), (("organizationalUnitName", "b"),),
                            (("commonName", " #lead+trail "),), (("domainComponent", "example"),),
                            (("domainComponent", "com"),))}
        # Go escapes '#' only first, a space only first or last
        expect = r"CN=\ #lead\+trail\ ,OU=b,OU=a,O=Acme\, Inc.,ST=CA,C=US"
        self.assertEqual(certmap.pkix_string(cert), expect)
        self.assertEqual(certmap.pkix_string({"subject": ((("commonName", "#x"),),)}), r"CN=\#x")
        users = {expect + ",DC=example,DC=com": "with-dcs"}
        self.assertEqual(certmap.cert_user(cert, users), "with-dcs")

    def test_parse_dn(self):
        self.assertEqual(certmap.parse_dn("CN=a\\,b+UID=7, o=x"),
                         [frozenset({("CN", "a,b"), ("UID", "7")}), frozenset({("O", "x")})])
        self.assertEqual(certmap.parse_dn("CN=\\41"), [frozenset({("CN", "A")})])
        for bad in ("", "client", "=x", None, "CN=a,b"):
            self.assertIsNone(certmap.parse_dn(bad), bad)

    def test_client_auth_maps_to_entries(self):
        path = os.path.join(tempfile.mkdtemp(), "m.conf")
        self.addCleanup(shutil.rmtree, os.path.dirname(path), True)
        with open(path, "w") as f:
            f.write('tls { %s, verify_and_map: true }\nauthorization { users = [\n'
                    '  {user: "CN=client,O=gnatsd.py test", permissions: {publish: "ok"}}\n'
                    '  {user: other, password: x} ] }\n' % TLS)
        opts = options.apply_config(options.Options(), conf.parse_file(path), path)
        entry = ClientAuth(opts).authenticate_cert(CLIENT_CERT)
        self.assertEqual(entry.name, "CN=client,O=gnatsd.py test")
        self.assertTrue(entry.permissions.can_publish("ok"))
        self.assertFalse(entry.permissions.can_publish("other"))
        self.assertIsNone(ClientAuth(opts).authenticate_cert(
            ssl._ssl._test_decode_cert(os.path.join(CERTS, "server-cert.pem"))))

    @needs(HAVE_GO, "no nats-server 2.15 at " + GO_215)
    def test_against_nats_server(self):
        for name, want in CERT_NAMES.items():
            with self.subTest(name):
                self.assertEqual(self.go_accepts(name), want)

    def go_accepts(self, user):
        """Does nats-server 2.15.1 with verify_and_map let client-cert.pem in
        as the only user `user`?"""
        port = free_port()
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "map.conf")
        with open(path, "w") as f:
            f.write('listen: 127.0.0.1:%d\ntls { %s, verify_and_map: true }\n'
                    'authorization { users = [ {user: "%s"} ] }\n' % (port, TLS, user))
        proc = subprocess.Popen([GO_215, "-c", path], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            self.assertTrue(wait_port(port, 10))
            ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.pem"))
            ctx.load_cert_chain(os.path.join(CERTS, "client-cert.pem"),
                                os.path.join(CERTS, "client-key.pem"))
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                info = b""
                while not info.endswith(b"\r\n"):
                    chunk = raw.recv(1)
                    self.assertTrue(chunk)
                    info += chunk
                with ctx.wrap_socket(raw, server_hostname="localhost") as t:
                    t.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
                    reply = b""
                    while b"\r\n" not in reply:
                        chunk = t.recv(4096)
                        if not chunk:
                            break
                        reply += chunk
            self.assertIn(reply, (b"PONG\r\n", b"-ERR 'Authorization Violation'\r\n"))
            return reply == b"PONG\r\n"
        finally:
            proc.kill()
            proc.wait(10)


if __name__ == "__main__":
    unittest.main()


class TestUnenforcedSettingsAreRefused(unittest.TestCase):
    """A setting the running server does not enforce (today only certificate
    mapping on routes) stops the server from starting and a reload from
    applying it, never loads and is ignored."""

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, text):
        path = os.path.join(self.dir, "s.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def route_tls(self, mapped):
        tls = {"cert_file": os.path.join(CERTS, "server-cert.pem"),
               "key_file": os.path.join(CERTS, "server-key.pem"),
               "ca_file": os.path.join(CERTS, "ca.pem")}
        if mapped:
            tls["verify_and_map"] = True
        return {"port": -1, "tls": tls}

    def test_process_refuses_to_start_with_the_key_named(self):
        path = self.write("listen: 127.0.0.1:-1\n" + TestUnsupportedSettings.ROUTE_MAP)
        gnatsd = os.path.join(ROOT, "gnatsd.py")
        p = subprocess.run([sys.executable, gnatsd, "-c", path], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("%s:4:" % path, p.stdout + p.stderr)
        self.assertIn("verify_and_map: not enforced yet", p.stdout + p.stderr)

    def test_embedded_server_raises_value_error(self):
        import gnats
        with self.assertRaises(ValueError) as cm:
            gnats.run(cluster=self.route_tls(True))
        self.assertIn("verify_and_map", str(cm.exception))

    def test_reload_adding_it_is_refused(self):
        import gnats
        from gnats.reload import ReloadError
        with gnats.run(cluster=self.route_tls(False)) as srv:
            with self.assertRaises(ReloadError) as cm:
                srv.reload(cluster=self.route_tls(True))
            self.assertIn("not enforced yet", str(cm.exception))
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
                self.assertTrue(s.recv(4096).startswith(b"INFO "))
