/*
 * refusals.h: the audit entries of peers refused before authentication
 * (an unmapped ipc uid, a TLS peer without a verified certificate, plain
 * tcp without insecure_dev, a connection the listener turns away), bounded
 * so that a flood of them cannot fill the disk (docs/audit-log.md,
 * "Refusals before authentication").
 *
 * Refusals are grouped by peer (the ipc uid, or the remote host without
 * its port) and reason. The first of a burst is written at once, as an
 * entry with "refused": 1; the ones after it are counted, and written as
 * ONE entry with the count and the time span ("first", "last") when the
 * burst has been quiet for REFUSALS_QUIET_MS, or every REFUSALS_FLUSH_MS
 * while it lasts, and at close; a group never writes more than one entry
 * per REFUSALS_FLUSH_MS. At most REFUSALS_SLOTS groups are tracked; past
 * that, refusals are counted in one group for "(other peers)". So all
 * refusals together write at most (REFUSALS_SLOTS + 1) entries per
 * REFUSALS_FLUSH_MS (13 a second), and the counts written add up to the
 * refusals noted, exactly, once closed.
 *
 * A flusher thread of its own writes the grouped entries (it blocks on the
 * audit log); refusals_note blocks only for the first of a burst.
 */
#ifndef KMS_REFUSALS_H
#define KMS_REFUSALS_H

#include <kms/status.h>

#include "kms/pipeline/caller.h"
#include "kms/kmsd.h"

#define REFUSALS_SLOTS 64
#define REFUSALS_QUIET_MS 1000  /* a burst ends after this long without a refusal */
#define REFUSALS_FLUSH_MS 5000  /* a burst's count is written at least this often */
#define REFUSALS_TICK_MS 250    /* how often the flusher looks */
#define REFUSALS_REASON_MAX 160

typedef struct refusals refusals;

/* Starts the flusher; d->audit must be open. *out is NULL on failure. */
kms_status refusals_open(kmsd *d, refusals **out) KMS_MUST_USE;

/* Writes every count still pending, stops the flusher and frees it all;
 * call before the audit log closes. NULL is ignored. */
void refusals_close(refusals *r);

/* Records that `who` was refused for `reason` (one line, no secret, no
 * source position). Writes the entry now when it starts a burst (and
 * returns how that went: KMS_UNAVAILABLE if the log could not take it), else
 * counts it and returns KMS_OK. Without d->refusals (tests, fuzzing) each
 * refusal is written alone. Thread-safe. */
kms_status refusals_note(kmsd *d, const caller *who, const char *reason) KMS_MUST_USE;

/* The same for a caller that must not block (a listener's I/O thread):
 * counts the refusal, and a burst's first entry is written by the flusher
 * within REFUSALS_TICK_MS instead of now. Without d->refusals it records
 * nothing. Thread-safe; never waits on the audit log. */
void refusals_count(kmsd *d, const caller *who, const char *reason);

#endif
