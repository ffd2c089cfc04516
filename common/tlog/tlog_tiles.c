#include "common/tlog/tlog_tiles.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cursor.h"
#include "common/error.h"

#define WHERE "tlog"

#define INDEX_GROUP 1000u      /* <N> is written in base-1000 path elements */
#define INDEX_GROUPS_MAX 7     /* UINT64_MAX has 20 decimal digits */
#define TILE_FILE_MODE 0644    /* tiles are public */
#define TILE_DIR_MODE 0755
#define TEMP_SUFFIX ".tmp-XXXXXX"

unsigned tlog_tile_levels(uint64_t tree_size)
{
	unsigned levels = 0;
	while (levels < TLOG_TILE_LEVELS && tlog_tile_level_hashes(tree_size, levels) > 0)
		levels++;
	return levels;
}

/* Appends <N>[.p/<W>] to out[0..cap) at *used. */
static kms_status put_index(char *out, size_t cap, size_t *used, uint64_t index, unsigned width)
{
	unsigned groups[INDEX_GROUPS_MAX];
	unsigned n = 0;
	do {
		groups[n++] = (unsigned)(index % INDEX_GROUP);
		index /= INDEX_GROUP;
	} while (index > 0 && n < INDEX_GROUPS_MAX);

	for (unsigned i = n; i > 0; i--) {
		int w = snprintf(out + *used, cap - *used, "%s%03u%s", i > 1 ? "x" : "",
		                 groups[i - 1], i > 1 ? "/" : "");
		KMS_ENSURE(w > 0 && (size_t)w < cap - *used, KMS_INTERNAL,
		           WHERE ": tile path does not fit %zu bytes", cap);
		*used += (size_t)w;
	}
	if (width < TLOG_TILE_WIDTH) {
		int w = snprintf(out + *used, cap - *used, ".p/%u", width);
		KMS_ENSURE(w > 0 && (size_t)w < cap - *used, KMS_INTERNAL,
		           WHERE ": tile path does not fit %zu bytes", cap);
		*used += (size_t)w;
	}
	return KMS_OK;
}

kms_status tlog_tile_path(unsigned level, uint64_t index, unsigned width,
                          char out[static TLOG_TILE_PATH_MAX])
{
	out[0] = '\0';
	KMS_ENSURE(level <= TLOG_TILE_LEVEL_PATH_MAX, KMS_INVALID_ARGUMENT,
	           WHERE ": tile level %u is over %d", level, TLOG_TILE_LEVEL_PATH_MAX);
	KMS_ENSURE(width >= 1 && width <= TLOG_TILE_WIDTH, KMS_INVALID_ARGUMENT,
	           WHERE ": tile width %u is not 1..%u", width, TLOG_TILE_WIDTH);
	int w = snprintf(out, TLOG_TILE_PATH_MAX, "tile/%u/", level);
	KMS_ENSURE(w > 0 && w < TLOG_TILE_PATH_MAX, KMS_INTERNAL, WHERE ": tile path too long");
	size_t used = (size_t)w;
	kms_status st = put_index(out, TLOG_TILE_PATH_MAX, &used, index, width);
	if (st != KMS_OK)
		out[0] = '\0';
	return st;
}

kms_status tlog_bundle_path(uint64_t index, unsigned width, char out[static TLOG_TILE_PATH_MAX])
{
	static const char prefix[] = "tile/entries/";
	out[0] = '\0';
	KMS_ENSURE(width >= 1 && width <= TLOG_TILE_WIDTH, KMS_INVALID_ARGUMENT,
	           WHERE ": bundle width %u is not 1..%u", width, TLOG_TILE_WIDTH);
	memcpy(out, prefix, sizeof prefix);
	size_t used = sizeof prefix - 1;
	kms_status st = put_index(out, TLOG_TILE_PATH_MAX, &used, index, width);
	if (st != KMS_OK)
		out[0] = '\0';
	return st;
}

kms_status tlog_tile_hashes(tlog_hash_reader read, void *ctx, unsigned level, uint64_t index,
                            unsigned width, uint8_t out[static TLOG_TILE_WIDTH][TLOG_HASH_SIZE])
{
	KMS_ENSURE(read != NULL, KMS_INVALID_ARGUMENT, WHERE ": tile: no hash reader");
	KMS_ENSURE(level < TLOG_TILE_LEVELS && width >= 1 && width <= TLOG_TILE_WIDTH &&
	                   index <= (TLOG_TREE_SIZE_MAX >> (TLOG_TILE_HEIGHT * (level + 1))),
	           KMS_INVALID_ARGUMENT, WHERE ": no tile %llu of width %u at level %u",
	           (unsigned long long)index, width, level);
	for (unsigned i = 0; i < width; i++)
		KMS_GUARD(read(ctx, TLOG_TILE_HEIGHT * level, index * TLOG_TILE_WIDTH + i, out[i]));
	return KMS_OK;
}

/* ---- files ---- */

static kms_status join(const char *dir, const char *path, char out[static PATH_MAX])
{
	KMS_ENSURE(dir != NULL && dir[0] != '\0' && path != NULL && path[0] != '\0',
	           KMS_INVALID_ARGUMENT, WHERE ": no directory or file name");
	int w = snprintf(out, PATH_MAX, "%s/%s", dir, path);
	KMS_ENSURE(w > 0 && w < PATH_MAX, KMS_INVALID_ARGUMENT,
	           WHERE ": %s/%s: path too long", dir, path);
	return KMS_OK;
}

/* Reads exactly the regular file at full into a new buffer. */
static kms_status read_path(const char *full, const char *name, size_t max, uint8_t **out,
                            size_t *len)
{
	kms_status st = KMS_OK;
	uint8_t *bytes = NULL;
	int fd = open(full, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return KMS_FAIL(KMS_NOT_FOUND, "%s: missing", name);
		return KMS_FAIL(KMS_INTERNAL, "%s: cannot open: %s", name, strerror(errno));
	}
	struct stat sb;
	if (fstat(fd, &sb) != 0) {
		st = KMS_FAIL(KMS_INTERNAL, "%s: cannot stat: %s", name, strerror(errno));
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		st = KMS_FAIL(KMS_INVALID_CIPHERTEXT, "%s: not a regular file", name);
		goto out;
	}
	/* The size is checked before anything is allocated. */
	if (sb.st_size < 0 || (uint64_t)sb.st_size > max) {
		st = KMS_FAIL(KMS_INVALID_CIPHERTEXT, "%s: %lld bytes, more than the %zu allowed",
		              name, (long long)sb.st_size, max);
		goto out;
	}
	size_t size = (size_t)sb.st_size;
	bytes = malloc(size ? size : 1);
	if (bytes == NULL) {
		st = KMS_FAIL(KMS_INTERNAL, "%s: out of memory for %zu bytes", name, size);
		goto out;
	}
	size_t got = 0;
	while (got < size) {
		ssize_t r = read(fd, bytes + got, size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			st = KMS_FAIL(KMS_INTERNAL, "%s: read failed: %s", name,
			              r < 0 ? strerror(errno) : "file shrank");
			goto out;
		}
		got += (size_t)r;
	}
	uint8_t extra;
	ssize_t r;
	do {
		r = read(fd, &extra, 1);
	} while (r < 0 && errno == EINTR);
	if (r != 0) {
		st = KMS_FAIL(KMS_INTERNAL, "%s: file changed while being read", name);
		goto out;
	}
	*out = bytes;
	*len = size;
	bytes = NULL;
out:
	free(bytes);
	close(fd);
	return st;
}

kms_status tlog_file_read(const char *dir, const char *path, size_t max, uint8_t **out,
                          size_t *len)
{
	char full[PATH_MAX];
	*out = NULL;
	*len = 0;
	KMS_GUARD(join(dir, path, full));
	return read_path(full, path, max, out, len);
}

static kms_status write_all(int fd, const uint8_t *bytes, size_t len, const char *name)
{
	size_t done = 0;
	while (done < len) {
		ssize_t w = write(fd, bytes + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		KMS_ENSURE(w > 0, KMS_INTERNAL, "%s: write failed: %s", name,
		           w < 0 ? strerror(errno) : "no progress");
		done += (size_t)w;
	}
	return KMS_OK;
}

static kms_status sync_parent(const char *full, const char *name)
{
	char parent[PATH_MAX];
	const char *slash = strrchr(full, '/');
	size_t n = slash ? (size_t)(slash - full) : 0;
	if (n == 0) {
		parent[0] = slash ? '/' : '.';
		parent[1] = '\0';
	} else {
		memcpy(parent, full, n);
		parent[n] = '\0';
	}
	int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	KMS_ENSURE(fd >= 0, KMS_INTERNAL, "%s: cannot open its directory: %s", name,
	           strerror(errno));
	int rc = fsync(fd);
	int err = errno;
	close(fd);
	KMS_ENSURE(rc == 0, KMS_INTERNAL, "%s: fsync of its directory failed: %s", name,
	           strerror(err));
	return KMS_OK;
}

/* mkdir -p for the directories of full below its first dir_len bytes. A
 * directory made here is fsync'ed into its parent, so that after a crash
 * the files written into it are still reachable. */
static kms_status make_parents(char *full, size_t dir_len, const char *name)
{
	for (char *slash = strchr(full + dir_len + 1, '/'); slash != NULL;
	     slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		/* chmod: the mode is the log's, not what the umask leaves. */
		int rc = mkdir(full, TILE_DIR_MODE);
		if (rc == 0)
			rc = chmod(full, TILE_DIR_MODE);
		int err = errno;
		kms_status st = rc == 0 ? sync_parent(full, name) : KMS_OK;
		*slash = '/';
		KMS_ENSURE(rc == 0 || err == EEXIST, KMS_INTERNAL,
		           "%s: cannot create its directory: %s", name, strerror(err));
		KMS_GUARD(st);
	}
	return KMS_OK;
}

/* An existing immutable file: KMS_OK if it holds bytes, KMS_NOT_FOUND if
 * there is none, KMS_FAILED_PRECONDITION if it differs. */
static kms_status compare_existing(const char *full, const char *name, const uint8_t *bytes,
                                   size_t len)
{
	uint8_t *old = NULL;
	size_t old_len = 0;
	kms_status st = read_path(full, name, len, &old, &old_len);
	if (st == KMS_NOT_FOUND)
		return st;
	if (st == KMS_INVALID_CIPHERTEXT) /* longer than ours, or not a file */
		return KMS_FAIL(KMS_FAILED_PRECONDITION, "%s exists with different content", name);
	KMS_GUARD(st);
	bool same = old_len == len && (len == 0 || memcmp(old, bytes, len) == 0);
	free(old);
	KMS_ENSURE(same, KMS_FAILED_PRECONDITION, "%s exists with different content", name);
	return KMS_OK;
}

kms_status tlog_file_write(const char *dir, const char *path, const uint8_t *bytes, size_t len,
                           bool immutable)
{
	char full[PATH_MAX], temp[PATH_MAX];
	KMS_ENSURE(bytes != NULL || len == 0, KMS_INVALID_ARGUMENT, "%s: no bytes", path);
	KMS_GUARD(join(dir, path, full));

	if (immutable) {
		kms_status st = compare_existing(full, path, bytes, len);
		if (st != KMS_NOT_FOUND)
			return st; /* already there (KMS_OK), or a conflict */
	}
	KMS_GUARD(make_parents(full, strlen(dir), path));

	/* The temporary file sits beside the target, so rename is atomic. */
	const char *base = strrchr(full, '/') + 1;
	int w = snprintf(temp, sizeof temp, "%.*s.%s" TEMP_SUFFIX, (int)(base - full), full, base);
	KMS_ENSURE(w > 0 && (size_t)w < sizeof temp, KMS_INVALID_ARGUMENT,
	           "%s: temporary path too long", path);
	int fd = mkstemp(temp);
	KMS_ENSURE(fd >= 0, KMS_INTERNAL, "%s: cannot create a temporary file: %s", path,
	           strerror(errno));

	kms_status st = KMS_OK;
	bool placed = false;
	KMS_GUARD_OUT(st, write_all(fd, bytes, len, path));
	if (fchmod(fd, TILE_FILE_MODE) != 0 || fsync(fd) != 0) {
		st = KMS_FAIL(KMS_INTERNAL, "%s: fsync failed: %s", path, strerror(errno));
		goto out;
	}
	if (immutable) {
		/* Never replace an immutable file, even one that appeared since
		 * the check above. */
		if (renameat2(AT_FDCWD, temp, AT_FDCWD, full, RENAME_NOREPLACE) == 0) {
			placed = true;
		} else if (errno == EEXIST) {
			KMS_GUARD_OUT(st, compare_existing(full, path, bytes, len));
			goto out; /* someone wrote the same bytes: nothing to do */
		} else if (errno != EINVAL && errno != ENOSYS) {
			st = KMS_FAIL(KMS_INTERNAL, "%s: rename failed: %s", path, strerror(errno));
			goto out;
		}
		/* A file system without RENAME_NOREPLACE: plain rename below. */
	}
	if (!placed) {
		if (rename(temp, full) != 0) {
			st = KMS_FAIL(KMS_INTERNAL, "%s: rename failed: %s", path, strerror(errno));
			goto out;
		}
		placed = true;
	}
	KMS_GUARD_OUT(st, sync_parent(full, path));
out:
	close(fd);
	if (!placed)
		unlink(temp);
	return st;
}

kms_status tlog_checkpoint_publish(const char *dir, const char *note, size_t len)
{
	KMS_ENSURE(note != NULL && len > 0, KMS_INVALID_ARGUMENT, WHERE ": empty checkpoint");
	return tlog_file_write(dir, TLOG_CHECKPOINT_PATH, (const uint8_t *)note, len, false);
}

kms_status tlog_tiles_write(const char *dir, tlog_hash_reader read, void *ctx, uint64_t old_size,
                            uint64_t new_size)
{
	KMS_ENSURE(old_size <= new_size && new_size <= TLOG_TREE_SIZE_MAX, KMS_INVALID_ARGUMENT,
	           WHERE ": tiles from size %llu to %llu", (unsigned long long)old_size,
	           (unsigned long long)new_size);
	uint8_t hashes[TLOG_TILE_WIDTH][TLOG_HASH_SIZE];
	char path[TLOG_TILE_PATH_MAX];
	unsigned levels = tlog_tile_levels(new_size);

	for (unsigned level = 0; level < levels; level++) {
		uint64_t full = tlog_tile_full_count(new_size, level);
		for (uint64_t k = tlog_tile_full_count(old_size, level); k < full; k++) {
			KMS_GUARD(tlog_tile_path(level, k, TLOG_TILE_WIDTH, path));
			KMS_GUARD(tlog_tile_hashes(read, ctx, level, k, TLOG_TILE_WIDTH, hashes));
			KMS_GUARD(tlog_file_write(dir, path, &hashes[0][0], TLOG_TILE_BYTES, true));
		}
		unsigned width = tlog_tile_partial_width(new_size, level);
		if (width > 0) {
			KMS_GUARD(tlog_tile_path(level, full, width, path));
			KMS_GUARD(tlog_tile_hashes(read, ctx, level, full, width, hashes));
			KMS_GUARD(tlog_file_write(dir, path, &hashes[0][0],
			                          (size_t)width * TLOG_HASH_SIZE, true));
		}
	}
	return KMS_OK;
}

/* A bundle being built: grows up to TLOG_BUNDLE_BYTES_MAX. */
typedef struct bundle_buf {
	uint8_t *bytes;
	size_t len;
	size_t cap;
} bundle_buf;

static kms_status bundle_reserve(bundle_buf *b, size_t more)
{
	if (b->cap - b->len >= more)
		return KMS_OK;
	size_t need = b->len + more;
	KMS_ENSURE(need <= TLOG_BUNDLE_BYTES_MAX, KMS_INTERNAL,
	           WHERE ": bundle over %u bytes", TLOG_BUNDLE_BYTES_MAX);
	size_t cap = b->cap ? b->cap : TLOG_TILE_BYTES;
	while (cap < need)
		cap *= 2;
	if (cap > TLOG_BUNDLE_BYTES_MAX)
		cap = TLOG_BUNDLE_BYTES_MAX;
	uint8_t *grown = realloc(b->bytes, cap);
	KMS_ENSURE(grown != NULL, KMS_INTERNAL, WHERE ": out of memory for a %zu-byte bundle", cap);
	b->bytes = grown;
	b->cap = cap;
	return KMS_OK;
}

/* Encodes entries [first, first + width) into b. */
static kms_status bundle_build(tlog_entry_reader read, void *ctx, uint64_t first, unsigned width,
                               uint8_t *entry, bundle_buf *b)
{
	b->len = 0;
	for (unsigned i = 0; i < width; i++) {
		size_t len = 0;
		KMS_GUARD(read(ctx, first + i, entry, TLOG_ENTRY_MAX, &len));
		KMS_ENSURE(len >= TLOG_ENTRY_MIN && len <= TLOG_ENTRY_MAX, KMS_INVALID_ARGUMENT,
		           WHERE ": entry %llu is %zu bytes, must be %d..%d",
		           (unsigned long long)(first + i), len, TLOG_ENTRY_MIN, TLOG_ENTRY_MAX);
		KMS_GUARD(bundle_reserve(b, TLOG_ENTRY_LENGTH_SIZE + len));
		kms_writer w = kms_writer_init(b->bytes + b->len, b->cap - b->len);
		(void)kms_writer_u16be(&w, (uint16_t)len);
		(void)kms_writer_put(&w, entry, len);
		KMS_ENSURE(w.ok, KMS_INTERNAL, WHERE ": entry %llu does not fit its bundle",
		           (unsigned long long)(first + i));
		b->len += TLOG_ENTRY_LENGTH_SIZE + len;
	}
	return KMS_OK;
}

kms_status tlog_bundles_write(const char *dir, tlog_entry_reader read, void *ctx,
                              uint64_t old_size, uint64_t new_size)
{
	KMS_ENSURE(read != NULL, KMS_INVALID_ARGUMENT, WHERE ": bundles: no entry reader");
	KMS_ENSURE(old_size <= new_size && new_size <= TLOG_TREE_SIZE_MAX, KMS_INVALID_ARGUMENT,
	           WHERE ": bundles from size %llu to %llu", (unsigned long long)old_size,
	           (unsigned long long)new_size);
	kms_status st = KMS_OK;
	bundle_buf b = { 0 };
	char path[TLOG_TILE_PATH_MAX];
	uint8_t *entry = malloc(TLOG_ENTRY_MAX);
	KMS_ENSURE(entry != NULL, KMS_INTERNAL, WHERE ": out of memory for an entry");

	uint64_t full = tlog_tile_full_count(new_size, 0);
	for (uint64_t k = tlog_tile_full_count(old_size, 0); k < full; k++) {
		KMS_GUARD_OUT(st, tlog_bundle_path(k, TLOG_TILE_WIDTH, path));
		KMS_GUARD_OUT(st, bundle_build(read, ctx, k * TLOG_TILE_WIDTH, TLOG_TILE_WIDTH,
		                               entry, &b));
		KMS_GUARD_OUT(st, tlog_file_write(dir, path, b.bytes, b.len, true));
	}
	unsigned width = tlog_tile_partial_width(new_size, 0);
	if (width > 0) {
		KMS_GUARD_OUT(st, tlog_bundle_path(full, width, path));
		KMS_GUARD_OUT(st, bundle_build(read, ctx, full * TLOG_TILE_WIDTH, width, entry, &b));
		KMS_GUARD_OUT(st, tlog_file_write(dir, path, b.bytes, b.len, true));
	}
out:
	free(entry);
	free(b.bytes);
	return st;
}

/* Counts whole entries left in c (for the message about a bundle that is
 * too long); false if what is left does not split into entries. */
static bool count_rest(kms_cursor *c, unsigned *count)
{
	const uint8_t *skip;
	uint16_t len;
	while (c->left > 0) {
		if (!kms_cursor_u16be(c, &len) || !kms_cursor_take(c, len, &skip))
			return false;
		(*count)++;
	}
	return true;
}

kms_status tlog_bundle_parse(const uint8_t *bundle, size_t len, unsigned width,
                             uint64_t first_index, const char *path,
                             tlog_entry_span out[static TLOG_TILE_WIDTH])
{
	memset(out, 0, TLOG_TILE_WIDTH * sizeof out[0]);
	KMS_ENSURE(width >= 1 && width <= TLOG_TILE_WIDTH && path != NULL, KMS_INVALID_ARGUMENT,
	           WHERE ": bundle width %u is not 1..%u", width, TLOG_TILE_WIDTH);
	kms_cursor c = kms_cursor_init(bundle, len);
	unsigned count = 0;
	kms_status st = KMS_OK;

	while (count < width && c.left > 0) {
		uint64_t index = first_index + count;
		uint16_t entry_len;
		const uint8_t *bytes;
		if (!kms_cursor_u16be(&c, &entry_len)) {
			st = KMS_FAIL(KMS_INVALID_CIPHERTEXT,
			              "entry %llu in %s: 1 byte where a 2-byte length belongs",
			              (unsigned long long)index, path);
			goto out;
		}
		if (entry_len < TLOG_ENTRY_MIN) {
			st = KMS_FAIL(KMS_INVALID_CIPHERTEXT, "entry %llu in %s: empty entry",
			              (unsigned long long)index, path);
			goto out;
		}
		size_t left = c.left;
		if (!kms_cursor_take(&c, entry_len, &bytes)) {
			st = KMS_FAIL(KMS_INVALID_CIPHERTEXT,
			              "entry %llu in %s: length %u runs past the end of the bundle "
			              "(%zu bytes left)",
			              (unsigned long long)index, path, entry_len, left);
			goto out;
		}
		out[count].bytes = bytes;
		out[count].len = entry_len;
		count++;
	}
	if (c.left > 0) {
		unsigned more = count;
		size_t left = c.left;
		if (count_rest(&c, &more))
			st = KMS_FAIL(KMS_INVALID_CIPHERTEXT, "%s: %u entries, expected %u", path,
			              more, width);
		else
			st = KMS_FAIL(KMS_INVALID_CIPHERTEXT,
			              "%s: %zu bytes left over after its %u entries", path, left, width);
		goto out;
	}
	if (count != width) {
		st = KMS_FAIL(KMS_INVALID_CIPHERTEXT, "%s: %u entries, expected %u", path, count,
		              width);
		goto out;
	}
	KMS_ENSURE(kms_cursor_done(&c), KMS_INTERNAL, "%s: parser did not consume the bundle", path);
	return KMS_OK;
out:
	memset(out, 0, TLOG_TILE_WIDTH * sizeof out[0]);
	return st;
}

/* ---- reading a log directory ---- */

kms_status tlog_dir_source(void *ctx, const char *path, size_t max, uint8_t **out, size_t *len)
{
	return tlog_file_read(ctx, path, max, out, len);
}

kms_status tlog_bundle_read(const char *dir, uint64_t tree_size, uint64_t k,
                            char path[static TLOG_TILE_PATH_MAX], uint8_t **bytes,
                            tlog_entry_span spans[static TLOG_TILE_WIDTH], unsigned *width)
{
	return tlog_bundle_read_from(tlog_dir_source, (void *)dir, tree_size, k, path, bytes, spans,
	                             width);
}

kms_status tlog_bundle_read_from(tlog_file_source source, void *ctx, uint64_t tree_size,
                                 uint64_t k, char path[static TLOG_TILE_PATH_MAX],
                                 uint8_t **bytes, tlog_entry_span spans[static TLOG_TILE_WIDTH],
                                 unsigned *width)
{
	size_t len = 0;
	*bytes = NULL;
	*width = 0;
	path[0] = '\0';
	KMS_ENSURE(tree_size <= TLOG_TREE_SIZE_MAX && k < tlog_bundle_count(tree_size),
	           KMS_INVALID_ARGUMENT, WHERE ": a tree of %llu has no bundle %llu",
	           (unsigned long long)tree_size, (unsigned long long)k);
	*width = tlog_bundle_width(tree_size, k);
	KMS_GUARD(tlog_bundle_path(k, *width, path));
	KMS_GUARD(source(ctx, path, TLOG_BUNDLE_BYTES_MAX, bytes, &len));
	return tlog_bundle_parse(*bytes, len, *width, k * TLOG_TILE_WIDTH, path, spans);
}

void tlog_dir_tiles_init(tlog_dir_tiles *t, const char *dir, uint64_t tree_size)
{
	tlog_dir_tiles_init_from(t, tlog_dir_source, (void *)dir, tree_size);
}

void tlog_dir_tiles_init_from(tlog_dir_tiles *t, tlog_file_source source, void *ctx,
                              uint64_t tree_size)
{
	memset(t, 0, sizeof *t);
	t->source = source;
	t->source_ctx = ctx;
	t->tree_size = tree_size;
}

void tlog_dir_tiles_resize(tlog_dir_tiles *t, uint64_t tree_size)
{
	if (t->tree_size == tree_size)
		return;
	t->tree_size = tree_size;
	for (unsigned i = 0; i < TLOG_TILE_LEVELS; i++)
		t->level[i].loaded = false;
}

kms_status tlog_dir_tile_get(tlog_dir_tiles *t, unsigned level, uint64_t index,
                             const tlog_dir_tile **out)
{
	*out = NULL;
	KMS_ENSURE(level < TLOG_TILE_LEVELS, KMS_INTERNAL, WHERE ": no tile level %u", level);
	tlog_dir_tile *tile = &t->level[level];
	if (tile->loaded && tile->index == index) {
		*out = tile;
		return KMS_OK;
	}
	tile->loaded = false;
	uint64_t full = tlog_tile_full_count(t->tree_size, level);
	unsigned width = index < full ? TLOG_TILE_WIDTH
	                              : tlog_tile_partial_width(t->tree_size, level);
	KMS_ENSURE(index <= full && width > 0, KMS_INTERNAL,
	           "a tree of %llu has no tile %llu at level %u",
	           (unsigned long long)t->tree_size, (unsigned long long)index, level);
	KMS_GUARD(tlog_tile_path(level, index, width, tile->path));

	uint8_t *bytes = NULL;
	size_t len = 0;
	KMS_GUARD(t->source(t->source_ctx, tile->path, TLOG_TILE_BYTES, &bytes, &len));
	if (len != (size_t)width * TLOG_HASH_SIZE) {
		free(bytes);
		return KMS_FAIL(KMS_INVALID_CIPHERTEXT, "%s: %zu bytes, expected %u (%u hashes)",
		                tile->path, len, width * TLOG_HASH_SIZE, width);
	}
	memcpy(tile->hashes, bytes, len);
	free(bytes);
	tile->loaded = true;
	tile->index = index;
	tile->width = width;
	*out = tile;
	return KMS_OK;
}

kms_status tlog_dir_tiles_reader(void *ctx, unsigned level, uint64_t index,
                                 uint8_t out[static TLOG_HASH_SIZE])
{
	tlog_dir_tiles *t = ctx;
	const tlog_dir_tile *tile;
	unsigned tile_level = level / TLOG_TILE_HEIGHT;
	unsigned rise = level % TLOG_TILE_HEIGHT;
	uint64_t first = index << rise;
	unsigned count = 1u << rise;
	KMS_GUARD(tlog_dir_tile_get(t, tile_level, first / TLOG_TILE_WIDTH, &tile));
	unsigned offset = (unsigned)(first % TLOG_TILE_WIDTH);
	KMS_ENSURE(offset + count <= tile->width, KMS_INTERNAL, "%s: has no hashes %u..%u",
	           tile->path, offset, offset + count - 1);
	return tlog_root((const uint8_t (*)[TLOG_HASH_SIZE])tile->hashes + offset, count, out);
}

/* ---- copying a log directory ---- */

static kms_status copy_file(const char *src, const char *dst, const char *path, size_t max)
{
	uint8_t *bytes = NULL;
	size_t len = 0;
	KMS_GUARD(tlog_file_read(src, path, max, &bytes, &len));
	kms_status st = tlog_file_write(dst, path, bytes, len, true);
	free(bytes);
	return st;
}

kms_status tlog_dir_copy(const char *src, const char *dst, uint64_t tree_size, uint64_t *files)
{
	char path[TLOG_TILE_PATH_MAX];
	*files = 0;
	KMS_ENSURE(tree_size <= TLOG_TREE_SIZE_MAX, KMS_INVALID_ARGUMENT,
	           WHERE ": no tree of size %llu", (unsigned long long)tree_size);
	for (uint64_t k = 0; k < tlog_bundle_count(tree_size); k++) {
		KMS_GUARD(tlog_bundle_path(k, tlog_bundle_width(tree_size, k), path));
		KMS_GUARD(copy_file(src, dst, path, TLOG_BUNDLE_BYTES_MAX));
		(*files)++;
	}
	for (unsigned level = 0; level < tlog_tile_levels(tree_size); level++) {
		uint64_t full = tlog_tile_full_count(tree_size, level);
		unsigned partial = tlog_tile_partial_width(tree_size, level);
		for (uint64_t k = 0; k < full + (partial > 0); k++) {
			KMS_GUARD(tlog_tile_path(level, k, k < full ? TLOG_TILE_WIDTH : partial, path));
			KMS_GUARD(copy_file(src, dst, path, TLOG_TILE_BYTES));
			(*files)++;
		}
	}
	return KMS_OK;
}
