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
 */
#include "clients/lib/client_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
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
 * to the socket, so no request is ever sent on it. */
static void on_pipe_add(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	kms_client *c = arg;
	if (ev != NNG_PIPE_EV_ADD_PRE)
		return;
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

kms_status client_ipc_watch(kms_client *c, kms_error *err)
{
	atomic_store(&c->n_ipc, 0);
	int rv = nng_pipe_notify(c->socket, NNG_PIPE_EV_ADD_PRE, on_pipe_add, c);
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
