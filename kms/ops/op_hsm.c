/*
 * op_hsm.c: ListKeks and RotateKek, the HSM administration operations
 * (docs/key-hierarchy.md, "KEKs: creation and rotation";
 * docs/authorization.md, "Roles": admin only for the rotation, admin or
 * auditor for the list).
 *
 * Both go through the keyring, which owns the KEKs: RotateKek creates the
 * new KEK's token object (blocking on the HSM) and makes it current; the
 * re-wrap job of keyring_tick then drains the old one. Neither reply holds
 * key material: a KEK is named by its id and CKA_ID only.
 */
#include <string.h>

#include "common/error.h"
#include "kms/keys/keyring.h"
#include "kms/pipeline/ops.h"

static Kms__KekState kek_state_to_wire(kek_state s)
{
	switch (s) {
	case KEK_STATE_CREATING: return KMS__KEK_STATE__KEK_CREATING;
	case KEK_STATE_CURRENT: return KMS__KEK_STATE__KEK_CURRENT;
	case KEK_STATE_DRAINING: return KMS__KEK_STATE__KEK_DRAINING;
	case KEK_STATE_RETIRED: return KMS__KEK_STATE__KEK_RETIRED;
	}
	return KMS__KEK_STATE__KEK_STATE_UNSPECIFIED;
}

static kms_status kek_out(op_ctx *ctx, const store_kek *k, uint64_t versions, Kms__Kek **out)
{
	Kms__Kek *w;
	OP_ALLOC(ctx, w);
	kms__kek__init(w);
	w->id = k->id;
	w->hsm_id = arena_strdup(ctx->arena, k->hsm_id);
	KMS_ENSURE(w->hsm_id, KMS_INTERNAL, "out of request memory");
	w->state = kek_state_to_wire(k->state);
	w->created_at = k->created_at;
	w->retired_at = k->retired_at;
	w->versions = versions;
	*out = w;
	return KMS_OK;
}

kms_status op_list_keks(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	(void)req;
	keyring_kek keks[KEYRING_KEKS_MAX];
	size_t n = 0;
	Kms__ListKeksResponse *l;
	OP_ALLOC(ctx, l);
	kms__list_keks_response__init(l);
	KMS_GUARD(keyring_kek_list(ctx->d->keyring, keks, KEYRING_KEKS_MAX, &n));
	l->keks = arena_alloc(ctx->arena, (n + 1) * sizeof *l->keks);
	KMS_ENSURE(l->keks, KMS_INTERNAL, "out of request memory");
	for (size_t i = 0; i < n; i++)
		KMS_GUARD(kek_out(ctx, &keks[i].kek, keks[i].versions, &l->keks[i]));
	l->n_keks = n;
	resp->list_keks = l;
	resp->result_case = KMS__RESPONSE__RESULT_LIST_KEKS;
	return KMS_OK;
}

kms_status op_rotate_kek(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	(void)req;
	store_kek fresh;
	Kms__RotateKekResponse *r;
	OP_ALLOC(ctx, r);
	kms__rotate_kek_response__init(r);
	KMS_GUARD(keyring_kek_rotate(ctx->d->keyring, ctx->now, &fresh));
	/* A new KEK wraps nothing yet: versions move to it as the job runs. */
	KMS_GUARD(kek_out(ctx, &fresh, 0, &r->kek));
	resp->rotate_kek = r;
	resp->result_case = KMS__RESPONSE__RESULT_ROTATE_KEK;
	return KMS_OK;
}
