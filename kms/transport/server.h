/*
 * server.h: kmsd's transport. ipc:// URLs are served by kmsd's own ipc
 * server (ipc_server.h); the others by one NNG REP socket, listening on
 * every tls+tcp:// (and tcp://, only with insecure_dev) URL,
 * with NNG_OPT_RECVMAXSZ set before any listen. Its 256 REP contexts each
 * hold one request at a time, driven by NNG's callbacks: a request received
 * is queued for one of N worker threads (each owning one arena and, through
 * the HSM layer, one HSM session), which runs it through the pipeline
 * (pipeline_submit) and takes the next at once; the reply is sent, with a
 * deadline, from the thread that packs it (the worker's, or the audit
 * writer's once the request's entry is durable), and the context then posts
 * its next receive. Nothing waits in an NNG callback.
 */
#ifndef KMS_SERVER_H
#define KMS_SERVER_H

#include <kms/status.h>

#include "kms/kmsd.h"

typedef struct server server;

/* Binds the ipc:// sockets and makes the NNG socket, its TLS config and
 * its listeners, but serves nothing: no thread that reads a peer's bytes
 * runs yet (an ipc peer that connects waits in the socket's backlog; a
 * tls+tcp:// port is not bound). Fails with a one-line message naming the
 * URL or file at fault. */
kms_status server_open(kmsd *d, server **out) KMS_MUST_USE;

/* Serves: starts the workers and the ipc server's threads, and binds and
 * starts the NNG listeners. kmsd calls it once it runs as [process] user
 * (kmsd_privs.h). On failure the caller closes s. */
kms_status server_serve(server *s) KMS_MUST_USE;

/* Whether every ipc:// socket answers kmsd's own connection with the
 * server's handshake within a second (ipc_server_answers): /healthz asks.
 * True when there is no ipc:// URL. Blocks up to 1 s per URL. */
bool server_ipc_answers(server *s, char *why, size_t why_len);

/* Stops taking requests, waits for the workers to send the replies of those
 * in flight, then closes everything. Blocks. NULL is ignored. */
void server_drain_and_close(server *s);

#endif
