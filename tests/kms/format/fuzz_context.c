/*
 * fuzz_context: the encryption context, two ways.
 *
 * Input: a mode byte, then
 *   even mode: pairs, each u16 BE key length, key, u16 BE value length,
 *              value, until the input ends or 80 pairs (more than the
 *              limit, to reach it); an incomplete last pair is dropped;
 *   odd mode:  a canonical encoding, given to context_decode.
 *
 * Pairs: validation agrees with an independent, naive oracle (its own UTF-8
 * decoder, quadratic duplicate search); a valid map's encoding is as long
 * as context_encoded_size says, decodes back to the same map, and is the
 * same bytes for the reversed order and from context_encode_alloc.
 * Canonical: whatever context_decode accepts re-encodes to the exact input
 * bytes (the encoding is unique), and points only into the input.
 */
#include <stdbool.h>
#include <string.h>

#include "common/context.h"
#include "common/cursor.h"
#include "common/error.h"
#include "tests/support/fuzz.h"

#define FUZZ_MAX_PAIRS (KMS_CONTEXT_MAX_PAIRS + 16)

static uint8_t encoding[KMS_CONTEXT_ENCODED_MAX];
static uint8_t reversed_encoding[KMS_CONTEXT_ENCODED_MAX];

/* The oracle's UTF-8: decode by bit arithmetic, then require the shortest
 * form and a scalar value. Deliberately unlike context.c's table. */
static bool oracle_utf8(const uint8_t *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		uint8_t b = s[i];
		size_t n;
		uint32_t cp;
		if (b < 0x80) {
			i++;
			continue;
		} else if ((b & 0xe0) == 0xc0) {
			n = 2, cp = b & 0x1fu;
		} else if ((b & 0xf0) == 0xe0) {
			n = 3, cp = b & 0x0fu;
		} else if ((b & 0xf8) == 0xf0) {
			n = 4, cp = b & 0x07u;
		} else {
			return false;
		}
		if (len - i < n)
			return false;
		for (size_t k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3fu);
		}
		size_t shortest = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
		if (shortest != n || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n;
	}
	return true;
}

static bool oracle_string(const char *p, size_t len)
{
	return oracle_utf8((const uint8_t *)p, len) && memchr(p, 0, len) == NULL;
}

static bool same_key(const context_pair *a, const context_pair *b)
{
	return a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0;
}

static bool oracle_valid(const context_pair *pairs, size_t n)
{
	if (n > KMS_CONTEXT_MAX_PAIRS)
		return false;
	for (size_t i = 0; i < n; i++) {
		const context_pair *p = &pairs[i];
		if (p->key_len < 1 || p->key_len > 256 || p->value_len > 1024 ||
		    !oracle_string(p->key, p->key_len) || !oracle_string(p->value, p->value_len))
			return false;
		for (size_t j = 0; j < i; j++)
			if (same_key(&pairs[j], p))
				return false;
	}
	return true;
}

static void fuzz_pairs(kms_cursor *c)
{
	static context_pair pairs[FUZZ_MAX_PAIRS];
	size_t n = 0;
	while (n < FUZZ_MAX_PAIRS && c->left > 0) {
		uint16_t key_len, value_len;
		const uint8_t *key, *value;
		if (!kms_cursor_u16be(c, &key_len) || !kms_cursor_take(c, key_len, &key) ||
		    !kms_cursor_u16be(c, &value_len) || !kms_cursor_take(c, value_len, &value))
			break;
		pairs[n++] = (context_pair){ (const char *)key, key_len, (const char *)value,
			                     value_len };
	}

	kms_status st = context_validate(pairs, n);
	FUZZ_CHECK(st == KMS_OK || st == KMS_INVALID_ARGUMENT);
	FUZZ_CHECK((st == KMS_OK) == oracle_valid(pairs, n));
	size_t size = 1, len = 1;
	FUZZ_CHECK(context_encoded_size(pairs, n, &size) == st);
	FUZZ_CHECK(context_encode(pairs, n, encoding, sizeof encoding, &len) == st);
	if (st != KMS_OK) {
		FUZZ_CHECK(size == 0 && len == 0);
		return;
	}
	FUZZ_CHECK(len == size && size >= KMS_CONTEXT_ENCODED_EMPTY_LEN &&
	           size <= KMS_CONTEXT_ENCODED_MAX);

	context_pair back[KMS_CONTEXT_MAX_PAIRS];
	size_t n_back;
	FUZZ_CHECK(context_decode(encoding, len, back, &n_back) == KMS_OK && n_back == n);
	for (size_t i = 0; i < n; i++) {
		bool found = false;
		for (size_t j = 0; j < n_back && !found; j++)
			found = same_key(&pairs[i], &back[j]) &&
			        pairs[i].value_len == back[j].value_len &&
			        memcmp(pairs[i].value, back[j].value, back[j].value_len) == 0;
		FUZZ_CHECK(found);
	}

	static context_pair reversed[KMS_CONTEXT_MAX_PAIRS];
	for (size_t i = 0; i < n; i++)
		reversed[i] = pairs[n - 1 - i];
	size_t reversed_len;
	FUZZ_CHECK(context_encode(reversed, n, reversed_encoding, sizeof reversed_encoding,
	                          &reversed_len) == KMS_OK);
	FUZZ_CHECK(reversed_len == len && memcmp(reversed_encoding, encoding, len) == 0);

	uint8_t *alloced;
	size_t alloced_len;
	FUZZ_CHECK(context_encode_alloc(pairs, n, &alloced, &alloced_len) == KMS_OK);
	FUZZ_CHECK(alloced_len == len && memcmp(alloced, encoding, len) == 0);
	free(alloced);
}

static void fuzz_canonical(const uint8_t *bytes, size_t len)
{
	context_pair pairs[KMS_CONTEXT_MAX_PAIRS];
	size_t n = 99;
	kms_status st = context_decode(bytes, len, pairs, &n);
	if (st != KMS_OK) {
		FUZZ_CHECK(st == KMS_INVALID_ARGUMENT && n == 0);
		return;
	}
	FUZZ_CHECK(oracle_valid(pairs, n));
	for (size_t i = 0; i < n; i++) {
		const uint8_t *k = (const uint8_t *)pairs[i].key;
		const uint8_t *v = (const uint8_t *)pairs[i].value;
		FUZZ_CHECK(k >= bytes && k + pairs[i].key_len <= bytes + len);
		FUZZ_CHECK(v >= bytes && v + pairs[i].value_len <= bytes + len);
	}
	size_t out_len;
	FUZZ_CHECK(context_encode(pairs, n, encoding, sizeof encoding, &out_len) == KMS_OK);
	FUZZ_CHECK(out_len == len && memcmp(encoding, bytes, len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kms_cursor c = kms_cursor_init(data, size);
	uint8_t mode;
	if (!kms_cursor_u8(&c, &mode))
		return 0;
	if (mode & 1)
		fuzz_canonical(c.next, c.left);
	else
		fuzz_pairs(&c);
	return 0;
}
