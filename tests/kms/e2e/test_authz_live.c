/*
 * test_authz_live: authorization changed through kmsd's own operations and
 * seen by the very next request (docs/authorization.md), against a real
 * kmsd. Every request checked here is also looked up in the audit log
 * afterwards: its status and its `authz` object (decision, reason, detail).
 *
 *  - grants: an app principal is denied Encrypt on a key with the default
 *    policy; CreateGrant (an admin, signed) lets the next request through;
 *    RetireGrant by the grantee, RevokeGrant by the admin end it for the
 *    next; RetireGrant by a principal that is neither grantee nor admin is
 *    ACCESS_DENIED and leaves the grant live; a grant with context pairs
 *    allows only with them;
 *  - DisablePrincipal, EnablePrincipal, DeletePrincipal: each seen by the
 *    principal's next signed request;
 *  - two access keys of one principal: the revoked one is refused, the other
 *    still serves;
 *  - ipc uid 0 mapped to a principal without the admin role: unsigned, it
 *    may still manage principals (the way back from a lost admin); signed as
 *    an app principal it acts as that principal only (root only: skipped
 *    otherwise);
 *  - the per-key rate limit: THROTTLED with retry_after_ms, another key
 *    unaffected, served again after the retry-after, /metrics counting it;
 *  - `kms-admin key policy put` with an unknown action: one line naming the
 *    statement and member, exit 1, the key's policy unchanged;
 *  - every access key secret created here found nowhere under the test's
 *    directory (data dirs, audit logs, token, kmsd's log), as hex or raw.
 *
 * Each case starts its own kmsd on its own data directory. Signed requests
 * as another principal put that principal's access key into the harness's
 * fields around one call (harness_call signs with them).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kms/store/store.h"
#include "tests/support/audit_check.h"
#include "tests/support/harness.h"
#include "tests/support/run_bin.h"

static harness H;
static char subdir[32];
static int http_port;

#define SECRET_LEN 32
#define SECRETS_MAX 32
#define EXPECTS_MAX 64
#define BURST_TRIES 20
#define RETRY_TRIES 10

/* ---- credentials: the harness's own (test-admin), or another's ---- */

typedef struct cred {
	char id[24];
	uint8_t secret[SECRET_LEN];
} cred;

/* Every secret CreateAccessKey returned in this run, for the last case. */
static uint8_t secrets[SECRETS_MAX][SECRET_LEN];
static size_t n_secrets;

/* The bootstrap secret and its file: the leak scan's positive control. */
static char bootstrap_hex[2 * SECRET_LEN + 1];
static char bootstrap_secret_file[600];

static void hex_of(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* Sends req as c (NULL: the harness's own identity: test-admin, signed when
 * the harness bootstrapped, else unsigned over ipc) with request id id. */
static Kms__Response *call_as(const cred *c, const char *id, Kms__Request *req)
{
	char saved_id[sizeof H.access_key_id];
	uint8_t saved_secret[SECRET_LEN];
	memcpy(saved_id, H.access_key_id, sizeof saved_id);
	memcpy(saved_secret, H.secret, sizeof saved_secret);
	if (c) {
		snprintf(H.access_key_id, sizeof H.access_key_id, "%s", c->id);
		memcpy(H.secret, c->secret, SECRET_LEN);
	}
	req->request_id = (char *)(uintptr_t)id;
	Kms__Response *r = harness_call(&H, req);
	memcpy(H.access_key_id, saved_id, sizeof saved_id);
	memcpy(H.secret, saved_secret, sizeof saved_secret);
	req->request_id = NULL;
	if (!r)
		fail_msg("request %s: no reply from kmsd", id ? id : "(harness id)");
	return r;
}

/* The reply's status must be want; the reply is freed. */
static void expect_status(Kms__Response *r, int want)
{
	if ((int)r->status != want)
		fail_msg("request %s: status %d, want %d: %s", r->request_id, (int)r->status, want,
		         r->message);
	kms__response__free_unpacked(r, NULL);
}

/* ---- the audit entries each case expects ---- */

typedef struct expect_entry {
	char id[48];
	const char *status;   /* the entry's "status" */
	const char *decision; /* authz.decision */
	char reason[160];     /* authz.reason: exact, or a prefix when it ends in '*' */
	char detail[160];     /* a part of authz.detail ("" : not checked) */
	char principal[64];   /* the entry's "principal" ("" : not checked) */
} expect_entry;

static expect_entry expects[EXPECTS_MAX];
static size_t n_expects;

static void expect_audit(const char *id, const char *status, const char *decision,
                         const char *reason, const char *detail, const char *principal)
{
	assert_true(n_expects < EXPECTS_MAX);
	expect_entry *x = &expects[n_expects++];
	snprintf(x->id, sizeof x->id, "%s", id);
	x->status = status;
	x->decision = decision;
	snprintf(x->reason, sizeof x->reason, "%s", reason);
	snprintf(x->detail, sizeof x->detail, "%s", detail ? detail : "");
	snprintf(x->principal, sizeof x->principal, "%s", principal ? principal : "");
}

static bool reason_matches(const char *want, const char *got)
{
	size_t n = strlen(want);
	if (n && want[n - 1] == '*')
		return !strncmp(want, got, n - 1);
	return !strcmp(want, got);
}

static void check_entry(const audit_entries *e, const expect_entry *x)
{
	json_t *entry = NULL;
	size_t n = audit_count_id(e, x->id, &entry);
	if (n != 1 || !entry)
		fail_msg("request %s: %zu audit entries (intents aside), want 1", x->id, n);
	json_t *authz = json_object_get(entry, "authz");
	if (!authz && x->decision)
		fail_msg("request %s: its audit entry has no authz object", x->id);
	if (strcmp(audit_str(entry, "status"), x->status))
		fail_msg("request %s: audit status %s, want %s", x->id, audit_str(entry, "status"),
		         x->status);
	if (x->principal[0] && strcmp(audit_str(entry, "principal"), x->principal))
		fail_msg("request %s: audit principal %s, want %s", x->id,
		         audit_str(entry, "principal"), x->principal);
	if (!x->decision) /* refused before any decision */
		return;
	const char *decision = audit_str(authz, "decision"), *reason = audit_str(authz, "reason");
	const char *detail = audit_str(authz, "detail");
	printf("# %-22s %-13s authz %s: %s%s%s\n", x->id, audit_str(entry, "status"), decision,
	       reason, detail[0] ? " | " : "", detail);
	if (strcmp(decision, x->decision) || !reason_matches(x->reason, reason))
		fail_msg("request %s: authz %s \"%s\", want %s \"%s\"", x->id, decision, reason,
		         x->decision, x->reason);
	if (x->detail[0] && !strstr(detail, x->detail))
		fail_msg("request %s: authz detail \"%s\" does not say \"%s\"", x->id, detail,
		         x->detail);
}

/* Stops kmsd and checks every expected entry in its verified audit log. */
static void stop_and_check_audit(void)
{
	char vkey[AUDIT_VKEY_MAX];
	assert_true(audit_vkey_from_log(&H, vkey));
	assert_int_equal(harness_stop(&H), 0);
	char pub[700];
	audit_public_dir(&H, subdir, pub, sizeof pub);
	audit_entries e;
	audit_load(pub, vkey, NULL, &e);
	for (size_t i = 0; i < n_expects; i++)
		check_entry(&e, &expects[i]);
	audit_entries_free(&e);
	n_expects = 0;
}

/* ---- kmsd ---- */

/* A fresh kmsd on data dir name. bootstrap: test-admin gets an access key
 * and the harness signs as it. builtin_default: keys without a policy get
 * the built-in default (else the harness's, which lets test-admin do
 * everything). limits: [limits] lines or NULL. */
static void start(const char *name, bool bootstrap, bool builtin_default, const char *limits,
                  unsigned test_admin_roles)
{
	static char extra[512];
	memset(&H, 0, sizeof H);
	n_expects = 0;
	snprintf(subdir, sizeof subdir, "%s", name);
	http_port = harness_free_port();
	snprintf(extra, sizeof extra, "%s[audit]\nhttp = http://127.0.0.1:%d\n",
	         limits ? limits : "", http_port);
	harness_options o = { .data_subdir = subdir, .bootstrap = bootstrap, .extra_config = extra,
	                      .default_key_policy = builtin_default ? "" : NULL };
	/* An existing test-admin is left as it is: this makes it with fewer
	 * roles when asked. */
	if (test_admin_roles)
		assert_true(harness_add_principal(&H, &o, HARNESS_ADMIN, test_admin_roles));
	assert_true(harness_start(&H, &o));
	if (bootstrap) {
		hex_of(H.secret, SECRET_LEN, bootstrap_hex);
		snprintf(bootstrap_secret_file, sizeof bootstrap_secret_file, "%s", H.secret_file);
	}
}

static int teardown(void **state)
{
	(void)state;
	if (H.pid > 0)
		harness_kill9(&H);
	return 0;
}

/* ---- requests ---- */

static Kms__Response *create_principal_as(const cred *c, const char *id, const char *name,
                                          Kms__Role role)
{
	Kms__Role roles[] = { role };
	Kms__CreatePrincipalRequest cp = KMS__CREATE_PRINCIPAL_REQUEST__INIT;
	cp.name = (char *)(uintptr_t)name;
	cp.roles = roles;
	cp.n_roles = 1;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_CREATE_PRINCIPAL;
	req.create_principal = &cp;
	return call_as(c, id, &req);
}

static void create_principal(const char *name, Kms__Role role)
{
	expect_status(create_principal_as(NULL, NULL, name, role), KMS__STATUS__OK);
}

/* A new access key of principal, made by the harness's identity. */
static void create_access_key(const char *principal, cred *out)
{
	Kms__CreateAccessKeyRequest ck = KMS__CREATE_ACCESS_KEY_REQUEST__INIT;
	ck.principal = (char *)(uintptr_t)principal;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_CREATE_ACCESS_KEY;
	req.create_access_key = &ck;
	Kms__Response *r = call_as(NULL, NULL, &req);
	if (r->status != KMS__STATUS__OK)
		fail_msg("create_access_key %s: %s", principal, r->message);
	assert_int_equal(r->create_access_key->secret.len, SECRET_LEN);
	snprintf(out->id, sizeof out->id, "%s", r->create_access_key->access_key->access_key_id);
	memcpy(out->secret, r->create_access_key->secret.data, SECRET_LEN);
	assert_true(n_secrets < SECRETS_MAX);
	memcpy(secrets[n_secrets++], out->secret, SECRET_LEN);
	kms__response__free_unpacked(r, NULL);
}

/* CreateKey with policy (NULL: none, so the default applies) as c. */
static Kms__Response *create_key_as(const cred *c, const char *id, const char *policy)
{
	Kms__CreateKeyRequest ck = KMS__CREATE_KEY_REQUEST__INIT;
	ck.policy = (char *)(uintptr_t)(policy ? policy : "");
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	req.create_key = &ck;
	return call_as(c, id, &req);
}

/* The same as the harness's identity; the new key's id into out. */
static void create_key(const char *policy, char out[35])
{
	Kms__Response *r = create_key_as(NULL, NULL, policy);
	if (r->status != KMS__STATUS__OK)
		fail_msg("create_key: %s", r->message);
	snprintf(out, 35, "%s", r->create_key->key_metadata->key_id);
	kms__response__free_unpacked(r, NULL);
}

/* Encrypt under key as c, with purpose=<purpose> ("": no context). */
static Kms__Response *encrypt_as(const cred *c, const char *id, const char *key,
                                 const char *purpose)
{
	Kms__StringPair pair = KMS__STRING_PAIR__INIT, *pairs[] = { &pair };
	pair.key = "purpose";
	pair.value = (char *)(uintptr_t)purpose;
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	e.key_id = (char *)(uintptr_t)key;
	e.plaintext.data = (uint8_t *)"card";
	e.plaintext.len = 4;
	e.encryption_context = pairs;
	e.n_encryption_context = purpose[0] ? 1 : 0;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &e;
	return call_as(c, id, &req);
}

static Kms__Response *random_as(const cred *c, const char *id)
{
	Kms__GenerateRandomRequest g = KMS__GENERATE_RANDOM_REQUEST__INIT;
	g.number_of_bytes = 8;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_GENERATE_RANDOM;
	req.generate_random = &g;
	return call_as(c, id, &req);
}

/* CreateGrant of operations ops[0, n_ops) by the harness's identity; the
 * grant id into out (23). */
static void create_grant_ops(const char *id, const char *key, const char *grantee,
                             const char *purpose, char **ops, size_t n_ops, char out[32])
{
	Kms__StringPair pair = KMS__STRING_PAIR__INIT, *pairs[] = { &pair };
	pair.key = "purpose";
	pair.value = (char *)(uintptr_t)purpose;
	Kms__CreateGrantRequest g = KMS__CREATE_GRANT_REQUEST__INIT;
	g.key_id = (char *)(uintptr_t)key;
	g.grantee = (char *)(uintptr_t)grantee;
	g.operations = ops;
	g.n_operations = n_ops;
	g.context = pairs;
	g.n_context = purpose[0] ? 1 : 0;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_CREATE_GRANT;
	req.create_grant = &g;
	Kms__Response *r = call_as(NULL, id, &req);
	if (r->status != KMS__STATUS__OK)
		fail_msg("create_grant: %s", r->message);
	snprintf(out, 32, "%s", r->create_grant->grant->grant_id);
	kms__response__free_unpacked(r, NULL);
}

/* CreateGrant of encrypt alone. */
static void create_grant(const char *id, const char *key, const char *grantee,
                         const char *purpose, char out[32])
{
	char *ops[] = { "encrypt" };
	create_grant_ops(id, key, grantee, purpose, ops, 1, out);
}

/* ReEncrypt blob (made with purpose=<purpose>) under dest, same context. */
static Kms__Response *re_encrypt_as(const cred *c, const char *id, ProtobufCBinaryData blob,
                                    const char *dest, const char *purpose)
{
	Kms__StringPair pair = KMS__STRING_PAIR__INIT, *pairs[] = { &pair };
	pair.key = "purpose";
	pair.value = (char *)(uintptr_t)purpose;
	Kms__ReEncryptRequest e = KMS__RE_ENCRYPT_REQUEST__INIT;
	e.ciphertext_blob = blob;
	e.source_encryption_context = pairs;
	e.n_source_encryption_context = 1;
	e.destination_key_id = (char *)(uintptr_t)dest;
	e.destination_encryption_context = pairs;
	e.n_destination_encryption_context = 1;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_RE_ENCRYPT;
	req.re_encrypt = &e;
	return call_as(c, id, &req);
}

static Kms__Response *retire_grant_as(const cred *c, const char *id, const char *grant)
{
	Kms__RetireGrantRequest g = KMS__RETIRE_GRANT_REQUEST__INIT;
	g.grant_id = (char *)(uintptr_t)grant;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_RETIRE_GRANT;
	req.retire_grant = &g;
	return call_as(c, id, &req);
}

static Kms__Response *revoke_grant(const char *id, const char *grant)
{
	Kms__RevokeGrantRequest g = KMS__REVOKE_GRANT_REQUEST__INIT;
	g.grant_id = (char *)(uintptr_t)grant;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_REVOKE_GRANT;
	req.revoke_grant = &g;
	return call_as(NULL, id, &req);
}

/* Disable, enable or delete principal name, as the harness's identity. */
static Kms__Response *principal_change(const char *id, Kms__Request__OpCase op,
                                       const char *name)
{
	Kms__DisablePrincipalRequest d = KMS__DISABLE_PRINCIPAL_REQUEST__INIT;
	Kms__EnablePrincipalRequest en = KMS__ENABLE_PRINCIPAL_REQUEST__INIT;
	Kms__DeletePrincipalRequest del = KMS__DELETE_PRINCIPAL_REQUEST__INIT;
	d.name = en.name = del.name = (char *)(uintptr_t)name;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = op;
	if (op == KMS__REQUEST__OP_DISABLE_PRINCIPAL)
		req.disable_principal = &d;
	else if (op == KMS__REQUEST__OP_ENABLE_PRINCIPAL)
		req.enable_principal = &en;
	else
		req.delete_principal = &del;
	return call_as(NULL, id, &req);
}

static Kms__Response *revoke_access_key(const char *id, const char *access_key_id)
{
	Kms__RevokeAccessKeyRequest rk = KMS__REVOKE_ACCESS_KEY_REQUEST__INIT;
	rk.access_key_id = (char *)(uintptr_t)access_key_id;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_REVOKE_ACCESS_KEY;
	req.revoke_access_key = &rk;
	return call_as(NULL, id, &req);
}

static Kms__Response *describe_principal(const char *name)
{
	Kms__DescribePrincipalRequest d = KMS__DESCRIBE_PRINCIPAL_REQUEST__INIT;
	d.name = (char *)(uintptr_t)name;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_DESCRIBE_PRINCIPAL;
	req.describe_principal = &d;
	return call_as(NULL, NULL, &req);
}

static char *get_policy(const char *key)
{
	Kms__GetKeyPolicyRequest g = KMS__GET_KEY_POLICY_REQUEST__INIT;
	g.key_id = (char *)(uintptr_t)key;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_GET_KEY_POLICY;
	req.get_key_policy = &g;
	Kms__Response *r = call_as(NULL, NULL, &req);
	if (r->status != KMS__STATUS__OK)
		fail_msg("get_key_policy %s: %s", key, r->message);
	char *policy = strdup(r->get_key_policy->policy);
	assert_non_null(policy);
	kms__response__free_unpacked(r, NULL);
	return policy;
}

#define OK KMS__STATUS__OK
#define DENIED KMS__STATUS__ACCESS_DENIED
#define STEP5 "step 5: no Allow statement or grant for this principal and operation"

/* ---- 1. grants through the operations ---- */

static void grants_live(void **state)
{
	(void)state;
	start("data-grants", true, true, NULL, 0);
	create_principal("g-app", KMS__ROLE__APP);
	create_principal("g-other", KMS__ROLE__APP);
	cred app, other;
	create_access_key("g-app", &app);
	create_access_key("g-other", &other);
	char k[35], g1[32], g2[32], g3[32], g4[32];
	create_key(NULL, k); /* the default policy: admins manage, no one uses */

	expect_status(encrypt_as(&app, "g-enc-default", k, ""), DENIED);
	expect_audit("g-enc-default", "ACCESS_DENIED", "deny", STEP5, "principal g-app may not "
	             "encrypt key k-", "g-app");

	/* Granted by the admin (signed): the very next request is allowed. */
	create_grant("g-create-1", k, "g-app", "", g1);
	/* Decided on the key: the default policy's admins-manage lists it. */
	expect_audit("g-create-1", "OK", "allow", "step 4: Allow statement 0 Sid admins-manage",
	             NULL,
	             HARNESS_ADMIN);
	expect_status(encrypt_as(&app, "g-enc-granted", k, ""), OK);
	char reason[64];
	snprintf(reason, sizeof reason, "step 4: grant %s", g1);
	expect_audit("g-enc-granted", "OK", "allow", reason, NULL, "g-app");

	/* Retired by its grantee: the next request is denied. */
	expect_status(retire_grant_as(&app, "g-retire-own", g1), OK);
	expect_audit("g-retire-own", "OK", "allow", "step 2: roles app admitted to grant "
	             "retirement", NULL, "g-app");
	expect_status(encrypt_as(&app, "g-enc-retired", k, ""), DENIED);
	expect_audit("g-enc-retired", "ACCESS_DENIED", "deny", STEP5, NULL, "g-app");

	/* A second grant, revoked by the admin: the next request is denied. */
	create_grant("g-create-2", k, "g-app", "", g2);
	expect_status(encrypt_as(&app, "g-enc-second", k, ""), OK);
	snprintf(reason, sizeof reason, "step 4: grant %s", g2);
	expect_audit("g-enc-second", "OK", "allow", reason, NULL, "g-app");
	expect_status(revoke_grant("g-revoke-2", g2), OK);
	expect_audit("g-revoke-2", "OK", "allow", "step 2: roles admin,app,auditor admitted to "
	             "principals and grants", NULL, HARNESS_ADMIN);
	expect_status(encrypt_as(&app, "g-enc-revoked", k, ""), DENIED);
	expect_audit("g-enc-revoked", "ACCESS_DENIED", "deny", STEP5, NULL, "g-app");

	/* Retired by a principal that is neither grantee nor admin: refused, and
	 * the grant still serves its grantee. */
	create_grant("g-create-3", k, "g-app", "", g3);
	Kms__Response *r = retire_grant_as(&other, "g-retire-other", g3);
	assert_non_null(strstr(r->message, "only its grantee or an admin may"));
	expect_status(r, DENIED);
	expect_audit("g-retire-other", "ACCESS_DENIED", "deny",
	             "grant retirement: neither the grantee nor an admin",
	             "principal g-other may not retire grant", "g-other");
	expect_status(encrypt_as(&app, "g-enc-still", k, ""), OK);
	snprintf(reason, sizeof reason, "step 4: grant %s", g3);
	expect_audit("g-enc-still", "OK", "allow", reason, NULL, "g-app");
	/* An admin may retire it. */
	expect_status(retire_grant_as(NULL, "g-retire-admin", g3), OK);
	expect_status(encrypt_as(&app, "g-enc-admin-retired", k, ""), DENIED);
	expect_audit("g-enc-admin-retired", "ACCESS_DENIED", "deny", STEP5, NULL, "g-app");

	/* A grant with context pairs allows only with them. */
	create_grant("g-create-4", k, "g-app", "billing", g4);
	expect_status(encrypt_as(&app, "g-enc-ctx-ok", k, "billing"), OK);
	snprintf(reason, sizeof reason, "step 4: grant %s", g4);
	expect_audit("g-enc-ctx-ok", "OK", "allow", reason, NULL, "g-app");
	expect_status(encrypt_as(&app, "g-enc-ctx-other", k, "marketing"), DENIED);
	expect_audit("g-enc-ctx-other", "ACCESS_DENIED", "deny", STEP5, NULL, "g-app");
	expect_status(encrypt_as(&app, "g-enc-ctx-none", k, ""), DENIED);
	expect_audit("g-enc-ctx-none", "ACCESS_DENIED", "deny", STEP5, NULL, "g-app");
	/* Only its grantee. */
	expect_status(encrypt_as(&other, "g-enc-ctx-notee", k, "billing"), DENIED);
	expect_audit("g-enc-ctx-notee", "ACCESS_DENIED", "deny", STEP5, NULL, "g-other");
	stop_and_check_audit();
}

/* A grant may name re_encrypt: it is decided on the blob's key and on the
 * destination, each needing its own grant (or policy). */
static void re_encrypt_granted(void **state)
{
	(void)state;
	start("data-reenc", true, true, NULL, 0);
	create_principal("re-app", KMS__ROLE__APP);
	cred app;
	create_access_key("re-app", &app);
	char k1[35], k2[35], k3[35], g1[32], g2[32];
	create_key(NULL, k1);
	create_key(NULL, k2);
	create_key(NULL, k3);
	char *source_ops[] = { "encrypt", "re_encrypt" }, *dest_ops[] = { "re_encrypt" };
	create_grant_ops("re-grant-1", k1, "re-app", "card", source_ops, 2, g1);
	create_grant_ops("re-grant-2", k2, "re-app", "card", dest_ops, 1, g2);

	Kms__Response *enc = encrypt_as(&app, "re-enc", k1, "card");
	assert_int_equal(enc->status, KMS__STATUS__OK);
	ProtobufCBinaryData blob = enc->encrypt->ciphertext_blob;

	Kms__Response *r = re_encrypt_as(&app, "re-to-k2", blob, k2, "card");
	assert_int_equal(r->status, KMS__STATUS__OK);
	assert_string_equal(r->re_encrypt->source_key_id, k1);
	assert_string_equal(r->re_encrypt->key_id, k2);
	kms__response__free_unpacked(r, NULL);
	char reason[64];
	snprintf(reason, sizeof reason, "step 4: grant %s", g2);
	expect_audit("re-to-k2", "OK", "allow", reason, NULL, "re-app");

	/* No grant on the destination: denied on it. */
	expect_status(re_encrypt_as(&app, "re-to-k3", blob, k3, "card"), DENIED);
	expect_audit("re-to-k3", "ACCESS_DENIED", "deny", STEP5, NULL, "re-app");
	/* A grant with context pairs: another context is not allowed. */
	expect_status(re_encrypt_as(&app, "re-other-ctx", blob, k2, "marketing"), DENIED);
	kms__response__free_unpacked(enc, NULL);

	/* A signed request its fields' check refuses is recorded under its
	 * signer, not under the ipc uid it came from (the harness's admin). */
	Kms__Response *bad = re_encrypt_as(&app, "re-invalid", (ProtobufCBinaryData){ 0 }, k2,
	                                   "card");
	assert_int_equal(bad->status, KMS__STATUS__INVALID_ARGUMENT);
	kms__response__free_unpacked(bad, NULL);
	expect_audit("re-invalid", "INVALID_ARGUMENT", NULL, "", NULL, "re-app");
	stop_and_check_audit();
}

/* ---- 2. disable, enable, delete: seen by the next signed request ---- */

static void principal_state_live(void **state)
{
	(void)state;
	start("data-state", true, false, NULL, 0);
	create_principal("s-app", KMS__ROLE__APP);
	cred app;
	create_access_key("s-app", &app);
	static const char allowed[] = "step 2: roles app admitted to generate_random";

	expect_status(random_as(&app, "s-before"), OK);
	expect_audit("s-before", "OK", "allow", allowed, NULL, "s-app");
	expect_status(principal_change("s-disable", KMS__REQUEST__OP_DISABLE_PRINCIPAL, "s-app"),
	              OK);
	expect_status(random_as(&app, "s-disabled"), DENIED);
	char detail[128];
	snprintf(detail, sizeof detail, "principal s-app (access key %s) is disabled", app.id);
	expect_audit("s-disabled", "ACCESS_DENIED", "deny", "disabled_principal", detail, NULL);

	expect_status(principal_change("s-enable", KMS__REQUEST__OP_ENABLE_PRINCIPAL, "s-app"),
	              OK);
	expect_status(random_as(&app, "s-enabled"), OK);
	expect_audit("s-enabled", "OK", "allow", allowed, NULL, "s-app");

	/* Deleted: its access keys were revoked with it. */
	expect_status(principal_change("s-delete", KMS__REQUEST__OP_DELETE_PRINCIPAL, "s-app"),
	              OK);
	expect_status(random_as(&app, "s-deleted"), DENIED);
	snprintf(detail, sizeof detail, "access key %s of principal s-app is revoked", app.id);
	expect_audit("s-deleted", "ACCESS_DENIED", "deny", "revoked_key", detail, NULL);
	stop_and_check_audit();
}

/* ---- 3. two access keys: one revoked, the other still serves ---- */

static void one_of_two_keys_revoked(void **state)
{
	(void)state;
	start("data-keys", true, false, NULL, 0);
	create_principal("r-app", KMS__ROLE__APP);
	cred a, b;
	create_access_key("r-app", &a);
	create_access_key("r-app", &b);
	expect_status(random_as(&a, "r-a-before"), OK);
	expect_status(random_as(&b, "r-b-before"), OK);
	expect_status(revoke_access_key("r-revoke-a", a.id), OK);

	expect_status(random_as(&a, "r-a-revoked"), DENIED);
	char detail[128];
	snprintf(detail, sizeof detail, "access key %s of principal r-app is revoked", a.id);
	expect_audit("r-a-revoked", "ACCESS_DENIED", "deny", "revoked_key", detail, NULL);
	expect_status(random_as(&b, "r-b-after"), OK);
	expect_audit("r-b-after", "OK", "allow", "step 2: roles app admitted to generate_random",
	             NULL, "r-app");
	stop_and_check_audit();
}

/* ---- 4. ipc uid 0: unsigned, the way back from a lost admin ---- */

static void ipc_root_recovery(void **state)
{
	(void)state;
	if (getuid() != 0)
		skip(); /* the harness maps the test's uid; the path is uid 0's */
	/* uid 0 is mapped to test-admin, made here with the app role only. */
	start("data-root", false, false, NULL, PRINCIPAL_ROLE_APP);

	/* Not an admin: no key control. */
	expect_status(create_key_as(NULL, "root-create-key", NULL), DENIED);
	expect_audit("root-create-key", "ACCESS_DENIED", "deny",
	             "step 2: roles app are not admitted to key control plane", NULL,
	             HARNESS_ADMIN);
	/* Unsigned from uid 0: principals may be managed all the same. */
	expect_status(create_principal_as(NULL, "root-new-admin", "new-admin", KMS__ROLE__ADMIN),
	              OK);
	expect_audit("root-new-admin", "OK", "allow", "step 2: ipc uid 0 may manage principals",
	             NULL, HARNESS_ADMIN);
	create_principal("root-app", KMS__ROLE__APP);
	cred app, admin;
	create_access_key("root-app", &app);
	create_access_key("new-admin", &admin);

	/* Signed as the app principal, from uid 0: acts as the app only. */
	expect_status(create_principal_as(&app, "root-signed-app", "not-made", KMS__ROLE__ADMIN),
	              DENIED);
	expect_audit("root-signed-app", "ACCESS_DENIED", "deny",
	             "step 2: roles app are not admitted to principals and grants", NULL,
	             "root-app");
	expect_status(describe_principal("not-made"), KMS__STATUS__NOT_FOUND);

	/* The new admin, signed, is one. */
	expect_status(create_key_as(&admin, "root-admin-key", NULL), OK);
	expect_audit("root-admin-key", "OK", "allow",
	             "step 2: roles admin admitted to key control plane", NULL, "new-admin");
	stop_and_check_audit();
}

/* ---- 5. the per-key rate limit ---- */

/* kms_throttled_total{limit="key"} from /metrics (bounded: 5 s). */
static unsigned long long key_throttles(void)
{
	char *body = NULL;
	size_t len = 0;
	assert_int_equal(audit_http_get(http_port, "/metrics", 5000, &body, &len), 200);
	assert_non_null(body);
	static const char name[] = "kms_throttled_total{limit=\"key\"} ";
	const char *at = strstr(body, name);
	if (!at)
		fail_msg("/metrics has no %s", name);
	char *end = NULL;
	unsigned long long n = strtoull(at + strlen(name), &end, 10);
	assert_true(end && *end == '\n');
	free(body);
	return n;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static void key_rate_limit(void **state)
{
	(void)state;
	start("data-rate", false, false, "[limits]\nkey_rate = 1\nkey_burst = 3\n", 0);
	char a[35], b[35];
	create_key(NULL, a); /* the harness's default policy: test-admin may use both */
	create_key(NULL, b);
	unsigned long long before = key_throttles();

	/* A bounded burst on a: served while the bucket holds, then THROTTLED. */
	uint32_t retry = 0;
	unsigned served = 0;
	char id[32], throttled_id[32] = "";
	for (int i = 0; i < BURST_TRIES && !retry; i++) {
		snprintf(id, sizeof id, "rate-a-%d", i);
		Kms__Response *r = encrypt_as(NULL, id, a, "");
		if (r->status == KMS__STATUS__THROTTLED) {
			retry = r->retry_after_ms;
			assert_true(retry > 0 && retry <= 1000);
			assert_non_null(strstr(r->message, "retry after"));
			assert_non_null(strstr(r->message, a));
			snprintf(throttled_id, sizeof throttled_id, "%s", id);
			kms__response__free_unpacked(r, NULL);
		} else {
			expect_status(r, OK);
			served++;
		}
	}
	printf("# served %u before THROTTLED, retry after %u ms\n", served, retry);
	assert_true(retry > 0);
	assert_true(served >= 3); /* the burst (and any refill meanwhile) */
	expect_audit(throttled_id, "THROTTLED", "throttled", "key rate limit", a, HARNESS_ADMIN);

	/* Another key has its own bucket. */
	expect_status(encrypt_as(NULL, "rate-b", b, ""), OK);
	expect_audit("rate-b", "OK", "allow", "step 4: Allow statement 0 Sid test-admin-all",
	             NULL, HARNESS_ADMIN);

	/* After the retry-after kmsd named, a serves again (bounded). */
	bool again = false;
	for (int i = 0; i < RETRY_TRIES && !again; i++) {
		sleep_ms(retry);
		snprintf(id, sizeof id, "rate-a-again-%d", i);
		Kms__Response *r = encrypt_as(NULL, id, a, "");
		again = r->status == KMS__STATUS__OK;
		if (!again) {
			assert_int_equal(r->status, KMS__STATUS__THROTTLED);
			retry = r->retry_after_ms ? r->retry_after_ms : 100;
		}
		kms__response__free_unpacked(r, NULL);
	}
	assert_true(again);
	expect_audit(id, "OK", "allow", "step 4: Allow statement 0 Sid test-admin-all", NULL,
	             HARNESS_ADMIN);

	unsigned long long after = key_throttles();
	printf("# kms_throttled_total{limit=\"key\"} %llu -> %llu\n", before, after);
	assert_true(after > before);
	stop_and_check_audit();
}

/* ---- 6. kms-admin key policy put: an unknown action refused ---- */

static const char kept_policy[] =
        "{\"Version\":\"2024-01-01\",\"Statement\":[{\"Sid\":\"all\",\"Effect\":\"Allow\","
        "\"Principal\":\"test-admin\",\"Action\":\"*\"}]}";
static const char unknown_action_policy[] =
        "{\"Version\":\"2024-01-01\",\"Statement\":["
        "{\"Sid\":\"all\",\"Effect\":\"Allow\",\"Principal\":\"test-admin\",\"Action\":\"*\"},"
        "{\"Sid\":\"typo\",\"Effect\":\"Allow\",\"Principal\":\"payments-svc\","
        "\"Action\":[\"encrypt\",\"encrypt_all\"]}]}";

/* The audit entry of kms-admin's request: the one put_key_policy refused. */
static json_t *refused_put(const audit_entries *e, const char *key)
{
	json_t *found = NULL;
	size_t n = 0;
	for (uint64_t i = 0; i < e->n; i++) {
		json_t *x = e->items[i];
		if (!strcmp(audit_str(x, "operation"), "put_key_policy") &&
		    !strcmp(audit_str(x, "key_id"), key) && strcmp(audit_str(x, "status"), "OK") &&
		    strcmp(audit_str(x, "phase"), "intent")) {
			found = x;
			n++;
		}
	}
	if (n != 1)
		fail_msg("%zu refused put_key_policy entries for %s, want 1", n, key);
	return found;
}

static void policy_put_unknown_action(void **state)
{
	(void)state;
	start("data-put", false, false, NULL, 0);
	char k[35];
	create_key(kept_policy, k);
	char *before = get_policy(k);

	char path[700];
	snprintf(path, sizeof path, "%s/unknown-action-policy.json", H.dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_true(fputs(unknown_action_policy, f) >= 0);
	assert_int_equal(fclose(f), 0);
	const char *bin = getenv("KMS_TEST_KMS_ADMIN");
	assert_non_null(bin);
	const char *args[] = { "key", "policy", "put", k, path, "--endpoint", H.ipc_url,
	                       "--timeout", "10000", NULL };
	run_bin_result r = run_bin(bin, args, NULL);
	printf("# kms-admin key policy put: exit %d: %s", r.code, r.err);
	assert_int_equal(r.code, 1);
	assert_string_equal(r.out, "");
	/* One line, naming the statement and member. */
	size_t len = strlen(r.err);
	assert_true(len > 0 && r.err[len - 1] == '\n');
	assert_ptr_equal(strchr(r.err, '\n'), r.err + len - 1);
	assert_non_null(strstr(r.err, "Statement[1].Action[1] is not an operation"));
	assert_null(strstr(r.err, "encrypt_all")); /* never the document's content */
	run_bin_free(&r);

	char *after = get_policy(k);
	assert_string_equal(after, before);
	free(before);
	free(after);

	char vkey[AUDIT_VKEY_MAX];
	assert_true(audit_vkey_from_log(&H, vkey));
	assert_int_equal(harness_stop(&H), 0);
	char pub[700];
	audit_public_dir(&H, subdir, pub, sizeof pub);
	audit_entries e;
	audit_load(pub, vkey, NULL, &e);
	json_t *entry = refused_put(&e, k);
	printf("# put_key_policy: %s: %s\n", audit_str(entry, "status"), audit_str(entry, "error"));
	assert_string_equal(audit_str(entry, "status"), "INVALID_ARGUMENT");
	assert_non_null(strstr(audit_str(entry, "error"), "Statement[1].Action[1]"));
	/* PutKeyPolicy decides on the key before it reads the document: the
	 * admin was allowed, then the parser refused. */
	json_t *authz = json_object_get(entry, "authz");
	assert_non_null(authz);
	assert_string_equal(audit_str(authz, "decision"), "allow");
	audit_entries_free(&e);
}

/* ---- 7. no secret created here is anywhere on disk ---- */

static bool has_bytes(const uint8_t *hay, size_t n, const void *needle, size_t len)
{
	return len <= n && memmem(hay, n, needle, len) != NULL;
}

/* The first secret (index) in bytes, as hex or raw; -1 if none. */
static int secret_in(const uint8_t *bytes, size_t len)
{
	char hex[2 * SECRET_LEN + 1];
	for (size_t i = 0; i < n_secrets; i++) {
		hex_of(secrets[i], SECRET_LEN, hex);
		if (has_bytes(bytes, len, hex, 2 * SECRET_LEN) ||
		    has_bytes(bytes, len, secrets[i], SECRET_LEN))
			return (int)i;
	}
	return -1;
}

/* Every regular file under dir (depth-bounded); counts them. */
static void no_file_holds_a_secret(const char *dir, int depth, size_t *files)
{
	assert_true(depth < 8);
	DIR *d = opendir(dir);
	if (!d)
		return;
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char path[1200];
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		struct stat sb;
		if (lstat(path, &sb) != 0)
			continue;
		if (S_ISDIR(sb.st_mode)) {
			no_file_holds_a_secret(path, depth + 1, files);
			continue;
		}
		size_t len = 0;
		uint8_t *bytes = S_ISREG(sb.st_mode) ? (uint8_t *)harness_read_file(path, &len) : NULL;
		if (!bytes)
			continue;
		(*files)++;
		int found = secret_in(bytes, len);
		free(bytes);
		if (found >= 0)
			fail_msg("access key secret %d of this test is in %s", found, path);
	}
	closedir(d);
}

static void secrets_nowhere(void **state)
{
	(void)state;
	if (!n_secrets)
		skip(); /* the cases that make access keys did not run */
	const char *dir = getenv("KMS_TEST_TOKEN_DIR");
	assert_non_null(dir);
	/* The scan finds a secret where one is: the bootstrap secret's file. */
	size_t len = 0;
	char *text = harness_read_file(bootstrap_secret_file, &len);
	assert_non_null(text);
	assert_true(has_bytes((const uint8_t *)text, len, bootstrap_hex, 2 * SECRET_LEN));
	free(text);
	size_t files = 0;
	no_file_holds_a_secret(dir, 0, &files);
	printf("# %zu secrets, %zu files under %s: none holds one\n", n_secrets, files, dir);
	assert_true(files > 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(grants_live, teardown),
		cmocka_unit_test_teardown(re_encrypt_granted, teardown),
		cmocka_unit_test_teardown(principal_state_live, teardown),
		cmocka_unit_test_teardown(one_of_two_keys_revoked, teardown),
		cmocka_unit_test_teardown(ipc_root_recovery, teardown),
		cmocka_unit_test_teardown(key_rate_limit, teardown),
		cmocka_unit_test_teardown(policy_put_unknown_action, teardown),
		cmocka_unit_test_teardown(secrets_nowhere, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
