/*
 * kms/status.h: the one error type of kms.
 *
 * Every fallible kms function returns a kms_status. The numbers are the wire
 * values of proto/kms.proto's Status enum, one to one, so a status travels
 * from the HSM layer through the daemon to a client unchanged;
 * proto/status_wire.h asserts it at build time.
 */
#ifndef KMS_STATUS_H
#define KMS_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define KMS_MUST_USE __attribute__((warn_unused_result))
#define KMS_EXPORT __attribute__((visibility("default")))
#else
#define KMS_MUST_USE
#define KMS_EXPORT
#endif

typedef enum kms_status {
	KMS_OK = 0,
	KMS_INVALID_ARGUMENT = 1,   /* the request is malformed or out of range */
	KMS_NOT_FOUND = 2,          /* no such key, alias or version */
	KMS_ALREADY_EXISTS = 3,     /* the alias or id is taken */
	KMS_FAILED_PRECONDITION = 4,/* the key is disabled or pending deletion */
	KMS_INVALID_CIPHERTEXT = 5, /* the blob does not parse or authenticate */
	KMS_ACCESS_DENIED = 6,      /* the caller may not do this */
	KMS_THROTTLED = 7,          /* rate limit: retry later */
	KMS_HSM_UNAVAILABLE = 8,    /* the HSM failed or cannot be reached */
	KMS_INTERNAL = 9,           /* a bug or an unexpected local failure */
	KMS_UNAVAILABLE = 10,       /* transport failure, timeout, or audit log down */
} kms_status;

#define KMS_STATUS_MAX KMS_UNAVAILABLE

/* The status's wire name, e.g. "INVALID_CIPHERTEXT"; never NULL. */
KMS_EXPORT const char *kms_status_name(kms_status status);

#ifdef __cplusplus
}
#endif
#endif
