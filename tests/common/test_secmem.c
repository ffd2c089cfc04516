/*
 * Secret memory (common/secmem.c): zeroed, aligned blocks of any size,
 * locked, wiped before they are released, and counted when they cannot be
 * locked. munmap and mlock are wrapped at link time (-Wl,--wrap), so the test
 * sees each mapping's bytes as they are handed back to the kernel and can
 * make locking fail; the code under test is unchanged.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <kms/secmem.h>

/* ---- the wrapped system calls ---- */

int __real_munmap(void *addr, size_t len);
int __wrap_munmap(void *addr, size_t len);
int __real_mlock(const void *addr, size_t len);
int __wrap_mlock(const void *addr, size_t len);

static struct {
	size_t unmaps;
	size_t unmapped_bytes;
	size_t dirty_bytes; /* non-zero bytes seen in a mapping being released */
	const void *last_addr;
	size_t last_len;
	size_t locks;
	bool fail_locks;
} sys;

int __wrap_munmap(void *addr, size_t len)
{
	const unsigned char *p = addr;
	for (size_t i = 0; i < len; i++)
		sys.dirty_bytes += p[i] != 0;
	sys.unmaps++;
	sys.unmapped_bytes += len;
	sys.last_addr = addr;
	sys.last_len = len;
	return __real_munmap(addr, len);
}

int __wrap_mlock(const void *addr, size_t len)
{
	sys.locks++;
	if (sys.fail_locks) {
		errno = ENOMEM;
		return -1;
	}
	return __real_mlock(addr, len);
}

static int reset_sys(void **state)
{
	memset(&sys, 0, sizeof sys);
	return 0;
}

/* ---- tests ---- */

static void blocks_are_zeroed_aligned_and_writable(void **state)
{
	static const size_t sizes[] = { 1, 2, 15, 16, 31, 32, 33, 4000, 4064, 4065, 4096,
	                                 10000, 1 << 20 };
	for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
		unsigned char *p = kms_secure_alloc(sizes[k]);
		assert_non_null(p);
		assert_int_equal((uintptr_t)p % 32, 0);
		for (size_t i = 0; i < sizes[k]; i++)
			assert_int_equal(p[i], 0);
		memset(p, 0xa5, sizes[k]); /* every byte asked for is ours */
		kms_secure_free(p);
	}
}

static void zero_size_is_a_block(void **state)
{
	void *a = kms_secure_alloc(0);
	void *b = kms_secure_alloc(0);
	assert_non_null(a);
	assert_non_null(b);
	assert_ptr_not_equal(a, b);
	kms_secure_free(a);
	kms_secure_free(b);
	kms_secure_free(NULL); /* ignored */
	assert_int_equal(sys.unmaps, 2);
}

static void free_wipes_the_whole_mapping(void **state)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	unsigned char *p = kms_secure_alloc(3 * page); /* spans four pages with the header */
	assert_non_null(p);
	memset(p, 0xa5, 3 * page);
	kms_secure_free(p);
	assert_int_equal(sys.unmaps, 1);
	assert_int_equal(sys.last_len % page, 0);
	assert_true(sys.last_len >= 3 * page);
	assert_true((const unsigned char *)sys.last_addr <= p);
	assert_int_equal(sys.dirty_bytes, 0); /* the secret and the header */

	unsigned char *q = kms_secure_alloc(10);
	memset(q, 0xff, 10);
	kms_wipe(q, 10);
	for (size_t i = 0; i < 10; i++)
		assert_int_equal(q[i], 0);
	kms_wipe(NULL, 10); /* ignored */
	kms_wipe(q, 0);
	kms_secure_free(q);
	assert_int_equal(sys.dirty_bytes, 0);
}

static void blocks_are_locked_and_failures_counted(void **state)
{
	size_t before = kms_secure_lock_failures();
	void *p = kms_secure_alloc(100);
	assert_non_null(p);
	assert_int_equal(sys.locks, 1);
	kms_secure_free(p);

	/* RLIMIT_MEMLOCK refusing: the block still comes, wiped on free, and
	 * the failure is counted once per block. */
	sys.fail_locks = true;
	unsigned char *a = kms_secure_alloc(100);
	unsigned char *b = kms_secure_alloc(5000);
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(kms_secure_lock_failures(), before + 2);
	memset(a, 0x5a, 100);
	memset(b, 0x5a, 5000);
	kms_secure_free(a);
	kms_secure_free(b);
	assert_int_equal(sys.dirty_bytes, 0);
	sys.fail_locks = false;
	kms_secure_free(kms_secure_alloc(1));
	assert_int_equal(kms_secure_lock_failures(), before + 2);
}

/* Sizes whose header and page rounding would wrap around are refused, not
 * turned into a small mapping. */
static void sizes_near_size_max_are_refused(void **state)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	static const size_t header = 32;
	const size_t huge[] = { SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - header,
	                        SIZE_MAX - header - page + 1, SIZE_MAX - header - page,
	                        SIZE_MAX / 2, (size_t)1 << 62 };
	for (size_t k = 0; k < sizeof huge / sizeof huge[0]; k++)
		assert_null(kms_secure_alloc(huge[k]));
	assert_int_equal(sys.unmaps, 0);
	/* Still usable after. */
	void *p = kms_secure_alloc(64);
	assert_non_null(p);
	kms_secure_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(blocks_are_zeroed_aligned_and_writable, reset_sys),
		cmocka_unit_test_setup(zero_size_is_a_block, reset_sys),
		cmocka_unit_test_setup(free_wipes_the_whole_mapping, reset_sys),
		cmocka_unit_test_setup(blocks_are_locked_and_failures_counted, reset_sys),
		cmocka_unit_test_setup(sizes_near_size_max_are_refused, reset_sys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
