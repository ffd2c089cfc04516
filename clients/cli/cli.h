/*
 * cli.h: what kms-admin and kms share: a {name, fn, help} table that drives
 * dispatch and usage (wireguard-tools style), the connection flags, exit
 * codes, strict parsers (base64, k=v pairs, numbers), input/output and the
 * two output forms (aligned text, JSON via jansson).
 *
 * Nothing here prints a secret: plaintexts go only to the chosen output,
 * errors name ids and files, never bytes.
 */
#ifndef KMS_CLI_H
#define KMS_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include <kms/client.h>

#include "common/base64.h"

/* Exit codes, the same for every command of both tools. */
enum cli_exit {
	CLI_EXIT_OK = 0,
	CLI_EXIT_REFUSED = 1,     /* kmsd (or the HSM) said no */
	CLI_EXIT_USAGE = 2,       /* bad command line or input */
	CLI_EXIT_UNREACHABLE = 3, /* cannot reach kmsd, or no valid answer */
	/* kms verify, kms verify-mac: kmsd answered, and the signature or MAC
	 * does not verify. Not an error, but not a yes either. */
	CLI_EXIT_INVALID = 4,
};

/* Pairs one command line may give (--context, --tag): more than kmsd takes,
 * so past its limit the user reads kmsd's own message. */
#define CLI_MAX_PAIRS 256
_Static_assert(CLI_MAX_PAIRS > KMS_CONTEXT_MAX_PAIRS && CLI_MAX_PAIRS > KMS_TAGS_MAX,
               "the CLIs must carry every pair kmsd could take");
#define CLI_TIME_MAX 32

/* A limit from <kms/limits.h> spelled in a help text. */
#define CLI_STR_(x) #x
#define CLI_STR(x) CLI_STR_(x)

/* Defaults, also read from the environment (documented in --help). */
#define CLI_ENV_ENDPOINT "KMS_ENDPOINT"       /* comma-separated URLs */
#define CLI_ENV_TIMEOUT "KMS_TIMEOUT_MS"
#define CLI_ENV_TLS_CA "KMS_TLS_CA"
#define CLI_ENV_TLS_CERT "KMS_TLS_CERT"
#define CLI_ENV_TLS_KEY "KMS_TLS_KEY"
#define CLI_ENV_TLS_SERVER_NAME "KMS_TLS_SERVER_NAME"
#define CLI_ENV_ACCESS_KEY_ID "KMS_ACCESS_KEY_ID"
#define CLI_ENV_SECRET_FILE "KMS_SECRET_FILE"
#define CLI_ENV_CREDENTIALS KMS_CREDENTIALS_ENV /* "KMS_CREDENTIALS" */
#define CLI_ENV_SERVER_UID "KMS_SERVER_UID"

struct cli;

/* One command. A node has sub (a table ending with a NULL name) and no run;
 * a leaf has run and no sub. run gets argv[0] = its own name, and getopt
 * already reset (optind = 0). It returns an exit code. */
struct cli_command {
	const char *name;
	int (*run)(struct cli *cli, int argc, char **argv);
	const struct cli_command *sub;
	const char *args;    /* synopsis after the command path, or NULL */
	const char *help;    /* one line */
	const char *details; /* what the options mean, or NULL */
	bool local;          /* does not talk to kmsd: no connection flags */
};

/* Connection flags, shared by every command that talks to kmsd. */
struct cli_conn {
	const char *endpoints[KMS_CLIENT_MAX_ENDPOINTS];
	size_t n_endpoints;
	char *env_endpoints; /* strdup of $KMS_ENDPOINT, split in place */
	const char *tls_ca;
	const char *tls_cert;
	const char *tls_key;
	const char *tls_server_name;
	int timeout_ms;
	bool insecure_plain_tcp;
	const char *access_key_id;
	const char *secret_file;
	const char *credentials; /* --credentials FILE */
	uint32_t server_uid;   /* --server-uid, when has_server_uid */
	bool has_server_uid;
};

struct cli {
	const char *prog;                /* "kms-admin" */
	const struct cli_command *root;  /* the top table */
	const char *about;               /* one line under the top usage */
	char path[128];                  /* "kms-admin key create" */
	const struct cli_command *cmd;   /* the command being run */
	struct cli_conn conn;
	bool json;
	FILE *out; /* stdout; tests swap in memory streams */
	FILE *err; /* stderr; under --json, a buffer that becomes one JSON object */
	const char *err_status; /* the status name of the failure cli_report saw */
};

/* Runs the tool: parses global flags, walks the table, runs the command.
 * out/err NULL mean stdout/stderr. Returns the exit code.
 *
 * With --json anywhere before "--", what the command says on stderr is
 * gathered and written when it ends as one JSON object on one line:
 *   {"error": {"status": S, "message": M, "exit_code": N}}   exit N > 0
 *   {"warning": {"message": M}}                             exit 0
 * S is kmsd's status name when kmsd (or the library) said why
 * ("NOT_FOUND"), else "REFUSED" (1), "USAGE" (2), "UNREACHABLE" (3) or
 * "INVALID" (4: a signature or MAC that does not verify);
 * M is the text the command would have printed, without its last newline.
 * --version prints "PROG VERSION" and exits 0. */
int cli_main(const char *prog, const char *about, const struct cli_command *root,
             int argc, char **argv, FILE *out, FILE *err);

/* ---- options ---- */

enum {
	CLI_OPT_ENDPOINT = 0x100,
	CLI_OPT_CA,
	CLI_OPT_CERT,
	CLI_OPT_CERT_KEY,
	CLI_OPT_SERVER_NAME,
	CLI_OPT_TIMEOUT,
	CLI_OPT_INSECURE_TCP,
	CLI_OPT_ACCESS_KEY_ID,
	CLI_OPT_SECRET_FILE,
	CLI_OPT_CREDENTIALS,
	CLI_OPT_SERVER_UID,
	CLI_OPT_JSON,
	CLI_OPT_VERSION,         /* the top level only */
	CLI_OPT_COMMAND = 0x200, /* commands number their own options from here */
};

/* --help and --json: every command takes them. */
#define CLI_BASE_OPTIONS                                                       \
	{ "help", no_argument, NULL, 'h' },                                    \
	{ "json", no_argument, NULL, CLI_OPT_JSON }

/* The connection flags, for commands that talk to kmsd. */
#define CLI_CONN_OPTIONS                                                       \
	{ "endpoint", required_argument, NULL, CLI_OPT_ENDPOINT },             \
	{ "ca", required_argument, NULL, CLI_OPT_CA },                         \
	{ "tls-ca", required_argument, NULL, CLI_OPT_CA },                     \
	{ "cert", required_argument, NULL, CLI_OPT_CERT },                     \
	{ "tls-cert", required_argument, NULL, CLI_OPT_CERT },                 \
	{ "cert-key", required_argument, NULL, CLI_OPT_CERT_KEY },             \
	{ "tls-key", required_argument, NULL, CLI_OPT_CERT_KEY },              \
	{ "server-name", required_argument, NULL, CLI_OPT_SERVER_NAME },       \
	{ "timeout", required_argument, NULL, CLI_OPT_TIMEOUT },               \
	{ "insecure-plain-tcp", no_argument, NULL, CLI_OPT_INSECURE_TCP },     \
	{ "access-key-id", required_argument, NULL, CLI_OPT_ACCESS_KEY_ID },   \
	{ "secret-file", required_argument, NULL, CLI_OPT_SECRET_FILE },       \
	{ "credentials", required_argument, NULL, CLI_OPT_CREDENTIALS },       \
	{ "server-uid", required_argument, NULL, CLI_OPT_SERVER_UID }

/* The connection flags' help text (what --help prints under
 * "Connection"). */
extern const char cli_conn_help[];

/* Handles one shared option (opt in CLI_OPT_ENDPOINT..CLI_OPT_COMMAND - 1,
 * arg its value): for a tool with a getopt loop of its own (kms-bench).
 * 0, or -1 with a usage error printed. */
int cli_common_option(struct cli *cli, int opt, const char *arg);

#define CLI_GETOPT_DONE (-1) /* no more options: positionals from optind */
#define CLI_GETOPT_HELP (-2) /* --help was printed: exit 0 */
#define CLI_GETOPT_BAD (-3)  /* a usage error was printed: exit 2 */

/*
 * getopt_long over a command's options (which must include CLI_BASE_OPTIONS
 * and, for kmsd commands, CLI_CONN_OPTIONS). Handles the shared options
 * itself and returns the command's own ones; permutes, so options may
 * follow positionals. Returns one of CLI_GETOPT_* when it is done.
 */
int cli_getopt(struct cli *cli, int argc, char **argv, const struct option *opts);

/* The exit code for a CLI_GETOPT_HELP or CLI_GETOPT_BAD result. */
int cli_getopt_exit(int result);

/* For commands with no options of their own: parses the shared ones and
 * checks min..max positionals (then at argv[optind]). Returns CLI_PROCEED
 * to go on, or the exit code to return (--help, usage error). */
#define CLI_PROCEED (-1)
int cli_parse_args(struct cli *cli, int argc, char **argv, int min, int max);

/* Checks the number of positionals left (argc - optind is in min..max);
 * prints the usage error itself. */
bool cli_positionals(struct cli *cli, int argc, char **argv, int min, int max);

/* Ends a cli_getopt loop whose last result was opt (one of CLI_GETOPT_*):
 * then checks min..max positionals. Returns CLI_PROCEED to go on, or the
 * exit code to return (--help, usage error). */
int cli_getopt_end(struct cli *cli, int opt, int argc, char **argv, int min, int max);

/* Prints a usage error "PATH: what" and returns CLI_EXIT_USAGE. */
int cli_usage_error(struct cli *cli, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Prints the running command's usage (synopsis, help, details). */
void cli_usage(struct cli *cli, FILE *to);

/* ---- talking to kmsd ---- */

/* Opens a client from the connection flags (and their environment
 * defaults). Returns an exit code; *out is NULL unless CLI_EXIT_OK. */
int cli_connect(struct cli *cli, kms_client **out);

/* cli_parse_args, then cli_connect: for commands with no options of their
 * own that talk to kmsd. Returns CLI_PROCEED with *client open (close it),
 * or the exit code to return with *client NULL. */
int cli_parse_and_connect(struct cli *cli, int argc, char **argv, int min, int max,
                          kms_client **client);

/* Reports a failed call and returns its exit code:
 * "PROG: STATUS: message" and 1 when kmsd said no, "PROG: message" and 3
 * for transport and protocol failures, 2 for arguments or input refused
 * locally (KMS_INVALID_ARGUMENT, KMS_INVALID_CIPHERTEXT: a message that
 * does not authenticate). */
int cli_report(struct cli *cli, const kms_error *err);

/* The same, with hint (NULL: none) after the message on its line: what
 * to do about it. */
int cli_report_hint(struct cli *cli, const kms_error *err, const char *hint);

/* "PROG: out of memory" (or "out of secure memory"); returns
 * CLI_EXIT_UNREACHABLE. */
int cli_out_of_memory(struct cli *cli);
int cli_out_of_secure_memory(struct cli *cli);

/* ---- parsing ---- */

/* Pairs from repeated k=v arguments. Keys are copies (freed by
 * cli_pairs_free); values point into the arguments. */
struct cli_pairs {
	kms_context_pair pairs[CLI_MAX_PAIRS];
	char *keys[CLI_MAX_PAIRS]; /* the copies pairs[i].key points at */
	size_t n;
};

/* Adds "k=v" (value may be empty; the first '=' splits). Returns NULL, or
 * why not: no '=', an empty key, a key given twice, too many pairs. */
const char *cli_pairs_add(struct cli_pairs *pairs, const char *arg);
void cli_pairs_free(struct cli_pairs *pairs);

/* Decimal in min..max, nothing else (no sign, no spaces, no trailing text). */
bool cli_parse_u32(const char *text, uint32_t min, uint32_t max, uint32_t *out);

/*
 * Base64 input (common/base64.h encodes, and decodes strictly): whitespace
 * (space, tab, CR, LF) is dropped wherever it is, so text wrapped at 76
 * columns (base64(1)) or 64 (PEM) is read; what is left must be strict
 * base64 of at most out_cap bytes. False, with *out_len 0, for anything
 * else (or out of memory).
 */
bool cli_b64_decode(const char *in, size_t len, uint8_t *out, size_t out_cap,
                    size_t *out_len);

/* ---- input and output ---- */

/*
 * Reads path ("-" or NULL: stdin) into buf, at most cap bytes. *total is the
 * input's full size (more than cap means too large; the excess is not kept).
 * Returns an exit code, having printed the reason on failure.
 */
int cli_read_input(struct cli *cli, const char *path, uint8_t *buf, size_t cap,
                   size_t *len, size_t *total);

/* ---- streaming: inputs and outputs of any size ---- */

/* Reads and writes go in runs of this size: a few system calls per
 * megabyte, and memory that does not grow with the file. */
#define CLI_IO_BUF ((size_t)1 << 20)

/* An input read as a stream (a file of any size, or stdin). */
struct cli_input {
	const char *name; /* the path or "standard input", for messages */
	int fd;
	bool size_known;  /* a regular file: its size when opened */
	uint64_t size;
	bool eof;         /* a read has returned 0 */
	uint64_t taken;   /* bytes read so far */
};

/* Opens path ("-" or NULL: stdin). Returns an exit code, having printed
 * the reason on failure; in->fd is -1 unless CLI_EXIT_OK. */
int cli_input_open(struct cli *cli, const char *path, struct cli_input *in);

/* Reads until want bytes are in buf or the input ends (in->eof); *got says
 * how many. Returns 0 or an errno value, printing nothing (a progress line
 * may be up: the caller clears it, then cli_input_error). */
int cli_input_read(struct cli_input *in, uint8_t *buf, size_t want, size_t *got);

/* "PROG: cannot read NAME: why"; returns CLI_EXIT_USAGE. */
int cli_input_error(struct cli *cli, const struct cli_input *in, int error);

/* Closes what cli_input_open opened (not stdin); safe twice. */
void cli_input_close(struct cli_input *in);

/*
 * An output written as it is made, in CLI_IO_BUF runs, with the same
 * promises as cli_write_output: a file (new or not) is a new file of mode
 * 0600 (O_EXCL, a random name beside the target) until cli_sink_commit
 * fsyncs and renames it over the target, so a failed command leaves the
 * target as it was and nothing beside it. Standard output and a special
 * target (/dev/null, a pipe) are written in place, as the bytes come.
 */
struct cli_sink {
	struct cli *cli;
	const char *path;  /* the target; NULL for the output stream */
	int fd;            /* -1: the output stream through stdio (tests) */
	bool own_fd;       /* fd is ours to close */
	bool in_place;     /* the output stream or a special target */
	bool unnamed;      /* fd is an O_TMPFILE file, linked in at commit */
	char *temp;        /* the temporary file until committed, else NULL */
	uint8_t *buf;      /* CLI_IO_BUF bytes, secure memory when secret */
	size_t fill;
	bool secret;
	uint64_t written;  /* bytes that reached fd or the output stream */
	int error;         /* the first failed write's errno, else 0 */
};

/* Opens the output for path ("-" or NULL: the output stream); secret:
 * it will hold a plaintext, so its buffer is secure memory. Returns an
 * exit code, having printed the reason on failure. */
int cli_sink_open(struct cli *cli, const char *path, bool secret, struct cli_sink *s);

/* Takes the next bytes (a kms_envelope_write_fn: arg is the sink).
 * Returns 0 or an errno value, kept in s->error. */
int cli_sink_write(void *sink, const uint8_t *bytes, size_t len);

/* The output is complete: writes what is buffered and puts the file in
 * place (fsync, rename, directory fsync). Returns an exit code, having
 * printed the reason on failure (then the sink is aborted). */
int cli_sink_commit(struct cli_sink *s);

/* The output is not to be used: wipes the buffer, removes the temporary
 * file. Returns how many bytes had already gone where they cannot be
 * taken back (the output stream or a special target); 0 for a file.
 * Safe after commit and twice. */
uint64_t cli_sink_abort(struct cli_sink *s);

/* The sink's target for messages: its path, or "standard output". */
const char *cli_sink_name(const struct cli_sink *s);

/* Writes bytes to path ("-" or NULL: the command's output stream). Every
 * file a CLI writes goes through here: it may hold a plaintext, so it is
 * made as a new file of mode 0600 (O_EXCL) in the target's directory,
 * fsync'ed and renamed over the target, which ends with mode 0600 whatever
 * it had; on failure the target is untouched and nothing is left behind.
 * An existing target that is not a regular file (/dev/null, a pipe) is
 * written in place. Returns an exit code. */
int cli_write_output(struct cli *cli, const char *path, const void *bytes, size_t len);

/* The same for a secret kept at rest (a credentials file): an existing
 * target that is not a regular file or a symbolic link (a pipe, a device,
 * a directory) is refused, never written into; a symbolic link is
 * replaced, not followed. */
int cli_write_private_file(struct cli *cli, const char *path, const void *bytes, size_t len);
/* cli_write_private_file's refusal alone, before the secret exists: an
 * exit code, with the line on the error stream. */
int cli_check_private_target(struct cli *cli, const char *path);

/* ---- presenting ---- */

/* The visible form of an untrusted string (malloc'ed; NULL when out of
 * memory): C0 and C1 controls, DEL and the Unicode bidi controls (U+061C,
 * U+200E, U+200F, U+202A..U+202E, U+2066..U+2069) become "\u202e"-style
 * escapes, a byte that is not UTF-8 "\xff"; with keep_lines, newlines and
 * tabs pass. Every server string a CLI prints goes through it. */
char *cli_escape(const char *s, bool keep_lines);

/* Writes s through cli_escape: server strings are untrusted. */
void cli_put_clean(FILE *to, const char *s);

/* The same, but newlines and tabs pass: multi-line text such as a policy. */
void cli_put_lines(FILE *to, const char *s);

/* "2024-05-01T12:00:00Z", or "-" for 0. */
const char *cli_time(int64_t unix_seconds, char buf[CLI_TIME_MAX]);

/* "label:" padded to a column, then the value, cleaned. */
void cli_field(FILE *to, const char *label, const char *value);
void cli_field_fmt(FILE *to, const char *label, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A table printed with aligned columns. Cells are copied. */
struct cli_table {
	size_t n_cols;
	size_t n_rows; /* with the header row */
	size_t cap_rows;
	char **cells;  /* n_rows * n_cols */
};

bool cli_table_init(struct cli_table *t, size_t n_cols, const char *const *headers);
bool cli_table_add(struct cli_table *t, const char *const *cells);
void cli_table_print(const struct cli_table *t, FILE *to);
void cli_table_free(struct cli_table *t);

/* A progress line on the error stream for a long job of known size:
 * only when that stream is a terminal; redrawn at most ten times a
 * second; cleared at the end, so that nothing of it stays. */
struct cli_progress {
	FILE *to;          /* NULL: off */
	uint64_t total;
	uint64_t done;
	uint64_t start_ns; /* CLOCK_MONOTONIC */
	uint64_t drawn_ns; /* the last redraw */
	bool shown;
};

/* Starts it for total bytes, on when enabled and the error stream is a
 * terminal. */
void cli_progress_start(struct cli *cli, struct cli_progress *p, bool enabled, uint64_t total);
void cli_progress_add(struct cli_progress *p, uint64_t bytes);
/* Clears the line (at the end, success or not). */
void cli_progress_end(struct cli_progress *p);

/* A JSON string of untrusted text (invalid UTF-8 bytes become '?'). */
json_t *cli_json_str(const char *s);

/* Prints json (taking the reference) and a newline to the output stream;
 * NULL (out of memory while building) is reported. Returns an exit code. */
int cli_json_print(struct cli *cli, json_t *json);

/* json_dumpf with JSON_ENSURE_ASCII, and DEL (0x7f), which jansson leaves
 * raw, written "\u007f": no control character reaches the output raw.
 * Returns 0, or -1 when writing failed. */
int cli_json_dump(json_t *json, FILE *to, size_t flags);

/* The same to path ("-" or NULL: the output stream), through a wiped
 * buffer: for JSON that holds a plaintext. */
int cli_json_write(struct cli *cli, const char *path, json_t *json);

/* Makes jansson wipe what it frees: JSON output may hold a plaintext. */
void cli_json_wipe_on_free(void);

#endif
