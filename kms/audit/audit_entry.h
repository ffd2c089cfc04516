/*
 * audit_entry.h: one request's audit entry, a JSON object made with jansson
 * (docs/audit-log.md, "Entry schema"). It names who asked, what, with which
 * key and context, and how it ended; it never holds a plaintext, a data
 * key, a PIN or a ciphertext body. Long context values are cut (visibly) so
 * an entry stays under AUDIT_ENTRY_MAX bytes.
 */
#ifndef KMS_AUDIT_ENTRY_H
#define KMS_AUDIT_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

#include "kms/pipeline/ops.h"

#define AUDIT_ENTRY_MAX 65535           /* fits a tile bundle's 2-byte length */
#define AUDIT_CONTEXT_VALUE_SHOWN 256   /* bytes of a context value recorded */

/* Everything the pipeline knows when a request ends. */
typedef struct audit_facts {
	const op_ctx *ctx;          /* request id, caller, op, key, context */
	kms_status status;
	const char *error;          /* "" on success */
	uint64_t latency_us;
	int64_t time_us;            /* unix microseconds at the end */
} audit_facts;

/* The entry as compact JSON (malloc'ed, not NUL-terminated, *len bytes <=
 * AUDIT_ENTRY_MAX); free() it. */
kms_status audit_entry_build(const audit_facts *facts, char **out, size_t *len) KMS_MUST_USE;

#endif
