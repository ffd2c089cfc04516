/*
 * fuzz_jwk: a Consent Manager's key as kms-admin sends it to be registered
 * (kms/consent/consent_artefact.c, consent_jwk_check; docs/consent.md),
 * over any bytes: the JSON, the members libcjose decodes, the key itself.
 *
 * Invariants:
 *   - it returns KMS_OK or KMS_INVALID_ARGUMENT (KMS_INTERNAL only out of
 *     memory), with *public_json NULL and kid "" unless KMS_OK;
 *   - a refusal is one non-empty line of printable ASCII;
 *   - an accepted key has a kid of 1..128 printable ASCII characters, and a
 *     public JWK with no private member; that public JWK is accepted again,
 *     with the same kid, and written back the same (the check is a fixed
 *     point: what kmsd stores is what it would accept).
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/error.h"
#include "kms/consent/consent_artefact.h"
#include "tests/support/fuzz.h"

static void check_refusal(kms_status st, const char *pub, const char *kid)
{
	FUZZ_CHECK(st == KMS_INVALID_ARGUMENT || st == KMS_INTERNAL);
	FUZZ_CHECK(pub == NULL && kid[0] == '\0');
	const char *m = kms_error_message();
	FUZZ_CHECK(m[0]);
	for (const char *p = m; *p; p++)
		FUZZ_CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
}

static void check_public(const char *pub)
{
	static const char *const private_members[] = { "d", "p", "q", "dp", "dq", "qi", "k",
		                                       NULL };
	json_error_t jerr;
	json_t *o = json_loads(pub, 0, &jerr);
	FUZZ_CHECK(json_is_object(o));
	for (const char *const *m = private_members; *m; m++)
		FUZZ_CHECK(!json_object_get(o, *m));
	json_decref(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *pub = NULL, *again = NULL;
	char kid[CONSENT_KID_MAX + 1], kid_again[CONSENT_KID_MAX + 1];
	kms_status st = consent_jwk_check((const char *)data, size, &pub, kid);
	if (st != KMS_OK) {
		check_refusal(st, pub, kid);
		kms_error_clear();
		return 0;
	}
	size_t kid_len = strlen(kid);
	FUZZ_CHECK(kid_len >= 1 && kid_len <= CONSENT_KID_MAX);
	for (size_t i = 0; i < kid_len; i++)
		FUZZ_CHECK(kid[i] > 0x20 && kid[i] < 0x7f);
	FUZZ_CHECK(pub != NULL);
	check_public(pub);
	FUZZ_CHECK(consent_jwk_check(pub, strlen(pub), &again, kid_again) == KMS_OK);
	FUZZ_CHECK(strcmp(kid, kid_again) == 0 && strcmp(pub, again) == 0);
	free(pub);
	free(again);
	return 0;
}
