/*
 * db_pg.h: the PostgreSQL driver of db.h (docs/scale-out.md).
 */
#ifndef KMS_DB_PG_H
#define KMS_DB_PG_H

#include <kms/status.h>

#include "kms/store/db.h"

typedef struct db_pg_config {
	const char *url;        /* postgresql://USER@HOST:PORT/DATABASE[?sslmode=...]; no password */
	const char *password;   /* from [store] password_file; NULL for none */
	unsigned connect_timeout_s; /* 0: 5 */
} db_pg_config;

/* KMS_INVALID_ARGUMENT, one line, for a URL libpq cannot parse or one that
 * holds a password. */
kms_status db_pg_url_check(const char *url) KMS_MUST_USE;

/* A new connection; KMS_UNAVAILABLE with libpq's reason when the server
 * cannot be reached or refuses it. Close with db_close. */
kms_status db_pg_open(const db_pg_config *cfg, db_conn **out) KMS_MUST_USE;

#endif
