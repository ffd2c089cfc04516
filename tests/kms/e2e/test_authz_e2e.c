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
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/context.h"
#include "kms/store/store.h"
#include "tests/support/audit_check.h"
#include "tests/support/e2e_request.h"
#include "tests/support/harness.h"

static harness H;
static const char *self_path;
static char public_ipc_url[64];
static char extra[1024];
static int http_port;

#define UID_ADMIN 60001
#define UID_APP 60002
#define UID_AUDITOR 60003
#define SOCKET_GID 65534
#define CHILD_NO_REPLY 200

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

static int decrypt_status(const ProtobufCBinaryData *blob, const char *purpose, char *id)
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
	if (id) { /* the entry is looked up by it */
		req.request_id = id;
		kms__response__free_unpacked(r, NULL);
		r = harness_call(&H, &req);
		assert_non_null(r);
	}
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
	snprintf(public_ipc_url, sizeof public_ipc_url, "ipc:///tmp/kms-authz-%d.sock",
	         (int)getpid());
	snprintf(extra, sizeof extra,
	         "[listen]\nurl = %s\nipc_group = %d\n"
	         "[ipc_principals]\n%d = e2e-admin\n%d = e2e-app\n%d = e2e-auditor\n%s"
	         "[audit]\nhttp = http://127.0.0.1:%d\n",
	         public_ipc_url, SOCKET_GID, UID_ADMIN, UID_APP, UID_AUDITOR,
	         rate_limited ? "[limits]\nprincipal_rate = 1\nprincipal_burst = 3\n" : "",
	         http_port = harness_free_port());
	harness_options o = { .extra_config = extra, .default_key_policy = "" /* the built-in default */ };
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
	assert_int_equal(decrypt_status(&billing->encrypt->ciphertext_blob, "billing",
	                                "authz-allowed"), KMS__STATUS__OK);
	assert_int_equal(decrypt_status(&other->encrypt->ciphertext_blob, "marketing",
	                                "authz-denied"), KMS__STATUS__ACCESS_DENIED);
	/* A policy change is seen by the next request, without a restart. */
	put_policy(k, no_decrypt_policy);
	assert_int_equal(decrypt_status(&billing->encrypt->ciphertext_blob, "billing", NULL),
	                 KMS__STATUS__ACCESS_DENIED);
	put_policy(k, billing_policy);
	assert_int_equal(decrypt_status(&billing->encrypt->ciphertext_blob, "billing", NULL),
	                 KMS__STATUS__OK);
	kms__response__free_unpacked(billing, NULL);
	kms__response__free_unpacked(other, NULL);
	assert_true(harness_log_contains(&H, "decrypt denied (step 5"));
	/* The audit entries carry the decision, never the policy. */
	char vkey[AUDIT_VKEY_MAX];
	assert_true(audit_vkey_from_log(&H, vkey));
	assert_true(harness_stop(&H) == 0);
	char pub[700];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	audit_entries e;
	audit_load(pub, vkey, NULL, &e);
	json_t *allowed = NULL, *refused = NULL;
	assert_int_equal(audit_count_id(&e, "authz-allowed", &allowed), 1);
	assert_int_equal(audit_count_id(&e, "authz-denied", &refused), 1);
	json_t *allowed_authz = json_object_get(allowed, "authz");
	json_t *refused_authz = json_object_get(refused, "authz");
	assert_non_null(allowed_authz);
	assert_non_null(refused_authz);
	assert_string_equal(audit_str(allowed_authz, "decision"), "allow");
	assert_string_equal(audit_str(allowed_authz, "reason"), "step 4: Allow statement 2 Sid billing");
	assert_string_equal(audit_str(refused_authz, "decision"), "deny");
	assert_non_null(strstr(audit_str(refused_authz, "reason"), "step 5: "));
	assert_non_null(strstr(audit_str(refused_authz, "detail"), "principal test-admin may not "
	                                                           "decrypt key k-"));
	assert_string_equal(audit_str(refused, "status"), "ACCESS_DENIED");
	assert_string_equal(audit_str(refused, "principal"), "test-admin");
	audit_entries_free(&e);
}

/* A key-less request that takes a principal token (Health takes none). */
static Kms__Response *random_bytes(void)
{
	Kms__GenerateRandomRequest gr = KMS__GENERATE_RANDOM_REQUEST__INIT;
	gr.number_of_bytes = 8;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_GENERATE_RANDOM;
	req.generate_random = &gr;
	return call(&req);
}

/* GET /metrics (bounded: 5 s); the body, malloc'ed, or NULL. */
static char *metrics(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return NULL;
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)http_port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	static const char get[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	                          "Connection: close\r\n\r\n";
	char *buf = calloc(1, 1 << 16);
	size_t got = 0;
	if (buf && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
	    write(fd, get, sizeof get - 1) == (ssize_t)(sizeof get - 1)) {
		for (int i = 0; i < 1000 && got < (1 << 16) - 1; i++) {
			ssize_t n = read(fd, buf + got, (1 << 16) - 1 - got);
			if (n <= 0)
				break;
			got += (size_t)n;
		}
	}
	close(fd);
	return buf;
}

static void principal_rate_limit(void **state)
{
	(void)state;
	if (getuid() != 0)
		skip();
	assert_int_equal(start(true), 0); /* 1 request/s, a burst of 3 */
	uint32_t retry = 0;
	/* The bucket holds 3. */
	unsigned served_first = 0;
	for (int i = 0; i < 20 && !retry; i++) {
		Kms__Response *r = random_bytes();
		if (r->status == KMS__STATUS__THROTTLED) {
			retry = r->retry_after_ms;
			assert_true(retry > 0 && retry <= 1000);
			assert_non_null(strstr(r->message, "retry after"));
		} else {
			assert_int_equal(r->status, KMS__STATUS__OK);
			served_first++;
		}
		kms__response__free_unpacked(r, NULL);
	}
	assert_true(retry > 0);
	assert_true(served_first >= 3); /* the burst (plus any refill meanwhile) */
	/* Health is never throttled (the liveness probe). */
	Kms__HealthRequest hr = KMS__HEALTH_REQUEST__INIT;
	Kms__Request hreq = KMS__REQUEST__INIT;
	hreq.op_case = KMS__REQUEST__OP_HEALTH;
	hreq.health = &hr;
	Kms__Response *h = call(&hreq);
	assert_int_equal(h->status, KMS__STATUS__OK);
	kms__response__free_unpacked(h, NULL);
	/* Another principal has its own bucket. */
	assert_int_equal(as_uid(UID_APP, "generate_random", NULL, NULL, NULL), KMS__STATUS__OK);
	/* After the retry-after, test-admin is served again (bounded wait). */
	bool served = false;
	for (int i = 0; i < 10 && !served; i++) {
		sleep_ms(retry);
		Kms__Response *r = random_bytes();
		served = r->status == KMS__STATUS__OK;
		if (!served)
			retry = r->retry_after_ms ? r->retry_after_ms : 100;
		kms__response__free_unpacked(r, NULL);
	}
	assert_true(served);
	/* Counted, by limit; and the denials of the other tests are not here
	 * (a fresh kmsd), so step counts are 0. */
	char *m = metrics();
	assert_non_null(m);
	assert_null(strstr(m, "kms_throttled_total{limit=\"principal\"} 0\n"));
	assert_non_null(strstr(m, "kms_throttled_total{limit=\"principal\"} "));
	assert_non_null(strstr(m, "kms_throttled_total{limit=\"key\"} 0\n"));
	assert_non_null(strstr(m, "kms_authz_denied_total{step=\"2\"} 0\n"));
	free(m);
	assert_true(harness_stop(&H) == 0);
}


/* ---- every operation passes the key check ---- */

/* A policy that lets test-admin do nothing on the key: every keyed
 * operation but the key reads (which an admin has by role) must be denied
 * by the handler's key check, having passed step 2 (test-admin holds every
 * role). An operation of the proto this test has no request for fails it. */
static const char nothing_policy[] =
        "{\"Version\":\"2024-01-01\",\"Statement\":[{\"Effect\":\"Allow\","
        "\"Principal\":\"someone-else\",\"Action\":\"encrypt\"}]}";
static const char all_policy[] =
        "{\"Version\":\"2024-01-01\",\"Statement\":[{\"Effect\":\"Allow\","
        "\"Principal\":\"test-admin\",\"Action\":\"*\"}]}";

typedef struct table_keys {
	char k[35], k3[35];
	ProtobufCBinaryData blob_k, blob_k3;
} table_keys;

/* The operations test-admin's roles decide without the key's policy (or
 * that name no key): not denied with nothing_policy on the key. */
static const char *const not_keyed[] = {
	"describe_key", "get_key_policy", "generate_random", "create_key", "list_keys",
	"list_aliases", "health", "get_checkpoint", "get_inclusion_proof",
	"get_consistency_proof", "create_principal", "list_principals", "describe_principal",
	"enable_principal", "disable_principal", "delete_principal", "create_access_key",
	"list_access_keys", "revoke_access_key", "list_grants", "retire_grant",
	"revoke_grant", "list_keks", "rotate_kek", "list_due_erasures",
	"add_consent_manager", "list_consent_managers", "remove_consent_manager",
	"import_consent", "set_consent_status", "list_consents", "describe_consent",
};

/* The reply to op (by its field name) on the keys; the expected verdict in
 * *expect_denied: 1 denied by the key check, 0 not denied; -1 unknown
 * operation (NULL returned). */
static Kms__Response *run_op(const char *op, table_keys *t, int *expect_denied)
{
	/* re_encrypt from a key test-admin may use into K: the destination's
	 * check denies it (the source's is covered by decrypt). update_alias
	 * moves an alias of k3 onto k. The principals family acts on a name
	 * that is not test-admin's, so the walk never disables or deletes its
	 * caller. */
	e2e_op_args a = {
		.key = t->k,
		.blob = t->blob_k,
		.re_blob = t->blob_k3,
		.re_purpose = "x", /* as the blob was sealed */
		.create_alias = "alias/authz-new",
		.update_alias = "alias/authz-k3",
		.delete_alias = "alias/authz-k",
		.policy = all_policy,
	};
	static e2e_op_request o;
	if (!e2e_op_request_build(&o, op, &a)) {
		*expect_denied = -1;
		return NULL;
	}
	*expect_denied = 1;
	for (size_t i = 0; i < sizeof not_keyed / sizeof not_keyed[0]; i++)
		if (!strcmp(op, not_keyed[i]))
			*expect_denied = 0;
	return call(&o.req);
}

static void alias(const char *name, const char *key)
{
	Kms__CreateAliasRequest ca = KMS__CREATE_ALIAS_REQUEST__INIT;
	ca.alias_name = (char *)(uintptr_t)name;
	ca.target_key_id = (char *)(uintptr_t)key;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_CREATE_ALIAS;
	req.create_alias = &ca;
	Kms__Response *r = call(&req);
	if (r->status != KMS__STATUS__OK)
		fail_msg("create_alias %s: %s", name, r->message);
	kms__response__free_unpacked(r, NULL);
}

static void every_operation_passes_the_key_check(void **state)
{
	(void)state;
	assert_int_equal(start(false), 0);
	table_keys t;
	create_key(all_policy, t.k);
	create_key(all_policy, t.k3);
	Kms__Response *ek = encrypt(t.k, "x");
	Kms__Response *ek3 = encrypt(t.k3, "x");
	assert_int_equal(ek->status, KMS__STATUS__OK);
	assert_int_equal(ek3->status, KMS__STATUS__OK);
	t.blob_k = ek->encrypt->ciphertext_blob;
	t.blob_k3 = ek3->encrypt->ciphertext_blob;
	alias("alias/authz-k", t.k);
	alias("alias/authz-k3", t.k3);
	put_policy(t.k, nothing_policy);

	/* Every operation of the proto's Request.op. */
	const ProtobufCMessageDescriptor *d = &kms__request__descriptor;
	unsigned walked = 0;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->label != PROTOBUF_C_LABEL_NONE || f->type != PROTOBUF_C_TYPE_MESSAGE ||
		    !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
			continue;
		int expect = 0;
		Kms__Response *r = run_op(f->name, &t, &expect);
		if (expect < 0)
			fail_msg("operation %s has no row in this test: add one", f->name);
		int st = r->status;
		if (st == KMS__STATUS__OK && e2e_batch_item_status(r) >= 0)
			st = e2e_batch_item_status(r); /* an item denied fails alone */
		printf("# %-36s %s (%s)\n", f->name, st == KMS__STATUS__ACCESS_DENIED ? "denied" :
		       "not denied", r->message);
		if (expect)
			assert_int_equal(st, KMS__STATUS__ACCESS_DENIED);
		else
			assert_int_not_equal(st, KMS__STATUS__ACCESS_DENIED);
		if (st == KMS__STATUS__ACCESS_DENIED && r->status == KMS__STATUS__ACCESS_DENIED)
			assert_non_null(strstr(r->message, "principal test-admin may not"));
		kms__response__free_unpacked(r, NULL);
		walked++;
	}
	assert_true(walked >= 44);
	kms__response__free_unpacked(ek, NULL);
	kms__response__free_unpacked(ek3, NULL);
	assert_true(harness_stop(&H) == 0);
}


/* ---- grants ---- */

#define GRANT_ID "GRABCDEFGHIJKLMNOPQRST"

/* Writes a live grant (or ends it) straight into the store while kmsd is
 * stopped (the store is locked while it runs): the rows as kmsd reads them.
 * test_authz_live makes and ends grants through the operations. */
static void grant_in_store(const char *key, bool revoke)
{
	char data[700];
	snprintf(data, sizeof data, "%s/data", getenv("KMS_TEST_TOKEN_DIR"));
	store *st = NULL;
	bool created = false;
	assert_int_equal(store_open(data, &st, &created), KMS_OK);
	if (revoke) {
		assert_int_equal(store_grant_end(st, GRANT_ID, GRANT_STATE_REVOKED, time(NULL)),
		                 KMS_OK);
	} else {
		store_grant g = { .state = GRANT_STATE_LIVE, .created_at = time(NULL) };
		snprintf(g.id, sizeof g.id, "%s", GRANT_ID);
		snprintf(g.key_id, sizeof g.key_id, "%s", key);
		snprintf(g.grantee, sizeof g.grantee, "e2e-app");
		snprintf(g.creator, sizeof g.creator, "test-admin");
		snprintf(g.operations, sizeof g.operations, "encrypt");
		context_pair pair = context_pair_from_cstr("purpose", "billing");
		uint8_t *enc = NULL;
		size_t len = 0;
		assert_int_equal(context_encode_alloc(&pair, 1, &enc, &len), KMS_OK);
		assert_true(len <= sizeof g.context);
		memcpy(g.context, enc, len);
		g.context_len = len;
		free(enc);
		assert_int_equal(store_grant_create(st, &g), KMS_OK);
	}
	store_close(st);
}

/* A grant lets its grantee use the key for its operations, only with its
 * context pairs; revoked, it no longer does. */
static void grant_allows_until_revoked(void **state)
{
	(void)state;
	if (getuid() != 0)
		skip();
	assert_int_equal(start(false), 0);
	char k[35];
	create_key(NULL, k); /* the default policy: no one uses it */
	assert_int_equal(as_uid(UID_APP, "encrypt", k, NULL, "billing"),
	                 KMS__STATUS__ACCESS_DENIED);
	assert_true(harness_stop(&H) == 0);

	grant_in_store(k, false);
	assert_int_equal(start(false), 0);
	assert_int_equal(as_uid(UID_APP, "encrypt", k, NULL, "billing"), KMS__STATUS__OK);
	assert_int_equal(as_uid(UID_APP, "encrypt", k, NULL, "marketing"),
	                 KMS__STATUS__ACCESS_DENIED); /* the grant's pair is missing */
	assert_int_equal(as_uid(UID_APP, "encrypt", k, NULL, ""), KMS__STATUS__ACCESS_DENIED);
	assert_int_equal(as_uid(UID_APP, "describe_key", k, NULL, NULL),
	                 KMS__STATUS__ACCESS_DENIED); /* data-plane operations only */
	assert_int_equal(as_uid(UID_AUDITOR, "encrypt", k, NULL, "billing"),
	                 KMS__STATUS__ACCESS_DENIED); /* another principal */
	assert_true(harness_stop(&H) == 0);

	grant_in_store(k, true);
	assert_int_equal(start(false), 0);
	assert_int_equal(as_uid(UID_APP, "encrypt", k, NULL, "billing"),
	                 KMS__STATUS__ACCESS_DENIED);
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
		cmocka_unit_test_teardown(every_operation_passes_the_key_check, teardown),
		cmocka_unit_test_teardown(grant_allows_until_revoked, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
