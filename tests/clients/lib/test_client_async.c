/*
 * libkmsclient's asynchronous calls (kms/client_async.h) against a real
 * kmsd (tests/support/harness.h) and against a REP socket that never
 * answers: 256 Encrypts in flight from one thread, all answered and
 * decrypted back; each callback called exactly once; calls started from
 * callbacks; signed calls; the raw form; a close with calls in flight;
 * the cap refused at once; a timeout reported as one.
 *
 * Every wait is for an event (the callbacks' count), bounded by
 * WAIT_MS.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <kms/client.h>
#include <kms/client_async.h>

#include "tests/support/harness.h"

#define N_CALLS 256
#define WAIT_MS 30000
#define TEXT_MAX 32

static harness H;
static char key_id[KMS_KEY_ID_MAX + 1];

/* ---- counting callbacks ---- */

typedef struct tally {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	size_t finished;
} tally;

static tally T = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };

typedef struct call {
	atomic_int calls;        /* the callback's runs: exactly one */
	kms_status status;
	bool timed_out, canceled;
	char text[TEXT_MAX];
	uint8_t blob[512];
	size_t blob_len;
	char plain[TEXT_MAX];
	kms_client *client;      /* for chains */
	int chain_left;
	char message[KMS_ERROR_MESSAGE_MAX];
} call;

static call calls[KMS_CLIENT_ASYNC_MAX];

static void tally_reset(void)
{
	pthread_mutex_lock(&T.lock);
	T.finished = 0;
	pthread_mutex_unlock(&T.lock);
	memset(calls, 0, sizeof calls);
}

static void tally_one(void)
{
	pthread_mutex_lock(&T.lock);
	T.finished++;
	pthread_cond_broadcast(&T.cond);
	pthread_mutex_unlock(&T.lock);
}

/* Waits until n callbacks have finished, at most WAIT_MS. */
static size_t tally_wait(size_t n)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&T.lock);
	while (T.finished < n) /* bounded by until */
		if (pthread_cond_timedwait(&T.cond, &T.lock, &until) != 0)
			break;
	size_t got = T.finished;
	pthread_mutex_unlock(&T.lock);
	return got;
}

static size_t tally_now(void)
{
	pthread_mutex_lock(&T.lock);
	size_t n = T.finished;
	pthread_mutex_unlock(&T.lock);
	return n;
}

static void record(call *c, const kms_async_result *r)
{
	atomic_fetch_add(&c->calls, 1);
	c->status = r->status;
	c->timed_out = r->timed_out;
	c->canceled = r->canceled;
	snprintf(c->message, sizeof c->message, "%s", r->err->message);
}

static void on_encrypt(void *arg, kms_async_result *r)
{
	call *c = arg;
	record(c, r);
	if (r->status == KMS_OK && r->resp && r->resp->encrypt &&
	    r->resp->encrypt->ciphertext_blob.len <= sizeof c->blob) {
		memcpy(c->blob, r->resp->encrypt->ciphertext_blob.data,
		       r->resp->encrypt->ciphertext_blob.len);
		c->blob_len = r->resp->encrypt->ciphertext_blob.len;
	}
	tally_one();
}

static void on_decrypt(void *arg, kms_async_result *r)
{
	call *c = arg;
	record(c, r);
	if (r->status == KMS_OK && r->resp && r->resp->decrypt &&
	    r->resp->decrypt->plaintext.len < sizeof c->plain)
		memcpy(c->plain, r->resp->decrypt->plaintext.data,
		       r->resp->decrypt->plaintext.len);
	tally_one();
}

static void on_any(void *arg, kms_async_result *r)
{
	record(arg, r);
	tally_one();
}

/* ---- requests ---- */

typedef struct encrypt_req {
	Kms__Request req;
	Kms__EncryptRequest enc;
} encrypt_req;

static void encrypt_req_init(encrypt_req *e, const char *text)
{
	kms__request__init(&e->req);
	kms__encrypt_request__init(&e->enc);
	e->enc.key_id = key_id;
	e->enc.plaintext.data = (uint8_t *)(uintptr_t)text;
	e->enc.plaintext.len = strlen(text);
	e->req.op_case = KMS__REQUEST__OP_ENCRYPT;
	e->req.encrypt = &e->enc;
}

static kms_client *open_client(const char *url, int timeout_ms, const char *credentials)
{
	const char *endpoints[] = { url };
	kms_client_options opts = { .endpoints = endpoints, .n_endpoints = 1,
	                            .timeout_ms = timeout_ms,
	                            .credentials_file = credentials,
	                            .no_env_credentials = true };
	kms_client *c = NULL;
	kms_error err;
	if (kms_client_open(&opts, &c, &err) != KMS_OK)
		fail_msg("open %s: %s", url, err.message);
	return c;
}

/* N_CALLS Encrypts from this thread, all in flight at once, then each
 * decrypted the same way; every callback ran once. */
static void encrypts_in_flight_answered_and_decrypt_back(void **state)
{
	(void)state;
	kms_client *c = open_client(H.ipc_url, 20000, NULL);
	kms_error err;
	tally_reset();
	for (int i = 0; i < N_CALLS; i++) {
		encrypt_req e;
		snprintf(calls[i].text, TEXT_MAX, "async plaintext %03d", i);
		encrypt_req_init(&e, calls[i].text);
		assert_int_equal(kms_client_call_async(c, &e.req, on_encrypt, &calls[i], &err),
		                 KMS_OK);
	}
	assert_int_equal(tally_wait(N_CALLS), N_CALLS);
	for (int i = 0; i < N_CALLS; i++) {
		assert_int_equal(atomic_load(&calls[i].calls), 1);
		if (calls[i].status != KMS_OK)
			fail_msg("encrypt %d: %s", i, calls[i].message);
		assert_true(calls[i].blob_len > 0);
	}

	pthread_mutex_lock(&T.lock);
	T.finished = 0;
	pthread_mutex_unlock(&T.lock);
	for (int i = 0; i < N_CALLS; i++) {
		atomic_store(&calls[i].calls, 0);
		Kms__Request req;
		Kms__DecryptRequest dec;
		kms__request__init(&req);
		kms__decrypt_request__init(&dec);
		dec.ciphertext_blob.data = calls[i].blob;
		dec.ciphertext_blob.len = calls[i].blob_len;
		req.op_case = KMS__REQUEST__OP_DECRYPT;
		req.decrypt = &dec;
		assert_int_equal(kms_client_call_async(c, &req, on_decrypt, &calls[i], &err),
		                 KMS_OK);
	}
	assert_int_equal(tally_wait(N_CALLS), N_CALLS);
	for (int i = 0; i < N_CALLS; i++) {
		assert_int_equal(atomic_load(&calls[i].calls), 1);
		assert_int_equal(calls[i].status, KMS_OK);
		assert_string_equal(calls[i].plain, calls[i].text);
	}
	kms_client_close(c);
	/* No callback after close, nor twice. */
	assert_int_equal(tally_now(), N_CALLS);
	for (int i = 0; i < N_CALLS; i++)
		assert_int_equal(atomic_load(&calls[i].calls), 1);
}

/* A callback that starts the next call of its chain: 16 chains of 20. */
#define CHAINS 16
#define CHAIN_LEN 20

static void on_chain(void *arg, kms_async_result *r)
{
	call *c = arg;
	atomic_fetch_add(&c->calls, 1);
	if (r->status != KMS_OK && c->status == KMS_OK) {
		c->status = r->status;
		snprintf(c->message, sizeof c->message, "%s", r->err->message);
	}
	if (--c->chain_left > 0) {
		encrypt_req e;
		encrypt_req_init(&e, c->text);
		kms_error err;
		kms_status st = kms_client_call_async(c->client, &e.req, on_chain, c, &err);
		if (st == KMS_OK)
			return;
		c->status = st;
		snprintf(c->message, sizeof c->message, "restart: %.200s", err.message);
	}
	tally_one();
}

static void callbacks_start_the_next_call(void **state)
{
	(void)state;
	kms_client *c = open_client(H.ipc_url, 20000, NULL);
	kms_error err;
	tally_reset();
	for (int i = 0; i < CHAINS; i++) {
		calls[i].client = c;
		calls[i].chain_left = CHAIN_LEN;
		snprintf(calls[i].text, TEXT_MAX, "chain %d", i);
		encrypt_req e;
		encrypt_req_init(&e, calls[i].text);
		assert_int_equal(kms_client_call_async(c, &e.req, on_chain, &calls[i], &err),
		                 KMS_OK);
	}
	assert_int_equal(tally_wait(CHAINS), CHAINS);
	for (int i = 0; i < CHAINS; i++) {
		if (calls[i].status != KMS_OK)
			fail_msg("chain %d: %s", i, calls[i].message);
		assert_int_equal(atomic_load(&calls[i].calls), CHAIN_LEN);
	}
	kms_client_close(c);
}

/* Signed from a credentials file: kmsd accepts every call as its signer. */
static void signed_calls_accepted(void **state)
{
	(void)state;
	kms_client *c = open_client(H.ipc_url, 20000, H.credentials);
	kms_error err;
	tally_reset();
	for (int i = 0; i < 64; i++) {
		encrypt_req e;
		snprintf(calls[i].text, TEXT_MAX, "signed %d", i);
		encrypt_req_init(&e, calls[i].text);
		assert_int_equal(kms_client_call_async(c, &e.req, on_encrypt, &calls[i], &err),
		                 KMS_OK);
	}
	assert_int_equal(tally_wait(64), 64);
	for (int i = 0; i < 64; i++)
		if (calls[i].status != KMS_OK)
			fail_msg("signed encrypt %d: %s", i, calls[i].message);
	kms_client_close(c);
}

/* The raw form: a packed Health request, its answer's bytes. */
static atomic_int raw_ok;

static void on_raw(void *arg, kms_async_result *r)
{
	Kms__Response *resp = r->status == KMS_OK
		? kms__response__unpack(NULL, r->reply_len, r->reply) : NULL;
	if (resp && strcmp(resp->request_id, "raw-health") == 0 &&
	    resp->result_case == KMS__RESPONSE__RESULT_HEALTH)
		atomic_store(&raw_ok, 1);
	if (resp)
		kms__response__free_unpacked(resp, NULL);
	on_any(arg, r);
}

static void raw_bytes_round_trip(void **state)
{
	(void)state;
	kms_client *c = open_client(H.ipc_url, 20000, NULL);
	Kms__Request req;
	Kms__HealthRequest health;
	kms__request__init(&req);
	kms__health_request__init(&health);
	req.schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	req.request_id = "raw-health";
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &health;
	uint8_t bytes[256];
	size_t len = kms__request__get_packed_size(&req);
	assert_true(len <= sizeof bytes);
	kms__request__pack(&req, bytes);
	kms_error err;
	tally_reset();
	atomic_store(&raw_ok, 0);
	assert_int_equal(kms_client_call_bytes_async(c, bytes, len, on_raw, &calls[0], &err),
	                 KMS_OK);
	assert_int_equal(tally_wait(1), 1);
	assert_int_equal(calls[0].status, KMS_OK);
	assert_int_equal(atomic_load(&raw_ok), 1);
	assert_int_equal(kms_client_call_bytes_async(c, NULL, 3, on_raw, &calls[0], &err),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(kms_client_call_async(c, NULL, on_any, NULL, &err),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(kms_client_call_async(c, &req, NULL, NULL, &err),
	                 KMS_INVALID_ARGUMENT);
	kms_client_close(c);
}

/* ---- a server that never answers ----
 *
 * A unix socket that listens and never accepts: the kernel completes the
 * client's connect, NNG's handshake never does, so every request waits in
 * the client, in flight, until its timeout or the close. (A REP socket
 * that receives and never replies would do too, but closing it after its
 * peer went can hang in NNG 1.5.2: common/nng_close.h.) */

static int silent_fd = -1;
static char silent_path[600];
static char silent_url[700];
static unsigned silent_seq;

static void silent_start(void)
{
	snprintf(silent_path, sizeof silent_path, "%s/silent-%u.sock", H.dir, silent_seq++);
	snprintf(silent_url, sizeof silent_url, "ipc://%s", silent_path);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	assert_true(strlen(silent_path) < sizeof sa.sun_path);
	memcpy(sa.sun_path, silent_path, strlen(silent_path) + 1);
	silent_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(silent_fd >= 0);
	assert_int_equal(bind(silent_fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(silent_fd, 16), 0);
}

static void silent_stop(void)
{
	close(silent_fd);
	silent_fd = -1;
	unlink(silent_path);
}

/* Closing with every call in flight: each callback once, canceled, before
 * kms_client_close returns. */
static void close_with_calls_in_flight(void **state)
{
	(void)state;
	silent_start();
	kms_client *c = open_client(silent_url, 60000, NULL);
	kms_error err;
	tally_reset();
	for (int i = 0; i < N_CALLS; i++) {
		encrypt_req e;
		encrypt_req_init(&e, "never answered");
		assert_int_equal(kms_client_call_async(c, &e.req, on_any, &calls[i], &err),
		                 KMS_OK);
	}
	assert_int_equal(kms_client_async_in_flight(c), N_CALLS);
	assert_int_equal(tally_now(), 0);
	kms_client_close(c);
	assert_int_equal(tally_now(), N_CALLS);
	for (int i = 0; i < N_CALLS; i++) {
		assert_int_equal(atomic_load(&calls[i].calls), 1);
		assert_int_equal(calls[i].status, KMS_UNAVAILABLE);
		assert_true(calls[i].canceled);
		assert_false(calls[i].timed_out);
	}
	silent_stop();
}

/* Closing while kmsd answers: every callback once, OK or canceled. */
static void close_while_kmsd_answers(void **state)
{
	(void)state;
	kms_client *c = open_client(H.ipc_url, 20000, NULL);
	kms_error err;
	tally_reset();
	for (int i = 0; i < N_CALLS; i++) {
		encrypt_req e;
		encrypt_req_init(&e, "closing soon");
		assert_int_equal(kms_client_call_async(c, &e.req, on_any, &calls[i], &err),
		                 KMS_OK);
	}
	kms_client_close(c);
	assert_int_equal(tally_now(), N_CALLS);
	for (int i = 0; i < N_CALLS; i++) {
		assert_int_equal(atomic_load(&calls[i].calls), 1);
		assert_true(calls[i].status == KMS_OK ||
		            (calls[i].status == KMS_UNAVAILABLE && calls[i].canceled));
	}
}

/* KMS_CLIENT_ASYNC_MAX in flight: the next is refused at once, no
 * callback; once one finishes (here: all, by close) nothing is left. */
static void the_cap_refused_at_once(void **state)
{
	(void)state;
	silent_start();
	kms_client *c = open_client(silent_url, 60000, NULL);
	kms_error err;
	tally_reset();
	for (int i = 0; i < KMS_CLIENT_ASYNC_MAX; i++) {
		encrypt_req e;
		encrypt_req_init(&e, "held");
		assert_int_equal(kms_client_call_async(c, &e.req, on_any, &calls[i], &err),
		                 KMS_OK);
	}
	encrypt_req e;
	encrypt_req_init(&e, "one too many");
	call extra;
	memset(&extra, 0, sizeof extra);
	assert_int_equal(kms_client_call_async(c, &e.req, on_any, &extra, &err),
	                 KMS_THROTTLED);
	assert_int_equal(err.origin, KMS_ERROR_LOCAL);
	assert_non_null(strstr(err.message, "in flight"));
	uint8_t byte = 0;
	assert_int_equal(kms_client_call_bytes_async(c, &byte, 1, on_any, &extra, &err),
	                 KMS_THROTTLED);
	kms_client_close(c);
	assert_int_equal(tally_now(), KMS_CLIENT_ASYNC_MAX);
	assert_int_equal(atomic_load(&extra.calls), 0);
	silent_stop();
}

/* No answer within the client's timeout: UNAVAILABLE, timed_out. */
static void a_timeout_is_reported_as_one(void **state)
{
	(void)state;
	silent_start();
	kms_client *c = open_client(silent_url, 200, NULL);
	kms_error err;
	tally_reset();
	encrypt_req e;
	encrypt_req_init(&e, "too slow");
	assert_int_equal(kms_client_call_async(c, &e.req, on_any, &calls[0], &err), KMS_OK);
	assert_int_equal(tally_wait(1), 1);
	assert_int_equal(calls[0].status, KMS_UNAVAILABLE);
	assert_true(calls[0].timed_out);
	assert_false(calls[0].canceled);
	assert_non_null(strstr(calls[0].message, "within 200 ms"));
	kms_client_close(c);
	assert_int_equal(atomic_load(&calls[0].calls), 1);
	silent_stop();
}

/* No kmsd at the path: refused at once, no callback. */
static void no_socket_refused_at_once(void **state)
{
	(void)state;
	char url[700];
	snprintf(url, sizeof url, "ipc://%s/nobody-here.sock", H.dir);
	kms_client *c = open_client(url, 20000, NULL);
	kms_error err;
	encrypt_req e;
	encrypt_req_init(&e, "to nobody");
	call one;
	memset(&one, 0, sizeof one);
	assert_int_equal(kms_client_call_async(c, &e.req, on_any, &one, &err),
	                 KMS_UNAVAILABLE);
	assert_non_null(strstr(err.message, "no socket at"));
	kms_client_close(c);
	assert_int_equal(atomic_load(&one.calls), 0);
}

static int start(void **state)
{
	(void)state;
	harness_options o = { .bootstrap = true };
	if (!harness_start(&H, &o))
		return -1;
	if (!harness_create_key(&H, NULL, key_id))
		return -1;
	return 0;
}

static int stop(void **state)
{
	(void)state;
	int code = harness_stop(&H);
	if (code != 0)
		fprintf(stderr, "kmsd exited %d; log: %s\n", code, H.log);
	return code == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(encrypts_in_flight_answered_and_decrypt_back),
		cmocka_unit_test(callbacks_start_the_next_call),
		cmocka_unit_test(signed_calls_accepted),
		cmocka_unit_test(raw_bytes_round_trip),
		cmocka_unit_test(close_with_calls_in_flight),
		cmocka_unit_test(close_while_kmsd_answers),
		cmocka_unit_test(the_cap_refused_at_once),
		cmocka_unit_test(a_timeout_is_reported_as_one),
		cmocka_unit_test(no_socket_refused_at_once),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
