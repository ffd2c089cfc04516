/*
 * The signed-request MAC: the canonical string byte for byte, the HMAC
 * against OpenSSL computed here independently (and against a vector pinned
 * from Python's hmac module), refusals, and the Request-level helpers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <kms/kms.pb-c.h>
#include <kms/sign.h>

static const char request_id[] = "r-0123456789abcdef01234567";
static const char expected_canonical[] =
	"KMS-HMAC-SHA256\n"
	"r-0123456789abcdef01234567\n"
	"1700000000\n"
	"encrypt\n"
	"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; /* SHA-256("abc") */

static void secret_init(uint8_t secret[KMS_SIGN_SECRET_LEN])
{
	for (int i = 0; i < KMS_SIGN_SECRET_LEN; i++)
		secret[i] = (uint8_t)i;
}

static void hex(const uint8_t *bytes, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 15];
	}
	out[2 * n] = '\0';
}

static void canonical_string_is_exact(void **state)
{
	char canonical[KMS_SIGN_CANONICAL_MAX];
	size_t len = 0;
	assert_int_equal(kms_sign_canonical(request_id, 1700000000, "encrypt",
	                                    (const uint8_t *)"abc", 3, canonical, &len),
	                 KMS_OK);
	assert_string_equal(canonical, expected_canonical);
	assert_int_equal(len, strlen(expected_canonical));
}

static void mac_matches_openssl_and_pinned_vector(void **state)
{
	uint8_t secret[KMS_SIGN_SECRET_LEN], mac[KMS_SIGN_MAC_LEN], want[EVP_MAX_MD_SIZE];
	unsigned int want_len = 0;
	char mac_hex[2 * KMS_SIGN_MAC_LEN + 1];

	secret_init(secret);
	assert_int_equal(kms_sign_mac(secret, request_id, 1700000000, "encrypt",
	                              (const uint8_t *)"abc", 3, mac),
	                 KMS_OK);
	/* Independently: HMAC-SHA256 over the literal canonical string. */
	assert_non_null(HMAC(EVP_sha256(), secret, sizeof secret,
	                     (const unsigned char *)expected_canonical,
	                     strlen(expected_canonical), want, &want_len));
	assert_int_equal(want_len, KMS_SIGN_MAC_LEN);
	assert_memory_equal(mac, want, KMS_SIGN_MAC_LEN);
	/* And pinned, so both sides cannot drift together. */
	hex(mac, sizeof mac, mac_hex);
	assert_string_equal(mac_hex,
	                    "18335b6bb2061fe6a63c59504627458dca9c4b9bd18447a925e06155d7d9d94e");

	/* Empty operation body and a negative timestamp (decimal, with sign). */
	assert_int_equal(kms_sign_mac(secret, "r-x", -5, "health", NULL, 0, mac), KMS_OK);
	hex(mac, sizeof mac, mac_hex);
	assert_string_equal(mac_hex,
	                    "c6a6e454384b628412fedcdf5afb53559ec0559bf992d7a7b367274b1b2f3c36");
}

static void bad_fields_are_refused(void **state)
{
	char canonical[KMS_SIGN_CANONICAL_MAX];
	uint8_t secret[KMS_SIGN_SECRET_LEN], mac[KMS_SIGN_MAC_LEN];
	char long_id[KMS_SIGN_REQUEST_ID_MAX + 2];
	const uint8_t zero[KMS_SIGN_MAC_LEN] = { 0 };

	memset(long_id, 'a', sizeof long_id - 1);
	long_id[sizeof long_id - 1] = '\0';
	secret_init(secret);
	/* A newline in any field would let two requests share a string. */
	assert_int_equal(kms_sign_canonical("r-1\nencrypt", 1, "encrypt", NULL, 0, canonical, NULL),
	                 KMS_INVALID_ARGUMENT);
	assert_string_equal(canonical, "");
	assert_int_equal(kms_sign_canonical("", 1, "encrypt", NULL, 0, canonical, NULL),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(kms_sign_canonical(NULL, 1, "encrypt", NULL, 0, canonical, NULL),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(kms_sign_canonical(long_id, 1, "encrypt", NULL, 0, canonical, NULL),
	                 KMS_INVALID_ARGUMENT);
	long_id[KMS_SIGN_REQUEST_ID_MAX] = '\0'; /* exactly 64: fine */
	assert_int_equal(kms_sign_canonical(long_id, 1, "encrypt", NULL, 0, canonical, NULL),
	                 KMS_OK);
	assert_int_equal(kms_sign_canonical("r-1", 1, "Encrypt", NULL, 0, canonical, NULL),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(kms_sign_canonical("r-1", 1, "encrypt\n", NULL, 0, canonical, NULL),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(kms_sign_canonical("r-1", 1, "", NULL, 0, canonical, NULL),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(kms_sign_canonical("r-1", 1, "encrypt", NULL, 5, canonical, NULL),
	                 KMS_INVALID_ARGUMENT);
	memset(mac, 0xff, sizeof mac);
	assert_int_equal(kms_sign_mac(secret, "r 1", 1, "encrypt", NULL, 0, mac),
	                 KMS_INVALID_ARGUMENT);
	assert_memory_equal(mac, zero, sizeof mac);
}

static void verify_is_all_or_nothing(void **state)
{
	uint8_t secret[KMS_SIGN_SECRET_LEN], mac[KMS_SIGN_MAC_LEN];
	const uint8_t body[] = "op body";

	secret_init(secret);
	assert_int_equal(kms_sign_mac(secret, "r-1", 42, "decrypt", body, sizeof body, mac),
	                 KMS_OK);
	assert_int_equal(kms_sign_verify(secret, "r-1", 42, "decrypt", body, sizeof body, mac,
	                                 sizeof mac),
	                 KMS_OK);
	/* Every field is bound. */
	assert_int_equal(kms_sign_verify(secret, "r-2", 42, "decrypt", body, sizeof body, mac,
	                                 sizeof mac),
	                 KMS_ACCESS_DENIED);
	assert_int_equal(kms_sign_verify(secret, "r-1", 43, "decrypt", body, sizeof body, mac,
	                                 sizeof mac),
	                 KMS_ACCESS_DENIED);
	assert_int_equal(kms_sign_verify(secret, "r-1", 42, "encrypt", body, sizeof body, mac,
	                                 sizeof mac),
	                 KMS_ACCESS_DENIED);
	assert_int_equal(kms_sign_verify(secret, "r-1", 42, "decrypt", body, sizeof body - 1,
	                                 mac, sizeof mac),
	                 KMS_ACCESS_DENIED);
	assert_int_equal(kms_sign_verify(secret, "r-1", 42, "decrypt", body, sizeof body, mac,
	                                 sizeof mac - 1),
	                 KMS_ACCESS_DENIED);
	assert_int_equal(kms_sign_verify(secret, "r-1", 42, "decrypt", body, sizeof body, NULL,
	                                 0),
	                 KMS_ACCESS_DENIED);
	mac[31] ^= 1;
	assert_int_equal(kms_sign_verify(secret, "r-1", 42, "decrypt", body, sizeof body, mac,
	                                 sizeof mac),
	                 KMS_ACCESS_DENIED);
	mac[31] ^= 1;
	secret[0] ^= 1;
	assert_int_equal(kms_sign_verify(secret, "r-1", 42, "decrypt", body, sizeof body, mac,
	                                 sizeof mac),
	                 KMS_ACCESS_DENIED);
}

static void operation_names_are_proto_field_names(void **state)
{
	Kms__Request req;
	kms__request__init(&req);
	assert_null(kms_sign_operation_name(&req));
	assert_null(kms_sign_operation_name(NULL));
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	assert_string_equal(kms_sign_operation_name(&req), "encrypt");
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	assert_string_equal(kms_sign_operation_name(&req), "create_key");
	req.op_case = KMS__REQUEST__OP_GENERATE_DATA_KEY_WITHOUT_PLAINTEXT;
	assert_string_equal(kms_sign_operation_name(&req), "generate_data_key_without_plaintext");
	req.op_case = KMS__REQUEST__OP_GET_CONSISTENCY_PROOF;
	assert_string_equal(kms_sign_operation_name(&req), "get_consistency_proof");
}

/* What the client sends is what kmsd verifies: sign a Request, pack it,
 * unpack it as kmsd would, verify; then change one plaintext byte. */
static void request_mac_survives_the_wire(void **state)
{
	uint8_t secret[KMS_SIGN_SECRET_LEN], mac[KMS_SIGN_MAC_LEN], direct[KMS_SIGN_MAC_LEN];
	uint8_t plaintext[] = "attack at dawn";
	char key[] = "purpose", value[] = "test", key_id[] = "alias/app", id[] = "r-abc";
	Kms__StringPair entry;
	Kms__StringPair *entries[] = { &entry };
	Kms__EncryptRequest op;
	Kms__Credential cred;
	Kms__Request req;

	secret_init(secret);
	kms__string_pair__init(&entry);
	entry.key = key;
	entry.value = value;
	kms__encrypt_request__init(&op);
	op.key_id = key_id;
	op.plaintext.data = plaintext;
	op.plaintext.len = sizeof plaintext - 1;
	op.n_encryption_context = 1;
	op.encryption_context = entries;
	kms__request__init(&req);
	req.schema_version = 1;
	req.request_id = id;
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &op;
	assert_int_equal(kms_sign_request_mac(&req, secret, 1700000001, mac), KMS_OK);

	/* The same as signing the operation packed on its own. */
	uint8_t packed_op[256];
	size_t op_len = kms__encrypt_request__get_packed_size(&op);
	assert_true(op_len <= sizeof packed_op);
	assert_int_equal(kms__encrypt_request__pack(&op, packed_op), op_len);
	assert_int_equal(kms_sign_mac(secret, id, 1700000001, "encrypt", packed_op, op_len,
	                              direct),
	                 KMS_OK);
	assert_memory_equal(mac, direct, sizeof mac);

	kms__credential__init(&cred);
	cred.access_key_id = key;
	cred.timestamp_unix = 1700000001;
	cred.mac.data = mac;
	cred.mac.len = sizeof mac;
	req.credential = &cred;
	uint8_t wire[512];
	size_t wire_len = kms__request__get_packed_size(&req);
	assert_true(wire_len <= sizeof wire);
	assert_int_equal(kms__request__pack(&req, wire), wire_len);

	Kms__Request *got = kms__request__unpack(NULL, wire_len, wire);
	assert_non_null(got);
	assert_int_equal(kms_sign_request_verify(got, secret), KMS_OK);
	got->encrypt->plaintext.data[0] ^= 1;
	assert_int_equal(kms_sign_request_verify(got, secret), KMS_ACCESS_DENIED);
	got->encrypt->plaintext.data[0] ^= 1;
	got->credential->timestamp_unix++;
	assert_int_equal(kms_sign_request_verify(got, secret), KMS_ACCESS_DENIED);
	kms__request__free_unpacked(got, NULL);

	/* No credential, or no operation: denied, not a crash. */
	req.credential = NULL;
	assert_int_equal(kms_sign_request_verify(&req, secret), KMS_ACCESS_DENIED);
	req.credential = &cred;
	req.op_case = KMS__REQUEST__OP__NOT_SET;
	assert_int_equal(kms_sign_request_verify(&req, secret), KMS_ACCESS_DENIED);
	assert_int_equal(kms_sign_request_mac(&req, secret, 1, mac), KMS_INVALID_ARGUMENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(canonical_string_is_exact),
		cmocka_unit_test(mac_matches_openssl_and_pinned_vector),
		cmocka_unit_test(bad_fields_are_refused),
		cmocka_unit_test(verify_is_all_or_nothing),
		cmocka_unit_test(operation_names_are_proto_field_names),
		cmocka_unit_test(request_mac_survives_the_wire),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
