/*
 * admin_audit.h: what the files of `kms-admin audit` share.
 *
 *   admin_audit.c          the command table, the verifier key, output and
 *                          following helpers
 *   admin_audit_verify.c   audit verify: a copied log directory, offline
 *   admin_audit_read.c     audit tail, audit show: entries from the published
 *                          files (a copy, or kmsd's over HTTP)
 *   admin_audit_http.c     the published files over HTTP (audit tail --http)
 *   admin_audit_prove.c    audit key, audit prove: against kmsd
 *   admin_audit_repair.c   audit repair: kmsd's log.bin rebuilt from the
 *                          verified entry bundles, kmsd stopped
 *   admin_audit_export.c   audit export: a consistent copy of a live log
 *   admin_audit_query.c    audit query (the breach query), and the verified
 *                          walk over entries that report evidence shares
 *
 * The log's formats, proofs and the directory reader are common/tlog/'s;
 * these files only choose what to check and say what they found.
 */
#ifndef KMS_ADMIN_AUDIT_H
#define KMS_ADMIN_AUDIT_H

#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "clients/cli/admin.h"
#include "common/tlog/tlog_merkle.h"
#include "common/tlog/tlog_note.h"
#include "common/tlog/tlog_verify.h"

#define ADMIN_AUDIT_ENV_KEY "KMS_AUDIT_KEY"
#define ADMIN_AUDIT_HEX_SIZE (2 * TLOG_HASH_SIZE + 1)

typedef const uint8_t (*admin_audit_hashes)[TLOG_HASH_SIZE];

/* Every audit command's options, numbered once so that the shared
 * KEY_OPTIONS never collide with a command's own. */
enum {
	AUDIT_OPT_KEY = CLI_OPT_COMMAND,
	AUDIT_OPT_KEY_FILE,
	AUDIT_OPT_SINCE,
	AUDIT_OPT_LINES,
	AUDIT_OPT_FOLLOW,
	AUDIT_OPT_RAW,
	AUDIT_OPT_TREE_SIZE,
	AUDIT_OPT_CONSISTENCY,
	AUDIT_OPT_NEW_SIZE,
	AUDIT_OPT_OLD_CHECKPOINT,
	AUDIT_OPT_PRINCIPAL,
	AUDIT_OPT_ACCESS_KEY,
	AUDIT_OPT_UNTIL,
	AUDIT_OPT_LOG,
	AUDIT_OPT_HTTP,
	AUDIT_OPT_UNTIL_SIZE,
	AUDIT_OPT_POLLS,
};

#define AUDIT_KEY_OPTIONS                                                      \
	{ "key", required_argument, NULL, AUDIT_OPT_KEY },                     \
	{ "key-file", required_argument, NULL, AUDIT_OPT_KEY_FILE }

/* The verifier key a command was given: AUDIT_KEY_OPTIONS as parsed, then
 * what admin_audit_resolve_key made of them. */
struct admin_audit_key {
	const char *arg;  /* --key */
	const char *file; /* --key-file */
	char text[TLOG_VERIFIER_KEY_MAX]; /* "" when none was given */
	tlog_verifier parsed;
	bool given;
};

/* Takes opt when it is one of AUDIT_KEY_OPTIONS; false for any other. */
bool admin_audit_key_option(int opt, struct admin_audit_key *vk);

/* The verifier key from --key, else --key-file, else $KMS_AUDIT_KEY,
 * parsed. vk->given is false when none was given (then vk->text is ""). A
 * key that does not parse is a usage error: it is the user's input. */
int admin_audit_resolve_key(struct cli *cli, struct admin_audit_key *vk);

/* The parsed key, or NULL when none was given. */
const tlog_verifier *admin_audit_given_key(const struct admin_audit_key *vk);

/* Decimal, digits only, at most max. */
bool admin_audit_parse_u64(const char *text, uint64_t max, uint64_t *out);

/* "PATH: verification FAILED: what", one line (what cleaned: it may quote
 * a checkpoint or an entry); returns exit code 1. */
int admin_audit_failed(struct cli *cli, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A directory that is not there, not readable or has no checkpoint is a
 * usage error (2), said. */
int admin_audit_check_dir(struct cli *cli, const char *dir);

/* A signed checkpoint from a file (--since, --old-checkpoint), read whole
 * into *note (malloc'ed; free it, also on failure) and NUL-terminated at
 * *len. Too large or empty is a usage error. */
int admin_audit_read_note_file(struct cli *cli, const char *flag, const char *path, char **note,
                               size_t *len);

/* ---- output ---- */

const char *admin_audit_hex(const uint8_t hash[static TLOG_HASH_SIZE],
                            char out[static ADMIN_AUDIT_HEX_SIZE]);
json_t *admin_audit_json_hex(const uint8_t hash[static TLOG_HASH_SIZE]);
json_t *admin_audit_json_hashes(admin_audit_hashes hashes, size_t n);

/* One hash a line, the first after the label; when_empty for none. */
void admin_audit_print_hashes(FILE *to, const char *label, admin_audit_hashes hashes, size_t n,
                              const char *when_empty);

/* An entry for a JSON document: the object, or its bytes as a string
 * (cleaned) when it is not one. A new reference; NULL when out of memory. */
json_t *admin_audit_entry_value(const uint8_t *entry, size_t len);

/* The entry pretty-printed, or as cleaned text when it is not JSON. */
int admin_audit_print_entry(struct cli *cli, const uint8_t *entry, size_t len);

/* One JSON line: {"index":N,"entry":{...}}. */
int admin_audit_print_entry_line(struct cli *cli, uint64_t index, const uint8_t *entry,
                                 size_t len);

/* Lines must reach a pipe as they come. */
int admin_audit_flush_lines(struct cli *cli);

/* ---- following: tail -f ---- */

struct admin_audit_stop_signals {
	struct sigaction old_int, old_term;
};

/* SIGINT and SIGTERM end a follow cleanly (exit 0, output flushed). */
void admin_audit_stop_signals_catch(struct admin_audit_stop_signals *saved);
void admin_audit_stop_signals_restore(const struct admin_audit_stop_signals *saved);

/* Waits the follow interval; false when a stop signal came. */
bool admin_audit_follow_wait(void);

/* A checkpoint looked at again (now) against the one followed so far
 * (then): it must not go back, nor, when compare_roots (it verified),
 * change the root of the size already shown. what names it. */
int admin_audit_check_not_rewound(struct cli *cli, const char *what, const tlog_checkpoint *then,
                                  const tlog_checkpoint *now, bool compare_roots);

/* ---- reading entries for reports: audit query, report evidence ---- */

/* "2026-11-28T00:13:45.123456Z" and its NUL: the form every entry's time
 * has (docs/audit-log.md). */
#define ADMIN_AUDIT_TIME_SIZE 28

/* An RFC 3339 UTC time ("Z" or "+00:00", up to 6 fraction digits) in the
 * entries' form; false when it is not one. */
bool admin_audit_time_parse(const char *text, char out[static ADMIN_AUDIT_TIME_SIZE]);

/* Entries whose time is since <= time < until. */
struct admin_audit_window {
	char since[ADMIN_AUDIT_TIME_SIZE];
	char until[ADMIN_AUDIT_TIME_SIZE];
};

/* --since and --until, both required, since before until; a usage error
 * (said) otherwise. */
int admin_audit_window_parse(struct cli *cli, const char *since, const char *until,
                             struct admin_audit_window *w);
bool admin_audit_in_window(const struct admin_audit_window *w, json_t *entry);

/* A string member of object, "" when it is missing or not a string. */
const char *admin_audit_member(json_t *object, const char *name);

/* A refusal: the authz decision is not "allow", the consent decision is
 * not "allow", or the status is ACCESS_DENIED. */
bool admin_audit_entry_denied(json_t *entry);

/* The log a report reads and the key it verifies with. */
struct admin_audit_source {
	char dir[4096];
	char vkey[TLOG_VERIFIER_KEY_MAX];
	bool key_from_kmsd; /* none was given: kmsd's own, said on stderr */
};

/* dir: log_dir, else health's <data_dir>/audit/public (kmsd names its data
 * directory to admins and auditors only). The key: vk's, else cp's
 * verifier key (said). health and cp may be NULL when not needed. Checks
 * the directory holds a checkpoint. An exit code, said. */
int admin_audit_source_resolve(struct cli *cli, const char *log_dir,
                               const struct admin_audit_key *vk, const kms_health *health,
                               const kms_checkpoint *cp, struct admin_audit_source *out);

/* Called for each entry of a log that verified, in order, parsed. */
typedef kms_status (*admin_audit_json_fn)(void *ctx, uint64_t index, json_t *entry);

/* Verifies dir end to end with vkey (tlog_verify_dir: the checkpoint's
 * signature, every bundle and tile, the root), then calls fn for every
 * entry. report gets what verified. An exit code, said: 1 when the log
 * does not verify. */
int admin_audit_scan(struct cli *cli, const char *dir, const char *vkey, admin_audit_json_fn fn,
                     void *ctx, tlog_verify_report *report);

/* A tally is a JSON object name -> {"entries", "allowed", "denied"}:
 * counts one entry for name. */
kms_status admin_audit_tally(json_t *tally, const char *name, bool denied);

/* The tally as an array sorted by name, each row with its name as
 * name_member; NULL when out of memory. */
json_t *admin_audit_tally_list(json_t *tally, const char *name_member);

/* audit export's copy (admin_audit_export.c): src's checkpoint verified
 * with key, exactly the tiles and bundles of its size copied to dst (which
 * must exist), the checkpoint written last, then dst verified into
 * report. *files counts the files copied. An exit code, said. */
int admin_audit_copy_verified(struct cli *cli, const char *src, const char *dst,
                              const char *vkey, uint64_t *files, tlog_verify_report *report);

/* ---- the commands ---- */

int admin_audit_verify(struct cli *cli, int argc, char **argv);      /* admin_audit_verify.c */
int admin_audit_tail(struct cli *cli, int argc, char **argv);        /* admin_audit_read.c */
int admin_audit_show(struct cli *cli, int argc, char **argv);        /* admin_audit_read.c */
int admin_audit_key_cmd(struct cli *cli, int argc, char **argv);     /* admin_audit_prove.c */
int admin_audit_prove(struct cli *cli, int argc, char **argv);       /* admin_audit_prove.c */
int admin_audit_repair(struct cli *cli, int argc, char **argv);      /* admin_audit_repair.c */
int admin_audit_export(struct cli *cli, int argc, char **argv);      /* admin_audit_export.c */
int admin_audit_query(struct cli *cli, int argc, char **argv);       /* admin_audit_query.c */

/* ---- the published log over HTTP (admin_audit_http.c) ---- */

#define ADMIN_AUDIT_HTTP_TIMEOUT_MS 10000 /* one file: connect to last byte */

/* Where a log is served: http://HOST:PORT (kmsd's [audit] http: its
 * /audit/) or http://HOST:PORT/PATH (the root of a copy of the log). */
struct admin_audit_http {
	char host[256];
	char port[8];
	char prefix[1024]; /* "/audit/": ends with '/' */
	char shown[1400];  /* the whole base URL, for messages */
	int timeout_ms;
};

/* false when url is not one of those (plain http only). */
bool admin_audit_http_parse(const char *url, struct admin_audit_http *out);

/* A tlog_file_source (ctx: a struct admin_audit_http): GET prefix + path.
 * 404 is KMS_NOT_FOUND; no answer, or another status, KMS_UNAVAILABLE. */
kms_status admin_audit_http_source(void *ctx, const char *path, size_t max, uint8_t **out,
                                   size_t *len) KMS_MUST_USE;

#endif
