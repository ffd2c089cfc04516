/*
 * bench_kmsd: Encrypt, Decrypt and GenerateDataKey through a real kmsd, at
 * several numbers of requests in flight, beside a raw NNG REQ/REP echo of
 * the same bytes on the same transport in the same run (the transport's own
 * limit).
 *
 *   bench_kmsd [ipc|tls] [in-flight...]      (default: 1 16; each 1..256)
 *
 * Run through scripts/bench (it makes the token and points KMS_TEST_* at
 * it). Every cell is bounded: at most BENCH_MAX_OPS operations or
 * BENCH_MAX_SECONDS seconds, whichever comes first (defaults 100000 and 4;
 * the ctest smoke sets them small). A benchmark, not a test: it exits
 * non-zero only when a request fails.
 *
 * Requests over tls+tcp:// must be signed (docs/request-signing.md): every
 * tls cell signs every request, and the echo baseline sends the same signed
 * bytes. The ipc run adds "the authorization step's cost": Encrypt unsigned
 * (the uid mapped in [ipc_principals]) against Encrypt signed with an
 * access key, by the same principal, alternated for BENCH_ROUNDS rounds
 * (default 3) at each level, then the client's signing alone.
 *
 * Each signed cell signs with an access key of its own, made before the
 * cell and revoked after it, so that no cell meets kmsd's per-access-key
 * replay share (262,144 remembered requests in 300 s).
 *
 * BENCH_REPLICAS=N (1..3, ipc only; under tests/support/with-postgres):
 * N kmsd replicas on one PostgreSQL store and one token
 * (docs/scale-out.md), every client socket dialled to all of them (NNG's
 * REQ spreads the requests over its connections). scripts/bench-replicas
 * runs 1, 2 and 3 in one go. With 2 or 3, a new replica is then started
 * on the fleet's log with no copy of its own, and the time its first copy
 * takes is printed (docs/scale-out.md, "One audit log for the fleet").
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

#include <kms/secmem.h>
#include <kms/sign.h>

#include "tests/support/harness.h"

#define BENCH_PLAINTEXT 32
#define BENCH_MAX_INFLIGHT 256
#define BENCH_MAX_LEVELS 8
#define BENCH_MAX_ROUNDS 9
#define SIGN_MAX_OPS 200000
#define SIGN_MAX_SECONDS 1.0
/* The bench's own kmsd config: room for BENCH_MAX_INFLIGHT connections from
 * one uid (the default per-uid ipc cap is 32) and over TLS. */
#define BENCH_CONFIG                                                           \
	"[listen]\nipc_max_connections = 512\nipc_max_connections_per_uid = 512\n" \
	"[limits]\nmax_tls_connections = 512\n"

typedef enum bench_op { OP_ECHO, OP_ENCRYPT, OP_DECRYPT, OP_GDK } bench_op;
static const char *op_names[] = { "nng-echo", "Encrypt", "Decrypt", "GenerateDataKey" };

/* An access key to sign with; id[0] == '\0': requests go unsigned. */
typedef struct bench_cred {
	char id[24];
	uint8_t secret[KMS_SIGN_SECRET_LEN];
} bench_cred;

/* What one cell measured. */
typedef struct cell_result {
	double ops_s, p50_us, p99_us, p999_us;
	double kmsd_cpu_us, bench_cpu_us; /* CPU time per op; < 0: not known */
	size_t ops;
	unsigned errors;
} cell_result;

static harness H;
#define BENCH_REPLICAS_MAX 3
static harness replicas[BENCH_REPLICAS_MAX]; /* [0] unused: H is the first */
static int n_replicas = 1;
static char key_id[35];
static uint8_t *sample_blob;
static size_t sample_blob_len;
static bool use_tls;
static size_t max_ops = 100000;
static double max_seconds = 4.0;
static unsigned rounds = 3;

typedef struct worker {
	pthread_t thread;
	bench_op op;
	const bench_cred *cred;
	nng_socket sock;
	uint64_t *lat_ns;
	size_t n;
	size_t cap;
	unsigned errors;
	char first_error[200];
} worker;

static atomic_size_t ops_left;
static atomic_uint next_request;
static double deadline;

/* Stops kmsd (it must not outlive the bench) and exits 1. */
static _Noreturn void bench_fail(void)
{
	if (H.pid > 0)
		(void)harness_stop(&H);
	exit(1);
}

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

/* Signs req with cred, as harness_sign does: req->credential points into
 * *c and mac. */
static bool sign_request(Kms__Request *req, const bench_cred *cred, Kms__Credential *c,
                         uint8_t mac[KMS_SIGN_MAC_LEN])
{
	kms__credential__init(c);
	int64_t ts = (int64_t)time(NULL);
	if (kms_sign_request_mac(req, cred->secret, ts, mac) != KMS_OK)
		return false;
	c->access_key_id = (char *)(uintptr_t)cred->id;
	c->timestamp_unix = ts;
	c->mac.data = mac;
	c->mac.len = KMS_SIGN_MAC_LEN;
	req->credential = c;
	return true;
}

/* Packs one request of op into buf, signed when cred has an id; every
 * request id of the run is new (a signed one must be, for replay). */
static size_t pack_request(bench_op op, const bench_cred *cred, uint8_t *buf, size_t cap)
{
	static const uint8_t plaintext[BENCH_PLAINTEXT] = "benchmark plaintext, 32 bytes!!";
	char id[32];
	snprintf(id, sizeof id, "b-%u", atomic_fetch_add(&next_request, 1));
	Kms__Request req = KMS__REQUEST__INIT;
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	Kms__DecryptRequest d = KMS__DECRYPT_REQUEST__INIT;
	Kms__GenerateDataKeyRequest g = KMS__GENERATE_DATA_KEY_REQUEST__INIT;
	Kms__Credential c;
	uint8_t mac[KMS_SIGN_MAC_LEN];
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
	if (cred && cred->id[0] && !sign_request(&req, cred, &c, mac))
		return 0;
	size_t n = kms__request__get_packed_size(&req);
	if (n > cap)
		return 0;
	return kms__request__pack(&req, buf);
}

static void note_error(worker *w, const char *what)
{
	if (w->errors++ == 0)
		snprintf(w->first_error, sizeof w->first_error, "%s", what);
}

/* Whether reply is kmsd's OK (or, for the echo, anything). */
static void check_reply(worker *w, const void *reply, size_t len)
{
	if (w->op == OP_ECHO)
		return;
	Kms__Response *r = kms__response__unpack(NULL, len, reply);
	if (!r) {
		note_error(w, "a reply that does not unpack");
		return;
	}
	if (r->status != KMS__STATUS__OK) {
		const ProtobufCEnumValue *v =
		        protobuf_c_enum_descriptor_get_value(&kms__status__descriptor, (int)r->status);
		char what[200];
		snprintf(what, sizeof what, "%s: %s", v ? v->name : "status ?", r->message);
		note_error(w, what);
	}
	kms__response__free_unpacked(r, NULL);
}

/* One round trip: packed (and signed) inside the timed span. */
static bool round_trip(worker *w, uint64_t *ns)
{
	uint8_t buf[512];
	uint64_t t0 = now_ns();
	size_t n = pack_request(w->op, w->cred, buf, sizeof buf);
	if (n == 0) {
		note_error(w, "cannot pack or sign the request");
		return false;
	}
	void *reply = NULL;
	size_t len = 0;
	if (nng_send(w->sock, buf, n, 0) != 0 ||
	    nng_recv(w->sock, &reply, &len, NNG_FLAG_ALLOC) != 0) {
		note_error(w, "no reply (send or receive failed or timed out)");
		return false;
	}
	*ns = now_ns() - t0;
	unsigned before = w->errors;
	check_reply(w, reply, len);
	nng_free(reply, len);
	return w->errors == before;
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	while (now_s() < deadline) {
		size_t left = atomic_load(&ops_left);
		if (left == 0)
			break;
		if (!atomic_compare_exchange_weak(&ops_left, &left, left - 1))
			continue;
		uint64_t ns;
		if (round_trip(w, &ns) && w->n < w->cap)
			w->lat_ns[w->n++] = ns;
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
	nng_socket_set_ms(*s, NNG_OPT_SENDTIMEO, 10000);
	nng_socket_set_ms(*s, NNG_OPT_REQ_RESENDTIME, 0);
	if (nng_dial(*s, to, NULL, 0) != 0)
		return false;
	/* kmsd's socket: to every replica (blocking: each is listening). */
	for (int i = 1; i < n_replicas && strcmp(to, H.ipc_url) == 0; i++)
		if (nng_dial(*s, replicas[i].ipc_url, NULL, 0) != 0)
			return false;
	return true;
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
	nng_tls_config *cfg = NULL;
	nng_listener l;
	bool ok = cert_pem && key_pem && nng_tls_config_alloc(&cfg, NNG_TLS_MODE_SERVER) == 0 &&
	          nng_tls_config_own_cert(cfg, cert_pem, key_pem, NULL) == 0 &&
	          nng_listener_create(&l, rep, to) == 0 &&
	          nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, cfg) == 0 &&
	          nng_listener_start(l, 0) == 0;
	if (cfg) /* the listener holds its own reference */
		nng_tls_config_free(cfg);
	free(cert_pem);
	free(key_pem);
	return ok;
}

/* Connects conc workers and warms each connection up with one request of
 * the cell's own kind (TLS handshakes and the access key's first lookup
 * are not what is measured); a failed warm-up counts as an error. */
static worker *cell_open(bench_op op, unsigned conc, const char *to, const bench_cred *cred)
{
	worker *ws = calloc(conc, sizeof *ws);
	if (!ws)
		return NULL;
	for (unsigned i = 0; i < conc; i++) {
		ws[i].op = op;
		ws[i].cred = cred;
		ws[i].cap = max_ops;
		ws[i].lat_ns = malloc(ws[i].cap * sizeof(uint64_t));
		if (!ws[i].lat_ns || !open_client(&ws[i].sock, to)) {
			fprintf(stderr, "bench: cannot connect to %s\n", to);
			bench_fail();
		}
	}
	for (unsigned i = 0; i < conc; i++) {
		uint64_t ns;
		(void)round_trip(&ws[i], &ns);
	}
	return ws;
}

/* Latency percentiles and totals of a finished cell; closes its sockets. */
static cell_result cell_close(worker *ws, unsigned conc, double elapsed, const char *label)
{
	cell_result res = { 0 };
	for (unsigned i = 0; i < conc; i++) {
		res.ops += ws[i].n;
		res.errors += ws[i].errors;
	}
	uint64_t *all = malloc((res.ops ? res.ops : 1) * sizeof *all);
	size_t k = 0;
	for (unsigned i = 0; i < conc; i++) {
		if (ws[i].errors)
			fprintf(stderr, "bench: %s, %u in flight: %u errors; the first: %s\n", label,
			        conc, ws[i].errors, ws[i].first_error);
		memcpy(all + k, ws[i].lat_ns, ws[i].n * sizeof *all);
		k += ws[i].n;
		(void)kms_nng_close_bounded(ws[i].sock, TEST_CLOSE_WAIT_MS);
		free(ws[i].lat_ns);
	}
	qsort(all, res.ops, sizeof *all, cmp_u64);
#define PCT(p) (res.ops ? (double)all[(size_t)((double)(res.ops - 1) * (p))] / 1000.0 : 0.0)
	res.ops_s = (double)res.ops / elapsed;
	res.p50_us = PCT(0.50);
	res.p99_us = PCT(0.99);
	res.p999_us = PCT(0.999);
#undef PCT
	free(all);
	free(ws);
	return res;
}

static unsigned total_errors;

/* CPU seconds used so far by every thread of process pid (0: this one), or
 * -1 when it cannot be read. Less disturbed by other load on the machine
 * than wall-clock throughput. */
static double cpu_s(pid_t pid)
{
	clockid_t clk = CLOCK_PROCESS_CPUTIME_ID;
	struct timespec ts;
	if ((pid > 0 && clock_getcpuclockid(pid, &clk) != 0) || clock_gettime(clk, &ts) != 0)
		return -1;
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The CPU seconds of every kmsd replica together (H alone without
 * BENCH_REPLICAS), or -1 when one cannot be read. */
static double replicas_cpu_s(void)
{
	double total = cpu_s(H.pid);
	for (int i = 1; i < n_replicas && total >= 0; i++) {
		double one = cpu_s(replicas[i].pid);
		total = one < 0 ? -1 : total + one;
	}
	return total;
}

static double per_op_us(double before, double after, size_t ops)
{
	return before < 0 || after < 0 || ops == 0 ? -1 : (after - before) * 1e6 / (double)ops;
}

/* A CPU figure for a table cell: "-" when not known. */
static const char *cpu_cell(double us, char *buf, size_t cap)
{
	if (us < 0)
		snprintf(buf, cap, "-");
	else
		snprintf(buf, cap, "%.1f", us);
	return buf;
}

/* One cell: conc workers, each its own connection, until max_ops in all
 * or max_seconds. Prints its row; label names it in the table. */
static cell_result run_cell(bench_op op, unsigned conc, const char *to, const bench_cred *cred,
                            const char *label)
{
	worker *ws = cell_open(op, conc, to, cred);
	if (!ws) {
		fprintf(stderr, "bench: out of memory\n");
		bench_fail();
	}
	atomic_store(&ops_left, max_ops);
	pid_t kmsd = op == OP_ECHO ? -1 : H.pid; /* the echo runs no kmsd code */
	double k0 = kmsd > 0 ? replicas_cpu_s() : -1, b0 = cpu_s(0);
	double t0 = now_s();
	deadline = t0 + max_seconds;
	for (unsigned i = 0; i < conc; i++)
		pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]);
	for (unsigned i = 0; i < conc; i++)
		pthread_join(ws[i].thread, NULL);
	double elapsed = now_s() - t0;
	double k1 = kmsd > 0 ? replicas_cpu_s() : -1, b1 = cpu_s(0);
	cell_result r = cell_close(ws, conc, elapsed, label);
	r.kmsd_cpu_us = per_op_us(k0, k1, r.ops);
	r.bench_cpu_us = per_op_us(b0, b1, r.ops);
	total_errors += r.errors;
	char kc[32], bc[32];
	printf("| %-15s | %-4s | %3u | %8.0f | %8.1f | %8.1f | %8.1f | %8s | %8s | %6zu | %u |\n",
	       label, use_tls ? "tls" : "ipc", conc, r.ops_s, r.p50_us, r.p99_us, r.p999_us,
	       cpu_cell(r.kmsd_cpu_us, kc, sizeof kc), cpu_cell(r.bench_cpu_us, bc, sizeof bc),
	       r.ops, r.errors);
	fflush(stdout);
	return r;
}

static void print_header(void)
{
	printf("| operation       | via  | conc | ops/s    | p50 us   | p99 us   | p99.9 us "
	       "| kmsd CPU us/op | bench CPU us/op | ops    | errors |\n");
	printf("|-----------------|------|-----:|---------:|---------:|---------:|---------:"
	       "|---------:|---------:|-------:|-------:|\n");
}

/* A fresh access key of HARNESS_ADMIN for one signed cell (at most two
 * are active: the bootstrap's and this one). */
static bool cell_key_create(bench_cred *cred)
{
	Kms__CreateAccessKeyRequest ca = KMS__CREATE_ACCESS_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	ca.principal = HARNESS_ADMIN;
	req.op_case = KMS__REQUEST__OP_CREATE_ACCESS_KEY;
	req.create_access_key = &ca;
	Kms__Response *r = harness_call(&H, &req);
	bool ok = r && r->status == KMS__STATUS__OK &&
	          r->result_case == KMS__RESPONSE__RESULT_CREATE_ACCESS_KEY &&
	          r->create_access_key->access_key &&
	          r->create_access_key->secret.len == KMS_SIGN_SECRET_LEN;
	if (ok) {
		snprintf(cred->id, sizeof cred->id, "%s",
		         r->create_access_key->access_key->access_key_id);
		memcpy(cred->secret, r->create_access_key->secret.data, KMS_SIGN_SECRET_LEN);
		kms_wipe(r->create_access_key->secret.data, KMS_SIGN_SECRET_LEN);
	} else {
		fprintf(stderr, "bench: cannot create an access key for " HARNESS_ADMIN ": %s\n",
		        r ? r->message : "no answer");
	}
	if (r)
		kms__response__free_unpacked(r, NULL);
	return ok;
}

static bool cell_key_revoke(bench_cred *cred)
{
	Kms__RevokeAccessKeyRequest rk = KMS__REVOKE_ACCESS_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	rk.access_key_id = cred->id;
	req.op_case = KMS__REQUEST__OP_REVOKE_ACCESS_KEY;
	req.revoke_access_key = &rk;
	Kms__Response *r = harness_call(&H, &req);
	bool ok = r && r->status == KMS__STATUS__OK;
	if (!ok)
		fprintf(stderr, "bench: cannot revoke access key %s: %s\n", cred->id,
		        r ? r->message : "no answer");
	if (r)
		kms__response__free_unpacked(r, NULL);
	kms_wipe(cred->secret, sizeof cred->secret);
	cred->id[0] = '\0';
	return ok;
}

/* run_cell with a fresh access key when signed (exits if none can be made). */
static cell_result run_kmsd_cell(bench_op op, unsigned conc, const char *to, bool signed_,
                                 const char *label)
{
	bench_cred cred = { .id = "" };
	if (signed_ && !cell_key_create(&cred))
		bench_fail();
	cell_result r = run_cell(op, conc, to, &cred, label);
	if (signed_ && !cell_key_revoke(&cred))
		bench_fail();
	return r;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* The medians (and the ops/s spread) of one side's rounds. */
typedef struct side_summary {
	double ops_s, p50_us, p99_us, kmsd_cpu_us, bench_cpu_us, lo, hi;
} side_summary;

static side_summary summarize(const cell_result *r, unsigned n)
{
	double ops[BENCH_MAX_ROUNDS], p50[BENCH_MAX_ROUNDS], p99[BENCH_MAX_ROUNDS];
	double kcpu[BENCH_MAX_ROUNDS], bcpu[BENCH_MAX_ROUNDS];
	for (unsigned i = 0; i < n; i++) {
		ops[i] = r[i].ops_s;
		p50[i] = r[i].p50_us;
		p99[i] = r[i].p99_us;
		kcpu[i] = r[i].kmsd_cpu_us;
		bcpu[i] = r[i].bench_cpu_us;
	}
	side_summary s = { .ops_s = median(ops, n), .p50_us = median(p50, n),
	                   .p99_us = median(p99, n), .kmsd_cpu_us = median(kcpu, n),
	                   .bench_cpu_us = median(bcpu, n) };
	s.lo = ops[0]; /* sorted by median() */
	s.hi = ops[n - 1];
	return s;
}

/* Encrypt unsigned (the uid mapped) and signed (an access key) by the same
 * principal at conc in flight, alternated: round i runs unsigned first when
 * i is even. */
static void authz_level(unsigned conc, const char *to, side_summary *plain,
                        side_summary *sig)
{
	cell_result u[BENCH_MAX_ROUNDS], s[BENCH_MAX_ROUNDS];
	for (unsigned i = 0; i < rounds; i++) {
		if (i % 2 == 0) {
			u[i] = run_kmsd_cell(OP_ENCRYPT, conc, to, false, "Encrypt");
			s[i] = run_kmsd_cell(OP_ENCRYPT, conc, to, true, "Encrypt signed");
		} else {
			s[i] = run_kmsd_cell(OP_ENCRYPT, conc, to, true, "Encrypt signed");
			u[i] = run_kmsd_cell(OP_ENCRYPT, conc, to, false, "Encrypt");
		}
	}
	*plain = summarize(u, rounds);
	*sig = summarize(s, rounds);
}

static void authz_summary(const unsigned *concs, int nconc, const side_summary *plain,
                          const side_summary *sig)
{
	printf("\nEncrypt 32 B over ipc://, principal " HARNESS_ADMIN
	       " both ways; median of %u rounds (ops/s: lowest-highest round)\n\n", rounds);
	printf("| in flight | unsigned ops/s | signed ops/s | signed / unsigned | "
	       "p50 us unsigned / signed | p99 us unsigned / signed | "
	       "kmsd CPU us/op unsigned / signed | bench CPU us/op unsigned / signed |\n");
	printf("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
	for (int c = 0; c < nconc; c++) {
		const side_summary *u = &plain[c], *s = &sig[c];
		char ku[32], ks[32], bu[32], bs[32];
		printf("| %u | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) | %.2f | %.0f / %.0f | "
		       "%.0f / %.0f | %s / %s | %s / %s |\n", concs[c], u->ops_s, u->lo, u->hi,
		       s->ops_s, s->lo, s->hi, u->ops_s > 0 ? s->ops_s / u->ops_s : 0.0, u->p50_us,
		       s->p50_us, u->p99_us, s->p99_us, cpu_cell(u->kmsd_cpu_us, ku, sizeof ku),
		       cpu_cell(s->kmsd_cpu_us, ks, sizeof ks),
		       cpu_cell(u->bench_cpu_us, bu, sizeof bu),
		       cpu_cell(s->bench_cpu_us, bs, sizeof bs));
	}
	fflush(stdout);
}

/* One bounded round of kms_sign_request_mac on the Encrypt request alone
 * (no packing of the whole request, no socket): this thread's CPU
 * microseconds per sign, and the wall-clock ones in *wall_us. */
static double sign_round(const bench_cred *cred, size_t *signs, double *wall_us)
{
	static const uint8_t plaintext[BENCH_PLAINTEXT] = "benchmark plaintext, 32 bytes!!";
	Kms__Request req = KMS__REQUEST__INIT;
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	char id[32];
	uint8_t mac[KMS_SIGN_MAC_LEN];
	e.key_id = key_id;
	e.plaintext.data = (uint8_t *)(uintptr_t)plaintext;
	e.plaintext.len = sizeof plaintext;
	req.schema_version = 1;
	req.request_id = id;
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &e;
	size_t n = 0;
	struct timespec c0, c1;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
	double t0 = now_s(), end = t0 + SIGN_MAX_SECONDS;
	for (; n < SIGN_MAX_OPS && (n % 256 != 0 || now_s() < end); n++) {
		snprintf(id, sizeof id, "b-%zu", n);
		if (kms_sign_request_mac(&req, cred->secret, (int64_t)time(NULL), mac) != KMS_OK) {
			fprintf(stderr, "bench: kms_sign_request_mac failed\n");
			bench_fail();
		}
	}
	*wall_us = (now_s() - t0) * 1e6 / (double)(n ? n : 1);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
	*signs = n;
	double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
	return cpu * 1e6 / (double)(n ? n : 1);
}

/* The client's signing cost alone, 1 thread, median of the rounds. */
static void sign_baseline(void)
{
	bench_cred cred = { .id = "" };
	memset(cred.secret, 0x5a, sizeof cred.secret);
	double cpu[BENCH_MAX_ROUNDS], wall[BENCH_MAX_ROUNDS];
	size_t signs = 0, n;
	for (unsigned i = 0; i < rounds; i++) {
		cpu[i] = sign_round(&cred, &n, &wall[i]);
		signs += n;
	}
	printf("\nclient signing alone (kms_sign_request_mac on the Encrypt 32 B request, "
	       "1 thread): %.2f us CPU per sign (%.2f us wall), median of %u rounds "
	       "(%zu signs)\n", median(cpu, rounds), median(wall, rounds), rounds, signs);
	fflush(stdout);
}

/* One blob to decrypt over and over. */
static bool make_sample_blob(void)
{
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	e.key_id = key_id;
	e.plaintext.data = (uint8_t *)"benchmark plaintext, 32 bytes!!";
	e.plaintext.len = BENCH_PLAINTEXT;
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &e;
	Kms__Response *r = harness_call(&H, &req);
	bool ok = r && r->status == KMS__STATUS__OK;
	if (ok) {
		sample_blob_len = r->encrypt->ciphertext_blob.len;
		sample_blob = malloc(sample_blob_len);
		ok = sample_blob != NULL;
		if (ok)
			memcpy(sample_blob, r->encrypt->ciphertext_blob.data, sample_blob_len);
	}
	if (r)
		kms__response__free_unpacked(r, NULL);
	return ok;
}

/* The baseline: an echo server on the same transport, same certificates. */
static echo_ctx echoes[BENCH_MAX_INFLIGHT];

static bool start_echo(nng_socket *rep, char *echo_url, size_t cap)
{
	if (use_tls)
		snprintf(echo_url, cap, "tls+tcp://127.0.0.1:%d", harness_free_port());
	else
		snprintf(echo_url, cap, "ipc://%s/echo.sock", H.dir);
	if (nng_rep0_open(rep) != 0 || !listen_echo(*rep, echo_url)) {
		fprintf(stderr, "bench: cannot listen on %s\n", echo_url);
		return false;
	}
	for (int i = 0; i < BENCH_MAX_INFLIGHT; i++) {
		echoes[i].state = 0;
		nng_aio_alloc(&echoes[i].aio, echo_cb, &echoes[i]);
		nng_ctx_open(&echoes[i].ctx, *rep);
		nng_ctx_recv(echoes[i].ctx, echoes[i].aio);
	}
	return true;
}

/* An environment bound within [lo, hi], or its default; false if malformed. */
static bool env_bound(const char *name, double lo, double hi, double *out)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return true;
	char *end;
	double x = strtod(v, &end);
	if (*end || x < lo || x > hi) {
		fprintf(stderr, "bench: %s=%s: give a number from %g to %g\n", name, v, lo, hi);
		return false;
	}
	*out = x;
	return true;
}

static bool read_bounds(void)
{
	double ops = (double)max_ops, r = rounds;
	if (!env_bound("BENCH_MAX_OPS", 1, 1000000, &ops) ||
	    !env_bound("BENCH_MAX_SECONDS", 0.1, 60, &max_seconds) ||
	    !env_bound("BENCH_ROUNDS", 1, BENCH_MAX_ROUNDS, &r))
		return false;
	max_ops = (size_t)ops;
	rounds = (unsigned)r;
	return true;
}

/* The in-flight levels from argv[2..]; false (with a reason) if one is not
 * 1..BENCH_MAX_INFLIGHT. */
static bool read_levels(int argc, char **argv, unsigned *concs, int *nconc)
{
	if (argc <= 2)
		return true;
	*nconc = 0;
	for (int i = 2; i < argc && *nconc < BENCH_MAX_LEVELS; i++) {
		char *end;
		unsigned long c = strtoul(argv[i], &end, 10);
		if (*end || c < 1 || c > BENCH_MAX_INFLIGHT) {
			fprintf(stderr, "bench: in flight %s: give 1 to %d\n", argv[i],
			        BENCH_MAX_INFLIGHT);
			return false;
		}
		concs[(*nconc)++] = (unsigned)c;
	}
	return true;
}

/* kmsd with the bench's config (and BENCH_EXTRA_CONFIG after it), one key. */
static bool start_kmsd(void)
{
	static char config[2048];
	const char *extra = getenv("BENCH_EXTRA_CONFIG");
	snprintf(config, sizeof config, "%s%s", BENCH_CONFIG, extra ? extra : "");
	/* bootstrap: HARNESS_ADMIN gets an access key, so the harness signs
	 * its own calls and may make the cells' keys. */
	harness_options o = { .with_tls = use_tls, .workers = 16, .bootstrap = true,
	                      .extra_config = config };
	if (!harness_start(&H, &o))
		return false;
	/* More replicas on H's store: they share its principal and access key. */
	static char store_of[700];
	snprintf(store_of, sizeof store_of, "%s/data", H.dir);
	for (int i = 1; i < n_replicas; i++) {
		char name[32];
		snprintf(name, sizeof name, "replica-%d", i + 1);
		harness *r = &replicas[i];
		if (!harness_replica_init(r, name))
			return false;
		memcpy(r->access_key_id, H.access_key_id, sizeof r->access_key_id);
		memcpy(r->secret, H.secret, sizeof r->secret);
		harness_options ro = { .workers = 16, .extra_config = config, .store_of = store_of };
		if (!harness_start(r, &ro))
			return false;
	}
	return harness_create_key(&H, NULL, key_id) && make_sample_blob();
}

/* The tree size of h's checkpoint; 0 when it has none yet (a replica
 * whose copy has not reached the fleet's signed size). */
static uint64_t checkpoint_size(harness *h)
{
	Kms__GetCheckpointRequest g = KMS__GET_CHECKPOINT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_GET_CHECKPOINT;
	req.get_checkpoint = &g;
	Kms__Response *r = harness_call(h, &req);
	uint64_t size = r && r->status == KMS__STATUS__OK && r->get_checkpoint
	                        ? r->get_checkpoint->tree_size : 0;
	if (r)
		kms__response__free_unpacked(r, NULL);
	return size;
}

/* A replica started with no copy of the fleet's log copies all of it from
 * the database: how long its start and its copy take for this run's log
 * (bounded: 600 s). */
static bool new_replica_copy(void)
{
	static harness D;
	char numbered[32];
	if (!harness_store_query(&H, NULL, "SELECT CAST(count(*) AS TEXT) FROM audit_entries",
	                         numbered, sizeof numbered))
		return false;
	uint64_t want = strtoull(numbered, NULL, 10);
	static char store_of[700];
	snprintf(store_of, sizeof store_of, "%s/data", H.dir);
	if (!harness_replica_init(&D, "replica-new"))
		return false;
	memcpy(D.access_key_id, H.access_key_id, sizeof D.access_key_id);
	memcpy(D.secret, H.secret, sizeof D.secret);
	harness_options o = { .workers = 2, .store_of = store_of };
	double t0 = now_s();
	if (!harness_start(&D, &o))
		return false;
	double ready = now_s() - t0;
	uint64_t size = 0;
	while ((size = checkpoint_size(&D)) < want && now_s() - t0 < 600)
		nanosleep(&(struct timespec){ .tv_nsec = 5000000 }, NULL);
	double done = now_s() - t0;
	bool ok = size >= want;
	printf("\nA new replica with no copy of the fleet's log: ready after %.2f s; its copy "
	       "reached the fleet's checkpoint (%llu of %llu entries numbered at its start) "
	       "after %.2f s: %.0f entries/s%s\n",
	       ready, (unsigned long long)size, (unsigned long long)want, done,
	       done > 0 ? (double)want / done : 0.0, ok ? "" : " (NOT reached within 600 s)");
	return harness_stop(&D) == 0 && ok;
}

/* BENCH_REPLICAS: 1..3, ipc only. */
static bool read_replicas(void)
{
	const char *v = getenv("BENCH_REPLICAS");
	if (!v)
		return true;
	n_replicas = atoi(v);
	if (n_replicas < 1 || n_replicas > BENCH_REPLICAS_MAX || (use_tls && n_replicas > 1) ||
	    (n_replicas > 1 && !getenv("KMS_TEST_PG_URL"))) {
		fprintf(stderr, "bench: BENCH_REPLICAS=%s: give 1..%d, over ipc, under "
		        "tests/support/with-postgres\n", v, BENCH_REPLICAS_MAX);
		return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "ipc") && strcmp(argv[1], "tls")) {
		fprintf(stderr, "usage: bench_kmsd [ipc|tls] [in-flight 1..%d ...]\n",
		        BENCH_MAX_INFLIGHT);
		return 2;
	}
	use_tls = argc > 1 && !strcmp(argv[1], "tls");
	unsigned concs[BENCH_MAX_LEVELS] = { 1, 16 };
	int nconc = 2;
	if (!read_bounds() || !read_levels(argc, argv, concs, &nconc) || !read_replicas())
		return 2;
	if (!start_kmsd())
		bench_fail();
	const char *url = use_tls ? H.tls_url : H.ipc_url;
	char echo_url[700];
	nng_socket rep;
	if (!start_echo(&rep, echo_url, sizeof echo_url))
		bench_fail();
	/* Over TLS the echo carries the same signed bytes as kmsd's cells. */
	bench_cred echo_cred = { .id = "" };
	if (use_tls) {
		snprintf(echo_cred.id, sizeof echo_cred.id, "%s", H.access_key_id);
		memcpy(echo_cred.secret, H.secret, sizeof echo_cred.secret);
	}

	print_header();
	for (int c = 0; c < nconc; c++) {
		run_cell(OP_ECHO, concs[c], echo_url, &echo_cred, op_names[OP_ECHO]);
		for (bench_op op = OP_ENCRYPT; op <= OP_GDK; op++)
			run_kmsd_cell(op, concs[c], url, use_tls, op_names[op]);
	}
	if (!use_tls) {
		side_summary plain[BENCH_MAX_LEVELS], sig[BENCH_MAX_LEVELS];
		printf("\nThe authorization step's cost: Encrypt unsigned (uid mapped) and signed "
		       "(access key), alternated\n\n");
		print_header();
		for (int c = 0; c < nconc; c++)
			authz_level(concs[c], url, &plain[c], &sig[c]);
		authz_summary(concs, nconc, plain, sig);
		sign_baseline();
	}
	kms_wipe(echo_cred.secret, sizeof echo_cred.secret);
	(void)kms_nng_close_bounded(rep, TEST_CLOSE_WAIT_MS);
	int stopped = 0;
	if (n_replicas > 1 && !new_replica_copy()) {
		fprintf(stderr, "bench: the new replica's copy failed\n");
		stopped = 1;
	}
	for (int i = 1; i < n_replicas; i++)
		stopped |= harness_stop(&replicas[i]);
	stopped |= harness_stop(&H);
	if (total_errors)
		fprintf(stderr, "bench: %u requests failed (see above)\n", total_errors);
	return stopped == 0 && total_errors == 0 ? 0 : 1;
}
