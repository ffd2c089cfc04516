/*
 * hsm.h: the PKCS#11 layer. Everything kms does with key material goes
 * through here; nothing above this layer sees a key byte of a KEK.
 *
 * One hsm per process: the module is dlopen'ed, C_Initialize'd with
 * CKF_OS_LOCKING_OK, the token found by label and the user logged in with a
 * PIN read from a file (mode 0600 or stricter) or an environment variable,
 * never from argv.
 *
 * Sessions: each calling thread gets its own session on first use, kept in a
 * thread-local slot (no lock on the hot path) and closed when the thread
 * exits. Object handles are cached by CKA_ID (a read-mostly lock). A call
 * that fails with CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED,
 * CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT or CKR_USER_NOT_LOGGED_IN
 * re-opens the session (and logs in again), one that fails with a stale
 * object handle looks the object up again, and either is retried once; a
 * second failure is returned. Threads that used an hsm must be joined (or
 * still running) when hsm_close runs.
 *
 * Objects are named by CKA_ID (1..HSM_ID_MAX bytes, chosen by the caller)
 * and carry a CKA_LABEL for humans. All functions block on the HSM, are
 * thread-safe, and on failure return a status with a one-line message
 * (kms_error_message()) naming the call, the object label and the CK_RV by
 * name; they never write secret bytes to a message.
 */
#ifndef KMS_HSM_H
#define KMS_HSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

#define HSM_ID_MAX 64
#define HSM_LABEL_MAX 64
#define HSM_AES256_KEY_LEN 32
#define HSM_GCM_IV_LEN 12
#define HSM_GCM_TAG_LEN 16
#define HSM_ED25519_PUBLIC_LEN 32
#define HSM_ED25519_SIG_LEN 64

typedef struct hsm hsm;

typedef struct hsm_config {
	const char *module_path; /* NULL: SoftHSMv2's module */
	const char *token_label; /* required */
	const char *pin_file;    /* PIN in a file (first line), mode 0600 or stricter */
	const char *pin_env;     /* or: name of an environment variable holding it */
} hsm_config;

/* An HSM object's name: CKA_ID bytes. */
typedef struct hsm_object_id {
	uint8_t bytes[HSM_ID_MAX];
	size_t len;
} hsm_object_id;

typedef enum hsm_object_kind {
	HSM_OBJECT_AES_KEY,
	HSM_OBJECT_ED25519_PRIVATE,
	HSM_OBJECT_ED25519_PUBLIC,
	HSM_OBJECT_OTHER,
} hsm_object_kind;

/* Loads the module, finds the token, logs in. On failure *out is NULL and the
 * message says which of module, token, PIN is wrong: KMS_HSM_UNAVAILABLE
 * (KMS_INVALID_ARGUMENT for a config missing its label or PIN source, or
 * naming both a PIN file and a PIN variable). */
kms_status hsm_open(const hsm_config *config, hsm **out) KMS_MUST_USE;

/* Logs out, closes every session, finalizes and unloads the module. Callers
 * must have stopped using h on every thread. NULL is ignored. */
void hsm_close(hsm *h);

/* The label of the token h is logged in to (for log lines). */
const char *hsm_token_label(const hsm *h);

/* Creates a token AES-256 key: CKA_SENSITIVE, !CKA_EXTRACTABLE, CKA_TOKEN,
 * CKA_ENCRYPT, CKA_DECRYPT, with the given CKA_ID and CKA_LABEL.
 * KMS_ALREADY_EXISTS if an object with that id exists. */
kms_status hsm_aes_create(hsm *h, const hsm_object_id *id, const char *label) KMS_MUST_USE;

/* Destroys every object with that CKA_ID (key, or both halves of a pair).
 * KMS_OK if none was there (destroy is idempotent). */
kms_status hsm_object_destroy(hsm *h, const hsm_object_id *id) KMS_MUST_USE;

/* Sets *exists to whether an object with that CKA_ID is on the token. */
kms_status hsm_object_exists(hsm *h, const hsm_object_id *id, bool *exists) KMS_MUST_USE;

/* Calls visit once per object on the token (id, kind); stops and returns the
 * first non-OK status visit returns. For start-up reconciliation. */
typedef kms_status (*hsm_visit_fn)(void *ctx, const hsm_object_id *id, hsm_object_kind kind);
kms_status hsm_objects_list(hsm *h, hsm_visit_fn visit, void *ctx) KMS_MUST_USE;

/*
 * AES-256-GCM (CKM_AES_GCM, 12-byte IV, 16-byte tag). encrypt writes
 * plaintext_len + 16 bytes (ciphertext || tag) into out; out_cap must equal
 * that exactly. decrypt takes ciphertext || tag and writes exactly
 * sealed_len - 16 bytes; out_cap must equal that. A tag mismatch (wrong key,
 * IV, AAD or a changed byte) is KMS_INVALID_CIPHERTEXT, and out is zeroed:
 * nothing is released unless it verifies.
 */
kms_status hsm_aes_gcm_encrypt(hsm *h, const hsm_object_id *key,
                               const uint8_t iv[HSM_GCM_IV_LEN],
                               const uint8_t *aad, size_t aad_len,
                               const uint8_t *plaintext, size_t plaintext_len,
                               uint8_t *out, size_t out_cap) KMS_MUST_USE;
kms_status hsm_aes_gcm_decrypt(hsm *h, const hsm_object_id *key,
                               const uint8_t iv[HSM_GCM_IV_LEN],
                               const uint8_t *aad, size_t aad_len,
                               const uint8_t *sealed, size_t sealed_len,
                               uint8_t *out, size_t out_cap) KMS_MUST_USE;

/* len random bytes from the HSM's generator (C_GenerateRandom). */
kms_status hsm_random(hsm *h, uint8_t *out, size_t len) KMS_MUST_USE;

/* Creates a token Ed25519 pair (CKM_EC_EDWARDS_KEY_PAIR_GEN); the private
 * half is sensitive and not extractable. Both halves share the CKA_ID. */
kms_status hsm_ed25519_create(hsm *h, const hsm_object_id *id, const char *label) KMS_MUST_USE;

/* The raw 32-byte public key of the pair with that id. */
kms_status hsm_ed25519_public(hsm *h, const hsm_object_id *id,
                              uint8_t out[HSM_ED25519_PUBLIC_LEN]) KMS_MUST_USE;

/* A pure Ed25519 (CKM_EDDSA) signature over msg. */
kms_status hsm_ed25519_sign(hsm *h, const hsm_object_id *id,
                            const uint8_t *msg, size_t msg_len,
                            uint8_t sig[HSM_ED25519_SIG_LEN]) KMS_MUST_USE;

/* The PKCS#11 name of a CK_RV ("CKR_PIN_INCORRECT"), or "CKR_0x..." . */
const char *hsm_rv_name(unsigned long rv);

/* What `kms-admin hsm status` shows, read through libp11. */
typedef struct hsm_token_info {
	char label[33];
	char serial[17];
	char model[17];
	char manufacturer[33];
	unsigned long slot_id;
	bool initialized;
	bool login_required;
	bool logged_in; /* after trying the configured PIN */
	unsigned long objects; /* on the token, seen after login */
} hsm_token_info;

/* Finds the configured token with libp11, logs in with the configured PIN
 * (when one is given) and fills info. Independent of hsm_open. For a CLI:
 * in a process with an open hsm it closes that hsm's sessions (libp11
 * closes all of the process's sessions when it lets go of the slots; the
 * hsm recovers on its next call), so kmsd uses hsm_info instead. On a
 * failed login, info holds what was read before it. */
kms_status hsm_token_status(const hsm_config *config, hsm_token_info *info) KMS_MUST_USE;

/* The same information from an open hsm, through the calling thread's own
 * session: disturbs nothing (for kmsd's Health). logged_in is the
 * application's login state after the layer's usual re-login. */
kms_status hsm_info(hsm *h, hsm_token_info *info) KMS_MUST_USE;

#endif
