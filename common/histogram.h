/*
 * histogram.h: a lock-free histogram for /metrics (docs/metrics.md).
 *
 * Fixed bucket bounds (two sets: durations in microseconds, and counts),
 * one relaxed atomic per bucket plus the sum: observing is a short scan of
 * the bounds and two atomic adds, no lock, no allocation. A snapshot reads
 * the buckets and makes them cumulative; its count is the last cumulative
 * bucket (+Inf), so count and buckets always agree even while others
 * observe.
 */
#ifndef KMS_COMMON_HISTOGRAM_H
#define KMS_COMMON_HISTOGRAM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define KMS_HIST_BOUNDS 18 /* finite buckets; one more for +Inf */

typedef enum kms_hist_kind {
	KMS_HIST_MICROSECONDS, /* 10 us .. 10 s; rendered in seconds */
	KMS_HIST_COUNT,        /* 1 .. 65536 */
} kms_hist_kind;

typedef struct kms_hist {
	atomic_uint_fast64_t bucket[KMS_HIST_BOUNDS + 1]; /* not cumulative; last: +Inf */
	atomic_uint_fast64_t sum;
} kms_hist;

typedef struct kms_hist_snapshot {
	uint64_t cumulative[KMS_HIST_BOUNDS + 1]; /* last: +Inf, the count */
	uint64_t sum;
	uint64_t count;
} kms_hist_snapshot;

static const uint64_t kms_hist_bounds[2][KMS_HIST_BOUNDS] = {
	{ 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
	  500000, 1000000, 2500000, 10000000 },
	{ 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3072, 4096, 8192, 16384, 32768,
	  65536 },
};

static inline void kms_hist_observe(kms_hist *h, kms_hist_kind kind, uint64_t value)
{
	size_t i = 0;
	while (i < KMS_HIST_BOUNDS && value > kms_hist_bounds[kind][i])
		i++;
	atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum, value, memory_order_relaxed);
}

static inline void kms_hist_read(kms_hist *h, kms_hist_snapshot *out)
{
	uint64_t run = 0;
	for (size_t i = 0; i <= KMS_HIST_BOUNDS; i++) {
		run += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
		out->cumulative[i] = run;
	}
	out->count = run;
	out->sum = atomic_load_explicit(&h->sum, memory_order_relaxed);
}

#endif
