#include "kms/format/blob.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/cursor.h"
#include "common/error.h"

#define WHERE "ciphertext blob"

static bool region_char_ok(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* Index of the first character outside [a-z0-9-], or len if none. */
static size_t region_bad_char(const uint8_t *region, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!region_char_ok(region[i]))
			return i;
	return len;
}

kms_status blob_region_validate(const char *region, size_t len)
{
	KMS_ENSURE(region != NULL || len == 0, KMS_INVALID_ARGUMENT, "region: missing");
	KMS_ENSURE(len >= KMS_BLOB_REGION_MIN && len <= KMS_BLOB_REGION_MAX,
	           KMS_INVALID_ARGUMENT, "region: %zu bytes, must be %d..%d", len,
	           KMS_BLOB_REGION_MIN, KMS_BLOB_REGION_MAX);
	size_t bad = region_bad_char((const uint8_t *)region, len);
	KMS_ENSURE(bad == len, KMS_INVALID_ARGUMENT,
	           "region: character %zu is not one of [a-z0-9-]", bad);
	return KMS_OK;
}

kms_status blob_header_build(const uint8_t key_id[static KMS_KEYID_BYTES],
                             uint32_t key_version, const char *region, size_t region_len,
                             const uint8_t iv[static KMS_BLOB_IV_LEN], size_t plaintext_len,
                             blob_header *out)
{
	memset(out, 0, sizeof *out);
	KMS_ENSURE(key_version >= KMS_KEY_VERSION_MIN, KMS_INVALID_ARGUMENT,
	           WHERE ": key version 0 (versions start at 1)");
	KMS_GUARD(blob_region_validate(region, region_len));
	KMS_ENSURE(plaintext_len >= KMS_ENCRYPT_MIN_PLAINTEXT &&
	                   plaintext_len <= KMS_ENCRYPT_MAX_PLAINTEXT,
	           KMS_INVALID_ARGUMENT, WHERE ": plaintext is %zu bytes, must be %d..%d",
	           plaintext_len, KMS_ENCRYPT_MIN_PLAINTEXT, KMS_ENCRYPT_MAX_PLAINTEXT);

	kms_writer w = kms_writer_init(out->bytes, sizeof out->bytes);
	(void)kms_writer_put(&w, KMS_BLOB_MAGIC, KMS_BLOB_MAGIC_LEN);
	(void)kms_writer_u8(&w, KMS_BLOB_FORMAT_VERSION);
	(void)kms_writer_put(&w, key_id, KMS_KEYID_BYTES);
	(void)kms_writer_u32be(&w, key_version);
	(void)kms_writer_u8(&w, (uint8_t)region_len);
	(void)kms_writer_put(&w, region, region_len);
	(void)kms_writer_put(&w, iv, KMS_BLOB_IV_LEN);
	(void)kms_writer_u32be(&w, (uint32_t)plaintext_len);
	if (!w.ok) {
		memset(out, 0, sizeof *out);
		return KMS_FAIL(KMS_INTERNAL, WHERE ": header does not fit its buffer");
	}
	out->len = sizeof out->bytes - w.left;
	out->ciphertext_len = plaintext_len; /* GCM: as long as the plaintext */
	return KMS_OK;
}

kms_status blob_aad_build(const uint8_t *header, size_t header_len, const uint8_t *context,
                          size_t context_len, uint8_t *out, size_t cap, size_t *out_len)
{
	*out_len = 0;
	KMS_ENSURE(header != NULL && header_len >= KMS_BLOB_HEADER_MIN &&
	                   header_len <= KMS_BLOB_HEADER_MAX,
	           KMS_INVALID_ARGUMENT, WHERE ": AAD: header is %zu bytes, must be %d..%d",
	           header ? header_len : 0, KMS_BLOB_HEADER_MIN, KMS_BLOB_HEADER_MAX);
	KMS_ENSURE(context != NULL && context_len >= KMS_CONTEXT_ENCODED_EMPTY_LEN &&
	                   context_len <= KMS_CONTEXT_ENCODED_MAX,
	           KMS_INVALID_ARGUMENT,
	           WHERE ": AAD: context encoding is %zu bytes, must be %d..%d",
	           context ? context_len : 0, KMS_CONTEXT_ENCODED_EMPTY_LEN,
	           KMS_CONTEXT_ENCODED_MAX);
	size_t len = blob_aad_len(header_len, context_len);
	KMS_ENSURE(out != NULL && cap >= len, KMS_INVALID_ARGUMENT,
	           WHERE ": AAD needs %zu bytes, buffer has %zu", len, out ? cap : 0);

	kms_writer w = kms_writer_init(out, cap);
	(void)kms_writer_put(&w, header, header_len);
	(void)kms_writer_put(&w, context, context_len);
	KMS_ENSURE(w.ok, KMS_INTERNAL, WHERE ": AAD does not fit its buffer");
	*out_len = len;
	return KMS_OK;
}

kms_status blob_aad_alloc(const uint8_t *header, size_t header_len, const uint8_t *context,
                          size_t context_len, uint8_t **out, size_t *out_len)
{
	*out = NULL;
	*out_len = 0;
	/* Lengths are checked by blob_aad_build; bound them first so the
	 * allocation is never larger than an AAD can be. */
	KMS_ENSURE(header_len <= KMS_BLOB_HEADER_MAX && context_len <= KMS_CONTEXT_ENCODED_MAX,
	           KMS_INVALID_ARGUMENT, WHERE ": AAD: header or context too long");
	size_t len = blob_aad_len(header_len, context_len);
	uint8_t *aad = malloc(len ? len : 1);
	KMS_ENSURE(aad != NULL, KMS_INTERNAL, WHERE ": AAD: out of memory (%zu bytes)", len);
	kms_status st = blob_aad_build(header, header_len, context, context_len, aad, len, out_len);
	if (st != KMS_OK) {
		free(aad);
		return st;
	}
	*out = aad;
	return KMS_OK;
}

kms_status blob_assemble(const blob_header *header, const uint8_t *sealed, size_t sealed_len,
                         uint8_t *out, size_t cap, size_t *out_len)
{
	*out_len = 0;
	KMS_ENSURE(header->len >= KMS_BLOB_HEADER_MIN && header->len <= KMS_BLOB_HEADER_MAX &&
	                   header->ciphertext_len >= KMS_ENCRYPT_MIN_PLAINTEXT &&
	                   header->ciphertext_len <= KMS_ENCRYPT_MAX_PLAINTEXT,
	           KMS_INVALID_ARGUMENT, WHERE ": assemble: the header was not built");
	KMS_ENSURE(sealed != NULL && sealed_len == blob_sealed_len(header), KMS_INVALID_ARGUMENT,
	           WHERE ": assemble: sealed output is %zu bytes, the header says %zu",
	           sealed ? sealed_len : 0, blob_sealed_len(header));
	size_t len = blob_total_len(header);
	KMS_ENSURE(out != NULL && cap >= len, KMS_INVALID_ARGUMENT,
	           WHERE ": assemble: needs %zu bytes, buffer has %zu", len, out ? cap : 0);

	kms_writer w = kms_writer_init(out, cap);
	(void)kms_writer_put(&w, header->bytes, header->len);
	(void)kms_writer_put(&w, sealed, sealed_len);
	KMS_ENSURE(w.ok, KMS_INTERNAL, WHERE ": assemble: does not fit its buffer");
	*out_len = len;
	return KMS_OK;
}

/*
 * One field at a time through the cursor, each length checked before it is
 * used; the first problem is the one reported. The checks run in blob
 * order, so a truncated blob is reported at the field it ends in.
 */
kms_status blob_parse(const uint8_t *blob, size_t len, blob_view *out)
{
	kms_cursor c = kms_cursor_init(blob, len);
	blob_view v;
	const uint8_t *magic, *region;
	uint8_t region_len;
	uint32_t ciphertext_len;
	kms_status st = KMS_OK;

	memset(out, 0, sizeof *out);
	memset(&v, 0, sizeof v);

#define TAKE(ok, field)                                                        \
	do {                                                                   \
		if (!(ok)) {                                                   \
			st = KMS_FAIL(KMS_INVALID_CIPHERTEXT,                  \
			              WHERE ": %zu bytes, truncated in the %s", len, field); \
			goto out;                                              \
		}                                                              \
	} while (0)
#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			st = KMS_FAIL(KMS_INVALID_CIPHERTEXT, WHERE ": " __VA_ARGS__); \
			goto out;                                              \
		}                                                              \
	} while (0)

	TAKE(kms_cursor_take(&c, KMS_BLOB_MAGIC_LEN, &magic), "magic");
	CHECK(memcmp(magic, KMS_BLOB_MAGIC, KMS_BLOB_MAGIC_LEN) == 0,
	      "bad magic, not a kms ciphertext blob");
	TAKE(kms_cursor_u8(&c, &v.format_version), "format version");
	CHECK(v.format_version == KMS_BLOB_FORMAT_VERSION,
	      "format version %u is not supported (this build reads %d)",
	      (unsigned)v.format_version, KMS_BLOB_FORMAT_VERSION);
	TAKE(kms_cursor_take(&c, KMS_KEYID_BYTES, &v.key_id), "key id");
	TAKE(kms_cursor_u32be(&c, &v.key_version), "key version");
	CHECK(v.key_version >= KMS_KEY_VERSION_MIN, "key version 0 (versions start at 1)");
	TAKE(kms_cursor_u8(&c, &region_len), "region length");
	CHECK(region_len >= KMS_BLOB_REGION_MIN && region_len <= KMS_BLOB_REGION_MAX,
	      "region length %u, must be %d..%d", (unsigned)region_len, KMS_BLOB_REGION_MIN,
	      KMS_BLOB_REGION_MAX);
	TAKE(kms_cursor_take(&c, region_len, &region), "region");
	CHECK(region_bad_char(region, region_len) == region_len,
	      "region character %zu is not one of [a-z0-9-]",
	      region_bad_char(region, region_len));
	TAKE(kms_cursor_take(&c, KMS_BLOB_IV_LEN, &v.iv), "IV");
	TAKE(kms_cursor_u32be(&c, &ciphertext_len), "ciphertext length");
	CHECK(ciphertext_len >= KMS_ENCRYPT_MIN_PLAINTEXT && ciphertext_len <= KMS_ENCRYPT_MAX_PLAINTEXT,
	      "ciphertext length %u, must be %d..%d", (unsigned)ciphertext_len,
	      KMS_ENCRYPT_MIN_PLAINTEXT, KMS_ENCRYPT_MAX_PLAINTEXT);

	v.header = blob;
	v.header_len = len - c.left;
	size_t sealed_len = (size_t)ciphertext_len + KMS_BLOB_TAG_LEN;
	CHECK(c.left >= sealed_len,
	      "%zu bytes, truncated: the ciphertext length field says %u, so %zu bytes of "
	      "ciphertext and tag must follow the header, but %zu do",
	      len, (unsigned)ciphertext_len, sealed_len, c.left);
	CHECK(c.left == sealed_len, "%zu trailing bytes", c.left - sealed_len);
	v.sealed = c.next;
	v.sealed_len = sealed_len;
	TAKE(kms_cursor_take(&c, ciphertext_len, &v.ciphertext), "ciphertext");
	v.ciphertext_len = ciphertext_len;
	TAKE(kms_cursor_take(&c, KMS_BLOB_TAG_LEN, &v.tag), "tag");
	CHECK(kms_cursor_done(&c), "%zu trailing bytes", c.left);

	v.region = (const char *)region;
	v.region_len = region_len;
	*out = v;
out:
#undef TAKE
#undef CHECK
	return st;
}

kms_status blob_check_region(const blob_view *blob, const char *our_region, size_t our_region_len)
{
	if (blob_region_validate(our_region, our_region_len) != KMS_OK)
		return KMS_FAIL(KMS_INTERNAL, "this daemon's region is malformed");
	KMS_ENSURE(blob->region != NULL && blob->region_len >= KMS_BLOB_REGION_MIN &&
	                   blob->region_len <= KMS_BLOB_REGION_MAX &&
	                   region_bad_char((const uint8_t *)blob->region, blob->region_len) ==
	                           blob->region_len,
	           KMS_INVALID_ARGUMENT, WHERE ": check region: the blob was not parsed");
	bool same = blob->region_len == our_region_len &&
	            memcmp(blob->region, our_region, our_region_len) == 0;
	/* Both regions are 1..32 bytes of [a-z0-9-] (checked above), so
	 * printing them can neither overflow the line nor inject into a log. */
	KMS_ENSURE(same, KMS_INVALID_CIPHERTEXT, "blob was made in region %.*s, this is region %.*s",
	           (int)blob->region_len, blob->region, (int)our_region_len, our_region);
	return KMS_OK;
}
