/*
 * ops.c: the operation table, each operation's request validator, and the
 * readers of the table's audit and batch columns. Validation happens here,
 * before any handler runs (a batch's items: in the handler, one by one, with
 * the row's item validator): sizes, formats, enums and map sizes. Handlers
 * may then trust the shapes (not the meanings).
 */
#include "kms/pipeline/ops.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "common/pseudonym.h"
#include "kms/format/authz_names.h"
#include "kms/pipeline/validate.h"
#include "kms/consent/consent_artefact.h"
#include "kms/store/store_consents.h"

/* Item validators take the generic message so that a batch row can name
 * one (op_validate_item_fn); the single operations pass their own. */
static kms_status v_encrypt_item(const ProtobufCMessage *item)
{
	const Kms__EncryptRequest *r = (const Kms__EncryptRequest *)item;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "encrypt: the operation message is missing");
	KMS_GUARD(validate_key_ref("key_id", r->key_id));
	KMS_GUARD(validate_plaintext("plaintext", r->plaintext));
	return validate_context("encryption_context", r->n_encryption_context,
	                        r->encryption_context);
}

static kms_status v_decrypt_item(const ProtobufCMessage *item)
{
	const Kms__DecryptRequest *r = (const Kms__DecryptRequest *)item;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "decrypt: the operation message is missing");
	KMS_GUARD(validate_blob_size("ciphertext_blob", r->ciphertext_blob));
	if (r->key_id[0])
		KMS_GUARD(validate_key_ref("key_id", r->key_id));
	return validate_context("encryption_context", r->n_encryption_context,
	                        r->encryption_context);
}

static kms_status v_gdk_item(const ProtobufCMessage *item)
{
	const Kms__GenerateDataKeyRequest *r = (const Kms__GenerateDataKeyRequest *)item;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "generate_data_key: the operation message is missing");
	KMS_GUARD(validate_key_ref("key_id", r->key_id));
	return validate_context("encryption_context", r->n_encryption_context,
	                        r->encryption_context);
}

static kms_status v_encrypt(const Kms__Request *req)
{
	return v_encrypt_item((const ProtobufCMessage *)req->encrypt);
}

static kms_status v_decrypt(const Kms__Request *req)
{
	return v_decrypt_item((const ProtobufCMessage *)req->decrypt);
}

static kms_status v_re_encrypt(const Kms__Request *req)
{
	const Kms__ReEncryptRequest *r = req->re_encrypt;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "re_encrypt: the operation message is missing");
	KMS_GUARD(validate_blob_size("ciphertext_blob", r->ciphertext_blob));
	if (r->destination_key_id[0])
		KMS_GUARD(validate_key_ref("destination_key_id", r->destination_key_id));
	KMS_GUARD(validate_context("source_encryption_context", r->n_source_encryption_context,
	                           r->source_encryption_context));
	return validate_context("destination_encryption_context",
	                        r->n_destination_encryption_context,
	                        r->destination_encryption_context);
}

static kms_status v_gdk(const Kms__Request *req)
{
	return v_gdk_item((const ProtobufCMessage *)req->generate_data_key);
}

static kms_status v_gdk_without_plaintext(const Kms__Request *req)
{
	const Kms__GenerateDataKeyWithoutPlaintextRequest *r =
	        req->generate_data_key_without_plaintext;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "the operation message is missing");
	KMS_GUARD(validate_key_ref("key_id", r->key_id));
	return validate_context("encryption_context", r->n_encryption_context,
	                        r->encryption_context);
}

static kms_status v_random(const Kms__Request *req)
{
	const Kms__GenerateRandomRequest *r = req->generate_random;
	KMS_ENSURE(r && r->number_of_bytes >= 1 && r->number_of_bytes <= KMS_GENERATE_RANDOM_MAX,
	           KMS_INVALID_ARGUMENT, "number_of_bytes must be 1 to %d", KMS_GENERATE_RANDOM_MAX);
	return KMS_OK;
}

/* ---- signing, MACs, pseudonyms ---- */

/* A message to sign or verify: MESSAGE_RAW 1..4096 bytes, MESSAGE_DIGEST a
 * 32-byte SHA-256; the enums known. */
static kms_status v_sign_input(const char *op, const char *key_id, ProtobufCBinaryData message,
                               Kms__MessageType type, Kms__SigningAlgorithm alg)
{
	KMS_GUARD(validate_key_ref("key_id", key_id));
	KMS_ENSURE(type >= KMS__MESSAGE_TYPE__MESSAGE_TYPE_UNSPECIFIED &&
	                   type <= KMS__MESSAGE_TYPE__MESSAGE_DIGEST,
	           KMS_INVALID_ARGUMENT, "%s: message_type %d is not MESSAGE_RAW or MESSAGE_DIGEST",
	           op, (int)type);
	KMS_ENSURE(alg >= KMS__SIGNING_ALGORITHM__SIGNING_ALGORITHM_UNSPECIFIED &&
	                   alg <= KMS__SIGNING_ALGORITHM__SIGNING_ECDSA_SHA_256,
	           KMS_INVALID_ARGUMENT,
	           "%s: signing_algorithm %d is not SIGNING_ED25519 or SIGNING_ECDSA_SHA_256", op,
	           (int)alg);
	if (type == KMS__MESSAGE_TYPE__MESSAGE_DIGEST)
		KMS_ENSURE(message.len == KMS_SIGN_DIGEST_LEN, KMS_INVALID_ARGUMENT,
		           "%s: a MESSAGE_DIGEST is a SHA-256 digest of %d bytes, not %zu", op,
		           KMS_SIGN_DIGEST_LEN, message.len);
	else
		KMS_ENSURE(message.len >= 1 && message.len <= KMS_SIGN_MESSAGE_MAX,
		           KMS_INVALID_ARGUMENT,
		           "%s: message is %zu bytes: it must be 1 to %d (sign a larger one's SHA-256 "
		           "digest with MESSAGE_DIGEST)", op, message.len, KMS_SIGN_MESSAGE_MAX);
	return KMS_OK;
}

static kms_status v_sign(const Kms__Request *req)
{
	const Kms__SignRequest *r = req->sign;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "sign: the operation message is missing");
	return v_sign_input("sign", r->key_id, r->message, r->message_type, r->signing_algorithm);
}

static kms_status v_verify(const Kms__Request *req)
{
	const Kms__VerifyRequest *r = req->verify;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "verify: the operation message is missing");
	KMS_GUARD(v_sign_input("verify", r->key_id, r->message, r->message_type,
	                       r->signing_algorithm));
	KMS_ENSURE(r->signature.len >= 1 && r->signature.len <= KMS_SIGNATURE_MAX,
	           KMS_INVALID_ARGUMENT, "verify: signature is %zu bytes: it must be 1 to %d",
	           r->signature.len, KMS_SIGNATURE_MAX);
	return KMS_OK;
}

static kms_status v_get_public_key(const Kms__Request *req)
{
	KMS_ENSURE(req->get_public_key, KMS_INVALID_ARGUMENT,
	           "get_public_key: the operation message is missing");
	return validate_key_ref("key_id", req->get_public_key->key_id);
}

static kms_status v_mac_input(const char *op, const char *key_id, ProtobufCBinaryData message,
                              Kms__MacAlgorithm alg)
{
	KMS_GUARD(validate_key_ref("key_id", key_id));
	KMS_ENSURE(message.len >= 1 && message.len <= KMS_SIGN_MESSAGE_MAX, KMS_INVALID_ARGUMENT,
	           "%s: message is %zu bytes: it must be 1 to %d", op, message.len,
	           KMS_SIGN_MESSAGE_MAX);
	KMS_ENSURE(alg == KMS__MAC_ALGORITHM__MAC_ALGORITHM_UNSPECIFIED ||
	                   alg == KMS__MAC_ALGORITHM__MAC_HMAC_SHA_256,
	           KMS_INVALID_ARGUMENT, "%s: mac_algorithm %d is not MAC_HMAC_SHA_256", op,
	           (int)alg);
	return KMS_OK;
}

static kms_status v_generate_mac(const Kms__Request *req)
{
	const Kms__GenerateMacRequest *r = req->generate_mac;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "generate_mac: the operation message is missing");
	return v_mac_input("generate_mac", r->key_id, r->message, r->mac_algorithm);
}

static kms_status v_verify_mac(const Kms__Request *req)
{
	const Kms__VerifyMacRequest *r = req->verify_mac;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "verify_mac: the operation message is missing");
	KMS_GUARD(v_mac_input("verify_mac", r->key_id, r->message, r->mac_algorithm));
	KMS_ENSURE(r->mac.len == KMS_MAC_LEN, KMS_INVALID_ARGUMENT,
	           "verify_mac: mac is %zu bytes: an HMAC-SHA256 is %d", r->mac.len, KMS_MAC_LEN);
	return KMS_OK;
}

static kms_status v_pseudonymize(const Kms__Request *req)
{
	const Kms__PseudonymizeRequest *r = req->pseudonymize;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "pseudonymize: the operation message is missing");
	KMS_GUARD(validate_key_ref("key_id", r->key_id));
	KMS_GUARD(validate_context("context", r->n_context, r->context));
	KMS_ENSURE(r->n_values >= 1 && r->n_values <= KMS_PSEUDONYM_VALUES_MAX,
	           KMS_INVALID_ARGUMENT, "pseudonymize: %zu values: a request holds 1 to %d",
	           r->n_values, KMS_PSEUDONYM_VALUES_MAX);
	for (size_t i = 0; i < r->n_values; i++)
		KMS_ENSURE(r->values[i].len >= 1 && r->values[i].len <= KMS_PSEUDONYM_VALUE_MAX,
		           KMS_INVALID_ARGUMENT,
		           "pseudonymize: value %zu is %zu bytes: each is 1 to %d", i + 1,
		           r->values[i].len, KMS_PSEUDONYM_VALUE_MAX);
	return KMS_OK;
}

#define BATCH_COUNT_OK(r, field)                                                       \
	KMS_ENSURE((r) && (r)->n_items >= 1 && (r)->n_items <= KMS_BATCH_MAX,          \
	           KMS_INVALID_ARGUMENT, "%s: a batch holds 1 to %d items", field,     \
	           KMS_BATCH_MAX)

/* A batch's items are validated one by one in the handler, with the row's
 * validate_item, so that one bad item fails alone; here only the batch's
 * own shape. */
static kms_status v_batch_encrypt(const Kms__Request *req)
{
	BATCH_COUNT_OK(req->batch_encrypt, "batch_encrypt");
	return KMS_OK;
}

static kms_status v_batch_decrypt(const Kms__Request *req)
{
	BATCH_COUNT_OK(req->batch_decrypt, "batch_decrypt");
	return KMS_OK;
}

static kms_status v_batch_gdk(const Kms__Request *req)
{
	BATCH_COUNT_OK(req->batch_generate_data_key, "batch_generate_data_key");
	return KMS_OK;
}

/* Operations whose message is just { string key_id = 1; }. */
static kms_status v_describe_key(const Kms__Request *req)
{
	KMS_ENSURE(req->describe_key, KMS_INVALID_ARGUMENT,
	           "describe_key: the operation message is missing");
	return validate_key_ref("key_id", req->describe_key->key_id);
}

static kms_status v_enable_key(const Kms__Request *req)
{
	KMS_ENSURE(req->enable_key, KMS_INVALID_ARGUMENT,
	           "enable_key: the operation message is missing");
	return validate_key_ref("key_id", req->enable_key->key_id);
}

static kms_status v_disable_key(const Kms__Request *req)
{
	KMS_ENSURE(req->disable_key, KMS_INVALID_ARGUMENT,
	           "disable_key: the operation message is missing");
	return validate_key_ref("key_id", req->disable_key->key_id);
}

static kms_status v_rotate_key(const Kms__Request *req)
{
	KMS_ENSURE(req->rotate_key, KMS_INVALID_ARGUMENT,
	           "rotate_key: the operation message is missing");
	return validate_key_ref("key_id", req->rotate_key->key_id);
}

static kms_status v_cancel_key_deletion(const Kms__Request *req)
{
	KMS_ENSURE(req->cancel_key_deletion, KMS_INVALID_ARGUMENT,
	           "cancel_key_deletion: the operation message is missing");
	return validate_key_ref("key_id", req->cancel_key_deletion->key_id);
}

static kms_status v_get_key_policy(const Kms__Request *req)
{
	KMS_ENSURE(req->get_key_policy, KMS_INVALID_ARGUMENT,
	           "get_key_policy: the operation message is missing");
	return validate_key_ref("key_id", req->get_key_policy->key_id);
}

static kms_status v_create_key(const Kms__Request *req)
{
	const Kms__CreateKeyRequest *r = req->create_key;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "create_key: the operation message is missing");
	KMS_GUARD(validate_utf8("description", r->description, KMS_DESCRIPTION_MAX));
	key_spec spec;
	key_usage usage;
	key_protection protection;
	KMS_GUARD(op_create_key_kind(r, &spec, &usage, &protection));
	KMS_GUARD(validate_tags(r->n_tags, r->tags));
	KMS_ENSURE(strlen(r->policy) <= KMS_POLICY_MAX, KMS_INVALID_ARGUMENT,
	           "policy is larger than %u bytes", KMS_POLICY_MAX);
	KMS_GUARD(validate_rotation_days(r->rotation_period_days));
	if (r->alias[0])
		KMS_GUARD(validate_alias("alias", r->alias));
	return KMS_OK;
}

static kms_status v_list_keys(const Kms__Request *req)
{
	const Kms__ListKeysRequest *r = req->list_keys;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "list_keys: the operation message is missing");
	return validate_list(r->limit, r->page_token);
}

static kms_status v_update_key_description(const Kms__Request *req)
{
	const Kms__UpdateKeyDescriptionRequest *r = req->update_key_description;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "the operation message is missing");
	KMS_GUARD(validate_key_ref("key_id", r->key_id));
	return validate_utf8("description", r->description, KMS_DESCRIPTION_MAX);
}

static kms_status v_set_rotation_period(const Kms__Request *req)
{
	const Kms__SetRotationPeriodRequest *r = req->set_rotation_period;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "the operation message is missing");
	KMS_GUARD(validate_key_ref("key_id", r->key_id));
	return validate_rotation_days(r->rotation_period_days);
}

static kms_status v_schedule_key_deletion(const Kms__Request *req)
{
	const Kms__ScheduleKeyDeletionRequest *r = req->schedule_key_deletion;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "the operation message is missing");
	KMS_GUARD(validate_key_ref("key_id", r->key_id));
	KMS_ENSURE(r->pending_window_days == 0 ||
	           (r->pending_window_days >= KMS_DELETION_DAYS_MIN &&
	            r->pending_window_days <= KMS_DELETION_DAYS_MAX), KMS_INVALID_ARGUMENT,
	           "pending_window_days is %u: use %d to %d (0 means %d)", r->pending_window_days,
	           KMS_DELETION_DAYS_MIN, KMS_DELETION_DAYS_MAX, KMS_DELETION_DAYS_MAX);
	return KMS_OK;
}

static kms_status v_put_key_policy(const Kms__Request *req)
{
	const Kms__PutKeyPolicyRequest *r = req->put_key_policy;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "the operation message is missing");
	KMS_GUARD(validate_key_ref("key_id", r->key_id));
	KMS_ENSURE(r->policy[0] && strlen(r->policy) <= KMS_POLICY_MAX, KMS_INVALID_ARGUMENT,
	           "policy must be 1 to %u bytes of JSON", KMS_POLICY_MAX);
	return KMS_OK;
}

static kms_status v_tag_key(const Kms__Request *req)
{
	const Kms__TagKeyRequest *r = req->tag_key;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "the operation message is missing");
	KMS_GUARD(validate_key_ref("key_id", r->key_id));
	KMS_ENSURE(r->n_tags >= 1, KMS_INVALID_ARGUMENT, "tags: give at least one");
	return validate_tags(r->n_tags, r->tags);
}

static kms_status v_untag_key(const Kms__Request *req)
{
	const Kms__UntagKeyRequest *r = req->untag_key;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "the operation message is missing");
	KMS_GUARD(validate_key_ref("key_id", r->key_id));
	KMS_ENSURE(r->n_tag_keys >= 1 && r->n_tag_keys <= KMS_TAGS_MAX, KMS_INVALID_ARGUMENT,
	           "tag_keys: give 1 to %d", KMS_TAGS_MAX);
	for (size_t i = 0; i < r->n_tag_keys; i++)
		KMS_GUARD(validate_utf8("tag key", r->tag_keys[i], KMS_TAG_KEY_MAX));
	return KMS_OK;
}

static kms_status v_alias_target(const char *alias, const char *target)
{
	KMS_GUARD(validate_alias("alias_name", alias));
	return validate_key_id("target_key_id", target);
}

static kms_status v_create_alias(const Kms__Request *req)
{
	KMS_ENSURE(req->create_alias, KMS_INVALID_ARGUMENT, "the operation message is missing");
	return v_alias_target(req->create_alias->alias_name, req->create_alias->target_key_id);
}

static kms_status v_update_alias(const Kms__Request *req)
{
	KMS_ENSURE(req->update_alias, KMS_INVALID_ARGUMENT, "the operation message is missing");
	return v_alias_target(req->update_alias->alias_name, req->update_alias->target_key_id);
}

static kms_status v_delete_alias(const Kms__Request *req)
{
	KMS_ENSURE(req->delete_alias, KMS_INVALID_ARGUMENT, "the operation message is missing");
	return validate_alias("alias_name", req->delete_alias->alias_name);
}

static kms_status v_list_aliases(const Kms__Request *req)
{
	const Kms__ListAliasesRequest *r = req->list_aliases;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "the operation message is missing");
	if (r->key_id[0])
		KMS_GUARD(validate_key_ref("key_id", r->key_id));
	return validate_list(r->limit, r->page_token);
}

static kms_status v_inclusion(const Kms__Request *req)
{
	KMS_ENSURE(req->get_inclusion_proof, KMS_INVALID_ARGUMENT, "the operation message is missing");
	const Kms__GetInclusionProofRequest *r = req->get_inclusion_proof;
	KMS_ENSURE(r->tree_size == 0 || r->index < r->tree_size, KMS_INVALID_ARGUMENT,
	           "index %llu is not below tree_size %llu", (unsigned long long)r->index,
	           (unsigned long long)r->tree_size);
	return KMS_OK;
}

static kms_status v_consistency(const Kms__Request *req)
{
	KMS_ENSURE(req->get_consistency_proof, KMS_INVALID_ARGUMENT,
	           "the operation message is missing");
	const Kms__GetConsistencyProofRequest *r = req->get_consistency_proof;
	KMS_ENSURE(r->new_size == 0 || r->old_size <= r->new_size, KMS_INVALID_ARGUMENT,
	           "old_size %llu is above new_size %llu", (unsigned long long)r->old_size,
	           (unsigned long long)r->new_size);
	return KMS_OK;
}

/* ---- consent (docs/consent.md) ---- */

static kms_status v_principal_name(const char *field, const char *name);

static bool cm_id_ok(const char *id)
{
	size_t n = strlen(id);
	if (n < 1 || n > STORE_CM_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= 'A' && id[i] <= 'Z') || (id[i] >= 'a' && id[i] <= 'z') ||
		      (id[i] >= '0' && id[i] <= '9') || id[i] == '.' || id[i] == '_' || id[i] == '-'))
			return false;
	return true;
}

static kms_status v_cm_id(const char *field, const char *id)
{
	KMS_ENSURE(cm_id_ok(id), KMS_INVALID_ARGUMENT,
	           "%s: a Consent Manager id is 1 to %d of [A-Za-z0-9._-]", field, STORE_CM_ID_MAX);
	return KMS_OK;
}

static kms_status v_consent_id(const char *field, const char *id)
{
	KMS_ENSURE(consent_id_valid(id, strlen(id)), KMS_INVALID_ARGUMENT,
	           "%s: a consent id is 1 to %d of [A-Za-z0-9._:-]", field, CONSENT_ID_MAX);
	return KMS_OK;
}

static kms_status v_add_consent_manager(const Kms__Request *req)
{
	const Kms__AddConsentManagerRequest *r = req->add_consent_manager;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "add_consent_manager: the operation message is missing");
	KMS_GUARD(v_cm_id("id", r->id));
	KMS_ENSURE(strlen(r->jwk) >= 2 && strlen(r->jwk) <= CONSENT_JWK_MAX, KMS_INVALID_ARGUMENT,
	           "jwk: a JWK of 2 to %d bytes of JSON", CONSENT_JWK_MAX);
	KMS_GUARD(validate_key_ref("dp_key_id", r->dp_key_id));
	if (r->principal[0])
		KMS_GUARD(v_principal_name("principal", r->principal));
	return KMS_OK;
}

static kms_status v_remove_consent_manager(const Kms__Request *req)
{
	KMS_ENSURE(req->remove_consent_manager, KMS_INVALID_ARGUMENT,
	           "remove_consent_manager: the operation message is missing");
	return v_cm_id("id", req->remove_consent_manager->id);
}

static kms_status v_import_consent(const Kms__Request *req)
{
	const Kms__ImportConsentRequest *r = req->import_consent;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "import_consent: the operation message is missing");
	KMS_ENSURE(r->artefact.len >= 2 && r->artefact.len <= CONSENT_ARTEFACT_MAX,
	           KMS_INVALID_ARGUMENT, "artefact: 2 to %d bytes of JSON", CONSENT_ARTEFACT_MAX);
	return KMS_OK;
}

static kms_status v_set_consent_status(const Kms__Request *req)
{
	const Kms__SetConsentStatusRequest *r = req->set_consent_status;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "set_consent_status: the operation message is missing");
	KMS_GUARD(v_consent_id("consent_id", r->consent_id));
	KMS_ENSURE(r->action >= KMS__CONSENT_ACTION__CONSENT_PAUSE &&
	           r->action <= KMS__CONSENT_ACTION__CONSENT_REVOKE, KMS_INVALID_ARGUMENT,
	           "action: use CONSENT_PAUSE, CONSENT_RESUME or CONSENT_REVOKE");
	return KMS_OK;
}

static kms_status v_list_consents(const Kms__Request *req)
{
	const Kms__ListConsentsRequest *r = req->list_consents;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "list_consents: the operation message is missing");
	KMS_ENSURE(r->limit <= STORE_CONSENTS_PAGE_MAX, KMS_INVALID_ARGUMENT,
	           "limit: 1 to %d (0: 100)", STORE_CONSENTS_PAGE_MAX);
	if (r->page_token[0])
		KMS_GUARD(v_consent_id("page_token", r->page_token));
	if (r->manager[0])
		KMS_GUARD(v_cm_id("manager", r->manager));
	KMS_ENSURE(strlen(r->data_principal) < KMS_PSEUDONYM_TEXT_SIZE, KMS_INVALID_ARGUMENT,
	           "data_principal: a pseudonym of at most %d characters",
	           KMS_PSEUDONYM_TEXT_SIZE - 1);
	KMS_ENSURE(strlen(r->purpose) <= CONSENT_PURPOSE_MAX, KMS_INVALID_ARGUMENT,
	           "purpose: at most %d characters", CONSENT_PURPOSE_MAX);
	KMS_ENSURE(!r->status[0] || !strcmp(r->status, "ACTIVE") || !strcmp(r->status, "PAUSED") ||
	           !strcmp(r->status, "REVOKED"), KMS_INVALID_ARGUMENT,
	           "status: ACTIVE, PAUSED or REVOKED (\"\" for any)");
	return KMS_OK;
}

static kms_status v_describe_consent(const Kms__Request *req)
{
	KMS_ENSURE(req->describe_consent, KMS_INVALID_ARGUMENT,
	           "describe_consent: the operation message is missing");
	return v_consent_id("consent_id", req->describe_consent->consent_id);
}

/* ---- principals, access keys, grants (docs/authorization.md) ---- */

static kms_status v_principal_name(const char *field, const char *name)
{
	if (authz_names_principal_check(name, strlen(name)) != KMS_OK)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "%s: %s", field, kms_error_message());
	return KMS_OK;
}

static kms_status v_id(const char *field, const char *prefix, const char *id)
{
	if (authz_names_id_check(prefix, id, strlen(id)) != KMS_OK)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "%s: %s", field, kms_error_message());
	return KMS_OK;
}

static kms_status v_create_principal(const Kms__Request *req)
{
	const Kms__CreatePrincipalRequest *r = req->create_principal;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "create_principal: the operation message is missing");
	KMS_GUARD(v_principal_name("name", r->name));
	KMS_ENSURE(r->n_roles >= 1 && r->n_roles <= 3, KMS_INVALID_ARGUMENT,
	           "roles: give 1 to 3 of ADMIN, APP, AUDITOR");
	unsigned seen = 0;
	for (size_t i = 0; i < r->n_roles; i++) {
		int role = (int)r->roles[i];
		KMS_ENSURE(role >= KMS__ROLE__ADMIN && role <= KMS__ROLE__AUDITOR,
		           KMS_INVALID_ARGUMENT, "roles[%zu] is %d: use ADMIN, APP or AUDITOR", i, role);
		KMS_ENSURE(!(seen & (1u << role)), KMS_INVALID_ARGUMENT,
		           "roles[%zu] repeats a role: give each role once", i);
		seen |= 1u << role;
	}
	if (r->cert_name[0] &&
	    authz_names_cert_check(r->cert_name, strlen(r->cert_name)) != KMS_OK)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "cert_name: %s", kms_error_message());
	return KMS_OK;
}

static kms_status v_list_principals(const Kms__Request *req)
{
	const Kms__ListPrincipalsRequest *r = req->list_principals;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "list_principals: the operation message is missing");
	KMS_GUARD(validate_list(r->limit, r->page_token));
	if (r->page_token[0])
		KMS_GUARD(v_principal_name("page_token", r->page_token));
	return KMS_OK;
}

/* Operations whose message is just { string name = 1; }. */
#define V_NAMED(fn, field)                                                               \
	static kms_status fn(const Kms__Request *req)                                    \
	{                                                                                \
		KMS_ENSURE(req->field, KMS_INVALID_ARGUMENT,                             \
		           #field ": the operation message is missing");                 \
		return v_principal_name("name", req->field->name);                       \
	}
V_NAMED(v_describe_principal, describe_principal)
V_NAMED(v_enable_principal, enable_principal)
V_NAMED(v_disable_principal, disable_principal)
V_NAMED(v_delete_principal, delete_principal)

static kms_status v_create_access_key(const Kms__Request *req)
{
	KMS_ENSURE(req->create_access_key, KMS_INVALID_ARGUMENT,
	           "create_access_key: the operation message is missing");
	return v_principal_name("principal", req->create_access_key->principal);
}

static kms_status v_list_access_keys(const Kms__Request *req)
{
	const Kms__ListAccessKeysRequest *r = req->list_access_keys;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "list_access_keys: the operation message is missing");
	KMS_GUARD(v_principal_name("principal", r->principal));
	KMS_GUARD(validate_list(r->limit, r->page_token));
	if (r->page_token[0])
		KMS_GUARD(v_id("page_token", AUTHZ_ACCESS_KEY_PREFIX, r->page_token));
	return KMS_OK;
}

static kms_status v_revoke_access_key(const Kms__Request *req)
{
	KMS_ENSURE(req->revoke_access_key, KMS_INVALID_ARGUMENT,
	           "revoke_access_key: the operation message is missing");
	return v_id("access_key_id", AUTHZ_ACCESS_KEY_PREFIX, req->revoke_access_key->access_key_id);
}

static bool ops_grantable(const char *name);

static kms_status v_create_grant(const Kms__Request *req)
{
	const Kms__CreateGrantRequest *r = req->create_grant;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "create_grant: the operation message is missing");
	KMS_GUARD(validate_key_ref("key_id", r->key_id));
	KMS_GUARD(v_principal_name("grantee", r->grantee));
	KMS_ENSURE(r->n_operations >= 1 && r->n_operations <= 16, KMS_INVALID_ARGUMENT,
	           "operations: give 1 to 16 data-plane operation names");
	for (size_t i = 0; i < r->n_operations; i++) {
		KMS_ENSURE(ops_grantable(r->operations[i]), KMS_INVALID_ARGUMENT,
		           "operations[%zu] is not a data-plane operation: a grant allows only "
		           "encrypt, decrypt, re_encrypt, generate_data_key, "
		           "generate_data_key_without_plaintext and the batch_ ones", i);
		for (size_t j = 0; j < i; j++)
			KMS_ENSURE(strcmp(r->operations[i], r->operations[j]), KMS_INVALID_ARGUMENT,
			           "operations[%zu] repeats operations[%zu]: name each once", i, j);
	}
	return validate_context("context", r->n_context, r->context);
}

/* ---- data principals ---- */

static kms_status v_data_principal(const char *dp)
{
	char key_short[KMS_PSEUDONYM_KEY_SHORT_SIZE];
	uint32_t version;
	KMS_ENSURE(strlen(dp) <= KMS_PSEUDONYM_TEXT_MAX &&
	                   pseudonym_parse(dp, key_short, &version) == KMS_OK,
	           KMS_INVALID_ARGUMENT, "data_principal: must be a pseudonym (kp_...): "
	           "pseudonymize the identifier first");
	return KMS_OK;
}

/* A basis or statute: 1..256 bytes of UTF-8, no control character. */
static kms_status v_legal_text(const char *field, const char *s, bool required)
{
	size_t n = strlen(s);
	KMS_ENSURE(n || !required, KMS_INVALID_ARGUMENT, "%s is required", field);
	KMS_GUARD(validate_utf8(field, s, 256));
	for (size_t i = 0; i < n; i++)
		KMS_ENSURE((unsigned char)s[i] >= 0x20 && s[i] != 0x7f, KMS_INVALID_ARGUMENT,
		           "%s: one line, no control characters", field);
	return KMS_OK;
}

static kms_status v_erase_data_principal(const Kms__Request *req)
{
	const Kms__EraseDataPrincipalRequest *r = req->erase_data_principal;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "the operation message is missing");
	KMS_GUARD(validate_key_ref("key_id", r->key_id));
	KMS_GUARD(v_data_principal(r->data_principal));
	return v_legal_text("basis", r->basis, true);
}

static kms_status v_set_data_principal_hold(const Kms__Request *req)
{
	const Kms__SetDataPrincipalHoldRequest *r = req->set_data_principal_hold;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "the operation message is missing");
	KMS_GUARD(validate_key_ref("key_id", r->key_id));
	KMS_GUARD(v_data_principal(r->data_principal));
	return v_legal_text("hold", r->hold, false);
}

static kms_status v_list_due_erasures(const Kms__Request *req)
{
	const Kms__ListDueErasuresRequest *r = req->list_due_erasures;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "the operation message is missing");
	return validate_list(r->limit, r->page_token);
}

static kms_status v_set_retention(const Kms__Request *req)
{
	const Kms__SetRetentionRequest *r = req->set_retention;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "the operation message is missing");
	KMS_GUARD(validate_key_ref("key_id", r->key_id));
	size_t n = strlen(r->purpose);
	bool ok = n >= 1 && n <= STORE_PURPOSE_MAX;
	for (size_t i = 0; ok && i < n; i++) {
		char c = r->purpose[i];
		ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		     c == '.' || c == '_' || c == '-';
	}
	KMS_ENSURE(ok, KMS_INVALID_ARGUMENT, "purpose: must be 1..%d of [A-Za-z0-9._-], e.g. 101",
	           STORE_PURPOSE_MAX);
	KMS_ENSURE(r->days <= STORE_RETENTION_DAYS_MAX, KMS_INVALID_ARGUMENT,
	           "days is %u: use 1 to %d, or 0 to remove the retention", r->days,
	           STORE_RETENTION_DAYS_MAX);
	return KMS_OK;
}

static kms_status v_list_grants(const Kms__Request *req)
{
	const Kms__ListGrantsRequest *r = req->list_grants;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "list_grants: the operation message is missing");
	KMS_ENSURE(r->key_id[0] || r->grantee[0], KMS_INVALID_ARGUMENT,
	           "list_grants: give key_id, grantee or both");
	if (r->key_id[0])
		KMS_GUARD(validate_key_ref("key_id", r->key_id));
	if (r->grantee[0])
		KMS_GUARD(v_principal_name("grantee", r->grantee));
	KMS_GUARD(validate_list(r->limit, r->page_token));
	if (r->page_token[0])
		KMS_GUARD(v_id("page_token", AUTHZ_GRANT_PREFIX, r->page_token));
	return KMS_OK;
}

static kms_status v_retire_grant(const Kms__Request *req)
{
	KMS_ENSURE(req->retire_grant, KMS_INVALID_ARGUMENT,
	           "retire_grant: the operation message is missing");
	return v_id("grant_id", AUTHZ_GRANT_PREFIX, req->retire_grant->grant_id);
}

static kms_status v_revoke_grant(const Kms__Request *req)
{
	KMS_ENSURE(req->revoke_grant, KMS_INVALID_ARGUMENT,
	           "revoke_grant: the operation message is missing");
	return v_id("grant_id", AUTHZ_GRANT_PREFIX, req->revoke_grant->grant_id);
}

/*
 * The audit columns (ops.h, op_audit_fields). Shared by the rows whose
 * messages look alike; the names are kms.proto's, and ops_check_row()
 * (run by the request fuzz target's replay, in every test lane) fails on a
 * name that is not a field of the right type.
 */
static const op_audit_fields audit_none = { 0 };
/* Operations on one key, named by key_id, which the handler notes. */
static const op_audit_fields audit_key = { .key = "key_id", .noted = "key_id" };
/* ListAliases: key_id is a filter; no key is used. */
static const op_audit_fields audit_key_filter = { .key = "key_id" };
/* Create/UpdateAlias name the key only as the alias's target. */
static const op_audit_fields audit_erase = { .key = "key_id", .noted = "key_id",
	                                      .data_principal = "data_principal",
	                                      .basis = "basis" };
static const op_audit_fields audit_hold = { .key = "key_id", .noted = "key_id",
	                                     .data_principal = "data_principal", .hold = "hold" };
static const op_audit_fields audit_alias_target = { .noted = "target_key_id" };
/* Sealing under key_id: Encrypt, GenerateDataKey[WithoutPlaintext]. */
static const op_audit_fields audit_seal = {
	.key = "key_id", .noted = "key_id", .context = "encryption_context",
};
/* Decrypt: the key is the blob's; key_id, when given, is only a check. */
static const op_audit_fields audit_open = {
	.key = "key_id", .context = "encryption_context",
};
/* ReEncrypt: the context recorded is the one the blob was opened with. */
static const op_audit_fields audit_re_encrypt = { .context = "source_encryption_context" };
static const op_audit_fields audit_batch_seal = {
	.items = "items", .key = "key_id", .noted = "key_id", .context = "encryption_context",
};
static const op_audit_fields audit_batch_open = {
	.items = "items", .key = "key_id", .context = "encryption_context",
};

/* Sign, Verify: the message's length and type, never the message. */
static const op_audit_fields audit_sign = {
	.key = "key_id", .noted = "key_id", .message = "message", .message_type = "message_type",
};
/* GenerateMac, VerifyMac: the message's length. */
static const op_audit_fields audit_mac = {
	.key = "key_id", .noted = "key_id", .message = "message",
};
/* Pseudonymize: the context in full, the values' count and total length. */
static const op_audit_fields audit_pseudonymize = {
	.key = "key_id", .noted = "key_id", .context = "context", .message = "values",
};

/* The wire enum and the name from one proto field name, so they agree. */
#define OP(field, upper) .op = KMS__REQUEST__OP_##upper, .name = #field

static const op_entry op_table[] = {
	{ OP(encrypt, ENCRYPT), .role = ROLE_APP, .validate = v_encrypt,
	  .handle = op_encrypt, .audit = &audit_seal },
	{ OP(decrypt, DECRYPT), .role = ROLE_APP, .validate = v_decrypt,
	  .handle = op_decrypt, .audit = &audit_open },
	{ OP(re_encrypt, RE_ENCRYPT), .role = ROLE_APP, .validate = v_re_encrypt,
	  .handle = op_re_encrypt, .audit = &audit_re_encrypt },
	{ OP(generate_data_key, GENERATE_DATA_KEY), .role = ROLE_APP, .validate = v_gdk,
	  .handle = op_generate_data_key, .audit = &audit_seal },
	{ OP(generate_data_key_without_plaintext, GENERATE_DATA_KEY_WITHOUT_PLAINTEXT),
	  .role = ROLE_APP, .validate = v_gdk_without_plaintext,
	  .handle = op_generate_data_key_without_plaintext, .audit = &audit_seal },
	{ OP(generate_random, GENERATE_RANDOM), .role = ROLE_APP, .validate = v_random,
	  .handle = op_generate_random, .audit = &audit_none },
	{ OP(batch_encrypt, BATCH_ENCRYPT), .role = ROLE_APP, .validate = v_batch_encrypt,
	  .validate_item = v_encrypt_item, .handle = op_batch_encrypt,
	  .audit = &audit_batch_seal },
	{ OP(batch_decrypt, BATCH_DECRYPT), .role = ROLE_APP, .validate = v_batch_decrypt,
	  .validate_item = v_decrypt_item, .handle = op_batch_decrypt,
	  .audit = &audit_batch_open },
	{ OP(batch_generate_data_key, BATCH_GENERATE_DATA_KEY), .role = ROLE_APP,
	  .validate = v_batch_gdk, .validate_item = v_gdk_item,
	  .handle = op_batch_generate_data_key, .audit = &audit_batch_seal },
	{ OP(sign, SIGN), .role = ROLE_APP, .validate = v_sign, .handle = op_sign,
	  .audit = &audit_sign },
	{ OP(verify, VERIFY), .role = ROLE_APP, .validate = v_verify, .handle = op_verify,
	  .audit = &audit_sign },
	{ OP(get_public_key, GET_PUBLIC_KEY), .role = ROLE_APP, .validate = v_get_public_key,
	  .handle = op_get_public_key, .audit = &audit_key },
	{ OP(generate_mac, GENERATE_MAC), .role = ROLE_APP, .validate = v_generate_mac,
	  .handle = op_generate_mac, .audit = &audit_mac },
	{ OP(verify_mac, VERIFY_MAC), .role = ROLE_APP, .validate = v_verify_mac,
	  .handle = op_verify_mac, .audit = &audit_mac },
	{ OP(pseudonymize, PSEUDONYMIZE), .role = ROLE_APP, .validate = v_pseudonymize,
	  .handle = op_pseudonymize, .audit = &audit_pseudonymize },

	{ OP(create_key, CREATE_KEY), .role = ROLE_ADMIN, .changes_state = true, .validate = v_create_key,
	  .handle = op_create_key, .audit = &audit_none },
	{ OP(describe_key, DESCRIBE_KEY), .role = ROLE_ADMIN, .validate = v_describe_key,
	  .handle = op_describe_key, .audit = &audit_key },
	{ OP(list_keys, LIST_KEYS), .role = ROLE_ADMIN, .validate = v_list_keys,
	  .handle = op_list_keys, .audit = &audit_none },
	{ OP(update_key_description, UPDATE_KEY_DESCRIPTION), .role = ROLE_ADMIN, .changes_state = true,
	  .validate = v_update_key_description, .handle = op_update_key_description,
	  .audit = &audit_key },
	{ OP(enable_key, ENABLE_KEY), .role = ROLE_ADMIN, .changes_state = true, .validate = v_enable_key,
	  .handle = op_enable_key, .audit = &audit_key },
	{ OP(disable_key, DISABLE_KEY), .role = ROLE_ADMIN, .changes_state = true, .validate = v_disable_key,
	  .handle = op_disable_key, .audit = &audit_key },
	{ OP(rotate_key, ROTATE_KEY), .role = ROLE_ADMIN, .changes_state = true, .validate = v_rotate_key,
	  .handle = op_rotate_key, .audit = &audit_key },
	{ OP(set_rotation_period, SET_ROTATION_PERIOD), .role = ROLE_ADMIN, .changes_state = true,
	  .validate = v_set_rotation_period, .handle = op_set_rotation_period,
	  .audit = &audit_key },
	{ OP(schedule_key_deletion, SCHEDULE_KEY_DELETION), .role = ROLE_ADMIN, .changes_state = true,
	  .validate = v_schedule_key_deletion, .handle = op_schedule_key_deletion,
	  .audit = &audit_key },
	{ OP(cancel_key_deletion, CANCEL_KEY_DELETION), .role = ROLE_ADMIN, .changes_state = true,
	  .validate = v_cancel_key_deletion, .handle = op_cancel_key_deletion,
	  .audit = &audit_key },
	{ OP(create_alias, CREATE_ALIAS), .role = ROLE_ADMIN, .changes_state = true, .validate = v_create_alias,
	  .handle = op_create_alias, .audit = &audit_alias_target },
	{ OP(update_alias, UPDATE_ALIAS), .role = ROLE_ADMIN, .changes_state = true, .validate = v_update_alias,
	  .handle = op_update_alias, .audit = &audit_alias_target },
	{ OP(delete_alias, DELETE_ALIAS), .role = ROLE_ADMIN, .changes_state = true, .validate = v_delete_alias,
	  .handle = op_delete_alias, .audit = &audit_none },
	{ OP(list_aliases, LIST_ALIASES), .role = ROLE_ADMIN, .validate = v_list_aliases,
	  .handle = op_list_aliases, .audit = &audit_key_filter },
	{ OP(get_key_policy, GET_KEY_POLICY), .role = ROLE_ADMIN, .validate = v_get_key_policy,
	  .handle = op_get_key_policy, .audit = &audit_key },
	{ OP(put_key_policy, PUT_KEY_POLICY), .role = ROLE_ADMIN, .changes_state = true, .validate = v_put_key_policy,
	  .handle = op_put_key_policy, .audit = &audit_key },
	{ OP(tag_key, TAG_KEY), .role = ROLE_ADMIN, .changes_state = true, .validate = v_tag_key,
	  .handle = op_tag_key, .audit = &audit_key },
	{ OP(untag_key, UNTAG_KEY), .role = ROLE_ADMIN, .changes_state = true, .validate = v_untag_key,
	  .handle = op_untag_key, .audit = &audit_key },
	{ OP(health, HEALTH), .role = ROLE_ANY, .handle = op_health, .audit = &audit_none },

	{ OP(get_checkpoint, GET_CHECKPOINT), .role = ROLE_AUDITOR,
	  .handle = op_get_checkpoint, .audit = &audit_none },
	{ OP(get_inclusion_proof, GET_INCLUSION_PROOF), .role = ROLE_AUDITOR,
	  .validate = v_inclusion, .handle = op_get_inclusion_proof, .audit = &audit_none },
	{ OP(get_consistency_proof, GET_CONSISTENCY_PROOF), .role = ROLE_AUDITOR,
	  .validate = v_consistency, .handle = op_get_consistency_proof, .audit = &audit_none },

	/* Principals, access keys, grants (op_principals.c, op_grants.c). */
	{ OP(create_principal, CREATE_PRINCIPAL), .role = ROLE_ADMIN, .changes_state = true,
	  .validate = v_create_principal, .handle = op_create_principal, .audit = &audit_none },
	{ OP(list_principals, LIST_PRINCIPALS), .role = ROLE_ADMIN,
	  .validate = v_list_principals, .handle = op_list_principals, .audit = &audit_none },
	{ OP(describe_principal, DESCRIBE_PRINCIPAL), .role = ROLE_ADMIN,
	  .validate = v_describe_principal, .handle = op_describe_principal, .audit = &audit_none },
	{ OP(enable_principal, ENABLE_PRINCIPAL), .role = ROLE_ADMIN, .changes_state = true,
	  .validate = v_enable_principal, .handle = op_enable_principal, .audit = &audit_none },
	{ OP(disable_principal, DISABLE_PRINCIPAL), .role = ROLE_ADMIN, .changes_state = true,
	  .validate = v_disable_principal, .handle = op_disable_principal, .audit = &audit_none },
	{ OP(delete_principal, DELETE_PRINCIPAL), .role = ROLE_ADMIN, .changes_state = true,
	  .validate = v_delete_principal, .handle = op_delete_principal, .audit = &audit_none },
	{ OP(create_access_key, CREATE_ACCESS_KEY), .role = ROLE_ADMIN, .changes_state = true,
	  .validate = v_create_access_key, .handle = op_create_access_key, .audit = &audit_none },
	{ OP(list_access_keys, LIST_ACCESS_KEYS), .role = ROLE_ADMIN,
	  .validate = v_list_access_keys, .handle = op_list_access_keys, .audit = &audit_none },
	{ OP(revoke_access_key, REVOKE_ACCESS_KEY), .role = ROLE_ADMIN, .changes_state = true,
	  .validate = v_revoke_access_key, .handle = op_revoke_access_key, .audit = &audit_none },
	{ OP(create_grant, CREATE_GRANT), .role = ROLE_ADMIN, .changes_state = true,
	  .validate = v_create_grant, .handle = op_create_grant, .audit = &audit_key },
	{ OP(list_grants, LIST_GRANTS), .role = ROLE_ADMIN,
	  .validate = v_list_grants, .handle = op_list_grants, .audit = &audit_key_filter },
	/* Any principal: its handler lets only the grantee or an admin retire. */
	{ OP(retire_grant, RETIRE_GRANT), .role = ROLE_ANY, .changes_state = true,
	  .validate = v_retire_grant, .handle = op_retire_grant, .audit = &audit_none },
	{ OP(revoke_grant, REVOKE_GRANT), .role = ROLE_ADMIN, .changes_state = true,
	  .validate = v_revoke_grant, .handle = op_revoke_grant, .audit = &audit_none },

	/* HSM administration: the KEKs (op_hsm.c). Their messages have no
	 * fields, so nothing to validate. */
	{ OP(list_keks, LIST_KEKS), .role = ROLE_ADMIN, .handle = op_list_keks,
	  .audit = &audit_none },
	{ OP(rotate_kek, ROTATE_KEK), .role = ROLE_ADMIN, .changes_state = true,
	  .handle = op_rotate_kek, .audit = &audit_none },

	/* Consent (op_consent.c, docs/consent.md). Import and status changes
	 * are for an admin or the Consent Manager's bound principal: the
	 * decision admits any known principal and the handler checks. */
	{ OP(add_consent_manager, ADD_CONSENT_MANAGER), .role = ROLE_ADMIN, .changes_state = true,
	  .validate = v_add_consent_manager, .handle = op_add_consent_manager,
	  .audit = &audit_none },
	{ OP(list_consent_managers, LIST_CONSENT_MANAGERS), .role = ROLE_AUDITOR,
	  .handle = op_list_consent_managers, .audit = &audit_none },
	{ OP(remove_consent_manager, REMOVE_CONSENT_MANAGER), .role = ROLE_ADMIN,
	  .changes_state = true, .validate = v_remove_consent_manager,
	  .handle = op_remove_consent_manager, .audit = &audit_none },
	{ OP(import_consent, IMPORT_CONSENT), .role = ROLE_ANY, .changes_state = true,
	  .validate = v_import_consent, .handle = op_import_consent, .audit = &audit_none },
	{ OP(set_consent_status, SET_CONSENT_STATUS), .role = ROLE_ANY, .changes_state = true,
	  .validate = v_set_consent_status, .handle = op_set_consent_status,
	  .audit = &audit_none },
	{ OP(list_consents, LIST_CONSENTS), .role = ROLE_AUDITOR, .validate = v_list_consents,
	  .handle = op_list_consents, .audit = &audit_none },
	{ OP(describe_consent, DESCRIBE_CONSENT), .role = ROLE_AUDITOR,
	  .validate = v_describe_consent, .handle = op_describe_consent, .audit = &audit_none },
	/* Data principals' sub-keys (op_dp.c, docs/data-principals.md). */
	{ OP(erase_data_principal, ERASE_DATA_PRINCIPAL), .role = ROLE_ADMIN, .changes_state = true,
	  .validate = v_erase_data_principal, .handle = op_erase_data_principal,
	  .audit = &audit_erase },
	{ OP(set_data_principal_hold, SET_DATA_PRINCIPAL_HOLD), .role = ROLE_ADMIN,
	  .changes_state = true, .validate = v_set_data_principal_hold,
	  .handle = op_set_data_principal_hold, .audit = &audit_hold },
	{ OP(list_due_erasures, LIST_DUE_ERASURES), .role = ROLE_ADMIN,
	  .validate = v_list_due_erasures, .handle = op_list_due_erasures, .audit = &audit_none },
	{ OP(set_retention, SET_RETENTION), .role = ROLE_ADMIN, .changes_state = true,
	  .validate = v_set_retention, .handle = op_set_retention, .audit = &audit_key },
};

/* Whether a grant may name the operation: the data plane, that is the rows
 * that use a key (role APP with a key column: not generate_random), and
 * re_encrypt, whose two keys come from the blob and destination_key_id and
 * are each decided on their own (so it has no one key column). */
static bool ops_grantable(const char *name)
{
	for (size_t i = 0; i < sizeof op_table / sizeof op_table[0]; i++)
		if (!strcmp(op_table[i].name, name))
			return op_table[i].role == ROLE_APP &&
			       (op_table[i].audit->key || op_table[i].op == KMS__REQUEST__OP_RE_ENCRYPT);
	return false;
}

const op_entry *ops_find(Kms__Request__OpCase op)
{
	for (size_t i = 0; i < sizeof op_table / sizeof op_table[0]; i++)
		if (op_table[i].op == op)
			return &op_table[i];
	return NULL;
}

const op_entry *ops_at(size_t i)
{
	return i < sizeof op_table / sizeof op_table[0] ? &op_table[i] : NULL;
}

size_t ops_index(const op_entry *op)
{
	return (size_t)(op - op_table);
}

void op_note_authz(op_ctx *ctx, const char *decision, const char *reason, const char *detail)
{
	ctx->audit.authz_decision = decision;
	ctx->audit.authz_reason = reason;
	snprintf(ctx->audit.authz_detail, sizeof ctx->audit.authz_detail, "%s",
	         detail ? detail : "");
}

void op_note_key(op_ctx *ctx, const char *key_id, uint32_t key_version)
{
	/* The slot holds any valid reference whole; a cut one could name
	 * another key in the log, so anything longer is recorded as none (the
	 * entry then takes the request's own, validated, reference). */
	if (strlen(key_id) >= sizeof ctx->audit.key_id) {
		ctx->audit.key_id[0] = '\0';
		ctx->audit.key_version = 0;
		return;
	}
	snprintf(ctx->audit.key_id, sizeof ctx->audit.key_id, "%s", key_id);
	ctx->audit.key_version = key_version;
}

void *ops_field_get(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
	void *value;
	memcpy(&value, (const char *)m + f->offset, sizeof value);
	return value;
}

ProtobufCMessage *ops_field_item(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                                 size_t i)
{
	ProtobufCMessage *item;
	memcpy(&item, (const char *)ops_field_get(m, f) + i * sizeof item, sizeof item);
	return item;
}

void ops_field_set(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const void *value)
{
	memcpy((char *)m + f->offset, &value, sizeof value);
}

size_t ops_field_count(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
	size_t n;
	memcpy(&n, (const char *)m + f->quantifier_offset, sizeof n);
	return n;
}

void ops_field_set_count(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, size_t n)
{
	memcpy((char *)m + f->quantifier_offset, &n, sizeof n);
}

void ops_field_set_enum(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, int value)
{
	/* protobuf-c stores every enum as an int-sized member. */
	memcpy((char *)m + f->offset, &value, sizeof value);
}

/* The field `name` of messages of type d, if it has that type and
 * repeatedness; NULL otherwise, and for no name. */
static const ProtobufCFieldDescriptor *field_named(const ProtobufCMessageDescriptor *d,
                                                   const char *name, ProtobufCType type,
                                                   bool repeated)
{
	if (!d || !name)
		return NULL;
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, name);
	if (!f || f->type != type || (f->label == PROTOBUF_C_LABEL_REPEATED) != repeated)
		return NULL;
	return f;
}

static const ProtobufCMessageDescriptor *message_type(const ProtobufCFieldDescriptor *f)
{
	return f && f->type == PROTOBUF_C_TYPE_MESSAGE ? f->descriptor : NULL;
}

/* The Request field that holds op's message. */
static const ProtobufCFieldDescriptor *request_field(const op_entry *op)
{
	return protobuf_c_message_descriptor_get_field(&kms__request__descriptor, (unsigned)op->op);
}

static const char *string_named(const ProtobufCMessage *m, const char *name)
{
	const ProtobufCFieldDescriptor *f =
	        field_named(m->descriptor, name, PROTOBUF_C_TYPE_STRING, false);
	return f ? ops_field_get(m, f) : NULL;
}

/* The message column: a bytes field's length, or a repeated one's count
 * and total length; the enum column by its value's name. */
static void audit_view_message(const ProtobufCMessage *msg, const op_audit_fields *a,
                               op_audit_view *v)
{
	const ProtobufCFieldDescriptor *one =
	        field_named(msg->descriptor, a->message, PROTOBUF_C_TYPE_BYTES, false);
	const ProtobufCFieldDescriptor *many =
	        field_named(msg->descriptor, a->message, PROTOBUF_C_TYPE_BYTES, true);
	if (one) {
		ProtobufCBinaryData b;
		memcpy(&b, (const char *)msg + one->offset, sizeof b);
		v->has_message = true;
		v->message_bytes = b.len;
	} else if (many) {
		const ProtobufCBinaryData *items = ops_field_get(msg, many);
		v->has_message = true;
		v->message_values = ops_field_count(msg, many);
		for (size_t i = 0; items && i < v->message_values; i++)
			v->message_bytes += items[i].len;
	}
	const ProtobufCFieldDescriptor *t =
	        field_named(msg->descriptor, a->message_type, PROTOBUF_C_TYPE_ENUM, false);
	if (t) {
		int value;
		memcpy(&value, (const char *)msg + t->offset, sizeof value);
		const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(t->descriptor,
		                                                                   value);
		v->message_type = ev ? ev->name : "unknown";
	}
}

void ops_audit_view(const Kms__Request *req, op_audit_view *v)
{
	ops_audit_view_item(req, 0, v);
}

void ops_audit_view_item(const Kms__Request *req, size_t i, op_audit_view *v)
{
	memset(v, 0, sizeof *v);
	const op_entry *op = req ? ops_find(req->op_case) : NULL;
	const ProtobufCFieldDescriptor *rf = op ? request_field(op) : NULL;
	if (!message_type(rf))
		return;
	const ProtobufCMessage *msg = ops_field_get(&req->base, rf);
	const op_audit_fields *a = op->audit;
	if (msg && a->items) {
		const ProtobufCFieldDescriptor *items =
		        field_named(msg->descriptor, a->items, PROTOBUF_C_TYPE_MESSAGE, true);
		if (!items)
			return;
		v->batch_items = ops_field_count(msg, items);
		msg = i < v->batch_items ? ops_field_item(msg, items, i) : NULL;
	}
	if (!msg)
		return;
	v->subject = msg;
	v->key = string_named(msg, a->key);
	v->noted = string_named(msg, a->noted);
	const ProtobufCFieldDescriptor *c =
	        field_named(msg->descriptor, a->context, PROTOBUF_C_TYPE_MESSAGE, true);
	if (c && message_type(c) == &kms__string_pair__descriptor) {
		v->context = ops_field_get(msg, c);
		v->n_context = ops_field_count(msg, c);
	}
	audit_view_message(msg, a, v);
	v->data_principal = string_named(msg, a->data_principal);
	v->basis = string_named(msg, a->basis);
	v->hold = string_named(msg, a->hold);
}

kms_status ops_batch_shape(const op_entry *op, op_batch_shape *s)
{
	memset(s, 0, sizeof *s);
	KMS_ENSURE(op->validate_item, KMS_INTERNAL, "%s: a batch needs an item validator",
	           op->name);
	s->request = request_field(op);
	s->items = field_named(message_type(s->request), op->audit->items,
	                       PROTOBUF_C_TYPE_MESSAGE, true);
	KMS_ENSURE(s->items, KMS_INTERNAL, "%s: the request has no repeated message field \"%s\"",
	           op->name, op->audit->items ? op->audit->items : "(none)");
	s->reply = field_named(&kms__response__descriptor, op->name, PROTOBUF_C_TYPE_MESSAGE, false);
	s->results = field_named(message_type(s->reply), "results", PROTOBUF_C_TYPE_MESSAGE, true);
	const ProtobufCMessageDescriptor *result = message_type(s->results);
	s->status = field_named(result, "status", PROTOBUF_C_TYPE_ENUM, false);
	s->message = field_named(result, "message", PROTOBUF_C_TYPE_STRING, false);
	s->result = field_named(result, "result", PROTOBUF_C_TYPE_MESSAGE, false);
	KMS_ENSURE(s->status && s->message && s->result, KMS_INTERNAL, "%s: the response is not "
	           "{ repeated { status, message, result } results } in Response.%s", op->name,
	           op->name);
	return KMS_OK;
}

/* A field the audit column names must exist, with its type. */
static kms_status check_named(const op_entry *op, const ProtobufCMessageDescriptor *d,
                              const char *name, ProtobufCType type, bool repeated)
{
	KMS_ENSURE(!name || field_named(d, name, type, repeated), KMS_INTERNAL,
	           "%s: %s has no %s%s field \"%s\"", op->name, d->name,
	           repeated ? "repeated " : "", type == PROTOBUF_C_TYPE_STRING ? "string" : "message",
	           name);
	return KMS_OK;
}

kms_status ops_check_row(const op_entry *op)
{
	const ProtobufCFieldDescriptor *rf = request_field(op);
	KMS_ENSURE(rf && !strcmp(rf->name, op->name) && message_type(rf), KMS_INTERNAL,
	           "%s: Request has no message field of that name and number", op->name);
	KMS_ENSURE(op->handle && op->audit, KMS_INTERNAL, "%s: no handler or audit column",
	           op->name);
	const op_audit_fields *a = op->audit;
	const ProtobufCMessageDescriptor *subject = message_type(rf);
	KMS_ENSURE(a->items || !op->validate_item, KMS_INTERNAL,
	           "%s: only a batch has an item validator", op->name);
	if (a->items) {
		op_batch_shape shape;
		KMS_GUARD(ops_batch_shape(op, &shape));
		subject = message_type(shape.items);
	}
	KMS_GUARD(check_named(op, subject, a->key, PROTOBUF_C_TYPE_STRING, false));
	KMS_GUARD(check_named(op, subject, a->noted, PROTOBUF_C_TYPE_STRING, false));
	KMS_GUARD(check_named(op, subject, a->data_principal, PROTOBUF_C_TYPE_STRING, false));
	KMS_GUARD(check_named(op, subject, a->basis, PROTOBUF_C_TYPE_STRING, false));
	KMS_GUARD(check_named(op, subject, a->hold, PROTOBUF_C_TYPE_STRING, false));
	KMS_GUARD(check_named(op, subject, a->context, PROTOBUF_C_TYPE_MESSAGE, true));
	KMS_ENSURE(!a->message ||
	                   field_named(subject, a->message, PROTOBUF_C_TYPE_BYTES, false) ||
	                   field_named(subject, a->message, PROTOBUF_C_TYPE_BYTES, true),
	           KMS_INTERNAL, "%s: %s has no bytes field \"%s\"", op->name, subject->name,
	           a->message);
	KMS_ENSURE(!a->message_type ||
	                   field_named(subject, a->message_type, PROTOBUF_C_TYPE_ENUM, false),
	           KMS_INTERNAL, "%s: %s has no enum field \"%s\"", op->name, subject->name,
	           a->message_type);
	KMS_ENSURE(!a->context || message_type(field_named(subject, a->context,
	                                                   PROTOBUF_C_TYPE_MESSAGE, true)) ==
	                                  &kms__string_pair__descriptor,
	           KMS_INTERNAL, "%s: %s is not a list of StringPair", op->name, a->context);
	return KMS_OK;
}
