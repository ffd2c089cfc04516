/* Random bytes from the HSM: the sizes the service uses, and they differ. */
#include "tests/support/hsm_test.h"

#include <string.h>

static void sizes(void **state)
{
	hsm *h = test_open();
	static const size_t lengths[] = { 1, 12, 32, 1024, 4096 };
	uint8_t buf[4096 + 1];

	for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
		memset(buf, 0, sizeof buf);
		buf[lengths[i]] = 0x5a; /* a canary just past the end */
		assert_int_equal(hsm_random(h, buf, lengths[i]), KMS_OK);
		assert_int_equal(buf[lengths[i]], 0x5a);
	}
	/* 1024 bytes that stayed all zero would be a 2^-8192 event. */
	assert_int_equal(hsm_random(h, buf, 1024), KMS_OK);
	bool all_zero = true;
	for (size_t i = 0; i < 1024; i++)
		all_zero = all_zero && buf[i] == 0;
	assert_false(all_zero);

	assert_int_equal(hsm_random(h, buf, 0), KMS_OK);
	assert_int_equal(hsm_random(h, NULL, 0), KMS_OK);
	assert_int_equal(hsm_random(h, NULL, 32), KMS_INVALID_ARGUMENT);
	assert_int_equal(hsm_random(NULL, buf, 32), KMS_INVALID_ARGUMENT);
	hsm_close(h);
}

static void draws_differ(void **state)
{
	hsm *h = test_open();
	uint8_t first[32], second[32];
	assert_int_equal(hsm_random(h, first, sizeof first), KMS_OK);
	assert_int_equal(hsm_random(h, second, sizeof second), KMS_OK);
	assert_memory_not_equal(first, second, sizeof first);
	/* Across a reopen too (no generator state replayed). */
	hsm_close(h);
	h = test_open();
	assert_int_equal(hsm_random(h, second, sizeof second), KMS_OK);
	assert_memory_not_equal(first, second, sizeof first);
	hsm_close(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sizes),
		cmocka_unit_test(draws_differ),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
