/*
 * test_store_pg: the store (kms/store/store.h) on a real PostgreSQL server
 * (tests/support/with-postgres; docs/scale-out.md). Each case starts from
 * an empty database.
 *
 * (1) the schema: an empty database is migrated at open (created true,
 *     schema_version at the current version); opened again it is found
 *     (created false).
 * (2) every statement: rows of every kind, then a call of every store
 *     function (tests/kms/store/store_exercise.c, as the SQLite plan test
 *     does), so every statement the store has is prepared and run on
 *     PostgreSQL; only SQLite's two BEGINs are not.
 * (3) two stores on one database (two replicas): what one writes the other
 *     reads at its next call, with no cache in between: a principal made,
 *     disabled and deleted, an access key revoked, a key and its policy.
 * (4) four stores opening at once on an empty database: every one opens,
 *     and exactly one made the schema.
 * (5) the start-up lock: a second exclusive open is refused while the
 *     first holds it (after 10 s of asking), opens at once after the
 *     first lets go (store_exclusive_release, as a started replica does)
 *     and opens once the first closes while it asks (a kmsd killed a
 *     moment ago).
 * (6) a wrong password: KMS_UNAVAILABLE, and the message holds no password.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "tests/support/pg_test.h"
#include "kms/store/db.h"
#include "kms/store/db_pg.h"
#include "kms/store/store.h"
#include "kms/store/store_internal.h"
#include "tests/kms/store/store_exercise.h"
#include "tests/support/store_test.h"

#define REPLICAS 4

static char password[256];
static char dirs[REPLICAS][STORE_TEST_DIR_SIZE];

static void read_password(void)
{
	assert_true(pg_test_password(password, sizeof password));
}

static db_conn *connect_db(void)
{
	db_pg_config cfg = { .url = getenv("KMS_TEST_PG_URL"), .password = password };
	db_conn *c = NULL;
	if (db_pg_open(&cfg, &c) != KMS_OK)
		fail_msg("db_pg_open: %s", kms_error_message());
	return c;
}

static void exec_ok(db_conn *c, const char *sql)
{
	if (db_exec(c, sql) != DB_OK)
		fail_msg("%s: %s", sql, db_conn_errmsg(c));
}

static int64_t one_int(db_conn *c, const char *sql)
{
	db_stmt *s = NULL;
	if (db_prepare(c, sql, &s) != DB_OK)
		fail_msg("prepare %s: %s", sql, db_conn_errmsg(c));
	assert_int_equal(db_step(s), DB_ROW);
	int64_t v = db_column_int64(s, 0);
	db_finalize(s);
	return v;
}

/* An empty database: the kms role owns it and so its public schema. */
static int setup(void **state)
{
	(void)state;
	read_password();
	db_conn *c = connect_db();
	exec_ok(c, "DROP SCHEMA public CASCADE");
	exec_ok(c, "CREATE SCHEMA public");
	db_close(c);
	for (int i = 0; i < REPLICAS; i++)
		store_test_dir_make("store-pg", dirs[i], NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < REPLICAS; i++)
		store_test_dir_remove(dirs[i]);
	return 0;
}

static store *open_pg(int replica, bool *created)
{
	store_options o = { .data_dir = dirs[replica], .pg_url = getenv("KMS_TEST_PG_URL"),
		            .pg_password = password };
	store *st = NULL;
	assert_ok(store_open_with(&o, &st, created));
	assert_true(store_is_pg(st));
	return st;
}

static void schema_made_then_found(void **state)
{
	(void)state;
	bool created = false;
	store *st = open_pg(0, &created);
	assert_true(created);
	store_close(st);
	st = open_pg(0, &created);
	assert_false(created);
	store_close(st);

	db_conn *c = connect_db();
	assert_int_equal(one_int(c, "SELECT max(version) FROM schema_version"),
	                 STORE_SCHEMA_VERSION);
	db_close(c);
}

static bool sqlite_only(store_stmt_id id)
{
	return id == S_BEGIN || id == S_BEGIN_READ;
}

static void every_statement_runs(void **state)
{
	(void)state;
	bool created;
	store *st = open_pg(0, &created);
	store_ex_populate(st, 30);
	store_ex_all(st, sqlite_only);
	store_close(st);
}

static store_principal principal(const char *name)
{
	store_principal p;
	memset(&p, 0, sizeof p);
	snprintf(p.name, sizeof p.name, "%s", name);
	p.roles = PRINCIPAL_ROLE_APP;
	p.state = PRINCIPAL_STATE_ENABLED;
	p.created_at = 100;
	p.updated_at = 100;
	return p;
}

static void replicas_see_each_others_writes(void **state)
{
	(void)state;
	bool created;
	store *a = open_pg(0, &created);
	store *b = open_pg(1, &created);
	assert_false(created);

	/* B asks first (and would have cached "no such principal"). */
	store_principal p = principal("billing-svc"), got;
	assert_status(store_principal_get(b, "billing-svc", &got), KMS_NOT_FOUND);
	assert_ok(store_principal_create(a, &p));
	assert_ok(store_principal_get(b, "billing-svc", &got));
	assert_int_equal(got.state, PRINCIPAL_STATE_ENABLED);
	assert_ok(store_principal_set_state(a, "billing-svc", PRINCIPAL_STATE_DISABLED, 200));
	assert_ok(store_principal_get(b, "billing-svc", &got));
	assert_int_equal(got.state, PRINCIPAL_STATE_DISABLED);

	store_access_key k;
	memset(&k, 0, sizeof k);
	snprintf(k.id, sizeof k.id, "%s", store_ex_authz_id("AK", 1));
	snprintf(k.principal, sizeof k.principal, "billing-svc");
	memset(k.wrapped, 0xa5, 61);
	k.wrapped_len = 61;
	k.created_at = 150;
	assert_ok(store_access_key_create(b, &k));
	store_access_key kgot;
	assert_ok(store_access_key_get(a, k.id, &kgot));
	assert_int_equal(kgot.state, ACCESS_KEY_STATE_ACTIVE);
	assert_ok(store_access_key_revoke(a, k.id, 300));
	assert_ok(store_access_key_get(b, k.id, &kgot));
	assert_int_equal(kgot.state, ACCESS_KEY_STATE_REVOKED);

	/* A key made through A, its policy read and changed through B. */
	store_ex_populate(a, 10);
	const char *id = store_ex_id_of(7);
	char *policy = NULL;
	assert_ok(store_policy_get(b, id, &policy));
	free(policy);
	assert_ok(store_policy_set(b, id, "{\"Statement\":[]}"));
	assert_ok(store_policy_get(a, id, &policy));
	assert_string_equal(policy, "{\"Statement\":[]}");
	free(policy);

	assert_ok(store_principal_delete(b, "billing-svc", 400));
	assert_status(store_principal_get(a, "billing-svc", &got), KMS_NOT_FOUND);
	store_close(a);
	store_close(b);
}

typedef struct opener {
	int replica;
	pthread_barrier_t *go;
	kms_status status;
	char message[512];
	bool created;
} opener;

static void *open_main(void *arg)
{
	opener *o = arg;
	store_options opt = { .data_dir = dirs[o->replica], .pg_url = getenv("KMS_TEST_PG_URL"),
		              .pg_password = password };
	store *st = NULL;
	pthread_barrier_wait(o->go);
	o->status = store_open_with(&opt, &st, &o->created);
	snprintf(o->message, sizeof o->message, "%s", kms_error_message());
	store_close(st);
	return NULL;
}

static void replicas_start_at_once(void **state)
{
	(void)state;
	pthread_barrier_t go;
	assert_int_equal(pthread_barrier_init(&go, NULL, REPLICAS), 0);
	opener o[REPLICAS];
	pthread_t t[REPLICAS];
	for (int i = 0; i < REPLICAS; i++) {
		o[i] = (opener){ .replica = i, .go = &go };
		assert_int_equal(pthread_create(&t[i], NULL, open_main, &o[i]), 0);
	}
	int made = 0;
	for (int i = 0; i < REPLICAS; i++) {
		pthread_join(t[i], NULL);
		if (o[i].status != KMS_OK)
			fail_msg("replica %d: %s: %s", i, kms_status_name(o[i].status), o[i].message);
		made += o[i].created;
	}
	pthread_barrier_destroy(&go);
	assert_int_equal(made, 1);
	bool created;
	store *st = open_pg(0, &created);
	assert_false(created);
	store_close(st);
}

/* The start-up lock (store_options.pg_exclusive): a second exclusive
 * open waits for the first to close or let go (a kmsd killed a moment
 * ago, or one still starting), and is refused when the first holds on
 * (10 s). A store in another schema of the same database is another
 * store. */
typedef struct exclusive_open {
	int replica;
	kms_status status;
	store *st;
} exclusive_open;

static void *exclusive_main(void *arg)
{
	exclusive_open *e = arg;
	store_options o = { .data_dir = dirs[e->replica], .pg_url = getenv("KMS_TEST_PG_URL"),
		            .pg_password = password, .pg_exclusive = true };
	bool created;
	e->status = store_open_with(&o, &e->st, &created);
	return NULL;
}

static void startup_lock(void **state)
{
	(void)state;
	exclusive_open first = { .replica = 0 }, second = { .replica = 1 };
	exclusive_main(&first);
	assert_ok(first.status);
	/* Held for good: refused, saying so. */
	exclusive_main(&second);
	assert_status(second.status, KMS_FAILED_PRECONDITION);
	assert_message_has("start-up lock");
	/* Let go while the store stays open (a replica that has started):
	 * the next opens at once. */
	store_exclusive_release(first.st);
	store_exclusive_release(first.st); /* twice: nothing */
	exclusive_main(&second);
	assert_ok(second.status);
	store_close(second.st);
	store_close(first.st);
	exclusive_main(&first);
	assert_ok(first.status);
	/* Released while the second waits: it opens. */
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, exclusive_main, &second), 0);
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 300 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	store_close(first.st);
	pthread_join(t, NULL);
	assert_ok(second.status);
	store_close(second.st);
}

static void wrong_password_is_unavailable(void **state)
{
	(void)state;
	const char *wrong = "not-the-password-9f8e7d";
	store_options o = { .data_dir = dirs[0], .pg_url = getenv("KMS_TEST_PG_URL"),
		            .pg_password = wrong };
	store *st = NULL;
	bool created;
	assert_status(store_open_with(&o, &st, &created), KMS_UNAVAILABLE);
	assert_null(st);
	assert_null(strstr(kms_error_message(), wrong));
	assert_null(strstr(kms_error_message(), password));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(schema_made_then_found, setup, teardown),
		cmocka_unit_test_setup_teardown(every_statement_runs, setup, teardown),
		cmocka_unit_test_setup_teardown(replicas_see_each_others_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(replicas_start_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(startup_lock, setup, teardown),
		cmocka_unit_test_setup_teardown(wrong_password_is_unavailable, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
