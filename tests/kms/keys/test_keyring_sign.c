/*
 * test_keyring_sign: signing and MAC keys in the keyring (docs/signing.md,
 * docs/key-hierarchy.md) on a real token.
 *
 * - HMAC_SHA256 and ECC_P256 versions are wrapped, ED25519 versions are
 *   token pairs; each spec takes only its usage (keyring_use_key names the
 *   usage a use needs).
 * - A KEK rotation re-wraps HMAC and P-256 versions with their own type:
 *   the MAC of a message is the same before and after (the same secret),
 *   the P-256 public key too, and a signature made after verifies under the
 *   key stored before.
 * - Rotating a signing key adds a version with its own public key; the
 *   active versions come primary first.
 * - Destroying an Ed25519 key removes both halves of every version; an
 *   Ed25519 pair left on the token with no row (a crash between the HSM
 *   and the commit) is destroyed by the next keyring_open.
 */
#include "tests/support/keyring_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "kms/format/keyid.h"
#include "kms/format/public_key.h"

static hsm *h;
static keyring *kr;

static int group_setup(void **state)
{
	(void)state;
	h = t_hsm_open();
	kr = t_keyring_open(h, 0, 0);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	t_assert_token_matches(h, kr);
	keyring_close(kr);
	hsm_close(h);
	return 0;
}

static void create(key_spec spec, char id[KMS_KEYID_TEXT_SIZE])
{
	keyring_create_args a = { .spec = spec };
	key_metadata m;
	assert_ok(keyring_create_key(kr, &a, T_NOW, &m));
	snprintf(id, KMS_KEYID_TEXT_SIZE, "%s", m.key.id);
	key_metadata_free(&m);
}

static void mac_of(const char *id, uint32_t version, uint8_t mac[32])
{
	keyring_key_use use;
	assert_ok(keyring_use_key(kr, id, KEY_USAGE_GENERATE_VERIFY_MAC, "GenerateMac", version,
	                          &use));
	assert_ok(keyring_hmac(kr, &use, (const uint8_t *)"same message", 12, mac));
}

static void public_of(const char *id, uint32_t version, uint8_t pub[65], size_t *len)
{
	keyring_key_use use;
	assert_ok(keyring_use_key(kr, id, KEY_USAGE_SIGN_VERIFY, "GetPublicKey", version, &use));
	assert_ok(keyring_public_key(kr, &use, pub, len));
}

/* Signs a fixed digest (or message) with the primary version and verifies
 * it with the stored public key alone. */
static void sign_verifies(const char *id, key_spec spec)
{
	keyring_key_use use;
	uint8_t input[32], raw[KEYRING_RAW_SIGNATURE_LEN], pub[65], der[ECDSA_P256_DER_MAX];
	size_t pub_len, der_len;
	memset(input, 0x5a, sizeof input);
	assert_ok(keyring_use_key(kr, id, KEY_USAGE_SIGN_VERIFY, "Sign", 0, &use));
	assert_int_equal(use.spec, spec);
	assert_ok(keyring_sign(kr, &use, input, sizeof input, raw));
	assert_ok(keyring_public_key(kr, &use, pub, &pub_len));
	bool valid = false;
	if (spec == KEY_SPEC_ECC_P256) {
		assert_ok(ecdsa_p256_raw_to_der(raw, der, sizeof der, &der_len));
		assert_ok(signature_verify(PUBLIC_KEY_P256, pub, pub_len, input, sizeof input, der,
		                           der_len, &valid));
	} else {
		assert_ok(signature_verify(PUBLIC_KEY_ED25519, pub, pub_len, input, sizeof input, raw,
		                           sizeof raw, &valid));
	}
	assert_true(valid);
}

static void specs_and_usages(void **state)
{
	(void)state;
	char p256[KMS_KEYID_TEXT_SIZE], ed[KMS_KEYID_TEXT_SIZE], mac[KMS_KEYID_TEXT_SIZE];
	create(KEY_SPEC_ECC_P256, p256);
	create(KEY_SPEC_ED25519, ed);
	create(KEY_SPEC_HMAC_SHA256, mac);
	key_metadata m;
	assert_ok(keyring_describe(kr, ed, &m));
	assert_int_equal(m.key.usage, KEY_USAGE_SIGN_VERIFY);
	assert_int_equal(m.key.protection, KEY_PROTECTION_HSM_RESIDENT);
	key_metadata_free(&m);
	assert_ok(keyring_describe(kr, p256, &m));
	assert_int_equal(m.key.protection, KEY_PROTECTION_WRAPPED);
	assert_int_not_equal(m.versions[0].kek_id, 0);
	key_metadata_free(&m);
	sign_verifies(p256, KEY_SPEC_ECC_P256);
	sign_verifies(ed, KEY_SPEC_ED25519);
	/* An Ed25519 version's public key is kept in the store at creation:
	 * the token pair's own. */
	uint8_t kept[65], token[HSM_ED25519_PUBLIC_LEN];
	size_t kept_len = 0;
	assert_ok(store_version_public_key_get(keyring_store(kr), ed, 1, kept, &kept_len));
	assert_int_equal(kept_len, HSM_ED25519_PUBLIC_LEN);
	keyring_key_use ed_use;
	assert_ok(keyring_use_key(kr, ed, KEY_USAGE_SIGN_VERIFY, "GetPublicKey", 1, &ed_use));
	assert_ok(hsm_ed25519_public(h, &ed_use.object, token));
	assert_memory_equal(kept, token, sizeof token);

	keyring_key_use use;
	assert_status(keyring_use_key(kr, mac, KEY_USAGE_SIGN_VERIFY, "Sign", 0, &use),
	              KMS_INVALID_ARGUMENT);
	t_assert_message(mac, "GENERATE_VERIFY_MAC", "Sign needs a SIGN_VERIFY key", NULL);
	assert_status(keyring_encrypt_key(kr, p256, T_NOW, &use), KMS_INVALID_ARGUMENT);
	t_assert_message("SIGN_VERIFY", "ENCRYPT_DECRYPT", NULL);
	assert_status(keyring_use_key(kr, ed, KEY_USAGE_SIGN_VERIFY, "Sign", 2, &use),
	              KMS_NOT_FOUND);
	assert_ok(keyring_disable(kr, ed));
	assert_status(keyring_use_key(kr, ed, KEY_USAGE_SIGN_VERIFY, "Sign", 0, &use),
	              KMS_FAILED_PRECONDITION);
	assert_ok(keyring_enable(kr, ed));
}

static void kek_rotation_keeps_the_secrets(void **state)
{
	(void)state;
	char p256[KMS_KEYID_TEXT_SIZE], mac[KMS_KEYID_TEXT_SIZE];
	create(KEY_SPEC_ECC_P256, p256);
	create(KEY_SPEC_HMAC_SHA256, mac);
	uint8_t mac_before[32], mac_after[32], pub_before[65], pub_after[65];
	size_t len_before, len_after;
	mac_of(mac, 0, mac_before);
	public_of(p256, 0, pub_before, &len_before);

	store_kek kek;
	assert_ok(keyring_kek_rotate(kr, T_NOW, &kek));
	keyring_tick_report report;
	assert_ok(keyring_tick(kr, T_NOW, &report));
	assert_true(report.rewrapped >= 2); /* and the earlier test's wrapped keys */
	assert_int_equal(report.keks_retired, 1);
	assert_int_equal(report.failed, 0);
	key_metadata m;
	assert_ok(keyring_describe(kr, mac, &m));
	assert_int_equal(m.versions[0].kek_id, kek.id);
	key_metadata_free(&m);

	/* A fresh unwrap of each, under the new KEK. */
	keyring_close(kr);
	kr = t_keyring_open(h, 0, 0);
	mac_of(mac, 0, mac_after);
	assert_memory_equal(mac_before, mac_after, 32);
	public_of(p256, 0, pub_after, &len_after);
	assert_int_equal(len_before, len_after);
	assert_memory_equal(pub_before, pub_after, len_after);
	sign_verifies(p256, KEY_SPEC_ECC_P256);
}

static void rotation_adds_a_public_key(void **state)
{
	(void)state;
	char p256[KMS_KEYID_TEXT_SIZE];
	create(KEY_SPEC_ECC_P256, p256);
	uint8_t pub1[65], pub2[65];
	size_t len1, len2;
	public_of(p256, 1, pub1, &len1);
	assert_ok(keyring_rotate(kr, p256, T_NOW, NULL));
	assert_ok(keyring_rotate(kr, p256, T_NOW, NULL));
	public_of(p256, 3, pub2, &len2);
	assert_int_equal(len1, 65);
	assert_int_equal(len2, 65);
	assert_memory_not_equal(pub1, pub2, 65);
	sign_verifies(p256, KEY_SPEC_ECC_P256);

	keyring_key_use use;
	uint32_t versions[8];
	size_t n;
	assert_ok(keyring_use_key(kr, p256, KEY_USAGE_SIGN_VERIFY, "Verify", 0, &use));
	assert_int_equal(use.version, 3);
	assert_ok(keyring_active_versions(kr, use.key_id, versions, 8, &n));
	assert_int_equal(n, 3);
	assert_int_equal(versions[0], 3);
	assert_int_equal(versions[1], 2);
	assert_int_equal(versions[2], 1);
	assert_ok(keyring_active_versions(kr, use.key_id, versions, 2, &n));
	assert_int_equal(n, 2);
}

static size_t ed25519_objects_of(const uint8_t id[KMS_KEYID_BYTES])
{
	t_objects t;
	t_objects_list(h, &t);
	size_t n = 0;
	for (size_t i = 0; i < t.n; i++)
		n += memcmp(t.ids[i].bytes, id, KMS_KEYID_BYTES) == 0;
	return n;
}

static void ed25519_destroy_and_reconcile(void **state)
{
	(void)state;
	char ed[KMS_KEYID_TEXT_SIZE];
	uint8_t id[KMS_KEYID_BYTES];
	create(KEY_SPEC_ED25519, ed);
	assert_ok(keyring_rotate(kr, ed, T_NOW, NULL));
	sign_verifies(ed, KEY_SPEC_ED25519);
	assert_ok(keyid_parse(ed, strlen(ed), id));
	assert_int_equal(ed25519_objects_of(id), 2);

	/* Scheduled deletion, then the window passes: both versions' pairs go. */
	assert_ok(keyring_schedule_deletion(kr, ed, 7, T_NOW, NULL));
	assert_ok(keyring_tick(kr, T_NOW + 8 * T_DAY, NULL));
	assert_int_equal(ed25519_objects_of(id), 0);
	hsm_object_id object;
	bool exists = true;
	uint8_t fake[KMS_KEYID_BYTES];
	memset(fake, 0xe2, sizeof fake);
	assert_ok(keyid_hsm_object_id(id, 1, object.bytes));
	object.len = KMS_KEYID_HSM_ID_LEN;
	assert_ok(hsm_object_exists(h, &object, &exists));
	assert_false(exists);

	/* A pair under a key-version name with no row: what a crash between
	 * the HSM object and the commit leaves. The next open destroys it. */
	assert_ok(keyid_hsm_object_id(fake, 1, object.bytes));
	object.len = KMS_KEYID_HSM_ID_LEN;
	assert_ok(hsm_ed25519_create(h, &object, "orphan"));
	assert_ok(hsm_object_exists(h, &object, &exists));
	assert_true(exists);
	keyring_close(kr);
	kr = t_keyring_open(h, 0, 0);
	assert_ok(hsm_object_exists(h, &object, &exists));
	assert_false(exists);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(specs_and_usages),
		cmocka_unit_test(kek_rotation_keeps_the_secrets),
		cmocka_unit_test(rotation_adds_a_public_key),
		cmocka_unit_test(ed25519_destroy_and_reconcile),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
