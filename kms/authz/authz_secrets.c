/*
 * authz_secrets.c: access key secrets wrapped in the HSM (authz_secrets.h).
 */
#include "kms/authz/authz_secrets.h"

#include <string.h>

#include <kms/secmem.h>

#include "common/error.h"
#include "common/log.h"

/* id (22 bytes) || principal name (1..63 bytes): the id's fixed length
 * keeps the concatenation unambiguous. */
#define AAD_MAX (AUTHZ_ID_LEN + AUTHZ_PRINCIPAL_NAME_MAX)

static hsm_object_id wrap_key_id(void)
{
	static const char text[] = AUTHZ_WRAP_KEY_ID;
	_Static_assert(sizeof text - 1 <= HSM_ID_MAX, "wrapping key id fits CKA_ID");
	hsm_object_id id = { .len = sizeof text - 1 };
	memcpy(id.bytes, text, id.len);
	return id;
}

kms_status authz_secrets_key_exists(hsm *h, bool *exists)
{
	hsm_object_id id = wrap_key_id();
	*exists = false;
	return hsm_object_exists(h, &id, exists);
}

kms_status authz_secrets_key_ensure(hsm *h, bool *created)
{
	hsm_object_id id = wrap_key_id();
	bool exists = false;
	*created = false;
	KMS_GUARD(hsm_object_exists(h, &id, &exists));
	if (exists)
		return KMS_OK;
	kms_status status = hsm_aes_create(h, &id, AUTHZ_WRAP_KEY_LABEL);
	if (status == KMS_ALREADY_EXISTS)
		return KMS_OK; /* another thread made it first */
	KMS_GUARD(status);
	*created = true;
	kms_log("info", "created the access key secret wrapping key on token \"%s\"",
	        hsm_token_label(h));
	return KMS_OK;
}

/* Checks the names and builds the AAD into aad[AAD_MAX]. */
static kms_status aad_make(const char *id, const char *principal, uint8_t *aad, size_t *len)
{
	*len = 0;
	KMS_ENSURE(id && principal, KMS_INVALID_ARGUMENT, "authz: no access key id or principal");
	KMS_GUARD(authz_names_id_check(AUTHZ_ACCESS_KEY_PREFIX, id, strnlen(id, AUTHZ_ID_SIZE)));
	size_t name_len = strnlen(principal, AUTHZ_PRINCIPAL_NAME_SIZE);
	KMS_GUARD(authz_names_principal_check(principal, name_len));
	memcpy(aad, id, AUTHZ_ID_LEN);
	memcpy(aad + AUTHZ_ID_LEN, principal, name_len);
	*len = AUTHZ_ID_LEN + name_len;
	return KMS_OK;
}

kms_status authz_secrets_wrap(hsm *h, const char *id, const char *principal,
                              const uint8_t secret[static AUTHZ_SECRET_LEN],
                              uint8_t wrapped[static AUTHZ_WRAPPED_LEN])
{
	uint8_t aad[AAD_MAX];
	size_t aad_len;
	hsm_object_id key = wrap_key_id();
	memset(wrapped, 0, AUTHZ_WRAPPED_LEN);
	KMS_GUARD(aad_make(id, principal, aad, &aad_len));
	uint8_t *iv = wrapped + 1;
	KMS_GUARD(hsm_random(h, iv, HSM_GCM_IV_LEN));
	wrapped[0] = AUTHZ_WRAPPED_FORMAT;
	kms_status status = hsm_aes_gcm_encrypt(h, &key, iv, aad, aad_len, secret,
	                                        AUTHZ_SECRET_LEN, wrapped + 1 + HSM_GCM_IV_LEN,
	                                        AUTHZ_SECRET_LEN + HSM_GCM_TAG_LEN);
	if (status != KMS_OK)
		memset(wrapped, 0, AUTHZ_WRAPPED_LEN);
	return status;
}

kms_status authz_secrets_unwrap(hsm *h, const char *id, const char *principal,
                                const uint8_t *wrapped, size_t len, uint8_t **secret)
{
	uint8_t aad[AAD_MAX];
	size_t aad_len;
	hsm_object_id key = wrap_key_id();
	*secret = NULL;
	KMS_GUARD(aad_make(id, principal, aad, &aad_len));
	KMS_ENSURE(wrapped && len == AUTHZ_WRAPPED_LEN && wrapped[0] == AUTHZ_WRAPPED_FORMAT,
	           KMS_INVALID_CIPHERTEXT,
	           "authz: the stored secret of access key %s is not in a known wrapped form", id);
	uint8_t *out = kms_secure_alloc(AUTHZ_SECRET_LEN);
	KMS_ENSURE(out, KMS_INTERNAL, "authz: out of locked memory for access key %s", id);
	kms_status status = hsm_aes_gcm_decrypt(h, &key, wrapped + 1, aad, aad_len,
	                                        wrapped + 1 + HSM_GCM_IV_LEN,
	                                        AUTHZ_SECRET_LEN + HSM_GCM_TAG_LEN, out,
	                                        AUTHZ_SECRET_LEN);
	if (status != KMS_OK) {
		kms_secure_free(out); /* wipes */
		if (status == KMS_INVALID_CIPHERTEXT)
			return KMS_FAIL(KMS_INVALID_CIPHERTEXT,
			                "authz: the stored secret of access key %s does not unwrap for "
			                "principal %s", id, principal);
		return status;
	}
	*secret = out;
	return KMS_OK;
}

static kms_status id_new(hsm *h, const char *prefix, char id[static AUTHZ_ID_SIZE])
{
	uint8_t random[AUTHZ_ID_RANDOM_BYTES];
	id[0] = '\0';
	KMS_GUARD(hsm_random(h, random, sizeof random));
	return authz_names_id_format(prefix, random, id);
}

kms_status authz_secrets_new(hsm *h, const char *principal, char id[static AUTHZ_ID_SIZE],
                             uint8_t **secret, uint8_t wrapped[static AUTHZ_WRAPPED_LEN])
{
	*secret = NULL;
	id[0] = '\0';
	memset(wrapped, 0, AUTHZ_WRAPPED_LEN);
	KMS_ENSURE(principal, KMS_INVALID_ARGUMENT, "authz: no principal");
	KMS_GUARD(authz_names_principal_check(principal,
	                                      strnlen(principal, AUTHZ_PRINCIPAL_NAME_SIZE)));
	KMS_GUARD(id_new(h, AUTHZ_ACCESS_KEY_PREFIX, id));
	uint8_t *made = kms_secure_alloc(AUTHZ_SECRET_LEN);
	KMS_ENSURE(made, KMS_INTERNAL, "authz: out of locked memory for a new access key");
	kms_status status = hsm_random(h, made, AUTHZ_SECRET_LEN);
	if (status == KMS_OK)
		status = authz_secrets_wrap(h, id, principal, made, wrapped);
	if (status != KMS_OK) {
		kms_secure_free(made);
		id[0] = '\0';
		return status;
	}
	*secret = made;
	return KMS_OK;
}

kms_status authz_secrets_grant_id(hsm *h, char id[static AUTHZ_ID_SIZE])
{
	return id_new(h, AUTHZ_GRANT_PREFIX, id);
}
