/*
 * store_cache.c: the per-connection read cache (store_cache.h). Direct
 * mapped by a hash of the name: a collision replaces the slot. Sizes are
 * fixed, so a thread's cache is about 50 KiB whatever the store holds.
 */
#include "kms/store/store_cache.h"

#include <stdlib.h>
#include <string.h>

#include <kms/secmem.h>

#include "kms/format/keyid.h"

#define CACHE_PRINCIPALS 64
#define CACHE_KEYS 256
#define CACHE_ACCESS_KEYS 32

struct store_read_cache {
	struct {
		uint64_t count; /* the write count before the read, plus one: 0 = empty */
		bool found;
		char name[AUTHZ_PRINCIPAL_NAME_SIZE];
		store_principal row;
	} principals[CACHE_PRINCIPALS];
	struct {
		uint64_t count;
		store_access_key row;
	} access_keys[CACHE_ACCESS_KEYS];
	struct {
		uint64_t count;
		char key_id[KMS_KEYID_TEXT_SIZE];
	} no_policy[CACHE_KEYS];
	struct {
		uint64_t count;
		char principal[AUTHZ_PRINCIPAL_NAME_SIZE];
		char key_id[KMS_KEYID_TEXT_SIZE];
	} no_grants[CACHE_KEYS];
};

/* FNV-1a over one or two strings. */
static uint64_t hash2(const char *a, const char *b)
{
	uint64_t h = 1469598103934665603ull;
	for (const char *p = a; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ull;
	h = (h ^ 0xff) * 1099511628211ull;
	for (const char *p = b; p && *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ull;
	return h;
}

/* Copies src into a slot's field; false (nothing cached) if it does not fit. */
static bool put_name(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);
	if (n >= cap)
		return false;
	memcpy(dst, src, n + 1);
	return true;
}

void store_cache_free(store_read_cache *c)
{
	if (c)
		kms_wipe(c->access_keys, sizeof c->access_keys);
	free(c);
}

store_read_cache *store_cache_new(void)
{
	return calloc(1, sizeof(store_read_cache));
}

bool store_cache_principal_get(store_read_cache *c, uint64_t count, const char *name,
                               store_principal *out, bool *found)
{
	if (!c)
		return false;
	size_t i = hash2(name, NULL) % CACHE_PRINCIPALS;
	if (c->principals[i].count != count + 1 || strcmp(c->principals[i].name, name) != 0)
		return false;
	*found = c->principals[i].found;
	if (*found)
		*out = c->principals[i].row;
	return true;
}

void store_cache_principal_put(store_read_cache *c, uint64_t count, const char *name,
                               const store_principal *p)
{
	if (!c)
		return;
	size_t i = hash2(name, NULL) % CACHE_PRINCIPALS;
	c->principals[i].count = 0;
	if (!put_name(c->principals[i].name, sizeof c->principals[i].name, name))
		return;
	c->principals[i].found = p != NULL;
	if (p)
		c->principals[i].row = *p;
	c->principals[i].count = count + 1;
}

bool store_cache_no_policy(store_read_cache *c, uint64_t count, const char *key_id)
{
	if (!c)
		return false;
	size_t i = hash2(key_id, NULL) % CACHE_KEYS;
	return c->no_policy[i].count == count + 1 && strcmp(c->no_policy[i].key_id, key_id) == 0;
}

void store_cache_no_policy_put(store_read_cache *c, uint64_t count, const char *key_id)
{
	if (!c)
		return;
	size_t i = hash2(key_id, NULL) % CACHE_KEYS;
	c->no_policy[i].count = 0;
	if (put_name(c->no_policy[i].key_id, sizeof c->no_policy[i].key_id, key_id))
		c->no_policy[i].count = count + 1;
}

bool store_cache_no_grants(store_read_cache *c, uint64_t count, const char *principal,
                           const char *key_id)
{
	if (!c)
		return false;
	size_t i = hash2(principal, key_id) % CACHE_KEYS;
	return c->no_grants[i].count == count + 1 &&
	       strcmp(c->no_grants[i].principal, principal) == 0 &&
	       strcmp(c->no_grants[i].key_id, key_id) == 0;
}

void store_cache_no_grants_put(store_read_cache *c, uint64_t count, const char *principal,
                               const char *key_id)
{
	if (!c)
		return;
	size_t i = hash2(principal, key_id) % CACHE_KEYS;
	c->no_grants[i].count = 0;
	if (put_name(c->no_grants[i].principal, sizeof c->no_grants[i].principal, principal) &&
	    put_name(c->no_grants[i].key_id, sizeof c->no_grants[i].key_id, key_id))
		c->no_grants[i].count = count + 1;
}

bool store_cache_access_key_get(store_read_cache *c, uint64_t count, const char *id,
                                store_access_key *out)
{
	if (!c)
		return false;
	size_t i = hash2(id, NULL) % CACHE_ACCESS_KEYS;
	if (c->access_keys[i].count != count + 1 || strcmp(c->access_keys[i].row.id, id) != 0)
		return false;
	*out = c->access_keys[i].row;
	return true;
}

void store_cache_access_key_put(store_read_cache *c, uint64_t count,
                                const store_access_key *row)
{
	if (!c)
		return;
	size_t i = hash2(row->id, NULL) % CACHE_ACCESS_KEYS;
	c->access_keys[i].row = *row;
	c->access_keys[i].count = count + 1;
}
