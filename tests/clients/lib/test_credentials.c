/*
 * Credentials files (kms/client.h, docs/request-signing.md "Credentials
 * file"): the parser on a good file and on each malformed form, with the
 * line it names and no byte of the file in any message; the loader's file
 * checks (mode, owner, symbolic link, not a regular file, size) on real
 * files in a private directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kms/client.h>

#define ID "AKAAAAAAAAAAAAAAAAAAAA"
#define HEX "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
/* Text that must never appear in a message: a piece of the secret. */
#define HEX_PIECE "5566778899aabbcc"

static const char good_text[] =
	"# kms credentials: principal payments-svc (keep this file secret)\n"
	"principal = payments-svc\n"
	"access_key_id = " ID "\n"
	"secret = " HEX "\n";

/* Parses text (len bytes) and expects KMS_INVALID_ARGUMENT with a message
 * holding want and no piece of the secret or of the offending text. */
static void refused(const char *text, size_t len, const char *want)
{
	kms_credentials c;
	kms_error err;
	kms_status st = kms_credentials_parse(text, len, "creds.txt", &c, &err);
	if (st != KMS_INVALID_ARGUMENT || !strstr(err.message, want))
		fail_msg("status %s, message \"%s\"; wanted INVALID_ARGUMENT and \"%s\"",
		         kms_status_name(st), err.message, want);
	assert_int_equal(err.origin, KMS_ERROR_LOCAL);
	assert_null(strstr(err.message, HEX_PIECE));
	assert_null(strstr(err.message, "SAUCE"));
	assert_null(c.secret);
	assert_string_equal(c.access_key_id, "");
}

#define REFUSED(text, want) refused((text), sizeof(text) - 1, (want))

static void good_file_parses(void **state)
{
	kms_credentials c;
	kms_error err;
	assert_int_equal(kms_credentials_parse(good_text, sizeof good_text - 1, "x", &c, &err),
	                 KMS_OK);
	assert_string_equal(c.principal, "payments-svc");
	assert_string_equal(c.access_key_id, ID);
	assert_non_null(c.secret);
	for (int i = 0; i < KMS_SIGN_SECRET_LEN; i++)
		assert_int_equal(c.secret[i], (uint8_t)((i % 16) * 0x11));
	kms_credentials_free(&c);
	assert_null(c.secret);
	kms_credentials_free(&c); /* a zeroed struct is fine */

	/* No principal, no final newline, blanks, tabs, comments anywhere,
	 * keys in another order, and any byte in a comment. */
	static const char loose[] = "\n  # comment \xc3\xa9\x01\n\tsecret\t=\t" HEX "  \n"
	                            "\n" "access_key_id=" ID;
	assert_int_equal(kms_credentials_parse(loose, sizeof loose - 1, NULL, &c, &err), KMS_OK);
	assert_string_equal(c.principal, "");
	assert_string_equal(c.access_key_id, ID);
	assert_int_equal(c.secret[31], 0xff);
	kms_credentials_free(&c);

	/* Exactly 4096 bytes: a comment pads the good text. */
	char big[KMS_CREDENTIALS_FILE_MAX + 1];
	size_t pad = KMS_CREDENTIALS_FILE_MAX - (sizeof good_text - 1);
	big[0] = '#';
	memset(big + 1, 'x', pad - 2);
	big[pad - 1] = '\n';
	memcpy(big + pad, good_text, sizeof good_text - 1);
	assert_int_equal(kms_credentials_parse(big, KMS_CREDENTIALS_FILE_MAX, NULL, &c, &err),
	                 KMS_OK);
	kms_credentials_free(&c);
	/* One byte more is refused. */
	char bigger[KMS_CREDENTIALS_FILE_MAX + 2];
	bigger[0] = '#';
	memset(bigger + 1, 'x', pad - 1);
	bigger[pad] = '\n';
	memcpy(bigger + pad + 1, good_text, sizeof good_text - 1);
	refused(bigger, KMS_CREDENTIALS_FILE_MAX + 1, "larger than 4096 bytes");
}

static void malformed_files_are_refused(void **state)
{
	/* Required keys. */
	REFUSED("secret = " HEX "\n", "has no access_key_id line");
	REFUSED("access_key_id = " ID "\n", "has no secret line");
	REFUSED("", "has no access_key_id line");
	REFUSED("# only a comment\n", "has no access_key_id line");
	/* Each key once. */
	REFUSED("access_key_id = " ID "\nsecret = " HEX "\nsecret = " HEX "\n",
	        "line 3 gives secret again");
	REFUSED("principal = a\nprincipal = a\naccess_key_id = " ID "\nsecret = " HEX "\n",
	        "line 2 gives principal again");
	/* Unknown keys, never repeated in the message. */
	REFUSED("access_key_id = " ID "\nsecret = " HEX "\nSAUCE = 1\n",
	        "line 3 has an unknown key");
	REFUSED("access_key_id = " ID "\nSecret = " HEX "\n", "line 2 has an unknown key");
	REFUSED("access key id = " ID "\n", "line 1 has an unknown key");
	REFUSED(" = " ID "\n", "line 1 has an unknown key");
	/* Not "key = value". */
	REFUSED("access_key_id " ID "\n", "line 1 is not \"key = value\"");
	/* Secrets. */
	REFUSED("access_key_id = " ID "\nsecret = " HEX "0\n", "line 2: secret must be 64");
	REFUSED("access_key_id = " ID "\nsecret = " HEX "00\n", "line 2: secret must be 64");
	REFUSED("access_key_id = " ID "\nsecret = 00112233445566778899aabbccddeeff"
	        "00112233445566778899aabbccddeef\n", "line 2: secret must be 64");
	REFUSED("access_key_id = " ID "\nsecret = 00112233445566778899aabbccddeeff"
	        "00112233445566778899aabbccddeefg\n", "line 2: secret must be 64");
	REFUSED("access_key_id = " ID "\nsecret = 00112233445566778899AABBCCDDEEFF"
	        "00112233445566778899aabbccddeeff\n", "line 2: secret must be 64 lowercase");
	REFUSED("access_key_id = " ID "\nsecret = 0011 2233445566778899aabbccddeeff"
	        "00112233445566778899aabbccddeeff\n", "line 2: secret must be 64");
	REFUSED("access_key_id = " ID "\nsecret =\n", "line 2: secret must be 64");
	/* Access key ids. */
	REFUSED("access_key_id = AKAAAAAAAAAAAAAAAAAAA\nsecret = " HEX "\n",
	        "line 1: access_key_id must be AK");
	REFUSED("access_key_id = AKAAAAAAAAAAAAAAAAAAAAA\nsecret = " HEX "\n",
	        "line 1: access_key_id must be AK");
	REFUSED("access_key_id = akaaaaaaaaaaaaaaaaaaaa\nsecret = " HEX "\n",
	        "line 1: access_key_id must be AK");
	REFUSED("access_key_id = GRAAAAAAAAAAAAAAAAAAAA\nsecret = " HEX "\n",
	        "line 1: access_key_id must be AK");
	REFUSED("access_key_id = AKAAAAAAAAAAAAAAAAAAA1\nsecret = " HEX "\n",
	        "line 1: access_key_id must be AK");
	REFUSED("access_key_id = AKAAAAAAAAAAAAAAAAAAA8\nsecret = " HEX "\n",
	        "line 1: access_key_id must be AK");
	/* Principal names. */
	REFUSED("principal =\naccess_key_id = " ID "\nsecret = " HEX "\n",
	        "line 1: principal must be 1..63");
	REFUSED("principal = a b\naccess_key_id = " ID "\nsecret = " HEX "\n",
	        "line 1: principal must be 1..63");
	REFUSED("principal = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
	        "access_key_id = " ID "\nsecret = " HEX "\n",
	        "line 1: principal must be 1..63");
	/* Bytes: CR (CRLF line ends), NUL, control and non-ASCII bytes. */
	REFUSED("access_key_id = " ID "\r\nsecret = " HEX "\r\n", "line 1 ends with CR");
	REFUSED("access_key_id = " ID "\nsecret = " HEX "\r\n", "line 2 ends with CR");
	REFUSED("# a comment\r\naccess_key_id = " ID "\n", "line 1 ends with CR");
	REFUSED("access_key_id = " ID "\nsecret = " HEX "\n\0", "holds a NUL byte");
	REFUSED("access_key_id = " ID "\0\nsecret = " HEX "\n", "holds a NUL byte");
	REFUSED("access_key_id = " ID "\x01\nsecret = " HEX "\n", "line 1 holds a control");
	REFUSED("principal = caf\xc3\xa9\naccess_key_id = " ID "\nsecret = " HEX "\n",
	        "line 1 holds a control or non-ASCII byte");

	/* Arguments. */
	kms_error err;
	assert_int_equal(kms_credentials_parse("x", 1, NULL, NULL, &err), KMS_INVALID_ARGUMENT);
	kms_credentials c;
	assert_int_equal(kms_credentials_parse(NULL, 1, NULL, &c, &err), KMS_INVALID_ARGUMENT);
}

/* ---- the loader, on real files ---- */

static char dir[64];

static int make_dir(void **state)
{
	snprintf(dir, sizeof dir, "/tmp/kms-test-creds-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int remove_dir(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static void put(char *path, size_t cap, const char *name, const char *text, size_t len,
                mode_t mode)
{
	snprintf(path, cap, "%s/%s", dir, name);
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void load_refused(const char *path, const char *want)
{
	kms_credentials c;
	kms_error err;
	kms_status st = kms_credentials_load(path, &c, &err);
	if (st != KMS_INVALID_ARGUMENT || !strstr(err.message, want) || !strstr(err.message, path))
		fail_msg("%s: status %s, message \"%s\"; wanted INVALID_ARGUMENT, \"%s\" and the path",
		         path, kms_status_name(st), err.message, want);
	assert_null(strstr(err.message, HEX_PIECE));
	assert_null(c.secret);
}

static void loader_checks_the_file(void **state)
{
	char path[128], link[128], hint[192];
	kms_credentials c;
	kms_error err;

	put(path, sizeof path, "good", good_text, sizeof good_text - 1, 0600);
	assert_int_equal(kms_credentials_load(path, &c, &err), KMS_OK);
	assert_string_equal(c.access_key_id, ID);
	assert_string_equal(c.principal, "payments-svc");
	kms_credentials_free(&c);
	put(path, sizeof path, "owner-read-only", good_text, sizeof good_text - 1, 0400);
	assert_int_equal(kms_credentials_load(path, &c, &err), KMS_OK);
	kms_credentials_free(&c);

	/* Group or other bits: refused, saying what to run. */
	static const mode_t loose[] = { 0644, 0640, 0604, 0660, 0602, 0610 };
	for (size_t i = 0; i < sizeof loose / sizeof loose[0]; i++) {
		put(path, sizeof path, "loose", good_text, sizeof good_text - 1, loose[i]);
		snprintf(hint, sizeof hint, "chmod 600 %s", path);
		load_refused(path, hint);
	}

	/* A symbolic link, even to a good file, is refused (O_NOFOLLOW). */
	put(path, sizeof path, "good", good_text, sizeof good_text - 1, 0600);
	snprintf(link, sizeof link, "%s/link", dir);
	assert_int_equal(symlink(path, link), 0);
	load_refused(link, "is a symbolic link; name the file itself");

	/* Not a regular file: a directory, a FIFO (without waiting for a writer). */
	load_refused(dir, "is not a regular file");
	snprintf(path, sizeof path, "%s/fifo", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	load_refused(path, "is not a regular file");

	/* Missing; too large; malformed, named with its path. */
	snprintf(path, sizeof path, "%s/missing", dir);
	load_refused(path, "No such file or directory");
	char big[KMS_CREDENTIALS_FILE_MAX + 1];
	memset(big, '#', sizeof big);
	put(path, sizeof path, "big", big, sizeof big, 0600);
	load_refused(path, "larger than 4096 bytes");
	static const char crlf[] = "access_key_id = " ID "\r\nsecret = " HEX "\r\n";
	put(path, sizeof path, "crlf", crlf, sizeof crlf - 1, 0600);
	load_refused(path, "line 1 ends with CR");

	/* Another owner than this uid or root: refused (root only: chown). */
	if (geteuid() == 0) {
		put(path, sizeof path, "theirs", good_text, sizeof good_text - 1, 0600);
		assert_int_equal(chown(path, 65534, 65534), 0);
		load_refused(path, "belongs to uid 65534, not to uid 0 or root");
	} else {
		print_message("not root: the other-owner case is not run\n");
	}

	assert_int_equal(kms_credentials_load(NULL, &c, &err), KMS_INVALID_ARGUMENT);
	assert_int_equal(kms_credentials_load("", &c, &err), KMS_INVALID_ARGUMENT);
	assert_int_equal(kms_credentials_load(path, NULL, &err), KMS_INVALID_ARGUMENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(good_file_parses),
		cmocka_unit_test(malformed_files_are_refused),
		cmocka_unit_test_setup_teardown(loader_checks_the_file, make_dir, remove_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
