/*
 * kmsd's check of a signed request (kms/authz/authz_verify.h): every
 * refusal with its own reason and the one status the client sees, a body
 * changed after signing, the timestamp window's edges, replays inside and
 * after the window on a clock the test sets, and the replay table full
 * under a flood of distinct ids. Requests are packed by protobuf-c and
 * signed by the client's own code; nothing of the crypto is mocked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kms/kms.pb-c.h>

#include "tests/kms/authz/authz_test_util.h"

#define KEY_A "AKAAAAAAAAAAAAAAAAAAAA"
#define KEY_B "AKBBBBBBBBBBBBBBBBBBBB"
#define KEY_REVOKED "AKREVOKED234567REVOKED"
#define KEY_DISABLED "AKDISABLED234567DISABL"
#define KEY_UNKNOWN "AKUNKNOWN234567UNKNOWN"
#define T0 1767225600

typedef struct fixture {
	test_keys keys;
	int64_t now;
	authz_verifier *v;
} fixture;

static fixture *fixture_open(size_t entries, size_t per_key, size_t keys)
{
	fixture *f = calloc(1, sizeof *f);
	assert_non_null(f);
	test_keys_add(&f->keys, KEY_A, "payments-svc", 0x10);
	test_keys_add(&f->keys, KEY_B, "billing-svc", 0x40);
	test_keys_add(&f->keys, KEY_REVOKED, "old-svc", 0x70)->revoked = true;
	test_keys_add(&f->keys, KEY_DISABLED, "gone-svc", 0xa0)->disabled = true;
	f->now = T0;
	authz_verify_config config = {
		.keys = test_keys_source(&f->keys),
		.clock = test_clock,
		.clock_ctx = &f->now,
		.replay_entries = entries,
		.replay_per_key = per_key,
		.replay_keys = keys,
	};
	assert_int_equal(authz_verifier_open(&config, &f->v), KMS_OK);
	return f;
}

static int setup(void **state)
{
	*state = fixture_open(0, 0, 0);
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	/* Every key handed over was given back. */
	assert_int_equal(f->keys.lookups, f->keys.releases);
	authz_verifier_close(f->v);
	free(f);
	return 0;
}

static const uint8_t *secret_of(fixture *f, const char *id)
{
	for (size_t i = 0; i < f->keys.n; i++)
		if (!strcmp(f->keys.keys[i].id, id))
			return f->keys.keys[i].secret;
	return f->keys.keys[0].secret; /* an unknown id: sign with any secret */
}

static void hex(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

/* Verifies bytes as kmsd would (unpacked first); checks that the verdict's
 * line names no secret and no MAC. */
static kms_status verify_bytes(fixture *f, const uint8_t *bytes, size_t len,
                               authz_verdict *out)
{
	Kms__Request *req = test_request_unpack(bytes, len);
	assert_non_null(req);
	kms_status st = authz_verify(f->v, bytes, len, req, out);
	assert_int_equal(st, out->status);
	char h[2 * KMS_SIGN_SECRET_LEN + 1];
	for (size_t i = 0; i < f->keys.n; i++) {
		hex(f->keys.keys[i].secret, KMS_SIGN_SECRET_LEN, h);
		assert_null(strstr(out->detail, h));
	}
	if (req->credential && req->credential->mac.len == KMS_SIGN_MAC_LEN) {
		hex(req->credential->mac.data, KMS_SIGN_MAC_LEN, h);
		assert_null(strstr(out->detail, h));
	}
	assert_non_null(out->detail[0] ? out->detail : NULL);
	test_request_free(req);
	return st;
}

/* Signs and verifies one request. */
static kms_status verify_signed(fixture *f, const char *id, const char *rid, int64_t ts,
                                authz_verdict *out)
{
	size_t len;
	uint8_t *bytes = test_signed_request(secret_of(f, id), id, rid, ts, &len, NULL, NULL);
	kms_status st = verify_bytes(f, bytes, len, out);
	free(bytes);
	return st;
}

static void expect_denied(const authz_verdict *v, authz_reason reason)
{
	assert_int_equal(v->status, KMS_ACCESS_DENIED);
	assert_string_equal(authz_reason_name(v->reason), authz_reason_name(reason));
}

static void valid_request_verifies(void **state)
{
	fixture *f = *state;
	authz_verdict v;
	assert_int_equal(verify_signed(f, KEY_A, "r-ok", T0, &v), KMS_OK);
	assert_int_equal(v.reason, AUTHZ_VERIFIED);
	assert_string_equal(v.principal, "payments-svc");
	assert_string_equal(v.access_key_id, KEY_A);
	assert_string_equal(v.operation, "encrypt");
	assert_int_equal(v.skew_seconds, 0);
	assert_int_equal(f->keys.lookups, 1);
}

static void unknown_revoked_disabled_and_bad_mac(void **state)
{
	fixture *f = *state;
	authz_verdict v;

	verify_signed(f, KEY_UNKNOWN, "r-1", T0, &v);
	expect_denied(&v, AUTHZ_UNKNOWN_KEY);
	assert_string_equal(v.principal, "");
	assert_non_null(strstr(v.detail, KEY_UNKNOWN));

	verify_signed(f, KEY_REVOKED, "r-2", T0, &v);
	expect_denied(&v, AUTHZ_REVOKED_KEY);
	assert_string_equal(v.principal, "old-svc");

	verify_signed(f, KEY_DISABLED, "r-3", T0, &v);
	expect_denied(&v, AUTHZ_DISABLED_PRINCIPAL);
	assert_string_equal(v.principal, "gone-svc");

	/* Signed with key B's secret, sent as key A. */
	size_t len;
	uint8_t *bytes = test_signed_request(secret_of(f, KEY_B), KEY_A, "r-4", T0, &len,
	                                     NULL, NULL);
	verify_bytes(f, bytes, len, &v);
	expect_denied(&v, AUTHZ_BAD_MAC);
	free(bytes);

	/* None of these was recorded: the same ids verify now. */
	assert_int_equal(verify_signed(f, KEY_A, "r-4", T0, &v), KMS_OK);
}

static void lookup_failure_fails_closed(void **state)
{
	fixture *f = *state;
	authz_verdict v;
	f->keys.fail = true;
	assert_int_equal(verify_signed(f, KEY_A, "r-1", T0, &v), KMS_UNAVAILABLE);
	assert_int_equal(v.reason, AUTHZ_KEY_LOOKUP_FAILED);
	f->keys.fail = false;
	assert_int_equal(verify_signed(f, KEY_A, "r-1", T0, &v), KMS_OK);
}

static void malformed_credentials(void **state)
{
	fixture *f = *state;
	authz_verdict v;
	size_t len;
	uint8_t *bytes = test_signed_request(secret_of(f, KEY_A), KEY_A, "r-m", T0, &len,
	                                     NULL, NULL);
	Kms__Request *req = test_request_unpack(bytes, len);
	assert_non_null(req);
	Kms__Credential *cred = req->credential;

	req->credential = NULL;
	assert_int_equal(authz_verify(f->v, bytes, len, req, &v), KMS_ACCESS_DENIED);
	expect_denied(&v, AUTHZ_MALFORMED_CREDENTIAL);
	req->credential = cred;

	static const char *const bad_ids[] = {
		"", "AK", "AKAAAAAAAAAAAAAAAAAAA", "AKAAAAAAAAAAAAAAAAAAAAA",
		"AKaaaaaaaaaaaaaaaaaaaa", "AKAAAAAAAAAAAAAAAAAAA1", "XKAAAAAAAAAAAAAAAAAAAA",
		"AKAAAAAAAAAA\nAAAAAAAAA",
	};
	char *id = cred->access_key_id;
	for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
		cred->access_key_id = (char *)bad_ids[i];
		assert_int_equal(authz_verify(f->v, bytes, len, req, &v), KMS_ACCESS_DENIED);
		expect_denied(&v, AUTHZ_MALFORMED_CREDENTIAL);
		assert_string_equal(v.access_key_id, "");
	}
	cred->access_key_id = id;

	cred->mac.len = KMS_SIGN_MAC_LEN - 1;
	authz_verify(f->v, bytes, len, req, &v);
	expect_denied(&v, AUTHZ_MALFORMED_CREDENTIAL);
	cred->mac.len = KMS_SIGN_MAC_LEN;

	char *rid = req->request_id;
	req->request_id = "bad id";
	authz_verify(f->v, bytes, len, req, &v);
	expect_denied(&v, AUTHZ_MALFORMED_CREDENTIAL);
	req->request_id = rid;

	/* Bytes that are not a well-formed Request at the top level. */
	uint8_t *worse = malloc(len + 2);
	assert_non_null(worse);
	memcpy(worse, bytes, len);
	worse[len] = 0x0b; /* field 1, wire type 3 (a group) */
	worse[len + 1] = 0x00;
	authz_verify(f->v, worse, len + 2, req, &v);
	expect_denied(&v, AUTHZ_MALFORMED_CREDENTIAL);
	/* A length past the end. */
	authz_verify(f->v, bytes, len - 1, req, &v);
	expect_denied(&v, AUTHZ_MALFORMED_CREDENTIAL);
	/* A second operation appended (field 48, health {}). */
	uint8_t health[] = { 0x82, 0x03, 0x00 };
	uint8_t *two = malloc(len + sizeof health);
	assert_non_null(two);
	memcpy(two, bytes, len);
	memcpy(two + len, health, sizeof health);
	authz_verify(f->v, two, len + sizeof health, req, &v);
	expect_denied(&v, AUTHZ_MALFORMED_CREDENTIAL);
	free(two);
	free(worse);

	/* The whole thing, untouched, still verifies: nothing above was
	 * recorded as seen. */
	assert_int_equal(authz_verify(f->v, bytes, len, req, &v), KMS_OK);
	test_request_free(req);
	free(bytes);
	assert_int_equal(f->keys.lookups, 1); /* malformed never reached the source */
}

static void op_bytes_missing_or_not_the_unpacked_one(void **state)
{
	fixture *f = *state;
	authz_verdict v;
	size_t len, op_at, op_len;
	uint8_t *bytes = test_signed_request(secret_of(f, KEY_A), KEY_A, "r-op", T0, &len,
	                                     &op_at, &op_len);
	Kms__Request *req = test_request_unpack(bytes, len);
	assert_non_null(req);

	/* The bytes without their operation (the op field is last). */
	authz_verify(f->v, bytes, op_at - 2, req, &v);
	expect_denied(&v, AUTHZ_OP_MISSING);
	assert_null(v.operation);

	/* The unpacked request says decrypt, the bytes carry encrypt. */
	req->op_case = KMS__REQUEST__OP_DECRYPT;
	authz_verify(f->v, bytes, len, req, &v);
	expect_denied(&v, AUTHZ_OP_MISSING);
	req->op_case = KMS__REQUEST__OP_ENCRYPT;

	test_request_free(req);
	free(bytes);
}

/* Every byte of the op submessage flipped after signing: never verifies,
 * whether protobuf-c would notice or not. */
static void body_changed_after_signing(void **state)
{
	fixture *f = *state;
	authz_verdict v;
	size_t len, op_at, op_len;
	uint8_t *bytes = test_signed_request(secret_of(f, KEY_A), KEY_A, "r-body", T0, &len,
	                                     &op_at, &op_len);
	size_t unpacked = 0;
	assert_true(op_len > 16);
	for (size_t i = op_at; i < op_at + op_len; i++) {
		bytes[i] ^= 0x01;
		Kms__Request *req = test_request_unpack(bytes, len);
		if (req) {
			unpacked++;
			assert_int_not_equal(authz_verify(f->v, bytes, len, req, &v), KMS_OK);
			assert_int_equal(v.status, KMS_ACCESS_DENIED);
			test_request_free(req);
		}
		bytes[i] ^= 0x01;
	}
	/* The plaintext's bytes at least decode fine after a flip: those were
	 * refused for their MAC. */
	assert_true(unpacked >= 14);
	bytes[len - 1] ^= 0x20; /* the plaintext's last byte */
	verify_bytes(f, bytes, len, &v);
	expect_denied(&v, AUTHZ_BAD_MAC);
	bytes[len - 1] ^= 0x20;
	assert_int_equal(verify_bytes(f, bytes, len, &v), KMS_OK);
	free(bytes);
}

static void timestamp_window_edges(void **state)
{
	fixture *f = *state;
	authz_verdict v;
	f->now = T0 + 1000;
	assert_int_equal(verify_signed(f, KEY_A, "r-plus300", f->now + 300, &v), KMS_OK);
	assert_int_equal(v.skew_seconds, 300);
	assert_int_equal(verify_signed(f, KEY_A, "r-minus300", f->now - 300, &v), KMS_OK);
	assert_int_equal(v.skew_seconds, -300);

	verify_signed(f, KEY_A, "r-plus301", f->now + 301, &v);
	expect_denied(&v, AUTHZ_TIMESTAMP_SKEW);
	assert_int_equal(v.skew_seconds, 301);
	assert_non_null(strstr(v.detail, "301 s ahead of"));
	verify_signed(f, KEY_A, "r-minus301", f->now - 301, &v);
	expect_denied(&v, AUTHZ_TIMESTAMP_SKEW);
	assert_int_equal(v.skew_seconds, -301);
	assert_non_null(strstr(v.detail, "301 s behind"));
	/* Six minutes off, and the far ends of int64. */
	verify_signed(f, KEY_A, "r-six-minutes", f->now - 360, &v);
	expect_denied(&v, AUTHZ_TIMESTAMP_SKEW);
	verify_signed(f, KEY_A, "r-max", INT64_MAX, &v);
	expect_denied(&v, AUTHZ_TIMESTAMP_SKEW);
	verify_signed(f, KEY_A, "r-min", INT64_MIN, &v);
	expect_denied(&v, AUTHZ_TIMESTAMP_SKEW);
	assert_int_equal(v.skew_seconds, INT64_MIN);
	/* A refused timestamp is not recorded: the id is still fresh. */
	assert_int_equal(verify_signed(f, KEY_A, "r-plus301", f->now, &v), KMS_OK);
}

static void replay_inside_and_after_the_window(void **state)
{
	fixture *f = *state;
	authz_verdict v;
	size_t len;
	uint8_t *bytes = test_signed_request(secret_of(f, KEY_A), KEY_A, "r-replay", T0, &len,
	                                     NULL, NULL);

	assert_int_equal(verify_bytes(f, bytes, len, &v), KMS_OK);
	verify_bytes(f, bytes, len, &v);
	expect_denied(&v, AUTHZ_REPLAY);
	assert_non_null(strstr(v.detail, "r-replay"));
	/* The same id from another access key is another request. */
	assert_int_equal(verify_signed(f, KEY_B, "r-replay", T0, &v), KMS_OK);
	/* Re-signed with a new timestamp inside the window: still a replay. */
	f->now = T0 + 100;
	verify_signed(f, KEY_A, "r-replay", T0 + 100, &v);
	expect_denied(&v, AUTHZ_REPLAY);
	/* The last second of the window. */
	f->now = T0 + 300;
	verify_bytes(f, bytes, len, &v);
	expect_denied(&v, AUTHZ_REPLAY);
	/* Past it, the captured bytes fail the window... */
	f->now = T0 + 301;
	verify_bytes(f, bytes, len, &v);
	expect_denied(&v, AUTHZ_TIMESTAMP_SKEW);
	/* ...and the id signed afresh is accepted again, once. */
	assert_int_equal(verify_signed(f, KEY_A, "r-replay", f->now, &v), KMS_OK);
	verify_signed(f, KEY_A, "r-replay", f->now, &v);
	expect_denied(&v, AUTHZ_REPLAY);
	free(bytes);
}

/* A request stamped 300 s ahead stays replayable until its timestamp plus
 * the window, 600 s after it was first seen. */
static void replay_of_a_future_timestamp(void **state)
{
	fixture *f = *state;
	authz_verdict v;
	size_t len;
	uint8_t *bytes = test_signed_request(secret_of(f, KEY_A), KEY_A, "r-future", T0 + 300,
	                                     &len, NULL, NULL);
	assert_int_equal(verify_bytes(f, bytes, len, &v), KMS_OK);
	f->now = T0 + 301;
	verify_bytes(f, bytes, len, &v);
	expect_denied(&v, AUTHZ_REPLAY);
	f->now = T0 + 600;
	verify_bytes(f, bytes, len, &v);
	expect_denied(&v, AUTHZ_REPLAY);
	f->now = T0 + 601;
	verify_bytes(f, bytes, len, &v);
	expect_denied(&v, AUTHZ_TIMESTAMP_SKEW);
	free(bytes);
}

#define FLOOD_ENTRIES 64
#define FLOOD_PER_KEY 16
#define FLOOD_IDS 200

/* Distinct ids from one key past its share: THROTTLED with a hint, never
 * accepted unrecorded; another key is unaffected; after the window the
 * key works again. */
static void flood_of_distinct_ids(void **state)
{
	(void)state;
	fixture *f = fixture_open(FLOOD_ENTRIES, FLOOD_PER_KEY, 4);
	authz_verdict v;
	authz_replay_stats before, after;
	char rid[32];
	size_t ok = 0, throttled = 0;

	authz_replay_stats_get(authz_verifier_replay(f->v), &before);
	for (int i = 0; i < FLOOD_IDS; i++) {
		snprintf(rid, sizeof rid, "flood-%d", i);
		kms_status st = verify_signed(f, KEY_A, rid, T0, &v);
		if (st == KMS_OK) {
			ok++;
		} else {
			assert_int_equal(st, KMS_THROTTLED);
			assert_int_equal(v.reason, AUTHZ_REPLAY_TABLE_FULL);
			assert_int_equal(v.retry_after_ms, 1000);
			throttled++;
		}
	}
	assert_int_equal(ok, FLOOD_PER_KEY);
	assert_int_equal(throttled, FLOOD_IDS - FLOOD_PER_KEY);
	/* Every accepted id is still refused as a replay, never forgotten. */
	for (int i = 0; i < FLOOD_PER_KEY; i++) {
		snprintf(rid, sizeof rid, "flood-%d", i);
		verify_signed(f, KEY_A, rid, T0, &v);
		expect_denied(&v, AUTHZ_REPLAY);
	}
	assert_int_equal(verify_signed(f, KEY_B, "b-1", T0, &v), KMS_OK);
	authz_replay_stats_get(authz_verifier_replay(f->v), &after);
	assert_int_equal(after.entries, FLOOD_PER_KEY + 1);
	assert_int_equal(after.keys, 2);
	assert_int_equal(after.bytes_reserved, before.bytes_reserved);

	/* Past the window the expired entries are dropped (those sharing a
	 * chain as it is walked, the rest by a sweep when the key has no
	 * room: which first depends on the table's random hash key) and A
	 * has its whole share again: FLOOD_PER_KEY new ids, all taken, which
	 * is only possible once every old one of A's is gone. */
	f->now = T0 + 301;
	for (int i = 0; i < FLOOD_PER_KEY; i++) {
		snprintf(rid, sizeof rid, "flood-new-%d", i);
		assert_int_equal(verify_signed(f, KEY_A, rid, f->now, &v), KMS_OK);
	}
	authz_replay_stats_get(authz_verifier_replay(f->v), &after);
	/* A's new ones, and B's expired one unless a sweep took it. */
	assert_true(after.entries == FLOOD_PER_KEY || after.entries == FLOOD_PER_KEY + 1);
	teardown((void **)&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(valid_request_verifies, setup, teardown),
		cmocka_unit_test_setup_teardown(unknown_revoked_disabled_and_bad_mac, setup, teardown),
		cmocka_unit_test_setup_teardown(lookup_failure_fails_closed, setup, teardown),
		cmocka_unit_test_setup_teardown(malformed_credentials, setup, teardown),
		cmocka_unit_test_setup_teardown(op_bytes_missing_or_not_the_unpacked_one, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(body_changed_after_signing, setup, teardown),
		cmocka_unit_test_setup_teardown(timestamp_window_edges, setup, teardown),
		cmocka_unit_test_setup_teardown(replay_inside_and_after_the_window, setup, teardown),
		cmocka_unit_test_setup_teardown(replay_of_a_future_timestamp, setup, teardown),
		cmocka_unit_test(flood_of_distinct_ids),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
