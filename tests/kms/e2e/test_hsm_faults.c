/*
 * test_hsm_faults: a real kmsd on a real SoftHSM token reached through
 * tests/support/p11fault (a PKCS#11 module that forwards to SoftHSM and
 * fails, holds or unplugs the calls its control file names;
 * docs/fault-injection.md).
 *
 * (1) transient: one failed call of each kind a network HSM shows
 *     (SESSION_HANDLE_INVALID, DEVICE_ERROR, DEVICE_MEMORY, DEVICE_REMOVED,
 *     TOKEN_NOT_PRESENT) under Encrypt and under Decrypt is retried on a
 *     fresh session: the client sees OK, the fault shows in /metrics.
 * (2) persistent: every call failing DEVICE_ERROR: requests are answered
 *     HSM_UNAVAILABLE (each within one retry: the time is printed, not
 *     asserted), audited with that status, /healthz says 503, the thread
 *     count does not grow; the HSM healthy again, the next request is OK
 *     and /healthz 200, with no restart.
 * (3) unplugged: the token gone (DEVICE_REMOVED, no token in the slot
 *     list): HSM_UNAVAILABLE and /healthz 503; plugged back (its sessions
 *     gone, its login gone, its slot under a new id), kmsd finds it again by
 *     its label and serves, old ciphertexts included.
 * (5) a stand-in: another device under the same label (its serial
 *     differs) is neither logged in to under the old slot id nor taken
 *     under a new one; the real token back, kmsd serves again.
 * (4) slow: the HSM held busy on one request while four more queue behind
 *     it (one worker): once they have waited past [limits]
 *     queue_deadline_ms they are answered UNAVAILABLE without running; the
 *     held one completes OK. The test waits for each event (the hold, the
 *     queue's depth in /metrics) and for the deadline to pass, never for a
 *     guessed time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "tests/support/audit_check.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/group.h"
#include "tests/support/harness.h"

#define HTTP_WAIT_MS 10000
#define EVENT_WAIT_MS 30000
#define PERSISTENT_REQUESTS 40
#define QUEUED 4
#define DEADLINE_MS 200

static harness H;
static int port;
static char control[600], fault_log[600], release_file[600];

/* ---- the fault module's control file and log ---- */

/* Replaces the control file in one rename, so p11fault never reads half. */
static void set_faults(const char *text)
{
	char tmp[640];
	snprintf(tmp, sizeof tmp, "%s.tmp", control);
	FILE *f = fopen(tmp, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, control), 0);
}

/* How many lines of the fault log are exactly line. */
static unsigned fault_lines(const char *line)
{
	size_t len = 0;
	char *text = harness_read_file(fault_log, &len);
	unsigned n = 0;
	size_t want = strlen(line);
	for (char *p = text; p && *p;) {
		char *end = strchr(p, '\n');
		size_t l = end ? (size_t)(end - p) : strlen(p);
		if (l == want && !strncmp(p, line, l))
			n++;
		p = end ? end + 1 : NULL;
	}
	free(text);
	return n;
}

static void wait_fault_line(const char *line, unsigned at_least)
{
	uint64_t until = e2e_now_ms() + EVENT_WAIT_MS;
	while (fault_lines(line) < at_least) {
		if (e2e_now_ms() > until)
			fail_msg("the fault log never said \"%s\" %u times", line, at_least);
		e2e_sleep_ms(5);
	}
}

/* ---- kmsd ---- */

static void start(const char *limits)
{
	const char *dir = getenv("KMS_TEST_TOKEN_DIR");
	snprintf(control, sizeof control, "%s/p11fault.ctl", dir);
	snprintf(fault_log, sizeof fault_log, "%s/p11fault.log", dir);
	snprintf(release_file, sizeof release_file, "%s/p11fault.release", dir);
	set_faults("");
	unlink(fault_log);
	unlink(release_file);
	assert_int_equal(setenv("P11FAULT_CONTROL", control, 1), 0);
	assert_int_equal(setenv("P11FAULT_LOG", fault_log, 1), 0);
	port = harness_free_port();
	static char extra[512];
	snprintf(extra, sizeof extra, "[audit]\nhttp = http://127.0.0.1:%d\n%s", port,
	         limits ? limits : "");
	harness_options o = { .extra_config = extra, .workers = limits ? 1 : 0 };
	assert_true(harness_start(&H, &o));
}

static int teardown(void **state)
{
	(void)state;
	if (H.pid > 0)
		harness_kill9(&H);
	return 0;
}

static char *scrape(void)
{
	char *body = NULL;
	size_t len = 0;
	assert_int_equal(audit_http_get(port, "/metrics", HTTP_WAIT_MS, &body, &len), 200);
	return body;
}

/* The value of the sample named exactly series, or 0 when absent. */
static double metric(const char *series)
{
	char *body = scrape();
	double v = 0;
	if (!audit_metric_sample(body, series, &v))
		v = 0;
	free(body);
	return v;
}

static unsigned kmsd_threads(void)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", (int)H.pid);
	DIR *d = opendir(path);
	assert_non_null(d);
	unsigned n = 0;
	for (struct dirent *e; (e = readdir(d));)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void create_key(char out[35])
{
	Kms__Response *r = e2e_create_key(&H);
	assert_non_null(r);
	assert_int_equal(r->status, KMS__STATUS__OK);
	snprintf(out, 35, "%s", r->create_key->key_metadata->key_id);
	kms__response__free_unpacked(r, NULL);
}

static const uint8_t plaintext[] = "4111 1111 1111 1111";

/* Encrypts under key; the status, and the blob into *blob (malloc'ed) when OK. */
static int encrypt(const char *key, uint8_t **blob, size_t *len)
{
	Kms__Response *r = e2e_encrypt(&H, key, plaintext, sizeof plaintext);
	assert_non_null(r);
	int status = r->status;
	if (status == KMS__STATUS__OK && blob) {
		*len = r->encrypt->ciphertext_blob.len;
		*blob = malloc(*len);
		assert_non_null(*blob);
		memcpy(*blob, r->encrypt->ciphertext_blob.data, *len);
	}
	kms__response__free_unpacked(r, NULL);
	return status;
}

static int decrypt(const uint8_t *blob, size_t len)
{
	Kms__Response *r = e2e_decrypt(&H, blob, len);
	assert_non_null(r);
	int status = r->status;
	if (status == KMS__STATUS__OK) {
		assert_int_equal(r->decrypt->plaintext.len, sizeof plaintext);
		assert_memory_equal(r->decrypt->plaintext.data, plaintext, sizeof plaintext);
	}
	kms__response__free_unpacked(r, NULL);
	return status;
}

/* ---- (1) transient faults ---- */

static void transient_faults_are_invisible(void **state)
{
	(void)state;
	start(NULL);
	char key[35];
	create_key(key);
	uint8_t *blob = NULL;
	size_t len = 0;
	assert_int_equal(encrypt(key, &blob, &len), KMS__STATUS__OK); /* key loaded */

	static const char *const rvs[] = { "CKR_SESSION_HANDLE_INVALID", "CKR_DEVICE_ERROR",
		                           "CKR_DEVICE_MEMORY", "CKR_DEVICE_REMOVED",
		                           "CKR_TOKEN_NOT_PRESENT" };
	static const char *const calls[] = { "C_Encrypt", "C_Decrypt" };
	for (size_t c = 0; c < 2; c++) {
		for (size_t i = 0; i < sizeof rvs / sizeof rvs[0]; i++) {
			char rule[128], line[96];
			snprintf(rule, sizeof rule, "fail %s %s nth 1\n", calls[c], rvs[i]);
			snprintf(line, sizeof line, "%s %s", calls[c], rvs[i]);
			unsigned before = fault_lines(line);
			set_faults(rule);
			int st = c == 0 ? encrypt(key, NULL, NULL) : decrypt(blob, len);
			if (st != KMS__STATUS__OK)
				fail_msg("one %s from %s: the client saw status %d, want OK", rvs[i],
				         calls[c], st);
			/* The fault did happen: the module logged it. */
			assert_int_equal(fault_lines(line), before + 1);
			set_faults("");
		}
	}
	char series[128];
	snprintf(series, sizeof series, "kms_hsm_errors_total{rv=\"CKR_DEVICE_ERROR\"}");
	assert_true(metric(series) >= 2);
	free(blob);
	assert_int_equal(harness_stop(&H), 0);
}

/* ---- (2) persistent faults ---- */

static void persistent_fault_fails_fast_and_recovers(void **state)
{
	(void)state;
	start(NULL);
	char key[35];
	create_key(key);
	assert_int_equal(encrypt(key, NULL, NULL), KMS__STATUS__OK);
	assert_int_equal(audit_wait_healthz(port, 200, HTTP_WAIT_MS), 200);
	unsigned threads = kmsd_threads();

	set_faults("fail * CKR_DEVICE_ERROR\n");
	uint64_t worst = 0;
	for (int i = 0; i < PERSISTENT_REQUESTS; i++) {
		uint64_t t0 = e2e_now_ms();
		int st = encrypt(key, NULL, NULL);
		uint64_t took = e2e_now_ms() - t0;
		if (took > worst)
			worst = took;
		assert_int_equal(st, KMS__STATUS__HSM_UNAVAILABLE);
	}
	print_message("measured: %d requests against a failing HSM, each answered "
	              "HSM_UNAVAILABLE, the slowest in %llu ms\n", PERSISTENT_REQUESTS,
	              (unsigned long long)worst);
	assert_int_equal(audit_wait_healthz(port, 503, HTTP_WAIT_MS), 503);
	/* No pile-up: the failures took no thread with them. */
	assert_int_equal(kmsd_threads(), threads);
	assert_true(metric("kms_hsm_errors_total{rv=\"CKR_DEVICE_ERROR\"}") >=
	            PERSISTENT_REQUESTS);

	set_faults(""); /* the HSM is back: no restart */
	assert_int_equal(encrypt(key, NULL, NULL), KMS__STATUS__OK);
	assert_int_equal(audit_wait_healthz(port, 200, HTTP_WAIT_MS), 200);

	/* Every failure is in the verified log with its status. */
	char vkey[AUDIT_VKEY_MAX];
	assert_true(audit_vkey_from_log(&H, vkey));
	assert_int_equal(harness_stop(&H), 0);
	char pub[700];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	audit_entries e;
	audit_load(pub, vkey, NULL, &e);
	unsigned unavailable = 0;
	for (size_t i = 0; i < e.n; i++)
		if (!strcmp(audit_str(e.items[i], "operation"), "encrypt") &&
		    !strcmp(audit_str(e.items[i], "status"), "HSM_UNAVAILABLE"))
			unavailable++;
	audit_entries_free(&e);
	assert_int_equal(unavailable, PERSISTENT_REQUESTS);
}

/* ---- (3) unplugged and plugged back ---- */

static void unplugged_token_is_found_again(void **state)
{
	(void)state;
	start(NULL);
	char key[35];
	create_key(key);
	uint8_t *blob = NULL;
	size_t len = 0;
	assert_int_equal(encrypt(key, &blob, &len), KMS__STATUS__OK);
	size_t log_at = e2e_log_size(&H);

	set_faults("unplug\n");
	assert_int_equal(encrypt(key, NULL, NULL), KMS__STATUS__HSM_UNAVAILABLE);
	assert_int_equal(decrypt(blob, len), KMS__STATUS__HSM_UNAVAILABLE);
	assert_int_equal(audit_wait_healthz(port, 503, HTTP_WAIT_MS), 503);

	set_faults(""); /* back, under a new slot id, logged out */
	assert_int_equal(encrypt(key, NULL, NULL), KMS__STATUS__OK);
	assert_int_equal(decrypt(blob, len), KMS__STATUS__OK);
	assert_int_equal(audit_wait_healthz(port, 200, HTTP_WAIT_MS), 200);
	assert_true(e2e_log_contains_since(&H, log_at, "is back, in slot"));
	free(blob);
	assert_int_equal(harness_stop(&H), 0);
}

/* ---- (5) another token under the same label ---- */

/* Encrypt refused HSM_UNAVAILABLE with a reply that says says. */
static void encrypt_refused_saying(const char *key, const char *says)
{
	Kms__Response *r = e2e_encrypt(&H, key, plaintext, sizeof plaintext);
	assert_non_null(r);
	printf("# %s\n", r->message);
	assert_int_equal(r->status, KMS__STATUS__HSM_UNAVAILABLE);
	if (!strstr(r->message, says))
		fail_msg("the reply does not say \"%s\": %s", says, r->message);
	kms__response__free_unpacked(r, NULL);
}

static void stand_in_token_is_refused(void **state)
{
	(void)state;
	start(NULL);
	char key[35];
	create_key(key);
	assert_int_equal(encrypt(key, NULL, NULL), KMS__STATUS__OK);

	/* Logged out under the same slot id, the token now another device:
	 * kmsd does not send it the PIN. */
	set_faults("serial 0000000000000bad\nfail C_Encrypt CKR_USER_NOT_LOGGED_IN nth 1\n");
	encrypt_refused_saying(key, "not logging in to it");

	/* Unplugged, and back under a new slot id as another device: refused. */
	set_faults("serial 0000000000000bad\nunplug\n");
	assert_int_equal(encrypt(key, NULL, NULL), KMS__STATUS__HSM_UNAVAILABLE);
	set_faults("serial 0000000000000bad\n");
	encrypt_refused_saying(key, "refusing it");

	/* The real one back: served again. */
	set_faults("");
	assert_int_equal(encrypt(key, NULL, NULL), KMS__STATUS__OK);
	assert_int_equal(harness_stop(&H), 0);
}

/* ---- (4) a slow HSM and the queue deadline ---- */

typedef struct pending_call {
	nng_socket s;
	char id[32];
} pending_call;

static void send_encrypt(pending_call *p, const char *key, int n)
{
	assert_true(e2e_socket(&H, 5000, EVENT_WAIT_MS, &p->s));
	snprintf(p->id, sizeof p->id, "slow-%d", n);
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	e.key_id = (char *)(uintptr_t)key;
	e.plaintext.data = (uint8_t *)(uintptr_t)plaintext;
	e.plaintext.len = sizeof plaintext;
	Kms__Request req = KMS__REQUEST__INIT;
	req.schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	req.request_id = p->id;
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &e;
	size_t len = kms__request__get_packed_size(&req);
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	kms__request__pack(&req, buf);
	assert_int_equal(nng_send(p->s, buf, len, 0), 0);
	free(buf);
}

static Kms__Response *receive(pending_call *p)
{
	void *buf = NULL;
	size_t len = 0;
	assert_int_equal(nng_recv(p->s, &buf, &len, NNG_FLAG_ALLOC), 0);
	Kms__Response *r = kms__response__unpack(NULL, len, buf);
	nng_free(buf, len);
	assert_non_null(r);
	assert_string_equal(r->request_id, p->id);
	kms_nng_close_bounded(p->s, TEST_CLOSE_WAIT_MS);
	return r;
}

static void slow_hsm_requests_past_the_deadline_are_refused(void **state)
{
	(void)state;
	char limits[128];
	snprintf(limits, sizeof limits, "[limits]\nqueue_deadline_ms = %d\n", DEADLINE_MS);
	start(limits);
	char key[35];
	create_key(key);
	assert_int_equal(encrypt(key, NULL, NULL), KMS__STATUS__OK);

	char rule[700];
	snprintf(rule, sizeof rule, "hold C_Encrypt %s\n", release_file);
	set_faults(rule);
	pending_call held, queued[QUEUED];
	send_encrypt(&held, key, 0);
	wait_fault_line("C_Encrypt held", 1); /* the one worker is in the HSM */
	for (int i = 0; i < QUEUED; i++)
		send_encrypt(&queued[i], key, i + 1);
	uint64_t until = e2e_now_ms() + EVENT_WAIT_MS;
	while (metric("kms_requests_queued") < QUEUED) {
		if (e2e_now_ms() > until)
			fail_msg("the %d requests never queued behind the held one", QUEUED);
		e2e_sleep_ms(5);
	}
	/* Every one of them has been queued at least this long once this passes. */
	uint64_t queued_at = e2e_now_ms();
	while (e2e_now_ms() < queued_at + DEADLINE_MS + 50)
		e2e_sleep_ms(10);
	FILE *f = fopen(release_file, "w");
	assert_non_null(f);
	fclose(f);

	Kms__Response *r = receive(&held);
	assert_int_equal(r->status, KMS__STATUS__OK);
	kms__response__free_unpacked(r, NULL);
	for (int i = 0; i < QUEUED; i++) {
		r = receive(&queued[i]);
		assert_int_equal(r->status, KMS__STATUS__UNAVAILABLE);
		assert_non_null(strstr(r->message, "deadline"));
		kms__response__free_unpacked(r, NULL);
	}
	assert_int_equal(metric("kms_requests_deadline_expired_total"), QUEUED);
	/* The held call was the only one that reached the HSM. */
	assert_int_equal(fault_lines("C_Encrypt held"), 1);
	set_faults("");
	assert_int_equal(encrypt(key, NULL, NULL), KMS__STATUS__OK);
	assert_int_equal(harness_stop(&H), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(transient_faults_are_invisible, teardown),
		cmocka_unit_test_teardown(persistent_fault_fails_fast_and_recovers, teardown),
		cmocka_unit_test_teardown(unplugged_token_is_found_again, teardown),
		cmocka_unit_test_teardown(stand_in_token_is_refused, teardown),
		cmocka_unit_test_teardown(slow_hsm_requests_past_the_deadline_are_refused, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
