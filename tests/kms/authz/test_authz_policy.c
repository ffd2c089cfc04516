/*
 * test_authz_policy: the key policy parser (docs/authorization.md, "Key
 * policies"). The default policy parses and is what the doc says; a full
 * policy compiles to the statements expected; and each rule of the grammar
 * has one refused document, whose one-line message names the statement and
 * member, and never echoes the document's content (each bad document
 * carries the marker "Zq9" where its content could leak).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kms/limits.h>

#include "common/error.h"
#include "kms/authz/authz_policy.h"
#include "kms/pipeline/ops.h"

static size_t op_index_of(const char *name)
{
	for (size_t i = 0; ops_at(i); i++)
		if (!strcmp(ops_at(i)->name, name))
			return i;
	fail_msg("no operation %s", name);
	return 0;
}

static void default_policy(void **state)
{
	(void)state;
	const authz_policy *p = authz_policy_default();
	assert_non_null(p);
	assert_int_equal(p->n_statements, 1);
	const authz_statement *s = &p->statements[0];
	assert_string_equal(s->sid, "admins-manage");
	assert_false(s->deny);
	assert_false(s->any_principal);
	assert_int_equal(s->roles, AUTHZ_ROLE_ADMIN);
	assert_int_equal(s->n_names, 0);
	assert_false(s->any_action);
	static const char *const manage[] = {
		"describe_key", "update_key_description", "enable_key", "disable_key", "rotate_key",
		"set_rotation_period", "schedule_key_deletion", "cancel_key_deletion", "tag_key",
		"untag_key", "put_key_policy", "get_key_policy", "create_alias", "update_alias",
		"delete_alias", "create_grant", "erase_data_principal", "set_data_principal_hold",
		"set_retention",
	};
	size_t n = 0;
	for (size_t i = 0; ops_at(i); i++) {
		bool listed = false;
		for (size_t j = 0; j < sizeof manage / sizeof manage[0]; j++)
			listed |= !strcmp(manage[j], ops_at(i)->name);
		assert_int_equal(authz_statement_has_action(s, i), listed);
		n += listed;
	}
	assert_int_equal(n, sizeof manage / sizeof manage[0]);
	/* The same document through the parser again: it is the constant. */
	authz_policy *again = NULL;
	assert_int_equal(authz_policy_parse(authz_default_policy_json,
	                                    strlen(authz_default_policy_json), &again), KMS_OK);
	assert_int_equal(again->n_statements, 1);
	authz_policy_free(again);
}

static void full_policy_compiles(void **state)
{
	(void)state;
	static const char doc[] =
	        "{\"Version\":\"2024-01-01\",\"Statement\":["
	        "{\"Sid\":\"billing-decrypts\",\"Effect\":\"Allow\",\"Principal\":\"payments-svc\","
	        "\"Action\":[\"encrypt\",\"decrypt\"],"
	        "\"Condition\":{\"ContextKeys\":[\"tenant\"],\"ContextEquals\":{\"purpose\":"
	        "\"billing\"},\"ContextIn\":{\"region\":[\"in-mum\",\"in-del\"]}}},"
	        "{\"Effect\":\"Deny\",\"Principal\":[\"*\",\"role:auditor\",\"role:app\",\"a.b_c-d\"],"
	        "\"Action\":\"*\"}]}";
	authz_policy *p = NULL;
	assert_int_equal(authz_policy_parse(doc, strlen(doc), &p), KMS_OK);
	assert_int_equal(p->n_statements, 2);
	const authz_statement *s = &p->statements[0];
	assert_string_equal(s->sid, "billing-decrypts");
	assert_int_equal(s->n_names, 1);
	assert_string_equal(s->names[0], "payments-svc");
	assert_true(authz_statement_has_action(s, op_index_of("encrypt")));
	assert_true(authz_statement_has_action(s, op_index_of("decrypt")));
	assert_false(authz_statement_has_action(s, op_index_of("re_encrypt")));
	assert_int_equal(s->cond.n_keys, 1);
	assert_string_equal(s->cond.keys[0], "tenant");
	assert_int_equal(s->cond.n_eq, 1);
	assert_string_equal(s->cond.eq_keys[0], "purpose");
	assert_string_equal(s->cond.eq_values[0], "billing");
	assert_int_equal(s->cond.n_in, 1);
	assert_string_equal(s->cond.in[0].key, "region");
	assert_int_equal(s->cond.in[0].n_values, 2);
	assert_string_equal(s->cond.in[0].values[1], "in-del");
	s = &p->statements[1];
	assert_true(s->deny);
	assert_string_equal(s->sid, "");
	assert_true(s->any_principal);
	assert_int_equal(s->roles, AUTHZ_ROLE_AUDITOR | AUTHZ_ROLE_APP);
	assert_int_equal(s->n_names, 1);
	assert_true(s->any_action);
	authz_policy_free(p);
}

/* A document with one statement whose members are `members`. */
static char *one_statement(const char *members)
{
	char *doc = NULL;
	assert_true(asprintf(&doc, "{\"Version\":\"2024-01-01\",\"Statement\":[{%s}]}", members) > 0);
	return doc;
}

#define OK_MEMBERS "\"Effect\":\"Allow\",\"Principal\":\"app\",\"Action\":\"encrypt\""

typedef struct refusal {
	const char *rule;
	const char *doc;     /* a whole document, or */
	const char *members; /* the members of Statement[0] */
	const char *says;    /* a part of the message */
} refusal;

static const refusal refused_docs[] = {
	{ "not JSON", "{\"Version\":\"2024-01-01\",Zq9}", NULL, "not valid JSON (line 1, column" },
	{ "not an object", "[\"Zq9\"]", NULL, "must be a JSON object" },
	{ "duplicate top-level member",
	  "{\"Version\":\"2024-01-01\",\"Version\":\"2024-01-01\",\"Statement\":[]}", NULL,
	  "member name twice" },
	{ "duplicate statement member", NULL,
	  OK_MEMBERS ",\"Sid\":\"a\",\"Sid\":\"Zq9\"", "member name twice" },
	{ "unknown top-level member",
	  "{\"Version\":\"2024-01-01\",\"Zq9\":1,\"Statement\":[{" OK_MEMBERS "}]}", NULL,
	  "policy has an unknown member" },
	{ "missing Version", "{\"Statement\":[{" OK_MEMBERS "}]}", NULL, "policy Version must be" },
	{ "wrong Version", "{\"Version\":\"Zq9\",\"Statement\":[{" OK_MEMBERS "}]}", NULL,
	  "policy Version must be" },
	{ "Version a number", "{\"Version\":20240101,\"Statement\":[{" OK_MEMBERS "}]}", NULL,
	  "policy Version must be" },
	{ "missing Statement", "{\"Version\":\"2024-01-01\"}", NULL, "policy Statement must be" },
	{ "empty Statement", "{\"Version\":\"2024-01-01\",\"Statement\":[]}", NULL,
	  "policy Statement must be an array of 1 to 64" },
	{ "Statement an object", "{\"Version\":\"2024-01-01\",\"Statement\":{" OK_MEMBERS "}}",
	  NULL, "policy Statement must be an array" },
	{ "statement a string", "{\"Version\":\"2024-01-01\",\"Statement\":[\"Zq9\"]}", NULL,
	  "policy Statement[0] must be an object" },
	{ "unknown statement member", NULL, OK_MEMBERS ",\"Zq9\":true",
	  "Statement[0] has an unknown member" },
	{ "Sid with a space", NULL, OK_MEMBERS ",\"Sid\":\"a Zq9\"", "Statement[0].Sid must be" },
	{ "Sid empty", NULL, OK_MEMBERS ",\"Sid\":\"\"", "Statement[0].Sid must be" },
	{ "Sid a number", NULL, OK_MEMBERS ",\"Sid\":7", "Statement[0].Sid must be" },
	{ "missing Effect", NULL, "\"Principal\":\"app\",\"Action\":\"encrypt\"",
	  "Statement[0].Effect must be" },
	{ "Effect lower case", NULL, "\"Effect\":\"allow\",\"Principal\":\"app\",\"Action\":\"encrypt\"",
	  "Statement[0].Effect must be" },
	{ "Effect an array", NULL,
	  "\"Effect\":[\"Allow\"],\"Principal\":\"app\",\"Action\":\"encrypt\"",
	  "Statement[0].Effect must be" },
	{ "missing Principal", NULL, "\"Effect\":\"Allow\",\"Action\":\"encrypt\"",
	  "Statement[0].Principal is missing" },
	{ "Principal empty array", NULL, "\"Effect\":\"Allow\",\"Principal\":[],\"Action\":\"encrypt\"",
	  "Statement[0].Principal must be a string or an array" },
	{ "Principal an object", NULL,
	  "\"Effect\":\"Allow\",\"Principal\":{\"Zq9\":1},\"Action\":\"encrypt\"",
	  "Statement[0].Principal must be a string or an array" },
	{ "Principal array of a number", NULL,
	  "\"Effect\":\"Allow\",\"Principal\":[\"app\",3],\"Action\":\"encrypt\"",
	  "Statement[0].Principal must be a string or an array" },
	{ "Principal unknown role", NULL,
	  "\"Effect\":\"Allow\",\"Principal\":[\"app\",\"role:Zq9\"],\"Action\":\"encrypt\"",
	  "Statement[0].Principal[1] is not a principal name" },
	{ "Principal bad name", NULL,
	  "\"Effect\":\"Allow\",\"Principal\":\"Zq9/x\",\"Action\":\"encrypt\"",
	  "Statement[0].Principal[0] is not a principal name" },
	{ "missing Action", NULL, "\"Effect\":\"Allow\",\"Principal\":\"app\"",
	  "Statement[0].Action is missing" },
	{ "Action empty array", NULL, "\"Effect\":\"Allow\",\"Principal\":\"app\",\"Action\":[]",
	  "Statement[0].Action must be a string or an array" },
	{ "Action unknown", NULL,
	  "\"Effect\":\"Allow\",\"Principal\":\"app\",\"Action\":[\"encrypt\",\"Zq9\"]",
	  "Statement[0].Action[1] is not an operation" },
	{ "Action a wildcard prefix", NULL,
	  "\"Effect\":\"Allow\",\"Principal\":\"app\",\"Action\":\"encrypt*\"",
	  "Statement[0].Action[0] is not an operation" },
	{ "Condition empty", NULL, OK_MEMBERS ",\"Condition\":{}",
	  "Statement[0].Condition must be an object" },
	{ "Condition an array", NULL, OK_MEMBERS ",\"Condition\":[\"Zq9\"]",
	  "Statement[0].Condition must be an object" },
	{ "Condition unknown member", NULL, OK_MEMBERS ",\"Condition\":{\"Zq9\":[\"a\"]}",
	  "Statement[0].Condition has an unknown member" },
	{ "ContextKeys a string", NULL, OK_MEMBERS ",\"Condition\":{\"ContextKeys\":\"Zq9\"}",
	  "Condition.ContextKeys must be an array" },
	{ "ContextKeys empty", NULL, OK_MEMBERS ",\"Condition\":{\"ContextKeys\":[]}",
	  "Condition.ContextKeys must be an array" },
	{ "ContextKeys empty key", NULL, OK_MEMBERS ",\"Condition\":{\"ContextKeys\":[\"a\",\"\"]}",
	  "Condition.ContextKeys[1] must be a string of 1 to 256" },
	{ "ContextEquals an array", NULL,
	  OK_MEMBERS ",\"Condition\":{\"ContextEquals\":[\"Zq9\"]}",
	  "Condition.ContextEquals must be an object" },
	{ "ContextEquals empty", NULL, OK_MEMBERS ",\"Condition\":{\"ContextEquals\":{}}",
	  "Condition.ContextEquals must be an object" },
	{ "ContextEquals value an array", NULL,
	  OK_MEMBERS ",\"Condition\":{\"ContextEquals\":{\"a\":[\"Zq9\"]}}",
	  "Condition.ContextEquals member 0 must be a string" },
	{ "ContextEquals empty name", NULL,
	  OK_MEMBERS ",\"Condition\":{\"ContextEquals\":{\"a\":\"b\",\"\":\"Zq9\"}}",
	  "Condition.ContextEquals member 1: its name must be 1 to 256" },
	{ "ContextEquals duplicate name", NULL,
	  OK_MEMBERS ",\"Condition\":{\"ContextEquals\":{\"a\":\"b\",\"a\":\"Zq9\"}}",
	  "member name twice" },
	{ "ContextIn a string", NULL,
	  OK_MEMBERS ",\"Condition\":{\"ContextIn\":{\"region\":\"Zq9\"}}",
	  "Condition.ContextIn member 0 must be an array" },
	{ "ContextIn empty values", NULL, OK_MEMBERS ",\"Condition\":{\"ContextIn\":{\"region\":[]}}",
	  "Condition.ContextIn member 0 must be an array" },
	{ "ContextIn empty", NULL, OK_MEMBERS ",\"Condition\":{\"ContextIn\":{}}",
	  "Condition.ContextIn must be an object" },
	{ "ContextIn value a number", NULL,
	  OK_MEMBERS ",\"Condition\":{\"ContextIn\":{\"region\":[\"Zq9\",5]}}",
	  "Condition.ContextIn member 0 value 1 must be a string" },
	{ "U+0000 in a string", NULL,
	  "\"Effect\":\"Allow\",\"Principal\":\"app\\u0000Zq9\",\"Action\":\"encrypt\"",
	  "not valid JSON" },
};

static void check_refused(const char *rule, const char *doc, size_t len, const char *says)
{
	authz_policy *p = (authz_policy *)1;
	kms_error_clear();
	kms_status st = authz_policy_parse(doc, len, &p);
	const char *msg = kms_error_message();
	if (st != KMS_INVALID_ARGUMENT || !strstr(msg, says))
		fail_msg("%s: status %d, message \"%s\", want \"%s\"", rule, (int)st, msg, says);
	assert_null(p);
	assert_null(strchr(msg, '\n'));
	if (strstr(msg, "Zq9"))
		fail_msg("%s: the message echoes the document: %s", rule, msg);
}

static void one_refusal_per_rule(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof refused_docs / sizeof refused_docs[0]; i++) {
		const refusal *r = &refused_docs[i];
		char *doc = r->doc ? strdup(r->doc) : one_statement(r->members);
		assert_non_null(doc);
		check_refused(r->rule, doc, strlen(doc), r->says);
		free(doc);
	}
	/* The same statement's members with nothing wrong are accepted: each
	 * refusal above is its rule's doing. */
	char *ok = one_statement(OK_MEMBERS ",\"Sid\":\"a\",\"Condition\":{\"ContextKeys\":[\"a\"]}");
	authz_policy *p = NULL;
	assert_int_equal(authz_policy_parse(ok, strlen(ok), &p), KMS_OK);
	authz_policy_free(p);
	free(ok);
}

/* Appends `item` n times, comma-separated, to buf. */
static void repeat(char *buf, size_t size, const char *item, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(buf);
		snprintf(buf + len, size - len, "%s%s", i ? "," : "", item);
	}
}

static void bounds(void **state)
{
	(void)state;
	static char doc[KMS_POLICY_MAX * 2];
	static char members[KMS_POLICY_MAX];

	/* 64 statements pass, 65 do not. */
	for (size_t n = 64; n <= 65; n++) {
		snprintf(doc, sizeof doc, "{\"Version\":\"2024-01-01\",\"Statement\":[");
		repeat(doc, sizeof doc, "{" OK_MEMBERS "}", n);
		strcat(doc, "]}");
		authz_policy *p = NULL;
		if (n == 64) {
			assert_int_equal(authz_policy_parse(doc, strlen(doc), &p), KMS_OK);
			assert_int_equal(p->n_statements, 64);
			authz_policy_free(p);
		} else {
			check_refused("65 statements", doc, strlen(doc), "array of 1 to 64 statements");
		}
	}

	/* 65 principals, actions, condition entries: each refused. */
	struct {
		const char *rule, *head, *item, *tail, *says;
	} over[] = {
		{ "65 principals", "\"Effect\":\"Allow\",\"Action\":\"encrypt\",\"Principal\":[",
		  "\"app\"", "]", "Principal must be a string or an array of 1 to 64" },
		{ "65 actions", "\"Effect\":\"Allow\",\"Principal\":\"app\",\"Action\":[",
		  "\"encrypt\"", "]", "Action must be a string or an array of 1 to 64" },
		{ "65 ContextKeys", OK_MEMBERS ",\"Condition\":{\"ContextKeys\":[", "\"k\"", "]}",
		  "ContextKeys must be an array of 1 to 64" },
		{ "65 ContextIn values", OK_MEMBERS ",\"Condition\":{\"ContextIn\":{\"k\":[", "\"v\"",
		  "]}}", "ContextIn member 0 must be an array of 1 to 64" },
	};
	for (size_t i = 0; i < sizeof over / sizeof over[0]; i++) {
		for (size_t n = 64; n <= 65; n++) {
			snprintf(members, sizeof members, "%s", over[i].head);
			repeat(members, sizeof members, over[i].item, n);
			strcat(members, over[i].tail);
			char *d = one_statement(members);
			authz_policy *p = NULL;
			if (n == 64) {
				assert_int_equal(authz_policy_parse(d, strlen(d), &p), KMS_OK);
				authz_policy_free(p);
			} else {
				check_refused(over[i].rule, d, strlen(d), over[i].says);
			}
			free(d);
		}
	}
	/* 65 ContextEquals members (distinct names). */
	snprintf(members, sizeof members, OK_MEMBERS ",\"Condition\":{\"ContextEquals\":{");
	for (int i = 0; i < 65; i++) {
		size_t len = strlen(members);
		snprintf(members + len, sizeof members - len, "%s\"k%d\":\"v\"", i ? "," : "", i);
	}
	strcat(members, "}}");
	char *d = one_statement(members);
	check_refused("65 ContextEquals", d, strlen(d), "ContextEquals must be an object of 1 to 64");
	free(d);

	/* A context key of 257 bytes, a value of 1025 bytes. */
	char key[KMS_CONTEXT_KEY_MAX + 2];
	memset(key, 'k', sizeof key - 1);
	key[sizeof key - 1] = '\0';
	char value[KMS_CONTEXT_VALUE_MAX + 2];
	memset(value, 'v', sizeof value - 1);
	value[sizeof value - 1] = '\0';
	snprintf(members, sizeof members, OK_MEMBERS ",\"Condition\":{\"ContextKeys\":[\"%s\"]}", key);
	d = one_statement(members);
	check_refused("key too long", d, strlen(d), "ContextKeys[0] must be a string of 1 to 256");
	free(d);
	snprintf(members, sizeof members,
	         OK_MEMBERS ",\"Condition\":{\"ContextEquals\":{\"k\":\"%s\"}}", value);
	d = one_statement(members);
	check_refused("value too long", d, strlen(d), "member 0 must be a string of at most 1024");
	free(d);
	snprintf(members, sizeof members,
	         OK_MEMBERS ",\"Condition\":{\"ContextIn\":{\"%s\":[\"v\"]}}", key);
	d = one_statement(members);
	check_refused("ContextIn key too long", d, strlen(d), "its name must be 1 to 256");
	free(d);
	/* At the limits: accepted. */
	key[KMS_CONTEXT_KEY_MAX] = '\0';
	value[KMS_CONTEXT_VALUE_MAX] = '\0';
	snprintf(members, sizeof members,
	         OK_MEMBERS ",\"Condition\":{\"ContextEquals\":{\"%s\":\"%s\"}}", key, value);
	d = one_statement(members);
	authz_policy *p = NULL;
	assert_int_equal(authz_policy_parse(d, strlen(d), &p), KMS_OK);
	authz_policy_free(p);
	free(d);

	/* A document past KMS_POLICY_MAX, however well formed. */
	snprintf(doc, sizeof doc, "{\"Version\":\"2024-01-01\",\"Statement\":[{" OK_MEMBERS "}]}");
	size_t len = strlen(doc);
	memmove(doc + KMS_POLICY_MAX + 1 - len, doc, len);
	memset(doc, ' ', KMS_POLICY_MAX + 1 - len);
	check_refused("too large", doc, KMS_POLICY_MAX + 1, "at most 32768");
	/* The same at exactly KMS_POLICY_MAX bytes: accepted. */
	assert_int_equal(authz_policy_parse(doc + 1, KMS_POLICY_MAX, &p), KMS_OK);
	authz_policy_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(default_policy),
		cmocka_unit_test(full_policy_compiles),
		cmocka_unit_test(one_refusal_per_rule),
		cmocka_unit_test(bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
