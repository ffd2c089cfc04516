/*
 * common/base64: RFC 4648's vectors both ways, every way a text can fail to
 * be the one strict encoding, the secure-memory encoder and the size bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include <kms/secmem.h>

#include "common/base64.h"

static bool decode(const char *text, uint8_t *out, size_t cap, size_t *len)
{
	return kms_base64_decode(text, strlen(text), out, cap, len);
}

/* RFC 4648 section 10. */
static const struct {
	const char *bytes, *text;
} rfc4648[] = {
	{ "", "" },           { "f", "Zg==" },         { "fo", "Zm8=" },
	{ "foo", "Zm9v" },    { "foob", "Zm9vYg==" },  { "fooba", "Zm9vYmE=" },
	{ "foobar", "Zm9vYmFy" },
};

static void encodes_rfc4648_vectors(void **state)
{
	char text[16];
	for (size_t i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
		size_t n = strlen(rfc4648[i].bytes);
		memset(text, 'x', sizeof text);
		assert_true(kms_base64_encode((const uint8_t *)rfc4648[i].bytes, n, text, sizeof text));
		assert_string_equal(text, rfc4648[i].text);
		assert_int_equal(kms_base64_encoded_len(n), strlen(rfc4648[i].text));
	}
}

static void decodes_rfc4648_vectors(void **state)
{
	uint8_t out[8];
	size_t len;
	/* The empty text is refused on purpose (base64.h); the rest decode. */
	for (size_t i = 1; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
		memset(out, 0xaa, sizeof out);
		assert_true(decode(rfc4648[i].text, out, sizeof out, &len));
		assert_int_equal(len, strlen(rfc4648[i].bytes));
		assert_memory_equal(out, rfc4648[i].bytes, len);
		assert_int_equal(out[len], 0xaa); /* nothing written past the bytes */
	}
}

static void refuses_every_other_text(void **state)
{
	static const char *const bad[] = {
		"",             /* nothing */
		"Zm9",          /* not a multiple of 4 */
		"Zm9vY",
		"Zm8",          /* padding missing */
		"Zg",
		"Zg=",
		" Zm9v",        /* whitespace anywhere */
		"Zm9v ",
		"Zm9v\n",
		"Zm9v\nYmFy",
		"Zm 9v",
		"Zm9*",         /* outside the alphabet */
		"Zm9-",         /* base64url is not base64 */
		"Zm9_",
		"Zm9\x80",      /* bytes above ASCII */
		"Zm9\xff",
		"Zg==Zm9v",     /* padding inside */
		"Zg=a",         /* '=' not at the end */
		"Z===",         /* three pads */
		"====",
		"=Zm9",
		"Zh==",         /* unused bits not zero: one text per byte string */
		"Zm9=",
		"Zm9vYh==",
		"Zm9vYmF=",
	};
	uint8_t out[16];
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		size_t len = 99;
		memset(out, 0xaa, sizeof out);
		if (kms_base64_decode(bad[i], strlen(bad[i]), out, sizeof out, &len))
			fail_msg("accepted case %zu \"%s\"", i, bad[i]);
		assert_int_equal(len, 0);
		for (size_t k = 0; k < sizeof out; k++)
			assert_int_equal(out[k], 0xaa); /* nothing written */
	}
	size_t len = 99;
	assert_false(kms_base64_decode("Zm\0v", 4, out, sizeof out, &len)); /* a NUL inside */
	assert_int_equal(len, 0);
	assert_false(kms_base64_decode(NULL, 0, out, sizeof out, &len));
}

static void refuses_what_does_not_fit(void **state)
{
	uint8_t out[8];
	size_t len;
	memset(out, 0xaa, sizeof out);
	assert_false(decode("Zm9vYmFy", out, 5, &len)); /* 6 bytes */
	assert_int_equal(len, 0);
	assert_int_equal(out[0], 0xaa);
	/* Exactly the bytes: no room for padding needed. */
	assert_true(decode("Zm9vYmE=", out, 5, &len));
	assert_int_equal(len, 5);
	assert_false(decode("Zg==", NULL, 0, &len));
	char text[9];
	assert_false(kms_base64_encode((const uint8_t *)"foobar", 6, text, 8)); /* no NUL room */
	assert_true(kms_base64_encode((const uint8_t *)"foobar", 6, text, 9));
	assert_false(kms_base64_encode((const uint8_t *)"f", 1, NULL, 9));
}

/* Every byte value, every length mod 3, against OpenSSL's encoder, and back. */
static void agrees_with_openssl_and_round_trips(void **state)
{
	uint8_t bytes[300], back[300];
	char ours[401], theirs[401];
	size_t len;
	for (size_t i = 0; i < sizeof bytes; i++)
		bytes[i] = (uint8_t)(i * 167 + 13);
	for (size_t n = 1; n <= sizeof bytes; n++) {
		assert_true(kms_base64_encode(bytes, n, ours, sizeof ours));
		int m = EVP_EncodeBlock((unsigned char *)theirs, bytes, (int)n);
		assert_int_equal((size_t)m, kms_base64_encoded_len(n));
		assert_string_equal(ours, theirs);
		assert_true(kms_base64_decode(ours, strlen(ours), back, n, &len));
		assert_int_equal(len, n);
		assert_memory_equal(back, bytes, n);
		assert_int_equal(kms_base64_decoded_max(strlen(ours)) - len, (3 - n % 3) % 3);
	}
	/* Every 6-bit value in every position of a block. */
	for (unsigned v = 0; v < 64; v++) {
		uint8_t b[3] = { (uint8_t)(v << 2), (uint8_t)(v << 4 | v >> 4), (uint8_t)(v << 6 | v) };
		assert_true(kms_base64_encode(b, 3, ours, sizeof ours));
		EVP_EncodeBlock((unsigned char *)theirs, b, 3);
		assert_string_equal(ours, theirs);
		assert_true(decode(ours, back, 3, &len));
		assert_memory_equal(back, b, 3);
	}
}

static void secure_variant_has_room_for_a_line_end(void **state)
{
	const uint8_t key[32] = { 0xde, 0xad, 0xbe, 0xef };
	char *text = kms_base64_encode_secure(key, sizeof key);
	assert_non_null(text);
	assert_int_equal(strlen(text), 44);
	char plain[45];
	assert_true(kms_base64_encode(key, sizeof key, plain, sizeof plain));
	assert_string_equal(text, plain);
	text[44] = '\n'; /* the promised spare byte */
	text[45] = '\0';
	assert_string_equal(text + 43, "=\n");
	kms_secure_free(text);

	text = kms_base64_encode_secure(NULL, 0);
	assert_non_null(text);
	assert_string_equal(text, "");
	kms_secure_free(text);
}

/* Sizes near SIZE_MAX are refused before any arithmetic can wrap, and before
 * the input is read (a NULL input proves it is not). */
static void sizes_cannot_overflow(void **state)
{
	char text[8];
	assert_false(kms_base64_encode(NULL, SIZE_MAX, text, sizeof text));
	assert_false(kms_base64_encode(NULL, KMS_BASE64_INPUT_MAX + 1, text, SIZE_MAX));
	assert_null(kms_base64_encode_secure(NULL, SIZE_MAX));
	assert_null(kms_base64_encode_secure(NULL, KMS_BASE64_INPUT_MAX + 1));
	/* The largest accepted input's length, its NUL and a line end fit. */
	size_t most = kms_base64_encoded_len(KMS_BASE64_INPUT_MAX);
	assert_true(most <= SIZE_MAX - 2);
	assert_true(most >= KMS_BASE64_INPUT_MAX / 3 * 4);
	assert_int_equal(kms_base64_decoded_max(SIZE_MAX), SIZE_MAX / 4 * 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(encodes_rfc4648_vectors),
		cmocka_unit_test(decodes_rfc4648_vectors),
		cmocka_unit_test(refuses_every_other_text),
		cmocka_unit_test(refuses_what_does_not_fit),
		cmocka_unit_test(agrees_with_openssl_and_round_trips),
		cmocka_unit_test(secure_variant_has_room_for_a_line_end),
		cmocka_unit_test(sizes_cannot_overflow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
