/*
 * kmsd_store.c: the [store] password file, and the store's options
 * (kmsd_store.h).
 */
#include "kms/kmsd_store.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kms/secmem.h>

/* Reads at most cap bytes of fd into buf; the count, or -1. */
static ssize_t read_all(int fd, char *buf, size_t cap)
{
	size_t got = 0;
	while (got < cap) {
		ssize_t n = read(fd, buf + got, cap - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* The one line of raw[0..len): a final "\n" or "\r\n" dropped; no other
 * control character, not empty. */
static kms_status take_line(const char *path, char *raw, size_t len)
{
	if (len > 0 && raw[len - 1] == '\n')
		len--;
	if (len > 0 && raw[len - 1] == '\r')
		len--;
	raw[len] = '\0';
	KMS_ENSURE(len > 0, KMS_INVALID_ARGUMENT, "[store] password_file %s is empty: write the "
	           "database password in it", path);
	for (size_t i = 0; i < len; i++)
		KMS_ENSURE((unsigned char)raw[i] >= 0x20 && raw[i] != 0x7f, KMS_INVALID_ARGUMENT,
		           "[store] password_file %s holds a control character or a second line: "
		           "it must hold the password alone", path);
	return KMS_OK;
}

kms_status kmsd_store_password_load(const kmsd_config *cfg, char **out)
{
	*out = NULL;
	if (cfg->store_url[0])
		KMS_GUARD(store_pg_url_check(cfg->store_url));
	if (!cfg->store_url[0] || !cfg->store_password_file[0])
		return KMS_OK;
	const char *path = cfg->store_password_file;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
	if (fd < 0)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "[store] password_file %s: cannot open it: %s",
		                path, strerror(errno));
	kms_status st = KMS_OK;
	char *raw = NULL;
	struct stat sb;
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "[store] password_file %s is not a regular file",
		              path);
		goto out;
	}
	if (sb.st_mode & (S_IRWXG | S_IRWXO)) {
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "[store] password_file %s has permissions %04o: "
		              "group and others must have no access (chmod 600)", path,
		              (unsigned)(sb.st_mode & 07777));
		goto out;
	}
	/* Room for the longest password, "\r\n", and one byte more to see a
	 * file that is too long. */
	const size_t cap = KMSD_STORE_PASSWORD_MAX + 3;
	raw = kms_secure_alloc(cap + 1);
	if (!raw) {
		st = KMS_FAIL(KMS_INTERNAL, "out of locked memory for the [store] password");
		goto out;
	}
	ssize_t n = read_all(fd, raw, cap);
	if (n < 0) {
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "[store] password_file %s: cannot read it: %s",
		              path, strerror(errno));
		goto out;
	}
	if ((size_t)n == cap) {
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "[store] password_file %s is longer than a "
		              "password may be (%d bytes)", path, KMSD_STORE_PASSWORD_MAX);
		goto out;
	}
	st = take_line(path, raw, (size_t)n);
	if (st == KMS_OK && strlen(raw) > KMSD_STORE_PASSWORD_MAX)
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "[store] password_file %s is longer than a "
		              "password may be (%d bytes)", path, KMSD_STORE_PASSWORD_MAX);
	if (st == KMS_OK) {
		*out = raw;
		raw = NULL;
	}
out:
	kmsd_store_password_free(raw);
	close(fd);
	return st;
}

void kmsd_store_password_free(char *password)
{
	kms_secure_free(password); /* wipes the whole block */
}

store_options kmsd_store_options(const kmsd_config *cfg, const char *password)
{
	store_options o = { .data_dir = cfg->data_dir };
	if (cfg->store_url[0]) {
		o.pg_url = cfg->store_url;
		o.pg_password = password;
		o.pg_exclusive = true;
	}
	return o;
}
