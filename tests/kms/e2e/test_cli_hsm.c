/*
 * test_cli_hsm: the real kms-admin against a real kmsd for the HSM
 * commands (processes, exit codes, stdout and stderr apart):
 *
 *  - hsm kek list, text and --json: one KEK, kms-kek-00000001, CURRENT,
 *    wrapping the versions of the keys made;
 *  - hsm status with the token's flags and kmsd reachable: the local token
 *    report (its label) and kmsd's KEK table; --json holds both
 *    (kmsd_reached, keks);
 *  - hsm status with kmsd not reachable (an endpoint where no kmsd
 *    listens): exit 0, the token report, and one warning line saying the
 *    KEKs are not shown and why; --json says kmsd_reached false;
 *  - hsm kek rotate: the new KEK's id and state; a second one while the
 *    first KEK drains: exit 1, FAILED_PRECONDITION naming the draining KEK
 *    and what to wait for. kmsd runs with an hour between background
 *    ticks, so the old KEK stays draining (no timing involved); hsm status
 *    then shows the re-wrap's progress line;
 *  - as a principal with the app role only: hsm kek list is refused
 *    ACCESS_DENIED (exit 1), and hsm status still prints the token with a
 *    warning naming the roles that may list KEKs;
 *  - key create --protection wrapped|hsm-resident and key describe: the
 *    protection shown, and the KEK of a wrapped version only.
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

#include "kms/store/store.h"
#include "tests/support/harness.h"
#include "tests/support/run_bin.h"


static harness H;
static const char *endpoint; /* the kmsd the commands talk to */

static run_bin_result admin_run(const char *const *args)
{
	return run_kms_admin(endpoint, args);
}

#define ADMIN(...) admin_run((const char *const[]){ __VA_ARGS__, NULL })
#define STATUS(...)                                                                       \
	admin_run((const char *const[]){ "hsm", "status", "--module", module(), "--token",  \
	                                 getenv("KMS_TEST_TOKEN_LABEL"), "--pin-file",      \
	                                 getenv("KMS_TEST_PIN_FILE"), __VA_ARGS__ NULL })

static const char *module(void)
{
	const char *m = getenv("KMS_TEST_MODULE");
	return m ? m : "/usr/lib/softhsm/libsofthsm2.so";
}

static void expect(run_bin_result *r, int code, const char *in_out, const char *in_err,
                   const char *what)
{
	if (r->code != code || (in_out && !strstr(r->out, in_out)) ||
	    (in_err && !strstr(r->err, in_err)))
		fail_msg("%s: exit %d (want %d)\nstdout: %s\nstderr: %s\nwanted stdout~\"%s\" "
		         "stderr~\"%s\"", what, r->code, code, r->out, r->err, in_out ? in_out : "",
		         in_err ? in_err : "");
}

static json_t *parse_json(const char *text, const char *what)
{
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);
	if (!j)
		fail_msg("%s is not JSON (%s): %s", what, jerr.text, text);
	return j;
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static int start(void **state)
{
	(void)state;
	/* An hour between background ticks: a rotated-out KEK stays draining. */
	harness_options o = { .extra_config = "[limits]\ntick_seconds = 3600\n" };
	if (!harness_add_principal(&H, &o, "app-only", PRINCIPAL_ROLE_APP))
		return -1;
	if (!harness_start(&H, &o))
		return -1;
	endpoint = H.ipc_url;
	return 0;
}

static int stop(void **state)
{
	(void)state;
	return harness_stop(&H) == 0 ? 0 : -1;
}

static void kek_list(void **state)
{
	(void)state;
	char key[35];
	assert_true(harness_create_key(&H, NULL, key));
	run_bin_result r = ADMIN("hsm", "kek", "list");
	expect(&r, 0, "kms-kek-00000001", NULL, "hsm kek list");
	assert_non_null(strstr(r.out, "CURRENT"));
	assert_non_null(strstr(r.out, "VERSIONS"));
	assert_string_equal(r.err, "");
	run_bin_free(&r);

	r = ADMIN("hsm", "kek", "list", "--json");
	expect(&r, 0, NULL, NULL, "hsm kek list --json");
	json_t *j = parse_json(r.out, "hsm kek list --json");
	json_t *keks = json_object_get(j, "keks");
	assert_int_equal(json_array_size(keks), 1);
	json_t *k = json_array_get(keks, 0);
	assert_int_equal(json_integer_value(json_object_get(k, "id")), 1);
	assert_string_equal(jstr(k, "hsm_id"), "kms-kek-00000001");
	assert_string_equal(jstr(k, "state"), "CURRENT");
	assert_int_equal(json_integer_value(json_object_get(k, "versions")), 1);
	assert_true(json_integer_value(json_object_get(k, "created_at")) > 0);
	assert_int_equal(json_integer_value(json_object_get(k, "retired_at")), 0);
	json_decref(j);
	run_bin_free(&r);

	r = ADMIN("hsm", "kek", "list", "extra");
	expect(&r, 2, NULL, "unexpected argument", "hsm kek list with an argument");
	run_bin_free(&r);
}

/* kms-admin key create --protection and key describe: a wrapped key names
 * the KEK of its version, an hsm-resident one names none; a protection
 * kms-admin does not know is a usage error (exit 2). */
static void protection_shown(void **state)
{
	(void)state;
	const char *ids[2];
	const char *kinds[] = { "wrapped", "hsm-resident" };
	const char *shown[] = { "WRAPPED", "HSM_RESIDENT" }; /* as the wire names them */
	json_t *made[2];
	for (int i = 0; i < 2; i++) {
		run_bin_result r = ADMIN("key", "create", "--protection", kinds[i], "--json");
		expect(&r, 0, NULL, NULL, kinds[i]);
		made[i] = parse_json(r.out, "key create --json");
		run_bin_free(&r);
		json_t *md = json_object_get(made[i], "key_metadata");
		if (!md)
			md = made[i];
		ids[i] = jstr(md, "key_id");
		assert_true(strncmp(ids[i], "k-", 2) == 0);
		assert_string_equal(jstr(md, "protection"), shown[i]);
	}
	run_bin_result r = ADMIN("key", "describe", ids[0]);
	expect(&r, 0, "WRAPPED", NULL, "key describe (wrapped)");
	/* kek_rotate ran before: new versions are under the second KEK. */
	if (!strstr(r.out, "wrapped under kms-kek-00000002"))
		fail_msg("key describe (wrapped) names no KEK:\n%s", r.out);
	run_bin_free(&r);
	r = ADMIN("key", "describe", ids[1]);
	expect(&r, 0, "HSM_RESIDENT", NULL, "key describe (hsm-resident)");
	assert_null(strstr(r.out, "kms-kek-"));
	run_bin_free(&r);
	r = ADMIN("key", "create", "--protection", "software");
	expect(&r, 2, NULL, "--protection takes wrapped or", "key create --protection software");
	run_bin_free(&r);
	json_decref(made[0]);
	json_decref(made[1]);
}

static void status_with_kmsd(void **state)
{
	(void)state;
	run_bin_result r = STATUS();
	expect(&r, 0, getenv("KMS_TEST_TOKEN_LABEL"), NULL, "hsm status");
	assert_non_null(strstr(r.out, "key-encryption keys (kmsd):"));
	assert_non_null(strstr(r.out, "kms-kek-00000001"));
	assert_string_equal(r.err, "");
	run_bin_free(&r);

	r = STATUS("--json", );
	expect(&r, 0, NULL, NULL, "hsm status --json");
	json_t *j = parse_json(r.out, "hsm status --json");
	assert_string_equal(jstr(j, "label"), getenv("KMS_TEST_TOKEN_LABEL"));
	assert_true(json_is_true(json_object_get(j, "kmsd_reached")));
	assert_int_equal(json_array_size(json_object_get(j, "keks")), 1);
	json_decref(j);
	run_bin_free(&r);
}

static void status_without_kmsd(void **state)
{
	(void)state;
	char nowhere[700];
	snprintf(nowhere, sizeof nowhere, "ipc://%s/no-kmsd-here.sock", H.dir);
	endpoint = nowhere;
	run_bin_result r = STATUS();
	expect(&r, 0, getenv("KMS_TEST_TOKEN_LABEL"), "warning: KEKs not shown",
	       "hsm status, kmsd not reachable");
	assert_null(strstr(r.out, "key-encryption keys"));
	assert_non_null(strstr(r.err, "is kmsd running?"));
	run_bin_free(&r);

	r = STATUS("--json", );
	expect(&r, 0, NULL, "\"warning\"", "hsm status --json, kmsd not reachable");
	json_t *j = parse_json(r.out, "hsm status --json");
	assert_true(json_is_false(json_object_get(j, "kmsd_reached")));
	assert_null(json_object_get(j, "keks"));
	json_decref(j);
	run_bin_free(&r);
	endpoint = H.ipc_url;
}

static void kek_rotate(void **state)
{
	(void)state;
	run_bin_result r = ADMIN("hsm", "kek", "rotate");
	expect(&r, 0, "kms-kek-00000002", NULL, "hsm kek rotate");
	assert_non_null(strstr(r.out, "CURRENT"));
	assert_non_null(strstr(r.out, "kms-admin hsm kek list shows the progress"));
	run_bin_free(&r);

	/* kmsd ticks once an hour here: kms-kek-00000001 stays draining. */
	r = ADMIN("hsm", "kek", "rotate");
	expect(&r, 1, NULL, "FAILED_PRECONDITION", "a second hsm kek rotate");
	assert_non_null(strstr(r.err, "kms-kek-00000001"));
	assert_non_null(strstr(r.err, "retired"));
	run_bin_free(&r);

	r = ADMIN("hsm", "kek", "rotate", "--json");
	expect(&r, 1, NULL, "\"FAILED_PRECONDITION\"", "a second hsm kek rotate --json");
	run_bin_free(&r);

	r = ADMIN("hsm", "kek", "list", "--json");
	expect(&r, 0, NULL, NULL, "hsm kek list --json after a rotation");
	json_t *j = parse_json(r.out, "hsm kek list --json");
	json_t *keks = json_object_get(j, "keks");
	assert_int_equal(json_array_size(keks), 2);
	assert_string_equal(jstr(json_array_get(keks, 0), "state"), "DRAINING");
	assert_string_equal(jstr(json_array_get(keks, 1), "state"), "CURRENT");
	assert_string_equal(jstr(json_array_get(keks, 1), "hsm_id"), "kms-kek-00000002");
	json_decref(j);
	run_bin_free(&r);

	r = STATUS();
	expect(&r, 0, "re-wrap: 1 key version(s) still wrapped under kms-kek-00000001", NULL,
	       "hsm status during a re-wrap");
	assert_non_null(strstr(r.out, "DRAINING"));
	run_bin_free(&r);
}

/* An app-only principal, signing with its own access key. */
static void app_refused(void **state)
{
	(void)state;
	char cred[700];
	snprintf(cred, sizeof cred, "%s/app-only.credentials", H.dir);
	run_bin_result r = ADMIN("access-key", "create", "app-only", "--output", cred);
	expect(&r, 0, NULL, NULL, "access-key create app-only --output");
	run_bin_free(&r);

	r = ADMIN("hsm", "kek", "list", "--credentials", cred);
	expect(&r, 1, NULL, "ACCESS_DENIED", "hsm kek list as an app");
	run_bin_free(&r);
	r = ADMIN("hsm", "kek", "rotate", "--credentials", cred);
	expect(&r, 1, NULL, "ACCESS_DENIED", "hsm kek rotate as an app");
	run_bin_free(&r);
	r = STATUS("--credentials", cred, );
	expect(&r, 0, getenv("KMS_TEST_TOKEN_LABEL"), "admin or auditor principal",
	       "hsm status as an app");
	assert_non_null(strstr(r.err, "warning: KEKs not shown: ACCESS_DENIED"));
	run_bin_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(kek_list),
		cmocka_unit_test(status_with_kmsd),
		cmocka_unit_test(status_without_kmsd),
		cmocka_unit_test(kek_rotate),
		cmocka_unit_test(app_refused),
		/* Last: it adds versions the KEK tests above count. */
		cmocka_unit_test(protection_shown),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
