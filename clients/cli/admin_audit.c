/*
 * admin_audit.c: kms-admin audit ...: the command table, and what its
 * commands share (admin_audit.h): the verifier key, the output of hashes
 * and entries, and following a growing log.
 *
 * Nothing from a log directory or from kmsd is believed until it verifies:
 * a checkpoint against the verifier key, an entry against the checkpoint's
 * root. tail and show without a key only read; they never print
 * "verified".
 */
#include "clients/cli/admin_audit.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/error.h"
#include "common/tlog/tlog_tiles.h"

#define FOLLOW_INTERVAL_MS 500
#define FOLLOW_SLICE_MS 50  /* how soon a signal is noticed while waiting */
#define U64_DIGITS_MAX 20

/* ---- small helpers ---- */

const char *admin_audit_hex(const uint8_t hash[static TLOG_HASH_SIZE],
                            char out[static ADMIN_AUDIT_HEX_SIZE])
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < TLOG_HASH_SIZE; i++) {
		out[2 * i] = digits[hash[i] >> 4];
		out[2 * i + 1] = digits[hash[i] & 0xf];
	}
	out[2 * TLOG_HASH_SIZE] = '\0';
	return out;
}

bool admin_audit_parse_u64(const char *text, uint64_t max, uint64_t *out)
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

int admin_audit_failed(struct cli *cli, const char *fmt, ...)
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

json_t *admin_audit_json_hex(const uint8_t hash[static TLOG_HASH_SIZE])
{
	char hex[ADMIN_AUDIT_HEX_SIZE];
	return json_string(admin_audit_hex(hash, hex));
}

json_t *admin_audit_json_hashes(admin_audit_hashes hashes, size_t n)
{
	json_t *list = json_array();
	for (size_t i = 0; list && i < n; i++) {
		if (json_array_append_new(list, admin_audit_json_hex(hashes[i])) != 0) {
			json_decref(list);
			return NULL;
		}
	}
	return list;
}

void admin_audit_print_hashes(FILE *to, const char *label, admin_audit_hashes hashes, size_t n,
                              const char *when_empty)
{
	char hex[ADMIN_AUDIT_HEX_SIZE];
	if (n == 0)
		cli_field(to, label, when_empty);
	for (size_t i = 0; i < n; i++)
		cli_field(to, i == 0 ? label : "", admin_audit_hex(hashes[i], hex));
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

int admin_audit_print_entry(struct cli *cli, const uint8_t *entry, size_t len)
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

json_t *admin_audit_entry_value(const uint8_t *entry, size_t len)
{
	json_t *doc = entry_json(entry, len);
	if (doc)
		return doc;
	char *text = strndup((const char *)entry, len);
	json_t *s = text ? cli_json_str(text) : NULL;
	free(text);
	return s;
}

int admin_audit_print_entry_line(struct cli *cli, uint64_t index, const uint8_t *entry, size_t len)
{
	json_t *value = admin_audit_entry_value(entry, len);
	json_t *line = value ? json_pack("{s:I, s:o}", "index", (json_int_t)index, "entry", value)
	                     : NULL;
	if (!line)
		return cli_out_of_memory(cli);
	/* Dumped to the stream, not json_dumps: main() gives jansson its own
	 * allocator. An entry's DEL bytes are escaped too (cli_json_dump). */
	int rc = cli_json_dump(line, cli->out, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(line);
	if (rc != 0 || fputc('\n', cli->out) == EOF) {
		fprintf(cli->err, "%s: cannot write the output\n", cli->prog);
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
}

int admin_audit_flush_lines(struct cli *cli)
{
	if (fflush(cli->out) != 0) {
		fprintf(cli->err, "%s: cannot write the output: %s\n", cli->prog, strerror(errno));
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
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

bool admin_audit_key_option(int opt, struct admin_audit_key *vk)
{
	if (opt == AUDIT_OPT_KEY)
		vk->arg = optarg;
	else if (opt == AUDIT_OPT_KEY_FILE)
		vk->file = optarg;
	else
		return false;
	return true;
}

int admin_audit_resolve_key(struct cli *cli, struct admin_audit_key *vk)
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
		const char *env = getenv(ADMIN_AUDIT_ENV_KEY);
		if (!env || !env[0])
			return CLI_EXIT_OK;
		from = "$" ADMIN_AUDIT_ENV_KEY;
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

const tlog_verifier *admin_audit_given_key(const struct admin_audit_key *vk)
{
	return vk->given ? &vk->parsed : NULL;
}

/* ---- files ---- */

int admin_audit_read_note_file(struct cli *cli, const char *flag, const char *path, char **note,
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

int admin_audit_check_dir(struct cli *cli, const char *dir)
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

/* ---- following: -f ---- */

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

void admin_audit_stop_signals_catch(struct admin_audit_stop_signals *saved)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	stop_requested = 0;
	sigaction(SIGINT, &sa, &saved->old_int);
	sigaction(SIGTERM, &sa, &saved->old_term);
}

void admin_audit_stop_signals_restore(const struct admin_audit_stop_signals *saved)
{
	sigaction(SIGINT, &saved->old_int, NULL);
	sigaction(SIGTERM, &saved->old_term, NULL);
}

bool admin_audit_follow_wait(void)
{
	for (unsigned waited = 0; waited < FOLLOW_INTERVAL_MS && !stop_requested;
	     waited += FOLLOW_SLICE_MS) {
		struct timespec slice = { 0, FOLLOW_SLICE_MS * 1000000L };
		nanosleep(&slice, NULL);
	}
	return !stop_requested;
}

int admin_audit_check_not_rewound(struct cli *cli, const char *what, const tlog_checkpoint *then,
                                  const tlog_checkpoint *now, bool compare_roots)
{
	if (now->tree_size < then->tree_size)
		return admin_audit_failed(cli, "%s went back from size %" PRIu64 " to %" PRIu64,
		                          what, then->tree_size, now->tree_size);
	if (compare_roots && now->tree_size == then->tree_size &&
	    !tlog_hash_equal(now->root, then->root))
		return admin_audit_failed(cli, "%s of size %" PRIu64 " changed its root", what,
		                          then->tree_size);
	return CLI_EXIT_OK;
}

/* ---- the table ---- */

#define KEY_HELP                                                               \
	"  --key KEY             the log's verifier key, NAME+ID+KEY, as printed by\n" \
	"                        'kms-admin audit key' (default: $" ADMIN_AUDIT_ENV_KEY ")\n" \
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
	"root, and that each entry is a JSON object; then every other partial\n" \
	"tile and bundle in DIR (older ones, or newer ones a copy caught): what\n" \
	"the checkpoint covers of them must agree. Temporary files are skipped.\n" \
	"Needs no kmsd and no HSM.\n" \
	"Exit 1 when the log does not verify (one line says what), 2 when DIR or\n" \
	"the key cannot be used.\n"

const struct cli_command admin_audit_commands[] = {
	{ .name = "key", .run = admin_audit_key_cmd,
	  .help = "Print the audit log's verifier key, as kmsd has it" },
	{ .name = "verify", .run = admin_audit_verify, .local = true,
	  .args = "DIR [--key KEY | --key-file FILE] [--since OLD_CHECKPOINT]",
	  .help = "Verify a copy of the audit log end to end, offline",
	  .details = VERIFY_DETAILS },
	{ .name = "export", .run = admin_audit_export, .local = true,
	  .args = "SRC DST [--key KEY | --key-file FILE]",
	  .help = "Copy a live audit log consistently up to its checkpoint, and verify the copy",
	  .details =
		"  SRC                   the log directory, e.g. <data_dir>/audit/public,\n"
		"                        even while kmsd writes to it\n"
		"  DST                   a new directory, or an older export to bring up\n"
		"                        to date (never to a smaller checkpoint)\n"
		KEY_HELP
		"\n"
		"Reads and verifies SRC's checkpoint first, copies exactly the tiles and\n"
		"bundles of its size, writes the checkpoint last, then verifies DST.\n"
		"Exit 1 when SRC or the copy does not verify, 2 for a bad DIR or key.\n" },
	{ .name = "query", .run = admin_audit_query,
	  .args = "--principal P [--access-key K] --since T1 --until T2 [--log DIR] "
	          "[--key KEY | --key-file FILE]",
	  .help = "Which keys, data principals and purposes a credential touched in a window "
	          "(the breach query), from the verified log",
	  .details =
		"  --principal P         the principal whose use to find\n"
		"  --access-key K        only what its access key K signed\n"
		"  --since T1, --until T2\n"
		"                        the window, RFC 3339 UTC (2026-11-28T00:00:00Z):\n"
		"                        entries whose time is T1 or later and before T2\n"
		"  --log DIR             a copy of the log (see 'audit export'); default:\n"
		"                        kmsd's own <data_dir>/audit/public on this host\n"
		"                        (kmsd names it to an admin or an auditor)\n"
		KEY_HELP
		"                        Without one, the key kmsd sends (said on stderr).\n"
		"\n"
		"The whole log is verified against its signed checkpoint (every bundle,\n"
		"tile and the root) before any entry is counted; the output names the\n"
		"checkpoint's size. Keys are the entries' key_id and batch_keys; data\n"
		"principals the context's and batch items' 'dp', 'data_principal' and\n"
		"consent 'dp'; purposes the contexts' and consent 'purpose'. Each with\n"
		"its entries, allowed and denied (authz or consent not 'allow').\n"
		"Exit 1 when the log does not verify.\n" },
	{ .name = "repair", .run = admin_audit_repair, .local = true,
	  .args = "DIR [--key KEY | --key-file FILE]",
	  .help = "Rebuild kmsd's log.bin from the verified entry bundles (kmsd stopped)",
	  .details =
		"  DIR                   kmsd's audit directory, <data_dir>/audit, which\n"
		"                        holds log.bin and public/\n"
		KEY_HELP
		"                        Give the key you pinned: public/ is verified\n"
		"                        with it before anything is written.\n"
		"\n"
		"For kmsd refusing to start because a record of log.bin is damaged.\n"
		"Every record the signed checkpoint covers is rewritten from the entry\n"
		"bundles; records past it are kept. The old file stays beside it as\n"
		"log.bin.damaged-<time>. kmsd must be stopped (the same lock).\n"
		"Exit 1 when public/ does not verify or a record past the checkpoint is\n"
		"damaged (it says how to drop it), 2 when DIR, the lock or the key\n"
		"cannot be used.\n" },
	{ .name = "tail", .run = admin_audit_tail, .local = true,
	  .args = "[-n N] [-f [--until-size S] [--polls P]] [--key KEY | --key-file FILE] "
	          "(DIR | --log DIR | --http URL)",
	  .help = "Print the last entries of the audit log as JSON lines",
	  .details =
		"  DIR, --log DIR        read a copy of the log in DIR (kmsd's own is\n"
		"                        <data_dir>/audit/public; see 'audit verify')\n"
		"  --http URL            read the log kmsd publishes over HTTP: URL is\n"
		"                        its [audit] http address, http://HOST:PORT (the\n"
		"                        files under /audit/), or the URL of a copy of\n"
		"                        the log; needs a key\n"
		"  -n, --lines N         how many entries (default 10)\n"
		"  -f, --follow          then read the checkpoint every 500 ms and print\n"
		"                        entries as they come, until SIGINT\n"
		"  --until-size S        with -f: stop once the log has S entries\n"
		"  --polls P             with -f: stop after reading the checkpoint P times\n"
		KEY_HELP
		"                        With a key the checkpoint and each entry printed\n"
		"                        are verified (an inclusion proof from the hash\n"
		"                        tiles), and with -f that each newer checkpoint\n"
		"                        extends the one before (a consistency proof).\n"
		"\n"
		"Only the published files are read (the checkpoint, entry bundles and\n"
		"hash tiles): following writes no entry to the log.\n"
		"Each line is {\"index\":N,\"entry\":{...}}. Exit 1 when something does\n"
		"not verify, 3 when the server does not answer.\n" },
	{ .name = "show", .run = admin_audit_show, .local = true,
	  .args = "N DIR [--raw] [--key KEY | --key-file FILE]",
	  .help = "Print entry N of a copy of the audit log",
	  .details =
		"  N                     the entry's number, from 0\n"
		"  DIR                   a copy of the log (see 'audit verify')\n"
		"  --raw                 the entry's bytes as logged\n"
		KEY_HELP
		"                        With a key, the checkpoint and the entry (by an\n"
		"                        inclusion proof from the tiles) are verified.\n" },
	{ .name = "prove", .run = admin_audit_prove,
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
