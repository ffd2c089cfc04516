/*
 * keyring_cache.c: the key and alias caches, key references, and the data
 * plane (keyring_encrypt_key, keyring_decrypt_key).
 *
 * The hot path takes one mutex (cache_lock), finds the key's entry, marks it
 * the most recently used, checks its state and takes one GCM use from the
 * entry's reserved block. The key cache is an LRU bounded by
 * metadata_cache_entries (evict_over_cap). Anything
 * else (a missing or invalidated entry, an empty block) goes to a slow path
 * under the key's stripe, which may read the database, reserve the next
 * block, or rotate.
 */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kms/keys/keyring.h"
#include "kms/keys/keyring_impl.h"

#define KR_ALIAS_CACHE_MAX 65536  /* then the alias cache starts over */

/* ---- the key cache (cache_lock held for all of these) ---- */

static size_t entry_bucket(size_t n_buckets, const uint8_t id[KMS_KEYID_BYTES])
{
	/* Key ids are random bytes from the HSM: any eight of them hash well. */
	uint64_t h;
	memcpy(&h, id + KMS_KEYID_BYTES - sizeof h, sizeof h);
	return (size_t)(h & (n_buckets - 1));
}

static kr_entry *entry_find(keyring *kr, const uint8_t id[KMS_KEYID_BYTES])
{
	for (kr_entry *e = kr->entries[entry_bucket(kr->n_entry_buckets, id)]; e; e = e->next)
		if (memcmp(e->id, id, KMS_KEYID_BYTES) == 0)
			return e;
	return NULL;
}

/* ---- the LRU (cache_lock held) ---- */

static void lru_unlink(keyring *kr, kr_entry *e)
{
	if (e->lru_newer)
		e->lru_newer->lru_older = e->lru_older;
	else
		kr->lru_newest = e->lru_older;
	if (e->lru_older)
		e->lru_older->lru_newer = e->lru_newer;
	else
		kr->lru_oldest = e->lru_newer;
	e->lru_newer = e->lru_older = NULL;
}

static void lru_push_newest(keyring *kr, kr_entry *e)
{
	e->lru_newer = NULL;
	e->lru_older = kr->lru_newest;
	if (kr->lru_newest)
		kr->lru_newest->lru_newer = e;
	kr->lru_newest = e;
	if (!kr->lru_oldest)
		kr->lru_oldest = e;
}

/* A use: the entry becomes the newest. */
static void lru_touch(keyring *kr, kr_entry *e)
{
	if (kr->lru_newest == e)
		return;
	lru_unlink(kr, e);
	lru_push_newest(kr, e);
}

static void entry_free(kr_entry *e)
{
	free(e->version_flags);
	free(e);
}

/* Takes e out of the hash table and the LRU and frees it. cache_lock and
 * e's stripe held. */
static void entry_evict(keyring *kr, kr_entry *e)
{
	kr_entry **link = &kr->entries[entry_bucket(kr->n_entry_buckets, e->id)];
	while (*link && *link != e)
		link = &(*link)->next;
	if (*link)
		*link = e->next;
	lru_unlink(kr, e);
	kr->n_entries--;
	kr->entry_evictions++;
	entry_free(e);
}

/* How many of the oldest entries one insert looks at for a victim whose
 * stripe is free: bounded work, and a busy stripe is simply passed over. */
#define KR_EVICT_CANDIDATES 8

/*
 * Evicts the oldest entries until the cache is within its capacity. Called
 * with cache_lock and the stripe `held` locked, after inserting `keep`
 * (never evicted: its caller is about to use it). A victim's own stripe is
 * needed too (slow paths use an entry under its stripe alone): it is taken
 * with trylock, never waited for (the lock order is stripe, then
 * cache_lock), and a victim whose stripe is busy is skipped this time. So
 * the cache may exceed its capacity by the few entries whose keys are busy
 * at that moment, until the next insert, which looks at that many more.
 */
static void evict_over_cap(keyring *kr, pthread_mutex_t *held, const kr_entry *keep)
{
	kr_entry *c = kr->lru_oldest;
	if (kr->n_entries <= kr->entry_cap)
		return;
	/* Enough candidates to drain an excess left by busy stripes earlier. */
	size_t budget = KR_EVICT_CANDIDATES + (kr->n_entries - kr->entry_cap);
	for (size_t looked = 0; c && kr->n_entries > kr->entry_cap && looked < budget; looked++) {
		kr_entry *newer = c->lru_newer;
		pthread_mutex_t *stripe = kr_stripe(kr, c->id);
		if (c != keep) {
			if (stripe == held) {
				entry_evict(kr, c);
			} else if (pthread_mutex_trylock(stripe) == 0) {
				entry_evict(kr, c);
				pthread_mutex_unlock(stripe);
			}
		}
		c = newer;
	}
}

static void entry_table_grow(keyring *kr)
{
	size_t n = kr->n_entry_buckets * 2;
	kr_entry **bigger = calloc(n, sizeof *bigger);
	if (!bigger)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < kr->n_entry_buckets; i++) {
		kr_entry *e = kr->entries[i];
		while (e) {
			kr_entry *next = e->next;
			size_t b = entry_bucket(n, e->id);
			e->next = bigger[b];
			bigger[b] = e;
			e = next;
		}
	}
	free(kr->entries);
	kr->entries = bigger;
	kr->n_entry_buckets = n;
}

void kr_cache_invalidate(keyring *kr, const uint8_t id[KMS_KEYID_BYTES])
{
	pthread_mutex_lock(&kr->cache_lock);
	kr_entry *e = entry_find(kr, id);
	if (e)
		e->valid = false;
	pthread_mutex_unlock(&kr->cache_lock);
}

static bool missing_contains(const keyring *kr, const uint8_t object[KMS_KEYID_HSM_ID_LEN])
{
	size_t lo = 0, hi = kr->n_missing;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = memcmp(kr->missing[mid], object, KMS_KEYID_HSM_ID_LEN);
		if (c == 0)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* Reads the key from the store and installs it in the cache. Stripe held,
 * so no write to this key can slip between the read and the install. */
static kms_status entry_load_locked(keyring *kr, const uint8_t id[KMS_KEYID_BYTES],
                                    const char *id_text, kr_entry **out)
{
	kms_status status;
	store_key key;
	store_version *versions = NULL;
	size_t n_versions = 0;
	uint8_t *flags = NULL;
	kr_entry *fresh = NULL;

	*out = NULL;
	/* The generation before the read: if keyring_sync moves it before
	 * the install, what was read may predate another replica's change,
	 * and the entry goes in marked for reload. */
	uint64_t generation = atomic_load(&kr->generation);
	KMS_GUARD(store_begin_read(kr->store));
	KMS_GUARD_OUT(status, kr_key_get_visible(kr, id_text, &key));
	KMS_GUARD_OUT(status, store_versions_list(kr->store, id_text, &versions, &n_versions));
	KMS_GUARD_OUT(status, store_commit(kr->store));

	uint32_t n_flags = n_versions ? versions[n_versions - 1].version : 0;
	flags = calloc(n_flags ? n_flags : 1, 1);
	if (!flags) {
		status = KMS_FAIL(KMS_INTERNAL, "keyring: out of memory caching %s", id_text);
		goto out;
	}
	for (size_t i = 0; i < n_versions; i++) {
		if (versions[i].state != VERSION_STATE_ACTIVE)
			continue;
		hsm_object_id object;
		KMS_GUARD_OUT(status, kr_object_id(id, versions[i].version, &object));
		bool missing = key.protection == KEY_PROTECTION_HSM_RESIDENT &&
		               missing_contains(kr, object.bytes);
		flags[versions[i].version - 1] =
		        (uint8_t)(KR_VERSION_ACTIVE | (missing ? KR_VERSION_MISSING : 0));
	}

	fresh = calloc(1, sizeof *fresh);
	pthread_mutex_lock(&kr->cache_lock);
	kr_entry *e = entry_find(kr, id);
	if (!e) {
		if (!fresh) {
			pthread_mutex_unlock(&kr->cache_lock);
			status = KMS_FAIL(KMS_INTERNAL, "keyring: out of memory caching %s", id_text);
			goto out;
		}
		e = fresh;
		fresh = NULL;
		memcpy(e->id, id, KMS_KEYID_BYTES);
		memcpy(e->id_text, id_text, KMS_KEYID_TEXT_SIZE);
		if (kr->n_entries >= kr->n_entry_buckets)
			entry_table_grow(kr);
		size_t b = entry_bucket(kr->n_entry_buckets, id);
		e->next = kr->entries[b];
		kr->entries[b] = e;
		kr->n_entries++;
		lru_push_newest(kr, e);
		evict_over_cap(kr, kr_stripe(kr, id), e);
	} else {
		lru_touch(kr, e);
	}
	kr->entry_loads++;
	free(e->version_flags);
	e->version_flags = flags;
	flags = NULL;
	e->n_versions = n_flags;
	e->state = key.state;
	e->spec = key.spec;
	e->usage = key.usage;
	e->wrapped = key.protection == KEY_PROTECTION_WRAPPED;
	e->per_data_principal = key.per_data_principal;
	e->primary = key.primary_version;
	if (e->block_version != e->primary) {
		/* Uses of another version are not ours to hand out any more. */
		e->block_version = e->primary;
		e->block_left = 0;
	}
	e->valid = generation == atomic_load(&kr->generation);
	pthread_mutex_unlock(&kr->cache_lock);
	*out = e;
	status = KMS_OK;
out:
	if (status != KMS_OK)
		store_rollback(kr->store);
	free(versions);
	free(flags);
	free(fresh);
	return status;
}

/* A valid entry for the key; stripe held. */
static kms_status entry_ensure_locked(keyring *kr, const uint8_t id[KMS_KEYID_BYTES],
                                      const char *id_text, kr_entry **out)
{
	pthread_mutex_lock(&kr->cache_lock);
	kr_entry *e = entry_find(kr, id);
	bool valid = e && e->valid;
	if (valid)
		lru_touch(kr, e);
	pthread_mutex_unlock(&kr->cache_lock);
	if (valid) {
		*out = e;
		return KMS_OK;
	}
	return entry_load_locked(kr, id, id_text, out);
}

/* ---- the alias cache ---- */

static uint64_t alias_hash(const keyring *kr, const char *name)
{
	/* FNV-1a, seeded per process so alias names cannot be chosen to collide. */
	uint64_t h = UINT64_C(0xcbf29ce484222325) ^ kr->alias_seed;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		h ^= *p;
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

static void alias_cache_clear_locked(keyring *kr)
{
	for (size_t i = 0; i < kr->n_alias_buckets; i++) {
		kr_alias *a = kr->aliases[i];
		while (a) {
			kr_alias *next = a->next;
			free(a);
			a = next;
		}
		kr->aliases[i] = NULL;
	}
	kr->n_aliases = 0;
	kr->alias_gen++;
}

void kr_alias_cache_clear(keyring *kr)
{
	pthread_mutex_lock(&kr->cache_lock);
	alias_cache_clear_locked(kr);
	pthread_mutex_unlock(&kr->cache_lock);
}

/* Looks an alias up in the cache; true and its key id if it is there. */
static bool alias_cache_get(keyring *kr, const char *name, uint64_t h,
                            char key_id[KMS_KEYID_TEXT_SIZE], uint64_t *gen)
{
	bool found = false;
	pthread_mutex_lock(&kr->cache_lock);
	for (kr_alias *a = kr->aliases[h & (kr->n_alias_buckets - 1)]; a; a = a->next)
		if (a->hash == h && strcmp(a->name, name) == 0) {
			memcpy(key_id, a->key_id, KMS_KEYID_TEXT_SIZE);
			found = true;
			break;
		}
	*gen = kr->alias_gen;
	pthread_mutex_unlock(&kr->cache_lock);
	return found;
}

/* Caches what the store said, unless an alias changed since gen was read
 * (then what we read may be stale: use it once, keep nothing). */
static void alias_cache_put(keyring *kr, const store_alias *alias, uint64_t h, uint64_t gen)
{
	kr_alias *a = calloc(1, sizeof *a);
	if (!a)
		return;
	a->hash = h;
	memcpy(a->name, alias->name, sizeof a->name);
	memcpy(a->key_id, alias->key_id, sizeof a->key_id);
	pthread_mutex_lock(&kr->cache_lock);
	size_t b = h & (kr->n_alias_buckets - 1);
	bool present = false;
	for (kr_alias *p = kr->aliases[b]; p && !present; p = p->next)
		present = p->hash == h && strcmp(p->name, alias->name) == 0;
	if (gen == kr->alias_gen && !present) {
		if (kr->n_aliases >= KR_ALIAS_CACHE_MAX)
			alias_cache_clear_locked(kr);
		a->next = kr->aliases[b];
		kr->aliases[b] = a;
		kr->n_aliases++;
		a = NULL;
	}
	pthread_mutex_unlock(&kr->cache_lock);
	free(a);
}

kms_status kr_resolve_ref(keyring *kr, const char *key_ref, uint8_t id[KMS_KEYID_BYTES],
                          char id_text[KMS_KEYID_TEXT_SIZE])
{
	keyid_ref_kind kind;
	id_text[0] = '\0';
	KMS_ENSURE(key_ref, KMS_INVALID_ARGUMENT, "key reference: missing");
	/* Bounded: anything longer than an alias is refused by the classifier. */
	size_t len = strnlen(key_ref, KMS_ALIAS_TEXT_MAX + 1);
	KMS_GUARD(keyid_ref_classify(key_ref, len, &kind, id));
	if (kind == KEYID_REF_KEY_ID) {
		keyid_format(id, id_text);
		return KMS_OK;
	}

	uint64_t h = alias_hash(kr, key_ref), gen;
	char target[KMS_KEYID_TEXT_SIZE];
	if (!alias_cache_get(kr, key_ref, h, target, &gen)) {
		store_alias alias;
		KMS_GUARD(store_alias_get(kr->store, key_ref, &alias));
		memcpy(target, alias.key_id, sizeof target);
		alias_cache_put(kr, &alias, h, gen);
	}
	if (keyid_parse(target, strnlen(target, sizeof target), id) != KMS_OK)
		return KMS_FAIL(KMS_INTERNAL, "keyring: alias %s points at a malformed key id", key_ref);
	memcpy(id_text, target, KMS_KEYID_TEXT_SIZE);
	return KMS_OK;
}

/* ---- replicas: the cache generation ---- */

kms_status keyring_sync(keyring *kr)
{
	if (!kr->shared)
		return KMS_OK;
	uint64_t now_at;
	KMS_GUARD(store_generation_get(kr->store, &now_at));
	/* The store's read cache on this thread follows the same value. */
	store_cache_follow(kr->store, now_at);
	if (now_at == atomic_load(&kr->generation))
		return KMS_OK;
	pthread_mutex_lock(&kr->cache_lock);
	/* Two requests may read two values; the newer wins, never the older. */
	if (now_at > atomic_load(&kr->generation)) {
		for (kr_entry *e = kr->lru_newest; e; e = e->lru_older)
			e->valid = false;
		alias_cache_clear_locked(kr);
		atomic_store(&kr->generation, now_at);
		kr->generation_drops++;
	}
	pthread_mutex_unlock(&kr->cache_lock);
	return KMS_OK;
}

/* ---- the data plane ---- */

/* The one line every use of a key of the wrong usage gets. */
static kms_status check_usage(const kr_entry *e, key_usage usage, const char *op)
{
	KMS_ENSURE(e->usage == usage, KMS_INVALID_ARGUMENT,
	           "key %s is a %s key (%s): %s needs a %s key", e->id_text,
	           key_usage_name(e->usage), key_spec_name(e->spec), op, key_usage_name(usage));
	return KMS_OK;
}

static kms_status check_key_kind(const kr_entry *e)
{
	return check_usage(e, KEY_USAGE_ENCRYPT_DECRYPT, "encryption and decryption");
}

static kms_status check_usable(const kr_entry *e)
{
	KMS_ENSURE(e->state == KEY_STATE_ENABLED, KMS_FAILED_PRECONDITION, "key %s is %s",
	           e->id_text, key_state_name(e->state));
	return check_key_kind(e);
}

static kms_status check_version(const kr_entry *e, uint32_t version)
{
	KMS_ENSURE(version >= 1 && version <= e->n_versions &&
	                   (e->version_flags[version - 1] & KR_VERSION_ACTIVE),
	           KMS_NOT_FOUND, "key %s has no active version %u", e->id_text, (unsigned)version);
	KMS_ENSURE(!(e->version_flags[version - 1] & KR_VERSION_MISSING), KMS_HSM_UNAVAILABLE,
	           "HSM object %s:v%u is missing from the token (see the start-up log)",
	           e->id_text, (unsigned)version);
	return KMS_OK;
}

static kms_status use_fill(const kr_entry *e, uint32_t version, keyring_key_use *out)
{
	memcpy(out->key_id, e->id, KMS_KEYID_BYTES);
	memcpy(out->key_id_text, e->id_text, KMS_KEYID_TEXT_SIZE);
	out->version = version;
	out->wrapped = e->wrapped;
	out->spec = e->spec;
	out->per_data_principal = e->per_data_principal;
	out->dp_key = 0;
	return kr_object_id(e->id, version, &out->object);
}

/* cache_lock held. KMS_OK and *taken if a use came from the block. */
static kms_status try_take_use(kr_entry *e, keyring_key_use *out, bool *taken)
{
	*taken = false;
	KMS_GUARD(check_usable(e));
	KMS_GUARD(check_version(e, e->primary));
	if (e->block_version != e->primary || e->block_left == 0)
		return KMS_OK;
	KMS_GUARD(use_fill(e, e->primary, out));
	e->block_left--;
	*taken = true;
	return KMS_OK;
}

/* Reserves the next block of GCM uses of version in the store. *granted is
 * 0 and *spent true when the version has reached the bound. Stripe held. */
static kms_status reserve_block_locked(keyring *kr, const char *id_text, uint32_t version,
                                       uint64_t *granted, bool *spent)
{
	kms_status status;
	store_version v;

	*granted = 0;
	*spent = false;
	KMS_GUARD(store_begin(kr->store));
	KMS_GUARD_OUT(status, store_version_get(kr->store, id_text, version, &v));
	if (v.state != VERSION_STATE_ACTIVE) {
		status = KMS_FAIL(KMS_INTERNAL, "keyring: primary version %s:v%u is %s", id_text,
		                  (unsigned)version, version_state_name(v.state));
		goto out;
	}
	if (v.encryptions_reserved >= kr->gcm_max) {
		*spent = true;
		store_rollback(kr->store);
		return KMS_OK;
	}
	uint64_t left = kr->gcm_max - v.encryptions_reserved;
	uint64_t block = left < kr->reserve_block ? left : kr->reserve_block;
	KMS_GUARD_OUT(status, store_version_reserve(kr->store, id_text, version,
	                                            v.encryptions_reserved + block));
	/* Durable before the first use of the block is handed out. */
	KMS_GUARD_OUT(status, store_commit(kr->store));
	*granted = block;
	return KMS_OK;
out:
	store_rollback(kr->store);
	return status;
}

static kms_status encrypt_slow(keyring *kr, const uint8_t id[KMS_KEYID_BYTES],
                               const char *id_text, int64_t now, keyring_key_use *out)
{
	kms_status status = KMS_OK;
	pthread_mutex_t *stripe = kr_stripe(kr, id);

	pthread_mutex_lock(stripe);
	/* At most one rotation: a fresh version always has uses left. */
	for (int round = 0; round < 2; round++) {
		kr_entry *e;
		bool taken;
		KMS_GUARD_OUT(status, entry_ensure_locked(kr, id, id_text, &e));

		pthread_mutex_lock(&kr->cache_lock);
		status = try_take_use(e, out, &taken);
		uint32_t primary = e->primary;
		pthread_mutex_unlock(&kr->cache_lock);
		if (status != KMS_OK || taken)
			goto out;

		uint64_t granted;
		bool spent;
		KMS_GUARD_OUT(status, reserve_block_locked(kr, id_text, primary, &granted, &spent));
		if (spent) {
			uint32_t next;
			KMS_GUARD_OUT(status, kr_version_create_locked(kr, id, now, &next));
			kr_log("info", "key %s: v%u reached the AES-GCM bound of %llu encryptions; rotated to v%u",
			       id_text, (unsigned)primary, (unsigned long long)kr->gcm_max,
			       (unsigned)next);
			continue;
		}
		pthread_mutex_lock(&kr->cache_lock);
		/* The stripe kept every writer out: e is still valid and primary. */
		e->block_version = primary;
		e->block_left = granted;
		status = try_take_use(e, out, &taken);
		pthread_mutex_unlock(&kr->cache_lock);
		if (status == KMS_OK && !taken)
			status = KMS_FAIL(KMS_INTERNAL, "keyring: %s: reserved uses vanished", id_text);
		goto out;
	}
	status = KMS_FAIL(KMS_INTERNAL, "keyring: %s: no GCM uses left after rotating", id_text);
out:
	pthread_mutex_unlock(stripe);
	if (status != KMS_OK)
		memset(out, 0, sizeof *out);
	return status;
}

kms_status keyring_encrypt_key(keyring *kr, const char *key_ref, int64_t now,
                               keyring_key_use *out)
{
	uint8_t id[KMS_KEYID_BYTES];
	char id_text[KMS_KEYID_TEXT_SIZE];
	kms_status status = KMS_OK;
	bool taken = false;

	memset(out, 0, sizeof *out);
	KMS_GUARD(kr_resolve_ref(kr, key_ref, id, id_text));

	pthread_mutex_lock(&kr->cache_lock);
	kr_entry *e = entry_find(kr, id);
	if (e && e->valid) {
		lru_touch(kr, e);
		status = try_take_use(e, out, &taken);
	}
	pthread_mutex_unlock(&kr->cache_lock);
	if (status != KMS_OK) {
		memset(out, 0, sizeof *out);
		return status;
	}
	if (taken)
		return KMS_OK;
	return encrypt_slow(kr, id, id_text, now, out);
}

/* The entry of key id, loaded under its stripe on a miss; runs fn on it
 * with cache_lock held. */
typedef kms_status (*entry_fn)(kr_entry *e, void *arg);

static kms_status with_entry(keyring *kr, const uint8_t id[KMS_KEYID_BYTES],
                             const char *id_text, entry_fn fn, void *arg)
{
	kms_status status = KMS_OK;
	pthread_mutex_lock(&kr->cache_lock);
	kr_entry *e = entry_find(kr, id);
	bool cached = e && e->valid;
	if (cached) {
		lru_touch(kr, e);
		status = fn(e, arg);
	}
	pthread_mutex_unlock(&kr->cache_lock);
	if (cached)
		return status;
	pthread_mutex_t *stripe = kr_stripe(kr, id);
	pthread_mutex_lock(stripe);
	status = entry_ensure_locked(kr, id, id_text, &e);
	if (status == KMS_OK) {
		pthread_mutex_lock(&kr->cache_lock);
		status = fn(e, arg);
		pthread_mutex_unlock(&kr->cache_lock);
	}
	pthread_mutex_unlock(stripe);
	return status;
}

typedef struct use_args {
	key_usage usage;
	const char *op;
	uint32_t version;
	keyring_key_use *out;
} use_args;

static kms_status use_check(kr_entry *e, void *arg)
{
	use_args *a = arg;
	KMS_ENSURE(e->state == KEY_STATE_ENABLED, KMS_FAILED_PRECONDITION, "key %s is %s",
	           e->id_text, key_state_name(e->state));
	KMS_GUARD(check_usage(e, a->usage, a->op));
	uint32_t version = a->version ? a->version : e->primary;
	KMS_GUARD(check_version(e, version));
	return use_fill(e, version, a->out);
}

kms_status keyring_use_key(keyring *kr, const char *key_ref, key_usage usage, const char *op,
                           uint32_t version, keyring_key_use *out)
{
	uint8_t id[KMS_KEYID_BYTES];
	char id_text[KMS_KEYID_TEXT_SIZE];
	memset(out, 0, sizeof *out);
	KMS_GUARD(kr_resolve_ref(kr, key_ref, id, id_text));
	use_args a = { .usage = usage, .op = op, .version = version, .out = out };
	kms_status status = with_entry(kr, id, id_text, use_check, &a);
	if (status != KMS_OK)
		memset(out, 0, sizeof *out);
	return status;
}

typedef struct versions_args {
	uint32_t *out;
	size_t cap, n;
} versions_args;

static kms_status versions_collect(kr_entry *e, void *arg)
{
	versions_args *a = arg;
	if (e->primary >= 1 && e->primary <= e->n_versions &&
	    (e->version_flags[e->primary - 1] & KR_VERSION_ACTIVE))
		a->out[a->n++] = e->primary;
	for (uint32_t v = e->n_versions; v >= 1 && a->n < a->cap; v--)
		if (v != e->primary && (e->version_flags[v - 1] & KR_VERSION_ACTIVE))
			a->out[a->n++] = v;
	return KMS_OK;
}

kms_status keyring_active_versions(keyring *kr, const uint8_t key_id[KMS_KEYID_BYTES],
                                   uint32_t *out, size_t cap, size_t *n)
{
	char id_text[KMS_KEYID_TEXT_SIZE];
	*n = 0;
	KMS_ENSURE(cap >= 1, KMS_INVALID_ARGUMENT, "keyring: no room for a version");
	keyid_format(key_id, id_text);
	versions_args a = { .out = out, .cap = cap };
	KMS_GUARD(with_entry(kr, key_id, id_text, versions_collect, &a));
	*n = a.n;
	return KMS_OK;
}

static kms_status decrypt_check(kr_entry *e, uint32_t version, keyring_key_use *out)
{
	KMS_GUARD(check_usable(e));
	KMS_GUARD(check_version(e, version));
	return use_fill(e, version, out);
}

kms_status keyring_decrypt_key(keyring *kr, const uint8_t key_id[KMS_KEYID_BYTES],
                               uint32_t version, keyring_key_use *out)
{
	char id_text[KMS_KEYID_TEXT_SIZE];
	uint8_t id[KMS_KEYID_BYTES];
	kms_status status = KMS_OK;

	/* key_id may point into *out: copy it before out is cleared. */
	memcpy(id, key_id, sizeof id);
	memset(out, 0, sizeof *out);
	keyid_format(id, id_text);

	pthread_mutex_lock(&kr->cache_lock);
	kr_entry *e = entry_find(kr, id);
	bool cached = e && e->valid;
	if (cached) {
		lru_touch(kr, e);
		status = decrypt_check(e, version, out);
	}
	pthread_mutex_unlock(&kr->cache_lock);

	if (!cached) {
		pthread_mutex_t *stripe = kr_stripe(kr, id);
		pthread_mutex_lock(stripe);
		status = entry_ensure_locked(kr, id, id_text, &e);
		if (status == KMS_OK) {
			pthread_mutex_lock(&kr->cache_lock);
			status = decrypt_check(e, version, out);
			pthread_mutex_unlock(&kr->cache_lock);
		}
		pthread_mutex_unlock(stripe);
	}
	if (status != KMS_OK)
		memset(out, 0, sizeof *out);
	return status;
}

/* ---- set-up and tear-down ---- */

kms_status kr_cache_init(keyring *kr)
{
	kr->n_entry_buckets = KR_ENTRY_BUCKETS_INITIAL;
	kr->entries = calloc(kr->n_entry_buckets, sizeof *kr->entries);
	kr->n_alias_buckets = KR_ALIAS_BUCKETS;
	kr->aliases = calloc(kr->n_alias_buckets, sizeof *kr->aliases);
	KMS_ENSURE(kr->entries && kr->aliases, KMS_INTERNAL, "keyring: out of memory");
	return KMS_OK;
}

void kr_cache_free(keyring *kr)
{
	if (kr->entries) {
		for (size_t i = 0; i < kr->n_entry_buckets; i++) {
			kr_entry *e = kr->entries[i];
			while (e) {
				kr_entry *next = e->next;
				entry_free(e);
				e = next;
			}
		}
	}
	free(kr->entries);
	kr->entries = NULL;
	kr->n_entries = 0;
	kr->lru_newest = kr->lru_oldest = NULL;
	if (kr->aliases)
		alias_cache_clear_locked(kr);
	free(kr->aliases);
	kr->aliases = NULL;
}

void keyring_cache_stats_get(keyring *kr, keyring_cache_stats *out)
{
	pthread_mutex_lock(&kr->cache_lock);
	out->entries = kr->n_entries;
	out->capacity = kr->entry_cap;
	out->loads = kr->entry_loads;
	out->evictions = kr->entry_evictions;
	out->generation_drops = kr->generation_drops;
	pthread_mutex_unlock(&kr->cache_lock);
}
