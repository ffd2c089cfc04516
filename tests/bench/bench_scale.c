/*
 * bench_scale: kmsd with many keys (docs/benchmarks.md, "Keys at scale").
 *
 *   bench_scale [keys...]          (default: 1000 100000 1000000, ascending)
 *
 * Run under tests/support/with-token (scripts/bench-scale does). One data
 * dir grows through the sizes: for each, kmsd is stopped, the keys are
 * created in the keyring's batch form (keyring_create_keys_batch, 5,000
 * wrapped keys a transaction), then kmsd is started and measured:
 *
 * - start-up: spawn until Health answers, and RSS right after;
 * - cold: Encrypt (32 bytes, 1 in flight) under BENCH_DRAW keys drawn
 *   uniformly, without repeats, from every key so far, just after the
 *   start, so each is a first use (metadata from the store, one unwrap);
 * - warm: the same keys again, 1 and 16 in flight;
 * - beside them, in the same run: one hsm-resident (token-object) key and
 *   one wrapped key, warm, 1 and 16 in flight: the baseline;
 * - RSS after the load.
 *
 * Every request must succeed (exit 1 otherwise): speed is printed, never
 * asserted. Bounded: BENCH_DRAW requests (default 2000) per pass, each
 * pass at most BENCH_MAX_SECONDS (default 60).
 */
#include <stddef.h>
#include <stdint.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "hsm/hsm.h"
#include "kms/keys/keyring.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"

#define BATCH 5000
#define SIZES_MAX 8
#define THREADS_MAX 16
#define PLAINTEXT_LEN 32

#define BENCH_CONFIG                                                                       \
	"[listen]\nipc_max_connections = 512\nipc_max_connections_per_uid = 512\n"

static harness H;
static char (*ids)[KMS_KEYID_TEXT_SIZE];
static size_t n_ids;
static size_t draw = 2000;
static double max_seconds = 60;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static _Noreturn void die(const char *what)
{
	fprintf(stderr, "bench_scale: %s\n", what);
	if (H.pid > 0)
		harness_kill9(&H);
	exit(1);
}

static long rss_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long kib = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

static double start_kmsd(void)
{
	harness_options o = { .extra_config = BENCH_CONFIG };
	double t0 = now_s();
	if (!harness_start(&H, &o))
		die("kmsd did not start (see its log under the token folder)");
	return (now_s() - t0) * 1000;
}

static void stop_kmsd(void)
{
	if (harness_stop(&H) != 0)
		die("kmsd did not stop cleanly");
}

/* kmsd stopped: grows the key set to target through the keyring's batch. */
static double create_keys(size_t target)
{
	hsm_config hc = { .module_path = getenv("KMS_TEST_MODULE"),
	                  .token_label = getenv("KMS_TEST_TOKEN_LABEL"),
	                  .pin_file = getenv("KMS_TEST_PIN_FILE") };
	hsm *h = NULL;
	keyring *kr = NULL;
	char dir[700];
	snprintf(dir, sizeof dir, "%s/data", H.dir);
	keyring_config kc = { .region = H.region };
	if (hsm_open(&hc, &h) != KMS_OK || keyring_open(h, dir, &kc, &kr) != KMS_OK) {
		fprintf(stderr, "bench_scale: %s\n", kms_error_message());
		die("cannot open the keyring");
	}
	char (*grown)[KMS_KEYID_TEXT_SIZE] = realloc(ids, target * sizeof *ids);
	if (!grown)
		die("out of memory for key ids");
	ids = grown;
	keyring_create_args args = { .description = "bench_scale" };
	double t0 = now_s();
	size_t made = 0;
	while (n_ids < target) {
		size_t n = target - n_ids < BATCH ? target - n_ids : BATCH;
		if (keyring_create_keys_batch(kr, &args, n, time(NULL), ids + n_ids) != KMS_OK) {
			fprintf(stderr, "bench_scale: %s\n", kms_error_message());
			die("batch create failed");
		}
		n_ids += n;
		made += n;
	}
	double secs = now_s() - t0;
	keyring_close(kr);
	hsm_close(h);
	return made ? made / secs : 0;
}

/* ---- load ---- */

typedef struct pass {
	const char *const *keys; /* one per request */
	size_t n;
	atomic_size_t next;
	double *lat_us;           /* per request */
	atomic_size_t done;
	atomic_uint failures;
	double deadline;
} pass;

static atomic_uint request_seq;

static void *worker(void *arg)
{
	pass *p = arg;
	nng_socket s;
	static const uint8_t plaintext[PLAINTEXT_LEN] = "32 bytes of bench plaintext....";
	if (!e2e_socket(&H, 10000, 10000, &s)) {
		atomic_fetch_add(&p->failures, 1);
		return NULL;
	}
	for (;;) {
		size_t i = atomic_fetch_add(&p->next, 1);
		if (i >= p->n || now_s() > p->deadline)
			break;
		char rid[32];
		snprintf(rid, sizeof rid, "scale-%u", atomic_fetch_add(&request_seq, 1));
		double t0 = now_s();
		Kms__Response *r = e2e_encrypt_on(s, rid, p->keys[i], plaintext, sizeof plaintext);
		p->lat_us[i] = (now_s() - t0) * 1e6;
		if (!r || r->status != KMS__STATUS__OK) {
			if (atomic_fetch_add(&p->failures, 1) == 0)
				fprintf(stderr, "bench_scale: Encrypt %s: %s\n", p->keys[i],
				        r ? r->message : "no reply");
		} else {
			atomic_fetch_add(&p->done, 1);
		}
		if (r)
			kms__response__free_unpacked(r, NULL);
	}
	(void)kms_nng_close_bounded(s, TEST_CLOSE_WAIT_MS);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

typedef struct result {
	double ops_s, p50_us, p99_us;
	size_t ops;
} result;

static result run(const char *const *keys, size_t n, unsigned threads)
{
	pass p = { .keys = keys, .n = n, .deadline = now_s() + max_seconds };
	p.lat_us = calloc(n, sizeof *p.lat_us);
	if (!p.lat_us)
		die("out of memory");
	pthread_t t[THREADS_MAX];
	double t0 = now_s();
	for (unsigned i = 0; i < threads; i++)
		if (pthread_create(&t[i], NULL, worker, &p) != 0)
			die("pthread_create");
	for (unsigned i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	double secs = now_s() - t0;
	if (atomic_load(&p.failures))
		die("a request failed (above)");
	result r = { .ops = atomic_load(&p.done) };
	r.ops_s = r.ops / secs;
	qsort(p.lat_us, r.ops, sizeof *p.lat_us, cmp_double);
	r.p50_us = r.ops ? p.lat_us[r.ops / 2] : 0;
	r.p99_us = r.ops ? p.lat_us[(size_t)(r.ops * 0.99)] : 0;
	free(p.lat_us);
	return r;
}

static void row(const char *keys, const char *what, unsigned inflight, result r)
{
	printf("| %-9s | %-34s | %2u | %8.0f | %8.0f | %8.0f | %6zu |\n", keys, what, inflight,
	       r.ops_s, r.p50_us, r.p99_us, r.ops);
	fflush(stdout);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* draw distinct keys uniformly from ids[0..n_ids) (partial Fisher-Yates on
 * an index array). */
static const char **draw_keys(size_t count)
{
	const char **out = calloc(count, sizeof *out);
	size_t *idx = malloc(n_ids * sizeof *idx);
	if (!out || !idx)
		die("out of memory");
	for (size_t i = 0; i < n_ids; i++)
		idx[i] = i;
	for (size_t i = 0; i < count; i++) {
		size_t j = i + next_rand() % (n_ids - i);
		size_t tmp = idx[i];
		idx[i] = idx[j];
		idx[j] = tmp;
		out[i] = ids[idx[i]];
	}
	free(idx);
	return out;
}

static void baseline(const char *label, const char *wrapped_key, const char *resident_key)
{
	const char **same = calloc(draw, sizeof *same);
	if (!same)
		die("out of memory");
	for (size_t i = 0; i < draw; i++)
		same[i] = resident_key;
	(void)run(same, 50, 1); /* warm it */
	row(label, "one token-object key (baseline)", 1, run(same, draw, 1));
	row(label, "one token-object key (baseline)", 16, run(same, draw, 16));
	for (size_t i = 0; i < draw; i++)
		same[i] = wrapped_key;
	(void)run(same, 50, 1);
	row(label, "one wrapped key", 1, run(same, draw, 1));
	row(label, "one wrapped key", 16, run(same, draw, 16));
	free(same);
}

static void create_one(Kms__KeyProtection p, char out[E2E_KEY_ID_SIZE])
{
	Kms__Response *r = e2e_create_key_as(&H, p);
	if (!r || r->status != KMS__STATUS__OK)
		die("CreateKey failed");
	snprintf(out, E2E_KEY_ID_SIZE, "%s", r->create_key->key_metadata->key_id);
	kms__response__free_unpacked(r, NULL);
}

int main(int argc, char **argv)
{
	size_t sizes[SIZES_MAX], n_sizes = 0;
	for (int i = 1; i < argc && n_sizes < SIZES_MAX; i++) {
		char *end;
		unsigned long long v = strtoull(argv[i], &end, 10);
		if (*end || v < 1 || v > 10000000 || (n_sizes && v <= sizes[n_sizes - 1])) {
			fprintf(stderr, "usage: bench_scale [keys...] (ascending, 1..10000000)\n");
			return 2;
		}
		sizes[n_sizes++] = (size_t)v;
	}
	if (!n_sizes) {
		sizes[0] = 1000;
		sizes[1] = 100000;
		sizes[2] = 1000000;
		n_sizes = 3;
	}
	if (getenv("BENCH_DRAW"))
		draw = strtoull(getenv("BENCH_DRAW"), NULL, 10);
	if (getenv("BENCH_MAX_SECONDS"))
		max_seconds = strtod(getenv("BENCH_MAX_SECONDS"), NULL);
	if (draw < 10 || draw > 1000000 || !(max_seconds > 0))
		die("BENCH_DRAW must be 10..1000000 and BENCH_MAX_SECONDS > 0");

	char wrapped_key[E2E_KEY_ID_SIZE], resident_key[E2E_KEY_ID_SIZE];
	start_kmsd();
	create_one(KMS__KEY_PROTECTION__WRAPPED, wrapped_key);
	create_one(KMS__KEY_PROTECTION__HSM_RESIDENT, resident_key);
	stop_kmsd();

	printf("| keys | pass | in flight | ops/s | p50 us | p99 us | ops |\n"
	       "|---:|---|---:|---:|---:|---:|---:|\n");
	char summary[SIZES_MAX][256];
	for (size_t s = 0; s < n_sizes; s++) {
		double create_rate = create_keys(sizes[s]);
		double startup_ms = start_kmsd();
		long rss_start = rss_kib(H.pid);
		char label[32];
		snprintf(label, sizeof label, "%zu", sizes[s]);
		size_t count = draw < n_ids ? draw : n_ids;
		const char **keys = draw_keys(count);
		row(label, "cold: first use after start", 1, run(keys, count, 1));
		row(label, "warm: the same keys again", 1, run(keys, count, 1));
		row(label, "warm: the same keys again", 16, run(keys, count, 16));
		baseline(label, wrapped_key, resident_key);
		long rss_after = rss_kib(H.pid);
		snprintf(summary[s], sizeof summary[s],
		         "| %zu | %.0f | %.0f | %.1f | %.1f |", sizes[s], create_rate, startup_ms,
		         rss_start / 1024.0, rss_after / 1024.0);
		free(keys);
		stop_kmsd();
	}
	printf("\n| keys | created/s (batch of %d) | kmsd start-up ms | RSS after start MB | "
	       "RSS after load MB |\n|---:|---:|---:|---:|---:|\n", BATCH);
	for (size_t s = 0; s < n_sizes; s++)
		printf("%s\n", summary[s]);
	free(ids);
	return 0;
}
