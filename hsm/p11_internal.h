/*
 * p11_internal.h: what the files of the PKCS#11 layer share. Not for use
 * outside hsm/.
 *
 * The pieces:
 *   p11_module.c   loading, C_Initialize, finding the token, the PIN, login
 *   p11_session.c  one session per thread, and recovery from lost sessions
 *   p11_cache.c    CKA_ID -> object handle, read-mostly
 *   p11_objects.c  finding, creating, destroying and listing objects
 *   p11_aes_gcm.c, p11_random.c, p11_ed25519.c: the operations
 *   p11_wrap.c     the key hierarchy: KEKs, generating wrapped key versions,
 *                  re-wrapping, the unwrap template of each key type
 *   p11_keycache.c the unwrapped-key cache: a bounded LRU of session objects
 *                  in a session of its own, pinned while used, loads
 *                  coalesced, dropped and reloaded after a lost session;
 *                  hsm_wrapped_gcm_*, hsm_wrapped_hmac_sha256,
 *                  hsm_wrapped_ecdsa_p256_sign
 *   p11_rv.c       CK_RV names and their kms_status
 *   p11_info.c     hsm_info: token status through an open hsm
 *   token_status.c hsm_token_status, through libp11
 *
 * Every operation follows one shape: get the thread's session, look up the
 * handle, make the calls; when a call fails with an rv that hsm_recover()
 * knows how to repair, repair and run the whole attempt once more. That
 * shape lives in hsm_run(); an operation supplies one attempt (a step) and
 * words its own failure message.
 */
#ifndef KMS_HSM_P11_INTERNAL_H
#define KMS_HSM_P11_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <p11-kit/pkcs11.h>

#include "common/error.h"
#include "hsm/hsm.h"

/* A PIN longer than this is refused (no module takes more). */
#define HSM_PIN_MAX 256

/* The object classes the layer looks up by CKA_ID. */
typedef enum hsm_key_class {
	HSM_KEY_AES,
	HSM_KEY_ED25519_PRIVATE,
	HSM_KEY_ED25519_PUBLIC,
	HSM_KEY_KEK, /* an AES key with CKA_UNWRAP */
	HSM_KEY_CLASS_COUNT,
} hsm_key_class;

/*
 * Internal CK_RV, never returned by a module (vendor-defined range): more
 * than one object matched an id and class. The layer refuses to guess.
 */
#define HSM_CKR_DUPLICATE_ID (CKR_VENDOR_DEFINED | 0x4b4d5301UL)

/* The CKA_ID -> handle cache (p11_cache.c). */
struct hsm_cache_entry;
typedef struct hsm_handle_cache {
	pthread_rwlock_t lock;
	struct hsm_cache_entry **buckets;
	size_t bucket_count; /* a power of two */
	size_t entry_count;
} hsm_handle_cache;

/* One thread's session (p11_session.c); owned by the hsm's list. */
typedef struct hsm_thread_session {
	struct hsm *owner;
	CK_SESSION_HANDLE handle;
	bool open;
	struct hsm_thread_session *prev, *next;
} hsm_thread_session;

/* A PIN in secure memory and where it came from (for messages). */
typedef struct hsm_pin {
	char *bytes; /* kms_secure_alloc, NUL-terminated; NULL when none */
	size_t len;
	char source[160]; /* "the PIN file /x/user.pin" or "the environment variable X" */
} hsm_pin;

struct hsm {
	void *module;            /* dlopen handle */
	char *module_path;       /* for messages */
	CK_FUNCTION_LIST_PTR p11;
	bool finalize_on_close;  /* this hsm's C_Initialize was the one that counted */
	_Atomic CK_SLOT_ID slot;  /* found again after a re-plug: hsm_slot_refind */
	char token_label[33];
	/* The token kmsd opened (manufacturer, model, serial as it reported
	 * them): a token found again under the label must be this one. */
	CK_UTF8CHAR token_manufacturer[32], token_model[16];
	CK_CHAR token_serial[16];
	pthread_mutex_t refind_lock; /* one re-find at a time */
	hsm_pin pin;

	pthread_mutex_t login_lock;  /* serializes C_Login */
	pthread_mutex_t create_lock; /* makes "check id is free, then create" atomic here */

	pthread_key_t session_key;   /* -> hsm_thread_session of the calling thread */
	bool session_key_live;
	pthread_mutex_t sessions_lock; /* guards the list below, not the hot path */
	hsm_thread_session *sessions;

	hsm_handle_cache cache;

	struct hsm_keycache *keycache; /* p11_keycache.c */

	/* For /metrics (hsm_call_stats_get): relaxed atomics, no lock. */
	kms_hist attempt_us;
	atomic_uint_fast64_t rv_errors[HSM_RV_SLOTS];
	atomic_uint_fast64_t sessions_opened, sessions_lost;
};

/* --- p11_module.c --- */

/* Reads the configured PIN (file: mode 0600 or stricter, first line; or an
 * environment variable) into secure memory. KMS_HSM_UNAVAILABLE with a
 * message naming the file or variable when it cannot. */
kms_status hsm_pin_load(const hsm_config *config, hsm_pin *pin) KMS_MUST_USE;
void hsm_pin_free(hsm_pin *pin);

/* The slot went away under session opening (the token was pulled out and
 * put back, an HSM restarted): finds the token by its label again, checks
 * it is the same token (manufacturer, model, serial), and points the hsm at
 * its new slot. A no-op when another thread already did (h->slot is no
 * longer stale). KMS_HSM_UNAVAILABLE when it is not back, or is another. */
kms_status hsm_slot_refind(hsm *h, CK_SLOT_ID stale) KMS_MUST_USE;

/* C_Login as the user on session s (already logged in is fine). */
kms_status hsm_login(hsm *h, CK_SESSION_HANDLE s) KMS_MUST_USE;

/* PKCS#11 v2.40 prototypes take non-const input buffers that modules only
 * read; this is the one place const is dropped for them. */
static inline CK_BYTE_PTR hsm_unconst(const void *p)
{
	return (CK_BYTE_PTR)(uintptr_t)p;
}

/* An object id for messages: "quoted" when printable, else hex. */
typedef struct hsm_id_text {
	char s[2 * HSM_ID_MAX + 3];
} hsm_id_text;
hsm_id_text hsm_id_to_text(const hsm_object_id *id);

/* KMS_INVALID_ARGUMENT unless id is non-NULL with 1..HSM_ID_MAX bytes. */
kms_status hsm_id_check(const hsm_object_id *id) KMS_MUST_USE;

/* --- p11_session.c --- */

kms_status hsm_sessions_init(hsm *h) KMS_MUST_USE;
/* C_Logout through any open session of the layer (for hsm_close). */
void hsm_sessions_logout(hsm *h);
/* Closes every session the layer opened and forgets them. Only when no
 * other thread uses h any more. */
void hsm_sessions_close(hsm *h);

/* A new session, logged in (for the key cache's own session). */
kms_status hsm_session_open(hsm *h, CK_SESSION_HANDLE *out) KMS_MUST_USE;

/* Whether rv says the session is gone (closed, device removed). */
bool hsm_rv_session_lost(CK_RV rv);

/* The calling thread's session, opened (and logged in) on first use. */
kms_status hsm_session_get(hsm *h, CK_SESSION_HANDLE *out) KMS_MUST_USE;

/* Drops the calling thread's session. close_it: the session may still be
 * alive (e.g. an operation is left active in it), so close it; otherwise
 * the module already forgot it and its handle must not be reused. */
void hsm_session_drop(hsm *h, bool close_it);

/*
 * After rv from a call on session s: repairs what rv says is broken (the
 * session, the login, a stale handle for id) and sets *retry when the
 * attempt should run once more. A failed repair returns its status.
 */
kms_status hsm_recover(hsm *h, CK_SESSION_HANDLE s, CK_RV rv,
                       const hsm_object_id *id, bool *retry) KMS_MUST_USE;

/*
 * One attempt of an operation on the calling thread's session s. Sets *rv
 * to CKR_OK when done, or to the rv of the PKCS#11 call that failed, and
 * returns KMS_OK: hsm_run decides whether that rv is worth a retry. A step
 * returns any other status (already recorded with KMS_FAIL) for a verdict
 * of its own that no retry could change: no such key, id taken, a
 * malformed answer. A step runs at most twice per hsm_run, so it starts
 * each attempt from its inputs, not from what the last attempt left.
 */
typedef kms_status (*hsm_step_fn)(hsm *h, CK_SESSION_HANDLE s, void *ctx, CK_RV *rv);

/*
 * Runs step(ctx) on the thread's session; when it fails with an rv that
 * hsm_recover repairs (id: the object whose cached handles a stale-handle
 * rv drops; NULL when the step uses no cached handle), repairs and runs it
 * once more. A second failure is not repaired.
 *
 * KMS_OK: *rv holds the step's last rv (CKR_OK: success); the caller names
 * the failed call in its message. Any other status: the session could not
 * be had, the repair failed or the step gave its own verdict; the message
 * is recorded and *rv means nothing. Allocates nothing and takes no lock
 * of its own: it sits on the AES-GCM hot path.
 */
kms_status hsm_run(hsm *h, const hsm_object_id *id, hsm_step_fn step, void *ctx,
                   CK_RV *rv) KMS_MUST_USE;

/* --- p11_cache.c --- */

kms_status hsm_cache_init(hsm_handle_cache *c) KMS_MUST_USE;
void hsm_cache_free(hsm_handle_cache *c);
bool hsm_cache_get(hsm_handle_cache *c, const hsm_object_id *id, hsm_key_class cls,
                   CK_OBJECT_HANDLE *out);
void hsm_cache_put(hsm_handle_cache *c, const hsm_object_id *id, hsm_key_class cls,
                   CK_OBJECT_HANDLE handle);
void hsm_cache_drop(hsm_handle_cache *c, const hsm_object_id *id);
void hsm_cache_clear(hsm_handle_cache *c);

/* --- p11_objects.c --- */

/*
 * The handle of the object of class cls with CKA_ID id, from the cache or
 * the token. CKR_OK with *out = CK_INVALID_HANDLE when there is none;
 * CKR_USER_NOT_LOGGED_IN when there is none because the session lost its
 * login (so hsm_recover logs in and the caller retries);
 * HSM_CKR_DUPLICATE_ID when more than one matches.
 */
CK_RV hsm_key_handle(hsm *h, CK_SESSION_HANDLE s, const hsm_object_id *id,
                     hsm_key_class cls, CK_OBJECT_HANDLE *out);

/* Whether any object has CKA_ID id; same CKR_USER_NOT_LOGGED_IN rule. */
CK_RV hsm_id_taken(hsm *h, CK_SESSION_HANDLE s, const hsm_object_id *id, bool *taken);

/* Creates a token secret key with CKM_AES_KEY_GEN under create_lock after
 * checking the id is free; what names the kind for messages ("AES key",
 * "KEK"); the new handle is cached under cls. */
kms_status hsm_secret_create(hsm *h, const hsm_object_id *id, const char *label,
                             hsm_key_class cls, CK_ATTRIBUTE *tmpl, CK_ULONG tmpl_len,
                             const char *what) KMS_MUST_USE;

/* KMS_INVALID_ARGUMENT unless label is non-NULL and at most HSM_LABEL_MAX bytes. */
kms_status hsm_label_check(const char *label) KMS_MUST_USE;

/* --- p11_wrap.c --- */

/* The unwrap template of a key type (CKA_CLASS, CKA_KEY_TYPE, CKA_TOKEN
 * false, CKA_PRIVATE and CKA_SENSITIVE true, CKA_EXTRACTABLE as given, and
 * every usage attribute set: true for the type's operations when `use`,
 * false otherwise); tmpl needs HSM_UNWRAP_ATTRS slots, whose values live in
 * *vals. KMS_INVALID_ARGUMENT for an unknown type. */
#define HSM_UNWRAP_ATTRS 16
typedef struct hsm_unwrap_values {
	CK_OBJECT_CLASS object_class;
	CK_KEY_TYPE key_type;
	CK_BBOOL yes, no;
} hsm_unwrap_values;
kms_status hsm_unwrap_template(hsm_key_type type, bool extractable, bool use,
                               hsm_unwrap_values *vals, CK_ATTRIBUTE *tmpl,
                               CK_ULONG *tmpl_len) KMS_MUST_USE;

/* The status and message for a failed C_UnwrapKey of `what` under kek
 * (tells damaged bytes from a device fault, see hsm.h). */
kms_status hsm_unwrap_failure(hsm *h, const char *what, const hsm_object_id *kek,
                              CK_RV rv) KMS_MUST_USE;

/* The failure for "no KEK with this id". */
kms_status hsm_no_kek(hsm *h, const hsm_object_id *kek) KMS_MUST_USE;

/* --- p11_keycache.c --- */

kms_status hsm_keycache_init(hsm *h) KMS_MUST_USE;
/* Destroys every cached object and closes the cache's session. */
void hsm_keycache_free(hsm *h);

/* An entry of the cache, pinned (for the operations, and for tests). */
typedef struct hsm_keycache_entry hsm_keycache_entry;

/* Pins the entry of name, loading it through loader on a miss. */
kms_status hsm_keycache_acquire(hsm *h, const hsm_object_id *name,
                                hsm_wrapped_loader loader, void *loader_ctx,
                                hsm_keycache_entry **out) KMS_MUST_USE;
/* Unpins it; destroys its object when it was evicted and this was the last pin. */
void hsm_keycache_release(hsm *h, hsm_keycache_entry *e);
/* The pinned entry's object handle and type (valid until released). */
CK_OBJECT_HANDLE hsm_keycache_entry_handle(const hsm_keycache_entry *e);
hsm_key_type hsm_keycache_entry_type(const hsm_keycache_entry *e);
/* The cache session's handle (CK_INVALID_HANDLE when none is open); tests. */
CK_SESSION_HANDLE hsm_keycache_session(hsm *h);

/* --- p11_aes_gcm.c --- */

/* AES-GCM with an object handle at hand (a cached key version): what
 * hsm_aes_gcm_* do after the lookup. name is for messages. *rv: the last
 * call's rv (CKR_OK on success), so the key cache can tell a stale
 * handle. */
kms_status hsm_gcm_with_handle(hsm *h, bool decrypt, const hsm_object_id *name,
                               CK_OBJECT_HANDLE key, const uint8_t iv[HSM_GCM_IV_LEN],
                               const uint8_t *aad, size_t aad_len, const uint8_t *in,
                               size_t in_len, uint8_t *out, size_t out_cap,
                               CK_RV *rv) KMS_MUST_USE;

/* --- p11_rv.c --- */

/* The slot of hsm_call_stats.errors that counts rv (the last: other). */
size_t hsm_rv_slot(CK_RV rv);

/* Counts one attempt that began at started_us (kms_monotonic_us) and
 * ended with rv, for hsm_call_stats_get. */
void hsm_note_attempt(hsm *h, uint64_t started_us, CK_RV rv);

/* The kms_status a failed call's rv stands for (session/login trouble and
 * everything unknown: KMS_HSM_UNAVAILABLE). */
kms_status hsm_status_of(CK_RV rv);

/* The failure for "no token has this label" (hsm_open, hsm_token_status).
 * For SoftHSM, which finds its tokens through the SOFTHSM2_CONF
 * environment variable, it says which config was read (or that none was
 * set), since a missing SOFTHSM2_CONF is the usual cause. */
kms_status hsm_no_token(const char *label, const char *module_path) KMS_MUST_USE;

#endif
