/*
 * bench_hist.c: kms-bench's latency histogram, log-linear buckets over
 * nanoseconds (bench.h).
 */
#include "clients/bench/bench.h"

#include <string.h>

#define SUB (1u << BENCH_HIST_SUB_BITS)

void bench_hist_reset(bench_hist *h)
{
	memset(h, 0, sizeof *h);
}

/* Values below SUB are their own bucket; above, a value with its top bit
 * at position b (b >= SUB_BITS) goes to block b - SUB_BITS + 1, at the
 * offset of its next SUB_BITS bits. */
static size_t bucket_of(uint64_t ns)
{
	if (ns < SUB)
		return (size_t)ns;
	unsigned top = 63u - (unsigned)__builtin_clzll(ns);
	if (top >= BENCH_HIST_TOP_BITS)
		return BENCH_HIST_BUCKETS - 1;
	unsigned shift = top - BENCH_HIST_SUB_BITS;
	size_t block = (size_t)(top - BENCH_HIST_SUB_BITS + 1);
	size_t offset = (size_t)((ns >> shift) & (SUB - 1));
	return block * SUB + offset;
}

/* The largest value bucket i holds. */
static uint64_t bucket_top(size_t i)
{
	if (i < SUB)
		return i;
	size_t block = i / SUB, offset = i % SUB;
	unsigned shift = (unsigned)block - 1;
	return ((uint64_t)(SUB + offset) << shift) + ((1ull << shift) - 1);
}

void bench_hist_add(bench_hist *h, uint64_t ns)
{
	h->counts[bucket_of(ns)]++;
	h->n++;
	if (ns > h->max_ns)
		h->max_ns = ns;
}

double bench_hist_quantile_us(const bench_hist *h, double q)
{
	if (h->n == 0)
		return 0.0;
	if (q < 0.0)
		q = 0.0;
	if (q > 1.0)
		q = 1.0;
	/* The rank of the sample at q, 1-based (nearest rank). */
	uint64_t rank = (uint64_t)(q * (double)h->n + 0.999999999);
	if (rank == 0)
		rank = 1;
	if (rank > h->n)
		rank = h->n;
	uint64_t seen = 0;
	for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
		seen += h->counts[i];
		if (seen >= rank) {
			uint64_t top = bucket_top(i);
			return (double)(top < h->max_ns ? top : h->max_ns) / 1000.0;
		}
	}
	return (double)h->max_ns / 1000.0;
}
