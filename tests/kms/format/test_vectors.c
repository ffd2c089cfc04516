/*
 * The test vectors of docs/ciphertext-format.md: the code, the hex below and
 * the doc must agree, and each vector must open with OpenSSL's AES-256-GCM
 * under the test KEK, and stop opening when the context or any header,
 * ciphertext or tag byte changes.
 *
 * If the format changes on purpose: run format_gen_vectors (and --c), and
 * paste its output into the doc and below.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kms/format/keyid.h"
#include "tests/kms/format/vectors.h"

#ifndef KMS_FORMAT_DOC
#error "KMS_FORMAT_DOC must name docs/ciphertext-format.md"
#endif

struct expected_vector {
	const char *context_hex;
	const char *blob_hex;
};

/* Output of `format_gen_vectors --c`. */
static const struct expected_vector expected[FMT_VECTOR_COUNT] = {
	{
		.context_hex =
			"0002000a6465706172746d656e74000766696e616e63650007707572706f7365"
			"00087061796d656e7473",
		.blob_hex =
			"4b4d53016b6d732d746573742d7665632d303031000000010a61702d736f7574"
			"682d31cafebabefacedbaddecaf8880000000dc2c6cc4ac5566f52286f34bc5a"
			"7c9101c7a1389b0afd6c8522e3e4762b",
	},
	{
		.context_hex =
			"0000",
		.blob_hex =
			"4b4d53016b6d732d746573742d7665632d303032000000030a61702d736f7574"
			"682d32000102030405060708090a0b00000020c78354984160449c05c81d003d"
			"64f6e2134715a764eec9eba0fe7f1e81f49e2df1f3eb3c3fe0643654618e6672"
			"1a5364",
	},
	{
		.context_hex =
			"00030001610000000674656e616e74000ce0a4ade0a4bee0a4b0e0a4a4000974"
			"656e616e742d696400023432",
		.blob_hex =
			"4b4d53016b6d732d746573742d7665632d303033010000000a61702d736f7574"
			"682d31ffeeddccbbaa99887766554400000001a6336af1138797188153e7d6c8"
			"24be3c8a",
	},
};

static char hex_buf[2 * (KMS_BLOB_MAX_LEN + FMT_VECTOR_AAD_MAX) + 1];
static fmt_sealed sealed;

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t len = strlen(hex);
	assert_int_equal(len % 2, 0);
	assert_true(len / 2 <= cap);
	for (size_t i = 0; i < len / 2; i++) {
		unsigned byte;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &byte), 1);
		out[i] = (uint8_t)byte;
	}
	return len / 2;
}

/* The doc with every whitespace character removed, so hex wrapped over
 * lines reads as one string. */
static char *read_doc_squeezed(void)
{
	FILE *f = fopen(KMS_FORMAT_DOC, "rb");
	if (!f)
		fail_msg("cannot open %s", KMS_FORMAT_DOC);
	static char doc[1 << 20];
	size_t len = fread(doc, 1, sizeof doc - 1, f);
	fclose(f);
	assert_true(len < sizeof doc - 1);
	size_t w = 0;
	for (size_t r = 0; r < len; r++)
		if (!isspace((unsigned char)doc[r]))
			doc[w++] = doc[r];
	doc[w] = '\0';
	return doc;
}

static void assert_doc_has(const char *doc, const char *what, size_t vector,
                           const uint8_t *bytes, size_t len)
{
	fmt_hex(bytes, len, hex_buf);
	if (!strstr(doc, hex_buf))
		fail_msg("vector %zu: the doc lacks the %s %s", vector + 1, what, hex_buf);
}

static void code_matches_embedded_hex_and_doc(void **state)
{
	const char *doc = read_doc_squeezed();
	for (size_t i = 0; i < FMT_VECTOR_COUNT; i++) {
		assert_int_equal(fmt_vector_seal(&fmt_vectors[i], &sealed), KMS_OK);

		fmt_hex(sealed.context, sealed.context_len, hex_buf);
		assert_string_equal(hex_buf, expected[i].context_hex);
		fmt_hex(sealed.blob, sealed.blob_len, hex_buf);
		assert_string_equal(hex_buf, expected[i].blob_hex);

		assert_doc_has(doc, "context", i, sealed.context, sealed.context_len);
		assert_doc_has(doc, "header", i, sealed.header.bytes, sealed.header.len);
		assert_doc_has(doc, "AAD", i, sealed.aad, sealed.aad_len);
		assert_doc_has(doc, "ciphertext || tag", i, sealed.sealed, sealed.sealed_len);
		assert_doc_has(doc, "blob", i, sealed.blob, sealed.blob_len);
		assert_doc_has(doc, "plaintext", i, fmt_vectors[i].plaintext,
		               fmt_vectors[i].plaintext_len);
	}
}

/* The context of vector i in reverse order: Decrypt may list it any way. */
static size_t encode_context_reversed(size_t i, uint8_t *out, size_t cap)
{
	const fmt_vector *v = &fmt_vectors[i];
	context_pair reversed[FMT_VECTOR_MAX_PAIRS];
	size_t len;
	for (size_t k = 0; k < v->n_context; k++)
		reversed[k] = v->context[v->n_context - 1 - k];
	assert_int_equal(context_encode(reversed, v->n_context, out, cap, &len), KMS_OK);
	return len;
}

/* The Decrypt path without an HSM: parse, AAD from the blob's own header
 * and the presented context, GCM open. */
static bool try_open(const uint8_t *blob, size_t blob_len, const uint8_t *context,
                     size_t context_len, uint8_t *plaintext)
{
	blob_view v;
	uint8_t aad[FMT_VECTOR_AAD_MAX];
	size_t aad_len;
	if (blob_parse(blob, blob_len, &v) != KMS_OK)
		return false;
	assert_int_equal(blob_aad_build(v.header, v.header_len, context, context_len, aad,
	                                sizeof aad, &aad_len), KMS_OK);
	return fmt_gcm_open(fmt_test_kek, v.iv, aad, aad_len, v.sealed, v.sealed_len, plaintext);
}

static void vectors_open_and_parse(void **state)
{
	for (size_t i = 0; i < FMT_VECTOR_COUNT; i++) {
		const fmt_vector *fv = &fmt_vectors[i];
		uint8_t blob[KMS_BLOB_MAX_LEN], context[FMT_VECTOR_CONTEXT_MAX];
		uint8_t plaintext[KMS_ENCRYPT_MAX_PLAINTEXT];
		size_t blob_len = unhex(expected[i].blob_hex, blob, sizeof blob);
		size_t context_len = encode_context_reversed(i, context, sizeof context);

		blob_view v;
		char key_id[KMS_KEYID_TEXT_SIZE];
		assert_int_equal(blob_parse(blob, blob_len, &v), KMS_OK);
		keyid_format(v.key_id, key_id);
		assert_string_equal(key_id, fv->key_id);
		assert_int_equal(v.key_version, fv->key_version);
		assert_int_equal(v.region_len, strlen(fv->region));
		assert_memory_equal(v.region, fv->region, v.region_len);
		assert_memory_equal(v.iv, fv->iv, KMS_BLOB_IV_LEN);
		assert_int_equal(v.ciphertext_len, fv->plaintext_len);
		assert_int_equal(blob_check_region(&v, fv->region, strlen(fv->region)), KMS_OK);

		assert_true(try_open(blob, blob_len, context, context_len, plaintext));
		assert_memory_equal(plaintext, fv->plaintext, fv->plaintext_len);
	}
}

static void changed_context_fails(void **state)
{
	for (size_t i = 0; i < FMT_VECTOR_COUNT; i++) {
		const fmt_vector *fv = &fmt_vectors[i];
		uint8_t blob[KMS_BLOB_MAX_LEN], context[FMT_VECTOR_CONTEXT_MAX];
		uint8_t plaintext[KMS_ENCRYPT_MAX_PLAINTEXT];
		size_t blob_len = unhex(expected[i].blob_hex, blob, sizeof blob);
		context_pair pairs[FMT_VECTOR_MAX_PAIRS + 1];
		size_t len;

		/* A pair added. */
		memcpy(pairs, fv->context, fv->n_context * sizeof pairs[0]);
		pairs[fv->n_context] = (context_pair){ "extra", 5, "1", 1 };
		assert_int_equal(context_encode(pairs, fv->n_context + 1, context, sizeof context,
		                                &len), KMS_OK);
		assert_false(try_open(blob, blob_len, context, len, plaintext));
		for (size_t b = 0; b < fv->plaintext_len; b++)
			assert_int_equal(plaintext[b], 0); /* nothing unverified released */

		if (fv->n_context == 0)
			continue;
		/* A pair removed. */
		assert_int_equal(context_encode(fv->context, fv->n_context - 1, context,
		                                sizeof context, &len), KMS_OK);
		assert_false(try_open(blob, blob_len, context, len, plaintext));
		/* A value changed (one byte, or made non-empty). */
		for (size_t p = 0; p < fv->n_context; p++) {
			char value[64];
			memcpy(pairs, fv->context, fv->n_context * sizeof pairs[0]);
			memcpy(value, pairs[p].value, pairs[p].value_len);
			if (pairs[p].value_len) {
				value[0] ^= 0x01;
			} else {
				value[0] = 'x';
				pairs[p].value_len = 1;
			}
			pairs[p].value = value;
			assert_int_equal(context_encode(pairs, fv->n_context, context,
			                                sizeof context, &len), KMS_OK);
			assert_false(try_open(blob, blob_len, context, len, plaintext));
		}
		/* The empty context. */
		assert_false(try_open(blob, blob_len, (const uint8_t *)"\0\0", 2, plaintext));
	}
}

static void changed_blob_byte_fails(void **state)
{
	static const uint8_t masks[] = { 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff };
	for (size_t i = 0; i < FMT_VECTOR_COUNT; i++) {
		uint8_t blob[KMS_BLOB_MAX_LEN], context[FMT_VECTOR_CONTEXT_MAX];
		uint8_t plaintext[KMS_ENCRYPT_MAX_PLAINTEXT];
		size_t blob_len = unhex(expected[i].blob_hex, blob, sizeof blob);
		size_t context_len = encode_context_reversed(i, context, sizeof context);
		size_t parsed = 0, opened_changed = 0;

		/* Every bit of every byte: header, ciphertext and tag. A change
		 * is refused by the parser or by GCM, never accepted. */
		for (size_t b = 0; b < blob_len; b++) {
			for (size_t m = 0; m < sizeof masks; m++) {
				blob_view v;
				blob[b] ^= masks[m];
				if (blob_parse(blob, blob_len, &v) == KMS_OK)
					parsed++;
				if (try_open(blob, blob_len, context, context_len, plaintext))
					opened_changed++;
				blob[b] ^= masks[m];
			}
		}
		assert_int_equal(opened_changed, 0);
		/* Most changes parse (key id, IV, region letters, ciphertext):
		 * GCM, not the parser, is what refuses them. */
		assert_true(parsed > blob_len);
		assert_true(try_open(blob, blob_len, context, context_len, plaintext));
	}
}

static void other_region_refused(void **state)
{
	uint8_t blob[KMS_BLOB_MAX_LEN];
	size_t blob_len = unhex(expected[0].blob_hex, blob, sizeof blob);
	blob_view v;
	assert_int_equal(blob_parse(blob, blob_len, &v), KMS_OK);
	assert_int_equal(blob_check_region(&v, "ap-south-2", 10), KMS_INVALID_CIPHERTEXT);
	assert_non_null(strstr(kms_error_message(),
	                       "blob was made in region ap-south-1, this is region ap-south-2"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(code_matches_embedded_hex_and_doc),
		cmocka_unit_test(vectors_open_and_parse),
		cmocka_unit_test(changed_context_fails),
		cmocka_unit_test(changed_blob_byte_fails),
		cmocka_unit_test(other_region_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
