/*
 * keyring_keys.c: the control plane on keys: create, describe, list, state
 * changes, rotation, tags and policy. Every change to a key row happens
 * under the key's stripe in one transaction, then invalidates the key's
 * cache entry (keyring_impl.h).
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kms/keys/keyring.h"
#include "kms/keys/keyring_impl.h"

/* ---- metadata ---- */

void key_metadata_free(key_metadata *m)
{
	if (!m)
		return;
	free(m->versions);
	free(m->aliases);
	free(m->tags);
	memset(m, 0, sizeof *m);
}

void key_metadata_array_free(key_metadata *keys, size_t n)
{
	if (!keys)
		return;
	for (size_t i = 0; i < n; i++)
		key_metadata_free(&keys[i]);
	free(keys);
}

/* Fills out for a visible key row; inside a read transaction. */
static kms_status metadata_fill(keyring *kr, const store_key *key, key_metadata *out)
{
	kms_status status;
	memset(out, 0, sizeof *out);
	out->key = *key;
	KMS_GUARD_OUT(status, store_versions_list(kr->store, key->id, &out->versions,
	                                          &out->n_versions));
	/* Versions being created do not exist for callers yet. */
	size_t kept = 0;
	for (size_t i = 0; i < out->n_versions; i++)
		if (out->versions[i].state != VERSION_STATE_CREATING)
			out->versions[kept++] = out->versions[i];
	out->n_versions = kept;
	KMS_GUARD_OUT(status, store_alias_list(kr->store, key->id, NULL, KEY_ALIASES_MAX,
	                                       &out->aliases, &out->n_aliases));
	KMS_GUARD_OUT(status, store_tags_list(kr->store, key->id, &out->tags, &out->n_tags));
	return KMS_OK;
out:
	key_metadata_free(out);
	return status;
}

static kms_status describe_id(keyring *kr, const char *id_text, key_metadata *out)
{
	kms_status status;
	store_key key;

	memset(out, 0, sizeof *out);
	KMS_GUARD(store_begin_read(kr->store));
	KMS_GUARD_OUT(status, kr_key_get_visible(kr, id_text, &key));
	KMS_GUARD_OUT(status, metadata_fill(kr, &key, out));
	KMS_GUARD_OUT(status, store_commit(kr->store));
	return KMS_OK;
out:
	store_rollback(kr->store);
	key_metadata_free(out);
	return status;
}

kms_status keyring_resolve(keyring *kr, const char *key_ref, store_key *out)
{
	uint8_t id[KMS_KEYID_BYTES];
	char id_text[KMS_KEYID_TEXT_SIZE];
	memset(out, 0, sizeof *out);
	KMS_GUARD(kr_resolve_ref(kr, key_ref, id, id_text));
	return kr_key_get_visible(kr, id_text, out);
}

kms_status keyring_describe(keyring *kr, const char *key_ref, key_metadata *out)
{
	uint8_t id[KMS_KEYID_BYTES];
	char id_text[KMS_KEYID_TEXT_SIZE];
	memset(out, 0, sizeof *out);
	KMS_GUARD(kr_resolve_ref(kr, key_ref, id, id_text));
	return describe_id(kr, id_text, out);
}

static kms_status list_limit(uint32_t limit, size_t *out)
{
	KMS_ENSURE(limit <= KMS_LIST_LIMIT_MAX, KMS_INVALID_ARGUMENT,
	           "limit: %u, must be 0..%d", (unsigned)limit, KMS_LIST_LIMIT_MAX);
	*out = limit ? limit : KEYRING_LIST_LIMIT_DEFAULT;
	return KMS_OK;
}

kms_status keyring_list(keyring *kr, uint32_t limit, const char *page_token, key_metadata **keys,
                        size_t *n_keys, char next_page_token[static KMS_KEYID_TEXT_SIZE])
{
	kms_status status;
	size_t cap = 0, n = 0;
	store_key *rows = NULL;
	key_metadata *list = NULL;
	size_t filled = 0;
	char after[KMS_KEYID_TEXT_SIZE] = "";

	*keys = NULL;
	*n_keys = 0;
	if (page_token && page_token[0]) {
		/* The token is the last key id of the previous page; nothing else
		 * passes. Read before next_page_token is written: the caller may
		 * pass one buffer for both. */
		uint8_t id[KMS_KEYID_BYTES];
		size_t len = strnlen(page_token, KMS_KEYID_TEXT_SIZE);
		if (keyid_parse(page_token, len, id) != KMS_OK) {
			next_page_token[0] = '\0';
			return KMS_FAIL(KMS_INVALID_ARGUMENT, "page token: malformed");
		}
		keyid_format(id, after);
	}
	next_page_token[0] = '\0';
	KMS_GUARD(list_limit(limit, &cap));
	/* One more than asked, to know whether there is a next page. */
	rows = calloc(cap + 1, sizeof *rows);
	KMS_ENSURE(rows, KMS_INTERNAL, "keyring: out of memory listing keys");
	KMS_GUARD_OUT(status, store_begin_read(kr->store));
	KMS_GUARD_OUT(status, store_key_list(kr->store, after, cap + 1, rows, &n));
	bool more = n > cap;
	if (more)
		n = cap;
	if (n) {
		list = calloc(n, sizeof *list);
		if (!list) {
			status = KMS_FAIL(KMS_INTERNAL, "keyring: out of memory listing keys");
			goto out;
		}
	}
	for (; filled < n; filled++)
		KMS_GUARD_OUT(status, metadata_fill(kr, &rows[filled], &list[filled]));
	KMS_GUARD_OUT(status, store_commit(kr->store));
	if (more)
		memcpy(next_page_token, rows[n - 1].id, KMS_KEYID_TEXT_SIZE);
	*keys = list;
	*n_keys = n;
	list = NULL;
out:
	store_rollback(kr->store);
	key_metadata_array_free(list, filled);
	free(rows);
	return status;
}

/* ---- validation ---- */

static kms_status tags_validate(const keyring_tag_arg *tags, size_t n)
{
	KMS_ENSURE(n <= KMS_TAGS_MAX, KMS_INVALID_ARGUMENT, "tags: %zu, at most %d per key", n,
	           KMS_TAGS_MAX);
	KMS_ENSURE(tags || n == 0, KMS_INVALID_ARGUMENT, "tags: missing");
	for (size_t i = 0; i < n; i++) {
		KMS_ENSURE(kr_text_ok(tags[i].key, KMS_TAG_KEY_MIN, KMS_TAG_KEY_MAX),
		           KMS_INVALID_ARGUMENT, "tag %zu: key must be %d..%d bytes of UTF-8", i,
		           KMS_TAG_KEY_MIN, KMS_TAG_KEY_MAX);
		KMS_ENSURE(kr_text_ok(tags[i].value, 0, KMS_TAG_VALUE_MAX), KMS_INVALID_ARGUMENT,
		           "tag %zu: value must be 0..%d bytes of UTF-8", i, KMS_TAG_VALUE_MAX);
		for (size_t j = 0; j < i; j++)
			KMS_ENSURE(strcmp(tags[i].key, tags[j].key) != 0, KMS_INVALID_ARGUMENT,
			           "tags %zu and %zu have the same key", j, i);
	}
	return KMS_OK;
}

static kms_status description_validate(const char *description)
{
	KMS_ENSURE(kr_text_ok(description, 0, KMS_DESCRIPTION_MAX), KMS_INVALID_ARGUMENT,
	           "description: must be 0..%d bytes of UTF-8", KMS_DESCRIPTION_MAX);
	return KMS_OK;
}

static kms_status rotation_validate(uint32_t days)
{
	KMS_ENSURE(days <= KMS_ROTATION_DAYS_MAX, KMS_INVALID_ARGUMENT,
	           "rotation period: %u days, must be 1..%d or 0 (off)", (unsigned)days,
	           KMS_ROTATION_DAYS_MAX);
	return KMS_OK;
}

kms_status keyring_policy_validate(const char *policy)
{
	KMS_ENSURE(policy, KMS_INVALID_ARGUMENT, "policy: missing");
	size_t len = strnlen(policy, KMS_POLICY_MAX + 1);
	KMS_ENSURE(len > 0, KMS_INVALID_ARGUMENT, "policy: empty");
	KMS_ENSURE(len <= KMS_POLICY_MAX, KMS_INVALID_ARGUMENT, "policy: larger than %u bytes",
	           (unsigned)KMS_POLICY_MAX);

	/* Duplicate member names are refused: two readers must never see two
	 * different policies in one document. jansson also refuses bad UTF-8,
	 * \u0000 and trailing bytes. The message gives a position, never the
	 * document's text. */
	json_error_t why;
	json_t *doc = json_loadb(policy, len, JSON_REJECT_DUPLICATES, &why);
	KMS_ENSURE(doc, KMS_INVALID_ARGUMENT, "policy: not valid JSON (line %d, column %d)",
	           why.line, why.column);
	kms_status status = KMS_OK;
	if (!json_is_object(doc))
		status = KMS_FAIL(KMS_INVALID_ARGUMENT, "policy: not a JSON object");
	else if (!json_is_string(json_object_get(doc, "Version")))
		status = KMS_FAIL(KMS_INVALID_ARGUMENT, "policy: no \"Version\" string");
	else if (!json_is_array(json_object_get(doc, "Statement")))
		status = KMS_FAIL(KMS_INVALID_ARGUMENT, "policy: no \"Statement\" array");
	json_decref(doc);
	return status;
}

/* ---- create ---- */

/* What each spec is for and where its versions may live. */
static const struct spec_rule {
	key_spec spec;
	key_usage usage;
	key_protection default_protection;
	bool resident_ok, wrapped_ok;
	const char *why; /* when one protection is refused */
} spec_rules[] = {
	{ KEY_SPEC_AES_256, KEY_USAGE_ENCRYPT_DECRYPT, KEY_PROTECTION_WRAPPED, true, true, "" },
	{ KEY_SPEC_HMAC_SHA256, KEY_USAGE_GENERATE_VERIFY_MAC, KEY_PROTECTION_WRAPPED, false, true,
	  "HMAC_SHA256 keys are wrapped (hsm-resident is offered for AES_256 and ED25519)" },
	{ KEY_SPEC_ECC_P256, KEY_USAGE_SIGN_VERIFY, KEY_PROTECTION_WRAPPED, false, true,
	  "ECC_P256 keys are wrapped (hsm-resident is offered for AES_256 and ED25519)" },
	{ KEY_SPEC_ED25519, KEY_USAGE_SIGN_VERIFY, KEY_PROTECTION_HSM_RESIDENT, true, false,
	  "ED25519 keys are hsm-resident: the HSM cannot wrap an Ed25519 private key" },
};

kms_status keyring_spec_check(key_spec spec, key_usage usage, key_protection protection,
                              key_usage *usage_out, key_protection *protection_out)
{
	const struct spec_rule *r = NULL;
	for (size_t i = 0; i < sizeof spec_rules / sizeof spec_rules[0]; i++)
		if (spec_rules[i].spec == spec)
			r = &spec_rules[i];
	KMS_ENSURE(r, KMS_INVALID_ARGUMENT,
	           "key spec %d is not one of AES_256, HMAC_SHA256, ECC_P256, ED25519", (int)spec);
	KMS_ENSURE(!usage || usage == r->usage, KMS_INVALID_ARGUMENT,
	           "key usage %s does not fit a %s key: use %s (or leave the usage out)",
	           key_usage_name(usage), key_spec_name(spec), key_usage_name(r->usage));
	key_protection p = protection ? protection : r->default_protection;
	KMS_ENSURE(p == KEY_PROTECTION_WRAPPED ? r->wrapped_ok : r->resident_ok,
	           KMS_INVALID_ARGUMENT, "%s", r->why);
	*usage_out = r->usage;
	*protection_out = p;
	return KMS_OK;
}

kms_status keyring_per_data_principal_check(bool per_data_principal, key_spec spec,
                                           key_protection protection)
{
	KMS_ENSURE(!per_data_principal ||
	                   (spec == KEY_SPEC_AES_256 && protection == KEY_PROTECTION_WRAPPED),
	           KMS_INVALID_ARGUMENT, "per-data-principal keys are AES_256 ENCRYPT_DECRYPT keys "
	           "with protection wrapped only: not %s %s", key_spec_name(spec),
	           key_protection_name(protection));
	return KMS_OK;
}

/* Inside the creating transaction: refuses a new hsm-resident key once
 * max_hsm_resident of them exist (the token holds a bounded number of
 * objects). The count is an index, and BEGIN IMMEDIATE orders creators. */
static kms_status resident_room(keyring *kr)
{
	uint64_t n = 0;
	KMS_GUARD(store_keys_resident_count(kr->store, &n));
	KMS_ENSURE(n < kr->max_hsm_resident, KMS_FAILED_PRECONDITION,
	           "%llu hsm-resident keys exist, the most [keys] max_hsm_resident allows: create "
	           "the key wrapped, or destroy one, or raise the limit", (unsigned long long)n);
	return KMS_OK;
}

/* The tags and the alias of a new key, inside its creating transaction
 * (the alias is taken now, so a clash fails the whole creation). */
static kms_status create_extras(keyring *kr, const keyring_create_args *args,
                                const store_key *key, int64_t now)
{
	for (size_t i = 0; i < args->n_tags; i++)
		KMS_GUARD(store_tag_put(kr->store, key->id, args->tags[i].key,
		                        args->tags[i].value ? args->tags[i].value : ""));
	if (args->alias) {
		store_alias alias = { .created_at = now };
		snprintf(alias.name, sizeof alias.name, "%s", args->alias);
		memcpy(alias.key_id, key->id, sizeof alias.key_id);
		KMS_GUARD(store_alias_insert(kr->store, &alias));
	}
	return KMS_OK;
}

/* A wrapped key: version 1 is generated and wrapped in the HSM first
 * (nothing of it stays there), then every row is written in one
 * transaction, ready. No intent: a crash before the commit leaves nothing. */
static kms_status create_wrapped(keyring *kr, const keyring_create_args *args, store_key *key,
                                 const char *policy, key_metadata *out)
{
	uint8_t wrapped[HSM_WRAPPED_MAX];
	size_t wrapped_len = 0, public_len = 0;
	uint8_t public_key[HSM_EC_P256_PUBLIC_LEN];
	uint32_t kek_id = 0;
	kms_status status;

	key->lifecycle = KEY_LIFECYCLE_READY;
	store_version v1 = { .version = 1, .created_at = key->created_at,
	                     .state = VERSION_STATE_ACTIVE };
	pthread_rwlock_rdlock(&kr->kek_rwlock);
	KMS_GUARD_OUT(status, kr_generate_wrapped(kr, key->spec, &kek_id, wrapped, sizeof wrapped,
	                                          &wrapped_len, public_key, &public_len));
	KMS_GUARD_OUT(status, store_begin(kr->store));
	KMS_GUARD_OUT(status, store_key_insert(kr->store, key, policy));
	KMS_GUARD_OUT(status, kr_version_insert_wrapped(kr, key->id, &v1, kek_id, wrapped,
	                                                wrapped_len, public_key, public_len));
	KMS_GUARD_OUT(status, create_extras(kr, args, key, key->created_at));
	store_companion_key(kr->store, key->id, 1);
	KMS_GUARD_OUT(status, store_commit(kr->store));
	pthread_rwlock_unlock(&kr->kek_rwlock);
	memset(wrapped, 0, sizeof wrapped);
	if (out && describe_id(kr, key->id, out) != KMS_OK) {
		kr_log("error", "key %s created, but describing it failed: %s (%s)", key->id,
		       kms_error_message(), kms_error_where());
		kms_error_clear();
		out->key = *key;
	}
	return KMS_OK;
out:
	store_rollback(kr->store);
	pthread_rwlock_unlock(&kr->kek_rwlock);
	memset(wrapped, 0, sizeof wrapped);
	return status;
}

/* A CreateKey sent again (its first answer lost with a replica): the key
 * its first run made, if any. A unique index on the reference makes two
 * runs of one request that meet in the database commit one key; the other
 * fails there. */
static kms_status made_by_request(keyring *kr, const char *ref, key_metadata *out, bool *made)
{
	*made = false;
	size_t len = strnlen(ref, STORE_REQUEST_REF_SIZE);
	KMS_ENSURE(len == STORE_REQUEST_REF_SIZE - 1, KMS_INTERNAL,
	           "create key: request reference of %zu characters", len);
	char id[KMS_KEYID_TEXT_SIZE];
	key_lifecycle lifecycle;
	kms_status status = store_key_by_request(kr->store, ref, id, &lifecycle);
	if (status == KMS_NOT_FOUND) {
		kms_error_clear();
		return KMS_OK;
	}
	KMS_GUARD(status);
	KMS_ENSURE(lifecycle != KEY_LIFECYCLE_CREATING, KMS_UNAVAILABLE,
	           "key %s is still being made by the first run of this request (or its "
	           "replica died and it will be rolled back): retry", id);
	*made = true;
	kr_log("info", "create key: request sent again; answered with key %s, which its first "
	       "run made", id);
	return out ? describe_id(kr, id, out) : KMS_OK;
}

static kms_status create_key_once(keyring *kr, const keyring_create_args *args, int64_t now,
                                  key_metadata *out)
{
	kms_status status;
	uint8_t id[KMS_KEYID_BYTES];
	store_key key;

	if (out)
		memset(out, 0, sizeof *out);
	KMS_ENSURE(args, KMS_INVALID_ARGUMENT, "create key: missing arguments");
	key_spec spec = args->spec ? args->spec : KEY_SPEC_AES_256;
	key_usage usage;
	key_protection protection;
	KMS_GUARD(keyring_spec_check(spec, args->usage, args->protection, &usage, &protection));
	KMS_GUARD(keyring_per_data_principal_check(args->per_data_principal, spec, protection));
	KMS_GUARD(description_validate(args->description));
	KMS_GUARD(tags_validate(args->tags, args->n_tags));
	KMS_GUARD(rotation_validate(args->rotation_period_days));
	const char *policy = args->policy && args->policy[0] ? args->policy : "";
	if (policy[0])
		KMS_GUARD(keyring_policy_validate(policy));
	if (args->alias)
		KMS_GUARD(keyid_alias_validate(args->alias, strnlen(args->alias, KMS_ALIAS_TEXT_MAX + 1)));
	if (args->request_ref) {
		bool made = false;
		KMS_GUARD(made_by_request(kr, args->request_ref, out, &made));
		if (made)
			return KMS_OK;
	}

	KMS_GUARD(hsm_random(kr->hsm, id, sizeof id));
	memset(&key, 0, sizeof key);
	if (args->request_ref)
		memcpy(key.request_ref, args->request_ref, sizeof key.request_ref);
	keyid_format(id, key.id);
	snprintf(key.description, sizeof key.description, "%s",
	         args->description ? args->description : "");
	key.spec = spec;
	key.usage = usage;
	key.state = KEY_STATE_ENABLED;
	key.lifecycle = KEY_LIFECYCLE_CREATING;
	key.primary_version = 1;
	key.rotation_period_days = args->rotation_period_days;
	key.created_at = now;
	key.next_rotation_at = args->rotation_period_days
	                               ? now + (int64_t)args->rotation_period_days * kr->seconds_per_day
	                               : 0;
	memcpy(key.region, kr->region, sizeof key.region);
	key.protection = protection;
	key.per_data_principal = args->per_data_principal;
	if (key.protection == KEY_PROTECTION_WRAPPED)
		return create_wrapped(kr, args, &key, policy, out);
	KMS_ENSURE(key.protection == KEY_PROTECTION_HSM_RESIDENT, KMS_INVALID_ARGUMENT,
	           "protection %d: must be wrapped or hsm-resident", (int)key.protection);

	/* 1. The intent: every row, 'creating'; the alias is taken now, so a
	 * clash fails before the HSM is touched. */
	store_version v1 = { .version = 1, .created_at = now, .state = VERSION_STATE_CREATING };
	KMS_GUARD(store_begin(kr->store));
	KMS_GUARD_OUT(status, resident_room(kr));
	KMS_GUARD_OUT(status, store_key_insert(kr->store, &key, policy));
	KMS_GUARD_OUT(status, store_version_insert(kr->store, key.id, &v1));
	KMS_GUARD_OUT(status, create_extras(kr, args, &key, now));
	store_tx_intent(kr->store);
	KMS_GUARD_OUT(status, store_commit(kr->store));
	kr_crash_point_reached(kr, KR_CRASH_CREATE_AFTER_INTENT);

	/* 2. The HSM object of version 1. */
	uint8_t public_key[HSM_EC_P256_PUBLIC_LEN];
	size_t public_len = 0;
	status = kr_object_create(kr, id, 1, key.spec, public_key, &public_len);
	if (status != KMS_OK)
		goto undo;
	kr_crash_point_reached(kr, KR_CRASH_CREATE_AFTER_HSM);

	/* 3. Acknowledged: the key exists from this commit on (with an Ed25519
	 * version's public key). */
	key.lifecycle = KEY_LIFECYCLE_READY;
	status = store_begin(kr->store);
	if (status == KMS_OK)
		status = store_version_set_state(kr->store, key.id, 1, VERSION_STATE_ACTIVE);
	if (status == KMS_OK && public_len)
		status = store_version_public_key_set(kr->store, key.id, 1, public_key, public_len);
	if (status == KMS_OK)
		status = store_key_update(kr->store, &key);
	store_companion_key(kr->store, key.id, 1);
	if (status == KMS_OK)
		status = store_commit(kr->store);
	if (status != KMS_OK)
		goto undo;

	if (out && describe_id(kr, key.id, out) != KMS_OK) {
		/* The key exists; say so with what we know. */
		kr_log("error", "key %s created, but describing it failed: %s (%s)", key.id,
		       kms_error_message(), kms_error_where());
		kms_error_clear();
		out->key = key;
	}
	return KMS_OK;
undo:
	store_rollback(kr->store);
	(void)kr_key_rollback(kr, id);
	return status;
out:
	store_rollback(kr->store);
	return status;
}

kms_status keyring_create_key(keyring *kr, const keyring_create_args *args, int64_t now,
                              key_metadata *out)
{
	kms_status status = create_key_once(kr, args, now, out);
	if (status != KMS_ALREADY_EXISTS || !args || !args->request_ref)
		return status;
	/* Two runs of one request met in the database (the unique request
	 * reference): answer with the key the other committed. Anything else
	 * already existing (an alias) keeps its own message. */
	kms_error_saved saved;
	kms_error_save(&saved);
	bool made = false;
	kms_status again = made_by_request(kr, args->request_ref, out, &made);
	if (again == KMS_OK && made)
		return KMS_OK;
	kms_error_clear();
	return kms_error_restore(status, &saved);
}

/* One key of a batch: its row and its wrapped version 1. */
typedef struct batch_item {
	store_key key;
	uint32_t kek_id;
	uint8_t wrapped[HSM_WRAPPED_MAX];
	size_t wrapped_len;
} batch_item;

static kms_status batch_prepare(keyring *kr, const keyring_create_args *args, int64_t now,
                                batch_item *item)
{
	uint8_t id[KMS_KEYID_BYTES];
	store_key *key = &item->key;
	memset(key, 0, sizeof *key);
	KMS_GUARD(hsm_random(kr->hsm, id, sizeof id));
	keyid_format(id, key->id);
	snprintf(key->description, sizeof key->description, "%s",
	         args->description ? args->description : "");
	key->spec = KEY_SPEC_AES_256;
	key->usage = KEY_USAGE_ENCRYPT_DECRYPT;
	key->state = KEY_STATE_ENABLED;
	key->lifecycle = KEY_LIFECYCLE_READY;
	key->primary_version = 1;
	key->rotation_period_days = args->rotation_period_days;
	key->created_at = now;
	key->next_rotation_at = args->rotation_period_days
	                                ? now + (int64_t)args->rotation_period_days * kr->seconds_per_day
	                                : 0;
	memcpy(key->region, kr->region, sizeof key->region);
	key->protection = KEY_PROTECTION_WRAPPED;
	key->per_data_principal = args->per_data_principal;
	return kr_generate_wrapped(kr, key->spec, &item->kek_id, item->wrapped,
	                           sizeof item->wrapped, &item->wrapped_len, NULL, NULL);
}

kms_status keyring_create_keys_batch(keyring *kr, const keyring_create_args *args, size_t n,
                                     int64_t now, char (*ids)[KMS_KEYID_TEXT_SIZE])
{
	kms_status status = KMS_OK;
	KMS_ENSURE(args && ids, KMS_INVALID_ARGUMENT, "create keys: missing arguments");
	KMS_ENSURE(n >= 1 && n <= KEYRING_CREATE_BATCH_MAX, KMS_INVALID_ARGUMENT,
	           "create keys: %zu keys, must be 1..%d", n, KEYRING_CREATE_BATCH_MAX);
	KMS_ENSURE(!args->alias, KMS_INVALID_ARGUMENT, "create keys: a batch takes no alias");
	KMS_ENSURE(!args->protection || args->protection == KEY_PROTECTION_WRAPPED,
	           KMS_INVALID_ARGUMENT, "create keys: a batch makes wrapped keys only");
	KMS_ENSURE((!args->spec || args->spec == KEY_SPEC_AES_256) &&
	                   (!args->usage || args->usage == KEY_USAGE_ENCRYPT_DECRYPT),
	           KMS_INVALID_ARGUMENT, "create keys: only AES_256 for ENCRYPT_DECRYPT");
	KMS_GUARD(description_validate(args->description));
	KMS_GUARD(tags_validate(args->tags, args->n_tags));
	KMS_GUARD(rotation_validate(args->rotation_period_days));
	const char *policy = args->policy && args->policy[0] ? args->policy : "";
	if (policy[0])
		KMS_GUARD(keyring_policy_validate(policy));
	batch_item *items = calloc(n, sizeof *items);
	KMS_ENSURE(items, KMS_INTERNAL, "create keys: out of memory for %zu keys", n);

	pthread_rwlock_rdlock(&kr->kek_rwlock);
	for (size_t i = 0; i < n; i++)
		KMS_GUARD_OUT(status, batch_prepare(kr, args, now, &items[i]));
	KMS_GUARD_OUT(status, store_begin(kr->store));
	for (size_t i = 0; i < n; i++) {
		store_version v1 = { .version = 1, .created_at = now, .state = VERSION_STATE_ACTIVE };
		KMS_GUARD_OUT(status, store_key_insert(kr->store, &items[i].key, policy));
		KMS_GUARD_OUT(status, store_version_insert_wrapped(kr->store, items[i].key.id, &v1,
		                                                   items[i].kek_id, items[i].wrapped,
		                                                   items[i].wrapped_len));
		KMS_GUARD_OUT(status, create_extras(kr, args, &items[i].key, now));
	}
	KMS_GUARD_OUT(status, store_commit(kr->store));
	for (size_t i = 0; i < n; i++)
		memcpy(ids[i], items[i].key.id, KMS_KEYID_TEXT_SIZE);
out:
	if (status != KMS_OK)
		store_rollback(kr->store);
	pthread_rwlock_unlock(&kr->kek_rwlock);
	for (size_t i = 0; i < n; i++)
		memset(items[i].wrapped, 0, sizeof items[i].wrapped);
	free(items);
	return status;
}

/* ---- changes to one key ---- */

/* Checks and changes *key (and may write more rows) inside the transaction. */
typedef kms_status (*mutate_fn)(keyring *kr, store_key *key, const void *arg);

static kms_status key_mutate(keyring *kr, const char *key_ref, mutate_fn fn, const void *arg,
                             store_key *out)
{
	uint8_t id[KMS_KEYID_BYTES];
	char id_text[KMS_KEYID_TEXT_SIZE];
	kms_status status;
	store_key key;

	if (out)
		memset(out, 0, sizeof *out);
	KMS_GUARD(kr_resolve_ref(kr, key_ref, id, id_text));
	pthread_mutex_t *stripe = kr_stripe(kr, id);
	pthread_mutex_lock(stripe);
	KMS_GUARD_OUT(status, store_begin(kr->store));
	KMS_GUARD_OUT(status, kr_key_get_visible(kr, id_text, &key));
	if (key.lifecycle == KEY_LIFECYCLE_DESTROYING) {
		status = KMS_FAIL(KMS_FAILED_PRECONDITION, "key %s is being destroyed", id_text);
		goto out;
	}
	if (key.state == KEY_STATE_DESTROYED) {
		status = KMS_FAIL(KMS_FAILED_PRECONDITION, "key %s is DESTROYED", id_text);
		goto out;
	}
	KMS_GUARD_OUT(status, fn(kr, &key, arg));
	KMS_GUARD_OUT(status, store_key_update(kr->store, &key));
	KMS_GUARD_OUT(status, store_commit(kr->store));
	kr_cache_invalidate(kr, id);
	/* A key that may not be used any more leaves the unwrapped-key cache
	 * at once (disable, scheduled deletion). */
	if (key.state != KEY_STATE_ENABLED && key.protection == KEY_PROTECTION_WRAPPED)
		kr_evict_versions(kr, id, key.primary_version);
	if (out)
		*out = key;
out:
	store_rollback(kr->store);
	pthread_mutex_unlock(stripe);
	return status;
}

static kms_status set_description(keyring *kr, store_key *key, const void *arg)
{
	snprintf(key->description, sizeof key->description, "%s", (const char *)arg);
	return KMS_OK;
}

kms_status keyring_update_description(keyring *kr, const char *key_ref, const char *description)
{
	KMS_GUARD(description_validate(description));
	return key_mutate(kr, key_ref, set_description, description ? description : "", NULL);
}

static kms_status enable(keyring *kr, store_key *key, const void *arg)
{
	KMS_ENSURE(key->state == KEY_STATE_ENABLED || key->state == KEY_STATE_DISABLED,
	           KMS_FAILED_PRECONDITION, "key %s is %s: only a DISABLED key can be enabled",
	           key->id, key_state_name(key->state));
	key->state = KEY_STATE_ENABLED;
	return KMS_OK;
}

static kms_status disable(keyring *kr, store_key *key, const void *arg)
{
	KMS_ENSURE(key->state == KEY_STATE_ENABLED || key->state == KEY_STATE_DISABLED,
	           KMS_FAILED_PRECONDITION, "key %s is %s: only an ENABLED key can be disabled",
	           key->id, key_state_name(key->state));
	key->state = KEY_STATE_DISABLED;
	return KMS_OK;
}

kms_status keyring_enable(keyring *kr, const char *key_ref)
{
	return key_mutate(kr, key_ref, enable, NULL, NULL);
}

kms_status keyring_disable(keyring *kr, const char *key_ref)
{
	return key_mutate(kr, key_ref, disable, NULL, NULL);
}

typedef struct when_days {
	uint32_t days;
	int64_t now;
} when_days;

static kms_status set_rotation(keyring *kr, store_key *key, const void *arg)
{
	const when_days *w = arg;
	store_companion_key(kr->store, key->id, key->primary_version); /* as its reply's */
	key->rotation_period_days = w->days;
	key->next_rotation_at = w->days ? w->now + (int64_t)w->days * kr->seconds_per_day : 0;
	return KMS_OK;
}

kms_status keyring_set_rotation_period(keyring *kr, const char *key_ref, uint32_t days,
                                       int64_t now, key_metadata *out)
{
	when_days w = { days, now };
	store_key key;
	if (out)
		memset(out, 0, sizeof *out);
	KMS_GUARD(rotation_validate(days));
	KMS_GUARD(key_mutate(kr, key_ref, set_rotation, &w, &key));
	return out ? describe_id(kr, key.id, out) : KMS_OK;
}

static kms_status schedule_deletion(keyring *kr, store_key *key, const void *arg)
{
	const when_days *w = arg;
	KMS_ENSURE(key->state == KEY_STATE_ENABLED || key->state == KEY_STATE_DISABLED,
	           KMS_FAILED_PRECONDITION, "key %s is %s: deletion can be scheduled only for "
	           "ENABLED or DISABLED keys", key->id, key_state_name(key->state));
	key->state = KEY_STATE_PENDING_DELETION;
	key->deletion_date = w->now + (int64_t)w->days * kr->seconds_per_day;
	return KMS_OK;
}

kms_status keyring_schedule_deletion(keyring *kr, const char *key_ref, uint32_t window_days,
                                     int64_t now, store_key *out)
{
	when_days w = { window_days ? window_days : kr->deletion_window_days, now };
	if (out)
		memset(out, 0, sizeof *out);
	KMS_ENSURE(w.days >= KMS_DELETION_DAYS_MIN && w.days <= KMS_DELETION_DAYS_MAX,
	           KMS_INVALID_ARGUMENT, "pending window: %u days, must be %d..%d", (unsigned)w.days,
	           KMS_DELETION_DAYS_MIN, KMS_DELETION_DAYS_MAX);
	return key_mutate(kr, key_ref, schedule_deletion, &w, out);
}

static kms_status cancel_deletion(keyring *kr, store_key *key, const void *arg)
{
	KMS_ENSURE(key->state == KEY_STATE_PENDING_DELETION, KMS_FAILED_PRECONDITION,
	           "key %s is %s, not PENDING_DELETION", key->id, key_state_name(key->state));
	key->state = KEY_STATE_DISABLED;
	key->deletion_date = 0;
	return KMS_OK;
}

kms_status keyring_cancel_deletion(keyring *kr, const char *key_ref, store_key *out)
{
	return key_mutate(kr, key_ref, cancel_deletion, NULL, out);
}

kms_status keyring_rotate(keyring *kr, const char *key_ref, int64_t now, key_metadata *out)
{
	uint8_t id[KMS_KEYID_BYTES];
	char id_text[KMS_KEYID_TEXT_SIZE];

	if (out)
		memset(out, 0, sizeof *out);
	KMS_GUARD(kr_resolve_ref(kr, key_ref, id, id_text));
	pthread_mutex_t *stripe = kr_stripe(kr, id);
	pthread_mutex_lock(stripe);
	kms_status status = kr_version_create_locked(kr, id, now, NULL);
	pthread_mutex_unlock(stripe);
	KMS_GUARD(status);
	return out ? describe_id(kr, id_text, out) : KMS_OK;
}

/* ---- tags ---- */

typedef struct tag_change {
	const keyring_tag_arg *tags;
	const char *const *tag_keys;
	size_t n;
	size_t *removed; /* untag: what the key had and no longer has */
} tag_change;

static kms_status put_tags(keyring *kr, store_key *key, const void *arg)
{
	const tag_change *c = arg;
	size_t count;
	for (size_t i = 0; i < c->n; i++)
		KMS_GUARD(store_tag_put(kr->store, key->id, c->tags[i].key,
		                        c->tags[i].value ? c->tags[i].value : ""));
	KMS_GUARD(store_tag_count(kr->store, key->id, &count));
	KMS_ENSURE(count <= KMS_TAGS_MAX, KMS_INVALID_ARGUMENT,
	           "key %s would have %zu tags, at most %d", key->id, count, KMS_TAGS_MAX);
	return KMS_OK;
}

static kms_status delete_tags(keyring *kr, store_key *key, const void *arg)
{
	const tag_change *c = arg;
	size_t before, after;
	KMS_GUARD(store_tag_count(kr->store, key->id, &before));
	for (size_t i = 0; i < c->n; i++)
		KMS_GUARD(store_tag_delete(kr->store, key->id, c->tag_keys[i]));
	KMS_GUARD(store_tag_count(kr->store, key->id, &after));
	*c->removed = before >= after ? before - after : 0;
	return KMS_OK;
}

kms_status keyring_tag(keyring *kr, const char *key_ref, const keyring_tag_arg *tags, size_t n)
{
	tag_change c = { .tags = tags, .n = n };
	KMS_GUARD(tags_validate(tags, n));
	return key_mutate(kr, key_ref, put_tags, &c, NULL);
}

kms_status keyring_untag(keyring *kr, const char *key_ref, const char *const *tag_keys, size_t n,
                         size_t *removed)
{
	size_t count = 0;
	tag_change c = { .tag_keys = tag_keys, .n = n, .removed = &count };
	if (removed)
		*removed = 0;
	KMS_ENSURE(tag_keys || n == 0, KMS_INVALID_ARGUMENT, "tag keys: missing");
	KMS_ENSURE(n <= KMS_TAGS_MAX, KMS_INVALID_ARGUMENT, "tag keys: %zu, at most %d", n,
	           KMS_TAGS_MAX);
	for (size_t i = 0; i < n; i++)
		KMS_ENSURE(kr_text_ok(tag_keys[i], KMS_TAG_KEY_MIN, KMS_TAG_KEY_MAX),
		           KMS_INVALID_ARGUMENT, "tag key %zu: must be %d..%d bytes of UTF-8", i,
		           KMS_TAG_KEY_MIN, KMS_TAG_KEY_MAX);
	KMS_GUARD(key_mutate(kr, key_ref, delete_tags, &c, NULL));
	if (removed)
		*removed = count;
	return KMS_OK;
}

/* ---- policy ---- */

static kms_status put_policy(keyring *kr, store_key *key, const void *arg)
{
	return store_policy_set(kr->store, key->id, arg);
}

kms_status keyring_policy_put(keyring *kr, const char *key_ref, const char *policy)
{
	KMS_GUARD(keyring_policy_validate(policy));
	return key_mutate(kr, key_ref, put_policy, policy, NULL);
}

kms_status keyring_policy_get(keyring *kr, const char *key_ref, char **policy)
{
	store_key key;
	*policy = NULL;
	KMS_GUARD(keyring_resolve(kr, key_ref, &key));
	return store_policy_get(kr->store, key.id, policy);
}
