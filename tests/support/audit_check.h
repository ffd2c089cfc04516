/*
 * audit_check.h: what the audit-log end-to-end tests (test_audit*.c) share
 * on top of harness.h: reading a log's published copy through the offline
 * verifier, the audit RPCs, a tiny HTTP/1.1 GET over loopback, and checks on
 * single entries.
 *
 * Every wait is bounded; failures are reported with fail_msg (cmocka), so
 * these run only inside a cmocka test.
 */
#ifndef KMS_TEST_AUDIT_CHECK_H
#define KMS_TEST_AUDIT_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "tests/support/harness.h"
#include "common/tlog/tlog_merkle.h"
#include "common/tlog/tlog_verify.h"

#define AUDIT_VKEY_MAX 400
#define AUDIT_HTTP_BODY_MAX (4u << 20)

/* Every entry of a verified log, in order, parsed. */
typedef struct audit_entries {
	json_t **items;
	uint64_t n;
	uint64_t cap;
	tlog_verify_report report;
} audit_entries;

/* The latest checkpoint as GetCheckpoint returns it. */
typedef struct audit_cp {
	char *note;                 /* malloc'ed signed note */
	uint64_t size;
	uint8_t root[TLOG_HASH_SIZE];
	char vkey[AUDIT_VKEY_MAX];
} audit_cp;

/* "<data_dir>/audit/public" of h with data_subdir (NULL: "data"). */
void audit_public_dir(const harness *h, const char *data_subdir, char *out, size_t cap);
void audit_dir(const harness *h, const char *data_subdir, char *out, size_t cap);

/* GetCheckpoint over h's ipc socket; fails the test unless OK. */
void audit_get_checkpoint(harness *h, audit_cp *out);
void audit_cp_free(audit_cp *cp);

/* Polls GetCheckpoint (each poll is itself an entry) until the checkpoint
 * covers at least min_size entries; at most timeout_ms. */
void audit_wait_checkpoint(harness *h, uint64_t min_size, int timeout_ms, audit_cp *out);

/* Runs tlog_verify_dir(public_dir, vkey, since) and collects every entry,
 * each parsed as a JSON object. Fails the test if anything does not
 * verify. */
void audit_load(const char *public_dir, const char *vkey, const char *since, audit_entries *out);
void audit_entries_free(audit_entries *e);

/* How many entries have this request id, intents of control-plane changes
 * aside (each request has one such entry); *first gets the first (may be
 * NULL). */
size_t audit_count_id(const audit_entries *e, const char *request_id, json_t **first);

/* The same for the entries with "phase": phase ("intent", "outcome"). */
size_t audit_count_phase(const audit_entries *e, const char *request_id, const char *phase,
                         json_t **first);

/* A string member, "" when missing or not a string. */
const char *audit_str(json_t *entry, const char *member);

/* Checks the fields every entry has: time (RFC 3339 UTC with microseconds,
 * within a day of now), latency_us (an integer >= 0), key_version (an
 * integer >= 0), and the string members. */
void audit_check_common(json_t *entry);

/* The verifier key from kmsd's log line "verifier key <vkey>" (the last
 * one), or false. */
bool audit_vkey_from_log(const harness *h, char out[AUDIT_VKEY_MAX]);

/* HTTP/1.1 GET http://127.0.0.1:port<path>, the path sent exactly as given.
 * Returns the status code (-1 on transport failure within timeout_ms);
 * *body (malloc'ed, NUL-terminated, may be NULL) and *len. */
int audit_http_get(int port, const char *path, int timeout_ms, char **body, size_t *len);

/* The value of the sample named exactly series (a name, or a name and its
 * labels) in a /metrics body: true and *out, or false when absent. */
bool audit_metric_sample(const char *body, const char *series, double *out);

/* Waits (at most timeout_ms) until /healthz answers want_status. Returns
 * the last status seen. */
int audit_wait_healthz(int port, int want_status, int timeout_ms);

#endif
