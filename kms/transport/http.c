#include "kms/transport/http.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "kms/transport/http_answer.h"
#include "kms/transport/http_parse.h"

#define EVENTS_PER_WAIT 64
#define ACCEPTS_PER_WAKE 64        /* then the other sockets get a turn */
#define SEND_PER_WAKE (1u << 20)   /* bytes of one response per wake-up */
#define LINGER_US 1000000u         /* after the response: reading what the peer still sends */
#define LINGER_BYTES (256u << 10)
#define ACCEPT_PAUSE_US 100000u    /* after EMFILE and the like */
#define WARN_EVERY_US 60000000u
#define TAG_WAKE UINT32_MAX
#define TAG_LISTEN (UINT32_MAX - 1)
#define US_PER_MS 1000u

/* READ: collecting the request head. WRITE: sending the response.
 * LINGER: response sent and our side shut down; reading and dropping what
 * the peer still sends, so that closing does not reset the connection
 * (and lose the response) while its request is still arriving. */
typedef enum conn_state { CONN_FREE, CONN_READ, CONN_WRITE, CONN_LINGER } conn_state;

typedef struct http_conn {
	conn_state state;
	int fd;
	uint64_t deadline_us;
	size_t in_len, scanned, lingered;
	char in[HTTP_HEAD_MAX];
	http_response out;
	size_t head_sent, body_sent, file_sent;
} http_conn;

struct http_server {
	kmsd *d;
	http_answers *answers;
	int listen_fd, epoll_fd, wake_fd;
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;
	unsigned max_conns, n_open;
	uint64_t read_timeout_us, write_timeout_us;
	bool listen_armed;
	uint64_t accept_paused_until_us;
	uint64_t last_cap_warning_us, last_accept_warning_us;
	http_conn *conns;
	char url[KMSD_PATH_MAX];
};

/* ---- connections ---- */

static void conn_close(http_server *s, http_conn *c)
{
	epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	http_response_clear(&c->out);
	c->state = CONN_FREE;
	c->fd = -1;
	s->n_open--;
}

static bool conn_watch(http_server *s, http_conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.u32 = (uint32_t)(c - s->conns) };
	return epoll_ctl(s->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) == 0;
}

static void conn_linger(http_server *s, http_conn *c)
{
	shutdown(c->fd, SHUT_WR);
	c->state = CONN_LINGER;
	uint64_t until = kms_monotonic_us() + LINGER_US;
	if (until < c->deadline_us)
		c->deadline_us = until;
	if (!conn_watch(s, c, EPOLLIN | EPOLLRDHUP))
		conn_close(s, c);
}

/* Sends what the socket takes now. Returns false when the connection is
 * finished with (all sent, or the peer went away). */
static bool conn_send_some(http_conn *c)
{
	http_response *r = &c->out;
	size_t budget = SEND_PER_WAKE;
	while (budget > 0) {
		ssize_t n;
		if (c->head_sent < r->head_len) {
			n = send(c->fd, r->head + c->head_sent, r->head_len - c->head_sent,
			         MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0)
				c->head_sent += (size_t)n;
		} else if (c->body_sent < r->body_len) {
			n = send(c->fd, r->body + c->body_sent, r->body_len - c->body_sent,
			         MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0)
				c->body_sent += (size_t)n;
		} else if (c->file_sent < r->file_len) {
			off_t at = (off_t)c->file_sent;
			size_t want = r->file_len - c->file_sent;
			n = sendfile(c->fd, r->file_fd, &at, want < budget ? want : budget);
			if (n == 0)
				return false; /* the file is shorter than it was: give up */
			if (n > 0)
				c->file_sent += (size_t)n;
		} else {
			return false;
		}
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
		budget = (size_t)n < budget ? budget - (size_t)n : 0;
	}
	return true;
}

static bool conn_all_sent(const http_conn *c)
{
	const http_response *r = &c->out;
	return c->head_sent == r->head_len && c->body_sent == r->body_len &&
	       c->file_sent == r->file_len;
}

static void conn_write(http_server *s, http_conn *c)
{
	bool more = conn_send_some(c);
	if (conn_all_sent(c))
		conn_linger(s, c);
	else if (!more)
		conn_close(s, c);
}

/* The response is ready in c->out: start sending it, with its own
 * deadline. */
static void conn_respond(http_server *s, http_conn *c)
{
	c->state = CONN_WRITE;
	c->deadline_us = kms_monotonic_us() + s->write_timeout_us;
	c->head_sent = c->body_sent = c->file_sent = 0;
	if (!conn_watch(s, c, EPOLLOUT)) {
		conn_close(s, c);
		return;
	}
	conn_write(s, c);
}

static void conn_request(http_server *s, http_conn *c, size_t head_len)
{
	http_request req;
	int status = http_parse_head(c->in, head_len, &req);
	if (status == 200)
		http_answer(s->answers, &req, &c->out);
	else
		http_answer_error(status, &c->out);
	conn_respond(s, c);
}

/* Reads what has arrived of the head; the cap is checked on every read,
 * before anything is parsed. */
static void conn_read(http_server *s, http_conn *c)
{
	ssize_t n = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(s, c);
		return;
	}
	c->in_len += (size_t)n;
	size_t head_len = http_head_end(c->in, c->in_len, &c->scanned);
	if (head_len > 0) {
		conn_request(s, c, head_len);
	} else if (c->in_len == sizeof c->in) {
		http_answer_error(431, &c->out);
		conn_respond(s, c);
	}
}

static void conn_drop_input(http_server *s, http_conn *c)
{
	char sink[4096];
	ssize_t n = recv(c->fd, sink, sizeof sink, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n > 0)
		c->lingered += (size_t)n;
	if (n <= 0 || c->lingered > LINGER_BYTES)
		conn_close(s, c);
}

static void conn_event(http_server *s, http_conn *c, uint32_t events)
{
	if (c->state == CONN_FREE)
		return;
	if (c->state == CONN_WRITE) {
		if (events & (EPOLLERR | EPOLLHUP))
			conn_close(s, c);
		else
			conn_write(s, c);
	} else if (c->state == CONN_READ) {
		conn_read(s, c);
	} else {
		conn_drop_input(s, c);
	}
}

/* ---- accepting ---- */

static void warn_every(uint64_t *last_us, const char *what)
{
	uint64_t now = kms_monotonic_us();
	if (*last_us != 0 && now - *last_us < WARN_EVERY_US)
		return;
	*last_us = now;
	kms_log("warn", "%s", what);
}

/* Past the cap: a one-line 503, sent if the socket takes it now, and the
 * connection closed at once. */
static void refuse(http_server *s, int fd)
{
	http_response r;
	http_response_init(&r);
	http_answer_error(503, &r);
	(void)!send(fd, r.head, r.head_len, MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)!send(fd, r.body, r.body_len, MSG_NOSIGNAL | MSG_DONTWAIT);
	http_response_clear(&r);
	close(fd);
	char line[160];
	snprintf(line, sizeof line,
	         "http: %u connections open ([audit] http_max_connections): refusing more "
	         "(said once a minute)", s->max_conns);
	warn_every(&s->last_cap_warning_us, line);
}

static void admit(http_server *s, int fd)
{
	http_conn *c = NULL;
	for (unsigned i = 0; i < s->max_conns && !c; i++)
		if (s->conns[i].state == CONN_FREE)
			c = &s->conns[i];
	if (!c) {
		refuse(s, fd);
		return;
	}
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)(c - s->conns) };
	if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		close(fd);
		return;
	}
	c->state = CONN_READ;
	c->fd = fd;
	c->deadline_us = kms_monotonic_us() + s->read_timeout_us;
	c->in_len = c->scanned = c->lingered = 0;
	http_response_init(&c->out);
	s->n_open++;
}

static void listen_arm(http_server *s, bool on)
{
	if (on == s->listen_armed)
		return;
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = TAG_LISTEN };
	if (epoll_ctl(s->epoll_fd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, s->listen_fd, &ev) == 0)
		s->listen_armed = on;
}

static void accept_some(http_server *s)
{
	for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			if (s->n_open < s->max_conns)
				admit(s, fd);
			else
				refuse(s, fd);
			continue;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			/* Out of descriptors: stop accepting for a moment rather
			 * than spin on a listener that stays readable. */
			char line[128];
			snprintf(line, sizeof line, "http: accept: %s: pausing (said once a minute)",
			         strerror(errno));
			warn_every(&s->last_accept_warning_us, line);
			listen_arm(s, false);
			s->accept_paused_until_us = kms_monotonic_us() + ACCEPT_PAUSE_US;
			return;
		}
		/* ECONNABORTED, EINTR, a peer's reset: try the next one. */
	}
}

/* ---- the thread ---- */

static void expire(http_server *s, uint64_t now)
{
	for (unsigned i = 0; i < s->max_conns; i++) {
		http_conn *c = &s->conns[i];
		if (c->state != CONN_FREE && now >= c->deadline_us)
			conn_close(s, c);
	}
}

/* Milliseconds until the next deadline (-1: none). */
static int next_timeout_ms(const http_server *s, uint64_t now)
{
	uint64_t soonest = UINT64_MAX;
	for (unsigned i = 0; i < s->max_conns; i++)
		if (s->conns[i].state != CONN_FREE && s->conns[i].deadline_us < soonest)
			soonest = s->conns[i].deadline_us;
	if (!s->listen_armed && s->accept_paused_until_us < soonest)
		soonest = s->accept_paused_until_us;
	if (soonest == UINT64_MAX)
		return -1;
	if (soonest <= now)
		return 0;
	uint64_t ms = (soonest - now + US_PER_MS - 1) / US_PER_MS;
	return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

static void *http_main(void *arg)
{
	http_server *s = arg;
	struct epoll_event events[EVENTS_PER_WAIT];
	while (!atomic_load(&s->stop)) {
		int n = epoll_wait(s->epoll_fd, events, EVENTS_PER_WAIT,
		                   next_timeout_ms(s, kms_monotonic_us()));
		if (n < 0 && errno != EINTR) {
			kms_log("error", "http: epoll_wait: %s: HTTP stops", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			uint32_t tag = events[i].data.u32;
			if (tag == TAG_WAKE)
				continue; /* the loop condition reads stop */
			if (tag == TAG_LISTEN)
				accept_some(s);
			else if (tag < s->max_conns)
				conn_event(s, &s->conns[tag], events[i].events);
		}
		uint64_t now = kms_monotonic_us();
		expire(s, now);
		if (!s->listen_armed && now >= s->accept_paused_until_us)
			listen_arm(s, true);
	}
	return NULL;
}

/* ---- start and stop ---- */

static kms_status open_listener(http_server *s, const char *url)
{
	struct sockaddr_storage addr;
	socklen_t addr_len;
	bool loopback;
	KMS_GUARD(http_listen_parse(url, &addr, &addr_len, &loopback));
	s->listen_fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	KMS_ENSURE(s->listen_fd >= 0, KMS_INTERNAL, "http %s: socket: %s", url, strerror(errno));
	int one = 1;
	setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	KMS_ENSURE(bind(s->listen_fd, (struct sockaddr *)&addr, addr_len) == 0 &&
	                   listen(s->listen_fd, SOMAXCONN) == 0,
	           KMS_INVALID_ARGUMENT, "http %s: cannot listen: %s", url, strerror(errno));
	return KMS_OK;
}

static kms_status open_loop(http_server *s)
{
	s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	KMS_ENSURE(s->epoll_fd >= 0 && s->wake_fd >= 0, KMS_INTERNAL, "http: epoll: %s",
	           strerror(errno));
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = TAG_WAKE };
	KMS_ENSURE(epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->wake_fd, &ev) == 0, KMS_INTERNAL,
	           "http: epoll: %s", strerror(errno));
	listen_arm(s, true);
	KMS_ENSURE(s->listen_armed, KMS_INTERNAL, "http: epoll: %s", strerror(errno));
	return KMS_OK;
}

kms_status http_open(kmsd *d, const http_config *cfg, http_server **out)
{
	*out = NULL;
	KMS_ENSURE(cfg->max_connections > 0 && cfg->max_connections < TAG_LISTEN, KMS_INVALID_ARGUMENT,
	           "http: max_connections must be at least 1");
	http_server *s = calloc(1, sizeof *s);
	KMS_ENSURE(s, KMS_INTERNAL, "http: out of memory");
	s->d = d;
	s->listen_fd = s->epoll_fd = s->wake_fd = -1;
	s->max_conns = cfg->max_connections;
	s->read_timeout_us = (uint64_t)cfg->read_timeout_ms * US_PER_MS;
	s->write_timeout_us = (uint64_t)cfg->write_timeout_ms * US_PER_MS;
	kms_status st = KMS_OK;
	s->conns = calloc(s->max_conns, sizeof *s->conns);
	if (!s->conns) {
		st = KMS_FAIL(KMS_INTERNAL, "http: out of memory");
		goto out;
	}
	for (unsigned i = 0; i < s->max_conns; i++)
		s->conns[i].fd = -1;
	KMS_GUARD_OUT(st, http_answers_open(d, cfg->public_dir, &s->answers));
	KMS_GUARD_OUT(st, open_listener(s, cfg->url));
	KMS_GUARD_OUT(st, open_loop(s));
	snprintf(s->url, sizeof s->url, "%s", cfg->url);
out:
	if (st != KMS_OK) {
		http_stop(s);
		return st;
	}
	*out = s;
	return KMS_OK;
}

kms_status http_serve(http_server *s)
{
	KMS_ENSURE(pthread_create(&s->thread, NULL, http_main, s) == 0, KMS_INTERNAL,
	           "http: cannot start its thread");
	s->thread_started = true;
	kms_log("info", "http on %s: /healthz, /metrics, /audit/ (the audit log's tiles and the "
	        "auditor's page); at most %u connections", s->url, s->max_conns);
	return KMS_OK;
}

void http_stop(http_server *s)
{
	if (!s)
		return;
	if (s->thread_started) {
		atomic_store(&s->stop, true);
		uint64_t one = 1;
		(void)!write(s->wake_fd, &one, sizeof one);
		pthread_join(s->thread, NULL);
	}
	for (unsigned i = 0; s->conns && i < s->max_conns; i++)
		if (s->conns[i].state != CONN_FREE)
			conn_close(s, &s->conns[i]);
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->epoll_fd >= 0)
		close(s->epoll_fd);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	http_answers_close(s->answers);
	free(s->conns);
	free(s);
}
