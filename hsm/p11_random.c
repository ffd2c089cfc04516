/*
 * p11_random.c: random bytes from the HSM's generator.
 */
#include <kms/secmem.h>

#include "hsm/p11_internal.h"

typedef struct random_attempt {
	uint8_t *out;
	size_t len;
} random_attempt;

static kms_status random_step(hsm *h, CK_SESSION_HANDLE s, void *ctx, CK_RV *rv)
{
	random_attempt *a = ctx;
	*rv = h->p11->C_GenerateRandom(s, a->out, a->len);
	return KMS_OK;
}

kms_status hsm_random(hsm *h, uint8_t *out, size_t len)
{
	KMS_ENSURE(h != NULL, KMS_INVALID_ARGUMENT, "hsm: hsm_random without an hsm");
	KMS_ENSURE(out != NULL || len == 0, KMS_INVALID_ARGUMENT,
	           "hsm: hsm_random of %zu bytes into NULL", len);
	if (len == 0)
		return KMS_OK;
	KMS_ENSURE(len <= (CK_ULONG)-1, KMS_INVALID_ARGUMENT, "hsm: hsm_random of %zu bytes", len);

	random_attempt a = { out, len };
	CK_RV rv;
	/* No object involved: no cached handle for a repair to drop. */
	kms_status st = hsm_run(h, NULL, random_step, &a, &rv);
	if (st == KMS_OK && rv == CKR_OK)
		return KMS_OK;
	/* Half-written random bytes are no use to anyone: do not hand them out,
	 * whichever way the call failed. */
	kms_wipe(out, len);
	if (st != KMS_OK)
		return st;
	return KMS_FAIL(hsm_status_of(rv), "hsm: C_GenerateRandom(%zu) on token \"%s\" -> %s",
	                len, h->token_label, hsm_rv_name(rv));
}
