/*
 * authz_rate.h: rate limits (docs/authorization.md, "Rate limits"): a token
 * bucket per principal and one per key, each with a rate (requests per
 * second) and a burst (the bucket's size); a rate of 0 turns that kind off.
 * A request takes one token from its principal's bucket and one from its
 * key's, or from neither: past either it is THROTTLED with the time until
 * both have a token again.
 *
 * Each table holds at most max_entries buckets (AUTHZ_RATE_ENTRIES_MAX); past
 * that the least recently used is dropped, and a dropped bucket starts full
 * again, which only ever allows more. One mutex guards both tables.
 */
#ifndef KMS_AUTHZ_RATE_H
#define KMS_AUTHZ_RATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

#define AUTHZ_RATE_ENTRIES_MAX 65536
/* Bounds of the config keys: requests per second and bucket size. */
#define AUTHZ_RATE_MAX 1000000u
/* A principal name or key id a bucket is named by, in bytes. */
#define AUTHZ_RATE_NAME_MAX 255

/* Microseconds on a monotonic clock; tests pass their own. */
typedef uint64_t (*authz_rate_clock_fn)(void *arg);

typedef struct authz_rate_config {
	uint32_t principal_rate, principal_burst; /* rate 0: off; burst 0: the rate */
	uint32_t key_rate, key_burst;
	size_t max_entries;        /* per table; 0 or past the bound: AUTHZ_RATE_ENTRIES_MAX */
	authz_rate_clock_fn clock; /* NULL: kms_monotonic_us */
	void *clock_arg;
} authz_rate_config;

typedef struct authz_rate authz_rate;

typedef enum authz_rate_limit {
	AUTHZ_RATE_NONE = 0,
	AUTHZ_RATE_PRINCIPAL = 1 << 0,
	AUTHZ_RATE_KEY = 1 << 1,
} authz_rate_limit;

typedef struct authz_rate_verdict {
	bool allowed;
	unsigned limited;        /* AUTHZ_RATE_PRINCIPAL | AUTHZ_RATE_KEY: which refused */
	uint32_t retry_after_ms; /* when THROTTLED: until both buckets have a token */
} authz_rate_verdict;

/* KMS_INVALID_ARGUMENT for a rate or burst past AUTHZ_RATE_MAX;
 * KMS_INTERNAL when out of memory. */
kms_status authz_rate_new(const authz_rate_config *cfg, authz_rate **out) KMS_MUST_USE;
void authz_rate_free(authz_rate *rl);

/* Takes a token for principal (NULL: no principal bucket) and key_id (NULL:
 * a key-less operation). KMS_OK when allowed; KMS_THROTTLED with a one-line
 * message naming the principal or key and the retry-after; KMS_INVALID_ARGUMENT
 * for a name longer than AUTHZ_RATE_NAME_MAX (refused, never truncated into
 * another's bucket). *out is always set. */
kms_status authz_rate_take(authz_rate *rl, const char *principal, const char *key_id,
                           authz_rate_verdict *out) KMS_MUST_USE;

/* Buckets held now, per table. */
void authz_rate_entries(authz_rate *rl, size_t *principals, size_t *keys);

#endif
