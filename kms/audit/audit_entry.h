/*
 * audit_entry.h: one request's audit entry, a JSON object made with jansson
 * (docs/audit-log.md, "Entry schema"). It names who asked, what, with which
 * key and context, and how it ended; it never holds a plaintext, a data
 * key, a PIN or a ciphertext body. Long context values are cut (visibly,
 * with the full value's SHA-256), and a batch's items' contexts become
 * digests when they would not fit, so an entry stays under AUDIT_ENTRY_MAX
 * bytes.
 */
#ifndef KMS_AUDIT_ENTRY_H
#define KMS_AUDIT_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

#include "kms/pipeline/ops.h"

#define AUDIT_ENTRY_MAX 65535           /* fits a tile bundle's 2-byte length */
#define AUDIT_CONTEXT_VALUE_SHOWN 256   /* bytes of a context value recorded */

#define AUDIT_TIME_MAX 32               /* "2026-11-28T00:13:45.123456Z" and a NUL */

/* Which entry of a request this is: a control-plane change (ops.h,
 * changes_state) has two, its intent before the change and its outcome
 * after; every other request one, without a phase. */
typedef enum audit_phase {
	AUDIT_PHASE_NONE,
	AUDIT_PHASE_INTENT,
	AUDIT_PHASE_OUTCOME,
} audit_phase;

/* Everything the pipeline knows when a request ends (or, for an intent,
 * before its handler runs). */
typedef struct audit_facts {
	const op_ctx *ctx;          /* request id, caller, op, key, context */
	audit_phase phase;
	kms_status status;
	const char *error;          /* "" on success */
	uint64_t latency_us;
	int64_t time_us;            /* unix microseconds at the end */
} audit_facts;

/* time_us (unix microseconds) as RFC 3339 UTC with microseconds. */
void audit_format_time(int64_t time_us, char out[AUDIT_TIME_MAX]);

/* The entry as compact JSON (malloc'ed, not NUL-terminated, *len bytes <=
 * AUDIT_ENTRY_MAX); free() it. */
kms_status audit_entry_build(const audit_facts *facts, char **out, size_t *len) KMS_MUST_USE;

/* Refusals of one peer for one reason before authentication, written as
 * one entry (pipeline/refusals.h): count of them between first_us and
 * last_us (unix microseconds). */
typedef struct audit_refusal {
	const char *principal;
	const char *source;
	const char *reason;         /* the one line the peer got */
	uint64_t count;
	int64_t first_us;
	int64_t last_us;
} audit_refusal;

/* Its entry as compact JSON, as audit_entry_build: the schema's members
 * (no request id, operation or key: nothing was unpacked), status
 * ACCESS_DENIED, and "refused", "first", "last". */
kms_status audit_entry_build_refusal(const audit_refusal *r, char **out,
                                     size_t *len) KMS_MUST_USE;

/* An entry kmsd writes on its own (principal "kmsd", no request): the
 * retention tick's "pre_erasure" and "retention_erasure"
 * (docs/data-principals.md). */
typedef struct audit_system_entry {
	const char *operation;
	const char *key_id;
	const char *data_principal;
	const char *purpose;        /* recorded as encryption_context {"purpose": ...}; "" none */
	const char *basis;
	int64_t time_us;
} audit_system_entry;

/* Its entry as compact JSON, as audit_entry_build, status OK. */
kms_status audit_entry_build_system(const audit_system_entry *e, char **out,
                                    size_t *len) KMS_MUST_USE;

#endif
