/*
 * fuzz_signature: the bytes a caller controls in Verify and what an
 * auditor feeds pseudonym_parse.
 *
 * Input: a mode byte, then
 *   0: a signature for ECDSA P-256, checked against RFC 6979's key and the
 *      SHA-256 of "sample" (kms/format/public_key.h). It may verify only as
 *      the one DER encoding of its (r, s): re-encoding gives the same
 *      bytes, at most 72 of them.
 *   1: a signature for Ed25519, checked against RFC 8032's first key and
 *      the empty message: it verifies only as that test's signature
 *      (Ed25519 as OpenSSL checks it has no second form).
 *   2: a raw public key of either type (the next byte picks it): the DER
 *      and PEM encoders agree, and what they write parses back to the same
 *      bytes or is refused.
 *   3: a pseudonym's text: whatever pseudonym_parse accepts is 46..55
 *      characters, starts "kp_", and names 8 lowercase hex digits and a
 *      version of at least 1.
 */
#include <stdbool.h>
#include <string.h>

#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/error.h"
#include "common/pseudonym.h"
#include "kms/format/public_key.h"
#include "tests/support/fuzz.h"

static const uint8_t p256_public[65] = {
	0x04, 0x60, 0xfe, 0xd4, 0xba, 0x25, 0x5a, 0x9d, 0x31, 0xc9, 0x61, 0xeb, 0x74, 0xc6, 0x35,
	0x6d, 0x68, 0xc0, 0x49, 0xb8, 0x92, 0x3b, 0x61, 0xfa, 0x6c, 0xe6, 0x69, 0x62, 0x2e, 0x60,
	0xf2, 0x9f, 0xb6, 0x79, 0x03, 0xfe, 0x10, 0x08, 0xb8, 0xbc, 0x99, 0xa4, 0x1a, 0xe9, 0xe9,
	0x56, 0x28, 0xbc, 0x64, 0xf2, 0xf1, 0xb2, 0x0c, 0x2d, 0x7e, 0x9f, 0x51, 0x77, 0xa3, 0xc2,
	0x94, 0xd4, 0x46, 0x22, 0x99,
};
static const uint8_t ed_public[32] = {
	0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
	0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
};
static const uint8_t ed_signature[64] = {
	0xe5, 0x56, 0x43, 0x00, 0xc3, 0x60, 0xac, 0x72, 0x90, 0x86, 0xe2, 0xcc, 0x80, 0x6e, 0x82, 0x8a,
	0x84, 0x87, 0x7f, 0x1e, 0xb8, 0xe5, 0xd9, 0x74, 0xd8, 0x73, 0xe0, 0x65, 0x22, 0x49, 0x01, 0x55,
	0x5f, 0xb8, 0x82, 0x15, 0x90, 0xa3, 0x3b, 0xac, 0xc6, 0x1e, 0x39, 0x70, 0x1c, 0xf9, 0xb4, 0x6b,
	0xd2, 0x5b, 0xf5, 0xf0, 0x59, 0x5b, 0xbe, 0x24, 0x65, 0x51, 0x41, 0x43, 0x8e, 0x7a, 0x10, 0x0b,
};

static void p256(const uint8_t *sig, size_t len)
{
	uint8_t digest[32];
	unsigned int n = 0;
	FUZZ_CHECK(EVP_Digest("sample", 6, digest, &n, EVP_sha256(), NULL) == 1);
	bool valid = true;
	FUZZ_CHECK(signature_verify(PUBLIC_KEY_P256, p256_public, sizeof p256_public, digest,
	                            sizeof digest, sig, len, &valid) == KMS_OK);
	kms_error_clear();
	if (!valid)
		return;
	FUZZ_CHECK(len <= ECDSA_P256_DER_MAX);
	const unsigned char *p = sig;
	ECDSA_SIG *parsed = d2i_ECDSA_SIG(NULL, &p, (long)len);
	FUZZ_CHECK(parsed && p == sig + len);
	unsigned char again[ECDSA_P256_DER_MAX + 8], *q = again;
	FUZZ_CHECK(i2d_ECDSA_SIG(parsed, &q) == (int)len && memcmp(again, sig, len) == 0);
	ECDSA_SIG_free(parsed);
}

static void ed25519(const uint8_t *sig, size_t len)
{
	bool valid = true;
	FUZZ_CHECK(signature_verify(PUBLIC_KEY_ED25519, ed_public, sizeof ed_public,
	                            (const uint8_t *)"", 0, sig, len, &valid) == KMS_OK);
	kms_error_clear();
	FUZZ_CHECK(valid == (len == sizeof ed_signature && !memcmp(sig, ed_signature, len)));
}

static void public_key(const uint8_t *data, size_t len)
{
	if (len < 1)
		return;
	public_key_type type = data[0] & 1 ? PUBLIC_KEY_ED25519 : PUBLIC_KEY_P256;
	uint8_t der[PUBLIC_KEY_DER_MAX];
	char pem[PUBLIC_KEY_PEM_MAX];
	size_t der_len = 0;
	kms_status d = public_key_der(type, data + 1, len - 1, der, sizeof der, &der_len);
	kms_status p = public_key_pem(type, data + 1, len - 1, pem, sizeof pem);
	kms_error_clear();
	FUZZ_CHECK(d == p);
	if (d != KMS_OK)
		return;
	FUZZ_CHECK(der_len == (type == PUBLIC_KEY_P256 ? 91u : 44u));
	FUZZ_CHECK(memcmp(der + der_len - (len - 1), data + 1, len - 1) == 0);
	const unsigned char *q = der;
	EVP_PKEY *k = d2i_PUBKEY(NULL, &q, (long)der_len);
	if (k) {
		/* What OpenSSL reads back is the key we wrote. */
		unsigned char *back = NULL;
		int n = i2d_PUBKEY(k, &back);
		FUZZ_CHECK(n == (int)der_len && memcmp(back, der, der_len) == 0);
		OPENSSL_free(back);
		EVP_PKEY_free(k);
	}
}

static void pseudonym(const uint8_t *data, size_t len)
{
	char text[KMS_PSEUDONYM_TEXT_SIZE + 8];
	if (len >= sizeof text)
		len = sizeof text - 1;
	memcpy(text, data, len);
	text[len] = '\0';
	char key_short[KMS_PSEUDONYM_KEY_SHORT_SIZE];
	uint32_t version = 0;
	if (pseudonym_parse(text, key_short, &version) != KMS_OK) {
		kms_error_clear();
		FUZZ_CHECK(key_short[0] == '\0' && version == 0);
		return;
	}
	size_t n = strlen(text);
	FUZZ_CHECK(n >= KMS_PSEUDONYM_TEXT_MIN && n <= KMS_PSEUDONYM_TEXT_MAX);
	FUZZ_CHECK(!strncmp(text, "kp_", 3) && version >= 1);
	FUZZ_CHECK(strlen(key_short) == 8 && !strncmp(key_short, text + 3, 8));
	for (size_t i = 0; i < 8; i++)
		FUZZ_CHECK((key_short[i] >= '0' && key_short[i] <= '9') ||
		           (key_short[i] >= 'a' && key_short[i] <= 'f'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 4) {
	case 0: p256(data + 1, size - 1); break;
	case 1: ed25519(data + 1, size - 1); break;
	case 2: public_key(data + 1, size - 1); break;
	default: pseudonym(data + 1, size - 1); break;
	}
	return 0;
}
