/*
 * The CLIs' strict parsers: base64 (every rejection), k=v pairs, numbers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "clients/cli/cli.h"

static bool decode(const char *text, uint8_t *out, size_t cap, size_t *len)
{
	return cli_b64_decode(text, strlen(text), out, cap, len);
}

static void b64_decodes_rfc4648_vectors(void **state)
{
	static const struct {
		const char *text, *bytes;
	} vectors[] = {
		{ "Zg==", "f" }, { "Zm8=", "fo" }, { "Zm9v", "foo" }, { "Zm9vYg==", "foob" },
		{ "Zm9vYmE=", "fooba" }, { "Zm9vYmFy", "foobar" },
		/* Whitespace anywhere is dropped: files end with newlines, and
		 * base64(1) wraps at 76 columns. */
		{ "Zm9v\n", "foo" }, { "Zm9v\r\n", "foo" }, { "Zm8= \t\n\n", "fo" },
		{ " Zm9v", "foo" }, { "Zm9v\nYmFy\n", "foobar" }, { "Zm 9v", "foo" },
		{ "Zm9vYmE\r\n=", "fooba" },
	};
	uint8_t out[16];
	size_t len;
	for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
		assert_true(decode(vectors[i].text, out, sizeof out, &len));
		assert_int_equal(len, strlen(vectors[i].bytes));
		assert_memory_equal(out, vectors[i].bytes, len);
	}
}

static void b64_rejects_everything_else(void **state)
{
	static const char *const bad[] = {
		"",             /* nothing */
		"\n",           /* nothing but whitespace */
		"Zm9",          /* not a multiple of 4 */
		"Zm9vY",
		" \t\r\n",      /* nothing but whitespace */
		"Zm9\vv",       /* whitespace is space, tab, CR and LF only */
		"Zg==\nZm9v",   /* padding inside, across a line break */
		"Zm9*",         /* outside the alphabet */
		"Zm9-",         /* base64url is not base64 */
		"Zm9_",
		"Zg==Zm9v",     /* padding inside */
		"Zg=a",         /* '=' not at the end */
		"Z===",         /* three pads */
		"====",
		"=Zm9",
		"Zh==",         /* non-zero bits under the padding: not canonical */
		"Zm9=",
		"Zm8",          /* missing padding */
		"Zg",
	};
	uint8_t out[16];
	size_t len = 99;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (decode(bad[i], out, sizeof out, &len))
			fail_msg("accepted \"%s\"", bad[i]);
		assert_int_equal(len, 0);
	}
	/* An output buffer too small is refused, not overrun. */
	assert_false(decode("Zm9vYmFy", out, 5, &len));
}

static void b64_round_trips(void **state)
{
	uint8_t bytes[100], back[102]; /* decoding needs room for the padding: 3 * len / 4 */
	char text[200];
	size_t len;
	for (size_t i = 0; i < sizeof bytes; i++)
		bytes[i] = (uint8_t)(i * 37 + 11);
	for (size_t n = 1; n <= sizeof bytes; n++) {
		assert_true(kms_base64_encode(bytes, n, text, sizeof text));
		assert_int_equal(strlen(text), kms_base64_encoded_len(n));
		assert_true(decode(text, back, sizeof back, &len));
		assert_int_equal(len, n);
		assert_memory_equal(back, bytes, n);
	}
	assert_false(kms_base64_encode(bytes, 3, text, 4)); /* no room for the NUL */
}

static void pairs_parse_and_refuse(void **state)
{
	struct cli_pairs pairs = { 0 };
	assert_null(cli_pairs_add(&pairs, "purpose=backup"));
	assert_null(cli_pairs_add(&pairs, "empty="));        /* empty value is fine */
	assert_null(cli_pairs_add(&pairs, "expr=a=b"));      /* the first '=' splits */
	assert_int_equal(pairs.n, 3);
	assert_string_equal(pairs.pairs[0].key, "purpose");
	assert_string_equal(pairs.pairs[0].value, "backup");
	assert_string_equal(pairs.pairs[1].key, "empty");
	assert_string_equal(pairs.pairs[1].value, "");
	assert_string_equal(pairs.pairs[2].key, "expr");
	assert_string_equal(pairs.pairs[2].value, "a=b");

	assert_non_null(cli_pairs_add(&pairs, "noequals"));   /* missing '=' */
	assert_non_null(cli_pairs_add(&pairs, "=value"));     /* empty key */
	assert_non_null(cli_pairs_add(&pairs, "purpose=x"));  /* duplicate key */
	assert_non_null(cli_pairs_add(&pairs, "empty=y"));
	assert_int_equal(pairs.n, 3);
	/* A key that is a prefix of another is not a duplicate. */
	assert_null(cli_pairs_add(&pairs, "purp=z"));
	assert_int_equal(pairs.n, 4);
	cli_pairs_free(&pairs);
	assert_int_equal(pairs.n, 0);

	char arg[32];
	for (int i = 0; i < CLI_MAX_PAIRS; i++) {
		snprintf(arg, sizeof arg, "k%d=v", i);
		assert_null(cli_pairs_add(&pairs, arg));
	}
	assert_non_null(cli_pairs_add(&pairs, "one=more"));
	cli_pairs_free(&pairs);
}

static void numbers_are_strict(void **state)
{
	uint32_t v = 7;
	assert_true(cli_parse_u32("0", 0, 10, &v));
	assert_int_equal(v, 0);
	assert_true(cli_parse_u32("3650", 1, 3650, &v));
	assert_int_equal(v, 3650);
	assert_true(cli_parse_u32("4294967295", 0, UINT32_MAX, &v));
	assert_int_equal(v, UINT32_MAX);
	static const char *const bad[] = { "", "-1", "+1", " 1", "1 ", "1x", "0x10",
		                           "4294967296", "99999999999", "3651" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (cli_parse_u32(bad[i], 0, 3650, &v))
			fail_msg("accepted \"%s\"", bad[i]);
	assert_false(cli_parse_u32("6", 7, 30, &v));
	assert_false(cli_parse_u32(NULL, 0, 1, &v));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(b64_decodes_rfc4648_vectors),
		cmocka_unit_test(b64_rejects_everything_else),
		cmocka_unit_test(b64_round_trips),
		cmocka_unit_test(pairs_parse_and_refuse),
		cmocka_unit_test(numbers_are_strict),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
