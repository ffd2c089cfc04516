/*
 * keyring_impl.h: the keyring's insides, shared by keyring.c (open, close,
 * helpers), keyring_cache.c (caches, data plane), keyring_versions.c
 * (versions, rollback, destruction, tick), keyring_keys.c and
 * keyring_aliases.c (control plane) and keyring_reconcile.c (start-up).
 * Not for use outside the keyring.
 *
 * Locks, always taken in this order, never two stripes at once:
 *   1. stripes[key id byte 0 % KR_STRIPES]: serialises everything that
 *      writes a key's rows or its HSM objects, and every (re)load of its
 *      cache entry, so a load never installs a state older than a write.
 *      Held across HSM calls (rotation) and transactions.
 *   2. cache_lock: the hash tables and every field of every entry. Held
 *      only for memory work: the hot path takes only this lock.
 * SQLite transactions (BEGIN IMMEDIATE) order writes to different keys and
 * to aliases, which need no stripe.
 */
#ifndef KMS_KEYRING_IMPL_H
#define KMS_KEYRING_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "kms/keys/keyring.h"

#define KR_STRIPES 64                /* a power of two */
#define KR_ENTRY_BUCKETS_INITIAL 64  /* a power of two; doubles as keys are cached */
#define KR_ALIAS_BUCKETS 1024        /* a power of two */
#define KR_REGION_MAX KEY_REGION_MAX

typedef enum kr_crash_point {
	KR_CRASH_NONE = 0,
	KR_CRASH_CREATE_AFTER_INTENT,
	KR_CRASH_CREATE_AFTER_HSM,
	KR_CRASH_ROTATE_AFTER_INTENT,
	KR_CRASH_ROTATE_AFTER_HSM,
	KR_CRASH_DESTROY_AFTER_HSM,
	KR_CRASH_REWRAP_AFTER_HSM,
	KR_CRASH_REWRAP_AFTER_COMMIT,
	KR_CRASH_RETIRE_AFTER_HSM,
} kr_crash_point;

/* Per-version flags in a cache entry. */
#define KR_VERSION_ACTIVE 0x1u
#define KR_VERSION_MISSING 0x2u  /* active, but its HSM object was not on the token */

/* What the data plane needs of one key, cached. Entries are created on first
 * use and kept in an LRU of at most metadata_cache_entries. An entry is freed
 * (evicted, or by keyring_close) only with both cache_lock and its key's
 * stripe held, so a pointer to one stays valid while either is held: under
 * cache_lock for the hot path, under the stripe for the slow paths. */
typedef struct kr_entry {
	struct kr_entry *next;        /* hash chain */
	struct kr_entry *lru_newer, *lru_older; /* the LRU list, newest at lru_newest */
	uint8_t id[KMS_KEYID_BYTES];
	char id_text[KMS_KEYID_TEXT_SIZE];
	bool valid;                   /* false: reload (under the stripe) before use */
	key_state state;
	key_spec spec;
	key_usage usage;
	bool wrapped;                 /* protection 'wrapped': versions via the key cache */
	bool per_data_principal;      /* uses go through a data principal's sub-key */
	uint32_t primary;
	uint32_t n_versions;          /* entries in version_flags */
	uint8_t *version_flags;       /* [v - 1]: KR_VERSION_* */
	/* Uses of block_version reserved in the database but not handed out.
	 * Kept across reloads while the primary stays the same. */
	uint32_t block_version;
	uint64_t block_left;
} kr_entry;

typedef struct kr_alias {
	struct kr_alias *next;
	uint64_t hash;
	char name[KMS_ALIAS_TEXT_MAX + 1];
	char key_id[KMS_KEYID_TEXT_SIZE];
} kr_alias;

struct keyring {
	hsm *hsm;
	store *store;
	char region[KR_REGION_MAX + 1];
	uint64_t gcm_max;
	uint32_t reserve_block;
	uint32_t deletion_window_days;
	uint32_t seconds_per_day;
	uint32_t max_hsm_resident;
	uint32_t rewrap_pages;         /* re-wrap pages per tick */
	kr_crash_point crash_at;
	bool shared;                   /* other replicas use the store (PostgreSQL) */
	atomic_uint_fast64_t generation; /* the store's cache generation the caches hold */
	pthread_rwlock_t kek_rwlock;   /* keyring_wrapped.c */
	atomic_bool dp_scrub_pending;  /* keyring_dp.c: an erasure's WAL is not truncated yet */

	pthread_mutex_t stripes[KR_STRIPES];
	pthread_mutex_t cache_lock;
	kr_entry **entries;            /* hash table by key id */
	size_t n_entry_buckets;
	size_t n_entries;
	size_t entry_cap;              /* metadata_cache_entries */
	kr_entry *lru_newest, *lru_oldest;
	uint64_t entry_evictions;
	uint64_t entry_loads;
	uint64_t generation_drops;     /* keyring_sync dropped the caches */
	kr_alias **aliases;            /* hash table by alias name */
	size_t n_alias_buckets;
	size_t n_aliases;
	uint64_t alias_gen;            /* bumped by every alias change */
	uint64_t alias_seed;           /* random, for the alias hash */

	/* HSM ids (KMS_KEYID_HSM_ID_LEN bytes each) of active versions whose
	 * object was missing at start-up; sorted; read-only after open. */
	uint8_t (*missing)[KMS_KEYID_HSM_ID_LEN];
	size_t n_missing;
};

/* An intent (a CREATING key or version) older than this, in seconds, is
 * taken to be a dead replica's when replicas share the store. */
#define KR_INTENT_STALE_S 60

/* Rolls back every intent made at or before `before` and, when own, every
 * one this replica wrote (keyring_reconcile.c): at start-up (own: they are
 * a dead process's), and on each tick when replicas share the store (not
 * own: this process is completing them). */
kms_status kr_reconcile_intents(keyring *kr, int64_t before, bool own) KMS_MUST_USE;

/* _exit(KEYRING_CRASH_EXIT_CODE) if the test hook names this point. */
void kr_crash_point_reached(const keyring *kr, kr_crash_point point);

/* The stripe that serialises writes to a key. */
pthread_mutex_t *kr_stripe(keyring *kr, const uint8_t id[KMS_KEYID_BYTES]);

/* Resolves a key reference to a key id (following an alias). Does not check
 * that the key exists. */
kms_status kr_resolve_ref(keyring *kr, const char *key_ref, uint8_t id[KMS_KEYID_BYTES],
                          char id_text[KMS_KEYID_TEXT_SIZE]) KMS_MUST_USE;

/* The key row, refusing CREATING rows (they do not exist for callers). */
kms_status kr_key_get_visible(keyring *kr, const char *id_text, store_key *out) KMS_MUST_USE;

/* Allocates / frees the caches (keyring_cache.c). */
kms_status kr_cache_init(keyring *kr) KMS_MUST_USE;
void kr_cache_free(keyring *kr);

/* Marks the key's cache entry for reload; call with its stripe held, after
 * the change is committed. */
void kr_cache_invalidate(keyring *kr, const uint8_t id[KMS_KEYID_BYTES]);

/* Forgets every cached alias; call after an alias change is committed. */
void kr_alias_cache_clear(keyring *kr);

/* The HSM name and label of a version. */
kms_status kr_object_id(const uint8_t id[KMS_KEYID_BYTES], uint32_t version,
                        hsm_object_id *out) KMS_MUST_USE;

/* Creates / destroys the HSM object of a key version (idempotent destroy):
 * an AES-256 key or an Ed25519 pair (both halves under the version's id),
 * whose public key goes to public_key and *public_len (0 for AES), for the
 * store. */
kms_status kr_object_create(keyring *kr, const uint8_t id[KMS_KEYID_BYTES], uint32_t version,
                            key_spec spec, uint8_t public_key[static HSM_EC_P256_PUBLIC_LEN],
                            size_t *public_len) KMS_MUST_USE;
kms_status kr_object_destroy(keyring *kr, const uint8_t id[KMS_KEYID_BYTES],
                             uint32_t version) KMS_MUST_USE;

/* Creates the next version of a READY, ENABLED key in the HSM, intent
 * first, and makes it primary; restarts the rotation period from now.
 * Stripe held. *new_version may be NULL. */
kms_status kr_version_create_locked(keyring *kr, const uint8_t id[KMS_KEYID_BYTES],
                                    int64_t now, uint32_t *new_version) KMS_MUST_USE;

/* Finishes destroying a key: marks it DESTROYING if it is READY (then it
 * must be PENDING_DELETION with its date <= now), destroys every version's
 * HSM object, then commits the tombstone. Stripe held. */
kms_status kr_key_destroy_locked(keyring *kr, const uint8_t id[KMS_KEYID_BYTES],
                                 int64_t now) KMS_MUST_USE;

/* Rolls back a CREATING key: HSM objects of its versions, then its rows.
 * If the HSM refuses, the rows stay for the next reconciliation. Failures
 * are logged and the thread's error message is left as it was (it says why
 * we roll back); the status is for reconciliation's log. */
kms_status kr_key_rollback(keyring *kr, const uint8_t id[KMS_KEYID_BYTES]);

/* Rolls back one CREATING version the same way. */
kms_status kr_version_rollback(keyring *kr, const uint8_t id[KMS_KEYID_BYTES],
                               uint32_t version);

/* ---- the key hierarchy (keyring_wrapped.c) ---- */

/* Makes sure a current KEK exists: finishes a KEK creation a crash
 * interrupted, or creates the first KEK. At keyring_open, after
 * reconciliation. store_created as kr_reconcile. */
kms_status kr_kek_open(keyring *kr, bool store_created) KMS_MUST_USE;

/* Generates a version of spec in the HSM wrapped under the current KEK:
 * the KEK's id and the wrapped bytes (at most cap) into *kek_id, out, *len;
 * for a key pair (ECC_P256) its public point into public_key (room for
 * HSM_EC_P256_PUBLIC_LEN) and *public_len, which is 0 for a secret key
 * (both may then be NULL). */
kms_status kr_generate_wrapped(keyring *kr, key_spec spec, uint32_t *kek_id, uint8_t *out,
                               size_t cap, size_t *len, uint8_t *public_key,
                               size_t *public_len) KMS_MUST_USE;
/* The HSM layer's type of a wrapped key spec; KMS_INVALID_ARGUMENT for
 * ED25519 (its versions are token objects). */
kms_status kr_spec_type(key_spec spec, hsm_key_type *out) KMS_MUST_USE;
/* Inserts a wrapped version's row with its material and, for a key pair,
 * its public key (public_len 0: none), inside the caller's transaction. */
kms_status kr_version_insert_wrapped(keyring *kr, const char *id_text, const store_version *v,
                                     uint32_t kek_id, const uint8_t *wrapped, size_t wrapped_len,
                                     const uint8_t *public_key, size_t public_len) KMS_MUST_USE;

/* Drops versions 1..max_version of the key from the unwrapped-key cache
 * (disable, scheduled deletion, destruction). */
void kr_evict_versions(keyring *kr, const uint8_t id[KMS_KEYID_BYTES], uint32_t max_version);

/* One step of the re-wrap job (keyring_tick): re-wraps up to
 * kr->rewrap_pages pages of versions under the draining KEK, retires the KEKs that
 * wrap nothing any more; counts into report (rewrapped, keks_retired,
 * failed). Logs each failure; returns the first, or KMS_OK. */
kms_status kr_rewrap_tick(keyring *kr, int64_t now, keyring_tick_report *report) KMS_MUST_USE;

/* The HSM name (CKA_ID) of a KEK's token object. */
kms_status kr_kek_object_id(const store_kek *kek, hsm_object_id *out) KMS_MUST_USE;

/* ---- per-data-principal sub-keys (keyring_dp.c) ---- */

/* A sub-key's name in the unwrapped-key cache: "dp" and its row id, u64
 * big-endian (10 bytes: never a version's 20). */
#define KR_DP_NAME_PREFIX "dp"
#define KR_DP_NAME_LEN 10
void kr_dp_name(int64_t id, hsm_object_id *out);
/* true and the id when name is a sub-key's. */
bool kr_dp_name_parse(const hsm_object_id *name, int64_t *id);
/* After sub-keys were erased: truncates the WAL (its older frames may
 * still hold their wrapped bytes). Blocked by a reader: logged, and
 * kr->dp_scrub_pending makes every retention tick retry until it is
 * done. */
void kr_dp_scrub(keyring *kr);
/* Evicts every sub-key of key_id from the HSM's unwrapped-key cache
 * (after they were erased with their key). */
void kr_dp_evict_key(keyring *kr, const char *key_id);
/* Re-wraps up to kr->rewrap_pages pages of sub-keys under the draining
 * KEK from, to the current one; counts into report. *done: none is
 * left (but those that failed). */
kms_status kr_dp_rewrap_tick(keyring *kr, const store_kek *from, const store_kek *to,
                             keyring_tick_report *report, bool *done) KMS_MUST_USE;

/* Start-up reconciliation of the store with the token (keyring.h).
 * store_created: kms.db had no schema before this open. */
kms_status kr_reconcile(keyring *kr, bool store_created) KMS_MUST_USE;

/* One kms_log line (common/log.h) at level, its message prefixed "keyring: ".
 * Never secret bytes. */
void kr_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Strict UTF-8 without NUL, at most max bytes; for descriptions and tags. */
bool kr_text_ok(const char *s, size_t min, size_t max);

#endif
