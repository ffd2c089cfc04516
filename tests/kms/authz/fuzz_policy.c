/*
 * fuzz_policy: the key policy parser (kms/authz/authz_policy.c), and the
 * decision over whatever it accepts.
 *
 * Input: a policy document. A refusal is KMS_INVALID_ARGUMENT with one
 * non-empty line. An accepted policy keeps every bound of authz_policy.h
 * and include/kms/limits.h, and deciding every operation for a few
 * principals (with and without a context) never allows a principal that
 * step 1 or 2 must refuse, and never allows what a matching unconditional
 * Deny statement forbids.
 */
#include <string.h>

#include <kms/limits.h>

#include "common/error.h"
#include "kms/authz/authz_decide.h"
#include "kms/authz/authz_policy.h"
#include "kms/pipeline/ops.h"
#include "tests/support/fuzz.h"

static void check_bounds(const authz_policy *p)
{
	FUZZ_CHECK(p->n_statements >= 1 && p->n_statements <= AUTHZ_POLICY_STATEMENTS_MAX);
	for (size_t i = 0; i < p->n_statements; i++) {
		const authz_statement *s = &p->statements[i];
		FUZZ_CHECK(s->sid && strlen(s->sid) <= AUTHZ_SID_MAX);
		FUZZ_CHECK(s->n_names <= AUTHZ_POLICY_ENTRIES_MAX);
		for (size_t j = 0; j < s->n_names; j++) {
			size_t len = strlen(s->names[j]);
			FUZZ_CHECK(len >= 1 && len <= AUTHZ_PRINCIPAL_NAME_MAX);
		}
		FUZZ_CHECK(s->any_principal || s->roles || s->n_names);
		FUZZ_CHECK(s->cond.n_keys <= AUTHZ_POLICY_ENTRIES_MAX);
		FUZZ_CHECK(s->cond.n_eq <= AUTHZ_POLICY_ENTRIES_MAX);
		FUZZ_CHECK(s->cond.n_in <= AUTHZ_POLICY_ENTRIES_MAX);
		for (size_t j = 0; j < s->cond.n_keys; j++)
			FUZZ_CHECK(strlen(s->cond.keys[j]) <= KMS_CONTEXT_KEY_MAX);
		for (size_t j = 0; j < s->cond.n_eq; j++)
			FUZZ_CHECK(strlen(s->cond.eq_values[j]) <= KMS_CONTEXT_VALUE_MAX);
		for (size_t j = 0; j < s->cond.n_in; j++)
			FUZZ_CHECK(s->cond.in[j].n_values >= 1 &&
			           s->cond.in[j].n_values <= AUTHZ_POLICY_ENTRIES_MAX);
	}
}

static bool unconditional(const authz_condition *c)
{
	return !c->n_keys && !c->n_eq && !c->n_in;
}

static void check_decisions(const authz_policy *p)
{
	static const authz_principal who[] = {
		{ .name = "admin", .roles = AUTHZ_ROLE_ADMIN },
		{ .name = "app", .roles = AUTHZ_ROLE_APP },
		{ .name = "auditor", .roles = AUTHZ_ROLE_AUDITOR },
		{ .name = "nobody", .roles = 0 },
		{ .name = "app", .roles = AUTHZ_ROLE_APP, .disabled = true },
	};
	Kms__StringPair pair = KMS__STRING_PAIR__INIT;
	pair.key = "purpose";
	pair.value = "billing";
	Kms__StringPair *pairs[] = { &pair };
	authz_context ctx = { pairs, 1 };
	for (size_t i = 0; ops_at(i); i++) {
		const op_entry *op = ops_at(i);
		authz_op_class cls = authz_op_classify(op);
		for (size_t w = 0; w < sizeof who / sizeof who[0]; w++) {
			for (int with_ctx = 0; with_ctx < 2; with_ctx++) {
				authz_request req = { .principal = &who[w], .op = op,
				                      .key_id = cls.keyed ? "k-1" : NULL, .policy = p,
				                      .contexts = with_ctx ? &ctx : NULL,
				                      .n_contexts = with_ctx ? 1 : 0 };
				authz_decision d;
				authz_decide(&req, &d);
				FUZZ_CHECK(d.reason[0] != '\0');
				FUZZ_CHECK(d.allow == (d.message[0] == '\0'));
				if (who[w].disabled)
					FUZZ_CHECK(!d.allow);
				if (cls.family == AUTHZ_FAMILY_DATA && !(who[w].roles & (AUTHZ_ROLE_APP |
				                                                         AUTHZ_ROLE_ADMIN)))
					FUZZ_CHECK(!d.allow);
				if (!d.allow || !cls.keyed)
					continue;
				for (size_t s = 0; s < p->n_statements; s++) {
					const authz_statement *st = &p->statements[s];
					if (st->deny && unconditional(&st->cond) &&
					    authz_statement_names(st, &who[w]) &&
					    authz_statement_has_action(st, i))
						FUZZ_CHECK(!"a matching Deny was beaten");
				}
			}
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	authz_policy *p = NULL;
	kms_error_clear();
	kms_status st = authz_policy_parse((const char *)data, size, &p);
	if (st != KMS_OK) {
		FUZZ_CHECK(p == NULL);
		FUZZ_CHECK(st == KMS_INVALID_ARGUMENT || st == KMS_INTERNAL);
		const char *msg = kms_error_message();
		FUZZ_CHECK(msg[0] != '\0' && !strchr(msg, '\n'));
		return 0;
	}
	check_bounds(p);
	check_decisions(p);
	authz_policy_free(p);
	return 0;
}
