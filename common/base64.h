/*
 * common/base64.h: base64 (RFC 4648 section 4: the standard alphabet, with
 * padding), the one codec of kms.
 *
 * Decoding is strict, so each byte string has exactly one accepted text: a
 * non-empty multiple of 4 characters, all from the alphabet but for one or
 * two '=' at the very end, and the bits the padding leaves unused zero. No
 * whitespace, no line breaks, no base64url. A signed note, a verifier key
 * and a blob on a command line are each read one way only.
 *
 * Characters are mapped by arithmetic, not by table look-ups indexed by the
 * data, so encoding a secret (a data key, a plaintext) leaks nothing through
 * the cache. Pure functions but kms_base64_encode_secure; thread-safe.
 */
#ifndef KMS_COMMON_BASE64_H
#define KMS_COMMON_BASE64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most bytes the encoders take: their encoding, a NUL and a line end
 * still fit in a size_t. */
#define KMS_BASE64_INPUT_MAX (SIZE_MAX / 4 * 3 - 3)

/* Characters of the encoding of n bytes (n at most KMS_BASE64_INPUT_MAX),
 * without a NUL. */
size_t kms_base64_encoded_len(size_t n);

/* Bytes that len characters decode to at most: room enough for
 * kms_base64_decode. */
size_t kms_base64_decoded_max(size_t len);

/* Writes the encoding of in[0..n) and a NUL to out[0..cap). False, writing
 * nothing, when cap is less than kms_base64_encoded_len(n) + 1 or n is
 * above KMS_BASE64_INPUT_MAX. in may be NULL when n is 0. */
bool kms_base64_encode(const uint8_t *in, size_t n, char *out, size_t cap);

/* The encoding of in[0..n) in fresh secure memory (kms_secure_free it), for
 * a secret's text: NUL-terminated, with room for one more character (a line
 * end) before the NUL so the caller never copies it again. NULL when out of
 * secure memory or n is above KMS_BASE64_INPUT_MAX. */
char *kms_base64_encode_secure(const uint8_t *in, size_t n);

/* Decodes in[0..len) strictly (see above) into out[0..cap); *out_len is the
 * number of bytes. False, with *out_len 0 and nothing written, for any other
 * text, for the empty text (every caller's value has at least one byte), or
 * when the bytes do not fit in cap. */
bool kms_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap,
                       size_t *out_len);

#endif
