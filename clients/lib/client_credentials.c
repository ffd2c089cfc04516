/*
 * client_credentials.c: credentials files (docs/request-signing.md,
 * "Credentials file"): the parser, the loader with its file checks, and
 * which access key a client signs with (kms/client.h, kms_client_options).
 *
 * The text is untrusted: every byte is looked at within len, and no message
 * repeats any of it (a line may hold the secret). The secret goes straight
 * from hex into secure memory; the loader's text buffer is secure memory
 * too, wiped when released.
 */
/* secure_getenv: _GNU_SOURCE comes from the build (CMakeLists.txt). */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kms/client.h>
#include <kms/secmem.h>

#include "clients/lib/client_internal.h"

enum { FIELD_PRINCIPAL, FIELD_ACCESS_KEY_ID, FIELD_SECRET, FIELD_COUNT };
static const char *const field_names[FIELD_COUNT] = {
	"principal", "access_key_id", "secret",
};

static bool blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

static int lower_hex(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* 1..63 of [A-Za-z0-9._-]: the server's principal names. */
static bool principal_ok(const char *s, size_t len)
{
	if (len < 1 || len > KMS_PRINCIPAL_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

/* "AK" and 20 of the RFC 4648 base32 alphabet [A-Z2-7]. */
static bool access_key_id_ok(const char *s, size_t len)
{
	if (len != KMS_ACCESS_KEY_ID_LEN || s[0] != 'A' || s[1] != 'K')
		return false;
	for (size_t i = 2; i < len; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '2' && s[i] <= '7')))
			return false;
	return true;
}

/* 64 lowercase hex digits into secret; false (secret partly written: the
 * caller wipes it) for anything else. */
static bool secret_decode(const char *s, size_t len, uint8_t secret[KMS_SIGN_SECRET_LEN])
{
	if (len != 2 * KMS_SIGN_SECRET_LEN)
		return false;
	for (size_t i = 0; i < KMS_SIGN_SECRET_LEN; i++) {
		int hi = lower_hex(s[2 * i]), lo = lower_hex(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		secret[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

/* Which field name text[0..len) is, or -1. */
static int field_find(const char *text, size_t len)
{
	for (int f = 0; f < FIELD_COUNT; f++)
		if (strlen(field_names[f]) == len && memcmp(field_names[f], text, len) == 0)
			return f;
	return -1;
}

kms_status kms_credentials_parse(const char *text, size_t len, const char *name,
                                 kms_credentials *out, kms_error *err)
{
	client_error_clear(err);
	if (!out)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "kms_credentials_parse: out is required");
	memset(out, 0, sizeof *out);
	const char *file = name ? name : "(text)";
	if (!text && len)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "kms_credentials_parse: text is required");
	if (len > KMS_CREDENTIALS_FILE_MAX)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "credentials file %s is larger than %d bytes; name the file "
		                   "kms-admin access-key create wrote", file,
		                   KMS_CREDENTIALS_FILE_MAX);
	if (len && memchr(text, '\0', len))
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "credentials file %s holds a NUL byte; write it again as "
		                   "text (docs/request-signing.md)", file);

	uint8_t *secret = kms_secure_alloc(KMS_SIGN_SECRET_LEN);
	if (!secret)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of secure memory");
	kms_status st = KMS_INVALID_ARGUMENT;
	bool seen[FIELD_COUNT] = { false };
	unsigned line = 0;
	size_t pos = 0;
	while (pos < len) { /* each pass takes at least one byte */
		const char *start = text + pos;
		const char *nl = memchr(start, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - start) : len - pos;
		pos += n + (nl ? 1 : 0);
		line++;
		if (memchr(start, '\r', n)) {
			client_fail(err, st, KMS_ERROR_LOCAL,
			            "credentials file %s: line %u ends with CR (DOS line ends); "
			            "save it with Unix line ends (LF only)", file, line);
			goto fail;
		}
		size_t a = 0, b = n;
		while (a < b && blank(start[a]))
			a++;
		while (b > a && blank(start[b - 1]))
			b--;
		if (a == b || start[a] == '#')
			continue; /* blank or comment: any other byte is fine there */
		for (size_t i = a; i < b; i++) {
			unsigned char ch = (unsigned char)start[i];
			if ((ch < 0x20 && ch != '\t') || ch >= 0x7f) {
				client_fail(err, st, KMS_ERROR_LOCAL,
				            "credentials file %s: line %u holds a control or "
				            "non-ASCII byte; write it as \"key = value\" in ASCII",
				            file, line);
				goto fail;
			}
		}
		const char *eq = memchr(start + a, '=', b - a);
		if (!eq) {
			client_fail(err, st, KMS_ERROR_LOCAL,
			            "credentials file %s: line %u is not \"key = value\" "
			            "(or a # comment)", file, line);
			goto fail;
		}
		size_t key_end = (size_t)(eq - start), value_at = key_end + 1;
		while (key_end > a && blank(start[key_end - 1]))
			key_end--;
		while (value_at < b && blank(start[value_at]))
			value_at++;
		const char *value = start + value_at;
		size_t value_len = b - value_at;
		int field = field_find(start + a, key_end - a);
		if (field < 0) {
			/* The key is not repeated: it may be anything, even a secret. */
			client_fail(err, st, KMS_ERROR_LOCAL,
			            "credentials file %s: line %u has an unknown key; the keys "
			            "are principal, access_key_id and secret", file, line);
			goto fail;
		}
		if (seen[field]) {
			client_fail(err, st, KMS_ERROR_LOCAL,
			            "credentials file %s: line %u gives %s again; keep one",
			            file, line, field_names[field]);
			goto fail;
		}
		seen[field] = true;
		switch (field) {
		case FIELD_PRINCIPAL:
			if (!principal_ok(value, value_len)) {
				client_fail(err, st, KMS_ERROR_LOCAL,
				            "credentials file %s: line %u: principal must be 1..%d "
				            "of [A-Za-z0-9._-]", file, line, KMS_PRINCIPAL_NAME_MAX);
				goto fail;
			}
			memcpy(out->principal, value, value_len);
			out->principal[value_len] = '\0';
			break;
		case FIELD_ACCESS_KEY_ID:
			if (!access_key_id_ok(value, value_len)) {
				client_fail(err, st, KMS_ERROR_LOCAL,
				            "credentials file %s: line %u: access_key_id must be AK "
				            "and 20 of [A-Z2-7]", file, line);
				goto fail;
			}
			memcpy(out->access_key_id, value, value_len);
			out->access_key_id[value_len] = '\0';
			break;
		default: /* FIELD_SECRET */
			if (!secret_decode(value, value_len, secret)) {
				client_fail(err, st, KMS_ERROR_LOCAL,
				            "credentials file %s: line %u: secret must be %d "
				            "lowercase hex digits", file, line,
				            2 * KMS_SIGN_SECRET_LEN);
				goto fail;
			}
			break;
		}
	}
	for (int f = FIELD_ACCESS_KEY_ID; f < FIELD_COUNT; f++) {
		if (!seen[f]) {
			client_fail(err, st, KMS_ERROR_LOCAL,
			            "credentials file %s has no %s line; it needs access_key_id "
			            "and secret", file, field_names[f]);
			goto fail;
		}
	}
	out->secret = secret;
	return KMS_OK;
fail:
	kms_secure_free(secret);
	memset(out, 0, sizeof *out);
	return st;
}

kms_status kms_credentials_load(const char *path, kms_credentials *out, kms_error *err)
{
	client_error_clear(err);
	if (!out)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "kms_credentials_load: out is required");
	memset(out, 0, sizeof *out);
	if (!path || !path[0])
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "kms_credentials_load: a path is required");

	/* O_NONBLOCK: opening a FIFO must not wait for a writer. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ELOOP)
			return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
			                   "credentials file %s is a symbolic link; name the "
			                   "file itself", path);
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "credentials file %s: %s", path, strerror(errno));
	}
	kms_status st = KMS_INVALID_ARGUMENT;
	char *text = NULL;
	struct stat sb;
	if (fstat(fd, &sb) != 0) {
		client_fail(err, st, KMS_ERROR_LOCAL, "credentials file %s: %s", path,
		            strerror(errno));
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		client_fail(err, st, KMS_ERROR_LOCAL,
		            "credentials file %s is not a regular file", path);
		goto out;
	}
	uid_t me = geteuid();
	if (sb.st_uid != me && sb.st_uid != 0) {
		client_fail(err, st, KMS_ERROR_LOCAL,
		            "credentials file %s belongs to uid %u, not to uid %u or root; "
		            "chown it to the user that runs this program",
		            path, (unsigned)sb.st_uid, (unsigned)me);
		goto out;
	}
	if (sb.st_mode & 077) {
		client_fail(err, st, KMS_ERROR_LOCAL,
		            "credentials file %s is open to group or others (mode %04o); "
		            "chmod 600 %s", path, (unsigned)(sb.st_mode & 07777), path);
		goto out;
	}
	if (sb.st_size > KMS_CREDENTIALS_FILE_MAX) {
		client_fail(err, st, KMS_ERROR_LOCAL,
		            "credentials file %s is larger than %d bytes; name the file "
		            "kms-admin access-key create wrote", path, KMS_CREDENTIALS_FILE_MAX);
		goto out;
	}
	/* One byte more than allowed, to see a file that grew since fstat. */
	text = kms_secure_alloc(KMS_CREDENTIALS_FILE_MAX + 1);
	if (!text) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of secure memory");
		goto out;
	}
	size_t len = 0;
	while (len < KMS_CREDENTIALS_FILE_MAX + 1) { /* every pass reads, or ends */
		ssize_t n = read(fd, text + len, KMS_CREDENTIALS_FILE_MAX + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			client_fail(err, st, KMS_ERROR_LOCAL, "credentials file %s: %s", path,
			            strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	st = kms_credentials_parse(text, len, path, out, err);
out:
	kms_secure_free(text); /* wiped */
	close(fd);
	return st;
}

void kms_credentials_free(kms_credentials *creds)
{
	if (!creds)
		return;
	kms_secure_free(creds->secret);
	memset(creds, 0, sizeof *creds);
}

kms_status client_credentials_pick(const kms_client_options *opts, kms_credentials *creds,
                                   const char **access_key_id,
                                   const uint8_t **secret, kms_error *err)
{
	memset(creds, 0, sizeof *creds);
	*access_key_id = opts->access_key_id;
	*secret = opts->access_key_secret;
	if (opts->access_key_id)
		return KMS_OK;
	const char *path = opts->credentials_file;
	bool from_env = false;
	if (!path && !opts->no_env_credentials) {
		const char *env = secure_getenv(KMS_CREDENTIALS_ENV);
		if (env && env[0]) {
			path = env;
			from_env = true;
		}
	}
	if (!path)
		return KMS_OK; /* unsigned */
	kms_status st = kms_credentials_load(path, creds, err);
	if (st != KMS_OK) {
		if (from_env && err) {
			size_t used = strlen(err->message);
			const char note[] = " ($" KMS_CREDENTIALS_ENV ")";
			if (used + sizeof note <= sizeof err->message)
				memcpy(err->message + used, note, sizeof note);
		}
		return st;
	}
	*access_key_id = creds->access_key_id;
	*secret = creds->secret;
	return KMS_OK;
}
