/*
 * test_store_plans: the store at scale (docs/store-schema.md).
 *
 * test_plans: every statement the store prepares (each store_stmt_id; the
 * test first calls every store function so each one is prepared, and fails
 * naming any that is not) is run through EXPLAIN QUERY PLAN on a populated
 * database. A plan fails the test, naming the statement, when it scans a
 * table (SCAN of a table or of a full index: only a partial index, whose
 * rows are exactly the ones asked for, may be scanned), builds an automatic
 * index, or sorts in a temp B-tree. The few exceptions are in plan_allowed,
 * each with why it is bounded and off the request path.
 *
 * No ANALYZE: kmsd never runs it, so the plans kmsd gets are the planner's
 * choices without sqlite_stat1, and those are the ones checked here (with
 * no statistics the plans do not depend on how many rows there are, so a
 * small database shows the same plans as a large one). With statistics the
 * planner may rightly scan a table of two rows (keks), so plans checked
 * after an ANALYZE would test the sample, not the schema.
 *
 * test_scale: timing-free. The SQLite VM steps (sqlite3_stmt_status) of a
 * ListKeys page deep in the keyspace, a page of keys due for deletion and
 * of keys due for rotation, a wrapped version's material lookup, a
 * grantee's live grants on one key, and the reconciliation and re-wrap
 * pages are the same with 50,000 keys as with 1,000 (10% of the keys due
 * for each tick, their ids after the others': see id_of): each costs
 * O(page), not O(keys); and none of them steps through a full scan.
 *
 * test_migration_from_3: a schema 3 file migrates and its rebuilt indexes
 * serve the due queries and the grant lookup.
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
#include "common/context.h"
#include "kms/store/store.h"
#include "kms/store/db_sqlite.h"
#include "kms/store/store_consents.h"
#include "tests/support/store_test.h"
#include "kms/store/store_internal.h"
#include "tests/kms/store/store_exercise.h"

static char dir[STORE_TEST_DIR_SIZE];
static char db_path[STORE_TEST_DB_SIZE];

static int setup(void **state)
{
	(void)state;
	store_test_dir_make("plans", dir, db_path);
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

/*
 * The allow-list: statements whose plan may scan a table or sort, and why
 * that is bounded and off the request path and the background ticks. Every
 * other statement must seek.
 */
static const char *plan_allowed(store_stmt_id id)
{
	switch (id) {
	case S_PRINCIPAL_ANY:
		/* EXISTS stops at the first row: one step whatever the table
		 * holds. Only kmsd --bootstrap-admin asks. */
		return "EXISTS: stops at the first row";
	case S_KEK_INSERT:
		/* "next" is the one-row derived table of the next KEK number (one
		 * seek for max(id)); PostgreSQL wants it named, and SQLite then
		 * runs it as a co-routine it scans: one row. */
		return "the one row of the next KEK number";
	case S_AUDIT_PENDING_TAKE:
		/* The oldest pending entries in rowid order, LIMIT one batch:
		 * the scan stops there; p is those rows. */
		return "LIMIT: one batch of the oldest pending audit entries";
	case S_REQUEST_PUT:
		/* "held" is one row: on PostgreSQL the record's advisory lock,
		 * taken before the insert (store_requests.c). */
		return "the one row of the request record's lock";
	case S_AUDIT_PENDING_ANY:
		/* LIMIT 1: the first row or none. */
		return "LIMIT 1: whether any audit entry waits";
	case S_AUDIT_COUNT_PENDING:
		/* At kmsd's start only; the lease holder drains the table
		 * every round, so it holds what arrived since. */
		return "start-up only: the entries not yet numbered";
	default:
		return NULL;
	}
}

#define NOW STORE_EX_NOW

/* A live grant to payments-svc on each key n % 10 == 7, written in one
 * transaction on a second connection (store_grant_create takes one
 * transaction each): the grantee's other grants, which the decision's
 * lookup must not walk. */
static void add_grants(store *st, unsigned n_keys)
{
	store_principal p;
	memset(&p, 0, sizeof p);
	snprintf(p.name, sizeof p.name, "payments-svc");
	p.roles = PRINCIPAL_ROLE_APP;
	p.state = PRINCIPAL_STATE_ENABLED;
	assert_ok(store_principal_create(st, &p));
	sqlite3 *db;
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_busy_timeout(db, 5000), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
	                                    "INSERT INTO grants (id, key_id, grantee, operations, "
	                                    "context, creator, state, created_at) VALUES (?1, ?2, "
	                                    "'payments-svc', 'decrypt,encrypt', x'0000', 'alice', "
	                                    "'live', 500)",
	                                    -1, &s, NULL),
	                 SQLITE_OK);
	for (unsigned n = 7; n <= n_keys; n += 10) {
		sqlite3_bind_text(s, 1, store_ex_authz_id("GR", n), -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(s, 2, store_ex_id_of(n), -1, SQLITE_TRANSIENT);
		assert_int_equal(sqlite3_step(s), SQLITE_DONE);
		sqlite3_reset(s);
	}
	sqlite3_finalize(s);
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* store_ex_populate's keys, and add_grants'. */
static void populate(store *st, unsigned n_keys)
{
	store_ex_populate(st, n_keys);
	add_grants(st, n_keys);
}

/* The statements run only on PostgreSQL: not prepared here, no SQLite plan
 * (test_store_pg runs them). */
static bool pg_only(store_stmt_id id)
{
	return id == S_BEGIN_PG || id == S_BEGIN_READ_PG || id == S_PG_VERSION_TABLE ||
	       id == S_PG_VERSION;
}

/* ---- the plans ---- */

/* Whether index is partial (its CREATE INDEX has a WHERE). */
static bool index_partial(sqlite3 *db, const char *index)
{
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(db,
	                                    "SELECT sql LIKE '% WHERE %' FROM sqlite_schema "
	                                    "WHERE type = 'index' AND name = ?1",
	                                    -1, &s, NULL),
	                 SQLITE_OK);
	sqlite3_bind_text(s, 1, index, -1, SQLITE_TRANSIENT);
	bool partial = sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int(s, 0) == 1;
	sqlite3_finalize(s);
	return partial;
}

/* Why one line of a plan is a full scan or a sort, or NULL if it is
 * neither. "SCAN t USING [COVERING] INDEX i" is allowed for a partial i
 * only: such a scan reads exactly the rows the query asks for. */
static const char *plan_line_fault(sqlite3 *db, const char *detail)
{
	if (strstr(detail, "TEMP B-TREE"))
		return "sorts in a temp B-tree";
	if (strstr(detail, "AUTOMATIC"))
		return "builds an automatic index";
	if (strncmp(detail, "SCAN ", 5) != 0)
		return NULL;
	if (strcmp(detail, "SCAN CONSTANT ROW") == 0 || strncmp(detail, "SCAN (subquery", 14) == 0)
		return NULL;
	const char *using = strstr(detail, " INDEX ");
	if (!using || strstr(detail, "PRIMARY KEY"))
		return "scans a table";
	char index[128];
	snprintf(index, sizeof index, "%s", using + strlen(" INDEX "));
	index[strcspn(index, " ")] = '\0';
	return index_partial(db, index) ? NULL : "scans a whole index";
}

/* Appends the plan of statement id to report; returns the number of faulty
 * lines (0 when allowed). */
static int plan_check(sqlite3 *db, store_stmt_id id, char *report, size_t cap)
{
	const char *sql = store_stmt_sql(id);
	char explain[4096];
	int len = snprintf(explain, sizeof explain, "EXPLAIN QUERY PLAN %s", sql);
	assert_true(len > 0 && (size_t)len < sizeof explain);
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(db, explain, -1, &s, NULL) != SQLITE_OK)
		fail_msg("%s: cannot explain: %s", store_ex_stmt_name(id), sqlite3_errmsg(db));
	int faults = 0;
	size_t used = strlen(report);
	while (sqlite3_step(s) == SQLITE_ROW) {
		const char *detail = (const char *)sqlite3_column_text(s, 3);
		const char *fault = plan_line_fault(db, detail ? detail : "");
		const char *allowed = fault ? plan_allowed(id) : NULL;
		if (fault && !allowed)
			faults++;
		if (used < cap)
			used += (size_t)snprintf(report + used, cap - used, "  %-28s %s%s%s%s%s\n",
			                         store_ex_stmt_name(id), detail, fault ? ": " : "",
			                         fault ? fault : "", allowed ? ", allowed: " : "",
			                         allowed ? allowed : "");
	}
	sqlite3_finalize(s);
	return faults;
}

static void plans_check_all(void)
{
	sqlite3 *db;
	assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	static char report[65536];
	report[0] = '\0';
	int faults = 0;
	for (int id = 0; id < S_COUNT; id++)
		if (!pg_only((store_stmt_id)id))
			faults += plan_check(db, (store_stmt_id)id, report, sizeof report);
	sqlite3_close(db);
	printf("the plans:\n%s", report);
	fflush(stdout);
	if (faults)
		fail_msg("%d plan lines scan a table or sort (listed above): add an index or "
		         "rewrite the query (docs/store-schema.md)", faults);
}

static void test_plans(void **state)
{
	(void)state;
	store *st = open_store();
	populate(st, 200);
	store_ex_all(st, pg_only);
	plans_check_all();
	store_close(st);
}

/* ---- the scale check ---- */

/* The VM steps and full-scan steps statement id took since the last call
 * (this thread's cached statement: the one the store function ran). */
static void stmt_counts(store *st, store_stmt_id id, int *vm_steps, int *fullscan_steps)
{
	db_stmt *s;
	assert_ok(store_stmt(st, id, store_stmt_sql(id), &s));
	sqlite3_stmt *raw = db_sqlite_stmt(s);
	*vm_steps = sqlite3_stmt_status(raw, SQLITE_STMTSTATUS_VM_STEP, 1);
	*fullscan_steps = sqlite3_stmt_status(raw, SQLITE_STMTSTATUS_FULLSCAN_STEP, 1);
	store_stmt_done(s);
}

enum {
	M_LIST,
	M_DELETION_DUE,
	M_ROTATION_DUE,
	M_MATERIAL,
	M_GRANTS_LIVE,
	M_RESIDENT,
	M_RESIDENT_LAST,
	M_UNDER_KEK,
	M_COUNT
};
static const char *const measure_names[M_COUNT] = {
	"ListKeys, a page of 100 deep in the keys",
	"keys due for deletion, a page of 100",
	"keys due for rotation, a page of 100",
	"a wrapped version's material",
	"a grantee's live grants on one key",
	"resident versions, a page of 100",
	"resident versions, the last page",
	"versions under a KEK, the last 50",
};
static const store_stmt_id measure_stmts[M_COUNT] = {
	S_KEY_LIST, S_KEY_IDS_DELETION_DUE, S_KEY_IDS_ROTATION_DUE, S_VERSION_MATERIAL_GET,
	S_GRANTS_LIVE, S_VERSIONS_RESIDENT, S_VERSIONS_RESIDENT, S_VERSIONS_UNDER_KEK,
};

#define PAGE 100
/* The rows each returns: a page, one row, the last resident keys (n_keys -
 * 8 and n_keys, the last of the due block), the last 50 wrapped. */
static const size_t measure_rows[M_COUNT] = { PAGE, PAGE, PAGE, 1, 1, PAGE, 2, 50 };

/* Runs measure m on a store of n_keys keys and returns its VM steps; fails
 * if it stepped through a full scan or returned less than a page. */
static int measure(store *st, int m, unsigned n_keys)
{
	int vm, full;
	size_t n = 0;
	static store_key rows[PAGE];
	static char ids[PAGE][KMS_KEYID_TEXT_SIZE];
	static store_version_row vrows[PAGE];
	static store_version_ref refs[PAGE];
	store_material mat;
	/* Deep: the page starts 294 keys before the end of the first block
	 * (n_keys - 294 is 6 modulo 10, so the page holds the same kinds of
	 * key at every size, and 200 of them follow in the block). */
	const char *deep = store_ex_id_of(n_keys - 294);
	store_grant *grants = NULL;

	stmt_counts(st, measure_stmts[m], &vm, &full);
	switch (m) {
	case M_LIST:
		assert_ok(store_key_list(st, deep, PAGE, rows, &n));
		break;
	case M_DELETION_DUE:
		assert_ok(store_key_ids(st, STORE_KEYS_DELETION_DUE, NOW, PAGE, ids, &n));
		break;
	case M_ROTATION_DUE:
		assert_ok(store_key_ids(st, STORE_KEYS_ROTATION_DUE, NOW, PAGE, ids, &n));
		break;
	case M_MATERIAL:
		assert_ok(store_version_material_get(st, store_ex_id_of(n_keys - 5), 1, &mat));
		n = 1;
		break;
	case M_GRANTS_LIVE:
		assert_ok(store_grants_live(st, "payments-svc", store_ex_id_of(n_keys - 3), &grants, &n));
		free(grants);
		break;
	case M_RESIDENT:
		assert_ok(store_versions_resident(st, deep, 1, PAGE, vrows, &n));
		break;
	case M_RESIDENT_LAST:
		/* Near the end of the due block; past it lie the wrapped keys. */
		assert_ok(store_versions_resident(st, store_ex_id_of(n_keys - 10), 1, PAGE, vrows, &n));
		break;
	case M_UNDER_KEK:
		/* The last 50 wrapped keys: after key n_keys - 505 (wrapped). */
		assert_ok(store_versions_under_kek(st, 1, store_ex_id_of(n_keys - 505), 1, PAGE, refs, &n));
		break;
	}
	stmt_counts(st, measure_stmts[m], &vm, &full);
	if (n != measure_rows[m])
		fail_msg("%s at %u keys: %zu rows, want %zu", measure_names[m], n_keys, n,
		         measure_rows[m]);
	if (full != 0)
		fail_msg("%s at %u keys: %d full-scan steps", measure_names[m], n_keys, full);
	return vm;
}

static void measure_all(unsigned n_keys, int steps[M_COUNT])
{
	store *st = open_store();
	populate(st, n_keys);
	for (int m = 0; m < M_COUNT; m++)
		steps[m] = measure(st, m, n_keys);
	store_close(st);
	assert_int_equal(teardown(NULL), 0);
	assert_int_equal(setup(NULL), 0);
}

/* Within this many VM steps: the same program over the same rows takes the
 * same steps; a B-tree one level deeper costs no extra step. */
#define STEPS_SLACK 4

static void test_scale(void **state)
{
	(void)state;
	int small[M_COUNT], large[M_COUNT];
	measure_all(1000, small);
	measure_all(50000, large);
	for (int m = 0; m < M_COUNT; m++)
		print_message("%-42s VM steps: %6d at 1,000 keys, %6d at 50,000\n", measure_names[m],
		              small[m], large[m]);
	for (int m = 0; m < M_COUNT; m++)
		if (abs(large[m] - small[m]) > STEPS_SLACK)
			fail_msg("%s: %d VM steps at 50,000 keys, %d at 1,000: it grows with the "
			         "keys (a scan or a sort)", measure_names[m], large[m], small[m]);
}

/* ---- the migration from schema 3 ---- */

static int64_t one_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

/* A schema 3 database, made by the released migrations with a key due for
 * deletion, one due for rotation and a live grant, migrates to 4: the
 * rebuilt indexes hold them, the due queries and the grant lookup find
 * them through those, and the plans seek. */
static void test_migration_from_3(void **state)
{
	(void)state;
	sqlite3 *db;
	assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
	for (int v = 0; v < 3; v++)
		assert_int_equal(sqlite3_exec(db, store_migration_sql(v), NULL, NULL, NULL), SQLITE_OK);
	char sql[2048];
	snprintf(sql, sizeof sql,
	         "INSERT INTO keys (id, spec, usage, state, primary_version, created_at, "
	         "region, lifecycle, deletion_date, rotation_period_days, next_rotation_at) VALUES "
	         "('%s', 1, 1, 3, 1, 1, 'in-test-1', 'ready', 100, 0, 0),"
	         "('%s', 1, 1, 1, 1, 1, 'in-test-1', 'ready', 0, 30, 100),"
	         "('%s', 1, 1, 2, 1, 1, 'in-test-1', 'ready', 0, 30, 100);"
	         "INSERT INTO principals VALUES ('payments-svc', 2, '', 'enabled', 1, 1);"
	         "INSERT INTO grants (id, key_id, grantee, operations, context, creator, state, "
	         "created_at) VALUES ('%s', '%s', 'payments-svc', 'encrypt', x'0000', 'alice', "
	         "'live', 1);"
	         "PRAGMA user_version = 3;",
	         store_ex_id_of(10), store_ex_id_of(12), store_ex_id_of(13), store_ex_authz_id("GR", 1), store_ex_id_of(12));
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	bool created = true;
	store *st;
	assert_ok(store_open(dir, &st, &created));
	assert_false(created);
	char ids[4][KMS_KEYID_TEXT_SIZE];
	size_t n;
	assert_ok(store_key_ids(st, STORE_KEYS_DELETION_DUE, NOW, 4, ids, &n));
	assert_int_equal(n, 1);
	assert_string_equal(ids[0], store_ex_id_of(10));
	/* The disabled key (13) is not due, though its date passed. */
	assert_ok(store_key_ids(st, STORE_KEYS_ROTATION_DUE, NOW, 4, ids, &n));
	assert_int_equal(n, 1);
	assert_string_equal(ids[0], store_ex_id_of(12));
	store_grant *grants;
	assert_ok(store_grants_live(st, "payments-svc", store_ex_id_of(12), &grants, &n));
	assert_int_equal(n, 1);
	free(grants);
	store_close(st);

	assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
	assert_int_equal(one_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
	assert_int_equal(one_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND "
	                             "name IN ('keys_deletion_due', 'keys_rotation_due', "
	                             "'grants_live', 'access_keys_by_creation', "
	                             "'keys_hsm_resident') AND sql LIKE '% WHERE %'"),
	                 4);
	assert_int_equal(one_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND "
	                             "name = 'keys_rotation_due' AND sql LIKE '%lifecycle = ''ready''%'"),
	                 1);
	assert_int_equal(one_int(db, "SELECT count(*) FROM keys INDEXED BY keys_rotation_due "
	                             "WHERE rotation_period_days > 0 AND state = 1 "
	                             "AND lifecycle = 'ready' AND next_rotation_at > 0"),
	                 1);
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), "ok");
	sqlite3_finalize(s);
	sqlite3_close(db);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_plans, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scale, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migration_from_3, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
