/*
 * op_grants.c: CreateGrant, ListGrants, RetireGrant, RevokeGrant
 * (docs/authorization.md, "Grants").
 *
 * A grant names a key by its id (an alias given at creation is resolved
 * once), a grantee, data-plane operations (the validator checked them) and
 * required context pairs (stored canonically encoded). Who may create a
 * grant is decided like the key control plane: the admin role, and the
 * key's policy allowing create_grant (op_authorize_ref on the key). Who may
 * list and revoke is the decision's (admins, by role: revoking only takes
 * use away); who may retire is checked here: the grantee itself or a
 * principal holding the admin role.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kms/authz/authz_secrets.h"
#include "common/context.h"
#include "kms/keys/keyring.h"
#include "kms/pipeline/ops.h"
#include "kms/store/store.h"

static store *op_store(op_ctx *ctx)
{
	return keyring_store(ctx->d->keyring);
}

static Kms__GrantState state_to_wire(grant_state s)
{
	switch (s) {
	case GRANT_STATE_LIVE: return KMS__GRANT_STATE__GRANT_LIVE;
	case GRANT_STATE_RETIRED: return KMS__GRANT_STATE__GRANT_RETIRED;
	case GRANT_STATE_REVOKED: return KMS__GRANT_STATE__GRANT_REVOKED;
	}
	return KMS__GRANT_STATE__GRANT_STATE_UNSPECIFIED;
}

static char *arena_strndup(arena *a, const char *s, size_t len)
{
	char *out = arena_alloc(a, len + 1);
	if (out) {
		memcpy(out, s, len);
		out[len] = '\0';
	}
	return out;
}

static kms_status grant_out(op_ctx *ctx, const store_grant *g, Kms__Grant **out)
{
	Kms__Grant *w;
	OP_ALLOC(ctx, w);
	kms__grant__init(w);
	w->grant_id = arena_strdup(ctx->arena, g->id);
	w->key_id = arena_strdup(ctx->arena, g->key_id);
	w->grantee = arena_strdup(ctx->arena, g->grantee);
	w->creator = arena_strdup(ctx->arena, g->creator);
	w->operations = arena_alloc(ctx->arena, STORE_GRANT_OPS_MAX * sizeof *w->operations);
	KMS_ENSURE(w->grant_id && w->key_id && w->grantee && w->creator && w->operations,
	           KMS_INTERNAL, "out of request memory");
	/* The canonical list: names joined by ','. */
	for (const char *p = g->operations; *p && w->n_operations < STORE_GRANT_OPS_MAX;) {
		size_t len = strcspn(p, ",");
		w->operations[w->n_operations] = arena_strndup(ctx->arena, p, len);
		KMS_ENSURE(w->operations[w->n_operations], KMS_INTERNAL, "out of request memory");
		w->n_operations++;
		p += len;
		if (*p == ',')
			p++;
	}
	context_pair pairs[KMS_CONTEXT_MAX_PAIRS];
	size_t n = 0;
	KMS_ENSURE(context_decode(g->context, g->context_len, pairs, &n) == KMS_OK, KMS_INTERNAL,
	           "grant %s: its stored context does not parse", g->id);
	w->context = arena_alloc(ctx->arena, (n + 1) * sizeof *w->context);
	KMS_ENSURE(w->context, KMS_INTERNAL, "out of request memory");
	for (size_t i = 0; i < n; i++) {
		Kms__StringPair *sp;
		OP_ALLOC(ctx, sp);
		kms__string_pair__init(sp);
		sp->key = arena_strndup(ctx->arena, pairs[i].key, pairs[i].key_len);
		sp->value = arena_strndup(ctx->arena, pairs[i].value ? pairs[i].value : "",
		                          pairs[i].value_len);
		KMS_ENSURE(sp->key && sp->value, KMS_INTERNAL, "out of request memory");
		w->context[w->n_context++] = sp;
	}
	w->state = state_to_wire(g->state);
	w->created_at = g->created_at;
	w->ended_at = g->ended_at;
	*out = w;
	return KMS_OK;
}

static kms_status key_missing(const char *key_ref)
{
	return KMS_FAIL(KMS_NOT_FOUND, "key %s does not exist: kms-admin key list shows the keys",
	                key_ref);
}

/* The key a grant request names, resolved (aliases followed); NOT_FOUND for
 * an unknown or destroyed key. */
static kms_status grant_key(op_ctx *ctx, const char *key_ref, store_key *k)
{
	kms_status st = keyring_resolve(ctx->d->keyring, key_ref, k);
	if (st == KMS_OK && (k->state == KEY_STATE_DESTROYED ||
	                     k->lifecycle != KEY_LIFECYCLE_READY))
		st = KMS_NOT_FOUND;
	return st == KMS_NOT_FOUND ? key_missing(key_ref) : st;
}

kms_status op_create_grant(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__CreateGrantRequest *r = req->create_grant;
	Kms__CreateGrantResponse *c;
	OP_ALLOC(ctx, c);
	kms__create_grant_response__init(c);
	/* The key check first, as for every key control-plane change: the
	 * admin role and the key's policy allowing create_grant. */
	char key_id[KMS_KEYID_TEXT_SIZE];
	kms_status decided = op_authorize_ref(ctx, r->key_id, NULL, 0, key_id);
	if (decided == KMS_NOT_FOUND)
		return key_missing(r->key_id);
	KMS_GUARD(decided);
	store_key k;
	KMS_GUARD(grant_key(ctx, key_id, &k));
	KMS_ENSURE(k.state != KEY_STATE_PENDING_DELETION, KMS_FAILED_PRECONDITION,
	           "key %s is pending deletion: cancel the deletion before granting on it", k.id);
	store_principal grantee;
	if (store_principal_get(op_store(ctx), r->grantee, &grantee) != KMS_OK)
		return KMS_FAIL(KMS_NOT_FOUND, "grantee %s is not a principal (or was deleted): "
		                "kms-admin principal list shows the principals", r->grantee);

	store_grant *g = malloc(sizeof *g); /* ~6 KiB: not on a worker's stack */
	KMS_ENSURE(g, KMS_INTERNAL, "out of memory");
	memset(g, 0, sizeof *g);
	kms_status st = store_grant_ops_join((const char *const *)r->operations, r->n_operations,
	                                     g->operations);
	context_pair pairs[KMS_CONTEXT_MAX_PAIRS];
	if (st == KMS_OK)
		st = context_check_count(r->n_context);
	for (size_t i = 0; st == KMS_OK && i < r->n_context; i++)
		pairs[i] = context_pair_from_cstr(r->context[i]->key, r->context[i]->value);
	if (st == KMS_OK && context_encode(pairs, r->n_context, g->context, sizeof g->context,
	                                   &g->context_len) != KMS_OK)
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "context: its canonical encoding is over %d "
		              "bytes: require fewer or shorter pairs", STORE_GRANT_CONTEXT_MAX);
	if (st == KMS_OK)
		st = authz_secrets_grant_id(ctx->d->hsm, g->id);
	if (st == KMS_OK) {
		snprintf(g->key_id, sizeof g->key_id, "%s", k.id);
		snprintf(g->grantee, sizeof g->grantee, "%s", grantee.name);
		snprintf(g->creator, sizeof g->creator, "%s", ctx->caller->principal);
		g->state = GRANT_STATE_LIVE;
		g->created_at = ctx->now;
		st = store_grant_create(op_store(ctx), g);
		if (st == KMS_FAILED_PRECONDITION)
			st = KMS_FAIL(KMS_FAILED_PRECONDITION, "principal %s already has %d live "
			              "grants on key %s: retire or revoke one first", g->grantee,
			              STORE_GRANTS_LIVE_MAX, k.id);
	}
	if (st == KMS_OK)
		st = grant_out(ctx, g, &c->grant);
	free(g);
	KMS_GUARD(st);
	resp->create_grant = c;
	resp->result_case = KMS__RESPONSE__RESULT_CREATE_GRANT;
	return KMS_OK;
}

kms_status op_list_grants(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__ListGrantsRequest *r = req->list_grants;
	size_t limit = r->limit ? r->limit : KEYRING_LIST_LIMIT_DEFAULT;
	Kms__ListGrantsResponse *l;
	OP_ALLOC(ctx, l);
	kms__list_grants_response__init(l);
	store_key k = { 0 };
	if (r->key_id[0]) {
		op_note_key(ctx, r->key_id, 0);
		KMS_GUARD(grant_key(ctx, r->key_id, &k));
		op_note_key(ctx, k.id, 0);
	}
	store_grant_by by = r->key_id[0] ? STORE_GRANTS_BY_KEY : STORE_GRANTS_BY_GRANTEE;
	const char *name = r->key_id[0] ? k.id : r->grantee;
	const char *grantee = r->key_id[0] && r->grantee[0] ? r->grantee : NULL;

	l->grants = arena_alloc(ctx->arena, (limit + 1) * sizeof *l->grants);
	l->next_page_token = arena_strdup(ctx->arena, "");
	KMS_ENSURE(l->grants && l->next_page_token, KMS_INTERNAL, "out of request memory");
	char after[AUTHZ_ID_SIZE];
	snprintf(after, sizeof after, "%s", r->page_token);
	/* Read limit + 1 at a time, so a full page knows whether more follow;
	 * with both filters, keep reading until the page is full or the key's
	 * grants end (each round moves `after` forward). */
	kms_status st = KMS_OK;
	size_t bytes = 0;
	bool more = true, page_full = false;
	while (st == KMS_OK && more && !page_full) {
		store_grant *gs = NULL;
		size_t n = 0;
		st = store_grant_list(op_store(ctx), by, name, after, limit + 1, &gs, &n);
		more = st == KMS_OK && n == limit + 1;
		for (size_t i = 0; st == KMS_OK && i < n; i++) {
			if (grantee && strcmp(gs[i].grantee, grantee)) {
				snprintf(after, sizeof after, "%s", gs[i].id);
				continue;
			}
			if (l->n_grants == limit || (l->n_grants > 0 && bytes > KMS_LIST_REPLY_BUDGET)) {
				l->next_page_token = arena_strdup(ctx->arena, after);
				if (!l->next_page_token)
					st = KMS_FAIL(KMS_INTERNAL, "out of request memory");
				page_full = true;
				break;
			}
			st = grant_out(ctx, &gs[i], &l->grants[l->n_grants]);
			if (st == KMS_OK) {
				bytes += kms__grant__get_packed_size(l->grants[l->n_grants]) + 6;
				l->n_grants++;
				snprintf(after, sizeof after, "%s", gs[i].id);
			}
		}
		free(gs);
	}
	KMS_GUARD(st);
	resp->list_grants = l;
	resp->result_case = KMS__RESPONSE__RESULT_LIST_GRANTS;
	return KMS_OK;
}

static kms_status end_grant(op_ctx *ctx, const char *id, grant_state how)
{
	kms_status st = store_grant_end(op_store(ctx), id, how, ctx->now);
	if (st == KMS_NOT_FOUND)
		return KMS_FAIL(KMS_NOT_FOUND, "grant %s does not exist: kms-admin grant list "
		                "shows the grants of a key or a grantee", id);
	if (st == KMS_FAILED_PRECONDITION)
		return KMS_FAIL(KMS_FAILED_PRECONDITION, "grant %s is already retired or revoked", id);
	return st;
}

kms_status op_retire_grant(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const char *id = req->retire_grant->grant_id;
	Kms__RetireGrantResponse *v;
	OP_ALLOC(ctx, v);
	kms__retire_grant_response__init(v);
	store_grant *g = malloc(sizeof *g);
	KMS_ENSURE(g, KMS_INTERNAL, "out of memory");
	kms_status st = store_grant_get(op_store(ctx), id, g);
	if (st == KMS_OK) {
		op_note_key(ctx, g->key_id, 0);
		/* Only the grantee or an admin (the caller's fields are read from
		 * the store for this request). */
		bool grantee = ctx->caller->principal[0] &&
		               !strcmp(ctx->caller->principal, g->grantee);
		bool admin = ctx->caller->principal_found &&
		             (ctx->caller->roles & PRINCIPAL_ROLE_ADMIN);
		if (!grantee && !admin) {
			st = KMS_FAIL(KMS_ACCESS_DENIED, "principal %s may not retire grant %s: only "
			              "its grantee or an admin may", ctx->caller->principal, id);
			/* The audit entry's decision is this check's, not step 2's
			 * (which admits any principal to grant retirement). */
			op_note_authz(ctx, "deny", "grant retirement: neither the grantee nor an admin",
			              kms_error_message());
		}
	}
	free(g);
	if (st == KMS_NOT_FOUND)
		return end_grant(ctx, id, GRANT_STATE_RETIRED); /* the same message */
	KMS_GUARD(st);
	KMS_GUARD(end_grant(ctx, id, GRANT_STATE_RETIRED));
	resp->retire_grant = v;
	resp->result_case = KMS__RESPONSE__RESULT_RETIRE_GRANT;
	return KMS_OK;
}

kms_status op_revoke_grant(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const char *id = req->revoke_grant->grant_id;
	Kms__RevokeGrantResponse *v;
	OP_ALLOC(ctx, v);
	kms__revoke_grant_response__init(v);
	store_grant g;
	if (store_grant_get(op_store(ctx), id, &g) == KMS_OK)
		op_note_key(ctx, g.key_id, 0);
	KMS_GUARD(end_grant(ctx, id, GRANT_STATE_REVOKED));
	resp->revoke_grant = v;
	resp->result_case = KMS__RESPONSE__RESULT_REVOKE_GRANT;
	return KMS_OK;
}
