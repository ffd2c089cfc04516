/*
 * SIGTERM drains: requests already taken by a worker are answered, in full,
 * before kmsd exits 0; requests sent after the signal get no answer (the
 * client's REQ socket retries them elsewhere).
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

#include "tests/support/e2e_ops.h"

#define CLIENTS 4
#define BATCH 1000 /* a full batch: long enough to be caught in flight */

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
	if (!e2e_socket(&H, 5000, 5000, &s)) {
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

static void sigterm_answers_what_is_in_flight(void **state)
{
	harness_options o = { .workers = 4 };
	assert_true(harness_start(&H, &o));
	assert_true(harness_create_key(&H, NULL, key_id));

	client clients[CLIENTS];
	memset(clients, 0, sizeof clients);
	for (int i = 0; i < CLIENTS; i++)
		assert_int_equal(pthread_create(&clients[i].thread, NULL, client_main, &clients[i]), 0);
	/* Once the first answer is back, the other clients' batches are in
	 * workers: stop now (bounded wait, whatever the machine's speed). */
	for (int i = 0; i < 2000 && atomic_load(&answers) == 0; i++)
		e2e_sleep_ms(10);
	int before = atomic_load(&answers);
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
	fprintf(stderr, "drain: %d full batches answered while stopping\n", ok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sigterm_answers_what_is_in_flight),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
