/*
 * store_material.c: wrapped key versions (docs/key-hierarchy.md): a
 * version's material written with its intent row, read on a cache miss,
 * re-wrapped under the current KEK, and paged per KEK for the re-wrap job.
 * Destruction clears the material in store_version_set_state
 * (store_keys.c).
 */
#include <stdint.h>
#include <string.h>

#include "common/error.h"
#include "kms/store/store.h"
#include "kms/store/store_internal.h"

static kms_status wrapped_check(const char *key_id, const uint8_t *wrapped, size_t len)
{
	KMS_ENSURE(wrapped && len >= STORE_WRAPPED_MIN && len <= STORE_WRAPPED_MAX,
	           KMS_INVALID_ARGUMENT, "store: wrapped material of %s: %zu bytes, must be %d..%d",
	           key_id, wrapped ? len : 0, STORE_WRAPPED_MIN, STORE_WRAPPED_MAX);
	return KMS_OK;
}

kms_status store_version_insert_wrapped(store *st, const char *key_id, const store_version *v,
                                        uint32_t kek_id, const uint8_t *wrapped,
                                        size_t wrapped_len)
{
	KMS_GUARD(wrapped_check(key_id, wrapped, wrapped_len));
	KMS_ENSURE(kek_id >= 1, KMS_INVALID_ARGUMENT, "store: %s:v%u: no KEK", key_id,
	           (unsigned)v->version);
	return store_version_insert_material(st, key_id, v, kek_id, wrapped, wrapped_len);
}

static kms_status material_read(db_stmt *s, const char *key_id, uint32_t version,
                                store_material *out)
{
	char state[16];
	int64_t kek_id = db_column_int64(s, 0);
	int64_t spec = db_column_int64(s, 4);
	const void *blob = db_column_blob(s, 2);
	size_t len = db_column_bytes(s, 2);
	bool ok = kek_id >= 1 && kek_id <= UINT32_MAX &&
	          store_column_text(s, 1, out->kek_hsm_id, sizeof out->kek_hsm_id) &&
	          store_column_text(s, 3, state, sizeof state) && blob &&
	          len >= STORE_WRAPPED_MIN && len <= STORE_WRAPPED_MAX &&
	          spec >= KEY_SPEC_AES_256 && spec <= KEY_SPEC_ECC_P256;
	for (kek_state k = KEK_STATE_CREATING; ok && k <= KEK_STATE_RETIRED; k++)
		if (strcmp(state, kek_state_name(k)) == 0)
			out->kek_state = k;
	if (!ok || out->kek_state == 0)
		return KMS_FAIL(KMS_INTERNAL, "store: material of %s:v%u does not fit its type",
		                key_id, (unsigned)version);
	out->kek_id = (uint32_t)kek_id;
	out->spec = (key_spec)spec;
	memcpy(out->wrapped, blob, len);
	out->wrapped_len = len;
	return KMS_OK;
}

kms_status store_version_material_get(store *st, const char *key_id, uint32_t version,
                                      store_material *out)
{
	db_stmt *s;
	memset(out, 0, sizeof *out);
	/* One lookup by key_versions' primary key, one by keys' and one by
	 * keks' rowid. The LEFT JOIN tells "no such version" from "no
	 * material". */
	KMS_GUARD(store_stmt(st, S_VERSION_MATERIAL_GET,
	                     "SELECT v.kek_id, k.hsm_id, v.wrapped, k.state, keys.spec "
	                     "FROM key_versions AS v JOIN keys ON keys.id = v.key_id "
	                     "LEFT JOIN keks AS k ON k.id = v.kek_id "
	                     "WHERE v.key_id = ?1 AND v.version = ?2",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "ti", key_id, (int64_t)version),
	                           "get material", key_id));
	db_rc rc = db_step(s);
	kms_status status;
	if (rc == DB_ROW && db_column_is_null(s, 2))
		status = KMS_FAIL(KMS_FAILED_PRECONDITION,
		                  "key %s v%u has no wrapped material (hsm-resident or destroyed)",
		                  key_id, (unsigned)version);
	else if (rc == DB_ROW)
		status = material_read(s, key_id, version, out);
	else if (rc == DB_DONE)
		status = KMS_FAIL(KMS_NOT_FOUND, "key %s has no version %u", key_id, (unsigned)version);
	else
		status = store_fail(s, rc, "get material", key_id);
	store_stmt_done(s);
	if (status != KMS_OK)
		memset(out, 0, sizeof *out);
	return status;
}

kms_status store_version_public_key_set(store *st, const char *key_id, uint32_t version,
                                        const uint8_t *public_key, size_t len)
{
	db_stmt *s;
	KMS_ENSURE(public_key && len >= STORE_PUBLIC_KEY_MIN && len <= STORE_PUBLIC_KEY_MAX,
	           KMS_INVALID_ARGUMENT, "store: public key of %s:v%u: %zu bytes, must be %d..%d",
	           key_id, (unsigned)version, public_key ? len : 0, STORE_PUBLIC_KEY_MIN,
	           STORE_PUBLIC_KEY_MAX);
	KMS_GUARD(store_stmt(st, S_VERSION_PUBLIC_KEY_SET,
	                     "UPDATE key_versions SET public_key = ?3 "
	                     "WHERE key_id = ?1 AND version = ?2 AND public_key IS NULL",
	                     &s));
	db_rc rc = store_bind(s, "tib", key_id, (int64_t)version, public_key, len);
	KMS_GUARD(store_bind_check(s, rc, "set public key", key_id));
	kms_status status = store_step_change(s, "set public key", key_id, false);
	if (status == KMS_NOT_FOUND)
		status = KMS_FAIL(KMS_FAILED_PRECONDITION,
		                  "store: %s:v%u does not exist or already has a public key", key_id,
		                  (unsigned)version);
	return status;
}

kms_status store_version_public_key_get(store *st, const char *key_id, uint32_t version,
                                        uint8_t out[static STORE_PUBLIC_KEY_MAX], size_t *len)
{
	db_stmt *s;
	*len = 0;
	KMS_GUARD(store_stmt(st, S_VERSION_PUBLIC_KEY_GET,
	                     "SELECT public_key FROM key_versions WHERE key_id = ?1 AND version = ?2",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "ti", key_id, (int64_t)version),
	                           "get public key", key_id));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	/* public_key is a BLOB column of a STRICT table: a blob or NULL. */
	if (rc == DB_ROW && !db_column_is_null(s, 0)) {
		const void *blob = db_column_blob(s, 0);
		size_t n = db_column_bytes(s, 0);
		if (blob && n >= STORE_PUBLIC_KEY_MIN && n <= STORE_PUBLIC_KEY_MAX) {
			memcpy(out, blob, n);
			*len = n;
		} else {
			status = KMS_FAIL(KMS_INTERNAL, "store: public key of %s:v%u does not fit its "
			                  "type", key_id, (unsigned)version);
		}
	} else if (rc == DB_ROW || rc == DB_DONE) {
		status = KMS_FAIL(KMS_NOT_FOUND, "key %s version %u has no public key here", key_id,
		                  (unsigned)version);
	} else {
		status = store_fail(s, rc, "get public key", key_id);
	}
	store_stmt_done(s);
	return status;
}

kms_status store_version_rewrap(store *st, const char *key_id, uint32_t version,
                                uint32_t old_kek_id, uint32_t new_kek_id, const uint8_t *wrapped,
                                size_t wrapped_len)
{
	db_stmt *s;
	KMS_GUARD(wrapped_check(key_id, wrapped, wrapped_len));
	KMS_ENSURE(old_kek_id != new_kek_id, KMS_INVALID_ARGUMENT,
	           "store: re-wrap of %s:v%u under the KEK it is already wrapped under", key_id,
	           (unsigned)version);
	/* The compare-and-set: still under the old KEK, which the new one,
	 * current, replaces. */
	KMS_GUARD(store_stmt(st, S_VERSION_REWRAP,
	                     "UPDATE key_versions SET kek_id = ?4, wrapped = ?5 "
	                     "WHERE key_id = ?1 AND version = ?2 AND kek_id = ?3 "
	                     "AND wrapped IS NOT NULL "
	                     "AND ?4 = (SELECT id FROM keks WHERE state = 'current')",
	                     &s));
	db_rc rc = store_bind(s, "tiiib", key_id, (int64_t)version, (int64_t)old_kek_id,
	                      (int64_t)new_kek_id, wrapped, wrapped_len);
	KMS_GUARD(store_bind_check(s, rc, "re-wrap", key_id));
	kms_status status = store_step_change(s, "re-wrap", key_id, false);
	if (status == KMS_NOT_FOUND)
		status = KMS_FAIL(KMS_FAILED_PRECONDITION,
		                  "store: re-wrap of %s:v%u lost: it is no longer wrapped under KEK "
		                  "%u, or KEK %u is not current", key_id, (unsigned)version,
		                  (unsigned)old_kek_id, (unsigned)new_kek_id);
	return status;
}

kms_status store_versions_under_kek(store *st, uint32_t kek_id, const char *after_key_id,
                                    uint32_t after_version, size_t cap, store_version_ref *out,
                                    size_t *n)
{
	db_stmt *s;
	*n = 0;
	KMS_ENSURE(cap >= 1 && cap <= STORE_PAGE_MAX, KMS_INVALID_ARGUMENT,
	           "store: page of %zu versions, must be 1..%d", cap, STORE_PAGE_MAX);
	/* "wrapped IS NOT NULL" is key_versions_by_kek's condition. */
	KMS_GUARD(store_stmt(st, S_VERSIONS_UNDER_KEK,
	                     "SELECT key_id, version FROM key_versions "
	                     "WHERE kek_id = ?1 AND wrapped IS NOT NULL "
	                     "AND (key_id, version) > (?2, ?3) "
	                     "ORDER BY key_id, version LIMIT ?4",
	                     &s));
	db_rc rc = store_bind(s, "itii", (int64_t)kek_id, after_key_id ? after_key_id : "",
	                      (int64_t)after_version, (int64_t)cap);
	KMS_GUARD(store_bind_check(s, rc, "versions under KEK", NULL));
	kms_status status = KMS_OK;
	rc = DB_DONE;
	while (*n < cap && (rc = db_step(s)) == DB_ROW) {
		int64_t version = db_column_int64(s, 1);
		if (!store_column_text(s, 0, out[*n].key_id, sizeof out[*n].key_id) || version < 1 ||
		    version > UINT32_MAX) {
			status = KMS_FAIL(KMS_INTERNAL, "store: a version under KEK %u does not fit its "
			                  "type", (unsigned)kek_id);
			break;
		}
		out[*n].version = (uint32_t)version;
		(*n)++;
	}
	if (status == KMS_OK && *n < cap && rc != DB_DONE)
		status = store_fail(s, rc, "versions under KEK", NULL);
	store_stmt_done(s);
	if (status != KMS_OK)
		*n = 0;
	return status;
}

kms_status store_versions_under_kek_count(store *st, uint32_t kek_id, uint64_t *n)
{
	db_stmt *s;
	int64_t count;
	*n = 0;
	KMS_GUARD(store_stmt(st, S_VERSIONS_UNDER_KEK_COUNT,
	                     "SELECT count(*) FROM key_versions "
	                     "WHERE kek_id = ?1 AND wrapped IS NOT NULL",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "i", (int64_t)kek_id), "count versions under KEK",
	                           NULL));
	KMS_GUARD(store_step_count(s, "count versions under KEK", NULL, &count));
	*n = count > 0 ? (uint64_t)count : 0;
	return KMS_OK;
}
