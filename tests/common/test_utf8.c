/*
 * common/utf8: the strict decoder. Good and bad vectors (overlongs,
 * surrogates, above U+10FFFF, truncated sequences) with the offset of the bad
 * sequence, an exhaustive comparison with a reference encoder, the decoded
 * code points, and the boundary-safe prefix.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/utf8.h"

static bool valid(const char *bytes, size_t len)
{
	return kms_utf8_valid((const uint8_t *)bytes, len, NULL);
}

static void utf8_strict(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
	} good[] = {
		{ "", 0 },
		{ "plain ascii", 11 },
		{ "\x7f", 1 },
		{ "\xc2\x80", 2 },             /* U+0080 */
		{ "\xdf\xbf", 2 },             /* U+07FF */
		{ "\xe0\xa0\x80", 3 },         /* U+0800 */
		{ "\xed\x9f\xbf", 3 },         /* U+D7FF, just below the surrogates */
		{ "\xee\x80\x80", 3 },         /* U+E000, just above */
		{ "\xef\xbf\xbf", 3 },         /* U+FFFF */
		{ "\xf0\x90\x80\x80", 4 },     /* U+10000 */
		{ "\xf4\x8f\xbf\xbf", 4 },     /* U+10FFFF, the last */
		{ "\xe0\xa4\xad\xe0\xa4\xbe\xe0\xa4\xb0\xe0\xa4\xa4", 12 }, /* भारत */
	};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		assert_true(valid(good[i].bytes, good[i].len));

	static const struct {
		const char *bytes;
		size_t len;
		size_t bad_at;
	} bad[] = {
		{ "\xc0\x80", 2, 0 },             /* overlong U+0000 */
		{ "\xc1\xbf", 2, 0 },             /* overlong U+007F */
		{ "\xe0\x80\x80", 3, 0 },         /* overlong, 3 bytes */
		{ "\xe0\x9f\xbf", 3, 0 },         /* overlong U+07FF */
		{ "\xf0\x80\x80\x80", 4, 0 },     /* overlong, 4 bytes */
		{ "\xf0\x8f\xbf\xbf", 4, 0 },     /* overlong U+FFFF */
		{ "\xed\xa0\x80", 3, 0 },         /* U+D800, a surrogate */
		{ "\xed\xbf\xbf", 3, 0 },         /* U+DFFF */
		{ "\xed\xa0\xbd\xed\xb8\x80", 6, 0 }, /* CESU-8 surrogate pair */
		{ "\xf4\x90\x80\x80", 4, 0 },     /* U+110000 */
		{ "\xf5\x80\x80\x80", 4, 0 },
		{ "\xf8\x88\x80\x80\x80", 5, 0 }, /* old 5-byte form */
		{ "\xff", 1, 0 },
		{ "\xfe", 1, 0 },
		{ "\x80", 1, 0 },                 /* lone continuation */
		{ "ok\xbf", 3, 2 },
		{ "ab\xe2\x82", 4, 2 },           /* truncated € */
		{ "ab\xf0\x9f\x98", 5, 2 },       /* truncated emoji */
		{ "\xc3", 1, 0 },
		{ "\xc3(", 2, 0 },                /* bad continuation */
		{ "x\xe2\x28\xa1", 4, 1 },
		{ "\xe2\x82\xac\xc3", 4, 3 },     /* good €, then truncated */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		size_t at = 999;
		if (kms_utf8_valid((const uint8_t *)bad[i].bytes, bad[i].len, &at))
			fail_msg("bad case %zu accepted", i);
		assert_int_equal(at, bad[i].bad_at);
	}
	assert_false(kms_utf8_valid(NULL, 1, NULL));
	assert_true(kms_utf8_valid(NULL, 0, NULL));
}

/* The reference: a sequence is valid iff it is the shortest encoding of a
 * scalar value. Encode every code point; check that exactly those 1-, 2- and
 * 3-byte sequences pass, and a sample of 4-byte ones. */
static size_t encode_cp(uint32_t cp, uint8_t out[4])
{
	if (cp < 0x80) {
		out[0] = (uint8_t)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (uint8_t)(0xc0 | cp >> 6);
		out[1] = (uint8_t)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (uint8_t)(0xe0 | cp >> 12);
		out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (uint8_t)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (uint8_t)(0xf0 | cp >> 18);
	out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (uint8_t)(0x80 | (cp & 0x3f));
	return 4;
}

static bool is_scalar(uint32_t cp)
{
	return cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
}

static void utf8_matches_reference_exhaustively(void **state)
{
	uint8_t seq[4];
	/* Every scalar value passes, every surrogate fails. */
	for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
		size_t n = encode_cp(cp, seq);
		assert_int_equal(kms_utf8_valid(seq, n, NULL), is_scalar(cp));
	}
	/* Every 2-byte sequence: valid iff lead C2..DF and continuation. */
	for (unsigned a = 0; a < 256; a++)
		for (unsigned b = 0; b < 256; b++) {
			seq[0] = (uint8_t)a, seq[1] = (uint8_t)b;
			bool want;
			if (a < 0x80)
				want = b < 0x80;
			else
				want = a >= 0xc2 && a <= 0xdf && b >= 0x80 && b <= 0xbf;
			assert_int_equal(kms_utf8_valid(seq, 2, NULL), want);
		}
	/* Every 3-byte sequence with a 3-byte lead: valid iff it decodes to a
	 * scalar value whose shortest encoding is these bytes. */
	for (unsigned a = 0xe0; a <= 0xef; a++)
		for (unsigned b = 0; b < 256; b++)
			for (unsigned c = 0; c < 256; c++) {
				seq[0] = (uint8_t)a, seq[1] = (uint8_t)b, seq[2] = (uint8_t)c;
				bool conts = (b & 0xc0) == 0x80 && (c & 0xc0) == 0x80;
				uint32_t cp = (uint32_t)(a & 0x0f) << 12 | (uint32_t)(b & 0x3f) << 6 |
				              (c & 0x3f);
				bool want = conts && cp >= 0x800 && is_scalar(cp);
				assert_int_equal(kms_utf8_valid(seq, 3, NULL), want);
			}
	/* 4-byte leads F0..FF with every second byte, boundary third/fourth. */
	static const uint8_t edges[] = { 0x00, 0x7f, 0x80, 0x9f, 0xa0, 0xbf, 0xc0, 0xff };
	for (unsigned a = 0xf0; a <= 0xff; a++)
		for (unsigned b = 0; b < 256; b++)
			for (size_t c = 0; c < sizeof edges; c++)
				for (size_t d = 0; d < sizeof edges; d++) {
					seq[0] = (uint8_t)a, seq[1] = (uint8_t)b;
					seq[2] = edges[c], seq[3] = edges[d];
					bool conts = (b & 0xc0) == 0x80 && (seq[2] & 0xc0) == 0x80 &&
					             (seq[3] & 0xc0) == 0x80;
					uint32_t cp = (uint32_t)(a & 0x07) << 18 |
					              (uint32_t)(b & 0x3f) << 12 |
					              (uint32_t)(seq[2] & 0x3f) << 6 | (seq[3] & 0x3f);
					bool want = a <= 0xf4 && conts && cp >= 0x10000 && is_scalar(cp);
					assert_int_equal(kms_utf8_valid(seq, 4, NULL), want);
				}
}

static void next_decodes_code_points(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
		uint32_t cp;
	} cases[] = {
		{ "A", 1, 0x41 },
		{ "\x00", 1, 0 },
		{ "\xc2\xa9", 2, 0xa9 },
		{ "\xe2\x82\xac", 3, 0x20ac },
		{ "\xed\x9f\xbf", 3, 0xd7ff },
		{ "\xf0\x9f\x98\x80", 4, 0x1f600 },
		{ "\xf4\x8f\xbf\xbf", 4, 0x10ffff },
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		/* Decoded from an offset inside a longer buffer. */
		uint8_t buf[8] = { 'x' };
		memcpy(buf + 1, cases[k].bytes, cases[k].len);
		size_t i = 1;
		uint32_t cp = 0xffffffff;
		assert_true(kms_utf8_next(buf, 1 + cases[k].len, &i, &cp));
		assert_int_equal(cp, cases[k].cp);
		assert_int_equal(i, 1 + cases[k].len);
	}
	/* A failure leaves the position alone: truncated at the buffer's end,
	 * even when the bytes past it would complete the sequence. */
	const uint8_t euro[] = { 'a', 0xe2, 0x82, 0xac };
	size_t i = 1;
	uint32_t cp = 7;
	assert_false(kms_utf8_next(euro, 3, &i, &cp));
	assert_int_equal(i, 1);
	assert_int_equal(cp, 7);
	const uint8_t overlong_slash[] = { 0xc0, 0xaf };
	i = 0;
	assert_false(kms_utf8_next(overlong_slash, 2, &i, &cp));
	assert_int_equal(i, 0);
}

static void prefix_never_cuts_a_character(void **state)
{
	const char *s = "a\xe2\x82\xac" "b\xf0\x9f\x98\x80"; /* a € b 😀: 1 3 1 4 bytes */
	size_t len = strlen(s);
	/* Whole when it fits. */
	assert_int_equal(kms_utf8_prefix(s, len, len), len);
	assert_int_equal(kms_utf8_prefix(s, len, len + 10), len);
	/* Cut before the character that would not fit whole. */
	static const size_t want[] = { 0, 1, 1, 1, 4, 5, 5, 5, 5 };
	for (size_t max = 0; max < len; max++) {
		size_t n = kms_utf8_prefix(s, len, max);
		assert_int_equal(n, want[max]);
		assert_true(kms_utf8_valid((const uint8_t *)s, n, NULL));
	}
	assert_int_equal(kms_utf8_prefix("", 0, 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(utf8_strict),
		cmocka_unit_test(utf8_matches_reference_exhaustively),
		cmocka_unit_test(next_decodes_code_points),
		cmocka_unit_test(prefix_never_cuts_a_character),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
