/*
 * test_region: a blob names the region that made it, and another region
 * refuses it (docs/ciphertext-format.md). One data dir and one token, the daemon restarted
 * with region in-mum, then in-del, then in-mum again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"

#define REGION_A "in-mum"
#define REGION_B "in-del"

#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		if (!(cond))                                                               \
			fail_msg(__VA_ARGS__);                                             \
	} while (0)

static harness g_h;

static int teardown(void **state)
{
	(void)state;
	harness_kill9(&g_h);
	return 0;
}

static void start(const char *region)
{
	harness_options o = { .region = region };
	CHECK(harness_start(&g_h, &o), "kmsd did not start in %s; see %s", region, g_h.log);
}

static void stop(void)
{
	int code = harness_stop(&g_h);
	CHECK(code == 0, "kmsd exited with %d on SIGTERM; see %s", code, g_h.log);
}

typedef struct blob {
	uint8_t *bytes;
	size_t len;
} blob;

static blob encrypt(const char *key_id, const char *plaintext, const char *region)
{
	Kms__Response *r = e2e_encrypt(&g_h, key_id, (const uint8_t *)plaintext, strlen(plaintext));
	CHECK(r && r->status == KMS__STATUS__OK && r->result_case == KMS__RESPONSE__RESULT_ENCRYPT,
	      "Encrypt in %s: %s", region, r ? r->message : "no reply");
	blob b = { malloc(r->encrypt->ciphertext_blob.len), r->encrypt->ciphertext_blob.len };
	assert_non_null(b.bytes);
	memcpy(b.bytes, r->encrypt->ciphertext_blob.data, b.len);
	kms__response__free_unpacked(r, NULL);

	e2e_blob_header hdr;
	CHECK(e2e_blob_parse(b.bytes, b.len, &hdr), "the blob made in %s does not parse", region);
	CHECK(!strcmp(hdr.region, region), "the blob made in %s names region \"%s\"", region,
	      hdr.region);
	char id[E2E_KEY_ID_SIZE];
	e2e_key_id_text(hdr.key_id, id);
	CHECK(!strcmp(id, key_id), "the blob names key %s, not %s", id, key_id);
	return b;
}

static void decrypt_ok(blob b, const char *plaintext, const char *region)
{
	Kms__Response *r = e2e_decrypt(&g_h, b.bytes, b.len);
	CHECK(r && r->status == KMS__STATUS__OK && r->result_case == KMS__RESPONSE__RESULT_DECRYPT,
	      "Decrypt in %s: %s", region, r ? r->message : "no reply");
	CHECK(r->decrypt->plaintext.len == strlen(plaintext) &&
	              !memcmp(r->decrypt->plaintext.data, plaintext, strlen(plaintext)),
	      "Decrypt in %s returned other bytes", region);
	kms__response__free_unpacked(r, NULL);
}

/* INVALID_CIPHERTEXT, and the message names both regions. */
static void decrypt_refused(blob b, const char *blob_region, const char *our_region)
{
	Kms__Response *r = e2e_decrypt(&g_h, b.bytes, b.len);
	CHECK(r, "Decrypt in %s: no reply", our_region);
	CHECK(r->status == KMS__STATUS__INVALID_CIPHERTEXT,
	      "Decrypt of a %s blob in %s: status %d (%s), not INVALID_CIPHERTEXT", blob_region,
	      our_region, r->status, r->message);
	CHECK(strstr(r->message, blob_region) && strstr(r->message, our_region),
	      "the refusal \"%s\" does not name both %s and %s", r->message, blob_region,
	      our_region);
	CHECK(r->result_case == KMS__RESPONSE__RESULT__NOT_SET,
	      "a refused Decrypt carries a result");
	kms__response__free_unpacked(r, NULL);
}

static void test_region_switch(void **state)
{
	(void)state;
	const char *secret_a = "made in mumbai";
	const char *secret_b = "made in delhi";
	char key_id[E2E_KEY_ID_SIZE];
	uint64_t t0 = e2e_now_ms();

	start(REGION_A);
	CHECK(harness_create_key(&g_h, NULL, key_id), "CreateKey in %s failed", REGION_A);
	blob blob_a = encrypt(key_id, secret_a, REGION_A);
	decrypt_ok(blob_a, secret_a, REGION_A);
	stop();

	/* Same data dir and token, other region: the old blob is refused, new
	 * blobs (under the same key) name the new region. */
	start(REGION_B);
	decrypt_refused(blob_a, REGION_A, REGION_B);
	blob blob_b = encrypt(key_id, secret_b, REGION_B);
	decrypt_ok(blob_b, secret_b, REGION_B);
	/* Rewriting the region byte-for-byte in the header is not enough
	 * either: the header is authenticated. */
	e2e_blob_header hdr;
	CHECK(e2e_blob_parse(blob_a.bytes, blob_a.len, &hdr), "blob A does not parse");
	CHECK(strlen(REGION_A) == strlen(REGION_B), "the regions must be of equal length here");
	blob forged = { malloc(blob_a.len), blob_a.len };
	assert_non_null(forged.bytes);
	memcpy(forged.bytes, blob_a.bytes, blob_a.len);
	memcpy(forged.bytes + 25, REGION_B, strlen(REGION_B));
	Kms__Response *r = e2e_decrypt(&g_h, forged.bytes, forged.len);
	CHECK(r && r->status == KMS__STATUS__INVALID_CIPHERTEXT,
	      "a blob relabelled %s -> %s: status %d (%s), not INVALID_CIPHERTEXT", REGION_A,
	      REGION_B, r ? (int)r->status : -1, r ? r->message : "no reply");
	kms__response__free_unpacked(r, NULL);
	free(forged.bytes);
	stop();

	/* Back home: the first blob decrypts again, the in-del one is refused. */
	start(REGION_A);
	decrypt_ok(blob_a, secret_a, REGION_A);
	decrypt_refused(blob_b, REGION_B, REGION_A);
	stop();

	free(blob_a.bytes);
	free(blob_b.bytes);
	print_message("region switch: %llu ms\n", (unsigned long long)(e2e_now_ms() - t0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_region_switch),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
