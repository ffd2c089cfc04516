/*
 * error.h: internal error reporting.
 *
 * A failing function records one line (what failed, with ids, never secret
 * bytes) in a thread-local slot and returns the status. The request
 * pipeline copies that line into the response and the audit entry. Because
 * the slot is per thread, a request must be handled on one thread from
 * decode to reply; kmsd's workers do exactly that.
 *
 * The source position of the failure is kept beside the message, not in
 * it: clients, audit entries and CLI output get the message alone, and only
 * kmsd's own log adds kms_error_where(), for the operator chasing a bug.
 */
#ifndef KMS_COMMON_ERROR_H
#define KMS_COMMON_ERROR_H

#include <stdbool.h>

#include <kms/status.h>

#define KMS_ERROR_MAX 256
/* "file.c:123": a file's base name and a line. */
#define KMS_ERROR_WHERE_MAX 64

/* Records status, a printf-style message and where (file's base name and
 * line) for this thread; returns status. */
kms_status kms_error_set_at(kms_status status, const char *file, int line,
                            const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* The last message recorded on this thread ("" when none): one line for
 * whoever made the request, without a source position. */
const char *kms_error_message(void);

/* Where the last message was recorded, "file.c:123" ("" when none). For
 * kmsd's own log only: never in a response, an audit entry or CLI output. */
const char *kms_error_where(void);

/* Cuts every absolute filesystem path in msg (a '/' that starts a word)
 * to its last component, in place: "store: open /var/lib/kms/kms.db: ..."
 * becomes "store: open kms.db: ...". A reply or an audit entry names the
 * file, never where the operator keeps it; kmsd's log has the whole line.
 * Returns whether anything was cut. */
bool kms_error_strip_paths(char *msg);

/* Forgets the last message on this thread. */
void kms_error_clear(void);

/* A thread's last error, kept across cleanup that may record others, so
 * that what is reported (and logged with its position) is the first
 * failure, not the cleanup's. */
typedef struct kms_error_saved {
	char message[KMS_ERROR_MAX];
	char where[KMS_ERROR_WHERE_MAX];
} kms_error_saved;

void kms_error_save(kms_error_saved *out);

/* Makes the saved error the thread's last again; returns status. */
kms_status kms_error_restore(kms_status status, const kms_error_saved *saved);

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
