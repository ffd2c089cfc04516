/*
 * kms/client.h: libkmsclient, the C client of kmsd.
 *
 * One kms_client holds one NNG REQ socket dialed to one or more endpoints
 * (REQ spreads requests over the connected ones). Every call below:
 *
 *   - blocks the calling thread until the answer arrives or the client's
 *     timeout passes (one deadline for the whole call);
 *   - is thread-safe: many threads may share one kms_client, each call runs
 *     on its own NNG context;
 *   - returns a kms_status: KMS_OK, the server's status, KMS_UNAVAILABLE for
 *     a transport failure (no connection, timeout, connection lost),
 *     KMS_INTERNAL for an answer that is not a valid kms response, or
 *     KMS_INVALID_ARGUMENT for arguments refused before anything is sent;
 *   - fills *err (when err is not NULL) with the status, where it came from
 *     and one line for a human: the server's message (control characters
 *     replaced) or the local reason. Never secret bytes;
 *   - on failure leaves every output zeroed: nothing to free.
 *
 * Memory: a plaintext (decrypt, data keys, random bytes) is returned in
 * kms_secure_alloc memory, which the caller releases with kms_secure_free
 * (or the struct's kms_*_free, which does that). Everything else is plain
 * memory released with the matching kms_*_free function. Output structs are
 * the caller's (usually on the stack); kms_*_free releases what they point
 * to and zeroes them, and accepts a zeroed struct.
 *
 * Plaintexts the library handles on the way (packed requests and responses,
 * unpacked messages) are wiped before release. NNG's own transport buffers
 * (and TLS records) are outside its reach.
 */
#ifndef KMS_CLIENT_H
#define KMS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/limits.h>
#include <kms/secmem.h>
#include <kms/sign.h>
#include <kms/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- limits and defaults ---- */

#define KMS_CLIENT_DEFAULT_ENDPOINT "ipc:///run/kms/kms.sock"
#define KMS_CLIENT_DEFAULT_TIMEOUT_MS 5000
/* The largest reply kmsd sends, with room for the envelope
 * (NNG_OPT_RECVMAXSZ). */
#define KMS_CLIENT_DEFAULT_MAX_RESPONSE KMS_RESPONSE_MAX_DEFAULT
#define KMS_CLIENT_MAX_ENDPOINTS 16

/* The wire's own limits (plaintext, batch, random, data key) are in
 * <kms/limits.h>. */
#define KMS_HASH_LEN 32                /* SHA-256 (RFC 6962 tree hashes) */
#define KMS_KEY_ID_MAX 64              /* "k-" + 32 hex digits, with room */
#define KMS_ERROR_MESSAGE_MAX 256

/* ---- errors ---- */

typedef enum kms_error_origin {
	KMS_ERROR_NONE = 0,  /* no error */
	KMS_ERROR_LOCAL,     /* refused before sending: argument, memory, TLS files */
	KMS_ERROR_TRANSPORT, /* no connection, no answer in time, connection lost */
	KMS_ERROR_PROTOCOL,  /* an answer came that is not a valid kms response */
	KMS_ERROR_SERVER,    /* kmsd answered with a status other than OK */
} kms_error_origin;

typedef struct kms_error {
	kms_status status;
	kms_error_origin origin;
	char message[KMS_ERROR_MESSAGE_MAX]; /* one line, "" when none */
	/* KMS_THROTTLED only: kmsd's hint, in milliseconds, of when a retry
	 * can pass its rate limits (docs/authorization.md); 0 otherwise. */
	uint32_t retry_after_ms;
} kms_error;

/* ---- the client ---- */

typedef struct kms_client kms_client;

typedef struct kms_client_options {
	/* URLs: ipc://PATH, tls+tcp://HOST:PORT, and tcp://HOST:PORT only with
	 * insecure_plain_tcp. 1..KMS_CLIENT_MAX_ENDPOINTS; NULL/0 means
	 * KMS_CLIENT_DEFAULT_ENDPOINT. */
	const char *const *endpoints;
	size_t n_endpoints;
	int timeout_ms;             /* per call, send to answer; 0: the default */
	/* Resend an unanswered request after this long (NNG_OPT_REQ_RESENDTIME).
	 * 0: never resend. Resends repeat non-idempotent operations (CreateKey)
	 * unless kmsd drops duplicates by request id, so it is off by default. */
	int resend_ms;
	size_t max_response_bytes;  /* 0: KMS_CLIENT_DEFAULT_MAX_RESPONSE */
	/* TLS, for tls+tcp:// endpoints: the CA that signed kmsd's certificate
	 * (required), this client's certificate and key (PEM files), and the
	 * name to check in kmsd's certificate (NULL: each URL's host). */
	const char *tls_ca_file;
	const char *tls_cert_file;
	const char *tls_key_file;
	const char *tls_server_name;
	bool insecure_plain_tcp;    /* allow tcp://: development only */
	/* Access key to sign every request with (kms/sign.h): NULL for none.
	 * The secret is copied into secure memory; the caller may wipe its own. */
	const char *access_key_id;
	const uint8_t *access_key_secret; /* KMS_SIGN_SECRET_LEN bytes */
	/* A credentials file to sign with (kms_credentials_load), read at
	 * open. Which access key signs, the first that is set:
	 *   1. access_key_id (with access_key_secret);
	 *   2. credentials_file;
	 *   3. $KMS_CREDENTIALS (a path; read with secure_getenv), unless
	 *      no_env_credentials;
	 *   4. none: requests go unsigned.
	 * A file that cannot be used fails the open (KMS_INVALID_ARGUMENT,
	 * origin KMS_ERROR_LOCAL, naming the file and what to fix). */
	const char *credentials_file;
	bool no_env_credentials;
	/* Who may serve an ipc:// endpoint. The socket file's owner (checked
	 * before dialing) and the uid of the process listening on it (the
	 * kernel's answer, checked on every connection before anything is
	 * sent) must be root, this process's own uid (getuid()), the system
	 * account "kms" (the one the Debian package runs kmsd as; only root
	 * makes such an account), or this server_uid.
	 * KMS_CLIENT_SERVER_UID_UNSET (0, what a zeroed struct holds): no
	 * other. */
	uint32_t server_uid;
} kms_client_options;

/* server_uid's "not set": root is accepted anyway, so 0 adds nothing. */
#define KMS_CLIENT_SERVER_UID_UNSET 0u

/* ---- credentials files (docs/request-signing.md, "Credentials file") ---- */

/* The environment variable naming a credentials file. */
#define KMS_CREDENTIALS_ENV "KMS_CREDENTIALS"
/* The largest credentials file read, in bytes. */
#define KMS_CREDENTIALS_FILE_MAX 4096
#define KMS_ACCESS_KEY_ID_LEN 22      /* "AK" and 20 of [A-Z2-7] */
#define KMS_PRINCIPAL_NAME_MAX 63     /* 1..63 of [A-Za-z0-9._-] */

/* An access key read from a credentials file. */
typedef struct kms_credentials {
	char principal[KMS_PRINCIPAL_NAME_MAX + 1]; /* "" when the file names none */
	char access_key_id[KMS_ACCESS_KEY_ID_LEN + 1];
	uint8_t *secret; /* KMS_SIGN_SECRET_LEN bytes, kms_secure_alloc */
} kms_credentials;

/*
 * Parses the text of a credentials file: lines "key = value" (spaces or
 * tabs around '=' and at either end), blank lines and '#' comments; the
 * keys access_key_id and secret (required) and principal (optional), each
 * at most once, nothing else. Lines end with LF (a CR anywhere is refused),
 * the last one may lack it; a NUL byte and more than
 * KMS_CREDENTIALS_FILE_MAX bytes are refused. name (a path, for messages)
 * may be NULL. KMS_OK with *out filled (release with kms_credentials_free),
 * else KMS_INVALID_ARGUMENT (or KMS_INTERNAL out of secure memory) with *out
 * zeroed and err saying which line and what is wrong, never its bytes.
 */
KMS_EXPORT kms_status kms_credentials_parse(const char *text, size_t len, const char *name,
                                            kms_credentials *out, kms_error *err) KMS_MUST_USE;

/*
 * Reads and parses the credentials file at path. Refused, with one line
 * naming path and what to do: a symbolic link (opened with O_NOFOLLOW),
 * anything but a regular file, a file owned by another uid than the
 * effective one or root, a mode with any group or other bit ("chmod 600
 * PATH"), a file over KMS_CREDENTIALS_FILE_MAX bytes, and whatever
 * kms_credentials_parse refuses. The text is read into secure memory and
 * wiped.
 */
KMS_EXPORT kms_status kms_credentials_load(const char *path, kms_credentials *out,
                                           kms_error *err) KMS_MUST_USE;

/* Wipes and frees the secret and zeroes *creds; a zeroed struct is fine. */
KMS_EXPORT void kms_credentials_free(kms_credentials *creds);

/*
 * Opens a client: creates the socket and starts a non-blocking dial to every
 * endpoint, so a down endpoint neither blocks nor fails the open (calls wait
 * for a connection within their timeout). Does not block on the network.
 * KMS_INVALID_ARGUMENT for a bad or refused URL, a missing CA for TLS, an
 * unreadable TLS file, a bad access key or a credentials file that cannot
 * be used (never then an unsigned client); KMS_UNAVAILABLE (origin
 * KMS_ERROR_TRANSPORT) for an ipc:// path that exists but is not a socket
 * or is owned by a uid not accepted (see server_uid); *out is then NULL.
 * A connection to an ipc:// peer whose uid is not accepted is closed before
 * anything is sent on it, and a call that found no other way to kmsd fails
 * with KMS_UNAVAILABLE naming the path and that uid.
 * A call made with no connection when every endpoint is an ipc:// path
 * with nothing listening (no socket file, connection refused) fails at
 * once with KMS_UNAVAILABLE naming the first path. A call that times out
 * while a tls+tcp:// endpoint's handshakes fail says why in err (one
 * diagnostic handshake, each step bounded by 2 s, after the timeout).
 */
KMS_EXPORT kms_status kms_client_open(const kms_client_options *opts,
                                      kms_client **out, kms_error *err) KMS_MUST_USE;

/* Closes the socket (aborting nothing: blocking callers must have returned)
 * and wipes the access key secret. Asynchronous calls still in flight
 * (kms/client_async.h) are canceled first: each callback is called once,
 * with KMS_UNAVAILABLE, and has returned before this does (it waits at
 * most 2 s for them; a callback must not call this on its own client).
 * NULL is ignored. */
KMS_EXPORT void kms_client_close(kms_client *client);

/* The request id of the last request this thread sent, through any client
 * (a call fills it once its request is made, answered or not; an id the
 * caller gave is returned as given); "" before the first. It names the
 * request in kmsd's audit log (docs/audit-log.md, request_id), so an
 * application can log it beside its own record of the call. Valid until
 * this thread's next call. */
KMS_EXPORT const char *kms_last_request_id(void);

/* Releases memory the library returned as plain memory (kms_key_policy's
 * policy, kms_client_call_bytes's answer). NULL is ignored. */
KMS_EXPORT void kms_free(void *p);

/* ---- names ---- */

typedef struct kms_context_pair {
	const char *key;   /* UTF-8, non-empty */
	const char *value; /* UTF-8, may be empty */
} kms_context_pair;

/* Mirrors proto KeySpec, number for number. */
typedef enum kms_key_spec {
	KMS_KEY_SPEC_UNSPECIFIED = 0, /* means AES_256 */
	KMS_KEY_SPEC_AES_256 = 1,
	KMS_KEY_SPEC_HMAC_SHA256 = 2,
	KMS_KEY_SPEC_ED25519 = 3,
	KMS_KEY_SPEC_ECC_P256 = 4,
} kms_key_spec;

/* Mirrors proto KeyUsage. */
typedef enum kms_key_usage {
	KMS_KEY_USAGE_UNSPECIFIED = 0, /* means ENCRYPT_DECRYPT */
	KMS_KEY_USAGE_ENCRYPT_DECRYPT = 1,
	KMS_KEY_USAGE_GENERATE_VERIFY_MAC = 2,
	KMS_KEY_USAGE_SIGN_VERIFY = 3,
} kms_key_usage;

/* Mirrors proto KeyProtection (docs/key-hierarchy.md). */
typedef enum kms_key_protection {
	KMS_KEY_PROTECTION_UNSPECIFIED = 0, /* in create: WRAPPED */
	KMS_KEY_PROTECTION_WRAPPED = 1,
	KMS_KEY_PROTECTION_HSM_RESIDENT = 2,
} kms_key_protection;

/* Mirrors proto KeyState. */
typedef enum kms_key_state {
	KMS_KEY_STATE_UNSPECIFIED = 0,
	KMS_KEY_STATE_ENABLED = 1,
	KMS_KEY_STATE_DISABLED = 2,
	KMS_KEY_STATE_PENDING_DELETION = 3,
	KMS_KEY_STATE_DESTROYED = 4,
} kms_key_state;

/* Wire names ("AES_256", "ENCRYPT_DECRYPT", "PENDING_DELETION"); a number
 * the library does not know gives "UNKNOWN". Never NULL. */
KMS_EXPORT const char *kms_key_spec_name(kms_key_spec spec);
KMS_EXPORT const char *kms_key_usage_name(kms_key_usage usage);
KMS_EXPORT const char *kms_key_state_name(kms_key_state state);
KMS_EXPORT const char *kms_key_protection_name(kms_key_protection protection);

/* Parses a wire name (case-insensitive); KMS_INVALID_ARGUMENT if unknown. */
KMS_EXPORT kms_status kms_key_spec_parse(const char *name, kms_key_spec *out) KMS_MUST_USE;
KMS_EXPORT kms_status kms_key_usage_parse(const char *name, kms_key_usage *out) KMS_MUST_USE;
/* Also takes the CLI's spellings "wrapped" and "hsm-resident". */
KMS_EXPORT kms_status kms_key_protection_parse(const char *name,
                                               kms_key_protection *out) KMS_MUST_USE;

/* ---- data plane ---- */

/* A ciphertext blob and the key version that sealed it. */
typedef struct kms_ciphertext {
	uint8_t *blob;            /* plain memory */
	size_t blob_len;
	char key_id[KMS_KEY_ID_MAX + 1];
	uint32_t key_version;
} kms_ciphertext;
KMS_EXPORT void kms_ciphertext_free(kms_ciphertext *ct);

/* A plaintext and the key version that opened it. */
typedef struct kms_plaintext {
	uint8_t *bytes;           /* kms_secure_alloc memory */
	size_t len;
	char key_id[KMS_KEY_ID_MAX + 1];
	uint32_t key_version;
} kms_plaintext;
KMS_EXPORT void kms_plaintext_free(kms_plaintext *pt);

/* A data key: its plaintext (absent from GenerateDataKeyWithoutPlaintext)
 * and the same key sealed under the KMS key. */
typedef struct kms_data_key {
	uint8_t *plaintext;       /* KMS_DATA_KEY_LEN bytes, kms_secure_alloc; or NULL */
	size_t plaintext_len;
	uint8_t *blob;            /* plain memory */
	size_t blob_len;
	char key_id[KMS_KEY_ID_MAX + 1];
	uint32_t key_version;
} kms_data_key;
KMS_EXPORT void kms_data_key_free(kms_data_key *dk);

/* Encrypts 1..KMS_ENCRYPT_MAX_PLAINTEXT bytes under key_id (a key id or an
 * alias), binding the encryption context (may be NULL/0; order free,
 * duplicate keys refused). */
KMS_EXPORT kms_status kms_encrypt(kms_client *client, const char *key_id,
                                  const uint8_t *plaintext, size_t plaintext_len,
                                  const kms_context_pair *context, size_t n_context,
                                  kms_ciphertext *out, kms_error *err) KMS_MUST_USE;

/* Decrypts a blob under exactly the context it was sealed with. key_id may
 * be NULL; when set, the blob must be under that key. out->bytes is secure
 * memory. */
KMS_EXPORT kms_status kms_decrypt(kms_client *client, const uint8_t *blob, size_t blob_len,
                                  const kms_context_pair *context, size_t n_context,
                                  const char *key_id,
                                  kms_plaintext *out, kms_error *err) KMS_MUST_USE;

typedef struct kms_reencrypted {
	kms_ciphertext ciphertext; /* the new blob, under key_id:key_version */
	char source_key_id[KMS_KEY_ID_MAX + 1];
	uint32_t source_key_version;
} kms_reencrypted;
KMS_EXPORT void kms_reencrypted_free(kms_reencrypted *re);

/* Re-seals a blob under destination_key_id (NULL: the source key's primary
 * version) and the destination context; the plaintext stays in kmsd. */
KMS_EXPORT kms_status kms_re_encrypt(kms_client *client, const uint8_t *blob, size_t blob_len,
                                     const kms_context_pair *source_context, size_t n_source_context,
                                     const char *destination_key_id,
                                     const kms_context_pair *destination_context,
                                     size_t n_destination_context,
                                     kms_reencrypted *out, kms_error *err) KMS_MUST_USE;

/* A fresh AES-256 data key: out->plaintext (secure memory) and out->blob. */
KMS_EXPORT kms_status kms_generate_data_key(kms_client *client, const char *key_id,
                                            const kms_context_pair *context, size_t n_context,
                                            kms_data_key *out, kms_error *err) KMS_MUST_USE;

/* The same, but only the blob: out->plaintext stays NULL. */
KMS_EXPORT kms_status kms_generate_data_key_without_plaintext(
	kms_client *client, const char *key_id, const kms_context_pair *context,
	size_t n_context, kms_data_key *out, kms_error *err) KMS_MUST_USE;

/* n (1..KMS_GENERATE_RANDOM_MAX) random bytes from the HSM, in *random
 * (kms_secure_alloc memory; release with kms_secure_free). */
KMS_EXPORT kms_status kms_generate_random(kms_client *client, size_t n, uint8_t **random,
                                          kms_error *err) KMS_MUST_USE;

/* ---- batches: 1..KMS_BATCH_MAX items, one result per item, in order ----
 *
 * The call's status is about the batch as a whole; each result has its own
 * status and message. results is the caller's array of n_items, zeroed by
 * the call; release with the matching *_results_free. */

typedef struct kms_encrypt_item {
	const char *key_id;
	const uint8_t *plaintext;
	size_t plaintext_len;
	const kms_context_pair *context;
	size_t n_context;
} kms_encrypt_item;

typedef struct kms_encrypt_result {
	kms_status status;
	char message[KMS_ERROR_MESSAGE_MAX];
	kms_ciphertext ciphertext; /* when status is KMS_OK */
} kms_encrypt_result;

KMS_EXPORT kms_status kms_batch_encrypt(kms_client *client, const kms_encrypt_item *items,
                                        size_t n_items, kms_encrypt_result *results,
                                        kms_error *err) KMS_MUST_USE;
KMS_EXPORT void kms_encrypt_results_free(kms_encrypt_result *results, size_t n);

typedef struct kms_decrypt_item {
	const uint8_t *blob;
	size_t blob_len;
	const kms_context_pair *context;
	size_t n_context;
	const char *key_id; /* may be NULL */
} kms_decrypt_item;

typedef struct kms_decrypt_result {
	kms_status status;
	char message[KMS_ERROR_MESSAGE_MAX];
	kms_plaintext plaintext; /* secure memory, when status is KMS_OK */
} kms_decrypt_result;

KMS_EXPORT kms_status kms_batch_decrypt(kms_client *client, const kms_decrypt_item *items,
                                        size_t n_items, kms_decrypt_result *results,
                                        kms_error *err) KMS_MUST_USE;
KMS_EXPORT void kms_decrypt_results_free(kms_decrypt_result *results, size_t n);

typedef struct kms_data_key_item {
	const char *key_id;
	const kms_context_pair *context;
	size_t n_context;
} kms_data_key_item;

typedef struct kms_data_key_result {
	kms_status status;
	char message[KMS_ERROR_MESSAGE_MAX];
	kms_data_key data_key; /* plaintext in secure memory, when status is KMS_OK */
} kms_data_key_result;

KMS_EXPORT kms_status kms_batch_generate_data_key(kms_client *client,
                                                  const kms_data_key_item *items,
                                                  size_t n_items,
                                                  kms_data_key_result *results,
                                                  kms_error *err) KMS_MUST_USE;
KMS_EXPORT void kms_data_key_results_free(kms_data_key_result *results, size_t n);

/* ---- signatures, MACs and pseudonyms ----
 *
 * A key's usage decides what it may do (kms_key_usage): SIGN_VERIFY keys
 * (ED25519, ECC_P256) sign and verify; GENERATE_VERIFY_MAC keys
 * (HMAC_SHA256) make and check MACs and pseudonyms. Any other use is
 * refused by kmsd with KMS_INVALID_ARGUMENT naming the key's usage. A
 * message is 1..KMS_SIGN_MESSAGE_MAX bytes; hash a larger one and sign its
 * digest (KMS_MESSAGE_DIGEST). Signatures, MACs, public keys and pseudonyms
 * are not secret: they come back in plain memory. */

/* Mirrors proto MessageType: what a signed or verified message is. */
typedef enum kms_message_type {
	KMS_MESSAGE_RAW = 1,    /* the message itself, 1..KMS_SIGN_MESSAGE_MAX bytes */
	KMS_MESSAGE_DIGEST = 2, /* its SHA-256, KMS_SIGN_DIGEST_LEN bytes (ECC_P256 keys) */
} kms_message_type;

/* Mirrors proto SigningAlgorithm: each signing key has one. */
typedef enum kms_signing_algorithm {
	KMS_SIGNING_ALGORITHM_UNSPECIFIED = 0,
	KMS_SIGNING_ED25519 = 1,       /* ED25519 keys: pure Ed25519 (RFC 8032), 64 bytes */
	KMS_SIGNING_ECDSA_SHA_256 = 2, /* ECC_P256 keys: ECDSA over SHA-256, DER */
} kms_signing_algorithm;

/* "ED25519", "ECDSA_SHA_256"; "UNSPECIFIED" for 0, "UNKNOWN" for a number
 * the library does not know. Never NULL. */
KMS_EXPORT const char *kms_signing_algorithm_name(kms_signing_algorithm algorithm);

/* A signature and the key version that made it. */
typedef struct kms_signature {
	uint8_t signature[KMS_SIGNATURE_MAX]; /* Ed25519: R || S; ECDSA: DER */
	size_t signature_len;
	char key_id[KMS_KEY_ID_MAX + 1];
	uint32_t key_version;
	kms_signing_algorithm algorithm;
} kms_signature;

/* Signs message (type: what it is) with key_id's primary version. Nothing
 * to free. */
KMS_EXPORT kms_status kms_sign(kms_client *client, const char *key_id,
                               const uint8_t *message, size_t message_len,
                               kms_message_type type, kms_signature *out,
                               kms_error *err) KMS_MUST_USE;

/* What Verify and VerifyMac said. A signature or MAC that does not verify
 * is not an error: the call is KMS_OK with valid false (and key_version
 * 0). */
typedef struct kms_verification {
	bool valid;
	char key_id[KMS_KEY_ID_MAX + 1];
	uint32_t key_version;            /* the version that verified; 0 when none did */
	kms_signing_algorithm algorithm; /* Verify only; UNSPECIFIED for a MAC */
} kms_verification;

/* Checks signature (1..KMS_SIGNATURE_MAX bytes) over message under key_id:
 * version key_version, or each of its versions that can still verify when
 * key_version is 0. Nothing to free. */
KMS_EXPORT kms_status kms_verify(kms_client *client, const char *key_id,
                                 const uint8_t *message, size_t message_len,
                                 kms_message_type type, const uint8_t *signature,
                                 size_t signature_len, uint32_t key_version,
                                 kms_verification *out, kms_error *err) KMS_MUST_USE;

/* A signing key's public half: DER SubjectPublicKeyInfo and the same as
 * PEM ("-----BEGIN PUBLIC KEY-----"), both checked to be one key. */
typedef struct kms_public_key {
	uint8_t *der;             /* plain memory */
	size_t der_len;
	char *pem;                /* plain memory, NUL-terminated */
	char key_id[KMS_KEY_ID_MAX + 1];
	uint32_t key_version;
	kms_key_spec key_spec;
	kms_signing_algorithm algorithm;
} kms_public_key;
KMS_EXPORT void kms_public_key_free(kms_public_key *pk);

/* The public key of key_id's version key_version (0: its primary). The
 * largest DER the library takes, in bytes (a P-256 key is 91, Ed25519 44). */
#define KMS_PUBLIC_KEY_DER_MAX 1024
KMS_EXPORT kms_status kms_get_public_key(kms_client *client, const char *key_id,
                                         uint32_t key_version, kms_public_key *out,
                                         kms_error *err) KMS_MUST_USE;

/* An HMAC-SHA256 and the key version that made it: keep the version to
 * verify after a rotation. */
typedef struct kms_mac {
	uint8_t mac[KMS_MAC_LEN];
	char key_id[KMS_KEY_ID_MAX + 1];
	uint32_t key_version;
} kms_mac;

/* The MAC of message (1..KMS_SIGN_MESSAGE_MAX bytes) under key_id's version
 * key_version (0: its primary). A message that starts with the pseudonym
 * domain prefix ("kms-pseudonym-v1" and a 0x00 byte, docs/pseudonyms.md)
 * is refused: only kms_pseudonymize makes those MACs. Nothing to free. */
KMS_EXPORT kms_status kms_generate_mac(kms_client *client, const char *key_id,
                                       const uint8_t *message, size_t message_len,
                                       uint32_t key_version, kms_mac *out,
                                       kms_error *err) KMS_MUST_USE;

/* Checks mac (KMS_MAC_LEN bytes) over message, as kms_verify does. */
KMS_EXPORT kms_status kms_verify_mac(kms_client *client, const char *key_id,
                                     const uint8_t *message, size_t message_len,
                                     const uint8_t *mac, size_t mac_len,
                                     uint32_t key_version, kms_verification *out,
                                     kms_error *err) KMS_MUST_USE;

/* One value to pseudonymize: 1..KMS_PSEUDONYM_VALUE_MAX bytes. */
typedef struct kms_pseudonym_value {
	const uint8_t *bytes;
	size_t len;
} kms_pseudonym_value;

/* Pseudonyms, one per value and in the values' order, each in the text
 * form of docs/pseudonyms.md ("kp_<8 hex>_<version>_<32 base32>", 46..55
 * characters of [a-z0-9_]), NUL-terminated; checked to name key_id and
 * key_version. */
typedef struct kms_pseudonyms {
	char (*pseudonyms)[KMS_PSEUDONYM_TEXT_SIZE]; /* n of them, plain memory */
	size_t n;
	char key_id[KMS_KEY_ID_MAX + 1];
	uint32_t key_version;
} kms_pseudonyms;
KMS_EXPORT void kms_pseudonyms_free(kms_pseudonyms *ps);

/*
 * Stable pseudonyms for n_values (1..KMS_PSEUDONYM_VALUES_MAX) values under
 * key_id's version key_version (0: its primary) and the context (may be
 * NULL/0; the encryption context's rules): the same key, version, context
 * and value give the same pseudonym, always. The request must also fit
 * kmsd's size bound ([limits] max_request_bytes, 8 MiB by default): 10,000
 * values of 1024 bytes do not, so send long lists in parts.
 */
KMS_EXPORT kms_status kms_pseudonymize(kms_client *client, const char *key_id,
                                       const kms_context_pair *context, size_t n_context,
                                       const kms_pseudonym_value *values, size_t n_values,
                                       uint32_t key_version, kms_pseudonyms *out,
                                       kms_error *err) KMS_MUST_USE;

/* ---- control plane ---- */

typedef struct kms_key_version {
	uint32_t version;
	int64_t created_at;     /* unix seconds */
	uint64_t encryptions;   /* random-IV encryptions reserved so far, in
	                         * blocks (docs/gcm-limits.md): not uses */
	char kek[65];           /* the KEK it is wrapped under; "": hsm-resident
	                         * or destroyed */
} kms_key_version;

typedef struct kms_tag {
	char *key;
	char *value;
} kms_tag;

/* What DescribeKey and friends say about a key; all strings are non-NULL
 * after a successful call. Release with kms_key_metadata_free. */
typedef struct kms_key_metadata {
	char *key_id;
	char *description;
	kms_key_spec key_spec;
	kms_key_usage key_usage;
	kms_key_state key_state;
	uint32_t primary_version;
	kms_key_version *versions;
	size_t n_versions;
	uint32_t rotation_period_days; /* 0: no automatic rotation */
	int64_t created_at;            /* unix seconds */
	int64_t next_rotation_at;      /* 0: none */
	int64_t deletion_date;         /* 0: not pending deletion */
	char *region;
	char **aliases;
	size_t n_aliases;
	kms_tag *tags;
	size_t n_tags;
	kms_key_protection protection;
	bool per_data_principal;       /* a sub-key per data principal */
} kms_key_metadata;
KMS_EXPORT void kms_key_metadata_free(kms_key_metadata *md);

typedef struct kms_create_key_params {
	const char *description;       /* NULL: none */
	kms_key_spec key_spec;         /* 0: AES_256 */
	kms_key_usage key_usage;       /* 0: ENCRYPT_DECRYPT */
	const kms_context_pair *tags;  /* key = tag key */
	size_t n_tags;
	const char *policy;            /* JSON; NULL: the default policy */
	uint32_t rotation_period_days; /* 0: no automatic rotation */
	const char *alias;             /* NULL: none; else "alias/..." */
	kms_key_protection protection; /* 0: WRAPPED */
	bool per_data_principal;       /* a sub-key per data principal (`dp` in the
	                                * context; docs/data-principals.md) */
} kms_create_key_params;

/* Creates a key in the HSM; out gets its metadata. */
KMS_EXPORT kms_status kms_create_key(kms_client *client, const kms_create_key_params *params,
                                     kms_key_metadata *out, kms_error *err) KMS_MUST_USE;

KMS_EXPORT kms_status kms_describe_key(kms_client *client, const char *key_id,
                                       kms_key_metadata *out, kms_error *err) KMS_MUST_USE;

typedef struct kms_key_list {
	kms_key_metadata *keys;
	size_t n_keys;
	char *next_page_token; /* "" on the last page */
} kms_key_list;
KMS_EXPORT void kms_key_list_free(kms_key_list *list);

/* One page of keys: limit 0 means the server's default (100); page_token
 * NULL or "" for the first page, then the previous next_page_token. */
KMS_EXPORT kms_status kms_list_keys(kms_client *client, uint32_t limit, const char *page_token,
                                    kms_key_list *out, kms_error *err) KMS_MUST_USE;

KMS_EXPORT kms_status kms_update_key_description(kms_client *client, const char *key_id,
                                                 const char *description,
                                                 kms_error *err) KMS_MUST_USE;
KMS_EXPORT kms_status kms_enable_key(kms_client *client, const char *key_id,
                                     kms_error *err) KMS_MUST_USE;
KMS_EXPORT kms_status kms_disable_key(kms_client *client, const char *key_id,
                                      kms_error *err) KMS_MUST_USE;

/* Makes a new primary version now; out (may be NULL) gets the metadata. */
KMS_EXPORT kms_status kms_rotate_key(kms_client *client, const char *key_id,
                                     kms_key_metadata *out, kms_error *err) KMS_MUST_USE;

/* days: 1..3650, or 0 to turn automatic rotation off. out may be NULL. */
KMS_EXPORT kms_status kms_set_rotation_period(kms_client *client, const char *key_id,
                                              uint32_t days, kms_key_metadata *out,
                                              kms_error *err) KMS_MUST_USE;

/* pending_window_days: 7..30, 0 means 30. The outputs may be NULL. */
KMS_EXPORT kms_status kms_schedule_key_deletion(kms_client *client, const char *key_id,
                                                uint32_t pending_window_days,
                                                int64_t *deletion_date,
                                                kms_key_state *state,
                                                kms_error *err) KMS_MUST_USE;

/* The key goes back to DISABLED; state may be NULL. */
KMS_EXPORT kms_status kms_cancel_key_deletion(kms_client *client, const char *key_id,
                                              kms_key_state *state,
                                              kms_error *err) KMS_MUST_USE;

/* alias_name is "alias/" + 1..250 of [A-Za-z0-9/_-]; target is a key id. */
KMS_EXPORT kms_status kms_create_alias(kms_client *client, const char *alias_name,
                                       const char *target_key_id, kms_error *err) KMS_MUST_USE;
KMS_EXPORT kms_status kms_update_alias(kms_client *client, const char *alias_name,
                                       const char *target_key_id, kms_error *err) KMS_MUST_USE;
KMS_EXPORT kms_status kms_delete_alias(kms_client *client, const char *alias_name,
                                       kms_error *err) KMS_MUST_USE;

typedef struct kms_alias {
	char *alias_name;
	char *target_key_id;
	int64_t created_at;
} kms_alias;

typedef struct kms_alias_list {
	kms_alias *aliases;
	size_t n_aliases;
	char *next_page_token; /* "" on the last page */
} kms_alias_list;
KMS_EXPORT void kms_alias_list_free(kms_alias_list *list);

/* One page of aliases, of one key when key_id is not NULL. */
KMS_EXPORT kms_status kms_list_aliases(kms_client *client, const char *key_id, uint32_t limit,
                                       const char *page_token, kms_alias_list *out,
                                       kms_error *err) KMS_MUST_USE;

/* *policy: the JSON policy document that applies to the key (release with
 * kms_free): its own, or the default kmsd applies to a key with none (a
 * kmsd older than that answers "" for such a key). */
KMS_EXPORT kms_status kms_get_key_policy(kms_client *client, const char *key_id,
                                         char **policy, kms_error *err) KMS_MUST_USE;
/* The same, and *is_default (may be NULL): true when the key has no policy
 * of its own and *policy is kmsd's default ([authz] default_key_policy, or
 * the built-in one). */
KMS_EXPORT kms_status kms_get_key_policy_info(kms_client *client, const char *key_id,
                                              char **policy, bool *is_default,
                                              kms_error *err) KMS_MUST_USE;
KMS_EXPORT kms_status kms_put_key_policy(kms_client *client, const char *key_id,
                                         const char *policy, kms_error *err) KMS_MUST_USE;

/* Adds or replaces tags (pair key = tag key; duplicates refused). */
KMS_EXPORT kms_status kms_tag_key(kms_client *client, const char *key_id,
                                  const kms_context_pair *tags, size_t n_tags,
                                  kms_error *err) KMS_MUST_USE;
/* Removes tags by key; keys the key does not have are ignored. *removed
 * (may be NULL) is how many tags kmsd removed, or KMS_UNTAG_UNKNOWN when its
 * reply does not say (a kmsd older than the count). */
#define KMS_UNTAG_UNKNOWN SIZE_MAX
KMS_EXPORT kms_status kms_untag_key(kms_client *client, const char *key_id,
                                    const char *const *tag_keys, size_t n_tag_keys,
                                    size_t *removed, kms_error *err) KMS_MUST_USE;

typedef struct kms_health {
	bool hsm_ok;
	char *region;
	char *version;
	uint64_t uptime_seconds;
	char *token_label;
	char *hsm_message;  /* why the HSM is not ok; "" when it is */
	uint64_t audit_size;
	char *principal;    /* who kmsd thinks is asking */
	/* The HSM token kmsd runs on, and whether its config pins it ([hsm]
	 * pinned: with pins, kmsd runs on no other token). "" from a kmsd
	 * older than these fields. */
	char *hsm_manufacturer;
	char *hsm_model;
	char *hsm_serial;
	bool hsm_pinned;
	/* Where kmsd keeps its state: its data directory (absolute) and the
	 * store's file. kmsd tells only an admin or an auditor: "" for any
	 * other principal, and from a kmsd older than these fields. */
	char *data_dir;
	char *store_path;
} kms_health;
KMS_EXPORT void kms_health_free(kms_health *h);

KMS_EXPORT kms_status kms_health_check(kms_client *client, kms_health *out,
                                       kms_error *err) KMS_MUST_USE;

/* ---- audit ---- */

typedef struct kms_checkpoint {
	char *checkpoint;       /* the signed note, as served at /checkpoint */
	uint64_t tree_size;
	uint8_t root_hash[KMS_HASH_LEN];
	char *verifier_key;     /* the note's verifier key: name+id+base64 key */
} kms_checkpoint;
KMS_EXPORT void kms_checkpoint_free(kms_checkpoint *cp);

KMS_EXPORT kms_status kms_get_checkpoint(kms_client *client, kms_checkpoint *out,
                                         kms_error *err) KMS_MUST_USE;

typedef struct kms_inclusion_proof {
	uint64_t index;
	uint64_t tree_size;
	uint8_t (*hashes)[KMS_HASH_LEN]; /* RFC 6962 audit path, leaf to root */
	size_t n_hashes;
	uint8_t *entry;                  /* the entry's JSON, not NUL-terminated */
	size_t entry_len;
} kms_inclusion_proof;
KMS_EXPORT void kms_inclusion_proof_free(kms_inclusion_proof *proof);

/* tree_size 0: the latest checkpoint's size. */
KMS_EXPORT kms_status kms_get_inclusion_proof(kms_client *client, uint64_t index,
                                              uint64_t tree_size, kms_inclusion_proof *out,
                                              kms_error *err) KMS_MUST_USE;

typedef struct kms_consistency_proof {
	uint64_t old_size;
	uint64_t new_size;
	uint8_t (*hashes)[KMS_HASH_LEN];
	size_t n_hashes;
} kms_consistency_proof;
KMS_EXPORT void kms_consistency_proof_free(kms_consistency_proof *proof);

/* new_size 0: the latest checkpoint's size. */
KMS_EXPORT kms_status kms_get_consistency_proof(kms_client *client, uint64_t old_size,
                                                uint64_t new_size, kms_consistency_proof *out,
                                                kms_error *err) KMS_MUST_USE;

#ifdef __cplusplus
}
#endif
#endif
