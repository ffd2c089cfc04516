/*
 * store_cache.h: a small read cache beside each thread's connection, for the
 * reads every keyed request makes (its principal, its key's policy, the
 * principal's live grants on the key, and for a signed request its access
 * key's row). Not for use outside the store.
 *
 * Freshness: the store counts committed writes (store.c, from SQLite's WAL
 * hook, which runs once a commit is visible to every connection). An entry
 * keeps the count read *before* the read that filled it, and is used only
 * while the count is unchanged: a write committed at any time after that
 * read began (by any thread; kmsd's flock on the data dir keeps every other
 * process out) drops it. So a change (a principal disabled, a policy put, a
 * grant revoked) is seen by the next request exactly as without the cache.
 * Inside an explicit transaction the cache is neither read nor filled: that
 * transaction may see its own uncommitted writes. On PostgreSQL other
 * replicas commit to the same database, unseen by that count; there the
 * count is the cache generation (schema 10: raised in the transaction of
 * every change to what is cached here) that this thread read at its
 * request's start (keyring_sync, store_cache_follow). An entry filled after that
 * read is tagged with it, so a change committed before a request began is
 * never answered from an older entry; until the thread follows a
 * generation, and after any write of its own, it has no cache
 * (docs/scale-out.md, "Cache coherence").
 *
 * Cached: a principal's row (or that there is none), an access key's row
 * (found; its secret is in it wrapped, as in the store), that a key has no
 * policy of its own, that a principal has no live grant on a key. A key's
 * own policy text and a non-empty grant list are read from the store every
 * time.
 */
#ifndef KMS_STORE_CACHE_H
#define KMS_STORE_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "kms/store/store.h"

typedef struct store_read_cache store_read_cache;

/* This thread's cache of st, or NULL: no connection yet, inside a
 * transaction, or no memory (then every read goes to SQLite). */
store_read_cache *store_cache_mine(store *st);

/* For store.c: a connection's cache, made with it and freed with it. */
store_read_cache *store_cache_new(void);
void store_cache_free(store_read_cache *c);

/* The count of committed writes; read it before the read that fills an
 * entry, and pass it to the put. */
uint64_t store_write_count(store *st);

/* A principal's row: true on a hit, with *found false when the store said
 * there is no such live principal. */
bool store_cache_principal_get(store_read_cache *c, uint64_t count, const char *name,
                               store_principal *out, bool *found);
void store_cache_principal_put(store_read_cache *c, uint64_t count, const char *name,
                               const store_principal *p /* NULL: not found */);

/* An access key's row (its secret only ever wrapped: store.h). */
bool store_cache_access_key_get(store_read_cache *c, uint64_t count, const char *id,
                                store_access_key *out);
void store_cache_access_key_put(store_read_cache *c, uint64_t count,
                                const store_access_key *row);

/* That key_id exists and has no policy of its own. */
bool store_cache_no_policy(store_read_cache *c, uint64_t count, const char *key_id);
void store_cache_no_policy_put(store_read_cache *c, uint64_t count, const char *key_id);

/* That principal has no live grant on key_id. */
bool store_cache_no_grants(store_read_cache *c, uint64_t count, const char *principal,
                           const char *key_id);
void store_cache_no_grants_put(store_read_cache *c, uint64_t count, const char *principal,
                               const char *key_id);

#endif
