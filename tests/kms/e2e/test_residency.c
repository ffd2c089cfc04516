/*
 * test_residency: kmsd runs only on the HSM tokens its config pins
 * ([hsm] pinned, kms/kmsd_residency.h, docs/config.md).
 *
 * - No pin: kmsd starts, warns that it is not pinned, and Health reports
 *   the token (manufacturer, model, serial) with hsm_pinned false.
 * - Pinned to that token (among others): it starts, says so, and Health
 *   (and kms-admin health) says hsm_pinned; kms-admin report residency
 *   names the token, the KEK, the audit log and where each key's versions
 *   live (wrapped under the KEK, or token objects).
 * - Pinned only to other tokens (another serial, another model): it does
 *   not start; its last line names the token it found and the pins.
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

#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"
#include "tests/support/run_bin.h"

#include <jansson.h>

static harness H;
static char manufacturer[33], model[17], serial[17];

static int teardown(void **state)
{
	(void)state;
	harness_kill9(&H);
	return 0;
}

static Kms__Response *health(void)
{
	Kms__HealthRequest hr = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &hr;
	Kms__Response *r = harness_call(&H, &req);
	if (!r || r->status != KMS__STATUS__OK || !r->health)
		fail_msg("Health: %s", r ? r->message : "no reply");
	return r;
}

static void stop(void)
{
	int code = harness_stop(&H);
	if (code != 0)
		fail_msg("kmsd exited %d on SIGTERM; see %s", code, H.log);
}

static void unpinned_reports_the_token(void **state)
{
	(void)state;
	if (!harness_start(&H, NULL))
		fail_msg("kmsd did not start; see %s", H.log);
	Kms__Response *r = health();
	assert_false(r->health->hsm_pinned);
	assert_true(r->health->hsm_serial[0] && r->health->hsm_model[0] &&
	            r->health->hsm_manufacturer[0]);
	snprintf(manufacturer, sizeof manufacturer, "%s", r->health->hsm_manufacturer);
	snprintf(model, sizeof model, "%s", r->health->hsm_model);
	snprintf(serial, sizeof serial, "%s", r->health->hsm_serial);
	kms__response__free_unpacked(r, NULL);
	assert_true(harness_log_contains(&H, "residency: no [hsm] pinned token"));
	stop();
}

/* kms-admin report residency --json: the token, the KEK, the audit log and
 * every key with where its versions live. */
static void report_names_every_key(void)
{
	char wrapped[E2E_KEY_ID_SIZE], resident[E2E_KEY_ID_SIZE];
	Kms__Response *r = e2e_create_key(&H);
	assert_true(r && r->status == KMS__STATUS__OK);
	snprintf(wrapped, sizeof wrapped, "%s", r->create_key->key_metadata->key_id);
	kms__response__free_unpacked(r, NULL);
	r = e2e_create_key_as(&H, KMS__KEY_PROTECTION__HSM_RESIDENT);
	assert_true(r && r->status == KMS__STATUS__OK);
	snprintf(resident, sizeof resident, "%s", r->create_key->key_metadata->key_id);
	kms__response__free_unpacked(r, NULL);

	const char *args[] = { "report", "residency", "--json", NULL };
	run_bin_result out = run_kms_admin(H.ipc_url, args);
	if (out.code != 0)
		fail_msg("kms-admin report residency: exit %d: %s", out.code, out.err);
	json_error_t jerr;
	json_t *j = json_loads(out.out, 0, &jerr);
	if (!j)
		fail_msg("report residency --json is not JSON: %s", jerr.text);
	json_t *hsm = json_object_get(j, "hsm");
	assert_string_equal(json_string_value(json_object_get(hsm, "serial")), serial);
	assert_true(json_is_true(json_object_get(hsm, "pinned")));
	assert_string_equal(json_string_value(json_object_get(j, "region")), "in-mum");
	json_t *audit = json_object_get(j, "audit");
	assert_true(json_integer_value(json_object_get(audit, "entries")) > 0);
	assert_non_null(strstr(json_string_value(json_object_get(audit, "origin")), "kms"));
	const char *kek = json_string_value(
	        json_object_get(json_array_get(json_object_get(j, "keks"), 0), "hsm_id"));
	assert_non_null(kek);
	size_t found = 0, i;
	json_t *k;
	json_array_foreach(json_object_get(j, "keys"), i, k) {
		const char *id = json_string_value(json_object_get(k, "key_id"));
		const char *v1_kek = json_string_value(
		        json_object_get(json_array_get(json_object_get(k, "versions"), 0), "kek"));
		if (!strcmp(id, wrapped)) {
			found++;
			assert_string_equal(json_string_value(json_object_get(k, "protection")),
			                    "WRAPPED");
			assert_string_equal(v1_kek, kek);
		} else if (!strcmp(id, resident)) {
			found++;
			assert_string_equal(json_string_value(json_object_get(k, "protection")),
			                    "HSM_RESIDENT");
			assert_string_equal(v1_kek, "");
		}
	}
	assert_int_equal(found, 2);
	json_decref(j);
	run_bin_free(&out);
}

static void pinned_token_starts(void **state)
{
	(void)state;
	char extra[512];
	/* Another token first, then this one: any pin may match. */
	snprintf(extra, sizeof extra,
	         "[hsm]\npinned = Thales | Luna K7 | 0000000000000042\npinned = %s | %s | %s\n",
	         manufacturer, model, serial);
	harness_options o = { .extra_config = extra };
	if (!harness_start(&H, &o))
		fail_msg("kmsd pinned to its own token did not start; see %s", H.log);
	Kms__Response *r = health();
	assert_true(r->health->hsm_pinned);
	assert_string_equal(r->health->hsm_serial, serial);
	kms__response__free_unpacked(r, NULL);
	assert_true(harness_log_contains(&H, "is pinned"));
	/* kms-admin health shows it. */
	const char *args[] = { "health", NULL };
	run_bin_result out = run_kms_admin(H.ipc_url, args);
	char shown[96];
	snprintf(shown, sizeof shown, "%s (pinned)", serial);
	if (out.code != 0 || !strstr(out.out, shown))
		fail_msg("kms-admin health (exit %d) does not show \"%s\": %s%s", out.code, shown,
		         out.out, out.err);
	run_bin_free(&out);
	report_names_every_key();
	stop();
}

/* kmsd must exit non-zero, its log naming the token found. */
static void refused_with(const char *extra)
{
	harness_options o = { .extra_config = extra };
	if (!harness_spawn(&H, &o))
		fail_msg("kmsd could not be spawned; see %s", H.log);
	int code = 0;
	if (!e2e_wait_exit(&H, 30000, &code))
		fail_msg("kmsd on a token it is not pinned to is still running; see %s", H.log);
	assert_int_not_equal(code, 0);
	char needle[160];
	snprintf(needle, sizeof needle, "%s|%s|%s, not one of the [hsm] pinned tokens",
	         manufacturer, model, serial);
	if (!harness_log_contains(&H, needle))
		fail_msg("kmsd's log does not say \"%s\"; see %s", needle, H.log);
}

static void other_tokens_refused(void **state)
{
	(void)state;
	char extra[512];
	/* The same model, another serial (a copy of the token in another
	 * device); then the same serial on another model. */
	snprintf(extra, sizeof extra, "[hsm]\npinned = %s|%s|0000000000000001\n", manufacturer,
	         model);
	refused_with(extra);
	snprintf(extra, sizeof extra, "[hsm]\npinned = %s|Other model|%s\n", manufacturer, serial);
	refused_with(extra);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(unpinned_reports_the_token),
		cmocka_unit_test(pinned_token_starts),
		cmocka_unit_test(other_tokens_refused),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
