/*
 * store_internal.h: what store.c (connections, schema, transactions,
 * statement helpers) shares with store_keys.c, store_aliases.c,
 * store_principals.c and store_grants.c (the statements). Not for use outside the store.
 */
#ifndef KMS_STORE_INTERNAL_H
#define KMS_STORE_INTERNAL_H

#include <sqlite3.h>

#include "kms/store/store.h"

/* One slot per statement in each connection's cache. Each id is used with
 * exactly one SQL text, at one call site. */
typedef enum store_stmt_id {
	S_BEGIN,
	S_BEGIN_READ,
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
	S_VERSIONS_ALL,
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
	S_COUNT
} store_stmt_id;

/* This thread's statement for id (prepared from sql on first use), reset
 * and with its bindings cleared. Finish with store_stmt_done. */
kms_status store_stmt(store *st, store_stmt_id id, const char *sql,
                      sqlite3_stmt **out) KMS_MUST_USE;

/* Resets s so it holds no read snapshot. NULL is ignored. */
void store_stmt_done(sqlite3_stmt *s);

/* Binds parameters 1.. from a type string: 't' a const char * (text),
 * 'i' an int64_t. Returns an SQLite result code. */
int store_bind(sqlite3_stmt *s, const char *types, ...);

/* Records a failure of what (a statement name) on the row named by id
 * (NULL if none): SQLITE_BUSY/LOCKED are KMS_UNAVAILABLE, the rest
 * KMS_INTERNAL. Returns the status. */
kms_status store_fail_at(sqlite3_stmt *s, int rc, const char *what, const char *id,
                         const char *file, int line);
#define store_fail(s, rc, what, id) store_fail_at((s), (rc), (what), (id), __FILE__, __LINE__)

/* Copies text column col of the current row into out[cap]; false when it is
 * NULL-free text that does not fit (a corrupt or foreign row). */
bool store_column_text(sqlite3_stmt *s, int col, char *out, size_t cap);

/* True for a uniqueness violation (extended result codes are on). */
bool store_is_duplicate(int rc);

/* Makes room for one more element in a malloc'ed array. */
bool store_grow(void **array, size_t *cap, size_t used, size_t elem_size);

/* Steps a statement that changes rows, then resets it; KMS_NOT_FOUND if it
 * changed none and not_found_ok is false. */
kms_status store_step_change(sqlite3_stmt *s, const char *what, const char *id,
                             bool not_found_ok) KMS_MUST_USE;

/* KMS_OK for SQLITE_OK; else records the failure and resets s. */
kms_status store_bind_check(sqlite3_stmt *s, int rc, const char *what,
                            const char *id) KMS_MUST_USE;

/* Steps a query of one integer column and one row, then resets it. */
kms_status store_step_count(sqlite3_stmt *s, const char *what, const char *id,
                            int64_t *out) KMS_MUST_USE;

#endif
