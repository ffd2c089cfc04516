/*
 * test_store: the metadata store alone (no HSM): schema and migration,
 * the invariants the schema enforces by itself, per-thread connections,
 * and the file checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "kms/store/store.h"
#include "tests/support/store_test.h"


static char dir[STORE_TEST_DIR_SIZE];

static int setup(void **state)
{
	(void)state;
	store_test_dir_make("store", dir, NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	store_test_dir_remove(dir);
	return 0;
}

static store_key sample_key(const char *id)
{
	store_key k;
	memset(&k, 0, sizeof k);
	snprintf(k.id, sizeof k.id, "%s", id);
	k.spec = KEY_SPEC_AES_256;
	k.usage = KEY_USAGE_ENCRYPT_DECRYPT;
	k.state = KEY_STATE_ENABLED;
	k.lifecycle = KEY_LIFECYCLE_READY;
	k.primary_version = 1;
	k.created_at = 1;
	snprintf(k.region, sizeof k.region, "in-test-1");
	k.protection = KEY_PROTECTION_HSM_RESIDENT;
	return k;
}

static const char *id_n(int n)
{
	/* Per thread: the writers below call it concurrently. */
	static _Thread_local char ids[8][KMS_KEYID_TEXT_SIZE];
	static _Thread_local int next;
	char *p = ids[next++ % 8];
	snprintf(p, KMS_KEYID_TEXT_SIZE, "k-%032x", n);
	return p;
}

static void test_schema(void **state)
{
	store *st;
	bool created;
	assert_ok(store_open(dir, &st, &created));
	assert_true(created);
	store_close(st);
	assert_ok(store_open(dir, &st, &created));
	assert_false(created);
	store_close(st);

	/* The file: 0600, WAL, our schema version. */
	char path[512];
	snprintf(path, sizeof path, "%s/kms.db", dir);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(s, 0), STORE_SCHEMA_VERSION);
	sqlite3_finalize(s);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
	sqlite3_finalize(s);
	/* A newer schema than ours is refused, not downgraded. */
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_status(store_open(dir, &st, &created), KMS_FAILED_PRECONDITION);
	assert_non_null(strstr(kms_error_message(), "schema version 99"));
}

static void test_file_checks(void **state)
{
	store *st;
	bool created;
	char path[512];
	snprintf(path, sizeof path, "%s/kms.db", dir);
	assert_ok(store_open(dir, &st, &created));
	store_close(st);
	assert_int_equal(chmod(path, 0666), 0);
	assert_status(store_open(dir, &st, &created), KMS_INTERNAL);
	assert_non_null(strstr(kms_error_message(), "writable by group or others"));
	assert_int_equal(chmod(path, 0600), 0);

	char link_dir[300];
	snprintf(link_dir, sizeof link_dir, "%s/linked", dir);
	assert_int_equal(mkdir(link_dir, 0700), 0);
	char link_path[400];
	snprintf(link_path, sizeof link_path, "%s/kms.db", link_dir);
	assert_int_equal(symlink(path, link_path), 0);
	assert_status(store_open(link_dir, &st, &created), KMS_INTERNAL);
	assert_status(store_open("", &st, &created), KMS_INVALID_ARGUMENT);
}

static void test_one_opener(void **state)
{
	store *st, *second;
	bool created;
	assert_ok(store_open(dir, &st, &created));
	assert_status(store_open(dir, &second, &created), KMS_FAILED_PRECONDITION);
	assert_non_null(strstr(kms_error_message(), "in use"));
	store_close(st);
	assert_ok(store_open(dir, &second, &created));
	store_close(second);
}

static void test_invariants(void **state)
{
	store *st;
	bool created;
	assert_ok(store_open(dir, &st, &created));
	store_key k = sample_key(id_n(1));
	assert_ok(store_key_insert(st, &k, ""));
	assert_status(store_key_insert(st, &k, ""), KMS_ALREADY_EXISTS);

	store_version v = { .version = 1, .created_at = 1, .state = VERSION_STATE_ACTIVE };
	assert_ok(store_version_insert(st, k.id, &v));
	assert_status(store_version_insert(st, k.id, &v), KMS_ALREADY_EXISTS);
	assert_status(store_version_insert(st, id_n(2), &v), KMS_NOT_FOUND); /* foreign key */

	/* Reservations only grow. */
	assert_ok(store_version_reserve(st, k.id, 1, 100));
	assert_ok(store_version_reserve(st, k.id, 1, 100));
	assert_status(store_version_reserve(st, k.id, 1, 99), KMS_INTERNAL);
	store_version got;
	assert_ok(store_version_get(st, k.id, 1, &got));
	assert_int_equal(got.encryptions_reserved, 100);
	assert_status(store_version_reserve(st, k.id, 2, 1), KMS_NOT_FOUND);

	/* Nothing comes back from destroyed. */
	assert_ok(store_version_set_state(st, k.id, 1, VERSION_STATE_DESTROYED));
	assert_status(store_version_set_state(st, k.id, 1, VERSION_STATE_ACTIVE), KMS_INTERNAL);
	k.state = KEY_STATE_DESTROYED;
	k.lifecycle = KEY_LIFECYCLE_DESTROYED;
	assert_ok(store_key_update(st, &k));
	k.state = KEY_STATE_ENABLED;
	k.lifecycle = KEY_LIFECYCLE_READY;
	assert_status(store_key_update(st, &k), KMS_INTERNAL);

	/* Aliases: unique names, existing keys, gone with their key. */
	store_key k3 = sample_key(id_n(3));
	k3.lifecycle = KEY_LIFECYCLE_CREATING;
	assert_ok(store_key_insert(st, &k3, ""));
	store_alias a = { .name = "alias/x", .created_at = 5 };
	snprintf(a.key_id, sizeof a.key_id, "%s", k3.id);
	assert_ok(store_alias_insert(st, &a));
	assert_status(store_alias_insert(st, &a), KMS_ALREADY_EXISTS);
	assert_status(store_alias_retarget(st, "alias/x", id_n(4)), KMS_NOT_FOUND);
	assert_ok(store_tag_put(st, k3.id, "t", "v"));
	assert_ok(store_tag_put(st, k3.id, "t", "w"));
	size_t n;
	assert_ok(store_tag_count(st, k3.id, &n));
	assert_int_equal(n, 1);
	assert_ok(store_key_delete(st, k3.id, NULL));
	assert_status(store_alias_get(st, "alias/x", &a), KMS_NOT_FOUND);
	assert_ok(store_tag_count(st, k3.id, &n));
	assert_int_equal(n, 0);

	/* The schema refuses what the types cannot say. */
	store_key bad = sample_key("k-short");
	assert_status(store_key_insert(st, &bad, ""), KMS_INTERNAL);
	store_key big_policy = sample_key(id_n(5));
	char *policy = malloc(KMS_POLICY_MAX + 2);
	memset(policy, ' ', KMS_POLICY_MAX + 1);
	policy[KMS_POLICY_MAX + 1] = '\0';
	assert_status(store_key_insert(st, &big_policy, policy), KMS_INTERNAL);
	free(policy);

	/* A transaction rolled back leaves nothing. */
	assert_ok(store_begin(st));
	store_key k6 = sample_key(id_n(6));
	assert_ok(store_key_insert(st, &k6, ""));
	store_rollback(st);
	store_key probe;
	assert_status(store_key_get(st, k6.id, &probe), KMS_NOT_FOUND);
	store_close(st);
}

#define WRITERS 4
#define PER_WRITER 25

static store *shared;

static void *writer(void *arg)
{
	int base = (int)(intptr_t)arg * 1000;
	for (int i = 0; i < PER_WRITER; i++) {
		store_key k = sample_key(id_n(base + i));
		store_version v = { .version = 1, .created_at = 1, .state = VERSION_STATE_ACTIVE };
		if (store_begin(shared) != KMS_OK || store_key_insert(shared, &k, "") != KMS_OK ||
		    store_version_insert(shared, k.id, &v) != KMS_OK ||
		    store_version_reserve(shared, k.id, 1, 7) != KMS_OK ||
		    store_commit(shared) != KMS_OK) {
			fprintf(stderr, "writer: %s\n", kms_error_message());
			store_rollback(shared);
			return (void *)1;
		}
	}
	return NULL;
}

static void test_threads(void **state)
{
	bool created;
	pthread_t threads[WRITERS];
	assert_ok(store_open(dir, &shared, &created));
	for (intptr_t i = 0; i < WRITERS; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, writer, (void *)(i + 1)), 0);
	for (int i = 0; i < WRITERS; i++) {
		void *result;
		assert_int_equal(pthread_join(threads[i], &result), 0);
		assert_null(result);
	}
	/* Threads have exited: their connections went with them. */
	store_key keys[WRITERS * PER_WRITER + 1];
	size_t n;
	assert_ok(store_key_list(shared, "", WRITERS * PER_WRITER + 1, keys, &n));
	assert_int_equal(n, WRITERS * PER_WRITER);
	for (size_t i = 1; i < n; i++)
		assert_true(strcmp(keys[i - 1].id, keys[i].id) < 0);
	for (size_t i = 0; i < n; i++) {
		store_version *versions;
		size_t n_versions;
		assert_ok(store_versions_list(shared, keys[i].id, &versions, &n_versions));
		assert_int_equal(n_versions, 1);
		assert_int_equal(versions[0].encryptions_reserved, 7);
		free(versions);
	}
	store_close(shared);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_schema, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_opener, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invariants, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
