/*
 * admin_audit_http.c: the published log's files over HTTP, for audit tail
 * --http: a tlog_file_source that GETs <base><path> from kmsd's HTTP
 * listener (or any server that serves a copy of the log, plain http only).
 *
 * One request per connection (Connection: close), HTTP/1.1, every step
 * bounded: the whole exchange within ADMIN_AUDIT_HTTP_TIMEOUT_MS, the head
 * within HTTP_HEAD_MAX bytes, the body within the caller's max. The
 * answer is believed only as bytes: everything read here is verified
 * against the signed checkpoint by the caller.
 */
#include "clients/cli/admin_audit.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"

#define HTTP_HEAD_MAX 16384
#define HTTP_SCHEME "http://"
#define HTTP_DEFAULT_PREFIX "/audit/"
#define HTTP_READ_CHUNK 65536

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Milliseconds left before deadline, at least 0. */
static int ms_left(uint64_t deadline)
{
	uint64_t now = now_ms();
	return now >= deadline ? 0 : (int)(deadline - now);
}

static bool url_char_ok(char c)
{
	return c > 0x20 && c < 0x7f && c != '"' && c != '<' && c != '>' && c != '\\' &&
	       c != '^' && c != '`' && c != '{' && c != '|' && c != '}' && c != '#' && c != '?';
}

/* "[host]:port" or "host:port" (a port is required) into h. */
static bool parse_authority(const char *a, size_t len, struct admin_audit_http *h)
{
	const char *colon;
	size_t host_len;
	if (len && a[0] == '[') {
		const char *close = memchr(a, ']', len);
		if (!close || (size_t)(close - a) + 1 >= len || close[1] != ':')
			return false;
		host_len = (size_t)(close - a) - 1;
		memcpy(h->host, a + 1, host_len < sizeof h->host ? host_len : 0);
		colon = close + 1;
	} else {
		colon = NULL;
		for (size_t i = 0; i < len; i++)
			if (a[i] == ':')
				colon = a + i;
		if (!colon)
			return false;
		host_len = (size_t)(colon - a);
		memcpy(h->host, a, host_len < sizeof h->host ? host_len : 0);
	}
	if (host_len == 0 || host_len >= sizeof h->host)
		return false;
	h->host[host_len] = '\0';
	size_t port_len = len - (size_t)(colon + 1 - a);
	if (port_len == 0 || port_len >= sizeof h->port)
		return false;
	memcpy(h->port, colon + 1, port_len);
	h->port[port_len] = '\0';
	uint64_t port;
	return admin_audit_parse_u64(h->port, 65535, &port) && port > 0;
}

bool admin_audit_http_parse(const char *url, struct admin_audit_http *out)
{
	memset(out, 0, sizeof *out);
	size_t scheme = strlen(HTTP_SCHEME);
	if (strncasecmp(url, HTTP_SCHEME, scheme) != 0)
		return false;
	const char *a = url + scheme;
	const char *slash = strchr(a, '/');
	size_t a_len = slash ? (size_t)(slash - a) : strlen(a);
	if (!parse_authority(a, a_len, out))
		return false;
	const char *path = slash ? slash : "";
	for (const char *p = path; *p; p++)
		if (!url_char_ok(*p))
			return false;
	/* kmsd's own address: its log is under /audit/. Any other path is the
	 * root of a copy of the log, as given. */
	const char *prefix = (!path[0] || strcmp(path, "/") == 0) ? HTTP_DEFAULT_PREFIX : path;
	size_t n = strlen(prefix);
	bool slash_end = prefix[n - 1] == '/';
	if (n + (slash_end ? 0 : 1) >= sizeof out->prefix)
		return false;
	snprintf(out->prefix, sizeof out->prefix, "%s%s", prefix, slash_end ? "" : "/");
	snprintf(out->shown, sizeof out->shown, "http://%s%s%s:%s%s",
	         strchr(out->host, ':') ? "[" : "", out->host, strchr(out->host, ':') ? "]" : "",
	         out->port, out->prefix);
	out->timeout_ms = ADMIN_AUDIT_HTTP_TIMEOUT_MS;
	return true;
}

/* A connected socket to h, within deadline; -1 with the error set. */
static int http_connect(const struct admin_audit_http *h, uint64_t deadline)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
		                  .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(h->host, h->port, &hints, &res);
	if (rc != 0) {
		(void)KMS_FAIL(KMS_UNAVAILABLE, "%s: cannot resolve %s: %s", h->shown, h->host,
		               gai_strerror(rc));
		return -1;
	}
	int fd = -1, err = 0;
	for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
		            ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
			err = errno;
			close(fd);
			fd = -1;
			continue;
		}
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		socklen_t len = sizeof err;
		err = 0;
		if (poll(&p, 1, ms_left(deadline)) != 1 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
			if (err == 0)
				err = ETIMEDOUT;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0)
		(void)KMS_FAIL(KMS_UNAVAILABLE, "%s: cannot connect: %s (is kmsd's [audit] http "
		               "listener at this address?)", h->shown, strerror(err ? err : EIO));
	return fd;
}

static kms_status http_send(const struct admin_audit_http *h, int fd, const char *req,
                            size_t len, uint64_t deadline)
{
	size_t done = 0;
	while (done < len) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		KMS_ENSURE(poll(&p, 1, ms_left(deadline)) == 1, KMS_UNAVAILABLE,
		           "%s: no answer within %d ms", h->shown, h->timeout_ms);
		ssize_t w = send(fd, req + done, len - done, MSG_NOSIGNAL);
		if (w < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		KMS_ENSURE(w > 0, KMS_UNAVAILABLE, "%s: sending the request failed: %s", h->shown,
		           w < 0 ? strerror(errno) : "no progress");
		done += (size_t)w;
	}
	return KMS_OK;
}

/* Reads until the peer closes, at most cap bytes (more is an error). */
static kms_status http_read_all(const struct admin_audit_http *h, int fd, uint8_t *buf,
                                size_t cap, size_t *len, uint64_t deadline)
{
	*len = 0;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		KMS_ENSURE(poll(&p, 1, ms_left(deadline)) == 1, KMS_UNAVAILABLE,
		           "%s: no complete answer within %d ms", h->shown, h->timeout_ms);
		size_t room = cap - *len;
		uint8_t probe; /* full: one byte more, read aside, says it is too large */
		ssize_t r = room ? recv(fd, buf + *len, room < HTTP_READ_CHUNK ? room : HTTP_READ_CHUNK, 0)
		                 : recv(fd, &probe, 1, 0);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		KMS_ENSURE(r >= 0, KMS_UNAVAILABLE, "%s: reading the answer failed: %s", h->shown,
		           strerror(errno));
		if (r == 0)
			return KMS_OK;
		KMS_ENSURE(room > 0, KMS_INVALID_CIPHERTEXT, "%s: the answer is larger than %zu "
		           "bytes", h->shown, cap);
		*len += (size_t)r;
	}
}

/* The head's header value of name (case-insensitive), or NULL. */
static const char *header_value(const char *head, const char *name, size_t *vlen)
{
	size_t n = strlen(name);
	for (const char *line = strstr(head, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
		const char *l = line + 2;
		if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
			const char *v = l + n + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			const char *end = strstr(v, "\r\n");
			*vlen = end ? (size_t)(end - v) : strlen(v);
			return v;
		}
	}
	return NULL;
}

/* Splits raw[0..len) into the status and the body (which must be whole:
 * Content-Length, when given, is checked). */
static kms_status http_parse_answer(const struct admin_audit_http *h, const char *path,
                                    uint8_t *raw, size_t len, int *status, size_t *body_off,
                                    size_t *body_len)
{
	char head[HTTP_HEAD_MAX + 1];
	const uint8_t *end = NULL;
	for (size_t i = 0; i + 4 <= len && i < HTTP_HEAD_MAX; i++)
		if (memcmp(raw + i, "\r\n\r\n", 4) == 0) {
			end = raw + i;
			break;
		}
	KMS_ENSURE(end, KMS_UNAVAILABLE, "%s%s: not an HTTP answer", h->shown, path);
	size_t head_len = (size_t)(end - raw);
	memcpy(head, raw, head_len);
	head[head_len] = '\0';
	KMS_ENSURE(strlen(head) == head_len && head_len >= 12 &&
	           strncmp(head, "HTTP/1.", 7) == 0 && head[8] == ' ' && head[9] >= '1' &&
	           head[9] <= '5' && head[10] >= '0' && head[10] <= '9' && head[11] >= '0' &&
	           head[11] <= '9', KMS_UNAVAILABLE, "%s%s: not an HTTP answer", h->shown, path);
	*status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
	*body_off = head_len + 4;
	*body_len = len - *body_off;
	size_t vlen;
	const char *te = header_value(head, "Transfer-Encoding", &vlen);
	KMS_ENSURE(!te || (vlen == 8 && strncasecmp(te, "identity", 8) == 0), KMS_UNAVAILABLE,
	           "%s%s: the server sent a chunked answer; serve the log's files as they are",
	           h->shown, path);
	const char *cl = header_value(head, "Content-Length", &vlen);
	if (cl) {
		char digits[24];
		uint64_t want;
		KMS_ENSURE(vlen < sizeof digits, KMS_UNAVAILABLE, "%s%s: bad Content-Length",
		           h->shown, path);
		memcpy(digits, cl, vlen);
		digits[vlen] = '\0';
		KMS_ENSURE(admin_audit_parse_u64(digits, UINT64_MAX, &want), KMS_UNAVAILABLE,
		           "%s%s: bad Content-Length", h->shown, path);
		KMS_ENSURE(want == *body_len, KMS_UNAVAILABLE, "%s%s: the answer was cut (%zu of "
		           "%llu bytes)", h->shown, path, *body_len, (unsigned long long)want);
	}
	return KMS_OK;
}

/* Maps the answer's status to a tlog_file_source status: 200 is the file,
 * 404 a missing one. */
static kms_status http_status(const struct admin_audit_http *h, const char *path, int status)
{
	if (status == 200)
		return KMS_OK;
	if (status == 404)
		return KMS_FAIL(KMS_NOT_FOUND, "%s: missing (404 from %s)", path, h->shown);
	return KMS_FAIL(KMS_UNAVAILABLE, "%s%s: the server answered %d", h->shown, path, status);
}

kms_status admin_audit_http_source(void *ctx, const char *path, size_t max, uint8_t **out,
                                   size_t *len)
{
	const struct admin_audit_http *h = ctx;
	uint64_t deadline = now_ms() + (uint64_t)h->timeout_ms;
	char *req = NULL;
	uint8_t *raw = NULL;
	size_t raw_len = 0, body_off = 0, body_len = 0;
	int status = 0, fd = -1;
	kms_status st;

	*out = NULL;
	*len = 0;
	KMS_ENSURE(max <= SIZE_MAX - HTTP_HEAD_MAX, KMS_INTERNAL, "%s: too large", path);
	int n = asprintf(&req, "GET %s%s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: kms-admin\r\n"
	                 "Accept: */*\r\nConnection: close\r\n\r\n", h->prefix, path,
	                 strchr(h->host, ':') ? "[" : "", h->host,
	                 strchr(h->host, ':') ? "]" : "", h->port);
	if (n < 0) {
		req = NULL;
		return KMS_FAIL(KMS_INTERNAL, "out of memory");
	}
	raw = malloc(max + HTTP_HEAD_MAX);
	if (!raw) {
		st = KMS_FAIL(KMS_INTERNAL, "out of memory");
		goto out;
	}
	if ((fd = http_connect(h, deadline)) < 0) {
		st = KMS_UNAVAILABLE;
		goto out;
	}
	if ((st = http_send(h, fd, req, (size_t)n, deadline)) != KMS_OK ||
	    (st = http_read_all(h, fd, raw, max + HTTP_HEAD_MAX, &raw_len, deadline)) != KMS_OK ||
	    (st = http_parse_answer(h, path, raw, raw_len, &status, &body_off, &body_len)) !=
	            KMS_OK ||
	    (st = http_status(h, path, status)) != KMS_OK)
		goto out;
	if (body_len > max) {
		st = KMS_FAIL(KMS_INVALID_CIPHERTEXT, "%s: larger than %zu bytes", path, max);
		goto out;
	}
	memmove(raw, raw + body_off, body_len);
	*out = raw;
	*len = body_len;
	raw = NULL;
	st = KMS_OK;
out:
	if (fd >= 0)
		close(fd);
	free(raw);
	free(req);
	return st;
}
