/*
 * client_keks.c: the calls for kmsd's key-encryption keys (kms/keks.h).
 */
#include "clients/lib/client_internal.h"

#include <kms/keks.h>

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

static const char *const kek_states[] = { "KEK_STATE_UNSPECIFIED", "CREATING", "CURRENT",
	                                  "DRAINING", "RETIRED" };

const char *kms_kek_state_name(kms_kek_state state)
{
	if ((unsigned)state < sizeof kek_states / sizeof kek_states[0])
		return kek_states[state];
	return "UNKNOWN";
}

static kms_status kek_from(const Kms__Kek *k, const char *op, kms_kek *out, kms_error *err)
{
	memset(out, 0, sizeof *out);
	if (!k)
		return client_protocol_error(err, op, "no KEK");
	if (!k->hsm_id || strlen(k->hsm_id) > KMS_KEK_HSM_ID_MAX)
		return client_protocol_error(err, op, "a KEK id longer than the protocol allows");
	memcpy(out->hsm_id, k->hsm_id, strlen(k->hsm_id) + 1);
	out->id = k->id;
	out->state = (kms_kek_state)k->state;
	out->created_at = k->created_at;
	out->retired_at = k->retired_at;
	out->versions = k->versions;
	return KMS_OK;
}

void kms_kek_list_free(kms_kek_list *list)
{
	if (!list)
		return;
	free(list->keks);
	memset(list, 0, sizeof *list);
}

kms_status kms_list_keks(kms_client *client, kms_kek_list *out, kms_error *err)
{
	Kms__Request req;
	Kms__ListKeksRequest op;
	Kms__Response *resp = NULL;
	kms_status st = KMS_OK;

	KMS_GUARD(client_begin(out, sizeof *out, "list_keks", err));
	kms__request__init(&req);
	kms__list_keks_request__init(&op);
	req.op_case = KMS__REQUEST__OP_LIST_KEKS;
	req.list_keks = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_LIST_KEKS, &resp, err));
	const Kms__ListKeksResponse *r = resp->list_keks;
	if (r->n_keks > KMS_KEKS_MAX) {
		st = client_protocol_error(err, "list_keks", "more KEKs than the protocol allows");
		goto out;
	}
	out->keks = calloc(r->n_keks + 1, sizeof *out->keks);
	if (!out->keks) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < r->n_keks; i++) {
		st = kek_from(r->keks[i], "list_keks", &out->keks[i], err);
		if (st != KMS_OK)
			goto out;
		out->n_keks++;
	}
out:
	if (st != KMS_OK)
		kms_kek_list_free(out);
	kms_response_free(resp);
	return st;
}

kms_status kms_rotate_kek(kms_client *client, kms_kek *out, kms_error *err)
{
	Kms__Request req;
	Kms__RotateKekRequest op;
	Kms__Response *resp = NULL;
	kms_kek ignored;
	kms_kek *dst = out ? out : &ignored;

	KMS_GUARD(client_begin(dst, sizeof *dst, "rotate_kek", err));
	kms__request__init(&req);
	kms__rotate_kek_request__init(&op);
	req.op_case = KMS__REQUEST__OP_ROTATE_KEK;
	req.rotate_kek = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_ROTATE_KEK, &resp, err));
	kms_status st = kek_from(resp->rotate_kek->kek, "rotate_kek", dst, err);
	kms_response_free(resp);
	return st;
}
