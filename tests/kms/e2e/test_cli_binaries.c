/*
 * The kms and kms-admin binaries against a real kmsd, run the way a new
 * user runs them (a process, files, exit codes, stdout and stderr apart),
 * for what that user met:
 *
 *  - `kms decrypt --out existing.txt` kept the file's 0644: the plaintext
 *    was world-readable. Every --out now replaces the target with a new file
 *    of mode 0600; a failed write leaves neither the target changed nor a
 *    temporary file behind.
 *  - `key untag KEY nosuchtag` said "1 tag removed": now kmsd's count.
 *  - `"encryptions": 65536` after one encrypt: the field counts GCM
 *    reservations, and says so ("gcm_reserved").
 *  - `key create --help` offered key specs kmsd refuses: every spec and
 *    usage it offers now creates a key; the others are refused before a
 *    request, saying so.
 *  - base64 wrapped at 76 columns (base64(1)'s default) was refused.
 *  - errors under --json were plain text: now one JSON object on stderr.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"
#include "tests/support/run_bin.h"

#define CLI_WAIT_MS 30000
#define PLAINTEXT "4111 1111 1111 1111"

static harness H;

struct run {
	int code;
	char *out;
	char *err;
};

/* Runs bin with args (NULL-terminated) and, when it talks to kmsd, the
 * endpoint; stdin from in_path (or /dev/null). Bounded: killed after
 * CLI_WAIT_MS. */
static struct run cli_run(const char *bin, const char *in_path, bool connect,
                          const char *const *args)
{
	const char *argv[32];
	size_t n = 0;
	for (size_t i = 0; args[i]; i++) {
		assert_true(n < 27);
		argv[n++] = args[i];
	}
	if (connect) {
		argv[n++] = "--endpoint";
		argv[n++] = H.ipc_url;
		argv[n++] = "--timeout";
		argv[n++] = "10000";
	}
	argv[n] = NULL;
	run_bin_options o = { .in_path = in_path, .wait_ms = CLI_WAIT_MS };
	run_bin_result r = run_bin(bin, argv, &o);
	return (struct run){ .code = r.code, .out = r.out, .err = r.err };
}

static const char *bin_env(const char *name)
{
	const char *bin = getenv(name);
	assert_non_null(bin);
	return bin;
}

#define KMS(...) cli_run(bin_env("KMS_TEST_KMS"), NULL, true, (const char *const[]){ __VA_ARGS__, NULL })
#define KMS_IN(in, ...) cli_run(bin_env("KMS_TEST_KMS"), in, true, (const char *const[]){ __VA_ARGS__, NULL })
#define ADMIN(...) cli_run(bin_env("KMS_TEST_KMS_ADMIN"), NULL, true, (const char *const[]){ __VA_ARGS__, NULL })
#define ADMIN_LOCAL(...) cli_run(bin_env("KMS_TEST_KMS_ADMIN"), NULL, false, (const char *const[]){ __VA_ARGS__, NULL })

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

/* Fails unless r exited code with in_out in stdout (NULL: anything). */
static void expect(struct run *r, int code, const char *in_out, const char *what)
{
	if (r->code != code || (in_out && !strstr(r->out, in_out)))
		fail_msg("%s: exit %d (want %d)\nstdout: %s\nstderr: %s\nwanted stdout~\"%s\"", what,
		         r->code, code, r->out, r->err, in_out ? in_out : "");
}

static void path_in(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", H.dir, name);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0); /* whatever the umask */
	assert_int_equal(close(fd), 0);
}

static mode_t mode_of(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

/* Entries of dir whose name starts with prefix (the CLI's temporary files
 * are ".NAME.XXXXXX"). */
static int count_prefixed(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
			n++;
	closedir(d);
	return n;
}

static json_t *parse_json(const char *text, const char *what)
{
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);
	if (!j)
		fail_msg("%s is not JSON (%s): %s", what, jerr.text, text);
	return j;
}

static int start(void **state)
{
	(void)state;
	harness_options o = { 0 };
	umask(022); /* the usual one: a file made without care is world-readable */
	return harness_start(&H, &o) ? 0 : -1;
}

static int stop(void **state)
{
	(void)state;
	return harness_stop(&H) == 0 ? 0 : -1;
}

/* ---- every output file is 0600, replaced whole ---- */

static void decrypt_out_replaces_a_world_readable_file_with_0600(void **state)
{
	(void)state;
	char key_id[35], plain[700], blob[700], existing[700], dir_target[700];
	assert_true(harness_create_key(&H, "alias/cli-out", key_id));
	path_in(plain, sizeof plain, "card.txt");
	path_in(blob, sizeof blob, "card.b64");
	path_in(existing, sizeof existing, "existing.txt");
	write_file(plain, PLAINTEXT, 0644);

	/* The blob file is made by the same helper: 0600 too. */
	write_file(blob, "an older blob that is to be replaced\n", 0644);
	struct run r = KMS("encrypt", "--key", "alias/cli-out", "--context", "purpose=card",
	                   "--in", plain, "--out", blob);
	expect(&r, 0, NULL, "encrypt --out");
	run_free(&r);
	assert_int_equal(mode_of(blob), 0600);

	/* As met: existing.txt is 0644 and holds something else, longer. */
	write_file(existing, "other content, longer than the card number it will hold\n", 0644);
	assert_int_equal(mode_of(existing), 0644);
	r = KMS("decrypt", "--context", "purpose=card", "--in", blob, "--out", existing);
	expect(&r, 0, NULL, "decrypt --out existing.txt");
	run_free(&r);
	assert_int_equal(mode_of(existing), 0600);
	size_t len = 0;
	char *got = harness_read_file(existing, &len);
	assert_non_null(got);
	assert_int_equal(len, strlen(PLAINTEXT));
	assert_memory_equal(got, PLAINTEXT, len);
	free(got);

	/* data-key --out: the plaintext data key, the same way. */
	write_file(existing, "x\n", 0644);
	r = KMS("data-key", "--key", "alias/cli-out", "--out", existing);
	expect(&r, 0, NULL, "data-key --out existing.txt");
	run_free(&r);
	assert_int_equal(mode_of(existing), 0600);
	got = harness_read_file(existing, &len);
	assert_non_null(got);
	assert_true(len > 44 + 1); /* the key's base64 line, then the blob's */
	free(got);

	/* A write that cannot finish (a directory is in the way of rename)
	 * fails with exit 2, leaves the target alone and no temporary file. */
	path_in(dir_target, sizeof dir_target, "a-directory");
	assert_int_equal(mkdir(dir_target, 0755), 0);
	r = KMS("decrypt", "--context", "purpose=card", "--in", blob, "--out", dir_target);
	expect(&r, 2, NULL, "decrypt --out DIRECTORY");
	if (!strstr(r.err, "cannot write"))
		fail_msg("no reason given: %s", r.err);
	run_free(&r);
	struct stat st;
	assert_int_equal(stat(dir_target, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(count_prefixed(H.dir, ".a-directory."), 0);
	assert_int_equal(count_prefixed(H.dir, ".existing.txt."), 0);
	assert_int_equal(count_prefixed(H.dir, ".card.b64."), 0);

	/* /dev/null is not a file to replace: written in place. */
	r = KMS("decrypt", "--context", "purpose=card", "--in", blob, "--out", "/dev/null");
	expect(&r, 0, NULL, "decrypt --out /dev/null");
	run_free(&r);
	assert_int_equal(stat("/dev/null", &st), 0);
	assert_true(S_ISCHR(st.st_mode));
}

/* ---- key untag: what was removed ---- */

static void untag_reports_what_kmsd_removed(void **state)
{
	(void)state;
	char key_id[35];
	assert_true(harness_create_key(&H, "alias/cli-untag", key_id));
	struct run r = ADMIN("key", "tag", key_id, "a=1", "b=2");
	expect(&r, 0, "2 tags set", "key tag");
	run_free(&r);

	/* As met: a tag the key does not have. */
	r = ADMIN("key", "untag", key_id, "nosuchtag");
	expect(&r, 0, ": 0 tags removed", "key untag nosuchtag");
	run_free(&r);
	r = ADMIN("key", "untag", key_id, "nosuchtag", "--json");
	expect(&r, 0, NULL, "key untag nosuchtag --json");
	json_t *j = parse_json(r.out, "untag --json");
	assert_true(json_is_integer(json_object_get(j, "untagged")));
	assert_int_equal(json_integer_value(json_object_get(j, "untagged")), 0);
	json_decref(j);
	run_free(&r);

	/* One present (named twice) and one absent: 1. */
	r = ADMIN("key", "untag", key_id, "a", "nosuchtag", "a");
	expect(&r, 0, ": 1 tag removed", "key untag a nosuchtag a");
	run_free(&r);
	r = ADMIN("key", "describe", key_id, "--json");
	expect(&r, 0, NULL, "key describe");
	j = parse_json(r.out, "describe --json");
	json_t *tags = json_object_get(j, "tags");
	assert_int_equal(json_object_size(tags), 1);
	assert_string_equal(json_string_value(json_object_get(tags, "b")), "2");
	json_decref(j);
	run_free(&r);
}

/* ---- describe: reservations, named so ---- */

static void describe_names_gcm_reservations_not_uses(void **state)
{
	(void)state;
	char key_id[35], plain[700];
	assert_true(harness_create_key(&H, "alias/cli-gcm", key_id));
	path_in(plain, sizeof plain, "gcm.txt");
	write_file(plain, PLAINTEXT, 0600);
	struct run r = KMS("encrypt", "--key", key_id, "--in", plain);
	expect(&r, 0, NULL, "one encrypt");
	run_free(&r);

	r = ADMIN("key", "describe", key_id, "--json");
	expect(&r, 0, NULL, "describe --json");
	if (strstr(r.out, "\"encryptions\""))
		fail_msg("describe --json still says \"encryptions\": %s", r.out);
	json_t *j = parse_json(r.out, "describe --json");
	json_t *v = json_array_get(json_object_get(j, "versions"), 0);
	assert_non_null(v);
	json_t *reserved = json_object_get(v, "gcm_reserved");
	assert_true(json_is_integer(reserved));
	/* One use, a whole block reserved (docs/gcm-limits.md): at least 1. */
	assert_true(json_integer_value(reserved) >= 1);
	print_message("one encrypt: gcm_reserved = %lld\n",
	              (long long)json_integer_value(reserved));
	json_decref(j);
	run_free(&r);

	r = ADMIN("key", "describe", key_id);
	expect(&r, 0, "GCM uses reserved", "describe");
	if (strstr(r.out, "encryptions"))
		fail_msg("describe still says \"encryptions\": %s", r.out);
	run_free(&r);
}

/* ---- key create --help: only what kmsd takes ---- */

/* Every name of names[] that appears on the help line starting with
 * option, created with; the others refused locally. */
static void check_offered(const char *help, const char *option, const char *const *names,
                          size_t n_names, const char *flag)
{
	const char *line = strstr(help, option);
	assert_non_null(line);
	const char *end = strstr(line, "\n  --"); /* the option's lines */
	assert_non_null(end);
	size_t offered = 0;
	for (size_t i = 0; i < n_names; i++) {
		const char *at = strstr(line, names[i]);
		bool listed = at && at < end;
		struct run r = ADMIN("key", "create", flag, names[i]);
		if (listed) {
			offered++;
			expect(&r, 0, NULL, names[i]);
		} else {
			expect(&r, 2, NULL, names[i]);
			if (!strstr(r.err, "not supported yet"))
				fail_msg("%s %s: refused without saying why: %s", flag, names[i],
				         r.err);
		}
		run_free(&r);
	}
	assert_true(offered >= 1);
}

static void create_help_offers_only_what_kmsd_takes(void **state)
{
	(void)state;
	static const char *const specs[] = { "AES_256", "HMAC_SHA256", "ED25519", "ECC_P256" };
	static const char *const usages[] = { "ENCRYPT_DECRYPT", "GENERATE_VERIFY_MAC",
	                                      "SIGN_VERIFY" };
	struct run r = ADMIN_LOCAL("key", "create", "--help");
	expect(&r, 0, "--spec SPEC", "key create --help");
	check_offered(r.out, "--spec SPEC", specs, 4, "--spec");
	check_offered(r.out, "--usage USAGE", usages, 3, "--usage");
	run_free(&r);
}

/* ---- base64 wrapped at 76 columns ---- */

static void decrypt_takes_base64_wrapped_by_base64(void **state)
{
	(void)state;
	char key_id[35], plain[700], raw[700], wrapped[700], back[700];
	char text[201];
	assert_true(harness_create_key(&H, "alias/cli-b64", key_id));
	for (size_t i = 0; i < 200; i++)
		text[i] = (char)('a' + i % 26);
	text[200] = '\0';
	path_in(plain, sizeof plain, "long.txt");
	path_in(raw, sizeof raw, "long.bin");
	path_in(wrapped, sizeof wrapped, "long.b64");
	path_in(back, sizeof back, "long.out");
	write_file(plain, text, 0600);
	struct run r = KMS("encrypt", "--key", key_id, "--in", plain, "--raw", "--out", raw);
	expect(&r, 0, NULL, "encrypt --raw");
	run_free(&r);

	/* As met: base64(1), which wraps at 76 columns. */
	r = cli_run("/usr/bin/base64", NULL, false, (const char *const[]){ raw, NULL });
	expect(&r, 0, NULL, "base64");
	assert_non_null(strchr(r.out, '\n'));
	assert_true(strchr(r.out, '\n') - r.out == 76); /* it was wrapped */
	write_file(wrapped, r.out, 0600);
	run_free(&r);

	r = KMS("decrypt", "--in", wrapped, "--out", back);
	expect(&r, 0, NULL, "decrypt of wrapped base64");
	run_free(&r);
	size_t len = 0;
	char *got = harness_read_file(back, &len);
	assert_non_null(got);
	assert_int_equal(len, 200);
	assert_memory_equal(got, text, 200);
	free(got);

	/* And from stdin. */
	r = KMS_IN(wrapped, "decrypt");
	expect(&r, 0, text, "decrypt of wrapped base64 on stdin");
	run_free(&r);

	/* Still strict otherwise: a character outside the alphabet. */
	write_file(wrapped, "Zm9v\n*m9v\n", 0600);
	r = KMS("decrypt", "--in", wrapped);
	expect(&r, 2, NULL, "decrypt of bad base64");
	run_free(&r);
}

/* ---- errors under --json ---- */

static void json_errors_are_one_json_object(void **state)
{
	(void)state;
	/* kmsd says no. */
	struct run r = ADMIN("--json", "key", "describe", "alias/no-such-key");
	expect(&r, 1, NULL, "describe of a missing key");
	assert_string_equal(r.out, "");
	json_t *j = parse_json(r.err, "stderr");
	json_t *e = json_object_get(j, "error");
	assert_string_equal(json_string_value(json_object_get(e, "status")), "NOT_FOUND");
	assert_int_equal(json_integer_value(json_object_get(e, "exit_code")), 1);
	const char *message = json_string_value(json_object_get(e, "message"));
	assert_non_null(message);
	assert_non_null(strstr(message, "alias/no-such-key"));
	assert_int_equal(strchr(r.err, '\n') - r.err + 1, (long)strlen(r.err)); /* one line */
	json_decref(j);
	run_free(&r);

	/* --json after the command, and a usage error. */
	r = KMS("decrypt", "--context", "no-equals-sign", "--json");
	expect(&r, 2, NULL, "a bad --context");
	j = parse_json(r.err, "stderr");
	e = json_object_get(j, "error");
	assert_string_equal(json_string_value(json_object_get(e, "status")), "USAGE");
	assert_int_equal(json_integer_value(json_object_get(e, "exit_code")), 2);
	json_decref(j);
	run_free(&r);

	/* Without --json: plain text as before. */
	r = ADMIN("key", "describe", "alias/no-such-key");
	expect(&r, 1, NULL, "describe of a missing key, text");
	if (!strstr(r.err, "kms-admin: NOT_FOUND: ") || r.err[0] == '{')
		fail_msg("plain error changed: %s", r.err);
	run_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(decrypt_out_replaces_a_world_readable_file_with_0600),
		cmocka_unit_test(untag_reports_what_kmsd_removed),
		cmocka_unit_test(describe_names_gcm_reservations_not_uses),
		cmocka_unit_test(create_help_offers_only_what_kmsd_takes),
		cmocka_unit_test(decrypt_takes_base64_wrapped_by_base64),
		cmocka_unit_test(json_errors_are_one_json_object),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
