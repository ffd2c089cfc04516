/*
 * op_mac.c: GenerateMac, VerifyMac and Pseudonymize (docs/signing.md,
 * docs/pseudonyms.md). Every MAC is computed in the HSM with a cached,
 * unwrapped HMAC-SHA256 version; a MAC to verify is compared in constant
 * time here.
 */
#include <string.h>

#include <openssl/crypto.h>

#include "common/context.h"
#include "common/error.h"
#include <kms/secmem.h>
#include "common/pseudonym.h"
#include "kms/keys/keyring.h"
#include "kms/pipeline/ops.h"
#include "kms/pipeline/records.h"

/* VerifyMac with no version tries at most this many active versions, the
 * primary first, then the newest: each is an HMAC in the HSM. */
#define VERIFY_MAC_VERSIONS_MAX 16

static kms_status mac_message_allowed(const keyring_key_use *use, ProtobufCBinaryData message)
{
	KMS_ENSURE(!pseudonym_domain_prefixed(message.data, message.len), KMS_INVALID_ARGUMENT,
	           "a message to MAC with key %s must not begin with the pseudonym prefix "
	           "\"kms-pseudonym-v1\": pseudonyms are made by Pseudonymize only",
	           use->key_id_text);
	return KMS_OK;
}

kms_status op_generate_mac(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__GenerateMacRequest *r = req->generate_mac;
	char key_id[KMS_KEYID_TEXT_SIZE];
	keyring_key_use use;
	uint8_t mac[HSM_HMAC_SHA256_LEN];
	KMS_GUARD(op_authorize_ref(ctx, r->key_id, NULL, 0, key_id));
	/* Sent again: the version its first run used (records.h). */
	uint32_t version = ctx->record.again ? ctx->record.version : r->key_version;
	KMS_GUARD(keyring_use_key(ctx->d->keyring, key_id, KEY_USAGE_GENERATE_VERIFY_MAC,
	                          "GenerateMac", version, &use));
	op_note_key(ctx, use.key_id_text, use.version);
	KMS_GUARD(mac_message_allowed(&use, r->message));
	KMS_GUARD(keyring_hmac(ctx->d->keyring, &use, r->message.data, r->message.len, mac));
	uint8_t *reply_mac = arena_memdup(ctx->arena, mac, sizeof mac); /* wiped with the arena */
	kms_wipe(mac, sizeof mac);
	KMS_ENSURE(reply_mac, KMS_INTERNAL, "out of request memory");

	Kms__GenerateMacResponse *g;
	OP_ALLOC(ctx, g);
	kms__generate_mac_response__init(g);
	g->mac.data = reply_mac;
	g->mac.len = sizeof mac;
	g->key_id = arena_strdup(ctx->arena, use.key_id_text);
	KMS_ENSURE(g->mac.data && g->key_id, KMS_INTERNAL, "out of request memory");
	g->key_version = use.version;
	g->mac_algorithm = KMS__MAC_ALGORITHM__MAC_HMAC_SHA_256;
	resp->generate_mac = g;
	resp->result_case = KMS__RESPONSE__RESULT_GENERATE_MAC;
	return records_answer(ctx, &use, resp);
}

kms_status op_verify_mac(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__VerifyMacRequest *r = req->verify_mac;
	char key_id[KMS_KEYID_TEXT_SIZE];
	keyring_key_use use;
	uint32_t versions[VERIFY_MAC_VERSIONS_MAX];
	size_t n = 0;
	uint32_t matched = 0;
	KMS_GUARD(op_authorize_ref(ctx, r->key_id, NULL, 0, key_id));
	KMS_GUARD(keyring_use_key(ctx->d->keyring, key_id, KEY_USAGE_GENERATE_VERIFY_MAC,
	                          "VerifyMac", r->key_version, &use));
	KMS_GUARD(mac_message_allowed(&use, r->message));
	if (r->key_version) {
		versions[n++] = r->key_version;
	} else {
		KMS_GUARD(keyring_active_versions(ctx->d->keyring, use.key_id, versions,
		                                  VERIFY_MAC_VERSIONS_MAX, &n));
	}
	for (size_t i = 0; i < n && !matched; i++) {
		uint8_t mac[HSM_HMAC_SHA256_LEN];
		KMS_GUARD(keyring_use_key(ctx->d->keyring, key_id, KEY_USAGE_GENERATE_VERIFY_MAC,
		                          "VerifyMac", versions[i], &use));
		KMS_GUARD(keyring_hmac(ctx->d->keyring, &use, r->message.data, r->message.len, mac));
		/* The length is public (validated: 32); the bytes are compared in
		 * constant time. */
		if (r->mac.len == sizeof mac && CRYPTO_memcmp(mac, r->mac.data, sizeof mac) == 0)
			matched = use.version;
		kms_wipe(mac, sizeof mac);
	}
	op_note_key(ctx, use.key_id_text, matched);
	ctx->audit.verdict = matched ? "valid" : "invalid";

	Kms__VerifyMacResponse *v;
	OP_ALLOC(ctx, v);
	kms__verify_mac_response__init(v);
	v->mac_valid = matched != 0;
	v->key_id = arena_strdup(ctx->arena, use.key_id_text);
	KMS_ENSURE(v->key_id, KMS_INTERNAL, "out of request memory");
	v->key_version = matched;
	v->mac_algorithm = KMS__MAC_ALGORITHM__MAC_HMAC_SHA_256;
	resp->verify_mac = v;
	resp->result_case = KMS__RESPONSE__RESULT_VERIFY_MAC;
	return KMS_OK;
}

/* The request's context in canonical form (arena memory), encoded once for
 * all of its values. */
static kms_status encode_context(op_ctx *ctx, Kms__StringPair *const *pairs, size_t n,
                                 uint8_t **out, size_t *out_len)
{
	context_pair view[KMS_CONTEXT_MAX_PAIRS];
	size_t size = 0;
	KMS_GUARD(context_check_count(n));
	for (size_t i = 0; i < n; i++)
		view[i] = context_pair_from_cstr(pairs[i]->key, pairs[i]->value);
	KMS_GUARD(context_encoded_size(view, n, &size));
	*out = arena_alloc(ctx->arena, size);
	KMS_ENSURE(*out, KMS_INTERNAL, "out of request memory");
	return context_encode(view, n, *out, size, out_len);
}

kms_status op_pseudonymize(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__PseudonymizeRequest *r = req->pseudonymize;
	char key_id[KMS_KEYID_TEXT_SIZE];
	keyring_key_use use;
	uint8_t *context = NULL;
	size_t context_len = 0;
	KMS_GUARD(op_authorize_ref(ctx, r->key_id, r->context, r->n_context, key_id));
	uint32_t version = ctx->record.again ? ctx->record.version : r->key_version;
	KMS_GUARD(keyring_use_key(ctx->d->keyring, key_id, KEY_USAGE_GENERATE_VERIFY_MAC,
	                          "Pseudonymize", version, &use));
	op_note_key(ctx, use.key_id_text, use.version);
	KMS_GUARD(encode_context(ctx, r->context, r->n_context, &context, &context_len));

	Kms__PseudonymizeResponse *p;
	OP_ALLOC(ctx, p);
	kms__pseudonymize_response__init(p);
	size_t cap = pseudonym_message_len(context_len, KMS_PSEUDONYM_VALUE_MAX);
	uint8_t *message = arena_alloc(ctx->arena, cap);
	p->pseudonyms = arena_alloc(ctx->arena, r->n_values * sizeof *p->pseudonyms);
	KMS_ENSURE(cap && message && p->pseudonyms, KMS_INTERNAL, "out of request memory");
	kms_status status = KMS_OK;
	for (size_t i = 0; i < r->n_values && status == KMS_OK; i++) {
		uint8_t mac[HSM_HMAC_SHA256_LEN];
		size_t len = 0;
		char *text = arena_alloc(ctx->arena, KMS_PSEUDONYM_TEXT_SIZE);
		status = text ? KMS_OK : KMS_FAIL(KMS_INTERNAL, "out of request memory");
		if (status == KMS_OK)
			status = pseudonym_message_encoded(context, context_len, r->values[i].data,
			                                   r->values[i].len, message, cap, &len);
		if (status == KMS_OK)
			status = keyring_hmac(ctx->d->keyring, &use, message, len, mac);
		if (status == KMS_OK)
			status = pseudonym_format(use.key_id_text, use.version, mac, text);
		kms_wipe(mac, sizeof mac);
		p->pseudonyms[i] = text;
	}
	kms_wipe(message, cap); /* it held a person's identifier */
	KMS_GUARD(status);
	p->n_pseudonyms = r->n_values;
	p->key_id = arena_strdup(ctx->arena, use.key_id_text);
	KMS_ENSURE(p->key_id, KMS_INTERNAL, "out of request memory");
	p->key_version = use.version;
	resp->pseudonymize = p;
	resp->result_case = KMS__RESPONSE__RESULT_PSEUDONYMIZE;
	return records_answer(ctx, &use, resp);
}
