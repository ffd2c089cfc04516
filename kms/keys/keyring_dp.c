/*
 * keyring_dp.c: per-data-principal sub-keys (docs/data-principals.md).
 *
 * A key created per_data_principal gives each data principal (`dp` in the
 * encryption context, a pseudonym) its own AES-256 sub-key: generated in
 * the HSM on the first seal for that principal, wrapped under the current
 * KEK exactly like a key version, kept in the store's dp_keys table, and
 * used through the HSM layer's unwrapped-key cache under the name "dp" ||
 * row id. One sub-key per (key, version, dp): a seal under version v uses
 * (or makes, on first use) the principal's sub-key of v, and an open uses
 * the blob's version's, so the version's GCM budget (docs/gcm-limits.md)
 * bounds every sub-key as it bounds the version. A principal's rows under
 * one key share purpose, first use, retention, notice and hold.
 *
 * Erasure deletes the wrapped bytes of all the principal's rows and keeps
 * them as tombstones, so a later seal for that principal under any
 * version fails instead of making a new sub-key.
 * kek_rwlock is taken shared around generate-wrap-commit, as for versions,
 * so the KEK a new sub-key is wrapped under is not retired meanwhile.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "common/pseudonym.h"
#include "common/utf8.h"
#include "kms/keys/keyring.h"
#include "kms/keys/keyring_impl.h"

/* ---- names and checks ---- */

void kr_dp_name(int64_t id, hsm_object_id *out)
{
	memset(out, 0, sizeof *out);
	memcpy(out->bytes, KR_DP_NAME_PREFIX, 2);
	uint64_t v = (uint64_t)id;
	for (int i = 0; i < 8; i++)
		out->bytes[2 + i] = (uint8_t)(v >> (56 - 8 * i));
	out->len = KR_DP_NAME_LEN;
}

bool kr_dp_name_parse(const hsm_object_id *name, int64_t *id)
{
	uint64_t v = 0;
	if (name->len != KR_DP_NAME_LEN || memcmp(name->bytes, KR_DP_NAME_PREFIX, 2) != 0)
		return false;
	for (int i = 0; i < 8; i++)
		v = v << 8 | name->bytes[2 + i];
	*id = (int64_t)v;
	return *id >= 1;
}

static kms_status dp_check(const char *key_id, const char *dp)
{
	char key_short[KMS_PSEUDONYM_KEY_SHORT_SIZE];
	uint32_t version;
	if (dp && strnlen(dp, STORE_DP_MAX + 1) <= STORE_DP_MAX &&
	    pseudonym_parse(dp, key_short, &version) == KMS_OK)
		return KMS_OK;
	kms_error_clear();
	return KMS_FAIL(KMS_INVALID_ARGUMENT, "key %s keeps a key per data principal: the "
	                "encryption context's \"dp\" must be the principal's pseudonym (kp_...): "
	                "pseudonymize the identifier first", key_id);
}

static bool purpose_ok(const char *purpose)
{
	size_t n = strnlen(purpose, STORE_PURPOSE_MAX + 1);
	if (n < 1 || n > STORE_PURPOSE_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = purpose[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static kms_status purpose_check(const char *purpose)
{
	KMS_ENSURE(purpose_ok(purpose), KMS_INVALID_ARGUMENT,
	           "purpose: must be 1..%d of [A-Za-z0-9._-], e.g. a ReBIT purpose code such as 101",
	           STORE_PURPOSE_MAX);
	return KMS_OK;
}

/* A basis or a statute: 1..256 bytes of UTF-8 on one line. */
static kms_status legal_text_check(const char *what, const char *text)
{
	size_t n = text ? strnlen(text, STORE_LEGAL_TEXT_MAX + 1) : 0;
	bool ok = n >= 1 && n <= STORE_LEGAL_TEXT_MAX && kms_utf8_valid((const uint8_t *)text, n, NULL);
	for (size_t i = 0; ok && i < n; i++)
		ok = (unsigned char)text[i] >= 0x20 && text[i] != 0x7f;
	KMS_ENSURE(ok, KMS_INVALID_ARGUMENT, "%s: must be 1..%d bytes of UTF-8 on one line", what,
	           STORE_LEGAL_TEXT_MAX);
	return KMS_OK;
}

static void day_text(int64_t t, char out[32])
{
	time_t secs = (time_t)t;
	struct tm tm;
	gmtime_r(&secs, &tm);
	if (!strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, 32, "%lld", (long long)t);
}

static kms_status erased_error(const store_dp_key *row)
{
	char when[32];
	day_text(row->erased_at, when);
	return KMS_FAIL(KMS_FAILED_PRECONDITION, "data principal %s's key under %s was erased on "
	                "%s (basis: %.60s)", row->dp, row->key_id, when, row->basis);
}

/* The visible key of key_ref, which must be per-data-principal. */
static kms_status dp_key_resolve(keyring *kr, const char *key_ref, store_key *key)
{
	uint8_t id[KMS_KEYID_BYTES];
	char id_text[KMS_KEYID_TEXT_SIZE];
	KMS_GUARD(kr_resolve_ref(kr, key_ref, id, id_text));
	KMS_GUARD(kr_key_get_visible(kr, id_text, key));
	KMS_ENSURE(key->per_data_principal, KMS_FAILED_PRECONDITION,
	           "key %s does not keep a key per data principal (create one with "
	           "--per-data-principal)", key->id);
	return KMS_OK;
}

/* ---- binding a use ---- */

static void bind_row(keyring_key_use *use, const store_dp_key *row)
{
	use->dp_key = row->id;
	kr_dp_name(row->id, &use->object);
}

/* A new row of (use's key, use's version, dp): a principal's first row
 * fixes purpose and retention from now; a later version's copies what its
 * first row holds (purpose, first use, retention, notice, hold). */
static kms_status dp_row_new(keyring *kr, const keyring_key_use *use, const char *dp,
                             const char *purpose, int64_t now, store_dp_key *row)
{
	store_dp_key first;
	uint32_t days = 0;
	kms_status st = store_dp_key_first(kr->store, use->key_id_text, dp, &first);
	if (st == KMS_OK && first.state == DP_KEY_ERASED)
		return erased_error(&first);
	if (st != KMS_OK && st != KMS_NOT_FOUND)
		return st;
	memset(row, 0, sizeof *row);
	if (st == KMS_OK) {
		*row = first;
		row->id = 0;
		row->kek_id = 0;
	} else {
		kms_error_clear();
		memcpy(row->key_id, use->key_id_text, sizeof row->key_id);
		snprintf(row->dp, sizeof row->dp, "%s", dp);
		snprintf(row->purpose, sizeof row->purpose, "%s", purpose);
		row->state = DP_KEY_ACTIVE;
		row->created_at = now;
		if (purpose[0])
			KMS_GUARD(store_retention_get(kr->store, row->key_id, purpose, &days));
		row->retention_ends_at = days ? now + (int64_t)days * kr->seconds_per_day : 0;
	}
	row->version = use->version;
	return KMS_OK;
}

/* Generates a sub-key wrapped under the current KEK and inserts its row,
 * in one write transaction with the read of the principal's first row (a
 * concurrent erasure or hold is seen). KMS_ALREADY_EXISTS when another
 * request made the row first; KMS_FAILED_PRECONDITION when the principal
 * was erased. */
static kms_status dp_create(keyring *kr, const keyring_key_use *use, const char *dp,
                            const char *purpose, int64_t now, store_dp_key *row)
{
	uint8_t wrapped[HSM_WRAPPED_MAX];
	size_t wrapped_len = 0;
	uint32_t kek_id = 0;
	kms_status status;

	memset(row, 0, sizeof *row);
	pthread_rwlock_rdlock(&kr->kek_rwlock);
	KMS_GUARD_OUT(status, kr_generate_wrapped(kr, KEY_SPEC_AES_256, &kek_id, wrapped,
	                                          sizeof wrapped, &wrapped_len, NULL, NULL));
	KMS_GUARD_OUT(status, store_begin(kr->store));
	status = dp_row_new(kr, use, dp, purpose, now, row);
	if (status == KMS_OK)
		status = store_dp_key_insert(kr->store, row, kek_id, wrapped, wrapped_len, &row->id);
	if (status == KMS_OK)
		status = store_commit(kr->store);
	else
		store_rollback(kr->store);
	row->kek_id = kek_id;
out:
	pthread_rwlock_unlock(&kr->kek_rwlock);
	memset(wrapped, 0, sizeof wrapped);
	return status;
}

/* No row for (key, version, dp): the principal's erasure if it was
 * erased, else KMS_NOT_FOUND. */
static kms_status dp_missing(keyring *kr, const keyring_key_use *use, const char *dp)
{
	store_dp_key first;
	kms_status st = store_dp_key_first(kr->store, use->key_id_text, dp, &first);
	if (st == KMS_OK && first.state == DP_KEY_ERASED)
		return erased_error(&first);
	if (st != KMS_OK && st != KMS_NOT_FOUND)
		return st;
	kms_error_clear();
	return KMS_FAIL(KMS_NOT_FOUND, "key %s has no sub-key for that data principal under "
	                "version %u", use->key_id_text, (unsigned)use->version);
}

kms_status keyring_dp_bind(keyring *kr, keyring_key_use *use, const char *dp, const char *purpose,
                           bool create, int64_t now)
{
	store_dp_key row;
	if (!use->per_data_principal)
		return KMS_OK;
	KMS_GUARD(dp_check(use->key_id_text, dp));
	KMS_ENSURE(use->version >= 1, KMS_INTERNAL, "key %s: a use without a version",
	           use->key_id_text);
	if (!purpose)
		purpose = "";
	if (purpose[0] && create)
		KMS_GUARD(purpose_check(purpose));
	/* Twice at most: a concurrent first use may insert between our read
	 * and our insert; then its row is the one. */
	for (int round = 0; round < 2; round++) {
		kms_status st = store_dp_key_get(kr->store, use->key_id_text, dp, use->version, &row);
		if (st == KMS_OK) {
			if (row.state == DP_KEY_ERASED)
				return erased_error(&row);
			bind_row(use, &row);
			return KMS_OK;
		}
		if (st != KMS_NOT_FOUND)
			return st;
		kms_error_clear();
		if (!create)
			return dp_missing(kr, use, dp); /* the blob cannot have been made */
		st = dp_create(kr, use, dp, purpose, now, &row);
		if (st == KMS_OK) {
			kr_log("info", "key %s: made the sub-key of a data principal for version %u "
			       "(sub-key %lld)", use->key_id_text, (unsigned)use->version,
			       (long long)row.id);
			bind_row(use, &row);
			return KMS_OK;
		}
		if (st != KMS_ALREADY_EXISTS)
			return st;
		kms_error_clear();
	}
	return KMS_FAIL(KMS_UNAVAILABLE, "key %s: the data principal's sub-key is being made by "
	                "another request: retry", use->key_id_text);
}

/* ---- erasure, holds, retention ---- */

static void dp_evict(keyring *kr, int64_t id)
{
	hsm_object_id name;
	kr_dp_name(id, &name);
	hsm_keycache_evict(kr->hsm, &name);
}

/* Every row of (key_id, dp), each version's, out of the cache. A failed
 * read is logged: every use re-reads the store, which has no material. */
static void dp_evict_principal(keyring *kr, const char *key_id, const char *dp)
{
	int64_t ids[KEYRING_TICK_BATCH];
	uint32_t versions[KEYRING_TICK_BATCH];
	uint32_t after = 0;
	size_t n = KEYRING_TICK_BATCH;
	/* Bounded: each page starts past the last one's highest version. */
	for (uint64_t page = 0; n == KEYRING_TICK_BATCH && page <= UINT32_MAX; page++) {
		if (store_dp_keys_of_dp(kr->store, key_id, dp, after, KEYRING_TICK_BATCH, ids,
		                        versions, &n) != KMS_OK) {
			kr_log("warn", "key %s: evicting an erased principal's sub-keys: %s", key_id,
			       kms_error_message());
			kms_error_clear();
			return;
		}
		for (size_t i = 0; i < n; i++)
			dp_evict(kr, ids[i]);
		if (n)
			after = versions[n - 1];
	}
}

void kr_dp_evict_key(keyring *kr, const char *key_id)
{
	int64_t ids[KEYRING_TICK_BATCH];
	int64_t after = 0;
	size_t n = KEYRING_TICK_BATCH;
	/* Bounded: ids strictly increase from page to page. */
	for (uint64_t page = 0; n == KEYRING_TICK_BATCH && page <= UINT32_MAX; page++) {
		if (store_dp_keys_of_key(kr->store, key_id, after, KEYRING_TICK_BATCH, ids, &n) !=
		    KMS_OK) {
			kr_log("warn", "key %s: evicting its sub-keys: %s", key_id, kms_error_message());
			kms_error_clear();
			return;
		}
		for (size_t i = 0; i < n; i++)
			dp_evict(kr, ids[i]);
		if (n)
			after = ids[n - 1];
	}
}

void kr_dp_scrub(keyring *kr)
{
	if (store_wal_checkpoint(kr->store) == KMS_OK) {
		if (atomic_exchange(&kr->dp_scrub_pending, false))
			kr_log("info", "WAL scrub after an erasure done: kms.db-wal truncated");
		return;
	}
	kr_log("warn", "WAL scrub after an erasure: %s (pending: every retention tick retries "
	       "until kms.db-wal is truncated)", kms_error_message());
	kms_error_clear();
	atomic_store(&kr->dp_scrub_pending, true);
}

static kms_status erase_locked(keyring *kr, const store_key *key, const char *dp,
                               const char *basis, int64_t now, store_dp_key *row)
{
	kms_status st = store_dp_key_first(kr->store, key->id, dp, row);
	if (st == KMS_NOT_FOUND) {
		/* Not used yet: the tombstone alone, so none is ever made. */
		kms_error_clear();
		memset(row, 0, sizeof *row);
		memcpy(row->key_id, key->id, sizeof row->key_id);
		snprintf(row->dp, sizeof row->dp, "%s", dp);
		snprintf(row->basis, sizeof row->basis, "%s", basis);
		row->state = DP_KEY_ERASED;
		row->created_at = now;
		row->erased_at = now;
		return store_dp_key_insert(kr->store, row, 0, NULL, 0, &row->id);
	}
	KMS_GUARD(st);
	if (row->state == DP_KEY_ERASED) {
		char when[32];
		day_text(row->erased_at, when);
		return KMS_FAIL(KMS_FAILED_PRECONDITION, "data principal %s's key under %s was "
		                "already erased on %s", dp, key->id, when);
	}
	KMS_ENSURE(!row->hold[0], KMS_FAILED_PRECONDITION,
	           "data principal %s's key under %s is under a legal hold (%.60s): lift the "
	           "hold before erasing", dp, key->id, row->hold);
	KMS_GUARD(store_dp_key_erase(kr->store, key->id, dp, now, basis));
	row->state = DP_KEY_ERASED;
	row->erased_at = now;
	row->kek_id = 0;
	snprintf(row->basis, sizeof row->basis, "%s", basis);
	return KMS_OK;
}

kms_status keyring_dp_erase(keyring *kr, const char *key_ref, const char *dp, const char *basis,
                            int64_t now, store_dp_key *out)
{
	store_key key;
	store_dp_key row;
	kms_status status;
	if (out)
		memset(out, 0, sizeof *out);
	KMS_GUARD(legal_text_check("basis", basis));
	KMS_GUARD(dp_key_resolve(kr, key_ref, &key));
	KMS_GUARD(dp_check(key.id, dp));
	KMS_GUARD(store_begin(kr->store));
	KMS_GUARD_OUT(status, erase_locked(kr, &key, dp, basis, now, &row));
	KMS_GUARD_OUT(status, store_commit(kr->store));
	dp_evict_principal(kr, key.id, dp);
	kr_dp_scrub(kr);
	kr_log("info", "key %s: erased a data principal's sub-keys (first sub-key %lld)", key.id,
	       (long long)row.id);
	if (out)
		*out = row;
	return KMS_OK;
out:
	store_rollback(kr->store);
	return status;
}

kms_status keyring_dp_hold(keyring *kr, const char *key_ref, const char *dp, const char *hold,
                           store_dp_key *out)
{
	store_key key;
	store_dp_key row;
	kms_status status;
	if (out)
		memset(out, 0, sizeof *out);
	KMS_ENSURE(hold, KMS_INVALID_ARGUMENT, "hold: missing");
	if (hold[0])
		KMS_GUARD(legal_text_check("hold", hold));
	KMS_GUARD(dp_key_resolve(kr, key_ref, &key));
	KMS_GUARD(dp_check(key.id, dp));
	KMS_GUARD(store_begin(kr->store));
	status = store_dp_key_first(kr->store, key.id, dp, &row);
	if (status == KMS_NOT_FOUND) {
		kms_error_clear();
		status = KMS_FAIL(KMS_NOT_FOUND, "data principal %s has no key under %s yet: nothing "
		                  "to hold", dp, key.id);
		goto out;
	}
	KMS_GUARD_OUT(status, status);
	if (row.state == DP_KEY_ERASED) {
		status = erased_error(&row);
		goto out;
	}
	KMS_GUARD_OUT(status, store_dp_key_set_hold(kr->store, key.id, dp, hold));
	KMS_GUARD_OUT(status, store_commit(kr->store));
	if (strcmp(row.hold, hold) != 0)
		row.notice_at = 0;
	snprintf(row.hold, sizeof row.hold, "%s", hold);
	if (out)
		*out = row;
	return KMS_OK;
out:
	store_rollback(kr->store);
	return status;
}

kms_status keyring_retention_set(keyring *kr, const char *key_ref, const char *purpose,
                                 uint32_t days, char key_id[static KMS_KEYID_TEXT_SIZE])
{
	store_key key;
	kms_status status;
	key_id[0] = '\0';
	KMS_GUARD(purpose_check(purpose ? purpose : ""));
	KMS_ENSURE(days <= STORE_RETENTION_DAYS_MAX, KMS_INVALID_ARGUMENT,
	           "retention: %u days, must be 1..%d (0 removes it)", (unsigned)days,
	           STORE_RETENTION_DAYS_MAX);
	KMS_GUARD(dp_key_resolve(kr, key_ref, &key));
	KMS_ENSURE(key.state != KEY_STATE_DESTROYED, KMS_FAILED_PRECONDITION, "key %s is %s",
	           key.id, key_state_name(key.state));
	KMS_GUARD(store_begin(kr->store));
	KMS_GUARD_OUT(status, store_retention_set(kr->store, key.id, purpose, days,
	                                          kr->seconds_per_day));
	KMS_GUARD_OUT(status, store_commit(kr->store));
	memcpy(key_id, key.id, KMS_KEYID_TEXT_SIZE);
	return KMS_OK;
out:
	store_rollback(kr->store);
	return status;
}

kms_status keyring_dp_due(keyring *kr, int64_t after_end, int64_t after_id, size_t cap,
                          store_dp_key *out, size_t *n)
{
	return store_dp_keys_due(kr->store, STORE_DP_ERASURE_DUE, INT64_MAX, INT64_MAX, after_end,
	                         after_id, cap, out, n);
}

static int64_t notice_seconds(const keyring *kr)
{
	return (int64_t)KEYRING_DP_NOTICE_DAYS * kr->seconds_per_day;
}

int64_t keyring_dp_erase_at(const keyring *kr, const store_dp_key *row)
{
	int64_t after_notice = row->notice_at + notice_seconds(kr);
	return row->retention_ends_at > after_notice ? row->retention_ends_at : after_notice;
}

/* ---- the retention tick ---- */

/* How far in the future a notice may be dated before the tick takes the
 * clock to have been stepped back. */
#define DP_NOTICE_SLACK_SECONDS 300

/* A notice dated in the future (the clock was stepped back): cleared, so
 * it is given again and its 48 h count from then. */
static kms_status tick_renotice(keyring *kr, int64_t now)
{
	size_t n = 0;
	KMS_GUARD(store_dp_keys_notice_future(kr->store, now + DP_NOTICE_SLACK_SECONDS, &n));
	if (n)
		kr_log("warn", "retention: %zu sub-keys had a pre-erasure notice dated after now "
		       "(the clock went back): they are noticed again", n);
	return KMS_OK;
}

/* Notes row's notice and audits it, in one write transaction: nothing is
 * audited that was not noted (a hold placed since the page was read makes
 * the note change nothing), nothing noted unaudited. *done false when the
 * row no longer wanted one. */
static kms_status notice_one(keyring *kr, const store_dp_key *row, int64_t now,
                             keyring_dp_event_fn event, void *ctx, bool *done)
{
	*done = false;
	KMS_GUARD(store_begin(kr->store));
	kms_status st = store_dp_key_notice_set(kr->store, row->key_id, row->dp, now, done);
	if (st == KMS_OK && *done)
		st = event(ctx, "pre_erasure", row);
	if (st == KMS_OK && *done)
		st = store_commit(kr->store);
	else
		store_rollback(kr->store);
	if (st != KMS_OK)
		*done = false;
	return st;
}

static kms_status tick_notices(keyring *kr, int64_t now, keyring_dp_event_fn event, void *ctx,
                               size_t *noticed)
{
	store_dp_key rows[KEYRING_TICK_BATCH];
	size_t n = 0;
	kms_status first = KMS_OK;
	KMS_GUARD(store_dp_keys_due(kr->store, STORE_DP_NOTICE_DUE, now + notice_seconds(kr), 0, 0,
	                            0, KEYRING_TICK_BATCH, rows, &n));
	for (size_t i = 0; i < n; i++) {
		bool done = false;
		kms_status st = notice_one(kr, &rows[i], now, event, ctx, &done);
		if (st != KMS_OK) {
			kr_log("error", "retention notice of sub-key %lld of %s: %s",
			       (long long)rows[i].id, rows[i].key_id, kms_error_message());
			if (first == KMS_OK)
				first = st;
			continue;
		}
		if (done)
			(*noticed)++;
	}
	return first;
}

/* Erases row's principal if it is still as read (active, unheld, the
 * same notice and end) and audits it, in one write transaction: an
 * erasure that did not happen is not audited, and none happens that the
 * log does not show. *done false when the row changed since. */
static kms_status erase_due(keyring *kr, const store_dp_key *row, int64_t now,
                            keyring_dp_event_fn event, void *ctx, bool *done)
{
	*done = false;
	KMS_GUARD(store_begin(kr->store));
	kms_status st = store_dp_key_erase_due(kr->store, row, now, "retention", done);
	if (st == KMS_OK && *done)
		st = event(ctx, "retention_erasure", row);
	if (st == KMS_OK && *done)
		st = store_commit(kr->store);
	else
		store_rollback(kr->store);
	if (st != KMS_OK)
		*done = false;
	KMS_GUARD(st);
	if (*done)
		dp_evict_principal(kr, row->key_id, row->dp);
	return KMS_OK;
}

static kms_status tick_erasures(keyring *kr, int64_t now, keyring_dp_event_fn event, void *ctx,
                                size_t *erased)
{
	store_dp_key rows[KEYRING_TICK_BATCH];
	size_t n = 0;
	kms_status first = KMS_OK;
	/* Only due rows: the end passed and the notice is 48 h old. */
	KMS_GUARD(store_dp_keys_due(kr->store, STORE_DP_ERASURE_DUE, now, now - notice_seconds(kr),
	                            0, 0, KEYRING_TICK_BATCH, rows, &n));
	for (size_t i = 0; i < n; i++) {
		bool done = false;
		kms_status st = erase_due(kr, &rows[i], now, event, ctx, &done);
		if (st != KMS_OK) {
			kr_log("error", "retention erasure of sub-key %lld of %s: %s",
			       (long long)rows[i].id, rows[i].key_id, kms_error_message());
			if (first == KMS_OK)
				first = st;
			continue;
		}
		if (!done)
			continue; /* held, re-noticed or erased since the page was read */
		kr_log("info", "key %s: erased a data principal's sub-keys (first sub-key %lld): "
		       "its retention ended", rows[i].key_id, (long long)rows[i].id);
		(*erased)++;
	}
	return first;
}

kms_status keyring_dp_tick(keyring *kr, int64_t now, keyring_dp_event_fn event, void *ctx,
                           size_t *noticed, size_t *erased)
{
	*noticed = 0;
	*erased = 0;
	if (atomic_load(&kr->dp_scrub_pending))
		kr_dp_scrub(kr);
	kms_status a = tick_renotice(kr, now);
	if (a == KMS_OK)
		a = tick_notices(kr, now, event, ctx, noticed);
	kms_error_saved saved;
	if (a != KMS_OK)
		kms_error_save(&saved);
	kms_status b = tick_erasures(kr, now, event, ctx, erased);
	if (*erased)
		kr_dp_scrub(kr);
	if (a != KMS_OK)
		return kms_error_restore(a, &saved);
	return b;
}

/* ---- the re-wrap job's share ---- */

static kms_status dp_rewrap_one(keyring *kr, int64_t id, const store_kek *from,
                                const store_kek *to, size_t *moved)
{
	store_material m;
	hsm_object_id from_object, to_object;
	uint8_t out[HSM_WRAPPED_MAX];
	size_t len = 0;
	kms_status status = store_dp_key_material_get(kr->store, id, &m);
	if (status == KMS_NOT_FOUND || status == KMS_FAILED_PRECONDITION) {
		kms_error_clear();
		return KMS_OK; /* erased since the page was read */
	}
	KMS_GUARD(status);
	if (m.kek_id != from->id)
		goto out;
	KMS_GUARD_OUT(status, kr_kek_object_id(from, &from_object));
	KMS_GUARD_OUT(status, kr_kek_object_id(to, &to_object));
	KMS_GUARD_OUT(status, hsm_rewrap(kr->hsm, &from_object, m.wrapped, m.wrapped_len, &to_object,
	                                 HSM_KEY_TYPE_AES256, out, sizeof out, &len));
	KMS_GUARD_OUT(status, store_begin(kr->store));
	status = store_dp_key_rewrap(kr->store, id, from->id, to->id, out, len);
	if (status == KMS_FAILED_PRECONDITION) {
		kms_error_clear(); /* lost the compare-and-set (an erasure): fine */
		store_rollback(kr->store);
		status = KMS_OK;
		goto out;
	}
	if (status != KMS_OK) {
		store_rollback(kr->store);
		goto out;
	}
	KMS_GUARD_OUT(status, store_commit(kr->store));
	(*moved)++;
out:
	memset(&m, 0, sizeof m);
	memset(out, 0, sizeof out);
	return status;
}

kms_status kr_dp_rewrap_tick(keyring *kr, const store_kek *from, const store_kek *to,
                             keyring_tick_report *report, bool *done)
{
	int64_t ids[KEYRING_REWRAP_BATCH];
	int64_t after = 0;
	size_t n = KEYRING_REWRAP_BATCH;
	kms_status first = KMS_OK;
	kms_error_saved first_error;
	*done = false;
	for (size_t p = 0; p < kr->rewrap_pages && n == KEYRING_REWRAP_BATCH; p++) {
		KMS_GUARD(store_dp_keys_under_kek(kr->store, from->id, after, KEYRING_REWRAP_BATCH, ids,
		                                  &n));
		for (size_t i = 0; i < n; i++) {
			size_t moved = 0;
			kms_status st = dp_rewrap_one(kr, ids[i], from, to, &moved);
			report->rewrapped += moved;
			if (st == KMS_OK)
				continue;
			kr_log("error", "re-wrapping sub-key %lld from KEK %s to %s failed: %s",
			       (long long)ids[i], from->hsm_id, to->hsm_id, kms_error_message());
			report->failed++;
			if (first == KMS_OK) {
				first = st;
				kms_error_save(&first_error);
			}
		}
		if (n)
			after = ids[n - 1];
	}
	*done = n < KEYRING_REWRAP_BATCH;
	if (first != KMS_OK)
		return kms_error_restore(first, &first_error);
	return KMS_OK;
}
