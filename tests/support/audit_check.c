#include "tests/support/audit_check.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/e2e_ops.h"

#define RFC3339_US_LEN 27 /* 2026-11-28T00:13:45.123456Z */
#define CLOCK_SLACK_S (24 * 3600)
#define HTTP_HEAD_MAX 8192

void audit_dir(const harness *h, const char *data_subdir, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s/audit", h->dir, data_subdir ? data_subdir : "data");
}

void audit_public_dir(const harness *h, const char *data_subdir, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s/audit/public", h->dir, data_subdir ? data_subdir : "data");
}

/* GetCheckpoint; false (and nothing in *out) when kmsd has none yet
 * (UNAVAILABLE: a replica whose copy is still catching up). */
static bool checkpoint_get(harness *h, audit_cp *out)
{
	memset(out, 0, sizeof *out);
	Kms__GetCheckpointRequest g = KMS__GET_CHECKPOINT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_GET_CHECKPOINT;
	req.get_checkpoint = &g;
	Kms__Response *r = harness_call(h, &req);
	if (!r)
		fail_msg("GetCheckpoint: no answer");
	if (r->status == KMS__STATUS__UNAVAILABLE && strstr(r->message, "no checkpoint yet")) {
		kms__response__free_unpacked(r, NULL);
		return false;
	}
	if (r->status != KMS__STATUS__OK || r->result_case != KMS__RESPONSE__RESULT_GET_CHECKPOINT)
		fail_msg("GetCheckpoint: status %d: %s", r->status, r->message);
	Kms__GetCheckpointResponse *c = r->get_checkpoint;
	assert_int_equal(c->root_hash.len, TLOG_HASH_SIZE);
	assert_true(strlen(c->verifier_key) < sizeof out->vkey);
	out->note = strdup(c->checkpoint);
	assert_non_null(out->note);
	out->size = c->tree_size;
	memcpy(out->root, c->root_hash.data, TLOG_HASH_SIZE);
	snprintf(out->vkey, sizeof out->vkey, "%s", c->verifier_key);
	kms__response__free_unpacked(r, NULL);

	/* The note must say what the response says, signed by that key. */
	tlog_verifier v;
	tlog_note_view view;
	tlog_checkpoint cp;
	if (tlog_verifier_key_parse(out->vkey, &v) != KMS_OK)
		fail_msg("verifier key %s: %s", out->vkey, kms_error_message());
	if (tlog_note_verify(out->note, strlen(out->note), &v, "checkpoint", &view) != KMS_OK)
		fail_msg("GetCheckpoint's note: %s", kms_error_message());
	if (tlog_checkpoint_parse(view.body, view.body_len, "checkpoint", &cp) != KMS_OK)
		fail_msg("GetCheckpoint's body: %s", kms_error_message());
	assert_int_equal(cp.tree_size, out->size);
	assert_memory_equal(cp.root, out->root, TLOG_HASH_SIZE);
	return true;
}

void audit_get_checkpoint(harness *h, audit_cp *out)
{
	if (!checkpoint_get(h, out))
		fail_msg("GetCheckpoint: kmsd has no checkpoint yet");
}

void audit_cp_free(audit_cp *cp)
{
	free(cp->note);
	cp->note = NULL;
}

void audit_wait_checkpoint(harness *h, uint64_t min_size, int timeout_ms, audit_cp *out)
{
	uint64_t deadline = e2e_now_ms() + (uint64_t)timeout_ms;
	for (int i = 0; i < 1000; i++) {
		if (checkpoint_get(h, out) && out->size >= min_size)
			return;
		audit_cp_free(out);
		if (e2e_now_ms() > deadline)
			break;
		e2e_sleep_ms(20);
	}
	fail_msg("no checkpoint of %llu entries within %d ms", (unsigned long long)min_size,
	         timeout_ms);
}

static kms_status collect(void *ctx, uint64_t index, const uint8_t *entry, size_t len)
{
	audit_entries *e = ctx;
	json_error_t err;
	json_t *j = json_loadb((const char *)entry, len, JSON_REJECT_DUPLICATES, &err);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "not a JSON object: %s", err.text);
	}
	if (index != e->n) {
		json_decref(j);
		return KMS_FAIL(KMS_INTERNAL, "visited out of order (%llu after %llu)",
		                (unsigned long long)index, (unsigned long long)e->n);
	}
	if (e->n == e->cap) {
		uint64_t cap = e->cap ? e->cap * 2 : 256;
		json_t **grown = realloc(e->items, cap * sizeof *grown);
		if (!grown) {
			json_decref(j);
			return KMS_FAIL(KMS_INTERNAL, "out of memory");
		}
		e->items = grown;
		e->cap = cap;
	}
	e->items[e->n++] = j;
	return KMS_OK;
}

void audit_load(const char *public_dir, const char *vkey, const char *since, audit_entries *out)
{
	memset(out, 0, sizeof *out);
	kms_status st = tlog_verify_dir(public_dir, vkey, since, collect, out, &out->report);
	if (st != KMS_OK)
		fail_msg("tlog_verify_dir(%s): %s: %s", public_dir, kms_status_name(st),
		         out->report.failure);
	assert_string_equal(out->report.failure, "");
	assert_int_equal(out->report.entries_checked, out->report.tree_size);
	assert_int_equal(out->n, out->report.tree_size);
	if (since)
		assert_true(out->report.since_checked);
}

void audit_entries_free(audit_entries *e)
{
	for (uint64_t i = 0; i < e->n; i++)
		json_decref(e->items[i]);
	free(e->items);
	memset(e, 0, sizeof *e);
}

const char *audit_str(json_t *entry, const char *member)
{
	const char *s = json_string_value(json_object_get(entry, member));
	return s ? s : "";
}

size_t audit_count_id(const audit_entries *e, const char *request_id, json_t **first)
{
	return audit_count_phase(e, request_id, NULL, first);
}

size_t audit_count_phase(const audit_entries *e, const char *request_id, const char *phase,
                         json_t **first)
{
	size_t n = 0;
	if (first)
		*first = NULL;
	for (uint64_t i = 0; i < e->n; i++) {
		if (strcmp(audit_str(e->items[i], "request_id"), request_id) != 0)
			continue;
		const char *has = audit_str(e->items[i], "phase");
		if (phase ? strcmp(has, phase) != 0 : !strcmp(has, "intent"))
			continue;
		if (n++ == 0 && first)
			*first = e->items[i];
	}
	return n;
}

static bool digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

void audit_check_common(json_t *entry)
{
	static const char *const strings[] = { "time", "request_id", "principal", "source",
		                               "operation", "key_id", "status", "error" };
	for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
		if (!json_is_string(json_object_get(entry, strings[i])))
			fail_msg("entry lacks the string \"%s\"", strings[i]);
	const char *t = audit_str(entry, "time");
	bool shape = strlen(t) == RFC3339_US_LEN && digits(t, 4) && t[4] == '-' &&
	             digits(t + 5, 2) && t[7] == '-' && digits(t + 8, 2) && t[10] == 'T' &&
	             digits(t + 11, 2) && t[13] == ':' && digits(t + 14, 2) && t[16] == ':' &&
	             digits(t + 17, 2) && t[19] == '.' && digits(t + 20, 6) && t[26] == 'Z';
	if (!shape)
		fail_msg("time \"%s\" is not RFC 3339 UTC with microseconds", t);
	struct tm tm = { 0 };
	tm.tm_year = atoi(t) - 1900;
	tm.tm_mon = atoi(t + 5) - 1;
	tm.tm_mday = atoi(t + 8);
	tm.tm_hour = atoi(t + 11);
	tm.tm_min = atoi(t + 14);
	tm.tm_sec = atoi(t + 17);
	time_t when = timegm(&tm);
	time_t now = time(NULL);
	if (when < now - CLOCK_SLACK_S || when > now + CLOCK_SLACK_S)
		fail_msg("time \"%s\" is not today", t);
	json_t *latency = json_object_get(entry, "latency_us");
	if (!json_is_integer(latency) || json_integer_value(latency) < 0)
		fail_msg("entry lacks a latency_us");
	json_t *version = json_object_get(entry, "key_version");
	if (!json_is_integer(version) || json_integer_value(version) < 0)
		fail_msg("entry lacks a key_version");
	if (!json_object_get(entry, "encryption_context"))
		fail_msg("entry lacks encryption_context");
}

bool audit_vkey_from_log(const harness *h, char out[AUDIT_VKEY_MAX])
{
	static const char needle[] = "verifier key ";
	char *log = harness_read_file(h->log, NULL);
	if (!log)
		return false;
	const char *last = NULL;
	for (const char *p = strstr(log, needle); p; p = strstr(p + 1, needle))
		last = p + sizeof needle - 1;
	bool ok = false;
	if (last) {
		size_t n = strcspn(last, " \n");
		if (n > 0 && n < AUDIT_VKEY_MAX) {
			memcpy(out, last, n);
			out[n] = '\0';
			ok = true;
		}
	}
	free(log);
	return ok;
}

/* Waits for fd to be ready (POLLIN or POLLOUT) until deadline. */
static bool wait_fd(int fd, short events, uint64_t deadline)
{
	uint64_t now = e2e_now_ms();
	if (now >= deadline)
		return false;
	struct pollfd p = { .fd = fd, .events = events };
	int rv = poll(&p, 1, (int)(deadline - now));
	return rv == 1;
}

bool audit_metric_sample(const char *body, const char *series, double *out)
{
	size_t n = strlen(series);
	for (const char *line = body; line && *line;) {
		if (!strncmp(line, series, n) && line[n] == ' ') {
			*out = strtod(line + n + 1, NULL);
			return true;
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return false;
}

int audit_http_get(int port, const char *path, int timeout_ms, char **body, size_t *len)
{
	*body = NULL;
	*len = 0;
	uint64_t deadline = e2e_now_ms() + (uint64_t)timeout_ms;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
		                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char request[1024];
	int req_len = snprintf(request, sizeof request,
	                       "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n",
	                       path, port);
	size_t cap = AUDIT_HTTP_BODY_MAX + HTTP_HEAD_MAX;
	char *buf = malloc(cap + 1);
	size_t got = 0;
	int status = -1;
	if (!buf || req_len <= 0 || (size_t)req_len >= sizeof request ||
	    connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
		goto out;
	for (size_t sent = 0; sent < (size_t)req_len;) {
		if (!wait_fd(fd, POLLOUT, deadline))
			goto out;
		ssize_t n = send(fd, request + sent, (size_t)req_len - sent, MSG_NOSIGNAL);
		if (n <= 0)
			goto out;
		sent += (size_t)n;
	}
	/* Read until the body is complete (Content-Length) or the peer closes. */
	long content_length = -1;
	char *head_end = NULL;
	while (got < cap) {
		if (head_end && content_length >= 0 &&
		    got - (size_t)(head_end + 4 - buf) >= (size_t)content_length)
			break;
		if (!wait_fd(fd, POLLIN, deadline))
			goto out;
		ssize_t n = recv(fd, buf + got, cap - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		buf[got] = '\0';
		if (!head_end && (head_end = strstr(buf, "\r\n\r\n")) != NULL) {
			for (char *line = strstr(buf, "\r\n"); line && line < head_end;
			     line = strstr(line + 2, "\r\n"))
				if (strncasecmp(line + 2, "Content-Length:", 15) == 0)
					content_length = strtol(line + 17, NULL, 10);
		}
	}
	buf[got] = '\0';
	if (!head_end || sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
		status = -1;
		goto out;
	}
	size_t start = (size_t)(head_end + 4 - buf);
	*len = got - start;
	if (content_length >= 0 && (size_t)content_length < *len)
		*len = (size_t)content_length;
	*body = malloc(*len + 1);
	if (!*body) {
		status = -1;
		goto out;
	}
	memcpy(*body, buf + start, *len);
	(*body)[*len] = '\0';
out:
	free(buf);
	close(fd);
	return status;
}

int audit_wait_healthz(int port, int want_status, int timeout_ms)
{
	uint64_t deadline = e2e_now_ms() + (uint64_t)timeout_ms;
	int status = -1;
	for (int i = 0; i < 1000; i++) {
		char *body;
		size_t len;
		status = audit_http_get(port, "/healthz", 2000, &body, &len);
		free(body);
		if (status == want_status || e2e_now_ms() > deadline)
			break;
		e2e_sleep_ms(20);
	}
	return status;
}
