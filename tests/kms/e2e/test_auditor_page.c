/*
 * test_auditor_page: the auditor's web page (docs/auditor-page.md) in a real
 * headless Chromium, against a real kmsd on a real SoftHSM token serving its
 * audit log over its real HTTP listener.
 *
 * Here: kmsd starts with [audit] http, a workload writes entries of several
 * operations (keys created, a policy put, encrypts allowed and one denied by
 * the key's policy, random bytes), the published checkpoint settles, and
 * the log is read back through the offline verifier (audit_check.h). From
 * those entries this test computes what the page must show: the tree size,
 * the rows each filter leaves, which entry and which hash a tampered byte
 * must be blamed on. It writes that to a JSON file and runs
 * tests/kms/e2e/auditor_page_driver.py, which starts chromedriver and
 * drives Chromium through the W3C WebDriver protocol (Python's standard
 * library only) and checks the page against it: verified with the right
 * size, the filters' row counts, an inclusion proof, a wrong key, and a
 * tampered entry bundle, hash tile and checkpoint each FAILED naming the
 * mismatch (every wait bounded, polling the page's DOM).
 *
 * The driver runs in a process group of its own with chromedriver and
 * Chromium under it, HOME set under the test's folder; the whole group is
 * killed when it ends, whatever happened, and so is any process that left
 * the group but names that folder (Chromium's crash handler).
 *
 * With KMS_AUDITOR_SCREENSHOT=PATH the verified page's screenshot goes
 * there (docs/auditor-page.png was made so); else under the test's folder.
 * By hand, KMS_AUDITOR_MEASURE=N adds N generate_random entries and has the
 * driver only time the page's verification (docs/auditor-page.md, "Cost");
 * no run of the suite sets it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/tlog/tlog_tiles.h"
#include "tests/support/audit_check.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/group.h"
#include "tests/support/harness.h"
#include "tests/support/run_bin.h"

#define ENCRYPTS 3
#define RANDOMS 2
#define SETTLE_MS 15000          /* the checkpoint catching up with the log */
#define STEP_MS 20
#define DRIVER_MS 240000         /* the whole browser part; then its group is killed */
#define OUTPUT_TAIL 6000         /* bytes of the driver's output shown on failure */
#define MEASURE_MAX 1000000      /* KMS_AUDITOR_MEASURE's bound */

static harness H;
static int port;
static char vkey[AUDIT_VKEY_MAX];
static char pub[700];
static long measure_entries; /* KMS_AUDITOR_MEASURE */

/* A policy that lets test-admin do nothing with the key. */
static const char nothing_policy[] =
        "{\"Version\":\"2024-01-01\",\"Statement\":[{\"Effect\":\"Allow\","
        "\"Principal\":\"someone-else\",\"Action\":\"encrypt\"}]}";

static int teardown(void **state)
{
	(void)state;
	if (H.pid > 0)
		harness_kill9(&H);
	return 0;
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
	audit_public_dir(&H, NULL, pub, sizeof pub);
}

/* ---- the workload ---- */

static void put_policy(const char *key, const char *policy)
{
	Kms__PutKeyPolicyRequest p = KMS__PUT_KEY_POLICY_REQUEST__INIT;
	p.key_id = (char *)(uintptr_t)key;
	p.policy = (char *)(uintptr_t)policy;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_PUT_KEY_POLICY;
	req.put_key_policy = &p;
	Kms__Response *r = harness_call(&H, &req);
	assert_non_null(r);
	if (r->status != KMS__STATUS__OK)
		fail_msg("put_key_policy: %s", r->message);
	kms__response__free_unpacked(r, NULL);
}

static void encrypt_expect(const char *key, Kms__Status want)
{
	static const uint8_t plaintext[] = "for the auditor";
	Kms__Response *r = e2e_encrypt(&H, key, plaintext, sizeof plaintext - 1);
	assert_non_null(r);
	if (r->status != want)
		fail_msg("encrypt under %s: status %d, wanted %d: %s", key, r->status, want,
		         r->message ? r->message : "");
	kms__response__free_unpacked(r, NULL);
}

static void random_bytes(void)
{
	Kms__GenerateRandomRequest gr = KMS__GENERATE_RANDOM_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	gr.number_of_bytes = 16;
	req.op_case = KMS__REQUEST__OP_GENERATE_RANDOM;
	req.generate_random = &gr;
	Kms__Response *r = harness_call(&H, &req);
	assert_non_null(r);
	assert_int_equal(r->status, KMS__STATUS__OK);
	kms__response__free_unpacked(r, NULL);
}

/* The size in the published checkpoint (its second line). */
static uint64_t checkpoint_size(void)
{
	char path[800];
	snprintf(path, sizeof path, "%s/checkpoint", pub);
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
static uint64_t entries_written(void)
{
	char *body = NULL;
	size_t len = 0;
	assert_int_equal(audit_http_get(port, "/metrics", 5000, &body, &len), 200);
	char *at = strstr(body, "\nkms_audit_entries ");
	if (!at)
		fail_msg("/metrics has no kms_audit_entries");
	uint64_t n = strtoull(at + strlen("\nkms_audit_entries "), NULL, 10);
	free(body);
	return n;
}

/* Waits until the published checkpoint covers every entry written. */
static uint64_t settled_size(void)
{
	uint64_t deadline = e2e_now_ms() + SETTLE_MS;
	for (;;) {
		uint64_t written = entries_written();
		if (checkpoint_size() == written)
			return written;
		if (e2e_now_ms() > deadline)
			fail_msg("the checkpoint did not reach %llu entries", (unsigned long long)written);
		e2e_sleep_ms(STEP_MS);
	}
}

/* ---- what the page must show, from the verified log ---- */

/* The keys an entry names, as the page reads them: key_id and batch_keys. */
static bool names_key(json_t *entry, const char *key)
{
	if (!strcmp(audit_str(entry, "key_id"), key))
		return true;
	size_t i;
	json_t *k;
	json_array_foreach(json_object_get(entry, "batch_keys"), i, k)
		if (json_is_string(k) && !strcmp(json_string_value(k), key))
			return true;
	return false;
}

typedef struct filter {
	const char *from, *until; /* RFC 3339 times without the final Z, or "" */
	const char *principal, *key, *operation, *status;
} filter;

/* The page's filter, over the entries: exact matches, time from <= t < until. */
static size_t count_matching(const audit_entries *e, const filter *f)
{
	size_t n = 0;
	for (uint64_t i = 0; i < e->n; i++) {
		json_t *j = e->items[i];
		const char *time = audit_str(j, "time");
		if ((f->from[0] && strcmp(time, f->from) < 0) ||
		    (f->until[0] && strcmp(time, f->until) >= 0) ||
		    (f->principal[0] && strcmp(audit_str(j, "principal"), f->principal)) ||
		    (f->key[0] && !names_key(j, f->key)) ||
		    (f->operation[0] && strcmp(audit_str(j, "operation"), f->operation)) ||
		    (f->status[0] && strcmp(audit_str(j, "status"), f->status)))
			continue;
		n++;
	}
	return n;
}

static json_t *filter_json(const audit_entries *e, const filter *f)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "from", f->from, "until",
	                      f->until, "principal", f->principal, "key", f->key, "operation",
	                      f->operation, "status", f->status, "count",
	                      (json_int_t)count_matching(e, f));
	assert_non_null(o);
	return o;
}

/* The first entry of operation op with status status, or fails. */
static uint64_t find_entry(const audit_entries *e, const char *op, const char *status)
{
	for (uint64_t i = 0; i < e->n; i++)
		if (!strcmp(audit_str(e->items[i], "operation"), op) &&
		    !strcmp(audit_str(e->items[i], "status"), status))
			return i;
	fail_msg("no %s entry with status %s in the log", op, status);
	return 0;
}

/* A time without its final "Z" (the page compares prefixes so). */
static const char *time_bound(json_t *entry, char *out, size_t cap)
{
	snprintf(out, cap, "%s", audit_str(entry, "time"));
	size_t len = strlen(out);
	if (len && out[len - 1] == 'Z')
		out[len - 1] = '\0';
	return out;
}

/* Where in the bundle of a tree of size `size` holding entry `index` a
 * digit of its latency_us lies: a byte that can change and leave the entry
 * valid JSON (so that only the hash can tell). */
static json_t *entry_tamper(uint64_t index, uint64_t size)
{
	char bundle[TLOG_TILE_PATH_MAX], tile[TLOG_TILE_PATH_MAX], rel[800], path[900];
	uint64_t n = index / TLOG_TILE_WIDTH;
	unsigned width = size / TLOG_TILE_WIDTH > n ? TLOG_TILE_WIDTH : (unsigned)(size % TLOG_TILE_WIDTH);
	assert_int_equal(tlog_bundle_path(n, width, bundle), KMS_OK);
	assert_int_equal(tlog_tile_path(0, n, width, tile), KMS_OK);
	snprintf(path, sizeof path, "%s/%s", pub, bundle);
	size_t len = 0;
	uint8_t *bytes = (uint8_t *)harness_read_file(path, &len);
	assert_non_null(bytes);
	size_t at = 0;
	for (uint64_t i = n * TLOG_TILE_WIDTH; i < index; i++) {
		assert_true(at + 2 <= len);
		at += 2 + ((size_t)bytes[at] << 8 | bytes[at + 1]);
	}
	assert_true(at + 2 <= len);
	size_t entry_len = (size_t)bytes[at] << 8 | bytes[at + 1];
	assert_true(at + 2 + entry_len <= len);
	static const char member[] = "\"latency_us\":";
	const uint8_t *found = memmem(bytes + at + 2, entry_len, member, sizeof member - 1);
	assert_non_null(found);
	size_t offset = (size_t)(found - bytes) + sizeof member - 1;
	assert_true(bytes[offset] >= '0' && bytes[offset] <= '9');
	char expect[300];
	snprintf(expect, sizeof expect, "FAILED: entry %llu in %s differs from the signed tree "
	         "(hash %llu of %s)", (unsigned long long)index, bundle,
	         (unsigned long long)(index % TLOG_TILE_WIDTH), tile);
	snprintf(rel, sizeof rel, "%s", bundle);
	json_t *o = json_pack("{s:s, s:I, s:i, s:i, s:s}", "path", rel, "offset", (json_int_t)offset,
	                      "from", bytes[offset], "to", bytes[offset] == '1' ? '2' : '1',
	                      "expect", expect);
	free(bytes);
	assert_non_null(o);
	return o;
}

/* One byte of hash `hash` of the level-0 tile holding entry `hash`. */
static json_t *tile_tamper(uint64_t hash, uint64_t size)
{
	char tile[TLOG_TILE_PATH_MAX], path[900];
	uint64_t n = hash / TLOG_TILE_WIDTH;
	unsigned width = size / TLOG_TILE_WIDTH > n ? TLOG_TILE_WIDTH : (unsigned)(size % TLOG_TILE_WIDTH);
	assert_int_equal(tlog_tile_path(0, n, width, tile), KMS_OK);
	snprintf(path, sizeof path, "%s/%s", pub, tile);
	size_t len = 0;
	uint8_t *bytes = (uint8_t *)harness_read_file(path, &len);
	assert_non_null(bytes);
	size_t offset = (size_t)(hash % TLOG_TILE_WIDTH) * TLOG_HASH_SIZE + 5;
	assert_true(offset < len);
	char expect[200];
	snprintf(expect, sizeof expect, "FAILED: %s: hash %llu differs from the signed tree", tile,
	         (unsigned long long)(hash % TLOG_TILE_WIDTH));
	json_t *o = json_pack("{s:s, s:I, s:i, s:i, s:s}", "path", tile, "offset", (json_int_t)offset,
	                      "from", bytes[offset], "to", bytes[offset] ^ 0x01, "expect", expect);
	free(bytes);
	assert_non_null(o);
	return o;
}

/* The driver's instructions and expectations (auditor_page_driver.py). */
static void write_plan(const char *path, const audit_entries *e, uint64_t size, const char *key)
{
	uint64_t denied = find_entry(e, "encrypt", "ACCESS_DENIED");
	uint64_t allowed = find_entry(e, "encrypt", "OK");
	const char *who = audit_str(e->items[denied], "principal");
	char from[64], until[64];
	time_bound(e->items[allowed], from, sizeof from);
	time_bound(e->items[denied], until, sizeof until);
	const filter filters[] = {
		{ "", "", who, "", "encrypt", "ACCESS_DENIED" },
		{ "", "", who, "", "encrypt", "OK" },
		{ "", "", "", "", "generate_random", "" },
		{ "", "", "", key, "", "" },
		{ from, until, "", "", "", "" },
	};
	json_t *fs = json_array();
	for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++)
		json_array_append_new(fs, filter_json(e, &filters[i]));
	/* The denied encrypt: exactly one row; the allowed ones: ENCRYPTS. */
	assert_int_equal(count_matching(e, &filters[0]), 1);
	assert_int_equal(count_matching(e, &filters[1]), ENCRYPTS);
	assert_int_equal(count_matching(e, &filters[2]), RANDOMS + measure_entries);

	char url[64], screenshot[800], profiles[800];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/audit/", port);
	const char *shot = getenv("KMS_AUDITOR_SCREENSHOT");
	snprintf(screenshot, sizeof screenshot, "%s", shot && *shot ? shot : "");
	if (!screenshot[0])
		snprintf(screenshot, sizeof screenshot, "%s/auditor-page.png", H.dir);
	snprintf(profiles, sizeof profiles, "%s/chromium", H.dir);
	json_t *plan = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:o, s:I, s:o, s:o, s:b}",
	                         "url", url, "vkey", vkey, "public", pub, "profiles", profiles,
	                         "screenshot", screenshot, "size", (json_int_t)size, "filters", fs,
	                         "prove", (json_int_t)denied,
	                         "tamper_entry", entry_tamper(allowed, size),
	                         "tamper_tile", tile_tamper(denied, size),
	                         "measure", measure_entries > 0);
	assert_non_null(plan);
	assert_int_equal(json_dump_file(plan, path, JSON_INDENT(1)), 0);
	json_decref(plan);
}

/* ---- the driver, in a process group of its own ---- */

static void print_tail(const char *path)
{
	size_t len = 0;
	char *text = harness_read_file(path, &len);
	if (!text)
		return;
	fprintf(stderr, "---- %s ----\n%s\n----\n", path, len > OUTPUT_TAIL ? text + len - OUTPUT_TAIL : text);
	free(text);
}

/* Kills every process whose command line holds marker: Chromium's crash
 * handler starts a session of its own, out of the driver's group, and
 * names its database under the HOME the driver was given. */
static void kill_leftovers(const char *marker)
{
	DIR *proc = opendir("/proc");
	if (!proc)
		return;
	static char cmdline[1u << 16];
	for (struct dirent *d = readdir(proc); d; d = readdir(proc)) {
		char *end;
		long pid = strtol(d->d_name, &end, 10);
		if (*end || pid <= 1 || pid == (long)getpid())
			continue;
		char path[64];
		snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, cmdline, sizeof cmdline);
		close(fd);
		if (n > 0 && memmem(cmdline, (size_t)n, marker, strlen(marker)))
			kill((pid_t)pid, SIGKILL);
	}
	closedir(proc);
}

/* Runs the driver on plan with HOME set to home; its process group
 * (chromedriver and Chromium included) is killed when it ends or past
 * DRIVER_MS, and whatever left the group but names home. Returns its exit
 * code (-1: killed). */
static int run_driver(const char *plan, const char *out_path, const char *home)
{
	const char *script = getenv("KMS_TEST_AUDITOR_DRIVER");
	assert_non_null(script);
	assert_true(mkdir(home, 0700) == 0 || errno == EEXIST);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setpgid(0, 0);
		/* Chromium's profile and crash database stay under the test's folder. */
		setenv("HOME", home, 1);
		int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (o < 0 || in < 0 || dup2(o, 1) < 0 || dup2(o, 2) < 0 || dup2(in, 0) < 0)
			_exit(127);
		execl("/usr/bin/python3", "python3", script, plan, (char *)NULL);
		_exit(127);
	}
	setpgid(pid, pid); /* either side may run first */
	int status = 0;
	bool ended = run_bin_wait(pid, DRIVER_MS, &status);
	kill(-pid, SIGKILL); /* chromedriver, Chromium, whatever is left */
	kill_leftovers(home);
	if (!ended) {
		(void)run_bin_wait(pid, 10000, &status);
		fprintf(stderr, "the driver did not finish within %d ms: killed\n", DRIVER_MS);
		return -1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void page_verifies_and_fails_closed(void **state)
{
	(void)state;
	if (access("/usr/bin/chromium", X_OK) != 0 || access("/usr/bin/chromedriver", X_OK) != 0)
		fail_msg("this test needs Debian's chromium and chromium-driver: run scripts/deps as "
		         "root");
	start();
	char key[35], denied_key[35];
	assert_true(harness_create_key(&H, NULL, key));
	assert_true(harness_create_key(&H, NULL, denied_key));
	put_policy(denied_key, nothing_policy);
	for (int i = 0; i < ENCRYPTS; i++)
		encrypt_expect(key, KMS__STATUS__OK);
	encrypt_expect(denied_key, KMS__STATUS__ACCESS_DENIED);
	for (int i = 0; i < RANDOMS; i++)
		random_bytes();
	const char *measure = getenv("KMS_AUDITOR_MEASURE");
	measure_entries = measure ? strtol(measure, NULL, 10) : 0;
	if (measure_entries < 0 || measure_entries > MEASURE_MAX)
		fail_msg("KMS_AUDITOR_MEASURE: 0 to %d entries", MEASURE_MAX);
	for (long i = 0; i < measure_entries; i++)
		random_bytes();
	uint64_t size = settled_size();

	audit_entries entries;
	audit_load(pub, vkey, NULL, &entries);
	assert_int_equal(entries.n, size);
	char plan[700], out[700], home[700];
	snprintf(plan, sizeof plan, "%s/auditor-plan.json", H.dir);
	snprintf(home, sizeof home, "%s/browser-home", H.dir);
	snprintf(out, sizeof out, "%s/auditor-driver.log", H.dir);
	write_plan(plan, &entries, size, key);
	audit_entries_free(&entries);

	uint64_t t0 = e2e_now_ms();
	int code = run_driver(plan, out, home);
	uint64_t ms = e2e_now_ms() - t0;
	if (code != 0) {
		print_tail(out);
		fail_msg("the browser checks failed (exit %d); the driver's log is %s", code, out);
	}
	print_tail(out);
	fprintf(stderr, "measured: the browser part took %llu ms for a log of %llu entries\n",
	        (unsigned long long)ms, (unsigned long long)size);
	/* Nothing the page read was an entry. */
	assert_int_equal(entries_written(), size);
	assert_int_equal(harness_stop(&H), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(page_verifies_and_fails_closed, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
