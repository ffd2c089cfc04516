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

/* kms sign, verify, public-key, mac, verify-mac, pseudonym: what each
 * refuses before kmsd is asked (exit 2, one line saying what to do), and
 * what gets as far as connecting (to nothing: exit 3). kmsd's answers,
 * exit 4 for "does not verify" among them, are tests/kms/e2e/test_cli_sign's. */
static void sign_commands_refuse_before_connecting(void **state)
{
	char big[128], empty[128], exact[128], small[128], digest[128], tag33[128];
	char sock[128];
	snprintf(sock, sizeof sock, "ipc:///tmp/kms-test-cli-%d-nobody.sock", (int)getpid());
	write_file(big, sizeof big, "sign-big", NULL, 5000);
	write_file(empty, sizeof empty, "sign-empty", NULL, 0);
	write_file(exact, sizeof exact, "sign-exact", NULL, 4096);
	write_file(small, sizeof small, "sign-small", "hello", 5);
	write_file(digest, sizeof digest, "sign-digest", NULL, 32);
	write_file(tag33, sizeof tag33, "sign-tag33", NULL, 33);

	expect(TOOL("sign"), CLI_EXIT_USAGE, NULL, "--key KEY is required");
	expect(TOOL("sign", "--key", "k", "-i", big), CLI_EXIT_USAGE, NULL,
	       "kms sign: input is 5000 bytes; a message is at most 4096: sign its SHA-256 with "
	       "--digest (openssl dgst -sha256 -binary FILE | kms sign --key KEY --digest; "
	       "ECC_P256 keys)\n");
	expect(TOOL("sign", "--key", "k", "-i", empty), CLI_EXIT_USAGE, NULL,
	       "input is empty; a message is 1..4096 bytes");
	expect(TOOL("sign", "--key", "k", "--digest", "-i", exact), CLI_EXIT_USAGE, NULL,
	       "with --digest the input is a SHA-256 digest, 32 bytes (openssl dgst -sha256 "
	       "-binary FILE), not 4096");
	expect(TOOL("sign", "--key", "k", "-i", "/nonexistent/m"), CLI_EXIT_USAGE, NULL,
	       "cannot read /nonexistent/m");
	/* 4096 bytes, and a digest, are taken: on to connect. */
	expect(TOOL("sign", "--key", "k", "-i", exact, "--endpoint", sock, "--timeout", "100"),
	       CLI_EXIT_UNREACHABLE, NULL, "no socket at");
	expect(TOOL("sign", "--key", "k", "--digest", "-i", digest, "--endpoint", sock,
	            "--timeout", "100"),
	       CLI_EXIT_UNREACHABLE, NULL, "no socket at");

	expect(TOOL("verify", "--key", "k", "-i", small), CLI_EXIT_USAGE, NULL,
	       "give --signature FILE or --signature-base64 B64 (one of them)");
	expect(TOOL("verify", "--key", "k", "-i", small, "--signature", tag33,
	            "--signature-base64", "AAAA"),
	       CLI_EXIT_USAGE, NULL, "(one of them)");
	expect(TOOL("verify", "--key", "k", "-i", small, "--signature-base64", "not base64!"),
	       CLI_EXIT_USAGE, NULL, "--signature-base64: not base64 of a signature (1..256 bytes)");
	expect(TOOL("verify", "--key", "k", "-i", small, "--signature", big), CLI_EXIT_USAGE, NULL,
	       "is 5000 bytes, not a signature (1..256 raw bytes, as kms sign writes them; "
	       "base64: --signature-base64 B64)");
	expect(TOOL("verify", "--key", "k", "-i", small, "--signature", empty), CLI_EXIT_USAGE,
	       NULL, "is 0 bytes, not a signature");
	/* What kms sign --base64 -o FILE wrote: base64 text, which kmsd would
	 * call a signature that does not verify (exit 4). */
	char sig_b64[128];
	static const char b64_text[] = "tF8cGMD21r8Bf4CgmpiG3y//3athJCgonX8mMwk8ZumE/9JT+xJw0ZLQTi8d"
	                               "KfZKCP7f15vTCTbJlUR+dL9QDg==\n";
	write_file(sig_b64, sizeof sig_b64, "sign-sig-b64", b64_text, sizeof b64_text - 1);
	expect(TOOL("verify", "--key", "k", "-i", small, "--signature", sig_b64, "--endpoint",
	            sock, "--timeout", "100"),
	       CLI_EXIT_USAGE, NULL, "is base64 text, not raw bytes: give --signature-base64");
	unlink(sig_b64);
	expect(TOOL("verify", "--key", "k", "--signature", "-"), CLI_EXIT_USAGE, NULL,
	       "the message and the signature cannot both come from standard input");
	expect(TOOL("verify", "--key", "k", "-i", small, "--signature", tag33, "--version", "0"),
	       CLI_EXIT_USAGE, NULL, "--version takes a key version, 1..4294967295");
	expect(TOOL("verify", "--key", "k", "-i", big, "--signature", tag33), CLI_EXIT_USAGE, NULL,
	       "verify its SHA-256 with --digest (openssl dgst -sha256 -binary FILE | "
	       "kms verify");
	expect(TOOL("verify", "--key", "k", "-i", small, "--signature", tag33, "--version", "2",
	            "--endpoint", sock, "--timeout", "100"),
	       CLI_EXIT_UNREACHABLE, NULL, "no socket at");

	expect(TOOL("public-key"), CLI_EXIT_USAGE, NULL, "--key KEY is required");
	expect(TOOL("public-key", "--key", "k", "extra"), CLI_EXIT_USAGE, NULL,
	       "unexpected argument \"extra\"");
	expect(TOOL("public-key", "--key", "k", "--der", "--endpoint", sock, "--timeout", "100"),
	       CLI_EXIT_UNREACHABLE, NULL, "no socket at");

	/* A MAC is of a message: no digest form, no hint for one. */
	struct run r = TOOL("mac", "--key", "k", "-i", big);
	assert_int_equal(r.code, CLI_EXIT_USAGE);
	assert_non_null(strstr(r.err, "kms mac: input is 5000 bytes; a message is at most 4096\n"));
	run_free(&r);
	expect(TOOL("mac", "--key", "k", "--digest"), CLI_EXIT_USAGE, NULL,
	       "unknown option --digest");
	expect(TOOL("verify-mac", "--key", "k", "-i", small, "--mac", tag33), CLI_EXIT_USAGE, NULL,
	       "is 33 bytes, not a MAC (32 raw bytes, as kms mac writes them; base64: "
	       "--mac-base64 B64)");
	/* 31 bytes of base64: not a MAC. */
	expect(TOOL("verify-mac", "--key", "k", "-i", small, "--mac-base64",
	            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="),
	       CLI_EXIT_USAGE, NULL, "--mac-base64: not base64 of a MAC (32 bytes)");
	expect(TOOL("verify-mac", "--key", "k", "-i", small, "--mac-base64",
	            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "--endpoint", sock,
	            "--timeout", "100"),
	       CLI_EXIT_UNREACHABLE, NULL, "no socket at");

	unlink(big);
	unlink(empty);
	unlink(exact);
	unlink(small);
	unlink(digest);
	unlink(tag33);
}

/* kms pseudonym: values from the command line or a file, one a line; every
 * line is checked as it is read, and a bad one stops the run before its
 * batch is sent (here: before anything is). */
static void pseudonym_values_and_lines(void **state)
{
	char sock[128], crlf[128], blank[128], longline[128], empty[128], ok[128];
	snprintf(sock, sizeof sock, "ipc:///tmp/kms-test-cli-%d-nobody.sock", (int)getpid());
	char *long_text = malloc(1500);
	assert_non_null(long_text);
	memset(long_text, 'v', 1499);
	long_text[1499] = '\n';
	write_file(crlf, sizeof crlf, "p-crlf", "alice\r\nbob\r\n", 12);
	write_file(blank, sizeof blank, "p-blank", "alice\n\nbob\n", 11);
	write_file(longline, sizeof longline, "p-long", long_text, 1500);
	write_file(empty, sizeof empty, "p-empty", NULL, 0);
	write_file(ok, sizeof ok, "p-ok", "alice\nbob", 9); /* no LF at the end: fine */
	free(long_text);

	expect(TOOL("pseudonym", "--key", "k"), CLI_EXIT_USAGE, NULL,
	       "give the values (VALUE...) or --file FILE, one of them");
	expect(TOOL("pseudonym", "--key", "k", "--file", ok, "carol"), CLI_EXIT_USAGE, NULL,
	       "one of them");
	expect(TOOL("pseudonym", "alice"), CLI_EXIT_USAGE, NULL, "--key KEY is required");
	expect(TOOL("pseudonym", "--key", "k", "--context", "a=1", "--context", "a=2", "x"),
	       CLI_EXIT_USAGE, NULL, "given twice");
	char want[256];
	snprintf(want, sizeof want, "kms pseudonym: line 1 of %s ends with CR: convert the file's "
	         "CRLF line ends to LF", crlf);
	expect(TOOL("pseudonym", "--key", "k", "--file", crlf, "--endpoint", sock, "--timeout",
	            "100"),
	       CLI_EXIT_USAGE, NULL, want);
	snprintf(want, sizeof want, "line 2 of %s is 0 bytes; a value is 1..1024", blank);
	expect(TOOL("pseudonym", "--key", "k", "--file", blank, "--endpoint", sock, "--timeout",
	            "100"),
	       CLI_EXIT_USAGE, NULL, want);
	snprintf(want, sizeof want, "line 1 of %s is longer than 1024 bytes", longline);
	expect(TOOL("pseudonym", "--key", "k", "--file", longline, "--endpoint", sock,
	            "--timeout", "100"),
	       CLI_EXIT_USAGE, NULL, want);
	snprintf(want, sizeof want, "%s is empty: give one value a line", empty);
	expect(TOOL("pseudonym", "--key", "k", "--file", empty, "--endpoint", sock, "--timeout",
	            "100"),
	       CLI_EXIT_USAGE, NULL, want);
	expect(TOOL("pseudonym", "--key", "k", "--file", "/nonexistent/values", "--endpoint", sock,
	            "--timeout", "100"),
	       CLI_EXIT_USAGE, NULL, "cannot read /nonexistent/values");
	expect(TOOL("pseudonym", "--key", "k", "alice", "", "--endpoint", sock, "--timeout", "100"),
	       CLI_EXIT_USAGE, NULL, "value 2 is 0 bytes; a value is 1..1024");
	/* An unknown letter inside a cluster is named itself, not the argument
	 * before the cluster: that may be a value, a person's identifier. */
	struct run r = TOOL("pseudonym", "--key", "k", "+919876543210", "-xyz");
	assert_int_equal(r.code, CLI_EXIT_USAGE);
	if (!strstr(r.err, "unknown option -x") || strstr(r.err, "919876543210"))
		fail_msg("an unknown option in -xyz: %s", r.err);
	run_free(&r);
	expect(TOOL("sign", "--key", "k", "--digest", "-qi", "m"), CLI_EXIT_USAGE, NULL,
	       "unknown option -q");
	expect(TOOL("sign", "--key", "k", "--digest", "-:q"), CLI_EXIT_USAGE, NULL,
	       "unknown option -:");
	expect(TOOL("sign", "--key", "k", "--bogus"), CLI_EXIT_USAGE, NULL,
	       "unknown option --bogus");
	expect(TOOL("sign", "--key", "k", "--digest=yes"), CLI_EXIT_USAGE, NULL,
	       "unknown option --digest=yes");
	expect(TOOL("sign", "--key", "k", "--help=yes"), CLI_EXIT_USAGE, NULL,
	       "unknown option --help=yes");
	/* Good values go to kmsd (here: nowhere). */
	expect(TOOL("pseudonym", "--key", "k", "--file", ok, "--endpoint", sock, "--timeout",
	            "100"),
	       CLI_EXIT_UNREACHABLE, NULL, "no socket at");
	expect(TOOL("pseudonym", "--key", "k", "alice", "bob", "--json", "--endpoint", sock,
	            "--timeout", "100"),
	       CLI_EXIT_UNREACHABLE, NULL, "\"status\":\"UNAVAILABLE\"");
	unlink(crlf);
	unlink(blank);
	unlink(longline);
	unlink(empty);
	unlink(ok);
}

/* kms-admin key create: each spec has its usage, sent for it; ED25519 is
 * hsm-resident, HMAC_SHA256 and ECC_P256 wrapped; the rest is refused
 * before a request. */
static void key_create_fits_usage_and_protection_to_the_spec(void **state)
{
	char sock[128];
	snprintf(sock, sizeof sock, "ipc:///tmp/kms-test-cli-%d-nobody.sock", (int)getpid());
	expect(ADMIN("key", "create", "--spec", "HMAC_SHA256", "--usage", "ENCRYPT_DECRYPT"),
	       CLI_EXIT_USAGE, NULL, "HMAC_SHA256 keys are GENERATE_VERIFY_MAC, not "
	       "ENCRYPT_DECRYPT: leave --usage out, or give --spec AES_256");
	expect(ADMIN("key", "create", "--usage", "SIGN_VERIFY"), CLI_EXIT_USAGE, NULL,
	       "AES_256 keys are ENCRYPT_DECRYPT, not SIGN_VERIFY: leave --usage out, or give "
	       "--spec ECC_P256 or --spec ED25519");
	expect(ADMIN("key", "create", "--spec", "ED25519", "--protection", "wrapped"),
	       CLI_EXIT_USAGE, NULL, "ED25519 keys are hsm-resident only");
	expect(ADMIN("key", "create", "--spec", "ECC_P256", "--protection", "hsm-resident"),
	       CLI_EXIT_USAGE, NULL, "ECC_P256 keys cannot be hsm-resident");
	expect(ADMIN("key", "create", "--spec", "HMAC_SHA256", "--protection", "hsm-resident"),
	       CLI_EXIT_USAGE, NULL, "HMAC_SHA256 keys cannot be hsm-resident");
	/* What fits goes on to kmsd. */
	static char *const fits[][4] = {
		{ "--spec", "ED25519", "--usage", "SIGN_VERIFY" },
		{ "--spec", "ECC_P256", "--usage", "sign_verify" },
		{ "--spec", "HMAC_SHA256", "--usage", "GENERATE_VERIFY_MAC" },
		{ "--spec", "AES_256", "--protection", "hsm-resident" },
	};
	for (size_t i = 0; i < sizeof fits / sizeof fits[0]; i++)
		expect(ADMIN("key", "create", fits[i][0], fits[i][1], fits[i][2], fits[i][3],
		             "--endpoint", sock, "--timeout", "100"),
		       CLI_EXIT_UNREACHABLE, NULL, "no socket at");
	expect(ADMIN("key", "create", "--help"), CLI_EXIT_OK,
	       "ED25519      SIGN_VERIFY: kms sign, verify\n"
	       "                                       (Ed25519); always hsm-resident", NULL);
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

	/* A signing or MAC key reserves no GCM uses: none are shown. */
	md.key_spec = KMS_KEY_SPEC_ED25519;
	capture_key(&md, false, 1, &text);
	assert_non_null(strstr(text, "v2  created 2023-11-15T22:13:20Z  (primary)\n"));
	assert_null(strstr(text, "GCM"));
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
		cmocka_unit_test_setup(sign_commands_refuse_before_connecting, setup),
		cmocka_unit_test_setup(pseudonym_values_and_lines, setup),
		cmocka_unit_test_setup(key_create_fits_usage_and_protection_to_the_spec, setup),
		cmocka_unit_test_setup(connection_failures, setup),
		cmocka_unit_test_setup(credentials_flags, setup),
		cmocka_unit_test(key_text_is_aligned_and_clean),
		cmocka_unit_test(key_json_has_every_field),
		cmocka_unit_test(times_and_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
