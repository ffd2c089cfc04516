/*
 * fuzz_artefact: the bytes an importer controls in ImportConsent
 * (docs/consent.md). Any input is read (consent_artefact_parse) and, when
 * it reads, verified with the vectors' Consent Manager key. Checked:
 *   - nothing crashes, leaks or reads out of bounds (the sanitizers);
 *   - what reads has a ConsentDetail span inside the input, starting '{'
 *     and ending '}', and a kid of 1..128 printable characters;
 *   - what verifies carries, at its ConsentDetail span, exactly the bytes
 *     the vector's signer signed: no other bytes pass that key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kms/consent/consent_artefact.h"
#include "tests/support/fuzz.h"

static char *slurp(const char *name, size_t *len)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", KMS_CONSENT_VECTORS, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		abort();
	char *buf = calloc(1, 70000);
	*len = fread(buf, 1, 69999, f);
	fclose(f);
	return buf;
}

static char *jwk, *vector;
static size_t vector_detail_off, vector_detail_len;

static void load(void)
{
	if (jwk)
		return;
	size_t len;
	jwk = slurp("cm-rsa.jwk", &len);
	vector = slurp("artefact-101.json", &len);
	consent_artefact a;
	if (consent_artefact_parse((const uint8_t *)vector, len, &a) != KMS_OK)
		abort();
	vector_detail_off = a.detail_off;
	vector_detail_len = a.detail_len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	load();
	consent_artefact a;
	if (consent_artefact_parse(data, size, &a) != KMS_OK) {
		kms_error_clear();
		return 0;
	}
	if (a.detail_off + a.detail_len > size || a.detail_len < 2 ||
	    data[a.detail_off] != '{' || data[a.detail_off + a.detail_len - 1] != '}')
		abort();
	size_t kid = strlen(a.kid);
	if (kid < 1 || kid > CONSENT_KID_MAX)
		abort();
	if (consent_artefact_verify(data, size, &a, jwk) == KMS_OK) {
		if (a.detail_len != vector_detail_len ||
		    memcmp(data + a.detail_off, vector + vector_detail_off, a.detail_len) != 0)
			abort();
	} else {
		kms_error_clear();
	}
	consent_artefact_clear(&a);
	return 0;
}
