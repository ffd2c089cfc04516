/*
 * fuzz_blob: blob_parse on arbitrary bytes. Beyond "no crash, no overread":
 * a blob that parses points only into the input, splits it exactly into
 * header and ciphertext || tag, and rebuilding it from its fields gives the
 * same bytes, so the parser accepts exactly what the builder makes.
 */
#include <stdbool.h>
#include <string.h>

#include "kms/format/blob.h"
#include "common/error.h"
#include "tests/support/fuzz.h"

static bool inside(const uint8_t *data, size_t size, const void *p, size_t len)
{
	const uint8_t *b = p;
	return b >= data && len <= size && (size_t)(b - data) <= size - len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	blob_view v;
	kms_status st = blob_parse(data, size, &v);
	if (st != KMS_OK) {
		FUZZ_CHECK(st == KMS_INVALID_CIPHERTEXT);
		FUZZ_CHECK(strncmp(kms_error_message(), "ciphertext blob: ", 17) == 0);
		FUZZ_CHECK(strchr(kms_error_message(), '\n') == NULL);
		FUZZ_CHECK(v.header == NULL && v.sealed == NULL && v.region == NULL);
		return 0;
	}

	FUZZ_CHECK(size >= KMS_BLOB_MIN_LEN && size <= KMS_BLOB_MAX_LEN);
	FUZZ_CHECK(v.header == data);
	FUZZ_CHECK(v.header_len + v.sealed_len == size);
	FUZZ_CHECK(v.sealed_len == v.ciphertext_len + KMS_BLOB_TAG_LEN);
	FUZZ_CHECK(inside(data, size, v.key_id, KMS_KEYID_BYTES));
	FUZZ_CHECK(inside(data, size, v.region, v.region_len));
	FUZZ_CHECK(inside(data, size, v.iv, KMS_BLOB_IV_LEN));
	FUZZ_CHECK(inside(data, size, v.ciphertext, v.ciphertext_len));
	FUZZ_CHECK(inside(data, size, v.tag, KMS_BLOB_TAG_LEN));
	FUZZ_CHECK(v.sealed == v.ciphertext && v.tag == v.ciphertext + v.ciphertext_len);
	FUZZ_CHECK(v.key_version >= 1 && v.region_len >= 1 && v.region_len <= 32);

	/* Rebuild from the parsed fields: the same bytes. */
	blob_header h;
	static uint8_t rebuilt[KMS_BLOB_MAX_LEN];
	size_t rebuilt_len;
	FUZZ_CHECK(blob_header_build(v.key_id, v.key_version, v.region, v.region_len, v.iv,
	                             v.ciphertext_len, &h) == KMS_OK);
	FUZZ_CHECK(h.len == v.header_len && memcmp(h.bytes, v.header, h.len) == 0);
	FUZZ_CHECK(blob_assemble(&h, v.sealed, v.sealed_len, rebuilt, sizeof rebuilt,
	                         &rebuilt_len) == KMS_OK);
	FUZZ_CHECK(rebuilt_len == size && memcmp(rebuilt, data, size) == 0);

	/* The rest of the Decrypt path that needs no HSM. */
	st = blob_check_region(&v, "ap-south-1", 10);
	FUZZ_CHECK(st == KMS_OK || st == KMS_INVALID_CIPHERTEXT);
	FUZZ_CHECK((st == KMS_OK) ==
	           (v.region_len == 10 && memcmp(v.region, "ap-south-1", 10) == 0));
	static const uint8_t empty_context[KMS_CONTEXT_ENCODED_EMPTY_LEN] = { 0, 0 };
	uint8_t aad[KMS_BLOB_HEADER_MAX + sizeof empty_context];
	size_t aad_len;
	FUZZ_CHECK(blob_aad_build(v.header, v.header_len, empty_context, sizeof empty_context, aad,
	                          sizeof aad, &aad_len) == KMS_OK);
	FUZZ_CHECK(aad_len == v.header_len + sizeof empty_context);
	return 0;
}
