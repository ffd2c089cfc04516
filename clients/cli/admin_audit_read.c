/*
 * admin_audit_read.c: kms-admin audit tail and show: entries read from the
 * published files of the log (C2SP tlog-tiles: the checkpoint, the entry
 * bundles and the hash tiles), from a copy in a directory or, for tail,
 * over HTTP from kmsd's [audit] http listener (admin_audit_http.c).
 *
 * Without a key these only read a directory, and say on stderr that what
 * they print is not verified (a changed entry would print like any other);
 * over HTTP a key is required. With one, the checkpoint is verified and
 * each entry printed is checked against its signed root by an inclusion
 * proof made from the hash tiles (common/tlog/tlog_tiles.h); following,
 * each newer checkpoint is verified and shown to extend the one before by
 * a consistency proof from the tiles. The first that does not verify ends
 * the command with exit 1 and a line naming it.
 *
 * Nothing here asks kmsd over RPC: reading the published files writes no
 * entry to the log (docs/audit-log.md, "Reading the log does not flood
 * it").
 */
#include "clients/cli/admin_audit.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/tlog/tlog_tiles.h"

#define TAIL_DEFAULT 10
#define TAIL_MAX 1000000
#define POLLS_MAX 100000000

/* Where the files come from: a directory, or kmsd over HTTP. */
struct log_src {
	tlog_file_source read;
	void *ctx;
	const char *name; /* for messages */
};

static struct log_src dir_src(const char *dir)
{
	return (struct log_src){ .read = tlog_dir_source, .ctx = (void *)dir, .name = dir };
}

/* A directory's checkpoint: the note (owned) and its parsed body. */
struct dir_checkpoint {
	uint8_t *note;
	size_t note_len;
	tlog_checkpoint cp; /* points into note */
};

static void dir_checkpoint_free(struct dir_checkpoint *dc)
{
	free(dc->note);
	memset(dc, 0, sizeof *dc);
}

/* Exit code for a tlog failure reading a directory: 2 when a file could
 * not be read at all, 1 when the log is wrong (missing, malformed,
 * changed). */
static int dir_failure(struct cli *cli, kms_status st, const char *prefix)
{
	if (st == KMS_UNAVAILABLE) {
		fprintf(cli->err, "%s: %s%s\n", cli->prog, prefix, kms_error_message());
		return CLI_EXIT_UNREACHABLE;
	}
	if (st == KMS_INTERNAL) {
		fprintf(cli->err, "%s: %s%s\n", cli->prog, prefix, kms_error_message());
		return CLI_EXIT_USAGE;
	}
	return admin_audit_failed(cli, "%s%s", prefix, kms_error_message());
}

/* Reads src's checkpoint, verifying it when key is not NULL. */
static int read_dir_checkpoint(struct cli *cli, const struct log_src *src,
                               const tlog_verifier *key, struct dir_checkpoint *out)
{
	tlog_note_view view;
	kms_status st;
	memset(out, 0, sizeof *out);
	st = src->read(src->ctx, TLOG_CHECKPOINT_PATH, TLOG_NOTE_MAX, &out->note, &out->note_len);
	if (st != KMS_OK) {
		int code = dir_failure(cli, st, "");
		dir_checkpoint_free(out);
		return code;
	}
	const char *text = (const char *)out->note;
	if (key)
		st = tlog_note_verify(text, out->note_len, key, "checkpoint", &view);
	else
		st = tlog_note_body(text, out->note_len, "checkpoint", &view);
	if (st == KMS_OK)
		st = tlog_checkpoint_parse(view.body, view.body_len, "checkpoint", &out->cp);
	if (st != KMS_OK) {
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
static int read_entries(struct cli *cli, const struct log_src *src, uint64_t tree_size,
                        uint64_t from, uint64_t to, entry_fn fn, void *ctx)
{
	tlog_entry_span spans[TLOG_TILE_WIDTH];
	char path[TLOG_TILE_PATH_MAX];
	int code = CLI_EXIT_OK;
	if (from >= to)
		return CLI_EXIT_OK;
	for (uint64_t k = from / TLOG_TILE_WIDTH; k <= (to - 1) / TLOG_TILE_WIDTH; k++) {
		uint64_t first = k * TLOG_TILE_WIDTH;
		uint8_t *bytes = NULL;
		unsigned width;
		kms_status st = tlog_bundle_read_from(src->read, src->ctx, tree_size, k, path,
		                                      &bytes, spans, &width);
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

/* Checks an entry read from the bundles against the signed root, through
 * an inclusion proof made from the tiles. */
static int check_entry_in_tree(struct cli *cli, tlog_dir_tiles *tiles, const tlog_checkpoint *cp,
                               uint64_t index, const uint8_t *entry, size_t len)
{
	uint8_t proof[TLOG_PROOF_MAX_HASHES][TLOG_HASH_SIZE], leaf[TLOG_HASH_SIZE];
	size_t n = 0;
	tlog_dir_tiles_resize(tiles, cp->tree_size);
	kms_status st = tlog_leaf_hash(entry, len, leaf);
	if (st == KMS_OK)
		st = tlog_inclusion_proof(tlog_dir_tiles_reader, tiles, cp->tree_size, index, proof,
		                          &n);
	if (st == KMS_INTERNAL)
		return dir_failure(cli, st, "");
	if (st != KMS_OK)
		return admin_audit_failed(cli, "entry %" PRIu64 ": no proof from the tiles: %s",
		                          index, kms_error_message());
	if (tlog_inclusion_verify(leaf, index, cp->tree_size, (admin_audit_hashes)proof, n,
	                          cp->root) != KMS_OK)
		return admin_audit_failed(cli, "entry %" PRIu64 " is not in the signed tree of %"
		                          PRIu64 ": its bundle or the tiles were changed (run "
		                          "'kms-admin audit verify')",
		                          index, cp->tree_size);
	return CLI_EXIT_OK;
}

/* Said once, before any entry, when no verifier key was given. */
static void warn_unverified(struct cli *cli, const char *dir)
{
	fprintf(cli->err, "%s: warning: entries from %s are NOT verified (anyone who can "
	        "write there can change them): give --key, --key-file or $%s to check "
	        "them against the signed checkpoint\n", cli->path, dir, ADMIN_AUDIT_ENV_KEY);
}

/* ---- audit tail DIR ---- */

struct tail_dir {
	const tlog_checkpoint *cp;
	tlog_dir_tiles *tiles; /* NULL: no key, nothing verified */
};

static int tail_dir_entry(struct cli *cli, void *ctx, uint64_t index, const uint8_t *entry,
                          size_t len)
{
	struct tail_dir *td = ctx;
	int code;
	if (td->tiles &&
	    (code = check_entry_in_tree(cli, td->tiles, td->cp, index, entry, len)) != CLI_EXIT_OK)
		return code;
	return admin_audit_print_entry_line(cli, index, entry, len);
}

/* With a key, a newer checkpoint must extend the older one: a consistency
 * proof from the tiles, against both signed roots. */
static int check_dir_growth(struct cli *cli, tlog_dir_tiles *tiles, const tlog_checkpoint *old,
                            const tlog_checkpoint *cp)
{
	uint8_t proof[TLOG_PROOF_MAX_HASHES][TLOG_HASH_SIZE];
	size_t n = 0;
	tlog_dir_tiles_resize(tiles, cp->tree_size);
	kms_status st = tlog_consistency_proof(tlog_dir_tiles_reader, tiles, old->tree_size,
	                                       cp->tree_size, proof, &n);
	if (st != KMS_OK)
		return dir_failure(cli, st, "no consistency proof from the tiles: ");
	if (tlog_consistency_verify(old->tree_size, cp->tree_size, old->root, cp->root,
	                            (admin_audit_hashes)proof, n) != KMS_OK)
		return admin_audit_failed(cli, "the checkpoint of size %" PRIu64 " does not extend "
		                          "the one of size %" PRIu64 " shown before: history was "
		                          "rewritten", cp->tree_size, old->tree_size);
	return CLI_EXIT_OK;
}

/* What tail was asked for. */
struct tail_opts {
	uint64_t lines;
	bool follow;
	uint64_t until_size; /* 0: none; else stop once the log has this many */
	uint64_t polls;      /* 0: no bound; else stop after this many polls */
};

/* The newer checkpoint (next) has grown past head: checks it extends head,
 * prints the new entries, each verified. */
static int tail_grown(struct cli *cli, const struct log_src *src, struct tail_dir *td,
                      const tlog_checkpoint *head, const tlog_checkpoint *next)
{
	int code = CLI_EXIT_OK;
	if (td->tiles)
		code = check_dir_growth(cli, td->tiles, head, next);
	td->cp = next;
	if (code == CLI_EXIT_OK)
		code = read_entries(cli, src, next->tree_size, head->tree_size, next->tree_size,
		                    tail_dir_entry, td);
	if (code == CLI_EXIT_OK)
		code = admin_audit_flush_lines(cli);
	return code;
}

/* True when following is over: the size asked for was reached, or the polls
 * asked for were made. */
static bool tail_done(const struct tail_opts *o, uint64_t size, uint64_t polls)
{
	return (o->until_size && size >= o->until_size) || (o->polls && polls >= o->polls);
}

/* -f: polls the checkpoint until a stop signal (or a bound of o), printing
 * what each newer one adds. head is the checkpoint shown so far. */
static int tail_follow(struct cli *cli, const struct log_src *src, const tlog_verifier *key,
                       const struct tail_opts *o, struct tail_dir *td,
                       struct dir_checkpoint *head)
{
	struct admin_audit_stop_signals saved;
	struct dir_checkpoint next;
	uint64_t polls = 0;
	int code = CLI_EXIT_OK;

	admin_audit_stop_signals_catch(&saved);
	while (!tail_done(o, head->cp.tree_size, polls) && admin_audit_follow_wait()) {
		polls++;
		if ((code = read_dir_checkpoint(cli, src, key, &next)) != CLI_EXIT_OK)
			break;
		code = admin_audit_check_not_rewound(cli, "the checkpoint", &head->cp, &next.cp,
		                                     key != NULL);
		if (code == CLI_EXIT_OK && next.cp.tree_size > head->cp.tree_size)
			code = tail_grown(cli, src, td, &head->cp, &next.cp);
		if (code == CLI_EXIT_OK && next.cp.tree_size > head->cp.tree_size) {
			/* The newer checkpoint is the one to compare with from now on. */
			dir_checkpoint_free(head);
			*head = next;
		} else {
			dir_checkpoint_free(&next);
		}
		td->cp = &head->cp;
		if (code != CLI_EXIT_OK)
			break;
	}
	admin_audit_stop_signals_restore(&saved);
	return code;
}

static int tail_log(struct cli *cli, const struct log_src *src, const tlog_verifier *key,
                    const struct tail_opts *o)
{
	struct dir_checkpoint head;
	struct tail_dir td = { 0 };
	int code;

	if (!key)
		warn_unverified(cli, src->name);
	if (key && !(td.tiles = malloc(sizeof *td.tiles)))
		return cli_out_of_memory(cli);
	if ((code = read_dir_checkpoint(cli, src, key, &head)) != CLI_EXIT_OK) {
		free(td.tiles);
		return code;
	}
	uint64_t size = head.cp.tree_size;
	if (td.tiles)
		tlog_dir_tiles_init_from(td.tiles, src->read, src->ctx, size);
	td.cp = &head.cp;
	code = read_entries(cli, src, size, size > o->lines ? size - o->lines : 0, size,
	                    tail_dir_entry, &td);
	if (code == CLI_EXIT_OK && o->follow && (code = admin_audit_flush_lines(cli)) == CLI_EXIT_OK)
		code = tail_follow(cli, src, key, o, &td, &head);
	dir_checkpoint_free(&head);
	free(td.tiles);
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

/* Where tail reads: exactly one of DIR, --log DIR and --http URL. */
struct tail_where {
	const char *dir;
	const char *url;
	struct admin_audit_http http;
};

static int tail_option(struct cli *cli, int opt, struct tail_opts *o, struct tail_where *w)
{
	switch (opt) {
	case AUDIT_OPT_LINES:
		if (!admin_audit_parse_u64(optarg, TAIL_MAX, &o->lines))
			return cli_usage_error(cli, "-n takes 0..%d", TAIL_MAX);
		return CLI_PROCEED;
	case AUDIT_OPT_FOLLOW:
		o->follow = true;
		return CLI_PROCEED;
	case AUDIT_OPT_UNTIL_SIZE:
		if (!admin_audit_parse_u64(optarg, TLOG_TREE_SIZE_MAX, &o->until_size) ||
		    o->until_size == 0)
			return cli_usage_error(cli, "--until-size takes a number of entries, 1 or more");
		return CLI_PROCEED;
	case AUDIT_OPT_POLLS:
		if (!admin_audit_parse_u64(optarg, POLLS_MAX, &o->polls) || o->polls == 0)
			return cli_usage_error(cli, "--polls takes 1..%d", POLLS_MAX);
		return CLI_PROCEED;
	case AUDIT_OPT_LOG:
		w->dir = optarg;
		return CLI_PROCEED;
	case AUDIT_OPT_HTTP:
		w->url = optarg;
		return CLI_PROCEED;
	default:
		return cli_usage_error(cli, "option not handled");
	}
}

/* The source tail reads from, checked: a directory holding a checkpoint,
 * or a URL that parses (and then a key, required). */
static int tail_source(struct cli *cli, struct tail_where *w, bool keyed, struct log_src *out)
{
	if (!!w->dir + !!w->url != 1)
		return cli_usage_error(cli, "give the log to read: DIR, --log DIR or --http URL "
		                       "(one of them)");
	if (w->dir) {
		*out = dir_src(w->dir);
		return admin_audit_check_dir(cli, w->dir);
	}
	if (!admin_audit_http_parse(w->url, &w->http))
		return cli_usage_error(cli, "--http takes http://HOST:PORT, kmsd's [audit] http "
		                       "address (or the URL of a copy of the log)");
	if (!keyed)
		return cli_usage_error(cli, "--http needs the log's verifier key: give --key, "
		                       "--key-file or $%s ('kms-admin audit key' prints it)",
		                       ADMIN_AUDIT_ENV_KEY);
	*out = (struct log_src){ .read = admin_audit_http_source, .ctx = &w->http,
		                 .name = w->http.shown };
	return CLI_EXIT_OK;
}

static int tail_options(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		AUDIT_KEY_OPTIONS,
		{ "lines", required_argument, NULL, AUDIT_OPT_LINES },
		{ "follow", no_argument, NULL, AUDIT_OPT_FOLLOW },
		{ "log", required_argument, NULL, AUDIT_OPT_LOG },
		{ "http", required_argument, NULL, AUDIT_OPT_HTTP },
		{ "until-size", required_argument, NULL, AUDIT_OPT_UNTIL_SIZE },
		{ "polls", required_argument, NULL, AUDIT_OPT_POLLS },
		CLI_BASE_OPTIONS, { 0 },
	};
	struct admin_audit_key vk = { 0 };
	struct tail_opts o = { .lines = TAIL_DEFAULT };
	struct tail_where w = { 0 };
	struct log_src src;
	int opt, code;

	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		if (admin_audit_key_option(opt, &vk))
			continue;
		if ((code = tail_option(cli, opt, &o, &w)) != CLI_PROCEED)
			return code;
	}
	if ((code = cli_getopt_end(cli, opt, argc, argv, 0, 1)) != CLI_PROCEED)
		return code;
	if (optind < argc) {
		if (w.dir || w.url)
			return cli_usage_error(cli, "give the log once: DIR, --log DIR or --http URL");
		w.dir = argv[optind];
	}
	if ((o.until_size || o.polls) && !o.follow)
		return cli_usage_error(cli, "--until-size and --polls bound -f: give -f too");
	if ((code = admin_audit_resolve_key(cli, &vk)) != CLI_EXIT_OK)
		return code;
	if ((code = tail_source(cli, &w, vk.given, &src)) != CLI_EXIT_OK)
		return code;
	return tail_log(cli, &src, admin_audit_given_key(&vk), &o);
}

int admin_audit_tail(struct cli *cli, int argc, char **argv)
{
	char **copies = NULL;
	char **spelled = spell_short_options(argc, argv, &copies);
	if (!spelled)
		return cli_out_of_memory(cli);
	int code = tail_options(cli, argc, spelled);
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

int admin_audit_show(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		AUDIT_KEY_OPTIONS,
		{ "raw", no_argument, NULL, AUDIT_OPT_RAW },
		CLI_BASE_OPTIONS, { 0 },
	};
	struct admin_audit_key vk = { 0 };
	struct dir_checkpoint head;
	tlog_dir_tiles *tiles = NULL;
	struct shown_entry shown = { 0 };
	uint64_t index;
	bool raw = false;
	int opt, code;

	while ((opt = cli_getopt(cli, argc, argv, opts)) >= 0) {
		if (admin_audit_key_option(opt, &vk))
			continue;
		if (opt != AUDIT_OPT_RAW)
			return cli_usage_error(cli, "option not handled");
		raw = true;
	}
	if ((code = cli_getopt_end(cli, opt, argc, argv, 2, 2)) != CLI_PROCEED)
		return code;
	if (!admin_audit_parse_u64(argv[optind], TLOG_TREE_SIZE_MAX - 1, &index))
		return cli_usage_error(cli, "N is an entry number, 0 or more");
	const char *dir = argv[optind + 1];
	if (raw && cli->json)
		return cli_usage_error(cli, "give --raw or --json, not both");
	if ((code = admin_audit_resolve_key(cli, &vk)) != CLI_EXIT_OK)
		return code;
	if ((code = admin_audit_check_dir(cli, dir)) != CLI_EXIT_OK)
		return code;
	if (!vk.given)
		warn_unverified(cli, dir);
	struct log_src src = dir_src(dir);
	if ((code = read_dir_checkpoint(cli, &src, admin_audit_given_key(&vk), &head)) !=
	    CLI_EXIT_OK)
		return code;
	if (index >= head.cp.tree_size) {
		fprintf(cli->err, "%s: no entry %" PRIu64 ": the checkpoint has %" PRIu64
		        " entries\n", cli->path, index, head.cp.tree_size);
		code = CLI_EXIT_REFUSED;
		goto out;
	}
	code = read_entries(cli, &src, head.cp.tree_size, index, index + 1, keep_entry, &shown);
	if (code != CLI_EXIT_OK)
		goto out;
	if (vk.given) {
		if (!(tiles = malloc(sizeof *tiles))) {
			code = cli_out_of_memory(cli);
			goto out;
		}
		tlog_dir_tiles_init(tiles, dir, head.cp.tree_size);
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
		                                     "entry", admin_audit_entry_value(shown.bytes,
		                                                                      shown.len)));
	else
		code = admin_audit_print_entry(cli, shown.bytes, shown.len);
out:
	free(shown.bytes);
	free(tiles);
	dir_checkpoint_free(&head);
	return code;
}
