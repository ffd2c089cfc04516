/*
 * A client signing from a credentials file, seen from the other end: a
 * small NNG REP server in the test keeps the bytes of each request as they
 * arrived, and kmsd's own verifier (kms/authz/authz_verify.h, with a key
 * source holding the file's secret) accepts them; a changed byte of a
 * signed part is refused. Then which access key signs when several are
 * given (kms/client.h): access_key_id, then credentials_file, then
 * $KMS_CREDENTIALS unless no_env_credentials, else none.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include <kms/client.h>
#include <kms/kms.pb-c.h>

#include "tests/kms/authz/authz_test_util.h"

#define KEY_ENV "AKENVENVENVENVENVENVEN"
#define KEY_FILE "AKFILEFILEFILEFILEFILE"
#define KEY_OPT "AKOPTOPTOPTOPTOPTOPTOP"
#define SECRET_HEX "dfdde00f72c42ed00c547578a68dd5d536603a16d52fe61cb4418cb82c088ce8"

/* ---- the server: answers NOT_FOUND, keeps the last request's bytes ---- */

struct server {
	nng_socket socket;
	pthread_t thread;
	char url[128];
	atomic_bool stop;
	pthread_mutex_t lock;
	uint8_t *last; /* malloc'ed copy of the last request as received */
	size_t last_len;
};

static void *server_run(void *arg)
{
	struct server *s = arg;
	while (!atomic_load(&s->stop)) {
		nng_msg *msg;
		if (nng_recvmsg(s->socket, &msg, 0) != 0)
			continue; /* the 50 ms receive timeout: look at stop again */
		size_t len = nng_msg_len(msg);
		uint8_t *copy = malloc(len ? len : 1);
		if (!copy)
			abort();
		memcpy(copy, nng_msg_body(msg), len);
		nng_msg_free(msg);
		Kms__Request *req = kms__request__unpack(NULL, len, copy);
		Kms__Response resp;
		kms__response__init(&resp);
		resp.schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
		resp.request_id = req ? req->request_id : NULL;
		resp.status = KMS__STATUS__NOT_FOUND;
		nng_msg *reply;
		if (nng_msg_alloc(&reply, kms__response__get_packed_size(&resp)) != 0)
			abort();
		kms__response__pack(&resp, nng_msg_body(reply));
		if (req)
			kms__request__free_unpacked(req, NULL);
		pthread_mutex_lock(&s->lock);
		free(s->last);
		s->last = copy;
		s->last_len = len;
		pthread_mutex_unlock(&s->lock);
		if (nng_sendmsg(s->socket, reply, 0) != 0)
			nng_msg_free(reply);
	}
	return NULL;
}

static struct server *server_start(void)
{
	struct server *s = calloc(1, sizeof *s);
	assert_non_null(s);
	pthread_mutex_init(&s->lock, NULL);
	snprintf(s->url, sizeof s->url, "ipc:///tmp/kms-test-creds-sign-%d.sock", (int)getpid());
	assert_int_equal(nng_rep0_open(&s->socket), 0);
	assert_int_equal(nng_socket_set_ms(s->socket, NNG_OPT_RECVTIMEO, 50), 0);
	assert_int_equal(nng_listen(s->socket, s->url, NULL, 0), 0);
	assert_int_equal(pthread_create(&s->thread, NULL, server_run, s), 0);
	return s;
}

static void server_stop(struct server *s)
{
	atomic_store(&s->stop, true);
	pthread_join(s->thread, NULL);
	nng_close(s->socket);
	free(s->last);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* The last request's bytes (malloc'ed, the caller frees) and their length. */
static uint8_t *server_last(struct server *s, size_t *len)
{
	pthread_mutex_lock(&s->lock);
	uint8_t *copy = s->last ? malloc(s->last_len ? s->last_len : 1) : NULL;
	if (copy)
		memcpy(copy, s->last, s->last_len);
	*len = s->last_len;
	pthread_mutex_unlock(&s->lock);
	assert_non_null(copy);
	return copy;
}

/* ---- files ---- */

static char dir[64];

static void write_creds(char *path, size_t cap, const char *name, const char *key_id,
                        const char *secret_hex)
{
	char text[256];
	int n = snprintf(text, sizeof text,
	                 "# kms credentials: principal payments-svc (keep this file secret)\n"
	                 "principal = payments-svc\naccess_key_id = %s\nsecret = %s\n",
	                 key_id, secret_hex);
	snprintf(path, cap, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, (size_t)n), n);
	close(fd);
}

static int setup(void **state)
{
	unsetenv(KMS_CREDENTIALS_ENV);
	snprintf(dir, sizeof dir, "/tmp/kms-test-creds-sign-XXXXXX");
	assert_non_null(mkdtemp(dir));
	*state = server_start();
	return 0;
}

static int teardown(void **state)
{
	server_stop(*state);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	unsetenv(KMS_CREDENTIALS_ENV);
	return 0;
}

/* Opens a client on the server with opts' signing fields, sends one
 * encrypt (answered NOT_FOUND) and returns the request as received. */
static uint8_t *send_one(struct server *s, kms_client_options opts, size_t *len)
{
	const char *endpoints[] = { s->url };
	opts.endpoints = endpoints;
	opts.n_endpoints = 1;
	opts.timeout_ms = 5000;
	kms_client *c;
	kms_error err;
	if (kms_client_open(&opts, &c, &err) != KMS_OK)
		fail_msg("open: %s", err.message);
	static const uint8_t plaintext[] = "4111 1111 1111 1111";
	kms_context_pair ctx[] = { { "purpose", "card" } };
	kms_ciphertext out;
	assert_int_equal(kms_encrypt(c, "alias/payments", plaintext, sizeof plaintext - 1, ctx, 1,
	                             &out, &err),
	                 KMS_NOT_FOUND); /* the answer came: the request was kept */
	kms_client_close(c);
	return server_last(s, len);
}

static void secret_bytes(const char *hex, uint8_t out[KMS_SIGN_SECRET_LEN])
{
	for (int i = 0; i < KMS_SIGN_SECRET_LEN; i++) {
		unsigned v;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
}

/* kmsd's verifier, at the current time, over packed (NULL unpacked: the
 * pipeline refuses it before the verifier). */
static kms_status verify(authz_verifier *v, const uint8_t *packed, size_t len,
                         authz_verdict *verdict, bool *unpacked)
{
	Kms__Request *req = kms__request__unpack(NULL, len, packed);
	*unpacked = req != NULL;
	if (!req)
		return KMS_INVALID_ARGUMENT;
	kms_status st = authz_verify(v, packed, len, req, verdict);
	kms__request__free_unpacked(req, NULL);
	return st;
}

static void file_signed_request_verifies(void **state)
{
	struct server *s = *state;
	char path[128];
	write_creds(path, sizeof path, "creds", KEY_FILE, SECRET_HEX);
	size_t len;
	uint8_t *packed = send_one(s, (kms_client_options){ .credentials_file = path }, &len);

	test_keys keys = { 0 };
	test_key *k = test_keys_add(&keys, KEY_FILE, "payments-svc", 0);
	secret_bytes(SECRET_HEX, k->secret);
	int64_t now = (int64_t)time(NULL);
	authz_verify_config config = {
		.keys = test_keys_source(&keys), .clock = test_clock, .clock_ctx = &now,
	};
	authz_verifier *v;
	assert_int_equal(authz_verifier_open(&config, &v), KMS_OK);

	authz_verdict verdict;
	bool unpacked;
	assert_int_equal(verify(v, packed, len, &verdict, &unpacked), KMS_OK);
	assert_int_equal(verdict.reason, AUTHZ_VERIFIED);
	assert_string_equal(verdict.access_key_id, KEY_FILE);
	assert_string_equal(verdict.principal, "payments-svc");
	assert_string_equal(verdict.operation, "encrypt");

	/* The last byte lies in the plaintext, inside the signed operation:
	 * changed, the MAC no longer matches. */
	packed[len - 1] ^= 0x01;
	assert_int_equal(verify(v, packed, len, &verdict, &unpacked), KMS_ACCESS_DENIED);
	assert_true(unpacked);
	assert_int_equal(verdict.reason, AUTHZ_BAD_MAC);
	packed[len - 1] ^= 0x01;

	/* Every other byte, flipped, in a request that still unpacks: refused.
	 * schema_version (the first two bytes: tag and value) is not signed;
	 * the pipeline checks it on its own. */
	size_t denied = 0;
	for (size_t i = 2; i < len; i++) {
		packed[i] ^= 0x01;
		kms_status st = verify(v, packed, len, &verdict, &unpacked);
		if (unpacked) {
			if (st != KMS_ACCESS_DENIED)
				fail_msg("byte %zu of %zu flipped: %s (%s)", i, len,
				         kms_status_name(st), authz_reason_name(verdict.reason));
			denied++;
		}
		packed[i] ^= 0x01;
	}
	assert_true(denied > len / 2);
	print_message("%zu of %zu flipped bytes unpacked, each refused\n", denied, len - 2);

	/* The same secret under another access key id is not the same key. */
	test_keys other = { 0 };
	secret_bytes(SECRET_HEX, test_keys_add(&other, KEY_ENV, "payments-svc", 0)->secret);
	authz_verify_config config2 = {
		.keys = test_keys_source(&other), .clock = test_clock, .clock_ctx = &now,
	};
	authz_verifier *v2;
	assert_int_equal(authz_verifier_open(&config2, &v2), KMS_OK);
	assert_int_equal(verify(v2, packed, len, &verdict, &unpacked), KMS_ACCESS_DENIED);
	assert_int_equal(verdict.reason, AUTHZ_UNKNOWN_KEY);
	authz_verifier_close(v2);

	authz_verifier_close(v);
	assert_int_equal(keys.lookups, keys.releases);
	free(packed);
}

/* Which access key id the request carried ("" when unsigned). */
static void expect_key(struct server *s, kms_client_options opts, const char *want)
{
	size_t len;
	uint8_t *packed = send_one(s, opts, &len);
	Kms__Request *req = kms__request__unpack(NULL, len, packed);
	assert_non_null(req);
	const char *got = req->credential ? req->credential->access_key_id : "";
	if (strcmp(got, want))
		fail_msg("signed with \"%s\", wanted \"%s\"", got, want);
	kms__request__free_unpacked(req, NULL);
	free(packed);
}

static void which_key_signs(void **state)
{
	struct server *s = *state;
	char env_path[128], file_path[128];
	write_creds(env_path, sizeof env_path, "env", KEY_ENV, SECRET_HEX);
	write_creds(file_path, sizeof file_path, "file", KEY_FILE, SECRET_HEX);
	uint8_t secret[KMS_SIGN_SECRET_LEN];
	secret_bytes(SECRET_HEX, secret);
	kms_client_options opt_key = { .access_key_id = KEY_OPT, .access_key_secret = secret };

	/* None given: unsigned. */
	expect_key(s, (kms_client_options){ 0 }, "");
	/* $KMS_CREDENTIALS alone. */
	assert_int_equal(setenv(KMS_CREDENTIALS_ENV, env_path, 1), 0);
	expect_key(s, (kms_client_options){ 0 }, KEY_ENV);
	/* ... unless no_env_credentials. */
	expect_key(s, (kms_client_options){ .no_env_credentials = true }, "");
	/* credentials_file over $KMS_CREDENTIALS. */
	expect_key(s, (kms_client_options){ .credentials_file = file_path }, KEY_FILE);
	/* access_key_id over both. */
	kms_client_options both = opt_key;
	both.credentials_file = file_path;
	expect_key(s, both, KEY_OPT);
	/* An empty $KMS_CREDENTIALS is not set. */
	assert_int_equal(setenv(KMS_CREDENTIALS_ENV, "", 1), 0);
	expect_key(s, (kms_client_options){ 0 }, "");

	/* A $KMS_CREDENTIALS file that cannot be used fails the open, saying
	 * where the path came from. */
	assert_int_equal(chmod(env_path, 0644), 0);
	assert_int_equal(setenv(KMS_CREDENTIALS_ENV, env_path, 1), 0);
	const char *endpoints[] = { s->url };
	kms_client_options opts = { .endpoints = endpoints, .n_endpoints = 1 };
	kms_client *c = NULL;
	kms_error err;
	assert_int_equal(kms_client_open(&opts, &c, &err), KMS_INVALID_ARGUMENT);
	assert_null(c);
	assert_int_equal(err.origin, KMS_ERROR_LOCAL);
	assert_non_null(strstr(err.message, "chmod 600"));
	assert_non_null(strstr(err.message, "($" KMS_CREDENTIALS_ENV ")"));
	/* ... and is not read at all when something else is chosen. */
	expect_key(s, (kms_client_options){ .credentials_file = file_path }, KEY_FILE);
	expect_key(s, (kms_client_options){ .no_env_credentials = true }, "");
	/* A bad credentials_file fails the open too. */
	opts.credentials_file = env_path;
	opts.no_env_credentials = true;
	assert_int_equal(kms_client_open(&opts, &c, &err), KMS_INVALID_ARGUMENT);
	assert_non_null(strstr(err.message, env_path));
	assert_null(strstr(err.message, "($" KMS_CREDENTIALS_ENV ")"));
	kms_wipe(secret, sizeof secret);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(file_signed_request_verifies, setup, teardown),
		cmocka_unit_test_setup_teardown(which_key_signs, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
