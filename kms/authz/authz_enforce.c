/*
 * authz_enforce.c: the decision on a live request (authz_enforce.h). Every
 * lookup is fresh: the principal comes filled from the store with the
 * caller (caller.h), and each key's policy and live grants are read here
 * for each key a request touches, so a change is seen by the next request.
 * A stored policy is compiled per use (a key without one uses the default,
 * compiled once at start).
 */
#include "kms/authz/authz_enforce.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <kms/limits.h>

#include "common/error.h"
#include "common/log.h"
#include "kms/authz/authz_decide.h"
#include "kms/authz/authz_policy.h"
#include "kms/authz/authz_rate.h"
#include "common/context.h"
#include "kms/transport/metrics.h"

struct authz_enforce {
	store *store;
	authz_rate *rate;
	authz_policy *default_policy; /* [authz] default_key_policy; NULL: built in */
	char *default_text;           /* its text as read; NULL: built in */
};

static kms_status read_policy_file(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "config: [authz] default_key_policy %s: %s",
		                path, strerror(errno));
	char *buf = malloc(KMS_POLICY_MAX + 2);
	if (!buf) {
		fclose(f);
		return KMS_FAIL(KMS_INTERNAL, "out of memory reading %s", path);
	}
	size_t n = fread(buf, 1, KMS_POLICY_MAX + 1, f);
	bool failed = ferror(f);
	fclose(f);
	if (failed || n == 0 || n > KMS_POLICY_MAX) {
		free(buf);
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "config: [authz] default_key_policy %s: %s: "
		                "write a policy of 1 to %u bytes (docs/authorization.md)", path,
		                failed ? "cannot be read" : n == 0 ? "empty" : "too large",
		                KMS_POLICY_MAX);
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return KMS_OK;
}

/* [authz] default_key_policy compiled, and its text (malloc'ed) into *text
 * when text is not NULL; both NULL when the config has none. */
static kms_status load_default_policy(const kmsd_config *cfg, authz_policy **out, char **text)
{
	*out = NULL;
	if (text)
		*text = NULL;
	if (!cfg->authz_default_key_policy[0])
		return KMS_OK;
	char *doc = NULL;
	size_t len = 0;
	KMS_GUARD(read_policy_file(cfg->authz_default_key_policy, &doc, &len));
	kms_status status = authz_policy_parse(doc, len, out);
	if (status != KMS_OK) {
		free(doc);
		return KMS_FAIL(status, "config: [authz] default_key_policy %s: %s",
		                cfg->authz_default_key_policy, kms_error_message());
	}
	if (text)
		*text = doc;
	else
		free(doc);
	return KMS_OK;
}

kms_status authz_enforce_check(const kmsd_config *cfg)
{
	authz_policy *p = NULL;
	KMS_GUARD(load_default_policy(cfg, &p, NULL));
	authz_policy_free(p);
	return KMS_OK;
}

const char *authz_enforce_default_policy_text(const authz_enforce *e)
{
	return e->default_text ? e->default_text : authz_default_policy_json;
}

kms_status authz_enforce_open(const kmsd_config *cfg, store *st, authz_enforce **out)
{
	*out = NULL;
	authz_enforce *e = calloc(1, sizeof *e);
	KMS_ENSURE(e, KMS_INTERNAL, "authz: out of memory");
	e->store = st;
	kms_status status;
	KMS_GUARD_OUT(status, load_default_policy(cfg, &e->default_policy, &e->default_text));
	authz_rate_config rc = {
		.principal_rate = cfg->principal_rate,
		.principal_burst = cfg->principal_burst,
		.key_rate = cfg->key_rate,
		.key_burst = cfg->key_burst,
	};
	KMS_GUARD_OUT(status, authz_rate_new(&rc, &e->rate));
	*out = e;
	return KMS_OK;
out:
	authz_enforce_close(e);
	return status;
}

void authz_enforce_close(authz_enforce *e)
{
	if (!e)
		return;
	authz_policy_free(e->default_policy);
	free(e->default_text);
	authz_rate_free(e->rate);
	free(e);
}

static void principal_of(const caller *who, authz_principal *p)
{
	*p = (authz_principal){
		.name = who->principal_found ? who->principal : NULL,
		.roles = who->roles,
		.disabled = who->principal_disabled,
	};
}

/* The audit entry's decision fields; a denial overrides an earlier allow
 * (a batch item, re_encrypt's second key), an allow never a denial. */
static void note_decision(op_ctx *ctx, const char *decision, const char *reason,
                          const char *detail)
{
	if (ctx->audit.authz_decision && !strcmp(ctx->audit.authz_decision, "deny") &&
	    strcmp(decision, "deny"))
		return;
	op_note_authz(ctx, decision, reason ? arena_strdup(ctx->arena, reason) : NULL, detail);
}

/* The caller's principal for /metrics ("" when none). */
static const char *caller_name(const op_ctx *ctx)
{
	return ctx->caller ? ctx->caller->principal : "";
}

static kms_status denied(op_ctx *ctx, const authz_decision *dec)
{
	metrics_authz_denied((int)dec->step, caller_name(ctx));
	note_decision(ctx, "deny", dec->reason, dec->message);
	kms_log("info", "request %s: %s denied (%s)", ctx->request_id,
	        ctx->op ? ctx->op->name : "?", dec->reason);
	return KMS_FAIL(KMS_ACCESS_DENIED, "%s", dec->message);
}

static kms_status take_token(op_ctx *ctx, const char *principal, const char *key_id)
{
	authz_rate_verdict v;
	kms_status st = authz_rate_take(ctx->d->authz->rate, principal, key_id, &v);
	if (st == KMS_THROTTLED) {
		ctx->retry_after_ms = v.retry_after_ms ? v.retry_after_ms : 1;
		metrics_throttled(v.limited & AUTHZ_RATE_KEY ? "key" : "principal", caller_name(ctx));
		note_decision(ctx, "throttled", v.limited & AUTHZ_RATE_KEY ? "key rate limit"
		              : "principal rate limit", kms_error_message());
	}
	return st;
}

kms_status authz_enforce_request(op_ctx *ctx)
{
	const caller *who = ctx->caller;
	authz_op_class cls = authz_op_classify(ctx->op);
	authz_decision dec;
	if (cls.family == AUTHZ_FAMILY_HEALTH) {
		/* Anyone the transport admitted, known to the store or not, and
		 * never throttled: it is the liveness probe (kmsd's own /healthz
		 * sends one), and it touches no key and no store. */
		note_decision(ctx, "allow", "step 2: health admits anyone admitted", NULL);
		return KMS_OK;
	} else if (cls.family == AUTHZ_FAMILY_PRINCIPALS && who->ipc_root) {
		/* uid 0 on this machine may always manage principals (the way out
		 * of a lost admin), never over the network. */
		note_decision(ctx, "allow", "step 2: ipc uid 0 may manage principals", NULL);
	} else {
		authz_principal p;
		principal_of(who, &p);
		/* A keyed operation is decided here up to step 2 only: with an
		 * empty policy, steps 3 to 5 come back as a step-5 denial, which
		 * the key check (authz_enforce_key) replaces with the real one. */
		static const authz_policy none = { 0 };
		authz_request r = {
			.principal = &p,
			.op = ctx->op,
			.key_id = cls.keyed ? "" : NULL,
			.policy = &none,
		};
		authz_decide(&r, &dec);
		if (!dec.allow && dec.step <= AUTHZ_STEP_ROLE) {
			if (cls.keyed && who->principal_found)
				/* Which key does not matter: no key is looked at. */
				snprintf(dec.message, sizeof dec.message, "principal %.63s may not %s",
				         who->principal, ctx->op->name);
			if (!who->principal_found)
				snprintf(dec.message, sizeof dec.message,
				         "principal %.63s is not known to kmsd (or deleted): create it "
				         "(kms-admin principal create) or sign with another's access key",
				         who->principal[0] ? who->principal : "(none)");
			return denied(ctx, &dec);
		}
		if (!cls.keyed)
			note_decision(ctx, "allow", dec.reason, NULL);
	}
	if (who->principal_found && who->principal[0])
		KMS_GUARD(take_token(ctx, who->principal, NULL));
	return KMS_OK;
}

/* A live grant's row as the decision reads it: its operation names and
 * required pairs, copied into the arena. */
static kms_status grant_view(op_ctx *ctx, const store_grant *g, authz_grant *out)
{
	size_t n_ops = 1;
	for (const char *c = g->operations; *c; c++)
		n_ops += *c == ',';
	char *ops = arena_strdup(ctx->arena, g->operations);
	const char **names = arena_alloc(ctx->arena, n_ops * sizeof *names);
	KMS_ENSURE(ops && names, KMS_INTERNAL, "out of request memory");
	size_t n = 0;
	for (char *save = NULL, *tok = strtok_r(ops, ",", &save); tok && n < n_ops;
	     tok = strtok_r(NULL, ",", &save))
		names[n++] = tok;
	context_pair pairs[KMS_CONTEXT_MAX_PAIRS];
	size_t n_pairs = 0;
	if (context_decode(g->context, g->context_len, pairs, &n_pairs) != KMS_OK)
		return KMS_FAIL(KMS_INTERNAL, "grant %s: its stored context does not decode", g->id);
	authz_pair *req = arena_alloc(ctx->arena, (n_pairs + 1) * sizeof *req);
	KMS_ENSURE(req, KMS_INTERNAL, "out of request memory");
	for (size_t i = 0; i < n_pairs; i++) {
		char *k = arena_alloc(ctx->arena, pairs[i].key_len + 1);
		char *v = arena_alloc(ctx->arena, pairs[i].value_len + 1);
		KMS_ENSURE(k && v, KMS_INTERNAL, "out of request memory");
		memcpy(k, pairs[i].key, pairs[i].key_len);
		k[pairs[i].key_len] = '\0';
		memcpy(v, pairs[i].value, pairs[i].value_len);
		v[pairs[i].value_len] = '\0';
		req[i] = (authz_pair){ k, v };
	}
	char *id = arena_strdup(ctx->arena, g->id);
	KMS_ENSURE(id, KMS_INTERNAL, "out of request memory");
	*out = (authz_grant){ .id = id, .operations = names, .n_operations = n,
	                      .context = req, .n_context = n_pairs };
	return KMS_OK;
}

/* The decision on one key, its inputs read from the store now. */
static kms_status decide_key(op_ctx *ctx, const char *key_id, Kms__StringPair *const *pairs,
                             size_t n_pairs, authz_decision *dec, bool *require_consent)
{
	*require_consent = false;
	authz_enforce *e = ctx->d->authz;
	const caller *who = ctx->caller;
	authz_principal p;
	principal_of(who, &p);
	char *text = NULL;
	KMS_GUARD(store_policy_get(e->store, key_id, &text));
	authz_policy *stored = NULL;
	kms_status st = KMS_OK;
	if (text && text[0] && authz_policy_parse(text, strlen(text), &stored) != KMS_OK) {
		/* A policy written before kmsd enforced policies, which the parser
		 * now refuses: deny (fail closed), and say why in kmsd's log. */
		kms_log("warn", "key %s: its policy does not parse (%s): every use is denied until "
		        "an admin puts a valid one", key_id, kms_error_message());
		kms_error_clear();
		free(text);
		*dec = (authz_decision){ .allow = false, .step = AUTHZ_STEP_DEFAULT, .statement = -1 };
		snprintf(dec->reason, sizeof dec->reason, "step 5: the key's policy does not parse");
		snprintf(dec->message, sizeof dec->message, "principal %.63s may not %s key %s",
		         who->principal, ctx->op->name, key_id);
		return KMS_OK;
	}
	bool has_stored = text && text[0];
	free(text);
	store_grant *rows = NULL;
	size_t n_rows = 0;
	authz_grant *grants = NULL;
	if (p.name) {
		st = store_grants_live(e->store, p.name, key_id, &rows, &n_rows);
		if (st == KMS_OK && n_rows) {
			grants = arena_alloc(ctx->arena, n_rows * sizeof *grants);
			if (!grants)
				st = KMS_FAIL(KMS_INTERNAL, "out of request memory");
			for (size_t i = 0; st == KMS_OK && i < n_rows; i++)
				st = grant_view(ctx, &rows[i], &grants[i]);
		}
		free(rows);
	}
	if (st == KMS_OK) {
		authz_context c = { pairs, n_pairs };
		authz_request r = {
			.principal = &p,
			.op = ctx->op,
			.key_id = key_id,
			.policy = has_stored ? stored : e->default_policy,
			.grants = grants,
			.n_grants = n_rows,
			.contexts = &c,
			.n_contexts = 1,
		};
		authz_decide(&r, dec);
		*require_consent = r.policy && r.policy->require_consent;
	}
	authz_policy_free(stored);
	return st;
}

/* The operations a key's RequireConsent gates (authz_consent.h); any other
 * data-plane use of such a key is refused. */
static bool consent_gated(const char *op)
{
	static const char *const gated[] = { "encrypt", "decrypt", "re_encrypt",
		                             "generate_data_key",
		                             "generate_data_key_without_plaintext",
		                             "batch_encrypt", "batch_decrypt",
		                             "batch_generate_data_key" };
	for (size_t i = 0; i < sizeof gated / sizeof gated[0]; i++)
		if (!strcmp(op, gated[i]))
			return true;
	return false;
}

kms_status authz_enforce_key(op_ctx *ctx, const char *key_id, Kms__StringPair *const *pairs,
                             size_t n_pairs)
{
	authz_decision dec;
	bool require_consent;
	KMS_GUARD(decide_key(ctx, key_id, pairs, n_pairs, &dec, &require_consent));
	if (!dec.allow)
		return denied(ctx, &dec);
	if (require_consent && authz_op_classify(ctx->op).family == AUTHZ_FAMILY_DATA &&
	    !consent_gated(ctx->op->name)) {
		/* Only the encrypting and decrypting operations carry a consent. */
		snprintf(dec.reason, sizeof dec.reason, "consent: %s cannot carry a consent",
		         ctx->op->name);
		snprintf(dec.message, sizeof dec.message, "key %s requires consent: only Encrypt, "
		         "Decrypt, ReEncrypt and GenerateDataKey may use it", key_id);
		return denied(ctx, &dec);
	}
	snprintf(ctx->consent_gate.key_id, sizeof ctx->consent_gate.key_id, "%s", key_id);
	ctx->consent_gate.required = require_consent;
	note_decision(ctx, "allow", dec.reason, NULL);
	return take_token(ctx, NULL, key_id);
}
