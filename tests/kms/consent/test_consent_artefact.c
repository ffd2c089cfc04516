/*
 * test_consent_artefact: docs/consent.md's artefact and rules.
 *
 * The vectors (tests/kms/consent/vectors/, made by make_vectors.py with
 * PyJWT, a JOSE implementation independent of libcjose) verify; every
 * altered copy is refused: one byte of ConsentDetail, the signature's last
 * character, alg none / HS256, a crit member, another key under the same
 * kid, a private JWK. The rules: each reason in the table's order.
 * RFC 3339 and calendar arithmetic at their edges.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "tests/support/group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjose/cjose.h>

#include "common/error.h"
#include "common/rfc3339.h"
#include "kms/consent/consent_artefact.h"
#include "kms/consent/consent_rules.h"

static char *slurp(const char *name, size_t *len)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", KMS_CONSENT_VECTORS, name);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	static char buf[70000];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *out = malloc(n + 1);
	assert_non_null(out);
	memcpy(out, buf, n + 1);
	*len = n;
	return out;
}

static char *jwk_text(void)
{
	size_t len;
	char *j = slurp("cm-rsa.jwk", &len);
	char *pub, kid[CONSENT_KID_MAX + 1];
	assert_int_equal(consent_jwk_check(j, len, &pub, kid), KMS_OK);
	assert_string_equal(kid, "finvu-1");
	free(j);
	return pub;
}

static kms_status import(const char *doc, size_t len, const char *jwk, consent_artefact *a)
{
	kms_status st = consent_artefact_parse((const uint8_t *)doc, len, a);
	if (st == KMS_OK)
		st = consent_artefact_verify((const uint8_t *)doc, len, a, jwk);
	return st;
}

static void test_vector_verifies(void **state)
{
	(void)state;
	size_t len;
	char *doc = slurp("artefact-101.json", &len);
	char *jwk = jwk_text();
	consent_artefact a;
	assert_int_equal(import(doc, len, jwk, &a), KMS_OK);
	assert_string_equal(a.id, "654024c8-29c8-11e8-8868-0289437bf331");
	assert_string_equal(a.purpose, "101");
	assert_string_equal(a.kid, "finvu-1");
	assert_string_equal(a.alg, "RS256");
	assert_false(a.onetime);
	assert_int_equal(a.customer_id_len, strlen("9999999999@finvu"));
	assert_memory_equal(a.customer_id, "9999999999@finvu", a.customer_id_len);
	int64_t start, expiry, life;
	assert_int_equal(rfc3339_parse("2026-12-01T10:00:00Z", 20, &start), KMS_OK);
	assert_int_equal(rfc3339_parse("2027-12-01T10:00:00Z", 20, &expiry), KMS_OK);
	assert_int_equal(rfc3339_parse("2027-06-01T10:00:00Z", 20, &life), KMS_OK);
	assert_int_equal(a.start, start);
	assert_int_equal(a.expiry, expiry);
	assert_int_equal(a.data_life_end, life);
	assert_string_equal(a.frequency_unit, "DAY");
	assert_int_equal(a.frequency_value, 3);
	consent_artefact_clear(&a);
	free(doc);
	free(jwk);
}

/* Every byte inside ConsentDetail that can change while the JSON stays
 * valid and the members stay readable: a refusal each time (a sample of
 * positions, all letters and digits). */
static void test_one_byte_changed(void **state)
{
	(void)state;
	size_t len;
	char *doc = slurp("artefact-101.json", &len);
	char *jwk = jwk_text();
	char *detail = strstr(doc, "\"ConsentDetail\": {");
	assert_non_null(detail);
	char *end = strstr(detail, "\"consentDetailDigitalSignature\"");
	assert_non_null(end);
	int tried = 0;
	for (char *p = detail + 18; p < end; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
			continue;
		char saved = *p;
		*p = *p == '9' ? '8' : (*p == 'z' ? 'y' : (char)(*p + 1));
		consent_artefact a;
		kms_status st = import(doc, len, jwk, &a);
		assert_int_not_equal(st, KMS_OK);
		kms_error_clear();
		*p = saved;
		tried++;
	}
	assert_true(tried > 300);
	/* A space added inside ConsentDetail: same JSON, other bytes. */
	char *spaced = malloc(len + 2);
	size_t at = (size_t)(strstr(doc, "\"fetchType\"") - doc);
	memcpy(spaced, doc, at);
	spaced[at] = ' ';
	memcpy(spaced + at + 1, doc + at, len - at + 1);
	consent_artefact a;
	kms_status st = import(spaced, len + 1, jwk, &a);
	assert_int_equal(st, KMS_INVALID_ARGUMENT);
	assert_non_null(strstr(kms_error_message(), "does not verify"));
	kms_error_clear();
	free(spaced);
	free(doc);
	free(jwk);
}

static void test_signature_altered(void **state)
{
	(void)state;
	size_t len;
	char *doc = slurp("artefact-101.json", &len);
	char *jwk = jwk_text();
	char *q = strrchr(doc, '"'); /* the signature's closing quote */
	assert_non_null(q);
	q[-10] = q[-10] == 'A' ? 'B' : 'A';
	consent_artefact a;
	assert_int_not_equal(import(doc, len, jwk, &a), KMS_OK);
	kms_error_clear();
	free(doc);
	free(jwk);
}

/* The signature with padding added, or a character outside base64url: one
 * consent must have one form (and libcjose's decoder must never see them). */
static void test_signature_forms(void **state)
{
	(void)state;
	size_t len;
	char *doc = slurp("artefact-101.json", &len);
	char *jwk = jwk_text();
	char *q = strrchr(doc, '"');
	static const char *const tails[] = { "==", "=", "A", "!", "." };
	for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
		size_t n = (size_t)(q - doc);
		char *bad = malloc(len + 8);
		memcpy(bad, doc, n);
		strcpy(bad + n, tails[i]);
		strcat(bad, q);
		consent_artefact a;
		assert_int_not_equal(import(bad, strlen(bad), jwk, &a), KMS_OK);
		kms_error_clear();
		free(bad);
	}
	free(jwk);
	free(doc);
}

static void test_other_signer(void **state)
{
	(void)state;
	size_t len;
	char *doc = slurp("artefact-101-other-signer.json", &len);
	char *jwk = jwk_text();
	consent_artefact a;
	assert_int_equal(consent_artefact_parse((const uint8_t *)doc, len, &a), KMS_OK);
	assert_string_equal(a.kid, "finvu-1");
	assert_int_equal(consent_artefact_verify((const uint8_t *)doc, len, &a, jwk),
	                 KMS_INVALID_ARGUMENT);
	assert_non_null(strstr(kms_error_message(), "does not verify"));
	kms_error_clear();
	free(doc);
	free(jwk);
}

/* The document with its signature's header replaced by head (JSON). */
static char *with_header(const char *doc, const char *head)
{
	char *b64 = NULL;
	size_t b64_len;
	cjose_err err;
	assert_true(cjose_base64url_encode((const uint8_t *)head, strlen(head), &b64, &b64_len,
	                                   &err));
	const char *sig = strstr(doc, "\"consentDetailDigitalSignature\": \"");
	assert_non_null(sig);
	sig += strlen("\"consentDetailDigitalSignature\": \"");
	const char *dots = strstr(sig, "..");
	size_t out_len = strlen(doc) + b64_len + 1;
	char *out = malloc(out_len);
	snprintf(out, out_len, "%.*s%s%s", (int)(sig - doc), doc, b64, dots);
	cjose_get_dealloc()(b64);
	return out;
}

static void test_header_refusals(void **state)
{
	(void)state;
	size_t len;
	char *doc = slurp("artefact-101.json", &len);
	static const char *const heads[] = {
		"{\"alg\":\"none\",\"kid\":\"finvu-1\"}",
		"{\"alg\":\"HS256\",\"kid\":\"finvu-1\"}",
		"{\"alg\":\"RS256\"}",
		"{\"alg\":\"RS256\",\"kid\":\"finvu-1\",\"crit\":[\"exp\"]}",
		"{\"alg\":\"RS256\",\"kid\":\"finvu-1\",\"b64\":false}",
		"{\"alg\":\"ES256\",\"kid\":\"finvu-1\"}",
		/* Named twice: libcjose would keep the last alg, others the first. */
		"{\"alg\":\"none\",\"alg\":\"RS256\",\"kid\":\"finvu-1\"}",
		"{\"alg\":\"RS256\",\"kid\":\"other\",\"kid\":\"finvu-1\"}",
	};
	char *jwk = jwk_text();
	for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
		char *bad = with_header(doc, heads[i]);
		consent_artefact a;
		assert_int_not_equal(import(bad, strlen(bad), jwk, &a), KMS_OK);
		kms_error_clear();
		free(bad);
	}
	free(jwk);
	free(doc);
}

static void test_member_refusals(void **state)
{
	(void)state;
	static const char *const docs[] = {
		"[]",
		"{\"consentId\":\"a b\"}",
		"{\"consentId\":\"x\",\"consentId\":\"y\"}",
		"{\"consentId\":\"x\",\"status\":\"REVOKED\"}",
		"{\"consentId\":\"x\",\"ConsentDetail\":{\"consentStart\":\"2026-13-01T00:00:00Z\"}}",
		"{\"consentId\":\"x\",\"ConsentDetail\":{\"consentStart\":\"2026-12-01T00:00:00Z\","
		"\"consentExpiry\":\"2026-11-01T00:00:00Z\"}}",
		/* Before 1970 through its offset. */
		"{\"consentId\":\"x\",\"ConsentDetail\":{\"consentStart\":\"1970-01-01T00:00:00+01:00\","
		"\"consentExpiry\":\"2026-11-01T00:00:00Z\"}}",
		/* A DataLife past the year 9999 that is not INF. */
		"{\"consentId\":\"x\",\"ConsentDetail\":{\"consentStart\":\"2026-01-01T00:00:00Z\","
		"\"consentExpiry\":\"2027-01-01T00:00:00Z\",\"fetchType\":\"ONETIME\","
		"\"Purpose\":{\"code\":\"101\"},\"Customer\":{\"id\":\"c\"},"
		"\"DataLife\":{\"unit\":\"YEAR\",\"value\":99999},"
		"\"Frequency\":{\"unit\":\"INF\",\"value\":1}}}",
	};
	for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
		consent_artefact a;
		assert_int_equal(consent_artefact_parse((const uint8_t *)docs[i], strlen(docs[i]), &a),
		                 KMS_INVALID_ARGUMENT);
		kms_error_clear();
	}
}

static void test_jwk_refusals(void **state)
{
	(void)state;
	char *pub, kid[CONSENT_KID_MAX + 1];
	/* A private key: refused before it is read. */
	cjose_err err;
	cjose_jwk_t *k = cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, &err);
	assert_non_null(k);
	assert_true(cjose_jwk_set_kid(k, "cm-ec", 5, &err));
	char *priv = cjose_jwk_to_json(k, true, &err);
	assert_int_equal(consent_jwk_check(priv, strlen(priv), &pub, kid), KMS_INVALID_ARGUMENT);
	assert_non_null(strstr(kms_error_message(), "private member"));
	kms_error_clear();
	/* Its public half: accepted, kid kept. */
	char *public = cjose_jwk_to_json(k, false, &err);
	assert_int_equal(consent_jwk_check(public, strlen(public), &pub, kid), KMS_OK);
	assert_string_equal(kid, "cm-ec");
	free(pub);
	cjose_get_dealloc()(priv);
	cjose_get_dealloc()(public);
	cjose_jwk_release(k);
	/* An RSA exponent of 1 (anyone could forge), and even. */
	size_t rlen;
	char *rsa = slurp("cm-rsa.jwk", &rlen);
	char *e = strstr(rsa, "\"e\": \"AQAB\"");
	assert_non_null(e);
	memcpy(e, "\"e\": \"AQ\"  ", 11);
	assert_int_equal(consent_jwk_check(rsa, rlen, &pub, kid), KMS_INVALID_ARGUMENT);
	assert_non_null(strstr(kms_error_message(), "exponent"));
	kms_error_clear();
	memcpy(e, "\"e\": \"AAI\" ", 11);
	assert_int_equal(consent_jwk_check(rsa, rlen, &pub, kid), KMS_INVALID_ARGUMENT);
	kms_error_clear();
	free(rsa);
	/* JSON that is not an object. */
	assert_int_equal(consent_jwk_check("[1]", 3, &pub, kid), KMS_INVALID_ARGUMENT);
	kms_error_clear();
	/* A symmetric key; no kid. */
	static const char oct[] = "{\"kty\":\"oct\",\"kid\":\"x\",\"k\":\"AAAA\"}";
	assert_int_equal(consent_jwk_check(oct, strlen(oct), &pub, kid), KMS_INVALID_ARGUMENT);
	kms_error_clear();
	size_t len;
	char *j = slurp("cm-rsa.jwk", &len);
	char *nokid = strstr(j, "\"kid\"");
	memcpy(nokid, "\"kix\"", 5);
	assert_int_equal(consent_jwk_check(j, len, &pub, kid), KMS_INVALID_ARGUMENT);
	kms_error_clear();
	free(j);
}

/* ---- the rules ---- */

static store_consent active(void)
{
	store_consent c = { .id = "c1", .purpose = "101", .dp = "kp_a", .start = 1000,
		            .expiry = 300000, .data_life_end = 200000, .status = "ACTIVE",
		            .frequency_unit = "DAY", .frequency_value = 2 };
	return c;
}

static void test_rules(void **state)
{
	(void)state;
	store_consent c = active();
	assert_null(consent_rules_check(&c, "kp_a", "101", 2000, CONSENT_USE_OPEN));
	assert_string_equal(consent_rules_check(&c, "kp_a", "102", 2000, CONSENT_USE_OPEN),
	                    "purpose_mismatch");
	assert_string_equal(consent_rules_check(&c, "kp_b", "101", 2000, CONSENT_USE_SEAL),
	                    "dp_mismatch");
	assert_string_equal(consent_rules_check(&c, "kp_a", "101", 999, CONSENT_USE_OPEN),
	                    "not_yet_valid");
	assert_string_equal(consent_rules_check(&c, "kp_a", "101", 300000, CONSENT_USE_OPEN),
	                    "expired");
	assert_string_equal(consent_rules_check(&c, "kp_a", "101", 200000, CONSENT_USE_SEAL),
	                    "data_life_ended");
	c.window_start = 0;
	c.window_uses = 2;
	assert_string_equal(consent_rules_check(&c, "kp_a", "101", 2000, CONSENT_USE_OPEN),
	                    "frequency_exceeded");
	assert_null(consent_rules_check(&c, "kp_a", "101", 2000, CONSENT_USE_SEAL));
	/* The next day is a new window. */
	assert_null(consent_rules_check(&c, "kp_a", "101", 86400 + 5, CONSENT_USE_OPEN));
	c = active();
	c.onetime = true;
	c.uses = 1;
	assert_string_equal(consent_rules_check(&c, "kp_a", "101", 2000, CONSENT_USE_OPEN),
	                    "onetime_used");
	snprintf(c.status, sizeof c.status, "PAUSED");
	assert_string_equal(consent_rules_check(&c, "kp_a", "101", 2000, CONSENT_USE_SEAL),
	                    "paused");
	snprintf(c.status, sizeof c.status, "REVOKED");
	assert_string_equal(consent_rules_check(&c, "kp_a", "101", 2000, CONSENT_USE_SEAL),
	                    "revoked");
	c.manager_removed = true;
	assert_string_equal(consent_rules_check(&c, "kp_a", "101", 2000, CONSENT_USE_SEAL),
	                    "consent_manager_removed");
	int64_t ws, wm;
	c = active();
	snprintf(c.frequency_unit, sizeof c.frequency_unit, "INF");
	consent_rules_window(&c, 5000, &ws, &wm);
	assert_int_equal(wm, -1);
}

static void test_rfc3339(void **state)
{
	(void)state;
	int64_t t;
	assert_int_equal(rfc3339_parse("1970-01-01T00:00:00Z", 20, &t), KMS_OK);
	assert_int_equal(t, 0);
	assert_int_equal(rfc3339_parse("2026-12-01T10:00:00.123+05:30", 29, &t), KMS_OK);
	assert_int_equal(t, 1796119200 - 19800);
	assert_int_equal(rfc3339_parse("2024-02-29T00:00:00Z", 20, &t), KMS_OK);
	static const char *const bad[] = { "2023-02-29T00:00:00Z", "2026-12-01 10:00:00Z",
		                           "2026-12-01T10:00:60Z", "2026-12-01T10:00:00",
		                           "2026-12-01T10:00:00.Z", "1969-12-31T23:59:59Z",
		                           "2026-12-01T10:00:00+5:30" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(rfc3339_parse(bad[i], strlen(bad[i]), &t), KMS_INVALID_ARGUMENT);
		kms_error_clear();
	}
	char text[RFC3339_TEXT_SIZE];
	rfc3339_format(1796119200, text);
	assert_string_equal(text, "2026-12-01T10:00:00Z");
	/* Jan 31 + 1 month: Feb 29 in a leap year. */
	assert_int_equal(rfc3339_parse("2028-01-31T12:00:00Z", 20, &t), KMS_OK);
	int64_t want;
	assert_int_equal(rfc3339_parse("2028-02-29T12:00:00Z", 20, &want), KMS_OK);
	assert_int_equal(rfc3339_add_calendar(t, "MONTH", 1), want);
	assert_int_equal(rfc3339_parse("2029-01-31T12:00:00Z", 20, &want), KMS_OK);
	assert_int_equal(rfc3339_add_calendar(t, "YEAR", 1), want);
	assert_int_equal(rfc3339_add_calendar(t, "YEAR", 100000), INT64_MAX);
	assert_int_equal(rfc3339_parse("2028-01-01T00:00:00Z", 20, &want), KMS_OK);
	assert_int_equal(rfc3339_period_start(t, "MONTH"), want);
	assert_int_equal(rfc3339_period_start(t, "YEAR"), want);
	assert_int_equal(rfc3339_period_start(t, "HOUR"), t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vector_verifies),
		cmocka_unit_test(test_one_byte_changed),
		cmocka_unit_test(test_signature_altered),
		cmocka_unit_test(test_signature_forms),
		cmocka_unit_test(test_other_signer),
		cmocka_unit_test(test_header_refusals),
		cmocka_unit_test(test_member_refusals),
		cmocka_unit_test(test_jwk_refusals),
		cmocka_unit_test(test_rules),
		cmocka_unit_test(test_rfc3339),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
