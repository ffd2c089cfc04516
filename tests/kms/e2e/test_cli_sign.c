/*
 * kms sign, verify, public-key, mac, verify-mac and pseudonym, the real
 * binaries against a real kmsd, with keys made by the real kms-admin:
 *
 *  - an ED25519 and an ECC_P256 key's signatures, of a message and (P-256)
 *    of a digest, verify with openssl and the public key kms public-key
 *    wrote, and a changed message fails there;
 *  - kms verify and verify-mac exit 0 for their own signature or MAC and 4
 *    (not an error) for a changed message, in text and --json;
 *  - the same value gives the same pseudonym, another context or version
 *    another one; kms pseudonym --file gives one line a value, in order,
 *    10,000 in one request and 25,000 in three, all under one version;
 *  - a key of the wrong usage is refused naming its usage; a message too
 *    long for sign says to sign its digest; raw bytes never go to a
 *    terminal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include <kms/limits.h>

#include "tests/support/harness.h"
#include "tests/support/run_bin.h"

#define CLI_WAIT_MS 60000
#define MESSAGE "transfer 100 to alice"
#define TAMPERED "transfer 900 to alice"

static harness H;

struct run {
	int code;
	char *out;
	char *err;
};

/* Runs bin with args (NULL-terminated) and, when it talks to kmsd, the
 * endpoint; stdin from /dev/null. Bounded: killed after CLI_WAIT_MS. */
static struct run cli_run(const char *bin, bool connect, const char *const *args)
{
	const char *argv[40];
	size_t n = 0;
	for (size_t i = 0; args[i]; i++) {
		assert_true(n < 35);
		argv[n++] = args[i];
	}
	if (connect) {
		argv[n++] = "--endpoint";
		argv[n++] = H.ipc_url;
		argv[n++] = "--timeout";
		argv[n++] = "30000";
	}
	argv[n] = NULL;
	run_bin_options o = { .wait_ms = CLI_WAIT_MS };
	run_bin_result r = run_bin(bin, argv, &o);
	return (struct run){ .code = r.code, .out = r.out, .err = r.err };
}

static const char *bin_env(const char *name)
{
	const char *bin = getenv(name);
	assert_non_null(bin);
	return bin;
}

#define KMS(...) cli_run(bin_env("KMS_TEST_KMS"), true, (const char *const[]){ __VA_ARGS__, NULL })
#define ADMIN(...) cli_run(bin_env("KMS_TEST_KMS_ADMIN"), true, (const char *const[]){ __VA_ARGS__, NULL })
#define OPENSSL(...) cli_run("openssl", false, (const char *const[]){ __VA_ARGS__, NULL })

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

/* Fails unless r exited code, with in_out in stdout and in_err in stderr
 * (NULL: anything); frees r. */
static void expect(struct run r, int code, const char *in_out, const char *in_err,
                   const char *what)
{
	if (r.code != code || (in_out && !strstr(r.out, in_out)) ||
	    (in_err && !strstr(r.err, in_err)))
		fail_msg("%s: exit %d (want %d)\nstdout: %s\nstderr: %s\nwanted stdout~\"%s\" "
		         "stderr~\"%s\"", what, r.code, code, r.out, r.err, in_out ? in_out : "",
		         in_err ? in_err : "");
	run_free(&r);
}

static void path_in(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", H.dir, name);
}

static void write_bytes(const char *path, const void *bytes, size_t len)
{
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, bytes, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

static void write_text(const char *path, const char *text)
{
	write_bytes(path, text, strlen(text));
}

static size_t file_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (size_t)st.st_size;
}

static json_t *parse_json(const char *text, const char *what)
{
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);
	if (!j)
		fail_msg("%s is not JSON (%s): %s", what, jerr.text, text);
	return j;
}

/* kms-admin key create --spec SPEC --alias ALIAS: its key id into out. */
static void create_key(const char *spec, const char *alias, char out[64])
{
	struct run r = ADMIN("--json", "key", "create", "--spec", spec, "--alias", alias);
	if (r.code != 0)
		fail_msg("key create --spec %s: exit %d: %s", spec, r.code, r.err);
	json_t *j = parse_json(r.out, "key create --json");
	const char *id = json_string_value(json_object_get(j, "key_id"));
	assert_non_null(id);
	assert_true(strlen(id) < 64);
	strcpy(out, id);
	json_decref(j);
	run_free(&r);
}

/* stdout of a run that must succeed, without its line end (malloc'ed). */
static char *output_of(struct run r, const char *what)
{
	if (r.code != 0)
		fail_msg("%s: exit %d\nstdout: %s\nstderr: %s", what, r.code, r.out, r.err);
	free(r.err);
	size_t n = strlen(r.out);
	while (n > 0 && r.out[n - 1] == '\n')
		r.out[--n] = '\0';
	return r.out;
}

static int start(void **state)
{
	(void)state;
	harness_options o = { 0 };
	return harness_start(&H, &o) ? 0 : -1;
}

static int stop(void **state)
{
	(void)state;
	return harness_stop(&H) == 0 ? 0 : -1;
}

/* ---- Ed25519 ---- */

static void ed25519_signatures_verify_with_openssl(void **state)
{
	(void)state;
	char key_id[64], msg[700], bad[700], sig[700], sig64[700], pem[700], der[700], der_pem[700];
	create_key("ED25519", "alias/cli-ed", key_id);
	path_in(msg, sizeof msg, "ed.msg");
	path_in(bad, sizeof bad, "ed.bad");
	path_in(sig, sizeof sig, "ed.sig");
	path_in(sig64, sizeof sig64, "ed.sig.b64");
	path_in(pem, sizeof pem, "ed.pem");
	path_in(der, sizeof der, "ed.der");
	path_in(der_pem, sizeof der_pem, "ed.der.pem");
	write_text(msg, MESSAGE);
	write_text(bad, TAMPERED);

	expect(KMS("sign", "--key", "alias/cli-ed", "-i", msg, "-o", sig), 0, NULL, NULL, "sign");
	assert_int_equal(file_size(sig), 64); /* R || S */
	expect(KMS("public-key", "--key", "alias/cli-ed", "-o", pem), 0, NULL, NULL, "public-key");
	size_t len = 0;
	char *text = harness_read_file(pem, &len);
	assert_non_null(text);
	assert_non_null(strstr(text, "-----BEGIN PUBLIC KEY-----\n"));
	free(text);

	/* openssl, with nothing of kms but the public key. */
	expect(OPENSSL("pkeyutl", "-verify", "-pubin", "-inkey", pem, "-rawin", "-in", msg,
	               "-sigfile", sig),
	       0, "Signature Verified Successfully", NULL, "openssl pkeyutl -verify (Ed25519)");
	struct run r = OPENSSL("pkeyutl", "-verify", "-pubin", "-inkey", pem, "-rawin", "-in", bad,
	                       "-sigfile", sig);
	if (r.code == 0)
		fail_msg("openssl verified a changed message: %s", r.out);
	run_free(&r);

	/* kmsd's own verdicts: 0, and 4 (not an error) for a changed message. */
	char want[128];
	snprintf(want, sizeof want, "signature valid: key %s version 1\n", key_id);
	expect(KMS("verify", "--key", "alias/cli-ed", "--signature", sig, "-i", msg), 0, want, NULL,
	       "verify");
	expect(KMS("verify", "--key", "alias/cli-ed", "--signature", sig, "-i", bad), 4, NULL,
	       "kms verify: the signature does not verify under key", "verify (changed)");
	expect(KMS("verify", "--key", "alias/cli-ed", "--signature", sig, "-i", msg, "--version",
	           "1"), 0, want, NULL, "verify --version 1");
	r = KMS("verify", "--json", "--key", "alias/cli-ed", "--signature", sig, "-i", bad);
	assert_int_equal(r.code, 4);
	json_t *j = parse_json(r.out, "verify --json");
	assert_true(json_is_false(json_object_get(j, "signature_valid")));
	assert_string_equal(json_string_value(json_object_get(j, "key_id")), key_id);
	assert_string_equal(json_string_value(json_object_get(j, "signing_algorithm")), "ED25519");
	json_decref(j);
	j = parse_json(r.err, "verify --json stderr");
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"),
	                                                      "status")), "INVALID");
	json_decref(j);
	run_free(&r);

	/* Base64 both ways; the DER is the PEM's key. */
	expect(KMS("sign", "--key", key_id, "-i", msg, "--base64", "-o", sig64), 0, NULL, NULL,
	       "sign --base64");
	char *b64 = harness_read_file(sig64, &len);
	assert_non_null(b64);
	assert_int_equal(len, 89); /* 88 characters and a line end */
	b64[88] = '\0';
	expect(KMS("verify", "--key", key_id, "--signature-base64", b64, "-i", msg), 0, NULL, NULL,
	       "verify --signature-base64");
	free(b64);
	expect(KMS("public-key", "--key", key_id, "--der", "-o", der), 0, NULL, NULL,
	       "public-key --der");
	assert_int_equal(file_size(der), 44);
	expect(OPENSSL("pkey", "-pubin", "-inform", "DER", "-in", der, "-out", der_pem), 0, NULL,
	       NULL, "openssl pkey");
	char *a = harness_read_file(pem, &len), *b = harness_read_file(der_pem, &len);
	assert_string_equal(a, b);
	free(a);
	free(b);

	/* Pure Ed25519 signs messages, not digests: kmsd says so. */
	char digest[700];
	path_in(digest, sizeof digest, "ed.digest");
	expect(OPENSSL("dgst", "-sha256", "-binary", "-out", digest, msg), 0, NULL, NULL, "dgst");
	expect(KMS("sign", "--key", key_id, "--digest", "-i", digest, "-o", sig), 1, NULL,
	       "INVALID_ARGUMENT", "sign --digest with an ED25519 key");
}

/* ---- ECDSA P-256 ---- */

static void p256_signatures_verify_with_openssl(void **state)
{
	(void)state;
	char key_id[64], msg[700], bad[700], digest[700], bad_digest[700], sig[700], dsig[700],
		pem[700];
	create_key("ECC_P256", "alias/cli-p256", key_id);
	path_in(msg, sizeof msg, "p256.msg");
	path_in(bad, sizeof bad, "p256.bad");
	path_in(digest, sizeof digest, "p256.digest");
	path_in(bad_digest, sizeof bad_digest, "p256.bad.digest");
	path_in(sig, sizeof sig, "p256.sig");
	path_in(dsig, sizeof dsig, "p256.dsig");
	path_in(pem, sizeof pem, "p256.pem");
	write_text(msg, MESSAGE);
	write_text(bad, TAMPERED);
	expect(OPENSSL("dgst", "-sha256", "-binary", "-out", digest, msg), 0, NULL, NULL, "dgst");
	expect(OPENSSL("dgst", "-sha256", "-binary", "-out", bad_digest, bad), 0, NULL, NULL,
	       "dgst");
	expect(KMS("public-key", "--key", "alias/cli-p256", "-o", pem), 0, NULL, NULL,
	       "public-key");

	/* The message, signed by kmsd (ECDSA over its SHA-256, DER). */
	expect(KMS("sign", "--key", "alias/cli-p256", "-i", msg, "-o", sig), 0, NULL, NULL, "sign");
	assert_true(file_size(sig) >= 8 && file_size(sig) <= 72);
	expect(OPENSSL("dgst", "-sha256", "-verify", pem, "-signature", sig, msg), 0, "Verified OK",
	       NULL, "openssl dgst -verify");
	struct run r = OPENSSL("dgst", "-sha256", "-verify", pem, "-signature", sig, bad);
	if (r.code == 0)
		fail_msg("openssl verified a changed message: %s", r.out);
	run_free(&r);

	/* Its digest, signed with --digest: the same check, both ways. */
	expect(KMS("sign", "--key", key_id, "--digest", "-i", digest, "-o", dsig), 0, NULL, NULL,
	       "sign --digest");
	expect(OPENSSL("pkeyutl", "-verify", "-pubin", "-inkey", pem, "-in", digest, "-sigfile",
	               dsig),
	       0, "Signature Verified Successfully", NULL, "openssl pkeyutl -verify (P-256)");
	r = OPENSSL("pkeyutl", "-verify", "-pubin", "-inkey", pem, "-in", bad_digest, "-sigfile",
	            dsig);
	if (r.code == 0)
		fail_msg("openssl verified a changed digest: %s", r.out);
	run_free(&r);
	expect(OPENSSL("dgst", "-sha256", "-verify", pem, "-signature", dsig, msg), 0, "Verified OK",
	       NULL, "openssl dgst -verify (digest signed)");

	/* kmsd's verdicts on either form. */
	expect(KMS("verify", "--key", key_id, "--signature", sig, "-i", msg), 0, "signature valid",
	       NULL, "verify");
	expect(KMS("verify", "--key", key_id, "--signature", dsig, "--digest", "-i", digest), 0,
	       "signature valid", NULL, "verify --digest");
	expect(KMS("verify", "--key", key_id, "--signature", dsig, "-i", msg), 0, "signature valid",
	       NULL, "verify a digest's signature over the message");
	expect(KMS("verify", "--key", key_id, "--signature", sig, "-i", bad), 4, NULL,
	       "does not verify", "verify (changed)");
	expect(KMS("verify", "--key", key_id, "--signature", dsig, "--digest", "-i", bad_digest), 4,
	       NULL, "does not verify", "verify --digest (changed)");
	/* Bytes that are not DER are just not a signature. */
	expect(KMS("verify", "--key", key_id, "--signature", msg, "-i", msg), 4, NULL,
	       "does not verify", "verify (not DER)");

	/* The limit, and a hint. */
	char big[700];
	char *text = malloc(KMS_SIGN_MESSAGE_MAX + 2);
	assert_non_null(text);
	memset(text, 'm', KMS_SIGN_MESSAGE_MAX + 1);
	text[KMS_SIGN_MESSAGE_MAX + 1] = '\0';
	path_in(big, sizeof big, "p256.big");
	write_text(big, text);
	free(text);
	expect(KMS("sign", "--key", key_id, "-i", big, "-o", sig), 2, NULL,
	       "input is 4097 bytes; a message is at most 4096: sign its SHA-256 with --digest "
	       "(openssl dgst -sha256 -binary", "sign 4097 bytes");
}

/* ---- usages ---- */

static void wrong_usage_is_refused_naming_the_usage(void **state)
{
	(void)state;
	char aes[35], hmac[64], ed[64], msg[700], sig[700], mac[700];
	assert_true(harness_create_key(&H, "alias/cli-usage-aes", aes));
	create_key("HMAC_SHA256", "alias/cli-usage-hmac", hmac);
	create_key("ED25519", "alias/cli-usage-ed", ed);
	path_in(msg, sizeof msg, "usage.msg");
	path_in(sig, sizeof sig, "usage.sig");
	path_in(mac, sizeof mac, "usage.mac");
	write_text(msg, MESSAGE);

	expect(KMS("sign", "--key", aes, "-i", msg, "-o", sig), 1, NULL, "ENCRYPT_DECRYPT",
	       "sign with an AES key");
	expect(KMS("sign", "--key", hmac, "-i", msg, "-o", sig), 1, NULL, "GENERATE_VERIFY_MAC",
	       "sign with an HMAC key");
	expect(KMS("public-key", "--key", aes), 1, NULL, "ENCRYPT_DECRYPT",
	       "public-key of an AES key");
	expect(KMS("mac", "--key", ed, "-i", msg, "-o", mac), 1, NULL, "SIGN_VERIFY",
	       "mac with an Ed25519 key");
	expect(KMS("pseudonym", "--key", aes, "alice"), 1, NULL, "ENCRYPT_DECRYPT",
	       "pseudonym with an AES key");
	expect(KMS("encrypt", "--key", hmac, "-i", msg), 1, NULL, "GENERATE_VERIFY_MAC",
	       "encrypt with an HMAC key");

	/* What key create sent for each spec: its usage, and ED25519 in the HSM. */
	struct run r = ADMIN("--json", "key", "describe", ed);
	json_t *j = parse_json(r.out, "key describe --json");
	assert_string_equal(json_string_value(json_object_get(j, "key_spec")), "ED25519");
	assert_string_equal(json_string_value(json_object_get(j, "key_usage")), "SIGN_VERIFY");
	assert_string_equal(json_string_value(json_object_get(j, "protection")), "HSM_RESIDENT");
	json_decref(j);
	run_free(&r);
	r = ADMIN("--json", "key", "describe", hmac);
	j = parse_json(r.out, "key describe --json");
	assert_string_equal(json_string_value(json_object_get(j, "key_usage")),
	                    "GENERATE_VERIFY_MAC");
	assert_string_equal(json_string_value(json_object_get(j, "protection")), "WRAPPED");
	json_decref(j);
	run_free(&r);
}

/* ---- MACs ---- */

static void macs_verify_and_changed_messages_do_not(void **state)
{
	(void)state;
	char key_id[64], msg[700], bad[700], mac[700], prefixed[700];
	create_key("HMAC_SHA256", "alias/cli-mac", key_id);
	path_in(msg, sizeof msg, "mac.msg");
	path_in(bad, sizeof bad, "mac.bad");
	path_in(mac, sizeof mac, "mac.bin");
	path_in(prefixed, sizeof prefixed, "mac.prefixed");
	write_text(msg, MESSAGE);
	write_text(bad, TAMPERED);

	expect(KMS("mac", "--key", "alias/cli-mac", "-i", msg, "-o", mac), 0, NULL, NULL, "mac");
	assert_int_equal(file_size(mac), KMS_MAC_LEN);
	expect(KMS("verify-mac", "--key", "alias/cli-mac", "--mac", mac, "-i", msg), 0,
	       "MAC valid: key", NULL, "verify-mac");
	expect(KMS("verify-mac", "--key", "alias/cli-mac", "--mac", mac, "-i", bad), 4, NULL,
	       "kms verify-mac: the MAC does not verify under key", "verify-mac (changed)");

	char *b64 = output_of(KMS("mac", "--key", key_id, "-i", msg, "--base64"), "mac --base64");
	assert_int_equal(strlen(b64), 44);
	expect(KMS("verify-mac", "--key", key_id, "--mac-base64", b64, "-i", msg, "--version", "1"),
	       0, "version 1", NULL, "verify-mac --mac-base64");
	free(b64);
	struct run r = KMS("mac", "--json", "--key", key_id, "-i", msg);
	json_t *j = parse_json(r.out, "mac --json");
	assert_int_equal(json_integer_value(json_object_get(j, "key_version")), 1);
	assert_int_equal(strlen(json_string_value(json_object_get(j, "mac"))), 44);
	json_decref(j);
	run_free(&r);

	/* A pseudonym message is Pseudonymize's alone (docs/pseudonyms.md, 4). */
	/* The prefix, the empty context's encoding and the value "x". */
	static const char message[] = "kms-pseudonym-v1\0" "\0\0\0\2" "\0\0" "\0\0\0\1" "x";
	write_bytes(prefixed, message, sizeof message - 1);
	expect(KMS("mac", "--key", key_id, "-i", prefixed, "-o", mac), 2, NULL,
	       "pseudonym domain prefix", "mac of a pseudonym message");
}

/* ---- pseudonyms ---- */

/* Lines of text (NUL-terminated, changed in place) into lines[0..cap). */
static size_t split_lines(char *text, char **lines, size_t cap)
{
	size_t n = 0;
	for (char *save = NULL, *l = strtok_r(text, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save)) {
		assert_true(n < cap);
		lines[n++] = l;
	}
	return n;
}

/* A file of n values "user-%06zu" (from first), one a line. */
static void write_values(const char *path, size_t first, size_t n)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "user-%06zu\n", first + i);
	assert_int_equal(fclose(f), 0);
}

static void pseudonyms_are_stable_and_ordered(void **state)
{
	(void)state;
	char key_id[64], prefix[32];
	create_key("HMAC_SHA256", "alias/cli-pseudo", key_id);
	snprintf(prefix, sizeof prefix, "kp_%.8s_1_", key_id + 2);

	/* The same value twice: the same pseudonym; another value, another. */
	char *text = output_of(KMS("pseudonym", "--key", "alias/cli-pseudo", "alice", "alice",
	                           "bob"), "pseudonym");
	char *lines[4];
	assert_int_equal(split_lines(text, lines, 4), 3);
	assert_int_equal(strncmp(lines[0], prefix, strlen(prefix)), 0);
	assert_int_equal(strlen(lines[0]), strlen(prefix) + 32);
	assert_string_equal(lines[0], lines[1]);
	assert_string_not_equal(lines[0], lines[2]);
	char alice[KMS_PSEUDONYM_TEXT_SIZE];
	snprintf(alice, sizeof alice, "%s", lines[0]);
	free(text);

	/* Another context: another pseudonym; the pairs' order does not count. */
	text = output_of(KMS("pseudonym", "--key", key_id, "--context", "purpose=analytics",
	                     "alice"), "pseudonym --context");
	assert_string_not_equal(text, alice);
	char *other = output_of(KMS("pseudonym", "--key", key_id, "--context", "purpose=fraud",
	                            "alice"), "pseudonym --context (other)");
	assert_string_not_equal(text, other);
	free(other);
	free(text);
	char *ab = output_of(KMS("pseudonym", "--key", key_id, "--context", "a=1", "--context",
	                         "b=2", "alice"), "pseudonym a,b");
	char *ba = output_of(KMS("pseudonym", "--key", key_id, "--context", "b=2", "--context",
	                         "a=1", "alice"), "pseudonym b,a");
	assert_string_equal(ab, ba);
	free(ab);
	free(ba);

	/* --json: the key, the version, the list. */
	struct run r = KMS("pseudonym", "--json", "--key", key_id, "alice", "bob");
	json_t *j = parse_json(r.out, "pseudonym --json");
	assert_string_equal(json_string_value(json_object_get(j, "key_id")), key_id);
	assert_int_equal(json_integer_value(json_object_get(j, "key_version")), 1);
	assert_int_equal(json_array_size(json_object_get(j, "pseudonyms")), 2);
	assert_string_equal(json_string_value(json_array_get(json_object_get(j, "pseudonyms"), 0)),
	                    alice);
	json_decref(j);
	run_free(&r);

	/* A rotation: the primary makes version 2 pseudonyms, version 1 the
	 * old ones still. */
	expect(ADMIN("key", "rotate", key_id), 0, NULL, NULL, "key rotate");
	text = output_of(KMS("pseudonym", "--key", key_id, "alice"), "pseudonym after rotate");
	assert_non_null(strstr(text, "_2_"));
	assert_string_not_equal(text, alice);
	free(text);
	text = output_of(KMS("pseudonym", "--key", key_id, "--version", "1", "alice"),
	                 "pseudonym --version 1");
	assert_string_equal(text, alice);
	free(text);
}

/* Pseudonyms of a file, read back: n lines, each the pseudonym of the
 * same line's value. */
static char *pseudonym_file(const char *key_id, const char *values, const char *out,
                            const char *version)
{
	struct run r = version ? KMS("pseudonym", "--key", key_id, "--file", values, "-o", out,
	                             "--version", version)
	                       : KMS("pseudonym", "--key", key_id, "--file", values, "-o", out);
	free(output_of(r, "pseudonym --file"));
	size_t len;
	char *text = harness_read_file(out, &len);
	assert_non_null(text);
	return text;
}

static void pseudonym_file_keeps_the_order(void **state)
{
	(void)state;
	enum { ONE = KMS_PSEUDONYM_VALUES_MAX, MANY = 25000 };
	char key_id[64], values[700], out[700];
	create_key("HMAC_SHA256", "alias/cli-pseudo-file", key_id);
	path_in(values, sizeof values, "values.txt");
	path_in(out, sizeof out, "pseudonyms.txt");

	/* 10,000 lines: one request, 10,000 lines back. */
	write_values(values, 0, ONE);
	char *text = pseudonym_file(key_id, values, out, NULL);
	char **lines = calloc(MANY + 1, sizeof *lines);
	assert_non_null(lines);
	assert_int_equal(split_lines(text, lines, MANY + 1), ONE);
	/* Each line is its own value's: a few asked for alone. */
	static const size_t probes[] = { 0, 1, 4999, 9998, 9999 };
	for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
		char value[32];
		snprintf(value, sizeof value, "user-%06zu", probes[i]);
		char *one = output_of(KMS("pseudonym", "--key", key_id, value), "pseudonym VALUE");
		if (strcmp(one, lines[probes[i]]) != 0)
			fail_msg("line %zu is %s; %s alone gives %s", probes[i] + 1, lines[probes[i]],
			         value, one);
		free(one);
	}
	for (size_t i = 1; i < ONE; i++)
		assert_string_not_equal(lines[i], lines[i - 1]);
	char first[KMS_PSEUDONYM_TEXT_SIZE], last[KMS_PSEUDONYM_TEXT_SIZE];
	snprintf(first, sizeof first, "%s", lines[0]);
	snprintf(last, sizeof last, "%s", lines[ONE - 1]);
	free(text);

	/* 25,000 lines: three requests, under one version even though the
	 * key rotates in between runs; the first 10,000 lines are the same as
	 * before. */
	write_values(values, 0, MANY);
	expect(ADMIN("key", "rotate", key_id), 0, NULL, NULL, "key rotate");
	text = pseudonym_file(key_id, values, out, "1");
	assert_int_equal(split_lines(text, lines, MANY + 1), MANY);
	assert_string_equal(lines[0], first);
	assert_string_equal(lines[ONE - 1], last);
	static const size_t later[] = { ONE, 2 * ONE, MANY - 1 };
	for (size_t i = 0; i < sizeof later / sizeof later[0]; i++) {
		char value[32];
		snprintf(value, sizeof value, "user-%06zu", later[i]);
		char *one = output_of(KMS("pseudonym", "--key", key_id, "--version", "1", value),
		                      "pseudonym VALUE");
		assert_string_equal(one, lines[later[i]]);
		free(one);
	}
	free(text);
	/* Without --version: all of the primary's (2), the first batch's. */
	text = pseudonym_file(key_id, values, out, NULL);
	assert_int_equal(split_lines(text, lines, MANY + 1), MANY);
	for (size_t i = 0; i < MANY; i++)
		if (!strstr(lines[i], "_2_"))
			fail_msg("line %zu is not of version 2: %s", i + 1, lines[i]);
	free(text);
	free(lines);
}

/* ---- raw bytes and terminals ---- */

static void raw_bytes_never_go_to_a_terminal(void **state)
{
	(void)state;
	char key_id[64], msg[700], seen[256];
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
	int slave = open(tty, O_RDWR | O_NOCTTY);
	assert_true(slave >= 0);
	create_key("ED25519", "alias/cli-tty-ed", key_id);
	path_in(msg, sizeof msg, "tty.msg");
	write_text(msg, MESSAGE);

	static const char script[] = "\"$1\" $2 --key \"$3\" -i \"$4\" --endpoint \"$5\" $6 > \"$7\"";
	const char *bin = bin_env("KMS_TEST_KMS");
	struct run r = cli_run("bash", false, (const char *const[]){ "-c", script, "bash", bin,
	                                                             "sign", key_id, msg,
	                                                             H.ipc_url, "", tty, NULL });
	expect(r, 2, NULL, "refusing to write a binary signature to a terminal", "sign to a tty");
	ssize_t n = read(master, seen, sizeof seen);
	assert_true(n <= 0); /* nothing reached it */
	/* --base64 is text: it goes. */
	r = cli_run("bash", false, (const char *const[]){ "-c", script, "bash", bin, "sign", key_id,
	                                                  msg, H.ipc_url, "--base64", tty, NULL });
	expect(r, 0, NULL, NULL, "sign --base64 to a tty");
	n = read(master, seen, sizeof seen - 1);
	assert_true(n > 88);
	close(slave);
	close(master);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ed25519_signatures_verify_with_openssl),
		cmocka_unit_test(p256_signatures_verify_with_openssl),
		cmocka_unit_test(wrong_usage_is_refused_naming_the_usage),
		cmocka_unit_test(macs_verify_and_changed_messages_do_not),
		cmocka_unit_test(pseudonyms_are_stable_and_ordered),
		cmocka_unit_test(pseudonym_file_keeps_the_order),
		cmocka_unit_test(raw_bytes_never_go_to_a_terminal),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
