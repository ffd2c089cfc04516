/*
 * store_principals.c: the statements on principals and their access keys,
 * in the same manner as store_keys.c. The rules that need one transaction
 * (a name is never reused, at most two active access keys per principal, a
 * deletion revokes what the principal held) are kept here.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kms/store/store.h"
#include "kms/store/store_cache.h"
#include "kms/store/store_internal.h"

const char *principal_state_name(principal_state state)
{
	switch (state) {
	case PRINCIPAL_STATE_ENABLED: return "ENABLED";
	case PRINCIPAL_STATE_DISABLED: return "DISABLED";
	case PRINCIPAL_STATE_DELETED: return "DELETED";
	}
	return "UNKNOWN_STATE";
}

const char *access_key_state_name(access_key_state state)
{
	switch (state) {
	case ACCESS_KEY_STATE_ACTIVE: return "ACTIVE";
	case ACCESS_KEY_STATE_REVOKED: return "REVOKED";
	}
	return "UNKNOWN_STATE";
}

/* The column text of each state. */
static const char *principal_state_text(principal_state state)
{
	switch (state) {
	case PRINCIPAL_STATE_ENABLED: return "enabled";
	case PRINCIPAL_STATE_DISABLED: return "disabled";
	case PRINCIPAL_STATE_DELETED: return "deleted";
	}
	return NULL;
}

static bool principal_state_parse(const char *text, principal_state *out)
{
	for (principal_state s = PRINCIPAL_STATE_ENABLED; s <= PRINCIPAL_STATE_DELETED; s++) {
		if (strcmp(text, principal_state_text(s)) == 0) {
			*out = s;
			return true;
		}
	}
	return false;
}

static kms_status name_check(const char *name)
{
	KMS_ENSURE(name, KMS_INVALID_ARGUMENT, "store: no principal name");
	return authz_names_principal_check(name, strnlen(name, AUTHZ_PRINCIPAL_NAME_SIZE));
}

static kms_status access_key_id_check(const char *id)
{
	KMS_ENSURE(id, KMS_INVALID_ARGUMENT, "store: no access key id");
	return authz_names_id_check(AUTHZ_ACCESS_KEY_PREFIX, id, strnlen(id, AUTHZ_ID_SIZE));
}

/* ---- principals ---- */

#define PRINCIPAL_COLUMNS "name, roles, cert_name, state, created_at, updated_at"

static kms_status principal_read(db_stmt *s, store_principal *out)
{
	char state[16];
	memset(out, 0, sizeof *out);
	bool ok = store_column_text(s, 0, out->name, sizeof out->name);
	ok = store_column_text(s, 2, out->cert_name, sizeof out->cert_name) && ok;
	ok = store_column_text(s, 3, state, sizeof state) && ok;
	ok = ok && principal_state_parse(state, &out->state);
	int64_t roles = db_column_int64(s, 1);
	ok = ok && roles >= 1 && roles <= PRINCIPAL_ROLES_ALL;
	if (!ok)
		return KMS_FAIL(KMS_INTERNAL, "store: a principal row does not fit its type");
	out->roles = (uint32_t)roles;
	out->created_at = db_column_int64(s, 4);
	out->updated_at = db_column_int64(s, 5);
	return KMS_OK;
}

/* Inside the caller's transaction, or alone. */
static kms_status principal_insert_in(store *st, const store_principal *p)
{
	db_stmt *s;
	KMS_GUARD(name_check(p->name));
	KMS_ENSURE(p->roles != 0 && (p->roles & ~PRINCIPAL_ROLES_ALL) == 0, KMS_INVALID_ARGUMENT,
	           "principal %s needs at least one role of admin, app, auditor", p->name);
	size_t cert_len = strnlen(p->cert_name, sizeof p->cert_name);
	if (cert_len > 0)
		KMS_GUARD(authz_names_cert_check(p->cert_name, cert_len));
	KMS_ENSURE(p->state == PRINCIPAL_STATE_ENABLED || p->state == PRINCIPAL_STATE_DISABLED,
	           KMS_INVALID_ARGUMENT, "store: a new principal is ENABLED or DISABLED");
	KMS_GUARD(store_stmt(st, S_PRINCIPAL_INSERT,
	                     "INSERT INTO principals (" PRINCIPAL_COLUMNS ") "
	                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	                     &s));
	db_rc rc = store_bind(s, "tittii", p->name, (int64_t)p->roles, p->cert_name,
	                      principal_state_text(p->state), p->created_at, p->updated_at);
	KMS_GUARD(store_bind_check(s, rc, "insert principal", p->name));
	rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_DUPLICATE)
		status = KMS_FAIL(KMS_ALREADY_EXISTS,
		                  "principal %s exists or existed (names are never reused): "
		                  "choose another name", p->name);
	else if (rc != DB_DONE)
		status = store_fail(s, rc, "insert principal", p->name);
	store_stmt_done(s);
	return status;
}

kms_status store_principal_create(store *st, const store_principal *p)
{
	return principal_insert_in(st, p);
}

kms_status store_principal_get(store *st, const char *name, store_principal *out)
{
	db_stmt *s;
	memset(out, 0, sizeof *out);
	KMS_GUARD(name_check(name));
	uint64_t writes = store_write_count(st); /* before the read: store_cache.h */
	store_read_cache *cache = store_cache_mine(st);
	bool found;
	if (store_cache_principal_get(cache, writes, name, out, &found))
		return found ? KMS_OK : KMS_FAIL(KMS_NOT_FOUND, "principal %s not found", name);
	KMS_GUARD(store_stmt(st, S_PRINCIPAL_GET,
	                     "SELECT " PRINCIPAL_COLUMNS " FROM principals "
	                     "WHERE name = ?1 AND state <> 'deleted'",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", name), "get principal", name));
	db_rc rc = db_step(s);
	kms_status status;
	if (rc == DB_ROW)
		status = principal_read(s, out);
	else if (rc == DB_DONE)
		status = KMS_FAIL(KMS_NOT_FOUND, "principal %s not found", name);
	else
		status = store_fail(s, rc, "get principal", name);
	store_stmt_done(s);
	if (status == KMS_OK || status == KMS_NOT_FOUND)
		store_cache_principal_put(cache, writes, name, status == KMS_OK ? out : NULL);
	return status;
}

kms_status store_principals_any(store *st, bool *any)
{
	db_stmt *s;
	*any = true; /* fail closed */
	KMS_GUARD(store_stmt(st, S_PRINCIPAL_ANY, "SELECT EXISTS (SELECT 1 FROM principals)", &s));
	db_rc rc = db_step(s);
	kms_status status;
	if (rc == DB_ROW) {
		*any = db_column_int64(s, 0) != 0;
		status = KMS_OK;
	} else {
		status = store_fail(s, rc, "count principals", NULL);
	}
	store_stmt_done(s);
	return status;
}

kms_status store_principal_list(store *st, const char *after, size_t cap,
                                store_principal **out, size_t *n)
{
	db_stmt *s;
	size_t allocated = 0;
	*out = NULL;
	*n = 0;
	KMS_ENSURE(cap <= INT64_MAX, KMS_INVALID_ARGUMENT, "store: list limit out of range");
	KMS_GUARD(store_stmt(st, S_PRINCIPAL_LIST,
	                     "SELECT " PRINCIPAL_COLUMNS " FROM principals "
	                     "WHERE name > ?1 AND state <> 'deleted' ORDER BY name LIMIT ?2",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "ti", after ? after : "", (int64_t)cap),
	                           "list principals", NULL));
	kms_status status = KMS_OK;
	db_rc rc;
	while ((rc = db_step(s)) == DB_ROW) {
		if (!store_grow((void **)out, &allocated, *n, sizeof **out)) {
			status = KMS_FAIL(KMS_INTERNAL, "store: out of memory listing principals");
			break;
		}
		status = principal_read(s, &(*out)[*n]);
		if (status != KMS_OK)
			break;
		(*n)++;
	}
	if (status == KMS_OK && rc != DB_DONE)
		status = store_fail(s, rc, "list principals", NULL);
	store_stmt_done(s);
	if (status != KMS_OK) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return status;
}

kms_status store_principal_set_state(store *st, const char *name, principal_state state,
                                     int64_t now)
{
	db_stmt *s;
	KMS_GUARD(name_check(name));
	KMS_ENSURE(state == PRINCIPAL_STATE_ENABLED || state == PRINCIPAL_STATE_DISABLED,
	           KMS_INVALID_ARGUMENT,
	           "store: a principal is set ENABLED or DISABLED; deleting is its own call");
	KMS_GUARD(store_stmt(st, S_PRINCIPAL_SET_STATE,
	                     "UPDATE principals SET state = ?2, updated_at = ?3 "
	                     "WHERE name = ?1 AND state <> 'deleted'",
	                     &s));
	db_rc rc = store_bind(s, "tti", name, principal_state_text(state), now);
	KMS_GUARD(store_bind_check(s, rc, "set principal state", name));
	rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc != DB_DONE)
		status = store_fail(s, rc, "set principal state", name);
	else if (db_changes(s) == 0)
		status = KMS_FAIL(KMS_NOT_FOUND, "principal %s not found", name);
	store_stmt_done(s);
	return status;
}

static kms_status principal_delete_in(store *st, const char *name, int64_t now)
{
	db_stmt *s;
	KMS_GUARD(store_stmt(st, S_PRINCIPAL_TOMBSTONE,
	                     "UPDATE principals SET state = 'deleted', updated_at = ?2 "
	                     "WHERE name = ?1 AND state <> 'deleted'",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "ti", name, now), "delete principal", name));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc != DB_DONE)
		status = store_fail(s, rc, "delete principal", name);
	else if (db_changes(s) == 0)
		status = KMS_FAIL(KMS_NOT_FOUND, "principal %s not found", name);
	store_stmt_done(s);
	KMS_GUARD(status);

	KMS_GUARD(store_stmt(st, S_PRINCIPAL_KEYS_REVOKE,
	                     "UPDATE access_keys SET state = 'revoked', revoked_at = ?2 "
	                     "WHERE principal = ?1 AND state = 'active'",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "ti", name, now),
	                           "revoke access keys of", name));
	KMS_GUARD(store_step_change(s, "revoke access keys of", name, true));

	KMS_GUARD(store_stmt(st, S_PRINCIPAL_GRANTS_REVOKE,
	                     "UPDATE grants SET state = 'revoked', ended_at = ?2 "
	                     "WHERE grantee = ?1 AND state = 'live'",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "ti", name, now), "revoke grants to", name));
	return store_step_change(s, "revoke grants to", name, true);
}

kms_status store_principal_delete(store *st, const char *name, int64_t now)
{
	KMS_GUARD(name_check(name));
	KMS_GUARD(store_begin(st));
	kms_status status = principal_delete_in(st, name, now);
	if (status == KMS_OK)
		return store_commit(st);
	store_rollback(st);
	return status;
}

/* ---- access keys ---- */

#define ACCESS_KEY_COLUMNS "id, principal, wrapped, state, created_at, revoked_at"

static kms_status access_key_read(db_stmt *s, store_access_key *out)
{
	char state[16];
	memset(out, 0, sizeof *out);
	bool ok = store_column_text(s, 0, out->id, sizeof out->id);
	ok = store_column_text(s, 1, out->principal, sizeof out->principal) && ok;
	ok = store_column_text(s, 3, state, sizeof state) && ok;
	if (ok && strcmp(state, "active") == 0)
		out->state = ACCESS_KEY_STATE_ACTIVE;
	else if (ok && strcmp(state, "revoked") == 0)
		out->state = ACCESS_KEY_STATE_REVOKED;
	else
		ok = false;
	const void *wrapped = db_column_blob(s, 2);
	size_t len = db_column_bytes(s, 2);
	ok = ok && wrapped && len > 0 && len <= sizeof out->wrapped;
	if (!ok) {
		memset(out, 0, sizeof *out);
		return KMS_FAIL(KMS_INTERNAL, "store: an access key row does not fit its type");
	}
	memcpy(out->wrapped, wrapped, len);
	out->wrapped_len = len;
	out->created_at = db_column_int64(s, 4);
	out->revoked_at = db_column_int64(s, 5);
	return KMS_OK;
}

/* Inside the caller's transaction. */
static kms_status access_key_insert_in(store *st, const store_access_key *key)
{
	db_stmt *s;
	int64_t active;

	/* The principal is there and not deleted. */
	store_principal p;
	KMS_GUARD(store_principal_get(st, key->principal, &p));

	KMS_GUARD(store_stmt(st, S_ACCESS_KEY_COUNT_ACTIVE,
	                     "SELECT count(*) FROM access_keys "
	                     "WHERE principal = ?1 AND state = 'active'",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", key->principal),
	                           "count access keys of", key->principal));
	KMS_GUARD(store_step_count(s, "count access keys of", key->principal, &active));
	KMS_ENSURE(active < STORE_ACCESS_KEYS_ACTIVE_MAX, KMS_FAILED_PRECONDITION,
	           "principal %s already has %d active access keys: revoke one first",
	           key->principal, STORE_ACCESS_KEYS_ACTIVE_MAX);

	KMS_GUARD(store_stmt(st, S_ACCESS_KEY_INSERT,
	                     "INSERT INTO access_keys (" ACCESS_KEY_COLUMNS ") "
	                     "VALUES (?1, ?2, ?3, 'active', ?4, 0)",
	                     &s));
	db_rc rc = store_bind(s, "tt", key->id, key->principal);
	if (rc == DB_OK)
		rc = db_bind_blob(s, 3, key->wrapped, key->wrapped_len);
	if (rc == DB_OK)
		rc = db_bind_int64(s, 4, key->created_at);
	KMS_GUARD(store_bind_check(s, rc, "insert access key", key->id));
	rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_DUPLICATE)
		status = KMS_FAIL(KMS_ALREADY_EXISTS, "access key %s already exists", key->id);
	else if (rc != DB_DONE)
		status = store_fail(s, rc, "insert access key", key->id);
	store_stmt_done(s);
	return status;
}

static kms_status access_key_check(const store_access_key *key)
{
	KMS_GUARD(access_key_id_check(key->id));
	KMS_GUARD(name_check(key->principal));
	KMS_ENSURE(key->wrapped_len > 0 && key->wrapped_len <= sizeof key->wrapped,
	           KMS_INVALID_ARGUMENT, "store: access key %s: a wrapped secret is 1..%d bytes",
	           key->id, STORE_WRAPPED_SECRET_MAX);
	return KMS_OK;
}

kms_status store_access_key_create(store *st, const store_access_key *key)
{
	KMS_GUARD(access_key_check(key));
	KMS_GUARD(store_begin(st));
	kms_status status = access_key_insert_in(st, key);
	if (status == KMS_OK)
		return store_commit(st);
	store_rollback(st);
	return status;
}

kms_status store_principal_create_with_key(store *st, const store_principal *p,
                                           const store_access_key *key)
{
	KMS_GUARD(access_key_check(key));
	KMS_ENSURE(!strcmp(key->principal, p->name), KMS_INVALID_ARGUMENT,
	           "store: access key %s is not principal %s's", key->id, p->name);
	KMS_GUARD(store_begin(st));
	kms_status status = principal_insert_in(st, p);
	if (status == KMS_OK)
		status = access_key_insert_in(st, key);
	if (status == KMS_OK)
		return store_commit(st);
	store_rollback(st);
	return status;
}

kms_status store_access_key_get(store *st, const char *id, store_access_key *out)
{
	db_stmt *s;
	memset(out, 0, sizeof *out);
	KMS_GUARD(access_key_id_check(id));
	uint64_t writes = store_write_count(st); /* before the read: store_cache.h */
	store_read_cache *cache = store_cache_mine(st);
	if (store_cache_access_key_get(cache, writes, id, out))
		return KMS_OK;
	KMS_GUARD(store_stmt(st, S_ACCESS_KEY_GET,
	                     "SELECT " ACCESS_KEY_COLUMNS " FROM access_keys WHERE id = ?1", &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", id), "get access key", id));
	db_rc rc = db_step(s);
	kms_status status;
	if (rc == DB_ROW)
		status = access_key_read(s, out);
	else if (rc == DB_DONE)
		status = KMS_FAIL(KMS_NOT_FOUND, "access key %s not found", id);
	else
		status = store_fail(s, rc, "get access key", id);
	store_stmt_done(s);
	if (status == KMS_OK)
		store_cache_access_key_put(cache, writes, out);
	return status;
}

kms_status store_access_key_list(store *st, const char *principal, size_t cap,
                                 store_access_key **out, size_t *n)
{
	db_stmt *s;
	size_t allocated = 0;
	*out = NULL;
	*n = 0;
	KMS_GUARD(name_check(principal));
	KMS_ENSURE(cap <= INT64_MAX, KMS_INVALID_ARGUMENT, "store: list limit out of range");
	KMS_GUARD(store_stmt(st, S_ACCESS_KEY_LIST,
	                     "SELECT " ACCESS_KEY_COLUMNS " FROM access_keys "
	                     "WHERE principal = ?1 ORDER BY created_at, id LIMIT ?2",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "ti", principal, (int64_t)cap),
	                           "list access keys of", principal));
	kms_status status = KMS_OK;
	db_rc rc;
	while ((rc = db_step(s)) == DB_ROW) {
		if (!store_grow((void **)out, &allocated, *n, sizeof **out)) {
			status = KMS_FAIL(KMS_INTERNAL, "store: out of memory listing access keys");
			break;
		}
		status = access_key_read(s, &(*out)[*n]);
		if (status != KMS_OK)
			break;
		(*n)++;
	}
	if (status == KMS_OK && rc != DB_DONE)
		status = store_fail(s, rc, "list access keys of", principal);
	store_stmt_done(s);
	if (status != KMS_OK) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return status;
}

kms_status store_access_key_revoke(store *st, const char *id, int64_t now)
{
	db_stmt *s;
	KMS_GUARD(access_key_id_check(id));
	KMS_GUARD(store_stmt(st, S_ACCESS_KEY_REVOKE,
	                     "UPDATE access_keys SET state = 'revoked', revoked_at = ?2 "
	                     "WHERE id = ?1 AND state = 'active'",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "ti", id, now), "revoke access key", id));
	db_rc rc = db_step(s);
	int64_t changes = db_changes(s);
	kms_status status = KMS_OK;
	if (rc != DB_DONE)
		status = store_fail(s, rc, "revoke access key", id);
	store_stmt_done(s);
	KMS_GUARD(status);
	if (changes == 0) {
		/* Tell "no such key" from "already revoked". */
		store_access_key existing;
		KMS_GUARD(store_access_key_get(st, id, &existing));
		return KMS_FAIL(KMS_FAILED_PRECONDITION, "access key %s is already revoked", id);
	}
	return KMS_OK;
}
