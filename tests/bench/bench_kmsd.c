/*
 * bench_kmsd: Encrypt, Decrypt and GenerateDataKey through a real kmsd, at
 * several concurrencies, beside a raw NNG REQ/REP echo of the same size on
 * the same transport in the same run (the transport's own limit).
 *
 * Run through scripts/bench (it makes the token and points KMS_TEST_* at
 * it). Every run is bounded: at most BENCH_MAX_OPS operations or
 * BENCH_MAX_SECONDS seconds per cell, whichever comes first.
 *
 *   bench_kmsd [ipc|tls] [concurrency...]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>

#include "tests/support/harness.h"

#define BENCH_MAX_OPS 100000
#define BENCH_MAX_SECONDS 4.0
#define BENCH_PLAINTEXT 32

typedef enum bench_op { OP_ECHO, OP_ENCRYPT, OP_DECRYPT, OP_GDK } bench_op;
static const char *op_names[] = { "nng-echo", "Encrypt", "Decrypt", "GenerateDataKey" };

static harness H;
static char key_id[35];
static uint8_t *sample_blob;
static size_t sample_blob_len;
static const char *url;
static bool use_tls;

typedef struct worker {
	pthread_t thread;
	bench_op op;
	nng_socket sock;
	uint64_t *lat_ns;
	size_t n;
	size_t cap;
	unsigned errors;
} worker;

static atomic_size_t ops_left;
static double deadline;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t pack_request(bench_op op, uint8_t *buf, size_t cap, unsigned seq)
{
	static const uint8_t plaintext[BENCH_PLAINTEXT] = "benchmark plaintext, 32 bytes!!";
	char id[32];
	snprintf(id, sizeof id, "b-%u", seq);
	Kms__Request req = KMS__REQUEST__INIT;
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	Kms__DecryptRequest d = KMS__DECRYPT_REQUEST__INIT;
	Kms__GenerateDataKeyRequest g = KMS__GENERATE_DATA_KEY_REQUEST__INIT;
	req.schema_version = 1;
	req.request_id = id;
	switch (op) {
	case OP_ECHO:
	case OP_ENCRYPT:
		e.key_id = key_id;
		e.plaintext.data = (uint8_t *)(uintptr_t)plaintext;
		e.plaintext.len = sizeof plaintext;
		req.op_case = KMS__REQUEST__OP_ENCRYPT;
		req.encrypt = &e;
		break;
	case OP_DECRYPT:
		d.ciphertext_blob.data = sample_blob;
		d.ciphertext_blob.len = sample_blob_len;
		req.op_case = KMS__REQUEST__OP_DECRYPT;
		req.decrypt = &d;
		break;
	case OP_GDK:
		g.key_id = key_id;
		req.op_case = KMS__REQUEST__OP_GENERATE_DATA_KEY;
		req.generate_data_key = &g;
		break;
	}
	size_t n = kms__request__get_packed_size(&req);
	if (n > cap)
		return 0;
	return kms__request__pack(&req, buf);
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	uint8_t buf[512];
	unsigned seq = 0;
	while (now_s() < deadline) {
		size_t left = atomic_load(&ops_left);
		if (left == 0)
			break;
		if (!atomic_compare_exchange_weak(&ops_left, &left, left - 1))
			continue;
		size_t n = pack_request(w->op, buf, sizeof buf, seq++);
		uint64_t t0 = now_ns();
		void *reply = NULL;
		size_t len = 0;
		if (nng_send(w->sock, buf, n, 0) != 0 ||
		    nng_recv(w->sock, &reply, &len, NNG_FLAG_ALLOC) != 0) {
			w->errors++;
			continue;
		}
		uint64_t t1 = now_ns();
		if (w->op != OP_ECHO) {
			Kms__Response *r = kms__response__unpack(NULL, len, reply);
			if (!r || r->status != KMS__STATUS__OK)
				w->errors++;
			if (r)
				kms__response__free_unpacked(r, NULL);
		}
		nng_free(reply, len);
		if (w->n < w->cap)
			w->lat_ns[w->n++] = t1 - t0;
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The echo server for the baseline: REP contexts answering with the request. */
typedef struct echo_ctx {
	nng_aio *aio;
	nng_ctx ctx;
	int state; /* 0 receiving, 1 sending */
} echo_ctx;

static void echo_cb(void *arg)
{
	echo_ctx *e = arg;
	if (nng_aio_result(e->aio) != 0)
		return;
	if (e->state == 0) {
		e->state = 1;
		nng_ctx_send(e->ctx, e->aio);
	} else {
		e->state = 0;
		nng_ctx_recv(e->ctx, e->aio);
	}
}

static bool open_client(nng_socket *s, const char *to)
{
	if (strncmp(to, "tls", 3) == 0) {
		if (!harness_tls_dial(&H, to, true, s))
			return false;
		/* The warm-up round trip in run_cell absorbs the handshake. */
		nng_socket_set_ms(*s, NNG_OPT_REQ_RESENDTIME, 0);
		return true;
	}
	if (nng_req0_open(s) != 0)
		return false;
	nng_socket_set_ms(*s, NNG_OPT_RECVTIMEO, 10000);
	nng_socket_set_ms(*s, NNG_OPT_REQ_RESENDTIME, 0);
	return nng_dial(*s, to, NULL, 0) == 0;
}

/* A REP echo listener at url; for tls, with the harness's server certificate. */
static bool listen_echo(nng_socket rep, const char *to)
{
	if (strncmp(to, "tls", 3) != 0)
		return nng_listen(rep, to, NULL, 0) == 0;
	char path[700], key[700];
	snprintf(path, sizeof path, "%s/tls/server.crt", H.dir);
	snprintf(key, sizeof key, "%s/tls/server.key", H.dir);
	char *cert_pem = harness_read_file(path, NULL);
	char *key_pem = harness_read_file(key, NULL);
	nng_tls_config *cfg;
	nng_listener l;
	bool ok = cert_pem && key_pem && nng_tls_config_alloc(&cfg, NNG_TLS_MODE_SERVER) == 0 &&
	          nng_tls_config_own_cert(cfg, cert_pem, key_pem, NULL) == 0 &&
	          nng_listener_create(&l, rep, to) == 0 &&
	          nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, cfg) == 0 &&
	          nng_listener_start(l, 0) == 0;
	free(cert_pem);
	free(key_pem);
	return ok;
}

static void run_cell(bench_op op, unsigned conc, const char *to)
{
	worker *ws = calloc(conc, sizeof *ws);
	for (unsigned i = 0; i < conc; i++) {
		ws[i].op = op;
		ws[i].cap = BENCH_MAX_OPS;
		ws[i].lat_ns = malloc(ws[i].cap * sizeof(uint64_t));
		if (!open_client(&ws[i].sock, to)) {
			fprintf(stderr, "bench: cannot connect to %s\n", to);
			exit(1);
		}
	}
	/* Warm up each connection (TLS handshakes are not what we measure). */
	for (unsigned i = 0; i < conc; i++) {
		uint8_t buf[512];
		size_t n = pack_request(OP_ENCRYPT, buf, sizeof buf, 0);
		void *reply;
		size_t len;
		if (nng_send(ws[i].sock, buf, n, 0) == 0 &&
		    nng_recv(ws[i].sock, &reply, &len, NNG_FLAG_ALLOC) == 0)
			nng_free(reply, len);
	}
	atomic_store(&ops_left, BENCH_MAX_OPS);
	double t0 = now_s();
	deadline = t0 + BENCH_MAX_SECONDS;
	for (unsigned i = 0; i < conc; i++)
		pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]);
	size_t total = 0;
	unsigned errors = 0;
	for (unsigned i = 0; i < conc; i++) {
		pthread_join(ws[i].thread, NULL);
		total += ws[i].n;
		errors += ws[i].errors;
	}
	double elapsed = now_s() - t0;
	uint64_t *all = malloc((total ? total : 1) * sizeof *all);
	size_t k = 0;
	for (unsigned i = 0; i < conc; i++) {
		memcpy(all + k, ws[i].lat_ns, ws[i].n * sizeof *all);
		k += ws[i].n;
		nng_close(ws[i].sock);
		free(ws[i].lat_ns);
	}
	qsort(all, total, sizeof *all, cmp_u64);
#define PCT(p) (total ? (double)all[(size_t)((double)(total - 1) * (p))] / 1000.0 : 0.0)
	printf("| %-15s | %-4s | %3u | %8.0f | %8.1f | %8.1f | %8.1f | %6zu | %u |\n",
	       op_names[op], use_tls ? "tls" : "ipc", conc, (double)total / elapsed, PCT(0.50),
	       PCT(0.99), PCT(0.999), total, errors);
	fflush(stdout);
	free(all);
	free(ws);
}

int main(int argc, char **argv)
{
	use_tls = argc > 1 && !strcmp(argv[1], "tls");
	unsigned concs[8] = { 1, 16 };
	int nconc = 2;
	if (argc > 2) {
		nconc = 0;
		for (int i = 2; i < argc && nconc < 8; i++)
			concs[nconc++] = (unsigned)atoi(argv[i]);
	}
	harness_options o = { .with_tls = use_tls, .workers = 16 };
	if (getenv("BENCH_EXTRA_CONFIG"))
		o.extra_config = getenv("BENCH_EXTRA_CONFIG");
	if (!harness_start(&H, &o))
		return 1;
	if (!harness_create_key(&H, NULL, key_id))
		return 1;
	url = use_tls ? H.tls_url : H.ipc_url;

	/* One blob to decrypt over and over. */
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	e.key_id = key_id;
	e.plaintext.data = (uint8_t *)"benchmark plaintext, 32 bytes!!";
	e.plaintext.len = BENCH_PLAINTEXT;
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &e;
	Kms__Response *r = harness_call(&H, &req);
	if (!r || r->status != KMS__STATUS__OK)
		return 1;
	sample_blob_len = r->encrypt->ciphertext_blob.len;
	sample_blob = malloc(sample_blob_len);
	memcpy(sample_blob, r->encrypt->ciphertext_blob.data, sample_blob_len);
	kms__response__free_unpacked(r, NULL);

	/* The baseline: an echo server on the same transport, same certificates. */
	char echo_url[700];
	nng_socket rep;
	nng_rep0_open(&rep);
	if (use_tls)
		snprintf(echo_url, sizeof echo_url, "tls+tcp://127.0.0.1:%d", harness_free_port());
	else
		snprintf(echo_url, sizeof echo_url, "ipc://%s/echo.sock", H.dir);
	if (!listen_echo(rep, echo_url)) {
		fprintf(stderr, "bench: cannot listen on %s\n", echo_url);
		return 1;
	}
	echo_ctx echoes[64];
	for (int i = 0; i < 64; i++) {
		echoes[i].state = 0;
		nng_aio_alloc(&echoes[i].aio, echo_cb, &echoes[i]);
		nng_ctx_open(&echoes[i].ctx, rep);
		nng_ctx_recv(echoes[i].ctx, echoes[i].aio);
	}

	printf("| operation       | via  | conc | ops/s    | p50 us   | p99 us   | p99.9 us | ops    | errors |\n");
	printf("|-----------------|------|-----:|---------:|---------:|---------:|---------:|-------:|-------:|\n");
	for (int c = 0; c < nconc; c++) {
		run_cell(OP_ECHO, concs[c], echo_url);
		run_cell(OP_ENCRYPT, concs[c], url);
		run_cell(OP_DECRYPT, concs[c], url);
		run_cell(OP_GDK, concs[c], url);
	}
	nng_close(rep);
	return harness_stop(&H) == 0 ? 0 : 1;
}
