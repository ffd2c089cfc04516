/*
 * context.h: the encryption context, and its canonical encoding.
 *
 * An encryption context is a map of UTF-8 string pairs that a caller binds
 * to a ciphertext: its canonical encoding goes into the AES-GCM additional
 * authenticated data, so Decrypt must present the same map (in any order).
 * It is not secret (it is logged and audited), but it is untrusted input.
 *
 * Rules (docs/ciphertext-format.md, "Encryption context"):
 *   - at most 64 pairs; a key is 1..256 bytes, a value 0..1024 bytes;
 *   - keys and values are strict UTF-8 (common/utf8.h: no overlong forms,
 *     no surrogates, nothing above U+10FFFF) and contain no U+0000,
 *     because the wire layer hands strings over NUL-terminated and must
 *     not see a different map than the one that was authenticated;
 *   - no key appears twice.
 *
 * Canonical encoding: pairs sorted by key bytes (memcmp order; on a common
 * prefix the shorter key first), then
 *     u16 BE pair count,
 *     per pair: u16 BE key length, key, u16 BE value length, value.
 * The empty context encodes to the two bytes 00 00.
 *
 * Pure functions: no I/O, thread-safe, the caller's pairs are never
 * modified. A bad context is KMS_INVALID_ARGUMENT with a one-line message
 * naming the pair by its position in the caller's array; the message never
 * repeats a key or value.
 *
 * Adapting protobuf-c map entries (each a struct with NUL-terminated
 * `char *key; char *value;`) costs one strlen per string:
 *
 *     context_pair pairs[KMS_CONTEXT_MAX_PAIRS];
 *     KMS_GUARD(context_check_count(req->n_encryption_context));
 *     for (size_t i = 0; i < req->n_encryption_context; i++)
 *             pairs[i] = context_pair_from_cstr(req->encryption_context[i]->key,
 *                                               req->encryption_context[i]->value);
 *     KMS_GUARD(context_encode(pairs, req->n_encryption_context, ...));
 */
#ifndef KMS_CONTEXT_H
#define KMS_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <kms/limits.h>
#include <kms/status.h>

/* Encoding: a u16 BE count, and per pair two u16 BE length prefixes. */
#define KMS_CONTEXT_COUNT_LEN 2
#define KMS_CONTEXT_LENGTH_LEN 2
#define KMS_CONTEXT_PAIR_OVERHEAD (2 * KMS_CONTEXT_LENGTH_LEN)
#define KMS_CONTEXT_ENCODED_EMPTY_LEN KMS_CONTEXT_COUNT_LEN
#define KMS_CONTEXT_ENCODED_MAX                                                \
	(KMS_CONTEXT_COUNT_LEN +                                               \
	 KMS_CONTEXT_MAX_PAIRS * (KMS_CONTEXT_PAIR_OVERHEAD + KMS_CONTEXT_KEY_MAX + \
	                          KMS_CONTEXT_VALUE_MAX))

/* One pair. The strings need not be NUL-terminated; a NULL pointer with a
 * zero length is an empty string. */
typedef struct context_pair {
	const char *key;
	size_t key_len;
	const char *value;
	size_t value_len;
} context_pair;

/* A pair of NUL-terminated strings (NULL reads as ""); borrows both. */
static inline context_pair context_pair_from_cstr(const char *key, const char *value)
{
	context_pair p = { key, key ? strlen(key) : 0, value, value ? strlen(value) : 0 };
	return p;
}

/* KMS_INVALID_ARGUMENT unless n_pairs <= KMS_CONTEXT_MAX_PAIRS: check this
 * before filling a pairs[KMS_CONTEXT_MAX_PAIRS] array from a request. */
kms_status context_check_count(size_t n_pairs) KMS_MUST_USE;

/* Checks every rule above. pairs may be NULL when n_pairs is 0. */
kms_status context_validate(const context_pair *pairs, size_t n_pairs) KMS_MUST_USE;

/* Validates, then sets *size to the length of the canonical encoding
 * (2..KMS_CONTEXT_ENCODED_MAX). *size is 0 on failure. */
kms_status context_encoded_size(const context_pair *pairs, size_t n_pairs,
                                size_t *size) KMS_MUST_USE;

/* Validates and writes the canonical encoding to out[0..cap); *out_len is its
 * length. A cap too small is KMS_INVALID_ARGUMENT and writes nothing
 * (*out_len = 0). */
kms_status context_encode(const context_pair *pairs, size_t n_pairs,
                          uint8_t *out, size_t cap, size_t *out_len) KMS_MUST_USE;

/* As context_encode, into a malloc'ed buffer of exactly the encoded length
 * that the caller frees with free() (the context is not secret). On failure
 * *out is NULL; out of memory is KMS_INTERNAL. */
kms_status context_encode_alloc(const context_pair *pairs, size_t n_pairs,
                                uint8_t **out, size_t *out_len) KMS_MUST_USE;

/* Parses a canonical encoding strictly: every rule above, pairs in strictly
 * ascending key order (so the encoding is the canonical one and no key
 * repeats), no trailing bytes. On success pairs[0..*n_pairs) point into
 * bytes; on failure *n_pairs is 0 and the status is KMS_INVALID_ARGUMENT
 * (a caller parsing a stored header maps it to its own status). */
kms_status context_decode(const uint8_t *bytes, size_t len,
                          context_pair pairs[static KMS_CONTEXT_MAX_PAIRS],
                          size_t *n_pairs) KMS_MUST_USE;

#endif
