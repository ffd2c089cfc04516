/*
 * kms/sign.h: per-request credentials (docs/security.md, "Who may call").
 *
 * A signed request carries Credential{access_key_id, timestamp_unix, mac}:
 *
 *   mac = HMAC-SHA256(secret, canonical string)
 *   canonical string = "KMS-HMAC-SHA256\n"
 *                      request_id "\n"
 *                      decimal timestamp_unix "\n"
 *                      operation "\n"          (the proto field name of the op,
 *                                              e.g. "encrypt", "create_key")
 *                      lowercase hex SHA-256 of the serialized operation message
 *
 * There is no trailing newline. The client computes the MAC with this code,
 * and kmsd verifies every credential with this same code (on every
 * transport; docs/request-signing.md), so the two cannot drift apart.
 * The serialized operation is the op submessage packed on its own, which is
 * byte-for-byte what sits inside the packed Request when protobuf-c packed it.
 * docs/request-signing.md gives every field's encoding and a test vector.
 *
 * Nothing here blocks, allocates or keeps state; every function is
 * thread-safe. No function writes the secret or the MAC anywhere but out.
 */
#ifndef KMS_SIGN_H
#define KMS_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include <kms/limits.h>
#include <kms/status.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KMS_SIGN_ALGORITHM "KMS-HMAC-SHA256"
#define KMS_SIGN_SECRET_LEN 32      /* an access key's secret: 256 bits */
#define KMS_SIGN_MAC_LEN 32         /* HMAC-SHA256 */
#define KMS_SIGN_MAX_SKEW_SECONDS 300 /* kmsd's window for timestamp_unix */
#define KMS_SIGN_REQUEST_ID_MAX KMS_REQUEST_ID_MAX
#define KMS_SIGN_OPERATION_MAX 64
/* Longest canonical string, with its NUL. */
#define KMS_SIGN_CANONICAL_MAX                                                 \
	(sizeof KMS_SIGN_ALGORITHM + KMS_SIGN_REQUEST_ID_MAX + 1 + 20 + 1 +    \
	 KMS_SIGN_OPERATION_MAX + 1 + 64 + 1)

struct Kms__Request; /* <kms/kms.pb-c.h> */

/*
 * Writes the canonical string into out (NUL-terminated) and its length
 * (without the NUL) into *out_len when out_len is not NULL.
 * KMS_INVALID_ARGUMENT when request_id is not 1..64 of [A-Za-z0-9._-],
 * operation is not 1..64 of [a-z0-9_], or op_bytes is NULL with op_len > 0;
 * out is then the empty string. These checks keep a newline out of every
 * field, so two different requests never share a canonical string.
 */
KMS_EXPORT kms_status kms_sign_canonical(const char *request_id,
                                         int64_t timestamp_unix,
                                         const char *operation,
                                         const uint8_t *op_bytes, size_t op_len,
                                         char out[KMS_SIGN_CANONICAL_MAX],
                                         size_t *out_len) KMS_MUST_USE;

/* mac = HMAC-SHA256(secret, canonical string). Fails as kms_sign_canonical
 * does (mac is then zeroed), or KMS_INTERNAL if OpenSSL fails. */
KMS_EXPORT kms_status kms_sign_mac(const uint8_t secret[KMS_SIGN_SECRET_LEN],
                                   const char *request_id,
                                   int64_t timestamp_unix,
                                   const char *operation,
                                   const uint8_t *op_bytes, size_t op_len,
                                   uint8_t mac[KMS_SIGN_MAC_LEN]) KMS_MUST_USE;

/* Recomputes the MAC and compares it with mac in constant time. KMS_OK on a
 * match; KMS_ACCESS_DENIED for any mismatch, wrong length or bad field, with
 * no hint which. The timestamp window is the caller's check. */
KMS_EXPORT kms_status kms_sign_verify(const uint8_t secret[KMS_SIGN_SECRET_LEN],
                                      const char *request_id,
                                      int64_t timestamp_unix,
                                      const char *operation,
                                      const uint8_t *op_bytes, size_t op_len,
                                      const uint8_t *mac, size_t mac_len) KMS_MUST_USE;

/* The proto field name of req's operation ("encrypt", "create_key" ...), or
 * NULL when no operation is set or req is NULL. Static storage. */
KMS_EXPORT const char *kms_sign_operation_name(const struct Kms__Request *req);

/* The MAC of a whole Request: its request_id, the given timestamp, its
 * operation's name and the SHA-256 of its operation packed on its own.
 * KMS_INVALID_ARGUMENT when req has no operation or a bad request id;
 * KMS_INTERNAL when out of memory. Allocates and frees a packing buffer. */
KMS_EXPORT kms_status kms_sign_request_mac(const struct Kms__Request *req,
                                           const uint8_t secret[KMS_SIGN_SECRET_LEN],
                                           int64_t timestamp_unix,
                                           uint8_t mac[KMS_SIGN_MAC_LEN]) KMS_MUST_USE;

/* Verifies req->credential's MAC (its timestamp_unix and mac) against secret
 * in constant time: KMS_OK, or KMS_ACCESS_DENIED for a missing credential,
 * a bad MAC or a malformed request, with no hint which. Does not check the
 * access key id (the caller looked the secret up by it) nor the skew. */
KMS_EXPORT kms_status kms_sign_request_verify(const struct Kms__Request *req,
                                              const uint8_t secret[KMS_SIGN_SECRET_LEN]) KMS_MUST_USE;

#ifdef __cplusplus
}
#endif
#endif
