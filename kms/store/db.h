/*
 * db.h: the SQL driver interface the store's statements run on
 * (kms/store/store_*.c). A driver implements them for one database
 * (db_driver.h; db.c calls through it): SQLite (db_sqlite.c; opening a file
 * and what only SQLite has are in db_sqlite.h) and PostgreSQL (db_pg.c,
 * over libpq; docs/scale-out.md). docs/store-schema.md, "Drivers",
 * has the rules the SQL follows so that another driver can run it:
 * parameters numbered ?1 ?2 ... only; values are 64-bit integers, text,
 * blobs and NULL; RETURNING instead of a last-insert id; no function only
 * one database has.
 *
 * Not for use outside the store.
 */
#ifndef KMS_STORE_DB_H
#define KMS_STORE_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct db_conn db_conn; /* one connection; one thread at a time */
typedef struct db_stmt db_stmt; /* a prepared statement of one connection */

typedef enum db_rc {
	DB_OK = 0,
	DB_ROW,         /* db_step: a row is ready */
	DB_DONE,        /* db_step: no (more) rows; the statement completed */
	DB_DUPLICATE,   /* a UNIQUE / PRIMARY KEY violation */
	DB_FOREIGN_KEY, /* a REFERENCES violation: the row referred to is not there */
	DB_TRIGGER,     /* a trigger of the schema refused the change (RAISE); db_errmsg
	                 * is its text */
	DB_CONFLICT,    /* busy, locked; PostgreSQL's serialization failure, deadlock or
	                 * lock not available: retrying the whole transaction may succeed */
	DB_IOERR,       /* the storage failed (SQLite IOERR, FULL; later: connection lost);
	                 * nothing was changed */
	DB_IN_DOUBT,    /* the storage failed so that the change may or may not be applied
	                 * (SQLite: a failed sync at COMMIT; later: connection lost during
	                 * COMMIT) */
	DB_ERROR,       /* anything else */
} db_rc;

/* Prepares sql, one statement, for c; *out is NULL on failure (then
 * db_conn_errstr and db_conn_errmsg say why). Parameters are numbered ?1
 * ?2 ... only (never a bare ? or :name). The statement is meant to be kept
 * and run many times; free it with db_finalize. */
db_rc db_prepare(db_conn *c, const char *sql, db_stmt **out);

/* Frees s. NULL is ignored. */
void db_finalize(db_stmt *s);

/* Resets s to run again from the start and clears its bindings (all
 * NULL); afterwards s holds no read snapshot. NULL is ignored. */
void db_reset(db_stmt *s);

/* Binds parameter idx (from 1) of s to v. */
db_rc db_bind_int64(db_stmt *s, int idx, int64_t v);

/* Binds parameter idx of s to the NUL-terminated text, copied (NULL binds
 * NULL). */
db_rc db_bind_text(db_stmt *s, int idx, const char *text);

/* Binds parameter idx of s to len bytes, copied (bytes NULL binds NULL). */
db_rc db_bind_blob(db_stmt *s, int idx, const void *bytes, size_t len);

/* Binds parameter idx of s to NULL. */
db_rc db_bind_null(db_stmt *s, int idx);

/* Runs s's next execution in a transaction of its own, opened and closed by
 * `around`: called with before = true just before it runs (its result, if
 * not DB_OK, is the step's, and s does not run), then with before = false
 * and the step's rc (it commits, or rolls back when rc is neither DB_ROW
 * nor DB_DONE; what it returns is the step's). Every row of the statement
 * is read before that second call (both drivers' statements used with it
 * read every row at their first step: PostgreSQL's). Once: db_reset and
 * the step clear it. The store uses it to add an audit entry to a single
 * write's commit (kms/store/store.c, "companion"). */
typedef db_rc (*db_around_fn)(void *arg, bool before, db_rc rc);
void db_stmt_around(db_stmt *s, db_around_fn fn, void *arg);

/* Sets the message db_errmsg gives for s's last step: the around
 * function's failure, which is not the statement's own. Cleared by
 * db_reset. */
void db_stmt_fail_message(db_stmt *s, const char *message);

/* Runs s to its next row: DB_ROW (the columns are readable), DB_DONE (it
 * completed; a statement with RETURNING completes only at DB_DONE, after
 * its rows), or the kind of error. */
db_rc db_step(db_stmt *s);

/* Column col (from 0) of s's current row as an integer (0 for NULL). */
int64_t db_column_int64(db_stmt *s, int col);

/* Column col of s's current row as NUL-terminated text, or NULL for NULL
 * (or out of memory). Valid until the next db_step or db_reset of s. */
const char *db_column_text(db_stmt *s, int col);

/* Column col of s's current row as bytes, or NULL for NULL or none (a
 * zero-length blob). Valid until the next db_step or db_reset of s. */
const void *db_column_blob(db_stmt *s, int col);

/* The length in bytes of column col of s's current row, after
 * db_column_text (without the NUL) or db_column_blob. */
size_t db_column_bytes(db_stmt *s, int col);

/* Whether column col of s's current row is NULL. */
bool db_column_is_null(db_stmt *s, int col);

/* The rows s's last completed step changed (DB_DONE of an INSERT, UPDATE
 * or DELETE; rows changed by triggers and cascades not counted); 0 if the
 * last step did not complete it. It stays until the next db_step. */
int64_t db_changes(db_stmt *s);

/* The backend's message for s's last failure (a step or a bind): the
 * database's text (a constraint's name, a trigger's RAISE text), never a
 * bound value. Valid until the next call on s's connection. */
const char *db_errmsg(db_stmt *s);

/* A short name of the kind of s's last failure (SQLite: sqlite3_errstr of
 * its result code, e.g. "database is locked"), for messages next to
 * db_errmsg. */
const char *db_errstr(db_stmt *s);

/* Runs sql, parameterless statements that return no rows (BEGIN, COMMIT,
 * ROLLBACK, PRAGMA, DDL), on c. On failure db_conn_errstr and
 * db_conn_errmsg say why. */
db_rc db_exec(db_conn *c, const char *sql);

/* How many db_step and db_exec calls of this thread have answered
 * DB_CONFLICT (a serialization failure or deadlock) since it started. A
 * caller compares it around a unit of work: when it moved, the work failed
 * (or may have) on a conflict, and running it again whole may succeed. */
uint64_t db_thread_conflicts(void);

/* db_errstr and db_errmsg of c's last failed db_prepare or db_exec. */
const char *db_conn_errstr(db_conn *c);
const char *db_conn_errmsg(db_conn *c);

/* Whether c is inside an explicit transaction (begun, not yet committed
 * or rolled back). */
bool db_in_transaction(db_conn *c);

/* Closes c, of any driver; its statements are to be finalized first. NULL
 * is ignored. */
void db_close(db_conn *c);

/* The name of c's driver: "sqlite" or "postgresql". */
const char *db_driver_name(const db_conn *c);

#endif
