/*
 * authz_rate.c: token buckets per principal and per key (authz_rate.h).
 * Tokens are counted in millionths, so that a rate of r per second adds r
 * millionths per microsecond: integer arithmetic, no rounding drift. Each
 * table is a hash of chained buckets with a least-recently-used list; a
 * new name past max_entries drops the oldest bucket.
 */
#include "kms/authz/authz_rate.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/error.h"
#include "common/log.h"

#define UNIT UINT64_C(1000000) /* one token */

typedef struct bucket {
	struct bucket *hnext;       /* hash chain */
	struct bucket *prev, *next; /* LRU: head is the most recent */
	uint64_t hash;
	uint64_t tokens; /* millionths */
	uint64_t last_us;
	size_t name_len;
	char name[];
} bucket;

typedef struct table {
	uint64_t rate;     /* millionths per microsecond = tokens per second; 0: off */
	uint64_t capacity; /* millionths */
	size_t max, count;
	size_t n_slots; /* a power of two */
	bucket **slots;
	bucket *head, *tail;
} table;

struct authz_rate {
	pthread_mutex_t mu;
	authz_rate_clock_fn clock;
	void *clock_arg;
	uint64_t seed;
	table principals, keys;
};

static uint64_t default_clock(void *arg)
{
	(void)arg;
	return kms_monotonic_us();
}

/* FNV-1a over a per-limiter random seed, so that chains cannot be aimed. */
static uint64_t name_hash(uint64_t seed, const char *s, size_t len)
{
	uint64_t h = UINT64_C(14695981039346656037) ^ seed;
	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)s[i];
		h *= UINT64_C(1099511628211);
	}
	return h ^ (h >> 29);
}

static kms_status table_init(table *t, uint32_t rate, uint32_t burst, size_t max)
{
	t->rate = rate;
	t->capacity = (uint64_t)(burst ? burst : rate) * UNIT;
	if (t->capacity < UNIT)
		t->capacity = UNIT;
	t->max = max;
	if (!rate)
		return KMS_OK;
	t->n_slots = 1;
	while (t->n_slots < max)
		t->n_slots <<= 1;
	t->slots = calloc(t->n_slots, sizeof *t->slots);
	KMS_ENSURE(t->slots, KMS_INTERNAL, "rate limits: out of memory for %zu buckets", max);
	return KMS_OK;
}

static void table_free(table *t)
{
	bucket *b = t->head;
	while (b) {
		bucket *next = b->next;
		free(b);
		b = next;
	}
	free(t->slots);
}

static void lru_unlink(table *t, bucket *b)
{
	if (b->prev)
		b->prev->next = b->next;
	else
		t->head = b->next;
	if (b->next)
		b->next->prev = b->prev;
	else
		t->tail = b->prev;
	b->prev = b->next = NULL;
}

static void lru_push(table *t, bucket *b)
{
	b->prev = NULL;
	b->next = t->head;
	if (t->head)
		t->head->prev = b;
	t->head = b;
	if (!t->tail)
		t->tail = b;
}

static void evict_oldest(table *t)
{
	bucket *old = t->tail;
	if (!old)
		return;
	lru_unlink(t, old);
	bucket **pp = &t->slots[old->hash & (t->n_slots - 1)];
	while (*pp && *pp != old)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = old->hnext;
	free(old);
	t->count--;
}

/* The bucket for name, made (full) if new; NULL when out of memory. */
static bucket *table_get(table *t, uint64_t seed, const char *name, size_t len, uint64_t now)
{
	uint64_t h = name_hash(seed, name, len);
	bucket **slot = &t->slots[h & (t->n_slots - 1)];
	for (bucket *b = *slot; b; b = b->hnext) {
		if (b->hash == h && b->name_len == len && !memcmp(b->name, name, len)) {
			lru_unlink(t, b);
			lru_push(t, b);
			return b;
		}
	}
	if (t->count >= t->max)
		evict_oldest(t);
	bucket *b = calloc(1, sizeof *b + len + 1);
	if (!b)
		return NULL;
	memcpy(b->name, name, len);
	b->name_len = len;
	b->hash = h;
	b->tokens = t->capacity;
	b->last_us = now;
	/* The eviction may have changed this slot's chain: re-read it. */
	slot = &t->slots[h & (t->n_slots - 1)];
	b->hnext = *slot;
	*slot = b;
	lru_push(t, b);
	t->count++;
	return b;
}

static void refill(const table *t, bucket *b, uint64_t now)
{
	if (now <= b->last_us)
		return;
	uint64_t elapsed = now - b->last_us;
	b->last_us = now;
	if (elapsed > t->capacity / t->rate) {
		b->tokens = t->capacity;
		return;
	}
	b->tokens += elapsed * t->rate; /* <= capacity + capacity: no overflow */
	if (b->tokens > t->capacity)
		b->tokens = t->capacity;
}

/* Microseconds until b holds one token (0: it does). */
static uint64_t wait_us(const table *t, const bucket *b)
{
	if (!b || b->tokens >= UNIT)
		return 0;
	return (UNIT - b->tokens + t->rate - 1) / t->rate;
}

kms_status authz_rate_new(const authz_rate_config *cfg, authz_rate **out)
{
	*out = NULL;
	KMS_ENSURE(cfg->principal_rate <= AUTHZ_RATE_MAX && cfg->principal_burst <= AUTHZ_RATE_MAX &&
	           cfg->key_rate <= AUTHZ_RATE_MAX && cfg->key_burst <= AUTHZ_RATE_MAX,
	           KMS_INVALID_ARGUMENT, "rate limits: rates and bursts are 0 to %u",
	           AUTHZ_RATE_MAX);
	size_t max = cfg->max_entries;
	if (max == 0 || max > AUTHZ_RATE_ENTRIES_MAX)
		max = AUTHZ_RATE_ENTRIES_MAX;
	authz_rate *rl = calloc(1, sizeof *rl);
	KMS_ENSURE(rl, KMS_INTERNAL, "rate limits: out of memory");
	if (pthread_mutex_init(&rl->mu, NULL)) {
		free(rl);
		return KMS_FAIL(KMS_INTERNAL, "rate limits: cannot make a mutex");
	}
	rl->clock = cfg->clock ? cfg->clock : default_clock;
	rl->clock_arg = cfg->clock_arg;
	if (getrandom(&rl->seed, sizeof rl->seed, GRND_NONBLOCK) != (ssize_t)sizeof rl->seed)
		rl->seed = (uint64_t)(uintptr_t)rl ^ kms_monotonic_us();
	kms_status st = table_init(&rl->principals, cfg->principal_rate, cfg->principal_burst, max);
	if (st == KMS_OK)
		st = table_init(&rl->keys, cfg->key_rate, cfg->key_burst, max);
	if (st != KMS_OK) {
		authz_rate_free(rl);
		return st;
	}
	*out = rl;
	return KMS_OK;
}

void authz_rate_free(authz_rate *rl)
{
	if (!rl)
		return;
	table_free(&rl->principals);
	table_free(&rl->keys);
	pthread_mutex_destroy(&rl->mu);
	free(rl);
}

kms_status authz_rate_take(authz_rate *rl, const char *principal, const char *key_id,
                           authz_rate_verdict *out)
{
	memset(out, 0, sizeof *out);
	size_t plen = principal ? strnlen(principal, AUTHZ_RATE_NAME_MAX + 1) : 0;
	size_t klen = key_id ? strnlen(key_id, AUTHZ_RATE_NAME_MAX + 1) : 0;
	KMS_ENSURE(plen <= AUTHZ_RATE_NAME_MAX && klen <= AUTHZ_RATE_NAME_MAX,
	           KMS_INVALID_ARGUMENT, "rate limits: a principal or key name is longer than %d "
	           "bytes", AUTHZ_RATE_NAME_MAX);

	pthread_mutex_lock(&rl->mu);
	uint64_t now = rl->clock(rl->clock_arg);
	bucket *p = NULL, *k = NULL;
	bool oom = false;
	if (principal && rl->principals.rate) {
		p = table_get(&rl->principals, rl->seed, principal, plen, now);
		oom |= !p;
	}
	if (key_id && rl->keys.rate) {
		k = table_get(&rl->keys, rl->seed, key_id, klen, now);
		oom |= !k;
	}
	if (oom) {
		pthread_mutex_unlock(&rl->mu);
		return KMS_FAIL(KMS_INTERNAL, "rate limits: out of memory for a bucket");
	}
	if (p)
		refill(&rl->principals, p, now);
	if (k)
		refill(&rl->keys, k, now);
	uint64_t wp = wait_us(&rl->principals, p);
	uint64_t wk = wait_us(&rl->keys, k);
	if (!wp && !wk) {
		if (p)
			p->tokens -= UNIT;
		if (k)
			k->tokens -= UNIT;
		pthread_mutex_unlock(&rl->mu);
		out->allowed = true;
		return KMS_OK;
	}
	pthread_mutex_unlock(&rl->mu);

	uint64_t w = wp > wk ? wp : wk;
	uint64_t ms = (w + 999) / 1000;
	out->retry_after_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
	out->limited = (wp ? AUTHZ_RATE_PRINCIPAL : 0) | (wk ? AUTHZ_RATE_KEY : 0);
	if (wp && wk)
		return KMS_FAIL(KMS_THROTTLED, "principal %s and key %s are over their rate limits: "
		                "retry after %u ms", principal, key_id, out->retry_after_ms);
	if (wp)
		return KMS_FAIL(KMS_THROTTLED, "principal %s is over its rate limit: retry after %u ms",
		                principal, out->retry_after_ms);
	return KMS_FAIL(KMS_THROTTLED, "key %s is over its rate limit: retry after %u ms", key_id,
	                out->retry_after_ms);
}

void authz_rate_entries(authz_rate *rl, size_t *principals, size_t *keys)
{
	pthread_mutex_lock(&rl->mu);
	*principals = rl->principals.count;
	*keys = rl->keys.count;
	pthread_mutex_unlock(&rl->mu);
}
