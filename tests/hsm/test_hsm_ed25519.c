/* Ed25519 in the HSM: signatures verify with OpenSSL against the exported
 * public key, the private half never leaves, CKA_EC_POINT in both forms. */
#include "tests/support/hsm_test.h"

#include <string.h>

#include <openssl/evp.h>

static hsm *h;

static int setup(void **state)
{
	h = test_open();
	return 0;
}

static int teardown(void **state)
{
	hsm_close(h);
	return 0;
}

static bool openssl_verifies(const uint8_t public_key[HSM_ED25519_PUBLIC_LEN], const uint8_t *msg,
                             size_t msg_len, const uint8_t sig[HSM_ED25519_SIG_LEN])
{
	EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, public_key,
	                                             HSM_ED25519_PUBLIC_LEN);
	assert_non_null(pkey);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	assert_non_null(md);
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, NULL, NULL, pkey), 1);
	int ok = EVP_DigestVerify(md, sig, HSM_ED25519_SIG_LEN, msg, msg_len);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pkey);
	return ok == 1;
}

static void sign_and_verify(void **state)
{
	hsm_object_id id = test_id("audit-checkpoint-key");
	uint8_t public_key[HSM_ED25519_PUBLIC_LEN], sig[HSM_ED25519_SIG_LEN];
	const uint8_t msg[] = "kms.example/audit\n42\nq4Z1b0Gm5kR0aX2k3x9cJw==\n";

	assert_int_equal(hsm_ed25519_create(h, &id, "audit checkpoints"), KMS_OK);
	assert_int_equal(hsm_ed25519_public(h, &id, public_key), KMS_OK);
	assert_int_equal(hsm_ed25519_sign(h, &id, msg, sizeof msg - 1, sig), KMS_OK);
	assert_true(openssl_verifies(public_key, msg, sizeof msg - 1, sig));

	/* A changed message, a changed signature, another key: all fail. */
	uint8_t changed[sizeof msg];
	memcpy(changed, msg, sizeof msg);
	changed[3] ^= 1;
	assert_false(openssl_verifies(public_key, changed, sizeof msg - 1, sig));
	assert_false(openssl_verifies(public_key, msg, sizeof msg - 2, sig));
	uint8_t bad_sig[HSM_ED25519_SIG_LEN];
	memcpy(bad_sig, sig, sizeof bad_sig);
	bad_sig[40] ^= 0x04;
	assert_false(openssl_verifies(public_key, msg, sizeof msg - 1, bad_sig));

	/* Ed25519 is deterministic: same message, same signature. */
	uint8_t again[HSM_ED25519_SIG_LEN];
	assert_int_equal(hsm_ed25519_sign(h, &id, msg, sizeof msg - 1, again), KMS_OK);
	assert_memory_equal(sig, again, sizeof sig);

	/* The empty message, and a long one. */
	assert_int_equal(hsm_ed25519_sign(h, &id, NULL, 0, sig), KMS_OK);
	assert_true(openssl_verifies(public_key, (const uint8_t *)"", 0, sig));
	static uint8_t big[64 * 1024];
	memset(big, 0x5c, sizeof big);
	assert_int_equal(hsm_ed25519_sign(h, &id, big, sizeof big, sig), KMS_OK);
	assert_true(openssl_verifies(public_key, big, sizeof big, sig));

	/* A second pair has a different key. */
	hsm_object_id other = test_id("other-signing-key");
	uint8_t other_public[HSM_ED25519_PUBLIC_LEN];
	assert_int_equal(hsm_ed25519_create(h, &other, "other"), KMS_OK);
	assert_int_equal(hsm_ed25519_public(h, &other, other_public), KMS_OK);
	assert_memory_not_equal(public_key, other_public, sizeof public_key);
	assert_int_equal(hsm_ed25519_sign(h, &id, msg, sizeof msg - 1, sig), KMS_OK);
	assert_false(openssl_verifies(other_public, msg, sizeof msg - 1, sig));
	assert_int_equal(hsm_object_destroy(h, &other), KMS_OK);
}

static void private_half_stays_in(void **state)
{
	hsm_object_id id = test_id("ed-attrs");
	assert_int_equal(hsm_ed25519_create(h, &id, "ed attrs"), KMS_OK);

	test_raw raw;
	test_raw_open(&raw);
	CK_OBJECT_HANDLE private_key = test_raw_find(&raw, &id, CKO_PRIVATE_KEY);
	assert_true(test_raw_bool(&raw, private_key, CKA_SENSITIVE));
	assert_false(test_raw_bool(&raw, private_key, CKA_EXTRACTABLE));
	assert_true(test_raw_bool(&raw, private_key, CKA_TOKEN));
	assert_true(test_raw_bool(&raw, private_key, CKA_PRIVATE));
	assert_true(test_raw_bool(&raw, private_key, CKA_SIGN));
	uint8_t value[128];
	CK_ATTRIBUTE attr = { CKA_VALUE, value, sizeof value };
	assert_int_equal(raw.p11->C_GetAttributeValue(raw.session, private_key, &attr, 1),
	                 CKR_ATTRIBUTE_SENSITIVE);

	CK_OBJECT_HANDLE public_key = test_raw_find(&raw, &id, CKO_PUBLIC_KEY);
	assert_true(test_raw_bool(&raw, public_key, CKA_TOKEN));
	assert_true(test_raw_bool(&raw, public_key, CKA_VERIFY));
	test_raw_close(&raw);
	assert_int_equal(hsm_object_destroy(h, &id), KMS_OK);
}

static void missing_and_mismatched(void **state)
{
	uint8_t public_key[HSM_ED25519_PUBLIC_LEN], sig[HSM_ED25519_SIG_LEN];
	hsm_object_id missing = test_id("no-such-pair");
	assert_int_equal(hsm_ed25519_public(h, &missing, public_key), KMS_NOT_FOUND);
	test_assert_message("\"no-such-pair\"", NULL);
	assert_int_equal(hsm_ed25519_sign(h, &missing, (const uint8_t *)"x", 1, sig), KMS_NOT_FOUND);

	/* An AES key's id is no signing key, and a pair is no AES key. */
	hsm_object_id aes = test_id("ed-test-aes"), pair = test_id("ed-test-pair");
	assert_int_equal(hsm_aes_create(h, &aes, "aes"), KMS_OK);
	assert_int_equal(hsm_ed25519_sign(h, &aes, (const uint8_t *)"x", 1, sig), KMS_NOT_FOUND);
	assert_int_equal(hsm_ed25519_create(h, &aes, "clash"), KMS_ALREADY_EXISTS);
	assert_int_equal(hsm_ed25519_create(h, &pair, "pair"), KMS_OK);
	assert_int_equal(hsm_ed25519_create(h, &pair, "pair again"), KMS_ALREADY_EXISTS);
	uint8_t iv[HSM_GCM_IV_LEN] = { 0 }, sealed[16];
	assert_int_equal(hsm_aes_gcm_encrypt(h, &pair, iv, NULL, 0, NULL, 0, sealed, 16),
	                 KMS_NOT_FOUND);
	assert_int_equal(hsm_object_destroy(h, &aes), KMS_OK);
	assert_int_equal(hsm_object_destroy(h, &pair), KMS_OK);
	assert_int_equal(hsm_ed25519_sign(h, &pair, (const uint8_t *)"x", 1, sig), KMS_NOT_FOUND);
}

static void ec_point_forms(void **state)
{
	/*
	 * Public key objects made by hand with CKA_EC_POINT exactly as given
	 * (token objects: the layer looks at nothing else). A module may store
	 * the point raw or DER-wrapped; anything else is refused.
	 */
	test_raw raw;
	test_raw_open(&raw);
	uint8_t key[32], der[34], wrong_tag[34], got[HSM_ED25519_PUBLIC_LEN];
	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t)(0xc0 + i);
	der[0] = 0x04;
	der[1] = 0x20;
	memcpy(der + 2, key, 32);
	memcpy(wrong_tag, der, sizeof der);
	wrong_tag[0] = 0x03; /* a BIT STRING, not an OCTET STRING */

	struct {
		const char *id;
		const uint8_t *point;
		size_t len;
		bool ok;
	} cases[] = {
		{ "point-raw", key, 32, true },
		{ "point-der", der, 34, true },
		{ "point-short", der, 33, false },
		{ "point-wrong-tag", wrong_tag, 34, false },
		{ "point-wrong-length", (const uint8_t[]){ 0x04, 0x1f, [33] = 0 }, 34, false },
		{ "point-long", (const uint8_t *)"0123456789012345678901234567890123456789", 40, false },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		hsm_object_id id = test_id(cases[i].id);
		CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
		CK_KEY_TYPE type = CKK_EC_EDWARDS;
		CK_BBOOL yes = CK_TRUE;
		static const uint8_t ed25519_oid[] = { 0x06, 0x03, 0x2b, 0x65, 0x70 };
		CK_ATTRIBUTE tmpl[] = {
			{ CKA_CLASS, &cls, sizeof cls },
			{ CKA_KEY_TYPE, &type, sizeof type },
			{ CKA_TOKEN, &yes, sizeof yes },
			{ CKA_EC_PARAMS, (void *)(uintptr_t)ed25519_oid, sizeof ed25519_oid },
			{ CKA_EC_POINT, (void *)(uintptr_t)cases[i].point, cases[i].len },
			{ CKA_ID, id.bytes, id.len },
		};
		CK_OBJECT_HANDLE object;
		assert_int_equal(raw.p11->C_CreateObject(raw.session, tmpl, 6, &object), CKR_OK);
		memset(got, 0xee, sizeof got);
		kms_status st = hsm_ed25519_public(h, &id, got);
		if (cases[i].ok) {
			if (st != KMS_OK)
				fail_msg("%s: %s", cases[i].id, kms_error_message());
			assert_memory_equal(got, key, 32);
		} else {
			assert_int_equal(st, KMS_HSM_UNAVAILABLE);
			test_assert_message("CKA_EC_POINT", cases[i].id, NULL);
			/* Nothing half-parsed is handed out. */
			for (int b = 0; b < 32; b++)
				assert_int_equal(got[b], 0);
		}
		assert_int_equal(hsm_object_destroy(h, &id), KMS_OK);
	}
	test_raw_close(&raw);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(sign_and_verify, setup, teardown),
		cmocka_unit_test_setup_teardown(private_half_stays_in, setup, teardown),
		cmocka_unit_test_setup_teardown(missing_and_mismatched, setup, teardown),
		cmocka_unit_test_setup_teardown(ec_point_forms, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
