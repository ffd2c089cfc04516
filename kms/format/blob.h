/*
 * blob.h: the ciphertext blob, format version 1 (docs/ciphertext-format.md).
 *
 *   off      len  field
 *   0        3    magic "KMS" (4B 4D 53)
 *   3        1    format version, 01
 *   4        16   key id (the bytes behind "k-<32 hex>")
 *   20       4    key version, u32 big-endian, >= 1
 *   24       1    region length R, 1..32
 *   25       R    region, [a-z0-9-]
 *   25+R     12   AES-GCM IV
 *   37+R     4    ciphertext length C, u32 big-endian, 1..4096
 *   41+R     C    ciphertext
 *   41+R+C   16   AES-GCM tag
 *
 * The header is bytes [0, 41+R): everything before the ciphertext. The GCM
 * additional authenticated data is header || canonical encryption context
 * (context.h), so every header byte and the context are authenticated.
 *
 * These functions do no cryptography (the HSM does AES-GCM) and no I/O; they
 * are thread-safe. Encrypt: blob_header_build, blob_aad_build, the HSM seals
 * with that IV and AAD, blob_assemble. Decrypt: blob_parse,
 * blob_check_region, blob_aad_build from the view's header, the HSM opens
 * view.sealed.
 *
 * Every failure of blob_parse is KMS_INVALID_CIPHERTEXT with a one-line
 * message that says which field is wrong and how; it never repeats the
 * blob's bytes. Bad arguments to the build functions are
 * KMS_INVALID_ARGUMENT (they come from our own state, not from a blob).
 */
#ifndef KMS_BLOB_H
#define KMS_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include <kms/limits.h>
#include <kms/status.h>

#include "common/context.h"
#include "kms/format/keyid.h"

#define KMS_BLOB_MAGIC "KMS"
#define KMS_BLOB_MAGIC_LEN 3
#define KMS_BLOB_FORMAT_VERSION 1
#define KMS_BLOB_FORMAT_VERSION_LEN 1
#define KMS_BLOB_KEY_VERSION_LEN 4
#define KMS_BLOB_REGION_LENGTH_LEN 1
#define KMS_BLOB_REGION_MIN 1
#define KMS_BLOB_REGION_MAX 32
#define KMS_BLOB_IV_LEN 12
#define KMS_BLOB_CIPHERTEXT_LENGTH_LEN 4
#define KMS_BLOB_TAG_LEN 16

/* The header without its region: 41 bytes. */
#define KMS_BLOB_HEADER_FIXED_LEN                                              \
	(KMS_BLOB_MAGIC_LEN + KMS_BLOB_FORMAT_VERSION_LEN + KMS_KEYID_BYTES +  \
	 KMS_BLOB_KEY_VERSION_LEN + KMS_BLOB_REGION_LENGTH_LEN + KMS_BLOB_IV_LEN + \
	 KMS_BLOB_CIPHERTEXT_LENGTH_LEN)
#define KMS_BLOB_HEADER_MIN (KMS_BLOB_HEADER_FIXED_LEN + KMS_BLOB_REGION_MIN) /* 42 */
#define KMS_BLOB_HEADER_MAX (KMS_BLOB_HEADER_FIXED_LEN + KMS_BLOB_REGION_MAX) /* 73 */
#define KMS_BLOB_MIN_LEN                                                       \
	(KMS_BLOB_HEADER_MIN + KMS_ENCRYPT_MIN_PLAINTEXT + KMS_BLOB_TAG_LEN) /* 59 */
#define KMS_BLOB_MAX_LEN                                                       \
	(KMS_BLOB_HEADER_MAX + KMS_ENCRYPT_MAX_PLAINTEXT + KMS_BLOB_TAG_LEN) /* 4185 */
#define KMS_BLOB_AAD_MAX (KMS_BLOB_HEADER_MAX + KMS_CONTEXT_ENCODED_MAX)

/* A built header: bytes[0..len), for a plaintext of ciphertext_len bytes. */
typedef struct blob_header {
	uint8_t bytes[KMS_BLOB_HEADER_MAX];
	size_t len;
	size_t ciphertext_len;
} blob_header;

/* A parsed blob: every pointer points into the parsed buffer, which must
 * outlive the view. region is not NUL-terminated. sealed is ciphertext ||
 * tag, contiguous, as the HSM's GCM decrypt takes it. */
typedef struct blob_view {
	const uint8_t *header; /* bytes [0, header_len): the AAD's first part */
	size_t header_len;
	uint8_t format_version;
	const uint8_t *key_id; /* KMS_KEYID_BYTES */
	uint32_t key_version;
	const char *region;
	size_t region_len;
	const uint8_t *iv; /* KMS_BLOB_IV_LEN */
	const uint8_t *ciphertext;
	size_t ciphertext_len;
	const uint8_t *tag; /* KMS_BLOB_TAG_LEN */
	const uint8_t *sealed;
	size_t sealed_len;
} blob_view;

/* KMS_INVALID_ARGUMENT unless region is 1..32 bytes of [a-z0-9-]; for
 * checking this daemon's configured region at start-up. */
kms_status blob_region_validate(const char *region, size_t len) KMS_MUST_USE;

/* Builds the header for sealing plaintext_len (1..4096) bytes under version
 * key_version (>= 1) of key_id, in region, with iv. On failure *out is
 * zeroed. */
kms_status blob_header_build(const uint8_t key_id[static KMS_KEYID_BYTES],
                             uint32_t key_version, const char *region,
                             size_t region_len,
                             const uint8_t iv[static KMS_BLOB_IV_LEN],
                             size_t plaintext_len, blob_header *out) KMS_MUST_USE;

/* Length of the AAD: header_len + context_len. */
static inline size_t blob_aad_len(size_t header_len, size_t context_len)
{
	return header_len + context_len;
}

/* Writes the AAD, header || context (a canonical encoding from
 * context_encode), into out[0..cap). header is a built header's bytes or a
 * parsed view's header span. A cap too small writes nothing. */
kms_status blob_aad_build(const uint8_t *header, size_t header_len,
                          const uint8_t *context, size_t context_len,
                          uint8_t *out, size_t cap, size_t *out_len) KMS_MUST_USE;

/* As blob_aad_build into a malloc'ed buffer of exactly the AAD's length, for
 * the caller to free(). On failure *out is NULL. */
kms_status blob_aad_alloc(const uint8_t *header, size_t header_len,
                          const uint8_t *context, size_t context_len,
                          uint8_t **out, size_t *out_len) KMS_MUST_USE;

/* What the HSM's GCM encrypt returns for this header: ciphertext || tag. */
static inline size_t blob_sealed_len(const blob_header *header)
{
	return header->ciphertext_len + KMS_BLOB_TAG_LEN;
}

/* The whole blob's length for this header. */
static inline size_t blob_total_len(const blob_header *header)
{
	return header->len + blob_sealed_len(header);
}

/* Writes header || sealed into out[0..cap). sealed_len must be exactly
 * blob_sealed_len(header) and cap at least blob_total_len(header);
 * otherwise KMS_INVALID_ARGUMENT and nothing is written. */
kms_status blob_assemble(const blob_header *header, const uint8_t *sealed,
                         size_t sealed_len, uint8_t *out, size_t cap,
                         size_t *out_len) KMS_MUST_USE;

/* Parses blob[0..len) strictly: right magic and version, every field
 * present and in range, no trailing bytes. On success *out points into
 * blob; on failure *out is zeroed and the status is KMS_INVALID_CIPHERTEXT.
 * Parsing authenticates nothing: the HSM's GCM open does. */
kms_status blob_parse(const uint8_t *blob, size_t len, blob_view *out) KMS_MUST_USE;

/* KMS_INVALID_CIPHERTEXT ("blob was made in region X, this is region Y")
 * unless the parsed blob's region is ours. Region names are not secret. */
kms_status blob_check_region(const blob_view *blob, const char *our_region,
                             size_t our_region_len) KMS_MUST_USE;

#endif
