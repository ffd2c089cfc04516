/*
 * kms/envelope.h: envelope encryption of files and streams of any size.
 *
 * A message (a file, a stream, a buffer) is sealed locally with a data key
 * from kmsd's GenerateDataKey; only the wrapped data key, in the message's
 * header, ever goes back to kmsd (Decrypt) to be opened. The format is in
 * docs/envelope-format.md: a header authenticated as a whole (the wrapped
 * data key exactly as kmsd returned it, the encryption context, the
 * segment size, a salt and a nonce prefix), then AES-256-GCM segments in
 * the STREAM construction, so truncation, extension, reordering, segments
 * from another message and header edits are all detected.
 *
 * Streaming: init, update as often as needed, final. Memory is constant in
 * the message size (about two segments). Output goes to the caller's write
 * function, in order, as soon as it is ready.
 *
 * Decryption never hands the write function a segment's plaintext before
 * that segment's tag has verified. A message can still fail after some
 * segments were released (a later segment tampered, the message cut
 * short): the call then fails, kms_envelope_decryptor_released() says how
 * many plaintext bytes were already written, and the caller must treat
 * them as invalid (delete the output; never act on it).
 *
 * Errors: KMS_INVALID_CIPHERTEXT for input that is not an envelope message
 * or does not authenticate (the message says which: not this format,
 * header tampered, segment N tampered or reordered, truncated, bytes after
 * the end); KMS_INVALID_ARGUMENT for a context that does not match the one
 * required; kmsd's status for the data key's GenerateDataKey or Decrypt
 * (a disabled key, a key the caller may not use, kmsd unreachable); a write
 * function's failure as KMS_INTERNAL with its errno's text.
 */
#ifndef KMS_ENVELOPE_H
#define KMS_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/client.h>
#include <kms/data_key_cache.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KMS_ENVELOPE_SEGMENT_DEFAULT 65536u   /* plaintext bytes per segment */
#define KMS_ENVELOPE_SEGMENT_MIN 4096u
#define KMS_ENVELOPE_SEGMENT_MAX (1u << 24)   /* 16 MiB */
#define KMS_ENVELOPE_TAG_LEN 16
/* The fixed part of a header: all but the wrapped key and the context. */
#define KMS_ENVELOPE_HEADER_FIXED 91
/* The largest header a reader accepts: a kms ciphertext blob (at most
 * 4,185 bytes) and the largest canonical context (82,178 bytes). */
#define KMS_ENVELOPE_HEADER_MAX (KMS_ENVELOPE_HEADER_FIXED + 4185 + 82178)
/* How many bytes of a message tell whether it is one (the magic). */
#define KMS_ENVELOPE_MAGIC_LEN 8

/* Whether bytes[0..len) begins like an envelope message (the magic; at
 * least KMS_ENVELOPE_MAGIC_LEN bytes needed). */
KMS_EXPORT bool kms_envelope_is_message(const uint8_t *bytes, size_t len);

/* Where output goes: called with each run of bytes in order; returns 0, or
 * an errno value to fail the call (KMS_INTERNAL, that errno's text). */
typedef int (*kms_envelope_write_fn)(void *arg, const uint8_t *bytes, size_t len);

typedef struct kms_envelope_encrypt_options {
	uint32_t segment_size;       /* 0: KMS_ENVELOPE_SEGMENT_DEFAULT */
	/* NULL: one GenerateDataKey per message. A cache is used only when the
	 * plaintext's size is known (size_known); it must be on the same
	 * client. */
	kms_data_key_cache *cache;
	bool size_known;
	uint64_t size;               /* with size_known: the exact plaintext size */
} kms_envelope_encrypt_options;

typedef struct kms_envelope_decrypt_options {
	/* When set, the message's data key must be under this key (an id or
	 * an alias), as kmsd checks it. */
	const char *key_id;
	/* When require_context is true, the message's encryption context must
	 * be exactly this map (order free; n_context 0: the empty context),
	 * else KMS_INVALID_ARGUMENT before anything is sent to kmsd. Leave it
	 * false only to accept whatever context the message holds (kmsd still
	 * authorizes the Decrypt under it); then read it with
	 * kms_envelope_decryptor_context. */
	bool require_context;
	const kms_context_pair *context;
	size_t n_context;
	kms_data_key_cache *cache;   /* as for encryption */
	bool size_known;
	uint64_t size;               /* with size_known: the message's total size */
} kms_envelope_decrypt_options;

typedef struct kms_envelope_encryptor kms_envelope_encryptor;
typedef struct kms_envelope_decryptor kms_envelope_decryptor;

/*
 * Gets a data key for key_id and context (GenerateDataKey, or the cache),
 * and writes the header. opts may be NULL (defaults). On failure *out is
 * NULL and nothing was written.
 */
KMS_EXPORT kms_status kms_envelope_encrypt_init(kms_client *client, const char *key_id,
                                                const kms_context_pair *context,
                                                size_t n_context,
                                                const kms_envelope_encrypt_options *opts,
                                                kms_envelope_write_fn write, void *write_arg,
                                                kms_envelope_encryptor **out,
                                                kms_error *err) KMS_MUST_USE;

/* Seals plaintext; full segments are written as they fill. More bytes
 * than opts->size (when size_known) is KMS_INVALID_ARGUMENT. */
KMS_EXPORT kms_status kms_envelope_encrypt_update(kms_envelope_encryptor *enc,
                                                  const uint8_t *plaintext, size_t len,
                                                  kms_error *err) KMS_MUST_USE;

/* Writes the last segment. Fewer bytes than opts->size (when size_known)
 * is KMS_INVALID_ARGUMENT. After a failure of update or final the
 * encryptor only accepts kms_envelope_encryptor_free. */
KMS_EXPORT kms_status kms_envelope_encrypt_final(kms_envelope_encryptor *enc,
                                                 kms_error *err) KMS_MUST_USE;

/* The key and version the data key is under. */
KMS_EXPORT const char *kms_envelope_encryptor_key_id(const kms_envelope_encryptor *enc);
KMS_EXPORT uint32_t kms_envelope_encryptor_key_version(const kms_envelope_encryptor *enc);

/* Wipes the keys and buffers and frees; NULL is ignored. */
KMS_EXPORT void kms_envelope_encryptor_free(kms_envelope_encryptor *enc);

/* A decryptor; it asks kmsd for the data key once the header is in. */
KMS_EXPORT kms_status kms_envelope_decrypt_init(kms_client *client,
                                                const kms_envelope_decrypt_options *opts,
                                                kms_envelope_write_fn write, void *write_arg,
                                                kms_envelope_decryptor **out,
                                                kms_error *err) KMS_MUST_USE;

/* Takes the next bytes of the message; writes every segment that has
 * verified and is known not to be the last. */
KMS_EXPORT kms_status kms_envelope_decrypt_update(kms_envelope_decryptor *dec,
                                                  const uint8_t *message, size_t len,
                                                  kms_error *err) KMS_MUST_USE;

/* The message has ended: verifies and writes the last segment. Only a
 * KMS_OK here makes what was written a valid plaintext. */
KMS_EXPORT kms_status kms_envelope_decrypt_final(kms_envelope_decryptor *dec,
                                                 kms_error *err) KMS_MUST_USE;

/* Plaintext bytes already handed to the write function. */
KMS_EXPORT uint64_t kms_envelope_decryptor_released(const kms_envelope_decryptor *dec);

/* Once the header has been read (else "" and 0): the key and version kmsd
 * opened the data key with. */
KMS_EXPORT const char *kms_envelope_decryptor_key_id(const kms_envelope_decryptor *dec);
KMS_EXPORT uint32_t kms_envelope_decryptor_key_version(const kms_envelope_decryptor *dec);

/* Once the header has been read and its data key opened: the message's
 * encryption context (*pairs, valid until the decryptor is freed; the
 * count is returned; 0 and NULL before). A caller that did not set
 * require_context must check it before trusting the plaintext: the context
 * says whose data this is and for what, and a message moved from another
 * tenant's path decrypts with its own. */
KMS_EXPORT size_t kms_envelope_decryptor_context(const kms_envelope_decryptor *dec,
                                                 const kms_context_pair **pairs);

KMS_EXPORT void kms_envelope_decryptor_free(kms_envelope_decryptor *dec);

/* ---- whole buffers ---- */

/* Seals plaintext[0..len) into *out (malloc'ed; kms_free), *out_len. */
KMS_EXPORT kms_status kms_envelope_encrypt_buffer(kms_client *client, const char *key_id,
                                                  const kms_context_pair *context,
                                                  size_t n_context,
                                                  const kms_envelope_encrypt_options *opts,
                                                  const uint8_t *plaintext, size_t len,
                                                  uint8_t **out, size_t *out_len,
                                                  kms_error *err) KMS_MUST_USE;

/* Opens message[0..len) into *out (kms_secure_alloc memory; release with
 * kms_secure_free; a 1-byte block when the plaintext is empty), *out_len.
 * Nothing is returned unless the whole message verified. */
KMS_EXPORT kms_status kms_envelope_decrypt_buffer(kms_client *client,
                                                  const kms_envelope_decrypt_options *opts,
                                                  const uint8_t *message, size_t len,
                                                  uint8_t **out, size_t *out_len,
                                                  kms_error *err) KMS_MUST_USE;

/* The size of the message sealing len plaintext bytes in segments of
 * segment_size (0: default), beside a header of header_len bytes;
 * UINT64_MAX when that does not fit in 64 bits. */
KMS_EXPORT uint64_t kms_envelope_message_size(uint64_t len, uint32_t segment_size,
                                              size_t header_len);

#ifdef __cplusplus
}
#endif
#endif
