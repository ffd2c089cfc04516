/*
 * public_key.h: the standard encodings of a signing key's public half and
 * of its signatures (docs/signing.md), and verification with the public key
 * alone. Pure (OpenSSL, no HSM), thread-safe.
 *
 * Public keys are kept raw (an uncompressed P-256 point of 65 bytes, an
 * Ed25519 key of 32) and handed out as X.509 SubjectPublicKeyInfo: DER
 * (RFC 5280; id-ecPublicKey with prime256v1, RFC 5480; id-Ed25519, RFC
 * 8410) and its PEM ("-----BEGIN PUBLIC KEY-----"), which OpenSSL, JOSE
 * libraries and every TLS stack read as they are.
 */
#ifndef KMS_FORMAT_PUBLIC_KEY_H
#define KMS_FORMAT_PUBLIC_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>


/* The two kinds of signing key. */
typedef enum public_key_type {
	PUBLIC_KEY_P256 = 1,    /* ECDSA on P-256 with SHA-256 */
	PUBLIC_KEY_ED25519 = 2, /* pure Ed25519 */
} public_key_type;

/* DER of a P-256 SubjectPublicKeyInfo: 26 bytes of header + 65. */
#define PUBLIC_KEY_DER_MAX 91
/* Its PEM: header, 64-character lines of base64, footer, NUL. */
#define PUBLIC_KEY_PEM_MAX 200
/* A DER ECDSA-Sig-Value on P-256: at most 72 bytes. */
#define ECDSA_P256_DER_MAX 72

/* SubjectPublicKeyInfo DER of a raw public key of type (P256: the
 * 65-byte point 0x04 || X || Y; ED25519: 32 bytes). KMS_INVALID_ARGUMENT
 * for another type or length. */
kms_status public_key_der(public_key_type type, const uint8_t *raw, size_t len, uint8_t *out,
                          size_t cap, size_t *out_len) KMS_MUST_USE;

/* The same as PEM text, NUL-terminated, lines ending "\n". */
kms_status public_key_pem(public_key_type type, const uint8_t *raw, size_t len, char *out,
                          size_t cap) KMS_MUST_USE;

/* r || s (32 bytes each, as PKCS#11's CKM_ECDSA gives them) as a DER
 * ECDSA-Sig-Value (SEQUENCE of two INTEGERs), the form OpenSSL, JCA and
 * X.509 use. */
kms_status ecdsa_p256_raw_to_der(const uint8_t raw[static 64], uint8_t *out, size_t cap,
                                 size_t *out_len) KMS_MUST_USE;

/* Verifies sig over input with the raw public key: P256 takes input as
 * the 32-byte SHA-256 digest and sig as DER; ED25519 takes input as the
 * message and sig as its 64 bytes. *valid is false for a signature that
 * does not verify or is malformed (that is an answer, not an error);
 * KMS_INTERNAL, *valid false, for a public key that does not parse or the
 * library failing to set up a verification. */
kms_status signature_verify(public_key_type type, const uint8_t *raw, size_t len, const uint8_t *input,
                            size_t input_len, const uint8_t *sig, size_t sig_len,
                            bool *valid) KMS_MUST_USE;

#endif
