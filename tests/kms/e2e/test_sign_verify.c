/*
 * test_sign_verify: signing, MAC and pseudonym keys against a real kmsd
 * (docs/signing.md, docs/pseudonyms.md).
 *
 * - CreateKey offers each spec with its one usage and protection, and
 *   refuses the rest naming what fits.
 * - Sign (ECC_P256: message and digest; ED25519: message) verifies with
 *   OpenSSL given only GetPublicKey's DER or PEM; kms Verify says true for
 *   its own signature and false, not an error, for a changed message or
 *   signature; after a rotation an old signature still verifies and names
 *   its version.
 * - GenerateMac names its version; VerifyMac is false for a changed byte;
 *   --version pins; a message with the pseudonym prefix is refused.
 * - The wrong usage is INVALID_ARGUMENT naming the usage, both ways.
 * - Pseudonyms: the same value and context give the same text, also after
 *   kmsd restarts; another context or key gives another; 10,000 values in
 *   one request come back in order, each the one a single request gives.
 * - The audit entries record lengths and the digest mode, never a message.
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

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/pseudonym.h"
#include "tests/support/audit_check.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"

#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		if (!(cond))                                                               \
			fail_msg(__VA_ARGS__);                                             \
	} while (0)

/* A marker no audit entry may ever contain: it is only ever a message. */
#define SECRET_MARKER "never-in-the-log-7f3a"
#define BULK 10000

static harness H;
static char p256[E2E_KEY_ID_SIZE], ed[E2E_KEY_ID_SIZE], mac_key[E2E_KEY_ID_SIZE];
static char mac_key2[E2E_KEY_ID_SIZE], aes[E2E_KEY_ID_SIZE];

static Kms__Response *call(Kms__Request *req, const char *request_id)
{
	req->request_id = (char *)(uintptr_t)request_id;
	Kms__Response *r = harness_call(&H, req);
	CHECK(r, "no reply from kmsd; see %s", H.log);
	return r;
}

static void expect_ok(const Kms__Response *r, const char *what)
{
	CHECK(r->status == KMS__STATUS__OK, "%s: status %d: %s", what, (int)r->status, r->message);
}

static void expect_refused(Kms__Response *r, Kms__Status status, const char *needle,
                           const char *what)
{
	CHECK(r->status == status, "%s: status %d (%s), want %d", what, (int)r->status,
	      r->message, (int)status);
	CHECK(!needle || strstr(r->message, needle), "%s: \"%s\" does not say \"%s\"", what,
	      r->message, needle);
	kms__response__free_unpacked(r, NULL);
}

static Kms__Response *create(Kms__KeySpec spec, Kms__KeyUsage usage, Kms__KeyProtection p)
{
	Kms__CreateKeyRequest ck = KMS__CREATE_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	ck.description = "sign-verify";
	ck.key_spec = spec;
	ck.key_usage = usage;
	ck.protection = p;
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	req.create_key = &ck;
	return call(&req, NULL);
}

static void create_ok(Kms__KeySpec spec, Kms__KeyUsage want_usage,
                      Kms__KeyProtection want_protection, char out[E2E_KEY_ID_SIZE])
{
	Kms__Response *r = create(spec, 0, 0);
	expect_ok(r, "CreateKey");
	const Kms__KeyMetadata *m = r->create_key->key_metadata;
	CHECK(m->key_spec == spec && m->key_usage == want_usage &&
	              m->protection == want_protection,
	      "spec %d made usage %d protection %d", (int)spec, (int)m->key_usage,
	      (int)m->protection);
	snprintf(out, E2E_KEY_ID_SIZE, "%s", m->key_id);
	kms__response__free_unpacked(r, NULL);
}

static int setup(void **state)
{
	(void)state;
	CHECK(harness_start(&H, NULL), "kmsd did not start; see %s", H.log);
	create_ok(KMS__KEY_SPEC__ECC_P256, KMS__KEY_USAGE__SIGN_VERIFY, KMS__KEY_PROTECTION__WRAPPED,
	          p256);
	create_ok(KMS__KEY_SPEC__ED25519, KMS__KEY_USAGE__SIGN_VERIFY,
	          KMS__KEY_PROTECTION__HSM_RESIDENT, ed);
	create_ok(KMS__KEY_SPEC__HMAC_SHA256, KMS__KEY_USAGE__GENERATE_VERIFY_MAC,
	          KMS__KEY_PROTECTION__WRAPPED, mac_key);
	create_ok(KMS__KEY_SPEC__HMAC_SHA256, KMS__KEY_USAGE__GENERATE_VERIFY_MAC,
	          KMS__KEY_PROTECTION__WRAPPED, mac_key2);
	create_ok(KMS__KEY_SPEC__AES_256, KMS__KEY_USAGE__ENCRYPT_DECRYPT,
	          KMS__KEY_PROTECTION__WRAPPED, aes);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	harness_kill9(&H);
	return 0;
}

/* ---- requests ---- */

static Kms__Response *sign(const char *key, const void *msg, size_t len, bool digest,
                           const char *request_id)
{
	Kms__SignRequest s = KMS__SIGN_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	s.key_id = (char *)(uintptr_t)key;
	s.message.data = (uint8_t *)(uintptr_t)msg;
	s.message.len = len;
	s.message_type = digest ? KMS__MESSAGE_TYPE__MESSAGE_DIGEST : KMS__MESSAGE_TYPE__MESSAGE_RAW;
	req.op_case = KMS__REQUEST__OP_SIGN;
	req.sign = &s;
	return call(&req, request_id);
}

/* Verify; returns the reply (status OK checked) and sets *valid. */
static Kms__Response *verify(const char *key, const void *msg, size_t len, bool digest,
                             ProtobufCBinaryData sig, uint32_t version, bool *valid)
{
	Kms__VerifyRequest v = KMS__VERIFY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	v.key_id = (char *)(uintptr_t)key;
	v.message.data = (uint8_t *)(uintptr_t)msg;
	v.message.len = len;
	v.message_type = digest ? KMS__MESSAGE_TYPE__MESSAGE_DIGEST : KMS__MESSAGE_TYPE__MESSAGE_RAW;
	v.signature = sig;
	v.key_version = version;
	req.op_case = KMS__REQUEST__OP_VERIFY;
	req.verify = &v;
	Kms__Response *r = call(&req, NULL);
	expect_ok(r, "Verify");
	*valid = r->verify->signature_valid;
	return r;
}

static bool verify_says(const char *key, const void *msg, size_t len, bool digest,
                        ProtobufCBinaryData sig, uint32_t version, uint32_t *verified_by)
{
	bool valid;
	Kms__Response *r = verify(key, msg, len, digest, sig, version, &valid);
	if (verified_by)
		*verified_by = r->verify->key_version;
	CHECK(valid == (r->verify->key_version != 0), "Verify: valid %d with version %u", valid,
	      r->verify->key_version);
	kms__response__free_unpacked(r, NULL);
	return valid;
}

static Kms__Response *public_key(const char *key, uint32_t version)
{
	Kms__GetPublicKeyRequest g = KMS__GET_PUBLIC_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	g.key_id = (char *)(uintptr_t)key;
	g.key_version = version;
	req.op_case = KMS__REQUEST__OP_GET_PUBLIC_KEY;
	req.get_public_key = &g;
	return call(&req, NULL);
}

static Kms__Response *gen_mac(const char *key, const void *msg, size_t len, uint32_t version)
{
	Kms__GenerateMacRequest g = KMS__GENERATE_MAC_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	g.key_id = (char *)(uintptr_t)key;
	g.message.data = (uint8_t *)(uintptr_t)msg;
	g.message.len = len;
	g.key_version = version;
	req.op_case = KMS__REQUEST__OP_GENERATE_MAC;
	req.generate_mac = &g;
	return call(&req, NULL);
}

static uint32_t verify_mac(const char *key, const void *msg, size_t len, const uint8_t mac[32],
                           uint32_t version)
{
	Kms__VerifyMacRequest v = KMS__VERIFY_MAC_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	v.key_id = (char *)(uintptr_t)key;
	v.message.data = (uint8_t *)(uintptr_t)msg;
	v.message.len = len;
	v.mac.data = (uint8_t *)(uintptr_t)mac;
	v.mac.len = 32;
	v.key_version = version;
	req.op_case = KMS__REQUEST__OP_VERIFY_MAC;
	req.verify_mac = &v;
	Kms__Response *r = call(&req, NULL);
	expect_ok(r, "VerifyMac");
	CHECK(r->verify_mac->mac_valid == (r->verify_mac->key_version != 0),
	      "VerifyMac: valid %d with version %u", r->verify_mac->mac_valid,
	      r->verify_mac->key_version);
	uint32_t v_out = r->verify_mac->key_version;
	kms__response__free_unpacked(r, NULL);
	return v_out;
}

/* Pseudonymize values under context purpose=purpose (NULL: none). */
static Kms__Response *pseudonymize(const char *key, const char *purpose, const char *const *values,
                                   size_t n, uint32_t version)
{
	Kms__PseudonymizeRequest p = KMS__PSEUDONYMIZE_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	Kms__StringPair pair = KMS__STRING_PAIR__INIT, *pairs[1] = { &pair };
	ProtobufCBinaryData *v = calloc(n, sizeof *v);
	assert_non_null(v);
	for (size_t i = 0; i < n; i++)
		v[i] = (ProtobufCBinaryData){ strlen(values[i]), (uint8_t *)(uintptr_t)values[i] };
	p.key_id = (char *)(uintptr_t)key;
	if (purpose) {
		pair.key = "purpose";
		pair.value = (char *)(uintptr_t)purpose;
		p.context = pairs;
		p.n_context = 1;
	}
	p.values = v;
	p.n_values = n;
	p.key_version = version;
	req.op_case = KMS__REQUEST__OP_PSEUDONYMIZE;
	req.pseudonymize = &p;
	Kms__Response *r = call(&req, NULL);
	free(v);
	return r;
}

/* One value's pseudonym, malloc'ed. */
static char *pseudonym_of(const char *key, const char *purpose, const char *value)
{
	Kms__Response *r = pseudonymize(key, purpose, &value, 1, 0);
	expect_ok(r, "Pseudonymize");
	CHECK(r->pseudonymize->n_pseudonyms == 1, "one value, %zu pseudonyms",
	      r->pseudonymize->n_pseudonyms);
	char *out = strdup(r->pseudonymize->pseudonyms[0]);
	assert_non_null(out);
	kms__response__free_unpacked(r, NULL);
	return out;
}

/* ---- OpenSSL, given only the public key ---- */

static EVP_PKEY *der_key(const Kms__GetPublicKeyResponse *g)
{
	const unsigned char *p = g->public_key.data;
	EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)g->public_key.len);
	CHECK(k && p == g->public_key.data + g->public_key.len, "the DER public key does not parse");
	/* The PEM is the same key. */
	BIO *bio = BIO_new_mem_buf(g->public_key_pem, -1);
	EVP_PKEY *from_pem = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
	CHECK(from_pem && EVP_PKEY_eq(k, from_pem) == 1, "the PEM public key is not the DER one");
	EVP_PKEY_free(from_pem);
	BIO_free(bio);
	return k;
}

static bool openssl_verifies(EVP_PKEY *k, bool ed25519, const void *msg, size_t len,
                             ProtobufCBinaryData sig)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	assert_non_null(md);
	int rc = EVP_DigestVerifyInit(md, NULL, ed25519 ? NULL : EVP_sha256(), NULL, k);
	assert_int_equal(rc, 1);
	rc = EVP_DigestVerify(md, sig.data, sig.len, msg, len);
	EVP_MD_CTX_free(md);
	return rc == 1;
}

/* ---- the tests ---- */

static void create_offers_what_works(void **state)
{
	(void)state;
	expect_refused(create(KMS__KEY_SPEC__ED25519, 0, KMS__KEY_PROTECTION__WRAPPED),
	               KMS__STATUS__INVALID_ARGUMENT, "hsm-resident", "wrapped ED25519");
	expect_refused(create(KMS__KEY_SPEC__HMAC_SHA256, 0, KMS__KEY_PROTECTION__HSM_RESIDENT),
	               KMS__STATUS__INVALID_ARGUMENT, "wrapped", "hsm-resident HMAC");
	expect_refused(create(KMS__KEY_SPEC__ECC_P256, 0, KMS__KEY_PROTECTION__HSM_RESIDENT),
	               KMS__STATUS__INVALID_ARGUMENT, "wrapped", "hsm-resident P-256");
	expect_refused(create(KMS__KEY_SPEC__AES_256, KMS__KEY_USAGE__SIGN_VERIFY, 0),
	               KMS__STATUS__INVALID_ARGUMENT, "ENCRYPT_DECRYPT", "AES for signing");
	expect_refused(create(KMS__KEY_SPEC__ECC_P256, KMS__KEY_USAGE__GENERATE_VERIFY_MAC, 0),
	               KMS__STATUS__INVALID_ARGUMENT, "SIGN_VERIFY", "P-256 for MACs");
	expect_refused(create(KMS__KEY_SPEC__HMAC_SHA256, KMS__KEY_USAGE__ENCRYPT_DECRYPT, 0),
	               KMS__STATUS__INVALID_ARGUMENT, "GENERATE_VERIFY_MAC", "HMAC for encryption");
	expect_refused(create((Kms__KeySpec)9, 0, 0), KMS__STATUS__INVALID_ARGUMENT, "key_spec",
	               "spec 9");
}

static void p256_signs_and_openssl_verifies(void **state)
{
	(void)state;
	static const char msg[] = "pay 100 INR to merchant 42 " SECRET_MARKER;
	Kms__Response *s = sign(p256, msg, strlen(msg), false, "sv-sign-p256");
	expect_ok(s, "Sign P-256");
	CHECK(s->sign->key_version == 1 &&
	              s->sign->signing_algorithm == KMS__SIGNING_ALGORITHM__SIGNING_ECDSA_SHA_256 &&
	              s->sign->signature.len >= 8 && s->sign->signature.len <= 72 &&
	              s->sign->signature.data[0] == 0x30,
	      "a P-256 signature is DER, %zu bytes", s->sign->signature.len);

	Kms__Response *g = public_key(p256, 0);
	expect_ok(g, "GetPublicKey P-256");
	CHECK(g->get_public_key->key_spec == KMS__KEY_SPEC__ECC_P256 &&
	              g->get_public_key->key_version == 1 && g->get_public_key->public_key.len == 91 &&
	              strstr(g->get_public_key->public_key_pem, "-----BEGIN PUBLIC KEY-----\n"),
	      "GetPublicKey P-256: %zu bytes of DER", g->get_public_key->public_key.len);
	EVP_PKEY *k = der_key(g->get_public_key);
	CHECK(openssl_verifies(k, false, msg, strlen(msg), s->sign->signature),
	      "OpenSSL does not verify kms's P-256 signature");
	CHECK(!openssl_verifies(k, false, "pay 900", 7, s->sign->signature),
	      "OpenSSL verifies a P-256 signature over another message");

	/* kms Verify: true for its own, false (not an error) for a change. */
	CHECK(verify_says(p256, msg, strlen(msg), false, s->sign->signature, 0, NULL),
	      "Verify is false for kms's own P-256 signature");
	CHECK(!verify_says(p256, msg, strlen(msg) - 1, false, s->sign->signature, 0, NULL),
	      "Verify is true for a shortened message");
	uint8_t bad[80];
	memcpy(bad, s->sign->signature.data, s->sign->signature.len);
	bad[s->sign->signature.len - 1] ^= 1;
	ProtobufCBinaryData tampered = { s->sign->signature.len, bad };
	CHECK(!verify_says(p256, msg, strlen(msg), false, tampered, 0, NULL),
	      "Verify is true for a changed signature");
	ProtobufCBinaryData junk = { 3, (uint8_t *)"abc" };
	CHECK(!verify_says(p256, msg, strlen(msg), false, junk, 0, NULL),
	      "Verify is true for junk");

	/* A digest signed is the message signed. */
	uint8_t digest[32];
	unsigned int dl = 0;
	assert_int_equal(EVP_Digest(msg, strlen(msg), digest, &dl, EVP_sha256(), NULL), 1);
	Kms__Response *d = sign(p256, digest, sizeof digest, true, "sv-sign-digest");
	expect_ok(d, "Sign P-256 digest");
	CHECK(openssl_verifies(k, false, msg, strlen(msg), d->sign->signature),
	      "OpenSSL does not verify a digest signed by kms as the message's signature");
	CHECK(verify_says(p256, digest, sizeof digest, true, s->sign->signature, 1, NULL),
	      "Verify of a message signature given its digest is false");
	expect_refused(sign(p256, digest, 31, true, NULL), KMS__STATUS__INVALID_ARGUMENT, "32",
	               "a 31-byte digest");
	EVP_PKEY_free(k);
	kms__response__free_unpacked(d, NULL);
	kms__response__free_unpacked(g, NULL);
	kms__response__free_unpacked(s, NULL);
}

static void ed25519_signs_and_openssl_verifies(void **state)
{
	(void)state;
	static uint8_t msg[KMS_SIGN_MESSAGE_MAX];
	for (size_t i = 0; i < sizeof msg; i++)
		msg[i] = (uint8_t)(i * 7 + 1);
	Kms__Response *s = sign(ed, msg, sizeof msg, false, NULL);
	expect_ok(s, "Sign Ed25519");
	CHECK(s->sign->signature.len == 64 &&
	              s->sign->signing_algorithm == KMS__SIGNING_ALGORITHM__SIGNING_ED25519,
	      "an Ed25519 signature is 64 bytes, not %zu", s->sign->signature.len);
	Kms__Response *g = public_key(ed, 0);
	expect_ok(g, "GetPublicKey Ed25519");
	CHECK(g->get_public_key->public_key.len == 44, "Ed25519 SPKI is 44 bytes, not %zu",
	      g->get_public_key->public_key.len);
	EVP_PKEY *k = der_key(g->get_public_key);
	CHECK(openssl_verifies(k, true, msg, sizeof msg, s->sign->signature),
	      "OpenSSL does not verify kms's Ed25519 signature");
	CHECK(verify_says(ed, msg, sizeof msg, false, s->sign->signature, 0, NULL),
	      "Verify is false for kms's own Ed25519 signature");
	msg[100] ^= 1;
	CHECK(!verify_says(ed, msg, sizeof msg, false, s->sign->signature, 0, NULL),
	      "Verify is true for a changed message");
	CHECK(!openssl_verifies(k, true, msg, sizeof msg, s->sign->signature),
	      "OpenSSL verifies an Ed25519 signature over a changed message");
	uint8_t digest[32] = { 0 };
	expect_refused(sign(ed, digest, sizeof digest, true, NULL), KMS__STATUS__INVALID_ARGUMENT,
	               "not a digest", "Ed25519 with a digest");
	expect_refused(sign(ed, msg, 0, false, NULL),
	               KMS__STATUS__INVALID_ARGUMENT, "1 to 4096", "an empty message");
	EVP_PKEY_free(k);
	kms__response__free_unpacked(g, NULL);
	kms__response__free_unpacked(s, NULL);
}

static void an_old_signature_verifies_after_rotation(void **state)
{
	(void)state;
	static const char msg[] = "signed by version 1";
	Kms__Response *s1 = sign(p256, msg, strlen(msg), false, NULL);
	expect_ok(s1, "Sign v1");
	Kms__Response *rot = e2e_rotate(&H, p256);
	CHECK(rot && rot->status == KMS__STATUS__OK, "RotateKey: %s", rot ? rot->message : "none");
	kms__response__free_unpacked(rot, NULL);
	Kms__Response *s2 = sign(p256, msg, strlen(msg), false, NULL);
	expect_ok(s2, "Sign v2");
	CHECK(s2->sign->key_version == 2, "after a rotation Sign uses version %u",
	      s2->sign->key_version);
	uint32_t by = 0;
	CHECK(verify_says(p256, msg, strlen(msg), false, s1->sign->signature, 0, &by) && by == 1,
	      "the version 1 signature does not verify as version 1 (%u)", by);
	CHECK(verify_says(p256, msg, strlen(msg), false, s2->sign->signature, 0, &by) && by == 2,
	      "the version 2 signature does not verify as version 2 (%u)", by);
	CHECK(!verify_says(p256, msg, strlen(msg), false, s1->sign->signature, 2, NULL),
	      "the version 1 signature verifies under version 2");
	/* The versions' public keys differ. */
	Kms__Response *g1 = public_key(p256, 1), *g2 = public_key(p256, 2);
	expect_ok(g1, "GetPublicKey v1");
	expect_ok(g2, "GetPublicKey v2");
	CHECK(strcmp(g1->get_public_key->public_key_pem, g2->get_public_key->public_key_pem) != 0,
	      "two versions share a public key");
	kms__response__free_unpacked(g1, NULL);
	kms__response__free_unpacked(g2, NULL);
	kms__response__free_unpacked(s1, NULL);
	kms__response__free_unpacked(s2, NULL);
}

static void wrong_usage_names_the_usage(void **state)
{
	(void)state;
	expect_refused(sign(aes, "m", 1, false, NULL), KMS__STATUS__INVALID_ARGUMENT,
	               "ENCRYPT_DECRYPT", "Sign with an AES key");
	expect_refused(sign(mac_key, "m", 1, false, NULL), KMS__STATUS__INVALID_ARGUMENT,
	               "GENERATE_VERIFY_MAC", "Sign with an HMAC key");
	expect_refused(e2e_encrypt(&H, p256, (const uint8_t *)"m", 1),
	               KMS__STATUS__INVALID_ARGUMENT, "SIGN_VERIFY", "Encrypt with a P-256 key");
	expect_refused(e2e_encrypt(&H, mac_key, (const uint8_t *)"m", 1),
	               KMS__STATUS__INVALID_ARGUMENT, "GENERATE_VERIFY_MAC", "Encrypt with a MAC key");
	expect_refused(gen_mac(ed, "m", 1, 0), KMS__STATUS__INVALID_ARGUMENT, "SIGN_VERIFY",
	               "GenerateMac with an Ed25519 key");
	expect_refused(public_key(mac_key, 0), KMS__STATUS__INVALID_ARGUMENT, "GENERATE_VERIFY_MAC",
	               "GetPublicKey of an HMAC key");
	static const char *const one[] = { "x" };
	expect_refused(pseudonymize(aes, NULL, one, 1, 0), KMS__STATUS__INVALID_ARGUMENT,
	               "ENCRYPT_DECRYPT", "Pseudonymize with an AES key");
}

static void macs_name_their_version(void **state)
{
	(void)state;
	static const char msg[] = "webhook body " SECRET_MARKER;
	Kms__Response *m1 = gen_mac(mac_key, msg, strlen(msg), 0);
	expect_ok(m1, "GenerateMac");
	CHECK(m1->generate_mac->mac.len == 32 && m1->generate_mac->key_version == 1,
	      "GenerateMac: %zu bytes, version %u", m1->generate_mac->mac.len,
	      m1->generate_mac->key_version);
	uint8_t mac1[32];
	memcpy(mac1, m1->generate_mac->mac.data, 32);
	kms__response__free_unpacked(m1, NULL);
	CHECK(verify_mac(mac_key, msg, strlen(msg), mac1, 0) == 1, "VerifyMac of its own MAC");
	uint8_t changed[32];
	memcpy(changed, mac1, 32);
	changed[31] ^= 0x80;
	CHECK(verify_mac(mac_key, msg, strlen(msg), changed, 0) == 0, "VerifyMac of a changed MAC");
	CHECK(verify_mac(mac_key, "webhook bodY", 12, mac1, 0) == 0, "VerifyMac of a changed message");
	CHECK(verify_mac(mac_key2, msg, strlen(msg), mac1, 0) == 0, "VerifyMac under another key");

	/* A rotation makes another MAC under version 2; version 1 stays
	 * reachable by pinning it, and VerifyMac finds it by itself. */
	Kms__Response *rot = e2e_rotate(&H, mac_key);
	CHECK(rot && rot->status == KMS__STATUS__OK, "RotateKey: %s", rot ? rot->message : "none");
	kms__response__free_unpacked(rot, NULL);
	Kms__Response *m2 = gen_mac(mac_key, msg, strlen(msg), 0);
	expect_ok(m2, "GenerateMac after rotation");
	CHECK(m2->generate_mac->key_version == 2 && memcmp(m2->generate_mac->mac.data, mac1, 32),
	      "after a rotation GenerateMac used version %u", m2->generate_mac->key_version);
	kms__response__free_unpacked(m2, NULL);
	Kms__Response *pinned = gen_mac(mac_key, msg, strlen(msg), 1);
	expect_ok(pinned, "GenerateMac pinned to version 1");
	CHECK(pinned->generate_mac->key_version == 1 &&
	              !memcmp(pinned->generate_mac->mac.data, mac1, 32),
	      "GenerateMac pinned to version 1 gives another MAC");
	kms__response__free_unpacked(pinned, NULL);
	CHECK(verify_mac(mac_key, msg, strlen(msg), mac1, 0) == 1,
	      "VerifyMac does not find the version 1 MAC after a rotation");
	CHECK(verify_mac(mac_key, msg, strlen(msg), mac1, 2) == 0,
	      "VerifyMac pinned to version 2 accepts a version 1 MAC");
	expect_refused(gen_mac(mac_key, msg, strlen(msg), 9), KMS__STATUS__NOT_FOUND, "version 9",
	               "GenerateMac with a version that does not exist");

	/* Pseudonyms are made by Pseudonymize only. */
	uint8_t prefixed[40] = "kms-pseudonym-v1";
	expect_refused(gen_mac(mac_key, prefixed, sizeof prefixed, 0), KMS__STATUS__INVALID_ARGUMENT,
	               "pseudonym", "GenerateMac of a pseudonym message");
}

static void pseudonyms_are_stable_and_distinct(void **state)
{
	(void)state;
	char *a = pseudonym_of(mac_key2, "kyc", "+919876543210");
	char *again = pseudonym_of(mac_key2, "kyc", "+919876543210");
	char *other_ctx = pseudonym_of(mac_key2, "marketing", "+919876543210");
	char *none_ctx = pseudonym_of(mac_key2, NULL, "+919876543210");
	char *other_key = pseudonym_of(mac_key, "kyc", "+919876543210");
	char *other_value = pseudonym_of(mac_key2, "kyc", "+919876543211");
	CHECK(!strcmp(a, again), "the same value and context gave %s and %s", a, again);
	CHECK(strcmp(a, other_ctx) && strcmp(a, none_ctx) && strcmp(other_ctx, none_ctx),
	      "another context gave the same pseudonym");
	CHECK(strcmp(a, other_key) && strcmp(a, other_value),
	      "another key or value gave the same pseudonym");
	/* The text names the key and version. */
	char key_short[KMS_PSEUDONYM_KEY_SHORT_SIZE];
	uint32_t version = 0;
	CHECK(pseudonym_parse(a, key_short, &version) == KMS_OK, "%s does not parse", a);
	CHECK(!strncmp(key_short, mac_key2 + 2, 8) && version == 1, "%s names %s v%u", a, key_short,
	      version);
	free(again);
	free(other_ctx);
	free(none_ctx);
	free(other_key);
	free(other_value);

	/* 10,000 values in one request: in order, each the single answer. */
	static char values[BULK][16];
	static const char *ptrs[BULK];
	for (size_t i = 0; i < BULK; i++) {
		snprintf(values[i], sizeof values[i], "99994%07zu", i);
		ptrs[i] = values[i];
	}
	ptrs[4321] = "+919876543210";
	Kms__Response *r = pseudonymize(mac_key2, "kyc", ptrs, BULK, 0);
	expect_ok(r, "Pseudonymize 10,000");
	CHECK(r->pseudonymize->n_pseudonyms == BULK && r->pseudonymize->key_version == 1,
	      "10,000 values gave %zu pseudonyms", r->pseudonymize->n_pseudonyms);
	CHECK(!strcmp(r->pseudonymize->pseudonyms[4321], a), "value 4321 is out of place");
	for (size_t i = 0; i < BULK; i += 2500) {
		char *one = pseudonym_of(mac_key2, "kyc", ptrs[i]);
		CHECK(!strcmp(one, r->pseudonymize->pseudonyms[i]), "value %zu: %s in the batch, %s alone",
		      i, r->pseudonymize->pseudonyms[i], one);
		free(one);
	}
	for (size_t i = 1; i < BULK; i++)
		CHECK(strcmp(r->pseudonymize->pseudonyms[i], r->pseudonymize->pseudonyms[i - 1]),
		      "values %zu and %zu share a pseudonym", i - 1, i);
	kms__response__free_unpacked(r, NULL);

	/* The same after kmsd restarts (the key is unwrapped anew). */
	int code = harness_stop(&H);
	CHECK(code == 0, "kmsd exited %d on SIGTERM; see %s", code, H.log);
	CHECK(harness_start(&H, NULL), "kmsd did not restart; see %s", H.log);
	char *after = pseudonym_of(mac_key2, "kyc", "+919876543210");
	CHECK(!strcmp(a, after), "after a restart %s became %s", a, after);
	free(after);
	free(a);
}

/* Last: stops kmsd and reads the log. */
static void audit_records_lengths_never_messages(void **state)
{
	(void)state;
	char vkey[AUDIT_VKEY_MAX];
	assert_true(audit_vkey_from_log(&H, vkey));
	int code = harness_stop(&H);
	CHECK(code == 0, "kmsd exited %d on SIGTERM; see %s", code, H.log);
	char pub[700];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	audit_entries e;
	audit_load(pub, vkey, NULL, &e);
	json_t *s = NULL, *d = NULL;
	CHECK(audit_count_id(&e, "sv-sign-p256", &s) == 1 && s, "no entry for the P-256 Sign");
	CHECK(audit_count_id(&e, "sv-sign-digest", &d) == 1 && d, "no entry for the digest Sign");
	CHECK(json_integer_value(json_object_get(s, "message_bytes")) ==
	              (json_int_t)strlen("pay 100 INR to merchant 42 " SECRET_MARKER) &&
	              !strcmp(audit_str(s, "message_type"), "MESSAGE_RAW") &&
	              !strcmp(audit_str(s, "key_id"), p256) &&
	              json_integer_value(json_object_get(s, "key_version")) == 1,
	      "the Sign entry does not record the message's length and type, key and version");
	CHECK(json_integer_value(json_object_get(d, "message_bytes")) == 32 &&
	              !strcmp(audit_str(d, "message_type"), "MESSAGE_DIGEST"),
	      "the digest Sign entry does not say MESSAGE_DIGEST");
	size_t verdicts = 0, pseudonym_batches = 0;
	for (uint64_t i = 0; i < e.n; i++) {
		char *text = json_dumps(e.items[i], JSON_COMPACT);
		assert_non_null(text);
		CHECK(!strstr(text, SECRET_MARKER) && !strstr(text, "919876543210"),
		      "an audit entry holds a message or a value: %s", text);
		free(text);
		const char *op = audit_str(e.items[i], "operation");
		if (!strcmp(op, "verify") || !strcmp(op, "verify_mac"))
			verdicts += json_is_string(json_object_get(e.items[i], "verdict"));
		if (!strcmp(op, "pseudonymize") &&
		    json_integer_value(json_object_get(e.items[i], "values")) == BULK)
			pseudonym_batches++;
	}
	CHECK(verdicts >= 10, "only %zu Verify/VerifyMac entries carry a verdict", verdicts);
	CHECK(pseudonym_batches == 1, "%zu entries record the 10,000-value Pseudonymize",
	      pseudonym_batches);
	audit_entries_free(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(create_offers_what_works),
		cmocka_unit_test(p256_signs_and_openssl_verifies),
		cmocka_unit_test(ed25519_signs_and_openssl_verifies),
		cmocka_unit_test(an_old_signature_verifies_after_rotation),
		cmocka_unit_test(wrong_usage_names_the_usage),
		cmocka_unit_test(macs_name_their_version),
		cmocka_unit_test(pseudonyms_are_stable_and_distinct),
		cmocka_unit_test(audit_records_lengths_never_messages),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
