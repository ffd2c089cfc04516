/*
 * store_grants.c: the statements on grants, in the same manner as
 * store_keys.c, and the canonical form of a grant's operation list. A
 * grant's context pairs are kept in the canonical encoding of
 * common/context.h, checked on the way in and on the way out.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/context.h"
#include "kms/store/store.h"
#include "kms/store/store_cache.h"
#include "kms/store/store_internal.h"

const char *grant_state_name(grant_state state)
{
	switch (state) {
	case GRANT_STATE_LIVE: return "LIVE";
	case GRANT_STATE_RETIRED: return "RETIRED";
	case GRANT_STATE_REVOKED: return "REVOKED";
	}
	return "UNKNOWN_STATE";
}

static const char *grant_state_text(grant_state state)
{
	switch (state) {
	case GRANT_STATE_LIVE: return "live";
	case GRANT_STATE_RETIRED: return "retired";
	case GRANT_STATE_REVOKED: return "revoked";
	}
	return NULL;
}

/* ---- the operation list ---- */

static bool op_name_ok(const char *op, size_t len)
{
	if (len < 1 || len > STORE_GRANT_OP_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = op[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return true;
}

static int op_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

kms_status store_grant_ops_join(const char *const *ops, size_t n,
                                char out[static STORE_GRANT_OPS_TEXT_MAX + 1])
{
	const char *sorted[STORE_GRANT_OPS_MAX];
	out[0] = '\0';
	KMS_ENSURE(n >= 1 && n <= STORE_GRANT_OPS_MAX, KMS_INVALID_ARGUMENT,
	           "a grant names 1..%d operations", STORE_GRANT_OPS_MAX);
	for (size_t i = 0; i < n; i++) {
		KMS_ENSURE(ops[i] && op_name_ok(ops[i], strnlen(ops[i], STORE_GRANT_OP_NAME_MAX + 1)),
		           KMS_INVALID_ARGUMENT,
		           "operation %zu of the grant is not 1..%d characters of [a-z0-9_]", i + 1,
		           STORE_GRANT_OP_NAME_MAX);
		sorted[i] = ops[i];
	}
	qsort(sorted, n, sizeof sorted[0], op_cmp);
	size_t used = 0;
	for (size_t i = 0; i < n; i++) {
		KMS_ENSURE(i == 0 || strcmp(sorted[i - 1], sorted[i]) != 0, KMS_INVALID_ARGUMENT,
		           "the grant names an operation twice: name each once");
		size_t len = strlen(sorted[i]);
		/* Fits: at most STORE_GRANT_OPS_MAX names of 48 bytes and a ',' each. */
		if (i > 0)
			out[used++] = ',';
		memcpy(out + used, sorted[i], len);
		used += len;
	}
	out[used] = '\0';
	return KMS_OK;
}

/* Whether text is what store_grant_ops_join makes. */
static bool ops_canonical(const char *text, size_t cap)
{
	size_t len = strnlen(text, cap);
	if (len == 0 || len >= cap)
		return false;
	size_t count = 0, start = 0;
	const char *prev = NULL;
	size_t prev_len = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && text[i] != ',')
			continue;
		const char *op = text + start;
		size_t op_len = i - start;
		if (!op_name_ok(op, op_len) || ++count > STORE_GRANT_OPS_MAX)
			return false;
		if (prev) {
			size_t m = prev_len < op_len ? prev_len : op_len;
			int c = memcmp(prev, op, m);
			if (c > 0 || (c == 0 && prev_len >= op_len))
				return false; /* not ascending, or a repeat */
		}
		prev = op;
		prev_len = op_len;
		start = i + 1;
	}
	return true;
}

bool store_grant_has_op(const store_grant *grant, const char *op)
{
	size_t op_len = strlen(op);
	const char *p = grant->operations;
	const char *end = p + strnlen(p, sizeof grant->operations);
	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		size_t len = comma ? (size_t)(comma - p) : (size_t)(end - p);
		if (len == op_len && memcmp(p, op, len) == 0)
			return true;
		p += len + 1;
	}
	return false;
}

static kms_status context_check(const uint8_t *bytes, size_t len)
{
	context_pair pairs[KMS_CONTEXT_MAX_PAIRS];
	size_t n;
	KMS_ENSURE(len >= KMS_CONTEXT_ENCODED_EMPTY_LEN && len <= STORE_GRANT_CONTEXT_MAX,
	           KMS_INVALID_ARGUMENT,
	           "a grant's context pairs take at most %d bytes encoded: require fewer pairs",
	           STORE_GRANT_CONTEXT_MAX);
	return context_decode(bytes, len, pairs, &n);
}

/* ---- rows ---- */

#define GRANT_COLUMNS                                                          \
	"id, key_id, grantee, operations, context, creator, state, created_at, ended_at"

static kms_status grant_read(db_stmt *s, store_grant *out)
{
	char state[16];
	memset(out, 0, sizeof *out);
	bool ok = store_column_text(s, 0, out->id, sizeof out->id);
	ok = store_column_text(s, 1, out->key_id, sizeof out->key_id) && ok;
	ok = store_column_text(s, 2, out->grantee, sizeof out->grantee) && ok;
	ok = store_column_text(s, 3, out->operations, sizeof out->operations) && ok;
	ok = store_column_text(s, 5, out->creator, sizeof out->creator) && ok;
	ok = store_column_text(s, 6, state, sizeof state) && ok;
	ok = ok && ops_canonical(out->operations, sizeof out->operations);
	if (ok && strcmp(state, "live") == 0)
		out->state = GRANT_STATE_LIVE;
	else if (ok && strcmp(state, "retired") == 0)
		out->state = GRANT_STATE_RETIRED;
	else if (ok && strcmp(state, "revoked") == 0)
		out->state = GRANT_STATE_REVOKED;
	else
		ok = false;
	const void *context = db_column_blob(s, 4);
	size_t len = db_column_bytes(s, 4);
	ok = ok && context && len > 0 && len <= sizeof out->context;
	if (ok) {
		memcpy(out->context, context, len);
		out->context_len = len;
		ok = context_check(out->context, out->context_len) == KMS_OK;
	}
	if (!ok) {
		memset(out, 0, sizeof *out);
		return KMS_FAIL(KMS_INTERNAL, "store: a grant row does not fit its type");
	}
	out->created_at = db_column_int64(s, 7);
	out->ended_at = db_column_int64(s, 8);
	return KMS_OK;
}

static kms_status grant_id_check(const char *id)
{
	KMS_ENSURE(id, KMS_INVALID_ARGUMENT, "store: no grant id");
	return authz_names_id_check(AUTHZ_GRANT_PREFIX, id, strnlen(id, AUTHZ_ID_SIZE));
}

static kms_status key_id_check(const char *key_id)
{
	uint8_t bytes[KMS_KEYID_BYTES];
	KMS_ENSURE(key_id, KMS_INVALID_ARGUMENT, "store: no key id");
	return keyid_parse(key_id, strnlen(key_id, KMS_KEYID_TEXT_SIZE), bytes);
}

static kms_status principal_name_check(const char *name)
{
	KMS_ENSURE(name, KMS_INVALID_ARGUMENT, "store: no principal name");
	return authz_names_principal_check(name, strnlen(name, AUTHZ_PRINCIPAL_NAME_SIZE));
}

/* Inside the caller's transaction. */
static kms_status grant_insert_in(store *st, const store_grant *g)
{
	db_stmt *s;
	int64_t count;

	store_principal grantee;
	KMS_GUARD(store_principal_get(st, g->grantee, &grantee));

	KMS_GUARD(store_stmt(st, S_GRANT_KEY_VISIBLE,
	                     "SELECT count(*) FROM keys WHERE id = ?1 AND lifecycle = 'ready'", &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", g->key_id), "find key", g->key_id));
	KMS_GUARD(store_step_count(s, "find key", g->key_id, &count));
	KMS_ENSURE(count == 1, KMS_NOT_FOUND, "key %s not found", g->key_id);

	KMS_GUARD(store_stmt(st, S_GRANT_COUNT_LIVE,
	                     "SELECT count(*) FROM grants "
	                     "WHERE grantee = ?1 AND key_id = ?2 AND state = 'live'",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "tt", g->grantee, g->key_id),
	                           "count grants to", g->grantee));
	KMS_GUARD(store_step_count(s, "count grants to", g->grantee, &count));
	KMS_ENSURE(count < STORE_GRANTS_LIVE_MAX, KMS_FAILED_PRECONDITION,
	           "principal %s already has %d live grants on key %s: retire or revoke one first",
	           g->grantee, STORE_GRANTS_LIVE_MAX, g->key_id);

	KMS_GUARD(store_stmt(st, S_GRANT_INSERT,
	                     "INSERT INTO grants (" GRANT_COLUMNS ") "
	                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'live', ?7, 0)",
	                     &s));
	db_rc rc = store_bind(s, "tttt", g->id, g->key_id, g->grantee, g->operations);
	if (rc == DB_OK)
		rc = db_bind_blob(s, 5, g->context, g->context_len);
	if (rc == DB_OK)
		rc = db_bind_text(s, 6, g->creator);
	if (rc == DB_OK)
		rc = db_bind_int64(s, 7, g->created_at);
	KMS_GUARD(store_bind_check(s, rc, "insert grant", g->id));
	rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_DUPLICATE)
		status = KMS_FAIL(KMS_ALREADY_EXISTS, "grant %s already exists", g->id);
	else if (rc != DB_DONE)
		status = store_fail(s, rc, "insert grant", g->id);
	store_stmt_done(s);
	return status;
}

kms_status store_grant_create(store *st, const store_grant *g)
{
	KMS_GUARD(grant_id_check(g->id));
	KMS_GUARD(key_id_check(g->key_id));
	KMS_GUARD(principal_name_check(g->grantee));
	KMS_GUARD(principal_name_check(g->creator));
	KMS_ENSURE(ops_canonical(g->operations, sizeof g->operations), KMS_INVALID_ARGUMENT,
	           "store: grant %s: its operations are not in canonical form "
	           "(store_grant_ops_join)", g->id);
	KMS_GUARD(context_check(g->context, g->context_len));
	KMS_GUARD(store_begin(st));
	kms_status status = grant_insert_in(st, g);
	if (status == KMS_OK)
		return store_commit(st);
	store_rollback(st);
	return status;
}

kms_status store_grant_get(store *st, const char *id, store_grant *out)
{
	db_stmt *s;
	memset(out, 0, sizeof *out);
	KMS_GUARD(grant_id_check(id));
	KMS_GUARD(store_stmt(st, S_GRANT_GET, "SELECT " GRANT_COLUMNS " FROM grants WHERE id = ?1",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", id), "get grant", id));
	db_rc rc = db_step(s);
	kms_status status;
	if (rc == DB_ROW)
		status = grant_read(s, out);
	else if (rc == DB_DONE)
		status = KMS_FAIL(KMS_NOT_FOUND, "grant %s not found", id);
	else
		status = store_fail(s, rc, "get grant", id);
	store_stmt_done(s);
	return status;
}

/* Steps a query of grant rows into a malloc'ed array. */
static kms_status grants_collect(db_stmt *s, const char *what, const char *name,
                                 store_grant **out, size_t *n)
{
	size_t allocated = 0;
	kms_status status = KMS_OK;
	db_rc rc;
	*out = NULL;
	*n = 0;
	while ((rc = db_step(s)) == DB_ROW) {
		if (!store_grow((void **)out, &allocated, *n, sizeof **out)) {
			status = KMS_FAIL(KMS_INTERNAL, "store: out of memory listing grants");
			break;
		}
		status = grant_read(s, &(*out)[*n]);
		if (status != KMS_OK)
			break;
		(*n)++;
	}
	if (status == KMS_OK && rc != DB_DONE)
		status = store_fail(s, rc, what, name);
	store_stmt_done(s);
	if (status != KMS_OK) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return status;
}

kms_status store_grant_list(store *st, store_grant_by by, const char *name, const char *after,
                            size_t cap, store_grant **out, size_t *n)
{
	db_stmt *s;
	*out = NULL;
	*n = 0;
	KMS_ENSURE(cap <= INT64_MAX, KMS_INVALID_ARGUMENT, "store: list limit out of range");
	if (by == STORE_GRANTS_BY_KEY) {
		KMS_GUARD(key_id_check(name));
		KMS_GUARD(store_stmt(st, S_GRANT_LIST_KEY,
		                     "SELECT " GRANT_COLUMNS " FROM grants "
		                     "WHERE key_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
		                     &s));
	} else {
		KMS_GUARD(principal_name_check(name));
		KMS_GUARD(store_stmt(st, S_GRANT_LIST_GRANTEE,
		                     "SELECT " GRANT_COLUMNS " FROM grants "
		                     "WHERE grantee = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
		                     &s));
	}
	db_rc rc = store_bind(s, "tti", name, after ? after : "", (int64_t)cap);
	KMS_GUARD(store_bind_check(s, rc, "list grants of", name));
	return grants_collect(s, "list grants of", name, out, n);
}

kms_status store_grant_end(store *st, const char *id, grant_state how, int64_t now)
{
	db_stmt *s;
	KMS_GUARD(grant_id_check(id));
	KMS_ENSURE(how == GRANT_STATE_RETIRED || how == GRANT_STATE_REVOKED, KMS_INVALID_ARGUMENT,
	           "store: a grant ends RETIRED or REVOKED");
	KMS_GUARD(store_stmt(st, S_GRANT_END,
	                     "UPDATE grants SET state = ?2, ended_at = ?3 "
	                     "WHERE id = ?1 AND state = 'live'",
	                     &s));
	db_rc rc = store_bind(s, "tti", id, grant_state_text(how), now);
	KMS_GUARD(store_bind_check(s, rc, "end grant", id));
	rc = db_step(s);
	int64_t changes = db_changes(s);
	kms_status status = KMS_OK;
	if (rc != DB_DONE)
		status = store_fail(s, rc, "end grant", id);
	store_stmt_done(s);
	KMS_GUARD(status);
	if (changes == 0) {
		store_grant existing;
		KMS_GUARD(store_grant_get(st, id, &existing));
		return KMS_FAIL(KMS_FAILED_PRECONDITION, "grant %s is already %s", id,
		                grant_state_name(existing.state));
	}
	return KMS_OK;
}

kms_status store_grants_live(store *st, const char *principal, const char *key_id,
                             store_grant **out, size_t *n)
{
	db_stmt *s;
	*out = NULL;
	*n = 0;
	KMS_GUARD(principal_name_check(principal));
	KMS_GUARD(key_id_check(key_id));
	uint64_t writes = store_write_count(st); /* before the read: store_cache.h */
	store_read_cache *cache = store_cache_mine(st);
	if (store_cache_no_grants(cache, writes, principal, key_id))
		return KMS_OK;
	KMS_GUARD(store_stmt(st, S_GRANTS_LIVE,
	                     "SELECT " GRANT_COLUMNS " FROM grants "
	                     "WHERE grantee = ?1 AND key_id = ?2 AND state = 'live' "
	                     "ORDER BY id LIMIT ?3",
	                     &s));
	db_rc rc = store_bind(s, "tti", principal, key_id, (int64_t)STORE_GRANTS_LIVE_MAX);
	KMS_GUARD(store_bind_check(s, rc, "find live grants to", principal));
	kms_status status = grants_collect(s, "find live grants to", principal, out, n);
	if (status == KMS_OK && *n == 0)
		store_cache_no_grants_put(cache, writes, principal, key_id);
	return status;
}
