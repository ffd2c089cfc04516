/*
 * kms/client_async.h: calls that do not block, for one thread that keeps
 * many requests in flight on one kms_client (a load generator, an event
 * loop). Needs <kms/kms.pb-c.h> (the kms_proto target) and libprotobuf-c,
 * as kms/client_raw.h does.
 *
 * Each call takes a slot from the client's pool: an NNG context and an
 * NNG aio, made the first time that many calls are in flight and reused
 * after, so a steady load allocates nothing here beyond what NNG and
 * protobuf-c do for each message. At most KMS_CLIENT_ASYNC_MAX calls are in
 * flight on one client.
 *
 * The rules of the blocking calls hold (kms/client.h): one deadline, the
 * client's timeout, from the call to the answer; a fresh request id, the
 * schema version and a credential when the client has an access key; the
 * answer's request id and schema version checked; packed requests and
 * answers wiped before they are freed. Two differences: a failure is not
 * followed by the blocking calls' diagnostic TLS handshake (that blocks),
 * and a call made with no connection while every endpoint is an ipc://
 * path with nothing listening fails at once only when that is already
 * known (no socket file, or NNG's dial refused), without the blocking
 * calls' short wait for the first dial.
 */
#ifndef KMS_CLIENT_ASYNC_H
#define KMS_CLIENT_ASYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/client.h>
#include <kms/kms.pb-c.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Calls in flight on one client, at most. */
#define KMS_CLIENT_ASYNC_MAX 1024

/* What the callback gets: valid until it returns. */
typedef struct kms_async_result {
	/* KMS_OK when the server said OK; the server's status; or, with
	 * resp NULL, KMS_UNAVAILABLE (no answer in time, connection lost,
	 * client closed), KMS_INTERNAL (not a valid answer). As
	 * kms_client_call. For kms_client_call_bytes_async, KMS_OK means an
	 * answer arrived, whatever it says. */
	kms_status status;
	/* status, origin and one line for a human (kms/client.h). */
	const kms_error *err;
	/* KMS_UNAVAILABLE because no answer came within the client's timeout
	 * (a load generator counts these apart). */
	bool timed_out;
	/* KMS_UNAVAILABLE because the client was closed first. */
	bool canceled;
	/* kms_client_call_async: the unpacked answer whenever a valid one
	 * arrived (its request id matched), whatever its status, else NULL.
	 * The library releases it after the callback returns; a callback that
	 * keeps it sets resp to NULL and releases it later with
	 * kms_response_free. */
	Kms__Response *resp;
	/* kms_client_call_bytes_async: the answer's bytes as they came (NULL
	 * and 0 when none came). The library wipes and frees them after the
	 * callback returns: copy what you keep. */
	const uint8_t *reply;
	size_t reply_len;
} kms_async_result;

/*
 * Called once for every call that was accepted (returned KMS_OK), on one of
 * NNG's threads, never on the caller's own before it returns. It must not
 * block (no waiting on locks held long, on I/O, on another call's answer):
 * NNG's threads carry every socket in the process. It may start new calls
 * on the same client (kms_client_call_async from inside a callback keeps a
 * fixed number in flight without another thread).
 */
typedef void (*kms_async_done)(void *arg, kms_async_result *result);

/*
 * Starts req as kms_client_call does (req is not changed and may be
 * released when this returns: the request is packed before it returns)
 * and returns at once. KMS_OK: done(arg, result) will be called exactly
 * once. Otherwise done is never called and err says why:
 * KMS_INVALID_ARGUMENT (no client, request or callback; a request that
 * cannot be signed), KMS_THROTTLED (KMS_CLIENT_ASYNC_MAX calls already in
 * flight on this client: wait for one to finish), KMS_UNAVAILABLE (the
 * client is closing; every ipc:// endpoint is down), KMS_INTERNAL (out of
 * memory).
 */
KMS_EXPORT kms_status kms_client_call_async(kms_client *client, const Kms__Request *req,
                                            kms_async_done done, void *arg,
                                            kms_error *err) KMS_MUST_USE;

/*
 * Sends req_len bytes exactly as given (no id, version or credential added,
 * nothing checked: a request packed and signed ahead, or any bytes for an
 * echo server) and hands the answer's bytes to done. Accepts and refuses as
 * kms_client_call_async.
 */
KMS_EXPORT kms_status kms_client_call_bytes_async(kms_client *client, const uint8_t *req,
                                                  size_t req_len, kms_async_done done,
                                                  void *arg, kms_error *err) KMS_MUST_USE;

/* Calls started and not yet finished (their callbacks not yet returned)
 * on client; 0 for NULL. */

/*
 * Closing: kms_client_close cancels the calls still in flight (each
 * callback is called once, with KMS_UNAVAILABLE and canceled set) and
 * returns once every callback has returned (waiting at most 2 s). Calls
 * started meanwhile, from callbacks, are refused. As with the blocking
 * calls, no other thread may be inside a call on the client (these
 * included) when it is closed, and a callback must not close its own
 * client.
 */
KMS_EXPORT size_t kms_client_async_in_flight(kms_client *client);

#ifdef __cplusplus
}
#endif
#endif
