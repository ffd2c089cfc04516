/*
 * op_principals.c: CreatePrincipal, ListPrincipals, DescribePrincipal,
 * Enable/Disable/DeletePrincipal, CreateAccessKey, ListAccessKeys,
 * RevokeAccessKey (docs/authorization.md, "Principals").
 *
 * The rules that need one transaction (names never reused, at most two
 * active access keys, a deletion revoking keys and grants) are the store's;
 * a new access key's secret comes from authz_secrets_new on this worker's
 * HSM session and is stored only wrapped. The secret goes into the reply
 * (arena memory, wiped after the reply is packed) and nowhere else: not the
 * audit entry, not a log line, not an error message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kms/secmem.h>

#include "common/error.h"
#include "kms/authz/authz_secrets.h"
#include "kms/keys/keyring.h"
#include "kms/pipeline/ops.h"
#include "kms/store/store.h"

/* A principal's access keys are listed from one read of at most this many
 * (a principal has at most two active keys; the rest are revoked ones). */
#define OP_ACCESS_KEYS_SCAN_MAX 10000

static store *op_store(op_ctx *ctx)
{
	return keyring_store(ctx->d->keyring);
}

static uint32_t roles_from_wire(const Kms__CreatePrincipalRequest *r)
{
	uint32_t roles = 0;
	for (size_t i = 0; i < r->n_roles; i++)
		switch (r->roles[i]) {
		case KMS__ROLE__ADMIN: roles |= PRINCIPAL_ROLE_ADMIN; break;
		case KMS__ROLE__APP: roles |= PRINCIPAL_ROLE_APP; break;
		case KMS__ROLE__AUDITOR: roles |= PRINCIPAL_ROLE_AUDITOR; break;
		default: break; /* the validator refused it */
		}
	return roles;
}

static Kms__PrincipalState state_to_wire(principal_state s)
{
	switch (s) {
	case PRINCIPAL_STATE_ENABLED: return KMS__PRINCIPAL_STATE__PRINCIPAL_ENABLED;
	case PRINCIPAL_STATE_DISABLED: return KMS__PRINCIPAL_STATE__PRINCIPAL_DISABLED;
	case PRINCIPAL_STATE_DELETED: return KMS__PRINCIPAL_STATE__PRINCIPAL_DELETED;
	}
	return KMS__PRINCIPAL_STATE__PRINCIPAL_STATE_UNSPECIFIED;
}

static kms_status principal_out(op_ctx *ctx, const store_principal *p, Kms__Principal **out)
{
	Kms__Principal *w;
	OP_ALLOC(ctx, w);
	kms__principal__init(w);
	w->name = arena_strdup(ctx->arena, p->name);
	w->cert_name = arena_strdup(ctx->arena, p->cert_name);
	w->roles = arena_alloc(ctx->arena, 3 * sizeof *w->roles);
	KMS_ENSURE(w->name && w->cert_name && w->roles, KMS_INTERNAL, "out of request memory");
	static const struct { uint32_t bit; Kms__Role wire; } map[] = {
		{ PRINCIPAL_ROLE_ADMIN, KMS__ROLE__ADMIN },
		{ PRINCIPAL_ROLE_APP, KMS__ROLE__APP },
		{ PRINCIPAL_ROLE_AUDITOR, KMS__ROLE__AUDITOR },
	};
	for (size_t i = 0; i < 3; i++)
		if (p->roles & map[i].bit)
			w->roles[w->n_roles++] = map[i].wire;
	w->state = state_to_wire(p->state);
	w->created_at = p->created_at;
	w->updated_at = p->updated_at;
	*out = w;
	return KMS_OK;
}

static kms_status access_key_out(op_ctx *ctx, const store_access_key *k, Kms__AccessKey **out)
{
	Kms__AccessKey *w;
	OP_ALLOC(ctx, w);
	kms__access_key__init(w);
	w->access_key_id = arena_strdup(ctx->arena, k->id);
	w->principal = arena_strdup(ctx->arena, k->principal);
	KMS_ENSURE(w->access_key_id && w->principal, KMS_INTERNAL, "out of request memory");
	w->state = k->state == ACCESS_KEY_STATE_ACTIVE ? KMS__ACCESS_KEY_STATE__ACCESS_KEY_ACTIVE
	                                               : KMS__ACCESS_KEY_STATE__ACCESS_KEY_REVOKED;
	w->created_at = k->created_at;
	w->revoked_at = k->revoked_at;
	*out = w;
	return KMS_OK;
}

/* The store's NOT_FOUND and ALREADY_EXISTS, as one line a user can act on. */
static kms_status principal_missing(kms_status st, const char *name)
{
	if (st == KMS_NOT_FOUND)
		return KMS_FAIL(KMS_NOT_FOUND, "principal %s does not exist (or was deleted): "
		                "kms-admin principal list shows the principals", name);
	return st;
}

kms_status op_create_principal(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__CreatePrincipalRequest *r = req->create_principal;
	Kms__CreatePrincipalResponse *c;
	OP_ALLOC(ctx, c);
	kms__create_principal_response__init(c);
	store_principal p = { .roles = roles_from_wire(r), .state = PRINCIPAL_STATE_ENABLED,
	                      .created_at = ctx->now, .updated_at = ctx->now };
	snprintf(p.name, sizeof p.name, "%s", r->name);
	snprintf(p.cert_name, sizeof p.cert_name, "%s", r->cert_name);
	kms_status st = store_principal_create(op_store(ctx), &p);
	if (st == KMS_ALREADY_EXISTS)
		return KMS_FAIL(KMS_ALREADY_EXISTS, "principal %s exists or existed (names of "
		                "deleted principals are never reused): choose another name", p.name);
	KMS_GUARD(st);
	KMS_GUARD(principal_out(ctx, &p, &c->principal));
	resp->create_principal = c;
	resp->result_case = KMS__RESPONSE__RESULT_CREATE_PRINCIPAL;
	return KMS_OK;
}

kms_status op_describe_principal(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const char *name = req->describe_principal->name;
	Kms__DescribePrincipalResponse *d;
	OP_ALLOC(ctx, d);
	kms__describe_principal_response__init(d);
	store_principal p;
	KMS_GUARD(principal_missing(store_principal_get(op_store(ctx), name, &p), name));
	KMS_GUARD(principal_out(ctx, &p, &d->principal));
	resp->describe_principal = d;
	resp->result_case = KMS__RESPONSE__RESULT_DESCRIBE_PRINCIPAL;
	return KMS_OK;
}

kms_status op_list_principals(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__ListPrincipalsRequest *r = req->list_principals;
	size_t limit = r->limit ? r->limit : KEYRING_LIST_LIMIT_DEFAULT;
	store_principal *ps = NULL;
	size_t n = 0;
	Kms__ListPrincipalsResponse *l;
	OP_ALLOC(ctx, l);
	kms__list_principals_response__init(l);
	/* One more than the page, to know whether there is a next one. */
	KMS_GUARD(store_principal_list(op_store(ctx), r->page_token, limit + 1, &ps, &n));
	kms_status st = KMS_OK;
	l->principals = arena_alloc(ctx->arena, (n + 1) * sizeof *l->principals);
	l->next_page_token = arena_strdup(ctx->arena, "");
	if (!l->principals || !l->next_page_token)
		st = KMS_FAIL(KMS_INTERNAL, "out of request memory");
	/* A page ends at limit, or early past KMS_LIST_REPLY_BUDGET bytes
	 * (always at least one): the next starts after its last name. */
	size_t bytes = 0;
	for (size_t i = 0; st == KMS_OK && i < n; i++) {
		if (i == limit || (i > 0 && bytes > KMS_LIST_REPLY_BUDGET)) {
			l->next_page_token = arena_strdup(ctx->arena, ps[i - 1].name);
			if (!l->next_page_token)
				st = KMS_FAIL(KMS_INTERNAL, "out of request memory");
			break;
		}
		st = principal_out(ctx, &ps[i], &l->principals[i]);
		if (st != KMS_OK)
			break;
		bytes += kms__principal__get_packed_size(l->principals[i]) + 6;
		l->n_principals++;
	}
	free(ps);
	KMS_GUARD(st);
	resp->list_principals = l;
	resp->result_case = KMS__RESPONSE__RESULT_LIST_PRINCIPALS;
	return KMS_OK;
}

static kms_status set_state(op_ctx *ctx, const char *name, principal_state state)
{
	return principal_missing(store_principal_set_state(op_store(ctx), name, state, ctx->now),
	                         name);
}

kms_status op_enable_principal(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	Kms__EnablePrincipalResponse *e;
	OP_ALLOC(ctx, e);
	kms__enable_principal_response__init(e);
	KMS_GUARD(set_state(ctx, req->enable_principal->name, PRINCIPAL_STATE_ENABLED));
	resp->enable_principal = e;
	resp->result_case = KMS__RESPONSE__RESULT_ENABLE_PRINCIPAL;
	return KMS_OK;
}

kms_status op_disable_principal(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	Kms__DisablePrincipalResponse *e;
	OP_ALLOC(ctx, e);
	kms__disable_principal_response__init(e);
	KMS_GUARD(set_state(ctx, req->disable_principal->name, PRINCIPAL_STATE_DISABLED));
	resp->disable_principal = e;
	resp->result_case = KMS__RESPONSE__RESULT_DISABLE_PRINCIPAL;
	return KMS_OK;
}

kms_status op_delete_principal(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const char *name = req->delete_principal->name;
	Kms__DeletePrincipalResponse *e;
	OP_ALLOC(ctx, e);
	kms__delete_principal_response__init(e);
	/* The store revokes its access keys and live grants in the same
	 * transaction and keeps the name as a tombstone. */
	KMS_GUARD(principal_missing(store_principal_delete(op_store(ctx), name, ctx->now), name));
	resp->delete_principal = e;
	resp->result_case = KMS__RESPONSE__RESULT_DELETE_PRINCIPAL;
	return KMS_OK;
}

kms_status op_create_access_key(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const char *principal = req->create_access_key->principal;
	Kms__CreateAccessKeyResponse *c;
	OP_ALLOC(ctx, c);
	kms__create_access_key_response__init(c);
	store_principal p;
	KMS_GUARD(principal_missing(store_principal_get(op_store(ctx), principal, &p), principal));

	store_access_key k = { .state = ACCESS_KEY_STATE_ACTIVE, .created_at = ctx->now,
	                       .wrapped_len = AUTHZ_WRAPPED_LEN };
	snprintf(k.principal, sizeof k.principal, "%s", p.name);
	uint8_t *secret = NULL;
	KMS_GUARD(authz_secrets_new(ctx->d->hsm, k.principal, k.id, &secret, k.wrapped));
	kms_status st = store_access_key_create(op_store(ctx), &k);
	if (st == KMS_FAILED_PRECONDITION)
		st = KMS_FAIL(KMS_FAILED_PRECONDITION, "principal %s already has %d active access "
		              "keys: revoke one first (kms-admin access-key revoke ID)", k.principal,
		              STORE_ACCESS_KEYS_ACTIVE_MAX);
	else if (st == KMS_NOT_FOUND)
		st = principal_missing(st, k.principal);
	if (st == KMS_OK) {
		c->secret.data = arena_memdup(ctx->arena, secret, AUTHZ_SECRET_LEN);
		c->secret.len = AUTHZ_SECRET_LEN;
		if (!c->secret.data)
			st = KMS_FAIL(KMS_INTERNAL, "out of request memory");
	}
	kms_secure_free(secret);
	KMS_GUARD(st);
	KMS_GUARD(access_key_out(ctx, &k, &c->access_key));
	resp->create_access_key = c;
	resp->result_case = KMS__RESPONSE__RESULT_CREATE_ACCESS_KEY;
	return KMS_OK;
}

kms_status op_list_access_keys(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__ListAccessKeysRequest *r = req->list_access_keys;
	size_t limit = r->limit ? r->limit : KEYRING_LIST_LIMIT_DEFAULT;
	store_access_key *keys = NULL;
	size_t n = 0;
	Kms__ListAccessKeysResponse *l;
	OP_ALLOC(ctx, l);
	kms__list_access_keys_response__init(l);
	KMS_GUARD(store_access_key_list(op_store(ctx), r->principal, OP_ACCESS_KEYS_SCAN_MAX,
	                                &keys, &n));
	kms_status st = KMS_OK;
	if (n == 0) {
		/* No key: an existing principal has none; else it does not exist. */
		store_principal p;
		st = principal_missing(store_principal_get(op_store(ctx), r->principal, &p),
		                       r->principal);
	}
	size_t first = 0;
	if (st == KMS_OK && r->page_token[0]) {
		while (first < n && strcmp(keys[first].id, r->page_token))
			first++;
		if (first == n)
			st = KMS_FAIL(KMS_INVALID_ARGUMENT, "page_token is not one this daemon issued");
		first++;
	}
	if (st == KMS_OK) {
		l->access_keys = arena_alloc(ctx->arena, (limit + 1) * sizeof *l->access_keys);
		l->next_page_token = arena_strdup(ctx->arena, "");
		if (!l->access_keys || !l->next_page_token)
			st = KMS_FAIL(KMS_INTERNAL, "out of request memory");
	}
	for (size_t i = first; st == KMS_OK && i < n; i++) {
		if (l->n_access_keys == limit) {
			l->next_page_token = arena_strdup(ctx->arena, keys[i - 1].id);
			if (!l->next_page_token)
				st = KMS_FAIL(KMS_INTERNAL, "out of request memory");
			break;
		}
		st = access_key_out(ctx, &keys[i], &l->access_keys[l->n_access_keys]);
		if (st == KMS_OK)
			l->n_access_keys++;
	}
	free(keys);
	KMS_GUARD(st);
	resp->list_access_keys = l;
	resp->result_case = KMS__RESPONSE__RESULT_LIST_ACCESS_KEYS;
	return KMS_OK;
}

kms_status op_revoke_access_key(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const char *id = req->revoke_access_key->access_key_id;
	Kms__RevokeAccessKeyResponse *v;
	OP_ALLOC(ctx, v);
	kms__revoke_access_key_response__init(v);
	kms_status st = store_access_key_revoke(op_store(ctx), id, ctx->now);
	if (st == KMS_NOT_FOUND)
		return KMS_FAIL(KMS_NOT_FOUND, "access key %s does not exist: kms-admin access-key "
		                "list PRINCIPAL shows a principal's keys", id);
	if (st == KMS_FAILED_PRECONDITION)
		return KMS_FAIL(KMS_FAILED_PRECONDITION, "access key %s is already revoked", id);
	KMS_GUARD(st);
	resp->revoke_access_key = v;
	resp->result_case = KMS__RESPONSE__RESULT_REVOKE_ACCESS_KEY;
	return KMS_OK;
}
