/*
 * test_store_authz: principals, access keys and grants in the store, on a
 * real SQLite file (no HSM: the wrapped secrets here are stand-in bytes;
 * tests/kms/authz/test_authz_secrets wraps real ones). Names are never
 * reused, at most two active access keys per principal (also under racing
 * writers), a principal made with its first access key is made whole or not
 * at all, the live-grants lookup leaves ended grants out, and a schema 1
 * database gains the new tables on open.
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
#include <unistd.h>

#include "common/error.h"
#include "common/context.h"
#include "kms/store/store.h"
#include "tests/support/store_test.h"
#include "kms/store/store_internal.h"


#define KEY1 "k-00000000000000000000000000000001"
#define KEY2 "k-00000000000000000000000000000002"

static char dir[STORE_TEST_DIR_SIZE];

static int setup(void **state)
{
	(void)state;
	store_test_dir_make("store-authz", dir, NULL);
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

/* A distinct id with that prefix for each n, in one of 8 rotating
 * buffers: copy it to keep it. */
static const char *id_n(const char *prefix, unsigned n)
{
	static _Thread_local char ids[8][AUTHZ_ID_SIZE];
	static _Thread_local int next;
	char *p = ids[next++ % 8];
	uint8_t random[AUTHZ_ID_RANDOM_BYTES] = { 0 };
	random[0] = (uint8_t)(n >> 8);
	random[1] = (uint8_t)n;
	assert_ok(authz_names_id_format(prefix, random, p));
	return p;
}

static store_principal principal(const char *name, uint32_t roles)
{
	store_principal p;
	memset(&p, 0, sizeof p);
	snprintf(p.name, sizeof p.name, "%s", name);
	p.roles = roles;
	p.state = PRINCIPAL_STATE_ENABLED;
	p.created_at = 100;
	p.updated_at = 100;
	return p;
}

static store_access_key access_key(const char *id, const char *owner, int64_t at)
{
	store_access_key k;
	memset(&k, 0, sizeof k);
	snprintf(k.id, sizeof k.id, "%s", id);
	snprintf(k.principal, sizeof k.principal, "%s", owner);
	memset(k.wrapped, 0xa5, 61);
	k.wrapped_len = 61;
	k.created_at = at;
	return k;
}

static void add_key(store *st, const char *id)
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
	assert_ok(store_key_insert(st, &k, ""));
}

static void test_principals(void **state)
{
	(void)state;
	store *st = open_store();
	store_principal p = principal("payments-svc", PRINCIPAL_ROLE_APP);
	snprintf(p.cert_name, sizeof p.cert_name, "payments.internal");
	assert_ok(store_principal_create(st, &p));
	store_principal admin = principal("alice", PRINCIPAL_ROLE_ADMIN | PRINCIPAL_ROLE_AUDITOR);
	assert_ok(store_principal_create(st, &admin));

	store_principal got;
	assert_ok(store_principal_get(st, "payments-svc", &got));
	assert_string_equal(got.name, "payments-svc");
	assert_int_equal(got.roles, PRINCIPAL_ROLE_APP);
	assert_string_equal(got.cert_name, "payments.internal");
	assert_int_equal(got.state, PRINCIPAL_STATE_ENABLED);
	assert_ok(store_principal_get(st, "alice", &got));
	assert_int_equal(got.roles, PRINCIPAL_ROLE_ADMIN | PRINCIPAL_ROLE_AUDITOR);
	assert_string_equal(got.cert_name, "");

	/* Shapes are refused before SQL, with one line that does not echo. */
	assert_status(store_principal_create(st, &p), KMS_ALREADY_EXISTS);
	store_principal bad = principal("has space", PRINCIPAL_ROLE_APP);
	assert_status(store_principal_create(st, &bad), KMS_INVALID_ARGUMENT);
	assert_null(strstr(kms_error_message(), "has space"));
	bad = principal("norole", 0);
	assert_status(store_principal_create(st, &bad), KMS_INVALID_ARGUMENT);
	assert_message_has("at least one role");
	bad = principal("toomany", 8);
	assert_status(store_principal_create(st, &bad), KMS_INVALID_ARGUMENT);
	bad = principal("", PRINCIPAL_ROLE_APP);
	assert_status(store_principal_create(st, &bad), KMS_INVALID_ARGUMENT);
	char long_name[80];
	memset(long_name, 'a', 64);
	long_name[64] = '\0';
	bad = principal("x", PRINCIPAL_ROLE_APP);
	memcpy(bad.name, long_name, sizeof bad.name - 1); /* 63: fits */
	assert_ok(store_principal_create(st, &bad));
	assert_status(store_principal_get(st, long_name, &got), KMS_INVALID_ARGUMENT);
	bad = principal("certbad", PRINCIPAL_ROLE_APP);
	bad.cert_name[0] = '\n';
	assert_status(store_principal_create(st, &bad), KMS_INVALID_ARGUMENT);

	/* State changes. */
	assert_ok(store_principal_set_state(st, "payments-svc", PRINCIPAL_STATE_DISABLED, 200));
	assert_ok(store_principal_get(st, "payments-svc", &got));
	assert_int_equal(got.state, PRINCIPAL_STATE_DISABLED);
	assert_int_equal(got.updated_at, 200);
	assert_int_equal(got.created_at, 100);
	assert_ok(store_principal_set_state(st, "payments-svc", PRINCIPAL_STATE_ENABLED, 201));
	assert_ok(store_principal_get(st, "payments-svc", &got));
	assert_int_equal(got.state, PRINCIPAL_STATE_ENABLED);
	assert_status(store_principal_set_state(st, "nobody", PRINCIPAL_STATE_DISABLED, 1),
	              KMS_NOT_FOUND);
	assert_status(store_principal_set_state(st, "alice", PRINCIPAL_STATE_DELETED, 1),
	              KMS_INVALID_ARGUMENT);

	store_principal *list;
	size_t n;
	assert_ok(store_principal_list(st, NULL, 100, &list, &n));
	assert_int_equal(n, 3);
	assert_string_equal(list[0].name, long_name + 1); /* "aaa...": sorts first */
	assert_string_equal(list[1].name, "alice");
	assert_string_equal(list[2].name, "payments-svc");
	free(list);
	assert_ok(store_principal_list(st, "alice", 100, &list, &n));
	assert_int_equal(n, 1);
	assert_string_equal(list[0].name, "payments-svc");
	free(list);

	/* Delete: a tombstone; the name is never reused, not even after reopening. */
	assert_ok(store_principal_delete(st, "payments-svc", 300));
	assert_status(store_principal_get(st, "payments-svc", &got), KMS_NOT_FOUND);
	assert_status(store_principal_delete(st, "payments-svc", 301), KMS_NOT_FOUND);
	assert_status(store_principal_set_state(st, "payments-svc", PRINCIPAL_STATE_ENABLED, 302),
	              KMS_NOT_FOUND);
	assert_ok(store_principal_list(st, NULL, 100, &list, &n));
	assert_int_equal(n, 2);
	free(list);
	assert_status(store_principal_create(st, &p), KMS_ALREADY_EXISTS);
	assert_message_has("never reused");
	store_close(st);
	st = open_store();
	assert_status(store_principal_create(st, &p), KMS_ALREADY_EXISTS);
	assert_status(store_principal_get(st, "payments-svc", &got), KMS_NOT_FOUND);
	assert_ok(store_principal_get(st, "alice", &got));
	store_close(st);

	/* The schema says so too: a tombstone cannot be revived or removed by SQL. */
	char path[512];
	snprintf(path, sizeof path, "%s/kms.db", dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_not_equal(sqlite3_exec(db, "UPDATE principals SET state = 'enabled' "
	                                      "WHERE name = 'payments-svc'", NULL, NULL, NULL),
	                     SQLITE_OK);
	assert_int_not_equal(sqlite3_exec(db, "DELETE FROM principals WHERE name = 'payments-svc'",
	                                  NULL, NULL, NULL),
	                     SQLITE_OK);
	sqlite3_close(db);
}

static void test_access_keys(void **state)
{
	(void)state;
	store *st = open_store();
	store_principal p = principal("svc", PRINCIPAL_ROLE_APP);
	assert_ok(store_principal_create(st, &p));
	char ak1[AUTHZ_ID_SIZE], ak2[AUTHZ_ID_SIZE], ak3[AUTHZ_ID_SIZE];
	snprintf(ak1, sizeof ak1, "%s", id_n("AK", 1));
	snprintf(ak2, sizeof ak2, "%s", id_n("AK", 2));
	snprintf(ak3, sizeof ak3, "%s", id_n("AK", 3));

	store_access_key k = access_key(ak1, "svc", 10);
	assert_ok(store_access_key_create(st, &k));
	assert_status(store_access_key_create(st, &k), KMS_ALREADY_EXISTS);
	k = access_key(ak2, "svc", 11);
	assert_ok(store_access_key_create(st, &k));

	/* A third active key is refused, and nothing of it is stored. */
	k = access_key(ak3, "svc", 12);
	assert_status(store_access_key_create(st, &k), KMS_FAILED_PRECONDITION);
	assert_message_has("revoke one first");
	store_access_key got;
	assert_status(store_access_key_get(st, ak3, &got), KMS_NOT_FOUND);

	/* Revoke one: then a new one is allowed. */
	assert_ok(store_access_key_revoke(st, ak1, 20));
	assert_status(store_access_key_revoke(st, ak1, 21), KMS_FAILED_PRECONDITION);
	assert_message_has("already revoked");
	assert_status(store_access_key_revoke(st, id_n("AK", 99), 21), KMS_NOT_FOUND);
	assert_ok(store_access_key_create(st, &k));

	assert_ok(store_access_key_get(st, ak1, &got));
	assert_int_equal(got.state, ACCESS_KEY_STATE_REVOKED);
	assert_int_equal(got.revoked_at, 20);
	assert_string_equal(got.principal, "svc");
	assert_int_equal(got.wrapped_len, 61);
	assert_int_equal(got.wrapped[0], 0xa5);
	assert_ok(store_access_key_get(st, ak3, &got));
	assert_int_equal(got.state, ACCESS_KEY_STATE_ACTIVE);
	assert_int_equal(got.revoked_at, 0);

	store_access_key *list;
	size_t n;
	assert_ok(store_access_key_list(st, "svc", 10, &list, &n));
	assert_int_equal(n, 3);
	assert_string_equal(list[0].id, ak1);
	assert_string_equal(list[1].id, ak2);
	assert_string_equal(list[2].id, ak3);
	assert_int_equal(list[0].state, ACCESS_KEY_STATE_REVOKED);
	assert_int_equal(list[1].state, ACCESS_KEY_STATE_ACTIVE);
	free(list);

	/* Unknown owner, malformed ids, an empty or oversized secret. */
	k = access_key(id_n("AK", 4), "ghost", 1);
	assert_status(store_access_key_create(st, &k), KMS_NOT_FOUND);
	k = access_key("AKaaaaaaaaaaaaaaaaaaaa", "svc", 1);
	assert_status(store_access_key_create(st, &k), KMS_INVALID_ARGUMENT);
	k = access_key(id_n("GR", 4), "svc", 1);
	assert_status(store_access_key_create(st, &k), KMS_INVALID_ARGUMENT);
	k = access_key(id_n("AK", 4), "svc", 1);
	k.wrapped_len = 0;
	assert_status(store_access_key_create(st, &k), KMS_INVALID_ARGUMENT);
	assert_status(store_access_key_get(st, "AK", &got), KMS_INVALID_ARGUMENT);

	/* Deleting the principal revokes its active keys. */
	assert_ok(store_principal_delete(st, "svc", 50));
	assert_ok(store_access_key_list(st, "svc", 10, &list, &n));
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(list[i].state, ACCESS_KEY_STATE_REVOKED);
	assert_int_equal(list[2].revoked_at, 50);
	free(list);
	k = access_key(id_n("AK", 5), "svc", 60);
	assert_status(store_access_key_create(st, &k), KMS_NOT_FOUND);
	store_close(st);

	/* The schema restates the rules: SQL alone cannot add a third active
	 * key, revive a revoked one, or swap a secret. */
	char path[512];
	snprintf(path, sizeof path, "%s/kms.db", dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "INSERT INTO principals VALUES "
	                                  "('raw', 2, '', 'enabled', 1, 1)", NULL, NULL, NULL),
	                 SQLITE_OK);
	char sql[256];
	for (unsigned i = 0; i < 3; i++) {
		snprintf(sql, sizeof sql,
		         "INSERT INTO access_keys VALUES ('%s', 'raw', x'01', 'active', 1, 0)",
		         id_n("AK", 200 + i));
		int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
		if (i < 2)
			assert_int_equal(rc, SQLITE_OK);
		else
			assert_int_not_equal(rc, SQLITE_OK);
	}
	snprintf(sql, sizeof sql, "UPDATE access_keys SET state = 'active' WHERE id = '%s'", ak1);
	assert_int_not_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	snprintf(sql, sizeof sql, "UPDATE access_keys SET wrapped = x'02' WHERE id = '%s'", ak2);
	assert_int_not_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* Racing writers: of 6 threads each creating a key for one principal,
 * exactly two succeed; the rest are refused, none fails otherwise. */
typedef struct race_arg {
	store *st;
	unsigned n;
	kms_status result;
} race_arg;

/* store_principal_create_with_key (kmsd --bootstrap-admin's write): the
 * principal and its access key together, or neither. */
static void test_principal_with_key(void **state)
{
	(void)state;
	store *st = open_store();
	char ak1[AUTHZ_ID_SIZE];
	snprintf(ak1, sizeof ak1, "%s", id_n("AK", 1));
	store_principal p = principal("first", PRINCIPAL_ROLE_ADMIN);
	store_access_key k = access_key(ak1, "first", 10);
	assert_ok(store_principal_create_with_key(st, &p, &k));
	store_principal got;
	store_access_key got_key;
	assert_ok(store_principal_get(st, "first", &got));
	assert_int_equal(got.roles, PRINCIPAL_ROLE_ADMIN);
	assert_ok(store_access_key_get(st, ak1, &got_key));
	assert_string_equal(got_key.principal, "first");
	assert_int_equal(got_key.state, ACCESS_KEY_STATE_ACTIVE);

	/* The access key's insert fails (its id is taken) after the
	 * principal's succeeded: the principal is not kept either, so its name
	 * is still free. */
	p = principal("second", PRINCIPAL_ROLE_ADMIN);
	k = access_key(ak1, "second", 11);
	assert_status(store_principal_create_with_key(st, &p, &k), KMS_ALREADY_EXISTS);
	assert_status(store_principal_get(st, "second", &got), KMS_NOT_FOUND);
	assert_ok(store_principal_create(st, &p));

	/* The principal's insert fails (the name was used): no access key. */
	char ak2[AUTHZ_ID_SIZE];
	snprintf(ak2, sizeof ak2, "%s", id_n("AK", 2));
	p = principal("first", PRINCIPAL_ROLE_APP);
	k = access_key(ak2, "first", 12);
	assert_status(store_principal_create_with_key(st, &p, &k), KMS_ALREADY_EXISTS);
	assert_status(store_access_key_get(st, ak2, &got_key), KMS_NOT_FOUND);

	/* A key that is not the principal's is refused before anything. */
	p = principal("third", PRINCIPAL_ROLE_APP);
	k = access_key(ak2, "first", 13);
	assert_status(store_principal_create_with_key(st, &p, &k), KMS_INVALID_ARGUMENT);
	assert_status(store_principal_get(st, "third", &got), KMS_NOT_FOUND);
	assert_status(store_access_key_get(st, ak2, &got_key), KMS_NOT_FOUND);
	store_close(st);
}

static void *race_create(void *p)
{
	race_arg *a = p;
	store_access_key k = access_key(id_n("AK", 300 + a->n), "racer", 1);
	a->result = store_access_key_create(a->st, &k);
	return NULL;
}

static void test_access_key_race(void **state)
{
	(void)state;
	store *st = open_store();
	store_principal p = principal("racer", PRINCIPAL_ROLE_APP);
	assert_ok(store_principal_create(st, &p));
	enum { THREADS = 6 };
	pthread_t t[THREADS];
	race_arg args[THREADS];
	for (unsigned i = 0; i < THREADS; i++) {
		args[i] = (race_arg){ .st = st, .n = i, .result = KMS_INTERNAL };
		assert_int_equal(pthread_create(&t[i], NULL, race_create, &args[i]), 0);
	}
	size_t ok = 0, refused = 0;
	for (unsigned i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		if (args[i].result == KMS_OK)
			ok++;
		else if (args[i].result == KMS_FAILED_PRECONDITION)
			refused++;
	}
	assert_int_equal(ok, 2);
	assert_int_equal(refused, THREADS - 2);
	store_access_key *list;
	size_t n;
	assert_ok(store_access_key_list(st, "racer", 10, &list, &n));
	assert_int_equal(n, 2);
	free(list);
	store_close(st);
}

static void context_of(const char *k, const char *v, store_grant *g)
{
	context_pair pair = context_pair_from_cstr(k, v);
	assert_ok(context_encode(&pair, k ? 1 : 0, g->context, sizeof g->context,
	                         &g->context_len));
}

static store_grant grant(const char *id, const char *key_id, const char *grantee,
                         const char *const *ops, size_t n_ops)
{
	store_grant g;
	memset(&g, 0, sizeof g);
	snprintf(g.id, sizeof g.id, "%s", id);
	snprintf(g.key_id, sizeof g.key_id, "%s", key_id);
	snprintf(g.grantee, sizeof g.grantee, "%s", grantee);
	snprintf(g.creator, sizeof g.creator, "alice");
	assert_ok(store_grant_ops_join(ops, n_ops, g.operations));
	context_of(NULL, NULL, &g);
	g.created_at = 500;
	return g;
}

static void test_grants(void **state)
{
	(void)state;
	store *st = open_store();
	add_key(st, KEY1);
	add_key(st, KEY2);
	store_principal p = principal("app", PRINCIPAL_ROLE_APP);
	assert_ok(store_principal_create(st, &p));
	p = principal("other", PRINCIPAL_ROLE_APP);
	assert_ok(store_principal_create(st, &p));

	/* The canonical operation list. */
	char ops_text[STORE_GRANT_OPS_TEXT_MAX + 1];
	const char *enc_dec[] = { "encrypt", "decrypt" };
	assert_ok(store_grant_ops_join(enc_dec, 2, ops_text));
	assert_string_equal(ops_text, "decrypt,encrypt");
	const char *twice[] = { "encrypt", "encrypt" };
	assert_status(store_grant_ops_join(twice, 2, ops_text), KMS_INVALID_ARGUMENT);
	const char *odd[] = { "Encrypt" };
	assert_status(store_grant_ops_join(odd, 1, ops_text), KMS_INVALID_ARGUMENT);
	assert_status(store_grant_ops_join(odd, 0, ops_text), KMS_INVALID_ARGUMENT);

	char gr1[AUTHZ_ID_SIZE], gr2[AUTHZ_ID_SIZE], gr3[AUTHZ_ID_SIZE];
	snprintf(gr1, sizeof gr1, "%s", id_n("GR", 1));
	snprintf(gr2, sizeof gr2, "%s", id_n("GR", 2));
	snprintf(gr3, sizeof gr3, "%s", id_n("GR", 3));
	store_grant g1 = grant(gr1, KEY1, "app", enc_dec, 2);
	context_of("purpose", "billing", &g1);
	assert_ok(store_grant_create(st, &g1));
	assert_status(store_grant_create(st, &g1), KMS_ALREADY_EXISTS);
	const char *enc[] = { "encrypt" };
	store_grant g2 = grant(gr2, KEY1, "app", enc, 1);
	assert_ok(store_grant_create(st, &g2));
	store_grant g3 = grant(gr3, KEY2, "app", enc, 1);
	assert_ok(store_grant_create(st, &g3));
	store_grant g4 = grant(id_n("GR", 4), KEY1, "other", enc, 1);
	assert_ok(store_grant_create(st, &g4));

	store_grant got;
	assert_ok(store_grant_get(st, gr1, &got));
	assert_string_equal(got.key_id, KEY1);
	assert_string_equal(got.grantee, "app");
	assert_string_equal(got.creator, "alice");
	assert_string_equal(got.operations, "decrypt,encrypt");
	assert_int_equal(got.state, GRANT_STATE_LIVE);
	assert_int_equal(got.context_len, g1.context_len);
	assert_memory_equal(got.context, g1.context, g1.context_len);
	assert_true(store_grant_has_op(&got, "decrypt"));
	assert_true(store_grant_has_op(&got, "encrypt"));
	assert_false(store_grant_has_op(&got, "crypt"));
	assert_false(store_grant_has_op(&got, "re_encrypt"));

	/* The decision's lookup: live grants for (principal, key) only. */
	store_grant *live;
	size_t n;
	assert_ok(store_grants_live(st, "app", KEY1, &live, &n));
	assert_int_equal(n, 2);
	assert_true(strcmp(live[0].id, live[1].id) < 0);
	free(live);
	assert_ok(store_grants_live(st, "app", KEY2, &live, &n));
	assert_int_equal(n, 1);
	assert_string_equal(live[0].id, gr3);
	free(live);
	assert_ok(store_grants_live(st, "nobody", KEY2, &live, &n));
	assert_int_equal(n, 0);
	assert_null(live);

	/* Retired and revoked grants drop out of it, for good. */
	assert_ok(store_grant_end(st, gr1, GRANT_STATE_RETIRED, 600));
	assert_ok(store_grants_live(st, "app", KEY1, &live, &n));
	assert_int_equal(n, 1);
	assert_string_equal(live[0].id, gr2);
	free(live);
	assert_ok(store_grant_end(st, gr2, GRANT_STATE_REVOKED, 601));
	assert_ok(store_grants_live(st, "app", KEY1, &live, &n));
	assert_int_equal(n, 0);
	assert_status(store_grant_end(st, gr2, GRANT_STATE_RETIRED, 602), KMS_FAILED_PRECONDITION);
	assert_message_has("already REVOKED");
	assert_status(store_grant_end(st, id_n("GR", 77), GRANT_STATE_REVOKED, 602), KMS_NOT_FOUND);
	assert_status(store_grant_end(st, gr3, GRANT_STATE_LIVE, 602), KMS_INVALID_ARGUMENT);
	assert_ok(store_grant_get(st, gr1, &got));
	assert_int_equal(got.state, GRANT_STATE_RETIRED);
	assert_int_equal(got.ended_at, 600);

	/* Lists: every state, by key or by grantee, paged by id. */
	store_grant *list;
	assert_ok(store_grant_list(st, STORE_GRANTS_BY_KEY, KEY1, NULL, 10, &list, &n));
	assert_int_equal(n, 3);
	free(list);
	assert_ok(store_grant_list(st, STORE_GRANTS_BY_KEY, KEY1, NULL, 1, &list, &n));
	assert_int_equal(n, 1);
	char after[AUTHZ_ID_SIZE];
	snprintf(after, sizeof after, "%s", list[0].id);
	free(list);
	assert_ok(store_grant_list(st, STORE_GRANTS_BY_KEY, KEY1, after, 10, &list, &n));
	assert_int_equal(n, 2);
	free(list);
	assert_ok(store_grant_list(st, STORE_GRANTS_BY_GRANTEE, "app", NULL, 10, &list, &n));
	assert_int_equal(n, 3);
	free(list);
	assert_ok(store_grant_list(st, STORE_GRANTS_BY_GRANTEE, "other", NULL, 10, &list, &n));
	assert_int_equal(n, 1);
	free(list);

	/* Refusals: unknown key or grantee, bad shapes. */
	store_grant bad = grant(id_n("GR", 10), "k-0000000000000000000000000000000f", "app", enc, 1);
	assert_status(store_grant_create(st, &bad), KMS_NOT_FOUND);
	bad = grant(id_n("GR", 10), KEY1, "ghost", enc, 1);
	assert_status(store_grant_create(st, &bad), KMS_NOT_FOUND);
	bad = grant(id_n("GR", 10), KEY1, "app", enc, 1);
	snprintf(bad.operations, sizeof bad.operations, "encrypt,decrypt");
	assert_status(store_grant_create(st, &bad), KMS_INVALID_ARGUMENT);
	bad = grant(id_n("GR", 10), KEY1, "app", enc, 1);
	bad.context_len = 3; /* 00 00 and a trailing byte */
	assert_status(store_grant_create(st, &bad), KMS_INVALID_ARGUMENT);
	bad = grant(id_n("AK", 10), KEY1, "app", enc, 1);
	assert_status(store_grant_create(st, &bad), KMS_INVALID_ARGUMENT);

	/* At most STORE_GRANTS_LIVE_MAX live grants per (grantee, key). */
	for (unsigned i = 0; i < STORE_GRANTS_LIVE_MAX; i++) {
		store_grant g = grant(id_n("GR", 1000 + i), KEY2, "other", enc, 1);
		assert_ok(store_grant_create(st, &g));
	}
	store_grant g = grant(id_n("GR", 2000), KEY2, "other", enc, 1);
	assert_status(store_grant_create(st, &g), KMS_FAILED_PRECONDITION);
	assert_ok(store_grants_live(st, "other", KEY2, &live, &n));
	assert_int_equal(n, STORE_GRANTS_LIVE_MAX);
	free(live);

	/* Deleting a principal revokes its live grants. */
	assert_ok(store_principal_delete(st, "other", 700));
	assert_ok(store_grants_live(st, "other", KEY1, &live, &n));
	assert_int_equal(n, 0);
	assert_ok(store_grant_get(st, g4.id, &got));
	assert_int_equal(got.state, GRANT_STATE_REVOKED);
	assert_int_equal(got.ended_at, 700);
	store_close(st);
}

static int64_t user_version(sqlite3 *db)
{
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

static int64_t table_count(sqlite3 *db)
{
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(db,
	                                    "SELECT count(*) FROM sqlite_schema WHERE type = "
	                                    "'table' AND name IN ('principals', 'access_keys', "
	                                    "'grants')",
	                                    -1, &s, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

/* A schema 1 database (keys only), made as kmsd before principals made it
 * (the migration 0 -> 1 as released, a key row written with its columns),
 * opens, keeps its keys and gains the new tables. */
static void test_migration_from_1(void **state)
{
	(void)state;
	char path[512];
	snprintf(path, sizeof path, "%s/kms.db", dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, store_migration_sql(0), NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
	                              "INSERT INTO keys (id, spec, usage, state, primary_version, "
	                              "created_at, region, lifecycle) VALUES ('" KEY1 "', 1, 1, 1, "
	                              "1, 1, 'in-test-1', 'ready'); PRAGMA user_version = 1;",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	assert_int_equal(table_count(db), 0);
	assert_int_equal(user_version(db), 1);
	sqlite3_close(db);

	bool created = true;
	store *st;
	assert_ok(store_open(dir, &st, &created));
	assert_false(created);
	store_key key;
	assert_ok(store_key_get(st, KEY1, &key));
	assert_int_equal(key.protection, KEY_PROTECTION_HSM_RESIDENT);
	store_principal p = principal("after-upgrade", PRINCIPAL_ROLE_ADMIN);
	assert_ok(store_principal_create(st, &p));
	store_access_key k = access_key(id_n("AK", 1), "after-upgrade", 1);
	assert_ok(store_access_key_create(st, &k));
	k = access_key(id_n("AK", 2), "after-upgrade", 1);
	assert_ok(store_access_key_create(st, &k));
	k = access_key(id_n("AK", 3), "after-upgrade", 1);
	assert_status(store_access_key_create(st, &k), KMS_FAILED_PRECONDITION);
	store_close(st);

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(table_count(db), 3);
	assert_int_equal(user_version(db), STORE_SCHEMA_VERSION);
	sqlite3_close(db);
}

/* The read cache (kms/store/store_cache.h) never answers with what a
 * committed write changed: the same thread reads again after its own
 * write, another thread after a write, and a rolled-back transaction's
 * reads are not kept. */
typedef struct writer_arg {
	store *st;
	int what;
	kms_status status;
} writer_arg;

static void *write_elsewhere(void *p)
{
	writer_arg *a = p;
	a->status = a->what == 0
	                    ? store_principal_set_state(a->st, "cached", PRINCIPAL_STATE_ENABLED, 300)
	                    : store_policy_set(a->st, KEY1, "{\"x\":1}");
	return NULL;
}

static void test_read_cache_fresh(void **state)
{
	(void)state;
	store *st = open_store();
	add_key(st, KEY1);
	store_principal p = principal("cached", PRINCIPAL_ROLE_APP);
	assert_ok(store_principal_create(st, &p));

	/* Read twice (the second from the cache), change, read: the change. */
	store_principal got;
	for (int i = 0; i < 2; i++) {
		assert_ok(store_principal_get(st, "cached", &got));
		assert_int_equal(got.state, PRINCIPAL_STATE_ENABLED);
	}
	assert_ok(store_principal_set_state(st, "cached", PRINCIPAL_STATE_DISABLED, 200));
	assert_ok(store_principal_get(st, "cached", &got));
	assert_int_equal(got.state, PRINCIPAL_STATE_DISABLED);
	assert_ok(store_principal_get(st, "cached", &got));
	assert_int_equal(got.state, PRINCIPAL_STATE_DISABLED);
	/* Another thread's write. */
	pthread_t t;
	writer_arg a = { st, 0, KMS_INTERNAL };
	assert_int_equal(pthread_create(&t, NULL, write_elsewhere, &a), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_ok(a.status);
	assert_ok(store_principal_get(st, "cached", &got));
	assert_int_equal(got.state, PRINCIPAL_STATE_ENABLED);

	/* Not found is cached too, and a create ends it. */
	assert_status(store_principal_get(st, "later", &got), KMS_NOT_FOUND);
	assert_status(store_principal_get(st, "later", &got), KMS_NOT_FOUND);
	p = principal("later", PRINCIPAL_ROLE_APP);
	assert_ok(store_principal_create(st, &p));
	assert_ok(store_principal_get(st, "later", &got));

	/* A read inside a transaction that rolls back is not kept. */
	assert_ok(store_begin(st));
	p = principal("rolled-back", PRINCIPAL_ROLE_APP);
	assert_ok(store_principal_create(st, &p));
	assert_ok(store_principal_get(st, "rolled-back", &got));
	store_rollback(st);
	assert_status(store_principal_get(st, "rolled-back", &got), KMS_NOT_FOUND);

	/* An access key, then revoked. */
	char akid[AUTHZ_ID_SIZE];
	snprintf(akid, sizeof akid, "%s", id_n("AK", 77));
	store_access_key ak = access_key(akid, "cached", 150);
	assert_ok(store_access_key_create(st, &ak));
	store_access_key ak_got;
	for (int i = 0; i < 2; i++) {
		assert_ok(store_access_key_get(st, akid, &ak_got));
		assert_int_equal(ak_got.state, ACCESS_KEY_STATE_ACTIVE);
	}
	assert_ok(store_access_key_revoke(st, akid, 160));
	assert_ok(store_access_key_get(st, akid, &ak_got));
	assert_int_equal(ak_got.state, ACCESS_KEY_STATE_REVOKED);

	/* A key without a policy, then with one put by another thread. */
	char *text = NULL;
	for (int i = 0; i < 2; i++) {
		assert_ok(store_policy_get(st, KEY1, &text));
		assert_string_equal(text, "");
		free(text);
	}
	a.what = 1;
	assert_int_equal(pthread_create(&t, NULL, write_elsewhere, &a), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_ok(a.status);
	assert_ok(store_policy_get(st, KEY1, &text));
	assert_string_equal(text, "{\"x\":1}");
	free(text);

	/* No live grant, twice; a grant; then it ends. */
	store_grant *rows = NULL;
	size_t n = 9;
	for (int i = 0; i < 2; i++) {
		assert_ok(store_grants_live(st, "cached", KEY1, &rows, &n));
		assert_int_equal(n, 0);
		free(rows);
	}
	const char *enc[] = { "encrypt" };
	char gid[AUTHZ_ID_SIZE];
	snprintf(gid, sizeof gid, "%s", id_n("GR", 77));
	store_grant g = grant(gid, KEY1, "cached", enc, 1);
	assert_ok(store_grant_create(st, &g));
	assert_ok(store_grants_live(st, "cached", KEY1, &rows, &n));
	assert_int_equal(n, 1);
	free(rows);
	assert_ok(store_grant_end(st, gid, GRANT_STATE_REVOKED, 900));
	assert_ok(store_grants_live(st, "cached", KEY1, &rows, &n));
	assert_int_equal(n, 0);
	free(rows);
	store_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_principals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_access_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_principal_with_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_access_key_race, setup, teardown),
		cmocka_unit_test_setup_teardown(test_grants, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_cache_fresh, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migration_from_1, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
