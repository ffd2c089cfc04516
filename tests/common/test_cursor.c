/* The bounded reader refuses every read past the end and stays poisoned. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/cursor.h"
#include "common/error.h"

static void reads_within_bounds(void **state)
{
	const uint8_t bytes[] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07 };
	kms_cursor c = kms_cursor_init(bytes, sizeof bytes);
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	assert_true(kms_cursor_u8(&c, &u8));
	assert_int_equal(u8, 0x01);
	assert_true(kms_cursor_u16be(&c, &u16));
	assert_int_equal(u16, 0x0203);
	assert_true(kms_cursor_u32be(&c, &u32));
	assert_int_equal(u32, 0x04050607u);
	assert_true(kms_cursor_done(&c));
}

static void short_read_poisons(void **state)
{
	const uint8_t bytes[] = { 0xaa, 0xbb, 0xcc };
	kms_cursor c = kms_cursor_init(bytes, sizeof bytes);
	uint32_t u32 = 99;
	const uint8_t *p = bytes;
	assert_false(kms_cursor_u32be(&c, &u32));
	assert_int_equal(u32, 0);
	/* Even a read that would fit now fails: the cursor stays poisoned. */
	assert_false(kms_cursor_take(&c, 1, &p));
	assert_null(p);
	assert_false(kms_cursor_done(&c));
}

static void trailing_bytes_are_not_done(void **state)
{
	const uint8_t bytes[] = { 1, 2 };
	kms_cursor c = kms_cursor_init(bytes, sizeof bytes);
	uint8_t u8;
	assert_true(kms_cursor_u8(&c, &u8));
	assert_false(kms_cursor_done(&c));
}

static void writer_refuses_overflow(void **state)
{
	uint8_t out[5] = { 0 };
	kms_writer w = kms_writer_init(out, sizeof out);
	assert_true(kms_writer_u32be(&w, 0x01020304u));
	assert_false(kms_writer_u16be(&w, 0xffff));
	assert_false(kms_writer_u8(&w, 0xee)); /* poisoned */
	assert_int_equal(out[4], 0);
}

static void status_names_cover_every_code(void **state)
{
	for (int s = 0; s <= KMS_STATUS_MAX; s++)
		assert_string_not_equal(kms_status_name((kms_status)s), "UNKNOWN_STATUS");
	assert_string_equal(kms_status_name((kms_status)99), "UNKNOWN_STATUS");
	assert_string_equal(kms_status_name(KMS_INVALID_CIPHERTEXT), "INVALID_CIPHERTEXT");
}

/* The position is kept beside the message, for kmsd's log: the message
 * itself goes to clients and audit entries. */
static void error_position_beside_message(void **state)
{
	kms_status st = KMS_FAIL(KMS_NOT_FOUND, "key %s not found", "k-00");
	assert_int_equal(st, KMS_NOT_FOUND);
	assert_string_equal(kms_error_message(), "key k-00 not found");
	assert_non_null(strstr(kms_error_where(), "test_cursor.c:"));

	kms_error_saved saved;
	kms_error_save(&saved);
	(void)KMS_FAIL(KMS_INTERNAL, "cleanup failed too");
	assert_int_equal(kms_error_restore(KMS_NOT_FOUND, &saved), KMS_NOT_FOUND);
	assert_string_equal(kms_error_message(), "key k-00 not found");
	assert_string_equal(kms_error_where(), saved.where);

	kms_error_clear();
	assert_string_equal(kms_error_message(), "");
	assert_string_equal(kms_error_where(), "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reads_within_bounds),
		cmocka_unit_test(short_read_poisons),
		cmocka_unit_test(trailing_bytes_are_not_done),
		cmocka_unit_test(writer_refuses_overflow),
		cmocka_unit_test(status_names_cover_every_code),
		cmocka_unit_test(error_position_beside_message),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
