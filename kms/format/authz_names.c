/*
 * authz_names.c: principal names, certificate names, access key and grant
 * ids (authz_names.h).
 */
#include "kms/format/authz_names.h"

#include <stdbool.h>
#include <string.h>

#include "common/error.h"

static const char base32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static bool prefix_known(const char *prefix)
{
	return prefix && (strcmp(prefix, AUTHZ_ACCESS_KEY_PREFIX) == 0 ||
	                  strcmp(prefix, AUTHZ_GRANT_PREFIX) == 0);
}

static const char *id_kind(const char *prefix)
{
	return strcmp(prefix, AUTHZ_ACCESS_KEY_PREFIX) == 0 ? "an access key id" : "a grant id";
}

kms_status authz_names_principal_check(const char *text, size_t len)
{
	KMS_ENSURE(text && len >= 1 && len <= AUTHZ_PRINCIPAL_NAME_MAX, KMS_INVALID_ARGUMENT,
	           "a principal name is 1..%d characters of [A-Za-z0-9._-]",
	           AUTHZ_PRINCIPAL_NAME_MAX);
	for (size_t i = 0; i < len; i++) {
		char c = text[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		KMS_ENSURE(ok, KMS_INVALID_ARGUMENT,
		           "a principal name has a character outside [A-Za-z0-9._-] at position %zu",
		           i + 1);
	}
	return KMS_OK;
}

kms_status authz_names_cert_check(const char *text, size_t len)
{
	KMS_ENSURE(text && len >= 1 && len <= AUTHZ_CERT_NAME_MAX, KMS_INVALID_ARGUMENT,
	           "a certificate name is 1..%d printable ASCII characters", AUTHZ_CERT_NAME_MAX);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		KMS_ENSURE(c >= 0x20 && c <= 0x7e, KMS_INVALID_ARGUMENT,
		           "a certificate name has a character that is not printable ASCII at "
		           "position %zu", i + 1);
	}
	return KMS_OK;
}

kms_status authz_names_id_format(const char *prefix,
                                 const uint8_t random[static AUTHZ_ID_RANDOM_BYTES],
                                 char out[static AUTHZ_ID_SIZE])
{
	out[0] = '\0';
	KMS_ENSURE(prefix_known(prefix), KMS_INVALID_ARGUMENT,
	           "authz: an id prefix is AK or GR");
	memcpy(out, prefix, 2);
	/* Big-endian bit order: character i is bits 5i..5i+4 of random. */
	for (size_t i = 0; i < AUTHZ_ID_BASE32_LEN; i++) {
		size_t bit = i * 5, byte = bit / 8, shift = bit % 8;
		unsigned v = (unsigned)random[byte] << 8;
		if (byte + 1 < AUTHZ_ID_RANDOM_BYTES)
			v |= random[byte + 1];
		out[2 + i] = base32[(v >> (11 - shift)) & 0x1f];
	}
	out[AUTHZ_ID_LEN] = '\0';
	return KMS_OK;
}

kms_status authz_names_id_check(const char *prefix, const char *text, size_t len)
{
	KMS_ENSURE(prefix_known(prefix), KMS_INVALID_ARGUMENT,
	           "authz: an id prefix is AK or GR");
	KMS_ENSURE(text && len == AUTHZ_ID_LEN && memcmp(text, prefix, 2) == 0,
	           KMS_INVALID_ARGUMENT, "%s is %s followed by %d characters of [A-Z2-7]",
	           id_kind(prefix), prefix, AUTHZ_ID_BASE32_LEN);
	for (size_t i = 2; i < len; i++) {
		char c = text[i];
		KMS_ENSURE((c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7'), KMS_INVALID_ARGUMENT,
		           "%s is %s followed by %d characters of [A-Z2-7]", id_kind(prefix),
		           prefix, AUTHZ_ID_BASE32_LEN);
	}
	return KMS_OK;
}
