/*
 * test_principals: the principal, access key and grant operations against a
 * real kmsd, through libkmsclient (kms/principals.h): each one's success and
 * each documented failure (a name in use or once used, a third active access
 * key, an unknown principal, a revoked key still listed as revoked, a grant
 * on an unknown key or one pending deletion, an operation a grant may not
 * name, retiring by someone who is neither the grantee nor an admin), the
 * list pages, and a new access key's secret appearing nowhere but in the
 * reply: not under the test's directory (data dir, audit log, token) and not
 * in kmsd's log, neither as hex nor as raw bytes.
 *
 * The caller of the unsigned requests here is the harness's ipc principal,
 * test-admin. "Retire by a non-grantee" is signed as a principal with only
 * the app role: refused whether kmsd acts as the credential's principal (a
 * non-admin, not the grantee) or, before signed requests are verified, as
 * test-admin (not the grantee either, with no admin role read yet).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <kms/client.h>
#include <kms/principals.h>

#include "tests/support/harness.h"

static harness H;
static kms_client *C;

static int start(void **state)
{
	(void)state;
	harness_options o = { 0 };
	if (!harness_start(&H, &o))
		return -1;
	const char *endpoints[] = { H.ipc_url };
	kms_client_options opts = { .endpoints = endpoints, .n_endpoints = 1,
	                            .timeout_ms = 10000 };
	kms_error err;
	return kms_client_open(&opts, &C, &err) == KMS_OK ? 0 : -1;
}

static int stop(void **state)
{
	(void)state;
	kms_client_close(C);
	return harness_stop(&H) == 0 ? 0 : -1;
}

#define EXPECT(call, want)                                                                  \
	do {                                                                                \
		kms_error err_;                                                             \
		kms_status st_ = (call);                                                    \
		(void)err_;                                                                 \
		if (st_ != (want))                                                          \
			fail_msg("%s: status %d, want %d", #call, (int)st_, (int)(want));  \
	} while (0)

/* The same, keeping the message for a look. */
static kms_error E;

static void principal_lifecycle(void **state)
{
	(void)state;
	kms_principal p;
	assert_int_equal(kms_create_principal(C, "alice", KMS_ROLE_ADMIN | KMS_ROLE_AUDITOR,
	                                      "alice.example", &p, &E), KMS_OK);
	assert_string_equal(p.name, "alice");
	assert_int_equal(p.roles, KMS_ROLE_ADMIN | KMS_ROLE_AUDITOR);
	assert_string_equal(p.cert_name, "alice.example");
	assert_int_equal(p.state, KMS_PRINCIPAL_ENABLED);
	assert_true(p.created_at > 0);

	/* A name in use. */
	assert_int_equal(kms_create_principal(C, "alice", KMS_ROLE_APP, NULL, NULL, &E),
	                 KMS_ALREADY_EXISTS);
	assert_non_null(strstr(E.message, "alice"));
	/* Bad names and certificate names: kmsd's validator. */
	assert_int_equal(kms_create_principal(C, "no spaces", KMS_ROLE_APP, NULL, NULL, &E),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(kms_create_principal(C, "bob", KMS_ROLE_APP, "tab\there", NULL, &E),
	                 KMS_INVALID_ARGUMENT);

	assert_int_equal(kms_disable_principal(C, "alice", &E), KMS_OK);
	assert_int_equal(kms_describe_principal(C, "alice", &p, &E), KMS_OK);
	assert_int_equal(p.state, KMS_PRINCIPAL_DISABLED);
	assert_int_equal(kms_enable_principal(C, "alice", &E), KMS_OK);
	assert_int_equal(kms_describe_principal(C, "alice", &p, &E), KMS_OK);
	assert_int_equal(p.state, KMS_PRINCIPAL_ENABLED);

	/* Unknown principals. */
	assert_int_equal(kms_describe_principal(C, "nobody-here", &p, &E), KMS_NOT_FOUND);
	assert_int_equal(kms_disable_principal(C, "nobody-here", &E), KMS_NOT_FOUND);
	assert_int_equal(kms_delete_principal(C, "nobody-here", &E), KMS_NOT_FOUND);

	/* Delete: gone, its keys revoked and still listed, the name never reused. */
	uint8_t *secret = NULL;
	kms_access_key k;
	assert_int_equal(kms_create_access_key(C, "alice", &k, &secret, &E), KMS_OK);
	kms_secure_free(secret);
	assert_int_equal(kms_delete_principal(C, "alice", &E), KMS_OK);
	assert_int_equal(kms_describe_principal(C, "alice", &p, &E), KMS_NOT_FOUND);
	assert_int_equal(kms_delete_principal(C, "alice", &E), KMS_NOT_FOUND);
	assert_int_equal(kms_create_principal(C, "alice", KMS_ROLE_APP, NULL, NULL, &E),
	                 KMS_ALREADY_EXISTS);
	kms_access_key_list keys;
	assert_int_equal(kms_list_access_keys(C, "alice", 0, NULL, &keys, &E), KMS_OK);
	assert_int_equal(keys.n_access_keys, 1);
	assert_string_equal(keys.access_keys[0].access_key_id, k.access_key_id);
	assert_int_equal(keys.access_keys[0].state, KMS_ACCESS_KEY_REVOKED);
	kms_access_key_list_free(&keys);
	assert_int_equal(kms_create_access_key(C, "alice", &k, &secret, &E), KMS_NOT_FOUND);
	assert_null(secret);
}

static void principal_pages(void **state)
{
	(void)state;
	for (int i = 0; i < 5; i++) {
		char name[32];
		snprintf(name, sizeof name, "page-%d", i);
		assert_int_equal(kms_create_principal(C, name, KMS_ROLE_APP, NULL, NULL, &E), KMS_OK);
	}
	/* Pages of 2 until the token is empty (bounded), every page-N once. */
	char token[128] = "";
	int seen = 0, pages = 0;
	do {
		kms_principal_list list;
		assert_int_equal(kms_list_principals(C, 2, token, &list, &E), KMS_OK);
		assert_true(list.n_principals <= 2);
		for (size_t i = 0; i < list.n_principals; i++)
			if (!strncmp(list.principals[i].name, "page-", 5))
				seen++;
		snprintf(token, sizeof token, "%s", list.next_page_token);
		kms_principal_list_free(&list);
	} while (token[0] && ++pages < 100);
	assert_true(pages < 100);
	assert_int_equal(seen, 5);
	assert_int_equal(kms_list_principals(C, 2, "not a name!", &(kms_principal_list){ 0 }, &E),
	                 KMS_INVALID_ARGUMENT);
}

static void access_keys(void **state)
{
	(void)state;
	assert_int_equal(kms_create_principal(C, "svc", KMS_ROLE_APP, NULL, NULL, &E), KMS_OK);
	kms_access_key a, b, c;
	uint8_t *sa = NULL, *sb = NULL, *sc = NULL;
	assert_int_equal(kms_create_access_key(C, "svc", &a, &sa, &E), KMS_OK);
	assert_int_equal(kms_create_access_key(C, "svc", &b, &sb, &E), KMS_OK);
	assert_int_equal(strlen(a.access_key_id), KMS_AUTHZ_ID_LEN);
	assert_memory_equal(a.access_key_id, "AK", 2);
	assert_string_not_equal(a.access_key_id, b.access_key_id);
	assert_memory_not_equal(sa, sb, KMS_ACCESS_KEY_SECRET_LEN);
	assert_int_equal(a.state, KMS_ACCESS_KEY_ACTIVE);
	assert_string_equal(a.principal, "svc");

	/* A third active key: refused, saying what to do. */
	assert_int_equal(kms_create_access_key(C, "svc", &c, &sc, &E), KMS_FAILED_PRECONDITION);
	assert_null(sc);
	assert_non_null(strstr(E.message, "revoke"));

	/* Revoke one: listed as revoked, with when; a second revoke refused. */
	assert_int_equal(kms_revoke_access_key(C, a.access_key_id, &E), KMS_OK);
	assert_int_equal(kms_revoke_access_key(C, a.access_key_id, &E), KMS_FAILED_PRECONDITION);
	assert_int_equal(kms_revoke_access_key(C, "AKAAAAAAAAAAAAAAAAAAAA", &E), KMS_NOT_FOUND);
	assert_int_equal(kms_revoke_access_key(C, "not-an-id", &E), KMS_INVALID_ARGUMENT);
	assert_int_equal(kms_create_access_key(C, "svc", &c, &sc, &E), KMS_OK);
	kms_access_key_list list;
	assert_int_equal(kms_list_access_keys(C, "svc", 0, NULL, &list, &E), KMS_OK);
	assert_int_equal(list.n_access_keys, 3);
	size_t revoked = 0;
	for (size_t i = 0; i < list.n_access_keys; i++)
		if (!strcmp(list.access_keys[i].access_key_id, a.access_key_id)) {
			assert_int_equal(list.access_keys[i].state, KMS_ACCESS_KEY_REVOKED);
			assert_true(list.access_keys[i].revoked_at > 0);
			revoked++;
		} else {
			assert_int_equal(list.access_keys[i].state, KMS_ACCESS_KEY_ACTIVE);
		}
	assert_int_equal(revoked, 1);
	kms_access_key_list_free(&list);
	/* Pages of one, following the token. */
	assert_int_equal(kms_list_access_keys(C, "svc", 1, NULL, &list, &E), KMS_OK);
	assert_int_equal(list.n_access_keys, 1);
	assert_string_not_equal(list.next_page_token, "");
	char token[64];
	snprintf(token, sizeof token, "%s", list.next_page_token);
	kms_access_key_list_free(&list);
	assert_int_equal(kms_list_access_keys(C, "svc", 2, token, &list, &E), KMS_OK);
	assert_int_equal(list.n_access_keys, 2);
	assert_string_equal(list.next_page_token, "");
	kms_access_key_list_free(&list);

	assert_int_equal(kms_list_access_keys(C, "nobody-here", 0, NULL, &list, &E), KMS_NOT_FOUND);
	assert_int_equal(kms_create_access_key(C, "nobody-here", &c, &sc, &E), KMS_NOT_FOUND);
	kms_secure_free(sa);
	kms_secure_free(sb);
	kms_secure_free(sc);
}

static bool ends_live(const kms_grant_list *l, const char *id, kms_grant_state want)
{
	for (size_t i = 0; i < l->n_grants; i++)
		if (!strcmp(l->grants[i].grant_id, id))
			return l->grants[i].state == want;
	return false;
}

static void grants(void **state)
{
	(void)state;
	char key[35], doomed[35];
	assert_true(harness_create_key(&H, "alias/granted", key));
	assert_true(harness_create_key(&H, "alias/doomed", doomed));
	EXPECT(kms_create_principal(C, "grantee-1", KMS_ROLE_APP, NULL, NULL, &err_), KMS_OK);
	/* test-admin is the ipc caller; the harness may have made it already. */
	kms_status made = kms_create_principal(C, "test-admin", KMS_ROLE_ADMIN, NULL, NULL, &E);
	assert_true(made == KMS_OK || made == KMS_ALREADY_EXISTS);

	const char *ops[] = { "encrypt", "decrypt" };
	kms_context_pair ctx[] = { { "tenant", "acme" } };
	kms_create_grant_params p = { .key_id = "alias/granted", .grantee = "grantee-1",
	                              .operations = ops, .n_operations = 2, .context = ctx,
	                              .n_context = 1 };
	kms_grant g;
	assert_int_equal(kms_create_grant(C, &p, &g, &E), KMS_OK);
	assert_int_equal(strlen(g.grant_id), KMS_AUTHZ_ID_LEN);
	assert_memory_equal(g.grant_id, "GR", 2);
	assert_string_equal(g.key_id, key); /* the alias resolved */
	assert_string_equal(g.grantee, "grantee-1");
	assert_string_equal(g.creator, "test-admin");
	assert_int_equal(g.n_operations, 2);
	assert_string_equal(g.operations[0], "decrypt");
	assert_string_equal(g.operations[1], "encrypt");
	assert_int_equal(g.n_context, 1);
	assert_string_equal(g.context[0].key, "tenant");
	assert_string_equal(g.context[0].value, "acme");
	assert_int_equal(g.state, KMS_GRANT_LIVE);
	char id[32];
	snprintf(id, sizeof id, "%s", g.grant_id);
	kms_grant_free(&g);

	/* Refusals. */
	p.key_id = "alias/no-such-key";
	assert_int_equal(kms_create_grant(C, &p, NULL, &E), KMS_NOT_FOUND);
	p.key_id = "k-00000000000000000000000000000000";
	assert_int_equal(kms_create_grant(C, &p, NULL, &E), KMS_NOT_FOUND);
	p.key_id = key;
	p.grantee = "nobody-here";
	assert_int_equal(kms_create_grant(C, &p, NULL, &E), KMS_NOT_FOUND);
	p.grantee = "grantee-1";
	const char *control[] = { "create_key" };
	p.operations = control;
	p.n_operations = 1;
	assert_int_equal(kms_create_grant(C, &p, NULL, &E), KMS_INVALID_ARGUMENT);
	const char *twice[] = { "encrypt", "encrypt" };
	p.operations = twice;
	p.n_operations = 2;
	assert_int_equal(kms_create_grant(C, &p, NULL, &E), KMS_INVALID_ARGUMENT);
	p.operations = ops;
	int64_t when;
	kms_key_state ks;
	assert_int_equal(kms_schedule_key_deletion(C, doomed, 7, &when, &ks, &E), KMS_OK);
	p.key_id = doomed;
	assert_int_equal(kms_create_grant(C, &p, NULL, &E), KMS_FAILED_PRECONDITION);
	assert_non_null(strstr(E.message, "pending deletion"));

	/* Lists: by key, by grantee, both. */
	kms_grant_list l;
	assert_int_equal(kms_list_grants(C, "alias/granted", NULL, 0, NULL, &l, &E), KMS_OK);
	assert_int_equal(l.n_grants, 1);
	kms_grant_list_free(&l);
	assert_int_equal(kms_list_grants(C, NULL, "grantee-1", 0, NULL, &l, &E), KMS_OK);
	assert_int_equal(l.n_grants, 1);
	kms_grant_list_free(&l);
	assert_int_equal(kms_list_grants(C, key, "test-admin", 0, NULL, &l, &E), KMS_OK);
	assert_int_equal(l.n_grants, 0);
	kms_grant_list_free(&l);
	assert_int_equal(kms_list_grants(C, "alias/no-such-key", NULL, 0, NULL, &l, &E),
	                 KMS_NOT_FOUND);

	/* Retire by someone who is neither the grantee nor an admin: refused. */
	EXPECT(kms_create_principal(C, "bystander", KMS_ROLE_APP, NULL, NULL, &err_), KMS_OK);
	kms_access_key bk;
	uint8_t *bs = NULL;
	assert_int_equal(kms_create_access_key(C, "bystander", &bk, &bs, &E), KMS_OK);
	const char *endpoints[] = { H.ipc_url };
	kms_client_options bo = { .endpoints = endpoints, .n_endpoints = 1, .timeout_ms = 10000,
	                          .access_key_id = bk.access_key_id, .access_key_secret = bs };
	kms_client *by;
	assert_int_equal(kms_client_open(&bo, &by, &E), KMS_OK);
	kms_secure_free(bs);
	assert_int_equal(kms_retire_grant(by, id, &E), KMS_ACCESS_DENIED);
	kms_client_close(by);
	assert_int_equal(kms_list_grants(C, key, NULL, 0, NULL, &l, &E), KMS_OK);
	assert_true(ends_live(&l, id, KMS_GRANT_LIVE));
	kms_grant_list_free(&l);

	/* Revoke by an admin; revoke again and unknown ids refused. */
	assert_int_equal(kms_revoke_grant(C, id, &E), KMS_OK);
	assert_int_equal(kms_revoke_grant(C, id, &E), KMS_FAILED_PRECONDITION);
	assert_int_equal(kms_revoke_grant(C, "GRAAAAAAAAAAAAAAAAAAAA", &E), KMS_NOT_FOUND);
	assert_int_equal(kms_retire_grant(C, "GRAAAAAAAAAAAAAAAAAAAA", &E), KMS_NOT_FOUND);
	assert_int_equal(kms_list_grants(C, key, NULL, 0, NULL, &l, &E), KMS_OK);
	assert_true(ends_live(&l, id, KMS_GRANT_REVOKED));
	kms_grant_list_free(&l);

	/* The grantee retires its own grant (test-admin, the ipc caller). */
	p.key_id = key;
	p.grantee = "test-admin";
	p.n_context = 0;
	assert_int_equal(kms_create_grant(C, &p, &g, &E), KMS_OK);
	snprintf(id, sizeof id, "%s", g.grant_id);
	kms_grant_free(&g);
	assert_int_equal(kms_retire_grant(C, id, &E), KMS_OK);
	assert_int_equal(kms_retire_grant(C, id, &E), KMS_FAILED_PRECONDITION);
	assert_int_equal(kms_list_grants(C, NULL, "test-admin", 0, NULL, &l, &E), KMS_OK);
	assert_true(ends_live(&l, id, KMS_GRANT_RETIRED));
	kms_grant_list_free(&l);

	/* Deleting the grantee revokes its live grants. */
	p.grantee = "grantee-1";
	assert_int_equal(kms_create_grant(C, &p, &g, &E), KMS_OK);
	snprintf(id, sizeof id, "%s", g.grant_id);
	kms_grant_free(&g);
	assert_int_equal(kms_delete_principal(C, "grantee-1", &E), KMS_OK);
	assert_int_equal(kms_list_grants(C, key, NULL, 0, NULL, &l, &E), KMS_OK);
	assert_true(ends_live(&l, id, KMS_GRANT_REVOKED));
	kms_grant_list_free(&l);
}

/* ---- the secret is in the reply and nowhere else ---- */

static bool has_bytes(const uint8_t *hay, size_t n, const void *needle, size_t len)
{
	for (size_t i = 0; i + len <= n; i++)
		if (!memcmp(hay + i, needle, len))
			return true;
	return false;
}

/* Every regular file under dir (depth-bounded): none holds hex or raw. */
static void no_file_holds(const char *dir, const char *hex, const uint8_t *raw, int depth,
                          size_t *files)
{
	assert_true(depth < 8);
	DIR *d = opendir(dir);
	if (!d)
		return;
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char path[1024];
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		struct stat sb;
		if (lstat(path, &sb) != 0)
			continue;
		if (S_ISDIR(sb.st_mode)) {
			no_file_holds(path, hex, raw, depth + 1, files);
		} else if (S_ISREG(sb.st_mode)) {
			size_t len = 0;
			uint8_t *bytes = (uint8_t *)harness_read_file(path, &len);
			if (!bytes)
				continue;
			(*files)++;
			if (has_bytes(bytes, len, hex, strlen(hex)) ||
			    has_bytes(bytes, len, raw, KMS_ACCESS_KEY_SECRET_LEN))
				fail_msg("the access key secret is in %s", path);
			free(bytes);
		}
	}
	closedir(d);
}

static void secret_shown_once(void **state)
{
	(void)state;
	EXPECT(kms_create_principal(C, "leak-check", KMS_ROLE_APP, NULL, NULL, &err_), KMS_OK);
	kms_access_key k;
	uint8_t *secret = NULL;
	assert_int_equal(kms_create_access_key(C, "leak-check", &k, &secret, &E), KMS_OK);
	char hex[2 * KMS_ACCESS_KEY_SECRET_LEN + 1];
	for (size_t i = 0; i < KMS_ACCESS_KEY_SECRET_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", secret[i]);
	/* The audit entries of the creation are durable before the reply. */
	size_t files = 0;
	no_file_holds(H.dir, hex, secret, 0, &files);
	assert_true(files > 0);
	size_t len = 0;
	uint8_t *log = (uint8_t *)harness_read_file(H.log, &len);
	assert_non_null(log);
	assert_false(has_bytes(log, len, hex, strlen(hex)));
	assert_false(has_bytes(log, len, secret, KMS_ACCESS_KEY_SECRET_LEN));
	free(log);
	kms_secure_free(secret);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(principal_lifecycle),
		cmocka_unit_test(principal_pages),
		cmocka_unit_test(access_keys),
		cmocka_unit_test(grants),
		cmocka_unit_test(secret_shown_once),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
