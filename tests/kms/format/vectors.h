/*
 * vectors.h: the ciphertext-format test vectors of docs/ciphertext-format.md,
 * and a reference AES-256-GCM (OpenSSL EVP) standing in for the HSM.
 *
 * Shared by gen_vectors (which prints the doc's vector section) and
 * test_vectors (which checks the doc, the embedded hex and the code agree).
 */
#ifndef KMS_TESTS_FORMAT_VECTORS_H
#define KMS_TESTS_FORMAT_VECTORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kms/format/blob.h"
#include "common/context.h"

#define FMT_KEK_LEN 32 /* AES-256 */
#define FMT_VECTOR_COUNT 3
#define FMT_VECTOR_MAX_PAIRS 4
#define FMT_VECTOR_CONTEXT_MAX 256
#define FMT_VECTOR_AAD_MAX (KMS_BLOB_HEADER_MAX + FMT_VECTOR_CONTEXT_MAX)

/* The fixed test key of every vector: bytes 00 01 02 .. 1f. A test key,
 * known to all: never a real key version's. */
extern const uint8_t fmt_test_kek[FMT_KEK_LEN];

typedef struct fmt_vector {
	const char *title;
	const char *key_id; /* text form */
	uint32_t key_version;
	const char *region;
	uint8_t iv[KMS_BLOB_IV_LEN];
	context_pair context[FMT_VECTOR_MAX_PAIRS]; /* in the order given */
	size_t n_context;
	const char *context_shown; /* for the doc: the map as a caller writes it */
	const char *context_note;  /* for the doc, or NULL */
	const uint8_t *plaintext;
	size_t plaintext_len;
	const char *plaintext_shown; /* for the doc */
} fmt_vector;

extern const fmt_vector fmt_vectors[FMT_VECTOR_COUNT];

/* A vector, sealed: every intermediate value the doc shows. */
typedef struct fmt_sealed {
	uint8_t key_id[KMS_KEYID_BYTES];
	uint8_t context[FMT_VECTOR_CONTEXT_MAX];
	size_t context_len;
	blob_header header;
	uint8_t aad[FMT_VECTOR_AAD_MAX];
	size_t aad_len;
	uint8_t sealed[KMS_ENCRYPT_MAX_PLAINTEXT + KMS_BLOB_TAG_LEN];
	size_t sealed_len;
	uint8_t blob[KMS_BLOB_MAX_LEN];
	size_t blob_len;
} fmt_sealed;

/* Runs the daemon's Encrypt path for v with fmt_test_kek: encode the context,
 * build the header and AAD, seal with OpenSSL, assemble. */
kms_status fmt_vector_seal(const fmt_vector *v, fmt_sealed *out) KMS_MUST_USE;

/* AES-256-GCM with a 12-byte IV and a 16-byte tag. seal writes
 * plaintext_len + 16 bytes; open writes sealed_len - 16 bytes and returns
 * false (out zeroed) unless the tag verifies. */
bool fmt_gcm_seal(const uint8_t key[FMT_KEK_LEN], const uint8_t iv[KMS_BLOB_IV_LEN],
                  const uint8_t *aad, size_t aad_len, const uint8_t *plaintext,
                  size_t plaintext_len, uint8_t *out) KMS_MUST_USE;
bool fmt_gcm_open(const uint8_t key[FMT_KEK_LEN], const uint8_t iv[KMS_BLOB_IV_LEN],
                  const uint8_t *aad, size_t aad_len, const uint8_t *sealed,
                  size_t sealed_len, uint8_t *out) KMS_MUST_USE;

/* Lowercase hex of bytes[0..len) into out (2 * len + 1 bytes, NUL-terminated). */
void fmt_hex(const uint8_t *bytes, size_t len, char *out);

#endif
