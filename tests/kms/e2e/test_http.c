/*
 * test_http: kmsd's HTTP endpoint (kms/transport/http.h) against a real
 * kmsd on a real SoftHSM token, over real loopback sockets, the way each
 * finding was made: by a client that misbehaves on purpose.
 *
 * (1) half_sent_flood: 1,000 connections (fewer if the fd limit says so)
 *     each send half a request and wait. kmsd holds at most
 *     http_max_connections of them, refuses the rest at once, keeps its
 *     own fd count bounded, still serves ipc and answers a new /healthz,
 *     and closes every held connection by its deadline.
 * (2) repeated_headers: six requests with 234 KB of repeated header lines
 *     are each refused (431, or closed) for a bounded amount of kmsd's CPU
 *     time, and ipc latency stays low.
 * (3) healthz_cache: /healthz is 200 "ok", and a burst of /healthz requests
 *     (at least 1,000, over at least 3 s) makes at most one HSM probe per
 *     second (counted from the X-Kms-Health-Probe header), and the cached
 *     result expires.
 * (4) only_published_paths: temporary files, other files under public/, a
 *     symbolic link, non-canonical tile paths, ".." and %-escapes are never
 *     served; methods other than GET/HEAD are 405; HEAD has no body.
 * (5) tiles_headers_and_modes: full tiles and bundles are cacheable
 *     forever, partial ones, the checkpoint and the rest are no-store; the
 *     served bytes are the files' (what a C2SP client fetches); the auditor
 *     page's three files have their types, nosniff and the strict
 *     Content-Security-Policy (docs/auditor-page.md); the data dir and
 *     audit/ are 0700, public/ and its directories 0755, its files 0644,
 *     whatever kmsd's umask.
 *
 * Numbers measured are printed ("measured: ...") for the record.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/support/audit_check.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"
#include "common/tlog/tlog_tiles.h"

#define HTTP_CAP 64                /* kmsd's default http_max_connections */
#define HTTP_TIMEOUT_MS 5000       /* kmsd's default http_timeout_ms */
#define FLOOD_CONNECTIONS 1000
#define FLOOD_FD_RESERVE 64        /* fds this test keeps for itself */
#define FLOOD_CONNECT_MS 10000
#define FDS_SLACK 16
#define FDS_SETTLE_MS 5000          /* a lingering connection lasts 1 s */
#define FDS_POLL_MS 20
#define CLOSE_SLACK_MS 2000        /* past the deadline: the epoll wake-up, scheduling */
#define ANSWER_MS 2000             /* a refused or cached answer comes at once (NNG: 5 s) */
#define IPC_LATENCY_MAX_MS 2000
#define HEADER_REQUESTS 6
#define HEADER_BYTES (234u * 1000u)
#define HEADER_CPU_MAX_TICKS 50    /* 0.5 s of kmsd's CPU for all six (NNG: ~3 s each) */
#define HEADER_SEND_MS 10000
#define BURST 1000
#define BURST_SPAN_MS 3000
#define BURST_LIMIT 100000
#define BURST_MAX_MS 30000
#define REPLY_MAX (20u << 20)
#define ENTRIES_FOR_FULL_TILE 300
#define CHECKPOINT_WAIT_MS 15000

static harness H;
static int port;

/* ---- a tiny HTTP client that shows everything ---- */

typedef struct reply {
	int status;        /* -1: closed, or no whole head, before the deadline */
	char *raw;         /* head and body, NUL-terminated */
	size_t len;
	const char *body;  /* into raw */
	size_t body_len;
} reply;

static void reply_free(reply *r)
{
	free(r->raw);
	memset(r, 0, sizeof *r);
}

static bool wait_fd(int fd, short events, uint64_t deadline)
{
	uint64_t now = e2e_now_ms();
	if (now >= deadline)
		return false;
	struct pollfd p = { .fd = fd, .events = events };
	return poll(&p, 1, (int)(deadline - now)) == 1;
}

static int dial(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
		                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Reads what fd sends until EOF or the deadline into r. */
static void read_reply(int fd, uint64_t deadline, reply *r)
{
	size_t cap = 4096;
	r->raw = malloc(cap + 1);
	assert_non_null(r->raw);
	r->status = -1;
	while (r->len < REPLY_MAX && wait_fd(fd, POLLIN, deadline)) {
		if (r->len == cap) {
			cap *= 2;
			r->raw = realloc(r->raw, cap + 1);
			assert_non_null(r->raw);
		}
		ssize_t n = recv(fd, r->raw + r->len, cap - r->len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		r->len += (size_t)n;
	}
	r->raw[r->len] = '\0';
	char *end = strstr(r->raw, "\r\n\r\n");
	if (end && sscanf(r->raw, "HTTP/1.1 %d ", &r->status) == 1) {
		r->body = end + 4;
		r->body_len = r->len - (size_t)(r->body - r->raw);
	} else {
		r->status = -1;
	}
}

/* Sends request[0, len) on a new connection and reads the whole reply
 * (kmsd closes after each). */
static int exchange(const char *request, size_t len, int timeout_ms, reply *r)
{
	memset(r, 0, sizeof *r);
	uint64_t deadline = e2e_now_ms() + (uint64_t)timeout_ms;
	int fd = dial();
	if (fd < 0) {
		r->status = -1;
		return -1;
	}
	for (size_t sent = 0; sent < len;) {
		if (!wait_fd(fd, POLLOUT, deadline))
			break;
		ssize_t n = send(fd, request + sent, len - sent, MSG_NOSIGNAL);
		if (n <= 0)
			break;
		sent += (size_t)n;
	}
	read_reply(fd, deadline, r);
	close(fd);
	return r->status;
}

static int get(const char *method, const char *target, reply *r)
{
	char request[512];
	int n = snprintf(request, sizeof request, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
	                 method, target, port);
	assert_true(n > 0 && (size_t)n < sizeof request);
	return exchange(request, (size_t)n, 5000, r);
}

/* The value of header name in r's head, or NULL. */
static const char *header(const reply *r, const char *name, char *out, size_t cap)
{
	size_t name_len = strlen(name);
	const char *head_end = r->body ? r->body : r->raw + r->len;
	for (const char *line = strstr(r->raw, "\r\n"); line && line + 2 < head_end;
	     line = strstr(line + 2, "\r\n")) {
		const char *l = line + 2;
		if (!strncasecmp(l, name, name_len) && l[name_len] == ':') {
			const char *v = l + name_len + 1;
			while (*v == ' ')
				v++;
			size_t n = strcspn(v, "\r");
			if (n >= cap)
				n = cap - 1;
			memcpy(out, v, n);
			out[n] = '\0';
			return out;
		}
	}
	return NULL;
}

/* ---- kmsd seen from /proc ---- */

/* utime + stime of the whole process, in clock ticks. */
static unsigned long long kmsd_cpu_ticks(void)
{
	char path[64], stat[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)H.pid);
	FILE *f = fopen(path, "r"); /* /proc files have no size: read, not stat */
	assert_non_null(f);
	size_t n = fread(stat, 1, sizeof stat - 1, f);
	fclose(f);
	stat[n] = '\0';
	const char *p = strrchr(stat, ')');
	assert_non_null(p);
	unsigned long long utime = 0, stime = 0;
	/* After "(comm)": state is field 3; utime and stime are 14 and 15. */
	int got = sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
	                 &stime);
	assert_int_equal(got, 2);
	return utime + stime;
}

static uint64_t ipc_latency_ms(void)
{
	uint64_t t0 = e2e_now_ms();
	Kms__Request req = KMS__REQUEST__INIT;
	Kms__HealthRequest health = KMS__HEALTH_REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &health;
	Kms__Response *r = harness_call(&H, &req);
	if (!r)
		fail_msg("no ipc answer");
	assert_int_equal(r->status, KMS__STATUS__OK);
	kms__response__free_unpacked(r, NULL);
	return e2e_now_ms() - t0;
}

/* ---- set-up ---- */

static void start_with(const char *more, unsigned workers);

static void start(const char *more)
{
	start_with(more, 0);
}

/* workers 0: the harness's default. */
static void start_with(const char *more, unsigned workers)
{
	port = harness_free_port();
	assert_true(port > 0);
	char extra[400];
	snprintf(extra, sizeof extra, "[audit]\ncheckpoint_ms = 50\nhttp = http://127.0.0.1:%d\n%s",
	         port, more ? more : "");
	harness_options o = { .extra_config = extra, .workers = workers };
	if (!harness_start(&H, &o))
		fail_msg("kmsd did not start; see %s", H.log);
	assert_int_equal(audit_wait_healthz(port, 200, 10000), 200);
}

static void stop_clean(void)
{
	int code = harness_stop(&H);
	if (code != 0)
		fail_msg("kmsd exit code %d after SIGTERM; see %s", code, H.log);
}

static int teardown(void **state)
{
	(void)state;
	if (H.pid > 0)
		harness_kill9(&H);
	return 0;
}

/* ---- (1) half-sent requests ---- */

static size_t flood_size(void)
{
	struct rlimit rl;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	rlim_t want = FLOOD_CONNECTIONS + FLOOD_FD_RESERVE;
	if (rl.rlim_cur < want) {
		rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
		assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	}
	size_t n = rl.rlim_cur > FLOOD_FD_RESERVE ? (size_t)(rl.rlim_cur - FLOOD_FD_RESERVE) : 0;
	return n < FLOOD_CONNECTIONS ? n : FLOOD_CONNECTIONS;
}

/* Waits until every fd in fds has been closed by kmsd (EOF or reset);
 * returns how many were, and sets *last_ms to when the last one was. */
static size_t wait_all_closed(int *fds, size_t n, uint64_t deadline, uint64_t *last_ms,
                              size_t *answered_503)
{
	size_t closed = 0;
	struct pollfd *p = calloc(n, sizeof *p);
	assert_non_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
	while (closed < n) {
		uint64_t now = e2e_now_ms();
		if (now >= deadline)
			break;
		int rv = poll(p, n, (int)(deadline - now));
		if (rv <= 0)
			continue;
		for (size_t i = 0; i < n; i++) {
			if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			char buf[512];
			ssize_t got = recv(p[i].fd, buf, sizeof buf - 1, MSG_DONTWAIT);
			if (got > 0) {
				buf[got] = '\0';
				if (!strncmp(buf, "HTTP/1.1 503 ", 13))
					(*answered_503)++;
				continue; /* the EOF follows */
			}
			if (got < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			close(p[i].fd);
			fds[i] = -1;
			p[i].fd = -1;
			closed++;
			*last_ms = e2e_now_ms();
		}
	}
	free(p);
	return closed;
}

/* Waits (bounded: FDS_SETTLE_MS) until kmsd holds at most max fds, and
 * fails if it still holds more then. What the count races with is kmsd
 * closing its side after the client has closed its own: the last /healthz
 * lingers until kmsd reads the client's FIN (http.c, conn_linger), and its
 * self-probe of the ipc socket leaves an accepted connection that the ipc
 * thread closes when it reads the probe's EOF. A leak stays. */
static void expect_fds_settle(long max)
{
	uint64_t t0 = e2e_now_ms();
	long first = e2e_kmsd_fds(&H), now = first;
	while (now > max && e2e_now_ms() - t0 < FDS_SETTLE_MS) {
		struct timespec ts = { .tv_nsec = FDS_POLL_MS * 1000000L };
		nanosleep(&ts, NULL);
		now = e2e_kmsd_fds(&H);
	}
	print_message("measured: kmsd fds %ld right after the last /healthz, %ld after %llu ms "
	              "(at most %ld)\n", first, now, (unsigned long long)(e2e_now_ms() - t0), max);
	if (now > max)
		fail_msg("kmsd holds %ld fds %d ms after every connection closed, more than %ld",
		         now, FDS_SETTLE_MS, max);
}

static void half_sent_flood(void **state)
{
	(void)state;
	/* One worker, which has made its own store connection (every request
	 * reads the caller's principal) before the count: the ipc Health
	 * below then opens nothing new. */
	start_with(NULL, 1);
	(void)ipc_latency_ms();
	long fds_before = e2e_kmsd_fds(&H);
	size_t n = flood_size();
	assert_true(n > HTTP_CAP);
	int *fds = calloc(n, sizeof *fds);
	assert_non_null(fds);
	static const char half[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n";
	uint64_t t0 = e2e_now_ms(), connect_deadline = t0 + FLOOD_CONNECT_MS;
	size_t opened = 0;
	for (; opened < n && e2e_now_ms() < connect_deadline; opened++) {
		fds[opened] = dial();
		if (fds[opened] < 0)
			break;
		/* A refused connection may already be closed: that is fine. */
		(void)!send(fds[opened], half, sizeof half - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	uint64_t t_opened = e2e_now_ms();
	print_message("measured: %zu half-sent connections opened in %llu ms\n", opened,
	              (unsigned long long)(t_opened - t0));
	assert_true(opened > HTTP_CAP);

	/* While they are held: bounded fds, ipc served, /healthz answered. */
	long fds_during = e2e_kmsd_fds(&H);
	uint64_t ipc_ms = ipc_latency_ms();
	uint64_t t_health = e2e_now_ms();
	reply r;
	int health = get("GET", "/healthz", &r);
	uint64_t health_ms = e2e_now_ms() - t_health;
	print_message("measured: kmsd fds %ld before, %ld with %zu connections open; ipc Health "
	              "%llu ms; a new /healthz answered %d in %llu ms\n",
	              fds_before, fds_during, opened, (unsigned long long)ipc_ms, health,
	              (unsigned long long)health_ms);
	/* The cap, plus a few kmsd opens on its own meanwhile (the publisher's
	 * tile files, an accept being refused); NNG's server held 979. */
	assert_true(fds_during <= fds_before + HTTP_CAP + FDS_SLACK);
	assert_true(ipc_ms < IPC_LATENCY_MAX_MS);
	assert_true(health == 503 || health == 200);
	assert_true(health_ms < ANSWER_MS);
	reply_free(&r);

	/* Every one is closed by kmsd: refused ones at once (503), held ones
	 * by the deadline counted from their accept. */
	uint64_t last_closed = 0;
	size_t refused = 0;
	uint64_t deadline = t_opened + HTTP_TIMEOUT_MS + CLOSE_SLACK_MS;
	size_t closed = wait_all_closed(fds, opened, deadline, &last_closed, &refused);
	print_message("measured: %zu of %zu closed by kmsd (%zu answered 503 at once), the last "
	              "%llu ms after the first connect\n",
	              closed, opened, refused, (unsigned long long)(last_closed - t0));
	for (size_t i = 0; i < opened; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
	assert_int_equal(closed, opened);
	assert_true(refused >= opened - HTTP_CAP - 1);
	assert_int_equal(audit_wait_healthz(port, 200, 5000), 200);
	expect_fds_settle(fds_before + 1);
	stop_clean();
}

/* ---- (2) repeated headers ---- */

/* One request: the request line and HEADER_BYTES of "X-A: a" lines, sent
 * while reading; returns the status (-1: closed without an answer). */
static int send_big_head(const char *request, size_t len)
{
	reply r = { 0 };
	int fd = dial();
	assert_true(fd >= 0);
	uint64_t deadline = e2e_now_ms() + HEADER_SEND_MS;
	size_t sent = 0;
	while (sent < len && e2e_now_ms() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLOUT | POLLIN };
		if (poll(&p, 1, 100) <= 0)
			continue;
		if (p.revents & (POLLIN | POLLHUP | POLLERR))
			break; /* kmsd answered or closed: stop sending */
		ssize_t n = send(fd, request + sent, len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN)
			continue;
		if (n <= 0)
			break;
		sent += (size_t)n;
	}
	read_reply(fd, deadline, &r);
	close(fd);
	int status = r.status;
	reply_free(&r);
	return status;
}

static void repeated_headers(void **state)
{
	(void)state;
	start(NULL);
	static const char line[] = "X-A: a\r\n";
	static const char first[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n";
	size_t len = sizeof first - 1 + HEADER_BYTES + 2;
	char *request = malloc(len);
	assert_non_null(request);
	memcpy(request, first, sizeof first - 1);
	size_t at = sizeof first - 1;
	while (at + sizeof line - 1 <= sizeof first - 1 + HEADER_BYTES) {
		memcpy(request + at, line, sizeof line - 1);
		at += sizeof line - 1;
	}
	memcpy(request + at, "\r\n", 2);
	len = at + 2;

	uint64_t ipc_before = ipc_latency_ms();
	unsigned long long cpu_before = kmsd_cpu_ticks();
	uint64_t t0 = e2e_now_ms();
	int statuses[HEADER_REQUESTS];
	for (int i = 0; i < HEADER_REQUESTS; i++)
		statuses[i] = send_big_head(request, len);
	uint64_t elapsed = e2e_now_ms() - t0;
	unsigned long long cpu = kmsd_cpu_ticks() - cpu_before;
	uint64_t ipc_after = ipc_latency_ms();
	free(request);
	print_message("measured: %d requests of %zu header bytes: statuses %d %d %d %d %d %d in "
	              "%llu ms; kmsd CPU %llu ticks (%ld per s); ipc Health %llu ms before, %llu "
	              "ms after\n",
	              HEADER_REQUESTS, len, statuses[0], statuses[1], statuses[2], statuses[3],
	              statuses[4], statuses[5], (unsigned long long)elapsed, cpu,
	              sysconf(_SC_CLK_TCK), (unsigned long long)ipc_before,
	              (unsigned long long)ipc_after);
	for (int i = 0; i < HEADER_REQUESTS; i++)
		assert_true(statuses[i] == 431 || statuses[i] == -1);
	assert_true(cpu < HEADER_CPU_MAX_TICKS);
	assert_true(ipc_after < IPC_LATENCY_MAX_MS);
	stop_clean();
}

/* ---- (3) /healthz and the HSM ---- */

static void healthz_cache(void **state)
{
	(void)state;
	start(NULL);
	reply r;
	char value[64];
	assert_int_equal(get("GET", "/healthz", &r), 200);
	assert_int_equal(r.body_len, 3);
	assert_memory_equal(r.body, "ok\n", 3);
	assert_non_null(header(&r, "X-Kms-Health-Probe", value, sizeof value));
	unsigned long long first_probe = strtoull(value, NULL, 10);
	reply_free(&r);

	uint64_t t0 = e2e_now_ms();
	unsigned long long last_probe = first_probe;
	int answered = 0;
	/* At least BURST requests and at least BURST_SPAN_MS, so that the
	 * bound is seen across several seconds; never more than BURST_LIMIT. */
	int sent = 0;
	for (; sent < BURST_LIMIT && e2e_now_ms() - t0 < BURST_MAX_MS &&
	       (sent < BURST || e2e_now_ms() - t0 < BURST_SPAN_MS);
	     sent++) {
		int status = get("GET", "/healthz", &r);
		if (status == 200 && header(&r, "X-Kms-Health-Probe", value, sizeof value)) {
			answered++;
			last_probe = strtoull(value, NULL, 10);
		}
		reply_free(&r);
	}
	uint64_t elapsed = e2e_now_ms() - t0;
	unsigned long long probes = last_probe - first_probe;
	/* One probe per started second, and one for the second in progress. */
	unsigned long long allowed = elapsed / 1000 + 2;
	print_message("measured: %d of %d /healthz answered 200 in %llu ms; %llu HSM probes "
	              "(allowed %llu)\n",
	              answered, sent, (unsigned long long)elapsed, probes, allowed);
	assert_true(sent >= BURST);
	assert_int_equal(answered, sent);
	assert_true(probes <= allowed);

	/* The cache expires: a later /healthz probes again. */
	uint64_t wait_deadline = e2e_now_ms() + 3000;
	unsigned long long seen = last_probe;
	while (seen == last_probe && e2e_now_ms() < wait_deadline) {
		if (get("GET", "/healthz", &r) == 200 &&
		    header(&r, "X-Kms-Health-Probe", value, sizeof value))
			seen = strtoull(value, NULL, 10);
		reply_free(&r);
		if (seen == last_probe)
			e2e_sleep_ms(50);
	}
	assert_true(seen > last_probe);
	stop_clean();
}

/* ---- (4) nothing but published files ---- */

static void write_file(const char *dir, const char *name, const char *content)
{
	char path[900];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(content, f);
	assert_int_equal(fclose(f), 0);
}

typedef struct path_case {
	const char *request; /* the whole request line */
	int status;
} path_case;

static void only_published_paths(void **state)
{
	(void)state;
	start(NULL);
	char pub[700], audit[700];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	audit_dir(&H, NULL, audit, sizeof audit);
	reply r;
	assert_int_equal(get("GET", "/audit/checkpoint", &r), 200);
	reply_free(&r);

	/* Files that exist under public/ but are not published paths. */
	char tile0[720], link_path[800], target[800];
	snprintf(tile0, sizeof tile0, "%s/tile/0", pub);
	assert_true(mkdir(tile0, 0755) == 0 || errno == EEXIST);
	write_file(tile0, ".000.tmp-Ab12Cd", "temporary");
	write_file(pub, ".checkpoint.tmp-Xy34Zw", "temporary");
	write_file(pub, "notes.txt", "not a tile");
	snprintf(link_path, sizeof link_path, "%s/777", tile0);
	snprintf(target, sizeof target, "%s/log.bin", audit);
	unlink(link_path);
	assert_int_equal(symlink(target, link_path), 0);

	static const path_case cases[] = {
		{ "GET /audit/tile/0/.000.tmp-Ab12Cd HTTP/1.1", 404 },
		{ "GET /audit/.checkpoint.tmp-Xy34Zw HTTP/1.1", 404 },
		{ "GET /audit/notes.txt HTTP/1.1", 404 },
		{ "GET /audit/tile/0/777 HTTP/1.1", 404 },          /* a link to log.bin */
		{ "GET /audit/log.bin HTTP/1.1", 404 },
		{ "GET /audit/ HTTP/1.1", 200 },                     /* the auditor page */
		{ "GET /audit HTTP/1.1", 404 },
		{ "GET /audit/index.html HTTP/1.1", 404 },
		{ "GET /audit/auditor.js/ HTTP/1.1", 404 },
		{ "GET /audit/Auditor.js HTTP/1.1", 404 },
		{ "GET /audit/auditor.js.map HTTP/1.1", 404 },
		{ "GET /audit/auditor.cs HTTP/1.1", 404 },
		{ "GET /audit/favicon.ico HTTP/1.1", 404 },
		{ "GET /auditor.js HTTP/1.1", 404 },
		{ "GET /audit//auditor.js HTTP/1.1", 404 },
		{ "GET /audit/./auditor.css HTTP/1.1", 404 },
		{ "GET /audit/tile/0 HTTP/1.1", 404 },
		{ "GET /audit/tile/0/0 HTTP/1.1", 404 },             /* not 3 digits */
		{ "GET /audit/tile/0/x000/001 HTTP/1.1", 404 },      /* not canonical */
		{ "GET /audit/tile/00/000 HTTP/1.1", 404 },
		{ "GET /audit/tile/0/000.p/0 HTTP/1.1", 404 },
		{ "GET /audit/tile/0/000.p/256 HTTP/1.1", 404 },
		{ "GET /audit/tile/0/000.p/007 HTTP/1.1", 404 },
		{ "GET /audit/tile/entries/000.p/ HTTP/1.1", 404 },
		{ "GET /audit/checkpoint/ HTTP/1.1", 404 },
		{ "GET /audit/../audit/log.bin HTTP/1.1", 404 },
		{ "GET /audit/tile/../../log.bin HTTP/1.1", 404 },
		{ "GET /audit/./checkpoint HTTP/1.1", 404 },
		{ "GET /audit//checkpoint HTTP/1.1", 404 },
		{ "GET /audit/%2e%2e/log.bin HTTP/1.1", 400 },
		{ "GET /audit/..%2flog.bin HTTP/1.1", 400 },
		{ "GET /audit/%252e%252e/log.bin HTTP/1.1", 400 },
		{ "GET /audit/..\\log.bin HTTP/1.1", 400 },
		{ "GET /audit/checkpoint?x=1 HTTP/1.1", 400 },
		{ "GET /audit/checkpoint#x HTTP/1.1", 400 },
		{ "GET http://127.0.0.1/audit/checkpoint HTTP/1.1", 400 },
		{ "GET audit/checkpoint HTTP/1.1", 400 },
		{ "GET  /audit/checkpoint HTTP/1.1", 400 },
		{ "GET /audit/checkpoint HTTP/2.0", 505 },
		{ "GET /audit/checkpoint FTP/1.1", 400 },
		{ "POST /audit/checkpoint HTTP/1.1", 405 },
		{ "DELETE /healthz HTTP/1.1", 405 },
		{ "OPTIONS * HTTP/1.1", 405 },
		{ "get /healthz HTTP/1.1", 405 },
	};
	char failures[4096] = "";
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char request[256];
		int n = snprintf(request, sizeof request, "%s\r\nHost: 127.0.0.1\r\n\r\n",
		                 cases[i].request);
		int status = exchange(request, (size_t)n, 5000, &r);
		bool leaked = r.raw && (strstr(r.raw, "temporary") || strstr(r.raw, "not a tile"));
		char allow[32];
		bool no_allow = status == 405 && !header(&r, "Allow", allow, sizeof allow);
		if (status != cases[i].status || leaked || no_allow) {
			size_t used = strlen(failures);
			snprintf(failures + used, sizeof failures - used, "\n  %s: %d, wanted %d%s%s",
			         cases[i].request, status, cases[i].status, leaked ? " (leaked)" : "",
			         no_allow ? " (no Allow header)" : "");
		}
		reply_free(&r);
	}
	/* A header line that is not "name: value", and a bare LF. */
	static const char *const malformed[] = {
		"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n",
		"GET /healthz HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
		"GET /healthz HTTP/1.1\r\n: empty name\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
		int status = exchange(malformed[i], strlen(malformed[i]), 5000, &r);
		if (status != 400) {
			size_t used = strlen(failures);
			snprintf(failures + used, sizeof failures - used, "\n  malformed head %zu: %d",
			         i, status);
		}
		reply_free(&r);
	}
	if (failures[0])
		fail_msg("HTTP answers not as documented:%s", failures);

	/* HEAD: the GET's head, no body. */
	char value[64];
	size_t cp_len;
	char cp_path[800];
	snprintf(cp_path, sizeof cp_path, "%s/checkpoint", pub);
	free(harness_read_file(cp_path, &cp_len));
	assert_int_equal(get("HEAD", "/audit/checkpoint", &r), 200);
	assert_non_null(header(&r, "Content-Length", value, sizeof value));
	assert_int_equal(strtoul(value, NULL, 10), cp_len);
	assert_int_equal(r.body_len, 0);
	reply_free(&r);
	stop_clean();
}

/* ---- (5) Cache-Control, the served bytes, and the modes on disk ---- */

static void expect_served(const char *pub, const char *file, const char *cache,
                          const char *type)
{
	char target[TLOG_TILE_PATH_MAX + 16], path[900], value[128];
	snprintf(target, sizeof target, "/audit/%s", file);
	snprintf(path, sizeof path, "%s/%s", pub, file);
	size_t len;
	char *bytes = harness_read_file(path, &len);
	if (!bytes)
		fail_msg("%s is not on disk", file);
	reply r;
	assert_int_equal(get("GET", target, &r), 200);
	assert_int_equal(r.body_len, len);
	assert_memory_equal(r.body, bytes, len);
	if (!header(&r, "Cache-Control", value, sizeof value) || strcmp(value, cache))
		fail_msg("%s: Cache-Control \"%s\", wanted \"%s\"", file,
		         header(&r, "Cache-Control", value, sizeof value) ? value : "(none)", cache);
	assert_non_null(header(&r, "Content-Type", value, sizeof value));
	assert_string_equal(value, type);
	reply_free(&r);
	free(bytes);
}

/* The auditor page's files: built into kmsd, served beside the tiles with
 * their type, no-store, nosniff and the page's Content-Security-Policy;
 * HEAD the same head without the body. */
static void expect_page(void)
{
	static const struct {
		const char *target, *type, *marker;
	} files[] = {
		{ "/audit/", "text/html; charset=utf-8", "<script src=\"auditor.js\" defer></script>" },
		{ "/audit/auditor.js", "text/javascript; charset=utf-8", "'use strict';" },
		{ "/audit/auditor.css", "text/css; charset=utf-8", ".status[data-state=\"failed\"]" },
	};
	static const char csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
	                          "connect-src 'self'; img-src 'self'; frame-ancestors 'none'; "
	                          "base-uri 'none'; form-action 'none'";
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		reply r;
		char value[256];
		assert_int_equal(get("GET", files[i].target, &r), 200);
		assert_non_null(r.body);
		if (!memmem(r.body, r.body_len, files[i].marker, strlen(files[i].marker)))
			fail_msg("%s: not the page's file", files[i].target);
		assert_non_null(header(&r, "Content-Type", value, sizeof value));
		assert_string_equal(value, files[i].type);
		assert_non_null(header(&r, "Content-Security-Policy", value, sizeof value));
		assert_string_equal(value, csp);
		assert_non_null(header(&r, "X-Content-Type-Options", value, sizeof value));
		assert_string_equal(value, "nosniff");
		assert_non_null(header(&r, "Cache-Control", value, sizeof value));
		assert_string_equal(value, "no-store");
		assert_non_null(header(&r, "Content-Length", value, sizeof value));
		assert_int_equal(strtoul(value, NULL, 10), r.body_len);
		size_t len = r.body_len;
		reply_free(&r);
		assert_int_equal(get("HEAD", files[i].target, &r), 200);
		assert_int_equal(r.body_len, 0);
		assert_non_null(header(&r, "Content-Length", value, sizeof value));
		assert_int_equal(strtoul(value, NULL, 10), len);
		reply_free(&r);
	}
}

static void expect_mode(const char *path, mode_t want)
{
	struct stat st;
	if (stat(path, &st) != 0)
		fail_msg("%s: %s", path, strerror(errno));
	if ((st.st_mode & 07777) != want)
		fail_msg("%s has mode %04o, wanted %04o", path, (unsigned)(st.st_mode & 07777),
		         (unsigned)want);
}

static void tiles_headers_and_modes(void **state)
{
	(void)state;
	start(NULL);
	char key[35];
	assert_true(harness_create_key(&H, NULL, key));
	for (int i = 0; i < ENTRIES_FOR_FULL_TILE; i++) {
		Kms__Response *resp = e2e_encrypt(&H, key, (const uint8_t *)"x", 1);
		assert_non_null(resp);
		kms__response__free_unpacked(resp, NULL);
	}
	audit_cp cp;
	audit_wait_checkpoint(&H, ENTRIES_FOR_FULL_TILE, CHECKPOINT_WAIT_MS, &cp);
	char pub[700], audit[700];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	audit_dir(&H, NULL, audit, sizeof audit);
	/* What the public checkpoint names (it may trail GetCheckpoint's). */
	char cp_path[800];
	snprintf(cp_path, sizeof cp_path, "%s/checkpoint", pub);
	char *note = harness_read_file(cp_path, NULL);
	assert_non_null(note);
	uint64_t size = strtoull(strchr(note, '\n') + 1, NULL, 10);
	free(note);
	audit_cp_free(&cp);
	assert_true(size >= TLOG_TILE_WIDTH && size < 2 * TLOG_TILE_WIDTH * TLOG_TILE_WIDTH);

	static const char immutable[] = "public, max-age=31536000, immutable";
	static const char octets[] = "application/octet-stream";
	char file[TLOG_TILE_PATH_MAX];
	expect_served(pub, "checkpoint", "no-store", "text/plain; charset=utf-8");
	assert_int_equal(tlog_tile_path(0, 0, TLOG_TILE_WIDTH, file), KMS_OK);
	expect_served(pub, file, immutable, octets);
	assert_int_equal(tlog_bundle_path(0, TLOG_TILE_WIDTH, file), KMS_OK);
	expect_served(pub, file, immutable, octets);
	assert_int_equal(tlog_tile_path(1, 0, tlog_tile_partial_width(size, 1), file), KMS_OK);
	expect_served(pub, file, "no-store", octets);
	unsigned w = tlog_tile_partial_width(size, 0);
	if (w) {
		assert_int_equal(tlog_tile_path(0, 1, w, file), KMS_OK);
		expect_served(pub, file, "no-store", octets);
		assert_int_equal(tlog_bundle_path(1, w, file), KMS_OK);
		expect_served(pub, file, "no-store", octets);
	}
	reply r;
	char value[64];
	static const char *const uncached[] = { "/healthz", "/metrics", "/audit/tile/0/999",
		                                "/nowhere" };
	for (size_t i = 0; i < sizeof uncached / sizeof uncached[0]; i++) {
		get("GET", uncached[i], &r);
		assert_non_null(header(&r, "Cache-Control", value, sizeof value));
		assert_string_equal(value, "no-store");
		reply_free(&r);
	}

	expect_page();

	/* Modes: the data dir and audit/ private; public/ and below public. */
	char path[900];
	snprintf(path, sizeof path, "%s/data", H.dir);
	expect_mode(path, 0700);
	expect_mode(audit, 0700);
	expect_mode(pub, 0755);
	snprintf(path, sizeof path, "%s/tile", pub);
	expect_mode(path, 0755);
	snprintf(path, sizeof path, "%s/tile/0", pub);
	expect_mode(path, 0755);
	snprintf(path, sizeof path, "%s/tile/entries", pub);
	expect_mode(path, 0755);
	snprintf(path, sizeof path, "%s/tile/0/000", pub);
	expect_mode(path, 0644);
	expect_mode(cp_path, 0644);
	snprintf(path, sizeof path, "%s/log.bin", audit);
	expect_mode(path, 0600);
	stop_clean();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(half_sent_flood, teardown),
		cmocka_unit_test_teardown(repeated_headers, teardown),
		cmocka_unit_test_teardown(healthz_cache, teardown),
		cmocka_unit_test_teardown(only_published_paths, teardown),
		cmocka_unit_test_teardown(tiles_headers_and_modes, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
