/*
 * keyring_aliases.c: aliases. An alias names one key id (never another
 * alias); a key may have up to KEY_ALIASES_MAX. Every change is one
 * transaction, then the alias cache is dropped (keyring_impl.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kms/keys/keyring.h"
#include "kms/keys/keyring_impl.h"

static kms_status alias_check(const char *alias)
{
	KMS_ENSURE(alias, KMS_INVALID_ARGUMENT, "alias: missing");
	return keyid_alias_validate(alias, strnlen(alias, KMS_ALIAS_TEXT_MAX + 1));
}

static kms_status target_parse(const char *target, char id_text[KMS_KEYID_TEXT_SIZE])
{
	uint8_t id[KMS_KEYID_BYTES];
	KMS_ENSURE(target, KMS_INVALID_ARGUMENT, "target key id: missing");
	KMS_ENSURE(strncmp(target, KMS_ALIAS_PREFIX, KMS_ALIAS_PREFIX_LEN) != 0,
	           KMS_INVALID_ARGUMENT, "target key id: an alias points at a key id, not an alias");
	KMS_GUARD(keyid_parse(target, strnlen(target, KMS_KEYID_TEXT_SIZE), id));
	keyid_format(id, id_text);
	return KMS_OK;
}

/* In a transaction: the target may take one more alias. */
static kms_status target_check(keyring *kr, const char *id_text)
{
	store_key key;
	size_t count;
	KMS_GUARD(kr_key_get_visible(kr, id_text, &key));
	KMS_ENSURE(key.lifecycle == KEY_LIFECYCLE_READY &&
	                   (key.state == KEY_STATE_ENABLED || key.state == KEY_STATE_DISABLED),
	           KMS_FAILED_PRECONDITION, "key %s is %s: aliases point only at ENABLED or "
	           "DISABLED keys", id_text, key_state_name(key.state));
	KMS_GUARD(store_alias_count(kr->store, id_text, &count));
	KMS_ENSURE(count < KEY_ALIASES_MAX, KMS_INVALID_ARGUMENT,
	           "key %s already has %zu aliases, the most allowed", id_text, count);
	return KMS_OK;
}

kms_status keyring_alias_create(keyring *kr, const char *alias, const char *target_key_id,
                                int64_t now)
{
	kms_status status;
	store_alias row = { .created_at = now };

	KMS_GUARD(alias_check(alias));
	KMS_GUARD(target_parse(target_key_id, row.key_id));
	snprintf(row.name, sizeof row.name, "%s", alias);
	KMS_GUARD(store_begin(kr->store));
	KMS_GUARD_OUT(status, target_check(kr, row.key_id));
	KMS_GUARD_OUT(status, store_alias_insert(kr->store, &row));
	KMS_GUARD_OUT(status, store_commit(kr->store));
	kr_alias_cache_clear(kr);
out:
	store_rollback(kr->store);
	return status;
}

kms_status keyring_alias_update(keyring *kr, const char *alias, const char *target_key_id,
                                const char *expect_from)
{
	kms_status status;
	char id_text[KMS_KEYID_TEXT_SIZE];
	store_alias row;

	KMS_GUARD(alias_check(alias));
	KMS_GUARD(target_parse(target_key_id, id_text));
	KMS_GUARD(store_begin(kr->store));
	KMS_GUARD_OUT(status, store_alias_get(kr->store, alias, &row));
	if (expect_from && strcmp(row.key_id, expect_from) != 0) {
		status = KMS_FAIL(KMS_UNAVAILABLE, "alias %s was moved to another key while this "
		                  "request was checked: retry", alias);
		goto out;
	}
	if (strcmp(row.key_id, id_text) == 0) {
		/* Already there: nothing to change, but the target must still
		 * be one an alias may point at. */
		store_key key;
		KMS_GUARD_OUT(status, kr_key_get_visible(kr, id_text, &key));
		status = store_commit(kr->store);
		goto out;
	}
	KMS_GUARD_OUT(status, target_check(kr, id_text));
	KMS_GUARD_OUT(status, store_alias_retarget(kr->store, alias, id_text));
	KMS_GUARD_OUT(status, store_commit(kr->store));
	kr_alias_cache_clear(kr);
out:
	store_rollback(kr->store);
	return status;
}

kms_status keyring_alias_delete(keyring *kr, const char *alias)
{
	KMS_GUARD(alias_check(alias));
	kms_status status = store_alias_delete(kr->store, alias);
	kr_alias_cache_clear(kr);
	return status;
}

kms_status keyring_alias_list(keyring *kr, const char *key_ref, uint32_t limit,
                              const char *page_token, store_alias **aliases, size_t *n,
                              char next_page_token[static KMS_ALIAS_TEXT_MAX + 1])
{
	char id_text[KMS_KEYID_TEXT_SIZE] = "";
	char after[KMS_ALIAS_TEXT_MAX + 1] = "";
	store_alias *rows = NULL;
	size_t got = 0;

	*aliases = NULL;
	*n = 0;
	if (page_token && page_token[0]) {
		/* The token is the last alias of the previous page. Copied before
		 * next_page_token is written: the caller may pass one buffer. */
		size_t len = strnlen(page_token, KMS_ALIAS_TEXT_MAX + 1);
		if (keyid_alias_validate(page_token, len) != KMS_OK) {
			next_page_token[0] = '\0';
			return KMS_FAIL(KMS_INVALID_ARGUMENT, "page token: malformed");
		}
		memcpy(after, page_token, len + 1);
	}
	next_page_token[0] = '\0';
	KMS_ENSURE(limit <= KMS_LIST_LIMIT_MAX, KMS_INVALID_ARGUMENT,
	           "limit: %u, must be 0..%d", (unsigned)limit, KMS_LIST_LIMIT_MAX);
	size_t cap = limit ? limit : KEYRING_LIST_LIMIT_DEFAULT;
	if (key_ref && key_ref[0]) {
		store_key key;
		KMS_GUARD(keyring_resolve(kr, key_ref, &key));
		memcpy(id_text, key.id, sizeof id_text);
	}
	KMS_GUARD(store_alias_list(kr->store, id_text[0] ? id_text : NULL, after, cap + 1, &rows,
	                           &got));
	if (got > cap) {
		got = cap;
		snprintf(next_page_token, KMS_ALIAS_TEXT_MAX + 1, "%s", rows[got - 1].name);
	}
	*aliases = rows;
	*n = got;
	return KMS_OK;
}
