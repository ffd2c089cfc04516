#include "kms/audit/audit_entry.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "kms/format/context.h"
#include "common/error.h"
#include "common/utf8.h"
#include "kms/format/keyid.h"

/* RFC 3339 with microseconds, UTC: 2026-11-28T00:13:45.123456Z */
static void format_time(int64_t time_us, char out[32])
{
	time_t secs = (time_t)(time_us / 1000000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%06dZ", (int)(time_us % 1000000));
}

/* The key the request named (the field its row's audit column calls the
 * key; a batch's first item's), for a request that ended before a handler
 * resolved one: a denied or failed use of a key must still say which key.
 * "" when there is none, or when it is not a well-formed key id or alias
 * (a refused request's field may be anything). It is read from the request,
 * not from ctx->audit.key_id, so that an alias too long for that slot
 * (op_note_key) is still named. */
static const char *requested_key(const op_audit_view *fields)
{
	keyid_ref_kind kind;
	uint8_t id[KMS_KEYID_BYTES];
	if (!fields->key)
		return "";
	if (keyid_ref_classify(fields->key, strlen(fields->key), &kind, id) != KMS_OK) {
		kms_error_clear();
		return "";
	}
	return fields->key;
}

/* The context the row's audit column names (a batch records its first
 * item's). It is recorded only if it is valid: a refused request's context
 * may be anything, and the log holds only well-formed UTF-8. */
static json_t *context_json(const op_audit_view *fields)
{
	Kms__StringPair *const *pairs = fields->context;
	size_t n = fields->n_context;
	/* Zeroed only for gcc, which cannot see that just the first n are read. */
	context_pair view[KMS_CONTEXT_MAX_PAIRS] = { 0 };
	if (n > KMS_CONTEXT_MAX_PAIRS)
		return json_string("(invalid)");
	for (size_t i = 0; i < n; i++)
		view[i] = context_pair_from_cstr(pairs[i]->key, pairs[i]->value);
	if (context_validate(view, n) != KMS_OK) {
		kms_error_clear();
		return json_string("(invalid)");
	}
	json_t *obj = json_object();
	for (size_t i = 0; obj && i < n; i++) {
		size_t shown = kms_utf8_prefix(view[i].value, view[i].value_len, AUDIT_CONTEXT_VALUE_SHOWN);
		json_t *v;
		if (shown == view[i].value_len) {
			v = json_stringn(view[i].value, shown);
		} else {
			char cut[AUDIT_CONTEXT_VALUE_SHOWN + 64];
			int m = snprintf(cut, sizeof cut, "%.*s...(%zu bytes cut)", (int)shown,
			                 view[i].value, view[i].value_len - shown);
			v = json_stringn(cut, (size_t)m);
		}
		if (!v || json_object_set_new(obj, pairs[i]->key, v) != 0) {
			json_decref(obj);
			return NULL;
		}
	}
	return obj;
}

static kms_status build(const audit_facts *f, bool full_context, char **out, size_t *len)
{
	const op_ctx *ctx = f->ctx;
	op_audit_view fields;
	char when[32];
	*out = NULL;
	*len = 0;
	format_time(f->time_us, when);
	ops_audit_view(ctx->audit.request, &fields);

	json_t *e = json_object();
	json_t *context = full_context ? context_json(&fields)
	                               : json_string("(too large to record: see the request)");
	KMS_ENSURE(e && context, KMS_INTERNAL, "audit: out of memory building an entry");
	int bad = 0;
	bad |= json_object_set_new(e, "time", json_string(when));
	bad |= json_object_set_new(e, "request_id", json_string(ctx->request_id));
	bad |= json_object_set_new(e, "principal",
	                           json_string(ctx->caller ? ctx->caller->principal : ""));
	bad |= json_object_set_new(e, "source", json_string(ctx->caller ? ctx->caller->source : ""));
	bad |= json_object_set_new(e, "operation", json_string(ctx->op ? ctx->op->name : ""));
	bad |= json_object_set_new(e, "key_id",
	                           json_string(ctx->audit.key_id[0] ? ctx->audit.key_id
	                                                            : requested_key(&fields)));
	bad |= json_object_set_new(e, "key_version", json_integer(ctx->audit.key_version));
	bad |= json_object_set_new(e, "encryption_context", context);
	size_t items = fields.batch_items;
	if (items) {
		bad |= json_object_set_new(e, "batch_items", json_integer((json_int_t)items));
		json_t *keys = json_array();
		for (size_t i = 0; keys && i < ctx->audit.n_batch_keys; i++)
			bad |= json_array_append_new(keys, json_string(ctx->audit.batch_keys[i]));
		bad |= json_object_set_new(e, "batch_keys", keys);
		if (ctx->audit.batch_keys_more)
			bad |= json_object_set_new(e, "batch_key_uses_unlisted",
			                           json_integer((json_int_t)ctx->audit.batch_keys_more));
		bad |= json_object_set_new(e, "batch_failed",
		                           json_integer((json_int_t)ctx->audit.batch_failed));
	}
	bad |= json_object_set_new(e, "status", json_string(kms_status_name(f->status)));
	bad |= json_object_set_new(e, "error", json_string(f->error));
	bad |= json_object_set_new(e, "latency_us", json_integer((json_int_t)f->latency_us));
	char *text = bad ? NULL : json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(e);
	/* json_string() refuses invalid UTF-8: request ids and principals are
	 * checked before they get here, so a failure is a bug, not input. */
	KMS_ENSURE(text, KMS_INTERNAL, "audit: cannot encode the entry of request %s",
	           ctx->request_id);
	size_t n = strlen(text);
	if (n > AUDIT_ENTRY_MAX) {
		free(text);
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "audit: entry of request %s is %zu bytes",
		                ctx->request_id, n);
	}
	*out = text;
	*len = n;
	return KMS_OK;
}

kms_status audit_entry_build(const audit_facts *f, char **out, size_t *len)
{
	/* Escaping can blow a large context up sixfold: then record it as cut. */
	if (build(f, true, out, len) == KMS_OK)
		return KMS_OK;
	return build(f, false, out, len);
}
