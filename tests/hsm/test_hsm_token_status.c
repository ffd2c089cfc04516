/* hsm_token_status (libp11): fills what `kms-admin hsm status` shows, logs
 * in with the configured PIN, names what is wrong, and does not disturb an
 * hsm open in the same process. */
#include "tests/support/hsm_test.h"

#include <string.h>

static void fills_info(void **state)
{
	/* One private object on the token, so the count shows whether the login worked. */
	hsm *h = test_open();
	hsm_object_id id = test_id("status-key");
	assert_int_equal(hsm_aes_create(h, &id, "status"), KMS_OK);
	hsm_close(h);

	hsm_config config = test_config();
	hsm_token_info info;
	memset(&info, 0xff, sizeof info);
	kms_status st = hsm_token_status(&config, &info);
	if (st != KMS_OK)
		fail_msg("hsm_token_status: %s", kms_error_message());
	assert_string_equal(info.label, test_env_get().label);
	assert_true(strlen(info.serial) > 0);
	assert_string_equal(info.model, "SoftHSM v2");
	assert_string_equal(info.manufacturer, "SoftHSM project");
	assert_true(info.initialized);
	assert_true(info.login_required);
	assert_true(info.logged_in);
	/* The AES key is private: counted only because the login worked. */
	assert_int_equal(info.objects, 1);

	/* Without a PIN: the same token, not logged in, private objects unseen. */
	config.pin_file = NULL;
	assert_int_equal(hsm_token_status(&config, &info), KMS_OK);
	assert_string_equal(info.label, test_env_get().label);
	assert_false(info.logged_in);
	assert_int_equal(info.objects, 0);
}

static void names_what_is_wrong(void **state)
{
	hsm_config config = test_config();
	hsm_token_info info;

	config.token_label = "no-such-token";
	assert_int_equal(hsm_token_status(&config, &info), KMS_HSM_UNAVAILABLE);
	test_assert_message("no token labelled \"no-such-token\"", NULL);

	config = test_config();
	config.module_path = "/nope/missing-module.so";
	assert_int_equal(hsm_token_status(&config, &info), KMS_HSM_UNAVAILABLE);
	test_assert_message("cannot load PKCS#11 module", "/nope/missing-module.so", NULL);

	/* One wrong PIN (more could lock the token), then the right one still works. */
	char path[512];
	test_write_file(path, sizeof path, "status-wrong.pin", "wrong-wrong-wrong\n", 0600);
	config = test_config();
	config.pin_file = path;
	assert_int_equal(hsm_token_status(&config, &info), KMS_HSM_UNAVAILABLE);
	test_assert_message("CKR_PIN_INCORRECT", path, NULL);
	assert_false(info.logged_in);
	/* What could be read before the login is there anyway. */
	assert_string_equal(info.label, test_env_get().label);

	test_write_file(path, sizeof path, "status-loose.pin", "whatever\n", 0644);
	assert_int_equal(hsm_token_status(&config, &info), KMS_HSM_UNAVAILABLE);
	test_assert_message("permissions", NULL);

	config = test_config();
	assert_int_equal(hsm_token_status(&config, &info), KMS_OK);
	assert_true(info.logged_in);
}

static void beside_an_open_hsm(void **state)
{
	hsm *h = test_open();
	hsm_object_id id = test_id("status-key-2");
	uint8_t iv[HSM_GCM_IV_LEN] = { 0 }, sealed[16];
	assert_int_equal(hsm_aes_create(h, &id, "status 2"), KMS_OK);
	assert_int_equal(hsm_aes_gcm_encrypt(h, &id, iv, NULL, 0, NULL, 0, sealed, 16), KMS_OK);

	hsm_config config = test_config();
	hsm_token_info info;
	kms_status st = hsm_token_status(&config, &info);
	if (st != KMS_OK)
		fail_msg("hsm_token_status: %s", kms_error_message());
	assert_true(info.logged_in);
	assert_int_equal(info.objects, 2);

	/* The layer still works: libp11 did not finalize the module under it. */
	st = hsm_aes_gcm_encrypt(h, &id, iv, NULL, 0, NULL, 0, sealed, 16);
	if (st != KMS_OK)
		fail_msg("encrypt after status: %s", kms_error_message());
	assert_int_equal(hsm_object_destroy(h, &id), KMS_OK);
	hsm_close(h);
}

static void info_from_open_hsm(void **state)
{
	hsm *h = test_open();
	hsm_token_info info;
	memset(&info, 0xff, sizeof info);
	assert_int_equal(hsm_info(h, &info), KMS_OK);
	assert_string_equal(info.label, test_env_get().label);
	assert_true(strlen(info.serial) > 0);
	assert_string_equal(info.model, "SoftHSM v2");
	assert_string_equal(info.manufacturer, "SoftHSM project");
	assert_true(info.initialized);
	assert_true(info.login_required);
	assert_true(info.logged_in);
	unsigned long before = info.objects;

	/* It agrees with hsm_token_status, and counts what is created. */
	hsm_object_id id = test_id("info-key");
	assert_int_equal(hsm_aes_create(h, &id, "info"), KMS_OK);
	assert_int_equal(hsm_info(h, &info), KMS_OK);
	assert_int_equal(info.objects, before + 1);
	hsm_token_info libp11_info;
	hsm_config config = test_config();
	assert_int_equal(hsm_token_status(&config, &libp11_info), KMS_OK);
	assert_string_equal(libp11_info.serial, info.serial);
	assert_int_equal(libp11_info.slot_id, info.slot_id);
	assert_int_equal(libp11_info.objects, info.objects);

	/* Logged out behind its back: reports after the layer logged in again. */
	test_raw raw;
	test_raw_open(&raw);
	assert_int_equal(raw.p11->C_Logout(raw.session), CKR_OK);
	assert_int_equal(hsm_info(h, &info), KMS_OK);
	assert_true(info.logged_in);
	assert_int_equal(info.objects, before + 1);
	test_raw_close(&raw);

	assert_int_equal(hsm_object_destroy(h, &id), KMS_OK);
	assert_int_equal(hsm_info(NULL, &info), KMS_INVALID_ARGUMENT);
	hsm_close(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(fills_info),
		cmocka_unit_test(names_what_is_wrong),
		cmocka_unit_test(beside_an_open_hsm),
		cmocka_unit_test(info_from_open_hsm),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
