/*
 * e2e_ops.h: request helpers shared by the crash, region and GCM-bound
 * end-to-end tests, on top of harness.h.
 *
 * Every call is bounded in time: harness_call's timeouts, or the explicit
 * timeout given here. Responses are returned as they came (free with
 * kms__response__free_unpacked(resp, NULL)); NULL means no reply arrived.
 * Functions that take a socket set the request id themselves and never
 * touch h's counters, so two threads may call them on two sockets.
 */
#ifndef KMS_TEST_E2E_OPS_H
#define KMS_TEST_E2E_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tests/support/harness.h"

#define E2E_VERSIONS_MAX 512
#define E2E_KEYS_MAX 2048
#define E2E_KEY_ID_SIZE 35

/* A key as ListKeys showed it. */
typedef struct e2e_key {
	char id[E2E_KEY_ID_SIZE];
	int state;                  /* Kms__KeyState */
	int protection;             /* Kms__KeyProtection */
	uint32_t primary;
	size_t n_versions;
	uint32_t versions[E2E_VERSIONS_MAX];
	uint64_t encryptions[E2E_VERSIONS_MAX];
} e2e_key;

/* The fields of a ciphertext blob's clear header (kms/format/blob.h). */
typedef struct e2e_blob_header {
	uint8_t key_id[16];
	uint32_t key_version;
	char region[33];
} e2e_blob_header;

Kms__Response *e2e_create_key(harness *h);
/* The same with a protection (wrapped, hsm-resident). */
Kms__Response *e2e_create_key_as(harness *h, Kms__KeyProtection protection);
Kms__Response *e2e_encrypt(harness *h, const char *key_ref, const uint8_t *plaintext,
                           size_t len);
Kms__Response *e2e_decrypt(harness *h, const uint8_t *blob, size_t len);
Kms__Response *e2e_describe(harness *h, const char *key_ref);
Kms__Response *e2e_rotate(harness *h, const char *key_ref);
Kms__Response *e2e_schedule_deletion(harness *h, const char *key_ref, uint32_t days);

/* A REQ socket dialled to h's ipc url with short timeouts (ms), for callers
 * that expect the daemon to die under them. */
bool e2e_socket(const harness *h, int send_ms, int recv_ms, nng_socket *out);
/* CreateKey / Encrypt over s with the given request id. */
Kms__Response *e2e_create_key_on(nng_socket s, const char *request_id);
Kms__Response *e2e_encrypt_on(nng_socket s, const char *request_id, const char *key_ref,
                              const uint8_t *plaintext, size_t len);
/* Decrypt over s with the given request id. */
Kms__Response *e2e_decrypt_on(nng_socket s, const char *request_id, const uint8_t *blob,
                              size_t len);

/* Encrypts len random bytes under key_ref and decrypts the blob; true when
 * both are OK and the plaintext comes back. why gets the reason otherwise. */
bool e2e_roundtrip(harness *h, const char *key_ref, char *why, size_t why_len);

/* Every key ListKeys shows, page after page (at most E2E_KEYS_MAX). *keys is
 * malloc'ed; free(). */
bool e2e_list_keys(harness *h, e2e_key **keys, size_t *n);

/* The key with that id in keys[0..n), or NULL. */
const e2e_key *e2e_find_key(const e2e_key *keys, size_t n, const char *id);

/* Waits (at most timeout_ms) for kmsd to exit on its own, reaps it and sets
 * *exit_code (-1 when killed by a signal). false on timeout, and then the
 * daemon is killed. */
bool e2e_wait_exit(harness *h, int timeout_ms, int *exit_code);

/* Parses a blob's clear header strictly enough for the tests. */
bool e2e_blob_parse(const uint8_t *blob, size_t len, e2e_blob_header *out);

/* The key id text "k-<hex>" of 16 bytes. */
void e2e_key_id_text(const uint8_t id[16], char out[E2E_KEY_ID_SIZE]);

/* Size of the daemon's log now, to look only at what comes after. */
size_t e2e_log_size(const harness *h);
/* Whether the log, from offset on, contains needle. */
bool e2e_log_contains_since(const harness *h, size_t offset, const char *needle);

/* With kmsd stopped: opens the token (env KMS_TEST_MODULE,
 * KMS_TEST_TOKEN_LABEL, KMS_TEST_PIN_FILE) and checks that the key-version
 * objects on it (CKA_ID of 20 bytes, version >= 1) are exactly the versions
 * of the keys in keys[0..n) that are not DESTROYED. why names the first
 * difference. *n_objects (may be NULL) gets how many such objects exist. */
bool e2e_token_matches(const e2e_key *keys, size_t n, size_t *n_objects, char *why,
                       size_t why_len);

/* A Health over h's own connection, which must be answered OK (the test
 * fails otherwise): how long it took, in ms. */
uint64_t e2e_health_ms(harness *h);

/* How many descriptors kmsd (h->pid) holds now, from /proc (the test fails
 * when they cannot be listed). */
unsigned e2e_kmsd_fds(const harness *h);

/* Milliseconds on the monotonic clock. */
uint64_t e2e_now_ms(void);
void e2e_sleep_ms(int ms);

#endif
