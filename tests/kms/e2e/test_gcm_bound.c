/*
 * test_gcm_bound: the per-version AES-GCM bound (docs/gcm-limits.md, keyring.h) with a
 * tiny bound: gcm_max_encryptions = 5 uses per version, reserved durably 2
 * at a time. 23 encryptions, a restart, 7 more: no version ever seals more
 * than 5 blobs, versions only go up, every use was reserved before it was
 * handed out, and every blob still decrypts.
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

#define GCM_MAX 5
#define RESERVE_BLOCK 2
#define FIRST_ROUND 23
#define SECOND_ROUND 7
#define TOTAL (FIRST_ROUND + SECOND_ROUND)
#define PLAINTEXT_LEN 24

#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		if (!(cond))                                                               \
			fail_msg(__VA_ARGS__);                                             \
	} while (0)

static const char *const GCM_CONFIG = "[limits]\ngcm_max_encryptions = 5\ngcm_reserve_block = 2\n";

typedef struct sealed_blob {
	uint8_t plaintext[PLAINTEXT_LEN];
	uint8_t *bytes;
	size_t len;
	uint32_t version;
} sealed_blob;

static harness g_h;
static sealed_blob g_blobs[TOTAL];
static size_t g_n_blobs;

static int teardown(void **state)
{
	(void)state;
	harness_kill9(&g_h);
	for (size_t i = 0; i < g_n_blobs; i++)
		free(g_blobs[i].bytes);
	return 0;
}

static void start(void)
{
	harness_options o = { .extra_config = GCM_CONFIG };
	CHECK(harness_start(&g_h, &o), "kmsd did not start; see %s", g_h.log);
}

static void stop(void)
{
	int code = harness_stop(&g_h);
	CHECK(code == 0, "kmsd exited with %d on SIGTERM; see %s", code, g_h.log);
}

static void encrypt_n(const char *key_id, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		assert_true(g_n_blobs < TOTAL);
		sealed_blob *b = &g_blobs[g_n_blobs];
		for (size_t j = 0; j < PLAINTEXT_LEN; j++)
			b->plaintext[j] = (uint8_t)(g_n_blobs * 31 + j);
		Kms__Response *r = e2e_encrypt(&g_h, key_id, b->plaintext, PLAINTEXT_LEN);
		CHECK(r && r->status == KMS__STATUS__OK &&
		              r->result_case == KMS__RESPONSE__RESULT_ENCRYPT,
		      "Encrypt #%zu: %s", g_n_blobs + 1, r ? r->message : "no reply");
		b->len = r->encrypt->ciphertext_blob.len;
		b->bytes = malloc(b->len);
		assert_non_null(b->bytes);
		memcpy(b->bytes, r->encrypt->ciphertext_blob.data, b->len);
		uint32_t reported = r->encrypt->key_version;
		kms__response__free_unpacked(r, NULL);

		e2e_blob_header hdr;
		CHECK(e2e_blob_parse(b->bytes, b->len, &hdr), "blob #%zu does not parse",
		      g_n_blobs + 1);
		b->version = hdr.key_version;
		CHECK(b->version == reported, "blob #%zu says v%u, the response v%u", g_n_blobs + 1,
		      b->version, reported);
		char id[E2E_KEY_ID_SIZE];
		e2e_key_id_text(hdr.key_id, id);
		CHECK(!strcmp(id, key_id), "blob #%zu is under %s, not %s", g_n_blobs + 1, id, key_id);
		g_n_blobs++;
	}
}

/* Uses per version so far; checks the bound and that versions only grow. */
static size_t check_uses(uint32_t *max_version)
{
	size_t versions_used = 0;
	*max_version = 0;
	for (size_t i = 0; i < g_n_blobs; i++) {
		if (i > 0)
			CHECK(g_blobs[i].version >= g_blobs[i - 1].version,
			      "blob #%zu went back from v%u to v%u", i + 1, g_blobs[i - 1].version,
			      g_blobs[i].version);
		if (g_blobs[i].version > *max_version)
			*max_version = g_blobs[i].version;
	}
	for (uint32_t v = 1; v <= *max_version; v++) {
		size_t uses = 0;
		for (size_t i = 0; i < g_n_blobs; i++)
			uses += g_blobs[i].version == v;
		CHECK(uses <= GCM_MAX, "version %u sealed %zu blobs, the bound is %d", v, uses,
		      GCM_MAX);
		versions_used += uses > 0;
	}
	return versions_used;
}

/* DescribeKey: versions ascending, none reserved past the bound, and no
 * version used more often than it was reserved. */
static size_t check_described(const char *key_id, uint32_t max_version_used)
{
	Kms__Response *r = e2e_describe(&g_h, key_id);
	CHECK(r && r->status == KMS__STATUS__OK &&
	              r->result_case == KMS__RESPONSE__RESULT_DESCRIBE_KEY,
	      "DescribeKey: %s", r ? r->message : "no reply");
	const Kms__KeyMetadata *m = r->describe_key->key_metadata;
	CHECK(m->primary_version >= max_version_used, "primary v%u, but v%u was used",
	      m->primary_version, max_version_used);
	for (size_t i = 0; i < m->n_versions; i++) {
		const Kms__KeyVersion *v = m->versions[i];
		if (i > 0)
			CHECK(v->version > m->versions[i - 1]->version, "versions are not ascending");
		CHECK(v->encryptions <= GCM_MAX, "v%u has %llu uses reserved, the bound is %d",
		      v->version, (unsigned long long)v->encryptions, GCM_MAX);
		size_t uses = 0;
		for (size_t j = 0; j < g_n_blobs; j++)
			uses += g_blobs[j].version == v->version;
		CHECK(uses <= v->encryptions, "v%u sealed %zu blobs but only %llu were reserved",
		      v->version, uses, (unsigned long long)v->encryptions);
	}
	size_t n = m->n_versions;
	kms__response__free_unpacked(r, NULL);
	return n;
}

static void decrypt_all(void)
{
	for (size_t i = 0; i < g_n_blobs; i++) {
		Kms__Response *r = e2e_decrypt(&g_h, g_blobs[i].bytes, g_blobs[i].len);
		CHECK(r && r->status == KMS__STATUS__OK &&
		              r->result_case == KMS__RESPONSE__RESULT_DECRYPT,
		      "Decrypt of blob #%zu (v%u): %s", i + 1, g_blobs[i].version,
		      r ? r->message : "no reply");
		CHECK(r->decrypt->key_version == g_blobs[i].version &&
		              r->decrypt->plaintext.len == PLAINTEXT_LEN &&
		              !memcmp(r->decrypt->plaintext.data, g_blobs[i].plaintext, PLAINTEXT_LEN),
		      "Decrypt of blob #%zu returned other bytes or version", i + 1);
		kms__response__free_unpacked(r, NULL);
	}
}

static void test_gcm_bound_rotates(void **state)
{
	(void)state;
	char key_id[E2E_KEY_ID_SIZE];
	uint32_t max_version;
	uint64_t t0 = e2e_now_ms();

	start();
	CHECK(harness_create_key(&g_h, NULL, key_id), "CreateKey failed");
	encrypt_n(key_id, FIRST_ROUND);
	size_t used = check_uses(&max_version);
	CHECK(used >= (FIRST_ROUND + GCM_MAX - 1) / GCM_MAX,
	      "%d encryptions used only %zu versions", FIRST_ROUND, used);
	size_t described = check_described(key_id, max_version);
	CHECK(described >= used && described > 1, "DescribeKey shows %zu versions, %zu were used",
	      described, used);
	decrypt_all();
	stop();

	/* Reservations are durable: after a restart, uses the old daemon had
	 * reserved but not handed out are not handed out again. */
	start();
	encrypt_n(key_id, SECOND_ROUND);
	uint32_t max_before = max_version;
	used = check_uses(&max_version);
	CHECK(max_version > max_before, "7 more encryptions stayed on v%u", max_before);
	CHECK(used >= (TOTAL + GCM_MAX - 1) / GCM_MAX, "%d encryptions used only %zu versions",
	      TOTAL, used);
	(void)check_described(key_id, max_version);
	decrypt_all();
	stop();

	/* And the token holds exactly the versions DescribeKey shows. */
	start();
	e2e_key *keys;
	size_t n;
	CHECK(e2e_list_keys(&g_h, &keys, &n), "ListKeys failed");
	stop();
	char why[512];
	bool ok = e2e_token_matches(keys, n, NULL, why, sizeof why);
	free(keys);
	CHECK(ok, "token: %s", why);
	print_message("gcm bound: %zu blobs over %u versions, %llu ms\n", g_n_blobs, max_version,
	              (unsigned long long)(e2e_now_ms() - t0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gcm_bound_rotates),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
