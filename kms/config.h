/*
 * config.h: kmsd's one INI file (libinih).
 *
 * Every key is known: an unknown section or key, a bad URL, an out-of-range
 * number, an unreadable or group/other-readable PIN file is refused with one
 * line naming the file, line and key. See docs/config.md.
 */
#ifndef KMS_CONFIG_H
#define KMS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <kms/status.h>

#define KMSD_MAX_LISTEN 8
#define KMSD_MAX_IPC_PRINCIPALS 64
#define KMSD_NAME_MAX 64
#define KMSD_PATH_MAX 1024
#define KMSD_HTTP_CONNECTIONS_MAX 1024

/* Locked memory one worker may need for one request: the unpacked request
 * (its bytes and the structures around them) and the reply it builds, each
 * at most about max_request_bytes, and its arena's first chunk. */
#define KMSD_LOCKED_PER_WORKER(max_request) (2 * (size_t)(max_request) + ((size_t)1 << 20))
/* The default [limits] max_locked_bytes: every worker's need at once, and
 * room for the HSM PIN, the TLS key and the HSM layer's scratch blocks. */
#define KMSD_LOCKED_DEFAULT(workers, max_request) \
	((size_t)(workers) * KMSD_LOCKED_PER_WORKER(max_request) + ((size_t)4 << 20))

/* Request and reply bytes kmsd's ipc server holds for all peers at once:
 * a request in every worker, and two more being read or answered. */
#define KMSD_IPC_BUFFERED_MAX(workers, max_request) \
	((size_t)((workers) + 2) * (size_t)(max_request))

/* Descriptors kmsd keeps for itself whatever its peers hold: the store,
 * the audit log and its tiles, the HSM module's files, the config, logs. */
#define KMSD_FD_RESERVE(workers) (64u + 2u * (unsigned)(workers))

typedef struct kmsd_ipc_principal {
	uid_t uid;
	char name[KMSD_NAME_MAX];
} kmsd_ipc_principal;

/* A token kmsd may use: CK_TOKEN_INFO's manufacturerID, model and
 * serialNumber, blanks at the end trimmed (docs/config.md, [hsm] pinned). */
#define KMSD_HSM_PINS_MAX 8
typedef struct kmsd_hsm_pin {
	char manufacturer[33];
	char model[17];
	char serial[17];
} kmsd_hsm_pin;

typedef struct kmsd_config {
	/* [kmsd] */
	char region[33];
	char data_dir[KMSD_PATH_MAX];
	unsigned workers;
	/* [listen] */
	char listen[KMSD_MAX_LISTEN][KMSD_PATH_MAX];
	size_t n_listen;
	bool insecure_dev; /* allows plain tcp:// */
	gid_t ipc_gid;     /* the ipc sockets' group (default: kmsd's own) */
	unsigned ipc_max_connections;         /* ipc:// connections at once, all uids */
	unsigned ipc_max_connections_per_uid; /* and from one uid */
	unsigned ipc_read_timeout_ms; /* a message begun must arrive whole within */
	/* [tls] */
	char tls_cert_file[KMSD_PATH_MAX];
	char tls_key_file[KMSD_PATH_MAX];
	char tls_client_ca_file[KMSD_PATH_MAX];
	/* [hsm] */
	char hsm_module[KMSD_PATH_MAX];
	char hsm_token_label[33];
	char hsm_pin_file[KMSD_PATH_MAX];
	char hsm_pin_env[KMSD_NAME_MAX];
	/* [hsm] pinned = MANUFACTURER|MODEL|SERIAL, repeatable: the tokens kmsd
	 * may run on (kms/kmsd_residency.h); none: any token with the label. */
	kmsd_hsm_pin hsm_pins[KMSD_HSM_PINS_MAX];
	size_t n_hsm_pins;
	/* [limits] */
	size_t max_request_bytes;
	unsigned reply_send_timeout_ms; /* a peer that does not take its reply is dropped */
	unsigned queue_deadline_ms;     /* a request that waited longer for a worker: UNAVAILABLE */
	unsigned max_tls_connections;   /* tls+tcp:// and tcp:// pipes at once */
	size_t max_locked_bytes; /* secret memory kmsd may map; default: KMSD_LOCKED_DEFAULT */
	uint64_t gcm_max_encryptions;
	uint32_t gcm_reserve_block;
	unsigned tick_seconds; /* how often deletion and rotation are checked */
	/* The signed requests' replay table (authz_replay.h): entries, of them
	 * per access key, access keys at once. */
	uint32_t replay_entries, replay_per_key, replay_access_keys;
	/* [keys] */
	uint32_t metadata_cache_entries; /* keys whose metadata is cached (LRU) */
	uint32_t unwrapped_cache_entries; /* unwrapped key versions held in the HSM (LRU) */
	uint32_t max_hsm_resident;      /* keys kept as token objects, at most */
	uint32_t rewrap_pages_per_tick; /* KEK re-wrap: pages of 256 versions per tick */
	uint32_t seconds_per_day; /* 86400; tests shorten "days" to see windows pass */
	/* Tests only (KMS_TEST_SETTINGS): the retention tick reads "now" (unix
	 * seconds, decimal) from this file when it holds one, so a test moves
	 * the retention clock by writing it; "" for the real clock. */
	char retention_clock_file[512];
	/* Token buckets (docs/authorization.md, "Rate limits"): requests per
	 * second and bucket size, per principal and per key; rate 0 = off,
	 * burst 0 = the rate. Enforced by kms/authz/authz_enforce.c. */
	uint32_t principal_rate, principal_burst;
	uint32_t key_rate, key_burst;
	/* [authz] default_key_policy: the policy of a key created without one
	 * (docs/authorization.md); "" = the built-in default. Compiled at
	 * start (kms/authz/authz_enforce.c). */
	char authz_default_key_policy[KMSD_PATH_MAX];
	/* [audit] */
	char audit_origin[129];    /* checkpoint origin and signer name */
	unsigned audit_checkpoint_ms;
	bool audit_sync;           /* false only for benchmarks */
	char http_url[KMSD_PATH_MAX]; /* serves the tiles, /healthz, /metrics; "" = off */
	bool http_public;             /* allows a non-loopback http address */
	unsigned http_max_connections; /* more are answered 503 and closed */
	unsigned http_timeout_ms;      /* accept to the end of the request head */
	unsigned http_write_timeout_ms; /* the whole response */
	/* [store] url = postgresql://USER@HOST:PORT/DB (no password in it) and
	 * password_file (mode 0600): the store on PostgreSQL instead of SQLite
	 * in data_dir (docs/scale-out.md). "" = SQLite. */
	char store_url[1024];
	char store_password_file[KMSD_PATH_MAX];
	/* [process] user = NAME: when kmsd starts as root, the user (and its
	 * primary group) it runs as once everything is open (kms/kmsd_privs.h).
	 * "" = none: kmsd keeps whatever it was started as. */
	char run_user[KMSD_NAME_MAX];
	uid_t run_uid;
	gid_t run_gid;
	bool ipc_gid_set; /* [listen] ipc_group was given */
	/* [ipc_principals] uid = name */
	kmsd_ipc_principal ipc_principals[KMSD_MAX_IPC_PRINCIPALS];
	size_t n_ipc_principals;
} kmsd_config;

/* Fills cfg from the file at path with defaults for what it omits, then
 * checks the whole. On failure, the message (kms_error_message) names the
 * file, line and key. */
kms_status kmsd_config_load(const char *path, kmsd_config *cfg) KMS_MUST_USE;

/* The principal name for an ipc peer uid, or NULL when the uid is unknown. */
const char *kmsd_config_ipc_principal(const kmsd_config *cfg, uid_t uid);

#endif
