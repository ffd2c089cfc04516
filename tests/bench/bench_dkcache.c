/*
 * bench_dkcache: sealing N small objects with a data key each, through
 * libkmsclient against a real kmsd, without the data-key cache (one
 * GenerateDataKey per object: the baseline) and with it (kms/data_key_cache.h,
 * max_messages M), in the same run.
 *
 *   bench_dkcache N M [M...]     (N 1..10,000,000 objects; each M 1..N)
 *
 * Each object is OBJECT_BYTES of plaintext, sealed as an envelope message
 * is: a per-message key derived from the data key with a random 32-byte
 * salt (HKDF-SHA256), then AES-256-GCM. One thread, one kms_client over
 * ipc://, kmsd with its audit log on (every reply waits for its entry's
 * fdatasync). The baseline runs once, then the sealing alone (one data key
 * for every object: what no cache can save), then one cached pass per M,
 * each under a key of its own, so that kmsd's audit log (read back after a clean stop,
 * through the offline verifier) says how many GenerateDataKey each pass
 * made: exactly the baseline's objects, and at most ceil(objects / M) for
 * a cached pass (the bound printed beside it).
 *
 * Run through tests/support/with-token (docs/benchmarks.md, "Data-key
 * cache", has the command). Every pass is bounded by BENCH_MAX_SECONDS
 * (default 300): a pass that reaches it stops early and says so, and its
 * bound is computed from the objects it did. Exits non-zero when a call
 * fails or a count passes its bound (the ctest smoke relies on that); never
 * on a speed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <kms/client.h>
#include <kms/data_key_cache.h>

#include "common/tlog/tlog_verify.h"
#include "tests/support/harness.h"

#define OBJECT_BYTES 256
#define SALT_BYTES 32
#define GCM_TAG_BYTES 16
#define N_MAX 10000000ul
#define PASSES_MAX 8
#define CALL_TIMEOUT_MS 10000
#define AGE_MS (3600u * 1000u)

typedef enum pass_kind {
	PASS_UNCACHED,              /* a GenerateDataKey per object: the baseline */
	PASS_CACHED,                /* through a cache with max_messages */
	PASS_SEAL_ONLY,             /* one data key for all: the sealing's own cost */
} pass_kind;

typedef struct pass {
	const char *label;
	pass_kind kind;
	uint64_t max_messages;      /* PASS_CACHED */
	char key[KMS_KEY_ID_MAX + 1];
	size_t done;
	double seconds;
	bool stopped_early;
	kms_data_key_cache_stats stats;
	size_t audited;             /* GenerateDataKey entries on key, from the log */
} pass;

static harness H;
static kms_client *C;
static double max_seconds = 300;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static _Noreturn void bench_fail(void)
{
	kms_client_close(C);
	if (H.pid > 0)
		(void)harness_stop(&H);
	exit(1);
}

/* One object sealed as an envelope message is: HKDF-SHA256(data key, a
 * random salt) as the message's own key, then AES-256-GCM (a fresh key per
 * message, so a fixed nonce). out holds len + GCM_TAG_BYTES. */
static bool seal_object(const uint8_t *data_key, const uint8_t *obj, size_t len, uint8_t *out)
{
	uint8_t salt[SALT_BYTES], mk[32], tag[GCM_TAG_BYTES];
	static const uint8_t nonce[12];
	size_t mk_len = sizeof mk;
	bool ok = RAND_bytes(salt, sizeof salt) == 1;
	EVP_PKEY_CTX *kdf = ok ? EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL) : NULL;
	ok = kdf && EVP_PKEY_derive_init(kdf) == 1 &&
	     EVP_PKEY_CTX_set_hkdf_md(kdf, EVP_sha256()) == 1 &&
	     EVP_PKEY_CTX_set1_hkdf_salt(kdf, salt, sizeof salt) == 1 &&
	     EVP_PKEY_CTX_set1_hkdf_key(kdf, data_key, KMS_DATA_KEY_LEN) == 1 &&
	     EVP_PKEY_CTX_add1_hkdf_info(kdf, (const unsigned char *)"bench object", 12) == 1 &&
	     EVP_PKEY_derive(kdf, mk, &mk_len) == 1;
	EVP_PKEY_CTX_free(kdf);
	EVP_CIPHER_CTX *gcm = ok ? EVP_CIPHER_CTX_new() : NULL;
	int n = 0, fin = 0;
	ok = gcm && EVP_EncryptInit_ex(gcm, EVP_aes_256_gcm(), NULL, mk, nonce) == 1 &&
	     EVP_EncryptUpdate(gcm, out, &n, obj, (int)len) == 1 &&
	     EVP_EncryptFinal_ex(gcm, out + n, &fin) == 1 &&
	     EVP_CIPHER_CTX_ctrl(gcm, EVP_CTRL_GCM_GET_TAG, sizeof tag, tag) == 1;
	if (ok)
		memcpy(out + len, tag, sizeof tag);
	EVP_CIPHER_CTX_free(gcm);
	kms_wipe(mk, sizeof mk);
	return ok;
}

static const kms_context_pair context[] = { { "bucket", "bench" }, { "tenant", "t-1" } };

/* One pass: up to n objects, each with a data key from kmsd (uncached),
 * from a cache with max_messages M, or all with one (the sealing alone). */
static void run_pass(pass *p, size_t n)
{
	uint8_t obj[OBJECT_BYTES], sealed[OBJECT_BYTES + GCM_TAG_BYTES];
	memset(obj, 'o', sizeof obj);
	kms_data_key_cache *cache = NULL;
	kms_data_key one = { 0 };
	kms_error err;
	if (p->kind == PASS_SEAL_ONLY &&
	    kms_generate_data_key(C, p->key, context, 2, &one, &err) != KMS_OK) {
		fprintf(stderr, "bench: %s: %s\n", p->label, err.message);
		bench_fail();
	}
	if (p->kind == PASS_CACHED) {
		kms_data_key_cache_limits l = { .max_age_ms = AGE_MS, .max_messages = p->max_messages,
		                                .max_bytes = UINT64_MAX };
		if (kms_data_key_cache_new(C, &l, &cache, &err) != KMS_OK) {
			fprintf(stderr, "bench: %s\n", err.message);
			bench_fail();
		}
	}
	double start = now_s(), deadline = start + max_seconds;
	for (p->done = 0; p->done < n; p->done++) {
		if ((p->done & 255) == 0 && now_s() > deadline) {
			p->stopped_early = true;
			break;
		}
		if (p->kind == PASS_SEAL_ONLY) {
			if (!seal_object(one.plaintext, obj, sizeof obj, sealed)) {
				fprintf(stderr, "bench: sealing object %zu failed\n", p->done);
				bench_fail();
			}
			continue;
		}
		kms_data_key dk;
		kms_status st = cache ? kms_data_key_cache_encrypt_key(cache, p->key, context, 2,
		                                                       sizeof obj, &dk, &err)
		                      : kms_generate_data_key(C, p->key, context, 2, &dk, &err);
		if (st != KMS_OK) {
			fprintf(stderr, "bench: %s, object %zu: %s: %s\n", p->label, p->done,
			        kms_status_name(st), err.message);
			bench_fail();
		}
		bool sealed_ok = seal_object(dk.plaintext, obj, sizeof obj, sealed);
		kms_data_key_free(&dk);
		if (!sealed_ok) {
			fprintf(stderr, "bench: %s: sealing object %zu failed\n", p->label, p->done);
			bench_fail();
		}
	}
	p->seconds = now_s() - start;
	kms_data_key_free(&one);
	if (cache)
		kms_data_key_cache_stats_get(cache, &p->stats);
	kms_data_key_cache_free(cache);
}

/* ---- counting GenerateDataKey in the audit log ---- */

typedef struct count_ctx {
	pass *passes;
	int n;
	unsigned bad;
} count_ctx;

static kms_status count_entry(void *arg, uint64_t index, const uint8_t *entry, size_t len)
{
	(void)index;
	count_ctx *c = arg;
	json_t *j = json_loadb((const char *)entry, len, 0, NULL);
	if (!j) {
		c->bad++;
		return KMS_OK;
	}
	const char *op = json_string_value(json_object_get(j, "operation"));
	const char *key = json_string_value(json_object_get(j, "key_id"));
	if (op && key && !strcmp(op, "generate_data_key"))
		for (int i = 0; i < c->n; i++)
			if (!strcmp(key, c->passes[i].key))
				c->passes[i].audited++;
	json_decref(j);
	return KMS_OK;
}

/* The verifier key, from kmsd itself (GetCheckpoint). */
static bool verifier_key(char *out, size_t cap)
{
	Kms__GetCheckpointRequest g = KMS__GET_CHECKPOINT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_GET_CHECKPOINT;
	req.get_checkpoint = &g;
	Kms__Response *r = harness_call(&H, &req);
	bool ok = r && r->status == KMS__STATUS__OK &&
	          r->result_case == KMS__RESPONSE__RESULT_GET_CHECKPOINT &&
	          strlen(r->get_checkpoint->verifier_key) < cap;
	if (ok)
		snprintf(out, cap, "%s", r->get_checkpoint->verifier_key);
	if (r)
		kms__response__free_unpacked(r, NULL);
	return ok;
}

static bool parse_count(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*s < '0' || *s > '9' || *end || v < 1 || v > max)
		return false;
	*out = v;
	return true;
}

/* The GenerateDataKey calls a pass may make: exactly one per object
 * uncached, at most ceil(done / M) cached, exactly one sealing alone. */
static size_t bound_of(const pass *p)
{
	switch (p->kind) {
	case PASS_UNCACHED:
		return p->done;
	case PASS_CACHED:
		return (size_t)((p->done + p->max_messages - 1) / p->max_messages);
	case PASS_SEAL_ONLY:
		break;
	}
	return 1;
}

static void print_row(const pass *p, const pass *base)
{
	char bound[64];
	if (p->kind == PASS_CACHED)
		snprintf(bound, sizeof bound, "<= ceil(%zu / %llu) = %zu", p->done,
		         (unsigned long long)p->max_messages, bound_of(p));
	else if (p->kind == PASS_UNCACHED)
		snprintf(bound, sizeof bound, "= %zu (one per object)", p->done);
	else
		snprintf(bound, sizeof bound, "= 1 (fetched before timing)");
	double ops = p->seconds > 0 ? (double)p->done / p->seconds : 0;
	double base_ops = base->seconds > 0 ? (double)base->done / base->seconds : 0;
	printf("| %-26s | %9zu | %8.2f | %10.0f | %6.1fx | %9zu | %-28s |%s\n", p->label, p->done,
	       p->seconds, ops, base_ops > 0 ? ops / base_ops : 0, p->audited, bound,
	       p->stopped_early ? " (time bound reached)" : "");
}

int main(int argc, char **argv)
{
	unsigned long n, m;
	if (argc < 3 || argc - 2 > PASSES_MAX || !parse_count(argv[1], N_MAX, &n)) {
		fprintf(stderr, "usage: bench_dkcache N M [M...]  (N 1..%lu objects; up to %d M, "
		        "each 1..N)\n", N_MAX, PASSES_MAX);
		return 2;
	}
	const char *ms = getenv("BENCH_MAX_SECONDS");
	if (ms && *ms) {
		char *end;
		max_seconds = strtod(ms, &end);
		if (*end || max_seconds < 0.1 || max_seconds > 3600) {
			fprintf(stderr, "bench: BENCH_MAX_SECONDS=%s: give 0.1 to 3600\n", ms);
			return 2;
		}
	}
	pass passes[PASSES_MAX + 2];
	char labels[PASSES_MAX + 2][64];
	memset(passes, 0, sizeof passes);
	int np = 0;
	passes[np++].label = "uncached (GDK per object)";
	passes[np].kind = PASS_SEAL_ONLY;
	passes[np++].label = "sealing alone (1 data key)";
	for (int i = 2; i < argc; i++) {
		if (!parse_count(argv[i], n, &m)) {
			fprintf(stderr, "bench: M %s: give 1 to N (%lu)\n", argv[i], n);
			return 2;
		}
		snprintf(labels[np], sizeof labels[np], "cached, max_messages %lu", m);
		passes[np].label = labels[np];
		passes[np].kind = PASS_CACHED;
		passes[np++].max_messages = m;
	}

	harness_options o = { 0 };
	if (!harness_start(&H, &o))
		bench_fail();
	const char *endpoints[] = { H.ipc_url };
	kms_client_options opts = { .endpoints = endpoints, .n_endpoints = 1,
	                            .timeout_ms = CALL_TIMEOUT_MS };
	kms_error err;
	if (kms_client_open(&opts, &C, &err) != KMS_OK) {
		fprintf(stderr, "bench: %s\n", err.message);
		bench_fail();
	}
	for (int i = 0; i < np; i++) {
		if (!harness_create_key(&H, NULL, passes[i].key))
			bench_fail();
	}
	printf("bench_dkcache: %lu objects of %d bytes per pass, one thread, one kms_client "
	       "over ipc://; kmsd with its audit log on (sync); cache max_age 1 h\n\n",
	       n, OBJECT_BYTES);
	for (int i = 0; i < np; i++)
		run_pass(&passes[i], n);

	char vkey[512];
	if (!verifier_key(vkey, sizeof vkey)) {
		fprintf(stderr, "bench: GetCheckpoint failed; see %s\n", H.log);
		bench_fail();
	}
	kms_client_close(C);
	C = NULL;
	int stopped = harness_stop(&H);
	if (stopped != 0) {
		fprintf(stderr, "bench: kmsd exited %d on SIGTERM; see %s\n", stopped, H.log);
		return 1;
	}
	char pub[700];
	snprintf(pub, sizeof pub, "%s/data/audit/public", H.dir);
	count_ctx cc = { passes, np, 0 };
	tlog_verify_report report;
	if (tlog_verify_dir(pub, vkey, NULL, count_entry, &cc, &report) != KMS_OK || cc.bad) {
		fprintf(stderr, "bench: the audit log did not verify: %s (%u entries not JSON)\n",
		        report.failure, cc.bad);
		return 1;
	}

	printf("| %-26s | %9s | %8s | %10s | %7s | %9s | %-28s |\n", "path", "objects", "seconds",
	       "objects/s", "vs base", "GDK (log)", "bound");
	printf("|%s|%s|%s|%s|%s|%s|%s|\n", "----------------------------", "-----------",
	       "----------", "------------", "---------", "-----------",
	       "------------------------------");
	int over = 0;
	for (int i = 0; i < np; i++) {
		pass *p = &passes[i];
		print_row(p, &passes[0]);
		size_t bound = bound_of(p);
		if (p->kind == PASS_CACHED ? p->audited > bound : p->audited != bound) {
			fprintf(stderr, "bench: %s: %zu GenerateDataKey in the audit log, bound %zu\n",
			        p->label, p->audited, bound);
			over++;
		}
		if (p->kind == PASS_CACHED && p->stats.generate_calls != p->audited) {
			fprintf(stderr, "bench: %s: the cache counted %llu calls, the log %zu\n",
			        p->label, (unsigned long long)p->stats.generate_calls, p->audited);
			over++;
		}
	}
	printf("\n(%llu audit entries verified; GDK = GenerateDataKey entries on the pass's own "
	       "key)\n", (unsigned long long)report.tree_size);
	for (int i = 2; i < np; i++)
		printf("%s: %llu hits, %llu misses, %llu retired\n", passes[i].label,
		       (unsigned long long)passes[i].stats.hits,
		       (unsigned long long)passes[i].stats.misses,
		       (unsigned long long)passes[i].stats.retired);
	return over ? 1 : 0;
}
