/*
 * test_keyring_keys: the control plane on a real token: create, describe,
 * list and its page tokens, states and deletion, rotation, aliases, tags,
 * policies.
 */
#include "tests/support/keyring_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static hsm *h;
static keyring *kr;

static int group_setup(void **state)
{
	h = t_hsm_open();
	kr = t_keyring_open(h, 0, 0);
	return 0;
}

static int group_teardown(void **state)
{
	t_assert_token_matches(h, kr);
	keyring_close(kr);
	hsm_close(h);
	return 0;
}

static bool has_version(const key_metadata *m, uint32_t v, version_state state)
{
	for (size_t i = 0; i < m->n_versions; i++)
		if (m->versions[i].version == v)
			return m->versions[i].state == state;
	return false;
}

static bool object_exists(const char *key_id, uint32_t version)
{
	uint8_t id[KMS_KEYID_BYTES];
	hsm_object_id object = { .len = KMS_KEYID_HSM_ID_LEN };
	bool exists = true;
	assert_ok(keyid_parse(key_id, strlen(key_id), id));
	assert_ok(keyid_hsm_object_id(id, version, object.bytes));
	assert_ok(hsm_object_exists(h, &object, &exists));
	return exists;
}

/* Whether the version's stored wrapped material can be read. */
static bool material_exists(const char *key_id, uint32_t version)
{
	store_material m;
	kms_status st = store_version_material_get(keyring_store(kr), key_id, version, &m);
	if (st != KMS_OK)
		kms_error_clear();
	return st == KMS_OK && m.wrapped_len >= STORE_WRAPPED_MIN;
}

/* Whether the version exists in the HSM's terms: its token object
 * (hsm-resident) or its wrapped material, never both. */
static bool version_material_exists(const char *key_id, uint32_t version, key_protection p)
{
	if (p == KEY_PROTECTION_HSM_RESIDENT) {
		assert_false(material_exists(key_id, version));
		return object_exists(key_id, version);
	}
	assert_false(object_exists(key_id, version));
	return material_exists(key_id, version);
}

static void test_create_describe(void **state)
{
	keyring_tag_arg tags[] = { { "team", "payments" }, { "env", "" } };
	const char *policy = "{\"Version\":\"2024-06-01\",\"Statement\":[]}";
	keyring_create_args args = {
		.description = "card numbers",
		.tags = tags,
		.n_tags = 2,
		.policy = policy,
		.rotation_period_days = 90,
		.alias = "alias/cards",
	};
	key_metadata m, d;
	assert_ok(keyring_create_key(kr, &args, T_NOW, &m));
	assert_int_equal(strlen(m.key.id), KMS_KEYID_TEXT_LEN);
	assert_true(strncmp(m.key.id, "k-", 2) == 0);
	assert_string_equal(m.key.description, "card numbers");
	assert_int_equal(m.key.state, KEY_STATE_ENABLED);
	assert_int_equal(m.key.spec, KEY_SPEC_AES_256);
	assert_int_equal(m.key.usage, KEY_USAGE_ENCRYPT_DECRYPT);
	assert_int_equal(m.key.primary_version, 1);
	assert_int_equal(m.key.created_at, T_NOW);
	assert_int_equal(m.key.rotation_period_days, 90);
	assert_int_equal(m.key.next_rotation_at, T_NOW + 90 * T_DAY);
	assert_int_equal(m.key.deletion_date, 0);
	assert_string_equal(m.key.region, "in-test-1");
	assert_int_equal(m.n_versions, 1);
	assert_true(has_version(&m, 1, VERSION_STATE_ACTIVE));
	assert_int_equal(m.n_aliases, 1);
	assert_string_equal(m.aliases[0].name, "alias/cards");
	assert_int_equal(m.n_tags, 2);
	assert_string_equal(m.tags[0].key, "env"); /* sorted by tag key */
	assert_string_equal(m.tags[0].value, "");
	assert_string_equal(m.tags[1].key, "team");
	/* Wrapped by default, under the first KEK, no token object. */
	assert_int_equal(m.key.protection, KEY_PROTECTION_WRAPPED);
	assert_int_equal(m.versions[0].kek_id, 1);
	assert_true(version_material_exists(m.key.id, 1, KEY_PROTECTION_WRAPPED));

	/* By id and by alias: the same key. */
	assert_ok(keyring_describe(kr, m.key.id, &d));
	assert_string_equal(d.key.id, m.key.id);
	key_metadata_free(&d);
	assert_ok(keyring_describe(kr, "alias/cards", &d));
	assert_string_equal(d.key.id, m.key.id);
	key_metadata_free(&d);

	char *got;
	assert_ok(keyring_policy_get(kr, m.key.id, &got));
	assert_string_equal(got, policy);
	free(got);
	t_assert_key_works(h, kr, "alias/cards");
	key_metadata_free(&m);

	/* No policy given: the default, stored as "". */
	char id[KMS_KEYID_TEXT_SIZE];
	t_create(kr, NULL, id);
	assert_ok(keyring_policy_get(kr, id, &got));
	assert_string_equal(got, "");
	free(got);
}

static void test_create_refused(void **state)
{
	t_objects before, after;
	t_objects_list(h, &before);

	char long_text[300];
	memset(long_text, 'd', sizeof long_text);
	long_text[257] = '\0';
	keyring_create_args a = { .description = long_text };
	assert_status(keyring_create_key(kr, &a, T_NOW, NULL), KMS_INVALID_ARGUMENT);
	t_assert_message("description", NULL);

	keyring_create_args b = { .description = "\xc3\x28" }; /* bad UTF-8 */
	assert_status(keyring_create_key(kr, &b, T_NOW, NULL), KMS_INVALID_ARGUMENT);

	/* Each spec has one usage and the protections it can have. */
	keyring_create_args c = { .spec = KEY_SPEC_ED25519, .protection = KEY_PROTECTION_WRAPPED };
	assert_status(keyring_create_key(kr, &c, T_NOW, NULL), KMS_INVALID_ARGUMENT);
	t_assert_message("hsm-resident", NULL);
	keyring_create_args c2 = { .spec = KEY_SPEC_HMAC_SHA256,
		                   .protection = KEY_PROTECTION_HSM_RESIDENT };
	assert_status(keyring_create_key(kr, &c2, T_NOW, NULL), KMS_INVALID_ARGUMENT);
	keyring_create_args c3 = { .spec = KEY_SPEC_ECC_P256, .usage = KEY_USAGE_ENCRYPT_DECRYPT };
	assert_status(keyring_create_key(kr, &c3, T_NOW, NULL), KMS_INVALID_ARGUMENT);
	t_assert_message("SIGN_VERIFY", NULL);
	keyring_create_args c4 = { .spec = (key_spec)5 };
	assert_status(keyring_create_key(kr, &c4, T_NOW, NULL), KMS_INVALID_ARGUMENT);

	keyring_create_args d = { .rotation_period_days = 3651 };
	assert_status(keyring_create_key(kr, &d, T_NOW, NULL), KMS_INVALID_ARGUMENT);

	keyring_create_args e = { .policy = "{\"Version\":\"1\"}" };
	assert_status(keyring_create_key(kr, &e, T_NOW, NULL), KMS_INVALID_ARGUMENT);

	keyring_create_args f = { .alias = "alias/aws/mine" };
	assert_status(keyring_create_key(kr, &f, T_NOW, NULL), KMS_INVALID_ARGUMENT);

	keyring_tag_arg dup[] = { { "a", "1" }, { "a", "2" } };
	keyring_create_args g = { .tags = dup, .n_tags = 2 };
	assert_status(keyring_create_key(kr, &g, T_NOW, NULL), KMS_INVALID_ARGUMENT);

	/* A taken alias fails before the HSM is touched, and leaves nothing. */
	char id[KMS_KEYID_TEXT_SIZE];
	t_create(kr, "alias/taken", id);
	t_objects_list(h, &before);
	keyring_create_args i = { .alias = "alias/taken" };
	assert_status(keyring_create_key(kr, &i, T_NOW, NULL), KMS_ALREADY_EXISTS);
	t_assert_message("alias/taken", NULL);
	t_objects_list(h, &after);
	assert_int_equal(after.n, before.n);
	store_key k;
	assert_ok(keyring_resolve(kr, "alias/taken", &k));
	assert_string_equal(k.id, id);
	t_assert_token_matches(h, kr);
}

static void test_list_pages(void **state)
{
	enum { N = 25 };
	char created[N][KMS_KEYID_TEXT_SIZE];
	for (int i = 0; i < N; i++)
		t_create(kr, NULL, created[i]);

	char page[KMS_KEYID_TEXT_SIZE] = "", prev[KMS_KEYID_TEXT_SIZE] = "";
	size_t total = 0, pages = 0, seen_created = 0;
	do {
		key_metadata *keys;
		size_t n;
		char next[KMS_KEYID_TEXT_SIZE];
		assert_ok(keyring_list(kr, 10, page, &keys, &n, next));
		pages++;
		assert_true(n <= 10);
		if (next[0])
			assert_int_equal(n, 10);
		for (size_t i = 0; i < n; i++) {
			/* Strictly ascending: no duplicates within or across pages. */
			assert_true(strcmp(keys[i].key.id, prev) > 0);
			memcpy(prev, keys[i].key.id, sizeof prev);
			for (int c = 0; c < N; c++)
				seen_created += strcmp(created[c], keys[i].key.id) == 0;
			assert_int_equal(keys[i].n_versions, 1);
		}
		total += n;
		key_metadata_array_free(keys, n);
		memcpy(page, next, sizeof page);
	} while (page[0]);
	assert_int_equal(seen_created, N);
	assert_int_equal(pages, (total + 9) / 10);
	assert_true(pages >= 3);

	/* Default and maximum limits. */
	key_metadata *keys;
	size_t n;
	char next[KMS_KEYID_TEXT_SIZE];
	assert_ok(keyring_list(kr, 0, NULL, &keys, &n, next));
	assert_int_equal(n, total < 100 ? total : 100);
	key_metadata_array_free(keys, n);
	assert_status(keyring_list(kr, 1001, NULL, &keys, &n, next), KMS_INVALID_ARGUMENT);

	/* Page tokens are checked strictly. */
	const char *bad[] = {
		"garbage",
		"k-0123",
		"K-0123456789abcdef0123456789abcdef",
		"k-0123456789ABCDEF0123456789abcdef",
		"k-0123456789abcdef0123456789abcdef0",
		"k-0123456789abcdef0123456789abcde ",
		"alias/cards",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_status(keyring_list(kr, 10, bad[i], &keys, &n, next), KMS_INVALID_ARGUMENT);
		assert_null(keys);
		assert_int_equal(n, 0);
		t_assert_message("page token", NULL);
	}
	/* One buffer for the token in and the token out. */
	char token[KMS_KEYID_TEXT_SIZE] = "";
	size_t again = 0;
	do {
		assert_ok(keyring_list(kr, 10, token, &keys, &n, token));
		again += n;
		key_metadata_array_free(keys, n);
	} while (token[0]);
	assert_int_equal(again, total);
	/* The last id: an empty last page. */
	assert_ok(keyring_list(kr, 10, "k-ffffffffffffffffffffffffffffffff", &keys, &n, next));
	assert_int_equal(n, 0);
	assert_string_equal(next, "");
}

static void states_for(key_protection protection)
{
	char id[KMS_KEYID_TEXT_SIZE];
	keyring_key_use use;
	store_key k;
	t_create_as(kr, "alias/states", protection, id);
	uint8_t raw_id[KMS_KEYID_BYTES];
	assert_ok(keyid_parse(id, strlen(id), raw_id));

	t_assert_key_works(h, kr, id);
	assert_ok(keyring_disable(kr, "alias/states"));
	assert_status(keyring_encrypt_key(kr, id, T_NOW, &use), KMS_FAILED_PRECONDITION);
	t_assert_message(id, "DISABLED", NULL);
	assert_status(keyring_decrypt_key(kr, raw_id, 1, &use), KMS_FAILED_PRECONDITION);
	assert_status(keyring_rotate(kr, id, T_NOW, NULL), KMS_FAILED_PRECONDITION);
	assert_ok(keyring_disable(kr, id)); /* idempotent */
	assert_ok(keyring_enable(kr, id));
	t_assert_key_works(h, kr, id);
	assert_ok(keyring_enable(kr, id));

	/* Deletion windows: 7..30 days, 0 meaning 30. */
	assert_status(keyring_schedule_deletion(kr, id, 6, T_NOW, &k), KMS_INVALID_ARGUMENT);
	assert_status(keyring_schedule_deletion(kr, id, 31, T_NOW, &k), KMS_INVALID_ARGUMENT);
	assert_ok(keyring_schedule_deletion(kr, id, 7, T_NOW, &k));
	assert_int_equal(k.state, KEY_STATE_PENDING_DELETION);
	assert_int_equal(k.deletion_date, T_NOW + 7 * T_DAY);
	assert_status(keyring_encrypt_key(kr, id, T_NOW, &use), KMS_FAILED_PRECONDITION);
	t_assert_message(id, "PENDING_DELETION", NULL);
	assert_status(keyring_decrypt_key(kr, raw_id, 1, &use), KMS_FAILED_PRECONDITION);
	assert_status(keyring_enable(kr, id), KMS_FAILED_PRECONDITION);
	assert_status(keyring_disable(kr, id), KMS_FAILED_PRECONDITION);
	assert_status(keyring_schedule_deletion(kr, id, 7, T_NOW, &k), KMS_FAILED_PRECONDITION);
	assert_ok(keyring_cancel_deletion(kr, id, &k));
	assert_int_equal(k.state, KEY_STATE_DISABLED);
	assert_int_equal(k.deletion_date, 0);
	assert_status(keyring_cancel_deletion(kr, id, &k), KMS_FAILED_PRECONDITION);

	/* Scheduled again with the default window; nothing happens early. */
	assert_ok(keyring_schedule_deletion(kr, id, 0, T_NOW, &k));
	assert_int_equal(k.deletion_date, T_NOW + 30 * T_DAY);
	keyring_tick_report report;
	assert_ok(keyring_tick(kr, T_NOW + 30 * T_DAY - 1, &report));
	assert_ok(keyring_resolve(kr, id, &k));
	assert_int_equal(k.state, KEY_STATE_PENDING_DELETION);
	assert_true(version_material_exists(id, 1, protection));

	/* Past the date: destroyed, objects gone, a tombstone left. */
	assert_ok(keyring_tick(kr, T_NOW + 30 * T_DAY, &report));
	assert_true(report.destroyed >= 1);
	assert_int_equal(report.failed, 0);
	assert_false(version_material_exists(id, 1, protection));
	key_metadata m;
	assert_ok(keyring_describe(kr, id, &m));
	assert_int_equal(m.key.state, KEY_STATE_DESTROYED);
	assert_true(has_version(&m, 1, VERSION_STATE_DESTROYED));
	assert_int_equal(m.n_aliases, 0);
	key_metadata_free(&m);
	assert_status(keyring_resolve(kr, "alias/states", &k), KMS_NOT_FOUND);
	assert_status(keyring_encrypt_key(kr, id, T_NOW, &use), KMS_FAILED_PRECONDITION);
	t_assert_message(id, "DESTROYED", NULL);
	assert_status(keyring_decrypt_key(kr, raw_id, 1, &use), KMS_FAILED_PRECONDITION);
	assert_status(keyring_enable(kr, id), KMS_FAILED_PRECONDITION);
	assert_status(keyring_cancel_deletion(kr, id, &k), KMS_FAILED_PRECONDITION);
	assert_status(keyring_update_description(kr, id, "x"), KMS_FAILED_PRECONDITION);
	assert_status(keyring_alias_create(kr, "alias/states", id, T_NOW), KMS_FAILED_PRECONDITION);
	/* A second tick does nothing more to it. */
	assert_ok(keyring_tick(kr, T_NOW + 31 * T_DAY, &report));
	assert_int_equal(report.failed, 0);
	t_assert_token_matches(h, kr);
}

static void test_states(void **state)
{
	states_for(KEY_PROTECTION_WRAPPED);
}

static void test_states_resident(void **state)
{
	states_for(KEY_PROTECTION_HSM_RESIDENT);
}

static void test_rotate(void **state)
{
	static const uint8_t plaintext[] = "rotate me";
	uint8_t iv[HSM_GCM_IV_LEN] = { 9 };
	uint8_t sealed[sizeof plaintext + HSM_GCM_TAG_LEN], opened[sizeof plaintext];
	char id[KMS_KEYID_TEXT_SIZE];
	keyring_key_use use, back;
	key_metadata m;

	t_create(kr, NULL, id);
	assert_ok(keyring_encrypt_key(kr, id, T_NOW, &use));
	assert_int_equal(use.version, 1);
	assert_ok(keyring_gcm_encrypt(kr, &use, iv, NULL, 0, plaintext, sizeof plaintext, sealed,
	                              sizeof sealed));

	assert_ok(keyring_rotate(kr, id, T_NOW + 10, &m));
	assert_int_equal(m.key.primary_version, 2);
	assert_int_equal(m.n_versions, 2);
	assert_true(has_version(&m, 1, VERSION_STATE_ACTIVE));
	assert_true(has_version(&m, 2, VERSION_STATE_ACTIVE));
	assert_int_equal(m.versions[1].created_at, T_NOW + 10);
	key_metadata_free(&m);

	/* New encryptions use v2; v1 still decrypts. */
	keyring_key_use now_use;
	assert_ok(keyring_encrypt_key(kr, id, T_NOW, &now_use));
	assert_int_equal(now_use.version, 2);
	assert_ok(keyring_decrypt_key(kr, use.key_id, 1, &back));
	assert_ok(keyring_gcm_decrypt(kr, &back, iv, NULL, 0, sealed, sizeof sealed, opened,
	                              sizeof opened));
	assert_memory_equal(opened, plaintext, sizeof plaintext);
	assert_ok(keyring_decrypt_key(kr, use.key_id, 2, &back));
	/* In and out may be the same struct. */
	assert_ok(keyring_decrypt_key(kr, back.key_id, 1, &back));
	assert_int_equal(back.version, 1);
	assert_string_equal(back.key_id_text, id);
	assert_status(keyring_decrypt_key(kr, use.key_id, 3, &back), KMS_NOT_FOUND);
	t_assert_message(id, "version 3", NULL);
	assert_status(keyring_decrypt_key(kr, use.key_id, 0, &back), KMS_NOT_FOUND);

	/* A key id nobody created. */
	uint8_t nobody[KMS_KEYID_BYTES] = { 0xee };
	assert_status(keyring_decrypt_key(kr, nobody, 1, &back), KMS_NOT_FOUND);
	assert_status(keyring_encrypt_key(kr, "k-ee000000000000000000000000000000", T_NOW, &use),
	              KMS_NOT_FOUND);
	assert_status(keyring_encrypt_key(kr, "k-EE000000000000000000000000000000", T_NOW, &use),
	              KMS_INVALID_ARGUMENT);
	assert_status(keyring_encrypt_key(kr, "alias/nobody", T_NOW, &use), KMS_NOT_FOUND);
	assert_status(keyring_encrypt_key(kr, "nobody", T_NOW, &use), KMS_INVALID_ARGUMENT);
}

static void test_rotation_period(void **state)
{
	char id[KMS_KEYID_TEXT_SIZE], off[KMS_KEYID_TEXT_SIZE];
	key_metadata m;
	keyring_tick_report report;

	t_create(kr, NULL, id);
	t_create(kr, NULL, off);
	assert_status(keyring_set_rotation_period(kr, id, 3651, T_NOW, NULL), KMS_INVALID_ARGUMENT);
	assert_ok(keyring_set_rotation_period(kr, id, 1, T_NOW, &m));
	assert_int_equal(m.key.rotation_period_days, 1);
	assert_int_equal(m.key.next_rotation_at, T_NOW + T_DAY);
	key_metadata_free(&m);
	/* Disabled keys are not rotated, however overdue. */
	assert_ok(keyring_set_rotation_period(kr, off, 1, T_NOW, NULL));
	assert_ok(keyring_disable(kr, off));

	assert_ok(keyring_tick(kr, T_NOW + T_DAY - 1, &report));
	assert_ok(keyring_describe(kr, id, &m));
	assert_int_equal(m.key.primary_version, 1);
	key_metadata_free(&m);

	assert_ok(keyring_tick(kr, T_NOW + T_DAY, &report));
	assert_true(report.rotated >= 1);
	assert_int_equal(report.failed, 0);
	assert_ok(keyring_describe(kr, id, &m));
	assert_int_equal(m.key.primary_version, 2);
	assert_int_equal(m.key.next_rotation_at, T_NOW + 2 * T_DAY);
	key_metadata_free(&m);
	assert_ok(keyring_describe(kr, off, &m));
	assert_int_equal(m.key.primary_version, 1);
	key_metadata_free(&m);

	/* Off again: no next rotation. */
	assert_ok(keyring_set_rotation_period(kr, id, 0, T_NOW, &m));
	assert_int_equal(m.key.next_rotation_at, 0);
	key_metadata_free(&m);
	assert_ok(keyring_tick(kr, T_NOW + 10 * T_DAY, &report));
	assert_ok(keyring_describe(kr, id, &m));
	assert_int_equal(m.key.primary_version, 2);
	key_metadata_free(&m);
}

static void test_aliases(void **state)
{
	char a[KMS_KEYID_TEXT_SIZE], b[KMS_KEYID_TEXT_SIZE];
	store_key k;
	keyring_key_use use;
	t_create(kr, NULL, a);
	t_create(kr, NULL, b);

	assert_ok(keyring_alias_create(kr, "alias/app/one", a, T_NOW));
	assert_ok(keyring_alias_create(kr, "alias/app/two", a, T_NOW));
	assert_ok(keyring_alias_create(kr, "alias/app/three", a, T_NOW));
	assert_status(keyring_alias_create(kr, "alias/app/one", b, T_NOW), KMS_ALREADY_EXISTS);
	t_assert_message("alias/app/one", NULL);
	assert_status(keyring_alias_create(kr, "alias/app/x", "alias/app/one", T_NOW),
	              KMS_INVALID_ARGUMENT);
	assert_status(keyring_alias_create(kr, "alias/app/x", "k-00000000000000000000000000000000",
	                                   T_NOW),
	              KMS_NOT_FOUND);
	const char *bad[] = { "alias/", "app/one", "alias/a b", "alias/a.b", "alias/aws",
	                      "alias/KMS/x", "" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_status(keyring_alias_create(kr, bad[i], a, T_NOW), KMS_INVALID_ARGUMENT);
	char long_alias[300] = "alias/";
	memset(long_alias + 6, 'x', 251);
	long_alias[257] = '\0';
	assert_status(keyring_alias_create(kr, long_alias, a, T_NOW), KMS_INVALID_ARGUMENT);
	long_alias[256] = '\0'; /* 250 characters after "alias/": the longest */
	assert_ok(keyring_alias_create(kr, long_alias, a, T_NOW));
	assert_ok(keyring_alias_delete(kr, long_alias));

	/* Resolve (warming the cache), move, resolve again: the cache follows. */
	assert_ok(keyring_resolve(kr, "alias/app/one", &k));
	assert_string_equal(k.id, a);
	assert_ok(keyring_encrypt_key(kr, "alias/app/one", T_NOW, &use));
	assert_string_equal(use.key_id_text, a);
	assert_ok(keyring_alias_update(kr, "alias/app/one", b, NULL));
	assert_ok(keyring_resolve(kr, "alias/app/one", &k));
	assert_string_equal(k.id, b);
	assert_ok(keyring_encrypt_key(kr, "alias/app/one", T_NOW, &use));
	assert_string_equal(use.key_id_text, b);
	assert_ok(keyring_alias_update(kr, "alias/app/one", b, NULL)); /* no change */
	/* Decided while it named a, moved to b since: not moved again. */
	assert_status(keyring_alias_update(kr, "alias/app/one", a, a), KMS_UNAVAILABLE);
	assert_ok(keyring_alias_update(kr, "alias/app/one", b, b));
	assert_status(keyring_alias_update(kr, "alias/app/none", b, NULL), KMS_NOT_FOUND);
	assert_status(keyring_alias_update(kr, "alias/app/one", "alias/app/two", NULL),
	              KMS_INVALID_ARGUMENT);

	/* Listing by key, in pages of two. */
	store_alias *list;
	size_t n;
	char next[KMS_ALIAS_TEXT_MAX + 1];
	assert_ok(keyring_alias_list(kr, a, 2, NULL, &list, &n, next));
	assert_int_equal(n, 2);
	assert_string_equal(list[0].name, "alias/app/three");
	assert_string_equal(list[1].name, "alias/app/two");
	assert_string_equal(next, "");
	free(list);
	assert_ok(keyring_alias_list(kr, a, 1, NULL, &list, &n, next));
	assert_int_equal(n, 1);
	assert_string_equal(next, "alias/app/three");
	free(list);
	assert_ok(keyring_alias_list(kr, a, 1, next, &list, &n, next));
	assert_int_equal(n, 1);
	assert_string_equal(list[0].name, "alias/app/two");
	assert_string_equal(list[0].key_id, a);
	free(list);
	assert_ok(keyring_alias_list(kr, b, 0, NULL, &list, &n, next));
	assert_int_equal(n, 1);
	assert_string_equal(list[0].name, "alias/app/one");
	free(list);
	assert_ok(keyring_alias_list(kr, NULL, 0, NULL, &list, &n, next));
	assert_true(n >= 3);
	free(list);
	assert_status(keyring_alias_list(kr, a, 0, "not-an-alias", &list, &n, next),
	              KMS_INVALID_ARGUMENT);
	assert_status(keyring_alias_list(kr, "k-00000000000000000000000000000000", 0, NULL, &list,
	                                 &n, next),
	              KMS_NOT_FOUND);

	/* Delete: gone, and gone from the cache. */
	assert_ok(keyring_alias_delete(kr, "alias/app/one"));
	assert_status(keyring_resolve(kr, "alias/app/one", &k), KMS_NOT_FOUND);
	assert_status(keyring_encrypt_key(kr, "alias/app/one", T_NOW, &use), KMS_NOT_FOUND);
	assert_status(keyring_alias_delete(kr, "alias/app/one"), KMS_NOT_FOUND);

	/* Not onto a key pending deletion. */
	assert_ok(keyring_schedule_deletion(kr, b, 7, T_NOW, NULL));
	assert_status(keyring_alias_create(kr, "alias/app/late", b, T_NOW), KMS_FAILED_PRECONDITION);
	assert_status(keyring_alias_update(kr, "alias/app/two", b, NULL), KMS_FAILED_PRECONDITION);
	assert_ok(keyring_cancel_deletion(kr, b, NULL));
	assert_ok(keyring_alias_update(kr, "alias/app/two", b, NULL));
}

static void test_tags(void **state)
{
	char id[KMS_KEYID_TEXT_SIZE];
	key_metadata m;
	t_create(kr, NULL, id);

	keyring_tag_arg tags[KMS_TAGS_MAX + 1];
	char names[KMS_TAGS_MAX + 1][16];
	for (int i = 0; i <= KMS_TAGS_MAX; i++) {
		snprintf(names[i], sizeof names[i], "t%02d", i);
		tags[i].key = names[i];
		tags[i].value = "v";
	}
	assert_status(keyring_tag(kr, id, tags, KMS_TAGS_MAX + 1), KMS_INVALID_ARGUMENT);
	assert_ok(keyring_tag(kr, id, tags, KMS_TAGS_MAX - 1));
	/* One new and one existing: 50, fine; then a 51st: refused, nothing kept. */
	keyring_tag_arg two[] = { { "t48", "changed" }, { "t49", "v" } };
	assert_ok(keyring_tag(kr, id, two, 2));
	keyring_tag_arg more[] = { { "t01", "changed too" }, { "t50", "v" } };
	assert_status(keyring_tag(kr, id, more, 2), KMS_INVALID_ARGUMENT);
	t_assert_message(id, "51 tags", NULL);
	assert_ok(keyring_describe(kr, id, &m));
	assert_int_equal(m.n_tags, KMS_TAGS_MAX);
	assert_string_equal(m.tags[1].key, "t01");
	assert_string_equal(m.tags[1].value, "v");
	assert_string_equal(m.tags[48].value, "changed");
	key_metadata_free(&m);

	char key129[130], value257[258];
	memset(key129, 'k', 129);
	key129[129] = '\0';
	memset(value257, 'v', 257);
	value257[257] = '\0';
	keyring_tag_arg bad_key[] = { { key129, "" } };
	keyring_tag_arg bad_value[] = { { "k", value257 } };
	keyring_tag_arg empty_key[] = { { "", "v" } };
	keyring_tag_arg bad_utf8[] = { { "k", "\xff" } };
	assert_status(keyring_tag(kr, id, bad_key, 1), KMS_INVALID_ARGUMENT);
	assert_status(keyring_tag(kr, id, bad_value, 1), KMS_INVALID_ARGUMENT);
	assert_status(keyring_tag(kr, id, empty_key, 1), KMS_INVALID_ARGUMENT);
	assert_status(keyring_tag(kr, id, bad_utf8, 1), KMS_INVALID_ARGUMENT);
	key129[128] = '\0';
	value257[256] = '\0';
	keyring_tag_arg longest[] = { { key129, value257 } };
	const char *drop[] = { "t00", "t02", "absent" };
	size_t removed = 99;
	assert_ok(keyring_untag(kr, id, drop, 3, &removed));
	assert_int_equal(removed, 2); /* "absent" was not there */
	assert_ok(keyring_tag(kr, id, longest, 1));
	assert_ok(keyring_describe(kr, id, &m));
	assert_int_equal(m.n_tags, KMS_TAGS_MAX - 1);
	key_metadata_free(&m);

	assert_ok(keyring_update_description(kr, id, "new words"));
	assert_ok(keyring_describe(kr, id, &m));
	assert_string_equal(m.key.description, "new words");
	key_metadata_free(&m);
}

static void test_policy(void **state)
{
	char id[KMS_KEYID_TEXT_SIZE];
	char *got;
	t_create(kr, NULL, id);

	const char *good = "{\"Version\":\"2024-06-01\",\"Statement\":"
	                   "[{\"Effect\":\"Allow\",\"Principal\":\"app\",\"Action\":[\"Encrypt\"]}]}";
	assert_ok(keyring_policy_put(kr, id, good));
	assert_ok(keyring_policy_get(kr, id, &got));
	assert_string_equal(got, good);
	free(got);

	const char *bad[] = {
		"",
		"{",
		"not json",
		"[]",
		"{\"Version\":\"1\"}",
		"{\"Statement\":[]}",
		"{\"Version\":1,\"Statement\":[]}",
		"{\"Version\":\"1\",\"Statement\":{}}",
		"{\"Version\":\"1\",\"Statement\":[]} trailing",
		"{\"Version\":\"1\",\"Statement\":[],\"Statement\":[]}",
		"{\"Version\":\"1\",\"Statement\":[\"\\u0000\"]}",
		"{\"Version\":\"\xff\",\"Statement\":[]}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (keyring_policy_put(kr, id, bad[i]) != KMS_INVALID_ARGUMENT)
			fail_msg("policy %zu accepted", i);
		t_assert_message("policy", NULL);
	}
	/* A message never repeats the document. */
	assert_status(keyring_policy_put(kr, id, "{\"secretword\": }"), KMS_INVALID_ARGUMENT);
	assert_null(strstr(kms_error_message(), "secretword"));

	/* 32 KiB is the most: valid JSON of 32 KiB + 1 is refused. */
	size_t size = KMS_POLICY_MAX + 1;
	char *big = malloc(size + 1);
	assert_non_null(big);
	const char *head = "{\"Version\":\"1\",\"Statement\":[],\"Pad\":\"";
	size_t head_len = strlen(head);
	memcpy(big, head, head_len);
	memset(big + head_len, 'p', size - head_len - 2);
	memcpy(big + size - 2, "\"}", 3);
	assert_int_equal(strlen(big), size);
	assert_status(keyring_policy_put(kr, id, big), KMS_INVALID_ARGUMENT);
	t_assert_message("32768", NULL);
	/* One byte less fits. */
	memcpy(big + size - 3, "\"}", 3);
	assert_int_equal(strlen(big), KMS_POLICY_MAX);
	assert_ok(keyring_policy_put(kr, id, big));
	assert_ok(keyring_policy_get(kr, id, &got));
	assert_int_equal(strlen(got), KMS_POLICY_MAX);
	free(got);
	free(big);

	assert_ok(keyring_policy_get(kr, id, &got));
	free(got);
	assert_status(keyring_policy_get(kr, "alias/none", &got), KMS_NOT_FOUND);
	assert_null(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_describe),
		cmocka_unit_test(test_create_refused),
		cmocka_unit_test(test_list_pages),
		cmocka_unit_test(test_states),
		cmocka_unit_test(test_states_resident),
		cmocka_unit_test(test_rotate),
		cmocka_unit_test(test_rotation_period),
		cmocka_unit_test(test_aliases),
		cmocka_unit_test(test_tags),
		cmocka_unit_test(test_policy),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
