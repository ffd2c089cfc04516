/*
 * authz_test_util.c: the authz tests' key source, clock and signed
 * requests (authz_test_util.h).
 */
#include "tests/kms/authz/authz_test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kms/kms.pb-c.h>
#include <kms/secmem.h>

static void die(const char *what)
{
	fprintf(stderr, "authz_test_util: %s\n", what);
	abort();
}

test_key *test_keys_add(test_keys *t, const char *id, const char *principal, uint8_t seed)
{
	if (t->n >= TEST_KEYS_MAX)
		die("too many keys");
	test_key *k = &t->keys[t->n++];
	memset(k, 0, sizeof *k);
	k->id = id;
	k->principal = principal;
	for (int i = 0; i < KMS_SIGN_SECRET_LEN; i++)
		k->secret[i] = (uint8_t)(seed + i);
	return k;
}

static kms_status lookup(void *ctx, const char *id, authz_key *out)
{
	test_keys *t = ctx;
	if (t->fail)
		return KMS_HSM_UNAVAILABLE;
	for (size_t i = 0; i < t->n; i++) {
		const test_key *k = &t->keys[i];
		if (strcmp(k->id, id))
			continue;
		uint8_t *secret = kms_secure_alloc(KMS_SIGN_SECRET_LEN);
		if (!secret)
			die("kms_secure_alloc failed");
		memcpy(secret, k->secret, KMS_SIGN_SECRET_LEN);
		memset(out, 0, sizeof *out);
		snprintf(out->principal, sizeof out->principal, "%s", k->principal);
		out->revoked = k->revoked;
		out->principal_disabled = k->disabled;
		out->secret = secret;
		t->lookups++;
		return KMS_OK;
	}
	return KMS_NOT_FOUND;
}

static void release(void *ctx, authz_key *key)
{
	test_keys *t = ctx;
	kms_secure_free((void *)key->secret);
	key->secret = NULL;
	t->releases++;
}

authz_key_source test_keys_source(test_keys *t)
{
	authz_key_source s = { lookup, release, t };
	return s;
}

int64_t test_clock(void *now)
{
	return *(const int64_t *)now;
}

uint8_t *test_signed_request(const uint8_t secret[KMS_SIGN_SECRET_LEN], const char *access_key_id,
                             const char *request_id, int64_t timestamp, size_t *len,
                             size_t *op_at, size_t *op_len)
{
	static const uint8_t plaintext[] = "attack at dawn";
	Kms__Request req = KMS__REQUEST__INIT;
	Kms__Credential cred = KMS__CREDENTIAL__INIT;
	Kms__EncryptRequest enc = KMS__ENCRYPT_REQUEST__INIT;
	uint8_t mac[KMS_SIGN_MAC_LEN];

	enc.key_id = "alias/payments";
	enc.plaintext.data = (uint8_t *)plaintext;
	enc.plaintext.len = sizeof plaintext - 1;
	req.schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	req.request_id = (char *)request_id;
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &enc;
	if (kms_sign_request_mac(&req, secret, timestamp, mac) != KMS_OK)
		die("kms_sign_request_mac failed");
	cred.access_key_id = (char *)access_key_id;
	cred.timestamp_unix = timestamp;
	cred.mac.data = mac;
	cred.mac.len = sizeof mac;
	req.credential = &cred;

	size_t n = kms__request__get_packed_size(&req);
	uint8_t *buf = malloc(n);
	if (!buf || kms__request__pack(&req, buf) != n)
		die("packing failed");
	/* The op is packed last (field 10), as tag 0x52, its length, its bytes. */
	size_t enc_len = kms__encrypt_request__get_packed_size(&enc);
	if (enc_len >= 128 || enc_len + 2 > n || buf[n - enc_len - 2] != 0x52)
		die("unexpected layout");
	if (op_at)
		*op_at = n - enc_len;
	if (op_len)
		*op_len = enc_len;
	*len = n;
	return buf;
}

Kms__Request *test_request_unpack(const uint8_t *bytes, size_t len)
{
	return kms__request__unpack(NULL, len, bytes);
}

void test_request_free(Kms__Request *req)
{
	if (req)
		kms__request__free_unpacked(req, NULL);
}
