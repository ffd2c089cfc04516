/*
 * test_keyring_hierarchy: the keyring's side of the key hierarchy
 * (docs/key-hierarchy.md) on a real token.
 *
 * - The unwrapped-key cache as the keyring drives it ([keys] cache_entries =
 *   4 here): bounded with evictions counted; disabling a key, scheduling its
 *   deletion and destroying it evict its versions at once (the counters and
 *   the entry count say so), and an enabled-again key unwraps anew; a
 *   destroyed key's wrapped bytes are in neither kms.db nor kms.db-wal.
 * - [keys] max_hsm_resident = 2: a third hsm-resident key is refused with a
 *   line naming the limit; wrapped keys are not counted.
 * - KEK rotation: a new KEK is current, the old one draining; a second
 *   rotation is refused while it drains; keyring_tick re-wraps every version
 *   (counted) and retires the old KEK, whose token object is then gone;
 *   blobs sealed before still open; new keys are wrapped under the new KEK;
 *   a reopened keyring keeps it.
 * - A new kms.db beside a token that already holds a KEK: refused.
 */
#include "tests/support/hsm_test.h"
#include "tests/support/keyring_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE 4
#define KEYS 10

static hsm *h;
static keyring *kr;

static keyring *open_with(const char *dir_name)
{
	keyring_config cfg = {
		.region = "in-test-1",
		.unwrapped_cache_entries = CACHE,
		.max_hsm_resident = 2,
	};
	keyring *out = NULL;
	assert_ok(keyring_open(h, t_dir(dir_name), &cfg, &out));
	return out;
}

static int group_setup(void **state)
{
	(void)state;
	h = t_hsm_open();
	kr = open_with("data");
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

static hsm_keycache_stats cache(void)
{
	hsm_keycache_stats s;
	keyring_key_cache_stats_get(kr, &s);
	return s;
}

typedef struct sealed {
	keyring_key_use use;
	uint8_t iv[HSM_GCM_IV_LEN];
	uint8_t bytes[16 + HSM_GCM_TAG_LEN];
} sealed;

static const uint8_t PLAINTEXT[16] = "sixteen bytes!!";

static void seal(const char *key_ref, sealed *out)
{
	assert_ok(keyring_encrypt_key(kr, key_ref, T_NOW, &out->use));
	assert_ok(hsm_random(h, out->iv, sizeof out->iv));
	assert_ok(keyring_gcm_encrypt(kr, &out->use, out->iv, NULL, 0, PLAINTEXT, sizeof PLAINTEXT,
	                              out->bytes, sizeof out->bytes));
}

static void assert_opens(const sealed *s)
{
	keyring_key_use use;
	uint8_t opened[sizeof PLAINTEXT];
	assert_ok(keyring_decrypt_key(kr, s->use.key_id, s->use.version, &use));
	assert_ok(keyring_gcm_decrypt(kr, &use, s->iv, NULL, 0, s->bytes, sizeof s->bytes, opened,
	                              sizeof opened));
	assert_memory_equal(opened, PLAINTEXT, sizeof PLAINTEXT);
}

/* Whether data/<name> holds the wrapped bytes of m (a missing file holds
 * nothing). */
static bool file_holds(const char *name, const store_material *m)
{
	char path[1200];
	snprintf(path, sizeof path, "%s/%s", t_dir("data"), name);
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	size_t cap = 64u << 20, len = 0;
	uint8_t *buf = malloc(cap);
	assert_non_null(buf);
	len = fread(buf, 1, cap, f);
	fclose(f);
	bool found = len >= m->wrapped_len && memmem(buf, len, m->wrapped, m->wrapped_len);
	free(buf);
	return found;
}

static void test_cache_bounded_and_evicted(void **state)
{
	(void)state;
	char ids[KEYS][KMS_KEYID_TEXT_SIZE];
	sealed s;
	for (int i = 0; i < KEYS; i++)
		t_create(kr, NULL, ids[i]);

	hsm_keycache_stats before = cache();
	assert_int_equal(before.capacity, CACHE);
	for (int i = 0; i < KEYS; i++)
		seal(ids[i], &s);
	hsm_keycache_stats after = cache();
	assert_int_equal(after.unwraps - before.unwraps, KEYS);
	assert_int_equal(after.entries, CACHE);
	assert_true(after.evictions - before.evictions >= KEYS - CACHE);

	/* The last key is cached; a hit unwraps nothing. */
	before = cache();
	seal(ids[KEYS - 1], &s);
	after = cache();
	assert_int_equal(after.unwraps, before.unwraps);
	assert_int_equal(after.hits - before.hits, 1);

	/* Disable: out at once. */
	assert_ok(keyring_disable(kr, ids[KEYS - 1]));
	after = cache();
	assert_int_equal(after.entries, before.entries - 1);
	assert_int_equal(after.evictions - before.evictions, 1);
	/* Enabled again: unwrapped anew on its next use. */
	assert_ok(keyring_enable(kr, ids[KEYS - 1]));
	before = cache();
	seal(ids[KEYS - 1], &s);
	assert_opens(&s);
	after = cache();
	assert_int_equal(after.unwraps - before.unwraps, 1);

	/* Scheduled deletion: out at once too. */
	before = cache();
	store_key k;
	assert_ok(keyring_schedule_deletion(kr, ids[KEYS - 1], 7, T_NOW, &k));
	after = cache();
	assert_int_equal(after.entries, before.entries - 1);
	assert_int_equal(after.evictions - before.evictions, 1);

	/* Destroyed (every version): cached versions go, material goes. */
	sealed v1, v2;
	seal(ids[KEYS - 2], &v1);
	assert_ok(keyring_rotate(kr, ids[KEYS - 2], T_NOW, NULL));
	seal(ids[KEYS - 2], &v2);
	assert_int_equal(v2.use.version, 2);
	store_material m, stored[2];
	assert_ok(store_version_material_get(keyring_store(kr), ids[KEYS - 2], 1, &stored[0]));
	assert_ok(store_version_material_get(keyring_store(kr), ids[KEYS - 2], 2, &stored[1]));
	assert_true(file_holds("kms.db", &stored[0]) || file_holds("kms.db-wal", &stored[0]));
	assert_ok(keyring_schedule_deletion(kr, ids[KEYS - 2], 7, T_NOW, &k));
	keyring_tick_report report;
	assert_ok(keyring_tick(kr, T_NOW + 7 * T_DAY, &report));
	assert_int_equal(report.destroyed, 2);
	/* Crypto-shredding: the wrapped bytes are gone from kms.db and its WAL
	 * (secure_delete, then the checkpoint after a destroying tick). */
	for (int v = 0; v < 2; v++) {
		assert_false(file_holds("kms.db", &stored[v]));
		assert_false(file_holds("kms.db-wal", &stored[v]));
	}
	assert_status(store_version_material_get(keyring_store(kr), ids[KEYS - 2], 1, &m),
	              KMS_FAILED_PRECONDITION);
	assert_status(store_version_material_get(keyring_store(kr), ids[KEYS - 2], 2, &m),
	              KMS_FAILED_PRECONDITION);
	keyring_key_use use;
	assert_status(keyring_decrypt_key(kr, v1.use.key_id, 1, &use), KMS_FAILED_PRECONDITION);
	/* A use handed out before the destruction finds nothing to use. */
	uint8_t opened[sizeof PLAINTEXT];
	assert_true(keyring_gcm_decrypt(kr, &v2.use, v2.iv, NULL, 0, v2.bytes, sizeof v2.bytes,
	                                opened, sizeof opened) != KMS_OK);
	kms_error_clear();
}

static void test_resident_limit(void **state)
{
	(void)state;
	char a[KMS_KEYID_TEXT_SIZE], b[KMS_KEYID_TEXT_SIZE], w[KMS_KEYID_TEXT_SIZE];
	t_create_as(kr, NULL, KEY_PROTECTION_HSM_RESIDENT, a);
	t_create_as(kr, NULL, KEY_PROTECTION_HSM_RESIDENT, b);
	keyring_create_args args = { .protection = KEY_PROTECTION_HSM_RESIDENT };
	assert_status(keyring_create_key(kr, &args, T_NOW, NULL), KMS_FAILED_PRECONDITION);
	t_assert_message("max_hsm_resident", NULL);
	t_create(kr, NULL, w); /* wrapped keys do not count */
	t_assert_key_works(h, kr, a);
	t_assert_key_works(h, kr, w);
	keyring_create_args bad = { .protection = (key_protection)7 };
	assert_status(keyring_create_key(kr, &bad, T_NOW, NULL), KMS_INVALID_ARGUMENT);
}

static const keyring_kek *find_kek(const keyring_kek *keks, size_t n, uint32_t id)
{
	for (size_t i = 0; i < n; i++)
		if (keks[i].kek.id == id)
			return &keks[i];
	fail_msg("no KEK %u", (unsigned)id);
	return NULL;
}

static void test_kek_rotation(void **state)
{
	(void)state;
	enum { N = 6 };
	char ids[N][KMS_KEYID_TEXT_SIZE];
	sealed before_rotation[N];
	keyring_kek keks[KEYRING_KEKS_MAX];
	size_t n = 0;

	for (int i = 0; i < N; i++) {
		t_create(kr, NULL, ids[i]);
		seal(ids[i], &before_rotation[i]);
	}
	assert_ok(keyring_kek_list(kr, keks, KEYRING_KEKS_MAX, &n));
	assert_int_equal(n, 1);
	assert_int_equal(keks[0].kek.state, KEK_STATE_CURRENT);
	uint64_t wrapped_before = keks[0].versions;
	assert_true(wrapped_before >= N);

	store_kek fresh;
	assert_ok(keyring_kek_rotate(kr, T_NOW, &fresh));
	assert_int_equal(fresh.id, 2);
	assert_string_equal(fresh.hsm_id, "kms-kek-00000002");
	assert_int_equal(fresh.state, KEK_STATE_CURRENT);
	assert_status(keyring_kek_rotate(kr, T_NOW, NULL), KMS_FAILED_PRECONDITION);
	t_assert_message("kms-kek-00000001", "drained", NULL);

	/* New versions go under the new KEK at once; old ones still open. */
	char late[KMS_KEYID_TEXT_SIZE];
	t_create(kr, NULL, late);
	key_metadata m;
	assert_ok(keyring_describe(kr, late, &m));
	assert_int_equal(m.versions[0].kek_id, 2);
	key_metadata_free(&m);
	for (int i = 0; i < N; i++)
		assert_opens(&before_rotation[i]);

	assert_ok(keyring_kek_list(kr, keks, KEYRING_KEKS_MAX, &n));
	assert_int_equal(n, 2);
	assert_int_equal(find_kek(keks, n, 1)->kek.state, KEK_STATE_DRAINING);
	assert_int_equal(find_kek(keks, n, 1)->versions, wrapped_before);

	keyring_tick_report report;
	assert_ok(keyring_tick(kr, T_NOW, &report));
	assert_int_equal(report.rewrapped, wrapped_before);
	assert_int_equal(report.keks_retired, 1);
	assert_int_equal(report.failed, 0);
	assert_ok(keyring_kek_list(kr, keks, KEYRING_KEKS_MAX, &n));
	assert_int_equal(find_kek(keks, n, 1)->kek.state, KEK_STATE_RETIRED);
	assert_int_equal(find_kek(keks, n, 1)->versions, 0);
	assert_int_equal(find_kek(keks, n, 2)->versions, wrapped_before + 1);
	hsm_object_id old = { .len = strlen("kms-kek-00000001") };
	memcpy(old.bytes, "kms-kek-00000001", old.len);
	bool exists = true;
	assert_ok(hsm_kek_exists(h, &old, &exists));
	assert_false(exists);

	/* Everything sealed before opens under the re-wrapped rows, from a
	 * cold cache too (the reopened keyring's), and the KEK stays. */
	for (int i = 0; i < N; i++)
		assert_opens(&before_rotation[i]);
	keyring_close(kr);
	kr = open_with("data");
	for (int i = 0; i < N; i++)
		assert_opens(&before_rotation[i]);
	assert_ok(keyring_kek_list(kr, keks, KEYRING_KEKS_MAX, &n));
	assert_int_equal(n, 2);
	assert_int_equal(find_kek(keks, n, 2)->kek.state, KEK_STATE_CURRENT);
	/* Nothing left to do. */
	assert_ok(keyring_tick(kr, T_NOW, &report));
	assert_int_equal(report.rewrapped, 0);
	assert_int_equal(report.keks_retired, 0);
}

static void test_new_db_beside_a_kek(void **state)
{
	(void)state;
	keyring_config cfg = { .region = "in-test-1" };
	keyring *other = NULL;
	assert_status(keyring_open(h, t_dir("other-data"), &cfg, &other), KMS_FAILED_PRECONDITION);
	assert_null(other);
	t_assert_message("kms.db is new", "kms-kek-00000001", NULL);
}

/* A KEK rotation killed while the HSM wrote the new KEK's object can leave
 * an object that is found (an AES key with CKA_UNWRAP) but does not wrap
 * (SoftHSM writes token objects in steps; test_crash_mixed met one).
 * Rolling the rotation forward makes the object again instead of making an
 * unusable KEK current: it wraps nothing yet. */
static void test_unusable_creating_kek_made_again(void **state)
{
	(void)state;
	keyring_close(kr);
	kr = NULL;
	store *st = NULL;
	bool created;
	assert_ok(store_open(t_dir("data"), &st, &created));
	store_kek k;
	assert_ok(store_kek_create(st, T_NOW, &k));
	store_close(st);

	/* The half-made object: no CKA_WRAP. */
	test_raw raw;
	test_raw_open(&raw);
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_AES;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	uint8_t value[32] = { 0 };
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof cls },
		{ CKA_KEY_TYPE, &type, sizeof type },
		{ CKA_TOKEN, &yes, sizeof yes },
		{ CKA_PRIVATE, &yes, sizeof yes },
		{ CKA_SENSITIVE, &yes, sizeof yes },
		{ CKA_ID, k.hsm_id, strlen(k.hsm_id) },
		{ CKA_UNWRAP, &yes, sizeof yes },
		{ CKA_WRAP, &no, sizeof no },
		{ CKA_VALUE, value, sizeof value },
	};
	CK_OBJECT_HANDLE object;
	assert_int_equal(raw.p11->C_CreateObject(raw.session, tmpl, sizeof tmpl / sizeof tmpl[0],
	                                         &object),
	                 CKR_OK);
	test_raw_close(&raw);

	/* Start-up rolls the rotation forward: the object made again, the KEK
	 * current, a new key wrapped under it and used. */
	kr = t_keyring_open(h, 0, 0);
	keyring_kek keks[KEYRING_KEKS_MAX];
	size_t n = 0;
	assert_ok(keyring_kek_list(kr, keks, KEYRING_KEKS_MAX, &n));
	assert_true(n > 0);
	assert_int_equal(keks[n - 1].kek.id, k.id);
	assert_int_equal(keks[n - 1].kek.state, KEK_STATE_CURRENT);
	char id[KMS_KEYID_TEXT_SIZE];
	t_create(kr, NULL, id);
	sealed s;
	seal(id, &s);
	assert_opens(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_bounded_and_evicted),
		/* Before any hsm-resident key: reconciliation would refuse first. */
		cmocka_unit_test(test_new_db_beside_a_kek),
		cmocka_unit_test(test_resident_limit),
		cmocka_unit_test(test_kek_rotation),
		cmocka_unit_test(test_unusable_creating_kek_made_again),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
