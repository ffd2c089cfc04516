#include "common/pseudonym.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/cursor.h"
#include "common/error.h"

_Static_assert(sizeof KMS_PSEUDONYM_DOMAIN == KMS_PSEUDONYM_DOMAIN_LEN,
               "the domain prefix is its 16 characters and the literal's NUL");
_Static_assert(KMS_PSEUDONYM_TEXT_MAX + 1 == KMS_PSEUDONYM_TEXT_SIZE,
               "limits.h's text size is the longest text form and its NUL");
_Static_assert(KMS_PSEUDONYM_MAC_BYTES * 8 == KMS_PSEUDONYM_MAC_TEXT_LEN * 5,
               "20 bytes are exactly 32 base32 characters: no padding, no spare bits");
_Static_assert(KMS_PSEUDONYM_MESSAGE_MAX <= UINT32_MAX, "a message's lengths fit a u32");

/* RFC 4648 section 6, in lowercase. The MAC is not secret (the text form
 * is the output), so a table look-up is fine here. */
static const char base32[] = "abcdefghijklmnopqrstuvwxyz234567";

#define KEY_ID_PREFIX "k-"
#define KEY_ID_PREFIX_LEN 2
#define KEY_ID_TEXT_LEN 34 /* "k-" and 32 hex digits, as kms/format/keyid.h */

static bool is_lower_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static bool is_base32(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '2' && c <= '7');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

kms_status pseudonym_check_value(size_t value_len)
{
	KMS_ENSURE(value_len >= 1 && value_len <= KMS_PSEUDONYM_VALUE_MAX, KMS_INVALID_ARGUMENT,
	           "pseudonym: a value is %zu bytes, must be 1..%d", value_len,
	           KMS_PSEUDONYM_VALUE_MAX);
	return KMS_OK;
}

size_t pseudonym_message_len(size_t context_len, size_t value_len)
{
	if (context_len < KMS_CONTEXT_ENCODED_EMPTY_LEN || context_len > KMS_CONTEXT_ENCODED_MAX ||
	    value_len < 1 || value_len > KMS_PSEUDONYM_VALUE_MAX)
		return 0;
	return KMS_PSEUDONYM_MESSAGE_OVERHEAD + context_len + value_len;
}

/* The value's rules, and room for a message of size bytes (size 0: the
 * lengths were out of bounds, reported by the checks before). */
static kms_status check_room(const uint8_t *value, size_t value_len, size_t size,
                             const uint8_t *out, size_t cap)
{
	KMS_GUARD(pseudonym_check_value(value_len));
	KMS_ENSURE(value != NULL, KMS_INVALID_ARGUMENT, "pseudonym: the value is missing");
	KMS_ENSURE(size != 0, KMS_INVALID_ARGUMENT,
	           "pseudonym: a context encoding is %d..%d bytes", KMS_CONTEXT_ENCODED_EMPTY_LEN,
	           KMS_CONTEXT_ENCODED_MAX);
	KMS_ENSURE(out != NULL && cap >= size, KMS_INVALID_ARGUMENT,
	           "pseudonym: the message needs %zu bytes, the buffer has %zu", size,
	           out ? cap : 0);
	return KMS_OK;
}

#define MESSAGE_HEAD_LEN (KMS_PSEUDONYM_DOMAIN_LEN + KMS_PSEUDONYM_LENGTH_LEN)

/* The domain prefix and the context's length: out[0..MESSAGE_HEAD_LEN). */
static void write_head(uint8_t *out, size_t context_len)
{
	kms_writer w = kms_writer_init(out, MESSAGE_HEAD_LEN);
	(void)kms_writer_put(&w, KMS_PSEUDONYM_DOMAIN, KMS_PSEUDONYM_DOMAIN_LEN);
	(void)kms_writer_u32be(&w, (uint32_t)context_len);
}

/* The value's length and the value: the message's last part, written only
 * once everything is checked, at out (room checked by check_room). */
static void write_value(uint8_t *out, const uint8_t *value, size_t value_len)
{
	kms_writer w = kms_writer_init(out, KMS_PSEUDONYM_LENGTH_LEN + value_len);
	(void)kms_writer_u32be(&w, (uint32_t)value_len);
	(void)kms_writer_put(&w, value, value_len);
}

kms_status pseudonym_message_encoded(const uint8_t *context, size_t context_len,
                                     const uint8_t *value, size_t value_len, uint8_t *out,
                                     size_t cap, size_t *len)
{
	*len = 0;
	size_t size = pseudonym_message_len(context_len, value_len);
	KMS_GUARD(check_room(value, value_len, size, out, cap));
	KMS_ENSURE(context != NULL, KMS_INVALID_ARGUMENT,
	           "pseudonym: the context encoding is missing");

	write_head(out, context_len);
	memcpy(out + MESSAGE_HEAD_LEN, context, context_len);
	write_value(out + MESSAGE_HEAD_LEN + context_len, value, value_len);
	*len = size;
	return KMS_OK;
}

kms_status pseudonym_message(const context_pair *ctx, size_t n_ctx, const uint8_t *value,
                             size_t value_len, uint8_t *out, size_t cap, size_t *len)
{
	size_t context_len, written;

	*len = 0;
	KMS_GUARD(context_encoded_size(ctx, n_ctx, &context_len));
	size_t size = pseudonym_message_len(context_len, value_len);
	KMS_GUARD(check_room(value, value_len, size, out, cap));

	/* The context is encoded in place, after the prefix and its length. */
	KMS_GUARD(context_encode(ctx, n_ctx, out + MESSAGE_HEAD_LEN, context_len, &written));
	KMS_ENSURE(written == context_len, KMS_INTERNAL,
	           "pseudonym: the context encoding disagrees with its size");
	write_head(out, context_len);
	write_value(out + MESSAGE_HEAD_LEN + context_len, value, value_len);
	*len = size;
	return KMS_OK;
}

bool pseudonym_domain_prefixed(const uint8_t *msg, size_t len)
{
	return msg != NULL && len >= KMS_PSEUDONYM_DOMAIN_LEN &&
	       memcmp(msg, KMS_PSEUDONYM_DOMAIN, KMS_PSEUDONYM_DOMAIN_LEN) == 0;
}

static kms_status check_key_id(const char *key_id_text)
{
	bool ok = key_id_text != NULL &&
	          strnlen(key_id_text, KEY_ID_TEXT_LEN + 1) == KEY_ID_TEXT_LEN &&
	          memcmp(key_id_text, KEY_ID_PREFIX, KEY_ID_PREFIX_LEN) == 0;
	for (size_t i = KEY_ID_PREFIX_LEN; ok && i < KEY_ID_TEXT_LEN; i++)
		ok = is_lower_hex(key_id_text[i]);
	KMS_ENSURE(ok, KMS_INVALID_ARGUMENT,
	           "pseudonym: a key id is k- and 32 lowercase hex digits");
	return KMS_OK;
}

/* RFC 4648 base32 of the MAC's first 20 bytes: four groups of 5 bytes, each
 * 8 characters, the most significant bits first. */
static void base32_mac(const uint8_t mac[static KMS_PSEUDONYM_MAC_BYTES],
                       char out[static KMS_PSEUDONYM_MAC_TEXT_LEN])
{
	for (size_t g = 0; g < KMS_PSEUDONYM_MAC_BYTES / 5; g++) {
		uint64_t bits = 0;
		for (size_t k = 0; k < 5; k++)
			bits = bits << 8 | mac[5 * g + k];
		for (size_t k = 0; k < 8; k++)
			out[8 * g + k] = base32[(bits >> (35 - 5 * k)) & 0x1f];
	}
}

kms_status pseudonym_format(const char *key_id_text, uint32_t version,
                            const uint8_t mac[static KMS_MAC_LEN],
                            char out[static KMS_PSEUDONYM_TEXT_SIZE])
{
	out[0] = '\0';
	KMS_GUARD(check_key_id(key_id_text));
	KMS_ENSURE(version >= 1, KMS_INVALID_ARGUMENT,
	           "pseudonym: a key version is 1..4294967295, not 0");

	int n = snprintf(out, KMS_PSEUDONYM_TEXT_SIZE, "%s%.*s_%" PRIu32 "_",
	                 KMS_PSEUDONYM_TEXT_PREFIX, KMS_PSEUDONYM_KEY_SHORT_LEN,
	                 key_id_text + KEY_ID_PREFIX_LEN, version);
	if (n < 0 || (size_t)n + KMS_PSEUDONYM_MAC_TEXT_LEN >= KMS_PSEUDONYM_TEXT_SIZE) {
		out[0] = '\0';
		return KMS_FAIL(KMS_INTERNAL, "pseudonym: the text form outgrew its size");
	}
	base32_mac(mac, out + n);
	out[n + KMS_PSEUDONYM_MAC_TEXT_LEN] = '\0';
	return KMS_OK;
}

/* text[0..len) is 1..10 decimal digits without a leading zero, at most
 * UINT32_MAX and not 0. */
static bool parse_version(const char *text, size_t len, uint32_t *version)
{
	uint64_t v = 0;
	if (len < 1 || len > KMS_PSEUDONYM_VERSION_DIGITS_MAX || text[0] == '0')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!is_digit(text[i]))
			return false;
		v = v * 10 + (uint64_t)(text[i] - '0');
	}
	if (v > UINT32_MAX)
		return false;
	*version = (uint32_t)v;
	return true;
}

/* The parts of the text form at their places: text is len (46..55)
 * characters, so the version's digits are what lies between the two
 * fixed-width ends. */
static bool parse_parts(const char *text, size_t len, uint32_t *version)
{
	const size_t key_at = KMS_PSEUDONYM_TEXT_PREFIX_LEN;
	const size_t version_at = key_at + KMS_PSEUDONYM_KEY_SHORT_LEN + 1;
	const size_t mac_at = len - KMS_PSEUDONYM_MAC_TEXT_LEN;

	if (memcmp(text, KMS_PSEUDONYM_TEXT_PREFIX, KMS_PSEUDONYM_TEXT_PREFIX_LEN) != 0 ||
	    text[version_at - 1] != '_' || text[mac_at - 1] != '_')
		return false;
	for (size_t i = key_at; i < version_at - 1; i++)
		if (!is_lower_hex(text[i]))
			return false;
	for (size_t i = mac_at; i < len; i++)
		if (!is_base32(text[i]))
			return false;
	return parse_version(text + version_at, mac_at - 1 - version_at, version);
}

kms_status pseudonym_parse(const char *text, char key_short[static KMS_PSEUDONYM_KEY_SHORT_SIZE],
                           uint32_t *version)
{
	key_short[0] = '\0';
	*version = 0;
	size_t len = text ? strnlen(text, KMS_PSEUDONYM_TEXT_SIZE) : 0;
	uint32_t v = 0;
	KMS_ENSURE(len >= KMS_PSEUDONYM_TEXT_MIN && len <= KMS_PSEUDONYM_TEXT_MAX &&
	                   parse_parts(text, len, &v),
	           KMS_INVALID_ARGUMENT,
	           "pseudonym: not a pseudonym: kp_, 8 lowercase hex digits, _, a key version "
	           "1..4294967295 without leading zeros, _, 32 characters of [a-z2-7]");
	memcpy(key_short, text + KMS_PSEUDONYM_TEXT_PREFIX_LEN, KMS_PSEUDONYM_KEY_SHORT_LEN);
	key_short[KMS_PSEUDONYM_KEY_SHORT_LEN] = '\0';
	*version = v;
	return KMS_OK;
}
