/* Key ids, aliases, key references and the HSM names of key versions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/error.h"
#include "kms/format/keyid.h"

static const uint8_t sample_id[KMS_KEYID_BYTES] = {
	0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
	0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
};
static const char sample_text[] = "k-00112233445566778899aabbccddeeff";

static kms_status parse_cstr(const char *text, uint8_t out[KMS_KEYID_BYTES])
{
	return keyid_parse(text, strlen(text), out);
}

static void format_then_parse_round_trips(void **state)
{
	char text[KMS_KEYID_TEXT_SIZE];
	uint8_t back[KMS_KEYID_BYTES];

	keyid_format(sample_id, text);
	assert_string_equal(text, sample_text);
	assert_int_equal(strlen(text), KMS_KEYID_TEXT_LEN);
	assert_int_equal(parse_cstr(text, back), KMS_OK);
	assert_memory_equal(back, sample_id, KMS_KEYID_BYTES);

	/* Every byte value survives the trip. */
	for (unsigned b = 0; b < 256; b++) {
		uint8_t id[KMS_KEYID_BYTES];
		for (size_t i = 0; i < sizeof id; i++)
			id[i] = (uint8_t)(b + i * 17);
		keyid_format(id, text);
		assert_int_equal(parse_cstr(text, back), KMS_OK);
		assert_memory_equal(back, id, sizeof id);
	}
}

static void assert_parse_rejected(const char *text, size_t len, const char *why)
{
	uint8_t out[KMS_KEYID_BYTES];
	memset(out, 0xa5, sizeof out);
	kms_error_clear();
	assert_int_equal(keyid_parse(text, len, out), KMS_INVALID_ARGUMENT);
	assert_non_null(strstr(kms_error_message(), why));
	const uint8_t zero[KMS_KEYID_BYTES] = { 0 };
	assert_memory_equal(out, zero, sizeof out); /* nothing half-parsed */
}

static void parse_rejects_malformed_ids(void **state)
{
	char text[64];

	assert_parse_rejected("K-00112233445566778899AABBCCDDEEFF", 34, "must start with");
	assert_parse_rejected("k-00112233445566778899AABBCCDDEEFF", 34, "character 22");
	assert_parse_rejected("k-00112233445566778899aabbccddeeFf", 34, "character 32");
	assert_parse_rejected("k-0011223344556677889", 21, "21 characters");        /* short */
	assert_parse_rejected("k-00112233445566778899aabbccddeeff0", 35, "35 characters"); /* long */
	assert_parse_rejected("", 0, "0 characters");
	assert_parse_rejected(NULL, 0, "0 characters");
	assert_parse_rejected("x-00112233445566778899aabbccddeeff", 34, "must start with");
	assert_parse_rejected("k_00112233445566778899aabbccddeeff", 34, "must start with");
	assert_parse_rejected("k-0011223344556677889gaabbccddeeff", 34, "character 21");
	assert_parse_rejected("k-00112233445566778899aabbccddee f", 34, "character 32");
	assert_parse_rejected("k-00112233445566778899aabbccddeef\n", 34, "character 33");
	/* An embedded NUL is a character, not an end. */
	memcpy(text, sample_text, sizeof sample_text);
	text[10] = '\0';
	assert_parse_rejected(text, KMS_KEYID_TEXT_LEN, "character 10");
	/* Only the exact length counts: the text is not read as a C string. */
	memcpy(text, sample_text, sizeof sample_text);
	assert_parse_rejected(text, KMS_KEYID_TEXT_LEN - 1, "33 characters");
}

static void parse_error_never_echoes_input(void **state)
{
	uint8_t out[KMS_KEYID_BYTES];
	const char secret[] = "k-SECRETSECRETSECRETSECRETSECRET00";
	assert_int_equal(keyid_parse(secret, strlen(secret), out), KMS_INVALID_ARGUMENT);
	assert_null(strstr(kms_error_message(), "SECRET"));
}

static void aliases_validate(void **state)
{
	static const char *const good[] = {
		"alias/a", "alias/payments-prod", "alias/team/app_1/key-2", "alias/awesome",
		"alias/kmsx", "alias/AWSOME", "alias/_", "alias//",
	};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		assert_int_equal(keyid_alias_validate(good[i], strlen(good[i])), KMS_OK);
	}

	char longest[KMS_ALIAS_TEXT_MAX + 2];
	memcpy(longest, "alias/", KMS_ALIAS_PREFIX_LEN);
	memset(longest + KMS_ALIAS_PREFIX_LEN, 'n', KMS_ALIAS_NAME_MAX + 1);
	assert_int_equal(keyid_alias_validate(longest, KMS_ALIAS_TEXT_MAX), KMS_OK);
	assert_int_equal(keyid_alias_validate(longest, KMS_ALIAS_TEXT_MAX + 1), KMS_INVALID_ARGUMENT);
	assert_non_null(strstr(kms_error_message(), "251 characters"));

	static const struct {
		const char *text;
		const char *why;
	} bad[] = {
		{ "alias/", "0 characters" },
		{ "alias", "must start with" },
		{ "Alias/x", "must start with" },
		{ "k-00112233445566778899aabbccddeeff", "must start with" },
		{ "alias/a b", "character 7" },
		{ "alias/ä", "character 6" },
		{ "alias/x.y", "character 7" },
		{ "alias/aws", "reserved" },
		{ "alias/aws/ebs", "reserved" },
		{ "alias/kms", "reserved" },
		{ "alias/kms/audit", "reserved" },
		{ "alias/KMS/audit", "reserved" },
		{ "alias/Aws/x", "reserved" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		kms_error_clear();
		assert_int_equal(keyid_alias_validate(bad[i].text, strlen(bad[i].text)),
		                 KMS_INVALID_ARGUMENT);
		assert_non_null(strstr(kms_error_message(), bad[i].why));
	}
	assert_int_equal(keyid_alias_validate(NULL, 0), KMS_INVALID_ARGUMENT);
	assert_int_equal(keyid_alias_validate("alias/a\0b", 9), KMS_INVALID_ARGUMENT);
}

static void references_classify(void **state)
{
	keyid_ref_kind kind;
	uint8_t id[KMS_KEYID_BYTES];

	assert_int_equal(keyid_ref_classify(sample_text, strlen(sample_text), &kind, id), KMS_OK);
	assert_int_equal(kind, KEYID_REF_KEY_ID);
	assert_memory_equal(id, sample_id, sizeof id);

	assert_int_equal(keyid_ref_classify("alias/app", 9, &kind, id), KMS_OK);
	assert_int_equal(kind, KEYID_REF_ALIAS);
	const uint8_t zero[KMS_KEYID_BYTES] = { 0 };
	assert_memory_equal(id, zero, sizeof id);

	static const char *const bad[] = {
		"", "k-", "k-00112233445566778899AABBCCDDEEFF", "alias/", "alias/aws/x",
		"arn:aws:kms:x", "00112233445566778899aabbccddeeff", "key",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		kind = KEYID_REF_ALIAS;
		assert_int_equal(keyid_ref_classify(bad[i], strlen(bad[i]), &kind, id),
		                 KMS_INVALID_ARGUMENT);
		assert_int_equal(kind, KEYID_REF_NONE);
	}
}

static void hsm_object_ids(void **state)
{
	uint8_t object_id[KMS_KEYID_HSM_ID_LEN];
	uint8_t id[KMS_KEYID_BYTES];
	uint32_t version;

	assert_int_equal(keyid_hsm_object_id(sample_id, 0x01020304u, object_id), KMS_OK);
	assert_memory_equal(object_id, sample_id, KMS_KEYID_BYTES);
	const uint8_t be[] = { 0x01, 0x02, 0x03, 0x04 };
	assert_memory_equal(object_id + KMS_KEYID_BYTES, be, sizeof be);

	assert_int_equal(keyid_hsm_object_id_parse(object_id, sizeof object_id, id, &version), KMS_OK);
	assert_memory_equal(id, sample_id, sizeof id);
	assert_int_equal(version, 0x01020304u);

	assert_int_equal(keyid_hsm_object_id(sample_id, 0, object_id), KMS_INVALID_ARGUMENT);
	assert_int_equal(keyid_hsm_object_id_parse(object_id, sizeof object_id - 1, id, &version),
	                 KMS_INVALID_ARGUMENT);
	uint8_t zero_version[KMS_KEYID_HSM_ID_LEN] = { 0 };
	assert_int_equal(keyid_hsm_object_id_parse(zero_version, sizeof zero_version, id, &version),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(version, 0);
}

static void version_labels(void **state)
{
	char label[KMS_KEYID_VERSION_LABEL_SIZE];

	assert_int_equal(keyid_version_label(sample_id, 1, label), KMS_OK);
	assert_string_equal(label, "k-00112233445566778899aabbccddeeff:v1");
	assert_int_equal(keyid_version_label(sample_id, UINT32_MAX, label), KMS_OK);
	assert_string_equal(label, "k-00112233445566778899aabbccddeeff:v4294967295");
	assert_int_equal(strlen(label) + 1, KMS_KEYID_VERSION_LABEL_SIZE);
	assert_int_equal(keyid_version_label(sample_id, 0, label), KMS_INVALID_ARGUMENT);
	assert_string_equal(label, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(format_then_parse_round_trips),
		cmocka_unit_test(parse_rejects_malformed_ids),
		cmocka_unit_test(parse_error_never_echoes_input),
		cmocka_unit_test(aliases_validate),
		cmocka_unit_test(references_classify),
		cmocka_unit_test(hsm_object_ids),
		cmocka_unit_test(version_labels),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
