/*
 * audit_tree.c: the audit log's Merkle tree as hot tiles in memory and
 * full tiles on disk (audit_tree.h).
 */
#include "kms/audit/audit_tree.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

/* First position (at tree level 8L) kept in memory at tile level L. */
static uint64_t hot_base(const audit_tree *t, unsigned level)
{
	return tlog_tile_full_count(t->flushed, level) * TLOG_TILE_WIDTH;
}

static uint64_t level_count(uint64_t size, unsigned level)
{
	return tlog_tile_level_hashes(size, level);
}

kms_status audit_tree_init(audit_tree *t, const char *public_dir)
{
	memset(t, 0, sizeof *t);
	t->public_dir = public_dir;
	pthread_mutex_init(&t->cache_lock, NULL);
	for (unsigned level = 0; level < TLOG_TILE_LEVELS; level++) {
		unsigned shift = TLOG_TILE_HEIGHT * level;
		t->hot_cap[level] = level == 0 ? AUDIT_HOT_MAX
		                               : ((uint64_t)AUDIT_HOT_MAX >> shift) + TLOG_TILE_WIDTH;
		t->hot[level] = malloc(t->hot_cap[level] * TLOG_HASH_SIZE);
		KMS_ENSURE(t->hot[level], KMS_INTERNAL, "audit: out of memory for the tree");
	}
	t->offsets = malloc(AUDIT_HOT_MAX * sizeof *t->offsets);
	KMS_ENSURE(t->offsets, KMS_INTERNAL, "audit: out of memory for the tree");
	return KMS_OK;
}

void audit_tree_free(audit_tree *t)
{
	for (unsigned level = 0; level < TLOG_TILE_LEVELS; level++)
		free(t->hot[level]);
	for (unsigned i = 0; i < AUDIT_TILE_CACHE_TILES; i++)
		free(t->cache[i].hashes);
	free(t->offsets);
	pthread_mutex_destroy(&t->cache_lock);
	memset(t->hot, 0, sizeof t->hot);
	t->offsets = NULL;
}

kms_status audit_tree_resume(audit_tree *t, uint64_t p, uint64_t end)
{
	KMS_ENSURE(p % TLOG_TILE_WIDTH == 0 && t->size == 0, KMS_INTERNAL,
	           "audit: cannot resume the tree at %llu", (unsigned long long)p);
	tlog_dir_tiles *dir = malloc(sizeof *dir);
	KMS_ENSURE(dir, KMS_INTERNAL, "audit: out of memory");
	tlog_dir_tiles_init(dir, t->public_dir, p);
	kms_status st = KMS_OK;
	for (unsigned level = 1; level < tlog_tile_levels(p) && st == KMS_OK; level++) {
		unsigned width = tlog_tile_partial_width(p, level);
		const tlog_dir_tile *tile;
		if (width == 0)
			continue;
		st = tlog_dir_tile_get(dir, level, tlog_tile_full_count(p, level), &tile);
		if (st == KMS_OK)
			memcpy(t->hot[level], tile->hashes, (size_t)width * TLOG_HASH_SIZE);
	}
	free(dir);
	KMS_GUARD(st);
	t->size = p;
	t->flushed = p;
	t->end = end;
	return KMS_OK;
}

bool audit_tree_has_room(const audit_tree *t, uint64_t n)
{
	return t->size - t->flushed + n <= AUDIT_HOT_MAX;
}

/* Stores hash at position pos of tile level `level`. */
static kms_status hot_put(audit_tree *t, unsigned level, uint64_t pos,
                          const uint8_t hash[static TLOG_HASH_SIZE])
{
	uint64_t at = pos - hot_base(t, level);
	KMS_ENSURE(level < TLOG_TILE_LEVELS && at < t->hot_cap[level], KMS_INTERNAL,
	           "audit: no room in memory for hash %llu at tile level %u",
	           (unsigned long long)pos, level);
	memcpy(t->hot[level][at], hash, TLOG_HASH_SIZE);
	return KMS_OK;
}

kms_status audit_tree_append(audit_tree *t, const uint8_t hash[static TLOG_HASH_SIZE],
                             uint64_t offset, uint64_t len)
{
	KMS_ENSURE(audit_tree_has_room(t, 1) && t->size < TLOG_TREE_SIZE_MAX, KMS_INTERNAL,
	           "audit: %llu leaf hashes in memory already",
	           (unsigned long long)(t->size - t->flushed));
	KMS_GUARD(hot_put(t, 0, t->size, hash));
	t->offsets[t->size - t->flushed] = offset;
	t->size++;
	t->end = offset + len;
	/* Each tile that fills up gives one hash to the level above. */
	for (unsigned level = 0; level + 1 < TLOG_TILE_LEVELS; level++) {
		uint64_t count = level_count(t->size, level);
		if (count % TLOG_TILE_WIDTH != 0)
			break;
		uint8_t root[TLOG_HASH_SIZE];
		uint64_t first = count - TLOG_TILE_WIDTH - hot_base(t, level);
		KMS_GUARD(tlog_root((const uint8_t (*)[TLOG_HASH_SIZE])t->hot[level] + first,
		                    TLOG_TILE_WIDTH, root));
		KMS_GUARD(hot_put(t, level + 1, count / TLOG_TILE_WIDTH - 1, root));
	}
	return KMS_OK;
}

/* The cache slot holding full tile (level, index), read from disk if it is
 * not there: the least recently used slot makes room. Under cache_lock. */
static kms_status cache_get(audit_tree *t, unsigned level, uint64_t index, audit_tile_slot **out)
{
	audit_tile_slot *victim = &t->cache[0];
	for (unsigned i = 0; i < AUDIT_TILE_CACHE_TILES; i++) {
		audit_tile_slot *s = &t->cache[i];
		if (s->used && s->level == level && s->index == index) {
			s->last_use = ++t->cache_clock;
			*out = s;
			return KMS_OK;
		}
		if (!s->used || (victim->used && s->last_use < victim->last_use))
			victim = s;
	}
	char path[TLOG_TILE_PATH_MAX];
	uint8_t *bytes = NULL;
	size_t len = 0;
	KMS_GUARD(tlog_tile_path(level, index, TLOG_TILE_WIDTH, path));
	KMS_GUARD(tlog_file_read(t->public_dir, path, TLOG_TILE_BYTES, &bytes, &len));
	if (len != TLOG_TILE_BYTES) {
		free(bytes);
		return KMS_FAIL(KMS_FAILED_PRECONDITION, "audit: public/%s: %zu bytes, expected %u",
		                path, len, TLOG_TILE_BYTES);
	}
	if (!victim->hashes)
		victim->hashes = malloc(TLOG_TILE_BYTES);
	if (!victim->hashes) {
		free(bytes);
		return KMS_FAIL(KMS_INTERNAL, "audit: out of memory for a tile");
	}
	memcpy(victim->hashes, bytes, TLOG_TILE_BYTES);
	free(bytes);
	victim->used = true;
	victim->level = level;
	victim->index = index;
	victim->last_use = ++t->cache_clock;
	t->tiles_read++;
	*out = victim;
	return KMS_OK;
}

/* count hashes at tile level `level` from position first (all in one tile)
 * into out. */
static kms_status hashes_at(audit_tree *t, unsigned level, uint64_t first, unsigned count,
                            uint8_t (*out)[TLOG_HASH_SIZE])
{
	uint64_t base = hot_base(t, level);
	if (first >= base) {
		memcpy(out, t->hot[level][first - base], (size_t)count * TLOG_HASH_SIZE);
		return KMS_OK;
	}
	audit_tile_slot *slot = NULL;
	pthread_mutex_lock(&t->cache_lock);
	kms_status st = cache_get(t, level, first / TLOG_TILE_WIDTH, &slot);
	if (st == KMS_OK)
		memcpy(out, slot->hashes[first % TLOG_TILE_WIDTH], (size_t)count * TLOG_HASH_SIZE);
	pthread_mutex_unlock(&t->cache_lock);
	return st;
}

kms_status audit_tree_reader(void *ctx, unsigned level, uint64_t index,
                             uint8_t out[static TLOG_HASH_SIZE])
{
	audit_tree *t = ctx;
	unsigned tile_level = level / TLOG_TILE_HEIGHT;
	unsigned rise = level % TLOG_TILE_HEIGHT;
	unsigned count = 1u << rise;
	KMS_ENSURE(tile_level < TLOG_TILE_LEVELS && index < (UINT64_C(1) << (63 - level)),
	           KMS_NOT_FOUND, "audit: no subtree %llu at level %u", (unsigned long long)index,
	           level);
	uint64_t first = index << rise;
	KMS_ENSURE(first + count <= level_count(t->size, tile_level), KMS_NOT_FOUND,
	           "audit: no subtree %llu at level %u in a tree of %llu", (unsigned long long)index,
	           level, (unsigned long long)t->size);
	uint8_t hashes[TLOG_TILE_WIDTH / 2][TLOG_HASH_SIZE];
	KMS_GUARD(hashes_at(t, tile_level, first, count, hashes));
	return tlog_root((const uint8_t (*)[TLOG_HASH_SIZE])hashes, count, out);
}

kms_status audit_tree_offset(const audit_tree *t, uint64_t i, uint64_t *offset)
{
	KMS_ENSURE(i >= t->flushed && i <= t->size, KMS_INTERNAL,
	           "audit: the offset of record %llu is not in memory", (unsigned long long)i);
	*offset = i == t->size ? t->end : t->offsets[i - t->flushed];
	return KMS_OK;
}

kms_status audit_tree_write_full(audit_tree *t, uint64_t upto, tlog_entry_reader read, void *ctx)
{
	KMS_ENSURE(upto % TLOG_TILE_WIDTH == 0 && upto >= t->flushed && upto <= t->size,
	           KMS_INTERNAL, "audit: cannot write the tiles below %llu", (unsigned long long)upto);
	uint8_t hashes[TLOG_TILE_WIDTH][TLOG_HASH_SIZE];
	char path[TLOG_TILE_PATH_MAX];
	for (unsigned level = 0; level < tlog_tile_levels(upto); level++) {
		uint64_t full = tlog_tile_full_count(upto, level);
		for (uint64_t k = tlog_tile_full_count(t->flushed, level); k < full; k++) {
			KMS_GUARD(tlog_tile_path(level, k, TLOG_TILE_WIDTH, path));
			KMS_GUARD(hashes_at(t, level, k * TLOG_TILE_WIDTH, TLOG_TILE_WIDTH, hashes));
			KMS_GUARD(tlog_file_write(t->public_dir, path, &hashes[0][0], TLOG_TILE_BYTES,
			                          true));
		}
	}
	return tlog_bundles_write(t->public_dir, read, ctx, t->flushed, upto);
}

void audit_tree_drop(audit_tree *t, uint64_t upto)
{
	if (upto <= t->flushed || upto > t->size || upto % TLOG_TILE_WIDTH != 0)
		return;
	for (unsigned level = 0; level < TLOG_TILE_LEVELS; level++) {
		uint64_t old_base = hot_base(t, level);
		uint64_t new_base = tlog_tile_full_count(upto, level) * TLOG_TILE_WIDTH;
		uint64_t count = level_count(t->size, level);
		if (new_base == old_base || count < new_base)
			continue;
		memmove(t->hot[level], t->hot[level][new_base - old_base],
		        (size_t)(count - new_base) * TLOG_HASH_SIZE);
	}
	memmove(t->offsets, t->offsets + (upto - t->flushed),
	        (size_t)(t->size - upto) * sizeof *t->offsets);
	t->flushed = upto;
}

void audit_tree_memory(audit_tree *t, audit_memory *out)
{
	memset(out, 0, sizeof *out);
	for (unsigned level = 0; level < TLOG_TILE_LEVELS; level++)
		out->tree_bytes += t->hot_cap[level] * TLOG_HASH_SIZE;
	out->tree_bytes += (uint64_t)AUDIT_HOT_MAX * sizeof *t->offsets;
	out->hot_entries = t->size - t->flushed;
	pthread_mutex_lock(&t->cache_lock);
	for (unsigned i = 0; i < AUDIT_TILE_CACHE_TILES; i++)
		if (t->cache[i].hashes) {
			out->cache_tiles += t->cache[i].used;
			out->cache_bytes += TLOG_TILE_BYTES;
		}
	out->tiles_read = t->tiles_read;
	pthread_mutex_unlock(&t->cache_lock);
}
