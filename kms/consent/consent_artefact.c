/*
 * consent_artefact.c: the consent artefact's members read with jansson, the
 * span of ConsentDetail found in the document's own bytes, and the detached
 * JWS verified over them with libcjose (docs/consent.md).
 */
#include "kms/consent/consent_artefact.h"

#include <stdlib.h>
#include <string.h>

#include <cjose/cjose.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "common/error.h"
#include "common/rfc3339.h"

#define JSON_DEPTH_MAX 32

bool consent_id_valid(const char *id, size_t len)
{
	if (len < 1 || len > CONSENT_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = id[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == ':' || c == '-'))
			return false;
	}
	return true;
}

/* ---- ConsentDetail's bytes: a skipper over a document jansson accepted ---- */

static void skip_ws(const uint8_t *d, size_t n, size_t *i)
{
	while (*i < n && (d[*i] == ' ' || d[*i] == '\t' || d[*i] == '\n' || d[*i] == '\r'))
		(*i)++;
}

/* d[*i] is '"': moves past the closing quote. */
static bool skip_string(const uint8_t *d, size_t n, size_t *i)
{
	for ((*i)++; *i < n; (*i)++) {
		if (d[*i] == '\\')
			(*i)++;
		else if (d[*i] == '"') {
			(*i)++;
			return true;
		}
	}
	return false;
}

static bool skip_value(const uint8_t *d, size_t n, size_t *i, int depth)
{
	if (depth > JSON_DEPTH_MAX || *i >= n)
		return false;
	uint8_t c = d[*i];
	if (c == '"')
		return skip_string(d, n, i);
	if (c == '{' || c == '[') {
		uint8_t close = c == '{' ? '}' : ']';
		(*i)++;
		skip_ws(d, n, i);
		if (*i < n && d[*i] == close) {
			(*i)++;
			return true;
		}
		for (;;) {
			if (c == '{') {
				if (*i >= n || d[*i] != '"' || !skip_string(d, n, i))
					return false;
				skip_ws(d, n, i);
				if (*i >= n || d[*i] != ':')
					return false;
				(*i)++;
				skip_ws(d, n, i);
			}
			if (!skip_value(d, n, i, depth + 1))
				return false;
			skip_ws(d, n, i);
			if (*i < n && d[*i] == ',') {
				(*i)++;
				skip_ws(d, n, i);
				continue;
			}
			if (*i < n && d[*i] == close) {
				(*i)++;
				return true;
			}
			return false;
		}
	}
	/* A number, true, false or null: up to the next delimiter. */
	size_t start = *i;
	while (*i < n && d[*i] != ',' && d[*i] != '}' && d[*i] != ']' && d[*i] != ' ' &&
	       d[*i] != '\t' && d[*i] != '\n' && d[*i] != '\r')
		(*i)++;
	return *i > start;
}

/* The span of the top-level member named exactly "ConsentDetail" (written
 * without escapes; jansson refused a duplicate, so there is one). */
static kms_status detail_span(const uint8_t *d, size_t n, size_t *off, size_t *len)
{
	static const char name[] = "\"ConsentDetail\"";
	size_t i = 0;
	skip_ws(d, n, &i);
	KMS_ENSURE(i < n && d[i] == '{', KMS_INVALID_ARGUMENT, "consent artefact: not a JSON object");
	i++;
	for (;;) {
		skip_ws(d, n, &i);
		if (i >= n || d[i] != '"')
			break;
		size_t key = i;
		if (!skip_string(d, n, &i))
			break;
		bool match = i - key == sizeof name - 1 && !memcmp(d + key, name, sizeof name - 1);
		skip_ws(d, n, &i);
		if (i >= n || d[i] != ':')
			break;
		i++;
		skip_ws(d, n, &i);
		size_t value = i;
		if (!skip_value(d, n, &i, 1))
			break;
		if (match) {
			KMS_ENSURE(d[value] == '{', KMS_INVALID_ARGUMENT,
			           "consent artefact: ConsentDetail must be an object");
			*off = value;
			*len = i - value;
			return KMS_OK;
		}
		skip_ws(d, n, &i);
		if (i < n && d[i] == ',') {
			i++;
			continue;
		}
		break;
	}
	return KMS_FAIL(KMS_INVALID_ARGUMENT, "consent artefact: no ConsentDetail member (written "
	                "without escapes) at its top level");
}

/* ---- members ---- */

static kms_status get_string(json_t *obj, const char *where, const char *name, const char **out,
                             size_t *len)
{
	json_t *v = json_object_get(obj, name);
	KMS_ENSURE(json_is_string(v), KMS_INVALID_ARGUMENT,
	           "consent artefact: %s%s must be a string", where, name);
	*out = json_string_value(v);
	*len = json_string_length(v);
	return KMS_OK;
}

static kms_status get_time(json_t *detail, const char *name, int64_t *out)
{
	const char *s;
	size_t len;
	KMS_GUARD(get_string(detail, "ConsentDetail.", name, &s, &len));
	if (rfc3339_parse(s, len, out) != KMS_OK) {
		kms_error_clear();
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "consent artefact: ConsentDetail.%s is not an "
		                "RFC 3339 time", name);
	}
	return KMS_OK;
}

static bool one_of(const char *s, const char *const *set)
{
	for (; *set; set++)
		if (!strcmp(s, *set))
			return true;
	return false;
}

/* DataLife or Frequency: {"unit": one of units, "value": min..CONSENT_COUNT_MAX}. */
static kms_status get_period(json_t *detail, const char *name, const char *const *units,
                             int64_t min, char unit[static 6], int64_t *value)
{
	json_t *o = json_object_get(detail, name);
	KMS_ENSURE(json_is_object(o), KMS_INVALID_ARGUMENT,
	           "consent artefact: ConsentDetail.%s must be an object with unit and value", name);
	json_t *u = json_object_get(o, "unit"), *v = json_object_get(o, "value");
	KMS_ENSURE(json_is_string(u) && one_of(json_string_value(u), units), KMS_INVALID_ARGUMENT,
	           "consent artefact: ConsentDetail.%s.unit is not one of the units kmsd knows "
	           "(docs/consent.md)", name);
	KMS_ENSURE(json_is_integer(v) && json_integer_value(v) >= min &&
	           json_integer_value(v) <= CONSENT_COUNT_MAX, KMS_INVALID_ARGUMENT,
	           "consent artefact: ConsentDetail.%s.value must be an integer %lld to %d", name,
	           (long long)min, CONSENT_COUNT_MAX);
	snprintf(unit, 6, "%s", json_string_value(u));
	*value = (int64_t)json_integer_value(v);
	return KMS_OK;
}

static bool purpose_code_valid(const char *s, size_t len)
{
	if (len < 1 || len > CONSENT_PURPOSE_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9')))
			return false;
	return true;
}

static kms_status read_detail(json_t *detail, consent_artefact *a)
{
	static const char *const life_units[] = { "DAY", "MONTH", "YEAR", "INF", NULL };
	static const char *const freq_units[] = { "HOUR", "DAY", "MONTH", "YEAR", "INF", NULL };
	const char *s;
	size_t len;
	KMS_ENSURE(json_is_object(detail), KMS_INVALID_ARGUMENT,
	           "consent artefact: ConsentDetail must be an object");
	KMS_GUARD(get_time(detail, "consentStart", &a->start));
	KMS_GUARD(get_time(detail, "consentExpiry", &a->expiry));
	KMS_ENSURE(a->start < a->expiry, KMS_INVALID_ARGUMENT,
	           "consent artefact: ConsentDetail.consentStart must be before consentExpiry");
	KMS_GUARD(get_string(detail, "ConsentDetail.", "fetchType", &s, &len));
	KMS_ENSURE(!strcmp(s, "ONETIME") || !strcmp(s, "PERIODIC"), KMS_INVALID_ARGUMENT,
	           "consent artefact: ConsentDetail.fetchType must be ONETIME or PERIODIC");
	a->onetime = !strcmp(s, "ONETIME");
	json_t *purpose = json_object_get(detail, "Purpose");
	KMS_ENSURE(json_is_object(purpose), KMS_INVALID_ARGUMENT,
	           "consent artefact: ConsentDetail.Purpose must be an object with a code");
	KMS_GUARD(get_string(purpose, "ConsentDetail.Purpose.", "code", &s, &len));
	KMS_ENSURE(purpose_code_valid(s, len), KMS_INVALID_ARGUMENT,
	           "consent artefact: ConsentDetail.Purpose.code must be 1 to %d of [A-Za-z0-9]",
	           CONSENT_PURPOSE_MAX);
	memcpy(a->purpose, s, len + 1);
	json_t *customer = json_object_get(detail, "Customer");
	KMS_ENSURE(json_is_object(customer), KMS_INVALID_ARGUMENT,
	           "consent artefact: ConsentDetail.Customer must be an object with an id");
	KMS_GUARD(get_string(customer, "ConsentDetail.Customer.", "id", &s, &len));
	KMS_ENSURE(len >= 1 && len <= CONSENT_CUSTOMER_ID_MAX, KMS_INVALID_ARGUMENT,
	           "consent artefact: ConsentDetail.Customer.id must be 1 to %d bytes",
	           CONSENT_CUSTOMER_ID_MAX);
	memcpy(a->customer_id, s, len);
	a->customer_id_len = len;
	KMS_GUARD(get_period(detail, "DataLife", life_units, 0, a->data_life_unit,
	                     &a->data_life_value));
	KMS_GUARD(get_period(detail, "Frequency", freq_units, 1, a->frequency_unit,
	                     &a->frequency_value));
	a->data_life_end = !strcmp(a->data_life_unit, "INF")
	                           ? INT64_MAX
	                           : rfc3339_add_calendar(a->start, a->data_life_unit,
	                                                  a->data_life_value);
	KMS_ENSURE(a->data_life_end != INT64_MAX || !strcmp(a->data_life_unit, "INF"),
	           KMS_INVALID_ARGUMENT, "consent artefact: ConsentDetail.DataLife ends past the "
	           "year 9999: use unit INF for no end");
	return KMS_OK;
}

/* ---- the signature ---- */

/* base64url without padding, of a length that decodes (libcjose's decoder
 * asserts, ending the process, on a length of 1 modulo 4 and on some
 * characters outside the alphabet: everything handed to it is checked here
 * first). */
static bool b64url_ok(const char *s, size_t len)
{
	if (len % 4 == 1)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
	}
	return true;
}

/* "HEADER..SIGNATURE" with ConsentDetail's bytes put back as the payload:
 * the compact JWS libcjose reads (malloc'd). */
static kms_status attached_jws(const uint8_t *doc, const consent_artefact *a, const char *sig,
                               size_t sig_len, char **out, size_t *out_len)
{
	*out = NULL;
	const char *dots = memchr(sig, '.', sig_len);
	KMS_ENSURE(dots && dots + 1 < sig + sig_len && dots[1] == '.' &&
	           !memchr(dots + 2, '.', (size_t)(sig + sig_len - dots - 2)) && dots > sig,
	           KMS_INVALID_ARGUMENT, "consent artefact: consentDetailDigitalSignature must be "
	           "a detached JWS, HEADER..SIGNATURE");
	KMS_ENSURE(b64url_ok(sig, (size_t)(dots - sig)) &&
	           b64url_ok(dots + 2, (size_t)(sig + sig_len - dots - 2)) &&
	           sig + sig_len > dots + 2,
	           KMS_INVALID_ARGUMENT, "consent artefact: consentDetailDigitalSignature's header "
	           "and signature must be unpadded base64url");
	char *payload = NULL;
	size_t payload_len = 0;
	cjose_err err;
	KMS_ENSURE(cjose_base64url_encode(doc + a->detail_off, a->detail_len, &payload,
	                                  &payload_len, &err),
	           KMS_INTERNAL, "consent artefact: base64url encoding failed");
	size_t head = (size_t)(dots - sig), tail = sig_len - head - 2;
	size_t n = head + 1 + payload_len + 1 + tail;
	char *c = malloc(n + 1);
	if (c) {
		memcpy(c, sig, head);
		c[head] = '.';
		memcpy(c + head + 1, payload, payload_len);
		c[head + 1 + payload_len] = '.';
		memcpy(c + head + 2 + payload_len, dots + 2, tail);
		c[n] = '\0';
	}
	cjose_get_dealloc()(payload);
	KMS_ENSURE(c, KMS_INTERNAL, "out of memory");
	*out = c;
	*out_len = n;
	return KMS_OK;
}

static kms_status read_header(cjose_jws_t *jws, consent_artefact *a)
{
	json_t *h = (json_t *)cjose_jws_get_protected(jws);
	KMS_ENSURE(json_is_object(h), KMS_INVALID_ARGUMENT,
	           "consent artefact: the signature's protected header is not a JSON object");
	json_t *alg = json_object_get(h, "alg"), *kid = json_object_get(h, "kid");
	KMS_ENSURE(!json_object_get(h, "crit") && !json_object_get(h, "b64"), KMS_INVALID_ARGUMENT,
	           "consent artefact: the signature's header must not have crit or b64");
	static const char *const algs[] = { "RS256", "PS256", "ES256", NULL };
	KMS_ENSURE(json_is_string(alg) && one_of(json_string_value(alg), algs),
	           KMS_INVALID_ARGUMENT, "consent artefact: the signature's alg must be RS256, "
	           "PS256 or ES256");
	snprintf(a->alg, sizeof a->alg, "%s", json_string_value(alg));
	size_t kid_len = json_is_string(kid) ? json_string_length(kid) : 0;
	bool printable = kid_len >= 1 && kid_len <= CONSENT_KID_MAX;
	for (size_t i = 0; printable && i < kid_len; i++)
		printable = json_string_value(kid)[i] > 0x20 && json_string_value(kid)[i] < 0x7f;
	KMS_ENSURE(printable, KMS_INVALID_ARGUMENT, "consent artefact: the signature's header "
	           "needs a kid of 1 to %d printable ASCII characters", CONSENT_KID_MAX);
	memcpy(a->kid, json_string_value(kid), kid_len + 1);
	return KMS_OK;
}

/* The signature member, its header read through libcjose. */
/* The protected header as JSON with no member named twice (libcjose keeps
 * the last of two "alg"s; another verifier may keep the first). sig is
 * checked to be HEADER..SIGNATURE of base64url already. */
static kms_status header_unique(const char *sig, size_t head_len)
{
	uint8_t *json = NULL;
	size_t n = 0;
	cjose_err err;
	KMS_ENSURE(cjose_base64url_decode(sig, head_len, &json, &n, &err), KMS_INVALID_ARGUMENT,
	           "consent artefact: the signature's header is not base64url");
	json_error_t jerr;
	json_t *h = json_loadb((const char *)json, n, JSON_REJECT_DUPLICATES, &jerr);
	cjose_get_dealloc()(json);
	bool object = json_is_object(h);
	json_decref(h);
	KMS_ENSURE(object, KMS_INVALID_ARGUMENT, "consent artefact: the signature's header must "
	           "be a JSON object with no member named twice");
	return KMS_OK;
}

static kms_status read_signature(const uint8_t *doc, json_t *root, consent_artefact *a)
{
	const char *sig;
	size_t sig_len;
	KMS_GUARD(get_string(root, "", "consentDetailDigitalSignature", &sig, &sig_len));
	char *compact;
	size_t compact_len;
	KMS_GUARD(attached_jws(doc, a, sig, sig_len, &compact, &compact_len));
	kms_status hst = header_unique(sig, (size_t)((const char *)memchr(sig, '.', sig_len) - sig));
	if (hst != KMS_OK) {
		free(compact);
		return hst;
	}
	cjose_err err;
	cjose_jws_t *jws = cjose_jws_import(compact, compact_len, &err);
	free(compact);
	KMS_ENSURE(jws, KMS_INVALID_ARGUMENT, "consent artefact: consentDetailDigitalSignature "
	           "is not a JWS libcjose can read");
	kms_status st = read_header(jws, a);
	cjose_jws_release(jws);
	return st;
}

kms_status consent_artefact_parse(const uint8_t *doc, size_t len, consent_artefact *out)
{
	memset(out, 0, sizeof *out);
	KMS_ENSURE(len >= 2 && len <= CONSENT_ARTEFACT_MAX, KMS_INVALID_ARGUMENT,
	           "consent artefact: must be 2 to %d bytes of JSON", CONSENT_ARTEFACT_MAX);
	json_error_t jerr;
	json_t *root = json_loadb((const char *)doc, len, JSON_REJECT_DUPLICATES, &jerr);
	KMS_ENSURE(root, KMS_INVALID_ARGUMENT, "consent artefact: not valid JSON (line %d column "
	           "%d), or a member is named twice", jerr.line, jerr.column);
	kms_status st = KMS_OK;
	const char *s;
	size_t n;
	if (!json_is_object(root))
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "consent artefact: not a JSON object");
	if (st == KMS_OK)
		st = get_string(root, "", "consentId", &s, &n);
	if (st == KMS_OK && !consent_id_valid(s, n))
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "consent artefact: consentId must be 1 to %d "
		              "of [A-Za-z0-9._:-]", CONSENT_ID_MAX);
	if (st == KMS_OK)
		memcpy(out->id, s, n + 1);
	json_t *status = st == KMS_OK ? json_object_get(root, "status") : NULL;
	if (status && !(json_is_string(status) && !strcmp(json_string_value(status), "ACTIVE")))
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "consent artefact %s: status must be ACTIVE (or "
		              "absent) to import; pause and revoke are operations", out->id);
	if (st == KMS_OK)
		st = read_detail(json_object_get(root, "ConsentDetail"), out);
	if (st == KMS_OK)
		st = detail_span(doc, len, &out->detail_off, &out->detail_len);
	if (st == KMS_OK)
		st = read_signature(doc, root, out);
	json_decref(root);
	if (st != KMS_OK) {
		char id[CONSENT_ID_MAX + 1];
		memcpy(id, out->id, sizeof id);
		consent_artefact_clear(out);
		memcpy(out->id, id, sizeof id); /* for the audit entry */
	}
	return st;
}

kms_status consent_artefact_verify(const uint8_t *doc, size_t len, const consent_artefact *a,
                                   const char *jwk_json)
{
	KMS_ENSURE(a->detail_off + a->detail_len <= len && a->detail_len, KMS_INTERNAL,
	           "consent artefact %s: not parsed", a->id);
	cjose_err err;
	cjose_jwk_t *jwk = cjose_jwk_import(jwk_json, strlen(jwk_json), &err);
	KMS_ENSURE(jwk, KMS_INTERNAL, "consent artefact %s: the Consent Manager's stored key does "
	           "not load", a->id);
	cjose_jwk_kty_t kty = cjose_jwk_get_kty(jwk, &err);
	bool fits = (kty == CJOSE_JWK_KTY_RSA && a->alg[0] != 'E') ||
	            (kty == CJOSE_JWK_KTY_EC && !strcmp(a->alg, "ES256"));
	kms_status st = KMS_OK;
	json_t *root = NULL;
	if (!fits)
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "consent artefact %s: its alg %s does not fit the "
		              "Consent Manager's key type", a->id, a->alg);
	if (st == KMS_OK) {
		json_error_t jerr;
		root = json_loadb((const char *)doc, len, JSON_REJECT_DUPLICATES, &jerr);
		if (!root)
			st = KMS_FAIL(KMS_INVALID_ARGUMENT, "consent artefact %s: not valid JSON", a->id);
	}
	const char *sig = NULL;
	size_t sig_len = 0;
	if (st == KMS_OK)
		st = get_string(root, "", "consentDetailDigitalSignature", &sig, &sig_len);
	char *compact = NULL;
	size_t compact_len = 0;
	if (st == KMS_OK)
		st = attached_jws(doc, a, sig, sig_len, &compact, &compact_len);
	cjose_jws_t *jws = st == KMS_OK ? cjose_jws_import(compact, compact_len, &err) : NULL;
	if (st == KMS_OK && !jws)
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "consent artefact %s: the JWS does not read",
		              a->id);
	if (st == KMS_OK && !cjose_jws_verify(jws, jwk, &err))
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "consent artefact %s: its signature does not "
		              "verify under the Consent Manager's key (kid %s): altered, or signed by "
		              "another key", a->id, a->kid);
	cjose_jws_release(jws);
	free(compact);
	json_decref(root);
	cjose_jwk_release(jwk);
	return st;
}

void consent_artefact_clear(consent_artefact *a)
{
	OPENSSL_cleanse(a, sizeof *a);
}

/* ---- a Consent Manager's key ---- */

/* Every member libcjose decodes as base64url: checked before it sees them
 * (b64url_ok). */
static kms_status jwk_members_decodable(json_t *o)
{
	static const char *const members[] = { "n", "e", "x", "y", NULL };
	for (const char *const *m = members; *m; m++) {
		json_t *v = json_object_get(o, *m);
		KMS_ENSURE(!v || (json_is_string(v) && json_string_length(v) > 0 &&
		                  b64url_ok(json_string_value(v), json_string_length(v))),
		           KMS_INVALID_ARGUMENT, "JWK: member \"%s\" must be unpadded base64url", *m);
	}
	return KMS_OK;
}

/* An RSA key's public exponent, when the JWK has one: odd, 3 to 2^32 - 1
 * (e = 1 would let anyone forge a signature for the modulus). */
static kms_status jwk_exponent_sound(json_t *o)
{
	json_t *e = json_object_get(o, "e");
	if (!e)
		return KMS_OK;
	uint8_t *bytes = NULL;
	size_t n = 0;
	cjose_err err;
	bool ok = cjose_base64url_decode(json_string_value(e), json_string_length(e), &bytes, &n,
	                                 &err);
	uint64_t v = 0;
	size_t first = 0;
	while (ok && first < n && bytes[first] == 0)
		first++;
	ok = ok && n - first >= 1 && n - first <= 4;
	for (size_t i = first; ok && i < n; i++)
		v = v << 8 | bytes[i];
	cjose_get_dealloc()(bytes);
	KMS_ENSURE(ok && v >= 3 && (v & 1), KMS_INVALID_ARGUMENT,
	           "JWK: an RSA public exponent must be odd and at least 3 (65537 is usual)");
	return KMS_OK;
}

static kms_status jwk_has_no_private(json_t *o)
{
	static const char *const private_members[] = { "d", "p", "q", "dp", "dq", "qi", "oth",
		                                       "k", NULL };
	for (const char *const *m = private_members; *m; m++)
		KMS_ENSURE(!json_object_get(o, *m), KMS_INVALID_ARGUMENT,
		           "JWK: it has the private member \"%s\": register the public key only "
		           "(never send a private key to kmsd)", *m);
	return KMS_OK;
}

kms_status consent_jwk_check(const char *jwk, size_t len, char **public_json,
                             char kid[static CONSENT_KID_MAX + 1])
{
	*public_json = NULL;
	kid[0] = '\0';
	KMS_ENSURE(len >= 2 && len <= CONSENT_JWK_MAX, KMS_INVALID_ARGUMENT,
	           "JWK: must be 2 to %d bytes of JSON", CONSENT_JWK_MAX);
	json_error_t jerr;
	json_t *o = json_loadb(jwk, len, JSON_REJECT_DUPLICATES, &jerr);
	KMS_ENSURE(o, KMS_INVALID_ARGUMENT, "JWK: not valid JSON (line %d column %d), or a "
	           "member named twice", jerr.line, jerr.column);
	if (!json_is_object(o)) {
		json_decref(o);
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "JWK: not a JSON object");
	}
	kms_status st = jwk_has_no_private(o);
	if (st == KMS_OK)
		st = jwk_members_decodable(o);
	if (st == KMS_OK)
		st = jwk_exponent_sound(o);
	json_t *k = json_object_get(o, "kid");
	size_t kid_len = json_is_string(k) ? json_string_length(k) : 0;
	bool printable = kid_len >= 1 && kid_len <= CONSENT_KID_MAX;
	for (size_t i = 0; printable && i < kid_len; i++)
		printable = json_string_value(k)[i] > 0x20 && json_string_value(k)[i] < 0x7f;
	if (st == KMS_OK && !printable)
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "JWK: needs a kid of 1 to %d printable ASCII "
		              "characters (the one the Consent Manager's JWS headers name)",
		              CONSENT_KID_MAX);
	/* The kid is written out only with the public JWK: a refused key leaves
	 * both empty, whichever check refused it. */
	char kid_found[CONSENT_KID_MAX + 1];
	if (st == KMS_OK)
		memcpy(kid_found, json_string_value(k), kid_len + 1);
	json_decref(o);
	KMS_GUARD(st);
	cjose_err err;
	cjose_jwk_t *key = cjose_jwk_import(jwk, len, &err);
	KMS_ENSURE(key, KMS_INVALID_ARGUMENT, "JWK: libcjose does not read it as a key");
	cjose_jwk_kty_t kty = cjose_jwk_get_kty(key, &err);
	size_t bits = cjose_jwk_get_keysize(key, &err);
	if (kty == CJOSE_JWK_KTY_RSA && (bits < 2048 || bits > 8192))
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "JWK: an RSA key must have 2048 to 8192 bits");
	else if (kty == CJOSE_JWK_KTY_EC && cjose_jwk_EC_get_curve(key, &err) != CJOSE_JWK_EC_P_256)
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "JWK: an EC key must be on P-256");
	else if (kty != CJOSE_JWK_KTY_RSA && kty != CJOSE_JWK_KTY_EC)
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "JWK: kty must be RSA or EC");
	char *pub = st == KMS_OK ? cjose_jwk_to_json(key, false, &err) : NULL;
	if (st == KMS_OK && !pub)
		st = KMS_FAIL(KMS_INTERNAL, "JWK: libcjose could not write it back");
	cjose_jwk_release(key);
	if (st == KMS_OK) {
		*public_json = strdup(pub);
		cjose_get_dealloc()(pub);
		KMS_ENSURE(*public_json, KMS_INTERNAL, "out of memory");
		memcpy(kid, kid_found, strlen(kid_found) + 1);
	}
	return st;
}
