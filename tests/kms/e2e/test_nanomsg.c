/*
 * test_nanomsg: a libnanomsg client, and the nanocat CLI, talk to a real
 * kmsd over ipc:// (any nanomsg client can). Raw packed protobuf
 * requests, replies unpacked and checked. And a nanomsg client whose
 * reply is past its receive limit, dropping and reconnecting, does not
 * stop kmsd serving anyone else (it used to wedge NNG's ipc listener).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>

#include "tests/support/audit_check.h"
#include "tests/support/harness.h"

#define REGION "in-bom-nn"
#define NN_TIMEOUT_MS 10000
#define NANOCAT_TIMEOUT_S 10
#define REPLY_FILE_MAX (64u << 10)
#define CHURN_ITEMS 300          /* x 4 KiB: a reply past nanomsg's 1 MiB default */
#define CHURN_PLAINTEXT 4096
#define CHURN_MS 3000            /* how long the nanomsg client keeps trying */
#define CHURN_CALLS_MAX 100000   /* bound on the other client's loop */

#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		if (!(cond))                                                               \
			fail_msg(__VA_ARGS__);                                             \
	} while (0)

static harness g_h;

static int setup(void **state)
{
	(void)state;
	harness_options o = { .region = REGION };
	return harness_start(&g_h, &o) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	int code = harness_stop(&g_h);
	if (code != 0)
		fprintf(stderr, "kmsd exited with %d on SIGTERM; see %s\n", code, g_h.log);
	return code == 0 ? 0 : -1;
}

/* A packed Health request with request_id; malloc'ed. */
static uint8_t *pack_health(const char *request_id, size_t *len)
{
	Kms__HealthRequest health = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	req.request_id = (char *)(uintptr_t)request_id;
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &health;
	*len = kms__request__get_packed_size(&req);
	uint8_t *out = malloc(*len);
	assert_non_null(out);
	assert_int_equal(kms__request__pack(&req, out), *len);
	return out;
}

static void check_health_reply(const uint8_t *reply, size_t len, const char *request_id)
{
	Kms__Response *resp = kms__response__unpack(NULL, len, reply);
	CHECK(resp, "the %zu-byte reply does not unpack as a Response", len);
	CHECK(resp->status == KMS__STATUS__OK, "Health: status %d: %s", resp->status,
	      resp->message);
	CHECK(!strcmp(resp->request_id, request_id), "request id \"%s\" echoed as \"%s\"",
	      request_id, resp->request_id);
	CHECK(resp->schema_version == KMS__SCHEMA_VERSION__SCHEMA_VERSION, "schema version %u",
	      resp->schema_version);
	CHECK(resp->result_case == KMS__RESPONSE__RESULT_HEALTH && resp->health,
	      "result case %d, not health", resp->result_case);
	CHECK(!strcmp(resp->health->region, REGION), "region \"%s\", not \"%s\"",
	      resp->health->region, REGION);
	CHECK(resp->health->hsm_ok, "hsm_ok is false: %s", resp->health->hsm_message);
	/* The peer uid of a nanomsg ipc client is mapped like NNG's. */
	CHECK(!strcmp(resp->health->principal, "test-admin"),
	      "principal \"%s\", not the configured \"test-admin\"", resp->health->principal);
	kms__response__free_unpacked(resp, NULL);
}

static void test_libnanomsg_health(void **state)
{
	(void)state;
	int s = nn_socket(AF_SP, NN_REQ);
	CHECK(s >= 0, "nn_socket: %s", nn_strerror(nn_errno()));
	int timeout = NN_TIMEOUT_MS;
	assert_int_equal(nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVTIMEO, &timeout, sizeof timeout), 0);
	assert_int_equal(nn_setsockopt(s, NN_SOL_SOCKET, NN_SNDTIMEO, &timeout, sizeof timeout), 0);
	CHECK(nn_connect(s, g_h.ipc_url) >= 0, "nn_connect %s: %s", g_h.ipc_url,
	      nn_strerror(nn_errno()));

	/* Two requests on one socket: each answered, each id echoed. */
	const char *ids[] = { "nanomsg-1", "nanomsg-2.with_more-chars" };
	for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
		size_t len;
		uint8_t *packed = pack_health(ids[i], &len);
		int sent = nn_send(s, packed, len, 0);
		free(packed);
		CHECK(sent == (int)len, "nn_send: %s", nn_strerror(nn_errno()));
		void *reply = NULL;
		int got = nn_recv(s, &reply, NN_MSG, 0);
		CHECK(got > 0, "nn_recv: no reply within %d ms: %s", NN_TIMEOUT_MS,
		      nn_strerror(nn_errno()));
		check_health_reply(reply, (size_t)got, ids[i]);
		nn_freemsg(reply);
	}
	assert_int_equal(nn_close(s), 0);
}

static bool nanocat_present(void)
{
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/bin:/bin";
	char *copy = strdup(path);
	assert_non_null(copy);
	bool found = false;
	for (char *save = NULL, *dir = strtok_r(copy, ":", &save); dir && !found;
	     dir = strtok_r(NULL, ":", &save)) {
		char candidate[1024];
		snprintf(candidate, sizeof candidate, "%s/nanocat", dir);
		found = access(candidate, X_OK) == 0;
	}
	free(copy);
	return found;
}

static void test_nanocat_health(void **state)
{
	(void)state;
	if (!nanocat_present()) {
		print_message("nanocat (nanomsg-utils) is not installed: skipped\n");
		skip();
	}
	const char *request_id = "nanocat-1";
	char request_path[700], reply_path[700], cmd[4096];
	snprintf(request_path, sizeof request_path, "%s/nanocat-request.bin", g_h.dir);
	snprintf(reply_path, sizeof reply_path, "%s/nanocat-reply.bin", g_h.dir);

	size_t len;
	uint8_t *packed = pack_health(request_id, &len);
	FILE *f = fopen(request_path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(packed, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	free(packed);

	/* REQ sends the file once, prints the raw reply and exits; timeout(1)
	 * bounds it in case it never does. */
	int cmd_len = snprintf(cmd, sizeof cmd,
	         "timeout %d nanocat --req --connect '%s' --file '%s' --raw --recv-timeout %d "
	         "> '%s' 2>> '%s'",
	         NANOCAT_TIMEOUT_S, g_h.ipc_url, request_path, NANOCAT_TIMEOUT_S - 2, reply_path,
	         g_h.log);
	assert_true(cmd_len > 0 && (size_t)cmd_len < sizeof cmd);
	int rc = system(cmd);
	CHECK(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "nanocat exited with %d: %s",
	      rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, cmd);

	size_t reply_len = 0;
	char *reply = harness_read_file(reply_path, &reply_len);
	CHECK(reply && reply_len > 0 && reply_len < REPLY_FILE_MAX,
	      "nanocat printed %zu bytes of reply", reply_len);
	check_health_reply((const uint8_t *)reply, reply_len, request_id);
	free(reply);
}

/* ---- a nanomsg client whose reply is past its receive limit ---- */

typedef struct churn {
	int socket;
	int got;          /* nn_recv's result: -1, the reply never fits */
	volatile int done;
} churn;

static void *churn_main(void *arg)
{
	churn *c = arg;
	void *reply = NULL;
	c->got = nn_recv(c->socket, &reply, NN_MSG, 0);
	if (c->got >= 0)
		nn_freemsg(reply);
	__atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Found: an ordinary nanomsg client whose batch reply is larger than
 * nanomsg's default 1 MiB receive limit drops the connection and
 * reconnects every ~100 ms, resending; with NNG serving ipc:// that wedged
 * the endpoint for every client until restart. Now: while it churns for
 * CHURN_MS, another client is answered every time, and after it. */
static void test_libnanomsg_oversized_reply_churn(void **state)
{
	(void)state;
	char key[35];
	assert_true(harness_create_key(&g_h, NULL, key));
	static uint8_t plaintext[CHURN_PLAINTEXT];
	memset(plaintext, 'p', sizeof plaintext);
	Kms__EncryptRequest items[CHURN_ITEMS], *item_ptrs[CHURN_ITEMS];
	for (size_t i = 0; i < CHURN_ITEMS; i++) {
		kms__encrypt_request__init(&items[i]);
		items[i].key_id = key;
		items[i].plaintext.data = plaintext;
		items[i].plaintext.len = sizeof plaintext;
		item_ptrs[i] = &items[i];
	}
	Kms__BatchEncryptRequest batch = KMS__BATCH_ENCRYPT_REQUEST__INIT;
	batch.n_items = CHURN_ITEMS;
	batch.items = item_ptrs;
	Kms__Request req = KMS__REQUEST__INIT;
	req.schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	req.request_id = "nanomsg-churn";
	req.op_case = KMS__REQUEST__OP_BATCH_ENCRYPT;
	req.batch_encrypt = &batch;
	size_t len = kms__request__get_packed_size(&req);
	uint8_t *packed = malloc(len);
	assert_non_null(packed);
	kms__request__pack(&req, packed);

	churn c = { .socket = nn_socket(AF_SP, NN_REQ) };
	CHECK(c.socket >= 0, "nn_socket: %s", nn_strerror(nn_errno()));
	/* nanomsg documents a 1 MiB receive limit by default; Debian's 1.1.5
	 * does not apply it on ipc://, so it is set as documented. */
	/* And it retries every 100 ms (NN_REQ_RESEND_IVL), as a client with a
	 * short retry would: every retry's reply is dropped with its
	 * connection, and nanomsg reconnects after its 100 ms default. */
	int timeout = CHURN_MS, rcvmax = 1 << 20, resend = 100;
	assert_int_equal(nn_setsockopt(c.socket, NN_REQ, NN_REQ_RESEND_IVL, &resend,
	                               sizeof resend), 0);
	assert_int_equal(nn_setsockopt(c.socket, NN_SOL_SOCKET, NN_RCVTIMEO, &timeout,
	                               sizeof timeout), 0);
	assert_int_equal(nn_setsockopt(c.socket, NN_SOL_SOCKET, NN_RCVMAXSIZE, &rcvmax,
	                               sizeof rcvmax), 0);
	CHECK(nn_connect(c.socket, g_h.ipc_url) >= 0, "nn_connect: %s", nn_strerror(nn_errno()));
	CHECK(nn_send(c.socket, packed, len, 0) == (int)len, "nn_send: %s",
	      nn_strerror(nn_errno()));
	free(packed);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, churn_main, &c), 0);

	Kms__HealthRequest health = KMS__HEALTH_REQUEST__INIT;
	Kms__Request hreq = KMS__REQUEST__INIT;
	hreq.op_case = KMS__REQUEST__OP_HEALTH;
	hreq.health = &health;
	unsigned served = 0;
	int64_t worst = 0;
	for (unsigned i = 0; i < CHURN_CALLS_MAX && !__atomic_load_n(&c.done, __ATOMIC_ACQUIRE);
	     i++) {
		int64_t t0 = mono_ms();
		hreq.request_id = NULL;
		Kms__Response *r = harness_call(&g_h, &hreq);
		int64_t took = mono_ms() - t0;
		CHECK(r && r->status == KMS__STATUS__OK,
		      "Health %u not answered while the nanomsg client churns (after %lld ms)",
		      served, (long long)took);
		kms__response__free_unpacked(r, NULL);
		served++;
		if (took > worst)
			worst = took;
	}
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(nn_close(c.socket), 0);
	CHECK(c.got < 0, "the oversized reply was received (%d bytes): no churn", c.got);
	assert_true(served > 0);
	/* And after it. */
	hreq.request_id = NULL;
	Kms__Response *r = harness_call(&g_h, &hreq);
	CHECK(r && r->status == KMS__STATUS__OK, "Health not answered after the churn");
	kms__response__free_unpacked(r, NULL);

	/* How often nanomsg resent the batch (after each drop, on a new
	 * connection): its
	 * entries in the audit log, read after a clean stop. */
	audit_cp cp;
	audit_get_checkpoint(&g_h, &cp);
	assert_int_equal(harness_stop(&g_h), 0);
	char pub[700];
	audit_public_dir(&g_h, NULL, pub, sizeof pub);
	audit_entries e;
	audit_load(pub, cp.vkey, NULL, &e);
	size_t resent = audit_count_id(&e, "nanomsg-churn", NULL);
	audit_entries_free(&e);
	audit_cp_free(&cp);
	print_message("# nanomsg client with a %u-item batch (reply > 1 MiB, its limit 1 MiB): "
	              "the batch was served %zu times in %d ms; meanwhile "
	              "%u other requests were served, the slowest in %lld ms\n", CHURN_ITEMS,
	              resent, CHURN_MS, served, (long long)worst);
	/* How often depends on nanomsg's timing: traced, its first reconnect
	 * often closes before kmsd's hello is sent (the very pattern that
	 * wedged NNG's listener) and it does not try again; slowed down (under
	 * strace) it resent 7 times in 3 s. The point is the other client. */
	CHECK(resent >= 1, "the batch was never served");
	harness_options o = { .region = REGION };
	assert_true(harness_start(&g_h, &o)); /* for the group's teardown */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_libnanomsg_health),
		cmocka_unit_test(test_nanocat_health),
		cmocka_unit_test(test_libnanomsg_oversized_reply_churn),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
