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
 * connection and every endpoint is an ipc:// path, a call first looks at
 * each path (lstat) and at the result of NNG's own dial to it (its
 * statistics), waiting at most a second for the first dial to come back.
 * No socket file, or a file nobody listens on (kmsd stopped: connection
 * refused), fails the call at once instead of after the whole timeout; one
 * endpoint that may be up is enough to wait as before. No connection of
 * its own is made: a connection closed without a byte can wedge an ipc
 * listener served by NNG 1.5.2 (docs/transport.md).
 */
#include "clients/lib/client_internal.h"
#include "common/nng_stats.h"

#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nng/supplemental/util/platform.h>

bool client_ipc_uid_accepted(uint64_t uid, uint64_t own, uint32_t server_uid,
                             uint64_t service_uid)
{
	if (uid == CLIENT_IPC_UID_UNKNOWN || uid == CLIENT_IPC_NONE)
		return false;
	return uid == 0 || uid == own ||
	       (service_uid != CLIENT_IPC_NONE && uid == service_uid) ||
	       (server_uid != KMS_CLIENT_SERVER_UID_UNSET && uid == server_uid);
}

uint64_t client_ipc_service_uid(void)
{
	struct passwd pw, *found = NULL;
	char buf[1024];
	if (getpwnam_r(KMS_CLIENT_SERVICE_USER, &pw, buf, sizeof buf, &found) != 0 || !found)
		return CLIENT_IPC_NONE;
	return (uint64_t)found->pw_uid;
}

/* The one line for a refused owner: the path, the uid found, what to do. */
static kms_status refuse_uid(const char *path, uint64_t uid, kms_error *err)
{
	if (uid == CLIENT_IPC_UID_UNKNOWN)
		return client_fail(err, KMS_UNAVAILABLE, KMS_ERROR_TRANSPORT,
		                   "ipc socket %s: the kernel did not say which uid "
		                   "serves it: refusing to send to it", path);
	return client_fail(err, KMS_UNAVAILABLE, KMS_ERROR_TRANSPORT,
	                   "ipc socket %s is owned by uid %" PRIu64 ", not root, "
	                   "this user, the kms account or the expected server uid: "
	                   "refusing to send to it (set the server's uid with "
	                   "--server-uid or KMS_SERVER_UID)",
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
	if (!client_ipc_uid_accepted((uint64_t)st.st_uid, c->own_uid, c->server_uid, c->service_uid))
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
		if (client_ipc_uid_accepted(uid, c->own_uid, c->server_uid, c->service_uid)) {
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

kms_status client_ipc_add(kms_client *c, nng_dialer dialer, const char *url,
                          const char *path, kms_error *err)
{
	size_t n = atomic_load(&c->n_ipc);
	if (n >= KMS_CLIENT_MAX_ENDPOINTS)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "more than %d ipc endpoints", KMS_CLIENT_MAX_ENDPOINTS);
	client_ipc_dialer *d = &c->ipc[n];
	d->dialer_id = nng_dialer_id(dialer);
	snprintf(d->path, sizeof d->path, "%s", path); /* checked to fit by dial() */
	snprintf(d->url, sizeof d->url, "%s", url);   /* checked to fit by dial() */
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

/* How long a call with no connection waits for NNG's first dial of each
 * ipc endpoint to come back, at most (it is one connect(2): immediate). */
#define CLIENT_IPC_FIRST_DIAL_MS 1000
#define CLIENT_IPC_POLL_MS 5

/* Whether endpoint i is down for sure: no socket file, or NNG's dialer was
 * refused (a stale file from a stopped kmsd). The cause goes in *err. */
static bool endpoint_down(const client_ipc_dialer *d, nng_stat *all, kms_error *err)
{
	struct stat st;
	if (lstat(d->path, &st) != 0 && (errno == ENOENT || errno == ENOTDIR)) {
		(void)client_fail(err, KMS_UNAVAILABLE, KMS_ERROR_TRANSPORT,
		                  "no socket at %s: is kmsd running? (start it, or point "
		                  "the endpoint at its [listen] ipc:// path)", d->path);
		return true;
	}
	/* By URL: NNG 1.5.2's nng_stat_find_dialer finds the first dialer
	 * whatever its id (common/nng_stats.h). */
	nng_stat *mine = kms_nng_stat_scope(all, "dialer", d->url);
	if (mine && kms_nng_stat_value(mine, "pipes") == 0 &&
	    kms_nng_stat_value(mine, "refused") > 0) {
		(void)client_fail(err, KMS_UNAVAILABLE, KMS_ERROR_TRANSPORT,
		                  "kmsd is not running at %s (connection refused: the "
		                  "socket file is left from a stopped kmsd): start it",
		                  d->path);
		return true;
	}
	return false;
}

bool client_ipc_all_down(kms_client *c, int timeout_ms, kms_error *err)
{
	size_t n = atomic_load(&c->n_ipc);
	if (n == 0 || n != c->n_endpoints)
		return false;
	int wait_ms = timeout_ms < CLIENT_IPC_FIRST_DIAL_MS ? timeout_ms
	                                                   : CLIENT_IPC_FIRST_DIAL_MS;
	nng_time deadline = nng_clock() + (nng_time)wait_ms;
	for (;;) { /* bounded by deadline */
		if (atomic_load(&c->pipes) > 0)
			return false;
		nng_stat *all = NULL;
		if (nng_stats_get(&all) != 0)
			return false;
		kms_error first;
		client_error_clear(&first);
		size_t down = 0;
		for (size_t i = 0; i < n && i < KMS_CLIENT_MAX_ENDPOINTS; i++) {
			kms_error e;
			client_error_clear(&e);
			if (endpoint_down(&c->ipc[i], all, &e) && down++ == 0)
				first = e;
		}
		nng_stats_free(all);
		if (down == n) {
			if (n == 1)
				(void)client_fail(err, first.status, first.origin, "%s",
				                  first.message);
			else
				(void)client_fail(err, first.status, first.origin,
				                  "%s (and none of the other %zu ipc endpoints "
				                  "is up)", first.message, n - 1);
			return true;
		}
		if (nng_clock() >= deadline)
			return false;
		nng_msleep(CLIENT_IPC_POLL_MS);
	}
}
