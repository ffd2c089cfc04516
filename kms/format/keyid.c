#include "kms/format/keyid.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/cursor.h"
#include "common/error.h"

#define HEX_DIGITS_PER_BYTE 2

static const char hex_lower[] = "0123456789abcdef";

/* Reserved alias namespaces, compared without regard to letter case so that
 * "alias/KMS/x" cannot pass for one of ours. */
static const char *const reserved_alias_roots[] = { "alias/aws", "alias/kms" };
#define RESERVED_ALIAS_ROOT_LEN 9 /* strlen("alias/aws") */

static int hex_value(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1; /* uppercase is refused: one id, one spelling */
}

void keyid_format(const uint8_t id[static KMS_KEYID_BYTES],
                  char out[static KMS_KEYID_TEXT_SIZE])
{
	out[0] = 'k';
	out[1] = '-';
	for (size_t i = 0; i < KMS_KEYID_BYTES; i++) {
		out[KMS_KEYID_PREFIX_LEN + HEX_DIGITS_PER_BYTE * i] = hex_lower[id[i] >> 4];
		out[KMS_KEYID_PREFIX_LEN + HEX_DIGITS_PER_BYTE * i + 1] = hex_lower[id[i] & 0x0f];
	}
	out[KMS_KEYID_TEXT_LEN] = '\0';
}

kms_status keyid_parse(const char *text, size_t len, uint8_t out[static KMS_KEYID_BYTES])
{
	memset(out, 0, KMS_KEYID_BYTES);
	KMS_ENSURE(text != NULL || len == 0, KMS_INVALID_ARGUMENT, "key id: missing");
	KMS_ENSURE(len == KMS_KEYID_TEXT_LEN, KMS_INVALID_ARGUMENT,
	           "key id: %zu characters, must be %d (\"k-\" and 32 lowercase hex digits)",
	           len, KMS_KEYID_TEXT_LEN);

	kms_cursor c = kms_cursor_init((const uint8_t *)text, len);
	const uint8_t *prefix;
	const uint8_t *digits;
	(void)kms_cursor_take(&c, KMS_KEYID_PREFIX_LEN, &prefix);
	(void)kms_cursor_take(&c, KMS_KEYID_BYTES * HEX_DIGITS_PER_BYTE, &digits);
	KMS_ENSURE(kms_cursor_done(&c), KMS_INTERNAL, "key id: length check and cursor disagree");
	KMS_ENSURE(prefix[0] == 'k' && prefix[1] == '-', KMS_INVALID_ARGUMENT,
	           "key id: must start with \"k-\"");

	uint8_t id[KMS_KEYID_BYTES];
	for (size_t i = 0; i < KMS_KEYID_BYTES; i++) {
		int hi = hex_value(digits[HEX_DIGITS_PER_BYTE * i]);
		int lo = hex_value(digits[HEX_DIGITS_PER_BYTE * i + 1]);
		if (hi < 0 || lo < 0)
			return KMS_FAIL(KMS_INVALID_ARGUMENT,
			                "key id: character %zu is not a lowercase hex digit",
			                KMS_KEYID_PREFIX_LEN + HEX_DIGITS_PER_BYTE * i + (hi < 0 ? 0 : 1));
		id[i] = (uint8_t)((hi << 4) | lo);
	}
	memcpy(out, id, sizeof id);
	return KMS_OK;
}

static bool alias_char_ok(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '/' || c == '_' || c == '-';
}

static bool ascii_equal_nocase(const uint8_t *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t x = a[i];
		if (x >= 'A' && x <= 'Z')
			x = (uint8_t)(x - 'A' + 'a');
		if (x != (uint8_t)b[i])
			return false;
	}
	return true;
}

kms_status keyid_alias_validate(const char *text, size_t len)
{
	KMS_ENSURE(text != NULL || len == 0, KMS_INVALID_ARGUMENT, "alias: missing");
	kms_cursor c = kms_cursor_init((const uint8_t *)text, len);
	const uint8_t *prefix;
	KMS_ENSURE(kms_cursor_take(&c, KMS_ALIAS_PREFIX_LEN, &prefix) &&
	                   memcmp(prefix, KMS_ALIAS_PREFIX, KMS_ALIAS_PREFIX_LEN) == 0,
	           KMS_INVALID_ARGUMENT, "alias: must start with \"alias/\"");
	size_t name_len = c.left;
	KMS_ENSURE(name_len >= KMS_ALIAS_NAME_MIN && name_len <= KMS_ALIAS_NAME_MAX,
	           KMS_INVALID_ARGUMENT, "alias: name is %zu characters, must be %d..%d",
	           name_len, KMS_ALIAS_NAME_MIN, KMS_ALIAS_NAME_MAX);
	const uint8_t *name;
	(void)kms_cursor_take(&c, name_len, &name);
	for (size_t i = 0; i < name_len; i++)
		KMS_ENSURE(alias_char_ok(name[i]), KMS_INVALID_ARGUMENT,
		           "alias: character %zu is not one of [A-Za-z0-9/_-]",
		           KMS_ALIAS_PREFIX_LEN + i);

	/* "alias/aws" and "alias/kms" themselves, and anything below them. */
	const uint8_t *whole = (const uint8_t *)text;
	for (size_t r = 0; r < sizeof reserved_alias_roots / sizeof reserved_alias_roots[0]; r++) {
		if (len < RESERVED_ALIAS_ROOT_LEN ||
		    !ascii_equal_nocase(whole, reserved_alias_roots[r], RESERVED_ALIAS_ROOT_LEN))
			continue;
		KMS_ENSURE(len != RESERVED_ALIAS_ROOT_LEN && whole[RESERVED_ALIAS_ROOT_LEN] != '/',
		           KMS_INVALID_ARGUMENT, "alias: the %s/ namespace is reserved",
		           reserved_alias_roots[r]);
	}
	return KMS_OK;
}

kms_status keyid_ref_classify(const char *text, size_t len, keyid_ref_kind *kind,
                              uint8_t id[static KMS_KEYID_BYTES])
{
	memset(id, 0, KMS_KEYID_BYTES);
	*kind = KEYID_REF_NONE;
	KMS_ENSURE(text != NULL || len == 0, KMS_INVALID_ARGUMENT, "key reference: missing");
	if (len >= KMS_KEYID_PREFIX_LEN && memcmp(text, KMS_KEYID_PREFIX, KMS_KEYID_PREFIX_LEN) == 0) {
		KMS_GUARD(keyid_parse(text, len, id));
		*kind = KEYID_REF_KEY_ID;
		return KMS_OK;
	}
	if (len >= KMS_ALIAS_PREFIX_LEN && memcmp(text, KMS_ALIAS_PREFIX, KMS_ALIAS_PREFIX_LEN) == 0) {
		KMS_GUARD(keyid_alias_validate(text, len));
		*kind = KEYID_REF_ALIAS;
		return KMS_OK;
	}
	return KMS_FAIL(KMS_INVALID_ARGUMENT,
	                "key reference: neither a key id (\"k-...\") nor an alias (\"alias/...\")");
}

kms_status keyid_hsm_object_id(const uint8_t id[static KMS_KEYID_BYTES], uint32_t key_version,
                               uint8_t out[static KMS_KEYID_HSM_ID_LEN])
{
	memset(out, 0, KMS_KEYID_HSM_ID_LEN);
	KMS_ENSURE(key_version >= KMS_KEY_VERSION_MIN, KMS_INVALID_ARGUMENT,
	           "hsm object id: key version 0 (versions start at 1)");
	kms_writer w = kms_writer_init(out, KMS_KEYID_HSM_ID_LEN);
	(void)kms_writer_put(&w, id, KMS_KEYID_BYTES);
	(void)kms_writer_u32be(&w, key_version);
	KMS_ENSURE(w.ok && w.left == 0, KMS_INTERNAL, "hsm object id: size mismatch");
	return KMS_OK;
}

kms_status keyid_hsm_object_id_parse(const uint8_t *bytes, size_t len,
                                     uint8_t id[static KMS_KEYID_BYTES], uint32_t *key_version)
{
	memset(id, 0, KMS_KEYID_BYTES);
	*key_version = 0;
	KMS_ENSURE(len == KMS_KEYID_HSM_ID_LEN, KMS_INVALID_ARGUMENT,
	           "hsm object id: %zu bytes, a key version's is %d", len, KMS_KEYID_HSM_ID_LEN);
	kms_cursor c = kms_cursor_init(bytes, len);
	const uint8_t *id_bytes;
	uint32_t version;
	(void)kms_cursor_take(&c, KMS_KEYID_BYTES, &id_bytes);
	(void)kms_cursor_u32be(&c, &version);
	KMS_ENSURE(kms_cursor_done(&c), KMS_INVALID_ARGUMENT, "hsm object id: malformed");
	KMS_ENSURE(version >= KMS_KEY_VERSION_MIN, KMS_INVALID_ARGUMENT,
	           "hsm object id: key version 0 (versions start at 1)");
	memcpy(id, id_bytes, KMS_KEYID_BYTES);
	*key_version = version;
	return KMS_OK;
}

kms_status keyid_version_label(const uint8_t id[static KMS_KEYID_BYTES], uint32_t key_version,
                               char out[static KMS_KEYID_VERSION_LABEL_SIZE])
{
	out[0] = '\0';
	KMS_ENSURE(key_version >= KMS_KEY_VERSION_MIN, KMS_INVALID_ARGUMENT,
	           "hsm label: key version 0 (versions start at 1)");
	char text[KMS_KEYID_TEXT_SIZE];
	keyid_format(id, text);
	int n = snprintf(out, KMS_KEYID_VERSION_LABEL_SIZE, "%s:v%" PRIu32, text, key_version);
	KMS_ENSURE(n > 0 && (size_t)n < KMS_KEYID_VERSION_LABEL_SIZE, KMS_INTERNAL,
	           "hsm label: does not fit");
	return KMS_OK;
}
