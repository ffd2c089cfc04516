/*
 * consent_rules.h: whether a consent artefact allows one use of a key that
 * requires consent (docs/consent.md, "Keys that require consent"). A pure
 * function of the stored consent, the request's dp and purpose, the time
 * and the kind of use; the use itself is counted by the store
 * (store_consent_take_use), atomically, after this allows it.
 */
#ifndef KMS_CONSENT_RULES_H
#define KMS_CONSENT_RULES_H

#include <stdbool.h>
#include <stdint.h>

#include "kms/store/store_consents.h"

typedef enum consent_use {
	CONSENT_USE_SEAL, /* encrypt, a data key: checked, not counted */
	CONSENT_USE_OPEN, /* decrypt, re-encrypt's source: checked and counted */
} consent_use;

/* The reason token for the first check c fails for this use at now
 * ("paused", "expired", "purpose_mismatch", ...), or NULL when it allows it
 * (the counted limits, onetime_used and frequency_exceeded, are judged on
 * the row as read: the store's count decides the race). */
const char *consent_rules_check(const store_consent *c, const char *dp, const char *purpose,
                                int64_t now, consent_use use);

/* For an open: the window the use falls in (the start of the Frequency
 * period holding now; 0 for INF) and the most uses it may hold (-1: no
 * limit). */
void consent_rules_window(const store_consent *c, int64_t now, int64_t *window_start,
                          int64_t *window_max);

/* The one-line explanation of a reason token, for the client. */
const char *consent_rules_explain(const char *reason);

#endif
