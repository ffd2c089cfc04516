/*
 * audit_fleet.c: one audit log for a fleet of kmsd replicas on a shared
 * store (docs/scale-out.md, "One audit log for the fleet").
 *
 * - Every replica's writer thread puts each batch of entries into the
 *   store's audit_pending in one transaction; its requests are answered
 *   once that commits (audit_fleet_submit).
 * - One replica at a time holds the sequencer's lease (a row with a holder,
 *   an epoch and an expiry; renewed every quarter of its term). The holder
 *   moves pending entries to audit_entries, numbered, each move one
 *   transaction that checks the lease is still its own at its epoch; and it
 *   signs the checkpoints and publishes each in the store.
 * - Every replica (the holder too) copies the numbered entries, in order,
 *   into its own log.bin and tiles, takes the holder's checkpoint once its
 *   copy reaches that size and names the same root there, and serves the
 *   log from its copy.
 *
 * When the holder dies its lease expires; another replica takes it (a new
 * epoch) and goes on numbering where the table ends. A holder that was
 * only slow finds the epoch moved and stops. The log stays one sequence:
 * numbers are given in the database, one transaction at a time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "common/log.h"
#include "kms/audit/audit_internal.h"
#include "kms/store/store.h"

#define FLEET_BATCH 1024             /* entries numbered or copied at a time */
#define FLEET_COPY_BYTES (1u << 20)  /* bytes copied into log.bin at a time */
#define FLEET_POLL_MS 20             /* how often an idle replica looks */
#define FLEET_EXPIRE_MS 10000        /* how often the holder drops old request records */

/* ---- submitting ---- */

/* ---- its own entries, watched until numbered ----
 *
 * The database's owner (or a restore) could remove an entry from
 * audit_pending before the lease holder numbers it: no copy has read it,
 * so the checks on the numbered log cannot see it. So each replica keeps
 * the pending id and leaf hash of every entry it added, oldest first, and
 * drops each when its copy takes the same entry from the numbered log
 * (entries are numbered in pending-id order, so a replica's own come in
 * the order it added them). When the oldest has left audit_pending (the
 * lowest id waiting is above it, read in the same snapshot as the count of
 * numbered entries) and the copy has reached that count without it, the
 * entry was removed: kmsd stops. Entries added before kmsd started are
 * not watched. */

#define WATCH_MAX (1u << 18) /* entries watched at most (10 MiB) */
#define WATCH_ID_UNKNOWN INT64_MAX /* added, its commit not yet returned */

/* Adds one entry (its id not known yet: the writer adds its batch before
 * the commit, so that the copy cannot take one of them before it is
 * watched). False when the ring is full. watch_lock held. */
static bool watch_push(audit_log *log, const uint8_t leaf[AUDIT_HASH_LEN])
{
	if (log->watch_n == log->watch_cap) {
		size_t cap = log->watch_cap ? log->watch_cap * 2 : 1024;
		audit_watched *w = cap <= WATCH_MAX ? malloc(cap * sizeof *w) : NULL;
		if (!w) {
			if (!log->watch_dropped)
				kms_log("warn", "audit: %zu of this replica's entries wait to be "
				        "numbered; later ones are not watched until they are",
				        log->watch_n);
			log->watch_dropped = true;
			return false;
		}
		for (size_t i = 0; i < log->watch_n; i++)
			w[i] = log->watch[(log->watch_head + i) % log->watch_cap];
		free(log->watch);
		log->watch = w;
		log->watch_cap = cap;
		log->watch_head = 0;
	}
	audit_watched *slot = &log->watch[(log->watch_head + log->watch_n) % log->watch_cap];
	slot->id = WATCH_ID_UNKNOWN;
	memcpy(slot->leaf, leaf, AUDIT_HASH_LEN);
	log->watch_n++;
	return true;
}

/* The copy took this entry from the numbered log: the oldest watched, if
 * it is that one. */
static void watch_seen(audit_log *log, const uint8_t *entry, size_t len)
{
	pthread_mutex_lock(&log->watch_lock);
	bool any = log->watch_n > 0 || log->side_n > 0;
	pthread_mutex_unlock(&log->watch_lock);
	if (!any)
		return;
	uint8_t leaf[AUDIT_HASH_LEN];
	if (tlog_leaf_hash(entry, len, leaf) != KMS_OK) {
		kms_error_clear();
		return;
	}
	pthread_mutex_lock(&log->watch_lock);
	if (log->watch_n > 0 &&
	    tlog_hash_equal(log->watch[log->watch_head].leaf, leaf)) {
		log->watch_head = (log->watch_head + 1) % log->watch_cap;
		log->watch_n--;
		log->watch_taken++;
		if (log->watch_n == 0)
			log->watch_dropped = false;
	} else {
		for (size_t i = 0; log->side_n > 0 && i < AUDIT_WATCH_SIDE; i++)
			if (log->side[i].used && tlog_hash_equal(log->side[i].leaf, leaf)) {
				log->side[i].used = false;
				log->side_n--;
				break;
			}
	}
	pthread_mutex_unlock(&log->watch_lock);
}

void audit_watch_add(audit_log *log, const char *entry, size_t len, uint64_t *token)
{
	*token = 0;
	uint8_t leaf[AUDIT_HASH_LEN];
	if (!log || !log->fleet || tlog_leaf_hash((const uint8_t *)entry, len, leaf) != KMS_OK) {
		kms_error_clear();
		return;
	}
	pthread_mutex_lock(&log->watch_lock);
	if (!log->side)
		log->side = calloc(AUDIT_WATCH_SIDE, sizeof *log->side);
	for (size_t i = 0; log->side && i < AUDIT_WATCH_SIDE; i++)
		if (!log->side[i].used) {
			/* The token names the slot (low 8 bits) and this use of it. */
			uint64_t t = (++log->side_added << 8) | i;
			log->side[i] = (audit_watched){ .id = WATCH_ID_UNKNOWN, .used = true,
			                                .token = t };
			memcpy(log->side[i].leaf, leaf, AUDIT_HASH_LEN);
			log->side_n++;
			*token = t;
			break;
		}
	pthread_mutex_unlock(&log->watch_lock);
}

void audit_watch_settled(audit_log *log, uint64_t token, bool committed, int64_t id)
{
	size_t slot = (size_t)(token & 0xff);
	if (!log || !token || slot >= AUDIT_WATCH_SIDE)
		return;
	pthread_mutex_lock(&log->watch_lock);
	/* Not this entry's any more: the copy took it already. */
	if (log->side && log->side[slot].used && log->side[slot].token == token) {
		if (committed) {
			log->side[slot].id = id;
		} else {
			log->side[slot].used = false;
			log->side_n--;
		}
	}
	pthread_mutex_unlock(&log->watch_lock);
}

/* The lowest pending id among the entries watched whose commit returned
 * (0: none); *in_flight when one's commit has not returned yet: its id,
 * taken from the sequence before the lowest was seen to leave
 * audit_pending, may be lower. watch_lock held. */
static int64_t watch_oldest(const audit_log *log, bool *in_flight)
{
	int64_t oldest = 0;
	*in_flight = false;
	if (log->watch_n > 0) { /* the ring's own are in id order */
		int64_t id = log->watch[log->watch_head].id;
		if (id == WATCH_ID_UNKNOWN)
			*in_flight = true;
		else
			oldest = id;
	}
	for (size_t i = 0; log->side_n > 0 && i < AUDIT_WATCH_SIDE; i++) {
		if (!log->side[i].used)
			continue;
		if (log->side[i].id == WATCH_ID_UNKNOWN)
			*in_flight = true;
		else if (oldest == 0 || log->side[i].id < oldest)
			oldest = log->side[i].id;
	}
	return oldest;
}

/* A batch's entries into the ring before its commit: *first is the first
 * one's number (counted over all entries ever watched), *added how many
 * went in. */
static void watch_batch_begin(audit_log *log, const char *const *entries, const size_t *lens,
                              size_t n, uint64_t *first, size_t *added)
{
	*added = 0;
	pthread_mutex_lock(&log->watch_lock);
	*first = log->watch_taken + log->watch_n;
	for (size_t i = 0; i < n; i++) {
		uint8_t leaf[AUDIT_HASH_LEN];
		if (tlog_leaf_hash((const uint8_t *)entries[i], lens[i], leaf) != KMS_OK) {
			kms_error_clear();
			break;
		}
		if (!watch_push(log, leaf))
			break;
		(*added)++;
	}
	pthread_mutex_unlock(&log->watch_lock);
}

/* After the commit: their ids; or, when it failed, they leave the ring
 * (nothing of theirs is in the database: none was taken). */
static void watch_batch_end(audit_log *log, uint64_t first, size_t added, const int64_t *ids,
                            bool committed)
{
	pthread_mutex_lock(&log->watch_lock);
	if (committed) {
		for (size_t i = 0; i < added; i++) {
			uint64_t a = first + i;
			if (a < log->watch_taken)
				continue; /* already taken by the copy */
			size_t at = (log->watch_head + (size_t)(a - log->watch_taken)) % log->watch_cap;
			log->watch[at].id = ids[i];
		}
	} else {
		log->watch_n = log->watch_n >= added ? log->watch_n - added : 0;
	}
	pthread_mutex_unlock(&log->watch_lock);
}

kms_status audit_fleet_submit(audit_log *log, audit_waiter *const *batch, size_t n)
{
	const char **entries = malloc(n * sizeof *entries);
	size_t *lens = malloc(n * sizeof *lens);
	const store_request_record **records = calloc(n, sizeof *records);
	bool *dup = calloc(n, sizeof *dup);
	int64_t *ids = calloc(n, sizeof *ids);
	kms_status st = KMS_OK;
	if (!entries || !lens || !records || !dup || !ids) {
		st = KMS_FAIL(KMS_UNAVAILABLE, "out of memory for a batch of %zu entries", n);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		entries[i] = batch[i]->entry;
		lens[i] = batch[i]->len;
		records[i] = batch[i]->record;
	}
	uint64_t first = 0;
	size_t watched = 0;
	watch_batch_begin(log, entries, lens, n, &first, &watched);
	/* A serialization failure is retried a few times: an insert alone
	 * rarely meets one. */
	for (int attempt = 0;; attempt++) {
		uint64_t conflicts = store_thread_conflicts();
		st = store_audit_submit(log->fleet, entries, lens, records, dup, ids, n);
		if (st == KMS_OK || store_thread_conflicts() == conflicts || attempt == 4)
			break;
		kms_error_clear();
	}
	watch_batch_end(log, first, watched, ids, st == KMS_OK);
	if (st != KMS_OK)
		st = KMS_FAIL(KMS_UNAVAILABLE, "the fleet's audit table cannot be written: %s",
		              kms_error_message());
	for (size_t i = 0; i < n && st == KMS_OK; i++)
		batch[i]->duplicate = dup[i];
out:
	free(entries);
	free(lens);
	free(records);
	free(dup);
	free(ids);
	return st;
}

/* ---- the checks at open ---- */

typedef struct one_entry {
	uint8_t hash[AUDIT_HASH_LEN];
	bool seen;
} one_entry;

static kms_status hash_one(void *ctx, uint64_t seq, const uint8_t *entry, size_t len)
{
	one_entry *o = ctx;
	(void)seq;
	o->seen = true;
	return tlog_leaf_hash(entry, len, o->hash);
}

/* Whether the fleet's entry k - 1 is this copy's entry k - 1 (k <= the
 * copy's size; true for k = 0). */
static kms_status same_entry_before(audit_log *log, uint64_t k, bool *same)
{
	*same = true;
	if (k == 0)
		return KMS_OK;
	one_entry o = { .seen = false };
	uint8_t mine[AUDIT_HASH_LEN];
	size_t n = 0;
	KMS_GUARD(store_audit_entries(log->fleet, k - 1, 1, hash_one, &o, &n));
	pthread_rwlock_rdlock(&log->tree_lock);
	kms_status st = audit_tree_reader(&log->tree, 0, k - 1, mine);
	pthread_rwlock_unlock(&log->tree_lock);
	KMS_GUARD(st);
	*same = o.seen && tlog_hash_equal(o.hash, mine);
	return KMS_OK;
}

kms_status audit_fleet_check(audit_log *log)
{
	uint64_t entries = 0, pending = 0;
	uint64_t have = log->tree.size;
	KMS_GUARD(store_audit_counts(log->fleet, &entries, &pending));
	bool same = true;
	KMS_GUARD(same_entry_before(log, have < entries ? have : entries, &same));
	if (same && have > entries) {
		/* A log of this kmsd's own, from before the fleet's (kmsd on
		 * PostgreSQL kept one per replica): it becomes the fleet's first
		 * entries when this replica holds the lease, if the fleet's log
		 * is still a prefix of it then. */
		log->fleet_seed = true;
		kms_log("info", "audit: this replica's log (%llu entries) becomes the start of the "
		         "fleet's log (%llu entries so far) once it holds the sequencer lease",
		         (unsigned long long)have, (unsigned long long)entries);
		return KMS_OK;
	}
	KMS_ENSURE(same, KMS_FAILED_PRECONDITION,
	           "audit: log.bin (%llu entries) is not a copy of the fleet's audit log (%llu "
	           "entries): move %s aside and start again; kmsd then copies the log from the "
	           "database", (unsigned long long)have, (unsigned long long)entries, log->dir);
	kms_log("info", "audit: one log for the fleet: %llu entries numbered, %llu waiting, %llu "
	         "in this replica's copy", (unsigned long long)entries,
	         (unsigned long long)pending, (unsigned long long)have);
	return KMS_OK;
}

/* ---- copying numbered entries ---- */

typedef struct copy_batch {
	audit_log *log;
	uint64_t first;
	char *entries[FLEET_BATCH];
	size_t lens[FLEET_BATCH];
	size_t n;
	size_t bytes;
	/* The entry before `first` (this copy's last), read again from the
	 * database and compared: the fleet's log must still hold this copy's
	 * history (a database that lost entries, by a failover to a standby
	 * that was behind or a restore, or whose entries changed, is found
	 * here). */
	bool check_pending;
	uint8_t last_leaf[AUDIT_HASH_LEN];
	bool local_failed;     /* the copy's own write failed (not the database) */
} copy_batch;

static void copy_clear(copy_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->entries[i]);
	b->first += b->n;
	b->n = 0;
	b->bytes = 0;
}

static kms_status copy_flush(copy_batch *b)
{
	if (b->n == 0)
		return KMS_OK;
	kms_status st = audit_append_numbered(b->log, b->first, (const char *const *)b->entries,
	                                      b->lens, b->n);
	b->local_failed = st != KMS_OK;
	copy_clear(b);
	return st;
}

static kms_status copy_one(void *ctx, uint64_t seq, const uint8_t *entry, size_t len)
{
	copy_batch *b = ctx;
	if (b->check_pending) {
		uint8_t leaf[AUDIT_HASH_LEN];
		b->check_pending = false;
		KMS_GUARD(tlog_leaf_hash(entry, len, leaf));
		KMS_ENSURE(tlog_hash_equal(leaf, b->last_leaf), KMS_FAILED_PRECONDITION,
		           "audit: the fleet's log has another entry %llu than this replica's copy: "
		           "the database lost or changed entries", (unsigned long long)seq);
		return KMS_OK;
	}
	watch_seen(b->log, entry, len);
	char *e = malloc(len);
	KMS_ENSURE(e, KMS_UNAVAILABLE, "audit: out of memory copying the fleet's log");
	memcpy(e, entry, len);
	b->entries[b->n] = e;
	b->lens[b->n++] = len;
	b->bytes += len;
	if (b->n == FLEET_BATCH || b->bytes >= FLEET_COPY_BYTES)
		return copy_flush(b);
	return KMS_OK;
}

/* Copies what the fleet numbered past this copy's end; *n how many.
 * KMS_FAILED_PRECONDITION when the fleet's log no longer holds this
 * copy's history. */
static kms_status follow(audit_log *log, copy_batch *b, size_t *n)
{
	b->log = log;
	b->first = audit_size(log);
	b->n = 0;
	b->bytes = 0;
	b->local_failed = false;
	b->check_pending = b->first > 0;
	*n = 0;
	uint64_t from = b->first;
	if (b->check_pending) {
		pthread_rwlock_rdlock(&log->tree_lock);
		kms_status st = audit_tree_reader(&log->tree, 0, b->first - 1, b->last_leaf);
		pthread_rwlock_unlock(&log->tree_lock);
		KMS_GUARD(st);
		from = b->first - 1;
	}
	size_t rows = 0;
	kms_status st = store_audit_entries(log->fleet, from, FLEET_BATCH, copy_one, b, &rows);
	if (st == KMS_OK && b->check_pending)
		st = KMS_FAIL(KMS_FAILED_PRECONDITION, "audit: the fleet's log holds fewer than the "
		              "%llu entries this replica copied: the database lost or changed "
		              "entries (a failover to a standby that was behind, or a restore)",
		              (unsigned long long)b->first);
	if (st == KMS_OK)
		st = copy_flush(b);
	copy_clear(b);
	if (st == KMS_OK)
		*n = from < b->first ? rows - 1 : rows;
	return st;
}

/* ---- the lease ---- */

static void set_sequencer(audit_log *log, bool held, uint64_t epoch)
{
	pthread_mutex_lock(&log->lock);
	bool was = log->sequencer;
	log->sequencer = held;
	if (held)
		log->lease_epoch = epoch;
	pthread_mutex_unlock(&log->lock);
	if (held && !was)
		kms_log("info", "audit: this replica holds the fleet log's sequencer lease (epoch "
		         "%llu): it numbers the entries and signs the checkpoints",
		         (unsigned long long)epoch);
	else if (!held && was)
		kms_log("warn", "audit: this replica no longer holds the sequencer lease; another "
		         "replica numbers the entries");
}


/* ---- checkpoints ---- */

typedef struct fleet_state {
	bool held;
	uint64_t epoch;
	uint64_t lease_due_us;  /* next renewal or attempt */
	uint64_t signed_us;     /* when this replica last signed */
	uint64_t expire_due_us; /* next removal of old request records (holder) */
	uint64_t fleet_size;    /* the fleet's checkpoint size last seen (holder) */
	bool fleet_size_known;
	bool failing;           /* the last round failed: said once */
	/* The oldest watched entry (its pending id) has left audit_pending;
	 * the copy must have taken it once it holds watch_until entries. */
	bool watch_armed;
	int64_t watch_id;
	uint64_t watch_until;
	bool fatal;             /* this copy and the fleet's log differ, or the copy is not
	                         * durable: kmsd stops (the status says why) */
} fleet_state;

/* Takes the fleet's checkpoint when this copy has reached it. */
static kms_status adopt(audit_log *log, fleet_state *fs)
{
	uint64_t size = 0;
	char *note = NULL;
	kms_status st = store_audit_checkpoint_get(log->fleet, &size, &note);
	if (st == KMS_NOT_FOUND) {
		kms_error_clear();
		fs->fleet_size = 0;
		fs->fleet_size_known = true;
		return KMS_OK;
	}
	KMS_GUARD(st);
	fs->fleet_size = size;
	fs->fleet_size_known = true;
	pthread_mutex_lock(&log->lock);
	bool newer = size > log->checkpoint_size;
	pthread_mutex_unlock(&log->lock);
	if (newer && size <= audit_size(log)) {
		st = audit_copy_sync(log);
		if (st == KMS_OK) {
			st = audit_install(log, note, size);
			fs->fatal = st == KMS_FAILED_PRECONDITION; /* another root */
		} else {
			fs->fatal = true; /* not durable: never sign or take over it */
		}
	}
	free(note);
	return st;
}

/* The holder: a checkpoint of its copy's size, signed and published in
 * the store, at most every checkpoint_ms. */
static kms_status sign(audit_log *log, fleet_state *fs)
{
	uint64_t size = audit_size(log);
	uint64_t now = kms_monotonic_us();
	pthread_mutex_lock(&log->lock);
	uint64_t have = log->checkpoint_size;
	pthread_mutex_unlock(&log->lock);
	if (!fs->fleet_size_known || size < fs->fleet_size)
		return KMS_OK;
	if (size <= have || now - fs->signed_us < (uint64_t)log->checkpoint_ms * 1000) {
		if (fs->fleet_size >= have)
			return KMS_OK;
		size = have; /* signed, but its row was not written: again, the same note */
	} else {
		if (audit_copy_sync(log) != KMS_OK) {
			fs->fatal = true;
			return KMS_FAIL(KMS_FAILED_PRECONDITION, "audit: this replica's copy cannot be "
			                "made durable (%s): restart kmsd", kms_error_message());
		}
		if (audit_publish(log) != KMS_OK)
			return KMS_FAIL(KMS_UNAVAILABLE, "audit: signing the fleet's checkpoint: %s",
			                kms_error_message());
		fs->signed_us = now;
	}
	char *note = NULL;
	uint8_t root[AUDIT_HASH_LEN];
	KMS_GUARD(audit_checkpoint(log, &note, &size, root));
	kms_status st = store_audit_checkpoint_put(log->fleet, fs->epoch, size, note);
	free(note);
	if (st == KMS_OK)
		fs->fleet_size = size;
	return st;
}

/* ---- the thread ---- */

/* After follow: a copy whose own write failed (its disk, say) cannot
 * sign, so the holder lets a replica whose copy can take the lease, and
 * stays out of it for one term. Returns st. */
static kms_status copy_failed(audit_log *log, fleet_state *fs, const copy_batch *b,
                              kms_status st, uint64_t now)
{
	if (st == KMS_OK || !b->local_failed || !fs->held)
		return st;
	kms_error_saved why;
	kms_error_save(&why);
	if (store_audit_lease_release(log->fleet) == KMS_OK) {
		fs->held = false;
		fs->lease_due_us = now + (uint64_t)log->lease_ms * 1000;
		set_sequencer(log, false, 0);
	}
	return kms_error_restore(st, &why);
}

/* The fleet's log is a prefix of this replica's own (fleet_seed): as the
 * lease holder, adds the rest of it, in batches. Until the fleet's log
 * holds all of it, this replica copies and numbers nothing (its requests'
 * entries wait in audit_pending). Any other replica that numbers entries
 * first makes this one's log no prefix: the check in follow() then stops
 * it (docs/scale-out.md, "Upgrading"). */
static kms_status seed(audit_log *log, fleet_state *fs)
{
	uint64_t entries = 0, pending = 0, have = audit_size(log);
	KMS_GUARD(store_audit_counts(log->fleet, &entries, &pending));
	if (entries >= have) {
		log->fleet_seed = false;
		kms_log("info", "audit: the fleet's log starts with this replica's %llu entries",
		         (unsigned long long)have);
		return KMS_OK;
	}
	if (!fs->held)
		return KMS_OK;
	bool same = true;
	KMS_GUARD(same_entry_before(log, entries, &same));
	if (!same) {
		fs->fatal = true;
		return KMS_FAIL(KMS_FAILED_PRECONDITION, "audit: the fleet's log is no longer the "
		                "start of this replica's own (another replica numbered entries "
		                "first): move %s aside and start again (docs/scale-out.md, "
		                "\"Upgrading\")", log->dir);
	}
	char *texts[FLEET_BATCH];
	size_t lens[FLEET_BATCH], n = 0;
	kms_status st = KMS_OK;
	pthread_rwlock_rdlock(&log->tree_lock);
	for (; n < FLEET_BATCH && entries + n < have && st == KMS_OK; n++)
		st = audit_read_entry(log, entries + n, &texts[n], &lens[n]);
	pthread_rwlock_unlock(&log->tree_lock);
	if (st != KMS_OK)
		n--; /* the failed read allocated nothing */
	if (st == KMS_OK)
		st = store_audit_seed(log->fleet, fs->epoch, entries, (const char *const *)texts, lens,
		                      n);
	for (size_t i = 0; i < n; i++)
		free(texts[i]);
	if (st == KMS_FAILED_PRECONDITION) { /* the lease moved on */
		kms_error_clear();
		fs->held = false;
		set_sequencer(log, false, 0);
		return KMS_OK;
	}
	return st;
}

/* The holder drops request records past their keep (store.h,
 * STORE_REQUEST_KEEP_MS). A failure is said and tried again at the next
 * turn: old records only take room. */
static void expire_records(audit_log *log, fleet_state *fs, uint64_t now)
{
	uint64_t removed = 0;
	fs->expire_due_us = now + (uint64_t)FLEET_EXPIRE_MS * 1000;
	if (store_request_expire(log->fleet, (int64_t)(kms_now_us() / 1000) - STORE_REQUEST_KEEP_MS,
	                         &removed) != KMS_OK) {
		kms_log("warn", "audit: removing old request records: %s; tried again in %d s",
		        kms_error_message(), FLEET_EXPIRE_MS / 1000);
		kms_error_clear();
	}
}

/* Its own entries (above): KMS_FAILED_PRECONDITION, fatal, when one left
 * audit_pending without being numbered. */
static kms_status watch_check(audit_log *log, fleet_state *fs)
{
	bool in_flight;
	pthread_mutex_lock(&log->watch_lock);
	int64_t oldest = watch_oldest(log, &in_flight);
	pthread_mutex_unlock(&log->watch_lock);
	if (oldest == 0 && !in_flight) {
		fs->watch_armed = false;
		return KMS_OK;
	}
	if (!fs->watch_armed) {
		if (in_flight || oldest == 0)
			return KMS_OK; /* a commit has not returned yet */
		int64_t min_pending = 0;
		uint64_t numbered = 0;
		KMS_GUARD(store_audit_watch(log->fleet, &min_pending, &numbered));
		if (min_pending == 0 || min_pending > oldest) {
			fs->watch_armed = true;
			fs->watch_id = oldest;
			fs->watch_until = numbered;
		}
		return KMS_OK;
	}
	if (audit_size(log) < fs->watch_until)
		return KMS_OK; /* the copy has not reached that point yet */
	fs->watch_armed = false;
	pthread_mutex_lock(&log->watch_lock);
	/* Entries whose commit had not returned when this was armed took
	 * later ids: the lowest known is the one to look at. */
	int64_t left = watch_oldest(log, &in_flight);
	bool missing = left != 0 && left <= fs->watch_id;
	pthread_mutex_unlock(&log->watch_lock);
	if (!missing)
		return KMS_OK;
	fs->fatal = true;
	return KMS_FAIL(KMS_FAILED_PRECONDITION, "audit: an entry this replica added to the "
	                "fleet's database (audit_pending id %lld) left it without being "
	                "numbered: it was removed from the database; kmsd stops (see "
	                "docs/scale-out.md, \"Trusting the database\")", (long long)fs->watch_id);
}

/* One round: the lease, numbering (holder), copying, the checkpoint.
 * *busy when there was more than one round's worth. */
static kms_status round_once(audit_log *log, fleet_state *fs, copy_batch *b, bool *busy)
{
	uint64_t now = kms_monotonic_us();
	*busy = false;
	if (now >= fs->lease_due_us) {
		bool held = false;
		uint64_t epoch = 0;
		fs->lease_due_us = now + (uint64_t)log->lease_ms * 1000 / 4;
		kms_status st = store_audit_lease(log->fleet, kms_now_us() / 1000, log->lease_ms,
		                                  &held, &epoch);
		if (st != KMS_OK)
			held = false;
		if (held && (!fs->held || epoch != fs->epoch))
			fs->fleet_size_known = false; /* taken (again): read the fleet's first */
		fs->held = held;
		fs->epoch = epoch;
		set_sequencer(log, held, epoch);
		KMS_GUARD(st);
	}
	if (log->fleet_seed) {
		KMS_GUARD(seed(log, fs));
		if (log->fleet_seed)
			return KMS_OK;
	}
	/* This copy first: the fleet's log must still hold its history
	 * before anything more is numbered after it. */
	size_t copied = 0;
	kms_status copy = follow(log, b, &copied);
	if (copy == KMS_FAILED_PRECONDITION)
		fs->fatal = true;
	KMS_GUARD(copy_failed(log, fs, b, copy, now));
	*busy = copied == FLEET_BATCH;
	if (fs->held) {
		size_t moved = 0;
		kms_status st = store_audit_sequence(log->fleet, fs->epoch, FLEET_BATCH, &moved);
		if (st == KMS_FAILED_PRECONDITION) {
			fs->held = false;
			set_sequencer(log, false, 0);
			kms_error_clear();
		} else {
			KMS_GUARD(st);
		}
		if (moved) {
			pthread_mutex_lock(&log->lock);
			log->fleet_sequenced += moved;
			pthread_mutex_unlock(&log->lock);
		}
		*busy = *busy || moved == FLEET_BATCH;
		if (moved) {
			copy = follow(log, b, &copied);
			if (copy == KMS_FAILED_PRECONDITION)
				fs->fatal = true;
			KMS_GUARD(copy_failed(log, fs, b, copy, now));
		}
	}
	KMS_GUARD(watch_check(log, fs));
	if (fs->held && now >= fs->expire_due_us)
		expire_records(log, fs, now);
	uint64_t size = audit_size(log);
	pthread_mutex_lock(&log->lock);
	bool behind = size > log->checkpoint_size;
	pthread_mutex_unlock(&log->lock);
	if (!fs->fleet_size_known || (!fs->held && behind))
		KMS_GUARD(adopt(log, fs));
	if (fs->held) {
		kms_status st = sign(log, fs);
		if (st == KMS_FAILED_PRECONDITION && !fs->fatal) { /* the lease moved on meanwhile */
			fs->held = false;
			set_sequencer(log, false, 0);
			kms_error_clear();
		} else {
			KMS_GUARD(st);
		}
	}
	return KMS_OK;
}

/* At a clean stop, once this replica's last entries are submitted: the
 * holder numbers everything pending, copies it, signs a final checkpoint
 * and gives the lease up (another replica takes it at once); any other
 * replica copies what is numbered and takes the fleet's checkpoint. So a
 * stopped replica's copy holds every entry it answered for, when it held
 * the lease (a one-replica fleet always does). Bounded: a few batches. */
void audit_fleet_release(audit_log *log)
{
	pthread_mutex_lock(&log->lock);
	bool held = log->sequencer;
	uint64_t epoch = log->lease_epoch;
	bool damaged = log->damaged;
	pthread_mutex_unlock(&log->lock);
	fleet_state fs = { .held = held, .epoch = epoch };
	/* A seed in progress is finished first (a few batches). */
	for (int i = 0; i < 64 && !damaged && log->fleet_seed && fs.held; i++)
		if (seed(log, &fs) != KMS_OK)
			break;
	held = fs.held;
	if (damaged || log->fleet_seed) {
		pthread_mutex_lock(&log->lock);
		log->sequencer = false;
		pthread_mutex_unlock(&log->lock);
		if (held && store_audit_lease_release(log->fleet) != KMS_OK)
			kms_error_clear();
		return;
	}
	copy_batch *b = calloc(1, sizeof *b);
	kms_status st = b ? KMS_OK : KMS_FAIL(KMS_INTERNAL, "audit: out of memory");
	for (int i = 0; i < 64 && st == KMS_OK; i++) {
		size_t moved = 0, copied = 0;
		if (held) {
			st = store_audit_sequence(log->fleet, epoch, FLEET_BATCH, &moved);
			if (st == KMS_FAILED_PRECONDITION) { /* taken over: copy all the same */
				kms_error_clear();
				held = fs.held = false;
				st = KMS_OK;
			}
		}
		if (st == KMS_OK)
			st = follow(log, b, &copied);
		if (moved < FLEET_BATCH && copied < FLEET_BATCH)
			break;
	}
	if (st == KMS_OK)
		st = adopt(log, &fs);
	if (st == KMS_OK && held) {
		fs.signed_us = 0;
		st = sign(log, &fs);
	}
	if (st != KMS_OK)
		kms_log("warn", "audit: the fleet's log at stop: %s; the next lease holder numbers "
		         "what is left", kms_error_message());
	free(b);
	pthread_mutex_lock(&log->lock);
	log->sequencer = false;
	pthread_mutex_unlock(&log->lock);
	if (held && store_audit_lease_release(log->fleet) != KMS_OK)
		kms_log("warn", "audit: could not give the sequencer lease up (%s): another replica "
		         "takes it when it expires", kms_error_message());
}

/* Waits ms, or until the log stops. (Submitted batches do not cut the
 * wait short: under load that made a round per batch, and the rounds'
 * queries cost more than the 20 ms they saved.) */
static void wait_ms(audit_log *log, unsigned ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += (long)ms * 1000000L;
	while (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&log->lock);
	while (!log->stop &&
	       pthread_cond_timedwait(&log->fleet_wake, &log->lock, &until) == 0)
		;
	pthread_mutex_unlock(&log->lock);
}

static bool stopping(audit_log *log)
{
	pthread_mutex_lock(&log->lock);
	bool stop = log->stop;
	pthread_mutex_unlock(&log->lock);
	return stop;
}

void *audit_fleet_main(void *arg)
{
	audit_log *log = arg;
	fleet_state fs = { .held = false };
	copy_batch *b = calloc(1, sizeof *b);
	if (!b) { /* no copy, no lease: fail closed */
		audit_report_damage(log, "audit: out of memory for the fleet log's thread");
		return NULL;
	}
	while (!stopping(log)) {
		bool busy = false;
		kms_status st = round_once(log, &fs, b, &busy);
		if (st != KMS_OK && fs.fatal) {
			/* This copy and the fleet's log differ: fail closed. */
			char damage[sizeof log->damage];
			snprintf(damage, sizeof damage, "%s", kms_error_message());
			audit_report_damage(log, damage);
			break;
		}
		if (st != KMS_OK) {
			if (!fs.failing)
				kms_log("error", "audit: the fleet's log: %s (%s); trying again",
				         kms_error_message(), kms_error_where());
			fs.failing = true;
			wait_ms(log, 200);
			continue;
		}
		if (fs.failing)
			kms_log("info", "audit: the fleet's log is reachable again");
		fs.failing = false;
		if (!busy)
			wait_ms(log, FLEET_POLL_MS);
	}
	free(b);
	return NULL;
}
