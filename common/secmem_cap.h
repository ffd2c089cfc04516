/*
 * secmem_cap.h: a ceiling on secret memory (kms_secure_alloc), for a daemon.
 *
 * Locking is bounded by RLIMIT_MEMLOCK only for processes without
 * CAP_IPC_LOCK: root locks whatever it asks for. So the allocator counts the
 * bytes it has mapped and, once a cap is set, refuses (returns NULL) a block
 * that would pass it, whatever the process's capabilities. A library user
 * that never sets a cap gets the old behaviour.
 */
#ifndef KMS_COMMON_SECMEM_CAP_H
#define KMS_COMMON_SECMEM_CAP_H

#include <stddef.h>

/* From now on, kms_secure_alloc returns NULL for a block that would take
 * the bytes mapped past cap_bytes (page-rounded, headers included). 0 lifts
 * the cap. Call before other threads allocate. */
void kms_secure_set_cap(size_t cap_bytes);

/* The cap (0: none) and the bytes mapped now. */
size_t kms_secure_cap(void);
size_t kms_secure_mapped_bytes(void);

#endif
