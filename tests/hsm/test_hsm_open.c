/* hsm_open: every misconfiguration fails with one line that names what is
 * wrong (module, token, PIN file, PIN) and never shows a PIN. */
#include "tests/support/hsm_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Opens with config, expects failure with status, a NULL hsm, and a message
 * without the real PIN in it. */
static void expect_open_fails(const hsm_config *config, kms_status status)
{
	hsm *h = (hsm *)&h; /* not NULL: hsm_open must clear it */
	kms_error_clear();
	assert_int_equal(hsm_open(config, &h), status);
	assert_null(h);
	assert_null(strstr(kms_error_message(), test_pin()));
}

static void opens_and_closes(void **state)
{
	hsm *h = test_open();
	uint8_t random[8];
	assert_int_equal(hsm_random(h, random, sizeof random), KMS_OK);
	hsm_close(h);
	hsm_close(NULL);
	/* Again: the module comes back after being finalized. */
	h = test_open();
	hsm_close(h);
}

static void wrong_pin(void **state)
{
	/* One wrong attempt only: repeated ones may lock the token's user PIN. */
	char path[512];
	const char *wrong = "not-the-pin-1234";
	test_write_file(path, sizeof path, "wrong.pin", "not-the-pin-1234\n", 0600);
	hsm_config config = test_config();
	config.pin_file = path;
	expect_open_fails(&config, KMS_HSM_UNAVAILABLE);
	test_assert_message("C_Login", "CKR_PIN_INCORRECT", path, test_env_get().label, NULL);
	assert_null(strstr(kms_error_message(), wrong));

	/* The right PIN still works. */
	hsm_close(test_open());
}

static void missing_module(void **state)
{
	hsm_config config = test_config();
	config.module_path = "/nope/libnot-a-pkcs11-module.so";
	expect_open_fails(&config, KMS_HSM_UNAVAILABLE);
	test_assert_message("cannot load PKCS#11 module", "/nope/libnot-a-pkcs11-module.so", NULL);
}

static void not_a_module(void **state)
{
	hsm_config config = test_config();
	config.module_path = "libc.so.6";
	expect_open_fails(&config, KMS_HSM_UNAVAILABLE);
	test_assert_message("libc.so.6", "not a PKCS#11 module", NULL);
}

static void missing_token(void **state)
{
	hsm_config config = test_config();
	config.token_label = "no-such-token-label";
	expect_open_fails(&config, KMS_HSM_UNAVAILABLE);
	test_assert_message("no token labelled \"no-such-token-label\"", test_env_get().module,
	                    "token_label", NULL);

	char too_long[40];
	memset(too_long, 't', sizeof too_long - 1);
	too_long[sizeof too_long - 1] = '\0';
	config.token_label = too_long;
	expect_open_fails(&config, KMS_INVALID_ARGUMENT);
	config.token_label = NULL;
	expect_open_fails(&config, KMS_INVALID_ARGUMENT);
}

static void pin_file_permissions(void **state)
{
	char path[512], content[300];
	snprintf(content, sizeof content, "%s\n", test_pin());
	hsm_config config = test_config();
	config.pin_file = path;

	static const mode_t refused[] = { 0644, 0640, 0604, 0660, 0610 };
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		char mode_text[8];
		snprintf(mode_text, sizeof mode_text, "%04o", (unsigned)refused[i]);
		test_write_file(path, sizeof path, "loose.pin", content, refused[i]);
		expect_open_fails(&config, KMS_HSM_UNAVAILABLE);
		test_assert_message("permissions", mode_text, path, NULL);
	}
	/* 0400 and 0600 are fine. */
	test_write_file(path, sizeof path, "strict.pin", content, 0400);
	hsm *h = NULL;
	assert_int_equal(hsm_open(&config, &h), KMS_OK);
	hsm_close(h);
}

static void pin_file_contents(void **state)
{
	char path[512], content[300];
	hsm_config config = test_config();
	config.pin_file = path;
	hsm *h = NULL;

	/* CRLF, no newline at all, and a second line: the PIN is the first line. */
	snprintf(content, sizeof content, "%s\r\n", test_pin());
	test_write_file(path, sizeof path, "crlf.pin", content, 0600);
	assert_int_equal(hsm_open(&config, &h), KMS_OK);
	hsm_close(h);
	snprintf(content, sizeof content, "%s", test_pin());
	test_write_file(path, sizeof path, "bare.pin", content, 0600);
	assert_int_equal(hsm_open(&config, &h), KMS_OK);
	hsm_close(h);
	snprintf(content, sizeof content, "%s\nsecond line\n", test_pin());
	test_write_file(path, sizeof path, "two-lines.pin", content, 0600);
	assert_int_equal(hsm_open(&config, &h), KMS_OK);
	hsm_close(h);

	test_write_file(path, sizeof path, "empty.pin", "\n", 0600);
	expect_open_fails(&config, KMS_HSM_UNAVAILABLE);
	test_assert_message("empty PIN", path, NULL);

	char huge[400];
	memset(huge, '7', sizeof huge - 1);
	huge[sizeof huge - 1] = '\0';
	test_write_file(path, sizeof path, "huge.pin", huge, 0600);
	expect_open_fails(&config, KMS_HSM_UNAVAILABLE);
	test_assert_message("longer than", path, NULL);

	snprintf(path, sizeof path, "%s/no-such.pin", test_env_get().token_dir);
	expect_open_fails(&config, KMS_HSM_UNAVAILABLE);
	test_assert_message("cannot open the PIN file", path, NULL);

	/* A directory is not a PIN file. */
	config.pin_file = test_env_get().token_dir;
	expect_open_fails(&config, KMS_HSM_UNAVAILABLE);
	test_assert_message("not a regular file", NULL);
}

static void pin_from_environment(void **state)
{
	hsm_config config = test_config();
	config.pin_file = NULL;
	config.pin_env = "KMS_TEST_HSM_PIN";
	hsm *h = NULL;

	unsetenv("KMS_TEST_HSM_PIN");
	expect_open_fails(&config, KMS_HSM_UNAVAILABLE);
	test_assert_message("KMS_TEST_HSM_PIN", "not set", NULL);

	char with_newline[300];
	snprintf(with_newline, sizeof with_newline, "%s\n", test_pin());
	assert_int_equal(setenv("KMS_TEST_HSM_PIN", with_newline, 1), 0);
	assert_int_equal(hsm_open(&config, &h), KMS_OK);
	hsm_close(h);
	unsetenv("KMS_TEST_HSM_PIN");

	/* One source, not both, not none. */
	config.pin_file = test_env_get().pin_file;
	expect_open_fails(&config, KMS_INVALID_ARGUMENT);
	test_assert_message("choose one", NULL);
	config.pin_file = NULL;
	config.pin_env = NULL;
	expect_open_fails(&config, KMS_INVALID_ARGUMENT);
	test_assert_message("no PIN configured", NULL);
}

static void rv_names(void **state)
{
	assert_string_equal(hsm_rv_name(CKR_OK), "CKR_OK");
	assert_string_equal(hsm_rv_name(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT");
	assert_string_equal(hsm_rv_name(CKR_GENERAL_ERROR), "CKR_GENERAL_ERROR");
	assert_string_equal(hsm_rv_name(CKR_SESSION_HANDLE_INVALID), "CKR_SESSION_HANDLE_INVALID");
	assert_string_equal(hsm_rv_name(CKR_FUNCTION_REJECTED), "CKR_FUNCTION_REJECTED");
	assert_string_equal(hsm_rv_name(CKR_PUBLIC_KEY_INVALID), "CKR_PUBLIC_KEY_INVALID");
	assert_string_equal(hsm_rv_name(0x1234), "CKR_0x1234");
	assert_string_equal(hsm_rv_name(CKR_VENDOR_DEFINED | 0x42), "CKR_VENDOR_DEFINED+0x42");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(opens_and_closes),
		cmocka_unit_test(wrong_pin),
		cmocka_unit_test(missing_module),
		cmocka_unit_test(not_a_module),
		cmocka_unit_test(missing_token),
		cmocka_unit_test(pin_file_permissions),
		cmocka_unit_test(pin_file_contents),
		cmocka_unit_test(pin_from_environment),
		cmocka_unit_test(rv_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
