/* The encryption context: validation, its UTF-8 rule, canonical encoding
 * (the UTF-8 decoder itself: tests/common/test_utf8.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/context.h"
#include "common/error.h"

#define PAIR(k, v) { (k), sizeof(k) - 1, (v), sizeof(v) - 1 }

static uint8_t encoding[KMS_CONTEXT_ENCODED_MAX + 16];

static void empty_context_is_two_zero_bytes(void **state)
{
	size_t len = 99, size = 99;
	uint8_t *alloced = NULL;

	assert_int_equal(context_validate(NULL, 0), KMS_OK);
	assert_int_equal(context_encoded_size(NULL, 0, &size), KMS_OK);
	assert_int_equal(size, KMS_CONTEXT_ENCODED_EMPTY_LEN);
	assert_int_equal(context_encode(NULL, 0, encoding, sizeof encoding, &len), KMS_OK);
	assert_int_equal(len, 2);
	assert_int_equal(encoding[0], 0x00);
	assert_int_equal(encoding[1], 0x00);
	assert_int_equal(context_encode_alloc(NULL, 0, &alloced, &len), KMS_OK);
	assert_int_equal(len, 2);
	assert_int_equal(alloced[0] | alloced[1], 0);
	free(alloced);
}

static void encoding_is_exact(void **state)
{
	const context_pair pairs[] = { PAIR("purpose", "test"), PAIR("app", "") };
	const uint8_t expected[] = {
		0x00, 0x02,                                     /* 2 pairs */
		0x00, 0x03, 'a', 'p', 'p', 0x00, 0x00,          /* "app" = "" */
		0x00, 0x07, 'p', 'u', 'r', 'p', 'o', 's', 'e',  /* "purpose" */
		0x00, 0x04, 't', 'e', 's', 't',                 /* = "test" */
	};
	size_t len, size;

	assert_int_equal(context_encoded_size(pairs, 2, &size), KMS_OK);
	assert_int_equal(size, sizeof expected);
	assert_int_equal(context_encode(pairs, 2, encoding, sizeof encoding, &len), KMS_OK);
	assert_int_equal(len, sizeof expected);
	assert_memory_equal(encoding, expected, sizeof expected);

	/* Exactly enough room is enough; one byte less is refused untouched. */
	uint8_t exact[sizeof expected];
	assert_int_equal(context_encode(pairs, 2, exact, sizeof exact, &len), KMS_OK);
	assert_memory_equal(exact, expected, sizeof expected);
	uint8_t small[sizeof expected - 1];
	memset(small, 0xee, sizeof small);
	assert_int_equal(context_encode(pairs, 2, small, sizeof small, &len), KMS_INVALID_ARGUMENT);
	assert_int_equal(len, 0);
	for (size_t i = 0; i < sizeof small; i++)
		assert_int_equal(small[i], 0xee);
	assert_int_equal(context_encode(pairs, 2, NULL, 0, &len), KMS_INVALID_ARGUMENT);

	uint8_t *alloced;
	assert_int_equal(context_encode_alloc(pairs, 2, &alloced, &len), KMS_OK);
	assert_int_equal(len, sizeof expected);
	assert_memory_equal(alloced, expected, sizeof expected);
	free(alloced);
}

static void encode_permutation(const context_pair *base, const size_t *perm, size_t n,
                               uint8_t *out, size_t cap, size_t *len)
{
	context_pair shuffled[KMS_CONTEXT_MAX_PAIRS];
	for (size_t i = 0; i < n; i++)
		shuffled[i] = base[perm[i]];
	assert_int_equal(context_encode(shuffled, n, out, cap, len), KMS_OK);
}

static void order_does_not_matter(void **state)
{
	/* Shorter first on a common prefix; bytes compare unsigned (é > z). */
	const context_pair pairs[] = {
		PAIR("b", "2"), PAIR("ab", "1"), PAIR("a", "0"), PAIR("\xc3\xa9", "3"),
	};
	const uint8_t expected[] = {
		0x00, 0x04,
		0x00, 0x01, 'a', 0x00, 0x01, '0',
		0x00, 0x02, 'a', 'b', 0x00, 0x01, '1',
		0x00, 0x01, 'b', 0x00, 0x01, '2',
		0x00, 0x02, 0xc3, 0xa9, 0x00, 0x01, '3',
	};
	uint8_t other[64];
	size_t first_len, other_len;

	/* All 24 orders of four pairs give the same bytes. */
	size_t perm[4];
	for (size_t a = 0; a < 4; a++)
		for (size_t b = 0; b < 4; b++)
			for (size_t c = 0; c < 4; c++)
				for (size_t d = 0; d < 4; d++) {
					if (a == b || a == c || a == d || b == c || b == d || c == d)
						continue;
					perm[0] = a, perm[1] = b, perm[2] = c, perm[3] = d;
					encode_permutation(pairs, perm, 4, other, sizeof other, &other_len);
					assert_int_equal(other_len, sizeof expected);
					assert_memory_equal(other, expected, sizeof expected);
				}

	/* 64 pairs, many shuffles. */
	static char keys[KMS_CONTEXT_MAX_PAIRS][8];
	context_pair many[KMS_CONTEXT_MAX_PAIRS];
	size_t order[KMS_CONTEXT_MAX_PAIRS];
	for (size_t i = 0; i < KMS_CONTEXT_MAX_PAIRS; i++) {
		int n = snprintf(keys[i], sizeof keys[i], "k%zu", (i * 37) % 101);
		many[i] = (context_pair){ keys[i], (size_t)n, "v", 1 };
		order[i] = i;
	}
	static uint8_t big_first[4096], big_other[4096];
	assert_int_equal(context_encode(many, KMS_CONTEXT_MAX_PAIRS, big_first, sizeof big_first,
	                                &first_len), KMS_OK);
	srand(7);
	for (int round = 0; round < 200; round++) {
		for (size_t i = KMS_CONTEXT_MAX_PAIRS - 1; i > 0; i--) {
			size_t j = (size_t)rand() % (i + 1);
			size_t t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
		encode_permutation(many, order, KMS_CONTEXT_MAX_PAIRS, big_other, sizeof big_other,
		                   &other_len);
		assert_int_equal(other_len, first_len);
		assert_memory_equal(big_other, big_first, first_len);
	}
}

static void callers_pairs_are_not_reordered(void **state)
{
	const context_pair pairs[] = { PAIR("z", "1"), PAIR("a", "2") };
	context_pair copy[2];
	size_t len;
	memcpy(copy, pairs, sizeof pairs);
	assert_int_equal(context_encode(copy, 2, encoding, sizeof encoding, &len), KMS_OK);
	assert_memory_equal(copy, pairs, sizeof pairs);
}

static void expect_invalid(const context_pair *pairs, size_t n, const char *why)
{
	size_t len = 99, size = 99;
	uint8_t *alloced = (uint8_t *)&len;

	kms_error_clear();
	assert_int_equal(context_validate(pairs, n), KMS_INVALID_ARGUMENT);
	if (why && !strstr(kms_error_message(), why))
		fail_msg("message \"%s\" lacks \"%s\"", kms_error_message(), why);
	assert_int_equal(context_encoded_size(pairs, n, &size), KMS_INVALID_ARGUMENT);
	assert_int_equal(size, 0);
	assert_int_equal(context_encode(pairs, n, encoding, sizeof encoding, &len),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(len, 0);
	assert_int_equal(context_encode_alloc(pairs, n, &alloced, &len), KMS_INVALID_ARGUMENT);
	assert_null(alloced);
}

static void duplicate_keys_rejected(void **state)
{
	const context_pair adjacent[] = { PAIR("a", "1"), PAIR("a", "1") };
	expect_invalid(adjacent, 2, "pairs 0 and 1 have the same key");
	const context_pair apart[] = { PAIR("dup", "x"), PAIR("b", ""), PAIR("c", ""),
		                       PAIR("dup", "y") };
	expect_invalid(apart, 4, "pairs 0 and 3 have the same key");
	/* A shared prefix is not a duplicate. */
	const context_pair prefix[] = { PAIR("dup", "x"), PAIR("dupe", "y"), PAIR("du", "") };
	assert_int_equal(context_validate(prefix, 3), KMS_OK);
}

static void limits_enforced(void **state)
{
	static char long_key[KMS_CONTEXT_KEY_MAX + 1];
	static char long_value[KMS_CONTEXT_VALUE_MAX + 1];
	memset(long_key, 'k', sizeof long_key);
	memset(long_value, 'v', sizeof long_value);

	context_pair p = { long_key, KMS_CONTEXT_KEY_MAX, long_value, KMS_CONTEXT_VALUE_MAX };
	assert_int_equal(context_validate(&p, 1), KMS_OK);
	p.key_len = KMS_CONTEXT_KEY_MAX + 1;
	expect_invalid(&p, 1, "pair 0 key is 257 bytes, must be 1..256");
	p.key_len = 0;
	expect_invalid(&p, 1, "pair 0 key is 0 bytes");
	p.key_len = 1;
	p.value_len = KMS_CONTEXT_VALUE_MAX + 1;
	expect_invalid(&p, 1, "pair 0 value is 1025 bytes, at most 1024");
	p.value_len = 0;
	assert_int_equal(context_validate(&p, 1), KMS_OK);

	/* 64 pairs of the largest size: the largest encoding. 65: refused. */
	static char keys[KMS_CONTEXT_MAX_PAIRS + 1][KMS_CONTEXT_KEY_MAX];
	context_pair many[KMS_CONTEXT_MAX_PAIRS + 1];
	for (size_t i = 0; i <= KMS_CONTEXT_MAX_PAIRS; i++) {
		memset(keys[i], 'k', sizeof keys[i]);
		keys[i][0] = (char)('0' + i % 10);
		keys[i][1] = (char)('0' + i / 10);
		many[i] = (context_pair){ keys[i], KMS_CONTEXT_KEY_MAX, long_value,
			                  KMS_CONTEXT_VALUE_MAX };
	}
	size_t len;
	assert_int_equal(context_encode(many, KMS_CONTEXT_MAX_PAIRS, encoding, sizeof encoding, &len),
	                 KMS_OK);
	assert_int_equal(len, KMS_CONTEXT_ENCODED_MAX);
	expect_invalid(many, KMS_CONTEXT_MAX_PAIRS + 1, "65 pairs, at most 64");
	assert_int_equal(context_check_count(KMS_CONTEXT_MAX_PAIRS), KMS_OK);
	assert_int_equal(context_check_count(KMS_CONTEXT_MAX_PAIRS + 1), KMS_INVALID_ARGUMENT);

	/* Missing strings. */
	const context_pair null_key = { NULL, 3, "v", 1 };
	expect_invalid(&null_key, 1, "pair 0 key is missing");
	const context_pair null_value = { "k", 1, NULL, 2 };
	expect_invalid(&null_value, 1, "pair 0 value is missing");
	const context_pair empty_value = { "k", 1, NULL, 0 };
	assert_int_equal(context_validate(&empty_value, 1), KMS_OK);
	expect_invalid(NULL, 1, "pairs missing");
}

static void bad_utf8_in_context_rejected(void **state)
{
	const context_pair overlong_key[] = { PAIR("ok", "1"), PAIR("\xc0\xaf", "2") };
	expect_invalid(overlong_key, 2, "pair 1 key is not valid UTF-8 (byte 0)");
	const context_pair surrogate_value[] = { PAIR("k", "a\xed\xa0\x80") };
	expect_invalid(surrogate_value, 1, "pair 0 value is not valid UTF-8 (byte 1)");
	const context_pair truncated[] = { PAIR("k", "\xe2\x82") };
	expect_invalid(truncated, 1, "pair 0 value is not valid UTF-8");
	const context_pair ff[] = { PAIR("\xff", "v") };
	expect_invalid(ff, 1, "pair 0 key is not valid UTF-8");
	const context_pair nul_key[] = { { "a\0b", 3, "v", 1 } };
	expect_invalid(nul_key, 1, "pair 0 key contains U+0000 (byte 1)");
	const context_pair nul_value[] = { { "k", 1, "\0", 1 } };
	expect_invalid(nul_value, 1, "pair 0 value contains U+0000");
	/* Valid non-ASCII is fine. */
	const context_pair hindi[] = { PAIR("देश", "भारत") };
	assert_int_equal(context_validate(hindi, 1), KMS_OK);
}

static void errors_never_echo_the_context(void **state)
{
	const context_pair pairs[] = { PAIR("secret-key-name", "\xff secret value") };
	assert_int_equal(context_validate(pairs, 1), KMS_INVALID_ARGUMENT);
	assert_null(strstr(kms_error_message(), "secret"));
	const context_pair dup[] = { PAIR("secret", "a"), PAIR("secret", "b") };
	assert_int_equal(context_validate(dup, 2), KMS_INVALID_ARGUMENT);
	assert_null(strstr(kms_error_message(), "secret"));
}

static void from_cstr_adapts_protobuf_strings(void **state)
{
	context_pair p = context_pair_from_cstr("purpose", NULL);
	assert_int_equal(p.key_len, 7);
	assert_int_equal(p.value_len, 0);
	assert_int_equal(context_validate(&p, 1), KMS_OK);
	p = context_pair_from_cstr(NULL, "v");
	assert_int_equal(context_validate(&p, 1), KMS_INVALID_ARGUMENT);
}

static void decode_is_strict_and_round_trips(void **state)
{
	const context_pair pairs[] = { PAIR("b", "2"), PAIR("a", ""), PAIR("ab", "xyz") };
	context_pair back[KMS_CONTEXT_MAX_PAIRS];
	uint8_t again[64];
	size_t len, n, again_len;

	assert_int_equal(context_encode(pairs, 3, encoding, sizeof encoding, &len), KMS_OK);
	assert_int_equal(context_decode(encoding, len, back, &n), KMS_OK);
	assert_int_equal(n, 3);
	assert_int_equal(back[0].key_len, 1);
	assert_memory_equal(back[0].key, "a", 1);
	assert_int_equal(back[1].value_len, 3);
	assert_ptr_equal(back[0].key, (const char *)encoding + 4); /* points into input */
	assert_int_equal(context_encode(back, n, again, sizeof again, &again_len), KMS_OK);
	assert_int_equal(again_len, len);
	assert_memory_equal(again, encoding, len);

	/* Every truncation and every trailing byte fails. */
	for (size_t cut = 0; cut < len; cut++)
		assert_int_equal(context_decode(encoding, cut, back, &n), KMS_INVALID_ARGUMENT);
	encoding[len] = 0;
	assert_int_equal(context_decode(encoding, len + 1, back, &n), KMS_INVALID_ARGUMENT);
	assert_non_null(strstr(kms_error_message(), "1 trailing bytes"));
	assert_int_equal(n, 0);

	const uint8_t empty[] = { 0x00, 0x00 };
	assert_int_equal(context_decode(empty, sizeof empty, back, &n), KMS_OK);
	assert_int_equal(n, 0);

	const uint8_t unsorted[] = { 0x00, 0x02, 0x00, 0x01, 'b', 0x00, 0x00,
		                     0x00, 0x01, 'a', 0x00, 0x00 };
	assert_int_equal(context_decode(unsorted, sizeof unsorted, back, &n), KMS_INVALID_ARGUMENT);
	assert_non_null(strstr(kms_error_message(), "ascending"));
	const uint8_t repeated[] = { 0x00, 0x02, 0x00, 0x01, 'a', 0x00, 0x00,
		                     0x00, 0x01, 'a', 0x00, 0x00 };
	assert_int_equal(context_decode(repeated, sizeof repeated, back, &n), KMS_INVALID_ARGUMENT);
	const uint8_t too_many[] = { 0x00, 0x41 };
	assert_int_equal(context_decode(too_many, sizeof too_many, back, &n), KMS_INVALID_ARGUMENT);
	assert_non_null(strstr(kms_error_message(), "65 pairs"));
	const uint8_t empty_key[] = { 0x00, 0x01, 0x00, 0x00, 0x00, 0x00 };
	assert_int_equal(context_decode(empty_key, sizeof empty_key, back, &n), KMS_INVALID_ARGUMENT);
	const uint8_t bad_utf8[] = { 0x00, 0x01, 0x00, 0x01, 'k', 0x00, 0x01, 0xff };
	assert_int_equal(context_decode(bad_utf8, sizeof bad_utf8, back, &n), KMS_INVALID_ARGUMENT);
	const uint8_t huge_length[] = { 0x00, 0x01, 0xff, 0xff, 'k' };
	assert_int_equal(context_decode(huge_length, sizeof huge_length, back, &n),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(context_decode(NULL, 0, back, &n), KMS_INVALID_ARGUMENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(empty_context_is_two_zero_bytes),
		cmocka_unit_test(encoding_is_exact),
		cmocka_unit_test(order_does_not_matter),
		cmocka_unit_test(callers_pairs_are_not_reordered),
		cmocka_unit_test(duplicate_keys_rejected),
		cmocka_unit_test(limits_enforced),
		cmocka_unit_test(bad_utf8_in_context_rejected),
		cmocka_unit_test(errors_never_echo_the_context),
		cmocka_unit_test(from_cstr_adapts_protobuf_strings),
		cmocka_unit_test(decode_is_strict_and_round_trips),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
