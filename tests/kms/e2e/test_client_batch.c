/*
 * libkmsclient's three batch calls against a real kmsd: each item's own
 * status and output, in order, one bad item failing alone, and the batch
 * refused whole before sending when its size is out of range. (test_client
 * checks the transport against a fake server; this checks what each batch
 * kind reads from kmsd's real answers.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <stdio.h>
#include <string.h>

#include <kms/client.h>

#include "tests/support/harness.h"

static harness H;
static kms_client *C;
static char key_id[KMS_KEY_ID_MAX + 1];

static int start(void **state)
{
	harness_options o = { 0 };
	if (!harness_start(&H, &o))
		return -1;
	const char *endpoints[] = { H.ipc_url };
	kms_client_options opts = { .endpoints = endpoints, .n_endpoints = 1,
	                            .timeout_ms = 10000 };
	kms_error err;
	if (kms_client_open(&opts, &C, &err) != KMS_OK) {
		fprintf(stderr, "open: %s\n", err.message);
		return -1;
	}
	kms_create_key_params params = { .description = "batches" };
	kms_key_metadata md;
	if (kms_create_key(C, &params, &md, &err) != KMS_OK) {
		fprintf(stderr, "create key: %s\n", err.message);
		return -1;
	}
	snprintf(key_id, sizeof key_id, "%s", md.key_id);
	kms_key_metadata_free(&md);
	return 0;
}

static int stop(void **state)
{
	kms_client_close(C);
	int code = harness_stop(&H);
	if (code != 0)
		fprintf(stderr, "kmsd exited %d; log: %s\n", code, H.log);
	return code == 0 ? 0 : -1;
}

static const kms_context_pair ctx_a[] = { { "purpose", "a" } };
static const kms_context_pair ctx_b[] = { { "purpose", "b" } };
static const char *const texts[] = { "first", "second", "third" };

static void encrypt_then_decrypt_item_by_item(void **state)
{
	kms_error err;
	const char *missing = "k-00000000000000000000000000000000";
	kms_encrypt_item items[] = {
		{ key_id, (const uint8_t *)texts[0], strlen(texts[0]), ctx_a, 1 },
		{ missing, (const uint8_t *)texts[1], strlen(texts[1]), ctx_a, 1 },
		{ key_id, (const uint8_t *)texts[2], strlen(texts[2]), ctx_b, 1 },
	};
	kms_encrypt_result enc[3];
	assert_int_equal(kms_batch_encrypt(C, items, 3, enc, &err), KMS_OK);
	assert_int_equal(enc[0].status, KMS_OK);
	assert_int_equal(enc[1].status, KMS_NOT_FOUND);
	assert_non_null(strstr(enc[1].message, "item 1"));
	assert_null(enc[1].ciphertext.blob);
	assert_int_equal(enc[2].status, KMS_OK);
	assert_string_equal(enc[0].ciphertext.key_id, key_id);
	assert_int_equal(enc[0].ciphertext.key_version, 1);

	/* Item 1 presents the wrong context; 0 and 2 their own. */
	kms_decrypt_item back[] = {
		{ enc[0].ciphertext.blob, enc[0].ciphertext.blob_len, ctx_a, 1, NULL },
		{ enc[2].ciphertext.blob, enc[2].ciphertext.blob_len, ctx_a, 1, NULL },
		{ enc[2].ciphertext.blob, enc[2].ciphertext.blob_len, ctx_b, 1, key_id },
	};
	kms_decrypt_result dec[3];
	assert_int_equal(kms_batch_decrypt(C, back, 3, dec, &err), KMS_OK);
	assert_int_equal(dec[0].status, KMS_OK);
	assert_int_equal(dec[0].plaintext.len, strlen(texts[0]));
	assert_memory_equal(dec[0].plaintext.bytes, texts[0], strlen(texts[0]));
	assert_int_equal(dec[1].status, KMS_INVALID_CIPHERTEXT);
	assert_null(dec[1].plaintext.bytes);
	assert_int_equal(dec[2].status, KMS_OK);
	assert_memory_equal(dec[2].plaintext.bytes, texts[2], strlen(texts[2]));
	assert_string_equal(dec[2].plaintext.key_id, key_id);
	kms_decrypt_results_free(dec, 3);
	kms_encrypt_results_free(enc, 3);
	for (size_t i = 0; i < 3; i++)
		assert_null(enc[i].ciphertext.blob);
}

static void data_keys_item_by_item(void **state)
{
	kms_error err;
	kms_data_key_item items[] = {
		{ key_id, ctx_a, 1 },
		{ "alias/none-such", NULL, 0 },
		{ key_id, NULL, 0 },
	};
	kms_data_key_result res[3];
	assert_int_equal(kms_batch_generate_data_key(C, items, 3, res, &err), KMS_OK);
	assert_int_equal(res[1].status, KMS_NOT_FOUND);
	assert_null(res[1].data_key.plaintext);
	for (size_t i = 0; i < 3; i += 2) {
		assert_int_equal(res[i].status, KMS_OK);
		assert_int_equal(res[i].data_key.plaintext_len, KMS_DATA_KEY_LEN);
		/* The blob seals exactly that key under its item's context. */
		kms_plaintext pt;
		assert_int_equal(kms_decrypt(C, res[i].data_key.blob, res[i].data_key.blob_len,
		                             items[i].context, items[i].n_context, NULL, &pt, &err),
		                 KMS_OK);
		assert_int_equal(pt.len, KMS_DATA_KEY_LEN);
		assert_memory_equal(pt.bytes, res[i].data_key.plaintext, KMS_DATA_KEY_LEN);
		kms_plaintext_free(&pt);
	}
	assert_memory_not_equal(res[0].data_key.plaintext, res[2].data_key.plaintext,
	                        KMS_DATA_KEY_LEN);
	kms_data_key_results_free(res, 3);
}

static void sizes_and_arguments_refused_before_sending(void **state)
{
	kms_error err;
	kms_encrypt_item items[1] = { { key_id, (const uint8_t *)"x", 1, NULL, 0 } };
	kms_encrypt_result enc[1];
	assert_int_equal(kms_batch_encrypt(C, items, 0, enc, &err), KMS_INVALID_ARGUMENT);
	assert_int_equal(err.origin, KMS_ERROR_LOCAL);
	assert_int_equal(kms_batch_encrypt(C, items, KMS_BATCH_MAX + 1, enc, &err),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(kms_batch_encrypt(C, items, 1, NULL, &err), KMS_INVALID_ARGUMENT);
	kms_decrypt_result dec[1];
	assert_int_equal(kms_batch_decrypt(C, NULL, 1, dec, &err), KMS_INVALID_ARGUMENT);
	kms_data_key_result dk[1];
	assert_int_equal(kms_batch_generate_data_key(C, NULL, 1, dk, &err),
	                 KMS_INVALID_ARGUMENT);
	/* A bad item (no key) fails the whole batch locally; nothing to free. */
	kms_data_key_item no_key[] = { { key_id, NULL, 0 }, { NULL, NULL, 0 } };
	kms_data_key_result two[2];
	assert_int_equal(kms_batch_generate_data_key(C, no_key, 2, two, &err),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(err.origin, KMS_ERROR_LOCAL);
	assert_int_equal(two[0].status, KMS_OK);
	assert_null(two[0].data_key.plaintext);
	kms_decrypt_item empty[] = { { NULL, 0, NULL, 0, NULL } };
	assert_int_equal(kms_batch_decrypt(C, empty, 1, dec, &err), KMS_INVALID_ARGUMENT);
	assert_null(dec[0].plaintext.bytes);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(encrypt_then_decrypt_item_by_item),
		cmocka_unit_test(data_keys_item_by_item),
		cmocka_unit_test(sizes_and_arguments_refused_before_sending),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
