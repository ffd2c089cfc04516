#include "tests/support/tlog_test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/error.h"
#include "common/tlog/tlog_tiles.h"

#define NFTW_FDS 16

static void die(const char *what)
{
	fprintf(stderr, "test helper: %s (%s)\n", what, kms_error_message());
	abort();
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

void test_hex32(const char *hex, uint8_t out[static TLOG_HASH_SIZE])
{
	if (strlen(hex) != TEST_HASH_HEX_LEN)
		die("hex: not 64 digits");
	for (size_t i = 0; i < TLOG_HASH_SIZE; i++) {
		int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			die("hex: bad digit");
		out[i] = (uint8_t)(hi << 4 | lo);
	}
}

void test_sha256(const void *bytes, size_t len, uint8_t out[static TLOG_HASH_SIZE])
{
	unsigned int n = 0;
	if (EVP_Digest(bytes, len, out, &n, EVP_sha256(), NULL) != 1 || n != TLOG_HASH_SIZE)
		die("sha256");
}

/* The naive side hashes with OpenSSL directly, not through tlog_*_hash. */
static void naive_node(const uint8_t l[TLOG_HASH_SIZE], const uint8_t r[TLOG_HASH_SIZE],
                       uint8_t out[TLOG_HASH_SIZE])
{
	uint8_t in[1 + 2 * TLOG_HASH_SIZE];
	in[0] = 0x01;
	memcpy(in + 1, l, TLOG_HASH_SIZE);
	memcpy(in + 1 + TLOG_HASH_SIZE, r, TLOG_HASH_SIZE);
	test_sha256(in, sizeof in, out);
}

static uint64_t naive_k(uint64_t n)
{
	uint64_t k = 1;
	while (k * 2 < n)
		k *= 2;
	return k;
}

void naive_mth(const uint8_t (*leaves)[TLOG_HASH_SIZE], uint64_t lo, uint64_t hi,
               uint8_t out[static TLOG_HASH_SIZE])
{
	uint64_t n = hi - lo;
	if (n == 0) {
		test_sha256("", 0, out);
		return;
	}
	if (n == 1) {
		memcpy(out, leaves[lo], TLOG_HASH_SIZE);
		return;
	}
	uint64_t k = naive_k(n);
	uint8_t l[TLOG_HASH_SIZE], r[TLOG_HASH_SIZE];
	naive_mth(leaves, lo, lo + k, l);
	naive_mth(leaves, lo + k, hi, r);
	naive_node(l, r, out);
}

size_t naive_path(const uint8_t (*leaves)[TLOG_HASH_SIZE], uint64_t m, uint64_t lo, uint64_t hi,
                  uint8_t (*out)[TLOG_HASH_SIZE])
{
	uint64_t n = hi - lo;
	if (n <= 1)
		return 0;
	uint64_t k = naive_k(n);
	size_t count;
	if (m < k) {
		count = naive_path(leaves, m, lo, lo + k, out);
		naive_mth(leaves, lo + k, hi, out[count]);
	} else {
		count = naive_path(leaves, m - k, lo + k, hi, out);
		naive_mth(leaves, lo, lo + k, out[count]);
	}
	return count + 1;
}

static size_t naive_subproof(const uint8_t (*leaves)[TLOG_HASH_SIZE], uint64_t m, uint64_t lo,
                             uint64_t hi, bool b, uint8_t (*out)[TLOG_HASH_SIZE])
{
	uint64_t n = hi - lo;
	if (m == n) {
		if (b)
			return 0;
		naive_mth(leaves, lo, hi, out[0]);
		return 1;
	}
	uint64_t k = naive_k(n);
	size_t count;
	if (m <= k) {
		count = naive_subproof(leaves, m, lo, lo + k, b, out);
		naive_mth(leaves, lo + k, hi, out[count]);
	} else {
		count = naive_subproof(leaves, m - k, lo + k, hi, false, out);
		naive_mth(leaves, lo, lo + k, out[count]);
	}
	return count + 1;
}

size_t naive_proof(const uint8_t (*leaves)[TLOG_HASH_SIZE], uint64_t m, uint64_t n,
                   uint8_t (*out)[TLOG_HASH_SIZE])
{
	if (m == 0 || m == n)
		return 0;
	return naive_subproof(leaves, m, 0, n, true, out);
}

size_t test_entry(uint64_t index, unsigned seed, char *buf, size_t cap)
{
	/* Lengths vary from 20 to ~200 bytes so bundles are irregular. */
	unsigned pad = (unsigned)((index * 2654435761u + seed * 97u) % 160);
	int n = snprintf(buf, cap, "{\"i\":%llu,\"seed\":%u,\"pad\":\"%.*s\"}",
	                 (unsigned long long)index, seed, (int)pad,
	                 "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"
	                 "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"
	                 "abcdefghijklmnopqrstuvwxyz");
	if (n <= 0 || (size_t)n >= cap)
		die("test entry does not fit");
	return (size_t)n;
}

kms_status test_entry_reader(void *ctx, uint64_t index, uint8_t *buf, size_t cap, size_t *len)
{
	const unsigned *seed = ctx;
	*len = test_entry(index, *seed, (char *)buf, cap);
	return KMS_OK;
}

uint8_t (*test_leaf_hashes(uint64_t n))[TLOG_HASH_SIZE]
{
	uint8_t (*leaves)[TLOG_HASH_SIZE] = malloc((n ? n : 1) * TLOG_HASH_SIZE);
	char entry[256];
	if (leaves == NULL)
		die("out of memory");
	for (uint64_t i = 0; i < n; i++) {
		size_t len = test_entry(i, 0, entry, sizeof entry);
		uint8_t in[1 + sizeof entry];
		in[0] = 0x00;
		memcpy(in + 1, entry, len);
		test_sha256(in, len + 1, leaves[i]);
	}
	return leaves;
}

static void key_fill(test_key *key, const char *name)
{
	size_t len = TLOG_ED25519_PUBLIC_KEY_SIZE;
	if (EVP_PKEY_get_raw_public_key(key->pkey, key->public_key, &len) != 1 ||
	    len != TLOG_ED25519_PUBLIC_KEY_SIZE)
		die("raw public key");
	snprintf(key->name, sizeof key->name, "%s", name);
	if (tlog_verifier_key_format(key->name, key->public_key, key->vkey) != KMS_OK)
		die("verifier key");
}

void test_key_generate(test_key *key, const char *name)
{
	memset(key, 0, sizeof *key);
	key->pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (key->pkey == NULL)
		die("Ed25519 keygen");
	key_fill(key, name);
}

void test_key_from_seed(test_key *key, const char *name, const uint8_t seed[static 32])
{
	memset(key, 0, sizeof *key);
	key->pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
	if (key->pkey == NULL)
		die("Ed25519 key from seed");
	key_fill(key, name);
}

void test_key_free(test_key *key)
{
	EVP_PKEY_free(key->pkey);
	memset(key, 0, sizeof *key);
}

kms_status test_sign(void *ctx, const uint8_t *msg, size_t len,
                     uint8_t sig[static TLOG_ED25519_SIGNATURE_SIZE])
{
	test_key *key = ctx;
	size_t sig_len = TLOG_ED25519_SIGNATURE_SIZE;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok = md != NULL && EVP_DigestSignInit(md, NULL, NULL, NULL, key->pkey) == 1 &&
	         EVP_DigestSign(md, sig, &sig_len, msg, len) == 1 &&
	         sig_len == TLOG_ED25519_SIGNATURE_SIZE;
	EVP_MD_CTX_free(md);
	return ok ? KMS_OK : KMS_FAIL(KMS_INTERNAL, "test: Ed25519 sign failed");
}

void test_mkdtemp(char out[static 4096], const char *tag)
{
	const char *base = getenv("TMPDIR");
	snprintf(out, 4096, "%s/kms-tlog-%s-XXXXXX", base && base[0] ? base : "/tmp", tag);
	if (mkdtemp(out) == NULL)
		die("mkdtemp");
}

static int remove_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)type;
	(void)ftw;
	return remove(path);
}

void test_rmdir(const char *dir)
{
	nftw(dir, remove_one, NFTW_FDS, FTW_DEPTH | FTW_PHYS);
}

static void join(const char *dir, const char *path, char out[static PATH_MAX])
{
	if (snprintf(out, PATH_MAX, "%s/%s", dir, path) >= PATH_MAX)
		die("path too long");
}

uint8_t *test_read_file(const char *dir, const char *path, size_t *len)
{
	char full[PATH_MAX];
	join(dir, path, full);
	FILE *f = fopen(full, "rb");
	if (f == NULL)
		die("open for reading");
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *bytes = malloc(size > 0 ? (size_t)size : 1);
	if (bytes == NULL || (size > 0 && fread(bytes, 1, (size_t)size, f) != (size_t)size))
		die("read");
	fclose(f);
	*len = (size_t)size;
	return bytes;
}

void test_write_file(const char *dir, const char *path, const void *bytes, size_t len)
{
	char full[PATH_MAX];
	join(dir, path, full);
	FILE *f = fopen(full, "wb");
	if (f == NULL || (len > 0 && fwrite(bytes, 1, len, f) != len) || fclose(f) != 0)
		die("write");
}

bool test_file_exists(const char *dir, const char *path)
{
	char full[PATH_MAX];
	struct stat sb;
	join(dir, path, full);
	return stat(full, &sb) == 0;
}

void test_sign_checkpoint(test_key *key, const char *origin, uint64_t size,
                          const uint8_t root[static TLOG_HASH_SIZE], char *note)
{
	char body[TEST_NOTE_CAP];
	size_t body_len, note_len;
	if (tlog_checkpoint_format(origin, size, root, NULL, body, sizeof body, &body_len) != KMS_OK)
		die("checkpoint format");
	if (tlog_note_sign(body, body_len, key->name, key->public_key, test_sign, key, note,
	                   TEST_NOTE_CAP, &note_len) != KMS_OK)
		die("note sign");
}

void test_make_log(const char *dir, uint64_t n, unsigned seed, const char *origin,
                   test_key *key, uint8_t root[static TLOG_HASH_SIZE], char *note)
{
	tlog_tree tree;
	char entry[256], text[TEST_NOTE_CAP];
	tlog_tree_init(&tree);
	for (uint64_t i = 0; i < n; i++) {
		size_t len = test_entry(i, seed, entry, sizeof entry);
		if (tlog_tree_append_entry(&tree, (const uint8_t *)entry, len) != KMS_OK)
			die("append");
	}
	if (tlog_tree_root(&tree, n, root) != KMS_OK ||
	    tlog_bundles_write(dir, test_entry_reader, &seed, 0, n) != KMS_OK ||
	    tlog_tiles_write(dir, tlog_tree_reader, &tree, 0, n) != KMS_OK)
		die("write log");
	test_sign_checkpoint(key, origin, n, root, text);
	if (tlog_checkpoint_publish(dir, text, strlen(text)) != KMS_OK)
		die("publish");
	if (note != NULL)
		memcpy(note, text, strlen(text) + 1);
	tlog_tree_free(&tree);
}
