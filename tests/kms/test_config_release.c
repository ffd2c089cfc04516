/*
 * test_config_release: kms/config.c as a production build compiles it
 * (without KMS_TEST_SETTINGS): [limits] seconds_per_day, a setting for
 * tests that makes deletion windows pass in minutes, is refused with one
 * line, while the real length of a day is still accepted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "kms/config.h"

static kms_status load_with(const char *limits_line, kmsd_config *cfg)
{
	char path[] = "/tmp/kms-config-release-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	assert_non_null(f);
	fprintf(f, "[kmsd]\ndata_dir = /tmp\n[listen]\nurl = ipc:///tmp/x.sock\n[hsm]\n"
	           "token_label = t\npin_env = KMS_PIN\n[limits]\n%s\n", limits_line);
	fclose(f);
	kms_status st = kmsd_config_load(path, cfg);
	unlink(path);
	return st;
}

static void shortened_day_refused(void **state)
{
	(void)state;
	static kmsd_config cfg;
	assert_int_equal(load_with("seconds_per_day = 60", &cfg), KMS_INVALID_ARGUMENT);
	assert_non_null(strstr(kms_error_message(), "seconds_per_day: a setting for tests only"));
	assert_null(strchr(kms_error_message(), '\n'));
	assert_int_equal(load_with("seconds_per_day = 86400", &cfg), KMS_OK);
	assert_int_equal(cfg.seconds_per_day, 86400);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(shortened_day_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
