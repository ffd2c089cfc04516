/*
 * test_keyring_cache: the keyring's key metadata cache is an LRU bounded by
 * metadata_cache_entries (8 here): every key still works after its entry is
 * evicted, the state it reloads is the store's, and threads racing over more
 * keys than the cache holds neither fail nor leave it over its bound.
 */
#include "tests/support/keyring_test.h"

#include <pthread.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>

#define CAP 8
#define KEYS 40
#define THREADS 4
#define PER_THREAD 1500

static hsm *h;
static keyring *kr;
static char ids[KEYS][KMS_KEYID_TEXT_SIZE];

static int group_setup(void **state)
{
	(void)state;
	h = t_hsm_open();
	keyring_config cfg = { .region = "in-test-1", .metadata_cache_entries = CAP };
	assert_ok(keyring_open(h, t_dir("data"), &cfg, &kr));
	for (int i = 0; i < KEYS; i++)
		t_create(kr, NULL, ids[i]);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	t_assert_token_matches(h, kr);
	keyring_close(kr);
	hsm_close(h);
	return 0;
}

static keyring_cache_stats stats(void)
{
	keyring_cache_stats s;
	keyring_cache_stats_get(kr, &s);
	return s;
}

/* One encrypt under every key, in order: each is a miss, and the cache keeps
 * the last CAP. */
static void test_bounded(void **state)
{
	(void)state;
	keyring_cache_stats before = stats();
	assert_int_equal(before.capacity, CAP);
	for (int i = 0; i < KEYS; i++) {
		keyring_key_use use;
		assert_ok(keyring_encrypt_key(kr, ids[i], T_NOW, &use));
		assert_string_equal(use.key_id_text, ids[i]);
		assert_true(stats().entries <= CAP);
	}
	keyring_cache_stats after = stats();
	assert_int_equal(after.entries, CAP);
	assert_int_equal(after.loads - before.loads, KEYS);
	assert_int_equal(after.evictions - before.evictions,
	                 (after.loads - before.loads) - (after.entries - before.entries));

	/* The newest CAP are hits: no load. */
	for (int i = KEYS - CAP; i < KEYS; i++) {
		keyring_key_use use;
		assert_ok(keyring_encrypt_key(kr, ids[i], T_NOW, &use));
	}
	assert_int_equal(stats().loads, after.loads);

	/* The first key was evicted long ago: a miss that reloads it. */
	keyring_key_use use;
	assert_ok(keyring_encrypt_key(kr, ids[0], T_NOW, &use));
	assert_int_equal(stats().loads, after.loads + 1);
	assert_int_equal(stats().entries, CAP);
}

/* An evicted key's state comes back from the store, not from a stale copy. */
static void test_evicted_state_reloads(void **state)
{
	(void)state;
	keyring_key_use use, back;
	assert_ok(keyring_encrypt_key(kr, ids[1], T_NOW, &use));
	/* Push key 1 out with CAP others. */
	for (int i = 10; i < 10 + CAP; i++)
		assert_ok(keyring_encrypt_key(kr, ids[i], T_NOW, &back));
	uint64_t loads = stats().loads;
	assert_ok(keyring_disable(kr, ids[1]));
	assert_status(keyring_encrypt_key(kr, ids[1], T_NOW, &back), KMS_FAILED_PRECONDITION);
	assert_status(keyring_decrypt_key(kr, use.key_id, use.version, &back),
	              KMS_FAILED_PRECONDITION);
	assert_ok(keyring_enable(kr, ids[1]));
	assert_ok(keyring_decrypt_key(kr, use.key_id, use.version, &back));
	assert_int_equal(back.version, use.version);
	assert_true(stats().loads > loads);
	t_assert_key_works(h, kr, ids[1]);
}

typedef struct race {
	atomic_uint failures;
	unsigned seed[THREADS];
} race;
static race r;

static void *racer(void *arg)
{
	unsigned *seed = arg;
	for (int i = 0; i < PER_THREAD; i++) {
		int k = (int)(rand_r(seed) % KEYS);
		keyring_key_use use, back;
		if (keyring_encrypt_key(kr, ids[k], T_NOW, &use) != KMS_OK ||
		    keyring_decrypt_key(kr, use.key_id, use.version, &back) != KMS_OK ||
		    strcmp(back.key_id_text, ids[k]) != 0)
			atomic_fetch_add(&r.failures, 1);
	}
	return NULL;
}

static void test_threads_over_capacity(void **state)
{
	(void)state;
	pthread_t threads[THREADS];
	keyring_cache_stats before = stats();
	for (int i = 0; i < THREADS; i++) {
		r.seed[i] = 12345u + (unsigned)i;
		assert_int_equal(pthread_create(&threads[i], NULL, racer, &r.seed[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(threads[i], NULL), 0);
	assert_int_equal(atomic_load(&r.failures), 0);
	keyring_cache_stats after = stats();
	assert_true(after.evictions > before.evictions);
	/* Quiet now: one more miss drains whatever busy stripes left over. */
	keyring_key_use use;
	int victim = -1;
	for (int i = 0; i < KEYS && victim < 0; i++) {
		uint64_t loads = stats().loads;
		assert_ok(keyring_encrypt_key(kr, ids[i], T_NOW, &use));
		if (stats().loads > loads)
			victim = i;
	}
	assert_true(victim >= 0);
	assert_int_equal(stats().entries, CAP);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bounded),
		cmocka_unit_test(test_evicted_state_reloads),
		cmocka_unit_test(test_threads_over_capacity),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
