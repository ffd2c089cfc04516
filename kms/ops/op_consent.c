/*
 * op_consent.c: the consent registry (docs/consent.md). Consent Managers
 * (add, list, remove: admins), artefacts (import, status: an admin or the
 * principal bound to the artefact's Consent Manager; list, describe:
 * admins and auditors, by the decision's family).
 *
 * An artefact is verified before anything is stored: read
 * (consent_artefact_parse), its kid's Consent Manager found, its detached
 * JWS verified with that manager's key (libcjose), and its Customer.id
 * turned into a pseudonym with the manager's dp key in the HSM; the id
 * itself is never stored or logged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <kms/secmem.h>

#include "common/error.h"
#include "common/pseudonym.h"
#include "kms/consent/consent_artefact.h"
#include "kms/keys/keyring.h"
#include "kms/pipeline/ops.h"
#include "kms/store/store_consents.h"

static store *op_store(op_ctx *ctx)
{
	return keyring_store(ctx->d->keyring);
}

static bool caller_admin(const op_ctx *ctx)
{
	return ctx->caller->principal_found && (ctx->caller->roles & PRINCIPAL_ROLE_ADMIN);
}

static void note_consent(op_ctx *ctx, const char *id, const char *manager, const char *action)
{
	op_audit_consent *c = &ctx->audit.consent;
	c->id = id && id[0] ? arena_strdup(ctx->arena, id) : c->id;
	c->manager = manager && manager[0] ? arena_strdup(ctx->arena, manager) : c->manager;
	c->action = action;
}

/* ---- Consent Managers ---- */

static kms_status manager_out(op_ctx *ctx, const store_consent_manager *m,
                              Kms__ConsentManager **out)
{
	Kms__ConsentManager *w;
	OP_ALLOC(ctx, w);
	kms__consent_manager__init(w);
	w->id = arena_strdup(ctx->arena, m->id);
	w->kid = arena_strdup(ctx->arena, m->kid);
	w->jwk = arena_strdup(ctx->arena, m->jwk);
	w->dp_key_id = arena_strdup(ctx->arena, m->dp_key);
	w->principal = arena_strdup(ctx->arena, m->principal);
	w->created_by = arena_strdup(ctx->arena, m->created_by);
	KMS_ENSURE(w->id && w->kid && w->jwk && w->dp_key_id && w->principal && w->created_by,
	           KMS_INTERNAL, "out of request memory");
	w->removed = m->removed;
	w->created_at = m->created_at;
	w->removed_at = m->removed_at;
	*out = w;
	return KMS_OK;
}

kms_status op_add_consent_manager(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__AddConsentManagerRequest *r = req->add_consent_manager;
	note_consent(ctx, NULL, r->id, "add_consent_manager");
	store_consent_manager *m = calloc(1, sizeof *m);
	KMS_ENSURE(m, KMS_INTERNAL, "out of memory");
	char *pub = NULL;
	kms_status st = consent_jwk_check(r->jwk, strlen(r->jwk), &pub, m->kid);
	/* The dp key: an HMAC key this kmsd holds, enabled now. */
	keyring_key_use use;
	if (st == KMS_OK)
		st = keyring_use_key(ctx->d->keyring, r->dp_key_id, KEY_USAGE_GENERATE_VERIFY_MAC,
		                     "a Consent Manager's dp key", 0, &use);
	if (st == KMS_OK && r->principal[0]) {
		store_principal p;
		st = store_principal_get(op_store(ctx), r->principal, &p);
		if (st == KMS_OK && p.state == PRINCIPAL_STATE_DELETED)
			st = KMS_FAIL(KMS_NOT_FOUND, "principal %s was deleted", r->principal);
	}
	if (st == KMS_OK && strlen(pub) > STORE_CM_JWK_MAX)
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "jwk: too large once normalized");
	if (st == KMS_OK) {
		snprintf(m->id, sizeof m->id, "%s", r->id);
		snprintf(m->jwk, sizeof m->jwk, "%s", pub);
		snprintf(m->dp_key, sizeof m->dp_key, "%s", use.key_id_text);
		snprintf(m->principal, sizeof m->principal, "%s", r->principal);
		snprintf(m->created_by, sizeof m->created_by, "%s", ctx->caller->principal);
		m->created_at = ctx->now;
		st = store_cm_add(op_store(ctx), m);
	}
	Kms__AddConsentManagerResponse *v = NULL;
	if (st == KMS_OK && (v = arena_alloc(ctx->arena, sizeof *v)) == NULL)
		st = KMS_FAIL(KMS_INTERNAL, "out of request memory");
	if (st == KMS_OK) {
		kms__add_consent_manager_response__init(v);
		st = manager_out(ctx, m, &v->manager);
	}
	free(pub);
	free(m);
	KMS_GUARD(st);
	resp->add_consent_manager = v;
	resp->result_case = KMS__RESPONSE__RESULT_ADD_CONSENT_MANAGER;
	return KMS_OK;
}

kms_status op_list_consent_managers(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	(void)req;
	store_consent_manager *rows = NULL;
	size_t n = 0;
	KMS_GUARD(store_cm_list(op_store(ctx), &rows, &n));
	Kms__ListConsentManagersResponse *v = arena_alloc(ctx->arena, sizeof *v);
	Kms__ConsentManager **list = arena_alloc(ctx->arena, (n + 1) * sizeof *list);
	kms_status st = v && list ? KMS_OK : KMS_FAIL(KMS_INTERNAL, "out of request memory");
	for (size_t i = 0; st == KMS_OK && i < n; i++)
		st = manager_out(ctx, &rows[i], &list[i]);
	free(rows);
	KMS_GUARD(st);
	kms__list_consent_managers_response__init(v);
	v->managers = list;
	v->n_managers = n;
	resp->list_consent_managers = v;
	resp->result_case = KMS__RESPONSE__RESULT_LIST_CONSENT_MANAGERS;
	return KMS_OK;
}

kms_status op_remove_consent_manager(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const char *id = req->remove_consent_manager->id;
	note_consent(ctx, NULL, id, "remove_consent_manager");
	KMS_GUARD(store_cm_remove(op_store(ctx), id, ctx->now));
	store_consent_manager *m = calloc(1, sizeof *m);
	KMS_ENSURE(m, KMS_INTERNAL, "out of memory");
	kms_status st = store_cm_get(op_store(ctx), id, m);
	Kms__RemoveConsentManagerResponse *v = arena_alloc(ctx->arena, sizeof *v);
	if (st == KMS_OK && !v)
		st = KMS_FAIL(KMS_INTERNAL, "out of request memory");
	if (st == KMS_OK) {
		kms__remove_consent_manager_response__init(v);
		st = manager_out(ctx, m, &v->manager);
	}
	free(m);
	KMS_GUARD(st);
	resp->remove_consent_manager = v;
	resp->result_case = KMS__RESPONSE__RESULT_REMOVE_CONSENT_MANAGER;
	return KMS_OK;
}

/* ---- consents ---- */

static const char *shown_status(const store_consent *c, int64_t now)
{
	if (strcmp(c->status, "REVOKED") && now >= c->expiry)
		return "EXPIRED";
	return c->status;
}

static kms_status consent_out(op_ctx *ctx, const store_consent *c, Kms__Consent **out)
{
	Kms__Consent *w;
	OP_ALLOC(ctx, w);
	kms__consent__init(w);
	w->id = arena_strdup(ctx->arena, c->id);
	w->manager = arena_strdup(ctx->arena, c->manager);
	w->data_principal = arena_strdup(ctx->arena, c->dp);
	w->purpose = arena_strdup(ctx->arena, c->purpose);
	w->fetch_type = c->onetime ? "ONETIME" : "PERIODIC";
	w->frequency_unit = arena_strdup(ctx->arena, c->frequency_unit);
	w->status = arena_strdup(ctx->arena, shown_status(c, ctx->now));
	w->status_by = arena_strdup(ctx->arena, c->status_by);
	w->imported_by = arena_strdup(ctx->arena, c->imported_by);
	w->artefact_sha256.data = arena_alloc(ctx->arena, sizeof c->digest);
	KMS_ENSURE(w->id && w->manager && w->data_principal && w->purpose && w->frequency_unit &&
	           w->status && w->status_by && w->imported_by && w->artefact_sha256.data,
	           KMS_INTERNAL, "out of request memory");
	memcpy(w->artefact_sha256.data, c->digest, sizeof c->digest);
	w->artefact_sha256.len = sizeof c->digest;
	w->consent_start = c->start;
	w->consent_expiry = c->expiry;
	w->data_life_end = c->data_life_end == INT64_MAX ? 0 : c->data_life_end;
	w->frequency_value = c->frequency_value;
	w->status_at = c->status_at;
	w->uses = c->uses;
	w->imported_at = c->imported_at;
	*out = w;
	return KMS_OK;
}

/* The Customer.id's pseudonym under the manager's dp key (docs/consent.md,
 * "The data principal"): an empty context, the id as the value. */
static kms_status customer_pseudonym(op_ctx *ctx, const store_consent_manager *m,
                                     const consent_artefact *a,
                                     char out[static KMS_PSEUDONYM_TEXT_SIZE])
{
	keyring_key_use use;
	KMS_GUARD(keyring_use_key(ctx->d->keyring, m->dp_key, KEY_USAGE_GENERATE_VERIFY_MAC,
	                          "a Consent Manager's dp key", 0, &use));
	uint8_t message[KMS_PSEUDONYM_MESSAGE_OVERHEAD + KMS_CONTEXT_ENCODED_EMPTY_LEN +
	                CONSENT_CUSTOMER_ID_MAX];
	uint8_t mac[HSM_HMAC_SHA256_LEN];
	size_t len = 0;
	kms_status st = pseudonym_message(NULL, 0, a->customer_id, a->customer_id_len, message,
	                                  sizeof message, &len);
	if (st == KMS_OK)
		st = keyring_hmac(ctx->d->keyring, &use, message, len, mac);
	if (st == KMS_OK)
		st = pseudonym_format(use.key_id_text, use.version, mac, out);
	kms_wipe(message, sizeof message);
	kms_wipe(mac, sizeof mac);
	return st;
}

/* Who may import or change this manager's artefacts: an admin, or the
 * principal bound to it. The audit entry's decision says which. */
static kms_status may_act_for(op_ctx *ctx, const store_consent_manager *m, const char *what)
{
	if (caller_admin(ctx)) {
		op_note_authz(ctx, "allow", "consent: admin", NULL);
		return KMS_OK;
	}
	if (m->principal[0] && ctx->caller->principal_found &&
	    !strcmp(ctx->caller->principal, m->principal)) {
		op_note_authz(ctx, "allow", "consent: the Consent Manager's principal", NULL);
		return KMS_OK;
	}
	kms_status st = KMS_FAIL(KMS_ACCESS_DENIED, "principal %s may not %s for Consent Manager "
	                         "%s: only an admin or its bound principal may",
	                         ctx->caller->principal, what, m->id);
	op_note_authz(ctx, "deny", "consent: neither an admin nor the Consent Manager's principal",
	              kms_error_message());
	return st;
}

/* The artefact read, its manager found and allowed, its JWS verified and
 * its data principal pseudonymized: the row to store. */
static kms_status verify_artefact(op_ctx *ctx, const ProtobufCBinaryData *doc,
                                  consent_artefact *a, store_consent_manager *m,
                                  store_consent *row)
{
	kms_status st = consent_artefact_parse(doc->data, doc->len, a);
	note_consent(ctx, a->id, NULL, "import_consent");
	KMS_GUARD(st);
	st = store_cm_by_kid(op_store(ctx), a->kid, m);
	if (st == KMS_NOT_FOUND && !caller_admin(ctx)) {
		/* Only admins learn which kids are registered. */
		kms_error_clear();
		st = KMS_FAIL(KMS_ACCESS_DENIED, "principal %s may not import artefacts signed with "
		              "kid %s: only an admin or its Consent Manager's bound principal may",
		              ctx->caller->principal, a->kid);
		op_note_authz(ctx, "deny", "consent: neither an admin nor the Consent Manager's "
		              "principal", kms_error_message());
		return st;
	}
	if (st == KMS_NOT_FOUND)
		return KMS_FAIL(KMS_NOT_FOUND, "consent artefact %s: no registered Consent Manager "
		                "signs with kid %s: register it first (kms-admin consent-manager add)",
		                a->id, a->kid);
	KMS_GUARD(st);
	note_consent(ctx, a->id, m->id, "import_consent");
	KMS_GUARD(may_act_for(ctx, m, "import artefacts"));
	KMS_ENSURE(!m->removed, KMS_FAILED_PRECONDITION, "consent artefact %s: its Consent "
	           "Manager %s was removed: its artefacts are no longer accepted", a->id, m->id);
	KMS_GUARD(consent_artefact_verify(doc->data, doc->len, a, m->jwk));
	memset(row, 0, sizeof *row);
	KMS_GUARD(customer_pseudonym(ctx, m, a, row->dp));
	snprintf(row->id, sizeof row->id, "%s", a->id);
	snprintf(row->manager, sizeof row->manager, "%s", m->id);
	snprintf(row->purpose, sizeof row->purpose, "%s", a->purpose);
	snprintf(row->frequency_unit, sizeof row->frequency_unit, "%s", a->frequency_unit);
	snprintf(row->imported_by, sizeof row->imported_by, "%s", ctx->caller->principal);
	row->onetime = a->onetime;
	row->start = a->start;
	row->expiry = a->expiry;
	row->data_life_end = a->data_life_end;
	row->frequency_value = a->frequency_value;
	row->imported_at = ctx->now;
	SHA256(doc->data, doc->len, row->digest);
	SHA256(doc->data + a->detail_off, a->detail_len, row->detail_digest);
	return KMS_OK;
}

kms_status op_import_consent(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const ProtobufCBinaryData *doc = &req->import_consent->artefact;
	consent_artefact *a = calloc(1, sizeof *a);
	store_consent_manager *m = calloc(1, sizeof *m);
	store_consent *row = calloc(1, sizeof *row), *stored = calloc(1, sizeof *stored);
	kms_status st = a && m && row && stored ? KMS_OK : KMS_FAIL(KMS_INTERNAL, "out of memory");
	if (st == KMS_OK)
		st = verify_artefact(ctx, doc, a, m, row);
	if (a)
		consent_artefact_clear(a);
	bool again = false;
	if (st == KMS_OK) {
		/* The same id again: the same bytes change nothing, other bytes are
		 * refused. */
		st = store_consent_get(op_store(ctx), row->id, stored);
		if (st == KMS_OK) {
			again = true;
			if (CRYPTO_memcmp(stored->digest, row->digest, sizeof row->digest) != 0)
				st = KMS_FAIL(KMS_FAILED_PRECONDITION, "consent %s was imported before "
				              "with other bytes: an artefact never changes (change its "
				              "status with kms-admin consent pause|resume|revoke)", row->id);
		} else if (st == KMS_NOT_FOUND) {
			kms_error_clear();
			st = KMS_OK;
		}
	}
	if (st == KMS_OK && !again) {
		/* A new id: its signed ConsentDetail must be new too (consentId is
		 * not signed: an old, revoked or used consent under a new id
		 * would otherwise start afresh). Its purpose and data principal
		 * are noted first: on a fleet's database the entry is made inside
		 * the insert's transaction (pipeline.c, "Step 4b"). */
		ctx->audit.consent.purpose = arena_strdup(ctx->arena, row->purpose);
		ctx->audit.consent.dp = arena_strdup(ctx->arena, row->dp);
		st = store_consent_insert(op_store(ctx), row, doc->data, doc->len);
		if (st == KMS_ALREADY_EXISTS)
			st = KMS_FAIL(KMS_FAILED_PRECONDITION, "consent artefact %s: its signed "
			              "ConsentDetail was imported before under another consentId: a "
			              "consent is imported once", row->id);
	}
	if (st == KMS_OK && !again)
		st = store_consent_get(op_store(ctx), row->id, stored);
	Kms__ImportConsentResponse *v = NULL;
	if (st == KMS_OK && !(v = arena_alloc(ctx->arena, sizeof *v)))
		st = KMS_FAIL(KMS_INTERNAL, "out of request memory");
	if (st == KMS_OK) {
		kms__import_consent_response__init(v);
		v->already_imported = again;
		st = consent_out(ctx, stored, &v->consent);
	}
	if (st == KMS_OK) {
		ctx->audit.consent.purpose = v->consent->purpose;
		ctx->audit.consent.dp = v->consent->data_principal;
	}
	free(a);
	free(m);
	free(row);
	free(stored);
	KMS_GUARD(st);
	resp->import_consent = v;
	resp->result_case = KMS__RESPONSE__RESULT_IMPORT_CONSENT;
	return KMS_OK;
}

static const char *action_name(Kms__ConsentAction a)
{
	switch (a) {
	case KMS__CONSENT_ACTION__CONSENT_PAUSE: return "PAUSE";
	case KMS__CONSENT_ACTION__CONSENT_RESUME: return "RESUME";
	case KMS__CONSENT_ACTION__CONSENT_REVOKE: return "REVOKE";
	default: return NULL;
	}
}

/* The status an action moves from, to; NULL to: refused. */
static const char *action_target(const char *status, const char *action)
{
	if (!strcmp(action, "REVOKE") && strcmp(status, "REVOKED"))
		return "REVOKED";
	if (!strcmp(action, "PAUSE") && !strcmp(status, "ACTIVE"))
		return "PAUSED";
	if (!strcmp(action, "RESUME") && !strcmp(status, "PAUSED"))
		return "ACTIVE";
	return NULL;
}

kms_status op_set_consent_status(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__SetConsentStatusRequest *r = req->set_consent_status;
	const char *action = action_name(r->action);
	note_consent(ctx, r->consent_id, NULL, action);
	store_consent c;
	store_consent_manager *m = calloc(1, sizeof *m);
	KMS_ENSURE(m, KMS_INTERNAL, "out of memory");
	kms_status st = store_consent_get(op_store(ctx), r->consent_id, &c);
	if (st == KMS_NOT_FOUND && !caller_admin(ctx)) {
		/* Only admins learn which consent ids exist. */
		kms_error_clear();
		st = KMS_FAIL(KMS_ACCESS_DENIED, "principal %s may not change the status of consent "
		              "%s: only an admin or its Consent Manager's bound principal may",
		              ctx->caller->principal, r->consent_id);
		op_note_authz(ctx, "deny", "consent: neither an admin nor the Consent Manager's "
		              "principal", kms_error_message());
	}
	if (st == KMS_OK) {
		note_consent(ctx, NULL, c.manager, action);
		st = store_cm_get(op_store(ctx), c.manager, m);
	}
	if (st == KMS_OK)
		st = may_act_for(ctx, m, "change the status of artefacts");
	free(m);
	KMS_GUARD(st);
	const char *to = action_target(c.status, action);
	KMS_ENSURE(to, KMS_FAILED_PRECONDITION, "consent %s is %s: %s does not apply (PAUSE an "
	           "ACTIVE one, RESUME a PAUSED one, REVOKE either; REVOKED is final)", c.id,
	           c.status, action);
	KMS_GUARD(store_consent_set_status(op_store(ctx), c.id, c.status, to,
	                                   ctx->caller->principal, ctx->now));
	KMS_GUARD(store_consent_get(op_store(ctx), r->consent_id, &c));
	Kms__SetConsentStatusResponse *v;
	OP_ALLOC(ctx, v);
	kms__set_consent_status_response__init(v);
	KMS_GUARD(consent_out(ctx, &c, &v->consent));
	resp->set_consent_status = v;
	resp->result_case = KMS__RESPONSE__RESULT_SET_CONSENT_STATUS;
	return KMS_OK;
}

kms_status op_list_consents(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__ListConsentsRequest *r = req->list_consents;
	store_consent_filter f = { r->manager, r->data_principal, r->purpose, r->status };
	uint32_t limit = r->limit ? r->limit : 100;
	store_consent *rows = NULL;
	size_t n = 0;
	bool more = false;
	KMS_GUARD(store_consent_list(op_store(ctx), &f, r->page_token, limit, &rows, &n, &more));
	Kms__ListConsentsResponse *v = arena_alloc(ctx->arena, sizeof *v);
	Kms__Consent **list = arena_alloc(ctx->arena, (n + 1) * sizeof *list);
	kms_status st = v && list ? KMS_OK : KMS_FAIL(KMS_INTERNAL, "out of request memory");
	for (size_t i = 0; st == KMS_OK && i < n; i++)
		st = consent_out(ctx, &rows[i], &list[i]);
	if (st == KMS_OK) {
		kms__list_consents_response__init(v);
		v->consents = list;
		v->n_consents = n;
		v->next_page_token = more && n ? arena_strdup(ctx->arena, rows[n - 1].id) : "";
		if (!v->next_page_token)
			st = KMS_FAIL(KMS_INTERNAL, "out of request memory");
	}
	free(rows);
	KMS_GUARD(st);
	resp->list_consents = v;
	resp->result_case = KMS__RESPONSE__RESULT_LIST_CONSENTS;
	return KMS_OK;
}

kms_status op_describe_consent(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const char *id = req->describe_consent->consent_id;
	note_consent(ctx, id, NULL, NULL);
	store_consent c;
	KMS_GUARD(store_consent_get(op_store(ctx), id, &c));
	Kms__DescribeConsentResponse *v;
	OP_ALLOC(ctx, v);
	kms__describe_consent_response__init(v);
	KMS_GUARD(consent_out(ctx, &c, &v->consent));
	uint8_t *bytes = NULL;
	size_t len = 0;
	KMS_GUARD(store_consent_artefact(op_store(ctx), id, &bytes, &len));
	v->artefact.data = arena_alloc(ctx->arena, len);
	if (v->artefact.data)
		memcpy(v->artefact.data, bytes, len);
	free(bytes);
	KMS_ENSURE(v->artefact.data, KMS_INTERNAL, "out of request memory");
	v->artefact.len = len;
	resp->describe_consent = v;
	resp->result_case = KMS__RESPONSE__RESULT_DESCRIBE_CONSENT;
	return KMS_OK;
}
