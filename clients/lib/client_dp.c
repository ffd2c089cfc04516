/*
 * client_dp.c: data principals' sub-keys (kms/data_principals.h): erasure,
 * legal holds, retention, the due erasures.
 */
#include "clients/lib/client_internal.h"
#include <kms/data_principals.h>
#include <stdlib.h>
#include <string.h>
#include "common/error.h"

/* The key, the principal and a text every call of this file needs. */
static kms_status need_dp(const char *op, const char *key_id, const char *dp, kms_error *err)
{
	KMS_GUARD(client_need(key_id, op, "key_id", err));
	return client_need(dp, op, "data_principal", err);
}

kms_status kms_erase_data_principal(kms_client *client, const char *key_id, const char *dp,
                                    const char *basis, int64_t *erased_at, kms_error *err)
{
	Kms__Request req;
	Kms__EraseDataPrincipalRequest op;
	Kms__Response *resp = NULL;
	int64_t ignored;
	int64_t *dst = erased_at ? erased_at : &ignored;

	KMS_GUARD(client_begin(dst, sizeof *dst, "erase_data_principal", err));
	KMS_GUARD(need_dp("erase_data_principal", key_id, dp, err));
	KMS_GUARD(client_need(basis, "erase_data_principal", "basis", err));
	kms__request__init(&req);
	kms__erase_data_principal_request__init(&op);
	op.key_id = (char *)key_id;
	op.data_principal = (char *)dp;
	op.basis = (char *)basis;
	req.op_case = KMS__REQUEST__OP_ERASE_DATA_PRINCIPAL;
	req.erase_data_principal = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_ERASE_DATA_PRINCIPAL, &resp,
	                           err));
	*dst = resp->erase_data_principal->erased_at;
	kms_response_free(resp);
	return KMS_OK;
}

kms_status kms_set_data_principal_hold(kms_client *client, const char *key_id, const char *dp,
                                       const char *statute, kms_error *err)
{
	Kms__Request req;
	Kms__SetDataPrincipalHoldRequest op;
	Kms__Response *resp = NULL;
	int unused;

	KMS_GUARD(client_begin(&unused, sizeof unused, "set_data_principal_hold", err));
	KMS_GUARD(need_dp("set_data_principal_hold", key_id, dp, err));
	kms__request__init(&req);
	kms__set_data_principal_hold_request__init(&op);
	op.key_id = (char *)key_id;
	op.data_principal = (char *)dp;
	op.hold = (char *)(statute ? statute : "");
	req.op_case = KMS__REQUEST__OP_SET_DATA_PRINCIPAL_HOLD;
	req.set_data_principal_hold = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_SET_DATA_PRINCIPAL_HOLD,
	                           &resp, err));
	kms_response_free(resp);
	return KMS_OK;
}

kms_status kms_set_retention(kms_client *client, const char *key_id, const char *purpose,
                             uint32_t days, kms_error *err)
{
	Kms__Request req;
	Kms__SetRetentionRequest op;
	Kms__Response *resp = NULL;
	int unused;

	KMS_GUARD(client_begin(&unused, sizeof unused, "set_retention", err));
	KMS_GUARD(client_need(key_id, "set_retention", "key_id", err));
	KMS_GUARD(client_need(purpose, "set_retention", "purpose", err));
	kms__request__init(&req);
	kms__set_retention_request__init(&op);
	op.key_id = (char *)key_id;
	op.purpose = (char *)purpose;
	op.days = days;
	req.op_case = KMS__REQUEST__OP_SET_RETENTION;
	req.set_retention = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_SET_RETENTION, &resp, err));
	kms_response_free(resp);
	return KMS_OK;
}

void kms_due_erasure_list_free(kms_due_erasure_list *list)
{
	if (!list)
		return;
	for (size_t i = 0; list->erasures && i < list->n_erasures; i++) {
		free(list->erasures[i].key_id);
		free(list->erasures[i].data_principal);
		free(list->erasures[i].purpose);
	}
	free(list->erasures);
	free(list->next_page_token);
	memset(list, 0, sizeof *list);
}

static kms_status due_from(const Kms__DueErasure *w, kms_due_erasure *out, kms_error *err)
{
	if (!w)
		return client_protocol_error(err, "list_due_erasures", "an empty item");
	KMS_GUARD(client_dup_str(w->key_id, &out->key_id, err));
	KMS_GUARD(client_dup_str(w->data_principal, &out->data_principal, err));
	KMS_GUARD(client_dup_str(w->purpose, &out->purpose, err));
	out->retention_ends_at = w->retention_ends_at;
	out->notice_at = w->notice_at;
	out->erase_at = w->erase_at;
	return KMS_OK;
}

kms_status kms_list_due_erasures(kms_client *client, uint32_t limit, const char *page_token,
                                 kms_due_erasure_list *out, kms_error *err)
{
	Kms__Request req;
	Kms__ListDueErasuresRequest op;
	Kms__Response *resp = NULL;
	kms_status st = KMS_OK;

	KMS_GUARD(client_begin(out, sizeof *out, "list_due_erasures", err));
	kms__request__init(&req);
	kms__list_due_erasures_request__init(&op);
	op.limit = limit;
	op.page_token = (char *)(page_token ? page_token : "");
	req.op_case = KMS__REQUEST__OP_LIST_DUE_ERASURES;
	req.list_due_erasures = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_LIST_DUE_ERASURES, &resp,
	                           err));
	const Kms__ListDueErasuresResponse *r = resp->list_due_erasures;
	if (r->n_erasures > 1000) {
		st = client_protocol_error(err, "list_due_erasures", "more items than asked for");
		goto out;
	}
	out->erasures = calloc(r->n_erasures + 1, sizeof *out->erasures);
	if (!out->erasures) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < r->n_erasures; i++) {
		out->n_erasures++;
		st = due_from(r->erasures[i], &out->erasures[i], err);
		if (st != KMS_OK)
			goto out;
	}
	st = client_dup_str(r->next_page_token, &out->next_page_token, err);
out:
	if (st != KMS_OK)
		kms_due_erasure_list_free(out);
	kms_response_free(resp);
	return st;
}
