#include "kms/transport/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/tls/tls.h>

#include <kms/secmem.h>

#include "kms/pipeline/arena.h"
#include "common/log.h"
#include "common/error.h"
#include "common/nng_close.h"
#include "common/nng_stats.h"
#include "kms/pipeline/pipeline.h"
#include "kms/transport/ipc_server.h"
#include "kms/transport/metrics.h"

#define ARENA_CHUNK (256u << 10)
/* The causes of failed TLS connections in NNG's listener statistics. */
#define TLS_CAUSES 5
#define PEM_MAX (256u << 10)
/* REP contexts on the NNG socket: the requests over tls+tcp:// (and tcp://)
 * kmsd holds at once, queued for a worker, waiting for their audit entry
 * or being sent. Each holds at most one request (max_request_bytes) until
 * a worker takes it, beside the one NNG reads ahead on each connection. */
#define KMSD_NNG_CONTEXTS 256u

/* One REP context and the request it holds: a state machine driven by its
 * two aios' callbacks (NNG's threads), a worker and the pipeline's reply
 * function (a worker's or the audit writer's thread).
 *
 *   RECEIVING  a receive is posted on the context
 *   BUSY       it holds a request: queued for a worker, in the pipeline,
 *              or its reply being sent; then it posts the next receive
 *   IDLE       not started, or stopped by the drain
 *
 * The state changes under the server's lock. */
typedef enum slot_state { SLOT_IDLE, SLOT_RECEIVING, SLOT_BUSY } slot_state;

typedef struct slot {
	server *srv;
	struct slot *next; /* in the queue for the workers */
	slot_state state;
	nng_ctx ctx;
	bool ctx_open;
	nng_aio *recv_aio;
	nng_aio *send_aio;
	nng_msg *request;  /* received, until a worker takes it */
	nng_pipe pipe;     /* the request's connection */
	pipeline_peer peer;
	pipeline_pending pending; /* between its handler and its reply */
} slot;

typedef struct worker {
	server *srv;
	pthread_t thread;
	arena *arena;
	bool started;
} worker;

typedef struct listener {
	nng_listener l;
	caller_transport transport;
	const char *url;
} listener;

struct server {
	kmsd *d;
	ipc_server *ipc;  /* every ipc:// URL: kmsd's own (ipc_server.h) */
	nng_socket sock;
	bool sock_open;
	listener listeners[KMSD_MAX_LISTEN];
	size_t n_listeners;
	nng_tls_config *tls;
	slot *slots;
	unsigned n_slots;
	worker *workers;
	unsigned n_workers;
	pthread_mutex_t lock;   /* the slots' states, the queue, the counts below */
	pthread_cond_t queued;  /* a slot joined the queue, or the workers stop */
	pthread_cond_t settled; /* active fell to 0 while draining */
	slot *queue_head, *queue_tail;
	unsigned active;        /* slots not IDLE */
	bool draining;          /* no receive is posted any more */
	bool workers_stop;      /* the queue is empty and stays so */
	atomic_uint network_pipes; /* tls+tcp:// and tcp:// connections now */
	atomic_uint refused_pipes; /* closed past max_tls_connections, ever */
	/* Failed TLS connections, from NNG's listener statistics. */
	pthread_t reporter;
	bool reporting;
	bool reporter_stop;
	pthread_mutex_t reporter_lock;
	pthread_cond_t reporter_wake;
	uint64_t failed_reported[KMSD_MAX_LISTEN][TLS_CAUSES]; /* NNG's counts, by cause */
};

static caller_transport transport_of(const server *s, nng_pipe p)
{
	int id = nng_listener_id(nng_pipe_listener(p));
	for (size_t i = 0; i < s->n_listeners; i++)
		if (nng_listener_id(s->listeners[i].l) == id)
			return s->listeners[i].transport;
	return CALLER_TCP; /* unknown: treat as least trusted */
}

static void describe_peer(const server *s, nng_pipe p, pipeline_peer *peer)
{
	memset(peer, 0, sizeof *peer);
	peer->transport = transport_of(s, p);
	if (peer->transport == CALLER_IPC) {
		peer->has_uid = nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_UID, &peer->uid) == 0;
		return;
	}
	if (peer->transport == CALLER_TLS) {
		bool verified = false;
		peer->tls_verified = nng_pipe_get_bool(p, NNG_OPT_TLS_VERIFIED, &verified) == 0 &&
		                     verified;
	}
	nng_sockaddr sa;
	if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) != 0)
		return;
	char host[INET6_ADDRSTRLEN] = "?";
	if (sa.s_family == NNG_AF_INET) {
		inet_ntop(AF_INET, &sa.s_in.sa_addr, host, sizeof host);
		snprintf(peer->remote, sizeof peer->remote, "%s:%u", host,
		         (unsigned)ntohs(sa.s_in.sa_port));
	} else if (sa.s_family == NNG_AF_INET6) {
		inet_ntop(AF_INET6, sa.s_in6.sa_addr, host, sizeof host);
		snprintf(peer->remote, sizeof peer->remote, "[%s]:%u", host,
		         (unsigned)ntohs(sa.s_in6.sa_port));
	}
}

/* Posts slot's next receive, or stops it while draining. Called with the
 * lock held: the drain cancels only the receives it sees posted. NNG 1.5.2
 * completes a receive from its own threads, never inside nng_ctx_recv. */
static void slot_receive_locked(slot *sl)
{
	server *s = sl->srv;
	if (s->draining) {
		sl->state = SLOT_IDLE;
		if (--s->active == 0)
			pthread_cond_broadcast(&s->settled);
		return;
	}
	sl->state = SLOT_RECEIVING;
	nng_ctx_recv(sl->ctx, sl->recv_aio);
}

/* The slot's request is answered (or dropped): on to the next one. */
static void slot_next(slot *sl)
{
	pthread_mutex_lock(&sl->srv->lock);
	slot_receive_locked(sl);
	pthread_mutex_unlock(&sl->srv->lock);
}

/* The receive callback (NNG's thread): the request, with its peer
 * described while the connection is surely open, goes to the workers'
 * queue. */
static void on_received(void *arg)
{
	slot *sl = arg;
	server *s = sl->srv;
	int rv = nng_aio_result(sl->recv_aio);
	if (rv == 0) {
		sl->request = nng_aio_get_msg(sl->recv_aio);
		nng_aio_set_msg(sl->recv_aio, NULL);
		sl->pipe = nng_msg_get_pipe(sl->request);
		describe_peer(s, sl->pipe, &sl->peer);
		sl->peer.queued_us = kms_monotonic_us();
	}
	pthread_mutex_lock(&s->lock);
	if (rv == 0) {
		sl->state = SLOT_BUSY;
		sl->next = NULL;
		if (s->queue_tail)
			s->queue_tail->next = sl;
		else
			s->queue_head = sl;
		s->queue_tail = sl;
		metrics_queued(1);
		pthread_cond_signal(&s->queued);
	} else if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
		/* Cancelled by the drain, or the socket is closing. */
		sl->state = SLOT_IDLE;
		if (--s->active == 0 && s->draining)
			pthread_cond_broadcast(&s->settled);
	} else {
		slot_receive_locked(sl); /* a transient receive error */
	}
	pthread_mutex_unlock(&s->lock);
}

/* A peer that does not take its reply within reply_send_timeout_ms would
 * hold its slot (and, pipelining, every slot): it is dropped, and every
 * reply still queued for it goes nowhere at once. Its other replies time
 * out together: only the one that closed the connection says so. */
static void drop_slow_peer(server *s, nng_pipe pipe, const pipeline_peer *peer)
{
	if (nng_pipe_close(pipe) != 0)
		return;
	kms_log("warn", "a reply to %s%s was not taken within %u ms: connection closed",
	        peer->transport == CALLER_IPC ? "an ipc peer" : "peer ", peer->remote,
	        s->d->cfg.reply_send_timeout_ms);
}

/* The send callback (NNG's thread, or the sender's): a reply that did not
 * go is wiped and freed here; then the slot takes its next request. */
static void on_sent(void *arg)
{
	slot *sl = arg;
	int rv = nng_aio_result(sl->send_aio);
	if (rv != 0) {
		nng_msg *out = nng_aio_get_msg(sl->send_aio);
		nng_aio_set_msg(sl->send_aio, NULL);
		if (out) {
			kms_wipe(nng_msg_body(out), nng_msg_len(out));
			nng_msg_free(out);
		}
		if (rv == NNG_ETIMEDOUT)
			drop_slow_peer(sl->srv, sl->pipe, &sl->peer);
		else if (rv != NNG_ECLOSED)
			kms_log("warn", "reply not sent: %s", nng_strerror(rv));
	}
	slot_next(sl);
}

/* The pipeline's reply (pipeline_reply_fn): on the worker's thread, or on
 * the audit writer's once the request's entry is durable. It copies the
 * reply into a message and starts its send, bounded by
 * reply_send_timeout_ms (the send aio's timeout); it never waits. */
static void slot_answered(void *arg, uint8_t *reply, size_t reply_len, kms_status st)
{
	slot *sl = arg;
	nng_msg *out = NULL;
	int rv = NNG_ENOMEM;
	if (st == KMS_OK && reply && (rv = nng_msg_alloc(&out, reply_len)) == 0)
		memcpy(nng_msg_body(out), reply, reply_len);
	if (reply) {
		kms_wipe(reply, reply_len);
		free(reply);
	}
	if (rv != 0) {
		kms_log("error", "dropped a request: out of memory for %s",
		        st == KMS_OK ? "its reply" : "any reply");
		slot_next(sl);
		return;
	}
	/* NNG frees `out` once sent without wiping it: a plaintext in a reply
	 * stays in freed heap memory until reused (documented in docs/security.md). */
	nng_aio_set_msg(sl->send_aio, out);
	nng_ctx_send(sl->ctx, sl->send_aio);
}

/* Runs slot's request up to its audit entry; the reply follows from
 * slot_answered, perhaps before this returns. The request's bytes are
 * taken out of the slot first: once answered, the slot may receive the
 * next one. */
static void serve(worker *w, slot *sl)
{
	nng_msg *msg = sl->request;
	pipeline_peer peer = sl->peer;
	sl->request = NULL;
	pipeline_submit(w->srv->d, w->arena, &peer, nng_msg_body(msg), nng_msg_len(msg),
	                &sl->pending, slot_answered, sl);
	nng_msg_free(msg); /* its body was wiped by the pipeline */
}

/* The next queued slot, or NULL once the workers stop. */
static slot *next_slot(server *s)
{
	pthread_mutex_lock(&s->lock);
	while (!s->queue_head && !s->workers_stop)
		pthread_cond_wait(&s->queued, &s->lock);
	slot *sl = s->queue_head;
	if (sl) {
		s->queue_head = sl->next;
		if (!s->queue_head)
			s->queue_tail = NULL;
		sl->next = NULL;
		metrics_queued(-1);
	}
	pthread_mutex_unlock(&s->lock);
	return sl;
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	slot *sl;
	while ((sl = next_slot(w->srv)))
		serve(w, sl);
	return NULL;
}

/* NNG's pipe events (its own threads): network connections past
 * max_tls_connections are closed before they are added, so no worker ever
 * sees them. ipc peers are not counted here. */
static void on_pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	server *s = arg;
	if (transport_of(s, p) == CALLER_IPC)
		return;
	if (ev == NNG_PIPE_EV_REM_POST) {
		atomic_fetch_sub(&s->network_pipes, 1);
		return;
	}
	if (ev != NNG_PIPE_EV_ADD_PRE)
		return;
	unsigned now = atomic_fetch_add(&s->network_pipes, 1) + 1;
	if (now <= s->d->cfg.max_tls_connections)
		return;
	unsigned refused = atomic_fetch_add(&s->refused_pipes, 1) + 1;
	if (refused == 1 || refused % 1000 == 0) /* a flood logs a line per 1000 */
		kms_log("warn", "closed a network connection past [limits] max_tls_connections "
		        "= %u (%u closed so far)", s->d->cfg.max_tls_connections, refused);
	(void)nng_pipe_close(p);
}

/* Connections a listener lost before they became pipes (NNG 1.5.2 makes a
 * pipe only after the TLS handshake and the SP header; no callback sees a
 * failure): its statistics count them by cause, named here for the log. */
static const struct {
	const char *stat; /* NNG's counter */
	const char *what; /* in kmsd's log */
} tls_causes[TLS_CAUSES] = {
	{ "auth", "certificate refused in the handshake (the client sent none, or "
	          "one expired, not yet valid or not signed by [tls] client_ca_file, "
	          "or it refused kmsd's)" },
	{ "disconnect", "closed by the client during the handshake" },
	{ "proto", "not TLS or not the SP protocol" },
	{ "timeout", "handshake timed out" },
	{ "other", "other errors" },
};

/* Logs, per TLS listener, how many connections failed since the last
 * report, by cause. */
static void report_tls_failures(server *s)
{
	nng_stat *all = NULL;
	if (nng_stats_get(&all) != 0)
		return;
	for (size_t i = 0; i < s->n_listeners; i++) {
		if (s->listeners[i].transport != CALLER_TLS)
			continue;
		/* By URL: NNG 1.5.2's nng_stat_find_listener finds the first
		 * listener whatever its id (common/nng_stats.h). */
		nng_stat *mine = kms_nng_stat_scope(all, "listener", s->listeners[i].url);
		char causes[600];
		size_t used = 0;
		uint64_t grew = 0;
		causes[0] = '\0';
		for (size_t k = 0; mine && k < TLS_CAUSES; k++) {
			uint64_t n = kms_nng_stat_value(mine, tls_causes[k].stat);
			uint64_t was = s->failed_reported[i][k];
			s->failed_reported[i][k] = n;
			if (n <= was)
				continue;
			grew += n - was;
			int w = snprintf(causes + used, sizeof causes - used, "%s%llu %s",
			                 used ? "; " : "", (unsigned long long)(n - was),
			                 tls_causes[k].what);
			if (w > 0 && (size_t)w < sizeof causes - used)
				used += (size_t)w;
		}
		if (grew)
			kms_log("warn", "%s: %llu TLS connections failed before a request "
			        "since the last report: %s", s->listeners[i].url,
			        (unsigned long long)grew, causes);
	}
	nng_stats_free(all);
}

static void *reporter_main(void *arg)
{
	server *s = arg;
	pthread_mutex_lock(&s->reporter_lock);
	while (!s->reporter_stop) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += s->d->cfg.tick_seconds;
		while (!s->reporter_stop &&
		       pthread_cond_timedwait(&s->reporter_wake, &s->reporter_lock, &until) == 0)
			;
		if (s->reporter_stop)
			break;
		pthread_mutex_unlock(&s->reporter_lock);
		report_tls_failures(s);
		pthread_mutex_lock(&s->reporter_lock);
	}
	pthread_mutex_unlock(&s->reporter_lock);
	return NULL;
}

static void reporter_start(server *s)
{
	pthread_mutex_init(&s->reporter_lock, NULL);
	pthread_cond_init(&s->reporter_wake, NULL);
	s->reporting = pthread_create(&s->reporter, NULL, reporter_main, s) == 0;
	if (!s->reporting)
		kms_log("warn", "cannot start the TLS failure reporter: failed handshakes go "
		        "unlogged");
}

static void reporter_stop(server *s)
{
	if (!s->reporting)
		return;
	pthread_mutex_lock(&s->reporter_lock);
	s->reporter_stop = true;
	pthread_cond_signal(&s->reporter_wake);
	pthread_mutex_unlock(&s->reporter_lock);
	pthread_join(s->reporter, NULL);
	s->reporting = false;
}

static kms_status read_file(const char *path, char **out, bool secret)
{
	*out = NULL;
	FILE *f = fopen(path, "r");
	if (!f)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "cannot read %s: %s", path, strerror(errno));
	char *buf = secret ? kms_secure_alloc(PEM_MAX + 1) : calloc(1, PEM_MAX + 1);
	if (!buf) {
		fclose(f);
		return KMS_FAIL(KMS_INTERNAL, "out of memory reading %s", path);
	}
	size_t n = fread(buf, 1, PEM_MAX + 1, f);
	fclose(f);
	if (n > PEM_MAX) {
		secret ? kms_secure_free(buf) : free(buf);
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "%s is larger than %u bytes", path, PEM_MAX);
	}
	buf[n] = '\0';
	*out = buf;
	return KMS_OK;
}

static kms_status tls_setup(server *s)
{
	const kmsd_config *cfg = &s->d->cfg;
	char *cert = NULL, *key = NULL;
	kms_status st = KMS_OK;
	int rv;

	if ((rv = nng_tls_config_alloc(&s->tls, NNG_TLS_MODE_SERVER)) != 0)
		return KMS_FAIL(KMS_INTERNAL, "tls: %s", nng_strerror(rv));
	/* TLS 1.2 at least; 1.3 where the engine has it (Debian 12's NNG 1.5.2
	 * with mbedTLS 2.28 does not, and treats the upper bound as 1.2).
	 * NNG cannot restrict the cipher suites: docs/security.md. */
	if ((rv = nng_tls_config_version(s->tls, NNG_TLS_1_2, NNG_TLS_1_3)) != 0)
		return KMS_FAIL(KMS_INTERNAL, "tls: cannot require TLS 1.2 or newer: %s",
		                nng_strerror(rv));
	KMS_GUARD_OUT(st, read_file(cfg->tls_cert_file, &cert, false));
	KMS_GUARD_OUT(st, read_file(cfg->tls_key_file, &key, true));
	if ((rv = nng_tls_config_own_cert(s->tls, cert, key, NULL)) != 0) {
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "tls: certificate %s with key %s: %s",
		              cfg->tls_cert_file, cfg->tls_key_file, nng_strerror(rv));
		goto out;
	}
	if (cfg->tls_client_ca_file[0]) {
		if ((rv = nng_tls_config_ca_file(s->tls, cfg->tls_client_ca_file)) != 0) {
			st = KMS_FAIL(KMS_INVALID_ARGUMENT, "tls: client CA %s: %s",
			              cfg->tls_client_ca_file, nng_strerror(rv));
			goto out;
		}
		rv = nng_tls_config_auth_mode(s->tls, NNG_TLS_AUTH_MODE_REQUIRED);
	} else {
		rv = nng_tls_config_auth_mode(s->tls, NNG_TLS_AUTH_MODE_NONE);
	}
	if (rv != 0)
		st = KMS_FAIL(KMS_INTERNAL, "tls: auth mode: %s", nng_strerror(rv));
out:
	free(cert);
	kms_secure_free(key);
	return st;
}

/* Made, not started: nothing is bound until start_listener. */
static kms_status make_listener(server *s, const char *url)
{
	listener *ln = &s->listeners[s->n_listeners];
	int rv;
	ln->url = url;
	if (!strncmp(url, "tls+tcp://", 10))
		ln->transport = CALLER_TLS;
	else
		ln->transport = CALLER_TCP;

	if ((rv = nng_listener_create(&ln->l, s->sock, url)) != 0)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "listen %s: %s", url, nng_strerror(rv));
	s->n_listeners++;
	if (ln->transport == CALLER_TLS) {
		if (!s->tls)
			KMS_GUARD(tls_setup(s));
		if ((rv = nng_listener_set_ptr(ln->l, NNG_OPT_TLS_CONFIG, s->tls)) != 0)
			return KMS_FAIL(KMS_INTERNAL, "listen %s: tls config: %s", url, nng_strerror(rv));
	}
	return KMS_OK;
}

/* Binds and accepts: NNG's own threads take connections (and do the TLS
 * handshakes) from here on, so this runs only once kmsd serves, after it
 * became [process] user (kmsd_privs.h). */
static kms_status start_listener(server *s, listener *ln)
{
	int rv = nng_listener_start(ln->l, 0);
	if (rv == NNG_EPERM && s->d->cfg.run_user[0])
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "listen %s: %s: kmsd binds tls+tcp:// "
		                "listeners after it becomes [process] user %s, and a port below 1024 "
		                "needs root: use a port of 1024 or more", ln->url, nng_strerror(rv),
		                s->d->cfg.run_user);
	if (rv != 0)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "listen %s: %s", ln->url, nng_strerror(rv));
	if (ln->transport == CALLER_TCP)
		kms_log("warn", "INSECURE: plain tcp listener %s: traffic and keys in the clear "
		         "(insecure_dev = true); never use this outside development", ln->url);
	else
		kms_log("info", "listening on %s%s", ln->url,
		         s->d->cfg.tls_client_ca_file[0] ? " (client certificates required)" : "");
	return KMS_OK;
}

static kms_status open_slots(server *s)
{
	s->n_slots = KMSD_NNG_CONTEXTS;
	s->slots = calloc(s->n_slots, sizeof *s->slots);
	if (!s->slots)
		return KMS_FAIL(KMS_INTERNAL, "out of memory for %u NNG contexts", s->n_slots);
	for (unsigned i = 0; i < s->n_slots; i++) {
		slot *sl = &s->slots[i];
		sl->srv = s;
		int rv = nng_ctx_open(&sl->ctx, s->sock);
		sl->ctx_open = rv == 0;
		if (rv == 0)
			rv = nng_aio_alloc(&sl->recv_aio, on_received, sl);
		if (rv == 0)
			rv = nng_aio_alloc(&sl->send_aio, on_sent, sl);
		if (rv != 0)
			return KMS_FAIL(KMS_INTERNAL, "NNG context %u: %s", i, nng_strerror(rv));
		nng_aio_set_timeout(sl->send_aio, (nng_duration)s->d->cfg.reply_send_timeout_ms);
	}
	return KMS_OK;
}

static kms_status start_workers(server *s)
{
	s->n_workers = s->d->cfg.workers;
	s->workers = calloc(s->n_workers, sizeof *s->workers);
	if (!s->workers)
		return KMS_FAIL(KMS_INTERNAL, "out of memory for %u workers", s->n_workers);
	for (unsigned i = 0; i < s->n_workers; i++) {
		worker *w = &s->workers[i];
		w->srv = s;
		if (!(w->arena = arena_new(ARENA_CHUNK)))
			return KMS_FAIL(KMS_INTERNAL, "worker %u: out of locked memory", i);
		if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
			return KMS_FAIL(KMS_INTERNAL, "worker %u: cannot start a thread", i);
		w->started = true;
	}
	return KMS_OK;
}

/* Every slot's first receive. */
static void arm_slots(server *s)
{
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < s->n_slots; i++) {
		s->active++;
		slot_receive_locked(&s->slots[i]);
	}
	pthread_mutex_unlock(&s->lock);
}

/* The ipc:// URLs, served by kmsd's own ipc server: bound here, served
 * from server_serve. */
static kms_status open_ipc(server *s)
{
	const kmsd_config *cfg = &s->d->cfg;
	ipc_server_config ic = {
		.group = cfg->ipc_gid,
		.workers = cfg->workers,
		.max_connections = cfg->ipc_max_connections,
		.max_per_uid = cfg->ipc_max_connections_per_uid,
		.read_timeout_ms = cfg->ipc_read_timeout_ms,
		.send_timeout_ms = cfg->reply_send_timeout_ms,
		.max_request_bytes = cfg->max_request_bytes,
		.max_buffered_bytes = KMSD_IPC_BUFFERED_MAX(cfg->workers, cfg->max_request_bytes),
	};
	for (size_t i = 0; i < cfg->n_listen; i++)
		if (!strncmp(cfg->listen[i], "ipc://", 6))
			ic.urls[ic.n_urls++] = cfg->listen[i];
	if (!ic.n_urls)
		return KMS_OK;
	return ipc_server_open(s->d, &ic, &s->ipc);
}

/* The tls+tcp:// and tcp:// URLs, served by NNG: the socket, its
 * contexts and TLS config, and its listeners made but not started. */
static kms_status open_nng(server *s)
{
	kmsd *d = s->d;
	size_t n = 0;
	for (size_t i = 0; i < d->cfg.n_listen; i++)
		n += strncmp(d->cfg.listen[i], "ipc://", 6) != 0;
	if (!n)
		return KMS_OK;
	int rv = nng_rep0_open(&s->sock);
	if (rv != 0)
		return KMS_FAIL(KMS_INTERNAL, "nng rep socket: %s", nng_strerror(rv));
	s->sock_open = true;
	/* The size limit comes before any listener exists. */
	if ((rv = nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, d->cfg.max_request_bytes)) != 0)
		return KMS_FAIL(KMS_INTERNAL, "nng recv-size-max: %s", nng_strerror(rv));
	if ((rv = nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_PRE, on_pipe_event, s)) != 0 ||
	    (rv = nng_pipe_notify(s->sock, NNG_PIPE_EV_REM_POST, on_pipe_event, s)) != 0)
		return KMS_FAIL(KMS_INTERNAL, "nng pipe notify: %s", nng_strerror(rv));
	KMS_GUARD(open_slots(s));
	for (size_t i = 0; i < d->cfg.n_listen; i++)
		if (strncmp(d->cfg.listen[i], "ipc://", 6))
			KMS_GUARD(make_listener(s, d->cfg.listen[i]));
	return KMS_OK;
}

static kms_status serve_nng(server *s)
{
	if (!s->sock_open)
		return KMS_OK;
	KMS_GUARD(start_workers(s));
	arm_slots(s);
	for (size_t i = 0; i < s->n_listeners; i++)
		KMS_GUARD(start_listener(s, &s->listeners[i]));
	if (s->tls)
		reporter_start(s);
	return KMS_OK;
}

kms_status server_open(kmsd *d, server **out)
{
	*out = NULL;
	server *s = calloc(1, sizeof *s);
	if (!s)
		return KMS_FAIL(KMS_INTERNAL, "out of memory");
	s->d = d;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->queued, NULL);
	pthread_cond_init(&s->settled, NULL);
	kms_status st = KMS_OK;
	KMS_GUARD_OUT(st, open_ipc(s));
	KMS_GUARD_OUT(st, open_nng(s));
out:
	if (st != KMS_OK) {
		kms_error_saved why;
		kms_error_save(&why);
		atomic_store(&d->draining, true);
		server_drain_and_close(s);
		return kms_error_restore(st, &why);
	}
	*out = s;
	return KMS_OK;
}

kms_status server_serve(server *s)
{
	if (s->ipc)
		KMS_GUARD(ipc_server_serve(s->ipc));
	return serve_nng(s);
}

bool server_ipc_answers(server *s, char *why, size_t why_len)
{
	return !s || !s->ipc || ipc_server_answers(s->ipc, why, why_len);
}

/* nng_close can hang in NNG 1.5.2 (common/nng_close.h): kmsd waits this
 * long, then exits without it: every reply has been sent and every worker
 * has stopped by then, and the OS releases the rest. */
#define SOCKET_CLOSE_WAIT_MS 3000

/* Cancels the receives that are posted and posts no more: a slot that
 * holds a request keeps it until its reply is sent. */
static void stop_receiving(server *s)
{
	pthread_mutex_lock(&s->lock);
	s->draining = true;
	for (unsigned i = 0; s->slots && i < s->n_slots; i++)
		if (s->slots[i].state == SLOT_RECEIVING)
			nng_aio_cancel(s->slots[i].recv_aio);
	pthread_mutex_unlock(&s->lock);
}

/* Waits until every slot is IDLE: each request already taken was run and
 * its reply sent or given up (a send is bounded by reply_send_timeout_ms;
 * a request whose audit entry is pending is answered by the writer, and
 * the audit log closes after the transports). */
static void wait_settled(server *s)
{
	pthread_mutex_lock(&s->lock);
	while (s->active)
		pthread_cond_wait(&s->settled, &s->lock);
	pthread_mutex_unlock(&s->lock);
}

/* The queue is empty and no slot can join it: the workers stop, and their
 * arenas are wiped whatever NNG does next. */
static void stop_workers(server *s)
{
	pthread_mutex_lock(&s->lock);
	s->workers_stop = true;
	pthread_cond_broadcast(&s->queued);
	pthread_mutex_unlock(&s->lock);
	for (unsigned i = 0; s->workers && i < s->n_workers; i++)
		if (s->workers[i].started)
			pthread_join(s->workers[i].thread, NULL);
	for (unsigned i = 0; s->workers && i < s->n_workers; i++) {
		arena_free(s->workers[i].arena);
		s->workers[i].arena = NULL;
	}
}

/* A server whose socket never closed: kept reachable, not freed. */
static server *volatile left_to_the_os;

void server_drain_and_close(server *s)
{
	if (!s)
		return;
	atomic_store(&s->d->draining, true);
	ipc_server_drain_and_close(s->ipc);
	s->ipc = NULL;
	reporter_stop(s);
	stop_receiving(s);
	wait_settled(s);
	stop_workers(s);
	for (unsigned i = 0; s->slots && i < s->n_slots; i++) {
		slot *sl = &s->slots[i];
		if (sl->recv_aio)
			nng_aio_stop(sl->recv_aio);
		if (sl->send_aio)
			nng_aio_stop(sl->send_aio);
		if (sl->ctx_open)
			nng_ctx_close(sl->ctx);
	}
	if (s->sock_open && !kms_nng_close_bounded(s->sock, SOCKET_CLOSE_WAIT_MS)) {
		kms_log("warn", "the NNG socket did not close within %d ms (NNG 1.5.2 close "
		         "deadlock); exiting without it: every reply was already sent",
		         SOCKET_CLOSE_WAIT_MS);
		left_to_the_os = s; /* NNG may still use its aios: keep them */
		return;
	}
	for (unsigned i = 0; s->slots && i < s->n_slots; i++) {
		if (s->slots[i].recv_aio)
			nng_aio_free(s->slots[i].recv_aio);
		if (s->slots[i].send_aio)
			nng_aio_free(s->slots[i].send_aio);
	}
	free(s->slots);
	free(s->workers);
	pthread_cond_destroy(&s->settled);
	pthread_cond_destroy(&s->queued);
	pthread_mutex_destroy(&s->lock);
	if (s->tls)
		nng_tls_config_free(s->tls);
	free(s);
}
