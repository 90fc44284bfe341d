"""gnats.jwt and gnats.jwt_accounts without a server: JWTs made here with the
`nkeys` package (the signing side, which the server never needs), decoded
and verified by our standard-library code; the operator -> account -> user
chain, expiry, revocation, signing keys and scopes, bearer tokens, src and
connection types; the operator-mode config keys and their errors.

The helpers (key, encode, creds_text) are used by test_operator_mode too."""

import base64
import json
import os
import tempfile
import time
import unittest

from gnats import jwt as J
from gnats.conf import ConfigError, parse
from gnats.jwt_accounts import (OperatorTrust, TrustError, account_config, check_activation,
                                permission_spec)
from gnats.options import Options, apply_config
from tests.util import needs

try:
    import nkeys
except ImportError:         # pragma: no cover - installed on this project's machines
    nkeys = None

# nats.py's own fixtures (tests/nkeys): version 1 JWTs from 2019
V1_OPERATOR = (
    "eyJ0eXAiOiJqd3QiLCJhbGciOiJlZDI1NTE5In0.eyJqdGkiOiIyTVhXQ0VaRFo2S0g3NU5ZU1NaUFBTTElET1NEVzdMVVE0"
    "RVRUSjJMWEhKQlFGWTRTMkZBIiwiaWF0IjoxNTUzODQwMzM3LCJpc3MiOiJPRFdJSUU3SjdOT1M3M1dWQk5WWTdIQ1dYVTRXW"
    "FdEQlNDVjRWSUtNNVk0TFhUT1Q1U1FQT0xXTCIsIm5hbWUiOiJ0ZXN0X29wZXJhdG9yIiwic3ViIjoiT0RXSUlFN0o3Tk9TNz"
    "NXVkJOVlk3SENXWFU0V1hXREJTQ1Y0VklLTTVZNExYVE9UNVNRUE9MV0wiLCJ0eXBlIjoib3BlcmF0b3IifQ.V_v6k3aMOpya"
    "u83RaqNHW_YmZw8X0ZnJWLOas3YvQYIyXrHF0bL9inBaQw6zXzbN_ViQnNskhB7tM40qguitAg")
V1_USER = (
    "eyJ0eXAiOiJqd3QiLCJhbGciOiJlZDI1NTE5In0.eyJqdGkiOiJXTURGT1dHV1JGWkRGRFVSM0dPUkdESEtUTTdDUlZBVDQ1"
    "RkRFMllNRUY1N0VOQ0JBVFFRIiwiaWF0IjoxNTUzODQwOTQ0LCJpc3MiOiJBRDdTRUFOUzZCQ0JGNkZISUI3U1EzVUdKVlBXN"
    "TNCWE9BTFA3NVlYSkJCWFFMN0VBRkI2TkpOQSIsIm5hbWUiOiJmb28tdXNlciIsInN1YiI6IlVDSzVON042Nk9CT0lORlhBWU"
    "MyQUNKUVlGU09ENFZZTlU2QVBFSlRBVkZaQjJTVkhMS0dFVzdMIiwidHlwZSI6InVzZXIiLCJuYXRzIjp7InB1YiI6e30sInN"
    "1YiI6e319fQ.Vri09BN561m37GvuSWoGN9L9TSkwQbjC_jIv1BCJcoxZqNc_Pa7WbR12b3SAS4_Ip2D9-2HCwyYib1JUEIO8Bg")


# --- making JWTs (tests only: the server never signs) ---------------------------

def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def key(kind):
    """A fresh key pair: kind "O", "A" or "U". `.pub` is its public key
    text, `.seed_text` its seed."""
    prefix = {"O": nkeys.PREFIX_BYTE_OPERATOR, "A": nkeys.PREFIX_BYTE_ACCOUNT,
              "U": nkeys.PREFIX_BYTE_USER}[kind]
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    kp = nkeys.from_seed(bytearray(seed))
    kp.pub = kp.public_key.decode("ascii")
    kp.seed_text = seed.decode("ascii")
    return kp


def encode(kind, sub, signer, nats=None, header=None, **top):
    """A v2 JWT of `kind` for `sub` signed by `signer`; `top` adds or
    overrides claims (exp, nbf, iat, ...)."""
    claims = {"jti": b64(os.urandom(12)), "iat": int(time.time()), "iss": signer.pub,
              "name": kind, "sub": sub}
    claims.update(top)
    n = dict(nats or {})
    n.setdefault("type", kind)
    n.setdefault("version", 2)
    claims["nats"] = n
    h = b64(json.dumps(header or {"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    p = b64(json.dumps(claims).encode())
    return h + "." + p + "." + b64(bytes(signer.sign((h + "." + p).encode())))


def creds_text(token, kp):
    return ("-----BEGIN NATS USER JWT-----\n%s\n------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n\n"
            "-----BEGIN USER NKEY SEED-----\n%s\n------END USER NKEY SEED------\n\n"
            "*************************************************************\n"
            % (token, kp.seed_text))


UNLIMITED = {"subs": -1, "conn": -1, "data": -1, "payload": -1, "imports": -1,
             "exports": -1, "wildcards": True, "leaf": -1}
USER_LIMITS = {"subs": -1, "data": -1, "payload": -1}


def sign_nonce(kp, nonce):
    return b64(bytes(kp.sign(nonce.encode())))


@needs(nkeys is not None, "the nkeys package is not installed")
class DecodeTest(unittest.TestCase):
    def setUp(self):
        self.op = key("O")
        self.acc = key("A")
        self.user = key("U")

    def test_v2_round_trip_typed_claims(self):
        sk = key("O")
        sys_acc = key("A")
        op = J.decode(encode("operator", self.op.pub, self.op,
                             {"signing_keys": [sk.pub], "system_account": sys_acc.pub}))
        self.assertIsInstance(op, J.OperatorClaims)
        self.assertEqual(op.version, 2)
        self.assertEqual(op.signing_keys, (sk.pub,))
        self.assertEqual(op.system_account, sys_acc.pub)
        self.assertEqual(op.trusted_keys(), (self.op.pub, sk.pub))
        self.assertEqual(op.validate(), [])

        acc = J.decode_account(encode("account", self.acc.pub, self.op, {
            "limits": dict(UNLIMITED, conn=3, subs=10),
            "exports": [{"name": "s", "subject": "svc.>", "type": "service"}],
            "imports": [{"name": "i", "subject": "x.>", "account": key("A").pub,
                         "type": "stream", "local_subject": "y.>"}],
            "revocations": {self.user.pub: 1000},
            "default_permissions": {"pub": {"deny": ["secret.>"]}},
            "signing_keys": [key("A").pub]}))
        self.assertEqual((acc.limits.conn, acc.limits.subs, acc.limits.payload), (3, 10, -1))
        self.assertEqual(acc.exports[0].subject, "svc.>")
        self.assertEqual(acc.exports[0].type, "service")
        self.assertEqual(acc.imports[0].local_subject, "y.>")
        self.assertEqual(acc.revocations, {self.user.pub: 1000})
        self.assertEqual(acc.default_permissions.pub.deny, ("secret.>",))
        self.assertEqual(len(acc.signing_keys), 1)
        self.assertEqual(acc.validate(), [])

        u = J.decode_user(encode("user", self.user.pub, self.acc, {
            "pub": {"allow": ["a.>"]}, "sub": {"deny": ["b"]}, "resp": {"max": 2, "ttl": 10**9},
            "src": ["127.0.0.0/8"], "bearer_token": True, "subs": 5,
            "allowed_connection_types": ["STANDARD"]}))
        self.assertEqual(u.account, self.acc.pub)
        self.assertEqual(u.limits.pub.allow, ("a.>",))
        self.assertEqual(u.limits.resp, (2, 10**9))
        self.assertEqual(u.limits.src, ("127.0.0.0/8",))
        self.assertTrue(u.limits.bearer_token)
        self.assertEqual(u.limits.subs, 5)

    def test_v1_fixtures_from_nats_py(self):
        op = J.decode_operator(V1_OPERATOR)
        self.assertEqual(op.version, 1)
        self.assertEqual(op.subject, "ODWIIE7J7NOS73WVBNVY7HCWXU4WXWDBSCV4VIKM5Y4LXTOT5SQPOLWL")
        u = J.decode_user(V1_USER)
        self.assertEqual(u.version, 1)
        self.assertEqual(u.account, "AD7SEANS6BCBF6FHIB7SQ3UGJVPW53BXOALP75YXJBBXQL7EAFB6NJNA")
        self.assertEqual(u.limits.subs, -1)         # v1 limits default to "none"
        decorated = "-----BEGIN TEST OPERATOR JWT-----\n%s\n------END TEST OPERATOR JWT------\n" % V1_OPERATOR
        self.assertEqual(J.parse_decorated_jwt(decorated), V1_OPERATOR)

    def test_tampered_tokens_are_refused(self):
        token = encode("user", self.user.pub, self.acc)
        h, p, s = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
        claims["sub"] = key("U").pub           # re-signed by nobody
        forged = h + "." + b64(json.dumps(claims).encode()) + "." + s
        with self.assertRaisesRegex(J.JWTError, "^claim failed V2 signature verification$"):
            J.decode(forged)
        bad_sig = s[:10] + ("A" if s[10] != "A" else "B") + s[11:]
        with self.assertRaisesRegex(J.JWTError, "signature verification"):
            J.decode(h + "." + p + "." + bad_sig)
        # the v1 rule (signature over the claims chunk only) does not apply to v2
        v1_style = h + "." + p + "." + b64(bytes(self.acc.sign(p.encode())))
        with self.assertRaisesRegex(J.JWTError, "V2 signature"):
            J.decode(v1_style)
        # signed by another key than `iss` says
        other = encode("user", self.user.pub, key("A"), iss=self.acc.pub)
        with self.assertRaisesRegex(J.JWTError, "signature verification"):
            J.decode(other)

    def test_malformed_tokens_give_clear_errors(self):
        good = encode("user", self.user.pub, self.acc)
        h, p, s = good.split(".")
        cases = [
            (h + "." + p, "expected 3 chunks"),
            ("a.b.c.d", "expected 3 chunks"),
            ("!!." + p + "." + s, "illegal base64"),
            (h + "." + b64(b"not json") + "." + s, "not valid JSON"),
            (h + "." + b64(b"[1,2]") + "." + s, "not valid JSON"),
            (b64(b'{"typ":"JWT","alg":"RS256"}') + "." + p + "." + s, 'unexpected "RS256" algorithm'),
            (b64(b'{"typ":"XYZ","alg":"ed25519-nkey"}') + "." + p + "." + s, "not supported type"),
            (h + "." + p + "." + s + "=", "illegal base64"),
            (12, "not a string"),
        ]
        for token, msg in cases:
            with self.assertRaisesRegex(J.JWTError, msg, msg=repr(token)[:40]):
                J.decode(token)
        with self.assertRaisesRegex(J.JWTError, "exceeds maximum"):
            J.decode("a" * (J.MAX_TOKEN_SIZE + 1))

    def test_wrong_types_inside_claims_are_jwt_errors(self):
        for top, nats in (({"exp": "soon"}, {}), ({}, {"pub": {"allow": "a"}}),
                          ({}, {"resp": 3}), ({}, {"times": ["x"]}), ({"iat": True}, {}),
                          ({}, {"src": 5}), ({}, {"version": "2"})):
            token = encode("user", self.user.pub, self.acc, nats, **top)
            with self.assertRaises(J.JWTError, msg=(top, nats)):
                J.decode(token)
        token = encode("account", self.acc.pub, self.op, {"signing_keys": [{"kind": "nope"}]})
        with self.assertRaisesRegex(J.JWTError, "signing key scope"):
            J.decode(token)

    def test_kind_and_issuer_prefix(self):
        with self.assertRaisesRegex(J.JWTError, "not an account claim"):
            J.decode_account(encode("user", self.user.pub, self.acc))
        # a user JWT must be signed by an account key, not an operator key
        with self.assertRaisesRegex(J.JWTError, "expected prefixes"):
            J.decode_user(encode("user", self.user.pub, self.op))
        with self.assertRaisesRegex(J.JWTError, "unsupported JWT type"):
            J.decode(encode("server", self.user.pub, self.op))
        with self.assertRaisesRegex(J.JWTError, "newer version"):
            J.decode(encode("user", self.user.pub, self.acc, {"version": 3}))

    def test_expiry_and_not_before(self):
        now = int(time.time())
        u = J.decode_user(encode("user", self.user.pub, self.acc, exp=now - 1))
        self.assertEqual(u.validate(now), ["claim is expired"])
        self.assertEqual(u.validate(now - 5), [])
        u = J.decode_user(encode("user", self.user.pub, self.acc, nbf=now + 60))
        self.assertEqual(u.validate(now), ["claim is not yet valid"])

    def test_validation_issues(self):
        u = J.decode_user(encode("user", self.user.pub, self.acc, {
            "pub": {"allow": ["a..b", "q w"]}, "src": ["nonsense"],
            "times": [{"start": "25:00:00", "end": "10:00:00"}], "issuer_account": "x"}))
        issues = u.validate()
        self.assertIn('subject "a..b" cannot contain consecutive `.`', issues)
        self.assertIn('Permission Subject "q w" is not allowed to contain queue', issues)
        self.assertIn('invalid cidr "nonsense" in user src limits', issues)
        self.assertIn('start in time range is invalid "25:00:00"', issues)
        self.assertIn("account_id is not an account public key", issues)

    def test_revocation_rules(self):
        self.assertFalse(J.is_revoked({}, "U1", 100))
        self.assertTrue(J.is_revoked({"U1": 100}, "U1", 100))       # at iat: revoked
        self.assertTrue(J.is_revoked({"U1": 200}, "U1", 100))
        self.assertFalse(J.is_revoked({"U1": 99}, "U1", 100))       # issued after
        self.assertTrue(J.is_revoked({"*": 150}, "U2", 100))
        self.assertFalse(J.is_revoked({"*": 50}, "U2", 100))

    def test_time_windows_and_src(self):
        lim = J.decode_user(encode("user", self.user.pub, self.acc, {
            "times": [{"start": "00:00:00", "end": "23:59:59"}], "times_location": "UTC"})).limits
        noon = 1700000000 - 1700000000 % 86400 + 12 * 3600
        ok, left = J.time_window(lim, noon)
        self.assertTrue(ok)
        self.assertAlmostEqual(left, 12 * 3600 - 1, delta=1)
        lim = J.decode_user(encode("user", self.user.pub, self.acc, {
            "times": [{"start": "22:00:00", "end": "02:00:00"}], "times_location": "UTC"})).limits
        self.assertEqual(J.time_window(lim, noon), (False, 0.0))
        self.assertEqual(J.time_window(lim, noon + 11 * 3600)[0], True)     # 23:00, wraps
        lim = J.decode_user(encode("user", self.user.pub, self.acc,
                                   {"src": "10.0.0.0/8,127.0.0.1/32"})).limits
        self.assertTrue(J.source_allowed(lim, "127.0.0.1"))
        self.assertTrue(J.source_allowed(lim, "10.1.2.3"))
        self.assertFalse(J.source_allowed(lim, "192.168.1.1"))
        self.assertFalse(J.source_allowed(lim, "not-an-ip"))

    def test_creds_files(self):
        token = encode("user", self.user.pub, self.acc)
        self.assertEqual(J.parse_creds(creds_text(token, self.user)), (token, self.user.seed_text))
        with tempfile.NamedTemporaryFile("w", suffix=".creds", delete=False) as f:
            f.write(creds_text(token, self.user))
        self.addCleanup(os.unlink, f.name)
        self.assertEqual(J.read_creds(f.name)[0], token)
        with self.assertRaisesRegex(J.JWTError, "no nkey seed found"):
            J.parse_creds("-----BEGIN NATS USER JWT-----\n%s\n------END NATS USER JWT------\n" % token)
        with self.assertRaisesRegex(J.JWTError, "no JWT found"):
            J.parse_creds("nothing here")


@needs(nkeys is not None, "the nkeys package is not installed")
class TrustChainTest(unittest.TestCase):
    """OperatorTrust.authenticate: the verdict and the reason nats-server
    would log at debug level."""

    NONCE = "abcdefghijklmno"

    def setUp(self):
        self.op = key("O")
        self.op_sk = key("O")
        self.op_jwt = encode("operator", self.op.pub, self.op, {"signing_keys": [self.op_sk.pub]})
        self.a = key("A")
        self.a_sk = key("A")
        self.a_scope = key("A")
        self.b = key("A")
        self.revoked = key("U")
        self.accounts = {
            self.a.pub: {"limits": UNLIMITED, "signing_keys": [
                self.a_sk.pub,
                {"kind": "user_scope", "key": self.a_scope.pub, "role": "r",
                 "template": {"pub": {"allow": ["in.{{name()}}.>", "acct.{{account-name()}}"]},
                              "sub": {"allow": ["out.{{subject()}}"]}}}],
                "revocations": {self.revoked.pub: int(time.time()) + 60},
                "default_permissions": {"sub": {"deny": ["private.>"]}}},
            # B is signed by the operator's signing key and refuses bearer tokens
            self.b.pub: {"limits": dict(UNLIMITED, disallow_bearer=True)},
        }
        self.trust = self.make_trust()

    def make_trust(self, **extra):
        preload = {}
        for k, nats in self.accounts.items():
            signer = self.op_sk if k == self.b.pub else self.op
            preload[k] = encode("account", k, signer, nats, name="acc-" + k[:4])
        preload.update(extra)
        return OperatorTrust([self.op_jwt], preload)

    def connect(self, token, kp, nonce=None, sig=None):
        obj = {"jwt": token}
        if kp is not None:
            obj["sig"] = sig or sign_nonce(kp, nonce or self.NONCE)
        return obj

    def auth(self, obj, host="127.0.0.1", kind="STANDARD"):
        return self.trust.authenticate(obj, self.NONCE, host, kind)

    def user(self, signer=None, nats=None, **top):
        u = key("U")
        return u, encode("user", u.pub, signer or self.a, dict(USER_LIMITS, **(nats or {})), **top)

    def test_user_of_account_is_accepted(self):
        u, token = self.user()
        got, reason = self.auth(self.connect(token, u))
        self.assertEqual(reason, "")
        self.assertEqual(got.account_name, self.a.pub)
        self.assertEqual(got.name, u.pub)
        self.assertEqual(got.expires_in, 0)
        # no own permissions: the account's default_permissions apply
        self.assertFalse(got.permissions.can_subscribe("private.x", None))
        self.assertTrue(got.permissions.can_subscribe("public.x", None))
        # the standard-base64 signature (nats.py sends it) is accepted too
        std = base64.b64encode(bytes(u.sign(self.NONCE.encode()))).decode()
        self.assertEqual(self.auth(self.connect(token, u, sig=std))[1], "")

    def test_refusals_and_their_reasons(self):
        now = int(time.time())
        u, token = self.user()
        cases = [
            ({}, "Authentication requires a user JWT"),
            ({"jwt": "x.y"}, "User JWT not valid: expected 3 chunks"),
            ({"jwt": token}, "Signature missing"),
            (self.connect(token, u, nonce="another-nonce-x"), "Signature not verified"),
            (self.connect(token, key("U")), "Signature not verified"),
            (self.connect(token, u, sig="!!notbase64!!"), "Signature not verified"),
        ]
        exp_u, exp_token = self.user(exp=now - 5)
        cases.append((self.connect(exp_token, exp_u), "User JWT no longer valid: claim is expired"))
        rev_token = encode("user", self.revoked.pub, self.a, USER_LIMITS)
        cases.append((self.connect(rev_token, self.revoked), "User authentication revoked"))
        stranger = key("A")
        s_u, s_token = self.user(signer=stranger)
        cases.append((self.connect(s_token, s_u), "Account JWT lookup error: %s not found" % stranger.pub))
        # signed by an account signing key without saying which account
        k_u, k_token = self.user(signer=self.a_sk)
        cases.append((self.connect(k_token, k_u), "Account JWT lookup error"))
        # claims account A but is signed by a key A does not list
        n_u, n_token = self.user(signer=key("A"), nats={"issuer_account": self.a.pub})
        cases.append((self.connect(n_token, n_u), "User JWT issuer is not known"))
        # a scoped signing key's users may not carry their own permissions
        p_u, p_token = self.user(signer=self.a_scope, nats={"issuer_account": self.a.pub,
                                                           "pub": {"allow": [">"]}})
        cases.append((self.connect(p_token, p_u), "scoped users require no permissions"))
        for obj, reason in cases:
            got, why = self.auth(obj)
            self.assertIsNone(got, reason)
            self.assertIn(reason, why)

    def test_all_users_revoked_before_a_time(self):
        u, old = self.user(iat=int(time.time()) - 100)
        self.accounts[self.a.pub]["revocations"] = {"*": int(time.time()) - 50}
        self.trust = self.make_trust()
        self.assertEqual(self.auth(self.connect(old, u))[1], "User authentication revoked")
        fresh_u, fresh = self.user()
        self.assertEqual(self.auth(self.connect(fresh, fresh_u))[1], "")

    def test_signing_key_with_issuer_account(self):
        u, token = self.user(signer=self.a_sk, nats={"issuer_account": self.a.pub,
                                                     "pub": {"allow": ["only.this"]}})
        got, reason = self.auth(self.connect(token, u))
        self.assertEqual(reason, "")
        self.assertEqual(got.account_name, self.a.pub)
        self.assertTrue(got.permissions.can_publish("only.this"))
        self.assertFalse(got.permissions.can_publish("other"))

    def test_scoped_signing_key_applies_its_template(self):
        # a scoped user carries no permissions or limits at all, not even -1s
        u2 = key("U")
        token = encode("user", u2.pub, self.a_scope, {"issuer_account": self.a.pub}, name="bob")
        got, reason = self.auth(self.connect(token, u2))
        self.assertEqual(reason, "")
        p = got.permissions
        self.assertTrue(p.can_publish("in.bob.x"))
        self.assertTrue(p.can_publish("acct.acc-" + self.a.pub[:4]))
        self.assertFalse(p.can_publish("in.alice.x"))
        self.assertTrue(p.can_subscribe("out." + u2.pub, None))
        self.assertFalse(p.can_subscribe("out.someone", None))

    def test_bearer_tokens(self):
        u, token = self.user(nats={"bearer_token": True})
        got, reason = self.auth({"jwt": token})         # no sig needed
        self.assertEqual(reason, "")
        self.assertEqual(got.account_name, self.a.pub)
        bu, btoken = self.user(signer=self.b, nats={"bearer_token": True})
        self.assertEqual(self.auth({"jwt": btoken})[1], "Account does not allow bearer tokens")
        # B's users with a signature are fine (B is signed by the operator's signing key)
        ok_u, ok_token = self.user(signer=self.b)
        self.assertEqual(self.auth(self.connect(ok_token, ok_u))[1], "")

    def test_src_times_and_connection_types(self):
        u, token = self.user(nats={"src": ["10.0.0.0/8"]})
        self.assertEqual(self.auth(self.connect(token, u))[1], "Bad src Ip 127.0.0.1")
        self.assertEqual(self.auth(self.connect(token, u), host="10.9.9.9")[1], "")
        u, token = self.user(nats={"allowed_connection_types": ["WEBSOCKET"]})
        self.assertEqual(self.auth(self.connect(token, u))[1], "Connection type not allowed")
        self.assertEqual(self.auth(self.connect(token, u), kind="WEBSOCKET")[1], "")
        u, token = self.user(nats={"allowed_connection_types": ["CARRIER_PIGEON"]})
        self.assertIn("invalid connection types", self.auth(self.connect(token, u))[1])
        hour = time.gmtime().tm_hour
        away = "%02d:00:00" % ((hour + 2) % 24), "%02d:00:00" % ((hour + 3) % 24)
        u, token = self.user(nats={"times": [{"start": away[0], "end": away[1]}],
                                   "times_location": "UTC"})
        self.assertEqual(self.auth(self.connect(token, u))[1], "Outside connect times")

    def test_expiry_is_reported_for_the_timer(self):
        u, token = self.user(exp=int(time.time()) + 30)
        got, _ = self.auth(self.connect(token, u))
        self.assertTrue(25 <= got.expires_in <= 30, got.expires_in)

    def test_untrusted_or_mislabelled_accounts_are_config_errors(self):
        rogue_op = key("O")
        c = key("A")
        with self.assertRaisesRegex(TrustError, 'account "%s" is not signed by a trusted operator'
                                    % c.pub):
            self.make_trust(**{c.pub: encode("account", c.pub, rogue_op)})
        with self.assertRaisesRegex(TrustError, 'account JWT for "%s" is for account "%s"'
                                    % (c.pub, self.a.pub)):
            self.make_trust(**{c.pub: encode("account", self.a.pub, self.op)})
        with self.assertRaisesRegex(TrustError, 'invalid account JWT for "%s"' % c.pub):
            self.make_trust(**{c.pub: "garbage"})
        # an expired account loads (a warning, as nats-server) but admits nobody
        trust = self.make_trust(**{c.pub: encode("account", c.pub, self.op,
                                                 exp=int(time.time()) - 10)})
        self.assertEqual(trust.warnings, [(c.pub, "claim is expired")])
        u = key("U")
        token = encode("user", u.pub, c, USER_LIMITS)
        self.assertEqual(trust.authenticate(self.connect(token, u), self.NONCE)[1],
                         "Account JWT has expired")

    def test_system_account_rules(self):
        sys_acc = key("A")
        op_jwt = encode("operator", self.op.pub, self.op, {"system_account": sys_acc.pub})
        self.assertEqual(OperatorTrust([op_jwt]).system_account, sys_acc.pub)
        self.assertEqual(OperatorTrust([op_jwt], {}, sys_acc.pub).system_account, sys_acc.pub)
        with self.assertRaisesRegex(TrustError, "must be identical"):
            OperatorTrust([op_jwt], {}, key("A").pub)

    def test_mappings_claim(self):
        self.accounts[self.a.pub]["mappings"] = {
            "a.*": [{"subject": "b.$1", "weight": 0}],
            "c": [{"subject": "d", "weight": 60}, {"subject": "e", "weight": 60}],
            "f": "not a list"}
        trust = self.make_trust()
        ms = trust.mappings[self.a.pub]
        self.assertEqual(ms.map("a.x"), "b.x")
        self.assertEqual([k for k, _ in trust.warnings],
                         [self.a.pub, self.a.pub])
        self.assertIn("total weight needs to be <= 100", trust.warnings[0][1])
        self.assertIsNone(trust.mappings[self.b.pub])

    def test_response_permission_turns_publish_off(self):
        u, token = self.user(nats={"resp": {"max": 0, "ttl": 0}})
        spec = permission_spec(J.decode_user(token).limits)
        self.assertEqual(spec.publish.allow, ())
        self.assertEqual((spec.response.max_msgs, spec.response.expires), (1, 120.0))


@needs(nkeys is not None, "the nkeys package is not installed")
class AccountSideTest(unittest.TestCase):
    """Exports, imports and activation tokens turned into what an account
    of the registry takes (nats-server's accounts config shape)."""

    def setUp(self):
        self.op = key("O")
        self.op_jwt = encode("operator", self.op.pub, self.op)
        self.exp, self.imp, self.other = key("A"), key("A"), key("A")
        self.exp_sk = key("A")

    def activation(self, subject, kind, importer=None, signer=None, **top):
        signer = signer or self.exp
        nats = {"subject": subject, "kind": kind}
        if signer is self.exp_sk:
            nats["issuer_account"] = self.exp.pub
        return encode("activation", (importer or self.imp).pub, signer, nats, **top)

    def trust(self, exporter_nats, importer_nats, other_nats=None):
        preload = {self.exp.pub: encode("account", self.exp.pub, self.op, exporter_nats),
                   self.imp.pub: encode("account", self.imp.pub, self.op, importer_nats),
                   self.other.pub: encode("account", self.other.pub, self.op, other_nats or {})}
        return OperatorTrust([self.op_jwt], preload)

    def test_public_exports_and_imports(self):
        trust = self.trust(
            {"exports": [{"subject": "feed.>", "type": "stream"},
                         {"subject": "svc.time", "type": "service", "response_type": "Stream"}],
             "limits": dict(UNLIMITED, conn=5, subs=-1, payload=1024)},
            {"imports": [{"subject": "feed.>", "account": self.exp.pub, "type": "stream",
                          "local_subject": "mine.>"},
                         {"subject": "svc.time", "account": self.exp.pub, "type": "service",
                          "local_subject": "time"},
                         {"subject": "nope", "account": self.exp.pub, "type": "stream"},
                         {"subject": "x", "account": key("A").pub, "type": "stream"}]})
        cfg, problems = account_config(self.exp.pub, trust)
        self.assertEqual(cfg["exports"], [{"stream": "feed.>"},
                                          {"service": "svc.time", "response_type": "stream"}])
        # -1 is unlimited: only the limits set appear
        self.assertEqual(cfg["limits"], {"max_connections": 5, "max_payload": 1024})
        cfg, problems = account_config(self.imp.pub, trust)
        self.assertEqual(cfg["imports"], [
            {"stream": {"account": self.exp.pub, "subject": "feed.>"}, "to": "mine.>"},
            {"service": {"account": self.exp.pub, "subject": "svc.time"}, "to": "time"}])
        self.assertEqual(len(problems), 2)
        self.assertIn("no such export", problems[0])
        self.assertIn("Can't locate account", problems[1])

    def test_private_exports_need_valid_activation_tokens(self):
        now = int(time.time())
        good = self.activation("private.>", "stream")
        via_sk = self.activation("private.a", "stream", signer=self.exp_sk)
        for_other = self.activation("private.>", "stream", importer=self.other)
        expired = self.activation("private.>", "stream", exp=now - 5)
        trust = self.trust(
            {"exports": [{"subject": "private.>", "type": "stream", "token_req": True}],
             "signing_keys": [self.exp_sk.pub]},
            {"imports": [{"subject": "private.>", "account": self.exp.pub, "type": "stream",
                          "token": good},
                         {"subject": "private.a", "account": self.exp.pub, "type": "stream",
                          "token": via_sk},
                         {"subject": "private.>", "account": self.exp.pub, "type": "stream",
                          "token": for_other},
                         {"subject": "private.>", "account": self.exp.pub, "type": "stream",
                          "token": expired},
                         {"subject": "private.>", "account": self.exp.pub, "type": "stream"}]},
            {"imports": [{"subject": "private.>", "account": self.exp.pub, "type": "stream",
                          "token": for_other}]})
        exporter = trust.accounts[self.exp.pub]
        imports = trust.accounts[self.imp.pub].imports
        self.assertEqual(check_activation(imports[0], self.imp.pub, exporter), "")
        self.assertEqual(check_activation(imports[1], self.imp.pub, exporter), "")
        self.assertIn("doesn't match account it is being included in",
                      check_activation(imports[2], self.imp.pub, exporter))
        self.assertEqual(check_activation(imports[3], self.imp.pub, exporter), "claim is expired")
        wrong_kind = J.decode_account(encode("account", self.imp.pub, self.op, {"imports": [
            {"subject": "private.>", "account": self.exp.pub, "type": "service",
             "token": good}]})).imports[0]
        self.assertIn("mismatch between token import type",
                      check_activation(wrong_kind, self.imp.pub, exporter))
        wider = J.decode_account(encode("account", self.imp.pub, self.op, {"imports": [
            {"subject": "private.>", "account": self.exp.pub, "type": "stream",
             "token": via_sk}]})).imports[0]
        self.assertIn("doesn't match import", check_activation(wider, self.imp.pub, exporter))
        cfg, problems = account_config(self.imp.pub, trust)
        self.assertEqual(len(cfg["imports"]), 2)
        self.assertEqual(len(problems), 3)
        self.assertIn("no activation token", problems[2])
        cfg, _ = account_config(self.exp.pub, trust)
        self.assertEqual(cfg["exports"], [{"stream": "private.>",
                                           "accounts": sorted([self.imp.pub, self.other.pub])}])

    def test_revoked_activation(self):
        token = self.activation("private.>", "stream")
        trust = self.trust(
            {"exports": [{"subject": "private.>", "type": "stream", "token_req": True,
                          "revocations": {self.imp.pub: int(time.time()) + 10}}]},
            {"imports": [{"subject": "private.>", "account": self.exp.pub, "type": "stream",
                          "token": token}]})
        imp = trust.accounts[self.imp.pub].imports[0]
        self.assertEqual(check_activation(imp, self.imp.pub, trust.accounts[self.exp.pub]),
                         "activation token revoked")


@needs(nkeys is not None, "the nkeys package is not installed")
class OperatorConfigTest(unittest.TestCase):
    def setUp(self):
        self.op = key("O")
        self.op_jwt = encode("operator", self.op.pub, self.op)
        self.a = key("A")
        self.a_jwt = encode("account", self.a.pub, self.op, {"limits": UNLIMITED})

    def load(self, text):
        return apply_config(Options(), parse(text, "test.conf"), "test.conf")

    def test_operator_inline_or_file_and_preload(self):
        o = self.load('operator: %s\nresolver: MEMORY\nresolver_preload: { %s: "%s" }\n'
                      % (self.op_jwt, self.a.pub, self.a_jwt))
        self.assertEqual(o.operators, [self.op_jwt])
        self.assertEqual(o.resolver, "MEMORY")
        self.assertEqual(o.resolver_preload, {self.a.pub: self.a_jwt})
        with tempfile.NamedTemporaryFile("w", suffix=".jwt", delete=False) as f:
            f.write("-----BEGIN NATS OPERATOR JWT-----\n%s\n------END NATS OPERATOR JWT------\n"
                    % self.op_jwt)
        self.addCleanup(os.unlink, f.name)
        o = self.load('operators: ["%s"]\nresolver: MEM\n' % f.name)
        self.assertEqual(o.operators, [f.name])

    def test_config_errors_have_positions(self):
        cases = [
            ("operator: %s\n" % self.op_jwt,
             "test.conf:1:1: operators require an account resolver to be configured"),
            ("operator: %s\nresolver: MEMORY\nauthorization { users: [{user: a, password: b}] }\n"
             % self.op_jwt, "operators do not allow users to be configured directly"),
            ("operator: /no/such/file.jwt\nresolver: MEMORY\n",
             "test.conf:1:11: error parsing operator JWT: No such file or directory"),
            ("operator: eyJhbGci.broken.x\nresolver: MEMORY\n", "error parsing operator JWT"),
            ('operator: %s\nresolver: URL("http://x")\n' % self.op_jwt,
             "test.conf:2:11: error parsing account resolver"),
            ('operator: %s\nresolver: MEMORY\nresolver_preload: {\n  %s: "junk"\n}\n'
             % (self.op_jwt, self.a.pub), 'test.conf:4:  invalid account JWT for "%s"' % self.a.pub),
            ('resolver: MEMORY\nresolver_preload: { %s: "%s" }\n' % (self.a.pub, self.a_jwt),
             "resolver_preload needs an operator"),
            ('operator: %s\nresolver: MEMORY\nresolver_preload: { %s: "%s" }\n'
             % (self.op_jwt, self.a.pub, encode("account", self.a.pub, key("O"))),
             'account "%s" is not signed by a trusted operator' % self.a.pub),
        ]
        for text, msg in cases:
            with self.assertRaises(ConfigError, msg=msg) as cm:
                self.load(text)
            got = str(cm.exception)
            if ":  " in msg:        # a position without its column
                head, tail = msg.split(":  ", 1)
                self.assertTrue(got.startswith(head + ":"), got)
                self.assertIn(tail, got)
            else:
                self.assertIn(msg, got)


if __name__ == "__main__":
    unittest.main()
