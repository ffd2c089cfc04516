/*
 * op_keys.c: the control plane for keys: create, describe, list, the
 * lifecycle (enable, disable, rotate, rotation period, deletion), tags and
 * policy. The rules live in the keyring; this file maps requests to it and
 * its answers to the wire.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "common/error.h"
#include "kms/authz/authz_enforce.h"
#include "kms/authz/authz_policy.h"
#include "kms/keys/keyring.h"
#include "kms/pipeline/ops.h"
#include "kms/pipeline/validate.h"

/* key_metadata (keyring) -> Kms__KeyMetadata (wire), in the arena. */
static kms_status to_wire(op_ctx *ctx, const key_metadata *m, Kms__KeyMetadata **out)
{
	Kms__KeyMetadata *w;
	OP_ALLOC(ctx, w);
	kms__key_metadata__init(w);
	const store_key *k = &m->key;
	w->key_id = arena_strdup(ctx->arena, k->id);
	w->description = arena_strdup(ctx->arena, k->description);
	w->region = arena_strdup(ctx->arena, k->region);
	KMS_ENSURE(w->key_id && w->description && w->region, KMS_INTERNAL, "out of request memory");
	w->key_spec = (Kms__KeySpec)k->spec;
	w->key_usage = (Kms__KeyUsage)k->usage;
	w->key_state = (Kms__KeyState)k->state;
	w->primary_version = k->primary_version;
	w->rotation_period_days = k->rotation_period_days;
	w->created_at = k->created_at;
	w->next_rotation_at = k->next_rotation_at;
	w->deletion_date = k->deletion_date;
	w->protection = k->protection == KEY_PROTECTION_HSM_RESIDENT
	                        ? KMS__KEY_PROTECTION__HSM_RESIDENT
	                        : KMS__KEY_PROTECTION__WRAPPED;
	w->per_data_principal = k->per_data_principal;

	w->versions = arena_alloc(ctx->arena, (m->n_versions + 1) * sizeof *w->versions);
	w->aliases = arena_alloc(ctx->arena, (m->n_aliases + 1) * sizeof *w->aliases);
	w->tags = arena_alloc(ctx->arena, (m->n_tags + 1) * sizeof *w->tags);
	KMS_ENSURE(w->versions && w->aliases && w->tags, KMS_INTERNAL, "out of request memory");
	for (size_t i = 0; i < m->n_versions; i++) {
		Kms__KeyVersion *v;
		OP_ALLOC(ctx, v);
		kms__key_version__init(v);
		v->version = m->versions[i].version;
		v->created_at = m->versions[i].created_at;
		v->encryptions = m->versions[i].encryptions_reserved;
		if (m->versions[i].kek_id) {
			char kek[STORE_KEK_HSM_ID_MAX + 1];
			KMS_GUARD(keyring_kek_name(ctx->d->keyring, m->versions[i].kek_id, kek));
			v->kek = arena_strdup(ctx->arena, kek);
			KMS_ENSURE(v->kek, KMS_INTERNAL, "out of request memory");
		}
		w->versions[w->n_versions++] = v;
	}
	for (size_t i = 0; i < m->n_aliases; i++) {
		w->aliases[i] = arena_strdup(ctx->arena, m->aliases[i].name);
		KMS_ENSURE(w->aliases[i], KMS_INTERNAL, "out of request memory");
		w->n_aliases++;
	}
	for (size_t i = 0; i < m->n_tags; i++) {
		Kms__StringPair *t;
		OP_ALLOC(ctx, t);
		kms__string_pair__init(t);
		t->key = arena_strdup(ctx->arena, m->tags[i].key);
		t->value = arena_strdup(ctx->arena, m->tags[i].value);
		KMS_ENSURE(t->key && t->value, KMS_INTERNAL, "out of request memory");
		w->tags[w->n_tags++] = t;
	}
	*out = w;
	return KMS_OK;
}

/* Converts and frees m (keyring memory), whatever happens. */
static kms_status metadata_out(op_ctx *ctx, key_metadata *m, Kms__KeyMetadata **out)
{
	op_note_key(ctx, m->key.id, m->key.primary_version);
	kms_status st = to_wire(ctx, m, out);
	key_metadata_free(m);
	return st;
}

/* A policy is refused when written if the decision could not read it
 * (docs/authorization.md, "Key policies"): the keyring's checks first,
 * then the grammar the decision compiles. */
static kms_status policy_check(const char *policy)
{
	KMS_GUARD(keyring_policy_validate(policy));
	authz_policy *p = NULL;
	KMS_GUARD(authz_policy_parse(policy, strlen(policy), &p));
	authz_policy_free(p);
	return KMS_OK;
}

/* The key check (op_authorize_ref): the key key_ref resolves to is noted
 * for the audit entry (key_ref itself when it does not resolve, and the
 * request fails with that) and decided for this caller and operation. */
static kms_status authorize_ref(op_ctx *ctx, const char *key_ref)
{
	char key_id[KMS_KEYID_TEXT_SIZE];
	return op_authorize_ref(ctx, key_ref, NULL, 0, key_id);
}

kms_status op_create_key_kind(const Kms__CreateKeyRequest *r, key_spec *spec, key_usage *usage,
                              key_protection *protection)
{
	key_protection asked = 0; /* UNSPECIFIED: the spec's default */
	switch (r->protection) {
	case KMS__KEY_PROTECTION__KEY_PROTECTION_UNSPECIFIED: break;
	case KMS__KEY_PROTECTION__WRAPPED: asked = KEY_PROTECTION_WRAPPED; break;
	case KMS__KEY_PROTECTION__HSM_RESIDENT: asked = KEY_PROTECTION_HSM_RESIDENT; break;
	default:
		return KMS_FAIL(KMS_INVALID_ARGUMENT,
		                "protection: %d, must be WRAPPED or HSM_RESIDENT", (int)r->protection);
	}
	/* The wire's KeySpec and KeyUsage numbers are the store's (1..4, 1..3). */
	KMS_ENSURE((int)r->key_spec >= 0 && (int)r->key_spec <= (int)KEY_SPEC_ECC_P256, KMS_INVALID_ARGUMENT,
	           "key_spec: %d, must be AES_256, HMAC_SHA256, ED25519 or ECC_P256",
	           (int)r->key_spec);
	KMS_ENSURE((int)r->key_usage >= 0 && (int)r->key_usage <= (int)KEY_USAGE_SIGN_VERIFY, KMS_INVALID_ARGUMENT,
	           "key_usage: %d, must be ENCRYPT_DECRYPT, GENERATE_VERIFY_MAC or SIGN_VERIFY",
	           (int)r->key_usage);
	*spec = r->key_spec ? (key_spec)r->key_spec : KEY_SPEC_AES_256;
	KMS_GUARD(keyring_spec_check(*spec, (key_usage)r->key_usage, asked, usage, protection));
	return keyring_per_data_principal_check(r->per_data_principal, *spec, *protection);
}

/* The request's reference (docs/scale-out.md, "A retried CreateKey"):
 * SHA-256 over the caller's principal, the request id and the
 * CreateKeyRequest as packed, NUL between, in lowercase hex. The same
 * request sent again, to any replica, has the same one; another request
 * (another id, or other fields) has another. */
static kms_status request_ref(const op_ctx *ctx, const Kms__CreateKeyRequest *r,
                              char out[STORE_REQUEST_REF_SIZE])
{
	const char *principal = ctx->caller ? ctx->caller->principal : "";
	size_t np = strlen(principal), ni = strlen(ctx->request_id);
	size_t nr = kms__create_key_request__get_packed_size(r);
	size_t n = np + 1 + ni + 1 + nr;
	uint8_t *buf = malloc(n);
	KMS_ENSURE(buf, KMS_INTERNAL, "create key: out of memory");
	memcpy(buf, principal, np + 1);
	memcpy(buf + np + 1, ctx->request_id, ni + 1);
	kms__create_key_request__pack(r, buf + np + 1 + ni + 1);
	uint8_t digest[SHA256_DIGEST_LENGTH];
	SHA256(buf, n, digest);
	free(buf);
	for (size_t i = 0; i < sizeof digest; i++)
		snprintf(out + 2 * i, 3, "%02x", digest[i]);
	return KMS_OK;
}

kms_status op_create_key(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__CreateKeyRequest *r = req->create_key;
	key_spec spec;
	key_usage usage;
	key_protection protection;
	KMS_GUARD(op_create_key_kind(r, &spec, &usage, &protection));
	keyring_tag_arg tags[KMS_TAGS_MAX];
	for (size_t i = 0; i < r->n_tags; i++) /* <= 50: validated */
		tags[i] = (keyring_tag_arg){ r->tags[i]->key, r->tags[i]->value };
	keyring_create_args args = {
		.description = r->description,
		.spec = spec,
		.usage = usage,
		.tags = tags,
		.n_tags = r->n_tags,
		.policy = r->policy,
		.rotation_period_days = r->rotation_period_days,
		.alias = r->alias[0] ? r->alias : NULL,
		.protection = protection,
		.per_data_principal = r->per_data_principal,
	};
	char ref[STORE_REQUEST_REF_SIZE];
	KMS_GUARD(request_ref(ctx, r, ref));
	args.request_ref = ref;
	key_metadata m = { 0 };
	Kms__CreateKeyResponse *c;
	OP_ALLOC(ctx, c);
	kms__create_key_response__init(c);
	if (r->policy[0])
		KMS_GUARD(policy_check(r->policy));
	KMS_GUARD(keyring_create_key(ctx->d->keyring, &args, ctx->now, &m));
	KMS_GUARD(metadata_out(ctx, &m, &c->key_metadata));
	resp->create_key = c;
	resp->result_case = KMS__RESPONSE__RESULT_CREATE_KEY;
	return KMS_OK;
}

kms_status op_describe_key(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	key_metadata m = { 0 };
	Kms__DescribeKeyResponse *d;
	OP_ALLOC(ctx, d);
	kms__describe_key_response__init(d);
	KMS_GUARD(authorize_ref(ctx, req->describe_key->key_id));
	KMS_GUARD(keyring_describe(ctx->d->keyring, req->describe_key->key_id, &m));
	KMS_GUARD(metadata_out(ctx, &m, &d->key_metadata));
	resp->describe_key = d;
	resp->result_case = KMS__RESPONSE__RESULT_DESCRIBE_KEY;
	return KMS_OK;
}

kms_status op_list_keys(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__ListKeysRequest *r = req->list_keys;
	key_metadata *keys = NULL;
	size_t n = 0;
	char next[KMS_KEYID_TEXT_SIZE] = "";
	Kms__ListKeysResponse *l;
	OP_ALLOC(ctx, l);
	kms__list_keys_response__init(l);
	KMS_GUARD(keyring_list(ctx->d->keyring, r->limit, r->page_token, &keys, &n, next));
	kms_status st = KMS_OK;
	l->keys = arena_alloc(ctx->arena, (n + 1) * sizeof *l->keys);
	l->next_page_token = arena_strdup(ctx->arena, next);
	if (!l->keys || !l->next_page_token)
		st = KMS_FAIL(KMS_INTERNAL, "out of request memory");
	/* A page ends early when its bytes pass KMS_LIST_REPLY_BUDGET (always
	 * at least one key): the next page starts after its last key. */
	size_t bytes = 0;
	for (size_t i = 0; st == KMS_OK && i < n; i++) {
		st = to_wire(ctx, &keys[i], &l->keys[i]);
		if (st != KMS_OK)
			break;
		bytes += kms__key_metadata__get_packed_size(l->keys[i]) + 6; /* tag, length */
		if (i > 0 && bytes > KMS_LIST_REPLY_BUDGET) {
			l->next_page_token = arena_strdup(ctx->arena, keys[i - 1].key.id);
			if (!l->next_page_token)
				st = KMS_FAIL(KMS_INTERNAL, "out of request memory");
			break;
		}
		l->n_keys++;
	}
	key_metadata_array_free(keys, n);
	KMS_GUARD(st);
	resp->list_keys = l;
	resp->result_case = KMS__RESPONSE__RESULT_LIST_KEYS;
	return KMS_OK;
}

kms_status op_update_key_description(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__UpdateKeyDescriptionRequest *r = req->update_key_description;
	Kms__UpdateKeyDescriptionResponse *u;
	OP_ALLOC(ctx, u);
	kms__update_key_description_response__init(u);
	KMS_GUARD(authorize_ref(ctx, r->key_id));
	KMS_GUARD(keyring_update_description(ctx->d->keyring, r->key_id, r->description));
	resp->update_key_description = u;
	resp->result_case = KMS__RESPONSE__RESULT_UPDATE_KEY_DESCRIPTION;
	return KMS_OK;
}

kms_status op_enable_key(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	Kms__EnableKeyResponse *e;
	OP_ALLOC(ctx, e);
	kms__enable_key_response__init(e);
	KMS_GUARD(authorize_ref(ctx, req->enable_key->key_id));
	KMS_GUARD(keyring_enable(ctx->d->keyring, req->enable_key->key_id));
	resp->enable_key = e;
	resp->result_case = KMS__RESPONSE__RESULT_ENABLE_KEY;
	return KMS_OK;
}

kms_status op_disable_key(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	Kms__DisableKeyResponse *d;
	OP_ALLOC(ctx, d);
	kms__disable_key_response__init(d);
	KMS_GUARD(authorize_ref(ctx, req->disable_key->key_id));
	KMS_GUARD(keyring_disable(ctx->d->keyring, req->disable_key->key_id));
	resp->disable_key = d;
	resp->result_case = KMS__RESPONSE__RESULT_DISABLE_KEY;
	return KMS_OK;
}

kms_status op_rotate_key(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	key_metadata m = { 0 };
	Kms__RotateKeyResponse *r;
	OP_ALLOC(ctx, r);
	kms__rotate_key_response__init(r);
	KMS_GUARD(authorize_ref(ctx, req->rotate_key->key_id));
	KMS_GUARD(keyring_rotate(ctx->d->keyring, req->rotate_key->key_id, ctx->now, &m));
	KMS_GUARD(metadata_out(ctx, &m, &r->key_metadata));
	resp->rotate_key = r;
	resp->result_case = KMS__RESPONSE__RESULT_ROTATE_KEY;
	return KMS_OK;
}

kms_status op_set_rotation_period(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__SetRotationPeriodRequest *r = req->set_rotation_period;
	key_metadata m = { 0 };
	Kms__SetRotationPeriodResponse *s;
	OP_ALLOC(ctx, s);
	kms__set_rotation_period_response__init(s);
	KMS_GUARD(authorize_ref(ctx, r->key_id));
	KMS_GUARD(keyring_set_rotation_period(ctx->d->keyring, r->key_id, r->rotation_period_days,
	                                      ctx->now, &m));
	KMS_GUARD(metadata_out(ctx, &m, &s->key_metadata));
	resp->set_rotation_period = s;
	resp->result_case = KMS__RESPONSE__RESULT_SET_ROTATION_PERIOD;
	return KMS_OK;
}

kms_status op_schedule_key_deletion(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__ScheduleKeyDeletionRequest *r = req->schedule_key_deletion;
	store_key k;
	Kms__ScheduleKeyDeletionResponse *s;
	OP_ALLOC(ctx, s);
	kms__schedule_key_deletion_response__init(s);
	KMS_GUARD(authorize_ref(ctx, r->key_id));
	KMS_GUARD(keyring_schedule_deletion(ctx->d->keyring, r->key_id, r->pending_window_days,
	                                    ctx->now, &k));
	s->key_id = arena_strdup(ctx->arena, k.id);
	KMS_ENSURE(s->key_id, KMS_INTERNAL, "out of request memory");
	s->deletion_date = k.deletion_date;
	s->key_state = (Kms__KeyState)k.state;
	resp->schedule_key_deletion = s;
	resp->result_case = KMS__RESPONSE__RESULT_SCHEDULE_KEY_DELETION;
	return KMS_OK;
}

kms_status op_cancel_key_deletion(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	store_key k;
	Kms__CancelKeyDeletionResponse *c;
	OP_ALLOC(ctx, c);
	kms__cancel_key_deletion_response__init(c);
	KMS_GUARD(authorize_ref(ctx, req->cancel_key_deletion->key_id));
	KMS_GUARD(keyring_cancel_deletion(ctx->d->keyring, req->cancel_key_deletion->key_id, &k));
	c->key_id = arena_strdup(ctx->arena, k.id);
	KMS_ENSURE(c->key_id, KMS_INTERNAL, "out of request memory");
	c->key_state = (Kms__KeyState)k.state;
	resp->cancel_key_deletion = c;
	resp->result_case = KMS__RESPONSE__RESULT_CANCEL_KEY_DELETION;
	return KMS_OK;
}

/* The key's own policy, or, when it has none, the default that applies to
 * it (is_default set): never "", so a caller sees what is enforced. */
kms_status op_get_key_policy(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	char *policy = NULL;
	char key_id[KMS_KEYID_TEXT_SIZE];
	Kms__GetKeyPolicyResponse *g;
	OP_ALLOC(ctx, g);
	kms__get_key_policy_response__init(g);
	KMS_GUARD(op_authorize_ref(ctx, req->get_key_policy->key_id, NULL, 0, key_id));
	KMS_GUARD(keyring_policy_get(ctx->d->keyring, key_id, &policy));
	g->is_default = !policy || !policy[0];
	g->policy = arena_strdup(ctx->arena, g->is_default
	                                             ? authz_enforce_default_policy_text(ctx->d->authz)
	                                             : policy);
	free(policy);
	KMS_ENSURE(g->policy, KMS_INTERNAL, "out of request memory");
	resp->get_key_policy = g;
	resp->result_case = KMS__RESPONSE__RESULT_GET_KEY_POLICY;
	return KMS_OK;
}

kms_status op_put_key_policy(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__PutKeyPolicyRequest *r = req->put_key_policy;
	Kms__PutKeyPolicyResponse *p;
	OP_ALLOC(ctx, p);
	kms__put_key_policy_response__init(p);
	/* Who may, before the document is read: a caller the key's policy
	 * refuses learns nothing from the parser. */
	KMS_GUARD(authorize_ref(ctx, r->key_id));
	KMS_GUARD(policy_check(r->policy));
	KMS_GUARD(keyring_policy_put(ctx->d->keyring, r->key_id, r->policy));
	resp->put_key_policy = p;
	resp->result_case = KMS__RESPONSE__RESULT_PUT_KEY_POLICY;
	return KMS_OK;
}

kms_status op_tag_key(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__TagKeyRequest *r = req->tag_key;
	keyring_tag_arg tags[KMS_TAGS_MAX];
	for (size_t i = 0; i < r->n_tags; i++) /* <= 50: validated */
		tags[i] = (keyring_tag_arg){ r->tags[i]->key, r->tags[i]->value };
	Kms__TagKeyResponse *t;
	OP_ALLOC(ctx, t);
	kms__tag_key_response__init(t);
	KMS_GUARD(authorize_ref(ctx, r->key_id));
	KMS_GUARD(keyring_tag(ctx->d->keyring, r->key_id, tags, r->n_tags));
	resp->tag_key = t;
	resp->result_case = KMS__RESPONSE__RESULT_TAG_KEY;
	return KMS_OK;
}

kms_status op_untag_key(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__UntagKeyRequest *r = req->untag_key;
	Kms__UntagKeyResponse *u;
	OP_ALLOC(ctx, u);
	kms__untag_key_response__init(u);
	KMS_GUARD(authorize_ref(ctx, r->key_id));
	size_t removed;
	KMS_GUARD(keyring_untag(ctx->d->keyring, r->key_id, (const char *const *)r->tag_keys,
	                        r->n_tag_keys, &removed));
	u->removed_count_case = KMS__UNTAG_KEY_RESPONSE__REMOVED_COUNT_REMOVED;
	u->removed = (uint32_t)removed; /* at most KMS_TAGS_MAX */
	resp->untag_key = u;
	resp->result_case = KMS__RESPONSE__RESULT_UNTAG_KEY;
	return KMS_OK;
}
