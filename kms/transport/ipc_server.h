/*
 * ipc_server.h: kmsd's own ipc:// server (docs/transport.md, "Why kmsd
 * accepts ipc connections itself"). NNG 1.5.2's ipc listener stops
 * accepting for good when a peer closes before the handshake, so kmsd
 * speaks the same framing (ipc_wire.h) on its own unix sockets; any NNG
 * or nanomsg REQ client talks to it unchanged.
 *
 * One I/O thread (epoll) accepts, reads and writes for every ipc:// URL;
 * `workers` threads of its own run the pipeline, each with its arena and
 * (through the HSM layer) its HSM session. Whoever connects, it stays
 * bounded:
 *
 *   - the peer's uid (SO_PEERCRED) is checked at accept: a uid that
 *     [ipc_principals] does not name is closed before a byte is read,
 *     and counted with the refusals (no buffer, no worker); kmsd's own
 *     uid is let in for its health self-probe;
 *   - connections are capped in all (max_connections) and per uid
 *     (max_per_uid); past either, they are closed at accept;
 *   - a message's buffer is allocated only when its frame header has
 *     arrived, is at most max_request_bytes, and fits in its pool: small
 *     requests (up to 64 KiB) share an 8 MiB pool of their own; larger
 *     ones and the replies share max_buffered_bytes, of which one uid may
 *     hold at most half; past that, reading from that peer waits;
 *   - a peer has at most IPC_SERVER_INFLIGHT requests in the workers;
 *   - a peer that starts a message and stalls for read_timeout_ms, or
 *     does not take a reply for send_timeout_ms, is closed; the I/O thread
 *     never blocks on a peer, and workers never wait on one;
 *   - reply buffers are wiped before they are freed.
 */
#ifndef KMS_IPC_SERVER_H
#define KMS_IPC_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <kms/status.h>

#include "kms/kmsd.h"

#define IPC_SERVER_INFLIGHT 32 /* requests of one connection in the workers */
#define IPC_SERVER_PROBE_MS 1000

typedef struct ipc_server ipc_server;

typedef struct ipc_server_config {
	const char *urls[KMSD_MAX_LISTEN]; /* ipc:// URLs */
	size_t n_urls;
	gid_t group;               /* the sockets' group */
	unsigned workers;
	unsigned max_connections;  /* in all */
	unsigned max_per_uid;
	unsigned read_timeout_ms;  /* a started message must arrive whole within */
	unsigned send_timeout_ms;  /* a reply must be taken within */
	size_t max_request_bytes;
	size_t max_buffered_bytes; /* requests and replies held for all peers */
} ipc_server_config;

/* Opens every socket, bound and listening; accepts nothing yet (a peer
 * that connects waits in the backlog). */
kms_status ipc_server_open(kmsd *d, const ipc_server_config *cfg,
                           ipc_server **out) KMS_MUST_USE;

/* Starts the threads that accept, read and answer. On failure the caller
 * closes s (ipc_server_drain_and_close). */
kms_status ipc_server_serve(ipc_server *s) KMS_MUST_USE;

/* Stops accepting and reading, lets the workers finish and answer what
 * they hold, gives peers up to send_timeout_ms to take the replies, then
 * closes everything and removes the socket files. NULL is ignored. */
void ipc_server_drain_and_close(ipc_server *s);

/* The self-probe: connects to each socket as kmsd and waits up to
 * IPC_SERVER_PROBE_MS for the server's half of the handshake. False, with
 * why, when one does not answer. Blocks; thread-safe. */
bool ipc_server_answers(ipc_server *s, char *why, size_t why_len);

#endif
