/*
 * ipc_server.c: kmsd's ipc:// server (ipc_server.h).
 *
 * Locking: one mutex (s->lock) guards the connection list, every
 * connection's write side and counters, the job queue and the buffered
 * byte count. A connection's read side (hello, frame header, body) is the
 * I/O thread's alone, and only the I/O thread closes a descriptor, under
 * the lock; a worker writes a reply under the lock, to a connection that
 * is not closed, never blocking (the socket is non-blocking: what the peer
 * does not take waits for the I/O thread's EPOLLOUT).
 */
#include "kms/transport/ipc_server.h"
#include "kms/transport/metrics.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <kms/secmem.h>

#include "common/error.h"
#include "common/log.h"
#include "kms/pipeline/arena.h"
#include "kms/pipeline/pipeline.h"
#include "kms/transport/ipc_listen.h"
#include "kms/transport/ipc_wire.h"

#define ARENA_CHUNK (256u << 10)
#define ACCEPTS_PER_WAKE 64
#define READ_PER_WAKE (256u << 10) /* fairness: bytes read from one peer per event */
#define OUT_PAUSE (1u << 20)       /* replies queued for a peer before reading stops */
#define TICK_MS 100                /* deadline checks while something is pending */
#define EMFILE_PAUSE_MS 100
/* Requests up to SMALL_MAX bytes (nearly all: Encrypt, Decrypt, Health)
 * come from a pool of their own, so that large messages announced and
 * left half-sent cannot hold up small ones from anyone. */
#define SMALL_MAX (64u << 10)
#define SMALL_POOL (8u << 20)

enum item_kind { ITEM_LISTENER, ITEM_CONN, ITEM_WAKE };

typedef struct out_buf {
	struct out_buf *next;
	size_t len, sent;
	uint8_t data[];
} out_buf;

typedef struct conn {
	enum item_kind kind; /* first: epoll's data points here */
	ipc_server *s;
	int fd;
	uid_t uid;
	struct conn *prev, *next;
	/* Read side: the I/O thread's alone. */
	bool hello_done;
	uint8_t head[IPC_WIRE_FRAME_LEN]; /* the peer's hello, then frame headers */
	size_t head_got;
	uint8_t *body;
	size_t body_len, body_got;
	bool body_wait;          /* a frame header read, its buffer not yet granted */
	uint64_t read_since_us;  /* a message (or the hello) started: 0 = none */
	/* Under s->lock. */
	size_t held;             /* large request bytes granted and not yet released */
	bool closed, broken;
	unsigned inflight;       /* requests in the job queue or a worker */
	unsigned refs;           /* the I/O thread's (while open) + inflight */
	uint32_t events;         /* registered with epoll */
	out_buf *out_head, *out_tail;
	size_t out_bytes;
	uint64_t out_since_us;   /* replies pending, no progress since */
} conn;

typedef struct job {
	struct job *next;
	ipc_server *s;
	conn *c;
	uint8_t *msg; /* backtrace, then the request */
	size_t len, backtrace;
	uint64_t queued_us; /* when it joined the queue (the deadline counts from it) */
	pipeline_pending pending; /* between its handler and its reply */
} job;

static bool is_small(size_t len)
{
	return len <= SMALL_MAX;
}

typedef struct listener {
	enum item_kind kind;
	ipc_socket sock;
	const char *url;
	bool paused;             /* out of descriptors: accepting again later */
	uint64_t paused_until_us;
} listener;

typedef struct wake_item {
	enum item_kind kind;
	int fd;
} wake_item;

struct ipc_server {
	kmsd *d;
	ipc_server_config cfg;
	uid_t self;
	int ep;
	wake_item wake;
	listener listeners[KMSD_MAX_LISTEN];
	size_t n_listeners;
	pthread_t io;
	bool io_started;
	pthread_t *workers;
	arena **arenas;
	unsigned n_workers;

	pthread_mutex_t lock;
	pthread_cond_t jobs_ready;
	job *jobs_head, *jobs_tail;
	unsigned answering;      /* requests taken by a worker and not yet answered */
	pthread_cond_t answered; /* answering fell to 0 while draining */
	conn *conns;
	conn *dead;              /* closed this round: let go after the batch */
	unsigned n_conns;
	size_t buffered;         /* large request bodies and queued replies, all peers */
	size_t small;            /* small request bodies, all peers (SMALL_POOL) */
	bool budget_waiters;     /* a peer waits for buffer room */
	bool draining, workers_done;
	uint64_t refused_full;   /* closed at the total cap, ever (for the log) */

	pthread_mutex_t probe_lock; /* one self-probe at a time */
};

/* ---- small helpers (s->lock held where it says) ---- */

static void wake_io(ipc_server *s)
{
	uint64_t one = 1;
	ssize_t n = write(s->wake.fd, &one, sizeof one);
	(void)n; /* a full counter still wakes it */
}

static void out_free(out_buf *b)
{
	kms_wipe(b->data, b->len); /* replies carry plaintexts and data keys */
	free(b);
}

static bool read_allowed(const ipc_server *s, const conn *c)
{
	return !c->closed && !c->broken && !s->draining && !c->body_wait &&
	       c->inflight < IPC_SERVER_INFLIGHT && c->out_bytes < OUT_PAUSE;
}

/* Registers what c waits for now. Lock held. */
static void conn_arm(ipc_server *s, conn *c)
{
	if (c->closed)
		return;
	uint32_t want = (read_allowed(s, c) ? EPOLLIN : 0) | (c->out_bytes ? EPOLLOUT : 0);
	if (want == c->events)
		return;
	if (want && !(c->events & EPOLLIN) && (want & EPOLLIN) && c->read_since_us)
		c->read_since_us = kms_monotonic_us(); /* the wait was ours, not the peer's */
	struct epoll_event ev = { .events = want, .data.ptr = c };
	if (epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = want;
}

/* Gives back n buffered bytes; wakes the I/O thread if a peer waits for
 * them. Lock held. */
static void budget_release(ipc_server *s, size_t n)
{
	s->buffered -= n;
	if (s->budget_waiters && n) {
		s->budget_waiters = false;
		wake_io(s);
	}
}

/* Gives back a request body's bytes to its pool. Lock held. */
static void request_release(ipc_server *s, conn *c, size_t len)
{
	if (!is_small(len)) {
		c->held -= len;
		budget_release(s, len);
		return;
	}
	s->small -= len;
	if (s->budget_waiters) {
		s->budget_waiters = false;
		wake_io(s);
	}
}

static void conn_unref(ipc_server *s, conn *c)
{
	if (--c->refs)
		return;
	(void)s;
	free(c);
}

/* Writes what the peer takes now, never waiting. Lock held. */
static void conn_flush(ipc_server *s, conn *c)
{
	while (c->out_head && !c->closed && !c->broken) {
		out_buf *b = c->out_head;
		ssize_t n = send(c->fd, b->data + b->sent, b->len - b->sent,
		                 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			c->broken = true; /* the I/O thread closes it */
			wake_io(s);
			break;
		}
		b->sent += (size_t)n;
		c->out_bytes -= (size_t)n;
		budget_release(s, (size_t)n);
		c->out_since_us = kms_monotonic_us();
		if (b->sent == b->len) {
			c->out_head = b->next;
			if (!c->out_head)
				c->out_tail = NULL;
			out_free(b);
		}
	}
	conn_arm(s, c);
}

/* Queues b for c and writes what it can. Lock held. */
static void conn_send(ipc_server *s, conn *c, out_buf *b)
{
	if (c->closed || c->broken) {
		out_free(b);
		return;
	}
	if (!c->out_head)
		c->out_since_us = kms_monotonic_us();
	b->next = NULL;
	if (c->out_tail)
		c->out_tail->next = b;
	else
		c->out_head = b;
	c->out_tail = b;
	c->out_bytes += b->len;
	s->buffered += b->len;
	conn_flush(s, c);
}

/* Closes c's descriptor and drops what it holds; its memory goes when the
 * last worker holding one of its requests lets go. I/O thread, lock held. */
static void conn_close(ipc_server *s, conn *c)
{
	if (c->closed)
		return;
	(void)epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->closed = true;
	while (c->out_head) {
		out_buf *b = c->out_head;
		c->out_head = b->next;
		out_free(b);
	}
	c->out_tail = NULL;
	budget_release(s, c->out_bytes);
	c->out_bytes = 0;
	if (c->body) {
		kms_wipe(c->body, c->body_got);
		free(c->body);
		c->body = NULL;
		request_release(s, c, c->body_len);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->n_conns--;
	/* An event later in this epoll batch may still name c: the I/O
	 * thread's reference goes after the batch (bury). */
	c->next = s->dead;
	s->dead = c;
}

/* Lets go of the connections closed since the last call. Lock held. */
static void bury(ipc_server *s)
{
	while (s->dead) {
		conn *c = s->dead;
		s->dead = c->next;
		conn_unref(s, c);
	}
}

/* ---- accepting ---- */

static unsigned conns_of(const ipc_server *s, uid_t uid)
{
	unsigned n = 0;
	for (const conn *c = s->conns; c; c = c->next)
		n += c->uid == uid;
	return n;
}

static void refuse(ipc_server *s, uid_t uid, const char *reason)
{
	pipeline_peer peer = { .transport = CALLER_IPC, .has_uid = true, .uid = uid };
	pipeline_refuse_peer_later(s->d, &peer, reason);
}

/* Why a new connection from uid is turned away, or NULL. Lock held. */
static const char *turn_away(ipc_server *s, uid_t uid)
{
	if (uid != s->self && !kmsd_config_ipc_principal(&s->d->cfg, uid))
		return PIPELINE_REASON_IPC_UNMAPPED;
	if (conns_of(s, uid) >= s->cfg.max_per_uid)
		return "ipc peer uid holds [listen] ipc_max_connections_per_uid connections "
		       "already: close some";
	if (s->n_conns >= s->cfg.max_connections) {
		if (s->refused_full++ % 1000 == 0) /* a flood logs a line per 1000 */
			kms_log("warn", "ipc: %u connections, the [listen] ipc_max_connections cap: "
			        "new ones are closed (%llu so far)", s->n_conns,
			        (unsigned long long)s->refused_full);
		return "ipc server holds [listen] ipc_max_connections connections: try again later";
	}
	return NULL;
}

static void admit(ipc_server *s, int fd, uid_t uid)
{
	pthread_mutex_lock(&s->lock);
	const char *why = s->draining ? "" : turn_away(s, uid);
	conn *c = why ? NULL : calloc(1, sizeof *c);
	if (!c) {
		pthread_mutex_unlock(&s->lock);
		close(fd); /* before a byte is read */
		if (why && *why)
			refuse(s, uid, why);
		return;
	}
	c->kind = ITEM_CONN;
	c->s = s;
	c->fd = fd;
	c->uid = uid;
	c->refs = 1;
	c->read_since_us = kms_monotonic_us(); /* its hello is due */
	c->events = EPOLLIN;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
	if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
		pthread_mutex_unlock(&s->lock);
		close(fd);
		free(c);
		return;
	}
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->n_conns++;
	out_buf *hello = malloc(sizeof *hello + IPC_WIRE_HELLO_LEN);
	if (!hello) {
		conn_close(s, c);
	} else {
		hello->len = IPC_WIRE_HELLO_LEN;
		hello->sent = 0;
		ipc_wire_hello(hello->data, IPC_WIRE_PROTO_REP);
		conn_send(s, c, hello);
	}
	pthread_mutex_unlock(&s->lock);
}

static void pause_listener(ipc_server *s, listener *l, uint64_t until_us)
{
	struct epoll_event ev = { .events = 0, .data.ptr = l };
	(void)epoll_ctl(s->ep, EPOLL_CTL_MOD, l->sock.fd, &ev);
	l->paused = true;
	l->paused_until_us = until_us;
}

static void resume_listener(ipc_server *s, listener *l)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = l };
	(void)epoll_ctl(s->ep, EPOLL_CTL_MOD, l->sock.fd, &ev);
	l->paused = false;
}

static void on_accept(ipc_server *s, listener *l)
{
	for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
		int fd = accept4(l->sock.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* Level-triggered: without a pause this would spin. */
				kms_log("warn", "ipc: cannot accept on %s: %s; accepting again in %d ms",
				        l->url, strerror(errno), EMFILE_PAUSE_MS);
				pause_listener(s, l, kms_monotonic_us() + EMFILE_PAUSE_MS * 1000u);
			}
			return;
		}
		uid_t uid;
		if (!ipc_listen_peer_uid(fd, &uid)) {
			close(fd);
			continue;
		}
		admit(s, fd, uid);
	}
}

/* ---- reading ---- */

/* Reads up to want bytes into p. Returns bytes read, 0 on would-block, -1
 * when the peer is gone or failed. */
static ssize_t read_some(int fd, uint8_t *p, size_t want)
{
	for (;;) {
		ssize_t n = recv(fd, p, want, MSG_DONTWAIT);
		if (n > 0)
			return n;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return -1;
	}
}

/* Large request bytes held by uid's connections. Lock held. */
static size_t held_by(const ipc_server *s, uid_t uid)
{
	size_t n = 0;
	for (const conn *c = s->conns; c; c = c->next)
		if (c->uid == uid)
			n += c->held;
	return n;
}

/* Whether c's next message may have its buffer now. A small one comes
 * from the small pool; a large one from the large pool, of which one uid
 * may hold at most half. Each pool always lets one message through when
 * it is empty, whatever its size. Lock held. */
static bool room_for(const ipc_server *s, const conn *c)
{
	size_t len = c->body_len;
	if (is_small(len))
		return s->small == 0 || s->small + len <= SMALL_POOL;
	size_t max = s->cfg.max_buffered_bytes, mine = held_by(s, c->uid);
	return (s->buffered == 0 || s->buffered + len <= max) &&
	       (mine == 0 || mine + len <= max / 2);
}

/* A frame header is in: grant its buffer if its pool has room, or wait
 * (reading from c stops) until a release wakes the I/O thread. I/O
 * thread, lock held. */
static void grant_body(ipc_server *s, conn *c)
{
	c->body = room_for(s, c) ? malloc(c->body_len) : NULL;
	if (!c->body) {
		c->body_wait = true;
		s->budget_waiters = true;
		conn_arm(s, c);
		return;
	}
	if (is_small(c->body_len)) {
		s->small += c->body_len;
	} else {
		s->buffered += c->body_len;
		c->held += c->body_len;
	}
	c->body_got = 0;
	if (c->body_wait) {
		c->body_wait = false;
		c->read_since_us = kms_monotonic_us();
		conn_arm(s, c);
	}
}

/* A whole message is in: hand it to the workers. Lock held. */
static bool queue_request(ipc_server *s, conn *c)
{
	size_t backtrace = ipc_wire_backtrace_len(c->body, c->body_len);
	job *j = backtrace ? malloc(sizeof *j) : NULL;
	if (!j)
		return false; /* not a REQ message (or no memory): the peer is closed */
	*j = (job){ .c = c, .msg = c->body, .len = c->body_len, .backtrace = backtrace,
	            .queued_us = kms_monotonic_us() };
	c->body = NULL;
	c->head_got = 0;
	c->read_since_us = 0;
	c->inflight++;
	c->refs++;
	if (s->jobs_tail)
		s->jobs_tail->next = j;
	else
		s->jobs_head = j;
	s->jobs_tail = j;
	metrics_queued(1);
	pthread_cond_signal(&s->jobs_ready);
	conn_arm(s, c);
	return true;
}

/* Advances c's read side by what the socket holds. Returns false when c
 * must be closed. I/O thread, lock held (only for the shared fields; the
 * reads themselves never block). */
static bool on_readable(ipc_server *s, conn *c)
{
	size_t budget = READ_PER_WAKE;
	while (budget && read_allowed(s, c)) {
		ssize_t n;
		if (!c->hello_done || c->head_got < IPC_WIRE_FRAME_LEN) {
			size_t need = (c->hello_done ? IPC_WIRE_FRAME_LEN : IPC_WIRE_HELLO_LEN) -
			              c->head_got;
			n = read_some(c->fd, c->head + c->head_got, need);
			if (n <= 0)
				return n == 0;
			if (!c->read_since_us)
				c->read_since_us = kms_monotonic_us();
			c->head_got += (size_t)n;
			budget -= budget < (size_t)n ? budget : (size_t)n;
			if (!c->hello_done) {
				if (c->head_got < IPC_WIRE_HELLO_LEN)
					continue;
				if (!ipc_wire_hello_is(c->head, IPC_WIRE_PROTO_REQ))
					return false; /* not a REQ peer */
				c->hello_done = true;
				c->head_got = 0;
				c->read_since_us = 0;
				continue;
			}
			if (c->head_got < IPC_WIRE_FRAME_LEN)
				continue;
			uint64_t len;
			if (!ipc_wire_frame_len(c->head, &len) || len < 4 ||
			    len > s->cfg.max_request_bytes + IPC_WIRE_BACKTRACE_MAX)
				return false; /* as NNG: a message past the limit closes the pipe */
			c->body_len = (size_t)len;
			grant_body(s, c);
			continue;
		}
		n = read_some(c->fd, c->body + c->body_got, c->body_len - c->body_got);
		if (n <= 0)
			return n == 0;
		c->body_got += (size_t)n;
		budget -= budget < (size_t)n ? budget : (size_t)n;
		if (c->body_got == c->body_len && !queue_request(s, c))
			return false;
	}
	return true;
}

/* ---- the I/O thread ---- */

/* Closes peers past a deadline and resumes paused listeners. Lock held. */
static void check_deadlines(ipc_server *s, uint64_t now)
{
	uint64_t read_us = (uint64_t)s->cfg.read_timeout_ms * 1000u;
	uint64_t send_us = (uint64_t)s->cfg.send_timeout_ms * 1000u;
	for (conn *c = s->conns, *next; c; c = next) {
		next = c->next;
		if (c->broken) {
			conn_close(s, c);
		} else if (c->out_bytes && now - c->out_since_us > send_us) {
			kms_log("warn", "a reply to ipc uid=%u was not taken within %u ms: "
			        "connection closed", (unsigned)c->uid, s->cfg.send_timeout_ms);
			conn_close(s, c);
		} else if (c->read_since_us && (c->events & EPOLLIN) &&
		           now - c->read_since_us > read_us) {
			kms_log("warn", "ipc uid=%u started a message and stopped for %u ms: "
			        "connection closed", (unsigned)c->uid, s->cfg.read_timeout_ms);
			conn_close(s, c);
		}
	}
	for (size_t i = 0; i < s->n_listeners; i++)
		if (s->listeners[i].paused && !s->draining && now >= s->listeners[i].paused_until_us)
			resume_listener(s, &s->listeners[i]);
}

/* After a wake: peers waiting for buffer room try again, and a drain
 * stops accepting and reading. Lock held. */
static void on_wake(ipc_server *s)
{
	uint64_t count;
	ssize_t n = read(s->wake.fd, &count, sizeof count);
	(void)n;
	if (s->draining)
		for (size_t i = 0; i < s->n_listeners; i++)
			pause_listener(s, &s->listeners[i], UINT64_MAX);
	for (conn *c = s->conns, *next; c; c = next) {
		next = c->next;
		if (c->broken) {
			conn_close(s, c);
			continue;
		}
		if (c->body_wait && !s->draining)
			grant_body(s, c);
		conn_arm(s, c);
	}
}

static bool pending_deadlines(const ipc_server *s)
{
	for (size_t i = 0; i < s->n_listeners; i++)
		if (s->listeners[i].paused && !s->draining)
			return true;
	for (const conn *c = s->conns; c; c = c->next)
		if (c->out_bytes || c->read_since_us || c->broken)
			return true;
	return false;
}

/* Drained: the workers are done and every reply is taken (or its peer
 * closed past the deadline). Lock held. */
static bool drained(const ipc_server *s)
{
	if (!s->workers_done)
		return false;
	for (const conn *c = s->conns; c; c = c->next)
		if (c->out_bytes && !c->broken)
			return false;
	return true;
}

static void *io_main(void *arg)
{
	ipc_server *s = arg;
	struct epoll_event events[64];
	uint64_t last_check = kms_monotonic_us();
	pthread_mutex_lock(&s->lock);
	while (!drained(s)) {
		int timeout = pending_deadlines(s) ? TICK_MS : -1;
		pthread_mutex_unlock(&s->lock);
		int n = epoll_wait(s->ep, events, 64, timeout);
		pthread_mutex_lock(&s->lock);
		for (int i = 0; i < n; i++) {
			enum item_kind *kind = events[i].data.ptr;
			if (*kind == ITEM_WAKE) {
				on_wake(s);
			} else if (*kind == ITEM_LISTENER) {
				listener *l = events[i].data.ptr;
				if (!s->draining && !l->paused) {
					pthread_mutex_unlock(&s->lock); /* admit takes it */
					on_accept(s, l);
					pthread_mutex_lock(&s->lock);
				}
			} else {
				conn *c = events[i].data.ptr;
				/* Closed earlier in this batch: not freed before bury. */
				if (c->closed)
					continue;
				uint32_t got = events[i].events;
				if ((got & EPOLLOUT) && c->out_bytes)
					conn_flush(s, c);
				bool keep = !(got & EPOLLERR);
				if (keep && (got & (EPOLLIN | EPOLLHUP)) && (c->events & EPOLLIN))
					keep = on_readable(s, c); /* reads to the end, then says so */
				else if (got & EPOLLHUP)
					keep = false; /* gone while we were not reading: it cannot
					               * take replies, and a hang-up left
					               * registered would be reported forever */
				if (!keep || c->broken)
					conn_close(s, c);
			}
		}
		uint64_t now = kms_monotonic_us();
		if (now - last_check >= TICK_MS * 1000u || n == 0) {
			check_deadlines(s, now);
			last_check = now;
		}
		bury(s);
	}
	while (s->conns)
		conn_close(s, s->conns);
	bury(s);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* ---- the workers ---- */

/* The reply to job j, from the pipeline: on the worker's thread, or on the
 * audit writer's once the request's entry is durable. It only takes the
 * lock and writes what the peer takes now, never waiting for it. */
static void job_answered(void *arg, uint8_t *buf, size_t reply_len, kms_status st)
{
	job *j = arg;
	ipc_server *s = j->s;
	conn *c = j->c;
	out_buf *b = NULL;
	if (st == KMS_OK && buf) {
		/* The reply was packed behind room for the out_buf header, the
		 * frame and the backtrace (serve): it goes out as it is. */
		size_t msg_len = j->backtrace + reply_len;
		b = (out_buf *)buf;
		b->len = IPC_WIRE_FRAME_LEN + msg_len;
		b->sent = 0;
		ipc_wire_frame(b->data, msg_len);
		memcpy(b->data + IPC_WIRE_FRAME_LEN, j->msg, j->backtrace);
	}
	if (!b)
		kms_log("error", "dropped an ipc request: out of memory for its reply");
	kms_wipe(j->msg, j->len); /* the pipeline wiped the request; the backtrace too */
	free(j->msg);

	pthread_mutex_lock(&s->lock);
	request_release(s, c, j->len);
	if (b)
		conn_send(s, c, b);
	c->inflight--;
	conn_arm(s, c);
	conn_unref(s, c);
	if (--s->answering == 0 && s->draining)
		pthread_cond_broadcast(&s->answered);
	pthread_mutex_unlock(&s->lock);
	free(j);
}

/* Runs the request up to its audit entry; the reply follows from
 * job_answered. The worker takes its next request at once. */
static void serve(ipc_server *s, arena *a, job *j)
{
	conn *c = j->c;
	pipeline_peer peer = { .transport = CALLER_IPC, .has_uid = true, .uid = c->uid,
	                       .queued_us = j->queued_us };
	j->s = s;
	j->pending.reply_headroom = sizeof(out_buf) + IPC_WIRE_FRAME_LEN + j->backtrace;
	pipeline_submit(s->d, a, &peer, j->msg + j->backtrace, j->len - j->backtrace,
	                &j->pending, job_answered, j);
}

typedef struct worker_arg {
	ipc_server *s;
	arena *a;
} worker_arg;

static void *worker_main(void *arg)
{
	ipc_server *s = ((worker_arg *)arg)->s;
	arena *a = ((worker_arg *)arg)->a;
	free(arg);
	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (!s->jobs_head && !s->draining)
			pthread_cond_wait(&s->jobs_ready, &s->lock);
		job *j = s->jobs_head;
		if (!j)
			break; /* draining, and every queued request answered */
		s->jobs_head = j->next;
		if (!s->jobs_head)
			s->jobs_tail = NULL;
		metrics_queued(-1);
		if (j->c->closed || j->c->broken) {
			/* Its peer is gone: nobody can take the reply, so the request
			 * is not run (nothing applied, nothing audited). A client that
			 * drops and resends cannot queue work that is done for no one. */
			conn *c = j->c;
			request_release(s, c, j->len);
			c->inflight--;
			conn_unref(s, c);
			pthread_mutex_unlock(&s->lock);
			kms_wipe(j->msg, j->len);
			free(j->msg);
			free(j);
			pthread_mutex_lock(&s->lock);
			continue;
		}
		s->answering++;
		pthread_mutex_unlock(&s->lock);
		serve(s, a, j);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* ---- start, stop, probe ---- */

static kms_status start_threads(ipc_server *s)
{
	s->workers = calloc(s->cfg.workers, sizeof *s->workers);
	s->arenas = calloc(s->cfg.workers, sizeof *s->arenas);
	KMS_ENSURE(s->workers && s->arenas, KMS_INTERNAL, "ipc: out of memory for %u workers",
	           s->cfg.workers);
	for (unsigned i = 0; i < s->cfg.workers; i++) {
		worker_arg *arg = malloc(sizeof *arg);
		s->arenas[i] = arena_new(ARENA_CHUNK);
		if (!arg || !s->arenas[i]) {
			free(arg);
			return KMS_FAIL(KMS_INTERNAL, "ipc worker %u: out of locked memory", i);
		}
		*arg = (worker_arg){ s, s->arenas[i] };
		if (pthread_create(&s->workers[i], NULL, worker_main, arg) != 0) {
			free(arg);
			return KMS_FAIL(KMS_INTERNAL, "ipc worker %u: cannot start a thread", i);
		}
		s->n_workers++;
	}
	KMS_ENSURE(pthread_create(&s->io, NULL, io_main, s) == 0, KMS_INTERNAL,
	           "ipc: cannot start the I/O thread");
	s->io_started = true;
	return KMS_OK;
}

kms_status ipc_server_open(kmsd *d, const ipc_server_config *cfg, ipc_server **out)
{
	*out = NULL;
	ipc_server *s = calloc(1, sizeof *s);
	KMS_ENSURE(s, KMS_INTERNAL, "ipc: out of memory");
	s->d = d;
	s->cfg = *cfg;
	/* kmsd's own uid: the one it runs as once started (the filesystem
	 * uid: while kmsd, started as root, acts as [process] user, that user;
	 * where a seccomp filter refuses setfsuid, it was never changed). */
	int fs = setfsuid((uid_t)-1);
	s->self = fs < 0 ? geteuid() : (uid_t)fs;
	s->wake = (wake_item){ ITEM_WAKE, -1 };
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->probe_lock, NULL);
	pthread_cond_init(&s->jobs_ready, NULL);
	pthread_cond_init(&s->answered, NULL);
	for (size_t i = 0; i < KMSD_MAX_LISTEN; i++)
		s->listeners[i].sock.fd = -1;
	kms_status st = KMS_OK;
	s->ep = epoll_create1(EPOLL_CLOEXEC);
	s->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->ep < 0 || s->wake.fd < 0) {
		st = KMS_FAIL(KMS_INTERNAL, "ipc: epoll: %s", strerror(errno));
		goto out;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &s->wake };
	if (epoll_ctl(s->ep, EPOLL_CTL_ADD, s->wake.fd, &ev) != 0) {
		st = KMS_FAIL(KMS_INTERNAL, "ipc: epoll: %s", strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < cfg->n_urls; i++) {
		listener *l = &s->listeners[i];
		l->kind = ITEM_LISTENER;
		l->url = cfg->urls[i];
		KMS_GUARD_OUT(st, ipc_listen_open(cfg->urls[i], cfg->group, &l->sock));
		s->n_listeners++;
		ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = l };
		if (epoll_ctl(s->ep, EPOLL_CTL_ADD, l->sock.fd, &ev) != 0) {
			st = KMS_FAIL(KMS_INTERNAL, "ipc: epoll: %s", strerror(errno));
			goto out;
		}
	}
out:
	if (st != KMS_OK) {
		kms_error_saved why;
		kms_error_save(&why);
		ipc_server_drain_and_close(s);
		return kms_error_restore(st, &why);
	}
	*out = s;
	return KMS_OK;
}

kms_status ipc_server_serve(ipc_server *s)
{
	KMS_GUARD(start_threads(s));
	for (size_t i = 0; i < s->n_listeners; i++)
		kms_log("info", "listening on %s (mode 0660, group %u; kmsd accepts ipc itself)",
		        s->listeners[i].url, (unsigned)s->cfg.group);
	return KMS_OK;
}

void ipc_server_drain_and_close(ipc_server *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->draining = true;
	pthread_cond_broadcast(&s->jobs_ready);
	pthread_mutex_unlock(&s->lock);
	if (s->wake.fd >= 0)
		wake_io(s);
	for (unsigned i = 0; i < s->n_workers; i++)
		pthread_join(s->workers[i], NULL);
	pthread_mutex_lock(&s->lock);
	/* The workers' last requests may wait for their audit entries: the
	 * writer answers them (the log closes after the transports). */
	while (s->answering)
		pthread_cond_wait(&s->answered, &s->lock);
	s->workers_done = true;
	pthread_mutex_unlock(&s->lock);
	if (s->io_started) {
		wake_io(s);
		pthread_join(s->io, NULL);
	}
	for (unsigned i = 0; i < s->cfg.workers && s->arenas; i++)
		arena_free(s->arenas[i]);
	for (size_t i = 0; i < s->n_listeners; i++)
		ipc_listen_close(&s->listeners[i].sock);
	while (s->jobs_head) { /* only when the threads never started */
		job *j = s->jobs_head;
		s->jobs_head = j->next;
		metrics_queued(-1);
		kms_wipe(j->msg, j->len);
		free(j->msg);
		free(j);
	}
	if (s->wake.fd >= 0)
		close(s->wake.fd);
	if (s->ep >= 0)
		close(s->ep);
	free(s->workers);
	free(s->arenas);
	pthread_cond_destroy(&s->jobs_ready);
	pthread_cond_destroy(&s->answered);
	pthread_mutex_destroy(&s->probe_lock);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* Connects to one socket and waits for the server's hello. */
static bool probe_one(const listener *l, char *why, size_t why_len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", l->sock.path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(why, why_len, "%s: socket: %s", l->url, strerror(errno));
		return false;
	}
	bool ok = false;
	uint8_t hello[IPC_WIRE_HELLO_LEN];
	size_t got = 0;
	uint64_t until = kms_monotonic_us() + IPC_SERVER_PROBE_MS * 1000u;
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		snprintf(why, why_len, "%s does not answer: connect: %s", l->url, strerror(errno));
		goto out;
	}
	while (got < sizeof hello) {
		uint64_t now = kms_monotonic_us();
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (now >= until || poll(&p, 1, (int)((until - now) / 1000u) + 1) < 0)
			break;
		ssize_t n = recv(fd, hello + got, sizeof hello - got, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			break;
		if (n > 0)
			got += (size_t)n;
	}
	ok = got == sizeof hello && ipc_wire_hello_is(hello, IPC_WIRE_PROTO_REP);
	if (!ok)
		snprintf(why, why_len, "%s does not answer: no handshake within %d ms", l->url,
		         IPC_SERVER_PROBE_MS);
out:
	close(fd);
	return ok;
}

bool ipc_server_answers(ipc_server *s, char *why, size_t why_len)
{
	pthread_mutex_lock(&s->probe_lock);
	bool ok = true;
	for (size_t i = 0; ok && i < s->n_listeners; i++)
		ok = probe_one(&s->listeners[i], why, why_len);
	pthread_mutex_unlock(&s->probe_lock);
	return ok;
}
