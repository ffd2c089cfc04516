/*
 * consent_test.h: a Consent Manager for tests. Makes an EC P-256 signing
 * key with libcjose and signs consent artefacts in the ReBIT format
 * docs/consent.md describes (a detached ES256 JWS over ConsentDetail's
 * bytes), with whatever window, purpose and limits a test needs. (The
 * checked-in RS256 vectors, signed by PyJWT, are the independent check.)
 * Each artefact's ConsentDetail names its id (in Purpose.text), so two
 * artefacts are never the same signed consent (kmsd imports a signed
 * ConsentDetail once).
 */
#ifndef KMS_TEST_CONSENT_H
#define KMS_TEST_CONSENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct consent_signer {
	void *jwk;           /* cjose_jwk_t *, with its private part */
	char kid[64];
	char *public_jwk;    /* the JWK to register: public only (malloc'ed) */
} consent_signer;

void consent_signer_make(consent_signer *s, const char *kid);
void consent_signer_free(consent_signer *s);

typedef struct consent_spec {
	const char *id;
	const char *customer;       /* Customer.id */
	const char *purpose;        /* Purpose.code */
	int64_t start, expiry;      /* unix seconds */
	bool onetime;
	const char *life_unit;      /* NULL: "YEAR" */
	int life_value;             /* with life_unit NULL: 1 */
	const char *freq_unit;      /* NULL: "INF" */
	int freq_value;             /* with freq_unit NULL: 1 */
} consent_spec;

/* The artefact's JSON (malloc'ed, NUL-terminated; *len its length). */
char *consent_artefact_make(const consent_signer *s, const consent_spec *spec, size_t *len);

#endif
