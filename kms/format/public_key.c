/*
 * public_key.c: SubjectPublicKeyInfo, DER signatures, verification
 * (public_key.h).
 */
#include "kms/format/public_key.h"

#include <string.h>

#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/base64.h"
#include "common/error.h"

/* The SubjectPublicKeyInfo up to the key's bits: SEQUENCE { SEQUENCE {
 * id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) }. */
static const uint8_t p256_spki_prefix[] = {
	0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
	0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
};
/* SEQUENCE { SEQUENCE { id-Ed25519 }, BIT STRING (0 unused bits) }. */
static const uint8_t ed25519_spki_prefix[] = {
	0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
};

static const char *type_name(public_key_type type)
{
	return type == PUBLIC_KEY_P256 ? "P-256" : type == PUBLIC_KEY_ED25519 ? "Ed25519" : "unknown";
}

kms_status public_key_der(public_key_type type, const uint8_t *raw, size_t len, uint8_t *out,
                          size_t cap, size_t *out_len)
{
	const uint8_t *prefix;
	size_t prefix_len, want;
	*out_len = 0;
	if (type == PUBLIC_KEY_P256) {
		prefix = p256_spki_prefix;
		prefix_len = sizeof p256_spki_prefix;
		want = 65;
		KMS_ENSURE(raw && len == want && raw[0] == 0x04, KMS_INVALID_ARGUMENT,
		           "a P-256 public key is a 65-byte uncompressed point");
	} else if (type == PUBLIC_KEY_ED25519) {
		prefix = ed25519_spki_prefix;
		prefix_len = sizeof ed25519_spki_prefix;
		want = 32;
		KMS_ENSURE(raw && len == want, KMS_INVALID_ARGUMENT,
		           "an Ed25519 public key is 32 bytes");
	} else {
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "public key type %d is not P-256 or Ed25519",
		                (int)type);
	}
	KMS_ENSURE(out && cap >= prefix_len + want, KMS_INVALID_ARGUMENT,
	           "no room for a public key's DER");
	memcpy(out, prefix, prefix_len);
	memcpy(out + prefix_len, raw, want);
	*out_len = prefix_len + want;
	return KMS_OK;
}

kms_status public_key_pem(public_key_type type, const uint8_t *raw, size_t len, char *out, size_t cap)
{
	static const char head[] = "-----BEGIN PUBLIC KEY-----\n";
	static const char foot[] = "-----END PUBLIC KEY-----\n";
	uint8_t der[PUBLIC_KEY_DER_MAX];
	char b64[128];
	size_t der_len;
	KMS_GUARD(public_key_der(type, raw, len, der, sizeof der, &der_len));
	KMS_ENSURE(kms_base64_encode(der, der_len, b64, sizeof b64), KMS_INTERNAL,
	           "cannot encode a public key");
	size_t b64_len = strlen(b64), at = 0;
	size_t need = sizeof head - 1 + b64_len + (b64_len + 63) / 64 + sizeof foot;
	KMS_ENSURE(out && cap >= need, KMS_INVALID_ARGUMENT, "no room for a public key's PEM");
	memcpy(out, head, sizeof head - 1);
	at = sizeof head - 1;
	for (size_t i = 0; i < b64_len; i += 64) {
		size_t n = b64_len - i < 64 ? b64_len - i : 64;
		memcpy(out + at, b64 + i, n);
		at += n;
		out[at++] = '\n';
	}
	memcpy(out + at, foot, sizeof foot); /* with its NUL */
	return KMS_OK;
}

kms_status ecdsa_p256_raw_to_der(const uint8_t raw[static 64], uint8_t *out, size_t cap,
                                 size_t *out_len)
{
	*out_len = 0;
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(raw, 32, NULL);
	BIGNUM *s = BN_bin2bn(raw + 32, 32, NULL);
	if (!sig || !r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
		ECDSA_SIG_free(sig);
		BN_free(r);
		BN_free(s);
		return KMS_FAIL(KMS_INTERNAL, "out of memory encoding a signature");
	}
	int n = i2d_ECDSA_SIG(sig, NULL);
	kms_status status = KMS_OK;
	if (n <= 0 || (size_t)n > cap || !out) {
		status = KMS_FAIL(KMS_INTERNAL, "cannot encode an ECDSA signature as DER");
	} else {
		unsigned char *p = out;
		*out_len = (size_t)i2d_ECDSA_SIG(sig, &p);
	}
	ECDSA_SIG_free(sig);
	return status;
}

static kms_status verify_key(public_key_type type, const uint8_t *raw, size_t len, EVP_PKEY **out)
{
	uint8_t der[PUBLIC_KEY_DER_MAX];
	size_t der_len;
	KMS_GUARD(public_key_der(type, raw, len, der, sizeof der, &der_len));
	const unsigned char *p = der;
	*out = d2i_PUBKEY(NULL, &p, (long)der_len);
	ERR_clear_error();
	KMS_ENSURE(*out && p == der + der_len, KMS_INTERNAL,
	           "a stored %s public key does not parse", type_name(type));
	return KMS_OK;
}

kms_status signature_verify(public_key_type type, const uint8_t *raw, size_t len, const uint8_t *input,
                            size_t input_len, const uint8_t *sig, size_t sig_len, bool *valid)
{
	EVP_PKEY *key = NULL;
	*valid = false;
	KMS_ENSURE(type != PUBLIC_KEY_P256 || input_len == 32, KMS_INVALID_ARGUMENT,
	           "ECDSA verifies a 32-byte SHA-256 digest");
	KMS_GUARD(verify_key(type, raw, len, &key));
	int rc = -1;
	if (type == PUBLIC_KEY_P256) {
		/* A signature is an answer only if it is the one DER encoding of
		 * its (r, s): a re-encoding must give the same bytes. */
		const unsigned char *p = sig;
		ECDSA_SIG *parsed = sig && sig_len ? d2i_ECDSA_SIG(NULL, &p, (long)sig_len) : NULL;
		uint8_t again[ECDSA_P256_DER_MAX + 8];
		unsigned char *q = again;
		bool canonical = parsed && p == sig + sig_len &&
		                 i2d_ECDSA_SIG(parsed, NULL) == (int)sig_len &&
		                 sig_len <= sizeof again && i2d_ECDSA_SIG(parsed, &q) == (int)sig_len &&
		                 memcmp(again, sig, sig_len) == 0;
		ECDSA_SIG_free(parsed);
		EVP_PKEY_CTX *ctx = canonical ? EVP_PKEY_CTX_new(key, NULL) : NULL;
		if (!canonical)
			rc = 0;
		else if (ctx && EVP_PKEY_verify_init(ctx) == 1 &&
		         EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1)
			/* 0 for a signature that does not verify (r or s out of
			 * range included); below 0 only for a fault. */
			rc = EVP_PKEY_verify(ctx, sig, sig_len, input, input_len) == 1 ? 1 : 0;
		EVP_PKEY_CTX_free(ctx);
	} else {
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		if (md && EVP_DigestVerifyInit(md, NULL, NULL, NULL, key) == 1)
			rc = sig_len == 64 &&
			     EVP_DigestVerify(md, sig, sig_len, input, input_len) == 1;
		EVP_MD_CTX_free(md);
	}
	EVP_PKEY_free(key);
	ERR_clear_error();
	/* A well-formed signature that does not verify is a no; the library
	 * failing on one is an error, not an answer (and never a yes). */
	*valid = rc == 1;
	KMS_ENSURE(rc >= 0, KMS_INTERNAL, "the %s verification failed in the library",
	           type_name(type));
	return KMS_OK;
}
