/*
 * error.h: internal error reporting.
 *
 * A failing function records one line (what failed, with ids and the source
 * position, never secret bytes) in a thread-local slot and returns the
 * status. The request pipeline copies that line into the response. Because
 * the slot is per thread, a request must be handled on one thread from
 * decode to reply; kmsd's workers do exactly that.
 */
#ifndef KMS_COMMON_ERROR_H
#define KMS_COMMON_ERROR_H

#include <kms/status.h>

#define KMS_ERROR_MAX 256

/* Records status and a printf-style message for this thread; returns status. */
kms_status kms_error_set_at(kms_status status, const char *file, int line,
                            const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* The last message recorded on this thread ("" when none). */
const char *kms_error_message(void);

/* Forgets the last message on this thread. */
void kms_error_clear(void);

/* Fail with a message: return KMS_FAIL(KMS_NOT_FOUND, "key %s", id); */
#define KMS_FAIL(status, ...) kms_error_set_at((status), __FILE__, __LINE__, __VA_ARGS__)

/* Propagate a failure: KMS_GUARD(hsm_random(...)); */
#define KMS_GUARD(expr)                                                        \
	do {                                                                   \
		kms_status kms_guard_st_ = (expr);                             \
		if (kms_guard_st_ != KMS_OK)                                   \
			return kms_guard_st_;                                  \
	} while (0)

/* Propagate into a goto-out cleanup: KMS_GUARD_OUT(st, f()); */
#define KMS_GUARD_OUT(st, expr)                                                \
	do {                                                                   \
		(st) = (expr);                                                 \
		if ((st) != KMS_OK)                                            \
			goto out;                                              \
	} while (0)

/* Check a condition, failing with a message: KMS_ENSURE(n <= max, KMS_INVALID_ARGUMENT, "..."); */
#define KMS_ENSURE(cond, status, ...)                                          \
	do {                                                                   \
		if (!(cond))                                                   \
			return KMS_FAIL((status), __VA_ARGS__);                \
	} while (0)

#endif
