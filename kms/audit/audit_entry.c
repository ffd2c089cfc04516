#include "kms/audit/audit_entry.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/sha.h>

#include "common/context.h"
#include "common/base64.h"
#include "common/error.h"
#include "common/utf8.h"
#include "kms/format/keyid.h"

#define NUL_MARK "(invalid: a string of the request contains U+0000)"

/* RFC 3339 with microseconds, UTC: 2026-11-28T00:13:45.123456Z */
void audit_format_time(int64_t time_us, char out[AUDIT_TIME_MAX])
{
	time_t secs = (time_t)(time_us / 1000000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	size_t n = strftime(out, AUDIT_TIME_MAX, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, AUDIT_TIME_MAX - n, ".%06dZ", (int)(time_us % 1000000));
}

/* The key the request (or a batch item) named, for one that ended before a
 * handler resolved one: a denied or failed use of a key must still say
 * which key. "" when there is none, or when it is not a well-formed key id
 * or alias (a refused request's field may be anything). It is read from
 * the request, not from ctx->audit.key_id, so that an alias too long for
 * that slot (op_note_key) is still named. */
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

static void sha256_hex(const void *bytes, size_t len, char out[2 * SHA256_DIGEST_LENGTH + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t md[SHA256_DIGEST_LENGTH];
	SHA256(bytes, len, md);
	for (size_t i = 0; i < sizeof md; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[2 * sizeof md] = '\0';
}

/* A value as recorded: itself, or past AUDIT_CONTEXT_VALUE_SHOWN bytes an
 * object saying it was cut, with the full value's length and SHA-256. */
static json_t *context_value_json(const context_pair *p)
{
	size_t shown = kms_utf8_prefix(p->value, p->value_len, AUDIT_CONTEXT_VALUE_SHOWN);
	if (shown == p->value_len)
		return json_stringn(p->value, shown);
	char digest[2 * SHA256_DIGEST_LENGTH + 1];
	sha256_hex(p->value, p->value_len, digest);
	json_t *v = json_object();
	if (!v)
		return NULL;
	int bad = 0;
	bad |= json_object_set_new(v, "truncated", json_true());
	bad |= json_object_set_new(v, "value", json_stringn(p->value, shown));
	bad |= json_object_set_new(v, "bytes", json_integer((json_int_t)p->value_len));
	bad |= json_object_set_new(v, "sha256", json_string(digest));
	if (bad) {
		json_decref(v);
		return NULL;
	}
	return v;
}

/* A context, validated, as pairs; false when it is not a valid one (a
 * refused request's context may be anything, and the log holds only
 * well-formed UTF-8). */
static bool context_view(const op_audit_view *fields, context_pair *view)
{
	if (fields->n_context > KMS_CONTEXT_MAX_PAIRS)
		return false;
	for (size_t i = 0; i < fields->n_context; i++)
		view[i] = context_pair_from_cstr(fields->context[i]->key, fields->context[i]->value);
	if (context_validate(view, fields->n_context) != KMS_OK) {
		kms_error_clear();
		return false;
	}
	return true;
}

/* The context the view names, recorded in full (values cut visibly). */
static json_t *context_json(const op_ctx *ctx, const op_audit_view *fields)
{
	/* Zeroed only for gcc, which cannot see that just the first n are read. */
	context_pair view[KMS_CONTEXT_MAX_PAIRS] = { 0 };
	if (ctx->audit.string_nul)
		return json_string(NUL_MARK);
	if (!context_view(fields, view))
		return json_string("(invalid)");
	json_t *obj = json_object();
	for (size_t i = 0; obj && i < fields->n_context; i++) {
		json_t *v = context_value_json(&view[i]);
		if (!v || json_object_set_new(obj, fields->context[i]->key, v) != 0) {
			json_decref(obj);
			return NULL;
		}
	}
	return obj;
}

/* The context as the standard base64 of the SHA-256 of its canonical
 * encoding (docs/ciphertext-format.md): 44 characters, whatever its size. */
static json_t *context_digest_json(const op_ctx *ctx, const op_audit_view *fields)
{
	context_pair view[KMS_CONTEXT_MAX_PAIRS] = { 0 };
	if (ctx->audit.string_nul)
		return json_string(NUL_MARK);
	if (!context_view(fields, view))
		return json_string("(invalid)");
	uint8_t *encoded = NULL;
	size_t len = 0;
	if (context_encode_alloc(view, fields->n_context, &encoded, &len) != KMS_OK) {
		kms_error_clear();
		return NULL;
	}
	uint8_t md[SHA256_DIGEST_LENGTH];
	SHA256(encoded, len, md);
	free(encoded);
	char b64[64];
	return kms_base64_encode(md, sizeof md, b64, sizeof b64) ? json_string(b64) : NULL;
}

/* How much of a batch an attempt records. */
typedef struct entry_shape {
	bool full_context;   /* the request's own context in full, else a note */
	bool item_digests;   /* items' contexts as digests, else in full */
	size_t items_listed; /* items recorded; the rest only counted */
} entry_shape;

/* The key item i used or named, "" for none. */
static const char *item_key(const op_ctx *ctx, size_t i)
{
	const op_audit_item *item = &ctx->audit.items[i];
	if (item->key_id)
		return item->key_id;
	op_audit_view fields;
	ops_audit_view_item(ctx->audit.request, i, &fields);
	return requested_key(&fields);
}

/* Index of key in keys, appended if new; -1 for "" (no key). */
static json_int_t key_index(json_t *keys, const char *key, int *bad)
{
	if (!key[0])
		return -1;
	size_t n = json_array_size(keys);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(json_string_value(json_array_get(keys, i)), key))
			return (json_int_t)i;
	*bad |= json_array_append_new(keys, json_string(key));
	return (json_int_t)n;
}

/* One item: [key index or null, key version, context, status]. */
static json_t *item_json(const op_ctx *ctx, size_t i, json_t *keys, bool digest, int *bad)
{
	op_audit_view fields;
	ops_audit_view_item(ctx->audit.request, i, &fields);
	json_int_t k = key_index(keys, item_key(ctx, i), bad);
	json_t *context = digest ? context_digest_json(ctx, &fields) : context_json(ctx, &fields);
	json_t *item = json_array();
	*bad |= !context || !item;
	*bad |= json_array_append_new(item, k < 0 ? json_null() : json_integer(k));
	*bad |= json_array_append_new(item, json_integer(ctx->audit.items[i].key_version));
	*bad |= json_array_append_new(item, context);
	*bad |= json_array_append_new(item,
	                              json_string(kms_status_name(ctx->audit.items[i].status)));
	return item;
}

/* A batch's members: batch_items, batch_keys, batch_failed, items and, when
 * not every item that ran is listed, items_unlisted. */
static int batch_members(const op_ctx *ctx, json_t *e, size_t batch_items,
                         const entry_shape *shape)
{
	int bad = 0;
	size_t listed = shape->items_listed < ctx->audit.n_items ? shape->items_listed
	                                                        : ctx->audit.n_items;
	json_t *keys = json_array();
	json_t *items = json_array();
	for (size_t i = 0; keys && items && i < listed; i++)
		bad |= json_array_append_new(items, item_json(ctx, i, keys, shape->item_digests,
		                                              &bad));
	bad |= json_object_set_new(e, "batch_items", json_integer((json_int_t)batch_items));
	bad |= json_object_set_new(e, "batch_keys", keys);
	bad |= json_object_set_new(e, "batch_failed",
	                           json_integer((json_int_t)ctx->audit.batch_failed));
	bad |= json_object_set_new(e, "items", items);
	if (listed < ctx->audit.n_items)
		bad |= json_object_set_new(e, "items_unlisted",
		                           json_integer((json_int_t)(ctx->audit.n_items - listed)));
	return bad;
}

/* The decision: {"decision", "reason", "detail"}. */
static json_t *authz_json(const op_audit_info *a)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	int bad = 0;
	bad |= json_object_set_new(o, "decision", json_string(a->authz_decision));
	bad |= json_object_set_new(o, "reason", json_string(a->authz_reason ? a->authz_reason : ""));
	bad |= json_object_set_new(o, "detail", json_string(a->authz_detail));
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* The consent object (docs/consent.md): only its set members. */
static json_t *consent_json(const op_audit_consent *c)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	int bad = 0;
	const struct {
		const char *name, *value;
	} members[] = { { "id", c->id }, { "purpose", c->purpose }, { "dp", c->dp },
		        { "decision", c->decision }, { "reason", c->reason },
		        { "manager", c->manager }, { "action", c->action } };
	for (size_t i = 0; i < sizeof members / sizeof members[0]; i++)
		if (members[i].value)
			bad |= json_object_set_new(o, members[i].name, json_string(members[i].value));
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static bool consent_noted(const op_audit_consent *c)
{
	return c->id || c->purpose || c->dp || c->decision || c->reason || c->manager || c->action;
}

static const char *phase_name(audit_phase phase)
{
	switch (phase) {
	case AUDIT_PHASE_INTENT:
		return "intent";
	case AUDIT_PHASE_OUTCOME:
		return "outcome";
	case AUDIT_PHASE_NONE:
		break;
	}
	return NULL;
}

/* What a Sign, Verify, GenerateMac, VerifyMac or Pseudonymize entry records
 * of its input instead of it: the length (and for Pseudonymize the number
 * of values), whether it was a digest, and a verification's outcome. */
static int message_members(const op_ctx *ctx, const op_audit_view *fields, json_t *e)
{
	int bad = 0;
	if (fields->has_message)
		bad |= json_object_set_new(e, "message_bytes",
		                           json_integer((json_int_t)fields->message_bytes));
	if (fields->message_values)
		bad |= json_object_set_new(e, "values", json_integer((json_int_t)fields->message_values));
	if (fields->message_type)
		bad |= json_object_set_new(e, "message_type", json_string(fields->message_type));
	if (ctx->audit.verdict)
		bad |= json_object_set_new(e, "verdict", json_string(ctx->audit.verdict));
	return bad;
}

/* A text the request carried, as a member: itself when it is UTF-8 (a
 * validator may not have run: a refused request is logged too), else a
 * mark. */
static int text_member(json_t *e, const char *name, const char *text)
{
	if (!text)
		return 0;
	size_t n = strnlen(text, 1024);
	if (n < 1024 && kms_utf8_valid((const uint8_t *)text, n, NULL))
		return json_object_set_new(e, name, json_stringn(text, n));
	return json_object_set_new(e, name, json_string("(invalid: not UTF-8 or too long)"));
}

/* The data-principal operations' members (docs/data-principals.md). */
static int data_principal_members(const op_audit_view *fields, json_t *e)
{
	int bad = 0;
	bad |= text_member(e, "data_principal", fields->data_principal);
	bad |= text_member(e, "basis", fields->basis);
	bad |= text_member(e, "hold", fields->hold);
	return bad;
}

/* KMS_OK with the entry; *too_large (and KMS_INVALID_ARGUMENT) when it
 * would pass AUDIT_ENTRY_MAX: then try a smaller shape. */
static kms_status build(const audit_facts *f, const entry_shape *shape, char **out, size_t *len,
                        bool *too_large)
{
	const op_ctx *ctx = f->ctx;
	op_audit_view fields;
	char when[AUDIT_TIME_MAX];
	*out = NULL;
	*len = 0;
	*too_large = false;
	audit_format_time(f->time_us, when);
	ops_audit_view(ctx->audit.request, &fields);

	json_t *e = json_object();
	json_t *context = shape->full_context
	                          ? context_json(ctx, &fields)
	                          : json_string("(too large to record: see the request)");
	if (!e || !context) {
		json_decref(e);
		json_decref(context);
		return KMS_FAIL(KMS_INTERNAL, "audit: out of memory building an entry");
	}
	int bad = 0;
	bad |= json_object_set_new(e, "time", json_string(when));
	bad |= json_object_set_new(e, "request_id", json_string(ctx->request_id));
	bad |= json_object_set_new(e, "principal",
	                           json_string(ctx->caller ? ctx->caller->principal : ""));
	bad |= json_object_set_new(e, "access_key_id",
	                           json_string(ctx->caller ? ctx->caller->access_key_id : ""));
	bad |= json_object_set_new(e, "source", json_string(ctx->caller ? ctx->caller->source : ""));
	bad |= json_object_set_new(e, "operation", json_string(ctx->op ? ctx->op->name : ""));
	if (ctx->audit.authz_decision)
		bad |= json_object_set_new(e, "authz", authz_json(&ctx->audit));
	if (consent_noted(&ctx->audit.consent))
		bad |= json_object_set_new(e, "consent", consent_json(&ctx->audit.consent));
	if (phase_name(f->phase))
		bad |= json_object_set_new(e, "phase", json_string(phase_name(f->phase)));
	bad |= json_object_set_new(e, "key_id",
	                           json_string(ctx->audit.key_id[0] ? ctx->audit.key_id
	                                                            : requested_key(&fields)));
	bad |= json_object_set_new(e, "key_version", json_integer(ctx->audit.key_version));
	bad |= json_object_set_new(e, "encryption_context", context);
	bad |= message_members(ctx, &fields, e);
	bad |= data_principal_members(&fields, e);
	if (fields.batch_items)
		bad |= batch_members(ctx, e, fields.batch_items, shape);
	bad |= json_object_set_new(e, "status", json_string(f->phase == AUDIT_PHASE_INTENT
	                                                            ? ""
	                                                            : kms_status_name(f->status)));
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
		*too_large = true;
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "audit: entry of request %s is %zu bytes",
		                ctx->request_id, n);
	}
	*out = text;
	*len = n;
	return KMS_OK;
}

kms_status audit_entry_build(const audit_facts *f, char **out, size_t *len)
{
	/* Escaping can blow a large context up sixfold, and a batch holds up to
	 * KMS_BATCH_MAX items: from the whole entry down, each shape records
	 * less, and the first that fits is the entry. */
	size_t n = f->ctx->audit.n_items;
	const entry_shape shapes[] = {
		{ .full_context = true, .item_digests = false, .items_listed = n },
		{ .full_context = true, .item_digests = true, .items_listed = n },
		{ .full_context = false, .item_digests = true, .items_listed = n },
	};
	bool too_large;
	for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
		kms_status st = build(f, &shapes[i], out, len, &too_large);
		if (!too_large)
			return st;
		kms_error_clear();
	}
	/* Items past what fits are counted (items_unlisted), not listed. */
	for (size_t listed = n / 2;; listed /= 2) {
		entry_shape last = { .full_context = false, .item_digests = true,
		                     .items_listed = listed };
		kms_status st = build(f, &last, out, len, &too_large);
		if (!too_large || listed == 0)
			return st;
		kms_error_clear();
	}
}

kms_status audit_entry_build_refusal(const audit_refusal *r, char **out, size_t *len)
{
	char first[AUDIT_TIME_MAX], last[AUDIT_TIME_MAX];
	*out = NULL;
	*len = 0;
	audit_format_time(r->first_us, first);
	audit_format_time(r->last_us, last);
	json_t *e = json_object();
	KMS_ENSURE(e, KMS_INTERNAL, "audit: out of memory building an entry");
	int bad = 0;
	bad |= json_object_set_new(e, "time", json_string(last));
	bad |= json_object_set_new(e, "request_id", json_string(""));
	bad |= json_object_set_new(e, "principal", json_string(r->principal));
	bad |= json_object_set_new(e, "access_key_id", json_string(""));
	bad |= json_object_set_new(e, "source", json_string(r->source));
	bad |= json_object_set_new(e, "operation", json_string(""));
	bad |= json_object_set_new(e, "key_id", json_string(""));
	bad |= json_object_set_new(e, "key_version", json_integer(0));
	bad |= json_object_set_new(e, "encryption_context", json_object());
	bad |= json_object_set_new(e, "refused", json_integer((json_int_t)r->count));
	bad |= json_object_set_new(e, "first", json_string(first));
	bad |= json_object_set_new(e, "last", json_string(last));
	bad |= json_object_set_new(e, "status", json_string(kms_status_name(KMS_ACCESS_DENIED)));
	bad |= json_object_set_new(e, "error", json_string(r->reason));
	bad |= json_object_set_new(e, "latency_us", json_integer(0));
	char *text = bad ? NULL : json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(e);
	KMS_ENSURE(text, KMS_INTERNAL, "audit: cannot encode the refusals of %s", r->source);
	*out = text;
	*len = strlen(text);
	return KMS_OK;
}

kms_status audit_entry_build_system(const audit_system_entry *s, char **out, size_t *len)
{
	char when[AUDIT_TIME_MAX];
	*out = NULL;
	*len = 0;
	audit_format_time(s->time_us, when);
	json_t *e = json_object();
	json_t *context = json_object();
	if (!e || !context) {
		json_decref(e);
		json_decref(context);
		return KMS_FAIL(KMS_INTERNAL, "audit: out of memory building an entry");
	}
	int bad = 0;
	if (s->purpose && s->purpose[0])
		bad |= json_object_set_new(context, "purpose", json_string(s->purpose));
	bad |= json_object_set_new(e, "time", json_string(when));
	bad |= json_object_set_new(e, "request_id", json_string(""));
	bad |= json_object_set_new(e, "principal", json_string("kmsd"));
	bad |= json_object_set_new(e, "access_key_id", json_string(""));
	bad |= json_object_set_new(e, "source", json_string(""));
	bad |= json_object_set_new(e, "operation", json_string(s->operation));
	bad |= json_object_set_new(e, "key_id", json_string(s->key_id));
	bad |= json_object_set_new(e, "key_version", json_integer(0));
	bad |= json_object_set_new(e, "encryption_context", context);
	bad |= json_object_set_new(e, "data_principal", json_string(s->data_principal));
	bad |= json_object_set_new(e, "basis", json_string(s->basis));
	bad |= json_object_set_new(e, "status", json_string(kms_status_name(KMS_OK)));
	bad |= json_object_set_new(e, "error", json_string(""));
	bad |= json_object_set_new(e, "latency_us", json_integer(0));
	char *text = bad ? NULL : json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(e);
	KMS_ENSURE(text, KMS_INTERNAL, "audit: cannot encode the %s entry of key %s", s->operation,
	           s->key_id);
	*out = text;
	*len = strlen(text);
	return KMS_OK;
}
