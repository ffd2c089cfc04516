/*
 * keyring_wrapped.c: the keyring's side of the key hierarchy
 * (docs/key-hierarchy.md): the KEKs (first start, rotation, listing), new
 * wrapped versions, using a version through the HSM layer's unwrapped-key
 * cache (the loader reads its wrapped material from the store), eviction,
 * and the re-wrap job that moves versions off a draining KEK and retires it.
 *
 * kek_rwlock: creating a wrapped version (read the current KEK, wrap under
 * it, commit the row) holds it shared; rotating and retiring a KEK hold it
 * exclusively, so a KEK is never destroyed between a wrap under it and the
 * commit of that wrap's row.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "kms/keys/keyring.h"
#include "kms/keys/keyring_impl.h"

/* ---- KEKs ---- */

static kms_status kek_object_id(const store_kek *kek, hsm_object_id *out)
{
	size_t len = strnlen(kek->hsm_id, sizeof kek->hsm_id);
	memset(out, 0, sizeof *out);
	KMS_ENSURE(len > 0 && len <= sizeof out->bytes, KMS_INTERNAL,
	           "keyring: KEK %u has an HSM id that does not fit", (unsigned)kek->id);
	memcpy(out->bytes, kek->hsm_id, len);
	out->len = len;
	return KMS_OK;
}

kms_status kr_kek_object_id(const store_kek *kek, hsm_object_id *out)
{
	return kek_object_id(kek, out);
}

/* Makes the CREATING KEK current, creating its token object unless a crash
 * left it there already. */
static kms_status kek_finish(keyring *kr, const store_kek *kek)
{
	hsm_object_id object;
	bool exists = false;
	KMS_GUARD(kek_object_id(kek, &object));
	KMS_GUARD(hsm_kek_exists(kr->hsm, &object, &exists));
	if (exists) {
		/* A kill while the HSM was writing the object can leave one that
		 * is found but does not wrap (SoftHSM writes a token object in
		 * steps). A CREATING KEK has wrapped nothing yet, so such an
		 * object is made again rather than made current. */
		uint8_t probe[HSM_WRAPPED_MAX];
		size_t len = 0;
		kms_status st = hsm_generate_wrapped(kr->hsm, &object, HSM_KEY_TYPE_AES256, probe,
		                                     sizeof probe, &len);
		memset(probe, 0, sizeof probe);
		if (st != KMS_OK) {
			kr_log("warn", "KEK %s (id %u): its HSM object does not wrap (%s); it wraps "
			       "nothing yet, so it is made again", kek->hsm_id, (unsigned)kek->id,
			       kms_error_message());
			kms_error_clear();
			KMS_GUARD(hsm_object_destroy(kr->hsm, &object));
			exists = false;
		}
	}
	if (!exists)
		KMS_GUARD(hsm_kek_create(kr->hsm, &object, kek->hsm_id));
	KMS_GUARD(store_kek_make_current(kr->store, kek->id));
	kr_log("info", "KEK %s (id %u) is now current", kek->hsm_id, (unsigned)kek->id);
	return KMS_OK;
}

/* The first KEK in state (lowest id), through every page of the KEK table
 * (retired KEKs stay as rows, so it only grows). *found false: none. */
static kms_status kek_find(keyring *kr, kek_state state, store_kek *out, bool *found)
{
	store_kek page[KEYRING_KEKS_MAX];
	uint32_t after = 0;
	size_t n;
	*found = false;
	do {
		KMS_GUARD(store_kek_list(kr->store, after, KEYRING_KEKS_MAX, page, &n));
		for (size_t i = 0; i < n; i++)
			if (page[i].state == state) {
				*out = page[i];
				*found = true;
				return KMS_OK;
			}
		if (n)
			after = page[n - 1].id;
	} while (n == KEYRING_KEKS_MAX);
	return KMS_OK;
}

typedef struct token_kek {
	bool found;
	char name[HSM_ID_MAX + 1];
} token_kek;

static kms_status find_kek(void *ctx, const hsm_object_id *id, hsm_object_kind kind)
{
	token_kek *t = ctx;
	if (kind != HSM_OBJECT_KEK || t->found)
		return KMS_OK;
	t->found = true;
	for (size_t i = 0; i < id->len && i < HSM_ID_MAX; i++)
		t->name[i] = id->bytes[i] >= 0x21 && id->bytes[i] <= 0x7e ? (char)id->bytes[i] : '?';
	return KMS_OK;
}

kms_status kr_kek_open(keyring *kr, bool store_created)
{
	store_kek current;

	/* A new kms.db beside a token that holds a KEK is a wrong or lost data
	 * directory: the versions wrapped under it are in another kms.db (or a
	 * backup), and a later KEK rotation here would destroy it. */
	if (store_created) {
		token_kek t = { 0 };
		KMS_GUARD(hsm_objects_list(kr->hsm, find_kek, &t));
		KMS_ENSURE(!t.found, KMS_FAILED_PRECONDITION,
		           "keyring: kms.db is new but the token already holds KEK %s; refusing to "
		           "start beside it (wrong data_dir or token?)", t.name);
	}

	/* A rotation (or the first start) a crash cut short: roll it forward.
	 * There is at most one: a rotation runs alone under kek_rwlock. */
	store_kek creating;
	bool found = false;
	KMS_GUARD(kek_find(kr, KEK_STATE_CREATING, &creating, &found));
	if (found)
		KMS_GUARD(kek_finish(kr, &creating));
	kms_status status = store_kek_get_current(kr->store, &current);
	if (status == KMS_OK)
		return KMS_OK;
	if (status != KMS_NOT_FOUND)
		return status;
	kms_error_clear();
	KMS_GUARD(store_kek_create(kr->store, kms_now(), &current));
	return kek_finish(kr, &current);
}

kms_status keyring_kek_list(keyring *kr, keyring_kek *out, size_t cap, size_t *n)
{
	store_kek page[KEYRING_KEKS_MAX];
	uint32_t after = 0;
	size_t got, kept = 0;
	kms_status status;
	*n = 0;
	if (cap > KEYRING_KEKS_MAX)
		cap = KEYRING_KEKS_MAX;
	if (!cap)
		return KMS_OK;
	/* One read snapshot: the states and the counts agree with each other
	 * even while a re-wrap page commits (a version is counted once). */
	KMS_GUARD(store_begin_read(kr->store));
	/* The newest cap KEKs: every page read, the oldest shifted out. */
	do {
		KMS_GUARD_OUT(status, store_kek_list(kr->store, after, KEYRING_KEKS_MAX, page, &got));
		for (size_t i = 0; i < got; i++) {
			if (kept == cap) {
				memmove(out, out + 1, (cap - 1) * sizeof *out);
				kept--;
			}
			memset(&out[kept], 0, sizeof out[kept]);
			out[kept++].kek = page[i];
		}
		if (got)
			after = page[got - 1].id;
	} while (got == KEYRING_KEKS_MAX);
	for (size_t i = 0; i < kept; i++)
		KMS_GUARD_OUT(status, store_versions_under_kek_count(kr->store, out[i].kek.id,
		                                                     &out[i].versions));
	KMS_GUARD_OUT(status, store_commit(kr->store));
	*n = kept;
	return KMS_OK;
out:
	store_rollback(kr->store);
	return status;
}

kms_status keyring_kek_name(keyring *kr, uint32_t kek_id, char out[static STORE_KEK_HSM_ID_MAX + 1])
{
	store_kek kek;
	out[0] = '\0';
	KMS_GUARD(store_kek_get(kr->store, kek_id, &kek));
	memcpy(out, kek.hsm_id, STORE_KEK_HSM_ID_MAX + 1);
	return KMS_OK;
}

kms_status keyring_kek_rotate(keyring *kr, int64_t now, store_kek *out)
{
	store_kek draining, fresh;
	bool found = false;
	kms_status status;

	if (out)
		memset(out, 0, sizeof *out);
	pthread_rwlock_wrlock(&kr->kek_rwlock);
	KMS_GUARD_OUT(status, kek_find(kr, KEK_STATE_DRAINING, &draining, &found));
	if (found) {
		status = KMS_FAIL(KMS_FAILED_PRECONDITION,
		                  "KEK %s is still being drained by the previous rotation; rotate "
		                  "again once kms-admin hsm kek list shows it retired", draining.hsm_id);
		goto out;
	}
	/* The 'creating' row is an intent (kek_finish completes it). */
	KMS_GUARD_OUT(status, store_begin(kr->store));
	status = store_kek_create(kr->store, now, &fresh);
	store_tx_intent(kr->store);
	if (status == KMS_OK)
		status = store_commit(kr->store);
	if (status != KMS_OK) {
		store_rollback(kr->store);
		goto out;
	}
	KMS_GUARD_OUT(status, kek_finish(kr, &fresh));
	KMS_GUARD_OUT(status, store_kek_get(kr->store, fresh.id, &fresh));
	if (out)
		*out = fresh;
out:
	pthread_rwlock_unlock(&kr->kek_rwlock);
	return status;
}

/* ---- new versions ---- */

kms_status kr_spec_type(key_spec spec, hsm_key_type *out)
{
	switch (spec) {
	case KEY_SPEC_AES_256: *out = HSM_KEY_TYPE_AES256; return KMS_OK;
	case KEY_SPEC_HMAC_SHA256: *out = HSM_KEY_TYPE_HMAC_SHA256; return KMS_OK;
	case KEY_SPEC_ECC_P256: *out = HSM_KEY_TYPE_EC_P256; return KMS_OK;
	case KEY_SPEC_ED25519: break;
	}
	return KMS_FAIL(KMS_INVALID_ARGUMENT, "key spec %s cannot be wrapped (its versions are "
	                "hsm-resident)", key_spec_name(spec));
}

kms_status kr_generate_wrapped(keyring *kr, key_spec spec, uint32_t *kek_id, uint8_t *out,
                               size_t cap, size_t *len, uint8_t *public_key, size_t *public_len)
{
	store_kek kek;
	hsm_object_id object;
	hsm_key_type type = HSM_KEY_TYPE_AES256;
	*kek_id = 0;
	*len = 0;
	if (public_len)
		*public_len = 0;
	KMS_GUARD(kr_spec_type(spec, &type));
	KMS_GUARD(store_kek_get_current(kr->store, &kek));
	KMS_GUARD(kek_object_id(&kek, &object));
	if (type == HSM_KEY_TYPE_EC_P256) {
		KMS_ENSURE(public_key && public_len, KMS_INTERNAL,
		           "keyring: a key pair is generated without room for its public key");
		KMS_GUARD(hsm_generate_wrapped_pair(kr->hsm, &object, type, out, cap, len, public_key));
		*public_len = HSM_EC_P256_PUBLIC_LEN;
	} else {
		KMS_GUARD(hsm_generate_wrapped(kr->hsm, &object, type, out, cap, len));
	}
	*kek_id = kek.id;
	return KMS_OK;
}

kms_status kr_version_insert_wrapped(keyring *kr, const char *id_text, const store_version *v,
                                     uint32_t kek_id, const uint8_t *wrapped, size_t wrapped_len,
                                     const uint8_t *public_key, size_t public_len)
{
	KMS_GUARD(store_version_insert_wrapped(kr->store, id_text, v, kek_id, wrapped, wrapped_len));
	if (public_len)
		KMS_GUARD(store_version_public_key_set(kr->store, id_text, v->version, public_key,
		                                       public_len));
	return KMS_OK;
}

/* ---- use ---- */

/* The cache-miss read: the version's KEK and wrapped bytes from the store. */
static kms_status material_load(void *ctx, const hsm_object_id *name, hsm_object_id *kek,
                                hsm_key_type *type, uint8_t *wrapped, size_t cap, size_t *len)
{
	keyring *kr = ctx;
	uint8_t id[KMS_KEYID_BYTES];
	char id_text[KMS_KEYID_TEXT_SIZE];
	uint32_t version = 0;
	int64_t dp_key = 0;
	store_material m;
	kms_status status;

	*len = 0;
	if (kr_dp_name_parse(name, &dp_key)) {
		/* A data principal's sub-key (keyring_dp.c). */
		snprintf(id_text, sizeof id_text, "sub-key %lld", (long long)dp_key);
		KMS_GUARD_OUT(status, store_dp_key_material_get(kr->store, dp_key, &m));
	} else {
		KMS_GUARD(keyid_hsm_object_id_parse(name->bytes, name->len, id, &version));
		keyid_format(id, id_text);
		KMS_GUARD_OUT(status, store_version_material_get(kr->store, id_text, version, &m));
	}
	if (m.wrapped_len > cap) {
		status = KMS_FAIL(KMS_INTERNAL, "keyring: wrapped material of %s:v%u is larger than "
		                  "the HSM layer takes", id_text, (unsigned)version);
		goto out;
	}
	store_kek k = { .id = m.kek_id };
	memcpy(k.hsm_id, m.kek_hsm_id, sizeof k.hsm_id);
	KMS_GUARD_OUT(status, kek_object_id(&k, kek));
	KMS_GUARD_OUT(status, kr_spec_type(m.spec, type));
	memcpy(wrapped, m.wrapped, m.wrapped_len);
	*len = m.wrapped_len;
out:
	memset(&m, 0, sizeof m);
	return status;
}

/* The keyring said the version is active, so an object not found is an HSM
 * fault (a token object, or the KEK, missing), not an unknown key. */
static kms_status not_found_is_fault(kms_status st, const keyring_key_use *use)
{
	if (st != KMS_NOT_FOUND)
		return st;
	if (!use->wrapped)
		return KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: the object of key %s version %u is "
		                "missing from the token: restore the token or destroy the version",
		                use->key_id_text, use->version);
	char why[256];
	snprintf(why, sizeof why, "%s", kms_error_message());
	return KMS_FAIL(KMS_HSM_UNAVAILABLE, "key %s version %u cannot be unwrapped: %s",
	                use->key_id_text, use->version, why);
}

kms_status keyring_gcm_encrypt(keyring *kr, const keyring_key_use *use,
                               const uint8_t iv[HSM_GCM_IV_LEN], const uint8_t *aad,
                               size_t aad_len, const uint8_t *plaintext, size_t plaintext_len,
                               uint8_t *out, size_t out_cap)
{
	kms_status st;
	if (use->wrapped)
		st = hsm_wrapped_gcm_encrypt(kr->hsm, &use->object, material_load, kr, iv, aad,
		                             aad_len, plaintext, plaintext_len, out, out_cap);
	else
		st = hsm_aes_gcm_encrypt(kr->hsm, &use->object, iv, aad, aad_len, plaintext,
		                         plaintext_len, out, out_cap);
	return not_found_is_fault(st, use);
}

kms_status keyring_gcm_decrypt(keyring *kr, const keyring_key_use *use,
                               const uint8_t iv[HSM_GCM_IV_LEN], const uint8_t *aad,
                               size_t aad_len, const uint8_t *sealed, size_t sealed_len,
                               uint8_t *out, size_t out_cap)
{
	kms_status st;
	if (use->wrapped)
		st = hsm_wrapped_gcm_decrypt(kr->hsm, &use->object, material_load, kr, iv, aad,
		                             aad_len, sealed, sealed_len, out, out_cap);
	else
		st = hsm_aes_gcm_decrypt(kr->hsm, &use->object, iv, aad, aad_len, sealed,
		                         sealed_len, out, out_cap);
	return not_found_is_fault(st, use);
}

kms_status keyring_sign(keyring *kr, const keyring_key_use *use, const uint8_t *input,
                        size_t input_len, uint8_t sig[static KEYRING_RAW_SIGNATURE_LEN])
{
	kms_status st;
	switch (use->spec) {
	case KEY_SPEC_ECC_P256:
		KMS_ENSURE(input_len == KMS_SIGN_DIGEST_LEN && use->wrapped, KMS_INTERNAL,
		           "keyring: ECDSA signs a 32-byte digest with a wrapped version");
		st = hsm_wrapped_ecdsa_p256_sign(kr->hsm, &use->object, material_load, kr, input,
		                                 sig);
		break;
	case KEY_SPEC_ED25519:
		KMS_ENSURE(!use->wrapped, KMS_INTERNAL,
		           "keyring: an Ed25519 version is a token pair");
		st = hsm_ed25519_sign(kr->hsm, &use->object, input, input_len, sig);
		break;
	default:
		return KMS_FAIL(KMS_INTERNAL, "keyring: key %s (%s) does not sign", use->key_id_text,
		                key_spec_name(use->spec));
	}
	return not_found_is_fault(st, use);
}

kms_status keyring_public_key(keyring *kr, const keyring_key_use *use,
                              uint8_t out[static KEYRING_PUBLIC_KEY_MAX], size_t *len)
{
	*len = 0;
	KMS_ENSURE(use->spec == KEY_SPEC_ECC_P256 || use->spec == KEY_SPEC_ED25519, KMS_INTERNAL,
	           "keyring: key %s (%s) has no public key", use->key_id_text,
	           key_spec_name(use->spec));
	/* Kept in the store, written with the version: no HSM call. */
	kms_status st = store_version_public_key_get(kr->store, use->key_id_text, use->version, out,
	                                             len);
	if (st == KMS_NOT_FOUND && use->spec == KEY_SPEC_ED25519) {
		/* Not kept (it should be): the token pair has it. */
		kms_error_clear();
		st = not_found_is_fault(hsm_ed25519_public(kr->hsm, &use->object, out), use);
		*len = st == KMS_OK ? HSM_ED25519_PUBLIC_LEN : 0;
		return st;
	}
	KMS_ENSURE(st != KMS_NOT_FOUND, KMS_INTERNAL,
	           "key %s version %u has lost its public key (kms.db)", use->key_id_text,
	           use->version);
	KMS_GUARD(st);
	bool fits = use->spec == KEY_SPEC_ECC_P256
	                    ? *len == HSM_EC_P256_PUBLIC_LEN && out[0] == 0x04
	                    : *len == HSM_ED25519_PUBLIC_LEN;
	KMS_ENSURE(fits, KMS_INTERNAL, "key %s version %u: its stored public key does not fit %s",
	           use->key_id_text, use->version, key_spec_name(use->spec));
	return KMS_OK;
}

kms_status keyring_hmac(keyring *kr, const keyring_key_use *use, const uint8_t *msg,
                        size_t msg_len, uint8_t mac[static HSM_HMAC_SHA256_LEN])
{
	KMS_ENSURE(use->spec == KEY_SPEC_HMAC_SHA256 && use->wrapped, KMS_INTERNAL,
	           "keyring: key %s (%s) does not MAC", use->key_id_text, key_spec_name(use->spec));
	kms_status st = hsm_wrapped_hmac_sha256(kr->hsm, &use->object, material_load, kr, msg,
	                                        msg_len, mac);
	return not_found_is_fault(st, use);
}

void kr_evict_versions(keyring *kr, const uint8_t id[KMS_KEYID_BYTES], uint32_t max_version)
{
	for (uint32_t v = 1; v <= max_version && v != 0; v++) {
		hsm_object_id name;
		if (kr_object_id(id, v, &name) == KMS_OK)
			hsm_keycache_evict(kr->hsm, &name);
	}
}

void keyring_key_cache_stats_get(keyring *kr, hsm_keycache_stats *out)
{
	hsm_keycache_stats_get(kr->hsm, out);
}

/* ---- the re-wrap job ---- */

typedef struct rewrapped {
	store_version_ref ref;
	uint8_t wrapped[HSM_WRAPPED_MAX];
	size_t len;
} rewrapped;

/* Wraps one version, still under KEK from, anew under KEK to, in the HSM.
 * A row that changed meanwhile (destroyed, already moved) is skipped:
 * out->len stays 0. */
static kms_status rewrap_one(keyring *kr, const store_version_ref *ref, const store_kek *from,
                             const store_kek *to, rewrapped *out)
{
	store_material m;
	hsm_object_id from_object, to_object;
	kms_status status;

	out->ref = *ref;
	out->len = 0;
	status = store_version_material_get(kr->store, ref->key_id, ref->version, &m);
	if (status == KMS_NOT_FOUND || status == KMS_FAILED_PRECONDITION) {
		kms_error_clear();
		return KMS_OK; /* gone or destroyed since the page was read */
	}
	KMS_GUARD(status);
	if (m.kek_id != from->id)
		goto out;
	KMS_GUARD_OUT(status, kek_object_id(from, &from_object));
	KMS_GUARD_OUT(status, kek_object_id(to, &to_object));
	hsm_key_type type = HSM_KEY_TYPE_AES256;
	KMS_GUARD_OUT(status, kr_spec_type(m.spec, &type));
	KMS_GUARD_OUT(status, hsm_rewrap(kr->hsm, &from_object, m.wrapped, m.wrapped_len, &to_object,
	                                 type, out->wrapped, sizeof out->wrapped, &out->len));
out:
	memset(&m, 0, sizeof m);
	return status;
}

/* Commits a page of re-wrapped rows in one transaction (one fsync), each a
 * compare-and-set: a row a destroy or another job changed first is left
 * as it is. *moved counts the rows that moved. */
static kms_status rewrap_commit(keyring *kr, const rewrapped *rows, size_t n,
                                const store_kek *from, const store_kek *to, size_t *moved)
{
	kms_status status;
	size_t count = 0;
	*moved = 0;
	KMS_GUARD(store_begin(kr->store));
	for (size_t i = 0; i < n; i++) {
		if (!rows[i].len)
			continue;
		status = store_version_rewrap(kr->store, rows[i].ref.key_id, rows[i].ref.version,
		                              from->id, to->id, rows[i].wrapped, rows[i].len);
		if (status == KMS_FAILED_PRECONDITION) {
			kms_error_clear(); /* lost the compare-and-set: fine */
			continue;
		}
		KMS_GUARD_OUT(status, status);
		count++;
	}
	KMS_GUARD_OUT(status, store_commit(kr->store));
	*moved = count;
	return KMS_OK;
out:
	store_rollback(kr->store);
	return status;
}

/* Destroys a draining KEK that wraps nothing any more, then records it
 * retired: the object first, so a crash between leaves a row that the next
 * tick retires, never a forgotten object. kek_rwlock held exclusively. */
static kms_status kek_retire(keyring *kr, const store_kek *kek, int64_t now, bool *retired)
{
	hsm_object_id object;
	uint64_t left = 0;
	*retired = false;
	uint64_t sub_keys = 0;
	kms_status status;
	KMS_GUARD(kek_object_id(kek, &object));
	/* One transaction holding the KEK's row: another replica cannot wrap
	 * material under it between the count and the retirement (its insert
	 * waits for this transaction, then is refused: store_kek_lock). */
	KMS_GUARD(store_begin(kr->store));
	KMS_GUARD_OUT(status, store_kek_lock(kr->store, kek->id));
	/* Another replica's tick may have retired it while this one waited. */
	store_kek now_kek;
	KMS_GUARD_OUT(status, store_kek_get(kr->store, kek->id, &now_kek));
	if (now_kek.state != KEK_STATE_DRAINING) {
		store_rollback(kr->store);
		return KMS_OK;
	}
	KMS_GUARD_OUT(status, store_versions_under_kek_count(kr->store, kek->id, &left));
	KMS_GUARD_OUT(status, store_dp_keys_under_kek_count(kr->store, kek->id, &sub_keys));
	if (left || sub_keys) {
		store_rollback(kr->store);
		return KMS_OK; /* rows the pages passed over (failures): next tick */
	}
	/* Idempotent: a crash after it (retire:after-hsm) left the row
	 * draining with the object already gone; this tick finishes it. */
	KMS_GUARD_OUT(status, hsm_object_destroy(kr->hsm, &object));
	kr_crash_point_reached(kr, KR_CRASH_RETIRE_AFTER_HSM);
	KMS_GUARD_OUT(status, store_kek_set_state(kr->store, kek->id, KEK_STATE_RETIRED, now));
	KMS_GUARD_OUT(status, store_commit(kr->store));
	kr_log("info", "KEK %s retired: no key version or sub-key is wrapped under it; its HSM object is "
	       "destroyed", kek->hsm_id);
	*retired = true;
	return KMS_OK;
out:
	store_rollback(kr->store);
	return status;
}

/* One page: read, re-wrap in the HSM, commit. Failed rows are logged and
 * counted; last_key and last_version advance past the page. */
static kms_status rewrap_page(keyring *kr, const store_kek *from, const store_kek *to,
                              rewrapped *work, char last_key[KMS_KEYID_TEXT_SIZE],
                              uint32_t *last_version, size_t *n_read,
                              keyring_tick_report *report)
{
	store_version_ref page[KEYRING_REWRAP_BATCH];
	kms_status first = KMS_OK;
	kms_error_saved first_error;
	size_t moved = 0;

	KMS_GUARD(store_versions_under_kek(kr->store, from->id, last_key, *last_version,
	                                   KEYRING_REWRAP_BATCH, page, n_read));
	for (size_t i = 0; i < *n_read; i++) {
		kms_status st = rewrap_one(kr, &page[i], from, to, &work[i]);
		if (st == KMS_OK)
			continue;
		kr_log("error", "re-wrapping %s:v%u from KEK %s to %s failed: %s", page[i].key_id,
		       (unsigned)page[i].version, from->hsm_id, to->hsm_id, kms_error_message());
		work[i].len = 0;
		report->failed++;
		if (first == KMS_OK) {
			first = st;
			kms_error_save(&first_error);
		}
	}
	if (*n_read) {
		memcpy(last_key, page[*n_read - 1].key_id, KMS_KEYID_TEXT_SIZE);
		*last_version = page[*n_read - 1].version;
		kr_crash_point_reached(kr, KR_CRASH_REWRAP_AFTER_HSM);
	}
	kms_status st = rewrap_commit(kr, work, *n_read, from, to, &moved);
	for (size_t i = 0; i < *n_read; i++)
		memset(work[i].wrapped, 0, sizeof work[i].wrapped);
	KMS_GUARD(st);
	report->rewrapped += moved;
	/* A full page: more versions may be left under the draining KEK. */
	if (moved && *n_read == KEYRING_REWRAP_BATCH)
		kr_crash_point_reached(kr, KR_CRASH_REWRAP_AFTER_COMMIT);
	if (first != KMS_OK)
		return kms_error_restore(first, &first_error);
	return KMS_OK;
}

kms_status kr_rewrap_tick(keyring *kr, int64_t now, keyring_tick_report *report)
{
	store_kek drained, current;
	bool found = false;
	kms_status first = KMS_OK;
	kms_error_saved first_error;

	KMS_GUARD(kek_find(kr, KEK_STATE_DRAINING, &drained, &found));
	if (!found)
		return KMS_OK;
	const store_kek *draining = &drained;
	KMS_GUARD(store_kek_get_current(kr->store, &current));

	rewrapped *work = calloc(KEYRING_REWRAP_BATCH, sizeof *work);
	KMS_ENSURE(work, KMS_INTERNAL, "keyring: out of memory for the re-wrap job");
	/* Keyset pages from the start: rows moved leave the draining KEK's
	 * index, rows that failed are passed over until the next tick. */
	char last_key[KMS_KEYID_TEXT_SIZE] = "";
	uint32_t last_version = 0;
	size_t n_read = KEYRING_REWRAP_BATCH;
	for (size_t p = 0; p < kr->rewrap_pages && n_read == KEYRING_REWRAP_BATCH; p++) {
		kms_status st = rewrap_page(kr, draining, &current, work, last_key, &last_version,
		                            &n_read, report);
		if (st != KMS_OK && first == KMS_OK) {
			first = st;
			kms_error_save(&first_error);
		}
		if (st != KMS_OK && n_read == 0)
			break; /* the page itself could not be read */
	}
	free(work);
	/* Then the data principals' sub-keys, the same way. */
	bool dp_done = false;
	kms_status dst = kr_dp_rewrap_tick(kr, draining, &current, report, &dp_done);
	if (dst != KMS_OK && first == KMS_OK) {
		first = dst;
		kms_error_save(&first_error);
	}
	if (n_read < KEYRING_REWRAP_BATCH && dp_done && first == KMS_OK) {
		/* The last page was short: nothing left (failures aside). */
		bool retired = false;
		pthread_rwlock_wrlock(&kr->kek_rwlock);
		kms_status st = kek_retire(kr, draining, now, &retired);
		pthread_rwlock_unlock(&kr->kek_rwlock);
		KMS_GUARD(st);
		if (retired)
			report->keks_retired++;
	}
	if (first != KMS_OK)
		return kms_error_restore(first, &first_error);
	return KMS_OK;
}
