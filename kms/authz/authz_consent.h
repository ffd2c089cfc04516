/*
 * authz_consent.h: a consented use enforced (docs/consent.md, "Keys that
 * require consent"). The data plane calls it right after the key check
 * (authz_enforce_key) allowed a key, with the same encryption context: for
 * a key whose policy has RequireConsent it finds the artefact the context
 * names, applies consent_rules_check, counts a decrypting use atomically,
 * and records the audit entry's `consent` object; for any other key it
 * does nothing.
 */
#ifndef KMS_AUTHZ_CONSENT_H
#define KMS_AUTHZ_CONSENT_H

#include <stddef.h>

#include <kms/kms.pb-c.h>
#include <kms/status.h>

#include "kms/consent/consent_rules.h"
#include "kms/pipeline/ops.h"

/* KMS_ACCESS_DENIED ("consent ID does not allow this use: ...") when the
 * consent does not allow it; KMS_INTERNAL when key_id is not the key the
 * last key check allowed (a handler that skipped it). */
kms_status authz_consent_check(op_ctx *ctx, const char *key_id, Kms__StringPair *const *pairs,
                               size_t n_pairs, consent_use use) KMS_MUST_USE;

#endif
