/*
 * client_async.c: calls that do not block (kms/client_async.h). A pool of
 * slots, each one NNG context and one aio, made as the number in flight
 * grows and reused after; each call runs send then receive on its slot's
 * aio, and its callback hands the outcome to the caller's.
 */
#include "clients/lib/client_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

#include <kms/client_async.h>

#include "common/error.h"

typedef struct async_slot async_slot;

struct async_slot {
	client_async *pool;
	nng_ctx ctx;
	nng_aio *aio;
	async_slot *next_free; /* on the free list */
	async_slot *next_all;  /* every slot made, for close */
	/* The call it carries (set by its starter, then only by its
	 * callbacks: one at a time). */
	bool raw;
	bool receiving;
	nng_time deadline;
	kms_async_done done;
	void *arg;
	char request_id[KMS_SIGN_REQUEST_ID_MAX + 1];
};

struct client_async {
	kms_client *client;
	nng_mtx *mtx;
	nng_cv *cv;            /* busy reached 0 while closing */
	async_slot *free_list;
	async_slot *all;
	size_t in_flight;      /* calls whose callback has not started */
	size_t busy;           /* slots taken: in flight or in a callback */
	_Atomic bool closing;
};

/* ---- the pool ---- */

static client_async *pool_new(kms_client *c)
{
	client_async *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->client = c;
	if (nng_mtx_alloc(&p->mtx) != 0) {
		free(p);
		return NULL;
	}
	if (nng_cv_alloc(&p->cv, p->mtx) != 0) {
		nng_mtx_free(p->mtx);
		free(p);
		return NULL;
	}
	return p;
}

/* c's pool, made by the first call. */
static client_async *pool_of(kms_client *c, kms_error *err)
{
	client_async *p = atomic_load(&c->async);
	if (p)
		return p;
	nng_mtx_lock(c->async_once);
	p = atomic_load(&c->async);
	if (!p) {
		p = pool_new(c);
		atomic_store(&c->async, p);
	}
	nng_mtx_unlock(c->async_once);
	if (!p)
		(void)client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
	return p;
}

static void slot_done(void *arg);

/* A new slot, on p->all. Called with p->mtx held. */
static async_slot *slot_new(client_async *p)
{
	async_slot *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->pool = p;
	if (nng_ctx_open(&s->ctx, p->client->socket) != 0) {
		free(s);
		return NULL;
	}
	(void)nng_ctx_set_ms(s->ctx, NNG_OPT_REQ_RESENDTIME,
	                     client_resend_time(p->client));
	if (nng_aio_alloc(&s->aio, slot_done, s) != 0) {
		nng_ctx_close(s->ctx);
		free(s);
		return NULL;
	}
	s->next_all = p->all;
	p->all = s;
	return s;
}

/* A free slot for one more call, or NULL with err saying why: closing,
 * KMS_CLIENT_ASYNC_MAX in flight, out of memory. */
static async_slot *slot_take(client_async *p, kms_error *err)
{
	async_slot *s = NULL;
	nng_mtx_lock(p->mtx);
	if (atomic_load(&p->closing)) {
		nng_mtx_unlock(p->mtx);
		(void)client_fail(err, KMS_UNAVAILABLE, KMS_ERROR_LOCAL,
		                  "the client is closing: no new calls");
		return NULL;
	}
	if (p->in_flight >= KMS_CLIENT_ASYNC_MAX) {
		nng_mtx_unlock(p->mtx);
		(void)client_fail(err, KMS_THROTTLED, KMS_ERROR_LOCAL,
		                  "%d calls already in flight on this client (at most %d): "
		                  "start the next once one finishes",
		                  KMS_CLIENT_ASYNC_MAX, KMS_CLIENT_ASYNC_MAX);
		return NULL;
	}
	s = p->free_list;
	if (s)
		p->free_list = s->next_free;
	else
		s = slot_new(p);
	if (s) {
		s->next_free = NULL;
		p->in_flight++;
		p->busy++;
	}
	nng_mtx_unlock(p->mtx);
	if (!s)
		(void)client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL,
		                  "out of memory (an NNG context for an asynchronous call)");
	return s;
}

/* Gives s back. finished: its call's callback has run (else the call was
 * never started and still counts in flight). */
static void slot_give_back(async_slot *s, bool finished)
{
	client_async *p = s->pool;
	nng_mtx_lock(p->mtx);
	if (!finished)
		p->in_flight--;
	s->done = NULL;
	s->arg = NULL;
	s->next_free = p->free_list;
	p->free_list = s;
	if (--p->busy == 0 && atomic_load(&p->closing))
		nng_cv_wake(p->cv);
	nng_mtx_unlock(p->mtx);
}

/* ---- one call ---- */

/* After starting an operation on s's aio: a close that began meanwhile may
 * have missed it, so cancel it here (the close sets closing first, then
 * cancels every slot). */
static void cancel_if_closing(async_slot *s)
{
	if (atomic_load(&s->pool->closing))
		nng_aio_cancel(s->aio);
}

static nng_duration time_left(const async_slot *s)
{
	nng_time now = nng_clock();
	return now < s->deadline ? (nng_duration)(s->deadline - now) : 0;
}

static void send_on(async_slot *s, nng_msg *request)
{
	s->receiving = false;
	nng_aio_set_msg(s->aio, request);
	nng_duration left = time_left(s);
	nng_aio_set_timeout(s->aio, left > 0 ? left : 1);
	nng_ctx_send(s->ctx, s->aio);
	cancel_if_closing(s);
}

/* The outcome of a call that got no answer (NNG said rv). */
static void transport_outcome(async_slot *s, int rv, kms_async_result *result,
                              kms_error *err)
{
	kms_client *c = s->pool->client;
	if (rv == NNG_ECANCELED && atomic_load(&s->pool->closing)) {
		result->canceled = true;
		result->status = client_fail(err, KMS_UNAVAILABLE, KMS_ERROR_TRANSPORT,
		                             "the client was closed before the answer "
		                             "came (the request may or may not have "
		                             "been done)");
		return;
	}
	result->timed_out = rv == NNG_ETIMEDOUT;
	/* Not sent because the only peers were refused for their uid
	 * (client_ipc.c): say that rather than "is kmsd running?". */
	if (!s->receiving && client_ipc_refusal(c, err)) {
		result->status = KMS_UNAVAILABLE;
		return;
	}
	result->status = client_transport_error(c, rv, err);
}

/* The outcome of a call whose answer came. */
static void answer_outcome(async_slot *s, nng_msg *answer, kms_async_result *result,
                           kms_error *err)
{
	if (s->raw) {
		result->status = KMS_OK;
		result->reply = nng_msg_body(answer);
		result->reply_len = nng_msg_len(answer);
		return;
	}
	result->status = client_answer_unpack(s->pool->client, answer, s->request_id,
	                                      &result->resp, err);
	if (result->status == KMS_OK)
		result->status = client_server_status(result->resp, err);
}

/* Calls the caller's callback once with the outcome, releases what the
 * library still holds, and gives the slot back. answer: consumed. */
static void finish(async_slot *s, int rv, nng_msg *answer)
{
	kms_error err;
	kms_async_result result;
	client_error_clear(&err);
	memset(&result, 0, sizeof result);
	result.err = &err;
	if (rv != 0)
		transport_outcome(s, rv, &result, &err);
	else
		answer_outcome(s, answer, &result, &err);
	if (!s->raw)
		answer = NULL; /* client_answer_unpack consumed it */

	client_async *p = s->pool;
	nng_mtx_lock(p->mtx);
	p->in_flight--;
	nng_mtx_unlock(p->mtx);
	s->done(s->arg, &result);
	kms_response_free(result.resp);
	client_msg_wipe_free(answer);
	slot_give_back(s, true);
}

/* The aio's callback: the send or the receive finished. */
static void slot_done(void *arg)
{
	async_slot *s = arg;
	int rv = nng_aio_result(s->aio);
	if (!s->receiving) {
		if (rv != 0) {
			client_msg_wipe_free(nng_aio_get_msg(s->aio)); /* still ours */
			nng_aio_set_msg(s->aio, NULL);
			finish(s, rv, NULL);
			return;
		}
		nng_duration left = time_left(s);
		if (left <= 0) {
			finish(s, NNG_ETIMEDOUT, NULL);
			return;
		}
		s->receiving = true;
		nng_aio_set_timeout(s->aio, left);
		nng_ctx_recv(s->ctx, s->aio);
		cancel_if_closing(s);
		return;
	}
	if (rv != 0) {
		finish(s, rv, NULL);
		return;
	}
	nng_msg *answer = nng_aio_get_msg(s->aio);
	nng_aio_set_msg(s->aio, NULL);
	finish(s, 0, answer);
}

/* What both forms check before anything else. */
static kms_status async_begin(kms_client *client, kms_async_done done, const char *fn,
                              client_async **pool, kms_error *err)
{
	client_error_clear(err);
	*pool = NULL;
	if (!client || !done)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s: a client and a callback are required", fn);
	*pool = pool_of(client, err);
	return *pool ? KMS_OK : KMS_INTERNAL;
}

/* Starts request (consumed) on s, or gives s back and fails when every
 * ipc:// endpoint is known to be down. */
static kms_status async_start(async_slot *s, nng_msg *request, kms_error *err)
{
	kms_client *c = s->pool->client;
	/* Only what is already known: no wait for a first dial here. */
	if (client_ipc_all_down(c, 0, err)) {
		client_msg_wipe_free(request);
		slot_give_back(s, false);
		return KMS_UNAVAILABLE;
	}
	s->deadline = nng_clock() + (nng_time)c->timeout_ms;
	send_on(s, request);
	return KMS_OK;
}

kms_status kms_client_call_async(kms_client *client, const Kms__Request *req,
                                 kms_async_done done, void *arg, kms_error *err)
{
	client_async *p;
	char id[CLIENT_REQUEST_ID_LEN + 1];
	const char *sent_id;
	nng_msg *request;

	KMS_GUARD(async_begin(client, done, "kms_client_call_async", &p, err));
	if (!req)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "kms_client_call_async: a request is required");
	if (req->request_id && strlen(req->request_id) > KMS_SIGN_REQUEST_ID_MAX)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "kms_client_call_async: the request id is longer "
		                   "than %d bytes", KMS_SIGN_REQUEST_ID_MAX);
	async_slot *s = slot_take(p, err);
	if (!s)
		return err ? err->status : KMS_UNAVAILABLE;
	kms_status st = client_request_pack(client, req, &request, id, &sent_id, err);
	if (st != KMS_OK) {
		slot_give_back(s, false);
		return st;
	}
	snprintf(s->request_id, sizeof s->request_id, "%s", sent_id);
	s->raw = false;
	s->done = done;
	s->arg = arg;
	return async_start(s, request, err);
}

kms_status kms_client_call_bytes_async(kms_client *client, const uint8_t *req,
                                       size_t req_len, kms_async_done done, void *arg,
                                       kms_error *err)
{
	client_async *p;
	nng_msg *request;

	KMS_GUARD(async_begin(client, done, "kms_client_call_bytes_async", &p, err));
	if (!req && req_len)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "kms_client_call_bytes_async: %zu bytes but no buffer",
		                   req_len);
	async_slot *s = slot_take(p, err);
	if (!s)
		return err ? err->status : KMS_UNAVAILABLE;
	if (nng_msg_alloc(&request, req_len) != 0) {
		slot_give_back(s, false);
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
	}
	if (req_len)
		memcpy(nng_msg_body(request), req, req_len);
	s->request_id[0] = '\0';
	s->raw = true;
	s->done = done;
	s->arg = arg;
	return async_start(s, request, err);
}

size_t kms_client_async_in_flight(kms_client *client)
{
	client_async *p = client ? atomic_load(&client->async) : NULL;
	if (!p)
		return 0;
	nng_mtx_lock(p->mtx);
	size_t n = p->busy;
	nng_mtx_unlock(p->mtx);
	return n;
}

/* ---- close ---- */

bool client_async_close(kms_client *c, unsigned wait_ms)
{
	client_async *p = atomic_load(&c->async);
	if (!p)
		return true;
	nng_mtx_lock(p->mtx);
	atomic_store(&p->closing, true);
	nng_mtx_unlock(p->mtx);
	/* No slot is made once closing is set: the list is fixed. A slot whose
	 * next operation starts after this loop cancels it itself
	 * (cancel_if_closing). */
	for (async_slot *s = p->all; s; s = s->next_all)
		nng_aio_cancel(s->aio);
	nng_time deadline = nng_clock() + wait_ms;
	nng_mtx_lock(p->mtx);
	while (p->busy > 0 && nng_clock() < deadline) /* bounded by deadline */
		(void)nng_cv_until(p->cv, deadline);
	size_t busy = p->busy;
	nng_mtx_unlock(p->mtx);
	if (busy > 0)
		return false; /* a callback that blocks: leave it all allocated */
	async_slot *s = p->all;
	while (s) {
		async_slot *next = s->next_all;
		nng_aio_free(s->aio); /* waits for its callback to have returned */
		nng_ctx_close(s->ctx);
		free(s);
		s = next;
	}
	nng_cv_free(p->cv);
	nng_mtx_free(p->mtx);
	free(p);
	atomic_store(&c->async, NULL);
	return true;
}
