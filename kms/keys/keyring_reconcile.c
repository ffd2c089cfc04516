/*
 * keyring_reconcile.c: start-up reconciliation of kms.db with the token, so
 * that whatever a crash interrupted ends the way it would have ended, or as
 * if it never started (keyring.h, "Crash safety"). Runs in keyring_open,
 * before any other thread can use the keyring; each action is one line on
 * stderr.
 *
 * With replicas sharing the store (docs/scale-out.md), other kmsd work on
 * the same rows and token meanwhile: only intents older than
 * KR_INTENT_STALE_S are rolled back (each by a delete that loses to the
 * creator's completion if that commits first), an object whose version is
 * still an intent is left alone, and an active version's object the token
 * listing missed is asked for again before it is called missing. Replicas
 * start one at a time (the store's start-up lock), so two reconciliations
 * never run at once.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "kms/keys/keyring.h"
#include "kms/keys/keyring_impl.h"

#define RECONCILE_BATCH 64

typedef uint8_t object_name[KMS_KEYID_HSM_ID_LEN];

typedef struct token_objects {
	object_name *ids;  /* AES keys and Ed25519 private keys with a key-version CKA_ID */
	size_t n;
	size_t cap;
} token_objects;

static kms_status collect(void *ctx, const hsm_object_id *id, hsm_object_kind kind)
{
	token_objects *t = ctx;
	uint8_t key_id[KMS_KEYID_BYTES];
	uint32_t version;

	/* An Ed25519 version is a pair under one id: its private half stands
	 * for it (destroying by id removes both halves). */
	if ((kind != HSM_OBJECT_AES_KEY && kind != HSM_OBJECT_ED25519_PRIVATE) ||
	    id->len != KMS_KEYID_HSM_ID_LEN)
		return KMS_OK;
	if (keyid_hsm_object_id_parse(id->bytes, id->len, key_id, &version) != KMS_OK) {
		kms_error_clear();
		return KMS_OK; /* not a key version's name: not ours */
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		object_name *bigger = realloc(t->ids, cap * sizeof *bigger);
		KMS_ENSURE(bigger, KMS_INTERNAL, "keyring: reconcile: out of memory");
		t->ids = bigger;
		t->cap = cap;
	}
	memcpy(t->ids[t->n++], id->bytes, KMS_KEYID_HSM_ID_LEN);
	return KMS_OK;
}

static int object_cmp(const void *a, const void *b)
{
	return memcmp(a, b, KMS_KEYID_HSM_ID_LEN);
}

/* qsort and bsearch must not see a NULL base, even for 0 elements. */
static void sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
	if (n > 1)
		qsort(base, n, size, cmp);
}

static const void *find(const void *key, const void *base, size_t n, size_t size,
                        int (*cmp)(const void *, const void *))
{
	return n ? bsearch(key, base, n, size, cmp) : NULL;
}

static int row_cmp(const void *a, const void *b)
{
	const store_version_row *x = a, *y = b;
	int c = strcmp(x->key_id, y->key_id);
	if (c)
		return c;
	return x->v.version < y->v.version ? -1 : x->v.version > y->v.version;
}

/* 1. Keys that never got past their intent (made at or before `before`):
 * never acknowledged, so they go, row first (kr_key_rollback). */
static kms_status roll_back_created_keys(keyring *kr, int64_t before, bool own)
{
	char ids[RECONCILE_BATCH][KMS_KEYID_TEXT_SIZE];
	size_t n;
	do {
		KMS_GUARD(store_key_ids(kr->store, own ? STORE_KEYS_CREATING : STORE_KEYS_CREATING_STALE,
		                        before, RECONCILE_BATCH, ids, &n));
		for (size_t i = 0; i < n; i++) {
			uint8_t id[KMS_KEYID_BYTES];
			uint32_t max_version = 0;
			KMS_GUARD(keyid_parse(ids[i], KMS_KEYID_TEXT_LEN, id));
			KMS_GUARD(store_version_max(kr->store, ids[i], &max_version));
			kms_status status = kr_key_rollback(kr, id);
			if (status == KMS_FAILED_PRECONDITION) {
				/* Another replica finished or removed it first. */
				kms_error_clear();
				continue;
			}
			if (status != KMS_OK)
				return KMS_FAIL(KMS_HSM_UNAVAILABLE,
				                "keyring: reconcile: could not roll back half-created "
				                "key %s (the line above says why)", ids[i]);
			kr_log("info", "reconcile: removed half-created key %s:v%u", ids[i],
			       (unsigned)(max_version ? max_version : 1));
		}
	} while (n == RECONCILE_BATCH);
	return KMS_OK;
}

/* 2. Versions that never got past their intent (a rotation). Rolled-back
 * rows leave the index the query reads, so each batch starts afresh. */
static kms_status roll_back_created_versions(keyring *kr, int64_t before, bool own)
{
	store_version_row rows[RECONCILE_BATCH];
	size_t n;
	do {
		KMS_GUARD(store_versions_creating(kr->store, before, own, RECONCILE_BATCH, rows, &n));
		for (size_t i = 0; i < n; i++) {
			uint8_t id[KMS_KEYID_BYTES];
			KMS_GUARD(keyid_parse(rows[i].key_id, KMS_KEYID_TEXT_LEN, id));
			if (kr_version_rollback(kr, id, rows[i].v.version) != KMS_OK)
				return KMS_FAIL(KMS_HSM_UNAVAILABLE,
				                "keyring: reconcile: could not roll back half-created "
				                "version %s:v%u (the line above says why)", rows[i].key_id,
				                (unsigned)rows[i].v.version);
			kr_log("info", "reconcile: removed half-created version %s:v%u", rows[i].key_id,
			       (unsigned)rows[i].v.version);
		}
	} while (n == RECONCILE_BATCH);
	return KMS_OK;
}

/* Every version of the hsm-resident keys that are not destroyed (what the
 * token should hold), in pages through an index: wrapped keys, however
 * many, cost nothing here. */
static kms_status resident_versions(keyring *kr, store_version_row **out, size_t *n_out)
{
	store_version_row *rows = NULL;
	size_t n = 0, got = 0;
	kms_status status = KMS_OK;
	*out = NULL;
	*n_out = 0;
	do {
		store_version_row *bigger = realloc(rows, (n + RECONCILE_BATCH) * sizeof *rows);
		if (!bigger) {
			free(rows);
			return KMS_FAIL(KMS_INTERNAL, "keyring: reconcile: out of memory");
		}
		rows = bigger;
		const char *after_key = n ? rows[n - 1].key_id : "";
		uint32_t after_version = n ? rows[n - 1].v.version : 0;
		status = store_versions_resident(kr->store, after_key, after_version, RECONCILE_BATCH,
		                                 rows + n, &got);
		if (status != KMS_OK) {
			free(rows);
			return status;
		}
		n += got;
	} while (got == RECONCILE_BATCH);
	*out = rows;
	*n_out = n;
	return KMS_OK;
}

/* 3. Destructions that had begun: finish them. */
static kms_status finish_destructions(keyring *kr)
{
	char ids[RECONCILE_BATCH][KMS_KEYID_TEXT_SIZE];
	size_t n;
	do {
		KMS_GUARD(store_key_ids(kr->store, STORE_KEYS_DESTROYING, 0, RECONCILE_BATCH, ids, &n));
		for (size_t i = 0; i < n; i++) {
			uint8_t id[KMS_KEYID_BYTES];
			KMS_GUARD(keyid_parse(ids[i], KMS_KEYID_TEXT_LEN, id));
			/* No other thread runs yet; the stripe is for form. */
			pthread_mutex_t *stripe = kr_stripe(kr, id);
			pthread_mutex_lock(stripe);
			kms_status status = kr_key_destroy_locked(kr, id, 0);
			pthread_mutex_unlock(stripe);
			KMS_GUARD(status);
			kr_log("info", "reconcile: finished destroying key %s", ids[i]);
		}
	} while (n == RECONCILE_BATCH);
	return KMS_OK;
}

/* 4. The token against the rows: orphans go, missing objects are marked. */
static kms_status match_token(keyring *kr, bool store_created)
{
	kms_status status;
	token_objects token = { 0 };
	store_version_row *rows = NULL;
	size_t n_rows = 0, removed = 0, active = 0;
	object_name *missing = NULL;
	size_t n_missing = 0;

	KMS_GUARD_OUT(status, hsm_objects_list(kr->hsm, collect, &token));
	KMS_GUARD_OUT(status, resident_versions(kr, &rows, &n_rows));
	sort(rows, n_rows, sizeof *rows, row_cmp);
	sort(token.ids, token.n, sizeof *token.ids, object_cmp);

	/* A new kms.db beside a token full of key versions is a wrong or lost
	 * data directory, not a crash: destroying them would destroy data. */
	if (store_created && token.n > 0) {
		status = KMS_FAIL(KMS_FAILED_PRECONDITION,
		                  "keyring: kms.db is new but the token holds %zu key versions; "
		                  "refusing to destroy them (wrong data_dir or token?)", token.n);
		goto out;
	}

	for (size_t i = 0; i < token.n; i++) {
		uint8_t id[KMS_KEYID_BYTES];
		store_version_row probe;
		KMS_GUARD_OUT(status, keyid_hsm_object_id_parse(token.ids[i], KMS_KEYID_HSM_ID_LEN, id,
		                                                &probe.v.version));
		keyid_format(id, probe.key_id);
		const store_version_row *row = find(&probe, rows, n_rows, sizeof *rows, row_cmp);
		if (row && row->v.state == VERSION_STATE_ACTIVE)
			continue;
		/* An intent: the object of a version being made (by another
		 * replica, or one whose intent is not stale yet). Its rollback or
		 * completion decides. */
		if (row && row->v.state == VERSION_STATE_CREATING)
			continue;
		KMS_GUARD_OUT(status, kr_object_destroy(kr, id, probe.v.version));
		removed++;
		kr_log("info", "reconcile: removed orphan HSM object %s:v%u (%s)", probe.key_id,
		       (unsigned)probe.v.version,
		       row ? "its version is destroyed" : "no such version in kms.db");
	}

	for (size_t i = 0; i < n_rows; i++) {
		if (rows[i].v.state != VERSION_STATE_ACTIVE)
			continue;
		active++;
		uint8_t id[KMS_KEYID_BYTES];
		hsm_object_id object;
		KMS_GUARD_OUT(status, keyid_parse(rows[i].key_id, KMS_KEYID_TEXT_LEN, id));
		KMS_GUARD_OUT(status, kr_object_id(id, rows[i].v.version, &object));
		if (find(object.bytes, token.ids, token.n, sizeof *token.ids, object_cmp))
			continue;
		/* The token was listed before the rows were read: a version
		 * another replica made in between is active with an object the
		 * list did not see. Asked again, by its id. */
		bool exists = false;
		KMS_GUARD_OUT(status, hsm_object_exists(kr->hsm, &object, &exists));
		if (exists)
			continue;
		object_name *bigger = realloc(missing, (n_missing + 1) * sizeof *missing);
		if (!bigger) {
			status = KMS_FAIL(KMS_INTERNAL, "keyring: reconcile: out of memory");
			goto out;
		}
		missing = bigger;
		memcpy(missing[n_missing++], object.bytes, KMS_KEYID_HSM_ID_LEN);
		kr_log("error", "reconcile: MISSING HSM object %s:v%u of an active version; kept in kms.db, "
		       "every use of it fails with HSM_UNAVAILABLE until the token has it again",
		       rows[i].key_id, (unsigned)rows[i].v.version);
	}
	sort(missing, n_missing, sizeof *missing, object_cmp);
	kr->missing = missing;
	kr->n_missing = n_missing;
	missing = NULL;
	if (removed || n_missing)
		kr_log("info", "reconcile: %zu active versions, %zu orphan objects removed, %zu missing",
		       active, removed, n_missing);
	status = KMS_OK;
out:
	free(token.ids);
	free(rows);
	free(missing);
	return status;
}

kms_status kr_reconcile(keyring *kr, bool store_created)
{
	/* Alone on the store, every intent is a crash's. Shared with other
	 * replicas, only stale ones are: a live replica completes its own in
	 * milliseconds. */
	int64_t before = kr->shared ? kms_now() - KR_INTENT_STALE_S : INT64_MAX;
	KMS_GUARD(kr_reconcile_intents(kr, before, true));
	KMS_GUARD(finish_destructions(kr));
	return match_token(kr, store_created);
}

kms_status kr_reconcile_intents(keyring *kr, int64_t before, bool own)
{
	KMS_GUARD(roll_back_created_keys(kr, before, own));
	return roll_back_created_versions(kr, before, own);
}
