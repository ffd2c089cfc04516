/*
 * bench_hsm_ops.c: bench_hsm --ops, the HSM's own limit for each kmsd
 * operation: the PKCS#11 work one Encrypt, Decrypt, GenerateDataKey, Sign
 * or GenerateMac request makes, through the hsm/ layer, on a wrapped key
 * version in the unwrapped-key cache (the path kmsd takes for a wrapped
 * key: every call a cache hit) or, for Ed25519, a token pair, with no
 * transport, store, authorization or audit around it.
 *
 *   bench_hsm --ops [--threads 1,2,4] [--requests N] [--duration S]
 *                   [--op OP,...] [--json FILE] [--label key=value]...
 *
 * What each operation calls, as kms/ops/op_crypt.c does (seal, open_blob,
 * data_key) and kmsd's Sign and GenerateMac do:
 *   encrypt            hsm_random (12-byte IV), hsm_wrapped_gcm_encrypt of 32 bytes
 *   decrypt            hsm_wrapped_gcm_decrypt of those 32 bytes + tag
 *   generate-data-key  hsm_random (32-byte data key), hsm_random (12-byte IV),
 *                      hsm_wrapped_gcm_encrypt of the 32 bytes
 *   sign-ecdsa-p256    hsm_wrapped_ecdsa_p256_sign of a 32-byte SHA-256 digest
 *   generate-mac       hsm_wrapped_hmac_sha256 of a 32-byte message
 *   sign-ed25519       hsm_ed25519_sign of a 32-byte message (a token pair
 *                      with a 20-byte id, as an Ed25519 key version)
 * The AAD is a blob header's length for region "in-mum" with no
 * encryption context (41 + 6 bytes; docs/ciphertext-format.md). --op
 * picks operations (default: all, in this order).
 *
 * At each thread count (each thread its own session: the layer opens one
 * per thread) every operation runs until N operations in total (default
 * 100000) or S seconds (default 4) have passed, after a warm-up. One row of
 * the human table and, with --json, one JSON line per cell (appended;
 * docs/kms-bench.md, "The JSON line", gives the fields; here tool
 * "bench_hsm", transport "hsm", concurrency the threads). It fails only
 * when an operation fails.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/error.h"
#include "hsm/hsm.h"
#include "tests/bench/bench_hsm_ops.h"

#define OPS_PLAINTEXT_LEN 32
#define OPS_AAD_LEN (41 + 6)
#define OPS_WARMUP 200
#define OPS_MAX_THREADS 16
#define OPS_MAX_LEVELS 8
#define OPS_MAX_LABELS 16
#define OPS_MAX_REQUESTS 1000000ul

typedef enum ops_kind {
	OPS_ENCRYPT,
	OPS_DECRYPT,
	OPS_GDK,
	OPS_SIGN_P256,
	OPS_MAC,
	OPS_SIGN_ED25519,
	OPS_KIND_COUNT
} ops_kind;
static const char *const ops_names[OPS_KIND_COUNT] = {
	"encrypt", "decrypt", "generate-data-key", "sign-ecdsa-p256", "generate-mac", "sign-ed25519",
};

typedef struct ops_options {
	unsigned threads[OPS_MAX_LEVELS];
	int nthreads;
	bool run[OPS_KIND_COUNT]; /* the operations picked */
	size_t requests;
	double seconds;
	const char *json_path;
	const char *labels[OPS_MAX_LABELS]; /* "key=value" */
	int nlabels;
} ops_options;

/* A wrapped key version, as the store would hold it. */
typedef struct ops_version {
	hsm_object_id id;
	hsm_key_type type;
	uint8_t wrapped[HSM_WRAPPED_MAX];
	size_t len;
} ops_version;

enum { VERSION_AES, VERSION_HMAC, VERSION_P256, VERSION_COUNT };

/* The key versions the operations use, and one sealed sample. */
static hsm *layer;
static hsm_object_id kek_id, ed25519_id;
static ops_version versions[VERSION_COUNT];
static uint8_t sample_aad[OPS_AAD_LEN];
static uint8_t sample_iv[HSM_GCM_IV_LEN];
static uint8_t sample_sealed[OPS_PLAINTEXT_LEN + HSM_GCM_TAG_LEN];

typedef struct ops_thread {
	pthread_t thread;
	ops_kind kind;
	pthread_barrier_t *start;
	atomic_long *left; /* requests not yet claimed by any thread */
	double deadline_after; /* seconds from the start barrier */
	double *latencies_us;  /* cap entries */
	size_t cap, done;
	double began, ended;
	kms_status failed;
	char error[KMS_ERROR_MAX];
} ops_thread;

typedef struct ops_cell {
	ops_kind kind;
	unsigned threads;
	size_t requests, ok;
	double seconds, p50, p99, p999, max, cpu_us_per_op;
	kms_status failed; /* KMS_OK, or the first failure's status */
} ops_cell;

static double ops_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static kms_status version_loader(void *ctx, const hsm_object_id *name, hsm_object_id *kek,
                                 hsm_key_type *type, uint8_t *wrapped, size_t cap, size_t *len)
{
	(void)ctx;
	for (int v = 0; v < VERSION_COUNT; v++) {
		const ops_version *row = &versions[v];
		if (row->id.len != name->len || memcmp(row->id.bytes, name->bytes, name->len) != 0)
			continue;
		if (row->len > cap)
			return KMS_FAIL(KMS_INTERNAL, "bench: wrapped row too long");
		*kek = kek_id;
		*type = row->type;
		memcpy(wrapped, row->wrapped, row->len);
		*len = row->len;
		return KMS_OK;
	}
	return KMS_FAIL(KMS_NOT_FOUND, "bench: no such key version");
}

static kms_status seal(const uint8_t iv[HSM_GCM_IV_LEN], const uint8_t *plaintext, uint8_t *out)
{
	return hsm_wrapped_gcm_encrypt(layer, &versions[VERSION_AES].id, version_loader, NULL, iv,
	                               sample_aad, sizeof sample_aad, plaintext, OPS_PLAINTEXT_LEN,
	                               out, OPS_PLAINTEXT_LEN + HSM_GCM_TAG_LEN);
}

/* One operation's PKCS#11 work, as kmsd does it (see the header). */
static kms_status ops_one(ops_kind kind)
{
	static const uint8_t plaintext[OPS_PLAINTEXT_LEN] = "benchmark plaintext, 32 bytes!!";
	uint8_t iv[HSM_GCM_IV_LEN], data_key[OPS_PLAINTEXT_LEN];
	uint8_t sealed[OPS_PLAINTEXT_LEN + HSM_GCM_TAG_LEN], opened[OPS_PLAINTEXT_LEN];
	uint8_t sig[HSM_ECDSA_P256_SIG_LEN], mac[HSM_HMAC_SHA256_LEN];
	_Static_assert(HSM_ECDSA_P256_SIG_LEN == HSM_ED25519_SIG_LEN, "one buffer for both");
	_Static_assert(OPS_PLAINTEXT_LEN == HSM_SHA256_DIGEST_LEN, "the digest is the plaintext");
	switch (kind) {
	case OPS_ENCRYPT:
		KMS_GUARD(hsm_random(layer, iv, sizeof iv));
		return seal(iv, plaintext, sealed);
	case OPS_DECRYPT:
		return hsm_wrapped_gcm_decrypt(layer, &versions[VERSION_AES].id, version_loader, NULL,
		                               sample_iv, sample_aad, sizeof sample_aad, sample_sealed,
		                               sizeof sample_sealed, opened, sizeof opened);
	case OPS_GDK:
		KMS_GUARD(hsm_random(layer, data_key, sizeof data_key));
		KMS_GUARD(hsm_random(layer, iv, sizeof iv));
		return seal(iv, data_key, sealed);
	case OPS_SIGN_P256:
		return hsm_wrapped_ecdsa_p256_sign(layer, &versions[VERSION_P256].id, version_loader,
		                                   NULL, plaintext, sig);
	case OPS_MAC:
		return hsm_wrapped_hmac_sha256(layer, &versions[VERSION_HMAC].id, version_loader, NULL,
		                               plaintext, sizeof plaintext, mac);
	case OPS_SIGN_ED25519:
		return hsm_ed25519_sign(layer, &ed25519_id, plaintext, sizeof plaintext, sig);
	default:
		return KMS_FAIL(KMS_INTERNAL, "bench: unknown operation %d", (int)kind);
	}
}

static void *ops_thread_main(void *arg)
{
	ops_thread *t = arg;
	for (unsigned i = 0; i < OPS_WARMUP && t->failed == KMS_OK; i++)
		t->failed = ops_one(t->kind);
	if (t->failed != KMS_OK)
		snprintf(t->error, sizeof t->error, "warm-up: %s", kms_error_message());
	pthread_barrier_wait(t->start);
	t->began = ops_now();
	double deadline = t->began + t->deadline_after;
	while (t->failed == KMS_OK && t->done < t->cap) {
		if (atomic_fetch_sub(t->left, 1) <= 0)
			break; /* the cell's requests are all claimed */
		double before = ops_now();
		kms_status st = ops_one(t->kind);
		double after = ops_now();
		if (st != KMS_OK) {
			t->failed = st;
			snprintf(t->error, sizeof t->error, "%s", kms_error_message());
			break;
		}
		t->latencies_us[t->done++] = (after - before) * 1e6;
		if (after >= deadline)
			break;
	}
	t->ended = ops_now();
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The p-th quantile of n sorted values (0 when there are none). */
static double quantile(const double *sorted, size_t n, double p)
{
	return n ? sorted[(size_t)((double)(n - 1) * p)] : 0.0;
}

/* Merges the threads' latencies and times into cell; false if out of memory. */
static bool cell_summarize(ops_thread *t, unsigned threads, ops_cell *cell)
{
	size_t n = 0, failures = 0; /* a thread stops at its first failure */
	double began = t[0].began, ended = t[0].ended;
	for (unsigned i = 0; i < threads; i++) {
		n += t[i].done;
		began = t[i].began < began ? t[i].began : began;
		ended = t[i].ended > ended ? t[i].ended : ended;
		failures += t[i].failed != KMS_OK;
		if (t[i].failed != KMS_OK && cell->failed == KMS_OK)
			cell->failed = t[i].failed;
	}
	double *all = malloc((n ? n : 1) * sizeof *all);
	if (!all)
		return false;
	size_t k = 0;
	for (unsigned i = 0; i < threads; i++) {
		memcpy(all + k, t[i].latencies_us, t[i].done * sizeof *all);
		k += t[i].done;
	}
	qsort(all, n, sizeof *all, cmp_double);
	cell->ok = n;
	cell->requests = n + failures;
	cell->seconds = ended - began;
	cell->p50 = quantile(all, n, 0.50);
	cell->p99 = quantile(all, n, 0.99);
	cell->p999 = quantile(all, n, 0.999);
	cell->max = n ? all[n - 1] : 0.0;
	free(all);
	return true;
}

/* Runs one cell: kind at threads threads, bounded by opt's requests and
 * seconds. False when a thread cannot be set up. */
static bool cell_run(ops_kind kind, unsigned threads, const ops_options *opt, ops_cell *cell)
{
	ops_thread t[OPS_MAX_THREADS];
	pthread_barrier_t start;
	atomic_long left = (long)opt->requests;
	bool ok = true;
	memset(cell, 0, sizeof *cell);
	cell->kind = kind;
	cell->threads = threads;
	pthread_barrier_init(&start, NULL, threads);
	for (unsigned i = 0; i < threads; i++) {
		memset(&t[i], 0, sizeof t[i]);
		t[i].kind = kind;
		t[i].start = &start;
		t[i].left = &left;
		t[i].deadline_after = opt->seconds;
		t[i].cap = opt->requests;
		t[i].latencies_us = malloc(opt->requests * sizeof(double));
		ok = ok && t[i].latencies_us;
	}
	if (!ok) {
		for (unsigned i = 0; i < threads; i++)
			free(t[i].latencies_us);
		pthread_barrier_destroy(&start);
		return false;
	}
	double cpu_before = cpu_seconds();
	for (unsigned i = 0; i < threads; i++) {
		/* Threads already started wait at the barrier for this one: no way back. */
		if (pthread_create(&t[i].thread, NULL, ops_thread_main, &t[i]) != 0) {
			fprintf(stderr, "bench_hsm: cannot start thread %u of %u\n", i + 1, threads);
			exit(1);
		}
	}
	for (unsigned i = 0; i < threads; i++)
		pthread_join(t[i].thread, NULL);
	double cpu = cpu_seconds() - cpu_before;
	pthread_barrier_destroy(&start);
	ok = cell_summarize(t, threads, cell);
	/* The warm-up's CPU is in cpu too: a few hundred ops against many thousand. */
	cell->cpu_us_per_op = cell->requests ? cpu * 1e6 / (double)cell->requests : 0.0;
	for (unsigned i = 0; i < threads; i++) {
		if (t[i].error[0])
			fprintf(stderr, "bench_hsm: %s, thread %u: %s\n", ops_names[kind], i,
			        t[i].error);
		free(t[i].latencies_us);
	}
	return ok;
}

/* Writes s as a JSON string (quotes and escapes included). */
static void json_string(FILE *f, const char *s, size_t len)
{
	fputc('"', f);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* One record of docs/benchmarks.md's format, on one line. */
static void cell_json(FILE *f, const ops_cell *c, const ops_options *opt)
{
	double rate = c->seconds > 0 ? (double)c->ok / c->seconds : 0.0;
	fprintf(f,
	        "{\"tool\":\"bench_hsm\",\"op\":\"%s\",\"transport\":\"hsm\",\"concurrency\":%u,"
	        "\"batch_items\":0,\"plaintext_bytes\":%d,\"requests\":%zu,\"ok\":%zu,"
	        "\"items\":%zu,\"seconds\":%.3f,\"ops_per_s\":%.1f,\"items_per_s\":%.1f,"
	        "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,"
	        "\"cpu_us_per_op\":%.1f,\"errors\":{",
	        ops_names[c->kind], c->threads, OPS_PLAINTEXT_LEN, c->requests, c->ok, c->ok,
	        c->seconds, rate, rate, c->p50, c->p99, c->p999, c->max, c->cpu_us_per_op);
	if (c->failed != KMS_OK)
		fprintf(f, "\"%s\":%zu", kms_status_name(c->failed), c->requests - c->ok);
	fputs("},\"labels\":{", f);
	for (int i = 0; i < opt->nlabels; i++) {
		const char *eq = strchr(opt->labels[i], '=');
		fputs(i ? "," : "", f);
		json_string(f, opt->labels[i], (size_t)(eq - opt->labels[i]));
		fputc(':', f);
		json_string(f, eq + 1, strlen(eq + 1));
	}
	fputs("}}\n", f);
}

static void cell_print(const ops_cell *c)
{
	double rate = c->seconds > 0 ? (double)c->ok / c->seconds : 0.0;
	printf("| %-17s | %7u | %8zu | %9.0f | %8.1f | %8.1f | %8.1f | %8.1f |\n",
	       ops_names[c->kind], c->threads, c->ok, rate, c->p50, c->p99, c->p999,
	       c->cpu_us_per_op);
}

static int usage(const char *option, const char *why)
{
	fprintf(stderr,
	        "bench_hsm: %s: %s\nusage: bench_hsm --ops [--threads 1,2,4] [--requests N] "
	        "[--duration S] [--op OP,...] [--json FILE] [--label key=value]...\n",
	        option, why);
	return 2;
}

/* "1,2,4" into opt->threads; false if an entry is not 1..OPS_MAX_THREADS. */
static bool parse_threads(const char *list, ops_options *opt)
{
	opt->nthreads = 0;
	for (const char *p = list; *p;) {
		char *end;
		errno = 0;
		unsigned long n = strtoul(p, &end, 10);
		if (end == p || errno || n < 1 || n > OPS_MAX_THREADS ||
		    opt->nthreads == OPS_MAX_LEVELS || (*end && *end != ','))
			return false;
		opt->threads[opt->nthreads++] = (unsigned)n;
		p = *end ? end + 1 : end;
	}
	return opt->nthreads > 0;
}

/* "encrypt,generate-mac" into opt->run; false for an unknown name. */
static bool parse_ops(const char *list, ops_options *opt)
{
	memset(opt->run, 0, sizeof opt->run);
	bool any = false;
	for (const char *p = list; *p;) {
		size_t len = strcspn(p, ",");
		ops_kind k = 0;
		while (k < OPS_KIND_COUNT &&
		       (strlen(ops_names[k]) != len || strncmp(ops_names[k], p, len) != 0))
			k++;
		if (k == OPS_KIND_COUNT)
			return false;
		opt->run[k] = any = true;
		p += len;
		p += *p == ',';
	}
	return any;
}

static int parse_options(int argc, char **argv, ops_options *opt)
{
	char *end;
	*opt = (ops_options){ .threads = { 1, 2, 4 }, .nthreads = 3, .requests = 100000,
		              .seconds = 4.0 };
	for (ops_kind k = 0; k < OPS_KIND_COUNT; k++)
		opt->run[k] = true;
	for (int i = 2; i < argc; i++) {
		const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
		if (!value)
			return usage(arg, "no value follows it");
		i++;
		if (!strcmp(arg, "--threads")) {
			if (!parse_threads(value, opt))
				return usage(arg, "give a comma-separated list of 1 to 16");
		} else if (!strcmp(arg, "--requests")) {
			errno = 0;
			opt->requests = strtoul(value, &end, 10);
			if (errno || *end || opt->requests < 1 || opt->requests > OPS_MAX_REQUESTS)
				return usage(arg, "give 1 to 1000000");
		} else if (!strcmp(arg, "--duration")) {
			opt->seconds = strtod(value, &end);
			if (*end || !(opt->seconds > 0 && opt->seconds <= 3600))
				return usage(arg, "give seconds, above 0 and at most 3600");
		} else if (!strcmp(arg, "--op")) {
			if (!parse_ops(value, opt))
				return usage(arg, "give a comma-separated list of encrypt, decrypt, "
				                  "generate-data-key, sign-ecdsa-p256, generate-mac, "
				                  "sign-ed25519");
		} else if (!strcmp(arg, "--json")) {
			opt->json_path = value;
		} else if (!strcmp(arg, "--label")) {
			if (opt->nlabels == OPS_MAX_LABELS || !strchr(value, '=') || value[0] == '=')
				return usage(arg, "give key=value, at most 16 of them");
			opt->labels[opt->nlabels++] = value;
		} else {
			return usage(arg, "unknown option");
		}
	}
	return 0;
}

static void id_set(hsm_object_id *id, const char *text)
{
	id->len = strlen(text);
	memcpy(id->bytes, text, id->len);
}

/* A new wrapped version of type `type` under the KEK, named `name`. */
static kms_status version_make(int v, const char *name, hsm_key_type type)
{
	ops_version *row = &versions[v];
	uint8_t public_key[HSM_EC_P256_PUBLIC_LEN];
	id_set(&row->id, name);
	row->type = type;
	if (type == HSM_KEY_TYPE_EC_P256)
		return hsm_generate_wrapped_pair(layer, &kek_id, type, row->wrapped,
		                                 sizeof row->wrapped, &row->len, public_key);
	return hsm_generate_wrapped(layer, &kek_id, type, row->wrapped, sizeof row->wrapped,
	                            &row->len);
}

/* The Ed25519 pair, made unless an earlier run on the token left it. */
static kms_status ed25519_make(void)
{
	bool exists = false;
	id_set(&ed25519_id, "bench-ops-ed25519-v1"); /* 20 bytes, as a key version's id */
	KMS_GUARD(hsm_object_exists(layer, &ed25519_id, &exists));
	return exists ? KMS_OK : hsm_ed25519_create(layer, &ed25519_id, "bench ops ed25519");
}

/* A KEK, a wrapped version of each type under it, an Ed25519 pair, and one
 * sealed sample for decrypt; false (message printed) on failure. */
static bool ops_setup(const hsm_config *config)
{
	bool exists = false;
	if (hsm_open(config, &layer) != KMS_OK)
		goto failed;
	id_set(&kek_id, "kms-kek-00000001");
	memset(sample_aad, 'h', sizeof sample_aad);
	if (hsm_kek_exists(layer, &kek_id, &exists) != KMS_OK ||
	    (!exists && hsm_kek_create(layer, &kek_id, "bench kek") != KMS_OK) ||
	    version_make(VERSION_AES, "bench-ops-version", HSM_KEY_TYPE_AES256) != KMS_OK ||
	    version_make(VERSION_HMAC, "bench-ops-mac", HSM_KEY_TYPE_HMAC_SHA256) != KMS_OK ||
	    version_make(VERSION_P256, "bench-ops-p256", HSM_KEY_TYPE_EC_P256) != KMS_OK ||
	    ed25519_make() != KMS_OK ||
	    hsm_random(layer, sample_iv, sizeof sample_iv) != KMS_OK ||
	    seal(sample_iv, (const uint8_t *)"benchmark plaintext, 32 bytes!!", sample_sealed) !=
	            KMS_OK)
		goto failed;
	return true;
failed:
	fprintf(stderr, "bench_hsm: %s\n", kms_error_message());
	return false;
}

/* The token tests/support/with-token made, from its environment. */
static bool token_config(hsm_config *config)
{
	const char *names[] = { "KMS_TEST_MODULE", "KMS_TEST_TOKEN_LABEL", "KMS_TEST_PIN_FILE" };
	const char *values[3];
	for (int i = 0; i < 3; i++) {
		values[i] = getenv(names[i]);
		if (!values[i] || !values[i][0]) {
			fprintf(stderr, "bench_hsm: %s is not set: run it through "
			                "tests/support/with-token\n", names[i]);
			return false;
		}
	}
	*config = (hsm_config){ .module_path = values[0], .token_label = values[1],
		                .pin_file = values[2] };
	return true;
}

int bench_hsm_ops_main(int argc, char **argv)
{
	ops_options opt;
	hsm_config config;
	int rc = parse_options(argc, argv, &opt);
	if (rc)
		return rc;
	if (!token_config(&config))
		return 2;
	FILE *json = NULL;
	if (opt.json_path && !(json = fopen(opt.json_path, "a"))) {
		fprintf(stderr, "bench_hsm: cannot open %s for appending: %s\n", opt.json_path,
		        strerror(errno));
		return 1;
	}
	if (!ops_setup(&config)) {
		if (json)
			fclose(json);
		hsm_close(layer);
		return 1;
	}
	printf("The PKCS#11 work of each kmsd operation through hsm/, wrapped key versions in the "
	       "key cache (Ed25519: a token pair); up to %zu ops or %.1f s a cell\n\n",
	       opt.requests, opt.seconds);
	printf("| %-17s | %7s | %8s | %9s | %8s | %8s | %8s | %8s |\n", "operation", "threads",
	       "ops", "ops/s", "p50 us", "p99 us", "p99.9 us", "cpu us");
	printf("|---|--:|--:|--:|--:|--:|--:|--:|\n");
	int failed = 0;
	for (int l = 0; l < opt.nthreads; l++) {
		for (ops_kind k = 0; k < OPS_KIND_COUNT; k++) {
			if (!opt.run[k])
				continue;
			ops_cell cell;
			if (!cell_run(k, opt.threads[l], &opt, &cell)) {
				fprintf(stderr, "bench_hsm: out of memory for %u threads' latencies\n",
				        opt.threads[l]);
				failed = 1;
				continue;
			}
			failed |= cell.failed != KMS_OK;
			cell_print(&cell);
			if (json) {
				cell_json(json, &cell, &opt);
				fflush(json);
			}
		}
	}
	if (json && fclose(json) != 0) {
		fprintf(stderr, "bench_hsm: cannot write %s: %s\n", opt.json_path, strerror(errno));
		failed = 1;
	}
	hsm_close(layer);
	return failed;
}
