/*
 * docs/key-hierarchy.md's key-wrapping test vectors (AES Key Wrap with
 * Padding, RFC 5649), checked with OpenSSL's implementation, so a reader's
 * own KWP can be checked against the doc's values; and the doc must show the
 * same values the test checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

typedef struct kwp_vector {
	const char *kek;
	const char *key;
	const char *wrapped;
} kwp_vector;

static const kwp_vector vectors[] = {
	/* kmsd's case: an AES-256 KEK wrapping a 32-byte key (40 bytes out). */
	{"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
	 "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
	 "92f48c52045c08050ec796a5a91c5ddaf7c61cbdc940adc8d3dc8a144f6161a8c5d3299e325f1750"},
	/* RFC 5649 section 6, second example (192-bit KEK, 7-byte key). */
	{"5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8",
	 "466f7250617369",
	 "afbeb0f07dfbf5419200f2ccb50bb24f"},
};

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = strlen(hex) / 2;
	assert_true(n <= cap);
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	return n;
}

static const EVP_CIPHER *kwp_for(size_t kek_len)
{
	return kek_len == 32 ? EVP_aes_256_wrap_pad() : EVP_aes_192_wrap_pad();
}

/* Wraps (enc = 1) or unwraps (enc = 0) in with OpenSSL; returns the length
 * written, or -1 when OpenSSL refuses (an unwrap that fails its check). */
static int kwp(int enc, const uint8_t *kek, size_t kek_len, const uint8_t *in, size_t in_len,
               uint8_t *out)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int len = 0, fin = 0, ok;
	assert_non_null(ctx);
	EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	ok = EVP_CipherInit_ex(ctx, kwp_for(kek_len), NULL, kek, NULL, enc) == 1 &&
	     EVP_CipherUpdate(ctx, out, &len, in, (int)in_len) == 1 &&
	     EVP_CipherFinal_ex(ctx, out + len, &fin) == 1;
	EVP_CIPHER_CTX_free(ctx);
	return ok ? len + fin : -1;
}

static void vectors_wrap_and_unwrap(void **state)
{
	(void)state;
	for (size_t v = 0; v < sizeof vectors / sizeof vectors[0]; v++) {
		uint8_t kek[32], key[64], wrapped[72], out[72];
		size_t kek_len = unhex(vectors[v].kek, kek, sizeof kek);
		size_t key_len = unhex(vectors[v].key, key, sizeof key);
		size_t wrapped_len = unhex(vectors[v].wrapped, wrapped, sizeof wrapped);

		assert_int_equal(kwp(1, kek, kek_len, key, key_len, out), (int)wrapped_len);
		assert_memory_equal(out, wrapped, wrapped_len);
		assert_int_equal(kwp(0, kek, kek_len, wrapped, wrapped_len, out), (int)key_len);
		assert_memory_equal(out, key, key_len);
	}
}

/* The integrity check: one changed bit, or the wrong KEK, fails the unwrap. */
static void changed_byte_or_wrong_kek_refused(void **state)
{
	(void)state;
	uint8_t kek[32], wrapped[72], out[72];
	size_t kek_len = unhex(vectors[0].kek, kek, sizeof kek);
	size_t wrapped_len = unhex(vectors[0].wrapped, wrapped, sizeof wrapped);

	for (size_t i = 0; i < wrapped_len; i++) {
		wrapped[i] ^= 0x01;
		assert_int_equal(kwp(0, kek, kek_len, wrapped, wrapped_len, out), -1);
		wrapped[i] ^= 0x01;
	}
	kek[31] ^= 0x80;
	assert_int_equal(kwp(0, kek, kek_len, wrapped, wrapped_len, out), -1);
}

/* The doc shows each vector's hex (the wrapped value may be split over two
 * lines at 64 characters, as the doc prints it). */
static void doc_shows_the_vectors(void **state)
{
	(void)state;
	FILE *f = fopen(KMS_HIERARCHY_DOC, "r");
	assert_non_null(f);
	static char doc[65536];
	size_t n = fread(doc, 1, sizeof doc - 1, f);
	fclose(f);
	doc[n] = '\0';
	/* Squeeze out newlines and the spaces that indent continuation lines. */
	size_t w = 0;
	for (size_t r = 0; r < n; r++) {
		if (doc[r] == '\n') {
			while (doc[r + 1] == ' ')
				r++;
			continue;
		}
		doc[w++] = doc[r];
	}
	doc[w] = '\0';
	for (size_t v = 0; v < sizeof vectors / sizeof vectors[0]; v++) {
		assert_non_null(strstr(doc, vectors[v].kek));
		assert_non_null(strstr(doc, vectors[v].key));
		assert_non_null(strstr(doc, vectors[v].wrapped));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(vectors_wrap_and_unwrap),
		cmocka_unit_test(changed_byte_or_wrong_kek_refused),
		cmocka_unit_test(doc_shows_the_vectors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
