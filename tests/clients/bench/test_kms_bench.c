/*
 * The smoke of kms-bench (clients/bench/): the real binary against a real
 * kmsd (tests/support/harness.h) over ipc, every operation a few hundred
 * requests long at 1 and 64 in flight (batch-decrypt: 16 requests of 100
 * items), over tls+tcp:// signed, and --op echo against its own
 * --serve-echo on both transports. Each run must exit 0 and append one
 * JSON line with the documented fields, every request OK; a run against
 * a key that does not exist exits 1 and counts NOT_FOUND. Speed is never
 * checked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/clients/bench/bench_record.h"
#include "tests/support/harness.h"
#include "tests/support/run_bin.h"

extern char **environ;

/* Bounds, not expectations: a clean run takes seconds (the sanitizer
 * build's kmsd, on a loaded machine, much longer). */
#define BENCH_WAIT_MS 240000
#define ECHO_READY_MS 10000
#define ARGS_MAX 48

static harness H;
static char key_id[35];
static char json_path[700];
static char tls_ca[700], tls_cert[700], tls_key[700];

static const char *bench_bin(void)
{
	const char *bin = getenv("KMS_TEST_KMS_BENCH");
	assert_non_null(bin);
	return bin;
}

/* The run's JSON line, parsed; the file is then emptied. */
static json_t *last_record(void)
{
	return bench_record_take(json_path);
}

/* Every documented field, of its type, and what a clean run says. */
static void check_record(json_t *r, const char *op, const char *transport,
                         json_int_t concurrency, json_int_t batch)
{
	assert_string_equal(bench_record_str(r, "tool"), "kms-bench");
	assert_string_equal(bench_record_str(r, "op"), op);
	assert_string_equal(bench_record_str(r, "transport"), transport);
	assert_int_equal(bench_record_int(r, "concurrency"), concurrency);
	assert_int_equal(bench_record_int(r, "batch_items"), batch);
	assert_int_equal(bench_record_int(r, "plaintext_bytes"), 32);
	json_int_t requests = bench_record_int(r, "requests");
	assert_true(requests > 0);
	assert_int_equal(bench_record_int(r, "ok"), requests);
	assert_int_equal(bench_record_int(r, "items"), requests * (batch ? batch : 1));
	const char *reals[] = { "seconds", "ops_per_s", "items_per_s", "p50_us", "p99_us",
	                        "p999_us", "max_us", "cpu_us_per_op" };
	for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++)
		assert_true(bench_record_real(r, reals[i]) >= 0.0);
	assert_true(bench_record_real(r, "p50_us") <= bench_record_real(r, "p99_us"));
	assert_true(bench_record_real(r, "p99_us") <= bench_record_real(r, "p999_us"));
	assert_true(bench_record_real(r, "p999_us") <= bench_record_real(r, "max_us"));
	json_t *errors = json_object_get(r, "errors");
	assert_true(json_is_object(errors));
	assert_int_equal(json_object_size(errors), 0);
	json_t *labels = json_object_get(r, "labels");
	assert_true(json_is_object(labels));
	assert_string_equal(json_string_value(json_object_get(labels, "suite")), "smoke");
	assert_int_equal(json_object_size(r), 19);
}

/* Runs kms-bench with the smoke's common arguments, then args. */
static run_bin_result bench(const char *url, const char *const *args)
{
	const char *all[ARGS_MAX];
	size_t n = 0;
	const char *common[] = { "--url", url, "--json", json_path, "--label", "suite=smoke",
	                         "--duration", "60", "--timeout", "120000", NULL };
	for (size_t i = 0; common[i]; i++)
		all[n++] = common[i];
	for (size_t i = 0; args[i] && n + 1 < ARGS_MAX; i++)
		all[n++] = args[i];
	all[n] = NULL;
	run_bin_options o = { .wait_ms = BENCH_WAIT_MS, .drop_env_prefix = "KMS_" };
	return run_bin(bench_bin(), all, &o);
}

/* One clean run: exit 0, its JSON line as expected. */
static void bench_ok(const char *url, const char *transport, const char *op,
                     const char *concurrency, json_int_t batch, const char *const *extra)
{
	const char *args[ARGS_MAX];
	size_t n = 0;
	char batch_text[16];
	args[n++] = "--op";
	args[n++] = op;
	args[n++] = "--concurrency";
	args[n++] = concurrency;
	args[n++] = "--requests";
	args[n++] = batch ? "16" : "300";
	if (batch) {
		snprintf(batch_text, sizeof batch_text, "%lld", (long long)batch);
		args[n++] = "--batch";
		args[n++] = batch_text;
	}
	for (size_t i = 0; extra && extra[i] && n + 1 < ARGS_MAX; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	run_bin_result r = bench(url, args);
	int code = r.code;
	bool table = strstr(r.out, "requests") != NULL;
	if (code != 0) {
		char said[2048];
		snprintf(said, sizeof said, "%s%s", r.out, r.err);
		run_bin_free(&r);
		fail_msg("kms-bench --op %s --concurrency %s exited %d:\n%s", op, concurrency,
		         code, said);
	}
	run_bin_free(&r);
	assert_true(table);
	json_t *record = last_record();
	check_record(record, op, transport, atoi(concurrency), batch);
	json_decref(record);
}

static void every_op_over_ipc(void **state)
{
	(void)state;
	static const char *const ops[] = { "encrypt", "decrypt", "generate-data-key",
	                                   "mixed" };
	const char *with_key[] = { "--key", key_id, NULL };
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
		bench_ok(H.ipc_url, "ipc", ops[i], "1", 0, with_key);
		bench_ok(H.ipc_url, "ipc", ops[i], "64", 0, with_key);
	}
	bench_ok(H.ipc_url, "ipc", "batch-decrypt", "1", 100, with_key);
	bench_ok(H.ipc_url, "ipc", "batch-decrypt", "64", 100, with_key);
	const char *spread[] = { "--key", key_id, "--connections", "4", NULL };
	bench_ok(H.ipc_url, "ipc", "mixed", "64", 0, spread);
}

/* Without --key: a key made for the run, used, then scheduled for
 * deletion. */
static void a_key_made_for_the_run(void **state)
{
	(void)state;
	bench_ok(H.ipc_url, "ipc", "encrypt", "16", 0, NULL);
	bench_ok(H.ipc_url, "ipc", "decrypt", "16", 0, NULL);
}

/* Signed, over mutual TLS. */
static void signed_over_tls(void **state)
{
	(void)state;
	const char *tls[] = { "--tls-ca", tls_ca, "--tls-cert", tls_cert, "--tls-key", tls_key,
	                      "--server-name", "localhost", "--credentials", H.credentials,
	                      "--key", key_id, NULL };
	bench_ok(H.tls_url, "tls", "encrypt", "1", 0, tls);
	bench_ok(H.tls_url, "tls", "encrypt", "16", 0, tls);
	bench_ok(H.tls_url, "tls", "batch-decrypt", "4", 100, tls);
}

/* A request that fails: exit 1, counted by its status name. */
static void failures_counted_and_exit_1(void **state)
{
	(void)state;
	const char *args[] = { "--op", "encrypt", "--concurrency", "8", "--requests", "50",
	                       "--key", "k-00000000000000000000000000000000", NULL };
	run_bin_result r = bench(H.ipc_url, args);
	assert_int_equal(r.code, 1);
	assert_non_null(strstr(r.out, "errors NOT_FOUND: 50"));
	run_bin_free(&r);
	json_t *record = last_record();
	assert_int_equal(bench_record_int(record, "requests"), 50);
	assert_int_equal(bench_record_int(record, "ok"), 0);
	assert_int_equal(bench_record_int(record, "items"), 0);
	json_t *errors = json_object_get(record, "errors");
	assert_int_equal(json_integer_value(json_object_get(errors, "NOT_FOUND")), 50);
	json_decref(record);
}

/* ---- the echo server, a process of its own ---- */

typedef struct echo_server {
	pid_t pid;
	int out; /* its stdout */
} echo_server;

/* Starts kms-bench --serve-echo url (and extra) and waits, bounded, for
 * the line it prints once it listens. */
static echo_server echo_start(const char *url, const char *const *extra)
{
	const char *argv[ARGS_MAX];
	size_t n = 0;
	argv[n++] = bench_bin();
	argv[n++] = "--serve-echo";
	argv[n++] = url;
	argv[n++] = "--duration";
	argv[n++] = "300";
	for (size_t i = 0; extra && extra[i] && n + 1 < ARGS_MAX; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	int fds[2];
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
	echo_server e = { .pid = -1, .out = fds[0] };
	int rv = posix_spawn(&e.pid, argv[0], &fa, NULL, (char *const *)(uintptr_t)argv,
	                     environ);
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	assert_int_equal(rv, 0);

	char line[512];
	size_t got = 0;
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) { /* bounded by ECHO_READY_MS */
		clock_gettime(CLOCK_MONOTONIC, &now);
		long ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
		if (ms >= ECHO_READY_MS)
			fail_msg("kms-bench --serve-echo %s: not listening after %d ms", url,
			         ECHO_READY_MS);
		struct pollfd p = { .fd = e.out, .events = POLLIN };
		if (poll(&p, 1, (int)(ECHO_READY_MS - ms)) <= 0)
			continue;
		ssize_t k = read(e.out, line + got, sizeof line - 1 - got);
		if (k <= 0)
			fail_msg("kms-bench --serve-echo %s exited before listening", url);
		got += (size_t)k;
		line[got] = '\0';
		if (strstr(line, "echo serving"))
			return e;
		if (got >= sizeof line - 1)
			fail_msg("kms-bench --serve-echo said: %s", line);
	}
}

/* SIGTERM, and it exits 0 (bounded). */
static void echo_stop(echo_server *e)
{
	int status = 0;
	assert_int_equal(kill(e->pid, SIGTERM), 0);
	if (!run_bin_wait(e->pid, 10000, &status)) {
		kill(e->pid, SIGKILL);
		(void)run_bin_wait(e->pid, 10000, &status);
		fail_msg("kms-bench --serve-echo did not exit on SIGTERM");
	}
	close(e->out);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void echo_over_ipc(void **state)
{
	(void)state;
	char url[700];
	snprintf(url, sizeof url, "ipc://%s/echo.sock", H.dir);
	echo_server e = echo_start(url, NULL);
	bench_ok(url, "ipc", "echo", "1", 0, NULL);
	bench_ok(url, "ipc", "echo", "64", 0, NULL);
	echo_stop(&e);
}

static void echo_over_tls(void **state)
{
	(void)state;
	char url[64];
	snprintf(url, sizeof url, "tls+tcp://127.0.0.1:%d", harness_free_port());
	char server_cert[700], server_key[700];
	snprintf(server_cert, sizeof server_cert, "%s/tls/server.crt", H.dir);
	snprintf(server_key, sizeof server_key, "%s/tls/server.key", H.dir);
	const char *serve[] = { "--tls-cert", server_cert, "--tls-key", server_key,
	                        "--tls-ca", tls_ca, NULL };
	echo_server e = echo_start(url, serve);
	const char *tls[] = { "--tls-ca", tls_ca, "--tls-cert", tls_cert, "--tls-key", tls_key,
	                      "--server-name", "localhost", "--credentials", H.credentials,
	                      NULL };
	bench_ok(url, "tls", "echo", "16", 0, tls);
	echo_stop(&e);
}

static void usage_errors(void **state)
{
	(void)state;
	const char *no_op[] = { "--url", H.ipc_url, NULL };
	const char *bad_op[] = { "--url", H.ipc_url, "--op", "frobnicate", NULL };
	const char *too_many[] = { "--url", H.ipc_url, "--op", "encrypt", "--concurrency",
	                           "1025", NULL };
	const char *batch_alone[] = { "--url", H.ipc_url, "--op", "encrypt", "--batch", "5",
	                              NULL };
	const char *connections[] = { "--url", H.ipc_url, "--op", "encrypt", "--concurrency",
	                              "2", "--connections", "3", NULL };
	const char *const *cases[] = { no_op, bad_op, too_many, batch_alone, connections };
	const char *says[] = { "give --op", "unknown --op", "--concurrency takes 1..1024",
	                       "--batch is for --op batch-decrypt",
	                       "--connections 3 is more than --concurrency 2" };
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		run_bin_result r = run_bin(bench_bin(), cases[i], NULL);
		assert_int_equal(r.code, 2);
		if (!strstr(r.err, says[i]))
			fail_msg("expected \"%s\" in: %s", says[i], r.err);
		run_bin_free(&r);
	}
}

static int start(void **state)
{
	(void)state;
	harness_options o = { .with_tls = true, .bootstrap = true };
	if (!harness_start(&H, &o))
		return -1;
	if (!harness_create_key(&H, NULL, key_id))
		return -1;
	snprintf(json_path, sizeof json_path, "%s/bench.jsonl", H.dir);
	snprintf(tls_ca, sizeof tls_ca, "%s/tls/ca.crt", H.dir);
	snprintf(tls_cert, sizeof tls_cert, "%s/tls/client.crt", H.dir);
	snprintf(tls_key, sizeof tls_key, "%s/tls/client.key", H.dir);
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
		cmocka_unit_test(usage_errors),
		cmocka_unit_test(every_op_over_ipc),
		cmocka_unit_test(a_key_made_for_the_run),
		cmocka_unit_test(signed_over_tls),
		cmocka_unit_test(failures_counted_and_exit_1),
		cmocka_unit_test(echo_over_ipc),
		cmocka_unit_test(echo_over_tls),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
