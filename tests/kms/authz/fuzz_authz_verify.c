/*
 * fuzz_authz_verify: kmsd's check of a signed request (kms/authz/
 * authz_verify.c) over any bytes a peer may send: the credential's fields,
 * the operation's bytes found on the wire (authz_wire.c), the canonical
 * string and its MAC (clients/lib/sign.c), the clock window, the replay
 * table.
 *
 * Input: a flags byte, then a packed kms.Request. When flags bit 0 is set
 * and the request carries a 32-byte MAC, the target re-signs it in place
 * (the MAC computed as a client would, over the operation bytes as they sit
 * in the input, with the secret of the access key it names, written over
 * the MAC's bytes), so the checks after the MAC are reached from any
 * request. Bits 1-2 move the verifier's clock (0, +300 s, -301 s, +1 day
 * from the timestamp's base). Each input gets a fresh verifier whose key
 * source knows three access keys: active, revoked, of a disabled principal.
 *
 * Invariants:
 *   - the status is OK, ACCESS_DENIED, THROTTLED or UNAVAILABLE and agrees
 *     with the reason; the verdict's detail is one printable line that never
 *     holds the MAC or a secret in hex (unless the input itself does, say
 *     in its request id);
 *   - every key looked up is released once;
 *   - OK only when, independently: the access key is the active one, the
 *     timestamp is within 300 s, the request id is new (the same bytes
 *     verified a second time are a replay), and, where the operation's bytes
 *     are the canonical packing of the unpacked operation, the MAC verifies
 *     with kms_sign_request_verify (the client's own rule, which packs the
 *     operation again). The MAC covers the bytes as sent: a non-canonical
 *     encoding (a string cut at a NUL by protobuf-c) is verified as sent,
 *     and pipeline.c's validate refuses a string with a NUL after it.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <kms/kms.pb-c.h>
#include <kms/sign.h>

#include "kms/authz/authz_verify.h"
#include "kms/authz/authz_wire.h"
#include "tests/kms/authz/authz_test_util.h"
#include "tests/support/fuzz.h"

#define KEY_ACTIVE "AKAAAAAAAAAAAAAAAAAAAA"
#define KEY_REVOKED "AKBBBBBBBBBBBBBBBBBBBB"
#define KEY_DISABLED "AKCCCCCCCCCCCCCCCCCCCC"
#define INPUT_MAX 65536

static int64_t now;

static const test_key *key_named(const test_keys *t, const char *id)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->keys[i].id, id) == 0)
			return &t->keys[i];
	return NULL;
}

/* Writes a fresh MAC over the request's own MAC bytes in buf. */
static void resign(uint8_t *buf, size_t len, const test_keys *keys)
{
	Kms__Request *req = test_request_unpack(buf, len);
	if (!req)
		return;
	const Kms__Credential *cred = req->credential;
	authz_wire_op op;
	const test_key *k = cred && cred->access_key_id ? key_named(keys, cred->access_key_id) : NULL;
	if (k && cred->mac.len == KMS_SIGN_MAC_LEN && req->request_id &&
	    authz_wire_find_op(buf, len, &op) == KMS_OK) {
		uint8_t mac[KMS_SIGN_MAC_LEN];
		uint8_t *at = memmem(buf, len, cred->mac.data, KMS_SIGN_MAC_LEN);
		if (at && kms_sign_mac(k->secret, req->request_id, cred->timestamp_unix, op.name,
		                       op.bytes, op.len, mac) == KMS_OK)
			memcpy(at, mac, sizeof mac);
	}
	test_request_free(req);
}

/* Whether the operation's bytes in buf are what protobuf-c packs from the
 * unpacked operation. */
static bool op_canonical(const uint8_t *buf, size_t len, const Kms__Request *req)
{
	static uint8_t packed[INPUT_MAX];
	authz_wire_op op;
	FUZZ_CHECK(authz_wire_find_op(buf, len, &op) == KMS_OK);
	const ProtobufCFieldDescriptor *f =
		protobuf_c_message_descriptor_get_field(&kms__request__descriptor, op.number);
	FUZZ_CHECK(f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE);
	const ProtobufCMessage *m = *(const ProtobufCMessage *const *)((const char *)req + f->offset);
	FUZZ_CHECK(m != NULL);
	size_t n = protobuf_c_message_get_packed_size(m);
	return n == op.len && n <= sizeof packed && protobuf_c_message_pack(m, packed) == n &&
	       memcmp(packed, op.bytes, n) == 0;
}

static void hex(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

/* Whether the detail shows b[0..16) in hex, the input not holding that hex
 * itself (a request id may). */
static bool shows_hex(const authz_verdict *v, const uint8_t *b, const uint8_t *in, size_t len)
{
	char h[2 * 16 + 1];
	hex(b, 16, h);
	return strstr(v->detail, h) && !memmem(in, len, h, 2 * 16);
}

static void check_detail(const authz_verdict *v, const Kms__Request *req, const test_keys *keys,
                         const uint8_t *in, size_t len)
{
	FUZZ_CHECK(v->detail[0]);
	for (const char *p = v->detail; *p; p++)
		FUZZ_CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
	for (size_t i = 0; i < keys->n; i++)
		FUZZ_CHECK(!shows_hex(v, keys->keys[i].secret, in, len));
	if (req->credential && req->credential->mac.len >= 16)
		FUZZ_CHECK(!shows_hex(v, req->credential->mac.data, in, len));
}

static void check_status(const authz_verdict *v, kms_status st)
{
	FUZZ_CHECK(st == v->status);
	switch (v->reason) {
	case AUTHZ_VERIFIED:
		FUZZ_CHECK(st == KMS_OK);
		break;
	case AUTHZ_REPLAY_TABLE_FULL:
		FUZZ_CHECK(st == KMS_THROTTLED && v->retry_after_ms > 0);
		break;
	case AUTHZ_KEY_LOOKUP_FAILED:
		FUZZ_CHECK(st == KMS_UNAVAILABLE);
		break;
	default:
		FUZZ_CHECK(st == KMS_ACCESS_DENIED);
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[INPUT_MAX];
	static const int64_t shifts[] = { 0, 300, -301, 86400 };
	if (size < 1 || size - 1 > sizeof buf)
		return 0;
	uint8_t flags = data[0];
	size_t len = size - 1;
	memcpy(buf, data + 1, len);

	test_keys keys = { 0 };
	test_keys_add(&keys, KEY_ACTIVE, "app", 1);
	test_keys_add(&keys, KEY_REVOKED, "app", 2)->revoked = true;
	test_keys_add(&keys, KEY_DISABLED, "gone", 3)->disabled = true;
	if (flags & 1)
		resign(buf, len, &keys);

	Kms__Request *req = test_request_unpack(buf, len);
	if (!req)
		return 0;
	int64_t ts = req->credential ? req->credential->timestamp_unix : 0;
	int64_t shift = shifts[(flags >> 1) & 3];
	now = (ts > INT64_MIN + 86401 && ts < INT64_MAX - 86401) ? ts + shift : 1700000000;

	authz_verify_config cfg = {
		.keys = test_keys_source(&keys),
		.clock = test_clock,
		.clock_ctx = &now,
		.replay_entries = 64,
		.replay_per_key = 8,
		.replay_keys = 4,
	};
	authz_verifier *v = NULL;
	FUZZ_CHECK(authz_verifier_open(&cfg, &v) == KMS_OK);
	authz_verdict verdict;
	kms_status st = authz_verify(v, buf, len, req, &verdict);
	check_status(&verdict, st);
	check_detail(&verdict, req, &keys, buf, len);
	FUZZ_CHECK(keys.lookups == keys.releases);
	if (st == KMS_OK) {
		const test_key *k = key_named(&keys, KEY_ACTIVE);
		FUZZ_CHECK(strcmp(verdict.access_key_id, KEY_ACTIVE) == 0);
		FUZZ_CHECK(strcmp(verdict.principal, "app") == 0);
		/* The MAC covers the operation's bytes as sent. Where they are
		 * the canonical packing of what was unpacked, the client's rule
		 * (which packs the operation again) agrees; a non-canonical
		 * encoding (a string cut at a NUL, fields out of order) is
		 * verified as sent, and its NUL is refused later by validate. */
		if (op_canonical(buf, len, req))
			FUZZ_CHECK(kms_sign_request_verify(req, k->secret) == KMS_OK);
		FUZZ_CHECK(verdict.skew_seconds <= KMS_SIGN_MAX_SKEW_SECONDS &&
		           verdict.skew_seconds >= -KMS_SIGN_MAX_SKEW_SECONDS);
		FUZZ_CHECK(verdict.operation &&
		           strcmp(verdict.operation, kms_sign_operation_name(req)) == 0);
		authz_verdict again;
		FUZZ_CHECK(authz_verify(v, buf, len, req, &again) == KMS_ACCESS_DENIED &&
		           again.reason == AUTHZ_REPLAY);
		FUZZ_CHECK(keys.lookups == keys.releases);
	}
	authz_verifier_close(v);
	test_request_free(req);
	return 0;
}
