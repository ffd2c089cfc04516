/*
 * The envelope format's pure parts (clients/lib/envelope_format.c) against
 * docs/envelope-format.md: every test vector on that page is rebuilt from
 * its inputs with libkmsclient's code (keys, MAC, header, each segment's
 * tag, the whole message by SHA-256) and its message is opened again; then
 * the header parser on each malformed form, and a segment opened under the
 * wrong index, flag or prefix.
 *
 * The page's vectors come from an independent implementation
 * (tests/clients/lib/envelope_ref.py, checked by envelope_vectors_ref), so
 * the page, the Python and the C agree byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "clients/lib/envelope_format.h"

#define MAX_SEGMENTS 8
#define HEX_MAX 16384

typedef struct vec {
	uint32_t segment_size;
	uint8_t data_key[32], salt[32], prefix[7];
	uint8_t wrapped[ENV_WRAPPED_MAX];
	size_t wrapped_len;
	uint8_t context[1024];
	size_t context_len;
	size_t plaintext_len;
	uint8_t plaintext_sha[32];
	uint8_t header_key[32], header_mac[32], payload_key[32];
	uint8_t header[8192];
	size_t header_len;
	uint8_t tags[MAX_SEGMENTS][16];
	size_t n_tags;
	size_t message_len;
	uint8_t message_sha[32];
} vec;

static vec vecs[8];
static size_t n_vecs;

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = strlen(s);
	assert_true(n % 2 == 0 && n / 2 <= cap);
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;
		assert_int_equal(sscanf(s + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	return n / 2;
}

static void fixed(const char *value, uint8_t *out, size_t len)
{
	assert_int_equal(unhex(value, out, len), len);
}

/* One "name = value" line of an envelope-vector block into v. */
static void vec_field(vec *v, const char *name, const char *value)
{
	if (!strcmp(name, "segment_size"))
		v->segment_size = (uint32_t)strtoul(value, NULL, 10);
	else if (!strcmp(name, "data_key"))
		fixed(value, v->data_key, 32);
	else if (!strcmp(name, "salt"))
		fixed(value, v->salt, 32);
	else if (!strcmp(name, "nonce_prefix"))
		fixed(value, v->prefix, 7);
	else if (!strcmp(name, "wrapped_key"))
		v->wrapped_len = unhex(value, v->wrapped, sizeof v->wrapped);
	else if (!strcmp(name, "context"))
		v->context_len = unhex(value, v->context, sizeof v->context);
	else if (!strcmp(name, "plaintext_len"))
		v->plaintext_len = strtoul(value, NULL, 10);
	else if (!strcmp(name, "plaintext_sha256"))
		fixed(value, v->plaintext_sha, 32);
	else if (!strcmp(name, "header_key"))
		fixed(value, v->header_key, 32);
	else if (!strcmp(name, "header_mac"))
		fixed(value, v->header_mac, 32);
	else if (!strcmp(name, "payload_key"))
		fixed(value, v->payload_key, 32);
	else if (!strcmp(name, "header"))
		v->header_len = unhex(value, v->header, sizeof v->header);
	else if (!strncmp(name, "segment_", 8)) {
		assert_true(v->n_tags < MAX_SEGMENTS);
		fixed(value, v->tags[v->n_tags++], 16);
	} else if (!strcmp(name, "message_len"))
		v->message_len = strtoul(value, NULL, 10);
	else if (!strcmp(name, "message_sha256"))
		fixed(value, v->message_sha, 32);
	else
		assert_true(!strcmp(name, "message")); /* the short ones, checked by sha */
}

static int load_doc(void **state)
{
	(void)state;
	FILE *f = fopen(KMS_ENVELOPE_DOC, "r");
	if (!f)
		return -1;
	static char line[HEX_MAX];
	vec *v = NULL;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = '\0';
		if (!strcmp(line, "```envelope-vector")) {
			if (n_vecs == sizeof vecs / sizeof vecs[0])
				return -1;
			v = &vecs[n_vecs++];
			continue;
		}
		if (!v)
			continue;
		if (!strcmp(line, "```")) {
			v = NULL;
			continue;
		}
		char *eq = strstr(line, " = ");
		if (!eq)
			return -1;
		*eq = '\0';
		vec_field(v, line, eq + 3);
	}
	fclose(f);
	return n_vecs >= 3 ? 0 : -1;
}

/* The vector's plaintext: byte i = i mod 251 (or a fixed text), told apart
 * by its SHA-256. */
static uint8_t *vec_plaintext(const vec *v)
{
	uint8_t *p = malloc(v->plaintext_len + 1);
	uint8_t sha[32];
	assert_non_null(p);
	for (size_t i = 0; i < v->plaintext_len; i++)
		p[i] = (uint8_t)(i % 251);
	SHA256(p, v->plaintext_len, sha);
	if (memcmp(sha, v->plaintext_sha, 32) != 0) {
		assert_true(v->plaintext_len == 13);
		memcpy(p, "Hello, India!", 13);
		SHA256(p, v->plaintext_len, sha);
	}
	assert_memory_equal(sha, v->plaintext_sha, 32);
	return p;
}

static void test_vectors_rebuilt(void **state)
{
	(void)state;
	for (size_t k = 0; k < n_vecs; k++) {
		const vec *v = &vecs[k];
		uint8_t *pt = vec_plaintext(v);
		uint8_t hk[32], pk[32];
		size_t hlen = env_header_size(v->wrapped_len, v->context_len);
		assert_int_equal(hlen, v->header_len);
		uint8_t *msg = malloc(v->message_len);
		assert_non_null(msg);

		env_header_write(msg, v->segment_size, v->salt, v->prefix, v->wrapped,
		                 v->wrapped_len, v->context, v->context_len);
		assert_true(env_derive_header_key(v->data_key, v->salt, hk));
		assert_memory_equal(hk, v->header_key, 32);
		assert_true(env_header_mac(hk, msg, hlen, msg + hlen - ENV_MAC_LEN));
		assert_memory_equal(msg + hlen - ENV_MAC_LEN, v->header_mac, 32);
		assert_memory_equal(msg, v->header, hlen);
		assert_true(env_derive_payload_key(v->data_key, v->salt, v->header_mac, pk));
		assert_memory_equal(pk, v->payload_key, 32);

		EVP_CIPHER_CTX *seal = env_gcm_new(pk, true);
		assert_non_null(seal);
		size_t at = hlen, off = 0, n_seg = 0;
		do {
			size_t len = v->plaintext_len - off < v->segment_size ? v->plaintext_len - off
			                                                     : v->segment_size;
			bool last = off + len == v->plaintext_len;
			assert_true(at + len + ENV_TAG_LEN <= v->message_len);
			assert_true(env_seal(seal, v->prefix, (uint32_t)n_seg, last, pt + off, len,
			                     msg + at));
			assert_true(n_seg < v->n_tags);
			assert_memory_equal(msg + at + len, v->tags[n_seg], 16);
			at += len + ENV_TAG_LEN;
			off += len;
			n_seg++;
		} while (off < v->plaintext_len);
		assert_int_equal(n_seg, v->n_tags);
		assert_int_equal(at, v->message_len);
		uint8_t sha[32];
		SHA256(msg, v->message_len, sha);
		assert_memory_equal(sha, v->message_sha, 32);
		EVP_CIPHER_CTX_free(seal);

		/* And open it again: header parsed, every segment verified. */
		env_header h;
		const char *why = NULL;
		size_t total = 0;
		assert_int_equal(env_header_length(msg, v->message_len, &total, &why), KMS_OK);
		assert_int_equal(total, hlen);
		assert_int_equal(env_header_parse(msg, hlen, &h, &why), KMS_OK);
		assert_int_equal(h.segment_size, v->segment_size);
		assert_int_equal(h.wrapped_len, v->wrapped_len);
		assert_memory_equal(h.context, v->context, v->context_len);
		EVP_CIPHER_CTX *open = env_gcm_new(pk, false);
		uint8_t *out = malloc(v->segment_size);
		at = hlen;
		off = 0;
		for (size_t i = 0; i < n_seg; i++) {
			size_t len = v->plaintext_len - off < v->segment_size ? v->plaintext_len - off
			                                                     : v->segment_size;
			assert_true(env_open(open, h.prefix, (uint32_t)i, i + 1 == n_seg, msg + at,
			                     len + ENV_TAG_LEN, out));
			assert_memory_equal(out, pt + off, len);
			at += len + ENV_TAG_LEN;
			off += len;
		}
		EVP_CIPHER_CTX_free(open);
		free(out);
		free(msg);
		free(pt);
	}
}

/* The header of vector 2 (a context), changed one field at a time. */
static void test_header_refusals(void **state)
{
	(void)state;
	const vec *v = &vecs[1];
	uint8_t h[8192];
	size_t len = v->header_len, total = 0;
	const char *why = NULL;
	env_header parsed;

	/* Every prefix: either "need more" or the full length, never an error. */
	for (size_t n = 1; n <= len; n++) {
		assert_int_equal(env_header_length(v->header, n, &total, &why), KMS_OK);
		assert_true(total == 0 || total == len);
	}
	assert_int_equal(env_header_parse(v->header, len - 1, &parsed, &why),
	                 KMS_INVALID_CIPHERTEXT);

	struct {
		size_t off;
		uint8_t value;
		const char *why;
	} cases[] = {
		{ 0, 'K', "not a kms envelope" },
		{ 7, '\r', "not a kms envelope" },
		{ ENV_OFF_VERSION, 2, "newer envelope format version" },
		{ ENV_OFF_VERSION, 0, "header damaged" },
		{ ENV_OFF_SUITE, 0, "suite" },
		{ ENV_OFF_SEGMENT, 0x01, "segment size" },          /* 16 MiB + 4 KiB */
		{ ENV_OFF_SEGMENT + 2, 0x0f, "segment size" },      /* 3,840 */
		{ ENV_OFF_WRAPPED_LEN, 0x20, "wrapped key length" },
		{ ENV_OFF_WRAPPED_LEN + 1, 0x3a, "wrapped key length" },  /* 58 */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		memcpy(h, v->header, len);
		h[cases[i].off] = cases[i].value;
		if (cases[i].off == ENV_OFF_SEGMENT + 2)
			h[ENV_OFF_SEGMENT + 3] = 0;
		assert_int_equal(env_header_length(h, len, &total, &why), KMS_INVALID_CIPHERTEXT);
		assert_non_null(strstr(why, cases[i].why));
		assert_int_equal(env_header_parse(h, len, &parsed, &why), KMS_INVALID_CIPHERTEXT);
	}

	/* A context length out of range, and one too short for the header. */
	size_t ctx_at = ENV_OFF_WRAPPED + v->wrapped_len;
	memcpy(h, v->header, len);
	h[ctx_at + 3] = 1;
	h[ctx_at + 2] = 0;
	assert_int_equal(env_header_length(h, len, &total, &why), KMS_INVALID_CIPHERTEXT);
	memcpy(h, v->header, len);
	h[ctx_at] = 0x7f;
	assert_int_equal(env_header_length(h, len, &total, &why), KMS_INVALID_CIPHERTEXT);

	/* A context that is not canonical: its two keys swapped in place
	 * ("purpose" and "tenant" differ in length, so swap the count byte
	 * instead: one pair claimed, bytes left over). */
	memcpy(h, v->header, len);
	assert_int_equal(h[ctx_at + 4 + 1], 2);
	h[ctx_at + 4 + 1] = 1;
	assert_int_equal(env_header_parse(h, len, &parsed, &why), KMS_INVALID_CIPHERTEXT);
	assert_non_null(strstr(why, "context"));

	/* A short file that is not an envelope is told so, not "need more". */
	assert_int_equal(env_header_length((const uint8_t *)"KMS", 3, &total, &why),
	                 KMS_INVALID_CIPHERTEXT);
	assert_int_equal(env_header_length((const uint8_t *)"\x89km", 3, &total, &why), KMS_OK);
	assert_int_equal(total, 0);
}

/* A segment sealed as (i, last) opens only as (i, last) under its prefix. */
static void test_segment_binding(void **state)
{
	(void)state;
	uint8_t key[32] = { 1 }, prefix[7] = { 2 }, other[7] = { 3 };
	uint8_t pt[100], sealed[100 + ENV_TAG_LEN], out[100];
	memset(pt, 0x5a, sizeof pt);
	EVP_CIPHER_CTX *s = env_gcm_new(key, true), *o = env_gcm_new(key, false);
	assert_true(env_seal(s, prefix, 5, false, pt, sizeof pt, sealed));
	assert_true(env_open(o, prefix, 5, false, sealed, sizeof sealed, out));
	assert_memory_equal(out, pt, sizeof pt);
	assert_false(env_open(o, prefix, 5, true, sealed, sizeof sealed, out));
	assert_false(env_open(o, prefix, 4, false, sealed, sizeof sealed, out));
	assert_false(env_open(o, prefix, 6, false, sealed, sizeof sealed, out));
	assert_false(env_open(o, other, 5, false, sealed, sizeof sealed, out));
	/* A failed open leaves no plaintext behind. */
	for (size_t i = 0; i < sizeof out; i++)
		assert_int_equal(out[i], 0);
	for (size_t bit = 0; bit < 8 * sizeof sealed; bit += 37) {
		sealed[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_false(env_open(o, prefix, 5, false, sealed, sizeof sealed, out));
		sealed[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	assert_false(env_open(o, prefix, 5, false, sealed, ENV_TAG_LEN - 1, out));
	EVP_CIPHER_CTX_free(s);
	EVP_CIPHER_CTX_free(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors_rebuilt),
		cmocka_unit_test(test_header_refusals),
		cmocka_unit_test(test_segment_binding),
	};
	return cmocka_run_group_tests(tests, load_doc, NULL);
}
