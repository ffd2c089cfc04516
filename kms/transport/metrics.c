#include "kms/transport/metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms/audit/audit.h"
#include "kms/audit/audit_tree.h"
#include "kms/keys/keyring.h"
#include "common/log.h"
#include "common/error.h"
#include "kms/pipeline/ops.h"

#define METRICS_OPS_MAX 64 /* rows in the operation table, plus "undecoded" */

static atomic_uint_fast64_t requests[METRICS_OPS_MAX][KMS_STATUS_MAX + 1];
static atomic_uint_fast64_t latency_sum_us[METRICS_OPS_MAX];
static atomic_int_fast64_t in_flight;
#define METRICS_AUTHZ_STEPS 5
static atomic_uint_fast64_t authz_denied[METRICS_AUTHZ_STEPS + 1];
static atomic_uint_fast64_t throttled_principal, throttled_key;
/* The published log's files served over HTTP: counted, not audited
 * (docs/audit-log.md, "Reading the log does not flood it"). */
static atomic_uint_fast64_t audit_http_checkpoints, audit_http_tiles, audit_http_missing;

void metrics_audit_http_read(metrics_audit_file file)
{
	atomic_uint_fast64_t *c = file == METRICS_AUDIT_CHECKPOINT ? &audit_http_checkpoints
	                          : file == METRICS_AUDIT_TILE     ? &audit_http_tiles
	                                                           : &audit_http_missing;
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

void metrics_authz_denied(int step)
{
	if (step < 1 || step > METRICS_AUTHZ_STEPS)
		step = 0;
	atomic_fetch_add_explicit(&authz_denied[step], 1, memory_order_relaxed);
}

void metrics_throttled(const char *limit)
{
	atomic_fetch_add_explicit(strcmp(limit, "key") ? &throttled_principal : &throttled_key, 1,
	                          memory_order_relaxed);
}

void metrics_record(const struct op_entry *op, kms_status status, uint64_t latency_us)
{
	size_t row = op ? ops_index(op) + 1 : 0;
	if (row >= METRICS_OPS_MAX || (unsigned)status > KMS_STATUS_MAX)
		return;
	atomic_fetch_add_explicit(&requests[row][status], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&latency_sum_us[row], latency_us, memory_order_relaxed);
}

/* Sequentially consistent, unlike the counters: a reader that sees a request
 * in flight may rely on its reply not having been sent yet. */
void metrics_in_flight(int delta)
{
	atomic_fetch_add(&in_flight, delta);
}

/* A growing text buffer; on overflow of memory it stops and reports. */
typedef struct text {
	char *buf;
	size_t len, cap;
	bool failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
	if (t->failed)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = true;
			return;
		}
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = t->cap * 2 + (size_t)n;
		char *grown = realloc(t->buf, cap);
		if (!grown) {
			t->failed = true;
			return;
		}
		t->buf = grown;
		t->cap = cap;
	}
}

/* The unwrapped-key cache (docs/key-hierarchy.md). */
static void key_cache_put(text *t, keyring *kr)
{
	hsm_keycache_stats c;
	keyring_key_cache_stats_get(kr, &c);
	put(t, "# HELP kms_key_cache_entries Unwrapped key versions held in the HSM.\n"
	       "# TYPE kms_key_cache_entries gauge\nkms_key_cache_entries %llu\n"
	       "# HELP kms_key_cache_capacity [keys] cache_entries.\n"
	       "# TYPE kms_key_cache_capacity gauge\nkms_key_cache_capacity %llu\n",
	    (unsigned long long)c.entries, (unsigned long long)c.capacity);
	put(t, "# HELP kms_key_cache_hits_total Uses of an already unwrapped version.\n"
	       "# TYPE kms_key_cache_hits_total counter\nkms_key_cache_hits_total %llu\n"
	       "# HELP kms_key_cache_misses_total Uses that read the wrapped version from the "
	       "store.\n# TYPE kms_key_cache_misses_total counter\nkms_key_cache_misses_total %llu\n"
	       "# HELP kms_key_cache_unwraps_total C_UnwrapKey calls that succeeded.\n"
	       "# TYPE kms_key_cache_unwraps_total counter\nkms_key_cache_unwraps_total %llu\n",
	    (unsigned long long)c.hits, (unsigned long long)c.misses,
	    (unsigned long long)c.unwraps);
	put(t, "# HELP kms_key_cache_coalesced_total Uses that waited for another use's unwrap.\n"
	       "# TYPE kms_key_cache_coalesced_total counter\nkms_key_cache_coalesced_total %llu\n"
	       "# HELP kms_key_cache_evictions_total Versions dropped: capacity, disable, "
	       "deletion.\n# TYPE kms_key_cache_evictions_total counter\n"
	       "kms_key_cache_evictions_total %llu\n"
	       "# HELP kms_key_cache_reloads_after_loss_total Times the cache was dropped after "
	       "its HSM session was lost.\n# TYPE kms_key_cache_reloads_after_loss_total counter\n"
	       "kms_key_cache_reloads_after_loss_total %llu\n",
	    (unsigned long long)c.coalesced, (unsigned long long)c.evictions,
	    (unsigned long long)c.reloads_after_loss);
}

/* The audit log's memory, tile cache, start-up and background check
 * (docs/audit-log.md, "Memory and start-up"). */
static void put_audit_memory(text *t, audit_log *log)
{
	audit_stats s;
	audit_get_stats(log, &s);
	put(t, "# HELP kms_audit_memory_bytes Memory the audit log's tree holds: hot tiles and "
	       "offsets (fixed at start-up), full tiles in the tile cache.\n"
	       "# TYPE kms_audit_memory_bytes gauge\n"
	       "kms_audit_memory_bytes{part=\"tree\"} %llu\n"
	       "kms_audit_memory_bytes{part=\"tile_cache\"} %llu\n"
	       "# HELP kms_audit_memory_limit_bytes The bound on kms_audit_memory_bytes, whatever "
	       "the log's length.\n# TYPE kms_audit_memory_limit_bytes gauge\n"
	       "kms_audit_memory_limit_bytes %llu\n",
	    (unsigned long long)s.tree_bytes, (unsigned long long)s.cache_bytes,
	    (unsigned long long)AUDIT_MEMORY_MAX);
	put(t, "# HELP kms_audit_hot_entries Leaf hashes in memory, not yet in full tiles on disk.\n"
	       "# TYPE kms_audit_hot_entries gauge\nkms_audit_hot_entries %llu\n"
	       "# HELP kms_audit_tile_cache_tiles Full tiles held by the tile cache.\n"
	       "# TYPE kms_audit_tile_cache_tiles gauge\nkms_audit_tile_cache_tiles %llu\n"
	       "# HELP kms_audit_tile_cache_capacity Full tiles the tile cache holds at most.\n"
	       "# TYPE kms_audit_tile_cache_capacity gauge\nkms_audit_tile_cache_capacity %u\n"
	       "# HELP kms_audit_tiles_read_total Full tiles read back from disk (tile cache misses).\n"
	       "# TYPE kms_audit_tiles_read_total counter\nkms_audit_tiles_read_total %llu\n",
	    (unsigned long long)s.hot_entries, (unsigned long long)s.cache_tiles,
	    AUDIT_TILE_CACHE_TILES, (unsigned long long)s.tiles_read);
	put(t, "# HELP kms_audit_startup_records_read Records of log.bin read at start-up.\n"
	       "# TYPE kms_audit_startup_records_read gauge\nkms_audit_startup_records_read %llu\n"
	       "# HELP kms_audit_check_records Records below the start-up resume point, checked "
	       "in the background.\n# TYPE kms_audit_check_records gauge\n"
	       "kms_audit_check_records %llu\n"
	       "# HELP kms_audit_check_records_done Of those, records checked so far.\n"
	       "# TYPE kms_audit_check_records_done gauge\nkms_audit_check_records_done %llu\n"
	       "# HELP kms_audit_check_finished Whether the background check has finished "
	       "(kms_audit_writable 0 if it found damage).\n"
	       "# TYPE kms_audit_check_finished gauge\nkms_audit_check_finished %d\n",
	    (unsigned long long)s.open_scanned, (unsigned long long)s.resumed_at,
	    (unsigned long long)s.scrubbed, s.scrub_done ? 1 : 0);
}

kms_status metrics_render(kmsd *d, char **out, size_t *len)
{
	text t = { .buf = malloc(4096), .cap = 4096 };
	KMS_ENSURE(t.buf, KMS_INTERNAL, "metrics: out of memory");
	t.buf[0] = '\0';
	put(&t, "# HELP kms_requests_total Requests answered, by operation and status.\n"
	        "# TYPE kms_requests_total counter\n");
	for (size_t row = 0; row < METRICS_OPS_MAX; row++) {
		const op_entry *op = row ? ops_at(row - 1) : NULL;
		if (row && !op)
			break;
		for (int s = 0; s <= KMS_STATUS_MAX; s++) {
			uint64_t n = atomic_load_explicit(&requests[row][s], memory_order_relaxed);
			if (n)
				put(&t, "kms_requests_total{operation=\"%s\",status=\"%s\"} %llu\n",
				    op ? op->name : "undecoded", kms_status_name((kms_status)s),
				    (unsigned long long)n);
		}
	}
	put(&t, "# HELP kms_request_latency_microseconds_sum Time spent answering, by operation.\n"
	        "# TYPE kms_request_latency_microseconds_sum counter\n");
	for (size_t row = 1; row < METRICS_OPS_MAX; row++) {
		const op_entry *op = ops_at(row - 1);
		if (!op)
			break;
		uint64_t us = atomic_load_explicit(&latency_sum_us[row], memory_order_relaxed);
		if (us)
			put(&t, "kms_request_latency_microseconds_sum{operation=\"%s\"} %llu\n", op->name,
			    (unsigned long long)us);
	}
	put(&t, "# HELP kms_requests_in_flight Requests being executed, which a drain still answers.\n"
	        "# TYPE kms_requests_in_flight gauge\nkms_requests_in_flight %lld\n",
	    (long long)atomic_load(&in_flight));
	put(&t, "# HELP kms_authz_denied_total Requests denied, by the step of the decision "
	        "that denied them.\n# TYPE kms_authz_denied_total counter\n");
	for (int step = 1; step <= METRICS_AUTHZ_STEPS; step++)
		put(&t, "kms_authz_denied_total{step=\"%d\"} %llu\n", step,
		    (unsigned long long)atomic_load_explicit(&authz_denied[step],
		                                             memory_order_relaxed));
	put(&t, "# HELP kms_throttled_total Requests answered THROTTLED, by the limit they "
	        "passed.\n# TYPE kms_throttled_total counter\n"
	        "kms_throttled_total{limit=\"principal\"} %llu\n"
	        "kms_throttled_total{limit=\"key\"} %llu\n",
	    (unsigned long long)atomic_load(&throttled_principal),
	    (unsigned long long)atomic_load(&throttled_key));
	put(&t, "# HELP kms_audit_entries Entries in the audit log.\n# TYPE kms_audit_entries gauge\n"
	        "kms_audit_entries %llu\n",
	    (unsigned long long)(d->audit ? audit_size(d->audit) : 0));
	put(&t, "# HELP kms_audit_http_reads_total The published log's files served over HTTP "
	        "(/audit/), by what was asked for; not audited one by one.\n"
	        "# TYPE kms_audit_http_reads_total counter\n"
	        "kms_audit_http_reads_total{file=\"checkpoint\"} %llu\n"
	        "kms_audit_http_reads_total{file=\"tile\"} %llu\n"
	        "kms_audit_http_reads_total{file=\"missing\"} %llu\n",
	    (unsigned long long)atomic_load(&audit_http_checkpoints),
	    (unsigned long long)atomic_load(&audit_http_tiles),
	    (unsigned long long)atomic_load(&audit_http_missing));
	put(&t, "# HELP kms_audit_writable Whether the audit log can be written.\n"
	        "# TYPE kms_audit_writable gauge\nkms_audit_writable %d\n",
	    d->audit ? audit_healthy(d->audit, NULL, 0) : 0);
	if (d->audit)
		put_audit_memory(&t, d->audit);
	if (d->keyring) {
		keyring_cache_stats ks;
		keyring_cache_stats_get(d->keyring, &ks);
		put(&t, "# HELP kms_key_metadata_cache_entries Keys whose metadata is cached.\n"
		        "# TYPE kms_key_metadata_cache_entries gauge\n"
		        "kms_key_metadata_cache_entries %llu\n"
		        "# HELP kms_key_metadata_cache_capacity [keys] metadata_cache_entries.\n"
		        "# TYPE kms_key_metadata_cache_capacity gauge\n"
		        "kms_key_metadata_cache_capacity %llu\n"
		        "# HELP kms_key_metadata_cache_loads_total Key metadata read from the store.\n"
		        "# TYPE kms_key_metadata_cache_loads_total counter\n"
		        "kms_key_metadata_cache_loads_total %llu\n"
		        "# HELP kms_key_metadata_cache_evictions_total Keys evicted to stay within "
		        "capacity.\n# TYPE kms_key_metadata_cache_evictions_total counter\n"
		        "kms_key_metadata_cache_evictions_total %llu\n",
		    (unsigned long long)ks.entries, (unsigned long long)ks.capacity,
		    (unsigned long long)ks.loads, (unsigned long long)ks.evictions);
		key_cache_put(&t, d->keyring);
	}
	put(&t, "# HELP kms_uptime_seconds Seconds since kmsd started.\n"
	        "# TYPE kms_uptime_seconds gauge\nkms_uptime_seconds %lld\n",
	    (long long)(kms_now() - d->started_at));
	if (t.failed) {
		free(t.buf);
		return KMS_FAIL(KMS_INTERNAL, "metrics: out of memory");
	}
	*out = t.buf;
	*len = t.len;
	return KMS_OK;
}
