/*
 * p11_keycache.c: the unwrapped-key cache (hsm.h says what it promises).
 *
 * An entry is LOADING (in the table, its first user running the loader and
 * C_UnwrapKey, later users waiting on `loaded`), READY (in the table and
 * the LRU list: a live cached object), FAILED (out of the table, kept only
 * until its waiters have read the failure) or GONE (out of the table and
 * the LRU, its object destroyed when the last pin goes).
 *
 * Locks: `lock` guards the table, the LRU, pins, counters and the
 * generation, and is never held across an HSM call. `session_lock`
 * serializes the calls on the cache's own session (unwraps, destroys,
 * reopening it) and is taken before `lock`, never after it. The
 * generation counts the cache session's incarnations: it changes only with
 * both locks held, so it is stable under either; an object is destroyed
 * only when its entry's generation is the current one (an older
 * generation's objects died with their session).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kms/secmem.h>

#include "common/log.h"
#include "hsm/p11_internal.h"

/* How long a use waits for another's load before giving up. The loader
 * and one unwrap normally take milliseconds; this bounds a hung store. */
#define LOAD_WAIT_SECONDS 30

typedef enum entry_state { ENTRY_LOADING, ENTRY_READY, ENTRY_FAILED, ENTRY_GONE } entry_state;

struct hsm_keycache_entry {
	struct hsm_keycache_entry *hnext;      /* hash chain (in the table) */
	struct hsm_keycache_entry *prev, *next; /* LRU, most recent first (READY) */
	uint64_t hash;
	uint64_t generation; /* of the session its object lives in */
	hsm_object_id name;
	CK_OBJECT_HANDLE handle;
	hsm_key_type type;
	entry_state state;
	bool in_table;
	unsigned pins;
	unsigned waiters;
	kms_status failure; /* FAILED: what the waiters return */
	char *failure_msg;  /* FAILED: its message (malloc'ed; NULL if out of memory) */
};

/* hsm.h promises about 160 bytes of our memory per entry. */
_Static_assert(sizeof(struct hsm_keycache_entry) <= 176, "a key cache entry grew: update hsm.h");

typedef struct hsm_keycache {
	pthread_mutex_t lock;
	pthread_cond_t loaded;
	pthread_mutex_t session_lock;
	CK_SESSION_HANDLE session; /* under session_lock */
	bool session_open;
	uint64_t generation;
	hsm_keycache_entry **buckets;
	size_t bucket_count; /* a power of two */
	hsm_keycache_entry *lru_head, *lru_tail;
	size_t live;
	size_t capacity;
	hsm_keycache_stats counters; /* entries and capacity filled on read */
} hsm_keycache;

/* A list of entries to destroy once the lock is let go (linked by hnext). */
typedef struct victim_list {
	hsm_keycache_entry *head;
} victim_list;

static uint64_t name_hash(const hsm_object_id *name)
{
	uint64_t hash = 0xcbf29ce484222325ULL; /* FNV-1a */
	for (size_t i = 0; i < name->len; i++)
		hash = (hash ^ name->bytes[i]) * 0x100000001b3ULL;
	return hash;
}

static size_t buckets_for(size_t capacity)
{
	size_t count = 64;
	while (count < capacity && count < ((size_t)1 << 30))
		count *= 2;
	return count;
}

/* --- the table and the LRU (under lock) --- */

static hsm_keycache_entry *table_find(hsm_keycache *c, const hsm_object_id *name, uint64_t hash)
{
	for (hsm_keycache_entry *e = c->buckets[hash & (c->bucket_count - 1)]; e; e = e->hnext)
		if (e->hash == hash && e->name.len == name->len &&
		    memcmp(e->name.bytes, name->bytes, name->len) == 0)
			return e;
	return NULL;
}

static void table_insert(hsm_keycache *c, hsm_keycache_entry *e)
{
	hsm_keycache_entry **head = &c->buckets[e->hash & (c->bucket_count - 1)];
	e->hnext = *head;
	*head = e;
	e->in_table = true;
}

static void table_remove(hsm_keycache *c, hsm_keycache_entry *e)
{
	hsm_keycache_entry **link = &c->buckets[e->hash & (c->bucket_count - 1)];
	while (*link && *link != e)
		link = &(*link)->hnext;
	if (*link)
		*link = e->hnext;
	e->hnext = NULL;
	e->in_table = false;
}

static void lru_unlink(hsm_keycache *c, hsm_keycache_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->lru_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push(hsm_keycache *c, hsm_keycache_entry *e)
{
	e->prev = NULL;
	e->next = c->lru_head;
	if (c->lru_head)
		c->lru_head->prev = e;
	c->lru_head = e;
	if (!c->lru_tail)
		c->lru_tail = e;
}

static void lru_touch(hsm_keycache *c, hsm_keycache_entry *e)
{
	if (c->lru_head == e)
		return;
	lru_unlink(c, e);
	lru_push(c, e);
}

/*
 * Takes a READY entry out of the cache: unpinned, it goes on the victim
 * list (destroyed after the lock); pinned, it becomes GONE and its last
 * user destroys it.
 */
static void retire(hsm_keycache *c, hsm_keycache_entry *e, victim_list *victims)
{
	table_remove(c, e);
	lru_unlink(c, e);
	c->live--;
	if (e->pins == 0) {
		e->hnext = victims->head;
		victims->head = e;
	} else {
		e->state = ENTRY_GONE;
	}
}

/* Evicts least recently used entries until at most capacity are live. */
static void shrink(hsm_keycache *c, victim_list *victims)
{
	while (c->live > c->capacity && c->lru_tail) {
		retire(c, c->lru_tail, victims);
		c->counters.evictions++;
	}
}

/* --- the cache's session (under session_lock) --- */

static void destroy_object(hsm *h, const hsm_keycache_entry *e)
{
	hsm_keycache *c = h->keycache;
	pthread_mutex_lock(&c->session_lock);
	pthread_mutex_lock(&c->lock);
	bool live_session = c->session_open && e->generation == c->generation;
	pthread_mutex_unlock(&c->lock);
	/* An older generation's object died with its session; its handle may
	 * not be used again. */
	if (live_session && e->handle != CK_INVALID_HANDLE)
		(void)h->p11->C_DestroyObject(c->session, e->handle);
	pthread_mutex_unlock(&c->session_lock);
}

static void destroy_victims(hsm *h, victim_list *victims)
{
	while (victims->head) {
		hsm_keycache_entry *e = victims->head;
		victims->head = e->hnext;
		destroy_object(h, e);
		free(e);
	}
}

/*
 * The session behind generation `seen` is lost: drop every entry (their
 * handles are stale; pinned ones are destroyed by nobody, just freed by
 * their last user), forget the session and start a new generation. A
 * second caller that saw the same generation finds the work done. keep: a
 * LOADING entry whose unwrap has not happened yet (it stays in the table).
 * Called with session_lock held.
 */
static void reset_locked(hsm *h, uint64_t seen, const hsm_keycache_entry *keep)
{
	hsm_keycache *c = h->keycache;
	victim_list dead = { NULL };

	pthread_mutex_lock(&c->lock);
	if (c->generation != seen) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	c->generation++;
	c->counters.reloads_after_loss++;
	for (size_t b = 0; b < c->bucket_count; b++) {
		hsm_keycache_entry **link = &c->buckets[b];
		while (*link) {
			hsm_keycache_entry *e = *link;
			if (e == keep) {
				link = &e->hnext;
			} else if (e->state == ENTRY_READY) {
				retire(c, e, &dead);
			} else {
				/* LOADING: its load completes as GONE, for its waiters only. */
				table_remove(c, e);
			}
		}
	}
	pthread_mutex_unlock(&c->lock);
	/* Usually dead already; if the handles were lost some other way, this
	 * ends the session and whatever objects it still held. */
	if (c->session_open)
		(void)h->p11->C_CloseSession(c->session);
	c->session_open = false;
	c->session = CK_INVALID_HANDLE;
	while (dead.head) {
		hsm_keycache_entry *e = dead.head;
		dead.head = e->hnext;
		free(e);
	}
}

static void reset(hsm *h, uint64_t seen)
{
	pthread_mutex_lock(&h->keycache->session_lock);
	reset_locked(h, seen, NULL);
	pthread_mutex_unlock(&h->keycache->session_lock);
}

typedef struct unwrap_job {
	const hsm_object_id *kek;
	hsm_key_type type;
	const uint8_t *wrapped;
	size_t len;
	const char *call; /* the call rv came from */
} unwrap_job;

/* One try on the cache session; *rv is the failed call's rv. */
static kms_status unwrap_try(hsm *h, hsm_keycache_entry *e, unwrap_job *j, CK_RV *rv)
{
	hsm_keycache *c = h->keycache;
	if (!c->session_open) {
		KMS_GUARD(hsm_session_open(h, &c->session));
		c->session_open = true;
	}
	pthread_mutex_lock(&c->lock);
	uint64_t generation = c->generation;
	pthread_mutex_unlock(&c->lock);

	CK_OBJECT_HANDLE kek = CK_INVALID_HANDLE, obj = CK_INVALID_HANDLE;
	j->call = "C_FindObjects";
	*rv = hsm_key_handle(h, c->session, j->kek, HSM_KEY_KEK, &kek);
	if (*rv == CKR_OK && kek == CK_INVALID_HANDLE)
		return hsm_no_kek(h, j->kek);
	if (*rv != CKR_OK)
		return KMS_OK;

	hsm_unwrap_values vals;
	CK_ATTRIBUTE tmpl[HSM_UNWRAP_ATTRS];
	CK_ULONG tmpl_len;
	KMS_GUARD(hsm_unwrap_template(j->type, false, true, &vals, tmpl, &tmpl_len));
	CK_MECHANISM mech = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	j->call = "C_UnwrapKey";
	*rv = h->p11->C_UnwrapKey(c->session, &mech, kek, hsm_unconst(j->wrapped), j->len, tmpl,
	                          tmpl_len, &obj);
	if (*rv != CKR_OK)
		return KMS_OK;
	e->handle = obj;
	e->type = j->type;
	e->generation = generation;
	return KMS_OK;
}

/* Repairs what rv broke on the cache session; false when nothing would help. */
static bool unwrap_repair(hsm *h, const hsm_keycache_entry *e, const unwrap_job *j, CK_RV rv)
{
	hsm_keycache *c = h->keycache;
	if (hsm_rv_session_lost(rv)) {
		pthread_mutex_lock(&c->lock);
		uint64_t generation = c->generation;
		pthread_mutex_unlock(&c->lock);
		reset_locked(h, generation, e);
		return true;
	}
	if (rv == CKR_USER_NOT_LOGGED_IN) {
		hsm_cache_clear(&h->cache);
		return hsm_login(h, c->session) == KMS_OK;
	}
	if (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID ||
	    rv == CKR_UNWRAPPING_KEY_HANDLE_INVALID) {
		hsm_cache_drop(&h->cache, j->kek);
		return true;
	}
	return false;
}

/* C_UnwrapKey of j into e's object on the cache session; one repair and retry. */
static kms_status unwrap_into(hsm *h, hsm_keycache_entry *e, unwrap_job *j)
{
	hsm_keycache *c = h->keycache;
	kms_status st = KMS_OK;
	CK_RV rv = CKR_OK;

	pthread_mutex_lock(&c->session_lock);
	for (int attempt = 0; attempt < 2; attempt++) {
		uint64_t started = kms_monotonic_us();
		st = unwrap_try(h, e, j, &rv);
		hsm_note_attempt(h, started, st == KMS_OK ? rv : CKR_OK);
		if (st != KMS_OK || rv == CKR_OK || attempt == 1 || !unwrap_repair(h, e, j, rv))
			break;
	}
	pthread_mutex_unlock(&c->session_lock);
	if (st != KMS_OK || rv == CKR_OK)
		return st;
	char what[2 * HSM_ID_MAX + 48];
	snprintf(what, sizeof what, "of key version %s (%s)", hsm_id_to_text(&e->name).s,
	         hsm_key_type_name(j->type));
	if (strcmp(j->call, "C_UnwrapKey") == 0)
		return hsm_unwrap_failure(h, what, j->kek, rv);
	return KMS_FAIL(hsm_status_of(rv), "hsm: %s KEK %s for key version %s -> %s", j->call,
	                hsm_id_to_text(j->kek).s, hsm_id_to_text(&e->name).s, hsm_rv_name(rv));
}

static kms_status loaded_check(const hsm_keycache_entry *e, const hsm_object_id *kek,
                               hsm_key_type type, size_t len)
{
	const char *name = hsm_id_to_text(&e->name).s;
	KMS_ENSURE(kek->len >= 1 && kek->len <= HSM_ID_MAX, KMS_INTERNAL,
	           "hsm: the loader gave key version %s a KEK id of %zu bytes (1..%d)", name,
	           kek->len, HSM_ID_MAX);
	KMS_ENSURE(len >= 1 && len <= HSM_WRAPPED_MAX, KMS_INTERNAL,
	           "hsm: the loader gave key version %s %zu wrapped bytes (1..%d)", name, len,
	           HSM_WRAPPED_MAX);
	KMS_ENSURE(type == HSM_KEY_TYPE_AES256 || type == HSM_KEY_TYPE_HMAC_SHA256 ||
	                   type == HSM_KEY_TYPE_EC_P256,
	           KMS_INTERNAL, "hsm: the loader gave key version %s an unknown type %d", name,
	           (int)type);
	return KMS_OK;
}

/* The miss: the loader, then the unwrap. The wrapped bytes are wiped. */
static kms_status load(hsm *h, hsm_keycache_entry *e, hsm_wrapped_loader loader, void *ctx)
{
	uint8_t wrapped[HSM_WRAPPED_MAX];
	size_t len = 0;
	hsm_object_id kek = { .len = 0 };
	hsm_key_type type = 0;

	kms_status st = loader(ctx, &e->name, &kek, &type, wrapped, sizeof wrapped, &len);
	if (st == KMS_OK)
		st = loaded_check(e, &kek, type, len);
	if (st == KMS_OK) {
		unwrap_job job = { &kek, type, wrapped, len, "" };
		st = unwrap_into(h, e, &job);
	}
	kms_wipe(wrapped, sizeof wrapped);
	return st;
}

/* --- acquire and release --- */

static void free_entry(hsm_keycache_entry *e)
{
	free(e->failure_msg);
	free(e);
}

/* A waiter's copy of a failed load (under lock). Frees the entry after
 * its last waiter. */
static kms_status take_failure(hsm_keycache_entry *e)
{
	kms_status st = e->failure;
	const char *msg = e->failure_msg ? e->failure_msg : "hsm: loading a key version failed";
	st = KMS_FAIL(st, "%s", msg);
	if (--e->waiters == 0)
		free_entry(e);
	return st;
}

/* Waits (bounded) while e is loading; under lock. */
static kms_status wait_loaded(hsm_keycache *c, hsm_keycache_entry *e)
{
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += LOAD_WAIT_SECONDS;
	while (e->state == ENTRY_LOADING) {
		int rc = pthread_cond_timedwait(&c->loaded, &c->lock, &deadline);
		if (rc == ETIMEDOUT && e->state == ENTRY_LOADING) {
			e->waiters--;
			return KMS_FAIL(KMS_UNAVAILABLE, "hsm: waited %d s for key version %s to be "
			                "loaded by another request; try again", LOAD_WAIT_SECONDS,
			                hsm_id_to_text(&e->name).s);
		}
	}
	if (e->state == ENTRY_FAILED)
		return take_failure(e);
	/* The publisher pinned this waiter. */
	e->waiters--;
	return KMS_OK;
}

/* Ends a load (under lock): publishes e or records its failure, wakes the waiters. */
static void publish(hsm_keycache *c, hsm_keycache_entry *e, kms_status st, victim_list *victims)
{
	if (st != KMS_OK) {
		const char *msg = kms_error_message();
		e->failure = st;
		e->failure_msg = msg ? strdup(msg) : NULL;
		e->state = ENTRY_FAILED;
		e->pins = 0;
		if (e->in_table)
			table_remove(c, e);
		pthread_cond_broadcast(&c->loaded);
		if (e->waiters == 0)
			free_entry(e);
		return;
	}
	c->counters.unwraps++;
	e->pins += e->waiters;
	if (e->in_table && e->generation == c->generation) {
		e->state = ENTRY_READY;
		lru_push(c, e);
		c->live++;
		shrink(c, victims);
	} else {
		/* Evicted, or its session lost, while loading: for the uses already waiting only. */
		if (e->in_table)
			table_remove(c, e);
		e->state = ENTRY_GONE;
	}
	pthread_cond_broadcast(&c->loaded);
}

static kms_status acquire_miss(hsm *h, const hsm_object_id *name, uint64_t hash,
                               hsm_wrapped_loader loader, void *ctx, hsm_keycache_entry **out)
{
	hsm_keycache *c = h->keycache;
	hsm_keycache_entry *e = calloc(1, sizeof *e);
	if (!e) {
		pthread_mutex_unlock(&c->lock);
		return KMS_FAIL(KMS_INTERNAL, "hsm: out of memory for a key cache entry");
	}
	e->hash = hash;
	e->name = *name;
	e->state = ENTRY_LOADING;
	e->pins = 1;
	e->handle = CK_INVALID_HANDLE;
	table_insert(c, e);
	c->counters.misses++;
	pthread_mutex_unlock(&c->lock);

	kms_status st = load(h, e, loader, ctx);

	victim_list victims = { NULL };
	pthread_mutex_lock(&c->lock);
	publish(c, e, st, &victims);
	pthread_mutex_unlock(&c->lock);
	destroy_victims(h, &victims);
	if (st != KMS_OK)
		return st;
	*out = e;
	return KMS_OK;
}

kms_status hsm_keycache_acquire(hsm *h, const hsm_object_id *name, hsm_wrapped_loader loader,
                                void *loader_ctx, hsm_keycache_entry **out)
{
	KMS_ENSURE(h != NULL && loader != NULL && out != NULL, KMS_INVALID_ARGUMENT,
	           "hsm: key cache use without an hsm, a loader or an output");
	KMS_GUARD(hsm_id_check(name));
	hsm_keycache *c = h->keycache;
	uint64_t hash = name_hash(name);

	pthread_mutex_lock(&c->lock);
	hsm_keycache_entry *e = table_find(c, name, hash);
	if (!e)
		return acquire_miss(h, name, hash, loader, loader_ctx, out); /* unlocks */
	if (e->state == ENTRY_READY) {
		e->pins++;
		lru_touch(c, e);
		c->counters.hits++;
		pthread_mutex_unlock(&c->lock);
		*out = e;
		return KMS_OK;
	}
	c->counters.coalesced++;
	e->waiters++;
	kms_status st = wait_loaded(c, e);
	pthread_mutex_unlock(&c->lock);
	if (st == KMS_OK)
		*out = e;
	return st;
}

void hsm_keycache_release(hsm *h, hsm_keycache_entry *e)
{
	hsm_keycache *c = h->keycache;
	pthread_mutex_lock(&c->lock);
	bool last = --e->pins == 0 && e->state == ENTRY_GONE;
	pthread_mutex_unlock(&c->lock);
	if (last) {
		destroy_object(h, e);
		free_entry(e);
	}
}

CK_OBJECT_HANDLE hsm_keycache_entry_handle(const hsm_keycache_entry *e)
{
	return e->handle;
}

hsm_key_type hsm_keycache_entry_type(const hsm_keycache_entry *e)
{
	return e->type;
}

CK_SESSION_HANDLE hsm_keycache_session(hsm *h)
{
	hsm_keycache *c = h->keycache;
	pthread_mutex_lock(&c->session_lock);
	CK_SESSION_HANDLE s = c->session_open ? c->session : CK_INVALID_HANDLE;
	pthread_mutex_unlock(&c->session_lock);
	return s;
}

/* --- the operations --- */

/* One use of a pinned entry; *rv: the last call's rv, for the loss check. */
typedef kms_status (*cached_op_fn)(hsm *h, const hsm_keycache_entry *e, void *ctx, CK_RV *rv);

static bool rv_stale(CK_RV rv)
{
	return rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID ||
	       hsm_rv_session_lost(rv);
}

/*
 * Pins name's entry, runs op, unpins. When op met a stale handle (the
 * cache's session is gone), drops the cache and runs once more: the entry
 * is then loaded again into a new session.
 */
static kms_status run_cached(hsm *h, const hsm_object_id *name, hsm_wrapped_loader loader,
                             void *loader_ctx, hsm_key_type want, cached_op_fn op, void *op_ctx)
{
	for (int attempt = 0;; attempt++) {
		hsm_keycache_entry *e;
		KMS_GUARD(hsm_keycache_acquire(h, name, loader, loader_ctx, &e));
		if (e->type != want) {
			hsm_key_type got = e->type;
			hsm_keycache_release(h, e);
			return KMS_FAIL(KMS_FAILED_PRECONDITION, "hsm: key version %s is %s, not %s",
			                hsm_id_to_text(name).s, hsm_key_type_name(got),
			                hsm_key_type_name(want));
		}
		CK_RV rv = CKR_OK;
		kms_status st = op(h, e, op_ctx, &rv);
		uint64_t generation = e->generation;
		hsm_keycache_release(h, e);
		if (st == KMS_OK || attempt > 0 || !rv_stale(rv))
			return st;
		reset(h, generation);
	}
}

typedef struct gcm_use {
	bool decrypt;
	const hsm_object_id *name;
	const uint8_t *iv, *aad, *in;
	size_t aad_len, in_len;
	uint8_t *out;
	size_t out_cap;
} gcm_use;

static kms_status gcm_op(hsm *h, const hsm_keycache_entry *e, void *ctx, CK_RV *rv)
{
	const gcm_use *u = ctx;
	return hsm_gcm_with_handle(h, u->decrypt, u->name, e->handle, u->iv, u->aad, u->aad_len,
	                           u->in, u->in_len, u->out, u->out_cap, rv);
}

kms_status hsm_wrapped_gcm_encrypt(hsm *h, const hsm_object_id *name, hsm_wrapped_loader loader,
                                   void *loader_ctx, const uint8_t iv[HSM_GCM_IV_LEN],
                                   const uint8_t *aad, size_t aad_len,
                                   const uint8_t *plaintext, size_t plaintext_len,
                                   uint8_t *out, size_t out_cap)
{
	gcm_use u = { false, name, iv, aad, plaintext, aad_len, plaintext_len, out, out_cap };
	kms_status st = run_cached(h, name, loader, loader_ctx, HSM_KEY_TYPE_AES256, gcm_op, &u);
	if (st != KMS_OK && out)
		kms_wipe(out, out_cap);
	return st;
}

kms_status hsm_wrapped_gcm_decrypt(hsm *h, const hsm_object_id *name, hsm_wrapped_loader loader,
                                   void *loader_ctx, const uint8_t iv[HSM_GCM_IV_LEN],
                                   const uint8_t *aad, size_t aad_len, const uint8_t *sealed,
                                   size_t sealed_len, uint8_t *out, size_t out_cap)
{
	gcm_use u = { true, name, iv, aad, sealed, aad_len, sealed_len, out, out_cap };
	kms_status st = run_cached(h, name, loader, loader_ctx, HSM_KEY_TYPE_AES256, gcm_op, &u);
	if (st != KMS_OK && out)
		kms_wipe(out, out_cap);
	return st;
}

/* One single-part C_Sign with a cached key: HMAC-SHA256 of a message or
 * ECDSA of a digest. */
typedef struct sign_use {
	CK_MECHANISM_TYPE mechanism;
	const char *what; /* the operation, for messages */
	const hsm_keycache_entry *e;
	const uint8_t *in;
	size_t in_len;
	uint8_t *out;
	size_t out_len; /* exactly what C_Sign must write */
	const char *call;
} sign_use;

static kms_status sign_step(hsm *h, CK_SESSION_HANDLE s, void *ctx, CK_RV *rv)
{
	sign_use *u = ctx;
	static const uint8_t empty[1];
	CK_MECHANISM mech = { u->mechanism, NULL, 0 };
	CK_ULONG len = u->out_len;
	u->call = "C_SignInit";
	*rv = h->p11->C_SignInit(s, &mech, u->e->handle);
	if (*rv != CKR_OK)
		return KMS_OK;
	u->call = "C_Sign";
	*rv = h->p11->C_Sign(s, hsm_unconst(u->in_len ? u->in : empty), u->in_len, u->out, &len);
	/* Left active, the operation would fail every later call on the session. */
	if (*rv == CKR_BUFFER_TOO_SMALL)
		hsm_session_drop(h, true);
	else if (*rv == CKR_OK && len != u->out_len)
		return KMS_FAIL(KMS_INTERNAL, "hsm: C_Sign (%s) wrote %lu bytes, not %zu", u->what,
		                (unsigned long)len, u->out_len);
	return KMS_OK;
}

static kms_status sign_op(hsm *h, const hsm_keycache_entry *e, void *ctx, CK_RV *rv)
{
	sign_use *u = ctx;
	u->e = e;
	KMS_GUARD(hsm_run(h, NULL, sign_step, u, rv));
	if (*rv == CKR_OK)
		return KMS_OK;
	return KMS_FAIL(hsm_status_of(*rv), "hsm: %s (%s) key version %s on token \"%s\" -> %s",
	                u->call, u->what, hsm_id_to_text(&e->name).s, h->token_label,
	                hsm_rv_name(*rv));
}

kms_status hsm_wrapped_hmac_sha256(hsm *h, const hsm_object_id *name, hsm_wrapped_loader loader,
                                   void *loader_ctx, const uint8_t *msg, size_t msg_len,
                                   uint8_t mac[HSM_HMAC_SHA256_LEN])
{
	KMS_ENSURE(mac != NULL, KMS_INVALID_ARGUMENT, "hsm: HMAC without an output buffer");
	KMS_ENSURE(msg != NULL || msg_len == 0, KMS_INVALID_ARGUMENT,
	           "hsm: HMAC input is NULL but %zu bytes long", msg_len);
	sign_use u = { CKM_SHA256_HMAC, "HMAC-SHA256", NULL, msg, msg_len, mac,
		       HSM_HMAC_SHA256_LEN, "" };
	kms_status st = run_cached(h, name, loader, loader_ctx, HSM_KEY_TYPE_HMAC_SHA256, sign_op,
	                           &u);
	if (st != KMS_OK)
		kms_wipe(mac, HSM_HMAC_SHA256_LEN);
	return st;
}

kms_status hsm_wrapped_ecdsa_p256_sign(hsm *h, const hsm_object_id *name,
                                       hsm_wrapped_loader loader, void *loader_ctx,
                                       const uint8_t digest[HSM_SHA256_DIGEST_LEN],
                                       uint8_t sig[HSM_ECDSA_P256_SIG_LEN])
{
	KMS_ENSURE(sig != NULL, KMS_INVALID_ARGUMENT, "hsm: ECDSA without an output buffer");
	KMS_ENSURE(digest != NULL, KMS_INVALID_ARGUMENT, "hsm: ECDSA without a digest");
	sign_use u = { CKM_ECDSA, "ECDSA P-256", NULL, digest, HSM_SHA256_DIGEST_LEN, sig,
		       HSM_ECDSA_P256_SIG_LEN, "" };
	kms_status st = run_cached(h, name, loader, loader_ctx, HSM_KEY_TYPE_EC_P256, sign_op, &u);
	if (st != KMS_OK)
		memset(sig, 0, HSM_ECDSA_P256_SIG_LEN);
	return st;
}

/* --- management --- */

void hsm_keycache_evict(hsm *h, const hsm_object_id *name)
{
	if (!h || hsm_id_check(name) != KMS_OK)
		return;
	hsm_keycache *c = h->keycache;
	victim_list victims = { NULL };
	pthread_mutex_lock(&c->lock);
	hsm_keycache_entry *e = table_find(c, name, name_hash(name));
	if (e) {
		c->counters.evictions++;
		if (e->state == ENTRY_READY)
			retire(c, e, &victims);
		else
			table_remove(c, e); /* LOADING: published as GONE */
	}
	pthread_mutex_unlock(&c->lock);
	destroy_victims(h, &victims);
}

void hsm_keycache_stats_get(hsm *h, hsm_keycache_stats *out)
{
	hsm_keycache *c = h->keycache;
	pthread_mutex_lock(&c->lock);
	*out = c->counters;
	out->entries = c->live;
	out->capacity = c->capacity;
	pthread_mutex_unlock(&c->lock);
}

/* New buckets for capacity; the entries move over. Under lock. */
static kms_status rehash(hsm_keycache *c, size_t capacity)
{
	size_t count = buckets_for(capacity);
	if (count == c->bucket_count)
		return KMS_OK;
	hsm_keycache_entry **buckets = calloc(count, sizeof *buckets);
	KMS_ENSURE(buckets != NULL, KMS_INTERNAL, "hsm: out of memory for a key cache of %zu entries",
	           capacity);
	for (size_t b = 0; b < c->bucket_count; b++) {
		while (c->buckets[b]) {
			hsm_keycache_entry *e = c->buckets[b];
			c->buckets[b] = e->hnext;
			e->hnext = buckets[e->hash & (count - 1)];
			buckets[e->hash & (count - 1)] = e;
		}
	}
	free(c->buckets);
	c->buckets = buckets;
	c->bucket_count = count;
	return KMS_OK;
}

kms_status hsm_keycache_configure(hsm *h, size_t entries)
{
	KMS_ENSURE(h != NULL, KMS_INVALID_ARGUMENT, "hsm: no hsm");
	KMS_ENSURE(entries >= 1 && entries <= ((size_t)1 << 30), KMS_INVALID_ARGUMENT,
	           "hsm: key cache capacity %zu is out of range (1..%zu)", entries,
	           (size_t)1 << 30);
	hsm_keycache *c = h->keycache;
	victim_list victims = { NULL };
	pthread_mutex_lock(&c->lock);
	kms_status st = rehash(c, entries);
	if (st == KMS_OK) {
		c->capacity = entries;
		shrink(c, &victims);
	}
	pthread_mutex_unlock(&c->lock);
	destroy_victims(h, &victims);
	return st;
}

kms_status hsm_keycache_init(hsm *h)
{
	hsm_keycache *c = calloc(1, sizeof *c);
	KMS_ENSURE(c != NULL, KMS_INTERNAL, "hsm: out of memory for the key cache");
	c->capacity = HSM_KEYCACHE_DEFAULT_ENTRIES;
	c->bucket_count = buckets_for(c->capacity);
	c->buckets = calloc(c->bucket_count, sizeof *c->buckets);
	pthread_condattr_t attr;
	bool ok = c->buckets != NULL && pthread_condattr_init(&attr) == 0;
	if (ok) {
		ok = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
		     pthread_cond_init(&c->loaded, &attr) == 0;
		pthread_condattr_destroy(&attr);
	}
	if (!ok) {
		free(c->buckets);
		free(c);
		return KMS_FAIL(KMS_INTERNAL, "hsm: cannot set up the key cache");
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->session_lock, NULL);
	c->session = CK_INVALID_HANDLE;
	h->keycache = c;
	return KMS_OK;
}

void hsm_keycache_free(hsm *h)
{
	hsm_keycache *c = h->keycache;
	if (!c)
		return;
	/* No user is left (hsm_close's contract): destroy what is cached. */
	for (size_t b = 0; b < c->bucket_count; b++) {
		while (c->buckets[b]) {
			hsm_keycache_entry *e = c->buckets[b];
			c->buckets[b] = e->hnext;
			if (e->state == ENTRY_READY && c->session_open && e->generation == c->generation)
				(void)h->p11->C_DestroyObject(c->session, e->handle);
			free_entry(e);
		}
	}
	if (c->session_open)
		(void)h->p11->C_CloseSession(c->session);
	free(c->buckets);
	pthread_cond_destroy(&c->loaded);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->session_lock);
	free(c);
	h->keycache = NULL;
}
