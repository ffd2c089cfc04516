/*
 * http.h: kmsd's HTTP endpoint, a small HTTP/1.1 server of its own on one
 * thread (epoll, non-blocking sockets), loopback by default:
 *   /healthz       200 "ok" when the HSM answers (probed at most once a
 *                  second), the audit log is writable and kmsd is not
 *                  draining; else 503 with the reason
 *   /metrics       Prometheus text (transport/metrics.c)
 *   /audit/...     the published tlog-tiles files (checkpoint, tile/...),
 *                  and no other file
 *   /audit/        the auditor's page (index.html, auditor.js,
 *                  auditor.css; docs/auditor-page.md), built into kmsd,
 *                  served with the audit files and only with them
 *
 * Bounds (docs/security.md, "HTTP"): at most max_connections open, a
 * connection past that is answered 503 and closed at once; the request
 * line and headers at most HTTP_HEAD_MAX bytes (431 past it, checked as
 * bytes arrive, before any parsing); the request must arrive within
 * read_timeout_ms of the accept and the response be written within
 * write_timeout_ms, or the connection is closed; GET and HEAD only; one
 * request per connection (Connection: close). At most
 * 2 * max_connections + 3 file descriptors: each connection's socket and
 * the file it is sending, the listener, the epoll and the wake-up fds.
 */
#ifndef KMS_HTTP_H
#define KMS_HTTP_H

#include <kms/status.h>

#include "kms/kmsd.h"

typedef struct http_server http_server;

typedef struct http_config {
	const char *url;             /* "http://127.0.0.1:7480" (http_listen_parse) */
	const char *public_dir;      /* the audit log's published directory, or NULL */
	unsigned max_connections;    /* 1.. */
	unsigned read_timeout_ms;    /* accept to the end of the request head */
	unsigned write_timeout_ms;   /* the whole response */
} http_config;

/* Binds the listener; accepts nothing yet (a peer that connects waits in
 * the backlog). Fails (one line) when the URL does not parse, the address
 * cannot be bound or the directory cannot be opened. Does not check that
 * the address is loopback: the config does (docs/config.md, http_public). */
kms_status http_open(kmsd *d, const http_config *cfg, http_server **out) KMS_MUST_USE;

/* Starts the HTTP thread, which accepts and answers. On failure the caller
 * stops s (http_stop). */
kms_status http_serve(http_server *s) KMS_MUST_USE;

/* Stops the thread, closes every connection and the listener, frees s.
 * Returns once the thread has exited (it never blocks on a peer). NULL is
 * ignored. */
void http_stop(http_server *s);

#endif
