/*
 * test_audit_crash: the audit log survives crashes (kms/audit/audit.h, "torn
 * tail"), against a real kmsd on a real SoftHSM token.
 *
 * (a) kill9_under_load: 10 times, three clients send Encrypt requests with
 *     unique ids and note each id answered OK; kmsd gets SIGKILL 20..300 ms
 *     into the load and is restarted. Afterwards the published log verifies
 *     (and extends every checkpoint published before each crash), log.bin
 *     holds exactly the published entries, every acknowledged id is in the
 *     log exactly once, and no id is in it twice.
 * (b) torn_tails_are_cut: with kmsd stopped, log.bin gets a torn tail
 *     (garbage; a record cut short; a whole record with a wrong hash; one
 *     byte); on restart kmsd says it cut it, and the log verifies with the
 *     checkpoint from before as `since` (nothing earlier changed) and goes
 *     on growing.
 *
 * KMS_TEST_SEED=N replays (a)'s random delays.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/audit_check.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"

#define KILL9_ITERATIONS 10
#define KILL9_MIN_ITERATIONS 5
#define KILL9_CLIENTS 3
#define KILL9_DELAY_MIN_MS 20
#define KILL9_DELAY_MAX_MS 300
#define KILL9_REQUESTS_MAX 3000     /* per client per iteration */
#define KILL9_BUDGET_MS 120000      /* no optional iteration starts after this */
#define CLIENT_SEND_MS 2000
#define CLIENT_RECV_MS 5000
#define ID_MAX 48
#define LOAD_START_MS 10000         /* for the first answer of an iteration */
#define CHECKPOINT_NOTE_MAX 4096

static const char *const CONFIG = "[audit]\ncheckpoint_ms = 50\n";

static harness H;
static char *g_before_crash[KILL9_ITERATIONS]; /* checkpoints published before each kill */

typedef struct ledger {
	pthread_mutex_t lock;
	char (*ids)[ID_MAX];
	size_t n, cap;
	atomic_uint acked;
} ledger;

static ledger g_acked = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int teardown(void **state)
{
	(void)state;
	if (H.pid > 0)
		harness_kill9(&H);
	for (unsigned i = 0; i < KILL9_ITERATIONS; i++) {
		free(g_before_crash[i]);
		g_before_crash[i] = NULL;
	}
	free(g_acked.ids);
	g_acked.ids = NULL;
	g_acked.n = g_acked.cap = 0;
	return 0;
}

static void start(void)
{
	harness_options o = { .extra_config = CONFIG };
	if (!harness_start(&H, &o))
		fail_msg("kmsd did not start; see %s", H.log);
}

static void stop_clean(void)
{
	int code = harness_stop(&H);
	if (code != 0)
		fail_msg("kmsd exit code %d after SIGTERM; see %s", code, H.log);
}

static void log_bin_path(char *out, size_t cap)
{
	char dir[700];
	audit_dir(&H, NULL, dir, sizeof dir);
	snprintf(out, cap, "%s/log.bin", dir);
}

/* Parses log.bin strictly (length, entry, leaf hash) and returns the
 * number of records; fails the test on a torn or bad record. */
static uint64_t log_bin_records(void)
{
	char path[800];
	log_bin_path(path, sizeof path);
	size_t len;
	char *bytes = harness_read_file(path, &len);
	assert_non_null(bytes);
	const uint8_t *p = (const uint8_t *)bytes;
	size_t off = 0;
	uint64_t n = 0;
	while (off < len) {
		if (len - off < 2)
			fail_msg("log.bin: %zu stray bytes at %zu", len - off, off);
		size_t entry = ((size_t)p[off] << 8) | p[off + 1];
		if (entry == 0 || len - off - 2 < entry + TLOG_HASH_SIZE)
			fail_msg("log.bin: record %llu at %zu is cut short", (unsigned long long)n, off);
		uint8_t hash[TLOG_HASH_SIZE];
		assert_int_equal(tlog_leaf_hash(p + off + 2, entry, hash), KMS_OK);
		if (memcmp(hash, p + off + 2 + entry, TLOG_HASH_SIZE) != 0)
			fail_msg("log.bin: record %llu has a wrong hash", (unsigned long long)n);
		off += 2 + entry + TLOG_HASH_SIZE;
		n++;
	}
	free(bytes);
	return n;
}

/* The published checkpoint file, or NULL. */
static char *published_checkpoint(void)
{
	char pub[700], path[800];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	snprintf(path, sizeof path, "%s/checkpoint", pub);
	return harness_read_file(path, NULL);
}

/* ---- (a) kill -9 under load ---- */

static void ledger_add(ledger *l, const char *id)
{
	pthread_mutex_lock(&l->lock);
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 1024;
		char (*grown)[ID_MAX] = realloc(l->ids, cap * sizeof *grown);
		if (!grown)
			abort();
		l->ids = grown;
		l->cap = cap;
	}
	snprintf(l->ids[l->n++], ID_MAX, "%s", id);
	pthread_mutex_unlock(&l->lock);
	atomic_fetch_add(&l->acked, 1);
}

typedef struct client {
	unsigned iteration, index;
	const char *key;
	atomic_bool *killing;
	unsigned sent, acked;
	char failure[256];
} client;

static void *client_main(void *arg)
{
	client *c = arg;
	nng_socket s;
	if (!e2e_socket(&H, CLIENT_SEND_MS, CLIENT_RECV_MS, &s)) {
		snprintf(c->failure, sizeof c->failure, "client %u: cannot dial", c->index);
		return NULL;
	}
	uint8_t plaintext[32] = "kill9-under-load";
	for (unsigned i = 0; i < KILL9_REQUESTS_MAX && !atomic_load(c->killing); i++) {
		char id[ID_MAX];
		snprintf(id, sizeof id, "k9-%u-%u-%u", c->iteration, c->index, i);
		c->sent++;
		Kms__Response *r = e2e_encrypt_on(s, id, c->key, plaintext, sizeof plaintext);
		if (r && r->status == KMS__STATUS__OK) {
			if (strcmp(r->request_id, id) != 0)
				snprintf(c->failure, sizeof c->failure, "%s answered as %s", id,
				         r->request_id);
			else {
				ledger_add(&g_acked, id);
				c->acked++;
			}
		} else if (!atomic_load(c->killing)) {
			/* Before the kill every request must succeed. */
			snprintf(c->failure, sizeof c->failure, "%s: %s", id,
			         r ? r->message : "no answer");
		}
		if (r)
			kms__response__free_unpacked(r, NULL);
		if (c->failure[0] || !r)
			break;
	}
	(void)kms_nng_close_bounded(s, TEST_CLOSE_WAIT_MS);
	return NULL;
}

static int id_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void kill9_under_load(void **state)
{
	(void)state;
	unsigned seed;
	const char *env = getenv("KMS_TEST_SEED");
	if (env)
		seed = (unsigned)strtoul(env, NULL, 10);
	else if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
		seed = (unsigned)time(NULL);
	fprintf(stderr, "kill9_under_load: KMS_TEST_SEED=%u\n", seed);
	srand(seed);

	start();
	char key[35];
	assert_true(harness_create_key(&H, NULL, key));
	audit_cp first;
	audit_get_checkpoint(&H, &first);
	char vkey[AUDIT_VKEY_MAX];
	snprintf(vkey, sizeof vkey, "%s", first.vkey);
	audit_cp_free(&first);

	unsigned iterations = 0, torn = 0;
	uint64_t began = e2e_now_ms();
	for (unsigned it = 0; it < KILL9_ITERATIONS; it++) {
		if (it > 0) {
			/* The budget only cuts the iterations past the minimum,
			 * so a slow machine takes longer instead of failing. */
			if (it >= KILL9_MIN_ITERATIONS && e2e_now_ms() - began > KILL9_BUDGET_MS)
				break;
			size_t log_at = e2e_log_size(&H);
			start();
			if (e2e_log_contains_since(&H, log_at, "audit: cut a torn record"))
				torn++;
		}
		atomic_bool killing = false;
		client clients[KILL9_CLIENTS];
		pthread_t threads[KILL9_CLIENTS];
		for (unsigned c = 0; c < KILL9_CLIENTS; c++) {
			clients[c] = (client){ .iteration = it, .index = c, .key = key,
				               .killing = &killing };
			assert_int_equal(pthread_create(&threads[c], NULL, client_main, &clients[c]), 0);
		}
		/* The load has begun when the first answer arrives (dialling takes
		 * a while under ASan); the kill lands 20..300 ms after that. */
		int delay = KILL9_DELAY_MIN_MS + rand() % (KILL9_DELAY_MAX_MS - KILL9_DELAY_MIN_MS + 1);
		unsigned acked_before = atomic_load(&g_acked.acked);
		uint64_t wait_until = e2e_now_ms() + LOAD_START_MS;
		while (atomic_load(&g_acked.acked) == acked_before && e2e_now_ms() < wait_until)
			e2e_sleep_ms(1);
		e2e_sleep_ms(delay);
		atomic_store(&killing, true);
		harness_kill9(&H);
		unsigned acked = 0;
		for (unsigned c = 0; c < KILL9_CLIENTS; c++) {
			pthread_join(threads[c], NULL);
			if (clients[c].failure[0])
				fail_msg("iteration %u (seed %u): %s", it, seed, clients[c].failure);
			acked += clients[c].acked;
		}
		if (acked == 0)
			fail_msg("iteration %u (seed %u): no request was answered (delay %d ms)", it, seed,
			         delay);
		g_before_crash[it] = published_checkpoint();
		assert_non_null(g_before_crash[it]);
		iterations++;
	}
	fprintf(stderr, "kill9_under_load: %u iterations, %zu acknowledged, %u torn tails cut\n",
	        iterations, g_acked.n, torn);
	assert_true(iterations >= KILL9_MIN_ITERATIONS);

	start();
	stop_clean();

	char pub[700];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	audit_entries e;
	audit_load(pub, vkey, NULL, &e);
	assert_int_equal(log_bin_records(), e.n);
	/* Every checkpoint published before a crash is a prefix of the log. */
	for (unsigned it = 0; it < iterations; it++) {
		tlog_verify_report report;
		if (tlog_verify_dir(pub, vkey, g_before_crash[it], NULL, NULL, &report) != KMS_OK)
			fail_msg("the checkpoint published before crash %u: %s", it, report.failure);
		assert_true(report.since_checked);
	}

	/* Ids in the log, sorted: none twice, and every acknowledged one. */
	const char **ids = malloc((e.n + 1) * sizeof *ids);
	size_t n_ids = 0;
	for (uint64_t i = 0; i < e.n; i++) {
		const char *id = audit_str(e.items[i], "request_id");
		if (strncmp(id, "k9-", 3) == 0) {
			assert_string_equal(audit_str(e.items[i], "operation"), "encrypt");
			ids[n_ids++] = id;
		}
	}
	qsort(ids, n_ids, sizeof *ids, id_cmp);
	for (size_t i = 1; i < n_ids; i++)
		if (!strcmp(ids[i - 1], ids[i]))
			fail_msg("request %s is in the log twice", ids[i]);
	for (size_t i = 0; i < g_acked.n; i++) {
		const char *want = g_acked.ids[i];
		const char **found = bsearch(&want, ids, n_ids, sizeof *ids, id_cmp);
		if (!found)
			fail_msg("request %s was answered OK but is not in the log (seed %u)", want, seed);
		json_t *entry;
		assert_int_equal(audit_count_id(&e, want, &entry), 1);
		assert_string_equal(audit_str(entry, "status"), "OK");
	}
	assert_true(n_ids >= g_acked.n);
	free(ids);
	audit_entries_free(&e);
}

/* ---- (b) torn tails ---- */

static void append_bytes(const void *bytes, size_t len)
{
	char path[800];
	log_bin_path(path, sizeof path);
	int fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, bytes, len), (ssize_t)len);
	assert_int_equal(fsync(fd), 0);
	close(fd);
}

/* Appends tail to a stopped log, restarts, checks the cut and that nothing
 * before it changed, and that the log grows on. */
static void torn_case(const char *name, const void *tail, size_t tail_len, const char *vkey)
{
	uint64_t records = log_bin_records();
	char path[800];
	log_bin_path(path, sizeof path);
	size_t size;
	char *old_bytes = harness_read_file(path, &size);
	assert_non_null(old_bytes);
	char *before = published_checkpoint();
	assert_non_null(before);
	append_bytes(tail, tail_len);

	size_t log_at = e2e_log_size(&H);
	start();
	char said[200];
	snprintf(said, sizeof said, "%zu bytes after entry %llu were never acknowledged", tail_len,
	         (unsigned long long)records);
	if (!e2e_log_contains_since(&H, log_at, "audit: cut a torn record") ||
	    !e2e_log_contains_since(&H, log_at, said))
		fail_msg("%s: kmsd did not say it cut the torn tail (\"%s\"); see %s", name, said, H.log);
	/* Cut back to exactly what was there; what follows are whole records
	 * (the readiness probe's) again. */
	size_t new_size;
	char *new_bytes = harness_read_file(path, &new_size);
	assert_non_null(new_bytes);
	assert_true(new_size > size);
	assert_memory_equal(new_bytes, old_bytes, size);
	free(new_bytes);
	free(old_bytes);
	log_bin_records();

	char id[64];
	snprintf(id, sizeof id, "torn-after-%s", name);
	Kms__HealthRequest hr = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.request_id = id;
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &hr;
	Kms__Response *r = harness_call(&H, &req);
	assert_non_null(r);
	assert_int_equal(r->status, KMS__STATUS__OK);
	kms__response__free_unpacked(r, NULL);
	stop_clean();

	char pub[700];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	audit_entries e;
	audit_load(pub, vkey, before, &e);
	assert_true(e.report.since_checked);
	assert_int_equal(e.report.since_size, records);
	assert_int_equal(log_bin_records(), e.n);
	assert_true(e.n >= records + 2); /* the readiness probe and ours */
	json_t *entry;
	assert_int_equal(audit_count_id(&e, id, &entry), 1);
	assert_string_equal(audit_str(entry, "operation"), "health");
	audit_entries_free(&e);
	free(before);
}

static void torn_tails_are_cut(void **state)
{
	(void)state;
	start();
	char key[35];
	assert_true(harness_create_key(&H, NULL, key));
	for (int i = 0; i < 5; i++) {
		char id[32];
		snprintf(id, sizeof id, "torn-before-%d", i);
		nng_socket s;
		assert_true(e2e_socket(&H, 2000, 5000, &s));
		Kms__Response *r = e2e_encrypt_on(s, id, key, (const uint8_t *)"torn", 4);
		assert_non_null(r);
		assert_int_equal(r->status, KMS__STATUS__OK);
		kms__response__free_unpacked(r, NULL);
		(void)kms_nng_close_bounded(s, TEST_CLOSE_WAIT_MS);
	}
	audit_cp cp;
	audit_get_checkpoint(&H, &cp);
	stop_clean();

	static const uint8_t garbage[] = { 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03 };
	torn_case("garbage", garbage, sizeof garbage, cp.vkey);

	/* A record that looks right but stops short: its length says 200,
	 * 120 bytes of an entry follow. */
	uint8_t cut[2 + 120];
	const char *json = "{\"time\":\"2026-01-01T00:00:00.000000Z\",\"request_id\":\"never-acked\","
	                   "\"principal\":\"test-admin\",\"source\":\"ipc uid=0\",\"operation\":\"encrypt\"";
	cut[0] = 0;
	cut[1] = 200;
	memcpy(cut + 2, json, 120);
	torn_case("cut-short", cut, sizeof cut, cp.vkey);

	/* A whole record whose leaf hash is wrong. */
	const char *entry = "{\"request_id\":\"never-acked-2\",\"status\":\"OK\"}";
	size_t entry_len = strlen(entry);
	uint8_t whole[2 + 64 + TLOG_HASH_SIZE];
	whole[0] = 0;
	whole[1] = (uint8_t)entry_len;
	memcpy(whole + 2, entry, entry_len);
	assert_int_equal(tlog_leaf_hash((const uint8_t *)entry, entry_len, whole + 2 + entry_len),
	                 KMS_OK);
	whole[2 + entry_len + 5] ^= 0x40;
	torn_case("bad-hash", whole, 2 + entry_len + TLOG_HASH_SIZE, cp.vkey);

	static const uint8_t one[] = { 0x00 };
	torn_case("one-byte", one, sizeof one, cp.vkey);
	audit_cp_free(&cp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(kill9_under_load, teardown),
		cmocka_unit_test_teardown(torn_tails_are_cut, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
