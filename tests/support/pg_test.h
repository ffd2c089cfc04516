/*
 * pg_test.h: what the tests under tests/support/with-postgres share.
 */
#ifndef KMS_TEST_PG_TEST_H
#define KMS_TEST_PG_TEST_H

#include <stdbool.h>
#include <stddef.h>

/* The throw-away cluster's password: the first line of
 * $KMS_TEST_PG_PASSWORD_FILE, into out (cap bytes). False, saying why on
 * stderr, when the variable is unset or the file cannot be read. */
bool pg_test_password(char *out, size_t cap);

#endif
