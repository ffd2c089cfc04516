/*
 * p11_cache.c: CKA_ID -> object handle, so the hot path does one
 * C_EncryptInit instead of a C_FindObjects round first.
 *
 * Read-mostly: every operation reads, only the first use of a key (and a
 * create, destroy or recovery) writes, so a rwlock keeps readers parallel.
 * Only objects found on the token are cached (never "not found"), so
 * lookups of made-up ids from untrusted blobs cannot grow it. Entries die
 * on destroy, on a stale-handle error and whenever the login may have been
 * lost (modules may renumber private objects after a logout).
 */
#include <stdlib.h>
#include <string.h>

#include "hsm/p11_internal.h"

#define CACHE_INITIAL_BUCKETS 64

struct hsm_cache_entry {
	struct hsm_cache_entry *next;
	uint64_t hash;
	CK_OBJECT_HANDLE handle;
	hsm_key_class cls;
	size_t id_len;
	uint8_t id[HSM_ID_MAX];
};

static uint64_t cache_hash(const hsm_object_id *id, hsm_key_class cls)
{
	/* FNV-1a: ids are few and not chosen to collide (only found ones are cached). */
	uint64_t hash = 0xcbf29ce484222325ULL;
	hash = (hash ^ (uint8_t)cls) * 0x100000001b3ULL;
	for (size_t i = 0; i < id->len; i++)
		hash = (hash ^ id->bytes[i]) * 0x100000001b3ULL;
	return hash;
}

static bool entry_matches(const struct hsm_cache_entry *e, uint64_t hash,
                          const hsm_object_id *id)
{
	return e->hash == hash && e->id_len == id->len && memcmp(e->id, id->bytes, id->len) == 0;
}

kms_status hsm_cache_init(hsm_handle_cache *c)
{
	memset(c, 0, sizeof *c);
	c->buckets = calloc(CACHE_INITIAL_BUCKETS, sizeof *c->buckets);
	if (!c->buckets)
		return KMS_FAIL(KMS_INTERNAL, "hsm: out of memory for the handle cache");
	c->bucket_count = CACHE_INITIAL_BUCKETS;
	if (pthread_rwlock_init(&c->lock, NULL) != 0) {
		free(c->buckets);
		c->buckets = NULL;
		return KMS_FAIL(KMS_INTERNAL, "hsm: pthread_rwlock_init failed");
	}
	return KMS_OK;
}

static void free_chains(hsm_handle_cache *c)
{
	for (size_t b = 0; b < c->bucket_count; b++) {
		struct hsm_cache_entry *e = c->buckets[b];
		while (e) {
			struct hsm_cache_entry *next = e->next;
			free(e);
			e = next;
		}
		c->buckets[b] = NULL;
	}
	c->entry_count = 0;
}

void hsm_cache_free(hsm_handle_cache *c)
{
	if (!c->buckets)
		return;
	free_chains(c);
	free(c->buckets);
	c->buckets = NULL;
	pthread_rwlock_destroy(&c->lock);
}

bool hsm_cache_get(hsm_handle_cache *c, const hsm_object_id *id, hsm_key_class cls,
                   CK_OBJECT_HANDLE *out)
{
	uint64_t hash = cache_hash(id, cls);
	bool found = false;

	pthread_rwlock_rdlock(&c->lock);
	for (const struct hsm_cache_entry *e = c->buckets[hash & (c->bucket_count - 1)]; e;
	     e = e->next) {
		if (e->cls == cls && entry_matches(e, hash, id)) {
			*out = e->handle;
			found = true;
			break;
		}
	}
	pthread_rwlock_unlock(&c->lock);
	return found;
}

/* Doubles the table; called with the write lock held. Failure is harmless:
 * the chains just get longer. */
static void cache_grow(hsm_handle_cache *c)
{
	size_t count = c->bucket_count * 2;
	struct hsm_cache_entry **buckets = calloc(count, sizeof *buckets);
	if (!buckets)
		return;
	for (size_t b = 0; b < c->bucket_count; b++) {
		struct hsm_cache_entry *e = c->buckets[b];
		while (e) {
			struct hsm_cache_entry *next = e->next;
			size_t slot = e->hash & (count - 1);
			e->next = buckets[slot];
			buckets[slot] = e;
			e = next;
		}
	}
	free(c->buckets);
	c->buckets = buckets;
	c->bucket_count = count;
}

void hsm_cache_put(hsm_handle_cache *c, const hsm_object_id *id, hsm_key_class cls,
                   CK_OBJECT_HANDLE handle)
{
	uint64_t hash = cache_hash(id, cls);

	pthread_rwlock_wrlock(&c->lock);
	struct hsm_cache_entry **head = &c->buckets[hash & (c->bucket_count - 1)];
	for (struct hsm_cache_entry *e = *head; e; e = e->next) {
		if (e->cls == cls && entry_matches(e, hash, id)) {
			e->handle = handle;
			goto out;
		}
	}
	/* Out of memory: the entry is simply not cached; the next use finds it again. */
	struct hsm_cache_entry *e = calloc(1, sizeof *e);
	if (!e)
		goto out;
	e->hash = hash;
	e->handle = handle;
	e->cls = cls;
	e->id_len = id->len;
	memcpy(e->id, id->bytes, id->len);
	e->next = *head;
	*head = e;
	if (++c->entry_count > 2 * c->bucket_count)
		cache_grow(c);
out:
	pthread_rwlock_unlock(&c->lock);
}

void hsm_cache_drop(hsm_handle_cache *c, const hsm_object_id *id)
{
	pthread_rwlock_wrlock(&c->lock);
	for (int cls = 0; cls < HSM_KEY_CLASS_COUNT; cls++) {
		uint64_t hash = cache_hash(id, (hsm_key_class)cls);
		struct hsm_cache_entry **link = &c->buckets[hash & (c->bucket_count - 1)];
		while (*link) {
			struct hsm_cache_entry *e = *link;
			if (e->cls == (hsm_key_class)cls && entry_matches(e, hash, id)) {
				*link = e->next;
				free(e);
				c->entry_count--;
			} else {
				link = &e->next;
			}
		}
	}
	pthread_rwlock_unlock(&c->lock);
}

void hsm_cache_clear(hsm_handle_cache *c)
{
	pthread_rwlock_wrlock(&c->lock);
	free_chains(c);
	pthread_rwlock_unlock(&c->lock);
}
