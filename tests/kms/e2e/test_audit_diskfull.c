/*
 * test_audit_diskfull: the audit log fails closed when its disk is full and
 * recovers when space returns (docs/audit-log.md), against a real kmsd on a
 * real SoftHSM token.
 *
 * data/audit is a 1 MiB tmpfs mounted before kmsd first starts (we run as
 * root; without mount(2) the test is skipped, saying so). A filler file
 * takes all but a little of it; then requests go in one by one until the
 * writes fail. Every answer is OK or UNAVAILABLE naming the audit log;
 * kmsd keeps running; /healthz says 503 and /metrics kms_audit_writable 0.
 * With the filler gone requests succeed again (the first may still be
 * refused). After a clean stop the log verifies, log.bin holds only whole
 * records (failed batches were cut off), every OK answer has its entry
 * exactly once, and no request answered UNAVAILABLE has an entry saying
 * OK. The tmpfs lives in a private mount namespace when one can be had, is
 * unmounted in the teardown, and by an alarm if the test hangs.
 *
 * Control-plane changes on the full disk (found: DisableKey answered
 * UNAVAILABLE, yet the key was DISABLED and the log had no entry, because
 * the entry was written after the change). Right after the disk fills, a
 * second key is disabled and enabled in turn until a change is answered
 * UNAVAILABLE: that change must not have been applied (the key's state,
 * read once the disk is freed, is the one the OK answers left), and every
 * change answered OK has its intent and its outcome in the log, the intent
 * first.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/audit_check.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"

#define TMPFS_OPTIONS "size=1m,mode=0700"
#define FILLER_CHUNK 4096
#define FILLER_MAX_CHUNKS 1024      /* 4 MiB: more than the tmpfs holds */
#define FILLER_SLACK (16 * 1024)    /* left free for a few entries */
#define FULL_REQUESTS_MAX 3000
#define FULL_REFUSALS_WANTED 5
#define FULL_BUDGET_MS 60000
#define RECOVERY_ATTEMPTS 50
#define RECOVERY_BUDGET_MS 15000
#define AFTER_RECOVERY_OK 10
#define HEALTHZ_WAIT_MS 5000
#define ALARM_S 240                 /* below the ctest TIMEOUT */
#define ID_MAX 48
#define SKIPPED_EXIT_CODE 77        /* ctest's SKIP_RETURN_CODE */
#define CHECKPOINT_MS 50
#define FULL_HOLD_MS 1000
#define PUBLISH_RETRY_SLACK 10
#define TOGGLES_MAX 200             /* changes tried until one is refused */

static harness H;
static char g_mount[800];
static volatile sig_atomic_t g_mounted;
static bool g_skipped;

static void unmount_audit(void)
{
	if (!g_mounted)
		return;
	if (umount(g_mount) != 0 && umount2(g_mount, MNT_DETACH) != 0)
		fprintf(stderr, "umount %s: %s\n", g_mount, strerror(errno));
	else
		g_mounted = 0;
}

/* A hung test must not leave a mount behind in the token dir. */
static void on_alarm(int sig)
{
	(void)sig;
	if (H.pid > 0)
		kill(H.pid, SIGKILL);
	if (g_mounted)
		umount2(g_mount, MNT_DETACH);
	static const char msg[] = "test_audit_diskfull: alarm: killed kmsd, unmounted\n";
	ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
	(void)ignored;
	_exit(1);
}

static int teardown(void **state)
{
	(void)state;
	if (H.pid > 0)
		harness_kill9(&H);
	unmount_audit();
	alarm(0);
	return 0;
}

typedef struct answers {
	char (*ids)[ID_MAX];
	int *status;
	size_t n, cap;
} answers;

static void answers_add(answers *a, const char *id, int status)
{
	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 256;
		a->ids = realloc(a->ids, a->cap * sizeof *a->ids);
		a->status = realloc(a->status, a->cap * sizeof *a->status);
		assert_true(a->ids && a->status);
	}
	snprintf(a->ids[a->n], ID_MAX, "%s", id);
	a->status[a->n++] = status;
}

/* One Encrypt; records the answer; fails the test on anything but OK or
 * UNAVAILABLE-because-of-the-audit-log. Returns the status. */
static int encrypt_once(answers *a, const char *id, const char *key)
{
	nng_socket s;
	assert_true(e2e_socket(&H, 5000, 20000, &s));
	Kms__Response *r = e2e_encrypt_on(s, id, key, (const uint8_t *)"disk-full", 9);
	(void)kms_nng_close_bounded(s, TEST_CLOSE_WAIT_MS);
	if (!r)
		fail_msg("request %s: no answer (did kmsd die? see %s)", id, H.log);
	int status = r->status;
	if (status == KMS__STATUS__UNAVAILABLE) {
		if (!strstr(r->message, "audit log"))
			fail_msg("request %s: UNAVAILABLE without naming the audit log: %s", id,
			         r->message);
		assert_int_equal(r->result_case, KMS__RESPONSE__RESULT__NOT_SET);
	} else if (status != KMS__STATUS__OK) {
		fail_msg("request %s: status %d: %s", id, status, r->message);
	}
	kms__response__free_unpacked(r, NULL);
	answers_add(a, id, status);
	return status;
}

/* DisableKey (disable) or EnableKey on key; records the answer; fails the
 * test on anything but OK or UNAVAILABLE naming the audit log. */
static int toggle_once(answers *a, const char *id, const char *key, bool disable)
{
	Kms__DisableKeyRequest dk = KMS__DISABLE_KEY_REQUEST__INIT;
	Kms__EnableKeyRequest ek = KMS__ENABLE_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.request_id = (char *)(uintptr_t)id;
	if (disable) {
		dk.key_id = (char *)(uintptr_t)key;
		req.op_case = KMS__REQUEST__OP_DISABLE_KEY;
		req.disable_key = &dk;
	} else {
		ek.key_id = (char *)(uintptr_t)key;
		req.op_case = KMS__REQUEST__OP_ENABLE_KEY;
		req.enable_key = &ek;
	}
	Kms__Response *r = harness_call(&H, &req);
	if (!r)
		fail_msg("request %s: no answer (did kmsd die? see %s)", id, H.log);
	int status = r->status;
	if (status == KMS__STATUS__UNAVAILABLE) {
		if (!strstr(r->message, "audit log") || !strstr(r->message, id))
			fail_msg("request %s: UNAVAILABLE without naming the audit log and the "
			         "request: %s", id, r->message);
	} else if (status != KMS__STATUS__OK) {
		fail_msg("request %s: status %d: %s", id, status, r->message);
	}
	kms__response__free_unpacked(r, NULL);
	answers_add(a, id, status);
	return status;
}

static Kms__KeyState key_state(const char *key)
{
	Kms__Response *r = e2e_describe(&H, key);
	assert_non_null(r);
	if (r->status != KMS__STATUS__OK)
		fail_msg("DescribeKey %s: status %d: %s", key, r->status, r->message);
	Kms__KeyState state = r->describe_key->key_metadata->key_state;
	kms__response__free_unpacked(r, NULL);
	return state;
}

static void expect_alive(void)
{
	int wstatus;
	if (H.pid <= 0 || waitpid(H.pid, &wstatus, WNOHANG) != 0)
		fail_msg("kmsd is gone; see %s", H.log);
}

static bool metrics_say(int port, const char *needle)
{
	char *body;
	size_t len;
	int status = audit_http_get(port, "/metrics", 5000, &body, &len);
	bool found = status == 200 && body && strstr(body, needle);
	free(body);
	return found;
}

/* Lines of kmsd's log after offset that contain needle. */
static size_t log_lines_since(size_t offset, const char *needle)
{
	size_t len, n = 0;
	char *log = harness_read_file(H.log, &len);
	assert_non_null(log);
	for (const char *p = strstr(log + (offset < len ? offset : len), needle); p;
	     p = strstr(p + 1, needle))
		n++;
	free(log);
	return n;
}

static void disk_full_fails_closed(void **state)
{
	(void)state;
	char data[700];
	snprintf(data, sizeof data, "%s/data", getenv("KMS_TEST_TOKEN_DIR"));
	snprintf(g_mount, sizeof g_mount, "%s/audit", data);
	if ((mkdir(data, 0700) != 0 && errno != EEXIST) ||
	    (mkdir(g_mount, 0700) != 0 && errno != EEXIST))
		fail_msg("mkdir %s: %s", g_mount, strerror(errno));
	/* In a mount namespace of our own (kmsd, forked later, shares it) the
	 * tmpfs goes away with us even if this process dies; else a plain
	 * mount, unmounted in the teardown. The source and type of a
	 * propagation change are ignored; "none" rather than NULL keeps
	 * valgrind's check of the pointers quiet. */
	if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0)
		fprintf(stderr, "no private mount namespace (%s): mounting in the host's\n",
		        strerror(errno));
	if (mount("tmpfs", g_mount, "tmpfs", MS_NOSUID | MS_NODEV, TMPFS_OPTIONS) != 0) {
		fprintf(stderr, "SKIPPED: cannot mount a 1 MiB tmpfs on %s (%s): this test needs "
		        "root and mount(2); the disk-full path is NOT tested\n", g_mount,
		        strerror(errno));
		g_skipped = true;
		skip();
	}
	g_mounted = 1;
	signal(SIGALRM, on_alarm);
	alarm(ALARM_S);

	int port = harness_free_port();
	assert_true(port > 0);
	char extra[200];
	snprintf(extra, sizeof extra, "[audit]\ncheckpoint_ms = %d\nhttp = http://127.0.0.1:%d\n",
	         CHECKPOINT_MS, port);
	harness_options o = { .extra_config = extra };
	if (!harness_start(&H, &o))
		fail_msg("kmsd did not start; see %s", H.log);
	char key[35], key2[35];
	assert_true(harness_create_key(&H, NULL, key));
	assert_true(harness_create_key(&H, NULL, key2));
	answers a = { 0 };
	for (int i = 0; i < 5; i++) {
		char id[ID_MAX];
		snprintf(id, sizeof id, "df-before-%d", i);
		assert_int_equal(encrypt_once(&a, id, key), KMS__STATUS__OK);
	}
	assert_int_equal(audit_wait_healthz(port, 200, HEALTHZ_WAIT_MS), 200);

	/* Fill the tmpfs, then give a little back. */
	size_t log_at = e2e_log_size(&H);
	uint64_t full_since = e2e_now_ms();
	char filler[900];
	snprintf(filler, sizeof filler, "%s/filler", g_mount);
	int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	static uint8_t chunk[FILLER_CHUNK];
	memset(chunk, 0xf1, sizeof chunk);
	off_t filled = 0;
	bool full = false;
	for (int i = 0; i < FILLER_MAX_CHUNKS && !full; i++) {
		ssize_t n = write(fd, chunk, sizeof chunk);
		if (n > 0)
			filled += n;
		full = n < (ssize_t)sizeof chunk;
	}
	assert_true(full);
	assert_true(filled > FILLER_SLACK);
	assert_int_equal(ftruncate(fd, filled - FILLER_SLACK), 0);
	close(fd);

	/* Control-plane changes first, until one is refused. */
	answers changes = { 0 };
	bool disabled = false; /* the state the OK answers left key2 in */
	int toggles_ok = 0;
	for (int i = 0; i < TOGGLES_MAX; i++) {
		char id[ID_MAX];
		snprintf(id, sizeof id, "df-toggle-%d", i);
		if (toggle_once(&changes, id, key2, !disabled) != KMS__STATUS__OK)
			break;
		disabled = !disabled;
		toggles_ok++;
	}
	if (changes.n == 0 || changes.status[changes.n - 1] != KMS__STATUS__UNAVAILABLE)
		fail_msg("%d changes on a full disk all answered OK", TOGGLES_MAX);
	fprintf(stderr, "disk full: %d changes answered OK, then %s refused\n", toggles_ok,
	        changes.ids[changes.n - 1]);

	/* Until the writes fail, and a few refusals after. */
	uint64_t deadline = e2e_now_ms() + FULL_BUDGET_MS;
	size_t refusals = 0, oks_while_filling = 0;
	bool healthz_503 = false, metrics_0 = false;
	for (int i = 0; i < FULL_REQUESTS_MAX && refusals < FULL_REFUSALS_WANTED; i++) {
		if (e2e_now_ms() > deadline)
			break;
		char id[ID_MAX];
		snprintf(id, sizeof id, "df-full-%d", i);
		int status = encrypt_once(&a, id, key);
		if (status == KMS__STATUS__OK) {
			oks_while_filling++;
			continue;
		}
		refusals++;
		expect_alive();
		if (!healthz_503) {
			char *body;
			size_t len;
			int hs = audit_http_get(port, "/healthz", 5000, &body, &len);
			if (hs == 503 && body && strstr(body, "audit log"))
				healthz_503 = true;
			else if (hs != 503)
				fail_msg("/healthz says %d while requests are refused: %s", hs,
				         body ? body : "");
			free(body);
		}
		metrics_0 |= metrics_say(port, "kms_audit_writable 0\n");
	}
	fprintf(stderr, "disk full: %zu OK while filling, %zu refused\n", oks_while_filling,
	        refusals);
	if (refusals < FULL_REFUSALS_WANTED)
		fail_msg("the disk never filled: %zu requests answered OK", oks_while_filling);
	assert_true(healthz_503);
	assert_true(metrics_0);
	assert_true(harness_log_contains(&H, "their requests fail"));
	/* Stay full a while: the writer retries publishing every checkpoint_ms,
	 * not in a busy loop that floods the log. */
	e2e_sleep_ms(FULL_HOLD_MS);
	expect_alive();
	uint64_t full_ms = e2e_now_ms() - full_since;
	size_t publish_errors = log_lines_since(log_at, "audit: publishing a checkpoint");
	fprintf(stderr, "disk full for %llu ms: %zu failed checkpoint publications\n",
	        (unsigned long long)full_ms, publish_errors);
	if (publish_errors > full_ms / CHECKPOINT_MS + PUBLISH_RETRY_SLACK)
		fail_msg("%zu failed publications in %llu ms with checkpoint_ms = %d: the writer "
		         "spins", publish_errors, (unsigned long long)full_ms, CHECKPOINT_MS);

	/* Space again: after at most a few refusals, requests succeed. */
	assert_int_equal(unlink(filler), 0);
	deadline = e2e_now_ms() + RECOVERY_BUDGET_MS;
	bool recovered = false;
	for (int i = 0; i < RECOVERY_ATTEMPTS && !recovered && e2e_now_ms() < deadline; i++) {
		char id[ID_MAX];
		snprintf(id, sizeof id, "df-recover-%d", i);
		recovered = encrypt_once(&a, id, key) == KMS__STATUS__OK;
		if (!recovered)
			e2e_sleep_ms(50);
	}
	if (!recovered)
		fail_msg("requests still fail %d ms after the disk was freed", RECOVERY_BUDGET_MS);
	for (int i = 0; i < AFTER_RECOVERY_OK; i++) {
		char id[ID_MAX];
		snprintf(id, sizeof id, "df-after-%d", i);
		assert_int_equal(encrypt_once(&a, id, key), KMS__STATUS__OK);
	}
	assert_int_equal(audit_wait_healthz(port, 200, HEALTHZ_WAIT_MS), 200);
	assert_true(metrics_say(port, "kms_audit_writable 1\n"));
	/* The refused change was not applied. */
	Kms__KeyState want = disabled ? KMS__KEY_STATE__DISABLED : KMS__KEY_STATE__ENABLED;
	if (key_state(key2) != want)
		fail_msg("key %s is %d after %s was answered UNAVAILABLE; the OK answers left it "
		         "%d", key2, key_state(key2), changes.ids[changes.n - 1], want);
	for (int i = 0; i < 2; i++) {
		char id[ID_MAX];
		snprintf(id, sizeof id, "df-toggle-after-%d", i);
		assert_int_equal(toggle_once(&changes, id, key2, !disabled), KMS__STATUS__OK);
		disabled = !disabled;
	}
	assert_true(harness_log_contains(&H, "audit: the log can be written again"));

	audit_cp cp;
	audit_get_checkpoint(&H, &cp);
	int code = harness_stop(&H);
	if (code != 0)
		fail_msg("kmsd exit code %d after SIGTERM; see %s", code, H.log);

	/* The log: verifies, whole records only, every OK once, no UNAVAILABLE
	 * recorded as OK. */
	char pub[700];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	audit_entries e;
	audit_load(pub, cp.vkey, cp.note, &e);
	char log_path[900];
	snprintf(log_path, sizeof log_path, "%s/log.bin", g_mount);
	size_t log_len;
	uint8_t *log_bin = (uint8_t *)harness_read_file(log_path, &log_len);
	assert_non_null(log_bin);
	uint64_t records = 0;
	for (size_t off = 0; off < log_len; records++) {
		if (log_len - off < 2)
			fail_msg("log.bin: stray bytes at %zu", off);
		size_t n = ((size_t)log_bin[off] << 8) | log_bin[off + 1];
		uint8_t hash[TLOG_HASH_SIZE];
		if (n == 0 || log_len - off - 2 < n + TLOG_HASH_SIZE)
			fail_msg("log.bin: a partial record at %zu (a failed batch left behind)", off);
		assert_int_equal(tlog_leaf_hash(log_bin + off + 2, n, hash), KMS_OK);
		if (memcmp(hash, log_bin + off + 2 + n, TLOG_HASH_SIZE) != 0)
			fail_msg("log.bin: record %llu has a wrong hash", (unsigned long long)records);
		off += 2 + n + TLOG_HASH_SIZE;
	}
	free(log_bin);
	assert_int_equal(records, e.n);

	size_t ok = 0, refused_in_log = 0;
	for (size_t i = 0; i < a.n; i++) {
		json_t *entry;
		size_t count = audit_count_id(&e, a.ids[i], &entry);
		if (a.status[i] == KMS__STATUS__OK) {
			ok++;
			if (count != 1)
				fail_msg("request %s was answered OK but is in the log %zu times", a.ids[i],
				         count);
			assert_string_equal(audit_str(entry, "status"), "OK");
		} else {
			if (count > 1)
				fail_msg("refused request %s is in the log %zu times", a.ids[i], count);
			if (count == 1) {
				refused_in_log++;
				if (strcmp(audit_str(entry, "status"), "UNAVAILABLE") != 0)
					fail_msg("request %s was answered UNAVAILABLE but its entry says %s",
					         a.ids[i], audit_str(entry, "status"));
			}
		}
	}
	fprintf(stderr, "disk full: %zu OK, %zu refused (%zu of them recorded as refused)\n", ok,
	        a.n - ok, refused_in_log);
	/* Every change answered OK: its intent, then its outcome saying OK. A
	 * refused change: no intent, and no outcome saying OK. */
	for (size_t i = 0; i < changes.n; i++) {
		json_t *intent = NULL, *outcome = NULL;
		size_t intents = audit_count_phase(&e, changes.ids[i], "intent", &intent);
		size_t outcomes = audit_count_phase(&e, changes.ids[i], "outcome", &outcome);
		if (changes.status[i] == KMS__STATUS__OK) {
			if (intents != 1 || outcomes != 1)
				fail_msg("change %s was answered OK: %zu intents, %zu outcomes in the log",
				         changes.ids[i], intents, outcomes);
			assert_string_equal(audit_str(outcome, "status"), "OK");
			assert_string_equal(audit_str(intent, "key_id"), key2);
			assert_true(strcmp(audit_str(intent, "time"), audit_str(outcome, "time")) <= 0);
		} else {
			assert_int_equal(intents, 0);
			if (outcomes == 1)
				assert_string_equal(audit_str(outcome, "status"), "UNAVAILABLE");
		}
	}
	audit_entries_free(&e);
	audit_cp_free(&cp);
	free(a.ids);
	free(a.status);
	free(changes.ids);
	free(changes.status);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(disk_full_fails_closed, teardown),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	return failed == 0 && g_skipped ? SKIPPED_EXIT_CODE : failed;
}
