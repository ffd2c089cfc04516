/*
 * format_public_key: public keys and signatures in their standard
 * encodings (kms/format/public_key.h, docs/signing.md), checked against
 * published vectors: RFC 8032's first Ed25519 test (section 7.1) and RFC
 * 6979's P-256 / SHA-256 signature of "sample" (appendix A.2.5), both
 * verified from the raw public key alone, plus the SubjectPublicKeyInfo
 * forms on docs/signing.md.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "kms/format/public_key.h"

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = strlen(hex) / 2;
	assert_true(n <= cap);
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	return n;
}

/* RFC 8032, 7.1, TEST 1: the empty message. */
static const char ed_public[] =
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
static const char ed_signature[] =
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
        "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
/* Its SubjectPublicKeyInfo as docs/signing.md shows it. */
static const char ed_pem[] = "-----BEGIN PUBLIC KEY-----\n"
                             "MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n"
                             "-----END PUBLIC KEY-----\n";

/* RFC 6979, A.2.5: the P-256 key and its SHA-256 signature of "sample". */
static const char p256_public[] =
        "04"
        "60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6"
        "7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299";
static const char p256_rs[] =
        "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716"
        "f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8";

static void ed25519_rfc8032(void **state)
{
	(void)state;
	uint8_t pub[32], sig[64];
	unhex(ed_public, pub, sizeof pub);
	unhex(ed_signature, sig, sizeof sig);
	bool valid = false;
	assert_int_equal(signature_verify(PUBLIC_KEY_ED25519, pub, sizeof pub, (const uint8_t *)"",
	                                  0, sig, sizeof sig, &valid), KMS_OK);
	assert_true(valid);
	sig[0] ^= 1;
	assert_int_equal(signature_verify(PUBLIC_KEY_ED25519, pub, sizeof pub, (const uint8_t *)"",
	                                  0, sig, sizeof sig, &valid), KMS_OK);
	assert_false(valid);
	assert_int_equal(signature_verify(PUBLIC_KEY_ED25519, pub, sizeof pub, (const uint8_t *)"",
	                                  0, sig, 63, &valid), KMS_OK);
	assert_false(valid);

	char pem[PUBLIC_KEY_PEM_MAX];
	assert_int_equal(public_key_pem(PUBLIC_KEY_ED25519, pub, sizeof pub, pem, sizeof pem),
	                 KMS_OK);
	assert_string_equal(pem, ed_pem);
	uint8_t der[PUBLIC_KEY_DER_MAX];
	size_t der_len;
	assert_int_equal(public_key_der(PUBLIC_KEY_ED25519, pub, sizeof pub, der, sizeof der,
	                                &der_len), KMS_OK);
	assert_int_equal(der_len, 44);
	/* OpenSSL reads it as that Ed25519 key. */
	const unsigned char *p = der;
	EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)der_len);
	assert_non_null(k);
	assert_int_equal(EVP_PKEY_get_id(k), EVP_PKEY_ED25519);
	uint8_t raw[32];
	size_t raw_len = sizeof raw;
	assert_int_equal(EVP_PKEY_get_raw_public_key(k, raw, &raw_len), 1);
	assert_memory_equal(raw, pub, 32);
	EVP_PKEY_free(k);
}

static void p256_rfc6979(void **state)
{
	(void)state;
	uint8_t pub[65], rs[64], der[ECDSA_P256_DER_MAX], digest[32];
	size_t der_len;
	unsigned int n;
	unhex(p256_public, pub, sizeof pub);
	unhex(p256_rs, rs, sizeof rs);
	assert_int_equal(EVP_Digest("sample", 6, digest, &n, EVP_sha256(), NULL), 1);
	assert_int_equal(ecdsa_p256_raw_to_der(rs, der, sizeof der, &der_len), KMS_OK);
	/* r and s both have the top bit set: each INTEGER takes a 0x00 pad. */
	assert_int_equal(der_len, 72);
	assert_int_equal(der[0], 0x30);
	bool valid = false;
	assert_int_equal(signature_verify(PUBLIC_KEY_P256, pub, sizeof pub, digest, sizeof digest,
	                                  der, der_len, &valid), KMS_OK);
	assert_true(valid);
	/* Another message, a changed byte, a longer (non-canonical) form, raw
	 * r || s instead of DER, nothing: each simply invalid. */
	digest[0] ^= 1;
	assert_int_equal(signature_verify(PUBLIC_KEY_P256, pub, sizeof pub, digest, sizeof digest,
	                                  der, der_len, &valid), KMS_OK);
	assert_false(valid);
	digest[0] ^= 1;
	uint8_t longer[ECDSA_P256_DER_MAX + 1];
	memcpy(longer, der, der_len);
	longer[der_len] = 0;
	assert_int_equal(signature_verify(PUBLIC_KEY_P256, pub, sizeof pub, digest, sizeof digest,
	                                  longer, der_len + 1, &valid), KMS_OK);
	assert_false(valid);
	assert_int_equal(signature_verify(PUBLIC_KEY_P256, pub, sizeof pub, digest, sizeof digest,
	                                  rs, sizeof rs, &valid), KMS_OK);
	assert_false(valid);
	assert_int_equal(signature_verify(PUBLIC_KEY_P256, pub, sizeof pub, digest, sizeof digest,
	                                  der, 0, &valid), KMS_OK);
	assert_false(valid);
	/* A point that is not on the curve is a stored key that does not
	 * parse: an error, not an answer. */
	pub[64] ^= 1;
	assert_int_equal(signature_verify(PUBLIC_KEY_P256, pub, sizeof pub, digest, sizeof digest,
	                                  der, der_len, &valid), KMS_INTERNAL);
	assert_false(valid);
	pub[64] ^= 1;

	uint8_t spki[PUBLIC_KEY_DER_MAX];
	size_t spki_len;
	assert_int_equal(public_key_der(PUBLIC_KEY_P256, pub, sizeof pub, spki, sizeof spki,
	                                &spki_len), KMS_OK);
	assert_int_equal(spki_len, 91);
	char pem[PUBLIC_KEY_PEM_MAX];
	assert_int_equal(public_key_pem(PUBLIC_KEY_P256, pub, sizeof pub, pem, sizeof pem), KMS_OK);
	BIO *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	assert_non_null(k);
	assert_true(EVP_PKEY_is_a(k, "EC"));
	EVP_PKEY_free(k);
	BIO_free(bio);
}

static void refusals(void **state)
{
	(void)state;
	uint8_t pub[65] = { 0x04 }, out[PUBLIC_KEY_DER_MAX];
	size_t len;
	char pem[PUBLIC_KEY_PEM_MAX];
	assert_int_equal(public_key_der(PUBLIC_KEY_P256, pub, 64, out, sizeof out, &len),
	                 KMS_INVALID_ARGUMENT);
	pub[0] = 0x02; /* compressed points are not kept */
	assert_int_equal(public_key_der(PUBLIC_KEY_P256, pub, 65, out, sizeof out, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(public_key_der(PUBLIC_KEY_ED25519, pub, 31, out, sizeof out, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(public_key_der(PUBLIC_KEY_ED25519, pub, 32, out, 43, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(public_key_der((public_key_type)7, pub, 32, out, sizeof out, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(public_key_pem(PUBLIC_KEY_ED25519, pub, 32, pem, 80), KMS_INVALID_ARGUMENT);
	bool valid = true;
	uint8_t digest[31] = { 0 };
	assert_int_equal(signature_verify(PUBLIC_KEY_P256, pub, 65, digest, sizeof digest, out, 8,
	                                  &valid), KMS_INVALID_ARGUMENT);
	assert_false(valid);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ed25519_rfc8032),
		cmocka_unit_test(p256_rfc6979),
		cmocka_unit_test(refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
