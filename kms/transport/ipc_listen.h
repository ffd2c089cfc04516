/*
 * ipc_listen.h: kmsd's unix socket for ipc://, made safe to put where
 * local users are (docs/transport.md, "The ipc socket"):
 *
 *   - its directory is created 0750 (group: [listen] ipc_group) when
 *     missing; one that any user may write to without the sticky bit is
 *     refused (anyone could replace the socket), and /tmp-like sticky ones
 *     are warned about;
 *   - a path that holds anything but a socket is refused; a socket that
 *     still answers is another kmsd, refused; a dead one is replaced;
 *   - the socket is 0660, group ipc_group, with no moment when it was
 *     wider (bound under umask 0177, then chgrp, then chmod);
 *   - peers are known by the kernel's SO_PEERCRED, read at accept.
 */
#ifndef KMS_IPC_LISTEN_H
#define KMS_IPC_LISTEN_H

#include <stdbool.h>
#include <sys/types.h>

#include <kms/status.h>

#define IPC_LISTEN_BACKLOG 128

typedef struct ipc_socket {
	int fd;         /* listening, non-blocking, close-on-exec */
	char path[108]; /* sun_path */
	dev_t dev;      /* the socket file's identity, to unlink only our own */
	ino_t ino;
} ipc_socket;

/* Opens the listening socket of an ipc:// URL, as above. On failure the
 * message names the path and what to do. */
kms_status ipc_listen_open(const char *url, gid_t group, ipc_socket *out) KMS_MUST_USE;

/* Closes the socket and removes its file if it is still ours. */
void ipc_listen_close(ipc_socket *s);

/* The uid of the process at the other end of a connected unix socket. */
bool ipc_listen_peer_uid(int fd, uid_t *uid);

#endif
