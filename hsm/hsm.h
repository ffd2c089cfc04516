/*
 * hsm.h: the PKCS#11 layer. Everything kms does with key material goes
 * through here; nothing above this layer sees a key byte of a KEK.
 *
 * One hsm per process: the module is dlopen'ed, C_Initialize'd with
 * CKF_OS_LOCKING_OK, the token found by label and the user logged in with a
 * PIN read from a file (mode 0600 or stricter) or an environment variable,
 * never from argv.
 *
 * Sessions: each calling thread gets its own session on first use, kept in a
 * thread-local slot (no lock on the hot path) and closed when the thread
 * exits. Object handles are cached by CKA_ID (a read-mostly lock). A call
 * that fails with CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED,
 * CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT or CKR_USER_NOT_LOGGED_IN
 * re-opens the session (and logs in again), one that fails with a stale
 * object handle looks the object up again, and either is retried once; a
 * second failure is returned. Threads that used an hsm must be joined (or
 * still running) when hsm_close runs.
 *
 * Objects are named by CKA_ID (1..HSM_ID_MAX bytes, chosen by the caller)
 * and carry a CKA_LABEL for humans. All functions block on the HSM, are
 * thread-safe, and on failure return a status with a one-line message
 * (kms_error_message()) naming the call, the object label and the CK_RV by
 * name; they never write secret bytes to a message.
 */
#ifndef KMS_HSM_H
#define KMS_HSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

#include "common/histogram.h"

#define HSM_ID_MAX 64
#define HSM_LABEL_MAX 64
#define HSM_AES256_KEY_LEN 32
#define HSM_GCM_IV_LEN 12
#define HSM_GCM_TAG_LEN 16
#define HSM_ED25519_PUBLIC_LEN 32
#define HSM_ED25519_SIG_LEN 64
#define HSM_HMAC_SHA256_KEY_LEN 32
#define HSM_HMAC_SHA256_LEN 32
/* An uncompressed P-256 point: 0x04 || X || Y. */
#define HSM_EC_P256_PUBLIC_LEN 65
/* A P-256 ECDSA signature as PKCS#11 gives it: r || s, 32 bytes each. */
#define HSM_ECDSA_P256_SIG_LEN 64
#define HSM_SHA256_DIGEST_LEN 32
/* Room for any wrapped key version: RFC 5649 output of an AES-256 or
 * HMAC-SHA256 key is 40 bytes, of a P-256 private key (SoftHSM's PKCS#8)
 * 80 bytes. */
#define HSM_WRAPPED_MAX 512
/* The unwrapped-key cache's capacity until hsm_keycache_configure. */
#define HSM_KEYCACHE_DEFAULT_ENTRIES 10000

typedef struct hsm hsm;

typedef struct hsm_config {
	const char *module_path; /* NULL: SoftHSMv2's module */
	const char *token_label; /* required */
	const char *pin_file;    /* PIN in a file (first line), mode 0600 or stricter */
	const char *pin_env;     /* or: name of an environment variable holding it */
} hsm_config;

/* An HSM object's name: CKA_ID bytes. */
typedef struct hsm_object_id {
	uint8_t bytes[HSM_ID_MAX];
	size_t len;
} hsm_object_id;

typedef enum hsm_object_kind {
	HSM_OBJECT_AES_KEY,
	HSM_OBJECT_ED25519_PRIVATE,
	HSM_OBJECT_ED25519_PUBLIC,
	HSM_OBJECT_OTHER,
	HSM_OBJECT_KEK, /* an AES key with CKA_UNWRAP: a key-encryption key */
} hsm_object_kind;

/* Loads the module, finds the token, logs in. On failure *out is NULL and the
 * message says which of module, token, PIN is wrong: KMS_HSM_UNAVAILABLE
 * (KMS_INVALID_ARGUMENT for a config missing its label or PIN source, or
 * naming both a PIN file and a PIN variable). */
kms_status hsm_open(const hsm_config *config, hsm **out) KMS_MUST_USE;

/* Logs out, closes every session, finalizes and unloads the module. Callers
 * must have stopped using h on every thread. NULL is ignored. */
void hsm_close(hsm *h);

/* The label of the token h is logged in to (for log lines). */
const char *hsm_token_label(const hsm *h);

/* Creates a token AES-256 key: CKA_SENSITIVE, !CKA_EXTRACTABLE, CKA_TOKEN,
 * CKA_ENCRYPT, CKA_DECRYPT, with the given CKA_ID and CKA_LABEL.
 * KMS_ALREADY_EXISTS if an object with that id exists. */
kms_status hsm_aes_create(hsm *h, const hsm_object_id *id, const char *label) KMS_MUST_USE;

/* Destroys every object with that CKA_ID (key, or both halves of a pair).
 * KMS_OK if none was there (destroy is idempotent). */
kms_status hsm_object_destroy(hsm *h, const hsm_object_id *id) KMS_MUST_USE;

/* Sets *exists to whether an object with that CKA_ID is on the token. */
kms_status hsm_object_exists(hsm *h, const hsm_object_id *id, bool *exists) KMS_MUST_USE;

/* Calls visit once per object on the token (id, kind); stops and returns the
 * first non-OK status visit returns. For start-up reconciliation. */
typedef kms_status (*hsm_visit_fn)(void *ctx, const hsm_object_id *id, hsm_object_kind kind);
kms_status hsm_objects_list(hsm *h, hsm_visit_fn visit, void *ctx) KMS_MUST_USE;

/*
 * AES-256-GCM (CKM_AES_GCM, 12-byte IV, 16-byte tag). encrypt writes
 * plaintext_len + 16 bytes (ciphertext || tag) into out; out_cap must equal
 * that exactly. decrypt takes ciphertext || tag and writes exactly
 * sealed_len - 16 bytes; out_cap must equal that. A tag mismatch (wrong key,
 * IV, AAD or a changed byte) is KMS_INVALID_CIPHERTEXT, and out is zeroed:
 * nothing is released unless it verifies.
 */
kms_status hsm_aes_gcm_encrypt(hsm *h, const hsm_object_id *key,
                               const uint8_t iv[HSM_GCM_IV_LEN],
                               const uint8_t *aad, size_t aad_len,
                               const uint8_t *plaintext, size_t plaintext_len,
                               uint8_t *out, size_t out_cap) KMS_MUST_USE;
kms_status hsm_aes_gcm_decrypt(hsm *h, const hsm_object_id *key,
                               const uint8_t iv[HSM_GCM_IV_LEN],
                               const uint8_t *aad, size_t aad_len,
                               const uint8_t *sealed, size_t sealed_len,
                               uint8_t *out, size_t out_cap) KMS_MUST_USE;

/* len random bytes from the HSM's generator (C_GenerateRandom). */
kms_status hsm_random(hsm *h, uint8_t *out, size_t len) KMS_MUST_USE;

/* Creates a token Ed25519 pair (CKM_EC_EDWARDS_KEY_PAIR_GEN); the private
 * half is sensitive and not extractable. Both halves share the CKA_ID (any
 * bytes: the audit key's name, or a key version's 20-byte id), so
 * hsm_object_destroy removes both and hsm_objects_list reports both
 * (HSM_OBJECT_ED25519_PRIVATE and _PUBLIC). KMS_ALREADY_EXISTS if an
 * object with that id exists. */
kms_status hsm_ed25519_create(hsm *h, const hsm_object_id *id, const char *label) KMS_MUST_USE;

/* The raw 32-byte public key of the pair with that id. */
kms_status hsm_ed25519_public(hsm *h, const hsm_object_id *id,
                              uint8_t out[HSM_ED25519_PUBLIC_LEN]) KMS_MUST_USE;

/* A pure Ed25519 (CKM_EDDSA) signature over msg. */
kms_status hsm_ed25519_sign(hsm *h, const hsm_object_id *id,
                            const uint8_t *msg, size_t msg_len,
                            uint8_t sig[HSM_ED25519_SIG_LEN]) KMS_MUST_USE;

/* The PKCS#11 name of a CK_RV ("CKR_PIN_INCORRECT"), or "CKR_0x..." . */
const char *hsm_rv_name(unsigned long rv);

/* What `kms-admin hsm status` shows, read through libp11. */
typedef struct hsm_token_info {
	char label[33];
	char serial[17];
	char model[17];
	char manufacturer[33];
	unsigned long slot_id;
	bool initialized;
	bool login_required;
	bool logged_in; /* after trying the configured PIN */
	unsigned long objects; /* on the token, seen after login */
} hsm_token_info;

/* Finds the configured token with libp11, logs in with the configured PIN
 * (when one is given) and fills info. Independent of hsm_open. For a CLI:
 * in a process with an open hsm it closes that hsm's sessions (libp11
 * closes all of the process's sessions when it lets go of the slots; the
 * hsm recovers on its next call), so kmsd uses hsm_info instead. On a
 * failed login, info holds what was read before it. */
kms_status hsm_token_status(const hsm_config *config, hsm_token_info *info) KMS_MUST_USE;

/* The same information from an open hsm, through the calling thread's own
 * session: disturbs nothing (for kmsd's Health). logged_in is the
 * application's login state after the layer's usual re-login. */
kms_status hsm_info(hsm *h, hsm_token_info *info) KMS_MUST_USE;

/*
 * ---- The key hierarchy (docs/key-hierarchy.md) ----
 *
 * A few key-encryption keys (KEKs) live on the token; every other key
 * version is generated in the HSM, wrapped there under a KEK with
 * CKM_AES_KEY_WRAP_PAD (RFC 5649) and kept by the caller as wrapped bytes.
 * To be used it is unwrapped into a sensitive, non-extractable session
 * object held in a bounded process-wide cache (below). Its clear value
 * never leaves the HSM.
 *
 * SoftHSMv2 2.6's C_WrapKey zero-pads a key to a multiple of 8 bytes before
 * RFC 5649, so the length the wrapped bytes carry is the padded one (its
 * C_UnwrapKey follows the RFC). Every secret kms generates is 32 bytes and
 * unaffected; a P-256 version's PKCS#8 (67 bytes of DER) comes back from
 * any RFC 5649 unwrap with 5 zero bytes after it, which SoftHSMv2 reads
 * (another module's unwrap may not). The RFC 4231 cases of
 * tests/hsm/test_hsm_sign_mac.c show the padding.
 */

/* What a wrapped key version is. */
typedef enum hsm_key_type {
	HSM_KEY_TYPE_AES256 = 1,      /* CKK_AES, 32 bytes: AES-256-GCM */
	HSM_KEY_TYPE_HMAC_SHA256 = 2, /* CKK_GENERIC_SECRET, 32 bytes: CKM_SHA256_HMAC */
	HSM_KEY_TYPE_EC_P256 = 3,     /* CKK_EC private key on P-256 (wrapped as PKCS#8) */
} hsm_key_type;

/* "AES-256", "HMAC-SHA256", "EC P-256" ("unknown" otherwise). */
const char *hsm_key_type_name(hsm_key_type type);

/* Creates a KEK on the token: AES-256, CKA_TOKEN, CKA_PRIVATE,
 * CKA_SENSITIVE, !CKA_EXTRACTABLE, CKA_WRAP and CKA_UNWRAP, and nothing
 * else (no CKA_ENCRYPT/DECRYPT: it can only wrap and unwrap).
 * KMS_ALREADY_EXISTS if an object with that id exists. */
kms_status hsm_kek_create(hsm *h, const hsm_object_id *id, const char *label) KMS_MUST_USE;

/* Sets *exists to whether a KEK (an AES key with CKA_UNWRAP) with that id
 * is on the token; an hsm-resident data key with the id does not count. */
kms_status hsm_kek_exists(hsm *h, const hsm_object_id *id, bool *exists) KMS_MUST_USE;

/*
 * Generates a secret key of type (AES-256 or HMAC-SHA256) inside the HSM as
 * a sensitive session object, wraps it under the KEK kek with
 * CKM_AES_KEY_WRAP_PAD and destroys the object on every path. The wrapped
 * bytes (40 for both types) go to out (cap bytes; HSM_WRAPPED_MAX is
 * always enough), their length to *len. KMS_NOT_FOUND when there is no KEK
 * kek; KMS_INVALID_ARGUMENT for HSM_KEY_TYPE_EC_P256 (it has a public half:
 * hsm_generate_wrapped_pair).
 */
kms_status hsm_generate_wrapped(hsm *h, const hsm_object_id *kek, hsm_key_type type,
                                uint8_t *out, size_t cap, size_t *len) KMS_MUST_USE;

/*
 * The same for a key pair (HSM_KEY_TYPE_EC_P256): both halves are session
 * objects, the private one is wrapped (PKCS#8 under KWP: 80 bytes with
 * SoftHSMv2) and the public one returned in public_key as the uncompressed
 * point; both are destroyed on every path. SoftHSMv2's PKCS#8 does not
 * carry the public key, so the caller keeps public_key beside the wrapped
 * bytes: it is the only copy.
 * Ed25519 is not offered: SoftHSMv2 2.6 refuses to wrap an Ed25519 private
 * key (CKR_KEY_NOT_WRAPPABLE); such keys stay token objects.
 */
kms_status hsm_generate_wrapped_pair(hsm *h, const hsm_object_id *kek, hsm_key_type type,
                                     uint8_t *out, size_t cap, size_t *len,
                                     uint8_t public_key[HSM_EC_P256_PUBLIC_LEN]) KMS_MUST_USE;

/*
 * Re-wraps a key version from KEK old_kek to KEK new_kek: unwraps it under
 * old_kek into a sensitive, extractable session object (no other use),
 * wraps that under new_kek, destroys it on every path. The clear value
 * never leaves the HSM. Bytes that fail the unwrap's integrity check are
 * KMS_INTERNAL, as in the cache (below).
 */
kms_status hsm_rewrap(hsm *h, const hsm_object_id *old_kek, const uint8_t *wrapped,
                      size_t wrapped_len, const hsm_object_id *new_kek, hsm_key_type type,
                      uint8_t *out, size_t cap, size_t *out_len) KMS_MUST_USE;

/*
 * ---- The unwrapped-key cache ----
 *
 * Process-wide (one per hsm), an LRU of at most `capacity` unwrapped key
 * versions, each named by the caller (the version's id). Its objects live
 * in one long-lived session of the cache's own (session objects die with
 * the session that made them, and per-thread sessions die with threads).
 * On a miss the loader is called for the version's KEK, type and wrapped
 * bytes, and those are unwrapped (C_UnwrapKey, CKM_AES_KEY_WRAP_PAD) into
 * a session object with CKA_TOKEN false, CKA_SENSITIVE true,
 * CKA_EXTRACTABLE false and only its type's operations (CKA_ENCRYPT and
 * CKA_DECRYPT for AES-256, CKA_SIGN and CKA_VERIFY for HMAC-SHA256,
 * CKA_SIGN for an EC private key). A hit makes no HSM call but
 * the operation itself (one mutex and a pin count, no C_FindObjects).
 *
 * - An entry is pinned while an operation uses it; an eviction destroys a
 *   pinned entry's object when its last user unpins it.
 * - Concurrent first uses of one name wait (on a condition variable) for
 *   one loader call and one unwrap. A failed load is given to every
 *   waiter and not remembered: the next use tries again.
 * - Live cached objects are at most `capacity`, plus evicted ones still
 *   pinned and unwraps in progress.
 * - If the cache's session is lost (C_CloseAllSessions, device removed),
 *   the operation that meets a stale handle drops the whole cache (a
 *   generation counter keeps stale entries from being reused), a new
 *   session is opened and the operation retried once; entries reload as
 *   they are used (counted in reloads_after_loss).
 * - Unwraps (and destroys) are serialized on the cache's session; hits
 *   run in parallel on the callers' own sessions.
 *
 * Memory on our side: one record per entry (sizeof is about 160 bytes on
 * x86-64) plus two hash-bucket pointers; the object's own memory is the
 * HSM's.
 *
 * Failures: the loader's status and message as it recorded them; no KEK
 * with the loader's id is KMS_NOT_FOUND; wrapped bytes the KEK does not
 * unwrap (changed bytes, or wrapped under another KEK: SoftHSMv2 answers
 * CKR_GENERAL_ERROR, the standard says CKR_WRAPPED_KEY_INVALID) are
 * KMS_INTERNAL, the message naming the version and the KEK, unless the
 * token then also fails a random-number probe (KMS_HSM_UNAVAILABLE: a
 * device fault, not bad bytes). A version of another type than the
 * operation's is KMS_FAILED_PRECONDITION.
 */

/* Fills the wrapped material of `name` on a cache miss (from the store):
 * its KEK's id, its type, and the wrapped bytes (at most cap, *len set).
 * Returns KMS_OK, or a status with its message recorded (KMS_FAIL), which
 * the operation and every caller waiting on the same load return. Called
 * with no lock of the layer held. */
typedef kms_status (*hsm_wrapped_loader)(void *ctx, const hsm_object_id *name,
                                         hsm_object_id *kek, hsm_key_type *type,
                                         uint8_t *wrapped, size_t cap, size_t *len);

typedef struct hsm_keycache_stats {
	uint64_t entries;    /* live cached objects now */
	uint64_t capacity;
	uint64_t hits;
	uint64_t misses;     /* uses that called the loader */
	uint64_t unwraps;    /* successful C_UnwrapKey calls */
	uint64_t coalesced;  /* uses that waited for another use's load */
	uint64_t evictions;  /* for capacity, or by hsm_keycache_evict */
	uint64_t reloads_after_loss; /* times the cache was dropped after losing its session */
} hsm_keycache_stats;

/* Sets the capacity (>= 1; HSM_KEYCACHE_DEFAULT_ENTRIES until called),
 * evicting the least recently used entries beyond it. */
kms_status hsm_keycache_configure(hsm *h, size_t entries) KMS_MUST_USE;

/* AES-256-GCM with the cached key version `name` (loaded through loader on
 * a miss). Sizes, tag and output rules as hsm_aes_gcm_encrypt/decrypt. */
kms_status hsm_wrapped_gcm_encrypt(hsm *h, const hsm_object_id *name,
                                   hsm_wrapped_loader loader, void *loader_ctx,
                                   const uint8_t iv[HSM_GCM_IV_LEN],
                                   const uint8_t *aad, size_t aad_len,
                                   const uint8_t *plaintext, size_t plaintext_len,
                                   uint8_t *out, size_t out_cap) KMS_MUST_USE;
kms_status hsm_wrapped_gcm_decrypt(hsm *h, const hsm_object_id *name,
                                   hsm_wrapped_loader loader, void *loader_ctx,
                                   const uint8_t iv[HSM_GCM_IV_LEN],
                                   const uint8_t *aad, size_t aad_len,
                                   const uint8_t *sealed, size_t sealed_len,
                                   uint8_t *out, size_t out_cap) KMS_MUST_USE;

/* HMAC-SHA256 (CKM_SHA256_HMAC) of msg with the cached HMAC key version
 * `name`. To verify a MAC, compute it and compare in constant time. mac is
 * zeroed on failure. The cache unwraps a generic secret of any length
 * (kms generates 32 bytes); the module decides which lengths the
 * mechanism takes (SoftHSMv2: 32 to 512 bytes), and a key outside them is
 * KMS_FAILED_PRECONDITION (CKR_KEY_SIZE_RANGE). */
kms_status hsm_wrapped_hmac_sha256(hsm *h, const hsm_object_id *name,
                                   hsm_wrapped_loader loader, void *loader_ctx,
                                   const uint8_t *msg, size_t msg_len,
                                   uint8_t mac[HSM_HMAC_SHA256_LEN]) KMS_MUST_USE;

/* ECDSA (CKM_ECDSA) with the cached P-256 private key version `name` over
 * a SHA-256 digest the caller computed: the signature as PKCS#11 gives it,
 * r || s, 32 bytes each, big-endian (DER is the caller's business). ECDSA
 * is randomized: two signatures of one digest differ, both valid. sig is
 * zeroed on failure. */
kms_status hsm_wrapped_ecdsa_p256_sign(hsm *h, const hsm_object_id *name,
                                       hsm_wrapped_loader loader, void *loader_ctx,
                                       const uint8_t digest[HSM_SHA256_DIGEST_LEN],
                                       uint8_t sig[HSM_ECDSA_P256_SIG_LEN]) KMS_MUST_USE;

/* Drops `name` from the cache (on disable, scheduled deletion, destroy):
 * its object is destroyed now, or when its last user unpins it. A name not
 * cached is ignored; a load of it in progress completes for the uses
 * waiting on it, and its object is destroyed after them, not kept. */
void hsm_keycache_evict(hsm *h, const hsm_object_id *name);

/* A snapshot of the cache's counters (for /metrics). */
void hsm_keycache_stats_get(hsm *h, hsm_keycache_stats *out);

/* The PKCS#11 calls' figures (for /metrics). An attempt is one run of an
 * operation's calls on a session (one step of the bounded retry, or one
 * C_UnwrapKey attempt of the key cache); a failed attempt is counted by
 * its CK_RV, in one of HSM_RV_SLOTS slots named by hsm_rv_slot_name (the
 * codes the layer knows by name, and "other"): the label set is bounded. */
#define HSM_RV_SLOTS 112
typedef struct hsm_call_stats {
	kms_hist_snapshot attempt_us;  /* each attempt's duration */
	uint64_t errors[HSM_RV_SLOTS]; /* failed attempts (and C_OpenSession) by rv slot */
	uint64_t sessions_open;        /* sessions the layer holds now: threads' and the cache's */
	uint64_t sessions_opened;      /* C_OpenSession calls that succeeded since hsm_open */
	uint64_t sessions_lost;        /* sessions dropped because the module lost them */
} hsm_call_stats;
void hsm_call_stats_get(hsm *h, hsm_call_stats *out);

/* The CK_RV name of slot (CKR_...), "other" for the last, NULL past it. */
const char *hsm_rv_slot_name(size_t slot);

#endif
