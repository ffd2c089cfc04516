/*
 * keyring_versions.c: the steps that touch both the HSM and the store, each
 * intent first (keyring.h): creating a version, rolling back what was never
 * acknowledged, destroying a key; and keyring_tick, which runs the
 * time-driven ones.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kms/keys/keyring.h"
#include "kms/keys/keyring_impl.h"

kms_status kr_object_create(keyring *kr, const uint8_t id[KMS_KEYID_BYTES], uint32_t version,
                            key_spec spec, uint8_t public_key[static HSM_EC_P256_PUBLIC_LEN],
                            size_t *public_len)
{
	hsm_object_id object;
	char label[KMS_KEYID_VERSION_LABEL_SIZE];
	*public_len = 0;
	KMS_GUARD(kr_object_id(id, version, &object));
	KMS_GUARD(keyid_version_label(id, version, label));
	switch (spec) {
	case KEY_SPEC_AES_256: return hsm_aes_create(kr->hsm, &object, label);
	case KEY_SPEC_ED25519:
		KMS_GUARD(hsm_ed25519_create(kr->hsm, &object, label));
		KMS_GUARD(hsm_ed25519_public(kr->hsm, &object, public_key));
		*public_len = HSM_ED25519_PUBLIC_LEN;
		return KMS_OK;
	case KEY_SPEC_HMAC_SHA256:
	case KEY_SPEC_ECC_P256: break;
	}
	return KMS_FAIL(KMS_INVALID_ARGUMENT, "key spec %s is not offered hsm-resident",
	                key_spec_name(spec));
}

kms_status kr_object_destroy(keyring *kr, const uint8_t id[KMS_KEYID_BYTES], uint32_t version)
{
	hsm_object_id object;
	KMS_GUARD(kr_object_id(id, version, &object));
	return hsm_object_destroy(kr->hsm, &object);
}

kms_status kr_version_rollback(keyring *kr, const uint8_t id[KMS_KEYID_BYTES], uint32_t version)
{
	char id_text[KMS_KEYID_TEXT_SIZE];
	kms_error_saved saved;
	kms_status status;

	keyid_format(id, id_text);
	kms_error_save(&saved);
	store_companion_arm(kr->store, NULL); /* the change failed: no entry rides its undo */
	/* The row first, by a delete of CREATING rows only: that one statement
	 * decides between this rollback and a completion (by another replica
	 * sharing the database), whichever commits first. Only the winner
	 * touches the object. A crash between the two leaves an object
	 * without a row, which start-up reconciliation removes (match_token). */
	bool deleted = false;
	status = store_version_delete(kr->store, id_text, version, &deleted);
	if (status == KMS_OK && deleted)
		status = kr_object_destroy(kr, id, version);
	if (status != KMS_OK)
		kr_log("error", "rolling back %s:v%u failed, start-up reconciliation will retry: %s (%s)",
		       id_text, (unsigned)version, kms_error_message(), kms_error_where());
	(void)kms_error_restore(status, &saved);
	return status;
}

kms_status kr_key_rollback(keyring *kr, const uint8_t id[KMS_KEYID_BYTES])
{
	char id_text[KMS_KEYID_TEXT_SIZE];
	kms_error_saved saved;
	kms_status status;
	store_key key;
	store_version *versions = NULL;
	size_t n_versions = 0;

	store_companion_arm(kr->store, NULL); /* the change failed: no entry rides its undo */
	keyid_format(id, id_text);
	kms_error_save(&saved);
	status = store_key_get(kr->store, id_text, &key);
	if (status == KMS_NOT_FOUND) {
		/* Another replica rolled it back first. */
		kms_error_clear();
		status = KMS_FAIL(KMS_FAILED_PRECONDITION, "keyring: key %s was rolled back "
		                  "meanwhile", id_text);
		goto out;
	}
	if (status != KMS_OK)
		goto out;
	/* Never a key callers have seen: only intents are rolled back. (Its
	 * creator, another replica, may have completed it meanwhile.) */
	if (key.lifecycle != KEY_LIFECYCLE_CREATING) {
		status = KMS_FAIL(KMS_FAILED_PRECONDITION, "keyring: refusing to roll back %s: it is %s",
		                  id_text, key_lifecycle_name(key.lifecycle));
		goto out;
	}
	KMS_GUARD_OUT(status, store_versions_list(kr->store, id_text, &versions, &n_versions));
	/* The row first, as kr_version_rollback: the delete of a CREATING row
	 * decides, against a completion elsewhere; only then the objects (a
	 * creating key gets no new version meanwhile). */
	bool deleted = false;
	KMS_GUARD_OUT(status, store_key_delete(kr->store, id_text, &deleted));
	kr_alias_cache_clear(kr);
	if (!deleted) {
		status = KMS_FAIL(KMS_FAILED_PRECONDITION, "keyring: key %s was completed or rolled "
		                  "back meanwhile; its objects are left alone", id_text);
		goto out;
	}
	for (size_t i = 0; i < n_versions; i++)
		KMS_GUARD_OUT(status, kr_object_destroy(kr, id, versions[i].version));
out:
	/* FAILED_PRECONDITION: not ours to roll back any more (the caller
	 * decides whether that is news). */
	if (status != KMS_OK && status != KMS_FAILED_PRECONDITION)
		kr_log("error", "rolling back key %s failed, start-up reconciliation will retry: %s (%s)",
		       id_text, kms_error_message(), kms_error_where());
	free(versions);
	(void)kms_error_restore(status, &saved);
	return status;
}

/* The primary and the next rotation after a new version, in key. */
static void key_new_primary(keyring *kr, store_key *key, uint32_t version, int64_t now)
{
	key->primary_version = version;
	key->next_rotation_at = key->rotation_period_days
	                                ? now + (int64_t)key->rotation_period_days * kr->seconds_per_day
	                                : 0;
}

static kms_status rotatable(const store_key *key, const char *id_text)
{
	KMS_ENSURE(key->lifecycle == KEY_LIFECYCLE_READY && key->state == KEY_STATE_ENABLED,
	           KMS_FAILED_PRECONDITION, "key %s is %s: only ENABLED keys rotate", id_text,
	           key_state_name(key->state));
	return KMS_OK;
}

/* A wrapped key's next version: wrapped in the HSM first (nothing of it
 * stays there), then the version row and the new primary in one commit.
 * The stripe keeps other writers of the key out meanwhile. */
static kms_status version_create_wrapped(keyring *kr, const char *id_text, store_key *key,
                                         int64_t now, uint32_t *new_version)
{
	uint8_t wrapped[HSM_WRAPPED_MAX];
	uint8_t public_key[HSM_EC_P256_PUBLIC_LEN];
	size_t wrapped_len = 0, public_len = 0;
	uint32_t kek_id = 0, max_version = 0;
	kms_status status;

	pthread_rwlock_rdlock(&kr->kek_rwlock);
	KMS_GUARD_OUT(status, kr_generate_wrapped(kr, key->spec, &kek_id, wrapped, sizeof wrapped,
	                                          &wrapped_len, public_key, &public_len));
	KMS_GUARD_OUT(status, store_begin(kr->store));
	KMS_GUARD_OUT(status, kr_key_get_visible(kr, id_text, key));
	KMS_GUARD_OUT(status, rotatable(key, id_text));
	KMS_GUARD_OUT(status, store_version_max(kr->store, id_text, &max_version));
	if (max_version == UINT32_MAX) {
		status = KMS_FAIL(KMS_FAILED_PRECONDITION, "key %s has no version numbers left",
		                  id_text);
		goto out;
	}
	store_version v = { .version = max_version + 1, .created_at = now,
	                    .state = VERSION_STATE_ACTIVE };
	KMS_GUARD_OUT(status, kr_version_insert_wrapped(kr, id_text, &v, kek_id, wrapped,
	                                                wrapped_len, public_key, public_len));
	key_new_primary(kr, key, v.version, now);
	KMS_GUARD_OUT(status, store_key_update(kr->store, key));
	store_companion_key(kr->store, id_text, v.version);
	KMS_GUARD_OUT(status, store_commit(kr->store));
	*new_version = v.version;
out:
	store_rollback(kr->store);
	pthread_rwlock_unlock(&kr->kek_rwlock);
	memset(wrapped, 0, sizeof wrapped);
	return status;
}

kms_status kr_version_create_locked(keyring *kr, const uint8_t id[KMS_KEYID_BYTES], int64_t now,
                                    uint32_t *new_version)
{
	char id_text[KMS_KEYID_TEXT_SIZE];
	kms_status status;
	store_key key;
	uint32_t max_version;

	keyid_format(id, id_text);
	if (new_version)
		*new_version = 0;

	/* A cheap look first: a wrapped key takes the other path, and a key
	 * that cannot rotate costs no HSM call. */
	KMS_GUARD(kr_key_get_visible(kr, id_text, &key));
	KMS_GUARD(rotatable(&key, id_text));
	if (key.protection == KEY_PROTECTION_WRAPPED) {
		uint32_t version = 0;
		KMS_GUARD(version_create_wrapped(kr, id_text, &key, now, &version));
		kr_cache_invalidate(kr, id);
		if (new_version)
			*new_version = version;
		return KMS_OK;
	}

	/* 1. The intent: a 'creating' row under the next number. */
	KMS_GUARD(store_begin(kr->store));
	KMS_GUARD_OUT(status, kr_key_get_visible(kr, id_text, &key));
	KMS_GUARD_OUT(status, rotatable(&key, id_text));
	KMS_GUARD_OUT(status, store_version_max(kr->store, id_text, &max_version));
	if (max_version == UINT32_MAX) {
		status = KMS_FAIL(KMS_FAILED_PRECONDITION, "key %s has no version numbers left", id_text);
		goto out;
	}
	uint32_t version = max_version + 1;
	store_version intent = {
		.version = version,
		.created_at = now,
		.state = VERSION_STATE_CREATING,
		.encryptions_reserved = 0,
	};
	KMS_GUARD_OUT(status, store_version_insert(kr->store, id_text, &intent));
	store_tx_intent(kr->store);
	KMS_GUARD_OUT(status, store_commit(kr->store));
	kr_crash_point_reached(kr, KR_CRASH_ROTATE_AFTER_INTENT);

	/* 2. The HSM object. */
	uint8_t public_key[HSM_EC_P256_PUBLIC_LEN];
	size_t public_len = 0;
	status = kr_object_create(kr, id, version, key.spec, public_key, &public_len);
	if (status != KMS_OK)
		goto undo;
	kr_crash_point_reached(kr, KR_CRASH_ROTATE_AFTER_HSM);

	/* 3. Active and primary, in one commit (with an Ed25519 version's
	 * public key). The stripe kept other writers of this key row out since
	 * step 1, so key is current. */
	key_new_primary(kr, &key, version, now);
	status = store_begin(kr->store);
	if (status == KMS_OK)
		status = store_version_set_state(kr->store, id_text, version, VERSION_STATE_ACTIVE);
	if (status == KMS_OK && public_len)
		status = store_version_public_key_set(kr->store, id_text, version, public_key,
		                                      public_len);
	if (status == KMS_OK)
		status = store_key_update(kr->store, &key);
	store_companion_key(kr->store, id_text, version);
	if (status == KMS_OK)
		status = store_commit(kr->store);
	if (status != KMS_OK)
		goto undo;
	kr_cache_invalidate(kr, id);
	if (new_version)
		*new_version = version;
	return KMS_OK;
undo:
	store_rollback(kr->store);
	(void)kr_version_rollback(kr, id, version);
	return status;
out:
	store_rollback(kr->store);
	return status;
}

kms_status kr_key_destroy_locked(keyring *kr, const uint8_t id[KMS_KEYID_BYTES], int64_t now)
{
	char id_text[KMS_KEYID_TEXT_SIZE];
	kms_status status;
	store_key key;
	store_version *versions = NULL;
	size_t n_versions = 0;

	keyid_format(id, id_text);

	/* 1. The intent: lifecycle 'destroying' (callers still see
	 * PENDING_DELETION, which allows no use). */
	KMS_GUARD(store_begin(kr->store));
	KMS_GUARD_OUT(status, kr_key_get_visible(kr, id_text, &key));
	if (key.lifecycle == KEY_LIFECYCLE_DESTROYED) {
		status = store_commit(kr->store);
		goto out;
	}
	if (key.lifecycle == KEY_LIFECYCLE_READY) {
		if (key.state != KEY_STATE_PENDING_DELETION || key.deletion_date > now) {
			status = KMS_FAIL(KMS_FAILED_PRECONDITION,
			                  "key %s is %s, not due for destruction", id_text,
			                  key_state_name(key.state));
			goto out;
		}
		key.lifecycle = KEY_LIFECYCLE_DESTROYING;
		KMS_GUARD_OUT(status, store_key_update(kr->store, &key));
	}
	KMS_GUARD_OUT(status, store_commit(kr->store));
	kr_cache_invalidate(kr, id);

	/* 2. Every version's HSM object (destroy is idempotent), or, for a
	 * wrapped key, every unwrapped copy in the cache; its wrapped bytes go
	 * with the tombstone's commit. */
	KMS_GUARD_OUT(status, store_versions_list(kr->store, id_text, &versions, &n_versions));
	if (key.protection == KEY_PROTECTION_WRAPPED)
		kr_evict_versions(kr, id, n_versions ? versions[n_versions - 1].version : 0);
	else
		for (size_t i = 0; i < n_versions; i++)
			KMS_GUARD_OUT(status, kr_object_destroy(kr, id, versions[i].version));
	kr_crash_point_reached(kr, KR_CRASH_DESTROY_AFTER_HSM);

	/* 3. The tombstone: metadata kept, versions destroyed, aliases gone. */
	KMS_GUARD_OUT(status, store_begin(kr->store));
	for (size_t i = 0; i < n_versions; i++) {
		if (versions[i].state == VERSION_STATE_CREATING)
			KMS_GUARD_OUT(status,
			              store_version_delete(kr->store, id_text, versions[i].version, NULL));
		else if (versions[i].state == VERSION_STATE_ACTIVE)
			KMS_GUARD_OUT(status, store_version_set_state(kr->store, id_text,
			                                              versions[i].version,
			                                              VERSION_STATE_DESTROYED));
	}
	key.state = KEY_STATE_DESTROYED;
	key.lifecycle = KEY_LIFECYCLE_DESTROYED;
	key.next_rotation_at = 0;
	KMS_GUARD_OUT(status, store_key_update(kr->store, &key));
	KMS_GUARD_OUT(status, store_aliases_delete_for_key(kr->store, id_text));
	/* Its data principals' sub-keys go with it: their material leaves
	 * the store here, their unwrapped copies the HSM cache and their
	 * wrapped bytes the WAL after the commit. */
	if (key.per_data_principal)
		KMS_GUARD_OUT(status, store_dp_keys_destroy_for_key(kr->store, id_text, now));
	KMS_GUARD_OUT(status, store_commit(kr->store));
	kr_cache_invalidate(kr, id);
	kr_alias_cache_clear(kr);
	if (key.per_data_principal) {
		kr_dp_evict_key(kr, id_text);
		kr_dp_scrub(kr);
	}
out:
	store_rollback(kr->store);
	free(versions);
	return status;
}

/* ---- keyring_tick ---- */

typedef struct tick_state {
	kms_status first_failure;
	kms_error_saved first_error;
	keyring_tick_report report;
} tick_state;

static void tick_failed(tick_state *t, kms_status status, const char *what, const char *id_text)
{
	kr_log("error", "%s%s%s failed: %s (%s)", what, id_text[0] ? " " : "", id_text, kms_error_message(),
	       kms_error_where());
	t->report.failed++;
	if (t->first_failure == KMS_OK) {
		t->first_failure = status;
		kms_error_save(&t->first_error);
	}
}

static void tick_destroy(keyring *kr, int64_t now, store_key_query q, tick_state *t)
{
	char ids[KEYRING_TICK_BATCH][KMS_KEYID_TEXT_SIZE];
	size_t n;
	kms_status status = store_key_ids(kr->store, q, now, KEYRING_TICK_BATCH, ids, &n);
	if (status != KMS_OK) {
		tick_failed(t, status, "listing keys due for destruction", "");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		uint8_t id[KMS_KEYID_BYTES];
		status = keyid_parse(ids[i], KMS_KEYID_TEXT_LEN, id);
		if (status == KMS_OK) {
			pthread_mutex_t *stripe = kr_stripe(kr, id);
			pthread_mutex_lock(stripe);
			status = kr_key_destroy_locked(kr, id, now);
			pthread_mutex_unlock(stripe);
		}
		if (status != KMS_OK) {
			tick_failed(t, status, "destroying key", ids[i]);
			continue;
		}
		t->report.destroyed++;
		kr_log("info", "destroyed key %s: its deletion date passed; metadata kept as a tombstone",
		       ids[i]);
	}
}

static void tick_rotate(keyring *kr, int64_t now, tick_state *t)
{
	char ids[KEYRING_TICK_BATCH][KMS_KEYID_TEXT_SIZE];
	size_t n;
	kms_status status =
	        store_key_ids(kr->store, STORE_KEYS_ROTATION_DUE, now, KEYRING_TICK_BATCH, ids, &n);
	if (status != KMS_OK) {
		tick_failed(t, status, "listing keys due for rotation", "");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		uint8_t id[KMS_KEYID_BYTES];
		uint32_t version = 0;
		bool due = false;
		status = keyid_parse(ids[i], KMS_KEYID_TEXT_LEN, id);
		if (status == KMS_OK) {
			pthread_mutex_t *stripe = kr_stripe(kr, id);
			pthread_mutex_lock(stripe);
			/* Still due? Someone may have rotated it since the query. */
			store_key key;
			status = kr_key_get_visible(kr, ids[i], &key);
			due = status == KMS_OK && key.lifecycle == KEY_LIFECYCLE_READY &&
			      key.state == KEY_STATE_ENABLED && key.rotation_period_days > 0 &&
			      key.next_rotation_at <= now;
			if (due)
				status = kr_version_create_locked(kr, id, now, &version);
			pthread_mutex_unlock(stripe);
		}
		if (status != KMS_OK) {
			tick_failed(t, status, "rotating key", ids[i]);
			continue;
		}
		if (due) {
			t->report.rotated++;
			kr_log("info", "rotated key %s to v%u: its rotation period passed", ids[i],
			       (unsigned)version);
		}
	}
}

kms_status keyring_tick(keyring *kr, int64_t now, keyring_tick_report *report)
{
	tick_state t;
	memset(&t, 0, sizeof t);

	/* Replicas: a dead one's intents, once stale, are rolled back by
	 * whichever replica ticks first (kr_reconcile_intents). */
	if (kr->shared) {
		kms_status status = kr_reconcile_intents(kr, now - KR_INTENT_STALE_S, false);
		if (status != KMS_OK)
			tick_failed(&t, status, "rolling back stale intents", "");
	}
	tick_destroy(kr, now, STORE_KEYS_DESTROYING, &t);
	tick_destroy(kr, now, STORE_KEYS_DELETION_DUE, &t);
	tick_rotate(kr, now, &t);
	/* Destroyed versions' wrapped bytes are overwritten in kms.db
	 * (secure_delete); take them out of kms.db-wal as well. */
	if (t.report.destroyed && store_wal_checkpoint(kr->store) != KMS_OK) {
		kr_log("warn", "after destroying keys: %s", kms_error_message());
		kms_error_clear();
	}
	kms_status status = kr_rewrap_tick(kr, now, &t.report);
	if (status != KMS_OK) {
		kr_log("error", "the re-wrap job failed: %s (%s)", kms_error_message(),
		       kms_error_where());
		if (t.first_failure == KMS_OK) {
			t.first_failure = status;
			kms_error_save(&t.first_error);
		}
	}
	if (report)
		*report = t.report;
	if (t.first_failure != KMS_OK)
		return kms_error_restore(t.first_failure, &t.first_error);
	return KMS_OK;
}
