#include "kms/pipeline/pipeline.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kms/kms.pb-c.h>
#include <kms/limits.h>
#include <kms/secmem.h>

#include "kms/audit/audit.h"
#include "kms/authz/authz_verify.h"
#include "kms/keys/keyring.h"
#include "kms/store/store.h"
#include "kms/audit/audit_entry.h"
#include "kms/authz/authz_decide.h"
#include "kms/authz/authz_enforce.h"
#include "common/log.h"
#include "common/error.h"
#include "kms/transport/metrics.h"
#include "kms/pipeline/ops.h"
#include "kms/pipeline/records.h"
#include "kms/pipeline/refusals.h"
#include "kms/pipeline/wire_scan.h"
#include "proto/status_wire.h"

static bool request_id_ok(const char *id)
{
	size_t n = strlen(id);
	if (n < 1 || n > KMS_REQUEST_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
		if (!ok)
			return false;
	}
	return true;
}

/* A request refused before it could be unpacked still gets its id echoed
 * when one can be read from the bytes and is valid (docs/protocol.md);
 * otherwise the reply's request_id stays "". */
static void echo_raw_id(op_ctx *ctx, const uint8_t *bytes, size_t len,
                        char id[static KMS_REQUEST_ID_MAX + 1])
{
	if (wire_scan_request_id(bytes, len, id, KMS_REQUEST_ID_MAX + 1) && request_id_ok(id))
		ctx->request_id = id;
	else
		id[0] = '\0';
}

/* Step 2: unpack into the arena and check the envelope and the operation
 * (its fields: validate, step 2d). */
static kms_status decode(op_ctx *ctx, const uint8_t *bytes, size_t len,
                         char raw_id[static KMS_REQUEST_ID_MAX + 1], Kms__Request **out)
{
	kms_status st;
	*out = NULL;
	if (len > ctx->d->cfg.max_request_bytes) {
		echo_raw_id(ctx, bytes, len, raw_id);
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "request of %zu bytes exceeds the limit of %zu",
		                len, ctx->d->cfg.max_request_bytes);
	}
	/* Counts first: unpacking allocates for every element (wire_scan.h). */
	wire_scan_result scanned;
	if ((st = wire_scan(&kms__request__descriptor, bytes, len, &scanned)) != KMS_OK) {
		echo_raw_id(ctx, bytes, len, raw_id);
		return st;
	}
	ProtobufCAllocator al = arena_protobuf_allocator(ctx->arena);
	Kms__Request *req = kms__request__unpack(&al, len, bytes);
	if (!req)
		echo_raw_id(ctx, bytes, len, raw_id);
	if (!req && arena_exhausted(ctx->arena))
		return arena_refuse(ctx->arena, "unpacking the request");
	if (!req)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "request is not a valid kms.Request protobuf");
	if (!request_id_ok(req->request_id))
		return KMS_FAIL(KMS_INVALID_ARGUMENT,
		                "request_id must be 1 to 64 of [A-Za-z0-9._-]");
	ctx->request_id = req->request_id;
	if (req->schema_version != KMS__SCHEMA_VERSION__SCHEMA_VERSION)
		return KMS_FAIL(KMS_INVALID_ARGUMENT,
		                "request %s: schema_version %u is not supported (this daemon speaks %d)",
		                req->request_id, req->schema_version,
		                KMS__SCHEMA_VERSION__SCHEMA_VERSION);
	ctx->op = ops_find(req->op_case);
	if (!ctx->op)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "request %s: no operation, or one this daemon "
		                "does not serve (field %d)", req->request_id, (int)req->op_case);
	*out = req;
	ctx->audit.string_nul = scanned.nul_in_string;
	return KMS_OK;
}

/* Step 2d, after the deadline and the signature (so that a signed request
 * refused here is recorded under its signer, not under the ipc uid it came
 * from): the operation's own fields. */
static kms_status validate(op_ctx *ctx, const Kms__Request *req)
{
	/* protobuf-c hands strings over NUL-terminated and drops their length,
	 * so a string holding U+0000 would reach the validators cut at the NUL:
	 * a context {"k": "a\0b"} would be checked, bound and audited as
	 * {"k": "a"} (context.h forbids U+0000 for this reason), and the audit
	 * entry must not record such a string as if it were the value sent. */
	if (ctx->audit.string_nul)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "request %s: a string field contains U+0000",
		                req->request_id);
	if (ctx->op->validate)
		KMS_GUARD(ctx->op->validate(req));
	return KMS_OK;
}

/* Step 1: the principal, from the transport. */
static kms_status resolve_caller(op_ctx *ctx, const pipeline_peer *peer, caller *who)
{
	memset(who, 0, sizeof *who);
	who->transport = peer->transport;
	who->has_uid = peer->has_uid;
	who->uid = peer->uid;
	who->tls_verified = peer->tls_verified;
	switch (peer->transport) {
	case CALLER_IPC: {
		snprintf(who->source, sizeof who->source, "ipc uid=%llu",
		         (unsigned long long)peer->uid);
		const char *name = peer->has_uid
		        ? kmsd_config_ipc_principal(&ctx->d->cfg, (uid_t)peer->uid)
		        : NULL;
		if (name)
			snprintf(who->principal, sizeof who->principal, "%s", name);
		else
			snprintf(who->principal, sizeof who->principal, "uid:%llu",
			         (unsigned long long)peer->uid);
		break;
	}
	case CALLER_TLS: /* no principal until a signature names one */
		snprintf(who->source, sizeof who->source, "tls %s", peer->remote);
		break;
	case CALLER_TCP:
		snprintf(who->source, sizeof who->source, "tcp %s (insecure)", peer->remote);
		break;
	}
	who->ipc_root = peer->transport == CALLER_IPC && peer->has_uid && peer->uid == 0;
	ctx->caller = who;
	return KMS_OK;
}

/* Step 1b, before a byte is unpacked: is this peer let in at all? An ipc
 * peer must be a uid the config names, and a TLS peer must have shown a
 * certificate from the client CA (config.c requires one for tls+tcp://).
 * A peer that is not gets nothing parsed: the tightest limit before
 * authentication. The message names the peer; *reason is the same without
 * its port, for grouping refusals (refusals.h). */
static kms_status admit(op_ctx *ctx, const char **reason)
{
	const caller *who = ctx->caller;
	*reason = NULL;
	if (who->transport == CALLER_IPC &&
	    (!who->has_uid || !kmsd_config_ipc_principal(&ctx->d->cfg, (uid_t)who->uid))) {
		*reason = PIPELINE_REASON_IPC_UNMAPPED;
		return KMS_FAIL(KMS_ACCESS_DENIED, "ipc peer %s is not in [ipc_principals]: map "
		                "its uid to a principal in the config", who->source);
	}
	if (who->transport == CALLER_TLS && !who->tls_verified) {
		*reason = "TLS peer presented no verified client certificate";
		return KMS_FAIL(KMS_ACCESS_DENIED, "TLS peer %s presented no verified client "
		                "certificate", who->source);
	}
	/* Plain tcp:// exists only with insecure_dev; a pipe whose listener is
	 * not known is counted as plain tcp, so it is refused here too. */
	if (who->transport == CALLER_TCP && !ctx->d->cfg.insecure_dev) {
		*reason = "peer came over plain tcp without insecure_dev";
		return KMS_FAIL(KMS_ACCESS_DENIED, "peer %s came over plain tcp without "
		                "insecure_dev", who->source);
	}
	return KMS_OK;
}

kms_status pipeline_refuse_peer(kmsd *d, const pipeline_peer *peer, const char *reason)
{
	op_ctx ctx = { .d = d };
	caller who;
	KMS_GUARD(resolve_caller(&ctx, peer, &who));
	return refusals_note(d, &who, reason);
}

void pipeline_refuse_peer_later(kmsd *d, const pipeline_peer *peer, const char *reason)
{
	op_ctx ctx = { .d = d };
	caller who;
	if (resolve_caller(&ctx, peer, &who) == KMS_OK)
		refusals_count(d, &who, reason);
}

/* Step 2b, on the bytes as received (before they are wiped): who signed
 * the request. A signed request acts as its signer on every transport; an
 * unsigned one keeps the ipc mapping, and is refused on tls+tcp:// and
 * plain tcp://. The client learns only that the signature was not
 * accepted; the audit entry and the log get the precise reason. */
static kms_status verify_credential(op_ctx *ctx, const uint8_t *bytes, size_t len,
                                    const Kms__Request *req, caller *who)
{
	const char *op = ctx->op->name;
	if (!req->credential) {
		if (who->transport == CALLER_IPC)
			return KMS_OK;
		const char *reason = who->transport == CALLER_TLS ? "unsigned_tls" : "unsigned_tcp";
		char detail[128];
		snprintf(detail, sizeof detail, "unsigned request over %s",
		         who->transport == CALLER_TLS ? "tls+tcp://" : "tcp://");
		op_note_authz(ctx, "deny", reason, detail);
		kms_log("warn", "request %s (%s) from %s refused: %s (%s)", req->request_id, op,
		        who->source, reason, detail);
		return KMS_FAIL(KMS_ACCESS_DENIED, "request %s: access denied for %s: requests over "
		                "%s must be signed: give the client an access key (credentials file)",
		                req->request_id, op,
		                who->transport == CALLER_TLS ? "tls+tcp://" : "tcp://");
	}
	authz_verdict v;
	memset(&v, 0, sizeof v);
	kms_status st;
	if (ctx->d->authz_verifier) {
		st = authz_verify(ctx->d->authz_verifier, bytes, len, req, &v);
	} else { /* fail closed */
		st = v.status = KMS_UNAVAILABLE;
		v.reason = AUTHZ_KEY_LOOKUP_FAILED;
		snprintf(v.detail, sizeof v.detail, "kmsd has no request verifier");
	}
	kms_error_clear();
	if (st == KMS_OK) {
		/* The signer, not the uid it came from: uid 0's way in to the
		 * principals family is for unsigned requests only. */
		who->ipc_root = false;
		snprintf(who->principal, sizeof who->principal, "%s", v.principal);
		snprintf(who->access_key_id, sizeof who->access_key_id, "%s", v.access_key_id);
		return KMS_OK;
	}
	const char *reason = authz_reason_name(v.reason);
	op_note_authz(ctx, "deny", reason, v.detail);
	kms_log("warn", "request %s (%s) from %s: signed request refused: %s (%s)",
	        req->request_id, op, who->source, reason, v.detail);
	if (st == KMS_THROTTLED) {
		ctx->retry_after_ms = v.retry_after_ms ? v.retry_after_ms : 1;
		return KMS_FAIL(KMS_THROTTLED, "request %s: too many signed requests to check "
		                "for replay: retry after %u ms", req->request_id, v.retry_after_ms);
	}
	if (st == KMS_UNAVAILABLE)
		return KMS_FAIL(KMS_UNAVAILABLE, "request %s: the request's access key could not "
		                "be checked now: retry", req->request_id);
	return KMS_FAIL(KMS_ACCESS_DENIED, "request %s: access denied for %s: the request's "
	                "signature was not accepted", req->request_id, op);
}

/* Step 4b: the handler, run again when it failed on a store conflict (a
 * serialization failure or deadlock between concurrent transactions, on
 * PostgreSQL; docs/scale-out.md, "Transactions"). A failed attempt has undone
 * what it did, as any failure does, so the next starts clean. At most
 * CONFLICT_ATTEMPTS attempts, a random wait of up to 1, 2, 4 ... 64 ms
 * between them, never past [limits] queue_deadline_ms from the request's
 * start. The audit entry is written once, for the last attempt. */
#define CONFLICT_ATTEMPTS 8
static kms_status handle_retrying(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp,
                                  uint64_t started_us)
{
	static _Thread_local uint64_t jitter;
	/* A companion is set up only on a fleet, whose keyring has a store. */
	store *db = ctx->companion ? keyring_store(ctx->d->keyring) : NULL;
	for (unsigned attempt = 1;; attempt++) {
		uint64_t conflicts = store_thread_conflicts();
		/* Armed for each run: an undo disarms it (keyring_versions.c). */
		if (ctx->companion)
			store_companion_arm(db, ctx->companion->added ? NULL : ctx->companion);
		kms_status st = ctx->op->handle(ctx, req, resp);
		if (ctx->companion)
			store_companion_arm(db, NULL);
		/* A change committed with its entry is not run again. */
		bool committed = ctx->companion && ctx->companion->added;
		if (st == KMS_OK || committed || store_thread_conflicts() == conflicts ||
		    attempt == CONFLICT_ATTEMPTS)
			return st;
		if (!jitter)
			jitter = kms_monotonic_us() | 1;
		jitter ^= jitter << 13; /* xorshift: spreads the waits, no secret */
		jitter ^= jitter >> 7;
		jitter ^= jitter << 17;
		unsigned cap_ms = 1u << (attempt - 1 < 6 ? attempt - 1 : 6);
		uint64_t wait_us = jitter % ((uint64_t)cap_ms * 1000u + 1);
		uint64_t elapsed_ms = (kms_monotonic_us() - started_us + wait_us) / 1000u;
		if (elapsed_ms >= ctx->d->cfg.queue_deadline_ms)
			return st;
		struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)(wait_us * 1000u) };
		nanosleep(&ts, NULL);
		*resp = (Kms__Response)KMS__RESPONSE__INIT;
		kms_error_clear();
		metrics_conflict_retry();
	}
}

/* Step 2a: a request that waited in the queue past [limits]
 * queue_deadline_ms is not run (its client has given up; running it would
 * only lengthen the queue behind it): a slow HSM or an overload is
 * answered UNAVAILABLE, fast, instead of piling up. */
static kms_status check_deadline(op_ctx *ctx, const pipeline_peer *peer, uint64_t now_us)
{
	if (!peer->queued_us || now_us <= peer->queued_us)
		return KMS_OK;
	uint64_t waited_ms = (now_us - peer->queued_us) / 1000u;
	if (waited_ms <= ctx->d->cfg.queue_deadline_ms)
		return KMS_OK;
	metrics_deadline_expired();
	return KMS_FAIL(KMS_UNAVAILABLE, "request %s waited %llu ms for a worker, past the "
	                "%u ms deadline: kmsd is overloaded or its HSM is slow; retry later",
	                ctx->request_id, (unsigned long long)waited_ms,
	                ctx->d->cfg.queue_deadline_ms);
}

/* Step 2a': replicas on one database (docs/scale-out.md, "Cache
 * coherence"): a change another replica committed before this request
 * began is enforced by it, because the keyring's caches are dropped when
 * the store's cache generation moved, and the store's read cache on this
 * thread follows the value read here. Before the credential is checked:
 * that check reads the access key and its principal through that cache.
 * Nothing to do on SQLite. */
static kms_status sync_caches(op_ctx *ctx)
{
	if (!ctx->d->keyring || authz_op_classify(ctx->op).family == AUTHZ_FAMILY_HEALTH)
		return KMS_OK;
	if (keyring_sync(ctx->d->keyring) == KMS_OK)
		return KMS_OK;
	kms_log("error", "request %s: reading the store's cache generation: %s", ctx->request_id,
	        kms_error_message());
	return KMS_FAIL(KMS_UNAVAILABLE, "request %s: the store could not be reached to check "
	                "other replicas' changes: retry", ctx->request_id);
}

/* Step 2e, for every request: the principal's roles and state, fresh from
 * the store (its read cache is dropped by every committed write, so a
 * change is seen by the next request: kms/store/store_cache.h). An unknown
 * or deleted principal is not found; the decision denies it. */
static kms_status load_principal(op_ctx *ctx, caller *who)
{
	who->principal_found = false;
	who->roles = 0;
	who->principal_disabled = false;
	/* Health needs no principal (authz_enforce_request): kmsd's own
	 * /healthz probe must not open a store connection on a worker that has
	 * none. */
	if (!who->principal[0] || !ctx->d->keyring ||
	    authz_op_classify(ctx->op).family == AUTHZ_FAMILY_HEALTH)
		return KMS_OK;
	store_principal p;
	kms_status st = store_principal_get(keyring_store(ctx->d->keyring), who->principal, &p);
	if (st == KMS_NOT_FOUND) {
		kms_error_clear();
		return KMS_OK;
	}
	if (st != KMS_OK)
		return st; /* the store's own line (fail closed) */
	who->principal_found = true;
	who->roles = p.roles;
	who->principal_disabled = p.state == PRINCIPAL_STATE_DISABLED;
	return KMS_OK;
}

/* Step 3: may this caller run this operation? Steps 1 and 2 of the
 * decision and the principal's rate limit here; a keyed operation is
 * decided again for each key it touches, by its handler
 * (authz_enforce_key), once the key is resolved (docs/authorization.md). */
static kms_status authorize(op_ctx *ctx, const Kms__Request *req)
{
	(void)req;
	return authz_enforce_request(ctx);
}

/* Before step 4: a log that cannot be written refuses requests before they
 * change anything. Each refusal still tries to write its own entry, and the
 * first that succeeds makes the log healthy again. */
static kms_status audit_gate(op_ctx *ctx)
{
	char why[KMS_ERROR_MAX];
	if (!ctx->d->audit || audit_healthy(ctx->d->audit, why, sizeof why))
		return KMS_OK;
	return KMS_FAIL(KMS_UNAVAILABLE, "audit log cannot be written (%s): request %s refused; "
	                "free the disk and retry", why, ctx->request_id);
}

/* The entry of this request in this phase, durable once this returns. An
 * outcome whose intent is durable may use the room the log keeps for it. */
static kms_status audit_write(op_ctx *ctx, audit_phase phase, kms_status status,
                              const char *message, uint64_t latency_us)
{
	audit_facts facts = {
		.ctx = ctx,
		.phase = phase,
		.status = status,
		.error = status != KMS_OK && ctx->audit.error ? ctx->audit.error : message,
		.latency_us = latency_us,
		.time_us = kms_now_us(),
	};
	char *entry = NULL;
	size_t len = 0;
	KMS_GUARD(audit_entry_build(&facts, &entry, &len));
	kms_status st = ctx->audit.intent_written ? audit_append_outcome(ctx->d->audit, entry, len)
	                                          : audit_append(ctx->d->audit, entry, len);
	free(entry);
	return st;
}

/* Step 4a: a control-plane change writes its intent, durably, before it is
 * applied; if that cannot be done the change is not applied. So every
 * change kmsd makes has at least its intent in the log, even when the disk
 * fills between the change and its outcome entry. */
static kms_status audit_intent(op_ctx *ctx, uint64_t started)
{
	if (!ctx->d->audit || !ctx->op->changes_state)
		return KMS_OK;
	if (audit_write(ctx, AUDIT_PHASE_INTENT, KMS_OK, "", kms_monotonic_us() - started) !=
	    KMS_OK) {
		char why[KMS_ERROR_MAX / 2] = "the intent entry was not written";
		(void)audit_healthy(ctx->d->audit, why, sizeof why);
		return KMS_FAIL(KMS_UNAVAILABLE, "audit log cannot be written (%s): %s of request "
		                "%s was not applied; free the disk and retry", why, ctx->op->name,
		                ctx->request_id);
	}
	ctx->audit.intent_written = true;
	return KMS_OK;
}

/* Step 4b, on the fleet's database: a control-plane change's outcome
 * entry is added to audit_pending in the transaction that makes the change
 * (store.h, store_companion), so the change is there exactly when its
 * entry is. It is made when that transaction is about to commit: the
 * change succeeded, its status is OK. A change that fails before it
 * commits has its outcome written after the handler, as any entry. */
typedef struct outcome_companion {
	store_companion c;
	op_ctx *ctx;
	uint64_t started;
	uint64_t watch_token;
} outcome_companion;

static kms_status companion_build(void *arg, const char *key_id, uint32_t key_version,
                                  char **entry, size_t *len)
{
	outcome_companion *oc = arg;
	op_ctx *ctx = oc->ctx;
	if (key_id)
		op_note_key(ctx, key_id, key_version);
	audit_facts facts = {
		.ctx = ctx,
		.phase = AUDIT_PHASE_OUTCOME,
		.status = KMS_OK,
		.error = "",
		.latency_us = kms_monotonic_us() - oc->started,
		.time_us = kms_now_us(),
	};
	KMS_GUARD(audit_entry_build(&facts, entry, len));
	audit_watch_add(ctx->d->audit, *entry, *len, &oc->watch_token);
	return KMS_OK;
}

static void companion_settled(void *arg, bool committed, int64_t id)
{
	outcome_companion *oc = arg;
	audit_watch_settled(oc->ctx->d->audit, oc->watch_token, committed, id);
	oc->watch_token = 0;
}

static void companion_setup(op_ctx *ctx, outcome_companion *oc, uint64_t started)
{
	if (!ctx->audit.intent_written || !audit_is_fleet(ctx->d->audit))
		return;
	*oc = (outcome_companion){
		.c = { .build = companion_build, .settled = companion_settled, .arg = oc,
		       .request_id = ctx->request_id },
		.ctx = ctx,
		.started = started,
	};
	ctx->companion = &oc->c;
}

/* Step 6. */
static kms_status encode(const Kms__Response *resp, size_t headroom, uint8_t **reply,
                         size_t *reply_len)
{
	size_t n = kms__response__get_packed_size(resp);
	uint8_t *buf = malloc(headroom + (n ? n : 1));
	if (!buf)
		return KMS_FAIL(KMS_INTERNAL, "out of memory packing a %zu-byte reply", n);
	*reply_len = kms__response__pack(resp, buf + headroom);
	*reply = buf;
	return KMS_OK;
}

/* The failure's line as the client and the audit entry get it: the message
 * alone (ids, never secret bytes), with every filesystem path cut to its
 * last component. kmsd's own log keeps the whole line and its source
 * position, for a failure of kmsd itself and for a line that named a path. */
static void public_message(const op_ctx *ctx, kms_status st, char *message, size_t cap)
{
	snprintf(message, cap, "%s", kms_error_message());
	bool cut = kms_error_strip_paths(message);
	if (st == KMS_INTERNAL || cut)
		kms_log(st == KMS_INTERNAL ? "error" : "warn", "request %s (%s): %s (%s)",
		        ctx->request_id, ctx->op ? ctx->op->name : "undecoded",
		        kms_error_message(), kms_error_where());
}

/* The reply to a request whose result may not leave (its audit entry
 * failed, or the packing of its result did): status and message, no
 * result. */
static kms_status encode_failure(const pipeline_pending *p, kms_status st, const char *message,
                                 uint8_t **reply, size_t *reply_len)
{
	Kms__Response resp = KMS__RESPONSE__INIT;
	resp.schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	resp.request_id = (char *)p->request_id;
	resp.status = kms_status_to_wire(st);
	resp.message = (char *)message;
	return encode(&resp, p->reply_headroom, reply, reply_len);
}

/* Step 6, once the entry settled (audited: KMS_OK, or why it failed). Fail
 * closed: no result leaves without its audit entry. A request already
 * refused as UNAVAILABLE keeps the message saying why. */
static void finish(pipeline_pending *p, kms_status audited, const char *why)
{
	kms_status st = p->st;
	uint8_t *reply = p->reply;
	size_t reply_len = p->reply_len;
	kms_status packed = reply ? KMS_OK : KMS_INTERNAL;
	if (audited != KMS_OK && st != KMS_UNAVAILABLE) {
		if (reply) {
			kms_wipe(reply, p->reply_headroom + reply_len);
			free(reply);
		}
		char message[KMS_ERROR_MAX];
		snprintf(message, sizeof message, "audit log cannot be written (%s): request %s was "
		         "not answered; free the disk and retry", why, p->request_id);
		kms_error_strip_paths(message);
		st = KMS_UNAVAILABLE;
		packed = encode_failure(p, st, message, &reply, &reply_len);
		if (packed != KMS_OK)
			reply = NULL;
	}
	metrics_record(p->op, st, kms_monotonic_us() - p->started);
	if (p->in_flight)
		metrics_in_flight(-1);
	p->done(p->done_arg, packed == KMS_OK ? reply : NULL, packed == KMS_OK ? reply_len : 0,
	        packed);
}

static void on_audited(void *arg, kms_status st, const char *why)
{
	finish(arg, st, why);
}

/* Step 5: the request's entry (a change's outcome) queued for the writer,
 * whose thread finishes the request once it is durable. */
static void audit_then_finish(op_ctx *ctx, pipeline_pending *p, const char *message,
                              store_request_record *record)
{
	audit_facts facts = {
		.ctx = ctx,
		.phase = ctx->op && ctx->op->changes_state ? AUDIT_PHASE_OUTCOME : AUDIT_PHASE_NONE,
		.status = p->st,
		.error = p->st != KMS_OK && ctx->audit.error ? ctx->audit.error : message,
		.latency_us = kms_monotonic_us() - p->started,
		.time_us = kms_now_us(),
	};
	char *entry = NULL;
	size_t len = 0;
	kms_status st = audit_entry_build(&facts, &entry, &len);
	arena_reset(ctx->arena); /* the entry and the reply are out of it */
	if (st == KMS_OK) {
		st = audit_append_recorded(ctx->d->audit, entry, len, ctx->audit.intent_written,
		                           record, on_audited, p);
	} else {
		store_request_record_drop(record);
	}
	free(entry);
	if (st == KMS_OK)
		return; /* the writer finishes it */
	char why[KMS_ERROR_MAX / 2];
	snprintf(why, sizeof why, "%s", kms_error_message());
	kms_log("error", "request %s (%s): its audit entry was not queued: %s", p->request_id,
	        ctx->op ? ctx->op->name : "undecoded", why);
	finish(p, KMS_UNAVAILABLE, why);
}

void pipeline_submit(kmsd *d, arena *a, const pipeline_peer *peer, uint8_t *request,
                     size_t len, pipeline_pending *p, pipeline_reply_fn done, void *arg)
{
	uint64_t started = kms_monotonic_us();
	char no_id[] = "";
	char raw_id[KMS_REQUEST_ID_MAX + 1] = "";
	op_ctx ctx = { .d = d, .arena = a, .request_id = no_id, .now = kms_now() };
	caller who;
	Kms__Request *req = NULL;
	Kms__Response resp = KMS__RESPONSE__INIT;

	kms_error_clear();
	/* The caller first: even a request that does not decode is recorded
	 * with where it came from. */
	const char *refused = NULL;
	kms_status st = resolve_caller(&ctx, peer, &who);
	if (st == KMS_OK)
		st = admit(&ctx, &refused);
	if (st == KMS_OK)
		st = decode(&ctx, request, len, raw_id, &req);
	/* Before the signature: a request refused for its wait is not recorded
	 * as seen, so its client may send it again as it is. */
	if (st == KMS_OK)
		st = check_deadline(&ctx, peer, started);
	/* Before the credential: its check reads the access key and its
	 * principal through the caches this brings up to date. */
	if (st == KMS_OK)
		st = sync_caches(&ctx);
	if (st == KMS_OK) /* on the bytes as received, so before the wipe */
		st = verify_credential(&ctx, request, len, req, &who);
	kms_wipe(request, len); /* the request may hold plaintext */
	if (st == KMS_OK)
		st = validate(&ctx, req);
	if (st == KMS_OK)
		st = load_principal(&ctx, &who);
	ctx.audit.request = req;
	if (st == KMS_OK)
		st = authorize(&ctx, req);
	if (st == KMS_OK && atomic_load(&d->draining))
		st = KMS_FAIL(KMS_UNAVAILABLE, "kmsd is shutting down: retry on another endpoint");
	/* Past this point a drain no longer refuses the request: it is run and
	 * answered whatever happens to `draining` now. */
	bool in_flight = st == KMS_OK;
	if (in_flight)
		metrics_in_flight(1);
	if (st == KMS_OK)
		st = audit_gate(&ctx);
	if (st == KMS_OK)
		st = audit_intent(&ctx, started);
	if (st == KMS_OK)
		st = records_lookup(&ctx, req);
	outcome_companion companion;
	if (st == KMS_OK)
		companion_setup(&ctx, &companion, started);
	if (st == KMS_OK)
		st = handle_retrying(&ctx, req, &resp, started);
	/* Its outcome committed with the change: the reply needs no other. */
	bool outcome_added = ctx.companion && ctx.companion->added;
	if (outcome_added && st != KMS_OK)
		kms_log("warn", "request %s (%s): the change and its OK outcome entry committed, "
		        "then the request failed: %s", ctx.request_id, ctx.op->name,
		        kms_error_message());
	/* A first run's record goes with its entry (records.h). */
	store_request_record *record = NULL;
	if (st == KMS_OK && ctx.record.on && !ctx.record.again)
		st = records_make(&ctx, &resp, &record);
	/* An allocation the cap refused may have become one batch item's
	 * error or none at all: the whole request is refused, without a result. */
	if (in_flight && arena_exhausted(a))
		st = arena_refuse(a, "handling the request");

	char message[KMS_ERROR_MAX] = "";
	if (st != KMS_OK)
		public_message(&ctx, st, message, sizeof message);
	/* A peer refused at admit is recorded with the other refusals of its
	 * burst (refusals.h): a flood of them must not fill the disk. */
	kms_status audited = KMS_OK;
	if (refused)
		audited = pipeline_refuse_peer(d, peer, refused);
	if (audited != KMS_OK && st != KMS_UNAVAILABLE) {
		/* Fail closed: no answer leaves without its audit entry. (A request
		 * already refused as UNAVAILABLE keeps the message saying why.) */
		st = audited;
		public_message(&ctx, st, message, sizeof message);
	}
	if (st != KMS_OK)
		resp.result_case = KMS__RESPONSE__RESULT__NOT_SET;

	*p = (pipeline_pending){ .d = d, .op = ctx.op, .started = started,
	                         .in_flight = in_flight, .st = st,
	                         .retry_after_ms = ctx.retry_after_ms,
	                         .done = done, .done_arg = arg,
	                         .reply_headroom = p->reply_headroom };
	snprintf(p->request_id, sizeof p->request_id, "%s", ctx.request_id);
	resp.schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	resp.request_id = ctx.request_id;
	resp.status = kms_status_to_wire(st);
	resp.message = message;
	if (st == KMS_THROTTLED)
		resp.retry_after_ms = ctx.retry_after_ms;
	if (encode(&resp, p->reply_headroom, &p->reply, &p->reply_len) != KMS_OK)
		p->reply = NULL;
	/* A request answered from its record has its entry already (written
	 * by its first run): the log holds one per request. */
	bool answered_before = st == KMS_OK && ctx.record.again;
	if (st != KMS_OK) { /* refused after all: no answer to record */
		store_request_record_drop(record);
		record = NULL;
	}
	if (answered_before) {
		metrics_record_answered();
		kms_log("info", "request %s (%s) from %s was sent again: answered from its record",
		        ctx.request_id, ctx.op->name, who.source);
	}
	if (!refused && d->audit && !answered_before && !outcome_added) {
		audit_then_finish(&ctx, p, message, record);
		return;
	}
	store_request_record_drop(record);
	arena_reset(a);
	finish(p, KMS_OK, "");
}

/* pipeline_handle's wait for its reply, which may come from the writer. */
typedef struct sync_reply {
	pthread_mutex_t lock;
	pthread_cond_t ready;
	bool done;
	uint8_t *reply;
	size_t reply_len;
	kms_status st;
} sync_reply;

static void sync_done(void *arg, uint8_t *reply, size_t reply_len, kms_status st)
{
	sync_reply *r = arg;
	pthread_mutex_lock(&r->lock);
	r->reply = reply;
	r->reply_len = reply_len;
	r->st = st;
	r->done = true;
	pthread_cond_signal(&r->ready);
	pthread_mutex_unlock(&r->lock);
}

kms_status pipeline_handle(kmsd *d, arena *a, const pipeline_peer *peer,
                           uint8_t *request, size_t len,
                           uint8_t **reply, size_t *reply_len)
{
	sync_reply r = { .lock = PTHREAD_MUTEX_INITIALIZER, .ready = PTHREAD_COND_INITIALIZER };
	pipeline_pending p = { .reply_headroom = 0 };
	pipeline_submit(d, a, peer, request, len, &p, sync_done, &r);
	pthread_mutex_lock(&r.lock);
	while (!r.done)
		pthread_cond_wait(&r.ready, &r.lock);
	pthread_mutex_unlock(&r.lock);
	pthread_mutex_destroy(&r.lock);
	pthread_cond_destroy(&r.ready);
	*reply = r.reply;
	*reply_len = r.reply_len;
	return r.st;
}
