/* AES-256-GCM through the layer: round trips, every kind of tampering is
 * refused with nothing released, sizes are exact, threads do not interfere. */
#include "tests/support/hsm_test.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static hsm *h;
static hsm_object_id key_id;

static int group_setup(void **state)
{
	h = test_open();
	key_id = test_id("gcm-test-key");
	if (hsm_aes_create(h, &key_id, "gcm test key") != KMS_OK)
		fail_msg("hsm_aes_create: %s", kms_error_message());
	return 0;
}

static int group_teardown(void **state)
{
	hsm_close(h);
	return 0;
}

static void fill(uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

static bool all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

static void round_trip_sizes(void **state)
{
	static const size_t plaintext_sizes[] = { 0, 1, 15, 16, 17, 32, 100, 1000, 4096 };
	static const size_t aad_sizes[] = { 0, 1, 13, 200 };
	uint8_t plaintext[4096], aad[200], sealed[4096 + HSM_GCM_TAG_LEN], opened[4096];
	uint8_t iv[HSM_GCM_IV_LEN];

	for (size_t p = 0; p < sizeof plaintext_sizes / sizeof plaintext_sizes[0]; p++) {
		for (size_t a = 0; a < sizeof aad_sizes / sizeof aad_sizes[0]; a++) {
			size_t pt_len = plaintext_sizes[p], aad_len = aad_sizes[a];
			fill(plaintext, pt_len, (uint8_t)p);
			fill(aad, aad_len, (uint8_t)(a + 100));
			fill(iv, sizeof iv, (uint8_t)(p * 16 + a));
			memset(sealed, 0, sizeof sealed);
			assert_int_equal(hsm_aes_gcm_encrypt(h, &key_id, iv, aad_len ? aad : NULL,
			                                     aad_len, pt_len ? plaintext : NULL, pt_len,
			                                     sealed, pt_len + HSM_GCM_TAG_LEN),
			                 KMS_OK);
			/* The tag is never all zeros, and a non-empty ciphertext differs from its plaintext. */
			assert_false(all_zero(sealed + pt_len, HSM_GCM_TAG_LEN));
			if (pt_len >= 16)
				assert_memory_not_equal(sealed, plaintext, pt_len);
			memset(opened, 0xaa, sizeof opened);
			assert_int_equal(hsm_aes_gcm_decrypt(h, &key_id, iv, aad_len ? aad : NULL,
			                                     aad_len, sealed, pt_len + HSM_GCM_TAG_LEN,
			                                     pt_len ? opened : NULL, pt_len),
			                 KMS_OK);
			if (pt_len)
				assert_memory_equal(opened, plaintext, pt_len);
		}
	}
}

static void same_inputs_same_output(void **state)
{
	/* GCM is deterministic for a fixed key, IV and AAD: a check the key really is one key. */
	uint8_t iv[HSM_GCM_IV_LEN] = { 9 }, first[48], second[48];
	const uint8_t plaintext[32] = "thirty-two bytes of plaintext!!";
	assert_int_equal(hsm_aes_gcm_encrypt(h, &key_id, iv, NULL, 0, plaintext, 32, first, 48),
	                 KMS_OK);
	assert_int_equal(hsm_aes_gcm_encrypt(h, &key_id, iv, NULL, 0, plaintext, 32, second, 48),
	                 KMS_OK);
	assert_memory_equal(first, second, 48);
	iv[11] ^= 1;
	assert_int_equal(hsm_aes_gcm_encrypt(h, &key_id, iv, NULL, 0, plaintext, 32, second, 48),
	                 KMS_OK);
	assert_memory_not_equal(first, second, 48);
}

/* Decrypts and expects the refusal: INVALID_CIPHERTEXT, a clear message, zeroed output. */
static void expect_rejected(const hsm_object_id *id, const uint8_t *iv, const uint8_t *aad,
                            size_t aad_len, const uint8_t *sealed, size_t sealed_len)
{
	uint8_t opened[256];
	size_t out_len = sealed_len - HSM_GCM_TAG_LEN;
	assert_true(out_len <= sizeof opened);
	memset(opened, 0xaa, sizeof opened);
	kms_error_clear();
	assert_int_equal(hsm_aes_gcm_decrypt(h, id, iv, aad, aad_len, sealed, sealed_len, opened,
	                                     out_len),
	                 KMS_INVALID_CIPHERTEXT);
	test_assert_message("hsm: C_Decrypt", "not authentic", NULL);
	assert_true(all_zero(opened, out_len));
	/* Bytes beyond out_cap are not the layer's to touch. */
	assert_int_equal(opened[out_len], 0xaa);
}

static void tampering_is_rejected(void **state)
{
	const uint8_t plaintext[40] = "the secret the attacker wants to see...";
	const uint8_t aad[] = "purpose=test;tenant=7";
	uint8_t iv[HSM_GCM_IV_LEN] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
	uint8_t sealed[40 + HSM_GCM_TAG_LEN], changed[sizeof sealed];
	assert_int_equal(hsm_aes_gcm_encrypt(h, &key_id, iv, aad, sizeof aad, plaintext, 40,
	                                     sealed, sizeof sealed),
	                 KMS_OK);

	/* Wrong AAD: one byte off, missing, and longer. */
	uint8_t other_aad[sizeof aad];
	memcpy(other_aad, aad, sizeof aad);
	other_aad[0] ^= 0x20;
	expect_rejected(&key_id, iv, other_aad, sizeof other_aad, sealed, sizeof sealed);
	expect_rejected(&key_id, iv, NULL, 0, sealed, sizeof sealed);
	expect_rejected(&key_id, iv, aad, sizeof aad - 1, sealed, sizeof sealed);

	/* A flipped bit in the ciphertext, first and last byte. */
	memcpy(changed, sealed, sizeof sealed);
	changed[0] ^= 0x01;
	expect_rejected(&key_id, iv, aad, sizeof aad, changed, sizeof changed);
	memcpy(changed, sealed, sizeof sealed);
	changed[39] ^= 0x80;
	expect_rejected(&key_id, iv, aad, sizeof aad, changed, sizeof changed);

	/* A flipped bit in the tag. */
	memcpy(changed, sealed, sizeof sealed);
	changed[40 + 7] ^= 0x10;
	expect_rejected(&key_id, iv, aad, sizeof aad, changed, sizeof changed);

	/* Wrong IV. */
	uint8_t other_iv[HSM_GCM_IV_LEN];
	memcpy(other_iv, iv, sizeof iv);
	other_iv[11] ^= 0x01;
	expect_rejected(&key_id, other_iv, aad, sizeof aad, sealed, sizeof sealed);

	/* Truncated: a shorter "ciphertext" whose last 16 bytes are taken as the tag. */
	expect_rejected(&key_id, iv, aad, sizeof aad, sealed, sizeof sealed - 1);

	/* Another key. */
	hsm_object_id other_key = test_id("gcm-test-other-key");
	assert_int_equal(hsm_aes_create(h, &other_key, "other"), KMS_OK);
	expect_rejected(&other_key, iv, aad, sizeof aad, sealed, sizeof sealed);
	assert_int_equal(hsm_object_destroy(h, &other_key), KMS_OK);

	/* After all those failures the thread's session has no operation left open. */
	uint8_t opened[40];
	assert_int_equal(hsm_aes_gcm_decrypt(h, &key_id, iv, aad, sizeof aad, sealed, sizeof sealed,
	                                     opened, sizeof opened),
	                 KMS_OK);
	assert_memory_equal(opened, plaintext, 40);
}

static void wrong_sizes_are_refused(void **state)
{
	uint8_t iv[HSM_GCM_IV_LEN] = { 0 };
	uint8_t plaintext[32] = { 1 }, sealed[64], opened[64];

	/* Encrypt: out_cap must be exactly plaintext_len + 16. */
	assert_int_equal(hsm_aes_gcm_encrypt(h, &key_id, iv, NULL, 0, plaintext, 32, sealed, 47),
	                 KMS_INVALID_ARGUMENT);
	test_assert_message("exactly 48", NULL);
	assert_int_equal(hsm_aes_gcm_encrypt(h, &key_id, iv, NULL, 0, plaintext, 32, sealed, 49),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(hsm_aes_gcm_encrypt(h, &key_id, iv, NULL, 0, plaintext, 32, sealed, 32),
	                 KMS_INVALID_ARGUMENT);

	assert_int_equal(hsm_aes_gcm_encrypt(h, &key_id, iv, NULL, 0, plaintext, 32, sealed, 48),
	                 KMS_OK);
	/* Decrypt: out_cap must be exactly sealed_len - 16; the buffer is zeroed when refused. */
	memset(opened, 0xaa, sizeof opened);
	assert_int_equal(hsm_aes_gcm_decrypt(h, &key_id, iv, NULL, 0, sealed, 48, opened, 33),
	                 KMS_INVALID_ARGUMENT);
	test_assert_message("exactly 32", NULL);
	assert_true(all_zero(opened, 33));
	memset(opened, 0xaa, sizeof opened);
	assert_int_equal(hsm_aes_gcm_decrypt(h, &key_id, iv, NULL, 0, sealed, 48, opened, 31),
	                 KMS_INVALID_ARGUMENT);
	assert_true(all_zero(opened, 31));
	assert_int_equal(hsm_aes_gcm_decrypt(h, &key_id, iv, NULL, 0, sealed, 48, opened, 48),
	                 KMS_INVALID_ARGUMENT);
	/* Shorter than a tag is no ciphertext at all. */
	assert_int_equal(hsm_aes_gcm_decrypt(h, &key_id, iv, NULL, 0, sealed, 15, opened, 0),
	                 KMS_INVALID_CIPHERTEXT);

	/* Lengths without buffers, and ids out of range. */
	assert_int_equal(hsm_aes_gcm_encrypt(h, &key_id, iv, NULL, 3, plaintext, 32, sealed, 48),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(hsm_aes_gcm_encrypt(h, &key_id, iv, NULL, 0, NULL, 32, sealed, 48),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(hsm_aes_gcm_encrypt(h, &key_id, NULL, NULL, 0, plaintext, 32, sealed, 48),
	                 KMS_INVALID_ARGUMENT);
	hsm_object_id empty = { .len = 0 }, too_long = { .len = HSM_ID_MAX + 1 };
	assert_int_equal(hsm_aes_gcm_encrypt(h, &empty, iv, NULL, 0, plaintext, 32, sealed, 48),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(hsm_aes_gcm_encrypt(h, &too_long, iv, NULL, 0, plaintext, 32, sealed, 48),
	                 KMS_INVALID_ARGUMENT);
	test_assert_message("65 bytes", NULL);
}

static void unknown_key_is_not_found(void **state)
{
	hsm_object_id missing = test_id("no-such-key");
	uint8_t iv[HSM_GCM_IV_LEN] = { 0 }, plaintext[8] = { 0 }, sealed[24];
	memset(sealed, 0xaa, sizeof sealed);
	assert_int_equal(hsm_aes_gcm_encrypt(h, &missing, iv, NULL, 0, plaintext, 8, sealed, 24),
	                 KMS_NOT_FOUND);
	test_assert_message("\"no-such-key\"", NULL);
	assert_true(all_zero(sealed, sizeof sealed));
	uint8_t opened[8];
	assert_int_equal(hsm_aes_gcm_decrypt(h, &missing, iv, NULL, 0, sealed, 24, opened, 8),
	                 KMS_NOT_FOUND);

	/* A binary id is shown in hex. */
	hsm_object_id binary = { .bytes = { 0x00, 0xff, 0x10 }, .len = 3 };
	assert_int_equal(hsm_aes_gcm_encrypt(h, &binary, iv, NULL, 0, plaintext, 8, sealed, 24),
	                 KMS_NOT_FOUND);
	test_assert_message("00ff10", NULL);
}

#define THREAD_OPS 2000

typedef struct worker {
	uint8_t thread_tag;
	int failures;
	char first_error[KMS_ERROR_MAX];
} worker;

static void *worker_run(void *arg)
{
	worker *w = arg;
	for (uint32_t i = 0; i < THREAD_OPS; i++) {
		uint8_t iv[HSM_GCM_IV_LEN] = { w->thread_tag };
		memcpy(iv + 4, &i, sizeof i);
		uint8_t plaintext[32], sealed[48], opened[32];
		fill(plaintext, sizeof plaintext, (uint8_t)(i + w->thread_tag));
		kms_status st = hsm_aes_gcm_encrypt(h, &key_id, iv, &w->thread_tag, 1, plaintext, 32,
		                                    sealed, 48);
		if (st == KMS_OK)
			st = hsm_aes_gcm_decrypt(h, &key_id, iv, &w->thread_tag, 1, sealed, 48, opened,
			                         32);
		if (st == KMS_OK && memcmp(opened, plaintext, 32) != 0)
			st = KMS_INTERNAL;
		if (st != KMS_OK && w->failures++ == 0)
			snprintf(w->first_error, sizeof w->first_error, "%s", kms_error_message());
	}
	return NULL;
}

static void two_threads(void **state)
{
	worker workers[2] = { { .thread_tag = 1 }, { .thread_tag = 2 } };
	pthread_t threads[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, worker_run, &workers[i]), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(threads[i], NULL), 0);
	for (int i = 0; i < 2; i++) {
		if (workers[i].failures)
			fail_msg("thread %d: %d failures, first: %s", i, workers[i].failures,
			         workers[i].first_error);
	}
	/* The exited threads' sessions are gone; this thread's still works. */
	uint8_t iv[HSM_GCM_IV_LEN] = { 0 }, sealed[16];
	assert_int_equal(hsm_aes_gcm_encrypt(h, &key_id, iv, NULL, 0, NULL, 0, sealed, 16), KMS_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip_sizes),
		cmocka_unit_test(same_inputs_same_output),
		cmocka_unit_test(tampering_is_rejected),
		cmocka_unit_test(wrong_sizes_are_refused),
		cmocka_unit_test(unknown_key_is_not_found),
		cmocka_unit_test(two_threads),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
