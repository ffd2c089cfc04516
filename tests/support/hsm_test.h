/*
 * hsm_test.h: what the hsm tests share. They run under tests/support/with-token,
 * which makes a fresh SoftHSM token and says where through the
 * environment (KMS_TEST_MODULE, KMS_TEST_TOKEN_LABEL, KMS_TEST_PIN_FILE,
 * KMS_TEST_TOKEN_DIR, SOFTHSM2_CONF).
 *
 * The "raw" helpers reach the same module behind the layer's back: dlopen
 * returns the already loaded module and C_Initialize answers
 * CKR_CRYPTOKI_ALREADY_INITIALIZED, so the raw session shares the layer's
 * state (its login, its sessions). Open the raw side after hsm_open and
 * never C_Finalize from it.
 */
#ifndef KMS_TESTS_HSM_TEST_H
#define KMS_TESTS_HSM_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <stdbool.h>
#include <sys/types.h>

#include <p11-kit/pkcs11.h>

#include "common/error.h"
#include "hsm/hsm.h"

typedef struct test_env {
	const char *module;
	const char *label;
	const char *pin_file;
	const char *token_dir;
} test_env;

/* The token's coordinates; fails the test when not run under with-token. */
test_env test_env_get(void);

/* A config for the test token (PIN from the PIN file). */
hsm_config test_config(void);

/* hsm_open on the test token; asserts success. */
hsm *test_open(void);

/* An object id from text (its bytes, without the NUL). */
hsm_object_id test_id(const char *text);

/* Asserts the last error message is one line and contains every needle
 * (the list ends with NULL). */
void test_assert_message(const char *needle, ...) __attribute__((sentinel));

/* The test token's user PIN (first line of the PIN file), in a static buffer. */
const char *test_pin(void);

/* Writes content to a fresh file name in the token folder with exactly
 * mode; its path goes to path. */
void test_write_file(char *path, size_t path_cap, const char *name, const char *content,
                     mode_t mode);

typedef struct test_raw {
	void *module;
	CK_FUNCTION_LIST_PTR p11;
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE session;
} test_raw;

/* Loads the module a second time, finds the test token, opens an RW session. */
void test_raw_open(test_raw *raw);
/* Closes the raw session (if still open) and unloads; never finalizes. */
void test_raw_close(test_raw *raw);
/* The single object with this id and class; asserts there is exactly one. */
CK_OBJECT_HANDLE test_raw_find(test_raw *raw, const hsm_object_id *id, CK_OBJECT_CLASS cls);
/* Reads a CK_BBOOL attribute; asserts the read works. */
bool test_raw_bool(test_raw *raw, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type);

#endif
