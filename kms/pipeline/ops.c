/*
 * ops.c: the operation table, and each operation's request validator.
 * Validation happens here, before any handler runs: sizes, formats, enums
 * and map sizes. Handlers may then trust the shapes (not the meanings).
 */
#include "kms/pipeline/ops.h"

#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "kms/pipeline/validate.h"

kms_status ops_validate_encrypt_item(const Kms__EncryptRequest *r)
{
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "encrypt: the operation message is missing");
	KMS_GUARD(validate_key_ref("key_id", r->key_id));
	KMS_GUARD(validate_plaintext("plaintext", r->plaintext));
	return validate_context("encryption_context", r->n_encryption_context,
	                        r->encryption_context);
}

kms_status ops_validate_decrypt_item(const Kms__DecryptRequest *r)
{
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "decrypt: the operation message is missing");
	KMS_GUARD(validate_blob_size("ciphertext_blob", r->ciphertext_blob));
	if (r->key_id[0])
		KMS_GUARD(validate_key_ref("key_id", r->key_id));
	return validate_context("encryption_context", r->n_encryption_context,
	                        r->encryption_context);
}

kms_status ops_validate_gdk_item(const Kms__GenerateDataKeyRequest *r)
{
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "generate_data_key: the operation message is missing");
	KMS_GUARD(validate_key_ref("key_id", r->key_id));
	return validate_context("encryption_context", r->n_encryption_context,
	                        r->encryption_context);
}

static kms_status v_encrypt(const Kms__Request *req)
{
	return ops_validate_encrypt_item(req->encrypt);
}

static kms_status v_decrypt(const Kms__Request *req)
{
	return ops_validate_decrypt_item(req->decrypt);
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
	return ops_validate_gdk_item(req->generate_data_key);
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
	KMS_ENSURE(r && r->number_of_bytes >= 1 && r->number_of_bytes <= KMS_RANDOM_MAX,
	           KMS_INVALID_ARGUMENT, "number_of_bytes must be 1 to %d", KMS_RANDOM_MAX);
	return KMS_OK;
}

#define BATCH_COUNT_OK(r, field)                                                       \
	KMS_ENSURE((r) && (r)->n_items >= 1 && (r)->n_items <= KMS_BATCH_MAX,          \
	           KMS_INVALID_ARGUMENT, "%s: a batch holds 1 to %d items", field,     \
	           KMS_BATCH_MAX)

/* A batch's items are validated one by one in the handler, so that one bad
 * item fails alone; here only the batch's own shape. */
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

/* Operations whose message is just { string key_id = 1; ... }: the key id
 * field is checked by a per-operation accessor. */
#define KEY_REF_VALIDATOR(fn, member)                                              \
	static kms_status fn(const Kms__Request *req)                              \
	{                                                                          \
		KMS_ENSURE(req->member, KMS_INVALID_ARGUMENT,                      \
		           #member ": the operation message is missing");          \
		return validate_key_ref("key_id", req->member->key_id);            \
	}

KEY_REF_VALIDATOR(v_describe_key, describe_key)
KEY_REF_VALIDATOR(v_enable_key, enable_key)
KEY_REF_VALIDATOR(v_disable_key, disable_key)
KEY_REF_VALIDATOR(v_rotate_key, rotate_key)
KEY_REF_VALIDATOR(v_cancel_key_deletion, cancel_key_deletion)
KEY_REF_VALIDATOR(v_get_key_policy, get_key_policy)

static kms_status v_create_key(const Kms__Request *req)
{
	const Kms__CreateKeyRequest *r = req->create_key;
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT, "create_key: the operation message is missing");
	KMS_GUARD(validate_utf8("description", r->description, KMS_DESCRIPTION_MAX));
	KMS_ENSURE(r->key_spec == KMS__KEY_SPEC__KEY_SPEC_UNSPECIFIED ||
	           r->key_spec == KMS__KEY_SPEC__AES_256, KMS_INVALID_ARGUMENT,
	           "key_spec %d is not supported yet: use AES_256", (int)r->key_spec);
	KMS_ENSURE(r->key_usage == KMS__KEY_USAGE__KEY_USAGE_UNSPECIFIED ||
	           r->key_usage == KMS__KEY_USAGE__ENCRYPT_DECRYPT, KMS_INVALID_ARGUMENT,
	           "key_usage %d does not fit AES_256: use ENCRYPT_DECRYPT", (int)r->key_usage);
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

#define OP(field, upper, role, v, h)                                                   \
	{ KMS__REQUEST__OP_##upper, #field, role, v, h }

static const op_entry op_table[] = {
	OP(encrypt, ENCRYPT, ROLE_APP, v_encrypt, op_encrypt),
	OP(decrypt, DECRYPT, ROLE_APP, v_decrypt, op_decrypt),
	OP(re_encrypt, RE_ENCRYPT, ROLE_APP, v_re_encrypt, op_re_encrypt),
	OP(generate_data_key, GENERATE_DATA_KEY, ROLE_APP, v_gdk, op_generate_data_key),
	OP(generate_data_key_without_plaintext, GENERATE_DATA_KEY_WITHOUT_PLAINTEXT, ROLE_APP,
	   v_gdk_without_plaintext, op_generate_data_key_without_plaintext),
	OP(generate_random, GENERATE_RANDOM, ROLE_APP, v_random, op_generate_random),
	OP(batch_encrypt, BATCH_ENCRYPT, ROLE_APP, v_batch_encrypt, op_batch_encrypt),
	OP(batch_decrypt, BATCH_DECRYPT, ROLE_APP, v_batch_decrypt, op_batch_decrypt),
	OP(batch_generate_data_key, BATCH_GENERATE_DATA_KEY, ROLE_APP, v_batch_gdk,
	   op_batch_generate_data_key),

	OP(create_key, CREATE_KEY, ROLE_ADMIN, v_create_key, op_create_key),
	OP(describe_key, DESCRIBE_KEY, ROLE_ADMIN, v_describe_key, op_describe_key),
	OP(list_keys, LIST_KEYS, ROLE_ADMIN, v_list_keys, op_list_keys),
	OP(update_key_description, UPDATE_KEY_DESCRIPTION, ROLE_ADMIN, v_update_key_description,
	   op_update_key_description),
	OP(enable_key, ENABLE_KEY, ROLE_ADMIN, v_enable_key, op_enable_key),
	OP(disable_key, DISABLE_KEY, ROLE_ADMIN, v_disable_key, op_disable_key),
	OP(rotate_key, ROTATE_KEY, ROLE_ADMIN, v_rotate_key, op_rotate_key),
	OP(set_rotation_period, SET_ROTATION_PERIOD, ROLE_ADMIN, v_set_rotation_period,
	   op_set_rotation_period),
	OP(schedule_key_deletion, SCHEDULE_KEY_DELETION, ROLE_ADMIN, v_schedule_key_deletion,
	   op_schedule_key_deletion),
	OP(cancel_key_deletion, CANCEL_KEY_DELETION, ROLE_ADMIN, v_cancel_key_deletion,
	   op_cancel_key_deletion),
	OP(create_alias, CREATE_ALIAS, ROLE_ADMIN, v_create_alias, op_create_alias),
	OP(update_alias, UPDATE_ALIAS, ROLE_ADMIN, v_update_alias, op_update_alias),
	OP(delete_alias, DELETE_ALIAS, ROLE_ADMIN, v_delete_alias, op_delete_alias),
	OP(list_aliases, LIST_ALIASES, ROLE_ADMIN, v_list_aliases, op_list_aliases),
	OP(get_key_policy, GET_KEY_POLICY, ROLE_ADMIN, v_get_key_policy, op_get_key_policy),
	OP(put_key_policy, PUT_KEY_POLICY, ROLE_ADMIN, v_put_key_policy, op_put_key_policy),
	OP(tag_key, TAG_KEY, ROLE_ADMIN, v_tag_key, op_tag_key),
	OP(untag_key, UNTAG_KEY, ROLE_ADMIN, v_untag_key, op_untag_key),
	OP(health, HEALTH, ROLE_ANY, NULL, op_health),

	OP(get_checkpoint, GET_CHECKPOINT, ROLE_AUDITOR, NULL, op_get_checkpoint),
	OP(get_inclusion_proof, GET_INCLUSION_PROOF, ROLE_AUDITOR, v_inclusion, op_get_inclusion_proof),
	OP(get_consistency_proof, GET_CONSISTENCY_PROOF, ROLE_AUDITOR, v_consistency,
	   op_get_consistency_proof),
};

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
