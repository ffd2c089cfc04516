/*
 * authz_replay.h: the request ids seen from each access key, so that a
 * signed request is accepted once (docs/request-signing.md, "Replays").
 *
 * An entry is (access key id, request id), kept while a request carrying
 * them could still pass the timestamp window: until kmsd's clock passes
 * max(timestamp_unix, the time it was seen) + window. A captured request
 * replayed after that fails the window instead; the same request id
 * signed afresh is accepted again.
 *
 * Bounded in memory and in time, and never forgetting a live entry:
 *
 *   - at most `entries` entries in all, `per_key` of them for one access
 *     key, and `keys` access keys with live entries; the memory for all of
 *     them is reserved at open (authz_replay_stats.bytes_reserved: 32 bytes
 *     an entry, 4 a bucket, 32 a key) and never grows;
 *   - an expired entry is dropped when a lookup walks past it, and by a
 *     sweep of the whole table when an insert finds no room (at most one
 *     sweep per second of the clock given, so a flood cannot make every
 *     request pay for one);
 *   - when there is still no room the request is refused (AUTHZ_REPLAY_FULL:
 *     the verifier answers THROTTLED): a live entry is never evicted, so a
 *     flood from one key can fill only its own `per_key` share and others
 *     keep working, and nothing is ever accepted twice.
 *
 * An entry holds a 16-byte HMAC-SHA256 of the two ids under a key drawn at
 * open, not the ids: small, and a client cannot choose request ids that
 * pile into one hash bucket. Two different ids sharing those 16 bytes would
 * be refused as a replay (fail closed; odds 2^-128 per pair).
 *
 * Thread-safe: one mutex, held for one hash walk (or a sweep).
 */
#ifndef KMS_AUTHZ_REPLAY_H
#define KMS_AUTHZ_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

#include "kms/format/authz_names.h"

/* Defaults (kmsd's; [limits] replay_* set others): at most 36 MiB of
 * entries and buckets; one access key may hold a quarter of them, which at a steady
 * rate is 262,144 / 300 s = 873 signed requests/s for one key. */
#define AUTHZ_REPLAY_ENTRIES_DEFAULT (1u << 20)
#define AUTHZ_REPLAY_PER_KEY_DEFAULT (1u << 18)
#define AUTHZ_REPLAY_KEYS_DEFAULT 4096u
#define AUTHZ_REPLAY_ENTRIES_MAX (1u << 24)
/* How often (clock seconds) a full table may be swept; also the
 * retry-after hint of a refusal for want of room. */
#define AUTHZ_REPLAY_SWEEP_SECONDS 1

typedef struct authz_replay authz_replay;

typedef enum authz_replay_result {
	AUTHZ_REPLAY_FRESH = 0, /* not seen within the window: now recorded */
	AUTHZ_REPLAY_SEEN,      /* seen from this key within the window: refuse */
	AUTHZ_REPLAY_FULL,      /* no room to record it: refuse, retry later */
} authz_replay_result;

typedef struct authz_replay_stats {
	size_t entries;        /* recorded, including expired ones not dropped yet */
	size_t keys;           /* access keys holding entries */
	size_t bytes_reserved; /* the memory bound, reserved at open */
} authz_replay_stats;

/* A table of at most `entries` entries (1..AUTHZ_REPLAY_ENTRIES_MAX),
 * `per_key` (1..entries) per access key, `keys` (1..entries) access keys;
 * entries live `window_seconds` (> 0) past max(timestamp, now).
 * KMS_INVALID_ARGUMENT on a bad bound, KMS_INTERNAL out of memory (an
 * error message is set); *out is NULL then. */
kms_status authz_replay_open(size_t entries, size_t per_key, size_t keys,
                             int64_t window_seconds, authz_replay **out) KMS_MUST_USE;

/* Frees it all. NULL is ignored. */
void authz_replay_close(authz_replay *r);

/* Records (access_key_id, request_id) seen at `now` with the request's
 * timestamp, or says why not. access_key_id is AUTHZ_ID_LEN
 * characters, request_id 1..KMS_REQUEST_ID_MAX; anything else is
 * AUTHZ_REPLAY_FULL (closed). Call it only for a request whose MAC
 * verified, so that only holders of a secret can fill the table. */
authz_replay_result authz_replay_check(authz_replay *r, const char *access_key_id,
                                       const char *request_id, int64_t timestamp_unix,
                                       int64_t now);

void authz_replay_stats_get(authz_replay *r, authz_replay_stats *out);

#endif
