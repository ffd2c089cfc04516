/*
 * test_audit_entries: what an audit entry says about a request's items and
 * context values, read from the real published log of a real kmsd on a real
 * SoftHSM token.
 *
 * (1) batch_items_recorded: a batch Decrypt over tenants A, B and C (three
 *     keys, three contexts, C's context wrong) was logged with A's context
 *     only. Its entry must list every item: key, version, context, status.
 * (2) big_batch_fits: a 1000-item BatchEncrypt with 1000 different
 *     contexts, too large to record in full: its entry stays under the
 *     65,535-byte entry limit, every item listed, each context as the
 *     SHA-256 of its canonical encoding.
 * (3) nul_value_not_recorded_as_prefix: a context value "acme\0evil" is
 *     refused, and its entry must not say {"tenant":"acme"}.
 * (4) long_value_marked_truncated: a 300-byte context value is recorded as
 *     its first 256 bytes, flagged truncated, with its length and SHA-256.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "tests/support/audit_check.h"
#include "tests/support/harness.h"

#define TENANTS 3
#define BIG_BATCH 1000
#define LONG_VALUE 300
#define SHOWN 256
#define RAW_TIMEOUT_MS 10000
#define ENTRY_LIMIT 65535

static harness H;
static char keys[TENANTS][35];
static char long_value[LONG_VALUE + 1];

static int group_setup(void **state)
{
	(void)state;
	harness_options o = { 0 };
	if (!harness_start(&H, &o))
		return -1;
	for (int i = 0; i < TENANTS; i++)
		if (!harness_create_key(&H, NULL, keys[i]))
			return -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (H.pid > 0)
		harness_kill9(&H);
	return 0;
}

static Kms__Response *call(const char *id, Kms__Request *req)
{
	req->request_id = (char *)(uintptr_t)id;
	Kms__Response *r = harness_call(&H, req);
	if (!r)
		fail_msg("request %s: no answer; see %s", id, H.log);
	return r;
}

/* Encrypts under key with {"tenant": tenant}; returns the blob (malloc'ed). */
static uint8_t *seal(const char *id, const char *key, const char *tenant, size_t *len)
{
	Kms__StringPair pair = KMS__STRING_PAIR__INIT;
	Kms__StringPair *pairs[1] = { &pair };
	pair.key = "tenant";
	pair.value = (char *)(uintptr_t)tenant;
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	e.key_id = (char *)(uintptr_t)key;
	e.plaintext.data = (uint8_t *)"tenant data";
	e.plaintext.len = 11;
	e.n_encryption_context = 1;
	e.encryption_context = pairs;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &e;
	Kms__Response *r = call(id, &req);
	assert_int_equal(r->status, KMS__STATUS__OK);
	*len = r->encrypt->ciphertext_blob.len;
	uint8_t *blob = malloc(*len);
	assert_non_null(blob);
	memcpy(blob, r->encrypt->ciphertext_blob.data, *len);
	kms__response__free_unpacked(r, NULL);
	return blob;
}

static void batch_items_recorded(void **state)
{
	(void)state;
	static const char *const tenants[TENANTS] = { "A", "B", "C" };
	uint8_t *blobs[TENANTS];
	size_t lens[TENANTS];
	for (int i = 0; i < TENANTS; i++) {
		char id[32];
		snprintf(id, sizeof id, "ent-seal-%d", i);
		blobs[i] = seal(id, keys[i], tenants[i], &lens[i]);
	}
	Kms__StringPair pairs[TENANTS];
	Kms__StringPair *pair_ptrs[TENANTS];
	Kms__DecryptRequest items[TENANTS];
	Kms__DecryptRequest *item_ptrs[TENANTS];
	for (int i = 0; i < TENANTS; i++) {
		kms__string_pair__init(&pairs[i]);
		pairs[i].key = "tenant";
		/* C's item names the wrong tenant: it fails alone. */
		pairs[i].value = (char *)(uintptr_t)(i == 2 ? "not-C" : tenants[i]);
		pair_ptrs[i] = &pairs[i];
		kms__decrypt_request__init(&items[i]);
		items[i].ciphertext_blob.data = blobs[i];
		items[i].ciphertext_blob.len = lens[i];
		items[i].n_encryption_context = 1;
		items[i].encryption_context = &pair_ptrs[i];
		item_ptrs[i] = &items[i];
	}
	Kms__BatchDecryptRequest bd = KMS__BATCH_DECRYPT_REQUEST__INIT;
	bd.n_items = TENANTS;
	bd.items = item_ptrs;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_BATCH_DECRYPT;
	req.batch_decrypt = &bd;
	Kms__Response *r = call("ent-batch-3", &req);
	assert_int_equal(r->status, KMS__STATUS__OK);
	assert_int_equal(r->batch_decrypt->n_results, TENANTS);
	assert_int_equal(r->batch_decrypt->results[0]->status, KMS__STATUS__OK);
	assert_int_equal(r->batch_decrypt->results[1]->status, KMS__STATUS__OK);
	assert_int_equal(r->batch_decrypt->results[2]->status, KMS__STATUS__INVALID_CIPHERTEXT);
	kms__response__free_unpacked(r, NULL);
	for (int i = 0; i < TENANTS; i++)
		free(blobs[i]);
}

static void big_batch_fits(void **state)
{
	(void)state;
	static Kms__StringPair pairs[BIG_BATCH];
	static Kms__StringPair *pair_ptrs[BIG_BATCH];
	static Kms__EncryptRequest items[BIG_BATCH];
	static Kms__EncryptRequest *item_ptrs[BIG_BATCH];
	static char values[BIG_BATCH][96];
	for (int i = 0; i < BIG_BATCH; i++) {
		snprintf(values[i], sizeof values[i], "tenant-%04d-of-a-big-batch-%s", i,
		         "long-enough-that-1000-do-not-fit-in-full");
		kms__string_pair__init(&pairs[i]);
		pairs[i].key = "tenant";
		pairs[i].value = values[i];
		pair_ptrs[i] = &pairs[i];
		kms__encrypt_request__init(&items[i]);
		items[i].key_id = keys[i % TENANTS];
		items[i].plaintext.data = (uint8_t *)"x";
		items[i].plaintext.len = 1;
		items[i].n_encryption_context = 1;
		items[i].encryption_context = &pair_ptrs[i];
		item_ptrs[i] = &items[i];
	}
	Kms__BatchEncryptRequest be = KMS__BATCH_ENCRYPT_REQUEST__INIT;
	be.n_items = BIG_BATCH;
	be.items = item_ptrs;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_BATCH_ENCRYPT;
	req.batch_encrypt = &be;
	Kms__Response *r = call("ent-batch-1000", &req);
	assert_int_equal(r->status, KMS__STATUS__OK);
	assert_int_equal(r->batch_encrypt->n_results, BIG_BATCH);
	kms__response__free_unpacked(r, NULL);
}

/* Packs req with the first 'X' after marker turned into a NUL byte. */
static void send_with_nul(Kms__Request *req, const char *marker)
{
	size_t n = kms__request__get_packed_size(req);
	uint8_t *bytes = malloc(n);
	assert_non_null(bytes);
	kms__request__pack(req, bytes);
	uint8_t *at = memmem(bytes, n, marker, strlen(marker));
	assert_non_null(at);
	at = memchr(at, 'X', n - (size_t)(at - bytes));
	assert_non_null(at);
	*at = 0;
	size_t reply_len = 0;
	uint8_t *reply = harness_raw(H.ipc_url, bytes, n, RAW_TIMEOUT_MS, &reply_len);
	free(bytes);
	assert_non_null(reply);
	Kms__Response *r = kms__response__unpack(NULL, reply_len, reply);
	free(reply);
	assert_non_null(r);
	assert_int_equal(r->status, KMS__STATUS__INVALID_ARGUMENT);
	kms__response__free_unpacked(r, NULL);
}

static Kms__Response *encrypt_with(const char *id, const char *key, const char *value)
{
	Kms__StringPair pair = KMS__STRING_PAIR__INIT;
	Kms__StringPair *pairs[1] = { &pair };
	pair.key = "tenant";
	pair.value = (char *)(uintptr_t)value;
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	e.key_id = (char *)(uintptr_t)key;
	e.plaintext.data = (uint8_t *)"v";
	e.plaintext.len = 1;
	e.n_encryption_context = 1;
	e.encryption_context = pairs;
	Kms__Request req = KMS__REQUEST__INIT;
	req.schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	req.request_id = (char *)(uintptr_t)id;
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &e;
	if (strchr(value, 'X')) {
		send_with_nul(&req, "acmeX");
		return NULL;
	}
	return call(id, &req);
}

static void nul_value_not_recorded_as_prefix(void **state)
{
	(void)state;
	assert_null(encrypt_with("ent-nul-value", keys[0], "acmeXevil"));
}

static void long_value_marked_truncated(void **state)
{
	(void)state;
	for (int i = 0; i < LONG_VALUE; i++)
		long_value[i] = (char)('a' + i % 26);
	Kms__Response *r = encrypt_with("ent-long-value", keys[0], long_value);
	assert_int_equal(r->status, KMS__STATUS__OK);
	kms__response__free_unpacked(r, NULL);
}

static json_t *only_entry(const audit_entries *e, const char *id)
{
	json_t *entry = NULL;
	size_t n = audit_count_id(e, id, &entry);
	if (n != 1)
		fail_msg("request %s is in the audit log %zu times", id, n);
	audit_check_common(entry);
	return entry;
}

static void check_item(json_t *items, size_t i, json_t *keys_listed, const char *key,
                       const char *tenant, const char *status)
{
	json_t *item = json_array_get(items, i);
	assert_int_equal(json_array_size(item), 4);
	json_int_t k = json_integer_value(json_array_get(item, 0));
	assert_string_equal(json_string_value(json_array_get(keys_listed, (size_t)k)), key);
	assert_int_equal(json_integer_value(json_array_get(item, 1)), 1);
	json_t *context = json_array_get(item, 2);
	assert_true(json_is_object(context));
	assert_string_equal(json_string_value(json_object_get(context, "tenant")), tenant);
	assert_string_equal(json_string_value(json_array_get(item, 3)), status);
}

static void sha256_hex(const void *bytes, size_t len, char out[65])
{
	uint8_t md[SHA256_DIGEST_LENGTH];
	SHA256(bytes, len, md);
	for (size_t i = 0; i < sizeof md; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void the_log_says_so(void **state)
{
	(void)state;
	char vkey[AUDIT_VKEY_MAX];
	assert_true(audit_vkey_from_log(&H, vkey));
	int code = harness_stop(&H);
	if (code != 0)
		fail_msg("kmsd exit code %d after SIGTERM; see %s", code, H.log);
	char pub[700];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	audit_entries e;
	audit_load(pub, vkey, NULL, &e);

	/* (1) every item of the batch, with its own key, context and status. */
	json_t *entry = only_entry(&e, "ent-batch-3");
	json_t *listed = json_object_get(entry, "batch_keys");
	json_t *items = json_object_get(entry, "items");
	assert_int_equal(json_array_size(listed), TENANTS);
	assert_int_equal(json_array_size(items), TENANTS);
	check_item(items, 0, listed, keys[0], "A", "OK");
	check_item(items, 1, listed, keys[1], "B", "OK");
	check_item(items, 2, listed, keys[2], "not-C", "INVALID_CIPHERTEXT");
	assert_int_equal(json_integer_value(json_object_get(entry, "batch_failed")), 1);
	assert_null(json_object_get(entry, "items_unlisted"));

	/* (2) 1000 items under the limit, each context a digest. */
	entry = only_entry(&e, "ent-batch-1000");
	char *text = json_dumps(entry, JSON_COMPACT | JSON_PRESERVE_ORDER);
	assert_non_null(text);
	size_t size = strlen(text);
	free(text);
	fprintf(stderr, "1000-item batch entry: %zu bytes (limit %d)\n", size, ENTRY_LIMIT);
	assert_true(size <= ENTRY_LIMIT);
	items = json_object_get(entry, "items");
	assert_int_equal(json_array_size(items), BIG_BATCH);
	assert_null(json_object_get(entry, "items_unlisted"));
	assert_int_equal(json_array_size(json_object_get(entry, "batch_keys")), TENANTS);
	/* Item 7's digest: SHA-256 of the canonical encoding of
	 * {"tenant": "tenant-0007-of-a-big-batch"} (docs/ciphertext-format.md):
	 * u16 count, then per pair u16 key length, key, u16 value length, value. */
	uint8_t canon[128];
	const char *k = "tenant",
	           *v = "tenant-0007-of-a-big-batch-long-enough-that-1000-do-not-fit-in-full";
	size_t kl = strlen(k), vl = strlen(v), n = 0;
	canon[n++] = 0;
	canon[n++] = 1;
	canon[n++] = (uint8_t)(kl >> 8);
	canon[n++] = (uint8_t)kl;
	memcpy(canon + n, k, kl);
	n += kl;
	canon[n++] = (uint8_t)(vl >> 8);
	canon[n++] = (uint8_t)vl;
	memcpy(canon + n, v, vl);
	n += vl;
	uint8_t md[SHA256_DIGEST_LENGTH];
	SHA256(canon, n, md);
	char b64[64];
	assert_int_equal(EVP_EncodeBlock((unsigned char *)b64, md, sizeof md), 44);
	json_t *item7 = json_array_get(items, 7);
	assert_string_equal(json_string_value(json_array_get(item7, 2)), b64);
	assert_string_equal(json_string_value(json_array_get(item7, 3)), "OK");

	/* (3) refused, and not recorded as {"tenant":"acme"}. */
	entry = only_entry(&e, "ent-nul-value");
	assert_string_equal(audit_str(entry, "status"), "INVALID_ARGUMENT");
	json_t *context = json_object_get(entry, "encryption_context");
	assert_false(json_is_object(context));
	assert_non_null(strstr(json_string_value(context), "U+0000"));

	/* (4) cut, and saying so. */
	entry = only_entry(&e, "ent-long-value");
	json_t *value = json_object_get(json_object_get(entry, "encryption_context"), "tenant");
	assert_true(json_is_object(value));
	assert_true(json_is_true(json_object_get(value, "truncated")));
	assert_int_equal(json_integer_value(json_object_get(value, "bytes")), LONG_VALUE);
	assert_int_equal(strlen(json_string_value(json_object_get(value, "value"))), SHOWN);
	assert_memory_equal(json_string_value(json_object_get(value, "value")), long_value, SHOWN);
	char digest[65];
	sha256_hex(long_value, LONG_VALUE, digest);
	assert_string_equal(json_string_value(json_object_get(value, "sha256")), digest);
	audit_entries_free(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(batch_items_recorded),
		cmocka_unit_test(big_batch_fits),
		cmocka_unit_test(nul_value_not_recorded_as_prefix),
		cmocka_unit_test(long_value_marked_truncated),
		cmocka_unit_test(the_log_says_so),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
