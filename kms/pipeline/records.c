/*
 * records.c: request records: which requests leave one, their digest, the
 * lookup before a request runs and the record after it ran (records.h).
 */
#include "kms/pipeline/records.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "common/error.h"
#include "common/log.h"
#include "kms/audit/audit.h"
#include "kms/keys/keyring.h"

#define RECORD_DIGEST_LABEL "kms request record v1"
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
	default:
		return NULL;
	}
}

/* SHA-256 of the label, its NUL, the operation's field number (4 bytes,
 * big-endian) and the operation's message as protobuf-c packs it, with
 * Encrypt's plaintext left empty. */
static kms_status digest_of(op_ctx *ctx, const Kms__Request *req, const ProtobufCMessage *op,
                            uint8_t out[static STORE_REQUEST_DIGEST_LEN])
{
	Kms__EncryptRequest no_plaintext;
	if (req->op_case == KMS__REQUEST__OP_ENCRYPT) {
		no_plaintext = *req->encrypt;
		no_plaintext.plaintext.data = NULL;
		no_plaintext.plaintext.len = 0;
		op = &no_plaintext.base;
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
	bool blob_ok = req->op_case == KMS__REQUEST__OP_DECRYPT || r.result_len > 0;
	if (same && blob_ok && r.result_len) {
		ctx->record.blob = arena_alloc(ctx->arena, r.result_len);
		if (ctx->record.blob) {
			memcpy(ctx->record.blob, r.result, r.result_len);
			ctx->record.blob_len = r.result_len;
		}
	}
	size_t result_len = r.result_len;
	store_request_record_free(&r);
	if (!same) {
		ctx->record.on = false; /* the record is the first request's */
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "request id %s was used before for another "
		                "request: send each request with an id of its own", ctx->request_id);
	}
	KMS_ENSURE(blob_ok, KMS_INTERNAL, "request %s: its record holds no ciphertext",
	           ctx->request_id);
	KMS_ENSURE(!result_len || ctx->record.blob, KMS_INTERNAL, "out of request memory");
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

kms_status records_make(op_ctx *ctx, const Kms__Response *resp, store_request_record **out)
{
	*out = NULL;
	ProtobufCBinaryData blob = answered_blob(resp);
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
