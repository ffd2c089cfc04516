/*
 * The per-worker request arena (kms/pipeline/arena.c): zeroed 16-byte
 * aligned allocations, growth across chunks, one allocation larger than a
 * chunk, zero sizes, sizes whose arithmetic would wrap, and the wipe: reset
 * zeroes what the first chunk held and wipes the chunks it releases, free
 * wipes everything. munmap is wrapped at link time (-Wl,--wrap) so the test
 * sees each released chunk's bytes as the kernel gets them back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <kms/kms.pb-c.h>

#include "kms/pipeline/arena.h"

int __real_munmap(void *addr, size_t len);
int __wrap_munmap(void *addr, size_t len);

static struct {
	size_t unmaps;
	size_t dirty_bytes;
} sys;

int __wrap_munmap(void *addr, size_t len)
{
	const unsigned char *p = addr;
	for (size_t i = 0; i < len; i++)
		sys.dirty_bytes += p[i] != 0;
	sys.unmaps++;
	return __real_munmap(addr, len);
}

static int reset_sys(void **state)
{
	memset(&sys, 0, sizeof sys);
	return 0;
}

#define CHUNK 1024

static bool all_zero(const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static void allocations_are_zeroed_aligned_and_apart(void **state)
{
	arena *a = arena_new(CHUNK);
	assert_non_null(a);
	unsigned char *blocks[200];
	size_t sizes[200];
	/* Far more than one chunk, in sizes that leave odd remainders. */
	for (size_t i = 0; i < 200; i++) {
		sizes[i] = 1 + (i * 37) % 100;
		blocks[i] = arena_alloc(a, sizes[i]);
		assert_non_null(blocks[i]);
		assert_int_equal((uintptr_t)blocks[i] % 16, 0);
		assert_true(all_zero(blocks[i], sizes[i]));
		memset(blocks[i], (int)(i + 1), sizes[i]);
	}
	/* No block overlaps another: each still holds its own byte. */
	for (size_t i = 0; i < 200; i++)
		for (size_t k = 0; k < sizes[i]; k++)
			assert_int_equal(blocks[i][k], (unsigned char)(i + 1));
	arena_free(a);
}

static void larger_than_a_chunk_and_zero_sizes(void **state)
{
	arena *a = arena_new(CHUNK);
	unsigned char *small = arena_alloc(a, 10);
	unsigned char *big = arena_alloc(a, 5 * CHUNK); /* a chunk of its own */
	unsigned char *after = arena_alloc(a, 10);
	assert_non_null(small);
	assert_non_null(big);
	assert_non_null(after);
	assert_int_equal((uintptr_t)big % 16, 0);
	assert_true(all_zero(big, 5 * CHUNK));
	memset(big, 0xbb, 5 * CHUNK);
	assert_true(all_zero(after, 10));
	assert_int_equal(small[0], 0);

	/* A zero size is a distinct, aligned pointer, never NULL. */
	void *z1 = arena_alloc(a, 0), *z2 = arena_alloc(a, 0);
	assert_non_null(z1);
	assert_non_null(z2);
	assert_ptr_not_equal(z1, z2);
	assert_int_equal((uintptr_t)z2 % 16, 0);
	assert_non_null(arena_memdup(a, NULL, 0));

	/* An arena whose chunks are empty still serves every size. */
	arena *b = arena_new(0);
	assert_non_null(b);
	for (size_t n = 0; n < 40; n++) {
		unsigned char *p = arena_alloc(b, n);
		assert_non_null(p);
		assert_true(all_zero(p, n));
		memset(p, 0xcc, n);
	}
	arena_free(b);
	arena_free(a);
	assert_int_equal(sys.dirty_bytes, 0);
}

static void copies_and_printf(void **state)
{
	arena *a = arena_new(64);
	char *s = arena_strdup(a, "alias/payments");
	assert_string_equal(s, "alias/payments");
	const uint8_t bytes[] = { 0, 1, 2, 0xff };
	uint8_t *m = arena_memdup(a, bytes, sizeof bytes);
	assert_memory_equal(m, bytes, sizeof bytes);
	/* Longer than a chunk: printf sizes, then allocates, across chunks. */
	char *p = arena_printf(a, "item %zu: %s %0200d", (size_t)7, s, 1);
	assert_non_null(p);
	assert_int_equal(strlen(p), strlen("item 7: alias/payments ") + 200);
	assert_int_equal(strncmp(p, "item 7: alias/payments 000", 26), 0);
	char *empty = arena_printf(a, "%s", "");
	assert_string_equal(empty, "");
	arena_free(a);
}

/* Sizes whose rounding or chunk header would wrap are refused, and the
 * arena goes on serving. */
static void sizes_near_size_max_are_refused(void **state)
{
	arena *a = arena_new(CHUNK);
	void *first = arena_alloc(a, 8);
	const size_t huge[] = { SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 15, SIZE_MAX - 16,
	                        SIZE_MAX - 64, SIZE_MAX - 4096, SIZE_MAX / 2,
	                        (size_t)1 << 62 };
	for (size_t k = 0; k < sizeof huge / sizeof huge[0]; k++) {
		assert_null(arena_alloc(a, huge[k]));
		assert_null(arena_memdup(a, "x", huge[k]));
	}
	unsigned char *p = arena_alloc(a, 8);
	assert_non_null(p);
	assert_true(p > (unsigned char *)first);
	assert_true(all_zero(p, 8));
	arena_free(a);
	assert_int_equal(sys.dirty_bytes, 0);
}

static void reset_wipes_and_starts_over(void **state)
{
	arena *a = arena_new(CHUNK);
	unsigned char *first = arena_alloc(a, CHUNK / 2);
	memset(first, 0x77, CHUNK / 2);                 /* a secret in the first chunk */
	char *name = arena_strdup(a, "secret-ish");
	assert_non_null(name);
	for (size_t i = 0; i < 10; i++)                 /* and in extra chunks */
		memset(arena_alloc(a, CHUNK), 0x88, CHUNK);
	unsigned char *big = arena_alloc(a, 3 * CHUNK);
	memset(big, 0x99, 3 * CHUNK);

	sys.unmaps = 0;
	arena_reset(a);
	/* The extra chunks were wiped, then released. */
	assert_true(sys.unmaps >= 11);
	assert_int_equal(sys.dirty_bytes, 0);
	/* The first chunk is kept and starts over, zeroed: the same block is
	 * handed out again with none of the old bytes. */
	unsigned char *again = arena_alloc(a, CHUNK);
	assert_ptr_equal(again, first);
	assert_true(all_zero(again, CHUNK));

	/* Reset twice, and on an unused arena, is harmless. */
	arena_reset(a);
	arena_reset(a);
	assert_ptr_equal(arena_alloc(a, 1), first);
	arena_free(a);
	assert_int_equal(sys.dirty_bytes, 0);
}

static void free_wipes_everything(void **state)
{
	arena *a = arena_new(CHUNK);
	for (size_t i = 0; i < 5; i++)
		memset(arena_alloc(a, CHUNK - 16), 0x42, CHUNK - 16);
	sys.unmaps = 0;
	arena_free(a);
	/* Each chunk, the first and the arena itself. */
	assert_true(sys.unmaps >= 6);
	assert_int_equal(sys.dirty_bytes, 0);
	arena_free(NULL);
}

/* protobuf-c unpacks into the arena: a request decoded there is whole, and
 * its bytes go with the next reset. */
static void protobuf_allocator_draws_from_the_arena(void **state)
{
	Kms__Request req;
	Kms__GenerateRandomRequest op;
	kms__request__init(&req);
	kms__generate_random_request__init(&op);
	op.number_of_bytes = 32;
	req.request_id = "req-1";
	req.op_case = KMS__REQUEST__OP_GENERATE_RANDOM;
	req.generate_random = &op;
	uint8_t packed[64];
	size_t n = kms__request__pack(&req, packed);
	assert_true(n < sizeof packed);

	arena *a = arena_new(CHUNK);
	ProtobufCAllocator al = arena_protobuf_allocator(a);
	Kms__Request *back = kms__request__unpack(&al, n, packed);
	assert_non_null(back);
	assert_string_equal(back->request_id, "req-1");
	assert_int_equal(back->generate_random->number_of_bytes, 32);
	kms__request__free_unpacked(back, &al); /* a no-op: the arena owns it */
	arena_reset(a);
	arena_free(a);
	assert_int_equal(sys.dirty_bytes, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(allocations_are_zeroed_aligned_and_apart, reset_sys),
		cmocka_unit_test_setup(larger_than_a_chunk_and_zero_sizes, reset_sys),
		cmocka_unit_test_setup(copies_and_printf, reset_sys),
		cmocka_unit_test_setup(sizes_near_size_max_are_refused, reset_sys),
		cmocka_unit_test_setup(reset_wipes_and_starts_over, reset_sys),
		cmocka_unit_test_setup(free_wipes_everything, reset_sys),
		cmocka_unit_test_setup(protobuf_allocator_draws_from_the_arena, reset_sys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
