/*
 * keyring.h: keys and their lifecycle, between the request handlers and the
 * HSM + key store (store.h).
 *
 * Every function is thread-safe and blocks on the database and, where it
 * says so, on the HSM. On failure it returns a status with one line in
 * kms_error_message() naming the key id or alias, never a policy, tag value
 * or key byte. Times are unix seconds passed in by the caller (`now`), so
 * tests can move the clock instead of sleeping.
 *
 * Protection (docs/key-hierarchy.md): a key is 'wrapped' (the default:
 * each version generated in the HSM, wrapped there under the current KEK
 * with CKM_AES_KEY_WRAP_PAD, and kept here wrapped; used through the HSM
 * layer's unwrapped-key cache) or 'hsm-resident' (each version a token
 * object, at most max_hsm_resident such keys). keyring_open makes sure a
 * current KEK exists (creating kms-kek-00000001 on first start).
 *
 * Key references: a key id ("k-" + 32 lowercase hex) or an alias
 * ("alias/..."), see keyid.h. Unknown: KMS_NOT_FOUND. Keys being created are
 * invisible until their HSM object exists.
 *
 * States and what they allow:
 *
 *   state             encrypt  decrypt  enable  disable  rotate  schedule  cancel
 *   ENABLED           yes      yes      ok      ->DIS    yes     ->PD      -
 *   DISABLED          -        -        ->EN    ok       -       ->PD      -
 *   PENDING_DELETION  -        -        -       -        -       -         ->DIS
 *   DESTROYED         -        -        -       -        -       -         -
 *
 * "-" is KMS_FAILED_PRECONDITION, naming the key and its state; DESTROYED
 * too (not NOT_FOUND: the tombstone exists, DescribeKey shows it), so a
 * blob under a destroyed key fails to decrypt with FAILED_PRECONDITION.
 * Metadata (description, tags, policy, rotation period) can be changed in
 * every state but DESTROYED (nor while keyring_tick is destroying the key). Aliases may point only at ENABLED or DISABLED
 * keys; destroying a key deletes its aliases.
 *
 * Crash safety (a crash between the HSM and the database must never
 * leave a key id that answers but cannot decrypt, nor a usable HSM object
 * with no record). A wrapped version leaves nothing in the HSM (its
 * generation's session object is destroyed before the call returns), so
 * its key and version rows are written once, in one transaction, after the
 * HSM has wrapped it. An hsm-resident version is written intent first:
 *   create/rotate: commit the rows as 'creating' -> create the HSM object ->
 *                  commit 'ready'/'active' (and, for rotate, the new primary).
 *   destroy:       commit lifecycle 'destroying' -> destroy every version's
 *                  HSM object -> commit DESTROYED (versions 'destroyed',
 *                  aliases deleted, the rest kept as a tombstone).
 * keyring_open reconciles: 'creating' keys and versions are rolled back (HSM
 * object destroyed, then rows deleted: they were never acknowledged),
 * 'destroying' keys are finished, and token AES objects with a key-version
 * CKA_ID (20 bytes, keyid.h) but no active row are destroyed. An active
 * version whose HSM object is missing is logged, kept, and every use of it
 * fails with KMS_HSM_UNAVAILABLE naming the object. Each action is one line
 * on stderr ("keyring: reconcile: ..."). If kms.db is new but the token
 * already holds key-version objects, keyring_open refuses
 * (KMS_FAILED_PRECONDITION) instead of destroying them: that is a wrong or
 * lost data directory, not a crash.
 *
 * The AES-GCM bound (docs/gcm-limits.md, NIST SP 800-38D): a version is used for at most
 * gcm_max_encryptions random-IV encryptions. keyring_encrypt_key takes uses
 * from an in-memory block that was first reserved durably
 * (encryptions_reserved += block, committed), so a crash wastes the rest of
 * a block but never hands a use out twice; when a version's reservations
 * reach the bound, the key is rotated on the spot and the use comes from the
 * new version.
 *
 * Test hook: if the environment variable KMS_TEST_CRASH_AT names a point
 * when keyring_open runs, the process calls _exit(99) on reaching it:
 *   "create:after-intent"  rows committed as 'creating', no HSM object yet
 *   "create:after-hsm"     HSM object made, rows still 'creating'
 *   "rotate:after-intent"  version row 'creating', no HSM object yet
 *   "rotate:after-hsm"     HSM object made, version row still 'creating'
 *   "destroy:after-hsm"    HSM objects destroyed, key still 'destroying'
 * and of the re-wrap job of keyring_tick (docs/key-hierarchy.md):
 *   "rewrap:after-hsm"     a page re-wrapped in the HSM, not committed
 *   "rewrap:after-commit"  the first page committed, more versions left
 *   "retire:after-hsm"     the drained KEK's token object destroyed, its row
 *                          still 'draining' (the next tick retires it: the
 *                          destroy is idempotent)
 * Any other non-empty value makes keyring_open fail. The variable is read
 * once, at keyring_open.
 */
#ifndef KMS_KEYRING_H
#define KMS_KEYRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/limits.h>
#include <kms/status.h>

#include "hsm/hsm.h"
#include "kms/format/keyid.h"
#include "kms/store/store.h"

/* 2^32 (NIST SP 800-38D's bound for random 96-bit IVs) less 2^24 of
 * headroom: the bound is a probability budget, and stopping 0.4% short
 * costs nothing. */
#define KEYRING_GCM_MAX_ENCRYPTIONS_DEFAULT ((UINT64_C(1) << 32) - (UINT64_C(1) << 24))
#define KEYRING_RESERVE_BLOCK_DEFAULT 65536u
#define KEYRING_DELETION_WINDOW_DEFAULT 30
#define KEYRING_LIST_LIMIT_DEFAULT 100
#define KEYRING_SECONDS_PER_DAY 86400
/* Keys whose metadata (state, versions, reserved GCM uses) is cached: about
 * 200 bytes each, so the default holds ~20 MB at most. A key evicted loses
 * the rest of its reserved block of GCM uses (like a restart does). */
#define KEYRING_METADATA_CACHE_DEFAULT 100000u
#define KEYRING_METADATA_CACHE_MAX 10000000u
#define KEYRING_TICK_BATCH 64              /* keys handled per kind per tick */
/* Unwrapped key versions held as HSM session objects ([keys] cache_entries). */
#define KEYRING_UNWRAPPED_CACHE_DEFAULT 10000u
#define KEYRING_UNWRAPPED_CACHE_MAX 1000000u
/* Keys whose versions are token objects ([keys] max_hsm_resident). */
#define KEYRING_MAX_HSM_RESIDENT_DEFAULT 100u
#define KEYRING_MAX_HSM_RESIDENT_MAX 100000u
/* The re-wrap job: versions re-wrapped and committed (one transaction) per
 * page, and pages per keyring_tick by default ([keys] rewrap_pages_per_tick,
 * at most KEYRING_REWRAP_PAGES_MAX). */
#define KEYRING_REWRAP_BATCH 256
#define KEYRING_REWRAP_PAGES 16
#define KEYRING_REWRAP_PAGES_MAX 1024
/* KEKs keyring_kek_list returns at most. */
#define KEYRING_KEKS_MAX 64
#define KEYRING_CRASH_EXIT_CODE 99

typedef struct keyring keyring;

typedef struct keyring_config {
	const char *region;            /* required: 1..32 of [a-z0-9-]; copied */
	uint64_t gcm_max_encryptions;  /* per version; 0: the default */
	uint32_t reserve_block;        /* uses reserved per commit; 0: the default */
	uint32_t deletion_window_days; /* default window, 7..30; 0: 30 */
	uint32_t seconds_per_day;      /* 0: 86400; tests shorten days */
	uint32_t metadata_cache_entries; /* keys whose metadata is cached; 0: the default */
	uint32_t unwrapped_cache_entries; /* unwrapped versions in the HSM; 0: the default */
	uint32_t max_hsm_resident;     /* hsm-resident keys at most; 0: the default */
	uint32_t rewrap_pages_per_tick; /* re-wrap pages per keyring_tick; 0: the default */
	/* Where the store is (NULL: SQLite in data_dir). Its data_dir is
	 * keyring_open's. With a PostgreSQL URL the database may be shared by
	 * several kmsd replicas (docs/scale-out.md): keyring_open holds the
	 * store's start-up lock (pg_exclusive) through reconciliation only,
	 * and the caches follow the store's cache generation
	 * (keyring_sync). */
	const store_options *store;
} keyring_config;

/* One tag as a caller gives it: key 1..128 bytes, value 0..256 bytes, both
 * UTF-8. */
typedef struct keyring_tag_arg {
	const char *key;
	const char *value;
} keyring_tag_arg;

typedef struct keyring_create_args {
	const char *description;       /* NULL: "" ; 0..256 bytes of UTF-8 */
	key_spec spec;                 /* 0: AES_256 */
	key_usage usage;               /* 0: the spec's (keyring_spec_check) */
	const keyring_tag_arg *tags;
	size_t n_tags;                 /* 0..50, no key twice */
	const char *policy;            /* NULL or "": the default policy */
	uint32_t rotation_period_days; /* 0: off; 1..3650 */
	const char *alias;             /* NULL: none */
	key_protection protection;     /* 0: the spec's default (keyring_spec_check) */
	bool per_data_principal;       /* a sub-key per data principal (docs/data-principals.md) */
	/* The request making it (docs/scale-out.md, "A retried CreateKey"):
	 * NULL, or 64 lowercase hex digits naming it. If a key was already
	 * made under the same reference, it is described instead and nothing
	 * is made (KMS_UNAVAILABLE while it is still being made). */
	const char *request_ref;
} keyring_create_args;

/*
 * What a spec is for and where it may live. Each spec has one usage:
 * AES_256 ENCRYPT_DECRYPT, HMAC_SHA256 GENERATE_VERIFY_MAC, ECC_P256 and
 * ED25519 SIGN_VERIFY (usage 0: that one). AES_256, HMAC_SHA256 and
 * ECC_P256 are wrapped by default; ED25519 only hsm-resident (the HSM
 * cannot wrap an Ed25519 private key); AES_256 may be either (protection
 * 0: the default). Anything else is KMS_INVALID_ARGUMENT saying what fits.
 * Pure.
 */
kms_status keyring_spec_check(key_spec spec, key_usage usage, key_protection protection,
                              key_usage *usage_out, key_protection *protection_out) KMS_MUST_USE;

/* A per-data-principal key must be AES_256 (ENCRYPT_DECRYPT) and wrapped:
 * else KMS_INVALID_ARGUMENT saying what fits. Pure. */
kms_status keyring_per_data_principal_check(bool per_data_principal, key_spec spec,
                                            key_protection protection) KMS_MUST_USE;

/* What DescribeKey shows. The arrays are malloc'ed; key_metadata_free. */
typedef struct key_metadata {
	store_key key;
	store_version *versions;       /* active and destroyed, ascending */
	size_t n_versions;
	store_alias *aliases;          /* ascending by name */
	size_t n_aliases;
	store_tag *tags;               /* ascending by tag key */
	size_t n_tags;
} key_metadata;

/* Frees m's arrays and zeroes it (m itself is the caller's). NULL is ok. */
void key_metadata_free(key_metadata *m);
/* Frees an array from keyring_list and its elements. NULL is ok. */
void key_metadata_array_free(key_metadata *keys, size_t n);

/* A key version handed out for one AES-GCM operation. */
typedef struct keyring_key_use {
	uint8_t key_id[KMS_KEYID_BYTES];
	char key_id_text[KMS_KEYID_TEXT_SIZE];
	uint32_t version;
	hsm_object_id object;          /* CKA_ID of that version (hsm-resident), or its
	                                * name in the unwrapped-key cache (wrapped) */
	bool wrapped;                  /* use keyring_gcm_*, never the token path */
	key_spec spec;
	bool per_data_principal;       /* object names a version until keyring_dp_bind */
	int64_t dp_key;                /* bound: the sub-key's id; 0 otherwise */
} keyring_key_use;

typedef struct keyring_tick_report {
	size_t destroyed;              /* keys whose deletion date passed */
	size_t rotated;                /* keys whose rotation time passed */
	size_t failed;                 /* keys that failed (logged) */
	size_t rewrapped;              /* versions moved to the current KEK */
	size_t keks_retired;           /* draining KEKs that wrap nothing any more */
} keyring_tick_report;

/* ---- open, close, background work ---- */

/* Opens data_dir/kms.db, reconciles it with the token (see above) and returns
 * the keyring. h must outlive it. Blocks on the HSM and the disk, O(objects
 * on the token). */
kms_status keyring_open(hsm *h, const char *data_dir, const keyring_config *cfg,
                        keyring **out) KMS_MUST_USE;

/* Frees the keyring and closes the store. Callers must have stopped using kr
 * on every thread. Unused reserved GCM uses are simply lost. NULL is ok. */
void keyring_close(keyring *kr);

/* The keyring's store, for the parts of kmsd that keep no key material of
 * their own: principals, access keys, grants and policies' reads
 * (kms/ops/op_principals.c, op_grants.c, kms/authz/authz_keys.h,
 * kms/authz/authz_enforce.h, the pipeline's caller step). Valid until
 * keyring_close. */
store *keyring_store(keyring *kr);

/* The metadata cache's figures, for /metrics and tests. */
typedef struct keyring_cache_stats {
	uint64_t entries;
	uint64_t capacity;
	uint64_t loads;     /* entries read from the store (misses and reloads) */
	uint64_t evictions; /* entries dropped to stay within capacity */
	uint64_t generation_drops; /* whole caches dropped for another replica's change */
} keyring_cache_stats;
void keyring_cache_stats_get(keyring *kr, keyring_cache_stats *out);

/* Destroys keys whose deletion date is <= now, finishes destructions that
 * failed earlier, and rotates ENABLED keys whose next rotation is <= now; at
 * most KEYRING_TICK_BATCH of each per call. Then re-wraps up to
 * rewrap_pages_per_tick pages of KEYRING_REWRAP_BATCH versions still under a
 * draining KEK, and retires a
 * draining KEK that wraps nothing any more. Logs each action to stderr.
 * Returns the first failure after trying the others. report may be NULL. */
kms_status keyring_tick(keyring *kr, int64_t now, keyring_tick_report *report) KMS_MUST_USE;

/* Replicas (docs/scale-out.md, "Cache coherence"): reads the store's cache
 * generation and, when another replica's commit raised it since the
 * caches were filled, drops every cached key entry and alias, so that
 * what follows reads the store. Call before a request uses the keyring:
 * a change committed before the call is then seen by everything after
 * it. One indexed read; nothing at all when the store is not shared.
 * KMS_UNAVAILABLE (store) when the generation cannot be read: fail the
 * request rather than serve from caches that may be stale. */
kms_status keyring_sync(keyring *kr) KMS_MUST_USE;

/* ---- data plane (hot path: no disk or HSM access in the common case) ---- */

/* For one random-IV AES-GCM encryption under key_ref's primary version:
 * checks the key is ENABLED and an AES encrypt key, consumes one use of the
 * version's GCM budget (rotating first if it is spent: that blocks on the
 * HSM), and fills out. Call it once per encryption: Encrypt, ReEncrypt,
 * GenerateDataKey*, each batch item. */
kms_status keyring_encrypt_key(keyring *kr, const char *key_ref, int64_t now,
                               keyring_key_use *out) KMS_MUST_USE;

/* For decrypting a blob made under key_id / version: the key exists and is
 * ENABLED, the version exists and is active, its HSM object is present.
 * Unknown key or version: KMS_NOT_FOUND (a blob parser may map it to
 * INVALID_CIPHERTEXT). key_id may point into *out. */
kms_status keyring_decrypt_key(keyring *kr, const uint8_t key_id[KMS_KEYID_BYTES],
                               uint32_t version, keyring_key_use *out) KMS_MUST_USE;

/* AES-256-GCM with the version in use (sizes and failures as
 * hsm_aes_gcm_encrypt / hsm_aes_gcm_decrypt): a wrapped version through the
 * unwrapped-key cache (its material read from the store on a miss), an
 * hsm-resident one with its token object. */
kms_status keyring_gcm_encrypt(keyring *kr, const keyring_key_use *use,
                               const uint8_t iv[HSM_GCM_IV_LEN], const uint8_t *aad,
                               size_t aad_len, const uint8_t *plaintext, size_t plaintext_len,
                               uint8_t *out, size_t out_cap) KMS_MUST_USE;
kms_status keyring_gcm_decrypt(keyring *kr, const keyring_key_use *use,
                               const uint8_t iv[HSM_GCM_IV_LEN], const uint8_t *aad,
                               size_t aad_len, const uint8_t *sealed, size_t sealed_len,
                               uint8_t *out, size_t out_cap) KMS_MUST_USE;

/* ---- signing and MAC keys (docs/signing.md, docs/pseudonyms.md) ---- */

/* For Sign, Verify, GetPublicKey (usage SIGN_VERIFY), GenerateMac,
 * VerifyMac, Pseudonymize (GENERATE_VERIFY_MAC): key_ref's key is ENABLED
 * (else KMS_FAILED_PRECONDITION), its usage is `usage` (else
 * KMS_INVALID_ARGUMENT naming the key's usage and the one `op` needs), and
 * version (0: the primary) is active (else KMS_NOT_FOUND); fills out. */
kms_status keyring_use_key(keyring *kr, const char *key_ref, key_usage usage, const char *op,
                           uint32_t version, keyring_key_use *out) KMS_MUST_USE;
/* The key's active versions, the primary first, then newest first; at
 * most cap (Verify and VerifyMac with no version try each). */
kms_status keyring_active_versions(keyring *kr, const uint8_t key_id[KMS_KEYID_BYTES],
                                   uint32_t *out, size_t cap, size_t *n) KMS_MUST_USE;
/* A signature with a SIGN_VERIFY version, raw: ECC_P256 signs input as a
 * SHA-256 digest (input_len 32) with ECDSA, giving r || s; ED25519 signs
 * input as the message (pure Ed25519), giving R || S. 64 bytes either way. */
#define KEYRING_RAW_SIGNATURE_LEN 64
kms_status keyring_sign(keyring *kr, const keyring_key_use *use, const uint8_t *input,
                        size_t input_len,
                        uint8_t sig[static KEYRING_RAW_SIGNATURE_LEN]) KMS_MUST_USE;
/* The version's public key, raw, from the store: ECC_P256 the
 * uncompressed point (65 bytes), ED25519 the 32-byte key (from its token
 * pair when the store has none). */
#define KEYRING_PUBLIC_KEY_MAX 65
kms_status keyring_public_key(keyring *kr, const keyring_key_use *use,
                              uint8_t out[static KEYRING_PUBLIC_KEY_MAX],
                              size_t *len) KMS_MUST_USE;
/* HMAC-SHA256 of msg with a GENERATE_VERIFY_MAC version (in the HSM). */
kms_status keyring_hmac(keyring *kr, const keyring_key_use *use, const uint8_t *msg,
                        size_t msg_len, uint8_t mac[static HSM_HMAC_SHA256_LEN]) KMS_MUST_USE;

/* ---- per-data-principal sub-keys (docs/data-principals.md) ---- */

/* 48 hours, in the keyring's days: the pre-erasure notice comes this long
 * before a sub-key's retention ends (DPDP Rules r.8). */
#define KEYRING_DP_NOTICE_DAYS 2

/* For a use of a per-data-principal key (use->per_data_principal, from
 * keyring_encrypt_key or keyring_decrypt_key; for any other key it does
 * nothing): binds use to the sub-key of data principal dp (a pseudonym's
 * text) under use->version (one per key, version and dp, so the version's
 * GCM budget bounds it), so keyring_gcm_* use that sub-key. Not yet
 * made: with create
 * (sealing) it is generated in the HSM, wrapped under the current KEK and
 * stored, its purpose (the context's, "" or NULL for none; 1..32 of
 * [A-Za-z0-9._-]) fixing its retention on the principal's first use (a
 * later version's sub-key copies the first one's purpose, retention,
 * notice and hold); without (opening) KMS_NOT_FOUND.
 * dp that is not a pseudonym: KMS_INVALID_ARGUMENT. Erased:
 * KMS_FAILED_PRECONDITION naming when and on which basis. Reads the store
 * on every call (an erasure is seen by the next request). */
kms_status keyring_dp_bind(keyring *kr, keyring_key_use *use, const char *dp, const char *purpose,
                           bool create, int64_t now) KMS_MUST_USE;

/* Erases data principal dp's sub-keys (every version's) under key_ref's
 * key at once: their wrapped bytes deleted from the store (the rows stay,
 * ERASED, with now and basis: the tombstones that keep any version's from
 * being made again), their unwrapped copies evicted from the HSM cache,
 * the WAL scrubbed (kr_dp_scrub). dp with no sub-key yet gets a tombstone
 * alone. Held: KMS_FAILED_PRECONDITION naming the hold;
 * already erased: KMS_FAILED_PRECONDITION. The principal's first row as
 * it ends into *out (may be NULL). */
kms_status keyring_dp_erase(keyring *kr, const char *key_ref, const char *dp, const char *basis,
                            int64_t now, store_dp_key *out) KMS_MUST_USE;

/* Places (hold: a statute, 1..256 bytes) or lifts (hold "") the legal hold
 * on dp's sub-keys under key_ref's key, which must exist and be active
 * (KMS_NOT_FOUND, KMS_FAILED_PRECONDITION). A change of hold clears the
 * pre-erasure notice (a new one is given before any erasure). *out as
 * keyring_dp_erase. */
kms_status keyring_dp_hold(keyring *kr, const char *key_ref, const char *dp, const char *hold,
                           store_dp_key *out) KMS_MUST_USE;

/* The key's retention for sub-keys first used for purpose: days
 * 1..STORE_RETENTION_DAYS_MAX, 0 to remove it. Existing sub-keys of that
 * purpose get the new end (from their creation). Only per-data-principal
 * keys. The key id into key_id. */
kms_status keyring_retention_set(keyring *kr, const char *key_ref, const char *purpose,
                                 uint32_t days,
                                 char key_id[static KMS_KEYID_TEXT_SIZE]) KMS_MUST_USE;

/* Principals (their first sub-key rows) whose pre-erasure notice was
 * given and that are not erased nor held, by end then id, after
 * (after_end, after_id); at most cap. */
kms_status keyring_dp_due(keyring *kr, int64_t after_end, int64_t after_id, size_t cap,
                          store_dp_key *out, size_t *n) KMS_MUST_USE;

/* When a noticed sub-key is erased: its retention's end, or
 * KEYRING_DP_NOTICE_DAYS after its notice if that is later. */
int64_t keyring_dp_erase_at(const keyring *kr, const store_dp_key *row);

/* What the retention tick reports as it acts: operation "pre_erasure" or
 * "retention_erasure", called inside the write transaction, after the
 * change was made and only if it was, before the commit. A failure rolls
 * the change back (it is retried on the next tick): nothing is erased or
 * noticed unheard, and nothing is reported that did not change. */
typedef kms_status (*keyring_dp_event_fn)(void *ctx, const char *operation,
                                          const store_dp_key *row);

/* The retention tick: retries a pending WAL scrub; gives again notices
 * dated in the future (the clock went back); notices principals whose
 * retention ends within KEYRING_DP_NOTICE_DAYS, and erases those whose end
 * and notice period have passed, each re-checked as read; at most
 * KEYRING_TICK_BATCH of each. Held sub-keys wait. *noticed and *erased
 * count them. */
kms_status keyring_dp_tick(keyring *kr, int64_t now, keyring_dp_event_fn event, void *ctx,
                           size_t *noticed, size_t *erased) KMS_MUST_USE;

/* ---- KEKs (docs/key-hierarchy.md) ---- */

typedef struct keyring_kek {
	store_kek kek;
	uint64_t versions;             /* key versions wrapped under it now */
} keyring_kek;

/* The newest KEKs, ascending by id (at most cap, at most KEYRING_KEKS_MAX;
 * older ones are retired), with the number of versions each wraps, all
 * read in one snapshot (a re-wrap page committing meanwhile is seen whole
 * or not at all). */
kms_status keyring_kek_list(keyring *kr, keyring_kek *out, size_t cap, size_t *n) KMS_MUST_USE;

/* Creates a new KEK in the HSM and makes it current; the previous one
 * becomes draining, and keyring_tick re-wraps its versions under the new
 * one, then retires it (destroying its token object). One rotation at a
 * time: KMS_FAILED_PRECONDITION while a KEK is still draining. Blocks on
 * the HSM. out may be NULL. */
kms_status keyring_kek_rotate(keyring *kr, int64_t now, store_kek *out) KMS_MUST_USE;

/* The HSM id ("kms-kek-00000001") of the KEK with that id, into out. */
kms_status keyring_kek_name(keyring *kr, uint32_t kek_id,
                            char out[static STORE_KEK_HSM_ID_MAX + 1]) KMS_MUST_USE;

/* The unwrapped-key cache's figures (for /metrics). */
void keyring_key_cache_stats_get(keyring *kr, hsm_keycache_stats *out);

/* ---- control plane ---- */

/* Creates a key (random id from the HSM, version 1 in the HSM) with its tags,
 * policy, rotation period and optional alias, all or nothing. out may be
 * NULL. Blocks on the HSM. */
kms_status keyring_create_key(keyring *kr, const keyring_create_args *args, int64_t now,
                              key_metadata *out) KMS_MUST_USE;

/* Creates n wrapped keys alike (args: no alias; protection wrapped) in one
 * transaction: every version generated and wrapped in the HSM first, then
 * one commit (one fsync) for all. Their ids go to ids[0..n). At most
 * KEYRING_CREATE_BATCH_MAX. For bulk provisioning and benchmarks; all or
 * nothing. */
#define KEYRING_CREATE_BATCH_MAX 10000
kms_status keyring_create_keys_batch(keyring *kr, const keyring_create_args *args, size_t n,
                                     int64_t now,
                                     char (*ids)[KMS_KEYID_TEXT_SIZE]) KMS_MUST_USE;

/* The key row key_ref names (an alias is followed to its key). */
kms_status keyring_resolve(keyring *kr, const char *key_ref, store_key *out) KMS_MUST_USE;

kms_status keyring_describe(keyring *kr, const char *key_ref, key_metadata *out) KMS_MUST_USE;

/* Keys in id order, limit 0 meaning 100, at most 1000. page_token is NULL or
 * "" for the first page, else the next_page_token of the previous page; a
 * malformed token is KMS_INVALID_ARGUMENT. next_page_token is "" on the last
 * page, and may be the same buffer as page_token. *keys is malloc'ed:
 * key_metadata_array_free(*keys, *n_keys). Keys being destroyed show as
 * PENDING_DELETION. One read snapshot per page. */
kms_status keyring_list(keyring *kr, uint32_t limit, const char *page_token,
                        key_metadata **keys, size_t *n_keys,
                        char next_page_token[static KMS_KEYID_TEXT_SIZE]) KMS_MUST_USE;

kms_status keyring_update_description(keyring *kr, const char *key_ref,
                                      const char *description) KMS_MUST_USE;
kms_status keyring_enable(keyring *kr, const char *key_ref) KMS_MUST_USE;
kms_status keyring_disable(keyring *kr, const char *key_ref) KMS_MUST_USE;

/* A new HSM version becomes primary; older versions keep decrypting. Only
 * ENABLED keys. Restarts the rotation period. out may be NULL. Blocks on the
 * HSM. */
kms_status keyring_rotate(keyring *kr, const char *key_ref, int64_t now,
                          key_metadata *out) KMS_MUST_USE;

/* days 1..3650 (next rotation at now + days), or 0 to turn it off. out may be
 * NULL. */
kms_status keyring_set_rotation_period(keyring *kr, const char *key_ref, uint32_t days,
                                       int64_t now, key_metadata *out) KMS_MUST_USE;

/* ENABLED or DISABLED -> PENDING_DELETION, destroyed by keyring_tick at
 * now + window_days (7..30; 0: the configured default). out may be NULL. */
kms_status keyring_schedule_deletion(keyring *kr, const char *key_ref, uint32_t window_days,
                                     int64_t now, store_key *out) KMS_MUST_USE;

/* PENDING_DELETION -> DISABLED. out may be NULL. */
kms_status keyring_cancel_deletion(keyring *kr, const char *key_ref,
                                   store_key *out) KMS_MUST_USE;

/* ---- aliases: alias names (keyid.h) point at key ids, never at aliases ---- */

/* KMS_ALREADY_EXISTS if the alias exists; at most KEY_ALIASES_MAX per key. */
kms_status keyring_alias_create(keyring *kr, const char *alias, const char *target_key_id,
                                int64_t now) KMS_MUST_USE;
/* Points an existing alias at another key. With expect_from (a key id, or
 * NULL for any), only while the alias still names that key: KMS_UNAVAILABLE
 * (retry) when it was moved after the caller decided on it. */
kms_status keyring_alias_update(keyring *kr, const char *alias, const char *target_key_id,
                                const char *expect_from) KMS_MUST_USE;
kms_status keyring_alias_delete(keyring *kr, const char *alias) KMS_MUST_USE;

/* Aliases by name, of key_ref's key only unless it is NULL or "". limit and
 * page tokens as keyring_list (the token is the last alias name returned).
 * *aliases is malloc'ed: free(). */
kms_status keyring_alias_list(keyring *kr, const char *key_ref, uint32_t limit,
                              const char *page_token, store_alias **aliases, size_t *n,
                              char next_page_token[static KMS_ALIAS_TEXT_MAX + 1]) KMS_MUST_USE;

/* ---- tags and policy ---- */

/* Adds or replaces tags, all or nothing; the key ends with at most 50. */
kms_status keyring_tag(keyring *kr, const char *key_ref, const keyring_tag_arg *tags,
                       size_t n) KMS_MUST_USE;
/* Removes tags by key; absent ones are ignored. *removed (may be NULL) is
 * how many the key had and no longer has. */
kms_status keyring_untag(keyring *kr, const char *key_ref, const char *const *tag_keys,
                         size_t n, size_t *removed) KMS_MUST_USE;

/* Checks a policy document: at most 32 KiB of JSON, no duplicate member
 * names, an object with a "Version" string and a "Statement" array.
 * Enforcement is elsewhere. Pure. */
kms_status keyring_policy_validate(const char *policy) KMS_MUST_USE;

/* The key's policy text, "" for the default policy; malloc'ed, free(). */
kms_status keyring_policy_get(keyring *kr, const char *key_ref, char **policy) KMS_MUST_USE;
kms_status keyring_policy_put(keyring *kr, const char *key_ref, const char *policy) KMS_MUST_USE;

#endif
