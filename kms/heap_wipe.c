/*
 * heap_wipe.c: kmsd wipes every heap block before it is freed, whoever
 * frees it (docs/security.md, "Memory").
 *
 * kmsd wipes its own buffers, but some of a reply's bytes are freed by
 * libraries that do not wipe them: NNG frees a reply's message once its
 * transport has sent it (NNG 1.5.2's public API gives no way to keep it,
 * and no hook on that free), so a Decrypt's plaintext or a GenerateDataKey's
 * data key sent over tls+tcp:// stayed in freed heap memory until reused.
 * Measured (tests/kms/e2e/test_heap_secrets): 20 of 20 data keys sent over
 * tls+tcp:// were still in kmsd's memory afterwards; with this, none.
 *
 * kmsd's own free() and realloc() are found before the C library's by
 * every library it loads (NNG, mbedTLS, OpenSSL, SQLite, and SoftHSM,
 * which kmsd dlopens): each wipes the whole block (its usable size) and
 * then gives it to glibc's allocator, which still does all the work.
 * realloc() never moves a block inside glibc, where the old block would be
 * freed unwiped: it allocates, copies and frees (wiped) itself.
 *
 * Under AddressSanitizer, which has its own allocator, its own fill does
 * the same (__asan_default_options below). Under ThreadSanitizer (a build
 * for finding races only, docs/sanitizers.md) kmsd keeps the runtime's own
 * allocator and does not wipe: its free() would hand the runtime's blocks
 * to glibc.
 *
 * Under valgrind, whose memcheck replaces malloc and free in libc.so only,
 * these still run: libraries bind to kmsd's free(), which wipes the block
 * (malloc_usable_size is valgrind's) and calls __libc_free, an alias of
 * libc's free at the same address, which valgrind has redirected to its
 * own. So every block still goes back to valgrind's allocator, checked.
 */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

/* Seen by the shared libraries (kmsd builds with -fvisibility=hidden). */
#define KMS_INTERPOSE __attribute__((visibility("default")))

#ifdef __SANITIZE_ADDRESS__

/* ASan fills every freed block up to 64 KiB (it keeps freed blocks in
 * quarantine, so unfilled they would stay readable the longest). Replies
 * and TLS records are far smaller; filling larger blocks too would touch
 * every page of big buffers only partly used (a peer announcing 8 MiB)
 * and hold them resident in the quarantine. */
KMS_INTERPOSE const char *__asan_default_options(void);
KMS_INTERPOSE const char *__asan_default_options(void)
{
	return "max_free_fill_size=65536:free_fill_byte=0";
}

#elif defined(__SANITIZE_THREAD__)

/* ThreadSanitizer's allocator: nothing replaced (above). */

#else

/* glibc's own entry points (exported by libc.so.6 since 2.2.5). */
extern void __libc_free(void *p);
extern void *__libc_malloc(size_t size);

KMS_INTERPOSE void free(void *p)
{
	if (p)
		explicit_bzero(p, malloc_usable_size(p));
	__libc_free(p);
}

KMS_INTERPOSE void *realloc(void *p, size_t size)
{
	if (!p)
		return __libc_malloc(size);
	if (size == 0) { /* glibc frees and returns NULL */
		free(p);
		return NULL;
	}
	size_t have = malloc_usable_size(p);
	if (size <= have)
		return p; /* the tail stays inside the block, wiped when it is freed */
	void *grown = __libc_malloc(size);
	if (!grown)
		return NULL; /* p is untouched, as realloc leaves it */
	memcpy(grown, p, have);
	free(p);
	return grown;
}

#endif
