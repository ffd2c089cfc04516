/*
 * test_audit: the audit log (docs/audit-log.md) end to end, against a real
 * kmsd on a real SoftHSM token over real sockets.
 *
 * (1) every_request_once: a scripted mix of successful, failed and
 *     malformed requests, then a concurrent burst; after a clean stop the
 *     published log verifies, and every request id sent is in it exactly
 *     once, in order, with its operation, status, key, principal, source,
 *     encryption context, time and latency; the only other entries are the
 *     malformed requests (request_id "") and the harness's readiness probes.
 * (2) proofs_and_http: inclusion and consistency proofs from the RPCs
 *     verify against signed checkpoints; tlog_verify_dir passes with an
 *     early checkpoint as `since`; the HTTP copy of the checkpoint and tiles
 *     is byte-identical to the files; /healthz and /metrics answer.
 * (2b) http_serves_nothing_outside_public: path traversal out of /audit/
 *     never serves log.bin, kms.db or any other file.
 * (3) no_secrets_anywhere: plaintexts, a data key (raw, hex, base64), the
 *     PIN and ciphertext blob bodies appear in no file under the data dir
 *     and not in kmsd's log, while running and after a stop.
 *
 * The tests share the token and the data dir (a new kms.db beside a token
 * that holds keys is refused), so they run in this order and each counts
 * from where the log stood when it began.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "tests/support/audit_check.h"
#include "kms/audit/audit_tree.h"
#include "tests/support/e2e_ops.h"
#include "tests/support/harness.h"
#include "common/tlog/tlog_tiles.h"

#define STOP_TIMEOUT_EXIT 0
#define CHECKPOINT_WAIT_MS 10000
#define BURST_THREADS 4
#define BURST_PER_THREAD 40
#define PLAINTEXT_MAX 4096

static harness H;

/* ---- requests with explicit ids ---- */

typedef struct pairs {
	Kms__StringPair items[8];
	Kms__StringPair *ptrs[8];
	size_t n;
} pairs;

static void pairs_add(pairs *p, const char *k, const char *v)
{
	kms__string_pair__init(&p->items[p->n]);
	p->items[p->n].key = (char *)(uintptr_t)k;
	p->items[p->n].value = (char *)(uintptr_t)v;
	p->ptrs[p->n] = &p->items[p->n];
	p->n++;
}

static Kms__Response *call_id(const char *id, Kms__Request *req)
{
	req->request_id = (char *)(uintptr_t)id;
	Kms__Response *r = harness_call(&H, req);
	if (!r)
		fail_msg("request %s: no answer", id);
	assert_string_equal(r->request_id, id);
	return r;
}

static void expect(Kms__Response *r, Kms__Status want)
{
	if (r->status != want)
		fail_msg("request %s: status %d, wanted %d: %s", r->request_id, r->status, want,
		         r->message);
}

static Kms__Response *create_key(const char *id)
{
	Kms__CreateKeyRequest ck = KMS__CREATE_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	ck.description = "audit test key";
	req.op_case = KMS__REQUEST__OP_CREATE_KEY;
	req.create_key = &ck;
	return call_id(id, &req);
}

static Kms__Response *encrypt(const char *id, const char *key, const uint8_t *pt, size_t len,
                              const pairs *ctx)
{
	Kms__EncryptRequest e = KMS__ENCRYPT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	e.key_id = (char *)(uintptr_t)key;
	e.plaintext.data = (uint8_t *)(uintptr_t)pt;
	e.plaintext.len = len;
	if (ctx) {
		e.n_encryption_context = ctx->n;
		e.encryption_context = (Kms__StringPair **)(uintptr_t)ctx->ptrs;
	}
	req.op_case = KMS__REQUEST__OP_ENCRYPT;
	req.encrypt = &e;
	return call_id(id, &req);
}

static Kms__Response *encrypt_str(const char *id, const char *key, const char *pt,
                                  const pairs *ctx)
{
	return encrypt(id, key, (const uint8_t *)pt, strlen(pt), ctx);
}

static Kms__Response *decrypt(const char *id, const uint8_t *blob, size_t len, const pairs *ctx)
{
	Kms__DecryptRequest d = KMS__DECRYPT_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	d.ciphertext_blob.data = (uint8_t *)(uintptr_t)blob;
	d.ciphertext_blob.len = len;
	if (ctx) {
		d.n_encryption_context = ctx->n;
		d.encryption_context = (Kms__StringPair **)(uintptr_t)ctx->ptrs;
	}
	req.op_case = KMS__REQUEST__OP_DECRYPT;
	req.decrypt = &d;
	return call_id(id, &req);
}

static Kms__Response *generate_data_key(const char *id, const char *key, const pairs *ctx)
{
	Kms__GenerateDataKeyRequest g = KMS__GENERATE_DATA_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	g.key_id = (char *)(uintptr_t)key;
	if (ctx) {
		g.n_encryption_context = ctx->n;
		g.encryption_context = (Kms__StringPair **)(uintptr_t)ctx->ptrs;
	}
	req.op_case = KMS__REQUEST__OP_GENERATE_DATA_KEY;
	req.generate_data_key = &g;
	return call_id(id, &req);
}

static Kms__Response *key_op(const char *id, Kms__Request__OpCase op, const char *key)
{
	Kms__DescribeKeyRequest describe = KMS__DESCRIBE_KEY_REQUEST__INIT;
	Kms__DisableKeyRequest disable = KMS__DISABLE_KEY_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.op_case = op;
	switch (op) {
	case KMS__REQUEST__OP_DESCRIBE_KEY:
		describe.key_id = (char *)(uintptr_t)key;
		req.describe_key = &describe;
		break;
	case KMS__REQUEST__OP_DISABLE_KEY:
		disable.key_id = (char *)(uintptr_t)key;
		req.disable_key = &disable;
		break;
	default:
		fail_msg("key_op: op %d", (int)op);
	}
	return call_id(id, &req);
}

static void ok_and_free(Kms__Response *r)
{
	expect(r, KMS__STATUS__OK);
	kms__response__free_unpacked(r, NULL);
}

/* ---- the daemon ---- */

static void start_with(const char *data_subdir, const char *extra)
{
	harness_options o = { .data_subdir = data_subdir, .extra_config = extra };
	if (!harness_start(&H, &o))
		fail_msg("kmsd did not start; see %s", H.log);
}

static void stop_clean(void)
{
	int code = harness_stop(&H);
	if (code != STOP_TIMEOUT_EXIT)
		fail_msg("kmsd exit code %d after SIGTERM; see %s", code, H.log);
}

static int teardown(void **state)
{
	(void)state;
	if (H.pid > 0)
		harness_kill9(&H);
	return 0;
}

/* ---- (1) every request exactly once ---- */

typedef struct want {
	char id[40];
	const char *op;
	const char *status;
	char key_id[40];
	int key_version;
	const pairs *ctx;
} want;

#define WANTS_MAX 64

typedef struct script {
	want w[WANTS_MAX];
	size_t n;
} script;

static void record(script *s, const char *id, const char *op, Kms__Response *r, const char *key,
                   int version, const pairs *ctx)
{
	assert_true(s->n < WANTS_MAX);
	want *w = &s->w[s->n++];
	snprintf(w->id, sizeof w->id, "%s", id);
	w->op = op;
	w->status = kms_status_name((kms_status)r->status);
	snprintf(w->key_id, sizeof w->key_id, "%s", key ? key : "");
	w->key_version = version;
	w->ctx = ctx;
}

static json_t *context_object(const pairs *ctx)
{
	json_t *o = json_object();
	for (size_t i = 0; ctx && i < ctx->n; i++)
		json_object_set_new(o, ctx->items[i].key, json_string(ctx->items[i].value));
	return o;
}

typedef struct burst_arg {
	unsigned thread;
	const char *key;
	unsigned acked;
	char failure[200];
} burst_arg;

static void *burst_main(void *p)
{
	burst_arg *a = p;
	nng_socket s;
	if (!e2e_socket(&H, 5000, 20000, &s)) {
		snprintf(a->failure, sizeof a->failure, "thread %u: cannot dial", a->thread);
		return NULL;
	}
	for (unsigned i = 0; i < BURST_PER_THREAD; i++) {
		char id[40];
		uint8_t pt[16] = "burst-plaintext";
		snprintf(id, sizeof id, "burst-%u-%u", a->thread, i);
		Kms__Response *r = e2e_encrypt_on(s, id, a->key, pt, sizeof pt);
		bool ok = r && r->status == KMS__STATUS__OK && !strcmp(r->request_id, id);
		if (!ok)
			snprintf(a->failure, sizeof a->failure, "%s: %s", id,
			         r ? r->message : "no answer");
		if (r)
			kms__response__free_unpacked(r, NULL);
		if (!ok)
			break;
		a->acked++;
	}
	(void)kms_nng_close_bounded(s, TEST_CLOSE_WAIT_MS);
	return NULL;
}

static void every_request_once(void **state)
{
	(void)state;
	script s = { 0 };
	char key_a[40], key_b[40];
	static pairs ctx_a, ctx_gdk;
	memset(&ctx_a, 0, sizeof ctx_a);
	memset(&ctx_gdk, 0, sizeof ctx_gdk);
	pairs_add(&ctx_a, "dept", "finance");
	pairs_add(&ctx_a, "purpose", "audit-e2e \"quoted\" ünïcode");
	pairs_add(&ctx_gdk, "bucket", "s3://in-archive");

	start_with("data", NULL);

	Kms__Response *r = create_key("once-create-a");
	expect(r, KMS__STATUS__OK);
	snprintf(key_a, sizeof key_a, "%s", r->create_key->key_metadata->key_id);
	record(&s, "once-create-a", "create_key", r, key_a, 1, NULL);
	kms__response__free_unpacked(r, NULL);

	r = key_op("once-describe", KMS__REQUEST__OP_DESCRIBE_KEY, key_a);
	expect(r, KMS__STATUS__OK);
	record(&s, "once-describe", "describe_key", r, key_a, 1, NULL);
	kms__response__free_unpacked(r, NULL);

	r = encrypt_str("once-encrypt", key_a, "audit me", &ctx_a);
	expect(r, KMS__STATUS__OK);
	record(&s, "once-encrypt", "encrypt", r, key_a, 1, &ctx_a);
	size_t blob_len = r->encrypt->ciphertext_blob.len;
	uint8_t *blob = malloc(blob_len);
	memcpy(blob, r->encrypt->ciphertext_blob.data, blob_len);
	kms__response__free_unpacked(r, NULL);

	r = decrypt("once-decrypt", blob, blob_len, &ctx_a);
	expect(r, KMS__STATUS__OK);
	assert_memory_equal(r->decrypt->plaintext.data, "audit me", 8);
	record(&s, "once-decrypt", "decrypt", r, key_a, 1, &ctx_a);
	kms__response__free_unpacked(r, NULL);

	r = generate_data_key("once-gdk", key_a, &ctx_gdk);
	expect(r, KMS__STATUS__OK);
	record(&s, "once-gdk", "generate_data_key", r, key_a, 1, &ctx_gdk);
	kms__response__free_unpacked(r, NULL);

	Kms__GenerateRandomRequest gr = KMS__GENERATE_RANDOM_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	gr.number_of_bytes = 32;
	req.op_case = KMS__REQUEST__OP_GENERATE_RANDOM;
	req.generate_random = &gr;
	r = call_id("once-random", &req);
	expect(r, KMS__STATUS__OK);
	record(&s, "once-random", "generate_random", r, NULL, 0, NULL);
	kms__response__free_unpacked(r, NULL);

	/* Failures. */
	const char *missing = "k-00000000000000000000000000000000";
	r = encrypt_str("once-not-found", missing, "x", NULL);
	expect(r, KMS__STATUS__NOT_FOUND);
	record(&s, "once-not-found", "encrypt", r, missing, 0, NULL);
	kms__response__free_unpacked(r, NULL);

	r = key_op("once-describe-alias-nf", KMS__REQUEST__OP_DESCRIBE_KEY, "alias/no-such-alias");
	expect(r, KMS__STATUS__NOT_FOUND);
	record(&s, "once-describe-alias-nf", "describe_key", r, "alias/no-such-alias", 0, NULL);
	kms__response__free_unpacked(r, NULL);

	blob[blob_len - 1] ^= 0x01; /* the tag: parses, names key_a v1, does not open */
	r = decrypt("once-bad-ciphertext", blob, blob_len, &ctx_a);
	expect(r, KMS__STATUS__INVALID_CIPHERTEXT);
	record(&s, "once-bad-ciphertext", "decrypt", r, key_a, 1, &ctx_a);
	kms__response__free_unpacked(r, NULL);
	free(blob);

	uint8_t *big = malloc(PLAINTEXT_MAX + 1);
	memset(big, 'p', PLAINTEXT_MAX + 1);
	r = encrypt("once-too-large", key_a, big, PLAINTEXT_MAX + 1, &ctx_a);
	expect(r, KMS__STATUS__INVALID_ARGUMENT);
	/* Refused by validation, before the key was looked up. */
	record(&s, "once-too-large", "encrypt", r, key_a, 0, &ctx_a);
	kms__response__free_unpacked(r, NULL);
	free(big);

	r = create_key("once-create-b");
	expect(r, KMS__STATUS__OK);
	snprintf(key_b, sizeof key_b, "%s", r->create_key->key_metadata->key_id);
	record(&s, "once-create-b", "create_key", r, key_b, 1, NULL);
	kms__response__free_unpacked(r, NULL);

	r = key_op("once-disable-b", KMS__REQUEST__OP_DISABLE_KEY, key_b);
	expect(r, KMS__STATUS__OK);
	record(&s, "once-disable-b", "disable_key", r, key_b, 0, NULL); /* no version */
	kms__response__free_unpacked(r, NULL);

	r = encrypt_str("once-disabled", key_b, "x", NULL);
	expect(r, KMS__STATUS__FAILED_PRECONDITION);
	record(&s, "once-disabled", "encrypt", r, key_b, 0, NULL);
	kms__response__free_unpacked(r, NULL);

	Kms__HealthRequest hr = KMS__HEALTH_REQUEST__INIT;
	memset(&req, 0, sizeof req);
	kms__request__init(&req);
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &hr;
	r = call_id("once-health", &req);
	expect(r, KMS__STATUS__OK);
	record(&s, "once-health", "health", r, NULL, 0, NULL);
	kms__response__free_unpacked(r, NULL);

	/* Malformed: no request id can be read from these. */
	static const struct {
		const char *bytes;
		size_t len;
	} garbage[] = {
		{ "\xff\xff\xff\xff\xff\xff", 6 },
		{ "GET / HTTP/1.0\r\n\r\n", 18 },
		{ "\x08\x01\x12\x0bhas spaces!\x9a\x06\x00", 18 }, /* id fails the charset */
		{ "\x12\x40short", 7 },                             /* length runs past the end */
	};
	size_t n_garbage = sizeof garbage / sizeof garbage[0];
	for (size_t i = 0; i < n_garbage; i++) {
		size_t len;
		uint8_t *reply = harness_raw(H.ipc_url, (const uint8_t *)garbage[i].bytes,
		                             garbage[i].len, 5000, &len);
		if (!reply)
			fail_msg("garbage %zu: no answer", i);
		Kms__Response *g = kms__response__unpack(NULL, len, reply);
		assert_non_null(g);
		assert_int_equal(g->status, KMS__STATUS__INVALID_ARGUMENT);
		assert_string_equal(g->request_id, "");
		kms__response__free_unpacked(g, NULL);
		free(reply);
	}

	/* Group commit: concurrent requests, each once. */
	pthread_t threads[BURST_THREADS];
	burst_arg args[BURST_THREADS];
	for (unsigned t = 0; t < BURST_THREADS; t++) {
		args[t] = (burst_arg){ .thread = t, .key = key_a };
		assert_int_equal(pthread_create(&threads[t], NULL, burst_main, &args[t]), 0);
	}
	for (unsigned t = 0; t < BURST_THREADS; t++) {
		pthread_join(threads[t], NULL);
		if (args[t].failure[0])
			fail_msg("burst: %s", args[t].failure);
		assert_int_equal(args[t].acked, BURST_PER_THREAD);
	}

	char vkey[AUDIT_VKEY_MAX];
	assert_true(audit_vkey_from_log(&H, vkey));
	stop_clean();
	assert_true(harness_log_contains(&H, "kmsd: info: stopped"));

	char pub[700];
	audit_public_dir(&H, "data", pub, sizeof pub);
	audit_entries e;
	audit_load(pub, vkey, NULL, &e);

	char source[64];
	snprintf(source, sizeof source, "ipc uid=%u", (unsigned)getuid());
	size_t last_index = 0;
	for (size_t i = 0; i < s.n; i++) {
		const want *w = &s.w[i];
		json_t *entry = NULL;
		size_t count = audit_count_id(&e, w->id, &entry);
		if (count != 1)
			fail_msg("request %s is in the log %zu times", w->id, count);
		audit_check_common(entry);
		size_t index = 0;
		while (e.items[index] != entry)
			index++;
		if (i > 0 && index <= last_index)
			fail_msg("request %s is at index %zu, before its predecessor (%zu)", w->id, index,
			         last_index);
		last_index = index;
		if (strcmp(audit_str(entry, "operation"), w->op) || strcmp(audit_str(entry, "status"), w->status) ||
		    strcmp(audit_str(entry, "key_id"), w->key_id) ||
		    json_integer_value(json_object_get(entry, "key_version")) != w->key_version)
			fail_msg("request %s: entry says %s/%s/%s v%lld, wanted %s/%s/%s v%d", w->id,
			         audit_str(entry, "operation"), audit_str(entry, "status"),
			         audit_str(entry, "key_id"),
			         (long long)json_integer_value(json_object_get(entry, "key_version")),
			         w->op, w->status, w->key_id, w->key_version);
		assert_string_equal(audit_str(entry, "principal"), "test-admin");
		assert_string_equal(audit_str(entry, "source"), source);
		bool ok = !strcmp(w->status, "OK");
		if (ok != (audit_str(entry, "error")[0] == '\0'))
			fail_msg("request %s (%s): error \"%s\"", w->id, w->status, audit_str(entry, "error"));
		json_t *ctx = context_object(w->ctx);
		if (!json_equal(ctx, json_object_get(entry, "encryption_context"))) {
			char *got = json_dumps(json_object_get(entry, "encryption_context"), 0);
			fail_msg("request %s: encryption_context %s", w->id, got);
		}
		json_decref(ctx);
	}
	for (unsigned t = 0; t < BURST_THREADS; t++) {
		for (unsigned i = 0; i < BURST_PER_THREAD; i++) {
			char id[40];
			json_t *entry;
			snprintf(id, sizeof id, "burst-%u-%u", t, i);
			if (audit_count_id(&e, id, &entry) != 1)
				fail_msg("burst request %s is not in the log exactly once", id);
			audit_check_common(entry);
			assert_string_equal(audit_str(entry, "status"), "OK");
			assert_string_equal(audit_str(entry, "operation"), "encrypt");
			assert_string_equal(audit_str(entry, "key_id"), key_a);
		}
	}

	/* Nothing else: the malformed requests, the harness's probes, and the
	 * intents of control-plane changes, each before its outcome. */
	size_t anonymous = 0, probes = 0, intents = 0;
	for (uint64_t i = 0; i < e.n; i++) {
		json_t *entry = e.items[i];
		const char *id = audit_str(entry, "request_id");
		audit_check_common(entry);
		if (!strcmp(audit_str(entry, "phase"), "intent")) {
			intents++;
			json_t *outcome = NULL;
			assert_int_equal(audit_count_phase(&e, id, "outcome", &outcome), 1);
			assert_string_equal(audit_str(entry, "operation"), audit_str(outcome, "operation"));
			assert_string_equal(audit_str(entry, "status"), "");
			uint64_t after = i + 1;
			while (after < e.n && e.items[after] != outcome)
				after++;
			if (after == e.n)
				fail_msg("request %s: its outcome comes before its intent", id);
		} else if (id[0] == '\0') {
			anonymous++;
			assert_string_equal(audit_str(entry, "status"), "INVALID_ARGUMENT");
			assert_string_equal(audit_str(entry, "principal"), "test-admin");
			assert_string_equal(audit_str(entry, "source"), source);
			assert_string_equal(audit_str(entry, "key_id"), "");
			assert_true(audit_str(entry, "error")[0] != '\0');
		} else if (!strcmp(id, "harness-ready")) {
			probes++;
			assert_string_equal(audit_str(entry, "operation"), "health");
		}
	}
	assert_int_equal(anonymous, n_garbage);
	assert_true(probes >= 1);
	assert_true(intents >= 1);
	assert_int_equal(e.n, s.n + anonymous + probes + intents + BURST_THREADS * BURST_PER_THREAD);
	audit_entries_free(&e);
}

/* ---- (2) proofs, since, and the HTTP copy ---- */

static Kms__Response *inclusion(uint64_t index, uint64_t tree_size)
{
	Kms__GetInclusionProofRequest g = KMS__GET_INCLUSION_PROOF_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	g.index = index;
	g.tree_size = tree_size;
	req.op_case = KMS__REQUEST__OP_GET_INCLUSION_PROOF;
	req.get_inclusion_proof = &g;
	Kms__Response *r = harness_call(&H, &req);
	assert_non_null(r);
	return r;
}

static Kms__Response *consistency(uint64_t old_size, uint64_t new_size)
{
	Kms__GetConsistencyProofRequest g = KMS__GET_CONSISTENCY_PROOF_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	g.old_size = old_size;
	g.new_size = new_size;
	req.op_case = KMS__REQUEST__OP_GET_CONSISTENCY_PROOF;
	req.get_consistency_proof = &g;
	Kms__Response *r = harness_call(&H, &req);
	assert_non_null(r);
	return r;
}

/* hashes of a proof response, copied into a flat array. */
static uint8_t (*proof_hashes(ProtobufCBinaryData *h, size_t n))[TLOG_HASH_SIZE]
{
	uint8_t (*out)[TLOG_HASH_SIZE] = malloc((n + 1) * TLOG_HASH_SIZE);
	assert_non_null(out);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(h[i].len, TLOG_HASH_SIZE);
		memcpy(out[i], h[i].data, TLOG_HASH_SIZE);
	}
	return out;
}

static void check_inclusion(uint64_t index, const audit_cp *cp)
{
	Kms__Response *r = inclusion(index, cp->size);
	expect(r, KMS__STATUS__OK);
	Kms__GetInclusionProofResponse *p = r->get_inclusion_proof;
	assert_int_equal(p->index, index);
	assert_int_equal(p->tree_size, cp->size);
	json_error_t err;
	json_t *entry = json_loadb((const char *)p->entry.data, p->entry.len, 0, &err);
	if (!entry)
		fail_msg("entry %llu: %s", (unsigned long long)index, err.text);
	audit_check_common(entry);
	json_decref(entry);
	uint8_t leaf[TLOG_HASH_SIZE];
	assert_int_equal(tlog_leaf_hash(p->entry.data, p->entry.len, leaf), KMS_OK);
	uint8_t (*hashes)[TLOG_HASH_SIZE] = proof_hashes(p->hashes, p->n_hashes);
	if (tlog_inclusion_verify(leaf, index, cp->size, (const uint8_t (*)[TLOG_HASH_SIZE])hashes,
	                          p->n_hashes, cp->root) != KMS_OK)
		fail_msg("inclusion proof of %llu in %llu does not verify: %s",
		         (unsigned long long)index, (unsigned long long)cp->size, kms_error_message());
	/* Not vacuous: a flipped bit in the proof or another index fails. */
	if (p->n_hashes > 0) {
		hashes[0][7] ^= 0x20;
		assert_int_not_equal(tlog_inclusion_verify(leaf, index, cp->size,
		                                           (const uint8_t (*)[TLOG_HASH_SIZE])hashes,
		                                           p->n_hashes, cp->root),
		                     KMS_OK);
		hashes[0][7] ^= 0x20;
		assert_int_not_equal(tlog_inclusion_verify(leaf, index ^ 1, cp->size,
		                                           (const uint8_t (*)[TLOG_HASH_SIZE])hashes,
		                                           p->n_hashes, cp->root),
		                     KMS_OK);
	}
	kms_error_clear();
	free(hashes);
	kms__response__free_unpacked(r, NULL);
}

static void check_consistency(const audit_cp *old_cp, const audit_cp *new_cp)
{
	Kms__Response *r = consistency(old_cp->size, new_cp->size);
	expect(r, KMS__STATUS__OK);
	Kms__GetConsistencyProofResponse *p = r->get_consistency_proof;
	assert_int_equal(p->old_size, old_cp->size);
	assert_int_equal(p->new_size, new_cp->size);
	uint8_t (*hashes)[TLOG_HASH_SIZE] = proof_hashes(p->hashes, p->n_hashes);
	if (tlog_consistency_verify(old_cp->size, new_cp->size, old_cp->root, new_cp->root,
	                            (const uint8_t (*)[TLOG_HASH_SIZE])hashes, p->n_hashes) != KMS_OK)
		fail_msg("consistency proof %llu -> %llu does not verify: %s",
		         (unsigned long long)old_cp->size, (unsigned long long)new_cp->size,
		         kms_error_message());
	assert_true(p->n_hashes > 0);
	hashes[p->n_hashes - 1][0] ^= 0x01;
	assert_int_not_equal(tlog_consistency_verify(old_cp->size, new_cp->size, old_cp->root,
	                                             new_cp->root,
	                                             (const uint8_t (*)[TLOG_HASH_SIZE])hashes,
	                                             p->n_hashes),
	                     KMS_OK);
	kms_error_clear();
	free(hashes);
	kms__response__free_unpacked(r, NULL);
}

/* The tree size in public/checkpoint (its second line). */
static uint64_t published_size(const char *pub)
{
	char path[800];
	snprintf(path, sizeof path, "%s/checkpoint", pub);
	char *note = harness_read_file(path, NULL);
	assert_non_null(note);
	const char *line = strchr(note, '\n');
	assert_non_null(line);
	unsigned long long size = strtoull(line + 1, NULL, 10);
	free(note);
	return size;
}

/* Waits until public/checkpoint covers every entry in the log, as
 * kms_audit_entries on /metrics counts them (reading /metrics adds no
 * entry), and returns that size. With no request after it, nothing under
 * public/ changes any more. */
static uint64_t wait_published_all(int port, const char *pub)
{
	uint64_t deadline = e2e_now_ms() + CHECKPOINT_WAIT_MS;
	long long entries = -1;
	uint64_t published = 0;
	for (;;) {
		char *body;
		size_t len;
		if (audit_http_get(port, "/metrics", 5000, &body, &len) == 200 && body) {
			const char *line = strstr(body, "\nkms_audit_entries ");
			if (line)
				entries = strtoll(line + strlen("\nkms_audit_entries "), NULL, 10);
		}
		free(body);
		published = published_size(pub);
		if (entries >= 0 && published == (uint64_t)entries)
			return published;
		if (e2e_now_ms() > deadline)
			fail_msg("public/checkpoint covers %llu entries, the log has %lld, after %d ms",
			         (unsigned long long)published, entries, CHECKPOINT_WAIT_MS);
		e2e_sleep_ms(20);
	}
}

/* GET path must equal the file public/<file> byte for byte. */
static void http_matches_file(int port, const char *pub, const char *path, const char *file)
{
	char full[900];
	snprintf(full, sizeof full, "%s/%s", pub, file);
	size_t file_len;
	char *expected = harness_read_file(full, &file_len);
	if (!expected)
		fail_msg("%s is missing", full);
	char *body;
	size_t len;
	int status = audit_http_get(port, path, 5000, &body, &len);
	if (status != 200)
		fail_msg("GET %s: status %d", path, status);
	if (len != file_len || memcmp(body, expected, len) != 0)
		fail_msg("GET %s: %zu bytes differ from %s (%zu bytes)", path, len, full, file_len);
	free(body);
	free(expected);
}

/* The value of the metric line that starts with name (labels included), or -1. */
static long long metric_value(const char *body, const char *name)
{
	char prefix[160];
	snprintf(prefix, sizeof prefix, "\n%s ", name);
	const char *line = strstr(body, prefix);
	return line ? strtoll(line + strlen(prefix), NULL, 10) : -1;
}

/* The audit log's memory on /metrics: within its bound, the tile cache
 * within its capacity, the background check finished (docs/audit-log.md,
 * "Memory and start-up"). */
static void expect_audit_memory_metrics(const char *body)
{
	long long tree = metric_value(body, "kms_audit_memory_bytes{part=\"tree\"}");
	long long cache = metric_value(body, "kms_audit_memory_bytes{part=\"tile_cache\"}");
	long long limit = metric_value(body, "kms_audit_memory_limit_bytes");
	long long tiles = metric_value(body, "kms_audit_tile_cache_tiles");
	long long capacity = metric_value(body, "kms_audit_tile_cache_capacity");
	if (tree <= 0 || cache < 0 || limit != AUDIT_MEMORY_MAX || tree + cache > limit ||
	    tiles < 0 || capacity != AUDIT_TILE_CACHE_TILES || tiles > capacity ||
	    metric_value(body, "kms_audit_hot_entries") < 0 ||
	    metric_value(body, "kms_audit_tiles_read_total") < 0 ||
	    metric_value(body, "kms_audit_startup_records_read") < 0 ||
	    metric_value(body, "kms_audit_check_records") < 0 ||
	    metric_value(body, "kms_audit_check_records_done") < 0 ||
	    metric_value(body, "kms_audit_check_finished") < 0)
		fail_msg("/metrics: the audit log's memory figures are missing or out of bounds:\n%s",
		         body);
}

static void proofs_and_http(void **state)
{
	(void)state;
	int port = harness_free_port();
	assert_true(port > 0);
	char extra[200];
	snprintf(extra, sizeof extra, "[audit]\ncheckpoint_ms = 50\nhttp = http://127.0.0.1:%d\n",
	         port);
	start_with(NULL, extra);

	audit_cp base;
	audit_get_checkpoint(&H, &base);
	audit_cp_free(&base);
	char key[35];
	assert_true(harness_create_key(&H, NULL, key));
	for (int i = 0; i < 5; i++)
		ok_and_free(encrypt_str("v-early", key, "early", NULL) /* same id: fine */);
	audit_cp early;
	audit_wait_checkpoint(&H, base.size + 6, CHECKPOINT_WAIT_MS, &early);

	/* The served verifier key is the one kmsd logged at start-up. */
	char logged[AUDIT_VKEY_MAX];
	assert_true(audit_vkey_from_log(&H, logged));
	assert_string_equal(logged, early.vkey);

	for (int i = 0; i < 300; i++) { /* crosses a full tile (256 entries) */
		char id[32];
		snprintf(id, sizeof id, "v-later-%d", i);
		ok_and_free(encrypt_str(id, key, "later", NULL));
	}
	audit_cp later;
	audit_wait_checkpoint(&H, early.size + 300, CHECKPOINT_WAIT_MS, &later);
	assert_true(later.size > TLOG_TILE_WIDTH);

	check_consistency(&early, &later);
	/* new_size 0: the latest checkpoint. */
	Kms__Response *r = consistency(early.size, 0);
	expect(r, KMS__STATUS__OK);
	assert_true(r->get_consistency_proof->new_size >= later.size);
	kms__response__free_unpacked(r, NULL);

	uint64_t indexes[] = { 0, 1, early.size - 1, early.size, TLOG_TILE_WIDTH - 1,
		               TLOG_TILE_WIDTH, later.size / 2, later.size - 1 };
	for (size_t i = 0; i < sizeof indexes / sizeof indexes[0]; i++)
		check_inclusion(indexes[i], &later);
	r = inclusion(later.size, later.size);
	expect(r, KMS__STATUS__INVALID_ARGUMENT);
	kms__response__free_unpacked(r, NULL);
	r = consistency(later.size + 1000000, 0);
	expect(r, KMS__STATUS__INVALID_ARGUMENT);
	kms__response__free_unpacked(r, NULL);

	/* Quiet: the last entries are published, then nothing changes. */
	char pub[700], audit[700];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	audit_dir(&H, NULL, audit, sizeof audit);
	uint64_t expect_size = wait_published_all(port, pub);
	assert_true(expect_size > later.size);

	http_matches_file(port, pub, "/audit/checkpoint", "checkpoint");
	char body_path[TLOG_TILE_PATH_MAX], url[TLOG_TILE_PATH_MAX + 16];
	assert_int_equal(tlog_bundle_path(0, TLOG_TILE_WIDTH, body_path), KMS_OK);
	snprintf(url, sizeof url, "/audit/%s", body_path);
	http_matches_file(port, pub, url, body_path);
	assert_int_equal(tlog_tile_path(0, 0, TLOG_TILE_WIDTH, body_path), KMS_OK);
	snprintf(url, sizeof url, "/audit/%s", body_path);
	http_matches_file(port, pub, url, body_path);
	/* The last bundle: partial, or full when the size is a multiple of 256. */
	unsigned width = tlog_tile_partial_width(expect_size, 0);
	uint64_t last = expect_size / TLOG_TILE_WIDTH;
	if (width == 0) {
		width = TLOG_TILE_WIDTH;
		last--;
	}
	assert_int_equal(tlog_bundle_path(last, width, body_path), KMS_OK);
	snprintf(url, sizeof url, "/audit/%s", body_path);
	http_matches_file(port, pub, url, body_path);

	char *body;
	size_t len;
	assert_int_equal(audit_http_get(port, "/healthz", 5000, &body, &len), 200);
	assert_string_equal(body, "ok\n");
	free(body);
	assert_int_equal(audit_http_get(port, "/metrics", 5000, &body, &len), 200);
	if (!strstr(body, "kms_requests_total{operation=\"encrypt\",status=\"OK\"} "))
		fail_msg("/metrics lacks the encrypt OK counter:\n%s", body);
	expect_audit_memory_metrics(body);
	free(body);


	stop_clean();
	audit_entries e, again;
	audit_load(pub, early.vkey, early.note, &e);
	assert_int_equal(e.report.since_size, early.size);
	assert_true(e.report.tree_size >= expect_size);
	assert_true(e.report.tiles_checked >= 2);
	assert_true(e.report.bundles_checked >= 2);
	audit_load(pub, early.vkey, later.note, &again);
	assert_int_equal(again.report.since_size, later.size);
	assert_int_equal(audit_count_id(&e, "v-early", NULL), 5);
	assert_int_equal(audit_count_id(&e, "v-later-299", NULL), 1);
	audit_entries_free(&again);
	audit_entries_free(&e);
	audit_cp_free(&early);
	audit_cp_free(&later);
}

/* ---- (2b) nothing outside public/ over HTTP ---- */

static void http_serves_nothing_outside_public(void **state)
{
	(void)state;
	int port = harness_free_port();
	assert_true(port > 0);
	char extra[200];
	snprintf(extra, sizeof extra, "[audit]\ncheckpoint_ms = 50\nhttp = http://127.0.0.1:%d\n",
	         port);
	start_with(NULL, extra);
	char key[35];
	assert_true(harness_create_key(&H, NULL, key));
	ok_and_free(encrypt_str("trav-encrypt", key, "x", NULL));
	char audit[700];
	audit_dir(&H, NULL, audit, sizeof audit);
	char *body;
	size_t len;
	/* Inside public/ is served. */
	assert_int_equal(audit_http_get(port, "/audit/checkpoint", 5000, &body, &len), 200);
	free(body);

	/* Out of public/: never log.bin, kms.db, or anything else. */
	char log_path[800];
	snprintf(log_path, sizeof log_path, "%s/log.bin", audit);
	size_t log_len;
	char *log_bin = harness_read_file(log_path, &log_len);
	assert_non_null(log_bin);
	assert_true(log_len > 64);
	char *pin = harness_read_file(getenv("KMS_TEST_PIN_FILE"), NULL);
	assert_non_null(pin);
	pin[strcspn(pin, "\r\n")] = '\0';
	assert_true(strlen(pin) >= 8);
	static const char *const escapes[] = {
		"/audit/../log.bin",          "/audit/%2e%2e/log.bin",      "/audit/%2E%2E/log.bin",
		"/audit/..%2flog.bin",        "/audit/%2e%2e%2flog.bin",    "/audit/tile/../../log.bin",
		"/audit/./../log.bin",        "/audit/..%5clog.bin",        "/audit/%252e%252e/log.bin",
		"/audit/.%2e/log.bin",        "/audit//../log.bin",         "/audit/../../kms.db",
		"/audit/%2e%2e/%2e%2e/kms.db", "/log.bin",                  "/audit/../audit/log.bin",
		"/audit/../../../user.pin",   "/audit/../../../../../../../../../../etc/passwd",
		"/audit/tile/entries/../../../log.bin",
	};
	char leaks[1024] = "";
	for (size_t i = 0; i < sizeof escapes / sizeof escapes[0]; i++) {
		int status = audit_http_get(port, escapes[i], 5000, &body, &len);
		bool leaked = body && (memmem(body, len, log_bin + 2, 48) != NULL ||
		                       memmem(body, len, "SQLite format 3", 15) != NULL ||
		                       memmem(body, len, pin, strlen(pin)) != NULL ||
		                       memmem(body, len, "root:", 5) != NULL);
		if (status == 200 || leaked) {
			size_t used = strlen(leaks);
			snprintf(leaks + used, sizeof leaks - used, "\n  GET %s: %d, %zu bytes%s",
			         escapes[i], status, len, leaked ? " (a file outside public/)" : "");
		}
		free(body);
	}
	free(pin);
	free(log_bin);
	if (leaks[0])
		fail_msg("HTTP serves outside %s/public:%s", audit, leaks);
	stop_clean();
}

/* ---- (3) no secrets in any file ---- */

#define NEEDLES_MAX 32
#define FILES_MAX 512

typedef struct needle {
	char what[64];
	uint8_t *bytes;
	size_t len;
} needle;

static struct {
	needle n[NEEDLES_MAX];
	size_t count;
	char files[FILES_MAX][800];
	size_t n_files;
} g_scan;

static void needle_add(const char *what, const void *bytes, size_t len)
{
	assert_true(g_scan.count < NEEDLES_MAX);
	assert_true(len >= 8);
	needle *n = &g_scan.n[g_scan.count++];
	snprintf(n->what, sizeof n->what, "%s", what);
	n->bytes = malloc(len);
	memcpy(n->bytes, bytes, len);
	n->len = len;
}

static void needle_add_forms(const char *what, const uint8_t *bytes, size_t len)
{
	char name[64];
	needle_add(what, bytes, len);
	char *hex = malloc(2 * len + 1), *hex_upper = malloc(2 * len + 1);
	for (size_t i = 0; i < len; i++) {
		snprintf(hex + 2 * i, 3, "%02x", bytes[i]);
		snprintf(hex_upper + 2 * i, 3, "%02X", bytes[i]);
	}
	snprintf(name, sizeof name, "%s (hex)", what);
	needle_add(name, hex, 2 * len);
	snprintf(name, sizeof name, "%s (HEX)", what);
	needle_add(name, hex_upper, 2 * len);
	unsigned char *b64 = malloc(4 * ((len + 2) / 3) + 1);
	int n = EVP_EncodeBlock(b64, bytes, (int)len);
	snprintf(name, sizeof name, "%s (base64)", what);
	needle_add(name, b64, (size_t)n);
	/* Also without padding and without its last characters, as a
	 * truncating or URL-safe logger would write it. */
	snprintf(name, sizeof name, "%s (base64 prefix)", what);
	needle_add(name, b64, (size_t)n - 4);
	free(b64);
	free(hex);
	free(hex_upper);
}

static void needles_free(void)
{
	for (size_t i = 0; i < g_scan.count; i++)
		free(g_scan.n[i].bytes);
	g_scan.count = 0;
}

static int collect_file(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_F && g_scan.n_files < FILES_MAX)
		snprintf(g_scan.files[g_scan.n_files++], sizeof g_scan.files[0], "%s", path);
	return 0;
}

/* Every file under data_dir and kmsd's log; fails on the first needle
 * found. Returns how many files were read and whether must_find appeared
 * somewhere (the scanner's positive control). */
static size_t scan_files(const char *data_dir, const char *must_find, bool *found)
{
	g_scan.n_files = 0;
	assert_int_equal(nftw(data_dir, collect_file, 16, FTW_PHYS), 0);
	assert_true(g_scan.n_files < FILES_MAX);
	snprintf(g_scan.files[g_scan.n_files++], sizeof g_scan.files[0], "%s", H.log);
	*found = false;
	for (size_t f = 0; f < g_scan.n_files; f++) {
		size_t len;
		char *bytes = harness_read_file(g_scan.files[f], &len);
		if (!bytes)
			continue; /* a temporary file renamed away meanwhile */
		for (size_t i = 0; i < g_scan.count; i++)
			if (memmem(bytes, len, g_scan.n[i].bytes, g_scan.n[i].len))
				fail_msg("%s holds %s", g_scan.files[f], g_scan.n[i].what);
		if (memmem(bytes, len, must_find, strlen(must_find)))
			*found = true;
		free(bytes);
	}
	return g_scan.n_files;
}

static bool scanned(const char *suffix)
{
	for (size_t f = 0; f < g_scan.n_files; f++) {
		size_t n = strlen(g_scan.files[f]), m = strlen(suffix);
		if (n >= m && !strcmp(g_scan.files[f] + n - m, suffix))
			return true;
	}
	return false;
}

static void no_secrets_anywhere(void **state)
{
	(void)state;
	static const char canary[] = "PLAINTEXT-CANARY-7f3a9c";
	int port = harness_free_port();
	char extra[200];
	snprintf(extra, sizeof extra, "[audit]\ncheckpoint_ms = 50\nhttp = http://127.0.0.1:%d\n",
	         port);
	start_with(NULL, extra);
	char key[35], disabled[35];
	assert_true(harness_create_key(&H, NULL, key));
	assert_true(harness_create_key(&H, NULL, disabled));
	ok_and_free(key_op("sec-disable", KMS__REQUEST__OP_DISABLE_KEY, disabled));

	pairs ctx = { 0 };
	pairs_add(&ctx, "tenant", "acme");
	Kms__Response *r = encrypt_str("sec-encrypt", key, canary, &ctx);
	expect(r, KMS__STATUS__OK);
	uint8_t blob[512];
	size_t blob_len = r->encrypt->ciphertext_blob.len;
	assert_true(blob_len <= sizeof blob);
	memcpy(blob, r->encrypt->ciphertext_blob.data, blob_len);
	kms__response__free_unpacked(r, NULL);
	r = decrypt("sec-decrypt", blob, blob_len, &ctx);
	expect(r, KMS__STATUS__OK);
	assert_int_equal(r->decrypt->plaintext.len, strlen(canary));
	kms__response__free_unpacked(r, NULL);

	r = generate_data_key("sec-gdk", key, &ctx);
	expect(r, KMS__STATUS__OK);
	assert_int_equal(r->generate_data_key->plaintext.len, 32);
	uint8_t data_key[32], dk_blob[512];
	memcpy(data_key, r->generate_data_key->plaintext.data, 32);
	size_t dk_blob_len = r->generate_data_key->ciphertext_blob.len;
	assert_true(dk_blob_len <= sizeof dk_blob);
	memcpy(dk_blob, r->generate_data_key->ciphertext_blob.data, dk_blob_len);
	kms__response__free_unpacked(r, NULL);
	r = decrypt("sec-decrypt-dk", dk_blob, dk_blob_len, &ctx);
	expect(r, KMS__STATUS__OK);
	kms__response__free_unpacked(r, NULL);

	/* Failed requests carry plaintext too: it must not leak through
	 * their error messages. */
	r = encrypt_str("sec-not-found", "k-00000000000000000000000000000000", canary, NULL);
	expect(r, KMS__STATUS__NOT_FOUND);
	kms__response__free_unpacked(r, NULL);
	r = encrypt_str("sec-disabled", disabled, canary, NULL);
	expect(r, KMS__STATUS__FAILED_PRECONDITION);
	kms__response__free_unpacked(r, NULL);
	uint8_t *big = malloc(PLAINTEXT_MAX + sizeof canary);
	for (size_t i = 0; i < PLAINTEXT_MAX + 1; i += sizeof canary - 1)
		memcpy(big + i, canary, sizeof canary - 1);
	r = encrypt("sec-too-large", key, big, PLAINTEXT_MAX + 1, NULL);
	expect(r, KMS__STATUS__INVALID_ARGUMENT);
	kms__response__free_unpacked(r, NULL);
	free(big);
	uint8_t tampered[512];
	memcpy(tampered, blob, blob_len);
	tampered[blob_len - 1] ^= 1;
	r = decrypt("sec-bad-blob", tampered, blob_len, &ctx);
	expect(r, KMS__STATUS__INVALID_CIPHERTEXT);
	kms__response__free_unpacked(r, NULL);

	char *pin = harness_read_file(getenv("KMS_TEST_PIN_FILE"), NULL);
	assert_non_null(pin);
	pin[strcspn(pin, "\r\n")] = '\0';
	assert_true(strlen(pin) >= 8);

	needle_add_forms("the plaintext canary", (const uint8_t *)canary, strlen(canary));
	needle_add_forms("the data key", data_key, sizeof data_key);
	needle_add("the HSM PIN", pin, strlen(pin));
	/* Blob bodies: the sealed tail (ciphertext and tag), and whole blobs. */
	needle_add("a blob's sealed bytes", blob + blob_len - 24, 24);
	needle_add_forms("a ciphertext blob", blob, blob_len);
	needle_add("a data key blob's sealed bytes", dk_blob + dk_blob_len - 24, 24);
	needle_add_forms("a data key blob", dk_blob, dk_blob_len);
	free(pin);

	/* Published (tiles, bundles) and still running (kms.db-wal). */
	audit_cp cp;
	audit_get_checkpoint(&H, &cp);
	uint64_t want_size = cp.size + 1;
	audit_cp_free(&cp);
	audit_wait_checkpoint(&H, want_size, CHECKPOINT_WAIT_MS, &cp);
	char data_dir[700];
	snprintf(data_dir, sizeof data_dir, "%s/data", H.dir);
	bool found;
	scan_files(data_dir, "sec-gdk", &found);
	assert_true(found); /* the scanner does see entries */
	assert_true(scanned("/audit/log.bin"));
	assert_true(scanned("/audit/public/checkpoint"));
	assert_true(scanned("/kms.db"));

	/* The HTTP copy too. */
	char *body;
	size_t len;
	assert_int_equal(audit_http_get(port, "/metrics", 5000, &body, &len), 200);
	for (size_t i = 0; i < g_scan.count; i++)
		assert_null(memmem(body, len, g_scan.n[i].bytes, g_scan.n[i].len));
	free(body);

	stop_clean();
	scan_files(data_dir, "sec-gdk", &found);
	assert_true(found);
	assert_true(scanned("/kmsd.log"));
	bool bundle = false;
	for (size_t f = 0; f < g_scan.n_files; f++)
		bundle |= strstr(g_scan.files[f], "/tile/entries/") != NULL;
	assert_true(bundle);

	/* And the audit entries themselves name the requests, not their bytes. */
	char pub[700];
	audit_public_dir(&H, NULL, pub, sizeof pub);
	audit_entries e;
	audit_load(pub, cp.vkey, cp.note, &e);
	json_t *entry;
	assert_int_equal(audit_count_id(&e, "sec-encrypt", &entry), 1);
	assert_string_equal(audit_str(entry, "status"), "OK");
	assert_int_equal(audit_count_id(&e, "sec-too-large", &entry), 1);
	assert_string_equal(audit_str(entry, "status"), "INVALID_ARGUMENT");
	audit_entries_free(&e);
	audit_cp_free(&cp);
	needles_free();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(every_request_once, teardown),
		cmocka_unit_test_teardown(proofs_and_http, teardown),
		cmocka_unit_test_teardown(http_serves_nothing_outside_public, teardown),
		cmocka_unit_test_teardown(no_secrets_anywhere, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
