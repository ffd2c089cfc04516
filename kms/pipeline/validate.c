#include "kms/pipeline/validate.h"

#include <string.h>

#include "kms/format/blob.h"
#include "common/context.h"
#include "common/error.h"
#include "common/utf8.h"
#include "kms/format/keyid.h"

kms_status validate_key_ref(const char *field, const char *key_ref)
{
	keyid_ref_kind kind;
	uint8_t id[KMS_KEYID_BYTES];
	if (key_ref[0] == '\0')
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "%s is required: a key id (k-...) or alias/NAME",
		                field);
	if (keyid_ref_classify(key_ref, strlen(key_ref), &kind, id) != KMS_OK)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "%s: %s", field, kms_error_message());
	return KMS_OK;
}

kms_status validate_key_id(const char *field, const char *key_id)
{
	uint8_t id[KMS_KEYID_BYTES];
	if (keyid_parse(key_id, strlen(key_id), id) != KMS_OK)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "%s must be a key id (k- and 32 lowercase hex "
		                "digits), not an alias", field);
	return KMS_OK;
}

kms_status validate_alias(const char *field, const char *alias)
{
	if (keyid_alias_validate(alias, strlen(alias)) != KMS_OK)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "%s: %s", field, kms_error_message());
	return KMS_OK;
}

kms_status validate_context(const char *field, size_t n, Kms__StringPair *const *pairs)
{
	context_pair view[KMS_CONTEXT_MAX_PAIRS];
	if (context_check_count(n) != KMS_OK)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "%s: %s", field, kms_error_message());
	for (size_t i = 0; i < n; i++)
		view[i] = context_pair_from_cstr(pairs[i]->key, pairs[i]->value);
	if (context_validate(view, n) != KMS_OK)
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "%s: %s", field, kms_error_message());
	return KMS_OK;
}

kms_status validate_plaintext(const char *field, ProtobufCBinaryData plaintext)
{
	KMS_ENSURE(plaintext.len >= KMS_ENCRYPT_MIN_PLAINTEXT &&
	           plaintext.len <= KMS_ENCRYPT_MAX_PLAINTEXT, KMS_INVALID_ARGUMENT,
	           "%s is %zu bytes: it must be %d to %d (use a data key for more)", field,
	           plaintext.len, KMS_ENCRYPT_MIN_PLAINTEXT, KMS_ENCRYPT_MAX_PLAINTEXT);
	return KMS_OK;
}

kms_status validate_blob_size(const char *field, ProtobufCBinaryData blob)
{
	KMS_ENSURE(blob.len >= 1, KMS_INVALID_ARGUMENT, "%s is required", field);
	/* Longer blobs cannot parse; the parser says why (INVALID_CIPHERTEXT). */
	return KMS_OK;
}

kms_status validate_utf8(const char *field, const char *s, size_t max)
{
	size_t n = strlen(s);
	KMS_ENSURE(n <= max, KMS_INVALID_ARGUMENT, "%s is %zu bytes: at most %zu", field, n, max);
	KMS_ENSURE(kms_utf8_valid((const uint8_t *)s, n, NULL), KMS_INVALID_ARGUMENT,
	           "%s is not valid UTF-8", field);
	return KMS_OK;
}

kms_status validate_tags(size_t n, Kms__StringPair *const *tags)
{
	KMS_ENSURE(n <= KMS_TAGS_MAX, KMS_INVALID_ARGUMENT, "%zu tags: at most %d per key", n,
	           KMS_TAGS_MAX);
	for (size_t i = 0; i < n; i++) {
		size_t klen = strlen(tags[i]->key);
		KMS_ENSURE(klen >= KMS_TAG_KEY_MIN && klen <= KMS_TAG_KEY_MAX, KMS_INVALID_ARGUMENT,
		           "tag %zu: key must be %d to %d bytes", i, KMS_TAG_KEY_MIN, KMS_TAG_KEY_MAX);
		KMS_GUARD(validate_utf8("tag key", tags[i]->key, KMS_TAG_KEY_MAX));
		KMS_GUARD(validate_utf8("tag value", tags[i]->value, KMS_TAG_VALUE_MAX));
		for (size_t j = 0; j < i; j++)
			KMS_ENSURE(strcmp(tags[i]->key, tags[j]->key) != 0, KMS_INVALID_ARGUMENT,
			           "tags %zu and %zu have the same key", j, i);
	}
	return KMS_OK;
}

kms_status validate_rotation_days(uint32_t days)
{
	KMS_ENSURE(days <= KMS_ROTATION_DAYS_MAX, KMS_INVALID_ARGUMENT,
	           "rotation_period_days is %u: use 1 to %d, or 0 for no automatic rotation",
	           days, KMS_ROTATION_DAYS_MAX);
	return KMS_OK;
}

kms_status validate_list(uint32_t limit, const char *page_token)
{
	KMS_ENSURE(limit <= KMS_LIST_LIMIT_MAX, KMS_INVALID_ARGUMENT,
	           "limit is %u: at most %d", limit, KMS_LIST_LIMIT_MAX);
	KMS_ENSURE(strlen(page_token) <= KMS_PAGE_TOKEN_MAX, KMS_INVALID_ARGUMENT,
	           "page_token is not one this daemon issued");
	return KMS_OK;
}
