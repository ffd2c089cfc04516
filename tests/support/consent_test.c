/* consent_test.c: test Consent Managers (consent_test.h). */
#include "tests/support/consent_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjose/cjose.h>
#include <jansson.h>

static void die(const char *what)
{
	fprintf(stderr, "consent_test: %s\n", what);
	abort();
}

void consent_signer_make(consent_signer *s, const char *kid)
{
	cjose_err err;
	memset(s, 0, sizeof *s);
	snprintf(s->kid, sizeof s->kid, "%s", kid);
	cjose_jwk_t *k = cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, &err);
	if (!k || !cjose_jwk_set_kid(k, kid, strlen(kid), &err))
		die("cannot make an EC key");
	char *pub = cjose_jwk_to_json(k, false, &err);
	if (!pub)
		die("cannot write a JWK");
	s->public_jwk = strdup(pub);
	cjose_get_dealloc()(pub);
	s->jwk = k;
}

void consent_signer_free(consent_signer *s)
{
	cjose_jwk_release(s->jwk);
	free(s->public_jwk);
	memset(s, 0, sizeof *s);
}

static void time_text(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
}

char *consent_artefact_make(const consent_signer *s, const consent_spec *spec, size_t *len)
{
	char start[32], expiry[32];
	time_text(spec->start, start);
	time_text(spec->expiry, expiry);
	char detail[2048];
	int n = snprintf(detail, sizeof detail,
	                 "{\"consentStart\": \"%s\", \"consentExpiry\": \"%s\", "
	                 "\"consentMode\": \"STORE\", \"fetchType\": \"%s\", "
	                 "\"consentTypes\": [\"TRANSACTIONS\"], \"fiTypes\": [\"DEPOSIT\"], "
	                 "\"DataConsumer\": {\"id\": \"fiu-test\", \"type\": \"FIU\"}, "
	                 "\"Customer\": {\"id\": \"%s\"}, "
	                 "\"Purpose\": {\"code\": \"%s\", \"text\": \"test %s\"}, "
	                 "\"DataLife\": {\"unit\": \"%s\", \"value\": %d}, "
	                 "\"Frequency\": {\"unit\": \"%s\", \"value\": %d}}",
	                 start, expiry, spec->onetime ? "ONETIME" : "PERIODIC", spec->customer,
	                 spec->purpose, spec->id, spec->life_unit ? spec->life_unit : "YEAR",
	                 spec->life_unit ? spec->life_value : 1,
	                 spec->freq_unit ? spec->freq_unit : "INF",
	                 spec->freq_unit ? spec->freq_value : 1);
	if (n < 0 || (size_t)n >= sizeof detail)
		die("artefact too long");
	cjose_err err;
	cjose_header_t *h = cjose_header_new(&err);
	if (!h || !cjose_header_set(h, CJOSE_HDR_ALG, CJOSE_HDR_ALG_ES256, &err) ||
	    !cjose_header_set(h, CJOSE_HDR_KID, s->kid, &err))
		die("cannot make a JWS header");
	cjose_jws_t *jws = cjose_jws_sign(s->jwk, h, (const uint8_t *)detail, (size_t)n, &err);
	const char *compact = NULL;
	if (!jws || !cjose_jws_export(jws, &compact, &err))
		die("cannot sign");
	const char *d1 = strchr(compact, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	if (!d2)
		die("not a compact JWS");
	size_t cap = (size_t)n + strlen(compact) + 512;
	char *doc = malloc(cap);
	int m = snprintf(doc, cap,
	                 "{\"ver\": \"1.1.3\", \"consentId\": \"%s\", \"status\": \"ACTIVE\", "
	                 "\"ConsentDetail\": %s, \"consentDetailDigitalSignature\": \"%.*s%s\"}",
	                 spec->id, detail, (int)(d1 - compact + 1), compact, d2);
	cjose_jws_release(jws);
	cjose_header_release(h);
	if (m < 0 || (size_t)m >= cap)
		die("artefact too long");
	*len = (size_t)m;
	return doc;
}
