/* Session recovery: sessions closed and the user logged out behind the
 * layer's back (as a crashed peer, an HSM failover or an operator would);
 * the next call repairs and succeeds. */
#include "tests/support/hsm_test.h"

#include <string.h>

static hsm *h;
static test_raw raw;
static const hsm_object_id *key;
static hsm_object_id key_id, pair_id;

static int setup(void **state)
{
	h = test_open();
	key_id = test_id("recovery-aes");
	pair_id = test_id("recovery-ed");
	key = &key_id;
	bool exists = false;
	assert_int_equal(hsm_object_exists(h, &key_id, &exists), KMS_OK);
	if (!exists) {
		assert_int_equal(hsm_aes_create(h, &key_id, "recovery"), KMS_OK);
		assert_int_equal(hsm_ed25519_create(h, &pair_id, "recovery pair"), KMS_OK);
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

static void seal_and_open(void)
{
	uint8_t iv[HSM_GCM_IV_LEN] = { 3 }, sealed[32 + 16], opened[32];
	const uint8_t plaintext[32] = "recover and carry on, please...";
	kms_status st = hsm_aes_gcm_encrypt(h, key, iv, NULL, 0, plaintext, 32, sealed, 48);
	if (st != KMS_OK)
		fail_msg("encrypt: %s", kms_error_message());
	st = hsm_aes_gcm_decrypt(h, key, iv, NULL, 0, sealed, 48, opened, 32);
	if (st != KMS_OK)
		fail_msg("decrypt: %s", kms_error_message());
	assert_memory_equal(opened, plaintext, 32);
}

static CK_STATE raw_state(void)
{
	CK_SESSION_INFO info;
	assert_int_equal(raw.p11->C_GetSessionInfo(raw.session, &info), CKR_OK);
	return info.state;
}

static void close_all_sessions(test_raw *r)
{
	assert_int_equal(r->p11->C_CloseAllSessions(r->slot), CKR_OK);
	r->session = CK_INVALID_HANDLE;
}

static void after_close_all_sessions(void **state)
{
	seal_and_open();
	close_all_sessions(&raw);
	/* The layer's session is gone, and with the last session the login. */
	seal_and_open();
	/* Twice in a row, to be sure the repaired session is a real one. */
	close_all_sessions(&raw);
	seal_and_open();
	seal_and_open();
}

static kms_status count_visit(void *ctx, const hsm_object_id *id, hsm_object_kind kind)
{
	(*(int *)ctx)++;
	return KMS_OK;
}

static void every_operation_recovers(void **state)
{
	uint8_t random[32], public_key[HSM_ED25519_PUBLIC_LEN], sig[HSM_ED25519_SIG_LEN];
	bool exists = false;
	int visits = 0;

	close_all_sessions(&raw);
	assert_int_equal(hsm_random(h, random, sizeof random), KMS_OK);
	close_all_sessions(&raw);
	/* Not "false": a logged-out session sees no private objects; the layer must log in again. */
	assert_int_equal(hsm_object_exists(h, &key_id, &exists), KMS_OK);
	assert_true(exists);
	close_all_sessions(&raw);
	assert_int_equal(hsm_ed25519_public(h, &pair_id, public_key), KMS_OK);
	close_all_sessions(&raw);
	assert_int_equal(hsm_ed25519_sign(h, &pair_id, (const uint8_t *)"m", 1, sig), KMS_OK);
	close_all_sessions(&raw);
	/* The listing sees the private keys too (the AES key and the pair's private half). */
	assert_int_equal(hsm_objects_list(h, count_visit, &visits), KMS_OK);
	assert_int_equal(visits, 3);
	hsm_object_id scratch = test_id("recovery-scratch");
	close_all_sessions(&raw);
	assert_int_equal(hsm_aes_create(h, &scratch, "scratch"), KMS_OK);
	close_all_sessions(&raw);
	assert_int_equal(hsm_object_destroy(h, &scratch), KMS_OK);
	assert_int_equal(hsm_object_exists(h, &scratch, &exists), KMS_OK);
	assert_false(exists);
}

static void after_logout(void **state)
{
	seal_and_open();
	/* Login state belongs to the application: this logs the layer out too. */
	assert_int_equal(raw.p11->C_Logout(raw.session), CKR_OK);
	assert_true(raw_state() == CKS_RW_PUBLIC_SESSION);
	seal_and_open();
	/* The layer logged in again, for the whole application. */
	assert_true(raw_state() == CKS_RW_USER_FUNCTIONS);

	/* Logged out before the first use of a key (nothing cached to go stale). */
	hsm_object_id fresh = test_id("recovery-fresh");
	assert_int_equal(hsm_aes_create(h, &fresh, "fresh"), KMS_OK);
	test_raw_close(&raw);
	hsm_close(h); /* finalizes the module: the raw session goes too */
	h = test_open();
	test_raw_open(&raw);
	assert_int_equal(raw.p11->C_Logout(raw.session), CKR_OK);
	key = &fresh;
	seal_and_open();
	key = &key_id;

	/* Logged out, then an existence check: must still see the private key. */
	assert_int_equal(raw.p11->C_Logout(raw.session), CKR_OK);
	bool exists = false;
	assert_int_equal(hsm_object_exists(h, &fresh, &exists), KMS_OK);
	assert_true(exists);
	assert_int_equal(hsm_object_destroy(h, &fresh), KMS_OK);
}

static void after_logout_signing(void **state)
{
	uint8_t sig[HSM_ED25519_SIG_LEN];
	assert_int_equal(hsm_ed25519_sign(h, &pair_id, (const uint8_t *)"a", 1, sig), KMS_OK);
	assert_int_equal(raw.p11->C_Logout(raw.session), CKR_OK);
	assert_int_equal(hsm_ed25519_sign(h, &pair_id, (const uint8_t *)"b", 1, sig), KMS_OK);
	assert_int_equal(raw.p11->C_Logout(raw.session), CKR_OK);
	uint8_t random[16];
	assert_int_equal(hsm_random(h, random, sizeof random), KMS_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(after_close_all_sessions, setup, teardown),
		cmocka_unit_test_setup_teardown(every_operation_recovers, setup, teardown),
		cmocka_unit_test_setup_teardown(after_logout, setup, teardown),
		cmocka_unit_test_setup_teardown(after_logout_signing, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
