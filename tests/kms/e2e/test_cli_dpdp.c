/*
 * test_cli_dpdp: the real kms-admin's data-principal, retention and consent
 * commands as a user runs them, against a real kmsd on a SoftHSM token
 * (docs/data-principals.md, docs/consent.md). Each command's exit code, its
 * text and --json output, and its refusals: one line on stderr, naming the
 * status and what went wrong, nothing on stdout.
 *
 *  1. dp_commands: key create --per-data-principal (and its refusal for an
 *     HMAC key), key describe, key retention set (text, --json, --days 0,
 *     the refusals); blobs for X and Y made by the real kms; data-principal
 *     hold (a principal with no sub-key yet: NOT_FOUND), erase of a held X
 *     refused naming the statute, hold --lift, erase X, X's blob then
 *     refused "was erased on" with the basis while Y's still decrypts,
 *     erase X again refused "already erased", erase Y --json, a principal
 *     never used erased ahead (a tombstone: a later encrypt is refused).
 *  2. due_listing: a key's retention of 3 days for purpose 101; nothing due
 *     at first; the retention tick's clock (a test-only file kmsd reads)
 *     moved a day on; `data-principal due` lists Z once kmsd noticed it,
 *     text and --json. Polled, bounded: no test depends on timing.
 *  3. consent_commands: scripts/consent-demo signs artefacts; consent-manager
 *     add|list|remove (text and --json); consent import (again: a no-op that
 *     says so), the pseudonym kmsd kept is what `kms pseudonym` gives for the
 *     customer; list with each filter; show --json (the artefact's digest)
 *     and --artefact-out (the imported bytes, mode 0600); pause, resume,
 *     revoke and the refused moves; a tampered artefact refused at import;
 *     unknown ids NOT_FOUND.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/support/audit_check.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"
#include "tests/support/run_bin.h"

#define CLI_WAIT_MS 60000
#define WAIT_MS 60000
#define POLL_MS 100

#define X_DP "kp_0000abcd_1_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define Y_DP "kp_0000abcd_1_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define W_DP "kp_0000abcd_1_dddddddddddddddddddddddddddddddd"
#define Z_DP "kp_0000abcd_1_cccccccccccccccccccccccccccccccc"
#define STATUTE "Income-tax Act 1961 s.44AA"
#define BASIS "DPDP Act 2023 s.12(3): erasure requested"
#define CUSTOMER "9999999999@demo"

static harness H;
static char clock_file[600];

struct run {
	int code;
	char *out;
	char *err;
};

/* Runs bin with args (NULL-terminated) and, when it talks to kmsd, the
 * endpoint; stdin from /dev/null. Bounded: killed after CLI_WAIT_MS. */
static struct run cli_run(const char *bin, bool connect, const char *const *args)
{
	const char *argv[40];
	size_t n = 0;
	for (size_t i = 0; args[i]; i++) {
		assert_true(n < 35);
		argv[n++] = args[i];
	}
	if (connect) {
		argv[n++] = "--endpoint";
		argv[n++] = H.ipc_url;
		argv[n++] = "--timeout";
		argv[n++] = "30000";
	}
	argv[n] = NULL;
	run_bin_options o = { .wait_ms = CLI_WAIT_MS };
	run_bin_result r = run_bin(bin, argv, &o);
	return (struct run){ .code = r.code, .out = r.out, .err = r.err };
}

static const char *bin_env(const char *name)
{
	const char *bin = getenv(name);
	if (!bin)
		fail_msg("%s is not set (run by ctest)", name);
	return bin;
}

#define KMS(...) cli_run(bin_env("KMS_TEST_KMS"), true, (const char *const[]){ __VA_ARGS__, NULL })
#define ADMIN(...) cli_run(bin_env("KMS_TEST_KMS_ADMIN"), true, (const char *const[]){ __VA_ARGS__, NULL })
#define DEMO(...) cli_run(bin_env("KMS_TEST_CONSENT_DEMO"), false, (const char *const[]){ __VA_ARGS__, NULL })

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

/* Fails unless r exited 0 with each of the NULL-terminated needles in its
 * stdout; frees r. */
static void expect_ok(struct run r, const char *what, const char *const *needles)
{
	bool ok = r.code == 0;
	const char *missing = "";
	for (size_t i = 0; ok && needles && needles[i]; i++)
		if (!strstr(r.out, needles[i])) {
			ok = false;
			missing = needles[i];
		}
	if (!ok)
		fail_msg("%s: exit %d, want 0 with \"%s\" in stdout\nstdout: %s\nstderr: %s", what,
		         r.code, missing, r.out, r.err);
	run_free(&r);
}

#define OK(r, what, ...) expect_ok(r, what, (const char *const[]){ __VA_ARGS__, NULL })

/* Fails unless r exited code with nothing on stdout and one line on stderr
 * holding each needle (NULL-terminated); frees r. */
static void expect_refused(struct run r, int code, const char *what, const char *const *needles)
{
	size_t len = strlen(r.err);
	bool one_line = len > 0 && r.err[len - 1] == '\n' && !memchr(r.err, '\n', len - 1);
	bool ok = r.code == code && one_line && !r.out[0];
	const char *missing = "";
	for (size_t i = 0; ok && needles[i]; i++)
		if (!strstr(r.err, needles[i])) {
			ok = false;
			missing = needles[i];
		}
	if (!ok)
		fail_msg("%s: exit %d (want %d, one line on stderr with \"%s\", nothing on stdout)\n"
		         "stdout: %s\nstderr: %s", what, r.code, code, missing, r.out, r.err);
	run_free(&r);
}

#define REFUSED(r, code, what, ...) \
	expect_refused(r, code, what, (const char *const[]){ __VA_ARGS__, NULL })

/* The JSON on stdout of a run that must succeed with nothing on stderr;
 * frees r. */
static json_t *json_of(struct run r, const char *what)
{
	if (r.code != 0 || r.err[0])
		fail_msg("%s: exit %d\nstdout: %s\nstderr: %s", what, r.code, r.out, r.err);
	json_error_t jerr;
	json_t *j = json_loads(r.out, 0, &jerr);
	if (!j)
		fail_msg("%s: not JSON (%s): %s", what, jerr.text, r.out);
	run_free(&r);
	return j;
}

static const char *jstr(const json_t *o, const char *name)
{
	const char *s = json_string_value(json_object_get(o, name));
	if (!s)
		fail_msg("no string \"%s\" in %s", name, json_dumps(o, JSON_COMPACT));
	return s;
}

static json_int_t jint(const json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);
	if (!json_is_integer(v))
		fail_msg("no integer \"%s\" in %s", name, json_dumps(o, JSON_COMPACT));
	return json_integer_value(v);
}

static void path_in(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", H.dir, name);
}

static void write_text(const char *path, const char *text)
{
	unlink(path);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static char *read_text(const char *path, size_t *len)
{
	char *t = harness_read_file(path, len);
	if (!t)
		fail_msg("cannot read %s", path);
	return t;
}

/* kms-admin --json key create ARGS...: its key id into out. */
static void create_key(char out[E2E_KEY_ID_SIZE], const char *what, struct run r)
{
	json_t *j = json_of(r, what);
	snprintf(out, E2E_KEY_ID_SIZE, "%s", jstr(j, "key_id"));
	json_decref(j);
}

/* The retention tick's clock: "now" for it, written atomically. */
static void set_clock(int64_t t)
{
	char tmp[620];
	snprintf(tmp, sizeof tmp, "%s.tmp", clock_file);
	FILE *f = fopen(tmp, "w");
	if (!f || fprintf(f, "%lld\n", (long long)t) <= 0 || fclose(f) != 0)
		fail_msg("cannot write %s", tmp);
	if (rename(tmp, clock_file) != 0)
		fail_msg("cannot rename %s", tmp);
}

static int start(void **state)
{
	(void)state;
	const char *dir = getenv("KMS_TEST_TOKEN_DIR");
	if (!dir)
		return -1;
	snprintf(clock_file, sizeof clock_file, "%s/retention-clock", dir);
	unlink(clock_file);
	static char config[800];
	snprintf(config, sizeof config, "[limits]\ntick_seconds = 1\nretention_clock_file = %s\n",
	         clock_file);
	harness_options o = { .extra_config = config };
	return harness_start(&H, &o) ? 0 : -1;
}

static int stop(void **state)
{
	(void)state;
	return harness_stop(&H) == 0 ? 0 : -1;
}

/* ---- 1. per-data-principal keys, holds, erasure ---- */

/* kms encrypt under key for dp and purpose: the blob into blob_path. */
static void seal(const char *key, const char *dp, const char *purpose, const char *blob_path)
{
	char plain[700], ctx_dp[120], ctx_purpose[40];
	path_in(plain, sizeof plain, "plain.txt");
	write_text(plain, dp);
	snprintf(ctx_dp, sizeof ctx_dp, "dp=%s", dp);
	snprintf(ctx_purpose, sizeof ctx_purpose, "purpose=%s", purpose);
	OK(KMS("encrypt", "--key", key, "--context", ctx_dp, "--context", ctx_purpose, "-i", plain,
	       "-o", blob_path),
	   "kms encrypt", "");
}

static struct run unseal(const char *dp, const char *purpose, const char *blob_path)
{
	char ctx_dp[120], ctx_purpose[40];
	snprintf(ctx_dp, sizeof ctx_dp, "dp=%s", dp);
	snprintf(ctx_purpose, sizeof ctx_purpose, "purpose=%s", purpose);
	return KMS("decrypt", "--context", ctx_dp, "--context", ctx_purpose, "-i", blob_path);
}

static void dp_key_create_and_retention(char key[E2E_KEY_ID_SIZE])
{
	create_key(key, "key create --per-data-principal",
	           ADMIN("--json", "key", "create", "--per-data-principal", "--alias",
	                 "alias/cli-dp", "--description", "per person"));
	json_t *j = json_of(ADMIN("--json", "key", "describe", "alias/cli-dp"), "key describe");
	assert_true(json_is_true(json_object_get(j, "per_data_principal")));
	assert_string_equal(jstr(j, "key_spec"), "AES_256");
	json_decref(j);
	OK(ADMIN("key", "describe", "alias/cli-dp"), "key describe", "per data principal");
	REFUSED(ADMIN("key", "create", "--per-data-principal", "--spec", "HMAC_SHA256", "--usage",
	              "GENERATE_VERIFY_MAC"),
	        1, "key create --per-data-principal --spec HMAC_SHA256", "INVALID_ARGUMENT",
	        "per-data-principal keys are AES_256 ENCRYPT_DECRYPT keys");

	OK(ADMIN("key", "retention", "set", "alias/cli-dp", "--purpose", "101", "--days", "30"),
	   "key retention set", "purpose:", "101", "retention days:", "30");
	j = json_of(ADMIN("--json", "key", "retention", "set", "alias/cli-dp", "--purpose", "101",
	                  "--days", "0"),
	            "key retention set --days 0 --json");
	assert_string_equal(jstr(j, "purpose"), "101");
	assert_int_equal(jint(j, "days"), 0);
	json_decref(j);
	OK(ADMIN("key", "retention", "set", "alias/cli-dp", "--purpose", "101", "--days", "0"),
	   "key retention set --days 0", "(removed)");
	REFUSED(ADMIN("key", "retention", "set", "alias/cli-dp", "--purpose", "101", "--days",
	              "36501"),
	        2, "key retention set --days 36501", "--days");
	REFUSED(ADMIN("key", "retention", "set", "alias/cli-dp", "--days", "3"), 2,
	        "key retention set without --purpose", "--purpose");
	REFUSED(ADMIN("key", "retention", "set", "alias/cli-dp", "--purpose", "a b", "--days", "3"),
	        1, "key retention set --purpose 'a b'", "INVALID_ARGUMENT", "purpose");
	char plain_key[E2E_KEY_ID_SIZE];
	create_key(plain_key, "key create", ADMIN("--json", "key", "create"));
	REFUSED(ADMIN("key", "retention", "set", plain_key, "--purpose", "101", "--days", "3"), 1,
	        "key retention set on a key not per data principal", "FAILED_PRECONDITION");
	REFUSED(ADMIN("data-principal", "erase", "--key", plain_key, "--dp", X_DP, "--basis", BASIS),
	        1, "data-principal erase on a key not per data principal", "FAILED_PRECONDITION");
}

/* `kms-admin report evidence` over the whole log: its erasures.json lists
 * the three erasures above, each with the key, the principal and its
 * basis, and the refused one (held) with its status. */
static void evidence_has_erasures(const char *key)
{
	Kms__HealthRequest hr = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &hr;
	Kms__Response *r = harness_call(&H, &req);
	assert_non_null(r);
	uint64_t size = r->health->audit_size;
	kms__response__free_unpacked(r, NULL);
	audit_cp cp;
	audit_wait_checkpoint(&H, size, 20000, &cp);
	audit_cp_free(&cp);
	char pack[700];
	path_in(pack, sizeof pack, "evidence");
	OK(ADMIN("report", "evidence", "--since", "2000-01-01T00:00:00Z", "--until",
	         "9999-01-01T00:00:00Z", "-o", pack),
	   "report evidence", "");
	char path[800];
	snprintf(path, sizeof path, "%s/erasures.json", pack);
	json_error_t jerr;
	json_t *doc = json_load_file(path, 0, &jerr);
	if (!doc)
		fail_msg("%s: %s", path, jerr.text);
	const char *dps[] = { X_DP, Y_DP, W_DP };
	size_t found[3] = { 0 }, i, refused = 0;
	json_t *row;
	json_array_foreach(json_object_get(doc, "erasures"), i, row) {
		if (strcmp(jstr(row, "status"), "OK")) {
			refused++;
			continue;
		}
		assert_string_equal(jstr(row, "key_id"), key);
		assert_string_equal(jstr(row, "basis"), BASIS);
		for (size_t d = 0; d < 3; d++)
			found[d] += !strcmp(jstr(row, "data_principal"), dps[d]);
	}
	for (size_t d = 0; d < 3; d++)
		if (found[d] != 1)
			fail_msg("evidence: %zu erasures of %s, want 1", found[d], dps[d]);
	assert_true(refused >= 1); /* the held one, and the second erase of X */
	json_decref(doc);
}

static void dp_commands(void **state)
{
	(void)state;
	char key[E2E_KEY_ID_SIZE], bx[700], by[700], bw[700];
	dp_key_create_and_retention(key);
	path_in(bx, sizeof bx, "x.blob");
	path_in(by, sizeof by, "y.blob");
	path_in(bw, sizeof bw, "w.blob");

	/* A use without a pseudonym in dp is refused by kmsd. */
	char plain[700];
	path_in(plain, sizeof plain, "plain.txt");
	write_text(plain, "no dp");
	REFUSED(KMS("encrypt", "--key", "alias/cli-dp", "--context", "dp=alice", "-i", plain, "-o",
	            bx),
	        1, "kms encrypt with dp=alice", "INVALID_ARGUMENT", "pseudonymize the identifier first");
	seal("alias/cli-dp", X_DP, "102", bx);
	seal("alias/cli-dp", Y_DP, "102", by);
	OK(unseal(X_DP, "102", bx), "kms decrypt X", X_DP);
	OK(unseal(Y_DP, "102", by), "kms decrypt Y", Y_DP);

	/* Holds. */
	REFUSED(ADMIN("data-principal", "hold", "--key", "alias/cli-dp", "--dp", Z_DP, "--hold",
	              STATUTE),
	        1, "hold on a principal with no sub-key", "NOT_FOUND", Z_DP, "nothing to hold");
	REFUSED(ADMIN("data-principal", "hold", "--key", "alias/cli-dp", "--dp", X_DP), 2,
	        "hold without --hold or --lift", "--hold STATUTE");
	OK(ADMIN("data-principal", "hold", "--key", "alias/cli-dp", "--dp", X_DP, "--hold", STATUTE),
	   "data-principal hold", "legal hold:", STATUTE, X_DP);
	REFUSED(ADMIN("data-principal", "erase", "--key", "alias/cli-dp", "--dp", X_DP, "--basis",
	              BASIS),
	        1, "erase of a held principal", "FAILED_PRECONDITION", "under a legal hold",
	        "(" STATUTE ")", "lift the hold");
	OK(unseal(X_DP, "102", bx), "kms decrypt X, held", X_DP);
	json_t *j = json_of(ADMIN("--json", "data-principal", "hold", "--key", "alias/cli-dp", "--dp",
	                          X_DP, "--lift"),
	                    "data-principal hold --lift --json");
	assert_string_equal(jstr(j, "hold"), "");
	assert_string_equal(jstr(j, "data_principal"), X_DP);
	json_decref(j);

	/* Erasure. */
	REFUSED(ADMIN("data-principal", "erase", "--key", "alias/cli-dp", "--dp", X_DP), 2,
	        "erase without --basis", "--basis TEXT");
	REFUSED(ADMIN("data-principal", "erase", "--key", "alias/cli-dp", "--dp", "alice", "--basis",
	              BASIS),
	        1, "erase of dp=alice", "INVALID_ARGUMENT");
	OK(ADMIN("data-principal", "erase", "--key", "alias/cli-dp", "--dp", X_DP, "--basis", BASIS),
	   "data-principal erase", "data principal:", X_DP, "erased at:", "Z\n",
	   "every blob for it under this key is unreadable from now on");
	REFUSED(unseal(X_DP, "102", bx), 1, "kms decrypt X after its erasure", "FAILED_PRECONDITION",
	        X_DP, "was erased on", "(basis: DPDP Act 2023 s.12(3)");
	OK(unseal(Y_DP, "102", by), "kms decrypt Y after X's erasure", Y_DP);
	REFUSED(ADMIN("data-principal", "erase", "--key", "alias/cli-dp", "--dp", X_DP, "--basis",
	              BASIS),
	        1, "erase of an erased principal", "FAILED_PRECONDITION", "was already erased on");
	REFUSED(ADMIN("data-principal", "hold", "--key", "alias/cli-dp", "--dp", X_DP, "--hold",
	              STATUTE),
	        1, "hold on an erased principal", "FAILED_PRECONDITION");

	int64_t before = (int64_t)time(NULL);
	j = json_of(ADMIN("--json", "data-principal", "erase", "--key", key, "--dp", Y_DP, "--basis",
	                  BASIS),
	            "data-principal erase --json");
	assert_string_equal(jstr(j, "key_id"), key);
	assert_string_equal(jstr(j, "data_principal"), Y_DP);
	assert_true(jint(j, "erased_at") >= before - 1 && jint(j, "erased_at") <= time(NULL) + 1);
	json_decref(j);
	REFUSED(unseal(Y_DP, "102", by), 1, "kms decrypt Y after its erasure", "was erased on");

	/* A principal never used: erased ahead, it can never be used. */
	OK(ADMIN("data-principal", "erase", "--key", "alias/cli-dp", "--dp", W_DP, "--basis", BASIS),
	   "erase of a principal never used", W_DP);
	char ctx_w[120];
	snprintf(ctx_w, sizeof ctx_w, "dp=%s", W_DP);
	REFUSED(KMS("encrypt", "--key", "alias/cli-dp", "--context", ctx_w, "--context",
	            "purpose=102", "-i", plain, "-o", bw),
	        1, "kms encrypt for an erased principal", "FAILED_PRECONDITION", "was erased on");
	evidence_has_erasures(key);
}

/* ---- 2. retention: data-principal due ---- */

/* Z's entry in `data-principal due --json` (a new reference), or NULL. */
static json_t *due_entry(const char *key, const char *dp)
{
	json_t *j = json_of(ADMIN("--json", "data-principal", "due"), "data-principal due --json");
	json_t *e, *found = NULL;
	size_t i;
	json_array_foreach(json_object_get(j, "erasures"), i, e) {
		if (!strcmp(jstr(e, "key_id"), key) && !strcmp(jstr(e, "data_principal"), dp))
			found = json_incref(e);
	}
	assert_string_equal(jstr(j, "next_page_token"), "");
	json_decref(j);
	return found;
}

static void due_listing(void **state)
{
	(void)state;
	char key[E2E_KEY_ID_SIZE], bz[700];
	path_in(bz, sizeof bz, "z.blob");
	create_key(key, "key create --per-data-principal",
	           ADMIN("--json", "key", "create", "--per-data-principal", "--alias",
	                 "alias/cli-retained"));
	json_t *j = json_of(ADMIN("--json", "key", "retention", "set", "alias/cli-retained",
	                          "--purpose", "101", "--days", "3"),
	                    "key retention set --json");
	assert_string_equal(jstr(j, "purpose"), "101");
	assert_int_equal(jint(j, "days"), 3);
	json_decref(j);
	seal("alias/cli-retained", Z_DP, "101", bz);
	int64_t made = (int64_t)time(NULL); /* at or after the sub-key's creation */

	assert_null(due_entry(key, Z_DP));
	OK(ADMIN("data-principal", "due"), "data-principal due (nothing due)", "DATA PRINCIPAL",
	   "ERASE AT");
	REFUSED(ADMIN("data-principal", "due", "--limit", "0"), 2, "due --limit 0", "--limit");

	/* A day and a minute on: two days before the end, kmsd notices Z. */
	set_clock(made + 86400 + 60);
	uint64_t until = e2e_now_ms() + WAIT_MS;
	json_t *e;
	while (!(e = due_entry(key, Z_DP))) {
		if (e2e_now_ms() >= until)
			fail_msg("Z not listed as due within %d ms; see %s", WAIT_MS, H.log);
		e2e_sleep_ms(POLL_MS);
	}
	assert_string_equal(jstr(e, "purpose"), "101");
	json_int_t ends = jint(e, "retention_ends_at");
	assert_true(ends >= made - 5 && ends <= made + 3 * 86400 + 5 &&
	            ends - 3 * 86400 >= made - 5);
	assert_true(jint(e, "notice_at") > 0 && jint(e, "erase_at") >= ends);
	json_decref(e);
	OK(ADMIN("data-principal", "due"), "data-principal due", key, Z_DP, "101");
	OK(unseal(Z_DP, "101", bz), "kms decrypt Z, noticed", Z_DP);
}

/* ---- 3. consent ---- */

static char consent_dir[700];

/* scripts/consent-demo: an artefact id for customer and purpose, kept as
 * DIR/<id>.json. */
static void demo_artefact(const char *id, const char *customer, const char *purpose)
{
	OK(DEMO(consent_dir, "--id", id, "--customer", customer, "--purpose", purpose),
	   "scripts/consent-demo", "");
	char from[800], to[800];
	snprintf(from, sizeof from, "%s/artefact.json", consent_dir);
	snprintf(to, sizeof to, "%s/%s.json", consent_dir, id);
	if (rename(from, to) != 0)
		fail_msg("cannot rename %s", from);
}

static void artefact_path(char *out, size_t cap, const char *id)
{
	snprintf(out, cap, "%s/%s.json", consent_dir, id);
}

/* The ids in a `consent list --json` with the options given. */
static void list_is(const char *want, const char *what, struct run r)
{
	json_t *j = json_of(r, what);
	char got[200] = "";
	json_t *c;
	size_t i;
	json_array_foreach(json_object_get(j, "consents"), i, c) {
		size_t n = strlen(got);
		snprintf(got + n, sizeof got - n, "%s%s", n ? "," : "", jstr(c, "id"));
	}
	json_decref(j);
	if (strcmp(got, want))
		fail_msg("%s: consents [%s], want [%s]", what, got, want);
}

static void consent_managers(const char *dp_key)
{
	char jwk[800];
	snprintf(jwk, sizeof jwk, "%s/cm.jwk", consent_dir);
	json_t *j = json_of(ADMIN("--json", "consent-manager", "add", "demo-cm", "--jwk", jwk,
	                          "--dp-key", "alias/cli-pseudonyms"),
	                    "consent-manager add --json");
	assert_string_equal(jstr(j, "id"), "demo-cm");
	assert_string_equal(jstr(j, "kid"), "demo-cm-1");
	assert_string_equal(jstr(j, "dp_key_id"), dp_key);
	assert_string_equal(jstr(j, "principal"), "");
	assert_true(json_is_false(json_object_get(j, "removed")));
	json_t *k = json_object_get(j, "jwk");
	assert_string_equal(jstr(k, "kty"), "RSA");
	assert_null(json_object_get(k, "d"));
	json_decref(j);
	REFUSED(ADMIN("consent-manager", "add", "demo-cm", "--jwk", jwk, "--dp-key",
	              "alias/cli-pseudonyms"),
	        1, "consent-manager add of a registered id", "demo-cm");
	REFUSED(ADMIN("consent-manager", "add", "other-cm", "--jwk", jwk), 2,
	        "consent-manager add without --dp-key", "--dp-key");
	OK(ADMIN("consent-manager", "list"), "consent-manager list", "demo-cm", "demo-cm-1",
	   "active");
	j = json_of(ADMIN("--json", "consent-manager", "list"), "consent-manager list --json");
	assert_int_equal(json_array_size(json_object_get(j, "managers")), 1);
	assert_string_equal(jstr(json_array_get(json_object_get(j, "managers"), 0), "id"),
	                    "demo-cm");
	json_decref(j);
}

/* Imports c1 (purpose 101, CUSTOMER) and c2 (102, another person); checks
 * c1's pseudonym against kms pseudonym's; into dp. */
static void consent_imports(char dp[128])
{
	char c1[800], c2[800], customer[700];
	artefact_path(c1, sizeof c1, "cli-c1");
	artefact_path(c2, sizeof c2, "cli-c2");
	OK(ADMIN("consent", "import", c1), "consent import", "id:", "cli-c1", "status:", "ACTIVE",
	   "manager:", "demo-cm");
	struct run again = ADMIN("consent", "import", c1);
	if (again.code != 0 || !strstr(again.err, "already imported"))
		fail_msg("consent import again: exit %d, stderr %s", again.code, again.err);
	run_free(&again);
	json_t *j = json_of(ADMIN("--json", "consent", "import", c2), "consent import --json");
	assert_string_equal(jstr(j, "id"), "cli-c2");
	assert_string_equal(jstr(j, "purpose"), "102");
	json_decref(j);

	j = json_of(ADMIN("--json", "consent", "show", "cli-c1"), "consent show --json");
	snprintf(dp, 128, "%s", jstr(j, "data_principal"));
	json_decref(j);
	path_in(customer, sizeof customer, "customer.txt");
	write_text(customer, CUSTOMER "\n");
	struct run p = KMS("pseudonym", "--key", "alias/cli-pseudonyms", "--file", customer);
	if (p.code != 0 || strncmp(p.out, dp, strlen(dp)) || strcmp(p.out + strlen(dp), "\n"))
		fail_msg("kms pseudonym of the customer: exit %d \"%s\", kmsd kept \"%s\"", p.code,
		         p.out, dp);
	run_free(&p);
	assert_non_null(strstr(dp, "kp_"));
}

static void consent_lists(const char *dp)
{
	list_is("cli-c1,cli-c2", "consent list", ADMIN("--json", "consent", "list"));
	list_is("cli-c1,cli-c2", "consent list --manager demo-cm",
	        ADMIN("--json", "consent", "list", "--manager", "demo-cm"));
	list_is("", "consent list --manager nobody",
	        ADMIN("--json", "consent", "list", "--manager", "nobody"));
	list_is("cli-c1", "consent list --dp", ADMIN("--json", "consent", "list", "--dp", dp));
	list_is("cli-c2", "consent list --purpose 102",
	        ADMIN("--json", "consent", "list", "--purpose", "102"));
	list_is("cli-c1,cli-c2", "consent list --status ACTIVE",
	        ADMIN("--json", "consent", "list", "--status", "ACTIVE"));
	list_is("", "consent list --status REVOKED",
	        ADMIN("--json", "consent", "list", "--status", "REVOKED"));
	OK(ADMIN("consent", "list", "--purpose", "101"), "consent list --purpose 101", "ID",
	   "PURPOSE", "cli-c1", dp);
}

static void consent_show(void)
{
	char c1[800], out[700];
	artefact_path(c1, sizeof c1, "cli-c1");
	path_in(out, sizeof out, "shown-artefact.json");
	unlink(out);
	json_t *j = json_of(ADMIN("--json", "consent", "show", "cli-c1"), "consent show --json");
	assert_string_equal(jstr(j, "manager"), "demo-cm");
	assert_string_equal(jstr(j, "purpose"), "101");
	assert_string_equal(jstr(j, "fetch_type"), "PERIODIC");
	assert_string_equal(jstr(j, "status"), "ACTIVE");
	assert_string_equal(jstr(j, "frequency_unit"), "INF");
	assert_int_equal(jint(j, "uses"), 0);
	assert_true(jint(j, "consent_start") < jint(j, "consent_expiry"));
	struct run sum = cli_run("sha256sum", false, (const char *const[]){ c1, NULL });
	assert_int_equal(sum.code, 0);
	assert_int_equal(strncmp(sum.out, jstr(j, "artefact_sha256"), 64), 0);
	run_free(&sum);
	json_decref(j);

	OK(ADMIN("consent", "show", "cli-c1", "--artefact-out", out), "consent show --artefact-out",
	   "status:", "ACTIVE", "valid until:");
	size_t a_len, b_len;
	char *a = read_text(c1, &a_len), *b = read_text(out, &b_len);
	assert_true(a_len == b_len && !memcmp(a, b, a_len));
	free(a);
	free(b);
	struct stat st;
	assert_int_equal(stat(out, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	/* The customer's id is in the artefact, and in no output but it. */
	struct run text = ADMIN("consent", "show", "cli-c1");
	assert_null(strstr(text.out, CUSTOMER));
	run_free(&text);
}

static void consent_status_changes(void)
{
	OK(ADMIN("consent", "pause", "cli-c1"), "consent pause", "status:", "PAUSED");
	REFUSED(ADMIN("consent", "pause", "cli-c1"), 1, "consent pause of a paused consent",
	        "FAILED_PRECONDITION");
	json_t *j = json_of(ADMIN("--json", "consent", "resume", "cli-c1"), "consent resume --json");
	assert_string_equal(jstr(j, "status"), "ACTIVE");
	json_decref(j);
	REFUSED(ADMIN("consent", "resume", "cli-c1"), 1, "consent resume of an active consent",
	        "FAILED_PRECONDITION");
	OK(ADMIN("consent", "revoke", "cli-c1"), "consent revoke", "status:", "REVOKED");
	REFUSED(ADMIN("consent", "resume", "cli-c1"), 1, "consent resume of a revoked consent",
	        "FAILED_PRECONDITION");
	REFUSED(ADMIN("consent", "revoke", "cli-c1"), 1, "consent revoke of a revoked consent",
	        "FAILED_PRECONDITION");
	list_is("cli-c1", "consent list --status REVOKED after the revocation",
	        ADMIN("--json", "consent", "list", "--status", "REVOKED"));
	list_is("cli-c2", "consent list --status ACTIVE after the revocation",
	        ADMIN("--json", "consent", "list", "--status", "ACTIVE"));
}

/* One byte of c3's ConsentDetail changed: its signature no longer verifies. */
static void consent_refusals(void)
{
	char c3[800], bad[800];
	artefact_path(c3, sizeof c3, "cli-c3");
	artefact_path(bad, sizeof bad, "cli-c3-tampered");
	size_t len;
	char *doc = read_text(c3, &len);
	char *text = strstr(doc, "\"demonstration ");
	assert_non_null(text);
	text[1] = 'D';
	write_text(bad, doc);
	free(doc);
	REFUSED(ADMIN("consent", "import", bad), 1, "consent import of a tampered artefact",
	        "INVALID_ARGUMENT", "cli-c3", "signature does not verify");
	REFUSED(ADMIN("consent", "show", "cli-c3"), 1, "consent show of a refused artefact",
	        "NOT_FOUND");
	REFUSED(ADMIN("consent", "show", "no-such-consent"), 1, "consent show of an unknown id",
	        "NOT_FOUND");
	REFUSED(ADMIN("consent", "revoke", "no-such-consent"), 1, "consent revoke of an unknown id",
	        "NOT_FOUND");
	REFUSED(ADMIN("consent", "import", "/nonexistent/artefact.json"), 2,
	        "consent import of a missing file", "/nonexistent/artefact.json");
	REFUSED(ADMIN("consent-manager", "remove", "no-such-cm"), 1,
	        "consent-manager remove of an unknown id", "NOT_FOUND");
}

static void consent_commands(void **state)
{
	(void)state;
	char dp_key[E2E_KEY_ID_SIZE], dp[128];
	path_in(consent_dir, sizeof consent_dir, "consent");
	demo_artefact("cli-c1", CUSTOMER, "101");
	demo_artefact("cli-c2", "8888888888@demo", "102");
	demo_artefact("cli-c3", CUSTOMER, "101");
	create_key(dp_key, "key create --spec HMAC_SHA256",
	           ADMIN("--json", "key", "create", "--spec", "HMAC_SHA256", "--usage",
	                 "GENERATE_VERIFY_MAC", "--alias", "alias/cli-pseudonyms"));
	OK(ADMIN("grant", "create", "--key", "alias/cli-pseudonyms", "--grantee", HARNESS_ADMIN,
	         "--op", "pseudonymize"),
	   "grant create --op pseudonymize", "");
	consent_managers(dp_key);
	consent_imports(dp);
	consent_lists(dp);
	consent_show();
	consent_status_changes();
	consent_refusals();

	json_t *j = json_of(ADMIN("--json", "consent-manager", "remove", "demo-cm"),
	                    "consent-manager remove --json");
	assert_true(json_is_true(json_object_get(j, "removed")));
	assert_true(jint(j, "removed_at") > 0);
	json_decref(j);
	OK(ADMIN("consent-manager", "list"), "consent-manager list after the removal", "demo-cm",
	   "removed");
	/* Its artefacts are kept as evidence. */
	list_is("cli-c1,cli-c2", "consent list after the removal", ADMIN("--json", "consent", "list"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(dp_commands),
		cmocka_unit_test(due_listing),
		cmocka_unit_test(consent_commands),
	};
	return cmocka_run_group_tests(tests, start, stop);
}
