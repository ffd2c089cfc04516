/*
 * bench.h: what the files of kms-bench share (docs/kms-bench.md). One
 * thread and libkmsclient's asynchronous calls keep --concurrency requests
 * in flight on one kms_client; latencies go into a fixed histogram; one
 * human table on stdout and one JSON line per run.
 */
#ifndef KMS_BENCH_H
#define KMS_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/client.h>
#include <kms/client_async.h>

#include "clients/cli/cli.h"

#define BENCH_PROG "kms-bench"
#define BENCH_CONCURRENCY_MAX KMS_CLIENT_ASYNC_MAX
#define BENCH_DEFAULT_CONCURRENCY 16
#define BENCH_DEFAULT_DURATION_S 10
#define BENCH_DEFAULT_REQUESTS 100000
#define BENCH_DEFAULT_BATCH 100
#define BENCH_DEFAULT_PLAINTEXT 32
#define BENCH_DEFAULT_MESSAGE 64   /* sign-p256, sign-ed25519, generate-mac */
#define BENCH_DURATION_MAX_S 86400
#define BENCH_REQUESTS_MAX 1000000000u
#define BENCH_LABELS_MAX 16
#define BENCH_CONNECTIONS_MAX 64
/* Error counts by status name: the kms_status names, and TIMEOUT. */
#define BENCH_ERROR_KINDS (KMS_STATUS_MAX + 2)
#define BENCH_ERROR_TIMEOUT (KMS_STATUS_MAX + 1)

typedef enum bench_op {
	BENCH_OP_ENCRYPT,
	BENCH_OP_DECRYPT,
	BENCH_OP_GENERATE_DATA_KEY,
	BENCH_OP_BATCH_DECRYPT,
	BENCH_OP_SIGN_P256,
	BENCH_OP_SIGN_ED25519,
	BENCH_OP_GENERATE_MAC,
	BENCH_OP_MIXED,
	BENCH_OP_ECHO,
} bench_op;

/* ---- the command line (bench_main.c) ---- */

typedef struct bench_config {
	bench_op op;
	uint32_t concurrency;
	uint32_t connections;    /* clients (one connection each), 1..concurrency */
	uint32_t duration_s;
	uint32_t requests;       /* the hard cap */
	uint32_t warmup;         /* requests run and not counted */
	uint32_t batch;          /* items per batch-decrypt request */
	uint32_t plaintext_bytes; /* the plaintext, or the message signed or MACed */
	const char *key;         /* NULL: make one for the run */
	const char *json_path;   /* NULL: no JSON line */
	const char *serve_echo;  /* the echo server's URL: that mode */
	struct cli_pairs labels;
	const char *transport;   /* "ipc", "tls", "tcp": from the URL */
	const char *url;         /* the first endpoint, for the table */
	int timeout_ms;          /* each request's, the client's */
} bench_config;

/* "encrypt", "batch-decrypt" ...; bench_op_parse is its inverse. */
const char *bench_op_name(bench_op op);
bool bench_op_parse(const char *name, bench_op *out);
/* Whether op sends a message to sign or MAC (its size is plaintext_bytes). */
bool bench_op_has_message(bench_op op);

/* ---- the latency histogram (bench_hist.c) ---- */

/* Log-linear buckets over nanoseconds: exact below 2^BENCH_HIST_SUB_BITS
 * ns, then 2^BENCH_HIST_SUB_BITS buckets per power of two (relative error
 * under 1/128), up to 2^BENCH_HIST_TOP_BITS ns (about 18 minutes; longer
 * goes in the last bucket). Fixed size: nothing allocated per sample. */
#define BENCH_HIST_SUB_BITS 7
#define BENCH_HIST_TOP_BITS 40
#define BENCH_HIST_BUCKETS ((BENCH_HIST_TOP_BITS - BENCH_HIST_SUB_BITS + 1) << BENCH_HIST_SUB_BITS)

typedef struct bench_hist {
	uint64_t counts[BENCH_HIST_BUCKETS];
	uint64_t n;
	uint64_t max_ns;
} bench_hist;

void bench_hist_reset(bench_hist *h);
void bench_hist_add(bench_hist *h, uint64_t ns);
/* The value at quantile q (0..1) in microseconds: the upper edge of the
 * bucket holding it, never above the largest sample. 0 when empty. */
double bench_hist_quantile_us(const bench_hist *h, double q);

/* ---- one measured run (bench_load.c) ---- */

typedef struct bench_result {
	uint64_t requests;  /* sent and answered (or failed) */
	uint64_t ok;
	uint64_t errors[BENCH_ERROR_KINDS]; /* by kms_status; [BENCH_ERROR_TIMEOUT] */
	double seconds;
	double cpu_us_per_op;
	bench_hist hist;
	char first_error[KMS_ERROR_MESSAGE_MAX + 32];
} bench_result;

/* The requests a run sends, built once (bench_ops.c). */
typedef struct bench_plan bench_plan;

/* Sets the run up through the blocking calls: the key (made when cfg has
 * none, of the spec the operation needs, with a grant of it to whoever
 * kms-bench acts as), the ciphertext decrypt needs, the requests. echo:
 * the request packed once, signed with the credentials file when one is
 * given. Returns an exit code (the reason printed). */
int bench_plan_make(const bench_config *cfg, kms_client *client, const char *credentials,
                    bench_plan **out);
/* Schedules the deletion of a key the plan made; frees it. */
void bench_plan_free(bench_plan *plan, kms_client *client);

/* Starts the next request of plan on client; seq numbers the requests of
 * the run (mixed picks its operation by it). */
kms_status bench_plan_start(const bench_plan *plan, kms_client *client, uint64_t seq,
                            kms_async_done done, void *arg, kms_error *err);
/* Whether a result is a success of the plan's operation; false puts the
 * status that counts in *status (and a line in why). */
bool bench_plan_check(const bench_plan *plan, const kms_async_result *r, kms_status *status,
                      char *why, size_t why_cap);

/* Runs requests (at most max, for at most duration_s; recording when
 * result is not NULL) with cfg->concurrency in flight, chain i on
 * clients[i % n_clients]. Returns false when it could not wait for them
 * all (they are then canceled by the clients' close). */
bool bench_load_run(const bench_config *cfg, const bench_plan *plan,
                    kms_client *const *clients, size_t n_clients, uint64_t max,
                    uint32_t duration_s, bench_result *result);

/* ---- output (bench_report.c) ---- */

/* The human table, on stdout. */
void bench_report_table(const bench_config *cfg, const bench_result *r);
/* The JSON line (docs/kms-bench.md), appended to cfg->json_path. Returns
 * an exit code. */
int bench_report_json(const bench_config *cfg, const bench_result *r);
/* The status name an error count is kept under. */
const char *bench_error_name(size_t kind);

/* ---- the echo server (bench_echo.c) ---- */

/* Serves cfg->serve_echo until SIGINT or SIGTERM (or --duration): every
 * request's bytes come back as its reply. Returns an exit code. */
int bench_echo_serve(struct cli *cli, const bench_config *cfg);

#endif
