/* The key hierarchy's HSM side: KEKs, generating wrapped versions,
 * re-wrapping, and the failures of bad wrapped material, on a real SoftHSM
 * token; the versions are used through the unwrapped-key cache. */
#include "tests/hsm/wrap_store.h"

static hsm *h;
static test_raw raw;
static test_store store;
static hsm_object_id kek1, kek2;

static int setup(void **state)
{
	h = test_open();
	memset(&store, 0, sizeof store);
	kek1 = test_id("kms-kek-00000001");
	kek2 = test_id("kms-kek-00000002");
	bool exists = false;
	assert_int_equal(hsm_kek_exists(h, &kek1, &exists), KMS_OK);
	if (!exists) {
		assert_int_equal(hsm_kek_create(h, &kek1, "kek one"), KMS_OK);
		assert_int_equal(hsm_kek_create(h, &kek2, "kek two"), KMS_OK);
	}
	test_raw_open(&raw);
	return 0;
}

static int teardown(void **state)
{
	test_raw_close(&raw);
	hsm_close(h);
	return 0;
}

static void seal(const char *name, const uint8_t iv[HSM_GCM_IV_LEN], const uint8_t pt[32],
                 uint8_t sealed[48])
{
	hsm_object_id id = test_id(name);
	kms_status st = hsm_wrapped_gcm_encrypt(h, &id, store_loader, &store, iv,
	                                        (const uint8_t *)"aad", 3, pt, 32, sealed, 48);
	if (st != KMS_OK)
		fail_msg("encrypt %s: %s", name, kms_error_message());
}

static kms_status open_sealed(const char *name, const uint8_t iv[HSM_GCM_IV_LEN],
                              const uint8_t sealed[48], uint8_t pt[32])
{
	hsm_object_id id = test_id(name);
	return hsm_wrapped_gcm_decrypt(h, &id, store_loader, &store, iv, (const uint8_t *)"aad", 3,
	                               sealed, 48, pt, 32);
}

static void kek_attributes(void **state)
{
	CK_OBJECT_HANDLE kek = test_raw_find(&raw, &kek1, CKO_SECRET_KEY);
	assert_true(test_raw_bool(&raw, kek, CKA_TOKEN));
	assert_true(test_raw_bool(&raw, kek, CKA_SENSITIVE));
	assert_false(test_raw_bool(&raw, kek, CKA_EXTRACTABLE));
	assert_true(test_raw_bool(&raw, kek, CKA_WRAP));
	assert_true(test_raw_bool(&raw, kek, CKA_UNWRAP));
	assert_false(test_raw_bool(&raw, kek, CKA_ENCRYPT));
	assert_false(test_raw_bool(&raw, kek, CKA_DECRYPT));
	assert_false(test_raw_bool(&raw, kek, CKA_SIGN));

	assert_int_equal(hsm_kek_create(h, &kek1, "again"), KMS_ALREADY_EXISTS);
	test_assert_message("already exists", NULL);
	/* A data key is not a KEK, even with a KEK-like id. */
	hsm_object_id data = test_id("kms-kek-not-a-kek");
	bool exists = true;
	assert_int_equal(hsm_aes_create(h, &data, "data key"), KMS_OK);
	assert_int_equal(hsm_kek_exists(h, &data, &exists), KMS_OK);
	assert_false(exists);
	uint8_t out[HSM_WRAPPED_MAX];
	size_t len = 1;
	assert_int_equal(hsm_generate_wrapped(h, &data, HSM_KEY_TYPE_AES256, out, sizeof out, &len),
	                 KMS_NOT_FOUND);
	test_assert_message("no KEK with id", "kms-kek-not-a-kek", NULL);
	assert_int_equal(len, 0);
	assert_int_equal(hsm_object_destroy(h, &data), KMS_OK);
}

static void generate_round_trip_and_rewrap(void **state)
{
	unsigned long before = raw_session_objects(&raw, CKO_SECRET_KEY);
	stored_version *v = store_generate(h, &store, "version-1", &kek1, HSM_KEY_TYPE_AES256);
	assert_int_equal(v->len, 40);
	/* The generated object is gone: only wrapped bytes left the call. */
	assert_int_equal(raw_session_objects(&raw, CKO_SECRET_KEY), before);

	uint8_t iv[HSM_GCM_IV_LEN] = { 7 }, sealed[48], opened[32];
	const uint8_t pt[32] = "thirty-two bytes of plain text!";
	seal("version-1", iv, pt, sealed);
	assert_int_equal(open_sealed("version-1", iv, sealed, opened), KMS_OK);
	assert_memory_equal(opened, pt, 32);

	/* Re-wrap under kek2; the old ciphertext opens with the new row. */
	uint8_t rewrapped[HSM_WRAPPED_MAX];
	size_t len = 0;
	kms_status st = hsm_rewrap(h, &kek1, v->wrapped, v->len, &kek2, HSM_KEY_TYPE_AES256,
	                           rewrapped, sizeof rewrapped, &len);
	if (st != KMS_OK)
		fail_msg("rewrap: %s", kms_error_message());
	assert_int_equal(len, 40);
	assert_memory_not_equal(rewrapped, v->wrapped, 40);
	assert_int_equal(raw_session_objects(&raw, CKO_SECRET_KEY), before + 1); /* the cached one */
	memcpy(v->wrapped, rewrapped, len);
	v->kek = kek2;
	hsm_object_id name = test_id("version-1");
	hsm_keycache_evict(h, &name);
	memset(opened, 0, sizeof opened);
	assert_int_equal(open_sealed("version-1", iv, sealed, opened), KMS_OK);
	assert_memory_equal(opened, pt, 32);
	hsm_keycache_stats stats;
	hsm_keycache_stats_get(h, &stats);
	assert_int_equal(stats.unwraps, 2);
	assert_int_equal(store.loads, 2);

	/* The new bytes under the old KEK: refused, naming both. */
	v->kek = kek1;
	hsm_keycache_evict(h, &name);
	assert_int_equal(open_sealed("version-1", iv, sealed, opened), KMS_INTERNAL);
	test_assert_message("version-1", "kms-kek-00000001", "integrity", NULL);
	/* Not remembered: with the right KEK it works again. */
	v->kek = kek2;
	assert_int_equal(open_sealed("version-1", iv, sealed, opened), KMS_OK);
}

static void tampered_blob_refused(void **state)
{
	stored_version *v = store_generate(h, &store, "version-t", &kek1, HSM_KEY_TYPE_AES256);
	uint8_t iv[HSM_GCM_IV_LEN] = { 1 }, sealed[48], pt[32] = { 0 };
	v->wrapped[10] ^= 0x01;
	hsm_object_id name = test_id("version-t");
	kms_status st = hsm_wrapped_gcm_encrypt(h, &name, store_loader, &store, iv, NULL, 0, pt, 32,
	                                        sealed, 48);
	assert_int_equal(st, KMS_INTERNAL);
	test_assert_message("C_UnwrapKey", "version-t", "kms-kek-00000001", "integrity", NULL);
	/* Re-wrapping it fails the same way, and leaves nothing behind. */
	unsigned long before = raw_session_objects(&raw, CKO_SECRET_KEY);
	uint8_t out[HSM_WRAPPED_MAX];
	size_t len = 1;
	assert_int_equal(hsm_rewrap(h, &kek1, v->wrapped, v->len, &kek2, HSM_KEY_TYPE_AES256, out,
	                            sizeof out, &len),
	                 KMS_INTERNAL);
	test_assert_message("integrity", "kms-kek-00000001", NULL);
	assert_int_equal(len, 0);
	assert_int_equal(raw_session_objects(&raw, CKO_SECRET_KEY), before);
	/* Repaired: the next use loads again (no failure is cached). */
	v->wrapped[10] ^= 0x01;
	assert_int_equal(hsm_wrapped_gcm_encrypt(h, &name, store_loader, &store, iv, NULL, 0, pt, 32,
	                                         sealed, 48),
	                 KMS_OK);
}

static void missing_kek_and_bad_loader(void **state)
{
	stored_version *v = store_generate(h, &store, "version-k", &kek1, HSM_KEY_TYPE_AES256);
	v->kek = test_id("kms-kek-99999999");
	uint8_t iv[HSM_GCM_IV_LEN] = { 2 }, sealed[48], pt[32] = { 0 };
	hsm_object_id name = test_id("version-k");
	assert_int_equal(hsm_wrapped_gcm_encrypt(h, &name, store_loader, &store, iv, NULL, 0, pt, 32,
	                                         sealed, 48),
	                 KMS_NOT_FOUND);
	test_assert_message("no KEK with id", "kms-kek-99999999", NULL);
	/* Re-wrap to a KEK that is not there: refused before anything is made. */
	uint8_t out[HSM_WRAPPED_MAX];
	size_t len = 0;
	assert_int_equal(hsm_rewrap(h, &kek1, v->wrapped, v->len, &v->kek, HSM_KEY_TYPE_AES256, out,
	                            sizeof out, &len),
	                 KMS_NOT_FOUND);
	/* The loader's own failure comes back as it said it. */
	hsm_object_id unknown = test_id("version-none");
	assert_int_equal(hsm_wrapped_gcm_encrypt(h, &unknown, store_loader, &store, iv, NULL, 0, pt,
	                                         32, sealed, 48),
	                 KMS_NOT_FOUND);
	test_assert_message("test store: no version version-none", NULL);
	/* A version of another type than the operation's. */
	store_generate(h, &store, "version-mac", &kek1, HSM_KEY_TYPE_HMAC_SHA256);
	hsm_object_id mac_name = test_id("version-mac");
	assert_int_equal(hsm_wrapped_gcm_encrypt(h, &mac_name, store_loader, &store, iv, NULL, 0, pt,
	                                         32, sealed, 48),
	                 KMS_FAILED_PRECONDITION);
	test_assert_message("version-mac", "HMAC-SHA256", "not AES-256", NULL);
	hsm_keycache_stats stats;
	hsm_keycache_stats_get(h, &stats);
	assert_int_equal(stats.entries, 1); /* only the HMAC key loaded */
}

static void hmac_versions(void **state)
{
	stored_version *v = store_generate(h, &store, "mac-1", &kek1, HSM_KEY_TYPE_HMAC_SHA256);
	assert_int_equal(v->len, 40);
	store_generate(h, &store, "mac-2", &kek1, HSM_KEY_TYPE_HMAC_SHA256);
	hsm_object_id m1 = test_id("mac-1"), m2 = test_id("mac-2");
	uint8_t a[32], b[32], c[32];
	const uint8_t msg[] = "a message to authenticate";
	assert_int_equal(hsm_wrapped_hmac_sha256(h, &m1, store_loader, &store, msg, sizeof msg, a),
	                 KMS_OK);
	assert_int_equal(hsm_wrapped_hmac_sha256(h, &m1, store_loader, &store, msg, sizeof msg, b),
	                 KMS_OK);
	assert_memory_equal(a, b, 32);
	assert_int_equal(hsm_wrapped_hmac_sha256(h, &m2, store_loader, &store, msg, sizeof msg, c),
	                 KMS_OK);
	assert_memory_not_equal(a, c, 32);
	/* The same key after a re-wrap gives the same MAC. */
	uint8_t out[HSM_WRAPPED_MAX];
	size_t len = 0;
	assert_int_equal(hsm_rewrap(h, &kek1, v->wrapped, v->len, &kek2, HSM_KEY_TYPE_HMAC_SHA256,
	                            out, sizeof out, &len),
	                 KMS_OK);
	memcpy(v->wrapped, out, len);
	v->kek = kek2;
	hsm_keycache_evict(h, &m1);
	assert_int_equal(hsm_wrapped_hmac_sha256(h, &m1, store_loader, &store, msg, sizeof msg, b),
	                 KMS_OK);
	assert_memory_equal(a, b, 32);
	/* An HMAC key does not encrypt. */
	uint8_t iv[HSM_GCM_IV_LEN] = { 0 }, sealed[48], pt[32] = { 0 };
	assert_int_equal(hsm_wrapped_gcm_encrypt(h, &m1, store_loader, &store, iv, NULL, 0, pt, 32,
	                                         sealed, 48),
	                 KMS_FAILED_PRECONDITION);
}

static void p256_pairs(void **state)
{
	unsigned long priv_before = raw_session_objects(&raw, CKO_PRIVATE_KEY);
	unsigned long pub_before = raw_session_objects(&raw, CKO_PUBLIC_KEY);
	uint8_t wrapped[HSM_WRAPPED_MAX], point[HSM_EC_P256_PUBLIC_LEN], again[HSM_WRAPPED_MAX];
	size_t len = 0, again_len = 0;
	kms_status st = hsm_generate_wrapped_pair(h, &kek1, HSM_KEY_TYPE_EC_P256, wrapped,
	                                          sizeof wrapped, &len, point);
	if (st != KMS_OK)
		fail_msg("P-256: %s", kms_error_message());
	assert_true(len > 40 && len <= HSM_WRAPPED_MAX);
	assert_int_equal(point[0], 0x04);
	assert_int_equal(raw_session_objects(&raw, CKO_PRIVATE_KEY), priv_before);
	assert_int_equal(raw_session_objects(&raw, CKO_PUBLIC_KEY), pub_before);
	assert_int_equal(hsm_rewrap(h, &kek1, wrapped, len, &kek2, HSM_KEY_TYPE_EC_P256, again,
	                            sizeof again, &again_len),
	                 KMS_OK);
	assert_int_equal(again_len, len);
	/* Through the cache: a sensitive, non-extractable private key. */
	stored_version *row = &store.rows[store.count++];
	row->name = test_id("p256-1");
	row->kek = kek2;
	row->type = HSM_KEY_TYPE_EC_P256;
	memcpy(row->wrapped, again, again_len);
	row->len = again_len;
	hsm_keycache_entry *e;
	assert_int_equal(hsm_keycache_acquire(h, &row->name, store_loader, &store, &e), KMS_OK);
	CK_OBJECT_HANDLE obj = hsm_keycache_entry_handle(e);
	assert_false(test_raw_bool(&raw, obj, CKA_EXTRACTABLE));
	assert_true(test_raw_bool(&raw, obj, CKA_SENSITIVE));
	assert_true(test_raw_bool(&raw, obj, CKA_SIGN));
	assert_false(test_raw_bool(&raw, obj, CKA_DECRYPT));
	assert_false(test_raw_bool(&raw, obj, CKA_UNWRAP));
	assert_false(test_raw_bool(&raw, obj, CKA_DERIVE));
	uint8_t value[64];
	assert_int_equal(raw_read(&raw, obj, CKA_VALUE, value, sizeof value),
	                 CKR_ATTRIBUTE_SENSITIVE);
	hsm_keycache_release(h, e);
	/* Pairs go through their own call. */
	assert_int_equal(hsm_generate_wrapped(h, &kek1, HSM_KEY_TYPE_EC_P256, wrapped,
	                                      sizeof wrapped, &len),
	                 KMS_INVALID_ARGUMENT);
}

static void failure_paths_leave_nothing(void **state)
{
	unsigned long before = raw_session_objects(&raw, CKO_SECRET_KEY);
	uint8_t small[8];
	size_t len = 1;
	/* Generated, then the wrap fails (no room): the object is destroyed anyway. */
	assert_int_not_equal(hsm_generate_wrapped(h, &kek1, HSM_KEY_TYPE_AES256, small, sizeof small,
	                                          &len),
	                     KMS_OK);
	test_assert_message("C_WrapKey", "kms-kek-00000001", NULL);
	assert_int_equal(len, 0);
	assert_int_equal(raw_session_objects(&raw, CKO_SECRET_KEY), before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(kek_attributes, setup, teardown),
		cmocka_unit_test_setup_teardown(generate_round_trip_and_rewrap, setup, teardown),
		cmocka_unit_test_setup_teardown(tampered_blob_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(missing_kek_and_bad_loader, setup, teardown),
		cmocka_unit_test_setup_teardown(hmac_versions, setup, teardown),
		cmocka_unit_test_setup_teardown(p256_pairs, setup, teardown),
		cmocka_unit_test_setup_teardown(failure_paths_leave_nothing, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
