/*
 * fuzz_request: kmsd's request path up to the handler, without an HSM.
 *
 * Input: the bytes of a packed kms.Request, as a peer sends them. They go
 * through pipeline.c's own decode (size limit, the wire scan of counts
 * before unpacking, kms__request__unpack into a
 * worker arena, the envelope, ops_find, the NUL-in-string check, the
 * operation's validator),
 * then the audit entry is built exactly as pipeline.c's audit step builds
 * it, for every request that decoded (a refused request is audited too).
 * For a request that validated, the entry is built a second time after
 * noting the key the handler would note first (op_note_key with the
 * request's own key reference, before the keyring answers).
 *
 * Invariants:
 *   - an entry can always be built (a request whose entry cannot be built is
 *     answered without one), is valid JSON and at most AUDIT_ENTRY_MAX bytes;
 *   - it names the request id (or "" before one is known) and the
 *     operation;
 *   - after op_note_key(ref), its key_id is ref, whole: the log must say
 *     which key (or alias) was asked for, not a prefix of it.
 * The arena is reset after each input, as the pipeline does.
 */
#include <string.h>

#include <jansson.h>

#include <kms/kms.pb-c.h>
#include <kms/limits.h>

#include "kms/pipeline/arena.h"
#include "kms/audit/audit_entry.h"
#include "kms/pipeline/caller.h"
#include "common/error.h"
#include "tests/kms/pipeline/fuzz_request.h"
#include "kms/kmsd.h"
#include "kms/pipeline/ops.h"

/* pipeline.c itself, for its static decode() and validate() (and
 * request_id_ok): the fuzzer runs the daemon's own step 2, not a copy of it. This defines
 * pipeline_handle too, so kmsd_core's pipeline.o is not linked. */
#include "kms/pipeline/pipeline.c"

/* kmsd's defaults (config.c, server.c): what a worker gets. */
#define FUZZ_ARENA_CHUNK (256u << 10)
#define FUZZ_TIME_US 1795825425123456LL /* 2026-11-28T00:23:45.123456Z */

fuzz_request_outcome fuzz_request_last;

/* The key reference a handler notes (op_note_key) before the keyring
 * answers: the field its row's audit column calls `noted` (a batch's first
 * item's, if that item validates, since the handler skips invalid items),
 * or NULL for operations that note only what the keyring says (decrypt:
 * the blob's key; delete_alias: the alias's target). */
static const char *noted_ref(const Kms__Request *req)
{
	const op_entry *op = ops_find(req->op_case);
	op_audit_view v;
	ops_audit_view(req, &v);
	if (v.noted && op->validate_item && op->validate_item(v.subject) != KMS_OK)
		return NULL;
	return v.noted;
}

/* Builds the entry as pipeline.c's audit() does and checks it. */
static void check_entry(const op_ctx *ctx, kms_status status, const char *message,
                        const char *want_key_id)
{
	audit_facts facts = {
		.ctx = ctx,
		.status = status,
		.error = message,
		.latency_us = 1234,
		.time_us = FUZZ_TIME_US,
	};
	char *entry = NULL;
	size_t len = 0;
	kms_status built = audit_entry_build(&facts, &entry, &len);
	if (built != KMS_OK)
		fprintf(stderr, "audit_entry_build: %s\n", kms_error_message());
	FUZZ_CHECK(built == KMS_OK);
	FUZZ_CHECK(entry != NULL && len <= AUDIT_ENTRY_MAX);

	json_error_t why;
	json_t *doc = json_loadb(entry, len, JSON_REJECT_DUPLICATES, &why);
	FUZZ_CHECK(json_is_object(doc));
	const char *rid = json_string_value(json_object_get(doc, "request_id"));
	const char *op = json_string_value(json_object_get(doc, "operation"));
	const char *key_id = json_string_value(json_object_get(doc, "key_id"));
	FUZZ_CHECK(rid && strcmp(rid, ctx->request_id) == 0);
	FUZZ_CHECK(op && strcmp(op, ctx->op ? ctx->op->name : "") == 0);
	FUZZ_CHECK(key_id != NULL);
	if (want_key_id) {
		if (strcmp(key_id, want_key_id) != 0)
			fprintf(stderr, "audit key_id \"%s\", noted \"%s\"\n", key_id, want_key_id);
		FUZZ_CHECK(strcmp(key_id, want_key_id) == 0);
	}
	FUZZ_CHECK(json_object_get(doc, "plaintext") == NULL);
	json_decref(doc);
	free(entry);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static arena *worker_arena;
	static kmsd daemon;
	if (!worker_arena) {
		worker_arena = arena_new(FUZZ_ARENA_CHUNK);
		FUZZ_CHECK(worker_arena != NULL);
		daemon.cfg.max_request_bytes = KMS_REQUEST_MAX_DEFAULT;
	}
	caller who = { .transport = CALLER_IPC, .has_uid = true, .uid = 1000 };
	snprintf(who.source, sizeof who.source, "ipc uid=1000");
	snprintf(who.principal, sizeof who.principal, "fuzz-app");
	char no_id[] = "";
	char raw_id[KMS_REQUEST_ID_MAX + 1] = "";
	op_ctx ctx = { .d = &daemon, .arena = worker_arena, .caller = &who,
		       .request_id = no_id, .now = FUZZ_TIME_US / 1000000 };
	Kms__Request *req = NULL;

	kms_error_clear();
	kms_status st = decode(&ctx, data, size, raw_id, &req);
	if (st == KMS_OK) /* the signature step (2b) between them needs a kmsd */
		st = validate(&ctx, req);
	/* A request id echoed from a refused request is always a valid one. */
	FUZZ_CHECK(ctx.request_id == no_id || request_id_ok(ctx.request_id));
	ctx.audit.request = req;
	char message[KMS_ERROR_MAX] = "";
	if (st != KMS_OK)
		snprintf(message, sizeof message, "%s", kms_error_message());
	FUZZ_CHECK(st == KMS_OK || st == KMS_INVALID_ARGUMENT);
	FUZZ_CHECK(st != KMS_OK || (req && ctx.op));
	fuzz_request_last = st == KMS_OK ? FUZZ_REQ_VALID
	                  : req ? FUZZ_REQ_INVALID
	                  : size > KMS_REQUEST_MAX_DEFAULT ? FUZZ_REQ_TOO_LARGE
	                  : FUZZ_REQ_REFUSED;

	/* As audited when the request ends here: refused, or (validated) as if
	 * the handler ended before noting a key. */
	check_entry(&ctx, st, message, NULL);

	if (st == KMS_OK) {
		const char *ref = noted_ref(req);
		if (ref && ref[0]) {
			op_note_key(&ctx, ref, 0);
			char failed[KMS_ERROR_MAX];
			(void)KMS_FAIL(KMS_NOT_FOUND, "key %s not found", ref);
			snprintf(failed, sizeof failed, "%s", kms_error_message());
			check_entry(&ctx, KMS_NOT_FOUND, failed, ref);
		}
	}
	kms_error_clear();
	arena_reset(worker_arena);
	return 0;
}
