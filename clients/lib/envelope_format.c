/*
 * envelope_format.c: the envelope format's pure parts (envelope_format.h,
 * docs/envelope-format.md): the header's bytes, its MAC, the two derived
 * keys, and one STREAM segment sealed or opened with AES-256-GCM.
 */
#include "clients/lib/envelope_format.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "common/context.h"
#include "common/cursor.h"

#define ENV_INFO_HEADER "kms envelope v1 header"
#define ENV_INFO_PAYLOAD "kms envelope v1 payload"

static void put_u16be(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_u32be(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_u32be(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
	       (uint32_t)p[3];
}

static kms_status bad(const char **why, const char *text)
{
	*why = text;
	return KMS_INVALID_CIPHERTEXT;
}

kms_status env_header_length(const uint8_t *bytes, size_t len, size_t *total,
                             const char **why)
{
	*total = 0;
	*why = "";
	/* Judge the magic on the bytes there are, so a short file that is
	 * something else is told so, not "truncated". */
	size_t magic = len < KMS_ENVELOPE_MAGIC_LEN ? len : KMS_ENVELOPE_MAGIC_LEN;
	if (memcmp(bytes, ENV_MAGIC, magic) != 0)
		return bad(why, "not a kms envelope message (its first bytes are not the envelope magic)");
	if (len <= ENV_OFF_VERSION)
		return KMS_OK;
	/* A number above ours may be a newer writer's; below it, damage. */
	if (bytes[ENV_OFF_VERSION] > ENV_VERSION)
		return bad(why, "a newer envelope format version than this kms reads (upgrade kms)");
	if (bytes[ENV_OFF_VERSION] != ENV_VERSION)
		return bad(why, "envelope format version 0, which no kms writes (header damaged)");
	if (len <= ENV_OFF_SUITE)
		return KMS_OK;
	if (bytes[ENV_OFF_SUITE] > ENV_SUITE_AES256GCM_HKDF_SHA256)
		return bad(why, "a newer envelope cipher suite than this kms reads (upgrade kms)");
	if (bytes[ENV_OFF_SUITE] != ENV_SUITE_AES256GCM_HKDF_SHA256)
		return bad(why, "envelope cipher suite 0, which no kms writes (header damaged)");
	if (len < ENV_OFF_WRAPPED)
		return KMS_OK;
	uint32_t segment = get_u32be(bytes + ENV_OFF_SEGMENT);
	if (segment < KMS_ENVELOPE_SEGMENT_MIN || segment > KMS_ENVELOPE_SEGMENT_MAX)
		return bad(why, "the envelope header's segment size is out of range (header damaged)");
	size_t wrapped = ((size_t)bytes[ENV_OFF_WRAPPED_LEN] << 8) | bytes[ENV_OFF_WRAPPED_LEN + 1];
	if (wrapped < ENV_WRAPPED_MIN || wrapped > ENV_WRAPPED_MAX)
		return bad(why, "the envelope header's wrapped key length is out of range (header damaged)");
	size_t ctx_at = ENV_OFF_WRAPPED + wrapped;
	if (len < ctx_at + 4)
		return KMS_OK;
	uint32_t ctx_len = get_u32be(bytes + ctx_at);
	if (ctx_len < KMS_CONTEXT_ENCODED_EMPTY_LEN || ctx_len > KMS_CONTEXT_ENCODED_MAX)
		return bad(why, "the envelope header's context length is out of range (header damaged)");
	*total = env_header_size(wrapped, ctx_len);
	return KMS_OK;
}

kms_status env_header_parse(const uint8_t *bytes, size_t len, env_header *out,
                            const char **why)
{
	memset(out, 0, sizeof(*out));
	size_t total = 0;
	kms_status st = env_header_length(bytes, len, &total, why);
	if (st != KMS_OK)
		return st;
	if (total == 0 || total != len)
		return bad(why, "the envelope header is cut short");

	kms_cursor c = kms_cursor_init(bytes, len);
	const uint8_t *skip;
	uint16_t wrapped_len = 0;
	uint32_t segment = 0, ctx_len = 0;
	(void)kms_cursor_take(&c, ENV_OFF_SEGMENT, &skip); /* magic, version, suite */
	(void)kms_cursor_u32be(&c, &segment);
	(void)kms_cursor_take(&c, ENV_SALT_LEN, &out->salt);
	(void)kms_cursor_take(&c, ENV_PREFIX_LEN, &out->prefix);
	(void)kms_cursor_u16be(&c, &wrapped_len);
	(void)kms_cursor_take(&c, wrapped_len, &out->wrapped);
	(void)kms_cursor_u32be(&c, &ctx_len);
	(void)kms_cursor_take(&c, ctx_len, &out->context);
	(void)kms_cursor_take(&c, ENV_MAC_LEN, &out->mac);
	if (!kms_cursor_done(&c)) {
		memset(out, 0, sizeof(*out));
		return bad(why, "the envelope header is malformed");
	}
	out->segment_size = segment;
	out->wrapped_len = wrapped_len;
	out->context_len = ctx_len;
	out->len = len;

	context_pair pairs[KMS_CONTEXT_MAX_PAIRS];
	size_t n_pairs = 0;
	if (context_decode(out->context, out->context_len, pairs, &n_pairs) != KMS_OK) {
		memset(out, 0, sizeof(*out));
		return bad(why, "the envelope header's encryption context is not canonical (header damaged)");
	}
	return KMS_OK;
}

size_t env_header_size(size_t wrapped_len, size_t context_len)
{
	return KMS_ENVELOPE_HEADER_FIXED + wrapped_len + context_len;
}

void env_header_write(uint8_t *out, uint32_t segment_size, const uint8_t salt[ENV_SALT_LEN],
                      const uint8_t prefix[ENV_PREFIX_LEN], const uint8_t *wrapped,
                      size_t wrapped_len, const uint8_t *context, size_t context_len)
{
	uint8_t *p = out;
	memcpy(p, ENV_MAGIC, KMS_ENVELOPE_MAGIC_LEN);
	p[ENV_OFF_VERSION] = ENV_VERSION;
	p[ENV_OFF_SUITE] = ENV_SUITE_AES256GCM_HKDF_SHA256;
	put_u32be(p + ENV_OFF_SEGMENT, segment_size);
	memcpy(p + ENV_OFF_SALT, salt, ENV_SALT_LEN);
	memcpy(p + ENV_OFF_PREFIX, prefix, ENV_PREFIX_LEN);
	put_u16be(p + ENV_OFF_WRAPPED_LEN, (uint32_t)wrapped_len);
	memcpy(p + ENV_OFF_WRAPPED, wrapped, wrapped_len);
	p += ENV_OFF_WRAPPED + wrapped_len;
	put_u32be(p, (uint32_t)context_len);
	memcpy(p + 4, context, context_len);
	memset(p + 4 + context_len, 0, ENV_MAC_LEN);
}

/* HKDF-SHA256 (RFC 5869), extract and expand, 32 bytes out. */
static bool hkdf(const uint8_t ikm[ENV_KEY_LEN], const uint8_t salt[ENV_SALT_LEN],
                 const uint8_t *info, size_t info_len, uint8_t out[ENV_KEY_LEN])
{
	bool ok = false;
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	if (kctx) {
		OSSL_PARAM params[] = {
			OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
			OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)(uintptr_t)ikm,
			                                  ENV_KEY_LEN),
			OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)(uintptr_t)salt,
			                                  ENV_SALT_LEN),
			OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)(uintptr_t)info,
			                                  info_len),
			OSSL_PARAM_construct_end(),
		};
		ok = EVP_KDF_derive(kctx, out, ENV_KEY_LEN, params) == 1;
	}
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	if (!ok)
		OPENSSL_cleanse(out, ENV_KEY_LEN);
	return ok;
}

bool env_derive_header_key(const uint8_t data_key[ENV_KEY_LEN],
                           const uint8_t salt[ENV_SALT_LEN], uint8_t out[ENV_KEY_LEN])
{
	return hkdf(data_key, salt, (const uint8_t *)ENV_INFO_HEADER, strlen(ENV_INFO_HEADER),
	            out);
}

bool env_derive_payload_key(const uint8_t data_key[ENV_KEY_LEN],
                            const uint8_t salt[ENV_SALT_LEN],
                            const uint8_t mac[ENV_MAC_LEN], uint8_t out[ENV_KEY_LEN])
{
	uint8_t info[sizeof(ENV_INFO_PAYLOAD) - 1 + ENV_MAC_LEN];
	memcpy(info, ENV_INFO_PAYLOAD, sizeof(ENV_INFO_PAYLOAD) - 1);
	memcpy(info + sizeof(ENV_INFO_PAYLOAD) - 1, mac, ENV_MAC_LEN);
	return hkdf(data_key, salt, info, sizeof(info), out);
}

bool env_header_mac(const uint8_t key[ENV_KEY_LEN], const uint8_t *header, size_t len,
                    uint8_t mac[ENV_MAC_LEN])
{
	if (len < ENV_MAC_LEN)
		return false;
	bool ok = false;
	EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = m ? EVP_MAC_CTX_new(m) : NULL;
	size_t out_len = 0;
	if (ctx) {
		OSSL_PARAM params[] = {
			OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
			OSSL_PARAM_construct_end(),
		};
		ok = EVP_MAC_init(ctx, key, ENV_KEY_LEN, params) == 1 &&
		     EVP_MAC_update(ctx, header, len - ENV_MAC_LEN) == 1 &&
		     EVP_MAC_final(ctx, mac, &out_len, ENV_MAC_LEN) == 1 && out_len == ENV_MAC_LEN;
	}
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(m);
	return ok;
}

EVP_CIPHER_CTX *env_gcm_new(const uint8_t key[ENV_KEY_LEN], bool encrypt)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		return NULL;
	if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, NULL, encrypt ? 1 : 0) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, ENV_NONCE_LEN, NULL) != 1) {
		EVP_CIPHER_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static void env_nonce(uint8_t nonce[ENV_NONCE_LEN], const uint8_t prefix[ENV_PREFIX_LEN],
                      uint32_t counter, bool last)
{
	memcpy(nonce, prefix, ENV_PREFIX_LEN);
	put_u32be(nonce + ENV_PREFIX_LEN, counter);
	nonce[ENV_NONCE_LEN - 1] = last ? 1 : 0;
}

/* EVP's lengths are int: a segment is at most 16 MiB, far below. */
bool env_seal(EVP_CIPHER_CTX *ctx, const uint8_t prefix[ENV_PREFIX_LEN], uint32_t counter,
              bool last, const uint8_t *in, size_t len, uint8_t *out)
{
	uint8_t nonce[ENV_NONCE_LEN];
	int n = 0, fin = 0;
	if (len > KMS_ENVELOPE_SEGMENT_MAX)
		return false;
	env_nonce(nonce, prefix, counter, last);
	if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, 1) != 1)
		return false;
	if (len > 0 && EVP_CipherUpdate(ctx, out, &n, in, (int)len) != 1)
		return false;
	if (EVP_CipherFinal_ex(ctx, out + n, &fin) != 1 || (size_t)(n + fin) != len)
		return false;
	return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, ENV_TAG_LEN, out + len) == 1;
}

bool env_open(EVP_CIPHER_CTX *ctx, const uint8_t prefix[ENV_PREFIX_LEN], uint32_t counter,
              bool last, const uint8_t *in, size_t len, uint8_t *out)
{
	uint8_t nonce[ENV_NONCE_LEN];
	uint8_t tag[ENV_TAG_LEN];
	int n = 0, fin = 0;
	if (len < ENV_TAG_LEN || len - ENV_TAG_LEN > KMS_ENVELOPE_SEGMENT_MAX)
		return false;
	size_t pt_len = len - ENV_TAG_LEN;
	/* The tag is copied first: out may overlap in. */
	memcpy(tag, in + pt_len, ENV_TAG_LEN);
	env_nonce(nonce, prefix, counter, last);
	bool ok = EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, 0) == 1 &&
	          (pt_len == 0 || EVP_CipherUpdate(ctx, out, &n, in, (int)pt_len) == 1) &&
	          EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, ENV_TAG_LEN, tag) == 1 &&
	          EVP_CipherFinal_ex(ctx, out + n, &fin) == 1 && (size_t)(n + fin) == pt_len;
	if (!ok && pt_len > 0)
		OPENSSL_cleanse(out, pt_len);
	return ok;
}
