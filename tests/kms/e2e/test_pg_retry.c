/*
 * test_pg_retry: kmsd on PostgreSQL runs a request again when its store
 * transaction meets a serialization failure (SQLSTATE 40001), answers it
 * once, and audits it once (docs/scale-out.md, "Transactions").
 *
 * The failures are forced, not hoped for: the test adds to kmsd's schema a
 * trigger that fails the next N inserts into keys with SQLSTATE 40001,
 * counting them with a sequence (a rolled-back transaction does not undo
 * nextval). So each case knows exactly how many attempts fail.
 *
 * (1) two forced failures: CreateKey answers OK at the third attempt;
 *     kms_store_conflict_retries_total is 2; ListKeys holds that one key;
 *     the audit log holds one outcome entry for the request, OK.
 * (2) more failures than attempts: CreateKey answers UNAVAILABLE saying
 *     why (a serialization failure) after 8 attempts (7 more retries); no
 *     key was made; one outcome entry, UNAVAILABLE.
 * (3) after both, with the trigger gone, kmsd serves as before.
 *
 * Then the fleet's audit log (docs/scale-out.md, "One audit log for the
 * fleet"), on this one replica: (4) an upgrade: the database's fleet log
 * emptied while kmsd's own copy holds entries (as a kmsd on PostgreSQL
 * kept its own log before); it becomes the start of the fleet's log, and
 * the log after more requests verifies against the checkpoint signed
 * before; (5) the database loses its last entries under a running kmsd
 * (as a restore, or a failover to a standby that was behind, would): kmsd
 * stops on it; started again, its copy puts the lost entries back.
 * (6) a control-plane change and its outcome entry commit in one
 * transaction (docs/scale-out.md, "A change and its entry commit
 * together"): with the database refusing the OK outcome of DisableKey (a
 * transaction of several statements) and of DisablePrincipal (one
 * statement), each request fails and its change is not there; allowed
 * again, the outcome row in audit_pending has the same xmin (the
 * transaction that wrote it) as the row the change wrote.
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
#include <sys/wait.h>

#include "common/error.h"
#include "kms/store/db.h"
#include "kms/store/db_pg.h"
#include "tests/support/audit_check.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"

#define HTTP_WAIT_MS 5000
#define ATTEMPTS 8 /* kms/pipeline/pipeline.c's CONFLICT_ATTEMPTS */

static harness H;
static int port;

static int setup(void **state)
{
	(void)state;
	if (!getenv("KMS_TEST_PG_URL")) {
		fprintf(stderr, "test_pg_retry runs under tests/support/with-postgres\n");
		return -1;
	}
	port = harness_free_port();
	static char extra[200];
	snprintf(extra, sizeof extra, "[audit]\ncheckpoint_ms = 50\nhttp = http://127.0.0.1:%d\n",
	         port);
	harness_options o = { .extra_config = extra };
	return harness_start(&H, &o) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	if (H.pid > 0)
		harness_kill9(&H);
	return 0;
}

/* Runs sql on kmsd's own schema, as the database's owner. */
static void pg_exec(const char *sql)
{
	if (!harness_store_exec(&H, NULL, sql))
		fail_msg("%s failed (the line above says why)", sql);
}

/* The next `failures` inserts into keys fail with SQLSTATE 40001. */
static void force_conflicts(unsigned failures)
{
	char sql[1024];
	snprintf(sql, sizeof sql,
	         "DROP TRIGGER IF EXISTS test_forced_conflict ON keys;"
	         "DROP SEQUENCE IF EXISTS test_forced_seq;"
	         "CREATE SEQUENCE test_forced_seq;"
	         "CREATE OR REPLACE FUNCTION test_forced_conflict() RETURNS trigger AS $$ BEGIN "
	         "IF nextval('test_forced_seq') <= %u THEN RAISE EXCEPTION 'forced by "
	         "test_pg_retry' USING ERRCODE = '40001'; END IF; RETURN NEW; END $$ "
	         "LANGUAGE plpgsql;"
	         "CREATE TRIGGER test_forced_conflict BEFORE INSERT ON keys FOR EACH ROW "
	         "EXECUTE FUNCTION test_forced_conflict();",
	         failures);
	pg_exec(sql);
}

static void no_more_conflicts(void)
{
	pg_exec("DROP TRIGGER IF EXISTS test_forced_conflict ON keys;"
	        "DROP FUNCTION IF EXISTS test_forced_conflict();"
	        "DROP SEQUENCE IF EXISTS test_forced_seq;");
}

static double metric(const char *series)
{
	char *body = NULL;
	size_t len = 0;
	assert_int_equal(audit_http_get(port, "/metrics", HTTP_WAIT_MS, &body, &len), 200);
	double v = 0;
	bool found = audit_metric_sample(body, series, &v);
	free(body);
	if (!found)
		fail_msg("/metrics has no %s", series);
	return v;
}

static Kms__Response *create_key(const char *request_id)
{
	nng_socket s;
	assert_true(e2e_socket(&H, 10000, 30000, &s));
	Kms__Response *r = e2e_create_key_on(s, request_id);
	nng_close(s);
	assert_non_null(r);
	return r;
}

static size_t key_count(void)
{
	e2e_key *keys = NULL;
	size_t n = 0;
	assert_true(e2e_list_keys(&H, &keys, &n));
	free(keys);
	return n;
}

/* The one outcome entry of request_id, with this status. */
static void audited_once(const char *request_id, const char *status)
{
	char vkey[AUDIT_VKEY_MAX], pub[1024];
	assert_true(audit_vkey_from_log(&H, vkey));
	audit_public_dir(&H, NULL, pub, sizeof pub);
	audit_entries e;
	audit_load(pub, vkey, NULL, &e);
	json_t *entry = NULL;
	size_t n = audit_count_phase(&e, request_id, "outcome", &entry);
	if (n != 1)
		fail_msg("%s: %zu outcome entries, want 1", request_id, n);
	assert_string_equal(audit_str(entry, "status"), status);
	audit_entries_free(&e);
}

static void retried_until_it_commits(void **state)
{
	(void)state;
	size_t keys_before = key_count();
	double before = metric("kms_store_conflict_retries_total");
	force_conflicts(2);
	Kms__Response *r = create_key("retry-two-conflicts");
	if (r->status != KMS__STATUS__OK)
		fail_msg("CreateKey after 2 forced conflicts: status %d: %s", r->status, r->message);
	kms__response__free_unpacked(r, NULL);
	no_more_conflicts();
	assert_int_equal(metric("kms_store_conflict_retries_total") - before, 2);
	assert_int_equal(key_count(), keys_before + 1);

	/* More failures than attempts: answered UNAVAILABLE, nothing made. */
	before = metric("kms_store_conflict_retries_total");
	force_conflicts(1000);
	r = create_key("retry-gives-up");
	assert_int_equal(r->status, KMS__STATUS__UNAVAILABLE);
	if (!strstr(r->message, "serialization failure"))
		fail_msg("the message does not say why: %s", r->message);
	kms__response__free_unpacked(r, NULL);
	no_more_conflicts();
	assert_int_equal(metric("kms_store_conflict_retries_total") - before, ATTEMPTS - 1);
	assert_int_equal(key_count(), keys_before + 1);

	/* And kmsd serves as before. */
	char why[256];
	char id[40];
	assert_true(harness_create_key(&H, NULL, id));
	assert_true(e2e_roundtrip(&H, id, why, sizeof why));

	/* A fleet of one: it holds the audit log's sequencer lease, at the
	 * first epoch, and numbered every entry (each metrics read is one). */
	uint64_t until = e2e_now_ms() + HTTP_WAIT_MS;
	while (metric("kms_audit_fleet_sequencer") != 1 && e2e_now_ms() < until)
		e2e_sleep_ms(10);
	assert_true(metric("kms_audit_fleet_sequencer") == 1);
	assert_true(metric("kms_audit_fleet_lease_epoch") == 1);
	assert_true(metric("kms_audit_fleet_sequenced_total") > 0);

	assert_int_equal(harness_stop(&H), 0);
	audited_once("retry-two-conflicts", "OK");
	audited_once("retry-gives-up", "UNAVAILABLE");
}

/* The store's value of an integer expression, as text. */
static uint64_t pg_u64(const char *expr)
{
	char sql[300], out[64];
	snprintf(sql, sizeof sql, "SELECT CAST(%s AS TEXT)", expr);
	if (!harness_store_query(&H, NULL, sql, out, sizeof out))
		fail_msg("%s failed", sql);
	return strtoull(out, NULL, 10);
}

static void restart(void)
{
	harness_options o = { .extra_config = NULL };
	static char extra[200];
	snprintf(extra, sizeof extra, "[audit]\ncheckpoint_ms = 50\nhttp = http://127.0.0.1:%d\n",
	         port);
	o.extra_config = extra;
	unsigned ready = harness_ready_lines(&H);
	assert_true(harness_spawn(&H, &o) && harness_wait_ready(&H, ready));
}

/* Removes fleet entries as only the database's owner can (the triggers
 * refuse it otherwise): what a restore or a failover to a lagging
 * standby does. */
static void fleet_forget(const char *where)
{
	char sql[600];
	snprintf(sql, sizeof sql,
	         "ALTER TABLE audit_entries DISABLE TRIGGER USER;"
	         "DELETE FROM audit_entries %s;"
	         "ALTER TABLE audit_entries ENABLE TRIGGER USER;", where);
	pg_exec(sql);
}

/* The fleet's audit log (docs/scale-out.md): (1) an upgrade, a kmsd whose
 * own log the database's fleet log does not hold (kmsd on PostgreSQL kept
 * one per replica before): its log becomes the start of the fleet's, and
 * the history goes on, consistent with the checkpoint it had signed; (2)
 * entries the database lost under a running kmsd: found, and kmsd stops;
 * it then refuses to start on its copy. */
static void fleet_log_upgraded_and_loss_found(void **state)
{
	(void)state;
	char vkey[AUDIT_VKEY_MAX], pub[1024], cp_path[1100];
	assert_true(audit_vkey_from_log(&H, vkey));
	assert_true(H.pid == 0); /* the test before stopped it */
	audit_public_dir(&H, NULL, pub, sizeof pub);
	snprintf(cp_path, sizeof cp_path, "%s/checkpoint", pub);
	char *before = harness_read_file(cp_path, NULL);
	assert_non_null(before);
	uint64_t had = pg_u64("(SELECT count(*) FROM audit_entries)");
	assert_true(had > 0);

	/* (1) The database forgets the fleet's log; the kmsd keeps its own. */
	fleet_forget("");
	pg_exec("DELETE FROM audit_checkpoint; UPDATE audit_lease SET holder = '', epoch = 0, "
	        "expires_ms = 0;");
	restart();
	assert_true(harness_log_contains(&H, "becomes the start of the fleet's log"));
	char why[256], id[40];
	assert_true(harness_create_key(&H, NULL, id));
	assert_true(e2e_roundtrip(&H, id, why, sizeof why));
	assert_int_equal(harness_stop(&H), 0);
	assert_true(harness_log_contains(&H, "the fleet's log starts with this replica's"));
	audit_entries e;
	audit_load(pub, vkey, before, &e);
	assert_true(e.report.since_checked); /* the history it had signed goes on */
	assert_int_equal(pg_u64("(SELECT count(*) FROM audit_entries)"), e.n);
	assert_true(e.n > had);
	audit_entries_free(&e);
	free(before);
	uint64_t until;

	/* (2) Entries lost under a running kmsd, once nothing waits to be
	 * numbered (no request comes meanwhile: nothing is numbered after
	 * the loss, so its copy stays what the fleet's log lost). */
	restart();
	until = e2e_now_ms() + 30000;
	while (pg_u64("(SELECT count(*) FROM audit_pending)") != 0 && e2e_now_ms() < until)
		e2e_sleep_ms(10);
	assert_int_equal(pg_u64("(SELECT count(*) FROM audit_pending)"), 0);
	fleet_forget("WHERE seq >= (SELECT max(seq) - 2 FROM audit_entries)");
	until = e2e_now_ms() + 30000;
	int status = 0;
	while (waitpid(H.pid, &status, WNOHANG) != H.pid) {
		if (e2e_now_ms() > until)
			fail_msg("kmsd did not stop on a fleet log that lost entries; see %s", H.log);
		e2e_sleep_ms(10);
	}
	H.pid = 0;
	assert_true(harness_log_contains(&H, "the database lost or changed entries"));
	/* Restarted, its copy (which the fleet's log is a prefix of) puts
	 * the lost entries back, and the log goes on. */
	uint64_t copy = pg_u64("(SELECT count(*) FROM audit_entries)") + 3;
	restart();
	assert_int_equal(harness_stop(&H), 0);
	assert_true(pg_u64("(SELECT count(*) FROM audit_entries)") > copy);
	audit_load(pub, vkey, NULL, &e);
	assert_int_equal(pg_u64("(SELECT count(*) FROM audit_entries)"), e.n);
	audit_entries_free(&e);
}

/* (3) Entries removed from audit_pending before they were numbered: no
 * copy has read them, but the replica that added them watches for each
 * in the numbered log, and stops once one left audit_pending without
 * coming (kms/audit/audit_fleet.c, "its own entries"). A lease held by a
 * replica that does not exist keeps them from being numbered meanwhile:
 * its UPDATE returns once kmsd's numbering transaction in flight, if any,
 * committed, and after it kmsd numbers nothing. */
static void pending_entries_removed_found(void **state)
{
	(void)state;
	assert_true(H.pid == 0); /* the test before stopped it */
	restart();
	pg_exec("UPDATE audit_lease SET holder = 'ffffffffffffffffffffffffffffffff', "
	        "epoch = epoch + 1, expires_ms = 9000000000000000000");
	char id[40], why[256];
	assert_true(harness_create_key(&H, NULL, id));
	assert_true(e2e_roundtrip(&H, id, why, sizeof why));
	assert_true(pg_u64("(SELECT count(*) FROM audit_pending)") >= 4);
	pg_exec("DELETE FROM audit_pending");
	pg_exec("UPDATE audit_lease SET holder = '', expires_ms = 0");
	uint64_t until = e2e_now_ms() + 30000;
	int status = 0;
	while (waitpid(H.pid, &status, WNOHANG) != H.pid) {
		if (e2e_now_ms() > until)
			fail_msg("kmsd did not stop when entries it added were removed; see %s", H.log);
		e2e_sleep_ms(10);
	}
	H.pid = 0;
	assert_true(harness_log_contains(&H, "left it without being numbered"));
	/* It starts again (what was removed stays removed: this finds it). */
	restart();
	assert_true(e2e_roundtrip(&H, id, why, sizeof why));
	assert_int_equal(harness_stop(&H), 0);
}

/* (6) */
static Kms__Response *disable_key(const char *request_id, const char *key_id)
{
	Kms__DisableKeyRequest d = KMS__DISABLE_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	d.key_id = (char *)key_id;
	req.request_id = (char *)request_id;
	req.op_case = KMS__REQUEST__OP_DISABLE_KEY;
	req.disable_key = &d;
	Kms__Response *r = harness_call(&H, &req);
	assert_non_null(r);
	return r;
}

static Kms__Response *disable_principal(const char *request_id, const char *name)
{
	Kms__DisablePrincipalRequest d = KMS__DISABLE_PRINCIPAL_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	d.name = (char *)name;
	req.request_id = (char *)request_id;
	req.op_case = KMS__REQUEST__OP_DISABLE_PRINCIPAL;
	req.disable_principal = &d;
	Kms__Response *r = harness_call(&H, &req);
	assert_non_null(r);
	return r;
}

static void create_principal(const char *name)
{
	Kms__CreatePrincipalRequest c = KMS__CREATE_PRINCIPAL_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	Kms__Role roles[] = { KMS__ROLE__APP };
	c.name = (char *)name;
	c.roles = roles;
	c.n_roles = 1;
	req.op_case = KMS__REQUEST__OP_CREATE_PRINCIPAL;
	req.create_principal = &c;
	Kms__Response *r = harness_call(&H, &req);
	assert_non_null(r);
	if (r->status != KMS__STATUS__OK)
		fail_msg("CreatePrincipal %s: status %d: %s", name, r->status, r->message);
	kms__response__free_unpacked(r, NULL);
}

/* The database refuses the OK outcome entries of operation (NULL: none). */
static void refuse_ok_outcomes(const char *operation)
{
	char sql[1024];
	if (!operation) {
		pg_exec("DROP TRIGGER IF EXISTS test_refuse_outcome ON audit_pending;"
		        "DROP FUNCTION IF EXISTS test_refuse_outcome();");
		return;
	}
	snprintf(sql, sizeof sql,
	         "CREATE OR REPLACE FUNCTION test_refuse_outcome() RETURNS trigger AS $$ BEGIN "
	         "IF position(convert_to('\"operation\":\"%s\"', 'UTF8') IN NEW.entry) > 0 AND "
	         "position(convert_to('\"phase\":\"outcome\"', 'UTF8') IN NEW.entry) > 0 AND "
	         "position(convert_to('\"status\":\"OK\"', 'UTF8') IN NEW.entry) > 0 THEN "
	         "RAISE EXCEPTION 'outcome refused by test_pg_retry'; END IF; RETURN NEW; END $$ "
	         "LANGUAGE plpgsql;"
	         "DROP TRIGGER IF EXISTS test_refuse_outcome ON audit_pending;"
	         "CREATE TRIGGER test_refuse_outcome BEFORE INSERT ON audit_pending FOR EACH ROW "
	         "EXECUTE FUNCTION test_refuse_outcome();",
	         operation);
	pg_exec(sql);
}

/* The text of one value from the database. */
static void pg_text(const char *expr, char *out, size_t cap)
{
	char sql[1024];
	snprintf(sql, sizeof sql, "SELECT CAST((%s) AS TEXT)", expr);
	if (!harness_store_query(&H, NULL, sql, out, cap))
		fail_msg("%s failed", sql);
}

/* The xmin of request_id's outcome row in audit_pending. */
static void outcome_xmin(const char *request_id, char *out, size_t cap)
{
	char expr[512];
	snprintf(expr, sizeof expr,
	         "SELECT xmin FROM audit_pending WHERE position(convert_to('\"request_id\":\"%s\"', "
	         "'UTF8') IN entry) > 0 AND position(convert_to('\"phase\":\"outcome\"', 'UTF8') "
	         "IN entry) > 0",
	         request_id);
	pg_text(expr, out, cap);
}

static void outcome_commits_with_change(void **state)
{
	(void)state;
	assert_true(H.pid == 0); /* the test before stopped it */
	restart();
	char key[40], why[256];
	assert_true(harness_create_key(&H, NULL, key));
	create_principal("cwc-app");

	/* Refused: nothing changes. */
	refuse_ok_outcomes("disable_key");
	Kms__Response *r = disable_key("cwc-key-refused", key);
	if (r->status == KMS__STATUS__OK)
		fail_msg("DisableKey answered OK with its outcome entry refused");
	kms__response__free_unpacked(r, NULL);
	assert_true(e2e_roundtrip(&H, key, why, sizeof why)); /* still enabled */
	refuse_ok_outcomes("disable_principal");
	r = disable_principal("cwc-app-refused", "cwc-app");
	if (r->status == KMS__STATUS__OK)
		fail_msg("DisablePrincipal answered OK with its outcome entry refused");
	kms__response__free_unpacked(r, NULL);
	char text[64];
	pg_text("SELECT state FROM principals WHERE name = 'cwc-app'", text, sizeof text);
	assert_string_equal(text, "enabled");
	refuse_ok_outcomes(NULL);

	/* Allowed, with the numbering held off so the rows stay in
	 * audit_pending: one transaction wrote the change and its entry. */
	pg_exec("UPDATE audit_lease SET holder = 'ffffffffffffffffffffffffffffffff', "
	        "epoch = epoch + 1, expires_ms = 9000000000000000000");
	r = disable_key("cwc-key", key);
	assert_int_equal(r->status, KMS__STATUS__OK);
	kms__response__free_unpacked(r, NULL);
	r = disable_principal("cwc-app", "cwc-app");
	assert_int_equal(r->status, KMS__STATUS__OK);
	kms__response__free_unpacked(r, NULL);
	char entry_x[64], row_x[64], sql[256];
	outcome_xmin("cwc-key", entry_x, sizeof entry_x);
	snprintf(sql, sizeof sql, "SELECT xmin FROM keys WHERE id = '%s'", key);
	pg_text(sql, row_x, sizeof row_x);
	if (!entry_x[0] || strcmp(entry_x, row_x) != 0)
		fail_msg("DisableKey: outcome written by transaction %s, key row by %s", entry_x,
		         row_x);
	outcome_xmin("cwc-app", entry_x, sizeof entry_x);
	pg_text("SELECT xmin FROM principals WHERE name = 'cwc-app'", row_x, sizeof row_x);
	if (!entry_x[0] || strcmp(entry_x, row_x) != 0)
		fail_msg("DisablePrincipal: outcome written by transaction %s, principal row by %s",
		         entry_x, row_x);
	pg_exec("UPDATE audit_lease SET holder = '', expires_ms = 0");
	/* kmsd takes the lease again and numbers them before it stops. */
	uint64_t until = e2e_now_ms() + 30000;
	while (pg_u64("(SELECT count(*) FROM audit_pending)") != 0) {
		if (e2e_now_ms() > until)
			fail_msg("the entries were not numbered within 30 s; see %s", H.log);
		e2e_sleep_ms(10);
	}

	assert_int_equal(harness_stop(&H), 0);
	audited_once("cwc-key-refused", "INTERNAL");
	audited_once("cwc-app-refused", "INTERNAL");
	audited_once("cwc-key", "OK");
	audited_once("cwc-app", "OK");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(retried_until_it_commits),
		cmocka_unit_test(fleet_log_upgraded_and_loss_found),
		cmocka_unit_test(pending_entries_removed_found),
		cmocka_unit_test(outcome_commits_with_change),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
