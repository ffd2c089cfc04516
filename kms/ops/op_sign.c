/*
 * op_sign.c: Sign, Verify and GetPublicKey (docs/signing.md). The private
 * half of a signing key version never leaves the HSM: a P-256 version is
 * unwrapped into the HSM's key cache, an Ed25519 version is a token pair.
 * Verification needs only the public half, so kmsd does it with OpenSSL.
 */
#include <string.h>

#include <openssl/evp.h>

#include "common/error.h"
#include <kms/secmem.h>
#include "kms/format/public_key.h"
#include "kms/keys/keyring.h"
#include "kms/pipeline/ops.h"

/* Verify with no version tries at most this many active versions, the
 * primary first, then the newest (docs/signing.md). */
#define VERIFY_VERSIONS_MAX 100

_Static_assert((int)KMS__KEY_SPEC__AES_256 == (int)KEY_SPEC_AES_256 &&
                       (int)KMS__KEY_SPEC__HMAC_SHA256 == (int)KEY_SPEC_HMAC_SHA256 &&
                       (int)KMS__KEY_SPEC__ED25519 == (int)KEY_SPEC_ED25519 &&
                       (int)KMS__KEY_SPEC__ECC_P256 == (int)KEY_SPEC_ECC_P256,
               "the wire's KeySpec numbers are the store's");

static Kms__SigningAlgorithm algorithm_of(key_spec spec)
{
	return spec == KEY_SPEC_ED25519 ? KMS__SIGNING_ALGORITHM__SIGNING_ED25519
	                                : KMS__SIGNING_ALGORITHM__SIGNING_ECDSA_SHA_256;
}

static public_key_type type_of(key_spec spec)
{
	return spec == KEY_SPEC_ED25519 ? PUBLIC_KEY_ED25519 : PUBLIC_KEY_P256;
}

/* What the HSM (or the verifier) is given for a message: Ed25519 signs the
 * message itself; ECDSA a SHA-256 digest, the caller's or ours. */
typedef struct sign_input {
	uint8_t digest[32];
	const uint8_t *bytes;
	size_t len;
} sign_input;

static kms_status input_for(const keyring_key_use *use, Kms__SigningAlgorithm asked,
                            Kms__MessageType type, ProtobufCBinaryData message, sign_input *in)
{
	Kms__SigningAlgorithm alg = algorithm_of(use->spec);
	KMS_ENSURE(asked == KMS__SIGNING_ALGORITHM__SIGNING_ALGORITHM_UNSPECIFIED || asked == alg,
	           KMS_INVALID_ARGUMENT, "key %s is %s: it signs with %s only", use->key_id_text,
	           key_spec_name(use->spec),
	           alg == KMS__SIGNING_ALGORITHM__SIGNING_ED25519 ? "SIGNING_ED25519"
	                                                         : "SIGNING_ECDSA_SHA_256");
	bool digest = type == KMS__MESSAGE_TYPE__MESSAGE_DIGEST;
	if (use->spec == KEY_SPEC_ED25519) {
		KMS_ENSURE(!digest, KMS_INVALID_ARGUMENT,
		           "key %s is ED25519: Ed25519 signs the message itself, not a digest "
		           "(send MESSAGE_RAW, at most %d bytes)", use->key_id_text,
		           KMS_SIGN_MESSAGE_MAX);
		in->bytes = message.data;
		in->len = message.len;
		return KMS_OK;
	}
	if (digest) {
		memcpy(in->digest, message.data, sizeof in->digest); /* 32: validated */
	} else {
		unsigned int n = 0;
		KMS_ENSURE(EVP_Digest(message.data, message.len, in->digest, &n, EVP_sha256(),
		                      NULL) == 1 && n == sizeof in->digest,
		           KMS_INTERNAL, "cannot hash the message");
	}
	in->bytes = in->digest;
	in->len = sizeof in->digest;
	return KMS_OK;
}

kms_status op_sign(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__SignRequest *r = req->sign;
	char key_id[KMS_KEYID_TEXT_SIZE];
	keyring_key_use use;
	sign_input in;
	uint8_t raw[KEYRING_RAW_SIGNATURE_LEN];
	KMS_GUARD(op_authorize_ref(ctx, r->key_id, NULL, 0, key_id));
	KMS_GUARD(keyring_use_key(ctx->d->keyring, key_id, KEY_USAGE_SIGN_VERIFY, "Sign", 0, &use));
	op_note_key(ctx, use.key_id_text, use.version);
	KMS_GUARD(input_for(&use, r->signing_algorithm, r->message_type, r->message, &in));
	kms_status st = keyring_sign(ctx->d->keyring, &use, in.bytes, in.len, raw);
	kms_wipe(&in, sizeof in); /* the message's digest stands for the message */
	KMS_GUARD(st);

	Kms__SignResponse *s;
	OP_ALLOC(ctx, s);
	kms__sign_response__init(s);
	if (use.spec == KEY_SPEC_ECC_P256) {
		uint8_t der[ECDSA_P256_DER_MAX];
		size_t der_len;
		KMS_GUARD(ecdsa_p256_raw_to_der(raw, der, sizeof der, &der_len));
		s->signature.data = arena_memdup(ctx->arena, der, der_len);
		s->signature.len = der_len;
	} else {
		s->signature.data = arena_memdup(ctx->arena, raw, sizeof raw);
		s->signature.len = sizeof raw;
	}
	KMS_ENSURE(s->signature.data, KMS_INTERNAL, "out of request memory");
	s->key_id = arena_strdup(ctx->arena, use.key_id_text);
	KMS_ENSURE(s->key_id, KMS_INTERNAL, "out of request memory");
	s->key_version = use.version;
	s->signing_algorithm = algorithm_of(use.spec);
	resp->sign = s;
	resp->result_case = KMS__RESPONSE__RESULT_SIGN;
	return KMS_OK;
}

/* Whether version `use` verifies the signature. */
static kms_status verify_with(op_ctx *ctx, const keyring_key_use *use, const sign_input *in,
                              ProtobufCBinaryData sig, bool *valid)
{
	uint8_t pub[KEYRING_PUBLIC_KEY_MAX];
	size_t pub_len;
	KMS_GUARD(keyring_public_key(ctx->d->keyring, use, pub, &pub_len));
	return signature_verify(type_of(use->spec), pub, pub_len, in->bytes, in->len, sig.data,
	                        sig.len, valid);
}

/* Tries the version asked for, or every active one (the primary first),
 * until one verifies: *verified is that version, 0 when none did. */
static kms_status verify_versions(op_ctx *ctx, const char *key_id, const Kms__VerifyRequest *r,
                                  const sign_input *in, keyring_key_use *use, uint32_t *verified)
{
	uint32_t versions[VERIFY_VERSIONS_MAX];
	size_t n = 0;
	bool valid = false;
	*verified = 0;
	if (r->key_version) {
		versions[n++] = r->key_version;
	} else {
		KMS_GUARD(keyring_active_versions(ctx->d->keyring, use->key_id, versions,
		                                  VERIFY_VERSIONS_MAX, &n));
	}
	for (size_t i = 0; i < n && !valid; i++) {
		KMS_GUARD(keyring_use_key(ctx->d->keyring, key_id, KEY_USAGE_SIGN_VERIFY, "Verify",
		                          versions[i], use));
		KMS_GUARD(verify_with(ctx, use, in, r->signature, &valid));
		if (valid)
			*verified = use->version;
	}
	return KMS_OK;
}

kms_status op_verify(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__VerifyRequest *r = req->verify;
	char key_id[KMS_KEYID_TEXT_SIZE];
	keyring_key_use use;
	sign_input in;
	uint32_t verified = 0;
	KMS_GUARD(op_authorize_ref(ctx, r->key_id, NULL, 0, key_id));
	KMS_GUARD(keyring_use_key(ctx->d->keyring, key_id, KEY_USAGE_SIGN_VERIFY, "Verify",
	                          r->key_version, &use));
	KMS_GUARD(input_for(&use, r->signing_algorithm, r->message_type, r->message, &in));
	kms_status st = verify_versions(ctx, key_id, r, &in, &use, &verified);
	kms_wipe(&in, sizeof in); /* the message's digest stands for the message */
	KMS_GUARD(st);
	bool valid = verified != 0;
	op_note_key(ctx, use.key_id_text, verified);
	ctx->audit.verdict = valid ? "valid" : "invalid";

	Kms__VerifyResponse *v;
	OP_ALLOC(ctx, v);
	kms__verify_response__init(v);
	v->signature_valid = valid;
	v->key_id = arena_strdup(ctx->arena, use.key_id_text);
	KMS_ENSURE(v->key_id, KMS_INTERNAL, "out of request memory");
	v->key_version = verified;
	v->signing_algorithm = algorithm_of(use.spec);
	resp->verify = v;
	resp->result_case = KMS__RESPONSE__RESULT_VERIFY;
	return KMS_OK;
}

kms_status op_get_public_key(op_ctx *ctx, const Kms__Request *req, Kms__Response *resp)
{
	const Kms__GetPublicKeyRequest *r = req->get_public_key;
	char key_id[KMS_KEYID_TEXT_SIZE];
	keyring_key_use use;
	uint8_t pub[KEYRING_PUBLIC_KEY_MAX], der[PUBLIC_KEY_DER_MAX];
	char pem[PUBLIC_KEY_PEM_MAX];
	size_t pub_len, der_len;
	KMS_GUARD(op_authorize_ref(ctx, r->key_id, NULL, 0, key_id));
	KMS_GUARD(keyring_use_key(ctx->d->keyring, key_id, KEY_USAGE_SIGN_VERIFY, "GetPublicKey",
	                          r->key_version, &use));
	op_note_key(ctx, use.key_id_text, use.version);
	KMS_GUARD(keyring_public_key(ctx->d->keyring, &use, pub, &pub_len));
	KMS_GUARD(public_key_der(type_of(use.spec), pub, pub_len, der, sizeof der, &der_len));
	KMS_GUARD(public_key_pem(type_of(use.spec), pub, pub_len, pem, sizeof pem));

	Kms__GetPublicKeyResponse *g;
	OP_ALLOC(ctx, g);
	kms__get_public_key_response__init(g);
	g->key_id = arena_strdup(ctx->arena, use.key_id_text);
	g->public_key.data = arena_memdup(ctx->arena, der, der_len);
	g->public_key.len = der_len;
	g->public_key_pem = arena_strdup(ctx->arena, pem);
	KMS_ENSURE(g->key_id && g->public_key.data && g->public_key_pem, KMS_INTERNAL,
	           "out of request memory");
	g->key_version = use.version;
	g->key_spec = (Kms__KeySpec)use.spec;
	g->signing_algorithm = algorithm_of(use.spec);
	resp->get_public_key = g;
	resp->result_case = KMS__RESPONSE__RESULT_GET_PUBLIC_KEY;
	return KMS_OK;
}
