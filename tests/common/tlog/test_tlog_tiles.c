/*
 * The C2SP tlog-tiles layout: paths (the spec's examples), which tiles a
 * tree of each size has (the spec's examples), the files written for a few
 * sizes checked against an independent computation, entry bundle parsing
 * (strict), and immutability of what was published.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "tests/support/tlog_test_util.h"
#include "common/tlog/tlog_tiles.h"

#define ENTRY_CAP 256
#define MAX_LISTED 4096

static void assert_tile_path(unsigned level, uint64_t index, unsigned width, const char *want)
{
	char path[TLOG_TILE_PATH_MAX];
	assert_int_equal(tlog_tile_path(level, index, width, path), KMS_OK);
	assert_string_equal(path, want);
}

static void assert_bundle_path(uint64_t index, unsigned width, const char *want)
{
	char path[TLOG_TILE_PATH_MAX];
	assert_int_equal(tlog_bundle_path(index, width, path), KMS_OK);
	assert_string_equal(path, want);
}

static void paths(void **state)
{
	char path[TLOG_TILE_PATH_MAX];
	assert_tile_path(0, 0, 256, "tile/0/000");
	assert_tile_path(0, 1234067, 256, "tile/0/x001/x234/067"); /* the spec's example */
	assert_tile_path(0, 0, 5, "tile/0/000.p/5");
	assert_tile_path(1, 0, 1, "tile/1/000.p/1");
	assert_tile_path(2, 999, 255, "tile/2/999.p/255");
	assert_tile_path(3, 1000, 256, "tile/3/x001/000");
	assert_tile_path(0, 1000000, 17, "tile/0/x001/x000/000.p/17");
	assert_tile_path(63, 5, 256, "tile/63/005");
	assert_tile_path(0, UINT64_MAX, 255, "tile/0/x018/x446/x744/x073/x709/x551/615.p/255");
	assert_bundle_path(0, 256, "tile/entries/000");
	assert_bundle_path(1234067, 255, "tile/entries/x001/x234/067.p/255");
	assert_bundle_path(1, 44, "tile/entries/001.p/44");
	assert_bundle_path(UINT64_MAX, 255, "tile/entries/x018/x446/x744/x073/x709/x551/615.p/255");
	assert_true(strlen("tile/entries/x018/x446/x744/x073/x709/x551/615.p/255") < TLOG_TILE_PATH_MAX);

	assert_int_equal(tlog_tile_path(64, 0, 256, path), KMS_INVALID_ARGUMENT);
	assert_string_equal(path, "");
	assert_int_equal(tlog_tile_path(0, 0, 0, path), KMS_INVALID_ARGUMENT);
	assert_int_equal(tlog_tile_path(0, 0, 257, path), KMS_INVALID_ARGUMENT);
	assert_int_equal(tlog_bundle_path(0, 0, path), KMS_INVALID_ARGUMENT);
}

static void tile_counts(void **state)
{
	/* The spec: "a tree of size 70,000 will be represented by 273 full
	 * level 0 tiles, one partial level 0 tile of width 112, one full level 1
	 * tile, one partial level 1 tile of width 17, and one partial level 2
	 * tile of width 1". */
	assert_int_equal(tlog_tile_levels(70000), 3);
	assert_int_equal(tlog_tile_full_count(70000, 0), 273);
	assert_int_equal(tlog_tile_partial_width(70000, 0), 112);
	assert_int_equal(tlog_tile_full_count(70000, 1), 1);
	assert_int_equal(tlog_tile_partial_width(70000, 1), 17);
	assert_int_equal(tlog_tile_full_count(70000, 2), 0);
	assert_int_equal(tlog_tile_partial_width(70000, 2), 1);
	/* "a tree of size 256 will be represented by a full level 0 tile and a
	 * partial level 1 tile of width 1". */
	assert_int_equal(tlog_tile_levels(256), 2);
	assert_int_equal(tlog_tile_full_count(256, 0), 1);
	assert_int_equal(tlog_tile_partial_width(256, 0), 0);
	assert_int_equal(tlog_tile_full_count(256, 1), 0);
	assert_int_equal(tlog_tile_partial_width(256, 1), 1);
	assert_int_equal(tlog_tile_levels(0), 0);
	assert_int_equal(tlog_tile_levels(1), 1);
	assert_int_equal(tlog_tile_levels(TLOG_TREE_SIZE_MAX), 8);
	assert_int_equal(tlog_tile_partial_width(TLOG_TREE_SIZE_MAX, 7), 128);
	assert_int_equal(tlog_tile_full_count(UINT64_MAX, 7), 0);
}

/* Every file under dir, relative, sorted. */
static char listed[MAX_LISTED][TLOG_TILE_PATH_MAX];
static size_t listed_n;
static size_t listed_root_len;

static int list_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	if (type == FTW_F) {
		assert_true(listed_n < MAX_LISTED);
		snprintf(listed[listed_n++], TLOG_TILE_PATH_MAX, "%s", path + listed_root_len + 1);
	}
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void list_files(const char *dir)
{
	listed_n = 0;
	listed_root_len = strlen(dir);
	assert_int_equal(nftw(dir, list_one, 16, FTW_PHYS), 0);
	qsort(listed, listed_n, sizeof listed[0], cmp_str);
}

/* The expected file set of a tree of size n, sorted. */
static size_t expected_files(uint64_t n, char (*out)[TLOG_TILE_PATH_MAX])
{
	size_t count = 0;
	for (unsigned level = 0; level < tlog_tile_levels(n); level++) {
		uint64_t full = tlog_tile_full_count(n, level);
		for (uint64_t k = 0; k < full; k++)
			assert_int_equal(tlog_tile_path(level, k, 256, out[count++]), KMS_OK);
		unsigned w = tlog_tile_partial_width(n, level);
		if (w)
			assert_int_equal(tlog_tile_path(level, full, w, out[count++]), KMS_OK);
	}
	for (uint64_t k = 0; k < n / 256; k++)
		assert_int_equal(tlog_bundle_path(k, 256, out[count++]), KMS_OK);
	if (n % 256)
		assert_int_equal(tlog_bundle_path(n / 256, n % 256, out[count++]), KMS_OK);
	qsort(out, count, TLOG_TILE_PATH_MAX, cmp_str);
	return count;
}

/* Checks every tile file of a tree of n test entries (seed 0) against
 * MTH over leaf ranges computed naively, and every bundle against the
 * entries. */
static void check_log_files(const char *dir, uint64_t n)
{
	uint8_t (*leaves)[TLOG_HASH_SIZE] = test_leaf_hashes(n);
	char path[TLOG_TILE_PATH_MAX], entry[ENTRY_CAP];
	static char want[MAX_LISTED][TLOG_TILE_PATH_MAX];

	list_files(dir);
	size_t count = expected_files(n, want);
	assert_int_equal(listed_n, count);
	for (size_t i = 0; i < count; i++)
		assert_string_equal(listed[i], want[i]);

	for (unsigned level = 0; level < tlog_tile_levels(n); level++) {
		uint64_t span = UINT64_C(1) << (8 * level); /* leaves under one hash */
		uint64_t hashes = n / span;
		for (uint64_t k = 0; k * 256 < hashes; k++) {
			unsigned width = hashes - k * 256 >= 256 ? 256 : (unsigned)(hashes - k * 256);
			assert_int_equal(tlog_tile_path(level, k, width, path), KMS_OK);
			size_t len;
			uint8_t *tile = test_read_file(dir, path, &len);
			assert_int_equal(len, (size_t)width * TLOG_HASH_SIZE);
			for (unsigned i = 0; i < width; i++) {
				uint8_t mth[TLOG_HASH_SIZE];
				uint64_t first = (k * 256 + i) * span;
				/* MTH(D[(n*256+i)*256^l : (n*256+i+1)*256^l]), the spec's words */
				naive_mth((const uint8_t(*)[TLOG_HASH_SIZE])leaves, first, first + span, mth);
				assert_memory_equal(tile + (size_t)i * TLOG_HASH_SIZE, mth, TLOG_HASH_SIZE);
			}
			free(tile);
		}
	}
	for (uint64_t k = 0; k * 256 < n; k++) {
		unsigned width = n - k * 256 >= 256 ? 256 : (unsigned)(n - k * 256);
		assert_int_equal(tlog_bundle_path(k, width, path), KMS_OK);
		size_t len;
		uint8_t *bundle = test_read_file(dir, path, &len);
		size_t off = 0;
		for (unsigned i = 0; i < width; i++) {
			size_t elen = test_entry(k * 256 + i, 0, entry, sizeof entry);
			assert_true(off + 2 + elen <= len);
			assert_int_equal(bundle[off], elen >> 8);
			assert_int_equal(bundle[off + 1], elen & 0xff);
			assert_memory_equal(bundle + off + 2, entry, elen);
			off += 2 + elen;
		}
		assert_int_equal(off, len);
		free(bundle);
	}
	free(leaves);
}

static void build_tree(tlog_tree *tree, uint64_t n)
{
	char entry[ENTRY_CAP];
	tlog_tree_init(tree);
	for (uint64_t i = 0; i < n; i++) {
		size_t len = test_entry(i, 0, entry, sizeof entry);
		assert_int_equal(tlog_tree_append_entry(tree, (const uint8_t *)entry, len), KMS_OK);
	}
}

static void write_all(const char *dir, tlog_tree *tree, uint64_t old_size, uint64_t n)
{
	unsigned seed = 0;
	assert_int_equal(tlog_bundles_write(dir, test_entry_reader, &seed, old_size, n), KMS_OK);
	assert_int_equal(tlog_tiles_write(dir, tlog_tree_reader, tree, old_size, n), KMS_OK);
}

static void files_for_sizes(void **state)
{
	static const uint64_t sizes[] = { 1, 255, 256, 257, 65536 + 300 };
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		char dir[4096];
		tlog_tree tree;
		test_mkdtemp(dir, "tiles");
		build_tree(&tree, sizes[s]);
		write_all(dir, &tree, 0, sizes[s]);
		check_log_files(dir, sizes[s]);
		/* Writing again changes nothing and is not an error. */
		write_all(dir, &tree, 0, sizes[s]);
		check_log_files(dir, sizes[s]);
		tlog_tree_free(&tree);
		test_rmdir(dir);
	}
}

static void incremental_equals_from_scratch(void **state)
{
	char dir[4096];
	tlog_tree tree;
	test_mkdtemp(dir, "incr");
	build_tree(&tree, 600);
	write_all(dir, &tree, 0, 100);
	assert_true(test_file_exists(dir, "tile/0/000.p/100"));
	write_all(dir, &tree, 100, 300);
	write_all(dir, &tree, 300, 600);
	/* Full tiles appear when they fill up; the old partials stay (a log may
	 * delete them); the new ones are there. */
	assert_true(test_file_exists(dir, "tile/0/000"));
	assert_true(test_file_exists(dir, "tile/0/001"));
	assert_true(test_file_exists(dir, "tile/0/002.p/88"));
	assert_true(test_file_exists(dir, "tile/1/000.p/2"));
	assert_true(test_file_exists(dir, "tile/1/000.p/1"));
	assert_true(test_file_exists(dir, "tile/entries/001.p/44"));
	assert_true(test_file_exists(dir, "tile/entries/002.p/88"));
	/* Without the stale partials, the directory is exactly a size-600 log. */
	char full[8192];
	const char *stale[] = { "tile/0/000.p/100", "tile/0/001.p/44", "tile/1/000.p/1",
		                "tile/entries/000.p/100", "tile/entries/001.p/44" };
	for (size_t i = 0; i < sizeof stale / sizeof stale[0]; i++) {
		snprintf(full, sizeof full, "%s/%s", dir, stale[i]);
		assert_int_equal(remove(full), 0);
	}
	check_log_files(dir, 600);
	tlog_tree_free(&tree);
	test_rmdir(dir);
}

static void published_files_are_immutable(void **state)
{
	char dir[4096];
	tlog_tree tree;
	test_mkdtemp(dir, "immutable");
	build_tree(&tree, 300);
	write_all(dir, &tree, 0, 300);

	size_t len;
	uint8_t *tile = test_read_file(dir, "tile/0/000", &len);
	tile[100] ^= 1;
	test_write_file(dir, "tile/0/000", tile, len);
	assert_int_equal(tlog_tiles_write(dir, tlog_tree_reader, &tree, 0, 300),
	                 KMS_FAILED_PRECONDITION);
	assert_non_null(strstr(kms_error_message(), "tile/0/000 exists with different content"));
	/* It was not overwritten. */
	uint8_t *again = test_read_file(dir, "tile/0/000", &len);
	assert_memory_equal(again, tile, len);
	free(again);
	free(tile);

	/* A longer file is a conflict too, not a read error. */
	uint8_t *bundle = test_read_file(dir, "tile/entries/001.p/44", &len);
	uint8_t *longer = malloc(len + 1);
	memcpy(longer, bundle, len);
	longer[len] = 0;
	test_write_file(dir, "tile/entries/001.p/44", longer, len + 1);
	unsigned seed = 0;
	assert_int_equal(tlog_bundles_write(dir, test_entry_reader, &seed, 0, 300),
	                 KMS_FAILED_PRECONDITION);
	assert_non_null(strstr(kms_error_message(), "tile/entries/001.p/44 exists with different content"));
	free(longer);
	free(bundle);

	/* The checkpoint is the one mutable file. */
	assert_int_equal(tlog_checkpoint_publish(dir, "one\n", 4), KMS_OK);
	assert_int_equal(tlog_checkpoint_publish(dir, "two\n", 4), KMS_OK);
	uint8_t *cp = test_read_file(dir, "checkpoint", &len);
	assert_int_equal(len, 4);
	assert_memory_equal(cp, "two\n", 4);
	free(cp);
	tlog_tree_free(&tree);
	test_rmdir(dir);
}

static kms_status empty_entry_reader(void *ctx, uint64_t index, uint8_t *buf, size_t cap,
                                     size_t *len)
{
	*len = index == 3 ? 0 : 1;
	buf[0] = 'x';
	return KMS_OK;
}

static void writer_refuses_empty_entries(void **state)
{
	char dir[4096];
	test_mkdtemp(dir, "empty");
	assert_int_equal(tlog_bundles_write(dir, empty_entry_reader, NULL, 0, 10),
	                 KMS_INVALID_ARGUMENT);
	assert_non_null(strstr(kms_error_message(), "entry 3 is 0 bytes"));
	assert_false(test_file_exists(dir, "tile/entries/000.p/10"));
	test_rmdir(dir);
}

static void file_read_bounds(void **state)
{
	char dir[4096];
	uint8_t *bytes = (uint8_t *)"x";
	size_t len = 7;
	test_mkdtemp(dir, "read");
	assert_int_equal(tlog_file_read(dir, "nope", 10, &bytes, &len), KMS_NOT_FOUND);
	assert_null(bytes);
	assert_int_equal(len, 0);
	assert_non_null(strstr(kms_error_message(), "nope: missing"));
	test_write_file(dir, "eleven", "01234567890", 11);
	assert_int_equal(tlog_file_read(dir, "eleven", 10, &bytes, &len), KMS_INVALID_CIPHERTEXT);
	assert_int_equal(tlog_file_read(dir, "eleven", 11, &bytes, &len), KMS_OK);
	assert_int_equal(len, 11);
	free(bytes);
	test_write_file(dir, "empty", "", 0);
	assert_int_equal(tlog_file_read(dir, "empty", 11, &bytes, &len), KMS_OK);
	assert_non_null(bytes);
	assert_int_equal(len, 0);
	free(bytes);
	assert_int_equal(tlog_file_write(dir, "a/b/c", (const uint8_t *)"abc", 3, true), KMS_OK);
	assert_int_equal(tlog_file_read(dir, "a", 10, &bytes, &len), KMS_INVALID_CIPHERTEXT);
	assert_non_null(strstr(kms_error_message(), "a: not a regular file"));
	test_rmdir(dir);
}

/* ---- reading a log directory ---- */

/* Every entry read back through tlog_bundle_read is the one written, and
 * a bundle the tree does not have is refused. */
static void bundles_read_back(void **state)
{
	char dir[4096], entry[ENTRY_CAP], path[TLOG_TILE_PATH_MAX];
	tlog_entry_span spans[TLOG_TILE_WIDTH];
	tlog_tree tree;
	uint8_t *bytes;
	unsigned width;
	test_mkdtemp(dir, "bread");
	build_tree(&tree, 300);
	write_all(dir, &tree, 0, 300);
	assert_int_equal(tlog_bundle_count(300), 2);
	assert_int_equal(tlog_bundle_count(256), 1);
	assert_int_equal(tlog_bundle_count(0), 0);
	for (uint64_t k = 0; k < 2; k++) {
		assert_int_equal(tlog_bundle_read(dir, 300, k, path, &bytes, spans, &width), KMS_OK);
		assert_int_equal(width, k == 0 ? 256 : 44);
		assert_string_equal(path, k == 0 ? "tile/entries/000" : "tile/entries/001.p/44");
		for (unsigned i = 0; i < width; i++) {
			size_t len = test_entry(k * TLOG_TILE_WIDTH + i, 0, entry, sizeof entry);
			assert_int_equal(spans[i].len, len);
			assert_memory_equal(spans[i].bytes, entry, len);
		}
		free(bytes);
	}
	assert_int_equal(tlog_bundle_read(dir, 300, 2, path, &bytes, spans, &width),
	                 KMS_INVALID_ARGUMENT);
	free(bytes);
	/* As of size 200 the first bundle is a partial one nobody wrote. */
	assert_int_equal(tlog_bundle_read(dir, 200, 0, path, &bytes, spans, &width), KMS_NOT_FOUND);
	assert_non_null(strstr(kms_error_message(), "tile/entries/000.p/200: missing"));
	free(bytes);
	tlog_tree_free(&tree);
	test_rmdir(dir);
}

/* Roots and proofs made from the tiles alone are the tree's, at the size
 * the tiles were written for and, after a resize, at a later one. */
static void dir_tiles_serve_roots_and_proofs(void **state)
{
	static const uint64_t indices[] = { 0, 1, 255, 256, 299, 511, 599 };
	uint8_t proof[TLOG_PROOF_MAX_HASHES][TLOG_HASH_SIZE], want[TLOG_PROOF_MAX_HASHES][TLOG_HASH_SIZE];
	uint8_t root[TLOG_HASH_SIZE], tree_root[TLOG_HASH_SIZE];
	size_t n, want_n;
	char dir[4096];
	tlog_tree tree;
	test_mkdtemp(dir, "dtiles");
	build_tree(&tree, 600);
	write_all(dir, &tree, 0, 300);
	write_all(dir, &tree, 300, 600);
	tlog_dir_tiles *tiles = malloc(sizeof *tiles);
	assert_non_null(tiles);
	tlog_dir_tiles_init(tiles, dir, 300);
	static const uint64_t sizes[] = { 300, 600 };
	for (size_t s = 0; s < 2; s++) {
		uint64_t size = sizes[s];
		tlog_dir_tiles_resize(tiles, size);
		assert_int_equal(tlog_root_at(tlog_dir_tiles_reader, tiles, size, root), KMS_OK);
		assert_int_equal(tlog_tree_root(&tree, size, tree_root), KMS_OK);
		assert_memory_equal(root, tree_root, TLOG_HASH_SIZE);
		for (size_t i = 0; i < sizeof indices / sizeof indices[0]; i++) {
			if (indices[i] >= size)
				continue;
			assert_int_equal(tlog_inclusion_proof(tlog_dir_tiles_reader, tiles, size,
			                                      indices[i], proof, &n), KMS_OK);
			assert_int_equal(tlog_inclusion_proof(tlog_tree_reader, &tree, size,
			                                      indices[i], want, &want_n), KMS_OK);
			assert_int_equal(n, want_n);
			assert_memory_equal(proof, want, n * TLOG_HASH_SIZE);
		}
	}
	assert_int_equal(tlog_consistency_proof(tlog_dir_tiles_reader, tiles, 300, 600, proof, &n),
	                 KMS_OK);
	assert_int_equal(tlog_consistency_proof(tlog_tree_reader, &tree, 300, 600, want, &want_n),
	                 KMS_OK);
	assert_int_equal(n, want_n);
	assert_memory_equal(proof, want, n * TLOG_HASH_SIZE);

	/* A tile cut short, and one removed, are named. */
	const tlog_dir_tile *tile;
	size_t len;
	uint8_t *bytes = test_read_file(dir, "tile/0/000", &len);
	test_write_file(dir, "tile/0/000", bytes, len - TLOG_HASH_SIZE);
	free(bytes);
	tlog_dir_tiles_init(tiles, dir, 600);
	assert_int_equal(tlog_dir_tile_get(tiles, 0, 0, &tile), KMS_INVALID_CIPHERTEXT);
	assert_null(tile);
	assert_non_null(strstr(kms_error_message(),
	                       "tile/0/000: 8160 bytes, expected 8192 (256 hashes)"));
	char full[8192];
	snprintf(full, sizeof full, "%s/tile/1/000.p/2", dir);
	assert_int_equal(remove(full), 0);
	assert_int_equal(tlog_root_at(tlog_dir_tiles_reader, tiles, 600, root), KMS_NOT_FOUND);
	assert_non_null(strstr(kms_error_message(), "tile/1/000.p/2: missing"));
	/* A tile the tree does not have is the caller's bug. */
	assert_int_equal(tlog_dir_tile_get(tiles, 0, 3, &tile), KMS_INTERNAL);
	free(tiles);
	tlog_tree_free(&tree);
	test_rmdir(dir);
}

/* ---- bundle parsing ---- */

static size_t put_entry(uint8_t *out, const char *s, size_t len)
{
	out[0] = (uint8_t)(len >> 8);
	out[1] = (uint8_t)len;
	memcpy(out + 2, s, len);
	return 2 + len;
}

static void assert_bundle_fails(const uint8_t *b, size_t len, unsigned width, const char *msg)
{
	tlog_entry_span spans[TLOG_TILE_WIDTH];
	assert_int_equal(tlog_bundle_parse(b, len, width, 512, "tile/entries/002.p/3", spans),
	                 KMS_INVALID_CIPHERTEXT);
	if (strstr(kms_error_message(), msg) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", kms_error_message(), msg);
	assert_null(spans[0].bytes);
	assert_int_equal(spans[0].len, 0);
}

static void bundle_parse(void **state)
{
	uint8_t b[64];
	tlog_entry_span spans[TLOG_TILE_WIDTH];
	size_t n = 0;
	n += put_entry(b + n, "a", 1);
	n += put_entry(b + n, "bc", 2);
	n += put_entry(b + n, "def", 3);
	assert_int_equal(tlog_bundle_parse(b, n, 3, 512, "tile/entries/002.p/3", spans), KMS_OK);
	assert_int_equal(spans[0].len, 1);
	assert_memory_equal(spans[0].bytes, "a", 1);
	assert_int_equal(spans[1].len, 2);
	assert_memory_equal(spans[2].bytes, "def", 3);

	assert_bundle_fails(b, n, 2, "tile/entries/002.p/3: 3 entries, expected 2");
	assert_bundle_fails(b, n, 4, "tile/entries/002.p/3: 3 entries, expected 4");
	assert_bundle_fails(b, n - 1, 3,
	                    "entry 514 in tile/entries/002.p/3: length 3 runs past the end");
	assert_bundle_fails(b, n - 4, 3, "entry 514 in tile/entries/002.p/3: 1 byte where");
	assert_bundle_fails(b, 0, 3, "0 entries, expected 3");
	/* Bytes after the last entry that are not an entry. */
	b[n] = 0x00;
	assert_bundle_fails(b, n + 1, 3, "1 bytes left over after its 3 entries");
	/* A zero-length entry. */
	size_t m = put_entry(b, "a", 1);
	m += put_entry(b + m, "", 0);
	m += put_entry(b + m, "x", 1);
	assert_bundle_fails(b, m, 3, "entry 513 in tile/entries/002.p/3: empty entry");
	assert_int_equal(tlog_bundle_parse(b, m, 0, 0, "x", spans), KMS_INVALID_ARGUMENT);
	assert_int_equal(tlog_bundle_parse(b, m, 257, 0, "x", spans), KMS_INVALID_ARGUMENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(paths),
		cmocka_unit_test(tile_counts),
		cmocka_unit_test(files_for_sizes),
		cmocka_unit_test(incremental_equals_from_scratch),
		cmocka_unit_test(published_files_are_immutable),
		cmocka_unit_test(writer_refuses_empty_entries),
		cmocka_unit_test(file_read_bounds),
		cmocka_unit_test(bundle_parse),
		cmocka_unit_test(bundles_read_back),
		cmocka_unit_test(dir_tiles_serve_roots_and_proofs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
