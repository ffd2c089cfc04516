/*
 * store_test.h: what the store tests (tests/kms/store/) share: status
 * assertions that print the store's one-line message, and a private
 * temporary data directory per test with kms.db in it.
 */
#ifndef KMS_TESTS_STORE_TEST_H
#define KMS_TESTS_STORE_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/error.h"
#include "kms/store/store.h"

#define assert_status(st, want)                                                            \
	do {                                                                               \
		kms_status st_ = (st);                                                     \
		if (st_ != (want))                                                         \
			fail_msg("%s: got %s, want %s: %s", #st, kms_status_name(st_),     \
			         kms_status_name(want), kms_error_message());              \
	} while (0)
#define assert_ok(st) assert_status((st), KMS_OK)
#define assert_message_has(needle) assert_non_null(strstr(kms_error_message(), (needle)))

#define STORE_TEST_DIR_SIZE 256
#define STORE_TEST_DB_SIZE 300

/* Makes /tmp/kms-test-<name>-XXXXXX (mode 0700) into dir, and the path of
 * its kms.db into db_path (may be NULL). */
void store_test_dir_make(const char *name, char dir[static STORE_TEST_DIR_SIZE],
                         char *db_path);

/* Removes dir and everything in it (no shell). */
void store_test_dir_remove(const char *dir);

/* store_open on dir; asserts success. */
store *store_test_open(const char *dir);

#endif
