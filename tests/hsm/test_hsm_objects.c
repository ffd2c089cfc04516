/* Objects: keys are created non-extractable on the token, ids are unique,
 * destroy is idempotent and really forgets, listing sees what is there. */
#include "tests/support/hsm_test.h"

#include <string.h>

static hsm *h;

static int open_layer(void **state)
{
	h = test_open();
	return 0;
}

static int close_layer(void **state)
{
	hsm_close(h);
	h = NULL;
	return 0;
}

static kms_status encrypt_once(const hsm_object_id *id)
{
	uint8_t iv[HSM_GCM_IV_LEN] = { 0 }, plaintext[16] = { 0 }, sealed[32];
	return hsm_aes_gcm_encrypt(h, id, iv, NULL, 0, plaintext, 16, sealed, sizeof sealed);
}

static void aes_key_is_not_extractable(void **state)
{
	hsm_object_id id = test_id("aes-attrs");
	assert_int_equal(hsm_aes_create(h, &id, "aes attrs label"), KMS_OK);

	test_raw raw;
	test_raw_open(&raw);
	CK_OBJECT_HANDLE key = test_raw_find(&raw, &id, CKO_SECRET_KEY);

	/* The key bytes cannot be read... */
	uint8_t value[64];
	CK_ATTRIBUTE attr = { CKA_VALUE, value, sizeof value };
	assert_int_equal(raw.p11->C_GetAttributeValue(raw.session, key, &attr, 1),
	                 CKR_ATTRIBUTE_SENSITIVE);
	assert_int_equal(attr.ulValueLen, CK_UNAVAILABLE_INFORMATION);

	/* ...and the attributes say so, and always have. */
	assert_true(test_raw_bool(&raw, key, CKA_SENSITIVE));
	assert_false(test_raw_bool(&raw, key, CKA_EXTRACTABLE));
	assert_true(test_raw_bool(&raw, key, CKA_ALWAYS_SENSITIVE));
	assert_true(test_raw_bool(&raw, key, CKA_NEVER_EXTRACTABLE));
	assert_true(test_raw_bool(&raw, key, CKA_TOKEN));
	assert_true(test_raw_bool(&raw, key, CKA_PRIVATE));
	assert_true(test_raw_bool(&raw, key, CKA_ENCRYPT));
	assert_true(test_raw_bool(&raw, key, CKA_DECRYPT));
	assert_false(test_raw_bool(&raw, key, CKA_WRAP));
	assert_false(test_raw_bool(&raw, key, CKA_UNWRAP));

	/* And it cannot be made extractable afterwards (PKCS#11 forbids FALSE -> TRUE). */
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE make_extractable = { CKA_EXTRACTABLE, &yes, sizeof yes };
	assert_int_not_equal(raw.p11->C_SetAttributeValue(raw.session, key, &make_extractable, 1),
	                     CKR_OK);
	assert_false(test_raw_bool(&raw, key, CKA_EXTRACTABLE));

	CK_KEY_TYPE key_type = 0;
	CK_ULONG value_len = 0;
	char label[64] = { 0 };
	CK_ATTRIBUTE attrs[] = {
		{ CKA_KEY_TYPE, &key_type, sizeof key_type },
		{ CKA_VALUE_LEN, &value_len, sizeof value_len },
		{ CKA_LABEL, label, sizeof label - 1 },
	};
	assert_int_equal(raw.p11->C_GetAttributeValue(raw.session, key, attrs, 3), CKR_OK);
	assert_int_equal(key_type, CKK_AES);
	assert_int_equal(value_len, 32);
	assert_int_equal(attrs[2].ulValueLen, strlen("aes attrs label"));
	assert_string_equal(label, "aes attrs label");
	test_raw_close(&raw);
}

static void create_exists_destroy(void **state)
{
	hsm_object_id id = test_id("aes-lifecycle");
	bool exists = true;

	assert_int_equal(hsm_object_exists(h, &id, &exists), KMS_OK);
	assert_false(exists);
	assert_int_equal(hsm_aes_create(h, &id, "lifecycle"), KMS_OK);
	assert_int_equal(hsm_object_exists(h, &id, &exists), KMS_OK);
	assert_true(exists);
	assert_int_equal(encrypt_once(&id), KMS_OK); /* caches the handle */

	/* The id is taken, for any kind of object. */
	assert_int_equal(hsm_aes_create(h, &id, "again"), KMS_ALREADY_EXISTS);
	test_assert_message("\"aes-lifecycle\"", "already exists", NULL);
	assert_int_equal(hsm_ed25519_create(h, &id, "again"), KMS_ALREADY_EXISTS);

	assert_int_equal(hsm_object_destroy(h, &id), KMS_OK);
	assert_int_equal(hsm_object_exists(h, &id, &exists), KMS_OK);
	assert_false(exists);
	/* Destroying what is not there is fine. */
	assert_int_equal(hsm_object_destroy(h, &id), KMS_OK);
	assert_int_equal(hsm_object_destroy(h, &id), KMS_OK);

	/* The cached handle went with it. */
	assert_int_equal(encrypt_once(&id), KMS_NOT_FOUND);
	test_assert_message("no AES key", "\"aes-lifecycle\"", NULL);

	/* The id is free again, and the new key is a different key. */
	assert_int_equal(hsm_aes_create(h, &id, "reborn"), KMS_OK);
	assert_int_equal(encrypt_once(&id), KMS_OK);
	assert_int_equal(hsm_object_destroy(h, &id), KMS_OK);
}

static void destroyed_behind_the_back(void **state)
{
	/* Another process destroys the key: the cached handle is stale, the layer notices. */
	hsm_object_id id = test_id("aes-stale");
	assert_int_equal(hsm_aes_create(h, &id, "stale"), KMS_OK);
	assert_int_equal(encrypt_once(&id), KMS_OK);

	test_raw raw;
	test_raw_open(&raw);
	CK_OBJECT_HANDLE key = test_raw_find(&raw, &id, CKO_SECRET_KEY);
	assert_int_equal(raw.p11->C_DestroyObject(raw.session, key), CKR_OK);
	test_raw_close(&raw);

	assert_int_equal(encrypt_once(&id), KMS_NOT_FOUND);
	bool exists = true;
	assert_int_equal(hsm_object_exists(h, &id, &exists), KMS_OK);
	assert_false(exists);
}

typedef struct seen {
	int aes, ed_private, ed_public, other, total;
	bool aes_seen, ed_seen;
} seen;

static kms_status record(void *ctx, const hsm_object_id *id, hsm_object_kind kind)
{
	seen *s = ctx;
	s->total++;
	switch (kind) {
	case HSM_OBJECT_AES_KEY:
		s->aes++;
		break;
	case HSM_OBJECT_ED25519_PRIVATE:
		s->ed_private++;
		break;
	case HSM_OBJECT_ED25519_PUBLIC:
		s->ed_public++;
		break;
	default:
		s->other++;
		break;
	}
	if (id->len == 8 && memcmp(id->bytes, "list-aes", 8) == 0)
		s->aes_seen = kind == HSM_OBJECT_AES_KEY;
	if (id->len == 7 && memcmp(id->bytes, "list-ed", 7) == 0)
		s->ed_seen = kind == HSM_OBJECT_ED25519_PRIVATE || kind == HSM_OBJECT_ED25519_PUBLIC;
	return KMS_OK;
}

static kms_status stop_at_first(void *ctx, const hsm_object_id *id, hsm_object_kind kind)
{
	(*(int *)ctx)++;
	return KMS_FAILED_PRECONDITION;
}

static void list_sees_kinds(void **state)
{
	hsm_object_id aes = test_id("list-aes"), ed = test_id("list-ed");
	seen before = { 0 }, after = { 0 };
	assert_int_equal(hsm_objects_list(h, record, &before), KMS_OK);

	assert_int_equal(hsm_aes_create(h, &aes, "list aes"), KMS_OK);
	assert_int_equal(hsm_ed25519_create(h, &ed, "list ed"), KMS_OK);
	assert_int_equal(hsm_objects_list(h, record, &after), KMS_OK);
	assert_true(after.aes_seen);
	assert_true(after.ed_seen);
	assert_int_equal(after.aes, before.aes + 1);
	assert_int_equal(after.ed_private, before.ed_private + 1);
	assert_int_equal(after.ed_public, before.ed_public + 1);
	assert_int_equal(after.total, before.total + 3);

	/* A visitor's failure stops the walk and comes back unchanged. */
	int calls = 0;
	assert_int_equal(hsm_objects_list(h, stop_at_first, &calls), KMS_FAILED_PRECONDITION);
	assert_int_equal(calls, 1);

	/* Destroying a pair's id removes both halves. */
	assert_int_equal(hsm_object_destroy(h, &ed), KMS_OK);
	assert_int_equal(hsm_object_destroy(h, &aes), KMS_OK);
	seen gone = { 0 };
	assert_int_equal(hsm_objects_list(h, record, &gone), KMS_OK);
	assert_false(gone.aes_seen);
	assert_false(gone.ed_seen);
	assert_int_equal(gone.total, before.total);
}

static void bad_arguments(void **state)
{
	hsm_object_id id = test_id("args");
	char long_label[HSM_LABEL_MAX + 2];
	memset(long_label, 'x', sizeof long_label - 1);
	long_label[sizeof long_label - 1] = '\0';
	assert_int_equal(hsm_aes_create(h, &id, long_label), KMS_INVALID_ARGUMENT);
	assert_int_equal(hsm_aes_create(h, &id, NULL), KMS_INVALID_ARGUMENT);
	hsm_object_id empty = { .len = 0 }, too_long = { .len = HSM_ID_MAX + 1 };
	bool exists;
	assert_int_equal(hsm_aes_create(h, &empty, "x"), KMS_INVALID_ARGUMENT);
	assert_int_equal(hsm_object_exists(h, &too_long, &exists), KMS_INVALID_ARGUMENT);
	assert_int_equal(hsm_object_destroy(h, &empty), KMS_INVALID_ARGUMENT);
	assert_int_equal(hsm_objects_list(h, NULL, NULL), KMS_INVALID_ARGUMENT);

	/* The longest id works. */
	hsm_object_id longest = { .len = HSM_ID_MAX };
	memset(longest.bytes, 0xa5, sizeof longest.bytes);
	assert_int_equal(hsm_aes_create(h, &longest, "longest id"), KMS_OK);
	assert_int_equal(encrypt_once(&longest), KMS_OK);
	assert_int_equal(hsm_object_destroy(h, &longest), KMS_OK);
}

static void keys_survive_reopen(void **state)
{
	/* Token keys outlive the process's sessions: what was sealed before opens after. */
	hsm_object_id id = test_id("aes-persistent");
	uint8_t iv[HSM_GCM_IV_LEN] = { 7 }, sealed[16 + 5], opened[5];
	assert_int_equal(hsm_aes_create(h, &id, "persistent"), KMS_OK);
	assert_int_equal(hsm_aes_gcm_encrypt(h, &id, iv, NULL, 0, (const uint8_t *)"hello", 5,
	                                     sealed, sizeof sealed),
	                 KMS_OK);
	hsm_close(h);
	h = test_open();
	assert_int_equal(hsm_aes_gcm_decrypt(h, &id, iv, NULL, 0, sealed, sizeof sealed, opened, 5),
	                 KMS_OK);
	assert_memory_equal(opened, "hello", 5);
	assert_int_equal(hsm_object_destroy(h, &id), KMS_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(aes_key_is_not_extractable, open_layer, close_layer),
		cmocka_unit_test_setup_teardown(create_exists_destroy, open_layer, close_layer),
		cmocka_unit_test_setup_teardown(destroyed_behind_the_back, open_layer, close_layer),
		cmocka_unit_test_setup_teardown(list_sees_kinds, open_layer, close_layer),
		cmocka_unit_test_setup_teardown(bad_arguments, open_layer, close_layer),
		cmocka_unit_test_setup_teardown(keys_survive_reopen, open_layer, close_layer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
