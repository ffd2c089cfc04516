#include <kms/secmem.h>

#include "common/secmem_cap.h"

#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <unistd.h>

/*
 * One mapping per block, so locking and unlocking one secret never touches
 * another's page. The header in front records the mapping's size.
 */
struct secmem_header {
	size_t map_len;
	size_t user_len;
	uint64_t magic;
	uint64_t pad; /* keeps the user pointer 32-byte aligned */
};

#define SECMEM_MAGIC 0x6b6d732d73656372ULL /* "kms-secr" */

static atomic_size_t lock_failures;
static atomic_size_t mapped_bytes;
static atomic_size_t cap_bytes; /* 0: none */

void kms_secure_set_cap(size_t cap)
{
	atomic_store(&cap_bytes, cap);
}

size_t kms_secure_cap(void)
{
	return atomic_load(&cap_bytes);
}

size_t kms_secure_mapped_bytes(void)
{
	return atomic_load(&mapped_bytes);
}

/* Takes map_len from the budget, or refuses when that would pass the cap. */
static bool reserve(size_t map_len)
{
	size_t cap = atomic_load(&cap_bytes);
	size_t now = atomic_load(&mapped_bytes);
	do {
		if (cap && (map_len > cap || now > cap - map_len))
			return false;
	} while (!atomic_compare_exchange_weak(&mapped_bytes, &now, now + map_len));
	return true;
}

size_t kms_secure_lock_failures(void)
{
	return atomic_load_explicit(&lock_failures, memory_order_relaxed);
}

void kms_wipe(void *p, size_t len)
{
	if (p && len)
		OPENSSL_cleanse(p, len);
}

void *kms_secure_alloc(size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	if (len > SIZE_MAX - sizeof(struct secmem_header) - page)
		return NULL;
	size_t map_len = (sizeof(struct secmem_header) + len + page - 1) / page * page;
	if (!reserve(map_len))
		return NULL;
	void *map = mmap(NULL, map_len, PROT_READ | PROT_WRITE,
	                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED) {
		atomic_fetch_sub(&mapped_bytes, map_len);
		return NULL;
	}
	(void)madvise(map, map_len, MADV_DONTDUMP);
	if (mlock(map, map_len) != 0)
		atomic_fetch_add_explicit(&lock_failures, 1, memory_order_relaxed);
	struct secmem_header *h = map;
	h->map_len = map_len;
	h->user_len = len;
	h->magic = SECMEM_MAGIC;
	return h + 1;
}

void kms_secure_free(void *block)
{
	if (!block)
		return;
	struct secmem_header *h = (struct secmem_header *)block - 1;
	if (h->magic != SECMEM_MAGIC)
		abort(); /* programmer error: not ours */
	size_t map_len = h->map_len;
	OPENSSL_cleanse(h, map_len);
	(void)munlock(h, map_len);
	munmap(h, map_len);
	atomic_fetch_sub(&mapped_bytes, map_len);
}
