/*
 * test_db_pg: the PostgreSQL driver of db.h (kms/store/db_pg.c) against a
 * real server (tests/support/with-postgres; docs/scale-out.md).
 *
 * (1) values: 64-bit integers (the extremes), text, blobs with NUL and
 *     0xff bytes, NULL, read back through every column reader; int4, bool
 *     and count(*) columns read as integers; changes of INSERT, UPDATE and
 *     RETURNING.
 * (2) parameters: ?N outside quotes becomes $N, a '?1' inside a literal
 *     stays text, one ?N used twice, one bound but unused, a bare ?
 *     refused at prepare; SQLite's INDEXED BY hints dropped and CROSS JOIN
 *     run as JOIN.
 * (3) errors by kind: unique -> DB_DUPLICATE (the message names the
 *     constraint, never the value), foreign key -> DB_FOREIGN_KEY, a rule of
 *     the schema (SQLSTATE KM001) -> DB_TRIGGER with its text, CHECK ->
 *     DB_ERROR.
 * (4) a write skew between two SERIALIZABLE transactions: the second
 *     commit is DB_CONFLICT (SQLSTATE 40001), the first stands.
 * (5) a connection the server ends: the next statement is DB_IOERR, the one
 *     after runs on a new connection (its statements prepared again); ended
 *     inside a transaction, COMMIT is DB_IN_DOUBT.
 * (6) opening: a URL with a password or one that does not parse is refused
 *     before connecting, and so is a server off this machine without
 *     sslmode=verify-full; a wrong password is KMS_UNAVAILABLE and the
 *     message holds no password.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "tests/support/pg_test.h"
#include "kms/store/db.h"
#include "kms/store/db_pg.h"

static char password[256];

static void read_password(void)
{
	assert_true(pg_test_password(password, sizeof password));
}

static db_conn *connect_db(void)
{
	db_pg_config cfg = { .url = getenv("KMS_TEST_PG_URL"), .password = password };
	assert_non_null(cfg.url);
	db_conn *c = NULL;
	if (db_pg_open(&cfg, &c) != KMS_OK)
		fail_msg("db_pg_open: %s", kms_error_message());
	assert_string_equal(db_driver_name(c), "postgresql");
	return c;
}

static void exec_ok(db_conn *c, const char *sql)
{
	db_rc rc = db_exec(c, sql);
	if (rc != DB_OK)
		fail_msg("%s: %s", sql, db_conn_errmsg(c));
}

static db_stmt *prep(db_conn *c, const char *sql)
{
	db_stmt *s = NULL;
	if (db_prepare(c, sql, &s) != DB_OK)
		fail_msg("prepare %s: %s", sql, db_conn_errmsg(c));
	return s;
}

static int setup(void **state)
{
	(void)state;
	read_password();
	db_conn *c = connect_db();
	exec_ok(c, "CREATE DOMAIN blob AS bytea;"
	           "CREATE TABLE parent (id BIGINT PRIMARY KEY);"
	           "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT COLLATE \"C\" NOT NULL UNIQUE,"
	           "  data blob, small INTEGER, flag BOOLEAN,"
	           "  parent BIGINT REFERENCES parent(id),"
	           "  CONSTRAINT t_name_short CHECK (length(name) <= 16));"
	           "CREATE FUNCTION t_refuse() RETURNS trigger LANGUAGE plpgsql AS $$"
	           " BEGIN RAISE EXCEPTION 'a frozen row stays frozen' USING ERRCODE = 'KM001';"
	           " END $$;"
	           "CREATE TRIGGER t_frozen BEFORE UPDATE ON t FOR EACH ROW"
	           "  WHEN (OLD.name = 'frozen') EXECUTE FUNCTION t_refuse();"
	           "CREATE TABLE skew (id BIGINT PRIMARY KEY, v BIGINT NOT NULL);"
	           "INSERT INTO skew VALUES (1, 0), (2, 0);"
	           "INSERT INTO parent VALUES (7);");
	db_close(c);
	return 0;
}

static void values(void **state)
{
	(void)state;
	db_conn *c = connect_db();
	static const uint8_t bytes[] = { 0x00, 0xff, 0x41, 0x00, 0x80 };
	db_stmt *ins = prep(c, "INSERT INTO t (id, name, data, small, flag) "
	                       "VALUES (?1, ?2, ?3, ?4, ?5)");
	const int64_t ids[] = { INT64_MIN, -1, 0, INT64_MAX };
	for (size_t i = 0; i < 4; i++) {
		char name[16];
		snprintf(name, sizeof name, "v%zu", i);
		assert_int_equal(db_bind_int64(ins, 1, ids[i]), DB_OK);
		assert_int_equal(db_bind_text(ins, 2, name), DB_OK);
		if (i == 0)
			assert_int_equal(db_bind_null(ins, 3), DB_OK);
		else
			assert_int_equal(db_bind_blob(ins, 3, bytes, i == 1 ? 0 : sizeof bytes), DB_OK);
		assert_int_equal(db_bind_int64(ins, 4, -5), DB_OK);
		assert_int_equal(db_bind_int64(ins, 5, (int64_t)(i % 2)), DB_OK);
		assert_int_equal(db_step(ins), DB_DONE);
		assert_int_equal(db_changes(ins), 1);
		db_reset(ins);
	}
	db_finalize(ins);

	db_stmt *sel = prep(c, "SELECT id, name, data, small, flag FROM t WHERE name LIKE 'v%' "
	                       "ORDER BY id");
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(db_step(sel), DB_ROW);
		assert_int_equal(db_column_int64(sel, 0), ids[i]);
		char name[16];
		snprintf(name, sizeof name, "v%zu", i);
		assert_string_equal(db_column_text(sel, 1), name);
		assert_int_equal(db_column_bytes(sel, 1), strlen(name));
		if (i == 0) {
			assert_true(db_column_is_null(sel, 2));
			assert_null(db_column_blob(sel, 2));
			assert_int_equal(db_column_bytes(sel, 2), 0);
		} else {
			assert_false(db_column_is_null(sel, 2));
			size_t want = i == 1 ? 0 : sizeof bytes;
			assert_int_equal(db_column_bytes(sel, 2), want);
			if (want)
				assert_memory_equal(db_column_blob(sel, 2), bytes, want);
		}
		assert_int_equal(db_column_int64(sel, 3), -5); /* int4 */
		assert_int_equal(db_column_int64(sel, 4), (int64_t)(i % 2)); /* bool */
	}
	assert_int_equal(db_step(sel), DB_DONE);
	db_finalize(sel);

	db_stmt *count = prep(c, "SELECT count(*) FROM t WHERE name LIKE 'v%'");
	assert_int_equal(db_step(count), DB_ROW);
	assert_int_equal(db_column_int64(count, 0), 4);
	db_finalize(count);

	db_stmt *upd = prep(c, "UPDATE t SET small = ?1 WHERE name IN ('v1', 'v2')");
	assert_int_equal(db_bind_int64(upd, 1, 9), DB_OK);
	assert_int_equal(db_step(upd), DB_DONE);
	assert_int_equal(db_changes(upd), 2);
	db_finalize(upd);

	db_stmt *ret = prep(c, "INSERT INTO t (id, name) VALUES (?1, 'returned') RETURNING id * 2");
	assert_int_equal(db_bind_int64(ret, 1, 21), DB_OK);
	assert_int_equal(db_step(ret), DB_ROW);
	assert_int_equal(db_column_int64(ret, 0), 42);
	assert_int_equal(db_step(ret), DB_DONE);
	assert_int_equal(db_changes(ret), 1);
	db_finalize(ret);
	db_close(c);
}

static void parameters(void **state)
{
	(void)state;
	db_conn *c = connect_db();
	db_stmt *s = prep(c, "SELECT '?1', CAST(?1 AS BIGINT) + CAST(?1 AS BIGINT), \"?2\" "
	                     "FROM (SELECT 5 AS \"?2\") AS q");
	assert_int_equal(db_bind_int64(s, 1, 20), DB_OK);
	assert_int_equal(db_step(s), DB_ROW);
	assert_string_equal(db_column_text(s, 0), "?1");
	assert_int_equal(db_column_int64(s, 1), 40);
	assert_int_equal(db_column_int64(s, 2), 5);
	db_finalize(s);
	/* The text of a prepared statement is reused: its second run too. */
	db_stmt *again = prep(c, "SELECT CAST(?1 AS TEXT) || 'x'");
	for (int i = 0; i < 2; i++) {
		assert_int_equal(db_bind_text(again, 1, i ? "b" : "a"), DB_OK);
		assert_int_equal(db_step(again), DB_ROW);
		assert_string_equal(db_column_text(again, 0), i ? "bx" : "ax");
		db_reset(again);
	}
	db_finalize(again);
	/* SQLite's planner hints: INDEXED BY dropped, CROSS JOIN a JOIN; ?1
	 * bound but unused (the store binds one list to sibling statements). */
	db_stmt *hinted = prep(c, "SELECT count(*) FROM parent AS p "
	                          "CROSS JOIN t INDEXED BY t_name_key ON t.parent = p.id "
	                          "WHERE t.name > ?2");
	assert_int_equal(db_bind_int64(hinted, 1, 99), DB_OK);
	assert_int_equal(db_bind_text(hinted, 2, ""), DB_OK);
	assert_int_equal(db_step(hinted), DB_ROW);
	assert_true(db_column_int64(hinted, 0) >= 0);
	db_finalize(hinted);
	db_stmt *bad = NULL;
	assert_int_not_equal(db_prepare(c, "SELECT ?", &bad), DB_OK);
	assert_null(bad);
	assert_int_not_equal(db_prepare(c, "SELECT ?0", &bad), DB_OK);
	db_close(c);
}

static db_rc insert_named(db_conn *c, int64_t id, const char *name, int64_t parent, db_stmt **out)
{
	db_stmt *s = prep(c, "INSERT INTO t (id, name, parent) VALUES (?1, ?2, ?3)");
	assert_int_equal(db_bind_int64(s, 1, id), DB_OK);
	assert_int_equal(db_bind_text(s, 2, name), DB_OK);
	if (parent)
		assert_int_equal(db_bind_int64(s, 3, parent), DB_OK);
	db_rc rc = db_step(s);
	*out = s;
	return rc;
}

static void errors_by_kind(void **state)
{
	(void)state;
	db_conn *c = connect_db();
	db_stmt *s;
	assert_int_equal(insert_named(c, 100, "secret-name", 7, &s), DB_DONE);
	db_finalize(s);
	assert_int_equal(insert_named(c, 101, "secret-name", 0, &s), DB_DUPLICATE);
	printf("# duplicate: %s (%s)\n", db_errmsg(s), db_errstr(s));
	assert_non_null(strstr(db_errmsg(s), "t_name_key"));
	assert_null(strstr(db_errmsg(s), "secret-name")); /* DETAIL, with the value, is left out */
	db_finalize(s);
	assert_int_equal(insert_named(c, 102, "orphan", 8, &s), DB_FOREIGN_KEY);
	db_finalize(s);
	assert_int_equal(insert_named(c, 103, "much-too-long-for-the-check", 0, &s), DB_ERROR);
	assert_non_null(strstr(db_errmsg(s), "t_name_short"));
	db_finalize(s);
	assert_int_equal(insert_named(c, 104, "frozen", 0, &s), DB_DONE);
	db_finalize(s);
	db_stmt *u = prep(c, "UPDATE t SET small = 1 WHERE name = 'frozen'");
	assert_int_equal(db_step(u), DB_TRIGGER);
	assert_non_null(strstr(db_errmsg(u), "a frozen row stays frozen"));
	db_finalize(u);
	db_close(c);
}

static int64_t read_v(db_conn *c, int64_t id)
{
	db_stmt *s = prep(c, "SELECT v FROM skew WHERE id = ?1");
	assert_int_equal(db_bind_int64(s, 1, id), DB_OK);
	assert_int_equal(db_step(s), DB_ROW);
	int64_t v = db_column_int64(s, 0);
	db_finalize(s);
	return v;
}

static db_rc write_v(db_conn *c, int64_t id, int64_t v)
{
	db_stmt *s = prep(c, "UPDATE skew SET v = ?2 WHERE id = ?1");
	assert_int_equal(db_bind_int64(s, 1, id), DB_OK);
	assert_int_equal(db_bind_int64(s, 2, v), DB_OK);
	db_rc rc = db_step(s);
	db_finalize(s);
	return rc;
}

static void write_skew_is_a_conflict(void **state)
{
	(void)state;
	db_conn *a = connect_db(), *b = connect_db();
	exec_ok(a, "BEGIN ISOLATION LEVEL SERIALIZABLE");
	exec_ok(b, "BEGIN ISOLATION LEVEL SERIALIZABLE");
	assert_true(db_in_transaction(a));
	/* Each reads the row the other writes. */
	int64_t a1 = read_v(a, 1), b2 = read_v(b, 2);
	assert_int_equal(write_v(a, 2, a1 + 1), DB_DONE);
	assert_int_equal(write_v(b, 1, b2 + 1), DB_DONE);
	exec_ok(a, "COMMIT");
	assert_false(db_in_transaction(a));
	db_rc rc = db_exec(b, "COMMIT");
	printf("# the second commit: %s (%s)\n", db_conn_errmsg(b), db_conn_errstr(b));
	assert_int_equal(rc, DB_CONFLICT);
	assert_non_null(strstr(db_conn_errmsg(b), "40001"));
	assert_false(db_in_transaction(b));
	assert_int_equal(read_v(b, 1), 0); /* b's write is gone, a's stands */
	assert_int_equal(read_v(b, 2), 1);
	db_close(a);
	db_close(b);
}

static int64_t backend_pid(db_conn *c)
{
	db_stmt *s = prep(c, "SELECT pg_backend_pid()");
	assert_int_equal(db_step(s), DB_ROW);
	int64_t pid = db_column_int64(s, 0);
	db_finalize(s);
	return pid;
}

static void end_backend(db_conn *killer, int64_t pid)
{
	db_stmt *s = prep(killer, "SELECT pg_terminate_backend(CAST(?1 AS INTEGER))");
	assert_int_equal(db_bind_int64(s, 1, pid), DB_OK);
	assert_int_equal(db_step(s), DB_ROW);
	assert_int_equal(db_column_int64(s, 0), 1);
	db_finalize(s);
}

static void connection_lost(void **state)
{
	(void)state;
	db_conn *c = connect_db(), *killer = connect_db();
	db_stmt *s = prep(c, "SELECT v FROM skew WHERE id = 1");
	assert_int_equal(db_step(s), DB_ROW);
	db_reset(s);
	int64_t pid = backend_pid(c);
	end_backend(killer, pid);
	db_rc rc = db_step(s);
	printf("# after the server ended it: %s (%s)\n", db_errmsg(s), db_errstr(s));
	assert_int_equal(rc, DB_IOERR);
	db_reset(s);
	/* The next statement outside a transaction runs on a new connection,
	 * the statement prepared there again. */
	assert_int_equal(db_step(s), DB_ROW);
	assert_int_not_equal(backend_pid(c), pid);
	db_finalize(s);

	exec_ok(c, "BEGIN ISOLATION LEVEL SERIALIZABLE");
	assert_int_equal(write_v(c, 1, 5), DB_DONE);
	end_backend(killer, backend_pid(c));
	rc = db_exec(c, "COMMIT");
	printf("# COMMIT on an ended connection: %s (%s)\n", db_conn_errmsg(c),
	       db_conn_errstr(c));
	assert_int_equal(rc, DB_IN_DOUBT);
	assert_false(db_in_transaction(c));
	exec_ok(c, "SELECT 1"); /* a new connection again */

	/* Lost inside a transaction, noticed by a statement: the statement
	 * fails, and no later statement of that transaction runs on a new
	 * connection; ROLLBACK ends it, then the connection is new. */
	exec_ok(c, "BEGIN ISOLATION LEVEL SERIALIZABLE");
	end_backend(killer, backend_pid(c));
	assert_int_equal(write_v(c, 1, 6), DB_IOERR);
	assert_true(db_in_transaction(c));
	assert_int_equal(write_v(c, 1, 7), DB_IOERR);
	exec_ok(c, "ROLLBACK");
	assert_false(db_in_transaction(c));
	assert_int_equal(read_v(c, 1), 0); /* none of it applied (nor the in-doubt 5) */
	db_close(c);
	db_close(killer);
}

static void opening(void **state)
{
	(void)state;
	db_conn *c = NULL;
	db_pg_config with_pw = { .url = "postgresql://kms:hunter2@127.0.0.1:1/kms" };
	assert_int_equal(db_pg_open(&with_pw, &c), KMS_INVALID_ARGUMENT);
	assert_non_null(strstr(kms_error_message(), "password_file"));
	assert_null(strstr(kms_error_message(), "hunter2"));
	db_pg_config garbage = { .url = "postgresql://[::1" };
	assert_int_equal(db_pg_open(&garbage, &c), KMS_INVALID_ARGUMENT);
	/* Off this machine only with the server's certificate checked; a host
	 * name that merely starts like a loopback address is not one. */
	static const char *const remote[] = {
		"postgresql://kms@db.internal:5432/kms",
		"postgresql://kms@db.internal:5432/kms?sslmode=require",
		"postgresql://kms@127.example.com/kms",
		"postgresql://kms@127.0.0.1,db.internal/kms",
		"postgresql://kms@127.0.0.1/kms?hostaddr=10.0.0.7",
	};
	for (size_t i = 0; i < sizeof remote / sizeof remote[0]; i++) {
		db_pg_config r = { .url = remote[i] };
		if (db_pg_url_check(r.url) != KMS_INVALID_ARGUMENT)
			fail_msg("%s: accepted without sslmode=verify-full", remote[i]);
		assert_non_null(strstr(kms_error_message(), "sslmode=verify-full"));
	}
	static const char *const allowed[] = {
		"postgresql://kms@db.internal:5432/kms?sslmode=verify-full",
		"postgresql://kms@127.0.0.1:5432/kms",
		"postgresql://kms@[::1]:5432/kms",
		"postgresql://kms@localhost/kms",
		"postgresql:///kms?host=/run/postgresql",
		"postgresql:///kms",
	};
	for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
		if (db_pg_url_check(allowed[i]) != KMS_OK)
			fail_msg("%s: refused: %s", allowed[i], kms_error_message());
	db_pg_config wrong = { .url = getenv("KMS_TEST_PG_URL"), .password = "not-the-password" };
	assert_int_equal(db_pg_open(&wrong, &c), KMS_UNAVAILABLE);
	printf("# wrong password: %s\n", kms_error_message());
	assert_null(strstr(kms_error_message(), "not-the-password"));
	assert_null(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(values),
		cmocka_unit_test(parameters),
		cmocka_unit_test(errors_by_kind),
		cmocka_unit_test(write_skew_is_a_conflict),
		cmocka_unit_test(connection_lost),
		cmocka_unit_test(opening),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
