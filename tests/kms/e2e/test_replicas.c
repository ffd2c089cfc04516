/*
 * test_replicas: three kmsd replicas on one PostgreSQL store and one token
 * (docs/scale-out.md), under tests/support/with-postgres. Replica A has
 * the test's own folder; B and C each have a folder (data dir, config,
 * log, ipc socket) of their own and A's store. B and C are started at
 * the same moment: the store's start-up lock orders them.
 *
 * (1) A change made through A is enforced by B and C on their next
 *     request, though they had the key (or alias) cached: a disable, an
 *     enable, an alias made, moved and deleted, a deletion scheduled, and
 *     the key's destruction (docs/scale-out.md, "Cache coherence"). An
 *     hsm-resident key made on A is used on B and C (one token). A
 *     CreateKey sent again with its request id, to B, answers with the key
 *     A made; the same id with other fields makes another key.
 * (1b) Authorization changed through A is enforced by B on the signer's
 *     next request: a grant created, revoked and created again, the
 *     grantee disabled and enabled, its access key revoked (B signed as
 *     the grantee each time, so whatever B keeps of the principal, its
 *     access key, the key's policy and grants was used just before).
 * (1c) An Encrypt, Decrypt, ReEncrypt or GenerateDataKey sent again to
 *     another replica is answered from its first run's record: the same
 *     blob (and data key), one entry in the fleet's log; the same id with
 *     other fields is refused (docs/scale-out.md, "Request records"); the
 *     same for GenerateMac (with the first run's key version after a
 *     rotation) and Pseudonymize; a Sign sent again is run again.
 * (2) Intents: A's ticks (A alone running) roll back a stale intent of
 *     another replica and leave A's own fresh one (A is completing it);
 *     a fresh intent of another replica (a made-up live owner) survives
 *     B's restart; once it is older than 60 s a replica's tick rolls it
 *     back; B's own intent, left by a kill -9, is rolled back by B's
 *     restart at once.
 * (3) Under load: A and B each create keys and encrypt under them while
 *     B is killed with -9 and restarted twice. A loses no request; every
 *     key either acknowledged is usable through A, B and C; no replica
 *     calls an object missing; and, all stopped, the token holds exactly
 *     the versions ListKeys shows.
 *
 * The load makes wrapped keys (the default), not hsm-resident ones, for a
 * reason of the test bed: SoftHSM's file store is not safe for one process
 * to read an object another is writing (a writer truncates the object's
 * file before it takes the file's lock), and a process that read a
 * half-written object may never see it whole. Hsm-resident keys made on
 * one replica and used on another are covered one at a time in (1); their
 * intents under kill -9 by (2) and by test_crash_pg. A real HSM cluster
 * replicates objects by its own protocol (docs/scale-out.md).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

#include "tests/support/audit_check.h"
#include "tests/support/consent_test.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"

#define EXTRA "[limits]\nseconds_per_day = 1\ntick_seconds = 1\n"
#define WAIT_MS 30000
#define LOAD_KEYS 40     /* hsm-resident keys each loader tries to make */

static harness A, B, C;
static harness_options oa, ob, oc;
static char a_data[700];

static void check(bool ok, const char *what)
{
	if (!ok)
		fail_msg("%s", what);
}

static int setup(void **state)
{
	(void)state;
	if (!getenv("KMS_TEST_PG_URL")) {
		fprintf(stderr, "test_replicas runs under tests/support/with-postgres\n");
		return -1;
	}
	oa = (harness_options){ .extra_config = EXTRA };
	if (!harness_start(&A, &oa))
		return -1;
	snprintf(a_data, sizeof a_data, "%s/data", A.dir);
	/* B and C with one worker each: every request B serves meets the
	 * store read cache the one before it filled, so a change through A
	 * that the cache generation missed would be served stale (1b). */
	ob = (harness_options){ .extra_config = EXTRA, .store_of = a_data, .workers = 1 };
	oc = ob;
	if (!harness_replica_init(&B, "replica-b") || !harness_replica_init(&C, "replica-c"))
		return -1;
	/* At the same moment: the start-up lock lets one reconcile at a time. */
	if (!harness_spawn(&B, &ob) || !harness_spawn(&C, &oc) || !harness_wait_ready(&B, 0) ||
	    !harness_wait_ready(&C, 0))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	int a = harness_stop(&A), b = harness_stop(&B), c = harness_stop(&C);
	if (a || b || c)
		fprintf(stderr, "exit codes: A %d, B %d, C %d; logs %s, %s, %s\n", a, b, c, A.log,
		        B.log, C.log);
	return a || b || c;
}

/* ---- requests ---- */

static Kms__Status status_of(Kms__Response *r, char *message, size_t cap)
{
	Kms__Status st = r ? r->status : KMS__STATUS__UNAVAILABLE;
	if (message)
		snprintf(message, cap, "%s", r ? r->message : "no answer");
	if (r)
		kms__response__free_unpacked(r, NULL);
	return st;
}

static void expect(Kms__Response *r, Kms__Status want, const char *what)
{
	char message[512];
	Kms__Status got = status_of(r, message, sizeof message);
	if (got != want)
		fail_msg("%s: status %d, want %d: %s", what, (int)got, (int)want, message);
}

static Kms__Response *key_op(harness *h, Kms__Request__OpCase op, const char *key_id)
{
	Kms__EnableKeyRequest en = KMS__ENABLE_KEY_REQUEST__INIT;
	Kms__DisableKeyRequest dis = KMS__DISABLE_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = op;
	en.key_id = dis.key_id = (char *)(uintptr_t)key_id;
	if (op == KMS__REQUEST__OP_ENABLE_KEY)
		req.enable_key = &en;
	else
		req.disable_key = &dis;
	return harness_call(h, &req);
}

static Kms__Response *alias_op(harness *h, Kms__Request__OpCase op, const char *name,
                               const char *key_id)
{
	Kms__CreateAliasRequest ca = KMS__CREATE_ALIAS_REQUEST__INIT;
	Kms__UpdateAliasRequest ua = KMS__UPDATE_ALIAS_REQUEST__INIT;
	Kms__DeleteAliasRequest da = KMS__DELETE_ALIAS_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = op;
	ca.alias_name = ua.alias_name = da.alias_name = (char *)(uintptr_t)name;
	ca.target_key_id = ua.target_key_id = (char *)(uintptr_t)key_id;
	if (op == KMS__REQUEST__OP_CREATE_ALIAS)
		req.create_alias = &ca;
	else if (op == KMS__REQUEST__OP_UPDATE_ALIAS)
		req.update_alias = &ua;
	else
		req.delete_alias = &da;
	return harness_call(h, &req);
}

/* Encrypts under key_ref on h: the blob (malloc'ed, *len) or NULL, with
 * the status in *st. */
static uint8_t *encrypt_on(harness *h, const char *key_ref, size_t *len, Kms__Status *st)
{
	static const uint8_t plaintext[] = "replicated";
	Kms__Response *r = e2e_encrypt(h, key_ref, plaintext, sizeof plaintext);
	uint8_t *blob = NULL;
	*st = r ? r->status : KMS__STATUS__UNAVAILABLE;
	if (r && r->status == KMS__STATUS__OK && r->result_case == KMS__RESPONSE__RESULT_ENCRYPT) {
		*len = r->encrypt->ciphertext_blob.len;
		blob = malloc(*len);
		assert_non_null(blob);
		memcpy(blob, r->encrypt->ciphertext_blob.data, *len);
	}
	if (r)
		kms__response__free_unpacked(r, NULL);
	return blob;
}

/* The key id a blob names. */
static void blob_key(const uint8_t *blob, size_t len, char out[E2E_KEY_ID_SIZE])
{
	e2e_blob_header hd;
	assert_true(e2e_blob_parse(blob, len, &hd));
	e2e_key_id_text(hd.key_id, out);
}

static int key_state_on(harness *h, const char *key_id)
{
	Kms__Response *r = e2e_describe(h, key_id);
	int state = r && r->status == KMS__STATUS__OK &&
	                            r->result_case == KMS__RESPONSE__RESULT_DESCRIBE_KEY
	                    ? (int)r->describe_key->key_metadata->key_state
	                    : -1;
	if (r)
		kms__response__free_unpacked(r, NULL);
	return state;
}

/* CreateKey with this request id and description on h: the key id
 * (static). */
static const char *create_with_id(harness *h, const char *request_id, const char *description)
{
	static char id[E2E_KEY_ID_SIZE];
	Kms__CreateKeyRequest ck = KMS__CREATE_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	ck.description = (char *)(uintptr_t)description;
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	req.create_key = &ck;
	req.request_id = (char *)(uintptr_t)request_id;
	Kms__Response *r = harness_call(h, &req);
	assert_true(r && r->status == KMS__STATUS__OK &&
	            r->result_case == KMS__RESPONSE__RESULT_CREATE_KEY);
	snprintf(id, sizeof id, "%s", r->create_key->key_metadata->key_id);
	kms__response__free_unpacked(r, NULL);
	return id;
}

/* ---- (1) a change through A, enforced on B and C at once ---- */

static void change_on_a_enforced_everywhere(void **state)
{
	(void)state;
	char k1[E2E_KEY_ID_SIZE], k2[E2E_KEY_ID_SIZE], named[E2E_KEY_ID_SIZE];
	assert_true(harness_create_key(&A, NULL, k1));
	assert_true(harness_create_key(&A, NULL, k2));
	Kms__Status st;
	size_t len;

	/* B and C use k1, so they have it cached. */
	uint8_t *blob = encrypt_on(&A, k1, &len, &st);
	assert_non_null(blob);
	expect(e2e_decrypt(&B, blob, len), KMS__STATUS__OK, "decrypt on B");
	expect(e2e_decrypt(&C, blob, len), KMS__STATUS__OK, "decrypt on C");
	free(encrypt_on(&B, k1, &len, &st));
	assert_int_equal(st, KMS__STATUS__OK);

	/* Disabled through A: refused by B and C on their next request. */
	expect(key_op(&A, KMS__REQUEST__OP_DISABLE_KEY, k1), KMS__STATUS__OK, "disable on A");
	size_t len2;
	assert_null(encrypt_on(&B, k1, &len2, &st));
	assert_int_equal(st, KMS__STATUS__FAILED_PRECONDITION);
	expect(e2e_decrypt(&C, blob, len), KMS__STATUS__FAILED_PRECONDITION, "decrypt on C, disabled");
	/* Enabled through A: served again. */
	expect(key_op(&A, KMS__REQUEST__OP_ENABLE_KEY, k1), KMS__STATUS__OK, "enable on A");
	expect(e2e_decrypt(&B, blob, len), KMS__STATUS__OK, "decrypt on B, enabled again");
	expect(e2e_decrypt(&C, blob, len), KMS__STATUS__OK, "decrypt on C, enabled again");

	/* An alias made on A, used (so cached) on B, moved and deleted on A. */
	expect(alias_op(&A, KMS__REQUEST__OP_CREATE_ALIAS, "alias/replicas", k1), KMS__STATUS__OK,
	       "create alias on A");
	uint8_t *via = encrypt_on(&B, "alias/replicas", &len2, &st);
	assert_non_null(via);
	blob_key(via, len2, named);
	assert_string_equal(named, k1);
	free(via);
	expect(alias_op(&A, KMS__REQUEST__OP_UPDATE_ALIAS, "alias/replicas", k2), KMS__STATUS__OK,
	       "update alias on A");
	via = encrypt_on(&B, "alias/replicas", &len2, &st);
	assert_non_null(via);
	blob_key(via, len2, named);
	assert_string_equal(named, k2);
	free(via);
	expect(alias_op(&A, KMS__REQUEST__OP_DELETE_ALIAS, "alias/replicas", NULL), KMS__STATUS__OK,
	       "delete alias on A");
	assert_null(encrypt_on(&B, "alias/replicas", &len2, &st));
	assert_int_equal(st, KMS__STATUS__NOT_FOUND);

	/* An hsm-resident key made on A, used on B and C. */
	Kms__Response *r = e2e_create_key_as(&A, KMS__KEY_PROTECTION__HSM_RESIDENT);
	assert_true(r && r->status == KMS__STATUS__OK &&
	            r->result_case == KMS__RESPONSE__RESULT_CREATE_KEY);
	char resident[E2E_KEY_ID_SIZE];
	snprintf(resident, sizeof resident, "%s", r->create_key->key_metadata->key_id);
	kms__response__free_unpacked(r, NULL);
	char why[512];
	assert_true(e2e_roundtrip(&A, resident, why, sizeof why));
	assert_true(e2e_roundtrip(&B, resident, why, sizeof why));
	assert_true(e2e_roundtrip(&C, resident, why, sizeof why));

	/* A CreateKey sent again (its answer lost, say) to another replica:
	 * the key the first run made; the same id with other fields is another
	 * request. */
	char first[E2E_KEY_ID_SIZE];
	snprintf(first, sizeof first, "%s", create_with_id(&A, "replicas-once", "once"));
	assert_string_equal(create_with_id(&B, "replicas-once", "once"), first);
	assert_string_equal(create_with_id(&C, "replicas-once", "once"), first);
	assert_string_not_equal(create_with_id(&B, "replicas-once", "other"), first);
	assert_true(harness_log_contains(&B, "request sent again; answered with key"));

	/* Deletion scheduled on A: B refuses at once; destroyed (a "day" is a
	 * second: 7 s, then a tick), every replica refuses. */
	expect(e2e_schedule_deletion(&A, k1, 7), KMS__STATUS__OK, "schedule deletion on A");
	expect(e2e_decrypt(&B, blob, len), KMS__STATUS__FAILED_PRECONDITION,
	       "decrypt on B, pending deletion");
	uint64_t until = e2e_now_ms() + WAIT_MS;
	while (key_state_on(&A, k1) != KMS__KEY_STATE__DESTROYED && e2e_now_ms() < until)
		e2e_sleep_ms(100);
	assert_int_equal(key_state_on(&A, k1), KMS__KEY_STATE__DESTROYED);
	assert_int_not_equal(status_of(e2e_decrypt(&B, blob, len), NULL, 0), KMS__STATUS__OK);
	assert_int_not_equal(status_of(e2e_decrypt(&C, blob, len), NULL, 0), KMS__STATUS__OK);
	free(blob);
}

/* ---- (1b) authorization changed through A, enforced on B ---- */

static Kms__Response *admin_call(harness *h, Kms__Request *req)
{
	Kms__Response *r = harness_call(h, req);
	assert_non_null(r);
	return r;
}

/* Encrypt under key on h, signed as access key id/secret. */
static Kms__Status encrypt_signed(harness *h, const char *id, const uint8_t secret[32],
                                  const char *key)
{
	char saved_id[sizeof h->access_key_id];
	uint8_t saved_secret[32];
	memcpy(saved_id, h->access_key_id, sizeof saved_id);
	memcpy(saved_secret, h->secret, sizeof saved_secret);
	snprintf(h->access_key_id, sizeof h->access_key_id, "%s", id);
	memcpy(h->secret, secret, 32);
	Kms__Response *r = e2e_encrypt(h, key, (const uint8_t *)"card", 4);
	memcpy(h->access_key_id, saved_id, sizeof saved_id);
	memcpy(h->secret, saved_secret, sizeof saved_secret);
	return status_of(r, NULL, 0);
}

static void principal_op(Kms__Request__OpCase op, const char *name)
{
	Kms__EnablePrincipalRequest en = KMS__ENABLE_PRINCIPAL_REQUEST__INIT;
	Kms__DisablePrincipalRequest dis = KMS__DISABLE_PRINCIPAL_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = op;
	en.name = dis.name = (char *)(uintptr_t)name;
	if (op == KMS__REQUEST__OP_ENABLE_PRINCIPAL)
		req.enable_principal = &en;
	else
		req.disable_principal = &dis;
	expect(admin_call(&A, &req), KMS__STATUS__OK, "principal change on A");
}

static void grant_encrypt(const char *key, const char *grantee, char out[32])
{
	char *ops[] = { "encrypt" };
	Kms__CreateGrantRequest g = KMS__CREATE_GRANT_REQUEST__INIT;
	g.key_id = (char *)(uintptr_t)key;
	g.grantee = (char *)(uintptr_t)grantee;
	g.operations = ops;
	g.n_operations = 1;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_CREATE_GRANT;
	req.create_grant = &g;
	Kms__Response *r = admin_call(&A, &req);
	if (r->status != KMS__STATUS__OK)
		fail_msg("CreateGrant on A: %s", r->message);
	snprintf(out, 32, "%s", r->create_grant->grant->grant_id);
	kms__response__free_unpacked(r, NULL);
}

static void authorization_on_a_enforced_on_b(void **state)
{
	(void)state;
	/* On A: principal app-b (role app), its access key, a key it may not
	 * use yet (the harness's default policy names only test-admin). */
	Kms__Role roles[] = { KMS__ROLE__APP };
	Kms__CreatePrincipalRequest cp = KMS__CREATE_PRINCIPAL_REQUEST__INIT;
	cp.name = "app-b";
	cp.roles = roles;
	cp.n_roles = 1;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_CREATE_PRINCIPAL;
	req.create_principal = &cp;
	expect(admin_call(&A, &req), KMS__STATUS__OK, "CreatePrincipal on A");
	Kms__CreateAccessKeyRequest ck = KMS__CREATE_ACCESS_KEY_REQUEST__INIT;
	ck.principal = "app-b";
	req = (Kms__Request)KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_CREATE_ACCESS_KEY;
	req.create_access_key = &ck;
	Kms__Response *r = admin_call(&A, &req);
	assert_int_equal(r->status, KMS__STATUS__OK);
	char ak[32];
	uint8_t secret[32];
	snprintf(ak, sizeof ak, "%s", r->create_access_key->access_key->access_key_id);
	assert_int_equal(r->create_access_key->secret.len, 32);
	memcpy(secret, r->create_access_key->secret.data, 32);
	kms__response__free_unpacked(r, NULL);
	char key[E2E_KEY_ID_SIZE];
	assert_true(harness_create_key(&A, NULL, key));

	/* Each step: B has just served (or refused) app-b on this key. */
	assert_int_equal(encrypt_signed(&B, ak, secret, key), KMS__STATUS__ACCESS_DENIED);
	char grant[32];
	grant_encrypt(key, "app-b", grant);
	assert_int_equal(encrypt_signed(&B, ak, secret, key), KMS__STATUS__OK);
	Kms__RevokeGrantRequest rg = KMS__REVOKE_GRANT_REQUEST__INIT;
	rg.grant_id = grant;
	req = (Kms__Request)KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_REVOKE_GRANT;
	req.revoke_grant = &rg;
	expect(admin_call(&A, &req), KMS__STATUS__OK, "RevokeGrant on A");
	assert_int_equal(encrypt_signed(&B, ak, secret, key), KMS__STATUS__ACCESS_DENIED);
	grant_encrypt(key, "app-b", grant);
	assert_int_equal(encrypt_signed(&B, ak, secret, key), KMS__STATUS__OK);
	principal_op(KMS__REQUEST__OP_DISABLE_PRINCIPAL, "app-b");
	assert_int_equal(encrypt_signed(&B, ak, secret, key), KMS__STATUS__ACCESS_DENIED);
	principal_op(KMS__REQUEST__OP_ENABLE_PRINCIPAL, "app-b");
	assert_int_equal(encrypt_signed(&B, ak, secret, key), KMS__STATUS__OK);
	Kms__RevokeAccessKeyRequest ra = KMS__REVOKE_ACCESS_KEY_REQUEST__INIT;
	ra.access_key_id = ak;
	req = (Kms__Request)KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_REVOKE_ACCESS_KEY;
	req.revoke_access_key = &ra;
	expect(admin_call(&A, &req), KMS__STATUS__OK, "RevokeAccessKey on A");
	assert_int_equal(encrypt_signed(&B, ak, secret, key), KMS__STATUS__ACCESS_DENIED);
	memset(secret, 0, sizeof secret);
}

/* ---- (2) whose intents are rolled back ---- */

static bool store_sql(const char *sql, char *out, size_t cap)
{
	return harness_store_query(&A, &oa, sql, out, cap);
}

/* An intent as CreateKey writes one: a creating key and its creating v1,
 * in one transaction (a replica's tick that saw a stale key row alone
 * would roll it back before its version row came, and that insert would
 * then fail). */
static void insert_intent(const char *key_id, const char *owner, int age_s)
{
	char sql[2048];
	snprintf(sql, sizeof sql,
	         "BEGIN;"
	         "INSERT INTO keys (id, spec, usage, state, primary_version, created_at, region, "
	         "lifecycle, protection, intent_owner) VALUES ('%s', 1, 1, 1, 1, "
	         "extract(epoch from now())::bigint - %d, 'in-mum', 'creating', 'hsm-resident', "
	         "'%s');"
	         "INSERT INTO key_versions (key_id, version, created_at, state, intent_owner) "
	         "VALUES ('%s', 1, extract(epoch from now())::bigint - %d, 'creating', '%s');"
	         "COMMIT",
	         key_id, age_s, owner, key_id, age_s, owner);
	check(harness_store_exec(&A, &oa, sql), "insert the intent's key and version rows");
}

static int rows_of(const char *key_id)
{
	char sql[256], out[32];
	snprintf(sql, sizeof sql, "SELECT CAST(count(*) AS TEXT) FROM keys WHERE id = '%s'", key_id);
	check(store_sql(sql, out, sizeof out), "count the key's rows");
	return atoi(out);
}

static void restart(harness *h, const harness_options *o)
{
	harness_kill9(h);
	unsigned ready = harness_ready_lines(h);
	check(harness_spawn(h, o) && harness_wait_ready(h, ready), "restart a replica");
}

static char *replica_id_of(const harness *h, char out[64])
{
	char path[700];
	snprintf(path, sizeof path, "%s/data/replica-id", h->dir);
	char *id = harness_read_file(path, NULL);
	assert_non_null(id);
	snprintf(out, 64, "%.32s", id);
	free(id);
	assert_int_equal(strlen(out), 32);
	return out;
}

static void wait_rows(const char *key_id, int want)
{
	uint64_t until = e2e_now_ms() + WAIT_MS;
	while (rows_of(key_id) != want && e2e_now_ms() < until)
		e2e_sleep_ms(100);
	assert_int_equal(rows_of(key_id), want);
}

static void intents_owned(void **state)
{
	(void)state;
	char id[64];
	/* A alone: its tick takes the stale one, not its own fresh one. */
	assert_int_equal(harness_stop(&B), 0);
	assert_int_equal(harness_stop(&C), 0);
	const char *stale = "k-0000000000000000000000000000abc0";
	const char *a_own = "k-0000000000000000000000000000abc9";
	insert_intent(a_own, replica_id_of(&A, id), 0);
	insert_intent(stale, "ffeeddccbbaa99887766554433221100", 120);
	wait_rows(stale, 0);
	assert_int_equal(rows_of(a_own), 1);
	char sql[256];
	snprintf(sql, sizeof sql, "DELETE FROM keys WHERE id = '%s'", a_own);
	check(store_sql(sql, NULL, 0), "remove A's made-up intent");
	unsigned rb = harness_ready_lines(&B), rc = harness_ready_lines(&C);
	assert_true(harness_spawn(&B, &ob) && harness_spawn(&C, &oc) &&
	            harness_wait_ready(&B, rb) && harness_wait_ready(&C, rc));

	/* Another replica's (a made-up live one), fresh: B's restart and
	 * every tick leave it. */
	const char *theirs = "k-0000000000000000000000000000abc1";
	insert_intent(theirs, "00112233445566778899aabbccddeeff", 0);
	restart(&B, &ob);
	assert_int_equal(rows_of(theirs), 1);
	/* Stale (older than 60 s): the next tick of some replica rolls it back. */
	snprintf(sql, sizeof sql, "UPDATE key_versions SET created_at = created_at - 120 "
	         "WHERE key_id = '%s'", theirs);
	check(store_sql(sql, NULL, 0), "age the version intent");
	snprintf(sql, sizeof sql, "UPDATE keys SET created_at = created_at - 120 WHERE id = '%s'",
	         theirs);
	check(store_sql(sql, NULL, 0), "age the key intent");
	wait_rows(theirs, 0);
	char line[160];
	snprintf(line, sizeof line, "removed half-created key %s", theirs);
	assert_true(harness_log_contains(&A, line) || harness_log_contains(&B, line) ||
	            harness_log_contains(&C, line));

	/* B's own, fresh, left by a kill -9: B's restart rolls it back. */
	replica_id_of(&B, id);
	harness_kill9(&B);
	const char *mine = "k-0000000000000000000000000000abc2";
	insert_intent(mine, id, 0);
	size_t from = e2e_log_size(&B);
	unsigned ready = harness_ready_lines(&B);
	check(harness_spawn(&B, &ob) && harness_wait_ready(&B, ready), "restart B");
	assert_int_equal(rows_of(mine), 0);
	snprintf(line, sizeof line, "removed half-created key %s", mine);
	assert_true(e2e_log_contains_since(&B, from, line));
}

/* ---- (1c) a request sent again: answered once ---- */

/* req packed, signed as A's credentials when the harness has them (the
 * same signer on every replica: one store), like a client's resend. */
static uint8_t *pack_signed(Kms__Request *req, size_t *n)
{
	Kms__Credential cred;
	uint8_t mac[32];
	req->schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	req->credential = NULL;
	if (A.access_key_id[0])
		check(harness_sign(&A, req, (int64_t)time(NULL), &cred, mac), "sign a request");
	*n = kms__request__get_packed_size(req);
	uint8_t *bytes = malloc(*n);
	assert_non_null(bytes);
	kms__request__pack(req, bytes);
	req->credential = NULL;
	return bytes;
}

/* The same bytes, sent to h. */
static Kms__Response *raw_on(harness *h, const uint8_t *bytes, size_t n)
{
	size_t len = 0;
	uint8_t *reply = harness_raw(h->ipc_url, bytes, n, WAIT_MS, &len);
	if (!reply)
		return NULL;
	Kms__Response *r = kms__response__unpack(NULL, len, reply);
	free(reply);
	return r;
}

static Kms__Response *ok_of(Kms__Response *r, Kms__Response__ResultCase want, const char *what)
{
	if (!r || r->status != KMS__STATUS__OK || r->result_case != want)
		fail_msg("%s: %s", what, r ? r->message : "no answer");
	return r;
}

/* Entries with status OK for request_id in the fleet's log (numbered or
 * still pending: one statement, one snapshot). */
static int ok_entries(const char *request_id)
{
	char sql[600], out[32];
	snprintf(sql, sizeof sql,
	         "SELECT CAST(count(*) AS TEXT) FROM (SELECT entry FROM audit_entries UNION ALL "
	         "SELECT entry FROM audit_pending) AS e WHERE position(convert_to("
	         "'\"request_id\":\"%s\"', 'UTF8') IN e.entry) > 0 AND position(convert_to("
	         "'\"status\":\"OK\"', 'UTF8') IN e.entry) > 0",
	         request_id);
	check(store_sql(sql, out, sizeof out), "count a request's entries");
	return atoi(out);
}

static void sent_again_answered_once(void **state)
{
	(void)state;
	char key[E2E_KEY_ID_SIZE];
	snprintf(key, sizeof key, "%s", create_with_id(&A, "rec-key-1", "request records"));
	static const uint8_t pt[] = "sent twice";
	size_t n;

	/* Encrypt on A, the same bytes again on B: the same blob, one entry. */
	Kms__EncryptRequest er = KMS__ENCRYPT_REQUEST__INIT;
	er.key_id = key;
	er.plaintext.data = (uint8_t *)(uintptr_t)pt;
	er.plaintext.len = sizeof pt;
	Kms__Request req = KMS__REQUEST__INIT;
	req.request_id = "rec-enc-1";
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &er;
	uint8_t *bytes = pack_signed(&req, &n);
	Kms__Response *r1 = ok_of(raw_on(&A, bytes, n), KMS__RESPONSE__RESULT_ENCRYPT, "encrypt");
	Kms__Response *r2 = ok_of(raw_on(&B, bytes, n), KMS__RESPONSE__RESULT_ENCRYPT,
	                          "encrypt sent again");
	free(bytes);
	ProtobufCBinaryData blob = r1->encrypt->ciphertext_blob;
	assert_int_equal(r2->encrypt->ciphertext_blob.len, blob.len);
	assert_memory_equal(r2->encrypt->ciphertext_blob.data, blob.data, blob.len);
	assert_string_equal(r2->encrypt->key_id, r1->encrypt->key_id);
	assert_int_equal(r2->encrypt->key_version, r1->encrypt->key_version);
	kms__response__free_unpacked(r2, NULL);

	/* The id again with another plaintext (signed anew), or for another
	 * operation: refused, nothing done. */
	er.plaintext.data = (uint8_t *)(uintptr_t)"other";
	er.plaintext.len = 5;
	bytes = pack_signed(&req, &n);
	expect(raw_on(&C, bytes, n), KMS__STATUS__INVALID_ARGUMENT, "encrypt, other plaintext");
	free(bytes);
	Kms__DecryptRequest dr = KMS__DECRYPT_REQUEST__INIT;
	dr.ciphertext_blob = blob;
	req.op_case = KMS__REQUEST__OP_DECRYPT;
	req.decrypt = &dr;
	bytes = pack_signed(&req, &n);
	expect(raw_on(&B, bytes, n), KMS__STATUS__INVALID_ARGUMENT, "decrypt under a used id");
	free(bytes);

	/* Decrypt on A, again on C (signed anew: the client's own retry). */
	req.request_id = "rec-dec-1";
	bytes = pack_signed(&req, &n);
	r2 = ok_of(raw_on(&A, bytes, n), KMS__RESPONSE__RESULT_DECRYPT, "decrypt");
	free(bytes);
	bytes = pack_signed(&req, &n);
	Kms__Response *r3 = ok_of(raw_on(&C, bytes, n), KMS__RESPONSE__RESULT_DECRYPT,
	                          "decrypt sent again");
	free(bytes);
	assert_int_equal(r2->decrypt->plaintext.len, sizeof pt);
	assert_memory_equal(r2->decrypt->plaintext.data, pt, sizeof pt);
	assert_int_equal(r3->decrypt->plaintext.len, sizeof pt);
	assert_memory_equal(r3->decrypt->plaintext.data, pt, sizeof pt);
	kms__response__free_unpacked(r2, NULL);
	kms__response__free_unpacked(r3, NULL);

	/* ReEncrypt on C, again on B: the same new blob (its source opened
	 * again, with every check), one entry. */
	Kms__ReEncryptRequest rr = KMS__RE_ENCRYPT_REQUEST__INIT;
	rr.ciphertext_blob = blob;
	rr.destination_key_id = key;
	req.request_id = "rec-reenc-1";
	req.op_case = KMS__REQUEST__OP_RE_ENCRYPT;
	req.re_encrypt = &rr;
	bytes = pack_signed(&req, &n);
	r2 = ok_of(raw_on(&C, bytes, n), KMS__RESPONSE__RESULT_RE_ENCRYPT, "re-encrypt");
	r3 = ok_of(raw_on(&B, bytes, n), KMS__RESPONSE__RESULT_RE_ENCRYPT, "re-encrypt sent again");
	free(bytes);
	ProtobufCBinaryData re = r2->re_encrypt->ciphertext_blob;
	assert_int_equal(r3->re_encrypt->ciphertext_blob.len, re.len);
	assert_memory_equal(r3->re_encrypt->ciphertext_blob.data, re.data, re.len);
	assert_false(re.len == blob.len && memcmp(re.data, blob.data, re.len) == 0); /* a new IV */
	kms__response__free_unpacked(r2, NULL);
	kms__response__free_unpacked(r3, NULL);
	kms__response__free_unpacked(r1, NULL);

	/* GenerateDataKey on B, again on A: the same data key and blob. */
	Kms__GenerateDataKeyRequest gr = KMS__GENERATE_DATA_KEY_REQUEST__INIT;
	gr.key_id = key;
	req.request_id = "rec-gdk-1";
	req.op_case = KMS__REQUEST__OP_GENERATE_DATA_KEY;
	req.generate_data_key = &gr;
	bytes = pack_signed(&req, &n);
	r1 = ok_of(raw_on(&B, bytes, n), KMS__RESPONSE__RESULT_GENERATE_DATA_KEY, "data key");
	r2 = ok_of(raw_on(&A, bytes, n), KMS__RESPONSE__RESULT_GENERATE_DATA_KEY,
	           "data key sent again");
	free(bytes);
	assert_int_equal(r1->generate_data_key->plaintext.len, 32);
	assert_int_equal(r2->generate_data_key->plaintext.len, 32);
	assert_memory_equal(r1->generate_data_key->plaintext.data,
	                    r2->generate_data_key->plaintext.data, 32);
	assert_int_equal(r1->generate_data_key->ciphertext_blob.len,
	                 r2->generate_data_key->ciphertext_blob.len);
	assert_memory_equal(r1->generate_data_key->ciphertext_blob.data,
	                    r2->generate_data_key->ciphertext_blob.data,
	                    r1->generate_data_key->ciphertext_blob.len);
	kms__response__free_unpacked(r1, NULL);
	kms__response__free_unpacked(r2, NULL);

	/* One entry each in the fleet's log; the replicas that answered again
	 * say so in their own logs. */
	assert_int_equal(ok_entries("rec-enc-1"), 1);
	assert_int_equal(ok_entries("rec-dec-1"), 1);
	assert_int_equal(ok_entries("rec-gdk-1"), 1);
	assert_int_equal(ok_entries("rec-reenc-1"), 1);
	assert_true(harness_log_contains(&B, "request rec-reenc-1 (re_encrypt) from"));
	assert_true(harness_log_contains(&B, "request rec-enc-1 (encrypt) from"));
	assert_true(harness_log_contains(&C, "answered from its record"));
	assert_true(harness_log_contains(&A, "answered from its record"));
}

/* A ONETIME consent: a Decrypt sent again is answered from its record
 * without taking a second use; a new Decrypt is refused (the one use was
 * taken once). */
static const char consent_policy[] =
        "{\"Version\":\"2024-01-01\",\"RequireConsent\":true,\"Statement\":["
        "{\"Sid\":\"admins\",\"Effect\":\"Allow\",\"Principal\":\"test-admin\","
        "\"Action\":\"*\"}]}";

static Kms__Response *call_ok_on(harness *h, Kms__Request *req, const char *what)
{
	Kms__Response *r = harness_call(h, req);
	if (!r || r->status != KMS__STATUS__OK)
		fail_msg("%s: %s", what, r ? r->message : "no answer");
	return r;
}

static void create_key_with(const char *policy, Kms__KeySpec spec, Kms__KeyUsage usage,
                            char out[E2E_KEY_ID_SIZE])
{
	Kms__CreateKeyRequest ck = KMS__CREATE_KEY_REQUEST__INIT;
	ck.description = "records under consent";
	ck.key_spec = spec;
	ck.key_usage = usage;
	ck.policy = (char *)(uintptr_t)(policy ? policy : "");
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	req.create_key = &ck;
	Kms__Response *r = call_ok_on(&A, &req, "create a key");
	snprintf(out, E2E_KEY_ID_SIZE, "%s", r->create_key->key_metadata->key_id);
	kms__response__free_unpacked(r, NULL);
}

static void sent_again_one_consent_use(void **state)
{
	(void)state;
	char dp_key[E2E_KEY_ID_SIZE], key[E2E_KEY_ID_SIZE], dp[64];
	create_key_with(NULL, KMS__KEY_SPEC__HMAC_SHA256, KMS__KEY_USAGE__GENERATE_VERIFY_MAC,
	                dp_key);
	create_key_with(consent_policy, KMS__KEY_SPEC__AES_256, KMS__KEY_USAGE__ENCRYPT_DECRYPT,
	                key);
	/* The person's pseudonym. */
	static const char customer[] = "9999999999@finvu";
	Kms__PseudonymizeRequest ps = KMS__PSEUDONYMIZE_REQUEST__INIT;
	ProtobufCBinaryData value = { strlen(customer), (uint8_t *)(uintptr_t)customer };
	ps.key_id = dp_key;
	ps.values = &value;
	ps.n_values = 1;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_PSEUDONYMIZE;
	req.pseudonymize = &ps;
	Kms__Response *r = call_ok_on(&A, &req, "pseudonymize");
	snprintf(dp, sizeof dp, "%s", r->pseudonymize->pseudonyms[0]);
	kms__response__free_unpacked(r, NULL);
	/* A Consent Manager and a ONETIME artefact it signed. */
	consent_signer cm;
	consent_signer_make(&cm, "finvu-rec");
	Kms__AddConsentManagerRequest acm = KMS__ADD_CONSENT_MANAGER_REQUEST__INIT;
	acm.id = "finvu-rec";
	acm.jwk = cm.public_jwk;
	acm.dp_key_id = dp_key;
	req = (Kms__Request)KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_ADD_CONSENT_MANAGER;
	req.add_consent_manager = &acm;
	kms__response__free_unpacked(call_ok_on(&A, &req, "add a consent manager"), NULL);
	int64_t now = (int64_t)time(NULL);
	consent_spec once = { .id = "c-rec-once", .customer = customer, .purpose = "101",
		              .start = now - 60, .expiry = now + 86400, .onetime = true };
	size_t doc_len;
	char *doc = consent_artefact_make(&cm, &once, &doc_len);
	Kms__ImportConsentRequest ic = KMS__IMPORT_CONSENT_REQUEST__INIT;
	ic.artefact = (ProtobufCBinaryData){ doc_len, (uint8_t *)doc };
	req = (Kms__Request)KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_IMPORT_CONSENT;
	req.import_consent = &ic;
	kms__response__free_unpacked(call_ok_on(&A, &req, "import the consent"), NULL);
	free(doc);
	consent_signer_free(&cm);

	/* Sealed under it, then one Decrypt sent to A and, again, to B. */
	Kms__StringPair pairs[3] = { KMS__STRING_PAIR__INIT, KMS__STRING_PAIR__INIT,
		                     KMS__STRING_PAIR__INIT };
	Kms__StringPair *pp[3] = { &pairs[0], &pairs[1], &pairs[2] };
	pairs[0].key = "dp";
	pairs[0].value = dp;
	pairs[1].key = "purpose";
	pairs[1].value = "101";
	pairs[2].key = "consent";
	pairs[2].value = "c-rec-once";
	Kms__EncryptRequest er = KMS__ENCRYPT_REQUEST__INIT;
	er.key_id = key;
	er.plaintext = (ProtobufCBinaryData){ 6, (uint8_t *)(uintptr_t)"salary" };
	er.encryption_context = pp;
	er.n_encryption_context = 3;
	req = (Kms__Request)KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &er;
	Kms__Response *sealed = call_ok_on(&A, &req, "seal under the consent");
	Kms__DecryptRequest dr = KMS__DECRYPT_REQUEST__INIT;
	dr.ciphertext_blob = sealed->encrypt->ciphertext_blob;
	dr.encryption_context = pp;
	dr.n_encryption_context = 3;
	req = (Kms__Request)KMS__REQUEST__INIT;
	req.request_id = "rec-once-1";
	req.op_case = KMS__REQUEST__OP_DECRYPT;
	req.decrypt = &dr;
	size_t n;
	uint8_t *bytes = pack_signed(&req, &n);
	kms__response__free_unpacked(ok_of(raw_on(&A, bytes, n), KMS__RESPONSE__RESULT_DECRYPT,
	                                       "decrypt under a ONETIME consent"),
	                             NULL);
	r = ok_of(raw_on(&B, bytes, n), KMS__RESPONSE__RESULT_DECRYPT, "the same decrypt again");
	assert_int_equal(r->decrypt->plaintext.len, 6);
	assert_memory_equal(r->decrypt->plaintext.data, "salary", 6);
	kms__response__free_unpacked(r, NULL);
	free(bytes);
	/* A new request: the one use is gone. */
	req.request_id = "rec-once-2";
	bytes = pack_signed(&req, &n);
	char message[512];
	assert_int_equal(status_of(raw_on(&C, bytes, n), message, sizeof message),
	                 KMS__STATUS__ACCESS_DENIED);
	assert_non_null(strstr(message, "ONETIME"));
	free(bytes);
	kms__response__free_unpacked(sealed, NULL);
	assert_int_equal(ok_entries("rec-once-1"), 1);
}

/* GenerateMac and Pseudonymize sent again: the first run's answer, with
 * its key version after a rotation; the id with other data refused; one
 * entry each. Sign leaves no record: sent again it signs again, logged
 * twice (docs/scale-out.md, "Request records"). */
static void sent_again_mac_and_pseudonym(void **state)
{
	(void)state;
	char sk[E2E_KEY_ID_SIZE], mk[E2E_KEY_ID_SIZE];
	create_key_with(NULL, KMS__KEY_SPEC__ECC_P256, KMS__KEY_USAGE__SIGN_VERIFY, sk);
	create_key_with(NULL, KMS__KEY_SPEC__HMAC_SHA256, KMS__KEY_USAGE__GENERATE_VERIFY_MAC, mk);
	size_t n;

	Kms__SignRequest sr = KMS__SIGN_REQUEST__INIT;
	sr.key_id = sk;
	sr.message = (ProtobufCBinaryData){ 11, (uint8_t *)(uintptr_t)"contract v1" };
	Kms__Request req = KMS__REQUEST__INIT;
	req.request_id = "rec-sign-1";
	req.op_case = KMS__REQUEST__OP_SIGN;
	req.sign = &sr;
	uint8_t *bytes = pack_signed(&req, &n);
	Kms__Response *r1 = ok_of(raw_on(&A, bytes, n), KMS__RESPONSE__RESULT_SIGN, "sign");
	Kms__Response *r2 = ok_of(raw_on(&B, bytes, n), KMS__RESPONSE__RESULT_SIGN,
	                          "sign sent again");
	free(bytes);
	kms__response__free_unpacked(r1, NULL);
	kms__response__free_unpacked(r2, NULL);
	assert_int_equal(ok_entries("rec-sign-1"), 2);

	/* GenerateMac on B, again on C: the same MAC; another message refused. */
	Kms__GenerateMacRequest gm = KMS__GENERATE_MAC_REQUEST__INIT;
	gm.key_id = mk;
	gm.message = (ProtobufCBinaryData){ 9, (uint8_t *)(uintptr_t)"account-7" };
	req.request_id = "rec-mac-1";
	req.op_case = KMS__REQUEST__OP_GENERATE_MAC;
	req.generate_mac = &gm;
	bytes = pack_signed(&req, &n);
	r1 = ok_of(raw_on(&B, bytes, n), KMS__RESPONSE__RESULT_GENERATE_MAC, "mac");
	r2 = ok_of(raw_on(&C, bytes, n), KMS__RESPONSE__RESULT_GENERATE_MAC, "mac sent again");
	assert_int_equal(r1->generate_mac->mac.len, 32);
	assert_int_equal(r2->generate_mac->mac.len, 32);
	assert_memory_equal(r1->generate_mac->mac.data, r2->generate_mac->mac.data, 32);
	/* Rotated: sent again, it is still version 1's MAC. */
	Kms__RotateKeyRequest rk = KMS__ROTATE_KEY_REQUEST__INIT;
	rk.key_id = mk;
	Kms__Request rot = KMS__REQUEST__INIT;
	rot.op_case = KMS__REQUEST__OP_ROTATE_KEY;
	rot.rotate_key = &rk;
	kms__response__free_unpacked(call_ok_on(&A, &rot, "rotate the MAC key"), NULL);
	Kms__Response *r3 = ok_of(raw_on(&A, bytes, n), KMS__RESPONSE__RESULT_GENERATE_MAC,
	                          "mac sent again, rotated");
	assert_int_equal(r3->generate_mac->key_version, 1);
	assert_memory_equal(r3->generate_mac->mac.data, r1->generate_mac->mac.data, 32);
	kms__response__free_unpacked(r3, NULL);
	free(bytes);
	/* The record holds the version and a tag, never the MAC. */
	char sql[300], hex[200], mac_hex[65];
	snprintf(sql, sizeof sql, "SELECT encode(result, 'hex') FROM request_records "
	         "WHERE request_id = 'rec-mac-1'");
	check(store_sql(sql, hex, sizeof hex), "read the MAC's record");
	for (size_t i = 0; i < 32; i++)
		snprintf(mac_hex + 2 * i, 3, "%02x", r1->generate_mac->mac.data[i]);
	assert_int_equal(strlen(hex), 2 * (4 + 32));
	assert_null(strstr(hex, mac_hex));
	kms__response__free_unpacked(r1, NULL);
	kms__response__free_unpacked(r2, NULL);
	gm.message = (ProtobufCBinaryData){ 9, (uint8_t *)(uintptr_t)"account-8" };
	bytes = pack_signed(&req, &n);
	expect(raw_on(&A, bytes, n), KMS__STATUS__INVALID_ARGUMENT, "mac, other message");
	free(bytes);

	/* Pseudonymize on C, again on A: the same pseudonyms. */
	ProtobufCBinaryData values[2] = { { 10, (uint8_t *)(uintptr_t)"9876543210" },
		                          { 10, (uint8_t *)(uintptr_t)"9876543211" } };
	Kms__PseudonymizeRequest ps = KMS__PSEUDONYMIZE_REQUEST__INIT;
	ps.key_id = mk;
	ps.values = values;
	ps.n_values = 2;
	req.request_id = "rec-ps-1";
	req.op_case = KMS__REQUEST__OP_PSEUDONYMIZE;
	req.pseudonymize = &ps;
	bytes = pack_signed(&req, &n);
	r1 = ok_of(raw_on(&C, bytes, n), KMS__RESPONSE__RESULT_PSEUDONYMIZE, "pseudonymize");
	r2 = ok_of(raw_on(&A, bytes, n), KMS__RESPONSE__RESULT_PSEUDONYMIZE,
	           "pseudonymize sent again");
	free(bytes);
	assert_int_equal(r1->pseudonymize->n_pseudonyms, 2);
	assert_int_equal(r2->pseudonymize->n_pseudonyms, 2);
	for (size_t i = 0; i < 2; i++)
		assert_string_equal(r1->pseudonymize->pseudonyms[i], r2->pseudonymize->pseudonyms[i]);
	kms__response__free_unpacked(r1, NULL);
	kms__response__free_unpacked(r2, NULL);
	ps.n_values = 1; /* one value fewer: other data */
	bytes = pack_signed(&req, &n);
	expect(raw_on(&B, bytes, n), KMS__STATUS__INVALID_ARGUMENT, "pseudonymize, other values");
	free(bytes);

	assert_int_equal(ok_entries("rec-mac-1"), 1);
	assert_int_equal(ok_entries("rec-ps-1"), 1);
}

/* ---- (3) keys made and used on A and B while B dies ---- */

typedef struct loader {
	harness *h;
	const char *tag;
	char acked[LOAD_KEYS][E2E_KEY_ID_SIZE];
	atomic_int n_acked;
	int lost;
} loader;

/* A new socket to h in place of *s, once h listens again (a replica
 * being restarted refuses the dial meanwhile): at most WAIT_MS. */
static bool redial(harness *h, nng_socket *s)
{
	kms_nng_close_bounded(*s, TEST_CLOSE_WAIT_MS);
	uint64_t until = e2e_now_ms() + WAIT_MS;
	while (!e2e_socket(h, 2000, 5000, s)) {
		if (e2e_now_ms() > until)
			return false;
		e2e_sleep_ms(50);
	}
	return true;
}

static void *load_main(void *arg)
{
	loader *l = arg;
	nng_socket s;
	if (!e2e_socket(l->h, 2000, 5000, &s))
		return NULL;
	for (int i = 0; i < LOAD_KEYS; i++) {
		Kms__CreateKeyRequest ck = KMS__CREATE_KEY_REQUEST__INIT;
		Kms__Request req = KMS__REQUEST__INIT;
		char request_id[64];
		snprintf(request_id, sizeof request_id, "replicas-%s-%d", l->tag, i);
		ck.description = "replica load";
		req.op_case = KMS__REQUEST__OP_CREATE_KEY;
		req.create_key = &ck;
		req.request_id = request_id;
		Kms__Response *r = harness_call_on(l->h, s, &req);
		if (!r) {
			/* No answer: the replica died under it. A client dials
			 * again; NNG 1.5.2's REQ socket may not recover by itself
			 * from a pipe that closed with a request in flight. */
			if (!redial(l->h, &s))
				return NULL;
		}
		if (r && r->status == KMS__STATUS__OK &&
		    r->result_case == KMS__RESPONSE__RESULT_CREATE_KEY) {
			int n = atomic_load(&l->n_acked);
			snprintf(l->acked[n], E2E_KEY_ID_SIZE, "%s",
			         r->create_key->key_metadata->key_id);
			atomic_store(&l->n_acked, n + 1);
			/* And a use of it, on the same replica. */
			Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
			Kms__Request er = KMS__REQUEST__INIT;
			char eid[64];
			snprintf(eid, sizeof eid, "replicas-%s-%d-e", l->tag, i);
			e.key_id = l->acked[n];
			e.plaintext.data = (uint8_t *)(uintptr_t)"load";
			e.plaintext.len = 4;
			er.op_case = KMS__REQUEST__OP_ENCRYPT;
			er.encrypt = &e;
			er.request_id = eid;
			Kms__Response *re = harness_call_on(l->h, s, &er);
			if (!re && !redial(l->h, &s)) /* as above */
				return NULL;
			if (!re || re->status != KMS__STATUS__OK) {
				l->lost++;
				fprintf(stderr, "test_replicas: %s: Encrypt %d: %s\n", l->tag, i,
				        re ? re->message : "no answer");
			}
			if (re)
				kms__response__free_unpacked(re, NULL);
		} else {
			l->lost++; /* no answer (B died) or refused while it restarted */
			fprintf(stderr, "test_replicas: %s: CreateKey %d: %s\n", l->tag, i,
			        r ? r->message : "no answer");
		}
		if (r)
			kms__response__free_unpacked(r, NULL);
	}
	kms_nng_close_bounded(s, TEST_CLOSE_WAIT_MS);
	return NULL;
}

static void wait_acked(loader *l, int at_least)
{
	uint64_t until = e2e_now_ms() + WAIT_MS;
	while (atomic_load(&l->n_acked) < at_least && e2e_now_ms() < until)
		e2e_sleep_ms(20);
}

static void roundtrip_everywhere(const char *key_id)
{
	char why[512];
	harness *all[] = { &A, &B, &C };
	for (size_t i = 0; i < 3; i++)
		if (!e2e_roundtrip(all[i], key_id, why, sizeof why))
			fail_msg("key %s on replica %c: %s", key_id, (int)('A' + i), why);
}

static void load_through_restarts(void **state)
{
	(void)state;
	static loader la = { .h = &A, .tag = "a" }, lb = { .h = &B, .tag = "b" };
	pthread_t ta, tb;
	assert_int_equal(pthread_create(&ta, NULL, load_main, &la), 0);
	assert_int_equal(pthread_create(&tb, NULL, load_main, &lb), 0);
	for (int round = 1; round <= 2; round++) {
		wait_acked(&la, 5 * round);
		wait_acked(&lb, 5 * round);
		restart(&B, &ob);
	}
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	fprintf(stderr, "test_replicas: A made %d keys (%d requests lost), B %d (%d lost, "
	        "two kill -9)\n", atomic_load(&la.n_acked), la.lost, atomic_load(&lb.n_acked),
	        lb.lost);
	/* A never lost one: B's restarts left A's work in progress alone. */
	assert_int_equal(la.lost, 0);
	assert_true(atomic_load(&lb.n_acked) >= 10);
	for (int i = 0; i < atomic_load(&la.n_acked); i++)
		roundtrip_everywhere(la.acked[i]);
	for (int i = 0; i < atomic_load(&lb.n_acked); i++)
		roundtrip_everywhere(lb.acked[i]);
	harness *all[] = { &A, &B, &C };
	for (size_t i = 0; i < 3; i++)
		assert_false(harness_log_contains(all[i], "MISSING HSM object"));

	/* All stopped: the token holds what ListKeys shows, no orphan. */
	e2e_key *keys = NULL;
	size_t n = 0;
	assert_true(e2e_list_keys(&A, &keys, &n));
	assert_int_equal(harness_stop(&B), 0);
	assert_int_equal(harness_stop(&C), 0);
	assert_int_equal(harness_stop(&A), 0);
	char why[512];
	bool matches = e2e_token_matches(keys, n, NULL, why, sizeof why);
	free(keys);
	if (!matches)
		fail_msg("the token after the load: %s", why);
	/* Back up for the teardown. */
	unsigned ra = harness_ready_lines(&A), rb = harness_ready_lines(&B),
	         rc = harness_ready_lines(&C);
	assert_true(harness_spawn(&A, &oa) && harness_wait_ready(&A, ra));
	assert_true(harness_spawn(&B, &ob) && harness_spawn(&C, &oc) &&
	            harness_wait_ready(&B, rb) && harness_wait_ready(&C, rc));
}

/* ---- (4) the KEK rotated while replicas wrap under it ---- */

/* Keys CreateKey made on C while the KEK was rotated through A, and a blob
 * sealed under each. */
#define KEK_LOAD 24
typedef struct kek_loader {
	char keys[KEK_LOAD][E2E_KEY_ID_SIZE];
	uint8_t *blobs[KEK_LOAD];
	size_t blob_lens[KEK_LOAD];
	int made, failed;
	atomic_bool stop;
} kek_loader;

static void *kek_load_main(void *arg)
{
	kek_loader *l = arg;
	for (int i = 0; i < KEK_LOAD && !atomic_load(&l->stop); i++) {
		Kms__Response *r = e2e_create_key(&C);
		if (!r || r->status != KMS__STATUS__OK ||
		    r->result_case != KMS__RESPONSE__RESULT_CREATE_KEY) {
			l->failed++;
			if (r)
				kms__response__free_unpacked(r, NULL);
			continue;
		}
		char *id = l->keys[l->made];
		snprintf(id, E2E_KEY_ID_SIZE, "%s", r->create_key->key_metadata->key_id);
		kms__response__free_unpacked(r, NULL);
		Kms__Status st;
		l->blobs[l->made] = encrypt_on(&C, id, &l->blob_lens[l->made], &st);
		if (l->blobs[l->made])
			l->made++;
		else
			l->failed++;
	}
	return NULL;
}

static Kms__ListKeksResponse *list_keks_on(harness *h)
{
	Kms__ListKeksRequest lk = KMS__LIST_KEKS_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_LIST_KEKS;
	req.list_keks = &lk;
	Kms__Response *r = harness_call(h, &req);
	if (!r || r->status != KMS__STATUS__OK || r->result_case != KMS__RESPONSE__RESULT_LIST_KEKS)
		fail_msg("ListKeks: %s", r ? r->message : "no answer");
	Kms__ListKeksResponse *l = r->list_keks;
	r->list_keks = NULL;
	r->result_case = KMS__RESPONSE__RESULT__NOT_SET;
	kms__response__free_unpacked(r, NULL);
	return l;
}

/* The KEK with that id in ListKeks on h: its state, and the versions under
 * it into *versions. */
static Kms__KekState kek_state_on(harness *h, uint32_t id, uint64_t *versions)
{
	Kms__ListKeksResponse *l = list_keks_on(h);
	Kms__KekState st = -1;
	for (size_t i = 0; i < l->n_keks; i++)
		if (l->keks[i]->id == id) {
			st = l->keks[i]->state;
			*versions = l->keks[i]->versions;
		}
	kms__list_keks_response__free_unpacked(l, NULL);
	return st;
}

/* RotateKek through A while C makes keys and seals under them (wrapping
 * under the KEK being drained, some of them): every replica's tick drains
 * and retires the old KEK, once; every key C was answered for works on A,
 * B and C, and every blob decrypts on each. */
static void kek_rotated_under_replicas(void **state)
{
	(void)state;
	Kms__ListKeksResponse *before = list_keks_on(&A);
	uint32_t old_id = 0;
	for (size_t i = 0; i < before->n_keks; i++)
		if (before->keks[i]->state == KMS__KEK_STATE__KEK_CURRENT)
			old_id = before->keks[i]->id;
	kms__list_keks_response__free_unpacked(before, NULL);
	assert_true(old_id > 0);

	static kek_loader l;
	memset(&l, 0, sizeof l);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, kek_load_main, &l), 0);
	Kms__RotateKekRequest rk = KMS__ROTATE_KEK_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_ROTATE_KEK;
	req.rotate_kek = &rk;
	Kms__Response *r = call_ok_on(&A, &req, "RotateKek");
	uint32_t new_id = r->rotate_kek->kek->id;
	kms__response__free_unpacked(r, NULL);
	assert_int_equal(pthread_join(t, NULL), 0);

	/* The replicas' ticks (one a second) drain the old KEK and retire it. */
	uint64_t left = 1, until = e2e_now_ms() + WAIT_MS;
	while (kek_state_on(&B, old_id, &left) != KMS__KEK_STATE__KEK_RETIRED &&
	       e2e_now_ms() < until)
		e2e_sleep_ms(50);
	assert_int_equal(kek_state_on(&B, old_id, &left), KMS__KEK_STATE__KEK_RETIRED);
	assert_int_equal(left, 0);
	assert_int_equal(kek_state_on(&C, new_id, &left), KMS__KEK_STATE__KEK_CURRENT);
	fprintf(stderr, "test_replicas: KEK %u retired, %u current with %llu versions; C made %d "
	        "keys during the rotation (%d requests failed)\n",
	        (unsigned)old_id, (unsigned)new_id, (unsigned long long)left, l.made, l.failed);
	assert_true(l.made > 0);
	harness *all[] = { &A, &B, &C };
	for (int i = 0; i < l.made; i++) {
		for (size_t h = 0; h < 3; h++) {
			char why[256];
			if (!e2e_roundtrip(all[h], l.keys[i], why, sizeof why))
				fail_msg("key %s on replica %zu after the rotation: %s", l.keys[i], h, why);
			char message[256];
			Kms__Status st = status_of(e2e_decrypt(all[h], l.blobs[i], l.blob_lens[i]),
			                           message, sizeof message);
			if (st != KMS__STATUS__OK)
				fail_msg("blob %d on replica %zu after the rotation: %s", i, h, message);
		}
		free(l.blobs[i]);
	}
}

/* ---- a replica's copy of the fleet's audit log ---- */

/* Rewrites the last record of log.bin (dir/log.bin) with one byte of its
 * entry changed and its leaf hash made again: a copy whose history
 * differs from the fleet's, but is whole in itself. */
static void forge_last_record(const char *dir)
{
	char path[900];
	snprintf(path, sizeof path, "%s/log.bin", dir);
	size_t len = 0;
	uint8_t *bin = (uint8_t *)harness_read_file(path, &len);
	assert_non_null(bin);
	size_t last = 0, off = 0;
	while (len - off >= 2) {
		size_t n = ((size_t)bin[off] << 8) | bin[off + 1];
		if (n == 0 || len - off - 2 < n + 32)
			break;
		last = off;
		off += 2 + n + 32;
	}
	assert_int_equal(off, len);
	size_t n = ((size_t)bin[last] << 8) | bin[last + 1];
	uint8_t *entry = bin + last + 2;
	uint8_t *at = memchr(entry, '"', n); /* the first member name's quote */
	assert_non_null(at);
	at[1] ^= 0x20; /* "time" -> "Time" */
	uint8_t *leaf = malloc(n + 1);
	assert_non_null(leaf);
	leaf[0] = 0x00;
	memcpy(leaf + 1, entry, n);
	SHA256(leaf, n + 1, entry + n);
	free(leaf);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(bin, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	free(bin);
}

/* A fourth replica, D, started on a copy of C's audit log: refused when
 * the copy's last entry is not the fleet's (the copy is not a prefix of
 * the fleet's log), and with the copy moved aside it copies the whole log
 * from the database and reaches the fleet's checkpoint. */
static void copy_not_the_fleets_refused(void **state)
{
	(void)state;
	static harness D;
	harness_options od = ob;
	check(harness_replica_init(&D, "replica-d"), "make replica D");
	assert_int_equal(harness_stop(&C), 0); /* a clean stop: its copy is whole and signed */
	char cmd[4000], audit[800];
	snprintf(audit, sizeof audit, "%s/data/audit", D.dir);
	snprintf(cmd, sizeof cmd, "mkdir -p '%s/data' && cp -r '%s/data/audit' '%s' && "
	         "rm -f '%s/public/checkpoint' '%s/log.pos'",
	         D.dir, C.dir, audit, audit, audit);
	check(system(cmd) == 0, "copy C's audit log for D");
	forge_last_record(audit);
	unsigned ready = harness_ready_lines(&D);
	check(harness_spawn(&D, &od), "start D");
	assert_false(harness_wait_ready(&D, ready));
	assert_true(harness_log_contains(&D, "is not a copy of the fleet's audit log"));
	harness_kill9(&D);

	snprintf(cmd, sizeof cmd, "mv '%s' '%s.refused'", audit, audit);
	check(system(cmd) == 0, "move D's copy aside");
	ready = harness_ready_lines(&D);
	check(harness_spawn(&D, &od) && harness_wait_ready(&D, ready), "start D on no copy");
	char numbered[32];
	check(store_sql("SELECT CAST(coalesce(max(seq) + 1, 0) AS TEXT) FROM audit_entries",
	                numbered, sizeof numbered), "count the fleet's entries");
	audit_cp cp;
	audit_wait_checkpoint(&D, strtoull(numbered, NULL, 10), WAIT_MS, &cp);
	audit_cp_free(&cp);
	assert_int_equal(harness_stop(&D), 0);
	ready = harness_ready_lines(&C);
	check(harness_spawn(&C, &oc) && harness_wait_ready(&C, ready), "start C again");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(change_on_a_enforced_everywhere),
		cmocka_unit_test(authorization_on_a_enforced_on_b),
		cmocka_unit_test(sent_again_answered_once),
		cmocka_unit_test(sent_again_one_consent_use),
		cmocka_unit_test(sent_again_mac_and_pseudonym),
		cmocka_unit_test(intents_owned),
		cmocka_unit_test(load_through_restarts),
		cmocka_unit_test(kek_rotated_under_replicas),
		cmocka_unit_test(copy_not_the_fleets_refused),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
