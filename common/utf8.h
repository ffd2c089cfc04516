/*
 * common/utf8.h: strict UTF-8 (RFC 3629), the one decoder of kms.
 *
 * Strict means only the shortest form of each Unicode scalar value: no
 * overlong forms (C0 80 for U+0000), no UTF-16 surrogates (U+D800..DFFF, so
 * no CESU-8), nothing above U+10FFFF, no truncated sequence. Anything looser
 * would let two byte strings stand for one text, and so two different
 * encryption contexts, audit entries or note texts read as the same.
 *
 * U+0000 is valid UTF-8 and passes here; callers that hand strings on
 * NUL-terminated refuse it themselves. Pure functions, thread-safe.
 */
#ifndef KMS_COMMON_UTF8_H
#define KMS_COMMON_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decodes the sequence at s[*i] (with *i < len): on success *cp is its code
 * point and *i has moved past it; false, with *i unchanged, on a bad or
 * truncated sequence. */
bool kms_utf8_next(const uint8_t *s, size_t len, size_t *i, uint32_t *cp);

/* True when bytes[0..len) is strict UTF-8; bytes may be NULL only when len
 * is 0. On false, *bad_offset (if not NULL) is the offset of the first byte
 * of the first bad sequence. */
bool kms_utf8_valid(const uint8_t *bytes, size_t len, size_t *bad_offset);

/* The length of the longest prefix of s[0..len) of at most max bytes that
 * does not cut a character in two; s is valid UTF-8. For showing the start
 * of a long value without producing a broken character. */
size_t kms_utf8_prefix(const char *s, size_t len, size_t max);

#endif
