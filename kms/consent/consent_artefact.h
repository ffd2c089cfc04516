/*
 * consent_artefact.h: a ReBIT Account Aggregator consent artefact read and
 * its detached JWS verified (docs/consent.md, "The artefact"), and a
 * Consent Manager's JWK checked before it is registered.
 *
 * Pure apart from libcjose and OpenSSL: no store, no HSM. Every refusal is
 * one line naming the member, never a value (a Customer.id is a person's
 * identifier).
 */
#ifndef KMS_CONSENT_ARTEFACT_H
#define KMS_CONSENT_ARTEFACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

#define CONSENT_ARTEFACT_MAX (64 * 1024)
#define CONSENT_ID_MAX 64
#define CONSENT_PURPOSE_MAX 16
#define CONSENT_CUSTOMER_ID_MAX 256
#define CONSENT_KID_MAX 128
#define CONSENT_JWK_MAX (16 * 1024)
#define CONSENT_COUNT_MAX 100000

typedef struct consent_artefact {
	char id[CONSENT_ID_MAX + 1];
	char purpose[CONSENT_PURPOSE_MAX + 1];
	bool onetime;                 /* fetchType ONETIME; else PERIODIC */
	int64_t start, expiry;        /* unix seconds */
	char data_life_unit[6];       /* DAY MONTH YEAR INF */
	int64_t data_life_value;
	int64_t data_life_end;        /* start + DataLife; INT64_MAX for INF */
	char frequency_unit[6];       /* HOUR DAY MONTH YEAR INF */
	int64_t frequency_value;
	/* The protected header's kid and alg. */
	char kid[CONSENT_KID_MAX + 1];
	char alg[6];
	/* Customer.id: not NUL-terminated, 1..CONSENT_CUSTOMER_ID_MAX bytes. */
	uint8_t customer_id[CONSENT_CUSTOMER_ID_MAX];
	size_t customer_id_len;
	/* Where ConsentDetail's value sits in the document: the JWS payload. */
	size_t detail_off, detail_len;
} consent_artefact;

/* Reads doc[0..len) (the artefact as imported): the members kmsd uses, the
 * signature's protected header (kid, alg), and the span of ConsentDetail.
 * Verifies nothing cryptographic: call consent_artefact_verify with the
 * kid's key next. KMS_INVALID_ARGUMENT naming the member on any refusal. */
kms_status consent_artefact_parse(const uint8_t *doc, size_t len,
                                  consent_artefact *out) KMS_MUST_USE;

/* Verifies the detached JWS over ConsentDetail's exact bytes with the
 * Consent Manager's public JWK (JSON text), through libcjose. The header's
 * alg must fit the key's type. KMS_INVALID_ARGUMENT when it does not verify. */
kms_status consent_artefact_verify(const uint8_t *doc, size_t len, const consent_artefact *a,
                                   const char *jwk_json) KMS_MUST_USE;

/* Wipes the artefact's fields (the Customer.id). */
void consent_artefact_clear(consent_artefact *a);

/* Checks a Consent Manager's JWK before it is registered: JSON of at most
 * CONSENT_JWK_MAX bytes, kty RSA (2048..8192 bits) or EC P-256, no private
 * member, a kid of 1..CONSENT_KID_MAX printable ASCII characters. Writes
 * the public JWK as libcjose serializes it (malloc'd; free it) and the
 * kid. */
kms_status consent_jwk_check(const char *jwk, size_t len, char **public_json,
                             char kid[static CONSENT_KID_MAX + 1]) KMS_MUST_USE;

/* 1..CONSENT_ID_MAX of [A-Za-z0-9._:-]. */
bool consent_id_valid(const char *id, size_t len);

#endif
