/*
 * store_consents.c: the statements on Consent Managers and consent
 * artefacts (store_consents.h), in the same manner as store_grants.c.
 */
#include "kms/store/store_consents.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kms/store/store_internal.h"

/* ---- Consent Managers ---- */

#define CM_COLUMNS "id, kid, jwk, dp_key, principal, state, created_at, created_by, removed_at"

static kms_status cm_read(db_stmt *s, store_consent_manager *out)
{
	char state[16];
	memset(out, 0, sizeof *out);
	bool ok = store_column_text(s, 0, out->id, sizeof out->id);
	ok = store_column_text(s, 1, out->kid, sizeof out->kid) && ok;
	ok = store_column_text(s, 2, out->jwk, sizeof out->jwk) && ok;
	ok = store_column_text(s, 3, out->dp_key, sizeof out->dp_key) && ok;
	ok = store_column_text(s, 4, out->principal, sizeof out->principal) && ok;
	ok = store_column_text(s, 5, state, sizeof state) && ok;
	ok = store_column_text(s, 7, out->created_by, sizeof out->created_by) && ok;
	ok = ok && (!strcmp(state, "active") || !strcmp(state, "removed"));
	if (!ok) {
		memset(out, 0, sizeof *out);
		return KMS_FAIL(KMS_INTERNAL, "store: a Consent Manager row does not fit its type");
	}
	out->removed = !strcmp(state, "removed");
	out->created_at = db_column_int64(s, 6);
	out->removed_at = db_column_int64(s, 8);
	return KMS_OK;
}

kms_status store_cm_add(store *st, const store_consent_manager *cm)
{
	db_stmt *s;
	KMS_GUARD(store_stmt(st, S_CM_INSERT,
	                     "INSERT INTO consent_managers (" CM_COLUMNS ") "
	                     "VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6, ?7, 0)",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "tttttit", cm->id, cm->kid, cm->jwk,
	                                         cm->dp_key, cm->principal, cm->created_at,
	                                         cm->created_by),
	                           "add Consent Manager", cm->id));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_DUPLICATE)
		status = KMS_FAIL(KMS_ALREADY_EXISTS, "a Consent Manager with id %s or kid %s is "
		                  "already registered (ids and kids are never reused)", cm->id,
		                  cm->kid);
	else if (rc != DB_DONE)
		status = store_fail(s, rc, "add Consent Manager", cm->id);
	store_stmt_done(s);
	return status;
}

static kms_status cm_get_one(db_stmt *s, const char *what, const char *name,
                             store_consent_manager *out)
{
	db_rc rc = db_step(s);
	kms_status status;
	if (rc == DB_ROW)
		status = cm_read(s, out);
	else if (rc == DB_DONE)
		status = KMS_FAIL(KMS_NOT_FOUND, "%s %s not found", what, name);
	else
		status = store_fail(s, rc, what, name);
	store_stmt_done(s);
	return status;
}

kms_status store_cm_get(store *st, const char *id, store_consent_manager *out)
{
	db_stmt *s;
	memset(out, 0, sizeof *out);
	KMS_GUARD(store_stmt(st, S_CM_GET,
	                     "SELECT " CM_COLUMNS " FROM consent_managers WHERE id = ?1", &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", id), "get Consent Manager", id));
	return cm_get_one(s, "Consent Manager", id, out);
}

kms_status store_cm_by_kid(store *st, const char *kid, store_consent_manager *out)
{
	db_stmt *s;
	memset(out, 0, sizeof *out);
	KMS_GUARD(store_stmt(st, S_CM_BY_KID,
	                     "SELECT " CM_COLUMNS " FROM consent_managers WHERE kid = ?1", &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", kid), "find Consent Manager", kid));
	return cm_get_one(s, "Consent Manager key with kid", kid, out);
}

kms_status store_cm_list(store *st, store_consent_manager **out, size_t *n)
{
	db_stmt *s;
	*out = NULL;
	*n = 0;
	KMS_GUARD(store_stmt(st, S_CM_LIST,
	                     "SELECT " CM_COLUMNS " FROM consent_managers WHERE id > '' "
	                     "ORDER BY id LIMIT ?1",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "i", (int64_t)STORE_CMS_MAX),
	                           "list Consent Managers", NULL));
	size_t cap = 0;
	kms_status status = KMS_OK;
	db_rc rc;
	while ((rc = db_step(s)) == DB_ROW) {
		if (!store_grow((void **)out, &cap, *n, sizeof **out)) {
			status = KMS_FAIL(KMS_INTERNAL, "store: out of memory listing Consent Managers");
			break;
		}
		status = cm_read(s, &(*out)[*n]);
		if (status != KMS_OK)
			break;
		(*n)++;
	}
	if (status == KMS_OK && rc != DB_DONE)
		status = store_fail(s, rc, "list Consent Managers", NULL);
	store_stmt_done(s);
	if (status != KMS_OK) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return status;
}

kms_status store_cm_remove(store *st, const char *id, int64_t now)
{
	db_stmt *s;
	store_consent_manager cm;
	KMS_GUARD(store_cm_get(st, id, &cm));
	KMS_ENSURE(!cm.removed, KMS_FAILED_PRECONDITION, "Consent Manager %s was already removed",
	           id);
	KMS_GUARD(store_stmt(st, S_CM_REMOVE,
	                     "UPDATE consent_managers SET state = 'removed', removed_at = ?2 "
	                     "WHERE id = ?1 AND state = 'active'",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "ti", id, now), "remove Consent Manager", id));
	return store_step_change(s, "remove Consent Manager", id, true);
}

/* ---- consents ---- */

#define CONSENT_COLUMNS                                                        \
	"c.id, c.manager, c.dp, c.purpose, c.onetime, c.consent_start, c.consent_expiry, "    \
	"c.data_life_end, c.frequency_unit, c.frequency_value, c.status, c.status_at, "       \
	"c.status_by, c.uses, c.window_start, c.window_uses, c.digest, c.imported_at, "       \
	"c.imported_by, m.state"

static kms_status consent_read(db_stmt *s, store_consent *out)
{
	char state[16];
	memset(out, 0, sizeof *out);
	bool ok = store_column_text(s, 0, out->id, sizeof out->id);
	ok = store_column_text(s, 1, out->manager, sizeof out->manager) && ok;
	ok = store_column_text(s, 2, out->dp, sizeof out->dp) && ok;
	ok = store_column_text(s, 3, out->purpose, sizeof out->purpose) && ok;
	ok = store_column_text(s, 8, out->frequency_unit, sizeof out->frequency_unit) && ok;
	ok = store_column_text(s, 10, out->status, sizeof out->status) && ok;
	ok = store_column_text(s, 12, out->status_by, sizeof out->status_by) && ok;
	ok = store_column_text(s, 18, out->imported_by, sizeof out->imported_by) && ok;
	ok = store_column_text(s, 19, state, sizeof state) && ok;
	ok = ok && db_column_bytes(s, 16) == sizeof out->digest;
	if (!ok) {
		memset(out, 0, sizeof *out);
		return KMS_FAIL(KMS_INTERNAL, "store: a consent row does not fit its type");
	}
	memcpy(out->digest, db_column_blob(s, 16), sizeof out->digest);
	out->manager_removed = strcmp(state, "active") != 0;
	out->onetime = db_column_int64(s, 4) != 0;
	out->start = db_column_int64(s, 5);
	out->expiry = db_column_int64(s, 6);
	out->data_life_end = db_column_int64(s, 7);
	out->frequency_value = db_column_int64(s, 9);
	out->status_at = db_column_int64(s, 11);
	out->uses = db_column_int64(s, 13);
	out->window_start = db_column_int64(s, 14);
	out->window_uses = db_column_int64(s, 15);
	out->imported_at = db_column_int64(s, 17);
	return KMS_OK;
}

kms_status store_consent_insert(store *st, const store_consent *c, const uint8_t *artefact,
                                size_t artefact_len)
{
	db_stmt *s;
	KMS_ENSURE(artefact_len >= 2 && artefact_len <= STORE_CONSENT_ARTEFACT_MAX,
	           KMS_INVALID_ARGUMENT, "store: consent %s: artefact of %zu bytes", c->id,
	           artefact_len);
	KMS_GUARD(store_stmt(st, S_CONSENT_INSERT,
	                     "INSERT INTO consents (id, manager, artefact, digest, dp, purpose, "
	                     "onetime, consent_start, consent_expiry, data_life_end, "
	                     "frequency_unit, frequency_value, status, status_at, status_by, "
	                     "imported_at, imported_by, detail_digest) VALUES (?1, ?2, ?3, ?4, ?5, "
	                     "?6, ?7, ?8, ?9, ?10, ?11, ?12, 'ACTIVE', ?13, ?14, ?13, ?14, ?15)",
	                     &s));
	db_rc rc = store_bind(s, "ttbbttiiiitiitb", c->id, c->manager, artefact, artefact_len,
	                      c->digest, sizeof c->digest, c->dp, c->purpose, (int64_t)c->onetime,
	                      c->start, c->expiry, c->data_life_end, c->frequency_unit,
	                      c->frequency_value, c->imported_at, c->imported_by, c->detail_digest,
	                      sizeof c->detail_digest);
	KMS_GUARD(store_bind_check(s, rc, "import consent", c->id));
	rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_DUPLICATE)
		status = KMS_FAIL(KMS_ALREADY_EXISTS, "consent %s, or its signed ConsentDetail, is "
		                  "stored already", c->id);
	else if (rc != DB_DONE)
		status = store_fail(s, rc, "import consent", c->id);
	store_stmt_done(s);
	return status;
}

kms_status store_consent_get(store *st, const char *id, store_consent *out)
{
	db_stmt *s;
	memset(out, 0, sizeof *out);
	KMS_GUARD(store_stmt(st, S_CONSENT_GET,
	                     "SELECT " CONSENT_COLUMNS " FROM consents c "
	                     "JOIN consent_managers m ON m.id = c.manager WHERE c.id = ?1",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", id), "get consent", id));
	db_rc rc = db_step(s);
	kms_status status;
	if (rc == DB_ROW)
		status = consent_read(s, out);
	else if (rc == DB_DONE)
		status = KMS_FAIL(KMS_NOT_FOUND, "consent %s not found", id);
	else
		status = store_fail(s, rc, "get consent", id);
	store_stmt_done(s);
	return status;
}

kms_status store_consent_artefact(store *st, const char *id, uint8_t **out, size_t *len)
{
	db_stmt *s;
	*out = NULL;
	*len = 0;
	KMS_GUARD(store_stmt(st, S_CONSENT_ARTEFACT, "SELECT artefact FROM consents WHERE id = ?1",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", id), "read consent", id));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_ROW) {
		size_t n = db_column_bytes(s, 0);
		const void *b = db_column_blob(s, 0);
		*out = n > 0 && b ? malloc((size_t)n) : NULL;
		if (!*out)
			status = KMS_FAIL(KMS_INTERNAL, "store: consent %s: out of memory", id);
		else {
			memcpy(*out, b, (size_t)n);
			*len = (size_t)n;
		}
	} else if (rc == DB_DONE) {
		status = KMS_FAIL(KMS_NOT_FOUND, "consent %s not found", id);
	} else {
		status = store_fail(s, rc, "read consent", id);
	}
	store_stmt_done(s);
	return status;
}

kms_status store_consent_set_status(store *st, const char *id, const char *from, const char *to,
                                    const char *by, int64_t now)
{
	db_stmt *s;
	KMS_GUARD(store_stmt(st, S_CONSENT_SET_STATUS,
	                     "UPDATE consents SET status = ?3, status_at = ?4, status_by = ?5 "
	                     "WHERE id = ?1 AND status = ?2",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "tttit", id, from, to, now, by),
	                           "set consent status", id));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc != DB_DONE)
		status = store_fail(s, rc, "set consent status", id);
	else if (db_changes(s) != 1)
		status = KMS_FAIL(KMS_FAILED_PRECONDITION, "consent %s is no longer %s (changed "
		                  "meanwhile): read it again", id, from);
	store_stmt_done(s);
	return status;
}

kms_status store_consent_take_use(store *st, const char *id, int64_t window_start,
                                  int64_t window_max, bool *taken)
{
	db_stmt *s;
	*taken = false;
	KMS_GUARD(store_stmt(st, S_CONSENT_TAKE_USE,
	                     "UPDATE consents SET uses = uses + 1, "
	                     "window_uses = CASE WHEN window_start = ?2 THEN window_uses + 1 "
	                     "ELSE 1 END, window_start = ?2 "
	                     "WHERE id = ?1 AND status = 'ACTIVE' AND (onetime = 0 OR uses = 0) "
	                     "AND ?2 >= window_start "
	                     "AND (?3 < 0 OR (CASE WHEN window_start = ?2 THEN window_uses "
	                     "ELSE 0 END) < ?3)",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "tii", id, window_start, window_max),
	                           "count consent use", id));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc != DB_DONE)
		status = store_fail(s, rc, "count consent use", id);
	else
		*taken = db_changes(s) == 1;
	store_stmt_done(s);
	return status;
}

kms_status store_consent_list(store *st, const store_consent_filter *f, const char *after,
                              uint32_t limit, store_consent **out, size_t *n, bool *more)
{
	db_stmt *s;
	*out = NULL;
	*n = 0;
	*more = false;
	KMS_ENSURE(limit >= 1 && limit <= STORE_CONSENTS_PAGE_MAX, KMS_INVALID_ARGUMENT,
	           "store: a consent page holds 1..%d", STORE_CONSENTS_PAGE_MAX);
	KMS_GUARD(store_stmt(st, S_CONSENT_LIST,
	                     "SELECT " CONSENT_COLUMNS " FROM consents c "
	                     "JOIN consent_managers m ON m.id = c.manager "
	                     "WHERE c.id > ?1 AND (?2 = '' OR c.manager = ?2) "
	                     "AND (?3 = '' OR c.dp = ?3) AND (?4 = '' OR c.purpose = ?4) "
	                     "AND (?5 = '' OR c.status = ?5) ORDER BY c.id LIMIT ?6",
	                     &s));
#define OR_EMPTY(x) ((x) ? (x) : "")
	KMS_GUARD(store_bind_check(s, store_bind(s, "ttttti", OR_EMPTY(after), OR_EMPTY(f->manager),
	                                         OR_EMPTY(f->dp), OR_EMPTY(f->purpose),
	                                         OR_EMPTY(f->status), (int64_t)limit + 1),
	                           "list consents", NULL));
#undef OR_EMPTY
	size_t cap = 0;
	kms_status status = KMS_OK;
	db_rc rc;
	while ((rc = db_step(s)) == DB_ROW) {
		if (*n == limit) {
			*more = true;
			continue;
		}
		if (!store_grow((void **)out, &cap, *n, sizeof **out)) {
			status = KMS_FAIL(KMS_INTERNAL, "store: out of memory listing consents");
			break;
		}
		status = consent_read(s, &(*out)[*n]);
		if (status != KMS_OK)
			break;
		(*n)++;
	}
	if (status == KMS_OK && rc != DB_DONE)
		status = store_fail(s, rc, "list consents", NULL);
	store_stmt_done(s);
	if (status != KMS_OK) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return status;
}
