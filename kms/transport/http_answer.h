/*
 * http_answer.h: what kmsd's HTTP endpoint answers to a parsed request
 * (http_parse.h), as bytes for http.c to send: a response head, an
 * in-memory body, or an open file to stream after it.
 *
 * Everything here runs on the HTTP thread alone (no locks of its own). It
 * never touches the network; what it may block on: one HSM call for
 * /healthz at most once a second (HTTP_HEALTH_CACHE_US), the metrics
 * snapshot, and opening and fstat'ing one published file.
 */
#ifndef KMS_HTTP_ANSWER_H
#define KMS_HTTP_ANSWER_H

#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

#include "kms/kmsd.h"
#include "kms/transport/http_parse.h"

/* /healthz probes the HSM at most once per this many microseconds. */
#define HTTP_HEALTH_CACHE_US 1000000u

typedef struct http_answers http_answers;

/* One response: head[0, head_len), then body[0, body_len), then file_len
 * bytes of file_fd (-1: none), in that order. body points into text (a
 * short answer) or at heap (the metrics text), or is NULL. */
typedef struct http_response {
	char head[512];
	size_t head_len;
	char text[384];
	char *heap;
	const char *body;
	size_t body_len;
	int file_fd;
	size_t file_len;
} http_response;

/* Opens the answers over d and the published directory public_dir (NULL:
 * no /audit/ files, every such path is 404). The directory is opened once
 * here; files are looked up beneath it without following any link. */
kms_status http_answers_open(kmsd *d, const char *public_dir, http_answers **out) KMS_MUST_USE;

/* Frees it. NULL is ignored. */
void http_answers_close(http_answers *a);

/* The answer to req. Never fails: an internal failure is a 500 or 503
 * answer. For HEAD the head is the GET's and there is no body. */
void http_answer(http_answers *a, const http_request *req, http_response *out);

/* An error answer (400, 404, 405, 414, 431, 503, 505) with a one-line
 * plain-text body. */
void http_answer_error(int status, http_response *out);

/* An empty response (no file). */
void http_response_init(http_response *out);

/* Frees what out holds (heap body, file) and empties it. */
void http_response_clear(http_response *out);

#endif
