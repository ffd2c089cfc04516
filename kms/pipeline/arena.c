#include "kms/pipeline/arena.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <kms/secmem.h>

#include "common/secmem_cap.h"

#define ARENA_ALIGN 16

struct arena_chunk {
	struct arena_chunk *next;
	size_t cap;
	size_t used;
	/* data follows, ARENA_ALIGN-aligned */
	_Alignas(ARENA_ALIGN) unsigned char data[];
};

struct arena {
	struct arena_chunk *first; /* kept across resets */
	struct arena_chunk *extra; /* larger or later chunks, freed on reset */
	size_t chunk_size;
	bool exhausted; /* a chunk was refused since the last reset */
};

static struct arena_chunk *chunk_new(size_t cap)
{
	if (cap > SIZE_MAX - sizeof(struct arena_chunk))
		return NULL;
	struct arena_chunk *c = kms_secure_alloc(sizeof *c + cap);
	if (!c)
		return NULL;
	c->cap = cap;
	return c;
}

arena *arena_new(size_t chunk_size)
{
	arena *a = kms_secure_alloc(sizeof *a);
	if (!a)
		return NULL;
	a->chunk_size = chunk_size;
	a->first = chunk_new(chunk_size);
	if (!a->first) {
		kms_secure_free(a);
		return NULL;
	}
	return a;
}

void arena_reset(arena *a)
{
	a->exhausted = false;
	kms_wipe(a->first->data, a->first->used);
	a->first->used = 0;
	while (a->extra) {
		struct arena_chunk *next = a->extra->next;
		kms_secure_free(a->extra); /* wipes */
		a->extra = next;
	}
}

void arena_free(arena *a)
{
	if (!a)
		return;
	arena_reset(a);
	kms_secure_free(a->first);
	kms_secure_free(a);
}

static void *chunk_take(struct arena_chunk *c, size_t size)
{
	size_t start = (c->used + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	if (start > c->cap || c->cap - start < size)
		return NULL;
	c->used = start + size;
	return c->data + start; /* zero: fresh, or wiped by arena_reset */
}

void *arena_alloc(arena *a, size_t size)
{
	if (size == 0)
		size = 1;
	void *p = chunk_take(a->first, size);
	if (p)
		return p;
	if (a->extra && (p = chunk_take(a->extra, size)))
		return p;
	size_t cap = size > a->chunk_size ? size : a->chunk_size;
	struct arena_chunk *c = chunk_new(cap);
	if (!c) {
		a->exhausted = true;
		return NULL;
	}
	c->next = a->extra;
	a->extra = c;
	return chunk_take(c, size);
}

void *arena_memdup(arena *a, const void *bytes, size_t len)
{
	void *p = arena_alloc(a, len);
	if (p && len)
		memcpy(p, bytes, len);
	return p;
}

char *arena_strdup(arena *a, const char *s)
{
	return arena_memdup(a, s, strlen(s) + 1);
}

char *arena_printf(arena *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	char *p = arena_alloc(a, (size_t)n + 1);
	if (!p)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

static void *pb_alloc(void *ctx, size_t size)
{
	return arena_alloc(ctx, size);
}

static void pb_free(void *ctx, void *p)
{
	(void)ctx;
	(void)p; /* released with the arena */
}

ProtobufCAllocator arena_protobuf_allocator(arena *a)
{
	ProtobufCAllocator al = { .alloc = pb_alloc, .free = pb_free, .allocator_data = a };
	return al;
}

bool arena_exhausted(const arena *a)
{
	return a->exhausted;
}

kms_status arena_refuse(const arena *a, const char *doing)
{
	(void)a;
	return KMS_FAIL(KMS_UNAVAILABLE, "kmsd's locked memory is used up ([limits] "
	                "max_locked_bytes = %zu) while %s: retry later, or raise the cap",
	                kms_secure_cap(), doing);
}
