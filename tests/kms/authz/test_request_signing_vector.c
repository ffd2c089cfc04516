/*
 * The test vector of docs/request-signing.md, read from the page itself:
 * the canonical string and MAC from kms_sign_canonical and kms_sign_mac,
 * the packed request from protobuf-c, the operation's bytes found in it by
 * kmsd's extractor, and kmsd's verifier accepting it. Any value on the page
 * that drifts from the code fails here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include <kms/kms.pb-c.h>
#include <kms/sign.h>

#include "kms/authz/authz_wire.h"
#include "tests/kms/authz/authz_test_util.h"

#define DOC_MAX 65536
#define VALUE_MAX 1024
#define FIELDS 10

static char doc[DOC_MAX];
static struct field {
	const char *name;
	char value[VALUE_MAX];
} fields[FIELDS] = {
	{ "secret", "" }, { "access_key_id", "" }, { "request_id", "" },
	{ "timestamp_unix", "" }, { "operation", "" }, { "op_bytes", "" },
	{ "op_sha256", "" }, { "mac", "" }, { "request", "" }, { "canonical", "" },
};

static char *field(const char *name)
{
	for (int i = 0; i < FIELDS; i++)
		if (!strcmp(fields[i].name, name))
			return fields[i].value;
	fail_msg("no field %s", name);
	return NULL;
}

/* The body of the n-th ```text fence after heading. */
static void fence(const char *heading, int n, char *out, size_t cap)
{
	const char *p = strstr(doc, heading);
	assert_non_null(p);
	for (int i = 0; i <= n; i++) {
		p = strstr(p, "```text\n");
		assert_non_null(p);
		p += strlen("```text\n");
	}
	const char *end = strstr(p, "```");
	assert_non_null(end);
	assert_true((size_t)(end - p) < cap);
	memcpy(out, p, (size_t)(end - p));
	out[end - p] = '\0';
}

/* "name: value" lines; an indented line continues the value before it. */
static void parse_vector(void)
{
	char block[4096], *save = NULL, *last = NULL;
	fence("## Test vector", 0, block, sizeof block);
	for (char *line = strtok_r(block, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == ' ') {
			assert_non_null(last);
			strncat(last, line + strspn(line, " "), VALUE_MAX - strlen(last) - 1);
			continue;
		}
		char *colon = strchr(line, ':');
		assert_non_null(colon);
		*colon = '\0';
		last = field(line);
		snprintf(last, VALUE_MAX, "%s", colon + 1 + strspn(colon + 1, " "));
	}
	/* The canonical string: the section's second fence, its last newline
	 * not part of it. */
	char *canonical = field("canonical");
	fence("## Test vector", 1, canonical, VALUE_MAX);
	size_t n = strlen(canonical);
	assert_true(n > 0 && canonical[n - 1] == '\n');
	canonical[n - 1] = '\0';
	for (int i = 0; i < FIELDS; i++)
		assert_true(fields[i].value[0] != '\0');
}

static int setup(void **state)
{
	(void)state;
	FILE *f = fopen(KMS_DOC_REQUEST_SIGNING, "r");
	assert_non_null(f);
	size_t n = fread(doc, 1, sizeof doc - 1, f);
	assert_true(n > 0 && n < sizeof doc - 1);
	doc[n] = '\0';
	fclose(f);
	parse_vector();
	return 0;
}

static void to_hex(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
	out[2 * n] = '\0';
}

static size_t from_hex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = strlen(hex);
	assert_true(n % 2 == 0 && n / 2 <= cap);
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	return n / 2;
}

static void vector_matches_the_code(void **state)
{
	(void)state;
	uint8_t secret[KMS_SIGN_SECRET_LEN], op[256], mac[KMS_SIGN_MAC_LEN], digest[32];
	char canonical[KMS_SIGN_CANONICAL_MAX], hex[2 * 512 + 1];
	int64_t ts = strtoll(field("timestamp_unix"), NULL, 10);
	const char *rid = field("request_id"), *opname = field("operation");

	assert_int_equal(from_hex(field("secret"), secret, sizeof secret), KMS_SIGN_SECRET_LEN);
	size_t op_len = from_hex(field("op_bytes"), op, sizeof op);

	SHA256(op, op_len, digest);
	to_hex(digest, sizeof digest, hex);
	assert_string_equal(hex, field("op_sha256"));

	assert_int_equal(kms_sign_canonical(rid, ts, opname, op, op_len, canonical, NULL), KMS_OK);
	assert_string_equal(canonical, field("canonical"));

	assert_int_equal(kms_sign_mac(secret, rid, ts, opname, op, op_len, mac), KMS_OK);
	to_hex(mac, sizeof mac, hex);
	assert_string_equal(hex, field("mac"));

	/* The request as the doc describes it, packed by protobuf-c. */
	Kms__EncryptRequest *enc = kms__encrypt_request__unpack(NULL, op_len, op);
	assert_non_null(enc);
	assert_string_equal(enc->key_id, "alias/payments");
	Kms__Request req = KMS__REQUEST__INIT;
	Kms__Credential cred = KMS__CREDENTIAL__INIT;
	req.schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	req.request_id = (char *)rid;
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = enc;
	assert_string_equal(kms_sign_operation_name(&req), opname);
	uint8_t whole_mac[KMS_SIGN_MAC_LEN];
	assert_int_equal(kms_sign_request_mac(&req, secret, ts, whole_mac), KMS_OK);
	assert_memory_equal(whole_mac, mac, sizeof mac);
	cred.access_key_id = field("access_key_id");
	cred.timestamp_unix = ts;
	cred.mac.data = mac;
	cred.mac.len = sizeof mac;
	req.credential = &cred;
	uint8_t packed[512];
	size_t len = kms__request__get_packed_size(&req);
	assert_true(len <= sizeof packed);
	assert_int_equal(kms__request__pack(&req, packed), len);
	to_hex(packed, len, hex);
	assert_string_equal(hex, field("request"));
	kms__encrypt_request__free_unpacked(enc, NULL);

	/* kmsd's side: the op's bytes where they sit, then the verifier. */
	authz_wire_op found;
	assert_int_equal(authz_wire_find_op(packed, len, &found), KMS_OK);
	assert_string_equal(found.name, opname);
	assert_int_equal(found.number, 10);
	to_hex(found.bytes, found.len, hex);
	assert_string_equal(hex, field("op_bytes"));

	test_keys keys;
	memset(&keys, 0, sizeof keys);
	test_key *k = test_keys_add(&keys, field("access_key_id"), "doc-vector", 0);
	memcpy(k->secret, secret, sizeof secret);
	int64_t now = ts;
	authz_verify_config config = { .keys = test_keys_source(&keys), .clock = test_clock,
	                               .clock_ctx = &now, .replay_entries = 16,
	                               .replay_per_key = 16, .replay_keys = 4 };
	authz_verifier *v;
	authz_verdict verdict;
	assert_int_equal(authz_verifier_open(&config, &v), KMS_OK);
	Kms__Request *got = test_request_unpack(packed, len);
	assert_non_null(got);
	assert_int_equal(authz_verify(v, packed, len, got, &verdict), KMS_OK);
	assert_string_equal(verdict.principal, "doc-vector");
	assert_int_equal(authz_verify(v, packed, len, got, &verdict), KMS_ACCESS_DENIED);
	assert_int_equal(verdict.reason, AUTHZ_REPLAY);
	test_request_free(got);
	authz_verifier_close(v);
	assert_int_equal(keys.lookups, keys.releases);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(vector_matches_the_code, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
