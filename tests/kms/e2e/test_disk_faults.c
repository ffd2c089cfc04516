/*
 * test_disk_faults: EIO and ENOSPC on the store and on the audit log, and
 * kmsd fails closed and recovers (docs/robustness.md), against a real kmsd
 * on a real SoftHSM token.
 *
 * kmsd runs with tests/support/diskfault preloaded (LD_PRELOAD through its
 * environment; under ASan after the ASan runtime, which must come first).
 * For each fault below the test writes the control file, sends a round of
 * requests (CreateKey, RotateKey, PutKeyPolicy, CreateGrant, Encrypt,
 * Decrypt of an earlier blob, DescribeKey, Health), checks each answer,
 * removes the fault and checks kmsd serves again by itself, without a
 * restart:
 *   - the store (kms.db, its WAL): every write, or every sync, fails EIO;
 *     every write fails ENOSPC. A change is never answered OK (it is
 *     UNAVAILABLE naming the store) and is not applied; reads that write
 *     nothing (DescribeKey, Decrypt, Health) are still answered OK;
 *   - log.bin: every write fails EIO or ENOSPC, or every fdatasync EIO.
 *     Every request is refused UNAVAILABLE naming the audit log (every
 *     request is audited before its answer), and nothing is applied;
 *   - the published tiles and checkpoint (audit/public) and log.pos: every
 *     write, fsync, rename and creation fails EIO. Requests are answered as
 *     usual (log.bin is the durable record); the checkpoint stops growing
 *     and catches up once the fault is gone.
 * kmsd must stay up through all of it. The fault log shows each fault
 * happened. At the end kmsd is stopped (exit 0) and started again: every
 * change answered OK is there, every blob decrypts, the audit log verifies
 * with the verifier key and extends the checkpoint taken before the faults,
 * every request answered OK is in it exactly once (a change: intent and
 * outcome), and no refused request has an entry saying OK.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <protobuf-c/protobuf-c.h>

#include "tests/support/audit_check.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/e2e_request.h"
#include "tests/support/harness.h"

#define ID_MAX 48
#define RECOVERY_ATTEMPTS 100
#define RECOVERY_SLEEP_MS 50
#define CATCH_UP_MS 30000
#define POLICY_FMT "{\"Version\":\"2024-01-01\",\"Statement\":[{\"Sid\":\"p-%u\",\"Effect\":" \
                   "\"Allow\",\"Principal\":\"test-admin\",\"Action\":\"*\"}]}"

static const char *const CONFIG = "[audit]\ncheckpoint_ms = 50\n";

#define CHECK(cond, ...)                       \
	do {                                   \
		if (!(cond))                   \
			fail_msg(__VA_ARGS__); \
	} while (0)

static harness H;
static harness_options g_opts;
static char g_control[700], g_fault_log[700], g_preload[1200], g_control_env[800],
        g_log_env[800], g_data[700];
static const char *g_env[4];

typedef struct answer {
	char id[ID_MAX];
	int status;
	bool change;
} answer;

static struct {
	answer *a;
	size_t n, cap;
	unsigned seq, policy_seq, policy;   /* the policy answered OK last */
	char key[E2E_KEY_ID_SIZE];
	uint32_t primary;                   /* after the last rotation answered OK */
	char created[64][E2E_KEY_ID_SIZE];
	size_t n_created;
	char grants[64][64];
	size_t n_grants;
	uint8_t *blobs[64];
	size_t blob_len[64], n_blobs;
	unsigned faults_injected;
	unsigned refused;
} g;

/* ---- the fault library ---- */

/* The ASan runtime this process runs with ("" without ASan): kmsd, built
 * the same way, needs it first in LD_PRELOAD. */
static int find_asan(struct dl_phdr_info *info, size_t size, void *out)
{
	(void)size;
	if (info->dlpi_name && strstr(info->dlpi_name, "libasan.so")) {
		snprintf(out, 600, "%s", info->dlpi_name);
		return 1;
	}
	return 0;
}

static void set_fault(const char *rules)
{
	char tmp[720];
	snprintf(tmp, sizeof tmp, "%s.tmp", g_control);
	FILE *f = fopen(tmp, "w");
	CHECK(f && fputs(rules, f) >= 0 && fclose(f) == 0, "cannot write %s", tmp);
	CHECK(rename(tmp, g_control) == 0, "cannot rename %s", tmp);
}

static unsigned fault_lines(void)
{
	char *log = harness_read_file(g_fault_log, NULL);
	unsigned n = 0;
	for (const char *p = log; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : "")
		n++;
	free(log);
	return n;
}

/* ---- requests ---- */

static void note(const char *id, int status, bool change)
{
	if (g.n == g.cap) {
		g.cap = g.cap ? g.cap * 2 : 256;
		g.a = realloc(g.a, g.cap * sizeof *g.a);
		CHECK(g.a, "out of memory");
	}
	snprintf(g.a[g.n].id, ID_MAX, "%s", id);
	g.a[g.n].status = status;
	g.a[g.n].change = change;
	g.n++;
}

static void expect_alive(const char *when)
{
	int ws;
	CHECK(H.pid > 0 && waitpid(H.pid, &ws, WNOHANG) == 0, "kmsd is gone %s; see %s", when,
	      H.log);
}

/* Sends op (e2e_request.h) with args; the answer is noted and returned. */
static Kms__Response *send_op(const char *op, const e2e_op_args *args, bool change)
{
	e2e_op_request o;
	CHECK(e2e_op_request_build(&o, op, args), "no request for %s", op);
	char id[ID_MAX];
	snprintf(id, sizeof id, "df-%u-%s", g.seq++, op);
	o.req.request_id = id;
	Kms__Response *r = harness_call(&H, &o.req);
	CHECK(r, "%s: no answer (did kmsd die? see %s)", id, H.log);
	CHECK(!strcmp(r->request_id, id), "%s answered as %s", id, r->request_id);
	note(id, r->status, change);
	return r;
}

static const char *status_name(int status)
{
	const ProtobufCEnumValue *v =
	        protobuf_c_enum_descriptor_get_value(&kms__status__descriptor, status);
	return v ? v->name : "?";
}

/* What a round of requests must get while a fault is on. */
typedef enum expect {
	EXPECT_OK,           /* everything answered OK */
	EXPECT_STORE_DOWN,   /* changes refused naming the store; reads OK */
	EXPECT_AUDIT_DOWN,   /* everything refused naming the audit log */
} expect;

/* Encrypt writes the store only when its version needs a new block of
 * GCM uses (docs/gcm-limits.md): with the store down it may be answered
 * OK, or refused as a change is. */
static void check_answer(Kms__Response *r, const char *op, bool change, expect want)
{
	bool refused = want == EXPECT_AUDIT_DOWN || (want == EXPECT_STORE_DOWN && change);
	if (want == EXPECT_STORE_DOWN && !strcmp(op, "Encrypt") && r->status == KMS__STATUS__OK)
		refused = false;
	if (!refused) {
		CHECK(r->status == KMS__STATUS__OK, "%s %s: %s: %s", op, r->request_id,
		      status_name(r->status), r->message);
		return;
	}
	const char *needle = want == EXPECT_AUDIT_DOWN ? "audit log" : "store";
	CHECK(r->status == KMS__STATUS__UNAVAILABLE && strstr(r->message, needle),
	      "%s %s with the %s failing: %s: %s (want UNAVAILABLE naming the %s)", op,
	      r->request_id, needle, status_name(r->status), r->message, needle);
	CHECK(!strchr(r->message, '\n'), "a message of more than one line: %s", r->message);
	CHECK(r->result_case == KMS__RESPONSE__RESULT__NOT_SET, "%s refused with a result",
	      r->request_id);
	g.refused++;
}

/* One of each request; with want, the answers it must get. The model
 * (g) follows the answers OK. */
static void round_of_requests(expect want)
{
	e2e_op_args a = { .key = g.key };
	Kms__Response *r;

	r = send_op("create_key", &a, true);
	check_answer(r, "CreateKey", true, want);
	if (r->status == KMS__STATUS__OK && g.n_created < 64)
		snprintf(g.created[g.n_created++], E2E_KEY_ID_SIZE, "%s",
		         r->create_key->key_metadata->key_id);
	kms__response__free_unpacked(r, NULL);

	r = send_op("rotate_key", &a, true);
	check_answer(r, "RotateKey", true, want);
	if (r->status == KMS__STATUS__OK)
		g.primary = r->rotate_key->key_metadata->primary_version;
	kms__response__free_unpacked(r, NULL);

	char doc[300];
	unsigned seq = ++g.policy_seq;
	snprintf(doc, sizeof doc, POLICY_FMT, seq);
	a.policy = doc;
	r = send_op("put_key_policy", &a, true);
	check_answer(r, "PutKeyPolicy", true, want);
	if (r->status == KMS__STATUS__OK)
		g.policy = seq;
	kms__response__free_unpacked(r, NULL);

	a.grantee = HARNESS_ADMIN;
	r = send_op("create_grant", &a, true);
	check_answer(r, "CreateGrant", true, want);
	if (r->status == KMS__STATUS__OK && g.n_grants < 64)
		snprintf(g.grants[g.n_grants++], 64, "%s", r->create_grant->grant->grant_id);
	kms__response__free_unpacked(r, NULL);

	r = send_op("encrypt", &a, false);
	check_answer(r, "Encrypt", true, want);
	if (r->status == KMS__STATUS__OK && g.n_blobs < 64) {
		size_t len = r->encrypt->ciphertext_blob.len;
		g.blobs[g.n_blobs] = malloc(len);
		CHECK(g.blobs[g.n_blobs], "out of memory");
		memcpy(g.blobs[g.n_blobs], r->encrypt->ciphertext_blob.data, len);
		g.blob_len[g.n_blobs++] = len;
	}
	kms__response__free_unpacked(r, NULL);

	if (g.n_blobs) {
		a.blob = (ProtobufCBinaryData){ g.blob_len[0], g.blobs[0] };
		r = send_op("decrypt", &a, false);
		check_answer(r, "Decrypt", false, want);
		if (r->status == KMS__STATUS__OK)
			CHECK(r->decrypt->plaintext.len == 1 && r->decrypt->plaintext.data[0] == 'x',
			      "Decrypt gave another plaintext");
		kms__response__free_unpacked(r, NULL);
	}
	r = send_op("describe_key", &a, false);
	check_answer(r, "DescribeKey", false, want);
	kms__response__free_unpacked(r, NULL);
	r = send_op("health", &a, false);
	check_answer(r, "Health", false, want);
	kms__response__free_unpacked(r, NULL);
	expect_alive("after a round of requests");
}

/* With the fault gone, requests succeed again without a restart (the
 * first may still be refused). */
static void recovers(const char *what)
{
	set_fault("");
	for (int i = 0; i < RECOVERY_ATTEMPTS; i++) {
		e2e_op_args a = { .key = g.key };
		Kms__Response *r = send_op("rotate_key", &a, true);
		bool ok = r->status == KMS__STATUS__OK;
		if (ok)
			g.primary = r->rotate_key->key_metadata->primary_version;
		kms__response__free_unpacked(r, NULL);
		if (ok) {
			round_of_requests(EXPECT_OK);
			fprintf(stderr, "%s: served again after %d refused attempts, no restart\n", what,
			        i);
			return;
		}
		e2e_sleep_ms(RECOVERY_SLEEP_MS);
	}
	fail_msg("%s: kmsd still refuses changes %d attempts after the fault was removed; see "
	         "%s", what, RECOVERY_ATTEMPTS, H.log);
}

/* The fault on, a round of requests answered as want, the fault logged,
 * then gone and kmsd serving again. */
static void fault_case(const char *what, const char *rules, expect want)
{
	unsigned before = fault_lines();
	size_t refused_before = g.refused;
	set_fault(rules);
	round_of_requests(want);
	round_of_requests(want);
	unsigned injected = fault_lines() - before;
	CHECK(injected > 0, "%s: the fault library injected nothing (rules: %s)", what, rules);
	g.faults_injected += injected;
	fprintf(stderr, "%s: %u faults injected, %zu requests refused\n", what, injected,
	        g.refused - refused_before);
	recovers(what);
}

/* Every `calls` under audit/public and on log.pos fails EIO: requests are
 * answered OK (log.bin is the durable record), the checkpoint does not
 * grow; without the fault it catches up. */
static void publish_case(const char *calls)
{
	char rules[2400];
	audit_cp stuck;
	audit_get_checkpoint(&H, &stuck);
	snprintf(rules, sizeof rules, "fail %s %s/audit/public EIO\nfail %s %s/audit/log.pos EIO\n",
	         calls, g_data, calls, g_data);
	unsigned lines_before = fault_lines();
	set_fault(rules);
	for (int i = 0; i < 3; i++)
		round_of_requests(EXPECT_OK);
	/* Bounded: the publisher tries every checkpoint_ms. */
	for (int i = 0; i < 200 && fault_lines() == lines_before; i++)
		e2e_sleep_ms(20);
	unsigned injected = fault_lines() - lines_before;
	CHECK(injected > 0, "publishing, %s EIO: the fault library injected nothing", calls);
	g.faults_injected += injected;
	audit_cp during;
	audit_get_checkpoint(&H, &during);
	CHECK(harness_log_contains(&H, "audit: publishing a checkpoint"),
	      "kmsd did not log the failed publication");
	set_fault("");
	audit_cp caught;
	audit_wait_checkpoint(&H, during.size + 1, CATCH_UP_MS, &caught);
	fprintf(stderr, "published copy, %s EIO: %u faults injected; checkpoint %llu before, "
	        "%llu while failing, %llu after\n", calls, injected, (unsigned long long)stuck.size,
	        (unsigned long long)during.size, (unsigned long long)caught.size);
	audit_cp_free(&stuck);
	audit_cp_free(&during);
	audit_cp_free(&caught);
	expect_alive("after the publication faults");
}

/* ---- checks after the restart ---- */

static void check_state(void)
{
	Kms__Response *r = e2e_describe(&H, g.key);
	CHECK(r && r->status == KMS__STATUS__OK, "DescribeKey %s", g.key);
	CHECK(r->describe_key->key_metadata->primary_version == g.primary,
	      "key %s: primary version %u, the last rotation answered OK gave %u (a refused "
	      "rotation was applied?)", g.key, r->describe_key->key_metadata->primary_version,
	      g.primary);
	kms__response__free_unpacked(r, NULL);
	e2e_op_args a = { .key = g.key };
	r = send_op("get_key_policy", &a, false);
	CHECK(r->status == KMS__STATUS__OK, "GetKeyPolicy: %s", r->message);
	const char *sid = strstr(r->get_key_policy->policy, "\"p-");
	unsigned seq = sid ? (unsigned)strtoul(sid + 3, NULL, 10) : 0;
	CHECK(seq == g.policy, "policy p-%u, but p-%u was the last answered OK", seq, g.policy);
	kms__response__free_unpacked(r, NULL);
	for (size_t i = 0; i < g.n_created; i++) {
		r = e2e_describe(&H, g.created[i]);
		CHECK(r && r->status == KMS__STATUS__OK, "created key %s is gone", g.created[i]);
		kms__response__free_unpacked(r, NULL);
	}
	r = send_op("list_grants", &a, false);
	CHECK(r->status == KMS__STATUS__OK, "ListGrants: %s", r->message);
	for (size_t i = 0; i < g.n_grants; i++) {
		bool found = false;
		for (size_t j = 0; j < r->list_grants->n_grants; j++)
			found |= !strcmp(r->list_grants->grants[j]->grant_id, g.grants[i]);
		CHECK(found, "grant %s (answered OK) is gone", g.grants[i]);
	}
	CHECK(r->list_grants->n_grants == g.n_grants, "%zu grants, %zu were answered OK",
	      r->list_grants->n_grants, g.n_grants);
	kms__response__free_unpacked(r, NULL);
	for (size_t i = 0; i < g.n_blobs; i++) {
		r = e2e_decrypt(&H, g.blobs[i], g.blob_len[i]);
		CHECK(r && r->status == KMS__STATUS__OK, "blob %zu does not decrypt", i);
		kms__response__free_unpacked(r, NULL);
	}
}

/* With kmsd stopped cleanly (everything published). */
static void check_audit(const char *since, const char *vkey)
{
	char pub[700];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	audit_entries e;
	audit_load(pub, vkey, since, &e);
	CHECK(e.report.since_checked, "the checkpoint from before the faults was not checked");
	size_t ok = 0;
	for (size_t i = 0; i < g.n; i++) {
		const answer *x = &g.a[i];
		json_t *entry = NULL, *intent = NULL;
		size_t count = x->change ? audit_count_phase(&e, x->id, "outcome", &entry)
		                         : audit_count_id(&e, x->id, &entry);
		if (x->status == KMS__STATUS__OK) {
			ok++;
			CHECK(count == 1, "request %s was answered OK; it is in the log %zu times", x->id,
			      count);
			CHECK(!strcmp(audit_str(entry, "status"), "OK"), "request %s: entry says %s",
			      x->id, audit_str(entry, "status"));
			if (x->change)
				CHECK(audit_count_phase(&e, x->id, "intent", &intent) == 1,
				      "change %s was answered OK without its intent in the log", x->id);
		} else {
			CHECK(count <= 1, "refused request %s is in the log %zu times", x->id, count);
			if (count)
				CHECK(!strcmp(audit_str(entry, "status"), status_name(x->status)),
				      "request %s was answered %s; its entry says %s", x->id,
				      status_name(x->status), audit_str(entry, "status"));
		}
	}
	fprintf(stderr, "audit: %llu entries verified; %zu answers OK each in it once, %zu "
	        "refused\n", (unsigned long long)e.n, ok, g.n - ok);
	audit_entries_free(&e);
}

/* ---- the test ---- */

static void start(void)
{
	CHECK(harness_start(&H, &g_opts), "kmsd did not start; see %s", H.log);
}

static void disk_faults(void **state)
{
	(void)state;
	const char *lib = getenv("KMS_TEST_DISKFAULT");
	const char *dir = getenv("KMS_TEST_TOKEN_DIR");
	CHECK(lib && dir, "KMS_TEST_DISKFAULT and KMS_TEST_TOKEN_DIR must be set");
	char asan[600] = "";
	dl_iterate_phdr(find_asan, asan);
	snprintf(g_preload, sizeof g_preload, "LD_PRELOAD=%s%s%s", asan, asan[0] ? ":" : "", lib);
	snprintf(g_control, sizeof g_control, "%s/diskfault.ctl", dir);
	snprintf(g_fault_log, sizeof g_fault_log, "%s/diskfault.log", dir);
	snprintf(g_control_env, sizeof g_control_env, "DISKFAULT_CONTROL=%s", g_control);
	snprintf(g_log_env, sizeof g_log_env, "DISKFAULT_LOG=%s", g_fault_log);
	snprintf(g_data, sizeof g_data, "%s/data", dir);
	g_env[0] = g_preload;
	g_env[1] = g_control_env;
	g_env[2] = g_log_env;
	g_env[3] = NULL;
	fprintf(stderr, "kmsd runs with %s\n", g_preload);
	set_fault("");
	g_opts = (harness_options){ .extra_config = CONFIG, .env = g_env };
	start();
	CHECK(harness_create_key(&H, NULL, g.key), "CreateKey");
	round_of_requests(EXPECT_OK);
	audit_cp before;
	audit_get_checkpoint(&H, &before);

	char rules[2400];
	struct {
		const char *what, *calls, *where, *err;
		expect want;
	} cases[] = {
		{ "store: every write EIO", "write,pwrite", "kms.db", "EIO", EXPECT_STORE_DOWN },
		{ "store: every write ENOSPC", "write,pwrite", "kms.db", "ENOSPC",
		  EXPECT_STORE_DOWN },
		{ "store: every sync EIO", "fsync,fdatasync", "kms.db", "EIO", EXPECT_STORE_DOWN },
		{ "log.bin: every write EIO", "pwrite,write", "audit/log.bin", "EIO",
		  EXPECT_AUDIT_DOWN },
		{ "log.bin: every write ENOSPC", "pwrite,write,fallocate", "audit/log.bin", "ENOSPC",
		  EXPECT_AUDIT_DOWN },
		{ "log.bin: every fdatasync EIO", "fdatasync,fsync", "audit/log.bin", "EIO",
		  EXPECT_AUDIT_DOWN },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(rules, sizeof rules, "fail %s %s/%s %s\n", cases[i].calls, g_data,
		         cases[i].where, cases[i].err);
		fault_case(cases[i].what, rules, cases[i].want);
	}

	/* The published copy and log.pos: requests go on, the checkpoint
	 * waits, then catches up. */
	static const char *const publish_calls[] = { "write", "fsync", "rename" };
	for (size_t i = 0; i < sizeof publish_calls / sizeof publish_calls[0]; i++)
		publish_case(publish_calls[i]);
	round_of_requests(EXPECT_OK);

	int code = harness_stop(&H);
	CHECK(code == 0, "kmsd exit code %d after SIGTERM; see %s", code, H.log);
	start();
	check_state();
	code = harness_stop(&H);
	CHECK(code == 0, "kmsd exit code %d after SIGTERM; see %s", code, H.log);
	check_audit(before.note, before.vkey);
	audit_cp_free(&before);
	fprintf(stderr, "disk faults: %u faults injected, %zu requests answered, %u refused, "
	        "kmsd up throughout\n", g.faults_injected, g.n, g.refused);
}

static int teardown(void **state)
{
	(void)state;
	if (H.pid > 0)
		harness_kill9(&H);
	for (size_t i = 0; i < g.n_blobs; i++)
		free(g.blobs[i]);
	free(g.a);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(disk_faults, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
