#include "kms/transport/http.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "kms/audit/audit.h"
#include "common/log.h"
#include "common/error.h"
#include "hsm/hsm.h"
#include "kms/transport/metrics.h"
#include "common/tlog/tlog_tiles.h"

struct http_server {
	nng_http_server *srv;
	nng_url *url;
	kmsd *d;
	char public_dir[KMSD_PATH_MAX + 32];
};

static void reply(nng_aio *aio, uint16_t status, const char *type, const char *body, size_t len)
{
	nng_http_res *res = NULL;
	if (nng_http_res_alloc(&res) != 0) {
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	nng_http_res_set_status(res, status);
	nng_http_res_set_header(res, "Content-Type", type);
	nng_http_res_set_header(res, "Cache-Control", "no-store");
	nng_http_res_copy_data(res, body, len);
	nng_aio_set_output(aio, 0, res);
	nng_aio_finish(aio, 0);
}

static void on_healthz(nng_aio *aio)
{
	nng_http_handler *h = nng_aio_get_input(aio, 1);
	kmsd *d = nng_http_handler_get_data(h);
	char body[512];
	uint8_t probe[1];
	char why[256];
	if (hsm_random(d->hsm, probe, sizeof probe) != KMS_OK) {
		int n = snprintf(body, sizeof body, "hsm unavailable: %s\n", kms_error_message());
		reply(aio, 503, "text/plain", body, (size_t)n);
	} else if (d->audit && !audit_healthy(d->audit, why, sizeof why)) {
		int n = snprintf(body, sizeof body, "audit log cannot be written: %s\n", why);
		reply(aio, 503, "text/plain", body, (size_t)n);
	} else if (atomic_load(&d->draining)) {
		reply(aio, 503, "text/plain", "draining\n", 9);
	} else {
		reply(aio, 200, "text/plain", "ok\n", 3);
	}
}

static void on_metrics(nng_aio *aio)
{
	nng_http_handler *h = nng_aio_get_input(aio, 1);
	kmsd *d = nng_http_handler_get_data(h);
	char *text = NULL;
	size_t len = 0;
	if (metrics_render(d, &text, &len) != KMS_OK) {
		reply(aio, 500, "text/plain", "metrics unavailable\n", 20);
		return;
	}
	reply(aio, 200, "text/plain; version=0.0.4", text, len);
	free(text);
}

/*
 * /audit/...: the published tlog-tiles files, and nothing else. NNG's own
 * directory handler joins the raw URI to the directory, "/audit/../x"
 * included (seen with Debian's 1.5.2), so paths are checked here: only
 * "checkpoint" and "tile/..." made of [A-Za-z0-9._-] components, none of
 * them "." or "..", no percent-escapes, no query; a file is opened without
 * following links and must be a regular file.
 */
#define AUDIT_PREFIX "/audit/"
#define AUDIT_PATH_MAX 128

static bool tile_path_ok(const char *path)
{
	if (!strcmp(path, "checkpoint"))
		return true;
	if (strncmp(path, "tile/", 5) != 0 || strlen(path) > AUDIT_PATH_MAX)
		return false;
	const char *component = path;
	for (const char *p = path;; p++) {
		if (*p == '/' || *p == '\0') {
			size_t n = (size_t)(p - component);
			if (n == 0 || (n == 1 && component[0] == '.') ||
			    (n == 2 && component[0] == '.' && component[1] == '.'))
				return false;
			if (*p == '\0')
				return true;
			component = p + 1;
			continue;
		}
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
}

static void on_audit_file(nng_aio *aio)
{
	nng_http_req *req = nng_aio_get_input(aio, 0);
	nng_http_handler *h = nng_aio_get_input(aio, 1);
	const http_server *s = nng_http_handler_get_data(h);
	const char *uri = nng_http_req_get_uri(req);
	const char *path = uri + strlen(AUDIT_PREFIX);
	if (strncmp(uri, AUDIT_PREFIX, strlen(AUDIT_PREFIX)) != 0 || !tile_path_ok(path)) {
		reply(aio, 404, "text/plain", "not found\n", 10);
		return;
	}
	char full[sizeof s->public_dir + AUDIT_PATH_MAX + 2];
	snprintf(full, sizeof full, "%s/%s", s->public_dir, path);
	int fd = open(full, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (size_t)st.st_size > TLOG_BUNDLE_BYTES_MAX) {
		if (fd >= 0)
			close(fd);
		reply(aio, 404, "text/plain", "not found\n", 10);
		return;
	}
	size_t len = (size_t)st.st_size;
	char *body = malloc(len ? len : 1);
	ssize_t got = body ? pread(fd, body, len, 0) : -1;
	close(fd);
	if (got != (ssize_t)len) {
		free(body);
		reply(aio, 500, "text/plain", "read failed\n", 12);
		return;
	}
	reply(aio, 200, strcmp(path, "checkpoint") ? "application/octet-stream"
	                                           : "text/plain; charset=utf-8",
	      body, len);
	free(body);
}

static kms_status add(http_server *s, nng_http_handler *h, const char *what)
{
	int rv = nng_http_server_add_handler(s->srv, h);
	if (rv != 0) {
		nng_http_handler_free(h);
		return KMS_FAIL(KMS_INTERNAL, "http: handler %s: %s", what, nng_strerror(rv));
	}
	return KMS_OK;
}

static kms_status add_callback(http_server *s, const char *path, void (*cb)(nng_aio *))
{
	nng_http_handler *h;
	int rv = nng_http_handler_alloc(&h, path, cb);
	if (rv == 0)
		rv = nng_http_handler_set_data(h, s->d, NULL);
	if (rv != 0)
		return KMS_FAIL(KMS_INTERNAL, "http: handler %s: %s", path, nng_strerror(rv));
	return add(s, h, path);
}

kms_status http_start(kmsd *d, const char *url, const char *audit_public_dir, http_server **out)
{
	*out = NULL;
	http_server *s = calloc(1, sizeof *s);
	KMS_ENSURE(s, KMS_INTERNAL, "http: out of memory");
	s->d = d;
	kms_status st = KMS_OK;
	int rv = nng_url_parse(&s->url, url);
	if (rv == 0)
		rv = nng_http_server_hold(&s->srv, s->url);
	if (rv != 0) {
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "http %s: %s", url, nng_strerror(rv));
		goto out;
	}
	KMS_GUARD_OUT(st, add_callback(s, "/healthz", on_healthz));
	KMS_GUARD_OUT(st, add_callback(s, "/metrics", on_metrics));
	if (audit_public_dir) {
		nng_http_handler *h;
		snprintf(s->public_dir, sizeof s->public_dir, "%s", audit_public_dir);
		rv = nng_http_handler_alloc(&h, "/audit", on_audit_file);
		if (rv == 0 && (rv = nng_http_handler_set_tree(h)) == 0)
			rv = nng_http_handler_set_data(h, s, NULL);
		if (rv != 0) {
			st = KMS_FAIL(KMS_INTERNAL, "http: /audit: %s", nng_strerror(rv));
			goto out;
		}
		KMS_GUARD_OUT(st, add(s, h, "/audit"));
	}
	if ((rv = nng_http_server_start(s->srv)) != 0) {
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "http %s: %s", url, nng_strerror(rv));
		goto out;
	}
	kms_log("info", "http on %s: /healthz, /metrics, /audit/ (the audit log's tiles)", url);
out:
	if (st != KMS_OK) {
		http_stop(s);
		return st;
	}
	*out = s;
	return KMS_OK;
}

void http_stop(http_server *s)
{
	if (!s)
		return;
	if (s->srv) {
		nng_http_server_stop(s->srv);
		nng_http_server_release(s->srv);
	}
	if (s->url)
		nng_url_free(s->url);
	free(s);
}
