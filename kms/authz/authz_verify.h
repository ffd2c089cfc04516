/*
 * authz_verify.h: kmsd's check of a signed request's credential
 * (docs/request-signing.md, docs/authorization.md "Signed requests").
 *
 * Given the request's bytes as received and their unpacked form, in order:
 *
 *   1. the credential is well formed (present, an access key id of "AK" and
 *      20 base32 characters, a 32-byte MAC, a valid request id), and the
 *      bytes carry exactly the operation the unpacked request has
 *      (authz_wire.h finds its bytes where they sit);
 *   2. the access key is known (the key source below), not revoked, and
 *      its principal is not disabled;
 *   3. the MAC verifies (kms_sign_verify, compared in constant time), over
 *      the request id, timestamp, operation name and operation bytes;
 *   4. the timestamp is within KMS_SIGN_MAX_SKEW_SECONDS of the clock,
 *      inclusive (exactly 300 s off passes, 301 s does not);
 *   5. the request id was not seen from this access key within the window
 *      (authz_replay.h). Only a request that passed 1-4 is recorded.
 *
 * The first check that fails decides. Every refusal is KMS_ACCESS_DENIED to
 * the client with nothing saying which check failed; the verdict carries
 * the precise reason for the audit entry and kmsd's log. Two outcomes are
 * not refusals of the credential: no room in the replay table
 * (KMS_THROTTLED, retry after AUTHZ_REPLAY_SWEEP_SECONDS) and a key source
 * that failed (KMS_UNAVAILABLE); both fail closed.
 *
 * kmsd's pipeline calls it for every request that carries a credential,
 * with the access keys of kms/authz/authz_keys.h.
 */
#ifndef KMS_AUTHZ_VERIFY_H
#define KMS_AUTHZ_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/sign.h>
#include <kms/status.h>

#include "kms/authz/authz_replay.h"

#define AUTHZ_DETAIL_MAX 160

/* An access key as the key source hands it over. */
typedef struct authz_key {
	char principal[AUTHZ_PRINCIPAL_NAME_MAX + 1]; /* its principal's name */
	bool revoked;            /* the access key is revoked */
	bool principal_disabled; /* its principal is DISABLED */
	/* KMS_SIGN_SECRET_LEN bytes in locked memory (kms_secure_alloc),
	 * owned by the source until release; may be NULL when revoked or
	 * disabled (the verifier does not read it then). */
	const uint8_t *secret;
} authz_key;

/* Where access keys come from (the store, in kmsd). lookup returns KMS_OK
 * with *out filled, KMS_NOT_FOUND for no such access key, anything else
 * when it could not tell. After KMS_OK the verifier calls release exactly
 * once (the source wipes and frees the secret); after anything else,
 * never. Both are called from any worker thread. */
typedef struct authz_key_source {
	kms_status (*lookup)(void *ctx, const char *access_key_id, authz_key *out);
	void (*release)(void *ctx, authz_key *key);
	void *ctx;
} authz_key_source;

/* Unix seconds; kms_now() when the config gives none (tests inject one). */
typedef int64_t (*authz_clock)(void *ctx);

typedef struct authz_verify_config {
	authz_key_source keys;
	authz_clock clock;
	void *clock_ctx;
	/* The replay table's bounds (authz_replay.h); 0 takes the default. */
	size_t replay_entries, replay_per_key, replay_keys;
} authz_verify_config;

typedef enum authz_reason {
	AUTHZ_VERIFIED = 0,
	AUTHZ_MALFORMED_CREDENTIAL, /* missing, bad id, bad MAC length, bad request id, bytes not a request */
	AUTHZ_OP_MISSING,           /* no operation, or not the one unpacked */
	AUTHZ_UNKNOWN_KEY,
	AUTHZ_REVOKED_KEY,
	AUTHZ_DISABLED_PRINCIPAL,
	AUTHZ_BAD_MAC,
	AUTHZ_TIMESTAMP_SKEW,
	AUTHZ_REPLAY,
	AUTHZ_REPLAY_TABLE_FULL,    /* KMS_THROTTLED */
	AUTHZ_KEY_LOOKUP_FAILED,    /* KMS_UNAVAILABLE */
} authz_reason;

typedef struct authz_verdict {
	kms_status status;   /* KMS_OK, KMS_ACCESS_DENIED, KMS_THROTTLED, KMS_UNAVAILABLE */
	authz_reason reason;
	/* The access key id when well formed, else "". Public, safe to log. */
	char access_key_id[AUTHZ_ID_LEN + 1];
	char principal[AUTHZ_PRINCIPAL_NAME_MAX + 1]; /* "" until the key is known */
	const char *operation;   /* the op's field name, or NULL; static */
	int64_t skew_seconds;    /* timestamp - clock (saturated), once known */
	uint32_t retry_after_ms; /* with KMS_THROTTLED */
	/* One line for the audit entry and the log: the reason with its ids
	 * and figures; never a secret or a MAC. */
	char detail[AUTHZ_DETAIL_MAX];
} authz_verdict;

typedef struct authz_verifier authz_verifier;

/* KMS_INVALID_ARGUMENT without lookup and release or on a bad replay
 * bound, KMS_INTERNAL out of memory (an error message is set); *out is
 * NULL then. */
kms_status authz_verifier_open(const authz_verify_config *config,
                               authz_verifier **out) KMS_MUST_USE;

/* NULL is ignored. */
void authz_verifier_close(authz_verifier *v);

/* Checks the credential of one request: packed[0..len) as received and
 * req, the same bytes unpacked. Fills *out and returns out->status.
 * Thread-safe. */
kms_status authz_verify(authz_verifier *v, const uint8_t *packed, size_t len,
                        const struct Kms__Request *req, authz_verdict *out);

/* A stable token for the audit entry: "verified", "malformed_credential",
 * "op_missing", "unknown_key", "revoked_key", "disabled_principal",
 * "bad_mac", "timestamp_skew", "replay", "replay_table_full",
 * "key_lookup_failed". */
const char *authz_reason_name(authz_reason reason);

/* The verifier's replay table, for its statistics. */
authz_replay *authz_verifier_replay(authz_verifier *v);

#endif
