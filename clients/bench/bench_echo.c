/*
 * bench_echo.c: kms-bench --serve-echo URL. An NNG REP socket whose
 * contexts (--concurrency of them) each receive a request and send its
 * bytes back, driven by aio callbacks: what kms-bench --op echo measures
 * against, the transport's own round trip through the same client.
 */
#include "clients/bench/bench.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/tls/tls.h>

#include "common/nng_close.h"

/* A reply a client does not take within this long is dropped. */
#define ECHO_SEND_TIMEOUT_MS 5000
/* The largest request echoed. */
#define ECHO_MAX_MESSAGE (8u << 20)
/* A certificate or key file larger than this is not one. */
#define ECHO_PEM_MAX (256 * 1024)
#define ECHO_CLOSE_WAIT_MS 2000

typedef struct echo_ctx {
	nng_ctx ctx;
	nng_aio *aio;
	bool sending;
} echo_ctx;

static void echo_recv(echo_ctx *e)
{
	e->sending = false;
	nng_aio_set_timeout(e->aio, NNG_DURATION_INFINITE);
	nng_ctx_recv(e->ctx, e->aio);
}

/* The aio's callback: a request came (send it back) or a reply went (take
 * the next request). Closed or canceled: stop. */
static void echo_done(void *arg)
{
	echo_ctx *e = arg;
	int rv = nng_aio_result(e->aio);
	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
		if (e->sending)
			nng_msg_free(nng_aio_get_msg(e->aio));
		nng_aio_set_msg(e->aio, NULL);
		return;
	}
	if (e->sending) {
		if (rv != 0) /* not taken in time: the message is still ours */
			nng_msg_free(nng_aio_get_msg(e->aio));
		nng_aio_set_msg(e->aio, NULL);
		echo_recv(e);
		return;
	}
	if (rv != 0) {
		echo_recv(e);
		return;
	}
	/* The received message goes back as it is. */
	e->sending = true;
	nng_aio_set_timeout(e->aio, ECHO_SEND_TIMEOUT_MS);
	nng_ctx_send(e->ctx, e->aio);
}

static char *read_pem(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "%s: cannot read %s: %s\n", BENCH_PROG, path, strerror(errno));
		return NULL;
	}
	char *pem = kms_secure_alloc(ECHO_PEM_MAX + 1);
	size_t len = pem ? fread(pem, 1, ECHO_PEM_MAX + 1, f) : 0;
	fclose(f);
	if (!pem || len == 0 || len > ECHO_PEM_MAX) {
		fprintf(stderr, "%s: %s: %s\n", BENCH_PROG, path,
		        !pem ? "out of secure memory" : len == 0 ? "empty or unreadable"
		                                              : "too large for a PEM file");
		kms_secure_free(pem);
		return NULL;
	}
	pem[len] = '\0';
	return pem;
}

/* The server side of TLS: --tls-cert and --tls-key (required); --tls-ca
 * makes a client certificate signed by it required. */
static nng_tls_config *echo_tls(const struct cli *cli)
{
	const struct cli_conn *conn = &cli->conn;
	if (!conn->tls_cert || !conn->tls_key) {
		fprintf(stderr, "%s: --serve-echo over tls+tcp:// needs --tls-cert and "
		        "--tls-key (the server's)\n", BENCH_PROG);
		return NULL;
	}
	nng_tls_config *cfg = NULL;
	char *cert = read_pem(conn->tls_cert);
	char *key = cert ? read_pem(conn->tls_key) : NULL;
	int rv = -1;
	if (key && (rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_SERVER)) == 0 &&
	    (rv = nng_tls_config_own_cert(cfg, cert, key, NULL)) == 0) {
		if (conn->tls_ca)
			rv = nng_tls_config_ca_file(cfg, conn->tls_ca);
		if (rv == 0)
			rv = nng_tls_config_auth_mode(cfg, conn->tls_ca
			                                  ? NNG_TLS_AUTH_MODE_REQUIRED
			                                  : NNG_TLS_AUTH_MODE_NONE);
	}
	kms_secure_free(cert);
	kms_secure_free(key);
	if (rv != 0 && key)
		fprintf(stderr, "%s: TLS certificate %s / key %s / CA %s: %s\n", BENCH_PROG,
		        conn->tls_cert, conn->tls_key, conn->tls_ca ? conn->tls_ca : "(none)",
		        nng_strerror(rv));
	if (rv != 0 && cfg) {
		nng_tls_config_free(cfg);
		cfg = NULL;
	}
	return cfg;
}

static int echo_listen(const struct cli *cli, const bench_config *cfg, nng_socket sock)
{
	nng_listener listener;
	nng_tls_config *tls = NULL;
	int rv;
	bool is_tls = strncmp(cfg->serve_echo, "tls+", 4) == 0;
	if (is_tls && !(tls = echo_tls(cli)))
		return CLI_EXIT_USAGE;
	if ((rv = nng_listener_create(&listener, sock, cfg->serve_echo)) != 0 ||
	    (tls && (rv = nng_listener_set_ptr(listener, NNG_OPT_TLS_CONFIG, tls)) != 0) ||
	    (rv = nng_listener_start(listener, 0)) != 0) {
		fprintf(stderr, "%s: cannot listen on %s: %s\n", BENCH_PROG, cfg->serve_echo,
		        nng_strerror(rv));
		if (tls)
			nng_tls_config_free(tls);
		return CLI_EXIT_UNREACHABLE;
	}
	if (tls)
		nng_tls_config_free(tls); /* the listener holds its own reference */
	return CLI_EXIT_OK;
}

/* Waits for SIGINT or SIGTERM (blocked since main began), or for the
 * duration when one was given (0: none). */
static void echo_wait(uint32_t duration_s)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (duration_s == 0) {
		int sig;
		(void)sigwait(&set, &sig);
		return;
	}
	struct timespec end;
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += duration_s;
	for (;;) { /* bounded by end */
		struct timespec now, left;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > end.tv_sec ||
		    (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec))
			return;
		left.tv_sec = end.tv_sec - now.tv_sec;
		left.tv_nsec = end.tv_nsec - now.tv_nsec;
		if (left.tv_nsec < 0) {
			left.tv_sec--;
			left.tv_nsec += 1000000000L;
		}
		if (sigtimedwait(&set, NULL, &left) >= 0)
			return;
	}
}

int bench_echo_serve(struct cli *cli, const bench_config *cfg)
{
	nng_socket sock;
	int rv, code = CLI_EXIT_OK;
	if ((rv = nng_rep0_open(&sock)) != 0) {
		fprintf(stderr, "%s: cannot open a REP socket: %s\n", BENCH_PROG, nng_strerror(rv));
		return CLI_EXIT_UNREACHABLE;
	}
	echo_ctx *ctxs = calloc(cfg->concurrency, sizeof *ctxs);
	size_t n = 0;
	if (!ctxs) {
		fprintf(stderr, "%s: out of memory\n", BENCH_PROG);
		code = CLI_EXIT_UNREACHABLE;
		goto out;
	}
	(void)nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, ECHO_MAX_MESSAGE);
	for (; n < cfg->concurrency; n++) {
		if ((rv = nng_ctx_open(&ctxs[n].ctx, sock)) == 0 &&
		    (rv = nng_aio_alloc(&ctxs[n].aio, echo_done, &ctxs[n])) != 0)
			nng_ctx_close(ctxs[n].ctx);
		if (rv != 0) {
			fprintf(stderr, "%s: cannot make context %zu: %s\n", BENCH_PROG, n,
			        nng_strerror(rv));
			code = CLI_EXIT_UNREACHABLE;
			goto out;
		}
	}
	if ((code = echo_listen(cli, cfg, sock)) != CLI_EXIT_OK)
		goto out;
	for (size_t i = 0; i < n; i++)
		echo_recv(&ctxs[i]);
	printf("%s: echo serving %s with %u contexts\n", BENCH_PROG, cfg->serve_echo,
	       cfg->concurrency);
	fflush(stdout);
	echo_wait(cfg->duration_s);
out:;
	bool closed = kms_nng_close_bounded(sock, ECHO_CLOSE_WAIT_MS);
	if (closed) {
		for (size_t i = 0; i < n; i++)
			nng_aio_free(ctxs[i].aio); /* waits for its callback */
		free(ctxs);
	}
	return code;
}
