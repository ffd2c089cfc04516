/*
 * store_aliases.c: the statements on aliases and tags, in the same manner
 * as store_keys.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kms/store/store.h"
#include "kms/store/store_internal.h"

/* ---- aliases ---- */

static kms_status alias_read(db_stmt *s, store_alias *out)
{
	memset(out, 0, sizeof *out);
	bool ok = store_column_text(s, 0, out->name, sizeof out->name);
	ok = store_column_text(s, 1, out->key_id, sizeof out->key_id) && ok;
	if (!ok)
		return KMS_FAIL(KMS_INTERNAL, "store: an alias row does not fit its type");
	out->created_at = db_column_int64(s, 2);
	return KMS_OK;
}

kms_status store_alias_insert(store *st, const store_alias *alias)
{
	db_stmt *s;
	KMS_GUARD(store_stmt(st, S_ALIAS_INSERT,
	                     "INSERT INTO aliases (name, key_id, created_at) VALUES (?1, ?2, ?3)",
	                     &s));
	db_rc rc = store_bind(s, "tti", alias->name, alias->key_id, alias->created_at);
	KMS_GUARD(store_bind_check(s, rc, "insert alias", alias->name));
	rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_DUPLICATE)
		status = KMS_FAIL(KMS_ALREADY_EXISTS, "alias %s already exists", alias->name);
	else if (rc == DB_FOREIGN_KEY)
		status = KMS_FAIL(KMS_NOT_FOUND, "key %s not found", alias->key_id);
	else if (rc != DB_DONE)
		status = store_fail(s, rc, "insert alias", alias->name);
	store_stmt_done(s);
	return status;
}

kms_status store_alias_get(store *st, const char *name, store_alias *out)
{
	db_stmt *s;
	memset(out, 0, sizeof *out);
	KMS_GUARD(store_stmt(st, S_ALIAS_GET,
	                     "SELECT name, key_id, created_at FROM aliases WHERE name = ?1", &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", name), "get alias", name));
	db_rc rc = db_step(s);
	kms_status status;
	if (rc == DB_ROW)
		status = alias_read(s, out);
	else if (rc == DB_DONE)
		status = KMS_FAIL(KMS_NOT_FOUND, "alias %s not found", name);
	else
		status = store_fail(s, rc, "get alias", name);
	store_stmt_done(s);
	return status;
}

kms_status store_alias_retarget(store *st, const char *name, const char *key_id)
{
	db_stmt *s;
	KMS_GUARD(store_stmt(st, S_ALIAS_RETARGET, "UPDATE aliases SET key_id = ?2 WHERE name = ?1",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "tt", name, key_id), "update alias", name));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_FOREIGN_KEY)
		status = KMS_FAIL(KMS_NOT_FOUND, "key %s not found", key_id);
	else if (rc != DB_DONE)
		status = store_fail(s, rc, "update alias", name);
	else if (db_changes(s) == 0)
		status = KMS_FAIL(KMS_NOT_FOUND, "alias %s not found", name);
	store_stmt_done(s);
	return status;
}

kms_status store_alias_delete(store *st, const char *name)
{
	db_stmt *s;
	KMS_GUARD(store_stmt(st, S_ALIAS_DELETE, "DELETE FROM aliases WHERE name = ?1", &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", name), "delete alias", name));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc != DB_DONE)
		status = store_fail(s, rc, "delete alias", name);
	else if (db_changes(s) == 0)
		status = KMS_FAIL(KMS_NOT_FOUND, "alias %s not found", name);
	store_stmt_done(s);
	return status;
}

kms_status store_aliases_delete_for_key(store *st, const char *key_id)
{
	db_stmt *s;
	KMS_GUARD(store_stmt(st, S_ALIASES_DELETE_FOR_KEY, "DELETE FROM aliases WHERE key_id = ?1",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", key_id), "delete aliases of", key_id));
	return store_step_change(s, "delete aliases of", key_id, true);
}

kms_status store_alias_count(store *st, const char *key_id, size_t *n)
{
	db_stmt *s;
	int64_t count;
	*n = 0;
	KMS_GUARD(store_stmt(st, S_ALIAS_COUNT, "SELECT count(*) FROM aliases WHERE key_id = ?1",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", key_id), "count aliases of", key_id));
	KMS_GUARD(store_step_count(s, "count aliases of", key_id, &count));
	*n = (size_t)count;
	return KMS_OK;
}

kms_status store_alias_list(store *st, const char *key_id, const char *after, size_t cap,
                            store_alias **out, size_t *n)
{
	db_stmt *s;
	size_t allocated = 0;
	db_rc rc;
	*out = NULL;
	*n = 0;
	KMS_ENSURE(cap <= INT64_MAX, KMS_INVALID_ARGUMENT, "store: list limit out of range");
	if (key_id) {
		KMS_GUARD(store_stmt(st, S_ALIAS_LIST_KEY,
		                     "SELECT name, key_id, created_at FROM aliases "
		                     "WHERE key_id = ?1 AND name > ?2 ORDER BY name LIMIT ?3",
		                     &s));
		rc = store_bind(s, "tti", key_id, after ? after : "", (int64_t)cap);
	} else {
		KMS_GUARD(store_stmt(st, S_ALIAS_LIST_ALL,
		                     "SELECT name, key_id, created_at FROM aliases "
		                     "WHERE name > ?1 ORDER BY name LIMIT ?2",
		                     &s));
		rc = store_bind(s, "ti", after ? after : "", (int64_t)cap);
	}
	KMS_GUARD(store_bind_check(s, rc, "list aliases", key_id));
	kms_status status = KMS_OK;
	while ((rc = db_step(s)) == DB_ROW && *n < cap) {
		if (!store_grow((void **)out, &allocated, *n, sizeof **out)) {
			status = KMS_FAIL(KMS_INTERNAL, "store: out of memory listing aliases");
			goto out;
		}
		KMS_GUARD_OUT(status, alias_read(s, &(*out)[*n]));
		(*n)++;
	}
	if (rc != DB_ROW && rc != DB_DONE)
		status = store_fail(s, rc, "list aliases", key_id);
out:
	store_stmt_done(s);
	if (status != KMS_OK) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return status;
}

/* ---- tags ---- */

kms_status store_tag_put(store *st, const char *key_id, const char *tag_key,
                         const char *tag_value)
{
	db_stmt *s;
	KMS_GUARD(store_stmt(st, S_TAG_PUT,
	                     "INSERT INTO tags (key_id, k, v) VALUES (?1, ?2, ?3) "
	                     "ON CONFLICT (key_id, k) DO UPDATE SET v = excluded.v",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "ttt", key_id, tag_key, tag_value), "put tag",
	                     key_id));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_FOREIGN_KEY)
		status = KMS_FAIL(KMS_NOT_FOUND, "key %s not found", key_id);
	else if (rc != DB_DONE)
		status = store_fail(s, rc, "put tag", key_id);
	store_stmt_done(s);
	return status;
}

kms_status store_tag_delete(store *st, const char *key_id, const char *tag_key)
{
	db_stmt *s;
	KMS_GUARD(store_stmt(st, S_TAG_DELETE, "DELETE FROM tags WHERE key_id = ?1 AND k = ?2", &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "tt", key_id, tag_key), "delete tag", key_id));
	return store_step_change(s, "delete tag", key_id, true);
}

kms_status store_tag_count(store *st, const char *key_id, size_t *n)
{
	db_stmt *s;
	int64_t count;
	*n = 0;
	KMS_GUARD(store_stmt(st, S_TAG_COUNT, "SELECT count(*) FROM tags WHERE key_id = ?1", &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", key_id), "count tags of", key_id));
	KMS_GUARD(store_step_count(s, "count tags of", key_id, &count));
	*n = (size_t)count;
	return KMS_OK;
}

kms_status store_tags_list(store *st, const char *key_id, store_tag **out, size_t *n)
{
	db_stmt *s;
	size_t cap = 0;
	*out = NULL;
	*n = 0;
	KMS_GUARD(store_stmt(st, S_TAGS_LIST, "SELECT k, v FROM tags WHERE key_id = ?1 ORDER BY k",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", key_id), "list tags of", key_id));
	kms_status status = KMS_OK;
	db_rc rc;
	while ((rc = db_step(s)) == DB_ROW) {
		if (!store_grow((void **)out, &cap, *n, sizeof **out)) {
			status = KMS_FAIL(KMS_INTERNAL, "store: out of memory listing tags of %s", key_id);
			goto out;
		}
		store_tag *tag = &(*out)[*n];
		bool ok = store_column_text(s, 0, tag->key, sizeof tag->key);
		ok = store_column_text(s, 1, tag->value, sizeof tag->value) && ok;
		if (!ok) {
			status = KMS_FAIL(KMS_INTERNAL, "store: a tag of %s does not fit its type", key_id);
			goto out;
		}
		(*n)++;
	}
	if (rc != DB_DONE)
		status = store_fail(s, rc, "list tags of", key_id);
out:
	store_stmt_done(s);
	if (status != KMS_OK) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return status;
}
