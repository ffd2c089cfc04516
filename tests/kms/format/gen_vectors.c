/*
 * gen_vectors: prints the test vectors of docs/ciphertext-format.md.
 *
 *   gen_vectors              the doc's "Test vectors" section (Markdown)
 *   gen_vectors --c          the expected hex, as C, for test_vectors.c
 *   gen_vectors --corpus D   seed inputs for the fuzz targets, into
 *                            D/blob/ and D/context/
 *
 * The blob is computed by the real format code (kms_format) and sealed with
 * OpenSSL's AES-256-GCM under the fixed test KEK 00..1f, standing in for the
 * HSM. test_vectors recomputes all of it and compares.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cursor.h"
#include "common/error.h"
#include "tests/kms/format/vectors.h"

#define HEX_LINE_BYTES 32

static char hex_buf[2 * (KMS_BLOB_MAX_LEN + FMT_VECTOR_AAD_MAX) + 1];

static void print_hex_block(const char *what, const uint8_t *bytes, size_t len)
{
	printf("%s (%zu byte%s):\n\n```\n", what, len, len == 1 ? "" : "s");
	for (size_t off = 0; off < len; off += HEX_LINE_BYTES) {
		size_t n = len - off < HEX_LINE_BYTES ? len - off : HEX_LINE_BYTES;
		fmt_hex(bytes + off, n, hex_buf);
		printf("%s\n", hex_buf);
	}
	printf("```\n\n");
}

static int print_markdown(void)
{
	char kek_hex[2 * FMT_KEK_LEN + 1];
	fmt_hex(fmt_test_kek, FMT_KEK_LEN, kek_hex);

	for (size_t i = 0; i < FMT_VECTOR_COUNT; i++) {
		const fmt_vector *v = &fmt_vectors[i];
		static fmt_sealed s;
		char iv_hex[2 * KMS_BLOB_IV_LEN + 1];

		if (fmt_vector_seal(v, &s) != KMS_OK) {
			fprintf(stderr, "gen_vectors: vector %zu: %s\n", i + 1, kms_error_message());
			return 1;
		}
		fmt_hex(v->iv, KMS_BLOB_IV_LEN, iv_hex);
		printf("### Vector %zu: %s\n\n", i + 1, v->title);
		printf("| input | value |\n|---|---|\n");
		printf("| key version's AES-256 key (test KEK) | `%s` |\n", kek_hex);
		printf("| key id | `%s` |\n", v->key_id);
		printf("| key version | %u |\n", (unsigned)v->key_version);
		printf("| region | `%s` |\n", v->region);
		printf("| IV | `%s` |\n", iv_hex);
		printf("| encryption context | `%s`%s%s |\n", v->context_shown,
		       v->context_note ? ": " : "", v->context_note ? v->context_note : "");
		printf("| plaintext | %s |\n\n", v->plaintext_shown);
		print_hex_block("Plaintext", v->plaintext, v->plaintext_len);
		print_hex_block("Canonical encryption context", s.context, s.context_len);
		print_hex_block("Header", s.header.bytes, s.header.len);
		print_hex_block("AAD = header || canonical context", s.aad, s.aad_len);
		print_hex_block("Ciphertext || tag (AES-256-GCM)", s.sealed, s.sealed_len);
		print_hex_block("Blob", s.blob, s.blob_len);
	}
	return 0;
}

static void print_c_string(const char *name, const uint8_t *bytes, size_t len)
{
	printf("\t\t.%s =\n", name);
	for (size_t off = 0; off < len; off += HEX_LINE_BYTES) {
		size_t n = len - off < HEX_LINE_BYTES ? len - off : HEX_LINE_BYTES;
		fmt_hex(bytes + off, n, hex_buf);
		printf("\t\t\t\"%s\"%s\n", hex_buf, off + n >= len ? "," : "");
	}
}

static int print_c(void)
{
	printf("static const struct expected_vector expected[FMT_VECTOR_COUNT] = {\n");
	for (size_t i = 0; i < FMT_VECTOR_COUNT; i++) {
		static fmt_sealed s;
		if (fmt_vector_seal(&fmt_vectors[i], &s) != KMS_OK) {
			fprintf(stderr, "gen_vectors: vector %zu: %s\n", i + 1, kms_error_message());
			return 1;
		}
		printf("\t{\n");
		print_c_string("context_hex", s.context, s.context_len);
		print_c_string("blob_hex", s.blob, s.blob_len);
		printf("\t},\n");
	}
	printf("};\n");
	return 0;
}

static int write_file(const char *dir, const char *name, const uint8_t *bytes, size_t len)
{
	char path[4096];
	int n = snprintf(path, sizeof path, "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= sizeof path)
		return 1;
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(bytes, 1, len, f) != len || fclose(f) != 0) {
		fprintf(stderr, "gen_vectors: %s: %s\n", path, strerror(errno));
		return 1;
	}
	return 0;
}

static int make_dir(const char *path)
{
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "gen_vectors: mkdir %s: %s\n", path, strerror(errno));
		return 1;
	}
	return 0;
}

/* fuzz_context's input: a mode byte, then pairs or a canonical encoding. */
#define FUZZ_CONTEXT_MODE_PAIRS 0x00
#define FUZZ_CONTEXT_MODE_CANONICAL 0x01

static int write_corpus(const char *root)
{
	char blob_dir[4096], context_dir[4096];
	static uint8_t seed[KMS_BLOB_MAX_LEN + 64];
	int rc = 0;

	snprintf(blob_dir, sizeof blob_dir, "%s/blob", root);
	snprintf(context_dir, sizeof context_dir, "%s/context", root);
	if (make_dir(root) || make_dir(blob_dir) || make_dir(context_dir))
		return 1;

	for (size_t i = 0; i < FMT_VECTOR_COUNT; i++) {
		const fmt_vector *v = &fmt_vectors[i];
		static fmt_sealed s;
		char name[64];

		if (fmt_vector_seal(v, &s) != KMS_OK) {
			fprintf(stderr, "gen_vectors: vector %zu: %s\n", i + 1, kms_error_message());
			return 1;
		}
		/* blob: the vector, one truncated, one with a trailing byte. */
		snprintf(name, sizeof name, "vector%zu", i + 1);
		rc |= write_file(blob_dir, name, s.blob, s.blob_len);
		snprintf(name, sizeof name, "vector%zu-truncated", i + 1);
		rc |= write_file(blob_dir, name, s.blob, s.blob_len - 1);
		memcpy(seed, s.blob, s.blob_len);
		seed[s.blob_len] = 0;
		snprintf(name, sizeof name, "vector%zu-trailing", i + 1);
		rc |= write_file(blob_dir, name, seed, s.blob_len + 1);

		/* context: the pairs as given, and the canonical encoding. */
		kms_writer w = kms_writer_init(seed, sizeof seed);
		(void)kms_writer_u8(&w, FUZZ_CONTEXT_MODE_PAIRS);
		for (size_t p = 0; p < v->n_context; p++) {
			(void)kms_writer_u16be(&w, (uint16_t)v->context[p].key_len);
			(void)kms_writer_put(&w, v->context[p].key, v->context[p].key_len);
			(void)kms_writer_u16be(&w, (uint16_t)v->context[p].value_len);
			(void)kms_writer_put(&w, v->context[p].value, v->context[p].value_len);
		}
		if (!w.ok)
			return 1;
		snprintf(name, sizeof name, "pairs%zu", i + 1);
		rc |= write_file(context_dir, name, seed, sizeof seed - w.left);

		seed[0] = FUZZ_CONTEXT_MODE_CANONICAL;
		memcpy(seed + 1, s.context, s.context_len);
		snprintf(name, sizeof name, "canonical%zu", i + 1);
		rc |= write_file(context_dir, name, seed, 1 + s.context_len);
	}
	/* Duplicate keys and bad UTF-8, in pairs mode. */
	static const uint8_t duplicate[] = { 0x00, 0x00, 0x01, 'k', 0x00, 0x01, 'a',
		                             0x00, 0x01, 'k', 0x00, 0x01, 'b' };
	rc |= write_file(context_dir, "duplicate", duplicate, sizeof duplicate);
	static const uint8_t overlong[] = { 0x00, 0x00, 0x02, 0xc0, 0xaf, 0x00, 0x00 };
	rc |= write_file(context_dir, "overlong", overlong, sizeof overlong);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc == 1)
		return print_markdown();
	if (argc == 2 && strcmp(argv[1], "--c") == 0)
		return print_c();
	if (argc == 3 && strcmp(argv[1], "--corpus") == 0)
		return write_corpus(argv[2]);
	fprintf(stderr, "usage: gen_vectors [--c | --corpus DIR]\n");
	return 2;
}
