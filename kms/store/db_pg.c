/*
 * db_pg.c: the PostgreSQL driver of db.h, over libpq (docs/scale-out.md).
 *
 * One PGconn per db_conn (one thread at a time, as every driver). A
 * statement is prepared on the server on its first step, under a name of
 * its own ("k1", "k2", ...), from its SQL with ?N rewritten to $N outside
 * quoted text; parameter types are left to the server, which infers them
 * from where each parameter stands (a statement whose parameter it cannot
 * place fails at prepare, in tests, and gets a CAST). Integers and text are
 * sent as text, blobs as binary; rows come back in binary, whole (the store
 * pages its lists). A connection the server dropped is reset on the next
 * statement outside a transaction, and its statements are prepared again.
 *
 * SQLSTATEs: 23505 is DB_DUPLICATE; 40001 (serialization failure), 40P01
 * (deadlock) and 55P03 (lock not available) DB_CONFLICT; classes 08
 * (connection), 53 (resources: disk full), 57P (shutdown) and 58 (I/O), and
 * a connection gone, DB_IOERR; the rest DB_ERROR. Messages keep only the
 * server's primary text and the SQLSTATE: its DETAIL names key values.
 */
#include "kms/store/db_pg.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>

#include "common/error.h"
#include "kms/store/db_driver.h"

#define PARAMS_MAX 32
#define MSG_MAX 256
#define INT_TEXT 24

/* Type oids of the pg_type catalog (stable since PostgreSQL 7). */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_TEXT 25
#define OID_VARCHAR 1043

typedef struct pg_conn {
	db_conn base; /* first */
	PGconn *pg;
	unsigned epoch;       /* bumped at each reset: every statement prepares again */
	unsigned next_name;
	/* Whether the server had a transaction open after the last command:
	 * a connection lost inside one is not reset until the caller ends
	 * that transaction (ROLLBACK, or COMMIT: in doubt), so no statement of
	 * it runs on a new connection outside any transaction. */
	bool txn_open;
	db_rc last;           /* of the last db_prepare or db_exec */
	char msg[MSG_MAX];
} pg_conn;

typedef struct pg_stmt {
	db_stmt base; /* first */
	pg_conn *c;
	char name[16];
	char *sql;            /* with $N */
	int n_params;         /* the largest N */
	bool used[PARAMS_MAX]; /* which N appear ($N the server types itself) */
	unsigned prepared_at; /* the connection's epoch it was prepared in; 0: not yet */
	char *values[PARAMS_MAX];
	int lengths[PARAMS_MAX];
	int formats[PARAMS_MAX];
	char ints[PARAMS_MAX][INT_TEXT];
	PGresult *res;
	int row, rows;        /* row: the current one, -1 before the first */
	bool done;            /* executed; rows are being read */
	int64_t changes;
	db_rc last;           /* of the last step or bind */
	char msg[MSG_MAX];
} pg_stmt;

static const db_driver pg_driver;

/* ---- SQL and errors ---- */

/* Whether sql at i starts the keyword word (case-insensitive, whole word). */
static bool keyword_at(const char *sql, size_t i, const char *word)
{
	size_t n = strlen(word);
	if (i > 0 && (isalnum((unsigned char)sql[i - 1]) || sql[i - 1] == '_'))
		return false;
	return !strncasecmp(sql + i, word, n) &&
	       !(isalnum((unsigned char)sql[i + n]) || sql[i + n] == '_');
}

/*
 * The statement's SQL for PostgreSQL: every ?N outside '...' and "..."
 * written $N (*n: the largest N; used[N - 1] set for each one that
 * appears), SQLite's planner hints dropped ("INDEXED BY name": the store
 * names the index SQLite must use; PostgreSQL's planner has its own) and
 * "CROSS JOIN" (SQLite's fixed join order) written "JOIN". NULL when out
 * of memory or a parameter is bare or past PARAMS_MAX.
 */
static char *rewrite(const char *sql, int *n, bool used[PARAMS_MAX])
{
	size_t len = strlen(sql);
	char *out = malloc(len + 1);
	if (!out)
		return NULL;
	char quote = 0;
	size_t o = 0;
	*n = 0;
	memset(used, 0, PARAMS_MAX * sizeof *used);
	for (size_t i = 0; i < len; i++) {
		char ch = sql[i];
		if (quote) {
			quote = ch == quote ? 0 : quote;
		} else if (ch == '\'' || ch == '"') {
			quote = ch;
		} else if (keyword_at(sql, i, "INDEXED BY")) {
			i += strlen("INDEXED BY");
			while (sql[i] == ' ')
				i++;
			while (isalnum((unsigned char)sql[i]) || sql[i] == '_')
				i++;
			i--; /* the loop's i++ */
			continue;
		} else if (keyword_at(sql, i, "CROSS JOIN")) {
			memcpy(out + o, "JOIN", 4);
			o += 4;
			i += strlen("CROSS JOIN") - 1;
			continue;
		} else if (ch == '?') {
			long v = 0;
			size_t j = i + 1;
			while (sql[j] >= '0' && sql[j] <= '9' && v <= PARAMS_MAX)
				v = v * 10 + (sql[j++] - '0');
			if (j == i + 1 || v < 1 || v > PARAMS_MAX) {
				free(out);
				return NULL;
			}
			if (v > *n)
				*n = (int)v;
			used[v - 1] = true;
			ch = '$';
		}
		out[o++] = ch;
	}
	out[o] = '\0';
	return out;
}

static bool sqlstate_is(const char *state, const char *prefix)
{
	return state && !strncmp(state, prefix, strlen(prefix));
}

static db_rc classify(pg_conn *c, const PGresult *res, bool committing)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	/* The connection went away: before COMMIT nothing was applied; during
	 * it, the server may have committed before it went. */
	if (PQstatus(c->pg) != CONNECTION_OK || !state || sqlstate_is(state, "08"))
		return committing ? DB_IN_DOUBT : DB_IOERR;
	if (sqlstate_is(state, "23505"))
		return DB_DUPLICATE;
	if (sqlstate_is(state, "23503"))
		return DB_FOREIGN_KEY;
	if (sqlstate_is(state, "KM001"))
		return DB_TRIGGER;
	if (sqlstate_is(state, "40001") || sqlstate_is(state, "40P01") ||
	    sqlstate_is(state, "55P03"))
		return DB_CONFLICT;
	if (sqlstate_is(state, "53") || sqlstate_is(state, "57P") || sqlstate_is(state, "58"))
		return DB_IOERR;
	return DB_ERROR;
}

/* A short name of a kind, for messages beside the server's text. */
static const char *kind_name(db_rc rc)
{
	switch (rc) {
	case DB_DUPLICATE: return "unique violation";
	case DB_FOREIGN_KEY: return "foreign key violation";
	case DB_TRIGGER: return "refused by a rule of the schema";
	case DB_CONFLICT: return "serialization failure or deadlock";
	case DB_IOERR: return "the database failed or cannot be reached";
	case DB_IN_DOUBT: return "the connection was lost during COMMIT";
	case DB_OK: case DB_ROW: case DB_DONE: return "ok";
	default: return "error";
	}
}

/* The server's primary message and SQLSTATE, or libpq's own line. */
static void describe(pg_conn *c, const PGresult *res, char *out, size_t cap)
{
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (primary)
		snprintf(out, cap, "%s (SQLSTATE %s)", primary, state ? state : "?");
	else
		snprintf(out, cap, "%s", PQerrorMessage(c->pg));
	out[strcspn(out, "\n")] = '\0';
}

/* After each command: whether a transaction is open on the server (kept
 * when the connection is gone: then libpq no longer knows). */
static void note_txn(pg_conn *c)
{
	PGTransactionStatusType t = PQtransactionStatus(c->pg);
	if (t != PQTRANS_UNKNOWN)
		c->txn_open = t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

/* A connection the server dropped, outside a transaction: reset, so the
 * next statement runs on a new one (statements prepare again). */
static void revive(pg_conn *c)
{
	if (PQstatus(c->pg) == CONNECTION_OK || c->txn_open)
		return;
	PQreset(c->pg);
	c->epoch++;
}

static bool starts(const char *sql, const char *word)
{
	return !strncasecmp(sql, word, strlen(word));
}

/* A COMMIT or ROLLBACK that failed because the connection went: the
 * transaction is over either way (COMMIT's caller was told in doubt). */
static void ended_by_loss(pg_conn *c, const char *sql)
{
	if (PQstatus(c->pg) != CONNECTION_OK &&
	    (starts(sql, "COMMIT") || starts(sql, "END") || starts(sql, "ROLLBACK") ||
	     starts(sql, "ABORT")))
		c->txn_open = false;
}

/* sql ends the transaction whose connection is gone: ROLLBACK has nothing
 * left to undo (DB_OK); COMMIT may or may not have been applied
 * (DB_IN_DOUBT). Either way the next statement may reset the connection.
 * DB_ERROR when sql ends nothing (it fails as DB_IOERR). */
static db_rc end_lost_txn(pg_conn *c, const char *sql)
{
	if (PQstatus(c->pg) == CONNECTION_OK || !c->txn_open)
		return DB_ERROR;
	if (starts(sql, "ROLLBACK") || starts(sql, "ABORT")) {
		c->txn_open = false;
		return DB_OK;
	}
	if (starts(sql, "COMMIT") || starts(sql, "END")) {
		c->txn_open = false;
		snprintf(c->msg, sizeof c->msg, "the connection to PostgreSQL was lost before "
		         "COMMIT was answered");
		return c->last = DB_IN_DOUBT;
	}
	return DB_ERROR;
}

/* ---- statements ---- */

static db_rc pg_prepare(db_conn *dc, const char *sql, db_stmt **out)
{
	pg_conn *c = (pg_conn *)dc;
	*out = NULL;
	pg_stmt *s = calloc(1, sizeof *s);
	if (!s)
		return DB_ERROR;
	s->base.drv = &pg_driver;
	s->c = c;
	s->sql = rewrite(sql, &s->n_params, s->used);
	if (!s->sql) {
		snprintf(c->msg, sizeof c->msg, "a statement's parameters are not ?1..?%d",
		         PARAMS_MAX);
		free(s);
		return DB_ERROR;
	}
	snprintf(s->name, sizeof s->name, "k%u", ++c->next_name);
	s->row = -1;
	*out = &s->base;
	return DB_OK;
}

static void clear_result(pg_stmt *s)
{
	PQclear(s->res);
	s->res = NULL;
	s->row = -1;
	s->rows = 0;
	s->done = false;
}

static void clear_params(pg_stmt *s)
{
	for (int i = 0; i < PARAMS_MAX; i++) {
		if (s->values[i] && s->values[i] != s->ints[i])
			free(s->values[i]);
		s->values[i] = NULL;
		s->lengths[i] = 0;
		s->formats[i] = 0;
	}
}

static void pg_reset(db_stmt *ds)
{
	pg_stmt *s = (pg_stmt *)ds;
	clear_result(s);
	clear_params(s);
}

static void pg_finalize(db_stmt *ds)
{
	if (!ds)
		return;
	pg_stmt *s = (pg_stmt *)ds;
	pg_reset(ds);
	/* The server's statement goes with the connection (or a reset). */
	free(s->sql);
	free(s);
}

static db_rc param_slot(pg_stmt *s, int idx)
{
	if (idx < 1 || idx > s->n_params) {
		snprintf(s->msg, sizeof s->msg, "parameter %d of %d", idx, s->n_params);
		return DB_ERROR;
	}
	int i = idx - 1;
	if (s->values[i] && s->values[i] != s->ints[i])
		free(s->values[i]);
	s->values[i] = NULL;
	s->lengths[i] = 0;
	s->formats[i] = 0;
	return DB_OK;
}

static db_rc pg_bind_int64(db_stmt *ds, int idx, int64_t v)
{
	pg_stmt *s = (pg_stmt *)ds;
	db_rc rc = param_slot(s, idx);
	if (rc != DB_OK)
		return rc;
	snprintf(s->ints[idx - 1], INT_TEXT, "%lld", (long long)v);
	s->values[idx - 1] = s->ints[idx - 1];
	return DB_OK;
}

static db_rc pg_bind_text(db_stmt *ds, int idx, const char *v)
{
	pg_stmt *s = (pg_stmt *)ds;
	db_rc rc = param_slot(s, idx);
	if (rc != DB_OK)
		return rc;
	if (!v)
		return DB_OK;
	if (!(s->values[idx - 1] = strdup(v)))
		return DB_ERROR;
	return DB_OK;
}

static db_rc pg_bind_blob(db_stmt *ds, int idx, const void *p, size_t n)
{
	pg_stmt *s = (pg_stmt *)ds;
	db_rc rc = param_slot(s, idx);
	if (rc != DB_OK)
		return rc;
	if (n > INT32_MAX) {
		snprintf(s->msg, sizeof s->msg, "parameter %d: a blob of %zu bytes", idx, n);
		return DB_ERROR;
	}
	char *copy = malloc(n ? n : 1);
	if (!copy)
		return DB_ERROR;
	if (n)
		memcpy(copy, p, n);
	s->values[idx - 1] = copy;
	s->lengths[idx - 1] = (int)n;
	s->formats[idx - 1] = 1;
	return DB_OK;
}

static db_rc pg_bind_null(db_stmt *ds, int idx)
{
	return param_slot((pg_stmt *)ds, idx);
}

static db_rc failed(pg_stmt *s, PGresult *res)
{
	db_rc rc = s->last = classify(s->c, res, false);
	describe(s->c, res, s->msg, sizeof s->msg);
	PQclear(res);
	return rc;
}

static db_rc server_prepare(pg_stmt *s)
{
	pg_conn *c = s->c;
	revive(c);
	if (s->prepared_at == c->epoch + 1)
		return DB_OK;
	/* A parameter the SQL never uses (the store binds the same list to
	 * sibling statements) gets a type, text, so the server accepts it;
	 * the others the server infers from where they stand. */
	Oid types[PARAMS_MAX] = { 0 };
	for (int i = 0; i < s->n_params; i++)
		types[i] = s->used[i] ? 0 : OID_TEXT;
	PGresult *res = PQprepare(c->pg, s->name, s->sql, s->n_params, types);
	if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
		return failed(s, res);
	PQclear(res);
	s->prepared_at = c->epoch + 1;
	return DB_OK;
}

static db_rc execute(pg_stmt *s)
{
	db_rc ended = end_lost_txn(s->c, s->sql);
	if (ended != DB_ERROR) {
		s->last = ended;
		snprintf(s->msg, sizeof s->msg, "%s", s->c->msg);
		s->done = true;
		return ended;
	}
	db_rc rc = server_prepare(s);
	if (rc != DB_OK)
		return rc;
	bool committing = starts(s->sql, "COMMIT") || starts(s->sql, "END");
	PGresult *res = PQexecPrepared(s->c->pg, s->name, s->n_params,
	                               (const char *const *)s->values, s->lengths, s->formats, 1);
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	note_txn(s->c);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		db_rc why = s->last = classify(s->c, res, committing);
		describe(s->c, res, s->msg, sizeof s->msg);
		PQclear(res);
		ended_by_loss(s->c, s->sql);
		return why;
	}
	const char *n = PQcmdTuples(res);
	s->changes = n && *n ? strtoll(n, NULL, 10) : 0;
	s->res = res;
	s->rows = st == PGRES_TUPLES_OK ? PQntuples(res) : 0;
	s->row = -1;
	s->done = true;
	return DB_OK;
}

static db_rc pg_step(db_stmt *ds)
{
	pg_stmt *s = (pg_stmt *)ds;
	if (!s->done) {
		db_rc rc = execute(s);
		if (rc != DB_OK)
			return rc;
	}
	if (s->row + 1 < s->rows) {
		s->row++;
		return DB_ROW;
	}
	s->row = s->rows;
	return DB_DONE;
}

static bool on_row(const pg_stmt *s, int col)
{
	return s->res && s->row >= 0 && s->row < s->rows && col >= 0 && col < PQnfields(s->res);
}

static bool pg_column_is_null(db_stmt *ds, int col)
{
	pg_stmt *s = (pg_stmt *)ds;
	return !on_row(s, col) || PQgetisnull(s->res, s->row, col);
}

static uint64_t big_endian(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static int64_t pg_column_int64(db_stmt *ds, int col)
{
	pg_stmt *s = (pg_stmt *)ds;
	if (pg_column_is_null(ds, col))
		return 0;
	const unsigned char *p = (const unsigned char *)PQgetvalue(s->res, s->row, col);
	int len = PQgetlength(s->res, s->row, col);
	switch (PQftype(s->res, col)) {
	case OID_INT8:
		return len == 8 ? (int64_t)big_endian(p, 8) : 0;
	case OID_INT4:
		return len == 4 ? (int64_t)(int32_t)(uint32_t)big_endian(p, 4) : 0;
	case OID_INT2:
		return len == 2 ? (int64_t)(int16_t)(uint16_t)big_endian(p, 2) : 0;
	case OID_BOOL:
		return len == 1 ? p[0] != 0 : 0;
	default:
		return 0; /* not an integer column: a statement bug, seen in tests */
	}
}

static const char *pg_column_text(db_stmt *ds, int col)
{
	pg_stmt *s = (pg_stmt *)ds;
	if (pg_column_is_null(ds, col))
		return NULL;
	Oid type = PQftype(s->res, col);
	if (type != OID_TEXT && type != OID_VARCHAR)
		return NULL;
	return PQgetvalue(s->res, s->row, col); /* libpq ends every value with a NUL */
}

static const void *pg_column_blob(db_stmt *ds, int col)
{
	pg_stmt *s = (pg_stmt *)ds;
	if (pg_column_is_null(ds, col))
		return NULL;
	return PQgetvalue(s->res, s->row, col);
}

static size_t pg_column_bytes(db_stmt *ds, int col)
{
	pg_stmt *s = (pg_stmt *)ds;
	if (pg_column_is_null(ds, col))
		return 0;
	return (size_t)PQgetlength(s->res, s->row, col);
}

static int64_t pg_changes(db_stmt *ds)
{
	return ((pg_stmt *)ds)->changes;
}

static const char *pg_errmsg(db_stmt *ds)
{
	return ((pg_stmt *)ds)->msg;
}

static const char *pg_errstr(db_stmt *ds)
{
	return kind_name(((pg_stmt *)ds)->last);
}

/* ---- connections ---- */

static db_rc pg_exec(db_conn *dc, const char *sql)
{
	pg_conn *c = (pg_conn *)dc;
	db_rc ended = end_lost_txn(c, sql);
	if (ended != DB_ERROR)
		return ended;
	revive(c);
	PGresult *res = PQexec(c->pg, sql);
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	note_txn(c);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		PQclear(res);
		return c->last = DB_OK;
	}
	bool committing = starts(sql, "COMMIT") || starts(sql, "END");
	db_rc rc = c->last = classify(c, res, committing);
	ended_by_loss(c, sql);
	describe(c, res, c->msg, sizeof c->msg);
	PQclear(res);
	return rc;
}

static bool pg_in_transaction(db_conn *dc)
{
	return ((pg_conn *)dc)->txn_open;
}

static const char *pg_conn_errmsg(db_conn *dc)
{
	return ((pg_conn *)dc)->msg;
}

static const char *pg_conn_errstr(db_conn *dc)
{
	return kind_name(((pg_conn *)dc)->last);
}

static void pg_close(db_conn *dc)
{
	if (!dc)
		return;
	pg_conn *c = (pg_conn *)dc;
	PQfinish(c->pg);
	free(c);
}

static const db_driver pg_driver = {
	.name = "postgresql",
	.prepare = pg_prepare,
	.finalize = pg_finalize,
	.reset = pg_reset,
	.bind_int64 = pg_bind_int64,
	.bind_text = pg_bind_text,
	.bind_blob = pg_bind_blob,
	.bind_null = pg_bind_null,
	.step = pg_step,
	.column_int64 = pg_column_int64,
	.column_text = pg_column_text,
	.column_blob = pg_column_blob,
	.column_bytes = pg_column_bytes,
	.column_is_null = pg_column_is_null,
	.changes = pg_changes,
	.errmsg = pg_errmsg,
	.errstr = pg_errstr,
	.exec = pg_exec,
	.conn_errstr = pg_conn_errstr,
	.conn_errmsg = pg_conn_errmsg,
	.in_transaction = pg_in_transaction,
	.close = pg_close,
};

/* Whether every host of a libpq host list is this machine: a Unix socket
 * directory, localhost, 127.0.0.0/8 or ::1. NULL or empty: libpq's default,
 * the local socket. */
static bool host_local(const char *hosts)
{
	if (!hosts || !hosts[0])
		return true;
	char one[256];
	for (const char *p = hosts; *p;) {
		size_t n = strcspn(p, ",");
		if (n == 0 || n >= sizeof one)
			return false;
		memcpy(one, p, n);
		one[n] = '\0';
		struct in_addr v4;
		struct in6_addr v6;
		bool local = one[0] == '/' || !strcmp(one, "localhost") ||
		             (inet_pton(AF_INET, one, &v4) == 1 &&
		              (ntohl(v4.s_addr) >> 24) == 127) ||
		             (inet_pton(AF_INET6, one, &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6));
		if (!local)
			return false;
		p += n;
		if (*p == ',')
			p++;
	}
	return true;
}

kms_status db_pg_url_check(const char *url)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(url, &err);
	if (!opts) {
		PQfreemem(err);
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "[store] url does not parse as a PostgreSQL "
		                "URL (postgresql://USER@HOST:PORT/DATABASE)");
	}
	kms_status st = KMS_OK;
	const char *host = NULL, *hostaddr = NULL, *sslmode = NULL;
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (o->val && !strcmp(o->keyword, "password"))
			st = KMS_FAIL(KMS_INVALID_ARGUMENT, "[store] url holds a password: remove it "
			              "and put the password alone in [store] password_file");
		else if (!strcmp(o->keyword, "host"))
			host = o->val;
		else if (!strcmp(o->keyword, "hostaddr"))
			hostaddr = o->val;
		else if (!strcmp(o->keyword, "sslmode"))
			sslmode = o->val;
	}
	/* Off this machine the password and every wrapped key cross the
	 * network: only with the server's certificate checked. */
	if (st == KMS_OK && !(host_local(host) && (!hostaddr || host_local(hostaddr))) &&
	    !(sslmode && !strcmp(sslmode, "verify-full")))
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "[store] url names a server off this machine "
		              "without sslmode=verify-full: add ?sslmode=verify-full (and "
		              "sslrootcert=FILE of the server's CA)");
	PQconninfoFree(opts);
	return st;
}

static void notice_ignore(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

kms_status db_pg_open(const db_pg_config *cfg, db_conn **out)
{
	*out = NULL;
	KMS_GUARD(db_pg_url_check(cfg->url));
	pg_conn *c = calloc(1, sizeof *c);
	KMS_ENSURE(c, KMS_INTERNAL, "store: out of memory");
	c->base.drv = &pg_driver;
	char timeout[16];
	snprintf(timeout, sizeof timeout, "%u", cfg->connect_timeout_s ? cfg->connect_timeout_s : 5);
	const char *keys[] = { "dbname", "password", "connect_timeout", "application_name",
		               "client_encoding", NULL };
	const char *vals[] = { cfg->url, cfg->password, timeout, "kmsd", "UTF8", NULL };
	c->pg = PQconnectdbParams(keys, vals, 1);
	if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
		char why[MSG_MAX] = "out of memory";
		if (c->pg)
			snprintf(why, sizeof why, "%s", PQerrorMessage(c->pg));
		why[strcspn(why, "\n")] = '\0';
		PQfinish(c->pg);
		free(c);
		return KMS_FAIL(KMS_UNAVAILABLE, "store: cannot connect to PostgreSQL: %s", why);
	}
	/* The server's notices ("does not exist, skipping") are not errors,
	 * and libpq would print them raw on stderr, kmsd's log. */
	PQsetNoticeProcessor(c->pg, notice_ignore, NULL);
	*out = &c->base;
	return KMS_OK;
}
