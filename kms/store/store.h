/*
 * store.h: the key metadata store, one SQLite database (kms.db) in the data
 * directory.
 *
 * What it keeps: keys, their versions (with the count of GCM encryptions
 * reserved per version), aliases and tags; the KEKs' rows (their objects are
 * in the HSM) and, for a key whose protection is 'wrapped', each version's
 * material wrapped under one KEK (docs/key-hierarchy.md). What it never
 * keeps: key material in the clear. An hsm-resident key's versions are
 * token objects in the HSM, named by key id and version.
 *
 * Durability: WAL, synchronous=FULL (metadata is low volume, and a lost
 * reservation of GCM uses would let a version be used past its bound),
 * secure_delete (a destroyed version's wrapped bytes are overwritten in the
 * file, not left in a free page),
 * foreign keys on, a busy timeout so concurrent writers wait instead of
 * failing. The schema is versioned with PRAGMA user_version and migrated in
 * code at store_open.
 *
 * Threads: every function uses the calling thread's own connection, opened
 * on first use and kept until the thread exits or store_close; each
 * connection caches its prepared statements. A transaction (store_begin ..
 * store_commit) therefore belongs to the thread that began it. Writes are
 * serialised by SQLite (BEGIN IMMEDIATE); readers never block.
 *
 * All SQL uses bound parameters. Failures are one line naming the statement
 * and the key id or alias (never a policy or tag value), with SQLite's
 * reason; SQLITE_BUSY maps to KMS_UNAVAILABLE, everything else unexpected to
 * KMS_INTERNAL.
 *
 * The store checks shapes (a text fits its column) and relations (a
 * version's key exists); the keyring checks the rules (limits, states).
 *
 * Principals, access keys and grants (docs/authorization.md) are kept here
 * too (store_principals.c, store_grants.c). Their few rules that need one
 * transaction to hold (names never reused, at most two active access keys
 * per principal, a bounded number of live grants) are the store's; the
 * schema restates them with triggers.
 */
#ifndef KMS_STORE_H
#define KMS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/limits.h>
#include <kms/status.h>

#include "kms/format/authz_names.h"
#include "kms/format/keyid.h"

#define STORE_DB_FILE "kms.db"
#define STORE_LOCK_FILE "kms.lock"
#define STORE_SCHEMA_VERSION 10
#define STORE_REQUEST_REF_SIZE 65 /* 64 hex digits of SHA-256 and a NUL */
#define STORE_BUSY_TIMEOUT_MS 5000

/* Descriptions, tags and policies are bounded by <kms/limits.h>. */
#define KEY_REGION_MAX 32         /* bytes of [a-z0-9-] */
#define KEY_ALIASES_MAX 100       /* per key, so DescribeKey stays bounded */

/* Numbers are the wire values of proto/kms.proto's enums. */
typedef enum key_state {
	KEY_STATE_ENABLED = 1,
	KEY_STATE_DISABLED = 2,
	KEY_STATE_PENDING_DELETION = 3,
	KEY_STATE_DESTROYED = 4,
} key_state;

typedef enum key_spec {
	KEY_SPEC_AES_256 = 1,
	KEY_SPEC_HMAC_SHA256 = 2,
	KEY_SPEC_ED25519 = 3,
	KEY_SPEC_ECC_P256 = 4,
} key_spec;

typedef enum key_usage {
	KEY_USAGE_ENCRYPT_DECRYPT = 1,
	KEY_USAGE_GENERATE_VERIFY_MAC = 2,
	KEY_USAGE_SIGN_VERIFY = 3,
} key_usage;

/*
 * Where a key is in the crash-safe protocol (keyring.h). Only READY,
 * DESTROYING and DESTROYED keys exist for callers; CREATING rows are intents
 * that start-up reconciliation rolls back.
 */
typedef enum key_lifecycle {
	KEY_LIFECYCLE_CREATING = 1,   /* rows written, HSM object maybe not */
	KEY_LIFECYCLE_READY = 2,
	KEY_LIFECYCLE_DESTROYING = 3, /* HSM objects being destroyed */
	KEY_LIFECYCLE_DESTROYED = 4,  /* tombstone */
} key_lifecycle;

typedef enum version_state {
	VERSION_STATE_CREATING = 1, /* row written, HSM object maybe not */
	VERSION_STATE_ACTIVE = 2,
	VERSION_STATE_DESTROYED = 3,
} version_state;

/* Where a key's versions live, fixed at creation (docs/key-hierarchy.md). */
typedef enum key_protection {
	KEY_PROTECTION_HSM_RESIDENT = 1, /* each version a token object */
	KEY_PROTECTION_WRAPPED = 2,      /* each version wrapped under a KEK, here */
} key_protection;

/* Names for messages: "ENABLED", "creating", ... ; never NULL. */
const char *key_state_name(key_state state);
const char *key_lifecycle_name(key_lifecycle lifecycle);
const char *version_state_name(version_state state);
/* The wire names: "AES_256", "ECC_P256", "ENCRYPT_DECRYPT", ... ; never
 * NULL ("unknown" for a value outside the enum). */
const char *key_spec_name(key_spec spec);
const char *key_usage_name(key_usage usage);
/* "hsm-resident", "wrapped": also the text stored in keys.protection. */
const char *key_protection_name(key_protection protection);

/* A row of keys (without its policy, which can be 32 KiB). */
typedef struct store_key {
	char id[KMS_KEYID_TEXT_SIZE];
	char description[KMS_DESCRIPTION_MAX + 1];
	key_spec spec;
	key_usage usage;
	key_state state;
	key_lifecycle lifecycle;
	uint32_t primary_version;
	uint32_t rotation_period_days;  /* 0: no automatic rotation */
	int64_t created_at;             /* unix seconds */
	int64_t next_rotation_at;       /* 0: none */
	int64_t deletion_date;          /* 0: none */
	char region[KEY_REGION_MAX + 1];
	key_protection protection;      /* set by store_key_insert only */
	bool per_data_principal;        /* a sub-key per data principal; set by store_key_insert only */
	/* The CreateKey request that made it (keyring_create_args.request_ref):
	 * 64 lowercase hex digits or ""; set by store_key_insert only. */
	char request_ref[STORE_REQUEST_REF_SIZE];
} store_key;

typedef struct store_version {
	uint32_t version;
	int64_t created_at;
	version_state state;
	uint64_t encryptions_reserved;  /* only ever grows */
	uint32_t kek_id;                /* wrapped versions: the KEK; 0 otherwise (read only) */
} store_version;

/* A version with its key, for start-up reconciliation. */
typedef struct store_version_row {
	char key_id[KMS_KEYID_TEXT_SIZE];
	store_version v;
} store_version_row;

typedef struct store_alias {
	char name[KMS_ALIAS_TEXT_MAX + 1];
	char key_id[KMS_KEYID_TEXT_SIZE];
	int64_t created_at;
} store_alias;

typedef struct store_tag {
	char key[KMS_TAG_KEY_MAX + 1];
	char value[KMS_TAG_VALUE_MAX + 1];
} store_tag;

typedef struct store store;

/* ---- the database ---- */

/* Opens (creating if needed, mode 0600) data_dir/kms.db and migrates its
 * schema. data_dir must exist. Holds an exclusive flock on data_dir/kms.lock
 * until store_close: a second opener, in this process or another, gets
 * KMS_FAILED_PRECONDITION. *created is set to whether the database had no
 * schema before this call (a new or empty file). Blocks on disk. */
kms_status store_open(const char *data_dir, store **out, bool *created) KMS_MUST_USE;

/* Where the store is: SQLite in data_dir (pg_url NULL), or a PostgreSQL
 * database (docs/scale-out.md). data_dir is used either way: its lock file
 * keeps one kmsd per data directory. */
typedef struct store_options {
	const char *data_dir;
	const char *pg_url;      /* postgresql://USER@HOST:PORT/DATABASE; no password */
	const char *pg_password; /* [store] password_file's; copied into locked memory */
	/* PostgreSQL: hold a session advisory lock from open until
	 * store_exclusive_release (or close), so that no other store opened
	 * with it runs meanwhile: kmsd replicas hold it through their start-up
	 * reconciliation, so they start one at a time (docs/scale-out.md).
	 * A holder killed a moment ago is waited for (PG_LOCK_WAIT_MS). */
	bool pg_exclusive;
} store_options;

/* store_open on SQLite or PostgreSQL. On PostgreSQL the schema is
 * migrated in one SERIALIZABLE transaction (several kmsd starting at once
 * on an empty database: one makes it, the others find it), write
 * transactions run SERIALIZABLE and read ones REPEATABLE READ, and every
 * thread has its own connection; KMS_UNAVAILABLE when the server cannot be
 * reached. */
kms_status store_open_with(const store_options *o, store **out, bool *created) KMS_MUST_USE;

/* This replica's id (data_dir/replica-id) on PostgreSQL, "" on SQLite
 * (one kmsd: every intent is its own): the intent_owner of the intents
 * it writes, and its name in logs. */
const char *store_replica_id(const store *st);

/* Lets go of pg_exclusive's lock (its own connection closes). Nothing if
 * it is not held. Call from one thread, while no other opens. */
void store_exclusive_release(store *st);

/* Checks a [store] url before anything connects: it parses, holds no
 * password, and names this machine or asks for sslmode=verify-full.
 * KMS_INVALID_ARGUMENT saying which. */
kms_status store_pg_url_check(const char *url) KMS_MUST_USE;

/* Whether st is on PostgreSQL. */
bool store_is_pg(const store *st);

/* How many statements of this thread, in any store, met a serialization
 * failure or deadlock (SQLSTATE 40001, 40P01 on PostgreSQL; SQLite's busy
 * or locked) since it started. Compared around a request: when it moved,
 * the request failed on a conflict and may be run again whole (its failed
 * attempt undid what it had done, as any failure does). */
uint64_t store_thread_conflicts(void);

/* Closes every thread's connection. Callers must have stopped using st on
 * every thread. NULL is ignored. */
void store_close(store *st);

/* BEGIN IMMEDIATE on this thread's connection: takes the write lock now, so
 * a read-then-write transaction cannot deadlock; waits up to the busy
 * timeout. No nesting. */
kms_status store_begin(store *st) KMS_MUST_USE;
/* BEGIN (deferred): one consistent snapshot for several reads; end it with
 * store_commit or store_rollback. */
kms_status store_begin_read(store *st) KMS_MUST_USE;
/* COMMIT; on failure the transaction is rolled back. */
kms_status store_commit(store *st) KMS_MUST_USE;
/* ROLLBACK if this thread has a transaction open; otherwise nothing. */
void store_rollback(store *st);

/* Copies the WAL into kms.db and truncates it (SQLITE_CHECKPOINT_TRUNCATE),
 * so that bytes secure_delete overwrote leave kms.db-wal too; after a key
 * is destroyed. Outside a transaction. KMS_UNAVAILABLE when a reader kept
 * part of the WAL in use (the next checkpoint takes it). */
kms_status store_wal_checkpoint(store *st) KMS_MUST_USE;

/* ---- keys ---- */

/* Inserts a key row (any lifecycle) with its policy text ("" = default).
 * KMS_ALREADY_EXISTS if the id is taken. */
kms_status store_key_insert(store *st, const store_key *key, const char *policy) KMS_MUST_USE;

/* The key row with that id, in any lifecycle; KMS_NOT_FOUND if none. */
kms_status store_key_get(store *st, const char *key_id, store_key *out) KMS_MUST_USE;

/* Writes every mutable column of key (description, state, lifecycle,
 * primary_version, rotation_period_days, next_rotation_at, deletion_date)
 * to the row with key->id; KMS_NOT_FOUND if there is none. */
kms_status store_key_update(store *st, const store_key *key) KMS_MUST_USE;

/* Deletes a CREATING key row (rolling back an intent); its versions,
 * aliases and tags go with it (cascade). Keys that existed for callers
 * stay as tombstones: a row in any other lifecycle is left alone. KMS_OK
 * if there was no such row; *deleted (if not NULL) says whether one went.
 * With several replicas, this one statement is what decides between a
 * rollback and the creator's completion: whichever commits first wins,
 * and the other finds no creating row. */
kms_status store_key_delete(store *st, const char *key_id, bool *deleted) KMS_MUST_USE;

/* Up to cap visible keys (not CREATING) with id > after_id ("" or NULL: from
 * the start), ascending by id, into out[0..*n). Keyset paging on the primary
 * key: a page costs the same however deep into the keys it starts. */
kms_status store_key_list(store *st, const char *after_id, size_t cap,
                          store_key *out, size_t *n) KMS_MUST_USE;

typedef enum store_key_query {
	STORE_KEYS_CREATING,      /* lifecycle creating: created_at <= now, or this replica's */
	STORE_KEYS_CREATING_STALE, /* lifecycle creating, created_at <= now */
	STORE_KEYS_DESTROYING,    /* lifecycle destroying */
	STORE_KEYS_DELETION_DUE,  /* ready, pending deletion, deletion_date <= now */
	STORE_KEYS_ROTATION_DUE,  /* ready, enabled, period set, next_rotation_at <= now */
} store_key_query;

/* Up to cap ids of keys matching q into ids[0..*n): creating (made at or
 * before now, INT64_MAX for all, or by this replica) and
 * destroying ascending by id, deletion due by deletion date then id,
 * rotation due by next rotation date then id (the longest overdue first).
 * Each reads a partial index that holds exactly its candidates, in that
 * order: a page costs the same however many keys there are. */
kms_status store_key_ids(store *st, store_key_query q, int64_t now, size_t cap,
                         char (*ids)[KMS_KEYID_TEXT_SIZE], size_t *n) KMS_MUST_USE;

/* How many keys are hsm-resident and not destroyed (for
 * [keys] max_hsm_resident); counts a partial index, not the keys table. */
kms_status store_keys_resident_count(store *st, uint64_t *n) KMS_MUST_USE;

/* Inserts n keys, each with its version 1 and policy ("" = default;
 * policies NULL: all default), in one transaction of the caller's (between
 * store_begin and store_commit): what makes creating many keys cost one
 * fsync instead of one per key. On a failure, *failed is the index of the
 * key that failed and the caller rolls back; no key is half-inserted.
 * Codes as store_key_insert and store_version_insert. */
kms_status store_keys_insert_batch(store *st, const store_key *keys, const char *const *policies,
                                   const store_version *v1, size_t n,
                                   size_t *failed) KMS_MUST_USE;

/* The key made by the CreateKey request whose reference is ref (64 hex
 * digits): its id and lifecycle; KMS_NOT_FOUND if none. A unique index
 * holds the references. */
kms_status store_key_by_request(store *st, const char *ref, char id[KMS_KEYID_TEXT_SIZE],
                                key_lifecycle *lifecycle) KMS_MUST_USE;

/* The key's policy text ("" = the default policy), malloc'ed; free() it. */
kms_status store_policy_get(store *st, const char *key_id, char **out) KMS_MUST_USE;
kms_status store_policy_set(store *st, const char *key_id, const char *policy) KMS_MUST_USE;

/* ---- versions ---- */

/* KMS_ALREADY_EXISTS if the key has that version; KMS_NOT_FOUND if there is
 * no such key. */
kms_status store_version_insert(store *st, const char *key_id,
                                const store_version *v) KMS_MUST_USE;
kms_status store_version_get(store *st, const char *key_id, uint32_t version,
                             store_version *out) KMS_MUST_USE;
kms_status store_version_set_state(store *st, const char *key_id, uint32_t version,
                                   version_state state) KMS_MUST_USE;
/* Deletes one CREATING version row (rolling back an intent); a version in
 * any other state is left alone. KMS_OK if none; *deleted (if not NULL)
 * says whether one went. */
kms_status store_version_delete(store *st, const char *key_id, uint32_t version,
                                bool *deleted) KMS_MUST_USE;

/* Raises encryptions_reserved to reserved. A lower value than the stored one
 * is refused (a trigger enforces it too): KMS_INTERNAL. */
kms_status store_version_reserve(store *st, const char *key_id, uint32_t version,
                                 uint64_t reserved) KMS_MUST_USE;

/* The highest version number the key has in any state; 0 when none. */
kms_status store_version_max(store *st, const char *key_id, uint32_t *out) KMS_MUST_USE;

/* Every version of a key, ascending, malloc'ed (free()); *out is NULL when
 * there are none. */
kms_status store_versions_list(store *st, const char *key_id, store_version **out,
                               size_t *n) KMS_MUST_USE;


/* Up to cap versions in state CREATING (intents to roll back) made at or
 * before `before` (INT64_MAX: all) or, when own, by this replica
 * (store_replica_id: at start-up, its intents are a dead process's),
 * ascending by (key_id, version), into out[0..*n). An index holds only
 * those rows. */
kms_status store_versions_creating(store *st, int64_t before, bool own, size_t cap,
                                   store_version_row *out, size_t *n) KMS_MUST_USE;

/* Up to cap versions of hsm-resident keys that are not destroyed, with
 * (key_id, version) > (after_key_id, after_version) ("" and 0: from the
 * start), ascending, into out[0..*n): what the token should hold. Keyset
 * paging through the keys_hsm_resident index. */
kms_status store_versions_resident(store *st, const char *after_key_id, uint32_t after_version,
                                   size_t cap, store_version_row *out, size_t *n) KMS_MUST_USE;

/* ---- wrapped material (docs/key-hierarchy.md) ---- */

#define STORE_WRAPPED_MIN 16       /* bytes: RFC 5649 of the shortest secret */
#define STORE_WRAPPED_MAX 2048     /* bytes: a wrapped PKCS#8 private key fits */
#define STORE_KEK_HSM_ID_MAX 64    /* bytes of printable ASCII, no space */
#define STORE_PAGE_MAX 1000        /* rows per page of the re-wrap job */

typedef enum kek_state {
	KEK_STATE_CREATING = 1,  /* row written, HSM object maybe not */
	KEK_STATE_CURRENT = 2,   /* new versions are wrapped under it; at most one */
	KEK_STATE_DRAINING = 3,  /* unwraps only, while the re-wrap job moves its versions */
	KEK_STATE_RETIRED = 4,   /* wraps nothing; final; the row stays */
} kek_state;

/* "creating", "current", "draining", "retired"; never NULL. */
const char *kek_state_name(kek_state state);

typedef struct store_kek {
	uint32_t id;                               /* 1, 2, ... */
	char hsm_id[STORE_KEK_HSM_ID_MAX + 1];     /* its CKA_ID, "kms-kek-00000001" */
	kek_state state;
	int64_t created_at;
	int64_t retired_at;                        /* 0 unless retired */
} store_kek;

/* A version's wrapped material and the KEK it is wrapped under. */
typedef struct store_material {
	key_spec spec;                             /* its key's */
	uint32_t kek_id;
	char kek_hsm_id[STORE_KEK_HSM_ID_MAX + 1];
	kek_state kek_state;
	uint8_t wrapped[STORE_WRAPPED_MAX];
	size_t wrapped_len;
} store_material;

/* A version by name, for pages of the re-wrap job. */
typedef struct store_version_ref {
	char key_id[KMS_KEYID_TEXT_SIZE];
	uint32_t version;
} store_version_ref;

/* Inserts a version of a wrapped key with its material (kek_id, wrapped)
 * in the same row: the intent row of docs/key-hierarchy.md ("Generating a
 * version"), written once the HSM has wrapped the new secret, in state
 * CREATING (or ACTIVE: nothing of a wrapped version is left in the HSM by a
 * crash, so no intent is needed). KMS_FAILED_PRECONDITION if the key is not
 * wrapped or the KEK is not current or draining; otherwise as
 * store_version_insert. */
kms_status store_version_insert_wrapped(store *st, const char *key_id, const store_version *v,
                                        uint32_t kek_id, const uint8_t *wrapped,
                                        size_t wrapped_len) KMS_MUST_USE;

/* The cache-miss read: one version's material and its KEK, one lookup by
 * primary key. KMS_NOT_FOUND if there is no such version;
 * KMS_FAILED_PRECONDITION if it has no material (hsm-resident, or
 * destroyed). */
kms_status store_version_material_get(store *st, const char *key_id, uint32_t version,
                                      store_material *out) KMS_MUST_USE;

/* A signing key version's public key: an uncompressed P-256 point (65
 * bytes) or an Ed25519 key (32), written once in the version's creating transaction (the row must
 * exist and have none: KMS_FAILED_PRECONDITION otherwise), and read back
 * (KMS_NOT_FOUND when the version has none). */
#define STORE_PUBLIC_KEY_MIN 32
#define STORE_PUBLIC_KEY_MAX 65
kms_status store_version_public_key_set(store *st, const char *key_id, uint32_t version,
                                        const uint8_t *public_key, size_t len) KMS_MUST_USE;
kms_status store_version_public_key_get(store *st, const char *key_id, uint32_t version,
                                        uint8_t out[static STORE_PUBLIC_KEY_MAX],
                                        size_t *len) KMS_MUST_USE;

/* Re-wrap: replaces the version's material with wrapped under new_kek_id,
 * if and only if it is still wrapped under old_kek_id and new_kek_id is the
 * current KEK (a compare-and-set). KMS_FAILED_PRECONDITION, nothing
 * changed, when that no longer holds: a concurrent destroy or a second
 * re-wrap got there first, or the KEKs changed; the caller moves on. */
kms_status store_version_rewrap(store *st, const char *key_id, uint32_t version,
                                uint32_t old_kek_id, uint32_t new_kek_id, const uint8_t *wrapped,
                                size_t wrapped_len) KMS_MUST_USE;

/* Up to cap (at most STORE_PAGE_MAX) versions still wrapped under kek_id
 * with (key_id, version) > (after_key_id, after_version) ("" and 0: from the
 * start), ascending, into out[0..*n). Keyset paging on key_versions_by_kek:
 * each page costs the same. */
kms_status store_versions_under_kek(store *st, uint32_t kek_id, const char *after_key_id,
                                    uint32_t after_version, size_t cap, store_version_ref *out,
                                    size_t *n) KMS_MUST_USE;

/* How many versions are wrapped under kek_id (a covering-index count). */
kms_status store_versions_under_kek_count(store *st, uint32_t kek_id,
                                          uint64_t *n) KMS_MUST_USE;

/* Destroying a version (store_version_set_state to DESTROYED) sets its
 * material to NULL in the same statement, so the existing destroy
 * transaction deletes the wrapped bytes (docs/key-hierarchy.md,
 * "Destruction and crypto-shredding"). */

/* ---- per-data-principal sub-keys (docs/data-principals.md) ---- */

#define STORE_DP_MAX 55            /* a pseudonym's text, KMS_PSEUDONYM_TEXT_MAX */
#define STORE_PURPOSE_MAX 32       /* a purpose code: [A-Za-z0-9._-] */
#define STORE_LEGAL_TEXT_MAX 256   /* bytes of a basis or a hold's statute (UTF-8) */
#define STORE_RETENTION_DAYS_MAX 36500

typedef enum dp_key_state {
	DP_KEY_ACTIVE = 1,   /* has material */
	DP_KEY_ERASED = 2,   /* the tombstone: no material, never made again */
} dp_key_state;

/* A row of dp_keys: one data principal's sub-key under one version of one
 * key. A (key_id, dp)'s rows share purpose, created_at (its first use),
 * retention_ends_at, notice_at and hold, and are erased together. */
typedef struct store_dp_key {
	int64_t id;                                /* its name in the unwrapped-key cache */
	char key_id[KMS_KEYID_TEXT_SIZE];
	char dp[STORE_DP_MAX + 1];
	uint32_t version;                          /* the key version it serves; 0: a
	                                            * tombstone made before first use */
	dp_key_state state;
	char purpose[STORE_PURPOSE_MAX + 1];       /* of its first use; "" none */
	int64_t created_at;
	int64_t retention_ends_at;                 /* 0: no retention */
	int64_t notice_at;                         /* when pre_erasure was audited; 0 not yet */
	char hold[STORE_LEGAL_TEXT_MAX + 1];       /* "" no legal hold */
	int64_t erased_at;
	char basis[STORE_LEGAL_TEXT_MAX + 1];      /* the erasure's legal basis */
	uint32_t kek_id;                           /* active: its KEK */
} store_dp_key;

/* The sub-key of (key_id, dp, version), in any state; KMS_NOT_FOUND if
 * none. */
kms_status store_dp_key_get(store *st, const char *key_id, const char *dp, uint32_t version,
                            store_dp_key *out) KMS_MUST_USE;
/* The first row (lowest version) of (key_id, dp): its state, hold, purpose,
 * retention and notice are the principal's under that key. KMS_NOT_FOUND
 * if the principal has no row. */
kms_status store_dp_key_first(store *st, const char *key_id, const char *dp,
                              store_dp_key *out) KMS_MUST_USE;
/* Inserts row (key_id, dp, version, purpose, created_at,
 * retention_ends_at, notice_at, hold; state ACTIVE with wrapped under
 * kek_id, or ERASED with wrapped NULL, erased_at and basis: a tombstone
 * for a principal erased before first use). Its id into *id.
 * KMS_ALREADY_EXISTS if (key_id, dp, version) has a row. A principal with
 * an erased row gets no new one (a trigger refuses it). */
kms_status store_dp_key_insert(store *st, const store_dp_key *row, uint32_t kek_id,
                               const uint8_t *wrapped, size_t wrapped_len,
                               int64_t *id) KMS_MUST_USE;
/* The cache-miss read by id; KMS_NOT_FOUND if no row, KMS_FAILED_PRECONDITION
 * if erased. spec is AES_256. */
kms_status store_dp_key_material_get(store *st, int64_t id, store_material *out) KMS_MUST_USE;
/* Every ACTIVE, unheld row of (key_id, dp) -> ERASED: material deleted,
 * erased_at and basis set. KMS_NOT_FOUND if none was. */
kms_status store_dp_key_erase(store *st, const char *key_id, const char *dp, int64_t now,
                              const char *basis) KMS_MUST_USE;
/* The retention tick's erasure of seen's (key_id, dp): only while still
 * active, unheld, and with the notice_at and retention_ends_at seen.
 * *erased false when nothing changed. */
kms_status store_dp_key_erase_due(store *st, const store_dp_key *seen, int64_t now,
                                  const char *basis, bool *erased) KMS_MUST_USE;
/* Places (hold non-empty) or lifts ("") the legal hold of (key_id, dp)'s
 * ACTIVE rows; a change of hold also clears their notice (a new one is
 * due before any erasure). KMS_NOT_FOUND if none is active. */
kms_status store_dp_key_set_hold(store *st, const char *key_id, const char *dp,
                                 const char *hold) KMS_MUST_USE;
/* Records that the pre-erasure notice of (key_id, dp) was given at now:
 * only on active, unheld rows not noticed yet. *set false when nothing
 * changed. */
kms_status store_dp_key_notice_set(store *st, const char *key_id, const char *dp, int64_t now,
                                   bool *set) KMS_MUST_USE;
/* Clears notices dated after `after` (the clock was stepped back), so
 * they are given again; how many rows into *n. */
kms_status store_dp_keys_notice_future(store *st, int64_t after, size_t *n) KMS_MUST_USE;
/* Up to cap ids of key_id's sub-key rows (any state) with id > after_id,
 * ascending. */
kms_status store_dp_keys_of_key(store *st, const char *key_id, int64_t after_id, size_t cap,
                                int64_t *ids, size_t *n) KMS_MUST_USE;
/* Up to cap rows of (key_id, dp) with version > after_version, by
 * version: their ids into ids, their versions into versions. */
kms_status store_dp_keys_of_dp(store *st, const char *key_id, const char *dp,
                               uint32_t after_version, size_t cap, int64_t *ids,
                               uint32_t *versions, size_t *n) KMS_MUST_USE;
/* Erases every active sub-key of a key being destroyed (holds end with
 * the key), in the caller's transaction. */
kms_status store_dp_keys_destroy_for_key(store *st, const char *key_id,
                                         int64_t now) KMS_MUST_USE;

typedef enum store_dp_due {
	STORE_DP_NOTICE_DUE,   /* retention ends by `before`, no notice yet, not held */
	STORE_DP_ERASURE_DUE,  /* noticed by `noticed_by`, retention ends by `before`, not held */
} store_dp_due;
/* Up to cap principals' first rows matching q with (retention_ends_at,
 * id) > (after_end, after_id), ascending, into out[0..*n); a partial
 * index holds exactly the candidates of each. noticed_by is used by
 * STORE_DP_ERASURE_DUE only. */
kms_status store_dp_keys_due(store *st, store_dp_due q, int64_t before, int64_t noticed_by,
                             int64_t after_end, int64_t after_id, size_t cap, store_dp_key *out,
                             size_t *n) KMS_MUST_USE;

/* Re-wrap of a sub-key, a compare-and-set as store_version_rewrap. */
kms_status store_dp_key_rewrap(store *st, int64_t id, uint32_t old_kek_id, uint32_t new_kek_id,
                               const uint8_t *wrapped, size_t wrapped_len) KMS_MUST_USE;
/* Up to cap ids of sub-keys wrapped under kek_id with id > after_id. */
kms_status store_dp_keys_under_kek(store *st, uint32_t kek_id, int64_t after_id, size_t cap,
                                   int64_t *ids, size_t *n) KMS_MUST_USE;
kms_status store_dp_keys_under_kek_count(store *st, uint32_t kek_id, uint64_t *n) KMS_MUST_USE;

/* A key's retention for a purpose: days 1..STORE_RETENTION_DAYS_MAX, or 0
 * to remove it. Also moves the end of that key's active sub-keys of that
 * purpose to created_at + days * seconds_per_day (0: none) and clears
 * their notice (a new one is due 48 h before the new end). */
kms_status store_retention_set(store *st, const char *key_id, const char *purpose, uint32_t days,
                               uint32_t seconds_per_day) KMS_MUST_USE;
/* *days 0 when the key has none for the purpose. */
kms_status store_retention_get(store *st, const char *key_id, const char *purpose,
                               uint32_t *days) KMS_MUST_USE;

/* ---- the cache generation (docs/scale-out.md, "Cache coherence") ---- */

/* The one row of cache_generation: raised by triggers at every committed
 * change that a keyring cache could hold (a visible key's row, an active
 * version's state, an alias's target or removal). A replica whose caches
 * were filled at another value drops them before it serves. */
kms_status store_generation_get(store *st, uint64_t *out) KMS_MUST_USE;

/* PostgreSQL: generation is the value this thread just read at its
 * request's start (store_generation_get): until this thread's connection
 * writes, or follows another value, its read cache (store_cache.h) may
 * answer, its entries tagged with it. A thread that never calls this has
 * no read cache on PostgreSQL. Nothing on SQLite. */
void store_cache_follow(store *st, uint64_t generation);

/* ---- the fleet's audit log (store_audit.c; docs/scale-out.md, "One audit
 * log for the fleet") ---- */

/* ---- request records (store_requests.c) ---- */

/* How long a record is kept: past any client's resend (a call's timeout)
 * and past the 300 s a signed request's timestamp is accepted for. */
#define STORE_REQUEST_KEEP_MS (15 * 60 * 1000)
#define STORE_REQUEST_DIGEST_LEN 32
#define STORE_REQUEST_RESULT_MAX 8192

/* What one answered request leaves (docs/scale-out.md, "Request
 * records"): who sent it under which id, the operation (its field number
 * in kms.Request), the SHA-256 of its fields and the ciphertext blob it
 * made (NULL for none). No secret: Encrypt's plaintext is not hashed. */
typedef struct store_request_record {
	char principal[64];
	char request_id[KMS_REQUEST_ID_MAX + 1];
	int op;
	uint8_t digest[STORE_REQUEST_DIGEST_LEN];
	uint8_t *result; /* malloc'ed; store_request_record_free */
	size_t result_len;
	int64_t created_ms;
} store_request_record;

/* The record of (principal, request_id); KMS_NOT_FOUND if none, with
 * *busy when another transaction is writing it now (PostgreSQL: it holds
 * the record's advisory lock): look again once it ended. */
kms_status store_request_get(store *st, const char *principal, const char *request_id,
                             store_request_record *out, bool *busy) KMS_MUST_USE;

/* Frees r->result (r itself is the caller's). */
void store_request_record_free(store_request_record *r);

/* Frees a malloc'ed record and its result; NULL is ignored. */
void store_request_record_drop(store_request_record *r);

/* Removes the records made before before_ms; *removed how many. */
kms_status store_request_expire(store *st, int64_t before_ms, uint64_t *removed) KMS_MUST_USE;

/* Adds n entries (each 1..65535 bytes) to audit_pending in one
 * transaction: durable in the database once this returns KMS_OK. With
 * records (NULL: none), records[i] (NULL: none) is the request record of
 * entry i, added in the same transaction; dup[i] is set when a record of
 * the same principal and request id was there already (the request was
 * sent again and ran on two replicas at once): that record is kept, and
 * entry i is added all the same. ids (NULL: not wanted) gets each entry's
 * id in audit_pending, which orders the numbering. */
kms_status store_audit_submit(store *st, const char *const *entries, const size_t *lens,
                              const store_request_record *const *records, bool *dup,
                              int64_t *ids, size_t n) KMS_MUST_USE;

/*
 * An audit entry committed with the change it records (PostgreSQL;
 * docs/scale-out.md, "A change and its entry commit together"). A worker
 * making a control-plane change arms a companion on its thread; the first
 * transaction of that thread that writes rows and is not an intent
 * (store_tx_intent) then adds the entry `build` makes to audit_pending just
 * before its COMMIT, and a single write statement outside a transaction
 * runs in a transaction of its own for it. So the change is in the
 * database exactly when its entry is. Writes after that one carry no entry
 * (kmsd's log says so: a change is meant to commit once).
 */
typedef struct store_companion {
	/* The entry, malloc'ed, made when its transaction is about to commit;
	 * key_id (NULL: none noted) and key_version: what the keyring noted
	 * for this transaction (store_companion_key). */
	kms_status (*build)(void *arg, const char *key_id, uint32_t key_version, char **entry,
	                    size_t *len);
	/* Its transaction's COMMIT returned: committed (then id is its id in
	 * audit_pending) or not (nothing of it is in the database). */
	void (*settled)(void *arg, bool committed, int64_t id);
	void *arg;
	bool added; /* set by the store: the entry committed */
	const char *request_id; /* for kmsd's log */
} store_companion;

/* Arms c on this thread (c NULL: disarms). Nothing on SQLite. */
void store_companion_arm(store *st, store_companion *c);

/* The key (and version) the transaction under way creates or changes, for
 * the companion's entry: a key's id is made inside the keyring. */
void store_companion_key(store *st, const char *key_id, uint32_t key_version);

/* The transaction under way is an intent (a row an HSM step completes
 * later): it carries no companion. */
void store_tx_intent(store *st);

/* Adds one entry to audit_pending inside the caller's transaction; *id its
 * id. */
kms_status store_audit_add(store *st, const char *entry, size_t len,
                           int64_t *id) KMS_MUST_USE;

/* In one snapshot: the lowest id waiting in audit_pending (0: none) and how
 * many entries are numbered. */
kms_status store_audit_watch(store *st, int64_t *min_pending,
                             uint64_t *numbered) KMS_MUST_USE;

/* Takes the sequencer's lease for this replica, or renews it, until
 * now_ms + ttl_ms (this replica's clock): *held when it was free, expired
 * (expires_ms < now_ms) or this replica's already. *epoch is raised each
 * time the holder changes. */
kms_status store_audit_lease(store *st, int64_t now_ms, int64_t ttl_ms, bool *held,
                             uint64_t *epoch) KMS_MUST_USE;

#define STORE_AUDIT_HOLDER_SIZE 33 /* a replica id and a NUL; "" when free */

/* Who holds the lease ("" nobody), its epoch and expiry. */
kms_status store_audit_lease_holder(store *st, char holder[STORE_AUDIT_HOLDER_SIZE],
                                    uint64_t *epoch, int64_t *expires_ms) KMS_MUST_USE;

/* Frees the lease if this replica holds it (a clean stop: another takes
 * it at once instead of when it expires). */
kms_status store_audit_lease_release(store *st) KMS_MUST_USE;

/* The lease holder at epoch: moves at most cap pending entries, in id
 * order, to audit_entries, numbered from the next sequence number on, in
 * one transaction that first checks the lease is still this replica's at
 * that epoch (KMS_FAILED_PRECONDITION when it was taken over). *moved is
 * how many (0: none were pending). */
kms_status store_audit_sequence(store *st, uint64_t epoch, size_t cap,
                                size_t *moved) KMS_MUST_USE;

/* The lease holder at epoch, on a fleet whose log is empty or holds a
 * prefix of this replica's own: adds its entries first .. first + n - 1
 * to audit_entries as they are (an upgrade from one kmsd's log), in one
 * transaction that checks the lease. */
kms_status store_audit_seed(store *st, uint64_t epoch, uint64_t first, const char *const *entries,
                            const size_t *lens, size_t n) KMS_MUST_USE;

/* Called for each entry store_audit_entries reads, in order. */
typedef kms_status (*store_audit_visit)(void *ctx, uint64_t seq, const uint8_t *entry,
                                        size_t len);

/* The entries numbered from `from` on, at most cap, in order, each passed
 * to visit; *n how many. KMS_FAILED_PRECONDITION if they are not
 * consecutive (the triggers forbid it: the database lost or changed
 * entries). */
kms_status store_audit_entries(store *st, uint64_t from, size_t cap, store_audit_visit visit,
                               void *ctx, size_t *n) KMS_MUST_USE;

/* The latest checkpoint the lease holder published (*note malloc'ed,
 * NUL-terminated); KMS_NOT_FOUND before the first. */
kms_status store_audit_checkpoint_get(store *st, uint64_t *size, char **note) KMS_MUST_USE;

/* The lease holder at epoch publishes a checkpoint of size entries: it
 * replaces the one there only when larger (KMS_OK either way);
 * KMS_FAILED_PRECONDITION when the lease was taken over. */
kms_status store_audit_checkpoint_put(store *st, uint64_t epoch, uint64_t size,
                                      const char *note) KMS_MUST_USE;

/* How many entries are numbered, and how many wait for the sequencer. */
kms_status store_audit_counts(store *st, uint64_t *entries, uint64_t *pending) KMS_MUST_USE;

/* ---- KEKs ---- */

/* Inserts the next KEK row, CREATING, with id one more than the highest
 * ever (1 for the first) and hsm_id "kms-kek-" and the id in 8 decimal
 * digits, created at now; the row into *out. The HSM object comes next,
 * then store_kek_make_current. */
kms_status store_kek_create(store *st, int64_t now, store_kek *out) KMS_MUST_USE;

/* The KEK with that id; KMS_NOT_FOUND if none. */
kms_status store_kek_get(store *st, uint32_t id, store_kek *out) KMS_MUST_USE;

/* In a transaction: holds KEK id's row until it ends, so that no material
 * is wrapped under that KEK meanwhile (an insert waits, then sees the
 * KEK's new state). KMS_NOT_FOUND if there is no such KEK. */
kms_status store_kek_lock(store *st, uint32_t id) KMS_MUST_USE;

/* The current KEK; KMS_NOT_FOUND if there is none yet. */
kms_status store_kek_get_current(store *st, store_kek *out) KMS_MUST_USE;

/* Up to cap KEKs with id > after_id, ascending by id, into out[0..*n). */
kms_status store_kek_list(store *st, uint32_t after_id, size_t cap, store_kek *out,
                          size_t *n) KMS_MUST_USE;

/* Makes the CREATING KEK id current, and the previous current one (if any)
 * draining, in one transaction (not inside a caller's). KMS_NOT_FOUND if
 * there is no such KEK; KMS_FAILED_PRECONDITION if it is not CREATING. */
kms_status store_kek_make_current(store *st, uint32_t id) KMS_MUST_USE;

/* Sets a KEK DRAINING or RETIRED (retired_at = now), or RETIRED a CREATING
 * one that was abandoned. KMS_FAILED_PRECONDITION for a move the schema
 * refuses (a retired KEK stays retired; a KEK that still wraps versions
 * cannot retire); KMS_NOT_FOUND if there is no such KEK. */
kms_status store_kek_set_state(store *st, uint32_t id, kek_state state,
                               int64_t now) KMS_MUST_USE;

/* ---- aliases ---- */

/* KMS_ALREADY_EXISTS if the name is taken; KMS_NOT_FOUND if the key is not. */
kms_status store_alias_insert(store *st, const store_alias *alias) KMS_MUST_USE;
kms_status store_alias_get(store *st, const char *name, store_alias *out) KMS_MUST_USE;
/* Points an existing alias at key_id; KMS_NOT_FOUND if no such alias. */
kms_status store_alias_retarget(store *st, const char *name, const char *key_id) KMS_MUST_USE;
/* KMS_NOT_FOUND if no such alias. */
kms_status store_alias_delete(store *st, const char *name) KMS_MUST_USE;
kms_status store_aliases_delete_for_key(store *st, const char *key_id) KMS_MUST_USE;
kms_status store_alias_count(store *st, const char *key_id, size_t *n) KMS_MUST_USE;

/* Up to cap aliases with name > after ("" or NULL: from the start), only
 * those of key_id unless it is NULL, ascending by name, malloc'ed (free()). */
kms_status store_alias_list(store *st, const char *key_id, const char *after, size_t cap,
                            store_alias **out, size_t *n) KMS_MUST_USE;

/* ---- tags ---- */

/* Adds or replaces one tag. */
kms_status store_tag_put(store *st, const char *key_id, const char *tag_key,
                         const char *tag_value) KMS_MUST_USE;
/* Removes one tag; KMS_OK if it was not there. */
kms_status store_tag_delete(store *st, const char *key_id, const char *tag_key) KMS_MUST_USE;
kms_status store_tag_count(store *st, const char *key_id, size_t *n) KMS_MUST_USE;
/* Every tag of a key, ascending by tag key, malloc'ed (free()). */
kms_status store_tags_list(store *st, const char *key_id, store_tag **out,
                           size_t *n) KMS_MUST_USE;

/* ---- principals, access keys, grants (docs/authorization.md) ---- */

/* Roles, a bit set; a principal holds at least one. */
#define PRINCIPAL_ROLE_ADMIN 1u
#define PRINCIPAL_ROLE_APP 2u
#define PRINCIPAL_ROLE_AUDITOR 4u
#define PRINCIPAL_ROLES_ALL 7u

#define STORE_ACCESS_KEYS_ACTIVE_MAX 2  /* per principal: rotation without downtime */
#define STORE_WRAPPED_SECRET_MAX 128    /* bytes of a wrapped secret (authz_secrets.h) */
#define STORE_GRANTS_LIVE_MAX 50        /* live grants per (grantee, key) */
#define STORE_GRANT_OPS_MAX 16          /* operations in one grant */
#define STORE_GRANT_OP_NAME_MAX 48      /* bytes of [a-z0-9_] per operation name */
#define STORE_GRANT_OPS_TEXT_MAX (STORE_GRANT_OPS_MAX * (STORE_GRANT_OP_NAME_MAX + 1))
#define STORE_GRANT_CONTEXT_MAX 4096    /* bytes of a grant's canonical context */

typedef enum principal_state {
	PRINCIPAL_STATE_ENABLED = 1,
	PRINCIPAL_STATE_DISABLED = 2,
	PRINCIPAL_STATE_DELETED = 3,  /* tombstone: the name is never reused */
} principal_state;

typedef enum access_key_state {
	ACCESS_KEY_STATE_ACTIVE = 1,
	ACCESS_KEY_STATE_REVOKED = 2, /* final; kept for the audit trail */
} access_key_state;

typedef enum grant_state {
	GRANT_STATE_LIVE = 1,
	GRANT_STATE_RETIRED = 2,      /* by its grantee; final */
	GRANT_STATE_REVOKED = 3,      /* by an admin; final */
} grant_state;

/* "ENABLED", "ACTIVE", "LIVE", ... ; never NULL. */
const char *principal_state_name(principal_state state);
const char *access_key_state_name(access_key_state state);
const char *grant_state_name(grant_state state);

typedef struct store_principal {
	char name[AUTHZ_PRINCIPAL_NAME_SIZE];
	uint32_t roles;                          /* PRINCIPAL_ROLE_* bits */
	char cert_name[AUTHZ_CERT_NAME_SIZE];    /* "" when none */
	principal_state state;
	int64_t created_at;                      /* unix seconds */
	int64_t updated_at;                      /* last change; the deletion for a tombstone */
} store_principal;

/* An access key's row. The secret is only ever here wrapped
 * (kms/authz/authz_secrets.h); the store never sees it in the clear. */
typedef struct store_access_key {
	char id[AUTHZ_ID_SIZE];
	char principal[AUTHZ_PRINCIPAL_NAME_SIZE];
	uint8_t wrapped[STORE_WRAPPED_SECRET_MAX];
	size_t wrapped_len;
	access_key_state state;
	int64_t created_at;
	int64_t revoked_at;                      /* 0 while active */
} store_access_key;

typedef struct store_grant {
	char id[AUTHZ_ID_SIZE];
	char key_id[KMS_KEYID_TEXT_SIZE];
	char grantee[AUTHZ_PRINCIPAL_NAME_SIZE];
	/* Canonical: operation names ascending, unique, joined by ','. */
	char operations[STORE_GRANT_OPS_TEXT_MAX + 1];
	/* The required context pairs, canonically encoded (common/context.h);
	 * the empty context (00 00) requires nothing. */
	uint8_t context[STORE_GRANT_CONTEXT_MAX];
	size_t context_len;
	char creator[AUTHZ_PRINCIPAL_NAME_SIZE];
	grant_state state;
	int64_t created_at;
	int64_t ended_at;                        /* when retired or revoked; 0 while live */
} store_grant;

/* Inserts an ENABLED or DISABLED principal (roles within PRINCIPAL_ROLES_ALL
 * and not empty). KMS_ALREADY_EXISTS if the name is in use or was ever
 * used (names of deleted principals are never reused). */
kms_status store_principal_create(store *st, const store_principal *p) KMS_MUST_USE;

/* The principal with that name; KMS_NOT_FOUND if there is none or it was
 * deleted (the tombstone is not returned). */
kms_status store_principal_get(store *st, const char *name, store_principal *out) KMS_MUST_USE;

/* Whether the store holds any principal at all, deleted ones included
 * (kmsd --bootstrap-admin works only on a store with none). */
kms_status store_principals_any(store *st, bool *any) KMS_MUST_USE;

/* Up to cap principals (deleted ones not included) with name > after
 * ("" or NULL: from the start), ascending by name, malloc'ed (free()). */
kms_status store_principal_list(store *st, const char *after, size_t cap,
                                store_principal **out, size_t *n) KMS_MUST_USE;

/* Sets an existing principal ENABLED or DISABLED and its updated_at.
 * KMS_NOT_FOUND if there is none or it was deleted. */
kms_status store_principal_set_state(store *st, const char *name, principal_state state,
                                     int64_t now) KMS_MUST_USE;

/* Deletes a principal in one transaction: the row stays as a tombstone
 * (DELETED) so its name is never reused, its active access keys are revoked
 * and its live grants revoked, all at now. KMS_NOT_FOUND if there is none or
 * it was already deleted. Not inside a caller's transaction. */
kms_status store_principal_delete(store *st, const char *name, int64_t now) KMS_MUST_USE;

/* Inserts an ACTIVE access key for an existing, not deleted principal, in
 * one transaction that also counts the principal's active keys: a third is
 * KMS_FAILED_PRECONDITION. KMS_NOT_FOUND for an unknown or deleted principal;
 * KMS_ALREADY_EXISTS if the id is taken. Not inside a caller's transaction. */
kms_status store_access_key_create(store *st, const store_access_key *key) KMS_MUST_USE;

/* Inserts principal p (as store_principal_create) and its first access key
 * (as store_access_key_create; key->principal is p->name) in one
 * transaction: both or neither. Not inside a caller's transaction. */
kms_status store_principal_create_with_key(store *st, const store_principal *p,
                                           const store_access_key *key) KMS_MUST_USE;

/* The access key with that id in any state; KMS_NOT_FOUND if none. */
kms_status store_access_key_get(store *st, const char *id, store_access_key *out) KMS_MUST_USE;

/* Every access key of a principal (active and revoked), ascending by
 * creation then id, malloc'ed (free()); at most cap. */
kms_status store_access_key_list(store *st, const char *principal, size_t cap,
                                 store_access_key **out, size_t *n) KMS_MUST_USE;

/* Revokes an ACTIVE access key at now. KMS_NOT_FOUND if there is no such
 * key; KMS_FAILED_PRECONDITION if it is already revoked. */
kms_status store_access_key_revoke(store *st, const char *id, int64_t now) KMS_MUST_USE;

/* Joins operation names into the canonical form of store_grant.operations
 * (sorted, ','-separated). KMS_INVALID_ARGUMENT for none, more than
 * STORE_GRANT_OPS_MAX, a duplicate, or a name that is not 1..48 bytes of
 * [a-z0-9_]. Which operations may be granted is the caller's rule. */
kms_status store_grant_ops_join(const char *const *ops, size_t n,
                                char out[static STORE_GRANT_OPS_TEXT_MAX + 1]) KMS_MUST_USE;

/* Whether a grant's canonical operation list names op. */
bool store_grant_has_op(const store_grant *grant, const char *op);

/* Inserts a LIVE grant for an existing visible key and an existing, not
 * deleted grantee, in one transaction that counts the live grants of the
 * same (grantee, key): past STORE_GRANTS_LIVE_MAX is KMS_FAILED_PRECONDITION.
 * operations must be canonical (store_grant_ops_join) and context a
 * canonical encoding of at most STORE_GRANT_CONTEXT_MAX bytes:
 * KMS_INVALID_ARGUMENT otherwise. KMS_ALREADY_EXISTS if the id is taken. Not
 * inside a caller's transaction. */
kms_status store_grant_create(store *st, const store_grant *grant) KMS_MUST_USE;

/* The grant with that id in any state; KMS_NOT_FOUND if none. */
kms_status store_grant_get(store *st, const char *id, store_grant *out) KMS_MUST_USE;

typedef enum store_grant_by {
	STORE_GRANTS_BY_KEY,      /* every grant on a key id */
	STORE_GRANTS_BY_GRANTEE,  /* every grant to a principal */
} store_grant_by;

/* Up to cap grants (every state) on a key or to a grantee, with id > after
 * ("" or NULL: from the start), ascending by id, malloc'ed (free()). */
kms_status store_grant_list(store *st, store_grant_by by, const char *name, const char *after,
                            size_t cap, store_grant **out, size_t *n) KMS_MUST_USE;

/* Ends a LIVE grant: RETIRED or REVOKED, at now. KMS_NOT_FOUND if there is
 * no such grant; KMS_FAILED_PRECONDITION if it already ended. */
kms_status store_grant_end(store *st, const char *id, grant_state how,
                           int64_t now) KMS_MUST_USE;

/* For the decision: every LIVE grant to principal on key_id (at most
 * STORE_GRANTS_LIVE_MAX), ascending by id, malloc'ed (free()); *out is NULL
 * when there are none. Retired and revoked grants are never returned. */
kms_status store_grants_live(store *st, const char *principal, const char *key_id,
                             store_grant **out, size_t *n) KMS_MUST_USE;

#endif
