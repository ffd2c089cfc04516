/*
 * test_authz_decide: the decision's conditions and grants
 * (docs/authorization.md, "Key policies", "Grants", "The decision"):
 * ContextKeys, ContextEquals, ContextIn each alone and together; a batch
 * with one item that does not satisfy; a conditional Deny; grants that
 * match, name another operation, or require pairs the context lacks; and
 * what the reason (audit) and the message (client) say.
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

#define KEY "k-00112233445566778899aabbccddeeff"

static const authz_principal app = { .name = "payments-svc", .roles = AUTHZ_ROLE_APP };

static const op_entry *op_named(const char *name)
{
	for (size_t i = 0; ops_at(i); i++)
		if (!strcmp(ops_at(i)->name, name))
			return ops_at(i);
	fail_msg("no operation %s", name);
	return NULL;
}

static authz_policy *parse(const char *json)
{
	authz_policy *p = NULL;
	kms_status st = authz_policy_parse(json, strlen(json), &p);
	if (st != KMS_OK)
		fail_msg("policy refused: %s", kms_error_message());
	return p;
}

/* A context of up to 4 pairs, built from "k=v" strings. */
typedef struct ctx_buf {
	Kms__StringPair pairs[4];
	Kms__StringPair *ptrs[4];
	char text[4][64];
	authz_context c;
} ctx_buf;

static const authz_context *ctx(ctx_buf *b, const char *const *kv, size_t n)
{
	assert_true(n <= 4);
	for (size_t i = 0; i < n; i++) {
		kms__string_pair__init(&b->pairs[i]);
		snprintf(b->text[i], sizeof b->text[i], "%s", kv[i]);
		char *eq = strchr(b->text[i], '=');
		assert_non_null(eq);
		*eq = '\0';
		b->pairs[i].key = b->text[i];
		b->pairs[i].value = eq + 1;
		b->ptrs[i] = &b->pairs[i];
	}
	b->c.pairs = b->ptrs;
	b->c.n = n;
	return &b->c;
}

static bool decide(const authz_policy *p, const char *op, const authz_context *contexts,
                   size_t n_contexts, const authz_grant *grants, size_t n_grants,
                   authz_decision *d)
{
	authz_request req = { .principal = &app, .op = op_named(op), .key_id = KEY, .policy = p,
	                      .grants = grants, .n_grants = n_grants, .contexts = contexts,
	                      .n_contexts = n_contexts };
	authz_decide(&req, d);
	return d->allow;
}

static const char billing_policy[] =
        "{\"Version\":\"2024-01-01\",\"Statement\":[{\"Sid\":\"billing-decrypts\","
        "\"Effect\":\"Allow\",\"Principal\":\"payments-svc\",\"Action\":[\"encrypt\","
        "\"decrypt\",\"batch_decrypt\"],\"Condition\":{\"ContextKeys\":[\"tenant\"],"
        "\"ContextEquals\":{\"purpose\":\"billing\"},"
        "\"ContextIn\":{\"region\":[\"in-mum\",\"in-del\"]}}}]}";

static void conditions_each_part(void **state)
{
	(void)state;
	authz_policy *p = parse(billing_policy);
	authz_decision d;
	ctx_buf b;

	const char *all[] = { "tenant=t1", "purpose=billing", "region=in-del" };
	assert_true(decide(p, "decrypt", ctx(&b, all, 3), 1, NULL, 0, &d));
	assert_int_equal(d.step, AUTHZ_STEP_ALLOW);
	assert_int_equal(d.statement, 0);
	assert_string_equal(d.sid, "billing-decrypts");
	assert_non_null(strstr(d.reason, "billing-decrypts"));

	/* ContextKeys: the key must be present (any value). */
	const char *no_tenant[] = { "purpose=billing", "region=in-del" };
	assert_false(decide(p, "decrypt", ctx(&b, no_tenant, 2), 1, NULL, 0, &d));
	assert_int_equal(d.step, AUTHZ_STEP_DEFAULT);
	const char *empty_tenant[] = { "tenant=", "purpose=billing", "region=in-mum" };
	assert_true(decide(p, "decrypt", ctx(&b, empty_tenant, 3), 1, NULL, 0, &d));

	/* ContextEquals: the pair, exactly. */
	const char *no_purpose[] = { "tenant=t1", "region=in-del" };
	assert_false(decide(p, "decrypt", ctx(&b, no_purpose, 2), 1, NULL, 0, &d));
	const char *other_purpose[] = { "tenant=t1", "purpose=billingx", "region=in-del" };
	assert_false(decide(p, "decrypt", ctx(&b, other_purpose, 3), 1, NULL, 0, &d));
	const char *case_purpose[] = { "tenant=t1", "purpose=Billing", "region=in-del" };
	assert_false(decide(p, "decrypt", ctx(&b, case_purpose, 3), 1, NULL, 0, &d));

	/* ContextIn: one of the values. */
	const char *other_region[] = { "tenant=t1", "purpose=billing", "region=us-east" };
	assert_false(decide(p, "decrypt", ctx(&b, other_region, 3), 1, NULL, 0, &d));
	const char *no_region[] = { "tenant=t1", "purpose=billing" };
	assert_false(decide(p, "decrypt", ctx(&b, no_region, 2), 1, NULL, 0, &d));

	/* No context at all: the condition does not hold. */
	assert_false(decide(p, "decrypt", NULL, 0, NULL, 0, &d));
	/* The statement does not name this operation. */
	assert_false(decide(p, "generate_data_key", ctx(&b, all, 3), 1, NULL, 0, &d));

	/* The client's message names principal, operation and key, never the
	 * policy's contents. */
	assert_string_equal(d.message, "principal payments-svc may not generate_data_key key " KEY);
	authz_policy_free(p);
}

static void batch_every_item_must_satisfy(void **state)
{
	(void)state;
	authz_policy *p = parse(billing_policy);
	authz_decision d;
	ctx_buf b[3];
	const char *good[] = { "tenant=t1", "purpose=billing", "region=in-mum" };
	const char *bad[] = { "tenant=t1", "purpose=refunds", "region=in-mum" };
	authz_context items[3];
	items[0] = *ctx(&b[0], good, 3);
	items[1] = *ctx(&b[1], good, 3);
	items[2] = *ctx(&b[2], good, 3);
	assert_true(decide(p, "batch_decrypt", items, 3, NULL, 0, &d));
	items[1] = *ctx(&b[1], bad, 3);
	assert_false(decide(p, "batch_decrypt", items, 3, NULL, 0, &d));
	assert_int_equal(d.step, AUTHZ_STEP_DEFAULT);
	authz_policy_free(p);
}

static void conditional_deny_wins(void **state)
{
	(void)state;
	authz_policy *p = parse(
	        "{\"Version\":\"2024-01-01\",\"Statement\":["
	        "{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"*\"},"
	        "{\"Sid\":\"no-legacy\",\"Effect\":\"Deny\",\"Principal\":[\"role:app\"],"
	        "\"Action\":[\"encrypt\",\"batch_encrypt\"],"
	        "\"Condition\":{\"ContextIn\":{\"tier\":[\"legacy\",\"old\"]}}}]}");
	authz_decision d;
	ctx_buf b[2];
	const char *modern[] = { "tier=modern" };
	const char *legacy[] = { "tier=old" };
	assert_true(decide(p, "encrypt", ctx(&b[0], modern, 1), 1, NULL, 0, &d));
	assert_int_equal(d.statement, 0);
	assert_string_equal(d.sid, "");
	assert_false(decide(p, "encrypt", ctx(&b[0], legacy, 1), 1, NULL, 0, &d));
	assert_int_equal(d.step, AUTHZ_STEP_DENY);
	assert_int_equal(d.statement, 1);
	assert_non_null(strstr(d.reason, "Deny statement 1 Sid no-legacy"));
	assert_null(strstr(d.message, "legacy"));
	/* A batch: one item the Deny matches denies the whole batch. */
	authz_context items[2] = { *ctx(&b[0], modern, 1), *ctx(&b[1], legacy, 1) };
	assert_false(decide(p, "batch_encrypt", items, 2, NULL, 0, &d));
	assert_int_equal(d.step, AUTHZ_STEP_DENY);
	/* A grant does not beat a Deny either. */
	const char *const ops[] = { "encrypt" };
	authz_grant g = { .id = "GRAAAAAAAAAAAAAAAAAAAA", .operations = ops, .n_operations = 1 };
	assert_false(decide(p, "encrypt", ctx(&b[0], legacy, 1), 1, &g, 1, &d));
	assert_int_equal(d.step, AUTHZ_STEP_DENY);
	authz_policy_free(p);
}

static void grants(void **state)
{
	(void)state;
	authz_decision d;
	ctx_buf b[2];
	const char *const ops[] = { "decrypt", "generate_data_key" };
	const authz_pair pairs[] = { { "tenant", "t1" }, { "purpose", "billing" } };
	authz_grant g[2] = {
		{ .id = "GRUNRELATED0000000000A", .operations = ops + 1, .n_operations = 1 },
		{ .id = "GR234567ABCDEFGHIJKLMN", .operations = ops, .n_operations = 2,
		  .context = pairs, .n_context = 2 },
	};
	const char *superset[] = { "purpose=billing", "tenant=t1", "x=y" };
	const char *missing[] = { "tenant=t1" };
	const char *wrong[] = { "tenant=t2", "purpose=billing" };

	/* The default policy grants nothing; the grant does. */
	assert_true(decide(NULL, "decrypt", ctx(&b[0], superset, 3), 1, g, 2, &d));
	assert_int_equal(d.step, AUTHZ_STEP_ALLOW);
	assert_string_equal(d.grant_id, "GR234567ABCDEFGHIJKLMN");
	assert_non_null(strstr(d.reason, "grant GR234567ABCDEFGHIJKLMN"));
	assert_int_equal(d.statement, -1);
	/* Context subset: every pair must be in the request's context. */
	assert_false(decide(NULL, "decrypt", ctx(&b[0], missing, 1), 1, g, 2, &d));
	assert_false(decide(NULL, "decrypt", ctx(&b[0], wrong, 2), 1, g, 2, &d));
	assert_int_equal(d.step, AUTHZ_STEP_DEFAULT);
	assert_null(d.grant_id);
	/* An operation the grant does not list. */
	assert_false(decide(NULL, "encrypt", ctx(&b[0], superset, 3), 1, g, 2, &d));
	/* The grant without pairs allows generate_data_key with any context. */
	assert_true(decide(NULL, "generate_data_key", NULL, 0, g, 2, &d));
	assert_string_equal(d.grant_id, "GRUNRELATED0000000000A");
	/* A grant is for the data plane: it never opens the control plane. */
	const char *const ctl[] = { "disable_key" };
	authz_grant gc = { .id = "GRCONTROL0000000000000", .operations = ctl, .n_operations = 1 };
	authz_principal admin = { .name = "ops", .roles = AUTHZ_ROLE_ADMIN };
	authz_policy *nothing = parse("{\"Version\":\"2024-01-01\",\"Statement\":[{\"Effect\":"
	                              "\"Allow\",\"Principal\":\"nobody\",\"Action\":\"encrypt\"}]}");
	authz_request req = { .principal = &admin, .op = op_named("disable_key"), .key_id = KEY,
	                      .policy = nothing, .grants = &gc, .n_grants = 1 };
	authz_decide(&req, &d);
	assert_false(d.allow);
	/* A batch: the grant's pairs must be in every item. */
	authz_context items[2] = { *ctx(&b[0], superset, 3), *ctx(&b[1], missing, 1) };
	const char *const bops[] = { "batch_decrypt" };
	authz_grant gb = { .id = "GRBATCH000000000000000", .operations = bops, .n_operations = 1,
	                   .context = pairs, .n_context = 2 };
	assert_false(decide(NULL, "batch_decrypt", items, 2, &gb, 1, &d));
	items[1] = *ctx(&b[1], superset, 3);
	assert_true(decide(NULL, "batch_decrypt", items, 2, &gb, 1, &d));
	authz_policy_free(nothing);
}

/* Principals by name, role and "*"; an auditor-only principal is refused
 * the data plane at step 2 even by a policy that allows everyone
 * everything; a keyed operation without a key is refused. */
static void principals_and_steps(void **state)
{
	(void)state;
	authz_policy *p = parse("{\"Version\":\"2024-01-01\",\"Statement\":[{\"Effect\":\"Allow\","
	                        "\"Principal\":\"*\",\"Action\":\"*\"}]}");
	authz_principal auditor = { .name = "carol", .roles = AUTHZ_ROLE_AUDITOR };
	authz_request req = { .principal = &auditor, .op = op_named("encrypt"), .key_id = KEY,
	                      .policy = p };
	authz_decision d;
	authz_decide(&req, &d);
	assert_false(d.allow);
	assert_int_equal(d.step, AUTHZ_STEP_ROLE);
	assert_non_null(strstr(d.reason, "auditor"));
	assert_non_null(strstr(d.reason, "data plane"));

	req.principal = &app;
	req.key_id = NULL;
	authz_decide(&req, &d);
	assert_false(d.allow);
	req.key_id = KEY;
	authz_decide(&req, &d);
	assert_true(d.allow);

	/* No principal at all. */
	authz_principal unknown = { .name = NULL, .roles = AUTHZ_ROLE_ADMIN };
	req.principal = &unknown;
	authz_decide(&req, &d);
	assert_false(d.allow);
	assert_int_equal(d.step, AUTHZ_STEP_PRINCIPAL);
	assert_string_equal(d.message, "this caller may not encrypt");

	/* By role: role:app matches an app+auditor principal, not an admin. */
	authz_policy *by_role = parse("{\"Version\":\"2024-01-01\",\"Statement\":[{\"Effect\":"
	                              "\"Allow\",\"Principal\":[\"x\",\"role:app\"],\"Action\":"
	                              "[\"encrypt\"]}]}");
	authz_principal both = { .name = "svc", .roles = AUTHZ_ROLE_APP | AUTHZ_ROLE_AUDITOR };
	authz_principal admin = { .name = "x-admin", .roles = AUTHZ_ROLE_ADMIN };
	req.policy = by_role;
	req.principal = &both;
	authz_decide(&req, &d);
	assert_true(d.allow);
	req.principal = &admin;
	authz_decide(&req, &d);
	assert_false(d.allow);
	/* By name: the whole name, not a prefix. */
	authz_principal x = { .name = "x", .roles = AUTHZ_ROLE_ADMIN };
	req.principal = &x;
	authz_decide(&req, &d);
	assert_true(d.allow);
	authz_policy_free(by_role);
	authz_policy_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(conditions_each_part),
		cmocka_unit_test(batch_every_item_must_satisfy),
		cmocka_unit_test(conditional_deny_wins),
		cmocka_unit_test(grants),
		cmocka_unit_test(principals_and_steps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
