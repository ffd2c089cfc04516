/*
 * store_internal.h: what store.c (connections, schema, transactions,
 * statement helpers) shares with store_keys.c, store_material.c,
 * store_keks.c, store_aliases.c, store_principals.c, store_grants.c,
 * store_consents.c and store_dp.c (the statements, which run through the
 * driver interface db.h only). Not for use outside the store.
 */
#ifndef KMS_STORE_INTERNAL_H
#define KMS_STORE_INTERNAL_H

#include "kms/store/db.h"
#include "kms/store/store.h"

/* One slot per statement in each connection's cache. Each id is used with
 * exactly one SQL text, at one call site. */
typedef enum store_stmt_id {
	S_BEGIN,
	S_BEGIN_READ,
	S_BEGIN_PG,
	S_BEGIN_READ_PG,
	S_PG_VERSION_TABLE,
	S_PG_VERSION,
	S_COMMIT,
	S_KEY_INSERT,
	S_KEY_GET,
	S_KEY_UPDATE,
	S_KEY_DELETE,
	S_KEY_LIST,
	S_KEY_IDS_CREATING,
	S_KEY_IDS_DESTROYING,
	S_KEY_IDS_DELETION_DUE,
	S_KEY_IDS_ROTATION_DUE,
	S_POLICY_GET,
	S_POLICY_SET,
	S_VERSION_INSERT,
	S_VERSION_GET,
	S_VERSION_SET_STATE,
	S_VERSION_DELETE,
	S_VERSION_RESERVE,
	S_VERSION_MAX,
	S_VERSIONS_LIST,
	S_ALIAS_INSERT,
	S_ALIAS_GET,
	S_ALIAS_RETARGET,
	S_ALIAS_DELETE,
	S_ALIASES_DELETE_FOR_KEY,
	S_ALIAS_COUNT,
	S_ALIAS_LIST_ALL,
	S_ALIAS_LIST_KEY,
	S_TAG_PUT,
	S_TAG_DELETE,
	S_TAG_COUNT,
	S_TAGS_LIST,
	S_PRINCIPAL_INSERT,
	S_PRINCIPAL_GET,
	S_PRINCIPAL_LIST,
	S_PRINCIPAL_ANY,
	S_PRINCIPAL_SET_STATE,
	S_PRINCIPAL_TOMBSTONE,
	S_PRINCIPAL_KEYS_REVOKE,
	S_PRINCIPAL_GRANTS_REVOKE,
	S_ACCESS_KEY_COUNT_ACTIVE,
	S_ACCESS_KEY_INSERT,
	S_ACCESS_KEY_GET,
	S_ACCESS_KEY_LIST,
	S_ACCESS_KEY_REVOKE,
	S_GRANT_KEY_VISIBLE,
	S_GRANT_COUNT_LIVE,
	S_GRANT_INSERT,
	S_GRANT_GET,
	S_GRANT_LIST_KEY,
	S_GRANT_LIST_GRANTEE,
	S_GRANT_END,
	S_GRANTS_LIVE,
	S_KEYS_RESIDENT_COUNT,
	S_VERSIONS_CREATING,
	S_VERSIONS_RESIDENT,
	S_VERSION_MATERIAL_GET,
	S_VERSION_PUBLIC_KEY_SET,
	S_VERSION_PUBLIC_KEY_GET,
	S_VERSION_REWRAP,
	S_VERSIONS_UNDER_KEK,
	S_VERSIONS_UNDER_KEK_COUNT,
	S_KEK_INSERT,
	S_KEK_GET,
	S_KEK_GET_CURRENT,
	S_KEK_LIST,
	S_KEK_SET_STATE,
	S_KEK_LOCK,
	S_CM_INSERT,
	S_CM_GET,
	S_CM_BY_KID,
	S_CM_LIST,
	S_CM_REMOVE,
	S_CONSENT_INSERT,
	S_CONSENT_GET,
	S_CONSENT_ARTEFACT,
	S_CONSENT_SET_STATUS,
	S_CONSENT_TAKE_USE,
	S_CONSENT_LIST,
	S_DP_KEY_GET,
	S_DP_KEY_FIRST,
	S_DP_KEY_ERASE_DUE,
	S_DP_KEYS_NOTICE_FUTURE,
	S_DP_KEYS_OF_KEY,
	S_DP_KEYS_OF_DP,
	S_DP_KEY_INSERT,
	S_DP_KEY_MATERIAL_GET,
	S_DP_KEY_ERASE,
	S_DP_KEY_SET_HOLD,
	S_DP_KEY_NOTICE_SET,
	S_DP_KEYS_DESTROY_FOR_KEY,
	S_DP_KEYS_NOTICE_DUE,
	S_DP_KEYS_ERASURE_DUE,
	S_DP_KEY_REWRAP,
	S_DP_KEYS_UNDER_KEK,
	S_DP_KEYS_UNDER_KEK_COUNT,
	S_RETENTION_PUT,
	S_RETENTION_DELETE,
	S_RETENTION_APPLY,
	S_RETENTION_GET,
	S_GENERATION_GET,
	S_KEY_BY_REQUEST,
	S_AUDIT_SUBMIT,
	S_AUDIT_LEASE,
	S_AUDIT_LEASE_GET,
	S_AUDIT_LEASE_RELEASE,
	S_AUDIT_LEASE_CHECK,
	S_AUDIT_NEXT_SEQ,
	S_AUDIT_PENDING_TAKE,
	S_AUDIT_SEQUENCE,
	S_AUDIT_PENDING_DROP,
	S_AUDIT_ENTRIES,
	S_AUDIT_CHECKPOINT_GET,
	S_AUDIT_CHECKPOINT_PUT,
	S_AUDIT_COUNT_ENTRIES,
	S_AUDIT_COUNT_PENDING,
	S_AUDIT_PENDING_ANY,
	S_AUDIT_SEED,
	S_AUDIT_WATCH,
	S_REQUEST_GET,
	S_REQUEST_PUT,
	S_REQUEST_EXPIRE,
	S_COUNT
} store_stmt_id;

/* This thread's statement for id (prepared from sql on first use), reset
 * and with its bindings cleared. Finish with store_stmt_done. */
kms_status store_stmt(store *st, store_stmt_id id, const char *sql,
                      db_stmt **out) KMS_MUST_USE;

/* The SQL text statement id was prepared with in this process, or NULL if
 * it has not been prepared yet (for the query-plan test). */
const char *store_stmt_sql(store_stmt_id id);

/* The SQL that takes the schema from version from to from + 1, or NULL
 * (for tests that make a database of an older version, as it was). */
const char *store_migration_sql(int from);

/* Resets s and clears its bindings, so it holds no read snapshot. NULL is
 * ignored. */
void store_stmt_done(db_stmt *s);

/* Binds parameters 1.. from a type string: 't' a const char * (text),
 * 'i' an int64_t, 'b' a const void * and a size_t (a blob), 'n' NULL (no
 * argument). Returns DB_OK or the first failure. */
db_rc store_bind(db_stmt *s, const char *types, ...);

/* Records a failure rc of what (a statement name) on the row named by id
 * (NULL if none): DB_CONFLICT (busy, locked), DB_IOERR (the disk failed;
 * nothing was changed) and DB_IN_DOUBT (the disk failed to sync; the
 * change may be applied after a restart) are KMS_UNAVAILABLE, the rest
 * KMS_INTERNAL. Returns the status. */
kms_status store_fail_at(db_stmt *s, db_rc rc, const char *what, const char *id,
                         const char *file, int line);
#define store_fail(s, rc, what, id) store_fail_at((s), (rc), (what), (id), __FILE__, __LINE__)

/* Copies text column col of the current row into out[cap]; false when it is
 * NULL-free text that does not fit (a corrupt or foreign row). */
bool store_column_text(db_stmt *s, int col, char *out, size_t cap);

/* In an open transaction: adds r unless (principal, request_id) has a
 * record already (*added false then). */
kms_status store_request_put(store *st, const store_request_record *r,
                             bool *added) KMS_MUST_USE;

/* Makes room for one more element in a malloc'ed array. */
bool store_grow(void **array, size_t *cap, size_t used, size_t elem_size);

/* A replica's id (store_replica.c): 32 lowercase hex digits. */
#define STORE_REPLICA_ID_LEN 32
#define STORE_REPLICA_ID_SIZE (STORE_REPLICA_ID_LEN + 1)

/* This replica's id from data_dir/replica-id, made (random, mode 0600)
 * on first use. Call with the data directory locked. */
kms_status store_replica_id_load(const char *data_dir,
                                 char out[STORE_REPLICA_ID_SIZE]) KMS_MUST_USE;

/* Steps a statement that changes rows, then resets it; KMS_NOT_FOUND if it
 * changed none and not_found_ok is false. */
kms_status store_step_change(db_stmt *s, const char *what, const char *id,
                             bool not_found_ok) KMS_MUST_USE;

/* KMS_OK for DB_OK; else records the failure and resets s. */
kms_status store_bind_check(db_stmt *s, db_rc rc, const char *what,
                            const char *id) KMS_MUST_USE;

/* Steps a query of one integer column and one row, then resets it. */
kms_status store_step_count(db_stmt *s, const char *what, const char *id,
                            int64_t *out) KMS_MUST_USE;

/* store_version_insert with material: wrapped NULL for none (kek_id is
 * then ignored). In store_keys.c, for store_material.c. */
kms_status store_version_insert_material(store *st, const char *key_id, const store_version *v,
                                         uint32_t kek_id, const uint8_t *wrapped,
                                         size_t wrapped_len) KMS_MUST_USE;

/* Reads columns first_col.. (key_id, version, created_at, state,
 * encryptions_reserved) into out. In store_keys.c. */
kms_status store_version_row_read(db_stmt *s, int first_col, store_version_row *out)
        KMS_MUST_USE;

#endif
