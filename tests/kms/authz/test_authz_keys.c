/*
 * The store-backed access key source (kms/authz/authz_keys.h) on a real
 * SoftHSM token and a real store: secrets unwrapped once and cached,
 * state read on every lookup (a revocation or a disabled principal is
 * seen by the next one; a deleted principal's key refused as revoked,
 * not unknown), the cache bounded with the least recently used
 * dropped, a secret held by a verifier never dropped under it, and
 * workers looking up concurrently.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kms/secmem.h>

#include "kms/authz/authz_keys.h"
#include "kms/authz/authz_secrets.h"
#include "kms/store/store.h"
#include "tests/support/keyring_test.h"

#define N_KEYS 6      /* 3 principals x 2 active keys */
#define THREADS 8
#define ROUNDS 200

static hsm *h;
static store *st;
static char ids[N_KEYS][AUTHZ_ID_SIZE];
static uint8_t secrets[N_KEYS][AUTHZ_SECRET_LEN];
static const char *const owners[N_KEYS] = { "svc-a", "svc-a", "svc-b", "svc-b", "svc-c", "svc-c" };

static int group_setup(void **state)
{
	(void)state;
	h = t_hsm_open();
	bool created;
	assert_ok(authz_secrets_key_ensure(h, &created));
	assert_ok(store_open(t_dir("store"), &st, &created));
	int64_t now = (int64_t)time(NULL);
	for (size_t i = 0; i < N_KEYS; i++) {
		if (i % 2 == 0) {
			store_principal p = { .roles = PRINCIPAL_ROLE_APP, .state = PRINCIPAL_STATE_ENABLED,
			                      .created_at = now, .updated_at = now };
			snprintf(p.name, sizeof p.name, "%s", owners[i]);
			assert_ok(store_principal_create(st, &p));
		}
		uint8_t *secret = NULL;
		store_access_key k = { .wrapped_len = AUTHZ_WRAPPED_LEN,
		                       .state = ACCESS_KEY_STATE_ACTIVE, .created_at = now };
		assert_ok(authz_secrets_new(h, owners[i], ids[i], &secret, k.wrapped));
		memcpy(secrets[i], secret, AUTHZ_SECRET_LEN);
		kms_secure_free(secret);
		memcpy(k.id, ids[i], sizeof k.id);
		snprintf(k.principal, sizeof k.principal, "%s", owners[i]);
		assert_ok(store_access_key_create(st, &k));
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	store_close(st);
	hsm_close(h);
	return 0;
}

/* One lookup of ids[i] that must succeed with its secret; released. */
static void lookup_ok(authz_key_source src, size_t i)
{
	authz_key key;
	assert_ok(src.lookup(src.ctx, ids[i], &key));
	assert_string_equal(key.principal, owners[i]);
	assert_false(key.revoked);
	assert_false(key.principal_disabled);
	assert_non_null(key.secret);
	assert_memory_equal(key.secret, secrets[i], AUTHZ_SECRET_LEN);
	src.release(src.ctx, &key);
	assert_null(key.secret);
}

static void test_unknown_and_cached(void **state)
{
	(void)state;
	authz_keys *k;
	assert_ok(authz_keys_open(st, h, &k));
	authz_key_source src = authz_keys_source(k);
	authz_key key;
	assert_int_equal(src.lookup(src.ctx, "AKAAAAAAAAAAAAAAAAAAAA", &key), KMS_NOT_FOUND);
	kms_error_clear();
	lookup_ok(src, 0);
	lookup_ok(src, 0);
	lookup_ok(src, 1);
	assert_int_equal(authz_keys_unwraps(k), 2); /* the second lookup of key 0 hit */
	assert_int_equal(authz_keys_cached(k), 2);
	authz_keys_close(k);
}

static void test_state_read_every_time(void **state)
{
	(void)state;
	authz_keys *k;
	assert_ok(authz_keys_open(st, h, &k));
	authz_key_source src = authz_keys_source(k);
	authz_key key;
	lookup_ok(src, 2); /* cached now */
	int64_t now = (int64_t)time(NULL);
	assert_ok(store_principal_set_state(st, "svc-b", PRINCIPAL_STATE_DISABLED, now));
	assert_ok(src.lookup(src.ctx, ids[2], &key));
	assert_true(key.principal_disabled);
	assert_null(key.secret);
	src.release(src.ctx, &key);
	assert_ok(store_principal_set_state(st, "svc-b", PRINCIPAL_STATE_ENABLED, now));
	lookup_ok(src, 2);
	assert_ok(store_access_key_revoke(st, ids[3], now));
	assert_ok(src.lookup(src.ctx, ids[3], &key));
	assert_true(key.revoked);
	assert_null(key.secret);
	src.release(src.ctx, &key);
	authz_keys_close(k);
}

/* A deleted principal's key is known (revoked with it), not unknown: the
 * verifier's audit reason is revoked_key. Last: it deletes svc-c. */
static void test_deleted_principal(void **state)
{
	(void)state;
	authz_keys *k;
	assert_ok(authz_keys_open(st, h, &k));
	authz_key_source src = authz_keys_source(k);
	lookup_ok(src, 4); /* cached now */
	assert_ok(store_principal_delete(st, "svc-c", (int64_t)time(NULL)));
	authz_key key;
	assert_ok(src.lookup(src.ctx, ids[4], &key));
	assert_string_equal(key.principal, "svc-c");
	assert_true(key.revoked);
	assert_true(key.principal_disabled);
	assert_null(key.secret);
	src.release(src.ctx, &key);
	authz_keys_close(k);
}

static void test_bounded_lru(void **state)
{
	(void)state;
	authz_keys *k;
	assert_int_equal(authz_keys_open_capped(st, h, 0, &k), KMS_INVALID_ARGUMENT);
	kms_error_clear();
	assert_ok(authz_keys_open_capped(st, h, 2, &k));
	authz_key_source src = authz_keys_source(k);
	lookup_ok(src, 0);
	lookup_ok(src, 1);
	lookup_ok(src, 0);                        /* 1 is now the least recently used */
	lookup_ok(src, 4);                        /* drops 1 */
	assert_int_equal(authz_keys_cached(k), 2);
	size_t before = authz_keys_unwraps(k);
	lookup_ok(src, 0);                        /* still cached */
	assert_int_equal(authz_keys_unwraps(k), before);
	lookup_ok(src, 1);                        /* was dropped: unwrapped again */
	assert_int_equal(authz_keys_unwraps(k), before + 1);

	/* Held secrets are never dropped: with both slots pinned, a third key
	 * comes in its own block, and the held ones stay intact. */
	authz_key a, b, c;
	assert_ok(src.lookup(src.ctx, ids[0], &a));
	assert_ok(src.lookup(src.ctx, ids[1], &b));
	assert_ok(src.lookup(src.ctx, ids[5], &c));
	assert_memory_equal(a.secret, secrets[0], AUTHZ_SECRET_LEN);
	assert_memory_equal(b.secret, secrets[1], AUTHZ_SECRET_LEN);
	assert_memory_equal(c.secret, secrets[5], AUTHZ_SECRET_LEN);
	src.release(src.ctx, &c);
	src.release(src.ctx, &b);
	src.release(src.ctx, &a);
	assert_int_equal(authz_keys_cached(k), 2);
	authz_keys_close(k);
}

typedef struct worker {
	authz_key_source src;
	unsigned seed;
	size_t bad;
} worker;

static void *work(void *arg)
{
	worker *w = arg;
	static const size_t live[] = { 0, 1, 2, 4, 5 }; /* 3 is revoked above */
	for (int r = 0; r < ROUNDS; r++) {
		size_t i = live[rand_r(&w->seed) % 5];
		authz_key key;
		if (w->src.lookup(w->src.ctx, ids[i], &key) != KMS_OK) {
			w->bad++;
			continue;
		}
		if (!key.secret || memcmp(key.secret, secrets[i], AUTHZ_SECRET_LEN) != 0)
			w->bad++;
		w->src.release(w->src.ctx, &key);
	}
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	authz_keys *k;
	assert_ok(authz_keys_open_capped(st, h, 3, &k)); /* fewer slots than keys: evictions */
	pthread_t t[THREADS];
	worker w[THREADS];
	for (int i = 0; i < THREADS; i++) {
		w[i] = (worker){ .src = authz_keys_source(k), .seed = (unsigned)i + 1 };
		assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	size_t bad = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		bad += w[i].bad;
	}
	print_message("measured: %d lookups on %d threads, %zu unwraps through the HSM, "
	              "%zu cached\n", THREADS * ROUNDS, THREADS, authz_keys_unwraps(k),
	              authz_keys_cached(k));
	assert_int_equal(bad, 0);
	assert_true(authz_keys_cached(k) <= 3);
	authz_keys_close(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unknown_and_cached),
		cmocka_unit_test(test_state_read_every_time),
		cmocka_unit_test(test_bounded_lru),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_deleted_principal),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
