/*
 * kms/secmem.h: memory for secrets (plaintexts, data keys, PINs).
 *
 * Each block is locked in RAM (never swapped), excluded from core dumps and
 * wiped before it is released. Every plaintext the client library returns
 * lives in such a block and is released with kms_secure_free.
 */
#ifndef KMS_SECMEM_H
#define KMS_SECMEM_H

#include <stddef.h>
#include <kms/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A zeroed block of len bytes (len may be 0), or NULL when out of memory.
 * Locking is best effort: where RLIMIT_MEMLOCK refuses, the block is still
 * excluded from dumps and wiped. */
KMS_EXPORT void *kms_secure_alloc(size_t len);

/* How many blocks could not be locked in RAM so far (RLIMIT_MEMLOCK): their
 * secrets may be swapped out. A daemon reports it at start-up. */
KMS_EXPORT size_t kms_secure_lock_failures(void);

/* Wipes and releases a block from kms_secure_alloc; NULL is ignored. */
KMS_EXPORT void kms_secure_free(void *block);

/* Wipes len bytes in a way the compiler cannot elide. */
KMS_EXPORT void kms_wipe(void *p, size_t len);

#ifdef __cplusplus
}
#endif
#endif
