/*
 * data_key_cache.c: the opt-in data-key cache (kms/data_key_cache.h).
 *
 * Two tables, one per direction, each a hash of entries by their id bytes:
 *
 *   encrypt: u32 BE length, the key reference as given, the context's
 *            canonical encoding (common/context.h);
 *   decrypt: u32 BE length, the blob, a byte saying whether a key_id is
 *            required (then u32 BE length and the key_id), the context's
 *            canonical encoding.
 *
 * The canonical encoding sorts the pairs, so one map given in two orders is
 * one id; the length prefixes keep two different (reference, context)
 * pairs from making the same bytes.
 *
 * An entry is FETCHING (one caller's GenerateDataKey or Decrypt in flight,
 * the lock not held), READY (the answer, kept until a bound retires it or
 * capacity evicts it) or FAILED (the fetch's error, for the callers that
 * waited; never in a table). A caller that finds a FETCHING entry with room
 * left under the bounds for its message reserves that room now and waits
 * for the fetch; it is then served by that fetch, whatever else happens
 * meanwhile, so no caller ever waits twice. A caller that finds none with
 * room (max_messages 1, or the in-flight one spoken for) fetches its own:
 * one id may have several entries at once.
 *
 * An entry is freed (its plaintext wiped) when its last reference goes: the
 * table's, the fetcher's and each waiter's. Handing a key out copies it
 * with the lock released, under a reference, so neither the copy's
 * allocation (a kms_secure_alloc mapping) nor the final wipe happens under
 * the lock.
 */
#include "clients/lib/client_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include <kms/data_key_cache.h>

#include "common/context.h"
#include "common/error.h"

#define NS_PER_MS UINT64_C(1000000)
/* Bigger than any id a valid request has (a key reference, a blob of at
 * most KMS_ENCRYPT_MAX_PLAINTEXT bytes and its framing): a larger one goes
 * to kmsd uncached, which refuses it as it would without a cache. */
#define KEY_REF_CACHED_MAX 1024
#define BLOB_CACHED_MAX (KMS_ENCRYPT_MAX_PLAINTEXT + 1024)
#define BUCKETS_MIN 16

typedef enum entry_state { ENTRY_FETCHING, ENTRY_READY, ENTRY_FAILED } entry_state;

typedef struct entry {
	struct entry *chain;               /* next in the bucket */
	struct entry *newer, *older;       /* the LRU list: READY and linked only */
	uint64_t hash;
	uint8_t *id;                       /* plain memory: not secret */
	size_t id_len;
	entry_state state;
	bool linked;                       /* in its table */
	unsigned refs;                     /* table, fetcher, each waiter */
	uint64_t born_ns;                  /* just before the fetch was sent */
	/* Counted against the bounds: the fetcher's and waiters' messages
	 * (reserved while FETCHING), then every hit's. */
	uint64_t messages;
	uint64_t bytes;
	kms_data_key dk;                   /* encrypt: plaintext in secure memory */
	kms_plaintext pt;                  /* decrypt: bytes in secure memory */
	kms_error error;                   /* FAILED: what the fetch said */
} entry;

typedef struct table {
	entry **buckets;
	size_t mask;                       /* buckets - 1, a power of two */
	size_t count;                      /* linked entries, any state */
	entry lru;                         /* circular, through this sentinel: lru.newer
	                                    * the least recent, lru.older the most */
} table;

struct kms_data_key_cache {
	kms_client *client;                /* borrowed */
	kms_data_key_cache_limits limits;  /* capacity resolved */
	uint64_t max_age_ns;
	uint64_t seed;                     /* of the id hash */
	nng_mtx *mtx;                      /* everything below */
	nng_cv *cv;                        /* a fetch finished */
	table enc, dec;
	kms_data_key_cache_stats stats;
};

/* One request, as the shared path sees it. */
typedef struct ask {
	bool encrypt;
	const char *key_id;                /* encrypt: the reference; decrypt: required or NULL */
	const uint8_t *blob;
	size_t blob_len;
	const kms_context_pair *context;
	size_t n_context;
	uint64_t message_bytes;
	uint8_t *id;                       /* owned until an entry takes it */
	size_t id_len;
	uint64_t hash;
} ask;

/*
 * CLOCK_BOOTTIME: monotonic like CLOCK_MONOTONIC (never set back), and it
 * also counts time suspended, so a key's age includes a laptop's sleep:
 * max_age_ms bounds the wall time a revocation can take to be seen.
 */
static uint64_t now_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0)
		return UINT64_MAX; /* not on Linux >= 2.6.39; read as too old */
	return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

/* ---- entries and tables (under the lock) ---- */

/* FNV-1a over a per-cache random seed, so that ids cannot be chosen to
 * pile into one chain. */
static uint64_t id_hash(uint64_t seed, const uint8_t *id, size_t len)
{
	uint64_t h = UINT64_C(0xcbf29ce484222325) ^ seed;
	for (size_t i = 0; i < len; i++) {
		h ^= id[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

/* Wipes the key and frees everything. */
static void entry_free(entry *e)
{
	if (!e)
		return;
	kms_data_key_free(&e->dk);
	kms_plaintext_free(&e->pt);
	free(e->id);
	free(e);
}

/* Drops one reference; an entry nobody holds goes onto *dead, freed by the
 * caller once the lock is released. */
static void entry_put(entry *e, entry **dead)
{
	if (--e->refs == 0) {
		e->chain = *dead;
		*dead = e;
	}
}

static void dead_free(entry *dead)
{
	while (dead) {
		entry *next = dead->chain;
		entry_free(dead);
		dead = next;
	}
}

static void lru_remove(entry *e)
{
	if (!e->newer)
		return;
	e->newer->older = e->older;
	e->older->newer = e->newer;
	e->newer = e->older = NULL;
}

/* The most recently used end is lru.older. */
static void lru_touch(table *t, entry *e)
{
	lru_remove(e);
	e->newer = &t->lru;
	e->older = t->lru.older;
	t->lru.older->newer = e;
	t->lru.older = e;
}

static void table_link(table *t, entry *e)
{
	entry **b = &t->buckets[e->hash & t->mask];
	e->chain = *b;
	*b = e;
	e->linked = true;
	e->refs++;
	t->count++;
}

/* Takes e out of its table (and the LRU list) and drops the table's
 * reference. */
static void table_unlink(table *t, entry *e, entry **dead)
{
	if (!e->linked)
		return;
	for (entry **p = &t->buckets[e->hash & t->mask]; *p; p = &(*p)->chain) {
		if (*p == e) {
			*p = e->chain;
			break;
		}
	}
	e->chain = NULL;
	e->linked = false;
	t->count--;
	lru_remove(e);
	entry_put(e, dead);
}

static bool same_id(const entry *e, const ask *a)
{
	return e->hash == a->hash && e->id_len == a->id_len &&
	       memcmp(e->id, a->id, a->id_len) == 0;
}

/* Whether the bounds leave room in e for one more message of bytes. */
static bool room_for(const kms_data_key_cache *c, const entry *e, uint64_t bytes)
{
	return e->messages < c->limits.max_messages && bytes <= c->limits.max_bytes - e->bytes;
}

static bool exhausted(const kms_data_key_cache *c, const entry *e)
{
	return e->messages >= c->limits.max_messages || e->bytes >= c->limits.max_bytes;
}

/* Evicts least recently used READY entries while t holds more than the
 * capacity. FETCHING ones are never evicted: their callers wait for them. */
static void table_evict(kms_data_key_cache *c, table *t, entry **dead)
{
	while (t->count > c->limits.capacity && t->lru.newer != &t->lru) {
		table_unlink(t, t->lru.newer, dead);
		c->stats.evicted++;
	}
}

static kms_status table_init(table *t, uint32_t capacity)
{
	size_t n = BUCKETS_MIN;
	while (n < capacity)
		n <<= 1; /* capacity <= KMS_DATA_KEY_CACHE_CAPACITY_MAX */
	t->buckets = calloc(n, sizeof *t->buckets);
	if (!t->buckets)
		return KMS_INTERNAL;
	t->mask = n - 1;
	t->lru.newer = t->lru.older = &t->lru;
	return KMS_OK;
}

/* Frees every entry: no call may be using the cache. */
static void table_free(table *t)
{
	if (!t->buckets)
		return;
	for (size_t i = 0; i <= t->mask; i++) {
		entry *e = t->buckets[i];
		while (e) {
			entry *next = e->chain;
			entry_free(e);
			e = next;
		}
	}
	free(t->buckets);
	memset(t, 0, sizeof *t);
}

/* ---- copies for the caller ---- */

static kms_status copy_secret(const uint8_t *src, size_t len, uint8_t **out, kms_error *err)
{
	*out = kms_secure_alloc(len);
	if (!*out)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                   "data key cache: out of secure memory");
	if (len)
		memcpy(*out, src, len);
	return KMS_OK;
}

static kms_status data_key_copy(const kms_data_key *src, kms_data_key *out, kms_error *err)
{
	kms_status st;
	memset(out, 0, sizeof *out);
	KMS_GUARD(copy_secret(src->plaintext, src->plaintext_len, &out->plaintext, err));
	out->plaintext_len = src->plaintext_len;
	out->blob = malloc(src->blob_len ? src->blob_len : 1);
	if (!out->blob) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "data key cache: out of memory");
		kms_data_key_free(out);
		return st;
	}
	memcpy(out->blob, src->blob, src->blob_len);
	out->blob_len = src->blob_len;
	memcpy(out->key_id, src->key_id, sizeof out->key_id);
	out->key_version = src->key_version;
	return KMS_OK;
}

static kms_status plaintext_copy(const kms_plaintext *src, kms_plaintext *out, kms_error *err)
{
	memset(out, 0, sizeof *out);
	KMS_GUARD(copy_secret(src->bytes, src->len, &out->bytes, err));
	out->len = src->len;
	memcpy(out->key_id, src->key_id, sizeof out->key_id);
	out->key_version = src->key_version;
	return KMS_OK;
}

/* e's key into the caller's struct. e is READY and held by the caller (a
 * reference), so it cannot change or go while the lock is released. */
static kms_status hand_out(const ask *a, const entry *e, void *out, kms_error *err)
{
	if (a->encrypt)
		return data_key_copy(&e->dk, out, err);
	return plaintext_copy(&e->pt, out, err);
}

/* The call the cache saves, into dk (encrypt) or pt (decrypt); err gets
 * the plain call's error. */
static kms_status fetch(kms_data_key_cache *c, const ask *a, kms_data_key *dk,
                        kms_plaintext *pt, kms_error *err)
{
	if (a->encrypt)
		return kms_generate_data_key(c->client, a->key_id, a->context, a->n_context, dk,
		                             err);
	return kms_decrypt(c->client, a->blob, a->blob_len, a->context, a->n_context,
	                   a->key_id, pt, err);
}

static void count_call(kms_data_key_cache *c, const ask *a)
{
	if (a->encrypt)
		c->stats.generate_calls++;
	else
		c->stats.decrypt_calls++;
}

/* A message the cache does not keep a key for (over max_bytes, or an id too
 * large to be valid): the plain call straight into out. */
static kms_status bypass(kms_data_key_cache *c, const ask *a, void *out, kms_error *err)
{
	nng_mtx_lock(c->mtx);
	c->stats.misses++;
	count_call(c, a);
	nng_mtx_unlock(c->mtx);
	return fetch(c, a, a->encrypt ? out : NULL, a->encrypt ? NULL : out, err);
}

/* ---- the shared path ---- */

/* Waits for the fetch of e (held, room reserved) and serves from it. Called
 * and returns with the lock held. */
static kms_status wait_for(kms_data_key_cache *c, entry *e, const ask *a, void *out,
                           kms_error *err, entry **dead)
{
	c->stats.coalesced++;
	/* Bounded: the fetcher's call ends within its client's timeout, and
	 * the fetcher always publishes the outcome. */
	while (e->state == ENTRY_FETCHING)
		nng_cv_wait(c->cv);
	kms_status st;
	if (e->state == ENTRY_FAILED) {
		if (err)
			*err = e->error;
		st = e->error.status;
	} else {
		nng_mtx_unlock(c->mtx);
		st = hand_out(a, e, out, err);
		nng_mtx_lock(c->mtx);
	}
	entry_put(e, dead);
	return st;
}

/* Makes a's key as the fetcher of a new entry: links it FETCHING, calls
 * kmsd without the lock, publishes the outcome to whoever waits. Called and
 * returns with the lock held; a->id moves into the entry. */
static kms_status fetch_into_new(kms_data_key_cache *c, table *t, ask *a, void *out,
                                 kms_error *err, entry **dead)
{
	entry *e = calloc(1, sizeof *e);
	if (!e)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                   "data key cache: out of memory");
	e->hash = a->hash;
	e->id = a->id;
	e->id_len = a->id_len;
	a->id = NULL;
	e->state = ENTRY_FETCHING;
	e->refs = 1; /* the fetcher's */
	e->messages = 1;
	e->bytes = a->message_bytes;
	table_link(t, e);
	table_evict(c, t, dead);
	c->stats.misses++;
	count_call(c, a);

	nng_mtx_unlock(c->mtx);
	kms_error got;
	client_error_clear(&got);
	uint64_t born = now_ns(); /* before: the age is never understated */
	kms_status st = fetch(c, a, &e->dk, &e->pt, &got);
	nng_mtx_lock(c->mtx);

	if (st != KMS_OK) {
		/* Nothing cached: the next request tries again. */
		e->error = got;
		e->state = ENTRY_FAILED;
		table_unlink(t, e, dead);
		nng_cv_wake(c->cv);
		entry_put(e, dead);
		if (err)
			*err = got;
		return st;
	}
	e->born_ns = born;
	e->state = ENTRY_READY;
	if (e->linked) {
		if (exhausted(c, e)) {
			table_unlink(t, e, dead);
			c->stats.retired++;
		} else {
			lru_touch(t, e);
		}
	}
	nng_cv_wake(c->cv);
	if (!e->linked && e->refs == 1) {
		/* Nobody else will read it (max_messages 1, say): the caller
		 * takes the answer itself, not a copy. */
		if (a->encrypt) {
			*(kms_data_key *)out = e->dk;
			memset(&e->dk, 0, sizeof e->dk);
		} else {
			*(kms_plaintext *)out = e->pt;
			memset(&e->pt, 0, sizeof e->pt);
		}
		entry_put(e, dead);
		return KMS_OK;
	}
	nng_mtx_unlock(c->mtx);
	st = hand_out(a, e, out, err);
	nng_mtx_lock(c->mtx);
	entry_put(e, dead);
	return st;
}

static kms_status serve(kms_data_key_cache *c, ask *a, void *out, kms_error *err)
{
	if (a->message_bytes > c->limits.max_bytes)
		return bypass(c, a, out, err);
	table *t = a->encrypt ? &c->enc : &c->dec;
	a->hash = id_hash(c->seed, a->id, a->id_len);
	entry *dead = NULL;
	kms_status st;

	nng_mtx_lock(c->mtx);
	uint64_t now = now_ns();
	entry *wait_on = NULL;
	entry *e = t->buckets[a->hash & t->mask];
	while (e) {
		entry *next = e->chain;
		if (!same_id(e, a)) {
			e = next;
			continue;
		}
		if (e->state == ENTRY_READY) {
			/* A clock that failed or went back (neither can) reads as
			 * too old. */
			bool young = now != UINT64_MAX && now >= e->born_ns &&
			             now - e->born_ns < c->max_age_ns;
			if (young && room_for(c, e, a->message_bytes)) {
				e->messages++;
				e->bytes += a->message_bytes;
				c->stats.hits++;
				e->refs++;
				if (exhausted(c, e)) {
					table_unlink(t, e, &dead);
					c->stats.retired++;
				} else {
					lru_touch(t, e);
				}
				nng_mtx_unlock(c->mtx);
				st = hand_out(a, e, out, err);
				nng_mtx_lock(c->mtx);
				entry_put(e, &dead);
				goto out;
			}
			/* Too old, or this message does not fit what is left. */
			table_unlink(t, e, &dead);
			c->stats.retired++;
		} else if (!wait_on && room_for(c, e, a->message_bytes)) {
			wait_on = e; /* FETCHING, and its key can serve this message too */
		}
		e = next;
	}
	if (wait_on) {
		wait_on->messages++;
		wait_on->bytes += a->message_bytes;
		wait_on->refs++;
		st = wait_for(c, wait_on, a, out, err, &dead);
	} else {
		st = fetch_into_new(c, t, a, out, err, &dead);
	}
out:
	nng_mtx_unlock(c->mtx);
	dead_free(dead);
	return st;
}

/* ---- arguments and ids ---- */

/* The context's canonical encoding appended at id[at..]: *id is grown
 * (plain memory: the context is not secret). */
static kms_status context_append(const kms_context_pair *context, size_t n, const char *op,
                                 uint8_t **id, size_t *id_len, kms_error *err)
{
	if (n && !context)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s: encryption context: %zu pairs but no array", op, n);
	if (context_check_count(n) != KMS_OK)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL, "%s: %s", op,
		                   kms_error_message());
	context_pair pairs[KMS_CONTEXT_MAX_PAIRS];
	for (size_t i = 0; i < n; i++) {
		/* As the plain calls refuse them: a NULL value is not "". */
		if (!context[i].key || !context[i].value)
			return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
			                   "%s: encryption context: pair %zu has no key or no value",
			                   op, i);
		pairs[i] = context_pair_from_cstr(context[i].key, context[i].value);
	}
	size_t size;
	if (context_encoded_size(pairs, n, &size) != KMS_OK)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL, "%s: %s", op,
		                   kms_error_message());
	uint8_t *grown = realloc(*id, *id_len + size);
	if (!grown)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "%s: out of memory", op);
	*id = grown;
	size_t wrote;
	if (context_encode(pairs, n, grown + *id_len, size, &wrote) != KMS_OK)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "%s: %s", op,
		                   kms_error_message());
	*id_len += wrote;
	return KMS_OK;
}

static void put_u32(uint8_t *p, size_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* u32 BE length and the bytes, at id[at..]; the caller sized id. */
static size_t put_field(uint8_t *id, size_t at, const void *bytes, size_t len)
{
	put_u32(id + at, len);
	if (len)
		memcpy(id + at + 4, bytes, len);
	return at + 4 + len;
}

static kms_status cache_need(const kms_data_key_cache *cache, const char *op, kms_error *err)
{
	if (!cache)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s: cache is required", op);
	return KMS_OK;
}

/* ---- the API ---- */

static kms_status limits_check(const kms_data_key_cache_limits *l, kms_error *err)
{
	if (l->max_age_ms < 1 || l->max_age_ms > KMS_DATA_KEY_CACHE_MAX_AGE_MS_MAX)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "data key cache: max_age_ms is %u; give 1..%u (one day)",
		                   l->max_age_ms, KMS_DATA_KEY_CACHE_MAX_AGE_MS_MAX);
	if (l->max_messages < 1)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "data key cache: max_messages is 0; give at least 1");
	if (l->max_bytes < 1)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "data key cache: max_bytes is 0; give at least 1");
	if (l->capacity > KMS_DATA_KEY_CACHE_CAPACITY_MAX)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "data key cache: capacity is %u; give at most %d (0: %d)",
		                   l->capacity, KMS_DATA_KEY_CACHE_CAPACITY_MAX,
		                   KMS_DATA_KEY_CACHE_CAPACITY_DEFAULT);
	return KMS_OK;
}

kms_client *client_data_key_cache_client(const kms_data_key_cache *cache)
{
	return cache ? cache->client : NULL;
}

kms_status kms_data_key_cache_new(kms_client *client, const kms_data_key_cache_limits *limits,
                                  kms_data_key_cache **out, kms_error *err)
{
	client_error_clear(err);
	if (!out)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "kms_data_key_cache_new: out is required");
	*out = NULL;
	if (!client || !limits)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "kms_data_key_cache_new: a client and limits are required");
	KMS_GUARD(limits_check(limits, err));

	kms_data_key_cache *c = calloc(1, sizeof *c);
	if (!c)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                   "data key cache: out of memory");
	c->client = client;
	c->limits = *limits;
	if (c->limits.capacity == 0)
		c->limits.capacity = KMS_DATA_KEY_CACHE_CAPACITY_DEFAULT;
	c->max_age_ns = (uint64_t)c->limits.max_age_ms * NS_PER_MS;
	if (RAND_bytes((unsigned char *)&c->seed, sizeof c->seed) != 1) {
		free(c);
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                   "data key cache: no random bytes for its hash seed");
	}
	if (table_init(&c->enc, c->limits.capacity) != KMS_OK ||
	    table_init(&c->dec, c->limits.capacity) != KMS_OK || nng_mtx_alloc(&c->mtx) != 0) {
		table_free(&c->enc);
		table_free(&c->dec);
		free(c);
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                   "data key cache: out of memory");
	}
	if (nng_cv_alloc(&c->cv, c->mtx) != 0) {
		nng_mtx_free(c->mtx);
		table_free(&c->enc);
		table_free(&c->dec);
		free(c);
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                   "data key cache: out of memory");
	}
	*out = c;
	return KMS_OK;
}

void kms_data_key_cache_free(kms_data_key_cache *cache)
{
	if (!cache)
		return;
	table_free(&cache->enc);
	table_free(&cache->dec);
	nng_cv_free(cache->cv);
	nng_mtx_free(cache->mtx);
	free(cache);
}

void kms_data_key_cache_stats_get(kms_data_key_cache *cache, kms_data_key_cache_stats *out)
{
	if (!out)
		return;
	memset(out, 0, sizeof *out);
	if (!cache)
		return;
	nng_mtx_lock(cache->mtx);
	*out = cache->stats;
	nng_mtx_unlock(cache->mtx);
}

kms_status kms_data_key_cache_encrypt_key(kms_data_key_cache *cache, const char *key_id,
                                          const kms_context_pair *context, size_t n_context,
                                          uint64_t message_bytes, kms_data_key *out,
                                          kms_error *err)
{
	static const char op[] = "data_key_cache_encrypt_key";
	KMS_GUARD(client_begin(out, sizeof *out, op, err));
	KMS_GUARD(cache_need(cache, op, err));
	KMS_GUARD(client_need(key_id, op, "a key id", err));
	ask a = { .encrypt = true, .key_id = key_id, .context = context,
	          .n_context = n_context, .message_bytes = message_bytes };
	size_t ref_len = strnlen(key_id, KEY_REF_CACHED_MAX + 1);
	if (ref_len > KEY_REF_CACHED_MAX)
		return bypass(cache, &a, out, err);
	a.id = malloc(4 + ref_len);
	if (!a.id)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "%s: out of memory", op);
	a.id_len = put_field(a.id, 0, key_id, ref_len);
	kms_status st = context_append(context, n_context, op, &a.id, &a.id_len, err);
	if (st == KMS_OK)
		st = serve(cache, &a, out, err);
	free(a.id); /* NULL when an entry took it */
	return st;
}

kms_status kms_data_key_cache_decrypt_key(kms_data_key_cache *cache, const uint8_t *blob,
                                          size_t blob_len, const kms_context_pair *context,
                                          size_t n_context, const char *key_id,
                                          uint64_t message_bytes, kms_plaintext *out,
                                          kms_error *err)
{
	static const char op[] = "data_key_cache_decrypt_key";
	KMS_GUARD(client_begin(out, sizeof *out, op, err));
	KMS_GUARD(cache_need(cache, op, err));
	if (!blob || blob_len == 0)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s: a ciphertext blob is required", op);
	/* kms_decrypt sends an empty key_id as none: so is it here. */
	bool required = key_id && key_id[0];
	ask a = { .encrypt = false, .key_id = required ? key_id : NULL, .blob = blob,
	          .blob_len = blob_len, .context = context, .n_context = n_context,
	          .message_bytes = message_bytes };
	size_t ref_len = required ? strnlen(key_id, KEY_REF_CACHED_MAX + 1) : 0;
	if (blob_len > BLOB_CACHED_MAX || ref_len > KEY_REF_CACHED_MAX)
		return bypass(cache, &a, out, err);
	a.id = malloc(4 + blob_len + 1 + (required ? 4 + ref_len : 0));
	if (!a.id)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "%s: out of memory", op);
	size_t at = put_field(a.id, 0, blob, blob_len);
	a.id[at++] = required ? 1 : 0;
	if (required)
		at = put_field(a.id, at, key_id, ref_len);
	a.id_len = at;
	kms_status st = context_append(context, n_context, op, &a.id, &a.id_len, err);
	if (st == KMS_OK)
		st = serve(cache, &a, out, err);
	free(a.id);
	return st;
}
