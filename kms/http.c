#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "audit.h"
#include "error.h"
#include "hsm.h"
#include "metrics.h"

struct http_server {
	nng_http_server *srv;
	nng_url *url;
	kmsd *d;
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
		if ((rv = nng_http_handler_alloc_directory(&h, "/audit", audit_public_dir)) != 0) {
			st = KMS_FAIL(KMS_INTERNAL, "http: /audit: %s", nng_strerror(rv));
			goto out;
		}
		KMS_GUARD_OUT(st, add(s, h, "/audit"));
	}
	if ((rv = nng_http_server_start(s->srv)) != 0) {
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "http %s: %s", url, nng_strerror(rv));
		goto out;
	}
	kmsd_log("info", "http on %s: /healthz, /metrics, /audit/ (the audit log's tiles)", url);
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
