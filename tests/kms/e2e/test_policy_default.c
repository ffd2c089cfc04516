/*
 * test_policy_default: GetKeyPolicy returns the policy that applies to a
 * key (docs/authorization.md, "Key policies"), against a real kmsd and the
 * real kms-admin:
 *
 *  - a key with no policy of its own: the default, flagged is_default:
 *    [authz] default_key_policy's file as written, or, with none
 *    configured, the built-in authz_default_policy_json, byte for byte;
 *  - a key with its own policy: that policy, not flagged;
 *  - `kms-admin key policy get` prints the default on stdout and says on
 *    stderr that it is the default (--json: "is_default");
 *  - `kms-admin key policy grant|revoke` start from the policy kmsd
 *    returns, so a key under a configured default keeps what that default
 *    allowed (not a copy of the built-in one);
 *  - CreateGrant is decided on the key's policy like the other key
 *    control-plane operations: the built-in default lets admins create
 *    grants, a policy that does not list create_grant for the admin denies
 *    it (ACCESS_DENIED, nothing stored), one that lists it allows it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kms/authz/authz_policy.h"
#include "tests/support/harness.h"
#include "tests/support/run_bin.h"

static harness H;
/* No [authz] default_key_policy: kmsd's built-in default. */
static const harness_options builtin = { .default_key_policy = "" };

static Kms__Response *get_policy(const char *key)
{
	Kms__GetKeyPolicyRequest g = KMS__GET_KEY_POLICY_REQUEST__INIT;
	g.key_id = (char *)(uintptr_t)key;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_GET_KEY_POLICY;
	req.get_key_policy = &g;
	Kms__Response *r = harness_call(&H, &req);
	assert_non_null(r);
	return r;
}

/* Fails unless key's GetKeyPolicy answers text with is_default. */
static void expect_policy(const char *key, const char *text, bool is_default)
{
	Kms__Response *r = get_policy(key);
	if (r->status != KMS__STATUS__OK)
		fail_msg("get_key_policy %s: %s", key, r->message);
	assert_string_equal(r->get_key_policy->policy, text);
	assert_int_equal(r->get_key_policy->is_default, is_default);
	kms__response__free_unpacked(r, NULL);
}

static void put_policy(const char *key, const char *text)
{
	Kms__PutKeyPolicyRequest p = KMS__PUT_KEY_POLICY_REQUEST__INIT;
	p.key_id = (char *)(uintptr_t)key;
	p.policy = (char *)(uintptr_t)text;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_PUT_KEY_POLICY;
	req.put_key_policy = &p;
	Kms__Response *r = harness_call(&H, &req);
	assert_non_null(r);
	if (r->status != KMS__STATUS__OK)
		fail_msg("put_key_policy %s: %s", key, r->message);
	kms__response__free_unpacked(r, NULL);
}

static run_bin_result admin_run(const char *const *args)
{
	return run_kms_admin(H.ipc_url, args);
}

#define ADMIN(...) admin_run((const char *const[]){ __VA_ARGS__, NULL })

static void expect(run_bin_result *r, int code, const char *in_out, const char *in_err,
                   const char *what)
{
	if (r->code != code || (in_out && !strstr(r->out, in_out)) ||
	    (in_err && !strstr(r->err, in_err)))
		fail_msg("%s: exit %d (want %d)\nstdout: %s\nstderr: %s\nwanted stdout~\"%s\" "
		         "stderr~\"%s\"", what, r->code, code, r->out, r->err, in_out ? in_out : "",
		         in_err ? in_err : "");
}

/* The Sids of key's policy as kms-admin --json shows them, joined by ','
 * into out; *is_default from the same reply. */
static void sids(const char *key, char *out, size_t cap, bool *is_default)
{
	run_bin_result r = ADMIN("--json", "key", "policy", "get", key);
	expect(&r, 0, NULL, NULL, "key policy get --json");
	json_error_t jerr;
	json_t *j = json_loads(r.out, 0, &jerr);
	if (!j)
		fail_msg("policy get --json is not JSON (%s): %s", jerr.text, r.out);
	json_t *flag = json_object_get(j, "is_default");
	assert_true(json_is_boolean(flag));
	*is_default = json_is_true(flag);
	json_t *statements = json_object_get(json_object_get(j, "policy"), "Statement");
	assert_true(json_is_array(statements));
	out[0] = '\0';
	size_t i;
	json_t *s;
	json_array_foreach(statements, i, s) {
		const char *sid = json_string_value(json_object_get(s, "Sid"));
		size_t len = strlen(out);
		snprintf(out + len, cap - len, "%s%s", i ? "," : "", sid ? sid : "(none)");
	}
	json_decref(j);
	run_bin_free(&r);
}

/* The harness's [authz] default_key_policy file (test-admin may do
 * everything, Sid test-admin-all). */
static void configured_default(void **state)
{
	(void)state;
	assert_true(harness_start(&H, &(harness_options){ 0 }));
	char path[700];
	snprintf(path, sizeof path, "%s/test-admin-policy.json", H.dir);
	char *file = harness_read_file(path, NULL);
	assert_non_null(file);

	char k1[35], k2[35];
	assert_true(harness_create_key(&H, "alias/pd-one", k1));
	assert_true(harness_create_key(&H, NULL, k2));
	expect_policy(k1, file, true);
	expect_policy("alias/pd-one", file, true);
	const char *own = "{\"Version\":\"2024-01-01\",\"Statement\":[{\"Sid\":\"own\","
	                  "\"Effect\":\"Allow\",\"Principal\":\"test-admin\",\"Action\":\"*\"}]}";
	put_policy(k1, own);
	expect_policy(k1, own, false);
	Kms__Response *r = get_policy("alias/pd-none");
	assert_int_equal(r->status, KMS__STATUS__NOT_FOUND);
	kms__response__free_unpacked(r, NULL);

	/* kms-admin: the default on stdout, said to be the default. */
	run_bin_result out = ADMIN("key", "policy", "get", k2);
	expect(&out, 0, "test-admin-all", "kmsd's default policy", "key policy get (default)");
	run_bin_free(&out);
	out = ADMIN("key", "policy", "get", k1);
	expect(&out, 0, "\"own\"", NULL, "key policy get (own)");
	assert_string_equal(out.err, "");
	run_bin_free(&out);

	/* grant starts from that default, not from the built-in one. */
	out = ADMIN("key", "policy", "grant", k2, "--principal", "payments-svc", "--op", "encrypt",
	            "--sid", "billing");
	expect(&out, 0, "billing added", "starting from kmsd's default policy", "policy grant");
	run_bin_free(&out);
	char got[200];
	bool is_default = true;
	sids(k2, got, sizeof got, &is_default);
	assert_string_equal(got, "test-admin-all,billing");
	assert_false(is_default);
	out = ADMIN("key", "policy", "revoke", k2, "--sid", "billing");
	expect(&out, 0, "billing removed", NULL, "policy revoke");
	run_bin_free(&out);
	sids(k2, got, sizeof got, &is_default);
	assert_string_equal(got, "test-admin-all");
	assert_false(is_default); /* now a policy of its own, equal to the default */

	free(file);
	assert_int_equal(harness_stop(&H), 0);
}

/* No [authz] default_key_policy: the built-in default, byte for byte. */
static void builtin_default(void **state)
{
	(void)state;
	assert_true(harness_start(&H, &builtin));
	char k3[35];
	assert_true(harness_create_key(&H, "alias/pd-builtin", k3));
	expect_policy(k3, authz_default_policy_json, true);

	run_bin_result out = ADMIN("--json", "key", "policy", "get", "alias/pd-builtin");
	expect(&out, 0, "\"is_default\": true", NULL, "key policy get --json (built-in)");
	run_bin_free(&out);
	out = ADMIN("key", "policy", "get", k3);
	expect(&out, 0, "admins-manage", "kmsd's default policy", "key policy get (built-in)");
	run_bin_free(&out);

	/* grant keeps the built-in statement; revoke of the last one refused. */
	out = ADMIN("key", "policy", "grant", k3, "--principal", "app1", "--op", "encrypt",
	            "--op", "decrypt");
	expect(&out, 0, "app1 added", "kmsd's default policy", "policy grant (built-in)");
	run_bin_free(&out);
	char got[200];
	bool is_default = true;
	sids(k3, got, sizeof got, &is_default);
	assert_string_equal(got, "admins-manage,app1");
	assert_false(is_default);
	out = ADMIN("key", "policy", "revoke", k3, "--sid", "app1");
	expect(&out, 0, "app1 removed", NULL, "policy revoke (built-in)");
	run_bin_free(&out);
	out = ADMIN("key", "policy", "revoke", k3, "--sid", "admins-manage");
	expect(&out, 1, NULL, "only one", "revoke the last statement");
	run_bin_free(&out);
	assert_int_equal(harness_stop(&H), 0);
}

static kms_status create_grant(const char *key, const char *grantee, char *message,
                               size_t cap)
{
	char *ops[] = { "encrypt" };
	Kms__CreateGrantRequest cg = KMS__CREATE_GRANT_REQUEST__INIT;
	cg.key_id = (char *)(uintptr_t)key;
	cg.grantee = (char *)(uintptr_t)grantee;
	cg.operations = ops;
	cg.n_operations = 1;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_CREATE_GRANT;
	req.create_grant = &cg;
	Kms__Response *r = harness_call(&H, &req);
	assert_non_null(r);
	snprintf(message, cap, "%s", r->message ? r->message : "");
	kms_status st = r->status == KMS__STATUS__OK ? KMS_OK
	                : r->status == KMS__STATUS__ACCESS_DENIED ? KMS_ACCESS_DENIED
	                                                           : KMS_INTERNAL;
	if (st == KMS_INTERNAL)
		fail_msg("create_grant on %s: status %d: %s", key, r->status, r->message);
	kms__response__free_unpacked(r, NULL);
	return st;
}

/* The number of grants on key, in every state. */
static size_t grants_on(const char *key)
{
	Kms__ListGrantsRequest lg = KMS__LIST_GRANTS_REQUEST__INIT;
	lg.key_id = (char *)(uintptr_t)key;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_LIST_GRANTS;
	req.list_grants = &lg;
	Kms__Response *r = harness_call(&H, &req);
	assert_non_null(r);
	if (r->status != KMS__STATUS__OK)
		fail_msg("list_grants %s: %s", key, r->message);
	size_t n = r->list_grants->n_grants;
	kms__response__free_unpacked(r, NULL);
	return n;
}

static void create_grant_needs_the_key_policy(void **state)
{
	(void)state;
	assert_true(harness_start(&H, &builtin));
	run_bin_result out = ADMIN("principal", "create", "grantee-app", "--role", "app");
	expect(&out, 0, NULL, NULL, "principal create grantee-app");
	run_bin_free(&out);

	/* The built-in default: admins may create grants. */
	char k[35], message[512];
	assert_true(harness_create_key(&H, "alias/pd-grant", k));
	assert_int_equal(create_grant(k, "grantee-app", message, sizeof message), KMS_OK);
	assert_int_equal(grants_on(k), 1);

	/* A policy letting admins manage the key but not grant on it. */
	const char *no_grants =
	        "{\"Version\":\"2024-01-01\",\"Statement\":[{\"Sid\":\"manage\","
	        "\"Effect\":\"Allow\",\"Principal\":\"role:admin\",\"Action\":["
	        "\"describe_key\",\"get_key_policy\",\"put_key_policy\"]}]}";
	put_policy(k, no_grants);
	assert_int_equal(create_grant(k, "grantee-app", message, sizeof message),
	                 KMS_ACCESS_DENIED);
	char want[200];
	snprintf(want, sizeof want, "principal test-admin may not create_grant key %s", k);
	assert_string_equal(message, want);
	assert_int_equal(grants_on(k), 1); /* nothing stored */
	out = ADMIN("grant", "create", "--key", "alias/pd-grant", "--grantee", "grantee-app",
	            "--op", "decrypt");
	expect(&out, 1, NULL, "ACCESS_DENIED", "kms-admin grant create, denied by the policy");
	assert_non_null(strstr(out.err, "may not create_grant"));
	run_bin_free(&out);

	/* The same statement with create_grant: allowed again. */
	const char *grants =
	        "{\"Version\":\"2024-01-01\",\"Statement\":[{\"Sid\":\"manage\","
	        "\"Effect\":\"Allow\",\"Principal\":\"role:admin\",\"Action\":["
	        "\"describe_key\",\"get_key_policy\",\"put_key_policy\",\"create_grant\"]}]}";
	put_policy(k, grants);
	out = ADMIN("grant", "create", "--key", "alias/pd-grant", "--grantee", "grantee-app",
	            "--op", "decrypt");
	expect(&out, 0, NULL, NULL, "kms-admin grant create, allowed by the policy");
	run_bin_free(&out);
	assert_int_equal(grants_on(k), 2);
	assert_int_equal(harness_stop(&H), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(configured_default),
		cmocka_unit_test(builtin_default),
		cmocka_unit_test(create_grant_needs_the_key_policy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
