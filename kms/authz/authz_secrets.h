/*
 * authz_secrets.h: access key secrets, made by and wrapped in the HSM
 * (docs/authorization.md, "Principals").
 *
 * A new access key is an id (AK + 20 base32 characters, from HSM random
 * bytes) and a 256-bit secret from the HSM's generator. The secret is kept
 * only wrapped: AES-256-GCM under one HSM key dedicated to this (CKA_ID
 * AUTHZ_WRAP_KEY_ID, sensitive, never extractable), with a fresh 12-byte IV
 * from the HSM and AAD = access key id || principal name, so a wrapped
 * secret moved to another key id or principal does not unwrap. The wrapped
 * form, which the store keeps, is
 *
 *     u8 format (1) || IV (12) || ciphertext (32) || GCM tag (16)
 *
 * In the clear a secret only ever lives in locked memory (kms_secure_alloc,
 * <kms/secmem.h>): the creator gets it once, unwrapping returns it, and
 * every failure wipes what was made. Nothing here writes a secret byte to a
 * message or a log.
 *
 * The wrapping key is found or created by authz_secrets_key_ensure at kmsd
 * start; authz_secrets_key_exists only looks (for kmsd --check, which
 * changes nothing). Its id is not 20 bytes, so start-up reconciliation of
 * key versions never takes it for an orphan.
 *
 * Thread-safe; every call blocks on the HSM.
 */
#ifndef KMS_AUTHZ_SECRETS_H
#define KMS_AUTHZ_SECRETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kms/status.h>

#include "hsm/hsm.h"
#include "kms/format/authz_names.h"

#define AUTHZ_WRAP_KEY_ID "kms-authz-secret-wrap-v1"
#define AUTHZ_WRAP_KEY_LABEL "kms access key secret wrapping key"
#define AUTHZ_SECRET_LEN 32
#define AUTHZ_WRAPPED_FORMAT 1
#define AUTHZ_WRAPPED_LEN (1 + HSM_GCM_IV_LEN + AUTHZ_SECRET_LEN + HSM_GCM_TAG_LEN)

/* Sets *exists to whether the wrapping key is on the token. Changes nothing. */
kms_status authz_secrets_key_exists(hsm *h, bool *exists) KMS_MUST_USE;

/* Creates the wrapping key unless it is there; *created says which. When it
 * creates it, it says so once in kmsd's log ("created the access key secret
 * wrapping key on token \"LABEL\""), for kmsd's start and --bootstrap-admin
 * alike. */
kms_status authz_secrets_key_ensure(hsm *h, bool *created) KMS_MUST_USE;

/* A new access key for principal: its id into id, its secret (AUTHZ_SECRET_LEN
 * bytes of locked memory; release with kms_secure_free) into *secret, and the
 * wrapped secret into wrapped. On failure *secret is NULL and nothing of a
 * secret remains in memory. */
kms_status authz_secrets_new(hsm *h, const char *principal, char id[static AUTHZ_ID_SIZE],
                             uint8_t **secret,
                             uint8_t wrapped[static AUTHZ_WRAPPED_LEN]) KMS_MUST_USE;

/* Wraps secret for (id, principal) with a fresh IV. */
kms_status authz_secrets_wrap(hsm *h, const char *id, const char *principal,
                              const uint8_t secret[static AUTHZ_SECRET_LEN],
                              uint8_t wrapped[static AUTHZ_WRAPPED_LEN]) KMS_MUST_USE;

/* Unwraps wrapped[0..len) for (id, principal) into *secret (AUTHZ_SECRET_LEN
 * bytes of locked memory; release with kms_secure_free). A wrapped secret of
 * another length or format, or one that does not authenticate (moved to
 * another id or principal, a changed byte, another token's key) is
 * KMS_INVALID_CIPHERTEXT; *secret is NULL on every failure. */
kms_status authz_secrets_unwrap(hsm *h, const char *id, const char *principal,
                                const uint8_t *wrapped, size_t len,
                                uint8_t **secret) KMS_MUST_USE;

/* A fresh grant id (GR + 20 base32 characters) from HSM random bytes. */
kms_status authz_secrets_grant_id(hsm *h, char id[static AUTHZ_ID_SIZE]) KMS_MUST_USE;

#endif
