/*
 * client_principals.c: the calls for principals, access keys and grants
 * (kms/principals.h).
 */
#include "clients/lib/client_internal.h"

#include <kms/principals.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/error.h"

/* ---- names ---- */

static const char *const principal_states[] = { "PRINCIPAL_STATE_UNSPECIFIED", "ENABLED",
	                                        "DISABLED", "DELETED" };
static const char *const access_key_states[] = { "ACCESS_KEY_STATE_UNSPECIFIED", "ACTIVE",
	                                         "REVOKED" };
static const char *const grant_states[] = { "GRANT_STATE_UNSPECIFIED", "LIVE", "RETIRED",
	                                    "REVOKED" };

#define NAME_OF(table, value)                                                  \
	((unsigned)(value) < sizeof(table) / sizeof((table)[0]) ? (table)[value] : "UNKNOWN")

const char *kms_principal_state_name(kms_principal_state state)
{
	return NAME_OF(principal_states, state);
}

const char *kms_access_key_state_name(kms_access_key_state state)
{
	return NAME_OF(access_key_states, state);
}

const char *kms_grant_state_name(kms_grant_state state)
{
	return NAME_OF(grant_states, state);
}

static const struct {
	unsigned bit;
	const char *name;
	Kms__Role wire;
} roles[] = {
	{ KMS_ROLE_ADMIN, "admin", KMS__ROLE__ADMIN },
	{ KMS_ROLE_APP, "app", KMS__ROLE__APP },
	{ KMS_ROLE_AUDITOR, "auditor", KMS__ROLE__AUDITOR },
};
#define N_ROLES (sizeof roles / sizeof roles[0])

const char *kms_role_name(unsigned role)
{
	for (size_t i = 0; i < N_ROLES; i++)
		if (roles[i].bit == role)
			return roles[i].name;
	return NULL;
}

kms_status kms_role_parse(const char *name, unsigned *role)
{
	for (size_t i = 0; name && i < N_ROLES; i++)
		if (!strcasecmp(roles[i].name, name)) {
			*role = roles[i].bit;
			return KMS_OK;
		}
	return KMS_INVALID_ARGUMENT;
}

/* ---- copies out of a reply ---- */

static kms_status copy_text(char *dst, size_t cap, const char *src, const char *op,
                            kms_error *err)
{
	if (!src || strlen(src) >= cap)
		return client_protocol_error(err, op, "a name longer than the protocol allows");
	memcpy(dst, src, strlen(src) + 1);
	return KMS_OK;
}

static kms_status principal_from(const Kms__Principal *p, const char *op, kms_principal *out,
                                 kms_error *err)
{
	memset(out, 0, sizeof *out);
	if (!p)
		return client_protocol_error(err, op, "no principal");
	KMS_GUARD(copy_text(out->name, sizeof out->name, p->name, op, err));
	KMS_GUARD(copy_text(out->cert_name, sizeof out->cert_name, p->cert_name, op, err));
	for (size_t i = 0; i < p->n_roles; i++)
		for (size_t r = 0; r < N_ROLES; r++)
			if ((int)p->roles[i] == (int)roles[r].wire)
				out->roles |= roles[r].bit;
	out->state = (kms_principal_state)p->state;
	out->created_at = p->created_at;
	out->updated_at = p->updated_at;
	return KMS_OK;
}

static kms_status access_key_from(const Kms__AccessKey *k, const char *op, kms_access_key *out,
                                  kms_error *err)
{
	memset(out, 0, sizeof *out);
	if (!k)
		return client_protocol_error(err, op, "no access key");
	KMS_GUARD(copy_text(out->access_key_id, sizeof out->access_key_id, k->access_key_id, op,
	                    err));
	KMS_GUARD(copy_text(out->principal, sizeof out->principal, k->principal, op, err));
	out->state = (kms_access_key_state)k->state;
	out->created_at = k->created_at;
	out->revoked_at = k->revoked_at;
	return KMS_OK;
}

void kms_grant_free(kms_grant *grant)
{
	if (!grant)
		return;
	for (size_t i = 0; grant->operations && i < grant->n_operations; i++)
		free(grant->operations[i]);
	free(grant->operations);
	for (size_t i = 0; grant->context && i < grant->n_context; i++) {
		free(grant->context[i].key);
		free(grant->context[i].value);
	}
	free(grant->context);
	memset(grant, 0, sizeof *grant);
}

static kms_status grant_from(const Kms__Grant *g, const char *op, kms_grant *out, kms_error *err)
{
	kms_status st = KMS_OK;
	memset(out, 0, sizeof *out);
	if (!g)
		return client_protocol_error(err, op, "no grant");
	KMS_GUARD_OUT(st, copy_text(out->grant_id, sizeof out->grant_id, g->grant_id, op, err));
	KMS_GUARD_OUT(st, copy_text(out->key_id, sizeof out->key_id, g->key_id, op, err));
	KMS_GUARD_OUT(st, copy_text(out->grantee, sizeof out->grantee, g->grantee, op, err));
	KMS_GUARD_OUT(st, copy_text(out->creator, sizeof out->creator, g->creator, op, err));
	out->operations = calloc(g->n_operations + 1, sizeof *out->operations);
	out->context = calloc(g->n_context + 1, sizeof *out->context);
	if (!out->operations || !out->context) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < g->n_operations; i++) {
		KMS_GUARD_OUT(st, client_dup_str(g->operations[i], &out->operations[i], err));
		out->n_operations++;
	}
	for (size_t i = 0; i < g->n_context; i++) {
		if (!g->context[i]) {
			st = client_protocol_error(err, op, "an empty context pair");
			goto out;
		}
		out->n_context++;
		KMS_GUARD_OUT(st, client_dup_str(g->context[i]->key, &out->context[i].key, err));
		KMS_GUARD_OUT(st, client_dup_str(g->context[i]->value, &out->context[i].value, err));
	}
	out->state = (kms_grant_state)g->state;
	out->created_at = g->created_at;
	out->ended_at = g->ended_at;
out:
	if (st != KMS_OK)
		kms_grant_free(out);
	return st;
}

/* ---- principals ---- */

kms_status kms_create_principal(kms_client *client, const char *name, unsigned role_bits,
                                const char *cert_name, kms_principal *out, kms_error *err)
{
	Kms__Request req;
	Kms__CreatePrincipalRequest op;
	Kms__Response *resp = NULL;
	Kms__Role wire[N_ROLES];

	client_error_clear(err);
	if (out)
		memset(out, 0, sizeof *out);
	KMS_GUARD(client_need(name, "create_principal", "a principal name", err));
	if (!role_bits || (role_bits & ~(KMS_ROLE_ADMIN | KMS_ROLE_APP | KMS_ROLE_AUDITOR)))
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "create_principal: give one or more of admin, app, auditor");
	kms__request__init(&req);
	kms__create_principal_request__init(&op);
	op.name = client_lend(name);
	op.roles = wire;
	for (size_t i = 0; i < N_ROLES; i++)
		if (role_bits & roles[i].bit)
			wire[op.n_roles++] = roles[i].wire;
	if (cert_name)
		op.cert_name = client_lend(cert_name);
	req.op_case = KMS__REQUEST__OP_CREATE_PRINCIPAL;
	req.create_principal = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_CREATE_PRINCIPAL, &resp,
	                           err));
	kms_status st = KMS_OK;
	if (out)
		st = principal_from(resp->create_principal->principal, "create_principal", out, err);
	kms_response_free(resp);
	return st;
}

kms_status kms_describe_principal(kms_client *client, const char *name, kms_principal *out,
                                  kms_error *err)
{
	Kms__Request req;
	Kms__DescribePrincipalRequest op;
	Kms__Response *resp = NULL;

	KMS_GUARD(client_begin(out, sizeof *out, "describe_principal", err));
	KMS_GUARD(client_need(name, "describe_principal", "a principal name", err));
	kms__request__init(&req);
	kms__describe_principal_request__init(&op);
	op.name = client_lend(name);
	req.op_case = KMS__REQUEST__OP_DESCRIBE_PRINCIPAL;
	req.describe_principal = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_DESCRIBE_PRINCIPAL, &resp,
	                           err));
	kms_status st = principal_from(resp->describe_principal->principal, "describe_principal",
	                               out, err);
	kms_response_free(resp);
	return st;
}

void kms_principal_list_free(kms_principal_list *list)
{
	if (!list)
		return;
	free(list->principals);
	free(list->next_page_token);
	memset(list, 0, sizeof *list);
}

kms_status kms_list_principals(kms_client *client, uint32_t limit, const char *page_token,
                               kms_principal_list *out, kms_error *err)
{
	Kms__Request req;
	Kms__ListPrincipalsRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(client_begin(out, sizeof *out, "list_principals", err));
	kms__request__init(&req);
	kms__list_principals_request__init(&op);
	op.limit = limit;
	if (page_token)
		op.page_token = client_lend(page_token);
	req.op_case = KMS__REQUEST__OP_LIST_PRINCIPALS;
	req.list_principals = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_LIST_PRINCIPALS, &resp,
	                           err));
	const Kms__ListPrincipalsResponse *r = resp->list_principals;
	KMS_GUARD_OUT(st, client_dup_str(r->next_page_token, &out->next_page_token, err));
	out->principals = calloc(r->n_principals + 1, sizeof *out->principals);
	if (!out->principals) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < r->n_principals; i++) {
		KMS_GUARD_OUT(st, principal_from(r->principals[i], "list_principals",
		                                 &out->principals[i], err));
		out->n_principals++;
	}
out:
	if (st != KMS_OK)
		kms_principal_list_free(out);
	kms_response_free(resp);
	return st;
}

/* The calls whose message is one string field and whose answer is empty. */
#define NAMED_CALL(fn, member, field, UPPER, Type)                                        \
	kms_status fn(kms_client *client, const char *value, kms_error *err)              \
	{                                                                                 \
		Kms__Request req;                                                         \
		Type op;                                                                  \
		Kms__Response *resp = NULL;                                               \
		client_error_clear(err);                                                  \
		KMS_GUARD(client_need(value, #member, "a name or id", err));              \
		kms__request__init(&req);                                                 \
		kms__##member##_request__init(&op);                                       \
		op.field = client_lend(value);                                            \
		req.op_case = KMS__REQUEST__OP_##UPPER;                                   \
		req.member = &op;                                                         \
		KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_##UPPER,   \
		                           &resp, err));                                  \
		kms_response_free(resp);                                                  \
		return KMS_OK;                                                            \
	}

NAMED_CALL(kms_enable_principal, enable_principal, name, ENABLE_PRINCIPAL,
           Kms__EnablePrincipalRequest)
NAMED_CALL(kms_disable_principal, disable_principal, name, DISABLE_PRINCIPAL,
           Kms__DisablePrincipalRequest)
NAMED_CALL(kms_delete_principal, delete_principal, name, DELETE_PRINCIPAL,
           Kms__DeletePrincipalRequest)
NAMED_CALL(kms_revoke_access_key, revoke_access_key, access_key_id, REVOKE_ACCESS_KEY,
           Kms__RevokeAccessKeyRequest)
NAMED_CALL(kms_retire_grant, retire_grant, grant_id, RETIRE_GRANT, Kms__RetireGrantRequest)
NAMED_CALL(kms_revoke_grant, revoke_grant, grant_id, REVOKE_GRANT, Kms__RevokeGrantRequest)

/* ---- access keys ---- */

kms_status kms_create_access_key(kms_client *client, const char *principal, kms_access_key *key,
                                 uint8_t **secret, kms_error *err)
{
	Kms__Request req;
	Kms__CreateAccessKeyRequest op;
	Kms__Response *resp = NULL;
	kms_status st = KMS_OK;
	size_t len = 0;

	client_error_clear(err);
	if (key)
		memset(key, 0, sizeof *key);
	if (!secret)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "create_access_key: secret is required");
	*secret = NULL;
	KMS_GUARD(client_need(principal, "create_access_key", "a principal name", err));
	kms__request__init(&req);
	kms__create_access_key_request__init(&op);
	op.principal = client_lend(principal);
	req.op_case = KMS__REQUEST__OP_CREATE_ACCESS_KEY;
	req.create_access_key = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_CREATE_ACCESS_KEY, &resp,
	                           err));
	const Kms__CreateAccessKeyResponse *r = resp->create_access_key;
	if (r->secret.len != KMS_ACCESS_KEY_SECRET_LEN) {
		st = client_protocol_error(err, "create_access_key", "a secret that is not 32 bytes");
		goto out;
	}
	if (key)
		KMS_GUARD_OUT(st, access_key_from(r->access_key, "create_access_key", key, err));
	KMS_GUARD_OUT(st, client_dup_secret(r->secret, secret, &len, err));
out:
	if (st != KMS_OK && key)
		memset(key, 0, sizeof *key);
	kms_response_free(resp); /* wipes the reply, secret included */
	return st;
}

void kms_access_key_list_free(kms_access_key_list *list)
{
	if (!list)
		return;
	free(list->access_keys);
	free(list->next_page_token);
	memset(list, 0, sizeof *list);
}

kms_status kms_list_access_keys(kms_client *client, const char *principal, uint32_t limit,
                                const char *page_token, kms_access_key_list *out,
                                kms_error *err)
{
	Kms__Request req;
	Kms__ListAccessKeysRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(client_begin(out, sizeof *out, "list_access_keys", err));
	KMS_GUARD(client_need(principal, "list_access_keys", "a principal name", err));
	kms__request__init(&req);
	kms__list_access_keys_request__init(&op);
	op.principal = client_lend(principal);
	op.limit = limit;
	if (page_token)
		op.page_token = client_lend(page_token);
	req.op_case = KMS__REQUEST__OP_LIST_ACCESS_KEYS;
	req.list_access_keys = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_LIST_ACCESS_KEYS, &resp,
	                           err));
	const Kms__ListAccessKeysResponse *r = resp->list_access_keys;
	KMS_GUARD_OUT(st, client_dup_str(r->next_page_token, &out->next_page_token, err));
	out->access_keys = calloc(r->n_access_keys + 1, sizeof *out->access_keys);
	if (!out->access_keys) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < r->n_access_keys; i++) {
		KMS_GUARD_OUT(st, access_key_from(r->access_keys[i], "list_access_keys",
		                                  &out->access_keys[i], err));
		out->n_access_keys++;
	}
out:
	if (st != KMS_OK)
		kms_access_key_list_free(out);
	kms_response_free(resp);
	return st;
}

/* ---- grants ---- */

kms_status kms_create_grant(kms_client *client, const kms_create_grant_params *params,
                            kms_grant *out, kms_error *err)
{
	client_arena arena = { 0 };
	Kms__Request req;
	Kms__CreateGrantRequest op;
	Kms__Response *resp = NULL;
	kms_status st = KMS_OK;

	client_error_clear(err);
	if (out)
		memset(out, 0, sizeof *out);
	if (!params)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "create_grant: params is required");
	KMS_GUARD(client_need(params->key_id, "create_grant", "a key id or alias", err));
	KMS_GUARD(client_need(params->grantee, "create_grant", "a grantee", err));
	if (!params->operations || params->n_operations == 0)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "create_grant: give at least one operation");
	for (size_t i = 0; i < params->n_operations; i++)
		KMS_GUARD(client_need(params->operations[i], "create_grant", "operation names", err));
	kms__request__init(&req);
	kms__create_grant_request__init(&op);
	op.key_id = client_lend(params->key_id);
	op.grantee = client_lend(params->grantee);
	op.operations = (char **)(uintptr_t)params->operations;
	op.n_operations = params->n_operations;
	KMS_GUARD_OUT(st, client_pairs(params->context, params->n_context, "context", &arena,
	                               &op.context, &op.n_context, err));
	req.op_case = KMS__REQUEST__OP_CREATE_GRANT;
	req.create_grant = &op;
	KMS_GUARD_OUT(st, client_roundtrip(client, &req, KMS__RESPONSE__RESULT_CREATE_GRANT, &resp,
	                                   err));
	if (out)
		st = grant_from(resp->create_grant->grant, "create_grant", out, err);
out:
	kms_response_free(resp);
	client_arena_free(&arena);
	return st;
}

void kms_grant_list_free(kms_grant_list *list)
{
	if (!list)
		return;
	for (size_t i = 0; list->grants && i < list->n_grants; i++)
		kms_grant_free(&list->grants[i]);
	free(list->grants);
	free(list->next_page_token);
	memset(list, 0, sizeof *list);
}

kms_status kms_list_grants(kms_client *client, const char *key_id, const char *grantee,
                           uint32_t limit, const char *page_token, kms_grant_list *out,
                           kms_error *err)
{
	Kms__Request req;
	Kms__ListGrantsRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(client_begin(out, sizeof *out, "list_grants", err));
	if (!(key_id && key_id[0]) && !(grantee && grantee[0]))
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "list_grants: give a key, a grantee or both");
	kms__request__init(&req);
	kms__list_grants_request__init(&op);
	if (key_id)
		op.key_id = client_lend(key_id);
	if (grantee)
		op.grantee = client_lend(grantee);
	op.limit = limit;
	if (page_token)
		op.page_token = client_lend(page_token);
	req.op_case = KMS__REQUEST__OP_LIST_GRANTS;
	req.list_grants = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_LIST_GRANTS, &resp, err));
	const Kms__ListGrantsResponse *r = resp->list_grants;
	KMS_GUARD_OUT(st, client_dup_str(r->next_page_token, &out->next_page_token, err));
	out->grants = calloc(r->n_grants + 1, sizeof *out->grants);
	if (!out->grants) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < r->n_grants; i++) {
		KMS_GUARD_OUT(st, grant_from(r->grants[i], "list_grants", &out->grants[i], err));
		out->n_grants++;
	}
out:
	if (st != KMS_OK)
		kms_grant_list_free(out);
	kms_response_free(resp);
	return st;
}
