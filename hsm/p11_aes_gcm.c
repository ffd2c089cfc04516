/*
 * p11_aes_gcm.c: AES-256-GCM in the HSM, single-part: one C_*Init and one
 * C_Encrypt/C_Decrypt per call, on the thread's own session. This is the
 * hot path: no lock but the handle cache's read lock.
 *
 * No path leaves an operation active in the session: a failed C_*Init
 * starts none; C_Encrypt/C_Decrypt end it on every outcome except
 * CKR_BUFFER_TOO_SMALL (impossible with the exact sizes passed here, but
 * then the session is closed and replaced).
 *
 * Decrypt output: SoftHSM 2.6 insists on room for the whole input, tag
 * included, before it will decrypt (and answers CKR_BUFFER_TOO_SMALL with
 * the operation left active otherwise). So the module decrypts into a
 * scratch buffer of sealed_len bytes, and only the plaintext is copied out;
 * the scratch is wiped. Modules that write only the plaintext are served
 * the same way.
 */
#include <string.h>

#include <kms/secmem.h>

#include "hsm/p11_internal.h"

#define GCM_IV_BITS (HSM_GCM_IV_LEN * 8)
#define GCM_TAG_BITS (HSM_GCM_TAG_LEN * 8)

/* Decrypt scratch on the stack up to this size (the service's 4 KiB limit
 * plus the tag); beyond, secure heap memory. */
#define GCM_STACK_SCRATCH (4096 + HSM_GCM_TAG_LEN)

/* Stands in for NULL input pointers of zero length: some modules refuse NULL. */
static const uint8_t empty_input[1];

typedef struct gcm_call {
	bool decrypt;
	const hsm_object_id *key; /* its id, or a cached key version's name */
	const uint8_t *iv;
	const uint8_t *aad;
	size_t aad_len;
	const uint8_t *in;
	size_t in_len;
	uint8_t *out;
	size_t out_len;
	CK_OBJECT_HANDLE handle; /* a cached key version's object; else looked up by id */
} gcm_call;

static kms_status gcm_check(hsm *h, const gcm_call *c)
{
	const char *what = c->decrypt ? "decrypt" : "encrypt";
	KMS_ENSURE(h != NULL, KMS_INVALID_ARGUMENT, "hsm: AES-GCM %s without an hsm", what);
	KMS_GUARD(hsm_id_check(c->key));
	KMS_ENSURE(c->iv != NULL, KMS_INVALID_ARGUMENT, "hsm: AES-GCM %s without an IV", what);
	KMS_ENSURE(c->aad != NULL || c->aad_len == 0, KMS_INVALID_ARGUMENT,
	           "hsm: AES-GCM %s: AAD is NULL but %zu bytes long", what, c->aad_len);
	KMS_ENSURE(c->in != NULL || c->in_len == 0, KMS_INVALID_ARGUMENT,
	           "hsm: AES-GCM %s: input is NULL but %zu bytes long", what, c->in_len);
	KMS_ENSURE(c->out != NULL || c->out_len == 0, KMS_INVALID_ARGUMENT,
	           "hsm: AES-GCM %s without an output buffer", what);
	/* CK_ULONG is as wide as size_t on every platform kms builds for; stay honest anyway. */
	KMS_ENSURE(c->in_len <= (CK_ULONG)-1 - HSM_GCM_TAG_LEN && c->aad_len <= (CK_ULONG)-1,
	           KMS_INVALID_ARGUMENT, "hsm: AES-GCM %s: input too long", what);
	if (!c->decrypt) {
		KMS_ENSURE(c->out_len == c->in_len + HSM_GCM_TAG_LEN, KMS_INVALID_ARGUMENT,
		           "hsm: AES-GCM encrypt of %zu bytes needs an output of exactly %zu bytes, "
		           "not %zu",
		           c->in_len, c->in_len + HSM_GCM_TAG_LEN, c->out_len);
	} else {
		KMS_ENSURE(c->in_len >= HSM_GCM_TAG_LEN, KMS_INVALID_CIPHERTEXT,
		           "hsm: AES-GCM decrypt: %zu bytes is shorter than the %d-byte tag", c->in_len,
		           HSM_GCM_TAG_LEN);
		KMS_ENSURE(c->out_len == c->in_len - HSM_GCM_TAG_LEN, KMS_INVALID_ARGUMENT,
		           "hsm: AES-GCM decrypt of %zu bytes needs an output of exactly %zu bytes, "
		           "not %zu",
		           c->in_len, c->in_len - HSM_GCM_TAG_LEN, c->out_len);
	}
	return KMS_OK;
}

/* The status and message for a failed decrypt call. */
static kms_status decrypt_failure(hsm *h, const gcm_call *c, const char *call, CK_RV rv)
{
	/*
	 * A tag mismatch: PKCS#11 says CKR_ENCRYPTED_DATA_INVALID, SoftHSM says
	 * CKR_GENERAL_ERROR. C_Decrypt runs only after C_DecryptInit accepted
	 * key and parameters, so a general error there is taken as a tag
	 * mismatch: failing closed as "not authentic" is the safe reading.
	 */
	/* A real device fault must not pass for a bad ciphertext (a client
	 * could throw good data away): after SoftHSM's CKR_GENERAL_ERROR, one
	 * C_GenerateRandom on the same thread's session tells them apart. */
	uint8_t probe[1];
	if (rv == CKR_GENERAL_ERROR && strcmp(call, "C_Decrypt") == 0 &&
	    hsm_random(h, probe, sizeof probe) != KMS_OK)
		return KMS_FAIL(KMS_HSM_UNAVAILABLE, "hsm: C_Decrypt key %s on token \"%s\" -> %s, "
		                "and the token then failed a random-number probe: HSM fault",
		                hsm_id_to_text(c->key).s, h->token_label, hsm_rv_name(rv));
	if (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
	    (rv == CKR_GENERAL_ERROR && strcmp(call, "C_Decrypt") == 0))
		return KMS_FAIL(KMS_INVALID_CIPHERTEXT,
		                "hsm: C_Decrypt key %s -> %s: not authentic (wrong key, IV or AAD, "
		                "or changed bytes)",
		                hsm_id_to_text(c->key).s, hsm_rv_name(rv));
	return KMS_FAIL(hsm_status_of(rv), "hsm: %s key %s on token \"%s\" -> %s", call,
	                hsm_id_to_text(c->key).s, h->token_label, hsm_rv_name(rv));
}

/* One attempt of a gcm_call, for hsm_run: everything lives in gcm_run's frame. */
typedef struct gcm_attempt {
	const gcm_call *c;
	CK_MECHANISM *mech;
	CK_BYTE_PTR in;
	uint8_t *out_buf; /* room for out_cap bytes: the module's output buffer */
	size_t out_cap;
	const char *call; /* the call *rv came from, for the message */
} gcm_attempt;

static kms_status gcm_step(hsm *h, CK_SESSION_HANDLE s, void *ctx, CK_RV *rv_out)
{
	gcm_attempt *a = ctx;
	const gcm_call *c = a->c;
	CK_OBJECT_HANDLE key;

	a->call = "C_FindObjects";
	CK_RV rv = CKR_OK;
	key = c->handle;
	if (key == CK_INVALID_HANDLE)
		rv = hsm_key_handle(h, s, c->key, HSM_KEY_AES, &key);
	if (rv == CKR_OK && key == CK_INVALID_HANDLE)
		return KMS_FAIL(KMS_NOT_FOUND, "hsm: no AES key with id %s on token \"%s\"",
		                hsm_id_to_text(c->key).s, h->token_label);
	if (rv == CKR_OK) {
		a->call = c->decrypt ? "C_DecryptInit" : "C_EncryptInit";
		rv = c->decrypt ? h->p11->C_DecryptInit(s, a->mech, key)
		                : h->p11->C_EncryptInit(s, a->mech, key);
	}
	if (rv == CKR_OK) {
		CK_ULONG out_len = a->out_cap;
		a->call = c->decrypt ? "C_Decrypt" : "C_Encrypt";
		rv = c->decrypt ? h->p11->C_Decrypt(s, a->in, c->in_len, a->out_buf, &out_len)
		                : h->p11->C_Encrypt(s, a->in, c->in_len, a->out_buf, &out_len);
		/* Left active, the operation would fail every later call on this
		 * session; hsm_recover does not retry this rv, so the attempt ends. */
		if (rv == CKR_BUFFER_TOO_SMALL)
			hsm_session_drop(h, true);
		else if (rv == CKR_OK && out_len != c->out_len)
			return KMS_FAIL(KMS_INTERNAL, "hsm: %s key %s wrote %lu bytes, not %zu", a->call,
			                hsm_id_to_text(c->key).s, out_len, c->out_len);
	}
	*rv_out = rv;
	return KMS_OK;
}

static kms_status gcm_run(hsm *h, const gcm_call *c, uint8_t *out_buf, size_t out_cap,
                          CK_RV *rv_out)
{
	uint8_t iv[HSM_GCM_IV_LEN];
	memcpy(iv, c->iv, sizeof iv);
	CK_GCM_PARAMS params = {
		.pIv = iv,
		.ulIvLen = HSM_GCM_IV_LEN,
		.ulIvBits = GCM_IV_BITS, /* SoftHSM 2.6 reads the bits, others the bytes */
		.pAAD = hsm_unconst(c->aad_len ? c->aad : empty_input),
		.ulAADLen = c->aad_len,
		.ulTagBits = GCM_TAG_BITS,
	};
	CK_MECHANISM mech = { CKM_AES_GCM, &params, sizeof params };
	gcm_attempt a = {
		.c = c,
		.mech = &mech,
		.in = hsm_unconst(c->in_len ? c->in : empty_input),
		.out_buf = out_buf,
		.out_cap = out_cap,
	};
	CK_RV rv;

	/* The key's id goes along so a stale cached handle for it is dropped and
	 * looked up again (a key cache handle is the key cache's to renew: no
	 * id). Only session, login and handle trouble is retried (hsm_recover's
	 * list), never a bad tag. */
	*rv_out = CKR_GENERAL_ERROR;
	KMS_GUARD(hsm_run(h, c->handle == CK_INVALID_HANDLE ? c->key : NULL, gcm_step, &a, &rv));
	*rv_out = rv;
	if (rv == CKR_OK)
		return KMS_OK;
	if (c->decrypt)
		return decrypt_failure(h, c, a.call, rv);
	return KMS_FAIL(hsm_status_of(rv), "hsm: %s key %s on token \"%s\" -> %s", a.call,
	                hsm_id_to_text(c->key).s, h->token_label, hsm_rv_name(rv));
}

kms_status hsm_aes_gcm_encrypt(hsm *h, const hsm_object_id *key,
                               const uint8_t iv[HSM_GCM_IV_LEN],
                               const uint8_t *aad, size_t aad_len,
                               const uint8_t *plaintext, size_t plaintext_len,
                               uint8_t *out, size_t out_cap)
{
	CK_RV rv;
	return hsm_gcm_with_handle(h, false, key, CK_INVALID_HANDLE, iv, aad, aad_len, plaintext,
	                           plaintext_len, out, out_cap, &rv);
}

kms_status hsm_aes_gcm_decrypt(hsm *h, const hsm_object_id *key,
                               const uint8_t iv[HSM_GCM_IV_LEN],
                               const uint8_t *aad, size_t aad_len,
                               const uint8_t *sealed, size_t sealed_len,
                               uint8_t *out, size_t out_cap)
{
	CK_RV rv;
	return hsm_gcm_with_handle(h, true, key, CK_INVALID_HANDLE, iv, aad, aad_len, sealed,
	                           sealed_len, out, out_cap, &rv);
}

static kms_status gcm_encrypt(hsm *h, const gcm_call *c, CK_RV *rv)
{
	kms_status st = gcm_check(h, c);
	if (st == KMS_OK)
		st = gcm_run(h, c, c->out, c->out_len, rv);
	if (st != KMS_OK && c->out)
		kms_wipe(c->out, c->out_len);
	return st;
}

static kms_status gcm_decrypt(hsm *h, const gcm_call *c, CK_RV *rv)
{
	size_t sealed_len = c->in_len, out_cap = c->out_len;
	uint8_t *out = c->out;
	uint8_t stack_scratch[GCM_STACK_SCRATCH];
	uint8_t *scratch = stack_scratch;
	kms_status st = gcm_check(h, c);
	if (st != KMS_OK)
		goto out;
	if (sealed_len > sizeof stack_scratch) {
		scratch = kms_secure_alloc(sealed_len);
		if (!scratch) {
			st = KMS_FAIL(KMS_INTERNAL, "hsm: out of memory for a %zu-byte decrypt", sealed_len);
			goto out;
		}
	}
	st = gcm_run(h, c, scratch, sealed_len, rv);
	if (st == KMS_OK && out_cap)
		memcpy(out, scratch, out_cap);
	if (scratch != stack_scratch)
		kms_secure_free(scratch);
	else
		kms_wipe(stack_scratch, sealed_len);
out:
	/* Nothing is released unless it verified. */
	if (st != KMS_OK && out)
		kms_wipe(out, out_cap);
	return st;
}

kms_status hsm_gcm_with_handle(hsm *h, bool decrypt, const hsm_object_id *name,
                               CK_OBJECT_HANDLE key, const uint8_t iv[HSM_GCM_IV_LEN],
                               const uint8_t *aad, size_t aad_len, const uint8_t *in,
                               size_t in_len, uint8_t *out, size_t out_cap, CK_RV *rv)
{
	gcm_call c = { decrypt, name, iv, aad, aad_len, in, in_len, out, out_cap, key };
	*rv = CKR_GENERAL_ERROR;
	return decrypt ? gcm_decrypt(h, &c, rv) : gcm_encrypt(h, &c, rv);
}
