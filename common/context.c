#include "common/context.h"

#include <stdlib.h>

#include "common/cursor.h"
#include "common/error.h"
#include "common/utf8.h"

/* A context string: strict UTF-8 and no U+0000 (see context.h). */
static kms_status check_string(const char *what, const char *text, size_t len,
                               const char *where, size_t index)
{
	const uint8_t *bytes = (const uint8_t *)text;
	size_t bad = 0;

	KMS_ENSURE(bytes != NULL || len == 0, KMS_INVALID_ARGUMENT,
	           "%s: pair %zu %s is missing", where, index, what);
	KMS_ENSURE(kms_utf8_valid(bytes, len, &bad), KMS_INVALID_ARGUMENT,
	           "%s: pair %zu %s is not valid UTF-8 (byte %zu)", where, index, what, bad);
	for (size_t i = 0; i < len; i++)
		KMS_ENSURE(bytes[i] != 0, KMS_INVALID_ARGUMENT,
		           "%s: pair %zu %s contains U+0000 (byte %zu)", where, index, what, i);
	return KMS_OK;
}

static kms_status check_pair(const context_pair *p, const char *where, size_t index)
{
	KMS_ENSURE(p->key_len >= KMS_CONTEXT_KEY_MIN && p->key_len <= KMS_CONTEXT_KEY_MAX,
	           KMS_INVALID_ARGUMENT, "%s: pair %zu key is %zu bytes, must be %d..%d",
	           where, index, p->key_len, KMS_CONTEXT_KEY_MIN, KMS_CONTEXT_KEY_MAX);
	KMS_ENSURE(p->value_len <= KMS_CONTEXT_VALUE_MAX, KMS_INVALID_ARGUMENT,
	           "%s: pair %zu value is %zu bytes, at most %d", where, index,
	           p->value_len, KMS_CONTEXT_VALUE_MAX);
	KMS_GUARD(check_string("key", p->key, p->key_len, where, index));
	KMS_GUARD(check_string("value", p->value, p->value_len, where, index));
	return KMS_OK;
}

/* Key order: memcmp over the common prefix, then the shorter first. Lengths
 * are checked (<= KMS_CONTEXT_KEY_MAX) before any comparison. */
static int key_compare(const context_pair *a, const context_pair *b)
{
	size_t common = a->key_len < b->key_len ? a->key_len : b->key_len;
	int c = common ? memcmp(a->key, b->key, common) : 0;
	if (c != 0)
		return c;
	if (a->key_len == b->key_len)
		return 0;
	return a->key_len < b->key_len ? -1 : 1;
}

kms_status context_check_count(size_t n_pairs)
{
	KMS_ENSURE(n_pairs <= KMS_CONTEXT_MAX_PAIRS, KMS_INVALID_ARGUMENT,
	           "encryption context: %zu pairs, at most %d", n_pairs, KMS_CONTEXT_MAX_PAIRS);
	return KMS_OK;
}

/*
 * Validates every pair and fills order[0..n_pairs) with the pairs' indexes
 * in canonical order. An insertion sort over at most 64 indexes: no
 * allocation, and the caller's array is left as it is.
 */
static kms_status validate_and_order(const context_pair *pairs, size_t n_pairs,
                                     size_t order[static KMS_CONTEXT_MAX_PAIRS])
{
	KMS_GUARD(context_check_count(n_pairs));
	KMS_ENSURE(pairs != NULL || n_pairs == 0, KMS_INVALID_ARGUMENT,
	           "encryption context: pairs missing");
	for (size_t i = 0; i < n_pairs; i++)
		KMS_GUARD(check_pair(&pairs[i], "encryption context", i));

	for (size_t i = 0; i < n_pairs; i++) {
		size_t j = i;
		while (j > 0 && key_compare(&pairs[order[j - 1]], &pairs[i]) > 0) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
	for (size_t i = 1; i < n_pairs; i++) {
		size_t a = order[i - 1], b = order[i];
		KMS_ENSURE(key_compare(&pairs[a], &pairs[b]) != 0, KMS_INVALID_ARGUMENT,
		           "encryption context: pairs %zu and %zu have the same key",
		           a < b ? a : b, a < b ? b : a);
	}
	return KMS_OK;
}

static size_t encoded_size(const context_pair *pairs, size_t n_pairs)
{
	/* Bounded by KMS_CONTEXT_ENCODED_MAX: the pairs are validated. */
	size_t size = KMS_CONTEXT_COUNT_LEN;
	for (size_t i = 0; i < n_pairs; i++)
		size += KMS_CONTEXT_PAIR_OVERHEAD + pairs[i].key_len + pairs[i].value_len;
	return size;
}

kms_status context_validate(const context_pair *pairs, size_t n_pairs)
{
	size_t order[KMS_CONTEXT_MAX_PAIRS];
	return validate_and_order(pairs, n_pairs, order);
}

kms_status context_encoded_size(const context_pair *pairs, size_t n_pairs, size_t *size)
{
	size_t order[KMS_CONTEXT_MAX_PAIRS];
	*size = 0;
	KMS_GUARD(validate_and_order(pairs, n_pairs, order));
	*size = encoded_size(pairs, n_pairs);
	return KMS_OK;
}

kms_status context_encode(const context_pair *pairs, size_t n_pairs, uint8_t *out,
                          size_t cap, size_t *out_len)
{
	size_t order[KMS_CONTEXT_MAX_PAIRS];
	*out_len = 0;
	KMS_GUARD(validate_and_order(pairs, n_pairs, order));
	size_t size = encoded_size(pairs, n_pairs);
	KMS_ENSURE(out != NULL && cap >= size, KMS_INVALID_ARGUMENT,
	           "encryption context: encoding needs %zu bytes, buffer has %zu", size,
	           out ? cap : 0);

	kms_writer w = kms_writer_init(out, cap);
	(void)kms_writer_u16be(&w, (uint16_t)n_pairs);
	for (size_t i = 0; i < n_pairs; i++) {
		const context_pair *p = &pairs[order[i]];
		(void)kms_writer_u16be(&w, (uint16_t)p->key_len);
		(void)kms_writer_put(&w, p->key, p->key_len);
		(void)kms_writer_u16be(&w, (uint16_t)p->value_len);
		(void)kms_writer_put(&w, p->value, p->value_len);
	}
	KMS_ENSURE(w.ok && cap - w.left == size, KMS_INTERNAL,
	           "encryption context: encoded length disagrees with its size");
	*out_len = size;
	return KMS_OK;
}

kms_status context_encode_alloc(const context_pair *pairs, size_t n_pairs, uint8_t **out,
                                size_t *out_len)
{
	size_t size;
	*out = NULL;
	*out_len = 0;
	KMS_GUARD(context_encoded_size(pairs, n_pairs, &size));
	uint8_t *encoding = malloc(size);
	KMS_ENSURE(encoding != NULL, KMS_INTERNAL,
	           "encryption context: out of memory (%zu bytes)", size);
	kms_status st = context_encode(pairs, n_pairs, encoding, size, out_len);
	if (st != KMS_OK) {
		free(encoding);
		return st;
	}
	*out = encoding;
	return KMS_OK;
}

kms_status context_decode(const uint8_t *bytes, size_t len,
                          context_pair pairs[static KMS_CONTEXT_MAX_PAIRS], size_t *n_pairs)
{
	static const char where[] = "encryption context encoding";
	kms_cursor c = kms_cursor_init(bytes, len);
	uint16_t count;
	kms_status st = KMS_OK;

	*n_pairs = 0;
	memset(pairs, 0, KMS_CONTEXT_MAX_PAIRS * sizeof pairs[0]);
	if (!kms_cursor_u16be(&c, &count)) {
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "%s: truncated in the pair count", where);
		goto out;
	}
	if (count > KMS_CONTEXT_MAX_PAIRS) {
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "%s: %u pairs, at most %d", where,
		              (unsigned)count, KMS_CONTEXT_MAX_PAIRS);
		goto out;
	}
	for (size_t i = 0; i < count; i++) {
		uint16_t key_len, value_len;
		const uint8_t *key, *value;
		if (!kms_cursor_u16be(&c, &key_len) || !kms_cursor_take(&c, key_len, &key) ||
		    !kms_cursor_u16be(&c, &value_len) || !kms_cursor_take(&c, value_len, &value)) {
			st = KMS_FAIL(KMS_INVALID_ARGUMENT, "%s: truncated in pair %zu", where, i);
			goto out;
		}
		context_pair *p = &pairs[i];
		p->key = (const char *)key;
		p->key_len = key_len;
		p->value = (const char *)value;
		p->value_len = value_len;
		KMS_GUARD_OUT(st, check_pair(p, where, i));
		if (i > 0 && key_compare(&pairs[i - 1], p) >= 0) {
			st = KMS_FAIL(KMS_INVALID_ARGUMENT,
			              "%s: pair %zu is not in strictly ascending key order", where, i);
			goto out;
		}
	}
	if (!kms_cursor_done(&c)) {
		st = KMS_FAIL(KMS_INVALID_ARGUMENT, "%s: %zu trailing bytes", where, c.left);
		goto out;
	}
	*n_pairs = count;
out:
	if (st != KMS_OK)
		memset(pairs, 0, KMS_CONTEXT_MAX_PAIRS * sizeof pairs[0]);
	return st;
}
