/*
 * test_authz_rate: the token buckets (kms/authz/authz_rate.h) on a fake
 * clock the test moves by hand: a burst then THROTTLED with the exact
 * retry-after, the refill, another principal unaffected, the key bucket
 * shared across principals, rate 0 = off, the table bound with LRU
 * eviction (at the real 65,536 too), threads sharing one limiter; and the
 * four [limits] config keys.
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
#include <unistd.h>

#include "common/error.h"
#include "kms/authz/authz_rate.h"
#include "kms/config.h"

static uint64_t fake_now_us = 1000000;

static uint64_t fake_clock(void *arg)
{
	(void)arg;
	return fake_now_us;
}

static authz_rate *limiter(uint32_t prate, uint32_t pburst, uint32_t krate, uint32_t kburst,
                           size_t max)
{
	authz_rate_config cfg = { .principal_rate = prate, .principal_burst = pburst,
	                          .key_rate = krate, .key_burst = kburst, .max_entries = max,
	                          .clock = fake_clock };
	authz_rate *rl = NULL;
	assert_int_equal(authz_rate_new(&cfg, &rl), KMS_OK);
	return rl;
}

static void burst_then_throttled_then_refill(void **state)
{
	(void)state;
	/* 2 per second, a burst of 3: a token every 500 ms. */
	authz_rate *rl = limiter(2, 3, 0, 0, 0);
	authz_rate_verdict v;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(authz_rate_take(rl, "app", "k-1", &v), KMS_OK);
		assert_true(v.allowed);
	}
	assert_int_equal(authz_rate_take(rl, "app", "k-1", &v), KMS_THROTTLED);
	assert_false(v.allowed);
	assert_int_equal(v.limited, AUTHZ_RATE_PRINCIPAL);
	assert_int_equal(v.retry_after_ms, 500);
	assert_string_equal(kms_error_message(),
	                    "principal app is over its rate limit: retry after 500 ms");

	/* Another principal is unaffected (the key has no limit here). */
	assert_int_equal(authz_rate_take(rl, "other", "k-1", &v), KMS_OK);

	/* 499.5 ms later: still short, by 0.5 ms, rounded up to 1. */
	fake_now_us += 499500;
	assert_int_equal(authz_rate_take(rl, "app", "k-1", &v), KMS_THROTTLED);
	assert_int_equal(v.retry_after_ms, 1);
	/* The retry-after is exact: waiting it out is enough. */
	fake_now_us += 500;
	assert_int_equal(authz_rate_take(rl, "app", "k-1", &v), KMS_OK);
	assert_int_equal(authz_rate_take(rl, "app", "k-1", &v), KMS_THROTTLED);
	assert_int_equal(v.retry_after_ms, 500);

	/* A long idle refills to the burst, not beyond. */
	fake_now_us += 3600ull * 1000000;
	for (int i = 0; i < 3; i++)
		assert_int_equal(authz_rate_take(rl, "app", NULL, &v), KMS_OK);
	assert_int_equal(authz_rate_take(rl, "app", NULL, &v), KMS_THROTTLED);
	authz_rate_free(rl);
}

static void key_bucket_is_shared(void **state)
{
	(void)state;
	/* Key: 1 per second, burst 2; principals unlimited. */
	authz_rate *rl = limiter(0, 0, 1, 2, 0);
	authz_rate_verdict v;
	assert_int_equal(authz_rate_take(rl, "a", "k-1", &v), KMS_OK);
	assert_int_equal(authz_rate_take(rl, "b", "k-1", &v), KMS_OK);
	assert_int_equal(authz_rate_take(rl, "c", "k-1", &v), KMS_THROTTLED);
	assert_int_equal(v.limited, AUTHZ_RATE_KEY);
	assert_int_equal(v.retry_after_ms, 1000);
	assert_non_null(strstr(kms_error_message(), "key k-1 is over its rate limit"));
	/* Another key, and a key-less operation, are unaffected. */
	assert_int_equal(authz_rate_take(rl, "c", "k-2", &v), KMS_OK);
	assert_int_equal(authz_rate_take(rl, "c", NULL, &v), KMS_OK);
	authz_rate_free(rl);
}

/* Both limits: a refusal by one takes nothing from the other. */
static void both_or_neither(void **state)
{
	(void)state;
	authz_rate *rl = limiter(1, 5, 1, 1, 0);
	authz_rate_verdict v;
	assert_int_equal(authz_rate_take(rl, "app", "k-1", &v), KMS_OK);
	/* The key is empty: refused, and the principal keeps its tokens. */
	for (int i = 0; i < 10; i++)
		assert_int_equal(authz_rate_take(rl, "app", "k-1", &v), KMS_THROTTLED);
	/* Four more keys, each fresh: the principal's four remaining tokens. */
	static const char *const fresh[] = { "k-2", "k-3", "k-4", "k-5" };
	for (int i = 0; i < 4; i++)
		assert_int_equal(authz_rate_take(rl, "app", fresh[i], &v), KMS_OK);
	assert_int_equal(authz_rate_take(rl, "app", "k-6", &v), KMS_THROTTLED);
	assert_int_equal(v.limited, AUTHZ_RATE_PRINCIPAL);
	/* Now both are empty: the retry-after is the longer wait. */
	assert_int_equal(authz_rate_take(rl, "app", "k-1", &v), KMS_THROTTLED);
	assert_int_equal(v.limited, AUTHZ_RATE_PRINCIPAL | AUTHZ_RATE_KEY);
	assert_int_equal(v.retry_after_ms, 1000);
	authz_rate_free(rl);
}

static void off_means_off(void **state)
{
	(void)state;
	authz_rate *rl = limiter(0, 0, 0, 0, 0);
	authz_rate_verdict v;
	for (int i = 0; i < 10000; i++)
		assert_int_equal(authz_rate_take(rl, "app", "k-1", &v), KMS_OK);
	size_t np, nk;
	authz_rate_entries(rl, &np, &nk);
	assert_int_equal(np, 0);
	assert_int_equal(nk, 0);
	authz_rate_free(rl);

	/* Burst 0: the rate. */
	rl = limiter(3, 0, 0, 0, 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(authz_rate_take(rl, "app", NULL, &v), KMS_OK);
	assert_int_equal(authz_rate_take(rl, "app", NULL, &v), KMS_THROTTLED);
	assert_int_equal(v.retry_after_ms, 334);
	authz_rate_free(rl);

	/* Out of bounds: refused at creation. */
	authz_rate_config bad = { .principal_rate = AUTHZ_RATE_MAX + 1 };
	assert_int_equal(authz_rate_new(&bad, &rl), KMS_INVALID_ARGUMENT);
	assert_null(rl);
}

static void long_name_refused(void **state)
{
	(void)state;
	authz_rate *rl = limiter(1, 1, 1, 1, 0);
	char name[AUTHZ_RATE_NAME_MAX + 2];
	memset(name, 'a', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	authz_rate_verdict v;
	assert_int_equal(authz_rate_take(rl, name, NULL, &v), KMS_INVALID_ARGUMENT);
	assert_false(v.allowed);
	name[AUTHZ_RATE_NAME_MAX] = '\0';
	assert_int_equal(authz_rate_take(rl, name, NULL, &v), KMS_OK);
	authz_rate_free(rl);
}

static void eviction_bound_and_lru(void **state)
{
	(void)state;
	/* A table of 4: the least recently used is dropped, and starts full. */
	authz_rate *rl = limiter(1, 1, 0, 0, 4);
	authz_rate_verdict v;
	char name[16];
	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof name, "p%d", i);
		assert_int_equal(authz_rate_take(rl, name, NULL, &v), KMS_OK);
	}
	/* p0 is used again: p1 is now the oldest. */
	assert_int_equal(authz_rate_take(rl, "p0", NULL, &v), KMS_THROTTLED);
	assert_int_equal(authz_rate_take(rl, "p4", NULL, &v), KMS_OK);
	size_t np, nk;
	authz_rate_entries(rl, &np, &nk);
	assert_int_equal(np, 4);
	/* p1 was dropped: a fresh, full bucket. p0 was kept: still empty. */
	assert_int_equal(authz_rate_take(rl, "p1", NULL, &v), KMS_OK);
	assert_int_equal(authz_rate_take(rl, "p0", NULL, &v), KMS_THROTTLED);
	authz_rate_free(rl);

	/* The real bound: 70,000 principals and keys leave 65,536 of each. */
	rl = limiter(1, 1, 1, 1, 0);
	for (int i = 0; i < 70000; i++) {
		snprintf(name, sizeof name, "p%d", i);
		char key[16];
		snprintf(key, sizeof key, "k%d", i);
		assert_int_equal(authz_rate_take(rl, name, key, &v), KMS_OK);
	}
	authz_rate_entries(rl, &np, &nk);
	assert_int_equal(np, AUTHZ_RATE_ENTRIES_MAX);
	assert_int_equal(nk, AUTHZ_RATE_ENTRIES_MAX);
	/* The newest are still there (empty), the oldest gone (full again). */
	assert_int_equal(authz_rate_take(rl, "p69999", NULL, &v), KMS_THROTTLED);
	assert_int_equal(authz_rate_take(rl, "p0", NULL, &v), KMS_OK);
	authz_rate_free(rl);
}

/* Threads share one limiter: exactly the burst is allowed in all. */
#define THREADS 4
#define TAKES_PER_THREAD 500

static void *taker(void *arg)
{
	authz_rate *rl = arg;
	size_t *allowed = calloc(1, sizeof *allowed);
	for (int i = 0; i < TAKES_PER_THREAD && allowed; i++) {
		authz_rate_verdict v;
		if (authz_rate_take(rl, "shared", "k-1", &v) == KMS_OK)
			(*allowed)++;
	}
	return allowed;
}

static void threads_share_exactly(void **state)
{
	(void)state;
	authz_rate *rl = limiter(1, 100, 1, 1000, 0);
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, taker, rl), 0);
	size_t total = 0;
	for (int i = 0; i < THREADS; i++) {
		void *r = NULL;
		assert_int_equal(pthread_join(t[i], &r), 0);
		assert_non_null(r);
		total += *(size_t *)r;
		free(r);
	}
	/* The fake clock stood still: the burst, no more, no less. */
	assert_int_equal(total, 100);
	authz_rate_free(rl);
}

static kms_status load_limits(const char *lines, kmsd_config *cfg)
{
	char path[] = "/tmp/kms-authz-config-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	assert_non_null(f);
	fprintf(f, "[kmsd]\ndata_dir = /tmp\n[listen]\nurl = ipc:///tmp/x.sock\n[hsm]\n"
	           "token_label = t\npin_env = KMS_PIN\n[limits]\n%s\n", lines);
	fclose(f);
	kms_status st = kmsd_config_load(path, cfg);
	unlink(path);
	return st;
}

static void config_keys(void **state)
{
	(void)state;
	static kmsd_config cfg;
	assert_int_equal(load_limits("", &cfg), KMS_OK);
	assert_int_equal(cfg.principal_rate, 0);
	assert_int_equal(cfg.principal_burst, 0);
	assert_int_equal(cfg.key_rate, 0);
	assert_int_equal(cfg.key_burst, 0);
	assert_int_equal(load_limits("principal_rate = 50\nprincipal_burst = 100\n"
	                             "key_rate = 1000\nkey_burst = 1000000", &cfg), KMS_OK);
	assert_int_equal(cfg.principal_rate, 50);
	assert_int_equal(cfg.principal_burst, 100);
	assert_int_equal(cfg.key_rate, 1000);
	assert_int_equal(cfg.key_burst, 1000000);
	assert_int_equal(load_limits("key_burst = 1000001", &cfg), KMS_INVALID_ARGUMENT);
	assert_non_null(strstr(kms_error_message(), "key_burst"));
	assert_non_null(strstr(kms_error_message(), "0 (off) to 1000000"));
	assert_null(strchr(kms_error_message(), '\n'));
	assert_int_equal(load_limits("principal_rate = -1", &cfg), KMS_INVALID_ARGUMENT);
	assert_int_equal(load_limits("principal_rate = fast", &cfg), KMS_INVALID_ARGUMENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(burst_then_throttled_then_refill),
		cmocka_unit_test(key_bucket_is_shared),
		cmocka_unit_test(both_or_neither),
		cmocka_unit_test(off_means_off),
		cmocka_unit_test(long_name_refused),
		cmocka_unit_test(eviction_bound_and_lru),
		cmocka_unit_test(threads_share_exactly),
		cmocka_unit_test(config_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
