/*
 * http_parse.h: the pure parts of kmsd's HTTP endpoint (http.h): the listen
 * URL, the request head, and which of the few known paths a request names.
 * No I/O, no allocation, no state: every byte given here came from a peer
 * or the config file, and each function reads only [0, len) of it.
 *
 * What is accepted, and nothing else (docs/audit-log.md, "Serving"):
 *   request line   GET|HEAD SP target SP HTTP/1.0|HTTP/1.1 CRLF
 *   header lines   name ":" value CRLF, name a token; the values are not
 *                  used (no keep-alive, no ranges, no bodies)
 *   target         "/" then [A-Za-z0-9._-/] only: no '%' escapes, no query
 *                  or fragment, at most HTTP_TARGET_MAX bytes
 *   paths          /healthz, /metrics, /audit/checkpoint, and /audit/tile/...
 *                  in the canonical tlog-tiles form (common/tlog/tlog_tiles.h):
 *                  a path is accepted only if tlog_tile_path or
 *                  tlog_bundle_path writes it back byte for byte, so "..",
 *                  hidden files and temporary names never match; and the
 *                  auditor's page (docs/auditor-page.md), exactly
 *                  /audit/, /audit/auditor.js and /audit/auditor.css
 */
#ifndef KMS_HTTP_PARSE_H
#define KMS_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <kms/status.h>

#include "common/tlog/tlog_tiles.h"

/* Request line and headers, the blank line included. Longer: 431. */
#define HTTP_HEAD_MAX 8192
/* The request target. Longer: 414. The longest tile path is 64 bytes. */
#define HTTP_TARGET_MAX 128

typedef enum http_method {
	HTTP_GET,
	HTTP_HEAD,
} http_method;

typedef enum http_route {
	HTTP_ROUTE_NONE,         /* 404 */
	HTTP_ROUTE_HEALTHZ,
	HTTP_ROUTE_METRICS,
	HTTP_ROUTE_CHECKPOINT,   /* mutable: never cached */
	HTTP_ROUTE_TILE_FULL,    /* a full hash tile or entry bundle: immutable */
	HTTP_ROUTE_TILE_PARTIAL, /* tile/.../<N>.p/<W> */
	HTTP_ROUTE_PAGE,         /* one of the auditor page's files: http_page */
} http_route;

/* The auditor page's files, built into kmsd (kms/transport/auditor/). */
typedef enum http_page {
	HTTP_PAGE_INDEX, /* /audit/ */
	HTTP_PAGE_JS,    /* /audit/auditor.js */
	HTTP_PAGE_CSS,   /* /audit/auditor.css */
	HTTP_PAGE_COUNT,
} http_page;

typedef struct http_request {
	http_method method;
	http_route route;
	/* For the checkpoint and tile routes: the file's path under the
	 * public directory ("checkpoint", "tile/0/000"), else "". */
	char file[TLOG_TILE_PATH_MAX];
	/* For HTTP_ROUTE_PAGE: which file. */
	http_page page;
} http_request;

/* The length of the head in buf[0, len), through its blank line
 * ("\r\n\r\n"), or 0 when it has not all arrived. *scanned carries where
 * the last call stopped (start it at 0), so that bytes arriving in many
 * small reads are each looked at a bounded number of times. */
size_t http_head_end(const char *buf, size_t len, size_t *scanned);

/* Parses a whole head (as http_head_end measured it). Returns 200 and
 * fills *out, or the status to answer: 400 (malformed), 405 (a method
 * other than GET or HEAD), 414 (target too long), 505 (not HTTP/1.x). */
int http_parse_head(const char *head, size_t len, http_request *out);

/* Which route an origin-form target names (already checked to be made of
 * the allowed bytes), and the file under the public directory for the
 * checkpoint and tile routes, or the page's file for HTTP_ROUTE_PAGE
 * (*page is left alone for the other routes). */
http_route http_route_of(const char *target, char file[static TLOG_TILE_PATH_MAX],
                         http_page *page);

/* "http://HOST:PORT" with an optional final "/": HOST an IPv4 address,
 * "[IPv6]", "localhost" (127.0.0.1) or empty (127.0.0.1); PORT 1..65535.
 * *loopback says whether the address is 127.0.0.0/8 or ::1. On failure
 * KMS_INVALID_ARGUMENT with one line saying what is wrong. */
kms_status http_listen_parse(const char *url, struct sockaddr_storage *addr, socklen_t *addr_len,
                             bool *loopback) KMS_MUST_USE;

#endif
