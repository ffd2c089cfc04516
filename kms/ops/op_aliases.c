/* op_aliases.c: CreateAlias, UpdateAlias, DeleteAlias, ListAliases. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kms/keys/keyring.h"
#include "kms/pipeline/ops.h"

kms_status op_create_alias(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__CreateAliasRequest *r = req->create_alias;
	Kms__CreateAliasResponse *c;
	OP_ALLOC(ctx, c);
	kms__create_alias_response__init(c);
	char key_id[KMS_KEYID_TEXT_SIZE];
	KMS_GUARD(op_authorize_ref(ctx, r->target_key_id, NULL, 0, key_id));
	/* The key decided on, not the reference again: an alias given as the
	 * target could move in between. */
	KMS_GUARD(keyring_alias_create(ctx->d->keyring, r->alias_name, key_id, ctx->now));
	resp->create_alias = c;
	resp->result_case = KMS__RESPONSE__RESULT_CREATE_ALIAS;
	return KMS_OK;
}

kms_status op_update_alias(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__UpdateAliasRequest *r = req->update_alias;
	Kms__UpdateAliasResponse *u;
	OP_ALLOC(ctx, u);
	kms__update_alias_response__init(u);
	/* Decided on both keys: moving the alias takes its name from the key
	 * it names now and gives it to the target. */
	char from_id[KMS_KEYID_TEXT_SIZE], key_id[KMS_KEYID_TEXT_SIZE];
	KMS_GUARD(op_authorize_ref(ctx, r->alias_name, NULL, 0, from_id));
	KMS_GUARD(op_authorize_ref(ctx, r->target_key_id, NULL, 0, key_id));
	KMS_GUARD(keyring_alias_update(ctx->d->keyring, r->alias_name, key_id, from_id));
	resp->update_alias = u;
	resp->result_case = KMS__RESPONSE__RESULT_UPDATE_ALIAS;
	return KMS_OK;
}

kms_status op_delete_alias(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	Kms__DeleteAliasResponse *d;
	OP_ALLOC(ctx, d);
	kms__delete_alias_response__init(d);
	/* Decided on the key the alias names: deleting it takes a name away
	 * from that key. */
	char key_id[KMS_KEYID_TEXT_SIZE];
	KMS_GUARD(op_authorize_ref(ctx, req->delete_alias->alias_name, NULL, 0, key_id));
	KMS_GUARD(keyring_alias_delete(ctx->d->keyring, req->delete_alias->alias_name));
	resp->delete_alias = d;
	resp->result_case = KMS__RESPONSE__RESULT_DELETE_ALIAS;
	return KMS_OK;
}

kms_status op_list_aliases(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__ListAliasesRequest *r = req->list_aliases;
	store_alias *aliases = NULL;
	size_t n = 0;
	char next[KMS_ALIAS_TEXT_MAX + 1] = "";
	Kms__ListAliasesResponse *l;
	OP_ALLOC(ctx, l);
	kms__list_aliases_response__init(l);
	KMS_GUARD(keyring_alias_list(ctx->d->keyring, r->key_id, r->limit, r->page_token,
	                             &aliases, &n, next));
	kms_status st = KMS_OK;
	l->aliases = arena_alloc(ctx->arena, (n + 1) * sizeof *l->aliases);
	l->next_page_token = arena_strdup(ctx->arena, next);
	if (!l->aliases || !l->next_page_token)
		st = KMS_FAIL(KMS_INTERNAL, "out of request memory");
	for (size_t i = 0; st == KMS_OK && i < n; i++) {
		Kms__AliasEntry *e = arena_alloc(ctx->arena, sizeof *e);
		if (!e) {
			st = KMS_FAIL(KMS_INTERNAL, "out of request memory");
			break;
		}
		kms__alias_entry__init(e);
		e->alias_name = arena_strdup(ctx->arena, aliases[i].name);
		e->target_key_id = arena_strdup(ctx->arena, aliases[i].key_id);
		e->created_at = aliases[i].created_at;
		if (!e->alias_name || !e->target_key_id)
			st = KMS_FAIL(KMS_INTERNAL, "out of request memory");
		l->aliases[l->n_aliases++] = e;
	}
	free(aliases);
	KMS_GUARD(st);
	resp->list_aliases = l;
	resp->result_case = KMS__RESPONSE__RESULT_LIST_ALIASES;
	return KMS_OK;
}
