/* op_misc.c: Health and GenerateRandom. */
#include <string.h>

#include <kms/secmem.h>

#include "kms/audit/audit.h"
#include "common/error.h"
#include "hsm/hsm.h"
#include "kms/keys/keyring.h"
#include "kms/pipeline/ops.h"
#include "kms/store/store.h"

/* Whether the caller is an admin or an auditor. The pipeline loads no
 * principal for Health (it is open to all), so its roles are read here,
 * from the store; a principal that cannot be read is neither. */
static bool may_locate(op_ctx *ctx)
{
	store_principal p;
	if (!ctx->caller->principal[0] || !ctx->d->keyring)
		return false;
	if (store_principal_get(keyring_store(ctx->d->keyring), ctx->caller->principal, &p) !=
	    KMS_OK) {
		kms_error_clear();
		return false;
	}
	return p.state != PRINCIPAL_STATE_DISABLED &&
	       (p.roles & (PRINCIPAL_ROLE_ADMIN | PRINCIPAL_ROLE_AUDITOR)) != 0;
}

kms_status op_health(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	(void)req;
	Kms__HealthResponse *h = arena_alloc(ctx->arena, sizeof *h);
	KMS_ENSURE(h, KMS_INTERNAL, "out of request memory");
	kms__health_response__init(h);

	/* A one-byte draw proves the module, token, session and login work. */
	uint8_t probe[1];
	kms_status st = hsm_random(ctx->d->hsm, probe, sizeof probe);
	h->hsm_ok = st == KMS_OK;
	h->hsm_message = arena_strdup(ctx->arena, st == KMS_OK ? "" : kms_error_message());
	if (h->hsm_message)
		(void)kms_error_strip_paths(h->hsm_message); /* the module's name, not its path */
	h->region = ctx->d->cfg.region;
	h->version = KMSD_VERSION;
	h->token_label = ctx->d->cfg.hsm_token_label;
	/* The token as checked at start against [hsm] pinned. */
	const kmsd_residency *res = &ctx->d->residency;
	h->hsm_manufacturer = (char *)res->token.manufacturer;
	h->hsm_model = (char *)res->token.model;
	h->hsm_serial = (char *)res->token.serial;
	h->hsm_pinned = res->pinned;
	/* Where the state lives: the operator's and the auditor's business,
	 * not an app's (Health is open to every principal). */
	bool located = may_locate(ctx);
	h->data_dir = located ? (char *)res->data_dir : "";
	h->store_path = located ? (char *)res->store_path : "";
	int64_t up = ctx->now - ctx->d->started_at;
	h->uptime_seconds = up > 0 ? (uint64_t)up : 0;
	h->principal = arena_strdup(ctx->arena, ctx->caller->principal);
	h->audit_size = ctx->d->audit ? audit_size(ctx->d->audit) : 0;
	KMS_ENSURE(h->hsm_message && h->principal, KMS_INTERNAL, "out of request memory");
	resp->result_case = KMS__RESPONSE__RESULT_HEALTH;
	resp->health = h;
	return KMS_OK;
}

kms_status op_generate_random(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	size_t n = req->generate_random->number_of_bytes; /* 1..1024: validated */
	Kms__GenerateRandomResponse *r = arena_alloc(ctx->arena, sizeof *r);
	uint8_t *bytes = arena_alloc(ctx->arena, n); /* arena memory is wiped after */
	KMS_ENSURE(r && bytes, KMS_INTERNAL, "out of request memory");
	kms__generate_random_response__init(r);
	KMS_GUARD(hsm_random(ctx->d->hsm, bytes, n));
	r->random.data = bytes;
	r->random.len = n;
	resp->result_case = KMS__RESPONSE__RESULT_GENERATE_RANDOM;
	resp->generate_random = r;
	return KMS_OK;
}
