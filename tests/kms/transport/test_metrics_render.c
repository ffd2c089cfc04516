/*
 * test_metrics_render: kms/transport/metrics.c on its own, without a kmsd:
 * the principal labels stay bounded (the first METRICS_PRINCIPALS_MAX
 * principals, then "other") when four threads deny 40 principals at once,
 * no label is printed twice, every denial is counted once; a principal's
 * quote, backslash and newline are escaped in its label; a histogram's
 * buckets, +Inf, _sum and _count for one observation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "kms/kmsd.h"
#include "kms/transport/metrics.h"

#define THREADS 4
#define PRINCIPALS 40

static void *deny_all(void *arg)
{
	(void)arg;
	for (int i = 0; i < PRINCIPALS; i++) {
		char name[16];
		snprintf(name, sizeof name, "p%02d", i);
		metrics_authz_denied(2, name);
	}
	return NULL;
}

static char *render(void)
{
	static kmsd d; /* no audit log, keyring or HSM: their families are left out */
	d.started_at = kms_now();
	char *text = NULL;
	size_t len = 0;
	assert_int_equal(metrics_render(&d, &text, &len), KMS_OK);
	assert_int_equal(strlen(text), len);
	return text;
}

static void principals_bounded_and_escaped(void **state)
{
	(void)state;
	/* First, so that it has a label of its own. */
	metrics_throttled("principal", "a\"b\\c\nd");
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, deny_all, NULL), 0);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	char *text = render();
	static const char family[] = "kms_authz_denied_by_principal_total{principal=\"";
	char labels[64][32];
	size_t n = 0;
	unsigned long long total = 0, other = 0;
	for (const char *l = text; (l = strstr(l, family)) != NULL; l++) {
		const char *v = l + strlen(family);
		size_t vlen = strcspn(v, "\"");
		assert_true(n < 64 && vlen < sizeof labels[0]);
		snprintf(labels[n], sizeof labels[0], "%.*s", (int)vlen, v);
		for (size_t j = 0; j < n; j++)
			assert_string_not_equal(labels[j], labels[n]);
		unsigned long long count = strtoull(v + vlen + 3, NULL, 10);
		total += count;
		if (!strcmp(labels[n], "other"))
			other = count;
		n++;
	}
	printf("measured: %zu principal labels for %d principals and the escaped one; "
	       "\"other\" %llu of %llu denials\n", n, PRINCIPALS, other, total);
	/* 31 of p00..p39, the escaped one, other (fewer if two threads raced
	 * to claim slots for one name: the exposition adds those up). */
	assert_true(n <= METRICS_PRINCIPALS_MAX + 1);
	assert_true(total == THREADS * PRINCIPALS);
	assert_true(other >= THREADS * (PRINCIPALS - (METRICS_PRINCIPALS_MAX - 1)));
	assert_non_null(strstr(text, "kms_throttled_by_principal_total"
	                             "{principal=\"a\\\"b\\\\c\\nd\"} 1\n"));
	assert_non_null(strstr(text, "kms_authz_denied_total{step=\"2\"} 160\n"));
	free(text);
}

static void histogram_of_one(void **state)
{
	(void)state;
	metrics_record(NULL, KMS_OK, 70); /* 70 us, an undecoded request */
	char *text = render();
	static const char *const lines[] = {
		"kms_request_duration_seconds_bucket{operation=\"undecoded\",le=\"0.00001\"} 0\n",
		"kms_request_duration_seconds_bucket{operation=\"undecoded\",le=\"0.000025\"} 0\n",
		"kms_request_duration_seconds_bucket{operation=\"undecoded\",le=\"0.00005\"} 0\n",
		"kms_request_duration_seconds_bucket{operation=\"undecoded\",le=\"0.0001\"} 1\n",
		"kms_request_duration_seconds_bucket{operation=\"undecoded\",le=\"10\"} 1\n",
		"kms_request_duration_seconds_bucket{operation=\"undecoded\",le=\"+Inf\"} 1\n",
		"kms_request_duration_seconds_sum{operation=\"undecoded\"} 0.00007\n",
		"kms_request_duration_seconds_count{operation=\"undecoded\"} 1\n",
		"kms_requests_total{operation=\"undecoded\",status=\"OK\"} 1\n",
	};
	for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
		if (!strstr(text, lines[i]))
			fail_msg("missing: %s", lines[i]);
	}
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(principals_bounded_and_escaped),
		cmocka_unit_test(histogram_of_one),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
