/*
 * test_wire_messages: what a reply's message may say, against a real kmsd
 * on a real SoftHSM token over its real ipc socket.
 *
 * Error replies carried absolute paths (the store's "store: open
 * /.../data/kms.db: ...", the audit log's and the HSM module's paths) to
 * any caller, unadmitted peers included. Each failure below is caused for
 * real, and every reply's message must hold neither the test's data
 * directory, nor any '/'-rooted path, nor a source position ("file.c:12"),
 * while kmsd's own log keeps the whole line.
 *
 * (1) refusals: bytes that are not a request, a request that repeats a
 *     field, a ciphertext that does not parse. (An unmapped uid's refusal
 *     names the uid only: test_e2e's unmapped_ipc_uid_is_denied.)
 * (2) store_failure: the database file is moved away before a worker first
 *     opens it: the reply is INTERNAL, naming "kms.db" only.
 * (3) decrypt_answers_alike: Decrypt and ReEncrypt told a caller whether a
 *     key and a version exist ("no key k-... version 9 here" against "does
 *     not authenticate"). A blob naming a random key id, one naming an
 *     existing key's version 9, and a tampered blob now get the same status
 *     and message but for the request id; the audit log and kmsd's log keep
 *     the real reasons.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/audit_check.h"
#include "tests/support/harness.h"

#define RAW_TIMEOUT_MS 10000
#define STORE_TRIES 8 /* more than the workers */

static harness H;

static void check_message(const char *what, const char *msg)
{
	printf("# %s: \"%s\"\n", what, msg);
	if (strstr(msg, H.dir) || strstr(msg, ".c:") || strstr(msg, " /") || strstr(msg, "(/"))
		fail_msg("%s: the reply names a path or a source position: %s", what, msg);
	assert_null(strchr(msg, '\n'));
}

static Kms__Response *raw_call(const uint8_t *bytes, size_t n)
{
	size_t len = 0;
	uint8_t *reply = harness_raw(H.ipc_url, bytes, n, RAW_TIMEOUT_MS, &len);
	assert_non_null(reply);
	Kms__Response *r = kms__response__unpack(NULL, len, reply);
	free(reply);
	assert_non_null(r);
	return r;
}

static void setup_kmsd(void)
{
	harness_options o = { .workers = 2 };
	assert_true(harness_start(&H, &o));
}

static void refusals(void **state)
{
	(void)state;
	setup_kmsd();
	const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0x0f };
	Kms__Response *r = raw_call(garbage, sizeof garbage);
	assert_int_equal(r->status, KMS__STATUS__INVALID_ARGUMENT);
	check_message("not a request", r->message);
	kms__response__free_unpacked(r, NULL);

	const uint8_t twice[] = { 0x12, 0x01, 'a', 0x12, 0x01, 'b' }; /* request_id twice */
	r = raw_call(twice, sizeof twice);
	assert_int_equal(r->status, KMS__STATUS__INVALID_ARGUMENT);
	check_message("a field twice", r->message);
	kms__response__free_unpacked(r, NULL);

	uint8_t blob[64];
	memset(blob, 0x41, sizeof blob);
	Kms__DecryptRequest d = KMS__DECRYPT_REQUEST__INIT;
	d.ciphertext_blob.data = blob;
	d.ciphertext_blob.len = sizeof blob;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_DECRYPT;
	req.decrypt = &d;
	r = harness_call(&H, &req);
	assert_non_null(r);
	assert_int_not_equal(r->status, KMS__STATUS__OK);
	check_message("a blob that does not parse", r->message);
	kms__response__free_unpacked(r, NULL);

	assert_int_equal(harness_stop(&H), 0);
}

static void store_failure(void **state)
{
	(void)state;
	setup_kmsd();
	char db[700], away[720];
	snprintf(db, sizeof db, "%s/data/kms.db", H.dir);
	snprintf(away, sizeof away, "%s.away", db);
	assert_int_equal(rename(db, away), 0);
	/* Every request is refused, whichever worker (and store connection,
	 * opened before the move or not) serves it. */
	for (int i = 0; i < STORE_TRIES; i++) {
		Kms__DescribeKeyRequest dk = KMS__DESCRIBE_KEY_REQUEST__INIT;
		dk.key_id = "alias/nothing-here";
		Kms__Request req = KMS__REQUEST__INIT;
		req.op_case = KMS__REQUEST__OP_DESCRIBE_KEY;
		req.describe_key = &dk;
		Kms__Response *r = harness_call(&H, &req);
		assert_non_null(r);
		assert_int_equal(r->status, KMS__STATUS__UNAVAILABLE);
		assert_non_null(strstr(r->message, "kms.db was moved, replaced or deleted"));
		check_message("the store file was moved away", r->message);
		kms__response__free_unpacked(r, NULL);
	}
	assert_int_equal(rename(away, db), 0);
	/* Put back, it serves again. */
	Kms__DescribeKeyRequest dk = KMS__DESCRIBE_KEY_REQUEST__INIT;
	dk.key_id = "alias/nothing-here";
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_DESCRIBE_KEY;
	req.describe_key = &dk;
	Kms__Response *r = harness_call(&H, &req);
	assert_non_null(r);
	assert_int_equal(r->status, KMS__STATUS__NOT_FOUND);
	kms__response__free_unpacked(r, NULL);
	/* The operator's log has the whole line, path and position. */
	assert_true(harness_log_contains(&H, db));
	assert_int_equal(harness_stop(&H), 0);
}

#define BLOB_KEY_ID 4 /* docs/ciphertext-format.md: the header's offsets */
#define BLOB_KEY_VERSION 20

static uint8_t *encrypt_blob(const char *key, size_t *len)
{
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	e.key_id = (char *)key;
	e.plaintext.data = (uint8_t *)"alike";
	e.plaintext.len = 5;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &e;
	Kms__Response *r = harness_call(&H, &req);
	assert_non_null(r);
	assert_int_equal(r->status, KMS__STATUS__OK);
	*len = r->encrypt->ciphertext_blob.len;
	uint8_t *blob = malloc(*len);
	assert_non_null(blob);
	memcpy(blob, r->encrypt->ciphertext_blob.data, *len);
	kms__response__free_unpacked(r, NULL);
	return blob;
}

/* The reply's message with its request id cut out, for comparing. */
static void refusal(bool re_encrypt, const char *id, const uint8_t *blob, size_t len,
                    char *out, size_t cap)
{
	Kms__DecryptRequest d = KMS__DECRYPT_REQUEST__INIT;
	Kms__ReEncryptRequest re = KMS__RE_ENCRYPT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	if (re_encrypt) {
		re.ciphertext_blob.data = (uint8_t *)blob;
		re.ciphertext_blob.len = len;
		req.op_case = KMS__REQUEST__OP_RE_ENCRYPT;
		req.re_encrypt = &re;
	} else {
		d.ciphertext_blob.data = (uint8_t *)blob;
		d.ciphertext_blob.len = len;
		req.op_case = KMS__REQUEST__OP_DECRYPT;
		req.decrypt = &d;
	}
	req.request_id = (char *)id;
	Kms__Response *r = harness_call(&H, &req);
	assert_non_null(r);
	printf("# %s: %d \"%s\"\n", id, r->status, r->message);
	assert_int_equal(r->status, KMS__STATUS__INVALID_CIPHERTEXT);
	check_message(id, r->message);
	char *at = strstr(r->message, id);
	assert_non_null(at);
	snprintf(out, cap, "%.*s%s", (int)(at - r->message), r->message, at + strlen(id));
	kms__response__free_unpacked(r, NULL);
}

static void decrypt_answers_alike(void **state)
{
	(void)state;
	setup_kmsd();
	char key[35];
	assert_true(harness_create_key(&H, NULL, key));
	size_t len = 0;
	uint8_t *blob = encrypt_blob(key, &len);
	uint8_t *no_key = malloc(len), *no_version = malloc(len), *tampered = malloc(len);
	assert_true(no_key && no_version && tampered);
	memcpy(no_key, blob, len);
	for (int i = 0; i < 16; i++)
		no_key[BLOB_KEY_ID + i] ^= (uint8_t)(0x5a + i);
	memcpy(no_version, blob, len);
	no_version[BLOB_KEY_VERSION + 3] = 9;
	memcpy(tampered, blob, len);
	tampered[len - 1] ^= 0x01;

	for (int re = 0; re < 2; re++) {
		char a[256], b[256], c[256];
		refusal(re, re ? "re-no-key" : "dec-no-key", no_key, len, a, sizeof a);
		refusal(re, re ? "re-no-version" : "dec-no-version", no_version, len, b, sizeof b);
		refusal(re, re ? "re-tampered" : "dec-tampered", tampered, len, c, sizeof c);
		assert_string_equal(a, b);
		assert_string_equal(b, c);
	}
	/* The real reasons are kmsd's to keep: its log and the audit entries. */
	assert_true(harness_log_contains(&H, "has no active version 9"));
	assert_true(harness_log_contains(&H, "does not authenticate"));
	free(blob);
	free(no_key);
	free(no_version);
	free(tampered);
	char vkey[AUDIT_VKEY_MAX], pub[700];
	assert_true(audit_vkey_from_log(&H, vkey));
	assert_int_equal(harness_stop(&H), 0);
	audit_public_dir(&H, NULL, pub, sizeof pub);
	audit_entries e;
	audit_load(pub, vkey, NULL, &e);
	const struct { const char *id, *reason; } audited[] = {
		{ "dec-no-key", "not found" },
		{ "dec-no-version", "has no active version 9" },
		{ "dec-tampered", "does not authenticate" },
		{ "re-tampered", "does not authenticate" },
	};
	for (size_t i = 0; i < sizeof audited / sizeof audited[0]; i++) {
		json_t *entry = NULL;
		assert_int_equal(audit_count_id(&e, audited[i].id, &entry), 1);
		const char *error = audit_str(entry, "error");
		printf("# audit entry of %s: \"%s\"\n", audited[i].id, error);
		if (!strstr(error, audited[i].reason))
			fail_msg("%s: the entry says \"%s\", not the real reason", audited[i].id, error);
		assert_null(strstr(error, "cannot be decrypted with the key it names"));
	}
	audit_entries_free(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(refusals),
		cmocka_unit_test(store_failure),
		cmocka_unit_test(decrypt_answers_alike),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
