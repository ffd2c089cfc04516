/*
 * pseudonym.h: the pseudonym format (docs/pseudonyms.md), version 1.
 *
 * A pseudonym is HMAC-SHA256, under a key version held in the HSM, of the
 * pseudonym message
 *
 *     "kms-pseudonym-v1" 0x00                  the domain prefix, 17 bytes
 *     u32 BE length || canonical context       common/context.h's encoding
 *     u32 BE length || value                   1..KMS_PSEUDONYM_VALUE_MAX bytes
 *
 * written as text: "kp_" + the first 8 hex digits of the key id (after
 * "k-") + "_" + the version in decimal + "_" + the first 20 bytes of the
 * MAC in lowercase RFC 4648 base32, no padding (32 characters). At most
 * KMS_PSEUDONYM_TEXT_MAX characters.
 *
 * These functions build the message and the text; kmsd computes the MAC in
 * the HSM between the two. GenerateMac refuses any message for which
 * pseudonym_domain_prefixed is true, so a caller allowed GenerateMac but
 * not Pseudonymize cannot compute a pseudonym with it.
 *
 * Pure functions: no I/O, no allocation, thread-safe. A bad argument is
 * KMS_INVALID_ARGUMENT with a one-line message (kms_error_message()) that
 * never repeats a value, a context string or the text being parsed: a
 * value is a person's identifier. The outputs are zeroed (*len 0, "" for
 * text) on failure, and a message buffer holds no byte of the value.
 */
#ifndef KMS_COMMON_PSEUDONYM_H
#define KMS_COMMON_PSEUDONYM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/limits.h>
#include <kms/status.h>

#include "common/context.h"

/* The domain prefix: these 16 characters and a 0x00 byte (the string
 * literal's own NUL), 17 bytes. */
#define KMS_PSEUDONYM_DOMAIN "kms-pseudonym-v1"
#define KMS_PSEUDONYM_DOMAIN_LEN 17
/* The two length fields: u32 big-endian. */
#define KMS_PSEUDONYM_LENGTH_LEN 4
/* Bytes of a message beside the context encoding and the value. */
#define KMS_PSEUDONYM_MESSAGE_OVERHEAD (KMS_PSEUDONYM_DOMAIN_LEN + 2 * KMS_PSEUDONYM_LENGTH_LEN)
/* The longest message: 25 + 82,178 + 1,024 = 83,227 bytes. */
#define KMS_PSEUDONYM_MESSAGE_MAX                                              \
	(KMS_PSEUDONYM_MESSAGE_OVERHEAD + KMS_CONTEXT_ENCODED_MAX + KMS_PSEUDONYM_VALUE_MAX)

/* The text form's parts. */
#define KMS_PSEUDONYM_TEXT_PREFIX "kp_"
#define KMS_PSEUDONYM_TEXT_PREFIX_LEN 3
#define KMS_PSEUDONYM_KEY_SHORT_LEN 8  /* hex digits of the key id */
#define KMS_PSEUDONYM_KEY_SHORT_SIZE 9 /* ... and a NUL */
#define KMS_PSEUDONYM_VERSION_DIGITS_MAX 10
#define KMS_PSEUDONYM_MAC_BYTES 20     /* of the MAC's 32, in the text */
#define KMS_PSEUDONYM_MAC_TEXT_LEN 32  /* their base32 characters */
/* "kp_" 8 "_" 1..10 "_" 32: 46..55 characters; KMS_PSEUDONYM_TEXT_SIZE
 * (include/kms/limits.h) is the longest with its NUL. */
#define KMS_PSEUDONYM_TEXT_MIN                                                 \
	(KMS_PSEUDONYM_TEXT_PREFIX_LEN + KMS_PSEUDONYM_KEY_SHORT_LEN + 1 + 1 + 1 + \
	 KMS_PSEUDONYM_MAC_TEXT_LEN)
#define KMS_PSEUDONYM_TEXT_MAX (KMS_PSEUDONYM_TEXT_MIN - 1 + KMS_PSEUDONYM_VERSION_DIGITS_MAX)

/* KMS_INVALID_ARGUMENT unless 1 <= value_len <= KMS_PSEUDONYM_VALUE_MAX. */
kms_status pseudonym_check_value(size_t value_len) KMS_MUST_USE;

/* The message's length for a context encoding of context_len bytes and a
 * value of value_len bytes (both within their bounds, else 0). */
size_t pseudonym_message_len(size_t context_len, size_t value_len);

/* Validates the context (common/context.h's rules) and the value, and
 * writes the pseudonym message to out[0..cap); *len is its length. A cap
 * too small is KMS_INVALID_ARGUMENT and writes nothing. ctx may be NULL
 * when n_ctx is 0. */
kms_status pseudonym_message(const context_pair *ctx, size_t n_ctx, const uint8_t *value,
                             size_t value_len, uint8_t *out, size_t cap,
                             size_t *len) KMS_MUST_USE;

/* As pseudonym_message, from a context already encoded by context_encode
 * (or context_encode_alloc): a request's many values share one context,
 * encoded and validated once. Validating a large context is most of
 * pseudonym_message's work, so this is the one for a request's values.
 * Only the encoding's length is checked here (2..KMS_CONTEXT_ENCODED_MAX),
 * so pass nothing else. */
kms_status pseudonym_message_encoded(const uint8_t *context, size_t context_len,
                                     const uint8_t *value, size_t value_len, uint8_t *out,
                                     size_t cap, size_t *len) KMS_MUST_USE;

/* True when msg[0..len) starts with the 17-byte domain prefix: a message
 * GenerateMac must refuse. */
bool pseudonym_domain_prefixed(const uint8_t *msg, size_t len);

/* Writes the text form of a pseudonym, NUL-terminated, for the key
 * key_id_text ("k-" and 32 lowercase hex digits, NUL-terminated), version
 * (1..UINT32_MAX) and the message's HMAC-SHA256 mac. */
kms_status pseudonym_format(const char *key_id_text, uint32_t version,
                            const uint8_t mac[static KMS_MAC_LEN],
                            char out[static KMS_PSEUDONYM_TEXT_SIZE]) KMS_MUST_USE;

/* Reads which key and version made a pseudonym: text (NUL-terminated) must
 * be exactly the text form: "kp_", 8 lowercase hex digits, "_", a version
 * 1..4294967295 without leading zeros, "_", 32 characters of [a-z2-7],
 * nothing more. Writes the 8 hex digits (NUL-terminated) to key_short and
 * the version to *version; on failure "" and 0. Reads at most
 * KMS_PSEUDONYM_TEXT_SIZE bytes of text. */
kms_status pseudonym_parse(const char *text, char key_short[static KMS_PSEUDONYM_KEY_SHORT_SIZE],
                           uint32_t *version) KMS_MUST_USE;

#endif
