/*
 * tlog_tiles.h: the C2SP tlog-tiles layout on disk (c2sp.org/tlog-tiles),
 * the files a log publishes and any mirror or client reads:
 *
 *   checkpoint                  the signed checkpoint (tlog_note.h); mutable
 *   tile/<L>/<N>                a full hash tile: 256 hashes, 8192 bytes
 *   tile/<L>/<N>.p/<W>          a partial hash tile: W = 1..255 hashes
 *   tile/entries/<N>            a full entry bundle: 256 entries
 *   tile/entries/<N>.p/<W>      a partial entry bundle: W entries
 *
 * Tile <N> at level <L> holds the hashes at tree level 8L (the roots of
 * complete subtrees of 256^L leaves) at positions N*256 .. N*256+W-1. <N>
 * is written in 3-digit path elements, all but the last prefixed with 'x'
 * (1234067 -> x001/x234/067). For a tree of size s, level L has
 * s >> 8(L+1) full tiles and one partial tile of (s >> 8L) & 255 hashes when
 * that is not 0. A bundle holds the entries of the level-0 tile of the same
 * path, each as a big-endian uint16 length and the bytes.
 *
 * Every file but the checkpoint is immutable: the writers skip a file that
 * already holds the same bytes and fail (KMS_FAILED_PRECONDITION) on one
 * that holds different bytes. Files are written to a temporary name in the
 * same directory, fsync'ed, then renamed into place, and the directory is
 * fsync'ed. A writer publishes bundles and tiles first, then the
 * checkpoint, so no checkpoint names a file that does not exist yet.
 *
 * The writers block on file I/O; everything else here is pure.
 */
#ifndef KMS_TLOG_TILES_H
#define KMS_TLOG_TILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

#include "common/tlog/tlog_merkle.h"

#define TLOG_TILE_HEIGHT 8                          /* tree levels a tile spans */
#define TLOG_TILE_WIDTH (1u << TLOG_TILE_HEIGHT)    /* 256 hashes or entries */
#define TLOG_TILE_BYTES (TLOG_TILE_WIDTH * TLOG_HASH_SIZE) /* 8192 */
/* 256^8 = 2^64 > TLOG_TREE_SIZE_MAX: tile levels 0..7 cover every tree. */
#define TLOG_TILE_LEVELS 8
/* The spec's bound on <L> in a path (0..63). */
#define TLOG_TILE_LEVEL_PATH_MAX 63

#define TLOG_ENTRY_LENGTH_SIZE 2      /* big-endian uint16 before each entry */
#define TLOG_ENTRY_MIN 1              /* kms entries are JSON objects, never empty */
#define TLOG_ENTRY_MAX 65535          /* what a uint16 length can say */
#define TLOG_BUNDLE_BYTES_MAX (TLOG_TILE_WIDTH * (TLOG_ENTRY_LENGTH_SIZE + TLOG_ENTRY_MAX))

/* "tile/entries/x018/x446/x744/x073/x709/x551/615.p/255" is 52 bytes. */
#define TLOG_TILE_PATH_MAX 64
#define TLOG_CHECKPOINT_PATH "checkpoint"

/* Full tiles at level `level` of a tree of tree_size leaves. */
static inline uint64_t tlog_tile_full_count(uint64_t tree_size, unsigned level)
{
	unsigned shift = TLOG_TILE_HEIGHT * (level + 1);
	return shift < 64 ? tree_size >> shift : 0;
}

/* Width of the partial tile at that level, 0 when there is none. */
static inline unsigned tlog_tile_partial_width(uint64_t tree_size, unsigned level)
{
	unsigned shift = TLOG_TILE_HEIGHT * level;
	return shift < 64 ? (unsigned)((tree_size >> shift) & (TLOG_TILE_WIDTH - 1)) : 0;
}

/* Hashes at tree level 8 * level: how many positions the tiles of that
 * level cover, full and partial together. */
static inline uint64_t tlog_tile_level_hashes(uint64_t tree_size, unsigned level)
{
	unsigned shift = TLOG_TILE_HEIGHT * level;
	return shift < 64 ? tree_size >> shift : 0;
}

/* The number of tile levels that have a tile (0 for the empty tree). */
unsigned tlog_tile_levels(uint64_t tree_size);

/* "tile/<level>/<index>" (width 256) or "tile/<level>/<index>.p/<width>"
 * (width 1..255), NUL-terminated. KMS_INVALID_ARGUMENT for a level over 63
 * or a width of 0 or over 256; out is then "". */
kms_status tlog_tile_path(unsigned level, uint64_t index, unsigned width,
                          char out[static TLOG_TILE_PATH_MAX]) KMS_MUST_USE;

/* "tile/entries/<index>[.p/<width>]", as tlog_tile_path. */
kms_status tlog_bundle_path(uint64_t index, unsigned width,
                            char out[static TLOG_TILE_PATH_MAX]) KMS_MUST_USE;

/* The contents of tile (level, index, width): width hashes read through
 * read at tree level 8 * level, positions index * 256 onward. */
kms_status tlog_tile_hashes(tlog_hash_reader read, void *ctx, unsigned level, uint64_t index,
                            unsigned width,
                            uint8_t out[static TLOG_TILE_WIDTH][TLOG_HASH_SIZE]) KMS_MUST_USE;

/* Writes the hash tiles of a tree of new_size leaves that a tree of
 * old_size leaves did not have (old_size 0: all of them): the full tiles
 * that filled up in between and the partial tiles at new_size. dir must
 * exist; subdirectories are created. Hashes come from read. */
kms_status tlog_tiles_write(const char *dir, tlog_hash_reader read, void *ctx,
                            uint64_t old_size, uint64_t new_size) KMS_MUST_USE;

/* Copies entry index into buf[0..cap) (cap is TLOG_ENTRY_MAX) and sets
 * *len. Entries must be TLOG_ENTRY_MIN..TLOG_ENTRY_MAX bytes. */
typedef kms_status (*tlog_entry_reader)(void *ctx, uint64_t index, uint8_t *buf, size_t cap,
                                        size_t *len);

/* As tlog_tiles_write, for the entry bundles. */
kms_status tlog_bundles_write(const char *dir, tlog_entry_reader read, void *ctx,
                              uint64_t old_size, uint64_t new_size) KMS_MUST_USE;

/* Replaces dir/checkpoint with note[0..len), atomically and durably. */
kms_status tlog_checkpoint_publish(const char *dir, const char *note, size_t len) KMS_MUST_USE;

/* One entry of a parsed bundle: a view into the bundle's bytes. */
typedef struct tlog_entry_span {
	const uint8_t *bytes;
	size_t len;
} tlog_entry_span;

/* Parses bundle[0..len) strictly: exactly `width` entries (1..256), each
 * TLOG_ENTRY_MIN bytes or more, no bytes left over. first_index (the index
 * of the bundle's first entry) and path only word the message, e.g. "entry
 * 17 in tile/entries/000: length 300 runs past the end of the bundle". On
 * failure (KMS_INVALID_CIPHERTEXT) out is zeroed. */
kms_status tlog_bundle_parse(const uint8_t *bundle, size_t len, unsigned width,
                             uint64_t first_index, const char *path,
                             tlog_entry_span out[static TLOG_TILE_WIDTH]) KMS_MUST_USE;

/* Reads dir/path, a regular file of at most max bytes, into a malloc'ed
 * buffer for the caller to free (*out is non-NULL even when empty).
 * KMS_NOT_FOUND when the file does not exist ("<path>: missing"),
 * KMS_INVALID_CIPHERTEXT when it is larger than max or not a regular file,
 * KMS_INTERNAL for other I/O errors. */
kms_status tlog_file_read(const char *dir, const char *path, size_t max, uint8_t **out,
                          size_t *len) KMS_MUST_USE;

/* ---- reading a log directory ---- */

/* Where a log's files come from: reads path (relative to the log's root,
 * "checkpoint" or a tile or bundle path) into a malloc'ed buffer of at most
 * max bytes for the caller to free (also on failure). Statuses as
 * tlog_file_read; KMS_UNAVAILABLE when the source cannot be reached (a
 * server that does not answer). */
typedef kms_status (*tlog_file_source)(void *ctx, const char *path, size_t max, uint8_t **out,
                                       size_t *len);

/* A tlog_file_source over a directory: ctx is the directory's path. */
kms_status tlog_dir_source(void *ctx, const char *path, size_t max, uint8_t **out,
                           size_t *len) KMS_MUST_USE;

/* Entry bundles a tree of tree_size leaves has (the last may be partial). */
static inline uint64_t tlog_bundle_count(uint64_t tree_size)
{
	return tree_size / TLOG_TILE_WIDTH + (tree_size % TLOG_TILE_WIDTH != 0);
}

/* Entries in bundle k (< tlog_bundle_count) of a tree of tree_size leaves. */
static inline unsigned tlog_bundle_width(uint64_t tree_size, uint64_t k)
{
	uint64_t left = tree_size - k * TLOG_TILE_WIDTH;
	return left >= TLOG_TILE_WIDTH ? TLOG_TILE_WIDTH : (unsigned)left;
}

/* Reads bundle k of a tree of tree_size leaves from dir and parses it
 * strictly (tlog_bundle_parse): *width entries in spans, pointing into
 * *bytes, which the caller frees (also on failure). path is set to the
 * bundle's path first, for the caller's messages. Statuses as
 * tlog_file_read and tlog_bundle_parse; KMS_INVALID_ARGUMENT for a k the
 * tree has no bundle for. */
kms_status tlog_bundle_read(const char *dir, uint64_t tree_size, uint64_t k,
                            char path[static TLOG_TILE_PATH_MAX], uint8_t **bytes,
                            tlog_entry_span spans[static TLOG_TILE_WIDTH],
                            unsigned *width) KMS_MUST_USE;

/* As tlog_bundle_read, from source. */
kms_status tlog_bundle_read_from(tlog_file_source source, void *ctx, uint64_t tree_size,
                                 uint64_t k, char path[static TLOG_TILE_PATH_MAX],
                                 uint8_t **bytes, tlog_entry_span spans[static TLOG_TILE_WIDTH],
                                 unsigned *width) KMS_MUST_USE;

/* One hash tile as read from a directory. */
typedef struct tlog_dir_tile {
	bool loaded;
	uint64_t index;
	unsigned width;
	char path[TLOG_TILE_PATH_MAX];
	uint8_t hashes[TLOG_TILE_WIDTH][TLOG_HASH_SIZE];
} tlog_dir_tile;

/*
 * The hash tiles of a log directory, as of one tree size, for roots and
 * proofs from the files alone: O(log n) tile reads, no tree rebuilt from
 * the entries. It keeps the last tile read at each tile level, because a
 * proof walks up the tree one tile a level. About 66 KB: allocate it.
 * Treat the fields as private.
 */
typedef struct tlog_dir_tiles {
	tlog_file_source source;
	void *source_ctx;
	uint64_t tree_size;
	tlog_dir_tile level[TLOG_TILE_LEVELS];
} tlog_dir_tiles;

/* Reads dir's tiles as of tree_size; dir must outlive t. */
void tlog_dir_tiles_init(tlog_dir_tiles *t, const char *dir, uint64_t tree_size);

/* As tlog_dir_tiles_init, the tiles read from source (ctx must outlive t). */
void tlog_dir_tiles_init_from(tlog_dir_tiles *t, tlog_file_source source, void *ctx,
                              uint64_t tree_size);

/* Reads the tiles as of tree_size from now on. The tiles kept for another
 * size are forgotten: a partial tile's name has its width. */
void tlog_dir_tiles_resize(tlog_dir_tiles *t, uint64_t tree_size);

/* Tile index at tile level `level` of the tree, read (or kept from the last
 * call) and checked to hold exactly its width in hashes. KMS_NOT_FOUND
 * ("<path>: missing"), KMS_INVALID_CIPHERTEXT ("<path>: 8160 bytes,
 * expected 8192 (256 hashes)"), KMS_INTERNAL for a tile the tree does not
 * have or an I/O error. *out stays valid until the next call for that
 * level or a resize. */
kms_status tlog_dir_tile_get(tlog_dir_tiles *t, unsigned level, uint64_t index,
                             const tlog_dir_tile **out) KMS_MUST_USE;

/* A tlog_hash_reader over a tlog_dir_tiles (ctx): a subtree at tree level
 * h is the root of 2^(h mod 8) hashes of one tile at tile level h / 8. */
kms_status tlog_dir_tiles_reader(void *ctx, unsigned level, uint64_t index,
                                 uint8_t out[static TLOG_HASH_SIZE]) KMS_MUST_USE;

/* Copies from src to dst every file a tree of tree_size leaves needs, as
 * tlog_verify_dir reads them: the entry bundles and the hash tiles, full
 * and partial, at every level. Not the checkpoint: the caller writes it
 * last (tlog_checkpoint_publish). Each file is written as tlog_file_write
 * writes an immutable one, so a copy can be brought up to date in place.
 * *files gets how many files were copied or found identical. Statuses as
 * tlog_file_read and tlog_file_write. */
kms_status tlog_dir_copy(const char *src, const char *dst, uint64_t tree_size,
                         uint64_t *files) KMS_MUST_USE;

/* Writes dir/path atomically and durably, creating its directories. An
 * immutable file that exists already must hold the same bytes: then
 * nothing is written; otherwise KMS_FAILED_PRECONDITION. A mutable file is
 * replaced. */
kms_status tlog_file_write(const char *dir, const char *path, const uint8_t *bytes, size_t len,
                           bool immutable) KMS_MUST_USE;

#endif
