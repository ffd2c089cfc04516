/*
 * authz_enforce.h: the decision (authz_decide.h) enforced on every request
 * (docs/authorization.md, "The decision" and "Rate limits").
 *
 * Two calls per request: authz_enforce_request() before the handler runs
 * (steps 1 and 2, and the principal's rate-limit token), and
 * authz_enforce_key() by the handler for every key the request touches,
 * once that key is resolved to its id (steps 3 to 5 with the key's policy
 * and live grants, read fresh from the store each time, and the key's
 * rate-limit token). A key-less operation stops after the first.
 */
#ifndef KMS_AUTHZ_ENFORCE_H
#define KMS_AUTHZ_ENFORCE_H

#include <stddef.h>

#include <kms/kms.pb-c.h>
#include <kms/status.h>

#include "kms/config.h"
#include "kms/pipeline/ops.h"
#include "kms/store/store.h"

typedef struct authz_enforce authz_enforce;

/* The limiter and the default key policy: cfg's [authz] default_key_policy
 * (a file read and compiled here; a one-line refusal naming it when it
 * cannot be read, is larger than KMS_POLICY_MAX or does not parse), or the
 * built-in default. st is the keyring's store (policies, grants). */
kms_status authz_enforce_open(const kmsd_config *cfg, store *st, authz_enforce **out) KMS_MUST_USE;
void authz_enforce_close(authz_enforce *e);

/* For kmsd --check: the same refusals authz_enforce_open makes, changing
 * nothing. */
kms_status authz_enforce_check(const kmsd_config *cfg) KMS_MUST_USE;

/* The text of the policy that applies to a key with none of its own, as
 * GetKeyPolicy returns it: [authz] default_key_policy's file as read at
 * start, or the built-in authz_default_policy_json. Lives as long as e. */
const char *authz_enforce_default_policy_text(const authz_enforce *e);

/* Steps 1 and 2 for ctx->op and ctx->caller, and the principal's token:
 * KMS_ACCESS_DENIED ("principal P may not OPERATION"), KMS_THROTTLED with
 * ctx->retry_after_ms set, or KMS_OK. */
kms_status authz_enforce_request(op_ctx *ctx) KMS_MUST_USE;

/* Steps 3 to 5 for ctx->op on key_id (a resolved key id, never an alias)
 * with one encryption context (pairs may be NULL when n_pairs is 0), and
 * the key's token. KMS_ACCESS_DENIED ("principal P may not OPERATION key
 * K"), KMS_THROTTLED, KMS_NOT_FOUND when the key is not in the store. */
kms_status authz_enforce_key(op_ctx *ctx, const char *key_id, Kms__StringPair *const *pairs,
                             size_t n_pairs) KMS_MUST_USE;

#endif
