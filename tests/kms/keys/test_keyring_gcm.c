/*
 * test_keyring_gcm: the AES-GCM bound with a small bound (10 uses per
 * version, reserved 4 at a time): no version ever hands out more than 10,
 * the key rotates by itself, counts survive a restart without reuse, and it
 * all holds with threads racing.
 */
#include "tests/support/keyring_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define GCM_MAX 10
#define BLOCK 4
#define MAX_VERSIONS 256

static hsm *h;
static keyring *kr;

static int group_setup(void **state)
{
	h = t_hsm_open();
	kr = t_keyring_open(h, GCM_MAX, BLOCK);
	return 0;
}

static int group_teardown(void **state)
{
	t_assert_token_matches(h, kr);
	keyring_close(kr);
	hsm_close(h);
	return 0;
}

static uint64_t reserved_of(const char *id, uint32_t version)
{
	key_metadata m;
	uint64_t reserved = UINT64_MAX;
	assert_ok(keyring_describe(kr, id, &m));
	for (size_t i = 0; i < m.n_versions; i++)
		if (m.versions[i].version == version)
			reserved = m.versions[i].encryptions_reserved;
	key_metadata_free(&m);
	return reserved;
}

static void test_bound_rotates(void **state)
{
	char id[KMS_KEYID_TEXT_SIZE];
	unsigned uses[MAX_VERSIONS] = { 0 };
	keyring_key_use use;

	t_create(kr, "alias/bounded", id);
	for (int i = 0; i < 35; i++) {
		assert_ok(keyring_encrypt_key(kr, i % 2 ? id : "alias/bounded", T_NOW, &use));
		assert_true(use.version >= 1 && use.version < MAX_VERSIONS);
		uses[use.version]++;
		assert_true(uses[use.version] <= GCM_MAX);
	}
	assert_int_equal(uses[1], GCM_MAX);
	assert_int_equal(uses[2], GCM_MAX);
	assert_int_equal(uses[3], GCM_MAX);
	assert_int_equal(uses[4], 5);

	key_metadata m;
	assert_ok(keyring_describe(kr, id, &m));
	assert_int_equal(m.key.primary_version, 4);
	assert_int_equal(m.n_versions, 4);
	assert_int_equal(m.versions[0].encryptions_reserved, GCM_MAX);
	assert_int_equal(m.versions[1].encryptions_reserved, GCM_MAX);
	assert_int_equal(m.versions[2].encryptions_reserved, GCM_MAX);
	assert_int_equal(m.versions[3].encryptions_reserved, 2 * BLOCK);
	key_metadata_free(&m);

	/* Every version still decrypts. */
	for (uint32_t v = 1; v <= 4; v++) {
		keyring_key_use back;
		assert_ok(keyring_decrypt_key(kr, use.key_id, v, &back));
		assert_int_equal(back.version, v);
	}
	t_assert_key_works(h, kr, id);
}

static void test_restart_no_reuse(void **state)
{
	char id[KMS_KEYID_TEXT_SIZE];
	keyring_key_use use;
	unsigned v1_uses = 0;

	t_create(kr, NULL, id);
	for (int i = 0; i < 3; i++) {
		assert_ok(keyring_encrypt_key(kr, id, T_NOW, &use));
		assert_int_equal(use.version, 1);
		v1_uses++;
	}
	assert_int_equal(reserved_of(id, 1), BLOCK);

	/* A restart loses the one unused use of the block, never reuses it. */
	keyring_close(kr);
	kr = t_keyring_open(h, GCM_MAX, BLOCK);
	assert_int_equal(reserved_of(id, 1), BLOCK);
	for (;;) {
		assert_ok(keyring_encrypt_key(kr, id, T_NOW, &use));
		if (use.version != 1)
			break;
		v1_uses++;
		assert_true(v1_uses <= GCM_MAX);
	}
	assert_int_equal(use.version, 2);
	assert_int_equal(v1_uses, 3 + (GCM_MAX - BLOCK));
	assert_int_equal(reserved_of(id, 1), GCM_MAX);
	assert_int_equal(reserved_of(id, 2), BLOCK);

	/* Restart again right after: v2 goes on from its reservation. */
	keyring_close(kr);
	kr = t_keyring_open(h, GCM_MAX, BLOCK);
	unsigned v2_uses = 1;
	for (;;) {
		assert_ok(keyring_encrypt_key(kr, id, T_NOW, &use));
		if (use.version != 2)
			break;
		v2_uses++;
	}
	assert_int_equal(v2_uses, 1 + (GCM_MAX - BLOCK));
	assert_int_equal(use.version, 3);
}

static void test_disabled_refused(void **state)
{
	char id[KMS_KEYID_TEXT_SIZE];
	keyring_key_use use;
	t_create(kr, NULL, id);
	assert_ok(keyring_encrypt_key(kr, id, T_NOW, &use)); /* cached, block in hand */
	assert_ok(keyring_disable(kr, id));
	assert_status(keyring_encrypt_key(kr, id, T_NOW, &use), KMS_FAILED_PRECONDITION);
	t_assert_message(id, "DISABLED", NULL);
	assert_ok(keyring_enable(kr, id));
	/* The block reserved before the disable is still ours: no new reservation. */
	assert_ok(keyring_encrypt_key(kr, id, T_NOW, &use));
	assert_int_equal(reserved_of(id, 1), BLOCK);
}

#define THREADS 4
#define PER_THREAD 150

typedef struct race {
	const char *id;
	atomic_uint uses[MAX_VERSIONS];
	atomic_int failures;
} race;

static void *racer(void *arg)
{
	race *r = arg;
	for (int i = 0; i < PER_THREAD; i++) {
		keyring_key_use use;
		if (keyring_encrypt_key(kr, r->id, T_NOW, &use) != KMS_OK ||
		    use.version >= MAX_VERSIONS) {
			atomic_fetch_add(&r->failures, 1);
			continue;
		}
		atomic_fetch_add(&r->uses[use.version], 1);
		/* Some decrypt lookups in between, as a server would. */
		keyring_key_use back;
		if (keyring_decrypt_key(kr, use.key_id, use.version, &back) != KMS_OK)
			atomic_fetch_add(&r->failures, 1);
	}
	return NULL;
}

static void test_threads(void **state)
{
	char id[KMS_KEYID_TEXT_SIZE];
	static race r;
	pthread_t threads[THREADS];

	memset(&r, 0, sizeof r);
	t_create(kr, NULL, id);
	r.id = id;
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, racer, &r), 0);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(threads[i], NULL), 0);
	assert_int_equal(atomic_load(&r.failures), 0);

	unsigned total = 0, last = 0;
	for (unsigned v = 1; v < MAX_VERSIONS; v++) {
		unsigned n = atomic_load(&r.uses[v]);
		assert_true(n <= GCM_MAX);
		total += n;
		if (n)
			last = v;
	}
	assert_int_equal(total, THREADS * PER_THREAD);
	/* One process, no restart: every version but the last was used up
	 * exactly, none skipped. */
	for (unsigned v = 1; v < last; v++)
		assert_int_equal(atomic_load(&r.uses[v]), GCM_MAX);
	key_metadata m;
	assert_ok(keyring_describe(kr, id, &m));
	assert_int_equal(m.key.primary_version, last);
	for (size_t i = 0; i < m.n_versions; i++)
		assert_true(m.versions[i].encryptions_reserved <= GCM_MAX);
	key_metadata_free(&m);
}

static void test_bound_config(void **state)
{
	keyring_config cfg = { .region = "in-test-1", .gcm_max_encryptions = (UINT64_C(1) << 32) + 1 };
	keyring *other = NULL;
	assert_status(keyring_open(h, t_dir("data"), &cfg, &other), KMS_INVALID_ARGUMENT);
	assert_null(other);
	keyring_config bad_region = { .region = "IN_TEST" };
	assert_status(keyring_open(h, t_dir("data"), &bad_region, &other), KMS_INVALID_ARGUMENT);
	/* One keyring per data directory. */
	keyring_config fine = { .region = "in-test-1" };
	assert_status(keyring_open(h, t_dir("data"), &fine, &other), KMS_FAILED_PRECONDITION);
	assert_null(other);
	assert_int_equal(KEYRING_GCM_MAX_ENCRYPTIONS_DEFAULT, (UINT64_C(1) << 32) - (UINT64_C(1) << 24));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bound_rotates),
		cmocka_unit_test(test_restart_no_reuse),
		cmocka_unit_test(test_disabled_refused),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_bound_config),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
