/* store_test.c: see store_test.h. */
#define _XOPEN_SOURCE 700
#include "tests/support/store_test.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void store_test_dir_make(const char *name, char dir[static STORE_TEST_DIR_SIZE], char *db_path)
{
	int n = snprintf(dir, STORE_TEST_DIR_SIZE, "/tmp/kms-test-%s-XXXXXX", name);
	assert_true(n > 0 && n < STORE_TEST_DIR_SIZE);
	assert_non_null(mkdtemp(dir));
	if (db_path) {
		n = snprintf(db_path, STORE_TEST_DB_SIZE, "%s/kms.db", dir);
		assert_true(n > 0 && n < STORE_TEST_DB_SIZE);
	}
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

void store_test_dir_remove(const char *dir)
{
	assert_int_equal(nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS), 0);
}

store *store_test_open(const char *dir)
{
	store *st = NULL;
	bool created;
	assert_ok(store_open(dir, &st, &created));
	assert_non_null(st);
	return st;
}
