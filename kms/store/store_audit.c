/*
 * store_audit.c: the fleet's audit log in the shared database
 * (docs/scale-out.md, "One audit log for the fleet"; the tables are
 * migration 8 -> 9). Every replica adds entries to audit_pending; the
 * replica holding audit_lease moves them to audit_entries, numbered; every
 * replica reads audit_entries in order into its own copy of the log
 * (kms/audit/audit_fleet.c).
 */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kms/store/store_internal.h"

kms_status store_audit_add(store *st, const char *entry, size_t len, int64_t *id)
{
	db_stmt *s;
	KMS_GUARD(store_stmt(st, S_AUDIT_SUBMIT,
	                     "INSERT INTO audit_pending (entry, replica) VALUES (?1, ?2) "
	                     "RETURNING id",
	                     &s));
	kms_status status = store_bind_check(s, store_bind(s, "bt", entry, len,
	                                                   store_replica_id(st)),
	                                     "add an audit entry", NULL);
	if (status == KMS_OK) {
		db_rc rc = db_step(s);
		if (rc == DB_ROW) {
			if (id)
				*id = db_column_int64(s, 0);
			rc = db_step(s);
		}
		if (rc != DB_DONE)
			status = store_fail(s, rc, "add an audit entry", NULL);
	}
	store_stmt_done(s);
	return status;
}

kms_status store_audit_submit(store *st, const char *const *entries, const size_t *lens,
                              const store_request_record *const *records, bool *dup,
                              int64_t *ids, size_t n)
{
	KMS_ENSURE(!records || dup, KMS_INTERNAL, "store: request records without their flags");
	KMS_GUARD(store_begin(st));
	kms_status status = KMS_OK;
	for (size_t i = 0; i < n && status == KMS_OK; i++) {
		if (dup)
			dup[i] = false;
		/* A record of the same request from another run (it ran on two
		 * replicas at once) stays as it is; this run's entry is added all
		 * the same: it ran, and its answer leaves. */
		if (records && records[i]) {
			bool added = false;
			status = store_request_put(st, records[i], &added);
			if (status != KMS_OK)
				break;
			dup[i] = !added;
		}
		status = store_audit_add(st, entries[i], lens[i], ids ? &ids[i] : NULL);
	}
	if (status != KMS_OK) {
		store_rollback(st);
		return status;
	}
	return store_commit(st);
}

kms_status store_audit_watch(store *st, int64_t *min_pending, uint64_t *numbered)
{
	db_stmt *s;
	*min_pending = 0;
	*numbered = 0;
	/* One statement, one snapshot: what waits and what is numbered, at
	 * the same moment. */
	KMS_GUARD(store_stmt(st, S_AUDIT_WATCH,
	                     "SELECT (SELECT coalesce(min(id), 0) FROM audit_pending), "
	                     "(SELECT coalesce(max(seq) + 1, 0) FROM audit_entries)",
	                     &s));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_ROW) {
		*min_pending = db_column_int64(s, 0);
		*numbered = (uint64_t)db_column_int64(s, 1);
	} else {
		status = store_fail(s, rc, "read the fleet log's progress", NULL);
	}
	store_stmt_done(s);
	return status;
}

kms_status store_audit_lease(store *st, int64_t now_ms, int64_t ttl_ms, bool *held,
                             uint64_t *epoch)
{
	db_stmt *s;
	*held = false;
	*epoch = 0;
	/* Taken when free, expired, or ours already; the epoch rises when the
	 * holder changes, so the holder's sequencing (below) notices any
	 * takeover between its renewals. */
	KMS_GUARD(store_stmt(st, S_AUDIT_LEASE,
	                     "UPDATE audit_lease SET epoch = epoch + CASE WHEN holder = ?1 THEN 0 "
	                     "ELSE 1 END, holder = ?1, expires_ms = ?2 + ?3 WHERE id = 1 AND "
	                     "(holder = ?1 OR holder = '' OR expires_ms < ?2) RETURNING epoch",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "tii", store_replica_id(st), now_ms, ttl_ms),
	                           "take the audit lease", NULL));
	db_rc rc;
	while ((rc = db_step(s)) == DB_ROW) {
		*held = true;
		*epoch = (uint64_t)db_column_int64(s, 0);
	}
	kms_status status = rc == DB_DONE ? KMS_OK : store_fail(s, rc, "take the audit lease", NULL);
	store_stmt_done(s);
	if (status != KMS_OK)
		*held = false;
	return status;
}

kms_status store_audit_lease_holder(store *st, char holder[STORE_AUDIT_HOLDER_SIZE],
                                    uint64_t *epoch, int64_t *expires_ms)
{
	db_stmt *s;
	holder[0] = '\0';
	KMS_GUARD(store_stmt(st, S_AUDIT_LEASE_GET,
	                     "SELECT holder, epoch, expires_ms FROM audit_lease WHERE id = 1", &s));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_ROW) {
		if (!store_column_text(s, 0, holder, STORE_AUDIT_HOLDER_SIZE))
			status = KMS_FAIL(KMS_INTERNAL, "store: the audit lease's holder is malformed");
		*epoch = (uint64_t)db_column_int64(s, 1);
		*expires_ms = db_column_int64(s, 2);
	} else {
		status = store_fail(s, rc, "read the audit lease", NULL);
	}
	store_stmt_done(s);
	return status;
}

kms_status store_audit_lease_release(store *st)
{
	db_stmt *s;
	KMS_GUARD(store_stmt(st, S_AUDIT_LEASE_RELEASE,
	                     "UPDATE audit_lease SET holder = '', expires_ms = 0 "
	                     "WHERE id = 1 AND holder = ?1",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "t", store_replica_id(st)),
	                           "give the audit lease up", NULL));
	return store_step_change(s, "give the audit lease up", NULL, true);
}

/* In the sequencing transaction: the lease is still ours, at this epoch
 * (the UPDATE also locks its row until the commit, so a takeover waits or
 * fails on a conflict). */
static kms_status still_held(store *st, uint64_t epoch)
{
	db_stmt *s;
	KMS_GUARD(store_stmt(st, S_AUDIT_LEASE_CHECK,
	                     "UPDATE audit_lease SET epoch = epoch WHERE id = 1 AND holder = ?1 "
	                     "AND epoch = ?2",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "ti", store_replica_id(st), (int64_t)epoch),
	                           "check the audit lease", NULL));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc != DB_DONE)
		status = store_fail(s, rc, "check the audit lease", NULL);
	else if (db_changes(s) != 1)
		status = KMS_FAIL(KMS_FAILED_PRECONDITION, "the audit lease was taken over");
	store_stmt_done(s);
	return status;
}

static kms_status sequence(store *st, uint64_t epoch, size_t cap, size_t *moved)
{
	db_stmt *s;
	int64_t next = 0, last_id = 0, count = 0;
	KMS_GUARD(still_held(st, epoch));
	KMS_GUARD(store_stmt(st, S_AUDIT_NEXT_SEQ,
	                     "SELECT coalesce(max(seq) + 1, 0) FROM audit_entries", &s));
	KMS_GUARD(store_step_count(s, "next audit sequence number", NULL, &next));
	KMS_GUARD(store_stmt(st, S_AUDIT_PENDING_TAKE,
	                     "SELECT coalesce(max(id), 0), count(*) FROM (SELECT id FROM "
	                     "audit_pending ORDER BY id LIMIT ?1) AS p",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "i", (int64_t)cap), "pending audit entries",
	                           NULL));
	db_rc rc = db_step(s);
	if (rc != DB_ROW) {
		kms_status status = store_fail(s, rc, "pending audit entries", NULL);
		store_stmt_done(s);
		return status;
	}
	last_id = db_column_int64(s, 0);
	count = db_column_int64(s, 1);
	store_stmt_done(s);
	if (count == 0)
		return KMS_OK;
	/* In id order, each the next number: one statement, so the rows of
	 * one batch are numbered as one. */
	KMS_GUARD(store_stmt(st, S_AUDIT_SEQUENCE,
	                     "INSERT INTO audit_entries (seq, entry, replica) SELECT ?1 + (row_number() "
	                     "OVER (ORDER BY id)) - 1, entry, replica FROM audit_pending WHERE id <= ?2 "
	                     "ORDER BY id",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "ii", next, last_id), "sequence audit entries",
	                           NULL));
	KMS_GUARD(store_step_change(s, "sequence audit entries", NULL, false));
	KMS_GUARD(store_stmt(st, S_AUDIT_PENDING_DROP, "DELETE FROM audit_pending WHERE id <= ?1",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "i", last_id), "drop sequenced entries", NULL));
	KMS_GUARD(store_step_change(s, "drop sequenced entries", NULL, false));
	*moved = (size_t)count;
	return KMS_OK;
}

kms_status store_audit_sequence(store *st, uint64_t epoch, size_t cap, size_t *moved)
{
	*moved = 0;
	/* Nothing pending (an idle fleet): no transaction, no write. */
	db_stmt *s;
	int64_t any = 0;
	KMS_GUARD(store_stmt(st, S_AUDIT_PENDING_ANY,
	                     "SELECT count(*) FROM (SELECT id FROM audit_pending LIMIT 1) AS p", &s));
	KMS_GUARD(store_step_count(s, "any pending audit entry", NULL, &any));
	if (any == 0)
		return KMS_OK;
	KMS_GUARD(store_begin(st));
	kms_status status = sequence(st, epoch, cap, moved);
	if (status != KMS_OK) {
		*moved = 0;
		store_rollback(st);
		return status;
	}
	status = store_commit(st);
	if (status != KMS_OK)
		*moved = 0;
	return status;
}

kms_status store_audit_seed(store *st, uint64_t epoch, uint64_t first, const char *const *entries,
                            const size_t *lens, size_t n)
{
	KMS_GUARD(store_begin(st));
	kms_status status = still_held(st, epoch);
	for (size_t i = 0; i < n && status == KMS_OK; i++) {
		db_stmt *s;
		status = store_stmt(st, S_AUDIT_SEED,
		                    "INSERT INTO audit_entries (seq, entry, replica) VALUES (?1, ?2, ?3)",
		                    &s);
		if (status == KMS_OK)
			status = store_bind_check(s, store_bind(s, "ibt", (int64_t)(first + i),
			                                        entries[i], lens[i],
			                                        store_replica_id(st)),
			                          "seed the fleet's audit log", NULL);
		if (status == KMS_OK)
			status = store_step_change(s, "seed the fleet's audit log", NULL, false);
	}
	if (status != KMS_OK) {
		store_rollback(st);
		return status;
	}
	return store_commit(st);
}

kms_status store_audit_entries(store *st, uint64_t from, size_t cap, store_audit_visit visit,
                               void *ctx, size_t *n)
{
	db_stmt *s;
	*n = 0;
	KMS_GUARD(store_stmt(st, S_AUDIT_ENTRIES,
	                     "SELECT seq, entry FROM audit_entries WHERE seq >= ?1 ORDER BY seq "
	                     "LIMIT ?2",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "ii", (int64_t)from, (int64_t)cap),
	                           "read audit entries", NULL));
	kms_status status = KMS_OK;
	db_rc rc;
	while (status == KMS_OK && (rc = db_step(s)) == DB_ROW) {
		uint64_t seq = (uint64_t)db_column_int64(s, 0);
		const void *entry = db_column_blob(s, 1);
		size_t len = db_column_bytes(s, 1);
		if (seq != from + *n || !entry || len == 0 || len > 65535)
			status = KMS_FAIL(KMS_FAILED_PRECONDITION, "store: the fleet's log has a gap or "
			                  "an empty entry at audit entry %llu (entry %llu expected): the "
			                  "database lost or changed entries", (unsigned long long)seq,
			                  (unsigned long long)(from + *n));
		else
			status = visit(ctx, seq, entry, len);
		if (status == KMS_OK)
			(*n)++;
	}
	if (status == KMS_OK && rc != DB_DONE)
		status = store_fail(s, rc, "read audit entries", NULL);
	store_stmt_done(s);
	return status;
}

kms_status store_audit_checkpoint_get(store *st, uint64_t *size, char **note)
{
	db_stmt *s;
	*size = 0;
	*note = NULL;
	KMS_GUARD(store_stmt(st, S_AUDIT_CHECKPOINT_GET,
	                     "SELECT size, note FROM audit_checkpoint WHERE id = 1", &s));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_ROW) {
		const void *bytes = db_column_blob(s, 1);
		size_t len = db_column_bytes(s, 1);
		*size = (uint64_t)db_column_int64(s, 0);
		*note = bytes ? malloc(len + 1) : NULL;
		if (*note) {
			memcpy(*note, bytes, len);
			(*note)[len] = '\0';
		} else {
			status = KMS_FAIL(KMS_INTERNAL, "store: the fleet's checkpoint cannot be read");
		}
	} else if (rc == DB_DONE) {
		status = KMS_FAIL(KMS_NOT_FOUND, "the fleet has signed no checkpoint yet");
	} else {
		status = store_fail(s, rc, "read the fleet's checkpoint", NULL);
	}
	store_stmt_done(s);
	return status;
}

kms_status store_audit_checkpoint_put(store *st, uint64_t epoch, uint64_t size, const char *note)
{
	db_stmt *s;
	KMS_GUARD(store_begin(st));
	kms_status status = still_held(st, epoch);
	if (status == KMS_OK)
		status = store_stmt(st, S_AUDIT_CHECKPOINT_PUT,
		                    "INSERT INTO audit_checkpoint (id, size, note) VALUES (1, ?1, ?2) "
		                    "ON CONFLICT (id) DO UPDATE SET size = excluded.size, note = "
		                    "excluded.note WHERE audit_checkpoint.size < excluded.size",
		                    &s);
	if (status == KMS_OK)
		status = store_bind_check(s, store_bind(s, "ib", (int64_t)size, note, strlen(note)),
		                          "publish the fleet's checkpoint", NULL);
	if (status == KMS_OK)
		status = store_step_change(s, "publish the fleet's checkpoint", NULL, true);
	if (status != KMS_OK) {
		store_rollback(st);
		return status;
	}
	return store_commit(st);
}

kms_status store_audit_counts(store *st, uint64_t *entries, uint64_t *pending)
{
	db_stmt *s;
	int64_t e = 0, p = 0;
	KMS_GUARD(store_stmt(st, S_AUDIT_COUNT_ENTRIES,
	                     "SELECT coalesce(max(seq) + 1, 0) FROM audit_entries", &s));
	KMS_GUARD(store_step_count(s, "count audit entries", NULL, &e));
	KMS_GUARD(store_stmt(st, S_AUDIT_COUNT_PENDING, "SELECT count(*) FROM audit_pending", &s));
	KMS_GUARD(store_step_count(s, "count pending audit entries", NULL, &p));
	*entries = (uint64_t)e;
	*pending = (uint64_t)p;
	return KMS_OK;
}
