/*
 * The offline verifier against a log of 300 entries (two bundles: one full,
 * one of 44; tiles tile/0/000, tile/0/001.p/44, tile/1/000.p/1) with a
 * checkpoint signed by an Ed25519 key from OpenSSL: the intact log
 * verifies, and every kind of tampering fails with one line naming what.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "tests/support/tlog_test_util.h"
#include "common/tlog/tlog_tiles.h"
#include "common/tlog/tlog_verify.h"

#define LOG_SIZE 300
#define ORIGIN "kms.example/audit"
#define MAX_ENTRIES 300
#define ENTRY_CAP 256

typedef struct fixture {
	char dir[4096];
	test_key key;
	uint8_t root[TLOG_HASH_SIZE];
	char note[TEST_NOTE_CAP];
	char key_label[TLOG_KEY_NAME_MAX + 16]; /* "name+id" as messages show it */
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	test_mkdtemp(f->dir, "verify");
	test_key_generate(&f->key, ORIGIN);
	test_make_log(f->dir, LOG_SIZE, 0, ORIGIN, &f->key, f->root, f->note);
	tlog_verifier v;
	assert_int_equal(tlog_verifier_key_parse(f->key.vkey, &v), KMS_OK);
	snprintf(f->key_label, sizeof f->key_label, "%s+%08x", v.name, (unsigned)v.key_id);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	test_rmdir(f->dir);
	test_key_free(&f->key);
	free(f);
	return 0;
}

static void expect_ok(fixture *f, const char *since, tlog_verify_report *r)
{
	kms_status st = tlog_verify_dir(f->dir, f->key.vkey, since, NULL, NULL, r);
	if (st != KMS_OK)
		fail_msg("verify failed: %s", r->failure);
	assert_string_equal(r->failure, "");
}

static void expect_fail(fixture *f, const char *since, kms_status status, const char *want)
{
	tlog_verify_report r;
	kms_status st = tlog_verify_dir(f->dir, f->key.vkey, since, NULL, NULL, &r);
	if (st != status || strstr(r.failure, want) == NULL)
		fail_msg("status %s, failure \"%s\"; expected %s, \"%s\"", kms_status_name(st),
		         r.failure, kms_status_name(status), want);
	assert_null(strchr(r.failure, '\n'));
	assert_non_null(strstr(kms_error_message(), r.failure));
}

/* A bundle, parsed by hand (not by the code under test). */
typedef struct entries {
	size_t n;
	size_t len[MAX_ENTRIES];
	uint8_t bytes[MAX_ENTRIES][ENTRY_CAP];
} entries;

static void bundle_load(fixture *f, const char *path, entries *e)
{
	size_t len, off = 0;
	uint8_t *b = test_read_file(f->dir, path, &len);
	e->n = 0;
	while (off < len) {
		size_t n = (size_t)b[off] << 8 | b[off + 1];
		assert_true(n <= ENTRY_CAP && off + 2 + n <= len);
		memcpy(e->bytes[e->n], b + off + 2, n);
		e->len[e->n++] = n;
		off += 2 + n;
	}
	free(b);
}

static void bundle_store(fixture *f, const char *path, const entries *e)
{
	uint8_t *b = malloc(MAX_ENTRIES * (ENTRY_CAP + 2));
	size_t off = 0;
	for (size_t i = 0; i < e->n; i++) {
		b[off] = (uint8_t)(e->len[i] >> 8);
		b[off + 1] = (uint8_t)e->len[i];
		memcpy(b + off + 2, e->bytes[i], e->len[i]);
		off += 2 + e->len[i];
	}
	test_write_file(f->dir, path, b, off);
	free(b);
}

static void flip_byte(fixture *f, const char *path, size_t at)
{
	size_t len;
	uint8_t *b = test_read_file(f->dir, path, &len);
	assert_true(at < len);
	b[at] ^= 0x01;
	test_write_file(f->dir, path, b, len);
	free(b);
}

static void remove_file(fixture *f, const char *path)
{
	char full[8192];
	snprintf(full, sizeof full, "%s/%s", f->dir, path);
	assert_int_equal(remove(full), 0);
}

typedef struct visit_state {
	uint64_t calls;
	uint64_t stop_at;
} visit_state;

static kms_status visit(void *ctx, uint64_t index, const uint8_t *entry, size_t len)
{
	visit_state *v = ctx;
	char want[ENTRY_CAP];
	assert_int_equal(index, v->calls);
	size_t want_len = test_entry(index, 0, want, sizeof want);
	assert_int_equal(len, want_len);
	assert_memory_equal(entry, want, len);
	v->calls++;
	if (index == v->stop_at)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "stop here");
	return KMS_OK;
}

static void intact_log_verifies(void **state)
{
	fixture *f = *state;
	tlog_verify_report r;
	visit_state v = { 0, UINT64_MAX };
	assert_int_equal(tlog_verify_dir(f->dir, f->key.vkey, NULL, visit, &v, &r), KMS_OK);
	assert_string_equal(r.failure, "");
	assert_string_equal(r.origin, ORIGIN);
	assert_int_equal(r.tree_size, LOG_SIZE);
	assert_memory_equal(r.root, f->root, TLOG_HASH_SIZE);
	assert_int_equal(r.entries_checked, LOG_SIZE);
	assert_int_equal(r.bundles_checked, 2);
	assert_int_equal(r.tiles_checked, 3);
	assert_false(r.since_checked);
	assert_int_equal(v.calls, LOG_SIZE);

	/* A visitor's failure stops the walk and is named. */
	v = (visit_state){ 0, 7 };
	assert_int_equal(tlog_verify_dir(f->dir, f->key.vkey, NULL, visit, &v, &r),
	                 KMS_INVALID_ARGUMENT);
	assert_string_equal(r.failure, "entry 7: stop here");
	assert_int_equal(v.calls, 8);
}

static void changed_entry_byte(void **state)
{
	fixture *f = *state;
	entries *e = malloc(sizeof *e);
	bundle_load(f, "tile/entries/000", e);
	e->bytes[17][3] ^= 0x20;
	bundle_store(f, "tile/entries/000", e);
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT,
	            "entry 17 in tile/entries/000 differs from the signed tree (hash 17 of tile/0/000)");
	e->bytes[17][3] ^= 0x20;
	bundle_store(f, "tile/entries/000", e);

	bundle_load(f, "tile/entries/001.p/44", e);
	e->bytes[34][0] ^= 0x01;
	bundle_store(f, "tile/entries/001.p/44", e);
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT,
	            "entry 290 in tile/entries/001.p/44 differs from the signed tree "
	            "(hash 34 of tile/0/001.p/44)");
	free(e);
}

static void deleted_entry(void **state)
{
	fixture *f = *state;
	entries *e = malloc(sizeof *e);
	bundle_load(f, "tile/entries/000", e);
	memmove(&e->len[5], &e->len[6], (e->n - 6) * sizeof e->len[0]);
	memmove(e->bytes[5], e->bytes[6], (e->n - 6) * sizeof e->bytes[0]);
	e->n--;
	bundle_store(f, "tile/entries/000", e);
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT, "tile/entries/000: 255 entries, expected 256");
	free(e);
}

static void deleted_last_entry(void **state)
{
	fixture *f = *state;
	entries *e = malloc(sizeof *e);
	bundle_load(f, "tile/entries/001.p/44", e);
	e->n--;
	bundle_store(f, "tile/entries/001.p/44", e);
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT, "tile/entries/001.p/44: 43 entries, expected 44");
	free(e);
}

static void swapped_entries(void **state)
{
	fixture *f = *state;
	entries *e = malloc(sizeof *e);
	uint8_t tmp[ENTRY_CAP];
	bundle_load(f, "tile/entries/000", e);
	memcpy(tmp, e->bytes[3], ENTRY_CAP);
	memcpy(e->bytes[3], e->bytes[4], ENTRY_CAP);
	memcpy(e->bytes[4], tmp, ENTRY_CAP);
	size_t len = e->len[3];
	e->len[3] = e->len[4];
	e->len[4] = len;
	bundle_store(f, "tile/entries/000", e);
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT,
	            "entry 3 in tile/entries/000 differs from the signed tree");
	free(e);
}

static void appended_entry(void **state)
{
	fixture *f = *state;
	entries *e = malloc(sizeof *e);
	bundle_load(f, "tile/entries/001.p/44", e);
	memcpy(e->bytes[e->n], "{\"forged\":true}", 15);
	e->len[e->n++] = 15;
	bundle_store(f, "tile/entries/001.p/44", e);
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT, "tile/entries/001.p/44: 45 entries, expected 44");
	e->n--;
	bundle_store(f, "tile/entries/001.p/44", e);

	bundle_load(f, "tile/entries/000", e);
	memcpy(e->bytes[e->n], "{\"forged\":true}", 15);
	e->len[e->n++] = 15;
	bundle_store(f, "tile/entries/000", e);
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT, "tile/entries/000: 257 entries, expected 256");
	free(e);
}

static void malformed_bundles(void **state)
{
	fixture *f = *state;
	size_t len;
	uint8_t *b = test_read_file(f->dir, "tile/entries/001.p/44", &len);
	test_write_file(f->dir, "tile/entries/001.p/44", b, len - 1);
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT, "entry 299 in tile/entries/001.p/44: length ");
	/* An empty entry where entry 256 was. */
	uint8_t *c = malloc(len + 2);
	c[0] = 0;
	c[1] = 0;
	memcpy(c + 2, b, len);
	test_write_file(f->dir, "tile/entries/001.p/44", c, len + 2);
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT, "entry 256 in tile/entries/001.p/44: empty entry");
	free(c);
	free(b);
}

static void changed_tiles(void **state)
{
	fixture *f = *state;
	static const struct {
		const char *path;
		unsigned hash;
		const char *msg;
	} cases[] = {
		{ "tile/0/000", 3, "tile/0/000: hash 3 differs from the entries" },
		{ "tile/0/000", 255, "tile/0/000: hash 255 differs from the entries" },
		{ "tile/0/001.p/44", 40, "tile/0/001.p/44: hash 40 differs from the entries" },
		{ "tile/1/000.p/1", 0, "tile/1/000.p/1: hash 0 differs from the entries" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t at = (size_t)cases[i].hash * TLOG_HASH_SIZE + 31;
		flip_byte(f, cases[i].path, at);
		expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT, cases[i].msg);
		flip_byte(f, cases[i].path, at);
		tlog_verify_report r;
		expect_ok(f, NULL, &r);
	}
}

static void truncated_and_missing_tiles(void **state)
{
	fixture *f = *state;
	size_t len;
	uint8_t *b = test_read_file(f->dir, "tile/0/000", &len);
	test_write_file(f->dir, "tile/0/000", b, len - TLOG_HASH_SIZE);
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT, "tile/0/000: 8160 bytes, expected 8192 (256 hashes)");
	test_write_file(f->dir, "tile/0/000", b, len);
	free(b);

	static const char *const tiles[] = { "tile/0/000", "tile/0/001.p/44", "tile/1/000.p/1",
		                             "tile/entries/000", "tile/entries/001.p/44" };
	for (size_t i = 0; i < sizeof tiles / sizeof tiles[0]; i++) {
		uint8_t *keep = test_read_file(f->dir, tiles[i], &len);
		remove_file(f, tiles[i]);
		char want[128];
		snprintf(want, sizeof want, "%s: missing", tiles[i]);
		expect_fail(f, NULL, KMS_NOT_FOUND, want);
		test_write_file(f->dir, tiles[i], keep, len);
		free(keep);
	}
}

/* An entry changed together with its level-0 hash: the tiles above give it
 * away. */
static void entry_and_tile_changed_together(void **state)
{
	fixture *f = *state;
	entries *e = malloc(sizeof *e);
	bundle_load(f, "tile/entries/000", e);
	e->bytes[9][2] ^= 0x04;
	bundle_store(f, "tile/entries/000", e);
	uint8_t leaf[TLOG_HASH_SIZE];
	assert_int_equal(tlog_leaf_hash(e->bytes[9], e->len[9], leaf), KMS_OK);
	size_t len;
	uint8_t *tile = test_read_file(f->dir, "tile/0/000", &len);
	memcpy(tile + 9 * TLOG_HASH_SIZE, leaf, TLOG_HASH_SIZE);
	test_write_file(f->dir, "tile/0/000", tile, len);
	free(tile);
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT, "tile/1/000.p/1: hash 0 differs from the entries");
	free(e);
}

static void rewrite_checkpoint(fixture *f, const char *from, const char *to)
{
	char note[TEST_NOTE_CAP];
	char *at = strstr(f->note, from);
	assert_non_null(at);
	snprintf(note, sizeof note, "%.*s%s%s", (int)(at - f->note), f->note, to, at + strlen(from));
	test_write_file(f->dir, "checkpoint", note, strlen(note));
}

static void changed_checkpoint(void **state)
{
	fixture *f = *state;
	char want[512];
	snprintf(want, sizeof want, "checkpoint signature does not verify with key %s", f->key_label);

	rewrite_checkpoint(f, "\n300\n", "\n299\n");
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT, want);
	rewrite_checkpoint(f, "\n300\n", "\n301\n");
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT, want);
	/* The root's first character (no unused bits: still canonical). */
	char *root_line = strstr(f->note, "\n300\n") + 5;
	char from[8] = "300\nX", to[8] = "300\nX";
	from[4] = root_line[0];
	to[4] = root_line[0] == 'A' ? 'B' : 'A';
	rewrite_checkpoint(f, from, to);
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT, want);
	rewrite_checkpoint(f, ORIGIN "\n", "kms.example/other\n");
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT, want);

	/* Re-signed by another key with the same name. */
	test_key other;
	char note[TEST_NOTE_CAP];
	test_key_generate(&other, ORIGIN);
	test_sign_checkpoint(&other, ORIGIN, LOG_SIZE, f->root, note);
	test_write_file(f->dir, "checkpoint", note, strlen(note));
	snprintf(want, sizeof want, "checkpoint is not signed by key %s", f->key_label);
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT, want);

	/* Our signature plus a witness's cosignature: fine. */
	char both[2 * TEST_NOTE_CAP];
	snprintf(both, sizeof both, "%s%s", f->note, strstr(note, "\n\n") + 2);
	test_write_file(f->dir, "checkpoint", both, strlen(both));
	tlog_verify_report r;
	expect_ok(f, NULL, &r);
	test_key_free(&other);

	/* Not a note, not a checkpoint, not there. */
	test_write_file(f->dir, "checkpoint", "hello\n", 6);
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT, "checkpoint is malformed: no blank line");
	remove_file(f, "checkpoint");
	expect_fail(f, NULL, KMS_NOT_FOUND, "checkpoint: missing");
}

static void bad_arguments(void **state)
{
	fixture *f = *state;
	tlog_verify_report r;
	assert_int_equal(tlog_verify_dir(f->dir, "not a key", NULL, NULL, NULL, &r),
	                 KMS_INVALID_ARGUMENT);
	assert_non_null(strstr(r.failure, "verifier key"));
	assert_int_equal(tlog_verify_dir("", f->key.vkey, NULL, NULL, NULL, &r), KMS_INVALID_ARGUMENT);
	assert_int_equal(tlog_verify_dir(NULL, f->key.vkey, NULL, NULL, NULL, &r),
	                 KMS_INVALID_ARGUMENT);
}

/* The root of the first n entries of seed's log. */
static void prefix_root(uint64_t n, unsigned seed, uint8_t root[static TLOG_HASH_SIZE])
{
	tlog_tree tree;
	char entry[ENTRY_CAP];
	tlog_tree_init(&tree);
	for (uint64_t i = 0; i < n; i++) {
		size_t len = test_entry(i, seed, entry, sizeof entry);
		assert_int_equal(tlog_tree_append_entry(&tree, (const uint8_t *)entry, len), KMS_OK);
	}
	assert_int_equal(tlog_tree_root(&tree, n, root), KMS_OK);
	tlog_tree_free(&tree);
}

static void since_older_checkpoint(void **state)
{
	fixture *f = *state;
	uint8_t root[TLOG_HASH_SIZE];
	char old[TEST_NOTE_CAP];
	tlog_verify_report r;

	static const uint64_t prefixes[] = { 0, 1, 100, 255, 256, 257, 299, 300 };
	for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
		prefix_root(prefixes[i], 0, root);
		test_sign_checkpoint(&f->key, ORIGIN, prefixes[i], root, old);
		expect_ok(f, old, &r);
		assert_true(r.since_checked);
		assert_int_equal(r.since_size, prefixes[i]);
	}

	/* Another log's history under the same key and origin: a fork. */
	prefix_root(100, 1, root);
	test_sign_checkpoint(&f->key, ORIGIN, 100, root, old);
	expect_fail(f, old, KMS_INVALID_CIPHERTEXT, "old checkpoint (size 100) is not a prefix of this log");
	/* Another log altogether. */
	prefix_root(100, 0, root);
	test_sign_checkpoint(&f->key, "other.example/log", 100, root, old);
	expect_fail(f, old, KMS_INVALID_CIPHERTEXT,
	            "old checkpoint is for origin other.example/log, this log is " ORIGIN);
	/* A future this log does not have. */
	test_sign_checkpoint(&f->key, ORIGIN, 301, root, old);
	expect_fail(f, old, KMS_INVALID_CIPHERTEXT,
	            "old checkpoint (size 301) is larger than this log (size 300)");
	/* Signed by someone else, or changed. */
	test_key other;
	test_key_generate(&other, ORIGIN);
	test_sign_checkpoint(&other, ORIGIN, 100, root, old);
	expect_fail(f, old, KMS_INVALID_CIPHERTEXT, "old checkpoint is not signed by key");
	test_key_free(&other);
	test_sign_checkpoint(&f->key, ORIGIN, 100, root, old);
	*strstr(old, "\n100\n") = ' ';
	expect_fail(f, old, KMS_INVALID_CIPHERTEXT, "old checkpoint");
	assert_int_equal(tlog_verify_dir(f->dir, f->key.vkey, "", NULL, NULL, &r),
	                 KMS_INVALID_CIPHERTEXT);
	assert_non_null(strstr(r.failure, "old checkpoint is malformed"));
}

/* kmsd's way: publish at 100, then at 300 writing only what is new; the
 * old partial files stay; both checkpoints verify, the old as a prefix. */
static void incremental_publishing(void **state)
{
	fixture *f = *state;
	char dir[4096], note100[TEST_NOTE_CAP], note300[TEST_NOTE_CAP];
	uint8_t root[TLOG_HASH_SIZE];
	tlog_tree tree;
	unsigned seed = 0;
	char entry[ENTRY_CAP];
	test_mkdtemp(dir, "incremental");
	tlog_tree_init(&tree);
	for (uint64_t i = 0; i < LOG_SIZE; i++) {
		size_t len = test_entry(i, seed, entry, sizeof entry);
		assert_int_equal(tlog_tree_append_entry(&tree, (const uint8_t *)entry, len), KMS_OK);
	}
	assert_int_equal(tlog_bundles_write(dir, test_entry_reader, &seed, 0, 100), KMS_OK);
	assert_int_equal(tlog_tiles_write(dir, tlog_tree_reader, &tree, 0, 100), KMS_OK);
	assert_int_equal(tlog_tree_root(&tree, 100, root), KMS_OK);
	test_sign_checkpoint(&f->key, ORIGIN, 100, root, note100);
	assert_int_equal(tlog_checkpoint_publish(dir, note100, strlen(note100)), KMS_OK);

	tlog_verify_report r;
	assert_int_equal(tlog_verify_dir(dir, f->key.vkey, NULL, NULL, NULL, &r), KMS_OK);
	assert_int_equal(r.tree_size, 100);

	assert_int_equal(tlog_bundles_write(dir, test_entry_reader, &seed, 100, 300), KMS_OK);
	assert_int_equal(tlog_tiles_write(dir, tlog_tree_reader, &tree, 100, 300), KMS_OK);
	assert_int_equal(tlog_tree_root(&tree, 300, root), KMS_OK);
	test_sign_checkpoint(&f->key, ORIGIN, 300, root, note300);
	assert_int_equal(tlog_checkpoint_publish(dir, note300, strlen(note300)), KMS_OK);
	assert_int_equal(tlog_verify_dir(dir, f->key.vkey, note100, NULL, NULL, &r), KMS_OK);
	assert_int_equal(r.tree_size, 300);
	assert_true(r.since_checked);
	assert_int_equal(r.since_size, 100);
	assert_true(test_file_exists(dir, "tile/0/000.p/100"));
	tlog_tree_free(&tree);
	test_rmdir(dir);
}

/* Partial files beside the ones the tree needs: kmsd keeps the old ones
 * (tile/0/000.p/100 after tile/0/000.p/... of 300), and each is checked as
 * a prefix of the signed tree, naming the file when it is not. */
static void stale_partials(void **state)
{
	fixture *f = *state;
	char dir[4096], note[TEST_NOTE_CAP];
	uint8_t root[TLOG_HASH_SIZE];
	unsigned seed = 0;
	tlog_verify_report r;
	test_mkdtemp(dir, "stale");
	test_make_log(dir, 100, seed, ORIGIN, &f->key, root, NULL);
	test_make_log(dir, LOG_SIZE, seed, ORIGIN, &f->key, root, note);
	assert_true(test_file_exists(dir, "tile/0/000.p/100"));
	assert_true(test_file_exists(dir, "tile/entries/000.p/100"));
	assert_int_equal(tlog_verify_dir(dir, f->key.vkey, NULL, NULL, NULL, &r), KMS_OK);
	assert_int_equal(r.extra_checked, 2);
	assert_int_equal(r.past_checkpoint, 0);

	char fixture_dir[4096];
	snprintf(fixture_dir, sizeof fixture_dir, "%s", f->dir);
	snprintf(f->dir, sizeof f->dir, "%s", dir);
	flip_byte(f, "tile/0/000.p/100", 99 * TLOG_HASH_SIZE + 3);
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT, "tile/0/000.p/100: hash 99 differs");
	expect_fail(f, note, KMS_INVALID_CIPHERTEXT, "tile/0/000.p/100: hash 99 differs");
	flip_byte(f, "tile/0/000.p/100", 99 * TLOG_HASH_SIZE + 3);
	flip_byte(f, "tile/entries/000.p/100", 2 + 7);
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT, "entry 0 in tile/entries/000.p/100 differs");
	flip_byte(f, "tile/entries/000.p/100", 2 + 7);
	test_write_file(dir, "tile/0/000.p/100", "short", 5);
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT, "tile/0/000.p/100: 5 bytes");
	snprintf(f->dir, sizeof f->dir, "%s", fixture_dir);
	test_rmdir(dir);
}

/* A copy that caught files written for a larger tree than its checkpoint,
 * and a writer's temporary files: what the checkpoint covers is verified,
 * the rest counted; temporary files are skipped. */
static void files_past_the_checkpoint(void **state)
{
	fixture *f = *state;
	char dir[4096], note200[TEST_NOTE_CAP];
	uint8_t root[TLOG_HASH_SIZE];
	tlog_tree tree;
	unsigned seed = 0;
	char entry[ENTRY_CAP];
	tlog_verify_report r;
	test_mkdtemp(dir, "past");
	test_make_log(dir, LOG_SIZE, seed, ORIGIN, &f->key, root, NULL);
	tlog_tree_init(&tree);
	for (uint64_t i = 0; i < 200; i++) {
		size_t len = test_entry(i, seed, entry, sizeof entry);
		assert_int_equal(tlog_tree_append_entry(&tree, (const uint8_t *)entry, len), KMS_OK);
	}
	assert_int_equal(tlog_bundles_write(dir, test_entry_reader, &seed, 0, 200), KMS_OK);
	assert_int_equal(tlog_tiles_write(dir, tlog_tree_reader, &tree, 0, 200), KMS_OK);
	assert_int_equal(tlog_tree_root(&tree, 200, root), KMS_OK);
	test_sign_checkpoint(&f->key, ORIGIN, 200, root, note200);
	assert_int_equal(tlog_checkpoint_publish(dir, note200, strlen(note200)), KMS_OK);
	test_write_file(dir, "tile/0/.000.tmp-AbCdEf", "half", 4);
	test_write_file(dir, "tile/0/000.p/.200.tmp-AbCdEf", "half", 4);

	assert_int_equal(tlog_verify_dir(dir, f->key.vkey, NULL, NULL, NULL, &r), KMS_OK);
	assert_int_equal(r.tree_size, 200);
	assert_int_equal(r.past_checkpoint, 2); /* tile/0/000 and tile/entries/000 */

	char fixture_dir[4096];
	snprintf(fixture_dir, sizeof fixture_dir, "%s", f->dir);
	snprintf(f->dir, sizeof f->dir, "%s", dir);
	flip_byte(f, "tile/0/000", 250 * TLOG_HASH_SIZE); /* past 200: not covered */
	expect_ok(f, NULL, &r);
	flip_byte(f, "tile/0/000", 199 * TLOG_HASH_SIZE);
	expect_fail(f, NULL, KMS_INVALID_CIPHERTEXT, "tile/0/000: hash 199 differs");
	snprintf(f->dir, sizeof f->dir, "%s", fixture_dir);
	tlog_tree_free(&tree);
	test_rmdir(dir);
}

static void small_logs(void **state)
{
	fixture *f = *state;
	static const uint64_t sizes[] = { 0, 1, 255, 256, 257, 512 };
	static const uint64_t tiles[] = { 0, 1, 1, 2, 3, 3 };
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		char dir[4096];
		uint8_t root[TLOG_HASH_SIZE];
		tlog_verify_report r;
		test_mkdtemp(dir, "small");
		test_make_log(dir, sizes[i], 0, ORIGIN, &f->key, root, NULL);
		assert_int_equal(tlog_verify_dir(dir, f->key.vkey, NULL, NULL, NULL, &r), KMS_OK);
		assert_int_equal(r.tree_size, sizes[i]);
		assert_int_equal(r.entries_checked, sizes[i]);
		assert_int_equal(r.tiles_checked, tiles[i]);
		assert_memory_equal(r.root, root, TLOG_HASH_SIZE);
		test_rmdir(dir);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(intact_log_verifies, setup, teardown),
		cmocka_unit_test_setup_teardown(changed_entry_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(deleted_entry, setup, teardown),
		cmocka_unit_test_setup_teardown(deleted_last_entry, setup, teardown),
		cmocka_unit_test_setup_teardown(swapped_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(appended_entry, setup, teardown),
		cmocka_unit_test_setup_teardown(malformed_bundles, setup, teardown),
		cmocka_unit_test_setup_teardown(changed_tiles, setup, teardown),
		cmocka_unit_test_setup_teardown(truncated_and_missing_tiles, setup, teardown),
		cmocka_unit_test_setup_teardown(entry_and_tile_changed_together, setup, teardown),
		cmocka_unit_test_setup_teardown(changed_checkpoint, setup, teardown),
		cmocka_unit_test_setup_teardown(bad_arguments, setup, teardown),
		cmocka_unit_test_setup_teardown(since_older_checkpoint, setup, teardown),
		cmocka_unit_test_setup_teardown(incremental_publishing, setup, teardown),
		cmocka_unit_test_setup_teardown(small_logs, setup, teardown),
		cmocka_unit_test_setup_teardown(stale_partials, setup, teardown),
		cmocka_unit_test_setup_teardown(files_past_the_checkpoint, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
