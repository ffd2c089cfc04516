/*
 * kms/data_key_cache.h: opt-in caching of data keys in the client, for a
 * service that envelope-encrypts many small objects (kms/envelope.h).
 *
 * Without a cache every envelope message costs one GenerateDataKey (to
 * encrypt) or one Decrypt (to open). With one, a data key is reused for
 * several messages within three bounds, all per cached data key:
 *
 *   max_age_ms     how long after kmsd made (or opened) it;
 *   max_messages   how many messages it may seal (or open);
 *   max_bytes      how many plaintext bytes those messages may hold.
 *
 * Whichever bound is reached first retires the key: the next message gets a
 * fresh one. Each envelope message still has its own key, derived from the
 * data key with a random 256-bit salt (docs/envelope-format.md), so reuse
 * never repeats a GCM key and nonce.
 *
 * Encryption entries are found by (key reference as given, encryption
 * context); decryption entries by (wrapped data key blob, context, the
 * key_id the caller required). Concurrent requests for an entry that is
 * being fetched wait for that one call instead of making their own: 16
 * threads encrypting under one key and context at once make one
 * GenerateDataKey. A failed fetch fails every waiter with its error and
 * caches nothing.
 *
 * Plaintext data keys are held in kms_secure_alloc memory (locked in RAM,
 * out of core dumps) and wiped when retired, evicted or freed.
 *
 * What caching gives up (say so to whoever approves it): kmsd authorizes
 * and audits the GenerateDataKey or Decrypt that filled an entry, not each
 * message sealed or opened with it; a key disabled, a grant revoked or a
 * consent withdrawn takes effect here only when the entry retires (at most
 * max_age_ms later). An alias is resolved by kmsd when the entry is filled.
 *
 * Thread-safe: one cache may serve many threads; it uses its own
 * kms_client, which must outlive it.
 */
#ifndef KMS_DATA_KEY_CACHE_H
#define KMS_DATA_KEY_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/client.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KMS_DATA_KEY_CACHE_MAX_AGE_MS_MAX (24u * 3600u * 1000u) /* one day */
#define KMS_DATA_KEY_CACHE_CAPACITY_DEFAULT 64
#define KMS_DATA_KEY_CACHE_CAPACITY_MAX 65536

typedef struct kms_data_key_cache kms_data_key_cache;

typedef struct kms_data_key_cache_limits {
	uint32_t max_age_ms;   /* 1..KMS_DATA_KEY_CACHE_MAX_AGE_MS_MAX */
	uint64_t max_messages; /* >= 1 (1: no reuse; useful to count calls) */
	uint64_t max_bytes;    /* >= 1 */
	/* Entries held at once, each direction (0: the default); past it the
	 * least recently used ready entry is evicted (and wiped). */
	uint32_t capacity;
} kms_data_key_cache_limits;

typedef struct kms_data_key_cache_stats {
	uint64_t hits;          /* a cached key served a message */
	uint64_t misses;        /* a message needed a fresh key */
	uint64_t coalesced;     /* a message waited for another's fetch */
	uint64_t generate_calls;/* GenerateDataKey calls made */
	uint64_t decrypt_calls; /* Decrypt calls made */
	uint64_t retired;       /* keys retired by age, messages or bytes */
	uint64_t evicted;       /* keys evicted for capacity */
} kms_data_key_cache_stats;

/* A cache on client (borrowed: it must outlive the cache). Limits out of
 * range are KMS_INVALID_ARGUMENT naming the bound. */
KMS_EXPORT kms_status kms_data_key_cache_new(kms_client *client,
                                             const kms_data_key_cache_limits *limits,
                                             kms_data_key_cache **out,
                                             kms_error *err) KMS_MUST_USE;

/* Wipes every cached key and frees the cache; no call may be using it.
 * NULL is ignored. */
KMS_EXPORT void kms_data_key_cache_free(kms_data_key_cache *cache);

/* The counters so far. */
KMS_EXPORT void kms_data_key_cache_stats_get(kms_data_key_cache *cache,
                                             kms_data_key_cache_stats *out);

/*
 * A data key to seal one message of message_bytes plaintext bytes under
 * key_id and context: a cached one when the bounds allow (the message and
 * its bytes are counted against it now), else a fresh GenerateDataKey
 * (coalesced with concurrent requests for the same entry). message_bytes
 * above max_bytes bypasses the cache (a fresh key, not cached). *out is
 * filled as kms_generate_data_key fills it (plaintext in secure memory, a
 * copy the caller owns; release with kms_data_key_free).
 */
KMS_EXPORT kms_status kms_data_key_cache_encrypt_key(kms_data_key_cache *cache,
                                                     const char *key_id,
                                                     const kms_context_pair *context,
                                                     size_t n_context, uint64_t message_bytes,
                                                     kms_data_key *out,
                                                     kms_error *err) KMS_MUST_USE;

/*
 * The plaintext of a wrapped data key blob under context (and, when key_id
 * is not NULL, only if kmsd says the blob is under that key), to open one
 * message of message_bytes plaintext bytes: cached within the same bounds,
 * else a Decrypt (coalesced). *out as kms_decrypt fills it.
 */
KMS_EXPORT kms_status kms_data_key_cache_decrypt_key(kms_data_key_cache *cache,
                                                     const uint8_t *blob, size_t blob_len,
                                                     const kms_context_pair *context,
                                                     size_t n_context, const char *key_id,
                                                     uint64_t message_bytes,
                                                     kms_plaintext *out,
                                                     kms_error *err) KMS_MUST_USE;

#ifdef __cplusplus
}
#endif
#endif
