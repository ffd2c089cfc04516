/* The ciphertext blob: building, assembling, strict parsing. No crypto here
 * (test_vectors.c seals and opens real vectors with OpenSSL). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms/format/blob.h"
#include "common/error.h"

static const uint8_t key_id[KMS_KEYID_BYTES] = {
	0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87,
	0x78, 0x69, 0x5a, 0x4b, 0x3c, 0x2d, 0x1e, 0x0f,
};
static const uint8_t iv[KMS_BLOB_IV_LEN] = {
	0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab,
};
static const char region[] = "ap-south-1";
#define REGION_LEN (sizeof region - 1)

/* Offsets in a blob with a 10-byte region (docs/ciphertext-format.md). */
#define OFF_VERSION 3
#define OFF_KEY_VERSION 20
#define OFF_REGION_LEN 24
#define OFF_REGION 25
#define OFF_CT_LEN (25 + REGION_LEN + KMS_BLOB_IV_LEN)

/* A blob whose "sealed" part is a recognisable pattern, not real GCM. */
static size_t make_blob(uint32_t key_version, const char *blob_region, size_t plaintext_len,
                        uint8_t *out, size_t cap)
{
	blob_header header;
	static uint8_t sealed[KMS_ENCRYPT_MAX_PLAINTEXT + KMS_BLOB_TAG_LEN];
	size_t len;

	assert_int_equal(blob_header_build(key_id, key_version, blob_region, strlen(blob_region), iv,
	                                   plaintext_len, &header), KMS_OK);
	for (size_t i = 0; i < blob_sealed_len(&header); i++)
		sealed[i] = (uint8_t)(i < plaintext_len ? 0x30 + i % 10 : 0xe0 + i % 16);
	assert_int_equal(blob_assemble(&header, sealed, blob_sealed_len(&header), out, cap, &len),
	                 KMS_OK);
	assert_int_equal(len, blob_total_len(&header));
	return len;
}

static void assert_view_zero(const blob_view *v)
{
	blob_view zero;
	memset(&zero, 0, sizeof zero);
	assert_memory_equal(v, &zero, sizeof zero);
}

/* Parsing must fail with INVALID_CIPHERTEXT, a message containing why,
 * and a zeroed view. */
static void expect_reject(const uint8_t *blob, size_t len, const char *why)
{
	blob_view v;
	memset(&v, 0x5a, sizeof v);
	kms_error_clear();
	assert_int_equal(blob_parse(blob, len, &v), KMS_INVALID_CIPHERTEXT);
	const char *msg = kms_error_message();
	if (strncmp(msg, "ciphertext blob: ", 17) != 0 || !strstr(msg, why))
		fail_msg("len %zu: message \"%s\" lacks \"%s\"", len, msg, why);
	if (strchr(msg, '\n'))
		fail_msg("message is not one line: \"%s\"", msg);
	assert_view_zero(&v);
}

static void header_layout_is_exact(void **state)
{
	blob_header h;
	assert_int_equal(blob_header_build(key_id, 0x01020304u, region, REGION_LEN, iv, 300, &h),
	                 KMS_OK);
	const uint8_t expected[] = {
		'K', 'M', 'S', 0x01,
		0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87,
		0x78, 0x69, 0x5a, 0x4b, 0x3c, 0x2d, 0x1e, 0x0f,
		0x01, 0x02, 0x03, 0x04,
		0x0a, 'a', 'p', '-', 's', 'o', 'u', 't', 'h', '-', '1',
		0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab,
		0x00, 0x00, 0x01, 0x2c,
	};
	assert_int_equal(h.len, sizeof expected);
	assert_int_equal(h.len, KMS_BLOB_HEADER_FIXED_LEN + REGION_LEN);
	assert_memory_equal(h.bytes, expected, sizeof expected);
	assert_int_equal(h.ciphertext_len, 300);
	assert_int_equal(blob_sealed_len(&h), 316);
	assert_int_equal(blob_total_len(&h), sizeof expected + 316);
	assert_int_equal(KMS_BLOB_HEADER_FIXED_LEN, 41);
	assert_int_equal(KMS_BLOB_MIN_LEN, 59);
	assert_int_equal(KMS_BLOB_MAX_LEN, 4185);
}

static void round_trip(void **state)
{
	static uint8_t blob[KMS_BLOB_MAX_LEN + 16];
	blob_view v;
	size_t len = make_blob(7, region, 32, blob, sizeof blob);
	assert_int_equal(len, 57 + REGION_LEN + 32);

	assert_int_equal(blob_parse(blob, len, &v), KMS_OK);
	assert_int_equal(v.format_version, KMS_BLOB_FORMAT_VERSION);
	assert_memory_equal(v.key_id, key_id, KMS_KEYID_BYTES);
	assert_int_equal(v.key_version, 7);
	assert_int_equal(v.region_len, REGION_LEN);
	assert_memory_equal(v.region, region, REGION_LEN);
	assert_memory_equal(v.iv, iv, KMS_BLOB_IV_LEN);
	assert_int_equal(v.ciphertext_len, 32);
	assert_int_equal(v.header_len, KMS_BLOB_HEADER_FIXED_LEN + REGION_LEN);
	assert_int_equal(v.sealed_len, 32 + KMS_BLOB_TAG_LEN);

	/* Every pointer points into the input, where the layout says. */
	assert_ptr_equal(v.header, blob);
	assert_ptr_equal(v.key_id, blob + 4);
	assert_ptr_equal(v.region, (const char *)blob + OFF_REGION);
	assert_ptr_equal(v.iv, blob + OFF_REGION + REGION_LEN);
	assert_ptr_equal(v.ciphertext, blob + v.header_len);
	assert_ptr_equal(v.sealed, v.ciphertext);
	assert_ptr_equal(v.tag, v.ciphertext + v.ciphertext_len);
	assert_ptr_equal(v.tag + KMS_BLOB_TAG_LEN, blob + len);
	assert_int_equal(v.header_len + v.sealed_len, len);

	/* The header span is what the builder made, so both sides compute the
	 * same AAD. */
	blob_header h;
	assert_int_equal(blob_header_build(key_id, 7, region, REGION_LEN, iv, 32, &h), KMS_OK);
	assert_int_equal(v.header_len, h.len);
	assert_memory_equal(v.header, h.bytes, h.len);

	/* Smallest and largest blobs parse too. */
	len = make_blob(1, "x", KMS_ENCRYPT_MIN_PLAINTEXT, blob, sizeof blob);
	assert_int_equal(len, KMS_BLOB_MIN_LEN);
	assert_int_equal(blob_parse(blob, len, &v), KMS_OK);
	len = make_blob(UINT32_MAX, "abcdefghijklmnopqrstuvwxyz-01234", KMS_ENCRYPT_MAX_PLAINTEXT,
	                blob, sizeof blob);
	assert_int_equal(len, KMS_BLOB_MAX_LEN);
	assert_int_equal(blob_parse(blob, len, &v), KMS_OK);
	assert_int_equal(v.key_version, UINT32_MAX);
	assert_int_equal(v.region_len, KMS_BLOB_REGION_MAX);
}

static void every_truncation_rejected(void **state)
{
	uint8_t blob[256];
	size_t len = make_blob(3, region, 20, blob, sizeof blob);
	for (size_t cut = 0; cut < len; cut++) {
		/* Copy to an exact-size heap buffer so ASan sees any overread. */
		uint8_t *copy = malloc(cut ? cut : 1);
		assert_non_null(copy);
		memcpy(copy, blob, cut);
		expect_reject(copy, cut, "truncated");
		free(copy);
	}
	expect_reject(NULL, 0, "truncated in the magic");
	expect_reject(blob, OFF_KEY_VERSION + 2, "truncated in the key version");
	expect_reject(blob, len - 1, "truncated: the ciphertext length field says 20");
}

static void every_trailing_count_rejected(void **state)
{
	uint8_t blob[256];
	size_t len = make_blob(3, region, 20, blob, sizeof blob);
	for (size_t extra = 1; extra <= 8; extra++) {
		char why[32];
		memset(blob + len, 0, extra);
		snprintf(why, sizeof why, ": %zu trailing bytes", extra);
		expect_reject(blob, len + extra, why);
	}
}

static void magic_and_version_checked(void **state)
{
	uint8_t blob[256];
	size_t len = make_blob(3, region, 20, blob, sizeof blob);
	static const uint8_t bad_versions[] = { 0x00, 0x02, 0x7f, 0x80, 0xff };
	for (size_t i = 0; i < sizeof bad_versions; i++) {
		blob[OFF_VERSION] = bad_versions[i];
		expect_reject(blob, len, "format version");
	}
	blob[OFF_VERSION] = KMS_BLOB_FORMAT_VERSION;
	expect_reject(blob, 0, "truncated in the magic");
	for (size_t i = 0; i < KMS_BLOB_MAGIC_LEN; i++) {
		uint8_t saved = blob[i];
		blob[i] ^= 0x20; /* "kMS" etc. */
		expect_reject(blob, len, "bad magic");
		blob[i] = saved;
	}
	blob_view v;
	assert_int_equal(blob_parse(blob, len, &v), KMS_OK);
}

static void zero_key_version_rejected(void **state)
{
	uint8_t blob[256];
	size_t len = make_blob(1, region, 20, blob, sizeof blob);
	memset(blob + OFF_KEY_VERSION, 0, KMS_BLOB_KEY_VERSION_LEN);
	expect_reject(blob, len, "key version 0");
}

static void region_checked(void **state)
{
	uint8_t blob[256];
	size_t len = make_blob(1, region, 20, blob, sizeof blob);

	blob[OFF_REGION_LEN] = 0;
	expect_reject(blob, len, "region length 0, must be 1..32");
	blob[OFF_REGION_LEN] = 33;
	expect_reject(blob, len, "region length 33, must be 1..32");
	blob[OFF_REGION_LEN] = 0xff;
	expect_reject(blob, len, "region length 255");
	blob[OFF_REGION_LEN] = (uint8_t)REGION_LEN;

	static const uint8_t bad_chars[] = { 'A', '_', '.', ' ', 0x00, 0xff, '/' };
	for (size_t i = 0; i < sizeof bad_chars; i++) {
		uint8_t saved = blob[OFF_REGION + 4];
		blob[OFF_REGION + 4] = bad_chars[i];
		expect_reject(blob, len, "region character 4 is not one of [a-z0-9-]");
		blob[OFF_REGION + 4] = saved;
	}

	/* A region length of 33 in a blob that really has 33 region bytes is
	 * still refused (not merely misparsed). */
	uint8_t big[256];
	size_t big_len = make_blob(1, "abcdefghijklmnopqrstuvwxyz-01234", 20, big, sizeof big);
	uint8_t grown[257];
	memcpy(grown, big, OFF_REGION_LEN);
	grown[OFF_REGION_LEN] = 33;
	memcpy(grown + OFF_REGION, big + OFF_REGION, 32);
	grown[OFF_REGION + 32] = 'z';
	memcpy(grown + OFF_REGION + 33, big + OFF_REGION + 32, big_len - OFF_REGION - 32);
	expect_reject(grown, big_len + 1, "region length 33");
}

static void ciphertext_length_field_checked(void **state)
{
	uint8_t blob[256];
	size_t len = make_blob(1, region, 20, blob, sizeof blob);
	uint8_t *field = blob + OFF_CT_LEN;

	assert_int_equal(field[3], 20);
	field[3] = 21; /* says more than there is */
	expect_reject(blob, len, "truncated: the ciphertext length field says 21");
	field[3] = 19; /* says less: one byte left over */
	expect_reject(blob, len, ": 1 trailing bytes");
	field[3] = 0;
	expect_reject(blob, len, "ciphertext length 0, must be 1..4096");
	field[2] = 0x10, field[3] = 0x01; /* 4097 */
	expect_reject(blob, len, "ciphertext length 4097");
	memset(field, 0xff, 4);
	expect_reject(blob, len, "ciphertext length 4294967295");
	memset(field, 0, 4);
	field[3] = 20;
	blob_view v;
	assert_int_equal(blob_parse(blob, len, &v), KMS_OK);
}

static void errors_never_echo_blob_bytes(void **state)
{
	uint8_t blob[256];
	size_t len = make_blob(1, region, 20, blob, sizeof blob);
	memcpy(blob + OFF_CT_LEN + 4, "TOPSECRETPLAINTEXT", 18);
	memcpy(blob + len, "TOPSECRET", 9);
	blob_view v;
	assert_int_equal(blob_parse(blob, len + 9, &v), KMS_INVALID_CIPHERTEXT);
	assert_null(strstr(kms_error_message(), "TOPSECRET"));
	memcpy(blob, "TOPSECRET", 9);
	assert_int_equal(blob_parse(blob, len, &v), KMS_INVALID_CIPHERTEXT);
	assert_null(strstr(kms_error_message(), "TOP"));
}

static void builder_rejects_bad_arguments(void **state)
{
	blob_header h;
	const uint8_t zero[sizeof h] = { 0 };

	assert_int_equal(blob_header_build(key_id, 0, region, REGION_LEN, iv, 1, &h),
	                 KMS_INVALID_ARGUMENT);
	assert_memory_equal(&h, zero, sizeof h);
	assert_int_equal(blob_header_build(key_id, 1, region, REGION_LEN, iv, 0, &h),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(blob_header_build(key_id, 1, region, REGION_LEN, iv,
	                                   KMS_ENCRYPT_MAX_PLAINTEXT + 1, &h), KMS_INVALID_ARGUMENT);
	assert_int_equal(blob_header_build(key_id, 1, "", 0, iv, 1, &h), KMS_INVALID_ARGUMENT);
	assert_int_equal(blob_header_build(key_id, 1, NULL, 0, iv, 1, &h), KMS_INVALID_ARGUMENT);
	assert_int_equal(blob_header_build(key_id, 1, "abcdefghijklmnopqrstuvwxyz-012345", 33, iv,
	                                   1, &h), KMS_INVALID_ARGUMENT);
	assert_int_equal(blob_header_build(key_id, 1, "Ap-south-1", 10, iv, 1, &h),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(blob_region_validate("ap-south-1", 10), KMS_OK);
	assert_int_equal(blob_region_validate("ap_south", 8), KMS_INVALID_ARGUMENT);
	assert_non_null(strstr(kms_error_message(), "character 2"));
}

static void assemble_checks_lengths(void **state)
{
	blob_header h;
	uint8_t sealed[64] = { 0 };
	uint8_t out[256];
	size_t len = 99;

	assert_int_equal(blob_header_build(key_id, 1, region, REGION_LEN, iv, 20, &h), KMS_OK);
	assert_int_equal(blob_assemble(&h, sealed, 35, out, sizeof out, &len), KMS_INVALID_ARGUMENT);
	assert_int_equal(len, 0);
	assert_int_equal(blob_assemble(&h, sealed, 37, out, sizeof out, &len), KMS_INVALID_ARGUMENT);
	assert_int_equal(blob_assemble(&h, NULL, 36, out, sizeof out, &len), KMS_INVALID_ARGUMENT);
	memset(out, 0xee, sizeof out);
	assert_int_equal(blob_assemble(&h, sealed, 36, out, blob_total_len(&h) - 1, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(out[0], 0xee); /* nothing written */
	assert_int_equal(blob_assemble(&h, sealed, 36, out, blob_total_len(&h), &len), KMS_OK);
	assert_int_equal(len, blob_total_len(&h));
	blob_header unbuilt;
	memset(&unbuilt, 0, sizeof unbuilt);
	assert_int_equal(blob_assemble(&unbuilt, sealed, 16, out, sizeof out, &len),
	                 KMS_INVALID_ARGUMENT);
}

static void aad_is_header_then_context(void **state)
{
	blob_header h;
	const uint8_t context[] = { 0x00, 0x01, 0x00, 0x01, 'k', 0x00, 0x01, 'v' };
	uint8_t aad[KMS_BLOB_HEADER_MAX + sizeof context];
	size_t len;

	assert_int_equal(blob_header_build(key_id, 1, region, REGION_LEN, iv, 20, &h), KMS_OK);
	assert_int_equal(blob_aad_build(h.bytes, h.len, context, sizeof context, aad, sizeof aad,
	                                &len), KMS_OK);
	assert_int_equal(len, h.len + sizeof context);
	assert_int_equal(len, blob_aad_len(h.len, sizeof context));
	assert_memory_equal(aad, h.bytes, h.len);
	assert_memory_equal(aad + h.len, context, sizeof context);

	uint8_t *alloced;
	assert_int_equal(blob_aad_alloc(h.bytes, h.len, context, sizeof context, &alloced, &len),
	                 KMS_OK);
	assert_memory_equal(alloced, aad, len);
	free(alloced);

	assert_int_equal(blob_aad_build(h.bytes, h.len, context, sizeof context, aad, len - 1, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(len, 0);
	/* The context part is at least the empty encoding: forgetting it is a bug. */
	assert_int_equal(blob_aad_build(h.bytes, h.len, context, 0, aad, sizeof aad, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(blob_aad_build(h.bytes, 3, context, sizeof context, aad, sizeof aad, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(blob_aad_alloc(h.bytes, h.len, NULL, 2, &alloced, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_null(alloced);
}

static void region_must_be_ours(void **state)
{
	uint8_t blob[256];
	size_t len = make_blob(1, region, 20, blob, sizeof blob);
	blob_view v;
	assert_int_equal(blob_parse(blob, len, &v), KMS_OK);
	assert_int_equal(blob_check_region(&v, "ap-south-1", 10), KMS_OK);
	assert_int_equal(blob_check_region(&v, "ap-south-2", 10), KMS_INVALID_CIPHERTEXT);
	assert_non_null(strstr(kms_error_message(),
	                       "blob was made in region ap-south-1, this is region ap-south-2"));
	assert_int_equal(blob_check_region(&v, "ap-south-10", 11), KMS_INVALID_CIPHERTEXT);
	assert_int_equal(blob_check_region(&v, "ap-south", 8), KMS_INVALID_CIPHERTEXT);
	assert_int_equal(blob_check_region(&v, "AP-SOUTH-1", 10), KMS_INTERNAL);
	blob_view unparsed;
	memset(&unparsed, 0, sizeof unparsed);
	assert_int_equal(blob_check_region(&unparsed, "ap-south-1", 10), KMS_INVALID_ARGUMENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(header_layout_is_exact),
		cmocka_unit_test(round_trip),
		cmocka_unit_test(every_truncation_rejected),
		cmocka_unit_test(every_trailing_count_rejected),
		cmocka_unit_test(magic_and_version_checked),
		cmocka_unit_test(zero_key_version_rejected),
		cmocka_unit_test(region_checked),
		cmocka_unit_test(ciphertext_length_field_checked),
		cmocka_unit_test(errors_never_echo_blob_bytes),
		cmocka_unit_test(builder_rejects_bad_arguments),
		cmocka_unit_test(assemble_checks_lengths),
		cmocka_unit_test(aad_is_header_then_context),
		cmocka_unit_test(region_must_be_ours),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
