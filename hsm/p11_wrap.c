/*
 * p11_wrap.c: the key hierarchy's HSM side (docs/key-hierarchy.md): KEKs,
 * key versions generated in the HSM and handed out only wrapped under a KEK
 * (CKM_AES_KEY_WRAP_PAD, RFC 5649), re-wrapping from one KEK to another,
 * and the unwrap template of each key type (p11_keycache.c uses it too).
 *
 * A key must be CKA_EXTRACTABLE to be wrapped, so the object generated (or
 * unwrapped for a re-wrap) is extractable, but sensitive (its value cannot
 * be read) and a session object that lives for one step: the step destroys
 * it on every path, and a failed destroy closes the session, which takes
 * every session object with it.
 */
#include <stdio.h>
#include <string.h>

#include <kms/secmem.h>

#include "hsm/p11_internal.h"

static const CK_MECHANISM_TYPE wrap_mechanism = CKM_AES_KEY_WRAP_PAD;

/* A DER OCTET STRING header of an uncompressed P-256 point (CKA_EC_POINT). */
static const uint8_t p256_point_header[] = { 0x04, HSM_EC_P256_PUBLIC_LEN };
/* DER OID of prime256v1 (CKA_EC_PARAMS). */
static const uint8_t p256_params[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };

const char *hsm_key_type_name(hsm_key_type type)
{
	switch (type) {
	case HSM_KEY_TYPE_AES256:
		return "AES-256";
	case HSM_KEY_TYPE_HMAC_SHA256:
		return "HMAC-SHA256";
	case HSM_KEY_TYPE_EC_P256:
		return "EC P-256";
	}
	return "unknown";
}

kms_status hsm_no_kek(hsm *h, const hsm_object_id *kek)
{
	return KMS_FAIL(KMS_NOT_FOUND, "hsm: no KEK with id %s on token \"%s\" (an AES key with "
	                "CKA_UNWRAP): check the store's KEK list against the token",
	                hsm_id_to_text(kek).s, h->token_label);
}

kms_status hsm_unwrap_failure(hsm *h, const char *what, const hsm_object_id *kek, CK_RV rv)
{
	/* SoftHSMv2 answers a failed integrity check with CKR_GENERAL_ERROR; a
	 * device fault would too: one random-number call tells them apart. */
	uint8_t probe[1];
	if (rv == CKR_GENERAL_ERROR && hsm_random(h, probe, sizeof probe) != KMS_OK)
		return KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: C_UnwrapKey %s under KEK %s on token \"%s\" "
		                "-> %s, and the token then failed a random-number probe: HSM fault",
		                what, hsm_id_to_text(kek).s, h->token_label, hsm_rv_name(rv));
	if (rv == CKR_GENERAL_ERROR || rv == CKR_WRAPPED_KEY_INVALID ||
	    rv == CKR_WRAPPED_KEY_LEN_RANGE || rv == CKR_ENCRYPTED_DATA_INVALID)
		return KMS_FAIL(KMS_INTERNAL, "hsm: C_UnwrapKey %s under KEK %s -> %s: the wrapped "
		                "bytes fail their integrity check (changed, or wrapped under another "
		                "KEK): restore the version's row from a backup",
		                what, hsm_id_to_text(kek).s, hsm_rv_name(rv));
	return KMS_FAIL(hsm_status_of(rv), "hsm: C_UnwrapKey %s under KEK %s on token \"%s\" -> %s",
	                what, hsm_id_to_text(kek).s, h->token_label, hsm_rv_name(rv));
}

/* The usage attributes of each object class: every one is set, true only
 * for the type's operations (a module's defaults may be true: SoftHSMv2
 * gives an unwrapped secret key CKA_WRAP unless told otherwise). */
static const CK_ATTRIBUTE_TYPE secret_usage[] = { CKA_ENCRYPT, CKA_DECRYPT, CKA_SIGN, CKA_VERIFY,
	                                          CKA_WRAP,    CKA_UNWRAP,  CKA_DERIVE };
static const CK_ATTRIBUTE_TYPE private_usage[] = { CKA_SIGN, CKA_DECRYPT, CKA_SIGN_RECOVER,
	                                           CKA_UNWRAP, CKA_DERIVE };

static bool usage_wanted(hsm_key_type type, CK_ATTRIBUTE_TYPE a)
{
	switch (type) {
	case HSM_KEY_TYPE_AES256:
		return a == CKA_ENCRYPT || a == CKA_DECRYPT;
	case HSM_KEY_TYPE_HMAC_SHA256:
		return a == CKA_SIGN || a == CKA_VERIFY;
	case HSM_KEY_TYPE_EC_P256:
		return a == CKA_SIGN;
	}
	return false;
}

kms_status hsm_unwrap_template(hsm_key_type type, bool extractable, bool use,
                               hsm_unwrap_values *v, CK_ATTRIBUTE *t, CK_ULONG *len)
{
	const CK_ATTRIBUTE_TYPE *usage = secret_usage;
	size_t usage_count = sizeof secret_usage / sizeof secret_usage[0];
	v->yes = CK_TRUE;
	v->no = CK_FALSE;
	switch (type) {
	case HSM_KEY_TYPE_AES256:
		v->object_class = CKO_SECRET_KEY;
		v->key_type = CKK_AES;
		break;
	case HSM_KEY_TYPE_HMAC_SHA256:
		v->object_class = CKO_SECRET_KEY;
		v->key_type = CKK_GENERIC_SECRET;
		break;
	case HSM_KEY_TYPE_EC_P256:
		v->object_class = CKO_PRIVATE_KEY;
		v->key_type = CKK_EC;
		usage = private_usage;
		usage_count = sizeof private_usage / sizeof private_usage[0];
		break;
	default:
		return KMS_FAIL(KMS_INVALID_ARGUMENT, "hsm: unknown key type %d", (int)type);
	}
	CK_ULONG n = 0;
	t[n++] = (CK_ATTRIBUTE){ CKA_CLASS, &v->object_class, sizeof v->object_class };
	t[n++] = (CK_ATTRIBUTE){ CKA_KEY_TYPE, &v->key_type, sizeof v->key_type };
	t[n++] = (CK_ATTRIBUTE){ CKA_TOKEN, &v->no, sizeof v->no };
	t[n++] = (CK_ATTRIBUTE){ CKA_PRIVATE, &v->yes, sizeof v->yes };
	t[n++] = (CK_ATTRIBUTE){ CKA_SENSITIVE, &v->yes, sizeof v->yes };
	t[n++] = (CK_ATTRIBUTE){ CKA_EXTRACTABLE, extractable ? &v->yes : &v->no, sizeof v->no };
	for (size_t i = 0; i < usage_count; i++) {
		bool on = use && usage_wanted(type, usage[i]);
		t[n++] = (CK_ATTRIBUTE){ usage[i], on ? &v->yes : &v->no, sizeof v->no };
	}
	*len = n;
	return KMS_OK;
}

/* --- KEKs --- */

kms_status hsm_kek_create(hsm *h, const hsm_object_id *id, const char *label)
{
	KMS_ENSURE(h != NULL, KMS_INVALID_ARGUMENT, "hsm: no hsm");
	KMS_GUARD(hsm_id_check(id));
	KMS_GUARD(hsm_label_check(label));

	CK_OBJECT_CLASS object_class = CKO_SECRET_KEY;
	CK_KEY_TYPE key_type = CKK_AES;
	CK_ULONG value_len = HSM_AES256_KEY_LEN;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &object_class, sizeof object_class },
		{ CKA_KEY_TYPE, &key_type, sizeof key_type },
		{ CKA_VALUE_LEN, &value_len, sizeof value_len },
		{ CKA_TOKEN, &yes, sizeof yes },
		{ CKA_PRIVATE, &yes, sizeof yes },
		{ CKA_SENSITIVE, &yes, sizeof yes },
		{ CKA_EXTRACTABLE, &no, sizeof no },
		/* Wrapping only: a KEK cannot be made to encrypt or sign data. */
		{ CKA_WRAP, &yes, sizeof yes },
		{ CKA_UNWRAP, &yes, sizeof yes },
		{ CKA_ENCRYPT, &no, sizeof no },
		{ CKA_DECRYPT, &no, sizeof no },
		{ CKA_SIGN, &no, sizeof no },
		{ CKA_VERIFY, &no, sizeof no },
		{ CKA_DERIVE, &no, sizeof no },
		{ CKA_ID, hsm_unconst(id->bytes), id->len },
		{ CKA_LABEL, hsm_unconst(label), strlen(label) },
	};
	return hsm_secret_create(h, id, label, HSM_KEY_KEK, tmpl, sizeof tmpl / sizeof tmpl[0],
	                         "KEK");
}

typedef struct kek_find_attempt {
	const hsm_object_id *id;
	CK_OBJECT_HANDLE handle;
} kek_find_attempt;

static kms_status kek_find_step(hsm *h, CK_SESSION_HANDLE s, void *ctx, CK_RV *rv)
{
	kek_find_attempt *a = ctx;
	*rv = hsm_key_handle(h, s, a->id, HSM_KEY_KEK, &a->handle);
	return KMS_OK;
}

kms_status hsm_kek_exists(hsm *h, const hsm_object_id *id, bool *exists)
{
	KMS_ENSURE(h != NULL && exists != NULL, KMS_INVALID_ARGUMENT, "hsm: NULL argument");
	*exists = false;
	KMS_GUARD(hsm_id_check(id));
	kek_find_attempt a = { id, CK_INVALID_HANDLE };
	CK_RV rv;
	KMS_GUARD(hsm_run(h, id, kek_find_step, &a, &rv));
	KMS_ENSURE(rv == CKR_OK, hsm_status_of(rv), "hsm: C_FindObjects KEK %s -> %s",
	           hsm_id_to_text(id).s, hsm_rv_name(rv));
	*exists = a.handle != CK_INVALID_HANDLE;
	return KMS_OK;
}

/* --- generating and re-wrapping: one step each, for hsm_run --- */

typedef struct wrap_attempt {
	const hsm_object_id *kek;     /* wraps the result */
	const hsm_object_id *old_kek; /* re-wrap: unwraps the input */
	hsm_key_type type;
	const uint8_t *in; /* re-wrap: the wrapped bytes */
	size_t in_len;
	uint8_t *out;
	size_t cap, len;
	uint8_t *public_key; /* pairs: the public point goes here */
	const char *call;    /* the call *rv came from, for the message */
	const hsm_object_id *failed_kek; /* the KEK of a failed wrap or unwrap */
} wrap_attempt;

/* Destroys a step's session object. A failed destroy leaves an extractable
 * object behind: closing the session is the sure way to end it. */
static void destroy_or_close(hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE *obj)
{
	if (*obj == CK_INVALID_HANDLE)
		return;
	CK_RV rv = h->p11->C_DestroyObject(s, *obj);
	if (rv != CKR_OK && !hsm_rv_session_lost(rv))
		hsm_session_drop(h, true);
	*obj = CK_INVALID_HANDLE;
}

/* The KEK's handle, or the step's own verdict when there is none. */
static kms_status kek_handle(hsm *h, CK_SESSION_HANDLE s, const hsm_object_id *kek,
                             CK_OBJECT_HANDLE *out, CK_RV *rv)
{
	*rv = hsm_key_handle(h, s, kek, HSM_KEY_KEK, out);
	if (*rv == CKR_OK && *out == CK_INVALID_HANDLE)
		return hsm_no_kek(h, kek);
	return KMS_OK;
}

static CK_RV wrap_under(hsm *h, CK_SESSION_HANDLE s, wrap_attempt *a, CK_OBJECT_HANDLE kek,
                        CK_OBJECT_HANDLE key)
{
	CK_MECHANISM mech = { wrap_mechanism, NULL, 0 };
	CK_ULONG len = a->cap;
	a->call = "C_WrapKey";
	a->failed_kek = a->kek;
	CK_RV rv = h->p11->C_WrapKey(s, &mech, kek, key, a->out, &len);
	a->len = rv == CKR_OK ? len : 0;
	return rv;
}

static CK_RV generate_secret(hsm *h, CK_SESSION_HANDLE s, hsm_key_type type,
                             CK_OBJECT_HANDLE *out)
{
	CK_OBJECT_CLASS object_class = CKO_SECRET_KEY;
	CK_KEY_TYPE key_type = type == HSM_KEY_TYPE_AES256 ? CKK_AES : CKK_GENERIC_SECRET;
	CK_ULONG value_len = HSM_AES256_KEY_LEN; /* = HSM_HMAC_SHA256_KEY_LEN */
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	/* No use at all: the object exists only to be wrapped. */
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &object_class, sizeof object_class },
		{ CKA_KEY_TYPE, &key_type, sizeof key_type },
		{ CKA_VALUE_LEN, &value_len, sizeof value_len },
		{ CKA_TOKEN, &no, sizeof no },
		{ CKA_PRIVATE, &yes, sizeof yes },
		{ CKA_SENSITIVE, &yes, sizeof yes },
		{ CKA_EXTRACTABLE, &yes, sizeof yes },
		{ CKA_ENCRYPT, &no, sizeof no },
		{ CKA_DECRYPT, &no, sizeof no },
		{ CKA_SIGN, &no, sizeof no },
		{ CKA_VERIFY, &no, sizeof no },
		{ CKA_WRAP, &no, sizeof no },
		{ CKA_UNWRAP, &no, sizeof no },
		{ CKA_DERIVE, &no, sizeof no },
	};
	CK_MECHANISM mech = { type == HSM_KEY_TYPE_AES256 ? CKM_AES_KEY_GEN
	                                                  : CKM_GENERIC_SECRET_KEY_GEN,
		              NULL, 0 };
	return h->p11->C_GenerateKey(s, &mech, tmpl, sizeof tmpl / sizeof tmpl[0], out);
}

static CK_RV generate_p256(hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE *pub,
                           CK_OBJECT_HANDLE *priv)
{
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE pub_tmpl[] = {
		{ CKA_TOKEN, &no, sizeof no },
		{ CKA_EC_PARAMS, hsm_unconst(p256_params), sizeof p256_params },
	};
	CK_ATTRIBUTE priv_tmpl[] = {
		{ CKA_TOKEN, &no, sizeof no },
		{ CKA_PRIVATE, &yes, sizeof yes },
		{ CKA_SENSITIVE, &yes, sizeof yes },
		{ CKA_EXTRACTABLE, &yes, sizeof yes },
		{ CKA_SIGN, &no, sizeof no },
		{ CKA_DERIVE, &no, sizeof no },
	};
	CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	return h->p11->C_GenerateKeyPair(s, &mech, pub_tmpl, 2, priv_tmpl, 6, pub, priv);
}

/* The public point of pub, without its DER OCTET STRING header. */
static kms_status read_p256_point(hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE pub,
                                  uint8_t *out, CK_RV *rv)
{
	uint8_t der[sizeof p256_point_header + HSM_EC_P256_PUBLIC_LEN];
	CK_ATTRIBUTE attr = { CKA_EC_POINT, der, sizeof der };
	*rv = h->p11->C_GetAttributeValue(s, pub, &attr, 1);
	if (*rv != CKR_OK)
		return KMS_OK;
	KMS_ENSURE(attr.ulValueLen == sizeof der &&
	                   memcmp(der, p256_point_header, sizeof p256_point_header) == 0 &&
	                   der[sizeof p256_point_header] == 0x04,
	           KMS_INTERNAL, "hsm: the P-256 public key's CKA_EC_POINT is not a DER-wrapped "
	           "uncompressed point (%lu bytes)", (unsigned long)attr.ulValueLen);
	memcpy(out, der + sizeof p256_point_header, HSM_EC_P256_PUBLIC_LEN);
	return KMS_OK;
}

/*
 * A KEK's cached handle went stale (the object was replaced, or a logout
 * renumbered it): drop the KEKs' handles and say CKR_KEY_HANDLE_INVALID,
 * which hsm_run repairs and retries (it does not know the wrap-specific
 * codes).
 */
static CK_RV stale_kek(hsm *h, const wrap_attempt *a, CK_RV rv)
{
	if (rv != CKR_WRAPPING_KEY_HANDLE_INVALID && rv != CKR_UNWRAPPING_KEY_HANDLE_INVALID &&
	    rv != CKR_KEY_HANDLE_INVALID)
		return rv;
	hsm_cache_drop(&h->cache, a->kek);
	if (a->old_kek)
		hsm_cache_drop(&h->cache, a->old_kek);
	return CKR_KEY_HANDLE_INVALID;
}

static kms_status generate_step(hsm *h, CK_SESSION_HANDLE s, void *ctx, CK_RV *rv)
{
	wrap_attempt *a = ctx;
	CK_OBJECT_HANDLE kek, key = CK_INVALID_HANDLE, pub = CK_INVALID_HANDLE;
	kms_status st = KMS_OK;

	a->call = "C_FindObjects";
	KMS_GUARD(kek_handle(h, s, a->kek, &kek, rv));
	if (*rv != CKR_OK)
		return KMS_OK;
	a->call = a->type == HSM_KEY_TYPE_EC_P256 ? "C_GenerateKeyPair" : "C_GenerateKey";
	*rv = a->type == HSM_KEY_TYPE_EC_P256 ? generate_p256(h, s, &pub, &key)
	                                      : generate_secret(h, s, a->type, &key);
	if (*rv == CKR_OK && pub != CK_INVALID_HANDLE) {
		a->call = "C_GetAttributeValue(CKA_EC_POINT)";
		st = read_p256_point(h, s, pub, a->public_key, rv);
	}
	if (st == KMS_OK && *rv == CKR_OK)
		*rv = wrap_under(h, s, a, kek, key);
	destroy_or_close(h, s, &key);
	destroy_or_close(h, s, &pub);
	*rv = stale_kek(h, a, *rv);
	return st;
}

static kms_status rewrap_step(hsm *h, CK_SESSION_HANDLE s, void *ctx, CK_RV *rv)
{
	wrap_attempt *a = ctx;
	CK_OBJECT_HANDLE old_kek, new_kek, key = CK_INVALID_HANDLE;
	hsm_unwrap_values vals;
	CK_ATTRIBUTE tmpl[HSM_UNWRAP_ATTRS];
	CK_ULONG tmpl_len;

	a->call = "C_FindObjects";
	KMS_GUARD(kek_handle(h, s, a->old_kek, &old_kek, rv));
	if (*rv != CKR_OK)
		return KMS_OK;
	KMS_GUARD(kek_handle(h, s, a->kek, &new_kek, rv));
	if (*rv != CKR_OK)
		return KMS_OK;
	/* Extractable (to be wrapped again), sensitive, no use. */
	KMS_GUARD(hsm_unwrap_template(a->type, true, false, &vals, tmpl, &tmpl_len));
	CK_MECHANISM mech = { wrap_mechanism, NULL, 0 };
	a->call = "C_UnwrapKey";
	a->failed_kek = a->old_kek;
	*rv = h->p11->C_UnwrapKey(s, &mech, old_kek, hsm_unconst(a->in), a->in_len, tmpl, tmpl_len,
	                          &key);
	if (*rv == CKR_OK)
		*rv = wrap_under(h, s, a, new_kek, key);
	destroy_or_close(h, s, &key);
	*rv = stale_kek(h, a, *rv);
	return KMS_OK;
}

static kms_status wrap_args_check(hsm *h, const hsm_object_id *kek, uint8_t *out, size_t cap,
                                  size_t *len)
{
	KMS_ENSURE(h != NULL, KMS_INVALID_ARGUMENT, "hsm: no hsm");
	KMS_GUARD(hsm_id_check(kek));
	KMS_ENSURE(out != NULL && len != NULL, KMS_INVALID_ARGUMENT,
	           "hsm: wrapping without an output buffer");
	*len = 0;
	return KMS_OK;
}

/* Runs a wrap attempt; the message of a failure names the call and KEK. */
static kms_status wrap_run(hsm *h, hsm_step_fn step, wrap_attempt *a, const char *what)
{
	CK_RV rv;
	KMS_GUARD(hsm_run(h, NULL, step, a, &rv));
	if (rv == CKR_OK)
		return KMS_OK;
	kms_wipe(a->out, a->cap);
	a->len = 0;
	if (strcmp(a->call, "C_UnwrapKey") == 0)
		return hsm_unwrap_failure(h, what, a->failed_kek, rv);
	return KMS_FAIL(hsm_status_of(rv), "hsm: %s (%s, KEK %s) on token \"%s\" -> %s", a->call,
	                what, hsm_id_to_text(a->failed_kek ? a->failed_kek : a->kek).s,
	                h->token_label, hsm_rv_name(rv));
}

kms_status hsm_generate_wrapped(hsm *h, const hsm_object_id *kek, hsm_key_type type,
                                uint8_t *out, size_t cap, size_t *len)
{
	KMS_GUARD(wrap_args_check(h, kek, out, cap, len));
	KMS_ENSURE(type == HSM_KEY_TYPE_AES256 || type == HSM_KEY_TYPE_HMAC_SHA256,
	           KMS_INVALID_ARGUMENT, "hsm: hsm_generate_wrapped makes AES-256 and HMAC-SHA256 "
	           "keys, not %s (a key pair: hsm_generate_wrapped_pair)", hsm_key_type_name(type));
	wrap_attempt a = { .kek = kek, .type = type, .out = out, .cap = cap };
	char what[64];
	snprintf(what, sizeof what, "new %s key", hsm_key_type_name(type));
	KMS_GUARD(wrap_run(h, generate_step, &a, what));
	*len = a.len;
	return KMS_OK;
}

kms_status hsm_generate_wrapped_pair(hsm *h, const hsm_object_id *kek, hsm_key_type type,
                                     uint8_t *out, size_t cap, size_t *len,
                                     uint8_t public_key[HSM_EC_P256_PUBLIC_LEN])
{
	KMS_GUARD(wrap_args_check(h, kek, out, cap, len));
	KMS_ENSURE(public_key != NULL, KMS_INVALID_ARGUMENT, "hsm: no buffer for the public key");
	KMS_ENSURE(type == HSM_KEY_TYPE_EC_P256, KMS_INVALID_ARGUMENT,
	           "hsm: hsm_generate_wrapped_pair makes EC P-256 pairs, not %s",
	           hsm_key_type_name(type));
	wrap_attempt a = { .kek = kek, .type = type, .out = out, .cap = cap,
		           .public_key = public_key };
	kms_status st = wrap_run(h, generate_step, &a, "new EC P-256 key");
	if (st != KMS_OK) {
		memset(public_key, 0, HSM_EC_P256_PUBLIC_LEN);
		return st;
	}
	*len = a.len;
	return KMS_OK;
}

kms_status hsm_rewrap(hsm *h, const hsm_object_id *old_kek, const uint8_t *wrapped,
                      size_t wrapped_len, const hsm_object_id *new_kek, hsm_key_type type,
                      uint8_t *out, size_t cap, size_t *out_len)
{
	KMS_GUARD(wrap_args_check(h, new_kek, out, cap, out_len));
	KMS_GUARD(hsm_id_check(old_kek));
	KMS_ENSURE(wrapped != NULL && wrapped_len > 0 && wrapped_len <= HSM_WRAPPED_MAX,
	           KMS_INVALID_ARGUMENT, "hsm: wrapped key of %zu bytes (1..%d)", wrapped_len,
	           HSM_WRAPPED_MAX);
	wrap_attempt a = { .kek = new_kek, .old_kek = old_kek, .type = type, .in = wrapped,
		           .in_len = wrapped_len, .out = out, .cap = cap };
	char what[64];
	snprintf(what, sizeof what, "%s key (re-wrap)", hsm_key_type_name(type));
	KMS_GUARD(wrap_run(h, rewrap_step, &a, what));
	*out_len = a.len;
	return KMS_OK;
}
