/*
 * op_dp.h: the retention tick kmsd's background task runs
 * (docs/data-principals.md, "Retention").
 */
#ifndef KMS_OP_DP_H
#define KMS_OP_DP_H

#include <stdint.h>

#include <kms/status.h>

#include "kms/kmsd.h"

/* Audits (principal "kmsd") and records the pre-erasure notice of every
 * sub-key whose retention ends within 48 h, and audits and then erases
 * every sub-key whose retention and notice period have passed
 * (keyring_dp_tick). Nothing happens without its durable entry: with no
 * audit log, or one that refuses, it waits for the next tick. */
kms_status kmsd_retention_tick(kmsd *d, int64_t now) KMS_MUST_USE;

#endif
