/*
 * p11_ed25519.c: Ed25519 key pairs in the HSM as token objects (the audit
 * checkpoint key, and Ed25519 key versions, which SoftHSMv2 cannot wrap):
 * create, export the public key, sign (pure EdDSA). hsm_object_destroy and
 * hsm_objects_list (p11_objects.c) take both halves by their shared CKA_ID.
 */
#include <string.h>

#include "common/cursor.h"
#include "hsm/p11_internal.h"

/* CKA_EC_PARAMS naming the curve, in the two forms PKCS#11 3.0 allows. */
static const uint8_t ed25519_oid[] = { 0x06, 0x03, 0x2b, 0x65, 0x70 }; /* 1.3.101.112 */
static const uint8_t ed25519_name[] = { 0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd', 's',
                                        '2',  '5',  '5', '1', '9' }; /* PrintableString */

/* CKA_EC_POINT as read back: a DER OCTET STRING (04 20 || key) or the raw key. */
#define EC_POINT_READ_MAX 64
#define DER_OCTET_STRING 0x04

static CK_RV generate_pair(hsm *h, CK_SESSION_HANDLE s, const hsm_object_id *id,
                           const char *label, const uint8_t *params, size_t params_len,
                           CK_OBJECT_HANDLE *public_key, CK_OBJECT_HANDLE *private_key)
{
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_OBJECT_CLASS public_class = CKO_PUBLIC_KEY, private_class = CKO_PRIVATE_KEY;
	CK_KEY_TYPE key_type = CKK_EC_EDWARDS;
	CK_ATTRIBUTE public_tmpl[] = {
		{ CKA_CLASS, &public_class, sizeof public_class },
		{ CKA_KEY_TYPE, &key_type, sizeof key_type },
		{ CKA_EC_PARAMS, hsm_unconst(params), params_len },
		{ CKA_TOKEN, &yes, sizeof yes },
		{ CKA_PRIVATE, &no, sizeof no },
		{ CKA_VERIFY, &yes, sizeof yes },
		{ CKA_ID, hsm_unconst(id->bytes), id->len },
		{ CKA_LABEL, hsm_unconst(label), strlen(label) },
	};
	CK_ATTRIBUTE private_tmpl[] = {
		{ CKA_CLASS, &private_class, sizeof private_class },
		{ CKA_KEY_TYPE, &key_type, sizeof key_type },
		{ CKA_TOKEN, &yes, sizeof yes },
		{ CKA_PRIVATE, &yes, sizeof yes },
		{ CKA_SENSITIVE, &yes, sizeof yes },
		{ CKA_EXTRACTABLE, &no, sizeof no },
		{ CKA_SIGN, &yes, sizeof yes },
		{ CKA_DERIVE, &no, sizeof no },
		{ CKA_ID, hsm_unconst(id->bytes), id->len },
		{ CKA_LABEL, hsm_unconst(label), strlen(label) },
	};
	CK_MECHANISM mech = { CKM_EC_EDWARDS_KEY_PAIR_GEN, NULL, 0 };
	return h->p11->C_GenerateKeyPair(s, &mech, public_tmpl,
	                                 sizeof public_tmpl / sizeof public_tmpl[0], private_tmpl,
	                                 sizeof private_tmpl / sizeof private_tmpl[0], public_key,
	                                 private_key);
}

/* The rvs with which a module says "not this way of naming the curve". */
static bool curve_form_refused(CK_RV rv)
{
	return rv == CKR_CURVE_NOT_SUPPORTED || rv == CKR_ATTRIBUTE_VALUE_INVALID ||
	       rv == CKR_DOMAIN_PARAMS_INVALID || rv == CKR_TEMPLATE_INCONSISTENT;
}

typedef struct pair_create_attempt {
	const hsm_object_id *id;
	const char *label;
	const char *call; /* the call *rv came from, for the message */
} pair_create_attempt;

static kms_status pair_create_step(hsm *h, CK_SESSION_HANDLE s, void *ctx, CK_RV *rv_out)
{
	pair_create_attempt *a = ctx;
	CK_OBJECT_HANDLE public_key = CK_INVALID_HANDLE, private_key = CK_INVALID_HANDLE;
	bool taken = false;

	a->call = "C_FindObjects";
	CK_RV rv = hsm_id_taken(h, s, a->id, &taken);
	if (rv == CKR_OK && taken)
		return KMS_FAIL(KMS_ALREADY_EXISTS, "hsm: an object with id %s already exists on "
		                "token \"%s\"", hsm_id_to_text(a->id).s, h->token_label);
	if (rv == CKR_OK) {
		a->call = "C_GenerateKeyPair";
		rv = generate_pair(h, s, a->id, a->label, ed25519_oid, sizeof ed25519_oid,
		                   &public_key, &private_key);
		if (curve_form_refused(rv))
			rv = generate_pair(h, s, a->id, a->label, ed25519_name, sizeof ed25519_name,
			                   &public_key, &private_key);
	}
	/* Both handles are at hand: caching them spares each half's first use a search. */
	if (rv == CKR_OK) {
		hsm_cache_put(&h->cache, a->id, HSM_KEY_ED25519_PUBLIC, public_key);
		hsm_cache_put(&h->cache, a->id, HSM_KEY_ED25519_PRIVATE, private_key);
	}
	*rv_out = rv;
	return KMS_OK;
}

kms_status hsm_ed25519_create(hsm *h, const hsm_object_id *id, const char *label)
{
	KMS_ENSURE(h != NULL, KMS_INVALID_ARGUMENT, "hsm: no hsm");
	KMS_GUARD(hsm_id_check(id));
	KMS_ENSURE(label != NULL && strlen(label) <= HSM_LABEL_MAX, KMS_INVALID_ARGUMENT,
	           "hsm: Ed25519 label missing or longer than %d bytes", HSM_LABEL_MAX);
	pair_create_attempt a = { .id = id, .label = label };
	CK_RV rv;

	/* Held across the retry too: "id is free, then create" stays one step
	 * for this process even when the session had to be repaired between. */
	pthread_mutex_lock(&h->create_lock);
	kms_status st = hsm_run(h, id, pair_create_step, &a, &rv);
	if (st == KMS_OK && rv != CKR_OK)
		st = KMS_FAIL(hsm_status_of(rv), "hsm: %s Ed25519 id %s label \"%s\" -> %s", a.call,
		              hsm_id_to_text(id).s, label, hsm_rv_name(rv));
	pthread_mutex_unlock(&h->create_lock);
	return st;
}

/* The 32 key bytes out of CKA_EC_POINT, in either form; false if neither. */
static bool ec_point_parse(const uint8_t *point, size_t len, uint8_t out[HSM_ED25519_PUBLIC_LEN])
{
	kms_cursor c = kms_cursor_init(point, len);
	const uint8_t *key = NULL;
	if (len == HSM_ED25519_PUBLIC_LEN) {
		(void)kms_cursor_take(&c, HSM_ED25519_PUBLIC_LEN, &key);
	} else {
		uint8_t tag = 0, key_len = 0;
		(void)kms_cursor_u8(&c, &tag);
		(void)kms_cursor_u8(&c, &key_len);
		if (tag != DER_OCTET_STRING || key_len != HSM_ED25519_PUBLIC_LEN)
			return false;
		(void)kms_cursor_take(&c, HSM_ED25519_PUBLIC_LEN, &key);
	}
	if (!kms_cursor_done(&c) || key == NULL)
		return false;
	memcpy(out, key, HSM_ED25519_PUBLIC_LEN);
	return true;
}

typedef struct public_attempt {
	const hsm_object_id *id;
	uint8_t *out; /* HSM_ED25519_PUBLIC_LEN bytes */
	const char *call; /* the call *rv came from, for the message */
} public_attempt;

static kms_status public_step(hsm *h, CK_SESSION_HANDLE s, void *ctx, CK_RV *rv_out)
{
	public_attempt *a = ctx;
	CK_OBJECT_HANDLE key;
	/* Per attempt: the module overwrites ulValueLen, and a retry must offer
	 * the whole buffer again. */
	uint8_t point[EC_POINT_READ_MAX];
	CK_ATTRIBUTE attr = { CKA_EC_POINT, point, sizeof point };

	a->call = "C_FindObjects";
	CK_RV rv = hsm_key_handle(h, s, a->id, HSM_KEY_ED25519_PUBLIC, &key);
	if (rv == CKR_OK && key == CK_INVALID_HANDLE)
		return KMS_FAIL(KMS_NOT_FOUND, "hsm: no Ed25519 public key with id %s on token "
		                "\"%s\"", hsm_id_to_text(a->id).s, h->token_label);
	if (rv == CKR_OK) {
		a->call = "C_GetAttributeValue(CKA_EC_POINT)";
		rv = h->p11->C_GetAttributeValue(s, key, &attr, 1);
	}
	/* A malformed point is the token's answer, not session trouble: not retried. */
	if (rv == CKR_OK &&
	    (attr.ulValueLen > sizeof point || !ec_point_parse(point, attr.ulValueLen, a->out)))
		return KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: Ed25519 id %s: CKA_EC_POINT of "
		                "%lu bytes is neither a raw key nor a DER OCTET STRING of one",
		                hsm_id_to_text(a->id).s, attr.ulValueLen);
	*rv_out = rv;
	return KMS_OK;
}

kms_status hsm_ed25519_public(hsm *h, const hsm_object_id *id,
                              uint8_t out[HSM_ED25519_PUBLIC_LEN])
{
	KMS_ENSURE(h != NULL && out != NULL, KMS_INVALID_ARGUMENT, "hsm: NULL argument");
	memset(out, 0, HSM_ED25519_PUBLIC_LEN);
	KMS_GUARD(hsm_id_check(id));
	public_attempt a = { .id = id, .out = out };
	CK_RV rv;

	/* out stays zero on every failure: ec_point_parse writes it only when
	 * the point parsed, and nothing after that can fail. */
	KMS_GUARD(hsm_run(h, id, public_step, &a, &rv));
	if (rv == CKR_OK)
		return KMS_OK;
	return KMS_FAIL(hsm_status_of(rv), "hsm: %s Ed25519 id %s -> %s", a.call,
	                hsm_id_to_text(id).s, hsm_rv_name(rv));
}

typedef struct sign_attempt {
	const hsm_object_id *id;
	CK_MECHANISM *mech;
	CK_BYTE_PTR data;
	size_t data_len;
	uint8_t *sig; /* HSM_ED25519_SIG_LEN bytes */
	const char *call; /* the call *rv came from, for the message */
} sign_attempt;

static kms_status sign_step(hsm *h, CK_SESSION_HANDLE s, void *ctx, CK_RV *rv_out)
{
	sign_attempt *a = ctx;
	CK_OBJECT_HANDLE key;

	a->call = "C_FindObjects";
	CK_RV rv = hsm_key_handle(h, s, a->id, HSM_KEY_ED25519_PRIVATE, &key);
	if (rv == CKR_OK && key == CK_INVALID_HANDLE)
		return KMS_FAIL(KMS_NOT_FOUND, "hsm: no Ed25519 private key with id %s on token "
		                "\"%s\"", hsm_id_to_text(a->id).s, h->token_label);
	if (rv == CKR_OK) {
		a->call = "C_SignInit";
		rv = h->p11->C_SignInit(s, a->mech, key);
	}
	if (rv == CKR_OK) {
		CK_ULONG sig_len = HSM_ED25519_SIG_LEN;
		a->call = "C_Sign";
		rv = h->p11->C_Sign(s, a->data, a->data_len, a->sig, &sig_len);
		if (rv == CKR_BUFFER_TOO_SMALL) {
			/* Left active, the operation would fail every later call on this
			 * session; hsm_recover does not retry this rv, so the attempt ends. */
			hsm_session_drop(h, true);
		} else if (rv == CKR_OK && sig_len != HSM_ED25519_SIG_LEN) {
			memset(a->sig, 0, HSM_ED25519_SIG_LEN);
			return KMS_FAIL(KMS_INTERNAL, "hsm: C_Sign Ed25519 id %s gave %lu bytes, "
			                "not %d", hsm_id_to_text(a->id).s, sig_len, HSM_ED25519_SIG_LEN);
		}
	}
	*rv_out = rv;
	return KMS_OK;
}

kms_status hsm_ed25519_sign(hsm *h, const hsm_object_id *id, const uint8_t *msg, size_t msg_len,
                            uint8_t sig[HSM_ED25519_SIG_LEN])
{
	KMS_ENSURE(h != NULL && sig != NULL, KMS_INVALID_ARGUMENT, "hsm: NULL argument");
	memset(sig, 0, HSM_ED25519_SIG_LEN);
	KMS_GUARD(hsm_id_check(id));
	KMS_ENSURE(msg != NULL || msg_len == 0, KMS_INVALID_ARGUMENT,
	           "hsm: Ed25519 sign: message is NULL but %zu bytes long", msg_len);
	static const uint8_t empty_msg[1];
	CK_MECHANISM mech = { CKM_EDDSA, NULL, 0 };
	sign_attempt a = {
		.id = id,
		.mech = &mech,
		.data = hsm_unconst(msg_len ? msg : empty_msg),
		.data_len = msg_len,
		.sig = sig,
	};
	CK_RV rv;

	KMS_GUARD(hsm_run(h, id, sign_step, &a, &rv));
	if (rv == CKR_OK)
		return KMS_OK;
	/* A failed C_Sign may have written part of a signature. */
	memset(sig, 0, HSM_ED25519_SIG_LEN);
	return KMS_FAIL(hsm_status_of(rv), "hsm: %s Ed25519 id %s -> %s", a.call,
	                hsm_id_to_text(id).s, hsm_rv_name(rv));
}
