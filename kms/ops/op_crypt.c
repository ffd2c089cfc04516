/*
 * op_crypt.c: the data plane. Encrypt, Decrypt, ReEncrypt, GenerateDataKey
 * (with and without plaintext) and their batch forms.
 *
 * Sealing: the keyring hands out a key version (and one use of its GCM
 * budget), the IV is 12 fresh random bytes, the AAD is the blob header ||
 * the canonical encryption context (docs/ciphertext-format.md), and the HSM
 * does AES-256-GCM. Opening: the blob is parsed strictly, its region must be
 * ours, and the HSM verifies the tag before any plaintext exists. Plaintexts
 * live in the worker's arena (locked, wiped after the reply) and, once
 * packed, in the reply NNG sends (freed unwiped: docs/security.md).
 */
#include <string.h>

#include <openssl/crypto.h>

#include <kms/limits.h>
#include <kms/secmem.h>

#include "kms/format/blob.h"
#include "common/context.h"
#include "common/error.h"
#include "common/log.h"
#include "hsm/hsm.h"
#include "kms/authz/authz_consent.h"
#include "kms/authz/authz_enforce.h"
#include "kms/keys/keyring.h"
#include "kms/pipeline/ops.h"
#include "proto/status_wire.h"

typedef struct sealed {
	ProtobufCBinaryData blob;
	char *key_id;
	uint32_t key_version;
} sealed;

typedef struct opened {
	ProtobufCBinaryData plaintext;
	char *key_id;
	uint32_t key_version;
} opened;

/* A context value by key, or NULL. */
static const char *context_get(Kms__StringPair *const *pairs, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (pairs[i]->key && strcmp(pairs[i]->key, key) == 0)
			return pairs[i]->value;
	return NULL;
}

/* A per-data-principal key (docs/data-principals.md): the use goes to the
 * sub-key of the context's `dp`, made on a seal's first use; nothing for
 * any other key. */
static kms_status bind_data_principal(op_ctx *ctx, keyring_key_use *use,
                                      Kms__StringPair *const *pairs, size_t n, bool seal)
{
	if (!use->per_data_principal)
		return KMS_OK;
	const char *dp = context_get(pairs, n, "dp");
	KMS_ENSURE(dp, KMS_INVALID_ARGUMENT, "key %s keeps a key per data principal: put the "
	           "principal's pseudonym in the encryption context as \"dp\" (pseudonymize the "
	           "identifier first)", use->key_id_text);
	return keyring_dp_bind(ctx->d->keyring, use, dp, context_get(pairs, n, "purpose"), seal,
	                       ctx->now);
}

/* The canonical context encoding, in the arena. */
static kms_status encode_context(op_ctx *ctx, Kms__StringPair *const *pairs, size_t n,
                                 uint8_t **out, size_t *out_len)
{
	context_pair view[KMS_CONTEXT_MAX_PAIRS];
	size_t size;
	KMS_GUARD(context_check_count(n));
	for (size_t i = 0; i < n; i++)
		view[i] = context_pair_from_cstr(pairs[i]->key, pairs[i]->value);
	KMS_GUARD(context_encoded_size(view, n, &size));
	*out = arena_alloc(ctx->arena, size);
	KMS_ENSURE(*out, KMS_INTERNAL, "out of request memory");
	return context_encode(view, n, *out, size, out_len);
}

/* A seal under key_ref decided now: the key the reference names into
 * allowed, its policy and its consent. */
static kms_status seal_authorize(op_ctx *ctx, const char *key_ref, Kms__StringPair *const *pairs,
                                 size_t n_pairs, char allowed[static KMS_KEYID_TEXT_SIZE])
{
	KMS_GUARD(op_authorize_ref(ctx, key_ref, pairs, n_pairs, allowed));
	return authz_consent_check(ctx, allowed, pairs, n_pairs, CONSENT_USE_SEAL);
}

static kms_status seal(op_ctx *ctx, const char *key_ref, const uint8_t *plaintext,
                       size_t plaintext_len, Kms__StringPair *const *pairs, size_t n_pairs,
                       sealed *out)
{
	keyring_key_use use;
	blob_header header;
	uint8_t iv[KMS_BLOB_IV_LEN];
	uint8_t *context, *aad, *sealed_bytes, *blob;
	size_t context_len, aad_len, blob_len;

	char allowed[KMS_KEYID_TEXT_SIZE];
	KMS_GUARD(encode_context(ctx, pairs, n_pairs, &context, &context_len));
	/* Decided on the key the reference names now (authz_enforce.h)... */
	KMS_GUARD(seal_authorize(ctx, key_ref, pairs, n_pairs, allowed));
	KMS_GUARD(keyring_encrypt_key(ctx->d->keyring, key_ref, ctx->now, &use));
	op_note_key(ctx, use.key_id_text, use.version);
	/* ...which must be the key sealed under: an alias moved in between
	 * is refused, never used on a decision made for another key. */
	KMS_ENSURE(strcmp(use.key_id_text, allowed) == 0, KMS_UNAVAILABLE,
	           "%s now names another key than the one authorized (it was moved during "
	           "the request): retry", key_ref);
	KMS_GUARD(bind_data_principal(ctx, &use, pairs, n_pairs, true));
	/* The IV from the HSM's generator, not this process's DRBG: a reused
	 * IV under one key breaks GCM, and a kmsd restored from a VM snapshot
	 * or cloned would replay its DRBG's output; the HSM's state is not
	 * copied with the host's (docs/ciphertext-format.md, "Making a blob"). */
	KMS_GUARD(hsm_random(ctx->d->hsm, iv, sizeof iv));
	KMS_GUARD(blob_header_build(use.key_id, use.version, ctx->d->cfg.region,
	                            strlen(ctx->d->cfg.region), iv, plaintext_len, &header));
	aad = arena_alloc(ctx->arena, blob_aad_len(header.len, context_len));
	sealed_bytes = arena_alloc(ctx->arena, blob_sealed_len(&header));
	blob = arena_alloc(ctx->arena, blob_total_len(&header));
	KMS_ENSURE(aad && sealed_bytes && blob, KMS_INTERNAL, "out of request memory");
	KMS_GUARD(blob_aad_build(header.bytes, header.len, context, context_len, aad,
	                         blob_aad_len(header.len, context_len), &aad_len));
	KMS_GUARD(keyring_gcm_encrypt(ctx->d->keyring, &use, iv, aad, aad_len, plaintext,
	                              plaintext_len, sealed_bytes, blob_sealed_len(&header)));
	KMS_GUARD(blob_assemble(&header, sealed_bytes, blob_sealed_len(&header), blob,
	                        blob_total_len(&header), &blob_len));
	out->blob.data = blob;
	out->blob.len = blob_len;
	out->key_id = arena_strdup(ctx->arena, use.key_id_text);
	out->key_version = use.version;
	KMS_ENSURE(out->key_id, KMS_INTERNAL, "out of request memory");
	return KMS_OK;
}

/*
 * A blob that names a key or version this service does not have (or no
 * longer has) and a blob that does not authenticate get one answer, so
 * that Decrypt and ReEncrypt say nothing about which keys and versions
 * exist. The real reason goes to the audit entry and kmsd's log only.
 */
static kms_status cannot_open(op_ctx *ctx)
{
	ctx->audit.error = arena_strdup(ctx->arena, kms_error_message());
	kms_log("info", "request %s: ciphertext refused: %s", ctx->request_id,
	        kms_error_message());
	return KMS_FAIL(KMS_INVALID_CIPHERTEXT, "ciphertext cannot be decrypted with the key it "
	                "names (request %s)", ctx->request_id);
}

/* expected_key_ref: when not empty, the blob must be under that key. */
static kms_status open_blob(op_ctx *ctx, ProtobufCBinaryData blob_bytes,
                            const char *expected_key_ref, Kms__StringPair *const *pairs,
                            size_t n_pairs, opened *out)
{
	blob_view blob;
	keyring_key_use use;
	uint8_t *context, *aad, *plaintext;
	size_t context_len, aad_len;
	const char *region = ctx->d->cfg.region;

	KMS_GUARD(blob_parse(blob_bytes.data, blob_bytes.len, &blob));
	KMS_GUARD(blob_check_region(&blob, region, strlen(region)));
	char blob_key[KMS_KEYID_TEXT_SIZE];
	keyid_format(blob.key_id, blob_key);
	op_note_key(ctx, blob_key, blob.key_version);
	if (expected_key_ref && expected_key_ref[0]) {
		store_key expected;
		KMS_GUARD(keyring_resolve(ctx->d->keyring, expected_key_ref, &expected));
		KMS_ENSURE(strcmp(expected.id, blob_key) == 0, KMS_INVALID_CIPHERTEXT,
		           "the blob is under key %s, not %s", blob_key, expected.id);
	}
	/* The key the blob names, decided with this context before it is used;
	 * a key this service does not have gets the one answer below. */
	kms_status st = authz_enforce_key(ctx, blob_key, pairs, n_pairs);
	if (st == KMS_OK)
		st = authz_consent_check(ctx, blob_key, pairs, n_pairs, CONSENT_USE_OPEN);
	if (st == KMS_OK)
		st = keyring_decrypt_key(ctx->d->keyring, blob.key_id, blob.key_version, &use);
	if (st == KMS_OK)
		st = bind_data_principal(ctx, &use, pairs, n_pairs, false);
	if (st == KMS_NOT_FOUND)
		return cannot_open(ctx);
	KMS_GUARD(st);
	KMS_GUARD(encode_context(ctx, pairs, n_pairs, &context, &context_len));
	aad = arena_alloc(ctx->arena, blob_aad_len(blob.header_len, context_len));
	plaintext = arena_alloc(ctx->arena, blob.ciphertext_len);
	KMS_ENSURE(aad && plaintext, KMS_INTERNAL, "out of request memory");
	KMS_GUARD(blob_aad_build(blob.header, blob.header_len, context, context_len, aad,
	                         blob_aad_len(blob.header_len, context_len), &aad_len));
	st = keyring_gcm_decrypt(ctx->d->keyring, &use, blob.iv, aad, aad_len, blob.sealed,
	                         blob.sealed_len, plaintext, blob.ciphertext_len);
	if (st == KMS_INVALID_CIPHERTEXT) {
		(void)KMS_FAIL(KMS_INVALID_CIPHERTEXT, "blob under key %s version %u does not "
		               "authenticate: wrong encryption context, or altered", blob_key,
		               blob.key_version);
		return cannot_open(ctx);
	}
	KMS_GUARD(st);
	out->plaintext.data = plaintext;
	out->plaintext.len = blob.ciphertext_len;
	out->key_id = arena_strdup(ctx->arena, blob_key);
	out->key_version = blob.key_version;
	KMS_ENSURE(out->key_id, KMS_INTERNAL, "out of request memory");
	return KMS_OK;
}

/*
 * A request sent again and answered from its record (kms/pipeline/
 * records.h): authorized now as a seal under key_ref, which must still
 * name the key of the blob its first run made; that blob is opened again
 * (its plaintext into *plaintext, in the arena) without a second open
 * decision: it is this request's own seal.
 */
static kms_status reseal_recorded(op_ctx *ctx, const char *key_ref,
                                  Kms__StringPair *const *pairs, size_t n_pairs, sealed *s,
                                  ProtobufCBinaryData *plaintext)
{
	char allowed[KMS_KEYID_TEXT_SIZE];
	blob_view blob;
	keyring_key_use use;
	uint8_t *context, *aad, *clear;
	size_t context_len, aad_len;
	KMS_GUARD(seal_authorize(ctx, key_ref, pairs, n_pairs, allowed));
	KMS_ENSURE(ctx->record.blob, KMS_INTERNAL, "request %s: its record holds no ciphertext",
	           ctx->request_id);
	KMS_GUARD(blob_parse(ctx->record.blob, ctx->record.blob_len, &blob));
	char blob_key[KMS_KEYID_TEXT_SIZE];
	keyid_format(blob.key_id, blob_key);
	op_note_key(ctx, blob_key, blob.key_version);
	KMS_ENSURE(strcmp(blob_key, allowed) == 0, KMS_FAILED_PRECONDITION,
	           "request %s was answered before under key %s, and %s now names key %s: "
	           "send it again with a new request id", ctx->request_id, blob_key, key_ref,
	           allowed);
	KMS_GUARD(keyring_decrypt_key(ctx->d->keyring, blob.key_id, blob.key_version, &use));
	KMS_GUARD(bind_data_principal(ctx, &use, pairs, n_pairs, false));
	KMS_GUARD(encode_context(ctx, pairs, n_pairs, &context, &context_len));
	aad = arena_alloc(ctx->arena, blob_aad_len(blob.header_len, context_len));
	clear = arena_alloc(ctx->arena, blob.ciphertext_len ? blob.ciphertext_len : 1);
	KMS_ENSURE(aad && clear, KMS_INTERNAL, "out of request memory");
	KMS_GUARD(blob_aad_build(blob.header, blob.header_len, context, context_len, aad,
	                         blob_aad_len(blob.header_len, context_len), &aad_len));
	KMS_GUARD(keyring_gcm_decrypt(ctx->d->keyring, &use, blob.iv, aad, aad_len, blob.sealed,
	                              blob.sealed_len, clear, blob.ciphertext_len));
	s->blob.data = ctx->record.blob;
	s->blob.len = ctx->record.blob_len;
	s->key_id = arena_strdup(ctx->arena, blob_key);
	s->key_version = blob.key_version;
	KMS_ENSURE(s->key_id, KMS_INTERNAL, "out of request memory");
	plaintext->data = clear;
	plaintext->len = blob.ciphertext_len;
	return KMS_OK;
}

static kms_status sent_again_differs(op_ctx *ctx)
{
	return KMS_FAIL(KMS_INVALID_ARGUMENT, "request id %s was used before for another "
	                "request: send each request with an id of its own", ctx->request_id);
}

static kms_status encrypt_one(op_ctx *ctx, const Kms__EncryptRequest *r,
                              Kms__EncryptResponse **out)
{
	sealed s;
	if (ctx->record.again) {
		/* The record's digest leaves the plaintext out: the blob must
		 * hold the plaintext sent now. */
		ProtobufCBinaryData was;
		KMS_GUARD(reseal_recorded(ctx, r->key_id, r->encryption_context,
		                          r->n_encryption_context, &s, &was));
		bool same = was.len == r->plaintext.len &&
		            CRYPTO_memcmp(was.data, r->plaintext.data, was.len) == 0;
		kms_wipe(was.data, was.len);
		if (!same)
			return sent_again_differs(ctx);
	} else {
		KMS_GUARD(seal(ctx, r->key_id, r->plaintext.data, r->plaintext.len,
		               r->encryption_context, r->n_encryption_context, &s));
	}
	Kms__EncryptResponse *e = arena_alloc(ctx->arena, sizeof *e);
	KMS_ENSURE(e, KMS_INTERNAL, "out of request memory");
	kms__encrypt_response__init(e);
	e->ciphertext_blob = s.blob;
	e->key_id = s.key_id;
	e->key_version = s.key_version;
	*out = e;
	return KMS_OK;
}

static kms_status decrypt_one(op_ctx *ctx, const Kms__DecryptRequest *r,
                              Kms__DecryptResponse **out)
{
	opened o;
	KMS_GUARD(open_blob(ctx, r->ciphertext_blob, r->key_id, r->encryption_context,
	                    r->n_encryption_context, &o));
	Kms__DecryptResponse *d = arena_alloc(ctx->arena, sizeof *d);
	KMS_ENSURE(d, KMS_INTERNAL, "out of request memory");
	kms__decrypt_response__init(d);
	d->plaintext = o.plaintext;
	d->key_id = o.key_id;
	d->key_version = o.key_version;
	*out = d;
	return KMS_OK;
}

/* A fresh data key from the HSM, sealed under key_ref. */
static kms_status data_key(op_ctx *ctx, const char *key_ref, Kms__StringPair *const *pairs,
                           size_t n_pairs, ProtobufCBinaryData *plaintext, sealed *s)
{
	uint8_t *key = arena_alloc(ctx->arena, KMS_DATA_KEY_LEN);
	KMS_ENSURE(key, KMS_INTERNAL, "out of request memory");
	KMS_GUARD(hsm_random(ctx->d->hsm, key, KMS_DATA_KEY_LEN));
	KMS_GUARD(seal(ctx, key_ref, key, KMS_DATA_KEY_LEN, pairs, n_pairs, s));
	plaintext->data = key;
	plaintext->len = KMS_DATA_KEY_LEN;
	return KMS_OK;
}

/* data_key, or for a request sent again the data key its first run made
 * (kms/pipeline/records.h). */
static kms_status data_key_once(op_ctx *ctx, const char *key_ref, Kms__StringPair *const *pairs,
                                size_t n_pairs, ProtobufCBinaryData *plaintext, sealed *s)
{
	if (!ctx->record.again)
		return data_key(ctx, key_ref, pairs, n_pairs, plaintext, s);
	KMS_GUARD(reseal_recorded(ctx, key_ref, pairs, n_pairs, s, plaintext));
	KMS_ENSURE(plaintext->len == KMS_DATA_KEY_LEN, KMS_INTERNAL,
	           "request %s: its recorded blob holds %zu bytes, not a data key",
	           ctx->request_id, plaintext->len);
	return KMS_OK;
}

static kms_status gdk_one(op_ctx *ctx, const Kms__GenerateDataKeyRequest *r,
                          Kms__GenerateDataKeyResponse **out)
{
	sealed s;
	ProtobufCBinaryData key;
	KMS_GUARD(data_key_once(ctx, r->key_id, r->encryption_context, r->n_encryption_context,
	                        &key, &s));
	Kms__GenerateDataKeyResponse *g = arena_alloc(ctx->arena, sizeof *g);
	KMS_ENSURE(g, KMS_INTERNAL, "out of request memory");
	kms__generate_data_key_response__init(g);
	g->plaintext = key;
	g->ciphertext_blob = s.blob;
	g->key_id = s.key_id;
	g->key_version = s.key_version;
	*out = g;
	return KMS_OK;
}

kms_status op_encrypt(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	KMS_GUARD(encrypt_one(ctx, req->encrypt, &resp->encrypt));
	resp->result_case = KMS__RESPONSE__RESULT_ENCRYPT;
	return KMS_OK;
}

kms_status op_decrypt(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	KMS_GUARD(decrypt_one(ctx, req->decrypt, &resp->decrypt));
	resp->result_case = KMS__RESPONSE__RESULT_DECRYPT;
	return KMS_OK;
}

kms_status op_re_encrypt(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__ReEncryptRequest *r = req->re_encrypt;
	opened o;
	sealed s;
	KMS_GUARD(open_blob(ctx, r->ciphertext_blob, NULL, r->source_encryption_context,
	                    r->n_source_encryption_context, &o));
	/* No destination: the source key's primary version (after a rotation). */
	const char *dest = r->destination_key_id[0] ? r->destination_key_id : o.key_id;
	if (ctx->record.again) {
		/* Sent again (kms/pipeline/records.h): the source was opened with
		 * every check above; the answer is the blob the first run made,
		 * authorized now as a seal and checked to hold the same plaintext. */
		ProtobufCBinaryData was;
		kms_status st = reseal_recorded(ctx, dest, r->destination_encryption_context,
		                                r->n_destination_encryption_context, &s, &was);
		bool same = st == KMS_OK && was.len == o.plaintext.len &&
		            CRYPTO_memcmp(was.data, o.plaintext.data, was.len) == 0;
		if (st == KMS_OK)
			kms_wipe(was.data, was.len);
		kms_wipe(o.plaintext.data, o.plaintext.len);
		KMS_GUARD(st);
		if (!same)
			return sent_again_differs(ctx);
	} else {
		kms_status st = seal(ctx, dest, o.plaintext.data, o.plaintext.len,
		                     r->destination_encryption_context,
		                     r->n_destination_encryption_context, &s);
		kms_wipe(o.plaintext.data, o.plaintext.len);
		KMS_GUARD(st);
	}
	Kms__ReEncryptResponse *re = arena_alloc(ctx->arena, sizeof *re);
	KMS_ENSURE(re, KMS_INTERNAL, "out of request memory");
	kms__re_encrypt_response__init(re);
	re->ciphertext_blob = s.blob;
	re->source_key_id = o.key_id;
	re->source_key_version = o.key_version;
	re->key_id = s.key_id;
	re->key_version = s.key_version;
	resp->re_encrypt = re;
	resp->result_case = KMS__RESPONSE__RESULT_RE_ENCRYPT;
	return KMS_OK;
}

kms_status op_generate_data_key(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	KMS_GUARD(gdk_one(ctx, req->generate_data_key, &resp->generate_data_key));
	resp->result_case = KMS__RESPONSE__RESULT_GENERATE_DATA_KEY;
	return KMS_OK;
}

kms_status op_generate_data_key_without_plaintext(op_ctx *ctx, const Kms__Request *req,
                                                  Kms__Response *resp)
{
	const Kms__GenerateDataKeyWithoutPlaintextRequest *r =
	        req->generate_data_key_without_plaintext;
	sealed s;
	ProtobufCBinaryData key;
	KMS_GUARD(data_key_once(ctx, r->key_id, r->encryption_context, r->n_encryption_context,
	                        &key, &s));
	kms_wipe(key.data, key.len); /* never leaves the daemon */
	Kms__GenerateDataKeyWithoutPlaintextResponse *g = arena_alloc(ctx->arena, sizeof *g);
	KMS_ENSURE(g, KMS_INTERNAL, "out of request memory");
	kms__generate_data_key_without_plaintext_response__init(g);
	g->ciphertext_blob = s.blob;
	g->key_id = s.key_id;
	g->key_version = s.key_version;
	resp->generate_data_key_without_plaintext = g;
	resp->result_case = KMS__RESPONSE__RESULT_GENERATE_DATA_KEY_WITHOUT_PLAINTEXT;
	return KMS_OK;
}

/* Records how item i ended for the audit entry: the key it noted (its own
 * only: the slot is cleared before each item), version and status. */
static kms_status note_batch_item(op_ctx *ctx, size_t i, kms_status st)
{
	op_audit_item *item = &ctx->audit.items[i];
	item->status = st;
	item->key_version = ctx->audit.key_version;
	if (ctx->audit.key_id[0]) {
		item->key_id = arena_strdup(ctx->arena, ctx->audit.key_id);
		KMS_ENSURE(item->key_id, KMS_INTERNAL, "out of request memory");
	}
	ctx->audit.n_items = i + 1;
	ctx->audit.batch_failed += st != KMS_OK;
	return KMS_OK;
}

/* One item of a batch: does its work (the item has validated) and sets
 * *result to its response, allocated from ctx->arena. */
typedef kms_status (*batch_item_fn)(op_ctx *ctx, const ProtobufCMessage *item,
                                    ProtobufCMessage **result);

/*
 * Batches: each item is validated (the row's validate_item) and handled
 * alone, so one bad item fails alone with its own status and message. The
 * audit entry records every item (its key, version, context and status)
 * and, as the request's own key, the first key an item used (each item
 * notes its key over the one before, so the first is restored at the end).
 * The request's items and the reply's results are reached through the
 * descriptors (ops_batch_shape), so one function serves every batch.
 */
static kms_status batch_run(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp,
                            batch_item_fn run_item)
{
	op_batch_shape shape;
	KMS_GUARD(ops_batch_shape(ctx->op, &shape));
	const ProtobufCMessageDescriptor *reply_type = shape.reply->descriptor;
	const ProtobufCMessageDescriptor *result_type = shape.results->descriptor;
	const ProtobufCMessage *batch = ops_field_get(&req->base, shape.request);
	size_t n = ops_field_count(batch, shape.items);

	ProtobufCMessage *out = arena_alloc(ctx->arena, reply_type->sizeof_message);
	void **results = arena_alloc(ctx->arena, n * sizeof *results);
	char first_key[sizeof ctx->audit.key_id] = "";
	uint32_t first_version = 0;
	ctx->audit.items = arena_alloc(ctx->arena, n * sizeof *ctx->audit.items);
	KMS_ENSURE(out && results && ctx->audit.items, KMS_INTERNAL,
	           "out of request memory");
	reply_type->message_init(out);
	for (size_t i = 0; i < n; i++) {
		ProtobufCMessage *r = arena_alloc(ctx->arena, result_type->sizeof_message);
		KMS_ENSURE(r, KMS_INTERNAL, "out of request memory");
		result_type->message_init(r);
		kms_error_clear();
		ctx->audit.key_id[0] = '\0'; /* this item's key only */
		ctx->audit.key_version = 0;
		ctx->audit.error = NULL;
		const ProtobufCMessage *item = ops_field_item(batch, shape.items, i);
		ProtobufCMessage *done = NULL;
		kms_status st = ctx->op->validate_item(item);
		if (st == KMS_OK)
			st = run_item(ctx, item, &done);
		ops_field_set_enum(r, shape.status, (int)kms_status_to_wire(st));
		if (st == KMS_OK) {
			ops_field_set(r, shape.result, done);
		} else {
			char *message = arena_printf(ctx->arena, "item %zu: %s", i,
			                             kms_error_message());
			KMS_ENSURE(message, KMS_INTERNAL, "out of request memory");
			(void)kms_error_strip_paths(message); /* as the reply's own message */
			ops_field_set(r, shape.message, message);
		}
		results[i] = r;
		KMS_GUARD(note_batch_item(ctx, i, st));
		if (!first_key[0] && ctx->audit.key_id[0]) {
			memcpy(first_key, ctx->audit.key_id, sizeof first_key);
			first_version = ctx->audit.key_version;
		}
	}
	if (first_key[0])
		op_note_key(ctx, first_key, first_version);
	ops_field_set_count(out, shape.results, n);
	ops_field_set(out, shape.results, results);
	ops_field_set(&resp->base, shape.reply, out);
	resp->result_case = (Kms__Response__ResultCase)shape.reply->id;
	return KMS_OK;
}

static kms_status encrypt_item(op_ctx *ctx, const ProtobufCMessage *item,
                               ProtobufCMessage **result)
{
	Kms__EncryptResponse *e = NULL;
	KMS_GUARD(encrypt_one(ctx, (const Kms__EncryptRequest *)item, &e));
	*result = &e->base;
	return KMS_OK;
}

static kms_status decrypt_item(op_ctx *ctx, const ProtobufCMessage *item,
                               ProtobufCMessage **result)
{
	Kms__DecryptResponse *d = NULL;
	KMS_GUARD(decrypt_one(ctx, (const Kms__DecryptRequest *)item, &d));
	*result = &d->base;
	return KMS_OK;
}

static kms_status gdk_item(op_ctx *ctx, const ProtobufCMessage *item, ProtobufCMessage **result)
{
	Kms__GenerateDataKeyResponse *g = NULL;
	KMS_GUARD(gdk_one(ctx, (const Kms__GenerateDataKeyRequest *)item, &g));
	*result = &g->base;
	return KMS_OK;
}

kms_status op_batch_encrypt(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	return batch_run(ctx, req, resp, encrypt_item);
}

kms_status op_batch_decrypt(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	return batch_run(ctx, req, resp, decrypt_item);
}

kms_status op_batch_generate_data_key(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	return batch_run(ctx, req, resp, gdk_item);
}
