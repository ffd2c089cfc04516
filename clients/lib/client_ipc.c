/*
 * client_ipc.c: who may serve an ipc:// endpoint. A unix socket at the
 * configured path may have been planted by another local user (kmsd
 * stopped, a writable directory, a mistyped path), so before a request is
 * sent the client checks, twice:
 *
 *   - before dialing, the socket file's owner (lstat: a symbolic link is
 *     not a socket);
 *   - on every connection, before NNG adds it to the socket, the uid of the
 *     process that listens (the kernel's answer, NNG_OPT_IPC_PEER_UID), so
 *     a socket swapped after the first check is caught too.
 *
 * Accepted: root, this process's own uid, and the configured server uid.
 *
 * And whether anything listens there at all: when the client has no
 * connection and every endpoint is an ipc:// path, a call first asks each
 * path with connect(2) (closed at once, nothing sent). No socket file, or a
 * file nobody listens on (kmsd stopped), fails the call at once instead of
 * after the whole timeout; one endpoint that takes the connection is enough.
 */
#include "clients/lib/client_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

bool client_ipc_uid_accepted(uint64_t uid, uint64_t own, uint32_t server_uid)
{
	if (uid == CLIENT_IPC_UID_UNKNOWN || uid == CLIENT_IPC_NONE)
		return false;
	return uid == 0 || uid == own ||
	       (server_uid != KMS_CLIENT_SERVER_UID_UNSET && uid == server_uid);
}

/* The one line for a refused owner: the path, the uid found, what to do. */
static kms_status refuse_uid(const char *path, uint64_t uid, kms_error *err)
{
	if (uid == CLIENT_IPC_UID_UNKNOWN)
		return client_fail(err, KMS_UNAVAILABLE, KMS_ERROR_TRANSPORT,
		                   "ipc socket %s: the kernel did not say which uid "
		                   "serves it: refusing to send to it", path);
	return client_fail(err, KMS_UNAVAILABLE, KMS_ERROR_TRANSPORT,
	                   "ipc socket %s is owned by uid %" PRIu64 ", not root or "
	                   "the expected server uid: refusing to send to it (set the "
	                   "server's uid with --server-uid or KMS_SERVER_UID)",
	                   path, uid);
}

kms_status client_ipc_check_path(const kms_client *c, const char *path, kms_error *err)
{
	struct stat st;
	if (lstat(path, &st) != 0) {
		if (errno == ENOENT)
			return KMS_OK; /* not up yet: the dialer keeps trying */
		return client_fail(err, KMS_UNAVAILABLE, KMS_ERROR_TRANSPORT,
		                   "cannot check ipc socket %s: %s (is the path right, "
		                   "and may this user reach it?)", path, strerror(errno));
	}
	if (!S_ISSOCK(st.st_mode))
		return client_fail(err, KMS_UNAVAILABLE, KMS_ERROR_TRANSPORT,
		                   "ipc path %s is %s, not a socket: refusing to send to "
		                   "it (point the endpoint at kmsd's socket)", path,
		                   S_ISLNK(st.st_mode) ? "a symbolic link" :
		                   S_ISDIR(st.st_mode) ? "a directory" :
		                   S_ISREG(st.st_mode) ? "a regular file" : "a special file");
	if (!client_ipc_uid_accepted((uint64_t)st.st_uid, c->own_uid, c->server_uid))
		return refuse_uid(path, (uint64_t)st.st_uid, err);
	return KMS_OK;
}

/* NNG_PIPE_EV_ADD_PRE, on an NNG thread: a pipe closed here is never added
 * to the socket, so no request is ever sent on it. Every pipe that comes
 * here gets NNG_PIPE_EV_REM_POST once (on_pipe_gone), closed here or not. */
static void on_pipe_add(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	kms_client *c = arg;
	if (ev != NNG_PIPE_EV_ADD_PRE)
		return;
	atomic_fetch_add(&c->pipes, 1);
	int id = nng_dialer_id(nng_pipe_dialer(p));
	size_t n = atomic_load(&c->n_ipc);
	for (size_t i = 0; i < n && i < KMS_CLIENT_MAX_ENDPOINTS; i++) {
		if (c->ipc[i].dialer_id != id)
			continue;
		uint64_t uid;
		if (nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_UID, &uid) != 0)
			uid = CLIENT_IPC_UID_UNKNOWN;
		if (client_ipc_uid_accepted(uid, c->own_uid, c->server_uid)) {
			atomic_store(&c->ipc[i].refused_uid, CLIENT_IPC_NONE);
			return;
		}
		atomic_store(&c->ipc[i].refused_uid, uid);
		(void)nng_pipe_close(p);
		return;
	}
	/* Not an ipc dialer's pipe (tls+tcp:// is checked by its certificate). */
}

static void on_pipe_gone(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	(void)p;
	kms_client *c = arg;
	if (ev == NNG_PIPE_EV_REM_POST)
		atomic_fetch_sub(&c->pipes, 1);
}

kms_status client_ipc_watch(kms_client *c, kms_error *err)
{
	atomic_store(&c->n_ipc, 0);
	atomic_store(&c->pipes, 0);
	int rv = nng_pipe_notify(c->socket, NNG_PIPE_EV_ADD_PRE, on_pipe_add, c);
	if (rv == 0)
		rv = nng_pipe_notify(c->socket, NNG_PIPE_EV_REM_POST, on_pipe_gone, c);
	if (rv != 0)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                   "cannot watch connections: %s", nng_strerror(rv));
	return KMS_OK;
}

kms_status client_ipc_add(kms_client *c, nng_dialer dialer, const char *path,
                          kms_error *err)
{
	size_t n = atomic_load(&c->n_ipc);
	if (n >= KMS_CLIENT_MAX_ENDPOINTS)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "more than %d ipc endpoints", KMS_CLIENT_MAX_ENDPOINTS);
	client_ipc_dialer *d = &c->ipc[n];
	d->dialer_id = nng_dialer_id(dialer);
	snprintf(d->path, sizeof d->path, "%s", path); /* checked to fit by dial() */
	atomic_store(&d->refused_uid, CLIENT_IPC_NONE);
	atomic_store(&c->n_ipc, n + 1); /* the entry is whole before it is seen */
	return KMS_OK;
}

bool client_ipc_refusal(kms_client *c, kms_error *err)
{
	size_t n = atomic_load(&c->n_ipc);
	for (size_t i = 0; i < n && i < KMS_CLIENT_MAX_ENDPOINTS; i++) {
		uint64_t uid = atomic_load(&c->ipc[i].refused_uid);
		if (uid != CLIENT_IPC_NONE) {
			(void)refuse_uid(c->ipc[i].path, uid, err);
			return true;
		}
	}
	return false;
}

/* Asks path with connect(2) whether anything listens; the socket is closed
 * at once and nothing is sent. KMS_OK when something took the connection
 * or the answer says nothing either way (NNG's dialer then keeps trying). */
static kms_status probe(const char *path, kms_error *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	if (len >= sizeof sa.sun_path)
		return KMS_OK; /* dial() refused it already */
	memcpy(sa.sun_path, path, len + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return KMS_OK;
	int rv = connect(fd, (const struct sockaddr *)&sa, sizeof sa);
	int e = errno;
	close(fd);
	if (rv == 0)
		return KMS_OK;
	switch (e) {
	case ENOENT:
	case ENOTDIR:
		return client_fail(err, KMS_UNAVAILABLE, KMS_ERROR_TRANSPORT,
		                   "no socket at %s: is kmsd running? (start it, or point "
		                   "the endpoint at its [listen] ipc:// path)", path);
	case ECONNREFUSED:
		return client_fail(err, KMS_UNAVAILABLE, KMS_ERROR_TRANSPORT,
		                   "kmsd is not running at %s (connection refused: the "
		                   "socket file is left from a stopped kmsd): start it",
		                   path);
	case EACCES:
	case EPERM:
		return client_fail(err, KMS_UNAVAILABLE, KMS_ERROR_TRANSPORT,
		                   "may not connect to %s (permission denied): run as a "
		                   "user in kmsd's [listen] ipc_group", path);
	default:
		return KMS_OK; /* EAGAIN (backlog full) and the like: it is there */
	}
}

bool client_ipc_all_down(kms_client *c, kms_error *err)
{
	size_t n = atomic_load(&c->n_ipc);
	if (n == 0 || n != c->n_endpoints || atomic_load(&c->pipes) > 0)
		return false;
	kms_error first;
	client_error_clear(&first);
	for (size_t i = 0; i < n && i < KMS_CLIENT_MAX_ENDPOINTS; i++) {
		kms_error e;
		client_error_clear(&e);
		if (probe(c->ipc[i].path, &e) == KMS_OK)
			return false;
		if (i == 0)
			first = e;
	}
	if (n == 1)
		(void)client_fail(err, first.status, first.origin, "%s", first.message);
	else
		(void)client_fail(err, first.status, first.origin,
		                  "%s (and none of the other %zu ipc endpoints is up)",
		                  first.message, n - 1);
	return true;
}
