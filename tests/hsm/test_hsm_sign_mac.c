/* Signing and MAC keys on a real SoftHSM token, checked against outside
 * references: HMAC-SHA256 of wrapped key versions against RFC 4231's
 * published values, ECDSA P-256 signatures of wrapped versions and Ed25519
 * signatures of token pairs (kms key versions with 20-byte ids) verified
 * with OpenSSL. */
#include <stdio.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include "tests/hsm/wrap_store.h"

static hsm *h;
static test_raw raw;
static test_store store;
static hsm_object_id kek;

static int setup(void **state)
{
	h = test_open();
	memset(&store, 0, sizeof store);
	kek = test_id("kms-kek-00000001");
	bool exists = false;
	assert_int_equal(hsm_kek_exists(h, &kek, &exists), KMS_OK);
	if (!exists)
		assert_int_equal(hsm_kek_create(h, &kek, "kek"), KMS_OK);
	test_raw_open(&raw);
	return 0;
}

static int teardown(void **state)
{
	test_raw_close(&raw);
	hsm_close(h);
	return 0;
}

/* Keeps wrapped bytes in the test store as version `name` under kek_id. */
static stored_version *store_put(const char *name, const hsm_object_id *kek_id,
                                 hsm_key_type type, const uint8_t *wrapped, size_t len)
{
	assert_true(store.count < STORE_MAX);
	assert_true(len <= HSM_WRAPPED_MAX);
	stored_version *row = &store.rows[store.count++];
	memset(row, 0, sizeof *row);
	row->name = test_id(name);
	row->kek = *kek_id;
	row->type = type;
	memcpy(row->wrapped, wrapped, len);
	row->len = len;
	return row;
}

/* --- HMAC-SHA256: RFC 4231 --- */

/*
 * TEST ONLY: an HMAC key version with a known value. kms never imports key
 * bytes; a known-answer test needs them, so this makes, behind the layer's
 * back, an extractable generic secret with the given value as a session
 * object, wraps it in the HSM under the KEK as kms wraps the versions it
 * generates (CKM_AES_KEY_WRAP_PAD) and destroys it.
 */
static void store_hsm_wrapped_mac_key(const char *name, const uint8_t *key, size_t key_len)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_GENERIC_SECRET;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof cls },
		{ CKA_KEY_TYPE, &type, sizeof type },
		{ CKA_TOKEN, &no, sizeof no },
		{ CKA_PRIVATE, &yes, sizeof yes },
		{ CKA_SENSITIVE, &yes, sizeof yes },
		{ CKA_EXTRACTABLE, &yes, sizeof yes },
		{ CKA_SIGN, &no, sizeof no },
		{ CKA_VERIFY, &no, sizeof no },
		{ CKA_VALUE, (void *)(uintptr_t)key, key_len },
	};
	CK_OBJECT_HANDLE secret;
	assert_int_equal(raw.p11->C_CreateObject(raw.session, tmpl, sizeof tmpl / sizeof tmpl[0],
	                                         &secret),
	                 CKR_OK);
	CK_OBJECT_HANDLE wrapping = test_raw_find(&raw, &kek, CKO_SECRET_KEY);
	CK_MECHANISM mech = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	uint8_t wrapped[HSM_WRAPPED_MAX];
	CK_ULONG len = sizeof wrapped;
	CK_RV rv = raw.p11->C_WrapKey(raw.session, &mech, wrapping, secret, wrapped, &len);
	assert_int_equal(raw.p11->C_DestroyObject(raw.session, secret), CKR_OK);
	assert_int_equal(rv, CKR_OK);
	/* RFC 5649: the key padded to 8 bytes, plus the 8-byte integrity block. */
	assert_int_equal(len, (key_len + 7) / 8 * 8 + 8);
	store_put(name, &kek, HSM_KEY_TYPE_HMAC_SHA256, wrapped, len);
}

/* TEST ONLY: a KEK whose value the test knows (a token object made by hand
 * with CKA_UNWRAP), so RFC 5649 can be applied outside the HSM. */
static const uint8_t known_kek_value[32] = { 0x4b, 0x45, 0x4b, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
	                                     12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
	                                     24, 25, 26, 27, 28, 29 };

static hsm_object_id known_kek(void)
{
	hsm_object_id id = test_id("test-kek-known-value");
	CK_ATTRIBUTE find[] = { { CKA_ID, id.bytes, id.len } };
	CK_OBJECT_HANDLE found;
	CK_ULONG count = 0;
	assert_int_equal(raw.p11->C_FindObjectsInit(raw.session, find, 1), CKR_OK);
	assert_int_equal(raw.p11->C_FindObjects(raw.session, &found, 1, &count), CKR_OK);
	assert_int_equal(raw.p11->C_FindObjectsFinal(raw.session), CKR_OK);
	if (count == 1)
		return id;
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_AES;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof cls },
		{ CKA_KEY_TYPE, &type, sizeof type },
		{ CKA_TOKEN, &yes, sizeof yes },
		{ CKA_PRIVATE, &yes, sizeof yes },
		{ CKA_SENSITIVE, &yes, sizeof yes },
		{ CKA_EXTRACTABLE, &no, sizeof no },
		{ CKA_WRAP, &no, sizeof no },
		{ CKA_UNWRAP, &yes, sizeof yes },
		{ CKA_ENCRYPT, &no, sizeof no },
		{ CKA_DECRYPT, &no, sizeof no },
		{ CKA_VALUE, (void *)(uintptr_t)known_kek_value, sizeof known_kek_value },
		{ CKA_ID, id.bytes, id.len },
	};
	CK_OBJECT_HANDLE object;
	assert_int_equal(raw.p11->C_CreateObject(raw.session, tmpl, sizeof tmpl / sizeof tmpl[0],
	                                         &object),
	                 CKR_OK);
	return id;
}

/* TEST ONLY: an HMAC key version with a known value wrapped by OpenSSL's
 * RFC 5649 (EVP_aes_256_wrap_pad) under the known KEK. */
static void store_openssl_wrapped_mac_key(const char *name, const uint8_t *key, size_t key_len)
{
	hsm_object_id kek_id = known_kek();
	uint8_t wrapped[HSM_WRAPPED_MAX];
	int len = 0, fin = 0;
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	assert_non_null(ctx);
	EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	assert_int_equal(EVP_EncryptInit_ex(ctx, EVP_aes_256_wrap_pad(), NULL, known_kek_value,
	                                    NULL),
	                 1);
	assert_int_equal(EVP_EncryptUpdate(ctx, wrapped, &len, key, (int)key_len), 1);
	assert_int_equal(EVP_EncryptFinal_ex(ctx, wrapped + len, &fin), 1);
	EVP_CIPHER_CTX_free(ctx);
	assert_int_equal(len + fin, (int)((key_len + 7) / 8 * 8 + 8));
	store_put(name, &kek_id, HSM_KEY_TYPE_HMAC_SHA256, wrapped, (size_t)(len + fin));
}

static kms_status mac_of(const char *name, const uint8_t *msg, size_t msg_len,
                         uint8_t mac[HSM_HMAC_SHA256_LEN])
{
	hsm_object_id id = test_id(name);
	return hsm_wrapped_hmac_sha256(h, &id, store_loader, &store, msg, msg_len, mac);
}

/* OpenSSL's HMAC-SHA256, for the module's documented departures below. */
static void openssl_hmac(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t msg_len,
                         uint8_t mac[HSM_HMAC_SHA256_LEN])
{
	size_t len = 0;
	assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, key_len, msg, msg_len, mac,
	                          HSM_HMAC_SHA256_LEN, &len));
	assert_int_equal(len, HSM_HMAC_SHA256_LEN);
}

static void hex_to_bytes(const char *hex, uint8_t *out, size_t len)
{
	assert_int_equal(strlen(hex), 2 * len);
	for (size_t i = 0; i < len; i++) {
		unsigned byte = 0;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &byte), 1);
		out[i] = (uint8_t)byte;
	}
}

/* RFC 4231's test cases 1, 2, 3, 4, 6 and 7 (5 is a truncated MAC). */
typedef struct rfc4231_case {
	int number;
	uint8_t key[131];
	size_t key_len;
	uint8_t data[160];
	size_t data_len;
	uint8_t mac[HSM_HMAC_SHA256_LEN]; /* HMAC-SHA-256 */
} rfc4231_case;

static void case_set(rfc4231_case *c, int number, size_t key_len, const void *data,
                     size_t data_len, const char *mac_hex)
{
	c->number = number;
	c->key_len = key_len;
	assert_true(data_len <= sizeof c->data);
	memcpy(c->data, data, data_len);
	c->data_len = data_len;
	hex_to_bytes(mac_hex, c->mac, sizeof c->mac);
}

static size_t rfc4231_cases(rfc4231_case *c)
{
	static const char large_key_data[] = "Test Using Larger Than Block-Size Key - Hash Key First";
	static const char large_both_data[] =
		"This is a test using a larger than block-size key and a larger than block-size "
		"data. The key needs to be hashed before being used by the HMAC algorithm.";
	uint8_t dd[50], cd[50];
	memset(dd, 0xdd, sizeof dd);
	memset(cd, 0xcd, sizeof cd);

	case_set(&c[0], 1, 20, "Hi There", 8,
	         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
	memset(c[0].key, 0x0b, 20);
	case_set(&c[1], 2, 4, "what do ya want for nothing?", 28,
	         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	memcpy(c[1].key, "Jefe", 4);
	case_set(&c[2], 3, 20, dd, sizeof dd,
	         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
	memset(c[2].key, 0xaa, 20);
	case_set(&c[3], 4, 25, cd, sizeof cd,
	         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
	for (int i = 0; i < 25; i++)
		c[3].key[i] = (uint8_t)(i + 1);
	case_set(&c[4], 6, 131, large_key_data, sizeof large_key_data - 1,
	         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
	memset(c[4].key, 0xaa, 131);
	case_set(&c[5], 7, 131, large_both_data, sizeof large_both_data - 1,
	         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
	memset(c[5].key, 0xaa, 131);
	return 6;
}

/* The module's key-length range for CKM_SHA256_HMAC, in bytes. */
static CK_MECHANISM_INFO hmac_mechanism(void)
{
	CK_MECHANISM_INFO info;
	assert_int_equal(raw.p11->C_GetMechanismInfo(raw.slot, CKM_SHA256_HMAC, &info), CKR_OK);
	return info;
}

/* A failure the module's key-length range explains: KMS_FAILED_PRECONDITION,
 * naming the rv, and no MAC handed out. */
static void assert_key_size_refused(kms_status st, const char *name,
                                    const uint8_t mac[HSM_HMAC_SHA256_LEN])
{
	if (st == KMS_OK)
		fail_msg("%s: a MAC with a key the module's range excludes", name);
	assert_int_equal(st, KMS_FAILED_PRECONDITION);
	test_assert_message("C_SignInit", "HMAC-SHA256", "CKR_KEY_SIZE_RANGE", name, NULL);
	for (size_t b = 0; b < HSM_HMAC_SHA256_LEN; b++)
		assert_int_equal(mac[b], 0);
}

/*
 * An HMAC key the same as c's (RFC 2104): a key shorter than the 64-byte
 * block is zero-padded to it, and a longer one replaced by its SHA-256. So
 * c's key zero-padded to 32 bytes, or its digest, must give c's MAC.
 */
static void equivalent_32_byte_key(const rfc4231_case *c, uint8_t out[32])
{
	memset(out, 0, 32);
	if (c->key_len <= 32) {
		memcpy(out, c->key, c->key_len);
		return;
	}
	assert_true(c->key_len > 64);
	unsigned int len = 0;
	assert_int_equal(EVP_Digest(c->key, c->key_len, out, &len, EVP_sha256(), NULL), 1);
}

/*
 * The test-only path the brief gives kms's own wrap: each key wrapped in the
 * HSM under kms's KEK, used through hsm_wrapped_hmac_sha256.
 *
 * Two things of SoftHSMv2 2.6 show here. Its CKM_SHA256_HMAC takes keys
 * of 32 to 512 bytes (C_GetMechanismInfo), so the 4- and 20-byte keys are
 * refused (CKR_KEY_SIZE_RANGE). And its C_WrapKey with
 * CKM_AES_KEY_WRAP_PAD zero-pads the key to a multiple of 8 bytes before
 * RFC 5649 (whose length indicator then says the padded length), so a key
 * of another length comes back longer: harmless for HMAC up to 64 bytes
 * (RFC 2104 pads with zeros anyway), a different key above (131 bytes
 * come back as 136). A module that does neither gives the RFC's MAC; this
 * one must give exactly what its documented departures predict, computed
 * with OpenSSL. Either way the equivalent 32-byte key must give the RFC's
 * MAC byte for byte.
 */
static void rfc4231_hsm_wrapped(void **state)
{
	rfc4231_case cases[6];
	size_t n = rfc4231_cases(cases);
	CK_MECHANISM_INFO info = hmac_mechanism();
	char name[32];
	for (size_t i = 0; i < n; i++) {
		const rfc4231_case *c = &cases[i];
		uint8_t got[HSM_HMAC_SHA256_LEN];

		snprintf(name, sizeof name, "rfc4231-%d", c->number);
		store_hsm_wrapped_mac_key(name, c->key, c->key_len);
		kms_status st = mac_of(name, c->data, c->data_len, got);
		if (st != KMS_OK || memcmp(got, c->mac, sizeof got) != 0) {
			uint8_t padded[136] = { 0 }, predicted[HSM_HMAC_SHA256_LEN];
			size_t padded_len = (c->key_len + 7) / 8 * 8;
			memcpy(padded, c->key, c->key_len);
			if (padded_len < info.ulMinKeySize) {
				assert_key_size_refused(st, name, got);
			} else {
				if (st != KMS_OK)
					fail_msg("RFC 4231 case %d: %s", c->number, kms_error_message());
				openssl_hmac(padded, padded_len, c->data, c->data_len, predicted);
				assert_memory_equal(got, predicted, sizeof got);
			}
		}

		uint8_t same[32];
		equivalent_32_byte_key(c, same);
		snprintf(name, sizeof name, "rfc4231-%d-32", c->number);
		store_hsm_wrapped_mac_key(name, same, sizeof same);
		if (mac_of(name, c->data, c->data_len, got) != KMS_OK)
			fail_msg("RFC 4231 case %d, 32-byte key: %s", c->number, kms_error_message());
		assert_memory_equal(got, c->mac, sizeof got);
	}

	/* Again: a cache hit, the same MAC; one changed byte of the message,
	 * another MAC. */
	const rfc4231_case *c = &cases[4];
	uint8_t got[HSM_HMAC_SHA256_LEN], data[sizeof c->data];
	hsm_keycache_stats before, after;
	hsm_keycache_stats_get(h, &before);
	assert_int_equal(mac_of("rfc4231-6-32", c->data, c->data_len, got), KMS_OK);
	assert_memory_equal(got, c->mac, sizeof got);
	memcpy(data, c->data, c->data_len);
	data[10] ^= 0x01;
	assert_int_equal(mac_of("rfc4231-6-32", data, c->data_len, got), KMS_OK);
	assert_memory_not_equal(got, c->mac, sizeof got);
	hsm_keycache_stats_get(h, &after);
	assert_int_equal(after.hits, before.hits + 2);
	assert_int_equal(after.unwraps, before.unwraps);

	/* The test's extractable objects are gone: only the cache's are left. */
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE extractable[] = { { CKA_EXTRACTABLE, &yes, sizeof yes } };
	CK_OBJECT_HANDLE found[4];
	CK_ULONG count = 0;
	assert_int_equal(raw.p11->C_FindObjectsInit(raw.session, extractable, 1), CKR_OK);
	assert_int_equal(raw.p11->C_FindObjects(raw.session, found, 4, &count), CKR_OK);
	assert_int_equal(raw.p11->C_FindObjectsFinal(raw.session), CKR_OK);
	assert_int_equal(count, 0);
}

/*
 * The exact RFC keys, of every length, wrapped by a standard RFC 5649
 * (OpenSSL's) under a KEK of known value: the layer unwraps them as they
 * are, and the MAC is the RFC's wherever the module's key-length range
 * takes the key (here the 131-byte keys of cases 6 and 7), and a
 * FAILED_PRECONDITION naming CKR_KEY_SIZE_RANGE where it does not.
 */
static void rfc4231_standard_wrap(void **state)
{
	rfc4231_case cases[6];
	size_t n = rfc4231_cases(cases);
	CK_MECHANISM_INFO info = hmac_mechanism();
	size_t checked = 0;
	char name[32];
	for (size_t i = 0; i < n; i++) {
		const rfc4231_case *c = &cases[i];
		uint8_t got[HSM_HMAC_SHA256_LEN];
		snprintf(name, sizeof name, "rfc4231-kwp-%d", c->number);
		store_openssl_wrapped_mac_key(name, c->key, c->key_len);
		kms_status st = mac_of(name, c->data, c->data_len, got);
		if (c->key_len < info.ulMinKeySize || c->key_len > info.ulMaxKeySize) {
			assert_key_size_refused(st, name, got);
			continue;
		}
		if (st != KMS_OK)
			fail_msg("RFC 4231 case %d: %s", c->number, kms_error_message());
		assert_memory_equal(got, c->mac, sizeof got);
		checked++;
	}
	assert_true(checked >= 2); /* cases 6 and 7 on any module that does HMAC at all */
}

/* --- ECDSA P-256 --- */

static void sha256(const void *msg, size_t len, uint8_t digest[HSM_SHA256_DIGEST_LEN])
{
	unsigned int out_len = 0;
	assert_int_equal(EVP_Digest(msg, len, digest, &out_len, EVP_sha256(), NULL), 1);
	assert_int_equal(out_len, HSM_SHA256_DIGEST_LEN);
}

/* OpenSSL's verdict on a raw r || s signature of digest by the key whose
 * uncompressed point is given. */
static bool p256_verifies(const uint8_t point[HSM_EC_P256_PUBLIC_LEN],
                          const uint8_t digest[HSM_SHA256_DIGEST_LEN],
                          const uint8_t sig[HSM_ECDSA_P256_SIG_LEN])
{
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0),
		OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)(uintptr_t)point,
		                                  HSM_EC_P256_PUBLIC_LEN),
		OSSL_PARAM_construct_end(),
	};
	EVP_PKEY_CTX *from = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *pkey = NULL;
	assert_non_null(from);
	assert_int_equal(EVP_PKEY_fromdata_init(from), 1);
	assert_int_equal(EVP_PKEY_fromdata(from, &pkey, EVP_PKEY_PUBLIC_KEY, params), 1);
	EVP_PKEY_CTX_free(from);

	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
	assert_true(es && r && s);
	assert_int_equal(ECDSA_SIG_set0(es, r, s), 1);
	unsigned char *der = NULL;
	int der_len = i2d_ECDSA_SIG(es, &der);
	assert_true(der_len > 0);

	EVP_PKEY_CTX *verify = EVP_PKEY_CTX_new(pkey, NULL);
	assert_non_null(verify);
	assert_int_equal(EVP_PKEY_verify_init(verify), 1);
	int ok = EVP_PKEY_verify(verify, der, (size_t)der_len, digest, HSM_SHA256_DIGEST_LEN);
	EVP_PKEY_CTX_free(verify);
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	EVP_PKEY_free(pkey);
	return ok == 1;
}

/* A new wrapped P-256 version `name` in the store; its point to point. */
static void store_p256(const char *name, uint8_t point[HSM_EC_P256_PUBLIC_LEN])
{
	uint8_t wrapped[HSM_WRAPPED_MAX];
	size_t len = 0;
	kms_status st = hsm_generate_wrapped_pair(h, &kek, HSM_KEY_TYPE_EC_P256, wrapped,
	                                          sizeof wrapped, &len, point);
	if (st != KMS_OK)
		fail_msg("P-256 %s: %s", name, kms_error_message());
	store_put(name, &kek, HSM_KEY_TYPE_EC_P256, wrapped, len);
}

static kms_status ecdsa_with(const char *name, const uint8_t digest[HSM_SHA256_DIGEST_LEN],
                             uint8_t sig[HSM_ECDSA_P256_SIG_LEN])
{
	hsm_object_id id = test_id(name);
	return hsm_wrapped_ecdsa_p256_sign(h, &id, store_loader, &store, digest, sig);
}

static void ecdsa_p256_signs(void **state)
{
	static const char msg[] = "kms: a message to sign with a wrapped P-256 key version";
	uint8_t point[HSM_EC_P256_PUBLIC_LEN], digest[HSM_SHA256_DIGEST_LEN];
	uint8_t sig[HSM_ECDSA_P256_SIG_LEN], again[HSM_ECDSA_P256_SIG_LEN];
	store_p256("p256-1", point);
	sha256(msg, sizeof msg - 1, digest);

	kms_status st = ecdsa_with("p256-1", digest, sig);
	if (st != KMS_OK)
		fail_msg("sign: %s", kms_error_message());
	assert_true(p256_verifies(point, digest, sig));
	/* A flipped bit of the digest, or of the signature: no. */
	uint8_t flipped[HSM_SHA256_DIGEST_LEN];
	memcpy(flipped, digest, sizeof flipped);
	flipped[17] ^= 0x08;
	assert_false(p256_verifies(point, flipped, sig));
	uint8_t bad[HSM_ECDSA_P256_SIG_LEN];
	memcpy(bad, sig, sizeof bad);
	bad[40] ^= 0x01;
	assert_false(p256_verifies(point, digest, bad));

	/* Randomized: a second signature differs and verifies too (a cache hit). */
	hsm_keycache_stats before, after;
	hsm_keycache_stats_get(h, &before);
	assert_int_equal(ecdsa_with("p256-1", digest, again), KMS_OK);
	hsm_keycache_stats_get(h, &after);
	assert_int_equal(after.hits, before.hits + 1);
	assert_memory_not_equal(sig, again, sizeof sig);
	assert_true(p256_verifies(point, digest, again));

	/* Another version is another key. */
	uint8_t other[HSM_EC_P256_PUBLIC_LEN];
	store_p256("p256-2", other);
	assert_memory_not_equal(point, other, sizeof point);
	assert_int_equal(ecdsa_with("p256-2", digest, sig), KMS_OK);
	assert_true(p256_verifies(other, digest, sig));
	assert_false(p256_verifies(point, digest, sig));
}

static void ecdsa_cached_key_attributes(void **state)
{
	uint8_t point[HSM_EC_P256_PUBLIC_LEN];
	store_p256("p256-attrs", point);
	hsm_object_id id = test_id("p256-attrs");
	hsm_keycache_entry *e;
	assert_int_equal(hsm_keycache_acquire(h, &id, store_loader, &store, &e), KMS_OK);
	CK_OBJECT_HANDLE obj = hsm_keycache_entry_handle(e);
	assert_int_equal(hsm_keycache_entry_type(e), HSM_KEY_TYPE_EC_P256);
	CK_OBJECT_CLASS cls = 0;
	CK_KEY_TYPE type = 0;
	assert_int_equal(raw_read(&raw, obj, CKA_CLASS, &cls, sizeof cls), CKR_OK);
	assert_int_equal(raw_read(&raw, obj, CKA_KEY_TYPE, &type, sizeof type), CKR_OK);
	assert_int_equal(cls, CKO_PRIVATE_KEY);
	assert_int_equal(type, CKK_EC);
	/* Signing only; sensitive, not extractable, not on the token. */
	assert_true(test_raw_bool(&raw, obj, CKA_SIGN));
	assert_false(test_raw_bool(&raw, obj, CKA_DECRYPT));
	assert_false(test_raw_bool(&raw, obj, CKA_SIGN_RECOVER));
	assert_false(test_raw_bool(&raw, obj, CKA_UNWRAP));
	assert_false(test_raw_bool(&raw, obj, CKA_DERIVE));
	assert_true(test_raw_bool(&raw, obj, CKA_SENSITIVE));
	assert_false(test_raw_bool(&raw, obj, CKA_EXTRACTABLE));
	assert_false(test_raw_bool(&raw, obj, CKA_TOKEN));
	assert_true(test_raw_bool(&raw, obj, CKA_PRIVATE));
	uint8_t value[128];
	assert_int_equal(raw_read(&raw, obj, CKA_VALUE, value, sizeof value),
	                 CKR_ATTRIBUTE_SENSITIVE);
	/* Not wrappable out again by anyone. */
	CK_OBJECT_HANDLE wrapping = test_raw_find(&raw, &kek, CKO_SECRET_KEY);
	CK_MECHANISM mech = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	uint8_t out[HSM_WRAPPED_MAX];
	CK_ULONG out_len = sizeof out;
	assert_int_equal(raw.p11->C_WrapKey(raw.session, &mech, wrapping, obj, out, &out_len),
	                 CKR_KEY_UNEXTRACTABLE);
	hsm_keycache_release(h, e);
}

static void ecdsa_wrong_type_and_arguments(void **state)
{
	uint8_t digest[HSM_SHA256_DIGEST_LEN] = { 1 }, sig[HSM_ECDSA_P256_SIG_LEN];
	uint8_t mac[HSM_HMAC_SHA256_LEN];
	store_generate(h, &store, "mac-version", &kek, HSM_KEY_TYPE_HMAC_SHA256);
	memset(sig, 0x77, sizeof sig);
	assert_int_equal(ecdsa_with("mac-version", digest, sig), KMS_FAILED_PRECONDITION);
	test_assert_message("mac-version", "HMAC-SHA256", "not EC P-256", NULL);
	for (size_t b = 0; b < sizeof sig; b++)
		assert_int_equal(sig[b], 0);
	store_generate(h, &store, "aes-version", &kek, HSM_KEY_TYPE_AES256);
	assert_int_equal(ecdsa_with("aes-version", digest, sig), KMS_FAILED_PRECONDITION);
	test_assert_message("aes-version", "AES-256", "not EC P-256", NULL);

	/* And the other way round: a P-256 version makes no MAC. */
	uint8_t point[HSM_EC_P256_PUBLIC_LEN];
	store_p256("p256-not-mac", point);
	assert_int_equal(mac_of("p256-not-mac", (const uint8_t *)"m", 1, mac),
	                 KMS_FAILED_PRECONDITION);
	test_assert_message("p256-not-mac", "EC P-256", "not HMAC-SHA256", NULL);

	hsm_object_id id = test_id("p256-not-mac");
	assert_int_equal(hsm_wrapped_ecdsa_p256_sign(h, &id, store_loader, &store, NULL, sig),
	                 KMS_INVALID_ARGUMENT);
	assert_int_equal(hsm_wrapped_ecdsa_p256_sign(h, &id, store_loader, &store, digest, NULL),
	                 KMS_INVALID_ARGUMENT);
	hsm_object_id missing = test_id("p256-missing");
	assert_int_equal(hsm_wrapped_ecdsa_p256_sign(h, &missing, store_loader, &store, digest,
	                                             sig),
	                 KMS_NOT_FOUND);
	test_assert_message("test store: no version p256-missing", NULL);
}

/* --- Ed25519 token pairs as key versions --- */

static bool ed25519_verifies(const uint8_t public_key[HSM_ED25519_PUBLIC_LEN],
                             const uint8_t *msg, size_t msg_len,
                             const uint8_t sig[HSM_ED25519_SIG_LEN])
{
	EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, public_key,
	                                             HSM_ED25519_PUBLIC_LEN);
	assert_non_null(pkey);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	assert_non_null(md);
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, NULL, NULL, pkey), 1);
	int ok = EVP_DigestVerify(md, sig, HSM_ED25519_SIG_LEN, msg, msg_len);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pkey);
	return ok == 1;
}

/* A 20-byte binary id, as kms names a key version's token objects. */
static hsm_object_id version_id(uint8_t last)
{
	hsm_object_id id = { .len = 20 };
	for (size_t i = 0; i < id.len; i++)
		id.bytes[i] = (uint8_t)(i * 53 + 0xf3); /* 0x00, 0xff and '"' among them */
	id.bytes[19] = last;
	return id;
}

typedef struct id_seen {
	const hsm_object_id *id;
	int private_halves, public_halves, other;
} id_seen;

static kms_status count_id(void *ctx, const hsm_object_id *id, hsm_object_kind kind)
{
	id_seen *seen = ctx;
	if (id->len != seen->id->len || memcmp(id->bytes, seen->id->bytes, id->len) != 0)
		return KMS_OK;
	if (kind == HSM_OBJECT_ED25519_PRIVATE)
		seen->private_halves++;
	else if (kind == HSM_OBJECT_ED25519_PUBLIC)
		seen->public_halves++;
	else
		seen->other++;
	return KMS_OK;
}

static id_seen listed(const hsm_object_id *id)
{
	id_seen seen = { .id = id };
	assert_int_equal(hsm_objects_list(h, count_id, &seen), KMS_OK);
	return seen;
}

/* Objects of any class with this CKA_ID, seen through the raw session. */
static CK_ULONG raw_count_id(const hsm_object_id *id)
{
	CK_ATTRIBUTE tmpl[] = { { CKA_ID, (void *)(uintptr_t)id->bytes, id->len } };
	CK_OBJECT_HANDLE found[4];
	CK_ULONG count = 0;
	assert_int_equal(raw.p11->C_FindObjectsInit(raw.session, tmpl, 1), CKR_OK);
	assert_int_equal(raw.p11->C_FindObjects(raw.session, found, 4, &count), CKR_OK);
	assert_int_equal(raw.p11->C_FindObjectsFinal(raw.session), CKR_OK);
	return count;
}

static void ed25519_version_pairs(void **state)
{
	static uint8_t msg[4096];
	for (size_t i = 0; i < sizeof msg; i++)
		msg[i] = (uint8_t)(i * 7 + (i >> 8));
	hsm_object_id id = version_id(0x01), sibling = version_id(0x02);
	uint8_t public_key[HSM_ED25519_PUBLIC_LEN], sibling_public[HSM_ED25519_PUBLIC_LEN];
	uint8_t sig[HSM_ED25519_SIG_LEN];

	assert_int_equal(hsm_ed25519_create(h, &id, "k-test:v1"), KMS_OK);
	assert_int_equal(hsm_ed25519_create(h, &sibling, "k-test:v2"), KMS_OK);
	assert_int_equal(hsm_ed25519_create(h, &id, "k-test:v1"), KMS_ALREADY_EXISTS);
	assert_int_equal(hsm_ed25519_public(h, &id, public_key), KMS_OK);
	assert_int_equal(hsm_ed25519_public(h, &sibling, sibling_public), KMS_OK);
	assert_memory_not_equal(public_key, sibling_public, sizeof public_key);

	kms_status st = hsm_ed25519_sign(h, &id, msg, sizeof msg, sig);
	if (st != KMS_OK)
		fail_msg("sign: %s", kms_error_message());
	assert_true(ed25519_verifies(public_key, msg, sizeof msg, sig));
	assert_false(ed25519_verifies(sibling_public, msg, sizeof msg, sig));
	msg[4095] ^= 0x80;
	assert_false(ed25519_verifies(public_key, msg, sizeof msg, sig));
	assert_int_equal(hsm_ed25519_sign(h, &sibling, msg, sizeof msg, sig), KMS_OK);
	assert_true(ed25519_verifies(sibling_public, msg, sizeof msg, sig));

	/* Listed: one private and one public half under the id, nothing else. */
	id_seen seen = listed(&id);
	assert_int_equal(seen.private_halves, 1);
	assert_int_equal(seen.public_halves, 1);
	assert_int_equal(seen.other, 0);
	assert_int_equal(raw_count_id(&id), 2);

	/* Destroyed: both halves, and nothing of the sibling. */
	assert_int_equal(hsm_object_destroy(h, &id), KMS_OK);
	assert_int_equal(raw_count_id(&id), 0);
	seen = listed(&id);
	assert_int_equal(seen.private_halves + seen.public_halves + seen.other, 0);
	bool exists = true;
	assert_int_equal(hsm_object_exists(h, &id, &exists), KMS_OK);
	assert_false(exists);
	assert_int_equal(hsm_ed25519_sign(h, &id, msg, sizeof msg, sig), KMS_NOT_FOUND);
	for (size_t b = 0; b < sizeof sig; b++)
		assert_int_equal(sig[b], 0);
	assert_int_equal(hsm_ed25519_public(h, &id, public_key), KMS_NOT_FOUND);
	assert_int_equal(hsm_object_destroy(h, &id), KMS_OK); /* idempotent */
	assert_int_equal(raw_count_id(&sibling), 2);
	assert_int_equal(hsm_ed25519_sign(h, &sibling, msg, sizeof msg, sig), KMS_OK);
	assert_true(ed25519_verifies(sibling_public, msg, sizeof msg, sig));

	/* The id made again is a new key: no handle of the old one is used. */
	uint8_t renewed[HSM_ED25519_PUBLIC_LEN];
	assert_int_equal(hsm_ed25519_create(h, &id, "k-test:v1"), KMS_OK);
	assert_int_equal(hsm_ed25519_public(h, &id, renewed), KMS_OK);
	assert_int_equal(hsm_ed25519_sign(h, &id, msg, sizeof msg, sig), KMS_OK);
	assert_true(ed25519_verifies(renewed, msg, sizeof msg, sig));
	assert_int_equal(hsm_object_destroy(h, &id), KMS_OK);
	assert_int_equal(hsm_object_destroy(h, &sibling), KMS_OK);
	assert_int_equal(raw_count_id(&sibling), 0);
}

/* Destroyed by another process (here: the raw session) while its handles
 * are cached: the layer says NOT_FOUND, not a stale-handle failure. */
static void ed25519_destroyed_behind_the_layer(void **state)
{
	hsm_object_id id = version_id(0x03);
	uint8_t public_key[HSM_ED25519_PUBLIC_LEN], sig[HSM_ED25519_SIG_LEN];
	assert_int_equal(hsm_ed25519_create(h, &id, "k-test:v3"), KMS_OK);
	assert_int_equal(hsm_ed25519_sign(h, &id, (const uint8_t *)"m", 1, sig), KMS_OK);
	assert_int_equal(hsm_ed25519_public(h, &id, public_key), KMS_OK);
	CK_OBJECT_HANDLE halves[2] = { test_raw_find(&raw, &id, CKO_PRIVATE_KEY),
		                       test_raw_find(&raw, &id, CKO_PUBLIC_KEY) };
	for (int i = 0; i < 2; i++)
		assert_int_equal(raw.p11->C_DestroyObject(raw.session, halves[i]), CKR_OK);
	assert_int_equal(hsm_ed25519_sign(h, &id, (const uint8_t *)"m", 1, sig), KMS_NOT_FOUND);
	assert_int_equal(hsm_ed25519_public(h, &id, public_key), KMS_NOT_FOUND);
	assert_int_equal(hsm_object_destroy(h, &id), KMS_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(rfc4231_hsm_wrapped, setup, teardown),
		cmocka_unit_test_setup_teardown(rfc4231_standard_wrap, setup, teardown),
		cmocka_unit_test_setup_teardown(ecdsa_p256_signs, setup, teardown),
		cmocka_unit_test_setup_teardown(ecdsa_cached_key_attributes, setup, teardown),
		cmocka_unit_test_setup_teardown(ecdsa_wrong_type_and_arguments, setup, teardown),
		cmocka_unit_test_setup_teardown(ed25519_version_pairs, setup, teardown),
		cmocka_unit_test_setup_teardown(ed25519_destroyed_behind_the_layer, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
