/*
 * sign.c: the canonical string and MAC of a signed request (kms/sign.h).
 * Shared by libkmsclient (signing) and kmsd (verifying).
 */
#include <kms/sign.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <kms/kms.pb-c.h>
#include <kms/secmem.h>

static int is_request_id_char(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
	       (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
}

static int is_operation_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
}

/* 1..max characters, each accepted by ok. */
static int field_ok(const char *s, size_t max, int (*ok)(char))
{
	if (!s || !s[0])
		return 0;
	size_t n = 0;
	for (; s[n]; n++) {
		if (n >= max || !ok(s[n]))
			return 0;
	}
	return 1;
}

kms_status kms_sign_canonical(const char *request_id, int64_t timestamp_unix,
                              const char *operation, const uint8_t *op_bytes,
                              size_t op_len, char out[KMS_SIGN_CANONICAL_MAX],
                              size_t *out_len)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t digest[SHA256_DIGEST_LENGTH];
	char digest_hex[2 * SHA256_DIGEST_LENGTH + 1];

	out[0] = '\0';
	if (out_len)
		*out_len = 0;
	if (!field_ok(request_id, KMS_SIGN_REQUEST_ID_MAX, is_request_id_char) ||
	    !field_ok(operation, KMS_SIGN_OPERATION_MAX, is_operation_char) ||
	    (!op_bytes && op_len > 0))
		return KMS_INVALID_ARGUMENT;

	/* SHA256(NULL, 0, ...) is defined, but keep the pointer honest. */
	static const uint8_t nothing[1];
	if (!SHA256(op_len ? op_bytes : nothing, op_len, digest))
		return KMS_INTERNAL;
	for (size_t i = 0; i < sizeof digest; i++) {
		digest_hex[2 * i] = hex[digest[i] >> 4];
		digest_hex[2 * i + 1] = hex[digest[i] & 0x0f];
	}
	digest_hex[sizeof digest_hex - 1] = '\0';

	int n = snprintf(out, KMS_SIGN_CANONICAL_MAX, "%s\n%s\n%" PRId64 "\n%s\n%s",
	                 KMS_SIGN_ALGORITHM, request_id, timestamp_unix,
	                 operation, digest_hex);
	if (n < 0 || (size_t)n >= KMS_SIGN_CANONICAL_MAX) {
		out[0] = '\0';
		return KMS_INTERNAL; /* cannot happen: the fields are bounded */
	}
	if (out_len)
		*out_len = (size_t)n;
	return KMS_OK;
}

kms_status kms_sign_mac(const uint8_t secret[KMS_SIGN_SECRET_LEN],
                        const char *request_id, int64_t timestamp_unix,
                        const char *operation, const uint8_t *op_bytes,
                        size_t op_len, uint8_t mac[KMS_SIGN_MAC_LEN])
{
	char canonical[KMS_SIGN_CANONICAL_MAX];
	size_t canonical_len;
	unsigned int mac_len = 0;

	memset(mac, 0, KMS_SIGN_MAC_LEN);
	kms_status st = kms_sign_canonical(request_id, timestamp_unix, operation,
	                                   op_bytes, op_len, canonical, &canonical_len);
	if (st != KMS_OK)
		return st;
	if (!HMAC(EVP_sha256(), secret, KMS_SIGN_SECRET_LEN,
	          (const unsigned char *)canonical, canonical_len, mac, &mac_len) ||
	    mac_len != KMS_SIGN_MAC_LEN) {
		memset(mac, 0, KMS_SIGN_MAC_LEN);
		return KMS_INTERNAL;
	}
	return KMS_OK;
}

kms_status kms_sign_verify(const uint8_t secret[KMS_SIGN_SECRET_LEN],
                           const char *request_id, int64_t timestamp_unix,
                           const char *operation, const uint8_t *op_bytes,
                           size_t op_len, const uint8_t *mac, size_t mac_len)
{
	uint8_t expected[KMS_SIGN_MAC_LEN];
	kms_status st = kms_sign_mac(secret, request_id, timestamp_unix, operation,
	                             op_bytes, op_len, expected);
	int same = st == KMS_OK && mac && mac_len == KMS_SIGN_MAC_LEN &&
	           CRYPTO_memcmp(expected, mac, KMS_SIGN_MAC_LEN) == 0;
	kms_wipe(expected, sizeof expected);
	return same ? KMS_OK : KMS_ACCESS_DENIED;
}

/* The oneof field of req that is set, or NULL. protobuf-c numbers op_case
 * with the field number, so the descriptor finds the field by it. */
static const ProtobufCFieldDescriptor *op_field(const Kms__Request *req)
{
	if (!req || req->op_case == KMS__REQUEST__OP__NOT_SET)
		return NULL;
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
		&kms__request__descriptor, (unsigned)req->op_case);
	if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE ||
	    !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
		return NULL;
	return f;
}

const char *kms_sign_operation_name(const Kms__Request *req)
{
	const ProtobufCFieldDescriptor *f = op_field(req);
	return f ? f->name : NULL;
}

/* Packs req's operation on its own into a fresh buffer (packed_free). */
static kms_status pack_operation(const Kms__Request *req, const char **name,
                                 uint8_t **packed, size_t *packed_len)
{
	const ProtobufCFieldDescriptor *f = op_field(req);
	*packed = NULL;
	*packed_len = 0;
	if (!f)
		return KMS_INVALID_ARGUMENT;
	const ProtobufCMessage *op =
		*(const ProtobufCMessage *const *)((const uint8_t *)req + f->offset);
	if (!op)
		return KMS_INVALID_ARGUMENT;
	size_t len = protobuf_c_message_get_packed_size(op);
	/* Plaintexts travel inside the operation, so the copy is wiped on
	 * release (packed_free); plain malloc, not a locked mapping per
	 * request, because kmsd verifies at tens of thousands of requests/s. */
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return KMS_INTERNAL;
	if (protobuf_c_message_pack(op, buf) != len) {
		free(buf);
		return KMS_INTERNAL;
	}
	*name = f->name;
	*packed = buf;
	*packed_len = len;
	return KMS_OK;
}

static void packed_free(uint8_t *packed, size_t packed_len)
{
	kms_wipe(packed, packed_len);
	free(packed);
}

kms_status kms_sign_request_mac(const Kms__Request *req,
                                const uint8_t secret[KMS_SIGN_SECRET_LEN],
                                int64_t timestamp_unix, uint8_t mac[KMS_SIGN_MAC_LEN])
{
	const char *name = NULL;
	uint8_t *packed;
	size_t packed_len;

	memset(mac, 0, KMS_SIGN_MAC_LEN);
	kms_status st = pack_operation(req, &name, &packed, &packed_len);
	if (st != KMS_OK)
		return st;
	st = kms_sign_mac(secret, req->request_id, timestamp_unix, name, packed,
	                  packed_len, mac);
	packed_free(packed, packed_len);
	return st;
}

kms_status kms_sign_request_verify(const Kms__Request *req,
                                   const uint8_t secret[KMS_SIGN_SECRET_LEN])
{
	const char *name = NULL;
	uint8_t *packed;
	size_t packed_len;

	if (!req || !req->credential)
		return KMS_ACCESS_DENIED;
	if (pack_operation(req, &name, &packed, &packed_len) != KMS_OK)
		return KMS_ACCESS_DENIED;
	kms_status st = kms_sign_verify(secret, req->request_id,
	                                req->credential->timestamp_unix, name,
	                                packed, packed_len, req->credential->mac.data,
	                                req->credential->mac.len);
	packed_free(packed, packed_len);
	return st;
}
