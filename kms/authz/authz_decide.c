/*
 * authz_decide.c: the decision (docs/authorization.md, "The decision"):
 *   1. disabled principal or revoked access key: deny;
 *   2. the operation's family does not admit the principal's roles: deny
 *      (a key-less operation the roles admit is allowed here);
 *   3. a matching Deny statement: deny (for a batch: if any item's context
 *      satisfies its condition);
 *   4. a matching Allow statement (every context satisfies its condition),
 *      a live grant for the operation whose pairs are in every context, or,
 *      for a key read, the admin or auditor role: allow;
 *   5. deny.
 * The family of each operation is kept here, in one table.
 */
#include "kms/authz/authz_decide.h"

#include <stdio.h>
#include <string.h>

#include "kms/format/keyid.h"

static const struct {
	const char *name;
	authz_op_class cls;
} op_classes[] = {
	{ "encrypt", { AUTHZ_FAMILY_DATA, true } },
	{ "decrypt", { AUTHZ_FAMILY_DATA, true } },
	{ "re_encrypt", { AUTHZ_FAMILY_DATA, true } },
	{ "generate_data_key", { AUTHZ_FAMILY_DATA, true } },
	{ "generate_data_key_without_plaintext", { AUTHZ_FAMILY_DATA, true } },
	{ "batch_encrypt", { AUTHZ_FAMILY_DATA, true } },
	{ "batch_decrypt", { AUTHZ_FAMILY_DATA, true } },
	{ "batch_generate_data_key", { AUTHZ_FAMILY_DATA, true } },
	{ "sign", { AUTHZ_FAMILY_DATA, true } },
	{ "verify", { AUTHZ_FAMILY_DATA, true } },
	{ "get_public_key", { AUTHZ_FAMILY_DATA, true } },
	{ "generate_mac", { AUTHZ_FAMILY_DATA, true } },
	{ "verify_mac", { AUTHZ_FAMILY_DATA, true } },
	{ "pseudonymize", { AUTHZ_FAMILY_DATA, true } },
	{ "generate_random", { AUTHZ_FAMILY_RANDOM, false } },
	{ "create_key", { AUTHZ_FAMILY_KEY_CONTROL, false } },
	{ "update_key_description", { AUTHZ_FAMILY_KEY_CONTROL, true } },
	{ "enable_key", { AUTHZ_FAMILY_KEY_CONTROL, true } },
	{ "disable_key", { AUTHZ_FAMILY_KEY_CONTROL, true } },
	{ "rotate_key", { AUTHZ_FAMILY_KEY_CONTROL, true } },
	{ "set_rotation_period", { AUTHZ_FAMILY_KEY_CONTROL, true } },
	{ "schedule_key_deletion", { AUTHZ_FAMILY_KEY_CONTROL, true } },
	{ "cancel_key_deletion", { AUTHZ_FAMILY_KEY_CONTROL, true } },
	{ "tag_key", { AUTHZ_FAMILY_KEY_CONTROL, true } },
	{ "untag_key", { AUTHZ_FAMILY_KEY_CONTROL, true } },
	{ "put_key_policy", { AUTHZ_FAMILY_KEY_CONTROL, true } },
	{ "create_alias", { AUTHZ_FAMILY_KEY_CONTROL, true } },
	{ "update_alias", { AUTHZ_FAMILY_KEY_CONTROL, true } },
	{ "delete_alias", { AUTHZ_FAMILY_KEY_CONTROL, true } },
	/* A grant gives use of its key: decided on that key's policy like the
	 * other changes to who may use a key (put_key_policy). */
	{ "create_grant", { AUTHZ_FAMILY_KEY_CONTROL, true } },
	{ "describe_key", { AUTHZ_FAMILY_KEY_READ, true } },
	{ "get_key_policy", { AUTHZ_FAMILY_KEY_READ, true } },
	{ "list_keys", { AUTHZ_FAMILY_KEY_READ, false } },
	{ "list_aliases", { AUTHZ_FAMILY_KEY_READ, false } },
	{ "get_checkpoint", { AUTHZ_FAMILY_AUDIT_READ, false } },
	{ "get_inclusion_proof", { AUTHZ_FAMILY_AUDIT_READ, false } },
	{ "get_consistency_proof", { AUTHZ_FAMILY_AUDIT_READ, false } },
	{ "health", { AUTHZ_FAMILY_HEALTH, false } },
	{ "create_principal", { AUTHZ_FAMILY_PRINCIPALS, false } },
	{ "list_principals", { AUTHZ_FAMILY_PRINCIPALS, false } },
	{ "describe_principal", { AUTHZ_FAMILY_PRINCIPALS, false } },
	{ "enable_principal", { AUTHZ_FAMILY_PRINCIPALS, false } },
	{ "disable_principal", { AUTHZ_FAMILY_PRINCIPALS, false } },
	{ "delete_principal", { AUTHZ_FAMILY_PRINCIPALS, false } },
	{ "create_access_key", { AUTHZ_FAMILY_PRINCIPALS, false } },
	{ "list_access_keys", { AUTHZ_FAMILY_PRINCIPALS, false } },
	{ "revoke_access_key", { AUTHZ_FAMILY_PRINCIPALS, false } },
	{ "list_grants", { AUTHZ_FAMILY_PRINCIPALS, false } },
	{ "revoke_grant", { AUTHZ_FAMILY_PRINCIPALS, false } },
	/* Any principal: the handler lets only the grantee or an admin retire. */
	{ "retire_grant", { AUTHZ_FAMILY_GRANT_RETIRE, false } },
	/* HSM administration: only an admin changes the KEKs; an auditor may
	 * read them (ids, states, counts: no key material), to check that a
	 * KEK rotation completed after a destruction (docs/key-hierarchy.md,
	 * "Destruction and crypto-shredding"). */
	{ "rotate_kek", { AUTHZ_FAMILY_HSM_ADMIN, false } },
	{ "list_keks", { AUTHZ_FAMILY_HSM_READ, false } },
	/* Consent (docs/consent.md). */
	{ "add_consent_manager", { AUTHZ_FAMILY_CONSENT_ADMIN, false } },
	{ "remove_consent_manager", { AUTHZ_FAMILY_CONSENT_ADMIN, false } },
	{ "import_consent", { AUTHZ_FAMILY_CONSENT_WRITE, false } },
	{ "set_consent_status", { AUTHZ_FAMILY_CONSENT_WRITE, false } },
	{ "list_consent_managers", { AUTHZ_FAMILY_CONSENT_READ, false } },
	{ "list_consents", { AUTHZ_FAMILY_CONSENT_READ, false } },
	{ "describe_consent", { AUTHZ_FAMILY_CONSENT_READ, false } },
	/* Data principals' sub-keys (docs/data-principals.md): changes to a
	 * key's sub-keys, decided on that key's policy like the other key
	 * changes; the due list is a read across keys. */
	{ "erase_data_principal", { AUTHZ_FAMILY_KEY_CONTROL, true } },
	{ "set_data_principal_hold", { AUTHZ_FAMILY_KEY_CONTROL, true } },
	{ "set_retention", { AUTHZ_FAMILY_KEY_CONTROL, true } },
	{ "list_due_erasures", { AUTHZ_FAMILY_KEY_READ, false } },
};

authz_op_class authz_op_classify(const op_entry *op)
{
	authz_op_class none = { AUTHZ_FAMILY_UNKNOWN, false };
	if (!op || !op->name)
		return none;
	for (size_t i = 0; i < sizeof op_classes / sizeof op_classes[0]; i++)
		if (!strcmp(op_classes[i].name, op->name))
			return op_classes[i].cls;
	return none;
}

const char *authz_family_name(authz_family f)
{
	switch (f) {
	case AUTHZ_FAMILY_DATA: return "data plane";
	case AUTHZ_FAMILY_RANDOM: return "generate_random";
	case AUTHZ_FAMILY_KEY_CONTROL: return "key control plane";
	case AUTHZ_FAMILY_KEY_READ: return "key reads";
	case AUTHZ_FAMILY_AUDIT_READ: return "audit reads";
	case AUTHZ_FAMILY_PRINCIPALS: return "principals and grants";
	case AUTHZ_FAMILY_GRANT_RETIRE: return "grant retirement";
	case AUTHZ_FAMILY_HEALTH: return "health";
	case AUTHZ_FAMILY_HSM_ADMIN: return "HSM administration";
	case AUTHZ_FAMILY_HSM_READ: return "HSM reads";
	case AUTHZ_FAMILY_CONSENT_ADMIN: return "Consent Manager administration";
	case AUTHZ_FAMILY_CONSENT_WRITE: return "consent artefacts";
	case AUTHZ_FAMILY_CONSENT_READ: return "consent reads";
	case AUTHZ_FAMILY_UNKNOWN: break;
	}
	return "unknown";
}

/* Step 2: which roles each family admits. Health admits anyone admitted. */
static bool family_admits(authz_family f, unsigned roles)
{
	switch (f) {
	case AUTHZ_FAMILY_DATA:
	case AUTHZ_FAMILY_RANDOM:
		return roles & (AUTHZ_ROLE_APP | AUTHZ_ROLE_ADMIN);
	case AUTHZ_FAMILY_KEY_CONTROL:
	case AUTHZ_FAMILY_PRINCIPALS:
	case AUTHZ_FAMILY_HSM_ADMIN:
	case AUTHZ_FAMILY_CONSENT_ADMIN:
		return roles & AUTHZ_ROLE_ADMIN;
	case AUTHZ_FAMILY_KEY_READ:
		/* An app only where the key's policy allows it (step 4). */
		return roles & (AUTHZ_ROLE_ADMIN | AUTHZ_ROLE_AUDITOR | AUTHZ_ROLE_APP);
	case AUTHZ_FAMILY_AUDIT_READ:
	case AUTHZ_FAMILY_HSM_READ:
	case AUTHZ_FAMILY_CONSENT_READ:
		return roles & (AUTHZ_ROLE_AUDITOR | AUTHZ_ROLE_ADMIN);
	case AUTHZ_FAMILY_CONSENT_WRITE:
		return roles != 0;
	case AUTHZ_FAMILY_HEALTH:
	case AUTHZ_FAMILY_GRANT_RETIRE:
		return true;
	case AUTHZ_FAMILY_UNKNOWN:
		break;
	}
	return false;
}

bool authz_statement_names(const authz_statement *s, const authz_principal *who)
{
	if (!who->name)
		return false;
	if (s->any_principal || (s->roles & who->roles))
		return true;
	for (size_t i = 0; i < s->n_names; i++)
		if (!strcmp(s->names[i], who->name))
			return true;
	return false;
}

static const char *context_get(const authz_context *c, const char *key)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->pairs[i] && c->pairs[i]->key && !strcmp(c->pairs[i]->key, key))
			return c->pairs[i]->value ? c->pairs[i]->value : "";
	return NULL;
}

bool authz_condition_holds(const authz_condition *cond, const authz_context *c)
{
	for (size_t i = 0; i < cond->n_keys; i++)
		if (!context_get(c, cond->keys[i]))
			return false;
	for (size_t i = 0; i < cond->n_eq; i++) {
		const char *v = context_get(c, cond->eq_keys[i]);
		if (!v || strcmp(v, cond->eq_values[i]))
			return false;
	}
	for (size_t i = 0; i < cond->n_in; i++) {
		const char *v = context_get(c, cond->in[i].key);
		bool found = false;
		for (size_t j = 0; v && j < cond->in[i].n_values && !found; j++)
			found = !strcmp(v, cond->in[i].values[j]);
		if (!found)
			return false;
	}
	return true;
}

static const authz_context empty_context = { NULL, 0 };

static bool holds_for_all(const authz_condition *cond, const authz_request *req)
{
	if (req->n_contexts == 0)
		return authz_condition_holds(cond, &empty_context);
	for (size_t i = 0; i < req->n_contexts; i++)
		if (!authz_condition_holds(cond, &req->contexts[i]))
			return false;
	return true;
}

static bool holds_for_any(const authz_condition *cond, const authz_request *req)
{
	if (req->n_contexts == 0)
		return authz_condition_holds(cond, &empty_context);
	for (size_t i = 0; i < req->n_contexts; i++)
		if (authz_condition_holds(cond, &req->contexts[i]))
			return true;
	return false;
}

static bool grant_pairs_in(const authz_grant *g, const authz_context *c)
{
	for (size_t i = 0; i < g->n_context; i++) {
		const char *v = g->context[i].key ? context_get(c, g->context[i].key) : NULL;
		if (!v || !g->context[i].value || strcmp(v, g->context[i].value))
			return false;
	}
	return true;
}

static bool grant_allows(const authz_grant *g, const authz_request *req)
{
	bool named = false;
	for (size_t i = 0; i < g->n_operations && !named; i++)
		named = g->operations[i] && !strcmp(g->operations[i], req->op->name);
	if (!named)
		return false;
	if (req->n_contexts == 0)
		return grant_pairs_in(g, &empty_context);
	for (size_t i = 0; i < req->n_contexts; i++)
		if (!grant_pairs_in(g, &req->contexts[i]))
			return false;
	return true;
}

static void describe_roles(unsigned roles, char *buf, size_t size)
{
	snprintf(buf, size, "%s%s%s%s", roles & AUTHZ_ROLE_ADMIN ? "admin," : "",
	         roles & AUTHZ_ROLE_APP ? "app," : "", roles & AUTHZ_ROLE_AUDITOR ? "auditor," : "",
	         roles ? "" : "none");
	size_t len = strlen(buf);
	if (len && buf[len - 1] == ',')
		buf[len - 1] = '\0';
}

static void decide_deny(const authz_request *req, authz_decision *out, authz_step step)
{
	out->allow = false;
	out->step = step;
	const char *who = req->principal ? req->principal->name : NULL;
	const char *op = req->op && req->op->name ? req->op->name : "(unknown operation)";
	if (who && req->key_id)
		snprintf(out->message, sizeof out->message, "principal %.*s may not %s key %.*s",
		         AUTHZ_PRINCIPAL_NAME_MAX, who, op, KMS_ALIAS_TEXT_MAX, req->key_id);
	else if (who)
		snprintf(out->message, sizeof out->message, "principal %.*s may not %s",
		         AUTHZ_PRINCIPAL_NAME_MAX, who, op);
	else
		snprintf(out->message, sizeof out->message, "this caller may not %s", op);
}

void authz_decide(const authz_request *req, authz_decision *out)
{
	memset(out, 0, sizeof *out);
	out->statement = -1;
	const authz_principal *who = req->principal;

	/* Step 1. */
	if (!who || !who->name) {
		snprintf(out->reason, sizeof out->reason, "step 1: no principal");
		decide_deny(req, out, AUTHZ_STEP_PRINCIPAL);
		return;
	}
	if (who->disabled || who->key_revoked) {
		snprintf(out->reason, sizeof out->reason, "step 1: %s",
		         who->disabled ? "the principal is disabled" : "the access key is revoked");
		decide_deny(req, out, AUTHZ_STEP_PRINCIPAL);
		return;
	}

	/* Step 2. */
	authz_op_class cls = authz_op_classify(req->op);
	char roles[32];
	describe_roles(who->roles, roles, sizeof roles);
	if (!family_admits(cls.family, who->roles)) {
		snprintf(out->reason, sizeof out->reason,
		         "step 2: roles %s are not admitted to %s", roles,
		         authz_family_name(cls.family));
		decide_deny(req, out, AUTHZ_STEP_ROLE);
		return;
	}
	if (!cls.keyed) {
		/* An app reaches step 2 for key reads only through a key's policy:
		 * a key-less read (list_keys, list_aliases) is not for it. */
		if (cls.family == AUTHZ_FAMILY_KEY_READ &&
		    !(who->roles & (AUTHZ_ROLE_ADMIN | AUTHZ_ROLE_AUDITOR))) {
			snprintf(out->reason, sizeof out->reason,
			         "step 2: roles %s are not admitted to key-less %s", roles,
			         authz_family_name(cls.family));
			decide_deny(req, out, AUTHZ_STEP_ROLE);
			return;
		}
		out->allow = true;
		out->step = AUTHZ_STEP_ROLE;
		snprintf(out->reason, sizeof out->reason, "step 2: roles %s admitted to %s", roles,
		         authz_family_name(cls.family));
		return;
	}
	if (!req->key_id) {
		snprintf(out->reason, sizeof out->reason, "step 2: no key given for a keyed operation");
		decide_deny(req, out, AUTHZ_STEP_ROLE);
		return;
	}

	const authz_policy *policy = req->policy ? req->policy : authz_policy_default();
	if (!policy) {
		snprintf(out->reason, sizeof out->reason, "step 5: no policy could be read");
		decide_deny(req, out, AUTHZ_STEP_DEFAULT);
		return;
	}
	size_t op_index = ops_index(req->op);

	/* Step 3. */
	for (size_t i = 0; i < policy->n_statements; i++) {
		const authz_statement *s = &policy->statements[i];
		if (s->deny && authz_statement_names(s, who) && authz_statement_has_action(s, op_index) &&
		    holds_for_any(&s->cond, req)) {
			out->statement = (long)i;
			out->sid = s->sid;
			snprintf(out->reason, sizeof out->reason, "step 3: Deny statement %zu%s%s", i,
			         s->sid[0] ? " Sid " : "", s->sid);
			decide_deny(req, out, AUTHZ_STEP_DENY);
			return;
		}
	}

	/* Step 4. */
	for (size_t i = 0; i < policy->n_statements; i++) {
		const authz_statement *s = &policy->statements[i];
		if (!s->deny && authz_statement_names(s, who) &&
		    authz_statement_has_action(s, op_index) && holds_for_all(&s->cond, req)) {
			out->allow = true;
			out->step = AUTHZ_STEP_ALLOW;
			out->statement = (long)i;
			out->sid = s->sid;
			snprintf(out->reason, sizeof out->reason, "step 4: Allow statement %zu%s%s", i,
			         s->sid[0] ? " Sid " : "", s->sid);
			return;
		}
	}
	if (cls.family == AUTHZ_FAMILY_DATA) {
		for (size_t i = 0; i < req->n_grants; i++) {
			if (grant_allows(&req->grants[i], req)) {
				out->allow = true;
				out->step = AUTHZ_STEP_ALLOW;
				out->grant_id = req->grants[i].id ? req->grants[i].id : "";
				snprintf(out->reason, sizeof out->reason, "step 4: grant %.40s",
				         out->grant_id);
				return;
			}
		}
	}
	if (cls.family == AUTHZ_FAMILY_KEY_READ &&
	    (who->roles & (AUTHZ_ROLE_ADMIN | AUTHZ_ROLE_AUDITOR))) {
		out->allow = true;
		out->step = AUTHZ_STEP_ALLOW;
		snprintf(out->reason, sizeof out->reason, "step 4: roles %s may read keys", roles);
		return;
	}

	/* Step 5. */
	snprintf(out->reason, sizeof out->reason,
	         "step 5: no Allow statement or grant for this principal and operation");
	decide_deny(req, out, AUTHZ_STEP_DEFAULT);
}
