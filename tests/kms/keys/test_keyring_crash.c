/*
 * test_keyring_crash: crash safety. For each crash point a child process
 * (this binary, re-executed with KMS_TEST_CRASH_AT set) dies in the middle
 * of creating, rotating or destroying; the parent then reopens the keyring
 * and checks that reconciliation left no half-created key or version
 * visible, no orphan object on the token, that a begun destruction was
 * finished, and that keys acknowledged before the crash still decrypt.
 * Also: orphans planted on the token, an active version's object gone
 * missing, and a new kms.db beside a populated token.
 */
#include "tests/support/keyring_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static hsm *h;
static keyring *kr;

/* A key acknowledged before every crash, and a blob sealed under it. */
static char acked[KMS_KEYID_TEXT_SIZE];
static keyring_key_use acked_use;
static uint8_t acked_iv[HSM_GCM_IV_LEN] = { 7, 7, 7 };
static const uint8_t acked_plaintext[] = "acknowledged before the crash";
static uint8_t acked_sealed[sizeof acked_plaintext + HSM_GCM_TAG_LEN];

static void open_all(void *arg)
{
	h = t_hsm_open();
	kr = t_keyring_open(h, 0, 0);
}

static void close_all(void)
{
	keyring_close(kr);
	kr = NULL;
	hsm_close(h);
	h = NULL;
}

static size_t visible_keys(void)
{
	size_t total = 0;
	char page[KMS_KEYID_TEXT_SIZE] = "";
	do {
		key_metadata *keys;
		size_t n;
		char next[KMS_KEYID_TEXT_SIZE];
		assert_ok(keyring_list(kr, KMS_LIST_LIMIT_MAX, page, &keys, &n, next));
		total += n;
		key_metadata_array_free(keys, n);
		memcpy(page, next, sizeof page);
	} while (page[0]);
	return total;
}

static bool object_exists(hsm *on, const char *key_id, uint32_t version)
{
	uint8_t id[KMS_KEYID_BYTES];
	hsm_object_id object = { .len = KMS_KEYID_HSM_ID_LEN };
	bool exists = true;
	assert_ok(keyid_parse(key_id, strlen(key_id), id));
	assert_ok(keyid_hsm_object_id(id, version, object.bytes));
	assert_ok(hsm_object_exists(on, &object, &exists));
	return exists;
}

/* The acknowledged key still encrypts, and still opens its old blob. */
static void assert_acked_works(void)
{
	keyring_key_use back;
	uint8_t opened[sizeof acked_plaintext];
	t_assert_key_works(h, kr, acked);
	assert_ok(keyring_decrypt_key(kr, acked_use.key_id, acked_use.version, &back));
	assert_ok(keyring_gcm_decrypt(kr, &back, acked_iv, NULL, 0, acked_sealed,
	                              sizeof acked_sealed, opened, sizeof opened));
	assert_memory_equal(opened, acked_plaintext, sizeof acked_plaintext);
}

/*
 * Closes everything, runs `this-binary child ACTION ARG` with
 * KMS_TEST_CRASH_AT=point and expects exit code 99. Then, with only the HSM
 * open, calls peek (to look at the token before reconciliation), and
 * reopens the keyring; returns what reconciliation logged.
 */
static const char *crash_and_reopen(const char *point, const char *action, const char *arg,
                                    void (*peek)(void))
{
	close_all();
	/* This binary by its path, not "/proc/self/exe": under valgrind (scripts/
	 * valgrind) that is valgrind's launcher, while readlink gives ours. */
	char self[4096];
	ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
	assert_true(len > 0);
	self[len] = '\0';
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setenv("KMS_TEST_CRASH_AT", point, 1);
		execl(self, "test_keyring_crash", "child", action, arg ? arg : "", (char *)NULL);
		_exit(127);
	}
	int wstatus;
	assert_int_equal(waitpid(pid, &wstatus, 0), pid);
	if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != KEYRING_CRASH_EXIT_CODE)
		fail_msg("child for %s: exit status %d, want %d", point,
		         WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1, KEYRING_CRASH_EXIT_CODE);
	if (peek) {
		h = t_hsm_open();
		peek();
		hsm_close(h);
		h = NULL;
	}
	return t_capture_stderr(open_all, NULL);
}

/* ---- the child ---- */

static int child_main(const char *action, const char *arg)
{
	hsm_config config = {
		.module_path = getenv("KMS_TEST_MODULE"),
		.token_label = getenv("KMS_TEST_TOKEN_LABEL"),
		.pin_file = getenv("KMS_TEST_PIN_FILE"),
	};
	char dir[1024];
	snprintf(dir, sizeof dir, "%s/data", getenv("KMS_TEST_TOKEN_DIR"));
	keyring_config cfg = { .region = "in-test-1" };
	hsm *ch = NULL;
	keyring *ckr = NULL;
	kms_status st = hsm_open(&config, &ch);
	if (st == KMS_OK)
		st = keyring_open(ch, dir, &cfg, &ckr);
	if (st == KMS_OK) {
		if (strcmp(action, "create") == 0) {
			/* The crash points are those of hsm-resident keys: a
			 * wrapped key has no step between the HSM and its one
			 * commit. */
			keyring_create_args args = { .description = "never acknowledged",
			                             .alias = "alias/crash",
			                             .protection = KEY_PROTECTION_HSM_RESIDENT };
			st = keyring_create_key(ckr, &args, T_NOW, NULL);
		} else if (strcmp(action, "rotate") == 0) {
			st = keyring_rotate(ckr, arg, T_NOW, NULL);
		} else if (strcmp(action, "destroy") == 0) {
			st = keyring_tick(ckr, T_NOW + 31 * T_DAY, NULL);
		}
	}
	fprintf(stderr, "child %s: the crash point was not reached: %s %s\n", action,
	        kms_status_name(st), kms_error_message());
	return 1;
}

/* ---- the tests ---- */

static int group_setup(void **state)
{
	open_all(NULL);
	t_create(kr, "alias/acked", acked);
	assert_ok(keyring_encrypt_key(kr, acked, T_NOW, &acked_use));
	assert_ok(keyring_gcm_encrypt(kr, &acked_use, acked_iv, NULL, 0, acked_plaintext,
	                              sizeof acked_plaintext, acked_sealed, sizeof acked_sealed));
	return 0;
}

static int group_teardown(void **state)
{
	t_assert_token_matches(h, kr);
	close_all();
	return 0;
}

static size_t objects_before;

static void peek_one_more_object(void)
{
	t_objects token;
	t_objects_list(h, &token);
	assert_int_equal(token.n, objects_before + 1);
}

static void peek_same_objects(void)
{
	t_objects token;
	t_objects_list(h, &token);
	assert_int_equal(token.n, objects_before);
}

static void crash_create(const char *point, void (*peek)(void))
{
	size_t keys_before = visible_keys();
	objects_before = t_assert_token_matches(h, kr);
	const char *log = crash_and_reopen(point, "create", NULL, peek);
	assert_non_null(strstr(log, "keyring: reconcile: removed half-created key k-"));
	assert_non_null(strstr(log, ":v1"));

	store_key k;
	assert_status(keyring_resolve(kr, "alias/crash", &k), KMS_NOT_FOUND);
	assert_int_equal(visible_keys(), keys_before);
	assert_int_equal(t_assert_token_matches(h, kr), objects_before);
	assert_acked_works();

	/* The alias the intent had taken is free again. */
	char id[KMS_KEYID_TEXT_SIZE];
	t_create_as(kr, "alias/crash", KEY_PROTECTION_HSM_RESIDENT, id);
	t_assert_key_works(h, kr, "alias/crash");
	assert_ok(keyring_alias_delete(kr, "alias/crash"));
}

static void test_create_after_intent(void **state)
{
	crash_create("create:after-intent", peek_same_objects);
}

static void test_create_after_hsm(void **state)
{
	crash_create("create:after-hsm", peek_one_more_object);
}

static char rotated[KMS_KEYID_TEXT_SIZE];

static void peek_v2_exists(void)
{
	assert_true(object_exists(h, rotated, 2));
}

static void peek_v2_absent(void)
{
	assert_false(object_exists(h, rotated, 2));
}

static void crash_rotate(const char *point, void (*peek)(void))
{
	t_create_as(kr, NULL, KEY_PROTECTION_HSM_RESIDENT, rotated);
	const char *log = crash_and_reopen(point, "rotate", rotated, peek);
	char expect[128];
	snprintf(expect, sizeof expect, "keyring: reconcile: removed half-created version %s:v2",
	         rotated);
	assert_non_null(strstr(log, expect));

	key_metadata m;
	assert_ok(keyring_describe(kr, rotated, &m));
	assert_int_equal(m.key.primary_version, 1);
	assert_int_equal(m.n_versions, 1);
	key_metadata_free(&m);
	assert_false(object_exists(h, rotated, 2));
	t_assert_token_matches(h, kr);
	t_assert_key_works(h, kr, rotated);
	assert_acked_works();

	/* Rotating again works, and takes the number back. */
	assert_ok(keyring_rotate(kr, rotated, T_NOW, &m));
	assert_int_equal(m.key.primary_version, 2);
	key_metadata_free(&m);
	t_assert_key_works(h, kr, rotated);
}

static void test_rotate_after_intent(void **state)
{
	crash_rotate("rotate:after-intent", peek_v2_absent);
}

static void test_rotate_after_hsm(void **state)
{
	crash_rotate("rotate:after-hsm", peek_v2_exists);
}

static char doomed[KMS_KEYID_TEXT_SIZE];

static void peek_doomed_gone(void)
{
	assert_false(object_exists(h, doomed, 1));
	assert_false(object_exists(h, doomed, 2));
}

static void test_destroy_after_hsm(void **state)
{
	t_create_as(kr, "alias/doomed", KEY_PROTECTION_HSM_RESIDENT, doomed);
	assert_ok(keyring_rotate(kr, doomed, T_NOW, NULL));
	assert_ok(keyring_schedule_deletion(kr, doomed, 7, T_NOW, NULL));
	const char *log = crash_and_reopen("destroy:after-hsm", "destroy", NULL, peek_doomed_gone);
	char expect[128];
	snprintf(expect, sizeof expect, "keyring: reconcile: finished destroying key %s", doomed);
	assert_non_null(strstr(log, expect));

	key_metadata m;
	assert_ok(keyring_describe(kr, doomed, &m));
	assert_int_equal(m.key.state, KEY_STATE_DESTROYED);
	assert_int_equal(m.n_versions, 2);
	assert_int_equal(m.versions[0].state, VERSION_STATE_DESTROYED);
	assert_int_equal(m.versions[1].state, VERSION_STATE_DESTROYED);
	assert_int_equal(m.n_aliases, 0);
	key_metadata_free(&m);
	store_key k;
	assert_status(keyring_resolve(kr, "alias/doomed", &k), KMS_NOT_FOUND);
	t_assert_token_matches(h, kr);
	assert_acked_works();
}

static hsm_object_id planted, foreign;

static void test_orphans_removed(void **state)
{
	uint8_t id[KMS_KEYID_BYTES];
	char label[KMS_KEYID_VERSION_LABEL_SIZE];

	/* A key version no row knows of, and an AES object that is not ours. */
	assert_ok(hsm_random(h, id, sizeof id));
	planted.len = KMS_KEYID_HSM_ID_LEN;
	assert_ok(keyid_hsm_object_id(id, 3, planted.bytes));
	assert_ok(keyid_version_label(id, 3, label));
	assert_ok(hsm_aes_create(h, &planted, label));
	memcpy(foreign.bytes, "someone-elses-key", 17);
	foreign.len = 17;
	assert_ok(hsm_aes_create(h, &foreign, "someone else's"));

	close_all();
	const char *log = t_capture_stderr(open_all, NULL);
	char planted_text[KMS_KEYID_TEXT_SIZE], expect[128];
	keyid_format(id, planted_text);
	snprintf(expect, sizeof expect, "keyring: reconcile: removed orphan HSM object %s:v3",
	         planted_text);
	assert_non_null(strstr(log, expect));
	bool exists = true;
	assert_ok(hsm_object_exists(h, &planted, &exists));
	assert_false(exists);
	assert_ok(hsm_object_exists(h, &foreign, &exists));
	assert_true(exists);
	assert_ok(hsm_object_destroy(h, &foreign));
	t_assert_token_matches(h, kr);
	assert_acked_works();
}

static void test_missing_object(void **state)
{
	char id[KMS_KEYID_TEXT_SIZE];
	uint8_t raw[KMS_KEYID_BYTES];
	keyring_key_use use;
	t_create_as(kr, NULL, KEY_PROTECTION_HSM_RESIDENT, id);
	assert_ok(keyid_parse(id, strlen(id), raw));

	hsm_object_id object = { .len = KMS_KEYID_HSM_ID_LEN };
	assert_ok(keyid_hsm_object_id(raw, 1, object.bytes));
	assert_ok(hsm_object_destroy(h, &object));
	close_all();
	const char *log = t_capture_stderr(open_all, NULL);
	char expect[128];
	snprintf(expect, sizeof expect, "keyring: reconcile: MISSING HSM object %s:v1", id);
	assert_non_null(strstr(log, expect));

	/* Kept, described, but every use fails loudly, naming the object. */
	key_metadata m;
	assert_ok(keyring_describe(kr, id, &m));
	assert_int_equal(m.versions[0].state, VERSION_STATE_ACTIVE);
	key_metadata_free(&m);
	snprintf(expect, sizeof expect, "%s:v1", id);
	assert_status(keyring_encrypt_key(kr, id, T_NOW, &use), KMS_HSM_UNAVAILABLE);
	t_assert_message(expect, "missing", NULL);
	assert_status(keyring_decrypt_key(kr, raw, 1, &use), KMS_HSM_UNAVAILABLE);
	t_assert_message(expect, NULL);
	assert_acked_works();

	/* A rotation gets the key encrypting again (v1 stays unusable). */
	assert_ok(keyring_rotate(kr, id, T_NOW, NULL));
	t_assert_key_works(h, kr, id);
	assert_status(keyring_decrypt_key(kr, raw, 1, &use), KMS_HSM_UNAVAILABLE);

	/* Destroying it is fine with the object already gone. */
	assert_ok(keyring_schedule_deletion(kr, id, 7, T_NOW, NULL));
	assert_ok(keyring_tick(kr, T_NOW + 8 * T_DAY, NULL));
	assert_ok(keyring_describe(kr, id, &m));
	assert_int_equal(m.key.state, KEY_STATE_DESTROYED);
	key_metadata_free(&m);
}

static void test_new_db_refused(void **state)
{
	t_objects before, after;
	keyring_config cfg = { .region = "in-test-1" };
	keyring *other = NULL;

	t_objects_list(h, &before);
	assert_true(before.n > 0);
	assert_status(keyring_open(h, t_dir("fresh"), &cfg, &other), KMS_FAILED_PRECONDITION);
	t_assert_message("refusing", NULL);
	assert_null(other);
	t_objects_list(h, &after);
	assert_int_equal(after.n, before.n);
	assert_acked_works();
}

static void test_unknown_crash_point(void **state)
{
	keyring_config cfg = { .region = "in-test-1" };
	keyring *other = NULL;
	setenv("KMS_TEST_CRASH_AT", "create:sometime", 1);
	assert_status(keyring_open(h, t_dir("data"), &cfg, &other), KMS_INVALID_ARGUMENT);
	unsetenv("KMS_TEST_CRASH_AT");
	assert_null(other);
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "child") == 0)
		return child_main(argv[2], argc >= 4 ? argv[3] : "");

	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_after_intent),
		cmocka_unit_test(test_create_after_hsm),
		cmocka_unit_test(test_rotate_after_intent),
		cmocka_unit_test(test_rotate_after_hsm),
		cmocka_unit_test(test_destroy_after_hsm),
		cmocka_unit_test(test_orphans_removed),
		cmocka_unit_test(test_missing_object),
		cmocka_unit_test(test_new_db_refused),
		cmocka_unit_test(test_unknown_crash_point),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
