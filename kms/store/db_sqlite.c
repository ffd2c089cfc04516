/*
 * db_sqlite.c: the SQLite driver of db.h (and db_sqlite.h). A db_conn is
 * an SQLite connection opened with extended result codes; a db_stmt one of
 * its prepared statements, with the result code of its last call and the
 * rows its last completed step changed.
 */
#include "kms/store/db_sqlite.h"

#include <limits.h>
#include <stdlib.h>

struct db_conn {
	sqlite3 *db;
	int last_rc; /* of the last db_prepare or db_exec */
};

struct db_stmt {
	sqlite3_stmt *stmt;
	int last_rc;     /* of the last db_step or db_bind_* */
	int64_t changes; /* db_changes */
};

/* The kind of an extended SQLite result code. */
static db_rc rc_kind(int rc)
{
	switch (rc) {
	case SQLITE_OK: return DB_OK;
	case SQLITE_ROW: return DB_ROW;
	case SQLITE_DONE: return DB_DONE;
	case SQLITE_CONSTRAINT_PRIMARYKEY:
	case SQLITE_CONSTRAINT_UNIQUE: return DB_DUPLICATE;
	case SQLITE_CONSTRAINT_FOREIGNKEY: return DB_FOREIGN_KEY;
	case SQLITE_CONSTRAINT_TRIGGER: return DB_TRIGGER;
	/* A failed sync at COMMIT: SQLite rolled the transaction back, but its
	 * frames may be whole in the WAL and applied at the next start
	 * (docs/robustness.md, "Known limits"). */
	case SQLITE_IOERR_FSYNC:
	case SQLITE_IOERR_DIR_FSYNC: return DB_IN_DOUBT;
	}
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED: return DB_CONFLICT;
	case SQLITE_IOERR:
	case SQLITE_FULL: return DB_IOERR;
	}
	return DB_ERROR;
}

int db_sqlite_open(const char *path, db_conn **out)
{
	*out = NULL;
	db_conn *c = calloc(1, sizeof *c);
	if (!c)
		return SQLITE_NOMEM;
	int rc = sqlite3_open_v2(path, &c->db,
	                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
	                                 SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_EXRESCODE,
	                         NULL);
	if (rc != SQLITE_OK) {
		sqlite3_close_v2(c->db);
		free(c);
		return rc;
	}
	sqlite3_extended_result_codes(c->db, 1);
	*out = c;
	return SQLITE_OK;
}

void db_sqlite_close(db_conn *c)
{
	if (!c)
		return;
	sqlite3_close_v2(c->db);
	free(c);
}

sqlite3 *db_sqlite_handle(db_conn *c)
{
	return c->db;
}

sqlite3_stmt *db_sqlite_stmt(db_stmt *s)
{
	return s->stmt;
}

db_rc db_prepare(db_conn *c, const char *sql, db_stmt **out)
{
	*out = NULL;
	db_stmt *s = calloc(1, sizeof *s);
	if (!s) {
		c->last_rc = SQLITE_NOMEM;
		return DB_ERROR;
	}
	int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->stmt, NULL);
	if (rc == SQLITE_OK && !s->stmt)
		rc = SQLITE_MISUSE; /* no statement in sql */
	c->last_rc = rc;
	if (rc != SQLITE_OK) {
		sqlite3_finalize(s->stmt);
		free(s);
		return rc_kind(rc);
	}
	*out = s;
	return DB_OK;
}

void db_finalize(db_stmt *s)
{
	if (!s)
		return;
	sqlite3_finalize(s->stmt);
	free(s);
}

void db_reset(db_stmt *s)
{
	if (!s)
		return;
	sqlite3_reset(s->stmt);
	sqlite3_clear_bindings(s->stmt);
}

static db_rc stmt_result(db_stmt *s, int rc)
{
	s->last_rc = rc;
	return rc_kind(rc);
}

db_rc db_bind_int64(db_stmt *s, int idx, int64_t v)
{
	return stmt_result(s, sqlite3_bind_int64(s->stmt, idx, v));
}

db_rc db_bind_text(db_stmt *s, int idx, const char *text)
{
	return stmt_result(s, sqlite3_bind_text(s->stmt, idx, text, -1, SQLITE_TRANSIENT));
}

db_rc db_bind_blob(db_stmt *s, int idx, const void *bytes, size_t len)
{
	if (len > INT_MAX)
		return stmt_result(s, SQLITE_TOOBIG);
	return stmt_result(s, sqlite3_bind_blob(s->stmt, idx, bytes, (int)len, SQLITE_TRANSIENT));
}

db_rc db_bind_null(db_stmt *s, int idx)
{
	return stmt_result(s, sqlite3_bind_null(s->stmt, idx));
}

db_rc db_step(db_stmt *s)
{
	int rc = sqlite3_step(s->stmt);
	s->changes = rc == SQLITE_DONE && !sqlite3_stmt_readonly(s->stmt)
	                     ? sqlite3_changes(sqlite3_db_handle(s->stmt))
	                     : 0;
	return stmt_result(s, rc);
}

int64_t db_column_int64(db_stmt *s, int col)
{
	return sqlite3_column_int64(s->stmt, col);
}

const char *db_column_text(db_stmt *s, int col)
{
	return (const char *)sqlite3_column_text(s->stmt, col);
}

const void *db_column_blob(db_stmt *s, int col)
{
	return sqlite3_column_blob(s->stmt, col);
}

size_t db_column_bytes(db_stmt *s, int col)
{
	int n = sqlite3_column_bytes(s->stmt, col);
	return n > 0 ? (size_t)n : 0;
}

bool db_column_is_null(db_stmt *s, int col)
{
	return sqlite3_column_type(s->stmt, col) == SQLITE_NULL;
}

int64_t db_changes(db_stmt *s)
{
	return s->changes;
}

const char *db_errmsg(db_stmt *s)
{
	return s ? sqlite3_errmsg(sqlite3_db_handle(s->stmt)) : "";
}

const char *db_errstr(db_stmt *s)
{
	return s ? sqlite3_errstr(s->last_rc) : "";
}

db_rc db_exec(db_conn *c, const char *sql)
{
	c->last_rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
	return rc_kind(c->last_rc);
}

const char *db_conn_errstr(db_conn *c)
{
	return sqlite3_errstr(c->last_rc);
}

const char *db_conn_errmsg(db_conn *c)
{
	return sqlite3_errmsg(c->db);
}

bool db_in_transaction(db_conn *c)
{
	return !sqlite3_get_autocommit(c->db);
}
