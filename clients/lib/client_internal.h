/*
 * client_internal.h: what the files of libkmsclient share. Not installed.
 */
#ifndef KMS_CLIENT_INTERNAL_H
#define KMS_CLIENT_INTERNAL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include <kms/client.h>
#include <kms/client_raw.h>
#include <kms/data_key_cache.h>

#include "proto/status_wire.h"

/* No refusal recorded on an ipc dialer (client_ipc_dialer.refused_uid). */
#define CLIENT_IPC_NONE UINT64_MAX
/* A pipe whose peer uid the kernel did not give: closed too. */
#define CLIENT_IPC_UID_UNKNOWN (UINT64_MAX - 1)
/* sun_path's size on Linux, with the NUL. */
#define CLIENT_IPC_PATH_MAX 108
/* An ipc:// endpoint as given: the path, the scheme and a little slack. */
#define CLIENT_IPC_URL_MAX (CLIENT_IPC_PATH_MAX + 16)

/* An ipc:// endpoint's dialer, whose every pipe must come from an accepted
 * uid (client_ipc.c). */
typedef struct client_ipc_dialer {
	int dialer_id;
	char path[CLIENT_IPC_PATH_MAX];
	char url[CLIENT_IPC_URL_MAX]; /* as dialled: its statistics' "url" */
	/* The uid of the last pipe closed for its uid; CLIENT_IPC_NONE when the
	 * last pipe was accepted, or none came yet. */
	_Atomic uint64_t refused_uid;
} client_ipc_dialer;

/* A tls+tcp:// endpoint's dialer and what its handshake used (client_tls.c). */
typedef struct client_tls_dialer client_tls_dialer;

/* The asynchronous calls' slot pool (client_async.c). */
typedef struct client_async client_async;

/* "r-" + 24 hex digits from 12 random bytes. */
#define CLIENT_REQUEST_ID_RANDOM 12
#define CLIENT_REQUEST_ID_LEN (2 + 2 * CLIENT_REQUEST_ID_RANDOM)

struct kms_client {
	nng_socket socket;
	uint64_t own_uid;     /* getuid() at open */
	uint64_t service_uid; /* the kms account's uid at open, or CLIENT_IPC_NONE */
	uint32_t server_uid;  /* KMS_CLIENT_SERVER_UID_UNSET: none */
	client_ipc_dialer ipc[KMS_CLIENT_MAX_ENDPOINTS];
	_Atomic size_t n_ipc; /* filled before each dialer starts */
	size_t n_endpoints;   /* all dialers, of every scheme */
	/* Pipes NNG has offered (ADD_PRE) and not yet removed (REM_POST):
	 * zero means no connection to any endpoint. */
	_Atomic long pipes;
	client_tls_dialer *tls[KMS_CLIENT_MAX_ENDPOINTS]; /* client_tls.c */
	size_t n_tls;
	int timeout_ms;
	int resend_ms;
	char *access_key_id;  /* NULL: requests go unsigned */
	uint8_t *secret;      /* KMS_SIGN_SECRET_LEN bytes, kms_secure_alloc */
	char endpoints_text[160]; /* "ipc:///x, tls+tcp://h:1", for messages */
	/* Made by the first asynchronous call (under async_once), NULL
	 * before; freed by kms_client_close. */
	_Atomic(client_async *) async;
	nng_mtx *async_once;
};

/* ---- who serves an ipc:// endpoint (client_ipc.c) ---- */

/* Whether uid may serve an ipc:// endpoint: root, own (this process's uid)
 * or server_uid (KMS_CLIENT_SERVER_UID_UNSET: none). CLIENT_IPC_UID_UNKNOWN
 * never is. */
/* The system account kmsd runs as when installed (the Debian package's). */
#define KMS_CLIENT_SERVICE_USER "kms"
bool client_ipc_uid_accepted(uint64_t uid, uint64_t own, uint32_t server_uid,
                             uint64_t service_uid);
/* The uid of the account KMS_CLIENT_SERVICE_USER, or CLIENT_IPC_NONE. */
uint64_t client_ipc_service_uid(void);

/* Registers the pipe check on c's socket: every pipe of a dialer added with
 * client_ipc_add is closed before it is used unless the kernel's peer uid
 * is accepted. Call before any dialer starts. */
kms_status client_ipc_watch(kms_client *c, kms_error *err) KMS_MUST_USE;

/* Before dialing path: a path that does not exist passes (the dialer keeps
 * trying); one that is not a socket, or whose owner is not accepted, is
 * refused with KMS_UNAVAILABLE naming the path and the owner. */
kms_status client_ipc_check_path(const kms_client *c, const char *path,
                                 kms_error *err) KMS_MUST_USE;

/* Puts dialer (not started yet, made for url) under the pipe check, for
 * path. */
kms_status client_ipc_add(kms_client *c, nng_dialer dialer, const char *url,
                          const char *path, kms_error *err) KMS_MUST_USE;

/* After a call failed in the transport: when an ipc pipe was closed for its
 * uid (and none of that dialer came since), replaces *err with that refusal
 * and returns true. */
bool client_ipc_refusal(kms_client *c, kms_error *err);

/* Before a call, when c has no connection and every endpoint is an ipc://
 * path: waits (at most a second, and at most timeout_ms) until NNG's first
 * dial of each has come back; when none has a listener (no socket file, or
 * the dial was refused), puts the first one's cause in *err and returns
 * true: the call fails at once. Makes no connection of its own. */
bool client_ipc_all_down(kms_client *c, int timeout_ms, kms_error *err);

/* ---- why a tls+tcp:// endpoint does not answer (client_tls.c) ---- */

/* Records the dialer for url (its statistics are found by it) and the TLS
 * settings in opts, to explain a failed call later. */
kms_status client_tls_add(kms_client *c, const nng_url *url,
                          const kms_client_options *opts, const char *server_name,
                          kms_error *err) KMS_MUST_USE;

/* After a call failed in the transport: when a tls+tcp:// dialer has no
 * connection and NNG's statistics show its handshakes failed (or its
 * connections refused), replaces *err with one line naming the endpoint
 * and the cause (found with one diagnostic handshake, each step bounded by
 * budget_ms) and returns true. */
bool client_tls_failure(kms_client *c, int budget_ms, kms_error *err);

/* Frees what client_tls_add recorded. */
void client_tls_free(kms_client *c);

/* ---- which access key signs (client_credentials.c) ---- */

/* The access key opts choose (kms/client.h, kms_client_options): sets
 * *access_key_id and *secret (both NULL: unsigned), loading a credentials
 * file into *creds when that is the choice (release it with
 * kms_credentials_free once the key is copied). A file that cannot be used
 * is KMS_INVALID_ARGUMENT with err naming it. */
kms_status client_credentials_pick(const kms_client_options *opts, kms_credentials *creds,
                                   const char **access_key_id,
                                   const uint8_t **secret, kms_error *err) KMS_MUST_USE;

/* ---- the data-key cache (data_key_cache.c) ---- */

/* The client a cache was made on (the envelope calls check it is theirs). */
kms_client *client_data_key_cache_client(const kms_data_key_cache *cache);

/* Resets *err (NULL is fine). */
void client_error_clear(kms_error *err);

/* Records status, origin and a printf-style line in *err; returns status. */
kms_status client_fail(kms_error *err, kms_status status, kms_error_origin origin,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Copies untrusted text into dst (cap bytes with the NUL), replacing
 * control characters with '?' so a peer cannot steer a terminal. */
void client_copy_clean(char *dst, size_t cap, const char *src);

/*
 * Request-building memory: every allocation lives until client_arena_free,
 * which wipes and frees it all. Requests are built on the stack and in an
 * arena, packed, and dropped; nothing is unpacked into an arena.
 */
typedef struct client_arena {
	struct client_arena_block *blocks;
} client_arena;

/* size zeroed bytes, or NULL when out of memory. */
void *client_arena_alloc(client_arena *arena, size_t size);
void client_arena_free(client_arena *arena);

/*
 * protobuf-c's generated structs take `char *` and `uint8_t *` even for
 * fields it only reads while packing. A request built here is only packed,
 * never freed with free_unpacked, so lending a caller's const string to it
 * is safe; this is the one place the const goes.
 */
static inline char *client_lend(const char *s)
{
	return (char *)(uintptr_t)s;
}

static inline uint8_t *client_lend_bytes(const uint8_t *p)
{
	return (uint8_t *)(uintptr_t)p;
}

/* A StringPair list (encryption context, tags) from pairs (may be NULL/0),
 * in the arena. KMS_INVALID_ARGUMENT for a NULL or empty key, a NULL value
 * or a key given twice; what names the list in the message. */
kms_status client_pairs(const kms_context_pair *pairs, size_t n, const char *what,
                        client_arena *arena, Kms__StringPair ***out, size_t *n_out,
                        kms_error *err) KMS_MUST_USE;

/* How every call that fills a caller's struct starts: resets *err, then
 * zeroes out (size bytes) so a failed call leaves nothing to free.
 * KMS_INVALID_ARGUMENT "OP: out is required" when out is NULL. */
kms_status client_begin(void *out, size_t size, const char *op, kms_error *err) KMS_MUST_USE;

/* Checks a required string argument: non-NULL, non-empty. */
kms_status client_need(const char *value, const char *op, const char *what,
                       kms_error *err) KMS_MUST_USE;

/*
 * Sends req (after setting schema_version, a fresh request id and, when the
 * client has an access key, a credential) and waits for the answer. On
 * KMS_OK *resp has status OK and its result field `expect` set; otherwise
 * *resp is NULL and err says why (the server's status and message, or a
 * transport or protocol failure).
 */
kms_status client_roundtrip(kms_client *client, Kms__Request *req,
                            Kms__Response__ResultCase expect,
                            Kms__Response **resp, kms_error *err) KMS_MUST_USE;

/* Output copies. Each fails with KMS_INTERNAL: out of memory, or a
 * protocol error when the server's value does not fit. */
kms_status client_copy_key_id(char dst[KMS_KEY_ID_MAX + 1], const char *src,
                              kms_error *err) KMS_MUST_USE;
kms_status client_dup_str(const char *src, char **out, kms_error *err) KMS_MUST_USE;
kms_status client_dup_bytes(ProtobufCBinaryData src, uint8_t **out, size_t *out_len,
                            kms_error *err) KMS_MUST_USE;
kms_status client_dup_secret(ProtobufCBinaryData src, uint8_t **out, size_t *out_len,
                             kms_error *err) KMS_MUST_USE;

/* ---- one exchange's pieces, shared by the blocking calls (client.c) and
 * the asynchronous ones (client_async.c) ---- */

/* Wipes the message's body and frees it; NULL is ignored. */
void client_msg_wipe_free(nng_msg *msg);

/* req as sent, packed into *out: a fresh request id (into id) when req has
 * none, the current schema version when it says 0, a credential when the
 * client has an access key and req has none. *sent_id is the id sent:
 * req's own (valid while req is) or id. */
kms_status client_request_pack(kms_client *c, const Kms__Request *req, nng_msg **out,
                               char id[CLIENT_REQUEST_ID_LEN + 1], const char **sent_id,
                               kms_error *err) KMS_MUST_USE;

/* Unpacks answer (always consumed: wiped and freed) with the wiping
 * allocator and checks that it answers request_id and speaks this
 * client's schema version. KMS_OK with *resp set, whatever its status. */
kms_status client_answer_unpack(kms_client *c, nng_msg *answer, const char *request_id,
                                Kms__Response **resp, kms_error *err) KMS_MUST_USE;

/* The server's verdict in r as a kms_status, with its message in err. */
kms_status client_server_status(const Kms__Response *r, kms_error *err);

/* An NNG failure rv of a call as KMS_UNAVAILABLE, one line in err. */
kms_status client_transport_error(kms_client *c, int rv, kms_error *err);

/* The resend time a call's context gets (NNG_OPT_REQ_RESENDTIME). */
nng_duration client_resend_time(const kms_client *c);

/* ---- the asynchronous calls (client_async.c) ---- */

/* Before the socket closes: refuses new calls, cancels those in flight
 * (each callback is called once, canceled) and waits at most wait_ms for
 * every callback to return, then frees the pool. False when a callback
 * did not return in time: the pool is left allocated (NNG may still use
 * it) and so must the client be. */
bool client_async_close(kms_client *c, unsigned wait_ms);

/* Protocol failure: "answer to OP ...". */
kms_status client_protocol_error(kms_error *err, const char *op, const char *what);

#endif
