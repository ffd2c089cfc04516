#include "common/tlog/tlog_verify.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/tlog/tlog_tiles.h"

/* Records the report's one line and the thread's error; returns status. */
static kms_status report_fail_at(tlog_verify_report *report, kms_status status,
                                 const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static kms_status report_fail_at(tlog_verify_report *report, kms_status status,
                                 const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(report->failure, sizeof report->failure, fmt, ap);
	va_end(ap);
	return kms_error_set_at(status, file, line, "%s", report->failure);
}

#define REPORT_FAIL(report, status, ...)                                       \
	report_fail_at((report), (status), __FILE__, __LINE__, __VA_ARGS__)

/* Passes a failure from another tlog function on into the report,
 * prefixed (prefix may be ""). */
static kms_status report_from_error(tlog_verify_report *report, kms_status status,
                                    const char *prefix)
{
	char line[KMS_ERROR_MAX];
	snprintf(line, sizeof line, "%s", kms_error_message());
	return REPORT_FAIL(report, status, "%s%s", prefix, line);
}

#define GUARD_REPORT(st, report, prefix, expr)                                 \
	do {                                                                   \
		(st) = (expr);                                                 \
		if ((st) != KMS_OK) {                                          \
			(st) = report_from_error((report), (st), (prefix));    \
			goto out;                                              \
		}                                                              \
	} while (0)

/* Step 2: the tree of the entries. */
static kms_status read_entries(const char *dir, uint64_t tree_size, tlog_tree *tree,
                               tlog_verify_report *report)
{
	tlog_entry_span spans[TLOG_TILE_WIDTH];
	char path[TLOG_TILE_PATH_MAX];
	kms_status st = KMS_OK;
	uint8_t *bytes = NULL;

	for (uint64_t k = 0; k < tlog_bundle_count(tree_size); k++) {
		unsigned width;
		GUARD_REPORT(st, report, "",
		             tlog_bundle_read(dir, tree_size, k, path, &bytes, spans, &width));
		for (unsigned i = 0; i < width; i++)
			GUARD_REPORT(st, report, "",
			             tlog_tree_append_entry(tree, spans[i].bytes, spans[i].len));
		free(bytes);
		bytes = NULL;
		report->bundles_checked++;
		report->entries_checked += width;
	}
out:
	free(bytes);
	return st;
}

/* Step 3: every tile of the tree against the tree of the entries. With
 * level0_only, only the level-0 tiles, blaming the entries (their signed
 * hashes are in the tiles). *found is whether a difference was reported. */
static kms_status compare_tiles(tlog_dir_tiles *tiles, const tlog_tree *tree, bool level0_only,
                                tlog_verify_report *report, bool *found)
{
	kms_status st = KMS_OK;
	uint64_t tree_size = tiles->tree_size;
	unsigned levels = level0_only ? 1 : tlog_tile_levels(tree_size);
	*found = false;
	for (unsigned level = 0; level < levels; level++) {
		uint64_t count = tlog_tile_full_count(tree_size, level) +
		                 (tlog_tile_partial_width(tree_size, level) > 0);
		for (uint64_t k = 0; k < count; k++) {
			const tlog_dir_tile *tile;
			GUARD_REPORT(st, report, "", tlog_dir_tile_get(tiles, level, k, &tile));
			report->tiles_checked++;
			for (unsigned i = 0; i < tile->width; i++) {
				uint8_t expected[TLOG_HASH_SIZE];
				uint64_t position = k * TLOG_TILE_WIDTH + i;
				GUARD_REPORT(st, report, "",
				             tlog_tree_reader((void *)tree, TLOG_TILE_HEIGHT * level,
				                              position, expected));
				if (tlog_hash_equal(expected, tile->hashes[i]))
					continue;
				*found = true;
				if (level0_only) {
					char bundle[TLOG_TILE_PATH_MAX];
					GUARD_REPORT(st, report, "",
					             tlog_bundle_path(k, tile->width, bundle));
					return REPORT_FAIL(report, KMS_INVALID_CIPHERTEXT,
					                   "entry %llu in %s differs from the signed tree "
					                   "(hash %u of %s)",
					                   (unsigned long long)position, bundle, i, tile->path);
				}
				return REPORT_FAIL(report, KMS_INVALID_CIPHERTEXT,
				                   "%s: hash %u differs from the entries", tile->path, i);
			}
		}
	}
out:
	return st;
}

/* Steps 3 and 4, deciding between the entries and the tiles by the
 * signed root. */
static kms_status check_tiles_and_root(const char *dir, const tlog_checkpoint *cp,
                                       const tlog_tree *tree, tlog_verify_report *report)
{
	kms_status st = KMS_OK;
	bool found = false;
	uint8_t entries_root[TLOG_HASH_SIZE], tiles_root[TLOG_HASH_SIZE];
	tlog_dir_tiles *tiles = calloc(1, sizeof *tiles);
	if (tiles == NULL)
		return REPORT_FAIL(report, KMS_INTERNAL, "out of memory");
	tlog_dir_tiles_init(tiles, dir, cp->tree_size);

	GUARD_REPORT(st, report, "", tlog_tree_root(tree, cp->tree_size, entries_root));
	if (tlog_hash_equal(entries_root, cp->root)) {
		/* The entries are what was signed: any tile that differs is wrong. */
		st = compare_tiles(tiles, tree, false, report, &found);
		goto out;
	}
	GUARD_REPORT(st, report, "",
	             tlog_root_at(tlog_dir_tiles_reader, tiles, cp->tree_size, tiles_root));
	if (tlog_hash_equal(tiles_root, cp->root)) {
		/* The tiles are what was signed: the entries were changed. */
		st = compare_tiles(tiles, tree, true, report, &found);
		if (st == KMS_OK && !found)
			st = compare_tiles(tiles, tree, false, report, &found);
		if (st != KMS_OK || found)
			goto out;
	}
	st = REPORT_FAIL(report, KMS_INVALID_CIPHERTEXT,
	                 "checkpoint root differs from the tree of the entries");
out:
	free(tiles);
	return st;
}

/* ---- Step 6: the other tiles and bundles in the directory ---- */

/* One tile or bundle file beside those the tree needs: an older partial a
 * log kept after the full one appeared, or a newer file a copy caught
 * before its checkpoint. */
typedef struct extra_file {
	bool bundle;           /* an entry bundle, else a hash tile */
	unsigned level;        /* tile level (0 for bundles) */
	uint64_t index;        /* <N> */
	unsigned width;        /* hashes or entries it holds */
	uint64_t covered;      /* of them, how many the checkpoint covers */
	char path[TLOG_TILE_PATH_MAX];
} extra_file;

/* Hashes (or entries) at position index * 256 onward that the tree has. */
static uint64_t covered_at(uint64_t tree_size, unsigned level, uint64_t index, unsigned width)
{
	uint64_t have = tlog_tile_level_hashes(tree_size, level);
	uint64_t first = index * TLOG_TILE_WIDTH;
	uint64_t left = have > first ? have - first : 0;
	return left < width ? left : width;
}

static kms_status check_extra_tile(const char *dir, const tlog_tree *tree, const extra_file *f,
                                   tlog_verify_report *report)
{
	uint8_t *bytes = NULL;
	size_t len = 0;
	kms_status st = KMS_OK;
	GUARD_REPORT(st, report, "", tlog_file_read(dir, f->path, TLOG_TILE_BYTES, &bytes, &len));
	if (len != (size_t)f->width * TLOG_HASH_SIZE) {
		st = REPORT_FAIL(report, KMS_INVALID_CIPHERTEXT, "%s: %zu bytes, expected %u (%u hashes)",
		                 f->path, len, f->width * TLOG_HASH_SIZE, f->width);
		goto out;
	}
	for (unsigned i = 0; i < f->covered; i++) {
		uint8_t expected[TLOG_HASH_SIZE];
		GUARD_REPORT(st, report, "",
		             tlog_tree_reader((void *)tree, TLOG_TILE_HEIGHT * f->level,
		                              f->index * TLOG_TILE_WIDTH + i, expected));
		if (!tlog_hash_equal(expected, bytes + (size_t)i * TLOG_HASH_SIZE)) {
			st = REPORT_FAIL(report, KMS_INVALID_CIPHERTEXT,
			                 "%s: hash %u differs from the signed tree", f->path, i);
			goto out;
		}
	}
out:
	free(bytes);
	return st;
}

static kms_status check_extra_bundle(const char *dir, const tlog_tree *tree, const extra_file *f,
                                     tlog_verify_report *report)
{
	tlog_entry_span spans[TLOG_TILE_WIDTH];
	uint8_t *bytes = NULL;
	size_t len = 0;
	kms_status st = KMS_OK;
	uint64_t first = f->index * TLOG_TILE_WIDTH;
	GUARD_REPORT(st, report, "",
	             tlog_file_read(dir, f->path, TLOG_BUNDLE_BYTES_MAX, &bytes, &len));
	GUARD_REPORT(st, report, "",
	             tlog_bundle_parse(bytes, len, f->width, first, f->path, spans));
	for (unsigned i = 0; i < f->covered; i++) {
		uint8_t leaf[TLOG_HASH_SIZE], expected[TLOG_HASH_SIZE];
		GUARD_REPORT(st, report, "", tlog_leaf_hash(spans[i].bytes, spans[i].len, leaf));
		GUARD_REPORT(st, report, "", tlog_tree_reader((void *)tree, 0, first + i, expected));
		if (!tlog_hash_equal(leaf, expected)) {
			st = REPORT_FAIL(report, KMS_INVALID_CIPHERTEXT,
			                 "entry %llu in %s differs from the signed tree",
			                 (unsigned long long)(first + i), f->path);
			goto out;
		}
	}
out:
	free(bytes);
	return st;
}

/* Checks one extra file: what the checkpoint covers of it must be the
 * signed tree's; the rest is counted as past the checkpoint. */
static kms_status check_extra(const char *dir, const tlog_tree *tree, extra_file *f,
                              tlog_verify_report *report)
{
	f->covered = covered_at(tlog_tree_size(tree), f->level, f->index, f->width);
	KMS_GUARD(f->bundle ? check_extra_bundle(dir, tree, f, report)
	                    : check_extra_tile(dir, tree, f, report));
	report->extra_checked++;
	if (f->covered < f->width)
		report->past_checkpoint++;
	return KMS_OK;
}

/* A partial width as its file is named: 1..255, decimal, no leading
 * zero. Anything else in a .p directory (a writer's temporary file) is
 * not a tile and is skipped. */
static bool parse_width(const char *name, unsigned *width)
{
	unsigned value = 0;
	if (name[0] < '1' || name[0] > '9' || strlen(name) > 3)
		return false;
	for (const char *p = name; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		value = value * 10 + (unsigned)(*p - '0');
	}
	*width = value;
	return value < TLOG_TILE_WIDTH;
}

/* Every partial file in <path of tile or bundle f>.p/, but the one the
 * tree itself needs (skip_width, 0: none). */
static kms_status check_partials_of(const char *dir, const tlog_tree *tree, extra_file f,
                                    unsigned skip_width, tlog_verify_report *report)
{
	char full_path[TLOG_TILE_PATH_MAX], listing[4096];
	snprintf(full_path, sizeof full_path, "%s", f.path);
	int n = snprintf(listing, sizeof listing, "%s/%s.p", dir, full_path);
	if (n < 0 || (size_t)n >= sizeof listing)
		return REPORT_FAIL(report, KMS_INTERNAL, "%s.p: path too long", full_path);
	DIR *d = opendir(listing);
	if (d == NULL)
		return errno == ENOENT || errno == ENOTDIR
		               ? KMS_OK
		               : REPORT_FAIL(report, KMS_INTERNAL, "%s.p: cannot list: %s", full_path,
		                             strerror(errno));
	kms_status st = KMS_OK;
	struct dirent *e;
	while (st == KMS_OK && (e = readdir(d)) != NULL) {
		unsigned width;
		if (!parse_width(e->d_name, &width) || width == skip_width)
			continue;
		f.width = width;
		if (snprintf(f.path, sizeof f.path, "%s.p/%u", full_path, width) >= (int)sizeof f.path)
			continue;
		st = check_extra(dir, tree, &f, report);
	}
	closedir(d);
	return st;
}

/* A full file at the index where the tree has only a partial one: a copy
 * caught it before the checkpoint that covers it. */
static kms_status check_full_past(const char *dir, const tlog_tree *tree, extra_file f,
                                  tlog_verify_report *report)
{
	char full[4096];
	struct stat sb;
	f.width = TLOG_TILE_WIDTH;
	int n = snprintf(full, sizeof full, "%s/%s", dir, f.path);
	if (n < 0 || (size_t)n >= sizeof full || stat(full, &sb) != 0)
		return KMS_OK;
	return check_extra(dir, tree, &f, report);
}

/* Step 6, one level of tiles (or the bundles, level 0). */
static kms_status check_extra_level(const char *dir, const tlog_tree *tree, bool bundle,
                                    unsigned level, tlog_verify_report *report)
{
	kms_status st = KMS_OK;
	uint64_t full = tlog_tile_full_count(tlog_tree_size(tree), level);
	unsigned partial = tlog_tile_partial_width(tlog_tree_size(tree), level);
	for (uint64_t k = 0; k <= full; k++) {
		extra_file f = { .bundle = bundle, .level = level, .index = k };
		GUARD_REPORT(st, report, "",
		             bundle ? tlog_bundle_path(k, TLOG_TILE_WIDTH, f.path)
		                    : tlog_tile_path(level, k, TLOG_TILE_WIDTH, f.path));
		KMS_GUARD(check_partials_of(dir, tree, f, k == full ? partial : 0, report));
		if (k == full && partial > 0)
			KMS_GUARD(check_full_past(dir, tree, f, report));
	}
out:
	return st;
}

static kms_status check_extra_files(const char *dir, const tlog_tree *tree,
                                    tlog_verify_report *report)
{
	if (tlog_tree_size(tree) == 0)
		return KMS_OK;
	KMS_GUARD(check_extra_level(dir, tree, true, 0, report));
	for (unsigned level = 0; level < tlog_tile_levels(tlog_tree_size(tree)); level++)
		KMS_GUARD(check_extra_level(dir, tree, false, level, report));
	return KMS_OK;
}

/* Step 1 for either checkpoint: the note verifies, the body parses. */
static kms_status open_checkpoint(const char *text, size_t len, const tlog_verifier *key,
                                  const char *what, tlog_checkpoint *cp,
                                  tlog_verify_report *report)
{
	tlog_note_view note;
	kms_status st = tlog_note_verify(text, len, key, what, &note);
	if (st == KMS_OK)
		st = tlog_checkpoint_parse(note.body, note.body_len, what, cp);
	return st == KMS_OK ? KMS_OK : report_from_error(report, st, "");
}

/* Step 5. */
static kms_status check_since(const char *since, const tlog_verifier *key,
                              const tlog_checkpoint *cp, const tlog_tree *tree,
                              tlog_verify_report *report)
{
	tlog_checkpoint old;
	uint8_t root[TLOG_HASH_SIZE];
	KMS_GUARD(open_checkpoint(since, strlen(since), key, "old checkpoint", &old, report));
	if (old.origin_len != cp->origin_len || memcmp(old.origin, cp->origin, old.origin_len) != 0)
		return REPORT_FAIL(report, KMS_INVALID_CIPHERTEXT,
		                   "old checkpoint is for origin %.*s, this log is %.*s",
		                   (int)old.origin_len, old.origin, (int)cp->origin_len, cp->origin);
	if (old.tree_size > cp->tree_size)
		return REPORT_FAIL(report, KMS_INVALID_CIPHERTEXT,
		                   "old checkpoint (size %llu) is larger than this log (size %llu)",
		                   (unsigned long long)old.tree_size,
		                   (unsigned long long)cp->tree_size);
	kms_status st = tlog_tree_root(tree, old.tree_size, root);
	if (st != KMS_OK)
		return report_from_error(report, st, "");
	if (!tlog_hash_equal(root, old.root))
		return REPORT_FAIL(report, KMS_INVALID_CIPHERTEXT,
		                   "old checkpoint (size %llu) is not a prefix of this log",
		                   (unsigned long long)old.tree_size);
	report->since_checked = true;
	report->since_size = old.tree_size;
	return KMS_OK;
}

/* After everything verified: the entries again, each checked against the
 * verified tree before the visitor sees it. */
static kms_status visit_entries(const char *dir, const tlog_tree *tree, uint64_t tree_size,
                                tlog_entry_visitor visit, void *visit_ctx,
                                tlog_verify_report *report)
{
	tlog_entry_span spans[TLOG_TILE_WIDTH];
	char path[TLOG_TILE_PATH_MAX];
	kms_status st = KMS_OK;
	uint8_t *bytes = NULL;

	for (uint64_t k = 0; k < tlog_bundle_count(tree_size); k++) {
		unsigned width;
		GUARD_REPORT(st, report, "",
		             tlog_bundle_read(dir, tree_size, k, path, &bytes, spans, &width));
		for (unsigned i = 0; i < width; i++) {
			uint64_t index = k * TLOG_TILE_WIDTH + i;
			uint8_t leaf[TLOG_HASH_SIZE], expected[TLOG_HASH_SIZE];
			GUARD_REPORT(st, report, "", tlog_leaf_hash(spans[i].bytes, spans[i].len, leaf));
			GUARD_REPORT(st, report, "", tlog_tree_reader((void *)tree, 0, index, expected));
			if (!tlog_hash_equal(leaf, expected)) {
				st = REPORT_FAIL(report, KMS_INVALID_CIPHERTEXT,
				                 "entry %llu in %s changed while being verified",
				                 (unsigned long long)index, path);
				goto out;
			}
			st = visit(visit_ctx, index, spans[i].bytes, spans[i].len);
			if (st != KMS_OK) {
				char prefix[TLOG_TILE_PATH_MAX];
				snprintf(prefix, sizeof prefix, "entry %llu: ", (unsigned long long)index);
				st = report_from_error(report, st, prefix);
				goto out;
			}
		}
		free(bytes);
		bytes = NULL;
	}
out:
	free(bytes);
	return st;
}

kms_status tlog_verify_dir(const char *dir, const char *verifier_key,
                           const char *since_checkpoint, tlog_entry_visitor visit,
                           void *visit_ctx, tlog_verify_report *report)
{
	kms_status st = KMS_OK;
	tlog_verifier key;
	tlog_checkpoint cp;
	uint8_t *text = NULL;
	size_t text_len = 0;
	tlog_tree tree;

	memset(report, 0, sizeof *report);
	tlog_tree_init(&tree);
	if (dir == NULL || dir[0] == '\0')
		return REPORT_FAIL(report, KMS_INVALID_ARGUMENT, "no log directory");
	GUARD_REPORT(st, report, "", tlog_verifier_key_parse(verifier_key, &key));

	GUARD_REPORT(st, report, "", tlog_file_read(dir, TLOG_CHECKPOINT_PATH, TLOG_NOTE_MAX,
	                                            &text, &text_len));
	KMS_GUARD_OUT(st, open_checkpoint((const char *)text, text_len, &key, "checkpoint", &cp,
	                                  report));
	snprintf(report->origin, sizeof report->origin, "%.*s", (int)cp.origin_len, cp.origin);
	report->tree_size = cp.tree_size;
	memcpy(report->root, cp.root, TLOG_HASH_SIZE);

	KMS_GUARD_OUT(st, read_entries(dir, cp.tree_size, &tree, report));
	KMS_GUARD_OUT(st, check_tiles_and_root(dir, &cp, &tree, report));
	KMS_GUARD_OUT(st, check_extra_files(dir, &tree, report));
	if (since_checkpoint != NULL)
		KMS_GUARD_OUT(st, check_since(since_checkpoint, &key, &cp, &tree, report));
	if (visit != NULL)
		KMS_GUARD_OUT(st, visit_entries(dir, &tree, cp.tree_size, visit, visit_ctx, report));
	report->failure[0] = '\0';
out:
	tlog_tree_free(&tree);
	free(text);
	return st;
}
