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
 *  - `key create --help` offered key specs kmsd refuses: every spec it
 *    offers now creates a key, with the usage the help gives it; another
 *    usage is refused before a request, saying which fits.
 *  - base64 wrapped at 76 columns (base64(1)'s default) was refused.
 *  - errors under --json were plain text: now one JSON object on stderr.
 *
 * And envelope encryption through kms encrypt/decrypt: files and pipes of
 * any size round trip; --mode auto picks a blob up to 4096 bytes and an
 * envelope message past it; every failure (wrong context, a changed byte,
 * a cut file, not a kms format, a disabled key, no kmsd) is one line, and
 * leaves no output file and an existing one as it was.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <dirent.h>
#include <errno.h>
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

/* The usage key create --help gives spec: the word after it on its line in
 * the --spec option's table (NULL when the table does not list it). */
static const char *offered_usage(const char *help, const char *spec, char *buf, size_t cap)
{
	const char *table = strstr(help, "\n  --spec SPEC ");
	assert_non_null(table);
	const char *end = strstr(table + 1, "\n  --"); /* the next option */
	assert_non_null(end);
	char row[64];
	snprintf(row, sizeof row, "\n                          %s ", spec);
	const char *at = strstr(table, row);
	if (!at || at > end)
		return NULL;
	at += strlen(row);
	while (*at == ' ')
		at++;
	size_t n = strcspn(at, " :(\n");
	assert_true(n > 0 && n < cap);
	memcpy(buf, at, n);
	buf[n] = '\0';
	return buf;
}

/* Every spec the help offers creates a key alone, with the usage the help
 * gives it (and ED25519 hsm-resident, as it says); that usage given too
 * also works; another usage is refused before a request, naming the one
 * that fits. A spec not offered is refused before a request. */
static void create_help_offers_only_what_kmsd_takes(void **state)
{
	(void)state;
	static const char *const specs[] = { "AES_256", "HMAC_SHA256", "ED25519", "ECC_P256" };
	struct run r = ADMIN_LOCAL("key", "create", "--help");
	expect(&r, 0, "--spec SPEC", "key create --help");
	char *help = r.out;
	size_t offered = 0;
	for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
		char usage[32];
		if (!offered_usage(help, specs[i], usage, sizeof usage)) {
			struct run no = ADMIN("key", "create", "--spec", specs[i]);
			expect(&no, 2, NULL, specs[i]);
			run_free(&no);
			continue;
		}
		offered++;
		struct run c = ADMIN("--json", "key", "create", "--spec", specs[i]);
		expect(&c, 0, NULL, specs[i]);
		json_t *j = parse_json(c.out, "key create --json");
		assert_string_equal(json_string_value(json_object_get(j, "key_spec")), specs[i]);
		assert_string_equal(json_string_value(json_object_get(j, "key_usage")), usage);
		assert_string_equal(json_string_value(json_object_get(j, "protection")),
		                    strcmp(specs[i], "ED25519") == 0 ? "HSM_RESIDENT" : "WRAPPED");
		json_decref(j);
		run_free(&c);
		c = ADMIN("key", "create", "--spec", specs[i], "--usage", usage);
		expect(&c, 0, NULL, usage);
		run_free(&c);
		const char *other = strcmp(usage, "ENCRYPT_DECRYPT") == 0 ? "SIGN_VERIFY"
		                                                          : "ENCRYPT_DECRYPT";
		c = ADMIN("key", "create", "--spec", specs[i], "--usage", other);
		expect(&c, 2, NULL, other);
		char why[128];
		snprintf(why, sizeof why, "%s keys are %s, not %s", specs[i], usage, other);
		if (!strstr(c.err, why))
			fail_msg("--spec %s --usage %s: refused without saying why: %s", specs[i],
			         other, c.err);
		run_free(&c);
	}
	assert_int_equal(offered, sizeof specs / sizeof specs[0]);
	if (!strstr(help, "always hsm-resident"))
		fail_msg("key create --help does not say ED25519 keys are hsm-resident: %s", help);
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

/* ---- envelope encryption ---- */

#define MAGIC "\x89kmsenv\n"
#define MAGIC_LEN 8
#define SEGMENT 65536 /* the default segment, plaintext bytes */
#define TAG 16
#define BIG (3u * 1024 * 1024 + 17) /* ~3 MiB: 48 full segments and a short one */

/* n bytes from a fixed generator into path (mode 0600): letters only when
 * text (stdout checks read the output as a string), else any byte. */
static void write_pattern(const char *path, size_t n, bool text, uint32_t seed)
{
	uint8_t *bytes = malloc(n ? n : 1);
	assert_non_null(bytes);
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		bytes[i] = text ? (uint8_t)('a' + x % 26) : (uint8_t)x;
	}
	if (n > 0 && !text && bytes[0] == 0x89)
		bytes[0] = 0; /* never the magic's first byte by chance */
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	for (size_t done = 0; done < n;) {
		ssize_t w = write(fd, bytes + done, n - done);
		assert_true(w > 0);
		done += (size_t)w;
	}
	assert_int_equal(close(fd), 0);
	free(bytes);
}

static void write_bytes(const char *path, const uint8_t *bytes, size_t n)
{
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, bytes, n), (ssize_t)n);
	assert_int_equal(close(fd), 0);
}

/* Fails unless files a and b hold the same bytes. */
static void expect_same(const char *a, const char *b)
{
	size_t la = 0, lb = 0;
	char *x = harness_read_file(a, &la), *y = harness_read_file(b, &lb);
	assert_non_null(x);
	assert_non_null(y);
	if (la != lb || memcmp(x, y, la) != 0)
		fail_msg("%s (%zu bytes) and %s (%zu bytes) differ", a, la, b, lb);
	free(x);
	free(y);
}

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

/* Fails unless text is exactly one line holding needle. */
static void expect_one_line(const char *text, const char *needle, const char *what)
{
	const char *nl = strchr(text, '\n');
	if (!nl || nl[1] != '\0' || !strstr(text, needle))
		fail_msg("%s: wanted one line with \"%s\", got: %s", what, needle, text);
}

static bool starts_with_magic(const char *path)
{
	size_t len = 0;
	char *bytes = harness_read_file(path, &len);
	assert_non_null(bytes);
	bool yes = len >= MAGIC_LEN && memcmp(bytes, MAGIC, MAGIC_LEN) == 0;
	free(bytes);
	return yes;
}

static size_t file_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (size_t)st.st_size;
}

/* The header's length of a message sealing n bytes in default segments. */
static size_t header_len(const char *message, size_t n)
{
	size_t segments = n == 0 ? 1 : (n + SEGMENT - 1) / SEGMENT;
	size_t size = file_size(message);
	assert_true(size > n + segments * TAG);
	return size - n - segments * TAG;
}

static void envelope_round_trips_files_of_any_size(void **state)
{
	(void)state;
	char key_id[35], plain[700], sealed[700], back[700], name[64];
	assert_true(harness_create_key(&H, "alias/cli-env", key_id));
	static const size_t sizes[] = { 0, 5000, BIG };
	for (size_t i = 0; i < 3; i++) {
		size_t n = sizes[i];
		snprintf(name, sizeof name, "env-%zu.bin", n);
		path_in(plain, sizeof plain, name);
		snprintf(name, sizeof name, "env-%zu.kms", n);
		path_in(sealed, sizeof sealed, name);
		snprintf(name, sizeof name, "env-%zu.out", n);
		path_in(back, sizeof back, name);
		write_pattern(plain, n, false, (uint32_t)n);

		struct run r = KMS("encrypt", "--key", "alias/cli-env", "--context", "purpose=scan",
		                   "-i", plain, "-o", sealed);
		expect(&r, 0, NULL, "encrypt -i -o");
		/* Not a terminal: no progress line, nothing else either. */
		assert_string_equal(r.out, "");
		assert_string_equal(r.err, "");
		run_free(&r);
		assert_true(starts_with_magic(sealed));
		assert_int_equal(mode_of(sealed), 0600);
		size_t h = header_len(sealed, n);
		assert_true(h > 91 && h < 91 + 4185 + 200);

		r = KMS("decrypt", "--context", "purpose=scan", "--key", "alias/cli-env", "-i", sealed,
		        "-o", back);
		expect(&r, 0, NULL, "decrypt -i -o");
		assert_string_equal(r.err, "");
		run_free(&r);
		expect_same(plain, back);
		assert_int_equal(mode_of(back), 0600);
		print_message("%zu bytes: a %zu-byte message (header %zu bytes)\n", n,
		              file_size(sealed), h);
	}
	assert_int_equal(count_prefixed(H.dir, ".env-"), 0); /* no temporary file left */

	/* Without --context, the message's context must be empty: refused
	 * before kmsd is asked, with the message's keys and what to give. */
	struct run r = KMS("decrypt", "-i", sealed, "-o", back);
	expect(&r, 2, NULL, "decrypt without its context");
	expect_one_line(r.err, "(the message's keys: purpose); give its exact context with "
	                "--context k=v (or --any-context", "decrypt without its context");
	run_free(&r);
	r = KMS("decrypt", "--any-context", "--context", "purpose=scan", "-i", sealed, "-o", back);
	expect(&r, 2, NULL, "--any-context with --context");
	run_free(&r);

	/* --any-context: the message's own context is used. --json: a
	 * summary on stdout, the plaintext in the file. */
	r = KMS("decrypt", "--any-context", "-i", sealed, "-o", back, "--json");
	expect(&r, 0, NULL, "decrypt --json");
	json_t *j = parse_json(r.out, "decrypt --json");
	assert_string_equal(json_string_value(json_object_get(j, "format")), "envelope");
	assert_string_equal(json_string_value(json_object_get(j, "key_id")), key_id);
	assert_int_equal(json_integer_value(json_object_get(j, "plaintext_bytes")), BIG);
	json_decref(j);
	run_free(&r);
	expect_same(plain, back);
}

/* A script for bash: "$1".. are the arguments after it. */
static struct run bash_run(const char *script, const char *const *args)
{
	const char *argv[16] = { "-c", script, "bash" };
	size_t n = 3;
	for (size_t i = 0; args[i]; i++) {
		assert_true(n < 15);
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	return cli_run("bash", NULL, false, argv);
}

static void envelope_streams_through_pipes(void **state)
{
	(void)state;
	char key_id[35], plain[700], mid[700], back[700], name[64];
	assert_true(harness_create_key(&H, "alias/cli-pipe", key_id));
	/* stdin and stdout are pipes: no size to ask, so 4097 bytes read say
	 * which mode auto picks. */
	static const char script[] =
		"set -o pipefail; cat \"$1\" | \"$2\" encrypt --key \"$3\" --context purpose=pipe "
		"--endpoint \"$4\" --timeout 10000 | cat > \"$5\" && cat \"$5\" | \"$2\" decrypt "
		"--context purpose=pipe --endpoint \"$4\" --timeout 10000 | cat > \"$6\"";
	static const size_t sizes[] = { 100, 5000, BIG };
	for (size_t i = 0; i < 3; i++) {
		size_t n = sizes[i];
		snprintf(name, sizeof name, "pipe-%zu.bin", n);
		path_in(plain, sizeof plain, name);
		snprintf(name, sizeof name, "pipe-%zu.mid", n);
		path_in(mid, sizeof mid, name);
		snprintf(name, sizeof name, "pipe-%zu.out", n);
		path_in(back, sizeof back, name);
		write_pattern(plain, n, false, (uint32_t)n + 7);
		struct run r = bash_run(script, (const char *const[]){ plain, bin_env("KMS_TEST_KMS"),
		                                                      key_id, H.ipc_url, mid, back,
		                                                      NULL });
		expect(&r, 0, NULL, "encrypt | decrypt");
		assert_string_equal(r.err, "");
		run_free(&r);
		expect_same(plain, back);
		/* 100 bytes: a base64 blob; more: an envelope message. */
		assert_true(starts_with_magic(mid) == (n > 4096));
	}
}

/* Whether text is base64 and a newline, as kms prints a blob. */
static bool is_base64_line(const char *text)
{
	size_t n = strlen(text);
	if (n < 2 || text[n - 1] != '\n')
		return false;
	for (size_t i = 0; i + 1 < n; i++)
		if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=",
		            text[i]))
			return false;
	return true;
}

static void auto_mode_picks_a_blob_or_an_envelope(void **state)
{
	(void)state;
	char key_id[35], small[700], exact[700], over[700], out[700], blob[700], back[700];
	assert_true(harness_create_key(&H, "alias/cli-auto", key_id));
	path_in(small, sizeof small, "auto-100.bin");
	path_in(exact, sizeof exact, "auto-4096.bin");
	path_in(over, sizeof over, "auto-4097.bin");
	path_in(out, sizeof out, "auto.out");
	path_in(blob, sizeof blob, "auto.b64");
	path_in(back, sizeof back, "auto.back");
	write_pattern(small, 100, false, 100);
	write_pattern(exact, 4096, false, 4096);
	write_pattern(over, 4097, false, 4097);

	/* 100 and 4096 bytes: Encrypt, a base64 blob on stdout as always. */
	const char *const direct[] = { small, exact };
	for (size_t i = 0; i < 2; i++) {
		struct run r = KMS("encrypt", "--key", key_id, "-i", direct[i]);
		expect(&r, 0, NULL, "encrypt of a small file");
		if (!is_base64_line(r.out))
			fail_msg("not a base64 blob: %s", r.out);
		write_file(blob, r.out, 0600);
		run_free(&r);
		r = KMS("decrypt", "-i", blob, "-o", back);
		expect(&r, 0, NULL, "decrypt of the blob");
		run_free(&r);
		expect_same(direct[i], back);
	}
	/* A blob: kmsd re-encrypts it. */
	struct run r = KMS("re-encrypt", "-i", blob);
	expect(&r, 0, NULL, "re-encrypt of the blob");
	assert_true(is_base64_line(r.out));
	run_free(&r);

	/* 4097 bytes: an envelope message. */
	r = KMS("encrypt", "--key", key_id, "-i", over, "-o", out);
	expect(&r, 0, NULL, "encrypt of 4097 bytes");
	run_free(&r);
	assert_true(starts_with_magic(out));
	r = KMS("re-encrypt", "-i", out);
	expect(&r, 2, NULL, "re-encrypt of a message");
	expect_one_line(r.err, "only a ciphertext blob", "re-encrypt of a message");
	run_free(&r);

	/* --mode envelope: an envelope message even for 100 bytes. */
	r = KMS("encrypt", "--key", key_id, "-i", small, "-o", out, "--mode", "envelope");
	expect(&r, 0, NULL, "encrypt --mode envelope");
	run_free(&r);
	assert_true(starts_with_magic(out));
	r = KMS("decrypt", "-i", out, "-o", back);
	expect(&r, 0, NULL, "decrypt of a small message");
	run_free(&r);
	expect_same(small, back);

	/* --mode direct: Encrypt's limit, one line saying what takes more, and
	 * no output file. */
	unlink(out);
	r = KMS("encrypt", "--key", key_id, "-i", over, "-o", out, "--mode", "direct");
	expect(&r, 2, NULL, "encrypt --mode direct of 4097 bytes");
	expect_one_line(r.err, "use --mode envelope", "--mode direct of 4097 bytes");
	run_free(&r);
	assert_false(exists(out));
	r = KMS("encrypt", "--key", key_id, "-i", exact, "-o", out, "--mode", "direct", "--raw");
	expect(&r, 0, NULL, "encrypt --mode direct --raw of 4096 bytes");
	run_free(&r);
	assert_false(starts_with_magic(out));
	r = KMS("decrypt", "-i", out, "--raw-in", "-o", back);
	expect(&r, 0, NULL, "decrypt --raw-in");
	run_free(&r);
	expect_same(exact, back);
}

/* Runs kms decrypt ARGS -i in -o out and expects exit code with one line
 * holding needle on stderr, and no out (nor a temporary file beside it). */
static void expect_decrypt_fails(const char *in, const char *out, int code, const char *needle,
                                 const char *what)
{
	struct run r = KMS("decrypt", "--context", "purpose=scan", "-i", in, "-o", out);
	expect(&r, code, NULL, what);
	expect_one_line(r.err, needle, what);
	print_message("%s: %s", what, r.err);
	run_free(&r);
	assert_false(exists(out));
	const char *slash = strrchr(out, '/');
	char prefix[128];
	snprintf(prefix, sizeof prefix, ".%s.", slash + 1);
	assert_int_equal(count_prefixed(H.dir, prefix), 0);
}

/* A decrypt killed half-way (SIGKILL: no handler can run) leaves nothing
 * beside its target: the output is an unnamed file until it is whole. The
 * message goes through a FIFO held open, so kms is inside the message
 * (3 MiB read, the rest not sent) when it is killed; then a file from
 * /proc, which says it is 0 bytes long and is not, is sealed whole. */
static void envelope_interrupted_leaves_nothing(void **state)
{
	(void)state;
	char key_id[35], plain[700], sealed[700], fifo[700], out[700], back[700];
	assert_true(harness_create_key(&H, "alias/cli-kill", key_id));
	path_in(plain, sizeof plain, "kill.bin");
	path_in(sealed, sizeof sealed, "kill.kms");
	path_in(fifo, sizeof fifo, "kill.fifo");
	path_in(out, sizeof out, "kill.out");
	write_pattern(plain, BIG, true, 77);
	struct run r = KMS("encrypt", "--key", key_id, "-i", plain, "-o", sealed);
	expect(&r, 0, NULL, "encrypt");
	run_free(&r);

	static const char script[] =
		"set -e; mkfifo \"$3\"; "
		"\"$1\" decrypt --quiet -i \"$3\" -o \"$4\" --endpoint \"$5\" & pid=$!; "
		"exec 3>\"$3\"; head -c 3145728 \"$2\" >&3; "
		"kill -KILL $pid; wait $pid || true; exec 3>&-; rm -f \"$3\"";
	r = bash_run(script, (const char *const[]){ bin_env("KMS_TEST_KMS"), sealed, fifo, out,
	                                           H.ipc_url, NULL });
	expect(&r, 0, NULL, "decrypt killed half-way");
	run_free(&r);
	assert_false(exists(out));
	assert_int_equal(count_prefixed(H.dir, ".kill.out."), 0);

	/* /proc/version: 0 bytes by its size, some by its content. */
	path_in(sealed, sizeof sealed, "proc.kms");
	path_in(back, sizeof back, "proc.out");
	r = KMS("encrypt", "--key", key_id, "--mode", "envelope", "-i", "/proc/version", "-o",
	        sealed);
	expect(&r, 0, NULL, "encrypt /proc/version");
	run_free(&r);
	r = KMS("decrypt", "-i", sealed, "-o", back);
	expect(&r, 0, NULL, "decrypt /proc/version's message");
	run_free(&r);
	size_t len = 0;
	char *text = harness_read_file(back, &len);
	assert_non_null(text);
	assert_true(len > 0);
	assert_non_null(strstr(text, "Linux"));
	free(text);
}

static void envelope_failures_leave_no_output(void **state)
{
	(void)state;
	char key_id[35], plain[700], sealed[700], bad[700], out[700], existing[700];
	assert_true(harness_create_key(&H, "alias/cli-env-bad", key_id));
	path_in(plain, sizeof plain, "bad.txt");
	path_in(sealed, sizeof sealed, "bad.kms");
	path_in(bad, sizeof bad, "bad-copy.kms");
	path_in(out, sizeof out, "bad.out");
	path_in(existing, sizeof existing, "bad-existing.out");
	write_pattern(plain, BIG, true, 42);
	struct run r = KMS("encrypt", "--key", key_id, "--context", "purpose=scan", "-i", plain,
	                   "-o", sealed);
	expect(&r, 0, NULL, "encrypt");
	run_free(&r);
	size_t len = 0;
	uint8_t *message = (uint8_t *)harness_read_file(sealed, &len);
	assert_non_null(message);
	size_t h = header_len(sealed, BIG);

	/* The wrong context: refused before kmsd is asked; no file, and an
	 * existing one as it was (content and mode). */
	r = KMS("decrypt", "--context", "purpose=other", "-i", sealed, "-o", out);
	expect(&r, 2, NULL, "decrypt with the wrong context");
	expect_one_line(r.err, "encryption context is not the one required", "wrong context");
	assert_non_null(strstr(r.err, "purpose")); /* the message's keys, never its values */
	run_free(&r);
	assert_false(exists(out));
	write_file(existing, "keep me\n", 0644);
	r = KMS("decrypt", "--context", "purpose=other", "-i", sealed, "-o", existing);
	expect(&r, 2, NULL, "decrypt with the wrong context over a file");
	run_free(&r);
	size_t kept_len = 0;
	char *kept = harness_read_file(existing, &kept_len);
	assert_non_null(kept);
	assert_string_equal(kept, "keep me\n");
	free(kept);
	assert_int_equal(mode_of(existing), 0644);
	assert_int_equal(count_prefixed(H.dir, ".bad-existing.out."), 0);

	/* One byte changed in the body, half way: the segment is named. */
	size_t at = h + (len - h) / 2;
	message[at] ^= 0x01;
	write_bytes(bad, message, len);
	expect_decrypt_fails(bad, out, 2, "does not authenticate", "a changed byte");
	r = KMS("decrypt", "--context", "purpose=scan", "-i", bad, "-o", out);
	assert_non_null(strstr(r.err, "segment 24 ")); /* (at - h) / (SEGMENT + TAG) */
	run_free(&r);

	/* The same to stdout: what verified went out first (whole 1 MiB
	 * writes), and stderr says how much of it is to be discarded. */
	r = KMS("decrypt", "--context", "purpose=scan", "-i", bad);
	expect(&r, 2, NULL, "a changed byte, to stdout");
	size_t out_len = strlen(r.out);
	assert_true(out_len > 0 && out_len % (1u << 20) == 0);
	size_t plain_len = 0;
	char *plain_bytes = harness_read_file(plain, &plain_len);
	assert_non_null(plain_bytes);
	assert_memory_equal(r.out, plain_bytes, out_len); /* in order, as it was */
	free(plain_bytes);
	char said[160];
	snprintf(said, sizeof said, "kms: the %zu bytes already written to standard output are "
	         "invalid plaintext and must be discarded\n", out_len);
	const char *second = strchr(r.err, '\n');
	if (!strstr(r.err, "segment 24 does not authenticate") || !second ||
	    strcmp(second + 1, said) != 0)
		fail_msg("wanted the failure, then \"%s\"; got: %s", said, r.err);
	run_free(&r);
	message[at] ^= 0x01;

	/* Cut after segment 9 of 49 (a segment boundary), and inside the
	 * header: truncated. */
	write_bytes(bad, message, h + 10 * (SEGMENT + TAG));
	expect_decrypt_fails(bad, out, 2, "truncated", "cut after a segment");
	write_bytes(bad, message, 50);
	expect_decrypt_fails(bad, out, 2, "truncated", "cut in the header");
	/* Cut inside a segment: that segment does not authenticate. */
	write_bytes(bad, message, len - 1000);
	expect_decrypt_fails(bad, out, 2, "segment 47 ", "cut inside a segment");

	/* Not a kms format: binary, and text that is not base64. */
	write_pattern(bad, 5000, false, 9);
	expect_decrypt_fails(bad, out, 2, "not an envelope message", "random bytes");
	write_file(bad, "hello, world!\n", 0600);
	expect_decrypt_fails(bad, out, 2, "not an envelope message and not base64", "plain text");

	/* No kmsd: exit 3, no file. */
	r = cli_run(bin_env("KMS_TEST_KMS"), NULL, false,
	            (const char *const[]){ "decrypt", "--context", "purpose=scan", "-i", sealed,
	                                   "-o", out, "--endpoint",
	                                   "ipc:///nonexistent/kms.sock", "--timeout", "500",
	                                   NULL });
	expect(&r, 3, NULL, "decrypt with no kmsd");
	expect_one_line(r.err, "is kmsd running", "no kmsd");
	run_free(&r);
	assert_false(exists(out));
	free(message);
}

static void envelope_refused_on_a_disabled_key(void **state)
{
	(void)state;
	char key_id[35], plain[700], sealed[700], out[700];
	assert_true(harness_create_key(&H, "alias/cli-env-off", key_id));
	path_in(plain, sizeof plain, "off.bin");
	path_in(sealed, sizeof sealed, "off.kms");
	path_in(out, sizeof out, "off.out");
	write_pattern(plain, 5000, false, 5);
	struct run r = KMS("encrypt", "--key", key_id, "-i", plain, "-o", sealed);
	expect(&r, 0, NULL, "encrypt");
	run_free(&r);

	r = ADMIN("key", "disable", key_id);
	expect(&r, 0, NULL, "key disable");
	run_free(&r);
	r = KMS("decrypt", "-i", sealed, "-o", out);
	expect(&r, 1, NULL, "decrypt under a disabled key");
	expect_one_line(r.err, "FAILED_PRECONDITION", "decrypt under a disabled key");
	assert_non_null(strstr(r.err, "DISABLED"));
	assert_non_null(strstr(r.err, "kms-admin key enable"));
	print_message("disabled: %s", r.err);
	run_free(&r);
	assert_false(exists(out));
	r = KMS("encrypt", "--key", key_id, "-i", plain, "-o", out);
	expect(&r, 1, NULL, "encrypt under a disabled key");
	expect_one_line(r.err, "DISABLED", "encrypt under a disabled key");
	run_free(&r);
	assert_false(exists(out));

	r = ADMIN("key", "enable", key_id);
	expect(&r, 0, NULL, "key enable");
	run_free(&r);
	r = KMS("decrypt", "-i", sealed, "-o", out);
	expect(&r, 0, NULL, "decrypt once enabled");
	run_free(&r);
	expect_same(plain, out);
}

/* Everything readable on pty master fd now (it is non-blocking). */
static size_t drain(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	for (int i = 0; i < 1000 && n + 1 < cap; i++) {
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	return n;
}

static void envelope_never_written_to_a_terminal(void **state)
{
	(void)state;
	char key_id[35], plain[700], out[700], seen[4096];
	int master = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK);
	if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0 || !ptsname(master)) {
		print_message("no pseudo-terminal here (%s): the terminal checks are skipped\n",
		              strerror(errno));
		if (master >= 0)
			close(master);
		return;
	}
	char tty[128];
	snprintf(tty, sizeof tty, "%s", ptsname(master));
	/* Held open here too, so what kms writes stays readable after it exits. */
	int slave = open(tty, O_RDWR | O_NOCTTY);
	assert_true(slave >= 0);
	assert_true(harness_create_key(&H, "alias/cli-tty", key_id));
	path_in(plain, sizeof plain, "tty.bin");
	path_in(out, sizeof out, "tty.kms");
	write_pattern(plain, BIG, false, 3);

	/* stdout a terminal and no -o: refused, nothing written to it. */
	struct run r = bash_run("\"$1\" encrypt --key \"$2\" -i \"$3\" --endpoint \"$4\" > \"$5\"",
	                        (const char *const[]){ bin_env("KMS_TEST_KMS"), key_id, plain,
	                                               H.ipc_url, tty, NULL });
	expect(&r, 2, NULL, "encrypt to a terminal");
	expect_one_line(r.err, "refusing to write a binary envelope message to a terminal",
	                "encrypt to a terminal");
	run_free(&r);
	assert_int_equal(drain(master, seen, sizeof seen), 0);

	/* stderr a terminal: a progress line may be drawn (the file may be
	 * done before the first redraw); whatever was drawn is cleared at the
	 * end. With --quiet, nothing. */
	static const char script[] =
		"\"$1\" encrypt --key \"$2\" -i \"$3\" -o \"$4\" --endpoint \"$5\" $6 2> \"$7\"";
	r = bash_run(script, (const char *const[]){ bin_env("KMS_TEST_KMS"), key_id, plain, out,
	                                            H.ipc_url, "", tty, NULL });
	expect(&r, 0, NULL, "encrypt with stderr a terminal");
	run_free(&r);
	size_t n = drain(master, seen, sizeof seen);
	if (n > 0 && (n < 4 || strcmp(seen + n - 4, "\r\033[K") != 0 || !strstr(seen, " MB/s")))
		fail_msg("the progress line was not cleared: %s", seen);
	print_message("progress on the terminal: %zu bytes written, then cleared\n", n);
	r = bash_run(script, (const char *const[]){ bin_env("KMS_TEST_KMS"), key_id, plain, out,
	                                            H.ipc_url, "--quiet", tty, NULL });
	expect(&r, 0, NULL, "encrypt --quiet with stderr a terminal");
	run_free(&r);
	assert_int_equal(drain(master, seen, sizeof seen), 0);
	close(slave);
	close(master);
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
		cmocka_unit_test(envelope_round_trips_files_of_any_size),
		cmocka_unit_test(envelope_streams_through_pipes),
		cmocka_unit_test(auto_mode_picks_a_blob_or_an_envelope),
		cmocka_unit_test(envelope_failures_leave_no_output),
		cmocka_unit_test(envelope_interrupted_leaves_nothing),
		cmocka_unit_test(envelope_refused_on_a_disabled_key),
		cmocka_unit_test(envelope_never_written_to_a_terminal),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
