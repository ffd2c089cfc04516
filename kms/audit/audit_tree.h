/*
 * audit_tree.h: the audit log's Merkle tree in bounded memory
 * (docs/audit-log.md, "Memory and start-up").
 *
 * The tree is kept as C2SP hash tiles. Tile level L holds the hashes at
 * tree level 8L; every full tile below `flushed` (a multiple of 256
 * entries) is on disk under public/tile/ and immutable, and so is every
 * full entry bundle. Memory holds, for each tile level, only the hashes
 * from the first tile that is not yet on disk up to the tree's size (the
 * "hot" tiles: at most AUDIT_HOT_MAX leaf hashes, and the partial tile of
 * every level above, which is the tree's right edge), the log.bin offset
 * of each entry from `flushed` on, and a fixed cache of full tiles read
 * back from disk (AUDIT_TILE_CACHE_TILES). So the memory is the same for a
 * log of a thousand entries and one of a billion.
 *
 * A hash below `flushed` is read from its full tile on disk (through the
 * cache); an entry below `flushed` from its full entry bundle.
 *
 * Not thread-safe by itself but for the tile cache (its own mutex): the
 * caller holds a lock around it (kmsd: tree_lock, readers shared).
 */
#ifndef KMS_AUDIT_TREE_H
#define KMS_AUDIT_TREE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

#include "common/tlog/tlog_merkle.h"
#include "common/tlog/tlog_tiles.h"

/* Leaf hashes (and offsets) kept in memory at most: 128 level-0 tiles,
 * 1 MiB of hashes and 256 KiB of offsets. Past it the writer publishes
 * (which writes the full tiles) before it takes another batch. */
#define AUDIT_HOT_MAX (128u * TLOG_TILE_WIDTH)
/* Full tiles read back from disk and kept: 64 of 8 KiB, 512 KiB. */
#define AUDIT_TILE_CACHE_TILES 64u
/* What the tree holds at most, whatever the log's length: the hot tiles
 * and offsets (1,372,160 bytes, allocated at open) and the cache
 * (524,288): under 2 MiB. audit_get_stats reports both. */
#define AUDIT_MEMORY_MAX (2u << 20)

typedef struct audit_tile_slot {
	bool used;
	unsigned level;
	uint64_t index;
	uint64_t last_use;
	uint8_t (*hashes)[TLOG_HASH_SIZE]; /* TLOG_TILE_WIDTH of them, allocated on first use */
} audit_tile_slot;

typedef struct audit_tree {
	const char *public_dir;
	uint64_t size;
	uint64_t flushed;                             /* multiple of 256 */
	uint64_t end;                                 /* offset in log.bin after the last record */
	uint8_t (*hot[TLOG_TILE_LEVELS])[TLOG_HASH_SIZE];
	uint64_t hot_cap[TLOG_TILE_LEVELS];
	uint64_t *offsets;                            /* entries flushed..size-1 */

	pthread_mutex_t cache_lock;
	audit_tile_slot cache[AUDIT_TILE_CACHE_TILES];
	uint64_t cache_clock;
	uint64_t tiles_read;                          /* from disk, for tests and /metrics */
} audit_tree;

/* Memory the tree holds, for tests and /metrics. */
typedef struct audit_memory {
	uint64_t tree_bytes;        /* hot tiles and offsets (fixed at open) */
	uint64_t cache_bytes;       /* tiles held by the cache */
	uint64_t cache_tiles;
	uint64_t hot_entries;       /* leaf hashes in memory: size - flushed */
	uint64_t tiles_read;        /* full tiles read back from disk so far */
} audit_memory;

/* An empty tree whose tiles live under public_dir (which must outlive it). */
kms_status audit_tree_init(audit_tree *t, const char *public_dir) KMS_MUST_USE;
void audit_tree_free(audit_tree *t);

/* Resumes at size p (a multiple of 256) whose full tiles are on disk:
 * reads the partial tile of every level above 0 at size p. end is the
 * offset of record p in log.bin. */
kms_status audit_tree_resume(audit_tree *t, uint64_t p, uint64_t end) KMS_MUST_USE;

/* Room for n more leaves without dropping anything. */
bool audit_tree_has_room(const audit_tree *t, uint64_t n);

/* Appends a leaf whose record starts at offset and is len bytes long. */
kms_status audit_tree_append(audit_tree *t, const uint8_t hash[static TLOG_HASH_SIZE],
                             uint64_t offset, uint64_t len) KMS_MUST_USE;

/* A tlog_hash_reader over the tree (ctx is the tree): memory, or a full
 * tile on disk below `flushed`. */
kms_status audit_tree_reader(void *ctx, unsigned level, uint64_t index,
                             uint8_t out[static TLOG_HASH_SIZE]) KMS_MUST_USE;

/* The offset in log.bin of record i (flushed <= i <= size: size gives `end`). */
kms_status audit_tree_offset(const audit_tree *t, uint64_t i, uint64_t *offset) KMS_MUST_USE;

/* Writes every full tile and full entry bundle below `upto` (a multiple of
 * 256, <= size) that is not on disk yet, or checks it against the file
 * there. Entries are read through read. Does not drop anything. */
kms_status audit_tree_write_full(audit_tree *t, uint64_t upto, tlog_entry_reader read,
                                 void *ctx) KMS_MUST_USE;

/* Forgets the hashes and offsets below upto (a multiple of 256, flushed <=
 * upto <= size), whose full tiles and bundles must be on disk. */
void audit_tree_drop(audit_tree *t, uint64_t upto);

void audit_tree_memory(audit_tree *t, audit_memory *out);

static inline uint64_t audit_floor_tile(uint64_t n)
{
	return n & ~(uint64_t)(TLOG_TILE_WIDTH - 1);
}

#endif
