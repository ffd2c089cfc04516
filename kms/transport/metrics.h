/*
 * metrics.h: kmsd's counters for /metrics (Prometheus text format, every
 * family in docs/metrics.md). Lock-free on the request path: relaxed
 * atomic counters and histograms indexed by operation and status, and a
 * bounded table of principals for denials and throttles.
 */
#ifndef KMS_METRICS_H
#define KMS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

#include "kms/kmsd.h"

struct op_entry;

/* Counts one finished request; op is NULL for one that did not decode. */
void metrics_record(const struct op_entry *op, kms_status status, uint64_t latency_us);

/* A request got past the drain gate (+1) or has its reply ready (-1): the
 * requests counted in between are the ones a drain still answers, which
 * operators and the drain test need to see (kms_requests_in_flight). */
void metrics_in_flight(int delta);

/* A request joined a workers' queue (+1) or a worker took it (-1)
 * (kms_requests_queued); one answered UNAVAILABLE because it waited past
 * [limits] queue_deadline_ms (kms_requests_deadline_expired_total). */
void metrics_queued(int delta);
void metrics_deadline_expired(void);

/* A request run again because its store transaction met a serialization
 * failure or deadlock (kms_store_conflict_retries_total). */
void metrics_conflict_retry(void);

/* A request sent again, answered from the record of its first run
 * (kms/pipeline/records.h; kms_request_records_answered_total). */
void metrics_record_answered(void);

/* Authorization (docs/authorization.md): a request denied at a step of the
 * decision (1 to 5), or throttled by limit ("principal" or "key"); each
 * also counted by principal ("" for none). Principal labels are bounded:
 * the first METRICS_PRINCIPALS_MAX distinct principals denied or throttled
 * since start-up get their own, every later one counts as "other"
 * (docs/metrics.md). */
#define METRICS_PRINCIPALS_MAX 32
void metrics_authz_denied(int step, const char *principal);
void metrics_throttled(const char *limit, const char *principal);

/* A GET or HEAD of the published log's files (/audit/...): the checkpoint,
 * a tile or entry bundle, or one that is not there (404). Counted, not
 * audited: the files are public and the same bytes any mirror serves. */
typedef enum metrics_audit_file {
	METRICS_AUDIT_CHECKPOINT,
	METRICS_AUDIT_TILE,
	METRICS_AUDIT_MISSING,
} metrics_audit_file;
void metrics_audit_http_read(metrics_audit_file file);

/* The whole exposition (malloc'ed, *len bytes). */
kms_status metrics_render(kmsd *d, char **text, size_t *len) KMS_MUST_USE;

#endif
