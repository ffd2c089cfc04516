/*
 * authz_verify.c: kmsd's check of a signed request's credential
 * (authz_verify.h).
 */
#include "kms/authz/authz_verify.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kms/kms.pb-c.h>
#include <kms/limits.h>

#include "common/error.h"
#include "common/log.h"
#include "kms/authz/authz_wire.h"
#include "kms/format/authz_names.h"

struct authz_verifier {
	authz_key_source keys;
	authz_clock clock;
	void *clock_ctx;
	authz_replay *replay;
};

static const char *const reason_names[] = {
	[AUTHZ_VERIFIED] = "verified",
	[AUTHZ_MALFORMED_CREDENTIAL] = "malformed_credential",
	[AUTHZ_OP_MISSING] = "op_missing",
	[AUTHZ_UNKNOWN_KEY] = "unknown_key",
	[AUTHZ_REVOKED_KEY] = "revoked_key",
	[AUTHZ_DISABLED_PRINCIPAL] = "disabled_principal",
	[AUTHZ_BAD_MAC] = "bad_mac",
	[AUTHZ_TIMESTAMP_SKEW] = "timestamp_skew",
	[AUTHZ_REPLAY] = "replay",
	[AUTHZ_REPLAY_TABLE_FULL] = "replay_table_full",
	[AUTHZ_KEY_LOOKUP_FAILED] = "key_lookup_failed",
};

const char *authz_reason_name(authz_reason reason)
{
	if ((size_t)reason >= sizeof reason_names / sizeof reason_names[0] ||
	    !reason_names[reason])
		return "unknown";
	return reason_names[reason];
}

static int64_t clock_now(void *ctx)
{
	(void)ctx;
	return kms_now();
}

kms_status authz_verifier_open(const authz_verify_config *config, authz_verifier **out)
{
	*out = NULL;
	if (!config || !config->keys.lookup || !config->keys.release)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "request verifier: no access key source "
		                "(lookup and release are required)");
	authz_verifier *v = calloc(1, sizeof *v);
	if (!v)
		return KMS_FAIL(KMS_INTERNAL, "request verifier: out of memory");
	v->keys = config->keys;
	v->clock = config->clock ? config->clock : clock_now;
	v->clock_ctx = config->clock_ctx;
	kms_status st = authz_replay_open(
		config->replay_entries ? config->replay_entries : AUTHZ_REPLAY_ENTRIES_DEFAULT,
		config->replay_per_key ? config->replay_per_key : AUTHZ_REPLAY_PER_KEY_DEFAULT,
		config->replay_keys ? config->replay_keys : AUTHZ_REPLAY_KEYS_DEFAULT,
		KMS_SIGN_MAX_SKEW_SECONDS, &v->replay);
	if (st != KMS_OK) {
		free(v);
		return st;
	}
	*out = v;
	return KMS_OK;
}

void authz_verifier_close(authz_verifier *v)
{
	if (!v)
		return;
	authz_replay_close(v->replay);
	free(v);
}

authz_replay *authz_verifier_replay(authz_verifier *v)
{
	return v ? v->replay : NULL;
}

static kms_status decide(authz_verdict *out, kms_status status, authz_reason reason,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static kms_status decide(authz_verdict *out, kms_status status, authz_reason reason,
                         const char *fmt, ...)
{
	va_list ap;
	out->status = status;
	out->reason = reason;
	va_start(ap, fmt);
	vsnprintf(out->detail, sizeof out->detail, fmt, ap);
	va_end(ap);
	return status;
}

/* A refusal of the credential: the client sees only ACCESS_DENIED. */
#define deny(out, reason, ...) decide((out), KMS_ACCESS_DENIED, (reason), __VA_ARGS__)

static bool access_key_id_ok(const char *id)
{
	return id && authz_names_id_check(AUTHZ_ACCESS_KEY_PREFIX, id,
	                                  strnlen(id, AUTHZ_ID_SIZE)) == KMS_OK;
}

static bool request_id_ok(const char *id)
{
	if (!id || !id[0])
		return false;
	for (size_t i = 0; id[i]; i++) {
		char ch = id[i];
		if (i >= KMS_REQUEST_ID_MAX ||
		    !((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

static bool principal_ok(const char *name)
{
	return authz_names_principal_check(name, strnlen(name, AUTHZ_PRINCIPAL_NAME_SIZE)) ==
	       KMS_OK;
}

/* timestamp - now, saturated to int64. */
static int64_t skew_of(int64_t timestamp, int64_t now)
{
	if (now < 0 && timestamp > INT64_MAX + now)
		return INT64_MAX;
	if (now > 0 && timestamp < INT64_MIN + now)
		return INT64_MIN;
	return timestamp - now;
}

/* Checks 2 to 5 of authz_verify.h with the key looked up. */
static kms_status verify_with_key(authz_verifier *v, const authz_key *key,
                                  const Kms__Request *req, const authz_wire_op *op,
                                  authz_verdict *out)
{
	const Kms__Credential *cred = req->credential;

	if (!principal_ok(key->principal))
		return decide(out, KMS_UNAVAILABLE, AUTHZ_KEY_LOOKUP_FAILED, "access key %s: the "
		              "key source gave no valid principal name", out->access_key_id);
	memcpy(out->principal, key->principal, strlen(key->principal) + 1);
	if (key->revoked)
		return deny(out, AUTHZ_REVOKED_KEY, "access key %s of principal %s is revoked",
		            out->access_key_id, out->principal);
	if (key->principal_disabled)
		return deny(out, AUTHZ_DISABLED_PRINCIPAL, "principal %s (access key %s) is "
		            "disabled", out->principal, out->access_key_id);
	if (!key->secret)
		return decide(out, KMS_UNAVAILABLE, AUTHZ_KEY_LOOKUP_FAILED, "access key %s: the "
		              "key source gave no secret", out->access_key_id);
	if (kms_sign_verify(key->secret, req->request_id, cred->timestamp_unix, op->name,
	                    op->bytes, op->len, cred->mac.data, cred->mac.len) != KMS_OK)
		return deny(out, AUTHZ_BAD_MAC, "bad MAC for %s request %s with access key %s",
		            op->name, req->request_id, out->access_key_id);

	int64_t now = v->clock(v->clock_ctx);
	out->skew_seconds = skew_of(cred->timestamp_unix, now);
	if (out->skew_seconds > KMS_SIGN_MAX_SKEW_SECONDS ||
	    out->skew_seconds < -KMS_SIGN_MAX_SKEW_SECONDS)
		return deny(out, AUTHZ_TIMESTAMP_SKEW, "timestamp %" PRId64 " s %s kmsd's clock "
		            "(window %d s), access key %s",
		            out->skew_seconds > 0 ? out->skew_seconds
		                                  : (out->skew_seconds == INT64_MIN
		                                             ? INT64_MAX : -out->skew_seconds),
		            out->skew_seconds > 0 ? "ahead of" : "behind",
		            KMS_SIGN_MAX_SKEW_SECONDS, out->access_key_id);

	switch (authz_replay_check(v->replay, out->access_key_id, req->request_id,
	                           cred->timestamp_unix, now)) {
	case AUTHZ_REPLAY_FRESH:
		return decide(out, KMS_OK, AUTHZ_VERIFIED, "verified %s request %s: access key "
		              "%s of principal %s", op->name, req->request_id,
		              out->access_key_id, out->principal);
	case AUTHZ_REPLAY_SEEN:
		return deny(out, AUTHZ_REPLAY, "request id %s replayed within %d s with access "
		            "key %s", req->request_id, KMS_SIGN_MAX_SKEW_SECONDS,
		            out->access_key_id);
	default:
		out->retry_after_ms = AUTHZ_REPLAY_SWEEP_SECONDS * 1000;
		return decide(out, KMS_THROTTLED, AUTHZ_REPLAY_TABLE_FULL, "replay table full "
		              "for access key %s: request %s refused, retry later",
		              out->access_key_id, req->request_id);
	}
}

kms_status authz_verify(authz_verifier *v, const uint8_t *packed, size_t len,
                        const Kms__Request *req, authz_verdict *out)
{
	authz_wire_op op;

	memset(out, 0, sizeof *out);
	if (!v || !req || (!packed && len))
		return deny(out, AUTHZ_MALFORMED_CREDENTIAL, "no request to verify");
	const Kms__Credential *cred = req->credential;
	if (!cred)
		return deny(out, AUTHZ_MALFORMED_CREDENTIAL, "request carries no credential");
	if (!access_key_id_ok(cred->access_key_id))
		return deny(out, AUTHZ_MALFORMED_CREDENTIAL, "credential's access key id is not "
		            "AK and 20 base32 characters");
	memcpy(out->access_key_id, cred->access_key_id, AUTHZ_ID_LEN + 1);
	if (cred->mac.len != KMS_SIGN_MAC_LEN || !cred->mac.data)
		return deny(out, AUTHZ_MALFORMED_CREDENTIAL, "credential's MAC is %zu bytes, not "
		            "%d (access key %s)", cred->mac.len, KMS_SIGN_MAC_LEN,
		            out->access_key_id);
	if (!request_id_ok(req->request_id))
		return deny(out, AUTHZ_MALFORMED_CREDENTIAL, "signed request's id is not 1..%d "
		            "of [A-Za-z0-9._-] (access key %s)", KMS_REQUEST_ID_MAX,
		            out->access_key_id);
	switch (authz_wire_find_op(packed, len, &op)) {
	case KMS_OK:
		break;
	case KMS_NOT_FOUND:
		return deny(out, AUTHZ_OP_MISSING, "signed request %s carries no operation "
		            "(access key %s)", req->request_id, out->access_key_id);
	default:
		return deny(out, AUTHZ_MALFORMED_CREDENTIAL, "signed request %s: its bytes are not "
		            "a well-formed kms.Request (access key %s)", req->request_id,
		            out->access_key_id);
	}
	out->operation = op.name;
	if ((uint32_t)req->op_case != op.number)
		return deny(out, AUTHZ_OP_MISSING, "signed request %s: its bytes carry %s, the "
		            "unpacked request another operation (access key %s)",
		            req->request_id, op.name, out->access_key_id);

	authz_key key;
	memset(&key, 0, sizeof key);
	kms_status st = v->keys.lookup(v->keys.ctx, out->access_key_id, &key);
	if (st == KMS_NOT_FOUND)
		return deny(out, AUTHZ_UNKNOWN_KEY, "unknown access key %s", out->access_key_id);
	if (st != KMS_OK)
		return decide(out, KMS_UNAVAILABLE, AUTHZ_KEY_LOOKUP_FAILED, "access key %s could "
		              "not be looked up: %s", out->access_key_id, kms_status_name(st));
	key.principal[AUTHZ_PRINCIPAL_NAME_MAX] = '\0';
	st = verify_with_key(v, &key, req, &op, out);
	v->keys.release(v->keys.ctx, &key);
	return st;
}
