/*
 * The smoke of kms-bench's signing and MAC operations: the real binary
 * against a real kmsd (tests/support/harness.h) over ipc, sign-p256,
 * sign-ed25519 and generate-mac at 16 in flight, each run making its own
 * key of the operation's spec (ECC_P256, ED25519, HMAC_SHA256) and a grant
 * of it. Each run must exit 0 and append one JSON line of its operation
 * with its 64-byte messages, every request OK and no errors. Against a key
 * of the wrong spec (an AES key; a P-256 key for sign-ed25519, which names
 * its algorithm) every request fails INVALID_ARGUMENT and the run exits 1.
 * Speed is never checked.
 *
 * $KMS_TEST_BENCH_REQUESTS is each run's requests (default 300); the
 * sanitizer lane gives fewer (SoftHSM's Ed25519 signing with a token
 * object is slow there).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <kms/client.h>

#include "tests/clients/bench/bench_record.h"
#include "tests/support/harness.h"
#include "tests/support/run_bin.h"

/* Bounds, not expectations: a clean run takes a second or two (the
 * sanitizer build's kmsd, on a loaded machine, much longer). */
#define BENCH_WAIT_MS 240000
#define REQUESTS_DEFAULT "300"
#define REQUESTS_TEXT_MAX 8

static harness H;
static char aes_key[35];
static char p256_key[KMS_KEY_ID_MAX + 1];
static char json_path[700];
static char requests[REQUESTS_TEXT_MAX + 1];

/* Runs kms-bench --op op at 16 in flight for the smoke's requests, with
 * extra (NULL-terminated, or NULL) after the common arguments. */
static run_bin_result bench(const char *op, const char *const *extra)
{
	const char *args[24] = { "--url", H.ipc_url, "--op", op, "--concurrency", "16",
		                 "--requests", requests, "--duration", "120",
		                 "--timeout", "120000", "--json", json_path,
		                 "--label", "suite=smoke" };
	size_t n = 16;
	for (size_t i = 0; extra && extra[i] && n + 1 < sizeof args / sizeof args[0]; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	run_bin_options o = { .wait_ms = BENCH_WAIT_MS, .drop_env_prefix = "KMS_" };
	const char *bin = getenv("KMS_TEST_KMS_BENCH");
	assert_non_null(bin);
	return run_bin(bin, args, &o);
}

/* A clean run of op with a key made for it: exit 0, a table, and a JSON
 * line of op with every request OK, 64-byte messages and no errors. */
static void clean_run(const char *op)
{
	run_bin_result r = bench(op, NULL);
	int code = r.code;
	if (code != 0) {
		char said[2048];
		snprintf(said, sizeof said, "%s%s", r.out, r.err);
		run_bin_free(&r);
		fail_msg("kms-bench --op %s exited %d:\n%s", op, code, said);
	}
	assert_non_null(strstr(r.out, "64-byte messages"));
	run_bin_free(&r);
	json_t *rec = bench_record_take(json_path);
	assert_string_equal(bench_record_str(rec, "tool"), "kms-bench");
	assert_string_equal(bench_record_str(rec, "op"), op);
	assert_string_equal(bench_record_str(rec, "transport"), "ipc");
	assert_int_equal(bench_record_int(rec, "concurrency"), 16);
	assert_int_equal(bench_record_int(rec, "plaintext_bytes"), 64);
	assert_int_equal(bench_record_int(rec, "requests"), atoi(requests));
	assert_int_equal(bench_record_int(rec, "ok"), atoi(requests));
	json_t *errors = json_object_get(rec, "errors");
	assert_true(json_is_object(errors));
	assert_int_equal(json_object_size(errors), 0);
	json_decref(rec);
}

static void sign_p256(void **state)
{
	(void)state;
	clean_run("sign-p256");
}

static void sign_ed25519(void **state)
{
	(void)state;
	clean_run("sign-ed25519");
}

static void generate_mac(void **state)
{
	(void)state;
	clean_run("generate-mac");
}

/* Every request of op with key refused INVALID_ARGUMENT, counted so, and
 * the run exits 1. */
static void refused(const char *op, const char *key)
{
	const char *with_key[] = { "--key", key, NULL };
	run_bin_result r = bench(op, with_key);
	assert_int_equal(r.code, 1);
	char says[64];
	snprintf(says, sizeof says, "errors INVALID_ARGUMENT: %s", requests);
	if (!strstr(r.out, says))
		fail_msg("expected \"%s\" in: %s", says, r.out);
	run_bin_free(&r);
	json_t *rec = bench_record_take(json_path);
	assert_int_equal(bench_record_int(rec, "ok"), 0);
	json_t *errors = json_object_get(rec, "errors");
	assert_int_equal(json_integer_value(json_object_get(errors, "INVALID_ARGUMENT")),
	                 atoi(requests));
	json_decref(rec);
}

/* An AES key cannot sign; a P-256 key does not sign Ed25519. */
static void wrong_spec_counted_and_exit_1(void **state)
{
	(void)state;
	refused("sign-p256", aes_key);
	refused("generate-mac", aes_key);
	refused("sign-ed25519", p256_key);
}

/* A P-256 key, through libkmsclient (the harness makes AES keys). */
static bool make_p256_key(void)
{
	const char *endpoints[] = { H.ipc_url };
	kms_client_options opts = { .endpoints = endpoints, .n_endpoints = 1,
		                    .no_env_credentials = true };
	kms_client *c = NULL;
	kms_error err;
	kms_key_metadata md;
	kms_create_key_params params = { .key_spec = KMS_KEY_SPEC_ECC_P256 };
	if (kms_client_open(&opts, &c, &err) != KMS_OK ||
	    kms_create_key(c, &params, &md, &err) != KMS_OK) {
		fprintf(stderr, "cannot make a P-256 key: %s\n", err.message);
		kms_client_close(c);
		return false;
	}
	snprintf(p256_key, sizeof p256_key, "%s", md.key_id);
	kms_key_metadata_free(&md);
	kms_client_close(c);
	return true;
}

static int start(void **state)
{
	(void)state;
	const char *n = getenv("KMS_TEST_BENCH_REQUESTS");
	if (!n || !n[0])
		n = REQUESTS_DEFAULT;
	if (strlen(n) > REQUESTS_TEXT_MAX || strspn(n, "0123456789") != strlen(n) || atoi(n) < 1) {
		fprintf(stderr, "KMS_TEST_BENCH_REQUESTS=%s: give a count\n", n);
		return -1;
	}
	snprintf(requests, sizeof requests, "%s", n);
	harness_options o = { .bootstrap = true };
	if (!harness_start(&H, &o))
		return -1;
	if (!harness_create_key(&H, NULL, aes_key) || !make_p256_key())
		return -1;
	snprintf(json_path, sizeof json_path, "%s/bench.jsonl", H.dir);
	return 0;
}

static int stop(void **state)
{
	(void)state;
	int code = harness_stop(&H);
	if (code != 0)
		fprintf(stderr, "kmsd exited %d; log: %s\n", code, H.log);
	return code == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sign_p256),
		cmocka_unit_test(sign_ed25519),
		cmocka_unit_test(generate_mac),
		cmocka_unit_test(wrong_spec_counted_and_exit_1),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
