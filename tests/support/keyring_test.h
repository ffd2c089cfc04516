/*
 * keyring_test.h: what the keyring tests share. They run under
 * tests/support/with-token (a fresh SoftHSM token per test binary; see
 * tests/support/hsm_test.h for the environment) and keep kms.db in
 * $KMS_TEST_TOKEN_DIR/data, one data directory per binary: a new kms.db next
 * to a token that already holds key versions is refused by design.
 */
#ifndef KMS_TESTS_KEYRING_TEST_H
#define KMS_TESTS_KEYRING_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <stdbool.h>

#include "common/error.h"
#include "hsm/hsm.h"
#include "kms/keys/keyring.h"

/* A fixed clock: tests move it by hand. */
#define T_NOW INT64_C(1700000000)
#define T_DAY INT64_C(86400)

/* Fails the test with the status name and message unless st is want. */
#define assert_status(st, want)                                                \
	do {                                                                   \
		kms_status st_ = (st);                                         \
		if (st_ != (want))                                             \
			fail_msg("%s: got %s, want %s: %s", #st, kms_status_name(st_), \
			         kms_status_name(want), kms_error_message());  \
	} while (0)
#define assert_ok(st) assert_status((st), KMS_OK)

/* Asserts the last error message is one line and contains every needle
 * (the list ends with NULL). */
void t_assert_message(const char *needle, ...) __attribute__((sentinel));

/* hsm_open on the test token; asserts success. */
hsm *t_hsm_open(void);

/* $KMS_TEST_TOKEN_DIR/<name>, created (0700) if missing. */
const char *t_dir(const char *name);

/* keyring_open on data dir t_dir("data") with region "in-test-1" and the
 * given GCM bound and block (0: defaults); asserts success. */
keyring *t_keyring_open(hsm *h, uint64_t gcm_max, uint32_t block);

/* Creates an AES key (wrapped, the default) with an optional alias;
 * returns its id in id_text. */
void t_create(keyring *kr, const char *alias, char id_text[KMS_KEYID_TEXT_SIZE]);
/* The same with the given protection. */
void t_create_as(keyring *kr, const char *alias, key_protection protection,
                 char id_text[KMS_KEYID_TEXT_SIZE]);

/* The key-version objects (20-byte CKA_ID: AES keys, Ed25519 private
 * halves) on the token. */
typedef struct t_objects {
	hsm_object_id ids[512];
	size_t n;
} t_objects;
void t_objects_list(hsm *h, t_objects *out);

/* Asserts every key-version object on the token is an active version of a
 * visible hsm-resident key and every such active version has its object
 * (no orphans, nothing missing), and that every active version of a
 * wrapped key has wrapped material in the store and no token object, and
 * no destroyed version has either. Returns the number of objects. */
size_t t_assert_token_matches(hsm *h, keyring *kr);

/* An AES-GCM round trip through keyring_gcm_* with the version
 * encrypt_key hands out, and back through decrypt_key: the key really
 * works. */
void t_assert_key_works(hsm *h, keyring *kr, const char *key_ref);

/* Runs fn with stderr sent to a file; returns what was written (static). */
const char *t_capture_stderr(void (*fn)(void *), void *arg);

#endif
