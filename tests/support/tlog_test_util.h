/*
 * tlog_test_util.h: what the tlog tests share. A naive RFC 6962
 * implementation written straight from the RFC's recursive definitions
 * (MTH, PATH, PROOF), independent of common/tlog/tlog_merkle.c; Ed25519 keys
 * from OpenSSL; temporary directories; a log directory generator.
 */
#ifndef KMS_TLOG_TEST_UTIL_H
#define KMS_TLOG_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "common/tlog/tlog_merkle.h"
#include "common/tlog/tlog_note.h"

#define TEST_HASH_HEX_LEN (2 * TLOG_HASH_SIZE)

/* Decodes 64 hex digits; aborts the test on bad input. */
void test_hex32(const char *hex, uint8_t out[static TLOG_HASH_SIZE]);

/* SHA-256 with OpenSSL, for expectations. */
void test_sha256(const void *bytes, size_t len, uint8_t out[static TLOG_HASH_SIZE]);

/* RFC 6962 2.1, verbatim recursion over leaf hashes D[lo:hi). */
void naive_mth(const uint8_t (*leaves)[TLOG_HASH_SIZE], uint64_t lo, uint64_t hi,
               uint8_t out[static TLOG_HASH_SIZE]);
/* RFC 6962 2.1.1 PATH(m, D[lo:hi)), m relative to lo; returns the count. */
size_t naive_path(const uint8_t (*leaves)[TLOG_HASH_SIZE], uint64_t m, uint64_t lo, uint64_t hi,
                  uint8_t (*out)[TLOG_HASH_SIZE]);
/* RFC 6962 2.1.2 PROOF(m, D[n]); returns the count. */
size_t naive_proof(const uint8_t (*leaves)[TLOG_HASH_SIZE], uint64_t m, uint64_t n,
                   uint8_t (*out)[TLOG_HASH_SIZE]);

/* Leaf hashes of entry_bytes(i) for i < n, malloc'ed. */
uint8_t (*test_leaf_hashes(uint64_t n))[TLOG_HASH_SIZE];

/* Deterministic test entries: a JSON-ish line of varying length (1..200
 * bytes), different for each index and seed. Returns the length. */
size_t test_entry(uint64_t index, unsigned seed, char *buf, size_t cap);

/* An Ed25519 key from OpenSSL: generated, or from a 32-byte seed. */
typedef struct test_key {
	EVP_PKEY *pkey;
	uint8_t public_key[TLOG_ED25519_PUBLIC_KEY_SIZE];
	char name[TLOG_KEY_NAME_MAX + 1];
	char vkey[TLOG_VERIFIER_KEY_MAX];
} test_key;
void test_key_generate(test_key *key, const char *name);
void test_key_from_seed(test_key *key, const char *name, const uint8_t seed[static 32]);
void test_key_free(test_key *key);
/* A tlog_sign_fn: ctx is a test_key. */
kms_status test_sign(void *ctx, const uint8_t *msg, size_t len,
                     uint8_t sig[static TLOG_ED25519_SIGNATURE_SIZE]);

/* A fresh directory under $TMPDIR (or /tmp); test_rmdir removes a tree. */
void test_mkdtemp(char out[static 4096], const char *tag);
void test_rmdir(const char *dir);

/* Whole files, for tampering. test_read_file returns malloc'ed bytes. */
uint8_t *test_read_file(const char *dir, const char *path, size_t *len);
void test_write_file(const char *dir, const char *path, const void *bytes, size_t len);
bool test_file_exists(const char *dir, const char *path);

/* Writes a log of n entries test_entry(i, seed) to dir in one go (bundles,
 * tiles, a checkpoint signed by key for origin); returns the root. If note
 * is not NULL, the signed checkpoint text is copied there (cap 4096). */
void test_make_log(const char *dir, uint64_t n, unsigned seed, const char *origin,
                   test_key *key, uint8_t root[static TLOG_HASH_SIZE], char *note);

/* Signs a checkpoint (origin, size, root) with key into note (cap 4096). */
void test_sign_checkpoint(test_key *key, const char *origin, uint64_t size,
                          const uint8_t root[static TLOG_HASH_SIZE], char *note);

/* The entry reader over test_entry: ctx points to the unsigned seed. */
kms_status test_entry_reader(void *ctx, uint64_t index, uint8_t *buf, size_t cap, size_t *len);

#define TEST_NOTE_CAP 4096

#endif
