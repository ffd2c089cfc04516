/*
 * ipc_listen.c: the ipc:// listening socket and its file (ipc_listen.h).
 */
#include "kms/transport/ipc_listen.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"

/* The socket's directory: made 0750 with the ipc group when missing; one
 * that others may write to and replace the socket in is refused. */
static kms_status check_dir(const char *path, gid_t group)
{
	char copy[sizeof ((struct sockaddr_un *)0)->sun_path];
	snprintf(copy, sizeof copy, "%s", path);
	const char *dir = dirname(copy);
	struct stat st;
	if (stat(dir, &st) != 0) {
		if (errno != ENOENT)
			return KMS_FAIL(KMS_INVALID_ARGUMENT, "ipc socket directory %s: %s", dir,
			                strerror(errno));
		if (mkdir(dir, 0750) != 0 || chown(dir, (uid_t)-1, group) != 0 ||
		    chmod(dir, 0750) != 0)
			return KMS_FAIL(KMS_INVALID_ARGUMENT, "cannot create the ipc socket directory "
			                "%s (mode 0750): %s; create it, or fix its parent", dir,
			                strerror(errno));
		return KMS_OK;
	}
	KMS_ENSURE(S_ISDIR(st.st_mode), KMS_INVALID_ARGUMENT,
	           "ipc socket directory %s is not a directory", dir);
	if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX))
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "ipc socket directory %s is writable by every "
		                "user: anyone could replace the socket; use a directory of kmsd's "
		                "own (mode 0750)", dir);
	if (st.st_mode & S_IWOTH)
		kms_log("warn", "ipc socket directory %s is writable by every user (sticky): "
		        "while kmsd is stopped anyone may put a socket of their own at its path; "
		        "use a directory of kmsd's own (mode 0750)", dir);
	return KMS_OK;
}

/* Whatever is at path: nothing, a dead socket (removed), or a refusal. */
static kms_status clear_path(const struct sockaddr_un *sa)
{
	struct stat st;
	if (lstat(sa->sun_path, &st) != 0)
		return errno == ENOENT ? KMS_OK
		                       : KMS_FAIL(KMS_INVALID_ARGUMENT, "ipc socket %s: %s",
		                                  sa->sun_path, strerror(errno));
	KMS_ENSURE(S_ISSOCK(st.st_mode), KMS_INVALID_ARGUMENT,
	           "%s exists and is not a socket: move it away or choose another ipc:// path",
	           sa->sun_path);
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	KMS_ENSURE(probe >= 0, KMS_INTERNAL, "socket: %s", strerror(errno));
	int rc = connect(probe, (const struct sockaddr *)sa, sizeof *sa);
	int err = errno;
	close(probe);
	if (rc == 0)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "another process is listening on %s (is kmsd "
		                "already running?): stop it or choose another ipc:// path",
		                sa->sun_path);
	if (err != ECONNREFUSED)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "ipc socket %s: %s", sa->sun_path,
		                strerror(err));
	if (unlink(sa->sun_path) != 0 && errno != ENOENT)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "cannot remove the stale socket %s: %s",
		                sa->sun_path, strerror(errno));
	return KMS_OK;
}

kms_status ipc_listen_open(const char *url, gid_t group, ipc_socket *out)
{
	out->fd = -1;
	const char *path = url + strlen("ipc://");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	KMS_ENSURE(*path && strlen(path) < sizeof sa.sun_path, KMS_INVALID_ARGUMENT,
	           "ipc socket path %s: 1 to %zu bytes", path, sizeof sa.sun_path - 1);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	snprintf(out->path, sizeof out->path, "%s", path);
	KMS_GUARD(check_dir(path, group));
	KMS_GUARD(clear_path(&sa));

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	KMS_ENSURE(fd >= 0, KMS_INTERNAL, "socket: %s", strerror(errno));
	/* umask is per process: kmsd binds its sockets before any other thread
	 * creates files (server_open runs before the HTTP server and ticker). */
	mode_t old = umask(0177);
	int rc = bind(fd, (const struct sockaddr *)&sa, sizeof sa);
	int err = errno;
	umask(old);
	struct stat st;
	if (rc != 0 || chown(path, (uid_t)-1, group) != 0 || chmod(path, 0660) != 0 ||
	    lstat(path, &st) != 0 || listen(fd, IPC_LISTEN_BACKLOG) != 0) {
		if (rc == 0)
			err = errno;
		close(fd);
		if (rc == 0)
			(void)unlink(path);
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "cannot listen on ipc://%s: %s", path,
		                strerror(err));
	}
	out->fd = fd;
	out->dev = st.st_dev;
	out->ino = st.st_ino;
	return KMS_OK;
}

void ipc_listen_close(ipc_socket *s)
{
	if (s->fd < 0)
		return;
	struct stat st;
	if (lstat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
		(void)unlink(s->path);
	close(s->fd);
	s->fd = -1;
}

bool ipc_listen_peer_uid(int fd, uid_t *uid)
{
	struct ucred cred;
	socklen_t len = sizeof cred;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred)
		return false;
	*uid = cred.uid;
	return true;
}
