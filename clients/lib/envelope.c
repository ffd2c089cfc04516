/*
 * envelope.c: envelope encryption's streaming state machines
 * (include/kms/envelope.h) on top of the format's pure parts
 * (envelope_format.c, docs/envelope-format.md).
 *
 * Encryption holds the last segment back until more plaintext arrives or
 * final is called: only then is it known whether it is the last one. A
 * segment is sealed straight from the caller's buffer when the bytes after
 * it are already there, else copied into a segment buffer first.
 *
 * Decryption likewise holds one sealed segment (segment size + tag) back
 * until a byte after it arrives, opens it into a secure buffer, and only
 * then hands the plaintext to the write function.
 */
#include "clients/lib/client_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <kms/data_key_cache.h>
#include <kms/envelope.h>
#include <kms/secmem.h>

#include "clients/lib/envelope_format.h"
#include "common/context.h"
#include "common/error.h"

/* ---- shared ---- */

bool kms_envelope_is_message(const uint8_t *bytes, size_t len)
{
	return bytes && len >= KMS_ENVELOPE_MAGIC_LEN &&
	       memcmp(bytes, ENV_MAGIC, KMS_ENVELOPE_MAGIC_LEN) == 0;
}

uint64_t kms_envelope_message_size(uint64_t len, uint32_t segment_size, size_t header_len)
{
	uint64_t p = segment_size ? segment_size : KMS_ENVELOPE_SEGMENT_DEFAULT;
	uint64_t segments = len == 0 ? 1 : len / p + (len % p != 0);
	if (segments > UINT64_MAX / ENV_TAG_LEN)
		return UINT64_MAX;
	uint64_t tags = segments * ENV_TAG_LEN;
	if (len > UINT64_MAX - tags || header_len > UINT64_MAX - len - tags)
		return UINT64_MAX;
	return header_len + len + tags;
}

static kms_status write_out(kms_envelope_write_fn write, void *arg, const uint8_t *bytes,
                            size_t len, kms_error *err)
{
	if (len == 0)
		return KMS_OK;
	int e = write(arg, bytes, len);
	if (e != 0)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                   "envelope: writing the output failed: %s", strerror(e));
	return KMS_OK;
}

/* The canonical encoding of a caller's context, malloc'ed (not secret). */
static kms_status encode_context(const kms_context_pair *context, size_t n, const char *op,
                                 uint8_t **out, size_t *out_len, kms_error *err)
{
	*out = NULL;
	*out_len = 0;
	if (n > 0 && !context)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s: context is NULL but n_context is %zu", op, n);
	if (context_check_count(n) != KMS_OK)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s: %zu encryption context pairs; at most %d are allowed", op,
		                   n, KMS_CONTEXT_MAX_PAIRS);
	context_pair pairs[KMS_CONTEXT_MAX_PAIRS];
	for (size_t i = 0; i < n; i++) {
		if (!context[i].key || !context[i].value)
			return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
			                   "%s: encryption context pair %zu has a NULL key or value",
			                   op, i + 1);
		pairs[i] = context_pair_from_cstr(context[i].key, context[i].value);
	}
	kms_status st = context_encode_alloc(pairs, n, out, out_len);
	if (st == KMS_INTERNAL)
		return client_fail(err, st, KMS_ERROR_LOCAL, "%s: out of memory", op);
	if (st != KMS_OK)
		return client_fail(err, st, KMS_ERROR_LOCAL,
		                   "%s: the encryption context breaks a rule (keys 1..%d bytes, "
		                   "values at most %d, UTF-8 without NUL, no key twice)",
		                   op, KMS_CONTEXT_KEY_MAX, KMS_CONTEXT_VALUE_MAX);
	return KMS_OK;
}

/* Both directions hold one block back (a segment to seal, a sealed segment
 * to open) until a byte after it arrives: only then is it known not to be
 * the last. This feeds in[0..len) through that: every block known not to
 * be the last goes to `take`, from the hold-back buffer or, when it is
 * empty and more than a block is at hand, straight from the input; what is
 * left stays in buf[0..*fill). */
typedef kms_status (*block_fn)(void *self, const uint8_t *block, size_t len, kms_error *err);

static kms_status hold_back(uint8_t *buf, size_t *fill, size_t block, const uint8_t *in,
                            size_t len, block_fn take, void *self, kms_error *err)
{
	kms_status st;
	while (len > 0) {
		if (*fill == block) {
			if ((st = take(self, buf, block, err)) != KMS_OK)
				return st;
			*fill = 0;
		}
		if (*fill == 0 && len > block) {
			if ((st = take(self, in, block, err)) != KMS_OK)
				return st;
			in += block;
			len -= block;
			continue;
		}
		size_t n = block - *fill < len ? block - *fill : len;
		memcpy(buf + *fill, in, n);
		*fill += n;
		in += n;
		len -= n;
	}
	return KMS_OK;
}

/* ---- encryption ---- */

struct kms_envelope_encryptor {
	kms_envelope_write_fn write;
	void *write_arg;
	EVP_CIPHER_CTX *gcm;
	uint8_t prefix[ENV_PREFIX_LEN];
	uint32_t segment_size;
	uint64_t counter;   /* the next segment's index */
	uint8_t *plain;     /* segment_size bytes, secure: the held-back segment */
	size_t fill;
	uint8_t *sealed;    /* segment_size + tag */
	bool size_known;
	uint64_t size;
	uint64_t taken;     /* plaintext bytes given to update */
	bool done;          /* failed or finished: only free is left */
	char key_id[KMS_KEY_ID_MAX + 1];
	uint32_t key_version;
};

void kms_envelope_encryptor_free(kms_envelope_encryptor *enc)
{
	if (!enc)
		return;
	EVP_CIPHER_CTX_free(enc->gcm);
	kms_secure_free(enc->plain);
	free(enc->sealed);
	kms_wipe(enc, sizeof(*enc));
	free(enc);
}

const char *kms_envelope_encryptor_key_id(const kms_envelope_encryptor *enc)
{
	return enc ? enc->key_id : "";
}

uint32_t kms_envelope_encryptor_key_version(const kms_envelope_encryptor *enc)
{
	return enc ? enc->key_version : 0;
}

/* Makes the header for data key dk (32 bytes) into a malloc'ed buffer and
 * keys the encryptor's GCM context with the message's payload key. */
static kms_status seal_header(kms_envelope_encryptor *enc, const uint8_t *data_key,
                              const uint8_t *blob, size_t blob_len, const uint8_t *context,
                              size_t context_len, uint8_t **header, size_t *header_len,
                              kms_error *err)
{
	*header = NULL;
	*header_len = 0;
	if (blob_len < ENV_WRAPPED_MIN || blob_len > ENV_WRAPPED_MAX)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_PROTOCOL,
		                   "envelope: kmsd returned a wrapped data key of %zu bytes, "
		                   "outside %d..%d", blob_len, ENV_WRAPPED_MIN, ENV_WRAPPED_MAX);
	uint8_t salt[ENV_SALT_LEN];
	if (RAND_bytes(salt, sizeof salt) != 1 ||
	    RAND_bytes(enc->prefix, sizeof enc->prefix) != 1)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                   "envelope: the random generator failed");
	size_t len = env_header_size(blob_len, context_len);
	uint8_t *h = malloc(len);
	env_keys *keys = kms_secure_alloc(sizeof(env_keys));
	kms_status st = KMS_OK;
	if (!h || !keys) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "envelope: out of memory");
		goto out;
	}
	env_header_write(h, enc->segment_size, salt, enc->prefix, blob, blob_len, context,
	                 context_len);
	if (!env_derive_header_key(data_key, salt, keys->header) ||
	    !env_header_mac(keys->header, h, len, h + len - ENV_MAC_LEN) ||
	    !env_derive_payload_key(data_key, salt, h + len - ENV_MAC_LEN, keys->payload) ||
	    !(enc->gcm = env_gcm_new(keys->payload, true))) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                 "envelope: OpenSSL failed to derive the message keys");
		goto out;
	}
	*header = h;
	*header_len = len;
	h = NULL;
out:
	free(h);
	kms_secure_free(keys);
	return st;
}

kms_status kms_envelope_encrypt_init(kms_client *client, const char *key_id,
                                     const kms_context_pair *context, size_t n_context,
                                     const kms_envelope_encrypt_options *opts,
                                     kms_envelope_write_fn write, void *write_arg,
                                     kms_envelope_encryptor **out, kms_error *err)
{
	static const char op[] = "envelope encrypt";
	kms_envelope_encrypt_options defaults = { 0 };
	kms_envelope_encryptor *enc = NULL;
	kms_data_key dk = { 0 };
	uint8_t *ctx_bytes = NULL, *header = NULL;
	size_t ctx_len = 0, header_len = 0;
	kms_status st = KMS_OK;

	client_error_clear(err);
	if (!out)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL, "%s: out is required",
		                   op);
	*out = NULL;
	if (!client || !write)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s: client and write are required", op);
	KMS_GUARD_OUT(st, client_need(key_id, op, "key_id", err));
	if (!opts)
		opts = &defaults;
	uint32_t segment = opts->segment_size ? opts->segment_size : KMS_ENVELOPE_SEGMENT_DEFAULT;
	if (segment < KMS_ENVELOPE_SEGMENT_MIN || segment > KMS_ENVELOPE_SEGMENT_MAX) {
		st = client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                 "%s: segment size %u is outside %u..%u bytes", op, segment,
		                 KMS_ENVELOPE_SEGMENT_MIN, KMS_ENVELOPE_SEGMENT_MAX);
		goto out;
	}
	if (opts->cache && client_data_key_cache_client(opts->cache) != client) {
		st = client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                 "%s: the data-key cache was made on another client; make one "
		                 "on this client", op);
		goto out;
	}
	KMS_GUARD_OUT(st, encode_context(context, n_context, op, &ctx_bytes, &ctx_len, err));

	enc = calloc(1, sizeof(*enc));
	if (enc) {
		enc->plain = kms_secure_alloc(segment);
		enc->sealed = malloc((size_t)segment + ENV_TAG_LEN);
	}
	if (!enc || !enc->plain || !enc->sealed) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "%s: out of memory", op);
		goto out;
	}
	enc->write = write;
	enc->write_arg = write_arg;
	enc->segment_size = segment;
	enc->size_known = opts->size_known;
	enc->size = opts->size;

	if (opts->cache && opts->size_known)
		st = kms_data_key_cache_encrypt_key(opts->cache, key_id, context, n_context,
		                                    opts->size, &dk, err);
	else
		st = kms_generate_data_key(client, key_id, context, n_context, &dk, err);
	if (st != KMS_OK)
		goto out;
	if (!dk.plaintext || dk.plaintext_len != ENV_KEY_LEN) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_PROTOCOL,
		                 "%s: kmsd returned a data key of %zu bytes, not %d", op,
		                 dk.plaintext_len, ENV_KEY_LEN);
		goto out;
	}
	memcpy(enc->key_id, dk.key_id, sizeof enc->key_id);
	enc->key_version = dk.key_version;
	KMS_GUARD_OUT(st, seal_header(enc, dk.plaintext, dk.blob, dk.blob_len, ctx_bytes, ctx_len,
	                              &header, &header_len, err));
	KMS_GUARD_OUT(st, write_out(write, write_arg, header, header_len, err));
	*out = enc;
	enc = NULL;
out:
	kms_data_key_free(&dk);
	free(ctx_bytes);
	free(header);
	kms_envelope_encryptor_free(enc);
	return st;
}

/* Seals one segment from in (len bytes) and writes it. */
static kms_status seal_one(kms_envelope_encryptor *enc, const uint8_t *in, size_t len,
                           bool last, kms_error *err)
{
	if (enc->counter > UINT32_MAX)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "envelope encrypt: the message passes 2^32 segments of %u bytes; "
		                   "use a larger segment size", enc->segment_size);
	if (!env_seal(enc->gcm, enc->prefix, (uint32_t)enc->counter, last, in, len, enc->sealed))
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                   "envelope encrypt: OpenSSL failed to seal segment %llu",
		                   (unsigned long long)enc->counter);
	enc->counter++;
	return write_out(enc->write, enc->write_arg, enc->sealed, len + ENV_TAG_LEN, err);
}

static kms_status seal_not_last(void *self, const uint8_t *segment, size_t len, kms_error *err)
{
	return seal_one(self, segment, len, false, err);
}

static kms_status enc_fail(kms_envelope_encryptor *enc, kms_status st)
{
	enc->done = true;
	kms_wipe(enc->plain, enc->segment_size);
	enc->fill = 0;
	return st;
}

kms_status kms_envelope_encrypt_update(kms_envelope_encryptor *enc, const uint8_t *plaintext,
                                       size_t len, kms_error *err)
{
	client_error_clear(err);
	if (!enc || (len > 0 && !plaintext))
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "envelope encrypt: encryptor and plaintext are required");
	if (enc->done)
		return client_fail(err, KMS_FAILED_PRECONDITION, KMS_ERROR_LOCAL,
		                   "envelope encrypt: this encryptor has finished or failed; "
		                   "start a new message");
	if (enc->size_known && (len > enc->size || enc->taken > enc->size - len))
		return enc_fail(enc, client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                                 "envelope encrypt: more plaintext than the "
		                                 "%llu bytes announced",
		                                 (unsigned long long)enc->size));
	enc->taken += len;
	kms_status st = hold_back(enc->plain, &enc->fill, enc->segment_size, plaintext, len,
	                          seal_not_last, enc, err);
	return st == KMS_OK ? KMS_OK : enc_fail(enc, st);
}

kms_status kms_envelope_encrypt_final(kms_envelope_encryptor *enc, kms_error *err)
{
	client_error_clear(err);
	if (!enc)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "envelope encrypt: encryptor is required");
	if (enc->done)
		return client_fail(err, KMS_FAILED_PRECONDITION, KMS_ERROR_LOCAL,
		                   "envelope encrypt: this encryptor has finished or failed; "
		                   "start a new message");
	if (enc->size_known && enc->taken != enc->size)
		return enc_fail(enc, client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                                 "envelope encrypt: %llu plaintext bytes, not the "
		                                 "%llu announced",
		                                 (unsigned long long)enc->taken,
		                                 (unsigned long long)enc->size));
	kms_status st = seal_one(enc, enc->plain, enc->fill, true, err);
	return enc_fail(enc, st);
}

/* ---- decryption ---- */

enum dec_state { DEC_HEADER, DEC_BODY, DEC_DONE };

struct kms_envelope_decryptor {
	kms_client *client;
	kms_envelope_write_fn write;
	void *write_arg;
	/* The options, the required context encoded. */
	char *key_id;
	uint8_t *want_context;
	size_t want_context_len;
	bool require_context;
	kms_data_key_cache *cache;
	bool size_known;
	uint64_t size;

	enum dec_state state;
	uint8_t *header;          /* grows to the header's length */
	size_t header_have, header_cap, header_len;

	EVP_CIPHER_CTX *gcm;
	uint8_t prefix[ENV_PREFIX_LEN];
	uint32_t segment_size;
	uint64_t counter;
	uint8_t *pending;         /* segment_size + tag: the held-back sealed segment */
	size_t pending_len;
	uint8_t *plain;           /* segment_size, secure */
	uint64_t released;
	/* The header's context, once read: pairs into ctx_strings. */
	char *ctx_strings;
	kms_context_pair ctx_pairs[KMS_CONTEXT_MAX_PAIRS];
	size_t n_ctx;
	char opened_key_id[KMS_KEY_ID_MAX + 1];
	uint32_t opened_key_version;
};

void kms_envelope_decryptor_free(kms_envelope_decryptor *dec)
{
	if (!dec)
		return;
	EVP_CIPHER_CTX_free(dec->gcm);
	free(dec->key_id);
	free(dec->want_context);
	free(dec->header);
	free(dec->pending);
	free(dec->ctx_strings);
	kms_secure_free(dec->plain);
	kms_wipe(dec, sizeof(*dec));
	free(dec);
}

uint64_t kms_envelope_decryptor_released(const kms_envelope_decryptor *dec)
{
	return dec ? dec->released : 0;
}

const char *kms_envelope_decryptor_key_id(const kms_envelope_decryptor *dec)
{
	return dec ? dec->opened_key_id : "";
}

uint32_t kms_envelope_decryptor_key_version(const kms_envelope_decryptor *dec)
{
	return dec ? dec->opened_key_version : 0;
}

size_t kms_envelope_decryptor_context(const kms_envelope_decryptor *dec,
                                      const kms_context_pair **pairs)
{
	if (pairs)
		*pairs = NULL;
	if (!dec || dec->state == DEC_HEADER || !dec->opened_key_id[0])
		return 0;
	if (pairs)
		*pairs = dec->ctx_pairs;
	return dec->n_ctx;
}

kms_status kms_envelope_decrypt_init(kms_client *client, const kms_envelope_decrypt_options *opts,
                                     kms_envelope_write_fn write, void *write_arg,
                                     kms_envelope_decryptor **out, kms_error *err)
{
	static const char op[] = "envelope decrypt";
	kms_envelope_decrypt_options defaults = { 0 };
	kms_status st = KMS_OK;
	client_error_clear(err);
	if (!out)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL, "%s: out is required",
		                   op);
	*out = NULL;
	if (!client || !write)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s: client and write are required", op);
	if (!opts)
		opts = &defaults;
	if (opts->cache && client_data_key_cache_client(opts->cache) != client)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s: the data-key cache was made on another client; make one "
		                   "on this client", op);
	kms_envelope_decryptor *dec = calloc(1, sizeof(*dec));
	if (!dec)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "%s: out of memory", op);
	dec->client = client;
	dec->write = write;
	dec->write_arg = write_arg;
	dec->cache = opts->cache;
	dec->size_known = opts->size_known;
	dec->size = opts->size;
	dec->state = DEC_HEADER;
	if (opts->key_id && opts->key_id[0] && !(dec->key_id = strdup(opts->key_id))) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "%s: out of memory", op);
		goto out;
	}
	if (opts->require_context) {
		dec->require_context = true;
		KMS_GUARD_OUT(st, encode_context(opts->context, opts->n_context, op,
		                                 &dec->want_context, &dec->want_context_len, err));
	}
	*out = dec;
	dec = NULL;
out:
	kms_envelope_decryptor_free(dec);
	return st;
}

static kms_status dec_fail(kms_envelope_decryptor *dec, kms_status st)
{
	dec->state = DEC_DONE;
	if (dec->plain)
		kms_wipe(dec->plain, dec->segment_size);
	dec->pending_len = 0;
	return st;
}

/* "k1, k2" for an error line: the context's keys (not secret; values are
 * left out all the same), control characters replaced. */
static void context_keys_text(const env_header *h, char *out, size_t cap)
{
	context_pair pairs[KMS_CONTEXT_MAX_PAIRS];
	size_t n = 0, used = 0;
	out[0] = '\0';
	if (context_decode(h->context, h->context_len, pairs, &n) != KMS_OK)
		return;
	if (n == 0) {
		snprintf(out, cap, "(none)");
		return;
	}
	for (size_t i = 0; i < n && used + 1 < cap; i++) {
		char key[64];
		size_t k = pairs[i].key_len < sizeof key - 1 ? pairs[i].key_len : sizeof key - 1;
		char raw[64];
		memcpy(raw, pairs[i].key, k);
		raw[k] = '\0';
		client_copy_clean(key, sizeof key, raw);
		int w = snprintf(out + used, cap - used, "%s%s", i ? ", " : "", key);
		if (w < 0)
			break;
		used += (size_t)w;
	}
}

/* The header's context as the client calls take it: NUL-terminated copies
 * in one malloc'ed block (*block), pairs in *pairs. */
static kms_status header_context_pairs(const env_header *h, kms_context_pair *pairs,
                                       size_t *n, char **block, kms_error *err)
{
	context_pair raw[KMS_CONTEXT_MAX_PAIRS];
	size_t count = 0;
	*block = NULL;
	*n = 0;
	if (context_decode(h->context, h->context_len, raw, &count) != KMS_OK)
		return client_fail(err, KMS_INVALID_CIPHERTEXT, KMS_ERROR_LOCAL,
		                   "envelope decrypt: the header's encryption context is not "
		                   "canonical (header damaged)");
	/* Every string plus its NUL fits in the encoding's own length. */
	char *b = malloc(h->context_len + 1);
	if (!b)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                   "envelope decrypt: out of memory");
	char *at = b;
	for (size_t i = 0; i < count; i++) {
		memcpy(at, raw[i].key, raw[i].key_len);
		at[raw[i].key_len] = '\0';
		pairs[i].key = at;
		at += raw[i].key_len + 1;
		memcpy(at, raw[i].value, raw[i].value_len);
		at[raw[i].value_len] = '\0';
		pairs[i].value = at;
		at += raw[i].value_len + 1;
	}
	*block = b;
	*n = count;
	return KMS_OK;
}

/* The whole header is in: checks it, opens its data key through kmsd,
 * verifies its MAC and keys the GCM context. */
static kms_status open_header(kms_envelope_decryptor *dec, kms_error *err)
{
	env_header h;
	const char *why = "";
	kms_context_pair pairs[KMS_CONTEXT_MAX_PAIRS];
	size_t n_pairs = 0;
	char *strings = NULL;
	kms_plaintext pt = { 0 };
	env_keys *keys = NULL;
	kms_status st;

	if (env_header_parse(dec->header, dec->header_len, &h, &why) != KMS_OK)
		return client_fail(err, KMS_INVALID_CIPHERTEXT, KMS_ERROR_LOCAL,
		                   "envelope decrypt: %s", why);
	if (dec->require_context &&
	    (h.context_len != dec->want_context_len ||
	     memcmp(h.context, dec->want_context, h.context_len) != 0)) {
		char keys_text[160];
		context_keys_text(&h, keys_text, sizeof keys_text);
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "envelope decrypt: the message's encryption context is not the "
		                   "one required (the message's keys: %s); give its exact context",
		                   keys_text);
	}
	KMS_GUARD_OUT(st, header_context_pairs(&h, pairs, &n_pairs, &strings, err));

	uint64_t body = dec->size_known && dec->size > h.len ? dec->size - h.len : 0;
	if (dec->cache && dec->size_known)
		st = kms_data_key_cache_decrypt_key(dec->cache, h.wrapped, h.wrapped_len, pairs,
		                                    n_pairs, dec->key_id, body, &pt, err);
	else
		st = kms_decrypt(dec->client, h.wrapped, h.wrapped_len, pairs, n_pairs, dec->key_id,
		                 &pt, err);
	if (st == KMS_INVALID_CIPHERTEXT && err) {
		char server[KMS_ERROR_MESSAGE_MAX];
		memcpy(server, err->message, sizeof server);
		if (dec->key_id)
			client_fail(err, st, err->origin,
			            "envelope decrypt: kmsd cannot open the header's data key (it is "
			            "not under key %.80s, or the header was altered): %.140s",
			            dec->key_id, server);
		else
			client_fail(err, st, err->origin,
			            "envelope decrypt: kmsd cannot open the header's data key (the "
			            "header was altered, or the message is not from this service): "
			            "%.140s", server);
	}
	if (st != KMS_OK)
		goto out;
	if (pt.len != ENV_KEY_LEN) {
		st = client_fail(err, KMS_INVALID_CIPHERTEXT, KMS_ERROR_LOCAL,
		                 "envelope decrypt: the header's wrapped key holds %zu bytes, not "
		                 "a %d-byte data key (not an envelope data key)",
		                 pt.len, ENV_KEY_LEN);
		goto out;
	}
	keys = kms_secure_alloc(sizeof(env_keys));
	if (!keys) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "envelope decrypt: out of memory");
		goto out;
	}
	uint8_t mac[ENV_MAC_LEN];
	if (!env_derive_header_key(pt.bytes, h.salt, keys->header) ||
	    !env_header_mac(keys->header, dec->header, h.len, mac)) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                 "envelope decrypt: OpenSSL failed to derive the message keys");
		goto out;
	}
	if (CRYPTO_memcmp(mac, h.mac, ENV_MAC_LEN) != 0) {
		st = client_fail(err, KMS_INVALID_CIPHERTEXT, KMS_ERROR_LOCAL,
		                 "envelope decrypt: the header does not authenticate (tampered: its "
		                 "segment size, salt, nonce prefix or MAC was changed)");
		goto out;
	}
	if (!env_derive_payload_key(pt.bytes, h.salt, h.mac, keys->payload) ||
	    !(dec->gcm = env_gcm_new(keys->payload, false))) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                 "envelope decrypt: OpenSSL failed to derive the message keys");
		goto out;
	}
	dec->segment_size = h.segment_size;
	memcpy(dec->prefix, h.prefix, ENV_PREFIX_LEN);
	dec->pending = malloc((size_t)h.segment_size + ENV_TAG_LEN);
	dec->plain = kms_secure_alloc(h.segment_size);
	if (!dec->pending || !dec->plain) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "envelope decrypt: out of memory");
		goto out;
	}
	memcpy(dec->opened_key_id, pt.key_id, sizeof dec->opened_key_id);
	dec->opened_key_version = pt.key_version;
	memcpy(dec->ctx_pairs, pairs, n_pairs * sizeof pairs[0]);
	dec->n_ctx = n_pairs;
	dec->ctx_strings = strings;
	strings = NULL;
	dec->state = DEC_BODY;
out:
	kms_plaintext_free(&pt);
	kms_secure_free(keys);
	free(strings);
	return st;
}

/* Opens segment dec->counter from in (len bytes, tag included) as last or
 * not, writes its plaintext; on failure says which way it fails. */
static kms_status open_one(kms_envelope_decryptor *dec, const uint8_t *in, size_t len,
                           bool last, kms_error *err)
{
	unsigned long long n = (unsigned long long)dec->counter;
	if (dec->counter > UINT32_MAX)
		return client_fail(err, KMS_INVALID_CIPHERTEXT, KMS_ERROR_LOCAL,
		                   "envelope decrypt: more than 2^32 segments (bytes after the end "
		                   "of the message)");
	uint32_t i = (uint32_t)dec->counter;
	if (!env_open(dec->gcm, dec->prefix, i, last, in, len, dec->plain)) {
		/* Why: the same bytes tried the other way round say whether the
		 * message was cut or extended at a segment boundary. Opening is
		 * into the secure buffer and wiped either way. */
		bool other = env_open(dec->gcm, dec->prefix, i, !last, in, len, dec->plain);
		kms_wipe(dec->plain, dec->segment_size);
		if (other && last)
			return client_fail(err, KMS_INVALID_CIPHERTEXT, KMS_ERROR_LOCAL,
			                   "envelope decrypt: the message is truncated (it ends after "
			                   "segment %llu, which is not its last)", n);
		if (other)
			return client_fail(err, KMS_INVALID_CIPHERTEXT, KMS_ERROR_LOCAL,
			                   "envelope decrypt: bytes follow the end of the message "
			                   "(segment %llu is its last)", n);
		return client_fail(err, KMS_INVALID_CIPHERTEXT, KMS_ERROR_LOCAL,
		                   "envelope decrypt: segment %llu does not authenticate (tampered, "
		                   "reordered, cut short, extended, or from another message)", n);
	}
	dec->counter++;
	size_t pt_len = len - ENV_TAG_LEN;
	kms_status st = write_out(dec->write, dec->write_arg, dec->plain, pt_len, err);
	kms_wipe(dec->plain, pt_len);
	if (st == KMS_OK)
		dec->released += pt_len;
	return st;
}

static kms_status open_not_last(void *self, const uint8_t *sealed, size_t len, kms_error *err)
{
	return open_one(self, sealed, len, false, err);
}

kms_status kms_envelope_decrypt_update(kms_envelope_decryptor *dec, const uint8_t *message,
                                       size_t len, kms_error *err)
{
	client_error_clear(err);
	if (!dec || (len > 0 && !message))
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "envelope decrypt: decryptor and message are required");
	if (dec->state == DEC_DONE)
		return client_fail(err, KMS_FAILED_PRECONDITION, KMS_ERROR_LOCAL,
		                   "envelope decrypt: this decryptor has finished or failed; "
		                   "start a new message");
	kms_status st;
	while (len > 0 && dec->state == DEC_HEADER) {
		/* Take bytes up to what is known of the header's length. */
		size_t want = dec->header_len ? dec->header_len : ENV_OFF_WRAPPED + 2 + ENV_WRAPPED_MAX;
		if (!dec->header_len) {
			size_t total = 0;
			const char *why = "";
			if (dec->header_have > 0 &&
			    env_header_length(dec->header, dec->header_have, &total, &why) != KMS_OK)
				return dec_fail(dec, client_fail(err, KMS_INVALID_CIPHERTEXT,
				                                 KMS_ERROR_LOCAL, "envelope decrypt: %s",
				                                 why));
			if (total) {
				dec->header_len = total;
				want = total;
			} else if (dec->header_have < ENV_OFF_WRAPPED) {
				want = ENV_OFF_WRAPPED;
			} else {
				size_t w = ((size_t)dec->header[ENV_OFF_WRAPPED_LEN] << 8) |
				           dec->header[ENV_OFF_WRAPPED_LEN + 1];
				want = ENV_OFF_WRAPPED + w + 4;
			}
		}
		if (dec->header_cap < want) {
			uint8_t *grown = realloc(dec->header, want);
			if (!grown)
				return dec_fail(dec, client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
				                                 "envelope decrypt: out of memory"));
			dec->header = grown;
			dec->header_cap = want;
		}
		size_t n = want - dec->header_have < len ? want - dec->header_have : len;
		memcpy(dec->header + dec->header_have, message, n);
		dec->header_have += n;
		message += n;
		len -= n;
		if (dec->header_len && dec->header_have == dec->header_len) {
			st = open_header(dec, err);
			if (st != KMS_OK)
				return dec_fail(dec, st);
		}
	}
	if (dec->state != DEC_BODY)
		return KMS_OK;
	st = hold_back(dec->pending, &dec->pending_len, (size_t)dec->segment_size + ENV_TAG_LEN,
	               message, len, open_not_last, dec, err);
	return st == KMS_OK ? KMS_OK : dec_fail(dec, st);
}

kms_status kms_envelope_decrypt_final(kms_envelope_decryptor *dec, kms_error *err)
{
	client_error_clear(err);
	if (!dec)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "envelope decrypt: decryptor is required");
	if (dec->state == DEC_DONE)
		return client_fail(err, KMS_FAILED_PRECONDITION, KMS_ERROR_LOCAL,
		                   "envelope decrypt: this decryptor has finished or failed; "
		                   "start a new message");
	if (dec->state == DEC_HEADER) {
		if (dec->header_have == 0)
			return dec_fail(dec, client_fail(err, KMS_INVALID_CIPHERTEXT, KMS_ERROR_LOCAL,
			                                 "envelope decrypt: the input is empty, not "
			                                 "an envelope message"));
		size_t total = 0;
		const char *why = "";
		if (env_header_length(dec->header, dec->header_have, &total, &why) != KMS_OK)
			return dec_fail(dec, client_fail(err, KMS_INVALID_CIPHERTEXT,
			                                 KMS_ERROR_LOCAL, "envelope decrypt: %s", why));
		return dec_fail(dec, client_fail(err, KMS_INVALID_CIPHERTEXT, KMS_ERROR_LOCAL,
		                                 "envelope decrypt: the message is truncated (it "
		                                 "ends inside its header)"));
	}
	if (dec->pending_len < ENV_TAG_LEN)
		return dec_fail(dec, client_fail(err, KMS_INVALID_CIPHERTEXT, KMS_ERROR_LOCAL,
		                                 "envelope decrypt: the message is truncated (it "
		                                 "ends %s segment %llu)",
		                                 dec->pending_len ? "inside" : "before",
		                                 (unsigned long long)dec->counter));
	if (dec->pending_len == ENV_TAG_LEN && dec->counter > 0)
		return dec_fail(dec, client_fail(err, KMS_INVALID_CIPHERTEXT, KMS_ERROR_LOCAL,
		                                 "envelope decrypt: an empty last segment after "
		                                 "segment %llu (not a message this format writes)",
		                                 (unsigned long long)dec->counter - 1));
	kms_status st = open_one(dec, dec->pending, dec->pending_len, true, err);
	return dec_fail(dec, st);
}

/* ---- whole buffers ---- */

typedef struct grow_buf {
	uint8_t *bytes;
	size_t len, cap;
	bool secure;
} grow_buf;

static int grow_write(void *arg, const uint8_t *bytes, size_t len)
{
	grow_buf *b = arg;
	if (len > b->cap - b->len)
		return EOVERFLOW; /* the sizes were computed up front: never */
	memcpy(b->bytes + b->len, bytes, len);
	b->len += len;
	return 0;
}

kms_status kms_envelope_encrypt_buffer(kms_client *client, const char *key_id,
                                       const kms_context_pair *context, size_t n_context,
                                       const kms_envelope_encrypt_options *opts,
                                       const uint8_t *plaintext, size_t len, uint8_t **out,
                                       size_t *out_len, kms_error *err)
{
	client_error_clear(err);
	if (!out || !out_len)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "envelope encrypt: out and out_len are required");
	*out = NULL;
	*out_len = 0;
	if (len > 0 && !plaintext)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "envelope encrypt: plaintext is NULL");
	kms_envelope_encrypt_options o = { 0 };
	if (opts)
		o = *opts;
	o.size_known = true;
	o.size = len;
	uint32_t segment = o.segment_size ? o.segment_size : KMS_ENVELOPE_SEGMENT_DEFAULT;
	uint64_t max = kms_envelope_message_size(len, segment, KMS_ENVELOPE_HEADER_MAX);
	grow_buf b = { 0 };
	if (max > SIZE_MAX || !(b.bytes = malloc((size_t)max)))
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                   "envelope encrypt: out of memory for a %zu-byte message", len);
	b.cap = (size_t)max;
	kms_envelope_encryptor *enc = NULL;
	kms_status st = kms_envelope_encrypt_init(client, key_id, context, n_context, &o,
	                                          grow_write, &b, &enc, err);
	if (st == KMS_OK)
		st = kms_envelope_encrypt_update(enc, plaintext, len, err);
	if (st == KMS_OK)
		st = kms_envelope_encrypt_final(enc, err);
	kms_envelope_encryptor_free(enc);
	if (st != KMS_OK) {
		free(b.bytes);
		return st;
	}
	*out = b.bytes;
	*out_len = b.len;
	return KMS_OK;
}

kms_status kms_envelope_decrypt_buffer(kms_client *client, const kms_envelope_decrypt_options *opts,
                                       const uint8_t *message, size_t len, uint8_t **out,
                                       size_t *out_len, kms_error *err)
{
	client_error_clear(err);
	if (!out || !out_len)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "envelope decrypt: out and out_len are required");
	*out = NULL;
	*out_len = 0;
	if (len > 0 && !message)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "envelope decrypt: message is NULL");
	kms_envelope_decrypt_options o = { 0 };
	if (opts)
		o = *opts;
	o.size_known = true;
	o.size = len;
	/* The plaintext is shorter than the message. */
	grow_buf b = { 0 };
	b.bytes = kms_secure_alloc(len ? len : 1);
	if (!b.bytes)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                   "envelope decrypt: out of memory for a %zu-byte message", len);
	b.cap = len;
	kms_envelope_decryptor *dec = NULL;
	kms_status st = kms_envelope_decrypt_init(client, &o, grow_write, &b, &dec, err);
	if (st == KMS_OK)
		st = kms_envelope_decrypt_update(dec, message, len, err);
	if (st == KMS_OK)
		st = kms_envelope_decrypt_final(dec, err);
	kms_envelope_decryptor_free(dec);
	if (st != KMS_OK) {
		kms_secure_free(b.bytes);
		return st;
	}
	*out = b.bytes;
	*out_len = b.len;
	return KMS_OK;
}
