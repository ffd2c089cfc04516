/*
 * test_authz_table: every operation of the table (ops_at) x each role set
 * (admin, app, auditor, app+auditor, none) x three key policies (the
 * default; the default plus an Allow for principal "app" of encrypt and
 * decrypt; that plus a Deny of decrypt and disable_key to everyone),
 * decided by authz_decide and checked against the table below, written by
 * hand from docs/authorization.md ("Roles", "The decision"). An operation
 * the table does not list fails the test, so a new operation gets a row
 * here before it ships. Issue 10's end-to-end test reuses this table
 * against a real kmsd.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "kms/authz/authz_decide.h"
#include "kms/authz/authz_policy.h"
#include "kms/pipeline/ops.h"

/* Role sets, in the order of the expectation strings below. */
static const authz_principal principals[] = {
	{ .name = "admin", .roles = AUTHZ_ROLE_ADMIN },
	{ .name = "app", .roles = AUTHZ_ROLE_APP },
	{ .name = "auditor", .roles = AUTHZ_ROLE_AUDITOR },
	{ .name = "app-auditor", .roles = AUTHZ_ROLE_APP | AUTHZ_ROLE_AUDITOR },
	{ .name = "nobody", .roles = 0 },
};
#define N_PRINCIPALS (sizeof principals / sizeof principals[0])

static const char allow_app_policy[] =
        "{\"Version\":\"2024-01-01\",\"Statement\":["
        "{\"Sid\":\"admins-manage\",\"Effect\":\"Allow\",\"Principal\":\"role:admin\","
        "\"Action\":[\"describe_key\",\"update_key_description\",\"enable_key\","
        "\"disable_key\",\"rotate_key\",\"set_rotation_period\",\"schedule_key_deletion\","
        "\"cancel_key_deletion\",\"tag_key\",\"untag_key\",\"put_key_policy\","
        "\"get_key_policy\",\"create_alias\",\"update_alias\",\"delete_alias\"]},"
        "{\"Sid\":\"app-uses\",\"Effect\":\"Allow\",\"Principal\":\"app\","
        "\"Action\":[\"encrypt\",\"decrypt\"]}]}";

static const char deny_policy[] =
        "{\"Version\":\"2024-01-01\",\"Statement\":["
        "{\"Sid\":\"admins-manage\",\"Effect\":\"Allow\",\"Principal\":\"role:admin\","
        "\"Action\":[\"describe_key\",\"update_key_description\",\"enable_key\","
        "\"disable_key\",\"rotate_key\",\"set_rotation_period\",\"schedule_key_deletion\","
        "\"cancel_key_deletion\",\"tag_key\",\"untag_key\",\"put_key_policy\","
        "\"get_key_policy\",\"create_alias\",\"update_alias\",\"delete_alias\"]},"
        "{\"Sid\":\"app-uses\",\"Effect\":\"Allow\",\"Principal\":\"app\","
        "\"Action\":[\"encrypt\",\"decrypt\"]},"
        "{\"Sid\":\"frozen\",\"Effect\":\"Deny\",\"Principal\":\"*\","
        "\"Action\":[\"decrypt\",\"disable_key\"]}]}";

/*
 * The table. For each operation, one string per policy (default,
 * allow-app, deny), each one character per role set in the order
 * admin, app, auditor, app+auditor, none: 'A' allowed, '-' denied.
 */
typedef struct expectation {
	const char *op;
	const char *by_policy[3];
} expectation;

#define CONTROL(name) { name, { "A----", "A----", "A----" } }
#define READ(name) { name, { "A-AA-", "A-AA-", "A-AA-" } }
#define DENIED(name) { name, { "-----", "-----", "-----" } }

static const expectation table[] = {
	/* Data plane: no role by itself allows using a key; the policy does. */
	{ "encrypt", { "-----", "-A---", "-A---" } },
	{ "decrypt", { "-----", "-A---", "-----" } },
	DENIED("re_encrypt"),
	DENIED("generate_data_key"),
	DENIED("generate_data_key_without_plaintext"),
	DENIED("batch_encrypt"),
	DENIED("batch_decrypt"),
	DENIED("batch_generate_data_key"),
	/* No key: the role decides. */
	{ "generate_random", { "AA-A-", "AA-A-", "AA-A-" } },
	{ "create_key", { "A----", "A----", "A----" } },
	/* Key control plane: admin, where the policy allows (it does). */
	CONTROL("update_key_description"),
	CONTROL("enable_key"),
	{ "disable_key", { "A----", "A----", "-----" } },
	CONTROL("rotate_key"),
	CONTROL("set_rotation_period"),
	CONTROL("schedule_key_deletion"),
	CONTROL("cancel_key_deletion"),
	CONTROL("tag_key"),
	CONTROL("untag_key"),
	CONTROL("put_key_policy"),
	CONTROL("create_alias"),
	CONTROL("update_alias"),
	CONTROL("delete_alias"),
	/* Key reads: admin or auditor. */
	READ("describe_key"),
	READ("get_key_policy"),
	READ("list_keys"),
	READ("list_aliases"),
	/* Audit reads. */
	READ("get_checkpoint"),
	READ("get_inclusion_proof"),
	READ("get_consistency_proof"),
	/* Anyone admitted. */
	{ "health", { "AAAAA", "AAAAA", "AAAAA" } },
	/* Principals, access keys, grants: admin. */
	CONTROL("create_principal"),
	CONTROL("list_principals"),
	CONTROL("describe_principal"),
	CONTROL("enable_principal"),
	CONTROL("disable_principal"),
	CONTROL("delete_principal"),
	CONTROL("create_access_key"),
	CONTROL("list_access_keys"),
	CONTROL("revoke_access_key"),
	CONTROL("create_grant"),
	CONTROL("list_grants"),
	CONTROL("revoke_grant"),
	/* Any principal; the handler admits only the grantee or an admin. */
	{ "retire_grant", { "AAAAA", "AAAAA", "AAAAA" } },
};

static const expectation *expected_for(const char *op)
{
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
		if (!strcmp(table[i].op, op))
			return &table[i];
	return NULL;
}

static void every_operation_role_and_policy(void **state)
{
	(void)state;
	authz_policy *allow_app = NULL, *deny = NULL;
	assert_int_equal(authz_policy_parse(allow_app_policy, strlen(allow_app_policy), &allow_app),
	                 KMS_OK);
	assert_int_equal(authz_policy_parse(deny_policy, strlen(deny_policy), &deny), KMS_OK);
	const authz_policy *policies[3] = { NULL /* the default */, allow_app, deny };

	size_t checked = 0, rows = 0, failures = 0;
	for (size_t i = 0; ops_at(i); i++) {
		const op_entry *op = ops_at(i);
		const expectation *e = expected_for(op->name);
		if (!e) {
			fprintf(stderr, "no row in the table for operation %s: add one\n", op->name);
			fail();
		}
		authz_op_class cls = authz_op_classify(op);
		assert_int_not_equal(cls.family, AUTHZ_FAMILY_UNKNOWN);
		rows++;
		for (size_t pi = 0; pi < 3; pi++) {
			assert_int_equal(strlen(e->by_policy[pi]), N_PRINCIPALS);
			for (size_t r = 0; r < N_PRINCIPALS; r++) {
				authz_request req = {
					.principal = &principals[r],
					.op = op,
					.key_id = cls.keyed ? "k-00112233445566778899aabbccddeeff" : NULL,
					.policy = policies[pi],
				};
				authz_decision d;
				authz_decide(&req, &d);
				bool want = e->by_policy[pi][r] == 'A';
				if (d.allow != want) {
					fprintf(stderr, "%s, principal %s, policy %zu: %s, want %s (%s)\n",
					        op->name, principals[r].name, pi,
					        d.allow ? "allowed" : "denied", want ? "allowed" : "denied",
					        d.reason);
					failures++;
				}
				/* A denial always says which principal and operation. */
				if (!d.allow) {
					assert_non_null(strstr(d.message, principals[r].name));
					assert_non_null(strstr(d.message, op->name));
				} else {
					assert_string_equal(d.message, "");
				}
				assert_true(d.reason[0] != '\0');
				checked++;
			}
		}
	}
	/* Every table row names an operation the daemon has. */
	assert_int_equal(rows, sizeof table / sizeof table[0]);
	assert_int_equal(checked, rows * 3 * N_PRINCIPALS);
	assert_int_equal(failures, 0);
	authz_policy_free(allow_app);
	authz_policy_free(deny);
}

/* The same walk with a disabled principal, and with a revoked access key:
 * step 1 denies everything, health included. */
static void disabled_or_revoked_denies_everything(void **state)
{
	(void)state;
	for (int variant = 0; variant < 2; variant++) {
		authz_principal who = { .name = "admin",
		                        .roles = AUTHZ_ROLE_ADMIN | AUTHZ_ROLE_APP | AUTHZ_ROLE_AUDITOR,
		                        .disabled = variant == 0,
		                        .key_revoked = variant == 1 };
		for (size_t i = 0; ops_at(i); i++) {
			authz_request req = { .principal = &who, .op = ops_at(i), .key_id = "k-1" };
			authz_decision d;
			authz_decide(&req, &d);
			assert_false(d.allow);
			assert_int_equal(d.step, AUTHZ_STEP_PRINCIPAL);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_operation_role_and_policy),
		cmocka_unit_test(disabled_or_revoked_denies_everything),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
