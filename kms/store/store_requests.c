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

#include "common/error.h"
#include "kms/store/store_internal.h"

kms_status store_request_get(store *st, const char *principal, const char *request_id,
                             store_request_record *out)
{
	db_stmt *s;
	memset(out, 0, sizeof *out);
	KMS_GUARD(store_stmt(st, S_REQUEST_GET,
	                     "SELECT op, digest, result, created_ms FROM request_records "
	                     "WHERE principal = ?1 AND request_id = ?2",
	                     &s));
	KMS_GUARD(store_bind_check(s, store_bind(s, "tt", principal, request_id),
	                           "read a request record", request_id));
	db_rc rc = db_step(s);
	kms_status status = KMS_OK;
	if (rc == DB_DONE) {
		status = KMS_FAIL(KMS_NOT_FOUND, "no record of request %s", request_id);
	} else if (rc != DB_ROW) {
		status = store_fail(s, rc, "read a request record", request_id);
	} else {
		size_t digest_len = db_column_bytes(s, 1);
		const void *digest = db_column_blob(s, 1);
		size_t result_len = db_column_bytes(s, 2);
		const void *result = db_column_blob(s, 2);
		int64_t op = db_column_int64(s, 0);
		if (digest_len != STORE_REQUEST_DIGEST_LEN || !digest || op < 1 || op > INT32_MAX ||
		    result_len > STORE_REQUEST_RESULT_MAX) {
			status = KMS_FAIL(KMS_INTERNAL, "store: the record of request %s is "
			                  "malformed", request_id);
		} else {
			out->op = (int)op;
			memcpy(out->digest, digest, STORE_REQUEST_DIGEST_LEN);
			out->created_ms = db_column_int64(s, 3);
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

kms_status store_request_put(store *st, const store_request_record *r, bool *added)
{
	db_stmt *s;
	*added = false;
	KMS_ENSURE(r->result_len <= STORE_REQUEST_RESULT_MAX, KMS_INTERNAL,
	           "store: a request record's result of %zu bytes", r->result_len);
	/* RETURNING says whether the row went in; a record of the same
	 * request committed (or being committed) by another replica makes
	 * this one nothing (PostgreSQL waits for that transaction first). */
	KMS_GUARD(store_stmt(st, S_REQUEST_PUT,
	                     "INSERT INTO request_records (principal, request_id, op, digest, "
	                     "result, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
	                     "ON CONFLICT (principal, request_id) DO NOTHING RETURNING op",
	                     &s));
	db_rc rc = r->result && r->result_len
	        ? store_bind(s, "ttibbi", r->principal, r->request_id, (int64_t)r->op,
	                     r->digest, (size_t)STORE_REQUEST_DIGEST_LEN, r->result,
	                     r->result_len, r->created_ms)
	        : store_bind(s, "ttibni", r->principal, r->request_id, (int64_t)r->op,
	                     r->digest, (size_t)STORE_REQUEST_DIGEST_LEN, r->created_ms);
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
