/*
 * test_e2e_hostile: requests a hostile peer can send, against a real kmsd
 * on a real SoftHSM token, and what the audit log then says about them.
 * One negative test per finding of the request-path read-through:
 *
 * (1) long_alias_audited_whole: an alias is up to 256 bytes but the audit
 *     slot for the key held 39: a failed DescribeKey/Encrypt on a long alias
 *     was logged under a prefix of it, which can be another alias.
 * (2) batch_audits_first_key: each batch item noted its key over the last,
 *     so a batch under keys A then B was logged under B with A's context.
 * (3) nul_in_string_refused: protobuf-c hands strings over NUL-terminated,
 *     so an encryption context value "acme\0evil" was bound and audited as
 *     "acme", and a key id "k-...\0junk" used as "k-...". Both must be
 *     INVALID_ARGUMENT.
 * (4) batch_failures_and_many_keys: a batch whose items fail in
 *     validation and in the keyring, under more distinct keys than its
 *     audit entry once listed: each item has its own status and message,
 *     and the entry counts the failures and lists every key and item.
 * (5) audit_records_what_was_asked: after a clean stop the published log
 *     verifies, every request above is in it exactly once, with the whole
 *     alias, the batch's first key, and the refusals.
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

#include "tests/support/audit_check.h"
#include "tests/support/harness.h"

#define RAW_TIMEOUT_MS 10000
#define LONG_ALIAS_NAME 70 /* > the old 39-byte slot, < the 250 allowed */
#define LISTED_KEYS 32      /* more distinct keys than entries once listed */
#define UNKNOWN_KEYS (LISTED_KEYS + 2)
#define MIXED_ITEMS (UNKNOWN_KEYS + 3)

static harness H;
static char key_a[35], key_b[35];
static char long_alias[8 + LONG_ALIAS_NAME];
static char unknown[UNKNOWN_KEYS][35]; /* well-formed key ids of no key */

static Kms__Response *call_id(const char *id, Kms__Request *req)
{
	req->request_id = (char *)(uintptr_t)id;
	Kms__Response *r = harness_call(&H, req);
	if (!r)
		fail_msg("request %s: no answer", id);
	assert_string_equal(r->request_id, id);
	return r;
}

static void expect_and_free(Kms__Response *r, Kms__Status want)
{
	if (r->status != want)
		fail_msg("request %s: status %d, wanted %d: %s", r->request_id, r->status, want,
		         r->message);
	kms__response__free_unpacked(r, NULL);
}

/* Sends a packed request in which the first 'X' after `marker` has become a
 * NUL byte (protobuf-c cannot pack one: it takes strlen), and returns the
 * reply's status. */
static Kms__Status send_with_nul(Kms__Request *req, const char *marker)
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
	assert_string_equal(r->request_id, req->request_id);
	Kms__Status st = r->status;
	if (st != KMS__STATUS__INVALID_ARGUMENT)
		fprintf(stderr, "request %s: status %d: %s\n", r->request_id, st, r->message);
	kms__response__free_unpacked(r, NULL);
	return st;
}

static int group_setup(void **state)
{
	(void)state;
	harness_options o = { 0 };
	if (!harness_start(&H, &o)) {
		fprintf(stderr, "kmsd did not start; see %s\n", H.log);
		return -1;
	}
	if (!harness_create_key(&H, NULL, key_a) || !harness_create_key(&H, NULL, key_b))
		return -1;
	memcpy(long_alias, "alias/", 6);
	memset(long_alias + 6, 'q', LONG_ALIAS_NAME);
	long_alias[6 + LONG_ALIAS_NAME] = '\0';
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (H.pid > 0)
		harness_kill9(&H);
	return 0;
}

static void long_alias_audited_whole(void **state)
{
	(void)state;
	Kms__DescribeKeyRequest d = KMS__DESCRIBE_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	d.key_id = long_alias;
	req.op_case = KMS__REQUEST__OP_DESCRIBE_KEY;
	req.describe_key = &d;
	expect_and_free(call_id("hostile-long-alias-describe", &req), KMS__STATUS__NOT_FOUND);

	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	Kms__Request ereq = KMS__REQUEST__INIT;
	e.key_id = long_alias;
	e.plaintext.data = (uint8_t *)"hostile";
	e.plaintext.len = 7;
	ereq.op_case = KMS__REQUEST__OP_ENCRYPT;
	ereq.encrypt = &e;
	expect_and_free(call_id("hostile-long-alias-encrypt", &ereq), KMS__STATUS__NOT_FOUND);

	/* In a batch the item fails alone; the batch is logged under it. */
	Kms__EncryptRequest *items[1] = { &e };
	Kms__BatchEncryptRequest be = KMS__BATCH_ENCRYPT_REQUEST__INIT;
	be.n_items = 1;
	be.items = items;
	Kms__Request breq = KMS__REQUEST__INIT;
	breq.op_case = KMS__REQUEST__OP_BATCH_ENCRYPT;
	breq.batch_encrypt = &be;
	Kms__Response *r = call_id("hostile-long-alias-batch", &breq);
	assert_int_equal(r->status, KMS__STATUS__OK);
	assert_int_equal(r->batch_encrypt->n_results, 1);
	assert_int_equal(r->batch_encrypt->results[0]->status, KMS__STATUS__NOT_FOUND);
	kms__response__free_unpacked(r, NULL);
}

static void batch_audits_first_key(void **state)
{
	(void)state;
	Kms__EncryptRequest items[2] = { KMS__ENCRYPT_REQUEST__INIT, KMS__ENCRYPT_REQUEST__INIT };
	Kms__EncryptRequest *ptrs[2] = { &items[0], &items[1] };
	items[0].key_id = key_a;
	items[1].key_id = key_b;
	for (size_t i = 0; i < 2; i++) {
		items[i].plaintext.data = (uint8_t *)"batch item";
		items[i].plaintext.len = 10;
	}
	Kms__BatchEncryptRequest be = KMS__BATCH_ENCRYPT_REQUEST__INIT;
	be.n_items = 2;
	be.items = ptrs;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_BATCH_ENCRYPT;
	req.batch_encrypt = &be;
	Kms__Response *r = call_id("hostile-batch-two-keys", &req);
	assert_int_equal(r->status, KMS__STATUS__OK);
	assert_int_equal(r->batch_encrypt->n_results, 2);
	assert_int_equal(r->batch_encrypt->results[0]->status, KMS__STATUS__OK);
	assert_int_equal(r->batch_encrypt->results[1]->status, KMS__STATUS__OK);
	assert_string_equal(r->batch_encrypt->results[0]->result->key_id, key_a);
	assert_string_equal(r->batch_encrypt->results[1]->result->key_id, key_b);
	kms__response__free_unpacked(r, NULL);
}

/* Items: key_a (with a context), one with no key_id (refused alone), one
 * per unknown key (NOT_FOUND, but each names its key), key_a again. */
static void batch_failures_and_many_keys(void **state)
{
	(void)state;
	Kms__EncryptRequest items[MIXED_ITEMS];
	Kms__EncryptRequest *ptrs[MIXED_ITEMS];
	Kms__StringPair pair = KMS__STRING_PAIR__INIT;
	Kms__StringPair *pairs[1] = { &pair };
	pair.key = "purpose";
	pair.value = "first";
	for (size_t i = 0; i < MIXED_ITEMS; i++) {
		kms__encrypt_request__init(&items[i]);
		items[i].plaintext.data = (uint8_t *)"batch item";
		items[i].plaintext.len = 10;
		ptrs[i] = &items[i];
	}
	items[0].key_id = key_a;
	items[0].n_encryption_context = 1;
	items[0].encryption_context = pairs;
	for (size_t i = 0; i < UNKNOWN_KEYS; i++) {
		snprintf(unknown[i], sizeof unknown[i], "k-%032zx", i + 1);
		items[2 + i].key_id = unknown[i];
	}
	items[MIXED_ITEMS - 1].key_id = key_a;
	Kms__BatchEncryptRequest be = KMS__BATCH_ENCRYPT_REQUEST__INIT;
	be.n_items = MIXED_ITEMS;
	be.items = ptrs;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_BATCH_ENCRYPT;
	req.batch_encrypt = &be;
	Kms__Response *r = call_id("hostile-batch-mixed", &req);
	assert_int_equal(r->status, KMS__STATUS__OK);
	assert_int_equal(r->result_case, KMS__RESPONSE__RESULT_BATCH_ENCRYPT);
	assert_int_equal(r->batch_encrypt->n_results, MIXED_ITEMS);
	Kms__BatchEncryptResult **res = r->batch_encrypt->results;
	assert_int_equal(res[0]->status, KMS__STATUS__OK);
	assert_string_equal(res[0]->result->key_id, key_a);
	assert_string_equal(res[0]->message, "");
	assert_int_equal(res[1]->status, KMS__STATUS__INVALID_ARGUMENT);
	assert_null(res[1]->result);
	assert_true(strncmp(res[1]->message, "item 1: key_id is required", 26) == 0);
	for (size_t i = 2; i < 2 + UNKNOWN_KEYS; i++) {
		char prefix[32];
		snprintf(prefix, sizeof prefix, "item %zu: ", i);
		assert_int_equal(res[i]->status, KMS__STATUS__NOT_FOUND);
		assert_null(res[i]->result);
		assert_true(strncmp(res[i]->message, prefix, strlen(prefix)) == 0);
	}
	assert_int_equal(res[MIXED_ITEMS - 1]->status, KMS__STATUS__OK);
	assert_string_equal(res[MIXED_ITEMS - 1]->result->key_id, key_a);
	kms__response__free_unpacked(r, NULL);
}

static void nul_in_string_refused(void **state)
{
	(void)state;
	Kms__StringPair pair = KMS__STRING_PAIR__INIT;
	Kms__StringPair *pairs[1] = { &pair };
	pair.key = "tenant";
	pair.value = "acmeXevil";
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	e.key_id = key_a;
	e.plaintext.data = (uint8_t *)"bound to a context";
	e.plaintext.len = 18;
	e.n_encryption_context = 1;
	e.encryption_context = pairs;
	Kms__Request req = KMS__REQUEST__INIT;
	req.schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	req.request_id = "hostile-nul-context";
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &e;
	assert_int_equal(send_with_nul(&req, "acmeX"), KMS__STATUS__INVALID_ARGUMENT);

	/* The same bytes without the NUL still work. */
	pair.value = "acme";
	req.request_id = "hostile-nul-context-control";
	Kms__Response *r = harness_call(&H, &req);
	assert_non_null(r);
	expect_and_free(r, KMS__STATUS__OK);

	char key_junk[64];
	snprintf(key_junk, sizeof key_junk, "%sXjunk", key_a);
	e.key_id = key_junk;
	e.n_encryption_context = 0;
	e.encryption_context = NULL;
	req.request_id = "hostile-nul-key-id";
	assert_int_equal(send_with_nul(&req, "Xjunk"), KMS__STATUS__INVALID_ARGUMENT);
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

static void audit_records_what_was_asked(void **state)
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

	json_t *entry = only_entry(&e, "hostile-long-alias-describe");
	assert_string_equal(audit_str(entry, "status"), "NOT_FOUND");
	assert_string_equal(audit_str(entry, "key_id"), long_alias);
	entry = only_entry(&e, "hostile-long-alias-encrypt");
	assert_string_equal(audit_str(entry, "status"), "NOT_FOUND");
	assert_string_equal(audit_str(entry, "key_id"), long_alias);

	entry = only_entry(&e, "hostile-long-alias-batch");
	assert_string_equal(audit_str(entry, "key_id"), long_alias);

	entry = only_entry(&e, "hostile-batch-two-keys");
	assert_string_equal(audit_str(entry, "status"), "OK");
	assert_string_equal(audit_str(entry, "key_id"), key_a);
	/* Every key the batch used is named, not only the first. */
	json_t *keys = json_object_get(entry, "batch_keys");
	assert_true(json_is_array(keys));
	assert_int_equal(json_array_size(keys), 2);
	assert_string_equal(json_string_value(json_array_get(keys, 0)), key_a);
	assert_string_equal(json_string_value(json_array_get(keys, 1)), key_b);
	assert_int_equal(json_integer_value(json_object_get(entry, "batch_failed")), 0);

	entry = only_entry(&e, "hostile-batch-mixed");
	assert_string_equal(audit_str(entry, "status"), "OK");
	assert_string_equal(audit_str(entry, "key_id"), key_a);
	assert_int_equal(json_integer_value(json_object_get(entry, "key_version")), 1);
	json_t *context = json_object_get(entry, "encryption_context");
	assert_int_equal(json_object_size(context), 1);
	assert_string_equal(json_string_value(json_object_get(context, "purpose")), "first");
	assert_int_equal(json_integer_value(json_object_get(entry, "batch_items")), MIXED_ITEMS);
	/* Every distinct key, each once, in first-use order. */
	keys = json_object_get(entry, "batch_keys");
	assert_int_equal(json_array_size(keys), 1 + UNKNOWN_KEYS);
	assert_string_equal(json_string_value(json_array_get(keys, 0)), key_a);
	for (size_t i = 1; i <= UNKNOWN_KEYS; i++)
		assert_string_equal(json_string_value(json_array_get(keys, i)), unknown[i - 1]);
	assert_int_equal(json_array_size(json_object_get(entry, "items")), MIXED_ITEMS);
	assert_int_equal(json_integer_value(json_object_get(entry, "batch_failed")),
	                 1 + UNKNOWN_KEYS);

	entry = only_entry(&e, "hostile-nul-context");
	assert_string_equal(audit_str(entry, "status"), "INVALID_ARGUMENT");
	/* Not {"tenant":"acme"}: a prefix could pass for a real value. */
	assert_false(json_is_object(json_object_get(entry, "encryption_context")));
	entry = only_entry(&e, "hostile-nul-context-control");
	assert_string_equal(audit_str(entry, "status"), "OK");
	entry = only_entry(&e, "hostile-nul-key-id");
	assert_string_equal(audit_str(entry, "status"), "INVALID_ARGUMENT");
	audit_entries_free(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(long_alias_audited_whole),
		cmocka_unit_test(batch_audits_first_key),
		cmocka_unit_test(batch_failures_and_many_keys),
		cmocka_unit_test(nul_in_string_refused),
		cmocka_unit_test(audit_records_what_was_asked),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
