/* The unwrapped-key cache on a real SoftHSM token: its objects are
 * sensitive and non-extractable, it is bounded, concurrent first uses
 * coalesce into one load, an evicted entry in use is destroyed only after
 * its last user, and it recovers from losing its session. */
#include <stdio.h>
#include <time.h>

#include "tests/hsm/wrap_store.h"

#define THREADS 16
#define WAIT_SECONDS 20

static hsm *h;
static test_raw raw;
static test_store store;
static hsm_object_id kek;

static int setup(void **state)
{
	h = test_open();
	memset(&store, 0, sizeof store);
	kek = test_id("kms-kek-00000001");
	bool exists = false;
	assert_int_equal(hsm_kek_exists(h, &kek, &exists), KMS_OK);
	if (!exists)
		assert_int_equal(hsm_kek_create(h, &kek, "kek"), KMS_OK);
	test_raw_open(&raw);
	return 0;
}

static int teardown(void **state)
{
	test_raw_close(&raw);
	hsm_close(h);
	return 0;
}

static kms_status seal_with(const hsm_object_id *name, uint8_t sealed[48])
{
	uint8_t iv[HSM_GCM_IV_LEN] = { 9 }, pt[32] = "the same plaintext for each key";
	return hsm_wrapped_gcm_encrypt(h, name, store_loader, &store, iv, NULL, 0, pt, 32, sealed, 48);
}

static void use(const char *name)
{
	hsm_object_id id = test_id(name);
	uint8_t sealed[48];
	if (seal_with(&id, sealed) != KMS_OK)
		fail_msg("encrypt %s: %s", name, kms_error_message());
}

static hsm_keycache_stats stats_now(void)
{
	hsm_keycache_stats s;
	hsm_keycache_stats_get(h, &s);
	return s;
}

/* The cached object of name, pinned; the caller releases e. */
static CK_OBJECT_HANDLE cached_handle(const char *name, hsm_keycache_entry **e)
{
	hsm_object_id id = test_id(name);
	assert_int_equal(hsm_keycache_acquire(h, &id, store_loader, &store, e), KMS_OK);
	return hsm_keycache_entry_handle(*e);
}

static void cached_objects_are_sensitive(void **state)
{
	store_generate(h, &store, "aes-1", &kek, HSM_KEY_TYPE_AES256);
	store_generate(h, &store, "mac-1", &kek, HSM_KEY_TYPE_HMAC_SHA256);
	const char *names[] = { "aes-1", "mac-1" };
	for (int i = 0; i < 2; i++) {
		hsm_keycache_entry *e;
		CK_OBJECT_HANDLE obj = cached_handle(names[i], &e);
		uint8_t value[64];
		assert_int_equal(raw_read(&raw, obj, CKA_VALUE, value, sizeof value),
		                 CKR_ATTRIBUTE_SENSITIVE);
		assert_false(test_raw_bool(&raw, obj, CKA_EXTRACTABLE));
		assert_true(test_raw_bool(&raw, obj, CKA_SENSITIVE));
		assert_false(test_raw_bool(&raw, obj, CKA_TOKEN));
		assert_false(test_raw_bool(&raw, obj, CKA_WRAP));
		assert_false(test_raw_bool(&raw, obj, CKA_UNWRAP));
		bool aes = i == 0;
		assert_true(test_raw_bool(&raw, obj, CKA_ENCRYPT) == aes);
		assert_true(test_raw_bool(&raw, obj, CKA_DECRYPT) == aes);
		assert_true(test_raw_bool(&raw, obj, CKA_SIGN) == !aes);
		assert_true(test_raw_bool(&raw, obj, CKA_VERIFY) == !aes);
		assert_false(test_raw_bool(&raw, obj, CKA_DERIVE));
		/* It lives in the cache's own session. */
		CK_SESSION_INFO info;
		assert_int_equal(raw.p11->C_GetSessionInfo(hsm_keycache_session(h), &info), CKR_OK);
		hsm_keycache_release(h, e);
	}
	hsm_keycache_stats s = stats_now();
	assert_int_equal(s.entries, 2);
	assert_int_equal(s.misses, 2);
	assert_int_equal(s.hits, 0);
	assert_int_equal(s.unwraps, 2);
	assert_int_equal(s.capacity, HSM_KEYCACHE_DEFAULT_ENTRIES);
}

static void bounded(void **state)
{
	char name[32];
	assert_int_equal(hsm_keycache_configure(h, 8), KMS_OK);
	unsigned long before = raw_session_objects(&raw, CKO_SECRET_KEY);
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof name, "bounded-%03d", i);
		store_generate(h, &store, name, &kek, HSM_KEY_TYPE_AES256);
	}
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof name, "bounded-%03d", i);
		use(name);
		hsm_keycache_stats s = stats_now();
		assert_true(s.entries <= 8);
	}
	hsm_keycache_stats s = stats_now();
	assert_int_equal(s.entries, 8);
	assert_int_equal(s.misses, 100);
	assert_int_equal(s.unwraps, 100);
	assert_int_equal(s.evictions, 92);
	/* The evicted objects are gone from the HSM too. */
	assert_int_equal(raw_session_objects(&raw, CKO_SECRET_KEY), before + 8);

	/* The 8 most recent are hits; using the oldest of them keeps it. */
	use("bounded-092");
	use("bounded-099");
	assert_int_equal(stats_now().hits, 2);
	use("bounded-000"); /* evicts the least recently used: bounded-093 */
	use("bounded-092");
	s = stats_now();
	assert_int_equal(s.hits, 3);
	assert_int_equal(s.evictions, 93);
	use("bounded-093");
	assert_int_equal(stats_now().misses, 102);

	/* Shrinking evicts at once. */
	assert_int_equal(hsm_keycache_configure(h, 2), KMS_OK);
	s = stats_now();
	assert_int_equal(s.entries, 2);
	assert_int_equal(s.evictions, 100);
	assert_int_equal(raw_session_objects(&raw, CKO_SECRET_KEY), before + 2);
	assert_int_equal(hsm_keycache_configure(h, 0), KMS_INVALID_ARGUMENT);
}

/* --- coalescing --- */

typedef struct racer {
	pthread_t thread;
	pthread_barrier_t *start;
	kms_status status;
	char message[KMS_ERROR_MAX];
} racer;

static void *race(void *arg)
{
	racer *r = arg;
	hsm_object_id id = test_id("shared");
	uint8_t sealed[48];
	pthread_barrier_wait(r->start);
	r->status = seal_with(&id, sealed);
	if (r->status != KMS_OK)
		snprintf(r->message, sizeof r->message, "%s", kms_error_message());
	return NULL;
}

static kms_status fail_with;

/* Holds the load until the other THREADS-1 uses wait on it (bounded), so
 * the coalescing is seen, not assumed; then answers fail_with. */
static kms_status wait_for_waiters(test_store *s, const hsm_object_id *name)
{
	struct timespec start, now, pause = { 0, 1000000 };
	clock_gettime(CLOCK_MONOTONIC, &start);
	uint64_t want = *(uint64_t *)s->hook_ctx;
	for (;;) {
		if (stats_now().coalesced >= want)
			break;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - start.tv_sec > WAIT_SECONDS)
			break; /* the assertions on the counters report it */
		nanosleep(&pause, NULL);
	}
	if (fail_with != KMS_OK)
		return KMS_FAIL(fail_with, "test store: the store is down");
	return KMS_OK;
}

static void run_race(racer *r)
{
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, THREADS);
	for (int i = 0; i < THREADS; i++) {
		r[i].start = &start;
		assert_int_equal(pthread_create(&r[i].thread, NULL, race, &r[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(r[i].thread, NULL);
	pthread_barrier_destroy(&start);
}

static void coalescing(void **state)
{
	store_generate(h, &store, "shared", &kek, HSM_KEY_TYPE_AES256);
	uint64_t want = THREADS - 1;
	store.hook = wait_for_waiters;
	store.hook_ctx = &want;

	/* A failed load: every waiter gets its failure, nothing is remembered. */
	racer r[THREADS];
	memset(r, 0, sizeof r);
	fail_with = KMS_UNAVAILABLE;
	run_race(r);
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(r[i].status, KMS_UNAVAILABLE);
		assert_non_null(strstr(r[i].message, "the store is down"));
	}
	hsm_keycache_stats s = stats_now();
	assert_int_equal(store.loads, 1);
	assert_int_equal(s.coalesced, THREADS - 1);
	assert_int_equal(s.unwraps, 0);
	assert_int_equal(s.entries, 0);

	/* The next first use tries again: one loader call, one unwrap for all. */
	memset(r, 0, sizeof r);
	fail_with = KMS_OK;
	want = 2 * (THREADS - 1);
	run_race(r);
	for (int i = 0; i < THREADS; i++)
		if (r[i].status != KMS_OK)
			fail_msg("thread %d: %s", i, r[i].message);
	s = stats_now();
	assert_int_equal(store.loads, 2);
	assert_int_equal(s.unwraps, 1);
	assert_int_equal(s.misses, 2);
	assert_int_equal(s.coalesced, 2 * (THREADS - 1));
	assert_int_equal(s.entries, 1);
	assert_int_equal(raw_session_objects(&raw, CKO_SECRET_KEY), 1);
}

/* --- eviction while pinned --- */

typedef struct holder {
	pthread_t thread;
	pthread_barrier_t *pinned, *done;
	CK_OBJECT_HANDLE handle;
} holder;

static void *hold(void *arg)
{
	holder *t = arg;
	hsm_keycache_entry *e;
	t->handle = cached_handle("pinned", &e);
	pthread_barrier_wait(t->pinned);
	/* The main thread evicts here; the object must still work. */
	pthread_barrier_wait(t->done);
	uint8_t iv[HSM_GCM_IV_LEN] = { 4 }, pt[32] = { 0 }, sealed[48];
	CK_RV rv;
	hsm_object_id id = test_id("pinned");
	kms_status st = hsm_gcm_with_handle(h, false, &id, hsm_keycache_entry_handle(e), iv, NULL,
	                                    0, pt, 32, sealed, 48, &rv);
	hsm_keycache_release(h, e);
	return (void *)(intptr_t)(st == KMS_OK);
}

static void evict_while_pinned(void **state)
{
	store_generate(h, &store, "pinned", &kek, HSM_KEY_TYPE_AES256);
	pthread_barrier_t pinned, done;
	pthread_barrier_init(&pinned, NULL, 2);
	pthread_barrier_init(&done, NULL, 2);
	holder t = { .pinned = &pinned, .done = &done };
	assert_int_equal(pthread_create(&t.thread, NULL, hold, &t), 0);
	pthread_barrier_wait(&pinned);

	hsm_object_id id = test_id("pinned");
	hsm_keycache_evict(h, &id);
	hsm_keycache_stats s = stats_now();
	assert_int_equal(s.entries, 0);
	assert_int_equal(s.evictions, 1);
	/* Still there for its user. */
	CK_OBJECT_CLASS cls;
	assert_int_equal(raw_read(&raw, t.handle, CKA_CLASS, &cls, sizeof cls), CKR_OK);
	/* A new use loads a new object meanwhile. */
	hsm_keycache_entry *e;
	CK_OBJECT_HANDLE fresh = cached_handle("pinned", &e);
	assert_true(fresh != t.handle);
	hsm_keycache_release(h, e);

	pthread_barrier_wait(&done);
	void *ok;
	pthread_join(t.thread, &ok);
	assert_true((intptr_t)ok == 1);
	/* The last unpin destroyed it; the new one lives on. */
	assert_int_equal(raw_read(&raw, t.handle, CKA_CLASS, &cls, sizeof cls),
	                 CKR_OBJECT_HANDLE_INVALID);
	assert_int_equal(raw_read(&raw, fresh, CKA_CLASS, &cls, sizeof cls), CKR_OK);
	assert_int_equal(raw_session_objects(&raw, CKO_SECRET_KEY), 1);
	pthread_barrier_destroy(&pinned);
	pthread_barrier_destroy(&done);

	/* Evicting an unpinned entry destroys at once; unknown names are ignored. */
	hsm_keycache_evict(h, &id);
	assert_int_equal(raw_read(&raw, fresh, CKA_CLASS, &cls, sizeof cls),
	                 CKR_OBJECT_HANDLE_INVALID);
	hsm_object_id other = test_id("never-cached");
	hsm_keycache_evict(h, &other);
	assert_int_equal(stats_now().evictions, 2);
}

/* --- losing the cache's session --- */

static void recovers_after_close_all_sessions(void **state)
{
	store_generate(h, &store, "lost-1", &kek, HSM_KEY_TYPE_AES256);
	store_generate(h, &store, "lost-2", &kek, HSM_KEY_TYPE_AES256);
	hsm_object_id id = test_id("lost-1");
	uint8_t iv[HSM_GCM_IV_LEN] = { 9 }, sealed[48], opened[32];
	assert_int_equal(seal_with(&id, sealed), KMS_OK);
	use("lost-2");
	CK_SESSION_HANDLE old_session = hsm_keycache_session(h);

	assert_int_equal(raw.p11->C_CloseAllSessions(raw.slot), CKR_OK);
	raw.session = CK_INVALID_HANDLE;

	kms_status st = hsm_wrapped_gcm_decrypt(h, &id, store_loader, &store, iv, NULL, 0, sealed,
	                                        48, opened, 32);
	if (st != KMS_OK)
		fail_msg("decrypt after the loss: %s", kms_error_message());
	assert_memory_equal(opened, "the same plaintext for each key", 32);
	hsm_keycache_stats s = stats_now();
	assert_int_equal(s.reloads_after_loss, 1);
	assert_int_equal(s.unwraps, 3);
	assert_int_equal(s.entries, 1); /* lost-2 comes back when used */
	assert_true(hsm_keycache_session(h) != CK_INVALID_HANDLE);
	assert_true(hsm_keycache_session(h) != old_session);
	use("lost-2");
	use("lost-1");
	s = stats_now();
	assert_int_equal(s.reloads_after_loss, 1);
	assert_int_equal(s.unwraps, 4);
	assert_int_equal(s.entries, 2);

	/* Lost with nothing cached: the first load opens a new session. */
	assert_int_equal(hsm_keycache_configure(h, 1), KMS_OK);
	hsm_object_id two = test_id("lost-2");
	hsm_keycache_evict(h, &two);
	hsm_keycache_evict(h, &id);
	assert_int_equal(stats_now().entries, 0);
	test_raw_close(&raw);
	test_raw_open(&raw);
	assert_int_equal(raw.p11->C_CloseAllSessions(raw.slot), CKR_OK);
	raw.session = CK_INVALID_HANDLE;
	use("lost-1");
	s = stats_now();
	assert_int_equal(s.reloads_after_loss, 2);
	assert_int_equal(s.entries, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(cached_objects_are_sensitive, setup, teardown),
		cmocka_unit_test_setup_teardown(bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(coalescing, setup, teardown),
		cmocka_unit_test_setup_teardown(evict_while_pinned, setup, teardown),
		cmocka_unit_test_setup_teardown(recovers_after_close_all_sessions, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
