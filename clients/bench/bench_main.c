/*
 * kms-bench: a load generator for kmsd (docs/kms-bench.md). One thread and
 * libkmsclient's asynchronous calls keep --concurrency requests in flight
 * on one connection; --serve-echo runs the echo server --op echo measures
 * the transport against.
 */
#include "clients/bench/bench.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	OPT_URL = CLI_OPT_COMMAND,
	OPT_OP,
	OPT_CONCURRENCY,
	OPT_CONNECTIONS,
	OPT_DURATION,
	OPT_REQUESTS,
	OPT_BATCH,
	OPT_PLAINTEXT_BYTES,
	OPT_KEY,
	OPT_JSON,
	OPT_LABEL,
	OPT_WARMUP,
	OPT_SERVE_ECHO,
	OPT_HELP,
	OPT_VERSION,
};

static const struct option options[] = {
	{ "help", no_argument, NULL, OPT_HELP },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ "url", required_argument, NULL, CLI_OPT_ENDPOINT },
	{ "op", required_argument, NULL, OPT_OP },
	{ "concurrency", required_argument, NULL, OPT_CONCURRENCY },
	{ "connections", required_argument, NULL, OPT_CONNECTIONS },
	{ "duration", required_argument, NULL, OPT_DURATION },
	{ "requests", required_argument, NULL, OPT_REQUESTS },
	{ "batch", required_argument, NULL, OPT_BATCH },
	{ "plaintext-bytes", required_argument, NULL, OPT_PLAINTEXT_BYTES },
	{ "key", required_argument, NULL, OPT_KEY },
	{ "json", required_argument, NULL, OPT_JSON },
	{ "label", required_argument, NULL, OPT_LABEL },
	{ "warmup", required_argument, NULL, OPT_WARMUP },
	{ "serve-echo", required_argument, NULL, OPT_SERVE_ECHO },
	CLI_CONN_OPTIONS,
	{ 0 },
};

static const char usage_text[] =
	"usage: kms-bench --url URL --op OP [--concurrency N] [--connections N]\n"
	"                 [--duration S] [--requests MAX] [--warmup N]\n"
	"                 [--batch N] [--plaintext-bytes N]\n"
	"                 [--key KEY] [--json FILE] [--label K=V]... [CONNECTION]\n"
	"       kms-bench --serve-echo URL [--concurrency N] [--duration S]\n"
	"                 [--tls-cert FILE --tls-key FILE [--tls-ca FILE]]\n"
	"Load kmsd with one operation (or a mix) and report throughput, latency\n"
	"percentiles and this process's CPU per request; or serve the echo the\n"
	"transport is measured against. docs/kms-bench.md says more.\n"
	"\n"
	"  --url URL             kmsd (or the echo server): ipc://PATH, tls+tcp://HOST:PORT\n"
	"                        (the same as --endpoint)\n"
	"  --op OP               encrypt, decrypt, generate-data-key, batch-decrypt,\n"
	"                        sign-p256 (Sign with an ECC_P256 key), sign-ed25519\n"
	"                        (Sign with an ED25519 key), generate-mac (with an\n"
	"                        HMAC_SHA256 key), mixed (2 encrypt : 2 decrypt :\n"
	"                        1 generate-data-key, in turn) or echo (the same\n"
	"                        request bytes to an echo server, whose reply must\n"
	"                        be them)\n"
	"  --concurrency N       requests in flight, 1..1024 (default 16); with\n"
	"                        --serve-echo, the server's contexts (default 64)\n"
	"  --connections N       spread them over N clients, one connection each,\n"
	"                        1..64 and at most --concurrency (default 1)\n"
	"  --duration S          stop starting requests after S seconds, 1..86400\n"
	"                        (default 10); with --serve-echo, serve S seconds\n"
	"                        (default: until SIGINT or SIGTERM)\n"
	"  --requests MAX        and after MAX requests, 1..1000000000 (default 100000):\n"
	"                        whichever comes first\n"
	"  --warmup N            run N requests first, not counted (default 0)\n"
	"  --batch N             batch-decrypt's items a request, 1..1000 (default 100)\n"
	"  --plaintext-bytes N   the plaintext encrypted, or the message signed or\n"
	"                        MACed (raw), 1..4096 (default 32; 64 for sign-p256,\n"
	"                        sign-ed25519 and generate-mac)\n"
	"  --key KEY             the key (id or alias; of the spec the operation\n"
	"                        needs); without it a key of that spec is made for\n"
	"                        the run, granted to whoever this acts as, and\n"
	"                        scheduled for deletion when the run ends\n"
	"  --json FILE           append the run's JSON line to FILE\n"
	"  --label K=V           a label in the JSON line, repeatable\n"
	"  --timeout MS          each request's timeout (default 5000): one that\n"
	"                        passes it counts as a TIMEOUT error\n"
	"\n";

static const char exit_text[] =
	"Exit status: 0 every request succeeded, 1 a request failed, 2 usage error,\n"
	"3 cannot reach kmsd or set the run up. Speed never fails a run.\n";

static void usage(FILE *to)
{
	fprintf(to, "%s%s\n%s", usage_text, cli_conn_help, exit_text);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", BENCH_PROG);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see %s --help)\n", BENCH_PROG);
	return CLI_EXIT_USAGE;
}

static int number(const char *arg, const char *flag, uint32_t min, uint32_t max,
                  uint32_t *out)
{
	if (cli_parse_u32(arg, min, max, out))
		return CLI_PROCEED;
	fprintf(stderr, "%s: %s takes %u..%u (see %s --help)\n", BENCH_PROG, flag, min, max,
	        BENCH_PROG);
	return CLI_EXIT_USAGE;
}

/* One --plaintext-bytes bound serves both the plaintext and the message. */
_Static_assert(KMS_SIGN_MESSAGE_MAX == KMS_ENCRYPT_MAX_PLAINTEXT, "one bound for both");

typedef struct given {
	bool concurrency, duration, batch, plaintext;
} given;

/* One option of kms-bench's own. */
static int own_option(bench_config *cfg, given *g, int opt, const char *arg)
{
	const char *why;
	switch (opt) {
	case OPT_OP:
		return bench_op_parse(arg, &cfg->op) ? CLI_PROCEED
		                                     : usage_error("unknown --op \"%s\"", arg);
	case OPT_CONCURRENCY:
		g->concurrency = true;
		return number(arg, "--concurrency", 1, BENCH_CONCURRENCY_MAX, &cfg->concurrency);
	case OPT_CONNECTIONS:
		return number(arg, "--connections", 1, BENCH_CONNECTIONS_MAX, &cfg->connections);
	case OPT_DURATION:
		g->duration = true;
		return number(arg, "--duration", 1, BENCH_DURATION_MAX_S, &cfg->duration_s);
	case OPT_REQUESTS:
		return number(arg, "--requests", 1, BENCH_REQUESTS_MAX, &cfg->requests);
	case OPT_WARMUP:
		return number(arg, "--warmup", 0, BENCH_REQUESTS_MAX, &cfg->warmup);
	case OPT_BATCH:
		g->batch = true;
		return number(arg, "--batch", 1, KMS_BATCH_MAX, &cfg->batch);
	case OPT_PLAINTEXT_BYTES:
		g->plaintext = true;
		return number(arg, "--plaintext-bytes", KMS_ENCRYPT_MIN_PLAINTEXT,
		              KMS_ENCRYPT_MAX_PLAINTEXT, &cfg->plaintext_bytes);
	case OPT_KEY:
		cfg->key = arg;
		return CLI_PROCEED;
	case OPT_JSON:
		cfg->json_path = arg;
		return CLI_PROCEED;
	case OPT_LABEL:
		if (cfg->labels.n >= BENCH_LABELS_MAX)
			return usage_error("at most %d labels (%s)", BENCH_LABELS_MAX, arg);
		why = cli_pairs_add(&cfg->labels, arg);
		if (why) {
			fprintf(stderr, "%s: --label %s: %s\n", BENCH_PROG, arg, why);
			return CLI_EXIT_USAGE;
		}
		return CLI_PROCEED;
	case OPT_SERVE_ECHO:
		cfg->serve_echo = arg;
		return CLI_PROCEED;
	default:
		return usage_error("option not handled");
	}
}

static int parse(struct cli *cli, bench_config *cfg, int argc, char **argv)
{
	given g = { 0 };
	bool has_op = false;
	opterr = 0;
	for (;;) { /* one option each time round: bounded by argc */
		int opt = getopt_long(argc, argv, ":h", options, NULL);
		if (opt == -1)
			break;
		int code = CLI_PROCEED;
		if (opt == 'h' || opt == OPT_HELP) {
			usage(stdout);
			return CLI_EXIT_OK;
		} else if (opt == OPT_VERSION) {
			printf("%s %s\n", BENCH_PROG, KMS_VERSION);
			return CLI_EXIT_OK;
		} else if (opt == '?') {
			return usage_error("unknown option %s", argv[optind - 1]);
		} else if (opt == ':') {
			return usage_error("option %s needs a value", argv[optind - 1]);
		} else if (opt >= CLI_OPT_ENDPOINT && opt < CLI_OPT_COMMAND) {
			if (cli_common_option(cli, opt, optarg) != 0)
				return CLI_EXIT_USAGE;
		} else {
			has_op |= opt == OPT_OP;
			code = own_option(cfg, &g, opt, optarg);
		}
		if (code != CLI_PROCEED)
			return code;
	}
	if (optind < argc)
		return usage_error("unexpected argument \"%s\"", argv[optind]);
	if (cfg->serve_echo) {
		if (has_op || cli->conn.n_endpoints)
			return usage_error("--serve-echo serves; it takes no --op or --url");
		if (!g.concurrency)
			cfg->concurrency = 64;
		if (!g.duration)
			cfg->duration_s = 0;
		return CLI_PROCEED;
	}
	if (!has_op)
		return usage_error("give --op (encrypt, decrypt, generate-data-key, "
		                   "batch-decrypt, sign-p256, sign-ed25519, generate-mac, "
		                   "mixed or echo)");
	if (cli->conn.n_endpoints != 1)
		return usage_error("give one --url");
	if (cfg->connections > cfg->concurrency)
		return usage_error("--connections %u is more than --concurrency %u",
		                   cfg->connections, cfg->concurrency);
	if (g.batch && cfg->op != BENCH_OP_BATCH_DECRYPT)
		return usage_error("--batch is for --op batch-decrypt");
	if (!g.plaintext && bench_op_has_message(cfg->op))
		cfg->plaintext_bytes = BENCH_DEFAULT_MESSAGE;
	return CLI_PROCEED;
}

static const char *transport_of(const char *url)
{
	if (strncmp(url, "ipc://", 6) == 0)
		return "ipc";
	if (strncmp(url, "tls+", 4) == 0)
		return "tls";
	return "tcp";
}

static void close_all(kms_client **clients, size_t n)
{
	for (size_t i = 0; i < n; i++)
		kms_client_close(clients[i]);
}

/* One measured run against kmsd or the echo server. */
static int run(struct cli *cli, bench_config *cfg)
{
	kms_client *clients[BENCH_CONNECTIONS_MAX] = { NULL };
	size_t n = 0;
	bench_plan *plan = NULL;
	bench_result *result = NULL;
	int code = CLI_EXIT_OK;
	for (; n < cfg->connections; n++)
		if ((code = cli_connect(cli, &clients[n])) != CLI_EXIT_OK)
			goto out;
	cfg->url = cli->conn.endpoints[0];
	cfg->transport = transport_of(cfg->url);
	cfg->timeout_ms = cli->conn.timeout_ms ? cli->conn.timeout_ms
	                                       : KMS_CLIENT_DEFAULT_TIMEOUT_MS;
	const char *credentials = cli->conn.credentials ? cli->conn.credentials
	                                                : getenv(KMS_CREDENTIALS_ENV);
	if (credentials && !credentials[0])
		credentials = NULL;
	if ((code = bench_plan_make(cfg, clients[0], credentials, &plan)) != CLI_EXIT_OK)
		goto out;
	result = calloc(1, sizeof *result);
	if (!result) {
		fprintf(stderr, "%s: out of memory\n", BENCH_PROG);
		code = CLI_EXIT_UNREACHABLE;
		goto out;
	}
	if (cfg->warmup &&
	    !bench_load_run(cfg, plan, clients, n, cfg->warmup, cfg->duration_s, NULL)) {
		code = CLI_EXIT_REFUSED;
		goto out;
	}
	bool drained = bench_load_run(cfg, plan, clients, n, cfg->requests, cfg->duration_s,
	                              result);
	bench_report_table(cfg, result);
	code = bench_report_json(cfg, result);
	if (code == CLI_EXIT_OK && (!drained || result->ok != result->requests ||
	                            result->requests == 0))
		code = CLI_EXIT_REFUSED;
out:
	bench_plan_free(plan, clients[0]);
	close_all(clients, n);
	free(result);
	return code;
}

int main(int argc, char **argv)
{
	/* Before NNG starts a thread: SIGINT and SIGTERM wait for
	 * --serve-echo's sigwait, and a closed peer is an error, not a
	 * signal. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	bench_config cfg = {
		.concurrency = BENCH_DEFAULT_CONCURRENCY,
		.connections = 1,
		.duration_s = BENCH_DEFAULT_DURATION_S,
		.requests = BENCH_DEFAULT_REQUESTS,
		.batch = BENCH_DEFAULT_BATCH,
		.plaintext_bytes = BENCH_DEFAULT_PLAINTEXT,
	};
	struct cli cli = { .prog = BENCH_PROG, .out = stdout, .err = stderr };
	snprintf(cli.path, sizeof cli.path, "%s", BENCH_PROG);
	signal(SIGPIPE, SIG_IGN);
	int code = parse(&cli, &cfg, argc, argv);
	if (code == CLI_PROCEED) {
		if (cfg.serve_echo) {
			pthread_sigmask(SIG_BLOCK, &set, NULL);
			code = bench_echo_serve(&cli, &cfg);
		} else {
			code = run(&cli, &cfg);
		}
	}
	cli_pairs_free(&cfg.labels);
	free(cli.conn.env_endpoints);
	return code;
}
