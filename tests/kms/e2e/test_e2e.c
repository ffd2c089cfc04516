/*
 * End to end: a real kmsd on a real SoftHSM token, over ipc:// and
 * tls+tcp://, every operation, its success and its documented failures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <grp.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include "tests/support/harness.h"
#include "tests/support/sp_raw.h"
#include "hsm/hsm.h"
#include "kms/format/keyid.h"

static harness H;

/* How long to wait for kmsd's background task to act on a key (a deletion
 * window or a rotation period of a few 1 s "days"): it runs once a second,
 * but a sanitized daemon on a loaded machine can take far longer than the
 * nominal few seconds. Waits end as soon as the change is seen. */
#define BACKGROUND_WAIT_MS 60000

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- request builders ---- */

typedef struct pairs {
	Kms__StringPair items[8];
	Kms__StringPair *ptrs[8];
	size_t n;
} pairs;

static void pairs_add(pairs *p, const char *k, const char *v)
{
	kms__string_pair__init(&p->items[p->n]);
	p->items[p->n].key = (char *)(uintptr_t)k;
	p->items[p->n].value = (char *)(uintptr_t)v;
	p->ptrs[p->n] = &p->items[p->n];
	p->n++;
}

static Kms__Response *call(Kms__Request *req)
{
	Kms__Response *resp = harness_call(&H, req);
	assert_non_null(resp);
	assert_int_equal(resp->schema_version, 1);
	return resp;
}

static void expect_status(Kms__Response *resp, Kms__Status status, const char *needle)
{
	if (resp->status != status)
		fail_msg("status %d, wanted %d: %s", resp->status, status, resp->message);
	if (needle && !strstr(resp->message, needle))
		fail_msg("message \"%s\" lacks \"%s\"", resp->message, needle);
	if (status != KMS__STATUS__OK)
		assert_int_equal(resp->result_case, KMS__RESPONSE__RESULT__NOT_SET);
}

static Kms__Response *encrypt(const char *key, const char *plaintext, pairs *ctx)
{
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	e.key_id = (char *)(uintptr_t)key;
	e.plaintext.data = (uint8_t *)(uintptr_t)plaintext;
	e.plaintext.len = strlen(plaintext);
	if (ctx) {
		e.n_encryption_context = ctx->n;
		e.encryption_context = ctx->ptrs;
	}
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &e;
	return call(&req);
}

static Kms__Response *decrypt(const uint8_t *blob, size_t len, pairs *ctx)
{
	Kms__DecryptRequest d = KMS__DECRYPT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	d.ciphertext_blob.data = (uint8_t *)(uintptr_t)blob;
	d.ciphertext_blob.len = len;
	if (ctx) {
		d.n_encryption_context = ctx->n;
		d.encryption_context = ctx->ptrs;
	}
	req.op_case = KMS__REQUEST__OP_DECRYPT;
	req.decrypt = &d;
	return call(&req);
}

/* Encrypts plaintext and returns a malloc'ed copy of the blob. */
static uint8_t *encrypt_blob(const char *key, const char *plaintext, pairs *ctx, size_t *len,
                             uint32_t *version)
{
	Kms__Response *r = encrypt(key, plaintext, ctx);
	expect_status(r, KMS__STATUS__OK, NULL);
	assert_int_equal(r->result_case, KMS__RESPONSE__RESULT_ENCRYPT);
	*len = r->encrypt->ciphertext_blob.len;
	uint8_t *blob = malloc(*len);
	memcpy(blob, r->encrypt->ciphertext_blob.data, *len);
	if (version)
		*version = r->encrypt->key_version;
	kms__response__free_unpacked(r, NULL);
	return blob;
}

static void expect_decrypts_to(const uint8_t *blob, size_t len, pairs *ctx, const char *want)
{
	Kms__Response *r = decrypt(blob, len, ctx);
	expect_status(r, KMS__STATUS__OK, NULL);
	assert_int_equal(r->decrypt->plaintext.len, strlen(want));
	assert_memory_equal(r->decrypt->plaintext.data, want, strlen(want));
	kms__response__free_unpacked(r, NULL);
}

static void expect_decrypt_fails(const uint8_t *blob, size_t len, pairs *ctx,
                                 Kms__Status status, const char *needle)
{
	Kms__Response *r = decrypt(blob, len, ctx);
	expect_status(r, status, needle);
	kms__response__free_unpacked(r, NULL);
}

#define KEY_OP(fn, Type, INIT, field, OPC)                                        \
	static Kms__Response *fn(const char *key)                                 \
	{                                                                         \
		Type m = INIT;                                                    \
		Kms__Request req = KMS__REQUEST__INIT;                            \
		m.key_id = (char *)(uintptr_t)key;                                \
		req.op_case = OPC;                                                \
		req.field = &m;                                                   \
		return call(&req);                                                \
	}

KEY_OP(describe, Kms__DescribeKeyRequest, KMS__DESCRIBE_KEY_REQUEST__INIT, describe_key,
       KMS__REQUEST__OP_DESCRIBE_KEY)
KEY_OP(enable, Kms__EnableKeyRequest, KMS__ENABLE_KEY_REQUEST__INIT, enable_key,
       KMS__REQUEST__OP_ENABLE_KEY)
KEY_OP(disable, Kms__DisableKeyRequest, KMS__DISABLE_KEY_REQUEST__INIT, disable_key,
       KMS__REQUEST__OP_DISABLE_KEY)
KEY_OP(rotate, Kms__RotateKeyRequest, KMS__ROTATE_KEY_REQUEST__INIT, rotate_key,
       KMS__REQUEST__OP_ROTATE_KEY)
KEY_OP(cancel_deletion, Kms__CancelKeyDeletionRequest, KMS__CANCEL_KEY_DELETION_REQUEST__INIT,
       cancel_key_deletion, KMS__REQUEST__OP_CANCEL_KEY_DELETION)
KEY_OP(get_policy, Kms__GetKeyPolicyRequest, KMS__GET_KEY_POLICY_REQUEST__INIT,
       get_key_policy, KMS__REQUEST__OP_GET_KEY_POLICY)

static void ok_and_free(Kms__Response *r)
{
	expect_status(r, KMS__STATUS__OK, NULL);
	kms__response__free_unpacked(r, NULL);
}

static Kms__Response *schedule_deletion(const char *key, uint32_t days)
{
	Kms__ScheduleKeyDeletionRequest m = KMS__SCHEDULE_KEY_DELETION_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	m.key_id = (char *)(uintptr_t)key;
	m.pending_window_days = days;
	req.op_case = KMS__REQUEST__OP_SCHEDULE_KEY_DELETION;
	req.schedule_key_deletion = &m;
	return call(&req);
}

/* ---- setup ---- */

/* A second ipc listener where any local user can reach it (the token dir is
 * 0700 and may sit below directories other users cannot enter). */
static char public_ipc_url[64];

static int start(void **state)
{
	static char extra[256];
	snprintf(public_ipc_url, sizeof public_ipc_url, "ipc:///tmp/kms-e2e-%d.sock", (int)getpid());
	/* A "day" is one second, so a 7-day deletion window passes in 7 s. */
	snprintf(extra, sizeof extra, "[limits]\nseconds_per_day = 1\ntick_seconds = 1\n"
	         "[listen]\nurl = %s\nipc_group = 65534\n", public_ipc_url);
	harness_options o = { .with_tls = true, .extra_config = extra };
	return harness_start(&H, &o) ? 0 : -1;
}

static int stop(void **state)
{
	int code = harness_stop(&H);
	if (code != 0)
		fprintf(stderr, "kmsd exited %d; log: %s\n", code, H.log);
	return code == 0 ? 0 : -1;
}

/* ---- tests ---- */

static void health_over_ipc_names_the_caller(void **state)
{
	Kms__HealthRequest h = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &h;
	req.request_id = "health-1";
	Kms__Response *r = call(&req);
	expect_status(r, KMS__STATUS__OK, NULL);
	assert_string_equal(r->request_id, "health-1");
	assert_true(r->health->hsm_ok);
	assert_string_equal(r->health->region, "in-mum");
	assert_string_equal(r->health->principal, "test-admin");
	kms__response__free_unpacked(r, NULL);
}

static void tls_with_client_certificate_works(void **state)
{
	nng_socket s;
	assert_true(harness_tls_socket(&H, true, &s));
	char key[35];
	assert_true(harness_create_key(&H, NULL, key));

	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	e.key_id = key;
	e.plaintext.data = (uint8_t *)"over tls";
	e.plaintext.len = 8;
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &e;
	Kms__Response *r = harness_call_on(&H, s, &req);
	assert_non_null(r);
	expect_status(r, KMS__STATUS__OK, NULL);
	Kms__DecryptRequest d = KMS__DECRYPT_REQUEST__INIT;
	Kms__Request req2 = KMS__REQUEST__INIT;
	d.ciphertext_blob = r->encrypt->ciphertext_blob;
	req2.op_case = KMS__REQUEST__OP_DECRYPT;
	req2.decrypt = &d;
	Kms__Response *r2 = harness_call_on(&H, s, &req2);
	assert_non_null(r2);
	expect_status(r2, KMS__STATUS__OK, NULL);
	assert_memory_equal(r2->decrypt->plaintext.data, "over tls", 8);
	kms__response__free_unpacked(r, NULL);
	kms__response__free_unpacked(r2, NULL);
	(void)kms_nng_close_bounded(s, TEST_CLOSE_WAIT_MS);
}

static void tls_without_client_certificate_is_refused(void **state)
{
	nng_socket s;
	assert_true(harness_tls_socket(&H, false, &s));
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 1500);
	nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 1500);
	Kms__HealthRequest h = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &h;
	Kms__Response *r = harness_call_on(&H, s, &req);
	assert_null(r); /* the handshake fails: no answer */
	(void)kms_nng_close_bounded(s, TEST_CLOSE_WAIT_MS);
}

static void key_create_describe_list_update(void **state)
{
	char a[35], b[35];
	assert_true(harness_create_key(&H, "alias/e2e-create", a));
	assert_true(harness_create_key(&H, NULL, b));
	assert_int_equal(strlen(a), 34);
	assert_memory_equal(a, "k-", 2);

	Kms__Response *r = describe("alias/e2e-create");
	expect_status(r, KMS__STATUS__OK, NULL);
	Kms__KeyMetadata *m = r->describe_key->key_metadata;
	assert_string_equal(m->key_id, a);
	assert_int_equal(m->key_state, KMS__KEY_STATE__ENABLED);
	assert_int_equal(m->key_spec, KMS__KEY_SPEC__AES_256);
	assert_int_equal(m->primary_version, 1);
	assert_string_equal(m->region, "in-mum");
	assert_int_equal(m->n_aliases, 1);
	assert_string_equal(m->aliases[0], "alias/e2e-create");
	kms__response__free_unpacked(r, NULL);

	Kms__UpdateKeyDescriptionRequest u = KMS__UPDATE_KEY_DESCRIPTION_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	u.key_id = a;
	u.description = "renamed";
	req.op_case = KMS__REQUEST__OP_UPDATE_KEY_DESCRIPTION;
	req.update_key_description = &u;
	ok_and_free(call(&req));
	r = describe(a);
	expect_status(r, KMS__STATUS__OK, NULL);
	assert_string_equal(r->describe_key->key_metadata->description, "renamed");
	kms__response__free_unpacked(r, NULL);

	/* Pages of 1 walk every key exactly once. */
	Kms__ListKeysRequest l = KMS__LIST_KEYS_REQUEST__INIT;
	Kms__Request lreq = KMS__REQUEST__INIT;
	lreq.op_case = KMS__REQUEST__OP_LIST_KEYS;
	lreq.list_keys = &l;
	l.limit = 1;
	bool saw_a = false, saw_b = false;
	char token[64] = "";
	for (int page = 0; page < 200; page++) {
		l.page_token = token;
		r = call(&lreq);
		expect_status(r, KMS__STATUS__OK, NULL);
		assert_true(r->list_keys->n_keys <= 1);
		for (size_t i = 0; i < r->list_keys->n_keys; i++) {
			saw_a |= !strcmp(r->list_keys->keys[i]->key_id, a);
			saw_b |= !strcmp(r->list_keys->keys[i]->key_id, b);
		}
		snprintf(token, sizeof token, "%s", r->list_keys->next_page_token);
		kms__response__free_unpacked(r, NULL);
		if (!token[0])
			break;
	}
	assert_true(saw_a && saw_b);
	l.page_token = "k-not-a-token";
	r = call(&lreq);
	expect_status(r, KMS__STATUS__INVALID_ARGUMENT, NULL);
	kms__response__free_unpacked(r, NULL);
}

static void unknown_and_malformed_keys(void **state)
{
	Kms__Response *r = describe("k-00000000000000000000000000000000");
	expect_status(r, KMS__STATUS__NOT_FOUND, "k-00000000000000000000000000000000");
	kms__response__free_unpacked(r, NULL);
	r = describe("alias/does-not-exist");
	expect_status(r, KMS__STATUS__NOT_FOUND, NULL);
	kms__response__free_unpacked(r, NULL);
	r = describe("K-NOT-A-KEY");
	expect_status(r, KMS__STATUS__INVALID_ARGUMENT, "key_id");
	kms__response__free_unpacked(r, NULL);
	r = encrypt("k-00000000000000000000000000000000", "x", NULL);
	expect_status(r, KMS__STATUS__NOT_FOUND, NULL);
	kms__response__free_unpacked(r, NULL);
}

static void encrypt_decrypt_with_context(void **state)
{
	char key[35];
	assert_true(harness_create_key(&H, NULL, key));
	pairs ctx = { 0 }, reordered = { 0 }, wrong = { 0 }, fewer = { 0 };
	pairs_add(&ctx, "purpose", "card");
	pairs_add(&ctx, "tenant", "acme");
	pairs_add(&reordered, "tenant", "acme");
	pairs_add(&reordered, "purpose", "card");
	pairs_add(&wrong, "purpose", "card");
	pairs_add(&wrong, "tenant", "evil");
	pairs_add(&fewer, "purpose", "card");

	size_t len;
	uint8_t *blob = encrypt_blob(key, "4111 1111 1111 1111", &ctx, &len, NULL);
	expect_decrypts_to(blob, len, &ctx, "4111 1111 1111 1111");
	expect_decrypts_to(blob, len, &reordered, "4111 1111 1111 1111");
	expect_decrypt_fails(blob, len, &wrong, KMS__STATUS__INVALID_CIPHERTEXT,
	                     "cannot be decrypted with the key it names");
	expect_decrypt_fails(blob, len, &fewer, KMS__STATUS__INVALID_CIPHERTEXT, NULL);
	expect_decrypt_fails(blob, len, NULL, KMS__STATUS__INVALID_CIPHERTEXT, NULL);

	/* Duplicate context keys are refused, not merged. */
	pairs dup = { 0 };
	pairs_add(&dup, "purpose", "card");
	pairs_add(&dup, "purpose", "card");
	Kms__Response *r = encrypt(key, "x", &dup);
	expect_status(r, KMS__STATUS__INVALID_ARGUMENT, "encryption_context");
	kms__response__free_unpacked(r, NULL);
	free(blob);
}

static void tampered_blobs_are_invalid_ciphertext(void **state)
{
	char key[35];
	assert_true(harness_create_key(&H, NULL, key));
	size_t len;
	uint8_t *blob = encrypt_blob(key, "secret-plaintext-e2e", NULL, &len, NULL);
	uint8_t *copy = malloc(len + 1);

	/* A changed key id byte (offset 4..19). */
	memcpy(copy, blob, len);
	copy[10] ^= 0x01;
	expect_decrypt_fails(copy, len, NULL, KMS__STATUS__INVALID_CIPHERTEXT, NULL);
	/* A changed key version. */
	memcpy(copy, blob, len);
	copy[23] ^= 0x01;
	expect_decrypt_fails(copy, len, NULL, KMS__STATUS__INVALID_CIPHERTEXT, NULL);
	/* Every truncation, spot-checked at the edges and the middle. */
	size_t cuts[] = { 1, 3, 4, 20, 24, 40, len / 2, len - 17, len - 1 };
	for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
		expect_decrypt_fails(blob, cuts[i], NULL, KMS__STATUS__INVALID_CIPHERTEXT, NULL);
	/* A trailing byte. */
	memcpy(copy, blob, len);
	copy[len] = 0;
	expect_decrypt_fails(copy, len + 1, NULL, KMS__STATUS__INVALID_CIPHERTEXT, "trailing");
	/* A flipped ciphertext bit and a flipped tag bit. */
	memcpy(copy, blob, len);
	copy[len - 20] ^= 0x80;
	expect_decrypt_fails(copy, len, NULL, KMS__STATUS__INVALID_CIPHERTEXT, NULL);
	memcpy(copy, blob, len);
	copy[len - 1] ^= 0x01;
	expect_decrypt_fails(copy, len, NULL, KMS__STATUS__INVALID_CIPHERTEXT, NULL);
	/* A blob relabelled as made in another region (same length). */
	memcpy(copy, blob, len);
	assert_int_equal(copy[24], 6);
	assert_memory_equal(copy + 25, "in-mum", 6);
	memcpy(copy + 25, "in-del", 6);
	expect_decrypt_fails(copy, len, NULL, KMS__STATUS__INVALID_CIPHERTEXT, "in-del");
	/* Garbage. */
	expect_decrypt_fails((const uint8_t *)"hello", 5, NULL, KMS__STATUS__INVALID_CIPHERTEXT,
	                     NULL);
	/* The original still decrypts: nothing above changed state. */
	expect_decrypts_to(blob, len, NULL, "secret-plaintext-e2e");
	free(copy);
	free(blob);
}

static void rotation_keeps_old_versions_and_reencrypt_moves(void **state)
{
	char key[35];
	assert_true(harness_create_key(&H, "alias/e2e-rotate", key));
	size_t len1, len2;
	uint32_t v1, v2;
	uint8_t *blob1 = encrypt_blob("alias/e2e-rotate", "version one", NULL, &len1, &v1);
	assert_int_equal(v1, 1);

	Kms__Response *r = rotate("alias/e2e-rotate");
	expect_status(r, KMS__STATUS__OK, NULL);
	assert_int_equal(r->rotate_key->key_metadata->primary_version, 2);
	assert_int_equal(r->rotate_key->key_metadata->n_versions, 2);
	kms__response__free_unpacked(r, NULL);

	expect_decrypts_to(blob1, len1, NULL, "version one");
	uint8_t *blob2 = encrypt_blob(key, "version two", NULL, &len2, &v2);
	assert_int_equal(v2, 2);
	expect_decrypts_to(blob2, len2, NULL, "version two");

	/* ReEncrypt with no destination moves the blob to the primary version. */
	Kms__ReEncryptRequest re = KMS__RE_ENCRYPT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	re.ciphertext_blob.data = blob1;
	re.ciphertext_blob.len = len1;
	req.op_case = KMS__REQUEST__OP_RE_ENCRYPT;
	req.re_encrypt = &re;
	r = call(&req);
	expect_status(r, KMS__STATUS__OK, NULL);
	assert_int_equal(r->re_encrypt->source_key_version, 1);
	assert_int_equal(r->re_encrypt->key_version, 2);
	assert_string_equal(r->re_encrypt->key_id, key);
	expect_decrypts_to(r->re_encrypt->ciphertext_blob.data, r->re_encrypt->ciphertext_blob.len,
	                   NULL, "version one");
	kms__response__free_unpacked(r, NULL);

	/* ReEncrypt to another key, with a new context. */
	char other[35];
	assert_true(harness_create_key(&H, NULL, other));
	pairs dctx = { 0 };
	pairs_add(&dctx, "moved", "yes");
	re.destination_key_id = other;
	re.n_destination_encryption_context = dctx.n;
	re.destination_encryption_context = dctx.ptrs;
	r = call(&req);
	expect_status(r, KMS__STATUS__OK, NULL);
	assert_string_equal(r->re_encrypt->key_id, other);
	expect_decrypts_to(r->re_encrypt->ciphertext_blob.data, r->re_encrypt->ciphertext_blob.len,
	                   &dctx, "version one");
	kms__response__free_unpacked(r, NULL);
	free(blob1);
	free(blob2);
}

static void disabled_and_pending_deletion_keys_refuse_use(void **state)
{
	char key[35];
	assert_true(harness_create_key(&H, NULL, key));
	size_t len;
	uint8_t *blob = encrypt_blob(key, "lifecycle", NULL, &len, NULL);

	ok_and_free(disable(key));
	Kms__Response *r = encrypt(key, "x", NULL);
	expect_status(r, KMS__STATUS__FAILED_PRECONDITION, "DISABLED");
	kms__response__free_unpacked(r, NULL);
	expect_decrypt_fails(blob, len, NULL, KMS__STATUS__FAILED_PRECONDITION, NULL);
	ok_and_free(enable(key));
	expect_decrypts_to(blob, len, NULL, "lifecycle");

	r = schedule_deletion(key, 6);
	expect_status(r, KMS__STATUS__INVALID_ARGUMENT, "pending_window_days");
	kms__response__free_unpacked(r, NULL);
	r = schedule_deletion(key, 31);
	expect_status(r, KMS__STATUS__INVALID_ARGUMENT, NULL);
	kms__response__free_unpacked(r, NULL);
	r = schedule_deletion(key, 30);
	expect_status(r, KMS__STATUS__OK, NULL);
	assert_int_equal(r->schedule_key_deletion->key_state, KMS__KEY_STATE__PENDING_DELETION);
	kms__response__free_unpacked(r, NULL);
	r = encrypt(key, "x", NULL);
	expect_status(r, KMS__STATUS__FAILED_PRECONDITION, "PENDING_DELETION");
	kms__response__free_unpacked(r, NULL);
	expect_decrypt_fails(blob, len, NULL, KMS__STATUS__FAILED_PRECONDITION, NULL);

	r = cancel_deletion(key);
	expect_status(r, KMS__STATUS__OK, NULL);
	assert_int_equal(r->cancel_key_deletion->key_state, KMS__KEY_STATE__DISABLED);
	kms__response__free_unpacked(r, NULL);
	ok_and_free(enable(key));
	expect_decrypts_to(blob, len, NULL, "lifecycle");
	free(blob);
}

static void deletion_window_destroys_hsm_objects(void **state)
{
	char key[35];
	assert_true(harness_create_key(&H, "alias/e2e-doomed", key));
	size_t len;
	uint8_t *blob = encrypt_blob(key, "doomed", NULL, &len, NULL);
	Kms__Response *r = schedule_deletion(key, 7); /* 7 "days" of 1 s */
	expect_status(r, KMS__STATUS__OK, NULL);
	kms__response__free_unpacked(r, NULL);

	Kms__KeyState state_seen = KMS__KEY_STATE__PENDING_DELETION;
	uint64_t deadline = now_ms() + BACKGROUND_WAIT_MS;
	while (state_seen != KMS__KEY_STATE__DESTROYED && now_ms() < deadline) {
		struct timespec ts = { 0, 100000000L };
		nanosleep(&ts, NULL);
		r = describe(key);
		expect_status(r, KMS__STATUS__OK, NULL); /* the tombstone stays */
		state_seen = r->describe_key->key_metadata->key_state;
		kms__response__free_unpacked(r, NULL);
	}
	assert_int_equal(state_seen, KMS__KEY_STATE__DESTROYED);
	expect_decrypt_fails(blob, len, NULL, KMS__STATUS__FAILED_PRECONDITION, NULL);
	r = describe("alias/e2e-doomed");
	expect_status(r, KMS__STATUS__NOT_FOUND, NULL); /* aliases go with the key */
	kms__response__free_unpacked(r, NULL);

	/* The HSM object itself is gone: look on the token from this process. */
	hsm_config hc = { .module_path = getenv("KMS_TEST_MODULE"),
	                  .token_label = getenv("KMS_TEST_TOKEN_LABEL"),
	                  .pin_file = getenv("KMS_TEST_PIN_FILE") };
	hsm *h = NULL;
	assert_int_equal(hsm_open(&hc, &h), KMS_OK);
	uint8_t id[KMS_KEYID_BYTES];
	hsm_object_id obj = { .len = KMS_KEYID_HSM_ID_LEN };
	assert_int_equal(keyid_parse(key, strlen(key), id), KMS_OK);
	assert_int_equal(keyid_hsm_object_id(id, 1, obj.bytes), KMS_OK);
	bool exists = true;
	assert_int_equal(hsm_object_exists(h, &obj, &exists), KMS_OK);
	assert_false(exists);
	hsm_close(h);
	free(blob);
}

static void aliases_tags_and_policy(void **state)
{
	char a[35], b[35];
	assert_true(harness_create_key(&H, NULL, a));
	assert_true(harness_create_key(&H, NULL, b));
	Kms__Request req = KMS__REQUEST__INIT;

	Kms__CreateAliasRequest ca = KMS__CREATE_ALIAS_REQUEST__INIT;
	ca.alias_name = "alias/e2e-moving";
	ca.target_key_id = a;
	req.op_case = KMS__REQUEST__OP_CREATE_ALIAS;
	req.create_alias = &ca;
	ok_and_free(call(&req));
	Kms__Response *r = call(&req);
	expect_status(r, KMS__STATUS__ALREADY_EXISTS, NULL);
	kms__response__free_unpacked(r, NULL);
	ca.alias_name = "alias/aws/reserved";
	r = call(&req);
	expect_status(r, KMS__STATUS__INVALID_ARGUMENT, "alias_name");
	kms__response__free_unpacked(r, NULL);
	ca.alias_name = "alias/e2e-x";
	ca.target_key_id = "alias/e2e-moving"; /* aliases point at keys only */
	r = call(&req);
	expect_status(r, KMS__STATUS__INVALID_ARGUMENT, "target_key_id");
	kms__response__free_unpacked(r, NULL);

	Kms__UpdateAliasRequest ua = KMS__UPDATE_ALIAS_REQUEST__INIT;
	ua.alias_name = "alias/e2e-moving";
	ua.target_key_id = b;
	req.op_case = KMS__REQUEST__OP_UPDATE_ALIAS;
	req.update_alias = &ua;
	ok_and_free(call(&req));
	r = describe("alias/e2e-moving");
	expect_status(r, KMS__STATUS__OK, NULL);
	assert_string_equal(r->describe_key->key_metadata->key_id, b);
	kms__response__free_unpacked(r, NULL);

	Kms__ListAliasesRequest la = KMS__LIST_ALIASES_REQUEST__INIT;
	la.key_id = b;
	req.op_case = KMS__REQUEST__OP_LIST_ALIASES;
	req.list_aliases = &la;
	r = call(&req);
	expect_status(r, KMS__STATUS__OK, NULL);
	assert_int_equal(r->list_aliases->n_aliases, 1);
	assert_string_equal(r->list_aliases->aliases[0]->alias_name, "alias/e2e-moving");
	assert_string_equal(r->list_aliases->aliases[0]->target_key_id, b);
	kms__response__free_unpacked(r, NULL);

	Kms__DeleteAliasRequest da = KMS__DELETE_ALIAS_REQUEST__INIT;
	da.alias_name = "alias/e2e-moving";
	req.op_case = KMS__REQUEST__OP_DELETE_ALIAS;
	req.delete_alias = &da;
	ok_and_free(call(&req));
	r = call(&req);
	expect_status(r, KMS__STATUS__NOT_FOUND, NULL);
	kms__response__free_unpacked(r, NULL);

	/* Tags. */
	pairs tags = { 0 };
	pairs_add(&tags, "team", "payments");
	pairs_add(&tags, "env", "prod");
	Kms__TagKeyRequest tk = KMS__TAG_KEY_REQUEST__INIT;
	tk.key_id = a;
	tk.n_tags = tags.n;
	tk.tags = tags.ptrs;
	req.op_case = KMS__REQUEST__OP_TAG_KEY;
	req.tag_key = &tk;
	ok_and_free(call(&req));
	Kms__UntagKeyRequest ut = KMS__UNTAG_KEY_REQUEST__INIT;
	char *remove[] = { "env" };
	ut.key_id = a;
	ut.n_tag_keys = 1;
	ut.tag_keys = remove;
	req.op_case = KMS__REQUEST__OP_UNTAG_KEY;
	req.untag_key = &ut;
	ok_and_free(call(&req));
	r = describe(a);
	expect_status(r, KMS__STATUS__OK, NULL);
	assert_int_equal(r->describe_key->key_metadata->n_tags, 1);
	assert_string_equal(r->describe_key->key_metadata->tags[0]->key, "team");
	assert_string_equal(r->describe_key->key_metadata->tags[0]->value, "payments");
	kms__response__free_unpacked(r, NULL);

	/* Policy: stored and validated (test_authz_e2e covers its enforcement);
	 * the admins keep managing the key. */
	const char *policy = "{\"Version\":\"2024-01-01\",\"Statement\":[{\"Effect\":\"Allow\","
	                     "\"Principal\":\"payments-svc\",\"Action\":[\"encrypt\"]},"
	                     "{\"Effect\":\"Allow\",\"Principal\":\"role:admin\",\"Action\":\"*\"}]}";
	Kms__PutKeyPolicyRequest pp = KMS__PUT_KEY_POLICY_REQUEST__INIT;
	pp.key_id = a;
	pp.policy = (char *)(uintptr_t)policy;
	req.op_case = KMS__REQUEST__OP_PUT_KEY_POLICY;
	req.put_key_policy = &pp;
	ok_and_free(call(&req));
	r = get_policy(a);
	expect_status(r, KMS__STATUS__OK, NULL);
	assert_string_equal(r->get_key_policy->policy, policy);
	kms__response__free_unpacked(r, NULL);
	pp.policy = "{not json";
	r = call(&req);
	expect_status(r, KMS__STATUS__INVALID_ARGUMENT, NULL);
	kms__response__free_unpacked(r, NULL);
	pp.policy = "{\"Version\":\"1\"}";
	r = call(&req);
	expect_status(r, KMS__STATUS__INVALID_ARGUMENT, "Statement");
	kms__response__free_unpacked(r, NULL);
}

static void rotation_period_bounds(void **state)
{
	char key[35];
	assert_true(harness_create_key(&H, NULL, key));
	Kms__SetRotationPeriodRequest sr = KMS__SET_ROTATION_PERIOD_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	sr.key_id = key;
	req.op_case = KMS__REQUEST__OP_SET_ROTATION_PERIOD;
	req.set_rotation_period = &sr;
	sr.rotation_period_days = 3651;
	Kms__Response *r = call(&req);
	expect_status(r, KMS__STATUS__INVALID_ARGUMENT, "rotation_period_days");
	kms__response__free_unpacked(r, NULL);
	sr.rotation_period_days = 2; /* 2 "days" of 1 s: automatic rotation soon */
	r = call(&req);
	expect_status(r, KMS__STATUS__OK, NULL);
	assert_int_equal(r->set_rotation_period->key_metadata->rotation_period_days, 2);
	assert_true(r->set_rotation_period->key_metadata->next_rotation_at > 0);
	kms__response__free_unpacked(r, NULL);

	uint32_t primary = 1;
	uint64_t deadline = now_ms() + BACKGROUND_WAIT_MS;
	while (primary == 1 && now_ms() < deadline) {
		struct timespec ts = { 0, 100000000L };
		nanosleep(&ts, NULL);
		r = describe(key);
		expect_status(r, KMS__STATUS__OK, NULL);
		primary = r->describe_key->key_metadata->primary_version;
		kms__response__free_unpacked(r, NULL);
	}
	assert_true(primary >= 2);
	sr.rotation_period_days = 0;
	ok_and_free(call(&req));
}

static void data_keys_and_random(void **state)
{
	char key[35];
	assert_true(harness_create_key(&H, NULL, key));
	pairs ctx = { 0 };
	pairs_add(&ctx, "bucket", "s3://in-archive");
	Kms__GenerateDataKeyRequest g = KMS__GENERATE_DATA_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	g.key_id = key;
	g.n_encryption_context = ctx.n;
	g.encryption_context = ctx.ptrs;
	req.op_case = KMS__REQUEST__OP_GENERATE_DATA_KEY;
	req.generate_data_key = &g;
	Kms__Response *r = call(&req);
	expect_status(r, KMS__STATUS__OK, NULL);
	assert_int_equal(r->generate_data_key->plaintext.len, 32);
	Kms__Response *d = decrypt(r->generate_data_key->ciphertext_blob.data,
	                           r->generate_data_key->ciphertext_blob.len, &ctx);
	expect_status(d, KMS__STATUS__OK, NULL);
	assert_int_equal(d->decrypt->plaintext.len, 32);
	assert_memory_equal(d->decrypt->plaintext.data, r->generate_data_key->plaintext.data, 32);
	kms__response__free_unpacked(d, NULL);
	kms__response__free_unpacked(r, NULL);

	Kms__GenerateDataKeyWithoutPlaintextRequest gw =
	        KMS__GENERATE_DATA_KEY_WITHOUT_PLAINTEXT_REQUEST__INIT;
	gw.key_id = key;
	req.op_case = KMS__REQUEST__OP_GENERATE_DATA_KEY_WITHOUT_PLAINTEXT;
	req.generate_data_key_without_plaintext = &gw;
	r = call(&req);
	expect_status(r, KMS__STATUS__OK, NULL);
	d = decrypt(r->generate_data_key_without_plaintext->ciphertext_blob.data,
	            r->generate_data_key_without_plaintext->ciphertext_blob.len, NULL);
	expect_status(d, KMS__STATUS__OK, NULL);
	assert_int_equal(d->decrypt->plaintext.len, 32);
	kms__response__free_unpacked(d, NULL);
	kms__response__free_unpacked(r, NULL);

	Kms__GenerateRandomRequest gr = KMS__GENERATE_RANDOM_REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_GENERATE_RANDOM;
	req.generate_random = &gr;
	uint32_t sizes[] = { 1, 32, 1024 };
	for (size_t i = 0; i < 3; i++) {
		gr.number_of_bytes = sizes[i];
		r = call(&req);
		expect_status(r, KMS__STATUS__OK, NULL);
		assert_int_equal(r->generate_random->random.len, sizes[i]);
		kms__response__free_unpacked(r, NULL);
	}
	uint32_t bad[] = { 0, 1025 };
	for (size_t i = 0; i < 2; i++) {
		gr.number_of_bytes = bad[i];
		r = call(&req);
		expect_status(r, KMS__STATUS__INVALID_ARGUMENT, "number_of_bytes");
		kms__response__free_unpacked(r, NULL);
	}
}

static void plaintext_limits(void **state)
{
	char key[35];
	assert_true(harness_create_key(&H, NULL, key));
	char *big = malloc(4098);
	memset(big, 'a', 4097);
	big[4097] = '\0';
	Kms__Response *r = encrypt(key, big, NULL);
	expect_status(r, KMS__STATUS__INVALID_ARGUMENT, "4097");
	kms__response__free_unpacked(r, NULL);
	big[4096] = '\0';
	size_t len;
	uint8_t *blob = encrypt_blob(key, big, NULL, &len, NULL);
	expect_decrypts_to(blob, len, NULL, big);
	r = encrypt(key, "", NULL);
	expect_status(r, KMS__STATUS__INVALID_ARGUMENT, "plaintext");
	kms__response__free_unpacked(r, NULL);
	free(blob);
	free(big);
}

static void batches_fail_per_item(void **state)
{
	char key[35];
	assert_true(harness_create_key(&H, NULL, key));
	Kms__EncryptRequest items[3];
	Kms__EncryptRequest *ptrs[3];
	const char *texts[] = { "one", "", "three" }; /* the empty one fails alone */
	for (int i = 0; i < 3; i++) {
		kms__encrypt_request__init(&items[i]);
		items[i].key_id = key;
		items[i].plaintext.data = (uint8_t *)(uintptr_t)texts[i];
		items[i].plaintext.len = strlen(texts[i]);
		ptrs[i] = &items[i];
	}
	Kms__BatchEncryptRequest be = KMS__BATCH_ENCRYPT_REQUEST__INIT;
	be.n_items = 3;
	be.items = ptrs;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_BATCH_ENCRYPT;
	req.batch_encrypt = &be;
	Kms__Response *r = call(&req);
	expect_status(r, KMS__STATUS__OK, NULL);
	assert_int_equal(r->batch_encrypt->n_results, 3);
	assert_int_equal(r->batch_encrypt->results[0]->status, KMS__STATUS__OK);
	assert_int_equal(r->batch_encrypt->results[1]->status, KMS__STATUS__INVALID_ARGUMENT);
	assert_non_null(strstr(r->batch_encrypt->results[1]->message, "item 1"));
	assert_int_equal(r->batch_encrypt->results[2]->status, KMS__STATUS__OK);

	/* Batch decrypt of the two good blobs plus a bad one. */
	Kms__DecryptRequest ditems[3];
	Kms__DecryptRequest *dptrs[3];
	for (int i = 0; i < 3; i++) {
		kms__decrypt_request__init(&ditems[i]);
		dptrs[i] = &ditems[i];
	}
	ditems[0].ciphertext_blob = r->batch_encrypt->results[0]->result->ciphertext_blob;
	ditems[1].ciphertext_blob.data = (uint8_t *)"junk";
	ditems[1].ciphertext_blob.len = 4;
	ditems[2].ciphertext_blob = r->batch_encrypt->results[2]->result->ciphertext_blob;
	Kms__BatchDecryptRequest bd = KMS__BATCH_DECRYPT_REQUEST__INIT;
	bd.n_items = 3;
	bd.items = dptrs;
	Kms__Request dreq = KMS__REQUEST__INIT;
	dreq.op_case = KMS__REQUEST__OP_BATCH_DECRYPT;
	dreq.batch_decrypt = &bd;
	Kms__Response *d = call(&dreq);
	expect_status(d, KMS__STATUS__OK, NULL);
	assert_int_equal(d->batch_decrypt->n_results, 3);
	assert_int_equal(d->batch_decrypt->results[0]->status, KMS__STATUS__OK);
	assert_memory_equal(d->batch_decrypt->results[0]->result->plaintext.data, "one", 3);
	assert_int_equal(d->batch_decrypt->results[1]->status, KMS__STATUS__INVALID_CIPHERTEXT);
	assert_memory_equal(d->batch_decrypt->results[2]->result->plaintext.data, "three", 5);
	kms__response__free_unpacked(d, NULL);
	kms__response__free_unpacked(r, NULL);

	/* Batch data keys; and an empty or oversized batch is refused whole. */
	Kms__GenerateDataKeyRequest g = KMS__GENERATE_DATA_KEY_REQUEST__INIT;
	Kms__GenerateDataKeyRequest *gp[2] = { &g, &g };
	g.key_id = key;
	Kms__BatchGenerateDataKeyRequest bg = KMS__BATCH_GENERATE_DATA_KEY_REQUEST__INIT;
	bg.n_items = 2;
	bg.items = gp;
	Kms__Request greq = KMS__REQUEST__INIT;
	greq.op_case = KMS__REQUEST__OP_BATCH_GENERATE_DATA_KEY;
	greq.batch_generate_data_key = &bg;
	r = call(&greq);
	expect_status(r, KMS__STATUS__OK, NULL);
	assert_int_equal(r->batch_generate_data_key->n_results, 2);
	assert_int_equal(r->batch_generate_data_key->results[1]->result->plaintext.len, 32);
	assert_memory_not_equal(r->batch_generate_data_key->results[0]->result->plaintext.data,
	                        r->batch_generate_data_key->results[1]->result->plaintext.data, 32);
	kms__response__free_unpacked(r, NULL);
	bg.n_items = 0;
	r = call(&greq);
	expect_status(r, KMS__STATUS__INVALID_ARGUMENT, "1 to 1000");
	kms__response__free_unpacked(r, NULL);
}

/* Sends raw bytes; expects either no answer or an INVALID_ARGUMENT reply. */
static void expect_rejected_raw(const uint8_t *bytes, size_t n)
{
	size_t len;
	uint8_t *reply = harness_raw(H.ipc_url, bytes, n, 3000, &len);
	if (!reply)
		return; /* dropped by the transport */
	Kms__Response *r = kms__response__unpack(NULL, len, reply);
	assert_non_null(r);
	assert_int_equal(r->status, KMS__STATUS__INVALID_ARGUMENT);
	assert_int_equal(r->result_case, KMS__RESPONSE__RESULT__NOT_SET);
	kms__response__free_unpacked(r, NULL);
	free(reply);
}

static void garbage_is_answered_and_the_daemon_keeps_serving(void **state)
{
	uint8_t junk[512];
	srand(7);
	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (uint8_t)rand();
	expect_rejected_raw(junk, sizeof junk);
	expect_rejected_raw(junk, 1);
	expect_rejected_raw((const uint8_t *)"", 0); /* empty: no request id */

	/* A valid request, truncated at every length. */
	Kms__HealthRequest h = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.schema_version = 1;
	req.request_id = "truncate-me-please";
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &h;
	uint8_t packed[128];
	size_t n = kms__request__pack(&req, packed);
	for (size_t cut = 1; cut < n; cut++)
		expect_rejected_raw(packed, cut);

	/* An unknown operation (field 99), a wrong schema version, a bad id. */
	const uint8_t unknown_op[] = { 0x08, 0x01, 0x12, 0x02, 'i', 'd', 0x9a, 0x06, 0x00 };
	expect_rejected_raw(unknown_op, sizeof unknown_op);
	req.schema_version = 7;
	n = kms__request__pack(&req, packed);
	expect_rejected_raw(packed, n);
	req.schema_version = 1;
	req.request_id = "has spaces";
	n = kms__request__pack(&req, packed);
	expect_rejected_raw(packed, n);

	/* Larger than max_request_bytes (8 MiB): NNG drops it unread. */
	size_t huge = (8u << 20) + 1024;
	uint8_t *big = calloc(1, huge);
	expect_rejected_raw(big, huge);
	free(big);

	/* Still serving. */
	Kms__Request empty = KMS__REQUEST__INIT;
	Kms__Response *r = call(&empty);
	expect_status(r, KMS__STATUS__INVALID_ARGUMENT, "no operation");
	kms__response__free_unpacked(r, NULL);
	req.request_id = NULL;
	r = call(&req);
	expect_status(r, KMS__STATUS__OK, NULL);
	kms__response__free_unpacked(r, NULL);
}

/* The other half of unmapped_ipc_uid_is_denied, in a fresh process: as
 * uid 65534 (in the socket's group, so the file's mode lets it connect),
 * connect and send a Health request; exit 0 when kmsd closes the
 * connection without sending a single byte (not even its handshake). */
static int nobody_client(const char *url)
{
	if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
		return 2;
	signal(SIGPIPE, SIG_IGN); /* kmsd closes before the hello is written */
	int fd = sp_raw_unix_connect(url + strlen("ipc://"), 5);
	if (fd < 0)
		return 3;
	/* May fail: kmsd may have closed already. */
	(void)sp_raw_put_all(fd, sp_raw_req_hello, sizeof sp_raw_req_hello);
	uint8_t buf[64];
	ssize_t n = read(fd, buf, sizeof buf);
	close(fd);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 4; /* still open after 5 s */
	return n <= 0 ? 0 : 5; /* EOF or reset, with nothing read */
}

static const char *self_path;

/* A local user the config does not name is closed at connect, before
 * kmsd reads or sends a byte (no buffer, no worker spent on it). */
static void unmapped_ipc_uid_is_denied(void **state)
{
	if (getuid() != 0)
		skip(); /* needs to become another user */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl(self_path, self_path, "--as-nobody-client", public_ipc_url, (char *)NULL);
		_exit(127);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void logs_hold_no_secrets(void **state)
{
	char *log = harness_read_file(H.log, NULL);
	assert_non_null(log);
	assert_null(strstr(log, "4111 1111 1111 1111"));
	assert_null(strstr(log, "secret-plaintext-e2e"));
	char *pin = harness_read_file(getenv("KMS_TEST_PIN_FILE"), NULL);
	assert_non_null(pin);
	pin[strcspn(pin, "\n")] = '\0';
	assert_true(strlen(pin) >= 8);
	assert_null(strstr(log, pin));
	free(pin);
	free(log);
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--as-nobody-client"))
		return nobody_client(argv[2]);
	self_path = argv[0];
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(health_over_ipc_names_the_caller),
		cmocka_unit_test(tls_with_client_certificate_works),
		cmocka_unit_test(tls_without_client_certificate_is_refused),
		cmocka_unit_test(key_create_describe_list_update),
		cmocka_unit_test(unknown_and_malformed_keys),
		cmocka_unit_test(encrypt_decrypt_with_context),
		cmocka_unit_test(tampered_blobs_are_invalid_ciphertext),
		cmocka_unit_test(rotation_keeps_old_versions_and_reencrypt_moves),
		cmocka_unit_test(disabled_and_pending_deletion_keys_refuse_use),
		cmocka_unit_test(deletion_window_destroys_hsm_objects),
		cmocka_unit_test(aliases_tags_and_policy),
		cmocka_unit_test(rotation_period_bounds),
		cmocka_unit_test(data_keys_and_random),
		cmocka_unit_test(plaintext_limits),
		cmocka_unit_test(batches_fail_per_item),
		cmocka_unit_test(garbage_is_answered_and_the_daemon_keeps_serving),
		cmocka_unit_test(unmapped_ipc_uid_is_denied),
		cmocka_unit_test(logs_hold_no_secrets),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
