/*
 * audit.c: the audit log's durable record and its writer thread (group
 * commit). Publishing tiles and checkpoints is audit_publish.c; the tree in
 * bounded memory is audit_tree.c; the background check of the records
 * below the point start-up resumed from is audit_scrub.c.
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

#include <kms/secmem.h>

#include "kms/audit/audit_internal.h"
#include "kms/store/store.h"
#include "common/cursor.h"
#include "common/error.h"

/* Entry i from log.bin at its offset. */
static kms_status read_record_entry(audit_log *log, uint64_t i, char **entry, size_t *len)
{
	uint8_t prefix[AUDIT_RECORD_LEN_BYTES];
	uint64_t off = 0;
	KMS_GUARD(audit_tree_offset(&log->tree, i, &off));
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

/* Entry i from its full bundle in public/ (immutable once written). */
static kms_status read_bundle_entry(audit_log *log, uint64_t i, char **entry, size_t *len)
{
	char path[TLOG_TILE_PATH_MAX];
	uint8_t *bytes = NULL;
	unsigned width = 0;
	tlog_entry_span *spans = malloc(TLOG_TILE_WIDTH * sizeof *spans);
	KMS_ENSURE(spans, KMS_INTERNAL, "audit: out of memory");
	uint64_t k = i / TLOG_TILE_WIDTH;
	kms_status st = tlog_bundle_read(log->public_dir, (k + 1) * TLOG_TILE_WIDTH, k, path, &bytes,
	                                 spans, &width);
	if (st == KMS_OK) {
		const tlog_entry_span *s = &spans[i % TLOG_TILE_WIDTH];
		char *buf = malloc(s->len ? s->len : 1);
		if (buf) {
			memcpy(buf, s->bytes, s->len);
			*entry = buf;
			*len = s->len;
		} else {
			st = KMS_FAIL(KMS_INTERNAL, "audit: out of memory");
		}
	}
	free(bytes);
	free(spans);
	return st;
}

kms_status audit_read_entry(audit_log *log, uint64_t i, char **entry, size_t *len)
{
	*entry = NULL;
	*len = 0;
	KMS_ENSURE(i < log->tree.size, KMS_NOT_FOUND, "audit: no entry %llu (the log has %llu)",
	           (unsigned long long)i, (unsigned long long)log->tree.size);
	if (i >= log->tree.flushed)
		return read_record_entry(log, i, entry, len);
	return read_bundle_entry(log, i, entry, len);
}

/* An entry reader for the tile writers (tlog_entry_reader). */
static kms_status entry_into(void *ctx, uint64_t index, uint8_t *buf, size_t cap, size_t *len)
{
	char *entry = NULL;
	size_t n = 0;
	KMS_GUARD(audit_read_entry(ctx, index, &entry, &n));
	kms_status st = KMS_OK;
	if (n > cap)
		st = KMS_FAIL(KMS_INTERNAL, "audit: entry %llu is %zu bytes", (unsigned long long)index, n);
	else
		memcpy(buf, entry, n);
	free(entry);
	*len = st == KMS_OK ? n : 0;
	return st;
}

/* At open, when the hot tiles are full: writes (or checks against the
 * files there) the full tiles and bundles, then forgets them. */
static kms_status recover_flush(audit_log *log)
{
	uint64_t upto = audit_floor_tile(log->tree.size);
	KMS_GUARD(audit_tree_write_full(&log->tree, upto, entry_into, log));
	audit_tree_drop(&log->tree, upto);
	return KMS_OK;
}

/* Scanning log.bin from some record on: its offset in the file. */
typedef struct scan_ctx {
	audit_log *log;
	uint64_t base_offset;
} scan_ctx;

static kms_status index_visit(void *ctx, uint64_t index, uint64_t offset, const uint8_t *entry,
                              size_t len, const uint8_t hash[static TLOG_HASH_SIZE])
{
	scan_ctx *sc = ctx;
	(void)index;
	(void)entry;
	if (!audit_tree_has_room(&sc->log->tree, 1))
		KMS_GUARD(recover_flush(sc->log));
	sc->log->open_scanned++;
	return audit_tree_append(&sc->log->tree, hash, sc->base_offset + offset,
	                         TLOG_RECORD_OVERHEAD + len);
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
	/* A fleet's copy is not fdatasync'ed batch by batch (only before a
	 * checkpoint covers it), so a crash may lose any of its pages past the
	 * signed size: cut there, and copy again from the database. */
	if (scan->after_reach_end && !log->fleet) {
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
	uint64_t have = log->tree.size;
	KMS_ENSURE(have >= log->signed_size, KMS_FAILED_PRECONDITION,
	           "audit: log.bin holds %llu entries, fewer than the %llu signed: " REPAIR_HINT,
	           (unsigned long long)have, (unsigned long long)log->signed_size);
	KMS_GUARD(tlog_root_at(audit_tree_reader, &log->tree, log->signed_size, root));
	KMS_ENSURE(tlog_hash_equal(root, log->signed_root), KMS_FAILED_PRECONDITION,
	           "audit: the first %llu entries of log.bin differ from the signed checkpoint: "
	           REPAIR_HINT, (unsigned long long)log->signed_size);
	return KMS_OK;
}

/* log.bin from byte `from` to its end, into memory. */
static kms_status read_log_tail(audit_log *log, uint64_t from, uint8_t **all, size_t *size)
{
	struct stat st;
	*all = NULL;
	*size = 0;
	KMS_ENSURE(fstat(log->fd, &st) == 0, KMS_INTERNAL, "audit: stat %s/%s: %s", log->dir,
	           AUDIT_LOG_FILE, strerror(errno));
	KMS_ENSURE((uint64_t)st.st_size >= from, KMS_FAILED_PRECONDITION,
	           "audit: %s/%s is %lld bytes, shorter than the %llu that %s names", log->dir,
	           AUDIT_LOG_FILE, (long long)st.st_size, (unsigned long long)from,
	           AUDIT_POSITION_FILE);
	*size = (size_t)((uint64_t)st.st_size - from);
	if (*size == 0)
		return KMS_OK;
	*all = malloc(*size);
	KMS_ENSURE(*all, KMS_INTERNAL, "audit: out of memory reading %zu bytes", *size);
	size_t got = 0;
	while (got < *size) {
		ssize_t r = pread(log->fd, *all + got, *size - got, (off_t)(from + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			free(*all);
			*all = NULL;
			return KMS_FAIL(KMS_INTERNAL, "audit: read %s/%s: %s", log->dir, AUDIT_LOG_FILE,
			                r < 0 ? strerror(errno) : "file shrank");
		}
		got += (size_t)r;
	}
	return KMS_OK;
}

/* Reads log.bin from record `from` (at byte from_offset) and indexes its
 * whole records; *scan is in the file's terms (indices and offsets from
 * the start). */
static kms_status scan_tail(audit_log *log, uint64_t from_offset, tlog_records_scan *scan)
{
	uint8_t *tail = NULL;
	size_t size = 0;
	scan_ctx sc = { .log = log, .base_offset = from_offset };
	KMS_GUARD(read_log_tail(log, from_offset, &tail, &size));
	uint64_t first = log->tree.size;
	kms_status status = tlog_records_scan_bytes(tail, size, index_visit, &sc, scan);
	free(tail);
	KMS_GUARD(status);
	scan->whole += first;
	scan->whole_bytes += from_offset;
	scan->after_offset += from_offset;
	return KMS_OK;
}

/* Cuts a torn tail (judge_tail said it is one). */
static kms_status cut_torn(audit_log *log, const tlog_records_scan *scan)
{
	struct stat st;
	KMS_ENSURE(fstat(log->fd, &st) == 0, KMS_INTERNAL, "audit: stat %s/%s: %s", log->dir,
	           AUDIT_LOG_FILE, strerror(errno));
	kms_log("warn", "audit: cut a torn record at the end of %s/%s: record %llu at byte "
	         "offset %llu (%s); %llu bytes after entry %llu were never acknowledged",
	         log->dir, AUDIT_LOG_FILE, (unsigned long long)scan->whole,
	         (unsigned long long)scan->whole_bytes, tlog_record_fault_text(scan->fault),
	         (unsigned long long)((uint64_t)st.st_size - scan->whole_bytes),
	         (unsigned long long)scan->whole);
	KMS_ENSURE(ftruncate(log->fd, (off_t)scan->whole_bytes) == 0 && fdatasync(log->fd) == 0,
	           KMS_INTERNAL, "audit: cannot cut the torn tail of %s/%s: %s", log->dir,
	           AUDIT_LOG_FILE, strerror(errno));
	return KMS_OK;
}

/* The record that ends at `offset` must be entry p - 1: its leaf hash (the
 * record's last 32 bytes) equals hash 255 of the full tile tile/0/<p/256-1>. */
static kms_status check_position(audit_log *log, uint64_t p, uint64_t offset)
{
	uint8_t tail[AUDIT_HASH_LEN], want[AUDIT_HASH_LEN];
	KMS_ENSURE(p % TLOG_TILE_WIDTH == 0 && p <= log->signed_size && offset >= p *
	                   (TLOG_RECORD_OVERHEAD + 1), KMS_FAILED_PRECONDITION,
	           "%s names size %llu at offset %llu, which the signed size %llu does not allow",
	           AUDIT_POSITION_FILE, (unsigned long long)p, (unsigned long long)offset,
	           (unsigned long long)log->signed_size);
	if (p == 0)
		return KMS_OK;
	KMS_ENSURE(pread(log->fd, tail, sizeof tail, (off_t)(offset - sizeof tail)) ==
	                   (ssize_t)sizeof tail, KMS_FAILED_PRECONDITION,
	           "%s names offset %llu, past the end of log.bin", AUDIT_POSITION_FILE,
	           (unsigned long long)offset);
	audit_tree probe;
	KMS_GUARD(audit_tree_init(&probe, log->public_dir));
	probe.size = probe.flushed = p; /* everything below p is on disk */
	kms_status st = audit_tree_reader(&probe, 0, p - 1, want);
	audit_tree_free(&probe);
	KMS_GUARD(st);
	KMS_ENSURE(tlog_hash_equal(tail, want), KMS_FAILED_PRECONDITION,
	           "the record before offset %llu of log.bin is not entry %llu of the tiles",
	           (unsigned long long)offset, (unsigned long long)(p - 1));
	return KMS_OK;
}

/* Resumes the tree at the point log.pos names, and reads only the records
 * after it. Nothing is cut here: a tail that does not check out makes the
 * caller read the whole file instead. */
static kms_status recover_from_position(audit_log *log, tlog_records_scan *scan)
{
	uint64_t p = 0, offset = 0;
	KMS_GUARD(audit_position_read(log, &p, &offset));
	KMS_GUARD(check_position(log, p, offset));
	KMS_GUARD(audit_tree_resume(&log->tree, p, offset));
	KMS_GUARD(scan_tail(log, offset, scan));
	KMS_ENSURE(scan->whole >= log->signed_size, KMS_FAILED_PRECONDITION,
	           "record %llu past %s is damaged", (unsigned long long)scan->whole,
	           AUDIT_POSITION_FILE);
	KMS_GUARD(check_signed_prefix(log));
	log->resumed_at = p;
	log->resumed_offset = offset;
	return KMS_OK;
}

/* Starts the tree again from nothing. */
static kms_status reset_tree(audit_log *log)
{
	audit_tree_free(&log->tree);
	log->open_scanned = 0;
	return audit_tree_init(&log->tree, log->public_dir);
}

/* Recovers log.bin: from log.pos when it checks out (the records before it
 * are then checked in the background), else from the start, as a log
 * written before log.pos existed. A bad record is cut only when it is a
 * torn tail (judge_tail); anything else stops kmsd. */
static kms_status recover(audit_log *log)
{
	tlog_records_scan scan;
	kms_status st = recover_from_position(log, &scan);
	if (st != KMS_OK) {
		if (st != KMS_NOT_FOUND)
			kms_log("warn", "audit: reading all of %s/%s: %s", log->dir, AUDIT_LOG_FILE,
			         kms_error_message());
		KMS_GUARD(reset_tree(log));
		log->resumed_at = 0;
		log->resumed_offset = 0;
		KMS_GUARD(scan_tail(log, 0, &scan));
		if (scan.fault != TLOG_RECORD_WHOLE)
			KMS_GUARD(judge_tail(log, &scan));
		KMS_GUARD(check_signed_prefix(log));
	} else if (scan.fault != TLOG_RECORD_WHOLE) {
		KMS_GUARD(judge_tail(log, &scan));
	}
	if (scan.fault != TLOG_RECORD_WHOLE)
		KMS_GUARD(cut_torn(log, &scan));
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
	if (log->no_reserve)
		return KMS_OK; /* the file system cannot: said once, below */
	/* Blocks already allocated past the end (by an earlier batch's
	 * allocation ahead) are room enough: no system call. */
	if (log->allocated_to >= log->durable_bytes + (uint64_t)want)
		return KMS_OK;
	/* Ahead by AUDIT_ALLOCATE_AHEAD, so that most batches need no call;
	 * if the disk has not that much, exactly what this batch needs. */
	if (fallocate(log->fd, FALLOC_FL_KEEP_SIZE, (off_t)log->durable_bytes,
	              want + (off_t)AUDIT_ALLOCATE_AHEAD) == 0) {
		log->allocated_to = log->durable_bytes + (uint64_t)want + AUDIT_ALLOCATE_AHEAD;
		return KMS_OK;
	}
	if (fallocate(log->fd, FALLOC_FL_KEEP_SIZE, (off_t)log->durable_bytes, want) == 0) {
		log->allocated_to = log->durable_bytes + (uint64_t)want;
		return KMS_OK;
	}
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

/* The hot tiles hold at most AUDIT_HOT_MAX leaf hashes: when a batch would
 * pass that, the writer publishes first (which writes the full tiles and
 * lets them go), so memory stays bounded whatever the publisher's clock.
 * A publication that fails fails the batch: nothing is written. */
static kms_status make_room(audit_log *log, size_t n)
{
	pthread_rwlock_rdlock(&log->tree_lock);
	bool room = audit_tree_has_room(&log->tree, n);
	pthread_rwlock_unlock(&log->tree_lock);
	if (room)
		return KMS_OK;
	/* A fleet's copy signs nothing here: the lease holder signs. */
	kms_status st = log->fleet ? audit_publish_tiles(log) : audit_publish(log);
	if (st != KMS_OK)
		return KMS_FAIL(KMS_UNAVAILABLE, "the log's tiles cannot be published: %s",
		                kms_error_message());
	pthread_rwlock_rdlock(&log->tree_lock);
	room = audit_tree_has_room(&log->tree, n);
	pthread_rwlock_unlock(&log->tree_lock);
	KMS_ENSURE(room, KMS_UNAVAILABLE, "no room for %zu entries in memory", n);
	return KMS_OK;
}

/* fdatasync of log.bin, timed for /metrics (kms_audit_fsync_duration_seconds). */
static kms_status sync_batch(audit_log *log)
{
	uint64_t started = kms_monotonic_us();
	int rc = fdatasync(log->fd);
	int err = errno;
	kms_hist_observe(&log->fsync_us, KMS_HIST_MICROSECONDS, kms_monotonic_us() - started);
	KMS_ENSURE(rc == 0, KMS_UNAVAILABLE, "fdatasync %s/%s: %s", log->dir, AUDIT_LOG_FILE,
	           strerror(err));
	return KMS_OK;
}

/* Writes one batch and makes it durable. On failure the file is cut back to
 * what was durable before, so a later batch starts clean. */
static kms_status write_batch(audit_log *log, audit_waiter *const *batch, size_t n,
                              bool outcomes_only, bool sync)
{
	KMS_GUARD(make_room(log, n));
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
	if (st == KMS_OK && sync)
		st = sync_batch(log);
	if (st != KMS_OK) {
		/* Nothing of this batch counts: cut it off again. */
		log->allocated_to = 0; /* the cut freed the blocks allocated ahead */
		if (ftruncate(log->fd, (off_t)log->durable_bytes) != 0)
			kms_log("error", "audit: cannot cut a failed batch off %s/%s: %s", log->dir,
			         AUDIT_LOG_FILE, strerror(errno));
		goto out;
	}
	pthread_rwlock_wrlock(&log->tree_lock);
	uint64_t offset = log->durable_bytes;
	for (size_t i = 0; i < n && st == KMS_OK; i++) {
		uint64_t len = AUDIT_RECORD_LEN_BYTES + batch[i]->len + AUDIT_HASH_LEN;
		st = audit_tree_append(&log->tree, hashes[i], offset, len);
		offset += len;
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
	if (log->fleet) {
		/* Durable in the fleet's database; log.bin gets them numbered,
		 * from there (audit_append_numbered). */
		kms_status st = audit_fleet_submit(log, batch, n);
		for (size_t i = 0; i < n; i++)
			batch[i]->written = st == KMS_OK;
		return st;
	}
	size_t outcomes = 0;
	for (size_t i = 0; i < n; i++)
		if (batch[i]->outcome) {
			audit_waiter *w = batch[outcomes];
			batch[outcomes++] = batch[i];
			batch[i] = w;
		}
	kms_status st = KMS_OK, rest = KMS_OK;
	if (outcomes)
		st = write_batch(log, batch, outcomes, true, log->sync);
	for (size_t i = 0; i < outcomes; i++)
		batch[i]->written = st == KMS_OK;
	if (n > outcomes)
		rest = write_batch(log, batch + outcomes, n - outcomes, false, log->sync);
	for (size_t i = outcomes; i < n; i++)
		batch[i]->written = rest == KMS_OK;
	return st != KMS_OK ? st : rest;
}

kms_status audit_append_numbered(audit_log *log, uint64_t first, const char *const *entries,
                                 const size_t *lens, size_t n)
{
	KMS_ENSURE(first == audit_size(log), KMS_INTERNAL,
	           "audit: fleet entry %llu follows entry %llu of this copy",
	           (unsigned long long)first, (unsigned long long)audit_size(log));
	audit_waiter *ws = calloc(n ? n : 1, sizeof *ws);
	audit_waiter **batch = calloc(n ? n : 1, sizeof *batch);
	kms_status st = KMS_OK;
	if (!ws || !batch) {
		st = KMS_FAIL(KMS_UNAVAILABLE, "audit: out of memory for %zu fleet entries", n);
	} else {
		for (size_t i = 0; i < n; i++) {
			ws[i] = (audit_waiter){ .entry = entries[i], .len = lens[i] };
			batch[i] = &ws[i];
		}
		/* No room is kept for outcomes in a copy, and no fdatasync per
		 * batch: the fleet's database holds the entries already.
		 * audit_copy_sync makes the copy durable before a checkpoint
		 * covers it. */
		st = write_batch(log, batch, n, true, false);
		if (st == KMS_OK)
			log->copy_unsynced = true;
	}
	free(ws);
	free(batch);
	return st;
}

kms_status audit_copy_sync(audit_log *log)
{
	if (!log->copy_unsynced || !log->sync)
		return KMS_OK;
	KMS_GUARD(sync_batch(log));
	log->copy_unsynced = false;
	return KMS_OK;
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

		kms_hist_observe(&log->batch_entries, KMS_HIST_COUNT, n);
		kms_status st = write_split(log, batch, n);
		char why[200] = "";
		if (st != KMS_OK) {
			snprintf(why, sizeof why, "%s", kms_error_message());
			kms_log("error", "audit: %zu entries not written, their requests fail: %s (%s)",
			        n, why, kms_error_where());
		}

		/* The asynchronous appenders first, without the lock: each
		 * completes its request (a reply on its way) as soon as its
		 * entry is durable. A waiter is freed by the callback's return. */
		for (size_t i = 0; i < n; i++) {
			audit_waiter *w = batch[i];
			if (!w->done)
				continue;
			if (w->written && w->duplicate && w->record)
				kms_log("warn", "audit: request %s of %s ran on two replicas at once "
				        "(sent again while its first run was being recorded): both "
				        "runs are in the audit log", w->record->request_id,
				        w->record->principal);
			w->done(w->done_arg, w->written ? KMS_OK : KMS_UNAVAILABLE, why);
			store_request_record_drop(w->record);
			kms_wipe(w, sizeof *w + w->len);
			free(w);
			batch[i] = NULL;
		}

		pthread_mutex_lock(&log->lock);
		/* Wake exactly the blocking appenders of this batch, not every waiter. */
		for (size_t i = 0; i < n; i++) {
			if (!batch[i])
				continue;
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
		/* audit_close may have set stop and broadcast while the lock
		 * was free: waiting now would miss it for a whole interval. */
		if (log->stop)
			break;
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
	if (log->damaged) {
		pthread_mutex_unlock(&log->lock);
		pthread_cond_destroy(&me.settled);
		return KMS_FAIL(KMS_UNAVAILABLE, "audit log.bin is damaged: the request was not "
		                "answered; see kmsd's log");
	}
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

bool audit_is_fleet(const audit_log *log)
{
	return log && log->fleet;
}

kms_status audit_append_async(audit_log *log, const char *entry, size_t len, bool outcome,
                              audit_done_fn done, void *arg)
{
	return audit_append_recorded(log, entry, len, outcome, NULL, done, arg);
}

kms_status audit_append_recorded(audit_log *log, const char *entry, size_t len, bool outcome,
                                 store_request_record *record, audit_done_fn done, void *arg)
{
	if (record && !log->fleet) {
		store_request_record_drop(record);
		record = NULL;
	}
	if (len < 1 || len > UINT16_MAX || !done) {
		store_request_record_drop(record);
		return KMS_FAIL(KMS_INTERNAL, "audit: entry of %zu bytes", len);
	}
	audit_waiter *w = malloc(sizeof *w + len);
	if (!w) {
		store_request_record_drop(record);
		return KMS_FAIL(KMS_UNAVAILABLE, "audit: out of memory queueing an entry of %zu "
		                "bytes", len);
	}
	memcpy(w + 1, entry, len);
	*w = (audit_waiter){ .entry = (const char *)(w + 1), .len = len, .outcome = outcome,
	                     .state = AUDIT_PENDING, .done = done, .done_arg = arg,
	                     .record = record };
	pthread_mutex_lock(&log->lock);
	while (log->n_queued == AUDIT_QUEUE_MAX && !log->stop)
		pthread_cond_wait(&log->room, &log->lock);
	kms_status st = KMS_OK;
	if (log->damaged)
		st = KMS_FAIL(KMS_UNAVAILABLE, "audit log.bin is damaged: the request was not "
		              "answered; see kmsd's log");
	else if (log->stop)
		st = KMS_FAIL(KMS_UNAVAILABLE, "audit log is closing");
	else {
		log->queue[log->n_queued++] = w;
		pthread_cond_signal(&log->queued);
	}
	pthread_mutex_unlock(&log->lock);
	if (st != KMS_OK) {
		store_request_record_drop(w->record);
		kms_wipe(w, sizeof *w + len);
		free(w);
	}
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
	bool ok = log->healthy && !log->damaged;
	if (!ok && why)
		snprintf(why, why_cap, "%s", log->damaged ? log->damage : log->why);
	pthread_mutex_unlock(&log->lock);
	return ok;
}

void audit_get_stats(audit_log *log, audit_stats *out)
{
	audit_memory m;
	pthread_rwlock_rdlock(&log->tree_lock);
	audit_tree_memory(&log->tree, &m);
	pthread_rwlock_unlock(&log->tree_lock);
	memset(out, 0, sizeof *out);
	out->tree_bytes = m.tree_bytes;
	out->cache_bytes = m.cache_bytes;
	out->cache_tiles = m.cache_tiles;
	out->hot_entries = m.hot_entries;
	out->tiles_read = m.tiles_read;
	out->open_scanned = log->open_scanned;
	out->resumed_at = log->resumed_at;
	pthread_mutex_lock(&log->lock);
	out->scrubbed = log->scrubbed;
	out->scrub_done = log->scrub_done;
	out->damaged = log->damaged;
	out->queued = log->n_queued;
	out->checkpoint_size = log->checkpoint_size;
	uint64_t now_ms = kms_monotonic_us() / 1000;
	out->checkpoint_age_ms = log->signed_at_ms && now_ms > log->signed_at_ms
	                                 ? now_ms - log->signed_at_ms
	                                 : 0;
	out->checkpoint_signed = log->signed_at_ms != 0;
	out->fleet = log->fleet != NULL;
	out->sequencer = log->sequencer;
	out->lease_epoch = log->lease_epoch;
	out->fleet_sequenced = log->fleet_sequenced;
	pthread_mutex_unlock(&log->lock);
	kms_hist_read(&log->batch_entries, &out->batch_entries);
	kms_hist_read(&log->fsync_us, &out->fsync_us);
}

bool audit_scrub_wait(audit_log *log, unsigned timeout_ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)(timeout_ms / 1000);
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&log->lock);
	while (!log->scrub_done) {
		if (pthread_cond_timedwait(&log->scrub_settled, &log->lock, &until) != 0)
			break;
	}
	bool done = log->scrub_done;
	pthread_mutex_unlock(&log->lock);
	return done;
}

uint64_t audit_size(audit_log *log)
{
	pthread_rwlock_rdlock(&log->tree_lock);
	uint64_t n = log->tree.size;
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
	/* A replica that started on no copy has none until its copy reaches
	 * the fleet's signed size. */
	KMS_ENSURE(*note, KMS_UNAVAILABLE, "audit: no checkpoint yet: this kmsd's copy of the log "
	           "has not reached a signed size; retry shortly");
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
	if (*tree_size > log->tree.size || index >= *tree_size)
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "audit: no entry %llu in a tree of %llu",
		              (unsigned long long)index, (unsigned long long)*tree_size);
	if (st == KMS_OK)
		st = tlog_inclusion_proof(audit_tree_reader, &log->tree, *tree_size, index, proof, n);
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
	if (*new_size > log->tree.size || old_size > *new_size)
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "audit: no consistency proof from %llu to %llu",
		              (unsigned long long)old_size, (unsigned long long)*new_size);
	if (st == KMS_OK)
		st = tlog_consistency_proof(audit_tree_reader, &log->tree, old_size, *new_size, proof, n);
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
	pthread_mutex_init(&log->publish_lock, NULL);
	pthread_mutex_init(&log->watch_lock, NULL);
	pthread_cond_init(&log->scrub_settled, NULL);
	pthread_cond_init(&log->fleet_wake, NULL);
	log->fleet = cfg->fleet;
	log->lease_ms = cfg->fleet_lease_ms ? cfg->fleet_lease_ms : AUDIT_FLEET_LEASE_MS;
	log->hsm = cfg->hsm;
	log->on_damage = cfg->on_damage;
	log->damage_ctx = cfg->damage_ctx;
	log->sync = cfg->sync;
	log->healthy = true;
	log->checkpoint_ms = cfg->checkpoint_ms ? cfg->checkpoint_ms : 1000;
	snprintf(log->dir, sizeof log->dir, "%s", cfg->dir);
	snprintf(log->public_dir, sizeof log->public_dir, "%s/%s", cfg->dir, AUDIT_PUBLIC_DIR);
	snprintf(log->origin, sizeof log->origin, "%s", cfg->origin);
	if (audit_tree_init(&log->tree, log->public_dir) != KMS_OK) {
		st = KMS_FAIL(KMS_INTERNAL, "audit: out of memory for the tree");
		goto out;
	}

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
	log->published_size = log->tree.flushed; /* the files below are on disk */
	if (log->fleet)
		KMS_GUARD_OUT(st, audit_fleet_check(log)); /* the lease holder signs */
	else
		KMS_GUARD_OUT(st, audit_publish(log));
	if (pthread_create(&log->scrubber, NULL, audit_scrub_main, log) != 0) {
		st = KMS_FAIL(KMS_INTERNAL, "audit: cannot start the log.bin check");
		goto out;
	}
	log->scrubber_started = true;
	if (pthread_create(&log->writer, NULL, writer_main, log) != 0) {
		st = KMS_FAIL(KMS_INTERNAL, "audit: cannot start the writer thread");
		goto out;
	}
	log->writer_started = true;
	if (log->fleet) {
		if (pthread_create(&log->fleet_thread, NULL, audit_fleet_main, log) != 0) {
			st = KMS_FAIL(KMS_INTERNAL, "audit: cannot start the fleet log's thread");
			goto out;
		}
		log->fleet_started = true;
	} else if (pthread_create(&log->publisher, NULL, publisher_main, log) != 0) {
		st = KMS_FAIL(KMS_INTERNAL, "audit: cannot start the publisher thread");
		goto out;
	} else {
		log->publisher_started = true;
	}
	kms_log("info", "audit: %llu entries in %s (resumed at %llu, %llu records read), origin "
	         "%s, verifier key %s", (unsigned long long)log->tree.size, path,
	         (unsigned long long)log->resumed_at, (unsigned long long)log->open_scanned,
	         log->origin, log->verifier_key);
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
	if (log->writer_started || log->publisher_started || log->scrubber_started ||
	    log->fleet_started) {
		pthread_mutex_lock(&log->lock);
		log->stop = true;
		pthread_cond_broadcast(&log->queued);
		pthread_cond_broadcast(&log->room);
		pthread_cond_broadcast(&log->publish_wake);
		pthread_cond_broadcast(&log->fleet_wake);
		pthread_mutex_unlock(&log->lock);
		if (log->scrubber_started)
			pthread_join(log->scrubber, NULL);
		if (log->publisher_started)
			pthread_join(log->publisher, NULL);
		if (log->writer_started)
			pthread_join(log->writer, NULL);
		if (log->fleet_started) {
			pthread_join(log->fleet_thread, NULL);
			audit_fleet_release(log);
		}
		if (!log->fleet && log->writer_started && log->tree.size != log->published_size &&
		    audit_publish(log) != KMS_OK)
			kms_log("error", "audit: final checkpoint: %s (%s)", kms_error_message(),
			        kms_error_where());
	}
	if (log->fd >= 0)
		close(log->fd);
	audit_tree_free(&log->tree);
	free(log->checkpoint);
	pthread_mutex_destroy(&log->publish_lock);
	pthread_mutex_destroy(&log->watch_lock);
	free(log->watch);
	free(log->side);
	pthread_cond_destroy(&log->scrub_settled);
	pthread_rwlock_destroy(&log->tree_lock);
	pthread_cond_destroy(&log->queued);
	pthread_cond_destroy(&log->room);
	pthread_cond_destroy(&log->publish_wake);
	pthread_cond_destroy(&log->fleet_wake);
	pthread_mutex_destroy(&log->lock);
	free(log);
}
