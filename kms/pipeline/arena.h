/*
 * arena.h: per-worker memory for one request's decoded message and reply.
 *
 * Everything a request touches (its unpacked protobuf, plaintexts, the reply
 * being built) is allocated here, in locked memory excluded from core dumps,
 * and the whole arena is wiped when the request is done. Not thread-safe: one
 * arena belongs to one worker.
 */
#ifndef KMS_ARENA_H
#define KMS_ARENA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "common/error.h"

typedef struct arena arena;

/* An arena whose first chunk holds chunk_size bytes; NULL when out of memory. */
arena *arena_new(size_t chunk_size);

/* Wipes and frees it all. NULL is ignored. */
void arena_free(arena *a);

/* size zeroed bytes, 16-byte aligned, or NULL when out of memory. */
void *arena_alloc(arena *a, size_t size);

/* A copy of len bytes (not NUL-terminated), or NULL. */
void *arena_memdup(arena *a, const void *bytes, size_t len);

/* A NUL-terminated copy, or NULL. */
char *arena_strdup(arena *a, const char *s);

/* printf into the arena; NULL on failure. */
char *arena_printf(arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Wipes what was used and forgets it; extra chunks are released. */
void arena_reset(arena *a);

/* Whether an allocation failed since the last reset because secret memory
 * is used up (common/secmem_cap.h): the request is then refused whole. */
bool arena_exhausted(const arena *a);

/* KMS_UNAVAILABLE with one line naming the cap and what was being done. */
kms_status arena_refuse(const arena *a, const char *doing) KMS_MUST_USE;

/* A protobuf-c allocator drawing from a (its free does nothing). */
ProtobufCAllocator arena_protobuf_allocator(arena *a);

#endif
