/*
 * admin_audit.c: kms-admin audit ... (SPEC section 5): the log's verifier
 * key, the offline end-to-end check of a copied log directory, reading
 * entries from one (tail, show), and inclusion and consistency proofs
 * asked of kmsd and checked here.
 *
 * Nothing from a log directory or from kmsd is believed until it verifies:
 * a checkpoint against the verifier key, an entry against the checkpoint's
 * root. tail and show without a key only read; they never print
 * "verified".
 */
#include "clients/cli/admin.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/crypto.h>

#include "common/error.h"
#include "common/tlog/tlog_merkle.h"
#include "common/tlog/tlog_note.h"
#include "common/tlog/tlog_tiles.h"
#include "common/tlog/tlog_verify.h"

_Static_assert(KMS_HASH_LEN == TLOG_HASH_SIZE, "kmsd's proof hashes are tlog hashes");

#define AUDIT_ENV_KEY "KMS_AUDIT_KEY"
#define TAIL_DEFAULT 10
#define TAIL_MAX 1000000
#define FOLLOW_INTERVAL_MS 500
#define FOLLOW_SLICE_MS 50  /* how soon a signal is noticed while waiting */
#define HASH_HEX_SIZE (2 * TLOG_HASH_SIZE + 1)
#define U64_DIGITS_MAX 20

typedef const uint8_t (*hash_list)[TLOG_HASH_SIZE];

enum {
	OPT_KEY = CLI_OPT_COMMAND,
	OPT_KEY_FILE,
	OPT_SINCE,
	OPT_LINES,
	OPT_FOLLOW,
	OPT_DAEMON,
	OPT_RAW,
	OPT_TREE_SIZE,
	OPT_CONSISTENCY,
	OPT_NEW_SIZE,
	OPT_OLD_CHECKPOINT,
};

#define KEY_OPTIONS                                                            \
	{ "key", required_argument, NULL, OPT_KEY },                           \
	{ "key-file", required_argument, NULL, OPT_KEY_FILE }

/* ---- small helpers ---- */

static const char *hash_hex(const uint8_t hash[static TLOG_HASH_SIZE],
                            char out[static HASH_HEX_SIZE])
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < TLOG_HASH_SIZE; i++) {
		out[2 * i] = digits[hash[i] >> 4];
		out[2 * i + 1] = digits[hash[i] & 0xf];
	}
	out[2 * TLOG_HASH_SIZE] = '\0';
	return out;
}

static bool hash_equal(const uint8_t *a, const uint8_t *b)
{
	return CRYPTO_memcmp(a, b, TLOG_HASH_SIZE) == 0;
}

/* Decimal, digits only, at most max. */
static bool parse_u64(const char *text, uint64_t max, uint64_t *out)
{
	uint64_t value = 0;
	if (!text || !text[0] || strlen(text) > U64_DIGITS_MAX)
		return false;
	for (const char *p = text; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		uint64_t digit = (uint64_t)(*p - '0');
		if (value > (max - digit) / 10)
			return false;
		value = value * 10 + digit;
	}
	*out = value;
	return true;
}

/* "PATH: verification FAILED: what", one line (what cleaned: it may quote
 * a checkpoint or an entry); returns exit code 1. */
static int audit_failed(struct cli *cli, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int audit_failed(struct cli *cli, const char *fmt, ...)
{
	char what[2 * KMS_ERROR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	fprintf(cli->err, "%s: verification FAILED: ", cli->path);
	cli_put_clean(cli->err, what);
	fputc('\n', cli->err);
	return CLI_EXIT_REFUSED;
}

static json_t *json_hex(const uint8_t hash[static TLOG_HASH_SIZE])
{
	char hex[HASH_HEX_SIZE];
	return json_string(hash_hex(hash, hex));
}

static json_t *json_hashes(hash_list hashes, size_t n)
{
	json_t *list = json_array();
	for (size_t i = 0; list && i < n; i++) {
		if (json_array_append_new(list, json_hex(hashes[i])) != 0) {
			json_decref(list);
			return NULL;
		}
	}
	return list;
}

/* One hash a line, the first after the label. */
static void print_hashes(FILE *to, const char *label, hash_list hashes, size_t n,
                         const char *when_empty)
{
	char hex[HASH_HEX_SIZE];
	if (n == 0)
		cli_field(to, label, when_empty);
	for (size_t i = 0; i < n; i++)
		cli_field(to, i == 0 ? label : "", hash_hex(hashes[i], hex));
}

/* The entry as JSON (a new reference), or NULL when it is not a JSON
 * object: every kms entry is one, but the bytes came from outside. */
static json_t *entry_json(const uint8_t *entry, size_t len)
{
	json_error_t jerr;
	json_t *doc = json_loadb((const char *)entry, len, JSON_REJECT_DUPLICATES, &jerr);
	if (doc && !json_is_object(doc)) {
		json_decref(doc);
		doc = NULL;
	}
	return doc;
}

/* The entry pretty-printed, or as cleaned text when it is not JSON. */
static int print_entry_pretty(struct cli *cli, const uint8_t *entry, size_t len)
{
	json_t *doc = entry_json(entry, len);
	if (doc)
		return cli_json_print(cli, doc);
	char *text = strndup((const char *)entry, len);
	if (!text)
		return cli_out_of_memory(cli);
	cli_put_clean(cli->out, text);
	fputc('\n', cli->out);
	free(text);
	return CLI_EXIT_OK;
}

/* An entry for a JSON document: the object, or its bytes as a string
 * (cleaned) when it is not one. */
static json_t *entry_value(const uint8_t *entry, size_t len)
{
	json_t *doc = entry_json(entry, len);
	if (doc)
		return doc;
	char *text = strndup((const char *)entry, len);
	json_t *s = text ? cli_json_str(text) : NULL;
	free(text);
	return s;
}

/* ---- the verifier key ---- */

/* Reads a verifier key file: one line, surrounding whitespace trimmed. */
static int read_key_file(struct cli *cli, const char *path, char out[static TLOG_VERIFIER_KEY_MAX])
{
	char text[TLOG_VERIFIER_KEY_MAX + 8];
	size_t len, total;
	int code = cli_read_input(cli, path, (uint8_t *)text, sizeof text - 1, &len, &total);
	if (code != CLI_EXIT_OK)
		return code;
	if (total > len)
		return cli_usage_error(cli, "--key-file %s: too long for a verifier key", path);
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' ||
	                   text[len - 1] == ' ' || text[len - 1] == '\t'))
		len--;
	size_t start = 0;
	while (start < len && (text[start] == ' ' || text[start] == '\t'))
		start++;
	text[len] = '\0';
	if (len - start >= TLOG_VERIFIER_KEY_MAX || memchr(text + start, '\0', len - start) ||
	    strchr(text + start, '\n'))
		return cli_usage_error(cli, "--key-file %s: not one verifier key line", path);
	memcpy(out, text + start, len - start + 1);
	return CLI_EXIT_OK;
}

/* The verifier key a command was given: KEY_OPTIONS as parsed, then what
 * resolve_key made of them. */
struct verifier_key {
	const char *arg;  /* --key */
	const char *file; /* --key-file */
	char text[TLOG_VERIFIER_KEY_MAX]; /* "" when none was given */
	tlog_verifier parsed;
	bool given;
};

/* Takes opt when it is one of KEY_OPTIONS; false for any other. */
static bool key_option(int opt, struct verifier_key *vk)
{
	if (opt == OPT_KEY)
		vk->arg = optarg;
	else if (opt == OPT_KEY_FILE)
		vk->file = optarg;
	else
		return false;
	return true;
}

/*
 * The verifier key from --key, else --key-file, else $KMS_AUDIT_KEY,
 * parsed. vk->given is false when none was given (then vk->text is ""). A
 * key that does not parse is a usage error: it is the user's input.
 */
static int resolve_key(struct cli *cli, struct verifier_key *vk)
{
	const char *from = "--key";
	int code;
	vk->given = false;
	vk->text[0] = '\0';
	if (vk->arg && vk->file)
		return cli_usage_error(cli, "give --key or --key-file, not both");
	if (vk->arg) {
		if (strlen(vk->arg) >= TLOG_VERIFIER_KEY_MAX)
			return cli_usage_error(cli, "--key: too long for a verifier key");
		memcpy(vk->text, vk->arg, strlen(vk->arg) + 1);
	} else if (vk->file) {
		from = "--key-file";
		if ((code = read_key_file(cli, vk->file, vk->text)) != CLI_EXIT_OK)
			return code;
	} else {
		const char *env = getenv(AUDIT_ENV_KEY);
		if (!env || !env[0])
			return CLI_EXIT_OK;
		from = "$" AUDIT_ENV_KEY;
		if (strlen(env) >= TLOG_VERIFIER_KEY_MAX)
			return cli_usage_error(cli, "%s: too long for a verifier key", from);
		memcpy(vk->text, env, strlen(env) + 1);
	}
	if (tlog_verifier_key_parse(vk->text, &vk->parsed) != KMS_OK)
		return cli_usage_error(cli, "%s is not a verifier key (NAME+ID+KEY): %s", from,
		                       kms_error_message());
	vk->given = true;
	return CLI_EXIT_OK;
}

/* The parsed key, or NULL when none was given. */
static const tlog_verifier *given_key(const struct verifier_key *vk)
{
	return vk->given ? &vk->parsed : NULL;
}

/* ---- a checkpoint from a file ---- */

/* A signed checkpoint from a file (--since, --old-checkpoint), read
 * whole into *note (malloc'ed; free it, also on failure) and
 * NUL-terminated at *len. Too large or empty is a usage error. */
static int read_note_file(struct cli *cli, const char *flag, const char *path, char **note,
                          size_t *len)
{
	size_t total;
	int code;
	if (!(*note = malloc(TLOG_NOTE_MAX + 1)))
		return cli_out_of_memory(cli);
	code = cli_read_input(cli, path, (uint8_t *)*note, TLOG_NOTE_MAX, len, &total);
	if (code != CLI_EXIT_OK)
		return code;
	if (total > *len || *len == 0)
		return cli_usage_error(cli, "%s %s: not a signed checkpoint", flag, path);
	(*note)[*len] = '\0';
	return CLI_EXIT_OK;
}

/* ---- a signed note read without a key ---- */

/* The body of a signed note, unverified: everything up to the last blank
 * line (signature lines are never empty). */
static bool note_body_unverified(const char *text, size_t len, tlog_note_view *out)
{
	for (size_t i = len; i >= 2; i--) {
		if (text[i - 2] == '\n' && text[i - 1] == '\n') {
			out->body = text;
			out->body_len = i - 1;
			return true;
		}
	}
	return false;
}

/* ---- reading a log directory ---- */

/* A directory's checkpoint: the note (owned) and its parsed body. */
struct dir_checkpoint {
	uint8_t *note;
	size_t note_len;
	tlog_checkpoint cp; /* points into note */
	bool verified;
};

static void dir_checkpoint_free(struct dir_checkpoint *dc)
{
	free(dc->note);
	memset(dc, 0, sizeof *dc);
}

/* A directory that is not there or not readable is a usage error (2); a
 * log whose files do not hold up is a failed verification (1). */
static int check_dir(struct cli *cli, const char *dir)
{
	struct stat st;
	if (stat(dir, &st) != 0) {
		fprintf(cli->err, "%s: cannot read %s: %s\n", cli->prog, dir, strerror(errno));
		return CLI_EXIT_USAGE;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(cli->err, "%s: %s is not a directory\n", cli->prog, dir);
		return CLI_EXIT_USAGE;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, TLOG_CHECKPOINT_PATH);
	if (stat(path, &st) != 0) {
		fprintf(cli->err, "%s: %s: no %s here: not a copy of a tlog-tiles log (%s)\n",
		        cli->prog, dir, TLOG_CHECKPOINT_PATH, strerror(errno));
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
}

/* Exit code for a tlog failure reading a directory: 2 when a file could
 * not be read at all, 1 when the log is wrong (missing, malformed,
 * changed). */
static int dir_failure(struct cli *cli, kms_status st, const char *prefix)
{
	if (st == KMS_INTERNAL) {
		fprintf(cli->err, "%s: %s%s\n", cli->prog, prefix, kms_error_message());
		return CLI_EXIT_USAGE;
	}
	return audit_failed(cli, "%s%s", prefix, kms_error_message());
}

/* Reads dir's checkpoint, verifying it when key is not NULL. */
static int read_dir_checkpoint(struct cli *cli, const char *dir, const tlog_verifier *key,
                               struct dir_checkpoint *out)
{
	tlog_note_view view;
	kms_status st;
	memset(out, 0, sizeof *out);
	st = tlog_file_read(dir, TLOG_CHECKPOINT_PATH, TLOG_NOTE_MAX, &out->note, &out->note_len);
	if (st != KMS_OK)
		return dir_failure(cli, st, "");
	const char *text = (const char *)out->note;
	if (key) {
		if (tlog_note_verify(text, out->note_len, key, "checkpoint", &view) != KMS_OK) {
			int code = dir_failure(cli, KMS_INVALID_CIPHERTEXT, "");
			dir_checkpoint_free(out);
			return code;
		}
		out->verified = true;
	} else if (!note_body_unverified(text, out->note_len, &view)) {
		dir_checkpoint_free(out);
		return audit_failed(cli, "checkpoint is malformed: no blank line before "
		                    "the signatures");
	}
	if (tlog_checkpoint_parse(view.body, view.body_len, "checkpoint", &out->cp) != KMS_OK) {
		int code = dir_failure(cli, KMS_INVALID_CIPHERTEXT, "");
		dir_checkpoint_free(out);
		return code;
	}
	return CLI_EXIT_OK;
}

typedef int (*entry_fn)(struct cli *cli, void *ctx, uint64_t index, const uint8_t *entry,
                        size_t len);

/* Calls fn for entries from..to-1 of the tree of tree_size, read from the
 * entry bundles (each parsed strictly). */
static int read_entries(struct cli *cli, const char *dir, uint64_t tree_size, uint64_t from,
                        uint64_t to, entry_fn fn, void *ctx)
{
	tlog_entry_span spans[TLOG_TILE_WIDTH];
	char path[TLOG_TILE_PATH_MAX];
	int code = CLI_EXIT_OK;
	if (from >= to)
		return CLI_EXIT_OK;
	for (uint64_t k = from / TLOG_TILE_WIDTH; k <= (to - 1) / TLOG_TILE_WIDTH; k++) {
		uint64_t first = k * TLOG_TILE_WIDTH;
		uint64_t left = tree_size - first;
		unsigned width = left >= TLOG_TILE_WIDTH ? TLOG_TILE_WIDTH : (unsigned)left;
		uint8_t *bytes = NULL;
		size_t len = 0;
		kms_status st = tlog_bundle_path(k, width, path);
		if (st == KMS_OK)
			st = tlog_file_read(dir, path, TLOG_BUNDLE_BYTES_MAX, &bytes, &len);
		if (st == KMS_OK)
			st = tlog_bundle_parse(bytes, len, width, first, path, spans);
		if (st != KMS_OK) {
			free(bytes);
			return dir_failure(cli, st, "");
		}
		for (unsigned i = 0; i < width && code == CLI_EXIT_OK; i++) {
			uint64_t index = first + i;
			if (index >= from && index < to)
				code = fn(cli, ctx, index, spans[i].bytes, spans[i].len);
		}
		free(bytes);
		if (code != CLI_EXIT_OK)
			return code;
	}
	return CLI_EXIT_OK;
}

/*
 * The hash tiles of a directory as a tlog_hash_reader, for proofs from the
 * files alone (O(log n) tiles, no rebuilt tree). It keeps the last tile
 * read at each tile level: a proof walks up, one tile a level.
 */
struct dir_tile {
	bool loaded;
	uint64_t index;
	unsigned width;
	uint8_t hashes[TLOG_TILE_WIDTH][TLOG_HASH_SIZE];
};

struct dir_tiles {
	const char *dir;
	uint64_t tree_size;
	struct dir_tile level[TLOG_TILE_LEVELS];
};

/* Reads tiles as of tree_size; forgets the tiles of another size (a
 * partial tile's name has its width). */
static void dir_tiles_resize(struct dir_tiles *t, uint64_t tree_size)
{
	if (t->tree_size == tree_size)
		return;
	t->tree_size = tree_size;
	for (unsigned i = 0; i < TLOG_TILE_LEVELS; i++)
		t->level[i].loaded = false;
}

static kms_status dir_tile_get(struct dir_tiles *t, unsigned level, uint64_t index,
                               struct dir_tile **out)
{
	struct dir_tile *tile = &t->level[level];
	char path[TLOG_TILE_PATH_MAX];
	uint8_t *bytes = NULL;
	size_t len = 0;
	*out = tile;
	if (tile->loaded && tile->index == index)
		return KMS_OK;
	tile->loaded = false;
	uint64_t full = tlog_tile_full_count(t->tree_size, level);
	unsigned width = index < full ? TLOG_TILE_WIDTH
	                              : tlog_tile_partial_width(t->tree_size, level);
	KMS_ENSURE(index <= full && width > 0, KMS_INTERNAL,
	           "a tree of %" PRIu64 " has no tile %" PRIu64 " at level %u", t->tree_size,
	           index, level);
	KMS_GUARD(tlog_tile_path(level, index, width, path));
	KMS_GUARD(tlog_file_read(t->dir, path, TLOG_TILE_BYTES, &bytes, &len));
	if (len != (size_t)width * TLOG_HASH_SIZE) {
		free(bytes);
		return KMS_FAIL(KMS_INVALID_CIPHERTEXT, "%s: %zu bytes, expected %u", path, len,
		                width * TLOG_HASH_SIZE);
	}
	memcpy(tile->hashes, bytes, len);
	free(bytes);
	tile->loaded = true;
	tile->index = index;
	tile->width = width;
	return KMS_OK;
}

/* A subtree at tree level h is the root of 2^(h mod 8) hashes of one tile
 * at tile level h / 8. */
static kms_status dir_tiles_read(void *ctx, unsigned level, uint64_t index,
                                 uint8_t out[static TLOG_HASH_SIZE])
{
	struct dir_tiles *t = ctx;
	struct dir_tile *tile;
	unsigned tile_level = level / TLOG_TILE_HEIGHT;
	unsigned rise = level % TLOG_TILE_HEIGHT;
	KMS_ENSURE(tile_level < TLOG_TILE_LEVELS, KMS_INTERNAL, "no tile level %u", tile_level);
	uint64_t first = index << rise;
	unsigned count = 1u << rise;
	KMS_GUARD(dir_tile_get(t, tile_level, first / TLOG_TILE_WIDTH, &tile));
	unsigned offset = (unsigned)(first % TLOG_TILE_WIDTH);
	KMS_ENSURE(offset + count <= tile->width, KMS_INTERNAL,
	           "tile %u/%" PRIu64 " has no hashes %u..%u", tile_level,
	           first / TLOG_TILE_WIDTH, offset, offset + count - 1);
	return tlog_root((hash_list)tile->hashes + offset, count, out);
}

/* Checks an entry read from the bundles against the signed root, through
 * an inclusion proof made from the tiles. */
static int check_entry_in_tree(struct cli *cli, struct dir_tiles *tiles,
                               const tlog_checkpoint *cp, uint64_t index,
                               const uint8_t *entry, size_t len)
{
	uint8_t proof[TLOG_PROOF_MAX_HASHES][TLOG_HASH_SIZE], leaf[TLOG_HASH_SIZE];
	size_t n = 0;
	dir_tiles_resize(tiles, cp->tree_size);
	kms_status st = tlog_leaf_hash(entry, len, leaf);
	if (st == KMS_OK)
		st = tlog_inclusion_proof(dir_tiles_read, tiles, cp->tree_size, index, proof, &n);
	if (st == KMS_INTERNAL)
		return dir_failure(cli, st, "");
	if (st != KMS_OK)
		return audit_failed(cli, "entry %" PRIu64 ": no proof from the tiles: %s", index,
		                    kms_error_message());
	if (tlog_inclusion_verify(leaf, index, cp->tree_size, (hash_list)proof, n, cp->root) !=
	    KMS_OK)
		return audit_failed(cli, "entry %" PRIu64 " is not in the signed tree of %" PRIu64
		                    ": its bundle or the tiles were changed (run "
		                    "'kms-admin audit verify')",
		                    index, cp->tree_size);
	return CLI_EXIT_OK;
}

/* ---- audit verify ---- */

/* Every kms entry is one JSON object (SPEC section 5). */
static kms_status verify_visit(void *ctx, uint64_t index, const uint8_t *entry, size_t len)
{
	(void)index;
	json_error_t jerr;
	json_t *doc = json_loadb((const char *)entry, len, JSON_REJECT_DUPLICATES, &jerr);
	bool object = doc && json_is_object(doc);
	json_decref(doc);
	if (!doc)
		return KMS_FAIL(KMS_INVALID_CIPHERTEXT, "not JSON: %s (byte %d)", jerr.text,
		                jerr.position);
	if (!object)
		return KMS_FAIL(KMS_INVALID_CIPHERTEXT, "not a JSON object");
	(*(uint64_t *)ctx)++;
	return KMS_OK;
}

static int audit_verify(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		KEY_OPTIONS,
		{ "since", required_argument, NULL, OPT_SINCE },
		CLI_BASE_OPTIONS, { 0 },
	};
	const char *since_file = NULL;
	struct verifier_key vk = { 0 };
	tlog_verify_report *report = NULL;
	char *since = NULL;
	uint64_t objects = 0;
	int opt, code;

	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		if (key_option(opt, &vk))
			continue;
		if (opt != OPT_SINCE)
			return cli_usage_error(cli, "option not handled");
		since_file = optarg;
	}
	if ((code = cli_getopt_end(cli, opt, argc, argv, 1, 1)) != CLI_PROCEED)
		return code;
	const char *dir = argv[optind];
	if ((code = resolve_key(cli, &vk)) != CLI_EXIT_OK)
		return code;
	if (!vk.given)
		return cli_usage_error(cli, "no verifier key: give --key, --key-file or $%s "
		                       "('kms-admin audit key' prints it)", AUDIT_ENV_KEY);
	if ((code = check_dir(cli, dir)) != CLI_EXIT_OK)
		return code;
	if (since_file) {
		size_t len;
		code = read_note_file(cli, "--since", since_file, &since, &len);
		if (code != CLI_EXIT_OK)
			goto out;
		/* tlog_verify_dir takes it as a C string: all of it, or refuse. */
		if (memchr(since, '\0', len)) {
			code = cli_usage_error(cli, "--since %s: not a signed checkpoint",
			                       since_file);
			goto out;
		}
	}
	if (!(report = calloc(1, sizeof *report))) {
		code = cli_out_of_memory(cli);
		goto out;
	}

	kms_status st = tlog_verify_dir(dir, vk.text, since, verify_visit, &objects, report);
	if (st != KMS_OK) {
		if (cli->json)
			(void)cli_json_print(cli, json_pack("{s:b, s:o, s:o}", "verified", 0, "dir",
			                                    cli_json_str(dir), "failure",
			                                    cli_json_str(report->failure)));
		if (st == KMS_INTERNAL || st == KMS_INVALID_ARGUMENT) {
			/* Could not read what is there (or a bug): not a verdict. */
			fprintf(cli->err, "%s: could not finish: ", cli->path);
			cli_put_clean(cli->err, report->failure);
			fputc('\n', cli->err);
			code = CLI_EXIT_USAGE;
		} else {
			code = audit_failed(cli, "%s", report->failure);
		}
		goto out;
	}

	char root_hex[HASH_HEX_SIZE], root_b64[TLOG_ROOT_B64_LEN + 1];
	hash_hex(report->root, root_hex);
	(void)cli_b64_encode(report->root, TLOG_HASH_SIZE, root_b64, sizeof root_b64);
	if (cli->json) {
		json_t *since_size = report->since_checked
		                             ? json_integer((json_int_t)report->since_size)
		                             : json_null();
		json_t *doc = json_pack("{s:b, s:o, s:o, s:I, s:s, s:s, s:I, s:I, s:I, s:o}",
		                        "verified", 1, "dir", cli_json_str(dir),
		                        "origin", cli_json_str(report->origin),
		                        "tree_size", (json_int_t)report->tree_size,
		                        "root", root_hex, "root_base64", root_b64,
		                        "entries_checked", (json_int_t)report->entries_checked,
		                        "bundles_checked", (json_int_t)report->bundles_checked,
		                        "tiles_checked", (json_int_t)report->tiles_checked,
		                        "since_size", since_size);
		code = cli_json_print(cli, doc);
		goto out;
	}
	cli_field(cli->out, "verified", dir);
	cli_field(cli->out, "origin", report->origin);
	cli_field_fmt(cli->out, "tree size", "%" PRIu64, report->tree_size);
	cli_field(cli->out, "root", root_hex);
	cli_field(cli->out, "", root_b64);
	cli_field_fmt(cli->out, "entries checked", "%" PRIu64 " in %" PRIu64 " bundles, "
	              "each a JSON object", report->entries_checked, report->bundles_checked);
	cli_field_fmt(cli->out, "tiles checked", "%" PRIu64, report->tiles_checked);
	if (report->since_checked)
		cli_field_fmt(cli->out, "since", "the checkpoint of size %" PRIu64
		              " is a prefix of this log", report->since_size);
	cli_field(cli->out, "key", vk.text);
	code = CLI_EXIT_OK;
out:
	free(report);
	free(since);
	return code;
}

/* ---- following: -f ---- */

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

struct stop_signals {
	struct sigaction old_int, old_term;
};

/* SIGINT and SIGTERM end a follow cleanly (exit 0, output flushed). */
static void stop_signals_catch(struct stop_signals *saved)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	stop_requested = 0;
	sigaction(SIGINT, &sa, &saved->old_int);
	sigaction(SIGTERM, &sa, &saved->old_term);
}

static void stop_signals_restore(const struct stop_signals *saved)
{
	sigaction(SIGINT, &saved->old_int, NULL);
	sigaction(SIGTERM, &saved->old_term, NULL);
}

/* Waits FOLLOW_INTERVAL_MS; false when a stop signal came. */
static bool follow_wait(void)
{
	for (unsigned waited = 0; waited < FOLLOW_INTERVAL_MS && !stop_requested;
	     waited += FOLLOW_SLICE_MS) {
		struct timespec slice = { 0, FOLLOW_SLICE_MS * 1000000L };
		nanosleep(&slice, NULL);
	}
	return !stop_requested;
}

/* A checkpoint looked at again (now) against the one followed so far
 * (then): it must not go back, nor, when compare_roots (it verified),
 * change the root of the size already shown. what names it. */
static int check_not_rewound(struct cli *cli, const char *what, const tlog_checkpoint *then,
                             const tlog_checkpoint *now, bool compare_roots)
{
	if (now->tree_size < then->tree_size)
		return audit_failed(cli, "%s went back from size %" PRIu64 " to %" PRIu64, what,
		                    then->tree_size, now->tree_size);
	if (compare_roots && now->tree_size == then->tree_size &&
	    !hash_equal(now->root, then->root))
		return audit_failed(cli, "%s of size %" PRIu64 " changed its root", what,
		                    then->tree_size);
	return CLI_EXIT_OK;
}

/* Lines must reach a pipe as they come. */
static int flush_lines(struct cli *cli)
{
	if (fflush(cli->out) != 0) {
		fprintf(cli->err, "%s: cannot write the output: %s\n", cli->prog, strerror(errno));
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
}

/* One JSON line: {"index":N,"entry":{...}}. */
static int print_entry_line(struct cli *cli, uint64_t index, const uint8_t *entry, size_t len)
{
	json_t *value = entry_value(entry, len);
	json_t *line = value ? json_pack("{s:I, s:o}", "index", (json_int_t)index, "entry", value)
	                     : NULL;
	if (!line)
		return cli_out_of_memory(cli);
	/* json_dumpf, not json_dumps: main() gives jansson its own allocator. */
	int rc = json_dumpf(line, cli->out, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
	json_decref(line);
	if (rc != 0 || fputc('\n', cli->out) == EOF) {
		fprintf(cli->err, "%s: cannot write the output\n", cli->prog);
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
}

/* ---- audit tail DIR ---- */

struct tail_dir {
	const tlog_checkpoint *cp;
	struct dir_tiles *tiles; /* NULL: no key, nothing verified */
};

static int tail_dir_entry(struct cli *cli, void *ctx, uint64_t index, const uint8_t *entry,
                          size_t len)
{
	struct tail_dir *td = ctx;
	int code;
	if (td->tiles &&
	    (code = check_entry_in_tree(cli, td->tiles, td->cp, index, entry, len)) != CLI_EXIT_OK)
		return code;
	return print_entry_line(cli, index, entry, len);
}

/* With a key, a newer checkpoint must extend the older one: a consistency
 * proof from the tiles, against both signed roots. */
static int check_dir_growth(struct cli *cli, struct dir_tiles *tiles, const tlog_checkpoint *old,
                            const tlog_checkpoint *cp)
{
	uint8_t proof[TLOG_PROOF_MAX_HASHES][TLOG_HASH_SIZE];
	size_t n = 0;
	dir_tiles_resize(tiles, cp->tree_size);
	kms_status st = tlog_consistency_proof(dir_tiles_read, tiles, old->tree_size,
	                                       cp->tree_size, proof, &n);
	if (st != KMS_OK)
		return dir_failure(cli, st, "no consistency proof from the tiles: ");
	if (tlog_consistency_verify(old->tree_size, cp->tree_size, old->root, cp->root,
	                            (hash_list)proof, n) != KMS_OK)
		return audit_failed(cli, "the checkpoint of size %" PRIu64 " does not extend the "
		                    "one of size %" PRIu64 " shown before: history was rewritten",
		                    cp->tree_size, old->tree_size);
	return CLI_EXIT_OK;
}

static int tail_dir(struct cli *cli, const char *dir, const tlog_verifier *key, uint64_t lines,
                    bool follow)
{
	struct dir_checkpoint head, next;
	struct tail_dir td = { 0 };
	struct stop_signals saved;
	int code;

	if ((code = check_dir(cli, dir)) != CLI_EXIT_OK)
		return code;
	if (key && !(td.tiles = calloc(1, sizeof *td.tiles)))
		return cli_out_of_memory(cli);
	if (td.tiles)
		td.tiles->dir = dir;
	if ((code = read_dir_checkpoint(cli, dir, key, &head)) != CLI_EXIT_OK) {
		free(td.tiles);
		return code;
	}
	uint64_t size = head.cp.tree_size;
	td.cp = &head.cp;
	code = read_entries(cli, dir, size, size > lines ? size - lines : 0, size,
	                    tail_dir_entry, &td);
	if (code != CLI_EXIT_OK || !follow)
		goto out;
	if ((code = flush_lines(cli)) != CLI_EXIT_OK)
		goto out;

	stop_signals_catch(&saved);
	while (follow_wait()) {
		if ((code = read_dir_checkpoint(cli, dir, key, &next)) != CLI_EXIT_OK)
			break;
		const tlog_checkpoint *cp = &next.cp;
		code = check_not_rewound(cli, "the checkpoint", &head.cp, cp, key != NULL);
		if (code == CLI_EXIT_OK && cp->tree_size > size) {
			if (key)
				code = check_dir_growth(cli, td.tiles, &head.cp, cp);
			td.cp = cp;
			if (code == CLI_EXIT_OK)
				code = read_entries(cli, dir, cp->tree_size, size, cp->tree_size,
				                    tail_dir_entry, &td);
			if (code == CLI_EXIT_OK)
				code = flush_lines(cli);
		}
		if (code != CLI_EXIT_OK) {
			dir_checkpoint_free(&next);
			break;
		}
		/* The newer checkpoint is the one to compare with from now on. */
		if (cp->tree_size > size) {
			size = cp->tree_size;
			dir_checkpoint_free(&head);
			head = next;
		} else {
			dir_checkpoint_free(&next);
		}
		td.cp = &head.cp;
	}
	stop_signals_restore(&saved);
out:
	dir_checkpoint_free(&head);
	free(td.tiles);
	return code;
}

/* ---- talking to kmsd: a checkpoint that verified ---- */

struct signed_head {
	kms_checkpoint raw;
	char vkey[TLOG_VERIFIER_KEY_MAX];
	tlog_verifier key;
	bool key_from_kmsd; /* not pinned by the user: trust on first use */
	tlog_checkpoint cp; /* points into raw.checkpoint */
};

/* Asks kmsd for its checkpoint and verifies it: with the pinned key when
 * there is one, else with the key kmsd sends along (and says so). */
static int fetch_head(struct cli *cli, kms_client *client, const char *pinned_vkey,
                      const tlog_verifier *pinned, bool warn, struct signed_head *out)
{
	tlog_note_view view;
	kms_error err;

	memset(out, 0, sizeof *out);
	if (kms_get_checkpoint(client, &out->raw, &err) != KMS_OK)
		return cli_report(cli, &err);
	if (pinned) {
		out->key = *pinned;
		snprintf(out->vkey, sizeof out->vkey, "%s", pinned_vkey);
	} else {
		out->key_from_kmsd = true;
		if (strlen(out->raw.verifier_key) >= sizeof out->vkey ||
		    tlog_verifier_key_parse(out->raw.verifier_key, &out->key) != KMS_OK) {
			fprintf(cli->err, "%s: kmsd sent a verifier key that does not parse: ",
			        cli->prog);
			cli_put_clean(cli->err, kms_error_message());
			fputc('\n', cli->err);
			return CLI_EXIT_UNREACHABLE;
		}
		snprintf(out->vkey, sizeof out->vkey, "%s", out->raw.verifier_key);
		if (warn) {
			fprintf(cli->err, "%s: note: checking with the key kmsd sent (", cli->path);
			cli_put_clean(cli->err, out->vkey);
			fprintf(cli->err, "); pin the key you trust with --key\n");
		}
	}
	const char *note = out->raw.checkpoint;
	const char *what = "kmsd's checkpoint";
	if (tlog_note_verify(note, strlen(note), &out->key, what, &view) != KMS_OK ||
	    tlog_checkpoint_parse(view.body, view.body_len, what, &out->cp) != KMS_OK)
		return audit_failed(cli, "%s", kms_error_message());
	if (out->cp.tree_size != out->raw.tree_size ||
	    !hash_equal(out->cp.root, out->raw.root_hash))
		return audit_failed(cli, "kmsd's answer (size %" PRIu64 ") disagrees with the "
		                    "checkpoint it signed (size %" PRIu64 ")",
		                    out->raw.tree_size, out->cp.tree_size);
	return CLI_EXIT_OK;
}

static void signed_head_free(struct signed_head *h)
{
	kms_checkpoint_free(&h->raw);
	memset(h, 0, sizeof *h);
}

/* RFC 9162 2.1.3.2 up to the comparison: the root that proof[0..n) and
 * leaf (at index) give for a tree of tree_size. KMS_INVALID_CIPHERTEXT
 * when the proof has the wrong length. */
static kms_status inclusion_root(const uint8_t leaf[static TLOG_HASH_SIZE], uint64_t index,
                                 uint64_t tree_size, hash_list proof, size_t n,
                                 uint8_t root[static TLOG_HASH_SIZE])
{
	uint8_t r[TLOG_HASH_SIZE];
	KMS_ENSURE(index < tree_size, KMS_INVALID_CIPHERTEXT,
	           "no entry %" PRIu64 " in a tree of %" PRIu64, index, tree_size);
	uint64_t fn = index, sn = tree_size - 1;
	memcpy(r, leaf, TLOG_HASH_SIZE);
	for (size_t i = 0; i < n; i++) {
		KMS_ENSURE(sn != 0, KMS_INVALID_CIPHERTEXT, "the proof has %zu hashes, too many",
		           n);
		if ((fn & 1) || fn == sn) {
			KMS_GUARD(tlog_node_hash(proof[i], r, r));
			while (!(fn & 1) && fn != 0) {
				fn >>= 1;
				sn >>= 1;
			}
		} else {
			KMS_GUARD(tlog_node_hash(r, proof[i], r));
		}
		fn >>= 1;
		sn >>= 1;
	}
	KMS_ENSURE(sn == 0, KMS_INVALID_CIPHERTEXT, "the proof has %zu hashes, too few", n);
	memcpy(root, r, TLOG_HASH_SIZE);
	return KMS_OK;
}

/* An inclusion proof from kmsd for (index, tree_size); its index and size
 * must be the ones asked for. */
static int fetch_inclusion(struct cli *cli, kms_client *client, uint64_t index,
                           uint64_t tree_size, kms_inclusion_proof *out)
{
	kms_error err;
	if (kms_get_inclusion_proof(client, index, tree_size, out, &err) != KMS_OK)
		return cli_report(cli, &err);
	if (out->index != index || out->tree_size != tree_size || !out->entry) {
		fprintf(cli->err, "%s: kmsd answered with entry %" PRIu64 " of %" PRIu64
		        " when asked for entry %" PRIu64 " of %" PRIu64 "\n", cli->prog,
		        out->index, out->tree_size, index, tree_size);
		kms_inclusion_proof_free(out);
		return CLI_EXIT_UNREACHABLE;
	}
	return CLI_EXIT_OK;
}

static int fetch_consistency(struct cli *cli, kms_client *client, uint64_t old_size,
                             uint64_t new_size, kms_consistency_proof *out)
{
	kms_error err;
	if (kms_get_consistency_proof(client, old_size, new_size, out, &err) != KMS_OK)
		return cli_report(cli, &err);
	if (out->old_size != old_size || out->new_size != new_size) {
		fprintf(cli->err, "%s: kmsd answered with a proof from %" PRIu64 " to %" PRIu64
		        " when asked for one from %" PRIu64 " to %" PRIu64 "\n", cli->prog,
		        out->old_size, out->new_size, old_size, new_size);
		kms_consistency_proof_free(out);
		return CLI_EXIT_UNREACHABLE;
	}
	return CLI_EXIT_OK;
}

/* Checks, with a consistency proof from kmsd, that the tree (size, root)
 * is a prefix of the signed head. The proof is kept in *proof when not
 * NULL (the caller frees it). */
static int check_prefix_of_head(struct cli *cli, kms_client *client,
                                const struct signed_head *head, uint64_t size,
                                const uint8_t root[static TLOG_HASH_SIZE],
                                kms_consistency_proof *proof)
{
	kms_consistency_proof local;
	kms_consistency_proof *p = proof ? proof : &local;
	int code = fetch_consistency(cli, client, size, head->cp.tree_size, p);
	if (code != CLI_EXIT_OK)
		return code;
	if (tlog_consistency_verify(size, head->cp.tree_size, root, head->cp.root,
	                            (hash_list)p->hashes, p->n_hashes) != KMS_OK)
		code = audit_failed(cli, "the tree of %" PRIu64 " is not a prefix of the "
		                    "signed checkpoint (size %" PRIu64 "): the consistency proof "
		                    "does not verify", size, head->cp.tree_size);
	if (!proof || code != CLI_EXIT_OK)
		kms_consistency_proof_free(p);
	return code;
}

/* Verifies entry index of kmsd's signed head with an inclusion proof, and
 * prints it as a JSON line. */
static int tail_daemon_entry(struct cli *cli, kms_client *client, const struct signed_head *head,
                             uint64_t index)
{
	kms_inclusion_proof p;
	uint8_t leaf[TLOG_HASH_SIZE];
	int code = fetch_inclusion(cli, client, index, head->cp.tree_size, &p);
	if (code != CLI_EXIT_OK)
		return code;
	if (tlog_leaf_hash(p.entry, p.entry_len, leaf) != KMS_OK ||
	    tlog_inclusion_verify(leaf, index, head->cp.tree_size, (hash_list)p.hashes,
	                          p.n_hashes, head->cp.root) != KMS_OK)
		code = audit_failed(cli, "entry %" PRIu64 ": kmsd's inclusion proof does not "
		                    "verify against its checkpoint of size %" PRIu64,
		                    index, head->cp.tree_size);
	else
		code = print_entry_line(cli, index, p.entry, p.entry_len);
	kms_inclusion_proof_free(&p);
	return code;
}

/* ---- audit tail --daemon ---- */

static int tail_daemon(struct cli *cli, const char *pinned_vkey, const tlog_verifier *pinned,
                       uint64_t lines, bool follow)
{
	struct signed_head head, next;
	struct stop_signals saved;
	kms_client *client = NULL;
	int code;

	memset(&head, 0, sizeof head);
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	if ((code = fetch_head(cli, client, pinned_vkey, pinned, true, &head)) != CLI_EXIT_OK)
		goto out;
	uint64_t size = head.cp.tree_size;
	for (uint64_t i = size > lines ? size - lines : 0; i < size && code == CLI_EXIT_OK; i++)
		code = tail_daemon_entry(cli, client, &head, i);
	if (code != CLI_EXIT_OK || !follow)
		goto out;
	if ((code = flush_lines(cli)) != CLI_EXIT_OK)
		goto out;

	stop_signals_catch(&saved);
	while (follow_wait()) {
		/* The key the first checkpoint verified with, from now on: a
		 * kmsd that changes its key mid-way is not believed. */
		code = fetch_head(cli, client, head.vkey, &head.key, false, &next);
		if (code == CLI_EXIT_OK)
			code = check_not_rewound(cli, "kmsd's checkpoint", &head.cp, &next.cp, true);
		if (code == CLI_EXIT_OK && next.cp.tree_size > size) {
			code = check_prefix_of_head(cli, client, &next, size, head.cp.root, NULL);
			for (uint64_t i = size; i < next.cp.tree_size && code == CLI_EXIT_OK; i++)
				code = tail_daemon_entry(cli, client, &next, i);
			if (code == CLI_EXIT_OK)
				code = flush_lines(cli);
			if (code == CLI_EXIT_OK) {
				size = next.cp.tree_size;
				signed_head_free(&head);
				head = next;
				memset(&next, 0, sizeof next);
			}
		}
		signed_head_free(&next);
		if (code != CLI_EXIT_OK)
			break;
	}
	stop_signals_restore(&saved);
out:
	signed_head_free(&head);
	kms_client_close(client);
	return code;
}

/* ---- audit tail ---- */

/* cli_getopt takes long options only: -n N, -nN and -f are spelled
 * --lines and --follow for it. *copies holds what was allocated. */
static char **spell_short_options(int argc, char **argv, char ***copies)
{
	char **out = calloc((size_t)argc + 1, sizeof *out);
	char **owned = calloc((size_t)argc + 1, sizeof *owned);
	size_t n_owned = 0;
	bool options = true;
	if (!out || !owned)
		goto fail;
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i];
		out[i] = argv[i];
		if (i == 0 || !options)
			continue;
		if (strcmp(arg, "--") == 0)
			options = false;
		else if (strcmp(arg, "-f") == 0)
			out[i] = "--follow";
		else if (strcmp(arg, "-n") == 0)
			out[i] = "--lines";
		else if (strncmp(arg, "-n", 2) == 0) {
			if (asprintf(&owned[n_owned], "--lines=%s", arg + 2) < 0) {
				owned[n_owned] = NULL;
				goto fail;
			}
			out[i] = owned[n_owned++];
		}
	}
	*copies = owned;
	return out;
fail:
	for (size_t i = 0; owned && i < n_owned; i++)
		free(owned[i]);
	free(owned);
	free(out);
	*copies = NULL;
	return NULL;
}

static int audit_tail_options(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		KEY_OPTIONS,
		{ "lines", required_argument, NULL, OPT_LINES },
		{ "follow", no_argument, NULL, OPT_FOLLOW },
		{ "daemon", no_argument, NULL, OPT_DAEMON },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	struct verifier_key vk = { 0 };
	uint64_t lines = TAIL_DEFAULT;
	bool follow = false, daemon = false;
	int opt, code;

	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		if (key_option(opt, &vk))
			continue;
		switch (opt) {
		case OPT_LINES:
			if (!parse_u64(optarg, TAIL_MAX, &lines))
				return cli_usage_error(cli, "-n takes 0..%d", TAIL_MAX);
			break;
		case OPT_FOLLOW:
			follow = true;
			break;
		case OPT_DAEMON:
			daemon = true;
			break;
		default:
			return cli_usage_error(cli, "option not handled");
		}
	}
	int n_dirs = daemon ? 0 : 1;
	if ((code = cli_getopt_end(cli, opt, argc, argv, n_dirs, n_dirs)) != CLI_PROCEED)
		return code;
	if ((code = resolve_key(cli, &vk)) != CLI_EXIT_OK)
		return code;
	if (daemon)
		return tail_daemon(cli, vk.text, given_key(&vk), lines, follow);
	return tail_dir(cli, argv[optind], given_key(&vk), lines, follow);
}

static int audit_tail(struct cli *cli, int argc, char **argv)
{
	char **copies = NULL;
	char **spelled = spell_short_options(argc, argv, &copies);
	if (!spelled)
		return cli_out_of_memory(cli);
	int code = audit_tail_options(cli, argc, spelled);
	for (size_t i = 0; copies[i]; i++)
		free(copies[i]);
	free(copies);
	free(spelled);
	return code;
}

/* ---- audit show ---- */

struct shown_entry {
	uint8_t *bytes;
	size_t len;
};

static int keep_entry(struct cli *cli, void *ctx, uint64_t index, const uint8_t *entry,
                      size_t len)
{
	(void)index;
	struct shown_entry *shown = ctx;
	if (!(shown->bytes = malloc(len)))
		return cli_out_of_memory(cli);
	memcpy(shown->bytes, entry, len);
	shown->len = len;
	return CLI_EXIT_OK;
}

static int audit_show(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		KEY_OPTIONS,
		{ "raw", no_argument, NULL, OPT_RAW },
		CLI_BASE_OPTIONS, { 0 },
	};
	struct verifier_key vk = { 0 };
	struct dir_checkpoint head;
	struct dir_tiles *tiles = NULL;
	struct shown_entry shown = { 0 };
	uint64_t index;
	bool raw = false;
	int opt, code;

	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		if (key_option(opt, &vk))
			continue;
		if (opt != OPT_RAW)
			return cli_usage_error(cli, "option not handled");
		raw = true;
	}
	if ((code = cli_getopt_end(cli, opt, argc, argv, 2, 2)) != CLI_PROCEED)
		return code;
	if (!parse_u64(argv[optind], TLOG_TREE_SIZE_MAX - 1, &index))
		return cli_usage_error(cli, "N is an entry number, 0 or more");
	const char *dir = argv[optind + 1];
	if (raw && cli->json)
		return cli_usage_error(cli, "give --raw or --json, not both");
	if ((code = resolve_key(cli, &vk)) != CLI_EXIT_OK)
		return code;
	if ((code = check_dir(cli, dir)) != CLI_EXIT_OK)
		return code;
	if ((code = read_dir_checkpoint(cli, dir, given_key(&vk), &head)) != CLI_EXIT_OK)
		return code;
	if (index >= head.cp.tree_size) {
		fprintf(cli->err, "%s: no entry %" PRIu64 ": the checkpoint has %" PRIu64
		        " entries\n", cli->path, index, head.cp.tree_size);
		code = CLI_EXIT_REFUSED;
		goto out;
	}
	code = read_entries(cli, dir, head.cp.tree_size, index, index + 1, keep_entry, &shown);
	if (code != CLI_EXIT_OK)
		goto out;
	if (vk.given) {
		if (!(tiles = calloc(1, sizeof *tiles))) {
			code = cli_out_of_memory(cli);
			goto out;
		}
		tiles->dir = dir;
		code = check_entry_in_tree(cli, tiles, &head.cp, index, shown.bytes, shown.len);
		if (code != CLI_EXIT_OK)
			goto out;
	}
	if (raw)
		code = cli_write_output(cli, NULL, shown.bytes, shown.len);
	else if (cli->json)
		code = cli_json_print(cli, json_pack("{s:I, s:I, s:b, s:o}",
		                                     "index", (json_int_t)index,
		                                     "tree_size", (json_int_t)head.cp.tree_size,
		                                     "verified", vk.given,
		                                     "entry", entry_value(shown.bytes, shown.len)));
	else
		code = print_entry_pretty(cli, shown.bytes, shown.len);
out:
	free(shown.bytes);
	free(tiles);
	dir_checkpoint_free(&head);
	return code;
}

/* ---- audit key ---- */

static int audit_key(struct cli *cli, int argc, char **argv)
{
	struct signed_head head;
	kms_client *client = NULL;
	int code = cli_parse_and_connect(cli, argc, argv, 0, 0, &client);
	if (code != CLI_PROCEED)
		return code;
	/* The key kmsd sends must at least verify the checkpoint it sends. */
	code = fetch_head(cli, client, NULL, NULL, false, &head);
	kms_client_close(client);
	if (code == CLI_EXIT_REFUSED)
		code = CLI_EXIT_UNREACHABLE; /* not a valid answer, not a refusal */
	if (code == CLI_EXIT_OK) {
		if (cli->json)
			code = cli_json_print(cli, json_pack("{s:o}", "verifier_key",
			                                     cli_json_str(head.vkey)));
		else
			fprintf(cli->out, "%s\n", head.vkey);
	}
	signed_head_free(&head);
	return code;
}

/* ---- audit prove ---- */

static void print_head(struct cli *cli, const struct signed_head *head)
{
	char hex[HASH_HEX_SIZE];
	cli_field_fmt(cli->out, "checkpoint", "%.*s, size %" PRIu64, (int)head->cp.origin_len,
	              head->cp.origin, head->cp.tree_size);
	cli_field(cli->out, "", hash_hex(head->cp.root, hex));
	cli_field_fmt(cli->out, "verifier key", "%s (%s)", head->vkey,
	              head->key_from_kmsd ? "sent by kmsd" : "pinned");
}

static json_t *json_head(const struct signed_head *head)
{
	char origin[TLOG_ORIGIN_MAX + 1];
	snprintf(origin, sizeof origin, "%.*s", (int)head->cp.origin_len, head->cp.origin);
	return json_pack("{s:o, s:I, s:o, s:o, s:s}", "origin", cli_json_str(origin),
	                 "tree_size", (json_int_t)head->cp.tree_size, "root",
	                 json_hex(head->cp.root), "verifier_key", cli_json_str(head->vkey),
	                 "key_from", head->key_from_kmsd ? "kmsd" : "pinned");
}

/* prove N [--tree-size S] */
static int prove_inclusion(struct cli *cli, kms_client *client, const struct signed_head *head,
                           uint64_t index, uint64_t tree_size)
{
	kms_inclusion_proof p;
	kms_consistency_proof c = { 0 };
	uint8_t leaf[TLOG_HASH_SIZE], root[TLOG_HASH_SIZE];
	char hex[HASH_HEX_SIZE];
	int code;

	if (tree_size == 0)
		tree_size = head->cp.tree_size;
	if (tree_size > head->cp.tree_size)
		return cli_usage_error(cli, "--tree-size %" PRIu64 " is past kmsd's signed "
		                       "checkpoint (size %" PRIu64 ")", tree_size,
		                       head->cp.tree_size);
	if (index >= tree_size)
		return cli_usage_error(cli, "no entry %" PRIu64 " in a tree of %" PRIu64,
		                       index, tree_size);
	if ((code = fetch_inclusion(cli, client, index, tree_size, &p)) != CLI_EXIT_OK)
		return code;
	if (tlog_leaf_hash(p.entry, p.entry_len, leaf) != KMS_OK) {
		code = cli_out_of_memory(cli);
		goto out;
	}
	if (tree_size == head->cp.tree_size) {
		memcpy(root, head->cp.root, TLOG_HASH_SIZE);
	} else if (inclusion_root(leaf, index, tree_size, (hash_list)p.hashes, p.n_hashes, root) !=
	           KMS_OK) {
		code = audit_failed(cli, "entry %" PRIu64 ": %s", index, kms_error_message());
		goto out;
	}
	if (tlog_inclusion_verify(leaf, index, tree_size, (hash_list)p.hashes, p.n_hashes, root) !=
	    KMS_OK) {
		code = audit_failed(cli, "entry %" PRIu64 ": the inclusion proof does not verify "
		                    "against the signed root of size %" PRIu64, index, tree_size);
		goto out;
	}
	/* An older tree: its root is what the proof says, so it must be a
	 * prefix of what kmsd signed. */
	if (tree_size != head->cp.tree_size &&
	    (code = check_prefix_of_head(cli, client, head, tree_size, root, &c)) != CLI_EXIT_OK)
		goto out;

	if (cli->json) {
		json_t *doc = json_pack("{s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:b}",
		                        "index", (json_int_t)index,
		                        "tree_size", (json_int_t)tree_size,
		                        "leaf_hash", json_hex(leaf),
		                        "proof", json_hashes((hash_list)p.hashes, p.n_hashes),
		                        "root", json_hex(root),
		                        "consistency_proof",
		                        tree_size != head->cp.tree_size
		                                ? json_hashes((hash_list)c.hashes, c.n_hashes)
		                                : json_null(),
		                        "checkpoint", json_head(head),
		                        "entry", entry_value(p.entry, p.entry_len),
		                        "verified", 1);
		code = cli_json_print(cli, doc);
		goto out;
	}
	cli_field_fmt(cli->out, "entry", "%" PRIu64, index);
	cli_field_fmt(cli->out, "tree size", "%" PRIu64, tree_size);
	cli_field(cli->out, "leaf hash", hash_hex(leaf, hex));
	print_hashes(cli->out, "inclusion proof", (hash_list)p.hashes, p.n_hashes,
	             "(none: the tree is this one entry)");
	cli_field(cli->out, "root", hash_hex(root, hex));
	if (tree_size != head->cp.tree_size)
		print_hashes(cli->out, "consistency proof", (hash_list)c.hashes, c.n_hashes,
		             "(none)");
	print_head(cli, head);
	if ((code = print_entry_pretty(cli, p.entry, p.entry_len)) != CLI_EXIT_OK)
		goto out;
	fprintf(cli->out, "verified: entry %" PRIu64 " is in the tree of %" PRIu64
	        " entries%s\n", index, tree_size,
	        tree_size != head->cp.tree_size ? ", a prefix of the signed checkpoint"
	                                        : " that kmsd signed");
out:
	kms_inclusion_proof_free(&p);
	kms_consistency_proof_free(&c);
	return code;
}

/* Reads and verifies an older checkpoint of the same log. */
static int read_old_checkpoint(struct cli *cli, const char *path, const struct signed_head *head,
                               char **note, tlog_checkpoint *out)
{
	tlog_note_view view;
	size_t len;
	int code;
	if ((code = read_note_file(cli, "--old-checkpoint", path, note, &len)) != CLI_EXIT_OK)
		return code;
	if (tlog_note_verify(*note, len, &head->key, "old checkpoint", &view) != KMS_OK ||
	    tlog_checkpoint_parse(view.body, view.body_len, "old checkpoint", out) != KMS_OK)
		return audit_failed(cli, "%s", kms_error_message());
	if (out->origin_len != head->cp.origin_len ||
	    memcmp(out->origin, head->cp.origin, out->origin_len) != 0)
		return audit_failed(cli, "old checkpoint is for origin %.*s, kmsd's log is %.*s",
		                    (int)out->origin_len, out->origin, (int)head->cp.origin_len,
		                    head->cp.origin);
	return CLI_EXIT_OK;
}

/* The root of kmsd's tree at size (1..head's size), from an inclusion
 * proof of its last entry: what kmsd claims, to be checked by the caller
 * with a consistency proof against a root it trusts. */
static int claimed_root(struct cli *cli, kms_client *client, uint64_t size,
                        uint8_t root[static TLOG_HASH_SIZE])
{
	kms_inclusion_proof p;
	uint8_t leaf[TLOG_HASH_SIZE];
	int code = fetch_inclusion(cli, client, size - 1, size, &p);
	if (code != CLI_EXIT_OK)
		return code;
	if (tlog_leaf_hash(p.entry, p.entry_len, leaf) != KMS_OK ||
	    inclusion_root(leaf, size - 1, size, (hash_list)p.hashes, p.n_hashes, root) != KMS_OK)
		code = audit_failed(cli, "entry %" PRIu64 ": %s", size - 1, kms_error_message());
	kms_inclusion_proof_free(&p);
	return code;
}

/* prove --consistency OLD [--new-size S] [--old-checkpoint FILE] */
static int prove_consistency(struct cli *cli, kms_client *client, const struct signed_head *head,
                             uint64_t old_size, uint64_t new_size, const char *old_file)
{
	kms_consistency_proof c = { 0 };
	tlog_checkpoint old_cp;
	uint8_t old_root[TLOG_HASH_SIZE], new_root[TLOG_HASH_SIZE];
	char hex[HASH_HEX_SIZE];
	char *old_note = NULL;
	const char *old_from, *old_from_code;
	int code;

	if (new_size == 0)
		new_size = head->cp.tree_size;
	if (new_size > head->cp.tree_size)
		return cli_usage_error(cli, "--new-size %" PRIu64 " is past kmsd's signed "
		                       "checkpoint (size %" PRIu64 ")", new_size,
		                       head->cp.tree_size);
	if (old_size > new_size)
		return cli_usage_error(cli, "--consistency %" PRIu64 " is past the new size %"
		                       PRIu64, old_size, new_size);

	/* The new root: signed, or an older one shown to be a prefix of it. */
	if (new_size == head->cp.tree_size) {
		memcpy(new_root, head->cp.root, TLOG_HASH_SIZE);
	} else if ((code = claimed_root(cli, client, new_size, new_root)) != CLI_EXIT_OK ||
	           (code = check_prefix_of_head(cli, client, head, new_size, new_root, NULL)) !=
	                   CLI_EXIT_OK) {
		goto out;
	}

	/* The old root: from a checkpoint the user kept (the real check), else
	 * what kmsd's own proofs give, for the user to compare. */
	if (old_file) {
		if ((code = read_old_checkpoint(cli, old_file, head, &old_note, &old_cp)) !=
		    CLI_EXIT_OK)
			goto out;
		if (old_cp.tree_size != old_size) {
			code = cli_usage_error(cli, "--old-checkpoint is of size %" PRIu64
			                       ", not %" PRIu64, old_cp.tree_size, old_size);
			goto out;
		}
		memcpy(old_root, old_cp.root, TLOG_HASH_SIZE);
		old_from = "the old checkpoint, signed";
		old_from_code = "old_checkpoint";
	} else if (old_size == 0) {
		tlog_empty_root(old_root);
		old_from = "the empty tree";
		old_from_code = "empty_tree";
	} else if (old_size == new_size) {
		memcpy(old_root, new_root, TLOG_HASH_SIZE);
		old_from = "the new tree";
		old_from_code = "new_tree";
	} else {
		if ((code = claimed_root(cli, client, old_size, old_root)) != CLI_EXIT_OK)
			goto out;
		old_from = "kmsd's proofs: compare it with a checkpoint you kept, or pass "
		           "--old-checkpoint";
		old_from_code = "kmsd";
	}

	if ((code = fetch_consistency(cli, client, old_size, new_size, &c)) != CLI_EXIT_OK)
		goto out;
	if (tlog_consistency_verify(old_size, new_size, old_root, new_root, (hash_list)c.hashes,
	                            c.n_hashes) != KMS_OK) {
		code = audit_failed(cli, "the consistency proof from %" PRIu64 " to %" PRIu64
		                    " does not verify: the log of %" PRIu64 " entries is not a "
		                    "prefix of the log of %" PRIu64, old_size, new_size, old_size,
		                    new_size);
		goto out;
	}

	if (cli->json) {
		json_t *doc = json_pack("{s:I, s:I, s:o, s:s, s:o, s:o, s:o, s:b}",
		                        "old_size", (json_int_t)old_size,
		                        "new_size", (json_int_t)new_size,
		                        "old_root", json_hex(old_root),
		                        "old_root_from", old_from_code,
		                        "new_root", json_hex(new_root),
		                        "proof", json_hashes((hash_list)c.hashes, c.n_hashes),
		                        "checkpoint", json_head(head), "verified", 1);
		code = cli_json_print(cli, doc);
		goto out;
	}
	cli_field_fmt(cli->out, "old size", "%" PRIu64, old_size);
	cli_field(cli->out, "old root", hash_hex(old_root, hex));
	cli_field_fmt(cli->out, "", "(from %s)", old_from);
	cli_field_fmt(cli->out, "new size", "%" PRIu64, new_size);
	cli_field(cli->out, "new root", hash_hex(new_root, hex));
	print_hashes(cli->out, "consistency proof", (hash_list)c.hashes, c.n_hashes,
	             "(none: nothing to prove between these sizes)");
	print_head(cli, head);
	fprintf(cli->out, "verified: the log of %" PRIu64 " entries is a prefix of the log of %"
	        PRIu64 "\n", old_size, new_size);
	code = CLI_EXIT_OK;
out:
	free(old_note);
	kms_consistency_proof_free(&c);
	return code;
}

static int audit_prove(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		KEY_OPTIONS,
		{ "tree-size", required_argument, NULL, OPT_TREE_SIZE },
		{ "consistency", required_argument, NULL, OPT_CONSISTENCY },
		{ "new-size", required_argument, NULL, OPT_NEW_SIZE },
		{ "old-checkpoint", required_argument, NULL, OPT_OLD_CHECKPOINT },
		CLI_BASE_OPTIONS, CLI_CONN_OPTIONS, { 0 },
	};
	const char *old_file = NULL;
	struct verifier_key vk = { 0 };
	struct signed_head head;
	kms_client *client = NULL;
	uint64_t tree_size = 0, new_size = 0, old_size = 0, index = 0;
	bool consistency = false;
	int opt, code;

	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		if (key_option(opt, &vk))
			continue;
		switch (opt) {
		case OPT_TREE_SIZE:
			if (!parse_u64(optarg, TLOG_TREE_SIZE_MAX, &tree_size) || tree_size == 0)
				return cli_usage_error(cli, "--tree-size takes 1 or more");
			break;
		case OPT_NEW_SIZE:
			if (!parse_u64(optarg, TLOG_TREE_SIZE_MAX, &new_size) || new_size == 0)
				return cli_usage_error(cli, "--new-size takes 1 or more");
			break;
		case OPT_CONSISTENCY:
			if (!parse_u64(optarg, TLOG_TREE_SIZE_MAX, &old_size))
				return cli_usage_error(cli, "--consistency takes a tree size");
			consistency = true;
			break;
		case OPT_OLD_CHECKPOINT:
			old_file = optarg;
			break;
		default:
			return cli_usage_error(cli, "option not handled");
		}
	}
	if (opt != CLI_GETOPT_DONE)
		return cli_getopt_exit(opt);
	if (consistency) {
		if (tree_size)
			return cli_usage_error(cli, "--tree-size is for an inclusion proof; "
			                       "with --consistency, give --new-size");
		if (!cli_positionals(cli, argc, argv, 0, 0))
			return CLI_EXIT_USAGE;
	} else {
		if (new_size || old_file)
			return cli_usage_error(cli, "--new-size and --old-checkpoint go with "
			                       "--consistency");
		if (!cli_positionals(cli, argc, argv, 1, 1))
			return CLI_EXIT_USAGE;
		if (!parse_u64(argv[optind], TLOG_TREE_SIZE_MAX - 1, &index))
			return cli_usage_error(cli, "N is an entry number, 0 or more");
	}
	if ((code = resolve_key(cli, &vk)) != CLI_EXIT_OK)
		return code;
	if ((code = cli_connect(cli, &client)) != CLI_EXIT_OK)
		return code;
	code = fetch_head(cli, client, vk.text, given_key(&vk), true, &head);
	if (code == CLI_EXIT_OK)
		code = consistency
		               ? prove_consistency(cli, client, &head, old_size, new_size, old_file)
		               : prove_inclusion(cli, client, &head, index, tree_size);
	signed_head_free(&head);
	kms_client_close(client);
	return code;
}

/* ---- the table ---- */

#define KEY_HELP                                                               \
	"  --key KEY             the log's verifier key, NAME+ID+KEY, as printed by\n" \
	"                        'kms-admin audit key' (default: $" AUDIT_ENV_KEY ")\n" \
	"  --key-file FILE       read the verifier key from FILE\n"

#define VERIFY_DETAILS                                                         \
	"  DIR                   a copy of the log: kmsd publishes it in\n"   \
	"                        <data_dir>/audit/public/ and serves it at\n" \
	"                        http://HOST:PORT/audit/ (checkpoint, tile/...)\n" \
	KEY_HELP                                                               \
	"  --since FILE          an older checkpoint of this log (say, one kept\n" \
	"                        last week): check the log only grew since\n"  \
	"\n"                                                                   \
	"Checks the checkpoint's signature, every entry bundle and hash tile, the\n" \
	"root, and that each entry is a JSON object. Needs no kmsd and no HSM.\n" \
	"Exit 1 when the log does not verify (one line says what), 2 when DIR or\n" \
	"the key cannot be used.\n"

const struct cli_command admin_audit_commands[] = {
	{ .name = "key", .run = audit_key,
	  .help = "Print the audit log's verifier key, as kmsd has it" },
	{ .name = "verify", .run = audit_verify, .local = true,
	  .args = "DIR [--key KEY | --key-file FILE] [--since OLD_CHECKPOINT]",
	  .help = "Verify a copy of the audit log end to end, offline",
	  .details = VERIFY_DETAILS },
	{ .name = "tail", .run = audit_tail,
	  .args = "[-n N] [-f] [--key KEY | --key-file FILE] DIR | --daemon",
	  .help = "Print the last entries of the audit log as JSON lines",
	  .details =
		"  DIR                   read a copy of the log (see 'audit verify')\n"
		"  --daemon              ask kmsd instead, checking each entry's\n"
		"                        inclusion proof against its signed checkpoint\n"
		"  -n, --lines N         how many entries (default 10)\n"
		"  -f, --follow          then look at the checkpoint every 500 ms and\n"
		"                        print entries as they come, until SIGINT\n"
		KEY_HELP
		"                        With a key (and always with --daemon) the\n"
		"                        checkpoint and each entry printed are verified,\n"
		"                        and with -f that the log only grew.\n"
		"\n"
		"Each line is {\"index\":N,\"entry\":{...}}.\n" },
	{ .name = "show", .run = audit_show, .local = true,
	  .args = "N DIR [--raw] [--key KEY | --key-file FILE]",
	  .help = "Print entry N of a copy of the audit log",
	  .details =
		"  N                     the entry's number, from 0\n"
		"  DIR                   a copy of the log (see 'audit verify')\n"
		"  --raw                 the entry's bytes as logged\n"
		KEY_HELP
		"                        With a key, the checkpoint and the entry (by an\n"
		"                        inclusion proof from the tiles) are verified.\n" },
	{ .name = "prove", .run = audit_prove,
	  .args = "N [--tree-size S] | --consistency OLD_SIZE [--new-size S] "
	          "[--old-checkpoint FILE]",
	  .help = "Get an inclusion or consistency proof from kmsd and check it here",
	  .details =
		"  N                     prove entry N is in the log; prints the entry, its\n"
		"                        leaf hash, the proof and the root\n"
		"  --tree-size S         in the tree of S entries (default: kmsd's signed\n"
		"                        checkpoint; an older S is shown to be its prefix)\n"
		"  --consistency OLD     prove the log of OLD entries is a prefix of the\n"
		"                        current one: history was only appended to\n"
		"  --new-size S          ... of the log of S entries instead\n"
		"  --old-checkpoint FILE the checkpoint of OLD entries you kept: its root is\n"
		"                        checked (without it, the old root is kmsd's word,\n"
		"                        printed for you to compare)\n"
		KEY_HELP
		"                        Without a key, kmsd's checkpoint is checked with\n"
		"                        the key kmsd sends along.\n"
		"\n"
		"Exit 1 when a proof or the checkpoint does not verify.\n" },
	{ 0 },
};
