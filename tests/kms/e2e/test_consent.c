/*
 * test_consent: consent enforced by a real kmsd (docs/consent.md).
 *
 * A Consent Manager (an EC key made here, registered with an HMAC dp key)
 * signs artefacts; a key whose policy has RequireConsent is used under
 * them. Shown:
 *   - import refuses an artefact with one byte of ConsentDetail changed,
 *     one signed by another key under the manager's kid, and one from an
 *     unknown manager; nothing of them is stored; a good one is stored
 *     with its Customer.id's pseudonym, the one Pseudonymize gives;
 *   - Decrypt with purpose 102 under an artefact for 101: denied; with 101:
 *     allowed; revoked: the very next request is denied, and the earlier
 *     entries are still in the verified log, unchanged;
 *   - a ONETIME artefact's second decrypt, an artefact not yet valid, one
 *     expired, a Frequency limit reached, a missing context, a paused
 *     artefact (and resumed), a data principal that is not the artefact's:
 *     each denied with its reason;
 *   - every one of these requests is audited with the consent's id,
 *     purpose, decision and reason, and `kms-admin report evidence` counts
 *     exactly these consent-gated uses and denials.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include "tests/support/audit_check.h"
#include "tests/support/consent_test.h"
#include "tests/support/harness.h"
#include "tests/support/run_bin.h"

static harness H;
static consent_signer cm, other;
static char dp_key[35], key[35];
static char dp[64];         /* the pseudonym of CUSTOMER */
static char dp_other[64];   /* another person's */
#define CUSTOMER "9999999999@finvu"

static unsigned seq;

static Kms__Response *call(Kms__Request *req, const char *id)
{
	req->request_id = (char *)id;
	Kms__Response *r = harness_call(&H, req);
	assert_non_null(r);
	return r;
}

static Kms__Response *call_ok(Kms__Request *req, const char *what)
{
	char id[32];
	snprintf(id, sizeof id, "setup-%u", seq++);
	Kms__Response *r = call(req, id);
	if (r->status != KMS__STATUS__OK)
		fail_msg("%s: %s", what, r->message);
	return r;
}

static void create_key(const char *policy, Kms__KeySpec spec, Kms__KeyUsage usage, char out[35])
{
	Kms__CreateKeyRequest ck = KMS__CREATE_KEY_REQUEST__INIT;
	ck.description = "consent";
	ck.key_spec = spec;
	ck.key_usage = usage;
	ck.policy = (char *)(policy ? policy : "");
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	req.create_key = &ck;
	Kms__Response *r = call_ok(&req, "create_key");
	snprintf(out, 35, "%s", r->create_key->key_metadata->key_id);
	kms__response__free_unpacked(r, NULL);
}

static void pseudonymize(const char *value, char out[64])
{
	Kms__PseudonymizeRequest p = KMS__PSEUDONYMIZE_REQUEST__INIT;
	ProtobufCBinaryData v = { strlen(value), (uint8_t *)value };
	p.key_id = dp_key;
	p.values = &v;
	p.n_values = 1;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_PSEUDONYMIZE;
	req.pseudonymize = &p;
	Kms__Response *r = call_ok(&req, "pseudonymize");
	snprintf(out, 64, "%s", r->pseudonymize->pseudonyms[0]);
	kms__response__free_unpacked(r, NULL);
}

static void add_cm(const char *id, const consent_signer *s)
{
	Kms__AddConsentManagerRequest a = KMS__ADD_CONSENT_MANAGER_REQUEST__INIT;
	a.id = (char *)id;
	a.jwk = s->public_jwk;
	a.dp_key_id = dp_key;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_ADD_CONSENT_MANAGER;
	req.add_consent_manager = &a;
	kms__response__free_unpacked(call_ok(&req, "add_consent_manager"), NULL);
}

static Kms__Response *import(const char *doc, size_t len, const char *id)
{
	Kms__ImportConsentRequest ic = KMS__IMPORT_CONSENT_REQUEST__INIT;
	ic.artefact = (ProtobufCBinaryData){ len, (uint8_t *)doc };
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_IMPORT_CONSENT;
	req.import_consent = &ic;
	return call(&req, id);
}

/* An artefact for CUSTOMER signed by cm, imported; spec's customer and
 * signer may be overridden by the caller beforehand. */
static void import_ok(consent_spec *spec)
{
	if (!spec->customer)
		spec->customer = CUSTOMER;
	size_t len;
	char *doc = consent_artefact_make(&cm, spec, &len);
	char id[32];
	snprintf(id, sizeof id, "import-%u", seq++);
	Kms__Response *r = import(doc, len, id);
	if (r->status != KMS__STATUS__OK)
		fail_msg("import %s: %s", spec->id, r->message);
	kms__response__free_unpacked(r, NULL);
	free(doc);
}

static void set_status(const char *id, Kms__ConsentAction action, const char *rid)
{
	Kms__SetConsentStatusRequest s = KMS__SET_CONSENT_STATUS_REQUEST__INIT;
	s.consent_id = (char *)id;
	s.action = action;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_SET_CONSENT_STATUS;
	req.set_consent_status = &s;
	Kms__Response *r = call(&req, rid);
	if (r->status != KMS__STATUS__OK)
		fail_msg("set_consent_status %s: %s", id, r->message);
	kms__response__free_unpacked(r, NULL);
}

/* ---- the data plane under consent ---- */

typedef struct ctx3 {
	Kms__StringPair p[3], *pp[3];
	size_t n;
} ctx3;

/* The context {dp, purpose, consent}; a NULL value leaves the pair out. */
static void ctx_make(ctx3 *c, const char *who, const char *purpose, const char *consent)
{
	const char *keys[] = { "dp", "purpose", "consent" };
	const char *values[] = { who, purpose, consent };
	c->n = 0;
	for (size_t i = 0; i < 3; i++) {
		if (!values[i])
			continue;
		kms__string_pair__init(&c->p[c->n]);
		c->p[c->n].key = (char *)keys[i];
		c->p[c->n].value = (char *)values[i];
		c->pp[c->n] = &c->p[c->n];
		c->n++;
	}
}

static Kms__Response *encrypt(const ctx3 *c, const char *rid)
{
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	e.key_id = key;
	e.plaintext = (ProtobufCBinaryData){ 6, (uint8_t *)"salary" };
	e.encryption_context = (Kms__StringPair **)c->pp;
	e.n_encryption_context = c->n;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &e;
	return call(&req, rid);
}

static Kms__Response *decrypt(const ProtobufCBinaryData *blob, const ctx3 *c, const char *rid)
{
	Kms__DecryptRequest d = KMS__DECRYPT_REQUEST__INIT;
	d.ciphertext_blob = *blob;
	d.encryption_context = (Kms__StringPair **)c->pp;
	d.n_encryption_context = c->n;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_DECRYPT;
	req.decrypt = &d;
	return call(&req, rid);
}

/* A blob sealed under consent `consent` for purpose (must be allowed). */
static Kms__Response *seal(const char *consent, const char *purpose, const char *rid)
{
	ctx3 c;
	ctx_make(&c, dp, purpose, consent);
	Kms__Response *r = encrypt(&c, rid);
	if (r->status != KMS__STATUS__OK)
		fail_msg("encrypt under %s: %s", consent, r->message);
	return r;
}

static void expect_status(Kms__Response *r, Kms__Status want, const char *needle)
{
	if (r->status != want)
		fail_msg("status %d (%s), want %d", r->status, r->message, want);
	if (needle && !strstr(r->message, needle))
		fail_msg("message \"%s\" does not say \"%s\"", r->message, needle);
	kms__response__free_unpacked(r, NULL);
}

/* ---- tests ---- */

static void import_refuses_forgeries(void **state)
{
	(void)state;
	int64_t now = (int64_t)time(NULL);
	consent_spec spec = { .id = "c-forged", .customer = CUSTOMER, .purpose = "101",
		              .start = now - 3600, .expiry = now + 86400 };
	size_t len;
	char *doc = consent_artefact_make(&cm, &spec, &len);
	/* One byte of ConsentDetail changed: the purpose 101 becomes 102. */
	char *code = strstr(doc, "\"code\": \"101\"");
	assert_non_null(code);
	code[strlen("\"code\": \"10")] = '2';
	expect_status(import(doc, len, "forged-byte"), KMS__STATUS__INVALID_ARGUMENT,
	              "does not verify");
	free(doc);
	/* Signed by another key under the manager's kid. */
	consent_signer impostor;
	consent_signer_make(&impostor, cm.kid);
	doc = consent_artefact_make(&impostor, &spec, &len);
	expect_status(import(doc, len, "forged-signer"), KMS__STATUS__INVALID_ARGUMENT,
	              "does not verify");
	free(doc);
	consent_signer_free(&impostor);
	/* From a Consent Manager nobody registered. */
	consent_signer unknown;
	consent_signer_make(&unknown, "unknown-cm-1");
	doc = consent_artefact_make(&unknown, &spec, &len);
	expect_status(import(doc, len, "forged-unknown"), KMS__STATUS__NOT_FOUND,
	              "no registered Consent Manager signs with kid unknown-cm-1");
	free(doc);
	consent_signer_free(&unknown);
	/* None of them was stored. */
	Kms__DescribeConsentRequest d = KMS__DESCRIBE_CONSENT_REQUEST__INIT;
	d.consent_id = "c-forged";
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_DESCRIBE_CONSENT;
	req.describe_consent = &d;
	expect_status(call(&req, "describe-forged"), KMS__STATUS__NOT_FOUND, NULL);

	/* The genuine one: stored with the pseudonym Pseudonymize gives, never
	 * the id; the same bytes again change nothing. */
	doc = consent_artefact_make(&cm, &spec, &len);
	Kms__Response *r = import(doc, len, "import-genuine");
	assert_int_equal(r->status, KMS__STATUS__OK);
	assert_string_equal(r->import_consent->consent->data_principal, dp);
	assert_string_equal(r->import_consent->consent->purpose, "101");
	assert_string_equal(r->import_consent->consent->status, "ACTIVE");
	assert_false(r->import_consent->already_imported);
	kms__response__free_unpacked(r, NULL);
	r = import(doc, len, "import-again");
	assert_int_equal(r->status, KMS__STATUS__OK);
	assert_true(r->import_consent->already_imported);
	kms__response__free_unpacked(r, NULL);
	/* Other bytes under the same id: refused. */
	spec.purpose = "103";
	char *changed = consent_artefact_make(&cm, &spec, &len);
	expect_status(import(changed, len, "import-changed"), KMS__STATUS__FAILED_PRECONDITION,
	              "imported before with other bytes");
	free(changed);
	free(doc);
	/* The same signed ConsentDetail under another consentId (which the
	 * signature does not cover): refused, so a used or revoked consent
	 * cannot start afresh. */
	spec.purpose = "101";
	doc = consent_artefact_make(&cm, &spec, &len);
	char *id = strstr(doc, "\"consentId\": \"c-forged\"");
	assert_non_null(id);
	memcpy(id + strlen("\"consentId\": \"c-"), "FORGED", 6);
	expect_status(import(doc, len, "import-replayed"), KMS__STATUS__FAILED_PRECONDITION,
	              "imported before under another consentId");
	free(doc);
	assert_false(harness_log_contains(&H, CUSTOMER));
}

static void purpose_and_revocation(void **state)
{
	(void)state;
	int64_t now = (int64_t)time(NULL);
	consent_spec a = { .id = "c-101", .purpose = "101", .start = now - 3600,
		           .expiry = now + 86400 };
	import_ok(&a);
	Kms__Response *sealed = seal("c-101", "101", "seal-101");
	ProtobufCBinaryData blob = sealed->encrypt->ciphertext_blob;
	ctx3 c;
	ctx_make(&c, dp, "102", "c-101");
	expect_status(decrypt(&blob, &c, "decrypt-102"), KMS__STATUS__ACCESS_DENIED,
	              "given for another purpose");
	ctx_make(&c, dp, "101", "c-101");
	Kms__Response *r = decrypt(&blob, &c, "decrypt-101");
	assert_int_equal(r->status, KMS__STATUS__OK);
	assert_memory_equal(r->decrypt->plaintext.data, "salary", 6);
	kms__response__free_unpacked(r, NULL);
	/* Another person's pseudonym under this artefact. */
	ctx_make(&c, dp_other, "101", "c-101");
	expect_status(encrypt(&c, "encrypt-other-dp"), KMS__STATUS__ACCESS_DENIED,
	              "another data principal");
	/* Revoked: the very next request is denied. */
	set_status("c-101", KMS__CONSENT_ACTION__CONSENT_REVOKE, "revoke-101");
	ctx_make(&c, dp, "101", "c-101");
	expect_status(decrypt(&blob, &c, "decrypt-after-revoke"), KMS__STATUS__ACCESS_DENIED,
	              "revoked");
	kms__response__free_unpacked(sealed, NULL);
}

static void limits_and_window(void **state)
{
	(void)state;
	int64_t now = (int64_t)time(NULL);
	/* ONETIME: encrypting is not a use; the first decrypt is, the second
	 * is refused. */
	consent_spec once = { .id = "c-once", .purpose = "101", .start = now - 60,
		              .expiry = now + 86400, .onetime = true };
	import_ok(&once);
	Kms__Response *sealed = seal("c-once", "101", "seal-once");
	ctx3 c;
	ctx_make(&c, dp, "101", "c-once");
	expect_status(decrypt(&sealed->encrypt->ciphertext_blob, &c, "once-1"), KMS__STATUS__OK,
	              NULL);
	expect_status(decrypt(&sealed->encrypt->ciphertext_blob, &c, "once-2"),
	              KMS__STATUS__ACCESS_DENIED, "ONETIME");
	kms__response__free_unpacked(sealed, NULL);

	/* Not yet valid; expired. */
	consent_spec later = { .id = "c-later", .purpose = "101", .start = now + 86400,
		               .expiry = now + 2 * 86400 };
	import_ok(&later);
	ctx_make(&c, dp, "101", "c-later");
	expect_status(encrypt(&c, "encrypt-later"), KMS__STATUS__ACCESS_DENIED, "not started");
	consent_spec gone = { .id = "c-gone", .purpose = "101", .start = now - 2 * 86400,
		              .expiry = now - 86400 };
	import_ok(&gone);
	ctx_make(&c, dp, "101", "c-gone");
	expect_status(encrypt(&c, "encrypt-gone"), KMS__STATUS__ACCESS_DENIED, "expired");

	/* Frequency: 2 a year. Three decrypts inside one UTC year: if the year
	 * is about to turn, wait until it has (bounded: at most 10 minutes
	 * before midnight on 31 December). */
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	if (tm.tm_mon == 11 && tm.tm_mday == 31 && tm.tm_hour == 23 && tm.tm_min >= 50)
		sleep((unsigned)(60 * (60 - tm.tm_min) + 5));
	now = (int64_t)time(NULL);
	consent_spec freq = { .id = "c-freq", .purpose = "101", .start = now - 60,
		              .expiry = now + 86400, .freq_unit = "YEAR", .freq_value = 2 };
	import_ok(&freq);
	sealed = seal("c-freq", "101", "seal-freq");
	ctx_make(&c, dp, "101", "c-freq");
	expect_status(decrypt(&sealed->encrypt->ciphertext_blob, &c, "freq-1"), KMS__STATUS__OK,
	              NULL);
	expect_status(decrypt(&sealed->encrypt->ciphertext_blob, &c, "freq-2"), KMS__STATUS__OK,
	              NULL);
	expect_status(decrypt(&sealed->encrypt->ciphertext_blob, &c, "freq-3"),
	              KMS__STATUS__ACCESS_DENIED, "Frequency");
	kms__response__free_unpacked(sealed, NULL);

	/* A dp that is not a pseudonym (a person's id itself; the context is
	 * logged as given, so not CUSTOMER's, which no entry may hold). */
	ctx_make(&c, "7777777777@finvu", "101", "c-freq");
	expect_status(encrypt(&c, "encrypt-raw-dp"), KMS__STATUS__ACCESS_DENIED,
	              "pseudonymize the identifier first");
	/* No consent in the context. */
	ctx_make(&c, dp, "101", NULL);
	expect_status(encrypt(&c, "encrypt-no-consent"), KMS__STATUS__ACCESS_DENIED,
	              "needs dp, purpose and consent");
	/* Paused, then resumed. */
	consent_spec p = { .id = "c-pause", .purpose = "101", .start = now - 60,
		           .expiry = now + 86400 };
	import_ok(&p);
	set_status("c-pause", KMS__CONSENT_ACTION__CONSENT_PAUSE, "pause");
	ctx_make(&c, dp, "101", "c-pause");
	expect_status(encrypt(&c, "encrypt-paused"), KMS__STATUS__ACCESS_DENIED, "paused");
	set_status("c-pause", KMS__CONSENT_ACTION__CONSENT_RESUME, "resume");
	expect_status(encrypt(&c, "encrypt-resumed"), KMS__STATUS__OK, NULL);
}

/* The evidence pack of the whole log: the consent-gated uses per purpose
 * and the consent denials per reason are exactly the ones above. */
static json_t *pack_json(const char *dir, const char *name)
{
	char path[800];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	json_error_t jerr;
	json_t *j = json_load_file(path, 0, &jerr);
	if (!j)
		fail_msg("%s: %s", path, jerr.text);
	return j;
}

static json_int_t count_in(json_t *list, const char *member, const char *name)
{
	size_t i;
	json_t *row;
	json_array_foreach(list, i, row)
		if (!strcmp(json_string_value(json_object_get(row, member)), name))
			return json_integer_value(json_object_get(row, "count"));
	return 0;
}

static void evidence(void **state)
{
	(void)state;
	/* Every request so far under a signed checkpoint. */
	Kms__HealthRequest hr = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &hr;
	Kms__Response *r = call(&req, "health-before-pack");
	uint64_t size = r->health->audit_size;
	kms__response__free_unpacked(r, NULL);
	audit_cp cp;
	audit_wait_checkpoint(&H, size, 20000, &cp);
	audit_cp_free(&cp);
	char dir[700];
	snprintf(dir, sizeof dir, "%s/evidence", H.dir);
	const char *args[] = { "report", "evidence", "--since", "2000-01-01T00:00:00Z",
		               "--until", "9999-01-01T00:00:00Z", "-o", dir, NULL };
	run_bin_result out = run_kms_admin(H.ipc_url, args);
	if (out.code != 0)
		fail_msg("kms-admin report evidence: exit %d: %s", out.code, out.err);
	run_bin_free(&out);
	json_t *uses = pack_json(dir, "consent-uses.json");
	json_t *gated = json_object_get(uses, "consent_gated");
	/* seal-101, decrypt-101, seal-once, once-1, seal-freq, freq-1, freq-2,
	 * encrypt-resumed. */
	assert_int_equal(count_in(gated, "purpose", "101"), 8);
	assert_int_equal(json_array_size(gated), 1);
	json_decref(uses);
	json_t *denials = pack_json(dir, "denials.json");
	json_t *consent = json_object_get(denials, "consent");
	static const char *const reasons[] = { "purpose_mismatch", "dp_mismatch", "revoked",
		                               "onetime_used", "not_yet_valid", "expired",
		                               "frequency_exceeded", "dp_not_pseudonym",
		                               "missing_context", "paused" };
	for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
		if (count_in(consent, "reason", reasons[i]) != 1)
			fail_msg("evidence: consent denials for %s: %lld, want 1", reasons[i],
			         (long long)count_in(consent, "reason", reasons[i]));
	assert_int_equal(json_array_size(consent), sizeof reasons / sizeof reasons[0]);
	json_decref(denials);
}

/* Each request above is audited with its consent's decision and reason;
 * the log verifies, so the entries before the revocation are unchanged. */
static void audited(void **state)
{
	(void)state;
	static const struct {
		const char *rid, *consent, *decision, *reason;
	} want[] = {
		{ "seal-101", "c-101", "allow", "active" },
		{ "decrypt-102", "c-101", "deny", "purpose_mismatch" },
		{ "decrypt-101", "c-101", "allow", "active" },
		{ "encrypt-other-dp", "c-101", "deny", "dp_mismatch" },
		{ "decrypt-after-revoke", "c-101", "deny", "revoked" },
		{ "once-1", "c-once", "allow", "active" },
		{ "once-2", "c-once", "deny", "onetime_used" },
		{ "encrypt-later", "c-later", "deny", "not_yet_valid" },
		{ "encrypt-gone", "c-gone", "deny", "expired" },
		{ "freq-2", "c-freq", "allow", "active" },
		{ "freq-3", "c-freq", "deny", "frequency_exceeded" },
		{ "encrypt-raw-dp", "c-freq", "deny", "dp_not_pseudonym" },
		{ "encrypt-no-consent", "", "deny", "missing_context" },
		{ "encrypt-paused", "c-pause", "deny", "paused" },
		{ "encrypt-resumed", "c-pause", "allow", "active" },
	};
	audit_cp cp;
	audit_get_checkpoint(&H, &cp);
	assert_int_equal(harness_stop(&H), 0);
	char pub[700];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	audit_entries e;
	audit_load(pub, cp.vkey, NULL, &e);
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		json_t *entry = NULL;
		if (audit_count_id(&e, want[i].rid, &entry) != 1 || !entry)
			fail_msg("%s: not exactly one entry", want[i].rid);
		json_t *c = json_object_get(entry, "consent");
		if (!json_is_object(c))
			fail_msg("%s: no consent object", want[i].rid);
		assert_string_equal(audit_str(c, "id"), want[i].consent);
		assert_string_equal(audit_str(c, "decision"), want[i].decision);
		assert_string_equal(audit_str(c, "reason"), want[i].reason);
		assert_string_equal(audit_str(c, "purpose"),
		                    strcmp(want[i].rid, "decrypt-102") ? "101" : "102");
		if (!strcmp(want[i].decision, "deny"))
			assert_string_equal(audit_str(json_object_get(entry, "authz"), "decision"),
			                    "deny");
	}
	/* The import and the revocation, by whom. */
	json_t *entry = NULL;
	assert_int_equal(audit_count_phase(&e, "revoke-101", "outcome", &entry), 1);
	assert_string_equal(audit_str(json_object_get(entry, "consent"), "action"), "REVOKE");
	/* The refused forgeries too, and no entry names the person's id. */
	assert_int_equal(audit_count_phase(&e, "forged-signer", "outcome", &entry), 1);
	assert_string_equal(audit_str(entry, "status"), "INVALID_ARGUMENT");
	for (uint64_t i = 0; i < e.n; i++) {
		char *text = json_dumps(e.items[i], 0);
		assert_null(strstr(text, CUSTOMER));
		free(text);
	}
	audit_entries_free(&e);
	audit_cp_free(&cp);
}

static const char consent_policy[] =
        "{\"Version\":\"2024-01-01\",\"RequireConsent\":true,\"Statement\":["
        "{\"Sid\":\"admins\",\"Effect\":\"Allow\",\"Principal\":\"test-admin\","
        "\"Action\":\"*\"}]}";

static int setup(void **state)
{
	(void)state;
	harness_options o = { 0 };
	memset(&H, 0, sizeof H);
	if (!harness_start(&H, &o))
		return -1;
	create_key(NULL, KMS__KEY_SPEC__HMAC_SHA256, KMS__KEY_USAGE__GENERATE_VERIFY_MAC, dp_key);
	create_key(consent_policy, KMS__KEY_SPEC__AES_256, KMS__KEY_USAGE__ENCRYPT_DECRYPT, key);
	pseudonymize(CUSTOMER, dp);
	pseudonymize("8888888888@finvu", dp_other);
	consent_signer_make(&cm, "finvu-1");
	consent_signer_make(&other, "onemoney-1");
	add_cm("finvu", &cm);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	consent_signer_free(&cm);
	consent_signer_free(&other);
	if (H.pid > 0)
		harness_kill9(&H);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(import_refuses_forgeries),
		cmocka_unit_test(purpose_and_revocation),
		cmocka_unit_test(limits_and_window),
		cmocka_unit_test(evidence),
		cmocka_unit_test(audited),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
