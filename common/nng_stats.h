/*
 * nng_stats.h: finding one dialer's or listener's counters in a snapshot
 * of NNG's statistics (nng_stats_get).
 *
 * NNG 1.5.2's nng_stat_find_dialer and nng_stat_find_listener return the
 * first scope of that kind in the snapshot, whatever its id (the search
 * below the top calls nng_stat_find by name): with two dialers or two
 * listeners in a process, both read the first one's counters. These look
 * the scope up by its URL instead.
 */
#ifndef KMS_COMMON_NNG_STATS_H
#define KMS_COMMON_NNG_STATS_H

#include <stdint.h>

#include <nng/nng.h>

/* The "dialer" or "listener" scope (kind) in the snapshot all whose "url"
 * is url, or NULL. */
nng_stat *kms_nng_stat_scope(nng_stat *all, const char *kind, const char *url);

/* The value of scope's own counter or level called name (NNG's names:
 * "auth", "disconnect", "proto", "refused", "timeout", "other", "pipes",
 * ...); 0 when scope is NULL or has no such statistic. */
uint64_t kms_nng_stat_value(nng_stat *scope, const char *name);

#endif
