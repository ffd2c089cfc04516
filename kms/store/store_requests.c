/*
 * store_requests.c: request records (docs/scale-out.md, "Request
 * records"; the table is migration 9 -> 10). A replica looks a request up
 * before it runs it; the audit writer adds the record in the transaction
 * that adds the request's audit entry (store_audit_submit); the lease
 * holder removes records older than STORE_REQUEST_KEEP_MS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "common/error.h"
#include "kms/store/store_internal.h"

/* The advisory lock key of a record (PostgreSQL): the first 8 bytes of a
 * SHA-256 of its principal and request id. A writer holds it, exclusive,
 * from the record's insert to its transaction's end; a reader that cannot
 * take it shared knows the record is being written now. */
static int64_t lock_key(const char *principal, const char *request_id)
{
	static const char label[] = "kms request record lock";
	uint8_t buf[sizeof label + 64 + 1 + KMS_REQUEST_ID_MAX];
	uint8_t md[SHA256_DIGEST_LENGTH];
	size_t p = strnlen(principal, 64), r = strnlen(request_id, KMS_REQUEST_ID_MAX), n = 0;
	memcpy(buf, label, sizeof label);
	n += sizeof label;
	memcpy(buf + n, principal, p);
	n += p;
	buf[n++] = 0;
	memcpy(buf + n, request_id, r);
	n += r;
	SHA256(buf, n, md);
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | md[i];
	return (int64_t)v;
}

kms_status store_request_get(store *st, const char *principal, const char *request_id,
                             store_request_record *out, bool *busy)
{
	db_stmt *s;
	memset(out, 0, sizeof *out);
	*busy = false;
	/* PostgreSQL: the record's lock first, then the row, in one call
	 * (request_record_find, schema 10): a record whose transaction is
	 * committing now is waited for, not missed. SQLite: the row. */
	KMS_GUARD(store_stmt(st, S_REQUEST_GET,
	                     store_is_pg(st)
	                             ? "SELECT f_busy, f_op, f_digest, f_result, f_created_ms "
	                               "FROM request_record_find(?1, ?2, ?3)"
	                             : "SELECT 0, op, digest, result, created_ms FROM "
	                               "request_records WHERE principal = ?1 AND request_id = ?2 "
	                               "AND ?3 IS NOT NULL",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "tti", principal, request_id,
	                                         lock_key(principal, request_id)),
	                           "read a request record", request_id));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_DONE) {
		status = KMS_FAIL(KMS_NOT_FOUND, "no record of request %s", request_id);
	} else if (rc != DB_ROW) {
		status = store_fail(s, rc, "read a request record", request_id);
	} else if (db_column_int64(s, 0) != 0) {
		*busy = true;
		status = KMS_FAIL(KMS_NOT_FOUND, "the record of request %s is being written",
		                  request_id);
	} else {
		size_t digest_len = db_column_bytes(s, 2);
		const void *digest = db_column_blob(s, 2);
		size_t result_len = db_column_bytes(s, 3);
		const void *result = db_column_blob(s, 3);
		int64_t op = db_column_int64(s, 1);
		if (digest_len != STORE_REQUEST_DIGEST_LEN || !digest || op < 1 || op > INT32_MAX ||
		    result_len > STORE_REQUEST_RESULT_MAX) {
			status = KMS_FAIL(KMS_INTERNAL, "store: the record of request %s is "
			                  "malformed", request_id);
		} else {
			out->op = (int)op;
			memcpy(out->digest, digest, STORE_REQUEST_DIGEST_LEN);
			out->created_ms = db_column_int64(s, 4);
			if (result && result_len) {
				out->result = malloc(result_len);
				if (!out->result)
					status = KMS_FAIL(KMS_UNAVAILABLE, "out of memory reading the "
					                  "record of request %s", request_id);
				else
					memcpy(out->result, result, result_len);
				out->result_len = out->result ? result_len : 0;
			}
			snprintf(out->principal, sizeof out->principal, "%s", principal);
			snprintf(out->request_id, sizeof out->request_id, "%s", request_id);
		}
	}
	store_stmt_done(s);
	return status;
}

void store_request_record_free(store_request_record *r)
{
	if (!r)
		return;
	free(r->result);
	r->result = NULL;
	r->result_len = 0;
}

void store_request_record_drop(store_request_record *r)
{
	store_request_record_free(r);
	free(r);
}

kms_status store_request_put(store *st, const store_request_record *r, bool *added)
{
	db_stmt *s;
	*added = false;
	KMS_ENSURE(r->result_len <= STORE_REQUEST_RESULT_MAX, KMS_INTERNAL,
	           "store: a request record's result of %zu bytes", r->result_len);
	/* RETURNING says whether the row went in; a record of the same
	 * request committed (or being committed) by another replica makes
	 * this one nothing (PostgreSQL waits for that transaction first). */
	/* On PostgreSQL the record's lock is taken first, held to the end of
	 * this transaction: a replica looking the request up meanwhile waits
	 * for the outcome (store_request_get). */
	KMS_GUARD(store_stmt(st, S_REQUEST_PUT,
	                     store_is_pg(st)
	                             ? "INSERT INTO request_records (principal, request_id, op, "
	                               "digest, result, created_ms) SELECT ?1, ?2, CAST(?3 AS "
	                               "BIGINT), CAST(?4 AS BLOB), CAST(?5 AS BLOB), CAST(?6 AS "
	                               "BIGINT) FROM (SELECT pg_advisory_xact_lock(?7)) AS held "
	                               "WHERE true ON CONFLICT (principal, request_id) DO NOTHING "
	                               "RETURNING op"
	                             : "INSERT INTO request_records (principal, request_id, op, "
	                               "digest, result, created_ms) SELECT ?1, ?2, ?3, ?4, ?5, ?6 "
	                               "FROM (SELECT ?7) AS held WHERE true ON CONFLICT "
	                               "(principal, request_id) DO NOTHING RETURNING op",
	                     &s));
	int64_t key = lock_key(r->principal, r->request_id);
	db_rc rc = r->result && r->result_len
	        ? store_bind(s, "ttibbii", r->principal, r->request_id, (int64_t)r->op,
	                     r->digest, (size_t)STORE_REQUEST_DIGEST_LEN, r->result,
	                     r->result_len, r->created_ms, key)
	        : store_bind(s, "ttibnii", r->principal, r->request_id, (int64_t)r->op,
	                     r->digest, (size_t)STORE_REQUEST_DIGEST_LEN, r->created_ms, key);
	KMS_GUARD(store_bind_check(s, rc, "record a request", r->request_id));
	while ((rc = db_step(s)) == DB_ROW)
		*added = true;
	kms_status status = rc == DB_DONE ? KMS_OK
	                                  : store_fail(s, rc, "record a request", r->request_id);
	store_stmt_done(s);
	return status;
}

kms_status store_request_expire(store *st, int64_t before_ms, uint64_t *removed)
{
	db_stmt *s;
	*removed = 0;
	KMS_GUARD(store_stmt(st, S_REQUEST_EXPIRE,
	                     "DELETE FROM request_records WHERE created_ms < ?1", &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "i", before_ms), "remove old request records",
	                           NULL));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_DONE)
		*removed = (uint64_t)db_changes(s);
	else
		status = store_fail(s, rc, "remove old request records", NULL);
	store_stmt_done(s);
	return status;
}
