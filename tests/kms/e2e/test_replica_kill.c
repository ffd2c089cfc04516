/*
 * test_replica_kill: 16 clients on three kmsd replicas (one PostgreSQL
 * store, one token; tests/support/with-postgres) while replica B is killed
 * with -9 and started again (docs/scale-out.md, "Clients that fail over").
 *
 * Each client is a libkmsclient of its own, given the three replicas'
 * endpoints and a resend time (resend_ms): NNG's REQ socket sends a
 * request that was in flight on a connection that closes again, at once,
 * on another connected replica. Each does a bounded mix: Encrypt under a
 * shared key, Decrypt of what it sealed, GenerateDataKey, and now and then
 * CreateKey. The replica holding the fleet audit log's sequencer lease is
 * killed after a third of all requests were answered (the fleet's log shows
 * it was serving its share), and started again after two thirds and once
 * another replica has taken the lease over (the time is printed); every
 * request must be answered OK. With resend_ms 0 the same run fails: the
 * requests in flight on the killed replica are lost.
 *
 * Then the fleet's log (docs/scale-out.md, "One audit log for the fleet"),
 * once nothing is pending: A's copy verifies and extends the checkpoint
 * the killed sequencer signed before it died; every answered request's id
 * (kms_last_request_id) is in it; B's and C's copies verify and extend A's
 * checkpoint. An Encrypt, Decrypt or GenerateDataKey is in it exactly
 * once: one the killed replica ran and recorded before its answer was
 * lost is answered from its record by the replica the client's resend
 * reached (docs/scale-out.md, "Request records"); one whose record was
 * being committed when the replica died is looked up once that
 * transaction ended. A CreateKey sent again answers with its key and adds
 * an entry saying so: once or twice.
 *
 * The run is made twice: over ipc:// (unsigned, the uid mapped), and over
 * tls+tcp:// with client certificates and every request signed, as
 * applications call kmsd from other machines. A resent signed request is
 * the same bytes, the same MAC: another replica accepts it.
 *
 * A CreateKey run again answers with the key its first run made (the key
 * row keeps the request's reference): every CreateKey made exactly one
 * key. An Encrypt or GenerateDataKey sent again answers with the blob its
 * first run made.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/group.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kms/client.h>

#include "tests/support/audit_check.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"

#define CLIENTS 16
#define OPS 120            /* requests per client */
#define WAIT_MS 60000

static harness A, B, C;
static harness_options oa, ob;
static char a_data[700];
static char shared_key[KMS_KEY_ID_MAX + 1];
static atomic_int answered;
/* Set once the killed replica is serving again. Each client sends its
 * last TAIL requests only then, so no client closes while one of its
 * connections to the restarted replica is still being set up (NNG 1.5.2
 * leaks a dialer that is closed in that state: the sanitizer lane saw
 * it). */
static atomic_bool victim_back;
#define TAIL 8

/* The request ids of a client's answered requests (kms_last_request_id):
 * each must be in the fleet's audit log. */
#define IDS_MAX (2 * OPS)

typedef struct client_run {
	bool tls;
	int index;
	int failed;
	int created;
	char ids[IDS_MAX][KMS_REQUEST_ID_MAX + 1];
	bool recorded[IDS_MAX]; /* a data-plane request: it leaves a request record */
	int n_ids;
	char first_failure[KMS_ERROR_MESSAGE_MAX + 32];
	uint64_t first_failure_ms; /* when (e2e_now_ms), to place it against the kill */
} client_run;

static int setup(void **state)
{
	(void)state;
	if (!getenv("KMS_TEST_PG_URL")) {
		fprintf(stderr, "test_replica_kill runs under tests/support/with-postgres\n");
		return -1;
	}
	oa = (harness_options){ .workers = 4, .with_tls = true };
	if (!harness_start(&A, &oa))
		return -1;
	snprintf(a_data, sizeof a_data, "%s/data", A.dir);
	ob = (harness_options){ .workers = 4, .with_tls = true, .store_of = a_data };
	if (!harness_replica_init(&B, "replica-b") || !harness_replica_init(&C, "replica-c"))
		return -1;
	/* B and C: A's certificates (make-certs keeps what it finds) and A's
	 * principal and access key, which are in the shared store. */
	harness *others[] = { &B, &C };
	for (size_t i = 0; i < 2; i++) {
		char cmd[1600];
		snprintf(cmd, sizeof cmd, "cp -r '%s/tls' '%s/tls'", A.dir, others[i]->dir);
		if (system(cmd) != 0)
			return -1;
		memcpy(others[i]->access_key_id, A.access_key_id, sizeof A.access_key_id);
		memcpy(others[i]->secret, A.secret, sizeof A.secret);
		if (!harness_start(others[i], &ob))
			return -1;
	}
	return harness_create_key(&A, NULL, shared_key) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	int a = harness_stop(&A), b = harness_stop(&B), c = harness_stop(&C);
	return a || b || c;
}

static void failed(client_run *r, const char *what, const kms_error *err)
{
	if (!r->failed++) {
		snprintf(r->first_failure, sizeof r->first_failure, "%s: %s", what, err->message);
		r->first_failure_ms = e2e_now_ms();
	}
}

static void answered_id(client_run *r, bool recorded)
{
	if (r->n_ids < IDS_MAX) {
		r->recorded[r->n_ids] = recorded;
		snprintf(r->ids[r->n_ids++], sizeof r->ids[0], "%s", kms_last_request_id());
	}
}

static void *client_main(void *arg)
{
	client_run *r = arg;
	const char *ipc[] = { A.ipc_url, B.ipc_url, C.ipc_url };
	const char *tls[] = { A.tls_url, B.tls_url, C.tls_url };
	char ca[700], cert[700], key[700];
	snprintf(ca, sizeof ca, "%s/tls/ca.crt", A.dir);
	snprintf(cert, sizeof cert, "%s/tls/client.crt", A.dir);
	snprintf(key, sizeof key, "%s/tls/client.key", A.dir);
	kms_client_options opts = { .endpoints = r->tls ? tls : ipc, .n_endpoints = 3,
		                    .timeout_ms = 30000, .resend_ms = 60000,
		                    .no_env_credentials = true };
	if (r->tls) {
		opts.tls_ca_file = ca;
		opts.tls_cert_file = cert;
		opts.tls_key_file = key;
		opts.credentials_file = A.credentials;
	}
	kms_client *client = NULL;
	kms_error err;
	if (kms_client_open(&opts, &client, &err) != KMS_OK) {
		failed(r, "open", &err);
		return NULL;
	}
	uint8_t plaintext[64];
	memset(plaintext, 'a' + r->index, sizeof plaintext);
	for (int i = 0; i < OPS; i++) {
		if (i == OPS - TAIL) {
			uint64_t until = e2e_now_ms() + WAIT_MS;
			while (!atomic_load(&victim_back) && e2e_now_ms() < until)
				e2e_sleep_ms(5);
		}
		if (i % 16 == 15) {
			char description[64];
			snprintf(description, sizeof description, "%s-%d-%d", r->tls ? "tls" : "ipc",
			         r->index, i);
			kms_create_key_params params = { .description = description };
			kms_key_metadata md;
			if (kms_create_key(client, &params, &md, &err) == KMS_OK) {
				answered_id(r, false);
				r->created++;
				kms_key_metadata_free(&md);
			} else {
				failed(r, "CreateKey", &err);
			}
		} else if (i % 8 == 7) {
			kms_data_key dk;
			if (kms_generate_data_key(client, shared_key, NULL, 0, &dk, &err) == KMS_OK) {
				answered_id(r, true);
				kms_data_key_free(&dk);
			} else
				failed(r, "GenerateDataKey", &err);
		} else {
			kms_ciphertext ct;
			if (kms_encrypt(client, shared_key, plaintext, sizeof plaintext, NULL, 0, &ct,
			                &err) != KMS_OK) {
				failed(r, "Encrypt", &err);
			} else {
				answered_id(r, true);
				kms_plaintext pt;
				if (kms_decrypt(client, ct.blob, ct.blob_len, NULL, 0, NULL, &pt, &err) !=
				    KMS_OK)
					failed(r, "Decrypt", &err);
				else if (answered_id(r, true), pt.len != sizeof plaintext ||
				         memcmp(pt.bytes, plaintext, pt.len) != 0)
					r->failed++;
				kms_plaintext_free(&pt);
				kms_ciphertext_free(&ct);
			}
		}
		atomic_fetch_add(&answered, 1);
	}
	kms_client_close(client);
	return NULL;
}

static void wait_answered(int at_least)
{
	uint64_t until = e2e_now_ms() + WAIT_MS;
	while (atomic_load(&answered) < at_least && e2e_now_ms() < until)
		e2e_sleep_ms(5);
	assert_true(atomic_load(&answered) >= at_least);
}

/* made[c][i]: how many keys hold description "VIA-c-i" (DescribeKey of
 * every key ListKeys shows). */
static void count_made(const e2e_key *keys, size_t n, const char *via, int made[CLIENTS][OPS])
{
	size_t via_len = strlen(via);
	for (size_t k = 0; k < n; k++) {
		Kms__Response *r = e2e_describe(&A, keys[k].id);
		int c, i;
		if (r && r->status == KMS__STATUS__OK &&
		    r->result_case == KMS__RESPONSE__RESULT_DESCRIBE_KEY &&
		    strncmp(r->describe_key->key_metadata->description, via, via_len) == 0 &&
		    sscanf(r->describe_key->key_metadata->description + via_len, "-%d-%d", &c, &i) ==
		            2 &&
		    c >= 0 && c < CLIENTS && i >= 0 && i < OPS)
			made[c][i]++;
		if (r)
			kms__response__free_unpacked(r, NULL);
	}
}

static const char *name_of(const harness *h)
{
	return h == &A ? "A" : h == &B ? "B" : "C";
}

/* One SQL value from the shared store, as text. */
static void query(const char *sql, char *out, size_t cap)
{
	assert_true(harness_store_query(&A, &oa, sql, out, cap));
}

/* One integer from the shared store (expr: an integer expression of the
 * rest of the query, read as text). */
static uint64_t query_u64(const char *expr, const char *rest)
{
	char sql[400], v[64];
	snprintf(sql, sizeof sql, "SELECT CAST(%s AS TEXT) %s", expr, rest);
	query(sql, v, sizeof v);
	return strtoull(v, NULL, 10);
}

/* A replica's id (its data/replica-id). */
static void replica_id(const harness *h, char out[40])
{
	char path[800];
	snprintf(path, sizeof path, "%s/data/replica-id", h->dir);
	size_t len = 0;
	char *text = harness_read_file(path, &len);
	assert_non_null(text);
	assert_true(len >= 32);
	memcpy(out, text, 32);
	out[32] = '\0';
	free(text);
}

/* The replica holding the fleet log's sequencer lease (waits for one). */
static harness *sequencer(char id[40])
{
	harness *all[] = { &A, &B, &C };
	char holder[64] = "";
	uint64_t until = e2e_now_ms() + WAIT_MS;
	while (e2e_now_ms() < until) {
		query("SELECT holder FROM audit_lease WHERE id = 1", holder, sizeof holder);
		for (size_t i = 0; i < 3; i++) {
			replica_id(all[i], id);
			if (strcmp(id, holder) == 0)
				return all[i];
		}
		e2e_sleep_ms(10);
	}
	fail_msg("no replica holds the sequencer lease (holder '%s')", holder);
	return NULL;
}

/* The fleet's log, once nothing is pending and A's copy has signed all
 * of it: every answered request is in it, a data-plane one exactly once,
 * a CreateKey once or twice. Returns how many were there twice. */
static int check_fleet_log(client_run *runs, const char *before_kill)
{
	uint64_t until = e2e_now_ms() + WAIT_MS;
	while (query_u64("count(*)", "FROM audit_pending") != 0 && e2e_now_ms() < until)
		e2e_sleep_ms(10);
	assert_int_equal(query_u64("count(*)", "FROM audit_pending"), 0);
	uint64_t numbered = query_u64("coalesce(max(seq) + 1, 0)", "FROM audit_entries");
	audit_cp cp;
	audit_wait_checkpoint(&A, numbered, WAIT_MS, &cp);
	char vkey[AUDIT_VKEY_MAX], pub[800];
	assert_true(audit_vkey_from_log(&A, vkey));
	snprintf(pub, sizeof pub, "%s/data/audit/public", A.dir);
	audit_entries e;
	/* One sequence: the checkpoint the killed sequencer signed is a
	 * prefix of the one its successor signed. */
	audit_load(pub, vkey, before_kill, &e);
	assert_true(e.report.since_checked);
	assert_true(e.n >= numbered);
	int answered_n = 0, twice = 0;
	for (int c = 0; c < CLIENTS; c++)
		for (int i = 0; i < runs[c].n_ids; i++) {
			const char *id = runs[c].ids[i];
			size_t n = audit_count_id(&e, id, NULL);
			if (n == 0 || n > 2 || (n == 2 && runs[c].recorded[i]))
				fail_msg("request %s: %zu entries in the fleet's log", id, n);
			twice += n == 2;
			answered_n++;
		}
	/* Every replica serves the same log: B's and C's copies reach A's
	 * checkpoint and extend it. */
	harness *others[] = { &B, &C };
	for (size_t i = 0; i < 2; i++) {
		audit_cp their;
		audit_wait_checkpoint(others[i], cp.size, WAIT_MS, &their);
		audit_cp_free(&their);
		snprintf(pub, sizeof pub, "%s/data/audit/public", others[i]->dir);
		audit_entries copy;
		audit_load(pub, vkey, cp.note, &copy);
		assert_true(copy.report.since_checked);
		audit_entries_free(&copy);
	}
	fprintf(stderr, "test_replica_kill: the fleet's log verifies: %llu entries (checkpoint "
	        "%llu, B's and C's copies extend it); all %d answered requests in it, %d of them "
	        "twice\n",
	        (unsigned long long)e.n, (unsigned long long)cp.size, answered_n, twice);
	audit_cp_free(&cp);
	audit_entries_free(&e);
	return twice;
}

static void kill_under_load(bool tls)
{
	static client_run runs[CLIENTS];
	pthread_t threads[CLIENTS];
	atomic_store(&answered, 0);
	atomic_store(&victim_back, false);
	for (int i = 0; i < CLIENTS; i++) {
		runs[i] = (client_run){ .tls = tls, .index = i };
		assert_int_equal(pthread_create(&threads[i], NULL, client_main, &runs[i]), 0);
	}
	const int total = CLIENTS * OPS;
	/* The victim: the replica holding the fleet log's sequencer lease
	 * just before the kill. */
	char victim_id[40], where[200];
	wait_answered(total / 3);
	harness *victim = sequencer(victim_id);
	static char before_kill[4200];
	query("SELECT convert_from(note, 'UTF8') FROM audit_checkpoint WHERE id = 1", before_kill,
	      sizeof before_kill);
	assert_true(before_kill[0] != '\0');
	uint64_t killed_at = e2e_now_ms();
	harness_kill9(victim);
	/* It was serving its share when it died: entries it wrote. */
	snprintf(where, sizeof where, "FROM audit_entries WHERE replica = '%s'", victim_id);
	uint64_t victim_entries = query_u64("count(*)", where);
	assert_true(victim_entries > 0);
	int at_kill = atomic_load(&answered);
	/* Another replica takes the lease once it expires. */
	char next_id[40];
	harness *next = NULL;
	uint64_t until = e2e_now_ms() + WAIT_MS;
	while (e2e_now_ms() < until && (!(next = sequencer(next_id)) || next == victim))
		e2e_sleep_ms(5);
	assert_true(next && next != victim);
	uint64_t takeover_ms = e2e_now_ms() - killed_at;
	wait_answered(2 * total / 3);
	unsigned ready = harness_ready_lines(victim);
	assert_true(harness_spawn(victim, victim == &A ? &oa : &ob) &&
	            harness_wait_ready(victim, ready));
	uint64_t back_at = e2e_now_ms();
	atomic_store(&victim_back, true);
	for (int i = 0; i < CLIENTS; i++)
		pthread_join(threads[i], NULL);

	int failures = 0, created = 0;
	for (int i = 0; i < CLIENTS; i++) {
		failures += runs[i].failed;
		created += runs[i].created;
		if (runs[i].failed)
			fprintf(stderr, "client %d: %d failed, the first %lld ms after the kill (B back "
			        "after %llu ms): %s\n", i, runs[i].failed,
			        (long long)runs[i].first_failure_ms - (long long)killed_at,
			        (unsigned long long)(back_at - killed_at), runs[i].first_failure);
	}
	/* Keys made twice: a CreateKey B committed, sent again elsewhere. */
	e2e_key *keys = NULL;
	size_t n = 0;
	assert_true(e2e_list_keys(&A, &keys, &n));
	static int made[CLIENTS][OPS];
	memset(made, 0, sizeof made);
	count_made(keys, n, tls ? "tls" : "ipc", made);
	free(keys);
	int twice = 0;
	for (int c = 0; c < CLIENTS; c++)
		for (int i = 15; i < OPS; i += 16) {
			assert_true(made[c][i] >= 1); /* every answered CreateKey made its key */
			twice += made[c][i] - 1;
		}
	fprintf(stderr, "test_replica_kill %s: %d clients, %d requests, %d failed; the sequencer "
	        "%s killed after %d answered (%llu of its entries numbered), lease taken over by "
	        "%s after %llu ms, down %llu ms; %d CreateKey answered, %d of them made two keys\n",
	        tls ? "tls, signed" : "ipc", CLIENTS, total, failures, name_of(victim), at_kill,
	        (unsigned long long)victim_entries, name_of(next), (unsigned long long)takeover_ms,
	        (unsigned long long)(back_at - killed_at), created, twice);
	assert_int_equal(failures, 0);
	assert_int_equal(created, CLIENTS * (OPS / 16));
	assert_int_equal(twice, 0);
	/* At most the requests in flight on the victim (one per client) are
	 * in the log twice. */
	assert_true(check_fleet_log(runs, before_kill) <= CLIENTS);
}

static void over_ipc(void **state)
{
	(void)state;
	kill_under_load(false);
}

static void over_tls_signed(void **state)
{
	(void)state;
	kill_under_load(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(over_ipc),
		cmocka_unit_test(over_tls_signed),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
