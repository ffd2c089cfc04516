/*
 * tlog_note.h: C2SP signed notes (c2sp.org/signed-note) with Ed25519
 * signatures, and the checkpoint body they carry (c2sp.org/tlog-checkpoint).
 *
 * A signed note is its text (the body), a blank line, and one or more
 * signature lines:
 *
 *   <body, ending in "\n">
 *   "\n"
 *   "— " <key name> " " base64(key id (4 bytes, big-endian) || signature) "\n"
 *
 * "— " is U+2014 EM DASH and a space. An Ed25519 signature is over the body
 * bytes, final newline included. The key id of an Ed25519 key is the first 4
 * bytes of SHA-256(name || "\n" || 0x01 || public key), and a verifier key
 * is written "<name>+<8 hex key id>+<base64(0x01 || public key)>", as Go's
 * golang.org/x/mod/sumdb/note does. Key names are non-empty UTF-8 with no
 * Unicode space and no '+'.
 *
 * A checkpoint body is three lines and optional extension lines:
 *
 *   <origin>\n  <tree size, decimal, no leading zeros>\n
 *   <base64 of the 32-byte root hash>\n  [<extension line>\n ...]
 *
 * Base64 is the standard alphabet with padding (RFC 4648 section 4), and is
 * decoded strictly: no whitespace, right padding, zero unused bits.
 *
 * Status codes: KMS_INVALID_CIPHERTEXT for a note or checkpoint that does
 * not parse or does not verify (from outside), KMS_INVALID_ARGUMENT for bad
 * arguments (our own names, keys, buffers), KMS_INTERNAL for OpenSSL
 * failures. Pure functions: no I/O, no global state, thread-safe.
 */
#ifndef KMS_TLOG_NOTE_H
#define KMS_TLOG_NOTE_H

#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

#include "common/tlog/tlog_merkle.h"

#define TLOG_SIG_TYPE_ED25519 0x01     /* signed-note signature type byte */
#define TLOG_ED25519_PUBLIC_KEY_SIZE 32
#define TLOG_ED25519_SIGNATURE_SIZE 64
#define TLOG_KEY_ID_SIZE 4
#define TLOG_KEY_ID_HEX_LEN (2 * TLOG_KEY_ID_SIZE)
#define TLOG_KEY_NAME_MAX 255          /* bytes; our own bound, the spec has none */

/* Bounds on a note read from outside: the whole text, and the signature
 * lines (Go's reference verifier refuses more than 100 too; the spec asks
 * verifiers to accept at least 16). */
#define TLOG_NOTE_MAX (1u << 20)
#define TLOG_NOTE_SIGNATURES_MAX 100
/* A signature line's base64 beyond which the line is refused (the spec
 * allows for post-quantum signatures of nearly 5 kB). */
#define TLOG_SIGNATURE_B64_MAX 8192

/* "<name>+<8 hex>+<base64 of 33 bytes: 44 chars>" and a NUL. */
#define TLOG_PUBLIC_KEY_B64_LEN 44
#define TLOG_VERIFIER_KEY_MAX                                                  \
	(TLOG_KEY_NAME_MAX + 1 + TLOG_KEY_ID_HEX_LEN + 1 + TLOG_PUBLIC_KEY_B64_LEN + 1)
/* "— " name " " base64(4 + 64 bytes: 92 chars) "\n" */
#define TLOG_EM_DASH_SPACE "\xe2\x80\x94 "
#define TLOG_ED25519_SIGNATURE_B64_LEN 92
#define TLOG_SIGNATURE_LINE_MAX                                                \
	(sizeof TLOG_EM_DASH_SPACE - 1 + TLOG_KEY_NAME_MAX + 1 +               \
	 TLOG_ED25519_SIGNATURE_B64_LEN + 1)

/* Checkpoint bounds. */
#define TLOG_ORIGIN_MAX 1024          /* bytes of the origin line; our bound */
#define TLOG_TREE_SIZE_DIGITS_MAX 20  /* UINT64_MAX */
#define TLOG_ROOT_B64_LEN 44          /* base64 of 32 bytes */

/* A verifier key, parsed. name is NUL-terminated. */
typedef struct tlog_verifier {
	char name[TLOG_KEY_NAME_MAX + 1];
	uint32_t key_id;
	uint8_t public_key[TLOG_ED25519_PUBLIC_KEY_SIZE];
} tlog_verifier;

/* KMS_OK when name[0..len) is a valid key name: 1..TLOG_KEY_NAME_MAX bytes
 * of UTF-8, no Unicode space, no '+', no control character. */
kms_status tlog_key_name_check(const char *name, size_t len) KMS_MUST_USE;

/* The key id of an Ed25519 key: SHA-256(name || "\n" || 0x01 || key)[:4]. */
kms_status tlog_key_id(const char *name, const uint8_t public_key[static TLOG_ED25519_PUBLIC_KEY_SIZE],
                       uint32_t *key_id) KMS_MUST_USE;

/* Writes the verifier key string of (name, public_key), NUL-terminated. */
kms_status tlog_verifier_key_format(const char *name,
                                    const uint8_t public_key[static TLOG_ED25519_PUBLIC_KEY_SIZE],
                                    char out[static TLOG_VERIFIER_KEY_MAX]) KMS_MUST_USE;

/* Parses a verifier key string strictly (the key id must be the key's, the
 * type byte 0x01, the key 32 bytes). KMS_INVALID_ARGUMENT otherwise, with
 * *out zeroed. */
kms_status tlog_verifier_key_parse(const char *vkey, tlog_verifier *out) KMS_MUST_USE;

/* Signs msg[0..len) with the log's Ed25519 key (pure EdDSA, RFC 8032):
 * hsm_ed25519_sign has this shape. Writes 64 bytes to sig. */
typedef kms_status (*tlog_sign_fn)(void *ctx, const uint8_t *msg, size_t len,
                                   uint8_t sig[static TLOG_ED25519_SIGNATURE_SIZE]);

/* Writes the signed note body || "\n" || "— name base64(id || sig)\n" to
 * out[0..cap), NUL-terminated, *out_len not counting the NUL. body must be
 * a valid note text (ending in "\n", UTF-8, no control character but
 * "\n"). The signature is checked against public_key before anything is
 * written, so a signer and key that do not match fail (KMS_INTERNAL). */
kms_status tlog_note_sign(const char *body, size_t body_len, const char *name,
                          const uint8_t public_key[static TLOG_ED25519_PUBLIC_KEY_SIZE],
                          tlog_sign_fn sign, void *sign_ctx, char *out, size_t cap,
                          size_t *out_len) KMS_MUST_USE;

/* The body of a verified note: a view into the note's text. */
typedef struct tlog_note_view {
	const char *body;
	size_t body_len;
} tlog_note_view;

/* Parses text[0..len) as a signed note and verifies it with key. As the
 * spec and Go's note.Open: signature lines from other keys are ignored
 * (parsed, not verified); a line with key's name and id must verify (only
 * the first such line counts); at least one must. what names the note in
 * messages ("checkpoint"): "<what> is malformed: ...", "<what> is not
 * signed by key NAME+ID", "<what> signature does not verify with key
 * NAME+ID". On failure *out is zeroed. */
kms_status tlog_note_verify(const char *text, size_t len, const tlog_verifier *key,
                            const char *what, tlog_note_view *out) KMS_MUST_USE;

/* The body of a signed note, NOT verified: the text up to the last blank
 * line (signature lines are never empty). Only for reading a log whose key
 * the reader was not given; nothing read this way may be called verified.
 * KMS_INVALID_CIPHERTEXT "<what> is malformed: no blank line before the
 * signatures"; *out is then zeroed. */
kms_status tlog_note_body(const char *text, size_t len, const char *what,
                          tlog_note_view *out) KMS_MUST_USE;

/* A parsed checkpoint body: origin and extensions point into the body.
 * extensions is every line after the root, each ending "\n" (length 0 when
 * there are none). */
typedef struct tlog_checkpoint {
	const char *origin;
	size_t origin_len;
	uint64_t tree_size;
	uint8_t root[TLOG_HASH_SIZE];
	const char *extensions;
	size_t extensions_len;
} tlog_checkpoint;

/* Writes the checkpoint body to out[0..cap), NUL-terminated. extensions is
 * NULL or "" or lines each ending "\n", none empty. */
kms_status tlog_checkpoint_format(const char *origin, uint64_t tree_size,
                                  const uint8_t root[static TLOG_HASH_SIZE],
                                  const char *extensions, char *out, size_t cap,
                                  size_t *out_len) KMS_MUST_USE;

/* Parses a checkpoint body strictly: non-empty origin (at most
 * TLOG_ORIGIN_MAX bytes), tree size in canonical decimal up to
 * TLOG_TREE_SIZE_MAX, a root of exactly 32 bytes in canonical base64,
 * non-empty extension lines, every line ending "\n", UTF-8 with no control
 * character but "\n". what names it in messages ("<what> is malformed:
 * tree size line: leading zero"). On failure *out is zeroed. */
kms_status tlog_checkpoint_parse(const char *body, size_t len, const char *what,
                                 tlog_checkpoint *out) KMS_MUST_USE;

#endif
