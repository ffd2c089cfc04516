/*
 * test_store_schema_pg: the store's PostgreSQL schema
 * (kms/store/store_schema_pg.c, docs/store-schema.md "PostgreSQL") on a
 * throw-away cluster (tests/support/with-postgres), against the SQLite
 * schema it restates.
 *
 * Each test makes a world: a fresh PostgreSQL schema (namespace) with
 * store_pg_migration_sql's steps (0 -> 7, 7 -> 8, 8 -> 9) applied, each in one
 * transaction, and beside it an in-memory SQLite database with store.c's
 * migrations 0 -> 9. Every
 * statement of a test runs on both, word for word, and must end the same
 * way: accepted on both (the same rows changed), or refused on both for
 * the same reason: a trigger's rule (SQLSTATE KM001 with the SQLite
 * trigger's own message, the trigger named as the constraint), a CHECK
 * (23514), a UNIQUE or primary key (23505), a foreign key (23503), the
 * constraint named (a statement that breaks two rules at once may have
 * each database name another: the case says which SQLite names). Then:
 * both schemas have the same tables, columns,
 * keys, indexes and triggers (on the same events); text orders by bytes;
 * schema_version is 10 and a second migration is refused; every trigger
 * and constraint of the PostgreSQL schema refused at least one statement
 * (but the cache generation's, which refuse nothing), and those raise the
 * generation on both at the same changes.
 *
 * Statements are written in the dialect both understand: blobs as
 * CAST('text' AS BLOB) (the domain blob on PostgreSQL) or zeroblob(n),
 * long text as repeat(text, n); each database gets the one function it
 * lacks, for the test only.
 */
#define _DEFAULT_SOURCE /* explicit_bzero */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms/store/store.h"
#include "kms/store/store_internal.h"
#include "kms/store/store_schema_pg.h"

static PGconn *pg;
static sqlite3 *lite;
static char world[32]; /* this test's PostgreSQL schema */
static int worlds;

/* The rules (triggers, constraints) some statement was refused by. */
#define HITS_MAX 256
static const char *hits[HITS_MAX];
static size_t hits_n;
static size_t refused_n, accepted_n; /* statements run on both */

static void hit(const char *rule)
{
	for (size_t i = 0; i < hits_n; i++)
		if (strcmp(hits[i], rule) == 0)
			return;
	assert_true(hits_n < HITS_MAX);
	hits[hits_n++] = rule;
}

static bool was_hit(const char *rule)
{
	for (size_t i = 0; i < hits_n; i++)
		if (strcmp(hits[i], rule) == 0)
			return true;
	return false;
}

/* ---- PostgreSQL ---- */

/* sql on c (the test's connection, or a second one), which must succeed. */
static void on_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		char why[512];
		snprintf(why, sizeof why, "%s", PQresultErrorMessage(r));
		PQclear(r);
		fail_msg("PostgreSQL refused %s%s: %s", sql, c == pg ? "" : " (second connection)",
		         why);
	}
	PQclear(r);
}

static void pg_ok(const char *sql)
{
	on_ok(pg, sql);
}

/* Runs sql, which must fail with SQLSTATE state; returns the result for
 * more checks (the caller clears it). */
static PGresult *pg_refused(const char *sql, const char *state)
{
	PGresult *r = PQexec(pg, sql);
	const char *got = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	if (PQresultStatus(r) != PGRES_FATAL_ERROR || !got || strcmp(got, state) != 0) {
		char why[512];
		snprintf(why, sizeof why, "%s %s", got ? got : "(accepted)",
		         PQresultErrorMessage(r));
		PQclear(r);
		fail_msg("PostgreSQL: %s: want SQLSTATE %s, got %s", sql, state, why);
	}
	return r;
}

/* An error field of r, "" when absent. */
static const char *field(const PGresult *r, int code)
{
	const char *f = PQresultErrorField(r, code);
	return f ? f : "";
}

/* The one value of a one-row, one-column query. */
static void pg_value(const char *sql, char *out, size_t size)
{
	PGresult *r = PQexec(pg, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 || PQnfields(r) != 1) {
		PQclear(r);
		fail_msg("PostgreSQL: %s: not one value", sql);
	}
	snprintf(out, size, "%s", PQgetisnull(r, 0, 0) ? "NULL" : PQgetvalue(r, 0, 0));
	PQclear(r);
}

static void read_password(const char *path, char *out, size_t size)
{
	FILE *f = fopen(path, "r");
	if (!f)
		fail_msg("cannot read the password file %s", path);
	size_t n = fread(out, 1, size - 1, f);
	fclose(f);
	out[n] = '\0';
	out[strcspn(out, "\r\n")] = '\0';
}

static int group_setup(void **state)
{
	(void)state;
	const char *url = getenv("KMS_TEST_PG_URL");
	const char *password_file = getenv("KMS_TEST_PG_PASSWORD_FILE");
	if (!url || !password_file) {
		fprintf(stderr, "test_store_schema_pg: KMS_TEST_PG_URL and KMS_TEST_PG_PASSWORD_FILE "
		                "are not set: run it under tests/support/with-postgres\n");
		return -1;
	}
	char password[256];
	read_password(password_file, password, sizeof password);
	const char *keys[] = { "dbname", "password", "connect_timeout", NULL };
	const char *values[] = { url, password, "30", NULL };
	pg = PQconnectdbParams(keys, values, 1);
	explicit_bzero(password, sizeof password);
	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(stderr, "test_store_schema_pg: connect: %s", PQerrorMessage(pg));
		return -1;
	}
	/* Nothing here waits on anyone; should it, it stops. */
	pg_ok("SET statement_timeout = '60s'");
	pg_ok("SET client_min_messages = warning");
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	PQfinish(pg);
	pg = NULL;
	return 0;
}

/* ---- SQLite ---- */

/* repeat(text, n) for SQLite, as PostgreSQL's (bounded for the test). */
static void lite_repeat(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	(void)argc;
	const unsigned char *s = sqlite3_value_text(argv[0]);
	int len = sqlite3_value_bytes(argv[0]);
	sqlite3_int64 n = sqlite3_value_int64(argv[1]);
	if (!s || len > 16 || n < 0 || n > 65536) {
		sqlite3_result_error(ctx, "repeat: past the test's bounds", -1);
		return;
	}
	size_t total = (size_t)len * (size_t)n;
	char *out = sqlite3_malloc64(total + 1);
	if (!out) {
		sqlite3_result_error_nomem(ctx);
		return;
	}
	for (sqlite3_int64 i = 0; i < n; i++)
		memcpy(out + (size_t)i * (size_t)len, s, (size_t)len);
	out[total] = '\0';
	sqlite3_result_text64(ctx, out, total, sqlite3_free, SQLITE_UTF8);
}

static void lite_ok(const char *sql)
{
	char *why = NULL;
	if (sqlite3_exec(lite, sql, NULL, NULL, &why) != SQLITE_OK) {
		char msg[512];
		snprintf(msg, sizeof msg, "%s", why ? why : "");
		sqlite3_free(why);
		fail_msg("SQLite refused %.200s: %s", sql, msg);
	}
}

/* The text of the SQL string literal starting at p (just past its opening
 * quote), '' read as ', into out; false if it does not end. */
static bool sql_literal(const char *p, char *out, size_t size)
{
	size_t n = 0;
	for (; *p; p++) {
		if (*p == '\'') {
			if (p[1] != '\'') {
				out[n] = '\0';
				return true;
			}
			p++;
		}
		if (n + 1 >= size)
			return false;
		out[n++] = *p;
	}
	return false;
}

/* The message of SQLite trigger name: its RAISE(ABORT, '...') text. */
static void lite_trigger_message(const char *name, char *out, size_t size)
{
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(lite,
	                                    "SELECT sql FROM sqlite_schema "
	                                    "WHERE type = 'trigger' AND name = ?1",
	                                    -1, &s, NULL),
	                 SQLITE_OK);
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	if (sqlite3_step(s) != SQLITE_ROW) {
		sqlite3_finalize(s);
		fail_msg("SQLite has no trigger %s", name);
	}
	const char *sql = (const char *)sqlite3_column_text(s, 0);
	const char *raise = sql ? strstr(sql, "RAISE(ABORT, '") : NULL;
	bool ok = raise && sql_literal(raise + strlen("RAISE(ABORT, '"), out, size);
	sqlite3_finalize(s);
	if (!ok)
		fail_msg("SQLite trigger %s: no RAISE(ABORT, '...') found", name);
}

/* ---- worlds ---- */

/* A fresh PostgreSQL schema with the migration applied in one
 * transaction, and an in-memory SQLite store schema beside it. */
static int world_setup(void **state)
{
	(void)state;
	char sql[128];
	snprintf(world, sizeof world, "world_%d", ++worlds);
	snprintf(sql, sizeof sql, "CREATE SCHEMA %s", world);
	pg_ok(sql);
	snprintf(sql, sizeof sql, "SET search_path TO %s", world);
	pg_ok(sql);
	for (int from = 0; from < STORE_SCHEMA_VERSION;) {
		pg_ok("BEGIN");
		pg_ok(store_pg_migration_sql(from));
		pg_ok("COMMIT");
		char v[16];
		pg_value("SELECT max(version) FROM schema_version", v, sizeof v);
		assert_true(atoi(v) > from);
		from = atoi(v);
	}
	/* SQLite's zeroblob(n), for the test's statements only. */
	pg_ok("CREATE FUNCTION zeroblob(n bigint) RETURNS blob LANGUAGE sql IMMUTABLE "
	      "AS $$ SELECT decode(repeat('00', n::int), 'hex')::blob $$");

	assert_int_equal(sqlite3_open(":memory:", &lite), SQLITE_OK);
	sqlite3_extended_result_codes(lite, 1);
	assert_int_equal(sqlite3_create_function(lite, "repeat", 2,
	                                         SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
	                                         lite_repeat, NULL, NULL),
	                 SQLITE_OK);
	lite_ok("PRAGMA foreign_keys = ON");
	for (int v = 0; v < STORE_SCHEMA_VERSION; v++)
		lite_ok(store_migration_sql(v));
	return 0;
}

static int world_teardown(void **state)
{
	(void)state;
	sqlite3_close(lite);
	lite = NULL;
	return 0;
}

/* ---- statements on both ---- */

typedef struct rule_case {
	const char *sqlstate;    /* NULL: accepted, changing a row at least */
	const char *rule;        /* the trigger or constraint that refuses */
	const char *sql;         /* the same text on both databases */
	const char *sqlite_rule; /* the trigger SQLite names, when it differs */
} rule_case;

#define ALLOW(sql) { NULL, NULL, (sql), NULL }
#define BY_RULE(name, sql) { STORE_PG_RULE_SQLSTATE, (name), (sql), NULL }
#define BY_CHECK(name, sql) { "23514", (name), (sql), NULL }
#define BY_UNIQUE(name, sql) { "23505", (name), (sql), NULL }
#define BY_FKEY(name, sql) { "23503", (name), (sql), NULL }

/* SQLite's extended code for a PostgreSQL SQLSTATE (and its other one). */
static void lite_codes(const char *sqlstate, int *code, int *also)
{
	*code = -1;
	*also = -1;
	if (strcmp(sqlstate, STORE_PG_RULE_SQLSTATE) == 0)
		*code = SQLITE_CONSTRAINT_TRIGGER;
	else if (strcmp(sqlstate, "23514") == 0)
		*code = SQLITE_CONSTRAINT_CHECK;
	else if (strcmp(sqlstate, "23503") == 0)
		*code = SQLITE_CONSTRAINT_FOREIGNKEY;
	else if (strcmp(sqlstate, "23505") == 0) {
		*code = SQLITE_CONSTRAINT_UNIQUE;
		*also = SQLITE_CONSTRAINT_PRIMARYKEY;
	} else
		fail_msg("no SQLite code for SQLSTATE %s", sqlstate);
}

static void run_lite(size_t i, const rule_case *c, long *changes)
{
	char *why = NULL;
	int rc = sqlite3_exec(lite, c->sql, NULL, NULL, &why);
	char msg[512];
	snprintf(msg, sizeof msg, "%s", why ? why : "");
	sqlite3_free(why);
	*changes = sqlite3_changes(lite);
	if (!c->sqlstate) {
		if (rc != SQLITE_OK)
			fail_msg("case %zu: SQLite refused %s: %s", i, c->sql, msg);
		return;
	}
	int code, also;
	lite_codes(c->sqlstate, &code, &also);
	if (rc != code && rc != also)
		fail_msg("case %zu: SQLite: %s: want code %d, got %d (%s)", i, c->sql, code, rc,
		         msg);
	if (code == SQLITE_CONSTRAINT_TRIGGER) {
		char want[512];
		lite_trigger_message(c->sqlite_rule ? c->sqlite_rule : c->rule, want, sizeof want);
		if (strcmp(msg, want) != 0)
			fail_msg("case %zu: SQLite: %s: want \"%s\", got \"%s\"", i, c->sql, want,
			         msg);
	}
}

static void run_pg(size_t i, const rule_case *c, long lite_changes)
{
	PGresult *r = PQexec(pg, c->sql);
	ExecStatusType st = PQresultStatus(r);
	char msg[512];
	snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
	if (!c->sqlstate) {
		long changes = strtol(PQcmdTuples(r), NULL, 10);
		PQclear(r);
		if (st != PGRES_COMMAND_OK)
			fail_msg("case %zu: PostgreSQL refused %s: %s", i, c->sql, msg);
		if (changes != lite_changes || changes < 1)
			fail_msg("case %zu: %s changed %ld rows on PostgreSQL, %ld on SQLite", i,
			         c->sql, changes, lite_changes);
		accepted_n++;
		return;
	}
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	const char *constraint = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
	const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	char got_state[8], got_constraint[128], got_message[512];
	snprintf(got_state, sizeof got_state, "%s", state ? state : "-");
	snprintf(got_constraint, sizeof got_constraint, "%s", constraint ? constraint : "-");
	snprintf(got_message, sizeof got_message, "%s", primary ? primary : "-");
	PQclear(r);
	if (st != PGRES_FATAL_ERROR || strcmp(got_state, c->sqlstate) != 0 ||
	    strcmp(got_constraint, c->rule) != 0)
		fail_msg("case %zu: PostgreSQL: %s: want %s by %s, got %s by %s: %s", i, c->sql,
		         c->sqlstate, c->rule, st == PGRES_FATAL_ERROR ? got_state : "accepted",
		         got_constraint, msg);
	if (strcmp(c->sqlstate, STORE_PG_RULE_SQLSTATE) == 0) {
		char want[512];
		lite_trigger_message(c->rule, want, sizeof want);
		if (strcmp(got_message, want) != 0)
			fail_msg("case %zu: PostgreSQL: %s: want \"%s\", got \"%s\"", i, c->sql, want,
			         got_message);
	}
	hit(c->rule);
	refused_n++;
}

static void run_cases(const rule_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		long changes;
		run_lite(i, &cases[i], &changes);
		run_pg(i, &cases[i], changes);
	}
}
#define RUN(cases) run_cases((cases), sizeof(cases) / sizeof((cases)[0]))

/* ---- the rows the statements use ---- */

#define K1 "k-00000000000000000000000000000001"
#define K2 "k-00000000000000000000000000000002"
#define K3 "k-00000000000000000000000000000003"
#define K4 "k-00000000000000000000000000000004"
#define K5 "k-00000000000000000000000000000005"
#define K9 "k-00000000000000000000000000000009" /* never inserted */
#define E_ACUTE "\xc3\xa9"                        /* U+00E9: one character, two bytes */

/* 40 bytes, as RFC 5649 wraps a 32-byte key. */
#define W40A "CAST('0123456789abcdef0123456789abcdef01234567' AS BLOB)"
#define W40B "CAST('fedcba9876543210fedcba9876543210fedcba98' AS BLOB)"

#define KEY(id, state, lifecycle, protection, pdp)                                        \
	"INSERT INTO keys (id, spec, usage, state, primary_version, created_at, region, "     \
	"lifecycle, protection, per_data_principal) VALUES ('" id "', 1, 1, " state ", 1, 1, " \
	"'in-test-1', '" lifecycle "', '" protection "', " pdp ")"
#define KEK_ROW(id, hsm_id, state)                                          \
	"INSERT INTO keks (id, hsm_id, state, created_at) VALUES (" id ", " \
	hsm_id ", '" state "', 1)"
#define KEK(id) KEK_ROW(id, "'kms-kek-0000000" id "'", "creating")
#define VERSION(key, v, state, kek, wrapped)                                              \
	"INSERT INTO key_versions (key_id, version, created_at, state, kek_id, wrapped) " \
	"VALUES ('" key "', " v ", 2, '" state "', " kek ", " wrapped ")"

/* ---- test_store_material's statements, and the rest of the KEKs' ---- */

static void test_keks(void **state)
{
	(void)state;
	static const rule_case cases[] = {
		ALLOW(KEK("1")),
		ALLOW("UPDATE keks SET state = 'current' WHERE id = 1"),
		ALLOW(KEK("2")),
		/* Rotation: the old one draining, the new one current. */
		ALLOW("UPDATE keks SET state = 'draining' WHERE id = 1"),
		ALLOW("UPDATE keks SET state = 'current' WHERE id = 2"),
		/* A draining KEK cannot come back; a retired one stays retired. */
		BY_RULE("keks_no_return", "UPDATE keks SET state = 'current' WHERE id = 1"),
		ALLOW("UPDATE keks SET state = 'retired', retired_at = 300 WHERE id = 1"),
		BY_RULE("keks_retired_final", "UPDATE keks SET state = 'draining' WHERE id = 1"),
		BY_RULE("keks_retired_final", "UPDATE keks SET retired_at = 301 WHERE id = 1"),
		/* An abandoned creation retires. */
		ALLOW(KEK("3")),
		ALLOW("UPDATE keks SET state = 'retired', retired_at = 401 WHERE id = 3"),
		ALLOW(KEK("4")),
		/* test_store_material's test_keks, statement for statement. */
		BY_RULE("keks_kept", "DELETE FROM keks WHERE id = 1"),
		BY_UNIQUE("keks_one_current", "UPDATE keks SET state = 'current' WHERE id = 4"),
		BY_RULE("keks_fixed", "UPDATE keks SET hsm_id = 'other' WHERE id = 4"),
		BY_RULE("keks_no_return", "UPDATE keks SET state = 'creating' WHERE id = 2"),
		BY_CHECK("keks_hsm_id_check", KEK_ROW("9", "'has space'", "creating")),
		BY_UNIQUE("keks_hsm_id_key", KEK_ROW("9", "'kms-kek-00000002'", "creating")),
		/* More of the same rules. */
		BY_RULE("keks_fixed", "UPDATE keks SET created_at = 7 WHERE id = 4"),
		BY_RULE("keks_fixed", "UPDATE keks SET id = 8 WHERE id = 4"),
		BY_CHECK("keks_id_check", KEK_ROW("0", "'kms-kek-00000000'", "creating")),
		BY_UNIQUE("keks_pkey", KEK_ROW("4", "'kms-kek-0000000x'", "creating")),
		BY_CHECK("keks_state_check", KEK_ROW("9", "'kms-kek-00000009'", "lost")),
		BY_CHECK("keks_hsm_id_check", KEK_ROW("9", "'kek-" E_ACUTE "'", "creating")),
		BY_CHECK("keks_hsm_id_check", KEK_ROW("9", "''", "creating")),
		BY_CHECK("keks_hsm_id_check", KEK_ROW("9", "repeat('k', 65)", "creating")),
		/* 64 printable ASCII characters, the range's two ends among them. */
		ALLOW(KEK_ROW("9", "'!' || repeat('k', 62) || '~'", "creating")),
	};
	RUN(cases);
}

static void test_protection(void **state)
{
	(void)state;
	static const rule_case cases[] = {
		ALLOW(KEY(K1, "1", "ready", "hsm-resident", "0")),
		ALLOW(KEY(K2, "1", "ready", "wrapped", "0")),
		ALLOW(KEY(K4, "4", "destroyed", "hsm-resident", "0")),
		/* test_store_material's test_protection. */
		BY_RULE("keys_protection_fixed", "UPDATE keys SET protection = 'wrapped'"),
		BY_CHECK("keys_protection_check", KEY(K9, "1", "ready", "other", "0")),
		/* Written unchanged, a fixed column passes (IS NOT). */
		ALLOW("UPDATE keys SET protection = protection"),
		BY_RULE("keys_destroyed_final",
		        "UPDATE keys SET lifecycle = 'ready' WHERE id = '" K4 "'"),
		BY_RULE("keys_destroyed_final", "UPDATE keys SET state = 1 WHERE id = '" K4 "'"),
		ALLOW("UPDATE keys SET description = 'gone' WHERE id = '" K4 "'"),
		BY_RULE("keys_per_data_principal_fixed",
		        "UPDATE keys SET per_data_principal = 1 WHERE id = '" K1 "'"),
		ALLOW("UPDATE keys SET per_data_principal = 0 WHERE id = '" K1 "'"),
		/* A key's legal moves, to the end. */
		ALLOW("UPDATE keys SET state = 2 WHERE id = '" K1 "'"),
		ALLOW("UPDATE keys SET state = 3, deletion_date = 100 WHERE id = '" K1 "'"),
		ALLOW("UPDATE keys SET lifecycle = 'destroying' WHERE id = '" K1 "'"),
		ALLOW("UPDATE keys SET state = 4, lifecycle = 'destroyed' WHERE id = '" K1 "'"),
		/* The columns' CHECKs. */
		BY_UNIQUE("keys_pkey", KEY(K2, "1", "ready", "wrapped", "0")),
		BY_CHECK("keys_id_check", KEY("k-123", "1", "ready", "wrapped", "0")),
		BY_CHECK("keys_id_check",
		         KEY("x-00000000000000000000000000000009", "1", "ready", "wrapped", "0")),
		/* 256 bytes in 128 characters pass; 258 in 129 do not: bytes count. */
		ALLOW("UPDATE keys SET description = repeat('" E_ACUTE "', 128) WHERE id = '" K2
		      "'"),
		BY_CHECK("keys_description_check",
		         "UPDATE keys SET description = repeat('" E_ACUTE "', 129) WHERE id = '" K2
		         "'"),
		BY_CHECK("keys_spec_check", "UPDATE keys SET spec = 5 WHERE id = '" K2 "'"),
		BY_CHECK("keys_usage_check", "UPDATE keys SET usage = 0 WHERE id = '" K2 "'"),
		BY_CHECK("keys_state_check", "UPDATE keys SET state = 5 WHERE id = '" K2 "'"),
		BY_CHECK("keys_primary_version_check",
		         "UPDATE keys SET primary_version = -1 WHERE id = '" K2 "'"),
		BY_CHECK("keys_rotation_period_days_check",
		         "UPDATE keys SET rotation_period_days = 3651 WHERE id = '" K2 "'"),
		ALLOW("UPDATE keys SET policy = repeat('x', 32768) WHERE id = '" K2 "'"),
		BY_CHECK("keys_policy_check",
		         "UPDATE keys SET policy = repeat('x', 32769) WHERE id = '" K2 "'"),
		BY_CHECK("keys_lifecycle_check",
		         "UPDATE keys SET lifecycle = 'gone' WHERE id = '" K2 "'"),
		BY_CHECK("keys_per_data_principal_check", KEY(K9, "1", "ready", "wrapped", "2")),
	};
	RUN(cases);
}

#define V1 " WHERE key_id = '" K1 "' AND version = 1"
#define V2 " WHERE key_id = '" K1 "' AND version = 2"

static void test_triggers(void **state)
{
	(void)state;
	static const rule_case cases[] = {
		/* test_store_material's hierarchy(): a current KEK, a wrapped key
		 * with v1 active under it; then a second KEK made current. */
		ALLOW(KEK("1")),
		ALLOW("UPDATE keks SET state = 'current' WHERE id = 1"),
		ALLOW(KEY(K1, "1", "ready", "wrapped", "0")),
		ALLOW(VERSION(K1, "1", "creating", "1", W40A)),
		ALLOW("UPDATE key_versions SET state = 'active'" V1),
		ALLOW(KEK("2")),
		ALLOW("UPDATE keks SET state = 'draining' WHERE id = 1"),
		ALLOW("UPDATE keks SET state = 'current' WHERE id = 2"),
		/* test_store_material's test_triggers, statement for statement:
		 * new bytes under the same KEK, or the same bytes under another. */
		BY_RULE("key_versions_material_change",
		        "UPDATE key_versions SET wrapped = zeroblob(40)" V1),
		BY_RULE("key_versions_material_change", "UPDATE key_versions SET kek_id = 2" V1),
		/* One without the other. */
		BY_RULE("key_versions_material_pair", "UPDATE key_versions SET wrapped = NULL" V1),
		/* (Also a change of KEK without new bytes: both name that rule.) */
		BY_RULE("key_versions_material_change", "UPDATE key_versions SET kek_id = NULL" V1),
		/* Destroyed with material; out of bounds; under an unknown KEK. */
		BY_RULE("key_versions_destroyed_bare",
		        "UPDATE key_versions SET state = 'destroyed'" V1),
		BY_CHECK("key_versions_wrapped_check",
		         "UPDATE key_versions SET kek_id = 2, wrapped = zeroblob(15)" V1),
		BY_FKEY("key_versions_kek_id_fkey",
		        "UPDATE key_versions SET kek_id = 9, wrapped = zeroblob(40)" V1),
		/* A re-wrap (both, to another KEK) and a destroy (both to NULL). */
		ALLOW("UPDATE key_versions SET kek_id = 2, wrapped = zeroblob(40)" V1),
		ALLOW("UPDATE key_versions SET state = 'destroyed', kek_id = NULL, "
		      "wrapped = NULL" V1),
		/* Material never comes back to a version past its creation. */
		BY_RULE("key_versions_destroyed_bare",
		        "UPDATE key_versions SET kek_id = 2, wrapped = zeroblob(40)" V1),
		/* Two rules broken at once: each database names one (docs). */
		{ STORE_PG_RULE_SQLSTATE, "key_versions_destroyed_final",
		  "UPDATE key_versions SET state = 'active'" V1, "key_versions_wrapped_active" },
		BY_RULE("key_versions_material_insert",
		        VERSION(K1, "5", "destroyed", "2", "zeroblob(40)")),

		/* Reservations only go up. */
		ALLOW(VERSION(K1, "2", "active", "2", W40B)),
		ALLOW("UPDATE key_versions SET encryptions_reserved = 10" V2),
		ALLOW("UPDATE key_versions SET encryptions_reserved = 11" V2),
		BY_RULE("key_versions_reserved_monotonic",
		        "UPDATE key_versions SET encryptions_reserved = 5" V2),
		BY_CHECK("key_versions_encryptions_reserved_check",
		         "INSERT INTO key_versions (key_id, version, created_at, state, "
		         "encryptions_reserved) VALUES ('" K1 "', 7, 2, 'creating', -1)"),
		/* An hsm-resident key's versions keep no material. */
		ALLOW(KEY(K3, "1", "ready", "hsm-resident", "0")),
		BY_RULE("key_versions_material_wrapped_only",
		        VERSION(K3, "1", "creating", "2", "zeroblob(40)")),
		ALLOW(VERSION(K3, "1", "creating", "NULL", "NULL")),
		BY_RULE("key_versions_material_set_wrapped_only",
		        "UPDATE key_versions SET kek_id = 2, wrapped = zeroblob(40) "
		        "WHERE key_id = '" K3 "' AND version = 1"),
		ALLOW("UPDATE key_versions SET state = 'active' WHERE key_id = '" K3 "'"),
		ALLOW("UPDATE key_versions SET state = 'destroyed' WHERE key_id = '" K3 "'"),
		BY_RULE("key_versions_destroyed_final",
		        "UPDATE key_versions SET state = 'creating' WHERE key_id = '" K3 "'"),
		/* A wrapped key's active version has material. */
		BY_RULE("key_versions_wrapped_active_insert",
		        VERSION(K1, "3", "active", "NULL", "NULL")),
		ALLOW(VERSION(K1, "4", "creating", "NULL", "NULL")),
		BY_RULE("key_versions_wrapped_active",
		        "UPDATE key_versions SET state = 'active' WHERE key_id = '" K1
		        "' AND version = 4"),
		/* Only under a current or draining KEK. */
		ALLOW(KEK("3")),
		ALLOW("UPDATE keks SET state = 'retired' WHERE id = 3"),
		BY_RULE("key_versions_kek_live_insert", VERSION(K1, "6", "creating", "3", W40A)),
		BY_RULE("key_versions_kek_live_update",
		        "UPDATE key_versions SET kek_id = 3, wrapped = " W40A V2),
		/* A public key is written once. */
		ALLOW("UPDATE key_versions SET public_key = zeroblob(32)" V2),
		ALLOW("UPDATE key_versions SET public_key = zeroblob(32)" V2),
		BY_RULE("key_versions_public_key_fixed",
		        "UPDATE key_versions SET public_key = zeroblob(33)" V2),
		BY_RULE("key_versions_public_key_fixed",
		        "UPDATE key_versions SET public_key = NULL" V2),
		BY_CHECK("key_versions_public_key_check",
		         "UPDATE key_versions SET public_key = zeroblob(31) WHERE key_id = '" K1
		         "' AND version = 4"),
		/* A KEK retires once it wraps nothing. */
		BY_RULE("keks_retire_empty", "UPDATE keks SET state = 'retired' WHERE id = 2"),
		ALLOW("UPDATE keks SET state = 'retired', retired_at = 40 WHERE id = 1"),
		/* Keys, bounds, states. */
		BY_UNIQUE("key_versions_pkey", VERSION(K1, "2", "creating", "NULL", "NULL")),
		BY_FKEY("key_versions_key_id_fkey", VERSION(K9, "1", "creating", "NULL", "NULL")),
		BY_CHECK("key_versions_version_check", VERSION(K1, "0", "creating", "NULL", "NULL")),
		BY_CHECK("key_versions_version_check",
		         VERSION(K1, "4294967296", "creating", "NULL", "NULL")),
		ALLOW(VERSION(K1, "4294967295", "creating", "NULL", "NULL")),
		BY_CHECK("key_versions_state_check", VERSION(K1, "8", "lost", "NULL", "NULL")),
		/* A key row's deletion takes its versions. */
		ALLOW("DELETE FROM keys WHERE id = '" K3 "'"),
	};
	RUN(cases);
}

/* ---- principals, access keys, grants ---- */

#define PRINCIPAL(name)                                                                  \
	"INSERT INTO principals (name, roles, cert_name, state, created_at, updated_at) " \
	"VALUES (" name ", 1, '', 'enabled', 1, 1)"
#define AK_A "AKAAAAAAAAAAAAAAAAAAAA"
#define AK_B "AKBBBBBBBBBBBBBBBBBBBB"
#define AK_C "AKCCCCCCCCCCCCCCCCCCCC"
#define AK_D "AKDDDDDDDDDDDDDDDDDDDD"
#define AK_E "AKEEEEEEEEEEEEEEEEEEEE"
#define AK_F "AKFFFFFFFFFFFFFFFFFFFF"
#define AK_G "AKGGGGGGGGGGGGGGGGGGGG"
#define AK_VALUES(id, principal, wrapped, state) \
	"('" id "', '" principal "', " wrapped ", '" state "', 1)"
#define AK_INSERT "INSERT INTO access_keys (id, principal, wrapped, state, created_at) VALUES "
#define AK(id, principal, state) \
	AK_INSERT AK_VALUES(id, principal, "CAST('wrapped secret' AS BLOB)", state)
#define DAVE_ACTIVE(id) AK_VALUES(id, "dave", "zeroblob(8)", "active")
#define GR_A "GRAAAAAAAAAAAAAAAAAAAA"
#define GR_B "GRBBBBBBBBBBBBBBBBBBBB"
#define GR_C "GRCCCCCCCCCCCCCCCCCCCC"
#define GR_D "GRDDDDDDDDDDDDDDDDDDDD"
#define GRANT_ROW(id, key, grantee, operations, context, creator, state)                    \
	"INSERT INTO grants (id, key_id, grantee, operations, context, creator, state, "     \
	"created_at) VALUES ('" id "', '" key "', '" grantee "', " operations ", " context \
	", " creator ", '" state "', 1)"
#define GRANT(id, key, grantee, operations) \
	GRANT_ROW(id, key, grantee, operations, "CAST('{}' AS BLOB)", "'admin'", "live")

static void test_authz(void **state)
{
	(void)state;
	static const rule_case cases[] = {
		ALLOW(KEY(K1, "1", "ready", "hsm-resident", "0")),
		ALLOW(KEY(K2, "1", "ready", "hsm-resident", "0")),
		ALLOW("INSERT INTO principals (name, roles, cert_name, state, created_at, "
		      "updated_at) VALUES ('alice', 1, '', 'enabled', 1, 1), "
		      "('bob', 7, 'CN=bob', 'enabled', 1, 1), ('dave', 2, '', 'enabled', 1, 1)"),
		/* A deleted principal is a tombstone: no change, no row deleted,
		 * its name never reused. */
		ALLOW("UPDATE principals SET state = 'disabled', updated_at = 2 WHERE name = 'bob'"),
		ALLOW("UPDATE principals SET state = 'deleted', updated_at = 3 WHERE name = 'bob'"),
		BY_RULE("principals_deleted_final",
		        "UPDATE principals SET state = 'enabled' WHERE name = 'bob'"),
		BY_RULE("principals_deleted_final",
		        "UPDATE principals SET updated_at = 4 WHERE name = 'bob'"),
		BY_RULE("principals_kept", "DELETE FROM principals WHERE name = 'alice'"),
		BY_UNIQUE("principals_pkey", PRINCIPAL("'bob'")),
		BY_CHECK("principals_name_check", PRINCIPAL("'has space'")),
		BY_CHECK("principals_name_check", PRINCIPAL("'ren" E_ACUTE "'")),
		BY_CHECK("principals_name_check", PRINCIPAL("repeat('a', 64)")),
		BY_CHECK("principals_name_check", PRINCIPAL("''")),
		ALLOW(PRINCIPAL("'a.b_c-D9'")),
		BY_CHECK("principals_roles_check",
		         "UPDATE principals SET roles = 8 WHERE name = 'alice'"),
		BY_CHECK("principals_roles_check",
		         "UPDATE principals SET roles = 0 WHERE name = 'alice'"),
		ALLOW("UPDATE principals SET cert_name = repeat('" E_ACUTE
		      "', 32) WHERE name = 'alice'"),
		BY_CHECK("principals_cert_name_check",
		         "UPDATE principals SET cert_name = repeat('" E_ACUTE
		         "', 33) WHERE name = 'alice'"),
		BY_CHECK("principals_state_check",
		         "UPDATE principals SET state = 'gone' WHERE name = 'alice'"),

		/* Access keys: two active at most, owner and secret fixed,
		 * revoked is final. */
		ALLOW(AK(AK_A, "alice", "active")),
		ALLOW(AK(AK_B, "alice", "active")),
		BY_RULE("access_keys_two_active", AK(AK_C, "alice", "active")),
		ALLOW(AK(AK_C, "alice", "revoked")),
		BY_RULE("access_keys_fixed",
		        "UPDATE access_keys SET principal = 'dave' WHERE id = '" AK_A "'"),
		BY_RULE("access_keys_fixed",
		        "UPDATE access_keys SET wrapped = CAST('other secret' AS BLOB) "
		        "WHERE id = '" AK_A "'"),
		BY_RULE("access_keys_fixed",
		        "UPDATE access_keys SET created_at = 9 WHERE id = '" AK_A "'"),
		BY_RULE("access_keys_fixed",
		        "UPDATE access_keys SET id = '" AK_G "' WHERE id = '" AK_A "'"),
		ALLOW("UPDATE access_keys SET state = 'revoked', revoked_at = 5 WHERE id = '" AK_A
		      "'"),
		BY_RULE("access_keys_revoked_final",
		        "UPDATE access_keys SET state = 'active' WHERE id = '" AK_A "'"),
		/* The rule is on the state column only (UPDATE OF state). */
		ALLOW("UPDATE access_keys SET revoked_at = 6 WHERE id = '" AK_A "'"),
		/* In one statement, each row's rule sees the rows before it. */
		BY_RULE("access_keys_two_active",
		        AK_INSERT DAVE_ACTIVE(AK_D) ", " DAVE_ACTIVE(AK_E) ", " DAVE_ACTIVE(AK_F)),
		ALLOW(AK_INSERT DAVE_ACTIVE(AK_D) ", " DAVE_ACTIVE(AK_E)),
		ALLOW(AK("AK234567234567234567ZZ", "alice", "active")),
		BY_UNIQUE("access_keys_pkey", AK(AK_A, "dave", "revoked")),
		BY_CHECK("access_keys_id_check", AK("AKaaaaaaaaaaaaaaaaaaaa", "dave", "revoked")),
		BY_CHECK("access_keys_id_check", AK("AK1AAAAAAAAAAAAAAAAAAA", "dave", "revoked")),
		BY_CHECK("access_keys_id_check", AK("AKAAAAAAAAAAAAAAAAAAA", "dave", "revoked")),
		BY_CHECK("access_keys_id_check", AK("XKAAAAAAAAAAAAAAAAAAAA", "dave", "revoked")),
		BY_FKEY("access_keys_principal_fkey", AK(AK_G, "nobody", "revoked")),
		BY_CHECK("access_keys_wrapped_check",
		         AK_INSERT AK_VALUES(AK_G, "dave", "CAST('' AS BLOB)", "revoked")),
		BY_CHECK("access_keys_wrapped_check",
		         AK_INSERT AK_VALUES(AK_G, "dave", "zeroblob(129)", "revoked")),
		BY_CHECK("access_keys_state_check", AK(AK_G, "dave", "lost")),

		/* Grants: an ended grant stays ended. */
		ALLOW(GRANT(GR_A, K1, "alice", "'encrypt,decrypt'")),
		ALLOW(GRANT(GR_B, K2, "alice", "'encrypt'")),
		ALLOW("UPDATE grants SET state = 'retired', ended_at = 2 WHERE id = '" GR_A "'"),
		BY_RULE("grants_ended_final",
		        "UPDATE grants SET state = 'live' WHERE id = '" GR_A "'"),
		BY_RULE("grants_ended_final", "UPDATE grants SET ended_at = 3 WHERE id = '" GR_A "'"),
		BY_UNIQUE("grants_pkey", GRANT(GR_A, K1, "alice", "'encrypt'")),
		BY_CHECK("grants_id_check",
		         GRANT("GRaaaaaaaaaaaaaaaaaaaa", K1, "alice", "'encrypt'")),
		BY_FKEY("grants_key_id_fkey", GRANT(GR_C, K9, "alice", "'encrypt'")),
		BY_FKEY("grants_grantee_fkey", GRANT(GR_C, K1, "nobody", "'encrypt'")),
		BY_CHECK("grants_operations_check", GRANT(GR_C, K1, "alice", "'Encrypt'")),
		BY_CHECK("grants_operations_check", GRANT(GR_C, K1, "alice", "'encrypt;decrypt'")),
		BY_CHECK("grants_operations_check", GRANT(GR_C, K1, "alice", "''")),
		BY_CHECK("grants_operations_check", GRANT(GR_C, K1, "alice", "repeat('a', 785)")),
		ALLOW(GRANT(GR_C, K1, "alice", "repeat('a', 784)")),
		BY_CHECK("grants_context_check",
		         GRANT_ROW(GR_D, K1, "alice", "'encrypt'", "CAST('x' AS BLOB)", "'admin'",
		                   "live")),
		BY_CHECK("grants_context_check",
		         GRANT_ROW(GR_D, K1, "alice", "'encrypt'", "zeroblob(4097)", "'admin'",
		                   "live")),
		BY_CHECK("grants_creator_check",
		         GRANT_ROW(GR_D, K1, "alice", "'encrypt'", "CAST('{}' AS BLOB)", "''",
		                   "live")),
		BY_CHECK("grants_state_check",
		         GRANT_ROW(GR_D, K1, "alice", "'encrypt'", "CAST('{}' AS BLOB)", "'admin'",
		                   "lost")),
		/* A key row's deletion takes its grants. */
		ALLOW("DELETE FROM keys WHERE id = '" K2 "'"),
	};
	RUN(cases);
}

/* ---- consent ---- */

#define CM_ROW(id, kid, jwk, state)                                                         \
	"INSERT INTO consent_managers (id, kid, jwk, dp_key, principal, state, created_at, " \
	"created_by) VALUES (" id ", " kid ", " jwk ", '" K1 "', '', '" state "', 1, 'admin')"
#define CM(id, kid) CM_ROW(id, kid, "'{\"kty\":\"EC\"}'", "active")
#define DP_A "kp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" /* 46 characters */
#define DP_B "kp_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define DP_C "kp_ccccccccccccccccccccccccccccccccccccccccccc"
#define D32A "CAST('0123456789abcdef0123456789abcdef' AS BLOB)"
#define D32B "CAST('fedcba9876543210fedcba9876543210' AS BLOB)"
#define D32C "CAST('ABCDEFGHIJKLMNOPQRSTUVWXYZ012345' AS BLOB)"
#define D32X "CAST('abcdefghijklmnopqrstuvwxyz543210' AS BLOB)" /* never stored */
#define CONSENT_ROW(id, manager, artefact, digest, detail, purpose, onetime, window, unit,    \
                    value, status)                                                            \
	"INSERT INTO consents (id, manager, artefact, digest, detail_digest, dp, purpose, "   \
	"onetime, consent_start, consent_expiry, data_life_end, frequency_unit, "             \
	"frequency_value, status, status_at, status_by, imported_at, imported_by) VALUES (" id \
	", " manager ", " artefact ", " digest ", " detail ", '" DP_A "', " purpose            \
	", " onetime ", " window ", 30, " unit ", " value ", " status ", 10, 'cm-1', 10, "    \
	"'admin')"
/* A consent whose one odd field is given. */
#define CONSENT(id, detail)                                                                  \
	CONSENT_ROW(id, "'cm-1'", "CAST('{}' AS BLOB)", D32A, detail, "'MARKETING'", "0", "10, 20", \
	            "'DAY'", "1", "'ACTIVE'")
#define CONSENT_9(manager, artefact, digest, detail, purpose, onetime, window, unit, value, \
                  status)                                                                   \
	CONSENT_ROW("'c-9'", manager, artefact, digest, detail, purpose, onetime, window, unit, \
	            value, status)
#define C1 " WHERE id = 'c-1'"

static void test_consent(void **state)
{
	(void)state;
	static const rule_case cases[] = {
		ALLOW(CM("'cm-1'", "'kid-1'")),
		ALLOW(CM("'cm-2'", "'kid-2'")),
		BY_RULE("consent_managers_fixed",
		        "UPDATE consent_managers SET kid = 'kid-3' WHERE id = 'cm-1'"),
		BY_RULE("consent_managers_fixed",
		        "UPDATE consent_managers SET principal = 'alice' WHERE id = 'cm-1'"),
		ALLOW("UPDATE consent_managers SET state = 'removed', removed_at = 5 "
		      "WHERE id = 'cm-2'"),
		BY_RULE("consent_managers_removed_final",
		        "UPDATE consent_managers SET state = 'active' WHERE id = 'cm-2'"),
		ALLOW("UPDATE consent_managers SET removed_at = 6 WHERE id = 'cm-2'"),
		BY_RULE("consent_managers_kept", "DELETE FROM consent_managers WHERE id = 'cm-2'"),
		BY_UNIQUE("consent_managers_pkey", CM("'cm-1'", "'kid-9'")),
		BY_UNIQUE("consent_managers_kid_key", CM("'cm-3'", "'kid-1'")),
		BY_CHECK("consent_managers_id_check", CM("''", "'kid-9'")),
		BY_CHECK("consent_managers_id_check", CM("repeat('c', 64)", "'kid-9'")),
		BY_CHECK("consent_managers_kid_check", CM("'cm-3'", "''")),
		BY_CHECK("consent_managers_jwk_check", CM_ROW("'cm-3'", "'kid-9'", "'{'", "active")),
		BY_CHECK("consent_managers_state_check",
		         CM_ROW("'cm-3'", "'kid-9'", "'{}'", "gone")),

		/* Consents: fixed but for the status and the counters; the status
		 * moves by pause, resume and revoke only. */
		ALLOW(CONSENT("'c-1'", D32B)),
		ALLOW(CONSENT("'c-2'", D32C)),
		BY_RULE("consents_fixed", "UPDATE consents SET purpose = 'OTHER'" C1),
		BY_RULE("consents_fixed", "UPDATE consents SET artefact = CAST('[]' AS BLOB)" C1),
		BY_RULE("consents_fixed", "UPDATE consents SET imported_by = 'eve'" C1),
		ALLOW("UPDATE consents SET status = 'PAUSED', status_at = 11" C1),
		ALLOW("UPDATE consents SET status = 'ACTIVE', status_at = 12" C1),
		ALLOW("UPDATE consents SET status = 'REVOKED', status_at = 13" C1),
		ALLOW("UPDATE consents SET status = status" C1),
		BY_RULE("consents_status_moves", "UPDATE consents SET status = 'ACTIVE'" C1),
		BY_RULE("consents_status_moves", "UPDATE consents SET status = 'PAUSED'" C1),
		/* The rule comes before the column's CHECK, in both. */
		BY_RULE("consents_status_moves",
		        "UPDATE consents SET status = 'EXPIRED' WHERE id = 'c-2'"),
		ALLOW("UPDATE consents SET uses = uses + 1, window_start = 12, window_uses = 1" C1),
		BY_RULE("consents_kept", "DELETE FROM consents WHERE id = 'c-1'"),
		BY_UNIQUE("consents_pkey", CONSENT("'c-1'", D32X)),
		BY_UNIQUE("consents_detail_digest_key", CONSENT("'c-9'", D32B)),
		BY_CHECK("consents_id_check", CONSENT("''", D32X)),
		BY_FKEY("consents_manager_fkey",
		        CONSENT_9("'cm-9'", "CAST('{}' AS BLOB)", D32A, D32X, "'MARKETING'", "0",
		                  "10, 20", "'DAY'", "1", "'ACTIVE'")),
		BY_CHECK("consents_artefact_check",
		         CONSENT_9("'cm-1'", "CAST('x' AS BLOB)", D32A, D32X, "'MARKETING'", "0",
		                   "10, 20", "'DAY'", "1", "'ACTIVE'")),
		BY_CHECK("consents_digest_check",
		         CONSENT_9("'cm-1'", "CAST('{}' AS BLOB)", "zeroblob(31)", D32X,
		                   "'MARKETING'", "0", "10, 20", "'DAY'", "1", "'ACTIVE'")),
		BY_CHECK("consents_detail_digest_check",
		         CONSENT_9("'cm-1'", "CAST('{}' AS BLOB)", D32A, "zeroblob(33)",
		                   "'MARKETING'", "0", "10, 20", "'DAY'", "1", "'ACTIVE'")),
		BY_CHECK("consents_purpose_check",
		         CONSENT_9("'cm-1'", "CAST('{}' AS BLOB)", D32A, D32X, "''", "0", "10, 20",
		                   "'DAY'", "1", "'ACTIVE'")),
		BY_CHECK("consents_purpose_check",
		         CONSENT_9("'cm-1'", "CAST('{}' AS BLOB)", D32A, D32X, "repeat('p', 17)", "0",
		                   "10, 20", "'DAY'", "1", "'ACTIVE'")),
		BY_CHECK("consents_onetime_check",
		         CONSENT_9("'cm-1'", "CAST('{}' AS BLOB)", D32A, D32X, "'MARKETING'", "2",
		                   "10, 20", "'DAY'", "1", "'ACTIVE'")),
		BY_CHECK("consents_consent_expiry_check",
		         CONSENT_9("'cm-1'", "CAST('{}' AS BLOB)", D32A, D32X, "'MARKETING'", "0",
		                   "20, 20", "'DAY'", "1", "'ACTIVE'")),
		BY_CHECK("consents_frequency_unit_check",
		         CONSENT_9("'cm-1'", "CAST('{}' AS BLOB)", D32A, D32X, "'MARKETING'", "0",
		                   "10, 20", "'WEEK'", "1", "'ACTIVE'")),
		BY_CHECK("consents_frequency_value_check",
		         CONSENT_9("'cm-1'", "CAST('{}' AS BLOB)", D32A, D32X, "'MARKETING'", "0",
		                   "10, 20", "'DAY'", "0", "'ACTIVE'")),
		BY_CHECK("consents_status_check",
		         CONSENT_9("'cm-1'", "CAST('{}' AS BLOB)", D32A, D32X, "'MARKETING'", "0",
		                   "10, 20", "'DAY'", "1", "'EXPIRED'")),
	};
	RUN(cases);
}

/* ---- per-data-principal keys ---- */

#define DP_ROW(key, dp, version, state, kek, wrapped)                                        \
	"INSERT INTO dp_keys (key_id, dp, version, state, kek_id, wrapped, purpose, "        \
	"created_at) VALUES ('" key "', '" dp "', " version ", '" state "', " kek ", " wrapped \
	", 'billing', 10)"
#define DP_ID_ROW(id)                                                                        \
	"INSERT INTO dp_keys (id, key_id, dp, version, state, kek_id, wrapped, purpose, "    \
	"created_at) VALUES (" id ", '" K1 "', '" DP_C "', 1, 'active', 2, " W40A ", 'billing', " \
	"10)"
#define DPA1 " WHERE key_id = '" K1 "' AND dp = '" DP_A "' AND version = 1"
#define DPA2 " WHERE key_id = '" K1 "' AND dp = '" DP_A "' AND version = 2"
#define DPB " WHERE key_id = '" K1 "' AND dp = '" DP_B "'"
#define RETENTION(key, purpose, days) \
	"INSERT INTO key_retention (key_id, purpose, days) VALUES ('" key "', " purpose ", " days ")"

static void test_dp_keys(void **state)
{
	(void)state;
	static const rule_case cases[] = {
		ALLOW(KEK("1")),
		ALLOW("UPDATE keks SET state = 'current' WHERE id = 1"),
		ALLOW(KEK("2")),
		ALLOW(KEY(K1, "1", "ready", "wrapped", "1")),
		ALLOW(KEY(K5, "1", "creating", "wrapped", "1")),
		ALLOW(DP_ROW(K1, DP_A, "1", "active", "1", W40A)),
		ALLOW(DP_ROW(K1, DP_A, "2", "active", "1", W40A)),
		ALLOW(DP_ROW(K1, DP_B, "1", "active", "1", W40B)),
		BY_UNIQUE("dp_keys_key_id_dp_version_key",
		          DP_ROW(K1, DP_A, "1", "active", "1", W40B)),
		BY_RULE("dp_keys_fixed", "UPDATE dp_keys SET version = 3" DPA2),
		BY_RULE("dp_keys_fixed", "UPDATE dp_keys SET created_at = 11" DPA1),
		BY_RULE("dp_keys_fixed", "UPDATE dp_keys SET dp = '" DP_C "'" DPA1),
		BY_RULE("dp_keys_material_insert", DP_ROW(K1, DP_C, "1", "active", "NULL", "NULL")),
		BY_RULE("dp_keys_material_insert", DP_ROW(K1, DP_C, "1", "erased", "1", W40A)),
		BY_RULE("dp_keys_material_update", "UPDATE dp_keys SET wrapped = zeroblob(40)" DPA1),
		BY_RULE("dp_keys_material_update", "UPDATE dp_keys SET wrapped = NULL" DPA1),
		BY_RULE("dp_keys_material_update", "UPDATE dp_keys SET state = 'erased'" DPA1),
		/* A re-wrap to another KEK passes; a retired KEK wraps nothing. */
		ALLOW("UPDATE keks SET state = 'draining' WHERE id = 1"),
		ALLOW("UPDATE keks SET state = 'current' WHERE id = 2"),
		ALLOW("UPDATE dp_keys SET kek_id = 2, wrapped = " W40B DPA1),
		ALLOW(KEK("3")),
		ALLOW("UPDATE keks SET state = 'retired' WHERE id = 3"),
		BY_RULE("dp_keys_kek_live_update",
		        "UPDATE dp_keys SET kek_id = 3, wrapped = " W40B DPA2),
		BY_RULE("dp_keys_kek_live_insert", DP_ROW(K1, DP_C, "1", "active", "3", W40A)),
		BY_RULE("keks_retire_empty_dp", "UPDATE keks SET state = 'retired' WHERE id = 1"),
		/* Held, then erased: a hold stops the erasure; erased is final and
		 * a tombstone. */
		ALLOW("UPDATE dp_keys SET hold = 'statute 12'" DPB),
		BY_RULE("dp_keys_held",
		        "UPDATE dp_keys SET state = 'erased', kek_id = NULL, wrapped = NULL, "
		        "erased_at = 20" DPB),
		ALLOW("UPDATE dp_keys SET state = 'erased', kek_id = NULL, wrapped = NULL, "
		      "erased_at = 30, basis = 'request' "
		      "WHERE key_id = '" K1 "' AND dp = '" DP_A "'"),
		BY_RULE("dp_keys_erased_final", "UPDATE dp_keys SET basis = 'other'" DPA1),
		BY_RULE("dp_keys_tombstone", DP_ROW(K1, DP_A, "3", "active", "2", W40A)),
		BY_RULE("dp_keys_kept", "DELETE FROM dp_keys" DPB),
		/* A key still being created: its rows may go, and go with it. */
		ALLOW(DP_ROW(K5, DP_A, "1", "active", "2", W40A)),
		ALLOW("DELETE FROM dp_keys WHERE key_id = '" K5 "'"),
		ALLOW(DP_ROW(K5, DP_A, "1", "active", "2", W40A)),
		ALLOW("DELETE FROM keys WHERE id = '" K5 "'"),
		/* Keys and bounds. */
		BY_CHECK("dp_keys_id_check", DP_ID_ROW("0")),
		BY_UNIQUE("dp_keys_pkey", DP_ID_ROW("1")),
		BY_CHECK("dp_keys_dp_check",
		         DP_ROW(K1, "kp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		                "1", "active", "2", W40A)),
		BY_CHECK("dp_keys_dp_check",
		         DP_ROW(K1, "kp_cccccccccccccccccccccccccccccccccccccccccc" /* 45 */,
		                "1", "active", "2", W40A)),
		BY_CHECK("dp_keys_dp_check",
		         DP_ROW(K1, "xp_ccccccccccccccccccccccccccccccccccccccccccc",
		                "1", "active", "2", W40A)),
		BY_CHECK("dp_keys_version_check", DP_ROW(K1, DP_C, "-1", "active", "2", W40A)),
		BY_CHECK("dp_keys_version_check",
		         DP_ROW(K1, DP_C, "4294967296", "active", "2", W40A)),
		BY_CHECK("dp_keys_state_check", DP_ROW(K1, DP_C, "1", "gone", "2", W40A)),
		BY_CHECK("dp_keys_wrapped_check",
		         DP_ROW(K1, DP_C, "1", "active", "2", "zeroblob(15)")),
		ALLOW("UPDATE dp_keys SET purpose = repeat('p', 32)" DPB),
		BY_CHECK("dp_keys_purpose_check", "UPDATE dp_keys SET purpose = repeat('p', 33)" DPB),
		BY_CHECK("dp_keys_purpose_check", "UPDATE dp_keys SET purpose = 'has space'" DPB),
		BY_CHECK("dp_keys_hold_check",
		         "UPDATE dp_keys SET hold = repeat('" E_ACUTE "', 129)" DPB),
		BY_CHECK("dp_keys_basis_check",
		         "UPDATE dp_keys SET basis = repeat('" E_ACUTE "', 129)" DPB),
		BY_FKEY("dp_keys_key_id_fkey", DP_ROW(K9, DP_C, "1", "active", "2", W40A)),
		BY_FKEY("dp_keys_kek_id_fkey", DP_ROW(K1, DP_C, "1", "active", "9", W40A)),

		/* Retention per purpose. */
		ALLOW(RETENTION(K1, "'billing'", "30")),
		BY_UNIQUE("key_retention_pkey", RETENTION(K1, "'billing'", "31")),
		BY_FKEY("key_retention_key_id_fkey", RETENTION(K9, "'billing'", "30")),
		BY_CHECK("key_retention_purpose_check", RETENTION(K1, "''", "30")),
		BY_CHECK("key_retention_purpose_check", RETENTION(K1, "'has space'", "30")),
		BY_CHECK("key_retention_days_check", RETENTION(K1, "'support'", "0")),
		BY_CHECK("key_retention_days_check", RETENTION(K1, "'support'", "36501")),
	};
	RUN(cases);
}

/* ---- aliases, tags; text in byte order ---- */

#define ALIAS(name) "('alias/" name "', '" K1 "', 1)"

/* Runs sql on both; the rows (one text column) must be want, in order. */
static void same_rows(const char *sql, const char *const *want, size_t n)
{
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(lite, sql, -1, &s, NULL), SQLITE_OK);
	size_t i = 0;
	while (sqlite3_step(s) == SQLITE_ROW) {
		const char *got = (const char *)sqlite3_column_text(s, 0);
		if (i >= n || strcmp(got, want[i]) != 0)
			fail_msg("SQLite: %s: row %zu is %s", sql, i, got);
		i++;
	}
	sqlite3_finalize(s);
	assert_int_equal(i, n);

	PGresult *r = PQexec(pg, sql);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	size_t rows = (size_t)PQntuples(r);
	for (i = 0; i < rows && i < n; i++)
		if (strcmp(PQgetvalue(r, (int)i, 0), want[i]) != 0) {
			char got[128];
			snprintf(got, sizeof got, "%s", PQgetvalue(r, (int)i, 0));
			PQclear(r);
			fail_msg("PostgreSQL: %s: row %zu is %s, want %s", sql, i, got, want[i]);
		}
	PQclear(r);
	assert_int_equal(rows, n);
}

static void test_aliases_and_order(void **state)
{
	(void)state;
	static const rule_case cases[] = {
		ALLOW(KEY(K1, "1", "ready", "hsm-resident", "0")),
		ALLOW("INSERT INTO aliases (name, key_id, created_at) VALUES " ALIAS("Z") ", "
		      ALIAS("a") ", " ALIAS("_") ", " ALIAS("B") ", " ALIAS(E_ACUTE) ", "
		      ALIAS("z") ", " ALIAS("0")),
		BY_UNIQUE("aliases_pkey",
		          "INSERT INTO aliases (name, key_id, created_at) VALUES " ALIAS("a")),
		BY_FKEY("aliases_key_id_fkey",
		        "INSERT INTO aliases (name, key_id, created_at) VALUES ('alias/k', '" K9
		        "', 1)"),
		/* Case counts: 'Team' and 'team' are two tags. */
		ALLOW("INSERT INTO tags (key_id, k, v) VALUES ('" K1 "', 'Team', 'x'), ('" K1
		      "', 'team', 'y')"),
		BY_UNIQUE("tags_pkey", "INSERT INTO tags (key_id, k, v) VALUES ('" K1
		                       "', 'team', 'z')"),
		BY_FKEY("tags_key_id_fkey", "INSERT INTO tags (key_id, k, v) VALUES ('" K9
		                            "', 'team', 'z')"),
	};
	RUN(cases);

	/* Byte order, as SQLite's BINARY: '0' < 'B' < 'Z' < '_' < 'a' < 'z' <
	 * 0xC3 (the first byte of U+00E9). A language's collation would put
	 * '_' first and 'a' beside 'B'. */
	static const char *const all[] = { "alias/0", "alias/B", "alias/Z", "alias/_",
		                           "alias/a", "alias/z", "alias/" E_ACUTE };
	same_rows("SELECT name FROM aliases ORDER BY name", all, 7);
	/* A keyset page after 'alias/Z', as store_alias_list reads one. */
	static const char *const page[] = { "alias/_", "alias/a" };
	same_rows("SELECT name FROM aliases WHERE name > 'alias/Z' ORDER BY name LIMIT 2", page, 2);
	static const char *const tags[] = { "Team", "team" };
	same_rows("SELECT k FROM tags ORDER BY k", tags, 2);
}

/* ---- the cache generation, the intents' owners (7 -> 8) ---- */

/* The generation must be `want` on both. */
static void generation_is(const char *want)
{
	const char *const rows[] = { want };
	same_rows("SELECT CAST(value AS TEXT) FROM cache_generation", rows, 1);
}

static void test_cache_generation(void **state)
{
	(void)state;
	generation_is("0");
	/* An intent and its completion, and a reservation: nobody has cached
	 * them, so the generation stays. */
	static const rule_case quiet[] = {
		ALLOW(KEY(K1, "1", "creating", "hsm-resident", "0")),
		ALLOW(VERSION(K1, "1", "creating", "NULL", "NULL")),
		ALLOW("UPDATE key_versions SET state = 'active' WHERE key_id = '" K1 "'"),
		ALLOW("UPDATE keys SET lifecycle = 'ready' WHERE id = '" K1 "'"),
		ALLOW("UPDATE key_versions SET encryptions_reserved = 5 WHERE key_id = '" K1 "'"),
		ALLOW("INSERT INTO aliases (name, key_id, created_at) VALUES ('alias/g', '" K1
		      "', 1)"),
		ALLOW(KEY(K2, "1", "ready", "hsm-resident", "0")),
	};
	RUN(quiet);
	generation_is("0");
	/* Each change a replica may have cached raises it once a row. */
	static const rule_case loud[] = {
		ALLOW("UPDATE keys SET state = 2 WHERE id = '" K1 "'"),
		ALLOW("UPDATE aliases SET key_id = '" K2 "' WHERE name = 'alias/g'"),
		ALLOW("DELETE FROM aliases WHERE name = 'alias/g'"),
		ALLOW("UPDATE key_versions SET state = 'destroyed' WHERE key_id = '" K1 "'"),
	};
	RUN(loud);
	generation_is("4");
	/* One row, never below zero. */
	static const rule_case rules[] = {
		BY_CHECK("cache_generation_id_check",
		         "INSERT INTO cache_generation (id, value) VALUES (2, 0)"),
		BY_UNIQUE("cache_generation_pkey",
		          "INSERT INTO cache_generation (id, value) VALUES (1, 0)"),
		BY_CHECK("cache_generation_value_check", "UPDATE cache_generation SET value = -1"),
		/* An intent's owner is a replica id (32 hex digits) or ''. */
		BY_CHECK("keys_intent_owner_check",
		         "UPDATE keys SET intent_owner = repeat('a', 33) WHERE id = '" K2 "'"),
		BY_CHECK("key_versions_intent_owner_check",
		         "UPDATE key_versions SET intent_owner = repeat('a', 33) WHERE key_id = '" K1
		         "'"),
	};
	RUN(rules);
	generation_is("4");
}

/* 9 -> 10: what the store's read cache holds raises it too (a principal
 * made or changed, an access key changed, a grant made or changed); an
 * access key made does not (the cache keeps found keys only). */
static void test_cache_generation_authz(void **state)
{
	(void)state;
	generation_is("0");
	static const rule_case quiet[] = {
		ALLOW(KEY(K1, "1", "creating", "hsm-resident", "0")),
		ALLOW("UPDATE keys SET lifecycle = 'ready' WHERE id = '" K1 "'"),
	};
	RUN(quiet);
	generation_is("0");
	static const rule_case loud[] = {
		ALLOW(PRINCIPAL("'alice'")),
		ALLOW("UPDATE principals SET roles = 3, updated_at = 2 WHERE name = 'alice'"),
		ALLOW(AK(AK_A, "alice", "active")),
		ALLOW("UPDATE access_keys SET state = 'revoked' WHERE id = '" AK_A "'"),
		ALLOW(GRANT(GR_A, K1, "alice", "'encrypt'")),
		ALLOW("UPDATE grants SET state = 'revoked', ended_at = 2 WHERE id = '" GR_A "'"),
	};
	RUN(loud);
	generation_is("5");
}

/* CreateKey's request reference (7 -> 8): 64 lowercase hex digits or '',
 * unique when set. */
static void test_request_ref(void **state)
{
	(void)state;
	static const rule_case cases[] = {
		ALLOW(KEY(K1, "1", "creating", "wrapped", "0")),
		ALLOW(KEY(K2, "1", "creating", "wrapped", "0")),
		BY_CHECK("keys_request_ref_check",
		         "UPDATE keys SET request_ref = 'abc' WHERE id = '" K1 "'"),
		BY_CHECK("keys_request_ref_check",
		         "UPDATE keys SET request_ref = repeat('A', 64) WHERE id = '" K1 "'"),
		BY_CHECK("keys_request_ref_check",
		         "UPDATE keys SET request_ref = repeat('g', 64) WHERE id = '" K1 "'"),
		ALLOW("UPDATE keys SET request_ref = repeat('a', 64) WHERE id = '" K1 "'"),
		BY_UNIQUE("keys_by_request",
		          "UPDATE keys SET request_ref = repeat('a', 64) WHERE id = '" K2 "'"),
		ALLOW("UPDATE keys SET request_ref = repeat('b', 64) WHERE id = '" K2 "'"),
	};
	RUN(cases);
	const char *const k1[] = { K1 };
	same_rows("SELECT id FROM keys WHERE request_ref = repeat('a', 64) AND request_ref <> ''",
	          k1, 1);
}

/* ---- the fleet's audit log (8 -> 9) ---- */

#define PENDING(id, entry, replica) \
	"INSERT INTO audit_pending (id, entry, replica) VALUES (" id ", " entry ", " replica ")"
#define NUMBERED(seq, entry) "INSERT INTO audit_entries (seq, entry) VALUES (" seq ", " entry ")"
#define E1 "CAST('{}' AS BLOB)"

static void test_audit_fleet(void **state)
{
	(void)state;
	static const rule_case cases[] = {
		/* Pending: any replica's, entries 1..65535 bytes. */
		ALLOW(PENDING("1", E1, "repeat('a', 32)")),
		BY_UNIQUE("audit_pending_pkey", PENDING("1", E1, "''")),
		BY_CHECK("audit_pending_id_check", PENDING("0", E1, "''")),
		BY_CHECK("audit_pending_entry_check", PENDING("2", "zeroblob(0)", "''")),
		BY_CHECK("audit_pending_entry_check", PENDING("2", "zeroblob(65536)", "''")),
		ALLOW(PENDING("2", "zeroblob(65535)", "''")),
		BY_CHECK("audit_pending_replica_check", PENDING("3", E1, "repeat('a', 33)")),
		ALLOW("DELETE FROM audit_pending WHERE id = 1"),
		/* Numbered: from 0, each after the one before; never changed or
		 * removed. */
		BY_RULE("audit_entries_in_order", NUMBERED("1", E1)),
		BY_CHECK("audit_entries_seq_check", NUMBERED("-1", E1)),
		ALLOW(NUMBERED("0", E1)),
		BY_UNIQUE("audit_entries_pkey", NUMBERED("0", E1)),
		BY_RULE("audit_entries_in_order", NUMBERED("2", E1)),
		BY_CHECK("audit_entries_entry_check", NUMBERED("1", "zeroblob(0)")),
		BY_CHECK("audit_entries_replica_check",
		         "INSERT INTO audit_entries (seq, entry, replica) VALUES (1, " E1
		         ", repeat('a', 33))"),
		ALLOW(NUMBERED("1", E1)),
		ALLOW("INSERT INTO audit_entries (seq, entry, replica) SELECT 2 + (row_number() "
		      "OVER (ORDER BY id)) - 1, entry, replica FROM audit_pending WHERE id <= 2 "
		      "ORDER BY id"),
		BY_RULE("audit_entries_fixed", "UPDATE audit_entries SET entry = " E1 " WHERE seq = 0"),
		BY_RULE("audit_entries_kept", "DELETE FROM audit_entries WHERE seq = 2"),
		/* The lease: one row. */
		BY_UNIQUE("audit_lease_pkey", "INSERT INTO audit_lease (id) VALUES (1)"),
		BY_CHECK("audit_lease_id_check", "INSERT INTO audit_lease (id) VALUES (2)"),
		BY_CHECK("audit_lease_holder_check", "UPDATE audit_lease SET holder = repeat('a', 33)"),
		BY_CHECK("audit_lease_epoch_check", "UPDATE audit_lease SET epoch = -1"),
		ALLOW("UPDATE audit_lease SET holder = repeat('a', 32), epoch = 1, expires_ms = 5"),
		/* The checkpoint: one row that only grows. */
		BY_CHECK("audit_checkpoint_id_check",
		         "INSERT INTO audit_checkpoint (id, size, note) VALUES (2, 1, " E1 ")"),
		BY_CHECK("audit_checkpoint_size_check",
		         "INSERT INTO audit_checkpoint (id, size, note) VALUES (1, -1, " E1 ")"),
		BY_CHECK("audit_checkpoint_note_check",
		         "INSERT INTO audit_checkpoint (id, size, note) VALUES (1, 1, zeroblob(4097))"),
		ALLOW("INSERT INTO audit_checkpoint (id, size, note) VALUES (1, 3, " E1 ")"),
		BY_UNIQUE("audit_checkpoint_pkey",
		          "INSERT INTO audit_checkpoint (id, size, note) VALUES (1, 4, " E1 ")"),
		BY_RULE("audit_checkpoint_grows", "UPDATE audit_checkpoint SET size = 2"),
		ALLOW("UPDATE audit_checkpoint SET size = 3"),
		ALLOW("UPDATE audit_checkpoint SET size = 4"),
	};
	RUN(cases);
	const char *const seqs[] = { "0", "1", "2" };
	same_rows("SELECT CAST(seq AS TEXT) FROM audit_entries ORDER BY seq", seqs, 3);
}

#define RECORD(principal, id, op, digest, result) \
	"INSERT INTO request_records (principal, request_id, op, digest, result, created_ms) " \
	"VALUES (" principal ", " id ", " op ", " digest ", " result ", 1)"
#define D32 "zeroblob(32)"

static void test_request_records(void **state)
{
	(void)state;
	static const rule_case cases[] = {
		ALLOW(RECORD("'app'", "'r-1'", "10", D32, "NULL")),
		ALLOW(RECORD("'app'", "'r-2'", "10", D32, "zeroblob(8192)")),
		ALLOW(RECORD("'other'", "'r-1'", "11", D32, "zeroblob(1)")),
		BY_UNIQUE("request_records_pkey", RECORD("'app'", "'r-1'", "11", D32, "NULL")),
		BY_CHECK("request_records_principal_check", RECORD("''", "'r-3'", "10", D32, "NULL")),
		BY_CHECK("request_records_principal_check",
		         RECORD("repeat('a', 65)", "'r-3'", "10", D32, "NULL")),
		BY_CHECK("request_records_request_id_check", RECORD("'app'", "''", "10", D32, "NULL")),
		BY_CHECK("request_records_request_id_check",
		         RECORD("'app'", "repeat('r', 65)", "10", D32, "NULL")),
		BY_CHECK("request_records_op_check", RECORD("'app'", "'r-3'", "0", D32, "NULL")),
		BY_CHECK("request_records_digest_check",
		         RECORD("'app'", "'r-3'", "10", "zeroblob(31)", "NULL")),
		BY_CHECK("request_records_result_check",
		         RECORD("'app'", "'r-3'", "10", D32, "zeroblob(0)")),
		BY_CHECK("request_records_result_check",
		         RECORD("'app'", "'r-3'", "10", D32, "zeroblob(8193)")),
		ALLOW("DELETE FROM request_records WHERE created_ms < 2"),
	};
	RUN(cases);
	same_rows("SELECT CAST(count(*) AS TEXT) FROM request_records", (const char *const[]){ "0" },
	          1);
}

/* ---- a KEK retired while another replica wraps under it ---- */

/* A second connection, in this test's schema: another replica. */
static PGconn *second_connection(void)
{
	char password[256], sql[128];
	read_password(getenv("KMS_TEST_PG_PASSWORD_FILE"), password, sizeof password);
	const char *keys[] = { "dbname", "password", "connect_timeout", NULL };
	const char *values[] = { getenv("KMS_TEST_PG_URL"), password, "30", NULL };
	PGconn *c = PQconnectdbParams(keys, values, 1);
	explicit_bzero(password, sizeof password);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	snprintf(sql, sizeof sql, "SET search_path TO %s", world);
	on_ok(c, sql);
	on_ok(c, "SET statement_timeout = '60s'");
	return c;
}

/* The retirement (kms/keys/keyring_wrapped.c, kek_retire) counts what a
 * KEK wraps while it holds the KEK's row FOR UPDATE (store_kek_lock); an
 * insert of material under a KEK holds its row FOR SHARE (the
 * kek_live_insert triggers). So a version another replica is wrapping
 * under a draining KEK keeps the retirement from starting until it
 * commits (and is counted), and an insert during a retirement waits for
 * it. The waits are shown with NOWAIT and lock_timeout: a lock that is
 * not released meanwhile, not a race. */
static void test_kek_retire_waits(void **state)
{
	(void)state;
	static const char lock_kek[] = "SELECT id FROM keks WHERE id = 1 FOR UPDATE NOWAIT";
	pg_ok(KEK("1"));
	pg_ok("UPDATE keks SET state = 'current' WHERE id = 1");
	pg_ok("UPDATE keks SET state = 'draining' WHERE id = 1");
	pg_ok(KEY(K1, "1", "ready", "wrapped", "0"));
	pg_ok(KEY(K2, "1", "ready", "wrapped", "1"));
	PGconn *other = second_connection();
	/* Another replica wraps a version under the draining KEK. */
	on_ok(other, "BEGIN");
	on_ok(other, VERSION(K1, "1", "creating", "1", W40A));
	PGresult *r = pg_refused(lock_kek, "55P03");
	PQclear(r);
	on_ok(other, "COMMIT");
	/* The retirement, now: it sees that version, and holds the row. */
	pg_ok("BEGIN");
	pg_ok(lock_kek);
	char v[32];
	pg_value("SELECT CAST(count(*) AS TEXT) FROM key_versions WHERE kek_id = 1", v, sizeof v);
	assert_string_equal(v, "1");
	/* Meanwhile an insert under it, a version or a sub-key, waits. */
	on_ok(other, "SET lock_timeout = '100ms'");
	static const char *const waits[] = {
		VERSION(K1, "2", "creating", "1", W40A),
		DP_ROW(K2, DP_A, "1", "active", "1", W40A),
	};
	for (size_t i = 0; i < 2; i++) {
		r = PQexec(other, waits[i]);
		const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		if (!code || strcmp(code, "55P03") != 0)
			fail_msg("%s: want SQLSTATE 55P03 (lock timeout), got %s: %s", waits[i],
			         code ? code : "(accepted)", PQresultErrorMessage(r));
		PQclear(r);
	}
	/* The version found is moved first; then the KEK retires, and a later
	 * insert under it is refused. */
	pg_ok("UPDATE key_versions SET kek_id = NULL, wrapped = NULL WHERE kek_id = 1");
	pg_ok("UPDATE keks SET state = 'retired', retired_at = 9 WHERE id = 1");
	pg_ok("COMMIT");
	on_ok(other, "SET lock_timeout = 0");
	r = PQexec(other, VERSION(K1, "3", "creating", "1", W40A));
	assert_string_equal(PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME),
	                    "key_versions_kek_live_insert");
	PQclear(r);
	PQfinish(other);
}

/* request_record_find (PostgreSQL only: SQLite's one kmsd reads the row):
 * a record whose writer holds its lock is "busy", whatever the table
 * holds yet; once that transaction commits, the row. */
static void test_request_record_busy(void **state)
{
	(void)state;
	static const char find[] =
	        "SELECT CAST(f_busy AS TEXT) || ' ' || coalesce(CAST(f_op AS TEXT), '-') FROM "
	        "request_record_find('app', 'r-1', 77)";
	char v[32];
	pg_value("SELECT CAST(count(*) AS TEXT) FROM request_record_find('app', 'r-1', 77)", v,
	         sizeof v);
	assert_string_equal(v, "0"); /* none, nobody writing it */
	PGconn *other = second_connection();
	on_ok(other, "BEGIN");
	on_ok(other, "SELECT pg_advisory_xact_lock(77)");
	on_ok(other, RECORD("'app'", "'r-1'", "10", D32, "NULL"));
	pg_value(find, v, sizeof v);
	assert_string_equal(v, "1 -");
	on_ok(other, "COMMIT");
	pg_value(find, v, sizeof v);
	assert_string_equal(v, "0 10");
	PQfinish(other);
}

/* ---- the version row; one migration, once ---- */

static void test_version_once(void **state)
{
	(void)state;
	char v[32];
	pg_value("SELECT version FROM schema_version", v, sizeof v);
	assert_string_equal(v, "10");
	PGresult *r = pg_refused("INSERT INTO schema_version (version) VALUES (11)", "23505");
	assert_string_equal(field(r, PG_DIAG_CONSTRAINT_NAME), "schema_version_one_row");
	PQclear(r);
	hit("schema_version_one_row");

	/* A second run is refused at its first statement and changes nothing. */
	pg_ok("BEGIN");
	r = pg_refused(store_pg_migration_sql(0), "42P07");
	assert_non_null(strstr(field(r, PG_DIAG_MESSAGE_PRIMARY), "schema_version"));
	PQclear(r);
	pg_ok("ROLLBACK");
	pg_ok("BEGIN");
	r = pg_refused(store_pg_migration_sql(7), "42P07");
	assert_non_null(strstr(field(r, PG_DIAG_MESSAGE_PRIMARY), "cache_generation"));
	PQclear(r);
	pg_ok("ROLLBACK");
	pg_ok("BEGIN");
	r = pg_refused(store_pg_migration_sql(8), "42P07");
	assert_non_null(strstr(field(r, PG_DIAG_MESSAGE_PRIMARY), "audit_pending"));
	PQclear(r);
	pg_ok("ROLLBACK");
	pg_ok("BEGIN");
	r = pg_refused(store_pg_migration_sql(9), "42P07");
	assert_non_null(strstr(field(r, PG_DIAG_MESSAGE_PRIMARY), "request_records"));
	PQclear(r);
	pg_ok("ROLLBACK");
	pg_value("SELECT count(*) || ' ' || max(version) FROM schema_version", v, sizeof v);
	assert_string_equal(v, "1 10");

	/* No step from any other version. */
	for (int from = -1; from <= STORE_SCHEMA_VERSION + 1; from++)
		if (from != 0 && from != 7 && from != 8 && from != 9)
			assert_null(store_pg_migration_sql(from));

	/* One transaction: a migration that fails late leaves nothing. */
	char sql[128];
	snprintf(sql, sizeof sql, "CREATE SCHEMA %s_partial", world);
	pg_ok(sql);
	snprintf(sql, sizeof sql, "SET search_path TO %s_partial", world);
	pg_ok(sql);
	pg_ok("CREATE TABLE key_retention (x bigint)");
	pg_ok("BEGIN");
	r = pg_refused(store_pg_migration_sql(0), "42P07");
	assert_non_null(strstr(field(r, PG_DIAG_MESSAGE_PRIMARY), "key_retention"));
	PQclear(r);
	pg_ok("ROLLBACK");
	pg_value("SELECT coalesce(to_regclass('schema_version')::text, 'none') || ' ' || "
	         "coalesce(to_regclass('keys')::text, 'none') || ' ' || "
	         "coalesce(to_regtype('blob')::text, 'none')",
	         v, sizeof v);
	assert_string_equal(v, "none none none");
	snprintf(sql, sizeof sql, "SET search_path TO %s", world);
	pg_ok(sql);
}

/* ---- the same schema ---- */

#define LINES_MAX 512
typedef struct lines {
	char *v[LINES_MAX];
	size_t n;
} lines;

static void lines_add(lines *l, const char *s)
{
	assert_true(l->n < LINES_MAX);
	l->v[l->n] = strdup(s);
	assert_non_null(l->v[l->n]);
	l->n++;
}

static void lines_free(lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	l->n = 0;
}

static int line_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The two lists hold the same lines; else each stray one is printed. */
static void lines_same(lines *a, lines *b, const char *what)
{
	qsort(a->v, a->n, sizeof a->v[0], line_cmp);
	qsort(b->v, b->n, sizeof b->v[0], line_cmp);
	size_t i = 0, j = 0, strays = 0;
	while (i < a->n || j < b->n) {
		int c = i == a->n ? 1 : j == b->n ? -1 : strcmp(a->v[i], b->v[j]);
		if (c == 0) {
			i++;
			j++;
			continue;
		}
		fprintf(stderr, "%s: only in %s: %s\n", what, c < 0 ? "SQLite" : "PostgreSQL",
		        c < 0 ? a->v[i] : b->v[j]);
		if (c < 0)
			i++;
		else
			j++;
		strays++;
	}
	size_t n = a->n;
	lines_free(a);
	lines_free(b);
	if (strays)
		fail_msg("%s: %zu lines differ between the two schemas", what, strays);
	assert_true(n > 0);
}

static void lite_lines(const char *sql, lines *out)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(lite, sql, -1, &s, NULL) != SQLITE_OK)
		fail_msg("SQLite: %s: %s", sql, sqlite3_errmsg(lite));
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(s, 0);
		lines_add(out, t ? t : "NULL");
	}
	sqlite3_finalize(s);
	assert_int_equal(rc, SQLITE_DONE);
}

static void pg_lines(const char *sql, lines *out)
{
	PGresult *r = PQexec(pg, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		char why[512];
		snprintf(why, sizeof why, "%s", PQresultErrorMessage(r));
		PQclear(r);
		fail_msg("PostgreSQL: %s: %s", sql, why);
	}
	for (int i = 0; i < PQntuples(r); i++)
		lines_add(out, PQgetisnull(r, i, 0) ? "NULL" : PQgetvalue(r, i, 0));
	PQclear(r);
}

static void same(const char *what, const char *lite_sql, const char *pg_sql)
{
	lines a = { .n = 0 }, b = { .n = 0 };
	lite_lines(lite_sql, &a);
	pg_lines(pg_sql, &b);
	lines_same(&a, &b, what);
}

/* This world's PostgreSQL objects. */
#define IN_WORLD " = current_schema()::regnamespace"

/* "name on table: BEFORE event: message" from a trigger's name, table and
 * its SQL (SQLite's text, or pg_get_triggerdef's): the event is the text
 * from BEFORE to its table, spaces collapsed; the message is the first
 * literal after marker. */
static void trigger_line(const char *name, const char *table, const char *sql,
                         const char *marker, lines *out)
{
	char event[512] = "", message[512] = "", line[1200];
	const char *p = strstr(sql, "BEFORE ");
	if (!p)
		p = strstr(sql, "AFTER ");
	const char *end = p ? strstr(p, " ON ") : NULL;
	size_t n = 0;
	for (; p && p < end && n + 1 < sizeof event; p++)
		if (!(*p == ' ' && (n == 0 || event[n - 1] == ' ')) && *p != '\n')
			event[n++] = *p;
	event[n] = '\0';
	const char *m = strstr(sql, marker);
	const char *quote = m ? strchr(m + strlen(marker), '\'') : NULL;
	if (!quote || !sql_literal(quote + 1, message, sizeof message))
		snprintf(message, sizeof message, "(no message)");
	snprintf(line, sizeof line, "%s on %s: %s: %s", name, table, event, message);
	lines_add(out, line);
}

static void test_same_schema(void **state)
{
	(void)state;
	/* Columns, in order: type (INTEGER as bigint, TEXT as text in "C",
	 * BLOB as the domain blob), NOT NULL, default. */
	same("columns",
	     "SELECT m.name || '.' || c.name || ' ' || c.cid || ' ' || c.type || ' ' || "
	     "(c.\"notnull\" OR c.pk > 0) || ' ' || coalesce(c.dflt_value, '-') "
	     "FROM sqlite_schema m, pragma_table_info(m.name) c WHERE m.type = 'table'",
	     "SELECT table_name || '.' || column_name || ' ' || (ordinal_position - 1) || ' ' || "
	     "CASE WHEN domain_name = 'blob' THEN 'BLOB' WHEN data_type = 'bigint' THEN 'INTEGER' "
	     "WHEN data_type = 'text' AND collation_name = 'C' THEN 'TEXT' "
	     "ELSE 'unmapped ' || data_type END || ' ' || "
	     "CASE is_nullable WHEN 'NO' THEN 1 ELSE 0 END || ' ' || "
	     "coalesce(replace(column_default, '::text', ''), '-') "
	     "FROM information_schema.columns WHERE table_schema = current_schema() "
	     "AND table_name <> 'schema_version'");
	same("primary keys",
	     "SELECT m.name || ' primary key ' || (SELECT group_concat(name, ',') FROM "
	     "(SELECT name FROM pragma_table_info(m.name) WHERE pk > 0 ORDER BY pk)) "
	     "FROM sqlite_schema m WHERE m.type = 'table'",
	     "SELECT c.relname || ' primary key ' || (SELECT string_agg(a.attname, ',' ORDER BY "
	     "k.i) FROM unnest(x.conkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a "
	     "ON a.attrelid = x.conrelid AND a.attnum = k.n) "
	     "FROM pg_constraint x JOIN pg_class c ON c.oid = x.conrelid "
	     "WHERE x.contype = 'p' AND c.relnamespace" IN_WORLD);
	same("unique constraints",
	     "SELECT m.name || ' unique ' || (SELECT group_concat(name, ',') FROM "
	     "(SELECT name FROM pragma_index_info(l.name) ORDER BY seqno)) "
	     "FROM sqlite_schema m, pragma_index_list(m.name) l "
	     "WHERE m.type = 'table' AND l.origin = 'u'",
	     "SELECT c.relname || ' unique ' || (SELECT string_agg(a.attname, ',' ORDER BY "
	     "k.i) FROM unnest(x.conkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a "
	     "ON a.attrelid = x.conrelid AND a.attnum = k.n) "
	     "FROM pg_constraint x JOIN pg_class c ON c.oid = x.conrelid "
	     "WHERE x.contype = 'u' AND c.relnamespace" IN_WORLD);
	same("foreign keys",
	     "SELECT m.name || '.' || f.\"from\" || ' references ' || f.\"table\" || '(' || "
	     "f.\"to\" || ') on delete ' || f.on_delete "
	     "FROM sqlite_schema m, pragma_foreign_key_list(m.name) f WHERE m.type = 'table'",
	     "SELECT c.relname || '.' || a.attname || ' references ' || p.relname || '(' || "
	     "b.attname || ') on delete ' || CASE x.confdeltype WHEN 'c' THEN 'CASCADE' "
	     "WHEN 'a' THEN 'NO ACTION' ELSE x.confdeltype::text END "
	     "FROM pg_constraint x JOIN pg_class c ON c.oid = x.conrelid "
	     "JOIN pg_class p ON p.oid = x.confrelid "
	     "JOIN pg_attribute a ON a.attrelid = x.conrelid AND a.attnum = x.conkey[1] "
	     "JOIN pg_attribute b ON b.attrelid = x.confrelid AND b.attnum = x.confkey[1] "
	     "WHERE x.contype = 'f' AND cardinality(x.conkey) = 1 AND c.relnamespace" IN_WORLD);
	/* Indexes made by CREATE INDEX: name, table, columns, unique, partial. */
	same("indexes",
	     "SELECT m.name || ' on ' || m.tbl_name || '(' || (SELECT group_concat(name, ',') "
	     "FROM (SELECT name FROM pragma_index_info(m.name) ORDER BY seqno)) || ')' || "
	     "CASE WHEN l.\"unique\" THEN ' unique' ELSE '' END || "
	     "CASE WHEN l.partial THEN ' partial' ELSE '' END "
	     "FROM sqlite_schema m JOIN pragma_index_list(m.tbl_name) l ON l.name = m.name "
	     "WHERE m.type = 'index' AND m.sql IS NOT NULL",
	     "SELECT i.relname || ' on ' || t.relname || '(' || (SELECT string_agg(a.attname, "
	     "',' ORDER BY k.i) FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(n, i) "
	     "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n) || ')' || "
	     "CASE WHEN x.indisunique THEN ' unique' ELSE '' END || "
	     "CASE WHEN x.indpred IS NOT NULL THEN ' partial' ELSE '' END "
	     "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
	     "JOIN pg_class t ON t.oid = x.indrelid WHERE i.relnamespace" IN_WORLD
	     " AND i.relname <> 'schema_version_one_row' AND NOT EXISTS (SELECT 1 FROM "
	     "pg_constraint k WHERE k.conindid = x.indexrelid AND k.contype IN ('p', 'u'))");

	/* Triggers: the same names, tables, events (UPDATE OF the same
	 * columns) and messages. */
	lines a = { .n = 0 }, b = { .n = 0 };
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(lite,
	                                    "SELECT name, tbl_name, sql FROM sqlite_schema "
	                                    "WHERE type = 'trigger'",
	                                    -1, &s, NULL),
	                 SQLITE_OK);
	while (sqlite3_step(s) == SQLITE_ROW)
		trigger_line((const char *)sqlite3_column_text(s, 0),
		             (const char *)sqlite3_column_text(s, 1),
		             (const char *)sqlite3_column_text(s, 2), "RAISE(ABORT, ", &a);
	sqlite3_finalize(s);
	PGresult *r = PQexec(pg, "SELECT t.tgname, c.relname, pg_get_triggerdef(t.oid) "
	                         "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
	                         "WHERE NOT t.tgisinternal AND c.relnamespace" IN_WORLD);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	for (int i = 0; i < PQntuples(r); i++)
		trigger_line(PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
		             "EXECUTE FUNCTION ", &b);
	PQclear(r);
	assert_int_equal(a.n, 56);
	lines_same(&a, &b, "triggers");

	/* Every trigger function raises KM001; the text type is "C" everywhere. */
	char v[64];
	pg_value("SELECT count(*) FROM pg_proc WHERE pronamespace" IN_WORLD
	         " AND prorettype = 'trigger'::regtype AND prosrc LIKE '%ERRCODE = ''KM001''%'",
	         v, sizeof v);
	assert_string_equal(v, "15");
	pg_value("SELECT count(*) FROM pg_proc WHERE pronamespace" IN_WORLD
	         " AND prorettype = 'trigger'::regtype",
	         v, sizeof v);
	assert_string_equal(v, "16"); /* and cache_generation_raise */
	pg_value("SELECT count(*) FROM information_schema.columns WHERE table_schema = "
	         "current_schema() AND data_type = 'text' AND collation_name IS DISTINCT FROM 'C'",
	         v, sizeof v);
	assert_string_equal(v, "0");
}

/* ---- every rule was seen refusing ---- */

static void test_every_rule_refused(void **state)
{
	(void)state;
	/* Its column is the primary key: a duplicate is refused by that first. */
	static const char *const unreachable[] = { "keys_hsm_resident" };
	/* They raise the cache generation and refuse nothing
	 * (test_cache_generation). */
	static const char *const raising[] = { "keys_generation", "key_versions_generation",
		                               "aliases_update_generation",
		                               "aliases_delete_generation",
		                               "principals_insert_generation",
		                               "principals_update_generation",
		                               "access_keys_update_generation",
		                               "grants_insert_generation",
		                               "grants_update_generation" };
	PGresult *r = PQexec(
	        pg, "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
	            "WHERE NOT t.tgisinternal AND c.relnamespace" IN_WORLD
	            " UNION ALL SELECT conname FROM pg_constraint WHERE connamespace" IN_WORLD
	            " AND contype IN ('c', 'u', 'f', 'p') AND conrelid <> 0"
	            " UNION ALL SELECT i.relname FROM pg_index x JOIN pg_class i "
	            "ON i.oid = x.indexrelid WHERE i.relnamespace" IN_WORLD " AND x.indisunique "
	            "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid "
	            "AND k.contype IN ('p', 'u'))");
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	int rules = PQntuples(r), missed = 0, exempt = 0;
	for (int i = 0; i < rules; i++) {
		const char *name = PQgetvalue(r, i, 0);
		bool skip = false;
		for (size_t j = 0; j < sizeof unreachable / sizeof unreachable[0]; j++)
			skip = skip || strcmp(name, unreachable[j]) == 0;
		for (size_t j = 0; j < sizeof raising / sizeof raising[0]; j++)
			skip = skip || strcmp(name, raising[j]) == 0;
		if (skip) {
			exempt++;
		} else if (!was_hit(name)) {
			fprintf(stderr, "no statement was refused by %s\n", name);
			missed++;
		}
	}
	PQclear(r);
	fprintf(stderr, "test_store_schema_pg: %zu statements refused and %zu accepted alike "
	                "by both; %d rules (56 triggers, constraints, unique indexes), %zu seen "
	                "refusing, %d exempt\n",
	        refused_n, accepted_n, rules, hits_n, exempt);
	assert_int_equal(missed, 0);
	assert_int_equal(exempt, 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_keks, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(test_protection, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(test_triggers, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(test_authz, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(test_consent, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(test_dp_keys, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(test_aliases_and_order, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(test_cache_generation, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(test_cache_generation_authz, world_setup,
		                                world_teardown),
		cmocka_unit_test_setup_teardown(test_request_ref, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(test_audit_fleet, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(test_request_records, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(test_kek_retire_waits, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(test_request_record_busy, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(test_version_once, world_setup, world_teardown),
		cmocka_unit_test_setup_teardown(test_same_schema, world_setup, world_teardown),
		/* Last: it reads what the tests above saw. */
		cmocka_unit_test_setup_teardown(test_every_rule_refused, world_setup, world_teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
