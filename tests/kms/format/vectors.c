#include "tests/kms/format/vectors.h"

#include <limits.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/error.h"
#include "kms/format/keyid.h"

#define PAIR(k, v) { (k), sizeof(k) - 1, (v), sizeof(v) - 1 }

const uint8_t fmt_test_kek[FMT_KEK_LEN] = {
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
	0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
	0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
	0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
};

static const uint8_t hello[] = "Hello, India!";
static const uint8_t data_key[32] = {
	0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
	0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f,
	0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
	0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f,
};
static const uint8_t one_byte[] = { 'x' };

const fmt_vector fmt_vectors[FMT_VECTOR_COUNT] = {
	{
		.title = "Encrypt with a two-pair context",
		.key_id = "k-6b6d732d746573742d7665632d303031",
		.key_version = 1,
		.region = "ap-south-1",
		.iv = { 0xca, 0xfe, 0xba, 0xbe, 0xfa, 0xce, 0xdb, 0xad,
		        0xde, 0xca, 0xf8, 0x88 },
		.context = { PAIR("purpose", "payments"), PAIR("department", "finance") },
		.n_context = 2,
		.context_shown = "{\"purpose\": \"payments\", \"department\": \"finance\"}",
		.context_note = "given in this order; canonical order puts `department` first",
		.plaintext = hello,
		.plaintext_len = sizeof hello - 1,
		.plaintext_shown = "\"Hello, India!\" (13 bytes, ASCII)",
	},
	{
		.title = "A data key, empty context, key version 3",
		.key_id = "k-6b6d732d746573742d7665632d303032",
		.key_version = 3,
		.region = "ap-south-2",
		.iv = { 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
		        0x08, 0x09, 0x0a, 0x0b },
		.n_context = 0,
		.context_shown = "{}",
		.context_note = "empty: the canonical encoding is the two bytes 00 00",
		.plaintext = data_key,
		.plaintext_len = sizeof data_key,
		.plaintext_shown = "32 bytes 80 81 82 .. 9f (an AES-256 data key)",
	},
	{
		.title = "Context ordering: common prefixes, an empty value, non-ASCII; "
		         "a large key version",
		.key_id = "k-6b6d732d746573742d7665632d303033",
		.key_version = 16777216,
		.region = "ap-south-1",
		.iv = { 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88,
		        0x77, 0x66, 0x55, 0x44 },
		.context = { PAIR("tenant-id", "42"),
		             PAIR("tenant", "\xe0\xa4\xad\xe0\xa4\xbe\xe0\xa4\xb0\xe0\xa4\xa4"),
		             PAIR("a", "") },
		.n_context = 3,
		.context_shown = "{\"tenant-id\": \"42\", \"tenant\": \"\xe0\xa4\xad\xe0\xa4\xbe"
		                 "\xe0\xa4\xb0\xe0\xa4\xa4\", \"a\": \"\"}",
		.context_note = "the value of `tenant` is U+092D U+093E U+0930 U+0924, 12 bytes of "
		                "UTF-8; `tenant` sorts before `tenant-id` (common prefix, shorter "
		                "first)",
		.plaintext = one_byte,
		.plaintext_len = sizeof one_byte,
		.plaintext_shown = "\"x\" (1 byte, the smallest plaintext)",
	},
};

bool fmt_gcm_seal(const uint8_t key[FMT_KEK_LEN], const uint8_t iv[KMS_BLOB_IV_LEN],
                  const uint8_t *aad, size_t aad_len, const uint8_t *plaintext,
                  size_t plaintext_len, uint8_t *out)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, done = 0;
	bool ok = ctx != NULL && aad_len <= INT_MAX && plaintext_len <= INT_MAX &&
	          EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
	          EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, KMS_BLOB_IV_LEN, NULL) == 1 &&
	          EVP_EncryptInit_ex(ctx, NULL, NULL, key, iv) == 1 &&
	          EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aad_len) == 1 &&
	          EVP_EncryptUpdate(ctx, out, &n, plaintext, (int)plaintext_len) == 1 &&
	          EVP_EncryptFinal_ex(ctx, out + n, &done) == 1 &&
	          (size_t)(n + done) == plaintext_len &&
	          EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, KMS_BLOB_TAG_LEN,
	                              out + plaintext_len) == 1;
	EVP_CIPHER_CTX_free(ctx);
	return ok;
}

bool fmt_gcm_open(const uint8_t key[FMT_KEK_LEN], const uint8_t iv[KMS_BLOB_IV_LEN],
                  const uint8_t *aad, size_t aad_len, const uint8_t *sealed, size_t sealed_len,
                  uint8_t *out)
{
	if (sealed_len < KMS_BLOB_TAG_LEN || sealed_len > INT_MAX || aad_len > INT_MAX)
		return false;
	size_t ct_len = sealed_len - KMS_BLOB_TAG_LEN;
	uint8_t tag[KMS_BLOB_TAG_LEN];
	memcpy(tag, sealed + ct_len, sizeof tag); /* EVP wants a writable tag */
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, done = 0;
	bool ok = ctx != NULL &&
	          EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
	          EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, KMS_BLOB_IV_LEN, NULL) == 1 &&
	          EVP_DecryptInit_ex(ctx, NULL, NULL, key, iv) == 1 &&
	          EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aad_len) == 1 &&
	          EVP_DecryptUpdate(ctx, out, &n, sealed, (int)ct_len) == 1 &&
	          EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, KMS_BLOB_TAG_LEN, tag) == 1 &&
	          EVP_DecryptFinal_ex(ctx, out + n, &done) == 1 &&
	          (size_t)(n + done) == ct_len;
	EVP_CIPHER_CTX_free(ctx);
	if (!ok && ct_len)
		memset(out, 0, ct_len); /* nothing unverified is released */
	return ok;
}

kms_status fmt_vector_seal(const fmt_vector *v, fmt_sealed *out)
{
	memset(out, 0, sizeof *out);
	KMS_GUARD(keyid_parse(v->key_id, strlen(v->key_id), out->key_id));
	KMS_GUARD(context_encode(v->context, v->n_context, out->context, sizeof out->context,
	                         &out->context_len));
	KMS_GUARD(blob_header_build(out->key_id, v->key_version, v->region, strlen(v->region), v->iv,
	                            v->plaintext_len, &out->header));
	KMS_GUARD(blob_aad_build(out->header.bytes, out->header.len, out->context, out->context_len,
	                         out->aad, sizeof out->aad, &out->aad_len));
	out->sealed_len = blob_sealed_len(&out->header);
	KMS_ENSURE(fmt_gcm_seal(fmt_test_kek, v->iv, out->aad, out->aad_len, v->plaintext,
	                        v->plaintext_len, out->sealed),
	           KMS_INTERNAL, "OpenSSL AES-256-GCM seal failed");
	KMS_GUARD(blob_assemble(&out->header, out->sealed, out->sealed_len, out->blob,
	                        sizeof out->blob, &out->blob_len));
	return KMS_OK;
}

void fmt_hex(const uint8_t *bytes, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 0x0f];
	}
	out[2 * len] = '\0';
}
