#include "kms/transport/http_answer.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "hsm/hsm.h"
#include "kms/audit/audit.h"
#include "kms/transport/auditor_page.h"
#include "kms/transport/metrics.h"
#include "kms/transport/server.h"

#define WHY_MAX 256
/* Full tiles and bundles never change (docs/audit-log.md, "Files"). */
#define CACHE_IMMUTABLE "public, max-age=31536000, immutable"
#define CACHE_NONE "no-store"
/* The auditor page: its own files and same-origin fetches only, no inline
 * script or style, never framed (docs/auditor-page.md). */
#define PAGE_HEADERS                                                                   \
	"Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; " \
	"connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; "     \
	"form-action 'none'\r\n"                                                            \
	"Referrer-Policy: no-referrer\r\n"

struct http_answers {
	kmsd *d;
	int public_fd; /* O_PATH of the published directory, or -1 */
	/* The last HSM probe for /healthz (HTTP thread only). */
	bool probed;
	uint64_t probe_at_us;
	bool probe_ok;
	char probe_why[WHY_MAX];
	uint64_t probes; /* HSM probes made: the X-Kms-Health-Probe header */
	/* The last ipc self-probe, cached the same way. */
	bool ipc_probed;
	uint64_t ipc_probe_at_us;
	bool ipc_ok;
	char ipc_why[WHY_MAX];
};

kms_status http_answers_open(kmsd *d, const char *public_dir, http_answers **out)
{
	*out = NULL;
	http_answers *a = calloc(1, sizeof *a);
	KMS_ENSURE(a, KMS_INTERNAL, "http: out of memory");
	a->d = d;
	a->public_fd = -1;
	if (public_dir) {
		a->public_fd = open(public_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (a->public_fd < 0) {
			int err = errno;
			free(a);
			return KMS_FAIL(KMS_INVALID_ARGUMENT, "http: audit directory %s: %s", public_dir,
			                strerror(err));
		}
	}
	*out = a;
	return KMS_OK;
}

void http_answers_close(http_answers *a)
{
	if (!a)
		return;
	if (a->public_fd >= 0)
		close(a->public_fd);
	free(a);
}

void http_response_init(http_response *out)
{
	memset(out, 0, sizeof *out);
	out->file_fd = -1;
}

void http_response_clear(http_response *out)
{
	free(out->heap);
	if (out->file_fd >= 0)
		close(out->file_fd);
	http_response_init(out);
}

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Error";
	}
}

/* Writes the head. extra is "" or whole header lines ending in CRLF. */
static void set_head(http_response *out, int status, const char *type, size_t content_length,
                     const char *cache, const char *extra)
{
	int n = snprintf(out->head, sizeof out->head,
	                 "HTTP/1.1 %d %s\r\n"
	                 "Content-Type: %s\r\n"
	                 "Content-Length: %zu\r\n"
	                 "Cache-Control: %s\r\n"
	                 "X-Content-Type-Options: nosniff\r\n"
	                 "%s"
	                 "Connection: close\r\n\r\n",
	                 status, reason(status), type, content_length, cache, extra);
	/* Every argument is a constant of this file or a number: it fits. */
	out->head_len = n > 0 && (size_t)n < sizeof out->head ? (size_t)n : 0;
}

/* A short body, copied into the response (cut to fit). */
static void set_text(http_response *out, int status, const char *type, const char *extra,
                     const char *text, size_t len)
{
	http_response_clear(out);
	if (len > sizeof out->text)
		len = sizeof out->text;
	memcpy(out->text, text, len);
	out->body = out->text;
	out->body_len = len;
	set_head(out, status, type, len, CACHE_NONE, extra);
}

_Static_assert(HTTP_HEAD_MAX == 8192, "the 431 answer below says 8192 bytes");

void http_answer_error(int status, http_response *out)
{
	const char *what;
	switch (status) {
	case 400: what = "bad request: only GET or HEAD of a plain path, HTTP/1.x"; break;
	case 404: what = "not found"; break;
	case 405: what = "method not allowed: use GET or HEAD"; break;
	case 414: what = "request target too long"; break;
	case 431: what = "request head too large: at most 8192 bytes"; break;
	case 503: what = "too many HTTP connections: try again shortly"; break;
	case 505: what = "HTTP version not supported: use HTTP/1.1"; break;
	default: status = 500; what = "internal error"; break;
	}
	char line[128];
	int n = snprintf(line, sizeof line, "%s\n", what);
	set_text(out, status, "text/plain; charset=utf-8",
	         status == 405 ? "Allow: GET, HEAD\r\n" : "", line, (size_t)n);
}

/* ---- /healthz ---- */

/* The HSM answers a one-byte random request, at most once a second: an
 * unauthenticated client must not be able to turn HTTP requests into HSM
 * calls. */
static void probe_hsm(http_answers *a)
{
	uint64_t now = kms_monotonic_us();
	if (a->probed && now - a->probe_at_us < HTTP_HEALTH_CACHE_US)
		return;
	uint8_t byte[1];
	a->probe_ok = hsm_random(a->d->hsm, byte, sizeof byte) == KMS_OK;
	if (!a->probe_ok) {
		snprintf(a->probe_why, sizeof a->probe_why, "%s", kms_error_message());
		(void)kms_error_strip_paths(a->probe_why); /* anyone may ask: no paths */
	}
	a->probe_at_us = kms_monotonic_us();
	a->probed = true;
	a->probes++;
}

/* kmsd's own connection to each ipc:// socket gets the server's half of
 * the handshake (server_ipc_answers), at most once a second: a listener
 * that stopped accepting makes /healthz fail. */
static void probe_ipc(http_answers *a)
{
	uint64_t now = kms_monotonic_us();
	if (a->ipc_probed && now - a->ipc_probe_at_us < HTTP_HEALTH_CACHE_US)
		return;
	a->ipc_ok = server_ipc_answers(a->d->transport, a->ipc_why, sizeof a->ipc_why);
	if (!a->ipc_ok)
		(void)kms_error_strip_paths(a->ipc_why);
	a->ipc_probe_at_us = kms_monotonic_us();
	a->ipc_probed = true;
}

static void answer_healthz(http_answers *a, http_response *out)
{
	char body[WHY_MAX + 64], why[WHY_MAX], extra[64];
	int status = 503, n;
	probe_hsm(a);
	snprintf(extra, sizeof extra, "X-Kms-Health-Probe: %llu\r\n",
	         (unsigned long long)a->probes);
	if (a->probe_ok)
		probe_ipc(a);
	if (!a->probe_ok)
		n = snprintf(body, sizeof body, "hsm unavailable: %s\n", a->probe_why);
	else if (!a->ipc_ok)
		n = snprintf(body, sizeof body, "ipc endpoint unavailable: %s\n", a->ipc_why);
	else if (a->d->audit && !audit_healthy(a->d->audit, why, sizeof why))
		n = snprintf(body, sizeof body, "audit log cannot be written: %s\n", why);
	else if (atomic_load(&a->d->draining))
		n = snprintf(body, sizeof body, "draining\n");
	else {
		n = snprintf(body, sizeof body, "ok\n");
		status = 200;
	}
	size_t len = n > 0 ? (size_t)n : 0;
	if (len >= sizeof body)
		len = sizeof body - 1;
	set_text(out, status, "text/plain", extra, body, len);
}

/* ---- /metrics ---- */

static void answer_metrics(http_answers *a, http_response *out)
{
	char *text = NULL;
	size_t len = 0;
	if (metrics_render(a->d, &text, &len) != KMS_OK) {
		http_answer_error(500, out);
		return;
	}
	http_response_clear(out);
	out->heap = text;
	out->body = text;
	out->body_len = len;
	set_head(out, 200, "text/plain; version=0.0.4", len, CACHE_NONE, "");
}

/* ---- /audit/... ---- */

/* file (already a canonical tlog path) beneath the published directory:
 * no symbolic link anywhere on the way, never out of the directory, never
 * blocking on a FIFO. openat2 where the kernel has it, else O_NOFOLLOW on
 * the last component (the grammar already rules out "..": every other
 * component is a directory kmsd made). */
static int open_published(int dir_fd, const char *file)
{
	struct open_how how = {
		.flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	int fd = (int)syscall(SYS_openat2, dir_fd, file, &how, sizeof how);
	if (fd < 0 && (errno == ENOSYS || errno == EPERM))
		fd = openat(dir_fd, file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	return fd;
}

static void answer_file(http_answers *a, const http_request *req, http_response *out)
{
	if (a->public_fd < 0) {
		http_answer_error(404, out);
		return;
	}
	int fd = open_published(a->public_fd, req->file);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size > TLOG_BUNDLE_BYTES_MAX) {
		if (fd >= 0)
			close(fd);
		metrics_audit_http_read(METRICS_AUDIT_MISSING);
		http_answer_error(404, out);
		return;
	}
	metrics_audit_http_read(req->route == HTTP_ROUTE_CHECKPOINT ? METRICS_AUDIT_CHECKPOINT
	                                                            : METRICS_AUDIT_TILE);
	http_response_clear(out);
	out->file_fd = fd;
	out->file_len = (size_t)st.st_size;
	bool checkpoint = req->route == HTTP_ROUTE_CHECKPOINT;
	set_head(out, 200, checkpoint ? "text/plain; charset=utf-8" : "application/octet-stream",
	         out->file_len, req->route == HTTP_ROUTE_TILE_FULL ? CACHE_IMMUTABLE : CACHE_NONE,
	         "");
}

/* ---- the auditor page ---- */

_Static_assert(HTTP_PAGE_COUNT == sizeof auditor_page_files / sizeof auditor_page_files[0],
               "one built-in file per page route");

/* One of the page's built-in files, served only where the published
 * directory is: the page reads nothing else. */
static void answer_page(http_answers *a, const http_request *req, http_response *out)
{
	static const char *const types[HTTP_PAGE_COUNT] = {
		[HTTP_PAGE_INDEX] = "text/html; charset=utf-8",
		[HTTP_PAGE_JS] = "text/javascript; charset=utf-8",
		[HTTP_PAGE_CSS] = "text/css; charset=utf-8",
	};
	if (a->public_fd < 0 || req->page >= HTTP_PAGE_COUNT) {
		http_answer_error(404, out);
		return;
	}
	const auditor_file *f = &auditor_page_files[req->page];
	http_response_clear(out);
	out->body = (const char *)f->bytes;
	out->body_len = f->len;
	set_head(out, 200, types[req->page], f->len, CACHE_NONE, PAGE_HEADERS);
}

void http_answer(http_answers *a, const http_request *req, http_response *out)
{
	switch (req->route) {
	case HTTP_ROUTE_HEALTHZ:
		answer_healthz(a, out);
		break;
	case HTTP_ROUTE_METRICS:
		answer_metrics(a, out);
		break;
	case HTTP_ROUTE_CHECKPOINT:
	case HTTP_ROUTE_TILE_FULL:
	case HTTP_ROUTE_TILE_PARTIAL:
		answer_file(a, req, out);
		break;
	case HTTP_ROUTE_PAGE:
		answer_page(a, req, out);
		break;
	case HTTP_ROUTE_NONE:
		http_answer_error(404, out);
		break;
	}
	if (req->method == HTTP_HEAD) {
		free(out->heap);
		out->heap = NULL;
		out->body = NULL;
		out->body_len = 0;
		if (out->file_fd >= 0)
			close(out->file_fd);
		out->file_fd = -1;
		out->file_len = 0;
	}
}
