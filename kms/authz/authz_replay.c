/*
 * authz_replay.c: the replay table of signed requests (authz_replay.h).
 *
 * Two pools reserved at open, each a bump allocator with a free list (a
 * slot's page is touched only when first used): entries, chained from
 * hash buckets; and access keys, chained from their own buckets, each
 * counting its entries. Links are indexes + 1, so 0 (calloc's) is "none".
 */
#include "kms/authz/authz_replay.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <kms/limits.h>
#include <kms/secmem.h>

#include "common/error.h"

#define DIGEST_LEN 16
#define HASH_KEY_LEN 32

typedef struct replay_entry {
	uint8_t digest[DIGEST_LEN]; /* HMAC(hash_key, key id "\n" request id), cut */
	int64_t expires;            /* dropped once the clock is past this */
	uint32_t next;              /* chain (bucket or free list), index + 1 */
	uint32_t key;               /* its access key's slot, index + 1 */
} replay_entry;

typedef struct replay_key {
	char id[AUTHZ_ID_LEN + 1];
	uint32_t count; /* its entries, live or not yet dropped */
	uint32_t next;  /* chain, index + 1 */
} replay_key;

struct authz_replay {
	pthread_mutex_t lock;
	size_t per_key;
	int64_t window;
	int64_t next_sweep; /* clock seconds before which no sweep runs */
	uint8_t hash_key[HASH_KEY_LEN];

	replay_entry *entries;
	uint32_t *buckets; /* entry chains */
	size_t n_entries, n_buckets, entries_used, entries_bumped;
	uint32_t entries_free;

	replay_key *keys;
	uint32_t *key_buckets;
	size_t n_keys, n_key_buckets, keys_used, keys_bumped;
	uint32_t keys_free;
};

static size_t pow2_at_least(size_t n)
{
	size_t p = 1;
	while (p < n)
		p <<= 1;
	return p;
}

kms_status authz_replay_open(size_t entries, size_t per_key, size_t keys,
                             int64_t window_seconds, authz_replay **out)
{
	*out = NULL;
	if (entries < 1 || entries > AUTHZ_REPLAY_ENTRIES_MAX || per_key < 1 ||
	    per_key > entries || keys < 1 || keys > entries || window_seconds <= 0)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "replay table: bounds out of range "
		                "(entries 1..%u, per key and keys 1..entries, window > 0)",
		                AUTHZ_REPLAY_ENTRIES_MAX);
	authz_replay *r = calloc(1, sizeof *r);
	if (!r)
		return KMS_FAIL(KMS_INTERNAL, "replay table: out of memory");
	r->per_key = per_key;
	r->window = window_seconds;
	r->n_entries = entries;
	r->n_buckets = pow2_at_least(entries);
	r->n_keys = keys;
	r->n_key_buckets = pow2_at_least(keys);
	r->entries = calloc(entries, sizeof *r->entries);
	r->buckets = calloc(r->n_buckets, sizeof *r->buckets);
	r->keys = calloc(keys, sizeof *r->keys);
	r->key_buckets = calloc(r->n_key_buckets, sizeof *r->key_buckets);
	if (!r->entries || !r->buckets || !r->keys || !r->key_buckets ||
	    RAND_bytes(r->hash_key, sizeof r->hash_key) != 1 ||
	    pthread_mutex_init(&r->lock, NULL) != 0) {
		free(r->entries);
		free(r->buckets);
		free(r->keys);
		free(r->key_buckets);
		free(r);
		return KMS_FAIL(KMS_INTERNAL, "replay table: cannot reserve %zu entries: out of "
		                "memory or randomness", entries);
	}
	*out = r;
	return KMS_OK;
}

void authz_replay_close(authz_replay *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r->entries);
	free(r->buckets);
	free(r->keys);
	free(r->key_buckets);
	kms_wipe(r->hash_key, sizeof r->hash_key);
	free(r);
}

/* FNV-1a: key ids reach the table only after their MAC verified. */
static uint32_t key_hash(const char *id)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; id[i]; i++)
		h = (h ^ (uint8_t)id[i]) * 16777619u;
	return h;
}

/* The slot (index + 1) of an access key with entries, or 0. */
static uint32_t key_find(authz_replay *r, const char *id)
{
	uint32_t at = r->key_buckets[key_hash(id) & (r->n_key_buckets - 1)];
	while (at) {
		replay_key *k = &r->keys[at - 1];
		if (!strcmp(k->id, id))
			return at;
		at = k->next;
	}
	return 0;
}

/* A new slot for id with no entries, or 0 when the pool is full. */
static uint32_t key_add(authz_replay *r, const char *id)
{
	uint32_t at;
	if (r->keys_free) {
		at = r->keys_free;
		r->keys_free = r->keys[at - 1].next;
	} else if (r->keys_bumped < r->n_keys) {
		at = (uint32_t)++r->keys_bumped;
	} else {
		return 0;
	}
	replay_key *k = &r->keys[at - 1];
	memcpy(k->id, id, AUTHZ_ID_LEN + 1);
	k->count = 0;
	uint32_t *head = &r->key_buckets[key_hash(id) & (r->n_key_buckets - 1)];
	k->next = *head;
	*head = at;
	r->keys_used++;
	return at;
}

/* One entry of key slot `at` gone; the slot goes too when it was the last. */
static void key_release(authz_replay *r, uint32_t at)
{
	replay_key *k = &r->keys[at - 1];
	if (--k->count > 0)
		return;
	uint32_t *link = &r->key_buckets[key_hash(k->id) & (r->n_key_buckets - 1)];
	while (*link != at)
		link = &r->keys[*link - 1].next;
	*link = k->next;
	memset(k, 0, sizeof *k);
	k->next = r->keys_free;
	r->keys_free = at;
	r->keys_used--;
}

/* Unlinks the entry *link points at and frees it. */
static void entry_drop(authz_replay *r, uint32_t *link)
{
	uint32_t at = *link;
	replay_entry *e = &r->entries[at - 1];
	*link = e->next;
	key_release(r, e->key);
	memset(e, 0, sizeof *e);
	e->next = r->entries_free;
	r->entries_free = at;
	r->entries_used--;
}

/* Drops every expired entry. O(buckets + entries). */
static void sweep(authz_replay *r, int64_t now)
{
	for (size_t b = 0; b < r->n_buckets; b++) {
		uint32_t *link = &r->buckets[b];
		while (*link) {
			if (now > r->entries[*link - 1].expires)
				entry_drop(r, link);
			else
				link = &r->entries[*link - 1].next;
		}
	}
}

static bool id_ok(const char *s, size_t min, size_t max)
{
	if (!s)
		return false;
	size_t n = strnlen(s, max + 1);
	return n >= min && n <= max;
}

static int64_t expiry(int64_t timestamp, int64_t now, int64_t window)
{
	int64_t base = timestamp > now ? timestamp : now;
	return base > INT64_MAX - window ? INT64_MAX : base + window;
}

/* Room for one more entry of key slot `key` (0: a key not in the table). */
static bool has_room(const authz_replay *r, uint32_t key)
{
	if (r->entries_used >= r->n_entries)
		return false;
	if (key)
		return r->keys[key - 1].count < r->per_key;
	return r->keys_used < r->n_keys;
}

authz_replay_result authz_replay_check(authz_replay *r, const char *access_key_id,
                                       const char *request_id, int64_t timestamp_unix,
                                       int64_t now)
{
	uint8_t mac[EVP_MAX_MD_SIZE], material[AUTHZ_ID_LEN + 1 + KMS_REQUEST_ID_MAX];
	unsigned int mac_len = 0;

	if (!r || !id_ok(access_key_id, AUTHZ_ID_LEN, AUTHZ_ID_LEN) ||
	    !id_ok(request_id, 1, KMS_REQUEST_ID_MAX))
		return AUTHZ_REPLAY_FULL;
	size_t rid_len = strlen(request_id);
	memcpy(material, access_key_id, AUTHZ_ID_LEN);
	material[AUTHZ_ID_LEN] = '\n';
	memcpy(material + AUTHZ_ID_LEN + 1, request_id, rid_len);
	if (!HMAC(EVP_sha256(), r->hash_key, sizeof r->hash_key, material,
	          AUTHZ_ID_LEN + 1 + rid_len, mac, &mac_len) ||
	    mac_len < DIGEST_LEN)
		return AUTHZ_REPLAY_FULL;
	uint32_t bucket = ((uint32_t)mac[DIGEST_LEN] | (uint32_t)mac[DIGEST_LEN + 1] << 8 |
	                   (uint32_t)mac[DIGEST_LEN + 2] << 16 |
	                   (uint32_t)mac[DIGEST_LEN + 3] << 24) & (uint32_t)(r->n_buckets - 1);

	pthread_mutex_lock(&r->lock);
	/* Walk the chain, dropping what expired; a live match is a replay. */
	uint32_t *link = &r->buckets[bucket];
	while (*link) {
		replay_entry *e = &r->entries[*link - 1];
		if (now > e->expires) {
			entry_drop(r, link);
			continue;
		}
		if (!memcmp(e->digest, mac, DIGEST_LEN) &&
		    !strcmp(r->keys[e->key - 1].id, access_key_id)) {
			pthread_mutex_unlock(&r->lock);
			return AUTHZ_REPLAY_SEEN;
		}
		link = &e->next;
	}
	uint32_t key = key_find(r, access_key_id);
	if (!has_room(r, key) && now >= r->next_sweep) {
		sweep(r, now);
		r->next_sweep = now + AUTHZ_REPLAY_SWEEP_SECONDS;
		key = key_find(r, access_key_id); /* the sweep may have freed it */
	}
	if (!has_room(r, key) || (!key && !(key = key_add(r, access_key_id)))) {
		pthread_mutex_unlock(&r->lock);
		return AUTHZ_REPLAY_FULL;
	}
	uint32_t at;
	if (r->entries_free) {
		at = r->entries_free;
		r->entries_free = r->entries[at - 1].next;
	} else {
		at = (uint32_t)++r->entries_bumped;
	}
	replay_entry *e = &r->entries[at - 1];
	memcpy(e->digest, mac, DIGEST_LEN);
	e->expires = expiry(timestamp_unix, now, r->window);
	e->key = key;
	e->next = r->buckets[bucket];
	r->buckets[bucket] = at;
	r->keys[key - 1].count++;
	r->entries_used++;
	pthread_mutex_unlock(&r->lock);
	return AUTHZ_REPLAY_FRESH;
}

void authz_replay_stats_get(authz_replay *r, authz_replay_stats *out)
{
	memset(out, 0, sizeof *out);
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	out->entries = r->entries_used;
	out->keys = r->keys_used;
	out->bytes_reserved = sizeof *r + r->n_entries * sizeof *r->entries +
	                      r->n_buckets * sizeof *r->buckets + r->n_keys * sizeof *r->keys +
	                      r->n_key_buckets * sizeof *r->key_buckets;
	pthread_mutex_unlock(&r->lock);
}
