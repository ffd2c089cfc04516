/*
 * fuzz_tlog_verify: the offline verifier behind `kms-admin audit verify`
 * (common/tlog/tlog_verify.c, tlog_verify_dir) over damaged copies of a
 * real log directory: the bundle, tile and checkpoint readers at depth,
 * and the verifier's walk over what it finds.
 *
 * Once, the target writes three logs (3, 256 and 300 entries: a partial
 * bundle alone, one full bundle, a full and a partial one with a level-1
 * tile) with an Ed25519 key from OpenSSL, and keeps their files in memory.
 * Each input writes one of them to a work directory (on /dev/shm when it
 * is there) and edits it.
 *
 * Input: a log byte (mod 3), a since byte, then edits of the form
 *   op byte (mod 7), then by op:
 *   0 signed checkpoint: u64 BE size, a root byte (odd: the true root at
 *     that size, or at the log's size when larger; even: 32 bytes follow),
 *     signed with the log's key, so the verifier is reached past the
 *     signature with any size and root;
 *   1 replace: file byte, u16 BE length, bytes;
 *   2 flip: file byte, u16 BE offset, mask byte;
 *   3 cut: file byte, u16 BE length;
 *   4 add: kind byte (level 0..2 tile or entries), u16 BE index, width byte
 *     (0 = full), u16 BE length, bytes: a tile or bundle file where the
 *     verifier may look for one;
 *   5 remove: file byte;
 *   6 raw checkpoint: u16 BE length, text (unsigned).
 * since (mod 4): none; the log's own checkpoint; one signed at a smaller
 * size with its true root; one signed with a root from the input.
 *
 * Invariants:
 *   - the unedited log verifies, with every entry visited in order;
 *   - a status is OK, INVALID_ARGUMENT, NOT_FOUND, INVALID_CIPHERTEXT or
 *     INTERNAL; a failure has a one-line printable report that is the
 *     error message, a success an empty one;
 *   - a log that verifies is the true log, or a prefix of it, whatever was
 *     edited: its signed size is at most the true size, its root the true
 *     root at that size, and every entry the visitor sees is the true
 *     entry; an older checkpoint accepted is the true root at its size.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/tlog/tlog_merkle.h"
#include "common/tlog/tlog_note.h"
#include "common/tlog/tlog_tiles.h"
#include "common/tlog/tlog_verify.h"
#include "tests/support/fuzz.h"
#include "tests/support/tlog_test_util.h"

#define ORIGIN "kms.example/audit/fuzz"
#define LOGS 3
#define FILES_MAX 16
#define EDITS_MAX 8
#define SEED 0u

static const uint64_t log_sizes[LOGS] = { 3, 256, 300 };

typedef struct stored_file {
	char path[TLOG_TILE_PATH_MAX];
	uint8_t *bytes;
	size_t len;
} stored_file;

typedef struct stored_log {
	uint64_t size;
	tlog_tree tree;
	stored_file files[FILES_MAX];
	size_t n_files;
} stored_log;

static bool ready;
static test_key key;
static stored_log logs[LOGS];
static char work[4096];

/* ---- setup ---- */

static void keep(stored_log *log, const char *dir, const char *path)
{
	FUZZ_CHECK(log->n_files < FILES_MAX);
	stored_file *f = &log->files[log->n_files++];
	snprintf(f->path, sizeof f->path, "%s", path);
	f->bytes = test_read_file(dir, path, &f->len);
}

static void keep_log(stored_log *log, uint64_t n)
{
	char dir[4096], path[TLOG_TILE_PATH_MAX];
	uint8_t root[TLOG_HASH_SIZE];
	char entry[256];
	test_mkdtemp(dir, "fuzz-verify-make");
	test_make_log(dir, n, SEED, ORIGIN, &key, root, NULL);
	log->size = n;
	tlog_tree_init(&log->tree);
	for (uint64_t i = 0; i < n; i++) {
		size_t len = test_entry(i, SEED, entry, sizeof entry);
		FUZZ_CHECK(tlog_tree_append_entry(&log->tree, (const uint8_t *)entry, len) == KMS_OK);
	}
	keep(log, dir, TLOG_CHECKPOINT_PATH);
	for (uint64_t k = 0; k < tlog_bundle_count(n); k++) {
		FUZZ_CHECK(tlog_bundle_path(k, tlog_bundle_width(n, k), path) == KMS_OK);
		keep(log, dir, path);
	}
	for (unsigned level = 0; level < tlog_tile_levels(n); level++) {
		uint64_t full = tlog_tile_full_count(n, level);
		for (uint64_t i = 0; i < full; i++) {
			FUZZ_CHECK(tlog_tile_path(level, i, TLOG_TILE_WIDTH, path) == KMS_OK);
			keep(log, dir, path);
		}
		unsigned w = tlog_tile_partial_width(n, level);
		if (w) {
			FUZZ_CHECK(tlog_tile_path(level, full, w, path) == KMS_OK);
			keep(log, dir, path);
		}
	}
	test_rmdir(dir);
}

static void cleanup(void)
{
	test_rmdir(work);
}

static void setup(void)
{
	if (ready)
		return;
	static const uint8_t seed[32] = { 'k', 'm', 's', ' ', 'f', 'u', 'z', 'z' };
	/* Every input rewrites a directory: on tmpfs when there is one. */
	if (access("/dev/shm", W_OK) == 0)
		setenv("TMPDIR", "/dev/shm", 1);
	test_key_from_seed(&key, ORIGIN, seed);
	for (size_t i = 0; i < LOGS; i++)
		keep_log(&logs[i], log_sizes[i]);
	test_mkdtemp(work, "fuzz-verify");
	atexit(cleanup);
	ready = true;
}

/* ---- the work directory ---- */

static void make_parents(const char *path)
{
	char full[8192];
	snprintf(full, sizeof full, "%s/%s", work, path);
	for (char *s = full + strlen(work) + 1; (s = strchr(s, '/')) != NULL; s++) {
		*s = '\0';
		FUZZ_CHECK(mkdir(full, 0700) == 0 || errno == EEXIST);
		*s = '/';
	}
}

static void put(const char *path, const uint8_t *bytes, size_t len)
{
	make_parents(path);
	test_write_file(work, path, bytes, len);
}

static void remove_path(const char *path)
{
	char full[8192];
	snprintf(full, sizeof full, "%s/%s", work, path);
	unlink(full);
}

static void write_log(const stored_log *log)
{
	test_rmdir(work);
	FUZZ_CHECK(mkdir(work, 0700) == 0);
	for (size_t i = 0; i < log->n_files; i++)
		put(log->files[i].path, log->files[i].bytes, log->files[i].len);
}

/* ---- input ---- */

typedef struct input {
	const uint8_t *p;
	size_t left;
} input;

static uint64_t take(input *in, unsigned bytes)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < bytes; i++) {
		v = v << 8;
		if (in->left) {
			v |= *in->p++;
			in->left--;
		}
	}
	return v;
}

static size_t take_bytes(input *in, size_t want, const uint8_t **bytes)
{
	size_t n = want < in->left ? want : in->left;
	*bytes = in->p;
	in->p += n;
	in->left -= n;
	return n;
}

static void signed_note(uint64_t size, const uint8_t root[TLOG_HASH_SIZE], char *note)
{
	if (size > TLOG_TREE_SIZE_MAX)
		size = TLOG_TREE_SIZE_MAX;
	test_sign_checkpoint(&key, ORIGIN, size, root, note);
}

/* A root from the input: the true one at the size (or the log's), or bytes. */
static void take_root(input *in, const stored_log *log, uint64_t size,
                      uint8_t root[TLOG_HASH_SIZE])
{
	if (take(in, 1) & 1) {
		FUZZ_CHECK(tlog_tree_root(&log->tree, size < log->size ? size : log->size, root) ==
		           KMS_OK);
		return;
	}
	const uint8_t *b;
	size_t n = take_bytes(in, TLOG_HASH_SIZE, &b);
	memset(root, 0, TLOG_HASH_SIZE);
	memcpy(root, b, n);
}

static const char *file_at(const stored_log *log, input *in)
{
	return log->files[take(in, 1) % log->n_files].path;
}

static void edit(const stored_log *log, input *in)
{
	static uint8_t buf[65536 + 4];
	static char note[TEST_NOTE_CAP];
	const uint8_t *bytes;
	size_t len;
	const char *path;
	char added[TLOG_TILE_PATH_MAX];
	switch (take(in, 1) % 7) {
	case 0: {
		uint64_t size = take(in, 8);
		uint8_t root[TLOG_HASH_SIZE];
		take_root(in, log, size, root);
		signed_note(size, root, note);
		put(TLOG_CHECKPOINT_PATH, (const uint8_t *)note, strlen(note));
		break;
	}
	case 1:
		path = file_at(log, in);
		len = take_bytes(in, take(in, 2), &bytes);
		put(path, bytes, len);
		break;
	case 2: {
		path = file_at(log, in);
		size_t at = take(in, 2);
		uint8_t mask = (uint8_t)take(in, 1);
		uint8_t *old = test_file_exists(work, path) ? test_read_file(work, path, &len) : NULL;
		if (old && len) {
			old[at % len] ^= mask ? mask : 1;
			put(path, old, len);
		}
		free(old);
		break;
	}
	case 3: {
		path = file_at(log, in);
		size_t cut = take(in, 2);
		uint8_t *old = test_file_exists(work, path) ? test_read_file(work, path, &len) : NULL;
		if (old)
			put(path, old, cut < len ? cut : len);
		free(old);
		break;
	}
	case 4: {
		unsigned kind = (unsigned)take(in, 1) % 4;
		uint64_t index = take(in, 2);
		unsigned width = (unsigned)take(in, 1);
		width = width ? width : TLOG_TILE_WIDTH;
		kms_status st = kind == 3 ? tlog_bundle_path(index, width, added)
		                          : tlog_tile_path(kind, index, width, added);
		FUZZ_CHECK(st == KMS_OK);
		len = take_bytes(in, take(in, 2), &bytes);
		put(added, bytes, len);
		break;
	}
	case 5:
		remove_path(file_at(log, in));
		break;
	default:
		len = take_bytes(in, take(in, 2), &bytes);
		memcpy(buf, bytes, len);
		put(TLOG_CHECKPOINT_PATH, buf, len);
		break;
	}
}

/* ---- the run ---- */

typedef struct visit_ctx {
	uint64_t next;
} visit_ctx;

static kms_status visit(void *ctx, uint64_t index, const uint8_t *entry, size_t len)
{
	visit_ctx *v = ctx;
	char want[256];
	size_t want_len = test_entry(index, SEED, want, sizeof want);
	FUZZ_CHECK(index == v->next);
	FUZZ_CHECK(len == want_len && memcmp(entry, want, len) == 0);
	v->next++;
	return KMS_OK;
}

static void check_failure(kms_status st, const tlog_verify_report *r)
{
	FUZZ_CHECK(st == KMS_INVALID_ARGUMENT || st == KMS_NOT_FOUND ||
	           st == KMS_INVALID_CIPHERTEXT || st == KMS_INTERNAL);
	FUZZ_CHECK(r->failure[0] && strcmp(r->failure, kms_error_message()) == 0);
	for (const char *p = r->failure; *p; p++)
		FUZZ_CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char since[TEST_NOTE_CAP];
	setup();
	input in = { data, size };
	const stored_log *log = &logs[take(&in, 1) % LOGS];
	unsigned since_mode = (unsigned)take(&in, 1) % 4;
	uint64_t since_size = 0;
	uint8_t since_root[TLOG_HASH_SIZE];
	write_log(log);
	if (since_mode == 1) {
		memcpy(since, log->files[0].bytes, log->files[0].len);
		since[log->files[0].len] = '\0';
		since_size = log->size;
		FUZZ_CHECK(tlog_tree_root(&log->tree, since_size, since_root) == KMS_OK);
	} else if (since_mode >= 2) {
		since_size = take(&in, 2) % (log->size + 2);
		if (since_mode == 2) {
			uint64_t at = since_size < log->size ? since_size : log->size;
			FUZZ_CHECK(tlog_tree_root(&log->tree, at, since_root) == KMS_OK);
		} else {
			take_root(&in, log, since_size, since_root);
		}
		signed_note(since_size, since_root, since);
	}
	bool edited = in.left > 0;
	for (unsigned i = 0; i < EDITS_MAX && in.left > 0; i++)
		edit(log, &in);

	tlog_verify_report r;
	visit_ctx v = { 0 };
	kms_status st = tlog_verify_dir(work, key.vkey, since_mode ? since : NULL, visit, &v, &r);
	if (!edited && since_mode <= 1)
		FUZZ_CHECK(st == KMS_OK);
	if (st != KMS_OK) {
		check_failure(st, &r);
		kms_error_clear();
		return 0;
	}
	/* It verified: then it is the true log, or a prefix of it. */
	FUZZ_CHECK(r.failure[0] == '\0');
	FUZZ_CHECK(r.tree_size <= log->size && v.next == r.tree_size &&
	           r.entries_checked == r.tree_size);
	uint8_t root[TLOG_HASH_SIZE];
	FUZZ_CHECK(tlog_tree_root(&log->tree, r.tree_size, root) == KMS_OK);
	FUZZ_CHECK(memcmp(root, r.root, TLOG_HASH_SIZE) == 0);
	if (since_mode) {
		FUZZ_CHECK(r.since_checked && r.since_size == since_size &&
		           since_size <= r.tree_size);
		FUZZ_CHECK(tlog_tree_root(&log->tree, since_size, root) == KMS_OK);
		FUZZ_CHECK(memcmp(root, since_root, TLOG_HASH_SIZE) == 0);
	}
	return 0;
}
