/*
 * metrics.h: request counters for /metrics (Prometheus text format).
 * Lock-free: relaxed atomic counters indexed by operation and status.
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

/* Authorization (docs/authorization.md): a request denied at a step of the
 * decision (1 to 5), or throttled by limit ("principal" or "key"). */
void metrics_authz_denied(int step);
void metrics_throttled(const char *limit);

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
