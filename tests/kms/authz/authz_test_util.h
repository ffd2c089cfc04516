/*
 * authz_test_util.h: what the authz tests share: an access key source kept
 * in the test (secrets handed over in locked memory, as the store's will
 * be), a clock the test sets, and signed requests packed by protobuf-c and
 * signed by kms_sign_request_mac (the client's own code).
 */
#ifndef KMS_TESTS_AUTHZ_TEST_UTIL_H
#define KMS_TESTS_AUTHZ_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/sign.h>

#include "kms/authz/authz_verify.h"

#define TEST_KEYS_MAX 8

typedef struct test_key {
	const char *id;
	const char *principal;
	bool revoked, disabled;
	uint8_t secret[KMS_SIGN_SECRET_LEN];
} test_key;

typedef struct test_keys {
	test_key keys[TEST_KEYS_MAX];
	size_t n;
	int lookups, releases; /* every KMS_OK lookup must be released once */
	bool fail;             /* lookup answers KMS_HSM_UNAVAILABLE */
} test_keys;

/* Adds a key whose secret is bytes seed, seed+1, ... */
test_key *test_keys_add(test_keys *t, const char *id, const char *principal, uint8_t seed);

/* The source reading t. */
authz_key_source test_keys_source(test_keys *t);

/* A clock at *now. */
int64_t test_clock(void *now);

/* A packed Request { schema 1, request_id, credential { access_key_id,
 * timestamp, MAC under secret }, encrypt { key_id, plaintext } }, malloc'd;
 * *op_at and *op_len (when not NULL) locate the encrypt message's bytes
 * inside it. Aborts on failure. */
uint8_t *test_signed_request(const uint8_t secret[KMS_SIGN_SECRET_LEN], const char *access_key_id,
                             const char *request_id, int64_t timestamp, size_t *len,
                             size_t *op_at, size_t *op_len);

/* Unpacks bytes (NULL if they do not unpack); free with test_request_free. */
struct Kms__Request *test_request_unpack(const uint8_t *bytes, size_t len);
void test_request_free(struct Kms__Request *req);

#endif
