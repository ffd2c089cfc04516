/*
 * fuzz_audit_entries: the audit entry readers of kms-admin (clients/cli/
 * admin_audit_query.c, admin_audit_read.c, admin_audit.c): what `audit
 * query` and `audit tail` make of the entries of a log that verifies.
 *
 * An entry is signed by kmsd, but its strings came from clients (key ids,
 * data principal names, purposes, request ids): the readers must take any
 * bytes. The target writes a real log of the input's entries (a tmpfs
 * directory when /dev/shm is there), signs its checkpoint with an Ed25519
 * key from OpenSSL, and runs the commands in-process through cli_main, as
 * kms-admin's main() does.
 *
 * Input: a flags byte (bit 0: --json; bit 1: --principal is the second
 * entry's "principal" rather than "app"), then entries, each a u16 BE
 * length and its bytes (at most 12; empty ones skipped).
 *
 * Invariants:
 *   - `audit query` exits 0 when every entry is a JSON object, else 1
 *     ("entry N: not a JSON object"); `audit tail` exits 0 whatever the
 *     entries;
 *   - with --json, stdout is one JSON document (query) or one JSON object
 *     per line, one per entry (tail), each with the entry's index;
 *     stderr is empty or one JSON object on one line;
 *   - without --json, stdout and stderr hold no control character but
 *     the newline: an entry's text cannot reach the terminal raw;
 *   - the query's counts add up: entries = allowed + denied.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "clients/cli/admin.h"
#include "clients/cli/cli.h"
#include "common/error.h"
#include "common/tlog/tlog_merkle.h"
#include "common/tlog/tlog_note.h"
#include "common/tlog/tlog_tiles.h"
#include "tests/support/fuzz.h"
#include "tests/support/tlog_test_util.h"

#define ORIGIN "kms.example/audit/fuzz-cli"
#define ENTRIES_MAX 12

typedef struct entries {
	const uint8_t *bytes[ENTRIES_MAX];
	size_t len[ENTRIES_MAX];
	size_t n;
} entries;

static bool ready;
static test_key key;
static char base[4096];
static unsigned serial;

static void cleanup(void)
{
	test_rmdir(base);
}

static void setup(void)
{
	if (ready)
		return;
	static const uint8_t seed[32] = { 'a', 'u', 'd', 'i', 't', ' ', 'c', 'l', 'i' };
	test_key_from_seed(&key, ORIGIN, seed);
	if (access("/dev/shm", W_OK) == 0)
		setenv("TMPDIR", "/dev/shm", 1);
	test_mkdtemp(base, "fuzz-audit-cli");
	atexit(cleanup);
	ready = true;
}

static kms_status read_entry(void *ctx, uint64_t index, uint8_t *buf, size_t cap, size_t *len)
{
	const entries *e = ctx;
	FUZZ_CHECK(index < e->n && e->len[index] <= cap);
	memcpy(buf, e->bytes[index], e->len[index]);
	*len = e->len[index];
	return KMS_OK;
}

static void write_log(const char *dir, const entries *e)
{
	tlog_tree tree;
	uint8_t root[TLOG_HASH_SIZE];
	char note[TEST_NOTE_CAP];
	FUZZ_CHECK(mkdir(dir, 0700) == 0);
	tlog_tree_init(&tree);
	for (size_t i = 0; i < e->n; i++)
		FUZZ_CHECK(tlog_tree_append_entry(&tree, e->bytes[i], e->len[i]) == KMS_OK);
	FUZZ_CHECK(tlog_tree_root(&tree, e->n, root) == KMS_OK);
	if (e->n > 0) {
		FUZZ_CHECK(tlog_bundles_write(dir, read_entry, (void *)e, 0, e->n) == KMS_OK);
		FUZZ_CHECK(tlog_tiles_write(dir, tlog_tree_reader, &tree, 0, e->n) == KMS_OK);
	}
	test_sign_checkpoint(&key, ORIGIN, e->n, root, note);
	FUZZ_CHECK(tlog_checkpoint_publish(dir, note, strlen(note)) == KMS_OK);
	tlog_tree_free(&tree);
}

/* ---- running kms-admin ---- */

typedef struct run {
	int code;
	char *out, *err;
	size_t out_len, err_len;
} run;

static void run_admin(char **argv, int argc, run *r)
{
	FILE *out = open_memstream(&r->out, &r->out_len);
	FILE *err = open_memstream(&r->err, &r->err_len);
	FUZZ_CHECK(out && err);
	optind = 0;
	r->code = cli_main("kms-admin", "fuzz", admin_commands, argc, argv, out, err);
	fclose(out);
	fclose(err);
	/* For a failure's triage: KMS_FUZZ_VERBOSE=1 shows what each run said. */
	if (getenv("KMS_FUZZ_VERBOSE"))
		fprintf(stderr, "exit %d\nstdout: %.*s\nstderr: %.*s\n", r->code, (int)r->out_len,
		        r->out, (int)r->err_len, r->err);
}

static void run_free(run *r)
{
	free(r->out);
	free(r->err);
}

static void check_clean(const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		FUZZ_CHECK(c == '\n' || (c >= 0x20 && c != 0x7f));
	}
}

static json_t *one_json(const char *text, size_t len)
{
	json_error_t jerr;
	json_t *doc = json_loadb(text, len, 0, &jerr);
	FUZZ_CHECK(doc != NULL);
	return doc;
}

static void check_err_json(const run *r)
{
	if (r->err_len == 0)
		return;
	FUZZ_CHECK(r->err[r->err_len - 1] == '\n' && memchr(r->err, '\n', r->err_len) ==
	           r->err + r->err_len - 1);
	json_t *doc = one_json(r->err, r->err_len);
	FUZZ_CHECK(json_is_object(doc));
	json_decref(doc);
}

static bool all_objects(const entries *e)
{
	for (size_t i = 0; i < e->n; i++) {
		json_error_t jerr;
		json_t *doc = json_loadb((const char *)e->bytes[i], e->len[i],
		                         JSON_REJECT_DUPLICATES, &jerr);
		bool ok = doc && json_is_object(doc);
		json_decref(doc);
		if (!ok)
			return false;
	}
	return true;
}

static void check_query(const run *r, bool json, bool objects)
{
	FUZZ_CHECK(r->code == (objects ? 0 : 1));
	FUZZ_CHECK(objects || memmem(r->err, r->err_len, "not a JSON object", 17));
	if (!json) {
		check_clean(r->out, r->out_len);
		check_clean(r->err, r->err_len);
		return;
	}
	check_err_json(r);
	if (r->code != 0)
		return;
	json_t *doc = one_json(r->out, r->out_len);
	json_t *entries_n = json_object_get(doc, "entries");
	json_t *allowed = json_object_get(doc, "allowed");
	json_t *denied = json_object_get(doc, "denied");
	FUZZ_CHECK(json_is_integer(entries_n) && json_is_integer(allowed) && json_is_integer(denied));
	FUZZ_CHECK(json_integer_value(entries_n) ==
	           json_integer_value(allowed) + json_integer_value(denied));
	json_decref(doc);
}

static void check_tail(const run *r, bool json, const entries *e)
{
	FUZZ_CHECK(r->code == 0);
	if (!json) {
		check_clean(r->out, r->out_len);
		check_clean(r->err, r->err_len);
		return;
	}
	check_err_json(r);
	size_t lines = 0;
	for (const char *p = r->out, *end = r->out + r->out_len; p < end; lines++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		FUZZ_CHECK(nl != NULL);
		json_t *line = one_json(p, (size_t)(nl - p));
		json_t *index = json_object_get(line, "index");
		FUZZ_CHECK(json_is_integer(index) && (size_t)json_integer_value(index) == lines);
		FUZZ_CHECK(json_object_get(line, "entry") != NULL);
		json_decref(line);
		p = nl + 1;
	}
	FUZZ_CHECK(lines == e->n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	setup();
	uint8_t flags = data[0];
	entries e = { .n = 0 };
	size_t at = 1;
	while (e.n < ENTRIES_MAX && size - at >= 2) {
		size_t len = (size_t)data[at] << 8 | data[at + 1];
		at += 2;
		if (len > size - at)
			len = size - at;
		if (len > 0) {
			e.bytes[e.n] = data + at;
			e.len[e.n++] = len;
		}
		at += len;
	}

	char dir[4200], n_text[24];
	snprintf(dir, sizeof dir, "%s/log%u", base, serial++);
	write_log(dir, &e);
	bool json = flags & 1;
	char principal[64] = "app";
	if ((flags & 2) && e.n > 1) {
		json_error_t jerr;
		json_t *doc = json_loadb((const char *)e.bytes[1], e.len[1], 0, &jerr);
		const char *p = json_string_value(json_object_get(doc, "principal"));
		if (p && p[0])
			snprintf(principal, sizeof principal, "%s", p);
		json_decref(doc);
	}
	snprintf(n_text, sizeof n_text, "%zu", e.n ? e.n : 1);

	/* argv[1] is --json, or the command itself (argv + 1, argc - 1). */
	char *query[] = { "kms-admin", "--json", "audit", "query", "--log", dir, "--key", key.vkey,
		          "--principal", principal, "--since", "2000-01-01T00:00:00Z",
		          "--until", "2100-01-01T00:00:00Z", NULL };
	char *tail[] = { "kms-admin", "--json", "audit", "tail", "--log", dir, "--key", key.vkey,
		         "--lines", n_text, NULL };
	int query_n = (int)(sizeof query / sizeof query[0]) - 1;
	int tail_n = (int)(sizeof tail / sizeof tail[0]) - 1;
	if (!json) {
		query[1] = "kms-admin";
		tail[1] = "kms-admin";
	}
	run r = { 0 };
	run_admin(json ? query : query + 1, json ? query_n : query_n - 1, &r);
	check_query(&r, json, all_objects(&e));
	run_free(&r);
	memset(&r, 0, sizeof r);
	run_admin(json ? tail : tail + 1, json ? tail_n : tail_n - 1, &r);
	check_tail(&r, json, &e);
	run_free(&r);
	test_rmdir(dir);
	kms_error_clear();
	return 0;
}
