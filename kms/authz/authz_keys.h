/*
 * authz_keys.h: the verifier's access keys, from the store
 * (authz_verify.h's authz_key_source; docs/authorization.md, "Signed
 * requests").
 *
 * A lookup reads the access key's row and its principal's row from the
 * store on every call, so a revocation or a disabled principal takes
 * effect on the next request: there is no cache of state. What is cached
 * is the unwrapped secret, which never changes for an access key id (the
 * store never changes an id's owner or wrapped secret): up to
 * AUTHZ_KEYS_CACHE_MAX secrets in one block of locked memory
 * (kms_secure_alloc), the least recently used dropped (wiped) first, all
 * wiped at close. A miss unwraps through the HSM (authz_secrets_unwrap).
 * A secret handed to the verifier stays put until its release, however
 * many others come and go.
 *
 * A principal that is gone (deleted) counts as disabled: its keys were
 * revoked with it anyway. Thread-safe: workers call lookup and release
 * concurrently; each uses its own store connection (store.h).
 */
#ifndef KMS_AUTHZ_KEYS_H
#define KMS_AUTHZ_KEYS_H

#include <stddef.h>

#include <kms/status.h>

#include "hsm/hsm.h"
#include "kms/authz/authz_verify.h"
#include "kms/store/store.h"

#define AUTHZ_KEYS_CACHE_MAX 4096

typedef struct authz_keys authz_keys;

/* KMS_INTERNAL out of memory (locked memory included); *out NULL then.
 * Neither st nor h is owned: close this before them. */
kms_status authz_keys_open(store *st, hsm *h, authz_keys **out) KMS_MUST_USE;

/* The same with room for cap secrets (1..AUTHZ_KEYS_CACHE_MAX), for tests
 * of eviction. */
kms_status authz_keys_open_capped(store *st, hsm *h, size_t cap, authz_keys **out) KMS_MUST_USE;

/* Wipes every cached secret. No lookup may be in flight. NULL is ignored. */
void authz_keys_close(authz_keys *k);

/* The source to put in authz_verify_config.keys. */
authz_key_source authz_keys_source(authz_keys *k);

/* How many secrets are cached now, and how many misses unwrapped one
 * through the HSM since open (for tests). */
size_t authz_keys_cached(authz_keys *k);
size_t authz_keys_unwraps(authz_keys *k);

#endif
