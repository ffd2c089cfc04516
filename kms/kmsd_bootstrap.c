/*
 * kmsd_bootstrap.c: `kmsd --bootstrap-admin` (kmsd_bootstrap.h).
 */
#include "kms/kmsd_bootstrap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kms/secmem.h>

#include "common/error.h"
#include "common/log.h" /* kms_now */
#include "kms/authz/authz_secrets.h"
#include "kms/store/store.h"

/* The longest --credentials-out path, its ".tmp" and the NUL included. */
#define CREDENTIALS_PATH_MAX 4096

kms_status kmsd_bootstrap_roles(const char *text, uint32_t *roles)
{
	static const struct { const char *name; uint32_t bit; } known[] = {
		{ "admin", PRINCIPAL_ROLE_ADMIN },
		{ "app", PRINCIPAL_ROLE_APP },
		{ "auditor", PRINCIPAL_ROLE_AUDITOR },
	};
	*roles = 0;
	const char *p = text;
	for (size_t n = 0; n < 8; n++) { /* at most three roles, bounded anyway */
		size_t len = strcspn(p, ",");
		uint32_t bit = 0;
		for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
			if (strlen(known[i].name) == len && !strncmp(p, known[i].name, len))
				bit = known[i].bit;
		KMS_ENSURE(bit, KMS_INVALID_ARGUMENT, "--roles: each role must be admin, app or "
		           "auditor, separated by commas (e.g. --roles admin,auditor)");
		KMS_ENSURE(!(*roles & bit), KMS_INVALID_ARGUMENT, "--roles names a role twice");
		*roles |= bit;
		if (!p[len])
			return KMS_OK;
		p += len + 1;
	}
	return KMS_FAIL(KMS_INVALID_ARGUMENT, "--roles names more than three roles");
}

static void hex(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

/* The temp file the credentials file is written through: path.tmp. */
static kms_status temp_path(const char *path, char tmp[static CREDENTIALS_PATH_MAX])
{
	KMS_ENSURE(strlen(path) + sizeof ".tmp" <= CREDENTIALS_PATH_MAX, KMS_INVALID_ARGUMENT,
	           "--credentials-out: the path is longer than %d bytes: give a shorter one",
	           CREDENTIALS_PATH_MAX - (int)sizeof ".tmp");
	snprintf(tmp, CREDENTIALS_PATH_MAX, "%s.tmp", path);
	return KMS_OK;
}

/* The one line for a temp file that is already there: only an earlier run
 * stopped between creating and removing it leaves one (the data dir's lock
 * keeps two runs on one store apart). */
static kms_status temp_left(const char *tmp)
{
	return KMS_FAIL(KMS_FAILED_PRECONDITION, "--credentials-out: the temp file %s exists, left "
	                "by an interrupted earlier --bootstrap-admin: remove it and run again",
	                tmp);
}

/* Refuses, before anything is made, a credentials path or its temp file
 * that exists. */
static kms_status check_out_path(const char *path)
{
	char tmp[CREDENTIALS_PATH_MAX];
	KMS_GUARD(temp_path(path, tmp));
	struct stat sb;
	KMS_ENSURE(lstat(path, &sb) != 0 && errno == ENOENT, KMS_INVALID_ARGUMENT,
	           "--credentials-out %s exists: give a new path (it is never replaced)", path);
	if (lstat(tmp, &sb) == 0)
		return temp_left(tmp);
	return KMS_OK;
}

/* Writes the credentials file through path.tmp (O_EXCL, 0600, fsync) and a
 * link to path that fails if path exists. The text holding the secret is
 * in locked memory and wiped. */
static kms_status write_credentials(const char *path, const char *name, const char *id,
                                    const uint8_t *secret)
{
	char tmp[CREDENTIALS_PATH_MAX];
	KMS_GUARD(temp_path(path, tmp));
	size_t cap = 512;
	char *text = kms_secure_alloc(cap);
	KMS_ENSURE(text, KMS_INTERNAL, "out of locked memory writing the credentials file");
	char secret_hex[2 * AUTHZ_SECRET_LEN + 1];
	hex(secret, AUTHZ_SECRET_LEN, secret_hex);
	int n = snprintf(text, cap, "# kms credentials: principal %s (keep this file secret)\n"
	                 "principal = %s\naccess_key_id = %s\nsecret = %s\n", name, name, id,
	                 secret_hex);
	kms_wipe(secret_hex, sizeof secret_hex);
	kms_status st = KMS_OK;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EEXIST) {
		st = temp_left(tmp);
	} else if (fd < 0) {
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "--credentials-out %s: cannot create %s: %s",
		              path, tmp, strerror(errno));
	} else {
		bool ok = n > 0 && (size_t)n < cap && fchmod(fd, 0600) == 0 &&
		          write(fd, text, (size_t)n) == (ssize_t)n && fsync(fd) == 0;
		int err = errno;
		ok = close(fd) == 0 && ok;
		if (ok && link(tmp, path) != 0) {
			err = errno;
			ok = false;
		}
		if (!ok)
			st = KMS_FAIL(KMS_INVALID_ARGUMENT, "--credentials-out %s: cannot write it: %s%s",
			              path, strerror(err), err == EEXIST ? " (it exists: give a new "
			              "path; it is never replaced)" : "");
		(void)unlink(tmp);
	}
	kms_secure_free(text);
	return st;
}

kms_status kmsd_bootstrap(const kmsd_config *cfg, const store_options *so, hsm *h,
                          const char *name, uint32_t roles, const char *out_path,
                          char id[static AUTHZ_ID_SIZE])
{
	id[0] = '\0';
	KMS_GUARD(authz_names_principal_check(name, strlen(name)));
	KMS_ENSURE(roles && !(roles & ~PRINCIPAL_ROLES_ALL), KMS_INVALID_ARGUMENT,
	           "--roles: give at least one of admin, app, auditor");
	KMS_GUARD(check_out_path(out_path));
	store *st = NULL;
	bool created = false;
	kms_status status = store_open_with(so, &st, &created);
	if (status == KMS_FAILED_PRECONDITION && !so->pg_url) /* else the store's own words */
		return KMS_FAIL(KMS_FAILED_PRECONDITION, "--bootstrap-admin: the data dir %s is in "
		                "use (is kmsd running?): stop kmsd first", cfg->data_dir);
	KMS_GUARD(status);
	bool any = true;
	uint8_t *secret = NULL;
	uint8_t wrapped[AUTHZ_WRAPPED_LEN];
	bool wrap_created = false; /* authz_secrets_key_ensure logs it */
	if ((status = store_principals_any(st, &any)) != KMS_OK)
		goto out;
	if (any) {
		status = KMS_FAIL(KMS_FAILED_PRECONDITION, "--bootstrap-admin: the store in %s "
		                  "already holds principals: bootstrap works only on a fresh store; "
		                  "create principals with kms-admin instead",
		                  so->pg_url ? so->pg_url : cfg->data_dir);
		goto out;
	}
	if ((status = authz_secrets_key_ensure(h, &wrap_created)) != KMS_OK)
		goto out;
	if ((status = authz_secrets_new(h, name, id, &secret, wrapped)) != KMS_OK)
		goto out;
	/* The file first: a principal whose secret was never written down
	 * would leave a store no bootstrap can use again. */
	if ((status = write_credentials(out_path, name, id, secret)) != KMS_OK)
		goto out;
	int64_t now = kms_now();
	store_principal p = { .roles = roles, .state = PRINCIPAL_STATE_ENABLED,
	                      .created_at = now, .updated_at = now };
	snprintf(p.name, sizeof p.name, "%s", name);
	store_access_key k = { .wrapped_len = sizeof wrapped, .state = ACCESS_KEY_STATE_ACTIVE,
	                       .created_at = now };
	snprintf(k.id, sizeof k.id, "%s", id);
	snprintf(k.principal, sizeof k.principal, "%s", name);
	memcpy(k.wrapped, wrapped, sizeof wrapped);
	/* Principal and access key in one transaction: both or neither. */
	if ((status = store_principal_create_with_key(st, &p, &k)) != KMS_OK)
		(void)unlink(out_path); /* its key is not in the store */
out:
	kms_secure_free(secret);
	store_close(st);
	if (status != KMS_OK)
		id[0] = '\0';
	return status;
}
