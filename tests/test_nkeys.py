"""gnats.nkeys: the nkey public-key encoding, the INFO nonce, and the pure-Python
Ed25519 verify, against RFC 8032's vectors and the `nkeys` package (a test
dependency: it signs; we verify)."""

import base64
import os
import statistics
import time
import unittest

from tests.util import needs
from gnats import nkeys

try:
    import nkeys as nkeys_pkg
except ImportError:  # pragma: no cover - the test extra installs it
    nkeys_pkg = None

needs_nkeys = needs(nkeys_pkg is not None, "pip install nkeys (the test extra)")

# RFC 8032 section 7.1: (public key, message, signature), hex.
RFC8032 = [
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    ("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
     "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"),
]
L = 2 ** 252 + 27742317777372353535851937790883648493


def b64url(sig: bytes) -> str:
    return base64.urlsafe_b64encode(sig).rstrip(b"=").decode()


def user_pair(seed=None):
    raw = seed if seed is not None else os.urandom(32)
    return nkeys_pkg.from_seed(nkeys_pkg.encode_seed(raw, nkeys_pkg.PREFIX_BYTE_USER))


class TestRFC8032(unittest.TestCase):
    def test_vectors_verify(self):
        for pk, msg, sig in RFC8032:
            pk, msg, sig = bytes.fromhex(pk), bytes.fromhex(msg), bytes.fromhex(sig)
            self.assertTrue(nkeys.verify(pk, msg, sig), msg)

    def test_any_change_fails(self):
        for pk, msg, sig in RFC8032:
            pk, msg, sig = bytes.fromhex(pk), bytes.fromhex(msg), bytes.fromhex(sig)
            self.assertFalse(nkeys.verify(pk, msg + b"x", sig))
            for i in (0, 31, 32, 63):           # R and S, both ends
                bad = bytearray(sig)
                bad[i] ^= 1
                self.assertFalse(nkeys.verify(pk, msg, bytes(bad)), i)
            bad_pk = bytearray(pk)
            bad_pk[0] ^= 1
            self.assertFalse(nkeys.verify(bytes(bad_pk), msg, sig))

    def test_non_canonical_s_refused(self):
        # S + L verifies the same equation; Go and RFC 8032 refuse it.
        pk, msg, sig = (bytes.fromhex(x) for x in RFC8032[1])
        s = int.from_bytes(sig[32:], "little") + L
        self.assertFalse(nkeys.verify(pk, msg, sig[:32] + s.to_bytes(32, "little")))

    def test_bad_lengths_and_points(self):
        pk, msg, sig = (bytes.fromhex(x) for x in RFC8032[0])
        self.assertFalse(nkeys.verify(pk[:31], msg, sig))
        self.assertFalse(nkeys.verify(pk, msg, sig[:63]))
        self.assertFalse(nkeys.verify(pk, msg, sig + b"\0"))
        self.assertFalse(nkeys.verify(b"\xff" * 32, msg, sig))   # y >= p: not a point
        # y = 2 has no x on the curve
        self.assertFalse(nkeys.verify((2).to_bytes(32, "little"), msg, sig))

    def test_speed(self):
        """One verify, median of 200 (printed; asserted only loosely, the
        machine is shared)."""
        pk, msg, sig = (bytes.fromhex(x) for x in RFC8032[3])
        times = []
        for _ in range(200):
            t = time.perf_counter()
            nkeys.verify(pk, msg, sig)
            times.append(time.perf_counter() - t)
        median = statistics.median(times)
        print("\n  ed25519 verify: median %.3f ms of 200" % (median * 1e3))
        self.assertLess(median, 0.05)


class TestEncoding(unittest.TestCase):
    RAW = bytes(range(32))

    def test_crc16_xmodem(self):
        self.assertEqual(nkeys.crc16(b"123456789"), 0x31C3)   # the XMODEM check value

    def test_round_trip_every_prefix(self):
        for prefix, letter in ((nkeys.PREFIX_USER, "U"), (nkeys.PREFIX_ACCOUNT, "A"),
                               (nkeys.PREFIX_OPERATOR, "O"), (nkeys.PREFIX_SERVER, "N"),
                               (nkeys.PREFIX_CLUSTER, "C")):
            text = nkeys.encode_public(self.RAW, prefix)
            self.assertEqual(text[0], letter)
            self.assertEqual(len(text), 56)
            self.assertEqual(nkeys.decode_public(text, prefix), self.RAW)

    @needs_nkeys
    def test_matches_nkeys_package(self):
        import nacl.signing     # the nkeys package's own dependency
        raw_pub = nacl.signing.SigningKey(self.RAW).verify_key.encode()
        kp = user_pair(self.RAW)      # RAW as the seed
        self.assertEqual(nkeys.encode_public(raw_pub), kp.public_key.decode())
        self.assertEqual(nkeys.decode_public(kp.public_key.decode()), raw_pub)
        acct = nkeys_pkg.from_seed(nkeys_pkg.encode_seed(self.RAW, nkeys_pkg.PREFIX_BYTE_ACCOUNT))
        self.assertEqual(nkeys.encode_public(raw_pub, nkeys.PREFIX_ACCOUNT),
                         acct.public_key.decode())

    def test_bad_keys(self):
        good = nkeys.encode_public(self.RAW)
        self.assertTrue(nkeys.is_valid_public_user_key(good))
        flipped = good[:10] + ("B" if good[10] != "B" else "C") + good[11:]
        account = nkeys.encode_public(self.RAW, nkeys.PREFIX_ACCOUNT)
        cases = {
            flipped: "checksum",
            account: "expected a user key",
            good[:-1]: "invalid encoded key",
            good + "A": "invalid encoded key",
            good.lower(): "invalid encoded key",
            good[:-1] + "1": "invalid encoded key",        # not base32
            "": "invalid encoded key",
            "U" * 55 + "\u00e9": "invalid encoded key",
        }
        for key, why in cases.items():
            with self.assertRaises(ValueError) as cm:
                nkeys.decode_public(key)
            self.assertIn(why, str(cm.exception), key)
            self.assertFalse(nkeys.is_valid_public_user_key(key))
        # a seed ('S...') is not a public key of any type
        seed_like = base64.b32encode(bytes([18 << 3]) + self.RAW[:32]
                                     + nkeys.crc16(bytes([18 << 3]) + self.RAW).to_bytes(2, "little"))
        with self.assertRaises(ValueError):
            nkeys.decode_public(seed_like.decode())
        for junk in (None, 42, b"UABC", ["U"]):
            self.assertFalse(nkeys.is_valid_public_user_key(junk))


class TestNonceAndConnect(unittest.TestCase):
    def test_nonce_shape(self):
        seen = set()
        for _ in range(50):
            n = nkeys.make_nonce()
            self.assertEqual(len(n), 15)        # nats-server nonceLen
            self.assertRegex(n, r"^[A-Za-z0-9_-]{15}$")
            self.assertEqual(len(base64.urlsafe_b64decode(n + "=")), 11)
            seen.add(n)
        self.assertEqual(len(seen), 50)

    @needs_nkeys
    def test_signatures_from_nkeys_package(self):
        for _ in range(20):
            kp = user_pair()
            pub = kp.public_key.decode()
            nonce = nkeys.make_nonce()
            raw_sig = kp.sign(nonce.encode())
            self.assertTrue(nkeys.verify_connect_sig(pub, nonce, b64url(raw_sig)))
            self.assertTrue(nkeys.verify_connect_sig(pub, nonce.encode(), b64url(raw_sig)))
            # standard padded base64 is nats-server's fallback
            self.assertTrue(nkeys.verify_connect_sig(
                pub, nonce, base64.b64encode(raw_sig).decode()))
            self.assertFalse(nkeys.verify_connect_sig(pub, nkeys.make_nonce(), b64url(raw_sig)))
            other = user_pair().public_key.decode()
            self.assertFalse(nkeys.verify_connect_sig(other, nonce, b64url(raw_sig)))

    @needs_nkeys
    def test_bad_connect_input_is_false(self):
        kp = user_pair(bytes(32))
        pub = kp.public_key.decode()
        nonce = "abcdefghijklmno"
        good = b64url(kp.sign(nonce.encode()))
        acct = nkeys.encode_public(nkeys.decode_public(pub), nkeys.PREFIX_ACCOUNT)
        bad_sigs = ["", "!!!!", good[:-2], good + "AAAA", good + "=", "a" * 86,
                    b64url(kp.sign(nonce.encode())[:63]), "x" * 10000, None, 12,
                    "\u00e9" * 86, good.replace("-", "+")[:-1] + "\0"]
        for sig in bad_sigs:
            self.assertFalse(nkeys.verify_connect_sig(pub, nonce, sig), repr(sig)[:40])
        for key in (acct, pub[:-1], pub.lower(), "", None, 7):
            self.assertFalse(nkeys.verify_connect_sig(key, nonce, good), repr(key))
        for n in (None, 5, ["x"]):
            self.assertFalse(nkeys.verify_connect_sig(pub, n, good))
        self.assertTrue(nkeys.verify_connect_sig(pub, nonce, good))

    def test_decode_sig(self):
        raw = bytes(range(64))
        self.assertEqual(nkeys.decode_sig(b64url(raw)), raw)
        self.assertEqual(nkeys.decode_sig(base64.b64encode(raw).decode()), raw)
        for bad in ("", "*" * 86, None, "a" * 101):
            with self.assertRaises(ValueError):
                nkeys.decode_sig(bad)


if __name__ == "__main__":
    unittest.main()
