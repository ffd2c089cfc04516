/*
 * records.h: request records (docs/scale-out.md, "Request records").
 *
 * On a fleet (kmsd replicas on one PostgreSQL store, whose audit log is
 * the fleet's), Encrypt, Decrypt, ReEncrypt, GenerateDataKey and
 * GenerateDataKeyWithoutPlaintext leave a record when they succeed: who
 * sent the request under which id, the operation, the SHA-256 of its
 * fields (Encrypt's plaintext left out: a hash of a short plaintext can be
 * guessed) and the ciphertext blob it made. The audit writer adds it in
 * the transaction that makes the request's entry durable, before the
 * answer leaves. A client whose connection closed before the answer came
 * sends the same request again, to another replica (NNG's REQ resend);
 * that replica finds the record and answers from it:
 *
 * - Encrypt, GenerateDataKey(WithoutPlaintext): the blob the first run
 *   made, opened again (GenerateDataKey's plaintext key is never stored;
 *   Encrypt's plaintext must be the one sent), after the request is
 *   authorized again as a seal under the same key;
 * - Decrypt: decrypted again, authorized again, without taking a second
 *   use of its consent;
 * - ReEncrypt: its source opened again as a Decrypt sent again is, then
 *   the blob the first run made, authorized again as a seal under the same
 *   key and checked (in constant time) to hold the source's plaintext.
 *
 * No second audit entry is written for a request answered from its record:
 * the log holds one entry per request. The same (principal, request id)
 * with another operation or other fields is refused INVALID_ARGUMENT.
 */
#ifndef KMS_PIPELINE_RECORDS_H
#define KMS_PIPELINE_RECORDS_H

#include <kms/kms.pb-c.h>
#include <kms/status.h>

#include "kms/pipeline/ops.h"
#include "kms/store/store.h"

/* Before the handler, once the request is authorized: sets ctx->record
 * (on: it will leave a record; again: it left one, answer from it). A
 * record that names another operation or other fields refuses the
 * request; a store that cannot be read refuses it UNAVAILABLE. */
kms_status records_lookup(op_ctx *ctx, const Kms__Request *req) KMS_MUST_USE;

/* After a first run that succeeded (ctx->record.on, not again): the record
 * to write with the request's entry, malloc'ed, into *out. */
kms_status records_make(op_ctx *ctx, const Kms__Response *resp,
                        store_request_record **out) KMS_MUST_USE;

#endif
