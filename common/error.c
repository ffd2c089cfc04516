#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[KMS_ERROR_MAX];
static _Thread_local char last_where[KMS_ERROR_WHERE_MAX];

static const char *const status_names[] = {
	[KMS_OK] = "OK",
	[KMS_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
	[KMS_NOT_FOUND] = "NOT_FOUND",
	[KMS_ALREADY_EXISTS] = "ALREADY_EXISTS",
	[KMS_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
	[KMS_INVALID_CIPHERTEXT] = "INVALID_CIPHERTEXT",
	[KMS_ACCESS_DENIED] = "ACCESS_DENIED",
	[KMS_THROTTLED] = "THROTTLED",
	[KMS_HSM_UNAVAILABLE] = "HSM_UNAVAILABLE",
	[KMS_INTERNAL] = "INTERNAL",
	[KMS_UNAVAILABLE] = "UNAVAILABLE",
};

const char *kms_status_name(kms_status status)
{
	if ((unsigned)status > KMS_STATUS_MAX)
		return "UNKNOWN_STATUS";
	return status_names[status];
}

kms_status kms_error_set_at(kms_status status, const char *file, int line,
                            const char *fmt, ...)
{
	char what[KMS_ERROR_MAX] = "";
	va_list ap;

	/* Formatted aside first: an argument may be kms_error_message() itself
	 * (a message wrapped with more context). */
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	/* Truncation is fine: the message is one line for a human. */
	memcpy(last_error, what, strlen(what) + 1);
	const char *base = strrchr(file, '/');
	snprintf(last_where, sizeof last_where, "%s:%d", base ? base + 1 : file, line);
	return status;
}

const char *kms_error_message(void)
{
	return last_error;
}

const char *kms_error_where(void)
{
	return last_where;
}

/* A path starts at a '/' that begins a word, or the absolute path of a URL
 * such as ipc:///run/kms/kms.sock (the '/' after "://"), and ends where a
 * word does. */
static bool starts_path(const char *msg, size_t i)
{
	if (msg[i] != '/')
		return false;
	if (i >= 3 && !strncmp(msg + i - 3, "://", 3))
		return true;
	return i == 0 || strchr(" (\"'=[,", msg[i - 1]);
}

static size_t path_end(const char *msg, size_t i)
{
	while (msg[i] && !strchr(" :)\"',]", msg[i]))
		i++;
	return i;
}

bool kms_error_strip_paths(char *msg)
{
	bool cut = false;
	for (size_t i = 0; msg[i]; i++) {
		if (!starts_path(msg, i))
			continue;
		size_t end = path_end(msg, i);
		while (end > i + 1 && msg[end - 1] == '/')
			end--; /* a directory: keep its own name */
		size_t last = i;
		for (size_t j = i; j < end; j++)
			if (msg[j] == '/')
				last = j;
		/* Drop msg[i..last]: the directories, and the slash before the name. */
		memmove(msg + i, msg + last + 1, strlen(msg + last + 1) + 1);
		cut = true;
	}
	return cut;
}

void kms_error_clear(void)
{
	last_error[0] = '\0';
	last_where[0] = '\0';
}

void kms_error_save(kms_error_saved *out)
{
	memcpy(out->message, last_error, sizeof out->message);
	memcpy(out->where, last_where, sizeof out->where);
}

kms_status kms_error_restore(kms_status status, const kms_error_saved *saved)
{
	memcpy(last_error, saved->message, sizeof last_error);
	memcpy(last_where, saved->where, sizeof last_where);
	return status;
}
