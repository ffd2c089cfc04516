/*
 * db.c: db.h's functions, each through the driver of its connection or
 * statement (db_driver.h).
 */
#include <stdio.h>

#include "kms/store/db.h"

#include "kms/store/db_driver.h"

db_rc db_prepare(db_conn *c, const char *sql, db_stmt **out)
{
	return c->drv->prepare(c, sql, out);
}

void db_finalize(db_stmt *s)
{
	if (s)
		s->drv->finalize(s);
}

void db_reset(db_stmt *s)
{
	if (!s)
		return;
	s->around = NULL;
	s->around_msg[0] = '\0';
	s->drv->reset(s);
}

void db_stmt_around(db_stmt *s, db_around_fn fn, void *arg)
{
	s->around = fn;
	s->around_arg = arg;
}

void db_stmt_fail_message(db_stmt *s, const char *message)
{
	snprintf(s->around_msg, sizeof s->around_msg, "%s", message);
}

db_rc db_bind_int64(db_stmt *s, int idx, int64_t v)
{
	return s->drv->bind_int64(s, idx, v);
}

db_rc db_bind_text(db_stmt *s, int idx, const char *text)
{
	return text ? s->drv->bind_text(s, idx, text) : s->drv->bind_null(s, idx);
}

db_rc db_bind_blob(db_stmt *s, int idx, const void *bytes, size_t len)
{
	return bytes ? s->drv->bind_blob(s, idx, bytes, len) : s->drv->bind_null(s, idx);
}

db_rc db_bind_null(db_stmt *s, int idx)
{
	return s->drv->bind_null(s, idx);
}

/* This thread's count of DB_CONFLICT answers (db_thread_conflicts). */
static _Thread_local uint64_t thread_conflicts;

uint64_t db_thread_conflicts(void)
{
	return thread_conflicts;
}

db_rc db_step(db_stmt *s)
{
	db_around_fn around = s->around;
	db_rc rc;
	if (around) {
		s->around = NULL; /* once, and not for the steps inside it */
		s->around_msg[0] = '\0';
		rc = around(s->around_arg, true, DB_OK);
		if (rc == DB_OK)
			rc = around(s->around_arg, false, s->drv->step(s));
	} else {
		rc = s->drv->step(s);
	}
	if (rc == DB_CONFLICT)
		thread_conflicts++;
	return rc;
}

int64_t db_column_int64(db_stmt *s, int col)
{
	return s->drv->column_int64(s, col);
}

const char *db_column_text(db_stmt *s, int col)
{
	return s->drv->column_text(s, col);
}

const void *db_column_blob(db_stmt *s, int col)
{
	return s->drv->column_blob(s, col);
}

size_t db_column_bytes(db_stmt *s, int col)
{
	return s->drv->column_bytes(s, col);
}

bool db_column_is_null(db_stmt *s, int col)
{
	return s->drv->column_is_null(s, col);
}

int64_t db_changes(db_stmt *s)
{
	return s->drv->changes(s);
}

const char *db_errmsg(db_stmt *s)
{
	if (!s)
		return "";
	return s->around_msg[0] ? s->around_msg : s->drv->errmsg(s);
}

const char *db_errstr(db_stmt *s)
{
	return s ? s->drv->errstr(s) : "";
}

db_rc db_exec(db_conn *c, const char *sql)
{
	db_rc rc = c->drv->exec(c, sql);
	if (rc == DB_CONFLICT)
		thread_conflicts++;
	return rc;
}

const char *db_conn_errstr(db_conn *c)
{
	return c->drv->conn_errstr(c);
}

const char *db_conn_errmsg(db_conn *c)
{
	return c->drv->conn_errmsg(c);
}

bool db_in_transaction(db_conn *c)
{
	return c->drv->in_transaction(c);
}

void db_close(db_conn *c)
{
	if (c)
		c->drv->close(c);
}

const char *db_driver_name(const db_conn *c)
{
	return c->drv->name;
}
