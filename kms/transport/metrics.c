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
#include "hsm/hsm.h"
#include "common/histogram.h"
#include "common/log.h"
#include "common/error.h"
#include "kms/pipeline/ops.h"

#define METRICS_OPS_MAX 64 /* rows in the operation table, plus "undecoded" */

static atomic_uint_fast64_t requests[METRICS_OPS_MAX][KMS_STATUS_MAX + 1];
static kms_hist latency[METRICS_OPS_MAX];
static atomic_int_fast64_t in_flight;
static atomic_int_fast64_t queued;
static atomic_uint_fast64_t deadline_expired;
static atomic_uint_fast64_t conflict_retries;
static atomic_uint_fast64_t records_answered;
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

/*
 * Denials and throttles by principal. A slot is claimed once (EMPTY ->
 * CLAIMED by compare-and-swap, the name written, then READY with release
 * order) and never freed, so readers need no lock; the last row is
 * "other", for every principal past the first METRICS_PRINCIPALS_MAX. Two
 * threads that claim slots for one new name at the same moment may both
 * get one: the exposition adds such duplicates up under one label.
 */
#define METRICS_PRINCIPAL_NAME 64 /* caller.principal's size */
enum { SLOT_EMPTY, SLOT_CLAIMED, SLOT_READY };
typedef struct principal_slot {
	atomic_int state;
	char name[METRICS_PRINCIPAL_NAME];
	atomic_uint_fast64_t denied, throttled;
} principal_slot;
static principal_slot principals[METRICS_PRINCIPALS_MAX + 1]; /* last: "other" */
_Static_assert(METRICS_PRINCIPALS_MAX == 32, "the HELP texts and docs/metrics.md say 32");

static bool slot_is(principal_slot *s, const char *name)
{
	return atomic_load_explicit(&s->state, memory_order_acquire) == SLOT_READY &&
	       !strcmp(s->name, name);
}

static principal_slot *slot_claim(principal_slot *s, const char *name)
{
	int expected = SLOT_EMPTY;
	if (!atomic_compare_exchange_strong(&s->state, &expected, SLOT_CLAIMED))
		return NULL;
	snprintf(s->name, sizeof s->name, "%s", name);
	atomic_store_explicit(&s->state, SLOT_READY, memory_order_release);
	return s;
}

static principal_slot *principal_slot_of(const char *name)
{
	if (!name)
		name = "";
	for (size_t i = 0; i < METRICS_PRINCIPALS_MAX; i++) {
		principal_slot *s = &principals[i];
		if (slot_is(s, name))
			return s;
		if (atomic_load_explicit(&s->state, memory_order_acquire) == SLOT_EMPTY) {
			principal_slot *mine = slot_claim(s, name);
			if (mine)
				return mine;
			if (slot_is(s, name)) /* another thread claimed it, for this name */
				return s;
		}
	}
	return &principals[METRICS_PRINCIPALS_MAX];
}

void metrics_authz_denied(int step, const char *principal)
{
	if (step < 1 || step > METRICS_AUTHZ_STEPS)
		step = 0;
	atomic_fetch_add_explicit(&authz_denied[step], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&principal_slot_of(principal)->denied, 1, memory_order_relaxed);
}

void metrics_throttled(const char *limit, const char *principal)
{
	atomic_fetch_add_explicit(strcmp(limit, "key") ? &throttled_principal : &throttled_key, 1,
	                          memory_order_relaxed);
	atomic_fetch_add_explicit(&principal_slot_of(principal)->throttled, 1,
	                          memory_order_relaxed);
}

void metrics_record(const struct op_entry *op, kms_status status, uint64_t latency_us)
{
	size_t row = op ? ops_index(op) + 1 : 0;
	if (row >= METRICS_OPS_MAX || (unsigned)status > KMS_STATUS_MAX)
		return;
	atomic_fetch_add_explicit(&requests[row][status], 1, memory_order_relaxed);
	kms_hist_observe(&latency[row], KMS_HIST_MICROSECONDS, latency_us);
}

/* Sequentially consistent, unlike the counters: a reader that sees a request
 * in flight may rely on its reply not having been sent yet. */
void metrics_in_flight(int delta)
{
	atomic_fetch_add(&in_flight, delta);
}

void metrics_queued(int delta)
{
	atomic_fetch_add(&queued, delta);
}

void metrics_deadline_expired(void)
{
	atomic_fetch_add_explicit(&deadline_expired, 1, memory_order_relaxed);
}

void metrics_conflict_retry(void)
{
	atomic_fetch_add_explicit(&conflict_retries, 1, memory_order_relaxed);
}

void metrics_record_answered(void)
{
	atomic_fetch_add_explicit(&records_answered, 1, memory_order_relaxed);
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

/* A label value with \\, \" and newlines escaped (the text format's rule). */
static void label_escape(const char *in, char *out, size_t cap)
{
	size_t o = 0;
	for (; *in && o + 3 < cap; in++) {
		if (*in == '\\' || *in == '"') {
			out[o++] = '\\';
			out[o++] = *in;
		} else if (*in == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = *in;
		}
	}
	out[o] = '\0';
}

/* us as decimal seconds without trailing zeros: 50 -> "0.00005". */
static void seconds_text(uint64_t us, char out[32])
{
	int n = snprintf(out, 32, "%llu.%06llu", (unsigned long long)(us / 1000000),
	                 (unsigned long long)(us % 1000000));
	while (n > 0 && out[n - 1] == '0')
		out[--n] = '\0';
	if (n > 0 && out[n - 1] == '.')
		out[--n] = '\0';
}

static void hist_value(kms_hist_kind kind, uint64_t v, char out[32])
{
	if (kind == KMS_HIST_MICROSECONDS)
		seconds_text(v, out);
	else
		snprintf(out, 32, "%llu", (unsigned long long)v);
}

/* The HELP and TYPE lines of a family. */
static void put_family(text *t, const char *name, const char *type, const char *help)
{
	put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One histogram's samples: cumulative buckets, +Inf equal to _count, and
 * _sum; labels ("" or `name="value"`) go before le. */
static void put_hist(text *t, const char *name, const char *labels, kms_hist_kind kind,
                     const kms_hist_snapshot *h)
{
	const char *comma = labels[0] ? "," : "";
	char v[32];
	for (size_t i = 0; i < KMS_HIST_BOUNDS; i++) {
		hist_value(kind, kms_hist_bounds[kind][i], v);
		put(t, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels, comma, v,
		    (unsigned long long)h->cumulative[i]);
	}
	put(t, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, comma,
	    (unsigned long long)h->count);
	hist_value(kind, h->sum, v);
	const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
	put(t, "%s_sum%s%s%s %s\n%s_count%s%s%s %llu\n", name, open, labels, close, v, name, open,
	    labels, close, (unsigned long long)h->count);
}

/* Per operation (and "undecoded"), the operations that ran since start-up. */
static void put_request_latency(text *t)
{
	put_family(t, "kms_request_duration_seconds", "histogram",
	           "Time from receipt to reply (the audit entry durable), by operation.");
	for (size_t row = 0; row < METRICS_OPS_MAX; row++) {
		const op_entry *op = row ? ops_at(row - 1) : NULL;
		if (row && !op)
			break;
		kms_hist_snapshot h;
		kms_hist_read(&latency[row], &h);
		if (!h.count)
			continue;
		char labels[96];
		snprintf(labels, sizeof labels, "operation=\"%s\"", op ? op->name : "undecoded");
		put_hist(t, "kms_request_duration_seconds", labels, KMS_HIST_MICROSECONDS, &h);
	}
}

/* One principal row's count of which (denied or throttled), with the
 * counts of later slots that hold the same name (a claim race) added. */
static uint64_t principal_count(size_t i, bool throttled)
{
	uint64_t n = 0;
	for (size_t j = i; j < METRICS_PRINCIPALS_MAX; j++) {
		if (j != i && !slot_is(&principals[j], principals[i].name))
			continue;
		n += atomic_load_explicit(throttled ? &principals[j].throttled : &principals[j].denied,
		                          memory_order_relaxed);
	}
	return n;
}

static bool principal_seen_before(size_t i)
{
	for (size_t j = 0; j < i; j++) {
		if (slot_is(&principals[j], principals[i].name))
			return true;
	}
	return false;
}

static void put_by_principal(text *t, const char *name, bool throttled)
{
	for (size_t i = 0; i < METRICS_PRINCIPALS_MAX; i++) {
		if (atomic_load_explicit(&principals[i].state, memory_order_acquire) != SLOT_READY ||
		    principal_seen_before(i))
			continue;
		char label[2 * METRICS_PRINCIPAL_NAME + 1];
		label_escape(principals[i].name, label, sizeof label);
		put(t, "%s{principal=\"%s\"} %llu\n", name, label,
		    (unsigned long long)principal_count(i, throttled));
	}
	principal_slot *other = &principals[METRICS_PRINCIPALS_MAX];
	put(t, "%s{principal=\"other\"} %llu\n", name,
	    (unsigned long long)atomic_load_explicit(throttled ? &other->throttled : &other->denied,
	                                             memory_order_relaxed));
}

static void put_principals(text *t)
{
	put_family(t, "kms_authz_denied_by_principal_total", "counter",
	           "Requests denied by authorization, by principal (\"\": none; the first 32 "
	           "principals since start-up, later ones as \"other\").");
	put_by_principal(t, "kms_authz_denied_by_principal_total", false);
	put_family(t, "kms_throttled_by_principal_total", "counter",
	           "Requests answered THROTTLED, by principal (\"\": none; the first 32 "
	           "principals since start-up, later ones as \"other\").");
	put_by_principal(t, "kms_throttled_by_principal_total", true);
}

/* The audit writer: batches, fsync, backlog; the checkpoint's age. */
static void put_audit_writer(text *t, const audit_stats *s, uint64_t entries)
{
	put_family(t, "kms_audit_batch_entries", "histogram",
	           "Entries per batch the audit writer wrote (group commit).");
	put_hist(t, "kms_audit_batch_entries", "", KMS_HIST_COUNT, &s->batch_entries);
	put_family(t, "kms_audit_fsync_duration_seconds", "histogram",
	           "Each fdatasync of log.bin after a batch (none with [audit] sync = false).");
	put_hist(t, "kms_audit_fsync_duration_seconds", "", KMS_HIST_MICROSECONDS, &s->fsync_us);
	put_family(t, "kms_audit_queue_entries", "gauge",
	           "Entries waiting for the audit writer (the backlog; at most 4096).");
	put(t, "kms_audit_queue_entries %llu\n", (unsigned long long)s->queued);
	put_family(t, "kms_audit_checkpoint_size", "gauge",
	           "Tree size of the latest signed checkpoint.");
	put(t, "kms_audit_checkpoint_size %llu\n", (unsigned long long)s->checkpoint_size);
	put_family(t, "kms_audit_unpublished_entries", "gauge",
	           "Durable entries not yet covered by a signed checkpoint.");
	put(t, "kms_audit_unpublished_entries %llu\n",
	    (unsigned long long)(entries > s->checkpoint_size ? entries - s->checkpoint_size : 0));
	char age[32];
	seconds_text(s->checkpoint_age_ms * 1000, age);
	put_family(t, "kms_audit_checkpoint_age_seconds", "gauge",
	           "Seconds since kmsd last signed a checkpoint (kmsd signs one at start-up).");
	put(t, "kms_audit_checkpoint_age_seconds %s\n", age);
}

/* The PKCS#11 layer: attempts, failures by CK_RV, sessions. */
static void put_hsm(text *t, hsm *h)
{
	hsm_call_stats *c = malloc(sizeof *c);
	if (!c) {
		t->failed = true;
		return;
	}
	hsm_call_stats_get(h, c);
	put_family(t, "kms_hsm_call_duration_seconds", "histogram",
	           "Each attempt of an HSM operation (its PKCS#11 calls on one session).");
	put_hist(t, "kms_hsm_call_duration_seconds", "", KMS_HIST_MICROSECONDS, &c->attempt_us);
	put_family(t, "kms_hsm_errors_total", "counter",
	           "HSM attempts (and C_OpenSession calls) that failed, by CK_RV.");
	for (size_t i = 0; i < HSM_RV_SLOTS; i++) {
		const char *rv = hsm_rv_slot_name(i);
		if (rv && c->errors[i])
			put(t, "kms_hsm_errors_total{rv=\"%s\"} %llu\n", rv,
			    (unsigned long long)c->errors[i]);
	}
	put_family(t, "kms_hsm_sessions_open", "gauge",
	           "PKCS#11 sessions kmsd holds: one per thread that used the HSM, and the "
	           "key cache's.");
	put(t, "kms_hsm_sessions_open %llu\n", (unsigned long long)c->sessions_open);
	put_family(t, "kms_hsm_sessions_opened_total", "counter",
	           "PKCS#11 sessions opened since start-up.");
	put(t, "kms_hsm_sessions_opened_total %llu\n", (unsigned long long)c->sessions_opened);
	put_family(t, "kms_hsm_sessions_lost_total", "counter",
	           "Sessions dropped because the module lost them (then reopened).");
	put(t, "kms_hsm_sessions_lost_total %llu\n", (unsigned long long)c->sessions_lost);
	free(c);
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

/* The audit writer (put_audit_writer), and the audit log's memory, tile
 * cache, start-up and background check (docs/audit-log.md, "Memory and
 * start-up"). */
static void put_audit_memory(text *t, audit_log *log)
{
	audit_stats s;
	audit_get_stats(log, &s);
	put_audit_writer(t, &s, audit_size(log));
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
	/* 0 on a kmsd of its own (SQLite): no fleet, no lease. */
	put(t, "# HELP kms_audit_fleet_sequencer Whether this replica holds the fleet audit "
	       "log's sequencer lease (docs/scale-out.md); 0 without a fleet.\n"
	       "# TYPE kms_audit_fleet_sequencer gauge\nkms_audit_fleet_sequencer %d\n"
	       "# HELP kms_audit_fleet_lease_epoch The lease's epoch when this replica last "
	       "held it (raised at each takeover).\n"
	       "# TYPE kms_audit_fleet_lease_epoch gauge\nkms_audit_fleet_lease_epoch %llu\n"
	       "# HELP kms_audit_fleet_sequenced_total Entries of the fleet this replica "
	       "numbered while it held the lease.\n"
	       "# TYPE kms_audit_fleet_sequenced_total counter\n"
	       "kms_audit_fleet_sequenced_total %llu\n",
	    s.sequencer ? 1 : 0, (unsigned long long)s.lease_epoch,
	    (unsigned long long)s.fleet_sequenced);
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
	put_request_latency(&t);
	put(&t, "# HELP kms_requests_in_flight Requests being executed, which a drain still answers.\n"
	        "# TYPE kms_requests_in_flight gauge\nkms_requests_in_flight %lld\n",
	    (long long)atomic_load(&in_flight));
	put(&t, "# HELP kms_requests_queued Requests received and waiting for a worker.\n"
	        "# TYPE kms_requests_queued gauge\nkms_requests_queued %lld\n",
	    (long long)atomic_load(&queued));
	put(&t, "# HELP kms_requests_deadline_expired_total Requests answered UNAVAILABLE unrun: "
	        "they waited for a worker past [limits] queue_deadline_ms.\n"
	        "# TYPE kms_requests_deadline_expired_total counter\n"
	        "kms_requests_deadline_expired_total %llu\n",
	    (unsigned long long)atomic_load(&deadline_expired));
	put(&t, "# HELP kms_store_conflict_retries_total Requests run again because their store "
	        "transaction met a serialization failure or deadlock.\n"
	        "# TYPE kms_store_conflict_retries_total counter\n"
	        "kms_store_conflict_retries_total %llu\n",
	    (unsigned long long)atomic_load(&conflict_retries));
	put(&t, "# HELP kms_request_records_answered_total Requests sent again and answered "
	        "from the record of their first run, not run twice.\n"
	        "# TYPE kms_request_records_answered_total counter\n"
	        "kms_request_records_answered_total %llu\n",
	    (unsigned long long)atomic_load(&records_answered));
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
	put_principals(&t);
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
	if (d->hsm)
		put_hsm(&t, d->hsm);
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
