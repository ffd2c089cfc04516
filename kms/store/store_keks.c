/*
 * store_keks.c: the KEKs' rows (docs/key-hierarchy.md, "KEKs: creation and
 * rotation"). The objects are in the HSM, named by hsm_id; here are their
 * numbers and states. Rows are never deleted (a trigger refuses it), so a
 * KEK's number and HSM id are never reused.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "kms/store/store.h"
#include "kms/store/store_internal.h"

#define KEK_COLUMNS "id, hsm_id, state, created_at, retired_at"

static bool kek_state_parse(const char *text, kek_state *out)
{
	for (kek_state k = KEK_STATE_CREATING; k <= KEK_STATE_RETIRED; k++)
		if (strcmp(text, kek_state_name(k)) == 0) {
			*out = k;
			return true;
		}
	return false;
}

static kms_status kek_read(db_stmt *s, store_kek *out)
{
	char state[16];
	memset(out, 0, sizeof *out);
	int64_t id = db_column_int64(s, 0);
	bool ok = id >= 1 && id <= UINT32_MAX &&
	          store_column_text(s, 1, out->hsm_id, sizeof out->hsm_id) &&
	          store_column_text(s, 2, state, sizeof state) && kek_state_parse(state, &out->state);
	if (!ok)
		return KMS_FAIL(KMS_INTERNAL, "store: KEK row %lld does not fit its type",
		                (long long)id);
	out->id = (uint32_t)id;
	out->created_at = db_column_int64(s, 3);
	out->retired_at = db_column_int64(s, 4);
	return KMS_OK;
}

/* Steps s for at most one row into out; KMS_NOT_FOUND (saying what) if none. */
static kms_status kek_one(db_stmt *s, const char *what, store_kek *out)
{
	db_rc rc = db_step(s);
	kms_status status;
	if (rc == DB_ROW)
		status = kek_read(s, out);
	else if (rc == DB_DONE)
		status = KMS_FAIL(KMS_NOT_FOUND, "%s", what);
	else
		status = store_fail(s, rc, "get KEK", NULL);
	store_stmt_done(s);
	return status;
}

kms_status store_kek_create(store *st, int64_t now, store_kek *out)
{
	db_stmt *s;
	memset(out, 0, sizeof *out);
	/* The next number and its name in one statement, so two creators
	 * cannot pick the same one (max(id) alone in a subquery is one seek;
	 * wrapped in coalesce() it would read the whole table). The name is
	 * kms-kek- and n in 8 digits, made so in both SQLite and PostgreSQL. */
	KMS_GUARD(store_stmt(st, S_KEK_INSERT,
	                     "INSERT INTO keks (id, hsm_id, state, created_at) "
	                     "SELECT n, 'kms-kek-' || substr(CAST(100000000 + n AS TEXT), 2), "
	                     "'creating', ?1 "
	                     "FROM (SELECT coalesce((SELECT max(id) FROM keks), 0) + 1 AS n) AS next "
	                     "WHERE n <= 99999999 "
	                     "RETURNING " KEK_COLUMNS,
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "i", now), "create KEK", NULL));
	db_rc rc = db_step(s);
	kms_status status;
	if (rc == DB_ROW)
		status = kek_read(s, out);
	else if (rc == DB_DONE)
		status = KMS_FAIL(KMS_FAILED_PRECONDITION, "store: no KEK numbers left");
	else
		status = store_fail(s, rc, "create KEK", NULL);
	/* RETURNING: the insert is complete only once the statement is done. */
	if (status == KMS_OK && (rc = db_step(s)) != DB_DONE)
		status = store_fail(s, rc, "create KEK", NULL);
	store_stmt_done(s);
	if (status != KMS_OK)
		memset(out, 0, sizeof *out);
	return status;
}

kms_status store_kek_get(store *st, uint32_t id, store_kek *out)
{
	db_stmt *s;
	memset(out, 0, sizeof *out);
	KMS_GUARD(store_stmt(st, S_KEK_GET, "SELECT " KEK_COLUMNS " FROM keks WHERE id = ?1", &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "i", (int64_t)id), "get KEK", NULL));
	char what[48];
	snprintf(what, sizeof what, "KEK %u not found", (unsigned)id);
	return kek_one(s, what, out);
}

kms_status store_kek_get_current(store *st, store_kek *out)
{
	db_stmt *s;
	memset(out, 0, sizeof *out);
	/* The WHERE is keks_one_current's condition. */
	KMS_GUARD(store_stmt(st, S_KEK_GET_CURRENT,
	                     "SELECT " KEK_COLUMNS " FROM keks WHERE state = 'current'", &s));
	return kek_one(s, "no current KEK", out);
}

kms_status store_kek_list(store *st, uint32_t after_id, size_t cap, store_kek *out, size_t *n)
{
	db_stmt *s;
	*n = 0;
	KMS_ENSURE(cap <= INT64_MAX, KMS_INVALID_ARGUMENT, "store: list limit out of range");
	KMS_GUARD(store_stmt(st, S_KEK_LIST,
	                     "SELECT " KEK_COLUMNS " FROM keks WHERE id > ?1 ORDER BY id LIMIT ?2",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "ii", (int64_t)after_id, (int64_t)cap),
	                           "list KEKs", NULL));
	kms_status status = KMS_OK;
	db_rc rc = DB_DONE;
	while (*n < cap && (rc = db_step(s)) == DB_ROW) {
		status = kek_read(s, &out[*n]);
		if (status != KMS_OK)
			break;
		(*n)++;
	}
	if (status == KMS_OK && *n < cap && rc != DB_DONE)
		status = store_fail(s, rc, "list KEKs", NULL);
	store_stmt_done(s);
	if (status != KMS_OK)
		*n = 0;
	return status;
}

/* Moves KEK id from state from (any but retired when from is 0) to to. */
static kms_status kek_move(store *st, uint32_t id, int from, kek_state to, int64_t retired_at)
{
	db_stmt *s;
	KMS_GUARD(store_stmt(st, S_KEK_SET_STATE,
	                     "UPDATE keks SET state = ?2, retired_at = ?3 "
	                     "WHERE id = ?1 AND (?4 = '' OR state = ?4)",
	                     &s));
	db_rc rc = store_bind(s, "itit", (int64_t)id, kek_state_name(to), retired_at,
	                      from ? kek_state_name((kek_state)from) : "");
	KMS_GUARD(store_bind_check(s, rc, "set KEK state", NULL));
	rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_TRIGGER || rc == DB_DUPLICATE)
		status = KMS_FAIL(KMS_FAILED_PRECONDITION, "KEK %u cannot become %s: %s",
		                  (unsigned)id, kek_state_name(to),
		                  rc == DB_DUPLICATE ? "another KEK is current" : db_errmsg(s));
	else if (rc != DB_DONE)
		status = store_fail(s, rc, "set KEK state", NULL);
	else if (db_changes(s) == 0 && from)
		status = KMS_FAIL(KMS_FAILED_PRECONDITION, "KEK %u is not %s", (unsigned)id,
		                  kek_state_name((kek_state)from));
	else if (db_changes(s) == 0)
		status = KMS_FAIL(KMS_NOT_FOUND, "KEK %u not found", (unsigned)id);
	store_stmt_done(s);
	return status;
}

kms_status store_kek_set_state(store *st, uint32_t id, kek_state state, int64_t now)
{
	KMS_ENSURE(state == KEK_STATE_DRAINING || state == KEK_STATE_RETIRED, KMS_INVALID_ARGUMENT,
	           "store: KEK %u: only draining or retired can be set directly (current: "
	           "store_kek_make_current)", (unsigned)id);
	store_kek kek;
	KMS_GUARD(store_kek_get(st, id, &kek));
	KMS_ENSURE(state != KEK_STATE_DRAINING || kek.state == KEK_STATE_CURRENT ||
	                   kek.state == KEK_STATE_DRAINING,
	           KMS_FAILED_PRECONDITION, "KEK %u is %s: only the current KEK starts draining",
	           (unsigned)id, kek_state_name(kek.state));
	return kek_move(st, id, 0, state, state == KEK_STATE_RETIRED ? now : 0);
}

kms_status store_kek_lock(store *st, uint32_t id)
{
	db_stmt *s;
	int64_t found = 0;
	/* PostgreSQL: held to the transaction's end, against the FOR SHARE of
	 * every insert of wrapped material (the kek_live_insert triggers).
	 * SQLite: its transaction already excludes every other writer. */
	KMS_GUARD(store_stmt(st, S_KEK_LOCK,
	                     store_is_pg(st) ? "SELECT count(*) FROM (SELECT id FROM keks WHERE "
	                                       "id = ?1 FOR UPDATE) AS held"
	                                     : "SELECT count(*) FROM keks WHERE id = ?1",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "i", (int64_t)id), "lock a KEK", NULL));
	KMS_GUARD(store_step_count(s, "lock a KEK", NULL, &found));
	KMS_ENSURE(found == 1, KMS_NOT_FOUND, "KEK %u not found", (unsigned)id);
	return KMS_OK;
}

kms_status store_kek_make_current(store *st, uint32_t id)
{
	kms_status status;
	store_kek current, target;
	KMS_GUARD(store_begin(st));
	KMS_GUARD_OUT(status, store_kek_get(st, id, &target));
	if (target.state != KEK_STATE_CREATING) {
		status = KMS_FAIL(KMS_FAILED_PRECONDITION, "KEK %u is %s: only a KEK being created "
		                  "becomes current", (unsigned)id, kek_state_name(target.state));
		goto out;
	}
	status = store_kek_get_current(st, &current);
	if (status == KMS_NOT_FOUND) {
		kms_error_clear();
		current.id = 0;
		status = KMS_OK;
	}
	KMS_GUARD_OUT(status, status);
	if (current.id)
		KMS_GUARD_OUT(status, kek_move(st, current.id, KEK_STATE_CURRENT, KEK_STATE_DRAINING, 0));
	KMS_GUARD_OUT(status, kek_move(st, id, KEK_STATE_CREATING, KEK_STATE_CURRENT, 0));
	KMS_GUARD_OUT(status, store_commit(st));
	return KMS_OK;
out:
	store_rollback(st);
	return status;
}
