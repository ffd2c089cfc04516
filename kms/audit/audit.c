/*
 * audit.c: the audit log's durable record and its writer thread (group
 * commit). Publishing tiles and checkpoints is audit_publish.c.
 */
#include "common/log.h"
#include "kms/audit/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kms/audit/audit_internal.h"
#include "common/cursor.h"
#include "common/error.h"

static kms_status offsets_push(audit_log *log, uint64_t offset)
{
	uint64_t n = tlog_tree_size(&log->tree);
	if (n == log->n_offsets_cap) {
		uint64_t cap = log->n_offsets_cap ? log->n_offsets_cap * 2 : 4096;
		uint64_t *grown = realloc(log->offsets, cap * sizeof *grown);
		KMS_ENSURE(grown, KMS_INTERNAL, "audit: out of memory for %llu entries",
		           (unsigned long long)cap);
		log->offsets = grown;
		log->n_offsets_cap = cap;
	}
	log->offsets[n] = offset;
	return KMS_OK;
}

/* Adds one verified record to the in-memory tree. */
static kms_status index_record(audit_log *log, uint64_t offset, const uint8_t hash[AUDIT_HASH_LEN])
{
	KMS_GUARD(offsets_push(log, offset));
	return tlog_tree_append(&log->tree, hash);
}

kms_status audit_read_entry(audit_log *log, uint64_t i, char **entry, size_t *len)
{
	*entry = NULL;
	*len = 0;
	KMS_ENSURE(i < tlog_tree_size(&log->tree), KMS_NOT_FOUND,
	           "audit: no entry %llu (the log has %llu)", (unsigned long long)i,
	           (unsigned long long)tlog_tree_size(&log->tree));
	uint8_t prefix[AUDIT_RECORD_LEN_BYTES];
	uint64_t off = log->offsets[i];
	KMS_ENSURE(pread(log->fd, prefix, sizeof prefix, (off_t)off) == sizeof prefix, KMS_INTERNAL,
	           "audit: cannot read entry %llu: %s", (unsigned long long)i, strerror(errno));
	size_t n = ((size_t)prefix[0] << 8) | prefix[1];
	char *buf = malloc(n ? n : 1);
	KMS_ENSURE(buf, KMS_INTERNAL, "audit: out of memory");
	if (pread(log->fd, buf, n, (off_t)(off + sizeof prefix)) != (ssize_t)n) {
		free(buf);
		return KMS_FAIL(KMS_INTERNAL, "audit: cannot read entry %llu: %s",
		                (unsigned long long)i, strerror(errno));
	}
	*entry = buf;
	*len = n;
	return KMS_OK;
}

static kms_status index_visit(void *ctx, uint64_t index, uint64_t offset, const uint8_t *entry,
                              size_t len, const uint8_t hash[static TLOG_HASH_SIZE])
{
	(void)index;
	(void)entry;
	(void)len;
	return index_record(ctx, offset, hash);
}

/* Damage that recovery must not cut: kmsd stops, with the record and
 * where it is, and what to do. (One line, under KMS_ERROR_MAX.) */
#define REPAIR_HINT "stop kmsd and run 'kms-admin audit repair DATA_DIR/audit' (docs/audit-log.md)"

static kms_status refuse_damage(const tlog_records_scan *scan, const char *why)
{
	return KMS_FAIL(KMS_FAILED_PRECONDITION,
	                "audit: log.bin record %llu at offset %llu is damaged (%s), %s: " REPAIR_HINT,
	                (unsigned long long)scan->whole, (unsigned long long)scan->whole_bytes,
	                tlog_record_fault_text(scan->fault), why);
}

/* Which bad record is a torn tail (cut it) and which is damage (stop).
 * Every batch was fdatasync'ed before it was acknowledged, and the
 * checkpoint of signed_size was published after its entries were durable:
 * a tear can only be past both, and leaves nothing whole after it. */
static kms_status judge_tail(const audit_log *log, const tlog_records_scan *scan)
{
	char why[80];
	if (scan->whole < log->signed_size) {
		snprintf(why, sizeof why, "below the %llu signed entries",
		         (unsigned long long)log->signed_size);
		return refuse_damage(scan, why);
	}
	if (scan->after_reach_end) {
		snprintf(why, sizeof why, "with %llu whole records after it",
		         (unsigned long long)scan->whole_after);
		return refuse_damage(scan, why);
	}
	return KMS_OK;
}

/* The first signed_size entries must be what was signed. */
static kms_status check_signed_prefix(audit_log *log)
{
	uint8_t root[AUDIT_HASH_LEN];
	uint64_t have = tlog_tree_size(&log->tree);
	KMS_ENSURE(have >= log->signed_size, KMS_FAILED_PRECONDITION,
	           "audit: log.bin holds %llu entries, fewer than the %llu signed: " REPAIR_HINT,
	           (unsigned long long)have, (unsigned long long)log->signed_size);
	KMS_GUARD(tlog_tree_root(&log->tree, log->signed_size, root));
	KMS_ENSURE(tlog_hash_equal(root, log->signed_root), KMS_FAILED_PRECONDITION,
	           "audit: the first %llu entries of log.bin differ from the signed checkpoint: "
	           REPAIR_HINT, (unsigned long long)log->signed_size);
	return KMS_OK;
}

static kms_status read_log_file(audit_log *log, uint8_t **all, size_t *size)
{
	struct stat st;
	*all = NULL;
	KMS_ENSURE(fstat(log->fd, &st) == 0, KMS_INTERNAL, "audit: stat %s/%s: %s", log->dir,
	           AUDIT_LOG_FILE, strerror(errno));
	*size = (size_t)st.st_size;
	if (*size == 0)
		return KMS_OK;
	*all = malloc(*size);
	KMS_ENSURE(*all, KMS_INTERNAL, "audit: out of memory reading %zu bytes", *size);
	if (pread(log->fd, *all, *size, 0) != (ssize_t)*size) {
		free(*all);
		*all = NULL;
		return KMS_FAIL(KMS_INTERNAL, "audit: read %s/%s: %s", log->dir, AUDIT_LOG_FILE,
		                strerror(errno));
	}
	return KMS_OK;
}

/* Reads log.bin and indexes its whole records. A bad record is cut only
 * when it is a torn tail (judge_tail); anything else stops kmsd. */
static kms_status recover(audit_log *log)
{
	uint8_t *all = NULL;
	size_t size = 0;
	tlog_records_scan scan;
	KMS_GUARD(read_log_file(log, &all, &size));
	kms_status status = tlog_records_scan_bytes(all, size, index_visit, log, &scan);
	free(all);
	KMS_GUARD(status);
	if (scan.fault != TLOG_RECORD_WHOLE) {
		KMS_GUARD(judge_tail(log, &scan));
		kms_log("warn", "audit: cut a torn record at the end of %s/%s: record %llu at byte "
		         "offset %llu (%s); %zu bytes after entry %llu were never acknowledged",
		         log->dir, AUDIT_LOG_FILE, (unsigned long long)scan.whole,
		         (unsigned long long)scan.whole_bytes, tlog_record_fault_text(scan.fault),
		         size - (size_t)scan.whole_bytes, (unsigned long long)scan.whole);
		KMS_ENSURE(ftruncate(log->fd, (off_t)scan.whole_bytes) == 0 && fdatasync(log->fd) == 0,
		           KMS_INTERNAL, "audit: cannot cut the torn tail of %s/%s: %s", log->dir,
		           AUDIT_LOG_FILE, strerror(errno));
	}
	KMS_GUARD(check_signed_prefix(log));
	log->durable_bytes = scan.whole_bytes;
	return KMS_OK;
}

/* Allocates the batch's bytes in log.bin, and for a batch that is not only
 * outcomes AUDIT_OUTCOME_RESERVE more past them (not counted in its size), so
 * that an outcome whose intent is durable always finds room. Nothing is
 * written here: a failure leaves the file as it was. */
static kms_status room_for_batch(audit_log *log, size_t total, bool outcomes_only)
{
	off_t want = (off_t)total + (outcomes_only ? 0 : (off_t)AUDIT_OUTCOME_RESERVE);
	if (fallocate(log->fd, FALLOC_FL_KEEP_SIZE, (off_t)log->durable_bytes, want) == 0)
		return KMS_OK;
	if (errno == EOPNOTSUPP) {
		if (!log->no_reserve)
			kms_log("warn", "audit: %s cannot allocate ahead (fallocate): no room is kept "
			        "for outcomes of changes (docs/audit-log.md)", log->dir);
		log->no_reserve = true;
		return KMS_OK;
	}
	return KMS_FAIL(KMS_UNAVAILABLE, "no room in %s for %zu bytes and the %u kept for "
	                "outcomes: %s", AUDIT_LOG_FILE, total,
	                outcomes_only ? 0u : AUDIT_OUTCOME_RESERVE, strerror(errno));
}

/* Writes one batch and makes it durable. On failure the file is cut back to
 * what was durable before, so a later batch starts clean. */
static kms_status write_batch(audit_log *log, audit_waiter *const *batch, size_t n,
                              bool outcomes_only)
{
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += AUDIT_RECORD_LEN_BYTES + batch[i]->len + AUDIT_HASH_LEN;
	uint8_t *buf = malloc(total);
	uint8_t (*hashes)[AUDIT_HASH_LEN] = malloc(n * AUDIT_HASH_LEN);
	kms_status st = KMS_OK;
	if (!buf || !hashes) {
		st = KMS_FAIL(KMS_UNAVAILABLE, "out of memory for a batch of %zu entries", n);
		goto out;
	}
	for (size_t i = 0, at = 0; i < n; i++) {
		size_t put = tlog_record_put(buf + at, total - at, (const uint8_t *)batch[i]->entry,
		                             batch[i]->len);
		if (put == 0) {
			st = KMS_FAIL(KMS_UNAVAILABLE, "an entry of %zu bytes cannot be recorded",
			              batch[i]->len);
			goto out;
		}
		memcpy(hashes[i], buf + at + put - AUDIT_HASH_LEN, AUDIT_HASH_LEN);
		at += put;
	}
	st = room_for_batch(log, total, outcomes_only);
	if (st != KMS_OK)
		goto out; /* nothing written: the room kept so far stays */
	size_t done = 0;
	while (done < total) {
		ssize_t put = pwrite(log->fd, buf + done, total - done,
		                     (off_t)(log->durable_bytes + done));
		if (put < 0 && errno == EINTR)
			continue;
		if (put <= 0) {
			st = KMS_FAIL(KMS_UNAVAILABLE, "write %s/%s: %s", log->dir, AUDIT_LOG_FILE,
			              put < 0 ? strerror(errno) : "short write");
			break;
		}
		done += (size_t)put;
	}
	if (st == KMS_OK && log->sync && fdatasync(log->fd) != 0)
		st = KMS_FAIL(KMS_UNAVAILABLE, "fdatasync %s/%s: %s", log->dir, AUDIT_LOG_FILE,
		              strerror(errno));
	if (st != KMS_OK) {
		/* Nothing of this batch counts: cut it off again. */
		if (ftruncate(log->fd, (off_t)log->durable_bytes) != 0)
			kms_log("error", "audit: cannot cut a failed batch off %s/%s: %s", log->dir,
			         AUDIT_LOG_FILE, strerror(errno));
		goto out;
	}
	pthread_rwlock_wrlock(&log->tree_lock);
	uint64_t offset = log->durable_bytes;
	for (size_t i = 0; i < n && st == KMS_OK; i++) {
		st = index_record(log, offset, hashes[i]);
		offset += AUDIT_RECORD_LEN_BYTES + batch[i]->len + AUDIT_HASH_LEN;
	}
	log->durable_bytes = offset;
	pthread_rwlock_unlock(&log->tree_lock);
out:
	free(buf);
	free(hashes);
	return st;
}

/* Outcomes first, as their own batch that may use the room kept for them,
 * then the rest; a batch of one kind is written as it is. Each entry's
 * `written` says how its own part went (the writer turns it into its state
 * under the lock). */
static kms_status write_split(audit_log *log, audit_waiter **batch, size_t n)
{
	size_t outcomes = 0;
	for (size_t i = 0; i < n; i++)
		if (batch[i]->outcome) {
			audit_waiter *w = batch[outcomes];
			batch[outcomes++] = batch[i];
			batch[i] = w;
		}
	kms_status st = KMS_OK, rest = KMS_OK;
	if (outcomes)
		st = write_batch(log, batch, outcomes, true);
	for (size_t i = 0; i < outcomes; i++)
		batch[i]->written = st == KMS_OK;
	if (n > outcomes)
		rest = write_batch(log, batch + outcomes, n - outcomes, false);
	for (size_t i = outcomes; i < n; i++)
		batch[i]->written = rest == KMS_OK;
	return st != KMS_OK ? st : rest;
}

static void *writer_main(void *arg)
{
	audit_log *log = arg;
	audit_waiter *batch[AUDIT_QUEUE_MAX];
	pthread_mutex_lock(&log->lock);
	for (;;) {
		while (log->n_queued == 0 && !log->stop)
			pthread_cond_wait(&log->queued, &log->lock);
		if (log->stop && log->n_queued == 0)
			break;
		size_t n = log->n_queued;
		memcpy(batch, log->queue, n * sizeof batch[0]);
		log->n_queued = 0;
		pthread_mutex_unlock(&log->lock);

		kms_status st = write_split(log, batch, n);
		char why[200] = "";
		if (st != KMS_OK) {
			snprintf(why, sizeof why, "%s", kms_error_message());
			kms_log("error", "audit: %zu entries not written, their requests fail: %s (%s)",
			        n, why, kms_error_where());
		}

		pthread_mutex_lock(&log->lock);
		/* Wake exactly the appenders of this batch, not every waiter. */
		for (size_t i = 0; i < n; i++) {
			batch[i]->state = batch[i]->written ? AUDIT_DURABLE : AUDIT_FAILED;
			pthread_cond_signal(&batch[i]->settled);
		}
		if (st == KMS_OK) {
			if (!log->healthy)
				kms_log("info", "audit: the log can be written again");
			log->healthy = true;
			pthread_cond_signal(&log->publish_wake);
		} else {
			log->healthy = false;
			snprintf(log->why, sizeof log->why, "%s", why);
		}
		pthread_cond_broadcast(&log->room);
	}
	pthread_mutex_unlock(&log->lock);
	return NULL;
}

/* The publisher: a signed checkpoint at most checkpoint_ms after entries
 * arrive. It runs beside the writer, so tile and checkpoint fsyncs never
 * hold up a batch; it reads the tree through short read locks. */
static void *publisher_main(void *arg)
{
	audit_log *log = arg;
	pthread_mutex_lock(&log->lock);
	while (!log->stop) {
		uint64_t since = kms_monotonic_us() / 1000 - log->last_publish_ms;
		pthread_mutex_unlock(&log->lock);
		bool behind = audit_size(log) != log->published_size;
		pthread_mutex_lock(&log->lock);
		if (!behind || since < log->checkpoint_ms) {
			uint64_t wait_ms = behind ? log->checkpoint_ms - since : log->checkpoint_ms;
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += (time_t)(wait_ms / 1000);
			until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
			if (until.tv_nsec >= 1000000000L) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&log->publish_wake, &log->lock, &until);
			continue;
		}
		pthread_mutex_unlock(&log->lock);
		bool published = audit_publish(log) == KMS_OK;
		if (!published)
			kms_log("error", "audit: publishing a checkpoint: %s (%s)", kms_error_message(),
			        kms_error_where());
		pthread_mutex_lock(&log->lock);
		/* A failed publication (disk full) is retried checkpoint_ms later,
		 * not at once, so it cannot spin and flood the log. */
		if (!published)
			log->last_publish_ms = kms_monotonic_us() / 1000;
	}
	pthread_mutex_unlock(&log->lock);
	return NULL;
}

static kms_status append(audit_log *log, const char *entry, size_t len, bool outcome)
{
	KMS_ENSURE(len >= 1 && len <= UINT16_MAX, KMS_INTERNAL, "audit: entry of %zu bytes", len);
	audit_waiter me = { .entry = entry, .len = len, .outcome = outcome,
	                    .state = AUDIT_PENDING };
	pthread_cond_init(&me.settled, NULL);
	pthread_mutex_lock(&log->lock);
	while (log->n_queued == AUDIT_QUEUE_MAX && !log->stop)
		pthread_cond_wait(&log->room, &log->lock);
	if (log->stop) {
		pthread_mutex_unlock(&log->lock);
		pthread_cond_destroy(&me.settled);
		return KMS_FAIL(KMS_UNAVAILABLE, "audit log is closing");
	}
	log->queue[log->n_queued++] = &me;
	pthread_cond_signal(&log->queued);
	while (me.state == AUDIT_PENDING)
		pthread_cond_wait(&me.settled, &log->lock);
	kms_status st = KMS_OK;
	if (me.state == AUDIT_FAILED)
		st = KMS_FAIL(KMS_UNAVAILABLE, "audit log cannot be written (%s): the request was "
		              "not answered; free the disk and retry", log->why);
	pthread_mutex_unlock(&log->lock);
	pthread_cond_destroy(&me.settled);
	return st;
}

kms_status audit_append(audit_log *log, const char *entry, size_t len)
{
	return append(log, entry, len, false);
}

kms_status audit_append_outcome(audit_log *log, const char *entry, size_t len)
{
	return append(log, entry, len, true);
}

bool audit_healthy(audit_log *log, char *why, size_t why_cap)
{
	pthread_mutex_lock(&log->lock);
	bool ok = log->healthy;
	if (!ok && why)
		snprintf(why, why_cap, "%s", log->why);
	pthread_mutex_unlock(&log->lock);
	return ok;
}

uint64_t audit_size(audit_log *log)
{
	pthread_rwlock_rdlock(&log->tree_lock);
	uint64_t n = tlog_tree_size(&log->tree);
	pthread_rwlock_unlock(&log->tree_lock);
	return n;
}

kms_status audit_checkpoint(audit_log *log, char **note, uint64_t *size,
                            uint8_t root[AUDIT_HASH_LEN])
{
	pthread_mutex_lock(&log->lock);
	*note = log->checkpoint ? strdup(log->checkpoint) : NULL;
	*size = log->checkpoint_size;
	memcpy(root, log->checkpoint_root, AUDIT_HASH_LEN);
	pthread_mutex_unlock(&log->lock);
	KMS_ENSURE(*note, KMS_INTERNAL, "audit: no checkpoint yet");
	return KMS_OK;
}

void audit_verifier_key(audit_log *log, char out[AUDIT_VERIFIER_KEY_MAX])
{
	snprintf(out, AUDIT_VERIFIER_KEY_MAX, "%s", log->verifier_key);
}

static uint64_t published_size(audit_log *log)
{
	pthread_mutex_lock(&log->lock);
	uint64_t n = log->checkpoint_size;
	pthread_mutex_unlock(&log->lock);
	return n;
}

kms_status audit_inclusion_proof(audit_log *log, uint64_t index, uint64_t *tree_size,
                                 uint8_t (**hashes)[AUDIT_HASH_LEN], size_t *n,
                                 char **entry, size_t *entry_len)
{
	uint8_t proof[TLOG_PROOF_MAX_HASHES][TLOG_HASH_SIZE];
	*hashes = NULL;
	*n = 0;
	if (*tree_size == 0)
		*tree_size = published_size(log);
	pthread_rwlock_rdlock(&log->tree_lock);
	kms_status st = KMS_OK;
	if (*tree_size > tlog_tree_size(&log->tree) || index >= *tree_size)
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "audit: no entry %llu in a tree of %llu",
		              (unsigned long long)index, (unsigned long long)*tree_size);
	if (st == KMS_OK)
		st = tlog_inclusion_proof(tlog_tree_reader, &log->tree, *tree_size, index, proof, n);
	if (st == KMS_OK)
		st = audit_read_entry(log, index, entry, entry_len);
	pthread_rwlock_unlock(&log->tree_lock);
	KMS_GUARD(st);
	*hashes = malloc((*n ? *n : 1) * AUDIT_HASH_LEN);
	KMS_ENSURE(*hashes, KMS_INTERNAL, "audit: out of memory");
	memcpy(*hashes, proof, *n * AUDIT_HASH_LEN);
	return KMS_OK;
}

kms_status audit_consistency_proof(audit_log *log, uint64_t old_size, uint64_t *new_size,
                                   uint8_t (**hashes)[AUDIT_HASH_LEN], size_t *n)
{
	uint8_t proof[TLOG_PROOF_MAX_HASHES][TLOG_HASH_SIZE];
	*hashes = NULL;
	*n = 0;
	if (*new_size == 0)
		*new_size = published_size(log);
	pthread_rwlock_rdlock(&log->tree_lock);
	kms_status st = KMS_OK;
	if (*new_size > tlog_tree_size(&log->tree) || old_size > *new_size)
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "audit: no consistency proof from %llu to %llu",
		              (unsigned long long)old_size, (unsigned long long)*new_size);
	if (st == KMS_OK)
		st = tlog_consistency_proof(tlog_tree_reader, &log->tree, old_size, *new_size, proof, n);
	pthread_rwlock_unlock(&log->tree_lock);
	KMS_GUARD(st);
	*hashes = malloc((*n ? *n : 1) * AUDIT_HASH_LEN);
	KMS_ENSURE(*hashes, KMS_INTERNAL, "audit: out of memory");
	memcpy(*hashes, proof, *n * AUDIT_HASH_LEN);
	return KMS_OK;
}

kms_status audit_open(const audit_config *cfg, audit_log **out)
{
	*out = NULL;
	audit_log *log = calloc(1, sizeof *log);
	KMS_ENSURE(log, KMS_INTERNAL, "audit: out of memory");
	kms_status st = KMS_OK;
	log->fd = -1;
	pthread_mutex_init(&log->lock, NULL);
	pthread_cond_init(&log->queued, NULL);
	pthread_cond_init(&log->room, NULL);
	pthread_cond_init(&log->publish_wake, NULL);
	pthread_rwlock_init(&log->tree_lock, NULL);
	tlog_tree_init(&log->tree);
	log->hsm = cfg->hsm;
	log->sync = cfg->sync;
	log->healthy = true;
	log->checkpoint_ms = cfg->checkpoint_ms ? cfg->checkpoint_ms : 1000;
	snprintf(log->dir, sizeof log->dir, "%s", cfg->dir);
	snprintf(log->public_dir, sizeof log->public_dir, "%s/%s", cfg->dir, AUDIT_PUBLIC_DIR);
	snprintf(log->origin, sizeof log->origin, "%s", cfg->origin);

	/* audit/ is private (log.bin); public/ and below are world-readable
	 * (AUDIT_PUBLIC_DIR_MODE, whatever the umask) so that a copy or a
	 * read-only bind mount of it can be served as is, while the data dir
	 * above keeps everyone else out (docs/audit-log.md, "Files"). */
	if ((mkdir(log->dir, 0700) != 0 && errno != EEXIST) ||
	    (mkdir(log->public_dir, AUDIT_PUBLIC_DIR_MODE) != 0 && errno != EEXIST) ||
	    chmod(log->public_dir, AUDIT_PUBLIC_DIR_MODE) != 0) {
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "audit: cannot create %s: %s", log->public_dir,
		              strerror(errno));
		goto out;
	}
	char path[1200];
	snprintf(path, sizeof path, "%s/%s", log->dir, AUDIT_LOG_FILE);
	log->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (log->fd < 0) {
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "audit: open %s: %s", path, strerror(errno));
		goto out;
	}
	if (flock(log->fd, LOCK_EX | LOCK_NB) != 0) {
		st = KMS_FAIL(KMS_FAILED_PRECONDITION, "audit: %s is in use by another process "
		              "(another kmsd, or kms-admin audit repair): %s", path, strerror(errno));
		goto out;
	}
	KMS_GUARD_OUT(st, audit_signing_key(log));
	KMS_GUARD_OUT(st, audit_load_signed(log));
	KMS_GUARD_OUT(st, recover(log));
	KMS_GUARD_OUT(st, audit_publish(log));
	if (pthread_create(&log->writer, NULL, writer_main, log) != 0) {
		st = KMS_FAIL(KMS_INTERNAL, "audit: cannot start the writer thread");
		goto out;
	}
	log->writer_started = true;
	if (pthread_create(&log->publisher, NULL, publisher_main, log) != 0) {
		st = KMS_FAIL(KMS_INTERNAL, "audit: cannot start the publisher thread");
		goto out;
	}
	log->publisher_started = true;
	kms_log("info", "audit: %llu entries in %s, origin %s, verifier key %s",
	         (unsigned long long)tlog_tree_size(&log->tree), path, log->origin, log->verifier_key);
out:
	if (st != KMS_OK) {
		kms_error_saved why;
		kms_error_save(&why);
		audit_close(log);
		return kms_error_restore(st, &why);
	}
	*out = log;
	return KMS_OK;
}

void audit_close(audit_log *log)
{
	if (!log)
		return;
	if (log->writer_started || log->publisher_started) {
		pthread_mutex_lock(&log->lock);
		log->stop = true;
		pthread_cond_broadcast(&log->queued);
		pthread_cond_broadcast(&log->room);
		pthread_cond_broadcast(&log->publish_wake);
		pthread_mutex_unlock(&log->lock);
		if (log->publisher_started)
			pthread_join(log->publisher, NULL);
		if (log->writer_started)
			pthread_join(log->writer, NULL);
		if (tlog_tree_size(&log->tree) != log->published_size &&
		    audit_publish(log) != KMS_OK)
			kms_log("error", "audit: final checkpoint: %s (%s)", kms_error_message(),
			        kms_error_where());
	}
	if (log->fd >= 0)
		close(log->fd);
	tlog_tree_free(&log->tree);
	free(log->offsets);
	free(log->checkpoint);
	pthread_rwlock_destroy(&log->tree_lock);
	pthread_cond_destroy(&log->queued);
	pthread_cond_destroy(&log->room);
	pthread_cond_destroy(&log->publish_wake);
	pthread_mutex_destroy(&log->lock);
	free(log);
}
