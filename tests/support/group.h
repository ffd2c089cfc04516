/*
 * group.h: cmocka's group runner, made to fail on a failed group teardown.
 *
 * cmocka 1.1 prints "GROUP TEARDOWN" as failed and still returns 0 from
 * cmocka_run_group_tests when only the teardown failed. Our teardowns stop
 * kmsd and fail when it does not exit 0 (a leak or an error found by the
 * sanitizers at shutdown, a crash while draining): that must fail the test.
 * Include this after <cmocka.h>; cmocka_run_group_tests then means
 * kms_run_group, which returns non-zero when the teardown failed.
 */
#ifndef KMS_TESTS_SUPPORT_GROUP_H
#define KMS_TESTS_SUPPORT_GROUP_H

#include <stdio.h>

static CMFixtureFunction kms_group_real_teardown;
static int kms_group_teardown_rc;

static int kms_group_teardown(void **state)
{
	kms_group_teardown_rc = kms_group_real_teardown(state);
	return kms_group_teardown_rc;
}

static inline int kms_run_group(const char *name, const struct CMUnitTest *tests, size_t n,
                                CMFixtureFunction setup, CMFixtureFunction teardown)
{
	kms_group_real_teardown = teardown;
	kms_group_teardown_rc = 0;
	int failed = _cmocka_run_group_tests(name, tests, n, setup,
	                                     teardown ? kms_group_teardown : NULL);
	if (kms_group_teardown_rc != 0) {
		fprintf(stderr, "%s: the group teardown failed (%d): the test fails\n", name,
		        kms_group_teardown_rc);
		return failed + 1;
	}
	return failed;
}

#undef cmocka_run_group_tests
#define cmocka_run_group_tests(group_tests, group_setup, group_teardown)                     \
	kms_run_group(#group_tests, group_tests, sizeof(group_tests) / sizeof((group_tests)[0]), \
	              group_setup, group_teardown)

#endif
