/*
 * test_authz_matrix: every operation of the protocol x every role set x
 * three key policies, against a real kmsd, checked against the hand-written
 * table of tests/kms/authz/authz_expectations.h (the one the decision's
 * unit test checks too).
 *
 * Principals admin, app, auditor and app-auditor (the table's role sets;
 * "nobody" is left out: a stored principal holds at least one role) each
 * get an access key, and every cell's request is signed with it: over ipc,
 * a signed request acts as its signer whatever uid sent it. Keys carry the
 * table's three policies (none: kmsd's built-in default; allow-app; deny).
 * Each cell gets what it needs first, made by test-admin (a fresh key for
 * the operations that change a key's state or policy, a principal, an
 * alias, an access key or a grant to act on; a rotate_kek cell waits until
 * the previous rotation's KEK is retired), so an allowed cell must come
 * back OK, not merely "not denied". A denied cell must come back
 * ACCESS_DENIED naming its principal and operation. Then every cell's audit
 * entry must carry its principal and the same decision.
 *
 * The Request.op fields of the proto are walked to make sure that every
 * operation has a row in the table and a request in e2e_request.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include "kms/store/store.h"
#include "tests/kms/authz/authz_expectations.h"
#include "tests/support/audit_check.h"
#include "tests/support/consent_test.h"
#include "tests/support/e2e_request.h"
#include "tests/support/harness.h"

/* The table's role sets that can be stored principals: all but "nobody". */
#define N_ROLES 4
#define N_POLICIES 3

static harness H;

typedef struct signer {
	char access_key_id[24];
	uint8_t secret[32];
} signer;
static signer signers[N_ROLES];

/* The keys every read and data-plane cell uses, one per policy, and a blob
 * sealed under each (by test-admin, through a grant). */
static char keys[N_POLICIES][35];
static Kms__Response *sealed[N_POLICIES];

static const char *policy_text(size_t pi)
{
	return pi == 0 ? NULL : pi == 1 ? allow_app_policy : deny_policy;
}

static unsigned store_roles(unsigned expect_roles)
{
	return (expect_roles & EXPECT_ADMIN ? PRINCIPAL_ROLE_ADMIN : 0) |
	       (expect_roles & EXPECT_APP ? PRINCIPAL_ROLE_APP : 0) |
	       (expect_roles & EXPECT_AUDITOR ? PRINCIPAL_ROLE_AUDITOR : 0);
}

/* ---- as test-admin (the harness's ipc uid, unsigned) ---- */

static Kms__Response *admin_call(Kms__Request *req)
{
	req->request_id = NULL;
	Kms__Response *r = harness_call(&H, req);
	assert_non_null(r);
	return r;
}

/* Runs op as test-admin with a's arguments and insists on OK. */
static Kms__Response *admin_op(const char *op, const e2e_op_args *a)
{
	static e2e_op_request o;
	assert_true(e2e_op_request_build(&o, op, a));
	Kms__Response *r = admin_call(&o.req);
	if (r->status != KMS__STATUS__OK)
		fail_msg("setup %s by test-admin: %s", op, r->message);
	return r;
}

static void admin_op_ok(const char *op, const e2e_op_args *a)
{
	kms__response__free_unpacked(admin_op(op, a), NULL);
}

static void create_key(const char *policy, char out[35])
{
	Kms__CreateKeyRequest ck = KMS__CREATE_KEY_REQUEST__INIT;
	ck.description = "matrix";
	ck.policy = (char *)(uintptr_t)(policy ? policy : "");
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	req.create_key = &ck;
	Kms__Response *r = admin_call(&req);
	if (r->status != KMS__STATUS__OK)
		fail_msg("create_key: %s", r->message);
	snprintf(out, 35, "%s", r->create_key->key_metadata->key_id);
	kms__response__free_unpacked(r, NULL);
}

/* A grant of encrypt on key to grantee; its id into id (23 bytes). */
static void grant(const char *key, const char *grantee, char id[23])
{
	e2e_op_args a = { .key = key, .grantee = grantee };
	Kms__Response *r = admin_op("create_grant", &a);
	snprintf(id, 23, "%s", r->create_grant->grant->grant_id);
	kms__response__free_unpacked(r, NULL);
}

/* Principal name with role app, and (if key_id) an access key for it. */
static void make_principal(const char *name, char key_id[24])
{
	e2e_op_args a = { .principal = name };
	admin_op_ok("create_principal", &a);
	if (key_id) {
		Kms__Response *r = admin_op("create_access_key", &a);
		snprintf(key_id, 24, "%s", r->create_access_key->access_key->access_key_id);
		kms__response__free_unpacked(r, NULL);
	}
}

/* Waits (at most KEK_DRAIN_WAIT_MS, polling ListKeks as test-admin) until
 * no KEK is draining, so that a rotate_kek cell's rotation is not refused
 * for the previous cell's (kmsd re-wraps and retires on its tick). */
#define KEK_DRAIN_WAIT_MS 60000
static void wait_no_kek_draining(void)
{
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (unsigned polls = 0; polls < 100000; polls++) {
		e2e_op_args a = { 0 };
		Kms__Response *r = admin_op("list_keks", &a);
		bool draining = false;
		for (size_t i = 0; i < r->list_keks->n_keks; i++)
			draining |= r->list_keks->keks[i]->state == KMS__KEK_STATE__KEK_DRAINING;
		kms__response__free_unpacked(r, NULL);
		if (!draining)
			return;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
		if (ms > KEK_DRAIN_WAIT_MS)
			break;
		nanosleep(&(struct timespec){ 0, 50000000L }, NULL);
	}
	fail_msg("a KEK is still draining after %d ms: the re-wrap job did not finish",
	         KEK_DRAIN_WAIT_MS);
}

static void make_signer(size_t role)
{
	e2e_op_args a = { .principal = expect_principals[role].name };
	Kms__Response *r = admin_op("create_access_key", &a);
	assert_int_equal(r->create_access_key->secret.len, sizeof signers[role].secret);
	memcpy(signers[role].secret, r->create_access_key->secret.data, 32);
	snprintf(signers[role].access_key_id, sizeof signers[role].access_key_id, "%s",
	         r->create_access_key->access_key->access_key_id);
	kms__response__free_unpacked(r, NULL);
}

/* ---- data-principal cells: a per-data-principal key of their own ---- */

#define WALK_DP "kp_0000abcd_1_abcdefghijklmnopqrstuvwxyz234567" /* e2e_request.c's */

static void create_dp_key(const char *policy, char out[35])
{
	Kms__CreateKeyRequest ck = KMS__CREATE_KEY_REQUEST__INIT;
	ck.description = "matrix dp";
	ck.policy = (char *)(uintptr_t)(policy ? policy : "");
	ck.per_data_principal = true;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	req.create_key = &ck;
	Kms__Response *r = admin_call(&req);
	if (r->status != KMS__STATUS__OK)
		fail_msg("create_key (per data principal): %s", r->message);
	snprintf(out, 35, "%s", r->create_key->key_metadata->key_id);
	kms__response__free_unpacked(r, NULL);
}

/* WALK_DP's sub-key under key made (a hold needs one): test-admin seals
 * for it through a grant. */
static void use_dp(const char *key)
{
	char id[23];
	grant(key, HARNESS_ADMIN, id);
	Kms__StringPair pair = KMS__STRING_PAIR__INIT, *pairs[1] = { &pair };
	pair.key = "dp";
	pair.value = WALK_DP;
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	e.key_id = (char *)(uintptr_t)key;
	e.plaintext = (ProtobufCBinaryData){ 1, (uint8_t *)"x" };
	e.encryption_context = pairs;
	e.n_encryption_context = 1;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &e;
	Kms__Response *r = admin_call(&req);
	if (r->status != KMS__STATUS__OK)
		fail_msg("encrypt for %s: %s", WALK_DP, r->message);
	kms__response__free_unpacked(r, NULL);
}

/* ---- consent cells: a Consent Manager and artefacts of their own ---- */

static char dp_key[35];            /* an HMAC key, the Consent Managers' dp key */

/* Registers Consent Manager cm_id, its key kid cm_id, bound to principal
 * (NULL: none); the signer into s. */
static void make_cm(const char *cm_id, const char *principal, consent_signer *s)
{
	consent_signer_make(s, cm_id);
	e2e_op_args a = { .cm_id = cm_id, .jwk = s->public_jwk, .dp_key = dp_key,
		          .cm_principal = principal };
	admin_op_ok("add_consent_manager", &a);
}

static char *make_artefact(const consent_signer *s, const char *id, size_t *len)
{
	int64_t now = (int64_t)time(NULL);
	consent_spec spec = { .id = id, .customer = "9999999999@matrix", .purpose = "101",
		              .start = now - 3600, .expiry = now + 86400 };
	return consent_artefact_make(s, &spec, len);
}

/* ---- one cell ---- */

/* What a cell acts on, made fresh for it where acting changes it. */
typedef struct cell {
	char id[48];          /* its request id */
	char key[35];
	char principal[32];
	char alias[48];
	char access_key_id[24];
	char grant_id[23];
	char cm_id[48];
	consent_signer cm;
	char *artefact;
	e2e_op_args args;
} cell;

static bool among(const char *op, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(op, names[i]))
			return true;
	return false;
}
#define AMONG(op, ...) \
	among(op, (const char *const[]){ __VA_ARGS__ }, \
	      sizeof((const char *const[]){ __VA_ARGS__ }) / sizeof(const char *))

static void prepare(cell *c, const char *op, size_t op_i, size_t pi, size_t role)
{
	memset(c, 0, sizeof *c);
	snprintf(c->id, sizeof c->id, "matrix-%zu-%zu-%zu", op_i, pi, role);
	memcpy(c->key, keys[pi], sizeof c->key);
	snprintf(c->principal, sizeof c->principal, "w-%zu-%zu-%zu", op_i, pi, role);
	snprintf(c->alias, sizeof c->alias, "alias/matrix-%zu-%zu-%zu", op_i, pi, role);
	e2e_op_args *a = &c->args;
	/* A key of its own for what changes a key's state or policy. */
	if (AMONG(op, "enable_key", "disable_key", "schedule_key_deletion",
	          "cancel_key_deletion", "put_key_policy"))
		create_key(policy_text(pi), c->key);
	if (AMONG(op, "erase_data_principal", "set_data_principal_hold", "set_retention"))
		create_dp_key(policy_text(pi), c->key);
	if (!strcmp(op, "set_data_principal_hold"))
		use_dp(c->key);
	a->key = c->key;
	a->blob = sealed[pi]->encrypt->ciphertext_blob;
	a->re_blob = a->blob;
	/* put_key_policy on a key with no policy: any document will do, the
	 * decision is the default policy's. */
	a->policy = policy_text(pi) ? policy_text(pi) : allow_app_policy;
	a->create_alias = a->update_alias = a->delete_alias = c->alias;
	if (AMONG(op, "update_alias", "delete_alias")) {
		e2e_op_args ca = { .key = c->key, .create_alias = c->alias };
		admin_op_ok("create_alias", &ca);
	}
	if (AMONG(op, "get_inclusion_proof", "get_consistency_proof")) {
		/* Proofs of entry 0 and from size 1 need a published checkpoint
		 * of at least 2 entries: kmsd publishes on its own clock. */
		audit_cp cp;
		audit_wait_checkpoint(&H, 2, 15000, &cp);
		audit_cp_free(&cp);
	}
	/* One rotation at a time: the previous cell's KEK must be retired. */
	if (!strcmp(op, "rotate_kek"))
		wait_no_kek_draining();
	if (!strcmp(op, "cancel_key_deletion")) {
		e2e_op_args sd = { .key = c->key };
		admin_op_ok("schedule_key_deletion", &sd);
	}
	a->principal = c->principal;
	if (AMONG(op, "describe_principal", "enable_principal", "disable_principal",
	          "delete_principal", "create_access_key", "list_access_keys",
	          "revoke_access_key", "create_grant", "revoke_grant"))
		make_principal(c->principal, !strcmp(op, "revoke_access_key") ? c->access_key_id
		                                                              : NULL);
	a->access_key_id = c->access_key_id;
	a->grantee = c->principal;
	/* Retired by its own grantee (the handler lets only the grantee or an
	 * admin retire a grant), revoked by an admin. */
	if (!strcmp(op, "retire_grant"))
		grant(c->key, expect_principals[role].name, c->grant_id);
	if (!strcmp(op, "revoke_grant"))
		grant(c->key, c->principal, c->grant_id);
	a->grant_id = c->grant_id;
	/* Consent: a Consent Manager of the cell's own, bound to the cell's
	 * principal for import and status changes (the handler admits an
	 * admin or that principal), and an artefact of its own. */
	snprintf(c->cm_id, sizeof c->cm_id, "cm-%zu-%zu-%zu", op_i, pi, role);
	a->cm_id = c->cm_id;
	a->dp_key = dp_key;
	a->consent_id = c->cm_id;
	if (!strcmp(op, "add_consent_manager")) {
		consent_signer_make(&c->cm, c->cm_id);
		a->jwk = c->cm.public_jwk;
	}
	if (AMONG(op, "remove_consent_manager", "import_consent", "set_consent_status",
	          "describe_consent"))
		make_cm(c->cm_id, role < N_ROLES ? expect_principals[role].name : NULL, &c->cm);
	if (AMONG(op, "import_consent", "set_consent_status", "describe_consent")) {
		size_t len;
		c->artefact = make_artefact(&c->cm, c->cm_id, &len);
		a->artefact = (ProtobufCBinaryData){ len, (uint8_t *)c->artefact };
	}
	if (AMONG(op, "set_consent_status", "describe_consent"))
		admin_op_ok("import_consent", a);
}

static void release(cell *c)
{
	if (c->cm.jwk)
		consent_signer_free(&c->cm);
	free(c->artefact);
}

/* The cell's request, signed as role's principal. */
static Kms__Response *run_cell(cell *c, const char *op, size_t role)
{
	static e2e_op_request o;
	assert_true(e2e_op_request_build(&o, op, &c->args));
	o.req.request_id = c->id;
	memcpy(H.access_key_id, signers[role].access_key_id, sizeof H.access_key_id);
	memcpy(H.secret, signers[role].secret, sizeof H.secret);
	Kms__Response *r = harness_call(&H, &o.req);
	H.access_key_id[0] = '\0';
	memset(H.secret, 0, sizeof H.secret);
	assert_non_null(r);
	return r;
}

/* ---- the walk ---- */

static size_t n_checked, n_denied, n_failures;

static void check_cell(const char *op, size_t op_i, size_t pi, size_t role, bool want_allow)
{
	cell c;
	prepare(&c, op, op_i, pi, role);
	Kms__Response *r = run_cell(&c, op, role);
	int st = (int)r->status;
	const char *msg = r->message;
	if (st == KMS__STATUS__OK && e2e_batch_item_status(r) >= 0) {
		st = e2e_batch_item_status(r); /* an item denied fails alone */
		msg = "(a batch item)";
	}
	const char *who = expect_principals[role].name;
	bool ok = want_allow ? st == KMS__STATUS__OK : st == KMS__STATUS__ACCESS_DENIED;
	if (!ok) {
		fprintf(stderr, "%s, principal %s, policy %zu: status %d (%s), want %s\n", op, who,
		        pi, st, msg, want_allow ? "OK" : "ACCESS_DENIED");
		n_failures++;
	}
	if (r->status == KMS__STATUS__ACCESS_DENIED) {
		/* Names the principal and the operation, never the policy. */
		char expect[96];
		snprintf(expect, sizeof expect, "principal %s may not %s", who, op);
		if (!strstr(r->message, expect) || strstr(r->message, "Statement")) {
			fprintf(stderr, "%s, principal %s: denial says \"%s\"\n", op, who,
			        r->message);
			n_failures++;
		}
	}
	n_denied += !want_allow;
	n_checked++;
	kms__response__free_unpacked(r, NULL);
	release(&c);
}

static void every_operation_role_and_policy(void **state)
{
	(void)state;
	/* Every operation of the proto has a row and a request. */
	const ProtobufCMessageDescriptor *d = &kms__request__descriptor;
	size_t ops = 0;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->type != PROTOBUF_C_TYPE_MESSAGE || !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
			continue;
		static e2e_op_request o;
		e2e_op_args a = { 0 };
		if (!expected_for(f->name))
			fail_msg("operation %s has no row in authz_expectations.h: add one", f->name);
		if (!e2e_op_request_build(&o, f->name, &a))
			fail_msg("operation %s has no request in e2e_request.c: add one", f->name);
		ops++;
	}
	assert_int_equal(ops, sizeof table / sizeof table[0]);

	/* In the table's order: the data plane first, while the shared keys
	 * are as made; what changes a key acts on a key of its own. */
	for (size_t op_i = 0; op_i < ops; op_i++) {
		const expectation *e = &table[op_i];
		for (size_t pi = 0; pi < N_POLICIES; pi++)
			for (size_t role = 0; role < N_ROLES; role++)
				check_cell(e->op, op_i, pi, role, e->by_policy[pi][role] == 'A');
	}
	printf("# %zu cells (%zu operations x %d policies x %d role sets), %zu denied, "
	       "%zu wrong\n", n_checked, ops, N_POLICIES, N_ROLES, n_denied, n_failures);
	assert_int_equal(n_failures, 0);
	assert_int_equal(n_checked, ops * N_POLICIES * N_ROLES);
}

/* Each cell's audit entry names its principal and the same decision. */
static void every_cell_audited(void **state)
{
	(void)state;
	audit_cp cp;
	audit_get_checkpoint(&H, &cp);
	assert_int_equal(harness_stop(&H), 0);
	char pub[700];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	audit_entries e;
	audit_load(pub, cp.vkey, NULL, &e);
	size_t ops = sizeof table / sizeof table[0], wrong = 0;
	for (size_t op_i = 0; op_i < ops; op_i++)
		for (size_t pi = 0; pi < N_POLICIES; pi++)
			for (size_t role = 0; role < N_ROLES; role++) {
				char id[48];
				snprintf(id, sizeof id, "matrix-%zu-%zu-%zu", op_i, pi, role);
				bool allow = table[op_i].by_policy[pi][role] == 'A';
				bool found = false;
				for (uint64_t i = 0; i < e.n && !found; i++) {
					json_t *entry = e.items[i];
					json_t *authz = json_object_get(entry, "authz");
					if (strcmp(audit_str(entry, "request_id"), id) || !authz)
						continue;
					found = !strcmp(audit_str(entry, "principal"),
					                expect_principals[role].name) &&
					        !strcmp(audit_str(entry, "access_key_id"),
					                signers[role].access_key_id) &&
					        !strcmp(audit_str(authz, "decision"),
					                allow ? "allow" : "deny") &&
					        audit_str(authz, "reason")[0] != '\0';
				}
				if (!found) {
					fprintf(stderr, "%s (%s, policy %zu, %s): no entry with "
					        "decision %s\n", id, table[op_i].op, pi,
					        expect_principals[role].name, allow ? "allow" : "deny");
					wrong++;
				}
			}
	assert_int_equal(wrong, 0);
	audit_entries_free(&e);
	audit_cp_free(&cp);
}

static int setup(void **state)
{
	(void)state;
	/* kmsd's built-in default policy; a tick a second, so that the KEK a
	 * rotate_kek cell replaced is re-wrapped and retired before the next. */
	harness_options o = { .default_key_policy = "", .extra_config = "[limits]\ntick_seconds = 1\n" };
	memset(&H, 0, sizeof H);
	for (size_t r = 0; r < N_ROLES; r++)
		if (!harness_add_principal(&H, &o, expect_principals[r].name,
		                           store_roles(expect_principals[r].roles)))
			return -1;
	if (!harness_start(&H, &o))
		return -1;
	return 0;
}

static void make_keys_and_signers(void **state)
{
	(void)state;
	for (size_t r = 0; r < N_ROLES; r++)
		make_signer(r);
	Kms__CreateKeyRequest ck = KMS__CREATE_KEY_REQUEST__INIT;
	ck.description = "matrix dp key";
	ck.key_spec = KMS__KEY_SPEC__HMAC_SHA256;
	ck.key_usage = KMS__KEY_USAGE__GENERATE_VERIFY_MAC;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	req.create_key = &ck;
	Kms__Response *r = admin_call(&req);
	if (r->status != KMS__STATUS__OK)
		fail_msg("create_key (HMAC): %s", r->message);
	snprintf(dp_key, sizeof dp_key, "%s", r->create_key->key_metadata->key_id);
	kms__response__free_unpacked(r, NULL);
	for (size_t pi = 0; pi < N_POLICIES; pi++) {
		create_key(policy_text(pi), keys[pi]);
		/* test-admin seals a blob through a grant (no policy lets it). */
		char id[23];
		grant(keys[pi], HARNESS_ADMIN, id);
		e2e_op_args a = { .key = keys[pi] };
		sealed[pi] = admin_op("encrypt", &a);
	}
}

static int teardown(void **state)
{
	(void)state;
	for (size_t pi = 0; pi < N_POLICIES; pi++)
		if (sealed[pi])
			kms__response__free_unpacked(sealed[pi], NULL);
	if (H.pid > 0)
		harness_kill9(&H);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(make_keys_and_signers),
		cmocka_unit_test(every_operation_role_and_policy),
		cmocka_unit_test(every_cell_audited),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
