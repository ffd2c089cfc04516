/*
 * op_dp.c: the data-principal operations (docs/data-principals.md):
 * EraseDataPrincipal, SetDataPrincipalHold, ListDueErasures, SetRetention;
 * and the retention tick's audit entries that kmsd writes itself
 * (pre_erasure, retention_erasure; principal "kmsd").
 *
 * Everything goes through the keyring, which owns the sub-keys. Replies and
 * entries name keys, pseudonyms, purposes and legal text only; never key
 * material.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "kms/audit/audit.h"
#include "kms/audit/audit_entry.h"
#include "kms/keys/keyring.h"
#include "kms/ops/op_dp.h"
#include "kms/pipeline/ops.h"

#define DUE_LIST_DEFAULT 100

/* The key check; key_id gets the id it decided on, which the operation then
 * acts on (never the reference again: an alias moved in between would
 * name a key whose policy was not checked). */
static kms_status authorize_ref(op_ctx *ctx, const char *key_ref,
                                char key_id[static KMS_KEYID_TEXT_SIZE])
{
	return op_authorize_ref(ctx, key_ref, NULL, 0, key_id);
}

kms_status op_erase_data_principal(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__EraseDataPrincipalRequest *r = req->erase_data_principal;
	store_dp_key row;
	Kms__EraseDataPrincipalResponse *e;
	OP_ALLOC(ctx, e);
	kms__erase_data_principal_response__init(e);
	char key_id[KMS_KEYID_TEXT_SIZE];
	KMS_GUARD(authorize_ref(ctx, r->key_id, key_id));
	KMS_GUARD(keyring_dp_erase(ctx->d->keyring, key_id, r->data_principal, r->basis,
	                           ctx->now, &row));
	e->key_id = arena_strdup(ctx->arena, row.key_id);
	e->data_principal = arena_strdup(ctx->arena, row.dp);
	KMS_ENSURE(e->key_id && e->data_principal, KMS_INTERNAL, "out of request memory");
	e->erased_at = row.erased_at;
	resp->erase_data_principal = e;
	resp->result_case = KMS__RESPONSE__RESULT_ERASE_DATA_PRINCIPAL;
	return KMS_OK;
}

kms_status op_set_data_principal_hold(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__SetDataPrincipalHoldRequest *r = req->set_data_principal_hold;
	store_dp_key row;
	Kms__SetDataPrincipalHoldResponse *h;
	OP_ALLOC(ctx, h);
	kms__set_data_principal_hold_response__init(h);
	char key_id[KMS_KEYID_TEXT_SIZE];
	KMS_GUARD(authorize_ref(ctx, r->key_id, key_id));
	KMS_GUARD(keyring_dp_hold(ctx->d->keyring, key_id, r->data_principal, r->hold, &row));
	h->key_id = arena_strdup(ctx->arena, row.key_id);
	h->data_principal = arena_strdup(ctx->arena, row.dp);
	h->hold = arena_strdup(ctx->arena, row.hold);
	KMS_ENSURE(h->key_id && h->data_principal && h->hold, KMS_INTERNAL,
	           "out of request memory");
	resp->set_data_principal_hold = h;
	resp->result_case = KMS__RESPONSE__RESULT_SET_DATA_PRINCIPAL_HOLD;
	return KMS_OK;
}

kms_status op_set_retention(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__SetRetentionRequest *r = req->set_retention;
	char key_id[KMS_KEYID_TEXT_SIZE], allowed[KMS_KEYID_TEXT_SIZE];
	Kms__SetRetentionResponse *s;
	OP_ALLOC(ctx, s);
	kms__set_retention_response__init(s);
	KMS_GUARD(authorize_ref(ctx, r->key_id, allowed));
	KMS_GUARD(keyring_retention_set(ctx->d->keyring, allowed, r->purpose, r->days, key_id));
	s->key_id = arena_strdup(ctx->arena, key_id);
	s->purpose = arena_strdup(ctx->arena, r->purpose);
	KMS_ENSURE(s->key_id && s->purpose, KMS_INTERNAL, "out of request memory");
	s->days = r->days;
	resp->set_retention = s;
	resp->result_case = KMS__RESPONSE__RESULT_SET_RETENTION;
	return KMS_OK;
}

/* The page token: "<end>.<id>" of the last row returned. */
static kms_status due_token_parse(const char *token, int64_t *end, int64_t *id)
{
	long long a = 0, b = 0;
	int used = 0;
	*end = 0;
	*id = 0;
	if (!token[0])
		return KMS_OK;
	KMS_ENSURE(sscanf(token, "%lld.%lld%n", &a, &b, &used) == 2 &&
	                   (size_t)used == strlen(token) && a >= 0 && b >= 1,
	           KMS_INVALID_ARGUMENT, "page_token is not one this daemon issued");
	*end = a;
	*id = b;
	return KMS_OK;
}

static kms_status due_out(op_ctx *ctx, const store_dp_key *row, Kms__DueErasure **out)
{
	Kms__DueErasure *w;
	OP_ALLOC(ctx, w);
	kms__due_erasure__init(w);
	w->key_id = arena_strdup(ctx->arena, row->key_id);
	w->data_principal = arena_strdup(ctx->arena, row->dp);
	w->purpose = arena_strdup(ctx->arena, row->purpose);
	KMS_ENSURE(w->key_id && w->data_principal && w->purpose, KMS_INTERNAL,
	           "out of request memory");
	w->retention_ends_at = row->retention_ends_at;
	w->notice_at = row->notice_at;
	w->erase_at = keyring_dp_erase_at(ctx->d->keyring, row);
	*out = w;
	return KMS_OK;
}

kms_status op_list_due_erasures(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__ListDueErasuresRequest *r = req->list_due_erasures;
	int64_t after_end, after_id;
	size_t limit = r->limit ? r->limit : DUE_LIST_DEFAULT, n = 0;
	Kms__ListDueErasuresResponse *l;
	OP_ALLOC(ctx, l);
	kms__list_due_erasures_response__init(l);
	KMS_GUARD(due_token_parse(r->page_token, &after_end, &after_id));
	store_dp_key *rows = malloc(limit * sizeof *rows);
	KMS_ENSURE(rows, KMS_INTERNAL, "out of memory");
	kms_status st = keyring_dp_due(ctx->d->keyring, after_end, after_id, limit, rows, &n);
	l->erasures = arena_alloc(ctx->arena, (n + 1) * sizeof *l->erasures);
	if (st == KMS_OK && !l->erasures)
		st = KMS_FAIL(KMS_INTERNAL, "out of request memory");
	for (size_t i = 0; st == KMS_OK && i < n; i++)
		st = due_out(ctx, &rows[i], &l->erasures[i]);
	if (st == KMS_OK && n == limit) {
		l->next_page_token = arena_printf(ctx->arena, "%lld.%lld",
		                                  (long long)rows[n - 1].retention_ends_at,
		                                  (long long)rows[n - 1].id);
		if (!l->next_page_token)
			st = KMS_FAIL(KMS_INTERNAL, "out of request memory");
	}
	free(rows);
	KMS_GUARD(st);
	l->n_erasures = n;
	resp->list_due_erasures = l;
	resp->result_case = KMS__RESPONSE__RESULT_LIST_DUE_ERASURES;
	return KMS_OK;
}

/* ---- the retention tick's entries ---- */

static kms_status tick_event(void *arg, const char *operation, const store_dp_key *row)
{
	kmsd *d = arg;
	audit_system_entry e = {
		.operation = operation,
		.key_id = row->key_id,
		.data_principal = row->dp,
		.purpose = row->purpose,
		.basis = "retention",
		.time_us = kms_now_us(),
	};
	char *text = NULL;
	size_t len = 0;
	KMS_ENSURE(d->audit, KMS_UNAVAILABLE, "no audit log: retention waits for one");
	KMS_GUARD(audit_entry_build_system(&e, &text, &len));
	kms_status st = audit_append(d->audit, text, len);
	free(text);
	return st;
}

kms_status kmsd_retention_tick(kmsd *d, int64_t now)
{
	size_t noticed = 0, erased = 0;
	kms_status st = keyring_dp_tick(d->keyring, now, tick_event, d, &noticed, &erased);
	if (noticed || erased)
		kms_log("info", "retention: %zu pre-erasure notices, %zu sub-keys erased", noticed,
		        erased);
	return st;
}
