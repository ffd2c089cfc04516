/*
 * store_keys.c: the statements on keys and their versions. Each function
 * uses one cached statement of the calling thread's connection and resets
 * it before returning, so no read snapshot outlives a call.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kms/store/store.h"
#include "kms/store/store_cache.h"
#include "kms/store/store_internal.h"

#define KEY_COLUMNS                                                            \
	"id, description, spec, usage, state, lifecycle, primary_version, "    \
	"rotation_period_days, created_at, next_rotation_at, deletion_date, region, protection, " \
	"per_data_principal"

/* ---- rows <-> types ---- */


static const char *lifecycle_text(key_lifecycle lifecycle)
{
	return key_lifecycle_name(lifecycle);
}

static bool lifecycle_parse(const char *text, key_lifecycle *out)
{
	for (key_lifecycle l = KEY_LIFECYCLE_CREATING; l <= KEY_LIFECYCLE_DESTROYED; l++)
		if (strcmp(text, key_lifecycle_name(l)) == 0) {
			*out = l;
			return true;
		}
	return false;
}

static bool protection_parse(const char *text, key_protection *out)
{
	for (key_protection p = KEY_PROTECTION_HSM_RESIDENT; p <= KEY_PROTECTION_WRAPPED; p++)
		if (strcmp(text, key_protection_name(p)) == 0) {
			*out = p;
			return true;
		}
	return false;
}

static bool version_state_parse(const char *text, version_state *out)
{
	for (version_state v = VERSION_STATE_CREATING; v <= VERSION_STATE_DESTROYED; v++)
		if (strcmp(text, version_state_name(v)) == 0) {
			*out = v;
			return true;
		}
	return false;
}

static bool in_range(int64_t v, int64_t lo, int64_t hi)
{
	return v >= lo && v <= hi;
}

/* ---- keys ---- */

static kms_status key_read(db_stmt *s, store_key *out)
{
	char lifecycle[16], protection[16];
	memset(out, 0, sizeof *out);
	bool ok = store_column_text(s, 0, out->id, sizeof out->id);
	ok = store_column_text(s, 12, protection, sizeof protection) && ok;
	ok = ok && protection_parse(protection, &out->protection);
	ok = store_column_text(s, 1, out->description, sizeof out->description) && ok;
	ok = store_column_text(s, 11, out->region, sizeof out->region) && ok;
	ok = store_column_text(s, 5, lifecycle, sizeof lifecycle) && ok;
	ok = ok && lifecycle_parse(lifecycle, &out->lifecycle);

	int64_t spec = db_column_int64(s, 2);
	int64_t usage = db_column_int64(s, 3);
	int64_t state = db_column_int64(s, 4);
	int64_t primary = db_column_int64(s, 6);
	int64_t period = db_column_int64(s, 7);
	ok = ok && in_range(spec, KEY_SPEC_AES_256, KEY_SPEC_ECC_P256) &&
	     in_range(usage, KEY_USAGE_ENCRYPT_DECRYPT, KEY_USAGE_SIGN_VERIFY) &&
	     in_range(state, KEY_STATE_ENABLED, KEY_STATE_DESTROYED) &&
	     in_range(primary, 0, UINT32_MAX) && in_range(period, 0, UINT32_MAX);
	if (!ok)
		return KMS_FAIL(KMS_INTERNAL, "store: key row %s does not fit its type",
		                out->id[0] ? out->id : "(unreadable id)");
	out->spec = (key_spec)spec;
	out->usage = (key_usage)usage;
	out->state = (key_state)state;
	out->primary_version = (uint32_t)primary;
	out->rotation_period_days = (uint32_t)period;
	out->created_at = db_column_int64(s, 8);
	out->next_rotation_at = db_column_int64(s, 9);
	out->deletion_date = db_column_int64(s, 10);
	out->per_data_principal = db_column_int64(s, 13) != 0;
	return KMS_OK;
}

kms_status store_key_insert(store *st, const store_key *key, const char *policy)
{
	db_stmt *s;
	KMS_ENSURE(key->protection == KEY_PROTECTION_HSM_RESIDENT ||
	                   key->protection == KEY_PROTECTION_WRAPPED,
	           KMS_INVALID_ARGUMENT, "store: key %s: protection %d is neither hsm-resident "
	           "nor wrapped", key->id, (int)key->protection);
	KMS_GUARD(store_stmt(st, S_KEY_INSERT,
	                     "INSERT INTO keys (" KEY_COLUMNS ", policy, intent_owner, request_ref) "
	                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
	                     "?16, ?17)",
	                     &s));
	db_rc rc = store_bind(s, "ttiiitiiiiittittt", key->id, key->description, (int64_t)key->spec,
	                      (int64_t)key->usage, (int64_t)key->state,
	                      lifecycle_text(key->lifecycle), (int64_t)key->primary_version,
	                      (int64_t)key->rotation_period_days, key->created_at,
	                      key->next_rotation_at, key->deletion_date, key->region,
	                      key_protection_name(key->protection),
	                      (int64_t)(key->per_data_principal ? 1 : 0), policy ? policy : "",
	                      store_replica_id(st), key->request_ref);
	KMS_GUARD(store_bind_check(s, rc, "insert key", key->id));
	rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_DUPLICATE)
		status = KMS_FAIL(KMS_ALREADY_EXISTS, "store: key %s already exists", key->id);
	else if (rc != DB_DONE)
		status = store_fail(s, rc, "insert key", key->id);
	store_stmt_done(s);
	return status;
}

kms_status store_key_get(store *st, const char *key_id, store_key *out)
{
	db_stmt *s;
	memset(out, 0, sizeof *out);
	KMS_GUARD(store_stmt(st, S_KEY_GET, "SELECT " KEY_COLUMNS " FROM keys WHERE id = ?1", &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", key_id), "get key", key_id));
	db_rc rc = db_step(s);
	kms_status status;
	if (rc == DB_ROW)
		status = key_read(s, out);
	else if (rc == DB_DONE)
		status = KMS_FAIL(KMS_NOT_FOUND, "key %s not found", key_id);
	else
		status = store_fail(s, rc, "get key", key_id);
	store_stmt_done(s);
	return status;
}

kms_status store_key_update(store *st, const store_key *key)
{
	db_stmt *s;
	KMS_GUARD(store_stmt(st, S_KEY_UPDATE,
	                     "UPDATE keys SET description = ?2, state = ?3, lifecycle = ?4, "
	                     "primary_version = ?5, rotation_period_days = ?6, "
	                     "next_rotation_at = ?7, deletion_date = ?8 WHERE id = ?1",
	                     &s));
	db_rc rc = store_bind(s, "ttitiiii", key->id, key->description, (int64_t)key->state,
	                      lifecycle_text(key->lifecycle), (int64_t)key->primary_version,
	                      (int64_t)key->rotation_period_days, key->next_rotation_at,
	                      key->deletion_date);
	KMS_GUARD(store_bind_check(s, rc, "update key", key->id));
	return store_step_change(s, "update key", key->id, false);
}

/* Runs a DELETE; *deleted (if not NULL) says whether it removed a row. */
static kms_status step_delete(db_stmt *s, const char *what, const char *id, bool *deleted)
{
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc != DB_DONE)
		status = store_fail(s, rc, what, id);
	else if (deleted)
		*deleted = db_changes(s) > 0;
	store_stmt_done(s);
	return status;
}

kms_status store_key_delete(store *st, const char *key_id, bool *deleted)
{
	db_stmt *s;
	if (deleted)
		*deleted = false;
	KMS_GUARD(store_stmt(st, S_KEY_DELETE,
	                     "DELETE FROM keys WHERE id = ?1 AND lifecycle = 'creating'", &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", key_id), "delete key", key_id));
	return step_delete(s, "delete key", key_id, deleted);
}

kms_status store_key_list(store *st, const char *after_id, size_t cap, store_key *out,
                          size_t *n)
{
	db_stmt *s;
	*n = 0;
	KMS_ENSURE(cap <= INT64_MAX, KMS_INVALID_ARGUMENT, "store: list limit out of range");
	KMS_GUARD(store_stmt(st, S_KEY_LIST,
	                     "SELECT " KEY_COLUMNS " FROM keys "
	                     "WHERE lifecycle <> 'creating' AND id > ?1 ORDER BY id LIMIT ?2",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "ti", after_id ? after_id : "", (int64_t)cap),
	                     "list keys", NULL));
	kms_status status = KMS_OK;
	db_rc rc;
	while ((rc = db_step(s)) == DB_ROW && *n < cap) {
		KMS_GUARD_OUT(status, key_read(s, &out[*n]));
		(*n)++;
	}
	if (rc != DB_ROW && rc != DB_DONE)
		status = store_fail(s, rc, "list keys", NULL);
out:
	store_stmt_done(s);
	if (status != KMS_OK)
		*n = 0;
	return status;
}

kms_status store_key_ids(store *st, store_key_query q, int64_t now, size_t cap,
                         char (*ids)[KMS_KEYID_TEXT_SIZE], size_t *n)
{
	db_stmt *s = NULL;
	*n = 0;
	KMS_ENSURE(cap <= INT64_MAX, KMS_INVALID_ARGUMENT, "store: id list limit out of range");
	switch (q) {
	case STORE_KEYS_CREATING:
	case STORE_KEYS_CREATING_STALE:
		KMS_GUARD(store_stmt(st, S_KEY_IDS_CREATING,
		                     "SELECT id FROM keys WHERE lifecycle = 'creating' "
		                     "AND (created_at <= ?1 OR (?3 <> '' AND intent_owner = ?3)) "
		                     "ORDER BY id LIMIT ?2",
		                     &s));
		break;
	case STORE_KEYS_DESTROYING:
		KMS_GUARD(store_stmt(st, S_KEY_IDS_DESTROYING,
		                     "SELECT id FROM keys WHERE lifecycle = 'destroying' "
		                     "ORDER BY id LIMIT ?2",
		                     &s));
		break;
	/* The due queries' WHERE is their partial index's condition (SQLite
	 * uses a partial index only for a query whose WHERE implies it) and
	 * their ORDER BY the index's columns: a page reads its rows and stops. */
	case STORE_KEYS_DELETION_DUE:
		KMS_GUARD(store_stmt(st, S_KEY_IDS_DELETION_DUE,
		                     "SELECT id FROM keys WHERE state = 3 AND lifecycle = 'ready' "
		                     "AND deletion_date <= ?1 ORDER BY deletion_date, id LIMIT ?2",
		                     &s));
		break;
	case STORE_KEYS_ROTATION_DUE:
		KMS_GUARD(store_stmt(st, S_KEY_IDS_ROTATION_DUE,
		                     "SELECT id FROM keys WHERE rotation_period_days > 0 "
		                     "AND state = 1 AND lifecycle = 'ready' "
		                     "AND next_rotation_at <= ?1 ORDER BY next_rotation_at, id "
		                     "LIMIT ?2",
		                     &s));
		break;
	default:
		return KMS_FAIL(KMS_INTERNAL, "store: unknown key query %d", (int)q);
	}
	/* ?1 (now) is unused by destroying; binding it anyway is allowed.
	 * Creating has ?3, this replica's own intents, whatever their age
	 * ('': none). */
	db_rc rc0 = q == STORE_KEYS_CREATING || q == STORE_KEYS_CREATING_STALE
	                    ? store_bind(s, "iit", now, (int64_t)cap,
	                                 q == STORE_KEYS_CREATING ? store_replica_id(st) : "")
	                    : store_bind(s, "ii", now, (int64_t)cap);
	KMS_GUARD(store_bind_check(s, rc0, "key ids", NULL));
	kms_status status = KMS_OK;
	db_rc rc;
	while ((rc = db_step(s)) == DB_ROW && *n < cap) {
		if (!store_column_text(s, 0, ids[*n], KMS_KEYID_TEXT_SIZE)) {
			status = KMS_FAIL(KMS_INTERNAL, "store: a key id does not fit its type");
			goto out;
		}
		(*n)++;
	}
	if (rc != DB_ROW && rc != DB_DONE)
		status = store_fail(s, rc, "key ids", NULL);
out:
	store_stmt_done(s);
	if (status != KMS_OK)
		*n = 0;
	return status;
}

kms_status store_policy_get(store *st, const char *key_id, char **out)
{
	db_stmt *s;
	*out = NULL;
	uint64_t writes = store_write_count(st); /* before the read: store_cache.h */
	store_read_cache *cache = store_cache_mine(st);
	if (store_cache_no_policy(cache, writes, key_id)) {
		*out = calloc(1, 1);
		return *out ? KMS_OK : KMS_FAIL(KMS_INTERNAL, "store: out of memory reading policy "
		                                "of %s", key_id);
	}
	KMS_GUARD(store_stmt(st, S_POLICY_GET, "SELECT policy FROM keys WHERE id = ?1", &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", key_id), "get policy", key_id));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_ROW) {
		const char *text = db_column_text(s, 0);
		size_t len = db_column_bytes(s, 0);
		if (!text || len > KMS_POLICY_MAX) {
			status = KMS_FAIL(KMS_INTERNAL, "store: policy of %s does not fit its type", key_id);
		} else if (!(*out = malloc(len + 1))) {
			status = KMS_FAIL(KMS_INTERNAL, "store: out of memory reading policy of %s", key_id);
		} else {
			memcpy(*out, text, len);
			(*out)[len] = '\0';
			if (len == 0)
				store_cache_no_policy_put(cache, writes, key_id);
		}
	} else if (rc == DB_DONE) {
		status = KMS_FAIL(KMS_NOT_FOUND, "key %s not found", key_id);
	} else {
		status = store_fail(s, rc, "get policy", key_id);
	}
	store_stmt_done(s);
	return status;
}

kms_status store_policy_set(store *st, const char *key_id, const char *policy)
{
	db_stmt *s;
	KMS_GUARD(store_stmt(st, S_POLICY_SET, "UPDATE keys SET policy = ?2 WHERE id = ?1", &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "tt", key_id, policy), "set policy", key_id));
	return store_step_change(s, "set policy", key_id, false);
}

/* ---- versions ---- */

static kms_status version_read(db_stmt *s, int first_col, const char *key_id,
                               store_version *out)
{
	char state[16];
	memset(out, 0, sizeof *out);
	int64_t version = db_column_int64(s, first_col);
	int64_t reserved = db_column_int64(s, first_col + 3);
	bool ok = store_column_text(s, first_col + 2, state, sizeof state) &&
	          version_state_parse(state, &out->state) && in_range(version, 1, UINT32_MAX) &&
	          reserved >= 0;
	if (!ok)
		return KMS_FAIL(KMS_INTERNAL, "store: a version row of %s does not fit its type",
		                key_id);
	out->version = (uint32_t)version;
	out->created_at = db_column_int64(s, first_col + 1);
	out->encryptions_reserved = (uint64_t)reserved;
	int64_t kek = db_column_is_null(s, first_col + 4)
	                      ? 0
	                      : db_column_int64(s, first_col + 4);
	if (!in_range(kek, 0, UINT32_MAX))
		return KMS_FAIL(KMS_INTERNAL, "store: a version row of %s names no valid KEK", key_id);
	out->kek_id = (uint32_t)kek;
	return KMS_OK;
}

kms_status store_version_insert_material(store *st, const char *key_id, const store_version *v,
                                         uint32_t kek_id, const uint8_t *wrapped,
                                         size_t wrapped_len)
{
	db_stmt *s;
	KMS_ENSURE(v->encryptions_reserved <= INT64_MAX, KMS_INTERNAL,
	           "store: reservation count of %s out of range", key_id);
	KMS_GUARD(store_stmt(st, S_VERSION_INSERT,
	                     "INSERT INTO key_versions (key_id, version, created_at, state, "
	                     "encryptions_reserved, kek_id, wrapped, intent_owner) "
	                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	                     &s));
	int rc = wrapped ? store_bind(s, "tiitiibt", key_id, (int64_t)v->version, v->created_at,
	                              version_state_name(v->state),
	                              (int64_t)v->encryptions_reserved, (int64_t)kek_id, wrapped,
	                              wrapped_len, store_replica_id(st))
	                 : store_bind(s, "tiitinnt", key_id, (int64_t)v->version, v->created_at,
	                              version_state_name(v->state),
	                              (int64_t)v->encryptions_reserved, store_replica_id(st));
	KMS_GUARD(store_bind_check(s, rc, "insert version", key_id));
	rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_DUPLICATE)
		status = KMS_FAIL(KMS_ALREADY_EXISTS, "store: %s:v%u already exists", key_id,
		                  (unsigned)v->version);
	else if (rc == DB_FOREIGN_KEY && wrapped)
		status = KMS_FAIL(KMS_NOT_FOUND, "key %s or KEK %u not found", key_id,
		                  (unsigned)kek_id);
	else if (rc == DB_FOREIGN_KEY)
		status = KMS_FAIL(KMS_NOT_FOUND, "key %s not found", key_id);
	else if (rc == DB_TRIGGER)
		status = KMS_FAIL(KMS_FAILED_PRECONDITION, "store: %s:v%u: %s", key_id,
		                  (unsigned)v->version, db_errmsg(s));
	else if (rc != DB_DONE)
		status = store_fail(s, rc, "insert version", key_id);
	store_stmt_done(s);
	return status;
}

kms_status store_version_insert(store *st, const char *key_id, const store_version *v)
{
	return store_version_insert_material(st, key_id, v, 0, NULL, 0);
}

kms_status store_version_get(store *st, const char *key_id, uint32_t version,
                             store_version *out)
{
	db_stmt *s;
	memset(out, 0, sizeof *out);
	KMS_GUARD(store_stmt(st, S_VERSION_GET,
	                     "SELECT version, created_at, state, encryptions_reserved, kek_id "
	                     "FROM key_versions WHERE key_id = ?1 AND version = ?2",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "ti", key_id, (int64_t)version), "get version",
	                     key_id));
	db_rc rc = db_step(s);
	kms_status status;
	if (rc == DB_ROW)
		status = version_read(s, 0, key_id, out);
	else if (rc == DB_DONE)
		status = KMS_FAIL(KMS_NOT_FOUND, "key %s has no version %u", key_id, (unsigned)version);
	else
		status = store_fail(s, rc, "get version", key_id);
	store_stmt_done(s);
	return status;
}

kms_status store_version_set_state(store *st, const char *key_id, uint32_t version,
                                   version_state state)
{
	db_stmt *s;
	/* Destroyed: the wrapped material goes in the same statement. */
	KMS_GUARD(store_stmt(st, S_VERSION_SET_STATE,
	                     "UPDATE key_versions SET state = ?3, "
	                     "kek_id = CASE WHEN ?3 = 'destroyed' THEN NULL ELSE kek_id END, "
	                     "wrapped = CASE WHEN ?3 = 'destroyed' THEN NULL ELSE wrapped END "
	                     "WHERE key_id = ?1 AND version = ?2",
	                     &s));
	db_rc rc = store_bind(s, "tit", key_id, (int64_t)version, version_state_name(state));
	KMS_GUARD(store_bind_check(s, rc, "set version state", key_id));
	return store_step_change(s, "set version state", key_id, false);
}

kms_status store_version_delete(store *st, const char *key_id, uint32_t version,
                                bool *deleted)
{
	db_stmt *s;
	if (deleted)
		*deleted = false;
	KMS_GUARD(store_stmt(st, S_VERSION_DELETE,
	                     "DELETE FROM key_versions WHERE key_id = ?1 AND version = ?2 "
	                     "AND state = 'creating'",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "ti", key_id, (int64_t)version), "delete version",
	                     key_id));
	return step_delete(s, "delete version", key_id, deleted);
}

kms_status store_version_reserve(store *st, const char *key_id, uint32_t version,
                                 uint64_t reserved)
{
	db_stmt *s;
	KMS_ENSURE(reserved <= INT64_MAX, KMS_INTERNAL,
	           "store: reservation count of %s:v%u out of range", key_id, (unsigned)version);
	KMS_GUARD(store_stmt(st, S_VERSION_RESERVE,
	                     "UPDATE key_versions SET encryptions_reserved = ?3 "
	                     "WHERE key_id = ?1 AND version = ?2",
	                     &s));
	db_rc rc = store_bind(s, "tii", key_id, (int64_t)version, (int64_t)reserved);
	KMS_GUARD(store_bind_check(s, rc, "reserve encryptions", key_id));
	return store_step_change(s, "reserve encryptions", key_id, false);
}

kms_status store_version_max(store *st, const char *key_id, uint32_t *out)
{
	db_stmt *s;
	int64_t max;
	*out = 0;
	KMS_GUARD(store_stmt(st, S_VERSION_MAX,
	                     "SELECT coalesce(max(version), 0) FROM key_versions WHERE key_id = ?1",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", key_id), "max version", key_id));
	KMS_GUARD(store_step_count(s, "max version", key_id, &max));
	KMS_ENSURE(in_range(max, 0, UINT32_MAX), KMS_INTERNAL,
	           "store: versions of %s out of range", key_id);
	*out = (uint32_t)max;
	return KMS_OK;
}

kms_status store_versions_list(store *st, const char *key_id, store_version **out, size_t *n)
{
	db_stmt *s;
	size_t cap = 0;
	*out = NULL;
	*n = 0;
	KMS_GUARD(store_stmt(st, S_VERSIONS_LIST,
	                     "SELECT version, created_at, state, encryptions_reserved, kek_id "
	                     "FROM key_versions WHERE key_id = ?1 ORDER BY version",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", key_id), "list versions", key_id));
	kms_status status = KMS_OK;
	db_rc rc;
	while ((rc = db_step(s)) == DB_ROW) {
		if (!store_grow((void **)out, &cap, *n, sizeof **out)) {
			status = KMS_FAIL(KMS_INTERNAL, "store: out of memory listing versions of %s",
			                  key_id);
			goto out;
		}
		KMS_GUARD_OUT(status, version_read(s, 0, key_id, &(*out)[*n]));
		(*n)++;
	}
	if (rc != DB_DONE)
		status = store_fail(s, rc, "list versions", key_id);
out:
	store_stmt_done(s);
	if (status != KMS_OK) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return status;
}

kms_status store_version_row_read(db_stmt *s, int first_col, store_version_row *out)
{
	memset(out, 0, sizeof *out);
	if (!store_column_text(s, first_col, out->key_id, sizeof out->key_id))
		return KMS_FAIL(KMS_INTERNAL, "store: a version's key id does not fit its type");
	return version_read(s, first_col + 1, out->key_id, &out->v);
}

/* Steps s, reading each row's version columns from first_col into
 * out[0..cap); resets s. */
static kms_status version_rows_page(db_stmt *s, const char *what, size_t cap,
                                    store_version_row *out, size_t *n)
{
	kms_status status = KMS_OK;
	db_rc rc = DB_DONE;
	while (*n < cap && (rc = db_step(s)) == DB_ROW) {
		KMS_GUARD_OUT(status, store_version_row_read(s, 0, &out[*n]));
		(*n)++;
	}
	if (*n < cap && rc != DB_DONE)
		status = store_fail(s, rc, what, NULL);
out:
	store_stmt_done(s);
	if (status != KMS_OK)
		*n = 0;
	return status;
}

kms_status store_versions_creating(store *st, int64_t before, bool own, size_t cap,
                                   store_version_row *out, size_t *n)
{
	db_stmt *s;
	*n = 0;
	KMS_ENSURE(cap <= INT64_MAX, KMS_INVALID_ARGUMENT, "store: list limit out of range");
	/* The WHERE starts with key_versions_creating's condition, word for
	 * word: SQLite uses a partial index only for a query whose WHERE
	 * implies it. */
	KMS_GUARD(store_stmt(st, S_VERSIONS_CREATING,
	                     "SELECT key_id, version, created_at, state, encryptions_reserved, kek_id "
	                     "FROM key_versions WHERE state = 'creating' "
	                     "AND (created_at <= ?2 OR (?3 <> '' AND intent_owner = ?3)) "
	                     "ORDER BY key_id, version LIMIT ?1",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "iit", (int64_t)cap, before,
	                                         own ? store_replica_id(st) : ""),
	                           "versions creating", NULL));
	return version_rows_page(s, "versions creating", cap, out, n);
}

kms_status store_versions_resident(store *st, const char *after_key_id, uint32_t after_version,
                                   size_t cap, store_version_row *out, size_t *n)
{
	db_stmt *s;
	*n = 0;
	KMS_ENSURE(cap <= INT64_MAX, KMS_INVALID_ARGUMENT, "store: list limit out of range");
	/* keys_hsm_resident is the outer loop (INDEXED BY, and CROSS JOIN
	 * keeps the order): a page walks resident keys only, never the
	 * wrapped or destroyed keys in between, nor their versions. */
	KMS_GUARD(store_stmt(st, S_VERSIONS_RESIDENT,
	                     "SELECT v.key_id, v.version, v.created_at, v.state, "
	                     "v.encryptions_reserved, v.kek_id "
	                     "FROM keys AS k INDEXED BY keys_hsm_resident "
	                     "CROSS JOIN key_versions AS v ON v.key_id = k.id "
	                     "WHERE k.protection = 'hsm-resident' AND k.lifecycle <> 'destroyed' "
	                     "AND (v.key_id, v.version) > (?1, ?2) AND k.id >= ?1 "
	                     "ORDER BY k.id, v.version LIMIT ?3",
	                     &s));
	db_rc rc = store_bind(s, "tii", after_key_id ? after_key_id : "", (int64_t)after_version,
	                      (int64_t)cap);
	KMS_GUARD(store_bind_check(s, rc, "resident versions", NULL));
	return version_rows_page(s, "resident versions", cap, out, n);
}

kms_status store_keys_resident_count(store *st, uint64_t *n)
{
	db_stmt *s;
	int64_t count;
	*n = 0;
	KMS_GUARD(store_stmt(st, S_KEYS_RESIDENT_COUNT,
	                     "SELECT count(*) FROM keys "
	                     "WHERE protection = 'hsm-resident' AND lifecycle <> 'destroyed'",
	                     &s));
	KMS_GUARD(store_step_count(s, "count hsm-resident keys", NULL, &count));
	*n = count > 0 ? (uint64_t)count : 0;
	return KMS_OK;
}

kms_status store_keys_insert_batch(store *st, const store_key *keys, const char *const *policies,
                                   const store_version *v1, size_t n, size_t *failed)
{
	*failed = 0;
	KMS_ENSURE(keys || n == 0, KMS_INVALID_ARGUMENT, "store: batch insert: no keys");
	for (size_t i = 0; i < n; i++) {
		*failed = i;
		KMS_GUARD(store_key_insert(st, &keys[i], policies ? policies[i] : ""));
		KMS_GUARD(store_version_insert(st, keys[i].id, &v1[i]));
	}
	*failed = n;
	return KMS_OK;
}

kms_status store_generation_get(store *st, uint64_t *out)
{
	db_stmt *s;
	*out = 0;
	KMS_GUARD(store_stmt(st, S_GENERATION_GET,
	                     "SELECT value FROM cache_generation WHERE id = 1", &s));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_ROW)
		*out = (uint64_t)db_column_int64(s, 0);
	else
		status = store_fail(s, rc, "read the cache generation", NULL);
	store_stmt_done(s);
	return status;
}

kms_status store_key_by_request(store *st, const char *ref, char id[KMS_KEYID_TEXT_SIZE],
                                key_lifecycle *lifecycle)
{
	db_stmt *s;
	id[0] = '\0';
	/* The WHERE implies keys_by_request's condition, so SQLite uses it. */
	KMS_GUARD(store_stmt(st, S_KEY_BY_REQUEST,
	                     "SELECT id, lifecycle FROM keys WHERE request_ref = ?1 "
	                     "AND request_ref <> ''",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", ref), "key by request", NULL));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_ROW) {
		char text[16];
		if (!store_column_text(s, 0, id, KMS_KEYID_TEXT_SIZE) ||
		    !store_column_text(s, 1, text, sizeof text) ||
		    !lifecycle_parse(text, lifecycle))
			status = KMS_FAIL(KMS_INTERNAL, "store: the key of a request reference is "
			                  "malformed");
	} else if (rc == DB_DONE) {
		status = KMS_FAIL(KMS_NOT_FOUND, "no key was made by that request");
	} else {
		status = store_fail(s, rc, "key by request", NULL);
	}
	store_stmt_done(s);
	return status;
}
