/*
 * test_nanomsg: a libnanomsg client, and the nanocat CLI, talk to a real
 * kmsd over ipc:// (any nanomsg client can). Raw packed protobuf
 * requests, replies unpacked and checked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>

#include "tests/support/harness.h"

#define REGION "in-bom-nn"
#define NN_TIMEOUT_MS 10000
#define NANOCAT_TIMEOUT_S 10
#define REPLY_FILE_MAX (64u << 10)

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_libnanomsg_health),
		cmocka_unit_test(test_nanocat_health),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
