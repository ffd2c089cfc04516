/*
 * db_sqlite.c: the SQLite driver of db.h (and db_sqlite.h). A db_conn is
 * an SQLite connection opened with extended result codes; a db_stmt one of
 * its prepared statements, with the result code of its last call and the
 * rows its last completed step changed.
 */
#include "kms/store/db_sqlite.h"

#include <limits.h>
#include <stdlib.h>

#include "kms/store/db_driver.h"

typedef struct sq_conn {
	db_conn base; /* first: db.c's view */
	sqlite3 *db;
	int last_rc; /* of the last db_prepare or db_exec */
} sq_conn;

typedef struct sq_stmt {
	db_stmt base; /* first */
	sqlite3_stmt *stmt;
	int last_rc;     /* of the last db_step or db_bind_* */
	int64_t changes; /* db_changes */
} sq_stmt;

static const db_driver sqlite_driver;

static sq_conn *conn_of(db_conn *c)
{
	return (sq_conn *)(void *)c;
}

static sq_stmt *stmt_of(db_stmt *s)
{
	return (sq_stmt *)(void *)s;
}

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
	sq_conn *c = calloc(1, sizeof *c);
	if (!c)
		return SQLITE_NOMEM;
	c->base.drv = &sqlite_driver;
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
	*out = &c->base;
	return SQLITE_OK;
}

static void sq_close(db_conn *dc)
{
	sq_conn *c = conn_of(dc);
	sqlite3_close_v2(c->db);
	free(c);
}

void db_sqlite_close(db_conn *c)
{
	db_close(c);
}

sqlite3 *db_sqlite_handle(db_conn *c)
{
	return c->drv == &sqlite_driver ? conn_of(c)->db : NULL;
}

sqlite3_stmt *db_sqlite_stmt(db_stmt *s)
{
	return s->drv == &sqlite_driver ? stmt_of(s)->stmt : NULL;
}

static db_rc sq_prepare(db_conn *dc, const char *sql, db_stmt **out)
{
	sq_conn *c = conn_of(dc);
	*out = NULL;
	sq_stmt *s = calloc(1, sizeof *s);
	if (!s) {
		c->last_rc = SQLITE_NOMEM;
		return DB_ERROR;
	}
	s->base.drv = &sqlite_driver;
	int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->stmt, NULL);
	if (rc == SQLITE_OK && !s->stmt)
		rc = SQLITE_MISUSE; /* no statement in sql */
	c->last_rc = rc;
	if (rc != SQLITE_OK) {
		sqlite3_finalize(s->stmt);
		free(s);
		return rc_kind(rc);
	}
	*out = &s->base;
	return DB_OK;
}

static void sq_finalize(db_stmt *ds)
{
	sq_stmt *s = stmt_of(ds);
	sqlite3_finalize(s->stmt);
	free(s);
}

static void sq_reset(db_stmt *ds)
{
	sq_stmt *s = stmt_of(ds);
	sqlite3_reset(s->stmt);
	sqlite3_clear_bindings(s->stmt);
}

static db_rc stmt_result(sq_stmt *s, int rc)
{
	s->last_rc = rc;
	return rc_kind(rc);
}

static db_rc sq_bind_int64(db_stmt *ds, int idx, int64_t v)
{
	sq_stmt *s = stmt_of(ds);
	return stmt_result(s, sqlite3_bind_int64(s->stmt, idx, v));
}

static db_rc sq_bind_text(db_stmt *ds, int idx, const char *text)
{
	sq_stmt *s = stmt_of(ds);
	return stmt_result(s, sqlite3_bind_text(s->stmt, idx, text, -1, SQLITE_TRANSIENT));
}

static db_rc sq_bind_blob(db_stmt *ds, int idx, const void *bytes, size_t len)
{
	sq_stmt *s = stmt_of(ds);
	if (len > INT_MAX)
		return stmt_result(s, SQLITE_TOOBIG);
	return stmt_result(s, sqlite3_bind_blob(s->stmt, idx, bytes, (int)len, SQLITE_TRANSIENT));
}

static db_rc sq_bind_null(db_stmt *ds, int idx)
{
	sq_stmt *s = stmt_of(ds);
	return stmt_result(s, sqlite3_bind_null(s->stmt, idx));
}

static db_rc sq_step(db_stmt *ds)
{
	sq_stmt *s = stmt_of(ds);
	int rc = sqlite3_step(s->stmt);
	s->changes = rc == SQLITE_DONE && !sqlite3_stmt_readonly(s->stmt)
	                     ? sqlite3_changes(sqlite3_db_handle(s->stmt))
	                     : 0;
	return stmt_result(s, rc);
}

static int64_t sq_column_int64(db_stmt *ds, int col)
{
	return sqlite3_column_int64(stmt_of(ds)->stmt, col);
}

static const char *sq_column_text(db_stmt *ds, int col)
{
	return (const char *)sqlite3_column_text(stmt_of(ds)->stmt, col);
}

static const void *sq_column_blob(db_stmt *ds, int col)
{
	return sqlite3_column_blob(stmt_of(ds)->stmt, col);
}

static size_t sq_column_bytes(db_stmt *ds, int col)
{
	int n = sqlite3_column_bytes(stmt_of(ds)->stmt, col);
	return n > 0 ? (size_t)n : 0;
}

static bool sq_column_is_null(db_stmt *ds, int col)
{
	return sqlite3_column_type(stmt_of(ds)->stmt, col) == SQLITE_NULL;
}

static int64_t sq_changes(db_stmt *ds)
{
	return stmt_of(ds)->changes;
}

static const char *sq_errmsg(db_stmt *ds)
{
	return sqlite3_errmsg(sqlite3_db_handle(stmt_of(ds)->stmt));
}

static const char *sq_errstr(db_stmt *ds)
{
	return sqlite3_errstr(stmt_of(ds)->last_rc);
}

static db_rc sq_exec(db_conn *dc, const char *sql)
{
	sq_conn *c = conn_of(dc);
	c->last_rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
	return rc_kind(c->last_rc);
}

static const char *sq_conn_errstr(db_conn *dc)
{
	return sqlite3_errstr(conn_of(dc)->last_rc);
}

static const char *sq_conn_errmsg(db_conn *dc)
{
	return sqlite3_errmsg(conn_of(dc)->db);
}

static bool sq_in_transaction(db_conn *dc)
{
	return !sqlite3_get_autocommit(conn_of(dc)->db);
}

static const db_driver sqlite_driver = {
	.name = "sqlite",
	.prepare = sq_prepare,
	.finalize = sq_finalize,
	.reset = sq_reset,
	.bind_int64 = sq_bind_int64,
	.bind_text = sq_bind_text,
	.bind_blob = sq_bind_blob,
	.bind_null = sq_bind_null,
	.step = sq_step,
	.column_int64 = sq_column_int64,
	.column_text = sq_column_text,
	.column_blob = sq_column_blob,
	.column_bytes = sq_column_bytes,
	.column_is_null = sq_column_is_null,
	.changes = sq_changes,
	.errmsg = sq_errmsg,
	.errstr = sq_errstr,
	.exec = sq_exec,
	.conn_errstr = sq_conn_errstr,
	.conn_errmsg = sq_conn_errmsg,
	.in_transaction = sq_in_transaction,
	.close = sq_close,
};
