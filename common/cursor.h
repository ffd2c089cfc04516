/*
 * cursor.h: the one bounded reader for untrusted bytes.
 *
 * Every read checks the bytes left first; a failed read leaves the cursor
 * poisoned (ok = false) so a parser can read a whole structure and check once.
 * Nothing is copied out of a poisoned cursor.
 */
#ifndef KMS_COMMON_CURSOR_H
#define KMS_COMMON_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kms_cursor {
	const uint8_t *next;
	size_t left;
	bool ok;
} kms_cursor;

static inline kms_cursor kms_cursor_init(const uint8_t *bytes, size_t len)
{
	kms_cursor c = { bytes, len, bytes != NULL || len == 0 };
	return c;
}

/* Points *out at the next n bytes and skips them; false if fewer are left. */
static inline bool kms_cursor_take(kms_cursor *c, size_t n, const uint8_t **out)
{
	if (!c->ok || c->left < n) {
		c->ok = false;
		*out = NULL;
		return false;
	}
	*out = c->next;
	c->next += n;
	c->left -= n;
	return true;
}

static inline bool kms_cursor_u8(kms_cursor *c, uint8_t *out)
{
	const uint8_t *p;
	if (!kms_cursor_take(c, 1, &p)) {
		*out = 0;
		return false;
	}
	*out = p[0];
	return true;
}

static inline bool kms_cursor_u16be(kms_cursor *c, uint16_t *out)
{
	const uint8_t *p;
	if (!kms_cursor_take(c, 2, &p)) {
		*out = 0;
		return false;
	}
	*out = (uint16_t)((p[0] << 8) | p[1]);
	return true;
}

static inline bool kms_cursor_u32be(kms_cursor *c, uint32_t *out)
{
	const uint8_t *p;
	if (!kms_cursor_take(c, 4, &p)) {
		*out = 0;
		return false;
	}
	*out = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | (uint32_t)p[3];
	return true;
}

/* True when every byte was consumed and no read failed: strict parsing. */
static inline bool kms_cursor_done(const kms_cursor *c)
{
	return c->ok && c->left == 0;
}

/* A bounded writer: the mirror image, for building blobs and headers. */
typedef struct kms_writer {
	uint8_t *next;
	size_t left;
	bool ok;
} kms_writer;

static inline kms_writer kms_writer_init(uint8_t *buf, size_t cap)
{
	kms_writer w = { buf, cap, buf != NULL || cap == 0 };
	return w;
}

static inline bool kms_writer_put(kms_writer *w, const void *bytes, size_t n)
{
	if (!w->ok || w->left < n) {
		w->ok = false;
		return false;
	}
	for (size_t i = 0; i < n; i++)
		w->next[i] = ((const uint8_t *)bytes)[i];
	w->next += n;
	w->left -= n;
	return true;
}

static inline bool kms_writer_u8(kms_writer *w, uint8_t v)
{
	return kms_writer_put(w, &v, 1);
}

static inline bool kms_writer_u16be(kms_writer *w, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };
	return kms_writer_put(w, b, 2);
}

static inline bool kms_writer_u32be(kms_writer *w, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
	return kms_writer_put(w, b, 4);
}

#endif
