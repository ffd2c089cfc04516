/*
 * kmsd_check.c: `kmsd --check` (kmsd_check.h). Reads, never writes: no
 * mkdir, no O_CREAT, no flock, no SQLite connection (a WAL database's
 * connection writes -shm and checkpoints on close), no HSM object created.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "kms/authz/authz_secrets.h"
#include "common/log.h"
#include "common/tlog/tlog_records.h"
#include "kms/authz/authz_enforce.h"
#include "kms/audit/audit.h"
#include "kms/kmsd_check.h"
#include "kms/store/store.h"

#define SQLITE_MAGIC "SQLite format 3"  /* 16 bytes with its NUL */

/* Whether path is there (*exists) and, if so, a readable regular file whose
 * first magic_len bytes are magic (when magic is given and the file is not
 * empty). Symlinks are refused, as kmsd refuses them. */
static kms_status file_check(const char *path, const char *what, const char *magic,
                             size_t magic_len, bool *exists, off_t *size)
{
	struct stat sb;
	*exists = false;
	*size = 0;
	if (lstat(path, &sb) != 0) {
		if (errno == ENOENT)
			return KMS_OK;
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "check: %s %s: %s", what, path, strerror(errno));
	}
	KMS_ENSURE(S_ISREG(sb.st_mode), KMS_INVALID_ARGUMENT,
	           "check: %s %s is not a regular file: move it away", what, path);
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	KMS_ENSURE(fd >= 0, KMS_INVALID_ARGUMENT, "check: cannot read %s %s: %s", what, path,
	           strerror(errno));
	kms_status st = KMS_OK;
	if (magic && sb.st_size > 0) {
		char head[32];
		ssize_t n = pread(fd, head, magic_len, 0);
		if (n != (ssize_t)magic_len || memcmp(head, magic, magic_len) != 0)
			st = KMS_FAIL(KMS_INVALID_ARGUMENT, "check: %s %s is not an SQLite database: "
			              "is data_dir right?", what, path);
	}
	close(fd);
	KMS_GUARD(st);
	*exists = true;
	*size = sb.st_size;
	return KMS_OK;
}

static kms_status count_object(void *ctx, const hsm_object_id *id, hsm_object_kind kind)
{
	(void)id;
	(void)kind;
	(*(size_t *)ctx)++;
	return KMS_OK;
}

/* The audit signing key: found and usable, or noted as to be created. */
static kms_status signing_key_check(const kmsd_config *cfg, hsm *h, off_t log_size)
{
	static const char id_text[] = AUDIT_SIGNING_KEY_ID;
	hsm_object_id id = { .len = sizeof id_text - 1 };
	memcpy(id.bytes, id_text, id.len);
	bool exists = false;
	KMS_GUARD(hsm_object_exists(h, &id, &exists));
	if (exists) {
		uint8_t pub[HSM_ED25519_PUBLIC_LEN];
		KMS_GUARD(hsm_ed25519_public(h, &id, pub));
		kms_log("info", "check: the audit signing key is on token \"%s\"", cfg->hsm_token_label);
	} else if (log_size > 0) {
		kms_log("warn", "check: the audit log has entries but its signing key is not on token "
		        "\"%s\": kmsd would sign with a new key; is token_label right?",
		        cfg->hsm_token_label);
	} else {
		kms_log("info", "check: no audit signing key on token \"%s\" yet: kmsd creates it "
		        "at its first start", cfg->hsm_token_label);
	}
	return KMS_OK;
}

kms_status kmsd_check(const kmsd_config *cfg, hsm *h)
{
	size_t objects = 0;
	KMS_GUARD(authz_enforce_check(cfg));
	KMS_GUARD(hsm_objects_list(h, count_object, &objects));
	kms_log("info", "check: token \"%s\" opened and logged in, %zu objects on it",
	        cfg->hsm_token_label, objects);

	struct stat sb;
	off_t log_size = 0;
	if (lstat(cfg->data_dir, &sb) != 0) {
		KMS_ENSURE(errno == ENOENT, KMS_INVALID_ARGUMENT, "check: data_dir %s: %s",
		           cfg->data_dir, strerror(errno));
		kms_log("info", "check: data_dir %s does not exist yet: kmsd creates it at its "
		        "first start", cfg->data_dir);
	} else {
		KMS_ENSURE(S_ISDIR(sb.st_mode), KMS_INVALID_ARGUMENT,
		           "check: data_dir %s is not a directory: fix [kmsd] data_dir", cfg->data_dir);
		KMS_ENSURE(access(cfg->data_dir, R_OK | W_OK | X_OK) == 0, KMS_INVALID_ARGUMENT,
		           "check: data_dir %s is not writable by this user: %s", cfg->data_dir,
		           strerror(errno));
		char path[KMSD_PATH_MAX + 64];
		bool exists = false;
		off_t size = 0;
		snprintf(path, sizeof path, "%s/%s", cfg->data_dir, STORE_DB_FILE);
		KMS_GUARD(file_check(path, "the key store", SQLITE_MAGIC, sizeof SQLITE_MAGIC,
		                     &exists, &size));
		if (exists)
			kms_log("info", "check: key store %s: %lld bytes", path, (long long)size);
		else
			kms_log("info", "check: no key store %s yet: kmsd creates it", path);
		snprintf(path, sizeof path, "%s/audit/%s", cfg->data_dir, TLOG_RECORDS_FILE);
		KMS_GUARD(file_check(path, "the audit log", NULL, 0, &exists, &log_size));
		if (exists)
			kms_log("info", "check: audit log %s: %lld bytes", path, (long long)log_size);
		else
			kms_log("info", "check: no audit log %s yet: kmsd creates it", path);
	}
	KMS_GUARD(signing_key_check(cfg, h, log_size));
	bool wrap = false;
	KMS_GUARD(authz_secrets_key_exists(h, &wrap));
	if (wrap)
		kms_log("info", "check: the access key secret wrapping key is on token \"%s\"",
		        cfg->hsm_token_label);
	else
		kms_log("info", "check: no access key secret wrapping key on token \"%s\" yet: "
		        "kmsd creates it at its first start", cfg->hsm_token_label);
	return KMS_OK;
}
