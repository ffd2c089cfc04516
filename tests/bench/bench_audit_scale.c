/*
 * bench_audit_scale: the audit log at scale (docs/benchmarks.md, "The audit
 * log at scale"). Grows one audit log through the audit module's own API
 * (kms/audit/audit.h) to each given size and measures, at each size and
 * over the same log when it was (nearly) empty:
 *
 *   - audit_open's time (start-up) in a fresh process, the process's
 *     resident memory before and after it (and its peak), the module's own
 *     accounting (audit_get_stats), the records it read, the background
 *     check's time, and the time of inclusion proofs of old entries (tile
 *     cache cold at the first) and of a consistency proof;
 *   - the growth: entries appended per second, the appending process's
 *     resident memory after it, the module's accounting;
 *   - with --kmsd, a real kmsd on the same data dir: from its spawn until
 *     it answers Health over ipc, its resident memory then and after its
 *     background check of the log has finished (BENCH_AUDIT_KMSD_STARTS
 *     starts at each size, default 3: the median one is reported);
 *   - with KMS_TEST_KMS_ADMIN set, `kms-admin audit verify` of the whole
 *     log at the end, timed: it must verify.
 *
 * BENCH_AUDIT_CHECK=1 (the ctest smoke, tests/bench/CMakeLists.txt) adds
 * bounds, never on time: the module's memory within AUDIT_MEMORY_MAX and
 * its hot entries within AUDIT_HOT_MAX at every measurement, start-up
 * reading under two tiles of records, resident memory (of the process that
 * opened the log, and of kmsd) growing less than 16 MiB from the nearly
 * empty log to the largest.
 *
 *   bench_audit_scale [--kmsd] SIZE...    (ascending; default 1000000 10000000)
 *
 * Run through scripts/bench-audit-scale (it makes the token and points
 * KMS_TEST_* at it). The log is $KMS_TEST_TOKEN_DIR/data/audit, kmsd's own
 * place for it, signed with the token's audit key, so kmsd and `kms-admin
 * audit verify` take it as it is. Entries are synthetic but well formed
 * (each one JSON object shaped as an Encrypt entry); they are appended with
 * [audit] sync off (no fdatasync per batch: the figures are the log's size,
 * not the disk's speed) by BENCH_AUDIT_THREADS appenders (default 64) so
 * that the writer commits them in batches. Each measurement runs in a
 * process of its own (this binary, re-executed), so that what one phase
 * allocated is not counted in the next.
 *
 * Bounded: at most BENCH_AUDIT_MAX_SIZE entries, every wait for kmsd
 * bounded (KMSD_READY_MS, KMSD_CHECK_MS). A benchmark, not a test: it exits
 * non-zero only when something fails.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "hsm/hsm.h"
#include "kms/audit/audit.h"
#include "kms/audit/audit_tree.h"
#include "kms/store/store.h"
#include "common/tlog/tlog_tiles.h"
#include "tests/support/harness.h"

#define BENCH_AUDIT_MAX_SIZE 100000000ull
#define BENCH_AUDIT_MAX_SIZES 8
#define BENCH_AUDIT_THREADS_MAX 256
#define BENCH_AUDIT_ORIGIN "kms.local/audit/in-mum" /* kmsd's default for the harness's region */
#define PROOFS 200
#define SCRUB_WAIT_MS 1800000u
#define KMSD_READY_MS 60000
#define KMSD_CHECK_MS 1800000
#define KMSD_POLL_MS 5
#define KMSD_STARTS_MAX 9
#define RESULT_MAX 1024
#define MB (1024.0 * 1024.0)

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static const char *env_or_die(const char *name)
{
	const char *v = getenv(name);
	if (!v || !v[0]) {
		fprintf(stderr, "bench_audit_scale: %s is not set: run it through "
		        "scripts/bench-audit-scale\n", name);
		exit(2);
	}
	return v;
}

/* A figure from /proc/<pid>/status ("VmRSS", "VmHWM"), in bytes; 0 if unknown. */
static uint64_t proc_kb(pid_t pid, const char *field)
{
	char path[64], line[256];
	if (pid)
		snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	else
		snprintf(path, sizeof path, "/proc/self/status");
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	uint64_t kb = 0;
	size_t n = strlen(field);
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, field, n) && line[n] == ':') {
			kb = strtoull(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return kb * 1024;
}

/* ---- The measuring children (one process each) ---- */

static hsm *open_hsm(void)
{
	hsm_config config = {
		.module_path = getenv("KMS_TEST_MODULE") ? getenv("KMS_TEST_MODULE")
		                                          : "/usr/lib/softhsm/libsofthsm2.so",
		.token_label = env_or_die("KMS_TEST_TOKEN_LABEL"),
		.pin_file = env_or_die("KMS_TEST_PIN_FILE"),
	};
	hsm *h = NULL;
	if (hsm_open(&config, &h) != KMS_OK) {
		fprintf(stderr, "bench_audit_scale: hsm_open: %s\n", kms_error_message());
		exit(1);
	}
	return h;
}

static audit_log *open_log(hsm *h, const char *dir)
{
	audit_config cfg = { .dir = dir, .origin = BENCH_AUDIT_ORIGIN, .hsm = h,
		             .checkpoint_ms = 600000, .sync = false };
	audit_log *log = NULL;
	if (audit_open(&cfg, &log) != KMS_OK) {
		fprintf(stderr, "bench_audit_scale: audit_open(%s): %s\n", dir, kms_error_message());
		exit(1);
	}
	return log;
}

/* Entry i: one JSON object shaped as kmsd's Encrypt entry (docs/audit-log.md,
 * section 1), 300 to 330 bytes. */
static size_t make_entry(uint64_t i, char *out, size_t cap)
{
	time_t t = (time_t)(1796515200ull + i / 1000); /* 2026-12-06, 1,000 entries a second */
	struct tm tm;
	gmtime_r(&t, &tm);
	char when[32];
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	uint64_t k = (i * 0x9E3779B97F4A7C15ull) >> 8;
	int n = snprintf(out, cap,
	                 "{\"time\":\"%s.%06" PRIu64 "Z\",\"request_id\":\"bench-%" PRIu64 "\","
	                 "\"principal\":\"bench-app\",\"access_key_id\":\"\",\"source\":\"ipc uid=1000\","
	                 "\"operation\":\"encrypt\",\"key_id\":\"k-%016" PRIx64 "%016" PRIx64 "\","
	                 "\"key_version\":1,\"encryption_context\":{\"purpose\":\"bench\"},"
	                 "\"status\":\"OK\",\"error\":\"\",\"latency_us\":%" PRIu64 "}",
	                 when, (i % 1000) * 1000, i, k, k ^ (uint64_t)0x5bd1e995, 100 + i % 900);
	if (n <= 0 || (size_t)n >= cap) {
		fprintf(stderr, "bench_audit_scale: entry %" PRIu64 " does not fit\n", i);
		exit(1);
	}
	return (size_t)n;
}

typedef struct grower {
	audit_log *log;
	_Atomic uint64_t next;
	uint64_t target;
	_Atomic uint64_t failed;
} grower;

static void *append_main(void *arg)
{
	grower *g = arg;
	char entry[512];
	for (;;) {
		uint64_t i = atomic_fetch_add(&g->next, 1);
		if (i >= g->target)
			break;
		size_t len = make_entry(i, entry, sizeof entry);
		if (audit_append(g->log, entry, len) != KMS_OK) {
			if (atomic_fetch_add(&g->failed, 1) == 0)
				fprintf(stderr, "bench_audit_scale: append %" PRIu64 ": %s\n", i,
				        kms_error_message());
			break;
		}
	}
	return NULL;
}

static void print_stats(const char *prefix, audit_log *log)
{
	audit_stats s;
	audit_get_stats(log, &s);
	printf(" %stree_bytes=%" PRIu64 " %scache_bytes=%" PRIu64 " %scache_tiles=%" PRIu64
	       " %shot=%" PRIu64 " %stiles_read=%" PRIu64, prefix, s.tree_bytes, prefix,
	       s.cache_bytes, prefix, s.cache_tiles, prefix, s.hot_entries, prefix, s.tiles_read);
}

/* --grow DIR TARGET THREADS: appends entries size..TARGET-1. */
static int child_grow(const char *dir, uint64_t target, unsigned threads)
{
	hsm *h = open_hsm();
	audit_log *log = open_log(h, dir);
	grower g = { .log = log, .target = target };
	uint64_t from = audit_size(log);
	atomic_init(&g.next, from);
	atomic_init(&g.failed, 0);
	uint64_t rss_before = proc_kb(0, "VmRSS");
	pthread_t tid[BENCH_AUDIT_THREADS_MAX];
	unsigned started = 0;
	double t0 = now_ms();
	for (; started < threads; started++)
		if (pthread_create(&tid[started], NULL, append_main, &g) != 0)
			break;
	for (unsigned i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	double ms = now_ms() - t0;
	uint64_t rss_after = proc_kb(0, "VmRSS");
	printf("RESULT from=%" PRIu64 " to=%" PRIu64 " ms=%.0f rss_before=%" PRIu64
	       " rss_after=%" PRIu64 " peak=%" PRIu64 " failed=%" PRIu64, from, audit_size(log), ms,
	       rss_before, rss_after, proc_kb(0, "VmHWM"), (uint64_t)atomic_load(&g.failed));
	print_stats("", log);
	double c0 = now_ms();
	audit_close(log);
	printf(" close_ms=%.0f\n", now_ms() - c0);
	hsm_close(h);
	return atomic_load(&g.failed) || started == 0 ? 1 : 0;
}

/* PROOFS inclusion proofs of entries spread over the log (the first one
 * with a cold tile cache), each entry checked; their mean time in us. */
static double time_proofs(audit_log *log, uint64_t size, double *first_us)
{
	uint64_t x = 88172645463325252ull;
	double total = 0;
	for (unsigned p = 0; p < PROOFS; p++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		uint64_t index = x % size, tree_size = 0;
		uint8_t (*hashes)[AUDIT_HASH_LEN] = NULL;
		size_t n = 0, len = 0;
		char *entry = NULL, want[512];
		double t0 = now_ms();
		kms_status st = audit_inclusion_proof(log, index, &tree_size, &hashes, &n, &entry, &len);
		double us = (now_ms() - t0) * 1e3;
		size_t want_len = make_entry(index, want, sizeof want);
		/* kmsd's own entries (the --kmsd starts) sit between the bench's. */
		bool ours = st == KMS_OK && memmem(entry, len, "\"request_id\":\"bench-", 21);
		bool same = st == KMS_OK && (!ours || (len == want_len && !memcmp(entry, want, len)));
		free(hashes);
		free(entry);
		if (!same) {
			fprintf(stderr, "bench_audit_scale: inclusion proof of %" PRIu64 ": %s\n", index,
			        st == KMS_OK ? "another entry came back" : kms_error_message());
			exit(1);
		}
		if (p == 0)
			*first_us = us;
		total += us;
	}
	return total / PROOFS;
}

/* --open DIR: audit_open timed, memory before and after, the background
 * check, proofs. */
static int child_open(const char *dir)
{
	hsm *h = open_hsm();
	uint64_t rss_before = proc_kb(0, "VmRSS");
	double t0 = now_ms();
	audit_log *log = open_log(h, dir);
	double open_ms = now_ms() - t0;
	uint64_t rss_open = proc_kb(0, "VmRSS");
	audit_stats s;
	audit_get_stats(log, &s);
	uint64_t size = audit_size(log);
	printf("RESULT size=%" PRIu64 " open_ms=%.1f rss_before=%" PRIu64 " rss_open=%" PRIu64
	       " read=%" PRIu64 " resumed_at=%" PRIu64, size, open_ms, rss_before, rss_open,
	       s.open_scanned, s.resumed_at);
	print_stats("open_", log);
	double s0 = now_ms();
	bool checked = audit_scrub_wait(log, SCRUB_WAIT_MS);
	double scrub_ms = now_ms() - s0 + open_ms;
	audit_get_stats(log, &s);
	if (!checked || s.damaged || s.scrubbed != s.resumed_at) {
		fprintf(stderr, "bench_audit_scale: the background check %s\n",
		        s.damaged ? "found damage" : "did not finish");
		exit(1);
	}
	uint64_t rss_checked = proc_kb(0, "VmRSS");
	double first_us = 0, mean_us = size ? time_proofs(log, size, &first_us) : 0;
	double c0 = now_ms();
	uint8_t (*hashes)[AUDIT_HASH_LEN] = NULL;
	size_t n = 0;
	uint64_t new_size = 0;
	if (size > 1 && audit_consistency_proof(log, size / 2, &new_size, &hashes, &n) != KMS_OK) {
		fprintf(stderr, "bench_audit_scale: consistency proof: %s\n", kms_error_message());
		exit(1);
	}
	free(hashes);
	double consistency_us = (now_ms() - c0) * 1e3;
	char vkey[AUDIT_VERIFIER_KEY_MAX];
	audit_verifier_key(log, vkey);
	printf(" scrub_ms=%.0f rss_checked=%" PRIu64 " proof_first_us=%.0f proof_mean_us=%.1f"
	       " consistency_us=%.0f", scrub_ms, rss_checked, first_us, mean_us, consistency_us);
	print_stats("end_", log);
	printf(" peak=%" PRIu64 " vkey=%s\n", proc_kb(0, "VmHWM"), vkey);
	audit_close(log);
	hsm_close(h);
	return 0;
}

/* ---- The orchestrator ---- */

/* Runs this binary with args; its RESULT line into out. */
static bool run_child(const char *const *args, char out[static RESULT_MAX])
{
	/* This binary by its path, not "/proc/self/exe": under valgrind (scripts/
	 * valgrind) that is valgrind's launcher, while readlink gives ours. */
	char self[4096];
	ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
	int fds[2];
	if (len <= 0 || pipe(fds) != 0)
		return false;
	self[len] = '\0';
	pid_t pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		execv(self, (char *const *)args);
		_exit(127);
	}
	close(fds[1]);
	FILE *f = fdopen(fds[0], "r");
	char line[RESULT_MAX];
	out[0] = '\0';
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "RESULT ", 7))
			snprintf(out, RESULT_MAX, "%s", line + 7);
	if (f)
		fclose(f);
	int status = 0;
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fprintf(stderr, "bench_audit_scale: %s %s: %s %d\n", args[1], args[2],
		        WIFEXITED(status) ? "exit" : "signal",
		        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 && out[0];
}

/* key=NUMBER from a RESULT line; -1 if absent. */
static double field(const char *line, const char *key)
{
	char k[64];
	snprintf(k, sizeof k, " %s=", key);
	char padded[RESULT_MAX + 2];
	snprintf(padded, sizeof padded, " %s", line);
	const char *p = strstr(padded, k);
	return p ? strtod(p + strlen(k), NULL) : -1;
}

static bool field_text(const char *line, const char *key, char *out, size_t cap)
{
	char k[64];
	snprintf(k, sizeof k, "%s=", key);
	const char *p = strstr(line, k);
	if (!p)
		return false;
	p += strlen(k);
	size_t n = strcspn(p, " \n");
	if (n >= cap)
		return false;
	memcpy(out, p, n);
	out[n] = '\0';
	return true;
}

typedef struct kmsd_result {
	double ready_ms, check_ms;
	uint64_t rss_ready, rss_checked;
	double ready_min_ms, ready_max_ms; /* over the starts at one size */
	unsigned starts;
} kmsd_result;

/* kmsd on the data dir: spawned, then Health polled every KMSD_POLL_MS;
 * its log says when the background check is done. */
static bool run_kmsd(kmsd_result *r)
{
	harness h;
	memset(&h, 0, sizeof h);
	memset(r, 0, sizeof *r);
	/* The principal is made before the clock starts (harness_spawn finds it). */
	if (!harness_add_principal(&h, NULL, HARNESS_ADMIN, PRINCIPAL_ROLES_ALL))
		return false;
	uint8_t buf[256];
	Kms__HealthRequest health = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.schema_version = 1;
	req.request_id = "bench-ready";
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &health;
	size_t n = kms__request__pack(&req, buf);
	char log_path[700];
	snprintf(log_path, sizeof log_path, "%s/kmsd.log", getenv("KMS_TEST_TOKEN_DIR"));
	unlink(log_path); /* harness_log_contains then sees this start alone */
	double t0 = now_ms();
	if (!harness_spawn(&h, NULL))
		return false;
	bool ok = false;
	while (now_ms() - t0 < KMSD_READY_MS) {
		size_t len = 0;
		uint8_t *reply = harness_raw(h.ipc_url, buf, n, 200, &len);
		if (reply) {
			free(reply);
			ok = true;
			break;
		}
		int status;
		if (waitpid(h.pid, &status, WNOHANG) == h.pid) {
			fprintf(stderr, "bench_audit_scale: kmsd exited; see %s\n", h.log);
			h.pid = 0;
			return false;
		}
		sleep_ms(KMSD_POLL_MS);
	}
	r->ready_ms = now_ms() - t0;
	r->rss_ready = proc_kb(h.pid, "VmRSS");
	while (ok && !harness_log_contains(&h, "audit: checked the") &&
	       now_ms() - t0 < KMSD_CHECK_MS)
		sleep_ms(50);
	r->check_ms = now_ms() - t0;
	r->rss_checked = proc_kb(h.pid, "VmRSS");
	ok = ok && harness_log_contains(&h, "audit: checked the");
	if (!ok)
		fprintf(stderr, "bench_audit_scale: kmsd did not answer or finish its check; see %s\n",
		        h.log);
	return harness_stop(&h) == 0 && ok;
}

typedef struct row {
	uint64_t size;
	char open[RESULT_MAX];
	char grow[RESULT_MAX]; /* empty for the baseline */
	bool have_kmsd;
	kmsd_result kmsd;
} row;

static void print_growth(const row *rows, size_t n)
{
	printf("\n### Growing the log (appending process, %s appenders, sync off)\n\n",
	       getenv("BENCH_AUDIT_THREADS") ? getenv("BENCH_AUDIT_THREADS") : "64");
	printf("| from | to | seconds | entries/s | RSS after MB | module bytes (tree + cache) |\n");
	printf("|---:|---:|---:|---:|---:|---:|\n");
	for (size_t i = 0; i < n; i++) {
		const char *g = rows[i].grow;
		if (!g[0])
			continue;
		double from = field(g, "from"), to = field(g, "to"), ms = field(g, "ms");
		printf("| %.0f | %.0f | %.1f | %.0f | %.1f | %.0f + %.0f |\n", from, to, ms / 1e3,
		       ms > 0 ? (to - from) / (ms / 1e3) : 0, field(g, "rss_after") / MB,
		       field(g, "tree_bytes"), field(g, "cache_bytes"));
	}
}

static void print_open(const row *rows, size_t n)
{
	printf("\n### audit_open in a fresh process (start-up), then the background check and "
	       "proofs\n\n");
	printf("| entries | open ms | records read | RSS before open MB | RSS after open MB | "
	       "module bytes at open | check ms | RSS after check MB | proof us (first, mean) | "
	       "consistency us | module bytes after proofs | peak RSS MB |\n");
	printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
	for (size_t i = 0; i < n; i++) {
		const char *o = rows[i].open;
		printf("| %" PRIu64 " | %.1f | %.0f | %.1f | %.1f | %.0f + %.0f | %.0f | %.1f | "
		       "%.0f, %.1f | %.0f | %.0f + %.0f | %.1f |\n",
		       rows[i].size, field(o, "open_ms"), field(o, "read"), field(o, "rss_before") / MB,
		       field(o, "rss_open") / MB, field(o, "open_tree_bytes"),
		       field(o, "open_cache_bytes"), field(o, "scrub_ms"), field(o, "rss_checked") / MB,
		       field(o, "proof_first_us"), field(o, "proof_mean_us"),
		       field(o, "consistency_us"), field(o, "end_tree_bytes"),
		       field(o, "end_cache_bytes"), field(o, "peak") / MB);
	}
}

static void print_kmsd(const row *rows, size_t n)
{
	printf("\n### kmsd: spawn to Health answered over ipc, resident memory (median of %u "
	       "starts)\n\n", rows[0].kmsd.starts);
	printf("| entries | start-up ms | fastest, slowest ms | RSS at ready MB | check done ms | "
	       "RSS after check MB |\n");
	printf("|---:|---:|---:|---:|---:|---:|\n");
	for (size_t i = 0; i < n; i++)
		if (rows[i].have_kmsd)
			printf("| %" PRIu64 " | %.0f | %.0f, %.0f | %.1f | %.0f | %.1f |\n", rows[i].size,
			       rows[i].kmsd.ready_ms, rows[i].kmsd.ready_min_ms, rows[i].kmsd.ready_max_ms,
			       (double)rows[i].kmsd.rss_ready / MB,
			       rows[i].kmsd.check_ms, (double)rows[i].kmsd.rss_checked / MB);
}

/* The goals, between the two largest sizes (kmsd's figures when measured,
 * else the in-process ones). */
static void print_goals(const row *rows, size_t n)
{
	if (n < 3)
		return;
	const row *a = &rows[n - 2], *b = &rows[n - 1];
	printf("\n### Goals (%" PRIu64 " -> %" PRIu64 " entries)\n\n", a->size, b->size);
	if (a->have_kmsd && b->have_kmsd) {
		double growth = ((double)b->kmsd.rss_checked - (double)a->kmsd.rss_checked) / MB;
		printf("- kmsd RSS growth (after its check): %+.1f MB (goal < 50 MB): %s\n", growth,
		       growth < 50 ? "met" : "NOT met");
		printf("- kmsd start-up at %" PRIu64 " entries: %.0f ms (goal < 2000 ms): %s\n",
		       b->size, b->kmsd.ready_ms, b->kmsd.ready_ms < 2000 ? "met" : "NOT met");
	}
	double growth = (field(b->open, "rss_checked") - field(a->open, "rss_checked")) / MB;
	printf("- audit_open process RSS growth (after the check): %+.1f MB\n", growth);
	printf("- audit_open at %" PRIu64 " entries: %.1f ms (at %" PRIu64 ": %.1f ms; "
	       "at %" PRIu64 ": %.1f ms)\n", b->size, field(b->open, "open_ms"), a->size,
	       field(a->open, "open_ms"), rows[0].size, field(rows[0].open, "open_ms"));
}

static bool measure_open(const char *self, const char *dir, row *r)
{
	const char *args[] = { self, "--open", dir, NULL };
	if (!run_child(args, r->open)) {
		fprintf(stderr, "bench_audit_scale: measuring audit_open failed\n");
		return false;
	}
	r->size = (uint64_t)field(r->open, "size");
	fprintf(stderr, "bench_audit_scale: opened %" PRIu64 " entries in %.1f ms\n", r->size,
	        field(r->open, "open_ms"));
	return true;
}

static int cmp_result(const void *a, const void *b)
{
	double x = ((const kmsd_result *)a)->ready_ms, y = ((const kmsd_result *)b)->ready_ms;
	return (x > y) - (x < y);
}

/* KMSD_STARTS starts of kmsd (BENCH_AUDIT_KMSD_STARTS, default 3): the
 * median one is reported, with the fastest and slowest. */
static bool measure_kmsd(bool with_kmsd, row *r)
{
	if (!with_kmsd)
		return true;
	kmsd_result runs[KMSD_STARTS_MAX];
	unsigned n = getenv("BENCH_AUDIT_KMSD_STARTS")
	                     ? (unsigned)strtoul(getenv("BENCH_AUDIT_KMSD_STARTS"), NULL, 10) : 3;
	if (n < 1 || n > KMSD_STARTS_MAX)
		n = 3;
	for (unsigned i = 0; i < n; i++) {
		if (!run_kmsd(&runs[i]))
			return false;
		fprintf(stderr, "bench_audit_scale: kmsd answered in %.0f ms\n", runs[i].ready_ms);
	}
	qsort(runs, n, sizeof runs[0], cmp_result);
	r->kmsd = runs[n / 2];
	r->kmsd.ready_min_ms = runs[0].ready_ms;
	r->kmsd.ready_max_ms = runs[n - 1].ready_ms;
	r->kmsd.starts = n;
	r->have_kmsd = true;
	return true;
}

/* `kms-admin audit verify` of the whole log (KMS_TEST_KMS_ADMIN), timed;
 * its "tree size" must be at least size. */
static bool verify_log(const char *dir, const char *vkey, uint64_t size)
{
	const char *bin = getenv("KMS_TEST_KMS_ADMIN");
	if (!bin)
		return true;
	char pub[900], cmd[2048];
	snprintf(pub, sizeof pub, "%s/public", dir);
	snprintf(cmd, sizeof cmd, "'%s' audit verify '%s' --key '%s' 2>&1", bin, pub, vkey);
	double t0 = now_ms();
	FILE *f = popen(cmd, "r");
	if (!f)
		return false;
	char line[512];
	uint64_t tree_size = 0;
	printf("\n### kms-admin audit verify of the whole log\n\n");
	while (fgets(line, sizeof line, f)) {
		printf("    %s", line);
		if (!strncmp(line, "tree size:", 10))
			tree_size = strtoull(line + 10, NULL, 10);
	}
	int status = pclose(f);
	printf("\nverify took %.1f s\n", (now_ms() - t0) / 1e3);
	if (status != 0 || tree_size < size) {
		fprintf(stderr, "bench_audit_scale: kms-admin audit verify failed (exit %d, tree size "
		        "%" PRIu64 ", want at least %" PRIu64 ")\n", status, tree_size, size);
		return false;
	}
	return true;
}

/* One bound of the smoke (BENCH_AUDIT_CHECK=1); false, said on stderr, when broken. */
static bool bound(bool ok, const char *what, double got, double max)
{
	if (!ok)
		fprintf(stderr, "bench_audit_scale: check failed: %s is %.0f, more than %.0f\n", what,
		        got, max);
	return ok;
}

/* The smoke's checks, on every row: the module's memory within
 * AUDIT_MEMORY_MAX and its hot entries within AUDIT_HOT_MAX (at open,
 * after proofs, after growing), start-up reading less than two tiles of
 * records after a clean stop, and resident memory growing less than
 * CHECK_RSS_GROWTH from the first row to the last (the process that
 * opened the log, and kmsd). Never a time. */
#define CHECK_RSS_GROWTH (16.0 * MB)
static bool check_rows(const row *rows, size_t n)
{
	bool ok = true;
	for (size_t i = 0; i < n; i++) {
		const char *o = rows[i].open, *g = rows[i].grow;
		double open_mem = field(o, "open_tree_bytes") + field(o, "open_cache_bytes");
		double end_mem = field(o, "end_tree_bytes") + field(o, "end_cache_bytes");
		ok &= bound(open_mem <= AUDIT_MEMORY_MAX, "the module's memory at open", open_mem,
		            AUDIT_MEMORY_MAX);
		ok &= bound(end_mem <= AUDIT_MEMORY_MAX, "the module's memory after proofs", end_mem,
		            AUDIT_MEMORY_MAX);
		ok &= bound(field(o, "read") < 2.0 * TLOG_TILE_WIDTH, "records read at open",
		            field(o, "read"), 2.0 * TLOG_TILE_WIDTH);
		if (g[0]) {
			double grow_mem = field(g, "tree_bytes") + field(g, "cache_bytes");
			ok &= bound(grow_mem <= AUDIT_MEMORY_MAX, "the module's memory after growing",
			            grow_mem, AUDIT_MEMORY_MAX);
			ok &= bound(field(g, "hot") <= AUDIT_HOT_MAX, "hot entries after growing",
			            field(g, "hot"), AUDIT_HOT_MAX);
		}
	}
#if defined(__SANITIZE_ADDRESS__)
	/* Freed memory waits in AddressSanitizer's quarantine and counts as
	 * resident: the module's accounting above is the bound there. */
	fprintf(stderr, "bench_audit_scale: resident memory not checked under AddressSanitizer\n");
	return ok;
#endif
	double open_growth = field(rows[n - 1].open, "rss_checked") - field(rows[0].open, "rss_checked");
	ok &= bound(open_growth < CHECK_RSS_GROWTH, "audit_open's process RSS growth", open_growth,
	            CHECK_RSS_GROWTH);
	/* Under valgrind (scripts/valgrind) kmsd's resident memory is mostly
	 * the tool's own (shadow memory, its freed-block queue). */
	if (rows[0].have_kmsd && rows[n - 1].have_kmsd && getenv("KMS_TEST_KMSD_WRAPPER")) {
		fprintf(stderr, "bench_audit_scale: kmsd's resident memory not checked under "
		        "valgrind\n");
	} else if (rows[0].have_kmsd && rows[n - 1].have_kmsd) {
		double kmsd_growth = (double)rows[n - 1].kmsd.rss_checked - (double)rows[0].kmsd.rss_checked;
		ok &= bound(kmsd_growth < CHECK_RSS_GROWTH, "kmsd's RSS growth", kmsd_growth,
		            CHECK_RSS_GROWTH);
	}
	return ok;
}

static int orchestrate(const char *self, bool with_kmsd, const uint64_t *sizes, size_t n_sizes)
{
	const char *token_dir = env_or_die("KMS_TEST_TOKEN_DIR");
	if (with_kmsd)
		(void)env_or_die("KMS_TEST_KMSD");
	char data[700], dir[800], threads[16];
	snprintf(data, sizeof data, "%s/data", token_dir);
	snprintf(dir, sizeof dir, "%s/audit", data);
	if (mkdir(data, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "bench_audit_scale: mkdir %s: %s\n", data, strerror(errno));
		return 1;
	}
	snprintf(threads, sizeof threads, "%s",
	         getenv("BENCH_AUDIT_THREADS") ? getenv("BENCH_AUDIT_THREADS") : "64");
	row rows[BENCH_AUDIT_MAX_SIZES + 1];
	memset(rows, 0, sizeof rows);
	/* The baseline: the log as kmsd leaves it after its first start. */
	if (with_kmsd && !measure_kmsd(true, &rows[0]))
		return 1;
	if (!measure_open(self, dir, &rows[0]))
		return 1;
	for (size_t i = 0; i < n_sizes; i++) {
		row *r = &rows[i + 1];
		char target[32];
		snprintf(target, sizeof target, "%" PRIu64, sizes[i]);
		const char *args[] = { self, "--grow", dir, target, threads, NULL };
		double t0 = now_ms();
		if (!run_child(args, r->grow)) {
			fprintf(stderr, "bench_audit_scale: growing the log to %s failed (%s)\n", target,
			        r->grow[0] ? r->grow : "no result line");
			return 1;
		}
		fprintf(stderr, "bench_audit_scale: grew to %s in %.0f s\n", target,
		        (now_ms() - t0) / 1e3);
		/* The growth leaves gigabytes of dirty pages (sync off): written back
		 * now, so that no start-up below waits behind them in an fsync. */
		sync();
		if (!measure_open(self, dir, r) || !measure_kmsd(with_kmsd, r))
			return 1;
	}
	char vkey[AUDIT_VERIFIER_KEY_MAX];
	if (!field_text(rows[n_sizes].open, "vkey", vkey, sizeof vkey)) {
		fprintf(stderr, "bench_audit_scale: no verifier key\n");
		return 1;
	}
	printf("verifier key: %s\nlog: %s\n", vkey, dir);
	print_growth(rows, n_sizes + 1);
	print_open(rows, n_sizes + 1);
	if (with_kmsd)
		print_kmsd(rows, n_sizes + 1);
	print_goals(rows, n_sizes + 1);
	if (!verify_log(dir, vkey, sizes[n_sizes - 1]))
		return 1;
	const char *check = getenv("BENCH_AUDIT_CHECK");
	if (check && !strcmp(check, "1") && !check_rows(rows, n_sizes + 1))
		return 1;
	return 0;
}

static bool parse_size(const char *text, uint64_t *out)
{
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	if (errno || end == text || *end || v == 0 || v > BENCH_AUDIT_MAX_SIZE)
		return false;
	*out = v;
	return true;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc == 3 && !strcmp(argv[1], "--open"))
		return child_open(argv[2]);
	if (argc == 5 && !strcmp(argv[1], "--grow")) {
		uint64_t target = 0;
		unsigned long threads = strtoul(argv[4], NULL, 10);
		if (!parse_size(argv[3], &target) || threads < 1 || threads > BENCH_AUDIT_THREADS_MAX)
			return 2;
		return child_grow(argv[2], target, (unsigned)threads);
	}
	bool with_kmsd = false;
	uint64_t sizes[BENCH_AUDIT_MAX_SIZES];
	size_t n = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--kmsd")) {
			with_kmsd = true;
			continue;
		}
		if (n == BENCH_AUDIT_MAX_SIZES || !parse_size(argv[i], &sizes[n]) ||
		    (n && sizes[n] <= sizes[n - 1])) {
			fprintf(stderr, "usage: bench_audit_scale [--kmsd] SIZE... (ascending, at most "
			        "%d, each 1 to %llu entries)\n", BENCH_AUDIT_MAX_SIZES,
			        BENCH_AUDIT_MAX_SIZE);
			return 2;
		}
		n++;
	}
	if (n == 0) {
		sizes[n++] = 1000000;
		sizes[n++] = 10000000;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	return orchestrate(argv[0], with_kmsd, sizes, n);
}
