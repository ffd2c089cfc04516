/*
 * The Python package kms (clients/python) against a real kmsd: starts kmsd
 * with the harness, makes two keys through libkmsclient (one the caller may
 * use, one whose policy allows the caller nothing), and runs the package's
 * unittest suite (clients/python/tests) with Debian's /usr/bin/python3 as a
 * child, on the build's libkmsclient.so.0 (KMS_LIBKMSCLIENT). The child also
 * gets the C compiler's sizes of the structs the package declares.
 *
 * Sanitizer lane: libkmsclient.so is instrumented and python3 is not, so
 * the child runs with the compiler's libasan preloaded
 * (KMS_TEST_PY_PRELOAD) and leak checking off (the interpreter's own
 * allocations at exit are not ours); ASan and UBSan still stop it on a
 * memory error in the library.
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

#include <kms/client.h>
#include <kms/envelope.h>

#include "tests/support/harness.h"
#include "tests/support/run_bin.h"

#define PY_WAIT_MS 120000

static harness H;
static char key_id[KMS_KEY_ID_MAX + 1];
static char denied_key_id[KMS_KEY_ID_MAX + 1];

/* Lets a principal other than the test's do one thing: test-admin, which
 * the harness's default policy allows everything, gets nothing here. */
static const char nothing_policy[] =
        "{\"Version\":\"2024-01-01\",\"Statement\":[{\"Effect\":\"Allow\","
        "\"Principal\":\"someone-else\",\"Action\":\"encrypt\"}]}";

static bool create_key(kms_client *c, const char *policy, char out[KMS_KEY_ID_MAX + 1])
{
	kms_create_key_params params = { .description = "python client test", .policy = policy };
	kms_key_metadata md;
	kms_error err;
	if (kms_create_key(c, &params, &md, &err) != KMS_OK) {
		fprintf(stderr, "create key: %s\n", err.message);
		return false;
	}
	snprintf(out, KMS_KEY_ID_MAX + 1, "%s", md.key_id);
	kms_key_metadata_free(&md);
	return true;
}

static int start(void **state)
{
	harness_options o = { 0 };
	if (!harness_start(&H, &o))
		return -1;
	const char *endpoints[] = { H.ipc_url };
	kms_client_options opts = { .endpoints = endpoints, .n_endpoints = 1,
	                            .timeout_ms = 10000, .no_env_credentials = true };
	kms_client *c = NULL;
	kms_error err;
	if (kms_client_open(&opts, &c, &err) != KMS_OK) {
		fprintf(stderr, "open: %s\n", err.message);
		return -1;
	}
	bool ok = create_key(c, NULL, key_id) && create_key(c, nothing_policy, denied_key_id);
	kms_client_close(c);
	return ok ? 0 : -1;
}

static int stop(void **state)
{
	int code = harness_stop(&H);
	if (code != 0)
		fprintf(stderr, "kmsd exited %d; log: %s\n", code, H.log);
	return code == 0 ? 0 : -1;
}

#define SIZE_OF(t) " " #t "=%zu"

/* The sizes of the structs kms/_lib.py declares, as "name=size ...". */
static void struct_sizes(char *out, size_t cap)
{
	int n = snprintf(out, cap,
	                 "KMS_TEST_SIZES=" SIZE_OF(kms_error) SIZE_OF(kms_client_options)
	                 SIZE_OF(kms_context_pair) SIZE_OF(kms_ciphertext) SIZE_OF(kms_plaintext)
	                 SIZE_OF(kms_data_key) SIZE_OF(kms_reencrypted) SIZE_OF(kms_health)
	                 SIZE_OF(kms_envelope_encrypt_options)
	                 SIZE_OF(kms_envelope_decrypt_options),
	                 sizeof(kms_error), sizeof(kms_client_options), sizeof(kms_context_pair),
	                 sizeof(kms_ciphertext), sizeof(kms_plaintext), sizeof(kms_data_key),
	                 sizeof(kms_reencrypted), sizeof(kms_health),
	                 sizeof(kms_envelope_encrypt_options),
	                 sizeof(kms_envelope_decrypt_options));
	assert_true(n > 0 && (size_t)n < cap);
}

static void python_suite_passes(void **state)
{
	const char *src = getenv("KMS_TEST_PYTHON_SRC");
	const char *lib = getenv("KMS_TEST_LIBKMSCLIENT");
	const char *preload = getenv("KMS_TEST_PY_PRELOAD");
	assert_non_null(src);
	assert_non_null(lib);

	static char pythonpath[700], libvar[700], endpoint[700], key[100], denied[100];
	static char sizes[1024], ld_preload[700];
	snprintf(pythonpath, sizeof pythonpath, "PYTHONPATH=%s", src);
	snprintf(libvar, sizeof libvar, "KMS_LIBKMSCLIENT=%s", lib);
	snprintf(endpoint, sizeof endpoint, "KMS_ENDPOINT=%s", H.ipc_url);
	snprintf(key, sizeof key, "KMS_TEST_KEY=%s", key_id);
	snprintf(denied, sizeof denied, "KMS_TEST_DENIED_KEY=%s", denied_key_id);
	struct_sizes(sizes, sizeof sizes);
	const char *env[12] = { pythonpath, libvar, endpoint, key, denied, sizes,
	                        "PYTHONDONTWRITEBYTECODE=1", "KMS_CREDENTIALS=" };
	size_t n = 8;
	if (preload && *preload) {
		snprintf(ld_preload, sizeof ld_preload, "LD_PRELOAD=%s", preload);
		env[n++] = ld_preload;
		env[n++] = "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1";
	}
	env[n] = NULL;

	static char tests_dir[700];
	snprintf(tests_dir, sizeof tests_dir, "%s/tests", src);
	const char *args[] = { "-m", "unittest", "discover", "-v", "-s", tests_dir,
	                       "-t", tests_dir, NULL };
	/* The inherited ASAN_OPTIONS (leak checks on) would come first. */
	run_bin_options o = { .env = env, .drop_env_prefix = "ASAN_OPTIONS=",
	                      .merge_stderr = true, .wait_ms = PY_WAIT_MS };
	run_bin_result r = run_bin("/usr/bin/python3", args, &o);
	if (r.code != 0)
		fprintf(stderr, "python3 -m unittest exited %d:\n%s\n", r.code, r.out);
	else
		printf("%s", r.out);
	int code = r.code;
	run_bin_free(&r);
	assert_int_equal(code, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(python_suite_passes),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
