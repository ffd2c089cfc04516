/*
 * authz_names.h: the text forms of authorization's names (docs/authorization.md).
 *
 * A principal name is 1..63 characters of [A-Za-z0-9._-]. An access key id
 * is "AK" and a grant id "GR", each followed by 20 characters of the RFC 4648
 * base32 alphabet [A-Z2-7]: the first 100 bits of 13 random bytes. A TLS
 * certificate name (a principal's cert_name) is 1..64 printable ASCII
 * characters (0x20..0x7e).
 *
 * Pure functions: no allocation, no I/O, thread-safe. On failure they return
 * KMS_INVALID_ARGUMENT with a one-line message that says what is wrong and
 * never repeats the caller's text (it is untrusted and may be anything, up
 * to a pasted secret).
 */
#ifndef KMS_AUTHZ_NAMES_H
#define KMS_AUTHZ_NAMES_H

#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

#define AUTHZ_PRINCIPAL_NAME_MAX 63
#define AUTHZ_PRINCIPAL_NAME_SIZE (AUTHZ_PRINCIPAL_NAME_MAX + 1)
#define AUTHZ_CERT_NAME_MAX 64
#define AUTHZ_CERT_NAME_SIZE (AUTHZ_CERT_NAME_MAX + 1)

#define AUTHZ_ID_RANDOM_BYTES 13  /* 104 bits; the id shows the first 100 */
#define AUTHZ_ID_BASE32_LEN 20
#define AUTHZ_ID_LEN 22            /* "AK" or "GR" + 20 base32 characters */
#define AUTHZ_ID_SIZE 23           /* ... and the terminating NUL */
#define AUTHZ_ACCESS_KEY_PREFIX "AK"
#define AUTHZ_GRANT_PREFIX "GR"

/* KMS_OK when text[0..len) is a principal name. */
kms_status authz_names_principal_check(const char *text, size_t len) KMS_MUST_USE;

/* KMS_OK when text[0..len) is a certificate name. */
kms_status authz_names_cert_check(const char *text, size_t len) KMS_MUST_USE;

/* Writes prefix ("AK" or "GR") and the base32 form of the first 100 bits of
 * random into out, NUL-terminated. Cannot fail for those prefixes; any other
 * prefix writes "" and returns KMS_INVALID_ARGUMENT. */
kms_status authz_names_id_format(const char *prefix,
                                 const uint8_t random[static AUTHZ_ID_RANDOM_BYTES],
                                 char out[static AUTHZ_ID_SIZE]) KMS_MUST_USE;

/* KMS_OK when text[0..len) is an id with that prefix: exactly 22 bytes,
 * the prefix, then [A-Z2-7] only. */
kms_status authz_names_id_check(const char *prefix, const char *text, size_t len) KMS_MUST_USE;

#endif
