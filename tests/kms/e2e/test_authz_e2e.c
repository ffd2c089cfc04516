/*
 * test_authz_e2e: authorization enforced by a real kmsd
 * (docs/authorization.md). Principals e2e-admin, e2e-app and e2e-auditor
 * are created in the store before kmsd starts, each mapped to its own uid
 * in [ipc_principals]; a request as one of them runs in a child that
 * becomes that uid (root only: skipped otherwise) and exits with the reply's
 * status. Keys without a policy get the built-in default (admins manage,
 * no one uses). Then: a ContextEquals condition, a policy change seen by
 * the next request, and the principal rate limit (THROTTLED, retry-after,
 * another principal unaffected).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "kms/store/store.h"
#include "tests/support/harness.h"

static harness H;
static const char *self_path;
static char public_ipc_url[64];
static char default_policy_path[700];
static char extra[1024];

#define UID_ADMIN 60001
#define UID_APP 60002
#define UID_AUDITOR 60003
#define SOCKET_GID 65534
#define CHILD_NO_REPLY 200

/* The built-in default policy (authz_default_policy_json), as a file. */
static const char default_policy[] =
        "{\"Version\":\"2024-01-01\",\"Statement\":["
        "{\"Sid\":\"admins-manage\",\"Effect\":\"Allow\",\"Principal\":\"role:admin\","
        "\"Action\":[\"describe_key\",\"update_key_description\",\"enable_key\","
        "\"disable_key\",\"rotate_key\",\"set_rotation_period\",\"schedule_key_deletion\","
        "\"cancel_key_deletion\",\"tag_key\",\"untag_key\",\"put_key_policy\","
        "\"get_key_policy\",\"create_alias\",\"update_alias\",\"delete_alias\"]}]}";

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* ---- the child: one request as another uid ---- */

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int as_client(const char *uid_text, const char *url, const char *op, const char *key,
                     const char *hex, const char *purpose)
{
	uid_t uid = (uid_t)strtoul(uid_text, NULL, 10);
	if (setgroups(0, NULL) != 0 || setgid(SOCKET_GID) != 0 || setuid(uid) != 0)
		return CHILD_NO_REPLY + 1;
	Kms__Request req = KMS__REQUEST__INIT;
	req.request_id = "authz-child";
	req.schema_version = 1;
	Kms__StringPair pair = KMS__STRING_PAIR__INIT;
	pair.key = "purpose";
	pair.value = (char *)(uintptr_t)purpose;
	Kms__StringPair *pairs[] = { &pair };
	size_t n_pairs = purpose[0] ? 1 : 0;
	uint8_t blob[4096];
	size_t blob_len = 0;
	for (size_t i = 0; hex[i] && hex[i + 1] && blob_len < sizeof blob; i += 2)
		blob[blob_len++] = (uint8_t)(hexval(hex[i]) * 16 + hexval(hex[i + 1]));
	Kms__EncryptRequest enc = KMS__ENCRYPT_REQUEST__INIT;
	Kms__DecryptRequest dec = KMS__DECRYPT_REQUEST__INIT;
	Kms__DescribeKeyRequest desc = KMS__DESCRIBE_KEY_REQUEST__INIT;
	Kms__GetCheckpointRequest cp = KMS__GET_CHECKPOINT_REQUEST__INIT;
	Kms__CreateKeyRequest ck = KMS__CREATE_KEY_REQUEST__INIT;
	Kms__GenerateRandomRequest gr = KMS__GENERATE_RANDOM_REQUEST__INIT;
	Kms__HealthRequest hr = KMS__HEALTH_REQUEST__INIT;
	if (!strcmp(op, "encrypt")) {
		enc.key_id = (char *)(uintptr_t)key;
		enc.plaintext.data = (uint8_t *)"hello";
		enc.plaintext.len = 5;
		enc.encryption_context = pairs;
		enc.n_encryption_context = n_pairs;
		req.op_case = KMS__REQUEST__OP_ENCRYPT;
		req.encrypt = &enc;
	} else if (!strcmp(op, "decrypt")) {
		dec.ciphertext_blob.data = blob;
		dec.ciphertext_blob.len = blob_len;
		dec.encryption_context = pairs;
		dec.n_encryption_context = n_pairs;
		req.op_case = KMS__REQUEST__OP_DECRYPT;
		req.decrypt = &dec;
	} else if (!strcmp(op, "describe_key")) {
		desc.key_id = (char *)(uintptr_t)key;
		req.op_case = KMS__REQUEST__OP_DESCRIBE_KEY;
		req.describe_key = &desc;
	} else if (!strcmp(op, "get_checkpoint")) {
		req.op_case = KMS__REQUEST__OP_GET_CHECKPOINT;
		req.get_checkpoint = &cp;
	} else if (!strcmp(op, "create_key")) {
		ck.description = "by a child";
		req.op_case = KMS__REQUEST__OP_CREATE_KEY;
		req.create_key = &ck;
	} else if (!strcmp(op, "generate_random")) {
		gr.number_of_bytes = 16;
		req.op_case = KMS__REQUEST__OP_GENERATE_RANDOM;
		req.generate_random = &gr;
	} else {
		req.op_case = KMS__REQUEST__OP_HEALTH;
		req.health = &hr;
	}
	size_t n = kms__request__get_packed_size(&req);
	uint8_t *bytes = malloc(n);
	if (!bytes)
		return CHILD_NO_REPLY;
	kms__request__pack(&req, bytes);
	size_t len = 0;
	uint8_t *reply = harness_raw(url, bytes, n, 15000, &len);
	free(bytes);
	Kms__Response *resp = reply ? kms__response__unpack(NULL, len, reply) : NULL;
	free(reply);
	if (!resp)
		return CHILD_NO_REPLY;
	int status = (int)resp->status;
	if (status)
		fprintf(stderr, "child uid %s %s: status %d: %s\n", uid_text, op, status,
		        resp->message);
	kms__response__free_unpacked(resp, NULL);
	return status;
}

/* Runs op as uid in a fresh process; the reply's status. */
static int as_uid(unsigned uid, const char *op, const char *key, const char *blob_hex,
                  const char *purpose)
{
	char uid_text[16];
	snprintf(uid_text, sizeof uid_text, "%u", uid);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl(self_path, self_path, "--as", uid_text, public_ipc_url, op, key ? key : "",
		      blob_hex ? blob_hex : "", purpose ? purpose : "", (char *)NULL);
		_exit(127);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_true(WEXITSTATUS(status) < CHILD_NO_REPLY);
	return WEXITSTATUS(status);
}

/* ---- as test-admin, over the harness's own socket ---- */

static Kms__Response *call(Kms__Request *req)
{
	req->request_id = NULL;
	Kms__Response *r = harness_call(&H, req);
	assert_non_null(r);
	return r;
}

static void create_key(const char *policy, char out[35])
{
	Kms__CreateKeyRequest ck = KMS__CREATE_KEY_REQUEST__INIT;
	ck.policy = (char *)(uintptr_t)(policy ? policy : "");
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	req.create_key = &ck;
	Kms__Response *r = call(&req);
	if (r->status != KMS__STATUS__OK)
		fail_msg("create_key: %s", r->message);
	snprintf(out, 35, "%s", r->create_key->key_metadata->key_id);
	kms__response__free_unpacked(r, NULL);
}

static Kms__Response *encrypt(const char *key, const char *purpose)
{
	Kms__StringPair pair = KMS__STRING_PAIR__INIT;
	pair.key = "purpose";
	pair.value = (char *)(uintptr_t)purpose;
	Kms__StringPair *pairs[] = { &pair };
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	e.key_id = (char *)(uintptr_t)key;
	e.plaintext.data = (uint8_t *)"card";
	e.plaintext.len = 4;
	e.encryption_context = pairs;
	e.n_encryption_context = 1;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &e;
	return call(&req);
}

static int decrypt_status(const ProtobufCBinaryData *blob, const char *purpose)
{
	Kms__StringPair pair = KMS__STRING_PAIR__INIT;
	pair.key = "purpose";
	pair.value = (char *)(uintptr_t)purpose;
	Kms__StringPair *pairs[] = { &pair };
	Kms__DecryptRequest d = KMS__DECRYPT_REQUEST__INIT;
	d.ciphertext_blob = *blob;
	d.encryption_context = pairs;
	d.n_encryption_context = 1;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_DECRYPT;
	req.decrypt = &d;
	Kms__Response *r = call(&req);
	int st = (int)r->status;
	if (st == KMS__STATUS__ACCESS_DENIED)
		assert_non_null(strstr(r->message, "principal test-admin may not decrypt key"));
	kms__response__free_unpacked(r, NULL);
	return st;
}

static void put_policy(const char *key, const char *policy)
{
	Kms__PutKeyPolicyRequest p = KMS__PUT_KEY_POLICY_REQUEST__INIT;
	p.key_id = (char *)(uintptr_t)key;
	p.policy = (char *)(uintptr_t)policy;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_PUT_KEY_POLICY;
	req.put_key_policy = &p;
	Kms__Response *r = call(&req);
	if (r->status != KMS__STATUS__OK)
		fail_msg("put_key_policy: %s", r->message);
	kms__response__free_unpacked(r, NULL);
}

static void to_hex(const ProtobufCBinaryData *b, char *out, size_t cap)
{
	out[0] = '\0';
	for (size_t i = 0; i < b->len && 2 * i + 3 <= cap; i++)
		snprintf(out + 2 * i, 3, "%02x", b->data[i]);
}

/* test-admin may encrypt, and decrypt only for purpose=billing. */
#define BILLING_POLICY(decrypt_statement)                                                    \
	"{\"Version\":\"2024-01-01\",\"Statement\":["                                         \
	"{\"Sid\":\"admins\",\"Effect\":\"Allow\",\"Principal\":\"role:admin\","             \
	"\"Action\":[\"put_key_policy\",\"describe_key\"]},"                                  \
	"{\"Sid\":\"enc\",\"Effect\":\"Allow\",\"Principal\":\"test-admin\","                 \
	"\"Action\":\"encrypt\"}" decrypt_statement "]}"
static const char billing_policy[] = BILLING_POLICY(
        ",{\"Sid\":\"billing\",\"Effect\":\"Allow\",\"Principal\":\"test-admin\","
        "\"Action\":\"decrypt\",\"Condition\":{\"ContextEquals\":{\"purpose\":\"billing\"}}}");
static const char no_decrypt_policy[] = BILLING_POLICY("");

static int start(bool rate_limited)
{
	snprintf(default_policy_path, sizeof default_policy_path, "%s/default-policy.json",
	         getenv("KMS_TEST_TOKEN_DIR"));
	FILE *f = fopen(default_policy_path, "w");
	if (!f || fputs(default_policy, f) < 0 || fclose(f) != 0)
		return -1;
	snprintf(public_ipc_url, sizeof public_ipc_url, "ipc:///tmp/kms-authz-%d.sock",
	         (int)getpid());
	snprintf(extra, sizeof extra,
	         "[listen]\nurl = %s\nipc_group = %d\n"
	         "[ipc_principals]\n%d = e2e-admin\n%d = e2e-app\n%d = e2e-auditor\n%s",
	         public_ipc_url, SOCKET_GID, UID_ADMIN, UID_APP, UID_AUDITOR,
	         rate_limited ? "[limits]\nprincipal_rate = 1\nprincipal_burst = 3\n" : "");
	harness_options o = { .extra_config = extra, .default_key_policy = default_policy_path };
	memset(&H, 0, sizeof H);
	if (!harness_add_principal(&H, &o, "e2e-admin", PRINCIPAL_ROLE_ADMIN) ||
	    !harness_add_principal(&H, &o, "e2e-app", PRINCIPAL_ROLE_APP) ||
	    !harness_add_principal(&H, &o, "e2e-auditor", PRINCIPAL_ROLE_AUDITOR))
		return -1;
	return harness_start(&H, &o) ? 0 : -1;
}

static void roles_and_default_policy(void **state)
{
	(void)state;
	if (getuid() != 0)
		skip(); /* becomes other users */
	assert_int_equal(start(false), 0);
	char k[35], k2[35];
	create_key(NULL, k); /* the default policy: admins manage, no one uses */
	create_key(billing_policy, k2);
	Kms__Response *r = encrypt(k2, "billing");
	assert_int_equal(r->status, KMS__STATUS__OK);
	char hex[2048];
	to_hex(&r->encrypt->ciphertext_blob, hex, sizeof hex);
	kms__response__free_unpacked(r, NULL);

	const int denied = KMS__STATUS__ACCESS_DENIED, ok = KMS__STATUS__OK;
	/* app: no key use without a statement, no key control, random yes. */
	assert_int_equal(as_uid(UID_APP, "encrypt", k, NULL, NULL), denied);
	assert_int_equal(as_uid(UID_APP, "create_key", NULL, NULL, NULL), denied);
	assert_int_equal(as_uid(UID_APP, "describe_key", k, NULL, NULL), denied);
	assert_int_equal(as_uid(UID_APP, "get_checkpoint", NULL, NULL, NULL), denied);
	assert_int_equal(as_uid(UID_APP, "generate_random", NULL, NULL, NULL), ok);
	assert_int_equal(as_uid(UID_APP, "health", NULL, NULL, NULL), ok);
	/* admin: manages, but no role allows using a key. */
	assert_int_equal(as_uid(UID_ADMIN, "decrypt", NULL, hex, "billing"), denied);
	assert_int_equal(as_uid(UID_ADMIN, "encrypt", k, NULL, NULL), denied);
	assert_int_equal(as_uid(UID_ADMIN, "describe_key", k, NULL, NULL), ok);
	assert_int_equal(as_uid(UID_ADMIN, "create_key", NULL, NULL, NULL), ok);
	/* auditor: reads keys and the audit log, nothing else. */
	assert_int_equal(as_uid(UID_AUDITOR, "describe_key", k, NULL, NULL), ok);
	assert_int_equal(as_uid(UID_AUDITOR, "get_checkpoint", NULL, NULL, NULL), ok);
	assert_int_equal(as_uid(UID_AUDITOR, "encrypt", k, NULL, NULL), denied);
	assert_int_equal(as_uid(UID_AUDITOR, "create_key", NULL, NULL, NULL), denied);
	assert_int_equal(as_uid(UID_AUDITOR, "generate_random", NULL, NULL, NULL), denied);
	/* The denial is audited with its reason. */
	assert_true(harness_stop(&H) == 0);
}

static void condition_and_policy_change(void **state)
{
	(void)state;
	if (getuid() != 0)
		skip();
	assert_int_equal(start(false), 0);
	char k[35];
	create_key(billing_policy, k);
	Kms__Response *billing = encrypt(k, "billing");
	Kms__Response *other = encrypt(k, "marketing");
	assert_int_equal(billing->status, KMS__STATUS__OK);
	assert_int_equal(other->status, KMS__STATUS__OK);
	/* ContextEquals purpose=billing. */
	assert_int_equal(decrypt_status(&billing->encrypt->ciphertext_blob, "billing"),
	                 KMS__STATUS__OK);
	assert_int_equal(decrypt_status(&other->encrypt->ciphertext_blob, "marketing"),
	                 KMS__STATUS__ACCESS_DENIED);
	/* A policy change is seen by the next request, without a restart. */
	put_policy(k, no_decrypt_policy);
	assert_int_equal(decrypt_status(&billing->encrypt->ciphertext_blob, "billing"),
	                 KMS__STATUS__ACCESS_DENIED);
	put_policy(k, billing_policy);
	assert_int_equal(decrypt_status(&billing->encrypt->ciphertext_blob, "billing"),
	                 KMS__STATUS__OK);
	kms__response__free_unpacked(billing, NULL);
	kms__response__free_unpacked(other, NULL);
	assert_true(harness_log_contains(&H, "decrypt denied (step 5"));
	assert_true(harness_stop(&H) == 0);
}

static Kms__Response *health(void)
{
	Kms__HealthRequest hr = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &hr;
	return call(&req);
}

static void principal_rate_limit(void **state)
{
	(void)state;
	if (getuid() != 0)
		skip();
	assert_int_equal(start(true), 0); /* 1 request/s, a burst of 3 */
	uint32_t retry = 0;
	/* The bucket holds 3 (one went to the harness's readiness probe). */
	for (int i = 0; i < 20 && !retry; i++) {
		Kms__Response *r = health();
		if (r->status == KMS__STATUS__THROTTLED) {
			retry = r->retry_after_ms;
			assert_true(retry > 0 && retry <= 1000);
			assert_non_null(strstr(r->message, "retry after"));
		} else {
			assert_int_equal(r->status, KMS__STATUS__OK);
		}
		kms__response__free_unpacked(r, NULL);
	}
	assert_true(retry > 0);
	/* Another principal has its own bucket. */
	assert_int_equal(as_uid(UID_APP, "health", NULL, NULL, NULL), KMS__STATUS__OK);
	/* After the retry-after, test-admin is served again (bounded wait). */
	bool served = false;
	for (int i = 0; i < 10 && !served; i++) {
		sleep_ms(retry);
		Kms__Response *r = health();
		served = r->status == KMS__STATUS__OK;
		if (!served)
			retry = r->retry_after_ms ? r->retry_after_ms : 100;
		kms__response__free_unpacked(r, NULL);
	}
	assert_true(served);
	assert_true(harness_stop(&H) == 0);
}

/* A failed test leaves no kmsd holding the store for the next. */
static int teardown(void **state)
{
	(void)state;
	if (H.pid > 0)
		harness_kill9(&H);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 8 && !strcmp(argv[1], "--as"))
		return as_client(argv[2], argv[3], argv[4], argv[5], argv[6], argv[7]);
	self_path = argv[0];
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(roles_and_default_policy, teardown),
		cmocka_unit_test_teardown(condition_and_policy_change, teardown),
		cmocka_unit_test_teardown(principal_rate_limit, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
