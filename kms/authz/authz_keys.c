/*
 * authz_keys.c: the store-backed access key source (authz_keys.h).
 *
 * The cache is a fixed array of slots (AUTHZ_KEYS_CACHE_MAX in kmsd), searched
 * linearly under one mutex (a bounded scan of ids; the HSM unwrap and the
 * store reads happen outside the lock). Each slot's secret lives in one
 * locked block at slot * AUTHZ_SECRET_LEN. A slot handed out is pinned
 * (refs) until released, so eviction never pulls a secret from under a
 * verifier; when every slot is pinned, the secret is handed out in its
 * own locked block instead, freed at release.
 */
#include "kms/authz/authz_keys.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kms/secmem.h>

#include "common/error.h"
#include "kms/authz/authz_secrets.h"

typedef struct keys_slot {
	char id[AUTHZ_ID_SIZE]; /* "" when free */
	uint64_t used;          /* LRU tick */
	uint32_t refs;          /* verifiers holding its secret */
} keys_slot;

struct authz_keys {
	store *st;
	hsm *h;
	pthread_mutex_t lock;
	size_t cap;       /* slots */
	keys_slot *slots;
	uint8_t *secrets; /* cap * AUTHZ_SECRET_LEN, locked */
	uint64_t tick;
	size_t cached, unwraps;
};

_Static_assert(AUTHZ_SECRET_LEN == KMS_SIGN_SECRET_LEN, "one secret length");

kms_status authz_keys_open(store *st, hsm *h, authz_keys **out)
{
	return authz_keys_open_capped(st, h, AUTHZ_KEYS_CACHE_MAX, out);
}

kms_status authz_keys_open_capped(store *st, hsm *h, size_t cap, authz_keys **out)
{
	*out = NULL;
	KMS_ENSURE(st && h, KMS_INVALID_ARGUMENT, "authz keys: a store and an HSM are required");
	KMS_ENSURE(cap >= 1 && cap <= AUTHZ_KEYS_CACHE_MAX, KMS_INVALID_ARGUMENT,
	           "authz keys: the cache holds 1 to %d secrets", AUTHZ_KEYS_CACHE_MAX);
	authz_keys *k = calloc(1, sizeof *k);
	KMS_ENSURE(k, KMS_INTERNAL, "authz keys: out of memory");
	k->cap = cap;
	k->slots = calloc(cap, sizeof *k->slots);
	k->secrets = k->slots ? kms_secure_alloc(cap * AUTHZ_SECRET_LEN) : NULL;
	if (!k->secrets) {
		free(k->slots);
		free(k);
		return KMS_FAIL(KMS_INTERNAL, "authz keys: no locked memory for %zu access key "
		                "secrets: raise [limits] max_locked_bytes", cap);
	}
	pthread_mutex_init(&k->lock, NULL);
	k->st = st;
	k->h = h;
	*out = k;
	return KMS_OK;
}

void authz_keys_close(authz_keys *k)
{
	if (!k)
		return;
	kms_secure_free(k->secrets); /* wipes */
	pthread_mutex_destroy(&k->lock);
	free(k->slots);
	free(k);
}

static uint8_t *slot_secret(authz_keys *k, size_t i)
{
	return k->secrets + i * AUTHZ_SECRET_LEN;
}

/* Under the lock: the slot caching id, pinned, or SIZE_MAX. */
static size_t slot_take(authz_keys *k, const char *id)
{
	for (size_t i = 0; i < k->cap; i++)
		if (k->slots[i].id[0] && !strcmp(k->slots[i].id, id)) {
			k->slots[i].refs++;
			k->slots[i].used = ++k->tick;
			return i;
		}
	return SIZE_MAX;
}

/* Under the lock: a free slot, or the least recently used unpinned one
 * (wiped), or SIZE_MAX when every slot is pinned. */
static size_t slot_free(authz_keys *k)
{
	size_t best = SIZE_MAX;
	for (size_t i = 0; i < k->cap; i++) {
		if (!k->slots[i].id[0])
			return i;
		if (!k->slots[i].refs && (best == SIZE_MAX || k->slots[i].used < k->slots[best].used))
			best = i;
	}
	if (best != SIZE_MAX) {
		kms_wipe(slot_secret(k, best), AUTHZ_SECRET_LEN);
		k->slots[best].id[0] = '\0';
		k->cached--;
	}
	return best;
}

/* The secret of an active key, cached or unwrapped now. */
static kms_status secret_get(authz_keys *k, const store_access_key *row, authz_key *out)
{
	pthread_mutex_lock(&k->lock);
	size_t i = slot_take(k, row->id);
	pthread_mutex_unlock(&k->lock);
	if (i != SIZE_MAX) {
		out->secret = slot_secret(k, i);
		return KMS_OK;
	}
	uint8_t *secret = NULL;
	KMS_GUARD(authz_secrets_unwrap(k->h, row->id, row->principal, row->wrapped,
	                               row->wrapped_len, &secret));
	pthread_mutex_lock(&k->lock);
	k->unwraps++;
	i = slot_take(k, row->id); /* another worker may have unwrapped it meanwhile */
	if (i == SIZE_MAX && (i = slot_free(k)) != SIZE_MAX) {
		memcpy(slot_secret(k, i), secret, AUTHZ_SECRET_LEN);
		memcpy(k->slots[i].id, row->id, sizeof k->slots[i].id);
		k->slots[i].refs = 1;
		k->slots[i].used = ++k->tick;
		k->cached++;
	}
	pthread_mutex_unlock(&k->lock);
	if (i == SIZE_MAX) {
		out->secret = secret; /* every slot pinned: its own block until release */
		return KMS_OK;
	}
	kms_secure_free(secret);
	out->secret = slot_secret(k, i);
	return KMS_OK;
}

static kms_status keys_lookup(void *ctx, const char *access_key_id, authz_key *out)
{
	authz_keys *k = ctx;
	store_access_key row;
	store_principal p;
	memset(out, 0, sizeof *out);
	kms_status st = store_access_key_get(k->st, access_key_id, &row);
	if (st != KMS_OK) {
		kms_wipe(&row, sizeof row);
		return st; /* KMS_NOT_FOUND: unknown */
	}
	snprintf(out->principal, sizeof out->principal, "%s", row.principal);
	out->revoked = row.state != ACCESS_KEY_STATE_ACTIVE;
	st = store_principal_get(k->st, row.principal, &p);
	if (st == KMS_NOT_FOUND) {
		/* Deleted (its keys were revoked with it): the key is known, and
		 * refused as revoked, never as unknown. */
		kms_error_clear();
		st = KMS_OK;
		out->principal_disabled = true; /* fail closed */
	} else if (st != KMS_OK) {
		kms_wipe(&row, sizeof row);
		return st;
	} else {
		out->principal_disabled = p.state != PRINCIPAL_STATE_ENABLED;
	}
	if (!out->revoked && !out->principal_disabled)
		st = secret_get(k, &row, out);
	kms_wipe(&row, sizeof row);
	return st;
}

static void keys_release(void *ctx, authz_key *key)
{
	authz_keys *k = ctx;
	const uint8_t *s = key->secret;
	key->secret = NULL;
	if (!s)
		return;
	uintptr_t at = (uintptr_t)s, base = (uintptr_t)k->secrets;
	if (at >= base && at < base + (uintptr_t)k->cap * AUTHZ_SECRET_LEN) {
		pthread_mutex_lock(&k->lock);
		k->slots[(at - base) / AUTHZ_SECRET_LEN].refs--;
		pthread_mutex_unlock(&k->lock);
		return;
	}
	kms_secure_free((void *)s);
}

authz_key_source authz_keys_source(authz_keys *k)
{
	return (authz_key_source){ .lookup = keys_lookup, .release = keys_release, .ctx = k };
}

size_t authz_keys_cached(authz_keys *k)
{
	pthread_mutex_lock(&k->lock);
	size_t n = k->cached;
	pthread_mutex_unlock(&k->lock);
	return n;
}

size_t authz_keys_unwraps(authz_keys *k)
{
	pthread_mutex_lock(&k->lock);
	size_t n = k->unwraps;
	pthread_mutex_unlock(&k->lock);
	return n;
}
