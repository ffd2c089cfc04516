/*
 * db_sqlite.h: what only the SQLite driver of db.h has: opening a file and
 * the raw handles, for the store's SQLite settings, WAL plumbing and
 * migrations (store.c) and the query-plan test. Not for the statements
 * (store_*.c): they use db.h only.
 */
#ifndef KMS_STORE_DB_SQLITE_H
#define KMS_STORE_DB_SQLITE_H

#include <sqlite3.h>

#include "kms/store/db.h"

/* Opens the existing file path read-write, never through a symlink, for
 * use by one thread at a time (SQLITE_OPEN_NOMUTEX), with extended result
 * codes. Returns an SQLite result code; on failure *out is NULL. */
int db_sqlite_open(const char *path, db_conn **out);

/* Closes c; its statements are to be finalized first. NULL is ignored. */
void db_sqlite_close(db_conn *c);

/* c's SQLite handle, for settings, hooks and checkpoints. */
sqlite3 *db_sqlite_handle(db_conn *c);

/* s's SQLite statement (the query-plan test reads its counters). */
sqlite3_stmt *db_sqlite_stmt(db_stmt *s);

#endif
