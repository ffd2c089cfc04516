/*
 * client_signing.c: signatures, MACs and pseudonyms (Sign, Verify,
 * GetPublicKey, GenerateMac, VerifyMac, Pseudonymize).
 *
 * Nothing here is secret on the way back (a signature, a MAC, a public key,
 * a pseudonym), but every byte of it is checked before it reaches the
 * caller: lengths against <kms/limits.h>, texts for their form (a
 * pseudonym as common/pseudonym.h reads it, of the key and version the
 * answer names), the PEM against the DER.
 */
#include "clients/lib/client_internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "common/error.h"
#include "common/pseudonym.h"

#define PEM_BEGIN "-----BEGIN PUBLIC KEY-----"
#define PEM_END "-----END PUBLIC KEY-----"

/* ---- names ---- */

static const char *const algorithm_names[] = {
	[KMS_SIGNING_ALGORITHM_UNSPECIFIED] = "UNSPECIFIED",
	[KMS_SIGNING_ED25519] = "ED25519",
	[KMS_SIGNING_ECDSA_SHA_256] = "ECDSA_SHA_256",
};

const char *kms_signing_algorithm_name(kms_signing_algorithm algorithm)
{
	if ((unsigned)algorithm < sizeof algorithm_names / sizeof algorithm_names[0])
		return algorithm_names[algorithm];
	return "UNKNOWN";
}

/* ---- argument checks, before anything is sent ---- */

static kms_status check_message(const uint8_t *message, size_t len, kms_message_type type,
                                const char *op, kms_error *err)
{
	if (type != KMS_MESSAGE_RAW && type != KMS_MESSAGE_DIGEST)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s: the message type is %d; it is raw (%d) or a digest (%d)",
		                   op, (int)type, KMS_MESSAGE_RAW, KMS_MESSAGE_DIGEST);
	if (type == KMS_MESSAGE_DIGEST && (!message || len != KMS_SIGN_DIGEST_LEN))
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s: a digest is %d bytes (a SHA-256), not %zu", op,
		                   KMS_SIGN_DIGEST_LEN, message ? len : 0);
	if (!message || len == 0 || len > KMS_SIGN_MESSAGE_MAX)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "%s: the message is %zu bytes; it must be 1..%d (sign a longer "
		                   "one's SHA-256 digest)", op, message ? len : 0,
		                   KMS_SIGN_MESSAGE_MAX);
	return KMS_OK;
}

static kms_status check_signature(const uint8_t *signature, size_t len, kms_error *err)
{
	if (!signature || len == 0 || len > KMS_SIGNATURE_MAX)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "verify: the signature is %zu bytes; it must be 1..%d",
		                   signature ? len : 0, KMS_SIGNATURE_MAX);
	return KMS_OK;
}

static kms_status check_mac(const uint8_t *mac, size_t len, kms_error *err)
{
	if (!mac || len != KMS_MAC_LEN)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "verify_mac: the MAC is %zu bytes; an HMAC-SHA256 is %d",
		                   mac ? len : 0, KMS_MAC_LEN);
	return KMS_OK;
}

static kms_status check_values(const kms_pseudonym_value *values, size_t n, kms_error *err)
{
	if (!values || n == 0 || n > KMS_PSEUDONYM_VALUES_MAX)
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "pseudonymize: %zu values; a request takes 1..%d",
		                   values ? n : 0, KMS_PSEUDONYM_VALUES_MAX);
	for (size_t i = 0; i < n; i++) {
		if (!values[i].bytes || values[i].len == 0 ||
		    values[i].len > KMS_PSEUDONYM_VALUE_MAX)
			return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
			                   "pseudonymize: value %zu is %zu bytes; a value is 1..%d",
			                   i + 1, values[i].bytes ? values[i].len : 0,
			                   KMS_PSEUDONYM_VALUE_MAX);
	}
	return KMS_OK;
}

/* ---- answers, checked ---- */

static kms_status take_signature(const Kms__SignResponse *r, kms_signature *out,
                                 kms_error *err)
{
	if (r->signature.len == 0 || r->signature.len > KMS_SIGNATURE_MAX)
		return client_protocol_error(err, "sign", "the signature is empty or too long");
	KMS_GUARD(client_copy_key_id(out->key_id, r->key_id, err));
	memcpy(out->signature, r->signature.data, r->signature.len);
	out->signature_len = r->signature.len;
	out->key_version = r->key_version;
	out->algorithm = (kms_signing_algorithm)r->signing_algorithm;
	return KMS_OK;
}

/* A verdict: valid names the version that verified, invalid names none. */
static kms_status take_verdict(bool valid, const char *key_id, uint32_t key_version,
                               const char *op, kms_verification *out, kms_error *err)
{
	if (valid != (key_version != 0))
		return client_protocol_error(err, op, valid ? "valid, but no version verified"
		                                            : "not valid, but a version verified");
	KMS_GUARD(client_copy_key_id(out->key_id, key_id, err));
	out->valid = valid;
	out->key_version = key_version;
	return KMS_OK;
}

/* The base64 between PEM_BEGIN and PEM_END, without its line ends, must be
 * exactly the DER's encoding; nothing but printable ASCII and line ends. */
static bool pem_is_der(const char *pem, const uint8_t *der, size_t der_len)
{
	size_t len = strlen(pem), begin = strlen(PEM_BEGIN), end = strlen(PEM_END);
	for (size_t i = 0; i < len; i++)
		if ((pem[i] < 0x20 || pem[i] > 0x7e) && pem[i] != '\n' && pem[i] != '\r')
			return false;
	while (len > 0 && (pem[len - 1] == '\n' || pem[len - 1] == '\r'))
		len--;
	if (len < begin + end || memcmp(pem, PEM_BEGIN, begin) != 0 ||
	    memcmp(pem + len - end, PEM_END, end) != 0)
		return false;
	size_t want = kms_base64_encoded_len(der_len);
	char *body = malloc(len + 1), *expect = malloc(want + 1);
	bool same = false;
	if (body && expect && kms_base64_encode(der, der_len, expect, want + 1)) {
		size_t n = 0;
		for (size_t i = begin; i < len - end; i++)
			if (pem[i] != '\n' && pem[i] != '\r')
				body[n++] = pem[i];
		same = n == want && memcmp(body, expect, n) == 0;
	}
	free(body);
	free(expect);
	return same;
}

static kms_status take_public_key(const Kms__GetPublicKeyResponse *r, kms_public_key *out,
                                  kms_error *err)
{
	kms_status st;
	const char *pem = r->public_key_pem ? r->public_key_pem : "";
	if (r->public_key.len == 0 || r->public_key.len > KMS_PUBLIC_KEY_DER_MAX)
		return client_protocol_error(err, "get_public_key",
		                             "the public key is empty or too long");
	if (!pem_is_der(pem, r->public_key.data, r->public_key.len))
		return client_protocol_error(err, "get_public_key",
		                             "the PEM is not the DER public key");
	KMS_GUARD_OUT(st, client_copy_key_id(out->key_id, r->key_id, err));
	KMS_GUARD_OUT(st, client_dup_bytes(r->public_key, &out->der, &out->der_len, err));
	KMS_GUARD_OUT(st, client_dup_str(pem, &out->pem, err));
	out->key_version = r->key_version;
	out->key_spec = (kms_key_spec)r->key_spec;
	out->algorithm = (kms_signing_algorithm)r->signing_algorithm;
out:
	if (st != KMS_OK)
		kms_public_key_free(out);
	return st;
}

/* A pseudonym exactly in the text form (docs/pseudonyms.md, section 3),
 * of the key (its short id: the 8 hex digits after "k-") and version the
 * answer names. */
static bool pseudonym_ok(const char *text, const char *key_id, uint32_t version)
{
	char key_short[KMS_PSEUDONYM_KEY_SHORT_SIZE];
	uint32_t got;
	return text && key_id && strlen(key_id) >= 2 + KMS_PSEUDONYM_KEY_SHORT_LEN &&
	       memcmp(key_id, "k-", 2) == 0 &&
	       pseudonym_parse(text, key_short, &got) == KMS_OK && got == version &&
	       memcmp(key_short, key_id + 2, KMS_PSEUDONYM_KEY_SHORT_LEN) == 0;
}

static kms_status take_pseudonyms(const Kms__PseudonymizeResponse *r, size_t n_values,
                                  uint32_t version, kms_pseudonyms *out, kms_error *err)
{
	if (r->n_pseudonyms != n_values)
		return client_protocol_error(err, "pseudonymize", "not one pseudonym per value");
	if (r->key_version == 0 || (version != 0 && r->key_version != version))
		return client_protocol_error(err, "pseudonymize", "not the version asked for");
	for (size_t i = 0; i < n_values; i++)
		if (!pseudonym_ok(r->pseudonyms[i], r->key_id, r->key_version))
			return client_protocol_error(err, "pseudonymize",
			                             "a pseudonym is not kp_<key>_<version>_<mac> "
			                             "of the key and version answered");
	KMS_GUARD(client_copy_key_id(out->key_id, r->key_id, err));
	out->pseudonyms = calloc(n_values, sizeof *out->pseudonyms);
	if (!out->pseudonyms)
		return client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
	for (size_t i = 0; i < n_values; i++)
		strcpy(out->pseudonyms[i], r->pseudonyms[i]); /* checked to fit */
	out->n = n_values;
	out->key_version = r->key_version;
	return KMS_OK;
}

/* ---- the calls ---- */

kms_status kms_sign(kms_client *client, const char *key_id, const uint8_t *message,
                    size_t message_len, kms_message_type type, kms_signature *out,
                    kms_error *err)
{
	Kms__Request req;
	Kms__SignRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(client_begin(out, sizeof *out, "sign", err));
	KMS_GUARD(client_need(key_id, "sign", "a key id", err));
	KMS_GUARD(check_message(message, message_len, type, "sign", err));
	kms__request__init(&req);
	kms__sign_request__init(&op);
	op.key_id = client_lend(key_id);
	op.message.data = client_lend_bytes(message);
	op.message.len = message_len;
	op.message_type = (Kms__MessageType)type;
	req.op_case = KMS__REQUEST__OP_SIGN;
	req.sign = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_SIGN, &resp, err));
	st = take_signature(resp->sign, out, err);
	if (st != KMS_OK)
		memset(out, 0, sizeof *out);
	kms_response_free(resp);
	return st;
}

kms_status kms_verify(kms_client *client, const char *key_id, const uint8_t *message,
                      size_t message_len, kms_message_type type, const uint8_t *signature,
                      size_t signature_len, uint32_t key_version, kms_verification *out,
                      kms_error *err)
{
	Kms__Request req;
	Kms__VerifyRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(client_begin(out, sizeof *out, "verify", err));
	KMS_GUARD(client_need(key_id, "verify", "a key id", err));
	KMS_GUARD(check_message(message, message_len, type, "verify", err));
	KMS_GUARD(check_signature(signature, signature_len, err));
	kms__request__init(&req);
	kms__verify_request__init(&op);
	op.key_id = client_lend(key_id);
	op.message.data = client_lend_bytes(message);
	op.message.len = message_len;
	op.message_type = (Kms__MessageType)type;
	op.signature.data = client_lend_bytes(signature);
	op.signature.len = signature_len;
	op.key_version = key_version;
	req.op_case = KMS__REQUEST__OP_VERIFY;
	req.verify = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_VERIFY, &resp, err));
	const Kms__VerifyResponse *r = resp->verify;
	st = take_verdict(r->signature_valid, r->key_id, r->key_version, "verify", out, err);
	out->algorithm = (kms_signing_algorithm)r->signing_algorithm;
	if (st != KMS_OK)
		memset(out, 0, sizeof *out);
	kms_response_free(resp);
	return st;
}

void kms_public_key_free(kms_public_key *pk)
{
	if (!pk)
		return;
	free(pk->der);
	free(pk->pem);
	memset(pk, 0, sizeof *pk);
}

kms_status kms_get_public_key(kms_client *client, const char *key_id, uint32_t key_version,
                              kms_public_key *out, kms_error *err)
{
	Kms__Request req;
	Kms__GetPublicKeyRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(client_begin(out, sizeof *out, "get_public_key", err));
	KMS_GUARD(client_need(key_id, "get_public_key", "a key id", err));
	kms__request__init(&req);
	kms__get_public_key_request__init(&op);
	op.key_id = client_lend(key_id);
	op.key_version = key_version;
	req.op_case = KMS__REQUEST__OP_GET_PUBLIC_KEY;
	req.get_public_key = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_GET_PUBLIC_KEY, &resp,
	                           err));
	st = take_public_key(resp->get_public_key, out, err);
	kms_response_free(resp);
	return st;
}

kms_status kms_generate_mac(kms_client *client, const char *key_id, const uint8_t *message,
                            size_t message_len, uint32_t key_version, kms_mac *out,
                            kms_error *err)
{
	Kms__Request req;
	Kms__GenerateMacRequest op;
	Kms__Response *resp = NULL;
	kms_status st = KMS_OK;

	KMS_GUARD(client_begin(out, sizeof *out, "generate_mac", err));
	KMS_GUARD(client_need(key_id, "generate_mac", "a key id", err));
	KMS_GUARD(check_message(message, message_len, KMS_MESSAGE_RAW, "generate_mac", err));
	if (pseudonym_domain_prefixed(message, message_len))
		return client_fail(err, KMS_INVALID_ARGUMENT, KMS_ERROR_LOCAL,
		                   "generate_mac: the message starts with the pseudonym domain "
		                   "prefix (\"%s\" and a 0x00 byte), which kmsd refuses: use "
		                   "pseudonymize (docs/pseudonyms.md)", KMS_PSEUDONYM_DOMAIN);
	kms__request__init(&req);
	kms__generate_mac_request__init(&op);
	op.key_id = client_lend(key_id);
	op.message.data = client_lend_bytes(message);
	op.message.len = message_len;
	op.key_version = key_version;
	req.op_case = KMS__REQUEST__OP_GENERATE_MAC;
	req.generate_mac = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_GENERATE_MAC, &resp,
	                           err));
	const Kms__GenerateMacResponse *r = resp->generate_mac;
	if (r->mac.len != KMS_MAC_LEN)
		st = client_protocol_error(err, "generate_mac", "the MAC is not 32 bytes");
	else if ((st = client_copy_key_id(out->key_id, r->key_id, err)) == KMS_OK) {
		memcpy(out->mac, r->mac.data, KMS_MAC_LEN);
		out->key_version = r->key_version;
	}
	if (st != KMS_OK)
		memset(out, 0, sizeof *out);
	kms_response_free(resp);
	return st;
}

kms_status kms_verify_mac(kms_client *client, const char *key_id, const uint8_t *message,
                          size_t message_len, const uint8_t *mac, size_t mac_len,
                          uint32_t key_version, kms_verification *out, kms_error *err)
{
	Kms__Request req;
	Kms__VerifyMacRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(client_begin(out, sizeof *out, "verify_mac", err));
	KMS_GUARD(client_need(key_id, "verify_mac", "a key id", err));
	KMS_GUARD(check_message(message, message_len, KMS_MESSAGE_RAW, "verify_mac", err));
	KMS_GUARD(check_mac(mac, mac_len, err));
	kms__request__init(&req);
	kms__verify_mac_request__init(&op);
	op.key_id = client_lend(key_id);
	op.message.data = client_lend_bytes(message);
	op.message.len = message_len;
	op.mac.data = client_lend_bytes(mac);
	op.mac.len = mac_len;
	op.key_version = key_version;
	req.op_case = KMS__REQUEST__OP_VERIFY_MAC;
	req.verify_mac = &op;
	KMS_GUARD(client_roundtrip(client, &req, KMS__RESPONSE__RESULT_VERIFY_MAC, &resp, err));
	const Kms__VerifyMacResponse *r = resp->verify_mac;
	st = take_verdict(r->mac_valid, r->key_id, r->key_version, "verify_mac", out, err);
	if (st != KMS_OK)
		memset(out, 0, sizeof *out);
	kms_response_free(resp);
	return st;
}

void kms_pseudonyms_free(kms_pseudonyms *ps)
{
	if (!ps)
		return;
	free(ps->pseudonyms);
	memset(ps, 0, sizeof *ps);
}

kms_status kms_pseudonymize(kms_client *client, const char *key_id,
                            const kms_context_pair *context, size_t n_context,
                            const kms_pseudonym_value *values, size_t n_values,
                            uint32_t key_version, kms_pseudonyms *out, kms_error *err)
{
	client_arena arena = { 0 };
	Kms__Request req;
	Kms__PseudonymizeRequest op;
	Kms__Response *resp = NULL;
	kms_status st;

	KMS_GUARD(client_begin(out, sizeof *out, "pseudonymize", err));
	KMS_GUARD(client_need(key_id, "pseudonymize", "a key id", err));
	KMS_GUARD(check_values(values, n_values, err));
	kms__request__init(&req);
	kms__pseudonymize_request__init(&op);
	op.key_id = client_lend(key_id);
	op.key_version = key_version;
	KMS_GUARD_OUT(st, client_pairs(context, n_context, "context", &arena, &op.context,
	                               &op.n_context, err));
	/* The values travel as lent pointers: only the array is ours. */
	op.values = client_arena_alloc(&arena, n_values * sizeof *op.values);
	if (!op.values) {
		st = client_fail(err, KMS_INTERNAL, KMS_ERROR_LOCAL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n_values; i++) {
		op.values[i].data = client_lend_bytes(values[i].bytes);
		op.values[i].len = values[i].len;
	}
	op.n_values = n_values;
	req.op_case = KMS__REQUEST__OP_PSEUDONYMIZE;
	req.pseudonymize = &op;
	KMS_GUARD_OUT(st, client_roundtrip(client, &req, KMS__RESPONSE__RESULT_PSEUDONYMIZE,
	                                   &resp, err));
	st = take_pseudonyms(resp->pseudonymize, n_values, key_version, out, err);
out:
	if (st != KMS_OK)
		kms_pseudonyms_free(out);
	kms_response_free(resp);
	client_arena_free(&arena);
	return st;
}
