/*
 * audit_scrub.c: the background check of log.bin below the point start-up
 * resumed from (docs/audit-log.md, "Memory and start-up").
 *
 * audit_open reads only the records past the last whole tile of the signed
 * checkpoint; the records before them are checked here, after kmsd has
 * started, in bounded memory: each must be whole, its leaf hash the hash of
 * its entry and equal to the leaf hash in the full level-0 tile on disk
 * (which the signed root covers), and they must end exactly where log.pos
 * says the next one starts. Damage is what it was at start-up: one line
 * naming the record and its offset; the log then refuses every entry and
 * on_damage stops kmsd.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "kms/audit/audit_internal.h"

#define SCRUB_CHUNK (1u << 20)
#define SCRUB_BUF (SCRUB_CHUNK + TLOG_RECORD_OVERHEAD + TLOG_ENTRY_MAX)
#define REPAIR_HINT "stop kmsd and run 'kms-admin audit repair DATA_DIR/audit' (docs/audit-log.md)"

typedef struct scrub {
	audit_log *log;
	uint64_t end;          /* offset where record `count` starts */
	uint64_t count;        /* records to check */
	uint8_t *buf;
	uint64_t buf_off;      /* file offset of buf[0] */
	size_t buf_len;
	uint8_t (*tile)[TLOG_HASH_SIZE];
	char tile_path[TLOG_TILE_PATH_MAX];
} scrub;

/* Makes buf hold [at, at + need) of log.bin, up to the end of the checked
 * part; false when the file ends first. */
static bool have(scrub *s, uint64_t at, size_t need)
{
	if (at >= s->buf_off && at + need <= s->buf_off + s->buf_len)
		return true;
	if (at + need > s->end)
		return false;
	size_t want = SCRUB_CHUNK > need ? SCRUB_CHUNK : need;
	if (at + want > s->end)
		want = (size_t)(s->end - at);
	size_t got = 0;
	while (got < want) {
		ssize_t r = pread(s->log->fd, s->buf + got, want - got, (off_t)(at + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	s->buf_off = at;
	s->buf_len = got;
	return got >= need;
}

static kms_status load_tile(scrub *s, uint64_t k)
{
	uint8_t *bytes = NULL;
	size_t len = 0;
	KMS_GUARD(tlog_tile_path(0, k, TLOG_TILE_WIDTH, s->tile_path));
	KMS_GUARD(tlog_file_read(s->log->public_dir, s->tile_path, TLOG_TILE_BYTES, &bytes, &len));
	if (len != TLOG_TILE_BYTES) {
		free(bytes);
		return KMS_FAIL(KMS_FAILED_PRECONDITION, "public/%s: %zu bytes, expected %u",
		                s->tile_path, len, TLOG_TILE_BYTES);
	}
	memcpy(s->tile, bytes, TLOG_TILE_BYTES);
	free(bytes);
	return KMS_OK;
}

/* One line into damage[], or KMS_OK when record i at `at` is whole and is
 * the tiles' entry i; *next is where the record after it starts. */
static kms_status check_record(scrub *s, uint64_t i, uint64_t at, uint64_t *next,
                               char *damage, size_t cap)
{
	const char *fault = NULL;
	uint8_t hash[TLOG_HASH_SIZE];
	size_t len = 0;
	if (!have(s, at, TLOG_ENTRY_LENGTH_SIZE)) {
		fault = tlog_record_fault_text(TLOG_RECORD_SHORT);
	} else {
		const uint8_t *p = s->buf + (at - s->buf_off);
		len = ((size_t)p[0] << 8) | p[1];
		if (len == 0)
			fault = tlog_record_fault_text(TLOG_RECORD_EMPTY);
		else if (!have(s, at, TLOG_RECORD_OVERHEAD + len))
			fault = tlog_record_fault_text(TLOG_RECORD_SHORT);
	}
	if (!fault) {
		const uint8_t *p = s->buf + (at - s->buf_off);
		KMS_GUARD(tlog_leaf_hash(p + TLOG_ENTRY_LENGTH_SIZE, len, hash));
		if (!tlog_hash_equal(hash, p + TLOG_ENTRY_LENGTH_SIZE + len))
			fault = tlog_record_fault_text(TLOG_RECORD_HASH);
	}
	if (!fault) {
		if (i % TLOG_TILE_WIDTH == 0)
			KMS_GUARD(load_tile(s, i / TLOG_TILE_WIDTH));
		if (!tlog_hash_equal(hash, s->tile[i % TLOG_TILE_WIDTH]))
			fault = "it is not the entry of the signed tree";
	}
	if (fault) {
		snprintf(damage, cap, "audit: log.bin record %llu at offset %llu is damaged (%s), "
		         "below the signed checkpoint: " REPAIR_HINT, (unsigned long long)i,
		         (unsigned long long)at, fault);
		return KMS_FAILED_PRECONDITION;
	}
	*next = at + TLOG_RECORD_OVERHEAD + len;
	return KMS_OK;
}

static bool stopping(audit_log *log, uint64_t done)
{
	pthread_mutex_lock(&log->lock);
	log->scrubbed = done;
	bool stop = log->stop;
	pthread_mutex_unlock(&log->lock);
	return stop;
}

/* Whether the check went to the end (it stops early when the log closes). */
static bool checked_all(audit_log *log, uint64_t count)
{
	pthread_mutex_lock(&log->lock);
	bool all = log->scrubbed == count;
	pthread_mutex_unlock(&log->lock);
	return all;
}

/* Checks every record; damage[] says what was wrong. */
static kms_status scrub_all(scrub *s, char *damage, size_t cap)
{
	uint64_t at = 0;
	for (uint64_t i = 0; i < s->count; i++) {
		if (i % TLOG_TILE_WIDTH == 0 && stopping(s->log, i))
			return KMS_OK;
		kms_status st = check_record(s, i, at, &at, damage, cap);
		if (st == KMS_FAILED_PRECONDITION && damage[0])
			return st;
		if (st != KMS_OK) {
			snprintf(damage, cap, "audit: checking log.bin record %llu against public/: %s: "
			         "restore public/ from a mirror (docs/audit-log.md)", (unsigned long long)i,
			         kms_error_message());
			return st;
		}
	}
	(void)stopping(s->log, s->count);
	if (at != s->end) {
		snprintf(damage, cap, "audit: log.bin record %llu does not start at offset %llu, where "
		         "%s says: " REPAIR_HINT, (unsigned long long)s->count,
		         (unsigned long long)s->end, AUDIT_POSITION_FILE);
		return KMS_FAILED_PRECONDITION;
	}
	return KMS_OK;
}

void audit_report_damage(audit_log *log, const char *damage)
{
	kms_log("fatal", "%s", damage);
	pthread_mutex_lock(&log->lock);
	log->damaged = true;
	snprintf(log->damage, sizeof log->damage, "%s", damage);
	pthread_mutex_unlock(&log->lock);
	if (log->on_damage)
		log->on_damage(log->damage_ctx);
}

void *audit_scrub_main(void *arg)
{
	audit_log *log = arg;
	char damage[sizeof log->damage] = "";
	scrub s = { .log = log, .end = log->resumed_offset, .count = log->resumed_at };
	uint64_t began_us = kms_monotonic_us();
	s.buf = malloc(SCRUB_BUF);
	s.tile = malloc(TLOG_TILE_BYTES);
	kms_status st = KMS_OK;
	if (!s.buf || !s.tile)
		kms_log("error", "audit: out of memory to check log.bin below record %llu",
		         (unsigned long long)s.count);
	else if (s.count > 0)
		st = scrub_all(&s, damage, sizeof damage);
	if (st == KMS_OK && s.buf && s.tile && checked_all(log, s.count))
		kms_log("info", "audit: checked the %llu records of log.bin below the resume point "
		         "in %llu ms", (unsigned long long)s.count,
		         (unsigned long long)((kms_monotonic_us() - began_us) / 1000));
	free(s.buf);
	free(s.tile);
	if (st != KMS_OK)
		audit_report_damage(log, damage);
	pthread_mutex_lock(&log->lock);
	log->scrub_done = true;
	pthread_cond_broadcast(&log->scrub_settled);
	pthread_mutex_unlock(&log->lock);
	return NULL;
}
