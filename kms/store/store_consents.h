/*
 * store_consents.h: Consent Managers and consent artefacts in the store
 * (docs/consent.md, "Store"; schema version 6). The rows only: verifying
 * an artefact is kms/consent's, deciding a use is consent_rules.h's.
 */
#ifndef KMS_STORE_CONSENTS_H
#define KMS_STORE_CONSENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/limits.h>

#include "kms/format/authz_names.h"
#include "kms/format/keyid.h"
#include "kms/store/store.h"

#define STORE_CM_ID_MAX 63
#define STORE_CM_KID_MAX 128
#define STORE_CM_JWK_MAX 16384
#define STORE_CMS_MAX 256            /* Consent Managers ever registered */
#define STORE_CONSENT_ID_MAX 64
#define STORE_CONSENT_PURPOSE_MAX 16
#define STORE_CONSENT_ARTEFACT_MAX 65536
#define STORE_CONSENTS_PAGE_MAX 1000

typedef struct store_consent_manager {
	char id[STORE_CM_ID_MAX + 1];
	char kid[STORE_CM_KID_MAX + 1];
	char jwk[STORE_CM_JWK_MAX + 1];             /* public JWK, JSON */
	char dp_key[KMS_KEYID_TEXT_SIZE];           /* the HMAC key for pseudonyms */
	char principal[AUTHZ_PRINCIPAL_NAME_SIZE];  /* "" when none is bound */
	bool removed;
	int64_t created_at, removed_at;
	char created_by[AUTHZ_PRINCIPAL_NAME_SIZE];
} store_consent_manager;

typedef struct store_consent {
	char id[STORE_CONSENT_ID_MAX + 1];
	char manager[STORE_CM_ID_MAX + 1];
	bool manager_removed;                       /* read from its manager's row */
	char dp[KMS_PSEUDONYM_TEXT_SIZE];
	char purpose[STORE_CONSENT_PURPOSE_MAX + 1];
	bool onetime;
	int64_t start, expiry, data_life_end;       /* INT64_MAX: no end */
	char frequency_unit[6];
	int64_t frequency_value;
	char status[8];                             /* ACTIVE PAUSED REVOKED */
	int64_t status_at;
	char status_by[AUTHZ_PRINCIPAL_NAME_SIZE];
	int64_t uses, window_start, window_uses;
	uint8_t digest[32];                         /* SHA-256 of the artefact */
	uint8_t detail_digest[32];                  /* ... of its signed ConsentDetail */
	int64_t imported_at;
	char imported_by[AUTHZ_PRINCIPAL_NAME_SIZE];
} store_consent;

/* KMS_ALREADY_EXISTS when the id or the kid is taken (also by a removed
 * one). */
kms_status store_cm_add(store *st, const store_consent_manager *cm) KMS_MUST_USE;
kms_status store_cm_get(store *st, const char *id, store_consent_manager *out) KMS_MUST_USE;
/* The Consent Manager whose key has this kid, removed or not. */
kms_status store_cm_by_kid(store *st, const char *kid, store_consent_manager *out) KMS_MUST_USE;
/* All of them, by id, malloc'ed (free()). */
kms_status store_cm_list(store *st, store_consent_manager **out, size_t *n) KMS_MUST_USE;
/* KMS_NOT_FOUND; KMS_FAILED_PRECONDITION when already removed. */
kms_status store_cm_remove(store *st, const char *id, int64_t now) KMS_MUST_USE;

/* KMS_ALREADY_EXISTS when the id, or the signed ConsentDetail (its
 * detail_digest), is stored already. */
kms_status store_consent_insert(store *st, const store_consent *c, const uint8_t *artefact,
                                size_t artefact_len) KMS_MUST_USE;
kms_status store_consent_get(store *st, const char *id, store_consent *out) KMS_MUST_USE;
/* The artefact's bytes, malloc'ed (free()). */
kms_status store_consent_artefact(store *st, const char *id, uint8_t **out,
                                  size_t *len) KMS_MUST_USE;
/* from -> to, recorded as by at now; KMS_FAILED_PRECONDITION when the row's
 * status is no longer from (a concurrent change), KMS_NOT_FOUND. */
kms_status store_consent_set_status(store *st, const char *id, const char *from, const char *to,
                                    const char *by, int64_t now) KMS_MUST_USE;
/* One use, counted only if the artefact is still ACTIVE, a ONETIME one
 * unused, and (window_max >= 0) fewer than window_max uses counted in the
 * period starting at window_start (and that period not before the one
 * counted last: a clock that stepped back takes nothing): one statement,
 * so concurrent uses
 * cannot both take the last one. *taken says whether it was counted. */
kms_status store_consent_take_use(store *st, const char *id, int64_t window_start,
                                  int64_t window_max, bool *taken) KMS_MUST_USE;

typedef struct store_consent_filter {
	const char *manager, *dp, *purpose, *status; /* NULL or "": any */
} store_consent_filter;
/* Up to limit (1..STORE_CONSENTS_PAGE_MAX) consents with ids after after
 * ("" from the start), by id, malloc'ed (free()); *more when there are
 * further ones. */
kms_status store_consent_list(store *st, const store_consent_filter *f, const char *after,
                              uint32_t limit, store_consent **out, size_t *n,
                              bool *more) KMS_MUST_USE;

#endif
