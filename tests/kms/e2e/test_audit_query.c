/*
 * test_audit_query: the breach query and the evidence pack, run as an
 * auditor would run them (kms-admin as a process) against a real kmsd.
 *
 * - A scripted workload in three parts, A, B and C, by two principals
 *   (app-p and app-q, each signing with its own access key) on several
 *   keys with `dp` and `purpose` in their contexts, one request of app-p
 *   denied by a key policy. The window is taken from the entries' own
 *   times (B's first entry to C's first entry), not from a clock here:
 *   `kms-admin audit query --principal app-p` over it must name exactly
 *   B's keys, data principals and purposes of app-p (A's, C's and app-q's
 *   left out), with 4 entries, 3 allowed and 1 denied, and the checkpoint
 *   size it verified against; --access-key narrows it to that key.
 * - Health tells an admin where the data directory and store are, and an
 *   app principal nothing; `report residency --json` has the store.
 * - `kms-admin report evidence` over the same window writes the pack;
 *   its reports count B's uses and the denial. kmsd is stopped, the pack
 *   copied elsewhere, and `kms-admin audit verify` on the copy passes
 *   with the pack's own verifier key; one byte changed in an entry bundle
 *   of the copy, and it fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/support/audit_check.h"
#include "tests/support/harness.h"
#include "tests/support/run_bin.h"

#define SECRET_LEN 32
#define N_DP 7

static harness H;

typedef struct cred {
	char id[24];
	uint8_t secret[SECRET_LEN];
} cred;

static cred P, Q;
static char k1[35], k2[35], k3[35], k4[35], kdeny[35];
static char since[40], until[40];

/* Syntactically valid pseudonyms (common/pseudonym.h's text form). */
static const char *dp[N_DP] = {
	"kp_0a1b2c3d_1_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	"kp_0a1b2c3d_1_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
	"kp_0a1b2c3d_1_cccccccccccccccccccccccccccccccc",
	"kp_0a1b2c3d_1_dddddddddddddddddddddddddddddddd",
	"kp_0a1b2c3d_1_eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
	"kp_0a1b2c3d_1_ffffffffffffffffffffffffffffffff",
	"kp_0a1b2c3d_1_gggggggggggggggggggggggggggggggg",
};

static int teardown(void **state)
{
	(void)state;
	if (H.pid > 0)
		harness_kill9(&H);
	return 0;
}

/* Sends req as c (NULL: the harness's test-admin, unsigned over ipc). */
static Kms__Response *call_as(const cred *c, const char *id, Kms__Request *req)
{
	if (c) {
		snprintf(H.access_key_id, sizeof H.access_key_id, "%s", c->id);
		memcpy(H.secret, c->secret, SECRET_LEN);
	}
	req->request_id = (char *)(uintptr_t)id;
	Kms__Response *r = harness_call(&H, req);
	H.access_key_id[0] = '\0';
	memset(H.secret, 0, SECRET_LEN);
	req->request_id = NULL;
	if (!r)
		fail_msg("request %s: no reply from kmsd", id ? id : "(harness id)");
	return r;
}

static void create_principal(const char *name, cred *out)
{
	Kms__Role roles[] = { KMS__ROLE__APP };
	Kms__CreatePrincipalRequest cp = KMS__CREATE_PRINCIPAL_REQUEST__INIT;
	cp.name = (char *)(uintptr_t)name;
	cp.roles = roles;
	cp.n_roles = 1;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_CREATE_PRINCIPAL;
	req.create_principal = &cp;
	Kms__Response *r = call_as(NULL, NULL, &req);
	if (r->status != KMS__STATUS__OK)
		fail_msg("create_principal %s: %s", name, r->message);
	kms__response__free_unpacked(r, NULL);

	Kms__CreateAccessKeyRequest ck = KMS__CREATE_ACCESS_KEY_REQUEST__INIT;
	ck.principal = (char *)(uintptr_t)name;
	Kms__Request kreq = KMS__REQUEST__INIT;
	kreq.op_case = KMS__REQUEST__OP_CREATE_ACCESS_KEY;
	kreq.create_access_key = &ck;
	r = call_as(NULL, NULL, &kreq);
	if (r->status != KMS__STATUS__OK)
		fail_msg("create_access_key %s: %s", name, r->message);
	assert_int_equal(r->create_access_key->secret.len, SECRET_LEN);
	snprintf(out->id, sizeof out->id, "%s", r->create_access_key->access_key->access_key_id);
	memcpy(out->secret, r->create_access_key->secret.data, SECRET_LEN);
	kms__response__free_unpacked(r, NULL);
}

static void create_key(const char *policy, char out[35])
{
	Kms__CreateKeyRequest ck = KMS__CREATE_KEY_REQUEST__INIT;
	ck.policy = (char *)(uintptr_t)(policy ? policy : "");
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	req.create_key = &ck;
	Kms__Response *r = call_as(NULL, NULL, &req);
	if (r->status != KMS__STATUS__OK)
		fail_msg("create_key: %s", r->message);
	snprintf(out, 35, "%s", r->create_key->key_metadata->key_id);
	kms__response__free_unpacked(r, NULL);
}

/* Encrypt (or, with blob, Decrypt) as c with {dp, purpose}; the reply's
 * status must be want. A ciphertext is kept in *blob_out when asked. */
static void use_key(const cred *c, const char *id, const char *key, const char *d,
                    const char *purpose, int want, ProtobufCBinaryData *blob_in,
                    ProtobufCBinaryData *blob_out)
{
	Kms__StringPair p1 = KMS__STRING_PAIR__INIT, p2 = KMS__STRING_PAIR__INIT;
	Kms__StringPair *pairs[] = { &p1, &p2 };
	p1.key = "dp";
	p1.value = (char *)(uintptr_t)d;
	p2.key = "purpose";
	p2.value = (char *)(uintptr_t)purpose;
	Kms__Request req = KMS__REQUEST__INIT;
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	Kms__DecryptRequest dr = KMS__DECRYPT_REQUEST__INIT;
	if (blob_in) {
		dr.ciphertext_blob = *blob_in;
		dr.encryption_context = pairs;
		dr.n_encryption_context = 2;
		req.op_case = KMS__REQUEST__OP_DECRYPT;
		req.decrypt = &dr;
	} else {
		e.key_id = (char *)(uintptr_t)key;
		e.plaintext.data = (uint8_t *)"card 4111";
		e.plaintext.len = 9;
		e.encryption_context = pairs;
		e.n_encryption_context = 2;
		req.op_case = KMS__REQUEST__OP_ENCRYPT;
		req.encrypt = &e;
	}
	Kms__Response *r = call_as(c, id, &req);
	if ((int)r->status != want)
		fail_msg("request %s: status %d, want %d: %s", id, (int)r->status, want, r->message);
	if (blob_out) {
		assert_non_null(r->encrypt);
		blob_out->len = r->encrypt->ciphertext_blob.len;
		blob_out->data = malloc(blob_out->len);
		assert_non_null(blob_out->data);
		memcpy(blob_out->data, r->encrypt->ciphertext_blob.data, blob_out->len);
	}
	kms__response__free_unpacked(r, NULL);
}

/* The verified entries of kmsd's published log, once its checkpoint
 * covers every request so far (each poll is an entry of its own). */
static void load_log(audit_entries *e)
{
	audit_cp cp;
	Kms__HealthRequest hr = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &hr;
	Kms__Response *r = call_as(NULL, NULL, &req);
	uint64_t size = r->health->audit_size;
	kms__response__free_unpacked(r, NULL);
	audit_wait_checkpoint(&H, size, 20000, &cp);
	char pub[700];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	audit_load(pub, cp.vkey, NULL, e);
	audit_cp_free(&cp);
}

static const char *time_of(const audit_entries *e, const char *id)
{
	json_t *entry = NULL;
	if (audit_count_id(e, id, &entry) != 1 || !entry)
		fail_msg("request %s: not once in the audit log", id);
	return audit_str(entry, "time");
}

static const char *policy_all =
	"{\"Version\":\"2024-01-01\",\"Statement\":["
	"{\"Sid\":\"admin\",\"Effect\":\"Allow\",\"Principal\":\"test-admin\",\"Action\":\"*\"},"
	"{\"Sid\":\"p\",\"Effect\":\"Allow\",\"Principal\":\"app-p\",\"Action\":\"*\"},"
	"{\"Sid\":\"q\",\"Effect\":\"Allow\",\"Principal\":\"app-q\",\"Action\":\"*\"}]}";

/* A, B, C; since and until from B's and C's first entries. */
static void run_workload(void)
{
	ProtobufCBinaryData blob = { 0 };
	create_principal("app-p", &P);
	create_principal("app-q", &Q);
	create_key(policy_all, k1);
	create_key(policy_all, k2);
	create_key(policy_all, k3);
	create_key(policy_all, k4);
	create_key(NULL, kdeny); /* the harness's default: test-admin only */

	use_key(&P, "a-1", k1, dp[0], "100", KMS__STATUS__OK, NULL, NULL);
	use_key(&Q, "a-2", k2, dp[1], "200", KMS__STATUS__OK, NULL, NULL);

	use_key(&P, "b-1", k1, dp[2], "101", KMS__STATUS__OK, NULL, &blob);
	use_key(&P, "b-2", k2, dp[3], "102", KMS__STATUS__OK, NULL, NULL);
	use_key(&P, "b-3", NULL, dp[2], "101", KMS__STATUS__OK, &blob, NULL);
	use_key(&P, "b-4", kdeny, dp[4], "103", KMS__STATUS__ACCESS_DENIED, NULL, NULL);
	use_key(&Q, "b-5", k3, dp[5], "201", KMS__STATUS__OK, NULL, NULL);

	use_key(&P, "c-1", k4, dp[6], "104", KMS__STATUS__OK, NULL, NULL);
	free(blob.data);

	audit_entries e;
	load_log(&e);
	snprintf(since, sizeof since, "%s", time_of(&e, "b-1"));
	snprintf(until, sizeof until, "%s", time_of(&e, "c-1"));
	/* The window holds B and nothing of A or C: the entries' own order. */
	if (strcmp(time_of(&e, "a-2"), since) >= 0 || strcmp(time_of(&e, "b-5"), until) >= 0)
		fail_msg("entry times do not separate the workloads: a-2 %s, b-1 %s, b-5 %s, "
		         "c-1 %s", time_of(&e, "a-2"), since, time_of(&e, "b-5"), until);
	audit_entries_free(&e);
	printf("# window %s .. %s\n", since, until);
}

static json_t *admin_json(const char *const *args)
{
	run_bin_result out = run_kms_admin(H.ipc_url, args);
	if (out.code != 0)
		fail_msg("kms-admin %s %s: exit %d: %s", args[0], args[1], out.code, out.err);
	json_error_t jerr;
	json_t *j = json_loads(out.out, 0, &jerr);
	if (!j)
		fail_msg("kms-admin %s %s --json is not JSON: %s", args[0], args[1], jerr.text);
	run_bin_free(&out);
	return j;
}

/* The names in list[i][member], sorted (the command sorts them), joined
 * by spaces; and want, sorted the same way. */
static void assert_names(json_t *list, const char *member, const char **want, size_t n)
{
	char got[1024] = "", expect[1024] = "";
	const char *sorted[8];
	size_t i;
	json_t *row;
	assert_true(n <= 8);
	json_array_foreach(list, i, row) {
		strncat(got, json_string_value(json_object_get(row, member)),
		        sizeof got - strlen(got) - 2);
		strcat(got, " ");
	}
	memcpy(sorted, want, n * sizeof *want);
	for (i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(sorted[j - 1], sorted[j]) > 0; j--) {
			const char *t = sorted[j];
			sorted[j] = sorted[j - 1];
			sorted[j - 1] = t;
		}
	for (i = 0; i < n; i++) {
		strncat(expect, sorted[i], sizeof expect - strlen(expect) - 2);
		strcat(expect, " ");
	}
	assert_string_equal(got, expect);
}

static json_int_t integer(json_t *o, const char *member)
{
	json_t *v = json_object_get(o, member);
	if (!json_is_integer(v))
		fail_msg("no integer %s", member);
	return json_integer_value(v);
}

static void breach_query(void)
{
	const char *args[] = { "audit", "query", "--principal", "app-p", "--since", since,
	                       "--until", until, "--json", NULL };
	json_t *j = admin_json(args);
	const char *keys[] = { k1, k2, kdeny };
	const char *dps[] = { dp[2], dp[3], dp[4] };
	const char *purposes[] = { "101", "102", "103" };
	assert_names(json_object_get(j, "keys"), "key_id", keys, 3);
	assert_names(json_object_get(j, "data_principals"), "dp", dps, 3);
	assert_names(json_object_get(j, "purposes"), "purpose", purposes, 3);
	assert_int_equal(integer(j, "entries"), 4);
	assert_int_equal(integer(j, "allowed"), 3);
	assert_int_equal(integer(j, "denied"), 1);
	json_t *log = json_object_get(j, "log");
	assert_true(json_is_true(json_object_get(log, "verified")));
	assert_true(integer(log, "checkpoint_size") > 0);
	/* k1: encrypt and decrypt, both allowed; kdeny: the denial. */
	json_t *row = json_array_get(json_object_get(j, "keys"), 0);
	for (size_t i = 0; i < 3; i++) {
		row = json_array_get(json_object_get(j, "keys"), i);
		const char *id = json_string_value(json_object_get(row, "key_id"));
		if (!strcmp(id, k1))
			assert_int_equal(integer(row, "allowed"), 2);
		if (!strcmp(id, kdeny))
			assert_int_equal(integer(row, "denied"), 1);
	}
	printf("# app-p in the window: 4 entries, verified against checkpoint size %lld\n",
	       (long long)integer(log, "checkpoint_size"));
	json_decref(j);

	/* Narrowed to P's access key: the same; to Q's: nothing. */
	const char *by_key[] = { "audit", "query", "--principal", "app-p", "--access-key", P.id,
	                         "--since", since, "--until", until, "--json", NULL };
	j = admin_json(by_key);
	assert_int_equal(integer(j, "entries"), 4);
	json_decref(j);
	by_key[5] = Q.id;
	j = admin_json(by_key);
	assert_int_equal(integer(j, "entries"), 0);
	assert_int_equal(json_array_size(json_object_get(j, "keys")), 0);
	json_decref(j);

	/* app-q in the same window: only b-5. */
	args[3] = "app-q";
	j = admin_json(args);
	const char *q_keys[] = { k3 }, *q_dps[] = { dp[5] }, *q_purposes[] = { "201" };
	assert_names(json_object_get(j, "keys"), "key_id", q_keys, 1);
	assert_names(json_object_get(j, "data_principals"), "dp", q_dps, 1);
	assert_names(json_object_get(j, "purposes"), "purpose", q_purposes, 1);
	json_decref(j);

	/* The text form says what it verified against. */
	args[8] = NULL;
	run_bin_result out = run_kms_admin(H.ipc_url, args);
	assert_int_equal(out.code, 0);
	assert_non_null(strstr(out.out, "against the signed checkpoint of size"));
	printf("%s", out.out);
	run_bin_free(&out);
}

/* Health: the data directory and store to an admin, nothing to an app. */
static void store_location(char data_dir[PATH_MAX])
{
	char configured[PATH_MAX];
	snprintf(configured, sizeof configured, "%s/data", H.dir);
	assert_non_null(realpath(configured, data_dir));
	Kms__HealthRequest hr = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &hr;
	Kms__Response *r = call_as(NULL, NULL, &req);
	assert_string_equal(r->health->data_dir, data_dir);
	kms__response__free_unpacked(r, NULL);
	r = call_as(&P, "health-p", &req);
	assert_int_equal(r->status, KMS__STATUS__OK);
	assert_string_equal(r->health->data_dir, "");
	assert_string_equal(r->health->store_path, "");
	kms__response__free_unpacked(r, NULL);

	const char *args[] = { "report", "residency", "--json", NULL };
	json_t *j = admin_json(args);
	char store[PATH_MAX + 16];
	snprintf(store, sizeof store, "%s/kms.db", data_dir);
	json_t *s = json_object_get(j, "store");
	assert_string_equal(json_string_value(json_object_get(s, "path")), store);
	assert_string_equal(json_string_value(json_object_get(s, "data_dir")), data_dir);
	json_decref(j);
}

static json_t *load_json(const char *dir, const char *name)
{
	char path[1200];
	json_error_t jerr;
	snprintf(path, sizeof path, "%s/%s", dir, name);
	json_t *j = json_load_file(path, 0, &jerr);
	if (!j)
		fail_msg("%s: %s", path, jerr.text);
	return j;
}

/* count of the row whose member is name in doc[list]; 0 when none. */
static json_int_t count_of(json_t *doc, const char *list, const char *member, const char *name)
{
	size_t i;
	json_t *row;
	json_array_foreach(json_object_get(doc, list), i, row)
		if (!strcmp(json_string_value(json_object_get(row, member)), name))
			return integer(row, "count");
	return 0;
}

static void make_pack(const char *pack, json_int_t *size)
{
	const char *args[] = { "report", "evidence", "--since", since, "--until", until,
	                       "-o", pack, "--json", NULL };
	json_t *j = admin_json(args);
	*size = integer(j, "checkpoint_size");
	assert_int_equal(integer(j, "entries"), 5); /* b-1 .. b-5 */
	json_decref(j);

	json_t *uses = load_json(pack, "consent-uses.json");
	assert_int_equal(count_of(uses, "by_context_purpose", "purpose", "101"), 2);
	assert_int_equal(count_of(uses, "by_context_purpose", "purpose", "102"), 1);
	assert_int_equal(count_of(uses, "by_context_purpose", "purpose", "201"), 1);
	assert_int_equal(count_of(uses, "by_context_purpose", "purpose", "103"), 0);
	assert_int_equal(count_of(uses, "by_context_purpose", "purpose", "100"), 0);
	assert_int_equal(json_array_size(json_object_get(uses, "by_context_purpose")), 3);
	assert_int_equal(integer(uses, "checkpoint_size"), *size);
	json_decref(uses);
	json_t *denials = load_json(pack, "denials.json");
	assert_int_equal(json_array_size(json_object_get(denials, "authz")), 1);
	assert_int_equal(integer(json_array_get(json_object_get(denials, "authz"), 0), "count"), 1);
	json_decref(denials);
	json_t *erasures = load_json(pack, "erasures.json");
	assert_int_equal(json_array_size(json_object_get(erasures, "erasures")), 0);
	json_decref(erasures);
	json_t *keys = load_json(pack, "keys.json");
	assert_true(json_array_size(json_object_get(keys, "keys")) >= 5);
	json_decref(keys);
	json_t *residency = load_json(pack, "residency.json");
	assert_non_null(json_object_get(residency, "store"));
	json_decref(residency);
	char readme[1200];
	snprintf(readme, sizeof readme, "%s/README.md", pack);
	char *text = harness_read_file(readme, NULL);
	assert_non_null(text);
	assert_non_null(strstr(text, "kms-admin audit verify . --key-file verifier-key"));
	free(text);
}

static run_bin_result verify(const char *dir)
{
	char key_file[1200];
	snprintf(key_file, sizeof key_file, "%s/verifier-key", dir);
	const char *args[] = { "audit", "verify", dir, "--key-file", key_file, "--json", NULL };
	return run_bin(getenv("KMS_TEST_KMS_ADMIN"), args, NULL);
}

/* The first regular file under dir (depth first), into out. */
static bool first_file(const char *dir, char *out, size_t cap)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	bool found = false;
	if (!d)
		return false;
	while (!found && (de = readdir(d))) {
		char path[1200];
		struct stat st;
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		if (lstat(path, &st) != 0)
			continue;
		if (S_ISREG(st.st_mode)) {
			snprintf(out, cap, "%s", path);
			found = true;
		} else if (S_ISDIR(st.st_mode)) {
			found = first_file(path, out, cap);
		}
	}
	closedir(d);
	return found;
}

static void flip_byte(const char *path, off_t at)
{
	int fd = open(path, O_RDWR);
	uint8_t b;
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, at), 1);
	b ^= 0x01;
	assert_int_equal(pwrite(fd, &b, 1, at), 1);
	close(fd);
}

static void pack_verifies_offline(const char *pack, json_int_t size)
{
	char copy[700], cmd[2000];
	snprintf(copy, sizeof copy, "%s/pack-copy", H.dir);
	snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", pack, copy);
	assert_int_equal(system(cmd), 0);

	run_bin_result out = verify(copy);
	if (out.code != 0)
		fail_msg("audit verify on the copy: exit %d: %s", out.code, out.err);
	json_t *j = json_loads(out.out, 0, NULL);
	assert_non_null(j);
	assert_true(json_is_true(json_object_get(j, "verified")));
	assert_int_equal(integer(j, "tree_size"), size);
	json_decref(j);
	run_bin_free(&out);

	/* The derived reports match the verified log; an edited one does not. */
	char key_file[800];
	snprintf(key_file, sizeof key_file, "%s/verifier-key", copy);
	const char *check[] = { "report", "evidence", "--check", copy, "--key-file", key_file,
		                NULL };
	out = run_bin(getenv("KMS_TEST_KMS_ADMIN"), check, NULL);
	if (out.code != 0)
		fail_msg("report evidence --check: exit %d: %s", out.code, out.err);
	assert_non_null(strstr(out.out, "derived reports match it"));
	run_bin_free(&out);
	char denials[800];
	snprintf(denials, sizeof denials, "%s/denials.json", copy);
	char *text = harness_read_file(denials, NULL);
	assert_non_null(text);
	char *one = strstr(text, "\"count\": 1");
	assert_non_null(one);
	one[strlen("\"count\": ")] = '0'; /* a denial erased from the report */
	FILE *f = fopen(denials, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	free(text);
	out = run_bin(getenv("KMS_TEST_KMS_ADMIN"), check, NULL);
	assert_int_equal(out.code, 1);
	assert_non_null(strstr(out.err, "denials.json: does not match the verified log"));
	run_bin_free(&out);

	/* One byte of the first entry, inside its JSON (past the 2-byte
	 * length and the opening '{"time":"'). */
	char bundle[1200], entries[800];
	snprintf(entries, sizeof entries, "%s/tile/entries", copy);
	assert_true(first_file(entries, bundle, sizeof bundle));
	flip_byte(bundle, 12);
	out = verify(copy);
	assert_int_equal(out.code, 1);
	assert_non_null(strstr(out.err, "verification FAILED"));
	printf("# altered %s: %s", bundle + strlen(copy) + 1, out.err);
	run_bin_free(&out);
}

static void breach_query_and_evidence(void **state)
{
	(void)state;
	char data_dir[PATH_MAX], pack[700];
	json_int_t size = 0;
	if (!harness_start(&H, NULL))
		fail_msg("kmsd did not start; see %s", H.log);
	run_workload();
	breach_query();
	store_location(data_dir);
	snprintf(pack, sizeof pack, "%s/pack", H.dir);
	make_pack(pack, &size);
	assert_int_equal(harness_stop(&H), 0);
	pack_verifies_offline(pack, size);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(breach_query_and_evidence),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
