/*
 * store_replica.c: a replica's name (docs/scale-out.md, "Several kmsd on
 * one database"). Each kmsd sharing a PostgreSQL store names the intents
 * it writes (keys.intent_owner, key_versions.intent_owner) with a random
 * id kept in its data directory, so that after a crash the same replica,
 * restarted on the same data directory, knows its own intents from those
 * of replicas still running. The data directory's lock (kms.lock) makes
 * sure the previous holder of the id is dead by then.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/error.h"
#include "kms/store/store_internal.h"

#define REPLICA_ID_FILE "replica-id"

static bool well_formed(const char *id, size_t len)
{
	if (len != STORE_REPLICA_ID_LEN)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return true;
}

/* Reads the file; KMS_NOT_FOUND if there is none. */
static kms_status id_read(const char *path, char out[STORE_REPLICA_ID_SIZE])
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return KMS_FAIL(KMS_NOT_FOUND, "store: no %s", path);
		return KMS_FAIL(KMS_INTERNAL, "store: open %s: %s", path, strerror(errno));
	}
	char buf[STORE_REPLICA_ID_LEN + 2];
	ssize_t n = read(fd, buf, sizeof buf);
	close(fd);
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	KMS_ENSURE(n >= 0 && well_formed(buf, (size_t)n), KMS_FAILED_PRECONDITION,
	           "store: %s is not %d lowercase hex digits: remove it and kmsd makes a new one "
	           "(only while no intent of this replica is left: docs/scale-out.md)",
	           path, STORE_REPLICA_ID_LEN);
	memcpy(out, buf, STORE_REPLICA_ID_LEN);
	out[STORE_REPLICA_ID_LEN] = '\0';
	return KMS_OK;
}

kms_status store_replica_id_load(const char *data_dir, char out[STORE_REPLICA_ID_SIZE])
{
	char path[PATH_MAX], tmp[PATH_MAX];
	int n = snprintf(path, sizeof path, "%s/%s", data_dir, REPLICA_ID_FILE);
	int m = snprintf(tmp, sizeof tmp, "%s/%s.new", data_dir, REPLICA_ID_FILE);
	KMS_ENSURE(n > 0 && (size_t)n < sizeof path && m > 0 && (size_t)m < sizeof tmp,
	           KMS_INVALID_ARGUMENT, "store: data directory path too long");
	kms_status status = id_read(path, out);
	if (status != KMS_NOT_FOUND)
		return status;
	kms_error_clear();

	/* A new replica: a random id, written whole or not at all. */
	uint8_t raw[STORE_REPLICA_ID_LEN / 2];
	KMS_ENSURE(getrandom(raw, sizeof raw, 0) == (ssize_t)sizeof raw, KMS_INTERNAL,
	           "store: getrandom for the replica id failed");
	for (size_t i = 0; i < sizeof raw; i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	KMS_ENSURE(fd >= 0, KMS_INTERNAL, "store: create %s: %s", tmp, strerror(errno));
	char line[STORE_REPLICA_ID_SIZE + 1];
	snprintf(line, sizeof line, "%s\n", out);
	bool ok = write(fd, line, strlen(line)) == (ssize_t)strlen(line) && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, path) != 0) {
		int saved = errno;
		unlink(tmp);
		return KMS_FAIL(KMS_INTERNAL, "store: write %s: %s", path, strerror(saved));
	}
	return KMS_OK;
}
