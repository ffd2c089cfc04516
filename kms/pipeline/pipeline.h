/*
 * pipeline.h: one request, from bytes in to bytes out, in fixed steps:
 *
 *   1. caller    who is asking, from the transport (caller.h); a peer the
 *                transport does not admit (unmapped uid, no client
 *                certificate) is refused before anything is unpacked, and
 *                recorded with its burst (pipeline_refuse_peer, refusals.h)
 *   2. decode    size-checked protobuf unpack into the worker's arena, then
 *                the envelope and the operation's own fields validated;
 *                a credential is verified on the bytes as received (before
 *                they are wiped) and names the principal (an unsigned
 *                tls+tcp:// request is refused), whose roles and state are
 *                then read from the store
 *   3. authorize roles, key policies, grants, conditions and rate limits
 *                (authz/authz_enforce.c; docs/authorization.md)
 *   4. handle    the operation's handler (op_*.c); a control-plane change
 *                (ops.h, changes_state) first makes its intent entry
 *                durable, and is refused, unapplied, if it cannot; a
 *                handler that failed on a store conflict (a serialization
 *                failure on PostgreSQL) is run again, at most 8 times
 *   5. audit     the request's entry made durable (audit log); if that
 *                fails, the reply becomes UNAVAILABLE and carries no result
 *                (and while the log cannot be written, step 4 is skipped:
 *                requests are refused before they change anything)
 *   6. reply     the response packed for the transport
 *
 * Every request gets a reply, malformed ones included (INVALID_ARGUMENT with
 * an empty request id). pipeline_submit blocks on the HSM and the store
 * (and, for a control-plane change, on its intent entry), never on the
 * data-plane audit write: step 6 runs on the audit writer's thread once
 * the entry is durable, so a worker takes its next request at once.
 */
#ifndef KMS_PIPELINE_H
#define KMS_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/limits.h>

#include "kms/pipeline/arena.h"
#include "kms/pipeline/caller.h"
#include "kms/kmsd.h"

/* What the transport knows about a request before it is decoded. */
typedef struct pipeline_peer {
	caller_transport transport;
	bool has_uid;
	uint64_t uid;
	bool tls_verified;
	char remote[64]; /* "127.0.0.1:41234", or "" */
	uint64_t queued_us; /* kms_monotonic_us() when it joined the workers' queue; 0: now */
} pipeline_peer;

/* Called once per pipeline_submit with the packed reply and KMS_OK: buf is
 * malloc'ed, the callee owns it and wipes it before freeing (it may hold
 * plaintext); the reply's reply_len bytes start at buf + reply_headroom
 * (pipeline_pending), the bytes before them left for the transport's own
 * header. Or with buf NULL and KMS_INTERNAL when
 * even an error reply could not be built (out of memory): then drop the
 * request. It runs on the thread that called pipeline_submit, before that
 * returns, or on the audit writer's thread once the request's entry is
 * durable (or failed): it must not block on anything but short locks. */
typedef void (*pipeline_reply_fn)(void *arg, uint8_t *buf, size_t reply_len, kms_status st);

/* A request between its handler and its reply: what the reply needs once
 * its audit entry settles. The transport owns the memory (beside its own
 * record of the request), untouched until the reply function is called. */
typedef struct pipeline_pending {
	kmsd *d;
	const struct op_entry *op;
	uint64_t started;
	bool in_flight;
	kms_status st;
	uint32_t retry_after_ms;
	char request_id[KMS_REQUEST_ID_MAX + 1];
	uint8_t *reply; /* packed for st; NULL if that failed */
	size_t reply_len;
	pipeline_reply_fn done;
	void *done_arg;
	/* Set by the transport before pipeline_submit (0 if it needs none):
	 * bytes left free in front of the reply, so that it can put its own
	 * header there and send the buffer as it is. */
	size_t reply_headroom;
} pipeline_pending;

/* Handles the request in request[0..len) and calls done(arg, ...) exactly
 * once with its packed reply. The request bytes are wiped once decoded; the
 * arena is reset (wiped) before return. The calling thread never waits for
 * the audit log's write of a data-plane request: the reply is sent by done
 * when the entry is durable. A control-plane change still waits here for
 * its intent entry before it is applied. p is the transport's storage for
 * the request in flight. */
void pipeline_submit(kmsd *d, arena *a, const pipeline_peer *peer, uint8_t *request,
                     size_t len, pipeline_pending *p, pipeline_reply_fn done, void *arg);

/* pipeline_submit for a caller that waits for its reply: the packed reply
 * in *reply (malloc'ed, *reply_len bytes; caller wipes and frees).
 * Returns KMS_OK when a reply was produced, or KMS_INTERNAL when even an
 * error reply could not be built (out of memory): then drop the request. */
kms_status pipeline_handle(kmsd *d, arena *a, const pipeline_peer *peer,
                           uint8_t *request, size_t len,
                           uint8_t **reply, size_t *reply_len) KMS_MUST_USE;

/* Records that a peer was refused before authentication for reason (one
 * line naming no port, no secret, no source position): the admit step
 * calls it, and so may a listener that turns a connection away before any
 * request (a per-uid cap, an unmapped uid at connect). Refusals of one peer
 * and reason are written as one entry per burst (refusals.h), so a flood
 * cannot fill the disk. Returns KMS_UNAVAILABLE if an entry that had to be
 * written now could not be (the count is kept and retried). Thread-safe;
 * may block on the audit log. */
kms_status pipeline_refuse_peer(kmsd *d, const pipeline_peer *peer,
                                const char *reason) KMS_MUST_USE;

/* The same for a listener's I/O thread, which must not wait on the audit
 * log: the refusal is counted now and its burst's entry written by the
 * refusals flusher (refusals_count). */
void pipeline_refuse_peer_later(kmsd *d, const pipeline_peer *peer, const char *reason);

/* Why an ipc peer whose uid [ipc_principals] does not name is refused: at
 * admit, or already at connect by kmsd's ipc listener. */
#define PIPELINE_REASON_IPC_UNMAPPED \
	"ipc peer uid is not in [ipc_principals]: map its uid to a principal in the config"

#endif
