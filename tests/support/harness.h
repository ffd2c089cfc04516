/*
 * harness.h: a real kmsd for end-to-end tests.
 *
 * Starts the kmsd binary (path in env KMS_TEST_KMSD) on the throw-away token
 * that tests/support/with-token made, with its own data dir, ipc socket, TLS
 * certificates and a free loopback port, and talks to it over real NNG
 * sockets with raw protobuf messages. Everything lives under
 * $KMS_TEST_TOKEN_DIR. Every wait is bounded.
 *
 * KMS_TEST_KMSD_WRAPPER ("valgrind --leak-check=full ...", words split at
 * spaces) starts kmsd behind a command, for scripts/valgrind; the harness's
 * waits on kmsd are then harness_time_scale() times longer.
 */
#ifndef KMS_TEST_HARNESS_H
#define KMS_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <nng/nng.h>

#include <kms/kms.pb-c.h>

#include "common/nng_close.h"

/* Test sockets close through kms_nng_close_bounded: NNG 1.5.2's nng_close
 * can hang (common/nng_close.h), and a test must not. */
#define TEST_CLOSE_WAIT_MS 2000

typedef struct harness {
	char dir[512];       /* $KMS_TEST_TOKEN_DIR */
	char config[600];
	char log[600];
	char ipc_url[600];
	char tls_url[128];
	char region[33];
	int tls_port;
	pid_t pid;
	nng_socket ipc;      /* REQ, dialled to ipc_url */
	bool ipc_open;
	/* With bootstrap (below): the first principal's credentials, as
	 * `kmsd --bootstrap-admin` wrote them. While access_key_id is set,
	 * harness_call and harness_call_on sign every request that carries no
	 * credential yet. */
	char credentials[600];    /* the credentials file */
	char secret_file[600];    /* the secret alone, 64 hex digits (kms-admin --secret-file) */
	char access_key_id[24];
	uint8_t secret[32];
} harness;

typedef struct harness_options {
	const char *region;        /* default "in-mum" */
	const char *extra_config;  /* appended verbatim (INI lines) */
	bool with_tls;             /* default listens on ipc only */
	unsigned workers;          /* default 4 */
	const char *crash_at;      /* sets KMS_TEST_CRASH_AT for the daemon */
	const char *data_subdir;   /* default "data" */
	/* Runs `kmsd --bootstrap-admin test-admin --roles admin,app,auditor`
	 * before the first start (a fresh data dir) and keeps its credentials
	 * in the harness. with_tls implies it: requests over tls+tcp:// must be
	 * signed. Later starts of the same harness reuse the credentials. */
	bool bootstrap;
	/* Authorization (docs/authorization.md): by default the data dir's
	 * store holds principal test-admin (roles admin, app, auditor), the ipc
	 * uid of the test, and [authz] default_key_policy allows test-admin
	 * every action; this replaces that policy file's path (NULL: the
	 * harness's own; "": none, kmsd's built-in default). */
	const char *default_key_policy;
	/* Sets [process] user = run_as (kmsd started as root runs as that
	 * user) and, just before kmsd starts, gives the whole test folder (the
	 * token, the data dir, the socket's directory) to that user and its
	 * group, as an operator would. */
	const char *run_as;
	/* More environment for kmsd: "NAME=VALUE" strings, NULL-terminated
	 * (LD_PRELOAD of a fault library, its control file). */
	const char *const *env;
	/* Under with-postgres: the store of the kmsd whose data dir this is
	 * (a path), shared as replicas share one (docs/scale-out.md); NULL:
	 * this data dir's own. */
	const char *store_of;
} harness_options;

/* The principal bootstrap creates. */
#define HARNESS_ADMIN "test-admin"

/* How many times longer the harness waits on kmsd: KMS_TEST_TIME_SCALE
 * (1..100), or 10 when KMS_TEST_KMSD_WRAPPER is set, else 1. */
int harness_time_scale(void);

/* Makes h a harness of its own folder, $KMS_TEST_TOKEN_DIR/name (config,
 * log, ipc socket, TLS port, data dir), on the same token: a second or
 * third kmsd beside the first, as replicas are. Before the first start. */
bool harness_replica_init(harness *h, const char *name);

/* Writes the config and starts kmsd; returns once Health answers over ipc
 * (at most 15 s) or false with a reason on stderr. */
bool harness_start(harness *h, const harness_options *opts);

/* Starts kmsd without waiting for it to be ready (for crash tests). */
bool harness_spawn(harness *h, const harness_options *opts);

/* After harness_spawn: waits (15 s, scaled) until kmsd answers Health over
 * ipc and its log says "ready:" more than ready_before times
 * (harness_ready_lines, taken before the spawn), then dials the harness's
 * socket. False, with a reason on stderr, otherwise. */
bool harness_wait_ready(harness *h, unsigned ready_before);
unsigned harness_ready_lines(const harness *h);

/* Creates principal name with roles (PRINCIPAL_ROLE_* bits) in the store
 * of the data dir opts names (kmsd must not be running: the store is
 * locked while it is); an existing one is left as it is. */
bool harness_add_principal(harness *h, const harness_options *opts, const char *name,
                           unsigned roles);

/* Under tests/support/with-postgres (KMS_TEST_PG_URL set): the [store] url
 * the harness gives the kmsd of h's data dir (opts->data_subdir): the
 * cluster's URL with a search_path of that data dir's own schema. False
 * when not under with-postgres or h has not been started. */
bool harness_store_url(const harness *h, const harness_options *opts, char *out, size_t cap);

/* Under with-postgres: runs one SQL statement on the store of h's kmsd
 * (harness_store_url's) and, when it returns a row and out is not NULL,
 * puts its first column's text in out ("" for none). False, with the
 * reason on stderr, when it fails. */
bool harness_store_query(const harness *h, const harness_options *opts, const char *sql,
                         char *out, size_t cap);

/* The same for SQL of one or more statements that return no rows. */
bool harness_store_exec(const harness *h, const harness_options *opts, const char *sql);

/* SIGTERM, then waits (at most 15 s); returns kmsd's exit status or -1. */
int harness_stop(harness *h);

/* SIGKILL and reap. */
void harness_kill9(harness *h);

/* Sends req (request_id and schema_version filled in if empty/zero) over
 * ipc and returns the unpacked response (free with
 * kms__response__free_unpacked(resp, NULL)), or NULL on transport failure. */
Kms__Response *harness_call(harness *h, Kms__Request *req);

/* Sends raw bytes over a fresh REQ socket to url; returns the raw reply
 * (malloc'ed, *len) or NULL when none came within timeout_ms. */
uint8_t *harness_raw(const char *url, const uint8_t *bytes, size_t n, int timeout_ms,
                     size_t *len);

/* Opens a REQ socket dialled to h's TLS listener with the client cert (or
 * without one when with_client_cert is false). */
bool harness_tls_socket(harness *h, bool with_client_cert, nng_socket *out);

/* The same, dialled to any tls+tcp:// url served with h's certificates. */
bool harness_tls_dial(harness *h, const char *url, bool with_client_cert, nng_socket *out);

/* harness_call over any REQ socket. */
Kms__Response *harness_call_on(harness *h, nng_socket s, Kms__Request *req);

/* Signs req as h's bootstrap credentials at timestamp (unix seconds):
 * sets req->credential to cred, whose mac points into mac. */
bool harness_sign(harness *h, Kms__Request *req, int64_t timestamp, Kms__Credential *cred,
                  uint8_t mac[32]);

/* Convenience: create an AES key, return its id (static buffer per call site
 * is the caller's: out must hold 35 bytes). */
bool harness_create_key(harness *h, const char *alias, char out[35]);

/* A loopback TCP port that was free a moment ago. */
int harness_free_port(void);

/* Whether the daemon's log contains needle. */
bool harness_log_contains(const harness *h, const char *needle);

/* Reads a whole file (malloc'ed, NUL-terminated) or NULL. */
char *harness_read_file(const char *path, size_t *len);

#endif
