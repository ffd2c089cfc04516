/*
 * store.h: the key metadata store, one SQLite database (kms.db) in the data
 * directory.
 *
 * What it keeps: keys, their versions (with the count of GCM encryptions
 * reserved per version), aliases and tags. What it never keeps: key
 * material; that is in the HSM, named by key id and version.
 *
 * Durability: WAL, synchronous=FULL (metadata is low volume, and a lost
 * reservation of GCM uses would let a version be used past its bound),
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
 */
#ifndef KMS_STORE_H
#define KMS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/limits.h>
#include <kms/status.h>

#include "kms/format/keyid.h"

#define STORE_DB_FILE "kms.db"
#define STORE_LOCK_FILE "kms.lock"
#define STORE_SCHEMA_VERSION 1
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

/* Names for messages: "ENABLED", "creating", ... ; never NULL. */
const char *key_state_name(key_state state);
const char *key_lifecycle_name(key_lifecycle lifecycle);
const char *version_state_name(version_state state);

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
} store_key;

typedef struct store_version {
	uint32_t version;
	int64_t created_at;
	version_state state;
	uint64_t encryptions_reserved;  /* only ever grows */
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

/* Deletes a key row; its versions, aliases and tags go with it (cascade).
 * Only for rolling back CREATING intents: keys that existed for callers stay
 * as tombstones. KMS_OK if there was no such row. */
kms_status store_key_delete(store *st, const char *key_id) KMS_MUST_USE;

/* Up to cap visible keys (not CREATING) with id > after_id ("" or NULL: from
 * the start), ascending by id, into out[0..*n). */
kms_status store_key_list(store *st, const char *after_id, size_t cap,
                          store_key *out, size_t *n) KMS_MUST_USE;

typedef enum store_key_query {
	STORE_KEYS_CREATING,      /* lifecycle creating */
	STORE_KEYS_DESTROYING,    /* lifecycle destroying */
	STORE_KEYS_DELETION_DUE,  /* ready, pending deletion, deletion_date <= now */
	STORE_KEYS_ROTATION_DUE,  /* ready, enabled, period set, next_rotation_at <= now */
} store_key_query;

/* Up to cap ids of keys matching q, ascending, into ids[0..*n). */
kms_status store_key_ids(store *st, store_key_query q, int64_t now, size_t cap,
                         char (*ids)[KMS_KEYID_TEXT_SIZE], size_t *n) KMS_MUST_USE;

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
/* Deletes one version row (rolling back a CREATING intent). KMS_OK if none. */
kms_status store_version_delete(store *st, const char *key_id, uint32_t version) KMS_MUST_USE;

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

/* Every version of every key, malloc'ed (free()), for reconciliation. */
kms_status store_versions_all(store *st, store_version_row **out, size_t *n) KMS_MUST_USE;

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

#endif
