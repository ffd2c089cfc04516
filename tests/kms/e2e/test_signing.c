/*
 * Signed requests against a real kmsd (docs/request-signing.md,
 * docs/authorization.md "Signed requests"): kmsd --bootstrap-admin makes
 * the first principal and its access key; signed requests over tls+tcp://
 * and ipc:// act as the signer; every failed check (unknown access key, a
 * bad MAC, the operation changed after signing, a timestamp 6 minutes off,
 * a replayed request id, an unsigned TLS request, a revoked key, a disabled
 * principal) is ACCESS_DENIED with a reply that does not say which, and the
 * audit entry names the precise reason. The secret is nowhere in the data
 * dir, the audit log or kmsd's output. With [limits] replay_per_key = 2, a
 * third fresh request id of one access key within the window finds no room
 * and is THROTTLED (not accepted unremembered).
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/support/group.h"

#include <kms/sign.h>

#include "kms/store/store.h"
#include "tests/support/audit_check.h"
#include "tests/support/harness.h"
#include "tests/support/run_bin.h"

#define CN_LINE "the client certificate's CN is not bound to the principal"
#define DENIED_SIG "the request's signature was not accepted"

static harness H;
static char vkey[AUDIT_VKEY_MAX];

static int start(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		fprintf(stderr, "test_signing: needs root (CI runs tests as root)\n");
		exit(77);
	}
	harness_options o = { .with_tls = true, .bootstrap = true };
	return harness_start(&H, &o) ? 0 : -1;
}

static int stop(void **state)
{
	(void)state;
	if (H.pid > 0)
		harness_stop(&H);
	return 0;
}

static Kms__Response *tls_bytes(const uint8_t *b, size_t n)
{
	nng_socket s;
	assert_true(harness_tls_socket(&H, true, &s));
	Kms__Response *r = NULL;
	if (nng_send(s, (void *)(uintptr_t)b, n, 0) == 0) {
		void *reply = NULL;
		size_t len = 0;
		if (nng_recv(s, &reply, &len, NNG_FLAG_ALLOC) == 0) {
			r = kms__response__unpack(NULL, len, reply);
			nng_free(reply, len);
		}
	}
	(void)kms_nng_close_bounded(s, TEST_CLOSE_WAIT_MS);
	assert_non_null(r);
	return r;
}

/* A GenerateRandom request id, signed by (key_id, secret) at ts, packed
 * (malloc'ed); key_id NULL: unsigned. */
static uint8_t *random_request(const char *id, const char *key_id, const uint8_t *secret,
                               int64_t ts, size_t *len)
{
	Kms__GenerateRandomRequest g = KMS__GENERATE_RANDOM_REQUEST__INIT;
	g.number_of_bytes = 16;
	Kms__Request req = KMS__REQUEST__INIT;
	req.schema_version = KMS__SCHEMA_VERSION__SCHEMA_VERSION;
	req.request_id = (char *)(uintptr_t)id;
	req.op_case = KMS__REQUEST__OP_GENERATE_RANDOM;
	req.generate_random = &g;
	Kms__Credential cred = KMS__CREDENTIAL__INIT;
	uint8_t mac[KMS_SIGN_MAC_LEN];
	if (key_id) {
		assert_int_equal(kms_sign_request_mac(&req, secret, ts, mac), KMS_OK);
		cred.access_key_id = (char *)(uintptr_t)key_id;
		cred.timestamp_unix = ts;
		cred.mac.data = mac;
		cred.mac.len = sizeof mac;
		req.credential = &cred;
	}
	*len = kms__request__get_packed_size(&req);
	uint8_t *b = malloc(*len);
	assert_non_null(b);
	kms__request__pack(&req, b);
	return b;
}

static void expect_denied(Kms__Response *r, const char *id, const char *says)
{
	char want[256];
	assert_int_equal(r->status, KMS__STATUS__ACCESS_DENIED);
	assert_int_equal(r->result_case, KMS__RESPONSE__RESULT__NOT_SET);
	assert_string_equal(r->request_id, id);
	assert_non_null(strstr(r->message, id));
	printf("# %s: %s\n", id, r->message);
	if (says) {
		snprintf(want, sizeof want, "request %s: access denied for generate_random: %s", id,
		         says);
		assert_string_equal(r->message, want);
	}
	static const char *const hints[] = { "unknown", "mac", "MAC", "skew", "replay", "revoked",
	                                     "disabled", "timestamp", "AK" };
	const char *after_id = strstr(r->message, id) + strlen(id); /* ids name the case */
	for (size_t i = 0; i < sizeof hints / sizeof hints[0]; i++)
		if (strstr(after_id, hints[i]))
			fail_msg("the reply says which check failed (%s): %s", hints[i], r->message);
	kms__response__free_unpacked(r, NULL);
}

static void expect_ok(Kms__Response *r)
{
	if (r->status != KMS__STATUS__OK)
		fail_msg("%s: %s", r->request_id, r->message);
	kms__response__free_unpacked(r, NULL);
}

static void cn_binding_logged_once(void **state)
{
	(void)state;
	char *log = harness_read_file(H.log, NULL);
	assert_non_null(log);
	const char *first = strstr(log, CN_LINE);
	assert_non_null(first);
	assert_null(strstr(first + 1, CN_LINE));
	free(log);
	struct stat sb;
	assert_int_equal(stat(H.credentials, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
}

static void signed_requests_act_as_signer(void **state)
{
	(void)state;
	int64_t now = (int64_t)time(NULL);
	size_t n;
	uint8_t *b = random_request("sig-tls", H.access_key_id, H.secret, now, &n);
	expect_ok(tls_bytes(b, n));
	free(b);
	/* Minutes off, inside the 300 s window, still passes. (The exact bound
	 * is test_authz_verify's, on a fixed clock: here, with kmsd's real one,
	 * a request 298 s old could arrive past 300 s on a loaded machine.) */
	b = random_request("sig-tls-240", H.access_key_id, H.secret, now - 240, &n);
	expect_ok(tls_bytes(b, n));
	free(b);
	/* Over ipc, signed: acts as the signer; unsigned: the [ipc_principals] name. */
	b = random_request("sig-ipc", H.access_key_id, H.secret, now, &n);
	size_t len;
	uint8_t *reply = harness_raw(H.ipc_url, b, n, 20000, &len);
	assert_non_null(reply);
	expect_ok(kms__response__unpack(NULL, len, reply));
	free(reply);
	free(b);
	b = random_request("unsigned-ipc", NULL, NULL, 0, &n);
	reply = harness_raw(H.ipc_url, b, n, 20000, &len);
	assert_non_null(reply);
	expect_ok(kms__response__unpack(NULL, len, reply));
	free(reply);
	free(b);
}

static void every_failed_check_is_denied(void **state)
{
	(void)state;
	int64_t now = (int64_t)time(NULL);
	size_t n;
	uint8_t *b;
	uint8_t other[KMS_SIGN_SECRET_LEN];
	memcpy(other, H.secret, sizeof other);
	other[0] ^= 1;

	b = random_request("d-unknown", "AKAAAAAAAAAAAAAAAAAAAA", H.secret, now, &n);
	expect_denied(tls_bytes(b, n), "d-unknown", DENIED_SIG);
	free(b);

	b = random_request("d-bad-mac", H.access_key_id, other, now, &n);
	expect_denied(tls_bytes(b, n), "d-bad-mac", DENIED_SIG);
	free(b);

	/* The operation changed after signing: number_of_bytes 16 -> 17. */
	b = random_request("d-changed", H.access_key_id, H.secret, now, &n);
	static const uint8_t op[] = { 0x7a, 0x02, 0x08, 0x10 }; /* field 15, len 2, {1: 16} */
	uint8_t *at = memmem(b, n, op, sizeof op);
	assert_non_null(at);
	at[3] = 0x11;
	expect_denied(tls_bytes(b, n), "d-changed", DENIED_SIG);
	free(b);

	b = random_request("d-skew", H.access_key_id, H.secret, now - 360, &n);
	expect_denied(tls_bytes(b, n), "d-skew", DENIED_SIG);
	free(b);
	b = random_request("d-future", H.access_key_id, H.secret, now + 360, &n);
	expect_denied(tls_bytes(b, n), "d-future", DENIED_SIG);
	free(b);

	b = random_request("d-replay", H.access_key_id, H.secret, now, &n);
	expect_ok(tls_bytes(b, n));
	expect_denied(tls_bytes(b, n), "d-replay", DENIED_SIG);
	free(b);

	b = random_request("d-unsigned", NULL, NULL, 0, &n);
	Kms__Response *r = tls_bytes(b, n);
	assert_non_null(strstr(r->message, "must be signed"));
	expect_denied(r, "d-unsigned", NULL);
	free(b);
	assert_true(audit_vkey_from_log(&H, vkey));
}

/* Stops kmsd, changes the store as kms-admin would, starts it again. */
static void with_store(void (*change)(store *st))
{
	assert_int_equal(harness_stop(&H), 0);
	char data[700];
	snprintf(data, sizeof data, "%s/data", H.dir);
	store *st = NULL;
	bool created = true;
	assert_int_equal(store_open(data, &st, &created), KMS_OK);
	assert_false(created);
	change(st);
	store_close(st);
	assert_true(harness_start(&H, &(harness_options){ .with_tls = true }));
}

static void disable(store *st)
{
	assert_int_equal(store_principal_set_state(st, HARNESS_ADMIN, PRINCIPAL_STATE_DISABLED,
	                                           (int64_t)time(NULL)), KMS_OK);
}

static void enable_and_revoke(store *st)
{
	assert_int_equal(store_principal_set_state(st, HARNESS_ADMIN, PRINCIPAL_STATE_ENABLED,
	                                           (int64_t)time(NULL)), KMS_OK);
	assert_int_equal(store_access_key_revoke(st, H.access_key_id, (int64_t)time(NULL)),
	                 KMS_OK);
}

static void revoked_and_disabled(void **state)
{
	(void)state;
	size_t n;
	with_store(disable);
	uint8_t *b = random_request("d-disabled", H.access_key_id, H.secret, time(NULL), &n);
	expect_denied(tls_bytes(b, n), "d-disabled", DENIED_SIG);
	free(b);
	with_store(enable_and_revoke);
	b = random_request("d-revoked", H.access_key_id, H.secret, time(NULL), &n);
	expect_denied(tls_bytes(b, n), "d-revoked", DENIED_SIG);
	free(b);
}

static json_t *entry_of(const audit_entries *e, const char *id)
{
	json_t *first = NULL;
	if (audit_count_id(e, id, &first) < 1 || !first)
		fail_msg("no audit entry for %s", id);
	return first;
}

static void expect_reason(const audit_entries *e, const char *id, const char *reason)
{
	/* The refused one (a replay's first use was accepted). */
	json_t *entry = NULL, *authz = NULL;
	for (uint64_t i = 0; !authz && i < e->n; i++)
		if (!strcmp(audit_str(e->items[i], "request_id"), id)) {
			json_t *a = json_object_get(e->items[i], "authz");
			if (a && !strcmp(audit_str(a, "decision"), "deny")) {
				entry = e->items[i];
				authz = a;
			}
		}
	if (!authz)
		fail_msg("%s: no entry with a denying authz object", id);
	printf("# %s: authz %s %s: %s\n", id, audit_str(authz, "decision"),
	       audit_str(authz, "reason"), audit_str(authz, "detail"));
	assert_string_equal(audit_str(authz, "decision"), "deny");
	assert_string_equal(audit_str(authz, "reason"), reason);
	assert_true(audit_str(authz, "detail")[0] != '\0');
	assert_string_equal(audit_str(entry, "status"), "ACCESS_DENIED");
}

static void audit_names_signer_and_reasons(void **state)
{
	(void)state;
	int code = harness_stop(&H);
	assert_int_equal(code, 0);
	char pub[700];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	audit_entries e;
	audit_load(pub, vkey, NULL, &e);
	static const char *const signed_ok[] = { "sig-tls", "sig-tls-240", "sig-ipc" };
	for (size_t i = 0; i < sizeof signed_ok / sizeof signed_ok[0]; i++) {
		json_t *entry = entry_of(&e, signed_ok[i]);
		assert_string_equal(audit_str(entry, "principal"), HARNESS_ADMIN);
		assert_string_equal(audit_str(entry, "access_key_id"), H.access_key_id);
		assert_string_equal(audit_str(entry, "status"), "OK");
		/* GenerateRandom: allowed by the principal's role (step 2). */
		json_t *authz = json_object_get(entry, "authz");
		assert_non_null(authz);
		assert_string_equal(audit_str(authz, "decision"), "allow");
	}
	json_t *tls = entry_of(&e, "sig-tls");
	assert_non_null(strstr(audit_str(tls, "source"), "tls 127.0.0.1:"));
	json_t *ipc = entry_of(&e, "unsigned-ipc");
	assert_string_equal(audit_str(ipc, "principal"), HARNESS_ADMIN);
	assert_string_equal(audit_str(ipc, "access_key_id"), "");
	assert_non_null(strstr(audit_str(ipc, "source"), "ipc uid="));
	expect_reason(&e, "d-unknown", "unknown_key");
	expect_reason(&e, "d-bad-mac", "bad_mac");
	expect_reason(&e, "d-changed", "bad_mac");
	expect_reason(&e, "d-skew", "timestamp_skew");
	expect_reason(&e, "d-future", "timestamp_skew");
	expect_reason(&e, "d-replay", "replay");
	expect_reason(&e, "d-unsigned", "unsigned_tls");
	expect_reason(&e, "d-disabled", "disabled_principal");
	expect_reason(&e, "d-revoked", "revoked_key");
	/* An unsigned TLS request has no principal; a refused credential's
	 * entry names no access key as verified. */
	assert_string_equal(audit_str(entry_of(&e, "d-unsigned"), "principal"), "");
	assert_string_equal(audit_str(entry_of(&e, "d-bad-mac"), "access_key_id"), "");
	audit_entries_free(&e);
}

/* ---- the secret is nowhere but the credentials file ---- */

static char secret_hex[65];
static const char *leak;

static bool contains(const char *path)
{
	size_t len = 0;
	char *text = harness_read_file(path, &len);
	if (!text)
		return false;
	bool found = memmem(text, len, secret_hex, 64) || memmem(text, len, H.secret, 32);
	free(text);
	return found;
}

static int scan(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (type == FTW_F && contains(path)) {
		leak = strdup(path);
		return 1;
	}
	return 0;
}

static void secret_nowhere(void **state)
{
	(void)state;
	for (size_t i = 0; i < 32; i++)
		snprintf(secret_hex + 2 * i, 3, "%02x", H.secret[i]);
	assert_true(contains(H.credentials)); /* the scan finds it where it is */
	char data[700], out[700];
	snprintf(data, sizeof data, "%s/data", H.dir);
	snprintf(out, sizeof out, "%s/bootstrap.out", H.dir);
	assert_int_equal(nftw(data, scan, 16, FTW_PHYS), 0);
	if (leak)
		fail_msg("the secret is in %s", leak);
	assert_false(contains(H.log));
	assert_false(contains(out));
}

/* ---- bootstrap works once, on a stopped kmsd ---- */

static void bootstrap_refuses(void **state)
{
	(void)state;
	char again[700];
	snprintf(again, sizeof again, "%s/credentials-again", H.dir);
	const char *args[] = { "-c", H.config, "--bootstrap-admin", "second", "--credentials-out",
	                       again, NULL };
	run_bin_result r = run_bin(getenv("KMS_TEST_KMSD"), args, NULL);
	printf("# stopped kmsd, principals present: exit %d: %s", r.code, r.err);
	assert_int_equal(r.code, 1);
	assert_non_null(strstr(r.err, "already holds principals"));
	run_bin_free(&r);
	assert_true(harness_start(&H, &(harness_options){ .with_tls = true }));
	r = run_bin(getenv("KMS_TEST_KMSD"), args, NULL);
	printf("# kmsd running: exit %d: %s", r.code, r.err);
	assert_int_equal(r.code, 1);
	assert_non_null(strstr(r.err, "is kmsd running?"));
	run_bin_free(&r);
	assert_int_equal(access(again, F_OK), -1);
	assert_int_equal(harness_stop(&H), 0);
}

static void replay_table_bounds_configurable(void **state)
{
	(void)state;
	/* A fresh data dir and access key: the one above was revoked. */
	H = (harness){ 0 };
	harness_options o = { .with_tls = true, .bootstrap = true, .data_subdir = "data-replay",
	                      .extra_config = "[limits]\nreplay_entries = 1024\n"
	                                      "replay_per_key = 2\n" };
	assert_true(harness_start(&H, &o));
	int64_t now = (int64_t)time(NULL);
	static const char *const ids[] = { "rt-1", "rt-2", "rt-3" };
	for (size_t i = 0; i < 3; i++) {
		size_t n;
		uint8_t *b = random_request(ids[i], H.access_key_id, H.secret, now, &n);
		Kms__Response *r = tls_bytes(b, n);
		free(b);
		if (i < 2) {
			expect_ok(r);
			continue;
		}
		assert_int_equal(r->status, KMS__STATUS__THROTTLED);
		assert_string_equal(r->request_id, "rt-3");
		kms__response__free_unpacked(r, NULL);
	}
	assert_int_equal(harness_stop(&H), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(cn_binding_logged_once),
		cmocka_unit_test(signed_requests_act_as_signer),
		cmocka_unit_test(every_failed_check_is_denied),
		cmocka_unit_test(revoked_and_disabled),
		cmocka_unit_test(audit_names_signer_and_reasons),
		cmocka_unit_test(secret_nowhere),
		cmocka_unit_test(bootstrap_refuses),
		cmocka_unit_test(replay_table_bounds_configurable),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
