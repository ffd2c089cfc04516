/*
 * The largest reply kmsd can send stays within KMS_REPLY_MAX
 * (include/kms/limits.h, docs/protocol.md "The largest reply"): each batch
 * reply is packed at its worst (KMS_BATCH_MAX items, each with the largest
 * result the operation can return, the longest item message, the largest
 * varints, a full-length request id and envelope message), and a ListKeys
 * page at its worst (KMS_LIST_REPLY_BUDGET of keys, then one more key with
 * every field and tag at its maximum, which op_list_keys still includes).
 * Prints the sizes; they are the figures docs/protocol.md quotes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kms/kms.pb-c.h>
#include <kms/limits.h>

#include "common/error.h"
#include "kms/format/blob.h"

static char request_id[KMS_REQUEST_ID_MAX + 1];
static char item_message[KMS_ERROR_MAX];   /* 255 bytes and the NUL */
static char key_id[] = "k-0123456789abcdef0123456789abcdef";
static uint8_t blob[KMS_BLOB_MAX_LEN];
static uint8_t plaintext[KMS_ENCRYPT_MAX_PLAINTEXT];
static uint8_t data_key[KMS_DATA_KEY_LEN];
static uint8_t data_key_blob[KMS_BLOB_HEADER_MAX + KMS_DATA_KEY_LEN + KMS_BLOB_TAG_LEN];

static void envelope(Kms__Response *r)
{
	memset(request_id, 'r', KMS_REQUEST_ID_MAX);
	memset(item_message, 'm', sizeof item_message - 1);
	r->schema_version = UINT32_MAX;
	r->request_id = request_id;
	r->status = KMS__STATUS__UNAVAILABLE;
	r->message = item_message;
}

static size_t packed(const Kms__Response *r, const char *what)
{
	size_t n = kms__response__get_packed_size(r);
	printf("%-28s %9zu bytes (KMS_REPLY_MAX %zu)\n", what, n, (size_t)KMS_REPLY_MAX);
	return n;
}

static void batch_encrypt_fits(void **state)
{
	(void)state;
	static Kms__EncryptResponse res[KMS_BATCH_MAX];
	static Kms__BatchEncryptResult items[KMS_BATCH_MAX];
	static Kms__BatchEncryptResult *ptrs[KMS_BATCH_MAX];
	for (size_t i = 0; i < KMS_BATCH_MAX; i++) {
		kms__encrypt_response__init(&res[i]);
		res[i].ciphertext_blob = (ProtobufCBinaryData){ sizeof blob, blob };
		res[i].key_id = key_id;
		res[i].key_version = UINT32_MAX;
		kms__batch_encrypt_result__init(&items[i]);
		items[i].status = KMS__STATUS__UNAVAILABLE;
		items[i].message = item_message;
		items[i].result = &res[i];
		ptrs[i] = &items[i];
	}
	Kms__BatchEncryptResponse b = KMS__BATCH_ENCRYPT_RESPONSE__INIT;
	b.n_results = KMS_BATCH_MAX;
	b.results = ptrs;
	Kms__Response r = KMS__RESPONSE__INIT;
	envelope(&r);
	r.result_case = KMS__RESPONSE__RESULT_BATCH_ENCRYPT;
	r.batch_encrypt = &b;
	size_t n = packed(&r, "BatchEncrypt, worst case");
	assert_true(n <= KMS_REPLY_MAX);
	assert_true(n > KMS_BATCH_MAX * sizeof blob); /* every item was counted */
}

static void batch_decrypt_fits(void **state)
{
	(void)state;
	static Kms__DecryptResponse res[KMS_BATCH_MAX];
	static Kms__BatchDecryptResult items[KMS_BATCH_MAX];
	static Kms__BatchDecryptResult *ptrs[KMS_BATCH_MAX];
	for (size_t i = 0; i < KMS_BATCH_MAX; i++) {
		kms__decrypt_response__init(&res[i]);
		res[i].plaintext = (ProtobufCBinaryData){ sizeof plaintext, plaintext };
		res[i].key_id = key_id;
		res[i].key_version = UINT32_MAX;
		kms__batch_decrypt_result__init(&items[i]);
		items[i].status = KMS__STATUS__UNAVAILABLE;
		items[i].message = item_message;
		items[i].result = &res[i];
		ptrs[i] = &items[i];
	}
	Kms__BatchDecryptResponse b = KMS__BATCH_DECRYPT_RESPONSE__INIT;
	b.n_results = KMS_BATCH_MAX;
	b.results = ptrs;
	Kms__Response r = KMS__RESPONSE__INIT;
	envelope(&r);
	r.result_case = KMS__RESPONSE__RESULT_BATCH_DECRYPT;
	r.batch_decrypt = &b;
	size_t n = packed(&r, "BatchDecrypt, worst case");
	assert_true(n <= KMS_REPLY_MAX);
	assert_true(n > KMS_BATCH_MAX * sizeof plaintext);
}

static void batch_data_key_fits(void **state)
{
	(void)state;
	static Kms__GenerateDataKeyResponse res[KMS_BATCH_MAX];
	static Kms__BatchGenerateDataKeyResult items[KMS_BATCH_MAX];
	static Kms__BatchGenerateDataKeyResult *ptrs[KMS_BATCH_MAX];
	for (size_t i = 0; i < KMS_BATCH_MAX; i++) {
		kms__generate_data_key_response__init(&res[i]);
		res[i].plaintext = (ProtobufCBinaryData){ sizeof data_key, data_key };
		res[i].ciphertext_blob = (ProtobufCBinaryData){ sizeof data_key_blob, data_key_blob };
		res[i].key_id = key_id;
		res[i].key_version = UINT32_MAX;
		kms__batch_generate_data_key_result__init(&items[i]);
		items[i].status = KMS__STATUS__UNAVAILABLE;
		items[i].message = item_message;
		items[i].result = &res[i];
		ptrs[i] = &items[i];
	}
	Kms__BatchGenerateDataKeyResponse b = KMS__BATCH_GENERATE_DATA_KEY_RESPONSE__INIT;
	b.n_results = KMS_BATCH_MAX;
	b.results = ptrs;
	Kms__Response r = KMS__RESPONSE__INIT;
	envelope(&r);
	r.result_case = KMS__RESPONSE__RESULT_BATCH_GENERATE_DATA_KEY;
	r.batch_generate_data_key = &b;
	size_t n = packed(&r, "BatchGenerateDataKey, worst");
	assert_true(n <= KMS_REPLY_MAX);
}

/* One key's metadata with every bounded field at its maximum: 50 tags of
 * 128 + 256 bytes, a 256-byte description, a 32-byte region, 64-bit times;
 * its versions and aliases as given. */
static size_t key_metadata_size(size_t versions, size_t aliases)
{
	static char tag_key[KMS_TAGS_MAX][KMS_TAG_KEY_MAX + 1];
	static char tag_value[KMS_TAG_VALUE_MAX + 1];
	static char description[KMS_DESCRIPTION_MAX + 1];
	static char region[KMS_BLOB_REGION_MAX + 1];
	static char alias[6 + 250 + 1];
	memset(tag_value, 'v', KMS_TAG_VALUE_MAX);
	memset(description, 'd', KMS_DESCRIPTION_MAX);
	memset(region, 'r', KMS_BLOB_REGION_MAX);
	memcpy(alias, "alias/", 6);
	memset(alias + 6, 'a', 250);
	Kms__StringPair tags[KMS_TAGS_MAX], *tag_ptrs[KMS_TAGS_MAX];
	for (size_t i = 0; i < KMS_TAGS_MAX; i++) {
		memset(tag_key[i], 'k', KMS_TAG_KEY_MAX);
		kms__string_pair__init(&tags[i]);
		tags[i].key = tag_key[i];
		tags[i].value = tag_value;
		tag_ptrs[i] = &tags[i];
	}
	Kms__KeyVersion *vs = calloc(versions + 1, sizeof *vs);
	Kms__KeyVersion **v_ptrs = calloc(versions + 1, sizeof *v_ptrs);
	char **a_ptrs = calloc(aliases + 1, sizeof *a_ptrs);
	assert_non_null(vs);
	assert_non_null(v_ptrs);
	assert_non_null(a_ptrs);
	for (size_t i = 0; i < versions; i++) {
		kms__key_version__init(&vs[i]);
		vs[i].version = UINT32_MAX;
		vs[i].created_at = INT64_MIN;
		vs[i].encryptions = UINT64_MAX;
		v_ptrs[i] = &vs[i];
	}
	for (size_t i = 0; i < aliases; i++)
		a_ptrs[i] = alias;
	Kms__KeyMetadata m = KMS__KEY_METADATA__INIT;
	m.key_id = key_id;
	m.description = description;
	m.key_spec = KMS__KEY_SPEC__ECC_P256;
	m.key_usage = KMS__KEY_USAGE__SIGN_VERIFY;
	m.key_state = KMS__KEY_STATE__DESTROYED;
	m.primary_version = UINT32_MAX;
	m.n_versions = versions;
	m.versions = v_ptrs;
	m.rotation_period_days = UINT32_MAX;
	m.created_at = m.next_rotation_at = m.deletion_date = INT64_MIN;
	m.region = region;
	m.n_aliases = aliases;
	m.aliases = a_ptrs;
	m.n_tags = KMS_TAGS_MAX;
	m.tags = tag_ptrs;
	size_t n = kms__key_metadata__get_packed_size(&m);
	free(vs);
	free(v_ptrs);
	free(a_ptrs);
	return n;
}

static void list_keys_page_fits(void **state)
{
	(void)state;
	/* Ten years of daily rotation and a hundred aliases, on top of the full
	 * tags: a page holds at most the budget, then the key that crossed it. */
	size_t one = key_metadata_size(KMS_ROTATION_DAYS_MAX, 100);
	size_t page = KMS_LIST_REPLY_BUDGET + one + 6 + KMS_PAGE_TOKEN_MAX + 512;
	printf("%-28s %9zu bytes (one key: %zu)\n", "ListKeys page, worst case", page, one);
	assert_true(one > KMS_TAGS_MAX * (KMS_TAG_KEY_MAX + KMS_TAG_VALUE_MAX));
	assert_true(page <= KMS_REPLY_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(batch_encrypt_fits),
		cmocka_unit_test(batch_decrypt_fits),
		cmocka_unit_test(batch_data_key_fits),
		cmocka_unit_test(list_keys_page_fits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
