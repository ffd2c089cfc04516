/*
 * keyid.h: key ids, aliases, and the HSM names of key versions.
 *
 * A key id is "k-" followed by 32 lowercase hex digits, the text form of 16
 * random bytes. An alias is "alias/" followed by 1..250 characters of
 * [A-Za-z0-9/_-]. A key reference in a request is one or the other.
 *
 * Each version of a key is its own HSM object, named (CKA_ID) by the 16 key
 * id bytes followed by the version as a 4-byte big-endian number, and
 * labelled (CKA_LABEL) "k-<32 hex>:v<version>" for humans.
 *
 * Pure functions: no allocation, no I/O, thread-safe. On failure they return
 * KMS_INVALID_ARGUMENT with a one-line message (kms_error_message()) that
 * says what is wrong and never repeats the caller's text, since a reference
 * is untrusted input and may be anything, up to a pasted secret.
 */
#ifndef KMS_KEYID_H
#define KMS_KEYID_H

#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

#define KMS_KEYID_BYTES 16        /* random bytes behind a key id */
#define KMS_KEYID_PREFIX "k-"
#define KMS_KEYID_PREFIX_LEN 2
#define KMS_KEYID_TEXT_LEN 34     /* "k-" + 32 hex digits */
#define KMS_KEYID_TEXT_SIZE 35    /* ... and the terminating NUL */

#define KMS_ALIAS_PREFIX "alias/"
#define KMS_ALIAS_PREFIX_LEN 6
#define KMS_ALIAS_NAME_MIN 1      /* characters after "alias/" */
#define KMS_ALIAS_NAME_MAX 250
#define KMS_ALIAS_TEXT_MAX (KMS_ALIAS_PREFIX_LEN + KMS_ALIAS_NAME_MAX)

#define KMS_KEY_VERSION_MIN 1     /* versions count from 1; 0 means "none" */
#define KMS_KEY_VERSION_LEN 4     /* a version on the wire: u32 big-endian */

/* CKA_ID of a key version: key id bytes || u32 BE version. */
#define KMS_KEYID_HSM_ID_LEN (KMS_KEYID_BYTES + KMS_KEY_VERSION_LEN)
/* "k-<32 hex>:v<up to 10 digits>" and a NUL. */
#define KMS_KEYID_VERSION_LABEL_SIZE (KMS_KEYID_TEXT_LEN + 2 + 10 + 1)

typedef enum keyid_ref_kind {
	KEYID_REF_NONE = 0,   /* set on failure */
	KEYID_REF_KEY_ID = 1, /* "k-..." */
	KEYID_REF_ALIAS = 2,  /* "alias/..." */
} keyid_ref_kind;

/* Writes the text form of id ("k-" + 32 lowercase hex digits, NUL-terminated)
 * into out. Cannot fail. */
void keyid_format(const uint8_t id[static KMS_KEYID_BYTES],
                  char out[static KMS_KEYID_TEXT_SIZE]);

/* Parses text[0..len) as a key id: exactly 34 bytes, "k-" then lowercase hex
 * only (no uppercase, no whitespace, no NUL). On success writes the 16 bytes
 * to out; on failure out is zeroed. */
kms_status keyid_parse(const char *text, size_t len,
                       uint8_t out[static KMS_KEYID_BYTES]) KMS_MUST_USE;

/* Checks an alias "alias/<name>": name 1..250 characters of
 * [A-Za-z0-9/_-]. The namespaces "alias/aws" and "alias/kms" (the names
 * themselves and everything under "alias/aws/" and "alias/kms/", in any
 * letter case) are reserved and refused; "alias/awesome" is fine. */
kms_status keyid_alias_validate(const char *text, size_t len) KMS_MUST_USE;

/* Classifies a key reference from a request: a key id (parsed into id) or an
 * alias (validated; id is zeroed). Anything else, or a malformed id or
 * alias, is KMS_INVALID_ARGUMENT. */
kms_status keyid_ref_classify(const char *text, size_t len, keyid_ref_kind *kind,
                              uint8_t id[static KMS_KEYID_BYTES]) KMS_MUST_USE;

/* The HSM object id (CKA_ID) of version key_version (>= 1) of key id. */
kms_status keyid_hsm_object_id(const uint8_t id[static KMS_KEYID_BYTES],
                               uint32_t key_version,
                               uint8_t out[static KMS_KEYID_HSM_ID_LEN]) KMS_MUST_USE;

/* The inverse, for reconciling what is on a token with the key store: an
 * object id that is not exactly 20 bytes or has version 0 is
 * KMS_INVALID_ARGUMENT (it is some other object, not a key version). */
kms_status keyid_hsm_object_id_parse(const uint8_t *bytes, size_t len,
                                     uint8_t id[static KMS_KEYID_BYTES],
                                     uint32_t *key_version) KMS_MUST_USE;

/* The HSM label of a key version, "k-<32 hex>:v<N>", NUL-terminated. */
kms_status keyid_version_label(const uint8_t id[static KMS_KEYID_BYTES],
                               uint32_t key_version,
                               char out[static KMS_KEYID_VERSION_LABEL_SIZE]) KMS_MUST_USE;

#endif
