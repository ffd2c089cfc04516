/*
 * records.c: request records: which requests leave one, their digest, the
 * lookup before a request runs and the record after it ran (records.h).
 */
#include "kms/pipeline/records.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/error.h"
#include "common/log.h"
#include "kms/audit/audit.h"
#include "kms/keys/keyring.h"

#define RECORD_DIGEST_LABEL "kms request record v1"
#define ANSWER_DIGEST_LABEL "kms request answer v1"
#define RECORD_VERSION_LEN 4 /* a versioned result's key version, big-endian */
#define RECORD_WAIT_STEP_NS 2000000L /* between looks at a record being written */

/* The operation's message of a request that leaves a record, or NULL. */
static const ProtobufCMessage *recorded_op(const Kms__Request *req)
{
	switch (req->op_case) {
	case KMS__REQUEST__OP_ENCRYPT:
		return req->encrypt ? &req->encrypt->base : NULL;
	case KMS__REQUEST__OP_DECRYPT:
		return req->decrypt ? &req->decrypt->base : NULL;
	case KMS__REQUEST__OP_RE_ENCRYPT:
		return req->re_encrypt ? &req->re_encrypt->base : NULL;
	case KMS__REQUEST__OP_GENERATE_DATA_KEY:
		return req->generate_data_key ? &req->generate_data_key->base : NULL;
	case KMS__REQUEST__OP_GENERATE_DATA_KEY_WITHOUT_PLAINTEXT:
		return req->generate_data_key_without_plaintext
		        ? &req->generate_data_key_without_plaintext->base : NULL;
	case KMS__REQUEST__OP_GENERATE_MAC:
		return req->generate_mac ? &req->generate_mac->base : NULL;
	case KMS__REQUEST__OP_PSEUDONYMIZE:
		return req->pseudonymize ? &req->pseudonymize->base : NULL;
	default:
		return NULL;
	}
}

/* What a record's result holds. */
typedef enum {
	RESULT_NONE,      /* Decrypt: nothing (it is run again) */
	RESULT_BLOB,      /* the ciphertext blob the first run made */
	RESULT_VERSIONED, /* the key version, then the answer's tag
	                   * (records_answer) */
} result_kind;

static result_kind result_of(int op)
{
	switch (op) {
	case KMS__REQUEST__OP_DECRYPT:
		return RESULT_NONE;
	case KMS__REQUEST__OP_GENERATE_MAC:
	case KMS__REQUEST__OP_PSEUDONYMIZE:
		return RESULT_VERSIONED;
	default:
		return RESULT_BLOB;
	}
}

/* SHA-256 of the label, its NUL, the operation's field number (4 bytes,
 * big-endian) and the operation's message as protobuf-c packs it, with
 * the data it works on left empty: Encrypt's plaintext, GenerateMac's
 * message, Pseudonymize's values (a hash of a short plaintext or of an
 * identifier can be guessed). The handler run again checks those against
 * what the first run made. */
static kms_status digest_of(op_ctx *ctx, const Kms__Request *req, const ProtobufCMessage *op,
                            uint8_t out[static STORE_REQUEST_DIGEST_LEN])
{
	Kms__EncryptRequest enc;
	Kms__GenerateMacRequest mac;
	Kms__PseudonymizeRequest pseudo;
	const ProtobufCBinaryData none = { 0, NULL };
	switch (req->op_case) {
	case KMS__REQUEST__OP_ENCRYPT:
		enc = *req->encrypt;
		enc.plaintext = none;
		op = &enc.base;
		break;
	case KMS__REQUEST__OP_GENERATE_MAC:
		mac = *req->generate_mac;
		mac.message = none;
		op = &mac.base;
		break;
	case KMS__REQUEST__OP_PSEUDONYMIZE:
		pseudo = *req->pseudonymize;
		pseudo.n_values = 0;
		pseudo.values = NULL;
		op = &pseudo.base;
		break;
	default:
		break;
	}
	size_t n = protobuf_c_message_get_packed_size(op);
	uint8_t *packed = arena_alloc(ctx->arena, n ? n : 1);
	KMS_ENSURE(packed, KMS_INTERNAL, "out of request memory");
	KMS_ENSURE(protobuf_c_message_pack(op, packed) == n, KMS_INTERNAL,
	           "request %s: packing its operation for its record", ctx->request_id);
	uint8_t field[4] = { (uint8_t)(req->op_case >> 24), (uint8_t)(req->op_case >> 16),
		             (uint8_t)(req->op_case >> 8), (uint8_t)req->op_case };
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned len = 0;
	bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	          EVP_DigestUpdate(md, RECORD_DIGEST_LABEL, sizeof RECORD_DIGEST_LABEL) == 1 &&
	          EVP_DigestUpdate(md, field, sizeof field) == 1 &&
	          EVP_DigestUpdate(md, packed, n) == 1 && EVP_DigestFinal_ex(md, out, &len) == 1 &&
	          len == STORE_REQUEST_DIGEST_LEN;
	EVP_MD_CTX_free(md);
	KMS_ENSURE(ok, KMS_INTERNAL, "request %s: hashing its operation for its record",
	           ctx->request_id);
	return KMS_OK;
}

/* The record, once no other run is writing it: a run on a replica that
 * died while its transaction was committing ends (committed or rolled
 * back) once the database sees the connection gone. KMS_NOT_FOUND if
 * there is none; KMS_UNAVAILABLE when the store fails, or when the record
 * is still being written after [limits] queue_deadline_ms. */
static kms_status lookup(op_ctx *ctx, const char *request_id, store_request_record *r)
{
	uint64_t until = kms_monotonic_us() + (uint64_t)ctx->d->cfg.queue_deadline_ms * 1000u;
	for (;;) {
		bool busy = false;
		kms_status st = store_request_get(keyring_store(ctx->d->keyring),
		                                  ctx->caller->principal, request_id, r, &busy);
		if (st == KMS_OK || (st == KMS_NOT_FOUND && !busy))
			return st;
		if (!busy) {
			kms_log("error", "request %s: reading its record: %s", request_id,
			        kms_error_message());
			return KMS_FAIL(KMS_UNAVAILABLE, "request %s: the store could not be reached "
			                "to check whether it was answered before: retry", request_id);
		}
		kms_error_clear();
		if (kms_monotonic_us() >= until)
			return KMS_FAIL(KMS_UNAVAILABLE, "request %s is being recorded by another "
			                "replica's run of it: retry", request_id);
		struct timespec ts = { .tv_sec = 0, .tv_nsec = RECORD_WAIT_STEP_NS };
		nanosleep(&ts, NULL);
	}
}

kms_status records_lookup(op_ctx *ctx, const Kms__Request *req)
{
	memset(&ctx->record, 0, sizeof ctx->record);
	const ProtobufCMessage *op = recorded_op(req);
	if (!op || !ctx->d->keyring || !audit_is_fleet(ctx->d->audit) ||
	    !ctx->caller->principal[0])
		return KMS_OK;
	KMS_GUARD(digest_of(ctx, req, op, ctx->record.digest));
	ctx->record.on = true;
	ctx->record.op = (int)req->op_case;
	store_request_record r;
	kms_status st = lookup(ctx, req->request_id, &r);
	if (st == KMS_NOT_FOUND) {
		kms_error_clear();
		return KMS_OK;
	}
	if (st != KMS_OK)
		return st;
	bool same = r.op == (int)req->op_case &&
	            memcmp(r.digest, ctx->record.digest, sizeof r.digest) == 0;
	result_kind kind = result_of(req->op_case);
	size_t skip = kind == RESULT_VERSIONED ? RECORD_VERSION_LEN : 0;
	bool result_ok = kind == RESULT_NONE || r.result_len > skip;
	if (same && result_ok && r.result_len > skip) {
		if (skip)
			ctx->record.version = (uint32_t)r.result[0] << 24 |
			                      (uint32_t)r.result[1] << 16 |
			                      (uint32_t)r.result[2] << 8 | r.result[3];
		ctx->record.blob = arena_alloc(ctx->arena, r.result_len - skip);
		if (ctx->record.blob) {
			memcpy(ctx->record.blob, r.result + skip, r.result_len - skip);
			ctx->record.blob_len = r.result_len - skip;
		}
	}
	size_t result_len = r.result_len;
	store_request_record_free(&r);
	if (!same) {
		ctx->record.on = false; /* the record is the first request's */
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "request id %s was used before for another "
		                "request: send each request with an id of its own", ctx->request_id);
	}
	KMS_ENSURE(result_ok, KMS_INTERNAL, "request %s: its record holds no result",
	           ctx->request_id);
	KMS_ENSURE(result_len <= skip || ctx->record.blob, KMS_INTERNAL,
	           "out of request memory");
	ctx->record.again = true;
	return KMS_OK;
}

/* The blob a recorded operation's answer holds (none for Decrypt). */
static ProtobufCBinaryData answered_blob(const Kms__Response *resp)
{
	ProtobufCBinaryData none = { 0, NULL };
	switch (resp->result_case) {
	case KMS__RESPONSE__RESULT_ENCRYPT:
		return resp->encrypt ? resp->encrypt->ciphertext_blob : none;
	case KMS__RESPONSE__RESULT_RE_ENCRYPT:
		return resp->re_encrypt ? resp->re_encrypt->ciphertext_blob : none;
	case KMS__RESPONSE__RESULT_GENERATE_DATA_KEY:
		return resp->generate_data_key ? resp->generate_data_key->ciphertext_blob : none;
	case KMS__RESPONSE__RESULT_GENERATE_DATA_KEY_WITHOUT_PLAINTEXT:
		return resp->generate_data_key_without_plaintext
		        ? resp->generate_data_key_without_plaintext->ciphertext_blob : none;
	default:
		return none;
	}
}

/* The SHA-256 of GenerateMac's MAC or of Pseudonymize's pseudonyms (each
 * as its length, 4 bytes big-endian, then its text), after a label. */
static kms_status answer_digest(const Kms__Response *resp, uint8_t out[static 32])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned len = 0;
	bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	          EVP_DigestUpdate(md, ANSWER_DIGEST_LABEL, sizeof ANSWER_DIGEST_LABEL) == 1;
	if (resp->result_case == KMS__RESPONSE__RESULT_GENERATE_MAC && resp->generate_mac) {
		ok = ok && EVP_DigestUpdate(md, resp->generate_mac->mac.data,
		                            resp->generate_mac->mac.len) == 1;
	} else if (resp->result_case == KMS__RESPONSE__RESULT_PSEUDONYMIZE && resp->pseudonymize) {
		for (size_t i = 0; ok && i < resp->pseudonymize->n_pseudonyms; i++) {
			const char *p = resp->pseudonymize->pseudonyms[i];
			size_t n = strlen(p);
			uint8_t be[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
				          (uint8_t)n };
			ok = EVP_DigestUpdate(md, be, sizeof be) == 1 && EVP_DigestUpdate(md, p, n) == 1;
		}
	} else {
		ok = false;
	}
	ok = ok && EVP_DigestFinal_ex(md, out, &len) == 1 && len == 32;
	EVP_MD_CTX_free(md);
	KMS_ENSURE(ok, KMS_INTERNAL, "hashing an answer for its record");
	return KMS_OK;
}

kms_status records_answer(op_ctx *ctx, const keyring_key_use *use, const Kms__Response *resp)
{
	if (!ctx->record.on)
		return KMS_OK;
	uint8_t d[32], tag[HSM_HMAC_SHA256_LEN];
	KMS_GUARD(answer_digest(resp, d));
	/* Keyed, in the HSM: without the key no one who reads the table can
	 * tell which MAC or pseudonyms a record is of. */
	KMS_GUARD(keyring_hmac(ctx->d->keyring, use, d, sizeof d, tag));
	bool same = !ctx->record.again ||
	            (ctx->record.blob_len == sizeof tag &&
	             CRYPTO_memcmp(ctx->record.blob, tag, sizeof tag) == 0);
	memcpy(ctx->record.tag, tag, sizeof tag);
	KMS_ENSURE(same, KMS_INVALID_ARGUMENT, "request id %s was used before for another "
	           "request: send each request with an id of its own", ctx->request_id);
	ctx->record.tagged = true;
	return KMS_OK;
}

/* A versioned result: the key version, then the answer's tag. */
static kms_status versioned_result(op_ctx *ctx, const Kms__Response *resp, uint8_t *out,
                                   size_t cap, size_t *len)
{
	uint32_t version = 0;
	if (resp->result_case == KMS__RESPONSE__RESULT_GENERATE_MAC && resp->generate_mac)
		version = resp->generate_mac->key_version;
	else if (resp->result_case == KMS__RESPONSE__RESULT_PSEUDONYMIZE && resp->pseudonymize)
		version = resp->pseudonymize->key_version;
	KMS_ENSURE(version && ctx->record.tagged &&
	                   RECORD_VERSION_LEN + sizeof ctx->record.tag <= cap,
	           KMS_INTERNAL, "request %s: its answer was not tagged for its record",
	           ctx->request_id);
	out[0] = (uint8_t)(version >> 24);
	out[1] = (uint8_t)(version >> 16);
	out[2] = (uint8_t)(version >> 8);
	out[3] = (uint8_t)version;
	memcpy(out + RECORD_VERSION_LEN, ctx->record.tag, sizeof ctx->record.tag);
	*len = RECORD_VERSION_LEN + sizeof ctx->record.tag;
	return KMS_OK;
}

kms_status records_make(op_ctx *ctx, const Kms__Response *resp, store_request_record **out)
{
	*out = NULL;
	uint8_t versioned[RECORD_VERSION_LEN + HSM_HMAC_SHA256_LEN];
	ProtobufCBinaryData blob = answered_blob(resp);
	if (result_of(ctx->record.op) == RESULT_VERSIONED) {
		KMS_GUARD(versioned_result(ctx, resp, versioned, sizeof versioned, &blob.len));
		blob.data = versioned;
	}
	KMS_ENSURE(blob.len <= STORE_REQUEST_RESULT_MAX, KMS_INTERNAL,
	           "request %s: a blob of %zu bytes to record", ctx->request_id, blob.len);
	store_request_record *r = calloc(1, sizeof *r);
	uint8_t *copy = blob.len ? malloc(blob.len) : NULL;
	if (!r || (blob.len && !copy)) {
		free(r);
		free(copy);
		return KMS_FAIL(KMS_UNAVAILABLE, "out of memory recording request %s",
		                ctx->request_id);
	}
	snprintf(r->principal, sizeof r->principal, "%s", ctx->caller->principal);
	snprintf(r->request_id, sizeof r->request_id, "%s", ctx->request_id);
	r->op = ctx->record.op;
	memcpy(r->digest, ctx->record.digest, sizeof r->digest);
	if (blob.len)
		memcpy(copy, blob.data, blob.len);
	r->result = copy;
	r->result_len = blob.len;
	r->created_ms = (int64_t)(kms_now_us() / 1000);
	*out = r;
	return KMS_OK;
}
