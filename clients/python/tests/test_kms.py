"""The kms package against a real kmsd, run by tests/kms/e2e/test_python_kms
(which starts kmsd and makes the keys). Environment:

  KMS_ENDPOINT          kmsd's ipc:// URL
  KMS_LIBKMSCLIENT      the build's libkmsclient.so.0
  KMS_TEST_KEY          a key the caller may use
  KMS_TEST_DENIED_KEY   a key whose policy allows the caller nothing
  KMS_TEST_SIZES        "name=size ..." of the C structs, from the compiler
"""
import ctypes
import io
import os
import tempfile
import unittest

import kms
from kms import _lib

KEY = os.environ["KMS_TEST_KEY"]
DENIED = os.environ["KMS_TEST_DENIED_KEY"]
MISSING = "k-00000000000000000000000000000000"
CTX = {"purpose": "python-test", "tenant": "t1"}


class Layout(unittest.TestCase):
    def test_struct_sizes_match_the_compiler(self):
        sizes = dict(p.split("=") for p in os.environ["KMS_TEST_SIZES"].split())
        self.assertEqual(set(sizes), set(_lib.STRUCTS))
        for name, cls in _lib.STRUCTS.items():
            self.assertEqual(ctypes.sizeof(cls), int(sizes[name]), name)


class WithClient(unittest.TestCase):
    def setUp(self):
        self.c = kms.Client(timeout_ms=20000)  # endpoint from KMS_ENDPOINT

    def tearDown(self):
        self.c.close()


class DataPlane(WithClient):
    def test_round_trip_with_context(self):
        blob = self.c.encrypt(KEY, b"card 4111", context=CTX)
        self.assertIsInstance(blob, bytes)
        self.assertEqual(blob.key_id, KEY)
        self.assertEqual(blob.key_version, 1)
        self.assertNotIn(b"card 4111", blob)
        self.assertEqual(self.c.decrypt(blob, context=dict(reversed(list(CTX.items())))),
                         b"card 4111")
        # Any bytes-like object in; a wipeable bytearray out on request.
        blob2 = self.c.encrypt(KEY, bytearray(b"abc"), context=CTX)
        out = self.c.decrypt(memoryview(bytes(blob2)), context=CTX, key_id=KEY, mutable=True)
        self.assertEqual(out, bytearray(b"abc"))
        kms.wipe(out)
        self.assertEqual(out, bytearray(3))

    def test_wrong_context_is_invalid_ciphertext(self):
        blob = self.c.encrypt(KEY, b"secret", context=CTX)
        with self.assertRaises(kms.InvalidCiphertext) as cm:
            self.c.decrypt(blob, context={"purpose": "other"})
        e = cm.exception
        self.assertEqual(e.status, 5)
        self.assertEqual(e.status_name, "INVALID_CIPHERTEXT")
        self.assertEqual(e.origin, "server")
        self.assertNotIn("\n", e.message)
        self.assertNotIn("secret", str(e))
        with self.assertRaises(kms.InvalidCiphertext):
            self.c.decrypt(blob)
        tampered = bytearray(blob)
        tampered[-1] ^= 1
        with self.assertRaises(kms.InvalidCiphertext):
            self.c.decrypt(tampered, context=CTX)

    def test_key_not_granted_is_access_denied(self):
        with self.assertRaises(kms.AccessDenied) as cm:
            self.c.encrypt(DENIED, b"x", context=CTX)
        self.assertIsInstance(cm.exception, kms.KmsError)
        self.assertEqual(cm.exception.status_name, "ACCESS_DENIED")
        self.assertTrue(cm.exception.message)
        with self.assertRaises(kms.AccessDenied):
            self.c.generate_data_key(DENIED)

    def test_unknown_key_is_not_found(self):
        with self.assertRaises(kms.NotFound) as cm:
            self.c.encrypt(MISSING, b"x")
        self.assertEqual(cm.exception.status, 2)
        with self.assertRaises(kms.NotFound):
            self.c.encrypt("alias/python-none-such", b"x")

    def test_local_refusals(self):
        with self.assertRaises(kms.InvalidArgument) as cm:
            self.c.encrypt(KEY, b"x" * 4097)
        self.assertEqual(cm.exception.origin, "local")
        with self.assertRaises(kms.InvalidArgument):
            self.c.encrypt(KEY, b"x", context={"a\0b": "c"})
        with self.assertRaises(TypeError):
            self.c.encrypt(KEY, "a str")
        with self.assertRaises(TypeError):
            self.c.encrypt(KEY, b"x", context={"a": 1})
        # Not wrapped into range by ctypes: 2**64 + 5 is not 5.
        for n in (-1, 2**64 + 5):
            with self.assertRaises(kms.InvalidArgument) as cm:
                self.c.generate_random(n)
            self.assertEqual(cm.exception.origin, "local")
            self.assertIn(str(n), cm.exception.message)
        # Nor the options: a timeout of 2**32 + 100 ms is not 100 ms.
        for kw in ({"timeout_ms": 2**32 + 100}, {"timeout_ms": -1}, {"resend_ms": 2**31},
                   {"server_uid": 2**32}):
            with self.assertRaises(kms.InvalidArgument) as cm:
                kms.Client(**kw)
            self.assertIn(next(iter(kw)), cm.exception.message)
        with self.assertRaises(kms.InvalidArgument):
            self.c.envelope_encrypt(KEY, b"x", segment_size=2**32 + 4096)

    def test_generate_data_key(self):
        with self.c.generate_data_key(KEY, context=CTX) as dk:
            self.assertIsInstance(dk.plaintext, bytearray)
            self.assertEqual(len(dk.plaintext), 32)
            self.assertEqual(dk.key_id, KEY)
            self.assertNotIn("plaintext=bytearray", repr(dk))
            # The blob opens to the same key under the same context.
            self.assertEqual(self.c.decrypt(dk.blob, context=CTX), bytes(dk.plaintext))
            key = dk.plaintext
        self.assertEqual(key, bytearray(32))  # wiped on leaving the block
        bare = self.c.generate_data_key_without_plaintext(KEY, context=CTX)
        self.assertIsNone(bare.plaintext)
        self.assertEqual(len(self.c.decrypt(bare.blob, context=CTX)), 32)

    def test_re_encrypt_random_health(self):
        blob = self.c.encrypt(KEY, b"move me", context=CTX)
        moved = self.c.re_encrypt(blob, CTX, KEY, {"purpose": "moved"})
        self.assertEqual(self.c.decrypt(moved, context={"purpose": "moved"}), b"move me")
        self.assertEqual(len(self.c.generate_random(64)), 64)
        h = self.c.health()
        self.assertTrue(h.hsm_ok)
        self.assertEqual(h.region, "in-mum")


class Envelope(WithClient):
    def test_buffer_round_trip_and_context(self):
        data = os.urandom(200000)
        msg = self.c.envelope_encrypt(KEY, data, context=CTX, segment_size=4096)
        self.assertEqual(self.c.envelope_decrypt(msg, context=CTX), data)
        with self.assertRaises(kms.InvalidArgument):
            self.c.envelope_decrypt(msg, context={"purpose": "other"})
        cut = msg[:-1]
        with self.assertRaises(kms.InvalidCiphertext):
            self.c.envelope_decrypt(cut, context=CTX)
        self.assertEqual(self.c.envelope_decrypt(self.c.envelope_encrypt(KEY, b""), {}), b"")

    def test_streams(self):
        data = os.urandom(300001)
        sealed = io.BytesIO()
        info = self.c.envelope_encrypt_stream(KEY, io.BytesIO(data), sealed, context=CTX,
                                              segment_size=4096, chunk_size=7000)
        self.assertEqual((info.key_id, info.key_version), (KEY, 1))
        opened = io.BytesIO()
        info = self.c.envelope_decrypt_stream(io.BytesIO(sealed.getvalue()), opened,
                                              context=CTX, chunk_size=5000)
        self.assertEqual(opened.getvalue(), data)
        self.assertEqual(info.key_id, KEY)
        # A segment tampered: fails, saying how much was already written.
        bad = bytearray(sealed.getvalue())
        bad[len(bad) // 2] ^= 1
        out = io.BytesIO()
        with self.assertRaises(kms.InvalidCiphertext) as cm:
            self.c.envelope_decrypt_stream(io.BytesIO(bad), out, context=CTX)
        self.assertEqual(cm.exception.released, len(out.getvalue()))
        self.assertLess(cm.exception.released, len(data))

    def test_failing_write_raises_its_own_exception(self):
        class Full(io.RawIOBase):
            def writable(self):
                return True

            def write(self, b):
                raise OSError(28, "No space left on device")

        with self.assertRaises(OSError) as cm:
            self.c.envelope_encrypt_stream(KEY, io.BytesIO(b"abc"), Full(), context=CTX)
        self.assertEqual(cm.exception.errno, 28)

    def test_files(self):
        with tempfile.TemporaryDirectory() as d:
            plain, sealed, back = (os.path.join(d, n) for n in ("plain", "sealed", "back"))
            data = os.urandom(100000)
            with open(plain, "wb") as f:
                f.write(data)
            self.c.envelope_encrypt_file(KEY, plain, sealed, context=CTX)
            self.c.envelope_decrypt_file(sealed, back, context=CTX)
            with open(back, "rb") as f:
                self.assertEqual(f.read(), data)
            with open(sealed, "r+b") as f:
                f.seek(-1, os.SEEK_END)
                last = f.read(1)[0]
                f.seek(-1, os.SEEK_END)
                f.write(bytes([last ^ 0x01]))  # the sealed file's own last byte, changed
            os.unlink(back)
            with self.assertRaises(kms.InvalidCiphertext):
                self.c.envelope_decrypt_file(sealed, back, context=CTX)
            self.assertEqual(sorted(os.listdir(d)), ["plain", "sealed"])


class Lifetime(unittest.TestCase):
    def test_context_manager_closes(self):
        with kms.Client() as c:
            self.assertFalse(c.closed)
            self.assertEqual(c.decrypt(c.encrypt(KEY, b"x")), b"x")
        self.assertTrue(c.closed)
        with self.assertRaises(ValueError):
            c.encrypt(KEY, b"x")
        c.close()  # twice is fine

    def test_closes_on_exception(self):
        with self.assertRaises(kms.NotFound):
            with kms.Client() as c:
                c.encrypt(MISSING, b"x")
        self.assertTrue(c.closed)

    def test_unreachable_endpoint_is_unavailable(self):
        with tempfile.TemporaryDirectory() as d:
            with kms.Client(endpoint="ipc://" + os.path.join(d, "none.sock"),
                            timeout_ms=2000) as c:
                with self.assertRaises(kms.Unavailable) as cm:
                    c.encrypt(KEY, b"x")
        self.assertEqual(cm.exception.origin, "transport")

    def test_bad_credentials_file_fails_the_open(self):
        with self.assertRaises(kms.InvalidArgument) as cm:
            kms.Client(credentials="/nonexistent/kms-credentials")
        self.assertIn("/nonexistent/kms-credentials", cm.exception.message)


if __name__ == "__main__":
    unittest.main()
