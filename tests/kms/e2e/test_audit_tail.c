/*
 * test_audit_tail: `kms-admin audit tail -f` (the real binary) following the
 * log kmsd publishes, against a real kmsd on a real SoftHSM token, over
 * kmsd's real HTTP listener. No RPC per entry: the checkpoint, entry
 * bundles and hash tiles are read as static files and verified here.
 *
 * (1) follow_prints_new_entries: tail -f --http --until-size prints every
 *     entry a workload makes after it started, verified, in order, and
 *     ends by itself; the log then holds exactly the workload's entries.
 * (2) following_adds_no_entries: 20 polls of tail -f --http (about 10 s)
 *     leave the log's size unchanged (kms_audit_entries from /metrics,
 *     which is not audited); the HTTP reads are counted in
 *     kms_audit_http_reads_total instead.
 * (3) tampered_tile_stops_tail: a hash tile changed under kmsd's public/
 *     makes tail -f --http stop with exit 1 and a line naming the entry;
 *     a tile changed in a copy while tail -f --log follows it stops it the
 *     same way, after the entries printed before.
 *
 * Every wait is bounded; nothing asserts on a duration.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/audit_check.h"
#include "tests/support/harness.h"
#include "tests/support/run_bin.h"
#include "tests/support/group.h"
#include "common/tlog/tlog_tiles.h"

#define WORKLOAD 20
#define POLLS "20"               /* tail's interval is 500 ms: about 10 s */
#define SETTLE_MS 15000          /* the checkpoint catching up with the log */
#define START_MS 15000           /* tail printing its first lines */
#define FOLLOW_MS 30000          /* tail ending by itself */
#define STEP_MS 20

static harness H;
static int port;
static char vkey[AUDIT_VKEY_MAX];
static char url[64];
static char pub[700];

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static void start(void)
{
	port = harness_free_port();
	assert_true(port > 0);
	char extra[200];
	snprintf(extra, sizeof extra, "[audit]\ncheckpoint_ms = 50\nhttp = http://127.0.0.1:%d\n",
	         port);
	harness_options o = { .extra_config = extra };
	if (!harness_start(&H, &o))
		fail_msg("kmsd did not start; see %s", H.log);
	assert_int_equal(audit_wait_healthz(port, 200, 10000), 200);
	assert_true(audit_vkey_from_log(&H, vkey));
	snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
	audit_public_dir(&H, NULL, pub, sizeof pub);
}

static int teardown(void **state)
{
	(void)state;
	if (H.pid > 0)
		harness_kill9(&H);
	return 0;
}

/* The size in a checkpoint file (its second line). */
static uint64_t checkpoint_size_of(const char *dir)
{
	char path[800];
	snprintf(path, sizeof path, "%s/checkpoint", dir);
	size_t len = 0;
	char *text = harness_read_file(path, &len);
	assert_non_null(text);
	char *nl = strchr(text, '\n');
	assert_non_null(nl);
	uint64_t size = strtoull(nl + 1, NULL, 10);
	free(text);
	return size;
}

/* kms_audit_entries from /metrics (an HTTP read: not an entry). */
static uint64_t metric(const char *name)
{
	char *body = NULL;
	size_t len = 0;
	assert_int_equal(audit_http_get(port, "/metrics", 5000, &body, &len), 200);
	char needle[128];
	snprintf(needle, sizeof needle, "\n%s ", name);
	char *at = strstr(body, needle);
	if (!at)
		fail_msg("/metrics has no %s", name);
	uint64_t v = strtoull(at + strlen(needle), NULL, 10);
	free(body);
	return v;
}

/* Waits until the published checkpoint covers every entry of the log;
 * returns that size. */
static uint64_t settled_size(void)
{
	uint64_t deadline = now_ms() + SETTLE_MS;
	for (;;) {
		uint64_t entries = metric("kms_audit_entries");
		if (checkpoint_size_of(pub) == entries)
			return entries;
		if (now_ms() > deadline)
			fail_msg("the checkpoint did not reach %llu entries", (unsigned long long)entries);
		sleep_ms(STEP_MS);
	}
}

/* One generate_random, request id id: one entry. */
static void workload_request(const char *id)
{
	Kms__GenerateRandomRequest gr = KMS__GENERATE_RANDOM_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	gr.number_of_bytes = 16;
	req.op_case = KMS__REQUEST__OP_GENERATE_RANDOM;
	req.generate_random = &gr;
	req.request_id = (char *)(uintptr_t)id;
	Kms__Response *r = harness_call(&H, &req);
	assert_non_null(r);
	assert_int_equal(r->status, KMS__STATUS__OK);
	kms__response__free_unpacked(r, NULL);
}

/* ---- a tail in the background ---- */

typedef struct bg_tail {
	pid_t pid;
	char out[800], err[800];
} bg_tail;

static void bg_start(bg_tail *t, const char *const *args)
{
	snprintf(t->out, sizeof t->out, "%s/tail.out", H.dir);
	snprintf(t->err, sizeof t->err, "%s/tail.err", H.dir);
	const char *bin = getenv("KMS_TEST_KMS_ADMIN");
	assert_non_null(bin);
	const char *argv[32] = { bin };
	size_t n = 1;
	for (size_t i = 0; args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	t->pid = fork();
	assert_true(t->pid >= 0);
	if (t->pid == 0) {
		int o = open(t->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		int e = open(t->err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (o < 0 || e < 0 || in < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0 || dup2(in, 0) < 0)
			_exit(127);
		execv(bin, (char *const *)(uintptr_t)argv);
		_exit(127);
	}
}

static size_t count_lines(const char *path)
{
	size_t len = 0, n = 0;
	char *text = harness_read_file(path, &len);
	for (size_t i = 0; text && i < len; i++)
		n += text[i] == '\n';
	free(text);
	return n;
}

static size_t count_lines_in(const char *text)
{
	size_t n = 0;
	for (; text && *text; text++)
		n += *text == '\n';
	return n;
}

static void bg_wait_lines(bg_tail *t, size_t lines)
{
	uint64_t deadline = now_ms() + START_MS;
	while (count_lines(t->out) < lines) {
		int status;
		if (run_bin_wait(t->pid, 0, &status))
			fail_msg("tail exited (status %d) before printing %zu lines; see %s", status,
			         lines, t->err);
		if (now_ms() > deadline)
			fail_msg("tail printed no %zu lines within %d ms; see %s", lines, START_MS,
			         t->err);
		sleep_ms(STEP_MS);
	}
}

/* Its exit code once it ended by itself (killed and failed past the bound). */
static int bg_exit(bg_tail *t)
{
	int status = 0;
	if (!run_bin_wait(t->pid, FOLLOW_MS, &status)) {
		kill(t->pid, SIGKILL);
		(void)run_bin_wait(t->pid, FOLLOW_MS, &status);
		fail_msg("tail did not end within %d ms; see %s", FOLLOW_MS, t->out);
	}
	t->pid = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char *read_text(const char *path)
{
	size_t len = 0;
	char *text = harness_read_file(path, &len);
	assert_non_null(text);
	return text;
}

/* ---- (1) ---- */

static void follow_prints_new_entries(void **state)
{
	(void)state;
	start();
	workload_request("before-tail"); /* a log of at least one entry */
	uint64_t s0 = settled_size();
	char until[32];
	snprintf(until, sizeof until, "%llu", (unsigned long long)(s0 + WORKLOAD));
	const char *args[] = { "audit", "tail", "-f", "-n", "1", "--http", url, "--key", vkey,
		               "--until-size", until, NULL };
	bg_tail t;
	bg_start(&t, args);
	bg_wait_lines(&t, 1); /* following from s0 now */

	char ids[WORKLOAD][32];
	for (int i = 0; i < WORKLOAD; i++) {
		snprintf(ids[i], sizeof ids[i], "tail-work-%02d", i);
		workload_request(ids[i]);
	}
	int code = bg_exit(&t);
	char *out = read_text(t.out), *err = read_text(t.err);
	if (code != 0)
		fail_msg("tail -f exit %d: %s", code, err);

	/* 1 + WORKLOAD lines: entries s0-1 .. s0+WORKLOAD-1, in order, the
	 * workload's ids in its order. */
	json_error_t jerr;
	size_t line = 0;
	int next_id = 0;
	for (char *save = NULL, *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(l, 0, &jerr);
		if (!j)
			fail_msg("tail printed a line that is not JSON: %s", l);
		uint64_t index = (uint64_t)json_integer_value(json_object_get(j, "index"));
		assert_int_equal(index, s0 - 1 + line);
		const char *id = audit_str(json_object_get(j, "entry"), "request_id");
		if (next_id < WORKLOAD && strcmp(id, ids[next_id]) == 0)
			next_id++;
		json_decref(j);
		line++;
	}
	assert_int_equal(line, 1 + WORKLOAD);
	assert_int_equal(next_id, WORKLOAD);
	assert_null(strstr(err, "NOT verified"));
	/* Nothing but the workload was written while tail followed. */
	assert_int_equal(settled_size(), s0 + WORKLOAD);
	fprintf(stderr, "measured: tail -f --http printed %d new entries, verified; the log grew "
	        "by exactly those\n", WORKLOAD);
	free(out);
	free(err);
	assert_int_equal(harness_stop(&H), 0);
}

/* ---- (2) ---- */

static void following_adds_no_entries(void **state)
{
	(void)state;
	start();
	workload_request("before-tail");
	uint64_t s0 = settled_size();
	uint64_t reads0 = metric("kms_audit_http_reads_total{file=\"checkpoint\"}");
	const char *args[] = { "audit", "tail", "-f", "-n", "5", "--http", url, "--key", vkey,
		               "--polls", POLLS, NULL };
	run_bin_options o = { .wait_ms = 60000 };
	run_bin_result r = run_bin(getenv("KMS_TEST_KMS_ADMIN"), args, &o);
	if (r.code != 0)
		fail_msg("tail -f --polls exit %d: %s", r.code, r.err);
	assert_int_equal(count_lines_in(r.out), 5);
	uint64_t s1 = settled_size();
	uint64_t reads1 = metric("kms_audit_http_reads_total{file=\"checkpoint\"}");
	fprintf(stderr, "measured: %s polls of tail -f --http (%llu ms) added %llu entries to the "
	        "log; %llu checkpoint reads counted in /metrics\n", POLLS,
	        (unsigned long long)r.ms, (unsigned long long)(s1 - s0),
	        (unsigned long long)(reads1 - reads0));
	assert_int_equal(s1, s0);
	assert_true(reads1 - reads0 >= 21); /* the first read and one a poll */
	run_bin_free(&r);
	assert_int_equal(harness_stop(&H), 0);
}

/* ---- (3) ---- */

/* Flips one byte of the last hash of the level-0 tile of a tree of size
 * in dir (flipping it twice restores it). */
static void flip_last_leaf_hash(const char *dir, uint64_t size)
{
	char rel[TLOG_TILE_PATH_MAX], path[900];
	unsigned width = tlog_tile_partial_width(size, 0);
	assert_int_equal(tlog_tile_path(0, (size - 1) / TLOG_TILE_WIDTH, width ? width : 256, rel),
	                 KMS_OK);
	snprintf(path, sizeof path, "%s/%s", dir, rel);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	off_t at = (off_t)((width ? width : 256) - 1) * TLOG_HASH_SIZE + 5;
	uint8_t b;
	assert_int_equal(pread(fd, &b, 1, at), 1);
	b ^= 1;
	assert_int_equal(pwrite(fd, &b, 1, at), 1);
	close(fd);
}

/* dir made a copy of pub as of size: files, then the checkpoint. */
static void copy_log(const char *dir, uint64_t size)
{
	uint64_t files = 0;
	char path[800];
	assert_int_equal(tlog_dir_copy(pub, dir, size, &files), KMS_OK);
	snprintf(path, sizeof path, "%s/checkpoint", pub);
	size_t len = 0;
	char *note = harness_read_file(path, &len);
	assert_non_null(note);
	assert_int_equal(checkpoint_size_of(pub), size);
	assert_int_equal(tlog_checkpoint_publish(dir, note, len), KMS_OK);
	free(note);
}

static void tampered_tile_stops_tail(void **state)
{
	(void)state;
	start();
	for (int i = 0; i < 3; i++)
		workload_request("before-tail");
	uint64_t s0 = settled_size();

	/* Over HTTP: a tile kmsd serves, changed. */
	flip_last_leaf_hash(pub, s0);
	const char *args[] = { "audit", "tail", "-f", "-n", "3", "--http", url, "--key", vkey,
		               "--polls", "2", NULL };
	run_bin_result r = run_bin(getenv("KMS_TEST_KMS_ADMIN"), args, NULL);
	flip_last_leaf_hash(pub, s0);
	if (r.code != 1 || !strstr(r.err, "verification FAILED: entry"))
		fail_msg("tail -f --http over a changed tile: exit %d: %s", r.code, r.err);
	assert_true(count_lines_in(r.out) < 3);
	fprintf(stderr, "tampered tile over http: %s", r.err);
	run_bin_free(&r);

	/* A copy that changes while tail -f --log follows it. */
	char copy[700];
	snprintf(copy, sizeof copy, "%s/copy", H.dir);
	assert_int_equal(mkdir(copy, 0700), 0);
	copy_log(copy, s0);
	char until[32];
	snprintf(until, sizeof until, "%llu", (unsigned long long)(s0 + 5));
	const char *fargs[] = { "audit", "tail", "-f", "-n", "1", "--log", copy, "--key", vkey,
		                "--until-size", until, NULL };
	bg_tail t;
	bg_start(&t, fargs);
	bg_wait_lines(&t, 1);
	for (int i = 0; i < 5; i++)
		workload_request("during-tail");
	uint64_t s1 = settled_size();
	assert_int_equal(s1, s0 + 5);
	uint64_t files = 0;
	assert_int_equal(tlog_dir_copy(pub, copy, s1, &files), KMS_OK);
	flip_last_leaf_hash(copy, s1);
	char path[800];
	snprintf(path, sizeof path, "%s/checkpoint", pub);
	size_t len = 0;
	char *note = harness_read_file(path, &len);
	assert_non_null(note);
	assert_int_equal(tlog_checkpoint_publish(copy, note, len), KMS_OK);
	free(note);
	int code = bg_exit(&t);
	char *err = read_text(t.err);
	if (code != 1 || !strstr(err, "verification FAILED"))
		fail_msg("tail -f --log over a changed tile: exit %d: %s", code, err);
	fprintf(stderr, "tampered tile in a followed copy: %s", err);
	free(err);
	assert_int_equal(harness_stop(&H), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(follow_prints_new_entries, teardown),
		cmocka_unit_test_teardown(following_adds_no_entries, teardown),
		cmocka_unit_test_teardown(tampered_tile_stops_tail, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
