/*
 * client_data.c: the data-plane calls (encrypt, decrypt, data keys, random,
 * batches).
 */
#include "clients/lib/client_internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

/* ---- output structs ---- */

void kms_ciphertext_free(kms_ciphertext *ct)
{
	if (!ct)
		return;
	free(ct->blob);
	memset(ct, 0, sizeof *ct);
}

void kms_plaintext_free(kms_plaintext *pt)
{
	if (!pt)
		return;
	kms_secure_free(pt->bytes);
	memset(pt, 0, sizeof *pt);
}

void kms_data_key_free(kms_data_key *dk)
{
	if (!dk)
		return;
	kms_secure_free(dk->plaintext);
	free(dk->blob);
	memset(dk, 0, sizeof *dk);
}

void kms_reencrypted_free(kms_reencrypted *re)
{
	if (!re)
		return;
	kms_ciphertext_free(&re->ciphertext);
	memset(re, 0, sizeof *re);
}

static kms_status ciphertext_from(const Kms__EncryptResponse *r, kms_ciphertext *out,
                                  kms_error *err)
{
	kms_status st;
	KMS_GUARD_OUT(st, client_copy_key_id(out->key_id, r->key_id, err));
	KMS_GUARD_OUT(st, client_dup_bytes(r->ciphertext_blob, &out->blob,
	                                   &out->blob_len, err));
	out->key_version = r->key_version;
out:
	if (st != KMS_OK)
		kms_ciphertext_free(out);
	return st;
}

static kms_status plaintext_from(const Kms__DecryptResponse *r, kms_plaintext *out,
                                 kms_error *err)
{
	kms_status st;
	KMS_GUARD_OUT(st, client_copy_key_id(out->key_id, r->key_id, err));
	KMS_GUARD_OUT(st, client_dup_secret(r->plaintext, &out->bytes, &out->len, err));
	out->key_version = r->key_version;
out:
	if (st != KMS_OK)
		kms_plaintext_free(out);
	return st;
}

static kms_status data_key_from(const Kms__GenerateDataKeyResponse *r, kms_data_key *out,
                                kms_error *err)
{
	kms_status st;
	if (r->plaintext.len != KMS_DATA_KEY_LEN)
		return client_protocol_error(err, "generate_data_key",
		                             "the data key is not 32 bytes");
	KMS_GUARD_OUT(st, client_copy_key_id(out->key_id, r->key_id, err));
	KMS_GUARD_OUT(st, client_dup_secret(r->plaintext, &out->plaintext,
	                                    &out->plaintext_len, err));
	KMS_GUARD_OUT(st, client_dup_bytes(r->ciphertext_blob, &out->blob,
	                                   &out->blob_len, err));
	out->key_version = r->key_version;
out:
	if (st != KMS_OK)
		kms_data_key_free(out);
	return st;
}

/* ---- argument checks, before anything is sent ---- */

static kms_status check_plaintext(const uint8_t *plaintext, size_t len, const char *op,
                                  kms_error *err)
{
	if (!plaintext || len < KMS_ENCRYPT_MIN_PLAINTEXT || len > KMS_ENCRYPT_MAX_PLAINTEXT)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s: plaintext is %zu bytes; it must be %d..%d", op,
		                   plaintext ? len : 0, KMS_ENCRYPT_MIN_PLAINTEXT,
		                   KMS_ENCRYPT_MAX_PLAINTEXT);
	return KMS_OK;
}

static kms_status check_blob(const uint8_t *blob, size_t len, const char *op,
                             kms_error *err)
{
	if (!blob || len == 0)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s: a ciphertext blob is required", op);
	return KMS_OK;
}

/* How a batch starts: resets *err, checks the batch's size and zeroes the
 * n results (result_size bytes each), so a failed batch leaves nothing. */
static kms_status batch_begin(const void *items, size_t n, void *results, size_t result_size,
                              const char *op, kms_error *err)
{
	client_error_clear(err);
	if (!items || !results || n == 0 || n > KMS_BATCH_MAX)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s: a batch is 1..%d items with a result array",
		                   op, KMS_BATCH_MAX);
	memset(results, 0, n * result_size);
	return KMS_OK;
}

/* ---- single calls ---- */

static kms_status encrypt_request(Kms__EncryptRequest *op, const char *key_id,
                                  const uint8_t *plaintext, size_t plaintext_len,
                                  const kms_context_pair *context, size_t n_context,
                                  client_arena *arena, kms_error *err)
{
	KMS_GUARD(client_need(key_id, "encrypt", "a key id", err));
	KMS_GUARD(check_plaintext(plaintext, plaintext_len, "encrypt", err));
	kms__encrypt_request__init(op);
	op->key_id = client_lend(key_id);
	op->plaintext.data = client_lend_bytes(plaintext);
	op->plaintext.len = plaintext_len;
	return client_pairs(context, n_context, "encryption context", arena,
	                    &op->encryption_context, &op->n_encryption_context, err);
}

kms_status kms_encrypt(kms_client *client, const char *key_id, const uint8_t *plaintext,
                       size_t plaintext_len, const kms_context_pair *context,
                       size_t n_context, kms_ciphertext *out, kms_error *err)
{
	client_arena arena = { 0 };
	Kms__Request req;
	Kms__EncryptRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(client_begin(out, sizeof *out, "encrypt", err));
	kms__request__init(&req);
	KMS_GUARD_OUT(st, encrypt_request(&op, key_id, plaintext, plaintext_len, context,
	                                  n_context, &arena, err));
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &op;
	KMS_GUARD_OUT(st, client_roundtrip(client, &req, KMS__RESPONSE__RESULT_ENCRYPT,
	                                   &resp, err));
	st = ciphertext_from(resp->encrypt, out, err);
out:
	kms_response_free(resp);
	client_arena_free(&arena);
	return st;
}

static kms_status decrypt_request(Kms__DecryptRequest *op, const uint8_t *blob,
                                  size_t blob_len, const kms_context_pair *context,
                                  size_t n_context, const char *key_id,
                                  client_arena *arena, kms_error *err)
{
	KMS_GUARD(check_blob(blob, blob_len, "decrypt", err));
	kms__decrypt_request__init(op);
	op->ciphertext_blob.data = client_lend_bytes(blob);
	op->ciphertext_blob.len = blob_len;
	if (key_id)
		op->key_id = client_lend(key_id);
	return client_pairs(context, n_context, "encryption context", arena,
	                    &op->encryption_context, &op->n_encryption_context, err);
}

kms_status kms_decrypt(kms_client *client, const uint8_t *blob, size_t blob_len,
                       const kms_context_pair *context, size_t n_context,
                       const char *key_id, kms_plaintext *out, kms_error *err)
{
	client_arena arena = { 0 };
	Kms__Request req;
	Kms__DecryptRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(client_begin(out, sizeof *out, "decrypt", err));
	kms__request__init(&req);
	KMS_GUARD_OUT(st, decrypt_request(&op, blob, blob_len, context, n_context, key_id,
	                                  &arena, err));
	req.op_case = KMS__REQUEST__OP_DECRYPT;
	req.decrypt = &op;
	KMS_GUARD_OUT(st, client_roundtrip(client, &req, KMS__RESPONSE__RESULT_DECRYPT,
	                                   &resp, err));
	st = plaintext_from(resp->decrypt, out, err);
out:
	kms_response_free(resp);
	client_arena_free(&arena);
	return st;
}

kms_status kms_re_encrypt(kms_client *client, const uint8_t *blob, size_t blob_len,
                          const kms_context_pair *source_context, size_t n_source_context,
                          const char *destination_key_id,
                          const kms_context_pair *destination_context,
                          size_t n_destination_context, kms_reencrypted *out,
                          kms_error *err)
{
	client_arena arena = { 0 };
	Kms__Request req;
	Kms__ReEncryptRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(client_begin(out, sizeof *out, "re_encrypt", err));
	kms__request__init(&req);
	kms__re_encrypt_request__init(&op);
	KMS_GUARD_OUT(st, check_blob(blob, blob_len, "re_encrypt", err));
	op.ciphertext_blob.data = client_lend_bytes(blob);
	op.ciphertext_blob.len = blob_len;
	if (destination_key_id)
		op.destination_key_id = client_lend(destination_key_id);
	KMS_GUARD_OUT(st, client_pairs(source_context, n_source_context,
	                               "source encryption context", &arena,
	                               &op.source_encryption_context,
	                               &op.n_source_encryption_context, err));
	KMS_GUARD_OUT(st, client_pairs(destination_context, n_destination_context,
	                               "destination encryption context", &arena,
	                               &op.destination_encryption_context,
	                               &op.n_destination_encryption_context, err));
	req.op_case = KMS__REQUEST__OP_RE_ENCRYPT;
	req.re_encrypt = &op;
	KMS_GUARD_OUT(st, client_roundtrip(client, &req, KMS__RESPONSE__RESULT_RE_ENCRYPT,
	                                   &resp, err));
	const Kms__ReEncryptResponse *r = resp->re_encrypt;
	KMS_GUARD_OUT(st, client_copy_key_id(out->source_key_id, r->source_key_id, err));
	KMS_GUARD_OUT(st, client_copy_key_id(out->ciphertext.key_id, r->key_id, err));
	KMS_GUARD_OUT(st, client_dup_bytes(r->ciphertext_blob, &out->ciphertext.blob,
	                                   &out->ciphertext.blob_len, err));
	out->source_key_version = r->source_key_version;
	out->ciphertext.key_version = r->key_version;
out:
	if (st != KMS_OK)
		kms_reencrypted_free(out);
	kms_response_free(resp);
	client_arena_free(&arena);
	return st;
}

static kms_status data_key_request(Kms__GenerateDataKeyRequest *op, const char *key_id,
                                   const kms_context_pair *context, size_t n_context,
                                   client_arena *arena, kms_error *err)
{
	KMS_GUARD(client_need(key_id, "generate_data_key", "a key id", err));
	kms__generate_data_key_request__init(op);
	op->key_id = client_lend(key_id);
	return client_pairs(context, n_context, "encryption context", arena,
	                    &op->encryption_context, &op->n_encryption_context, err);
}

kms_status kms_generate_data_key(kms_client *client, const char *key_id,
                                 const kms_context_pair *context, size_t n_context,
                                 kms_data_key *out, kms_error *err)
{
	client_arena arena = { 0 };
	Kms__Request req;
	Kms__GenerateDataKeyRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(client_begin(out, sizeof *out, "generate_data_key", err));
	kms__request__init(&req);
	KMS_GUARD_OUT(st, data_key_request(&op, key_id, context, n_context, &arena, err));
	req.op_case = KMS__REQUEST__OP_GENERATE_DATA_KEY;
	req.generate_data_key = &op;
	KMS_GUARD_OUT(st, client_roundtrip(client, &req,
	                                   KMS__RESPONSE__RESULT_GENERATE_DATA_KEY,
	                                   &resp, err));
	st = data_key_from(resp->generate_data_key, out, err);
out:
	kms_response_free(resp);
	client_arena_free(&arena);
	return st;
}

kms_status kms_generate_data_key_without_plaintext(kms_client *client, const char *key_id,
                                                   const kms_context_pair *context,
                                                   size_t n_context, kms_data_key *out,
                                                   kms_error *err)
{
	client_arena arena = { 0 };
	Kms__Request req;
	Kms__GenerateDataKeyWithoutPlaintextRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(client_begin(out, sizeof *out, "generate_data_key_without_plaintext", err));
	kms__request__init(&req);
	kms__generate_data_key_without_plaintext_request__init(&op);
	KMS_GUARD_OUT(st, client_need(key_id, "generate_data_key_without_plaintext",
	                              "a key id", err));
	op.key_id = client_lend(key_id);
	KMS_GUARD_OUT(st, client_pairs(context, n_context, "encryption context", &arena,
	                               &op.encryption_context, &op.n_encryption_context, err));
	req.op_case = KMS__REQUEST__OP_GENERATE_DATA_KEY_WITHOUT_PLAINTEXT;
	req.generate_data_key_without_plaintext = &op;
	KMS_GUARD_OUT(st, client_roundtrip(client, &req,
	                                   KMS__RESPONSE__RESULT_GENERATE_DATA_KEY_WITHOUT_PLAINTEXT,
	                                   &resp, err));
	const Kms__GenerateDataKeyWithoutPlaintextResponse *r =
		resp->generate_data_key_without_plaintext;
	KMS_GUARD_OUT(st, client_copy_key_id(out->key_id, r->key_id, err));
	KMS_GUARD_OUT(st, client_dup_bytes(r->ciphertext_blob, &out->blob,
	                                   &out->blob_len, err));
	out->key_version = r->key_version;
out:
	if (st != KMS_OK)
		kms_data_key_free(out);
	kms_response_free(resp);
	client_arena_free(&arena);
	return st;
}

kms_status kms_generate_random(kms_client *client, size_t n, uint8_t **random,
                               kms_error *err)
{
	Kms__Request req;
	Kms__GenerateRandomRequest op;
	Kms__Response *resp = NULL;
	kms_status st;
	size_t got = 0;

	client_error_clear(err);
	if (!random)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "generate_random: random is required");
	*random = NULL;
	if (n == 0 || n > KMS_GENERATE_RANDOM_MAX)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "generate_random: %zu bytes; it gives 1..%d", n,
		                   KMS_GENERATE_RANDOM_MAX);
	kms__request__init(&req);
	kms__generate_random_request__init(&op);
	op.number_of_bytes = (uint32_t)n;
	req.op_case = KMS__REQUEST__OP_GENERATE_RANDOM;
	req.generate_random = &op;
	KMS_GUARD_OUT(st, client_roundtrip(client, &req,
	                                   KMS__RESPONSE__RESULT_GENERATE_RANDOM,
	                                   &resp, err));
	if (resp->generate_random->random.len != n) {
		st = client_protocol_error(err, "generate_random",
		                           "not the number of bytes asked for");
		goto out;
	}
	st = client_dup_secret(resp->generate_random->random, random, &got, err);
out:
	kms_response_free(resp);
	return st;
}

/* ---- batches ---- */

/* A batch answer has one result per item, in order. */
static kms_status check_result_count(size_t n_results, size_t n_items, const char *op,
                                     kms_error *err)
{
	if (n_results != n_items)
		return client_protocol_error(err, op, "not one result per item");
	return KMS_OK;
}

/* The answer's per-item status and message, checked. */
static kms_status item_status(int wire, const char *message, const void *result,
                              kms_status *status, char out_message[KMS_ERROR_MESSAGE_MAX],
                              const char *op, kms_error *err)
{
	*status = kms_status_from_wire(wire);
	client_copy_clean(out_message, KMS_ERROR_MESSAGE_MAX, message);
	if (*status == KMS_OK && !result)
		return client_protocol_error(err, op, "an OK item has no result");
	return KMS_OK;
}

/*
 * What differs between the batch calls: the wire types on each side and how
 * one item crosses them. batch_call does the rest for all three.
 */
typedef struct batch_kind {
	const char *op;
	size_t result_size; /* one caller's result (kms_encrypt_result, ...) */
	Kms__Response__ResultCase result_case;
	/* Points req at a fresh batch of n zeroed wire items in the arena; NULL
	 * when out of memory. Returns the items' array (Kms__EncryptRequest[n],
	 * ...). */
	void *(*new_batch)(Kms__Request *req, size_t n, client_arena *arena);
	/* Fills wire item i from the caller's item i, checking its arguments. */
	kms_status (*item_request)(void *subs, const void *items, size_t i,
	                           client_arena *arena, kms_error *err);
	size_t (*n_answers)(const Kms__Response *resp);
	/* Answer i into the caller's result i: its status and message and, when
	 * OK, its output. */
	kms_status (*take)(const Kms__Response *resp, size_t i, void *results,
	                   kms_error *err);
	void (*results_free)(void *results, size_t n);
} batch_kind;

static kms_status batch_call(kms_client *client, const batch_kind *kind, const void *items,
                             size_t n_items, void *results, kms_error *err)
{
	client_arena arena = { 0 };
	Kms__Request req;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(batch_begin(items, n_items, results, kind->result_size, kind->op, err));
	kms__request__init(&req);
	void *subs = kind->new_batch(&req, n_items, &arena);
	if (!subs) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n_items; i++)
		KMS_GUARD_OUT(st, kind->item_request(subs, items, i, &arena, err));
	KMS_GUARD_OUT(st, client_roundtrip(client, &req, kind->result_case, &resp, err));
	KMS_GUARD_OUT(st, check_result_count(kind->n_answers(resp), n_items, kind->op, err));
	for (size_t i = 0; i < n_items; i++)
		KMS_GUARD_OUT(st, kind->take(resp, i, results, err));
out:
	if (st != KMS_OK)
		kind->results_free(results, n_items);
	kms_response_free(resp);
	client_arena_free(&arena);
	return st;
}

/* ---- batch encrypt ---- */

static void *encrypt_batch_new(Kms__Request *req, size_t n, client_arena *arena)
{
	Kms__BatchEncryptRequest *op = client_arena_alloc(arena, sizeof *op);
	Kms__EncryptRequest *subs = client_arena_alloc(arena, n * sizeof *subs);
	Kms__EncryptRequest **ptrs = client_arena_alloc(arena, n * sizeof *ptrs);
	if (!op || !subs || !ptrs)
		return NULL;
	kms__batch_encrypt_request__init(op);
	for (size_t i = 0; i < n; i++)
		ptrs[i] = &subs[i];
	op->n_items = n;
	op->items = ptrs;
	req->op_case = KMS__REQUEST__OP_BATCH_ENCRYPT;
	req->batch_encrypt = op;
	return subs;
}

static kms_status encrypt_item_request(void *subs, const void *items, size_t i,
                                       client_arena *arena, kms_error *err)
{
	const kms_encrypt_item *item = (const kms_encrypt_item *)items + i;
	return encrypt_request((Kms__EncryptRequest *)subs + i, item->key_id, item->plaintext,
	                       item->plaintext_len, item->context, item->n_context, arena, err);
}

static size_t encrypt_answers(const Kms__Response *resp)
{
	return resp->batch_encrypt->n_results;
}

static kms_status encrypt_take(const Kms__Response *resp, size_t i, void *results,
                               kms_error *err)
{
	const Kms__BatchEncryptResult *item = resp->batch_encrypt->results[i];
	kms_encrypt_result *out = (kms_encrypt_result *)results + i;
	KMS_GUARD(item_status((int)item->status, item->message, item->result, &out->status,
	                      out->message, "batch_encrypt", err));
	return out->status == KMS_OK ? ciphertext_from(item->result, &out->ciphertext, err)
	                             : KMS_OK;
}

static void encrypt_results_free(void *results, size_t n)
{
	kms_encrypt_results_free(results, n);
}

static const batch_kind batch_encrypt = {
	.op = "batch_encrypt",
	.result_size = sizeof(kms_encrypt_result),
	.result_case = KMS__RESPONSE__RESULT_BATCH_ENCRYPT,
	.new_batch = encrypt_batch_new,
	.item_request = encrypt_item_request,
	.n_answers = encrypt_answers,
	.take = encrypt_take,
	.results_free = encrypt_results_free,
};

kms_status kms_batch_encrypt(kms_client *client, const kms_encrypt_item *items,
                             size_t n_items, kms_encrypt_result *results,
                             kms_error *err)
{
	return batch_call(client, &batch_encrypt, items, n_items, results, err);
}

void kms_encrypt_results_free(kms_encrypt_result *results, size_t n)
{
	for (size_t i = 0; results && i < n; i++) {
		kms_ciphertext_free(&results[i].ciphertext);
		memset(&results[i], 0, sizeof results[i]);
	}
}

/* ---- batch decrypt ---- */

static void *decrypt_batch_new(Kms__Request *req, size_t n, client_arena *arena)
{
	Kms__BatchDecryptRequest *op = client_arena_alloc(arena, sizeof *op);
	Kms__DecryptRequest *subs = client_arena_alloc(arena, n * sizeof *subs);
	Kms__DecryptRequest **ptrs = client_arena_alloc(arena, n * sizeof *ptrs);
	if (!op || !subs || !ptrs)
		return NULL;
	kms__batch_decrypt_request__init(op);
	for (size_t i = 0; i < n; i++)
		ptrs[i] = &subs[i];
	op->n_items = n;
	op->items = ptrs;
	req->op_case = KMS__REQUEST__OP_BATCH_DECRYPT;
	req->batch_decrypt = op;
	return subs;
}

static kms_status decrypt_item_request(void *subs, const void *items, size_t i,
                                       client_arena *arena, kms_error *err)
{
	const kms_decrypt_item *item = (const kms_decrypt_item *)items + i;
	return decrypt_request((Kms__DecryptRequest *)subs + i, item->blob, item->blob_len,
	                       item->context, item->n_context, item->key_id, arena, err);
}

static size_t decrypt_answers(const Kms__Response *resp)
{
	return resp->batch_decrypt->n_results;
}

static kms_status decrypt_take(const Kms__Response *resp, size_t i, void *results,
                               kms_error *err)
{
	const Kms__BatchDecryptResult *item = resp->batch_decrypt->results[i];
	kms_decrypt_result *out = (kms_decrypt_result *)results + i;
	KMS_GUARD(item_status((int)item->status, item->message, item->result, &out->status,
	                      out->message, "batch_decrypt", err));
	return out->status == KMS_OK ? plaintext_from(item->result, &out->plaintext, err)
	                             : KMS_OK;
}

static void decrypt_results_free(void *results, size_t n)
{
	kms_decrypt_results_free(results, n);
}

static const batch_kind batch_decrypt = {
	.op = "batch_decrypt",
	.result_size = sizeof(kms_decrypt_result),
	.result_case = KMS__RESPONSE__RESULT_BATCH_DECRYPT,
	.new_batch = decrypt_batch_new,
	.item_request = decrypt_item_request,
	.n_answers = decrypt_answers,
	.take = decrypt_take,
	.results_free = decrypt_results_free,
};

kms_status kms_batch_decrypt(kms_client *client, const kms_decrypt_item *items,
                             size_t n_items, kms_decrypt_result *results,
                             kms_error *err)
{
	return batch_call(client, &batch_decrypt, items, n_items, results, err);
}

void kms_decrypt_results_free(kms_decrypt_result *results, size_t n)
{
	for (size_t i = 0; results && i < n; i++) {
		kms_plaintext_free(&results[i].plaintext);
		memset(&results[i], 0, sizeof results[i]);
	}
}

/* ---- batch data keys ---- */

static void *data_key_batch_new(Kms__Request *req, size_t n, client_arena *arena)
{
	Kms__BatchGenerateDataKeyRequest *op = client_arena_alloc(arena, sizeof *op);
	Kms__GenerateDataKeyRequest *subs = client_arena_alloc(arena, n * sizeof *subs);
	Kms__GenerateDataKeyRequest **ptrs = client_arena_alloc(arena, n * sizeof *ptrs);
	if (!op || !subs || !ptrs)
		return NULL;
	kms__batch_generate_data_key_request__init(op);
	for (size_t i = 0; i < n; i++)
		ptrs[i] = &subs[i];
	op->n_items = n;
	op->items = ptrs;
	req->op_case = KMS__REQUEST__OP_BATCH_GENERATE_DATA_KEY;
	req->batch_generate_data_key = op;
	return subs;
}

static kms_status data_key_item_request(void *subs, const void *items, size_t i,
                                        client_arena *arena, kms_error *err)
{
	const kms_data_key_item *item = (const kms_data_key_item *)items + i;
	return data_key_request((Kms__GenerateDataKeyRequest *)subs + i, item->key_id,
	                        item->context, item->n_context, arena, err);
}

static size_t data_key_answers(const Kms__Response *resp)
{
	return resp->batch_generate_data_key->n_results;
}

static kms_status data_key_take(const Kms__Response *resp, size_t i, void *results,
                                kms_error *err)
{
	const Kms__BatchGenerateDataKeyResult *item = resp->batch_generate_data_key->results[i];
	kms_data_key_result *out = (kms_data_key_result *)results + i;
	KMS_GUARD(item_status((int)item->status, item->message, item->result, &out->status,
	                      out->message, "batch_generate_data_key", err));
	return out->status == KMS_OK ? data_key_from(item->result, &out->data_key, err)
	                             : KMS_OK;
}

static void data_key_results_free(void *results, size_t n)
{
	kms_data_key_results_free(results, n);
}

static const batch_kind batch_data_key = {
	.op = "batch_generate_data_key",
	.result_size = sizeof(kms_data_key_result),
	.result_case = KMS__RESPONSE__RESULT_BATCH_GENERATE_DATA_KEY,
	.new_batch = data_key_batch_new,
	.item_request = data_key_item_request,
	.n_answers = data_key_answers,
	.take = data_key_take,
	.results_free = data_key_results_free,
};

kms_status kms_batch_generate_data_key(kms_client *client, const kms_data_key_item *items,
                                       size_t n_items, kms_data_key_result *results,
                                       kms_error *err)
{
	return batch_call(client, &batch_data_key, items, n_items, results, err);
}

void kms_data_key_results_free(kms_data_key_result *results, size_t n)
{
	for (size_t i = 0; results && i < n; i++) {
		kms_data_key_free(&results[i].data_key);
		memset(&results[i], 0, sizeof results[i]);
	}
}
