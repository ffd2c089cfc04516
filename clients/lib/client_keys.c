/*
 * client_keys.c: the control-plane calls (keys, aliases, policies, tags,
 * health) and the names of specs, usages and states.
 */
#include "clients/lib/client_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/error.h"

/* ---- names ---- */

static const char *const spec_names[] = {
	[KMS_KEY_SPEC_UNSPECIFIED] = "KEY_SPEC_UNSPECIFIED",
	[KMS_KEY_SPEC_AES_256] = "AES_256",
	[KMS_KEY_SPEC_HMAC_SHA256] = "HMAC_SHA256",
	[KMS_KEY_SPEC_ED25519] = "ED25519",
	[KMS_KEY_SPEC_ECC_P256] = "ECC_P256",
};

static const char *const usage_names[] = {
	[KMS_KEY_USAGE_UNSPECIFIED] = "KEY_USAGE_UNSPECIFIED",
	[KMS_KEY_USAGE_ENCRYPT_DECRYPT] = "ENCRYPT_DECRYPT",
	[KMS_KEY_USAGE_GENERATE_VERIFY_MAC] = "GENERATE_VERIFY_MAC",
	[KMS_KEY_USAGE_SIGN_VERIFY] = "SIGN_VERIFY",
};

static const char *const state_names[] = {
	[KMS_KEY_STATE_UNSPECIFIED] = "KEY_STATE_UNSPECIFIED",
	[KMS_KEY_STATE_ENABLED] = "ENABLED",
	[KMS_KEY_STATE_DISABLED] = "DISABLED",
	[KMS_KEY_STATE_PENDING_DELETION] = "PENDING_DELETION",
	[KMS_KEY_STATE_DESTROYED] = "DESTROYED",
};

static const char *const protection_names[] = {
	[KMS_KEY_PROTECTION_UNSPECIFIED] = "KEY_PROTECTION_UNSPECIFIED",
	[KMS_KEY_PROTECTION_WRAPPED] = "WRAPPED",
	[KMS_KEY_PROTECTION_HSM_RESIDENT] = "HSM_RESIDENT",
};

#define NAME_OF(table, value)                                                  \
	((unsigned)(value) < sizeof(table) / sizeof((table)[0]) ? (table)[value] : "UNKNOWN")

const char *kms_key_spec_name(kms_key_spec spec)
{
	return NAME_OF(spec_names, spec);
}

const char *kms_key_usage_name(kms_key_usage usage)
{
	return NAME_OF(usage_names, usage);
}

const char *kms_key_state_name(kms_key_state state)
{
	return NAME_OF(state_names, state);
}

const char *kms_key_protection_name(kms_key_protection protection)
{
	return NAME_OF(protection_names, protection);
}

/* Index of name in table (from 1: the UNSPECIFIED names are not for input). */
static int parse_name(const char *const *table, size_t n, const char *name)
{
	for (size_t i = 1; name && i < n; i++)
		if (strcasecmp(table[i], name) == 0)
			return (int)i;
	return -1;
}

kms_status kms_key_spec_parse(const char *name, kms_key_spec *out)
{
	int i = parse_name(spec_names, sizeof spec_names / sizeof spec_names[0], name);
	if (i < 0)
		return KMS_INVALID_ARGUMENT;
	*out = (kms_key_spec)i;
	return KMS_OK;
}

kms_status kms_key_usage_parse(const char *name, kms_key_usage *out)
{
	int i = parse_name(usage_names, sizeof usage_names / sizeof usage_names[0], name);
	if (i < 0)
		return KMS_INVALID_ARGUMENT;
	*out = (kms_key_usage)i;
	return KMS_OK;
}

kms_status kms_key_protection_parse(const char *name, kms_key_protection *out)
{
	if (name && strcasecmp(name, "hsm-resident") == 0) {
		*out = KMS_KEY_PROTECTION_HSM_RESIDENT;
		return KMS_OK;
	}
	int i = parse_name(protection_names, sizeof protection_names / sizeof protection_names[0],
	                   name);
	if (i < 0)
		return KMS_INVALID_ARGUMENT;
	*out = (kms_key_protection)i;
	return KMS_OK;
}

/* ---- key metadata ---- */

void kms_key_metadata_free(kms_key_metadata *md)
{
	if (!md)
		return;
	free(md->key_id);
	free(md->description);
	free(md->versions);
	free(md->region);
	for (size_t i = 0; md->aliases && i < md->n_aliases; i++)
		free(md->aliases[i]);
	free(md->aliases);
	for (size_t i = 0; md->tags && i < md->n_tags; i++) {
		free(md->tags[i].key);
		free(md->tags[i].value);
	}
	free(md->tags);
	memset(md, 0, sizeof *md);
}

static kms_status metadata_from(const Kms__KeyMetadata *src, const char *op,
                                kms_key_metadata *out, kms_error *err)
{
	kms_status st;

	memset(out, 0, sizeof *out);
	if (!src)
		return client_protocol_error(err, op, "no key metadata");
	KMS_GUARD_OUT(st, client_dup_str(src->key_id, &out->key_id, err));
	KMS_GUARD_OUT(st, client_dup_str(src->description, &out->description, err));
	KMS_GUARD_OUT(st, client_dup_str(src->region, &out->region, err));
	out->key_spec = (kms_key_spec)src->key_spec;
	out->key_usage = (kms_key_usage)src->key_usage;
	out->key_state = (kms_key_state)src->key_state;
	out->primary_version = src->primary_version;
	out->rotation_period_days = src->rotation_period_days;
	out->created_at = src->created_at;
	out->next_rotation_at = src->next_rotation_at;
	out->deletion_date = src->deletion_date;
	out->protection = (kms_key_protection)src->protection;
	out->per_data_principal = src->per_data_principal;
	if (src->n_versions) {
		out->versions = calloc(src->n_versions, sizeof *out->versions);
		if (!out->versions)
			goto oom;
		out->n_versions = src->n_versions;
		for (size_t i = 0; i < src->n_versions; i++) {
			if (!src->versions[i]) {
				st = client_protocol_error(err, op, "empty key version");
				goto out;
			}
			out->versions[i].version = src->versions[i]->version;
			out->versions[i].created_at = src->versions[i]->created_at;
			out->versions[i].encryptions = src->versions[i]->encryptions;
			const char *kek = src->versions[i]->kek ? src->versions[i]->kek : "";
			if (strlen(kek) >= sizeof out->versions[i].kek) {
				st = client_protocol_error(err, op, "key version's KEK name too long");
				goto out;
			}
			strcpy(out->versions[i].kek, kek);
		}
	}
	if (src->n_aliases) {
		out->aliases = calloc(src->n_aliases, sizeof *out->aliases);
		if (!out->aliases)
			goto oom;
		out->n_aliases = src->n_aliases;
		for (size_t i = 0; i < src->n_aliases; i++)
			KMS_GUARD_OUT(st, client_dup_str(src->aliases[i], &out->aliases[i], err));
	}
	if (src->n_tags) {
		out->tags = calloc(src->n_tags, sizeof *out->tags);
		if (!out->tags)
			goto oom;
		out->n_tags = src->n_tags;
		for (size_t i = 0; i < src->n_tags; i++) {
			if (!src->tags[i]) {
				st = client_protocol_error(err, op, "empty tag");
				goto out;
			}
			KMS_GUARD_OUT(st, client_dup_str(src->tags[i]->key, &out->tags[i].key, err));
			KMS_GUARD_OUT(st, client_dup_str(src->tags[i]->value, &out->tags[i].value,
			                                 err));
		}
	}
	return KMS_OK;
oom:
	st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
out:
	kms_key_metadata_free(out);
	return st;
}

/* ---- the calls ---- */

kms_status kms_create_key(kms_client *client, const kms_create_key_params *params,
                          kms_key_metadata *out, kms_error *err)
{
	client_arena arena = { 0 };
	Kms__Request req;
	Kms__CreateKeyRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	client_error_clear(err);
	if (!params || !out)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "create_key: params and out are required");
	memset(out, 0, sizeof *out);
	kms__request__init(&req);
	kms__create_key_request__init(&op);
	if (params->description)
		op.description = client_lend(params->description);
	op.key_spec = (Kms__KeySpec)params->key_spec;
	op.key_usage = (Kms__KeyUsage)params->key_usage;
	if (params->policy)
		op.policy = client_lend(params->policy);
	op.rotation_period_days = params->rotation_period_days;
	op.protection = (Kms__KeyProtection)params->protection;
	op.per_data_principal = params->per_data_principal;
	if (params->alias)
		op.alias = client_lend(params->alias);
	KMS_GUARD_OUT(st, client_pairs(params->tags, params->n_tags, "tags", &arena,
	                               &op.tags, &op.n_tags, err));
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	req.create_key = &op;
	KMS_GUARD_OUT(st, client_roundtrip(client, &req, KMS__RESPONSE__RESULT_CREATE_KEY,
	                                   &resp, err));
	st = metadata_from(resp->create_key->key_metadata, "create_key", out, err);
out:
	kms_response_free(resp);
	client_arena_free(&arena);
	return st;
}

kms_status kms_describe_key(kms_client *client, const char *key_id,
                            kms_key_metadata *out, kms_error *err)
{
	Kms__Request req;
	Kms__DescribeKeyRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(client_begin(out, sizeof *out, "describe_key", err));
	KMS_GUARD(client_need(key_id, "describe_key", "a key id", err));
	kms__request__init(&req);
	kms__describe_key_request__init(&op);
	op.key_id = client_lend(key_id);
	req.op_case = KMS__REQUEST__OP_DESCRIBE_KEY;
	req.describe_key = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_DESCRIBE_KEY,
	                           &resp, err));
	st = metadata_from(resp->describe_key->key_metadata, "describe_key", out, err);
	kms_response_free(resp);
	return st;
}

void kms_key_list_free(kms_key_list *list)
{
	if (!list)
		return;
	for (size_t i = 0; list->keys && i < list->n_keys; i++)
		kms_key_metadata_free(&list->keys[i]);
	free(list->keys);
	free(list->next_page_token);
	memset(list, 0, sizeof *list);
}

kms_status kms_list_keys(kms_client *client, uint32_t limit, const char *page_token,
                         kms_key_list *out, kms_error *err)
{
	Kms__Request req;
	Kms__ListKeysRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(client_begin(out, sizeof *out, "list_keys", err));
	kms__request__init(&req);
	kms__list_keys_request__init(&op);
	op.limit = limit;
	if (page_token)
		op.page_token = client_lend(page_token);
	req.op_case = KMS__REQUEST__OP_LIST_KEYS;
	req.list_keys = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_LIST_KEYS, &resp, err));
	const Kms__ListKeysResponse *r = resp->list_keys;
	KMS_GUARD_OUT(st, client_dup_str(r->next_page_token, &out->next_page_token, err));
	if (r->n_keys) {
		out->keys = calloc(r->n_keys, sizeof *out->keys);
		if (!out->keys) {
			st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < r->n_keys; i++) {
			KMS_GUARD_OUT(st, metadata_from(r->keys[i], "list_keys", &out->keys[i],
			                                err));
			out->n_keys = i + 1;
		}
	}
out:
	if (st != KMS_OK)
		kms_key_list_free(out);
	kms_response_free(resp);
	return st;
}

kms_status kms_update_key_description(kms_client *client, const char *key_id,
                                      const char *description, kms_error *err)
{
	Kms__Request req;
	Kms__UpdateKeyDescriptionRequest op;
	Kms__Response *resp = NULL;

	client_error_clear(err);
	KMS_GUARD(client_need(key_id, "update_key_description", "a key id", err));
	kms__request__init(&req);
	kms__update_key_description_request__init(&op);
	op.key_id = client_lend(key_id);
	if (description)
		op.description = client_lend(description);
	req.op_case = KMS__REQUEST__OP_UPDATE_KEY_DESCRIPTION;
	req.update_key_description = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_UPDATE_KEY_DESCRIPTION,
	                           &resp, err));
	kms_response_free(resp);
	return KMS_OK;
}

kms_status kms_enable_key(kms_client *client, const char *key_id, kms_error *err)
{
	Kms__Request req;
	Kms__EnableKeyRequest op;
	Kms__Response *resp = NULL;

	client_error_clear(err);
	KMS_GUARD(client_need(key_id, "enable_key", "a key id", err));
	kms__request__init(&req);
	kms__enable_key_request__init(&op);
	op.key_id = client_lend(key_id);
	req.op_case = KMS__REQUEST__OP_ENABLE_KEY;
	req.enable_key = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_ENABLE_KEY, &resp, err));
	kms_response_free(resp);
	return KMS_OK;
}

kms_status kms_disable_key(kms_client *client, const char *key_id, kms_error *err)
{
	Kms__Request req;
	Kms__DisableKeyRequest op;
	Kms__Response *resp = NULL;

	client_error_clear(err);
	KMS_GUARD(client_need(key_id, "disable_key", "a key id", err));
	kms__request__init(&req);
	kms__disable_key_request__init(&op);
	op.key_id = client_lend(key_id);
	req.op_case = KMS__REQUEST__OP_DISABLE_KEY;
	req.disable_key = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_DISABLE_KEY, &resp, err));
	kms_response_free(resp);
	return KMS_OK;
}

kms_status kms_rotate_key(kms_client *client, const char *key_id, kms_key_metadata *out,
                          kms_error *err)
{
	Kms__Request req;
	Kms__RotateKeyRequest op;
	Kms__Response *resp = NULL;
	kms_status st = KMS_OK;

	client_error_clear(err);
	if (out)
		memset(out, 0, sizeof *out);
	KMS_GUARD(client_need(key_id, "rotate_key", "a key id", err));
	kms__request__init(&req);
	kms__rotate_key_request__init(&op);
	op.key_id = client_lend(key_id);
	req.op_case = KMS__REQUEST__OP_ROTATE_KEY;
	req.rotate_key = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_ROTATE_KEY, &resp, err));
	if (out)
		st = metadata_from(resp->rotate_key->key_metadata, "rotate_key", out, err);
	kms_response_free(resp);
	return st;
}

kms_status kms_set_rotation_period(kms_client *client, const char *key_id, uint32_t days,
                                   kms_key_metadata *out, kms_error *err)
{
	Kms__Request req;
	Kms__SetRotationPeriodRequest op;
	Kms__Response *resp = NULL;
	kms_status st = KMS_OK;

	client_error_clear(err);
	if (out)
		memset(out, 0, sizeof *out);
	KMS_GUARD(client_need(key_id, "set_rotation_period", "a key id", err));
	kms__request__init(&req);
	kms__set_rotation_period_request__init(&op);
	op.key_id = client_lend(key_id);
	op.rotation_period_days = days;
	req.op_case = KMS__REQUEST__OP_SET_ROTATION_PERIOD;
	req.set_rotation_period = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_SET_ROTATION_PERIOD,
	                           &resp, err));
	if (out)
		st = metadata_from(resp->set_rotation_period->key_metadata,
		                   "set_rotation_period", out, err);
	kms_response_free(resp);
	return st;
}

kms_status kms_schedule_key_deletion(kms_client *client, const char *key_id,
                                     uint32_t pending_window_days, int64_t *deletion_date,
                                     kms_key_state *state, kms_error *err)
{
	Kms__Request req;
	Kms__ScheduleKeyDeletionRequest op;
	Kms__Response *resp = NULL;

	client_error_clear(err);
	if (deletion_date)
		*deletion_date = 0;
	if (state)
		*state = KMS_KEY_STATE_UNSPECIFIED;
	KMS_GUARD(client_need(key_id, "schedule_key_deletion", "a key id", err));
	kms__request__init(&req);
	kms__schedule_key_deletion_request__init(&op);
	op.key_id = client_lend(key_id);
	op.pending_window_days = pending_window_days;
	req.op_case = KMS__REQUEST__OP_SCHEDULE_KEY_DELETION;
	req.schedule_key_deletion = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_SCHEDULE_KEY_DELETION,
	                           &resp, err));
	if (deletion_date)
		*deletion_date = resp->schedule_key_deletion->deletion_date;
	if (state)
		*state = (kms_key_state)resp->schedule_key_deletion->key_state;
	kms_response_free(resp);
	return KMS_OK;
}

kms_status kms_cancel_key_deletion(kms_client *client, const char *key_id,
                                   kms_key_state *state, kms_error *err)
{
	Kms__Request req;
	Kms__CancelKeyDeletionRequest op;
	Kms__Response *resp = NULL;

	client_error_clear(err);
	if (state)
		*state = KMS_KEY_STATE_UNSPECIFIED;
	KMS_GUARD(client_need(key_id, "cancel_key_deletion", "a key id", err));
	kms__request__init(&req);
	kms__cancel_key_deletion_request__init(&op);
	op.key_id = client_lend(key_id);
	req.op_case = KMS__REQUEST__OP_CANCEL_KEY_DELETION;
	req.cancel_key_deletion = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_CANCEL_KEY_DELETION,
	                           &resp, err));
	if (state)
		*state = (kms_key_state)resp->cancel_key_deletion->key_state;
	kms_response_free(resp);
	return KMS_OK;
}

/* ---- aliases ---- */

kms_status kms_create_alias(kms_client *client, const char *alias_name,
                            const char *target_key_id, kms_error *err)
{
	Kms__Request req;
	Kms__CreateAliasRequest op;
	Kms__Response *resp = NULL;

	client_error_clear(err);
	KMS_GUARD(client_need(alias_name, "create_alias", "an alias name", err));
	KMS_GUARD(client_need(target_key_id, "create_alias", "a target key id", err));
	kms__request__init(&req);
	kms__create_alias_request__init(&op);
	op.alias_name = client_lend(alias_name);
	op.target_key_id = client_lend(target_key_id);
	req.op_case = KMS__REQUEST__OP_CREATE_ALIAS;
	req.create_alias = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_CREATE_ALIAS, &resp, err));
	kms_response_free(resp);
	return KMS_OK;
}

kms_status kms_update_alias(kms_client *client, const char *alias_name,
                            const char *target_key_id, kms_error *err)
{
	Kms__Request req;
	Kms__UpdateAliasRequest op;
	Kms__Response *resp = NULL;

	client_error_clear(err);
	KMS_GUARD(client_need(alias_name, "update_alias", "an alias name", err));
	KMS_GUARD(client_need(target_key_id, "update_alias", "a target key id", err));
	kms__request__init(&req);
	kms__update_alias_request__init(&op);
	op.alias_name = client_lend(alias_name);
	op.target_key_id = client_lend(target_key_id);
	req.op_case = KMS__REQUEST__OP_UPDATE_ALIAS;
	req.update_alias = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_UPDATE_ALIAS, &resp, err));
	kms_response_free(resp);
	return KMS_OK;
}

kms_status kms_delete_alias(kms_client *client, const char *alias_name, kms_error *err)
{
	Kms__Request req;
	Kms__DeleteAliasRequest op;
	Kms__Response *resp = NULL;

	client_error_clear(err);
	KMS_GUARD(client_need(alias_name, "delete_alias", "an alias name", err));
	kms__request__init(&req);
	kms__delete_alias_request__init(&op);
	op.alias_name = client_lend(alias_name);
	req.op_case = KMS__REQUEST__OP_DELETE_ALIAS;
	req.delete_alias = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_DELETE_ALIAS, &resp, err));
	kms_response_free(resp);
	return KMS_OK;
}

void kms_alias_list_free(kms_alias_list *list)
{
	if (!list)
		return;
	for (size_t i = 0; list->aliases && i < list->n_aliases; i++) {
		free(list->aliases[i].alias_name);
		free(list->aliases[i].target_key_id);
	}
	free(list->aliases);
	free(list->next_page_token);
	memset(list, 0, sizeof *list);
}

kms_status kms_list_aliases(kms_client *client, const char *key_id, uint32_t limit,
                            const char *page_token, kms_alias_list *out, kms_error *err)
{
	Kms__Request req;
	Kms__ListAliasesRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(client_begin(out, sizeof *out, "list_aliases", err));
	kms__request__init(&req);
	kms__list_aliases_request__init(&op);
	if (key_id)
		op.key_id = client_lend(key_id);
	op.limit = limit;
	if (page_token)
		op.page_token = client_lend(page_token);
	req.op_case = KMS__REQUEST__OP_LIST_ALIASES;
	req.list_aliases = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_LIST_ALIASES, &resp, err));
	const Kms__ListAliasesResponse *r = resp->list_aliases;
	KMS_GUARD_OUT(st, client_dup_str(r->next_page_token, &out->next_page_token, err));
	if (r->n_aliases) {
		out->aliases = calloc(r->n_aliases, sizeof *out->aliases);
		if (!out->aliases) {
			st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
			goto out;
		}
		out->n_aliases = r->n_aliases;
		for (size_t i = 0; i < r->n_aliases; i++) {
			const Kms__AliasEntry *a = r->aliases[i];
			if (!a) {
				st = client_protocol_error(err, "list_aliases", "empty alias entry");
				goto out;
			}
			KMS_GUARD_OUT(st, client_dup_str(a->alias_name, &out->aliases[i].alias_name,
			                                 err));
			KMS_GUARD_OUT(st, client_dup_str(a->target_key_id,
			                                 &out->aliases[i].target_key_id, err));
			out->aliases[i].created_at = a->created_at;
		}
	}
out:
	if (st != KMS_OK)
		kms_alias_list_free(out);
	kms_response_free(resp);
	return st;
}

/* ---- policies and tags ---- */

kms_status kms_get_key_policy(kms_client *client, const char *key_id, char **policy,
                              kms_error *err)
{
	return kms_get_key_policy_info(client, key_id, policy, NULL, err);
}

kms_status kms_get_key_policy_info(kms_client *client, const char *key_id, char **policy,
                                   bool *is_default, kms_error *err)
{
	Kms__Request req;
	Kms__GetKeyPolicyRequest op;
	Kms__Response *resp = NULL;

	client_error_clear(err);
	if (is_default)
		*is_default = false;
	if (!policy)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "get_key_policy: policy is required");
	*policy = NULL;
	KMS_GUARD(client_need(key_id, "get_key_policy", "a key id", err));
	kms__request__init(&req);
	kms__get_key_policy_request__init(&op);
	op.key_id = client_lend(key_id);
	req.op_case = KMS__REQUEST__OP_GET_KEY_POLICY;
	req.get_key_policy = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_GET_KEY_POLICY,
	                           &resp, err));
	kms_status st = client_dup_str(resp->get_key_policy->policy, policy, err);
	if (st == KMS_OK && is_default)
		*is_default = resp->get_key_policy->is_default;
	kms_response_free(resp);
	return st;
}

kms_status kms_put_key_policy(kms_client *client, const char *key_id, const char *policy,
                              kms_error *err)
{
	Kms__Request req;
	Kms__PutKeyPolicyRequest op;
	Kms__Response *resp = NULL;

	client_error_clear(err);
	KMS_GUARD(client_need(key_id, "put_key_policy", "a key id", err));
	KMS_GUARD(client_need(policy, "put_key_policy", "a policy", err));
	kms__request__init(&req);
	kms__put_key_policy_request__init(&op);
	op.key_id = client_lend(key_id);
	op.policy = client_lend(policy);
	req.op_case = KMS__REQUEST__OP_PUT_KEY_POLICY;
	req.put_key_policy = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_PUT_KEY_POLICY,
	                           &resp, err));
	kms_response_free(resp);
	return KMS_OK;
}

kms_status kms_tag_key(kms_client *client, const char *key_id, const kms_context_pair *tags,
                       size_t n_tags, kms_error *err)
{
	client_arena arena = { 0 };
	Kms__Request req;
	Kms__TagKeyRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	client_error_clear(err);
	KMS_GUARD(client_need(key_id, "tag_key", "a key id", err));
	if (n_tags == 0)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "tag_key: at least one tag is required");
	kms__request__init(&req);
	kms__tag_key_request__init(&op);
	op.key_id = client_lend(key_id);
	KMS_GUARD_OUT(st, client_pairs(tags, n_tags, "tags", &arena, &op.tags, &op.n_tags, err));
	req.op_case = KMS__REQUEST__OP_TAG_KEY;
	req.tag_key = &op;
	st = client_roundtrip(client, &req, KMS__RESPONSE__RESULT_TAG_KEY, &resp, err);
out:
	kms_response_free(resp);
	client_arena_free(&arena);
	return st;
}

kms_status kms_untag_key(kms_client *client, const char *key_id, const char *const *tag_keys,
                         size_t n_tag_keys, size_t *removed, kms_error *err)
{
	client_arena arena = { 0 };
	Kms__Request req;
	Kms__UntagKeyRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	client_error_clear(err);
	if (removed)
		*removed = KMS_UNTAG_UNKNOWN;
	KMS_GUARD(client_need(key_id, "untag_key", "a key id", err));
	if (n_tag_keys == 0 || !tag_keys || n_tag_keys > SIZE_MAX / sizeof(char *))
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "untag_key: at least one tag key is required");
	kms__request__init(&req);
	kms__untag_key_request__init(&op);
	op.key_id = client_lend(key_id);
	char **keys = client_arena_alloc(&arena, n_tag_keys * sizeof *keys);
	if (!keys) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n_tag_keys; i++) {
		if (!tag_keys[i] || !tag_keys[i][0]) {
			st = client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
			                 "untag_key: tag key %zu is empty", i);
			goto out;
		}
		keys[i] = client_lend(tag_keys[i]);
	}
	op.n_tag_keys = n_tag_keys;
	op.tag_keys = keys;
	req.op_case = KMS__REQUEST__OP_UNTAG_KEY;
	req.untag_key = &op;
	st = client_roundtrip(client, &req, KMS__RESPONSE__RESULT_UNTAG_KEY, &resp, err);
	if (st == KMS_OK && removed && 
	    resp->untag_key->removed_count_case == KMS__UNTAG_KEY_RESPONSE__REMOVED_COUNT_REMOVED)
		*removed = resp->untag_key->removed;
out:
	kms_response_free(resp);
	client_arena_free(&arena);
	return st;
}

/* ---- health ---- */

void kms_health_free(kms_health *h)
{
	if (!h)
		return;
	free(h->region);
	free(h->version);
	free(h->token_label);
	free(h->hsm_message);
	free(h->principal);
	free(h->hsm_manufacturer);
	free(h->hsm_model);
	free(h->hsm_serial);
	free(h->data_dir);
	free(h->store_path);
	memset(h, 0, sizeof *h);
}

kms_status kms_health_check(kms_client *client, kms_health *out, kms_error *err)
{
	Kms__Request req;
	Kms__HealthRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(client_begin(out, sizeof *out, "health", err));
	kms__request__init(&req);
	kms__health_request__init(&op);
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_HEALTH, &resp, err));
	const Kms__HealthResponse *r = resp->health;
	out->hsm_ok = r->hsm_ok;
	out->uptime_seconds = r->uptime_seconds;
	out->audit_size = r->audit_size;
	KMS_GUARD_OUT(st, client_dup_str(r->region, &out->region, err));
	KMS_GUARD_OUT(st, client_dup_str(r->version, &out->version, err));
	KMS_GUARD_OUT(st, client_dup_str(r->token_label, &out->token_label, err));
	KMS_GUARD_OUT(st, client_dup_str(r->hsm_message, &out->hsm_message, err));
	KMS_GUARD_OUT(st, client_dup_str(r->principal, &out->principal, err));
	KMS_GUARD_OUT(st, client_dup_str(r->hsm_manufacturer, &out->hsm_manufacturer, err));
	KMS_GUARD_OUT(st, client_dup_str(r->hsm_model, &out->hsm_model, err));
	KMS_GUARD_OUT(st, client_dup_str(r->hsm_serial, &out->hsm_serial, err));
	out->hsm_pinned = r->hsm_pinned;
	KMS_GUARD_OUT(st, client_dup_str(r->data_dir, &out->data_dir, err));
	KMS_GUARD_OUT(st, client_dup_str(r->store_path, &out->store_path, err));
out:
	if (st != KMS_OK)
		kms_health_free(out);
	kms_response_free(resp);
	return st;
}
