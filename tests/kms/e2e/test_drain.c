/*
 * SIGTERM drains: requests already taken by a worker are answered, in full,
 * before kmsd exits 0; requests sent after the signal get no answer (the
 * client's REQ socket retries them elsewhere).
 *
 * No step here rests on how fast the machine is: the signal goes only once
 * kmsd's /metrics shows a request in flight, and the clients wait as long as
 * the test may run for their answers.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tests/support/audit_check.h"
#include "tests/support/e2e_ops.h"

#define CLIENTS 4
#define BATCH 1000 /* a full batch: long enough to be caught in flight */
/* A batch takes seconds under ASan with four at once on two cores: a client
 * that gave up on one would count as a request the drain dropped. */
#define ANSWER_WAIT_MS 60000

static harness H;
static char key_id[E2E_KEY_ID_SIZE];
static atomic_int answers; /* replies so far, over all clients */

typedef struct client {
	pthread_t thread;
	int answered_ok;  /* replies with every item OK */
	int answered_bad; /* replies that were not */
	int unanswered;
} client;

static void *client_main(void *arg)
{
	client *c = arg;
	nng_socket s;
	if (!e2e_socket(&H, 5000, ANSWER_WAIT_MS, &s)) {
		c->unanswered++;
		return NULL;
	}
	static const uint8_t plaintext[] = "drain me";
	Kms__EncryptRequest items[BATCH];
	Kms__EncryptRequest *ptrs[BATCH];
	for (int i = 0; i < BATCH; i++) {
		kms__encrypt_request__init(&items[i]);
		items[i].key_id = key_id;
		items[i].plaintext.data = (uint8_t *)(uintptr_t)plaintext;
		items[i].plaintext.len = sizeof plaintext - 1;
		ptrs[i] = &items[i];
	}
	Kms__BatchEncryptRequest b = KMS__BATCH_ENCRYPT_REQUEST__INIT;
	b.n_items = BATCH;
	b.items = ptrs;
	for (int round = 0; round < 3; round++) {
		Kms__Request req = KMS__REQUEST__INIT;
		char id[32];
		snprintf(id, sizeof id, "drain-%p-%d", (void *)c, round);
		req.request_id = id;
		req.op_case = KMS__REQUEST__OP_BATCH_ENCRYPT;
		req.batch_encrypt = &b;
		Kms__Response *r = harness_call_on(&H, s, &req);
		atomic_fetch_add(&answers, 1);
		if (!r) {
			c->unanswered++;
			continue;
		}
		bool ok = r->status == KMS__STATUS__OK &&
		          r->result_case == KMS__RESPONSE__RESULT_BATCH_ENCRYPT &&
		          r->batch_encrypt->n_results == BATCH;
		for (size_t i = 0; ok && i < r->batch_encrypt->n_results; i++)
			ok = r->batch_encrypt->results[i]->status == KMS__STATUS__OK;
		/* A request the daemon took after it began draining may be
		 * refused, whole, with UNAVAILABLE: that is an answer too. */
		if (ok)
			c->answered_ok++;
		else if (r->status == KMS__STATUS__UNAVAILABLE)
			c->unanswered++;
		else
			c->answered_bad++;
		kms__response__free_unpacked(r, NULL);
	}
	(void)kms_nng_close_bounded(s, TEST_CLOSE_WAIT_MS);
	return NULL;
}

/* kms_requests_in_flight from kmsd's /metrics, or -1. */
static long in_flight(int port)
{
	char *body;
	size_t len;
	long n = -1;
	if (audit_http_get(port, "/metrics", 5000, &body, &len) == 200 && body) {
		const char *line = strstr(body, "\nkms_requests_in_flight ");
		if (line)
			n = strtol(line + strlen("\nkms_requests_in_flight "), NULL, 10);
	}
	free(body);
	return n;
}

static void sigterm_answers_what_is_in_flight(void **state)
{
	int port = harness_free_port();
	assert_true(port > 0);
	char extra[100];
	snprintf(extra, sizeof extra, "[audit]\nhttp = http://127.0.0.1:%d\n", port);
	harness_options o = { .workers = 4, .extra_config = extra };
	assert_true(harness_start(&H, &o));
	assert_true(harness_create_key(&H, NULL, key_id));

	client clients[CLIENTS];
	memset(clients, 0, sizeof clients);
	for (int i = 0; i < CLIENTS; i++)
		assert_int_equal(pthread_create(&clients[i].thread, NULL, client_main, &clients[i]), 0);
	/* Let a first batch come back, so that the drain has answered work
	 * behind it to beat. */
	uint64_t deadline = e2e_now_ms() + ANSWER_WAIT_MS;
	while (atomic_load(&answers) == 0 && e2e_now_ms() < deadline)
		e2e_sleep_ms(10);
	int before = atomic_load(&answers);
	/* Then wait until kmsd has a request past its drain gate. That request
	 * was not answered when `before` was read (it is still running), and it
	 * will be answered in full, during the drain or just before it: so
	 * ok > before below holds by construction, unless the drain drops
	 * work in flight. */
	long running = 0;
	deadline = e2e_now_ms() + ANSWER_WAIT_MS;
	while ((running = in_flight(port)) < 1 && e2e_now_ms() < deadline)
		e2e_sleep_ms(5);
	if (running < 1)
		fail_msg("no request in flight within %d ms (kms_requests_in_flight %ld); see %s",
		         ANSWER_WAIT_MS, running, H.log);
	assert_int_equal(kill(H.pid, SIGTERM), 0);
	int code = -1;
	assert_true(e2e_wait_exit(&H, 30000, &code));
	for (int i = 0; i < CLIENTS; i++)
		pthread_join(clients[i].thread, NULL);

	int ok = 0, bad = 0;
	for (int i = 0; i < CLIENTS; i++) {
		ok += clients[i].answered_ok;
		bad += clients[i].answered_bad;
	}
	assert_int_equal(code, 0);
	assert_int_equal(bad, 0);  /* nothing half done: every answer whole */
	assert_true(ok > before);  /* batches in flight at SIGTERM were finished */
	assert_true(harness_log_contains(&H, "draining"));
	assert_true(harness_log_contains(&H, "stopped"));
	fprintf(stderr, "drain: %d full batches answered, %d before SIGTERM, %ld running then\n", ok,
	        before, running);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sigterm_answers_what_is_in_flight),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
