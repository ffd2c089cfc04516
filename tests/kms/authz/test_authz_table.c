/*
 * test_authz_table: every operation of the table (ops_at) x each role set
 * (admin, app, auditor, app+auditor, none) x three key policies (the
 * default; the default plus an Allow for principal "app" of encrypt and
 * decrypt; that plus a Deny of decrypt and disable_key to everyone),
 * decided by authz_decide and checked against the table of
 * authz_expectations.h, written by hand from docs/authorization.md
 * ("Roles", "The decision"). An operation the table does not list fails
 * the test. test_authz_matrix checks the same table against a real kmsd.
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

#include "tests/kms/authz/authz_expectations.h"

static authz_principal principals[N_PRINCIPALS];

static void make_principals(void)
{
	for (size_t i = 0; i < N_PRINCIPALS; i++) {
		unsigned r = expect_principals[i].roles;
		principals[i].name = expect_principals[i].name;
		principals[i].roles = (r & EXPECT_ADMIN ? AUTHZ_ROLE_ADMIN : 0) |
		                      (r & EXPECT_APP ? AUTHZ_ROLE_APP : 0) |
		                      (r & EXPECT_AUDITOR ? AUTHZ_ROLE_AUDITOR : 0);
	}
}

static void every_operation_role_and_policy(void **state)
{
	(void)state;
	make_principals();
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

/* create_grant is a key control-plane operation: the admin role, then the
 * key's policy. A policy whose admins' statement leaves it out denies it
 * (step 5), a Deny of it denies it (step 3), the table's policies list it. */
static void create_grant_needs_the_key_policy(void **state)
{
	(void)state;
	static const char without[] =
	        "{\"Version\":\"2024-01-01\",\"Statement\":[{\"Sid\":\"manage\","
	        "\"Effect\":\"Allow\",\"Principal\":\"role:admin\","
	        "\"Action\":[\"describe_key\",\"put_key_policy\"]}]}";
	static const char denied[] =
	        "{\"Version\":\"2024-01-01\",\"Statement\":[{\"Sid\":\"all\","
	        "\"Effect\":\"Allow\",\"Principal\":\"role:admin\",\"Action\":\"*\"},"
	        "{\"Sid\":\"no-grants\",\"Effect\":\"Deny\",\"Principal\":\"*\","
	        "\"Action\":\"create_grant\"}]}";
	const op_entry *op = NULL;
	for (size_t i = 0; ops_at(i) && !op; i++)
		if (!strcmp(ops_at(i)->name, "create_grant"))
			op = ops_at(i);
	assert_non_null(op);
	authz_op_class cls = authz_op_classify(op);
	assert_int_equal(cls.family, AUTHZ_FAMILY_KEY_CONTROL);
	assert_true(cls.keyed);

	authz_principal admin = { .name = "admin", .roles = AUTHZ_ROLE_ADMIN };
	authz_policy *p_without = NULL, *p_denied = NULL;
	assert_int_equal(authz_policy_parse(without, strlen(without), &p_without), KMS_OK);
	assert_int_equal(authz_policy_parse(denied, strlen(denied), &p_denied), KMS_OK);
	authz_request req = { .principal = &admin, .op = op, .key_id = "k-1" };
	authz_decision d;
	authz_decide(&req, &d); /* the built-in default lists it */
	assert_true(d.allow);
	assert_string_equal(d.reason, "step 4: Allow statement 0 Sid admins-manage");
	req.policy = p_without;
	authz_decide(&req, &d);
	assert_false(d.allow);
	assert_int_equal(d.step, AUTHZ_STEP_DEFAULT);
	assert_string_equal(d.message, "principal admin may not create_grant key k-1");
	req.policy = p_denied;
	authz_decide(&req, &d);
	assert_false(d.allow);
	assert_int_equal(d.step, AUTHZ_STEP_DENY);
	assert_string_equal(d.reason, "step 3: Deny statement 1 Sid no-grants");
	authz_policy_free(p_without);
	authz_policy_free(p_denied);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_operation_role_and_policy),
		cmocka_unit_test(disabled_or_revoked_denies_everything),
		cmocka_unit_test(create_grant_needs_the_key_policy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
