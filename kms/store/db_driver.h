/*
 * db_driver.h: what a driver of db.h implements (db.c calls through it).
 * Not for use outside kms/store/.
 *
 * A driver's connection and statement structs start with db_conn and
 * db_stmt, whose only member is the driver, so db.c finds it.
 */
#ifndef KMS_DB_DRIVER_H
#define KMS_DB_DRIVER_H

#include "kms/store/db.h"

typedef struct db_driver {
	const char *name;
	db_rc (*prepare)(db_conn *c, const char *sql, db_stmt **out);
	void (*finalize)(db_stmt *s);
	void (*reset)(db_stmt *s);
	db_rc (*bind_int64)(db_stmt *s, int idx, int64_t v);
	db_rc (*bind_text)(db_stmt *s, int idx, const char *v);
	db_rc (*bind_blob)(db_stmt *s, int idx, const void *p, size_t n);
	db_rc (*bind_null)(db_stmt *s, int idx);
	db_rc (*step)(db_stmt *s);
	int64_t (*column_int64)(db_stmt *s, int col);
	const char *(*column_text)(db_stmt *s, int col);
	const void *(*column_blob)(db_stmt *s, int col);
	size_t (*column_bytes)(db_stmt *s, int col);
	bool (*column_is_null)(db_stmt *s, int col);
	int64_t (*changes)(db_stmt *s);
	const char *(*errmsg)(db_stmt *s);
	const char *(*errstr)(db_stmt *s);
	db_rc (*exec)(db_conn *c, const char *sql);
	const char *(*conn_errstr)(db_conn *c);
	const char *(*conn_errmsg)(db_conn *c);
	bool (*in_transaction)(db_conn *c);
	void (*close)(db_conn *c);
} db_driver;

struct db_conn {
	const db_driver *drv;
};

struct db_stmt {
	const db_driver *drv;
	/* db_stmt_around, for the next step only. */
	db_around_fn around;
	void *around_arg;
	char around_msg[256]; /* "": db_errmsg is the driver's */
};

#endif
