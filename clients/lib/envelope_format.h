/*
 * envelope_format.h: the envelope message format's pure parts, no kmsd:
 * the header's layout, parsing and MAC, the key derivation, and sealing and
 * opening one STREAM segment (docs/envelope-format.md). envelope.c runs the
 * streaming state machines on top; the tests and the fuzz target call these
 * directly.
 */
#ifndef KMS_CLIENT_ENVELOPE_FORMAT_H
#define KMS_CLIENT_ENVELOPE_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include <kms/envelope.h>
#include <kms/status.h>

#define ENV_MAGIC "\x89kmsenv\n"
#define ENV_VERSION 1
#define ENV_SUITE_AES256GCM_HKDF_SHA256 1
#define ENV_KEY_LEN 32          /* data key, derived keys */
#define ENV_SALT_LEN 32
#define ENV_PREFIX_LEN 7
#define ENV_NONCE_LEN 12
#define ENV_MAC_LEN 32
#define ENV_TAG_LEN KMS_ENVELOPE_TAG_LEN

/* Offsets of the fixed fields; W is the wrapped key's length. */
#define ENV_OFF_VERSION 8
#define ENV_OFF_SUITE 9
#define ENV_OFF_SEGMENT 10
#define ENV_OFF_SALT 14
#define ENV_OFF_PREFIX 46
#define ENV_OFF_WRAPPED_LEN 53
#define ENV_OFF_WRAPPED 55
/* Bytes needed to know the whole header's length: through the context
 * length, which follows the wrapped key. */
#define ENV_WRAPPED_MIN 59      /* the shortest kms ciphertext blob */
#define ENV_WRAPPED_MAX 4185    /* the longest */

/* A parsed header; the pointers point into the bytes it was parsed from. */
typedef struct env_header {
	uint32_t segment_size;
	const uint8_t *salt;         /* ENV_SALT_LEN */
	const uint8_t *prefix;       /* ENV_PREFIX_LEN */
	const uint8_t *wrapped;      /* the data key's kms ciphertext blob */
	size_t wrapped_len;
	const uint8_t *context;      /* canonical encryption context */
	size_t context_len;
	const uint8_t *mac;          /* ENV_MAC_LEN, the header's last bytes */
	size_t len;                  /* the whole header, MAC included */
} env_header;

/*
 * From the first len bytes of a message: KMS_OK with *total the header's
 * full length once enough is there (at most ENV_OFF_WRAPPED + W + 4 bytes),
 * or KMS_OK with *total 0 when more bytes are needed; else
 * KMS_INVALID_CIPHERTEXT with *why one line (not this format, a version or
 * suite this reader does not know, a length out of range).
 */
kms_status env_header_length(const uint8_t *bytes, size_t len, size_t *total,
                             const char **why) KMS_MUST_USE;

/* Parses exactly one whole header (len from env_header_length): every
 * field's range and the context's canonical encoding (common/context.h).
 * The MAC is not checked here (that needs the data key). */
kms_status env_header_parse(const uint8_t *bytes, size_t len, env_header *out,
                            const char **why) KMS_MUST_USE;

/* The header's length for a wrapped key and context of these lengths. */
size_t env_header_size(size_t wrapped_len, size_t context_len);

/* Writes a header into out[0..env_header_size()) with a zero MAC; the
 * caller then calls env_header_mac over it. */
void env_header_write(uint8_t *out, uint32_t segment_size, const uint8_t salt[ENV_SALT_LEN],
                      const uint8_t prefix[ENV_PREFIX_LEN], const uint8_t *wrapped,
                      size_t wrapped_len, const uint8_t *context, size_t context_len);

/* The keys of one message, derived from its data key (secure memory: the
 * caller's). */
typedef struct env_keys {
	uint8_t header[ENV_KEY_LEN];
	uint8_t payload[ENV_KEY_LEN];
} env_keys;

/* K_header = HKDF-SHA256(data key, salt, "kms envelope v1 header"). */
bool env_derive_header_key(const uint8_t data_key[ENV_KEY_LEN],
                           const uint8_t salt[ENV_SALT_LEN], uint8_t out[ENV_KEY_LEN]);

/* K_payload = HKDF-SHA256(data key, salt, "kms envelope v1 payload" || MAC). */
bool env_derive_payload_key(const uint8_t data_key[ENV_KEY_LEN],
                            const uint8_t salt[ENV_SALT_LEN],
                            const uint8_t mac[ENV_MAC_LEN], uint8_t out[ENV_KEY_LEN]);

/* HMAC-SHA256(key, header[0..len - ENV_MAC_LEN)) into mac. */
bool env_header_mac(const uint8_t key[ENV_KEY_LEN], const uint8_t *header, size_t len,
                    uint8_t mac[ENV_MAC_LEN]);

/* One GCM context per message, keyed once with K_payload. */
EVP_CIPHER_CTX *env_gcm_new(const uint8_t key[ENV_KEY_LEN], bool encrypt);

/* Seals segment `counter` (last or not): out gets len + ENV_TAG_LEN bytes
 * (ciphertext, tag). out may equal in. */
bool env_seal(EVP_CIPHER_CTX *ctx, const uint8_t prefix[ENV_PREFIX_LEN], uint32_t counter,
              bool last, const uint8_t *in, size_t len, uint8_t *out);

/* Opens segment `counter` from in[0..len) (ciphertext then tag, len >=
 * ENV_TAG_LEN) into out (len - ENV_TAG_LEN bytes). false if the tag does
 * not verify; out is then wiped. */
bool env_open(EVP_CIPHER_CTX *ctx, const uint8_t prefix[ENV_PREFIX_LEN], uint32_t counter,
              bool last, const uint8_t *in, size_t len, uint8_t *out);

#endif
