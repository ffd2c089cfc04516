/*
 * store_dp.c: per-data-principal sub-keys and key retention
 * (docs/data-principals.md): a sub-key's row made on first use, read on a
 * cache miss, erased (material deleted, the row kept as a tombstone), held,
 * noticed and paged for the retention tick, and re-wrapped like a version.
 */
#include <stdint.h>
#include <string.h>

#include "common/error.h"
#include "kms/store/store.h"
#include "kms/store/store_internal.h"

#define DP_COLUMNS                                                             \
	"id, key_id, dp, state, purpose, created_at, retention_ends_at, notice_at, hold, " \
	"erased_at, basis, coalesce(kek_id, 0), version"

static kms_status dp_read(db_stmt *s, store_dp_key *out)
{
	char state[16];
	memset(out, 0, sizeof *out);
	out->id = db_column_int64(s, 0);
	int64_t kek = db_column_int64(s, 11);
	int64_t version = db_column_int64(s, 12);
	bool ok = store_column_text(s, 1, out->key_id, sizeof out->key_id) &&
	          store_column_text(s, 2, out->dp, sizeof out->dp) &&
	          store_column_text(s, 3, state, sizeof state) &&
	          store_column_text(s, 4, out->purpose, sizeof out->purpose) &&
	          store_column_text(s, 8, out->hold, sizeof out->hold) &&
	          store_column_text(s, 10, out->basis, sizeof out->basis) && out->id >= 1 &&
	          kek >= 0 && kek <= UINT32_MAX && version >= 0 && version <= UINT32_MAX;
	if (ok && strcmp(state, "active") == 0)
		out->state = DP_KEY_ACTIVE;
	else if (ok && strcmp(state, "erased") == 0)
		out->state = DP_KEY_ERASED;
	else
		return KMS_FAIL(KMS_INTERNAL, "store: a sub-key row of %s does not fit its type",
		                out->key_id[0] ? out->key_id : "(unreadable key id)");
	out->created_at = db_column_int64(s, 5);
	out->retention_ends_at = db_column_int64(s, 6);
	out->notice_at = db_column_int64(s, 7);
	out->erased_at = db_column_int64(s, 9);
	out->kek_id = (uint32_t)kek;
	out->version = (uint32_t)version;
	return KMS_OK;
}

static kms_status dp_read_one(db_stmt *s, const char *key_id, store_dp_key *out)
{
	db_rc rc = db_step(s);
	kms_status status;
	if (rc == DB_ROW)
		status = dp_read(s, out);
	else if (rc == DB_DONE)
		status = KMS_FAIL(KMS_NOT_FOUND, "key %s has no sub-key for that data principal",
		                  key_id);
	else
		status = store_fail(s, rc, "get sub-key", key_id);
	store_stmt_done(s);
	return status;
}

kms_status store_dp_key_get(store *st, const char *key_id, const char *dp, uint32_t version,
                            store_dp_key *out)
{
	db_stmt *s;
	memset(out, 0, sizeof *out);
	KMS_GUARD(store_stmt(st, S_DP_KEY_GET,
	                     "SELECT " DP_COLUMNS " FROM dp_keys "
	                     "WHERE key_id = ?1 AND dp = ?2 AND version = ?3",
	                     &s));
	db_rc rc = store_bind(s, "tti", key_id, dp, (int64_t)version);
	KMS_GUARD(store_bind_check(s, rc, "get sub-key", key_id));
	return dp_read_one(s, key_id, out);
}

kms_status store_dp_key_first(store *st, const char *key_id, const char *dp, store_dp_key *out)
{
	db_stmt *s;
	memset(out, 0, sizeof *out);
	KMS_GUARD(store_stmt(st, S_DP_KEY_FIRST,
	                     "SELECT " DP_COLUMNS " FROM dp_keys WHERE key_id = ?1 AND dp = ?2 "
	                     "ORDER BY version LIMIT 1",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "tt", key_id, dp), "get sub-key", key_id));
	return dp_read_one(s, key_id, out);
}

kms_status store_dp_key_insert(store *st, const store_dp_key *row, uint32_t kek_id,
                               const uint8_t *wrapped, size_t wrapped_len, int64_t *id)
{
	db_stmt *s;
	bool active = row->state == DP_KEY_ACTIVE;
	*id = 0;
	KMS_ENSURE(!active || (wrapped && wrapped_len >= STORE_WRAPPED_MIN &&
	                       wrapped_len <= STORE_WRAPPED_MAX && kek_id >= 1),
	           KMS_INVALID_ARGUMENT, "store: a sub-key of %s without material", row->key_id);
	KMS_GUARD(store_stmt(st, S_DP_KEY_INSERT,
	                     "INSERT INTO dp_keys (key_id, dp, state, kek_id, wrapped, purpose, "
	                     "created_at, retention_ends_at, erased_at, basis, version, notice_at, "
	                     "hold) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) "
	                     "RETURNING id",
	                     &s));
	int rc = active ? store_bind(s, "tttibtiiitiit", row->key_id, row->dp, "active",
	                             (int64_t)kek_id, wrapped, wrapped_len, row->purpose,
	                             row->created_at, row->retention_ends_at, (int64_t)0, "",
	                             (int64_t)row->version, row->notice_at, row->hold)
	                : store_bind(s, "tttnntiiitiit", row->key_id, row->dp, "erased", row->purpose,
	                             row->created_at, (int64_t)0, row->erased_at, row->basis,
	                             (int64_t)row->version, (int64_t)0, "");
	KMS_GUARD(store_bind_check(s, rc, "insert sub-key", row->key_id));
	rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_DUPLICATE)
		status = KMS_FAIL(KMS_ALREADY_EXISTS, "store: key %s already has a sub-key for that "
		                  "data principal and version", row->key_id);
	else if (rc != DB_ROW)
		status = store_fail(s, rc, "insert sub-key", row->key_id);
	else
		*id = db_column_int64(s, 0);
	/* RETURNING: the insert is complete only once the statement is done. */
	if (status == KMS_OK && (rc = db_step(s)) != DB_DONE)
		status = store_fail(s, rc, "insert sub-key", row->key_id);
	store_stmt_done(s);
	if (status != KMS_OK)
		*id = 0;
	return status;
}

kms_status store_dp_key_material_get(store *st, int64_t id, store_material *out)
{
	db_stmt *s;
	char state[16];
	memset(out, 0, sizeof *out);
	KMS_GUARD(store_stmt(st, S_DP_KEY_MATERIAL_GET,
	                     "SELECT d.kek_id, k.hsm_id, d.wrapped, k.state, d.key_id "
	                     "FROM dp_keys AS d LEFT JOIN keks AS k ON k.id = d.kek_id "
	                     "WHERE d.id = ?1",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "i", id), "get sub-key material", NULL));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_DONE) {
		status = KMS_FAIL(KMS_NOT_FOUND, "no sub-key %lld", (long long)id);
	} else if (rc != DB_ROW) {
		status = store_fail(s, rc, "get sub-key material", NULL);
	} else if (db_column_is_null(s, 2)) {
		status = KMS_FAIL(KMS_FAILED_PRECONDITION, "the data principal's key was erased "
		                  "while this request used it (sub-key %lld): retry to see when and why",
		                  (long long)id);
	} else {
		int64_t kek_id = db_column_int64(s, 0);
		const void *blob = db_column_blob(s, 2);
		size_t len = db_column_bytes(s, 2);
		bool ok = kek_id >= 1 && kek_id <= UINT32_MAX && blob &&
		          store_column_text(s, 1, out->kek_hsm_id, sizeof out->kek_hsm_id) &&
		          store_column_text(s, 3, state, sizeof state) && len >= STORE_WRAPPED_MIN &&
		          len <= STORE_WRAPPED_MAX;
		for (kek_state k = KEK_STATE_CREATING; ok && k <= KEK_STATE_RETIRED; k++)
			if (strcmp(state, kek_state_name(k)) == 0)
				out->kek_state = k;
		if (!ok || out->kek_state == 0) {
			status = KMS_FAIL(KMS_INTERNAL, "store: material of sub-key %lld does not fit "
			                  "its type", (long long)id);
		} else {
			out->kek_id = (uint32_t)kek_id;
			out->spec = KEY_SPEC_AES_256;
			memcpy(out->wrapped, blob, len);
			out->wrapped_len = len;
		}
	}
	store_stmt_done(s);
	if (status != KMS_OK)
		memset(out, 0, sizeof *out);
	return status;
}

kms_status store_dp_key_erase(store *st, const char *key_id, const char *dp, int64_t now,
                              const char *basis)
{
	db_stmt *s;
	KMS_GUARD(store_stmt(st, S_DP_KEY_ERASE,
	                     "UPDATE dp_keys SET state = 'erased', wrapped = NULL, kek_id = NULL, "
	                     "erased_at = ?3, basis = ?4 "
	                     "WHERE key_id = ?1 AND dp = ?2 AND state = 'active' AND hold = ''",
	                     &s));
	db_rc rc = store_bind(s, "ttit", key_id, dp, now, basis);
	KMS_GUARD(store_bind_check(s, rc, "erase sub-key", key_id));
	return store_step_change(s, "erase sub-key", key_id, false);
}

/* Runs s, a write; *changed when it changed a row. */
static kms_status step_changed(db_stmt *s, const char *what, const char *id, bool *changed)
{
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	*changed = false;
	if (rc != DB_DONE)
		status = store_fail(s, rc, what, id);
	else
		*changed = db_changes(s) > 0;
	store_stmt_done(s);
	return status;
}

kms_status store_dp_key_erase_due(store *st, const store_dp_key *seen, int64_t now,
                                  const char *basis, bool *erased)
{
	db_stmt *s;
	*erased = false;
	KMS_GUARD(store_stmt(st, S_DP_KEY_ERASE_DUE,
	                     "UPDATE dp_keys SET state = 'erased', wrapped = NULL, kek_id = NULL, "
	                     "erased_at = ?3, basis = ?4 "
	                     "WHERE key_id = ?1 AND dp = ?2 AND state = 'active' AND hold = '' "
	                     "AND notice_at > 0 AND notice_at = ?5 AND retention_ends_at > 0 "
	                     "AND retention_ends_at = ?6",
	                     &s));
	db_rc rc = store_bind(s, "ttitii", seen->key_id, seen->dp, now, basis, seen->notice_at,
	                      seen->retention_ends_at);
	KMS_GUARD(store_bind_check(s, rc, "erase sub-key", seen->key_id));
	return step_changed(s, "erase sub-key", seen->key_id, erased);
}

kms_status store_dp_key_set_hold(store *st, const char *key_id, const char *dp, const char *hold)
{
	db_stmt *s;
	KMS_GUARD(store_stmt(st, S_DP_KEY_SET_HOLD,
	                     "UPDATE dp_keys SET hold = ?3, "
	                     "notice_at = CASE WHEN hold = ?3 THEN notice_at ELSE 0 END "
	                     "WHERE key_id = ?1 AND dp = ?2 AND state = 'active'",
	                     &s));
	db_rc rc = store_bind(s, "ttt", key_id, dp, hold);
	KMS_GUARD(store_bind_check(s, rc, "hold sub-key", key_id));
	return store_step_change(s, "hold sub-key", key_id, false);
}

kms_status store_dp_key_notice_set(store *st, const char *key_id, const char *dp, int64_t now,
                                   bool *set)
{
	db_stmt *s;
	*set = false;
	KMS_GUARD(store_stmt(st, S_DP_KEY_NOTICE_SET,
	                     "UPDATE dp_keys SET notice_at = ?3 WHERE key_id = ?1 AND dp = ?2 "
	                     "AND state = 'active' AND hold = '' AND notice_at = 0",
	                     &s));
	db_rc rc = store_bind(s, "tti", key_id, dp, now);
	KMS_GUARD(store_bind_check(s, rc, "notice sub-key", key_id));
	return step_changed(s, "notice sub-key", key_id, set);
}

kms_status store_dp_keys_notice_future(store *st, int64_t after, size_t *n)
{
	db_stmt *s;
	bool changed;
	*n = 0;
	/* Its WHERE repeats dp_keys_erasure_due's condition: only noticed rows. */
	KMS_GUARD(store_stmt(st, S_DP_KEYS_NOTICE_FUTURE,
	                     "UPDATE dp_keys INDEXED BY dp_keys_erasure_due SET notice_at = 0 "
	                     "WHERE state = 'active' AND retention_ends_at > 0 AND hold = '' "
	                     "AND notice_at > 0 AND notice_at > ?1",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "i", after), "renotice sub-keys", NULL));
	KMS_GUARD(step_changed(s, "renotice sub-keys", NULL, &changed));
	if (changed)
		*n = (size_t)db_changes(s);
	return KMS_OK;
}

kms_status store_dp_keys_of_key(store *st, const char *key_id, int64_t after_id, size_t cap,
                                int64_t *ids, size_t *n)
{
	db_stmt *s;
	*n = 0;
	KMS_ENSURE(cap >= 1 && cap <= STORE_PAGE_MAX, KMS_INVALID_ARGUMENT,
	           "store: page of %zu sub-keys, must be 1..%d", cap, STORE_PAGE_MAX);
	KMS_GUARD(store_stmt(st, S_DP_KEYS_OF_KEY,
	                     "SELECT id FROM dp_keys WHERE key_id = ?1 AND id > ?2 "
	                     "ORDER BY id LIMIT ?3",
	                     &s));
	db_rc rc = store_bind(s, "tii", key_id, after_id, (int64_t)cap);
	KMS_GUARD(store_bind_check(s, rc, "sub-keys of key", key_id));
	rc = DB_DONE;
	while (*n < cap && (rc = db_step(s)) == DB_ROW)
		ids[(*n)++] = db_column_int64(s, 0);
	kms_status status = KMS_OK;
	if (*n < cap && rc != DB_DONE) {
		status = store_fail(s, rc, "sub-keys of key", key_id);
		*n = 0;
	}
	store_stmt_done(s);
	return status;
}

kms_status store_dp_keys_of_dp(store *st, const char *key_id, const char *dp,
                               uint32_t after_version, size_t cap, int64_t *ids,
                               uint32_t *versions, size_t *n)
{
	db_stmt *s;
	*n = 0;
	KMS_ENSURE(cap >= 1 && cap <= STORE_PAGE_MAX, KMS_INVALID_ARGUMENT,
	           "store: page of %zu sub-keys, must be 1..%d", cap, STORE_PAGE_MAX);
	KMS_GUARD(store_stmt(st, S_DP_KEYS_OF_DP,
	                     "SELECT id, version FROM dp_keys WHERE key_id = ?1 AND dp = ?2 "
	                     "AND version > ?3 ORDER BY version LIMIT ?4",
	                     &s));
	db_rc rc = store_bind(s, "ttii", key_id, dp, (int64_t)after_version, (int64_t)cap);
	KMS_GUARD(store_bind_check(s, rc, "sub-keys of a principal", key_id));
	kms_status status = KMS_OK;
	rc = DB_DONE;
	while (status == KMS_OK && *n < cap && (rc = db_step(s)) == DB_ROW) {
		int64_t v = db_column_int64(s, 1);
		if (v < 0 || v > UINT32_MAX) {
			status = KMS_FAIL(KMS_INTERNAL, "store: a sub-key row of %s does not fit its "
			                  "type", key_id);
			break;
		}
		ids[*n] = db_column_int64(s, 0);
		versions[(*n)++] = (uint32_t)v;
	}
	if (status == KMS_OK && *n < cap && rc != DB_DONE)
		status = store_fail(s, rc, "sub-keys of a principal", key_id);
	if (status != KMS_OK)
		*n = 0;
	store_stmt_done(s);
	return status;
}

kms_status store_dp_keys_destroy_for_key(store *st, const char *key_id, int64_t now)
{
	db_stmt *s;
	KMS_GUARD(store_stmt(st, S_DP_KEYS_DESTROY_FOR_KEY,
	                     "UPDATE dp_keys SET state = 'erased', wrapped = NULL, kek_id = NULL, "
	                     "hold = '', erased_at = ?2, basis = 'key destroyed' "
	                     "WHERE key_id = ?1 AND state = 'active'",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "ti", key_id, now), "erase sub-keys", key_id));
	return store_step_change(s, "erase sub-keys", key_id, true);
}

kms_status store_dp_keys_due(store *st, store_dp_due q, int64_t before, int64_t noticed_by,
                             int64_t after_end, int64_t after_id, size_t cap, store_dp_key *out,
                             size_t *n)
{
	db_stmt *s;
	*n = 0;
	KMS_ENSURE(cap >= 1 && cap <= STORE_PAGE_MAX, KMS_INVALID_ARGUMENT,
	           "store: page of %zu sub-keys, must be 1..%d", cap, STORE_PAGE_MAX);
	/* Each WHERE repeats its partial index's condition word for word; a
	 * principal's rows share what is asked, so its first row stands for
	 * them (one entry per principal). */
	if (q == STORE_DP_NOTICE_DUE)
		KMS_GUARD(store_stmt(st, S_DP_KEYS_NOTICE_DUE,
		                     "SELECT " DP_COLUMNS " FROM dp_keys INDEXED BY dp_keys_notice_due "
		                     "WHERE state = 'active' AND retention_ends_at > 0 AND hold = '' "
		                     "AND notice_at = 0 AND retention_ends_at <= ?1 "
		                     "AND (retention_ends_at, id) > (?2, ?3) "
		                     "AND id = (SELECT f.id FROM dp_keys AS f WHERE "
		                     "f.key_id = dp_keys.key_id AND f.dp = dp_keys.dp "
		                     "ORDER BY f.version LIMIT 1) "
		                     "ORDER BY retention_ends_at, id LIMIT ?4",
		                     &s));
	else
		KMS_GUARD(store_stmt(st, S_DP_KEYS_ERASURE_DUE,
		                     "SELECT " DP_COLUMNS " FROM dp_keys INDEXED BY dp_keys_erasure_due "
		                     "WHERE state = 'active' AND retention_ends_at > 0 AND hold = '' "
		                     "AND notice_at > 0 AND retention_ends_at <= ?1 "
		                     "AND notice_at <= ?5 "
		                     "AND (retention_ends_at, id) > (?2, ?3) "
		                     "AND id = (SELECT f.id FROM dp_keys AS f WHERE "
		                     "f.key_id = dp_keys.key_id AND f.dp = dp_keys.dp "
		                     "ORDER BY f.version LIMIT 1) "
		                     "ORDER BY retention_ends_at, id LIMIT ?4",
		                     &s));
	db_rc rc = store_bind(s, "iiii", before, after_end, after_id, (int64_t)cap);
	if (rc == DB_OK && q == STORE_DP_ERASURE_DUE)
		rc = db_bind_int64(s, 5, noticed_by);
	KMS_GUARD(store_bind_check(s, rc, "sub-keys due", NULL));
	kms_status status = KMS_OK;
	rc = DB_DONE;
	while (*n < cap && (rc = db_step(s)) == DB_ROW) {
		status = dp_read(s, &out[*n]);
		if (status != KMS_OK)
			break;
		(*n)++;
	}
	if (status == KMS_OK && *n < cap && rc != DB_DONE)
		status = store_fail(s, rc, "sub-keys due", NULL);
	store_stmt_done(s);
	if (status != KMS_OK)
		*n = 0;
	return status;
}

kms_status store_dp_key_rewrap(store *st, int64_t id, uint32_t old_kek_id, uint32_t new_kek_id,
                               const uint8_t *wrapped, size_t wrapped_len)
{
	db_stmt *s;
	KMS_ENSURE(wrapped && wrapped_len >= STORE_WRAPPED_MIN && wrapped_len <= STORE_WRAPPED_MAX &&
	                   old_kek_id != new_kek_id,
	           KMS_INVALID_ARGUMENT, "store: re-wrap of sub-key %lld: bad material or KEK",
	           (long long)id);
	KMS_GUARD(store_stmt(st, S_DP_KEY_REWRAP,
	                     "UPDATE dp_keys SET kek_id = ?3, wrapped = ?4 "
	                     "WHERE id = ?1 AND kek_id = ?2 AND wrapped IS NOT NULL "
	                     "AND ?3 = (SELECT id FROM keks WHERE state = 'current')",
	                     &s));
	db_rc rc = store_bind(s, "iiib", id, (int64_t)old_kek_id, (int64_t)new_kek_id, wrapped,
	                      wrapped_len);
	KMS_GUARD(store_bind_check(s, rc, "re-wrap sub-key", NULL));
	kms_status status = store_step_change(s, "re-wrap sub-key", NULL, false);
	if (status == KMS_NOT_FOUND)
		status = KMS_FAIL(KMS_FAILED_PRECONDITION, "store: re-wrap of sub-key %lld lost",
		                  (long long)id);
	return status;
}

kms_status store_dp_keys_under_kek(store *st, uint32_t kek_id, int64_t after_id, size_t cap,
                                   int64_t *ids, size_t *n)
{
	db_stmt *s;
	*n = 0;
	KMS_ENSURE(cap >= 1 && cap <= STORE_PAGE_MAX, KMS_INVALID_ARGUMENT,
	           "store: page of %zu sub-keys, must be 1..%d", cap, STORE_PAGE_MAX);
	KMS_GUARD(store_stmt(st, S_DP_KEYS_UNDER_KEK,
	                     "SELECT id FROM dp_keys WHERE kek_id = ?1 AND wrapped IS NOT NULL "
	                     "AND id > ?2 ORDER BY id LIMIT ?3",
	                     &s));
	db_rc rc = store_bind(s, "iii", (int64_t)kek_id, after_id, (int64_t)cap);
	KMS_GUARD(store_bind_check(s, rc, "sub-keys under KEK", NULL));
	rc = DB_DONE;
	while (*n < cap && (rc = db_step(s)) == DB_ROW)
		ids[(*n)++] = db_column_int64(s, 0);
	kms_status status = KMS_OK;
	if (*n < cap && rc != DB_DONE) {
		status = store_fail(s, rc, "sub-keys under KEK", NULL);
		*n = 0;
	}
	store_stmt_done(s);
	return status;
}

kms_status store_dp_keys_under_kek_count(store *st, uint32_t kek_id, uint64_t *n)
{
	db_stmt *s;
	int64_t count = 0;
	*n = 0;
	KMS_GUARD(store_stmt(st, S_DP_KEYS_UNDER_KEK_COUNT,
	                     "SELECT count(*) FROM dp_keys WHERE kek_id = ?1 AND wrapped IS NOT NULL",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "i", (int64_t)kek_id), "count sub-keys", NULL));
	KMS_GUARD(store_step_count(s, "count sub-keys", NULL, &count));
	*n = (uint64_t)count;
	return KMS_OK;
}

kms_status store_retention_set(store *st, const char *key_id, const char *purpose, uint32_t days,
                               uint32_t seconds_per_day)
{
	db_stmt *s;
	KMS_ENSURE(days <= STORE_RETENTION_DAYS_MAX && seconds_per_day >= 1, KMS_INVALID_ARGUMENT,
	           "store: retention of %u days", (unsigned)days);
	if (days) {
		KMS_GUARD(store_stmt(st, S_RETENTION_PUT,
		                     "INSERT INTO key_retention (key_id, purpose, days) "
		                     "VALUES (?1, ?2, ?3) "
		                     "ON CONFLICT (key_id, purpose) DO UPDATE SET days = excluded.days",
		                     &s));
		db_rc rc = store_bind(s, "tti", key_id, purpose, (int64_t)days);
		KMS_GUARD(store_bind_check(s, rc, "set retention", key_id));
		KMS_GUARD(store_step_change(s, "set retention", key_id, false));
	} else {
		KMS_GUARD(store_stmt(st, S_RETENTION_DELETE,
		                     "DELETE FROM key_retention WHERE key_id = ?1 AND purpose = ?2",
		                     &s));
		KMS_GUARD(store_bind_check(s, store_bind(s, "tt", key_id, purpose),
		                           "remove retention", key_id));
		KMS_GUARD(store_step_change(s, "remove retention", key_id, true));
	}
	/* The key's sub-keys, through the dp_keys_by_key index. */
	KMS_GUARD(store_stmt(st, S_RETENTION_APPLY,
	                     "UPDATE dp_keys SET notice_at = 0, retention_ends_at = "
	                     "CASE WHEN ?3 = 0 THEN 0 ELSE created_at + ?3 END "
	                     "WHERE key_id = ?1 AND purpose = ?2 AND state = 'active'",
	                     &s));
	db_rc rc = store_bind(s, "tti", key_id, purpose, (int64_t)days * (int64_t)seconds_per_day);
	KMS_GUARD(store_bind_check(s, rc, "apply retention", key_id));
	return store_step_change(s, "apply retention", key_id, true);
}

kms_status store_retention_get(store *st, const char *key_id, const char *purpose, uint32_t *days)
{
	db_stmt *s;
	*days = 0;
	KMS_GUARD(store_stmt(st, S_RETENTION_GET,
	                     "SELECT days FROM key_retention WHERE key_id = ?1 AND purpose = ?2", &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "tt", key_id, purpose), "get retention",
	                           key_id));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_ROW) {
		int64_t d = db_column_int64(s, 0);
		if (d >= 1 && d <= STORE_RETENTION_DAYS_MAX)
			*days = (uint32_t)d;
		else
			status = KMS_FAIL(KMS_INTERNAL, "store: retention row of %s does not fit", key_id);
	} else if (rc != DB_DONE) {
		status = store_fail(s, rc, "get retention", key_id);
	}
	store_stmt_done(s);
	return status;
}
