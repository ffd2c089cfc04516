/*
 * bench_hsm: AES-256-GCM encrypt of 32 bytes through the layer, beside the
 * same done with raw PKCS#11 calls (own session per thread, handle found
 * once) as the baseline, in the same run, on the same token and key; and
 * the same through the unwrapped-key cache (a wrapped key version under a
 * KEK, unwrapped once into a session object, every call a cache hit), the
 * path of docs/key-hierarchy.md, beside today's token-object key.
 *
 *   tests/support/with-token /tmp/benchtok bench build-hsm/tests/hsm/bench_hsm [ops] [seconds]
 *
 * Each configuration runs until ops operations in total (default 20000)
 * or seconds (default 5) have passed, whichever comes first, after a
 * warm-up; three rounds each, rotating which path goes first. Reports
 * ops/s over the wall time, p50/p99 per-call latency, and the median
 * layer/raw and cached/layer ratios.
 * A benchmark, not a test: it fails only when an operation fails.
 *
 *   bench_hsm --ops [--threads 1,2,4] [--requests N] [--duration S] [--op OP,...]
 *                   [--json FILE] [--label k=v]...
 *
 * is another mode: the PKCS#11 work of each kmsd operation (encrypt,
 * decrypt, generate-data-key, sign-ecdsa-p256, generate-mac on cached
 * wrapped key versions; sign-ed25519 on a token pair), as the HSM's limit
 * beside kmsd's throughput (bench_hsm_ops.c).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11-kit/pkcs11.h>

#include "common/error.h"
#include "hsm/hsm.h"
#include "tests/bench/bench_hsm_ops.h"

#define WARMUP_OPS 500
#define MAX_THREADS 2
#define PLAINTEXT_LEN 32
#define ROUNDS 3

typedef enum bench_path { PATH_RAW, PATH_LAYER, PATH_CACHED, PATH_COUNT } bench_path;

static hsm *layer;
static hsm_object_id key_id;
/* The wrapped key version the cached path uses: its row, as a store holds it. */
static hsm_object_id kek_id, version_id;
static uint8_t version_wrapped[HSM_WRAPPED_MAX];
static size_t version_len;
static CK_FUNCTION_LIST_PTR raw_p11;
static CK_SLOT_ID raw_slot;

typedef struct bench_thread {
	pthread_t thread;
	bench_path path;
	unsigned index;
	size_t max_ops;
	double seconds; /* the time budget, counted from the start barrier */
	double deadline;
	pthread_barrier_t *start;
	double *latencies_us; /* max_ops entries */
	size_t done;
	double began, ended;
	char error[KMS_ERROR_MAX];
} bench_thread;

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *env_or_die(const char *name)
{
	const char *value = getenv(name);
	if (!value || !value[0]) {
		fprintf(stderr, "bench_hsm: %s is not set: run it through tests/support/with-token\n", name);
		exit(2);
	}
	return value;
}

/* The raw side: the same module, already initialized by the layer. */
static int raw_setup(const char *module_path, const char *label)
{
	void *module = dlopen(module_path, RTLD_NOW | RTLD_LOCAL);
	if (!module)
		return -1;
	CK_C_GetFunctionList get_list;
	*(void **)&get_list = dlsym(module, "C_GetFunctionList");
	if (!get_list || get_list(&raw_p11) != CKR_OK)
		return -1;
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
	CK_RV rv = raw_p11->C_Initialize(&args);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED)
		return -1;
	CK_SLOT_ID slots[32];
	CK_ULONG count = 32;
	if (raw_p11->C_GetSlotList(CK_TRUE, slots, &count) != CKR_OK)
		return -1;
	size_t len = strlen(label);
	for (CK_ULONG i = 0; i < count; i++) {
		CK_TOKEN_INFO info;
		if (raw_p11->C_GetTokenInfo(slots[i], &info) == CKR_OK &&
		    memcmp(info.label, label, len) == 0 &&
		    (len == sizeof info.label || info.label[len] == ' ')) {
			raw_slot = slots[i];
			return 0; /* the module stays loaded: dlclose is not needed in a benchmark */
		}
	}
	return -1;
}

static void *raw_run(bench_thread *t)
{
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE key;
	CK_ULONG found = 0;
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_ID, key_id.bytes, key_id.len },
		{ CKA_CLASS, &cls, sizeof cls },
	};
	/* The login is the application's: the layer's covers this session. */
	if (raw_p11->C_OpenSession(raw_slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s) !=
	        CKR_OK ||
	    raw_p11->C_FindObjectsInit(s, tmpl, 2) != CKR_OK ||
	    raw_p11->C_FindObjects(s, &key, 1, &found) != CKR_OK ||
	    raw_p11->C_FindObjectsFinal(s) != CKR_OK || found != 1) {
		snprintf(t->error, sizeof t->error, "raw: cannot open a session or find the key");
		pthread_barrier_wait(t->start);
		return NULL;
	}
	uint8_t iv[12] = { (uint8_t)(t->index + 1) }, plaintext[PLAINTEXT_LEN] = { 0 }, sealed[48];
	CK_GCM_PARAMS params = { iv, 12, 96, NULL, 0, 128 };
	CK_MECHANISM mech = { CKM_AES_GCM, &params, sizeof params };

	for (unsigned i = 0; i < WARMUP_OPS; i++) {
		CK_ULONG len = sizeof sealed;
		if (raw_p11->C_EncryptInit(s, &mech, key) != CKR_OK ||
		    raw_p11->C_Encrypt(s, plaintext, PLAINTEXT_LEN, sealed, &len) != CKR_OK) {
			snprintf(t->error, sizeof t->error, "raw: warm-up encrypt failed");
			break;
		}
	}
	pthread_barrier_wait(t->start);
	t->began = now_seconds();
	t->deadline = t->began + t->seconds;
	double last = t->began;
	for (size_t i = 0; i < t->max_ops && !t->error[0]; i++) {
		memcpy(iv + 4, &i, sizeof(uint32_t));
		CK_ULONG len = sizeof sealed;
		CK_RV rv = raw_p11->C_EncryptInit(s, &mech, key);
		if (rv == CKR_OK)
			rv = raw_p11->C_Encrypt(s, plaintext, PLAINTEXT_LEN, sealed, &len);
		double t_now = now_seconds();
		if (rv != CKR_OK) {
			snprintf(t->error, sizeof t->error, "raw: encrypt -> 0x%lx", rv);
			break;
		}
		t->latencies_us[t->done++] = (t_now - last) * 1e6;
		last = t_now;
		if (t_now >= t->deadline)
			break;
	}
	t->ended = now_seconds();
	raw_p11->C_CloseSession(s);
	return NULL;
}

static kms_status version_loader(void *ctx, const hsm_object_id *name, hsm_object_id *kek,
                                 hsm_key_type *type, uint8_t *wrapped, size_t cap, size_t *len)
{
	(void)ctx;
	(void)name;
	if (version_len > cap)
		return KMS_FAIL(KMS_INTERNAL, "bench: wrapped row too long");
	*kek = kek_id;
	*type = HSM_KEY_TYPE_AES256;
	memcpy(wrapped, version_wrapped, version_len);
	*len = version_len;
	return KMS_OK;
}

static kms_status layer_encrypt(bench_path path, const uint8_t *iv, const uint8_t *plaintext,
                                uint8_t *sealed)
{
	if (path == PATH_CACHED)
		return hsm_wrapped_gcm_encrypt(layer, &version_id, version_loader, NULL, iv, NULL, 0,
		                               plaintext, PLAINTEXT_LEN, sealed,
		                               PLAINTEXT_LEN + HSM_GCM_TAG_LEN);
	return hsm_aes_gcm_encrypt(layer, &key_id, iv, NULL, 0, plaintext, PLAINTEXT_LEN, sealed,
	                           PLAINTEXT_LEN + HSM_GCM_TAG_LEN);
}

static void *layer_run(bench_thread *t)
{
	uint8_t iv[HSM_GCM_IV_LEN] = { (uint8_t)(t->index + 1) }, plaintext[PLAINTEXT_LEN] = { 0 };
	uint8_t sealed[PLAINTEXT_LEN + HSM_GCM_TAG_LEN];

	for (unsigned i = 0; i < WARMUP_OPS; i++) {
		if (layer_encrypt(t->path, iv, plaintext, sealed) != KMS_OK) {
			snprintf(t->error, sizeof t->error, "layer warm-up: %s", kms_error_message());
			break;
		}
	}
	pthread_barrier_wait(t->start);
	t->began = now_seconds();
	t->deadline = t->began + t->seconds;
	double last = t->began;
	for (size_t i = 0; i < t->max_ops && !t->error[0]; i++) {
		memcpy(iv + 4, &i, sizeof(uint32_t));
		kms_status st = layer_encrypt(t->path, iv, plaintext, sealed);
		double t_now = now_seconds();
		if (st != KMS_OK) {
			snprintf(t->error, sizeof t->error, "layer: %s", kms_error_message());
			break;
		}
		t->latencies_us[t->done++] = (t_now - last) * 1e6;
		last = t_now;
		if (t_now >= t->deadline)
			break;
	}
	t->ended = now_seconds();
	return NULL;
}

static void *thread_main(void *arg)
{
	bench_thread *t = arg;
	return t->path == PATH_RAW ? raw_run(t) : layer_run(t);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Runs one configuration; prints one row; returns ops/s (or -1 on failure). */
static double run(bench_path path, unsigned threads, size_t total_ops, double seconds)
{
	bench_thread t[MAX_THREADS];
	pthread_barrier_t start;
	size_t per_thread = total_ops / threads;

	pthread_barrier_init(&start, NULL, threads);
	for (unsigned i = 0; i < threads; i++) {
		memset(&t[i], 0, sizeof t[i]);
		t[i].path = path;
		t[i].index = i;
		t[i].max_ops = per_thread;
		t[i].start = &start;
		t[i].seconds = seconds;
		t[i].latencies_us = calloc(per_thread, sizeof(double));
		if (!t[i].latencies_us)
			return -1;
	}
	for (unsigned i = 0; i < threads; i++)
		pthread_create(&t[i].thread, NULL, thread_main, &t[i]);
	for (unsigned i = 0; i < threads; i++)
		pthread_join(t[i].thread, NULL);
	pthread_barrier_destroy(&start);

	size_t done = 0;
	double began = t[0].began, ended = t[0].ended;
	int failed = 0;
	for (unsigned i = 0; i < threads; i++) {
		if (t[i].error[0]) {
			fprintf(stderr, "bench_hsm: thread %u: %s\n", i, t[i].error);
			failed = 1;
		}
		done += t[i].done;
		if (t[i].began < began)
			began = t[i].began;
		if (t[i].ended > ended)
			ended = t[i].ended;
	}
	double *all = calloc(done ? done : 1, sizeof(double));
	size_t n = 0;
	for (unsigned i = 0; i < threads; i++) {
		memcpy(all + n, t[i].latencies_us, t[i].done * sizeof(double));
		n += t[i].done;
		free(t[i].latencies_us);
	}
	qsort(all, n, sizeof(double), cmp_double);
	double ops_per_s = done / (ended - began);
	double p50 = n ? all[n / 2] : 0, p99 = n ? all[(size_t)((double)n * 0.99)] : 0;
	static const char *const names[PATH_COUNT] = { "raw pkcs11", "hsm layer", "key cache" };
	printf("%-12s %7u %8zu %10.0f %9.1f %9.1f\n", names[path], threads, done, ops_per_s, p50,
	       p99);
	free(all);
	return failed ? -1 : ops_per_s;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--ops"))
		return bench_hsm_ops_main(argc, argv);
	size_t total_ops = argc > 1 ? strtoul(argv[1], NULL, 10) : 20000;
	double seconds = argc > 2 ? strtod(argv[2], NULL) : 5.0;
	if (total_ops < MAX_THREADS || seconds <= 0) {
		fprintf(stderr, "usage: bench_hsm [ops] [seconds]\n");
		return 2;
	}
	const char *module = env_or_die("KMS_TEST_MODULE");
	const char *label = env_or_die("KMS_TEST_TOKEN_LABEL");
	hsm_config config = {
		.module_path = module,
		.token_label = label,
		.pin_file = env_or_die("KMS_TEST_PIN_FILE"),
	};
	if (hsm_open(&config, &layer) != KMS_OK) {
		fprintf(stderr, "bench_hsm: %s\n", kms_error_message());
		return 1;
	}
	key_id.len = strlen("bench-aes-key");
	memcpy(key_id.bytes, "bench-aes-key", key_id.len);
	bool exists = false;
	if (hsm_object_exists(layer, &key_id, &exists) != KMS_OK ||
	    (!exists && hsm_aes_create(layer, &key_id, "bench") != KMS_OK)) {
		fprintf(stderr, "bench_hsm: %s\n", kms_error_message());
		return 1;
	}
	kek_id.len = strlen("kms-kek-00000001");
	memcpy(kek_id.bytes, "kms-kek-00000001", kek_id.len);
	version_id.len = strlen("bench-version");
	memcpy(version_id.bytes, "bench-version", version_id.len);
	if (hsm_kek_exists(layer, &kek_id, &exists) != KMS_OK ||
	    (!exists && hsm_kek_create(layer, &kek_id, "bench kek") != KMS_OK) ||
	    hsm_generate_wrapped(layer, &kek_id, HSM_KEY_TYPE_AES256, version_wrapped,
	                         sizeof version_wrapped, &version_len) != KMS_OK) {
		fprintf(stderr, "bench_hsm: %s\n", kms_error_message());
		return 1;
	}
	if (raw_setup(module, label) != 0) {
		fprintf(stderr, "bench_hsm: raw PKCS#11 setup failed\n");
		return 1;
	}

	printf("AES-256-GCM encrypt, %d-byte plaintext: token key (raw, layer), wrapped key version "
	       "(key cache); up to %zu ops or %.0f s each\n",
	       PLAINTEXT_LEN, total_ops, seconds);
	printf("%-12s %7s %8s %10s %9s %9s\n", "path", "threads", "ops", "ops/s", "p50 us",
	       "p99 us");
	/*
	 * Rounds alternate which path goes first: on a shared VM throughput
	 * drifts, and a fixed order would bias the comparison.
	 */
	int failed = 0;
	for (unsigned threads = 1; threads <= MAX_THREADS; threads++) {
		double layer_raw[ROUNDS], cached_layer[ROUNDS];
		for (unsigned round = 0; round < ROUNDS; round++) {
			double ops[PATH_COUNT];
			for (unsigned k = 0; k < PATH_COUNT; k++) {
				bench_path path = (bench_path)((round + k) % PATH_COUNT);
				ops[path] = run(path, threads, total_ops, seconds);
			}
			bool ok = ops[PATH_RAW] > 0 && ops[PATH_LAYER] > 0 && ops[PATH_CACHED] > 0;
			failed |= !ok;
			layer_raw[round] = ok ? ops[PATH_LAYER] / ops[PATH_RAW] : 0;
			cached_layer[round] = ok ? ops[PATH_CACHED] / ops[PATH_LAYER] : 0;
		}
		qsort(layer_raw, ROUNDS, sizeof layer_raw[0], cmp_double);
		qsort(cached_layer, ROUNDS, sizeof cached_layer[0], cmp_double);
		printf("  at %u thread%s, median of %d rounds: layer / raw ops/s %.2f, "
		       "key cache / layer ops/s %.2f\n",
		       threads, threads > 1 ? "s" : "", ROUNDS, layer_raw[ROUNDS / 2],
		       cached_layer[ROUNDS / 2]);
	}
	hsm_keycache_stats stats;
	hsm_keycache_stats_get(layer, &stats);
	printf("key cache: %llu hits, %llu misses, %llu unwraps\n", (unsigned long long)stats.hits,
	       (unsigned long long)stats.misses, (unsigned long long)stats.unwraps);
	hsm_close(layer);
	return failed;
}
