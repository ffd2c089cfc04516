#include "tests/support/keyring_test.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *env_required(const char *name)
{
	const char *value = getenv(name);
	if (!value || !value[0])
		fail_msg("%s is not set: run this test through tests/support/with-token", name);
	return value;
}

void t_assert_message(const char *needle, ...)
{
	const char *msg = kms_error_message();
	va_list ap;

	if (strchr(msg, '\n'))
		fail_msg("message is not one line: %s", msg);
	va_start(ap, needle);
	for (const char *n = needle; n; n = va_arg(ap, const char *)) {
		if (!strstr(msg, n)) {
			va_end(ap);
			fail_msg("message lacks \"%s\": %s", n, msg);
		}
	}
	va_end(ap);
}

hsm *t_hsm_open(void)
{
	hsm_config config = {
		.module_path = env_required("KMS_TEST_MODULE"),
		.token_label = env_required("KMS_TEST_TOKEN_LABEL"),
		.pin_file = env_required("KMS_TEST_PIN_FILE"),
	};
	(void)env_required("SOFTHSM2_CONF");
	hsm *h = NULL;
	kms_status st = hsm_open(&config, &h);
	if (st != KMS_OK)
		fail_msg("hsm_open: %s: %s", kms_status_name(st), kms_error_message());
	return h;
}

const char *t_dir(const char *name)
{
	static char path[4][1024];
	static int next;
	char *p = path[next++ % 4];
	int n = snprintf(p, sizeof path[0], "%s/%s", env_required("KMS_TEST_TOKEN_DIR"), name);
	assert_true(n > 0 && (size_t)n < sizeof path[0]);
	if (mkdir(p, 0700) != 0)
		assert_true(access(p, W_OK) == 0);
	return p;
}

keyring *t_keyring_open(hsm *h, uint64_t gcm_max, uint32_t block)
{
	keyring_config cfg = {
		.region = "in-test-1",
		.gcm_max_encryptions = gcm_max,
		.reserve_block = block,
	};
	keyring *kr = NULL;
	assert_ok(keyring_open(h, t_dir("data"), &cfg, &kr));
	assert_non_null(kr);
	return kr;
}

void t_create(keyring *kr, const char *alias, char id_text[KMS_KEYID_TEXT_SIZE])
{
	t_create_as(kr, alias, KEY_PROTECTION_WRAPPED, id_text);
}

void t_create_as(keyring *kr, const char *alias, key_protection protection,
                 char id_text[KMS_KEYID_TEXT_SIZE])
{
	keyring_create_args args = { .description = "test key", .alias = alias,
	                             .protection = protection };
	key_metadata m;
	assert_ok(keyring_create_key(kr, &args, T_NOW, &m));
	memcpy(id_text, m.key.id, KMS_KEYID_TEXT_SIZE);
	key_metadata_free(&m);
}

static kms_status collect(void *ctx, const hsm_object_id *id, hsm_object_kind kind)
{
	t_objects *t = ctx;
	/* An Ed25519 version is a pair: its private half stands for it. */
	if ((kind != HSM_OBJECT_AES_KEY && kind != HSM_OBJECT_ED25519_PRIVATE) ||
	    id->len != KMS_KEYID_HSM_ID_LEN)
		return KMS_OK;
	assert_true(t->n < sizeof t->ids / sizeof t->ids[0]);
	t->ids[t->n++] = *id;
	return KMS_OK;
}

void t_objects_list(hsm *h, t_objects *out)
{
	memset(out, 0, sizeof *out);
	assert_ok(hsm_objects_list(h, collect, out));
}

/* A wrapped version: never a token object; material while active, none
 * once destroyed. */
static void assert_wrapped_version(keyring *kr, const key_metadata *k, const store_version *v,
                                   bool object_exists)
{
	if (object_exists)
		fail_msg("%s:v%u is wrapped but a token object has its id", k->key.id, v->version);
	store_material m;
	kms_status st = store_version_material_get(keyring_store(kr), k->key.id, v->version, &m);
	if (v->state == VERSION_STATE_ACTIVE && st != KMS_OK)
		fail_msg("%s:v%u is active but its wrapped material cannot be read: %s", k->key.id,
		         v->version, kms_error_message());
	if (v->state == VERSION_STATE_ACTIVE && (m.wrapped_len < STORE_WRAPPED_MIN || !m.kek_id))
		fail_msg("%s:v%u is active but has no wrapped material", k->key.id, v->version);
	if (v->state == VERSION_STATE_DESTROYED && st != KMS_FAILED_PRECONDITION)
		fail_msg("%s:v%u is destroyed but its wrapped material is still stored", k->key.id,
		         v->version);
}

size_t t_assert_token_matches(hsm *h, keyring *kr)
{
	static t_objects token;
	t_objects_list(h, &token);
	size_t active = 0;
	char page[KMS_KEYID_TEXT_SIZE] = "";
	do {
		key_metadata *keys;
		size_t n;
		char next[KMS_KEYID_TEXT_SIZE];
		assert_ok(keyring_list(kr, KMS_LIST_LIMIT_MAX, page, &keys, &n, next));
		for (size_t i = 0; i < n; i++) {
			uint8_t id[KMS_KEYID_BYTES];
			assert_ok(keyid_parse(keys[i].key.id, KMS_KEYID_TEXT_LEN, id));
			for (size_t v = 0; v < keys[i].n_versions; v++) {
				hsm_object_id object = { .len = KMS_KEYID_HSM_ID_LEN };
				assert_ok(keyid_hsm_object_id(id, keys[i].versions[v].version,
				                              object.bytes));
				bool exists = false;
				assert_ok(hsm_object_exists(h, &object, &exists));
				if (keys[i].key.protection == KEY_PROTECTION_WRAPPED) {
					assert_wrapped_version(kr, &keys[i], &keys[i].versions[v],
					                       exists);
					continue;
				}
				if (keys[i].versions[v].state == VERSION_STATE_ACTIVE) {
					if (!exists)
						fail_msg("%s:v%u is active but has no HSM object",
						         keys[i].key.id, keys[i].versions[v].version);
					active++;
				} else if (exists) {
					fail_msg("%s:v%u is %s but its HSM object exists",
					         keys[i].key.id, keys[i].versions[v].version,
					         version_state_name(keys[i].versions[v].state));
				}
			}
		}
		key_metadata_array_free(keys, n);
		memcpy(page, next, sizeof page);
	} while (page[0]);
	if (token.n != active)
		fail_msg("token has %zu key-version objects, kms.db %zu active versions", token.n,
		         active);
	return token.n;
}

void t_assert_key_works(hsm *h, keyring *kr, const char *key_ref)
{
	static const uint8_t plaintext[] = "attack at dawn";
	uint8_t iv[HSM_GCM_IV_LEN] = { 1, 2, 3 };
	uint8_t sealed[sizeof plaintext + HSM_GCM_TAG_LEN];
	uint8_t opened[sizeof plaintext];
	keyring_key_use use, back;

	assert_ok(keyring_encrypt_key(kr, key_ref, T_NOW, &use));
	assert_ok(hsm_random(h, iv, sizeof iv));
	assert_ok(keyring_gcm_encrypt(kr, &use, iv, NULL, 0, plaintext, sizeof plaintext, sealed,
	                              sizeof sealed));
	assert_ok(keyring_decrypt_key(kr, use.key_id, use.version, &back));
	assert_int_equal(back.object.len, use.object.len);
	assert_memory_equal(back.object.bytes, use.object.bytes, use.object.len);
	assert_int_equal(back.wrapped, use.wrapped);
	assert_ok(keyring_gcm_decrypt(kr, &back, iv, NULL, 0, sealed, sizeof sealed, opened,
	                              sizeof opened));
	assert_memory_equal(opened, plaintext, sizeof plaintext);
}

const char *t_capture_stderr(void (*fn)(void *), void *arg)
{
	static char text[16384];
	char path[1024];
	int n = snprintf(path, sizeof path, "%s/stderr.capture", env_required("KMS_TEST_TOKEN_DIR"));
	assert_true(n > 0 && (size_t)n < sizeof path);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	fn(arg);
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	ssize_t got = pread(fd, text, sizeof text - 1, 0);
	close(fd);
	text[got > 0 ? got : 0] = '\0';
	/* Show it too: the log is part of what a test run reports. */
	fputs(text, stderr);
	return text;
}
