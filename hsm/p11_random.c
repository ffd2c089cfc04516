/*
 * p11_random.c: random bytes from the HSM's generator.
 */
#include <kms/secmem.h>

#include "hsm/p11_internal.h"

kms_status hsm_random(hsm *h, uint8_t *out, size_t len)
{
	KMS_ENSURE(h != NULL, KMS_INVALID_ARGUMENT, "hsm: hsm_random without an hsm");
	KMS_ENSURE(out != NULL || len == 0, KMS_INVALID_ARGUMENT,
	           "hsm: hsm_random of %zu bytes into NULL", len);
	if (len == 0)
		return KMS_OK;
	KMS_ENSURE(len <= (CK_ULONG)-1, KMS_INVALID_ARGUMENT, "hsm: hsm_random of %zu bytes", len);

	for (bool retried = false;; retried = true) {
		CK_SESSION_HANDLE s;
		bool retry = false;

		KMS_GUARD(hsm_session_get(h, &s));
		CK_RV rv = h->p11->C_GenerateRandom(s, out, len);
		if (rv == CKR_OK)
			return KMS_OK;
		if (!retried) {
			kms_status st = hsm_recover(h, s, rv, NULL, &retry);
			if (st != KMS_OK) {
				kms_wipe(out, len);
				return st;
			}
			if (retry)
				continue;
		}
		/* Half-written random bytes are no use to anyone: do not hand them out. */
		kms_wipe(out, len);
		return KMS_FAIL(hsm_status_of(rv), "hsm: C_GenerateRandom(%zu) on token \"%s\" -> %s",
		                len, h->token_label, hsm_rv_name(rv));
	}
}
