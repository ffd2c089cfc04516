/*
 * records.h: request records (docs/scale-out.md, "Request records").
 *
 * On a fleet (kmsd replicas on one PostgreSQL store, whose audit log is
 * the fleet's), Encrypt, Decrypt, ReEncrypt, GenerateDataKey,
 * GenerateDataKeyWithoutPlaintext, GenerateMac and Pseudonymize leave a
 * record when they succeed: who sent the request under which id, the
 * operation, the SHA-256 of its fields (the data it works on left out:
 * Encrypt's plaintext, GenerateMac's message, Pseudonymize's values; a
 * hash of a short plaintext or an identifier can be guessed) and what it
 * made: the ciphertext blob; for GenerateMac and Pseudonymize the key
 * version and the answer's tag, an HMAC in the HSM under that version of
 * the answer's SHA-256 (never the MAC or a pseudonym, nothing a reader of
 * the table could test a guess against). The audit writer adds it in
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
 *   key and checked (in constant time) to hold the source's plaintext;
 * - GenerateMac, Pseudonymize: authorized again and run again with the
 *   first run's version (still active); the answer's tag must be the
 *   recorded one (compared in constant time), else nothing is answered.
 *
 * Sign, Verify, VerifyMac, GetPublicKey, GenerateRandom, the batch forms
 * and the control plane (but CreateKey, whose key row keeps its request
 * id) leave no record: a resend runs again and is logged again. (Sign's
 * answer could only be kept as the signature, against which a reader of
 * the table holding the public key could test guesses of the message.)
 *
 * No second audit entry is written for a request answered from its record:
 * the log holds one entry per request. The same (principal, request id)
 * with another operation or other fields is refused INVALID_ARGUMENT.
 */
#ifndef KMS_PIPELINE_RECORDS_H
#define KMS_PIPELINE_RECORDS_H

#include <kms/kms.pb-c.h>
#include <kms/status.h>

#include "kms/keys/keyring.h"
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

/* GenerateMac, Pseudonymize, once their answer is made with version
 * `use`, when it leaves a record (ctx->record.on; else nothing): its tag,
 * for the record of a first run; on a run again it must be the recorded
 * one, else KMS_INVALID_ARGUMENT (the id was used for other data). */
kms_status records_answer(op_ctx *ctx, const keyring_key_use *use,
                          const Kms__Response *resp) KMS_MUST_USE;

#endif
