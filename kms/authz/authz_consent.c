/*
 * authz_consent.c: the consent check of a key that requires one, read
 * fresh from the store on every use (a status change is seen by the next
 * request), with the use counted by one conditional UPDATE.
 */
#include "kms/authz/authz_consent.h"

#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "common/pseudonym.h"
#include "kms/keys/keyring.h"
#include "kms/store/store_consents.h"

#define AUTHZ_CONSENT_REASON_MAX 64

static const char *pair_value(Kms__StringPair *const *pairs, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (pairs[i] && pairs[i]->key && !strcmp(pairs[i]->key, key))
			return pairs[i]->value;
	return NULL;
}

/* The entry's `consent` object: the first item's, but a denial replaces
 * an allow (as the authz object does). */
static void note(op_ctx *ctx, const char *id, const char *purpose, const char *dp,
                 const char *decision, const char *reason)
{
	op_audit_consent *c = &ctx->audit.consent;
	if (c->decision && (!strcmp(c->decision, "deny") || !strcmp(decision, "allow")))
		return;
	c->id = id ? arena_strdup(ctx->arena, id) : "";
	c->purpose = purpose ? arena_strdup(ctx->arena, purpose) : "";
	c->dp = dp ? arena_strdup(ctx->arena, dp) : "";
	c->decision = decision;
	c->reason = reason;
}

static kms_status deny(op_ctx *ctx, const char *id, const char *purpose, const char *dp,
                       const char *reason, const char *key_id)
{
	note(ctx, id, purpose, dp, "deny", reason);
	char why[AUTHZ_CONSENT_REASON_MAX];
	snprintf(why, sizeof why, "consent: %s", reason);
	kms_status st;
	if (!strcmp(reason, "missing_context"))
		st = KMS_FAIL(KMS_ACCESS_DENIED, "key %s requires consent: the encryption context "
		              "needs dp, purpose and consent (docs/consent.md)", key_id);
	else
		st = KMS_FAIL(KMS_ACCESS_DENIED, "consent %s does not allow this use of key %s: %s",
		              id, key_id, consent_rules_explain(reason));
	op_note_authz(ctx, "deny", arena_strdup(ctx->arena, why), kms_error_message());
	kms_log("info", "request %s: %s denied (%s)", ctx->request_id, ctx->op->name, why);
	return st;
}

kms_status authz_consent_check(op_ctx *ctx, const char *key_id, Kms__StringPair *const *pairs,
                               size_t n_pairs, consent_use use)
{
	KMS_ENSURE(!strcmp(ctx->consent_gate.key_id, key_id), KMS_INTERNAL,
	           "key %s: its consent was checked before the key check allowed it", key_id);
	if (!ctx->consent_gate.required)
		return KMS_OK;
	const char *dp = pair_value(pairs, n_pairs, "dp");
	const char *purpose = pair_value(pairs, n_pairs, "purpose");
	const char *id = pair_value(pairs, n_pairs, "consent");
	if (!dp || !purpose || !id)
		return deny(ctx, id, purpose, dp, "missing_context", key_id);
	char key_short[KMS_PSEUDONYM_KEY_SHORT_SIZE];
	uint32_t version;
	if (pseudonym_parse(dp, key_short, &version) != KMS_OK) {
		/* Not recorded: it may be the person's identifier itself. */
		kms_error_clear();
		return deny(ctx, id, purpose, "(not a pseudonym)", "dp_not_pseudonym", key_id);
	}
	store *st = keyring_store(ctx->d->keyring);
	store_consent c;
	kms_status s = store_consent_get(st, id, &c);
	if (s == KMS_NOT_FOUND) {
		kms_error_clear();
		return deny(ctx, id, purpose, dp, "unknown_consent", key_id);
	}
	KMS_GUARD(s);
	/* A request answered again from its record (kms/pipeline/records.h)
	 * took its use on its first run: checked as any use but for the
	 * limits on uses (ONETIME, frequency), and no use taken. */
	bool counted = use == CONSENT_USE_OPEN && !ctx->record.again;
	const char *reason = consent_rules_check(&c, dp, purpose, ctx->now,
	                                         counted ? use : CONSENT_USE_SEAL);
	if (reason)
		return deny(ctx, id, purpose, dp, reason, key_id);
	if (counted) {
		int64_t window_start, window_max;
		bool taken;
		consent_rules_window(&c, ctx->now, &window_start, &window_max);
		KMS_GUARD(store_consent_take_use(st, id, window_start, window_max, &taken));
		if (!taken) {
			/* Another request took the last use, or the status moved:
			 * the row as it is now says which. */
			KMS_GUARD(store_consent_get(st, id, &c));
			reason = consent_rules_check(&c, dp, purpose, ctx->now, use);
			return deny(ctx, id, purpose, dp,
			            reason ? reason : (c.onetime ? "onetime_used" : "frequency_exceeded"),
			            key_id);
		}
	}
	note(ctx, id, purpose, dp, "allow", "active");
	return KMS_OK;
}
