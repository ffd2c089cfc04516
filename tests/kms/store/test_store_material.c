/*
 * test_store_material: the key hierarchy's rows in the store
 * (docs/key-hierarchy.md): KEKs and their states, keys' protection,
 * wrapped material written, read, re-wrapped (a compare-and-set), paged per
 * KEK and cleared on destruction; the triggers that refuse what a bug
 * above might try; the migration from schema 2.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "kms/store/store.h"
#include "tests/support/store_test.h"
#include "kms/store/store_internal.h"


static char dir[STORE_TEST_DIR_SIZE];
static char db_path[STORE_TEST_DB_SIZE];

static int setup(void **state)
{
	(void)state;
	store_test_dir_make("material", dir, db_path);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	store_test_dir_remove(dir);
	return 0;
}

static store *open_store(void)
{
	return store_test_open(dir);
}

static const char *id_n(int n)
{
	static char ids[8][KMS_KEYID_TEXT_SIZE];
	static int next;
	char *p = ids[next++ % 8];
	snprintf(p, KMS_KEYID_TEXT_SIZE, "k-%032x", n);
	return p;
}

static store_key sample_key(const char *id, key_protection protection)
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
	k.protection = protection;
	return k;
}

/* 40 bytes, as RFC 5649 wraps a 32-byte key; the first byte says which. */
static const uint8_t *blob(uint8_t tag)
{
	static uint8_t b[4][40];
	static int next;
	uint8_t *p = b[next++ % 4];
	memset(p, 0xa5, 40);
	p[0] = tag;
	return p;
}

static store_version version(uint32_t n, version_state state)
{
	store_version v = { .version = n, .created_at = 2, .state = state };
	return v;
}

/* A current KEK (number 1), and a wrapped key id_n(1) with v1 active under it. */
static store *hierarchy(void)
{
	store *st = open_store();
	store_kek kek;
	assert_ok(store_kek_create(st, 10, &kek));
	assert_ok(store_kek_make_current(st, kek.id));
	store_key k = sample_key(id_n(1), KEY_PROTECTION_WRAPPED);
	assert_ok(store_key_insert(st, &k, ""));
	store_version v1 = version(1, VERSION_STATE_CREATING);
	assert_ok(store_version_insert_wrapped(st, k.id, &v1, kek.id, blob(1), 40));
	assert_ok(store_version_set_state(st, k.id, 1, VERSION_STATE_ACTIVE));
	return st;
}

/* Runs sql on a second connection; returns SQLite's code (extended). */
static int raw(const char *sql)
{
	sqlite3 *db;
	assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
	sqlite3_extended_result_codes(db, 1);
	sqlite3_exec(db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_close(db);
	return rc;
}

static void test_keks(void **state)
{
	(void)state;
	store *st = open_store();
	store_kek kek, got;
	assert_status(store_kek_get_current(st, &got), KMS_NOT_FOUND);
	assert_ok(store_kek_create(st, 100, &kek));
	assert_int_equal(kek.id, 1);
	assert_string_equal(kek.hsm_id, "kms-kek-00000001");
	assert_int_equal(kek.state, KEK_STATE_CREATING);
	assert_int_equal(kek.created_at, 100);
	assert_status(store_kek_get_current(st, &got), KMS_NOT_FOUND);
	assert_ok(store_kek_make_current(st, 1));
	assert_ok(store_kek_get_current(st, &got));
	assert_int_equal(got.id, 1);
	assert_int_equal(got.state, KEK_STATE_CURRENT);
	assert_status(store_kek_make_current(st, 1), KMS_FAILED_PRECONDITION);
	assert_status(store_kek_make_current(st, 9), KMS_NOT_FOUND);

	/* Rotation: the new one current, the old one draining, in one step. */
	assert_ok(store_kek_create(st, 200, &kek));
	assert_int_equal(kek.id, 2);
	assert_string_equal(kek.hsm_id, "kms-kek-00000002");
	assert_ok(store_kek_make_current(st, 2));
	assert_ok(store_kek_get(st, 1, &got));
	assert_int_equal(got.state, KEK_STATE_DRAINING);
	assert_ok(store_kek_get_current(st, &got));
	assert_int_equal(got.id, 2);
	assert_status(store_kek_get(st, 3, &got), KMS_NOT_FOUND);

	/* A draining KEK cannot come back; a retired one stays retired. */
	assert_status(store_kek_set_state(st, 1, KEK_STATE_CURRENT, 0), KMS_INVALID_ARGUMENT);
	assert_ok(store_kek_set_state(st, 1, KEK_STATE_RETIRED, 300));
	assert_ok(store_kek_get(st, 1, &got));
	assert_int_equal(got.state, KEK_STATE_RETIRED);
	assert_int_equal(got.retired_at, 300);
	assert_status(store_kek_set_state(st, 1, KEK_STATE_DRAINING, 0), KMS_FAILED_PRECONDITION);
	assert_status(store_kek_set_state(st, 1, KEK_STATE_RETIRED, 301), KMS_FAILED_PRECONDITION);
	assert_message_has("retired KEK stays retired");
	assert_status(store_kek_set_state(st, 7, KEK_STATE_RETIRED, 0), KMS_NOT_FOUND);

	/* An abandoned creation retires; its number is not reused. */
	assert_ok(store_kek_create(st, 400, &kek));
	assert_int_equal(kek.id, 3);
	assert_status(store_kek_set_state(st, 3, KEK_STATE_DRAINING, 0), KMS_FAILED_PRECONDITION);
	assert_ok(store_kek_set_state(st, 3, KEK_STATE_RETIRED, 401));
	assert_ok(store_kek_create(st, 500, &kek));
	assert_int_equal(kek.id, 4);

	store_kek list[8];
	size_t n;
	assert_ok(store_kek_list(st, 0, 8, list, &n));
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(list[i].id, i + 1);
	assert_ok(store_kek_list(st, 2, 1, list, &n));
	assert_int_equal(n, 1);
	assert_int_equal(list[0].id, 3);
	store_close(st);

	/* What the schema refuses whoever writes. */
	assert_int_equal(raw("DELETE FROM keks WHERE id = 1"), SQLITE_CONSTRAINT_TRIGGER);
	assert_int_equal(raw("UPDATE keks SET state = 'current' WHERE id = 4"),
	                 SQLITE_CONSTRAINT_UNIQUE);
	assert_int_equal(raw("UPDATE keks SET hsm_id = 'other' WHERE id = 4"),
	                 SQLITE_CONSTRAINT_TRIGGER);
	assert_int_equal(raw("UPDATE keks SET state = 'creating' WHERE id = 2"),
	                 SQLITE_CONSTRAINT_TRIGGER);
	assert_int_equal(raw("INSERT INTO keks (id, hsm_id, state, created_at) "
	                     "VALUES (9, 'has space', 'creating', 1)"),
	                 SQLITE_CONSTRAINT_CHECK);
	assert_int_equal(raw("INSERT INTO keks (id, hsm_id, state, created_at) "
	                     "VALUES (9, 'kms-kek-00000002', 'creating', 1)"),
	                 SQLITE_CONSTRAINT_UNIQUE);
}

static void test_protection(void **state)
{
	(void)state;
	store *st = open_store();
	store_key r = sample_key(id_n(1), KEY_PROTECTION_HSM_RESIDENT);
	store_key w = sample_key(id_n(2), KEY_PROTECTION_WRAPPED);
	store_key none = sample_key(id_n(3), 0);
	assert_ok(store_key_insert(st, &r, ""));
	assert_ok(store_key_insert(st, &w, ""));
	assert_status(store_key_insert(st, &none, ""), KMS_INVALID_ARGUMENT);
	store_key got;
	assert_ok(store_key_get(st, r.id, &got));
	assert_int_equal(got.protection, KEY_PROTECTION_HSM_RESIDENT);
	assert_ok(store_key_get(st, w.id, &got));
	assert_int_equal(got.protection, KEY_PROTECTION_WRAPPED);
	assert_string_equal(key_protection_name(KEY_PROTECTION_WRAPPED), "wrapped");

	/* Counted: live hsm-resident keys only. */
	store_key r2 = sample_key(id_n(4), KEY_PROTECTION_HSM_RESIDENT);
	r2.lifecycle = KEY_LIFECYCLE_DESTROYED;
	r2.state = KEY_STATE_DESTROYED;
	assert_ok(store_key_insert(st, &r2, ""));
	uint64_t count;
	assert_ok(store_keys_resident_count(st, &count));
	assert_int_equal(count, 1);
	store_close(st);
	assert_int_equal(raw("UPDATE keys SET protection = 'wrapped'"), SQLITE_CONSTRAINT_TRIGGER);
	assert_int_equal(raw("INSERT INTO keys (id, spec, usage, state, primary_version, "
	                     "created_at, region, lifecycle, protection) VALUES "
	                     "('k-00000000000000000000000000000009', 1, 1, 1, 1, 1, 'in-test-1', "
	                     "'ready', 'other')"),
	                 SQLITE_CONSTRAINT_CHECK);
}

static void test_material(void **state)
{
	(void)state;
	store *st = hierarchy();
	const char *key = id_n(1);
	store_material m;
	assert_ok(store_version_material_get(st, key, 1, &m));
	assert_int_equal(m.kek_id, 1);
	assert_string_equal(m.kek_hsm_id, "kms-kek-00000001");
	assert_int_equal(m.kek_state, KEK_STATE_CURRENT);
	assert_int_equal(m.wrapped_len, 40);
	assert_memory_equal(m.wrapped, blob(1), 40);
	assert_status(store_version_material_get(st, key, 2, &m), KMS_NOT_FOUND);

	/* Bounds, and an active wrapped version needs its material. */
	store_version v2 = version(2, VERSION_STATE_CREATING);
	assert_status(store_version_insert_wrapped(st, key, &v2, 1, blob(2), 15),
	              KMS_INVALID_ARGUMENT);
	assert_status(store_version_insert_wrapped(st, key, &v2, 1, NULL, 40), KMS_INVALID_ARGUMENT);
	assert_status(store_version_insert_wrapped(st, key, &v2, 0, blob(2), 40),
	              KMS_INVALID_ARGUMENT);
	assert_status(store_version_insert_wrapped(st, key, &v2, 8, blob(2), 40), KMS_NOT_FOUND);
	store_version bare = version(2, VERSION_STATE_ACTIVE);
	assert_status(store_version_insert(st, key, &bare), KMS_FAILED_PRECONDITION);
	assert_message_has("has material");
	/* A creating row may be written bare, but not made active so. */
	assert_ok(store_version_insert(st, key, &v2));
	assert_status(store_version_set_state(st, key, 2, VERSION_STATE_ACTIVE), KMS_INTERNAL);
	assert_ok(store_version_delete(st, key, 2, NULL));
	assert_ok(store_version_insert_wrapped(st, key, &v2, 1, blob(2), 40));

	/* An hsm-resident key's versions keep no material. */
	store_key r = sample_key(id_n(5), KEY_PROTECTION_HSM_RESIDENT);
	assert_ok(store_key_insert(st, &r, ""));
	store_version rv = version(1, VERSION_STATE_CREATING);
	assert_status(store_version_insert_wrapped(st, r.id, &rv, 1, blob(3), 40),
	              KMS_FAILED_PRECONDITION);
	assert_message_has("only a wrapped key");
	assert_ok(store_version_insert(st, r.id, &rv));
	assert_ok(store_version_set_state(st, r.id, 1, VERSION_STATE_ACTIVE));
	assert_status(store_version_material_get(st, r.id, 1, &m), KMS_FAILED_PRECONDITION);

	/* Destruction clears the material in the same statement. */
	assert_ok(store_version_set_state(st, key, 2, VERSION_STATE_DESTROYED));
	assert_status(store_version_material_get(st, key, 2, &m), KMS_FAILED_PRECONDITION);
	uint64_t count;
	assert_ok(store_versions_under_kek_count(st, 1, &count));
	assert_int_equal(count, 1);
	store_close(st);
}

static void test_rewrap(void **state)
{
	(void)state;
	store *st = hierarchy();
	const char *key = id_n(1);
	store_kek k2;
	assert_ok(store_kek_create(st, 20, &k2));
	/* Only to the current KEK. */
	assert_status(store_version_rewrap(st, key, 1, 1, 2, blob(9), 40), KMS_FAILED_PRECONDITION);
	assert_ok(store_kek_make_current(st, 2));
	assert_status(store_version_rewrap(st, key, 1, 1, 1, blob(9), 40), KMS_INVALID_ARGUMENT);
	assert_status(store_version_rewrap(st, key, 1, 1, 2, blob(9), 8), KMS_INVALID_ARGUMENT);
	/* A draining KEK cannot retire while it wraps a version. */
	assert_status(store_kek_set_state(st, 1, KEK_STATE_RETIRED, 30), KMS_FAILED_PRECONDITION);
	assert_message_has("still wraps");

	assert_ok(store_version_rewrap(st, key, 1, 1, 2, blob(9), 40));
	store_material m;
	assert_ok(store_version_material_get(st, key, 1, &m));
	assert_int_equal(m.kek_id, 2);
	assert_memory_equal(m.wrapped, blob(9), 40);
	/* The second job, which read the row before the first wrote it, loses. */
	assert_status(store_version_rewrap(st, key, 1, 1, 2, blob(7), 40), KMS_FAILED_PRECONDITION);
	assert_message_has("lost");
	assert_ok(store_version_material_get(st, key, 1, &m));
	assert_memory_equal(m.wrapped, blob(9), 40);

	uint64_t under1, under2;
	assert_ok(store_versions_under_kek_count(st, 1, &under1));
	assert_ok(store_versions_under_kek_count(st, 2, &under2));
	assert_int_equal(under1, 0);
	assert_int_equal(under2, 1);
	assert_ok(store_kek_set_state(st, 1, KEK_STATE_RETIRED, 40));
	/* Nothing is wrapped under a retired KEK. */
	store_version v2 = version(2, VERSION_STATE_CREATING);
	assert_status(store_version_insert_wrapped(st, key, &v2, 1, blob(2), 40),
	              KMS_FAILED_PRECONDITION);

	/* A destroy that wins the race: the re-wrap of it loses cleanly. */
	store_kek k3;
	assert_ok(store_kek_create(st, 50, &k3));
	assert_ok(store_kek_make_current(st, 3));
	assert_ok(store_version_set_state(st, key, 1, VERSION_STATE_DESTROYED));
	assert_status(store_version_rewrap(st, key, 1, 2, 3, blob(4), 40), KMS_FAILED_PRECONDITION);
	assert_status(store_version_material_get(st, key, 1, &m), KMS_FAILED_PRECONDITION);
	assert_ok(store_kek_set_state(st, 2, KEK_STATE_RETIRED, 60));
	store_close(st);
}

static void test_triggers(void **state)
{
	(void)state;
	store *st = hierarchy();
	store_kek k2;
	assert_ok(store_kek_create(st, 20, &k2));
	assert_ok(store_kek_make_current(st, 2));
	store_close(st);
	const char *where = " WHERE key_id = 'k-00000000000000000000000000000001' AND version = 1";
	char sql[512];
#define RAW(fmt) (snprintf(sql, sizeof sql, fmt "%s", where), raw(sql))
	/* New bytes under the same KEK, or the same bytes under another. */
	assert_int_equal(RAW("UPDATE key_versions SET wrapped = zeroblob(40)"),
	                 SQLITE_CONSTRAINT_TRIGGER);
	assert_int_equal(RAW("UPDATE key_versions SET kek_id = 2"), SQLITE_CONSTRAINT_TRIGGER);
	/* One without the other. */
	assert_int_equal(RAW("UPDATE key_versions SET wrapped = NULL"), SQLITE_CONSTRAINT_TRIGGER);
	assert_int_equal(RAW("UPDATE key_versions SET kek_id = NULL"), SQLITE_CONSTRAINT_TRIGGER);
	/* Destroyed with material; out of bounds; under an unknown KEK. */
	assert_int_equal(RAW("UPDATE key_versions SET state = 'destroyed'"),
	                 SQLITE_CONSTRAINT_TRIGGER);
	assert_int_equal(RAW("UPDATE key_versions SET kek_id = 2, wrapped = zeroblob(15)"),
	                 SQLITE_CONSTRAINT_CHECK);
	assert_int_equal(RAW("UPDATE key_versions SET kek_id = 9, wrapped = zeroblob(40)"),
	                 SQLITE_CONSTRAINT_FOREIGNKEY);
	/* A re-wrap (both, to another KEK) and a destroy (both to NULL) pass. */
	assert_int_equal(RAW("UPDATE key_versions SET kek_id = 2, wrapped = zeroblob(40)"),
	                 SQLITE_OK);
	assert_int_equal(RAW("UPDATE key_versions SET state = 'destroyed', kek_id = NULL, "
	                     "wrapped = NULL"),
	                 SQLITE_OK);
	/* Material never comes back to a version past its creation. */
	assert_int_equal(RAW("UPDATE key_versions SET kek_id = 2, wrapped = zeroblob(40)"),
	                 SQLITE_CONSTRAINT_TRIGGER);
	assert_int_equal(RAW("UPDATE key_versions SET state = 'active'"), SQLITE_CONSTRAINT_TRIGGER);
#undef RAW
	assert_int_equal(raw("INSERT INTO key_versions (key_id, version, created_at, state, kek_id, "
	                     "wrapped) VALUES ('k-00000000000000000000000000000001', 5, 1, "
	                     "'destroyed', 2, zeroblob(40))"),
	                 SQLITE_CONSTRAINT_TRIGGER);
}

static void test_pages(void **state)
{
	(void)state;
	enum { KEYS = 1200, VERSIONS = 2 };
	store *st = open_store();
	store_kek kek;
	assert_ok(store_kek_create(st, 1, &kek));
	assert_ok(store_kek_make_current(st, 1));
	assert_ok(store_begin(st));
	for (int i = 0; i < KEYS; i++) {
		store_key k = sample_key(id_n(1000 + i), KEY_PROTECTION_WRAPPED);
		assert_ok(store_key_insert(st, &k, ""));
		for (uint32_t v = 1; v <= VERSIONS; v++) {
			store_version sv = version(v, VERSION_STATE_ACTIVE);
			assert_ok(store_version_insert_wrapped(st, k.id, &sv, 1, blob((uint8_t)v), 40));
		}
	}
	assert_ok(store_commit(st));
	uint64_t count;
	assert_ok(store_versions_under_kek_count(st, 1, &count));
	assert_int_equal(count, KEYS * VERSIONS);

	static store_version_ref page[STORE_PAGE_MAX];
	size_t n, total = 0, pages = 0;
	char after[KMS_KEYID_TEXT_SIZE] = "";
	uint32_t after_v = 0;
	assert_status(store_versions_under_kek(st, 1, "", 0, STORE_PAGE_MAX + 1, page, &n),
	              KMS_INVALID_ARGUMENT);
	do {
		assert_ok(store_versions_under_kek(st, 1, after, after_v, 1000, page, &n));
		for (size_t i = 0; i < n; i++) {
			int c = strcmp(page[i].key_id, after);
			assert_true(c > 0 || (c == 0 && page[i].version > after_v));
			memcpy(after, page[i].key_id, sizeof after);
			after_v = page[i].version;
		}
		total += n;
		pages++;
	} while (n == 1000 && pages < 10);
	assert_int_equal(total, KEYS * VERSIONS);
	assert_int_equal(pages, 3);
	assert_ok(store_versions_under_kek(st, 2, "", 0, 10, page, &n));
	assert_int_equal(n, 0);
	store_close(st);
}

static void test_reconcile_queries(void **state)
{
	(void)state;
	store *st = open_store();
	/* Two hsm-resident keys (one with a creating v2), one destroyed, one wrapped. */
	store_key a = sample_key(id_n(1), KEY_PROTECTION_HSM_RESIDENT);
	store_key b = sample_key(id_n(2), KEY_PROTECTION_HSM_RESIDENT);
	store_key gone = sample_key(id_n(3), KEY_PROTECTION_HSM_RESIDENT);
	gone.lifecycle = KEY_LIFECYCLE_DESTROYED;
	gone.state = KEY_STATE_DESTROYED;
	store_key w = sample_key(id_n(4), KEY_PROTECTION_WRAPPED);
	store_key keys[] = { a, b, gone, w };
	store_version v1[] = { version(1, VERSION_STATE_ACTIVE), version(1, VERSION_STATE_ACTIVE),
		               version(1, VERSION_STATE_DESTROYED),
		               version(1, VERSION_STATE_CREATING) };
	size_t failed;
	assert_ok(store_begin(st));
	assert_ok(store_keys_insert_batch(st, keys, NULL, v1, 4, &failed));
	assert_int_equal(failed, 4);
	store_version v2 = version(2, VERSION_STATE_CREATING);
	assert_ok(store_version_insert(st, a.id, &v2));
	assert_ok(store_commit(st));

	/* A batch stops at its first failure, saying where. */
	store_key again[] = { sample_key(id_n(9), KEY_PROTECTION_HSM_RESIDENT), a };
	assert_ok(store_begin(st));
	assert_status(store_keys_insert_batch(st, again, NULL, v1, 2, &failed), KMS_ALREADY_EXISTS);
	assert_int_equal(failed, 1);
	store_rollback(st);
	store_key probe;
	assert_status(store_key_get(st, id_n(9), &probe), KMS_NOT_FOUND);

	store_version_row rows[8];
	size_t n;
	assert_ok(store_versions_creating(st, INT64_MAX, true, 8, rows, &n));
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].key_id, a.id);
	assert_int_equal(rows[0].v.version, 2);
	assert_string_equal(rows[1].key_id, w.id);

	assert_ok(store_versions_resident(st, "", 0, 8, rows, &n));
	assert_int_equal(n, 3);
	assert_string_equal(rows[0].key_id, a.id);
	assert_int_equal(rows[0].v.version, 1);
	assert_string_equal(rows[1].key_id, a.id);
	assert_int_equal(rows[1].v.version, 2);
	assert_string_equal(rows[2].key_id, b.id);
	assert_ok(store_versions_resident(st, a.id, 1, 1, rows, &n));
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].key_id, a.id);
	assert_int_equal(rows[0].v.version, 2);
	assert_ok(store_versions_resident(st, b.id, 1, 8, rows, &n));
	assert_int_equal(n, 0);
	store_close(st);
}

/* A schema 2 database, made by the released migrations 0 -> 1 -> 2 with a
 * key and two versions in it, migrates: the key is hsm-resident, its
 * versions have no material, a KEK can be made. */
static void test_migration_from_2(void **state)
{
	(void)state;
	sqlite3 *db;
	assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
	for (int v = 0; v < 2; v++)
		assert_int_equal(sqlite3_exec(db, store_migration_sql(v), NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(
	        sqlite3_exec(db,
	                     "INSERT INTO keys (id, spec, usage, state, primary_version, created_at, "
	                     "region, lifecycle) VALUES ('k-00000000000000000000000000000001', 1, "
	                     "1, 1, 2, 1, 'in-test-1', 'ready');"
	                     "INSERT INTO key_versions (key_id, version, created_at, state, "
	                     "encryptions_reserved) VALUES "
	                     "('k-00000000000000000000000000000001', 1, 1, 'active', 5),"
	                     "('k-00000000000000000000000000000001', 2, 1, 'active', 0);"
	                     "PRAGMA user_version = 2;",
	                     NULL, NULL, NULL),
	        SQLITE_OK);
	sqlite3_close(db);

	bool created = true;
	store *st;
	assert_ok(store_open(dir, &st, &created));
	assert_false(created);
	store_key key;
	assert_ok(store_key_get(st, id_n(1), &key));
	assert_int_equal(key.protection, KEY_PROTECTION_HSM_RESIDENT);
	assert_int_equal(key.primary_version, 2);
	store_version v;
	assert_ok(store_version_get(st, id_n(1), 1, &v));
	assert_int_equal(v.encryptions_reserved, 5);
	store_material m;
	assert_status(store_version_material_get(st, id_n(1), 1, &m), KMS_FAILED_PRECONDITION);
	uint64_t count;
	assert_ok(store_keys_resident_count(st, &count));
	assert_int_equal(count, 1);
	store_kek kek;
	assert_ok(store_kek_create(st, 1, &kek));
	assert_int_equal(kek.id, 1);
	/* The old versions still destroy (and the material rule holds). */
	assert_ok(store_version_set_state(st, id_n(1), 2, VERSION_STATE_DESTROYED));
	store_close(st);

	assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(s, 0), STORE_SCHEMA_VERSION);
	sqlite3_finalize(s);
	sqlite3_close(db);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_keks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_protection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_material, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rewrap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_triggers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reconcile_queries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migration_from_2, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
