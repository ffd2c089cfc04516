/*
 * The CLIs in-process: table-driven dispatch and usage, exit codes for
 * usage errors and an absent daemon, input limits, and output formatting
 * (aligned text, JSON, control characters from the server neutralised).
 * Nothing here needs kmsd.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clients/cli/admin.h"
#include "clients/cli/tool.h"

struct run {
	int code;
	char *out;
	char *err;
};

/* Runs a tool on argv (NULL-terminated), capturing both streams. */
static struct run run_argv(const char *prog, const char *about,
                           const struct cli_command *table, char **argv)
{
	struct run r;
	size_t out_len, err_len;
	int argc = 0;
	while (argv[argc])
		argc++;
	FILE *out = open_memstream(&r.out, &out_len);
	FILE *err = open_memstream(&r.err, &err_len);
	assert_non_null(out);
	assert_non_null(err);
	r.code = cli_main(prog, about, table, argc, argv, out, err);
	fclose(out);
	fclose(err);
	return r;
}

#define ADMIN(...) run_argv(ADMIN_PROG, ADMIN_ABOUT, admin_commands,                   \
                            (char *[]){ ADMIN_PROG, __VA_ARGS__, NULL })
#define TOOL(...) run_argv(TOOL_PROG, TOOL_ABOUT, tool_commands,                      \
                           (char *[]){ TOOL_PROG, __VA_ARGS__, NULL })

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

static void expect(struct run r, int code, const char *in_out, const char *in_err)
{
	if (r.code != code || (in_out && !strstr(r.out, in_out)) ||
	    (in_err && !strstr(r.err, in_err)))
		fail_msg("exit %d (want %d)\nstdout: %s\nstderr: %s\nwanted out~\"%s\" err~\"%s\"",
		         r.code, code, r.out, r.err, in_out ? in_out : "", in_err ? in_err : "");
	run_free(&r);
}

static int setup(void **state)
{
	static const char *const vars[] = {
		CLI_ENV_ENDPOINT, CLI_ENV_TIMEOUT, CLI_ENV_TLS_CA, CLI_ENV_TLS_CERT,
		CLI_ENV_TLS_KEY, CLI_ENV_TLS_SERVER_NAME, CLI_ENV_ACCESS_KEY_ID,
		CLI_ENV_SECRET_FILE, CLI_ENV_CREDENTIALS, "KMS_HSM_MODULE", "KMS_HSM_TOKEN", "KMS_HSM_PIN_FILE",
	};
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
		unsetenv(vars[i]);
	return 0;
}

/* ---- dispatch and usage ---- */

/* Every leaf under table: its path appears in the top --help, and its own
 * --help prints its usage and exits 0. */
static void check_leaves(const struct cli_command *table, char *prefix, const char *top_help,
                         const char *prog, const char *about,
                         const struct cli_command *root)
{
	for (const struct cli_command *c = table; c->name; c++) {
		char path[128];
		snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? " " : "", c->name);
		if (c->sub) {
			check_leaves(c->sub, path, top_help, prog, about, root);
			continue;
		}
		char listed[160];
		snprintf(listed, sizeof listed, "  %s  ", path);
		if (!strstr(top_help, listed))
			fail_msg("%s --help does not list \"%s\"", prog, path);

		/* PROG path... --help */
		char *argv[8] = { (char *)prog };
		char words[128];
		int argc = 1;
		snprintf(words, sizeof words, "%s", path);
		for (char *save = NULL, *w = strtok_r(words, " ", &save); w;
		     w = strtok_r(NULL, " ", &save))
			argv[argc++] = w;
		argv[argc++] = "--help";
		argv[argc] = NULL;
		struct run r = run_argv(prog, about, root, argv);
		char usage[160];
		snprintf(usage, sizeof usage, "usage: %s %s", prog, path);
		expect(r, CLI_EXIT_OK, usage, NULL);
	}
}

static void help_lists_every_command(void **state)
{
	struct run r = ADMIN("--help");
	assert_int_equal(r.code, CLI_EXIT_OK);
	assert_string_equal(r.err, "");
	check_leaves(admin_commands, "", r.out, ADMIN_PROG, ADMIN_ABOUT, admin_commands);
	run_free(&r);

	r = TOOL("--help");
	assert_int_equal(r.code, CLI_EXIT_OK);
	check_leaves(tool_commands, "", r.out, TOOL_PROG, TOOL_ABOUT, tool_commands);
	run_free(&r);
}

static void nodes_and_unknowns(void **state)
{
	expect(ADMIN("frobnicate"), CLI_EXIT_USAGE, NULL, "unknown command \"frobnicate\"");
	expect(ADMIN("key", "frobnicate"), CLI_EXIT_USAGE, NULL,
	       "kms-admin key: unknown command");
	expect(ADMIN("key", "--help"), CLI_EXIT_OK, "  create ", NULL);
	expect(ADMIN("key", "--help"), CLI_EXIT_OK, "  policy put ", NULL);
	expect(ADMIN("key"), CLI_EXIT_USAGE, NULL, "usage: kms-admin key");
	expect(run_argv(ADMIN_PROG, ADMIN_ABOUT, admin_commands, (char *[]){ ADMIN_PROG, NULL }),
	       CLI_EXIT_USAGE, NULL, "usage: kms-admin");
	expect(ADMIN("--bogus"), CLI_EXIT_USAGE, NULL, "unknown option --bogus");
	/* Control characters in an unknown name are not echoed raw. */
	expect(ADMIN("\x1b[2J"), CLI_EXIT_USAGE, NULL, "\"\\u001b[2J\"");
	expect(TOOL("decrypt-all"), CLI_EXIT_USAGE, NULL, "unknown command");
}

static void usage_errors_exit_2_before_connecting(void **state)
{
	expect(ADMIN("key", "describe"), CLI_EXIT_USAGE, NULL, "missing argument");
	expect(ADMIN("key", "describe", "k-1", "k-2"), CLI_EXIT_USAGE, NULL,
	       "unexpected argument \"k-2\"");
	expect(ADMIN("key", "list", "--limit"), CLI_EXIT_USAGE, NULL, "needs a value");
	expect(ADMIN("key", "list", "--limit", "0"), CLI_EXIT_USAGE, NULL, "1..1000");
	expect(ADMIN("key", "list", "--nope"), CLI_EXIT_USAGE, NULL, "unknown option --nope");
	expect(ADMIN("key", "set-rotation", "k-1", "3651"), CLI_EXIT_USAGE, NULL, "DAYS");
	expect(ADMIN("key", "schedule-deletion", "k-1", "--days", "6"), CLI_EXIT_USAGE, NULL,
	       "7..30");
	expect(ADMIN("key", "create", "--tag", "novalue"), CLI_EXIT_USAGE, NULL,
	       "expected KEY=VALUE");
	expect(ADMIN("key", "create", "--tag", "a=1", "--tag", "a=2"), CLI_EXIT_USAGE, NULL,
	       "given twice");
	expect(ADMIN("key", "create", "--spec", "DES"), CLI_EXIT_USAGE, NULL,
	       "unknown key spec");
	expect(ADMIN("key", "tag", "k-1", "x"), CLI_EXIT_USAGE, NULL, "expected KEY=VALUE");
	expect(ADMIN("key", "policy", "put", "k-1", "/nonexistent/policy.json"),
	       CLI_EXIT_USAGE, NULL, "cannot read /nonexistent/policy.json");
	expect(ADMIN("alias", "create", "alias/x"), CLI_EXIT_USAGE, NULL, "missing argument");
	expect(ADMIN("hsm", "status"), CLI_EXIT_USAGE, NULL, "which token?");
	expect(ADMIN("health", "--timeout", "0"), CLI_EXIT_USAGE, NULL, "--timeout");
	expect(ADMIN("health", "--server-uid", "-1"), CLI_EXIT_USAGE, NULL,
	       "--server-uid takes a uid, 0..4294967294");
	expect(TOOL("random", "4", "--server-uid", "4294967295"), CLI_EXIT_USAGE, NULL,
	       "--server-uid takes a uid");
	setenv(CLI_ENV_SERVER_UID, "nobody", 1);
	expect(TOOL("random", "4"), CLI_EXIT_USAGE, NULL, "$KMS_SERVER_UID takes a uid");
	unsetenv(CLI_ENV_SERVER_UID);
	expect(TOOL("encrypt"), CLI_EXIT_USAGE, NULL, "--key KEY is required");
	expect(TOOL("encrypt", "--key", "k", "--context", "a=1", "--context", "a=1"),
	       CLI_EXIT_USAGE, NULL, "given twice");
	expect(TOOL("random", "0"), CLI_EXIT_USAGE, NULL, "1..1024");
	expect(TOOL("random", "1025"), CLI_EXIT_USAGE, NULL, "1..1024");
	expect(TOOL("data-key"), CLI_EXIT_USAGE, NULL, "--key KEY is required");
}

/* A file of n bytes (all 'x'), or with given content; path into out. */
static void write_file(char *path, size_t cap, const char *name, const char *content,
                       size_t n)
{
	snprintf(path, cap, "/tmp/kms-test-cli-%d-%s", (int)getpid(), name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	for (size_t i = 0; i < n; i++)
		fputc(content ? content[i] : 'x', f);
	fclose(f);
}

static void encrypt_input_limits(void **state)
{
	char big[128], empty[128], exact[128], notb64[128];
	write_file(big, sizeof big, "big", NULL, 5000);
	write_file(empty, sizeof empty, "empty", NULL, 0);
	write_file(exact, sizeof exact, "exact", NULL, 4096);
	write_file(notb64, sizeof notb64, "notb64", "not base64!\n", 12);

	/* Encrypt takes 1..4096 bytes: --mode direct refuses the rest, saying
	 * what does take them. */
	expect(TOOL("encrypt", "--key", "k-1", "--in", big, "--mode", "direct"), CLI_EXIT_USAGE,
	       NULL, "kms: input is 5000 bytes; --mode direct takes at most 4096: use --mode "
	       "envelope (or leave --mode out)\n");
	expect(TOOL("encrypt", "--key", "k-1", "-i", empty, "--mode", "direct"), CLI_EXIT_USAGE,
	       NULL, "input is empty");
	/* 4096 bytes pass the limit and go on to connect (and find no kmsd);
	 * so do 5000 and 0 bytes, as envelope messages (--mode auto). */
	char *const go_on[] = { exact, big, empty };
	for (size_t i = 0; i < 3; i++)
		expect(TOOL("encrypt", "--key", "k-1", "--in", go_on[i], "--endpoint",
		            "ipc:///tmp/kms-test-cli-nobody.sock", "--timeout", "100"),
		       CLI_EXIT_UNREACHABLE, NULL, "no socket at /tmp/kms-test-cli-nobody.sock");
	expect(TOOL("decrypt", "--in", notb64), CLI_EXIT_USAGE, NULL,
	       "input is not an envelope message and not base64");
	expect(TOOL("decrypt", "--in", empty), CLI_EXIT_USAGE, NULL, "ciphertext blob");
	/* An envelope message is binary: with --json it needs a file, and
	 * --json says so before anything is read from kmsd. */
	expect(TOOL("encrypt", "--key", "k-1", "--in", big, "--json"), CLI_EXIT_USAGE, NULL,
	       "--json with an envelope message needs -o FILE");
	expect(TOOL("encrypt", "--key", "k-1", "--in", big, "--mode", "fast"), CLI_EXIT_USAGE,
	       NULL, "--mode takes auto, direct or envelope");
	expect(TOOL("encrypt", "--key", "k-1", "-x"), CLI_EXIT_USAGE, NULL, "unknown option -x");
	expect(TOOL("decrypt", "-i"), CLI_EXIT_USAGE, NULL, "option -i needs a value");
	expect(TOOL("random", "4", "-i", big), CLI_EXIT_USAGE, NULL, "unknown option -i");

	/* Only a blob can be re-encrypted (inside kmsd). */
	char message[128];
	write_file(message, sizeof message, "message", "\x89kmsenv\n and the rest", 22);
	expect(TOOL("re-encrypt", "--in", message), CLI_EXIT_USAGE, NULL,
	       "input is an envelope message, and only a ciphertext blob");
	unlink(message);
	expect(TOOL("encrypt", "--key", "k-1", "--in", "/nonexistent/x"), CLI_EXIT_USAGE, NULL,
	       "cannot read /nonexistent/x");
	unlink(big);
	unlink(empty);
	unlink(exact);
	unlink(notb64);
}

static void connection_failures(void **state)
{
	char sock[128];
	snprintf(sock, sizeof sock, "ipc:///tmp/kms-test-cli-%d-nobody.sock", (int)getpid());
	char want[160];
	snprintf(want, sizeof want, "no socket at %s: is kmsd running?", sock + strlen("ipc://"));
	expect(ADMIN("health", "--endpoint", sock, "--timeout", "150"), CLI_EXIT_UNREACHABLE,
	       NULL, want);
	/* Global flags before the command work the same. */
	expect(ADMIN("--timeout", "150", "--endpoint", sock, "key", "list"),
	       CLI_EXIT_UNREACHABLE, NULL, want);
	expect(ADMIN("health", "--endpoint", "tcp://127.0.0.1:9"), CLI_EXIT_USAGE, NULL,
	       "plain tcp://");
	expect(ADMIN("health", "--endpoint", "http://x"), CLI_EXIT_USAGE, NULL, "not http://");
	expect(ADMIN("health", "--endpoint", "tls+tcp://127.0.0.1:9"), CLI_EXIT_USAGE, NULL,
	       "needs a CA file");
	/* What is at an ipc:// path must be a socket (owners: test_cli_ipc_owner). */
	char not_sock[128];
	write_file(not_sock, sizeof not_sock, "not.sock", "x", 1);
	char not_sock_url[160];
	snprintf(not_sock_url, sizeof not_sock_url, "ipc://%s", not_sock);
	expect(TOOL("random", "4", "--endpoint", not_sock_url), CLI_EXIT_UNREACHABLE, NULL,
	       "is a regular file, not a socket: refusing to send to it");
	unlink(not_sock);

	/* $KMS_ENDPOINT: comma-separated, spaces ignored. */
	setenv(CLI_ENV_ENDPOINT, " ipc:///tmp/kms-test-a.sock , ipc:///tmp/kms-test-b.sock,", 1);
	expect(ADMIN("health", "--timeout", "100"), CLI_EXIT_UNREACHABLE, NULL,
	       "no socket at /tmp/kms-test-a.sock");
	expect(ADMIN("health", "--timeout", "100"), CLI_EXIT_UNREACHABLE, NULL,
	       "(and none of the other 1 ipc endpoints is up)"); /* b was read too */
	unsetenv(CLI_ENV_ENDPOINT);

	/* The access key secret must be private and well-formed. */
	char secret[128];
	write_file(secret, sizeof secret, "secret",
	           "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", 65);
	chmod(secret, 0644);
	expect(ADMIN("health", "--endpoint", sock, "--access-key-id", "ak-1", "--secret-file",
	             secret),
	       CLI_EXIT_USAGE, NULL, "only its owner can read");
	chmod(secret, 0600);
	expect(ADMIN("health", "--endpoint", sock, "--timeout", "100", "--access-key-id", "ak-1",
	             "--secret-file", secret),
	       CLI_EXIT_UNREACHABLE, NULL, want); /* the key was taken: on to connect */
	expect(ADMIN("health", "--endpoint", sock, "--access-key-id", "ak-1"), CLI_EXIT_USAGE,
	       NULL, "needs both");
	unlink(secret);
	write_file(secret, sizeof secret, "secret", "00112233\n", 9);
	chmod(secret, 0600);
	struct run r = ADMIN("health", "--endpoint", sock, "--access-key-id", "ak-1",
	                     "--secret-file", secret);
	assert_int_equal(r.code, CLI_EXIT_USAGE);
	assert_non_null(strstr(r.err, "does not hold 64 hex digits"));
	assert_null(strstr(r.err, "00112233")); /* never echoed */
	run_free(&r);
	unlink(secret);
}

/* --credentials and $KMS_CREDENTIALS beside --access-key-id/--secret-file:
 * one form at a time, a flag before the environment, the file's checks
 * (docs/request-signing.md, "Credentials file"). A key that was taken gets
 * as far as connecting, to an endpoint with nothing there. */
static void credentials_flags(void **state)
{
	static const char creds_text[] =
		"# kms credentials: principal test-app (keep this file secret)\n"
		"principal = test-app\n"
		"access_key_id = AKAAAAAAAAAAAAAAAAAAAA\n"
		"secret = 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
	char sock[128], want[160], creds[128], secret[128];
	snprintf(sock, sizeof sock, "ipc:///tmp/kms-test-cli-%d-nobody.sock", (int)getpid());
	snprintf(want, sizeof want, "no socket at %s: is kmsd running?", sock + strlen("ipc://"));
	write_file(creds, sizeof creds, "creds", creds_text, sizeof creds_text - 1);
	write_file(secret, sizeof secret, "secret2",
	           "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", 65);
	chmod(secret, 0600);

	expect(ADMIN("--help"), CLI_EXIT_OK, "--credentials FILE", NULL);
	chmod(creds, 0644);
	char chmod_hint[160];
	snprintf(chmod_hint, sizeof chmod_hint, "chmod 600 %s", creds);
	expect(ADMIN("health", "--endpoint", sock, "--credentials", creds), CLI_EXIT_USAGE, NULL,
	       chmod_hint);
	chmod(creds, 0600);
	expect(ADMIN("health", "--endpoint", sock, "--timeout", "100", "--credentials", creds),
	       CLI_EXIT_UNREACHABLE, NULL, want);
	expect(TOOL("random", "4", "--endpoint", sock, "--timeout", "100", "--credentials", creds),
	       CLI_EXIT_UNREACHABLE, NULL, want);
	expect(ADMIN("health", "--endpoint", sock, "--credentials", creds, "--access-key-id",
	             "AKAAAAAAAAAAAAAAAAAAAA", "--secret-file", secret),
	       CLI_EXIT_USAGE, NULL, "not both");
	expect(ADMIN("health", "--endpoint", sock, "--credentials", creds, "--secret-file", secret),
	       CLI_EXIT_USAGE, NULL, "not both");
	expect(ADMIN("health", "--endpoint", sock, "--credentials", "/nonexistent/creds"),
	       CLI_EXIT_USAGE, NULL, "credentials file /nonexistent/creds: No such file");

	/* The environment: used when no flag; both forms there is an error; a
	 * flag of either form wins over it. */
	setenv(CLI_ENV_CREDENTIALS, creds, 1);
	expect(ADMIN("health", "--endpoint", sock, "--timeout", "100"), CLI_EXIT_UNREACHABLE,
	       NULL, want);
	chmod(creds, 0640);
	expect(ADMIN("health", "--endpoint", sock, "--timeout", "100"), CLI_EXIT_USAGE, NULL,
	       chmod_hint);
	expect(ADMIN("health", "--endpoint", sock, "--timeout", "100", "--access-key-id",
	             "AKAAAAAAAAAAAAAAAAAAAA", "--secret-file", secret),
	       CLI_EXIT_UNREACHABLE, NULL, want); /* the flags win: the env file unread */
	chmod(creds, 0600);
	setenv(CLI_ENV_ACCESS_KEY_ID, "AKAAAAAAAAAAAAAAAAAAAA", 1);
	expect(ADMIN("health", "--endpoint", sock, "--timeout", "100"), CLI_EXIT_USAGE, NULL,
	       "are both set");
	expect(ADMIN("health", "--endpoint", sock, "--timeout", "100", "--credentials", creds),
	       CLI_EXIT_UNREACHABLE, NULL, want); /* the flag wins */
	unsetenv(CLI_ENV_ACCESS_KEY_ID);
	unsetenv(CLI_ENV_CREDENTIALS);

	/* A malformed file: the line and what is wrong, never its bytes. */
	static const char bad_text[] = "access_key_id = AKAAAAAAAAAAAAAAAAAAAA\n"
	                               "secret = 00112233445566778899AABBCCDDEEFF\n";
	unlink(creds);
	write_file(creds, sizeof creds, "creds", bad_text, sizeof bad_text - 1);
	chmod(creds, 0600);
	struct run r = ADMIN("health", "--endpoint", sock, "--credentials", creds);
	assert_int_equal(r.code, CLI_EXIT_USAGE);
	assert_non_null(strstr(r.err, "line 2: secret must be 64 lowercase hex digits"));
	assert_null(strstr(r.err, "00112233"));
	run_free(&r);
	unlink(creds);
	unlink(secret);
}

/* ---- formatting ---- */

static kms_key_version versions[] = {
	{ .version = 1, .created_at = 1700000000, .encryptions = 12 },
	{ .version = 2, .created_at = 1700086400, .encryptions = 3 },
};
static char *aliases[] = { "alias/app", "alias/backup" };
static kms_tag tags[] = { { "team", "payments" }, { "env", "prod" } };

static kms_key_metadata sample_key(char *key_id, char *description)
{
	kms_key_metadata md = {
		.key_id = key_id, .description = description,
		.key_spec = KMS_KEY_SPEC_AES_256, .key_usage = KMS_KEY_USAGE_ENCRYPT_DECRYPT,
		.key_state = KMS_KEY_STATE_ENABLED, .primary_version = 2,
		.versions = versions, .n_versions = 2, .rotation_period_days = 90,
		.created_at = 1700000000, .next_rotation_at = 1707776000,
		.region = "in-mum", .aliases = aliases, .n_aliases = 2,
		.tags = tags, .n_tags = 2,
	};
	return md;
}

/* Prints one key, or n keys as a table, into *text (free it). */
static void capture_key(const kms_key_metadata *md, bool list, size_t n, char **text)
{
	size_t len;
	FILE *f = open_memstream(text, &len);
	assert_non_null(f);
	if (list)
		admin_print_keys(f, md, n);
	else
		admin_print_key(f, md);
	fclose(f);
}

static void key_text_is_aligned_and_clean(void **state)
{
	kms_key_metadata md = sample_key("k-0123456789abcdef0123456789abcdef",
	                                 "evil\x1b[31mred\x07");
	char *text;
	capture_key(&md, false, 1, &text);
	assert_non_null(strstr(text, "key id:                k-0123456789abcdef0123456789abcdef\n"));
	assert_non_null(strstr(text, "state:                 ENABLED\n"));
	assert_non_null(strstr(text, "spec:                  AES_256\n"));
	assert_non_null(strstr(text, "v2  created 2023-11-15T22:13:20Z  3 GCM uses reserved  (primary)"));
	assert_non_null(strstr(text, "rotation:              every 90 days, next 2024-02-12T22:13:20Z"));
	assert_non_null(strstr(text, "aliases:               alias/app, alias/backup\n"));
	assert_non_null(strstr(text, "tags:                  team=payments\n"));
	assert_non_null(strstr(text, "                       env=prod\n"));
	/* The server's text reaches the terminal without its escapes. */
	assert_non_null(strstr(text, "description:           evil\\u001b[31mred\\u0007\n"));
	assert_null(strchr(text, '\x1b'));
	assert_null(strchr(text, '\x07'));
	free(text);

	kms_key_metadata keys[2] = {
		sample_key("k-0123456789abcdef0123456789abcdef", "first"),
		sample_key("k-1", "second"),
	};
	keys[1].key_state = KMS_KEY_STATE_PENDING_DELETION;
	keys[1].n_aliases = 0;
	keys[1].rotation_period_days = 0;
	capture_key(keys, true, 2, &text);
	char *header = text, *row1 = strchr(header, '\n') + 1, *row2 = strchr(row1, '\n') + 1;
	/* Columns line up: each starts at the same offset on every line. */
	size_t state_col = (size_t)(strstr(header, "STATE") - header);
	assert_int_equal((size_t)(strstr(row1, "ENABLED") - row1), state_col);
	assert_int_equal((size_t)(strstr(row2, "PENDING_DELETION") - row2), state_col);
	size_t desc_col = (size_t)(strstr(header, "DESCRIPTION") - header);
	assert_int_equal((size_t)(strstr(row1, "first") - row1), desc_col);
	assert_int_equal((size_t)(strstr(row2, "second") - row2), desc_col);
	assert_non_null(strstr(row2, " off "));
	free(text);
}

static void key_json_has_every_field(void **state)
{
	kms_key_metadata md = sample_key("k-1", "bad utf-8 \xff\xfe here");
	json_t *j = admin_json_key(&md);
	assert_non_null(j);
	char *dumped = json_dumps(j, 0);
	json_decref(j);
	json_error_t jerr;
	json_t *back = json_loads(dumped, 0, &jerr); /* valid JSON, even from bad bytes */
	assert_non_null(back);
	free(dumped);
	assert_string_equal(json_string_value(json_object_get(back, "key_id")), "k-1");
	assert_string_equal(json_string_value(json_object_get(back, "description")),
	                    "bad utf-8 ?? here");
	assert_string_equal(json_string_value(json_object_get(back, "key_state")), "ENABLED");
	assert_string_equal(json_string_value(json_object_get(back, "key_spec")), "AES_256");
	assert_int_equal(json_integer_value(json_object_get(back, "primary_version")), 2);
	assert_int_equal(json_array_size(json_object_get(back, "versions")), 2);
	assert_int_equal(json_integer_value(json_object_get(
				 json_array_get(json_object_get(back, "versions"), 0),
				 "gcm_reserved")),
	                 12);
	assert_int_equal(json_integer_value(json_object_get(back, "rotation_period_days")), 90);
	assert_int_equal(json_integer_value(json_object_get(back, "deletion_date")), 0);
	assert_string_equal(json_string_value(json_array_get(json_object_get(back, "aliases"), 1)),
	                    "alias/backup");
	assert_string_equal(json_string_value(json_object_get(json_object_get(back, "tags"), "env")),
	                    "prod");
	json_decref(back);

	kms_alias list[] = { { "alias/a", "k-1", 1700000000 } };
	j = admin_json_aliases(list, 1, "next");
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "next_page_token")), "next");
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(j, "aliases"), 0), "target_key_id")),
	                    "k-1");
	json_decref(j);
}

static void times_and_names(void **state)
{
	char buf[CLI_TIME_MAX];
	assert_string_equal(cli_time(0, buf), "-");
	assert_string_equal(cli_time(1700000000, buf), "2023-11-14T22:13:20Z");
	assert_string_equal(kms_key_state_name(KMS_KEY_STATE_DESTROYED), "DESTROYED");
	assert_string_equal(kms_key_state_name((kms_key_state)99), "UNKNOWN");
	kms_key_spec spec;
	assert_int_equal(kms_key_spec_parse("aes_256", &spec), KMS_OK);
	assert_int_equal(spec, KMS_KEY_SPEC_AES_256);
	assert_int_equal(kms_key_spec_parse("KEY_SPEC_UNSPECIFIED", &spec), KMS_INVALID_ARGUMENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(help_lists_every_command, setup),
		cmocka_unit_test_setup(nodes_and_unknowns, setup),
		cmocka_unit_test_setup(usage_errors_exit_2_before_connecting, setup),
		cmocka_unit_test_setup(encrypt_input_limits, setup),
		cmocka_unit_test_setup(connection_failures, setup),
		cmocka_unit_test_setup(credentials_flags, setup),
		cmocka_unit_test(key_text_is_aligned_and_clean),
		cmocka_unit_test(key_json_has_every_field),
		cmocka_unit_test(times_and_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
