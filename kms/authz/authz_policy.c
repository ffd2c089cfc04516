/*
 * authz_policy.c: the key policy grammar (docs/authorization.md, "Key
 * policies"), parsed with jansson and compiled into authz_statement rows.
 * Strict: unknown members, duplicate member names, empty arrays or
 * objects, a string where an array or object is required, unknown actions,
 * and anything past the bounds of authz_policy.h or include/kms/limits.h
 * are refused. Messages name where, never what (no content is echoed).
 */
#include "kms/authz/authz_policy.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <kms/limits.h>

#include "common/error.h"
#include "kms/pipeline/ops.h"
#include "kms/store/store.h"

/* A principal's stored roles are the decision's roles, bit for bit. */
_Static_assert(AUTHZ_ROLE_ADMIN == PRINCIPAL_ROLE_ADMIN && AUTHZ_ROLE_APP == PRINCIPAL_ROLE_APP &&
               AUTHZ_ROLE_AUDITOR == PRINCIPAL_ROLE_AUDITOR,
               "authz roles and the store's principal roles differ");

const char authz_default_policy_json[] =
        "{\n"
        "  \"Version\": \"" AUTHZ_POLICY_VERSION "\",\n"
        "  \"Statement\": [\n"
        "    { \"Sid\": \"admins-manage\", \"Effect\": \"Allow\", \"Principal\": \"role:admin\",\n"
        "      \"Action\": [\"describe_key\", \"update_key_description\", \"enable_key\",\n"
        "                 \"disable_key\", \"rotate_key\", \"set_rotation_period\",\n"
        "                 \"schedule_key_deletion\", \"cancel_key_deletion\", \"tag_key\",\n"
        "                 \"untag_key\", \"put_key_policy\", \"get_key_policy\",\n"
        "                 \"create_alias\", \"update_alias\", \"delete_alias\",\n"
        "                 \"create_grant\", \"erase_data_principal\",\n"
        "                 \"set_data_principal_hold\", \"set_retention\"] }\n"
        "  ]\n"
        "}\n";

/* ---- memory: every array of one policy, freed together ---- */

typedef struct block {
	struct block *next;
	max_align_t data[];
} block;

static void *policy_alloc(authz_policy *p, size_t n, size_t size)
{
	if (n == 0)
		n = 1;
	if (n > (SIZE_MAX - sizeof(block)) / size)
		return NULL;
	block *b = calloc(1, sizeof(block) + n * size);
	if (!b)
		return NULL;
	b->next = p->blocks;
	p->blocks = b;
	return b->data;
}

void authz_policy_free(authz_policy *p)
{
	if (!p)
		return;
	block *b = p->blocks;
	while (b) {
		block *next = b->next;
		free(b);
		b = next;
	}
	json_decref(p->doc);
	free(p);
}

#define OOM() KMS_FAIL(KMS_INTERNAL, "policy: out of memory")

/* ---- small checks ---- */

static bool token_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

static bool is_token(const char *s, size_t len, size_t max)
{
	if (len < 1 || len > max)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!token_char(s[i]))
			return false;
	return true;
}

/* A JSON string of min..max bytes (jansson has already refused U+0000 and
 * invalid UTF-8). */
static bool string_within(const json_t *v, size_t min, size_t max)
{
	if (!json_is_string(v))
		return false;
	size_t len = json_string_length(v);
	return len >= min && len <= max;
}

/* A string, or an array of 1..AUTHZ_POLICY_ENTRIES_MAX strings: the items
 * (the string itself as one item) in *items, *n. */
static bool string_or_array(json_t *v, json_t **items, size_t *n)
{
	if (json_is_string(v)) {
		items[0] = v;
		*n = 1;
		return true;
	}
	if (!json_is_array(v))
		return false;
	size_t count = json_array_size(v);
	if (count < 1 || count > AUTHZ_POLICY_ENTRIES_MAX)
		return false;
	for (size_t i = 0; i < count; i++) {
		items[i] = json_array_get(v, i);
		if (!json_is_string(items[i]))
			return false;
	}
	*n = count;
	return true;
}

/* ---- the parts of a statement ---- */

static kms_status parse_principal(authz_policy *p, authz_statement *s, size_t si, json_t *v)
{
	json_t *items[AUTHZ_POLICY_ENTRIES_MAX];
	size_t n = 0;
	KMS_ENSURE(v, KMS_INVALID_ARGUMENT, "policy Statement[%zu].Principal is missing", si);
	KMS_ENSURE(string_or_array(v, items, &n), KMS_INVALID_ARGUMENT,
	           "policy Statement[%zu].Principal must be a string or an array of 1 to %d "
	           "strings", si, AUTHZ_POLICY_ENTRIES_MAX);
	s->names = policy_alloc(p, n, sizeof *s->names);
	if (!s->names)
		return OOM();
	for (size_t i = 0; i < n; i++) {
		const char *t = json_string_value(items[i]);
		size_t len = json_string_length(items[i]);
		if (!strcmp(t, "*"))
			s->any_principal = true;
		else if (!strcmp(t, "role:admin"))
			s->roles |= AUTHZ_ROLE_ADMIN;
		else if (!strcmp(t, "role:app"))
			s->roles |= AUTHZ_ROLE_APP;
		else if (!strcmp(t, "role:auditor"))
			s->roles |= AUTHZ_ROLE_AUDITOR;
		else if (authz_names_principal_check(t, len) == KMS_OK)
			s->names[s->n_names++] = t;
		else
			return KMS_FAIL(KMS_INVALID_ARGUMENT,
			                "policy Statement[%zu].Principal[%zu] is not a principal name "
			                "(1 to %d of A-Z a-z 0-9 . _ -), role:admin, role:app, "
			                "role:auditor or *", si, i, AUTHZ_PRINCIPAL_NAME_MAX);
	}
	return KMS_OK;
}

static bool op_named(const char *name, size_t *index)
{
	for (size_t i = 0;; i++) {
		const op_entry *row = ops_at(i);
		if (!row)
			return false;
		if (!strcmp(row->name, name)) {
			*index = i;
			return i < AUTHZ_OPS_MAX;
		}
	}
}

static kms_status parse_action(authz_statement *s, size_t si, json_t *v)
{
	json_t *items[AUTHZ_POLICY_ENTRIES_MAX];
	size_t n = 0;
	KMS_ENSURE(v, KMS_INVALID_ARGUMENT, "policy Statement[%zu].Action is missing", si);
	KMS_ENSURE(string_or_array(v, items, &n), KMS_INVALID_ARGUMENT,
	           "policy Statement[%zu].Action must be a string or an array of 1 to %d "
	           "strings", si, AUTHZ_POLICY_ENTRIES_MAX);
	for (size_t i = 0; i < n; i++) {
		const char *t = json_string_value(items[i]);
		size_t index;
		if (!strcmp(t, "*")) {
			s->any_action = true;
			continue;
		}
		KMS_ENSURE(op_named(t, &index), KMS_INVALID_ARGUMENT,
		           "policy Statement[%zu].Action[%zu] is not an operation: use an "
		           "operation's name (docs/authorization.md, \"Roles\") or *", si, i);
		s->actions[index / 64] |= UINT64_C(1) << (index % 64);
	}
	return KMS_OK;
}

static bool context_key_ok(const char *k)
{
	size_t len = strlen(k);
	return len >= KMS_CONTEXT_KEY_MIN && len <= KMS_CONTEXT_KEY_MAX;
}

static kms_status parse_context_keys(authz_policy *p, authz_condition *c, size_t si, json_t *v)
{
	size_t n = json_array_size(v);
	KMS_ENSURE(json_is_array(v) && n >= 1 && n <= AUTHZ_POLICY_ENTRIES_MAX,
	           KMS_INVALID_ARGUMENT,
	           "policy Statement[%zu].Condition.ContextKeys must be an array of 1 to %d "
	           "strings", si, AUTHZ_POLICY_ENTRIES_MAX);
	c->keys = policy_alloc(p, n, sizeof *c->keys);
	if (!c->keys)
		return OOM();
	for (size_t i = 0; i < n; i++) {
		json_t *k = json_array_get(v, i);
		KMS_ENSURE(string_within(k, KMS_CONTEXT_KEY_MIN, KMS_CONTEXT_KEY_MAX),
		           KMS_INVALID_ARGUMENT,
		           "policy Statement[%zu].Condition.ContextKeys[%zu] must be a string of "
		           "%d to %d bytes", si, i, KMS_CONTEXT_KEY_MIN, KMS_CONTEXT_KEY_MAX);
		c->keys[c->n_keys++] = json_string_value(k);
	}
	return KMS_OK;
}

static kms_status parse_context_equals(authz_policy *p, authz_condition *c, size_t si, json_t *v)
{
	size_t n = json_object_size(v);
	KMS_ENSURE(json_is_object(v) && n >= 1 && n <= AUTHZ_POLICY_ENTRIES_MAX,
	           KMS_INVALID_ARGUMENT,
	           "policy Statement[%zu].Condition.ContextEquals must be an object of 1 to %d "
	           "members", si, AUTHZ_POLICY_ENTRIES_MAX);
	c->eq_keys = policy_alloc(p, n, sizeof *c->eq_keys);
	c->eq_values = policy_alloc(p, n, sizeof *c->eq_values);
	if (!c->eq_keys || !c->eq_values)
		return OOM();
	const char *k;
	json_t *val;
	json_object_foreach(v, k, val) {
		size_t i = c->n_eq;
		KMS_ENSURE(context_key_ok(k), KMS_INVALID_ARGUMENT,
		           "policy Statement[%zu].Condition.ContextEquals member %zu: its name must "
		           "be %d to %d bytes", si, i, KMS_CONTEXT_KEY_MIN, KMS_CONTEXT_KEY_MAX);
		KMS_ENSURE(string_within(val, 0, KMS_CONTEXT_VALUE_MAX), KMS_INVALID_ARGUMENT,
		           "policy Statement[%zu].Condition.ContextEquals member %zu must be a "
		           "string of at most %d bytes", si, i, KMS_CONTEXT_VALUE_MAX);
		c->eq_keys[i] = k;
		c->eq_values[i] = json_string_value(val);
		c->n_eq++;
	}
	return KMS_OK;
}

static kms_status parse_context_in(authz_policy *p, authz_condition *c, size_t si, json_t *v)
{
	size_t n = json_object_size(v);
	KMS_ENSURE(json_is_object(v) && n >= 1 && n <= AUTHZ_POLICY_ENTRIES_MAX,
	           KMS_INVALID_ARGUMENT,
	           "policy Statement[%zu].Condition.ContextIn must be an object of 1 to %d "
	           "members", si, AUTHZ_POLICY_ENTRIES_MAX);
	c->in = policy_alloc(p, n, sizeof *c->in);
	if (!c->in)
		return OOM();
	const char *k;
	json_t *arr;
	json_object_foreach(v, k, arr) {
		size_t i = c->n_in;
		size_t nv = json_array_size(arr);
		KMS_ENSURE(context_key_ok(k), KMS_INVALID_ARGUMENT,
		           "policy Statement[%zu].Condition.ContextIn member %zu: its name must be "
		           "%d to %d bytes", si, i, KMS_CONTEXT_KEY_MIN, KMS_CONTEXT_KEY_MAX);
		KMS_ENSURE(json_is_array(arr) && nv >= 1 && nv <= AUTHZ_POLICY_ENTRIES_MAX,
		           KMS_INVALID_ARGUMENT,
		           "policy Statement[%zu].Condition.ContextIn member %zu must be an array "
		           "of 1 to %d strings", si, i, AUTHZ_POLICY_ENTRIES_MAX);
		authz_in *in = &c->in[i];
		in->key = k;
		in->values = policy_alloc(p, nv, sizeof *in->values);
		if (!in->values)
			return OOM();
		for (size_t j = 0; j < nv; j++) {
			json_t *s = json_array_get(arr, j);
			KMS_ENSURE(string_within(s, 0, KMS_CONTEXT_VALUE_MAX), KMS_INVALID_ARGUMENT,
			           "policy Statement[%zu].Condition.ContextIn member %zu value %zu "
			           "must be a string of at most %d bytes", si, i, j,
			           KMS_CONTEXT_VALUE_MAX);
			in->values[in->n_values++] = json_string_value(s);
		}
		c->n_in++;
	}
	return KMS_OK;
}

static kms_status parse_condition(authz_policy *p, authz_statement *s, size_t si, json_t *v)
{
	KMS_ENSURE(json_is_object(v) && json_object_size(v) >= 1, KMS_INVALID_ARGUMENT,
	           "policy Statement[%zu].Condition must be an object with ContextKeys, "
	           "ContextEquals or ContextIn", si);
	const char *k;
	json_t *val;
	json_object_foreach(v, k, val) {
		if (!strcmp(k, "ContextKeys"))
			KMS_GUARD(parse_context_keys(p, &s->cond, si, val));
		else if (!strcmp(k, "ContextEquals"))
			KMS_GUARD(parse_context_equals(p, &s->cond, si, val));
		else if (!strcmp(k, "ContextIn"))
			KMS_GUARD(parse_context_in(p, &s->cond, si, val));
		else
			return KMS_FAIL(KMS_INVALID_ARGUMENT,
			                "policy Statement[%zu].Condition has an unknown member: use "
			                "only ContextKeys, ContextEquals and ContextIn", si);
	}
	return KMS_OK;
}

static kms_status parse_statement(authz_policy *p, authz_statement *s, size_t si, json_t *v)
{
	KMS_ENSURE(json_is_object(v), KMS_INVALID_ARGUMENT,
	           "policy Statement[%zu] must be an object", si);
	const char *k;
	json_t *val;
	json_object_foreach(v, k, val) {
		if (strcmp(k, "Sid") && strcmp(k, "Effect") && strcmp(k, "Principal") &&
		    strcmp(k, "Action") && strcmp(k, "Condition"))
			return KMS_FAIL(KMS_INVALID_ARGUMENT,
			                "policy Statement[%zu] has an unknown member: use only Sid, "
			                "Effect, Principal, Action and Condition", si);
	}

	s->sid = "";
	json_t *sid = json_object_get(v, "Sid");
	if (sid) {
		KMS_ENSURE(json_is_string(sid) && is_token(json_string_value(sid),
		                                           json_string_length(sid), AUTHZ_SID_MAX),
		           KMS_INVALID_ARGUMENT,
		           "policy Statement[%zu].Sid must be 1 to %d of A-Z a-z 0-9 . _ -", si,
		           AUTHZ_SID_MAX);
		s->sid = json_string_value(sid);
	}

	json_t *effect = json_object_get(v, "Effect");
	const char *e = json_string_value(effect); /* NULL unless a string */
	KMS_ENSURE(e && (!strcmp(e, "Allow") || !strcmp(e, "Deny")), KMS_INVALID_ARGUMENT,
	           "policy Statement[%zu].Effect must be \"Allow\" or \"Deny\"", si);
	s->deny = !strcmp(e, "Deny");

	KMS_GUARD(parse_principal(p, s, si, json_object_get(v, "Principal")));
	KMS_GUARD(parse_action(s, si, json_object_get(v, "Action")));
	json_t *cond = json_object_get(v, "Condition");
	if (cond)
		KMS_GUARD(parse_condition(p, s, si, cond));
	return KMS_OK;
}

static kms_status parse_document(authz_policy *p, json_t *root)
{
	KMS_ENSURE(json_is_object(root), KMS_INVALID_ARGUMENT,
	           "policy must be a JSON object with Version and Statement");
	const char *k;
	json_t *val;
	json_object_foreach(root, k, val) {
		if (strcmp(k, "Version") && strcmp(k, "Statement") && strcmp(k, "RequireConsent"))
			return KMS_FAIL(KMS_INVALID_ARGUMENT,
			                "policy has an unknown member: use only Version, Statement and "
			                "RequireConsent");
	}
	json_t *consent = json_object_get(root, "RequireConsent");
	KMS_ENSURE(!consent || json_is_boolean(consent), KMS_INVALID_ARGUMENT,
	           "policy RequireConsent must be true or false (docs/consent.md)");
	p->require_consent = json_is_true(consent);
	const char *version = json_string_value(json_object_get(root, "Version"));
	KMS_ENSURE(version && !strcmp(version, AUTHZ_POLICY_VERSION), KMS_INVALID_ARGUMENT,
	           "policy Version must be \"%s\"", AUTHZ_POLICY_VERSION);

	json_t *st = json_object_get(root, "Statement");
	size_t n = json_array_size(st);
	KMS_ENSURE(json_is_array(st) && n >= 1 && n <= AUTHZ_POLICY_STATEMENTS_MAX,
	           KMS_INVALID_ARGUMENT, "policy Statement must be an array of 1 to %d statements",
	           AUTHZ_POLICY_STATEMENTS_MAX);
	p->statements = policy_alloc(p, n, sizeof *p->statements);
	if (!p->statements)
		return OOM();
	for (size_t i = 0; i < n; i++) {
		KMS_GUARD(parse_statement(p, &p->statements[i], i, json_array_get(st, i)));
		p->n_statements++;
	}
	return KMS_OK;
}

kms_status authz_policy_parse(const char *json, size_t len, authz_policy **out)
{
	*out = NULL;
	KMS_ENSURE(json || len == 0, KMS_INVALID_ARGUMENT, "policy is missing");
	KMS_ENSURE(len <= KMS_POLICY_MAX, KMS_INVALID_ARGUMENT,
	           "policy is %zu bytes, at most %u: shorten it", len, KMS_POLICY_MAX);
	json_error_t err;
	json_t *root = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES, &err);
	if (!root) {
		/* err.text may quote the document: only its position is given. */
		if (json_error_code(&err) == json_error_duplicate_key)
			return KMS_FAIL(KMS_INVALID_ARGUMENT,
			                "policy has a member name twice in one object (line %d, "
			                "column %d): keep one", err.line, err.column);
		return KMS_FAIL(KMS_INVALID_ARGUMENT,
		                "policy is not valid JSON (line %d, column %d): fix the document",
		                err.line, err.column);
	}
	authz_policy *p = calloc(1, sizeof *p);
	if (!p) {
		json_decref(root);
		return OOM();
	}
	p->doc = root;
	kms_status st = parse_document(p, root);
	if (st != KMS_OK) {
		authz_policy_free(p);
		return st;
	}
	*out = p;
	return KMS_OK;
}

static authz_policy *default_policy;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void default_compile(void)
{
	if (authz_policy_parse(authz_default_policy_json, strlen(authz_default_policy_json),
	                       &default_policy) != KMS_OK)
		default_policy = NULL;
}

const authz_policy *authz_policy_default(void)
{
	pthread_once(&default_once, default_compile);
	return default_policy;
}

bool authz_statement_has_action(const authz_statement *s, size_t op_index)
{
	if (s->any_action)
		return true;
	return op_index < AUTHZ_OPS_MAX &&
	       (s->actions[op_index / 64] >> (op_index % 64) & 1u);
}
